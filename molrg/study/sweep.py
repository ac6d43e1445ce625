"""A resumable, sharded sweep engine over cartesian grids.

A *sweepable* study declares which config fields are **static** (they fix array shapes:
n, K, d, N, ...) and which are **numeric** (sigma, delta, learning rate, seed, ...), and
a pure JAX ``point(static_cfg, values) -> dict of arrays`` for ONE point. The engine

1. expands ``--grid`` values into the cartesian product of points (a point that occurs
   twice, e.g. ``sigma=0.1,0.1``, is one point: computed once, one row);
2. groups points with equal static values; inside a group the numeric values are stacked
   and the point function runs ``vmap``-ped, so one compiled program serves the group;
3. shards that vmapped axis over every device (``jax.sharding.Mesh`` with a ``points``
   axis and ``NamedSharding``), padding the group to a multiple of the device count;
4. writes the results of each compiled call atomically (a uniquely named temporary file,
   then ``os.replace``) as one Parquet chunk, ``chunks/chunk-NNNNNNNN.parquet``: one row
   per point, keyed by KEY, a hash of the point's full config, so a sweep stopped by
   Ctrl-C or ``kill -9`` resumes where it stopped and recomputes no finished point, and a
   10^6-point sweep is a few hundred files;
5. shows a progress line with ETA, and writes a manifest (config, grids, seeds,
   versions, devices, git revision) and a tidy table, exactly one row per point:
   ``table.parquet`` always and ``table.csv`` up to :data:`CSV_MAX_ROWS` (10^5) rows (a
   CSV of 10^6 rows is ~100 MB and slow both ways). A rerun that finds every point done
   keeps the tables of the run that completed them.

Chunks (schema 3). Columns ``key``; ``config.F`` for each config field F that varies
inside the chunk (NumPy ints or floats, else canonical JSON text); ``out.NAME`` per output
(scalars as a column, arrays as fixed-size lists); ``finite``. The Parquet key-value
metadata ``molrg`` holds ``{"schema": 3, "study", "rows", "fields", "config" (the fields
equal on every row), "config_columns", "outputs" ({name: dtype, shape}), "output_order",
"sha256"}``, the checksum of the metadata and of every column's bytes.

Trust. A resumed sweep uses a chunk only once it is verified: it must be a readable
Parquet file whose metadata is schema 3, whose columns match the metadata, whose keys are
distinct, whose ``sha256`` matches its content and whose ``finite`` column matches its
outputs. A chunk that fails is named in one warning line on stderr, with the reason; its
points are recomputed into a new chunk and the bad file is removed at the end of the run.
Finding the finished points reads the chunks column by column (no per-row JSON): a
resume of 10^5 points finds its place in about a second plus the grid's expansion. The
checksum covers keys and configs together, so a row's config is not re-hashed against its
key (a chunk copied from another folder only holds points of another grid, never used).

Point files of older molrg (``points/KEY.json``, schema 2) are still read and trusted on
the old rules: the file must parse, hold ``{"schema", "key", "config", "outputs",
"finite", "sha256"}`` whose ``key`` is the file's own key and the hash of its ``config``,
and whose ``sha256`` is the checksum of the canonical JSON of ``(key, config, outputs,
finite)``. A file that fails is named and its point recomputed (into a chunk; the file is
removed); files of schema 1 carry no checksum and are recomputed the same way. A point
found in several places counts once: a finite result wins, else the newest.

Non-finite results. A point whose outputs hold NaN or infinity is stored with
``"finite": false`` and shown with ``finite=False`` in its row, never as a silent number:
one warning line names such points, the manifest lists them (``nonfinite_points``) and a
rerun recomputes them (they are not counted as done; the newer row supersedes the old). Non-finite *inputs* are refused
before any work (``ValueError``).

Concurrency. One process at a time writes a sweep folder: the writer holds an exclusive
``flock`` on ``SWEEP/.lock`` for the whole run; a second sweep into the same folder fails
at once with ``ValueError("sweep folder ... is in use by pid N ...")`` (the CLI's one
error line, exit code 2) rather than waiting. The lock dies with its process, so a
``kill -9`` never leaves a stale lock. Temporary files have unique names; leftovers of a
killed run are removed by the next run (under the lock). A full disk stops the sweep
with an ``OSError`` naming the file; every chunk written before is kept and the same
command resumes once there is space. At most one computed chunk waits for the disk, so
memory stays bounded when writing is slower than computing.

Several hosts: launch one process per host (or per GPU) with ``MOLRG_DISTRIBUTED=1`` and
either the coordinator variables (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``) or on a cluster JAX auto-detects (SLURM, Open MPI, TPU pods); molrg
then calls ``jax.distributed.initialize()`` (CPU collectives: JAX's default, gloo), the
mesh spans the devices of every process, the inputs are built identically on every
process and placed with ``make_array_from_callback``, results are gathered to every
process, and only process 0 writes files (and takes the lock). Every process reads the
sweep folder to find the finished points, so it must be on a shared file system.
``tests/test_multihost.py`` runs two processes on localhost, kills one mid-sweep and
resumes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import socket
import sys
import time
import typing
from typing import Any, Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no folder lock
    fcntl = None

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from molrg.study.config import apply_overrides, parse_value
from molrg.study.progress import Progress
from molrg.study.results import atomic_write, jsonable, provenance, write_json_atomic

#: The point-file layout of molrg before chunks (read, verified, never written now).
SCHEMA = 2
#: The chunk layout this engine writes and trusts (see the module docstring).
CHUNK_SCHEMA = 3
#: At most this many lines name rejected files; one more line counts the rest.
_MAX_WARNINGS = 20


@dataclasses.dataclass(frozen=True)
class Sweepable:
    """A study the engine can sweep.

    Attributes:
      name: registry name.
      summary: one line.
      config: frozen dataclass of defaults (every field static or numeric).
      static: fields that fix shapes; one compile per distinct combination.
      numeric: fields that travel as arrays through ``vmap`` (floats or ints).
      point: ``point(cfg, values) -> dict[str, Array]``; ``cfg`` is the config with the
        group's static values (numeric fields hold defaults: do not read them), ``values``
        maps each numeric field to a traced scalar. Pure JAX.
      plot: optional ``plot(sweep_dir, fig_dir) -> list[str]``.
    """

    name: str
    summary: str
    config: Any
    static: tuple[str, ...]
    numeric: tuple[str, ...]
    point: Callable
    plot: Callable | None = None


def sweepable(name, *, summary, config, static, numeric, point, plot=None) -> Sweepable:
    """A :class:`Sweepable`, its field lists checked against the config."""
    fields = {f.name for f in dataclasses.fields(config)}
    missing = (set(static) | set(numeric)) - fields
    if missing:
        raise ValueError(f"sweepable {name}: unknown fields {sorted(missing)}")
    return Sweepable(name, summary, config, tuple(static), tuple(numeric), point, plot)


def point_key(cfg) -> str:
    """A stable key for a point: a hash of its full config (a dataclass or its JSON dict)."""
    return _key_of(jsonable(cfg))


def _key_of(config_json: dict) -> str:
    # the encoder json.dumps(config_json, sort_keys=True) would build, built once
    return hashlib.sha256(_KEY_ENCODER.encode(config_json).encode()).hexdigest()[:20]


_KEY_ENCODER = json.JSONEncoder(sort_keys=True)


_PLAIN = (int, bool, str, type(None))


def _json_value(v):
    """``jsonable(v)``, without its checks for the plain values configs and rows hold (a third
    of a 10^5-point sweep's own time went to ``jsonable``)."""
    t = type(v)
    if t in _PLAIN:
        return v
    if t is float:
        return v if math.isfinite(v) else str(v)
    return jsonable(v)


@functools.lru_cache(maxsize=64)
def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _config_json(p) -> dict:
    """``jsonable(p)`` of a config dataclass (the same dict, faster)."""
    return {f: _json_value(getattr(p, f)) for f in _field_names(type(p))}


def _check_finite(value, key: str, flag: str):
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        raise ValueError(f"{flag} {key}: must be a finite number; got {float(value)!r}")
    if isinstance(value, (tuple, list)):
        for v in value:
            _check_finite(v, key, flag)


def _expand(sw: Sweepable, grids: dict[str, list], overrides: dict | None) -> list[tuple[str, Any, dict]]:
    """``[(key, point, its config as JSON types)]``: the distinct points of the grid, in first-seen order."""
    base = apply_overrides(sw.config, overrides or {})
    hints = typing.get_type_hints(type(base))
    names = [f.name for f in dataclasses.fields(base)]
    for f in overrides or {}:  # the defaults are the study's own choice
        _check_finite(getattr(base, f), f, "--set")
    axes = []
    for key, values in grids.items():
        if key not in names:
            raise ValueError(f"--grid {key}: unknown config key; known keys: {', '.join(sorted(names))}")
        if key not in sw.static and key not in sw.numeric:
            raise ValueError(f"--grid {key}: not sweepable (static: {sw.static}; numeric: {sw.numeric})")
        if not values:
            raise ValueError(f"--grid {key}: needs at least one value")
        parsed = [parse_value(v, hints[key], key, "--grid") if isinstance(v, str) else v for v in values]
        for v in parsed:
            _check_finite(v, key, "--grid")
        axes.append([(key, v) for v in parsed])
    points: dict[str, Any] = {}
    check = getattr(type(base), "validate", None)
    for combo in itertools.product(*axes) if axes else [()]:
        # values are parsed and keys checked above: apply_overrides less its per-point
        # type-hint lookup (a third of the engine's own time on 200 small points)
        p = dataclasses.replace(base, **dict(combo))
        if check is not None:
            p.validate()  # validates every point before any work
        # a repeated grid value (sigma=0.1,0.1) gives the same config: one point, one row
        cfg = _config_json(p)
        points.setdefault(_key_of(cfg), (p, cfg))
    return [(key, p, cfg) for key, (p, cfg) in points.items()]


def expand_grid(sw: Sweepable, grids: dict[str, list], overrides: dict | None = None) -> list:
    """The distinct points of the cartesian product of ``grids`` over the config (after ``overrides``).

    Raises:
      ValueError: an unknown or unsweepable key, an unreadable or non-finite value, or a
        point the config's ``validate`` rejects (naming the field), before any work.
    """
    return [p for _, p, _ in _expand(sw, grids, overrides)]


def _maybe_init_distributed():
    """``jax.distributed.initialize()`` once, under ``MOLRG_DISTRIBUTED=1``: the coordinator from
    ``JAX_COORDINATOR_ADDRESS`` (which JAX reads itself), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` (which molrg passes on; JAX reads neither), else JAX's cluster
    auto-detection (SLURM, Open MPI, TPU pods, ...). Must run before anything else touches JAX's
    backends (``jax.process_count()`` would initialise them: not called here)."""
    if os.environ.get("MOLRG_DISTRIBUTED") != "1":
        return
    is_initialized = getattr(jax.distributed, "is_initialized", None)  # JAX >= 0.4.34
    if is_initialized is not None and is_initialized():
        return
    if is_initialized is None:
        from jax._src import distributed as _distributed
        if _distributed.global_state.client is not None:
            return
    kwargs = {}
    for env, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        if os.environ.get(env):
            try:
                kwargs[arg] = int(os.environ[env])
            except ValueError:
                raise ValueError(f"{env}: must be an integer; got {os.environ[env]!r}") from None
    jax.distributed.initialize(**kwargs)


def _warn(message: str) -> None:
    """One warning line on stderr (the CLI's ``molrg: error:`` style)."""
    print(f"molrg: warning: {message}", file=sys.stderr, flush=True)


# ----- point files: encode, checksum, verify ---------------------------------------------

def _checksum(key: str, config: dict, outputs: dict, finite: bool) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces, no NaN literals) of a record."""
    blob = json.dumps({"key": key, "config": config, "outputs": outputs, "finite": finite},
                      sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _all_finite(outputs: dict) -> bool:
    for v in outputs.values():
        a = np.asarray(v)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            return False
    return True


def _make_record(key: str, cfg, outputs: dict) -> dict:
    """The schema-2 record of a point (JSON types; NaN/inf as the strings "nan"/"inf")."""
    config = jsonable(cfg)
    enc = jsonable({k: np.asarray(v).tolist() for k, v in outputs.items()})
    finite = _all_finite(outputs)
    return {"schema": SCHEMA, "key": key, "config": config, "outputs": enc, "finite": finite,
            "sha256": _checksum(key, config, enc, finite)}


_NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _decode(v):
    """An output value from its JSON form: nested lists kept, "nan"/"inf" strings as floats."""
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if isinstance(v, str):
        return _NONFINITE[v]
    return v


def _is_value(v) -> bool:
    if isinstance(v, list):
        return all(_is_value(x) for x in v)
    return isinstance(v, (int, float)) or (isinstance(v, str) and v in _NONFINITE)


def _verify(path: str, key: str) -> tuple[dict | None, str | None]:
    """``(record, None)`` for a point file that passes every check, else ``(None, reason)``.

    ``record`` has the outputs decoded (:func:`_decode`). Missing files give ``(None, None)``.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text (corrupted)"
    except (ValueError, RecursionError) as exc:
        return None, f"not valid JSON ({getattr(exc, 'msg', type(exc).__name__)})"
    if not isinstance(data, dict):
        return None, f"not a point record (a JSON {type(data).__name__})"
    if "schema" not in data and "outputs" in data:
        return None, "has no checksum (schema 1, written by an older molrg)"
    if data.get("schema") != SCHEMA:
        return None, f"unknown schema {data.get('schema')!r} (expected {SCHEMA})"
    fields = {"key": str, "config": dict, "outputs": dict, "finite": bool, "sha256": str}
    for f, typ in fields.items():
        if not isinstance(data.get(f), typ):
            return None, f"field {f!r} missing or not a {typ.__name__}"
    outputs = data["outputs"]
    if not outputs or not all(isinstance(k, str) and _is_value(v) for k, v in outputs.items()):
        return None, "field 'outputs' is empty or holds non-numbers"
    if _checksum(data["key"], data["config"], outputs, data["finite"]) != data["sha256"]:
        return None, "checksum mismatch (the file was edited or corrupted)"
    if data["key"] != key:
        return None, f"holds the point {data['key']} (a file copied over another point's)"
    if point_key(data["config"]) != key:
        return None, "its config does not hash to its key"
    decoded = {k: _decode(v) for k, v in outputs.items()}
    try:
        finite = _all_finite(decoded)
    except ValueError:  # a ragged nested list
        return None, "field 'outputs' holds ragged arrays"
    if finite != data["finite"]:
        return None, "its 'finite' flag contradicts its outputs"
    return dict(data, outputs=decoded), None


