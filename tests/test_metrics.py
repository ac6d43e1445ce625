"""Tests of molrg.metrics against independent references (numpy loops, scipy, replications)."""

import types

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.optimize  # noqa: E402

from molrg import metrics, probes  # noqa: E402


# ----------------------------------------------------------------------------------------------
# Stand-ins and references.
# ----------------------------------------------------------------------------------------------


def _stand_in_mix(rng, n, dims, weights=None):
    """Duck-typed mixture: independent random orthonormal bases (not mutually orthogonal)."""
    bases = tuple(np.linalg.qr(rng.normal(size=(n, d)))[0] for d in dims)
    K = len(dims)
    weights = np.full(K, 1.0 / K) if weights is None else np.asarray(weights, float)
    return types.SimpleNamespace(bases=bases, K=K, n=n, dims=tuple(dims), weights=weights)


def _class_samples(rng, mix, labels, noise=0.5):
    """x = U_k a + noise * g, a ~ N(0, I_{d_k}), g ~ N(0, I_n)."""
    x = np.stack([mix.bases[k] @ rng.normal(size=mix.dims[k]) for k in labels])
    return x + noise * rng.normal(size=x.shape)


def _snr_reference(x, labels, bases, weights):
    """Plain numpy loop with explicit n x n projectors P_k = U_k U_k^T."""
    K = len(bases)
    num, den = np.zeros(K), np.zeros(K)
    for k, U in enumerate(bases):
        P = U @ U.T
        xs = x[labels == k]
        num[k] = np.mean([np.sum((P @ v) ** 2) for v in xs])
        den[k] = np.mean([np.sum((v - P @ v) ** 2) for v in xs])
    ratio = num / den
    pi = weights / weights.sum()
    return num, den, ratio, ratio.mean(), (pi * num).sum() / (pi * den).sum()


def _feature_snr_reference(F, y, K, rank, F_fit=None, y_fit=None):
    """P1's recipe in numpy: unit rows, subtract fit mean, per-class SVD, explicit projectors."""
    if F_fit is None:
        F_fit, y_fit = F, y
    unit = lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)  # noqa: E731
    mu = unit(F_fit).mean(axis=0)
    Z_fit, Z = unit(F_fit) - mu, unit(F) - mu
    bases = []
    for k in range(K):
        _, _, vt = np.linalg.svd(Z_fit[y_fit == k], full_matrices=False)
        bases.append(vt[:rank].T)
    counts = np.bincount(y, minlength=K).astype(float)
    return _snr_reference(Z, y, bases, counts), bases, Z


def _projector_distance(A, B):
    return np.linalg.norm(A @ A.T - B @ B.T)


# ----------------------------------------------------------------------------------------------
# snr / snr_per_class.
# ----------------------------------------------------------------------------------------------


def test_snr_matches_dense_reference():
    rng = np.random.default_rng(0)
    mix = _stand_in_mix(rng, n=12, dims=(3, 5, 2), weights=(0.5, 0.3, 0.2))
    labels = rng.integers(0, 3, size=400)
    x = _class_samples(rng, mix, labels)
    num, den, ratio, snr_ref, pooled_ref = _snr_reference(x, labels, mix.bases, mix.weights)

    stats = metrics.snr_per_class(x, labels, mix)
    np.testing.assert_allclose(stats.num, num, rtol=1e-12)
    np.testing.assert_allclose(stats.den, den, rtol=1e-12)
    np.testing.assert_allclose(stats.ratio, ratio, rtol=1e-12)
    np.testing.assert_array_equal(stats.count, np.bincount(labels, minlength=3))
    np.testing.assert_allclose(stats.snr, snr_ref, rtol=1e-12)
    np.testing.assert_allclose(stats.pooled, pooled_ref, rtol=1e-12)
    np.testing.assert_allclose(metrics.snr(x, labels, mix), snr_ref, rtol=1e-12)
    np.testing.assert_allclose(metrics.snr(x, labels, mix, pooled=True), pooled_ref, rtol=1e-12)
    # Per-class standard errors of the means, from the per-sample energies directly.
    for k, U in enumerate(mix.bases):
        xs = x[labels == k]
        a = np.sum((xs @ U) ** 2, axis=1)
        b = np.sum((xs - xs @ U @ U.T) ** 2, axis=1)
        np.testing.assert_allclose(stats.num_stderr[k], a.std(ddof=1) / np.sqrt(len(a)), rtol=1e-10)
        np.testing.assert_allclose(stats.den_stderr[k], b.std(ddof=1) / np.sqrt(len(b)), rtol=1e-10)


