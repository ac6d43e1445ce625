"""Subspace estimation and the subspace error against independent references: NumPy's SVD,
dense projectors, scipy's principal angles, and matching by enumeration."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import subspace_angles
from scipy.optimize import linear_sum_assignment

import molrg
from molrg import subspaces as S


def _orthonormal(key, n, r):
    return jnp.linalg.qr(jax.random.normal(key, (n, r)))[0]


def _blocks(seed, K, n, d):
    """K random (not mutually orthogonal) orthonormal (n, d) bases, as NumPy float64."""
    rng = np.random.default_rng(seed)
    return np.stack([np.linalg.qr(rng.standard_normal((n, d)))[0] for _ in range(K)])


def _perturbed(rng, U, size):
    return np.linalg.qr(U + size * rng.standard_normal(U.shape))[0]


def _dense_pair_errors(est, true):
    P = lambda U: U @ U.T  # noqa: E731
    return np.array([[np.linalg.norm(P(e) - P(t)) ** 2 for t in true] for e in est])


def _enumerated_error(est, true):
    """sqrt(min over all permutations of sum_l ||P^_pi(l) - P_l||_F^2 / (2 K d)), dense."""
    K, _, d = true.shape
    dense = _dense_pair_errors(est, true)
    best = min(sum(dense[p[l], l] for l in range(K)) for p in itertools.permutations(range(K)))
    return math.sqrt(best / (2 * K * d))


# ------------------------------------------------------------------------------------------
# Estimators.
# ------------------------------------------------------------------------------------------
def test_pca_masked_equals_unmasked_and_numpy_svd():
    n, N, N_max, d, d_max = 12, 6, 9, 3, 4
    U = _orthonormal(jax.random.key(1), n, d)
    x = jax.random.normal(jax.random.key(2), (N, d)) @ U.T
    x = x + 0.05 * jax.random.normal(jax.random.key(3), (N, n))  # not exactly low rank
    padded = jnp.concatenate([x, jnp.zeros((N_max - N, n))])
    w = (jnp.arange(N_max) < N).astype(x.dtype)
    cols = (jnp.arange(d_max) < d).astype(x.dtype)
    got_masked = np.asarray(S.pca(padded, w, cols))
    got_plain = np.asarray(S.pca(x, jnp.ones((N,)), cols))
    _, _, vt = np.linalg.svd(np.asarray(x), full_matrices=False)  # independent reference
    ref = vt[:d].T
    for got in (got_masked, got_plain):
        assert np.all(got[:, d:] == 0)
        np.testing.assert_allclose(got[:, :d].T @ got[:, :d], np.eye(d), atol=1e-12)
        np.testing.assert_allclose(got[:, :d] @ got[:, :d].T, ref @ ref.T, atol=1e-10)


def test_pca_float32_keeps_an_ill_conditioned_direction():
    # N = d with a weak direction (singular value ratio 1e-4): eigh of X^T X in float32 loses it
    # (relative eigenvalue 1e-8 < float32 eps), the QR route must not.
    n, d = 48, 5
    U = np.asarray(_orthonormal(jax.random.key(4), n, d))
    A = np.diag([1.0, 0.8, 0.5, 0.3, 1e-4]) @ np.asarray(_orthonormal(jax.random.key(5), d, d)).T
    x = jnp.asarray(A @ U.T, jnp.float32)
    ones = jnp.ones((d,), jnp.float32)
    # also with padding rows (weight 0) ahead of the data, as in a pooled K-class sample
    padded = jnp.concatenate([jnp.zeros((10, n), jnp.float32), x])
    w = jnp.concatenate([jnp.zeros((10,), jnp.float32), ones])
    for got in (S.pca(x, ones, ones), S.pca(padded, w, ones)):
        got = np.asarray(got, np.float64)
        err = np.linalg.norm(got @ got.T - U @ U.T) / math.sqrt(2 * d)
        assert err < 1e-2


def test_orthonormalize_spans_and_keeps_zero_columns():
    m = np.random.default_rng(0).standard_normal((9, 4))
    m[:, 3] = 0.0
    q = np.asarray(S.orthonormalize(jnp.asarray(m)))
    np.testing.assert_allclose(q[:, :3].T @ q[:, :3], np.eye(3), atol=1e-12)
    ref = np.linalg.qr(m[:, :3])[0]
    np.testing.assert_allclose(q[:, :3] @ q[:, :3].T, ref @ ref.T, atol=1e-12)
    assert np.all(q[:, 3] == 0)


def test_k_subspaces_masked_equals_unmasked_and_recovers():
    K, n, d, d_max, N, N_max = 2, 16, 2, 3, 6, 8
    U = np.linalg.qr(np.random.default_rng(8).standard_normal((n, K * d_max)))[0]
    cols = (jnp.arange(d_max) < d).astype(jnp.float64)
    bases = jnp.asarray(U.reshape(n, K, d_max).transpose(1, 0, 2)) * cols[None, None, :]
    coef = jax.random.normal(jax.random.key(9), (K, N_max, d_max)) * cols[None, None, :]
    rows = (jnp.arange(N_max) < N).astype(jnp.float64)
    x = jnp.einsum("kid,knd->kin", coef * rows[None, :, None], bases)
    ksub = jax.jit(lambda x, w, key: S.k_subspaces(x, w, cols, key=key, K=K, restarts=4, iterations=8))
    masked = ksub(x.reshape(K * N_max, n), jnp.tile(rows, K), jax.random.key(10))
    plain = ksub(x[:, :N].reshape(K * N, n), jnp.ones((K * N,)), jax.random.key(10))
    proj = lambda U: np.einsum("knd,kmd->knm", np.asarray(U), np.asarray(U))  # noqa: E731
    np.testing.assert_allclose(proj(masked), proj(plain), atol=1e-8)
    assert float(S.subspace_error(masked, bases, cols)) < 1e-8  # N = d + 4: recovered exactly


# ------------------------------------------------------------------------------------------
# Clustering: the spectral start, multi-start K-subspaces, the objective of a partition.
# ------------------------------------------------------------------------------------------
def _orthogonal_classes(seed, K, n, d, N, N_max=None, d_max=None, garbage=0.0):
    """Noiseless samples on K mutually orthogonal d-dim subspaces, NumPy float64.

    Returns pooled points ``(K * N_max, n)`` (class-major), weights (0 on the padding rows,
    which hold ``garbage`` times random values), the true labels as ``(R, K)`` weights, the
    column mask ``(d_max,)`` and the true bases ``(K, n, d_max)`` (masked columns zero)."""
    N_max = N_max or N
    d_max = d_max or d
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((n, K * d)))[0]
    bases = np.zeros((K, n, d_max))
    bases[:, :, :d] = Q.reshape(n, K, d).transpose(1, 0, 2)
    x = np.einsum("kid,knd->kin", rng.standard_normal((K, N_max, d_max)), bases)
    rows = (np.arange(N_max) < N).astype(float)
    x = np.where(rows[None, :, None] > 0, x, garbage * rng.standard_normal(x.shape))
    w = np.tile(rows, K)
    labels = np.repeat(np.eye(K), N_max, axis=0) * w[:, None]
    cols = (np.arange(d_max) < d).astype(float)
    return x.reshape(K * N_max, n), w, labels, cols, bases


def _same_partition_np(a, b):
    """Independent check: the nonzero pattern of the contingency table is a permutation."""
    meet = (a > 0).T.astype(int) @ (b > 0).astype(int)
    return bool(np.all((meet > 0).sum(0) == 1) and np.all((meet > 0).sum(1) == 1))


def _objective_np(x, assign, d):
    """sum over clusters of the weighted scatter's squared singular values beyond the top d."""
    total = 0.0
    for k in range(assign.shape[1]):
        s = np.linalg.svd(np.sqrt(assign[:, k])[:, None] * x, compute_uv=False)
        total += float(np.sum(s[d:] ** 2))
    return total


