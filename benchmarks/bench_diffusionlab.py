"""molrg's exact denoiser against diffusionlab 3.0.4's ``low_rank_gmm_x0`` on identical inputs.

diffusionlab 3.0.4 is the one existing JAX closed-form low-rank GMM denoiser (version 4
removed it); it needs Python 3.12, so it runs in its own venv (``.venv-bench-dl``, built by
``benchmarks/setup_diffusionlab_env.sh`` on first use) through
``benchmarks/_diffusionlab_runner.py``. molrg runs through ``_molrg_runner.py`` in this
venv. Both sides run in subprocesses pinned to ONE CPU: jaxlib 0.10.2 deadlocks on
diffusionlab's per-sample path on a 2-core host (see the runner's docstring), and pinning
both keeps the comparison fair.

Inputs: the P1-type model with delta = 0 (so both libraries see the same class covariances
``U_k U_k^T``), zero means, uniform weights; diffusionlab's flow-matching process
``x_t = (1 - t) x0 + t eps`` with t strictly inside (0, 1): t = 0.3 shared, or per-sample t
uniform in [0.05, 0.95]. molrg gets ``scale = 1 - t`` and ``sigma = t / (1 - t)``. Outputs
are checked to agree (float32) before any time is reported.

Targets (issue): molrg at least 10x faster with shared t and 50x with per-sample t.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import _timing  # noqa: E402

DL_PY = os.path.join(ROOT, ".venv-bench-dl", "bin", "python")
SHAPES = [(8192, 256, 8, 16), (2048, 784, 10, 16), (16384, 128, 4, 8), (4096, 50, 3, 5)]


def ensure_env() -> bool:
    if os.path.exists(DL_PY):
        return True
    print("  building the diffusionlab 3.0.4 benchmark venv (python3.12) ...", flush=True)
    res = subprocess.run(["bash", os.path.join(HERE, "setup_diffusionlab_env.sh")], cwd=ROOT)
    return res.returncode == 0 and os.path.exists(DL_PY)


def make_inputs(path, B, n, K, d, seed=0):
    import jax
    import jax.numpy as jnp

    import molrg
    mix = molrg.random_molrg(jax.random.key(seed), n=n, K=K, d=d, delta=0.0, dtype=jnp.float32)
    x0, _ = mix.sample(jax.random.key(seed + 1), B)
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.05, 0.95, size=B).astype(np.float32)
    eps = rng.standard_normal((B, n)).astype(np.float32)
    x0 = np.asarray(x0)
    # One x_t for both cases (the timing does not depend on how x_t was drawn).
    np.savez(path, x_t=((1 - t)[:, None] * x0 + t[:, None] * eps).astype(np.float32),
             t=t, t_shared=np.float32(0.3), means=np.zeros((K, n), np.float32),
             factors=np.stack([np.asarray(b) for b in mix.bases]).astype(np.float32),
             weights=np.full(K, 1.0 / K, np.float32), process="flow_matching", n_repeats=3)


def _run(cmd, timeout):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({res.returncode}):\n{res.stderr[-2000:]}")


def compare(shape, timeout):
    B, n, K, d = shape
    with tempfile.TemporaryDirectory() as tmp:
        inp, out_dl, out_mg = (os.path.join(tmp, f) for f in ("in.npz", "dl.npz", "mg.npz"))
        make_inputs(inp, B, n, K, d)
        _run([DL_PY, os.path.join(HERE, "_diffusionlab_runner.py"), inp, out_dl,
              "--single-cpu", "--timeout", str(timeout)], timeout + 60)
        _run([sys.executable, os.path.join(HERE, "_molrg_runner.py"), inp, out_mg], timeout)
        with np.load(out_dl) as dl, np.load(out_mg) as mg:
            row = {"B": B, "n": n, "K": K, "d": d,
                   "sec_molrg_shared": float(mg["time_shared_s"]),
                   "sec_molrg_per_sample": float(mg["time_per_sample_s"]),
                   "sec_diffusionlab_shared": float(dl["time_shared_s"]),
                   "sec_diffusionlab_per_sample": float(dl["time_per_sample_s"]),
                   "max_rel_diff_shared": _relerr(mg["x0_shared"], dl["x0_shared"]),
                   "max_rel_diff_per_sample": _relerr(mg["x0_per_sample"], dl["x0_per_sample"]),
                   "max_abs_alpha_mismatch": float(np.max(np.abs(mg["alpha"] - dl["alpha"])))}
    row["speedup_shared"] = row["sec_diffusionlab_shared"] / row["sec_molrg_shared"]
    row["speedup_per_sample"] = row["sec_diffusionlab_per_sample"] / row["sec_molrg_per_sample"]
    return row


def _relerr(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-12)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the smallest shape")
    ap.add_argument("--timeout", type=int, default=900)
    args = ap.parse_args(argv)
    print("diffusionlab 3.0.4 low_rank_gmm_x0 vs molrg.denoise (both pinned to 1 CPU)", flush=True)
    if not ensure_env():
        print("  SKIPPED: could not build the diffusionlab venv (needs python3.12 and PyPI)", flush=True)
        return {"skipped": True}
    rows = []
    for shape in (SHAPES[-1:] if args.quick else SHAPES):
        try:
            row = compare(shape, args.timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"  {shape}: FAILED to measure: {exc}", flush=True)
            rows.append({"shape": shape, "error": str(exc)[-500:]})
            continue
        rows.append(row)
        print(f"  (B,n,K,d)={shape}: speedup shared {row['speedup_shared']:.1f}x, per-sample "
              f"{row['speedup_per_sample']:.1f}x; outputs agree to {max(row['max_rel_diff_shared'], row['max_rel_diff_per_sample']):.1e} (relative)",
              flush=True)
    _timing.write_json(os.path.join(HERE, "results", "diffusionlab.json"),
                       {"environment": _timing.environment(), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