def test_snr_residual_keeps_relative_accuracy_near_the_subspace():
    # Outputs within 1e-7 of span(U_k): ||x||^2 - ||U^T x||^2 would lose ~all digits of the residual.
    rng = np.random.default_rng(1)
    n, d, eps = 10, 3, 1e-7
    q = np.linalg.qr(rng.normal(size=(n, n)))[0]
    U, W = q[:, :d], q[:, d:]
    mix = types.SimpleNamespace(bases=(U,), K=1, n=n, dims=(d,), weights=np.ones(1))
    a, c = rng.normal(size=(50, d)), rng.normal(size=(50, n - d))
    x = a @ U.T + eps * c @ W.T
    exact = np.mean(np.sum(a**2, 1)) / np.mean(np.sum((eps * c) ** 2, 1))
    np.testing.assert_allclose(metrics.snr(x, np.zeros(50, int), mix), exact, rtol=1e-6)


def test_snr_stderr_matches_spread_over_replications():
    # Labels fixed, outputs redrawn: the delta-method stderr should match the observed std of the
    # estimates. With 200 replications the observed std has ~5% relative error; allow 20%.
    rng = np.random.default_rng(2)
    mix = _stand_in_mix(rng, n=10, dims=(2, 3, 2), weights=(0.5, 0.3, 0.2))
    labels = np.repeat(np.arange(3), (300, 180, 120))
    scales = np.array([1.0, 2.0, 0.7])[labels][:, None]  # heterogeneous classes
    outputs = np.stack(
        [_class_samples(rng, mix, labels, noise=0.6) * scales for _ in range(200)]
    )
    stats = jax.vmap(lambda out: metrics.snr_per_class(out, labels, mix))(outputs)
    for field in ("ratio", "num", "den", "snr", "pooled"):
        estimates = np.asarray(getattr(stats, field))
        predicted = np.asarray(getattr(stats, field + "_stderr")).mean(axis=0)
        observed = estimates.std(axis=0, ddof=1)
        np.testing.assert_allclose(predicted / observed, 1.0, atol=0.2, err_msg=field)


