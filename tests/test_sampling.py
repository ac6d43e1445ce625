"""Samplers against independent references.

* Exact algebra: for one Gaussian class the exact denoiser is linear, so every sampler
  is a linear map of its pre-drawn inputs and the output variance along a direction is
  the squared norm of a gradient (autodiff through the sampler, no Monte Carlo). It must
  equal a textbook scalar recursion written here (DDPM posterior, DDIM eq. 12, Euler and
  Heun on the scalar ODE). The same recursion gives each sampler's discretisation bias.
* Identities: DDIM with eta = 1 is the ancestral sampler; DDIM with eta = 0 is Euler on
  the probability-flow ODE in the coordinates x / scale.
* Distribution (Monte Carlo): with the exact denoiser each sampler reproduces the
  mixture's class frequencies and per-class block energies, within 4 standard errors
  plus twice the Gaussian-recursion discretisation bias.
* Memorisation: with the empirical denoiser of 20 points the samples copy them.
* Convergence order by regression against a fine reference: Euler ~ 1, Heun ~ 2.
* jit / vmap equal eager; errors name the argument.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import molrg
from molrg import sample_quality as M
from molrg import sampling as S
from molrg.schedules import DDPMLinear, edm_sigmas

SCHED = DDPMLinear()


# Test inputs come from NumPy's generator: JAX's threefry costs seconds to compile per
# shape on CPU, and nothing here depends on JAX's streams. draw_noises and sample, which
# use jax.random, are tested on their own.
def _normal(seed, *shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _molrg(seed, n, dims, **kw):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, sum(dims))))
    return molrg.MoLRG([jnp.asarray(b) for b in np.split(q, np.cumsum(dims)[:-1], axis=1)], **kw)


def _sample_orthogonal(mix, num, seed):
    """x_0 = U_k a + delta * (other blocks) e of an orthogonal, zero-mean, eta = 0 MoLRG
    (docs/theory.md section 2), written out with NumPy (independent of MoLRG.sample)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(mix.K, size=num, p=np.asarray(mix.weights, np.float64))
    coef = rng.standard_normal((num, mix.D))
    own = mix.class_of_column[None, :] == labels[:, None]
    coef = np.where(own, coef, float(mix.delta) * coef)
    return jnp.asarray(coef @ np.asarray(mix.stacked_bases).T), labels


# ------------------------------------------------------------------------------------------
# Independent scalar recursions (textbook formulas) for one Gaussian coordinate of variance v.
# ------------------------------------------------------------------------------------------
def _abar(timesteps):
    betas = np.linspace(1e-4, 0.02, 500)
    abar = np.cumprod(1.0 - betas)
    a_t = abar[np.asarray(timesteps)]
    return a_t, np.append(a_t[1:], 1.0)


def vp_gain_and_noise(v, timesteps, eta):
    """``x_out = A x_T + sum_i b_i z_i`` for ``x_0 ~ N(0, v)``: returns ``(A, sum b_i^2)``.

    DDIM eq. 12 of Song et al. (2021) with ``sigma_t(eta)``; eta = 1 is DDPM with
    ``beta~``. The exact posterior mean for the VP marginal ``N(0, abar v + 1 - abar)`` is
    ``E[x_0 | x_t] = sqrt(abar) v / (abar v + 1 - abar) x_t``.
    """
    A, noise = 1.0, 0.0
    for a_t, a_s in zip(*_abar(timesteps)):
        x0_gain = np.sqrt(a_t) * v / (a_t * v + 1.0 - a_t)
        eps_gain = (1.0 - np.sqrt(a_t) * x0_gain) / np.sqrt(1.0 - a_t)
        c = eta * np.sqrt((1.0 - a_s) / (1.0 - a_t) * (1.0 - a_t / a_s))
        step = np.sqrt(a_s) * x0_gain + np.sqrt(max(1.0 - a_s - c * c, 0.0)) * eps_gain
        A, noise = step * A, step * step * noise + c * c
    return A, noise


def ode_gain(v, sigmas, method):
    """Euler / Heun on ``dx/dsigma = x sigma / (v + sigma^2)`` (= (x - D(x)) / sigma)."""
    slope = lambda s: s / (v + s * s)  # noqa: E731
    A = 1.0
    for s, t in zip(sigmas[:-1], sigmas[1:]):
        h = t - s
        if method == "euler" or t == 0:
            step = 1.0 + h * slope(s)
        else:
            step = 1.0 + 0.5 * h * (slope(s) + slope(t) * (1.0 + h * slope(s)))
        A *= step
    return A