@pytest.mark.parametrize("K,d", [(2, 2), (2, 5), (3, 3), (3, 8)])
def test_spectral_start_recovers_the_partition_of_orthogonal_classes(K, d):
    # Any N, also below d (the affinity graph's components are the classes), with padding
    # rows of weight 0 holding garbage.
    spectral = jax.jit(S.spectral_start, static_argnames=("K",))
    for seed, N in enumerate(sorted({max(d - 1, 2), d, d + 1, 2 * d})):
        x, w, labels, _, _ = _orthogonal_classes(seed, K, 48, d, min(N, 15), N_max=16, garbage=1.0)
        got = np.asarray(spectral(jnp.asarray(x), jnp.asarray(w), K=K))
        assert got.shape == labels.shape and np.all(got[w == 0] == 0)
        np.testing.assert_array_equal(got.sum(1), w)  # one cluster per point, its weight
        assert _same_partition_np(got, labels), (K, d, N)


def test_same_partition_against_relabelling():
    rng = np.random.default_rng(3)
    a = np.eye(3)[rng.integers(0, 3, 12)]
    a[:3] = np.eye(3)  # every cluster used
    assert bool(S.same_partition(jnp.asarray(a), jnp.asarray(a[:, [2, 0, 1]])))
    b = a.copy()
    b[0] = a[1]  # point 0 moves to point 1's cluster
    assert bool(S.same_partition(jnp.asarray(a), jnp.asarray(b))) == _same_partition_np(a, b) == False  # noqa: E712
    empty = a.copy()
    empty[:, 2] = 0
    empty[a[:, 2] > 0, 0] = 1  # cluster 2 merged into cluster 0: one empty cluster
    assert not bool(S.same_partition(jnp.asarray(a), jnp.asarray(empty)))


