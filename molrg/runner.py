"""Experiments as data: a frozen config, overrides, saved results, figures from results.

An experiment is registered with :func:`register` and has

* ``config``: a frozen dataclass of defaults (paper scale); ``quick``: overrides for a
  fast smoke run;
* ``run(cfg, progress) -> Results``: computes and returns tables/arrays/scalars (it
  never draws);
* ``plot(results_dir, fig_dir) -> list[str]``: draws figures from the *saved* results.

:func:`run_experiment` validates overrides before any work, writes every file of a run
into a temporary folder next to the destination and renames it into place only when
the run has finished, so an interrupted run never leaves a half-written result that
looks whole. Each result folder holds ``manifest.json`` (config, seed, versions, git
revision, devices, timing), ``results.json`` (scalars and small tables), one CSV per
table and ``arrays.npz``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import types
import typing
from typing import Any, Callable

import numpy as np

_REGISTRY: dict[str, "Experiment"] = {}


@dataclasses.dataclass
class Results:
    """What an experiment returns: JSON scalars, tidy tables (list of dict rows), arrays."""

    scalars: dict = dataclasses.field(default_factory=dict)
    tables: dict = dataclasses.field(default_factory=dict)
    arrays: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    config: Any  # a frozen dataclass instance of defaults
    run: Callable
    plot: Callable
    quick: dict = dataclasses.field(default_factory=dict)
    paper: str = ""  # which paper figure/claim it reproduces


def memoized_run(run):
    """Memoise an experiment's ``run(cfg, verbose)`` per config within one process.

    ``molrg reproduce`` runs ``molrg check`` before the experiments; a check whose full-mode
    claim needs exactly an experiment's default run (the same frozen config, the same seeds,
    the same program) then leaves it to the experiment to reuse instead of training the same
    networks twice. Configs are frozen dataclasses, so equal configs hash equal; a different
    config (any override) runs afresh. ``wrapper.memo`` holds the cache.
    """
    memo: dict = {}

    @functools.wraps(run)
    def wrapper(cfg, verbose: bool = True):
        if cfg in memo:
            if verbose:
                print("  reusing the results computed for this exact config earlier in this "
                      "process (by molrg check)", flush=True)
            return memo[cfg]
        memo[cfg] = res = run(cfg, verbose)
        return res

    wrapper.memo = memo
    return wrapper


def register(name: str, *, summary: str, config, run, plot, quick=None, paper: str = ""):
    _REGISTRY[name] = Experiment(name, summary, config, run, plot, dict(quick or {}), paper)


def experiments() -> dict[str, Experiment]:
    _load_all()
    return dict(_REGISTRY)


def _load_all():
    # Importing the modules registers their experiments.
    import molrg.experiments  # noqa: F401


# ------------------------------------------------------------------------------------------
# Config overrides
# ------------------------------------------------------------------------------------------
def _parse_value(text: str, typ, key: str, flag: str = "--set"):
    origin = typing.get_origin(typ)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if text.lower() in ("none", "null") and len(args) < len(typing.get_args(typ)):
            return None
        return _parse_value(text, args[0], key, flag)
    if origin in (tuple, list):
        (elem, *rest) = typing.get_args(typ) or (str,)
        parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
        return tuple(_parse_value(p.strip(), elem, key, flag) for p in parts)
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
        return typ(text)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} {key}: cannot read {text!r} as {getattr(typ, '__name__', typ)}") from None


def apply_overrides(cfg, overrides: dict[str, Any]):
    """A copy of ``cfg`` with ``overrides`` (strings are parsed by the field's type)."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"--set {key}: unknown config key; known keys: {', '.join(sorted(names))}")
        changes[key] = _parse_value(value, hints[key], key) if isinstance(value, str) else value
    new = dataclasses.replace(cfg, **changes)
    check = getattr(new, "validate", None)
    if check is not None:
        check()
    return new


def parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


# ------------------------------------------------------------------------------------------
# Provenance
# ------------------------------------------------------------------------------------------
def git_revision() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    import jax
    import matplotlib
    import optax
    import scipy

    import molrg
    return {
        "molrg": molrg.__version__,
        "git": git_revision(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
        "platform": platform.platform(),
        "argv": sys.argv,
    }


def _jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


def write_json_atomic(path: str, payload, *, fsync: bool = True) -> None:
    """Writes JSON to a temporary file in the same folder, then renames it into place.

    A reader sees the old file or the new one, never a partial one, even if the process
    is killed (``kill -9``) mid-write. ``fsync`` also makes it durable across a power loss.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(_jsonable(payload), fh, indent=2)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_table(path: str, rows: list[dict]) -> None:
    keys: list[str] = []
    for row in rows:
        for k in row:
            if k not in keys:
                keys.append(k)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _jsonable(v) for k, v in row.items()})


def read_table(path: str) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        parsed = {}
        for k, v in row.items():
            try:
                parsed[k] = float(v) if v not in ("", None) else None
            except ValueError:
                parsed[k] = v
        out.append(parsed)
    return out


def load_results(results_dir: str) -> dict:
    """Everything a run saved: manifest, scalars, tables (as row dicts) and arrays."""
    with open(os.path.join(results_dir, "manifest.json")) as fh:
        manifest = json.load(fh)
    with open(os.path.join(results_dir, "results.json")) as fh:
        scalars = json.load(fh)
    tables = {name: read_table(os.path.join(results_dir, f"{name}.csv")) for name in manifest["tables"]}
    arrays = {}
    npz = os.path.join(results_dir, "arrays.npz")
    if os.path.exists(npz):
        with np.load(npz) as data:
            arrays = {k: data[k] for k in data.files}
    return {"manifest": manifest, "scalars": scalars, "tables": tables, "arrays": arrays}


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------
class Progress:
    """A plain-text progress line with ETA on stderr (no dependency)."""

    def __init__(self, total: int, desc: str, *, stream=None, enabled: bool = True):
        self.total, self.desc, self.done = max(int(total), 1), desc, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, k: int = 1, note: str = "") -> None:
        self.done += k
        now = time.perf_counter()
        if not self.enabled or (now - self._last < 0.5 and self.done < self.total):
            return
        self._last = now
        el = now - self.t0
        eta = el / self.done * (self.total - self.done) if self.done else float("nan")
        frac = self.done / self.total
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        end = "\n" if self.done >= self.total else "\r"
        print(f"  {self.desc} [{bar}] {self.done}/{self.total} {el:5.1f}s elapsed, ETA {eta:5.1f}s {note}",
              end=end, file=self.stream, flush=True)


def default_fig_dir() -> str:
    return os.path.join(os.getcwd(), "figures")


def default_out_dir() -> str:
    return os.path.join(os.getcwd(), "results")


def run_experiment(name: str, *, overrides: dict | None = None, quick: bool = False,
                   out_dir: str | None = None, fig_dir: str | None = None,
                   verbose: bool = True) -> str:
    """Runs experiment ``name`` and draws its figures; returns the results folder."""
    exps = experiments()
    if name not in exps:
        raise ValueError(f"experiment: unknown name {name!r}; known: {', '.join(sorted(exps))}")
    exp = exps[name]
    cfg = exp.config
    if quick:
        cfg = apply_overrides(cfg, exp.quick)
    cfg = apply_overrides(cfg, overrides or {})  # validates before any work
    out_dir = os.path.abspath(out_dir or default_out_dir())
    fig_dir = os.path.abspath(fig_dir or default_fig_dir())
    final = os.path.join(out_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=out_dir, prefix=f".{name}.partial-")
    t0 = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        if verbose:
            print(f"[{name}] running{' (quick)' if quick else ''}: {exp.summary}", flush=True)
        res: Results = exp.run(cfg, verbose=verbose)
        for tname, rows in res.tables.items():
            write_table(os.path.join(tmp, f"{tname}.csv"), rows)
        if res.arrays:
            np.savez(os.path.join(tmp, "arrays.npz"), **{k: np.asarray(v) for k, v in res.arrays.items()})
        write_json_atomic(os.path.join(tmp, "results.json"), res.scalars)
        manifest = {
            "experiment": name, "summary": exp.summary, "paper": exp.paper, "quick": quick,
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
    figs = exp.plot(final, fig_dir)
    if verbose:
        print(f"[{name}] done in {time.perf_counter() - t0:.1f}s; results in {final}", flush=True)
        for f in figs:
            print(f"[{name}] figure {f}", flush=True)
    return final


def save_figure(fig, fig_dir: str, stem: str) -> list[str]:
    """Saves ``fig`` as PNG and PDF atomically (temp file, then rename)."""
    os.makedirs(fig_dir, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = os.path.join(fig_dir, f"{stem}.{ext}")
        fd, tmp = tempfile.mkstemp(dir=fig_dir, prefix=".tmp-", suffix=f".{ext}")
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", format=ext)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        paths.append(path)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return paths
