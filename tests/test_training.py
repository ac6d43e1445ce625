"""Training: noise distributions, the loss, determinism, ensembles, devices (checkpoints and
exact resume: test_checkpoint.py)."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import molrg
from molrg.networks import LowRankDenoiser, MLPDenoiser
from molrg.schedules import DDPMLinear
from molrg.training import (DDPMNoise, LogNormalNoise, LogUniformNoise, denoising_loss, fit,
                            train, train_ensemble)

N, K, D, DELTA = 10, 2, 2, 0.2
STEPS, EVERY = 240, 80  # shared by several tests so that they share one compiled program


def _orthogonal_mixture(n, k, d, delta, seed):
    """Assumption-1 MoLRG from NumPy bases (molrg.random_molrg runs eagerly: seconds of
    op-by-op compilation on first use)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, k * d)))
    return molrg.MoLRG([jnp.asarray(q[:, i * d:(i + 1) * d]) for i in range(k)], delta=delta)


@pytest.fixture(scope="module")
def mix():
    return _orthogonal_mixture(N, K, D, DELTA, seed=3)


# MoLRG.sample run eagerly compiles op by op for every new size (seconds): jit it once.
_sample = jax.jit(lambda mix, key, num: mix.sample(key, num), static_argnums=2)


@pytest.fixture(scope="module")
def x_train(mix):
    return _sample(mix, jax.random.key(4), 1200)[0]  # 1200 // 32 = 37 steps per epoch


@pytest.fixture(scope="module")
def net():
    return LowRankDenoiser(N, K, D, delta=DELTA)


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ----------------------------------------------------------------------------------------
# Noise distributions and the loss.
# ----------------------------------------------------------------------------------------
def test_noise_distributions():
    z = jax.random.normal(jax.random.key(0), (200_000,), jnp.float64)
    sched = DDPMLinear()
    sigma, scale = jax.jit(DDPMNoise().from_normal)(z)
    t = np.searchsorted(sched.sigmas, np.asarray(sigma))
    np.testing.assert_allclose(np.asarray(sigma), sched.sigmas[t], rtol=1e-14)
    np.testing.assert_allclose(np.asarray(scale), np.sqrt(sched.alphas_cumprod[t]), rtol=1e-14)
    counts = np.bincount(t, minlength=500)  # uniform on {0..499}: chi-square, 499 dof
    chi2 = np.sum((counts - 400.0) ** 2 / 400.0)
    assert abs(chi2 - 499) < 6 * np.sqrt(2 * 499)
    sig, sc = jax.jit(LogNormalNoise(p_mean=-1.2, p_std=1.2).from_normal)(z)
    log_sig = np.log(np.asarray(sig))
    assert abs(log_sig.mean() + 1.2) < 5 * 1.2 / np.sqrt(z.size) and abs(log_sig.std() - 1.2) < 0.01
    assert np.all(np.asarray(sc) == 1.0)
    sig, _ = jax.jit(LogUniformNoise(0.01, 10.0).from_normal)(z)
    u = (np.log(np.asarray(sig)) - np.log(0.01)) / np.log(1000.0)
    assert u.min() >= 0 and u.max() <= 1 and abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / z.size)


def test_denoising_loss_matches_numpy(x_train, net):
    x0 = x_train[:16]
    eps = jax.random.normal(jax.random.key(2), x0.shape, jnp.float64)
    sigma, scale = jnp.linspace(0.1, 2.0, 16), jnp.linspace(0.4, 1.0, 16)
    params = net.init(jax.random.key(5))
    xt = scale[:, None] * (x0 + sigma[:, None] * eps)
    pred = np.asarray(net.apply(params, xt, sigma, scale))
    ref = np.mean(np.sum((pred - np.asarray(x0)) ** 2, axis=1))
    loss = jax.jit(lambda p: denoising_loss(net, p, x0, sigma, scale, eps))(params)
    assert abs(float(loss) - ref) < 1e-13


