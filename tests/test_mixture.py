"""The MoLRG data model: sampler statistics, constructors, pytree behaviour, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import subspace_angles

import molrg
from tests.oracle import class_covariances, class_means


def _keys(n, seed=0):
    return list(jax.random.split(jax.random.key(seed), n))


@pytest.mark.parametrize("kind", ["orthogonal", "general"])
def test_sampler_matches_model_moments(kind):
    """Class frequencies, means and covariances within Monte Carlo error (float64)."""
    k = _keys(3)
    n, K, num = 10, 3, 60_000
    weights = jnp.asarray([0.5, 0.3, 0.2])
    means = 0.8 * jax.random.normal(k[1], (K, n), jnp.float64)
    if kind == "orthogonal":
        mix = molrg.random_molrg(k[0], n=n, K=K, d=[3, 1, 2], delta=0.3, noise=0.1,
                                 weights=weights, means=means)
    else:
        mix = molrg.random_molrg(k[0], n=n, K=K, d=2, delta=0.4, noise=0.05, angle=35.0,
                                 weights=weights, means=means)
    assert mix.structure == kind
    x0, labels = mix.sample(k[2], num)
    assert x0.shape == (num, n) and labels.shape == (num,) and labels.dtype == jnp.int32
    x0, labels = np.asarray(x0), np.asarray(labels)
    counts = np.bincount(labels, minlength=K)
    p = np.asarray(weights)
    z = (counts - num * p) / np.sqrt(num * p * (1 - p))
    assert np.all(np.abs(z) < 4.5), z
    for cls, (cov, mu) in enumerate(zip(class_covariances(mix), class_means(mix))):
        xs = x0[labels == cls]
        m = len(xs)
        z_mean = (xs.mean(0) - mu) / np.sqrt(np.diag(cov) / m)
        assert np.all(np.abs(z_mean) < 4.5), z_mean
        emp = np.cov(xs.T)
        # Var of a sample covariance entry: (S_ii S_jj + S_ij^2) / m.
        se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / m)
        assert np.max(np.abs(emp - cov) / se) < 5.0


@pytest.mark.parametrize("delta", [0.0, 0.3])
def test_general_geometry_variances_have_exact_zeros_in_float32(delta):
    """Class k's covariance in the frame has rank d_k (delta = 0) or at most D: its other
    eigenvalues are exactly 0 even in float32, where eigh returns them as ~1e-7 noise (which
    next to sigma^2 = 1e-8 kept 90% of the noise in those directions). The remaining
    variances match the float64 spectrum of the oracle's class covariances."""
    k = _keys(2, seed=3)
    n, K, d = 9, 3, 2
    means = 0.5 * jax.random.normal(k[1], (K, n), jnp.float64)
    mix = molrg.random_molrg(k[0], n=n, K=K, d=d, delta=delta, angle=40.0, means=means)
    assert mix.structure == "general"
    mix32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), mix)
    geo = molrg.geometry(mix32)
    r, D = geo.frame.shape[1], K * d
    zeros = r - (d if delta == 0.0 else D)
    assert zeros > 0
    v = np.asarray(geo.variances, np.float64)
    assert np.all(v[:, :zeros] == 0.0)
    mix64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), mix32)
    for cls, cov in enumerate(class_covariances(mix64)):
        want = np.sort(np.linalg.eigvalsh(cov))[-(r - zeros):]  # the nonzero part of the spectrum
        np.testing.assert_allclose(v[cls, zeros:], want, rtol=0, atol=1e-5)


def test_random_molrg_angle_gives_the_principal_angles():
    mix = molrg.random_molrg(jax.random.key(0), n=30, K=3, d=4, angle=30.0)
    for a in range(3):
        for b in range(a + 1, 3):
            ang = np.rad2deg(subspace_angles(np.asarray(mix.bases[a]), np.asarray(mix.bases[b])))
            np.testing.assert_allclose(ang, 30.0, atol=1e-6)
    assert mix.structure == "general"
    orth = molrg.random_molrg(jax.random.key(1), n=30, K=3, d=4)
    assert orth.structure == "orthogonal"
    U = np.asarray(orth.stacked_bases)
    np.testing.assert_allclose(U.T @ U, np.eye(12), atol=1e-12)


