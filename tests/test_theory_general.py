"""Tests of molrg.theory.snr_curve / peak: the exact SNR of any mixture (float64).

References: the deterministic quadrature where P1's Assumption 1 holds, and elsewhere an
independent brute-force loop that draws from dense class covariances, denoises with dense
n x n algebra (tests/oracle.py's covariances, NumPy only) and scores P1 Definition 1 by
hand; agreement within the combined standard errors (|z| < 4).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from molrg import theory  # noqa: E402
from molrg.mixture import random_molrg, separated_means  # noqa: E402
from tests import oracle  # noqa: E402

SIGMAS = np.array([0.05, 0.2, 0.5, 2.0])
N_MC = 2**14


def _key(seed):
    return jax.random.key(seed)


# --------------------------------------------------------------------------------------
# The independent reference: draw, denoise and score with dense matrices.


def brute_force_snr(mix, sigma, *, num, seed):
    """SNR (P1 Definition 1) of the dense optimal denoiser on fresh draws, and its stderr."""
    rng = np.random.default_rng(seed)
    n, K = mix.n, mix.K
    covs = oracle.class_covariances(mix)  # Sigma_k with delta and eta^2 I, from the definition
    mus = oracle.class_means(mix)
    w = np.asarray(mix.weights, np.float64)
    labels = rng.choice(K, size=num, p=w)
    x0 = np.empty((num, n))
    for k in range(K):
        lam, vec = np.linalg.eigh(covs[k])
        root = vec * np.sqrt(np.clip(lam, 0.0, None))[None, :]
        idx = labels == k
        x0[idx] = mus[k] + rng.standard_normal((idx.sum(), n)) @ root.T
    xt = x0 + sigma * rng.standard_normal((num, n))
    logp, cond = [], []
    for k in range(K):
        C = covs[k] + sigma**2 * np.eye(n)
        diff = xt - mus[k]
        sol = np.linalg.solve(C, diff.T).T  # C^-1 (x - mu_k)
        logp.append(math.log(w[k]) - 0.5 * (np.linalg.slogdet(C)[1] + np.sum(diff * sol, axis=1)))
        cond.append(mus[k] + sol @ covs[k])  # mu_k + Sigma_k C^-1 (x - mu_k)
    logp = np.stack(logp, axis=1)
    post = np.exp(logp - logp.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    xh = np.einsum("bk,kbn->bn", post, np.stack(cond))
    ratios, ses = [], []
    for k in range(K):
        U = np.asarray(mix.bases[k], np.float64)
        out = xh[labels == k]
        coef = out @ U
        a = np.sum(coef**2, axis=1)
        b = np.sum((out - coef @ U.T) ** 2, axis=1)
        r = a.mean() / b.mean()
        ratios.append(r)
        ses.append(np.std(a - r * b, ddof=1) / (math.sqrt(a.size) * b.mean()))
    return float(np.mean(ratios)), float(math.sqrt(np.sum(np.square(ses))) / K)


def _assert_agree(curve, mix, *, num, seed):
    for j, s in enumerate(curve.sigma):
        ref, ref_se = brute_force_snr(mix, float(s), num=num, seed=seed + j)
        z = (curve.snr[j] - ref) / math.hypot(curve.stderr[j], ref_se)
        assert abs(z) < 4, (s, curve.snr[j], curve.stderr[j], ref, ref_se)


# --------------------------------------------------------------------------------------
# The mixtures of the issue.


def overlapping():
    return random_molrg(_key(10), n=10, K=2, d=3, angle=30.0, delta=0.2)


def unequal_ranks():
    return random_molrg(_key(11), n=14, K=2, d=(10, 2), delta=0.2)


def unequal_weights():
    return random_molrg(_key(12), n=10, K=2, d=3, delta=0.2, weights=jnp.array([0.8, 0.2]))


def assumption_1_mixture(n=10, K=2, d=3, delta=0.2):
    # Same shapes as unequal_weights(): the Monte Carlo programs compiled for one serve the other.
    return random_molrg(_key(13), n=n, K=K, d=d, delta=delta)


# --------------------------------------------------------------------------------------
# Which method.


def test_assumption_1_detection():
    mix = assumption_1_mixture()
    assert theory.assumption_1(mix) == {"d": 3, "K": 2, "delta": pytest.approx(0.2)}
    outside = {
        "not mutually orthogonal": overlapping(),
        "dimensions differ": unequal_ranks(),
        "weights are not uniform": unequal_weights(),
        "means are not zero": mix.replace(means=separated_means(_key(14), n=10, K=2, radius=1.0)),
        "ambient noise": mix.replace(noise=0.1),
        "not < 1": mix.replace(delta=1.5),
    }
    for why, other in outside.items():
        assert theory.assumption_1(other) is None, why
        # "auto" takes Monte Carlo exactly where the quadrature is refused, and says why.
        with pytest.raises(ValueError, match=f"method: 'quadrature' needs .*{why}"):
            theory.snr_curve(other, SIGMAS, method="quadrature")
    assert theory.snr_curve(unequal_weights(), [0.3], key=_key(15), num_samples=N_MC).method == "monte_carlo"
    curve = theory.snr_curve(mix, SIGMAS)
    assert curve.method == "quadrature"
    np.testing.assert_array_equal(curve.stderr, 0.0)


# --------------------------------------------------------------------------------------
# Assumption 1: quadrature vs the exact-denoiser Monte Carlo path.


def test_monte_carlo_path_agrees_with_quadrature_under_assumption_1():
    mix = assumption_1_mixture()
    sigmas = np.array([0.03, 0.15, 0.6, 3.0])
    quad = theory.snr_curve(mix, sigmas)
    assert quad.method == "quadrature"
    np.testing.assert_allclose(quad.snr, theory.exact_snr_quadrature(jnp.asarray(sigmas), d=3, K=2, delta=0.2),
                               rtol=1e-12)
    for pooled, seed in ((False, 20), (True, 21)):
        mc = theory.snr_curve(mix, sigmas, key=_key(seed), num_samples=N_MC, method="monte_carlo", pooled=pooled)
        assert mc.method == "monte_carlo"
        assert np.all(mc.stderr > 0) and np.all(mc.stderr < 0.05 * mc.snr)
        z = (mc.snr - quad.snr) / mc.stderr
        assert np.max(np.abs(z)) < 4, (pooled, z)


# --------------------------------------------------------------------------------------
# Outside Assumption 1: Monte Carlo vs the independent dense brute-force loop.


@pytest.mark.parametrize("make", [overlapping, unequal_ranks, unequal_weights],
                         ids=["angle30", "ranks10-2", "weights0.8-0.2"])
def test_snr_curve_agrees_with_brute_force_sampling(make):
    mix = make()
    curve = theory.snr_curve(mix, SIGMAS, key=_key(30), num_samples=N_MC)
    assert curve.method == "monte_carlo"
    assert np.all(np.isfinite(curve.snr)) and np.all(curve.stderr > 0)
    _assert_agree(curve, mix, num=12000, seed=100)


def test_brute_force_reference_matches_quadrature():
    """The reference itself is right where the answer is known (Assumption 1)."""
    mix = assumption_1_mixture()
    exact = theory.snr_curve(mix, SIGMAS)
    for j, s in enumerate(SIGMAS):
        ref, se = brute_force_snr(mix, float(s), num=12000, seed=200 + j)
        assert abs(ref - exact.snr[j]) < 4 * se, (s, ref, se, exact.snr[j])


def _small_sigma_limit(mix):
    """lim_{sigma -> 0} SNR: xh -> x_0 (every class covariance is full rank on one common
    support here), so SNR -> mean_k E||P_k x_0||^2 / E||(I - P_k) x_0||^2 = mean_k
    tr(P_k Sigma_k) / tr((I - P_k) Sigma_k) (zero means), from the dense covariances."""
    covs = oracle.class_covariances(mix)
    ratios = []
    for U, C in zip(mix.bases, covs):
        U = np.asarray(U, np.float64)
        on = np.trace(U.T @ C @ U)
        ratios.append(on / (np.trace(C) - on))
    return float(np.mean(ratios))


@pytest.mark.parametrize("make, value", [(overlapping, (1 + 0.04 * 0.75) / (0.04 * 0.25)),
                                         (unequal_ranks, (10 / 0.08 + 2 / 0.4) / 2),
                                         (unequal_weights, 25.0)],
                         ids=["angle30", "ranks10-2", "weights0.8-0.2"])
def test_small_sigma_limit(make, value):
    """At sigma = 1e-3 the Monte Carlo curve sits on the closed-form limit (relative bias
    ~ sigma^2 / delta^2 = 2.5e-5, far below the standard error). The overlapping value,
    (1 + delta^2 cos^2 30) / (delta^2 sin^2 30) = 103, is four times the orthogonal one."""
    mix = make()
    assert _small_sigma_limit(mix) == pytest.approx(value, rel=1e-9)
    curve = theory.snr_curve(mix, [1e-3, 1e-3, 1e-3, 1e-3], key=_key(31), num_samples=N_MC)  # S = 4: one program
    assert abs(curve.snr[0] - value) < 4 * curve.stderr[0], (curve, value)


# --------------------------------------------------------------------------------------
# jit / vmap consistency and common random numbers.


def test_monte_carlo_snr_jit_vmap_and_common_random_numbers():
    mix = unequal_weights()
    sig = jnp.asarray(SIGMAS)
    eager = theory.monte_carlo_snr(mix, sig, key=_key(40), num_samples=N_MC)
    jitted = jax.jit(lambda s: theory.monte_carlo_snr(mix, s, key=_key(40), num_samples=N_MC))(sig)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # Same draws at every level: each level's numbers do not depend on the other levels of the grid.
    other = jnp.asarray([SIGMAS[2], 7.0, SIGMAS[0], 0.01])
    moved = theory.monte_carlo_snr(mix, other, key=_key(40), num_samples=N_MC)
    for i, j in ((0, 2), (2, 0)):
        np.testing.assert_allclose(moved[0][i], eager[0][j], rtol=1e-12)
        np.testing.assert_allclose(moved[1][i], eager[1][j], rtol=1e-12)
    # The SNR does not depend on the signal scale (the posterior sees x_t / s).
    scaled = theory.monte_carlo_snr(mix, sig, key=_key(40), num_samples=N_MC, scale=jnp.full(4, 0.3))
    np.testing.assert_allclose(scaled[0], eager[0], rtol=1e-9)
    # vmap over keys: each row is that key's curve.
    rows = jax.vmap(lambda k: theory.monte_carlo_snr(mix, sig, key=k, num_samples=N_MC)[0])(
        jax.random.split(_key(41), 2))
    for i in range(2):
        row = theory.monte_carlo_snr(mix, sig, key=jax.random.split(_key(41), 2)[i], num_samples=N_MC)[0]
        np.testing.assert_allclose(rows[i], row, rtol=1e-12)


# --------------------------------------------------------------------------------------
# The peak.


def test_peak_quadrature_path():
    mix = assumption_1_mixture()
    p = theory.peak(mix, lo=0.01, hi=10.0)
    ref_sigma, ref_snr = theory.exact_peak_sigma_quadrature(d=3, K=2, delta=0.2, lo=0.01, hi=10.0)
    assert p.method == "quadrature" and p.interior and p.stderr == 0.0
    assert p.sigma == pytest.approx(float(ref_sigma), rel=1e-12)
    assert p.snr == pytest.approx(float(ref_snr), rel=1e-12)
    # The quadrature peak is the maximum of the curve: it beats its neighbours.
    near = theory.snr_curve(mix, p.sigma * np.array([0.97, 1.0, 1.03]))
    assert near.snr[1] >= near.snr[0] and near.snr[1] >= near.snr[2]
    end = theory.peak(mix, lo=1.0, hi=10.0)  # the SNR falls on [1, 10]: the maximum is at lo
    assert not end.interior and end.sigma == pytest.approx(1.0)


def test_peak_monte_carlo_agrees_with_quadrature_under_assumption_1():
    mix = assumption_1_mixture()
    exact = theory.peak(mix, lo=0.01, hi=10.0)
    mc = theory.peak(mix, key=_key(52), lo=0.01, hi=10.0, num_samples=N_MC, num_grid=9, method="monte_carlo")
    assert mc.method == "monte_carlo" and mc.interior
    assert 0 < mc.stderr < 0.2 * mc.sigma
    assert abs(mc.sigma - exact.sigma) < 4 * mc.stderr, (mc, exact)
    end = theory.peak(mix, key=_key(53), lo=1.0, hi=10.0, num_samples=N_MC, num_grid=9, method="monte_carlo")
    assert not end.interior and end.sigma == pytest.approx(1.0) and math.isnan(end.stderr)


@pytest.mark.slow
def test_peak_monte_carlo_stderr_is_honest_on_unequal_weights():
    """Two independent estimates of sigma* agree within their combined standard errors, and the
    peak beats its neighbours on an independent brute-force curve."""
    mix = unequal_weights()
    a = theory.peak(mix, key=_key(60), lo=0.01, hi=10.0, num_samples=N_MC, num_grid=9)
    b = theory.peak(mix, key=_key(61), lo=0.01, hi=10.0, num_samples=N_MC, num_grid=9)
    assert a.interior and b.interior
    assert abs(a.sigma - b.sigma) < 4 * math.hypot(a.stderr, b.stderr), (a, b)
    at, _ = brute_force_snr(mix, a.sigma, num=40000, seed=300)
    for factor in (0.3, 3.0):
        away, _ = brute_force_snr(mix, a.sigma * factor, num=40000, seed=301)
        assert at > away


# --------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument, before any work.


def test_bad_input():
    mix = assumption_1_mixture()
    gen = overlapping()
    cases = [
        (lambda: theory.snr_curve("mix", SIGMAS), "mix:"),
        (lambda: theory.snr_curve(random_molrg(_key(70), n=5, K=1, d=2), SIGMAS), "mix:"),
        (lambda: theory.snr_curve(mix, [0.1, -1.0]), "sigmas:"),
        (lambda: theory.snr_curve(mix, [0.1, np.nan]), "sigmas:"),
        (lambda: theory.snr_curve(mix, []), "sigmas:"),
        (lambda: theory.snr_curve(mix, np.ones((2, 2))), "sigmas:"),
        (lambda: theory.snr_curve(mix, SIGMAS, scale=np.ones(3)), "scale:"),
        (lambda: theory.snr_curve(mix, SIGMAS, scale=0.0), "scale:"),
        (lambda: theory.snr_curve(mix, SIGMAS, method="exact"), "method:"),
        (lambda: theory.snr_curve(mix, SIGMAS, pooled="yes"), "pooled:"),
        (lambda: theory.snr_curve(mix, SIGMAS, num_samples=1), "num_samples:"),
        (lambda: theory.snr_curve(mix, SIGMAS, batch_size=0), "batch_size:"),
        (lambda: theory.snr_curve(gen, SIGMAS, method="quadrature"), "method: 'quadrature' needs"),
        (lambda: theory.snr_curve(gen, SIGMAS), "key:"),
        (lambda: theory.snr_curve(mix, SIGMAS, method="monte_carlo"), "key:"),
        (lambda: theory.snr_curve(random_molrg(_key(71), n=10, K=2, d=3, weights=jnp.array([0.999, 0.001])),
                                  SIGMAS, key=_key(72), num_samples=16), "num_samples:"),
        (lambda: theory.monte_carlo_snr(mix, SIGMAS, key=None, num_samples=64), "key:"),
        (lambda: theory.peak(mix, lo=1.0, hi=0.5), "lo:"),
        (lambda: theory.peak(mix, lo=-1.0), "lo:"),
        (lambda: theory.peak(gen, key=_key(73), num_grid=2), "num_grid:"),
        (lambda: theory.peak(gen, key=_key(74), num_groups=1), "num_groups:"),
        (lambda: theory.peak(gen), "key:"),
        (lambda: theory.assumption_1(object()), "mix:"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            call()