def vp_variance(v, timesteps, eta, init_var=None):
    A, noise = vp_gain_and_noise(v, timesteps, eta)
    a_T = _abar(timesteps)[0][0]
    init_var = a_T * v + 1.0 - a_T if init_var is None else init_var
    return A * A * init_var + noise


def ode_variance(v, sigmas, method):
    return ode_gain(v, sigmas, method) ** 2 * (v + sigmas[0] ** 2)


EDM40 = np.append(edm_sigmas(40), 0.0)
EDM18 = np.append(edm_sigmas(18), 0.0)
SUBGRID = S.default_timesteps(SCHED, 50)


# ------------------------------------------------------------------------------------------
# 1. Exact algebra: one Gaussian class, variance by autodiff against the recursion.
# ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _gaussian():
    mix = _molrg(0, 5, (2,), noise=0.3)
    return mix, functools.partial(molrg.denoise, mix)


CASES = [  # (name, number of noise draws, run(den, x, z), reference variance(v))
    ("ddpm", 500, lambda den, x, z: S.ddpm_ancestral(den, x, z, SCHED),
     lambda v: vp_variance(v, np.arange(499, -1, -1), 1.0, init_var=1.0)),
    ("ddim-eta0", 50, lambda den, x, z: S.ddim(den, x, SCHED, SUBGRID),
     lambda v: vp_variance(v, SUBGRID, 0.0, init_var=1.0)),
    ("ddim-eta0.5", 50, lambda den, x, z: S.ddim(den, x, SCHED, SUBGRID, eta=0.5, noises=z),
     lambda v: vp_variance(v, SUBGRID, 0.5, init_var=1.0)),
    ("euler", 0, lambda den, x, z: S.euler_pf_ode(den, 80.0 * x, EDM18),
     lambda v: ode_gain(v, EDM18, "euler") ** 2 * 6400.0),
    ("heun", 0, lambda den, x, z: S.heun_pf_ode(den, 80.0 * x, EDM18),
     lambda v: ode_gain(v, EDM18, "heun") ** 2 * 6400.0),
]


@pytest.mark.parametrize("name, steps, run, reference", CASES, ids=[c[0] for c in CASES])
def test_gaussian_output_variance_is_the_recursion(name, steps, run, reference):
    """Var(u . x_out) = |d(u . x_out)/d x_init|^2 + |d(u . x_out)/d noises|^2 for unit-variance
    inputs: exact for a linear sampler. Directions: inside span(U) (v = 1 + eta^2) and
    orthogonal to it (v = eta^2)."""
    mix, den = _gaussian()
    x = jnp.zeros((1, mix.n), jnp.float64)
    z = jnp.zeros((steps, 1, mix.n), jnp.float64)
    inside = mix.bases[0][:, 0]
    outside = jnp.linalg.svd(jnp.eye(mix.n) - mix.bases[0] @ mix.bases[0].T)[0][:, 0]

    @jax.jit
    def variances(x, z):
        def var(u):
            gx, gz = jax.grad(lambda a, b: jnp.sum(run(den, a, b)[0] * u), argnums=(0, 1))(x, z)
            return jnp.sum(gx * gx) + jnp.sum(gz * gz)
        return var(inside), var(outside)

    eta2 = float(mix.noise) ** 2
    for got, v in zip(variances(x, z), (1.0 + eta2, eta2)):
        np.testing.assert_allclose(got, reference(v), rtol=1e-9)


def test_discretisation_bias_of_the_recursion():
    """Known limits of the references above: fine grids reproduce the exact variance v, and
    the grids used below have the biases quoted in the Monte Carlo tolerances."""
    fine = np.append(np.geomspace(80.0, 1e-3, 2000), 0.0)
    for v in (1.0, 0.09):
        assert abs(ode_variance(v, fine, "heun") / v - 1) < 1e-4
        assert abs(ode_variance(v, fine, "euler") / v - 1) < 1e-2
        # DDPM with its own 500 steps: about -1.3% (v = 1) and -3.3% (v = 0.09)
        assert abs(vp_variance(v, np.arange(499, -1, -1), 1.0) / v - 1) < 0.04
    assert abs(ode_variance(1.0, EDM40, "heun") - 1) < 0.02  # +1.6%
    assert abs(ode_variance(1.0, EDM18, "heun") - 1) > 0.05  # +9%: EDM's 18 steps are coarse here


