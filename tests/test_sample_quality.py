"""Memorisation measures against brute force: dense distances, projectors, SciPy densities."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import molrg
from molrg import sample_quality as M
from tests import oracle


# Test inputs come from NumPy's generator: JAX's threefry costs seconds to compile per
# shape on CPU, and nothing here depends on JAX's streams.
def _rng(seed):
    return np.random.default_rng(seed)


def _orthonormal_blocks(rng, n, dims):
    q, _ = np.linalg.qr(rng.standard_normal((n, sum(dims))))
    return [jnp.asarray(b) for b in np.split(q, np.cumsum(dims)[:-1], axis=1)]


def _sample(mix, num, seed):
    """x_0 from the dense class covariances (independent of MoLRG.sample)."""
    rng = _rng(seed)
    labels = rng.choice(mix.K, size=num, p=np.asarray(mix.weights, np.float64))
    x = np.empty((num, mix.n))
    for k, (cov, mu) in enumerate(zip(oracle.class_covariances(mix), oracle.class_means(mix))):
        w, v = np.linalg.eigh(cov)
        root = v * np.sqrt(np.where(w > 1e-12 * w.max(), w, 0.0))  # exact zeros off the support
        idx = labels == k
        x[idx] = mu + rng.standard_normal((idx.sum(), mix.n)) @ root.T
    return jnp.asarray(x), labels


# ------------------------------------------------------------------------------------------
# Nearest neighbours and copies.
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def points():
    rng = _rng(0)
    train = rng.standard_normal((53, 6))
    fresh = rng.standard_normal((9, 6))
    copies = train[[3, 17, 52, 0]] + 1e-3 * rng.standard_normal((4, 6))
    return jnp.asarray(train), jnp.asarray(np.concatenate([fresh, copies]))


def _brute_nn(samples, train):
    d = cdist(np.asarray(samples), np.asarray(train))
    order = np.argsort(d, axis=1)
    rows = np.arange(d.shape[0])
    return d[rows, order[:, 0]], d[rows, order[:, 1]], order[:, 0]


@pytest.mark.parametrize("chunk", [1, 2, 10, 53, 16, 4096])  # 1, 53 divide N = 53; 2, 10, 16 do not
def test_nearest_neighbors_brute_force(points, chunk):
    train, x = points
    nn = M.nearest_neighbors(x, train, chunk_size=chunk)
    d1, d2, i1 = _brute_nn(x, train)
    np.testing.assert_allclose(nn.distance, d1, rtol=1e-12)
    np.testing.assert_allclose(nn.second_distance, d2, rtol=1e-12)
    np.testing.assert_array_equal(nn.index, i1)
    assert nn.index.dtype == jnp.int32


def test_tiny_distances_keep_their_digits():
    """Copies at distance 1e-10 (f64) / 1e-3 (f32): the expanded ||x||^2 - 2x.y + ||y||^2
    would give noise of order sqrt(eps) * ||x||; the recomputed distance is exact."""
    rng = _rng(1)
    train = jnp.asarray(3.0 * rng.standard_normal((40, 12)))
    direction = rng.standard_normal((5, 12))
    direction = jnp.asarray(direction / np.linalg.norm(direction, axis=1, keepdims=True))
    for dtype, r, rtol in ((jnp.float64, 1e-10, 1e-5), (jnp.float32, 1e-3, 1e-2)):
        x = (train[:5] + r * direction).astype(dtype)
        nn = M.nearest_neighbors(x, train.astype(dtype), chunk_size=7)
        assert nn.distance.dtype == dtype
        np.testing.assert_allclose(nn.distance, r, rtol=rtol)
        np.testing.assert_array_equal(nn.index, np.arange(5))
    exact = M.nearest_neighbors(train[:3], train)
    np.testing.assert_array_equal(exact.distance, 0.0)


def test_copy_fraction(points):
    train, x = points
    d1, d2, _ = _brute_nn(x, train)
    for ratio in (1 / 3, 0.5, 1.0):
        want = np.mean(d1 < ratio * d2)
        got = M.copy_fraction(x, train, ratio, chunk_size=10)
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # the four planted copies are copies; the fresh Gaussian points (n = 6) are not
    assert float(M.copy_fraction(x[-4:], train)) == 1.0
    assert float(M.copy_fraction(x[:9], train)) <= 2 / 9


def test_nearest_neighbors_jit_vmap_batch_shapes(points):
    train, x = points
    eager = M.nearest_neighbors(x, train, chunk_size=10)
    jitted = jax.jit(lambda a, t: M.nearest_neighbors(a, t, chunk_size=10))(x, train)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    stacked = jnp.stack([x, 2.0 * x])
    by_vmap = jax.vmap(lambda a: M.nearest_neighbors(a, train, chunk_size=10))(stacked)
    by_shape = M.nearest_neighbors(stacked, train, chunk_size=10)
    np.testing.assert_allclose(by_vmap.distance, by_shape.distance, rtol=1e-13)
    np.testing.assert_allclose(by_vmap.distance[0], eager.distance, rtol=1e-13)
    ratios = jnp.asarray([0.2, 1 / 3, 0.9])
    by_ratio = jax.vmap(lambda r: M.copy_fraction(x, train, r))(ratios)
    for r, got in zip(ratios, by_ratio):
        np.testing.assert_allclose(got, M.copy_fraction(x, train, float(r)), rtol=1e-13)


# ------------------------------------------------------------------------------------------
# Distance to the union of subspaces.
# ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _mixtures():
    rng = _rng(3)
    means = 2.0 * np.linalg.qr(rng.standard_normal((14, 3)))[0].T
    # 40-degree principal angles: U_k = cos(a) C + sin(a) E_k with cos^2(a) = cos(40 deg)
    shared, *own = _orthonormal_blocks(rng, 14, (3, 3, 3, 3))
    c = np.sqrt(np.cos(np.deg2rad(40.0)))
    tilted = [c * shared + np.sqrt(1 - c * c) * e for e in own]
    return {
        "orthogonal": molrg.MoLRG(_orthonormal_blocks(rng, 14, (2, 4, 3)), delta=0.3, noise=0.2,
                                  weights=jnp.asarray([0.5, 0.3, 0.2])),
        "means": molrg.MoLRG(_orthonormal_blocks(rng, 14, (3, 3, 3)), delta=0.2, noise=0.1,
                             means=jnp.asarray(means)),
        "angle": molrg.MoLRG(tilted, delta=0.25, noise=0.15, means=jnp.asarray(0.5 * means)),
        "singular": molrg.MoLRG(_orthonormal_blocks(rng, 14, (3, 3))),
    }


@pytest.mark.parametrize("name", ["orthogonal", "means", "angle"])
def test_distance_to_union_dense(name):
    mix = _mixtures()[name]
    x, _ = _sample(mix, 30, seed=4)
    mu0 = jnp.asarray(oracle.class_means(mix)[0])
    on_subspace = mix.bases[0] @ jnp.ones((mix.dims[0],), jnp.float64) + mu0
    x = jnp.concatenate([x, on_subspace[None, :]])  # the last point lies on subspace 0
    xs = np.asarray(x)
    mus = oracle.class_means(mix)
    dense = np.stack([np.linalg.norm((xs - mus[k]) @ (np.eye(mix.n) - np.asarray(U) @ np.asarray(U).T),
                                     axis=1) for k, U in enumerate(mix.bases)], axis=1)
    dist, cls = M.distance_to_union(x, mix, return_class=True)
    np.testing.assert_allclose(dist, dense.min(1), rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(cls, dense.argmin(1))
    assert float(dist[-1]) < 1e-13
    # jit / vmap over a leading axis
    np.testing.assert_allclose(jax.jit(lambda a: M.distance_to_union(a, mix))(x), dist, rtol=1e-13)
    np.testing.assert_allclose(jax.vmap(lambda a: M.distance_to_union(a, mix))(x.reshape(31, 1, -1))[:, 0],
                               dist, rtol=1e-13)


def test_distance_to_union_of_samples_is_small_without_detail():
    mix = _mixtures()["singular"]  # delta = noise = 0: samples lie exactly on the union
    x, _ = _sample(mix, 50, seed=5)
    assert float(jnp.max(M.distance_to_union(x, mix))) < 1e-12
    off = x + 0.1 * jnp.asarray(_rng(6).standard_normal(x.shape))
    assert float(jnp.min(M.distance_to_union(off, mix))) > 1e-3


# ------------------------------------------------------------------------------------------
# Log likelihood against SciPy's multivariate normal on dense covariances.
# ------------------------------------------------------------------------------------------
def _scipy_loglik(mix, x, sigma, scale):
    x = np.asarray(x, np.float64)
    B = x.shape[0]
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (B,))
    sc = np.broadcast_to(np.asarray(scale, np.float64), (B,))
    covs, mus = oracle.class_covariances(mix), oracle.class_means(mix)
    logw = np.log(np.asarray(mix.weights, np.float64))
    out = np.empty(B)
    for b in range(B):
        terms = [logw[k] + multivariate_normal(sc[b] * mus[k],
                                               sc[b] ** 2 * (covs[k] + sig[b] ** 2 * np.eye(mix.n))
                                               ).logpdf(x[b]) for k in range(mix.K)]
        out[b] = logsumexp(terms)
    return out


@pytest.mark.parametrize("name", ["orthogonal", "means", "angle", "singular"])
def test_log_likelihood_against_scipy(name):
    mix = _mixtures()[name]
    x0, _ = _sample(mix, 12, seed=7)
    # x_0 itself (sigma = 0 default, or 1e-3 for the singular mixture), then a noisy x_t
    # with per-sample sigma and scale, and far-away points
    sigma0 = M.SINGULAR_SIGMA if name == "singular" else 0.0
    np.testing.assert_allclose(M.mixture_log_likelihood(x0, mix), _scipy_loglik(mix, x0, sigma0, 1.0),
                               rtol=1e-9)
    sig = jnp.geomspace(0.01, 5.0, 12)
    sc = jnp.linspace(0.3, 1.0, 12)
    eps = jnp.asarray(_rng(8).standard_normal(x0.shape))
    xt = sc[:, None] * (x0 + sig[:, None] * eps)
    np.testing.assert_allclose(M.mixture_log_likelihood(xt, mix, sig, sc), _scipy_loglik(mix, xt, sig, sc),
                               rtol=1e-9)
    far = 30.0 * eps
    np.testing.assert_allclose(M.mixture_log_likelihood(far, mix, 0.5), _scipy_loglik(mix, far, 0.5, 1.0),
                               rtol=1e-9)


def test_log_likelihood_gradient_is_the_score():
    """Autodiff of the normalised density against molrg.score (Tweedie, posterior module)."""
    mix = _mixtures()["angle"]
    x0, _ = _sample(mix, 6, seed=9)
    xt = 0.8 * (x0 + 0.4 * jnp.asarray(_rng(10).standard_normal(x0.shape)))
    grad = jax.vmap(jax.grad(lambda x: M.mixture_log_likelihood(x, mix, 0.4, 0.8)))(xt)
    np.testing.assert_allclose(grad, molrg.score(mix, xt, 0.4, 0.8), rtol=1e-8, atol=1e-10)


def test_log_likelihood_jit_vmap_float32():
    mix = _mixtures()["orthogonal"]
    x0, _ = _sample(mix, 8, seed=11)
    eager = M.mixture_log_likelihood(x0, mix, 0.3)
    np.testing.assert_allclose(jax.jit(lambda a, s: M.mixture_log_likelihood(a, mix, s))(x0, 0.3), eager,
                               rtol=1e-13)
    sigmas = jnp.asarray([0.1, 0.3, 1.0])
    by_sigma = jax.vmap(lambda s: M.mixture_log_likelihood(x0, mix, s))(sigmas)
    np.testing.assert_allclose(by_sigma[1], eager, rtol=1e-13)
    by_delta = jax.vmap(lambda d: M.mixture_log_likelihood(x0, mix.replace(delta=d), 0.3))(
        jnp.asarray([0.1, 0.3]))
    np.testing.assert_allclose(by_delta[1], eager, rtol=1e-12)
    mix32 = molrg.MoLRG([b.astype(jnp.float32) for b in mix.bases], weights=mix.weights.astype(jnp.float32),
                        delta=jnp.float32(0.3), noise=jnp.float32(0.2))
    got32 = M.mixture_log_likelihood(x0.astype(jnp.float32), mix32, jnp.float32(0.3))
    assert got32.dtype == jnp.float32
    np.testing.assert_allclose(got32, eager, rtol=1e-5)


# ------------------------------------------------------------------------------------------
# Validation.
# ------------------------------------------------------------------------------------------
def test_validation_errors_name_the_argument(points):
    train, x = points
    mix = _mixtures()["orthogonal"]
    with pytest.raises(ValueError, match="^train:"):
        M.nearest_neighbors(x, train[:1])
    with pytest.raises(ValueError, match="^samples:"):
        M.nearest_neighbors(x[:, :3], train)
    with pytest.raises(ValueError, match="^samples:"):
        M.nearest_neighbors(x.astype(jnp.float32), train)
    with pytest.raises(ValueError, match="^chunk_size:"):
        M.nearest_neighbors(x, train, chunk_size=0)
    with pytest.raises(ValueError, match="^ratio:"):
        M.copy_fraction(x, train, 1.5)
    with pytest.raises(ValueError, match="^train:"):
        M.nearest_neighbors(x, train.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="^mix:"):
        M.distance_to_union(x, "not a mixture")
    with pytest.raises(ValueError, match="^samples:"):
        M.distance_to_union(x, mix)
    good = jnp.zeros((3, mix.n))
    with pytest.raises(ValueError, match="^sigma:"):
        M.mixture_log_likelihood(good[:, :14], _mixtures()["singular"], 0.0)
    with pytest.raises(ValueError, match="^sigma:"):
        M.mixture_log_likelihood(good, mix, -1.0)
    with pytest.raises(ValueError, match="^sigma:"):
        M.mixture_log_likelihood(good, mix, jnp.ones(4))
    with pytest.raises(ValueError, match="^scale:"):
        M.mixture_log_likelihood(good, mix, 0.1, 0.0)
