"""A resumable, sharded sweep engine over cartesian grids.

A *sweepable* study declares which config fields are **static** (they fix array shapes:
n, K, d, N, ...) and which are **numeric** (sigma, delta, learning rate, seed, ...), and
a pure JAX ``point(static_cfg, values) -> dict of arrays`` for ONE point. The engine

1. expands ``--grid`` values into the cartesian product of points;
2. groups points with equal static values; inside a group the numeric values are stacked
   and the point function runs ``vmap``-ped, so one compiled program serves the group;
3. shards that vmapped axis over every device (``jax.sharding.Mesh`` with a ``points``
   axis and ``NamedSharding``), padding the group to a multiple of the device count;
4. writes each point's result atomically (temporary file, then ``os.replace``) under a
   key derived from its full config, so a sweep stopped by Ctrl-C or ``kill -9`` resumes
   where it stopped, recomputes no finished point and never leaves a corrupt file;
5. shows a progress line with ETA, and writes a manifest (config, grids, seeds,
   versions, devices, git revision) and a tidy ``table.csv`` of all points.

Several hosts: launch one process per host with ``MOLRG_DISTRIBUTED=1`` and JAX's usual
coordinator variables (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``) or on a cluster JAX auto-detects (SLURM, TPU pods); molrg then calls
``jax.distributed.initialize()``, the mesh spans the devices of every host, the inputs
are built identically on every process and placed with ``make_array_from_callback``, and
only process 0 writes files.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import time
import typing
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from molrg.study.config import apply_overrides, parse_value
from molrg.study.progress import Progress
from molrg.study.results import jsonable, provenance, write_json_atomic, write_table


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
    """A stable key for a point: a hash of its full config."""
    blob = json.dumps(jsonable(cfg), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def expand_grid(sw: Sweepable, grids: dict[str, list], overrides: dict | None = None) -> list:
    """The cartesian product of ``grids`` over the config (after ``overrides``)."""
    base = apply_overrides(sw.config, overrides or {})
    hints = typing.get_type_hints(type(base))
    names = [f.name for f in dataclasses.fields(base)]
    axes = []
    for key, values in grids.items():
        if key not in names:
            raise ValueError(f"--grid {key}: unknown config key; known keys: {', '.join(sorted(names))}")
        if key not in sw.static and key not in sw.numeric:
            raise ValueError(f"--grid {key}: not sweepable (static: {sw.static}; numeric: {sw.numeric})")
        if not values:
            raise ValueError(f"--grid {key}: needs at least one value")
        parsed = [parse_value(v, hints[key], key, "--grid") if isinstance(v, str) else v for v in values]
        axes.append([(key, v) for v in parsed])
    points = []
    check = getattr(type(base), "validate", None)
    for combo in itertools.product(*axes) if axes else [()]:
        # values are parsed and keys checked above: apply_overrides less its per-point
        # type-hint lookup (a third of the engine's own time on 200 small points)
        p = dataclasses.replace(base, **dict(combo))
        if check is not None:
            p.validate()  # validates every point before any work
        points.append(p)
    return points


def _maybe_init_distributed():
    if os.environ.get("MOLRG_DISTRIBUTED") == "1" and jax.process_count() == 1:
        jax.distributed.initialize()


def _read_point(path: str):
    try:
        with open(path) as fh:
            data = json.load(fh)
        return data if "outputs" in data else None
    except (OSError, json.JSONDecodeError):
        return None  # unreadable: recompute (cannot happen with atomic writes, but be safe)


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
    """Runs (or resumes) a sweep; returns ``{"dir", "computed", "skipped", "points"}``.

    Args:
      sw: the study.
      grids: ``{field: [values]}`` (strings are parsed by the field's type).
      overrides: fixed config changes for every point.
      out_dir: parent folder; the sweep lives in ``out_dir/sweep-NAME-<hash of grids>``.
      batch_size: most points per compiled call (results are written after each call).
      loop: compute point by point in a Python loop (the baseline the benchmark uses).
      devices: devices for the mesh (default: all).
    """
    _maybe_init_distributed()
    name = sw.name
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer; got {batch_size!r}")
    points = expand_grid(sw, grids, overrides)  # validates everything before any work
    sweep_id = hashlib.sha256(json.dumps({"name": name, "grids": jsonable(grids),
                                          "overrides": jsonable(overrides or {})},
                                         sort_keys=True).encode()).hexdigest()[:10]
    root = os.path.abspath(os.path.join(out_dir or "results", f"sweep-{name}-{sweep_id}"))
    pdir = os.path.join(root, "points")
    writer = jax.process_index() == 0
    if writer:
        os.makedirs(pdir, exist_ok=True)
    devices = list(devices or jax.devices())
    mesh = Mesh(np.array(devices), ("points",))
    t0 = time.perf_counter()
    if writer:
        write_json_atomic(os.path.join(root, "manifest.json"), {
            "study": name, "summary": sw.summary, "grids": grids, "overrides": overrides or {},
            "num_points": len(points), "static": sw.static, "numeric": sw.numeric,
            "base_config": apply_overrides(sw.config, overrides or {}),
            "seeds": sorted({getattr(p, "seed", None) for p in points}, key=str),
            "devices": [str(d) for d in devices], "process_count": jax.process_count(),
            "provenance": provenance(), "prng": dict(PRNG_CONTEXT, impl="threefry2x32"),
            "status": "running",
        })

    todo, done_rows = [], {}
    for p in points:
        key = point_key(p)
        got = _read_point(os.path.join(pdir, f"{key}.json"))
        if got is None:
            todo.append((key, p))
        else:
            done_rows[key] = got
    skipped = len(points) - len(todo)
    prog = Progress(len(points), f"sweep {name}", enabled=verbose)
    if skipped:
        prog.skip(skipped, note=f"({skipped} already done)")

    def write_point(key, cfg, outputs):
        record = {"key": key, "config": jsonable(cfg),
                  "outputs": {k: np.asarray(v).tolist() for k, v in outputs.items()}}
        if writer:
            # rename-atomic: a kill -9 never leaves a partial file (no fsync: durability
            # across power loss is not worth a disk flush per point)
            write_json_atomic(os.path.join(pdir, f"{key}.json"), record, fsync=False)
        done_rows[key] = record
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

    rows = []
    for p in points:
        rec = done_rows[point_key(p)]
        row = {"key": rec["key"]}
        row.update({k: rec["config"][k] for k in list(sw.static) + list(sw.numeric)})
        for k, v in rec["outputs"].items():
            if np.ndim(v) == 0:
                row[k] = v
        rows.append(row)
    if writer:
        write_table(os.path.join(root, "table.csv"), rows)
        man_path = os.path.join(root, "manifest.json")
        with open(man_path) as fh:
            manifest = json.load(fh)
        manifest.update(status="complete", computed=computed, skipped=skipped,
                        seconds=time.perf_counter() - t0)
        write_json_atomic(man_path, manifest)
    return {"dir": root, "computed": computed, "skipped": skipped, "points": len(points), "rows": rows}


def load_points(sweep_dir: str) -> list[dict]:
    """Every finished point of a sweep folder: ``{"key", "config", "outputs"}`` records."""
    pdir = os.path.join(sweep_dir, "points")
    out = []
    for f in sorted(os.listdir(pdir)):
        if f.endswith(".json") and not f.startswith("."):
            rec = _read_point(os.path.join(pdir, f))
            if rec is not None:
                out.append(rec)
    return out
