"""Tests of molrg.fitting: MoLRG fitting by moment estimators, its report and bootstrap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import molrg
from molrg.fitting import bootstrap_fits, fit_molrg, fit_report
from molrg.subspaces import principal_angles
from tests.oracle import class_covariances


def _exact_moment_data(mix, counts, seed=0):
    """Points whose class means and centred class covariances equal the model's exactly."""
    rng = np.random.default_rng(seed)
    covs = class_covariances(mix)
    means = np.zeros((mix.K, mix.n)) if mix.means is None else np.asarray(mix.means)
    xs, ys = [], []
    for k, (C, m) in enumerate(zip(covs, counts)):
        z = rng.standard_normal((m, mix.n))
        z -= z.mean(axis=0)
        # whiten exactly: z^T z / m = I
        evals, evecs = np.linalg.eigh(z.T @ z / m)
        z = z @ evecs @ np.diag(evals**-0.5) @ evecs.T
        w, V = np.linalg.eigh(C)
        xs.append(means[k] + z @ (V * np.sqrt(np.clip(w, 0, None))) @ V.T)
        ys.append(np.full(m, k))
    return np.concatenate(xs), np.concatenate(ys)


def test_exact_on_population_moments_orthogonal():
    # Given the model's exact class moments the estimators are exact (module docstring).
    means = np.asarray(molrg.separated_means(jax.random.key(3), K=3, n=20, radius=2.0))
    mix = molrg.random_molrg(jax.random.key(0), n=20, K=3, d=(3, 2, 4), delta=0.3, noise=0.1,
                             weights=np.array([0.5, 0.3, 0.2]), means=means)
    x, y = _exact_moment_data(mix, (500, 300, 200))
    for factor in (1.0, 3.0):  # data rescaled by 3: scale 3x, model-unit delta and eta unchanged
        fit = fit_molrg(factor * x, y, rank=[3, 2, 4])
        assert fit.scale == pytest.approx(factor, rel=1e-9)
        assert fit.delta == pytest.approx(0.3, rel=1e-8)
        assert fit.noise == pytest.approx(0.1, rel=1e-8)
        np.testing.assert_allclose(fit.weights, [0.5, 0.3, 0.2], rtol=1e-12)
        np.testing.assert_allclose(fit.means, factor * np.asarray(mix.means), atol=1e-9)
        for Uf, U in zip(fit.mix.bases, mix.bases):
            assert np.max(principal_angles(np.asarray(Uf), np.asarray(U))) < 1e-6
        np.testing.assert_allclose(fit.covariances(), factor**2 * np.stack(class_covariances(mix)),
                                   atol=1e-9)


def test_recovers_sampled_molrg_within_sample_tolerance():
    # Non-orthogonal (principal angles 40 deg), unequal weights, non-zero means.
    mix = molrg.random_molrg(jax.random.key(1), n=24, K=3, d=3, delta=0.25, noise=0.1, angle=40.0,
                             weights=np.array([0.5, 0.3, 0.2]),
                             means=0.5 * np.asarray(jax.random.normal(jax.random.key(2), (3, 24))))
    N = 30_000
    x, y = mix.sample(jax.random.key(3), N)
    fit = fit_molrg(x, y, rank=3)
    counts = np.bincount(np.asarray(y), minlength=3)
    pi = np.asarray(mix.weights)
    # weights: binomial standard error
    assert np.all(np.abs(fit.weights - pi) <= 4 * np.sqrt(pi * (1 - pi) / N))
    # means: E||mu_hat - mu||^2 = tr Sigma_k / N_k
    covs = class_covariances(mix)
    for k in range(3):
        err = np.linalg.norm(fit.means[k] - np.asarray(mix.means[k]))
        assert err <= 3 * np.sqrt(np.trace(covs[k]) / counts[k])
    # subspaces: perturbation bound sin(theta) ~ sqrt(n * off-energy / N_k) / eigen-gap, x5
    gap = 1 - 0.25**2 - 0.1**2
    for k, (Uf, U) in enumerate(zip(fit.mix.bases, mix.bases)):
        # non-orthogonal: the top eigenvectors of Sigma_k tilt toward the others by O(delta^2)
        tol = 5 * np.sqrt(24 * (0.25**2 + 0.1**2) / counts[k]) / gap + 0.25**2
        assert np.max(np.sin(principal_angles(np.asarray(Uf), np.asarray(U)))) <= tol
    # variance estimates: relative standard error ~ sqrt(2 / (N_min m)) with m >= 1 dims; the
    # non-orthogonal tilt biases them by O(delta^2) (the estimators are exact for orthogonal bases)
    tol = 5 * np.sqrt(2 / counts.min()) + 0.25**2
    assert abs(fit.scale - 1.0) <= tol
    assert abs(fit.delta - 0.25) <= tol * 0.25 + 0.25**2
    assert abs(fit.noise - 0.1) <= tol * 0.1
    rep = fit_report(fit, np.asarray(mix.sample(jax.random.key(4), 2000)[0]))
    assert not rep.orthogonal
    # the fitted subspaces meet at about the true 40 degrees
    assert abs(rep.principal_angles_deg[0, 1] - 40.0) < 3.0
    assert not rep.zero_means
    assert rep.equal_ranks


