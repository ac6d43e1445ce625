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
4. writes each point's result atomically (a uniquely named temporary file, then
   ``os.replace``) to ``points/KEY.json``, KEY a hash of the point's full config, so a
   sweep stopped by Ctrl-C or ``kill -9`` resumes where it stopped and recomputes no
   finished point;
5. shows a progress line with ETA, and writes a manifest (config, grids, seeds,
   versions, devices, git revision) and a tidy ``table.csv``: exactly one row per point.

Trust. A resumed sweep uses a point file only once it is verified: the file must parse,
hold a schema-2 record ``{"schema", "key", "config", "outputs", "finite", "sha256"}``
whose ``key`` is the file's own key and the hash of its ``config``, and whose ``sha256``
is the checksum of the canonical JSON of ``(key, config, outputs, finite)``. A file that
fails (unreadable, not JSON, wrong schema, a missing field, another point's key, an
edited value) is named in one warning line on stderr, with the reason, and its point is
recomputed (and the file overwritten). Files of schema 1 (molrg before checksums) carry
no checksum and are recomputed the same way.

Non-finite results. A point whose outputs hold NaN or infinity is stored with
``"finite": false`` and shown with ``finite=False`` in its row, never as a silent number:
one warning line names such points, the manifest lists them (``nonfinite_points``) and a
rerun recomputes them (they are not counted as done). Non-finite *inputs* are refused
before any work (``ValueError``).

Concurrency. One process at a time writes a sweep folder: the writer holds an exclusive
``flock`` on ``SWEEP/.lock`` for the whole run; a second sweep into the same folder fails
at once with ``ValueError("sweep folder ... is in use by pid N ...")`` (the CLI's one
error line, exit code 2) rather than waiting. The lock dies with its process, so a
``kill -9`` never leaves a stale lock. Temporary files have unique names; leftovers of a
killed run are removed by the next run (under the lock). A full disk stops the sweep
with an ``OSError`` naming the file; every point written before is kept and the same
command resumes once there is space.

Several hosts: launch one process per host with ``MOLRG_DISTRIBUTED=1`` and JAX's usual
coordinator variables (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``) or on a cluster JAX auto-detects (SLURM, TPU pods); molrg then calls
``jax.distributed.initialize()``, the mesh spans the devices of every host, the inputs
are built identically on every process and placed with ``make_array_from_callback``, and
only process 0 writes files (and takes the lock).
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
from molrg.study.results import atomic_write, jsonable, provenance, write_json_atomic, write_table