# ----------------------------------------------------------------------------------------
# Training runs: orthonormality, determinism, ensembles.
# ----------------------------------------------------------------------------------------
def test_orthonormality_preserved_and_determinism(net, x_train):
    res = train(net, x_train, seed=0, steps=STEPS, learning_rate=0.05)
    u = net.bases(res.params)
    assert np.max(np.abs(u.T @ u - np.eye(K * D))) < 1e-12
    a = np.asarray(res.params["A"])
    assert np.max(np.abs(a.T @ a - np.eye(K * D))) > 1e-3  # A itself has left the manifold
    assert res.losses.shape == (STEPS,) and res.step == STEPS and np.all(np.isfinite(res.losses))
    again = train(net, x_train, seed=0, steps=STEPS, learning_rate=0.05)
    assert _max_diff(res, again) == 0.0
    other = train(net, x_train, seed=1, steps=STEPS, learning_rate=0.05)
    assert _max_diff(res.params, other.params) > 1e-3


def test_ensemble_equals_individual_runs_with_evaluation(net, x_train, mix):
    seeds, lrs = [0, 5, 9], [1e-3, 5e-3, 2e-2]
    ens = train_ensemble(net, x_train, seeds=seeds, learning_rates=lrs, steps=STEPS,
                         eval_every=EVERY, mix=mix)
    assert ens.losses.shape == (3, STEPS) and ens.evals["net_mse"].shape == (3, STEPS // EVERY + 1, 14)
    for e, (seed, lr) in enumerate(zip(seeds, lrs)):
        one = train(net, x_train, seed=seed, learning_rate=lr, steps=STEPS, eval_every=EVERY, mix=mix)
        member = jax.tree.map(lambda v: v[e], (ens.params, ens.opt_state, ens.losses))
        assert _max_diff(member, (one.params, one.opt_state, one.losses)) <= 1e-10
        for key in ("net_mse", "subspace_error", "stacked_error", "principal_angles"):
            np.testing.assert_allclose(ens.evals[key][e], one.evals[key], atol=1e-10)
        np.testing.assert_array_equal(ens.evals["block_match"][e], one.evals["block_match"])
    np.testing.assert_array_equal(ens.evals["step"], np.arange(0, STEPS + 1, EVERY))


def test_evaluation_against_known_answers(net, x_train, mix):
    # At U* the network is the exact denoiser: on the same noisy points its MSE equals the
    # Bayes MSE (excess 0), and every subspace measure is 0. Swapping the blocks changes
    # nothing but the matching. Tilting one column of block 0 by theta out of span(U*)
    # gives principal angles (0, theta), (0, 0), ||P^ - P*||_F = sqrt(2) sin(theta) and the
    # normalised error sqrt(2) sin(theta) / sqrt(2 K d).
    u = np.asarray(mix.stacked_bases)
    tiny = 1e-12  # learning rate: only the evaluation at step 0 matters here
    res = train(net, x_train, seed=0, steps=STEPS, eval_every=EVERY, mix=mix, learning_rate=tiny,
                params=net.init(None, bases=jnp.asarray(u)))
    ev = res.evals
    assert np.max(np.abs(ev["excess_mse"][0])) < 1e-12 * np.max(ev["bayes_mse"])
    assert ev["subspace_error"][0] < 1e-7 and ev["stacked_error"][0] < 1e-7
    assert np.all(ev["bayes_mse"] > 0) and np.all(np.diff(ev["bayes_mse"]) > 0)

    swapped = np.concatenate([u[:, D:], u[:, :D]], axis=1)
    res = train(net, x_train, seed=0, steps=STEPS, eval_every=EVERY, mix=mix, learning_rate=tiny,
                params=net.init(None, bases=jnp.asarray(swapped)))
    assert res.evals["subspace_error"][0] < 1e-7
    np.testing.assert_array_equal(res.evals["block_match"][0], [1, 0])

    theta = 0.3
    rng = np.random.default_rng(0)
    v = rng.normal(size=N)
    v -= u @ (u.T @ v)
    v /= np.linalg.norm(v)
    tilted = u.copy()
    tilted[:, 0] = np.cos(theta) * u[:, 0] + np.sin(theta) * v
    res = train(net, x_train, seed=0, steps=STEPS, eval_every=EVERY, mix=mix, learning_rate=tiny,
                params=net.init(None, bases=jnp.asarray(tilted)))
    ev = res.evals
    assert abs(ev["subspace_error"][0] - np.sqrt(2) * np.sin(theta) / np.sqrt(2 * K * D)) < 1e-7
    np.testing.assert_allclose(ev["principal_angles"][0], [[0, theta], [0, 0]], atol=1e-7)
    assert np.all(ev["excess_mse"][0] > -1e-12)


def test_training_recovers_subspaces_from_a_nearby_start(net, x_train, mix):
    # Start at U* rotated by a random rotation of the whole space (angles ~ 0.4 rad):
    # training must bring the matched subspace error well below where it started.
    rng = np.random.default_rng(1)
    skew = rng.normal(size=(N, N))
    skew = 0.1 * (skew - skew.T)
    rot = np.asarray(jax.scipy.linalg.expm(jnp.asarray(skew)))
    start = rot @ np.asarray(mix.stacked_bases)
    res = train(net, x_train, seed=0, steps=STEPS, eval_every=EVERY, mix=mix, learning_rate=3e-3,
                params=net.init(None, bases=jnp.asarray(start)))
    err = res.evals["subspace_error"] * np.sqrt(2 * K * D)  # unnormalised ||P^ - P*||_F
    assert err[0] > 0.5 and err[-1] < 0.2, err  # measured 0.90 -> 0.09
    assert res.evals["excess_mse"][-1].mean() < 0.25 * res.evals["excess_mse"][0].mean()


def test_ensemble_span_recovery_from_random_starts(net, x_train, mix):
    # From random starts the union of the learned subspaces (the stacked span) is always
    # found; the block assignment can stall in a local minimum (see the slow test).
    ens = train_ensemble(net, x_train, seeds=[0, 5, 9], learning_rates=0.01, steps=STEPS,
                         eval_every=EVERY, mix=mix)
    stacked = ens.evals["stacked_error"]
    assert np.all(stacked[:, 0] > 1.0) and np.all(stacked[:, -1] < 0.3), stacked  # measured <= 0.17


@pytest.mark.slow
def test_training_recovers_subspaces_from_random_starts():
    # docs/theory.md section 4's setting at small size: K = 2, n = 20, d = 3, delta = 0.2.
    # Every seed finds the stacked span; the blocks are exactly recovered by some seeds,
    # while others stall with one direction assigned to the wrong block (a local minimum
    # of the population loss: matched error ~ 2 = sqrt(2 + 2)).
    mix = _orthogonal_mixture(20, 2, 3, 0.2, seed=0)
    x0 = _sample(mix, jax.random.key(1), 4000)[0]
    net = LowRankDenoiser(20, 2, 3, delta=0.2)
    ens = train_ensemble(net, x0, seeds=np.arange(8), learning_rates=2e-3, steps=6000,
                         eval_every=3000, mix=mix)
    err = ens.evals["subspace_error"][:, -1] * np.sqrt(2 * 2 * 3)  # unnormalised, as the bounds
    stacked = ens.evals["stacked_error"][:, -1]
    assert np.all(stacked < 0.25), stacked
    assert np.sum(err < 0.25) >= 1, err
    # A stalled run has m >= 1 directions in the wrong block: err^2 ~ 4 m.
    stalled = err[err >= 0.25]
    m = stalled**2 / 4
    assert np.all(np.round(m) >= 1) and np.all(np.abs(m - np.round(m)) < 0.1), err
    ok = err < 0.25
    assert np.all(ens.evals["excess_mse"][ok, -1].mean(-1) < 0.02)


# ----------------------------------------------------------------------------------------
# Other data sources, noise options, networks, dtypes.
# ----------------------------------------------------------------------------------------
def test_fresh_samples_with_continuous_ve_noise(net, mix):
    res = train(net, mix, seed=2, steps=60, noise=LogNormalNoise(), learning_rate=0.01)
    again = train(net, mix, seed=2, steps=60, noise=LogNormalNoise(), learning_rate=0.01)
    assert np.all(np.isfinite(res.losses)) and _max_diff(res, again) == 0.0
    assert np.unique(np.asarray(res.losses)).size == 60


def test_mlp_trains_in_float32(mix, x_train):
    x32 = x_train.astype(jnp.float32)
    net = MLPDenoiser(N, width=32, depth=2, sigma_data=0.3)
    res = train(net, x32, seed=0, steps=STEPS, learning_rate=3e-3, eval_every=EVERY, mix=mix)
    assert res.params["input"]["w"].dtype == jnp.float32 and res.losses.dtype == jnp.float32
    exc = res.evals["excess_mse"].mean(-1)
    assert exc[-1] < 0.5 * exc[0], exc
    assert "subspace_error" not in res.evals


# ----------------------------------------------------------------------------------------
# fit: the traceable program with per-sample weights, full batch and a schedule.
# ----------------------------------------------------------------------------------------
def test_fit_equals_a_hand_written_scheduled_adam_loop(x_train):
    # P0's recipe (phase_transition): full batch, padding rows of weight 0, Adam with cosine
    # decay, sigma log-uniform. Reference: optax's own scheduled Adam, stepped by hand on the
    # valid rows only, with the noise the module docstring documents
    # (normal(fold_in(fold_in(key, 2), i), (B, n + 1)) drawn flat, sigma by inverse transform).
    from molrg.networks import SubspaceDenoiser

    rows, valid, steps, lr, lo, hi = 12, 8, 25, 1e-2, 0.01, 0.3
    x = x_train[:rows].at[valid:].set(5.0)  # padding rows hold garbage: they must not count
    w = (jnp.arange(rows) < valid).astype(x.dtype)
    net = SubspaceDenoiser(N, K, D)
    key = jax.random.key(7)
    got = jax.jit(lambda x, w, key, lr: fit(
        net, x, key=key, weights=w, steps=steps, learning_rate=lr, noise=LogUniformNoise(lo, hi),
        schedule=optax.cosine_decay_schedule(1.0, steps, alpha=1e-3)))(x, w, key, lr)

    params = net.init(jax.random.fold_in(key, 0), dtype=x.dtype)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=1e-3))
    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(params)
    k_noise = jax.random.fold_in(key, 2)
    x0 = x[:valid]

    def loss(p, eps, sigma):
        pred = net.apply(p, x0 + sigma[:, None] * eps, sigma)
        return jnp.mean(jnp.sum(jnp.square(pred - x0), axis=-1))

    for i in range(steps):
        z = jax.random.normal(jax.random.fold_in(k_noise, i), (rows * (N + 1),), x.dtype).reshape(rows, N + 1)
        u = jax.scipy.special.ndtr(z[:valid, N])
        sigma = jnp.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u)
        grads = jax.grad(loss)(params, z[:valid, :N], sigma)
        with jax.numpy_dtype_promotion("standard"):
            updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(got.params["A"], params["A"], rtol=1e-9, atol=1e-12)
    assert got.losses.shape == (steps,) and got.step == steps


