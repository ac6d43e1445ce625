"""The exact posterior, denoiser and score against independent references (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import molrg
from molrg.posterior import _UNROLL_DIM
from tests.oracle import dense_posterior_and_denoise, make_log_density, random_test_mixture

SIGMAS = [1e-3, 0.05, 0.7, 4.0, 300.0]


def _mixtures():
    k = list(jax.random.split(jax.random.key(7), 9))
    return {
        "orthogonal": molrg.random_molrg(k[0], n=14, K=3, d=3, delta=0.3),
        "orthogonal+means+noise": molrg.random_molrg(
            k[1], n=14, K=3, d=2, delta=0.2, noise=0.1,
            means=0.6 * jax.random.normal(k[2], (3, 14), jnp.float64)),
        "ragged+weights": molrg.random_molrg(k[3], n=12, K=3, d=[4, 1, 2], delta=0.25,
                                             weights=jnp.array([0.6, 0.3, 0.1])),
        "overlap30+means+noise+weights": molrg.random_molrg(
            k[4], n=16, K=3, d=3, delta=0.3, noise=0.05, angle=30.0,
            weights=jnp.array([0.5, 0.2, 0.3]),
            means=0.5 * jax.random.normal(k[5], (3, 16), jnp.float64)),
        "delta0": molrg.random_molrg(k[6], n=10, K=2, d=3),
        # the low-rank path: delta = 0 statically, zero means, overlapping subspaces
        "overlap40+delta0+noise+weights": molrg.random_molrg(
            k[7], n=16, K=3, d=3, noise=0.05, angle=40.0, weights=jnp.array([0.5, 0.2, 0.3])),
        "ragged+delta0+D>n": _ragged_overlapping(k[8]),
    }


def _ragged_overlapping(key):
    """Unequal ranks, random (non-orthogonal) subspaces and sum d_k = 12 > n = 8: the
    low-rank path's frame is the stacked bases, wider than the ambient space."""
    ks = jax.random.split(key, 3)
    bases = [jnp.linalg.qr(jax.random.normal(kk, (8, d), jnp.float64))[0] for kk, d in zip(ks, (5, 3, 4))]
    return molrg.MoLRG(bases, weights=jnp.array([0.3, 0.3, 0.4]))


MIXTURES = _mixtures()


def _noisy(mix, num, sigma, scale, seed=1):
    k1, k2 = jax.random.split(jax.random.key(seed))
    x0, labels = mix.sample(k1, num)
    eps = jax.random.normal(k2, x0.shape, x0.dtype)
    sig = jnp.asarray(sigma, x0.dtype)
    sc = jnp.asarray(scale, x0.dtype)
    col = (lambda v: v) if sig.ndim == 0 else (lambda v: v[:, None])
    return x0, labels, col(sc) * (x0 + col(sig) * eps)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("name", list(MIXTURES))
@pytest.mark.parametrize("sigma", SIGMAS)
def test_matches_dense_oracle_shared_sigma(name, sigma):
    mix = MIXTURES[name]
    _, _, xt = _noisy(mix, 6, sigma, 0.7)
    post_ref, den_ref = dense_posterior_and_denoise(mix, xt, sigma, 0.7)
    den, post = molrg.denoise(mix, xt, sigma, 0.7, return_posterior=True)
    assert den.dtype == jnp.float64 and den.shape == xt.shape and post.shape == (6, mix.K)
    assert np.max(np.abs(post - post_ref)) < 1e-9
    assert _rel(den, den_ref) < 1e-9
    np.testing.assert_allclose(molrg.posterior(mix, xt, sigma, 0.7), post, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", list(MIXTURES))
def test_matches_dense_oracle_per_sample_sigma_and_scale(name):
    _assert_matches_oracle_per_sample(MIXTURES[name], np.geomspace(2e-3, 50.0, 8), np.linspace(0.3, 1.0, 8))


def _assert_matches_oracle_per_sample(mix, sigma, scale):
    """Posteriors and denoiser for one sigma and scale per sample, against the dense oracle."""
    sigma, scale = jnp.asarray(sigma), jnp.asarray(scale)
    _, _, xt = _noisy(mix, len(sigma), sigma, scale)
    post_ref, den_ref = dense_posterior_and_denoise(mix, xt, sigma, scale)
    den, post = molrg.denoise(mix, xt, sigma, scale, return_posterior=True)
    assert np.max(np.abs(post - post_ref)) < 1e-9
    # relative per row: rows have very different sizes across sigma
    for b in range(len(sigma)):
        assert _rel(den[b], den_ref[b]) < 1e-9


@pytest.mark.parametrize("d", [1, 5, _UNROLL_DIM, _UNROLL_DIM + 1])
def test_equal_dims_energy_forms_match_oracle(d):
    """Equal dims up to _UNROLL_DIM take the strided-column energies, beyond it a reduction
    over d (both skip the dims' log1p term, common to all classes). Both, with unequal
    weights, per-sample sigma and scale, against the dense oracle."""
    mix = molrg.random_molrg(jax.random.key(d), n=3 * d + 2, K=3, d=d, delta=0.3, noise=0.05,
                             weights=jnp.array([0.5, 0.3, 0.2]))
    _assert_matches_oracle_per_sample(mix, np.geomspace(1e-2, 20.0, 7), np.linspace(0.4, 1.0, 7))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), K=st.integers(1, 4), d=st.integers(1, 3),
       delta=st.floats(0.0, 0.9), noise=st.floats(0.0, 0.3), log_sigma=st.floats(-2.5, 2.0),
       overlap=st.booleans(), with_means=st.booleans())
