"""Checkpoints of a training run: leaf arrays saved, restored into the structure of a template.

The pattern of ``equinox.tree_serialise_leaves``: a file holds only the leaves of

    tree = {"params": params, "opt_state": opt_state}

in ``jax.tree_util`` flatten order, never the classes of its nodes. To load, the caller
supplies a template of the same structure (its leaves may be arrays or
``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``) and the saved leaves are
unflattened into the template's treedef, so nothing is re-imported by name and an optax
namedtuple that moved between modules still loads. Each leaf's key path (as
``jax.tree_util.keystr`` writes it, e.g. ``['params']['A']`` or
``['opt_state'].inner_state[0].mu['A']``), shape and dtype are stored too, and must
match the template's, so a wrong template fails with an error naming the leaf instead of
silently swapping leaves.

File format ``molrg-checkpoint-2``: one ``.npz`` with arrays ``leaf_0 ... leaf_{m-1}``
and ``__meta__``, a JSON string
``{"format", "step", "config", "num_leaves", "leaves": [{"path", "shape", "dtype"}, ...]}``.
It is written through :func:`molrg._io.atomic_write` (temporary file, fsync, rename,
fsync of the folder), so a reader sees the old file or the new one, never a torn one.

Files of the previous format ``molrg-checkpoint-1`` (a JSON description of the tree with
namedtuples named by module and class) still load: their tree is matched to the template
node by node (dicts by key, sequences and namedtuples by position), never by importing
the named classes.

Resuming a run (N steps in one go equal N/2 + checkpoint + N/2, see
:mod:`molrg.training`)::

    res = training.train(net, x, seed=0, steps=1000, learning_rate=1e-3)
    save_checkpoint("run.ckpt", res.params, res.opt_state, res.step, {"seed": 0})
    # later, in another process: templates of the same structure, shapes and dtypes
    params = jax.eval_shape(lambda: net.init(jax.random.key(0), dtype=x.dtype))
    opt_state = jax.eval_shape(training.optimizer(optax.adam).init, params)  # train's optimiser
    ck = load_checkpoint("run.ckpt", params=params, opt_state=opt_state)
    more = training.train(net, x, seed=0, steps=1000, params=ck.params,
                          opt_state=ck.opt_state, start_step=ck.step)

:func:`checkpoint_info` reads the step and config without a template (e.g. to rebuild
the network before making the templates).
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from molrg._io import atomic_write
from molrg._validate import fail

__all__ = ["Checkpoint", "FORMAT", "save_checkpoint", "load_checkpoint", "checkpoint_info"]

FORMAT = "molrg-checkpoint-2"
_FORMAT_V1 = "molrg-checkpoint-1"
_ROOT = ("params", "opt_state")


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns."""

    params: Any
    opt_state: Any
    step: int
    config: Any


# ----------------------------------------------------------------------------------------
# Key paths.
# ----------------------------------------------------------------------------------------
def _split(key_path) -> tuple[str, str]:
    """``(argument name, path below it)`` of a key path into ``{"params", "opt_state"}``."""
    rest = jax.tree_util.keystr(tuple(key_path[1:]))
    return key_path[0].key, rest or "(the whole tree)"


def _flatten(params, opt_state):
    return jax.tree_util.tree_flatten_with_path({"params": params, "opt_state": opt_state})


# ----------------------------------------------------------------------------------------
# Saving.
# ----------------------------------------------------------------------------------------
def _saved_array(key_path, leaf) -> np.ndarray:
    name, where = _split(key_path)
    if isinstance(leaf, jax.core.Tracer):
        fail(name, f"leaf {where} is a traced value; save checkpoints outside jit/vmap")
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        fail(name, f"leaf {where} is a PRNG key array; save jax.random.key_data(key) instead")
    if not isinstance(leaf, (jax.Array, np.ndarray, np.generic, bool, int, float, complex)):
        fail(name, f"leaf {where} is a {type(leaf).__name__}; only arrays and numbers can be checkpointed")
    arr = np.asarray(leaf)
    if arr.dtype.kind == "O":  # np.savez would pickle it, and loading refuses pickles
        fail(name, f"leaf {where} has dtype object; only numeric arrays can be checkpointed")
    return arr