def test_partition_objective_equals_numpy_and_ignores_padding():
    rng = np.random.default_rng(5)
    R, n, d, d_max, K = 20, 9, 2, 4, 3
    x = rng.standard_normal((R, n))  # not low rank: every cluster leaves a residual
    w = rng.uniform(0.5, 2.0, R)
    w[[4, 11, 17]] = 0.0  # padding
    assign = np.eye(K)[rng.integers(0, K, R)] * w[:, None]
    cols = (np.arange(d_max) < d).astype(float)
    got = float(jax.jit(S.partition_objective)(jnp.asarray(x), jnp.asarray(assign), jnp.asarray(cols)))
    want = _objective_np(x, assign, d)
    assert want > 1.0
    np.testing.assert_allclose(got, want, rtol=1e-10)
    x2 = x.copy()
    x2[w == 0] = 1e3 * rng.standard_normal((3, n))  # padding values do not count
    np.testing.assert_allclose(float(S.partition_objective(jnp.asarray(x2), jnp.asarray(assign),
                                                           jnp.asarray(cols))), want, rtol=1e-10)
    # the true partition of noiseless data has residual 0 (the certificate's truth)
    x, w, labels, cols, _ = _orthogonal_classes(6, 3, 48, 4, 9, N_max=11, d_max=6, garbage=1.0)
    truth = float(S.partition_objective(jnp.asarray(x), jnp.asarray(labels), jnp.asarray(cols)))
    assert 0 <= truth < 1e-20 * np.sum(w * np.sum(x * x, 1))
    # ... and with noise, the true partition's objective is the classes' PCA residuals
    noisy = x + 0.05 * np.random.default_rng(7).standard_normal(x.shape)
    got = float(S.partition_objective(jnp.asarray(noisy), jnp.asarray(labels), jnp.asarray(cols)))
    np.testing.assert_allclose(got, _objective_np(noisy, labels, 4), rtol=1e-10)


@pytest.mark.parametrize("K,d", [(2, 3), (3, 5)])
def test_certified_k_subspaces_recovers_from_N_eq_d(K, d):
    """Spectral start + K-subspaces: the true partition and subspaces at N = d, d + 1, 2d."""
    fit = jax.jit(S.k_subspaces_fit, static_argnames=("K", "restarts", "iterations", "init"))
    for seed, N in enumerate((d, d + 1, min(2 * d, 15))):
        x, w, labels, cols, bases = _orthogonal_classes(10 + seed, K, 48, d, N, N_max=15, d_max=8, garbage=1.0)
        args = (jnp.asarray(x), jnp.asarray(w), jnp.asarray(cols))
        res = fit(*args, key=jax.random.key(seed), K=K, restarts=8, iterations=10, init="spectral")
        assert _same_partition_np(np.asarray(res.assign), labels), (K, d, N)
        est = jax.vmap(lambda a: S.pca(args[0], a, args[2]), in_axes=1)(res.assign)
        assert float(S.subspace_error(est, jnp.asarray(bases), args[2])) < 1e-8


