"""Running an experiment: validate the config, compute, save atomically, then draw.

An :class:`Experiment` is data: a name, a frozen config of paper-scale defaults, quick
overrides for a smoke run, and three functions,

* ``run(cfg, verbose) -> Results``: computes tables/arrays/scalars (it never draws);
* ``plot(results_dir, fig_dir) -> list[str]``: draws figures from the *saved* results;
* ``claims(results) -> list[Claim]`` (optional): the claims the experiment tests, computed
  from its saved results (``results`` as :func:`~molrg.study.results.load_results` returns).

:func:`run_experiment` validates overrides before any work, writes every file of a run into
a temporary folder next to the destination and renames it into place only when the run has
finished, so an interrupted run never leaves a half-written result that looks whole.
This layer knows no particular experiment: the catalogue lives in :mod:`molrg.experiments`.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import socket
import tempfile
import time
from typing import Any, Callable

import numpy as np

from molrg._io import default_mode
from molrg.study.config import apply_overrides
from molrg.study.results import Results, check_writable_dir, provenance, write_json_atomic, write_table


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One experiment of the catalogue (see the module docstring)."""

    name: str
    summary: str
    config: Any  # a frozen dataclass instance of defaults
    run: Callable
    plot: Callable
    quick: dict = dataclasses.field(default_factory=dict)
    paper: str = ""  # which paper figure/claim it reproduces
    claims: Callable | None = None
    #: claims expected to FAIL at quick (smoke-test) scale, each with its reason. The claims' own
    #: expectations describe the full scale; :func:`molrg.study.claims.evaluate` applies these to
    #: results of a quick run, so ``molrg check --quick`` is a regression check too.
    quick_fails: dict = dataclasses.field(default_factory=dict)
    #: seconds the default run took on the 2-core reference machine (measured); ``molrg
    #: reproduce --jobs`` starts the costliest experiments first. A scheduling hint only.
    cost: float = 0.0

    def make_config(self, overrides: dict | None = None, *, quick: bool = False):
        """The config a run uses: defaults, then the quick overrides, then ``overrides``."""
        cfg = apply_overrides(self.config, self.quick) if quick else self.config
        return apply_overrides(cfg, overrides or {})


def default_fig_dir(quick: bool = False) -> str:
    return os.path.join(os.getcwd(), "figures", *(["quick"] if quick else []))


def default_out_dir(quick: bool = False) -> str:
    return os.path.join(os.getcwd(), "results", *(["quick"] if quick else []))


def _partial_prefix(name: str) -> str:
    """``.NAME.partial-PID@HOST-``: the temporary folder of a run names its owner."""
    return f".{name}.partial-{os.getpid()}@{socket.gethostname()}-"


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch; Linux ``/proc``), else None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/stat") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _owner_gone(pid: int, made: float) -> bool:
    """Whether the process that made a folder at time ``made`` is gone (or its PID reused)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    started = _process_start(pid)
    return started is not None and started > made + 2.0  # a newer process under a reused PID


def _remove_dead_partials(out_dir: str, name: str) -> None:
    """Removes the leftover folders of runs of ``name`` on this host whose process is gone.

    A run killed by ``kill -9`` (or a power loss) leaves its ``.NAME.partial-PID@HOST-*``
    folder (and, killed between its two renames, ``NAME.old-PID``). Such a folder is removed
    when its PID is no longer alive or belongs to a process started after the folder was
    made (a reused PID). Folders of other hosts (a shared file system) and of live runs are
    left alone; folders without an owner in their name (older molrg) go once a day old.
    """
    host = socket.gethostname()
    try:
        entries = os.listdir(out_dir)
    except OSError:
        return
    for entry in entries:
        if entry.startswith(f".{name}.partial-"):
            owner = entry[len(f".{name}.partial-"):].rsplit("-", 1)[0]  # PID@HOST
            pid, _, owner_host = owner.partition("@")
        elif entry.startswith(f"{name}.old-"):
            pid, owner_host = entry[len(f"{name}.old-"):], host
        else:
            continue
        path = os.path.join(out_dir, entry)
        try:
            made = os.stat(path).st_mtime
        except OSError:
            continue
        if pid.isdigit():
            gone = owner_host == host and _owner_gone(int(pid), made)
        else:
            gone = time.time() - made > 86400.0
        if gone:
            shutil.rmtree(path, ignore_errors=True)


def run_experiment(exp: Experiment, *, overrides: dict | None = None, quick: bool = False,
                   out_dir: str | None = None, fig_dir: str | None = None,
                   verbose: bool = True, plot: bool = True) -> str:
    """Runs ``exp``, saves its results, draws its figures (``plot``); returns the results folder.

    The folder is ``out_dir/NAME`` (default ``./results``, ``./results/quick`` for ``quick``);
    figures go to ``fig_dir`` (default ``./figures``, ``./figures/quick`` for ``quick``).
    The config, and that both folders can be written, are checked before any work
    (``ValueError`` naming ``--set KEY``, ``--out`` or ``--fig-dir``).
    """
    cfg = exp.make_config(overrides, quick=quick)  # validates before any work
    # the folders too: a read-only or file-shaped --fig-dir must not surface after the computation
    out_dir = check_writable_dir(out_dir or default_out_dir(quick), "--out")
    fig_dir = fig_dir or default_fig_dir(quick)
    fig_dir = check_writable_dir(fig_dir, "--fig-dir") if plot else os.path.abspath(fig_dir)
    final = os.path.join(out_dir, exp.name)
    os.makedirs(out_dir, exist_ok=True)
    _remove_dead_partials(out_dir, exp.name)
    tmp = tempfile.mkdtemp(dir=out_dir, prefix=_partial_prefix(exp.name))
    os.chmod(tmp, default_mode(directory=True))  # mkdtemp's 0o700 -> an ordinary folder's mode
    t0 = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        if verbose:
            print(f"[{exp.name}] running{' (quick)' if quick else ''}: {exp.summary}", flush=True)
        res: Results = exp.run(cfg, verbose=verbose)
        for tname, rows in res.tables.items():
            write_table(os.path.join(tmp, f"{tname}.csv"), rows)
        # always written (empty when the run has no arrays): every run folder has the same files
        np.savez(os.path.join(tmp, "arrays.npz"), **{k: np.asarray(v) for k, v in res.arrays.items()})
        write_json_atomic(os.path.join(tmp, "results.json"), res.scalars)
        manifest = {
            "experiment": exp.name, "summary": exp.summary, "paper": exp.paper, "quick": quick,
            "config": cfg, "seed": getattr(cfg, "seed", None), "overrides": overrides or {},
            "started": started, "seconds": time.perf_counter() - t0,
            "tables": sorted(res.tables), "arrays": sorted(res.arrays),
            "provenance": provenance(),
        }
        write_json_atomic(os.path.join(tmp, "manifest.json"), manifest)  # written last: marks completeness
        if os.path.exists(final):
            old = final + f".old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    figs = exp.plot(final, fig_dir) if plot else []
    if figs:  # the folder names its figures (the report lists exactly these)
        write_json_atomic(os.path.join(final, "figures.json"), [os.path.abspath(f) for f in figs])
    if verbose:
        print(f"[{exp.name}] done in {time.perf_counter() - t0:.1f}s; results in {final}", flush=True)
        for f in figs:
            print(f"[{exp.name}] figure {f}", flush=True)
    return final
