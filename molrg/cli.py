"""The ``molrg`` command line.

  molrg list                                  the experiment catalogue
  molrg run NAME [--quick] [--set k=v ...] [--config FILE] [--out DIR] [--fig-dir DIR]
  molrg check [--quick] [--json FILE] [--only NAME ...] [--out DIR]
  molrg reproduce [--quick] [--out DIR] [--fig-dir DIR] [--only NAME ...]
  molrg sweep STUDY --grid key=v1,v2,... [--grid ...] [--set k=v] [--config FILE] [--out DIR]

``--quick`` runs write under ``results/quick`` and ``figures/quick`` unless told otherwise,
so a smoke test never overwrites the committed full-scale figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time


def _cmd_list(args) -> int:
    from molrg.experiments import EXPERIMENTS
    width = max(len(n) for n in EXPERIMENTS)
    for name, exp in EXPERIMENTS.items():
        print(f"{name:<{width}}  {exp.summary}" + (f"  [{exp.paper}]" if exp.paper else ""))
    return 0


def _overrides(args, study=None) -> dict:
    from molrg.study import load_config_file, parse_sets
    sets, grids = {}, {}
    if args.config:
        if not os.path.isfile(args.config):
            raise ValueError(f"--config: no such file {args.config!r}")
        sets, grids = load_config_file(args.config, study=study)
    sets.update(parse_sets(args.set))
    return (sets, grids) if study else sets


def _cmd_run(args) -> int:
    from molrg.experiments import run_experiment
    run_experiment(args.name, overrides=_overrides(args), quick=args.quick, out_dir=args.out,
                   fig_dir=args.fig_dir)
    return 0


def _cmd_sweep(args) -> int:
    from molrg.experiments import SWEEPABLES, run_sweep
    from molrg.study import parse_grids
    if args.study == "list":
        for name, sw in SWEEPABLES.items():
            print(f"{name}: {sw.summary}\n    static: {', '.join(sw.static)}; numeric: {', '.join(sw.numeric)}")
        return 0
    sets, grids = _overrides(args, study=args.study)
    grids.update(parse_grids(args.grid))
    res = run_sweep(args.study, grids, overrides=sets, out_dir=args.out, batch_size=args.batch,
                    loop=args.loop)
    print(f"sweep {args.study}: {res['points']} points ({res['computed']} computed, "
          f"{res['skipped']} already done) in {res['dir']}")
    return 0


def _selected(only):
    from molrg.experiments import EXPERIMENTS
    unknown = sorted(set(only or []) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"--only: unknown experiments {unknown}; known: {', '.join(EXPERIMENTS)}")
    return [e for n, e in EXPERIMENTS.items() if not only or n in only]


def _cmd_check(args) -> int:
    from molrg.study import evaluate, run_experiment
    from molrg.study.report import write_checks
    exps = [e for e in _selected(args.only) if e.claims is not None]
    t0 = time.perf_counter()
    print("molrg check" + (" (quick)" if args.quick else ""), flush=True)
    out = args.out or tempfile.mkdtemp(prefix="molrg-check-")
    claims = []
    try:
        for exp in exps:
            path = run_experiment(exp, quick=args.quick, out_dir=out, verbose=False, plot=False)
            claims += evaluate(exp, path)
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    failed = [c for c in claims if not c.passed]
    print(f"{len(claims) - len(failed)} passed, {len(failed)} failed "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)
    if args.json:
        write_checks(claims, args.json)
        print(f"report written to {args.json}")
    return 1 if failed else 0


def _cmd_reproduce(args) -> int:
    from molrg.study import evaluate, run_experiment
    from molrg.study.report import write_checks, write_report
    from molrg.study.runner import default_fig_dir, default_out_dir
    t0 = time.perf_counter()
    fig_dir = os.path.abspath(args.fig_dir or default_fig_dir(args.quick))
    out_dir = os.path.abspath(args.out or default_out_dir(args.quick))
    print(f"== molrg reproduce{' (quick)' if args.quick else ''}: experiments, claims, report", flush=True)
    ran, claims = [], []
    for exp in _selected(args.only):
        t1 = time.perf_counter()
        path = run_experiment(exp, quick=args.quick, out_dir=out_dir, fig_dir=fig_dir)
        ran.append((exp, path, time.perf_counter() - t1))
        claims += evaluate(exp, path)
    write_checks(claims, os.path.join(fig_dir, "checks.json"))
    report = write_report(claims, ran, fig_dir, quick=args.quick, seconds=time.perf_counter() - t0)
    failed = sum(not c.passed for c in claims)
    print(f"== {len(claims) - failed} claims passed, {failed} failed; {len(ran)} experiments; "
          f"{time.perf_counter() - t0:.0f}s; report: {report}", flush=True)
    return 0


def _enable_compilation_cache() -> None:
    """A persistent XLA compilation cache: compilation dominates small runs on CPU.

    Location: $MOLRG_CACHE_DIR or ~/.cache/molrg/jax; MOLRG_CACHE_DIR=off disables it.
    """
    where = os.environ.get("MOLRG_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "molrg", "jax"))
    if where.lower() in ("off", "0", "none", ""):
        return
    try:
        import jax
        os.makedirs(where, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", where)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except Exception:  # a cache is an optimisation, never a reason to fail
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="molrg", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the experiments")
    r = sub.add_parser("run", help="run one experiment and draw its figures")
    r.add_argument("name")
    r.add_argument("--quick", action="store_true", help="small smoke-test scale (writes under */quick)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    r.add_argument("--config", default=None, help="TOML file whose [run] table sets config values "
                                                  "(experiments/NAME.toml)")
    r.add_argument("--out", default=None, help="results folder (default ./results, ./results/quick)")
    r.add_argument("--fig-dir", default=None, help="figure folder (default ./figures, ./figures/quick)")
    c = sub.add_parser("check", help="run every experiment's claims: PASS/FAIL with numbers")
    c.add_argument("--quick", action="store_true")
    c.add_argument("--json", default=None, metavar="FILE", help="write the report as JSON")
    c.add_argument("--only", nargs="*", default=None, help="only these experiments' claims")
    c.add_argument("--out", default=None, help="keep the runs' results here (default: a temporary folder)")
    p = sub.add_parser("reproduce", help="every experiment + its claims + figures/REPORT.md")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--fig-dir", default=None)
    p.add_argument("--only", nargs="*", default=None, help="only these experiments")
    w = sub.add_parser("sweep", help="run or resume a sweep (STUDY 'list' lists the studies)")
    w.add_argument("study")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of one axis (or lo:hi:num, lo:hi:numg for a geometric grid)")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    w.add_argument("--config", default=None, help="TOML/JSON file with a [sweeps.STUDY] table (set, grid)")
    w.add_argument("--out", default=None, help="parent folder (default ./results)")
    w.add_argument("--batch", type=int, default=256, help="most points per compiled call")
    w.add_argument("--loop", action="store_true", help="one point at a time (baseline)")
    args = ap.parse_args(argv)
    _enable_compilation_cache()
    try:
        return {"list": _cmd_list, "run": _cmd_run, "check": _cmd_check,
                "reproduce": _cmd_reproduce, "sweep": _cmd_sweep}[args.cmd](args)
    except ValueError as exc:
        print(f"molrg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
