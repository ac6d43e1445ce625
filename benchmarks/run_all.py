"""``make bench``: every benchmark, each printing its ratios against a same-run baseline.

Usage: python benchmarks/run_all.py [--quick] [--only NAME ...]
Results (JSON, with the environment) go to benchmarks/results/.
"""

import argparse
import importlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BENCHES = ["bench_core", "bench_diffusionlab", "bench_theory", "bench_training", "bench_sweep",
           "bench_phase_transition"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    failed = []
    for name in BENCHES:
        if args.only and name not in args.only:
            continue
        if not os.path.exists(os.path.join(HERE, f"{name}.py")):
            continue
        print(f"\n=== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            importlib.import_module(name).main(["--quick"] if args.quick else [])
        except Exception as exc:  # report and go on: one broken bench should not hide the others
            print(f"  {name} FAILED: {exc!r}", flush=True)
            failed.append(name)
        print(f"=== {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    if failed:
        print(f"\nfailed: {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
