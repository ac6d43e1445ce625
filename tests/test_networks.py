"""Denoiser networks against independent references (float64 unless stated)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import molrg
from molrg.networks import (LinearDenoiser, LowRankDenoiser, MLPDenoiser, SubspaceDenoiser,
                            fit_linear, polar)
from molrg.training import denoising_loss

N, K, D = 16, 3, 3


@pytest.fixture(scope="module")
def mix():
    # From NumPy bases: molrg.random_molrg runs eagerly (seconds of op-by-op compilation).
    q, _ = np.linalg.qr(np.random.default_rng(11).normal(size=(N, K * D)))
    return molrg.MoLRG([jnp.asarray(q[:, k * D:(k + 1) * D]) for k in range(K)], delta=0.3)


_POOL = {}


def _noisy(mix, num, sigma, scale, seed=1):
    """(x0, labels, eps, x_t) for num <= 64 samples; one draw per (mixture, seed), and
    the noising in NumPy (eager JAX would compile every small op on first use)."""
    key = (id(mix), seed)
    if key not in _POOL:
        # Orthogonal mixtures only: class k has variance 1 on its block, delta^2 on the
        # others (docs/theory.md section 2), sampled here with NumPy.
        rng = np.random.default_rng(seed)
        u, delta = np.asarray(mix.stacked_bases), float(mix.delta)
        labels = rng.integers(0, mix.K, size=64)
        std = np.where(np.repeat(np.arange(mix.K), mix.dims)[None, :] == labels[:, None], 1.0, delta)
        x0 = (rng.normal(size=(64, u.shape[1])) * std) @ u.T
        eps = rng.normal(size=x0.shape)
        _POOL[key] = (mix, x0, labels, eps)
    _, x0, labels, eps = _POOL[key]
    x0, labels, eps = x0[:num], labels[:num], eps[:num]
    sig, sc = np.asarray(sigma, np.float64), np.asarray(scale, np.float64)
    col = (lambda v: v) if sig.ndim == 0 else (lambda v: v[:, None])
    col_s = (lambda v: v) if sc.ndim == 0 else (lambda v: v[:, None])
    xt = col_s(sc) * (x0 + col(sig) * eps)
    return jnp.asarray(x0), jnp.asarray(labels), jnp.asarray(eps), jnp.asarray(xt)


def _levels(num, per_sample):
    if not per_sample:
        return [(s, c) for s, c in [(1e-3, 1.0), (0.05, 0.9), (0.7, 0.6), (4.0, 0.25), (60.0, 1.0)]]
    sig = jnp.asarray(np.geomspace(1e-3, 50.0, num))
    sc = jnp.asarray(np.linspace(0.1, 1.0, num))
    return [(sig, sc)]


def _random_rotation(seed, d):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return jnp.asarray(q * np.sign(np.diagonal(r))[None, :])


# ----------------------------------------------------------------------------------------
# P1's network at U* is the exact denoiser.
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("per_sample", [False, True])
def test_low_rank_at_true_bases_equals_exact_denoiser(mix, per_sample):
    net = LowRankDenoiser(N, K, D, delta=0.3)
    params = net.init(None, bases=mix.stacked_bases)
    for sigma, scale in _levels(40, per_sample):
        _, _, _, xt = _noisy(mix, 40, sigma, scale)
        out, feats = net.apply(params, xt, sigma, scale, return_features=True)
        ref, post = molrg.denoise(mix, xt, sigma, scale, return_posterior=True)
        assert out.dtype == jnp.float64 and out.shape == xt.shape
        assert np.max(np.abs(out - ref)) <= 1e-10 * max(1.0, float(np.max(np.abs(ref))))
        assert np.max(np.abs(feats["posterior"] - post)) < 1e-10


def test_low_rank_invariant_to_rotations_within_blocks_and_scale_of_A(mix):
    # The network depends on U only through the block projectors (softmax of block
    # energies, U_l U_l^T), and polar(c A R) = polar(A) R: both must leave it unchanged.
    net = LowRankDenoiser(N, K, D, delta=0.3)
    rot = jax.scipy.linalg.block_diag(*[_random_rotation(k, D) for k in range(K)])
    p_rot = net.init(None, bases=3.7 * mix.stacked_bases @ rot)
    _, _, _, xt = _noisy(mix, 20, 0.4, 0.8)
    ref = molrg.denoise(mix, xt, 0.4, 0.8)
    assert np.max(np.abs(net.apply(p_rot, xt, 0.4, 0.8) - ref)) < 1e-12


def test_low_rank_features_are_consistent(mix):
    net = LowRankDenoiser(N, K, D, delta=0.3)
    params = net.init(jax.random.key(0))
    _, _, _, xt = _noisy(mix, 12, 0.5, 0.7)
    out, f = net.apply(params, xt, 0.5, 0.7, return_features=True)
    u = net.bases(params)
    assert f["blocks"].shape == (12, K, D) and f["posterior"].shape == (12, K) and f["h"].shape == (12, K * D)
    np.testing.assert_allclose(f["blocks"].reshape(12, -1), (xt / 0.7) @ u, atol=1e-13)
    np.testing.assert_allclose(out, f["h"] @ u.T, atol=1e-13)
    np.testing.assert_allclose(jnp.sum(f["posterior"], -1), 1.0, atol=1e-14)
    # beta_l from docs/theory.md section 3, recomputed by hand: h = beta_l * (U_l^T y).
    s2, d2 = 0.25, 0.09
    beta = d2 / (d2 + s2) + (1 / (1 + s2) - d2 / (d2 + s2)) * f["posterior"]
    np.testing.assert_allclose(f["h"], (beta[:, :, None] * f["blocks"]).reshape(12, -1), atol=1e-13)


def test_batch_shapes_and_jit_vmap(mix):
    net = LowRankDenoiser(N, K, D, delta=0.3)
    params = net.init(jax.random.key(0))
    _, _, _, xt = _noisy(mix, 12, 0.5, 1.0)
    sig = jnp.linspace(0.1, 2.0, 12)
    eager = net.apply(params, xt, sig, 1.0)
    jitted = jax.jit(lambda p, x, s: net.apply(p, x, s, 1.0))(params, xt, sig)
    mapped = jax.vmap(lambda x, s: net.apply(params, x, s, 1.0))(xt, sig)  # per-sample (n,)
    np.testing.assert_allclose(jitted, eager, atol=1e-14)
    np.testing.assert_allclose(mapped, eager, atol=1e-14)
    grid = net.apply(params, xt.reshape(3, 4, N), sig.reshape(3, 4), 1.0)
    np.testing.assert_allclose(grid.reshape(12, N), eager, atol=1e-14)


def test_learned_delta(mix):
    net = LowRankDenoiser(N, K, D, delta=0.3, learn_delta=True)
    params = net.init(None, bases=mix.stacked_bases)
    assert set(params) == {"A", "log_delta"}
    _, _, _, xt = _noisy(mix, 10, 0.3, 1.0)
    np.testing.assert_allclose(net.apply(params, xt, 0.3), molrg.denoise(mix, xt, 0.3), atol=1e-12)
    wrong = dict(params, log_delta=jnp.log(0.6))
    np.testing.assert_allclose(net.apply(wrong, xt, 0.3), molrg.denoise(mix.replace(delta=0.6), xt, 0.3),
                               atol=1e-12)


def test_float32_within_tolerance(mix):
    net = LowRankDenoiser(N, K, D, delta=0.3)
    p64 = net.init(jax.random.key(0))
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), p64)
    # Networks keep JAX's default matmul precision (TF32 on GPUs, a user's speed choice);
    # this test is about float32 arithmetic itself, so it asks for full float32 products.
    for sigma in (0.01, 0.5, 20.0):
        _, _, _, xt = _noisy(mix, 30, sigma, 0.8)
        o64 = net.apply(p64, xt, sigma, 0.8)
        with jax.default_matmul_precision("highest"):
            o32 = net.apply(p32, xt.astype(jnp.float32), sigma, 0.8)
        assert o32.dtype == jnp.float32
        assert np.max(np.abs(np.asarray(o32, np.float64) - o64)) < 1e-4 * max(1.0, float(np.max(np.abs(o64))))


# ----------------------------------------------------------------------------------------
# P0's delta = 0 network.
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("per_sample", [False, True])
def test_subspace_net_equals_exact_denoiser_at_delta_zero(mix, per_sample):
    mix0 = mix.replace(delta=0.0)
    net = SubspaceDenoiser(N, K, D)
    params = net.init(None, bases=mix.stacked_bases)
    lr0 = LowRankDenoiser(N, K, D, delta=0.0)
    for sigma, scale in _levels(40, per_sample):
        _, _, _, xt = _noisy(mix0, 40, sigma, scale)
        out, f = net.apply(params, xt, sigma, scale, return_features=True)
        ref, post = molrg.denoise(mix0, xt, sigma, scale, return_posterior=True)
        assert np.max(np.abs(out - ref)) <= 1e-10 * max(1.0, float(np.max(np.abs(ref))))
        assert np.max(np.abs(f["posterior"] - post)) < 1e-10
        # The P0 form (s, gamma) and P1's form at delta = 0 are the same function.
        np.testing.assert_allclose(out, lr0.apply(params, xt, sigma, scale), atol=1e-12)


def test_subspace_net_is_a_scaled_posterior_weighted_projection(mix):
    # The prefactor of docs/theory.md section 4, s / (s^2 + gamma^2), gamma = s sigma, checked directly.
    net = SubspaceDenoiser(N, K, D)
    params = net.init(jax.random.key(2))
    _, _, _, xt = _noisy(mix, 8, 0.6, 0.5)
    out, f = net.apply(params, xt, 0.6, 0.5, return_features=True)
    u = net.bases(params).reshape(N, K, D)
    s, g = 0.5, 0.5 * 0.6
    manual = sum((s / (s**2 + g**2)) * f["posterior"][:, k:k + 1] * (xt @ u[:, k] @ u[:, k].T)
                 for k in range(K))
    np.testing.assert_allclose(out, manual, atol=1e-13)


# ----------------------------------------------------------------------------------------
# The polar parameterisation.
# ----------------------------------------------------------------------------------------
def test_polar_is_the_nearest_orthonormal_matrix():
    a = jax.random.normal(jax.random.key(5), (12, 5), jnp.float64)
    u = polar(a)
    np.testing.assert_allclose(u.T @ u, np.eye(5), atol=1e-13)
    left, _, right = np.linalg.svd(np.asarray(a), full_matrices=False)
    np.testing.assert_allclose(u, left @ right, atol=1e-12)  # independent: SVD polar factor
    q = _random_rotation(6, 12)
    r = _random_rotation(7, 5)
    np.testing.assert_allclose(polar(q @ a @ r), q @ u @ r, atol=1e-12)


def test_polar_gradients_including_at_orthonormal_input(mix):
    a = jax.random.normal(jax.random.key(5), (10, 4), jnp.float64)
    f = jax.jit(polar)
    check_grads(f, (a,), order=1, modes=["fwd", "rev"])
    # At an orthonormal A all eigenvalues of A^T A coincide: plain eigh derivatives are
    # NaN there, the custom JVP (divided differences) is not. (Second derivatives there
    # are NaN too: the JVP rule itself uses eigh; training only needs first order.)
    check_grads(f, (mix.stacked_bases,), order=1, modes=["fwd", "rev"])
    naive = lambda a: a @ (lambda w, v: (v * w[None, :] ** -0.5) @ v.T)(*jnp.linalg.eigh(a.T @ a))  # noqa: E731
    ours = np.asarray(jax.jit(jax.jacrev(polar))(mix.stacked_bases))
    plain = np.asarray(jax.jit(jax.jacrev(naive))(mix.stacked_bases))
    assert np.all(np.isfinite(ours))
    # eigh's derivative divides by eigenvalue gaps of ~1e-16: NaN or garbage.
    assert not np.all(np.isfinite(plain)) or np.max(np.abs(plain - ours)) > 1e-3


# ----------------------------------------------------------------------------------------
# Gradients of the denoising loss, every network.
# ----------------------------------------------------------------------------------------
def _loss_inputs(mix, num=8):
    x0, _, eps, _ = _noisy(mix, num, 0.0 + 1.0, 1.0)
    sigma = jnp.asarray(np.geomspace(0.05, 3.0, num))
    scale = jnp.asarray(np.linspace(0.3, 1.0, num))
    return x0, sigma, scale, eps


@pytest.mark.parametrize("name", ["low_rank", "low_rank_learned_delta", "subspace", "mlp", "linear"])
def test_loss_gradient_matches_finite_differences(mix, name):
    x0, sigma, scale, eps = _loss_inputs(mix)
    if name == "low_rank":
        net = LowRankDenoiser(N, K, D, delta=0.3)
        params = net.init(jax.random.key(1))
    elif name == "low_rank_learned_delta":
        net = LowRankDenoiser(N, K, D, delta=0.3, learn_delta=True)
        params = net.init(jax.random.key(1))
    elif name == "subspace":
        net = SubspaceDenoiser(N, K, D)
        params = net.init(jax.random.key(1))
    elif name == "mlp":
        net = MLPDenoiser(N, width=16, depth=2, embed_dim=8)
        params = net.init(jax.random.key(1))
    else:
        net = LinearDenoiser(N)
        params = fit_linear(_noisy(mix, 64, 1.0, 1.0, seed=4)[0])
    # Central differences with eps = 1e-6: truncation ~ eps^2 f''' (up to ~1e-7 relative
    # for the Wiener filter's small eigenvalues), rounding ~ 1e-16 / eps.
    loss = jax.jit(lambda p: denoising_loss(net, p, x0, sigma, scale, eps))
    check_grads(loss, (params,), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


def test_loss_gradient_at_true_bases_is_finite_and_checked(mix):
    net = LowRankDenoiser(N, K, D, delta=0.3)
    params = net.init(None, bases=mix.stacked_bases)
    x0, sigma, scale, eps = _loss_inputs(mix)
    loss = jax.jit(lambda p: denoising_loss(net, p, x0, sigma, scale, eps))
    check_grads(loss, (params,), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------
# MLP.
# ----------------------------------------------------------------------------------------
def test_mlp_shapes_taps_and_preconditioning(mix):
    net = MLPDenoiser(N, width=32, depth=3)
    params = net.init(jax.random.key(0))
    assert len(params["blocks"]) == 2
    _, _, _, xt = _noisy(mix, 10, 0.4, 0.8)
    out, f = net.apply(params, xt, 0.4, 0.8, return_features=True)
    assert out.shape == xt.shape and sorted(f) == ["hidden_1", "hidden_2", "hidden_3"]
    assert all(v.shape == (10, 32) for v in f.values())
    # Zero output layer: x0_hat = c_skip * x_t / s (EDM), and 0 without the skip.
    zero = dict(params, output=jax.tree.map(jnp.zeros_like, params["output"]))
    c_skip = 0.25 / (0.16 + 0.25)
    np.testing.assert_allclose(net.apply(zero, xt, 0.4, 0.8), c_skip * xt / 0.8, atol=1e-14)
    plain = MLPDenoiser(N, width=32, depth=3, skip=False)
    np.testing.assert_allclose(plain.apply(zero, xt, 0.4, 0.8), 0.0, atol=0)
    # Scalar and per-sample noise levels agree.
    per = net.apply(params, xt, jnp.full((10,), 0.4), jnp.full((10,), 0.8))
    np.testing.assert_allclose(per, out, atol=1e-13)


# ----------------------------------------------------------------------------------------
# Linear (Wiener) baseline.
# ----------------------------------------------------------------------------------------
def _data_with_exact_covariance(cov):
    """Rows +-sqrt(m) L_j with L L^T = cov: mean exactly 0, 1/N covariance exactly cov."""
    lam, vec = np.linalg.eigh(cov)
    root = vec * np.sqrt(np.clip(lam, 0, None))[None, :]
    m = root.shape[1]
    rows = np.sqrt(m) * root.T
    return jnp.asarray(np.concatenate([rows, -rows]))


def _gaussian_points(u, eta, num, sigma, scale, seed):
    """x0 = U a + eta z and x_t = s (x0 + sigma eps), drawn with NumPy."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(num, u.shape[1])) @ u.T + eta * rng.normal(size=(num, u.shape[0]))
    sig = np.asarray(sigma)
    col = (lambda v: v) if sig.ndim == 0 else (lambda v: v[:, None])
    return x0, scale * (x0 + col(sig) * rng.normal(size=x0.shape))