def test_snr_jit_and_vmap_match_eager():
    rng = np.random.default_rng(3)
    mix = _stand_in_mix(rng, n=8, dims=(2, 3))
    labels = rng.integers(0, 2, size=100)
    outputs = np.stack([_class_samples(rng, mix, labels, noise=s) for s in (0.1, 0.5, 2.0)])
    eager = [metrics.snr_per_class(o, labels, mix) for o in outputs]
    jitted = jax.jit(lambda o, y: metrics.snr_per_class(o, y, mix))(outputs[1], jnp.asarray(labels))
    vmapped = jax.jit(jax.vmap(lambda o: metrics.snr_per_class(o, labels, mix)))(outputs)
    for a, b in zip(jax.tree.leaves(eager[1]), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    for i, e in enumerate(eager):
        for a, b in zip(jax.tree.leaves(e), jax.tree.leaves(vmapped)):
            np.testing.assert_allclose(a, b[i], rtol=1e-12)
    pooled = jax.vmap(lambda o: metrics.snr(o, labels, mix, pooled=True))(outputs)
    np.testing.assert_allclose(pooled, [e.pooled for e in eager], rtol=1e-12)


def test_snr_float32_within_tolerance_of_float64():
    rng = np.random.default_rng(4)
    mix = _stand_in_mix(rng, n=16, dims=(4, 4, 4))
    labels = rng.integers(0, 3, size=300)
    x = _class_samples(rng, mix, labels, noise=0.3)
    mix32 = types.SimpleNamespace(**vars(mix))
    mix32.bases = tuple(b.astype(np.float32) for b in mix.bases)
    s32 = metrics.snr(x.astype(np.float32), labels.astype(np.int32), mix32)
    assert s32.dtype == jnp.float32
    np.testing.assert_allclose(s32, metrics.snr(x, labels, mix), rtol=1e-4)


def test_snr_accepts_the_real_mixture_class():
    mixture = pytest.importorskip("molrg.mixture")
    rng = np.random.default_rng(5)
    stand_in = _stand_in_mix(rng, n=9, dims=(2, 3))
    mix = mixture.MoLRG(stand_in.bases)
    labels = rng.integers(0, 2, size=80)
    x = _class_samples(rng, stand_in, labels)
    expected = metrics.snr(x, labels, stand_in)
    np.testing.assert_allclose(metrics.snr(x, labels, mix), expected, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(metrics.snr)(x, labels, mix), expected, rtol=1e-12)


def _bad_snr_inputs():
    rng = np.random.default_rng(6)
    mix = _stand_in_mix(rng, n=6, dims=(2, 2))
    labels = np.array([0, 1, 0, 1, 1])
    x = rng.normal(size=(5, 6))
    bad_nan = x.copy()
    bad_nan[2, 3] = np.nan
    return [
        ("outputs", (x[0], labels, mix)),
        ("labels", (x, labels[:4], mix)),
        ("labels", (x, labels.astype(float), mix)),
        ("labels", (x, np.array([0, 1, 2, 1, 0]), mix)),
        ("labels", (x, np.array([0, 1, -1, 1, 0]), mix)),
        ("labels", (x, np.zeros(5, int), mix)),  # class 1 has no samples
        ("outputs", (bad_nan, labels, mix)),
        ("mix.bases", (x[:, :5], labels, mix)),
        ("mix.weights", (x, labels, types.SimpleNamespace(**{**vars(mix), "weights": np.ones(3)}))),
        ("mix.weights", (x, labels, types.SimpleNamespace(**{**vars(mix), "weights": np.r_[1.0, -1.0]}))),
        ("mix.K", (x, labels, types.SimpleNamespace(**{**vars(mix), "K": 3}))),
        ("mix", (x, labels, object())),
    ]


@pytest.mark.parametrize("name, args", _bad_snr_inputs())
def test_snr_rejects_bad_input(name, args):
    with pytest.raises(ValueError, match=f"^{name}(\\[\\d\\])?: "):
        metrics.snr(*args)


def test_snr_value_checks_skip_tracers():
    rng = np.random.default_rng(7)
    mix = _stand_in_mix(rng, n=6, dims=(2, 2))
    labels = np.array([0, 1, 0, 1])
    x = rng.normal(size=(4, 6))
    # A NaN inside jit is not checked (no concrete value); a shape error still is.
    x_nan = x.copy()
    x_nan[0, 0] = np.nan
    assert np.isnan(jax.jit(lambda o: metrics.snr(o, labels, mix))(x_nan))
    with pytest.raises(ValueError, match="^labels: "):
        jax.jit(lambda o: metrics.snr(o, labels[:3], mix))(x)


def _assert_stats_equal(got, want, rtol=1e-12):
    for field in metrics.SNRStats._fields:
        np.testing.assert_allclose(np.asarray(getattr(got, field), float), np.asarray(getattr(want, field), float),
                                   rtol=rtol, err_msg=field)


def test_snr_sample_weights_mask_equals_the_subset():
    """0/1 sample weights give every statistic of the selected rows (and only of them)."""
    rng = np.random.default_rng(8)
    mix = _stand_in_mix(rng, n=10, dims=(2, 3, 2), weights=(0.5, 0.3, 0.2))
    labels = rng.integers(0, 3, size=300)
    x = _class_samples(rng, mix, labels, noise=0.4)
    keep = rng.random(300) < 0.6
    want = metrics.snr_per_class(x[keep], labels[keep], mix)
    got = metrics.snr_per_class(x, labels, mix, sample_weights=keep.astype(float))
    _assert_stats_equal(got, want)
    num, den, ratio, snr_ref, pooled_ref = _snr_reference(x[keep], labels[keep], mix.bases, mix.weights)
    np.testing.assert_allclose(got.ratio, ratio, rtol=1e-12)
    np.testing.assert_allclose(metrics.snr(x, labels, mix, sample_weights=keep), snr_ref, rtol=1e-12)
    np.testing.assert_allclose(metrics.snr(x, labels, mix, sample_weights=keep, pooled=True), pooled_ref,
                               rtol=1e-12)
    # Left-out rows do not matter, whatever they hold (under jit, where values are not checked).
    x_bad = np.where(keep[:, None], x, np.nan)
    traced = jax.jit(lambda o, w: metrics.snr_per_class(o, labels, mix, sample_weights=w))(x_bad, keep)
    _assert_stats_equal(traced, want)


def test_snr_integer_sample_weights_are_repeated_samples():
    rng = np.random.default_rng(9)
    mix = _stand_in_mix(rng, n=8, dims=(2, 3))
    labels = rng.integers(0, 2, size=120)
    x = _class_samples(rng, mix, labels)
    copies = rng.integers(0, 4, size=120)
    want = metrics.snr_per_class(np.repeat(x, copies, axis=0), np.repeat(labels, copies), mix)
    got = metrics.snr_per_class(x, labels, mix, sample_weights=copies.astype(float))
    _assert_stats_equal(got, want, rtol=1e-10)


def test_snr_skip_absent_averages_over_the_classes_present():
    """With a class absent, skip_absent gives the SNR of the mixture of the present classes."""
    rng = np.random.default_rng(10)
    mix = _stand_in_mix(rng, n=10, dims=(2, 3, 2), weights=(0.5, 0.3, 0.2))
    labels = rng.integers(0, 3, size=200)
    x = _class_samples(rng, mix, labels, noise=0.5)
    keep = labels != 1
    # Reference: the two-class mixture of classes 0 and 2, labels renumbered, pi renormalised.
    sub = types.SimpleNamespace(bases=(mix.bases[0], mix.bases[2]), K=2, n=10, dims=(2, 2),
                                weights=np.array([0.5, 0.2]) / 0.7)
    want = metrics.snr_per_class(x[keep], np.where(labels[keep] == 2, 1, 0), sub)
    for args in ((x[keep], labels[keep], {}), (x, labels, {"sample_weights": keep})):
        got = metrics.snr_per_class(args[0], args[1], mix, skip_absent=True, **args[2])
        for field in ("snr", "snr_stderr", "pooled", "pooled_stderr"):
            np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-12, err_msg=field)
        for field in ("num", "den", "ratio", "num_stderr", "den_stderr", "ratio_stderr"):
            values = np.asarray(getattr(got, field))
            assert np.isnan(values[1]), field
            np.testing.assert_allclose(values[[0, 2]], getattr(want, field), rtol=1e-12, err_msg=field)
        np.testing.assert_array_equal(got.count, [np.sum(labels == 0), 0, np.sum(labels == 2)])
    # Every class present: skip_absent changes nothing.
    _assert_stats_equal(metrics.snr_per_class(x, labels, mix, skip_absent=True), metrics.snr_per_class(x, labels, mix))
    # Without skip_absent an absent class is an error (concrete) or a NaN SNR (traced).
    with pytest.raises(ValueError, match="^labels: must contain at least 1 sample"):
        metrics.snr(x, labels, mix, sample_weights=keep)
    assert np.isnan(jax.jit(lambda w: metrics.snr(x, labels, mix, sample_weights=w))(keep))