def test_random_mixtures_match_oracle(seed, K, d, delta, noise, log_sigma, overlap, with_means):
    mix = random_test_mixture(seed, K, d, delta, noise, overlap, with_means)
    sigma = 10.0**log_sigma
    _, _, xt = _noisy(mix, 4, sigma, 1.0, seed=seed % 1000)
    post_ref, den_ref = dense_posterior_and_denoise(mix, xt, sigma)
    den, post = molrg.denoise(mix, xt, sigma, return_posterior=True)
    assert np.max(np.abs(post - post_ref)) < 1e-8
    assert _rel(den, den_ref) < 1e-8


@pytest.mark.parametrize("name", ["orthogonal", "orthogonal+means+noise", "overlap30+means+noise+weights"])
@pytest.mark.parametrize("sigma,scale", [(0.02, 1.0), (0.5, 0.8), (6.0, 0.3)])
def test_score_is_gradient_of_log_density(name, sigma, scale):
    """Tweedie: the score equals the autodiff gradient of an independently written log p_t."""
    mix = MIXTURES[name]
    _, _, xt = _noisy(mix, 5, sigma, scale)
    grad = jax.vmap(jax.grad(make_log_density(mix, sigma, scale)))(xt)
    assert _rel(molrg.score(mix, xt, sigma, scale), grad) < 1e-8
    # predict_noise is the same quantity in epsilon units
    eps_hat = molrg.predict_noise(mix, xt, sigma, scale)
    assert _rel(eps_hat, -scale * sigma * grad) < 1e-8