def test_multi_start_keeps_the_smallest_residual():
    K, d = 3, 5
    x, w, labels, cols, _ = _orthogonal_classes(21, K, 20, d, 10, N_max=12, d_max=6, garbage=1.0)
    args = (jnp.asarray(x), jnp.asarray(w), jnp.asarray(cols))
    energy = float(np.sum(w * np.sum(x * x, 1)))
    fit = jax.jit(S.k_subspaces_fit, static_argnames=("K", "restarts", "iterations", "init"))
    for init, key in (("random", 1), ("spectral", 2)):
        res = fit(*args, key=jax.random.key(key), K=K, restarts=6, iterations=10, init=init)
        objs = np.asarray(res.start_objectives)
        assert objs.shape == (6 + (init == "spectral"),)
        start = int(res.start)
        # kept: the first start within TIE_RTOL of the energy of the smallest residual
        tied = np.flatnonzero(objs <= objs.min() + S.TIE_RTOL * energy)
        assert start == tied[0] and float(res.objective) == objs[start]
        np.testing.assert_array_equal(np.asarray(res.assign), np.asarray(res.start_assigns)[start])
        for a, obj in zip(np.asarray(res.start_assigns), objs):
            # each start's residual is its clustering's with its own subspaces: at least the
            # clustering's objective (every cluster refitted by PCA, computed with NumPy)
            assert obj >= _objective_np(x, a, d) - 1e-9 * energy
    # residuals of the random starts differ on this data (plain K-subspaces gets stuck), so
    # the selection is not vacuous
    assert objs.max() > 1e-3 * energy


def test_k_subspaces_fit_ignores_padding_rows():
    K, d, N = 2, 3, 5
    x, w, _, cols, _ = _orthogonal_classes(30, K, 20, d, N, N_max=8, d_max=4, garbage=1.0)
    keep = w > 0
    fit = jax.jit(lambda x, w, key: S.k_subspaces_fit(x, w, jnp.asarray(cols), key=key, K=K, restarts=3,
                                                      iterations=6, init="spectral"))
    # the spectral start and 3 random starts, side by side; padding rows hold garbage
    a = fit(jnp.asarray(x), jnp.asarray(w), jax.random.key(31))
    b = fit(jnp.asarray(x[keep]), jnp.asarray(w[keep]), jax.random.key(31))
    assert np.all(np.asarray(a.start_assigns)[:, ~keep] == 0)
    np.testing.assert_array_equal(np.asarray(a.start_assigns)[:, keep], np.asarray(b.start_assigns))
    np.testing.assert_allclose(a.start_objectives, b.start_objectives, rtol=1e-9, atol=1e-12)


def _all_partitions(R, K):
    """Every partition of R points into at most K clusters, once (labels in order of first use)."""
    for labels in itertools.product(range(K), repeat=R):
        if all(labels[i] <= max(labels[:i], default=-1) + 1 for i in range(R)):
            yield np.eye(K)[list(labels)]


@pytest.mark.parametrize("K,d,N,zero_residual", [(2, 2, 2, 3), (2, 3, 3, 10), (2, 2, 3, 1), (2, 3, 4, 1),
                                                 (3, 1, 2, 1), (3, 2, 2, 15)])
def test_identifiability_limit_by_enumeration(K, d, N, zero_residual):
    """Without labels the true partition is the unique zero-residual one iff N >= d + 1; at
    N = d every split into K groups of d points has residual 0: (K d)! / ((d!)^K K!)."""
    x, w, labels, _, _ = _orthogonal_classes(40 + d + N, K, 12, d, N)
    energy = float(np.sum(x * x))
    zero = [a for a in _all_partitions(K * N, K) if _objective_np(x, a, d) < 1e-12 * energy]
    assert len(zero) == zero_residual
    assert any(_same_partition_np(a, labels) for a in zero)
    if N == d:
        assert zero_residual == math.factorial(K * d) // (math.factorial(d) ** K * math.factorial(K))
    # partition_objective agrees with NumPy on a few of them
    for a in zero[:2] + [np.roll(labels, 1, axis=0)]:
        np.testing.assert_allclose(float(S.partition_objective(jnp.asarray(x), jnp.asarray(a), jnp.ones(d))),
                                   _objective_np(x, a, d), rtol=1e-8, atol=1e-12 * energy)


