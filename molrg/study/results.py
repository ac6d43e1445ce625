"""Saved results: the one atomic-write helper, JSON/CSV/NPZ files, provenance, figures.

Every file molrg writes goes through :func:`atomic_write`: a temporary file in the same
folder, renamed over the destination only once it is complete, so a reader (or a resumed
run) sees the old file or the new one, never a torn one, even after ``kill -9``.

A run's folder holds ``manifest.json`` (config, seed, versions, git revision, devices,
timing; written last), ``results.json`` (scalars and small nested data), one CSV per table
and ``arrays.npz``; :func:`load_results` reads it back.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import subprocess
import sys

import numpy as np

from molrg._io import atomic_write  # the one helper, in the core so checkpoints share it


@dataclasses.dataclass
class Results:
    """What an experiment's ``run`` returns: JSON scalars, tidy tables (lists of row dicts), arrays."""

    scalars: dict = dataclasses.field(default_factory=dict)
    tables: dict = dataclasses.field(default_factory=dict)
    arrays: dict = dataclasses.field(default_factory=dict)


def jsonable(obj):
    """``obj`` with dataclasses, NumPy/JAX arrays and scalars turned into JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
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
    """Writes ``payload`` (after :func:`jsonable`) as JSON through :func:`atomic_write`."""
    with atomic_write(path, fsync=fsync) as fh:
        json.dump(jsonable(payload), fh, indent=2)


def write_table(path: str, rows: list[dict]) -> None:
    """Writes row dicts as a CSV (columns in order of first appearance), atomically."""
    keys: list[str] = []
    for row in rows:
        for k in row:
            if k not in keys:
                keys.append(k)
    with atomic_write(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: jsonable(v) for k, v in row.items()})


def _cell(v):
    if v in ("", None):
        return None
    if v in ("True", "False"):
        return v == "True"
    try:
        return float(v)
    except ValueError:
        return v


def read_table(path: str) -> list[dict]:
    """A CSV written by :func:`write_table`: numbers as floats, True/False as bools, empty as None."""
    with open(path, newline="") as fh:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def load_results(results_dir: str) -> dict:
    """Everything a run saved: ``{"manifest", "scalars", "tables" (row dicts), "arrays"}``."""
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


def git_revision() -> str | None:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it; None outside git."""
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
    """What produced a result: versions, git revision, devices, precision, platform, argv."""
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


def save_figure(fig, fig_dir: str, stem: str) -> list[str]:
    """Saves ``fig`` as PNG and PDF through :func:`atomic_write`, closes it, returns the paths."""
    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "pdf"):
        path = os.path.join(fig_dir, f"{stem}.{ext}")
        with atomic_write(path, "wb", fsync=False) as fh:
            fig.savefig(fh, dpi=150, bbox_inches="tight", format=ext)
        paths.append(path)
    plt.close(fig)
    return paths