def test_energy_rule_picks_smallest_rank():
    mix = molrg.random_molrg(jax.random.key(5), n=20, K=2, d=(4, 2), delta=0.1)
    x, y = _exact_moment_data(mix, (300, 300))
    # class 0: eigenvalues 1 (x4), 0.01 (x2); energy 4/4.02 = 0.995 in 4 dims, 3/4.02 in 3
    fit = fit_molrg(x, y, energy=0.9)
    assert fit.ranks == (4, 2)
    np.testing.assert_allclose(fit.explained_energy, [4 / 4.02, 2 / 2.04], rtol=1e-9)
    fit = fit_molrg(x, y, energy=0.7)
    assert fit.ranks == (3, 2)


def test_denoise_and_loglik_match_dense_oracle():
    mix = molrg.random_molrg(jax.random.key(6), n=10, K=3, d=2, delta=0.3, noise=0.2, angle=60.0,
                             means=np.asarray(jax.random.normal(jax.random.key(7), (3, 10))))
    x, y = mix.sample(jax.random.key(8), 3000)
    x = 2.5 * np.asarray(x)  # data units differ from model units
    fit = fit_molrg(x, y, rank=2)
    covs, means, w = fit.covariances(), fit.means, fit.weights
    xt = x[:7] + 0.7 * np.asarray(jax.random.normal(jax.random.key(9), (7, 10)))
    s = 0.8
    xs = s * xt
    # dense Gaussian-mixture posterior mean for x_t = s (x_0 + sigma eps)
    logs = np.stack([np.log(w[k]) + multivariate_normal(means[k], covs[k] + 0.49 * np.eye(10)).logpdf(xt)
                     for k in range(3)], axis=1)
    post = np.exp(logs - logs.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    cond = np.stack([means[k] + (covs[k] @ np.linalg.solve(covs[k] + 0.49 * np.eye(10), (xt - means[k]).T)).T
                     for k in range(3)], axis=1)
    expect = np.einsum("ik,ikn->in", post, cond)
    np.testing.assert_allclose(np.asarray(fit.denoise(xs, 0.7, s)), expect, atol=1e-8)
    np.testing.assert_allclose(np.exp(np.asarray(fit.log_posterior(xs, 0.7, s))), post, atol=1e-8)
    # held-out log-likelihood against scipy
    xh = np.asarray(mix.sample(jax.random.key(10), 50)[0]) * 2.5
    rep = fit_report(fit, xh, ridge=0.0)
    ll = np.stack([np.log(w[k]) + multivariate_normal(means[k], covs[k]).logpdf(xh) for k in range(3)])
    assert rep.loglik_molrg == pytest.approx(float(np.mean(np.logaddexp.reduce(ll, axis=0))), rel=1e-10)
    ll = np.stack([np.log(w[k]) + multivariate_normal(means[k], fit.class_covariances[k]).logpdf(xh)
                   for k in range(3)])
    assert rep.loglik_gmm == pytest.approx(float(np.mean(np.logaddexp.reduce(ll, axis=0))), rel=1e-10)


def test_bootstrap_keeps_ranks_and_varies():
    mix = molrg.random_molrg(jax.random.key(11), n=12, K=2, d=2, delta=0.2)
    x, y = mix.sample(jax.random.key(12), 400)
    fit = fit_molrg(x, y, energy=0.8)
    reps = bootstrap_fits(x, y, key=jax.random.key(13), num=4, fit=fit)
    assert all(r.ranks == fit.ranks for r in reps)
    assert np.all(np.asarray([r.num_samples for r in reps]) == fit.num_samples)
    assert len({round(r.delta, 12) for r in reps}) == 4  # resamples differ


def test_bad_input():
    x = np.asarray(jax.random.normal(jax.random.key(14), (40, 6)))
    y = np.repeat(np.arange(2), 20)
    with pytest.raises(ValueError, match="num_classes: a mixture needs at least 2 classes"):
        fit_molrg(x, np.zeros(40, int))
    with pytest.raises(ValueError, match="rank: a rank-5 subspace .*too few samples"):
        fit_molrg(x[:8], np.repeat(np.arange(2), 4), rank=5)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="x: must contain only finite values"):
        fit_molrg(bad, y)
    with pytest.raises(ValueError, match=r"labels: must lie in \[0, num_classes\)"):
        fit_molrg(x, y + 1, num_classes=2)
    with pytest.raises(ValueError, match=r"labels: must lie"):
        fit_molrg(x, y - 1)
    with pytest.raises(ValueError, match="labels: must be integers"):
        fit_molrg(x, y.astype(float))
    with pytest.raises(ValueError, match="labels: must have shape"):
        fit_molrg(x, y[:-1])
    with pytest.raises(ValueError, match="x: must be a non-empty 2-D"):
        fit_molrg(x[0], y)
    with pytest.raises(ValueError, match=r"energy: must lie in \(0, 1\]"):
        fit_molrg(x, y, energy=1.5)
    with pytest.raises(ValueError, match="rank: must lie in"):
        fit_molrg(x, y, rank=7)
    with pytest.raises(ValueError, match="labels: every class needs at least 2 points"):
        fit_molrg(x, np.r_[np.zeros(39, int), 1])
    fit = fit_molrg(x, y, rank=2)
    with pytest.raises(ValueError, match="x_test: must be a non-empty"):
        fit_report(fit, x[:, :5])
    with pytest.raises(ValueError, match="num: must be an integer >= 1"):
        bootstrap_fits(x, y, key=jax.random.key(0), num=0)


def test_fitted_mix_dtype_float32():
    x = np.asarray(jax.random.normal(jax.random.key(15), (60, 6)))
    fit = fit_molrg(x, np.repeat(np.arange(3), 20), rank=2, dtype=jnp.float32)
    assert fit.mix.dtype == jnp.float32