def test_linear_equals_gaussian_mmse_for_one_class():
    # K = 1 MoLRG with isotropic noise: x0 ~ N(0, U U^T + eta^2 I), whose MMSE denoiser
    # is molrg.denoise; the Wiener filter of the same covariance must equal it.
    u = np.linalg.qr(np.random.default_rng(2).normal(size=(N, 4)))[0]
    mix = molrg.MoLRG([jnp.asarray(u)], noise=0.1)
    cov = u @ u.T + 0.01 * np.eye(N)
    params = fit_linear(_data_with_exact_covariance(cov))
    net = LinearDenoiser(N)
    for sigma, scale in [(0.01, 1.0), (0.3, 0.7), (5.0, 0.2), (np.geomspace(0.01, 5.0, 20), 0.5)]:
        _, xt = _gaussian_points(u, 0.1, 20, sigma, scale, seed=1)
        xt = jnp.asarray(xt)
        np.testing.assert_allclose(net.apply(params, xt, sigma, scale),
                                   molrg.denoise(mix, xt, sigma, scale), atol=1e-10)


def test_linear_rank_truncation_and_sample_fit():
    u = np.asarray(polar(jax.random.normal(jax.random.key(2), (N, 4), jnp.float64)))  # rank 4
    x0, xt = _gaussian_points(u, 0.0, 20_000, 0.5, 1.0, seed=3)
    params = fit_linear(jnp.asarray(x0), rank=4)
    assert params["eigvecs"].shape == (N, 4)
    # The fitted span is the true one (sampling error of the covariance ~ 1/sqrt(N)).
    v = np.asarray(params["eigvecs"])
    assert np.linalg.norm(v @ v.T - u @ u.T) < 0.05
    # Exact MMSE of N(0, U U^T) at sigma = 0.5: U U^T y / (1 + sigma^2).
    ref = (xt[:200] @ u @ u.T) / 1.25
    out = LinearDenoiser(N, rank=4).apply(params, jnp.asarray(xt[:200]), 0.5)
    assert np.max(np.abs(out - ref)) < 0.1


