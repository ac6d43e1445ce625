"""The ``molrg`` command line.

  molrg list                                  the experiment catalogue
  molrg run NAME [--quick] [--set k=v ...] [--out DIR] [--fig-dir DIR]
  molrg check [--quick] [--json FILE] [--only NAME ...]
  molrg reproduce [--quick] [--out DIR] [--fig-dir DIR]   checks + every experiment + report
  molrg sweep STUDY --grid key=v1,v2,... [--grid ...] [--set k=v] [--config FILE] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time


def _cmd_list(args) -> int:
    from molrg.runner import experiments
    exps = experiments()
    width = max(len(n) for n in exps)
    for name, exp in exps.items():
        print(f"{name:<{width}}  {exp.summary}" + (f"  [{exp.paper}]" if exp.paper else ""))
    return 0


def _cmd_run(args) -> int:
    from molrg.runner import parse_sets, run_experiment
    run_experiment(args.name, overrides=parse_sets(args.set), quick=args.quick, out_dir=args.out,
                   fig_dir=args.fig_dir)
    return 0


def _cmd_sweep(args) -> int:
    from molrg.runner import parse_sets
    from molrg.sweep import load_config_file, parse_grids, run_sweep, sweepables
    if args.study == "list":
        for name, sw in sweepables().items():
            print(f"{name}: {sw.summary}\n    static: {', '.join(sw.static)}; numeric: {', '.join(sw.numeric)}")
        return 0
    sets, grids = {}, {}
    if args.config:
        sets, grids = load_config_file(args.config)
    sets.update(parse_sets(args.set))
    grids.update(parse_grids(args.grid))
    res = run_sweep(args.study, grids, overrides=sets, out_dir=args.out, batch_size=args.batch,
                    loop=args.loop)
    print(f"sweep {args.study}: {res['points']} points ({res['computed']} computed, "
          f"{res['skipped']} already done) in {res['dir']}")
    return 0


def _write_check_report(claims, path):
    from molrg.checks import report
    from molrg.runner import provenance, write_json_atomic
    payload = report(claims)
    payload["provenance"] = provenance()
    write_json_atomic(path, payload)


def _cmd_check(args) -> int:
    from molrg.checks import run_checks
    t0 = time.perf_counter()
    print("molrg check" + (" (quick)" if args.quick else ""), flush=True)
    claims = run_checks(quick=args.quick, only=args.only)
    failed = [c for c in claims if not c.passed]
    print(f"{len(claims) - len(failed)} passed, {len(failed)} failed "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)
    if args.json:
        _write_check_report(claims, args.json)
        print(f"report written to {args.json}")
    return 1 if failed else 0


def _cmd_reproduce(args) -> int:
    from molrg.checks import run_checks
    from molrg.runner import experiments, provenance, run_experiment
    t0 = time.perf_counter()
    fig_dir = os.path.abspath(args.fig_dir or "figures")
    out_dir = os.path.abspath(args.out or "results")
    print(f"== molrg reproduce{' (quick)' if args.quick else ''}: checks, experiments, report", flush=True)
    claims = run_checks(quick=args.quick)
    _write_check_report(claims, os.path.join(fig_dir, "checks.json"))
    ran = []
    for name, exp in experiments().items():
        if args.only and name not in args.only:
            continue
        t1 = time.perf_counter()
        path = run_experiment(name, quick=args.quick, out_dir=out_dir, fig_dir=fig_dir)
        ran.append((exp, path, time.perf_counter() - t1))
    _write_report(claims, ran, fig_dir, quick=args.quick, seconds=time.perf_counter() - t0,
                  prov=provenance())
    failed = sum(not c.passed for c in claims)
    print(f"== {len(claims) - failed} claims passed, {failed} failed; {len(ran)} experiments; "
          f"{time.perf_counter() - t0:.0f}s; report: {os.path.join(fig_dir, 'REPORT.md')}", flush=True)
    return 0


def _write_report(claims, ran, fig_dir, *, quick, seconds, prov):
    from molrg.runner import load_results
    lines = ["# molrg report", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} "
             f"by `molrg reproduce{' --quick' if quick else ''}` in {seconds:.0f} s "
             f"(molrg {prov['molrg']}, git {prov['git']}, jax {prov['jax']}, devices {prov['devices']}).",
             "", "## Claims", "",
             "| verdict | claim | measured | tolerance |", "|---|---|---|---|"]
    from molrg.checks import _fmt_measured
    for c in claims:
        fig = f" ([figure]({c.figure}))" if c.figure else ""
        lines.append(f"| **{c.verdict}** | `{c.name}`: {c.statement}{fig} | {_fmt_measured(c.measured)} | {c.tolerance} |")
    lines += ["", "## Experiments", ""]
    for exp, path, dt in ran:
        res = load_results(path)
        lines += [f"### {exp.name}" + (f" — {exp.paper}" if exp.paper else ""), "", exp.summary + ".", "",
                  f"Results: `{os.path.relpath(path, os.path.dirname(fig_dir))}` ({dt:.0f} s).", ""]
        summary = res["scalars"].get("summary")
        if summary:
            lines += [summary, ""]
        stem_png = [f for f in sorted(os.listdir(fig_dir)) if f.startswith(exp.name) and f.endswith(".png")]
        for f in stem_png:
            lines.append(f"![{f}]({f})")
        lines.append("")
    path = os.path.join(fig_dir, "REPORT.md")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


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
    r.add_argument("--quick", action="store_true", help="small smoke-test scale")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    r.add_argument("--out", default=None, help="results folder (default ./results)")
    r.add_argument("--fig-dir", default=None, help="figure folder (default ./figures)")
    c = sub.add_parser("check", help="run the theorem checks")
    c.add_argument("--quick", action="store_true")
    c.add_argument("--json", default=None, metavar="FILE", help="write the report as JSON")
    c.add_argument("--only", nargs="*", default=None, help="run only these checks")
    p = sub.add_parser("reproduce", help="checks + every experiment + figures/REPORT.md")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--fig-dir", default=None)
    p.add_argument("--only", nargs="*", default=None, help="only these experiments")
    w = sub.add_parser("sweep", help="run or resume a sweep (STUDY 'list' lists the studies)")
    w.add_argument("study")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of one axis (or lo:hi:num, lo:hi:numg for a geometric grid)")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    w.add_argument("--config", default=None, help="TOML/JSON file with [set] and [grid] tables")
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