# ------------------------------------------------------------------------------------------
# 2. Identities between samplers.
# ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _mixture():
    return _molrg(1, 12, (3, 3, 3), delta=0.3, weights=jnp.asarray([0.5, 0.3, 0.2]))


def _den():
    return functools.partial(molrg.denoise, _mixture())


def test_ddim_eta1_is_ddpm_and_eta0_is_euler():
    mix, den = _mixture(), _den()
    x_T, noises = _normal(2, 64, mix.n), _normal(3, 50, 64, mix.n)

    @jax.jit
    def run(x_T, noises):
        a = S.ddpm_ancestral(den, x_T, noises, SCHED, SUBGRID)
        b = S.ddim(den, x_T, SCHED, SUBGRID, eta=1.0, noises=noises)
        c = S.ddim(den, x_T, SCHED, SUBGRID)
        sigma, scale = SCHED(SUBGRID)
        d = S.euler_pf_ode(den, x_T / scale[0], jnp.append(sigma, 0.0))
        return a, b, c, d

    a, b, c, d = run(x_T, noises)
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(d, c, rtol=1e-9, atol=1e-12)
    assert float(jnp.max(jnp.abs(a - c))) > 1e-2  # the noise does matter


# ------------------------------------------------------------------------------------------
# 3. With the exact denoiser the samplers reproduce the mixture (Monte Carlo).
# ------------------------------------------------------------------------------------------
def _classify(mix, x):
    """Class by the exact posterior at a tiny noise level, and block energies ||U_l^T x||^2."""
    cls = np.asarray(jnp.argmax(molrg.log_posterior(mix, x, 1e-3), axis=-1))
    energy = np.asarray(jnp.square(x @ mix.stacked_bases).reshape(x.shape[0], mix.K, -1).sum(-1))
    return cls, energy


def _class_stats(mix, x):
    cls, energy = _classify(mix, x)
    freq = np.bincount(cls, minlength=mix.K) / x.shape[0]
    mean = np.stack([energy[cls == k].mean(0) for k in range(mix.K)])  # (class, block)
    se = np.stack([energy[cls == k].std(0) / np.sqrt(max((cls == k).sum(), 1)) for k in range(mix.K)])
    return freq, mean, se, energy


@functools.lru_cache(maxsize=None)
def _reference_stats(num=100_000):
    """The classifier is not perfect (the classes overlap), so the reference is the same
    classification of a large sample of true data."""
    mix = _mixture()
    x0, _ = _sample_orthogonal(mix, num, seed=3)
    return _class_stats(mix, x0)


SAMPLERS = {  # name: (noise draws, run(den, x_T, noises), relative variance bias of v)
    "ddpm": (500, lambda den, x, z: S.ddpm_ancestral(den, x, z, SCHED),
             lambda v: vp_variance(v, np.arange(499, -1, -1), 1.0) / v - 1),
    "ddim-100": (0, lambda den, x, z: S.ddim(den, x, SCHED, S.default_timesteps(SCHED, 100)),
                 lambda v: vp_variance(v, S.default_timesteps(SCHED, 100), 0.0) / v - 1),
    "heun-40": (0, lambda den, x, z: S.heun_pf_ode(den, 80.0 * x, EDM40),
                lambda v: ode_variance(v, EDM40, "heun") / v - 1),
}