def _write_record(path: str, record: dict) -> None:
    text = json.dumps(record, indent=2, allow_nan=False)  # encoded before the file is opened
    # rename-atomic with a unique temporary name: a kill -9 never leaves a partial file (no
    # fsync: durability across power loss is not worth a disk flush per point; a file torn
    # by one fails verification and is recomputed)
    with atomic_write(path, fsync=False) as fh:
        fh.write(text)


def _report_rejected(name: str, rejected: list[tuple[str, str]]) -> None:
    for path, reason in rejected[:_MAX_WARNINGS]:
        if path.endswith(".parquet"):
            _warn(f"sweep {name}: chunk {path} {reason}; recomputing its points")
        else:
            _warn(f"sweep {name}: point file {path} {reason}; recomputing it")
    if len(rejected) > _MAX_WARNINGS:
        _warn(f"sweep {name}: {len(rejected) - _MAX_WARNINGS} more files (point files or chunks) failed "
              f"verification; recomputing their points (the manifest lists all)")


# ----- chunk files: one Parquet file per compiled call ------------------------------------

def _pa():
    import pyarrow as pa
    import pyarrow.parquet as pq
    return pa, pq


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _chunk_digest(meta: dict, keys: list, columns: dict) -> str:
    """sha256 of a chunk's content: its metadata (less the checksum), keys, config columns,
    outputs and ``finite`` flags, each column as its name, dtype and little-endian bytes."""
    h = hashlib.sha256()
    h.update(_canonical({k: v for k, v in meta.items() if k != "sha256"}).encode())
    h.update(b"\0key\0" + "\n".join(keys).encode())
    for name in sorted(columns):
        a = columns[name]
        h.update(b"\0" + name.encode() + b"\0")
        if isinstance(a, list):  # text (JSON) columns
            h.update(b"text\0" + "\n".join(a).encode())
        else:
            a = np.ascontiguousarray(a)
            h.update(a.dtype.newbyteorder("<").str.encode() + repr(a.shape).encode() + b"\0")
            h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def _config_columns(configs: list[dict]) -> tuple[dict, dict]:
    """``(common, columns)``: config fields equal on every row of a chunk go to the metadata;
    the others (the numeric fields) are columns: NumPy when every value is an int or every
    value a float, else canonical JSON text."""
    common, columns = {}, {}
    for f in configs[0]:
        vals = [c[f] for c in configs]
        first = _canonical(vals[0])
        if all(_canonical(v) == first for v in vals[1:]) if len(vals) < 64 else \
                len({_canonical(v) for v in vals}) == 1:
            common[f] = vals[0]
        elif all(type(v) is float for v in vals):
            columns[f] = np.asarray(vals, np.float64)
        elif all(type(v) is int for v in vals):
            columns[f] = np.asarray(vals, np.int64)
        else:
            columns[f] = [_canonical(v) for v in vals]
    return common, columns


