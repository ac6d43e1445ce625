"""The ``molrg`` command line.

  molrg list                                  the experiment catalogue
  molrg run NAME [--quick] [--set k=v ...] [--config FILE] [--out DIR] [--fig-dir DIR]
  molrg run NAME --show-config [--quick] [--set k=v ...]     every config key, nothing run
  molrg check [--quick] [--json FILE] [--only NAME ...] [--out DIR]
  molrg reproduce [--quick] [--jobs J] [--out DIR] [--fig-dir DIR] [--only NAME ...]
  molrg sweep STUDY --grid key=v1,v2,... [--grid ...] [--set k=v] [--config FILE] [--out DIR]
  molrg sweep STUDY --show-config                            the study's keys, nothing run
  molrg ls [DIR]                              the result folders under DIR (default ./results)

``--quick`` runs write under ``results/quick`` and ``figures/quick`` unless told otherwise,
so a smoke test never overwrites the committed full-scale figures. After a run or a sweep,
``results/latest`` (under ``--out``) links to the folder just written; ``molrg.load(PATH)``
reads a result folder as pandas DataFrames.

``molrg check`` exits 0 when every claim's verdict is the one molrg expects (each claim
states its source, P0, P1 or molrg, and its expected verdict with the reason: a paper's claim
that molrg finds not to hold is an expected FAIL with the numbers that refute it) and 1 when
any verdict differs from its expectation, so it serves as a regression check.

A bad argument prints one line ``molrg: error: ...`` and exits with status 2 before any
work; Ctrl-C prints one line ``molrg: interrupted: ...`` (what was saved, how to resume)
and exits with status 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time


class _Interrupted(Exception):
    """Ctrl-C during a command, with the one line that says what was saved."""


def _cmd_list(args) -> int:
    from molrg.experiments import EXPERIMENTS
    width = max(len(n) for n in EXPERIMENTS)
    for name, exp in EXPERIMENTS.items():
        print(f"{name:<{width}}  {exp.summary}" + (f"  [{exp.paper}]" if exp.paper else ""))
    return 0


def _overrides(args, study=None):
    """``--config`` then ``--set``: ``sets`` for a run, ``(sets, grids)`` for a sweep."""
    from molrg.study import load_config_file, parse_sets
    sets, grids = {}, {}
    if args.config:
        sets, grids = load_config_file(args.config, study=study)
    sets.update(parse_sets(args.set))
    return (sets, grids) if study else sets


def _columns(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    return "\n".join("  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip() for r in [header] + rows)


def _show_run_config(exp, overrides: dict, quick: bool) -> int:
    from molrg.study.config import describe_config
    columns = {"quick": exp.quick} if exp.quick else {}
    if overrides or quick:
        cfg = exp.make_config(overrides, quick=quick)  # validated, as a run would be
        columns["value"] = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    print(f"{exp.name}: {exp.summary}")
    print(f"config keys: molrg run {exp.name} --set KEY=VALUE (lists comma-separated; "
          f"(empty) is KEY=); 'quick' is the --quick scale")
    print(describe_config(exp.config, columns))
    return 0


def _cmd_run(args) -> int:
    from molrg.experiments import get
    from molrg.study import run_experiment
    from molrg.study.runner import default_out_dir
    from molrg.study.tables import update_latest
    exp = get(args.name)
    overrides = _overrides(args)
    if args.show_config:
        return _show_run_config(exp, overrides, args.quick)
    final = os.path.join(os.path.abspath(args.out or default_out_dir(args.quick)), exp.name)
    started = time.time()
    try:
        path = run_experiment(exp, overrides=overrides, quick=args.quick, out_dir=args.out,
                              fig_dir=args.fig_dir)
    except KeyboardInterrupt:
        if _written_since(os.path.join(final, "manifest.json"), started):
            update_latest(os.path.dirname(final), final)
            raise _Interrupted(f"{exp.name}: results saved in {final}, figures not all drawn; "
                               f"rerun the same command to redo it") from None
        raise _Interrupted(f"{exp.name} stopped before it finished; nothing written to {final} (a run's "
                           f"results are written when it ends); rerun the same command to run it again") from None
    update_latest(os.path.dirname(path), path)
    return 0


def _written_since(path: str, t: float) -> bool:
    try:
        return os.stat(path).st_mtime >= t - 1.0
    except OSError:
        return False


def _show_sweep_config(sw, sets: dict, grids: dict) -> int:
    from molrg.study import apply_overrides
    from molrg.study.config import describe_config
    from molrg.study.sweep import expand_grid
    roles = {**{f: "static" for f in sw.static}, **{f: "numeric" for f in sw.numeric}}
    columns = {"role": roles}
    if sets:
        cfg = apply_overrides(sw.config, sets)
        columns["value"] = {f: getattr(cfg, f) for f in sets}
    if grids:
        n = len(expand_grid(sw, grids, sets))  # validates every point, as the sweep would
        columns["grid"] = {k: list(v) for k, v in grids.items()}
    print(f"{sw.name}: {sw.summary}")
    print(f"config keys: molrg sweep {sw.name} --grid KEY=V1,V2,... (static or numeric keys) "
          f"--set KEY=VALUE; static keys fix array shapes (one compile per combination), "
          f"numeric keys are vmapped")
    print(describe_config(sw.config, columns))
    if grids:
        print(f"{n} points")
    return 0


def _sweep_counts(folder: str) -> tuple[int, object]:
    """``(points saved, points planned)`` of a sweep folder (``"?"`` without a manifest)."""
    import json
    from molrg.study.sweep import saved_points
    done = saved_points(folder)
    try:
        with open(os.path.join(folder, "manifest.json")) as fh:
            total = json.load(fh).get("num_points", "?")
    except (OSError, ValueError):
        total = "?"
    return done, total


def _cmd_sweep(args) -> int:
    from molrg.experiments import SWEEPABLES, sweepable
    from molrg.study import parse_grids, run_sweep
    from molrg.study.results import check_writable_dir
    from molrg.study.sweep import sweep_folder
    from molrg.study.tables import update_latest
    if args.study == "list":
        for name, sw in SWEEPABLES.items():
            print(f"{name}: {sw.summary}\n    static: {', '.join(sw.static)}; numeric: {', '.join(sw.numeric)}")
        return 0
    sw = sweepable(args.study)
    sets, grids = _overrides(args, study=args.study)
    grids.update(parse_grids(args.grid))
    if args.show_config:
        return _show_sweep_config(sw, sets, grids)
    if args.batch < 1:
        raise ValueError(f"--batch: must be >= 1; got {args.batch}")
    out = check_writable_dir(args.out or "results", "--out")
    folder = sweep_folder(sw.name, grids, sets, out)
    try:
        res = run_sweep(sw, grids, overrides=sets, out_dir=out, batch_size=args.batch, loop=args.loop)
    except KeyboardInterrupt:
        if not os.path.isdir(folder):
            raise _Interrupted("sweep stopped before any point was saved; rerun the same command "
                               "to start it") from None
        update_latest(out, folder)
        done, total = _sweep_counts(folder)
        raise _Interrupted(f"{done} of {total} points saved in {folder}; rerun the same command "
                           f"to resume") from None
    link = update_latest(out, res["dir"])
    print(f"sweep {args.study}: {res['points']} points ({res['computed']} computed, "
          f"{res['skipped']} already done) in {res['dir']}" + (f" (linked as {link})" if link else ""))
    return 0


def _cmd_ls(args) -> int:
    from molrg.study.tables import list_results
    root = args.dir or "results"
    rows = list_results(root)
    if not rows:
        print(f"no result folders under {os.path.abspath(root)}")
        return 0
    lines = []
    for r in rows:
        points = f"{r['done']}/{r['total']}" if r["kind"] == "sweep" else "-"
        lines.append([r["folder"] + (" (latest)" if r["latest"] else ""), r["kind"], r["name"], points,
                      r["status"], r["date"]])
    print(_columns(["folder", "kind", "study", "points", "status", "date"], lines))
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
    from molrg.study.results import check_writable_dir, check_writable_file
    exps = [e for e in _selected(args.only) if e.claims is not None]
    if args.out:
        check_writable_dir(args.out, "--out")
    if args.json:
        check_writable_file(args.json, "--json")
    t0 = time.perf_counter()
    print("molrg check" + (" (quick)" if args.quick else ""), flush=True)
    out = args.out or tempfile.mkdtemp(prefix="molrg-check-")
    claims, done = [], []
    try:
        for exp in exps:
            path = run_experiment(exp, quick=args.quick, out_dir=out, verbose=False, plot=False)
            claims += evaluate(exp, path)
            done.append(exp.name)
    except KeyboardInterrupt:
        kept = f"; their runs are in {out}" if args.out and done else ""
        raise _Interrupted(f"{len(done)} of {len(exps)} experiments checked, no report written{kept}; "
                           f"rerun the same command to check again") from None
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    failed = [c for c in claims if not c.passed]
    unexpected = [c for c in claims if not c.as_expected]
    print(f"{len(claims) - len(failed)} passed, {len(failed)} failed; "
          f"{len(claims) - len(unexpected)} of {len(claims)} as expected "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)
    for c in unexpected:
        print(f"  UNEXPECTED {c.verdict} (expected {c.expected}): {c.name}", flush=True)
    if args.json:
        write_checks(claims, args.json)
        print(f"report written to {args.json}")
    return 1 if unexpected else 0


def _cmd_reproduce(args) -> int:
    from molrg.study import evaluate, run_experiment
    from molrg.study.report import write_checks, write_report
    from molrg.study.results import check_writable_dir
    from molrg.study.runner import default_fig_dir, default_out_dir
    t0 = time.perf_counter()
    if args.jobs < 1:
        raise ValueError(f"--jobs: must be >= 1; got {args.jobs}")
    exps = _selected(args.only)
    fig_dir = check_writable_dir(args.fig_dir or default_fig_dir(args.quick), "--fig-dir")
    out_dir = check_writable_dir(args.out or default_out_dir(args.quick), "--out")
    print(f"== molrg reproduce{' (quick)' if args.quick else ''}: experiments, claims, report", flush=True)
    ran, claims = [], []
    if args.jobs > 1 and len(exps) > 1:
        seconds = _run_parallel(exps, args.jobs, args.quick, out_dir, fig_dir)
        for exp in exps:  # claims in catalogue order, read back from what the workers saved
            path = os.path.join(out_dir, exp.name)
            ran.append((exp, path, seconds[exp.name]))
            claims += evaluate(exp, path)
    else:
        try:
            for exp in exps:
                t1 = time.perf_counter()
                path = run_experiment(exp, quick=args.quick, out_dir=out_dir, fig_dir=fig_dir)
                ran.append((exp, path, time.perf_counter() - t1))
                claims += evaluate(exp, path)
        except KeyboardInterrupt:
            rest = [e.name for e in exps[len(ran):]]
            raise _Interrupted(f"{len(ran)} of {len(exps)} experiments finished (results in {out_dir}), "
                               f"no report written; rerun the same command to redo all, or "
                               f"--only {' '.join(rest)} for the rest") from None
    write_checks(claims, os.path.join(fig_dir, "checks.json"))
    report = write_report(claims, ran, fig_dir, quick=args.quick, seconds=time.perf_counter() - t0)
    failed = sum(not c.passed for c in claims)
    unexpected = [c.name for c in claims if not c.as_expected]
    print(f"== {len(claims) - failed} claims passed, {failed} failed, "
          f"{len(claims) - len(unexpected)} of {len(claims)} as expected; {len(ran)} experiments; "
          f"{time.perf_counter() - t0:.0f}s; report: {report}", flush=True)
    for name in unexpected:
        print(f"   unexpected verdict: {name}", flush=True)
    return 0


def _run_parallel(exps, jobs: int, quick: bool, out_dir: str, fig_dir: str) -> dict:
    """Runs ``exps`` in ``jobs`` worker processes (``molrg run``'s work, one experiment each),
    costliest first (:attr:`molrg.study.Experiment.cost`), relaying their output with a
    ``[name]`` prefix; returns each experiment's seconds.

    Why processes: on a small machine the long experiments leave cores idle (the certified
    network grid runs at about 1.2 of 2 cores), and another experiment fills them. A worker
    that fails stops the run: the others are stopped, nothing is reported, and the error
    names the experiment (its output is above). Each worker writes only its own results
    folder and figures, each atomically, as ``molrg run`` does.
    """
    import signal
    import subprocess
    import threading

    queue = sorted(exps, key=lambda e: -float(e.cost))  # stable: catalogue order among equals
    total = len(queue)
    running, seconds, relays = {}, {}, []

    def relay(name, stream):
        for line in stream:
            print(f"[{name}] {line}", end="", flush=True)

    def start(exp):
        code = ("import sys; from molrg.cli import _reproduce_worker; "
                "sys.exit(_reproduce_worker(*sys.argv[1:]))")
        # SIGINT's default action in the worker: stop_all's Ctrl-C must reach it even when this
        # process was started with SIGINT ignored (`cmd &` in a non-interactive shell)
        proc = subprocess.Popen([sys.executable, "-c", code, exp.name, "1" if quick else "0", out_dir, fig_dir],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        t = threading.Thread(target=relay, args=(exp.name, proc.stdout), daemon=True)
        t.start()
        relays.append(t)
        running[exp.name] = (proc, time.perf_counter())

    def stop_all():  # Ctrl-C, as a user would: each worker removes its unfinished folder
        for proc, _ in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, _ in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    print(f"== {total} experiments in {jobs} worker processes, costliest first", flush=True)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                start(queue.pop(0))
            time.sleep(0.2)
            for name, (proc, t1) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[name]
                if rc != 0:
                    stop_all()
                    for t in relays:
                        t.join(timeout=5)
                    raise OSError(f"experiment {name} failed (worker exit status {rc}; its output is above); "
                                  f"no report written; rerun with --only {name} to see it alone")
                seconds[name] = time.perf_counter() - t1
                print(f"== {name} finished in {seconds[name]:.0f} s ({len(seconds)} of {total})", flush=True)
    except KeyboardInterrupt:
        stop_all()
        done = sorted(seconds)
        rest = [e.name for e in exps if e.name not in seconds]
        raise _Interrupted(f"{len(done)} of {total} experiments finished (results in {out_dir}), no report "
                           f"written; rerun the same command to redo all, or --only {' '.join(rest)} for the "
                           f"rest") from None
    for t in relays:
        t.join(timeout=5)
    return seconds


def _reproduce_worker(name: str, quick: str, out_dir: str, fig_dir: str) -> int:
    """One experiment of ``molrg reproduce --jobs`` (a worker process)."""
    from molrg.experiments import get
    from molrg.study import run_experiment
    _enable_compilation_cache()
    try:
        run_experiment(get(name), quick=quick == "1", out_dir=out_dir, fig_dir=fig_dir)
    except KeyboardInterrupt:
        return 130
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


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="molrg", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the experiments")
    r = sub.add_parser("run", help="run one experiment and draw its figures")
    r.add_argument("name")
    r.add_argument("--quick", action="store_true", help="small smoke-test scale (writes under */quick)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (--show-config lists the keys)")
    r.add_argument("--config", default=None, help="TOML file whose [run] table sets config values "
                                                  "(experiments/NAME.toml)")
    r.add_argument("--out", default=None, help="results folder (default ./results, ./results/quick)")
    r.add_argument("--fig-dir", default=None, help="figure folder (default ./figures, ./figures/quick)")
    r.add_argument("--show-config", action="store_true",
                   help="print every config key with its type, default, quick value and meaning; run nothing")
    c = sub.add_parser("check", help="run every experiment's claims: PASS/FAIL with numbers; "
                       "exit 1 when a verdict differs from the one expected")
    c.add_argument("--quick", action="store_true")
    c.add_argument("--json", default=None, metavar="FILE", help="write the report as JSON")
    c.add_argument("--only", nargs="*", default=None, help="only these experiments' claims")
    c.add_argument("--out", default=None, help="keep the runs' results here (default: a temporary folder)")
    p = sub.add_parser("reproduce", help="every experiment + its claims + figures/REPORT.md")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--fig-dir", default=None)
    p.add_argument("--only", nargs="*", default=None, help="only these experiments")
    p.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="run J experiments at once, each in its own process, costliest first (default 1)")
    w = sub.add_parser("sweep", help="run or resume a sweep (STUDY 'list' lists the studies)")
    w.add_argument("study")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of one axis (or lo:hi:num, lo:hi:numg for a geometric grid)")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed config value (--show-config lists the keys)")
    w.add_argument("--config", default=None, help="TOML/JSON file with a [sweeps.STUDY] table (set, grid)")
    w.add_argument("--out", default=None, help="parent folder (default ./results)")
    w.add_argument("--batch", type=int, default=256, help="most points per compiled call")
    w.add_argument("--loop", action="store_true", help="one point at a time (baseline)")
    w.add_argument("--show-config", action="store_true",
                   help="print every config key with its type, default, role and meaning; run nothing")
    ls = sub.add_parser("ls", help="list result folders: study, points, status, date")
    ls.add_argument("dir", nargs="?", default=None, help="the results folder (default ./results)")
    return ap


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.cmd in ("run", "check", "reproduce", "sweep"):
            _enable_compilation_cache()
        return {"list": _cmd_list, "run": _cmd_run, "check": _cmd_check, "reproduce": _cmd_reproduce,
                "sweep": _cmd_sweep, "ls": _cmd_ls}[args.cmd](args)
    except ValueError as exc:
        print(f"molrg: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine failed us (a full disk, a vanished folder): one line, exit 1
        print(f"molrg: error: {exc}", file=sys.stderr)
        return 1
    except (_Interrupted, KeyboardInterrupt) as exc:
        # one line, no traceback: what was saved and how to go on (a progress line may be
        # waiting for its end of line on a terminal)
        note = f": {exc}" if isinstance(exc, _Interrupted) else ""
        print(("\n" if sys.stderr.isatty() else "") + f"molrg: interrupted{note}", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