# ----------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------
def test_bad_input_raises_named_errors(mix):
    with pytest.raises(ValueError, match="^K, d:"):
        LowRankDenoiser(n=5, K=3, d=2)
    with pytest.raises(ValueError, match="^delta:"):
        LowRankDenoiser(n=10, K=2, d=2, delta=-0.1)
    with pytest.raises(ValueError, match="^delta:"):
        LowRankDenoiser(n=10, K=2, d=2, delta=0.0, learn_delta=True)
    with pytest.raises(ValueError, match="^width:"):
        MLPDenoiser(n=4, width=0)
    with pytest.raises(ValueError, match="^embed_dim:"):
        MLPDenoiser(n=4, embed_dim=7)
    with pytest.raises(ValueError, match="^rank:"):
        LinearDenoiser(n=4, rank=5)
    net = LowRankDenoiser(N, K, D, delta=0.3)
    params = net.init(jax.random.key(0))
    xt = jnp.ones((4, N))
    with pytest.raises(ValueError, match="^x_t:"):
        net.apply(params, jnp.ones((4, N + 1)), 0.5)
    with pytest.raises(ValueError, match="^sigma:"):
        net.apply(params, xt, jnp.ones(3))
    with pytest.raises(ValueError, match="^sigma:"):
        net.apply(params, xt, -1.0)
    with pytest.raises(ValueError, match="^scale:"):
        net.apply(params, xt, 0.5, 0.0)
    with pytest.raises(ValueError, match="^x_t:"):
        net.apply(params, xt.astype(jnp.float32), 0.5)
    with pytest.raises(ValueError, match="^params:"):
        net.apply({"A": jnp.ones((N, 2))}, xt, 0.5)
    with pytest.raises(ValueError, match="^bases:"):
        net.init(None, bases=jnp.ones((N, 2)))
    with pytest.raises(ValueError, match="^x0_train:"):
        fit_linear(jnp.ones(5))
    with pytest.raises(ValueError, match="^a:"):
        polar(jnp.ones((2, 3)))


