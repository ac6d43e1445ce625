"""Saved results as pandas tables, the ``latest`` link, and the listing behind ``molrg ls``.

:func:`load` reads a result folder into DataFrames (``molrg.load`` is this function):

* a **sweep** folder (``sweep-STUDY-HASH``): one DataFrame, one row per saved point (read
  column by column from its Parquet chunks, and from the JSON point files of older molrg), in
  grid order, with a ``key`` column, one column per config field and one per output
  (scalar outputs as numbers, array outputs as NumPy arrays in an object column), plus
  ``finite`` (False where an output is NaN or infinite). A partial sweep loads too: its
  saved points.
* a **run** folder (``results/NAME``): ``{table name: DataFrame}``, one per CSV the run
  saved; ``load(path, "table")`` returns that one DataFrame.

Each DataFrame's ``attrs`` records ``kind`` ("sweep" or "run"), ``path`` and the study or
experiment name. :func:`update_latest` points ``PARENT/latest`` at the folder just written;
:func:`list_results` describes every result folder under a parent (``molrg ls``).
"""

from __future__ import annotations

import datetime
import json
import os
import socket

import numpy as np

__all__ = ["load", "update_latest", "list_results", "LATEST"]

#: The name of the link to the result folder written last (``results/latest``).
LATEST = "latest"


def _manifest(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, "manifest.json")) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_sweep(folder: str, manifest: dict | None) -> bool:
    return (manifest is not None and "study" in manifest) or os.path.isdir(os.path.join(folder, "chunks")) \
        or os.path.isdir(os.path.join(folder, "points"))


def load(path, table: str | None = None):
    """A saved result folder as pandas DataFrames (see the module docstring).

    Args:
      path: a sweep folder, a run folder, a ``latest`` link to one, or a table's CSV file.
      table: for a run folder, the one table to return (default: every table, as a dict).

    Returns:
      A ``pandas.DataFrame`` for a sweep (one row per saved point: ``key``, config fields,
      outputs, ``finite``), for a CSV file, or for a run with ``table`` given; else a
      ``dict`` of DataFrames, one per table of the run.

    Raises:
      ValueError: ``path`` is not a result folder, or ``table`` is not one of the run's.
    """
    import pandas as pd

    full = os.path.abspath(os.fspath(path))
    if os.path.isfile(full) and full.endswith(".csv"):
        return _read_csv(full)
    if not os.path.isdir(full):
        raise ValueError(f"path: no such result folder {os.fspath(path)!r}")
    manifest = _manifest(full)
    if _is_sweep(full, manifest):
        if table is not None:
            raise ValueError(f"table: a sweep folder is one table; got table={table!r}")
        return _load_sweep(full, manifest or {}, pd)
    if manifest is None or "experiment" not in manifest:
        raise ValueError(f"path: {os.fspath(path)!r} is not a run or sweep folder (no manifest.json); "
                         f"`molrg ls {os.path.dirname(full) or '.'}` lists the result folders")
    names = list(manifest.get("tables", []))
    if table is not None and table not in names:
        raise ValueError(f"table: {manifest['experiment']} has no table {table!r}; it has {names or 'none'}")
    frames = {}
    for name in ([table] if table is not None else names):
        df = _read_csv(os.path.join(full, f"{name}.csv"))
        df.attrs.update(kind="run", path=full, experiment=manifest["experiment"], table=name)
        frames[name] = df
    return frames[table] if table is not None else frames


def _read_csv(path: str):
    """A CSV of :func:`molrg.study.results.write_table`: empty, "nan" and "None" cells are NaN
    (JSON turned NaN into "nan"); other text stays text (no "NA" or "null" guessing)."""
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False, na_values=["", "nan", "NaN", "-nan", "None"])


def _grid_order(df, grids: dict):
    """Rows in the grid's order: the cartesian product of the manifest's ``grids`` (first axis
    slowest), each axis in the order its values were given; unmatched values sort last."""
    axes = [k for k in grids if k in df.columns]
    if not axes or df.empty:
        return df

    def norm(v):
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return v
        return float(v) if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else v

    order = []
    for k in axes:
        pos: dict = {}
        for i, v in enumerate(grids[k] if isinstance(grids[k], list) else [grids[k]]):
            pos.setdefault(norm(v), i)
        col = df[k]
        if col.dtype.kind in "iuf":  # numbers: one hashed lookup per row in pandas, not in Python
            codes = col.astype(float).map({v: i for v, i in pos.items() if isinstance(v, float)})
            order.append(codes.fillna(len(pos)).to_numpy(np.int64))
        else:
            order.append(np.fromiter((pos.get(norm(v), len(pos)) for v in col), np.int64, len(df)))
    # np.lexsort: the last key sorts first; the key breaks ties (only sorted by where some
    # rows share every grid coordinate: sorting 10^6 strings costs seconds)
    idx = np.lexsort(order[::-1])
    codes = np.stack([o[idx] for o in order])
    if len(df) > 1 and not (codes[:, 1:] != codes[:, :-1]).any(axis=0).all():
        idx = np.lexsort([df["key"].to_numpy(dtype=str)] + order[::-1])
    return df.iloc[idx].reset_index(drop=True)