def test_fit_weights_minibatches_and_vmap(x_train, net):
    rows, steps = 40, 20
    w = (jnp.arange(rows) % 4 != 0).astype(x_train.dtype)  # every 4th row is padding
    garbage = x_train[:rows].at[::4].set(3.0)
    run = jax.jit(lambda x, w, key, lr: fit(net, x, key=key, weights=w, steps=steps, batch_size=8,
                                            learning_rate=lr).params)
    key = jax.random.key(1)
    a, b = run(x_train[:rows], w, key, 1e-2), run(garbage, w, key, 1e-2)
    assert _max_diff(a, b) == 0.0  # minibatched padding rows count exactly nothing
    # weights of 1 are the plain mean (same rows, same randomness)
    ones = run(x_train[:rows], jnp.ones((rows,)), key, 1e-2)
    plain = jax.jit(lambda x, key: fit(net, x, key=key, steps=steps, batch_size=8,
                                       learning_rate=1e-2).params)(x_train[:rows], key)
    assert _max_diff(ones, plain) <= 1e-12
    # vmapped over keys and learning rates = one run each
    keys = jax.random.split(jax.random.key(2), 3)
    lrs = jnp.asarray([1e-3, 1e-2, 3e-2])
    batched = jax.vmap(run, in_axes=(None, None, 0, 0))(x_train[:rows], w, keys, lrs)
    for e in range(3):
        assert _max_diff(jax.tree.map(lambda v: v[e], batched),
                         run(x_train[:rows], w, keys[e], lrs[e])) <= 1e-12
    # train is the compiled fit with key = key(seed)
    res = train(net, x_train[:rows], seed=5, steps=steps, batch_size=8, learning_rate=1e-2, weights=w)
    assert _max_diff(res.params, run(x_train[:rows], w, jax.random.key(5), 1e-2)) <= 1e-12
    with pytest.raises(ValueError, match="^weights:"):
        fit(net, x_train[:rows], key=key, steps=1, weights=jnp.ones((rows + 1,)))
    with pytest.raises(ValueError, match="^weights:"):
        fit(net, x_train[:rows], key=key, steps=1, weights=-w)
    with pytest.raises(ValueError, match="^batch_size:"):
        fit(net, molrg.MoLRG([jnp.eye(N)[:, :D], jnp.eye(N)[:, D:2 * D]]), key=key, steps=1)
    with pytest.raises(ValueError, match="^schedule:"):
        fit(net, x_train[:rows], key=key, steps=1, schedule=0.5)