def _check_mixture_reproduced(name, num, seed):
    mix, den = _mixture(), _den()
    steps, run, bias = SAMPLERS[name]
    x_T, noises = _normal(seed, num, mix.n), _normal(seed + 1, steps, num, mix.n)
    x = jax.jit(lambda a, b: run(den, a, b))(x_T, noises)
    assert x.shape == (num, mix.n) and bool(jnp.all(jnp.isfinite(x)))
    # eta = 0: the samples lie in the span of the bases, up to rounding
    off = x - (x @ mix.stacked_bases) @ mix.stacked_bases.T
    assert float(jnp.max(jnp.abs(off))) < 1e-10

    ref_freq, ref_mean, ref_se, _ = _reference_stats()
    freq, mean, se, energy = _class_stats(mix, x)
    delta2, d = float(mix.delta) ** 2, mix.dims[0]
    b_own, b_other = abs(bias(1.0)), abs(bias(delta2))
    # class frequencies: binomial SE; the class-mixing part of the bias is < 0.002 (measured
    # with 80,000 samples per sampler), allowed 0.01
    tol = 4 * np.sqrt(ref_freq * (1 - ref_freq) / num) + 0.01
    np.testing.assert_array_less(np.abs(freq - ref_freq), tol)
    # per-class block energies (own block ~ d, other blocks ~ d delta^2)
    allowed_bias = 2 * np.where(np.eye(mix.K, dtype=bool), b_own, b_other) * ref_mean
    tol = 4 * np.hypot(se, ref_se) + allowed_bias
    np.testing.assert_array_less(np.abs(mean - ref_mean), tol)
    # class weights by moments, no classifier: E||U_l^T x||^2 / d = pi_l + delta^2 (1 - pi_l)
    pi = np.asarray(mix.weights)
    pi_hat = (energy.mean(0) / d - delta2) / (1 - delta2)
    se_pi = energy.std(0) / d / np.sqrt(num) / (1 - delta2)
    pi_bias = 2 * (pi * b_own + delta2 * (1 - pi) * b_other) / (1 - delta2)
    np.testing.assert_array_less(np.abs(pi_hat - pi), 4 * se_pi + pi_bias)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_exact_denoiser_reproduces_the_mixture(name):
    _check_mixture_reproduced(name, 2000, seed=10)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_exact_denoiser_reproduces_the_mixture_large(name):
    _check_mixture_reproduced(name, 20_000, seed=11)


# ------------------------------------------------------------------------------------------
# 4. With the empirical denoiser the samples copy the training set.
# ------------------------------------------------------------------------------------------
def test_empirical_denoiser_memorises():
    mix = _molrg(4, 10, (3, 3), delta=0.3)
    train, _ = _sample_orthogonal(mix, 20, seed=5)
    emp = lambda x, s, c: molrg.empirical_denoise(train, x, s, c, chunk_size=8)  # noqa: E731
    exact = functools.partial(molrg.denoise, mix)
    x_T, noises = _normal(6, 200, mix.n), _normal(7, 500, 200, mix.n)

    @jax.jit
    def run(x_T, noises):
        return (S.ddpm_ancestral(emp, x_T, noises, SCHED), S.heun_pf_ode(emp, 80.0 * x_T, EDM18),
                S.ddpm_ancestral(exact, x_T, noises, SCHED))

    ddpm, heun, fresh = run(x_T, noises)
    for x in (ddpm, heun):
        nn = M.nearest_neighbors(x, train)
        assert float(M.copy_fraction(x, train)) >= 0.97
        assert float(jnp.median(nn.distance)) < 1e-8  # the last step returns a training point
        assert len(np.unique(np.asarray(nn.index))) >= 15  # and it is not always the same one
    # the same noise through the exact denoiser generalises: new points, not copies
    assert float(M.copy_fraction(fresh, train)) < 0.2
    assert float(jnp.median(M.nearest_neighbors(fresh, train).distance)) > 0.3


# ------------------------------------------------------------------------------------------
# 5. Convergence order of the ODE solvers.
# ------------------------------------------------------------------------------------------
def _fitted_orders(num, euler_steps, heun_steps, ref_steps):
    mix = _molrg(7, 8, (2, 2), delta=0.3, noise=0.1)
    den = functools.partial(molrg.denoise, mix)
    x0, _ = _sample_orthogonal(mix, num, seed=8)
    x0 = x0 + float(mix.noise) * _normal(9, num, mix.n)
    x_init = x0 + 10.0 * _normal(10, num, mix.n)
    grid = lambda N: np.geomspace(10.0, 0.05, N + 1)  # noqa: E731
    ref = jax.jit(lambda x: S.heun_pf_ode(den, x, grid(ref_steps)))(x_init)
    orders = {}
    for name, solver, steps in (("euler", S.euler_pf_ode, euler_steps), ("heun", S.heun_pf_ode, heun_steps)):
        errors = []
        for N in steps:
            out = jax.jit(lambda x: solver(den, x, grid(N)))(x_init)
            errors.append(float(jnp.sqrt(jnp.mean(jnp.sum(jnp.square(out - ref), axis=-1)))))
        slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
        orders[name] = -slope
    return orders


