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
import functools
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile

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


def check_writable_dir(path: str, name: str) -> str:
    """``path`` as an absolute folder molrg can create and write in, checked before any work.

    Creates nothing: the nearest existing folder on the way to ``path`` must be a folder
    (not a file) in which a temporary file can be made.

    Args:
      path: the folder (it need not exist yet).
      name: the argument it came from (``--out``), named in the error.

    Returns:
      The absolute path.

    Raises:
      ValueError: ``path`` or one of its parents is a file, or the folder is not writable.
    """
    full = os.path.abspath(os.fspath(path))
    probe = full
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        what = "is a file" if probe == full else f"lies under the file {probe!r}"
        raise ValueError(f"{name}: {os.fspath(path)!r} must be a folder; it {what}")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise ValueError(f"{name}: cannot write in {probe!r} ({exc.strerror or exc})") from None
    return full


def check_writable_file(path: str, name: str) -> str:
    """``path`` as an absolute file path whose folder :func:`check_writable_dir` accepts."""
    full = os.path.abspath(os.fspath(path))
    if os.path.isdir(full):
        raise ValueError(f"{name}: {os.fspath(path)!r} is a folder; expected a file name")
    check_writable_dir(os.path.dirname(full), name)
    return full


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


#: The pinned environment: ``make`` builds ``.venv`` with ``pip install -c constraints.txt``, the
#: exact versions the README's numbers were measured with (``make upgrade-env`` rewrites it).
CONSTRAINTS_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "constraints.txt")


def _dist_name(name: str) -> str:
    """A distribution name in PEP 503 normal form (``ml_dtypes`` and ``ML-Dtypes`` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_constraints(path: str) -> dict[str, str]:
    """The ``name==version`` pins of a constraints file, as ``{normalised name: version}``."""
    pins = {}
    with open(path) as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[_dist_name(name.split("[", 1)[0].strip())] = version.split(";", 1)[0].strip()
    return pins


@functools.lru_cache(maxsize=1)
def _installed_versions() -> dict[str, str]:
    """``{normalised name: version}`` of every installed distribution (the first on sys.path
    wins, as for imports). Cached: scanning them costs ~0.1 s, and a process's environment
    does not change under it."""
    import importlib.metadata

    installed: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            installed.setdefault(_dist_name(name), dist.version)
    return installed


def constraints_record(path: str | None = None) -> dict | None:
    """The pinned environment a result was computed in, or None without a constraints file.

    Returns ``{"file", "sha256", "pinned", "differs"}``: the file's name and SHA-256, how many
    packages it pins, and ``{name: {"pinned", "installed"}}`` for every pinned package
    installed at another version (empty when this environment is the pinned one; packages
    pinned but not installed, such as the docs tools in a test environment, are not listed).
    None when ``path`` (default :data:`CONSTRAINTS_FILE`, the checkout's) does not exist, as
    for an installed wheel.
    """
    path = path or CONSTRAINTS_FILE
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    pins = read_constraints(path)
    installed = _installed_versions()
    differs = {name: {"pinned": version, "installed": installed[name]} for name, version in pins.items()
               if name in installed and installed[name] != version}
    return {"file": os.path.basename(path), "sha256": digest, "pinned": len(pins), "differs": differs}


def provenance() -> dict:
    """What produced a result: versions, git revision, devices, precision, platform, argv, and
    the pinned environment (:func:`constraints_record`)."""
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
        "constraints": constraints_record(),
    }


def save_figure(fig, fig_dir: str, stem: str) -> list[str]:
    """Saves ``fig`` as PNG and PDF through :func:`atomic_write`, closes it, returns the paths."""
    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "pdf"):
        path = os.path.join(fig_dir, f"{stem}.{ext}")
        with atomic_write(path, "wb", fsync=False) as fh:
            fig.savefig(fh, dpi=150, bbox_inches="tight", pad_inches=0.02, format=ext)
        paths.append(path)
    plt.close(fig)
    return paths