def test_separated_means_and_paper_molrg():
    m = molrg.separated_means(jax.random.key(0), n=20, K=3, radius=4.0)
    np.testing.assert_allclose(np.asarray(m @ m.T), 16.0 * np.eye(3), atol=1e-10)
    mix = molrg.paper_molrg(jax.random.key(1))
    assert (mix.n, mix.K, mix.dims, float(mix.delta)) == (50, 3, (5, 5, 5), 0.2)


def test_is_an_immutable_pytree_usable_in_jit():
    mix = molrg.random_molrg(jax.random.key(0), n=8, K=2, d=2, delta=0.2)
    leaves, tree = jax.tree_util.tree_flatten(mix)
    again = jax.tree_util.tree_unflatten(tree, leaves)
    assert again.structure == mix.structure and again.dims == mix.dims
    with pytest.raises(AttributeError):
        mix.delta = 0.5
    doubled = jax.jit(lambda m: m.replace(delta=2 * m.delta))(mix)
    np.testing.assert_allclose(doubled.delta, 0.4)
    x, _ = jax.jit(lambda m, k: m.sample(k, 5))(mix, jax.random.key(3))
    assert x.shape == (5, 8)
    assert "MoLRG(n=8, K=2" in repr(mix)


def test_list_and_stacked_bases_agree():
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(9, 6)))[0]
    a = molrg.MoLRG(q.reshape(9, 3, 2).transpose(1, 0, 2), delta=0.1)
    b = molrg.MoLRG([q[:, 0:2], q[:, 2:4], q[:, 4:6]], delta=0.1)
    assert a.dims == b.dims == (2, 2, 2)
    for u, v in zip(a.bases, b.bases):
        np.testing.assert_array_equal(u, v)


def test_bases_are_stored_stacked_and_sliced_back_exactly():
    """Ragged bases go in; the mixture stores U = [U_1 ... U_K] as one pytree leaf, and
    ``bases`` gives back each U_k, unchanged, also after a pytree round trip and under vmap."""
    q = np.linalg.qr(np.random.default_rng(3).normal(size=(9, 6)))[0]
    given = [q[:, 0:2], q[:, 2:5], q[:, 5:6]]
    mix = molrg.MoLRG(given, delta=0.1)
    assert mix.dims == (2, 3, 1) and mix.K == 3 and mix.D == 6 and mix.n == 9
    np.testing.assert_array_equal(mix.stacked_bases, q)
    for u, v in zip(mix.bases, given):
        np.testing.assert_array_equal(u, v)
    leaves = jax.tree_util.tree_leaves(mix)
    assert sum(np.shape(leaf) == (9, 6) for leaf in leaves) == 1
    again = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(mix), leaves)
    assert again.dims == mix.dims and [b.shape for b in again.bases] == [(9, 2), (9, 3), (9, 1)]
    twice = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), mix)  # a batch of 2 mixtures
    norms = jax.vmap(lambda m: jnp.stack([jnp.sum(b * b) for b in m.bases]))(twice)
    np.testing.assert_allclose(norms, [[2.0, 3.0, 1.0]] * 2, rtol=1e-12)
    np.testing.assert_array_equal(mix.replace(delta=0.3).stacked_bases, q)


def _basis(n=6, d=2, seed=0):
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(n, d)))[0]