def test_snr_traced_mask_sizes_match_eager_subsets():
    """One compiled program for every prefix size m of a padded batch (the sweeps' use)."""
    rng = np.random.default_rng(11)
    mix = _stand_in_mix(rng, n=8, dims=(2, 2, 3))
    labels = rng.integers(0, 3, size=64)
    x = _class_samples(rng, mix, labels)
    f = jax.jit(jax.vmap(lambda m: metrics.snr(x, labels, mix, sample_weights=(jnp.arange(64) < m),
                                               skip_absent=True)))
    sizes = np.array([5, 17, 64])
    assert len(np.unique(labels[:5])) < 3 <= len(np.unique(labels[:17]))
    got = f(jnp.asarray(sizes))
    for m, g in zip(sizes, got):
        present = np.unique(labels[:m])  # m = 5 misses a class (checked below)
        ref = _snr_reference(x[:m], np.searchsorted(present, labels[:m]), [mix.bases[k] for k in present],
                             mix.weights[present])[3]
        np.testing.assert_allclose(g, ref, rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    ({"sample_weights": np.ones(4)}, r"sample_weights: must have shape \(5,\)"),
    ({"sample_weights": np.array([1.0, -1.0, 1.0, 1.0, 1.0])}, "sample_weights: must be finite and >= 0"),
    ({"sample_weights": np.array([1.0, np.nan, 1.0, 1.0, 1.0])}, "sample_weights: must be finite and >= 0"),
    ({"sample_weights": np.zeros(5)}, "sample_weights: must have a positive entry"),
    ({"sample_weights": np.array([1.0, 0.0, 1.0, 0.0, 0.0])}, "labels: must contain at least 1 sample"),
    ({"skip_absent": 1}, "skip_absent: must be a bool"),
])
def test_snr_rejects_bad_sample_weights(kwargs, match):
    rng = np.random.default_rng(12)
    mix = _stand_in_mix(rng, n=6, dims=(2, 2))
    with pytest.raises(ValueError, match=match):
        metrics.snr(rng.normal(size=(5, 6)), np.array([0, 1, 0, 1, 1]), mix, **kwargs)


# ----------------------------------------------------------------------------------------------
# Feature SNR with fitted subspaces.
# ----------------------------------------------------------------------------------------------


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _exact_features(rng, U, per_class, theta, symmetric):
    """Unit-norm class-k rows cos(theta) U_k a + sin(theta) Ut_k e with unit a, e.

    With `symmetric`, every (a, e) comes with (+-a, +-e): the global mean is 0 and the class Gram
    matrix has span(U_k) as an exact eigenspace, so the recipe must recover U_k exactly and give
    SNR = cot(theta)^2.
    """
    K = len(U)
    rows, labels = [], []
    for k in range(K):
        others = np.concatenate([U[j] for j in range(K) if j != k], axis=1)
        a = _unit(rng.normal(size=(per_class, U[k].shape[1])))
        e = _unit(rng.normal(size=(per_class, others.shape[1])))
        signs = [(1, 1), (1, -1), (-1, 1), (-1, -1)] if symmetric else [(1, 1)]
        for sa, se in signs:
            rows.append(np.cos(theta) * sa * a @ U[k].T + np.sin(theta) * se * e @ others.T)
            labels.append(np.full(per_class, k))
    return np.concatenate(rows), np.concatenate(labels)