#: The point-file layout this engine writes and trusts (see the module docstring).
SCHEMA = 2
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
    blob = json.dumps(jsonable(cfg), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _check_finite(value, key: str, flag: str):
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        raise ValueError(f"{flag} {key}: must be a finite number; got {float(value)!r}")
    if isinstance(value, (tuple, list)):
        for v in value:
            _check_finite(v, key, flag)


def _expand(sw: Sweepable, grids: dict[str, list], overrides: dict | None) -> list[tuple[str, Any]]:
    """``[(key, point)]``: the distinct points of the grid, in first-seen order."""
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
        points.setdefault(point_key(p), p)
    return list(points.items())


def expand_grid(sw: Sweepable, grids: dict[str, list], overrides: dict | None = None) -> list:
    """The distinct points of the cartesian product of ``grids`` over the config (after ``overrides``).

    Raises:
      ValueError: an unknown or unsweepable key, an unreadable or non-finite value, or a
        point the config's ``validate`` rejects (naming the field), before any work.
    """
    return [p for _, p in _expand(sw, grids, overrides)]


def _maybe_init_distributed():
    if os.environ.get("MOLRG_DISTRIBUTED") == "1" and jax.process_count() == 1:
        jax.distributed.initialize()


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
        _warn(f"sweep {name}: point file {path} {reason}; recomputing it")
    if len(rejected) > _MAX_WARNINGS:
        _warn(f"sweep {name}: {len(rejected) - _MAX_WARNINGS} more point files failed verification; "
              f"recomputing them (the manifest lists all)")


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
        for f in os.listdir(folder):
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
      batch_size: most points per compiled call (results are written after each call).
      loop: compute point by point in a Python loop (the baseline the benchmark uses).
      devices: devices for the mesh (default: all).
      verbose: show the progress line.
      on_point_written: ``f(key)`` called after each point's file is written (tests).

    Returns:
      ``{"dir", "computed", "skipped", "points", "rows", "rejected", "nonfinite"}``: ``rows``
      holds one dict per distinct point, in grid order (``key``, the static and numeric
      fields, every scalar output and ``finite``); ``rejected`` the ``(file, reason)`` of
      point files that failed verification (recomputed); ``nonfinite`` the keys of points
      whose outputs hold NaN or infinity (flagged, recomputed by a rerun).

    Raises:
      ValueError: bad arguments or grid values (before any work), or the sweep folder is
        in use by another process.
      OSError: a point file could not be written (a full disk): the points written before
        are kept, and the same call resumes.
    """
    _maybe_init_distributed()
    name = sw.name
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer; got {batch_size!r}")
    keyed = _expand(sw, grids, overrides)  # validates everything before any work
    root = sweep_folder(name, grids, overrides, out_dir)
    pdir = os.path.join(root, "points")
    writer = jax.process_index() == 0
    devices = list(devices or jax.devices())
    mesh = Mesh(np.array(devices), ("points",))
    lock = None
    if writer:
        os.makedirs(pdir, exist_ok=True)
        lock = _lock_folder(root)  # held until the end of the run; fails at once if taken
    try:
        return _run_locked(sw, keyed, grids, overrides, root, pdir, writer, devices, mesh,
                           batch_size, loop, verbose, on_point_written)
    finally:
        if lock is not None:
            try:
                os.ftruncate(lock, 0)  # the run is over: no holder named in the file
            except OSError:
                pass
            os.close(lock)  # releases the flock


def _run_locked(sw, keyed, grids, overrides, root, pdir, writer, devices, mesh, batch_size, loop,
                verbose, on_point_written) -> dict:
    name = sw.name
    t0 = time.perf_counter()
    man_path = os.path.join(root, "manifest.json")
    manifest = {
        "study": name, "summary": sw.summary, "grids": grids, "overrides": overrides or {},
        "num_points": len(keyed), "static": sw.static, "numeric": sw.numeric,
        "base_config": apply_overrides(sw.config, overrides or {}),
        "seeds": sorted({getattr(p, "seed", None) for _, p in keyed}, key=str),
        "devices": [str(d) for d in devices], "process_count": jax.process_count(),
        "provenance": provenance(), "prng": dict(PRNG_CONTEXT, impl="threefry2x32"),
        "point_schema": SCHEMA, "status": "running",
    }
    if writer:
        _remove_temporaries(root, pdir)
        write_json_atomic(man_path, manifest)

    todo, done_rows, rejected = [], {}, []
    for key, p in keyed:
        path = os.path.join(pdir, f"{key}.json")
        rec, reason = _verify(path, key)
        if reason is not None:
            rejected.append((path, reason))
        if rec is None or not rec["finite"]:  # a flagged point is not done: computed again
            todo.append((key, p))
        else:
            done_rows[key] = rec
    if writer and rejected:
        _report_rejected(name, rejected)
    skipped = len(keyed) - len(todo)
    prog = Progress(len(keyed), f"sweep {name}", enabled=verbose)
    if skipped:
        prog.skip(skipped, note=f"({skipped} already done)")

    def write_point(key, cfg, outputs):
        record = _make_record(key, cfg, outputs)
        if writer:
            path = os.path.join(pdir, f"{key}.json")
            try:
                _write_record(path, record)
            except OSError as exc:
                raise OSError(exc.errno, f"sweep {name}: cannot write {path}: {exc.strerror or exc}; "
                                         f"the points written so far are kept, rerun to resume") from exc
        done_rows[key] = dict(record, outputs={k: _decode(v) for k, v in record["outputs"].items()})
        if on_point_written is not None:
            on_point_written(key)

    groups: dict[tuple, list] = {}
    for key, p in todo:
        groups.setdefault(tuple(jsonable(getattr(p, s)) for s in sw.static), []).append((key, p))

    def write_chunk(chunk, out):
        for i, (key, p) in enumerate(chunk):
            write_point(key, p, {k: v[i] for k, v in out.items()})

    computed = 0
    ndev = len(devices)
    # Point files are written by one background thread while the next chunk computes (a
    # chunk's results are already on the host then, and only one XLA call runs at a time:
    # two concurrent batched LAPACK calls can deadlock XLA:CPU on 2 cores). Measured: the
    # writes were ~10% of a grouped phase_transition sweep.
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
                        out = jax.tree_util.tree_map(np.asarray, single(values))
                        write_point(key, p, out)
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
                    while pending and pending[0].done():
                        pending.pop(0).result()  # re-raises a failed write at once
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
            except Exception:  # the disk may be full: the lock and the point files still tell
                pass
        raise

    rows, nonfinite = [], []
    for key, _ in keyed:
        rec = done_rows[key]
        row = {"key": key}
        row.update({k: rec["config"][k] for k in list(sw.static) + list(sw.numeric)})
        for k, v in rec["outputs"].items():
            if np.ndim(v) == 0:
                row[k] = v
        row["finite"] = rec["finite"]
        if not rec["finite"]:
            nonfinite.append(key)
        rows.append(row)
    if writer and nonfinite:
        shown = "; ".join(", ".join(f"{k}={r[k]}" for k in grids) or r["key"]
                          for r in rows if not r["finite"])
        _warn(f"sweep {name}: {len(nonfinite)} point(s) with NaN or infinite outputs, flagged finite=False "
              f"in table.csv and recomputed by a rerun: {shown if len(nonfinite) <= 10 else shown[:400] + ' ...'}")
    if writer:
        write_table(os.path.join(root, "table.csv"), rows)
        manifest.update(status="complete", computed=computed, skipped=skipped,
                        seconds=time.perf_counter() - t0, nonfinite_points=nonfinite,
                        rejected_files=[{"file": f, "reason": r} for f, r in rejected])
        write_json_atomic(man_path, manifest)
    return {"dir": root, "computed": computed, "skipped": skipped, "points": len(keyed), "rows": rows,
            "rejected": rejected, "nonfinite": nonfinite}


def load_points(sweep_dir: str) -> list[dict]:
    """Every verified point of a sweep folder: ``{"schema", "key", "config", "outputs", "finite", "sha256"}``.

    A point file that fails verification (see the module docstring) is named in a warning
    line and left out; outputs come back decoded (NaN and infinity as floats).
    """
    pdir = os.path.join(sweep_dir, "points")
    out, rejected = [], []
    for f in sorted(os.listdir(pdir)):
        if f.endswith(".json") and not f.startswith("."):
            path = os.path.join(pdir, f)
            rec, reason = _verify(path, f[:-len(".json")])
            if rec is not None:
                out.append(rec)
            elif reason is not None:
                rejected.append((path, reason))
    for path, reason in rejected[:_MAX_WARNINGS]:
        _warn(f"load_points: point file {path} {reason}; left out")
    if len(rejected) > _MAX_WARNINGS:
        _warn(f"load_points: {len(rejected) - _MAX_WARNINGS} more point files failed verification; left out")
    return out