def test_ode_convergence_orders():
    # reference: Heun with 1024 steps, error ~ 1e-6 << the smallest error fitted (~1e-3)
    orders = _fitted_orders(32, [16, 32, 64, 128], [8, 16, 32, 64], 1024)
    assert abs(orders["euler"] - 1.0) < 0.25, orders
    assert abs(orders["heun"] - 2.0) < 0.25, orders


@pytest.mark.slow
def test_ode_convergence_orders_fine():
    orders = _fitted_orders(128, [32, 64, 128, 256, 512], [16, 32, 64, 128, 256], 4096)
    assert abs(orders["euler"] - 1.0) < 0.1, orders
    assert abs(orders["heun"] - 2.0) < 0.1, orders


# ------------------------------------------------------------------------------------------
# 6. jit / vmap / dtypes / front end.
# ------------------------------------------------------------------------------------------
GRID20 = S.default_timesteps(SCHED, 20)


def test_jit_equals_eager_and_traced_grids():
    mix, den = _mixture(), _den()
    x_T, noises = _normal(12, 8, mix.n), _normal(13, 20, 8, mix.n)
    eager = S.ddpm_ancestral(den, x_T, noises, SCHED, GRID20)
    jitted = jax.jit(lambda a, b: S.ddpm_ancestral(den, a, b, SCHED, GRID20))(x_T, noises)
    traced = jax.jit(lambda a, b, t: S.ddpm_ancestral(den, a, b, SCHED, t))(x_T, noises, GRID20)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(traced, eager, rtol=1e-10, atol=1e-12)
    sig = np.append(edm_sigmas(10), 0.0)
    eager, traj = S.heun_pf_ode(den, 80.0 * x_T, sig, return_trajectory=True)
    assert traj.shape == (10, 8, mix.n)
    np.testing.assert_array_equal(traj[-1], eager)
    # traced grids, vmapped: the final step to sigma = 0 becomes a select of both branches,
    # whose unused correction must stay finite
    grids = jnp.asarray(np.stack([sig, 1.5 * sig]))
    traced = jax.jit(jax.vmap(lambda s: S.heun_pf_ode(den, 80.0 * x_T, s)))(grids)
    np.testing.assert_allclose(traced[0], eager, rtol=1e-12, atol=1e-13)
    assert bool(jnp.all(jnp.isfinite(traced))) and float(jnp.max(jnp.abs(traced[1] - eager))) > 1e-6


def test_vmap_over_seeds_and_eta():
    """vmap over pre-drawn noise of several seeds, and over eta, equals one run at a time."""
    mix, den = _mixture(), _den()
    x_T, noises = _normal(14, 3, 8, mix.n), _normal(15, 3, 20, 8, mix.n)
    run = jax.jit(lambda a, b: S.ddpm_ancestral(den, a, b, SCHED, GRID20))
    batched = jax.jit(jax.vmap(lambda a, b: S.ddpm_ancestral(den, a, b, SCHED, GRID20)))(x_T, noises)
    np.testing.assert_allclose(batched, np.stack([run(x_T[i], noises[i]) for i in range(3)]),
                               rtol=1e-10, atol=1e-12)
    etas = jnp.asarray([0.0, 0.5, 1.0])
    by_eta = jax.jit(jax.vmap(lambda e: S.ddim(den, x_T[0], SCHED, GRID20, eta=e, noises=noises[0])))(etas)
    np.testing.assert_allclose(by_eta[0], S.ddim(den, x_T[0], SCHED, GRID20), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(by_eta[2], batched[0], rtol=1e-10, atol=1e-12)


def test_sample_is_draw_noises_then_the_sampler():
    mix, den = _mixture(), _den()
    got = S.sample(den, jax.random.key(20), 8, mix.n, method="ddpm", timesteps=GRID20)
    x_T, noises = S.draw_noises(jax.random.key(20), 8, mix.n, 20)
    np.testing.assert_allclose(got, S.ddpm_ancestral(den, x_T, noises, SCHED, GRID20), rtol=1e-12)
    again = S.sample(den, jax.random.key(20), 8, mix.n, method="ddpm", timesteps=GRID20)
    np.testing.assert_array_equal(got, again)  # deterministic given the key
    # the draws are standard normal (1,920 values: SE of the std 1.6%)
    assert noises.shape == (20, 8, mix.n) and x_T.shape == (8, mix.n)
    np.testing.assert_allclose(jnp.std(noises), 1.0, rtol=0.08)
    scaled, _ = S.draw_noises(jax.random.key(20), 8, mix.n, 20, init_std=2.5)
    np.testing.assert_allclose(scaled, 2.5 * x_T, rtol=1e-14)
    np.testing.assert_array_equal(S.default_timesteps(SCHED), np.arange(499, -1, -1))
    grid = S.default_timesteps(SCHED, 11)
    assert grid[0] == 499 and grid[-1] == 0 and np.all(np.diff(grid) < 0)


@pytest.mark.slow
def test_sample_vmaps_over_keys():
    mix, den = _mixture(), _den()
    sig = np.append(edm_sigmas(10), 0.0)
    for method, kw in (("ddim", dict(timesteps=GRID20, eta=0.5)), ("heun", dict(sigmas=sig))):
        run = lambda k: S.sample(den, k, 8, mix.n, method=method, **kw)  # noqa: E731
        batched = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(13), 3))
        one_by_one = [jax.jit(run)(k) for k in jax.random.split(jax.random.key(13), 3)]
        np.testing.assert_allclose(batched, np.stack(one_by_one), rtol=1e-10, atol=1e-12)
        assert float(jnp.min(jnp.abs(batched[0] - batched[1]))) > 0  # seeds differ


