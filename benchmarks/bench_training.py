"""Training throughput: molrg's jitted lax.scan loop vs the same MLP and loop in PyTorch,
and an ensemble of 16 seeds trained as one vmapped program vs the same 16 one after another.

Ratios measured in this run (float32, CPU):
  * sample-steps/s of molrg.training.train(MLPDenoiser(n=50, width 128, depth 3)) over
    PyTorch 2.13.0 (CPU build, in .venv-bench-torch, built on first use by
    setup_torch_env.sh; never a molrg dependency) at batch 32 and 256 — target >= 3x;
  * train_ensemble(16 seeds) throughput over 16 sequential train() calls — target >= 4x.
    Measured in a subprocess with two virtual CPU devices (one per core,
    ``--xla_force_host_platform_device_count=2``): ``train`` runs on one device, as a
    user's loop would, and the ensemble is timed both on one device and sharded over the
    two (``train_ensemble``'s default). The repetitions are interleaved and medians
    reported, with the load average, the MLP's GFLOP/s on each side and the GFLOP/s of a
    bare (32, 128) x (128, 128) matmul on one core (the roofline the sequential runs face).
Both sides are timed after compilation / warm-up; PyTorch runs with 2 threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import _timing  # noqa: E402

import molrg  # noqa: E402
from molrg import networks, training  # noqa: E402

TORCH_PY = os.path.join(ROOT, ".venv-bench-torch", "bin", "python")


def _torch(batch, steps):
    """PyTorch's best of 1 and 2 threads (small models often run faster on one)."""
    if not os.path.exists(TORCH_PY):
        subprocess.run(["bash", os.path.join(HERE, "setup_torch_env.sh")], check=True)
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 2):
            out = os.path.join(tmp, f"t{threads}.json")
            subprocess.run([TORCH_PY, os.path.join(HERE, "_torch_runner.py"), out, "--steps", str(steps),
                            "--batch", str(batch), "--threads", str(threads)], check=True,
                           capture_output=True)
            got = json.load(open(out))
            if best is None or got["sample_steps_per_s"] > best["sample_steps_per_s"]:
                best = got
    return best


def _molrg(net, data, batch, steps):
    run = lambda: training.train(net, data, seed=0, steps=steps, batch_size=batch)  # noqa: E731
    jax.block_until_ready(run().params)  # compile
    t0 = time.perf_counter()
    jax.block_until_ready(run().params)
    return steps * batch / (time.perf_counter() - t0)


def _mlp_train_flops(net, batch):
    """Matmul FLOPs of one training step (forward 2*in*out per sample and layer; backward 2x)."""
    dims = [(net.n + net.embed_dim, net.width)] + [(net.width, net.width)] * (net.depth - 1) + [(net.width, net.n)]
    return 3 * 2 * batch * sum(i * o for i, o in dims)


def _matmul_gflops():
    """GFLOP/s of XLA:CPU on the MLP's (32, 128) @ (128, 128) product, on one core."""
    x = jnp.ones((32, 128), jnp.float32)
    w = jnp.full((128, 128), 1e-3, jnp.float32)
    reps = 2000
    loop = jax.jit(lambda x, w: jax.lax.fori_loop(0, reps, lambda i, h: jnp.tanh(h @ w), x))
    jax.block_until_ready(loop(x, w))
    best = min(_timed(lambda: loop(x, w)) for _ in range(5))
    return reps * 2 * 32 * 128 * 128 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def _ensemble(steps, repeats):
    """16 seeds: sequential train() calls vs train_ensemble on one device and on all."""
    net = networks.MLPDenoiser(n=50)
    mix = molrg.paper_molrg(jax.random.key(0))
    data = mix.sample(jax.random.key(1), 12000)[0].astype(jnp.float32)
    seeds = list(range(16))
    devs = jax.devices()
    fns = {
        "sequential": lambda: [training.train(net, data, seed=s, steps=steps, batch_size=32).params
                               for s in seeds],
        "vmapped_1_device": lambda: training.train_ensemble(net, data, seeds=seeds, steps=steps, batch_size=32,
                                                            devices=devs[:1]).params,
    }
    if len(devs) > 1:
        fns[f"vmapped_{len(devs)}_devices"] = lambda: training.train_ensemble(
            net, data, seeds=seeds, steps=steps, batch_size=32).params
    for fn in fns.values():
        jax.block_until_ready(fn())  # compile
    load0 = os.getloadavg()
    samples = {k: [] for k in fns}
    for _ in range(repeats):  # interleaved: the machine's load hits every side alike
        for k, fn in fns.items():
            samples[k].append(_timed(fn))
    med = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
    flops = 16 * steps * _mlp_train_flops(net, 32)
    out = {"steps": steps, "batch": 32, "repeats": repeats, "devices": len(devs),
           "loadavg_before_after": [load0, os.getloadavg()], "seconds_median": med,
           "seconds_all": samples, "mlp_matmul_gflops_per_s": {k: flops / v / 1e9 for k, v in med.items()},
           "bare_matmul_gflops_per_s_one_core": _matmul_gflops()}
    out["ratio"] = {k: med["sequential"] / v for k, v in med.items() if k != "sequential"}
    return out


