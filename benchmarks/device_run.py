"""The accelerator run list: the full-scale studies a 2-core CPU cannot afford, in one prepared run.

On a GPU or TPU host (jax with its accelerator plugin, and molrg's dependencies)::

    python benchmarks/device_run.py                 # everything, about 10 minutes on one H200
    python benchmarks/device_run.py --dry-run       # the plan, every config validated, nothing run
    python benchmarks/device_run.py --scale tiny    # the same steps at smoke scale (CPU: the test)

Steps (each a subprocess with its own time limit, so one slow or failing step cannot hide the
others; a step that fails is recorded with its exit code and the run goes on):

1. ``env`` -- the devices and versions;
2. ``mlp_memorization`` -- the trained-MLP memorisation grid of P1's Fig. 3 setting:
   N = 2^4 .. 2^14 x widths 64/256/1024 x 3 seeds (hours on 2 CPU cores);
3. ``phase_transition`` -- P0's phase transition with the certified trained network on the
   whole grid (K = 1..3, d = 2..8, N_k = 2..15) at 20 seeds per cell;
4. ``real_digits`` -- the real-data bridge at full scale (N = 2^5 .. all, 5 seeds, 50 bootstrap
   refits);
5. ``benchmarks`` -- ``bench_core.py --quick`` and ``bench_training.py --ensemble-only --quick``
   on the accelerator (the baselines that need PyTorch or diffusionlab environments are left to
   ``make bench``: a device host may have no network to build them);
6. ``tests`` (only with ``--with-tests``) -- the fast test tier on the accelerator.

Everything goes under ``--out`` (default ``figures/device/<device kind>/``): per step its
results folder (``results/NAME``, with the config, seed and versions of every molrg run), its
figures (``figures/``) and its log (``logs/STEP.log``); ``run.json`` records the device, the
versions, the command line and each step's exit code and seconds, written atomically after every
step (a run cut short leaves the steps it finished, listed as such). A tiny-scale run refuses to
write under ``figures/`` (smoke runs never touch tracked files).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: the full-scale ``--set`` values of each molrg experiment step, and the tiny (CPU smoke) ones,
#: applied on top of the experiment's quick config.
STEPS = {
    "mlp_memorization": {
        "limit_s": 240,
        "full": {"N_values": ",".join(str(2 ** k) for k in range(4, 15)), "widths": "64,256,1024",
                 "num_seeds": 3},
        "tiny": {"N_values": "16,64", "widths": "16", "num_seeds": 2, "segment_steps": 20,
                 "num_segments": 1, "num_test": 60, "num_samples": 16, "sample_steps": 5},
    },
    "phase_transition": {
        "limit_s": 120,
        "full": {"net_K_values": "1,2,3", "net_d_values": "2,3,4,5,6,7,8", "net_seeds": 20},
        "tiny": {"K_values": "1,2", "d_values": "2", "N_values": "2,3", "num_seeds": 2,
                 "net_K_values": "2", "net_d_values": "2", "net_seeds": 2, "train_steps": 20},
    },
    "real_digits": {
        "limit_s": 90,
        "full": {"N_values": "32,64,128,256,512,1024", "num_seeds": 5, "bootstrap": 50},
        "tiny": {},
    },
}
BENCH_LIMIT_S = 90
TESTS_LIMIT_S = 220
ENV_LIMIT_S = 60
TINY_LIMIT_S = 900


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "device"


def _device_kind() -> str:
    import jax
    return jax.devices()[0].device_kind


def _sets(values: dict) -> list[str]:
    out = []
    for k, v in values.items():
        out += ["--set", f"{k}={v}"]
    return out


def plan(scale: str, out: str, with_tests: bool) -> list[dict]:
    """The steps of a run: name, argv, time limit."""
    py = sys.executable
    res, figs = os.path.join(out, "results"), os.path.join(out, "figures")
    steps = [{"name": "env", "limit_s": ENV_LIMIT_S,
              "argv": [py, "-c", "import jax, jaxlib, optax, numpy, molrg; "
                       "print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'optax', optax.__version__, "
                       "'numpy', numpy.__version__, 'molrg', molrg.__version__); print(jax.devices())"]}]
    for name, spec in STEPS.items():
        argv = [py, "-m", "molrg.cli", "run", name, "--out", res, "--fig-dir", figs]
        argv += (["--quick"] + _sets(spec["tiny"])) if scale == "tiny" else _sets(spec["full"])
        steps.append({"name": name, "limit_s": spec["limit_s"], "argv": argv,
                      "sets": spec[scale], "quick": scale == "tiny"})
    # The benchmarks that need no second environment (a device host has no network to build the
    # PyTorch or diffusionlab baselines): the core against its bare products, and the 16-seed
    # ensemble against sequential runs.
    bench = ["bash", "-c", f"{py} {os.path.join(HERE, 'bench_core.py')} --quick && "
             f"{py} {os.path.join(HERE, 'bench_training.py')} --ensemble-only --quick"]
    if scale == "tiny":  # on CPU the benchmarks are make bench's job; the step runs the cheapest one
        bench = [py, os.path.join(HERE, "bench_core.py"), "--quick"]
    steps.append({"name": "benchmarks", "limit_s": BENCH_LIMIT_S, "argv": bench})
    if with_tests:
        steps.append({"name": "tests", "limit_s": TESTS_LIMIT_S,
                      "argv": [py, "-m", "pytest", "-m", "not slow", "-q", "-p", "no:cacheprovider",
                               "-x" if scale == "tiny" else "-q", os.path.join(ROOT, "tests")]})
    if scale == "tiny":  # the limits are the device's; a loaded 2-core CPU needs more for the smoke run
        for s in steps:
            s["limit_s"] = TINY_LIMIT_S
    return steps


def validate(steps: list[dict]) -> None:
    """Every molrg step's config is built and validated as the run will build it (a renamed or
    invalid ``--set`` key fails here, before any work): ``ValueError`` naming the step."""
    from molrg.experiments import get
    from molrg.study.config import parse_sets

    for s in steps:
        if "sets" not in s:
            continue
        try:
            get(s["name"]).make_config(parse_sets([f"{k}={v}" for k, v in s["sets"].items()]), quick=s["quick"])
        except ValueError as exc:
            raise ValueError(f"device_run step {s['name']}: {exc}") from None


def _write_json(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=("full", "tiny"), default="full")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and validate every config; run nothing")
    ap.add_argument("--out", default=None, help="default figures/device/<device kind>/ (full), required for tiny")
    ap.add_argument("--with-tests", action="store_true", help="also run the fast test tier on the device")
    ap.add_argument("--only", nargs="*", default=None, help="only these steps")
    args = ap.parse_args(argv)
    if args.out is None:
        if args.scale == "tiny":
            ap.error("--scale tiny needs --out (smoke runs never write under figures/)")
        args.out = os.path.join(ROOT, "figures", "device", _slug(_device_kind()))
    out = os.path.abspath(args.out)
    if args.scale == "tiny" and out.startswith(os.path.join(ROOT, "figures") + os.sep):
        ap.error("--out: a tiny-scale run never writes under figures/ (tracked files)")
    steps = plan(args.scale, out, args.with_tests)
    if args.only:
        unknown = sorted(set(args.only) - {s["name"] for s in steps})
        if unknown:
            ap.error(f"--only: unknown steps {unknown}; known: {[s['name'] for s in steps]}")
        steps = [s for s in steps if s["name"] in args.only or s["name"] == "env"]
    try:
        validate(steps)
    except ValueError as exc:
        ap.error(str(exc))
    total = sum(s["limit_s"] for s in steps)
    print(f"device_run ({args.scale}): {len(steps)} steps, at most {total} s, into {out}", flush=True)
    for s in steps:
        print(f"  {s['name']:<17} <= {s['limit_s']:>4} s  {' '.join(os.path.relpath(a) if a.startswith(ROOT) else a for a in s['argv'][1:])}",
              flush=True)
    if args.dry_run:
        return 0
    logs = os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    record = {"scale": args.scale, "argv": sys.argv, "device": _device_kind(), "started": time.time(),
              "complete": False, "steps": []}
    env = dict(os.environ, PYTHONUNBUFFERED="1", XLA_PYTHON_CLIENT_PREALLOCATE="false",
               PYTHONPATH=ROOT + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
    failed = []
    for s in steps:
        t0 = time.perf_counter()
        with open(os.path.join(logs, f"{s['name']}.log"), "w") as log:
            try:
                rc = subprocess.run(s["argv"], stdout=log, stderr=subprocess.STDOUT, timeout=s["limit_s"],
                                    cwd=ROOT, env=env).returncode
            except subprocess.TimeoutExpired:
                rc = 124
        dt = time.perf_counter() - t0
        print(f"== {s['name']}: exit {rc}, {dt:.0f} s", flush=True)
        if rc:
            failed.append(s["name"])
        record["steps"].append({"name": s["name"], "exit_code": rc, "seconds": round(dt, 1),
                                "limit_s": s["limit_s"], "argv": s["argv"][1:]})
        _write_json(os.path.join(out, "run.json"), record)
    record["complete"] = True
    record["failed"] = failed
    _write_json(os.path.join(out, "run.json"), record)
    print(f"device_run: {len(steps) - len(failed)} of {len(steps)} steps succeeded; {out}/run.json", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