# ----------------------------------------------------------------------------------------
# MLP with FiLM conditioning, against an independent NumPy forward pass.
# ----------------------------------------------------------------------------------------
def _gelu_np(v):
    from scipy.special import erf
    return 0.5 * v * (1.0 + erf(v / np.sqrt(2.0)))


def _mlp_reference(net, params, xt, sigma, scale):
    """MLPDenoiser's forward pass written out in NumPy (class docstring's formulas)."""
    p = jax.tree.map(np.asarray, params)
    y = np.asarray(xt) / scale
    sd = net.sigma_data
    c_in = 1.0 / np.sqrt(sigma**2 + sd**2)
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / np.sqrt(sigma**2 + sd**2)
    freqs = np.geomspace(1.0, net.max_freq, net.embed_dim // 2)
    u = np.log(sigma) * freqs
    emb = np.broadcast_to(np.concatenate([np.sin(u), np.cos(u)]), (y.shape[0], net.embed_dim))
    cond = _gelu_np(emb @ p["embed"]["w"] + p["embed"]["b"]) if net.film else None

    def mod(pre, i):
        if not net.film:
            return pre
        gb = cond @ p["film"][i]["w"] + p["film"][i]["b"]
        return pre * (1.0 + gb[:, :net.width]) + gb[:, net.width:]

    h = _gelu_np(mod(np.concatenate([c_in * y, emb], axis=1) @ p["input"]["w"] + p["input"]["b"], 0))
    for i, blk in enumerate(p["blocks"]):
        h = h + _gelu_np(mod(h @ blk["w"] + blk["b"], i + 1))
    return c_skip * y + c_out * (h @ p["output"]["w"] + p["output"]["b"])


def test_mlp_film_matches_numpy_reference_and_starts_as_concat_net(mix):
    net = MLPDenoiser(N, width=24, depth=3, embed_dim=8, sigma_data=0.37, film=True)
    params = net.init(jax.random.key(3))
    assert sorted(params) == ["blocks", "embed", "film", "input", "output"] and len(params["film"]) == 3
    _, _, _, xt = _noisy(mix, 12, 0.3, 0.9)
    # At initialisation the FiLM maps are zero: exactly the concat network with the shared weights.
    plain = MLPDenoiser(N, width=24, depth=3, embed_dim=8, sigma_data=0.37)
    shared = {k: params[k] for k in ("input", "blocks", "output")}
    np.testing.assert_allclose(net.apply(params, xt, 0.3, 0.9), plain.apply(shared, xt, 0.3, 0.9), atol=1e-14)
    # Random FiLM maps: the modulation is live and matches the NumPy forward pass.
    keys = jax.random.split(jax.random.key(4), 3)
    film = [{"w": 0.3 * jax.random.normal(k, (24, 48), jnp.float64),
             "b": 0.1 * jax.random.normal(jax.random.fold_in(k, 1), (48,), jnp.float64)} for k in keys]
    params = dict(params, film=film)
    out = net.apply(params, xt, 0.3, 0.9)
    np.testing.assert_allclose(out, _mlp_reference(net, params, xt, 0.3, 0.9), rtol=1e-10, atol=1e-12)
    assert float(jnp.max(jnp.abs(out - plain.apply(shared, xt, 0.3, 0.9)))) > 1e-3
    np.testing.assert_allclose(plain.apply(shared, xt, 0.3, 0.9),
                               _mlp_reference(plain, shared, xt, 0.3, 0.9), rtol=1e-10, atol=1e-12)
    # Per-sample levels agree with scalar ones; FiLM params are validated.
    per = net.apply(params, xt, jnp.full((12,), 0.3), jnp.full((12,), 0.9))
    np.testing.assert_allclose(per, out, atol=1e-13)
    with pytest.raises(ValueError, match="^params"):
        net.apply(shared, xt, 0.3, 0.9)
    with pytest.raises(ValueError, match="^params"):
        plain.apply(params, xt, 0.3, 0.9)


def test_mlp_skip_is_the_gaussian_mmse_of_sigma_data():
    # EDM's c_skip * y is the MMSE estimate of x0 from y = x0 + sigma eps when x0 ~ N(0, sigma_data^2 I),
    # and c_out^2 is its error variance: check both by Monte Carlo regression (independent of the code).
    sd, sigma = 0.33, 0.2
    net = MLPDenoiser(4, width=8, depth=1, embed_dim=4, sigma_data=sd)
    params = net.init(jax.random.key(0))
    zero = dict(params, output=jax.tree.map(jnp.zeros_like, params["output"]))
    rng = np.random.default_rng(0)
    x0 = sd * rng.normal(size=(200_000, 4))
    y = x0 + sigma * rng.normal(size=x0.shape)
    slope = np.sum(x0 * y) / np.sum(y * y)  # least-squares E[x0 | y] = slope * y
    c_skip = float(net.apply(zero, jnp.ones((1, 4)), sigma)[0, 0])
    assert abs(c_skip - slope) < 4 * 0.003, (c_skip, slope)  # slope's std error ~ 1e-3
    c_out2 = (sigma * sd) ** 2 / (sigma**2 + sd**2)
    resid = np.mean((x0 - c_skip * y) ** 2)
    assert abs(resid / c_out2 - 1.0) < 0.01
