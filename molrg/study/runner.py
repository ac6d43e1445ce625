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
import tempfile
import time
from typing import Any, Callable

import numpy as np

from molrg.study.config import apply_overrides
from molrg.study.results import Results, provenance, write_json_atomic, write_table


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

    def make_config(self, overrides: dict | None = None, *, quick: bool = False):
        """The config a run uses: defaults, then the quick overrides, then ``overrides``."""
        cfg = apply_overrides(self.config, self.quick) if quick else self.config
        return apply_overrides(cfg, overrides or {})


def default_fig_dir(quick: bool = False) -> str:
    return os.path.join(os.getcwd(), "figures", *(["quick"] if quick else []))


def default_out_dir(quick: bool = False) -> str:
    return os.path.join(os.getcwd(), "results", *(["quick"] if quick else []))


def run_experiment(exp: Experiment, *, overrides: dict | None = None, quick: bool = False,
                   out_dir: str | None = None, fig_dir: str | None = None,
                   verbose: bool = True, plot: bool = True) -> str:
    """Runs ``exp``, saves its results, draws its figures (``plot``); returns the results folder.

    The folder is ``out_dir/NAME`` (default ``./results``, ``./results/quick`` for ``quick``);
    figures go to ``fig_dir`` (default ``./figures``, ``./figures/quick`` for ``quick``).
    """
    cfg = exp.make_config(overrides, quick=quick)  # validates before any work
    out_dir = os.path.abspath(out_dir or default_out_dir(quick))
    fig_dir = os.path.abspath(fig_dir or default_fig_dir(quick))
    final = os.path.join(out_dir, exp.name)
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=out_dir, prefix=f".{exp.name}.partial-")
    t0 = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        if verbose:
            print(f"[{exp.name}] running{' (quick)' if quick else ''}: {exp.summary}", flush=True)
        res: Results = exp.run(cfg, verbose=verbose)
        for tname, rows in res.tables.items():
            write_table(os.path.join(tmp, f"{tname}.csv"), rows)
        if res.arrays:
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
    if verbose:
        print(f"[{exp.name}] done in {time.perf_counter() - t0:.1f}s; results in {final}", flush=True)
        for f in figs:
            print(f"[{exp.name}] figure {f}", flush=True)
    return final
