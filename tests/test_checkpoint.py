"""Checkpoints: leaves restored into a template's structure, exact resume, clear errors,
files of the old format, and atomic writes."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import molrg
from molrg.checkpoint import FORMAT, checkpoint_info, load_checkpoint, save_checkpoint
from molrg.networks import LinearDenoiser, LowRankDenoiser, MLPDenoiser, SubspaceDenoiser
from molrg import training
from molrg.training import train

DATA = pathlib.Path(__file__).resolve().parent / "data"


def _adam():
    return optax.inject_hyperparams(optax.adam)(learning_rate=0.01)


def _trained_state(params):
    """Adam state after one update (non-zero moments), from a gradient that is a fixed
    function of the parameters."""
    opt = _adam()
    grads = jax.tree.map(lambda p: 0.5 * p + 1.0, params)
    with jax.numpy_dtype_promotion("standard"):  # Adam's b1 ** count is float ** int32
        _, state = opt.update(grads, opt.init(params), params)
    return state


def _templates(params):
    """Shape-only templates, as a new process would build them."""
    p = jax.eval_shape(lambda: params)
    return p, jax.eval_shape(_adam().init, p)


def _assert_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert isinstance(x, jax.Array) and x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _no_temporaries(folder):
    return [p.name for p in pathlib.Path(folder).iterdir() if p.name.startswith(".")] == []


# ----------------------------------------------------------------------------------------
# Round trips.
# ----------------------------------------------------------------------------------------
NETWORKS = [
    LowRankDenoiser(6, 2, 2, delta=0.3),
    LowRankDenoiser(6, 2, 2, delta=0.3, learn_delta=True),
    SubspaceDenoiser(6, 2, 2),
    MLPDenoiser(6, width=8, depth=3, embed_dim=4),
    MLPDenoiser(6, width=8, depth=2, embed_dim=4, film=True),
    LinearDenoiser(6, rank=3),
]


@pytest.mark.parametrize("net", NETWORKS, ids=repr)
def test_round_trip_params_and_adam_state_of_every_network(net, tmp_path):
    params = net.init(jax.random.key(1), dtype=jnp.float64)
    state = _trained_state(params)
    path = tmp_path / "ck.npz"
    save_checkpoint(path, params, state, 3, {"net": type(net).__name__})
    p_tpl, s_tpl = _templates(params)
    ck = load_checkpoint(path, params=p_tpl, opt_state=s_tpl)
    assert ck.step == 3 and ck.config == {"net": type(net).__name__}
    _assert_identical(ck.params, params)
    _assert_identical(ck.opt_state, state)
    assert type(ck.opt_state) is type(state)  # the template's class, nothing imported by name
    # concrete templates (a fresh init and optimiser state) work the same and give the saved values
    fresh = net.init(jax.random.key(2), dtype=jnp.float64)
    again = load_checkpoint(path, params=fresh, opt_state=_adam().init(fresh))
    _assert_identical(again.params, params)
    _assert_identical(again.opt_state, state)
    # the restored parameters still run the network
    x = jnp.ones((3, 6), jnp.float64)
    np.testing.assert_array_equal(np.asarray(net.apply(ck.params, x, 0.5)),
                                  np.asarray(net.apply(params, x, 0.5)))
    assert _no_temporaries(tmp_path)


def test_round_trip_structure_overwrite_and_metadata(tmp_path):
    params = {"A": jnp.arange(6.0).reshape(3, 2), "blocks": [{"w": jnp.ones((2, 2))}], "none": None,
              "half": jnp.arange(3.0).astype(jnp.bfloat16), "count": jnp.asarray(4, jnp.int32)}
    opt_state = _adam().init({"A": params["A"], "blocks": params["blocks"]})
    path = tmp_path / "ck"
    save_checkpoint(path, params, opt_state, 7, {"note": "first"})
    save_checkpoint(path, params, opt_state, 8, {"note": "second", "list": [1, 2]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    ck = load_checkpoint(path, params=params, opt_state=opt_state)
    assert ck.step == 8 and ck.config == {"note": "second", "list": [1, 2]}
    assert ck.params["none"] is None
    _assert_identical(ck.params, params)
    _assert_identical(ck.opt_state, opt_state)
    assert ck.params["half"].dtype == jnp.bfloat16
    with np.load(path) as z:
        text = str(z["__meta__"])
        meta = json.loads(text)
        assert meta["format"] == FORMAT == "molrg-checkpoint-2"
        assert meta["num_leaves"] == len(jax.tree.leaves((params, opt_state))) == len(z.files) - 1
    # key paths, shapes and dtypes, but no class or module names
    assert {"path": "['params']['A']", "shape": [3, 2], "dtype": "float64"} in meta["leaves"]
    assert "Adam" not in text and "optax" not in text and "Inject" not in text
    info = checkpoint_info(path)
    assert info["step"] == 8 and info["format"] == FORMAT and info["config"] == ck.config
    assert {"path": "['params']['half']", "shape": (3,), "dtype": "bfloat16"} in info["leaves"]


def test_python_number_leaves(tmp_path):
    params = {"x": 2.5, "n": 3, "a": jnp.ones(2)}
    path = tmp_path / "ck"
    save_checkpoint(path, params, (), 0)
    ck = load_checkpoint(path, params={"x": 0.0, "n": 0, "a": jnp.zeros(2)}, opt_state=())
    assert ck.params["x"] == 2.5 and type(ck.params["x"]) is float
    assert ck.params["n"] == 3 and type(ck.params["n"]) is int
    # array templates give arrays of the saved dtype
    ck = load_checkpoint(path, params={"x": jax.ShapeDtypeStruct((), jnp.float64),
                                       "n": jax.ShapeDtypeStruct((), jnp.int64), "a": jnp.zeros(2)},
                         opt_state=())
    assert isinstance(ck.params["x"], jax.Array) and float(ck.params["x"]) == 2.5
    with pytest.raises(ValueError, match=r"^params: leaf \['n'\] is a Python float in the template"):
        load_checkpoint(path, params={"x": 0.0, "n": 0.0, "a": jnp.zeros(2)}, opt_state=())


# ----------------------------------------------------------------------------------------
# Exact resume.
# ----------------------------------------------------------------------------------------
N, K, D, DELTA = 10, 2, 2, 0.2
STEPS = 240


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_resume_equals_one_go(tmp_path):
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(N, K * D)))
    mix = molrg.MoLRG([jnp.asarray(q[:, i * D:(i + 1) * D]) for i in range(K)], delta=DELTA)
    x_train = jax.jit(lambda key: mix.sample(key, 1200)[0])(jax.random.key(4))  # 37 steps per epoch
    net = LowRankDenoiser(N, K, D, delta=DELTA)
    whole = train(net, x_train, seed=3, steps=STEPS, learning_rate=0.01)
    # templates as a fresh process would build them (checkpoint.py's module example)
    params_tpl = jax.eval_shape(lambda: net.init(jax.random.key(0), dtype=x_train.dtype))
    state_tpl = jax.eval_shape(training.optimizer(optax.adam).init, params_tpl)
    # 120 = 3 epochs of 37 steps + 9: resumes mid-epoch; 74 = 2 epochs: resumes at an epoch
    # boundary, where the first step's permutation is the one drawn before the loop
    for first in (STEPS // 2, 74):
        a = train(net, x_train, seed=3, steps=first, learning_rate=0.01)
        path = tmp_path / f"ck_{first}.npz"
        save_checkpoint(path, a.params, a.opt_state, a.step, {"seed": 3, "lr": 0.01})
        ck = load_checkpoint(path, params=params_tpl, opt_state=state_tpl)
        assert ck.step == first and ck.config == {"seed": 3, "lr": 0.01}
        _assert_identical(ck.params, a.params)
        _assert_identical(ck.opt_state, a.opt_state)
        b = train(net, x_train, seed=3, steps=STEPS - first, params=ck.params,
                  opt_state=ck.opt_state, start_step=ck.step)
        assert b.step == STEPS
        assert _max_diff(b.params, whole.params) <= 1e-12
        assert _max_diff(b.opt_state, whole.opt_state) <= 1e-12
        np.testing.assert_allclose(np.concatenate([a.losses, b.losses]), whole.losses, atol=1e-12)
    assert _no_temporaries(tmp_path)


# ----------------------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------------------
@pytest.fixture()
def saved(tmp_path):
    params = {"A": jnp.ones((6, 4)), "b": jnp.zeros(3)}
    state = _trained_state(params)
    path = tmp_path / "ck"
    save_checkpoint(path, params, state, 2)
    return path, params, state


def test_template_mismatch_names_the_leaf(saved):
    path, params, state = saved
    _, s_tpl = _templates(params)
    bad = {"A": jax.ShapeDtypeStruct((6, 3), jnp.float64), "b": params["b"]}
    with pytest.raises(ValueError, match=r"^params: leaf \['A'\] is \(6, 3\) float64 in the template "
                                         r"but \(6, 4\) float64 in checkpoint"):
        load_checkpoint(path, params=bad, opt_state=s_tpl)
    bad = {"A": params["A"], "b": jax.ShapeDtypeStruct((3,), jnp.float32)}
    with pytest.raises(ValueError, match=r"^params: leaf \['b'\] is \(3,\) float32 in the template "
                                         r"but \(3,\) float64"):
        load_checkpoint(path, params=bad, opt_state=s_tpl)
    with pytest.raises(ValueError, match=r"^params: leaf \['c'\] of the template is not in checkpoint"):
        load_checkpoint(path, params={**params, "c": jnp.ones(2)}, opt_state=s_tpl)
    with pytest.raises(ValueError, match=r"^params: checkpoint .* has leaf \['params'\]\['b'\] that "
                                         r"the template lacks"):
        load_checkpoint(path, params={"A": params["A"]}, opt_state=s_tpl)
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1).init(params)
    with pytest.raises(ValueError, match=r"^opt_state: "):
        load_checkpoint(path, params=params, opt_state=sgd)
    with pytest.raises(ValueError, match=r"^params: template leaf \['A'\] is a str"):
        load_checkpoint(path, params={"A": "x", "b": params["b"]}, opt_state=s_tpl)


def test_save_rejects_bad_arguments_before_writing(tmp_path):
    params = {"A": jnp.ones(2)}
    state = _adam().init(params)
    with pytest.raises(ValueError, match="^config:"):
        save_checkpoint(tmp_path / "bad", params, state, 1, {"x": object()})
    with pytest.raises(ValueError, match="^step:"):
        save_checkpoint(tmp_path / "bad", params, state, -1)
    with pytest.raises(ValueError, match=r"^params: leaf \['k'\] is a PRNG key"):
        save_checkpoint(tmp_path / "bad", {"k": jax.random.key(0)}, state, 1)
    with pytest.raises(ValueError, match=r"^params: leaf \['s'\] is a str"):
        save_checkpoint(tmp_path / "bad", {"s": "text"}, state, 1)
    with pytest.raises(ValueError, match="^path: directory"):
        save_checkpoint(tmp_path / "no" / "dir", params, state, 1)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_files_name_the_path(saved, tmp_path):
    path, params, state = saved
    with pytest.raises(ValueError, match="^path: no checkpoint file"):
        load_checkpoint(tmp_path / "missing", params=params, opt_state=state)

    def expect(name, content, match):
        p = tmp_path / name
        p.write_bytes(content) if isinstance(content, bytes) else np.savez(p, **content)
        with pytest.raises(ValueError, match=match):
            load_checkpoint(p, params=params, opt_state=state)
        with pytest.raises(ValueError, match=match):
            checkpoint_info(p)

    expect("text", b"not a checkpoint\n", "^path: .*not a readable .npz")
    expect("cut", path.read_bytes()[:-200], "^path: .*not a readable .npz")
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(ValueError, match="^path: .*not an .npz"):
        load_checkpoint(tmp_path / "one.npy", params=params, opt_state=state)
    expect("nometa.npz", {"leaf_0": np.ones(2)}, "^path: .*no __meta__")
    expect("json.npz", {"__meta__": np.asarray("{not json")}, "^path: .*corrupt __meta__ .not JSON")
    expect("fmt.npz", {"__meta__": np.asarray(json.dumps({"format": "molrg-checkpoint-9", "step": 0,
                                                           "config": None}))},
           "^path: .*unknown checkpoint format 'molrg-checkpoint-9'")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["__meta__"]))
    meta["leaves"][0]["shape"] = [99]
    expect("rec.npz", {**arrays, "__meta__": np.asarray(json.dumps(meta))}, "^path: .*corrupt file")
    meta["step"] = "two"
    expect("step.npz", {**arrays, "__meta__": np.asarray(json.dumps(meta))}, "^path: .*corrupt __meta__")


def test_a_failed_write_leaves_the_old_file(saved, monkeypatch):
    path, params, state = saved
    before = path.read_bytes()

    def torn_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip")  # part of a file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", torn_savez)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, params, state, 99)
    monkeypatch.undo()
    assert path.read_bytes() == before and _no_temporaries(path.parent)
    assert load_checkpoint(path, params=params, opt_state=state).step == 2


# ----------------------------------------------------------------------------------------
# Files of the old format molrg-checkpoint-1.
# ----------------------------------------------------------------------------------------
def _ramp_params():
    """The parameters stored in tests/data/checkpoint_v1.npz: MLPDenoiser(n=2, width=3,
    depth=2, embed_dim=2) shapes, in an insertion order that differs from jax's sorted one.

    The file was written by molrg's molrg-checkpoint-1 writer (molrg.training.save_checkpoint
    at commit 117a5d5) with x64 on as
    ``p = _ramp_params(); save_checkpoint(f, p, _trained_v1_state(p), 5, {"seed": 0, "lr": 0.01})``.
    """
    shapes = {"input": {"w": (4, 3), "b": (3,)}, "blocks": [{"w": (3, 3), "b": (3,)}],
              "output": {"w": (3, 2), "b": (2,)}}
    counter = [0]

    def build(node):
        if isinstance(node, dict):
            return {k: build(v) for k, v in node.items()}
        if isinstance(node, list):
            return [build(v) for v in node]
        counter[0] += 1
        return jnp.asarray(np.arange(np.prod(node), dtype=np.float64).reshape(node) / 10 + counter[0])

    return build(shapes)


def _trained_v1_state(params):
    opt = _adam()
    with jax.numpy_dtype_promotion("standard"):  # Adam's b1 ** count is float ** int32
        _, state = opt.update(params, opt.init(params), params)
    return state


def test_loads_a_file_of_the_old_format():
    path = DATA / "checkpoint_v1.npz"
    assert json.loads(str(np.load(path)["__meta__"]))["format"] == "molrg-checkpoint-1"
    net = MLPDenoiser(2, width=3, depth=2, embed_dim=2)
    p_tpl = jax.eval_shape(lambda: net.init(jax.random.key(0), dtype=jnp.float64))
    s_tpl = jax.eval_shape(_adam().init, p_tpl)
    ck = load_checkpoint(path, params=p_tpl, opt_state=s_tpl)
    assert ck.step == 5 and ck.config == {"seed": 0, "lr": 0.01}
    expected = _ramp_params()
    _assert_identical(ck.params, expected)
    _assert_identical(ck.opt_state, _trained_v1_state(expected))
    assert checkpoint_info(path) == {"format": "molrg-checkpoint-1", "step": 5,
                                     "config": {"seed": 0, "lr": 0.01}, "leaves": None}
    sgd = jax.eval_shape(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1).init, p_tpl)
    with pytest.raises(ValueError, match=r"^opt_state: leaf \.hyperparams: checkpoint .* has dict keys"):
        load_checkpoint(path, params=p_tpl, opt_state=sgd)
    with pytest.raises(ValueError, match=r"^params: leaf \['blocks'\]: checkpoint .* has a list of "
                                         "length 1 where the template has a list of length 2"):
        bigger = jax.eval_shape(lambda: MLPDenoiser(2, width=3, depth=3, embed_dim=2)
                                .init(jax.random.key(0), dtype=jnp.float64))
        load_checkpoint(path, params=bigger, opt_state=s_tpl)


def test_old_format_python_numbers_and_raw_dtypes(tmp_path):
    # A hand-written molrg-checkpoint-1 file: a Python int leaf and a bfloat16 leaf (which
    # .npy stores as raw 2-byte values).
    tree = {"t": "dict", "keys": ["params", "opt_state"], "c": [
        {"t": "dict", "keys": ["x", "n"], "c": [{"t": "leaf", "i": 0, "py": None},
                                                {"t": "leaf", "i": 1, "py": "int"}]},
        {"t": "tuple", "c": [{"t": "namedtuple", "module": "optax._src.base", "name": "EmptyState",
                              "c": []}]}]}
    meta = {"format": "molrg-checkpoint-1", "tree": tree, "step": 4, "config": None}
    x = np.asarray(jnp.asarray([1.5, -2.0], jnp.bfloat16))
    path = tmp_path / "v1.npz"
    np.savez(path, leaf_0=x, leaf_1=np.asarray(7), __meta__=np.asarray(json.dumps(meta)))
    ck = load_checkpoint(path, params={"x": jax.ShapeDtypeStruct((2,), jnp.bfloat16), "n": 0},
                         opt_state=(optax.EmptyState(),))
    assert ck.step == 4 and ck.params["n"] == 7 and type(ck.params["n"]) is int
    assert ck.params["x"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(ck.params["x"], np.float64), [1.5, -2.0])
    assert ck.opt_state == (optax.EmptyState(),)
    # a corrupt old tree is reported against the file
    meta["tree"]["c"][0]["c"][0] = {"t": "leaf"}
    np.savez(path, leaf_0=x, leaf_1=np.asarray(7), __meta__=np.asarray(json.dumps(meta)))
    with pytest.raises(ValueError, match="^path: .*corrupt molrg-checkpoint-1 tree"):
        load_checkpoint(path, params={"x": jax.ShapeDtypeStruct((2,), jnp.bfloat16), "n": 0},
                        opt_state=(optax.EmptyState(),))