def test_log_posterior_is_normalised_log():
    mix = MIXTURES["ragged+weights"]
    _, _, xt = _noisy(mix, 50, 0.3, 1.0)
    logp = molrg.log_posterior(mix, xt, 0.3)
    np.testing.assert_allclose(jax.nn.logsumexp(logp, axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(jnp.exp(logp), molrg.posterior(mix, xt, 0.3), rtol=1e-12)


@pytest.mark.parametrize("name", ["orthogonal", "overlap30+means+noise+weights"])
def test_conditional_mean_orthogonality_and_mse_minimality(name):
    """E[x0|x_t] is the conditional mean: the error is orthogonal to functions of x_t, and
    any perturbation raises the MSE. Tolerances are 4 standard errors of the MC mean."""
    mix = MIXTURES[name]
    num, sigma = 100_000, 0.4
    x0, _, xt = _noisy(mix, num, sigma, 1.0, seed=3)
    err = x0 - molrg.denoise(mix, xt, sigma)  # (num, n)
    g = jnp.concatenate([xt[:, :3], jnp.tanh(xt[:, 3:5]), molrg.posterior(mix, xt, sigma)], axis=1)
    prods = np.asarray(err[:, :, None] * g[:, None, :]).reshape(num, -1)
    z = prods.mean(0) / (prods.std(0) / np.sqrt(num))
    assert np.max(np.abs(z)) < 5.0, np.max(np.abs(z))  # ~100 statistics: |z| < 5 at the 1e-4 level
    # Perturbing the estimator by eps*v(x_t) raises the MSE by eps^2 E|v|^2 > 0.
    v = jnp.tanh(xt)
    d_mse = np.asarray(jnp.sum((err - 0.1 * v) ** 2, axis=1) - jnp.sum(err**2, axis=1))
    assert d_mse.mean() > 4 * d_mse.std() / np.sqrt(num)


def test_limits_of_the_denoiser():
    """sigma -> 0: E[x0|x_t] -> x_t / s; sigma -> inf: -> the prior mean sum_k pi_k mu_k."""
    mix = MIXTURES["orthogonal+means+noise"]
    x0, _, _ = _noisy(mix, 5, 0.1, 1.0)
    np.testing.assert_allclose(molrg.denoise(mix, 0.5 * x0, 1e-7, 0.5), x0, atol=1e-9)
    _, _, xt = _noisy(mix, 5, 1e6, 1.0)
    prior_mean = np.asarray(mix.weights) @ np.asarray(mix.means)
    np.testing.assert_allclose(molrg.denoise(mix, xt, 1e6), np.broadcast_to(prior_mean, xt.shape),
                               atol=1e-4)


# --- float32 -----------------------------------------------------------------------------
# Stated float32 tolerances over sigma in [1e-4, 1e4], against float64 on the same
# float32-rounded inputs: |p32 - p64| <= 2e-5; ||xhat32 - xhat64|| / ||xhat64|| <= 5e-5;
# score relative error <= max(5e-5, 2e-6 / sigma) (the score at small sigma is the part
# of x_t outside the data subspaces divided by sigma^2: float32 resolves that part only
# to ~eps32 |x_t| sqrt(r), a relative error ~eps32 |x_t| sqrt(r) / (sigma sqrt(n - r)),
# inherent to the format; the float32 bases are themselves rounded by eps32).
@pytest.mark.parametrize("name", ["orthogonal", "overlap30+means+noise+weights", "orthogonal+means+noise"])
def test_float32_accuracy_over_sigma_range(name):
    mix64 = MIXTURES[name]
    mix32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), mix64)
    x0, _ = mix64.sample(jax.random.key(11), 200)
    eps = jax.random.normal(jax.random.key(12), x0.shape, x0.dtype)
    for sigma in np.geomspace(1e-4, 1e4, 9):
        xt32 = (x0 + sigma * eps).astype(jnp.float32)
        xt64 = xt32.astype(jnp.float64)
        s32 = jnp.float32(sigma)
        d32, p32 = molrg.denoise(mix32, xt32, s32, return_posterior=True)
        d64, p64 = molrg.denoise(mix64, xt64, sigma, return_posterior=True)
        assert d32.dtype == jnp.float32 and p32.dtype == jnp.float32
        assert np.all(np.isfinite(d32)) and np.all(np.isfinite(p32))
        assert np.max(np.abs(p32.astype(jnp.float64) - p64)) <= 2e-5, sigma
        rel = jnp.linalg.norm(d32.astype(jnp.float64) - d64, axis=1) / jnp.linalg.norm(d64, axis=1)
        assert np.max(rel) <= 5e-5, (sigma, float(np.max(rel)))
        sc32 = molrg.score(mix32, xt32, s32).astype(jnp.float64)
        sc64 = molrg.score(mix64, xt64, sigma)
        rel = jnp.linalg.norm(sc32 - sc64, axis=1) / jnp.linalg.norm(sc64, axis=1)
        assert np.max(rel) <= max(5e-5, 2e-6 / sigma), (sigma, float(np.max(rel)))


# --- jit / vmap ----------------------------------------------------------------------------
def test_jit_matches_eager_with_traced_sigma_and_mixture():
    mix = MIXTURES["overlap30+means+noise+weights"]
    _, _, xt = _noisy(mix, 7, 0.3, 0.9)
    f = jax.jit(lambda m, x, s, a: (molrg.denoise(m, x, s, a), molrg.score(m, x, s, a),
                                   molrg.log_posterior(m, x, s, a)))
    got = f(mix, xt, 0.3, 0.9)
    want = (molrg.denoise(mix, xt, 0.3, 0.9), molrg.score(mix, xt, 0.3, 0.9),
            molrg.log_posterior(mix, xt, 0.3, 0.9))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_vmap_over_sigma_samples_and_delta():
    mix = MIXTURES["orthogonal"]
    _, _, xt = _noisy(mix, 6, 0.3, 1.0)
    sigmas = jnp.asarray([0.01, 0.3, 3.0])
    by_sigma = jax.vmap(lambda s: molrg.denoise(mix, xt, s))(sigmas)
    for i, s in enumerate(sigmas):
        np.testing.assert_allclose(by_sigma[i], molrg.denoise(mix, xt, float(s)), rtol=1e-10)
    per_row = jax.vmap(lambda x, s: molrg.denoise(mix, x, s))(xt, jnp.full((6,), 0.3))
    np.testing.assert_allclose(per_row, molrg.denoise(mix, xt, 0.3), rtol=1e-10)
    deltas = jnp.asarray([0.1, 0.5])
    by_delta = jax.vmap(lambda d: molrg.posterior(mix.replace(delta=d), xt, 0.3))(deltas)
    for i, d in enumerate(deltas):
        np.testing.assert_allclose(by_delta[i], molrg.posterior(mix.replace(delta=float(d)), xt, 0.3),
                                   rtol=1e-10)
    # a general-structure mixture vmapped over delta (traced eigendecompositions)
    gen = MIXTURES["overlap30+means+noise+weights"]
    _, _, xg = _noisy(gen, 4, 0.3, 1.0)
    by_delta = jax.jit(jax.vmap(lambda d: molrg.denoise(gen.replace(delta=d), xg, 0.3)))(deltas)
    for i, d in enumerate(deltas):
        _, ref = dense_posterior_and_denoise(gen.replace(delta=float(d)), xg, 0.3)
        assert _rel(by_delta[i], ref) < 1e-9