def save_checkpoint(path, params, opt_state, step: int, config=None) -> None:
    """Writes ``params``, ``opt_state``, ``step`` and a JSON ``config`` atomically.

    The leaves of ``{"params": params, "opt_state": opt_state}`` (``jax.tree_util``
    flatten order) go to ``leaf_0 ... leaf_{m-1}`` of one ``.npz`` file, with a JSON
    ``__meta__`` holding the format, ``step``, ``config`` and each leaf's key path, shape and
    dtype (no class names). The file is written to a temporary file in the same folder,
    fsynced, renamed over ``path`` and the folder fsynced, so ``path`` is always either the
    old checkpoint or the new one.

    Args:
      path: destination file (any name; no extension is added). Its folder must exist.
      params: pytree of arrays or Python numbers (e.g. ``TrainResult.params``; ensemble
        arrays with a leading member axis too).
      opt_state: the optimiser state, a pytree like ``params`` (e.g. ``TrainResult.opt_state``).
      step: the step count reached (``TrainResult.step``), an integer >= 0.
      config: anything JSON-serialisable (the run's settings), returned by
        :func:`load_checkpoint` and :func:`checkpoint_info`.

    Raises:
      ValueError: naming ``step``, ``config``, ``path``, ``params`` or ``opt_state``, before
        anything is written.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        fail("step", f"must be an integer >= 0; got {step!r}")
    leaves = [(kp, _saved_array(kp, leaf)) for kp, leaf in _flatten(params, opt_state)[0]]
    records = [{"path": jax.tree_util.keystr(kp), "shape": list(a.shape), "dtype": str(a.dtype)}
               for kp, a in leaves]
    try:
        meta = json.dumps({"format": FORMAT, "step": int(step), "config": config,
                           "num_leaves": len(leaves), "leaves": records})
    except (TypeError, ValueError) as err:
        fail("config", f"must be JSON-serialisable ({err})")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        fail("path", f"directory {directory!r} does not exist")
    arrays = {f"leaf_{i}": a for i, (_, a) in enumerate(leaves)}
    arrays["__meta__"] = np.asarray(meta)
    with atomic_write(path, "wb", fsync_dir=True) as fh:
        np.savez(fh, **arrays)


# ----------------------------------------------------------------------------------------
# Reading a file.
# ----------------------------------------------------------------------------------------
def _read(path) -> tuple[str, dict, dict]:
    """``(path, meta, arrays)`` of a checkpoint file; ``ValueError`` naming ``path`` if it is not one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        fail("path", f"no checkpoint file at {path!r}")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with z:
            arrays = {name: z[name] for name in z.files}
    except Exception as err:  # noqa: BLE001 - zip, zlib, pickle and format errors alike
        fail("path", f"{path!r} is not a readable .npz checkpoint ({type(err).__name__}: {err})")
    if "__meta__" not in arrays:
        fail("path", f"{path!r} is not a molrg checkpoint (no __meta__)")
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except ValueError as err:
        fail("path", f"{path!r} has a corrupt __meta__ (not JSON: {err})")
    if not isinstance(meta, dict) or "format" not in meta:
        fail("path", f"{path!r} has a corrupt __meta__ (no format)")
    if meta["format"] not in (FORMAT, _FORMAT_V1):
        fail("path", f"{path!r} has unknown checkpoint format {meta['format']!r} "
                     f"(this molrg reads {FORMAT!r} and {_FORMAT_V1!r})")
    step = meta.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0 or "config" not in meta:
        fail("path", f"{path!r} has a corrupt __meta__ (step {step!r}, config present: {'config' in meta})")
    return path, meta, arrays


def _v2_leaves(path: str, meta: dict, arrays: dict) -> dict:
    """``{key path string: (array, dtype)}`` of a ``molrg-checkpoint-2`` file, checked against its meta."""
    records = meta.get("leaves")
    if not isinstance(records, list) or meta.get("num_leaves") != len(records):
        fail("path", f"{path!r} has a corrupt __meta__ (leaf list)")
    out = {}
    for i, rec in enumerate(records):
        name = f"leaf_{i}"
        try:
            key, shape, dtype = rec["path"], tuple(rec["shape"]), jnp.dtype(rec["dtype"])
        except (KeyError, TypeError):
            fail("path", f"{path!r} has a corrupt __meta__ (leaf record {i}: {rec!r})")
        if name not in arrays:
            fail("path", f"{path!r} lacks {name} ({key})")
        arr = arrays[name]
        if arr.dtype != dtype and arr.dtype.kind == "V" and arr.dtype.itemsize == dtype.itemsize:
            arr = arr.view(dtype)  # .npy stores extension dtypes such as bfloat16 as raw bytes
        if arr.shape != shape or arr.dtype != dtype:
            fail("path", f"{path!r}: {name} ({key}) is {arr.shape} {arr.dtype}, "
                         f"its record says {shape} {dtype} (corrupt file)")
        out[key] = arr
    return out