# ----------------------------------------------------------------------------------------
# Multi-device sharding of the ensemble axis (4 host devices, in a subprocess: the flag
# must be set before JAX is imported).
# ----------------------------------------------------------------------------------------
_SHARDED_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"  # virtual CPU devices, also on a GPU/TPU host
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    import molrg
    from molrg.networks import LowRankDenoiser
    from molrg.training import train_ensemble
    assert jax.device_count() == 4
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(10, 4)))[0]
    mix = molrg.MoLRG([jax.numpy.asarray(q[:, :2]), jax.numpy.asarray(q[:, 2:])], delta=0.2)
    x = jax.numpy.asarray(np.random.default_rng(1).normal(size=(200, 10)))
    net = LowRankDenoiser(10, 2, 2, delta=0.2)
    kw = dict(seeds=[0, 1, 2, 3, 4, 5, 6, 7], learning_rates=np.linspace(1e-3, 2e-2, 8), steps=100,
              eval_every=50, mix=mix, eval_size=64)
    sharded = train_ensemble(net, x, **kw)
    assert len(sharded.params["A"].sharding.device_set) == 4
    single = train_ensemble(net, x, devices=jax.devices()[:1], **kw)
    assert len(single.params["A"].sharding.device_set) == 1
    np.savez(sys.argv[1], sharded=np.asarray(sharded.params["A"]), single=np.asarray(single.params["A"]),
             ev_sharded=sharded.evals["net_mse"], ev_single=single.evals["net_mse"],
             losses=np.asarray(sharded.losses))