def test_feature_snr_recovers_true_subspaces_and_snr():
    rng = np.random.default_rng(8)
    K, d, n, theta = 3, 3, 12, np.arctan(0.5)  # cot^2 = 4
    q = np.linalg.qr(rng.normal(size=(n, K * d)))[0]
    U = [q[:, k * d:(k + 1) * d] for k in range(K)]
    mix = types.SimpleNamespace(bases=tuple(U), K=K, n=n, dims=(d,) * K, weights=np.full(K, 1 / K))
    F, y = _exact_features(rng, U, 20, theta, symmetric=True)

    fit = metrics.class_subspaces(F, y, num_classes=K, rank=d)
    np.testing.assert_allclose(fit.mean, 0.0, atol=1e-14)
    for k in range(K):
        assert _projector_distance(np.asarray(fit.bases[k]), U[k]) < 1e-10
    np.testing.assert_allclose(metrics.snr(F, y, mix), 4.0, rtol=1e-10)
    np.testing.assert_allclose(metrics.feature_snr(F, y, num_classes=K, rank=d), 4.0, rtol=1e-10)
    # Fit on the symmetric split, evaluate on fresh (non-symmetric) rows of the same geometry.
    F_eval, y_eval = _exact_features(rng, U, 50, theta, symmetric=False)
    stats = metrics.feature_snr_per_class(F_eval, y_eval, num_classes=K, rank=d, fit_features=F, fit_labels=y)
    np.testing.assert_allclose(stats.ratio, 4.0, rtol=1e-10)
    np.testing.assert_allclose(stats.pooled, metrics.snr(F_eval, y_eval, mix), rtol=1e-10)


def _generic_features(rng, K=3, m=10, d=5, N=240):
    mix = _stand_in_mix(rng, n=m, dims=(d,) * K)
    y = rng.integers(0, K, size=N)
    spectrum = np.array([3.0, 2.5, 2.0, 0.3, 0.2])
    F = np.stack([mix.bases[k] @ (spectrum * rng.normal(size=d)) for k in y])
    return F + 0.2 * rng.normal(size=F.shape) + 0.5, y  # offset: the global mean matters


@pytest.mark.parametrize("separate_fit_split", [False, True])
def test_feature_snr_matches_numpy_recipe(separate_fit_split):
    K, rank = 3, 3
    F, y = _generic_features(np.random.default_rng(9))
    F_fit, y_fit = _generic_features(np.random.default_rng(10)) if separate_fit_split else (F, y)
    split = {"fit_features": F_fit, "fit_labels": y_fit} if separate_fit_split else {}
    (num, den, _, snr_ref, pooled_ref), bases, _ = _feature_snr_reference(F, y, K, rank, F_fit, y_fit)

    stats = metrics.feature_snr_per_class(F, y, num_classes=K, rank=rank, **split)
    np.testing.assert_allclose(stats.num, num, rtol=1e-9)
    np.testing.assert_allclose(stats.den, den, rtol=1e-9)
    np.testing.assert_allclose(stats.snr, snr_ref, rtol=1e-9)
    np.testing.assert_allclose(stats.pooled, pooled_ref, rtol=1e-9)
    scalar = metrics.feature_snr(F, y, num_classes=K, rank=rank, **split)
    np.testing.assert_allclose(scalar, snr_ref, rtol=1e-9)
    fit = metrics.class_subspaces(F_fit, y_fit, num_classes=K, rank=rank)
    for k in range(K):
        assert _projector_distance(np.asarray(fit.bases[k]), bases[k]) < 1e-9