def _v1_leaves(path: str, meta: dict, arrays: dict, template) -> dict:
    """``{key path string: array}`` of a ``molrg-checkpoint-1`` file, matched to ``template``.

    The old file's tree is walked together with the template: dicts by key (the old leaf
    order followed dict insertion order, jax's follows sorted keys), lists, tuples and
    namedtuples by position (namedtuple classes are compared by name, never imported).
    """
    leaves = [arrays.get(f"leaf_{i}") for i in range(len(arrays))]
    out: dict = {}

    def walk(spec, node, key_path):
        name, where = _split(key_path) if key_path else ("path", "(root)")
        kind = spec["t"]

        def mismatch(what):
            fail(name, f"leaf {where}: checkpoint {path!r} ({_FORMAT_V1}) has {what}")

        if node is None:
            if kind != "none":
                mismatch(f"a {kind} where the template has None")
        elif isinstance(node, dict):
            if kind != "dict":
                mismatch(f"a {kind} where the template has a dict")
            keys = list(spec["keys"])
            if set(keys) != set(node):
                mismatch(f"dict keys {sorted(keys)}, the template {sorted(node)}")
            children = dict(zip(keys, spec["c"]))
            for k in node:
                walk(children[k], node[k], key_path + (jax.tree_util.DictKey(k),))
        elif isinstance(node, tuple) and hasattr(node, "_fields"):
            cls = type(node).__qualname__
            if kind != "namedtuple" or spec["name"] != cls or len(spec["c"]) != len(node._fields):
                got = spec.get("name", kind)
                mismatch(f"{got} with {len(spec.get('c', []))} fields where the template has "
                         f"{cls} with {len(node._fields)}")
            for field, child, value in zip(node._fields, spec["c"], node):
                walk(child, value, key_path + (jax.tree_util.GetAttrKey(field),))
        elif isinstance(node, (list, tuple)):
            if kind not in ("list", "tuple") or len(spec["c"]) != len(node):
                mismatch(f"a {kind} of length {len(spec.get('c', []))} where the template has a "
                         f"{type(node).__name__} of length {len(node)}")
            for i, (child, value) in enumerate(zip(spec["c"], node)):
                walk(child, value, key_path + (jax.tree_util.SequenceKey(i),))
        elif jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(node)):
            if kind != "leaf":
                mismatch(f"a {kind} where the template has a leaf")
            arr = leaves[spec["i"]]
            if arr is None:
                fail("path", f"{path!r} lacks leaf_{spec['i']} ({where})")
            out[jax.tree_util.keystr(key_path)] = arr
        else:
            fail(name, f"template node {where} is a {type(node).__name__}: {_FORMAT_V1} files "
                       "hold only dicts, lists, tuples, namedtuples and None")

    try:
        walk(meta["tree"], {"params": template[0], "opt_state": template[1]}, ())
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        fail("path", f"{path!r} has a corrupt {_FORMAT_V1} tree ({type(err).__name__}: {err})")
    return out


# ----------------------------------------------------------------------------------------
# Restoring into the template.
# ----------------------------------------------------------------------------------------
def _restore(path: str, key_path, template_leaf, arr: np.ndarray):
    name, where = _split(key_path)
    if isinstance(template_leaf, (bool, int, float, complex)):
        kind = np.asarray(template_leaf).dtype.kind
        if arr.shape != () or arr.dtype.kind != kind:
            fail(name, f"leaf {where} is a Python {type(template_leaf).__name__} in the template "
                       f"but {arr.shape} {arr.dtype} in checkpoint {path!r}")
        return type(template_leaf)(arr.item())
    if not (hasattr(template_leaf, "shape") and hasattr(template_leaf, "dtype")):
        fail(name, f"template leaf {where} is a {type(template_leaf).__name__}; leaves must be "
                   "arrays, jax.ShapeDtypeStruct or Python numbers")
    shape, dtype = tuple(template_leaf.shape), jnp.dtype(template_leaf.dtype)
    if arr.dtype != dtype and arr.dtype.kind == "V" and arr.dtype.itemsize == dtype.itemsize:
        arr = arr.view(dtype)  # molrg-checkpoint-1 kept no dtype record for raw-byte dtypes
    if arr.shape != shape or arr.dtype != dtype:
        fail(name, f"leaf {where} is {shape} {dtype} in the template but {arr.shape} {arr.dtype} "
                   f"in checkpoint {path!r}")
    sharding = getattr(template_leaf, "sharding", None)
    out = jax.device_put(arr, sharding) if sharding is not None else jnp.asarray(arr)
    if out.dtype != arr.dtype:  # e.g. float64 saved, loaded without jax_enable_x64
        fail(name, f"leaf {where} has dtype {arr.dtype}, which JAX turned into {out.dtype} "
                   "(enable jax_enable_x64 to load 64-bit checkpoints)")
    return out