def _load_sweep(folder: str, manifest: dict, pd):
    from molrg.study.sweep import load_frame  # the one verified reader of chunks and point files

    df = load_frame(folder)
    df = _grid_order(df, manifest.get("grids") or {})
    df.attrs.update(kind="sweep", path=folder, study=manifest.get("study"),
                    num_points=manifest.get("num_points"), status=manifest.get("status"))
    return df


def update_latest(parent: str, target: str) -> str | None:
    """Points the link ``parent/latest`` at ``target`` (a folder in ``parent``), atomically.

    The new link is made under a temporary name and renamed over the old one, so a reader
    always finds a whole link. A convenience, never a failure: returns the link's path, or
    None where links cannot be made (or ``latest`` is a real folder, which is left alone).
    """
    parent = os.path.abspath(parent)
    link = os.path.join(parent, LATEST)
    if os.path.isdir(link) and not os.path.islink(link):
        return None
    rel = os.path.relpath(os.path.abspath(target), parent)
    tmp = os.path.join(parent, f".{LATEST}.{os.getpid()}.tmp")
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(rel, tmp)
        os.replace(tmp, link)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return None
    return link


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _sweep_writer_alive(folder: str) -> bool:
    """Whether the process named in the sweep's ``.lock`` (``PID@HOST``) is alive on this host."""
    try:
        with open(os.path.join(folder, ".lock")) as fh:
            holder = fh.read().strip()
    except OSError:
        return False
    pid, _, host = holder.partition("@")
    return pid.isdigit() and host in ("", socket.gethostname()) and _pid_alive(int(pid))


def _date(path: str) -> str:
    try:
        t = os.stat(path).st_mtime
    except OSError:
        return ""
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _describe(parent: str, entry: str) -> dict | None:
    folder = os.path.join(parent, entry)
    if entry.startswith("."):
        # a run's staging folder (.NAME.partial-PID@HOST-*): a run in progress or killed
        if ".partial-" not in entry:
            return None
        name = entry[1:].split(".partial-", 1)[0]
        owner = entry.split(".partial-", 1)[1].rsplit("-", 1)[0]
        pid, _, host = owner.partition("@")
        alive = pid.isdigit() and host in ("", socket.gethostname()) and _pid_alive(int(pid))
        return {"folder": entry, "kind": "run", "name": name, "done": None, "total": None,
                "status": "running" if alive else "partial", "date": _date(folder)}
    manifest = _manifest(folder)
    if _is_sweep(folder, manifest):
        manifest = manifest or {}
        from molrg.study.sweep import saved_points

        done = saved_points(folder)
        total = manifest.get("num_points")
        if manifest.get("status") == "complete":
            status = "complete"
        elif _sweep_writer_alive(folder):
            status = "running"
        else:
            status = "partial"
        return {"folder": entry, "kind": "sweep", "name": manifest.get("study", "?"), "done": done,
                "total": total, "status": status, "date": _date(os.path.join(folder, "manifest.json"))}
    if manifest is not None and "experiment" in manifest:
        return {"folder": entry, "kind": "run", "name": manifest["experiment"], "done": None,
                "total": None, "status": "complete", "date": _date(os.path.join(folder, "manifest.json"))}
    return None


def list_results(root: str, depth: int = 2) -> list[dict]:
    """Every result folder under ``root`` (and its subfolders, ``depth`` levels), oldest first.

    Returns:
      Dicts with ``folder`` (relative to ``root``), ``kind`` ("run" or "sweep"), ``name``
      (the experiment or study), ``done``/``total`` (saved and planned points of a sweep;
      None for a run), ``status`` ("complete"; "running" while its writer is alive on this
      host; else "partial": stopped before the end, rerun to resume or redo), ``date`` and
      ``latest`` (whether ``root/latest`` or its subfolder's points at it).
    """
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"DIR: no such folder {root!r}")
    out = []

    def walk(folder: str, prefix: str, level: int):
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            return
        link = os.path.join(folder, LATEST)
        latest = os.path.realpath(link) if os.path.islink(link) else None
        for entry in entries:
            path = os.path.join(folder, entry)
            if entry == LATEST or not os.path.isdir(path) or os.path.islink(path):
                continue
            info = _describe(folder, entry)
            if info is not None:
                info["folder"] = prefix + entry
                info["latest"] = latest is not None and os.path.realpath(path) == latest
                out.append(info)
            elif level < depth and not entry.startswith("."):
                walk(path, prefix + entry + os.sep, level + 1)

    walk(root, "", 1)
    return sorted(out, key=lambda r: (r["date"], r["folder"]))
