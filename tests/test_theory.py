"""Tests of molrg.theory against independent references (float64).

References: a dense n-dimensional Monte Carlo of the MoLRG with the optimal denoiser built
from full covariances (scipy), nested adaptive quadrature (scipy) for K = 2, Monte Carlo
over the block energies, known limits, and dense grids for the peak location.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import softmax

jax.config.update("jax_enable_x64", True)

from molrg import theory  # noqa: E402

PAPER = dict(d=5, K=3, delta=0.2)  # P1 Fig. 3/4 setting


# --------------------------------------------------------------------------------------
# Independent references.


def _blocks(rng, n, K, d):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return [q[:, k * d : (k + 1) * d] for k in range(K)]


def _class_covariances(bases, delta):
    projs = [u @ u.T for u in bases]
    return [p + delta**2 * sum(projs[l] for l in range(len(projs)) if l != k) for k, p in enumerate(projs)], projs


def _dense_denoiser(xt, covs, sigma):
    """E[x0 | xt] from full covariances: posterior by scipy densities, per-class Wiener means."""
    n = xt.shape[1]
    K = len(covs)
    noisy = [c + sigma**2 * np.eye(n) for c in covs]
    logp = np.stack([stats.multivariate_normal(np.zeros(n), c).logpdf(xt) for c in noisy]) - math.log(K)
    post = softmax(logp, axis=0)
    means = [xt @ np.linalg.solve(c_noisy, c) for c_noisy, c in zip(noisy, covs)]  # rows: Sigma (Sigma+s^2)^-1 x
    return sum(p[:, None] * m for p, m in zip(post, means))


def brute_force_snr(sigma, *, d, K, delta, n_extra=3, num_per_class=20000, seed=0):
    """SNR (docs/theory.md section 5) of the dense optimal denoiser in the n-dimensional model, with stderr."""
    rng = np.random.default_rng(seed)
    n = K * d + n_extra
    bases = _blocks(rng, n, K, d)
    covs, projs = _class_covariances(bases, delta)
    ratios, variances = [], []
    for k in range(K):
        m = num_per_class
        x0 = rng.standard_normal((m, d)) @ bases[k].T
        for l in range(K):
            if l != k:
                x0 += delta * rng.standard_normal((m, d)) @ bases[l].T
        xt = x0 + sigma * rng.standard_normal((m, n))
        xh = _dense_denoiser(xt, covs, sigma)
        on = xh @ projs[k]
        num = np.sum(on**2, axis=1)
        den = np.sum((xh - on) ** 2, axis=1)
        r = num.mean() / den.mean()
        z = num - r * den
        ratios.append(r)
        variances.append(z.var() / (m * den.mean() ** 2))
    return float(np.mean(ratios)), float(math.sqrt(sum(variances)) / K)


def quad_snr_k2(sigma, *, d, delta, tol=1e-10):
    """K = 2 exact SNR by nested adaptive quadrature over the two chi-square variables."""
    s2, d2 = sigma**2, delta**2
    s_own, s_other = 1 + s2, d2 + s2
    a = (1 - d2) / (2 * s_own * s_other)
    z, x = 1 / s_own, d2 / s_other
    k = d / 2
    log_c = -math.lgamma(k) - k * math.log(2)

    def pdf(v):
        return math.exp((k - 1) * math.log(v) - v / 2 + log_c) if v > 0 else 0.0

    def sigmoid(t):
        return 1 / (1 + math.exp(-t)) if t > -700 else 0.0

    def inner(xl, own):
        split = s_other * xl / s_own  # where the posterior switches class

        def g(xk):
            wk = sigmoid(a * (s_own * xk - s_other * xl))
            if own:
                return (x + (z - x) * wk) ** 2 * s_own * xk * pdf(xk)
            return (x + (z - x) * (1 - wk)) ** 2 * s_other * xl * pdf(xk)

        q1 = integrate.quad(g, 0, split, epsabs=0, epsrel=tol)[0]
        q2 = integrate.quad(g, split, np.inf, epsabs=0, epsrel=tol)[0]
        return (q1 + q2) * pdf(xl)

    num = integrate.quad(lambda v: inner(v, True), 0, np.inf, epsabs=0, epsrel=tol)[0]
    den = integrate.quad(lambda v: inner(v, False), 0, np.inf, epsabs=0, epsrel=tol)[0]
    return num / den


# --------------------------------------------------------------------------------------
# Closed form of the optimal denoiser (the basis of everything else).


@pytest.mark.parametrize("sigma", [0.05, 0.4, 2.0])
def test_block_shrinkage_form_equals_dense_posterior_mean(sigma):
    d, K, delta, n = 3, 3, 0.3, 12
    rng = np.random.default_rng(1)
    bases = _blocks(rng, n, K, d)
    covs, projs = _class_covariances(bases, delta)
    xt = rng.standard_normal((50, n)) * np.sqrt(1 + sigma**2)
    dense = _dense_denoiser(xt, covs, sigma)
    energies = np.stack([np.sum((xt @ u) ** 2, axis=1) for u in bases], axis=1)  # (50, K)
    w = softmax(np.asarray(theory.logit_scale(sigma, delta)) * energies, axis=1)
    beta = np.asarray(theory.block_shrinkage(w, sigma, delta))
    closed = sum(beta[:, [l]] * (xt @ projs[l]) for l in range(K))
    np.testing.assert_allclose(closed, dense, rtol=1e-9, atol=1e-10)


# --------------------------------------------------------------------------------------
# Exact SNR.
#
# Most calls below share the 8-point grid SIGMA8 (and 2^17 Monte Carlo draws), so that the
# compiled programs are reused across tests; the whole file stays well under a minute.

SIGMA8 = jnp.asarray([0.02, 0.1, 0.3, 0.6, 1.5, 10.0, 1e-3, 1e3])
M = 2**17


def test_exact_snr_matches_dense_n_dimensional_monte_carlo():
    mc, mc_se = theory.exact_snr(SIGMA8, **PAPER, key=jax.random.key(3), num_samples=M, return_stderr=True)
    quad = theory.exact_snr_quadrature(SIGMA8, **PAPER)
    for i in (1, 2, 4):  # sigma = 0.1, 0.3 (near the peak), 1.5
        sigma = float(SIGMA8[i])
        bf, bf_se = brute_force_snr(sigma, **PAPER, seed=i)
        assert abs(bf - float(quad[i])) < 4 * bf_se, (sigma, bf, bf_se, float(quad[i]))
        combined = math.hypot(bf_se, float(mc_se[i]))
        assert abs(bf - float(mc[i])) < 4 * combined, (sigma, bf, float(mc[i]), combined)


@pytest.mark.parametrize(
    ("d", "delta", "sigma"),
    [
        (5, 0.2, 0.3),
        (1, 0.5, 0.3),
        pytest.param(5, 0.2, 0.05, marks=pytest.mark.slow),
        pytest.param(5, 0.2, 1.0, marks=pytest.mark.slow),
        pytest.param(5, 0.2, 5.0, marks=pytest.mark.slow),
    ],
)
def test_quadrature_matches_nested_adaptive_quadrature_k2(d, delta, sigma):
    reference = quad_snr_k2(sigma, d=d, delta=delta)
    got = float(theory.exact_snr_quadrature(sigma, d=d, K=2, delta=delta))
    assert got == pytest.approx(reference, rel=1e-8)


@pytest.mark.parametrize(("d", "K", "delta"), [(5, 3, 0.2), (5, 10, 0.3), pytest.param(2, 4, 0.0, marks=pytest.mark.slow)])
def test_quadrature_matches_monte_carlo(d, K, delta):
    quad = theory.exact_snr_quadrature(SIGMA8, d=d, K=K, delta=delta)
    mc, se = theory.exact_snr(SIGMA8, d=d, K=K, delta=delta, key=jax.random.key(7), num_samples=M, return_stderr=True)
    z = np.abs(np.asarray(mc - quad) / np.asarray(se))
    assert np.all(z < 4.5), z
    if delta > 0:  # the precision stated in the docstring: relative stderr ~ c / sqrt(M), c <~ 3
        assert np.all(np.asarray(se / mc) < 3.0 / math.sqrt(M))


def test_monte_carlo_stderr_is_calibrated():
    """The delta-method stderr matches the spread over independent keys."""
    sigma = jnp.asarray([0.3, 1.0])
    runs = [theory.exact_snr(sigma, **PAPER, key=jax.random.key(i), num_samples=2**12, return_stderr=True) for i in range(40)]
    values = np.stack([np.asarray(r[0]) for r in runs])
    stderr = np.mean(np.stack([np.asarray(r[1]) for r in runs]), axis=0)
    ratio = values.std(axis=0, ddof=1) / stderr
    assert np.all((ratio > 0.7) & (ratio < 1.3)), ratio  # chi2 with 39 dof: +-30% is ~4 sigma


@pytest.mark.parametrize(
    ("d", "K", "delta"),
    [
        (5, 3, 0.2),
        pytest.param(1, 2, 0.5, marks=pytest.mark.slow),
        pytest.param(50, 3, 0.1, marks=pytest.mark.slow),
        pytest.param(3, 4, 0.0, marks=pytest.mark.slow),
    ],
)
def test_quadrature_is_converged(d, K, delta):
    sigma = jnp.logspace(-4, 4, 8)
    default = theory.exact_snr_quadrature(sigma, d=d, K=K, delta=delta)
    fine = theory.exact_snr_quadrature(sigma, d=d, K=K, delta=delta, panel_width=1.25, nodes_per_panel=14, u_step=0.15)
    np.testing.assert_allclose(default, fine, rtol=1e-11)


# --------------------------------------------------------------------------------------
# Theorem 1 and its ingredients.


def test_typical_margin_is_expected_logit_margin():
    rng = np.random.default_rng(5)
    d, delta = 5, 0.2
    X = rng.chisquare(d, size=(200_000, 2))
    for sigma in [0.05, 0.3, 1.0, 3.0]:
        a = (1 - delta**2) / (2 * (1 + sigma**2) * (delta**2 + sigma**2))
        margin = a * ((1 + sigma**2) * X[:, 0] - (delta**2 + sigma**2) * X[:, 1])
        se = margin.std() / math.sqrt(margin.size)
        expected = float(theory.typical_margin(sigma, d=d, delta=delta))
        assert abs(margin.mean() - expected) < 4 * se
        assert a == pytest.approx(float(theory.logit_scale(sigma, delta)), rel=1e-14)


def test_theorem1_equals_exact_structure_with_typical_weights():
    """C_t/(K-1) [(1 + r h(w+))/(1 + r h(w-))]^2 == E-free SNR with beta(w+), beta(w-)."""
    sigma = jnp.logspace(-3, 3, 25)
    d, K, delta = 5, 3, 0.2
    wp = theory.confidence_plus(sigma, d=d, K=K, delta=delta)
    wm = theory.confidence_minus(sigma, d=d, K=K, delta=delta)
    np.testing.assert_allclose(wp + (K - 1) * wm, 1.0, rtol=1e-14)
    np.testing.assert_allclose(wp, 1 / (1 + (K - 1) * np.exp(-theory.typical_margin(sigma, d=d, delta=delta))), rtol=1e-13)
    bp = theory.block_shrinkage(wp, sigma, delta)
    bm = theory.block_shrinkage(wm, sigma, delta)
    structural = bp**2 * d * (1 + sigma**2) / ((K - 1) * bm**2 * d * (delta**2 + sigma**2))
    rate = theory.denoising_rate(sigma, delta)
    paper_form = theory.C_t(sigma, delta) / (K - 1) * ((1 + rate * theory.h(wp, delta)) / (1 + rate * theory.h(wm, delta))) ** 2
    got = theory.approx_snr(sigma, d=d, K=K, delta=delta)
    np.testing.assert_allclose(got, structural, rtol=1e-12)
    np.testing.assert_allclose(got, paper_form, rtol=1e-12)
    np.testing.assert_allclose(theory.class_confidence(sigma, d=d, K=K, delta=delta), theory.h(wp, delta), rtol=1e-14)


def test_mechanism_monotone():
    sigma = jnp.logspace(-3, 3, 200)
    assert np.all(np.diff(np.asarray(theory.denoising_rate(sigma, 0.2))) > 0)
    assert np.all(np.diff(np.asarray(theory.class_confidence(sigma, **PAPER))) <= 0)
    np.testing.assert_allclose(theory.zeta(sigma) - theory.xi(sigma, 0.2) >= 0, True)


@pytest.mark.parametrize(("K", "delta"), [(3, 0.2), (2, 0.5), (10, 0.3)])
def test_snr_limits(K, delta):
    lim0 = float(theory.snr_limit_small_sigma(K, delta))
    lim_inf = float(theory.snr_limit_large_sigma(K))
    assert lim0 == pytest.approx(1 / ((K - 1) * delta**2), rel=1e-14)
    assert lim_inf == pytest.approx(1 / (K - 1), rel=1e-14)
    for fn in (theory.approx_snr, theory.exact_snr_quadrature):
        values = fn(SIGMA8, d=5, K=K, delta=delta)  # SIGMA8[6] = 1e-3, SIGMA8[7] = 1e3
        assert float(values[6]) == pytest.approx(lim0, rel=1e-3)
        assert float(values[7]) == pytest.approx(lim_inf, rel=1e-4)


def test_snr_limits_monte_carlo():
    mc, se = theory.exact_snr(SIGMA8, **PAPER, key=jax.random.key(11), num_samples=M, return_stderr=True)
    target = np.array([float(theory.snr_limit_small_sigma(3, 0.2)), float(theory.snr_limit_large_sigma(3))])
    got, err = np.asarray(mc)[6:], np.asarray(se)[6:]
    assert np.all(np.abs(got - target) < 4 * err + 1e-3 * target), (got, err, target)


# --------------------------------------------------------------------------------------
# Peak location.


def test_approx_snr_single_interior_peak_and_peak_sigma():
    grid = jnp.logspace(-4, 4, 8001)
    values = np.asarray(theory.approx_snr(grid, **PAPER))
    signs = np.sign(np.diff(values))
    assert np.count_nonzero(np.diff(signs[signs != 0]) != 0) == 1  # rises, then falls
    i = int(np.argmax(values))
    assert 0 < i < grid.size - 1
    sigma_star, snr_star = theory.approx_peak_sigma(**PAPER)
    step = math.log(float(grid[1] / grid[0]))
    assert abs(math.log(float(sigma_star) / float(grid[i]))) <= step
    assert float(snr_star) >= values[i] * (1 - 1e-12)


def test_exact_peak_quadrature_is_a_local_maximum():
    sigma_q, snr_q = theory.exact_peak_sigma_quadrature(**PAPER)
    offsets = jnp.asarray([-0.3, -0.05, -0.01, -1e-3, 1e-3, 0.01, 0.05, 0.3])
    around = theory.exact_snr_quadrature(sigma_q * jnp.exp(offsets), **PAPER)  # same shape as SIGMA8
    assert np.all(np.asarray(around) < float(snr_q))
    assert np.all(np.diff(np.asarray(around)[:4]) > 0) and np.all(np.diff(np.asarray(around)[4:]) < 0)
    # Theorem 1 misplaces the peak (measured, not tuned away): it sits well above sigma*.
    sigma_a, _ = theory.approx_peak_sigma(**PAPER)
    assert float(sigma_a) > 1.3 * float(sigma_q)


@pytest.mark.slow
def test_exact_peak_single_and_monte_carlo_agrees():
    grid = jnp.logspace(-1.0, 0.0, 64)
    values = np.asarray(theory.exact_snr_quadrature(grid, **PAPER))
    i = int(np.argmax(values))
    assert 0 < i < grid.size - 1
    assert np.count_nonzero(np.diff(np.sign(np.diff(values))) != 0) == 1
    sigma_q, snr_q = theory.exact_peak_sigma_quadrature(**PAPER)
    assert abs(math.log(float(sigma_q) / float(grid[i]))) <= math.log(float(grid[1] / grid[0]))
    assert float(snr_q) >= values[i] * (1 - 1e-12)
    sigma_mc, se = theory.exact_peak_sigma(**PAPER, key=jax.random.key(2), num_samples=M)
    assert 0 < float(se) < 0.01 * float(sigma_mc)
    assert abs(float(sigma_mc) - float(sigma_q)) < 4 * float(se) + 2e-3 * float(sigma_q)


# --------------------------------------------------------------------------------------
# jit / vmap / dtypes.


def test_jit_and_vmap_match_eager_closed_forms():
    sigma = SIGMA8
    deltas = jnp.asarray([0.1, 0.2])
    eager = np.stack([np.asarray(theory.approx_snr(sigma, d=5, K=3, delta=float(dl))) for dl in deltas])
    jitted = jax.jit(lambda s, dl: theory.approx_snr(s, d=5, K=3, delta=dl))
    np.testing.assert_allclose(jitted(sigma, deltas[1]), eager[1], rtol=1e-14)
    batched = jax.vmap(lambda dl: theory.approx_snr(sigma, d=5, K=3, delta=dl))(deltas)
    np.testing.assert_allclose(batched, eager, rtol=1e-14)
    # Traced d and K are fine in the closed forms.
    traced_dk = jax.jit(lambda s, d, K: theory.approx_snr(s, d=d, K=K, delta=0.2))(sigma, 5, 3)
    np.testing.assert_allclose(traced_dk, eager[1], rtol=1e-14)
    peak = jax.jit(lambda dl: theory.approx_peak_sigma(d=5, K=3, delta=dl)[0])(0.2)
    # Golden section on a flat maximum: ~sqrt(eps) relative agreement.
    assert float(peak) == pytest.approx(float(theory.approx_peak_sigma(**PAPER)[0]), rel=1e-7)


def test_jit_and_vmap_match_eager_exact():
    deltas = jnp.asarray([0.1, 0.2])
    eager = np.stack([np.asarray(theory.exact_snr_quadrature(SIGMA8, d=5, K=3, delta=float(dl))) for dl in deltas])
    # Traced sigma and delta, vmapped over delta, under jit: one program.
    traced = jax.jit(jax.vmap(lambda s, dl: theory.exact_snr_quadrature(s, d=5, K=3, delta=dl), in_axes=(None, 0)))
    np.testing.assert_allclose(traced(SIGMA8, deltas), eager, rtol=1e-12)

    sigma = jnp.asarray([0.3, 1.0])
    # Two equal keys (the key-reuse checker forbids using one twice).
    mc_eager = theory.exact_snr(sigma, d=5, K=3, delta=0.2, key=jax.random.key(0), num_samples=2**12)
    mc_jit = jax.jit(lambda s, dl, k: theory.exact_snr(s, d=5, K=3, delta=dl, key=k, num_samples=2**12))
    np.testing.assert_allclose(mc_jit(sigma, 0.2, jax.random.key(0)), mc_eager, rtol=1e-12)


def test_shapes_broadcast():
    sigma = SIGMA8.reshape(2, 4)
    assert theory.approx_snr(sigma, **PAPER).shape == (2, 4)
    assert theory.exact_snr_quadrature(sigma, **PAPER).shape == (2, 4)
    assert theory.exact_snr(sigma, **PAPER, key=jax.random.key(0), num_samples=M).shape == (2, 4)
    assert theory.exact_snr_quadrature(0.3, **PAPER).shape == ()
    assert theory.typical_margin(jnp.asarray(0.3), d=5, delta=jnp.asarray([0.1, 0.2])).shape == (2,)


def test_float32_within_tolerance():
    # tests/conftest.py turns on strict dtype promotion and rank-promotion errors for every
    # test; the context managers keep this one strict on its own.
    sigma32 = SIGMA8.astype(jnp.float32)
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        a32 = theory.approx_snr(sigma32, **PAPER)
        q32 = theory.exact_snr_quadrature(sigma32, **PAPER)
    assert a32.dtype == q32.dtype == jnp.float32
    np.testing.assert_allclose(a32, theory.approx_snr(SIGMA8, **PAPER), rtol=1e-5)
    np.testing.assert_allclose(q32, theory.exact_snr_quadrature(SIGMA8, **PAPER), rtol=1e-4)


@pytest.mark.slow
def test_monte_carlo_float32():
    sigma32 = SIGMA8.astype(jnp.float32)
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        m32, se32 = theory.exact_snr(sigma32, **PAPER, key=jax.random.key(0), num_samples=M, return_stderr=True)
        sigma_star, _ = theory.exact_peak_sigma(
            d=5, K=3, delta=jnp.float32(0.2), key=jax.random.key(1), num_samples=2**14, chunk_size=2**10
        )
    assert m32.dtype == se32.dtype == sigma_star.dtype == jnp.float32
    quad = np.asarray(theory.exact_snr_quadrature(SIGMA8, **PAPER))
    assert np.all(np.abs(np.asarray(m32) - quad) < 4.5 * np.asarray(se32) + 1e-4 * quad)


# --------------------------------------------------------------------------------------
# Host-side curves.


def test_host_curves_match_the_array_functions():
    sigma = np.geomspace(1e-2, 10.0, 7)
    # x64 is on here, so the host curves run in float64 like the array functions they wrap.
    exact = theory.exact_snr_curve(sigma, **PAPER)
    assert exact.dtype == np.float64 and exact.shape == (7,)
    np.testing.assert_allclose(exact, np.asarray(theory.exact_snr_quadrature(jnp.asarray(sigma), **PAPER)),
                               rtol=1e-13)
    # Padding only lets calls share a compiled program: the values must not depend on it.
    np.testing.assert_array_equal(theory.exact_snr_curve(sigma, **PAPER, pad=128), exact)
    forms = theory.closed_form_curves(sigma, **PAPER)
    s = jnp.asarray(sigma)
    for key, ref in (("approx_snr", theory.approx_snr(s, **PAPER)),
                     ("denoising_rate", theory.denoising_rate(s, PAPER["delta"])),
                     ("class_confidence", theory.class_confidence(s, **PAPER)),
                     ("confidence_plus", theory.confidence_plus(s, **PAPER))):
        np.testing.assert_allclose(forms[key], np.asarray(ref), rtol=1e-13, err_msg=key)
    np.testing.assert_array_equal(theory.approx_snr_curve(sigma, **PAPER), forms["approx_snr"])
    for setting in theory.P1_SETTINGS.values():  # orthogonal subspaces fit: K d <= n
        assert setting["K"] * setting["d"] <= setting["n"] and 0 < setting["delta"] < 1
    with pytest.raises(ValueError, match="^sigmas: must be > 0"):
        theory.exact_snr_curve([0.1, 0.0], **PAPER)
    with pytest.raises(ValueError, match="^pad: must be None or an int >= 0"):
        theory.approx_snr_curve(sigma, **PAPER, pad=-1)
    with pytest.raises(ValueError, match=r"^delta: must lie in \(0, 1\)"):
        theory.closed_form_curves(sigma, d=5, K=3, delta=0.0)


# --------------------------------------------------------------------------------------
# Validation.


def test_validation_errors():
    with pytest.raises(ValueError, match="sigma: must be > 0"):
        theory.approx_snr(jnp.asarray([0.1, 0.0]), **PAPER)
    with pytest.raises(ValueError, match="sigma: must be finite"):
        theory.zeta(float("nan"))
    with pytest.raises(ValueError, match=r"delta: must lie in \[0, 1\)"):
        theory.xi(0.3, 1.0)
    with pytest.raises(ValueError, match=r"delta: must lie in \[0, 1\)"):
        theory.exact_snr_quadrature(0.3, d=5, K=3, delta=-0.1)
    with pytest.raises(ValueError, match=r"delta: must lie in \(0, 1\)"):
        theory.denoising_rate(0.3, 0.0)
    with pytest.raises(ValueError, match="K: must be >= 2"):
        theory.approx_snr(0.3, d=5, K=1, delta=0.2)
    with pytest.raises(ValueError, match="K: must be >= 2"):
        theory.exact_snr(0.3, d=5, K=1, delta=0.2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="d: must be >= 1"):
        theory.typical_margin(0.3, d=0, delta=0.2)
    with pytest.raises(ValueError, match="d: must be a Python int"):
        theory.exact_snr_quadrature(0.3, d=5.0, K=3, delta=0.2)
    with pytest.raises(ValueError, match="lo: must be < hi"):
        theory.peak_sigma(lambda s: s, 2.0, 1.0)
    # delta = 0 is allowed where the formula is finite.
    assert np.isfinite(float(theory.approx_snr(0.3, d=5, K=3, delta=0.0)))
    # Traced values skip the value checks instead of failing.
    out = jax.jit(lambda s: theory.approx_snr(s, **PAPER))(jnp.asarray(-1.0))
    assert out.shape == ()