def test_clustering_validates_its_arguments():
    x, w = jnp.zeros((6, 4)), jnp.ones((6,))
    cols, key = jnp.ones((2,)), jax.random.key(0)
    cases = [
        (dict(x=x, weights=w, K=2, restarts=2, iterations=2, init="kmeans"), "init"),
        (dict(x=x, weights=w, K=0, restarts=2, iterations=2), "K"),
        (dict(x=x, weights=jnp.ones((5,)), K=2, restarts=2, iterations=2), "weights"),
        (dict(x=x, weights=w, K=2, restarts=0, iterations=2, init="random"), "restarts"),
        (dict(x=x, weights=w, K=2, restarts=2, iterations=2, threshold=1.5), "threshold"),
        (dict(x=x, weights=-w, K=2, restarts=2, iterations=2), "weights"),
        (dict(x=x[0], weights=w, K=2, restarts=2, iterations=2), "x"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=f"^{name}:"):
            S.k_subspaces_fit(kwargs.pop("x"), kwargs.pop("weights"), cols, key=key, **kwargs)
    with pytest.raises(ValueError, match="^threshold:"):
        S.spectral_start(x, w, K=2, threshold=-0.1)
    with pytest.raises(ValueError, match="^assign:"):
        S.partition_objective(x, jnp.ones((5, 2)), cols)
    with pytest.raises(ValueError, match="^a/b:"):
        S.same_partition(jnp.ones((6, 2)), jnp.ones((6, 3)))


# ------------------------------------------------------------------------------------------
# Pair errors, cosines, angles.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1e-9, 1e-3, 0.3])
def test_pair_errors_against_dense_projectors(size):
    true = _blocks(0, 3, 14, 3)
    rng = np.random.default_rng(1)
    est = np.stack([_perturbed(rng, true[p], size) for p in (2, 0, 1)])
    dense = _dense_pair_errors(est, true)
    got_np = S.pair_errors(est, true)  # NumPy in, NumPy out (float64 on the host)
    got_jax = jax.jit(S.pair_errors)(jnp.asarray(est), jnp.asarray(true))
    assert isinstance(got_np, np.ndarray) and isinstance(got_jax, jax.Array)
    # the dense difference of projectors has absolute rounding ~1e-15: compare with that floor
    np.testing.assert_allclose(got_np, dense, rtol=1e-6, atol=1e-13)
    np.testing.assert_allclose(got_jax, got_np, rtol=1e-12, atol=1e-15)
    assert np.all((got_np >= 0) & (got_np <= 2 * 3 + 1e-12))
    if size == 1e-9:  # small errors keep their digits: ~ (2 * 3) size^2 each, never rounding noise
        diag = got_np[[0, 1, 2], [2, 0, 1]]  # est i perturbs true block (2, 0, 1)[i]
        assert np.all((diag > 1e-20) & (diag < 1e-15))


def test_pair_errors_and_cosines_with_a_column_mask():
    d, d_max = 2, 4
    true, est = _blocks(2, 3, 12, d_max), _blocks(3, 3, 12, d_max)
    cols = (np.arange(d_max) < d).astype(np.float64)
    np.testing.assert_allclose(S.pair_errors(est, true, cols), S.pair_errors(est[..., :d], true[..., :d]),
                               atol=1e-14)
    cos = S.pair_cosines(jnp.asarray(est), jnp.asarray(true), jnp.asarray(cols))
    assert cos.shape == (3, 3, d_max) and np.all(np.asarray(cos)[..., d:] < 1e-14)
    for i in range(3):
        for j in range(3):
            ref = np.sort(np.cos(subspace_angles(est[i, :, :d], true[j, :, :d])))[::-1]
            np.testing.assert_allclose(np.asarray(cos)[i, j, :d], ref, atol=1e-12)


@pytest.mark.parametrize("size", [1e-9, 1e-3, 1.0])
def test_principal_angles_against_scipy(size):
    rng = np.random.default_rng(4)
    a = _blocks(5, 1, 15, 4)[0]
    b = _perturbed(rng, a, size)
    want = np.sort(subspace_angles(a, b))
    for got in (S.principal_angles(a, b), np.asarray(S.principal_angles(jnp.asarray(a), jnp.asarray(b)))):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-15)
    # unequal dimensions: min(p, q) angles
    np.testing.assert_allclose(S.principal_angles(a[:, :2], b), np.sort(subspace_angles(a[:, :2], b)),
                               rtol=1e-6, atol=1e-15)