def test_feature_snr_vmap_matches_eager():
    rng = np.random.default_rng(11)
    F, y = _generic_features(rng)
    stack = np.stack([F, F + 0.3 * rng.normal(size=F.shape), F * 2.0 - 1.0])
    vmapped = jax.vmap(lambda f: metrics.feature_snr_per_class(f, y, num_classes=3, rank=2))(stack)
    for i, f in enumerate(stack):
        eager = metrics.feature_snr_per_class(f, y, num_classes=3, rank=2)
        np.testing.assert_allclose(vmapped.ratio[i], eager.ratio, rtol=1e-9)
        np.testing.assert_allclose(vmapped.ratio_stderr[i], eager.ratio_stderr, rtol=1e-9)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("rank", {"rank": 0}),
        ("rank", {"rank": 11}),
        ("num_classes", {"num_classes": 0}),
        ("labels", {"rank": 5, "labels": np.r_[np.zeros(238, int), 1, 2]}),  # classes 1, 2 < rank
        ("fit_labels", {"fit_features": "same"}),
        ("fit_features", {"fit_features": "narrow", "fit_labels": "same"}),
        ("features", {"features": "nan"}),
    ],
)
def test_feature_snr_rejects_bad_input(name, kwargs):
    F, y = _generic_features(np.random.default_rng(12))
    args = {"features": F, "labels": y, "num_classes": 3, "rank": 3}
    args.update(kwargs)
    replace = {"same": F, "narrow": F[:, :5], "nan": np.where(F > 2.5, np.nan, F)}
    if isinstance(args.get("features"), str):
        args["features"] = replace[args["features"]]
    if isinstance(args.get("fit_features"), str):
        args["fit_features"] = replace[args["fit_features"]]
    if isinstance(args.get("fit_labels"), str):
        args["fit_labels"] = y
    with pytest.raises(ValueError, match=f"^{name}: "):
        metrics.feature_snr(**args)


# ----------------------------------------------------------------------------------------------
# Classifiers.
# ----------------------------------------------------------------------------------------------


def _probe_objective_scipy(X, y, K, l2):
    """Minimise the probe objective with scipy (float64, analytic gradient)."""
    mu, sd = X.mean(0), X.std(0)
    Z = (X - mu) / sd
    N, m = Z.shape
    Y = np.eye(K)[y]

    def fun(p):
        W, b = p[: m * K].reshape(m, K), p[m * K:]
        L = Z @ W + b
        lse = scipy.special.logsumexp(L, axis=1)
        G = (np.exp(L - lse[:, None]) - Y) / N
        value = np.mean(lse - np.sum(Y * L, 1)) + 0.5 * l2 * np.sum(W**2)
        return value, np.concatenate([(Z.T @ G + l2 * W).ravel(), G.sum(0)])

    res = scipy.optimize.minimize(
        fun, np.zeros(m * K + K), jac=True, method="L-BFGS-B",
        options=dict(maxiter=20000, gtol=1e-13, ftol=1e-16, maxcor=30),
    )
    return res.fun, res.x[: m * K].reshape(m, K), res.x[m * K:], (mu, sd)


def _blobs(rng, N, m=6, K=3, separation=1.5):
    means = rng.normal(size=(K, m)) * separation
    y = rng.integers(0, K, size=N)
    X = means[y] + rng.normal(size=(N, m)) * rng.uniform(0.5, 3.0, size=m)  # unequal feature scales
    return X, y


def test_linear_probe_matches_scipy():
    rng = np.random.default_rng(13)
    X, y = _blobs(rng, 400)
    X_test, y_test = X + 0.5 * rng.normal(size=X.shape), y
    loss_ref, W_ref, b_ref, (mu, sd) = _probe_objective_scipy(X, y, 3, 1e-2)
    probe = probes.linear_probe(X, y, X_test, y_test, num_classes=3, l2=1e-2)
    np.testing.assert_allclose(probe.loss, loss_ref, rtol=1e-6)
    assert probe.loss <= loss_ref * (1 + 1e-9)
    assert probe.grad_norm < 1e-6 and 0 < probe.iterations < 300  # stopped at gtol, not the cap
    np.testing.assert_allclose(probe.weights, W_ref, atol=1e-4)
    # The bias is identified up to a common shift (softmax invariance).
    np.testing.assert_allclose(probe.bias - probe.bias.mean(), b_ref - b_ref.mean(), atol=1e-4)
    np.testing.assert_allclose(probe.mean, mu, rtol=1e-12)
    np.testing.assert_allclose(probe.scale, sd, rtol=1e-12)
    logits_ref = ((X_test - mu) / sd) @ W_ref + b_ref
    np.testing.assert_allclose(probe.accuracy, np.mean(logits_ref.argmax(1) == y_test), atol=1 / 400 + 1e-12)


# The probe tests share shapes (400 x 6 features, 3 classes; l2 is traced) so one compile serves.