def test_leading_batch_axes_are_preserved():
    mix = MIXTURES["orthogonal"]
    _, _, xt = _noisy(mix, 6, 0.3, 1.0)
    x3 = xt.reshape(2, 3, mix.n)
    sig = jnp.full((2, 3), 0.3)
    np.testing.assert_allclose(molrg.denoise(mix, x3, sig).reshape(6, -1), molrg.denoise(mix, xt, 0.3),
                               rtol=1e-12)
    assert molrg.posterior(mix, xt[0], 0.3).shape == (mix.K,)


# --- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [molrg.posterior, molrg.log_posterior, molrg.denoise, molrg.score,
                                molrg.predict_noise])
def test_bad_inputs_raise_named_errors(fn):
    mix = MIXTURES["orthogonal"]
    x = jnp.zeros((3, mix.n))
    with pytest.raises(ValueError, match="x_t: last axis must have length n"):
        fn(mix, jnp.zeros((3, mix.n + 1)), 0.5)
    with pytest.raises(ValueError, match="x_t: must have shape"):
        fn(mix, jnp.float64(1.0), 0.5)
    with pytest.raises(ValueError, match="x_t: must contain only finite"):
        fn(mix, x.at[0, 0].set(jnp.nan), 0.5)
    with pytest.raises(ValueError, match="sigma: must be > 0"):
        fn(mix, x, 0.0)
    with pytest.raises(ValueError, match="sigma: must be > 0"):
        fn(mix, x, jnp.asarray([0.1, -1.0, 0.2]))
    with pytest.raises(ValueError, match="sigma: must be finite"):
        fn(mix, x, jnp.inf)
    with pytest.raises(ValueError, match="sigma: must be a scalar or have one value per sample"):
        fn(mix, x, jnp.ones(4))
    with pytest.raises(ValueError, match="scale: must be > 0"):
        fn(mix, x, 0.5, -1.0)
    with pytest.raises(ValueError, match="mix: must be a molrg.MoLRG"):
        fn("not a mixture", x, 0.5)


def test_static_noiseless_path_equals_traced_noise_path():
    """eta == 0 known statically skips the ambient term; a traced eta (vmap) must agree."""
    mix = MIXTURES["orthogonal"]
    assert mix.noiseless
    _, _, xt = _noisy(mix, 5, 0.3, 0.8)
    by_noise = jax.vmap(lambda e: molrg.denoise(mix.replace(noise=e), xt, 0.3, 0.8))(jnp.asarray([0.0, 0.2]))
    assert not mix.replace(noise=0.2).noiseless
    np.testing.assert_allclose(by_noise[0], molrg.denoise(mix, xt, 0.3, 0.8), rtol=1e-12)
    _, ref = dense_posterior_and_denoise(mix.replace(noise=0.2), xt, 0.3, 0.8)
    assert _rel(by_noise[1], ref) < 1e-9
    # a mixture built inside jit from a traced key keeps the orthogonal fast path
    f = jax.jit(lambda k: molrg.random_molrg(k, n=10, K=2, d=3, delta=0.2).stacked_bases)
    U = f(jax.random.key(3))
    built = molrg.MoLRG([U[:, :3], U[:, 3:]], delta=0.2)
    assert built.structure == "orthogonal"