def test_float32_stays_float32_and_close():
    mix, den = _mixture(), _den()
    x_T = _normal(16, 16, mix.n)
    sig = np.append(edm_sigmas(10), 0.0)
    run = jax.jit(lambda a: S.heun_pf_ode(den, a, sig))
    out64, out32 = run(80.0 * x_T), run((80.0 * x_T).astype(jnp.float32))
    assert out32.dtype == jnp.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-3, atol=1e-3)
    x32, z32 = _normal(17, 4, mix.n).astype(jnp.float32), _normal(18, 20, 4, mix.n).astype(jnp.float32)
    assert S.ddpm_ancestral(den, x32, z32, SCHED, GRID20).dtype == jnp.float32


def test_validation_errors_name_the_argument():
    mix, den = _mixture(), _den()
    x = jnp.zeros((4, mix.n))
    z = jnp.zeros((20, 4, mix.n))
    with pytest.raises(ValueError, match="^denoiser:"):
        S.ddpm_ancestral("nope", x, z, SCHED, GRID20)
    with pytest.raises(ValueError, match="^x_T:"):
        S.ddpm_ancestral(den, x[0], z, SCHED, GRID20)
    with pytest.raises(ValueError, match="^noises:"):
        S.ddpm_ancestral(den, x, z[:5], SCHED, GRID20)
    with pytest.raises(ValueError, match="^timesteps:"):
        S.ddpm_ancestral(den, x, z, SCHED, GRID20[::-1])
    with pytest.raises(ValueError, match="^timesteps:"):
        S.ddpm_ancestral(den, x, z[:2], SCHED, np.asarray([500, 3]))
    with pytest.raises(ValueError, match="^timesteps:"):
        S.ddpm_ancestral(den, x, z[:2], SCHED, np.asarray([5.0, 3.0]))
    with pytest.raises(ValueError, match="^schedule:"):
        S.ddim(den, x, "linear", GRID20)
    with pytest.raises(ValueError, match="^eta:"):
        S.ddim(den, x, SCHED, GRID20, eta=1.5, noises=z)
    with pytest.raises(ValueError, match="^noises:"):
        S.ddim(den, x, SCHED, GRID20, eta=0.5)
    with pytest.raises(ValueError, match="^sigmas:"):
        S.heun_pf_ode(den, x, np.asarray([1.0, 2.0]))
    with pytest.raises(ValueError, match="^sigmas:"):
        S.euler_pf_ode(den, x, np.asarray([2.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="^sigmas:"):
        S.euler_pf_ode(den, x, np.asarray([2.0]))
    with pytest.raises(ValueError, match="^x_init:"):
        S.euler_pf_ode(den, x.at[0, 0].set(jnp.nan), np.asarray([2.0, 1.0]))
    with pytest.raises(ValueError, match="^method:"):
        S.sample(den, jax.random.key(0), 4, mix.n, method="dpm++")
    with pytest.raises(ValueError, match="^sigmas:"):
        S.sample(den, jax.random.key(0), 4, mix.n, method="ddpm", sigmas=EDM18)
    with pytest.raises(ValueError, match="^num:"):
        S.draw_noises(jax.random.key(0), 0, mix.n, 3)
    with pytest.raises(ValueError, match="^num_steps:"):
        S.default_timesteps(SCHED, 501)