def test_linear_probe_separates_a_separable_problem():
    rng = np.random.default_rng(14)
    centres = 8.0 * np.eye(3, 6)
    y, y_test = rng.integers(0, 3, size=400), rng.integers(0, 3, size=400)
    X = centres[y] + rng.normal(size=(400, 6))
    X_test = centres[y_test] + rng.normal(size=(400, 6))
    probe = probes.linear_probe(X, y, X_test, y_test, num_classes=3, l2=1e-3)
    assert probe.accuracy == 1.0 and probe.train_accuracy == 1.0
    assert np.isfinite(probe.loss) and probe.grad_norm < 1e-6


@pytest.mark.slow
def test_linear_probe_jit_vmap_over_noise_levels_matches_eager():
    rng = np.random.default_rng(15)
    X, y = _blobs(rng, 400)
    X_test, y_test = X + 0.5 * rng.normal(size=(400, 6)), y
    sigmas = (0.0, 1.0, 3.0)
    train = np.stack([X + s * rng.normal(size=X.shape) for s in sigmas])
    test = np.stack([X_test + s * rng.normal(size=X_test.shape) for s in sigmas])
    fit = jax.jit(jax.vmap(lambda a, b: probes.linear_probe(a, y, b, y_test, num_classes=3)))
    batched = fit(train, test)
    for i in range(len(sigmas)):
        eager = probes.linear_probe(train[i], y, test[i], y_test, num_classes=3)
        np.testing.assert_allclose(batched.loss[i], eager.loss, rtol=1e-9)
        np.testing.assert_allclose(batched.weights[i], eager.weights, atol=1e-5)
        np.testing.assert_allclose(batched.accuracy[i], eager.accuracy, atol=1 / 400 + 1e-12)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("steps", {"steps": 0}),
        ("memory_size", {"memory_size": 0}),
        ("l2", {"l2": -1.0}),
        ("num_classes", {"num_classes": 1.5}),
        ("test_features", {"test_features": np.zeros((5, 3))}),
        ("train_labels", {"train_labels": np.full(20, 3)}),
        ("test_labels", {"test_labels": np.zeros(4, int)}),
        ("train_features", {"train_features": np.full((20, 6), np.inf)}),
    ],
)
def test_linear_probe_rejects_bad_input(name, kwargs):
    rng = np.random.default_rng(16)
    args = dict(
        train_features=rng.normal(size=(20, 6)), train_labels=rng.integers(0, 3, 20),
        test_features=rng.normal(size=(5, 6)), test_labels=rng.integers(0, 3, 5), num_classes=3,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{name}: "):
        probes.linear_probe(**args)


def test_projection_classifier_matches_numpy_reference():
    rng = np.random.default_rng(17)
    F, y = _generic_features(rng)
    F_test, y_test = _generic_features(np.random.default_rng(18))
    result = probes.projection_classifier(F, y, F_test, y_test, num_classes=3, rank=3)
    _, bases, _ = _feature_snr_reference(F, y, 3, 3)
    unit = _unit(F_test) - _unit(F).mean(0)
    energy = np.stack([np.sum((unit @ (V @ V.T)) ** 2, axis=1) for V in bases], axis=1)
    np.testing.assert_allclose(result.accuracy, np.mean(energy.argmax(1) == y_test), rtol=1e-12)
    assert result.train_accuracy > 0.8  # well-separated random subspaces
    too_few = np.r_[np.zeros(len(y) - 2, int), 1, 2]  # classes 1 and 2 have fewer than rank rows
    with pytest.raises(ValueError, match="^labels: "):
        probes.projection_classifier(F, too_few, F_test, y_test, num_classes=3, rank=3)


def test_bayes_accuracy():
    rng = np.random.default_rng(19)
    logits = rng.normal(size=(50, 4))
    log_post = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=50)
    expected = np.mean(log_post.argmax(1) == labels)
    np.testing.assert_allclose(metrics.bayes_accuracy(log_post, labels), expected, rtol=1e-12)
    log_post[:, 0] = -np.inf  # zero posterior is allowed
    expected = np.mean(log_post.argmax(1) == labels)
    np.testing.assert_allclose(metrics.bayes_accuracy(log_post, labels), expected, rtol=1e-12)
    batched = jax.vmap(lambda lp: metrics.bayes_accuracy(lp, labels))(np.stack([log_post, -log_post]))
    np.testing.assert_allclose(batched[1], np.mean((-log_post).argmax(1) == labels))
    for bad in (np.nan, np.inf):
        corrupted = log_post.copy()
        corrupted[3, 1] = bad
        with pytest.raises(ValueError, match="^log_post: "):
            metrics.bayes_accuracy(corrupted, labels)
    with pytest.raises(ValueError, match="^labels: "):
        metrics.bayes_accuracy(log_post, np.full(50, 4))
    with pytest.raises(ValueError, match="^labels: "):
        metrics.bayes_accuracy(log_post, labels[:10])