def test_validation_rules():
    u1, u2 = _basis(seed=0), _basis(seed=1)
    with pytest.raises(ValueError, match="bases: class 0 basis must have orthonormal columns"):
        molrg.MoLRG([2 * u1, u2])
    with pytest.raises(ValueError, match=r"bases: class 1 has d_k = 7 > n = 6"):
        molrg.MoLRG([u1, np.eye(6, 7)])
    with pytest.raises(ValueError, match="bases: all bases must have the same number of rows"):
        molrg.MoLRG([u1, _basis(n=7)])
    with pytest.raises(ValueError, match="bases: class 1 basis must be 2-D"):
        molrg.MoLRG([u1, np.ones(6)])
    with pytest.raises(ValueError, match="bases: must be a"):
        molrg.MoLRG(np.ones((6, 2)))
    with pytest.raises(ValueError, match="bases: must hold at least one"):
        molrg.MoLRG([])
    with pytest.raises(ValueError, match="bases: class 0 basis contains non-finite"):
        molrg.MoLRG([np.full((6, 2), np.nan), u2])
    with pytest.raises(ValueError, match=r"weights: must have shape \(K,\)"):
        molrg.MoLRG([u1, u2], weights=[1.0])
    with pytest.raises(ValueError, match="weights: must be > 0"):
        molrg.MoLRG([u1, u2], weights=[1.5, -0.5])
    with pytest.raises(ValueError, match="weights: must sum to 1"):
        molrg.MoLRG([u1, u2], weights=[0.5, 0.6])
    with pytest.raises(ValueError, match="weights: must be finite"):
        molrg.MoLRG([u1, u2], weights=[np.nan, 0.5])
    with pytest.raises(ValueError, match="delta: must be >= 0"):
        molrg.MoLRG([u1, u2], delta=-0.1)
    with pytest.raises(ValueError, match="delta: must be finite"):
        molrg.MoLRG([u1, u2], delta=np.inf)
    with pytest.raises(ValueError, match="noise: must be >= 0"):
        molrg.MoLRG([u1, u2], noise=-1.0)
    with pytest.raises(ValueError, match="delta: must be a scalar"):
        molrg.MoLRG([u1, u2], delta=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"means: must have shape \(K, n\)"):
        molrg.MoLRG([u1, u2], means=np.zeros((2, 5)))
    with pytest.raises(ValueError, match="means: must contain only finite"):
        molrg.MoLRG([u1, u2], means=np.full((2, 6), np.inf))
    with pytest.raises(ValueError, match="structure: 'orthogonal' requested"):
        molrg.MoLRG([u1, u2], structure="orthogonal")
    with pytest.raises(ValueError, match="structure: must be one of"):
        molrg.MoLRG([u1, u2], structure="diagonal")


def test_constructor_and_sampler_validation():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"d: mutually orthogonal subspaces need sum\(d\) <= n"):
        molrg.random_molrg(key, n=5, K=3, d=2)
    with pytest.raises(ValueError, match="d: must be an int or have one entry per class"):
        molrg.random_molrg(key, n=10, K=3, d=[1, 2])
    with pytest.raises(ValueError, match="d: every subspace dimension must be >= 1"):
        molrg.random_molrg(key, n=10, K=2, d=0)
    with pytest.raises(ValueError, match="angle: must be in"):
        molrg.random_molrg(key, n=30, K=2, d=2, angle=0.0)
    with pytest.raises(ValueError, match=r"angle: needs n >= d \(K \+ 1\)"):
        molrg.random_molrg(key, n=5, K=2, d=2, angle=30.0)
    with pytest.raises(ValueError, match="n: must be a positive integer"):
        molrg.random_molrg(key, n=0, K=2, d=1)
    with pytest.raises(ValueError, match="K: must be a positive integer"):
        molrg.random_molrg(key, n=5, K=0, d=1)
    with pytest.raises(ValueError, match="radius: must be > 0"):
        molrg.separated_means(key, n=5, K=2, radius=0.0)
    mix = molrg.random_molrg(key, n=6, K=2, d=2)
    with pytest.raises(ValueError, match="num: must be a positive integer"):
        mix.sample(jax.random.key(1), 0)
