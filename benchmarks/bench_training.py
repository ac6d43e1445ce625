"""Training throughput: molrg's jitted lax.scan loop vs the same MLP and loop in PyTorch,
and an ensemble of 16 seeds trained as one vmapped program vs the same 16 one after another.

Ratios measured in this run (float32, CPU):
  * sample-steps/s of molrg.training.train(MLPDenoiser(n=50, width 128, depth 3)) over
    PyTorch 2.13.0 (CPU build, in .venv-bench-torch, built on first use by
    setup_torch_env.sh; never a molrg dependency) at batch 32 and 256 — target >= 3x;
  * train_ensemble(16 seeds) throughput over 16 sequential train() calls — target >= 4x.
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
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
    seeds = list(range(16))
    esteps = 200 if args.quick else 1000
    ens = lambda: training.train_ensemble(net, data, seeds=seeds, steps=esteps, batch_size=32)  # noqa: E731
    jax.block_until_ready(ens().params)
    t0 = time.perf_counter()
    jax.block_until_ready(ens().params)
    t_ens = time.perf_counter() - t0
    one = lambda s: training.train(net, data, seed=s, steps=esteps, batch_size=32)  # noqa: E731
    jax.block_until_ready(one(0).params)
    t0 = time.perf_counter()
    for s in seeds:
        jax.block_until_ready(one(s).params)
    t_seq = time.perf_counter() - t0
    rows["ensemble16"] = {"seconds_vmapped": t_ens, "seconds_sequential": t_seq, "ratio": t_seq / t_ens}
    print(f"  ensemble of 16 (batch 32, {esteps} steps): vmapped {t_ens:.1f}s vs sequential {t_seq:.1f}s "
          f"-> {t_seq / t_ens:.1f}x", flush=True)
    _timing.write_json(os.path.join(HERE, "results", "training.json"),
                       {"environment": _timing.environment(), "steps": steps, "results": rows})
    return rows


if __name__ == "__main__":
    main()