# ----------------------------------------------------------------------------------------------
# Unimodality.
# ----------------------------------------------------------------------------------------------

X9 = np.linspace(0.0, 2.0, 9)


def test_unimodality_clean_verdicts():
    peak = metrics.unimodality(X9, 1.0 + np.exp(-((X9 - 0.75) ** 2) / 0.2))
    assert peak.verdict == "interior peak" and peak.peak_index == 3 and peak.peak_x == X9[3]
    np.testing.assert_allclose(peak.gain_left, peak.peak_value - (1.0 + np.exp(-0.75**2 / 0.2)))
    np.testing.assert_allclose(peak.rel_gain_right, peak.gain_right / peak.peak_value)
    assert peak.gain_left_stderr is None
    assert metrics.unimodality(X9, 1.0 / (1.0 + X9)).verdict == "monotone decreasing"
    assert metrics.unimodality(X9, X9**2).verdict == "monotone increasing"
    assert metrics.unimodality(X9, (X9 - 1.0) ** 2).verdict == "interior dip"
    assert metrics.unimodality(X9, np.full(9, 2.0)).verdict == "flat"
    # Negative values (e.g. dB) work: relative gains use max(|y_peak|, |y_end|).
    assert metrics.unimodality(X9, -3.0 + np.exp(-((X9 - 1.0) ** 2))).verdict == "interior peak"


def test_unimodality_numerical_noise_is_not_a_peak():
    rng = np.random.default_rng(20)
    y = 1.0 / (1.0 + X9)
    bumped = y.copy()
    bumped[1] = y[0] * (1 + 1e-9)  # interior maximum by rounding-level amount
    assert metrics.unimodality(X9, bumped).verdict == "monotone decreasing"
    noisy_flat = 5.0 + 1e-12 * rng.normal(size=9)
    assert metrics.unimodality(X9, noisy_flat).verdict == "flat"


def test_unimodality_uses_standard_errors():
    y = 10.0 / (1.0 + X9)
    y[1] = y[0] + 0.5  # 5% bump above the left end
    err = np.full(9, 0.2)
    loose = metrics.unimodality(X9, y, err)  # 0.5 < 3 * hypot(0.2, 0.2) = 0.85
    assert loose.verdict == "monotone decreasing" and loose.peak_index == 1
    np.testing.assert_allclose(loose.gain_left_stderr, np.hypot(0.2, 0.2))
    assert metrics.unimodality(X9, y, err / 10).verdict == "interior peak"
    assert metrics.unimodality(X9, y, err, z=1.0).verdict == "interior peak"
    assert metrics.unimodality(X9, 1.0 + 0.01 * np.sin(7 * X9), np.full(9, 0.01)).verdict == "flat"
    at_left = metrics.unimodality(X9, 10.0 / (1.0 + X9), err)
    assert at_left.gain_left == 0.0 and at_left.gain_left_stderr == 0.0


def test_unimodality_false_and_true_peak_rates_on_noisy_curves():
    rng = np.random.default_rng(21)
    sd, reps = 0.3, 500
    decreasing = 10.0 - X9**2  # flat start: noise puts the argmax inside about half the time
    peaked = 5.0 + 5.0 * np.exp(-((X9 - 0.75) ** 2) / 0.1)
    err = np.full(9, sd)
    on_decreasing = [metrics.unimodality(X9, decreasing + sd * rng.normal(size=9), err) for _ in range(reps)]
    on_peaked = [metrics.unimodality(X9, peaked + sd * rng.normal(size=9), err) for _ in range(reps)]
    assert sum(r.peak_index > 0 for r in on_decreasing) > 0.3 * reps  # the trap is real
    assert sum(r.verdict == "interior peak" for r in on_decreasing) <= 0.01 * reps
    assert all(r.verdict == "interior peak" for r in on_peaked)


@pytest.mark.parametrize(
    "name, args, kwargs",
    [
        ("x", (X9[::-1], X9), {}),
        ("x", (X9.reshape(3, 3), X9.reshape(3, 3)), {}),
        ("y", (X9, X9[:5]), {}),
        ("y", (X9[:1], X9[:1]), {}),
        ("y", (X9, np.where(X9 > 1, np.nan, X9)), {}),
        ("y_err", (X9, X9, -np.ones(9)), {}),
        ("y_err", (X9, X9, np.ones(4)), {}),
        ("z", (X9, X9), {"z": 0.0}),
        ("min_rel_gain", (X9, X9), {"min_rel_gain": -0.1}),
    ],
)
def test_unimodality_rejects_bad_input(name, args, kwargs):
    with pytest.raises(ValueError, match=f"^{name}: "):
        metrics.unimodality(*args, **kwargs)