@pytest.mark.parametrize("name", ["overlap40+delta0+noise+weights", "ragged+delta0+D>n"])
def test_low_rank_path_equals_eigen_path_and_its_flag(name):
    """delta = 0 known statically (``sharp``) with zero means sends a general mixture down the
    low-rank path; the same mixture with a traced delta = 0 (vmap) takes the per-class
    eigen-coordinates path. Both must agree with each other and with the dense oracle, for
    shared and per-sample sigma and scale, denoiser, posterior and score."""
    mix = MIXTURES[name]
    assert mix.structure == "general" and mix.sharp and mix.means is None
    assert not mix.replace(delta=0.1).sharp and mix.replace(noise=0.2).sharp
    leaves, treedef = jax.tree_util.tree_flatten(mix)
    assert jax.tree_util.tree_unflatten(treedef, leaves).sharp
    sigma = jnp.asarray(np.geomspace(1e-3, 300.0, 9))
    scale = jnp.asarray(np.linspace(0.3, 1.0, 9))
    _, _, xt = _noisy(mix, 9, sigma, scale)
    traced = jax.vmap(lambda d: molrg.denoise(mix.replace(delta=d), xt, sigma, scale, return_posterior=True))(
        jnp.zeros(1))
    den, post = molrg.denoise(mix, xt, sigma, scale, return_posterior=True)
    post_ref, den_ref = dense_posterior_and_denoise(mix, xt, sigma, scale)
    assert np.max(np.abs(post - post_ref)) < 1e-9
    assert np.max(np.abs(traced[1][0] - post_ref)) < 1e-9
    for b in range(9):
        assert _rel(den[b], den_ref[b]) < 1e-9
        assert _rel(traced[0][0][b], den_ref[b]) < 1e-9
    grad = jax.vmap(jax.grad(make_log_density(mix, 0.4, 0.8)))(xt)
    assert _rel(molrg.score(mix, xt, 0.4, 0.8), grad) < 1e-8


@pytest.mark.parametrize("structure", ["orthogonal", "orthogonal-d>8", "low-rank", "ragged"])
def test_compiled_denoiser_has_only_the_two_products_and_no_concatenation(structure):
    """The program the fast paths compile (before backend fusion, so on any device): with
    equal dims, the two products with U and nothing else of their kind (the class energies
    are sums over d, and the dims' log1p term, common to all classes, is not computed);
    with unequal dims one more product, the energies with an indicator matrix, and the
    log1p term. Never the bases concatenated per call (they are stored stacked) nor a select
    on the (B, K) log posteriors (validity goes through sigma)."""
    dims = {"ragged": (4, 2, 3), "orthogonal-d>8": 12}.get(structure, 4)
    mix = molrg.random_molrg(jax.random.key(0), n=40, K=3, d=dims,
                             delta=0.0 if structure == "low-rank" else 0.2, dtype=jnp.float32)
    if structure == "low-rank":
        mix = molrg.MoLRG(mix.bases, delta=0.0, structure="general")
        assert mix.sharp
    assert mix.structure == ("general" if structure == "low-rank" else "orthogonal")
    x = jnp.ones((16, 40), jnp.float32)
    text = jax.jit(lambda m, x, s: molrg.denoise(m, x, s, return_posterior=True)).lower(
        mix, x, jnp.linspace(0.1, 1.0, 16, dtype=jnp.float32)).as_text()
    assert text.count("stablehlo.dot_general") == (3 if structure == "ragged" else 2)
    assert ("stablehlo.log_plus_one" in text) == (structure == "ragged")
    assert "stablehlo.concatenate" not in text
    assert "tensor<16x3xi1>" not in text  # no (B, K) mask


def test_low_rank_path_float32_across_sigma():
    """The low-rank path keeps the float32 accuracy the module docstring states (posteriors
    within 2e-5, denoiser within 5e-5 relative) from sigma = 1e-4 to 1e4, against float64."""
    mix64 = MIXTURES["overlap40+delta0+noise+weights"]
    mix32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), mix64)
    assert mix32.sharp and mix32.dtype == jnp.float32
    sigma = np.geomspace(1e-4, 1e4, 64)
    _, _, xt = _noisy(mix64, 64, jnp.asarray(sigma), jnp.ones(64))
    x32 = np.asarray(xt, np.float32)
    den32, post32 = molrg.denoise(mix32, x32, sigma.astype(np.float32), return_posterior=True)
    den64, post64 = molrg.denoise(mix64, x32.astype(np.float64), sigma, return_posterior=True)
    assert np.max(np.abs(np.asarray(post32, np.float64) - post64)) < 2e-5
    rel = np.linalg.norm(np.asarray(den32, np.float64) - den64, axis=1) / np.linalg.norm(den64, axis=1)
    assert np.max(rel) < 5e-5
