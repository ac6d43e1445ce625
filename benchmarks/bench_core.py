"""Core speed: exact posterior + denoiser, and the streaming empirical denoiser.

Ratios, each measured side by side in this run (float32, jitted, warmed):
  * matmul fraction = time(bare x @ U then h @ U.T) / time(posterior + denoise); 1.0 means
    molrg runs at the speed of the two products it cannot avoid (target >= 0.8);
  * the floor: the two products with one elementwise pass between them (each row of the
    (B, r) coordinates scaled by a factor), the least any posterior-weighted output can do
    beyond the products, as a fraction of the bare products; and molrg as a fraction of it;
  * per-sample / shared sigma time (target <= 1.2);
  * the empirical denoiser against its bare chunked products (target >= 0.6), and its
    compiled temporary memory at N = 1e4 / 1e5 / 1e6 (must not grow with N).

Run: ``python benchmarks/bench_core.py [--quick]``; writes benchmarks/results/core.json.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _timing  # noqa: E402

import molrg  # noqa: E402
from molrg._precision import full_precision  # noqa: E402
from molrg.empirical import _stream  # noqa: E402

SHAPES = [(8192, 256, 8, 16), (2048, 784, 10, 16), (16384, 128, 4, 8), (4096, 50, 3, 5)]
LARGE = SHAPES[:3]


@jax.jit
@full_precision  # the same float32 precision as molrg's exact path (matters on GPU/TPU only)
def _bare(x, U):
    return (x @ U) @ U.T


@jax.jit
@full_precision
def _bare_one_pass(x, U, row):
    """The two products with the least work a posterior-weighted output can put between them:
    one elementwise pass over the (B, r) coordinates (each row scaled by its own factor)."""
    return ((x @ U) * row[:, None]) @ U.T


@jax.jit
def _exact(mix, x, sigma):
    return molrg.denoise(mix, x, sigma, return_posterior=True)


def bench_exact(shapes, repeats):
    rows = []
    for B, n, K, d in shapes:
        mix = molrg.random_molrg(jax.random.key(0), n=n, K=K, d=d, delta=0.2, dtype=jnp.float32)
        x0, _ = mix.sample(jax.random.key(1), B)
        x = x0 + 0.5 * jax.random.normal(jax.random.key(2), x0.shape, jnp.float32)
        U = mix.stacked_bases
        s_shared = jnp.float32(0.5)
        s_each = jnp.asarray(np.geomspace(0.01, 10.0, B), jnp.float32)
        load = os.getloadavg()[0]
        row = jnp.asarray(np.linspace(0.5, 1.5, B), jnp.float32)
        t = _timing.interleaved({
            "bare": lambda: _bare(x, U),
            "one_pass": lambda: _bare_one_pass(x, U, row),
            "shared": lambda: _exact(mix, x, s_shared),
            "per_sample": lambda: _exact(mix, x, s_each),
        }, repeats=repeats)
        row = {"B": B, "n": n, "K": K, "d": d, "loadavg_1min": [load, os.getloadavg()[0]],
               "sec_bare": t["bare"], "sec_shared": t["shared"],
               "sec_per_sample": t["per_sample"],
               "matmul_fraction_shared": t["bare"] / t["shared"],
               "matmul_fraction_per_sample": t["bare"] / t["per_sample"],
               "per_sample_over_shared": t["per_sample"] / t["shared"],
               "sec_one_pass": t["one_pass"], "one_pass_fraction": t["bare"] / t["one_pass"],
               "fraction_of_one_pass_shared": t["one_pass"] / t["shared"],
               "fraction_of_one_pass_per_sample": t["one_pass"] / t["per_sample"]}
        rows.append(row)
        print(f"  (B,n,K,d)=({B},{n},{K},{d}) [load {load:.1f}]: matmul fraction shared {row['matmul_fraction_shared']:.2f}, "
              f"per-sample {row['matmul_fraction_per_sample']:.2f}; per-sample/shared time "
              f"{row['per_sample_over_shared']:.2f}; the floor (products + one pass over (B, r)) is "
              f"{row['one_pass_fraction']:.2f} of the bare products, molrg {row['fraction_of_one_pass_shared']:.2f} / "
              f"{row['fraction_of_one_pass_per_sample']:.2f} of the floor", flush=True)
    return rows


@functools.partial(jax.jit, static_argnames=("chunk",))
@full_precision
def _bare_chunked(train, x, chunk):
    full = train.shape[0] // chunk

    def body(i, acc):
        Y = jax.lax.dynamic_slice_in_dim(train, i * chunk, chunk, axis=0)
        return acc + (x @ Y.T) @ Y

    return jax.lax.fori_loop(0, full, body, jnp.zeros_like(x))


def bench_empirical(N, repeats):
    B, n, chunk = 256, 100, 2048
    train = jax.random.normal(jax.random.key(0), (N, n), jnp.float32)
    x = jax.random.normal(jax.random.key(1), (B, n), jnp.float32)
    sig, sc = jnp.float32(0.5), jnp.float32(1.0)
    t = _timing.interleaved({
        "bare": lambda: _bare_chunked(train, x, chunk),
        "empirical": lambda: _stream(train, None, x, sig, sc, chunk),
    }, repeats=repeats)
    frac = t["bare"] / t["empirical"]
    print(f"  empirical (B={B}, n={n}, N={N}, chunk={chunk}) [load {os.getloadavg()[0]:.1f}]: "
          f"matmul fraction {frac:.2f}", flush=True)
    mem = {}
    for NN in (10_000, 100_000, 1_000_000):
        spec = jax.ShapeDtypeStruct((NN, n), jnp.float32)
        comp = _stream.lower(spec, None, jax.ShapeDtypeStruct((B, n), jnp.float32),
                             jax.ShapeDtypeStruct((), jnp.float32),
                             jax.ShapeDtypeStruct((), jnp.float32), chunk_size=chunk).compile()
        mem[NN] = comp.memory_analysis().temp_size_in_bytes
    print("  empirical compiled temporary memory (bytes): "
          + ", ".join(f"N={k:,}: {v:,}" for k, v in mem.items()), flush=True)
    return {"B": B, "n": n, "N": N, "chunk": chunk, "sec_bare": t["bare"],
            "sec_empirical": t["empirical"], "matmul_fraction": frac, "temp_bytes_by_N": mem}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller empirical N")
    args = ap.parse_args(argv)
    repeats = 5 if args.quick else 15
    print("core: exact posterior + denoise vs bare matmuls", flush=True)
    exact = bench_exact(SHAPES, repeats)
    print("core: empirical denoiser", flush=True)
    emp = bench_empirical(50_000 if args.quick else 200_000, repeats)
    out = {"environment": _timing.environment(), "exact": exact, "empirical": emp}
    _timing.write_json(os.path.join(os.path.dirname(__file__), "results", "core.json"), out)
    return out


if __name__ == "__main__":
    main()