""")


@pytest.mark.slow
def test_sharded_ensemble_matches_single_device(tmp_path):
    out = tmp_path / "sharded.npz"
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT, str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    z = np.load(out)
    assert np.max(np.abs(z["sharded"] - z["single"])) <= 1e-12
    assert np.max(np.abs(z["ev_sharded"] - z["ev_single"])) <= 1e-12
    assert np.all(np.isfinite(z["losses"]))


# ----------------------------------------------------------------------------------------
# Argument checks.
# ----------------------------------------------------------------------------------------
def test_bad_arguments_raise_named_errors(net, x_train, mix):
    with pytest.raises(ValueError, match="^data:"):
        train(net, jnp.ones((50, N + 1)), seed=0, steps=1)
    with pytest.raises(ValueError, match="^steps:"):
        train(net, x_train, seed=0, steps=0)
    with pytest.raises(ValueError, match="^batch_size:"):
        train(net, x_train, seed=0, steps=1, batch_size=5000)
    with pytest.raises(ValueError, match="^eval_every:"):
        train(net, x_train, seed=0, steps=10, eval_every=3, mix=mix)
    with pytest.raises(ValueError, match="^mix:"):
        train(net, x_train, seed=0, steps=10, eval_every=5)
    with pytest.raises(ValueError, match="^learning_rate:"):
        train(net, x_train, seed=0, steps=1, learning_rate=-1.0)
    with pytest.raises(ValueError, match="^seed:"):
        train(net, x_train, seed=-1, steps=1)
    with pytest.raises(ValueError, match="^noise:"):
        train(net, x_train, seed=0, steps=1, noise="ddpm")
    with pytest.raises(ValueError, match="^net:"):
        train(object(), x_train, seed=0, steps=1)
    with pytest.raises(ValueError, match="^seeds:"):
        train_ensemble(net, x_train, seeds=[0.5, 1.5], steps=1)
    with pytest.raises(ValueError, match="^learning_rates:"):
        train_ensemble(net, x_train, seeds=[0, 1], learning_rates=[1e-3] * 3, steps=1)
    with pytest.raises(ValueError, match="^params:"):
        train_ensemble(net, x_train, seeds=[0, 1], steps=1, params={"A": jnp.ones((3, N, K * D))})
    with pytest.raises(ValueError, match="^sigma_min/sigma_max:"):
        LogUniformNoise(1.0, 0.5)
