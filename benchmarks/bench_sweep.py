"""Sweep engine: grouped, vmapped (and sharded) execution vs a Python loop over the same points.

Both paths go through ``molrg.sweep.run_sweep`` into fresh folders (so both include
compilation, point-file writing and the table), on the ``optimal_snr`` study with small
points — the regime of real sweeps (many seeds x noise levels x small models), where the
per-call overhead that vmap removes dominates. Target (issue): at least 5x.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _timing  # noqa: E402

from molrg.sweep import parse_grids, run_sweep  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    seeds = 8 if args.quick else 32
    overrides = {"num_samples": 256}

    def grids(first):
        return parse_grids(["sigma=0.01:10:12g", "delta=0.1,0.3",
                            "seed=" + ",".join(map(str, range(first, first + seeds)))])

    npts = 12 * 2 * seeds
    print(f"sweep engine: {npts} points of optimal_snr (num_samples=256), grouped+vmapped vs loop",
          flush=True)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("grouped", "loop"):
            # first sweep: includes compilation; second (new seeds, same shapes): steady state
            for phase, first in (("cold", 0), ("warm", 1000)):
                t0 = time.perf_counter()
                run_sweep("optimal_snr", grids(first), overrides=overrides,
                          out_dir=os.path.join(tmp, mode), loop=(mode == "loop"), verbose=False)
                out[f"{mode}_{phase}"] = time.perf_counter() - t0
                print(f"  {mode:8s} {phase} (with{'out' if phase == 'warm' else ''} compilation): "
                      f"{out[f'{mode}_{phase}']:.2f} s", flush=True)
    ratio = out["loop_warm"] / out["grouped_warm"]
    ratio_cold = out["loop_cold"] / out["grouped_cold"]
    print(f"  grouped/vmapped speedup over the Python loop: {ratio:.1f}x compiled, "
          f"{ratio_cold:.1f}x including compilation", flush=True)
    out["speedup"] = ratio
    out["speedup_including_compile"] = ratio_cold
    _timing.write_json(os.path.join(HERE, "results", "sweep.json"),
                       {"environment": _timing.environment(), "points": npts, "results": out})
    return out


if __name__ == "__main__":
    main()