def _encode_chunk(study: str, keys: list[str], configs: list[dict], outputs: dict) -> tuple[bytes, np.ndarray]:
    """A chunk's Parquet bytes and its rows' finite flags (see the module docstring)."""
    pa, pq = _pa()
    n = len(keys)
    common, cfg_cols = _config_columns(configs)
    out_cols, finite, spec = {}, np.ones(n, bool), {}
    for name, value in outputs.items():
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"sweep {study}: output {name!r} has dtype {a.dtype}; outputs must be "
                             f"booleans, integers or floats")
        if a.dtype.kind == "f":
            finite &= np.isfinite(a.reshape(n, -1)).all(axis=1)
        spec[name] = {"dtype": a.dtype.str, "shape": list(a.shape[1:])}
        out_cols[name] = a
    meta = {"schema": CHUNK_SCHEMA, "study": study, "rows": n, "fields": list(configs[0]), "config": common,
            "config_columns": sorted(cfg_cols), "outputs": spec, "output_order": list(outputs)}
    columns = {f"config.{k}": cfg_cols[k] for k in sorted(cfg_cols)}  # the order _read_chunk expects
    columns.update({f"out.{k}": out_cols[k] for k in sorted(out_cols)})
    columns["finite"] = finite
    meta["sha256"] = _chunk_digest(meta, keys, columns)
    arrays, names = [pa.array(keys, pa.string())], ["key"]
    for name, a in columns.items():
        if isinstance(a, list):
            arrays.append(pa.array(a, pa.string()))
        elif a.ndim == 1:
            arrays.append(pa.array(a))
        else:  # an array output: fixed-size lists of its flattened values
            flat = np.ascontiguousarray(a).reshape(n, -1)
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1]))
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names).replace_schema_metadata({"molrg": _canonical(meta)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes(), finite


def _read_chunk(path: str) -> tuple[dict | None, str | None]:
    """``(chunk, None)`` for a chunk file that passes every check, else ``(None, reason)``.

    ``chunk``: ``{"path", "keys", "finite", "config", "columns", "outputs", "sha256"}`` with
    ``config`` the fields common to every row, ``columns`` the per-row config fields and
    ``outputs`` ``{name: array of shape (rows, ...)}``.
    """
    pa, pq = _pa()
    if os.path.lexists(path) and not os.path.isfile(path):
        return None, "unreadable (not a regular file)"
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        return None, None
    except Exception as exc:  # pyarrow raises many kinds on a corrupted file
        if isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException) and exc.errno is not None:
            return None, f"unreadable ({exc.strerror or exc})"
        return None, f"not a readable Parquet file (corrupted: {(str(exc).splitlines() or [''])[0][:120]})"
    try:
        return _decode_chunk(path, table)
    except Exception as exc:  # a damaged footer can fail anywhere (a field name not UTF-8, ...)
        return None, f"its columns cannot be read (corrupted: {type(exc).__name__}: " \
                     f"{(str(exc).splitlines() or [''])[0][:120]})"


def _decode_chunk(path: str, table) -> tuple[dict | None, str | None]:
    pa, _ = _pa()
    raw = (table.schema.metadata or {}).get(b"molrg")
    if raw is None:
        return None, "has no molrg metadata (not a chunk this engine wrote)"
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "its molrg metadata is not valid JSON (corrupted)"
    if not isinstance(meta, dict) or meta.get("schema") != CHUNK_SCHEMA:
        return None, f"unknown chunk schema {meta.get('schema') if isinstance(meta, dict) else meta!r} " \
                     f"(expected {CHUNK_SCHEMA})"
    fields = {"rows": int, "config": dict, "config_columns": list, "outputs": dict, "sha256": str}
    for f, typ in fields.items():
        if not isinstance(meta.get(f), typ):
            return None, f"metadata field {f!r} missing or not a {typ.__name__}"
    n = meta["rows"]
    expected = ["key"] + [f"config.{k}" for k in meta["config_columns"]] + \
               [f"out.{k}" for k in meta["outputs"]] + ["finite"]
    if table.column_names != expected or table.num_rows != n or not meta["outputs"]:
        return None, f"its columns or row count do not match its metadata ({table.num_rows} rows)"
    try:
        keys = table.column("key").to_pylist()
        columns, outputs = {}, {}
        for name in expected[1:]:
            col = table.column(name).combine_chunks()
            if name.startswith("out."):
                spec = meta["outputs"][name[4:]]
                dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
                if shape:
                    a = col.flatten().to_numpy(zero_copy_only=False).reshape((n,) + shape)
                else:
                    a = col.to_numpy(zero_copy_only=False)
                if a.dtype != dtype:
                    return None, f"output {name[4:]!r} is stored as {a.dtype}, its metadata says {dtype}"
                outputs[name[4:]] = a
            elif pa.types.is_string(col.type):
                a = col.to_pylist()
            else:
                a = col.to_numpy(zero_copy_only=False)
            columns[name] = a
    except (pa.ArrowException, ValueError, TypeError, KeyError) as exc:
        return None, f"its columns cannot be read ({str(exc).splitlines()[0][:120]})"
    if not all(isinstance(k, str) for k in keys) or len(set(keys)) != n:
        return None, "its key column holds missing or repeated keys"
    if _chunk_digest(meta, keys, columns) != meta["sha256"]:
        return None, "checksum mismatch (the chunk was edited or corrupted)"
    finite = np.ones(n, bool)
    for a in outputs.values():
        if a.dtype.kind == "f":
            finite &= np.isfinite(a.reshape(n, -1)).all(axis=1)
    if not np.array_equal(finite, columns["finite"]):
        return None, "its 'finite' column contradicts its outputs"
    return {"path": path, "keys": keys, "finite": columns["finite"], "config": meta["config"],
            "fields": meta.get("fields"), "output_order": meta.get("output_order"),
            "columns": {k[len("config."):]: v for k, v in columns.items() if k.startswith("config.")},
            "outputs": outputs, "sha256": meta["sha256"]}, None


def _chunk_files(cdir: str) -> list[str]:
    """The chunk files of a folder, oldest first (by their sequence number)."""
    if not os.path.isdir(cdir):
        return []
    return sorted(f for f in os.listdir(cdir) if f.endswith(".parquet") and not f.startswith("."))


def _chunk_config(chunk: dict, i: int) -> dict:
    """Row ``i``'s config, its fields in the config's order."""
    cfg = dict(chunk["config"])
    for f, col in chunk["columns"].items():
        v = col[i]
        cfg[f] = json.loads(v) if isinstance(v, str) else v.item()
    order = chunk.get("fields") or list(cfg)
    return {f: cfg[f] for f in order if f in cfg}


class _Store:
    """The verified results of a sweep folder: legacy point files and chunks, with the
    source of each key (a finite result wins over a non-finite one; among equals, the first
    found: point files, then chunks in write order)."""

    def __init__(self):
        self.sources: list[dict] = []   # {"path", "keys", "finite", "outputs", ...}
        self.where: dict[str, tuple[int, int]] = {}
        self.rejected: list[tuple[str, str]] = []

    def add(self, src: dict, wanted=None) -> None:
        idx = len(self.sources)
        self.sources.append(src)
        for i, key in enumerate(src["keys"]):
            if wanted is not None and key not in wanted:
                continue
            old = self.where.get(key)
            if old is None or not self.sources[old[0]]["finite"][old[1]]:  # a finite result stays
                self.where[key] = (idx, i)

    def done(self, key: str) -> bool:
        hit = self.where.get(key)
        return hit is not None and bool(self.sources[hit[0]]["finite"][hit[1]])

    def scalars(self, key: str) -> tuple[dict, bool]:
        """``({output: python scalar}, finite)`` of a key's scalar outputs."""
        s, i = self.where[key]
        src = self.sources[s]
        cache = src.get("_scalars")
        if cache is None:
            cache = src["_scalars"] = {k: v.tolist() if isinstance(v, np.ndarray) and v.ndim == 1 else None
                                       for k, v in src["outputs"].items()}
        out = {}
        for k, v in src["outputs"].items():
            col = cache[k]
            if col is not None:
                out[k] = col[i]
            elif not isinstance(v, np.ndarray) and np.ndim(v[i]) == 0:
                out[k] = v[i]
        return out, bool(src["finite"][i])

    def record(self, key: str) -> dict:
        """The point's record: ``{"schema", "key", "config", "outputs", "finite", "sha256"}``."""
        s, i = self.where[key]
        src = self.sources[s]
        if "record" in src:  # a legacy point file
            return src["record"]
        outputs = {k: (v[i].item() if v.ndim == 1 else v[i].tolist()) for k, v in src["outputs"].items()}
        return {"schema": CHUNK_SCHEMA, "key": key, "config": _chunk_config(src, i), "outputs": outputs,
                "finite": bool(src["finite"][i]), "sha256": src["sha256"], "chunk": src["path"]}


def _legacy_source(path: str, rec: dict) -> dict:
    return {"path": path, "keys": [rec["key"]], "finite": np.array([rec["finite"]]),
            "outputs": {k: [v] for k, v in rec["outputs"].items()}, "record": rec}


def _scan(root: str, keys=None) -> _Store:
    """Reads and verifies every result of a sweep folder (``keys``: only these points' point
    files are read, as before chunks; every chunk is read)."""
    store = _Store()
    pdir = os.path.join(root, "points")
    if os.path.isdir(pdir):
        names = sorted(f for f in os.listdir(pdir) if f.endswith(".json") and not f.startswith("."))
        if keys is not None:
            names = [f for f in names if f[:-len(".json")] in keys]
        for f in names:
            path = os.path.join(pdir, f)
            rec, reason = _verify(path, f[:-len(".json")])
            if reason is not None:
                store.rejected.append((path, reason))
            elif rec is not None:
                store.add(_legacy_source(path, rec), keys)
    cdir = os.path.join(root, "chunks")
    for f in _chunk_files(cdir):
        path = os.path.join(cdir, f)
        chunk, reason = _read_chunk(path)
        if reason is not None:
            store.rejected.append((path, reason))
        elif chunk is not None:
            store.add(chunk, keys)
    return store


# ----- the folder lock ------------------------------------------------------------------

def _lock_folder(root: str) -> int | None:
    """An exclusive ``flock`` on ``root/.lock`` (its fd), or ValueError naming the holder."""
    if fcntl is None:  # pragma: no cover
        return None
    path = os.path.join(root, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
        except OSError:
            holder = "unknown"
        os.close(fd)
        pid, _, host = holder.partition("@")
        raise ValueError(f"sweep folder {root} is in use by pid {pid}{f' on {host}' if host else ''} "
                         f"(another sweep is writing it); wait for it to finish or use another --out") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
    return fd


def _remove_temporaries(*folders: str) -> None:
    """Removes ``.NAME.*.tmp`` files a killed writer left (called under the lock)."""
    for folder in folders:
        for f in os.listdir(folder) if os.path.isdir(folder) else []:
            if f.startswith(".") and f.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(folder, f))
                except OSError:
                    pass


def _chunks(members: list, batch_size: int, ndev: int):
    """Splits a group into equal calls: ``(chunk, padded)`` pairs.

    A group larger than ``batch_size`` is cut into ``ceil(len / batch_size)`` chunks of
    one size (a multiple of the device count, the last padded by repeating its last
    point), so the group compiles once: cutting 300 points at 256 would give calls of 256
    and 44 points and compile the group's program twice.
    """
    step = max(ndev, (batch_size // ndev) * ndev)
    calls = -(-len(members) // step)
    size = -(-len(members) // calls)
    size = -(-size // ndev) * ndev
    for start in range(0, len(members), size):
        chunk = members[start:start + size]
        yield chunk, chunk + [chunk[-1]] * (size - len(chunk))


@functools.lru_cache(maxsize=64)
def _group_fn(sw: Sweepable, static_cfg, mesh: Mesh):
    """The compiled, vmapped, sharded point function of one static group (cached)."""
    spec = NamedSharding(mesh, PartitionSpec("points"))
    f = jax.vmap(lambda values: sw.point(static_cfg, values))
    return jax.jit(f, in_shardings=spec, out_shardings=spec), spec


@functools.lru_cache(maxsize=64)
def _single_fn(sw: Sweepable, static_cfg):
    return jax.jit(lambda values: sw.point(static_cfg, values))


#: The PRNG stream sweeps use. JAX 0.10's default "partitionable" threefry compiles 5-10x
#: slower under ``vmap`` on CPU (seconds per group); the classic stream compiles fast and is
#: identical vmapped or looped. A point computed by a sweep therefore uses
#: ``jax.threefry_partitionable(False)``; to reproduce one outside the engine, call its
#: point function inside that context. The manifest records it.
PRNG_CONTEXT = {"threefry_partitionable": False}


def sweep_folder(name: str, grids: dict[str, list], overrides: dict | None = None,
                 out_dir: str | None = None) -> str:
    """The folder a sweep writes: ``out_dir/sweep-NAME-<hash of grids and overrides>`` (the
    CLI names it when a sweep is interrupted)."""
    sweep_id = hashlib.sha256(json.dumps({"name": name, "grids": jsonable(grids),
                                          "overrides": jsonable(overrides or {})},
                                         sort_keys=True).encode()).hexdigest()[:10]
    return os.path.abspath(os.path.join(out_dir or "results", f"sweep-{name}-{sweep_id}"))


def run_sweep(sw: Sweepable, grids: dict[str, list], **kwargs) -> dict:
    """Runs (or resumes) a sweep of ``sw``; see :func:`_run_sweep` for the arguments."""
    if not isinstance(sw, Sweepable):
        raise ValueError(f"sweep: expected a Sweepable (molrg.experiments.sweepable(NAME) finds one by name); "
                         f"got {type(sw).__name__}")
    with jax.threefry_partitionable(PRNG_CONTEXT["threefry_partitionable"]):
        return _run_sweep(sw, grids, **kwargs)


def _run_sweep(sw: Sweepable, grids: dict[str, list], *, overrides: dict | None = None,
               out_dir: str | None = None, batch_size: int = 256, loop: bool = False,
               devices=None, verbose: bool = True, on_point_written: Callable | None = None) -> dict:
    """Runs (or resumes) a sweep.

    Args:
      sw: the study.
      grids: ``{field: [values]}`` (strings are parsed by the field's type; a repeated
        value is one point).
      overrides: fixed config changes for every point.
      out_dir: parent folder; the sweep lives in ``out_dir/sweep-NAME-<hash of grids>``.
      batch_size: most points per compiled call (each call's results are one chunk file).
      loop: compute point by point in a Python loop (the baseline the benchmark uses).
      devices: devices for the mesh (default: all).
      verbose: show the progress line.
      on_point_written: ``f(key)`` called for each point once its chunk is on disk (tests).

    Returns:
      ``{"dir", "computed", "skipped", "points", "rows", "rejected", "nonfinite"}``: ``rows``
      holds one dict per distinct point, in grid order (``key``, the static and numeric
      fields, every scalar output and ``finite``); ``rejected`` the ``(file, reason)`` of
      point files or chunks that failed verification (their points recomputed); ``nonfinite``
      the keys of points whose outputs hold NaN or infinity (flagged, recomputed by a rerun).

    Raises:
      ValueError: bad arguments or grid values (before any work), or the sweep folder is
        in use by another process.
      OSError: a chunk could not be written (a full disk): the chunks written before are
        kept, and the same call resumes.
    """
    _maybe_init_distributed()
    t_start = time.perf_counter()
    name = sw.name
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer; got {batch_size!r}")
    keyed = _expand(sw, grids, overrides)  # validates everything before any work
    root = sweep_folder(name, grids, overrides, out_dir)
    writer = jax.process_index() == 0
    devices = list(devices or jax.devices())
    mesh = Mesh(np.array(devices), ("points",))
    lock = None
    if writer:
        os.makedirs(os.path.join(root, "chunks"), exist_ok=True)
        lock = _lock_folder(root)  # held until the end of the run; fails at once if taken
    try:
        return _run_locked(sw, keyed, grids, overrides, root, writer, devices, mesh,
                           batch_size, loop, verbose, on_point_written, t_start)
    finally:
        if lock is not None:
            try:
                os.ftruncate(lock, 0)  # the run is over: no holder named in the file
            except OSError:
                pass
            os.close(lock)  # releases the flock


def _next_chunk_number(cdir: str) -> int:
    numbers = [int(f[6:14]) for f in _chunk_files(cdir) if f.startswith("chunk-") and f[6:14].isdigit()]
    return max(numbers, default=0) + 1


def _run_locked(sw, keyed, grids, overrides, root, writer, devices, mesh, batch_size, loop,
                verbose, on_point_written, t0) -> dict:
    name = sw.name
    pdir, cdir = os.path.join(root, "points"), os.path.join(root, "chunks")
    man_path = os.path.join(root, "manifest.json")
    manifest = {
        "study": name, "summary": sw.summary, "grids": grids, "overrides": overrides or {},
        "num_points": len(keyed), "static": sw.static, "numeric": sw.numeric,
        "base_config": apply_overrides(sw.config, overrides or {}),
        "seeds": sorted({getattr(p, "seed", None) for _, p, _ in keyed}, key=str),
        "devices": [str(d) for d in devices], "process_count": jax.process_count(),
        "provenance": provenance(), "prng": dict(PRNG_CONTEXT, impl="threefry2x32"),
        "storage": "chunks", "chunk_schema": CHUNK_SCHEMA, "point_schema": SCHEMA, "status": "running",
    }
    previous = {}
    if writer:
        try:
            with open(man_path) as fh:
                previous = json.load(fh)
        except (OSError, ValueError):
            pass
        _remove_temporaries(root, pdir, cdir)
        write_json_atomic(man_path, manifest)

    # every process reads the folder (a shared file system), so all agree on what is left
    store = _scan(root, {k for k, _, _ in keyed})
    rejected = store.rejected
    configs = {key: cfg for key, _, cfg in keyed}
    todo = [(key, p) for key, p, _ in keyed if not store.done(key)]  # a flagged point is computed again
    if writer and rejected:
        _report_rejected(name, rejected)
    skipped = len(keyed) - len(todo)
    t_found = time.perf_counter() - t0
    prog = Progress(len(keyed), f"sweep {name}", enabled=verbose)
    if skipped:
        prog.skip(skipped, note=f"({skipped} already done)")
    next_chunk = [_next_chunk_number(cdir) if writer else 0]

    def write_chunk(chunk, out):
        """One chunk file for one compiled call (``out``: its outputs, padding included)."""
        keys = [key for key, _ in chunk]
        outputs = {k: np.asarray(v)[:len(chunk)] for k, v in out.items()}
        data, finite = _encode_chunk(name, keys, [configs[key] for key in keys], outputs)
        if writer:
            path = os.path.join(cdir, f"chunk-{next_chunk[0]:08d}.parquet")
            next_chunk[0] += 1
            try:
                with atomic_write(path, "wb", fsync=False) as fh:  # rename-atomic (see _write_record)
                    fh.write(data)
            except OSError as exc:
                raise OSError(exc.errno, f"sweep {name}: cannot write {path}: {exc.strerror or exc}; "
                                         f"the points written so far are kept, rerun to resume") from exc
        else:
            path = None
        store.add({"path": path, "keys": keys, "finite": finite, "outputs": outputs})
        if on_point_written is not None:
            for key in keys:
                on_point_written(key)

    groups: dict[tuple, list] = {}
    for key, p in todo:
        groups.setdefault(tuple(jsonable(getattr(p, s)) for s in sw.static), []).append((key, p))

    computed = 0
    ndev = len(devices)
    # Chunks are written by one background thread while the next chunk computes (a chunk's
    # results are already on the host then, and only one XLA call runs at a time: two
    # concurrent batched LAPACK calls can deadlock XLA:CPU on 2 cores).
    files = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="molrg-sweep-files")
    pending: list = []
    try:
        try:
            for _, members in groups.items():
                # numeric fields reset to defaults, so the compiled function is shared by every
                # sweep with these static values (cache key)
                static_cfg = dataclasses.replace(members[0][1], **{f: getattr(sw.config, f) for f in sw.numeric})
                if loop:
                    single = _single_fn(sw, static_cfg)
                    for key, p in members:
                        values = {f: jnp.asarray(getattr(p, f)) for f in sw.numeric}
                        out = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], single(values))
                        write_chunk([(key, p)], out)
                        computed += 1
                        prog.update(1)
                    continue
                fn, spec = _group_fn(sw, static_cfg, mesh)
                for chunk, padded in _chunks(members, batch_size, ndev):
                    values = {}
                    for f in sw.numeric:
                        host = np.asarray([getattr(p, f) for _, p in padded])
                        host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype))
                        values[f] = jax.make_array_from_callback(host.shape, spec, lambda idx, h=host: h[idx])
                    out = fn(values)
                    if jax.process_count() > 1:
                        from jax.experimental import multihost_utils
                        out = multihost_utils.process_allgather(out, tiled=True)
                    out = jax.tree_util.tree_map(np.asarray, out)
                    pending.append(files.submit(write_chunk, chunk, out))
                    # re-raises a failed write at once; at most one chunk waits for the disk (memory
                    # stays bounded when writing is slower than computing)
                    while pending and (pending[0].done() or len(pending) > 2):
                        pending.pop(0).result()
                    computed += len(chunk)
                    prog.update(len(chunk))
        finally:
            files.shutdown(wait=True)  # every computed point is on disk before going on
        for f in pending:
            f.result()
    except BaseException as exc:
        if writer:  # best effort: the manifest says the run stopped (a kill -9 leaves "running")
            try:
                write_json_atomic(man_path, dict(manifest, status="interrupted",
                                                 error=f"{type(exc).__name__}: {exc}"), fsync=False)
            except Exception:  # the disk may be full: the lock and the chunks still tell
                pass
        raise

    rows, nonfinite = [], []
    fields = list(sw.static) + list(sw.numeric)
    for key, _, cfg in keyed:
        outputs, finite = store.scalars(key)
        row = {"key": key}
        row.update({k: cfg[k] for k in fields})
        row.update(outputs)
        row["finite"] = finite
        if not finite:
            nonfinite.append(key)
        rows.append(row)
    if writer and nonfinite:
        shown = "; ".join(", ".join(f"{k}={r[k]}" for k in grids) or r["key"]
                          for r in rows if not r["finite"])
        _warn(f"sweep {name}: {len(nonfinite)} point(s) with NaN or infinite outputs, flagged finite=False "
              f"in the table and recomputed by a rerun: {shown if len(nonfinite) <= 10 else shown[:400] + ' ...'}")
    if writer:
        for path, _ in rejected:  # superseded: each of their points is in a new chunk now
            try:
                os.unlink(path)
            except OSError:
                pass
        # a resume that found every point done and verified keeps the tables of the run that
        # completed them (a no-op resume of 10^5 points then costs no table rewrite)
        if computed or rejected or previous.get("status") != "complete" or \
                previous.get("num_points") != len(keyed) or not _tables_present(root, len(rows)):
            _write_tables(root, rows)
        manifest.update(status="complete", computed=computed, skipped=skipped,
                        seconds=time.perf_counter() - t0, seconds_to_find_done=t_found,
                        chunks=len(_chunk_files(cdir)), nonfinite_points=nonfinite,
                        rejected_files=[{"file": f, "reason": r} for f, r in rejected])
        write_json_atomic(man_path, manifest)
    return {"dir": root, "computed": computed, "skipped": skipped, "points": len(keyed), "rows": rows,
            "rejected": rejected, "nonfinite": nonfinite}


#: Above this many rows a sweep writes only ``table.parquet`` (a CSV of 10^6 rows is ~100 MB
#: and slow to write and read); at or below it, ``table.csv`` too.
CSV_MAX_ROWS = 100_000


def _tables_present(root: str, n: int) -> bool:
    return os.path.exists(os.path.join(root, "table.parquet")) and \
        (n > CSV_MAX_ROWS or os.path.exists(os.path.join(root, "table.csv")))


def _write_csv(path: str, rows: list[dict]) -> None:
    """``results.write_table``'s CSV, byte for byte, with the cells converted by :func:`_json_value`."""
    import csv

    keys: dict = {}
    for row in rows:
        if len(row) != len(keys) or any(k not in keys for k in row):
            keys.update(dict.fromkeys(row))
    keys = list(keys)
    with atomic_write(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(keys)
        writer.writerows([_json_value(row.get(k, "")) for k in keys] for row in rows)


def _write_tables(root: str, rows: list[dict]) -> None:
    """``table.parquet`` always, ``table.csv`` up to :data:`CSV_MAX_ROWS` rows (a stale
    one is removed above it, so a folder never holds a table of another size)."""
    import pandas as pd

    _, pq = _pa()
    csv_path = os.path.join(root, "table.csv")
    if len(rows) <= CSV_MAX_ROWS:
        _write_csv(csv_path, rows)
    elif os.path.exists(csv_path):
        os.unlink(csv_path)
    df = pd.DataFrame(rows)
    for col in df.columns:  # mixed-type config values (rare): their JSON text
        if df[col].dtype == object and not all(isinstance(v, str) for v in df[col]):
            df[col] = [_canonical(jsonable(v)) for v in df[col]]
    with atomic_write(os.path.join(root, "table.parquet"), "wb", fsync=False) as fh:
        pq.write_table(_pa()[0].Table.from_pandas(df, preserve_index=False), fh, compression="zstd")


def _warn_rejected(where: str, rejected: list[tuple[str, str]]) -> None:
    for path, reason in rejected[:_MAX_WARNINGS]:
        _warn(f"{where}: {'chunk' if path.endswith('.parquet') else 'point file'} {path} {reason}; left out")
    if len(rejected) > _MAX_WARNINGS:
        _warn(f"{where}: {len(rejected) - _MAX_WARNINGS} more files failed verification; left out")


def load_points(sweep_dir: str) -> list[dict]:
    """Every verified point of a sweep folder: ``{"schema", "key", "config", "outputs", "finite", "sha256"}``
    (schema 2: a point file; schema 3: a row of a chunk, with ``"chunk"`` its file and ``sha256``
    the chunk's checksum).

    A file that fails verification (see the module docstring) is named in a warning line
    and left out; outputs come back decoded (NaN and infinity as floats). A point stored
    twice (a flagged point recomputed) is returned once: its finite result if any.
    """
    store = _scan(sweep_dir)
    _warn_rejected("load_points", store.rejected)
    return [store.record(k) for k in sorted(store.where)]


def load_frame(sweep_dir: str):
    """A sweep folder's verified points as one pandas DataFrame, built column by column
    (no per-row JSON for chunks): ``key``, config fields, outputs (scalars as numbers,
    arrays as NumPy arrays in an object column), ``finite``; rows in file order."""
    import pandas as pd

    store = _scan(sweep_dir)
    _warn_rejected("load", store.rejected)
    frames = []
    for s, src in enumerate(store.sources):
        keep = [i for i, k in enumerate(src["keys"]) if store.where.get(k) == (s, i)]
        if not keep:
            continue
        if "record" in src:  # a legacy point file: one row
            rec = src["record"]
            row = {"key": rec["key"], **rec["config"]}
            row.update({k: v if np.ndim(v) == 0 else np.asarray(v) for k, v in rec["outputs"].items()})
            row["finite"] = rec["finite"]
            frames.append(pd.DataFrame([row]))
            continue
        n = len(src["keys"])
        cols = {"key": src["keys"]}
        for f in src.get("fields") or list(src["config"]) + list(src["columns"]):
            if f in src["columns"]:
                col = src["columns"][f]
                cols[f] = [json.loads(v) for v in col] if isinstance(col, list) else col
            else:
                cols[f] = [src["config"][f]] * n
        for k in src.get("output_order") or src["outputs"]:
            a = src["outputs"][k]
            cols[k] = a if a.ndim == 1 else list(a)
        cols["finite"] = src["finite"]
        df = pd.DataFrame(cols)
        frames.append(df if len(keep) == n else df.iloc[keep])
    if not frames:
        return pd.DataFrame(columns=["key"])
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)


def saved_points(sweep_dir: str) -> int:
    """How many distinct points a sweep folder holds (for listings: reads only the key column
    of each chunk and the names of point files; nothing is verified)."""
    _, pq = _pa()
    keys = set()
    pdir = os.path.join(sweep_dir, "points")
    if os.path.isdir(pdir):
        keys.update(f[:-len(".json")] for f in os.listdir(pdir) if f.endswith(".json") and not f.startswith("."))
    cdir = os.path.join(sweep_dir, "chunks")
    for f in _chunk_files(cdir):
        try:
            keys.update(pq.read_table(os.path.join(cdir, f), columns=["key"]).column("key").to_pylist())
        except Exception:  # a corrupted chunk counts nothing
            pass
    return len(keys)