# ------------------------------------------------------------------------------------------
# Matching and the error.
# ------------------------------------------------------------------------------------------
def test_match_blocks_known_answer_and_batched():
    cost = np.array([[4.0, 1.0, 3.0], [0.5, 4.0, 4.0], [4.0, 4.0, 0.1]])
    # learned 1 -> true 0, learned 0 -> true 1, learned 2 -> true 2: cost 0.5 + 1 + 0.1.
    for method in ("brute_force", "hungarian", "auto"):
        np.testing.assert_array_equal(S.match_blocks(cost, method=method), [1, 0, 2])
    m = S.match_pairs(np.stack([cost, cost.T]), d=2)
    np.testing.assert_array_equal(m.match, [[1, 0, 2], [1, 0, 2]])
    np.testing.assert_allclose(m.error, [math.sqrt(1.6 / (2 * 3 * 2))] * 2, rtol=1e-14)
    np.testing.assert_allclose(m.frobenius_error, [math.sqrt(1.6)] * 2, rtol=1e-14)
    np.testing.assert_allclose(m.block_errors[0], np.sqrt([0.5, 1.0, 0.1]), rtol=1e-14)
    with pytest.raises(ValueError, match="^method:"):
        S.match_blocks(cost, method="greedy")
    with pytest.raises(ValueError, match="^pair_error:"):
        S.match_blocks(np.ones((2, 3)))


@pytest.mark.parametrize("K", [1, 2, 3, 5, 7])
def test_brute_force_and_hungarian_find_the_same_minimum(K):
    rng = np.random.default_rng(K)
    cost = rng.uniform(size=(6, K, K))
    total = lambda c, m: np.sum(np.take_along_axis(c, m[..., None, :], axis=-2)[..., 0, :], -1)  # noqa: E731
    brute = np.asarray(jax.jit(S.match_blocks)(jnp.asarray(cost)))  # traced: brute force
    hung = S.match_blocks(cost, method="hungarian")
    want = np.array([min(sum(c[p[l], l] for l in range(K)) for p in itertools.permutations(range(K)))
                     for c in cost])
    np.testing.assert_allclose(total(cost, brute), want, rtol=1e-13)
    np.testing.assert_allclose(total(cost, hung), want, rtol=1e-13)
    for m in (brute, hung):  # each is a permutation
        assert np.all(np.sort(m, axis=-1) == np.arange(K))


def test_large_K_matching_is_hungarian_on_the_host():
    K = S.MAX_BRUTE_FORCE_K + 1
    cost = np.random.default_rng(0).uniform(size=(K, K))
    est_idx, true_idx = linear_sum_assignment(cost)
    want = np.empty(K, np.int64)
    want[true_idx] = est_idx
    np.testing.assert_array_equal(S.match_blocks(cost), want)
    with pytest.raises(ValueError, match="^pair_error:"):
        jax.jit(S.match_blocks)(jnp.asarray(cost))  # traced and too large for brute force
    with pytest.raises(ValueError, match="^pair_error:"):
        S.match_blocks(cost, method="brute_force")


def test_subspace_error_against_enumeration_and_its_limits():
    K, n, d = 3, 14, 2
    true = _blocks(6, K, n, d)
    rng = np.random.default_rng(7)
    est = np.stack([_perturbed(rng, true[p], 0.3) for p in (2, 0, 1)])  # noisy, block-permuted
    want = _enumerated_error(est, true)
    got_np = S.subspace_error(est, true)
    got_jit = float(jax.jit(S.subspace_error)(jnp.asarray(est), jnp.asarray(true)))
    np.testing.assert_allclose([got_np, got_jit], want, rtol=1e-10)
    assert 0.0 < want < 1.0
    # RMS sine of the K d principal angles between matched blocks (scipy's angles)
    match = S.match_blocks(S.pair_errors(est, true))
    sines = np.concatenate([np.sin(subspace_angles(est[match[l]], true[l])) for l in range(K)])
    np.testing.assert_allclose(want, np.sqrt(np.mean(sines**2)), rtol=1e-10)
    # limits: exact (any block order) = 0; every block orthogonal to every true block = 1
    assert S.subspace_error(true[[1, 2, 0]], true) < 1e-7
    q = np.linalg.qr(np.random.default_rng(8).standard_normal((n, 2 * K * d)))[0]
    a, b = q[:, :K * d].reshape(n, K, d).transpose(1, 0, 2), q[:, K * d:].reshape(n, K, d).transpose(1, 0, 2)
    np.testing.assert_allclose(S.subspace_error(a, b), 1.0, rtol=1e-12)