def load_checkpoint(path, *, params, opt_state) -> Checkpoint:
    """Reads a checkpoint into the structure of the templates ``params`` and ``opt_state``.

    The saved leaves are unflattened into the treedef of
    ``{"params": params, "opt_state": opt_state}``; the templates give only structure,
    shapes and dtypes, never values. Every leaf's key path, shape and dtype must match.

    Args:
      path: a file written by :func:`save_checkpoint` (format ``molrg-checkpoint-2``, or
        the older ``molrg-checkpoint-1``).
      params: template of the parameters: the same pytree structure as the saved ones,
        with leaves that are arrays or ``jax.ShapeDtypeStruct`` of the saved shapes and
        dtypes, e.g. ``net.init(key)`` or ``jax.eval_shape(net.init, key)`` (add the
        ensemble axis for an ensemble).
      opt_state: template of the optimiser state, likewise, e.g. ``optimizer.init(params)``
        for the optimiser that made it (for :func:`molrg.training.train`'s default,
        ``optax.inject_hyperparams(optax.adam)(learning_rate=lr).init(params)``).

    Returns:
      ``Checkpoint(params, opt_state, step, config)``: leaves as ``jax.Array`` with the saved
      dtypes (placed with the template leaf's sharding where it has one), except that a
      template leaf that is a Python number gives a Python number.

    Raises:
      ValueError: naming ``path`` (missing, unreadable, not a checkpoint, unknown format,
        corrupt metadata) or ``params`` / ``opt_state`` (a leaf whose key path, shape or
        dtype differs from the template's, with both).
    """
    template_leaves, treedef = _flatten(params, opt_state)
    path, meta, arrays = _read(path)
    if meta["format"] == FORMAT:
        saved = _v2_leaves(path, meta, arrays)
    else:
        saved = _v1_leaves(path, meta, arrays, (params, opt_state))
    wanted = [jax.tree_util.keystr(kp) for kp, _ in template_leaves]
    for kp, key in zip((kp for kp, _ in template_leaves), wanted):
        if key not in saved:
            name, where = _split(kp)
            fail(name, f"leaf {where} of the template is not in checkpoint {path!r}")
    known = set(wanted)
    extra = [key for key in saved if key not in known]
    if extra:
        name = "params" if extra[0].startswith("['params']") else "opt_state"
        fail(name, f"checkpoint {path!r} has leaf {extra[0]} that the template lacks "
                   f"({len(saved)} leaves saved, {len(wanted)} in the template)")
    leaves = [_restore(path, kp, leaf, saved[key]) for (kp, leaf), key in zip(template_leaves, wanted)]
    tree = jax.tree_util.tree_unflatten(treedef, leaves)
    return Checkpoint(tree["params"], tree["opt_state"], int(meta["step"]), meta["config"])


def checkpoint_info(path) -> dict:
    """The step, config and leaf list of a checkpoint, without a template.

    For building the templates of :func:`load_checkpoint` (e.g. the network from the
    saved config).

    Returns:
      ``{"format", "step", "config", "leaves"}`` with ``leaves`` a list of
      ``{"path", "shape", "dtype"}`` in file order (None for ``molrg-checkpoint-1`` files,
      which kept no key paths).
    """
    path, meta, arrays = _read(path)
    leaves = None
    if meta["format"] == FORMAT:
        saved = _v2_leaves(path, meta, arrays)
        leaves = [{"path": key, "shape": tuple(a.shape), "dtype": str(a.dtype)} for key, a in saved.items()]
    return {"format": meta["format"], "step": int(meta["step"]), "config": meta["config"], "leaves": leaves}