def _ensemble_subprocess(steps, repeats):
    """Runs :func:`_ensemble` in a child with one virtual CPU device per core (XLA reads
    the device count only when the backend starts, so it cannot be changed in-process)."""
    env = dict(os.environ)
    ncores = os.cpu_count() or 1
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={ncores}").strip()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ensemble.json")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--ensemble-child", out,
                        "--ensemble-steps", str(steps), "--ensemble-repeats", str(repeats)],
                       check=True, env=env)
        got = json.load(open(out))
    med = got["seconds_median"]
    print(f"  ensemble of 16 (batch 32, {steps} steps, medians of {repeats} interleaved runs, "
          f"load {got['loadavg_before_after'][0][0]:.1f}): sequential {med['sequential']:.2f}s", flush=True)
    for k, r in got["ratio"].items():
        print(f"    {k}: {med[k]:.2f}s -> {r:.1f}x", flush=True)
    g = got["mlp_matmul_gflops_per_s"]
    print("    MLP matmul GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in g.items())
          + f"; bare (32,128)x(128,128) matmul on one core: {got['bare_matmul_gflops_per_s_one_core']:.0f}",
          flush=True)
    return got


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ensemble-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ensemble-steps", type=int, default=200, help=argparse.SUPPRESS)
    ap.add_argument("--ensemble-repeats", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--ensemble-only", action="store_true", help="only the 16-seed ensemble comparison")
    args = ap.parse_args(argv)
    if args.ensemble_child:
        _timing.write_json(args.ensemble_child, _ensemble(args.ensemble_steps, args.ensemble_repeats))
        return None
    if args.ensemble_only:
        return _ensemble_subprocess(200 if args.quick else 1000, 3 if args.quick else 5)
    steps = 300 if args.quick else 2000
    net = networks.MLPDenoiser(n=50)
    mix = molrg.paper_molrg(jax.random.key(0))
    data, _ = mix.sample(jax.random.key(1), 12000)
    data = data.astype(jnp.float32)
    rows = {}
    print("training throughput: molrg vs PyTorch 2.13.0 (same MLP, same loop)", flush=True)
    for batch in (32, 256):
        ours = _molrg(net, data, batch, steps)
        theirs = _torch(batch, steps)["sample_steps_per_s"]
        rows[f"batch_{batch}"] = {"molrg_sample_steps_per_s": ours, "torch_sample_steps_per_s": theirs,
                                  "ratio": ours / theirs}
        print(f"  batch {batch}: molrg {ours:,.0f} vs torch {theirs:,.0f} sample-steps/s -> {ours / theirs:.1f}x",
              flush=True)
    rows["ensemble16"] = _ensemble_subprocess(200 if args.quick else 1000, 3 if args.quick else 5)
    _timing.write_json(os.path.join(HERE, "results", "training.json"),
                       {"environment": _timing.environment(), "steps": steps, "results": rows})
    return rows


if __name__ == "__main__":
    main()