def test_subspace_error_with_mask_equals_truncated_blocks():
    K, n, d, d_max = 2, 10, 2, 4
    true, est = _blocks(9, K, n, d_max), _blocks(10, K, n, d_max)
    cols = (jnp.arange(d_max) < d).astype(jnp.float64)
    got = jax.jit(S.subspace_error)(jnp.asarray(est), jnp.asarray(true), cols)
    np.testing.assert_allclose(got, _enumerated_error(est[..., :d], true[..., :d]), rtol=1e-10)
    # vmapped over a batch of estimates = one at a time
    batch = jnp.stack([jnp.asarray(est), jnp.asarray(true), jnp.asarray(est[::-1])])
    got_b = jax.vmap(lambda e: S.subspace_error(e, jnp.asarray(true), cols))(batch)
    np.testing.assert_allclose(got_b, [float(got), 0.0, float(got)], atol=1e-7)


def test_match_pairs_angles_from_cosines():
    true = _blocks(11, 2, 12, 3)
    rng = np.random.default_rng(12)
    est = np.stack([_perturbed(rng, true[1], 0.2), _perturbed(rng, true[0], 0.2)])
    m = S.match_pairs(S.pair_errors(est, true), d=3, cosines=S.pair_cosines(est, true))
    np.testing.assert_array_equal(m.match, [1, 0])
    for l in range(2):
        np.testing.assert_allclose(m.angles[l], np.sort(subspace_angles(est[m.match[l]], true[l])),
                                   rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="^cosines:"):
        S.match_pairs(S.pair_errors(est, true), d=3, cosines=np.ones((2, 3, 3)))


# ------------------------------------------------------------------------------------------
# The host-side report.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1e-9, 1e-3, 0.3])
def test_compare_subspaces_against_dense_projectors(size):
    mix = molrg.MoLRG([jnp.asarray(b) for b in _blocks(12, 4, 20, 3)])
    rng = np.random.default_rng(13)
    est = [_perturbed(rng, np.asarray(U), size) for U in mix.bases]
    perm = [2, 0, 3, 1]  # estimated block i is a perturbation of true block perm[i]
    column_scales = np.asarray([2.0, -0.5, 3.0])  # same spans, columns not orthonormal
    rec = S.compare_subspaces([est[p] * column_scales for p in perm], mix)
    np.testing.assert_array_equal(rec.match, np.argsort(perm))
    dense = np.asarray([np.linalg.norm(est[l] @ est[l].T - np.asarray(mix.bases[l]) @ np.asarray(mix.bases[l]).T)
                        for l in range(4)])
    np.testing.assert_allclose(rec.block_errors, dense, rtol=1e-6, atol=1e-13)
    np.testing.assert_allclose(rec.frobenius_error, np.sqrt(np.sum(dense**2)), rtol=1e-6, atol=1e-13)
    np.testing.assert_allclose(rec.error, np.sqrt(np.sum(dense**2) / (2 * 4 * 3)), rtol=1e-6, atol=1e-13)
    for l in range(4):
        np.testing.assert_allclose(rec.angles[l], np.sort(subspace_angles(est[l], np.asarray(mix.bases[l]))),
                                   rtol=1e-6, atol=1e-15)
    if size == 1e-9:  # small errors keep their digits: the error scales with the perturbation
        assert 1e-11 < rec.error < 1e-8
    # the traceable error agrees
    np.testing.assert_allclose(rec.error, S.subspace_error(np.stack([est[p] for p in perm]),
                                                          np.stack([np.asarray(b) for b in mix.bases])),
                               rtol=1e-6, atol=1e-13)


def test_compare_subspaces_validates_its_arguments():
    true = _blocks(14, 3, 12, 2)
    with pytest.raises(ValueError, match="^est:"):
        S.compare_subspaces(true[:2], true)  # one block short
    with pytest.raises(ValueError, match="^est:"):
        S.compare_subspaces([np.zeros((12, 2))] + list(true[1:]), true)  # rank deficient
    with pytest.raises(ValueError, match="^est:"):
        S.compare_subspaces(np.zeros((3, 12)), true)
    with pytest.raises(ValueError, match="^true:"):
        S.compare_subspaces(true, [true[0], true[1][:, :1], true[2]])  # unequal dimensions
    with pytest.raises(ValueError, match="^est:"):
        S.pair_errors(true[:, :, :1], true)
    with pytest.raises(ValueError, match="^cols:"):
        S.pair_errors(true, true, np.ones(3))
