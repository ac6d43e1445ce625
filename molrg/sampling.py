"""Samplers for a denoiser: DDPM ancestral, DDIM, and probability-flow ODE solvers.

Every sampler is generic over the denoiser. A *denoiser* is any callable

    x0_hat = denoiser(x_t, sigma, scale)        x_t (B, n), sigma and scale scalars

that estimates ``E[x_0 | x_t]`` under molrg's convention ``x_t = scale (x_0 + sigma eps)``
(docs/theory.md section 1). Wrap what you have with ``functools.partial`` or a lambda:

    functools.partial(molrg.denoise, mix)                         # the exact optimum
    lambda x, s, c: molrg.empirical_denoise(train, x, s, c)       # the memorising optimum
    lambda x, s, c: net.apply(params, x, s, c)                    # a trained network

Every sampler is one ``lax.scan`` over steps that consumes *pre-drawn* noise
(:func:`draw_noises`), so a run is a deterministic function of its inputs:
reproducible, ``jit``-able and ``vmap``-able (over seeds, i.e. over pre-drawn noise, or
over ``eta``). The samplers are not jitted internally because the denoiser is an
arbitrary closure; wrap the call in ``jax.jit`` (closing over the denoiser).

Samplers (``abar_t`` is ``schedule.alphas_cumprod[t]``; a step goes from timestep ``t``
to the next, smaller, timestep ``s`` of the grid, with ``abar_s = 1`` after the last):

* :func:`ddpm_ancestral` -- Ho et al. (2020), eqs. (6)-(7), with the posterior variance
  ``beta~``: ``x_s = mean(x_t, x0_hat) + std z`` with the Gaussian posterior
  ``q(x_s | x_t, x_0)`` of the VP process,

      mean = sqrt(abar_s) b / (1 - abar_t) x0_hat + sqrt(a) (1 - abar_s) / (1 - abar_t) x_t
      std^2 = b (1 - abar_s) / (1 - abar_t),        a = abar_t / abar_s,  b = 1 - a.

  On the full grid (``s = t - 1``) ``b`` is ``beta_t``; on a sub-grid it is the beta of
  the skipped block. The last step returns ``x0_hat`` (``std = 0``).
* :func:`ddim` -- Song et al. (2021), eq. (12): with ``eps_hat = (x_t / scale_t -
  x0_hat) / sigma_t`` (molrg's ``eps`` is the VP ``eps``),

      x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - c^2) eps_hat + c z,   c = eta std.

  ``eta = 1`` is the ancestral sampler above (same noise, same result); ``eta = 0`` is
  deterministic, and is Euler's method for the probability-flow ODE in the
  coordinates ``x / scale`` (``x_s / scale_s = x0_hat + (sigma_s / sigma_t)(x_t /
  scale_t - x0_hat)``).
* :func:`euler_pf_ode`, :func:`heun_pf_ode` -- the probability-flow ODE in the
  variance-exploding (EDM) form, Karras et al. (2022), Algorithm 1,

      dx / dsigma = (x - D(x, sigma)) / sigma,        scale = 1,

  integrated along a decreasing grid of sigmas (e.g. :func:`molrg.schedules.edm_sigmas`,
  optionally ending at ``sigma = 0``). Heun averages the slopes at both ends of a step;
  a step to ``sigma = 0`` is an Euler step, which returns ``D(x, sigma)``.

All coefficient tables are computed in float64 NumPy when the grid is concrete (the
usual case) and cast to the dtype of ``x``; the state stays in that dtype.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from molrg._validate import as_float, check_finite, check_key, check_positive, fail, is_concrete
from molrg.schedules import DDPMLinear, edm_sigmas

Array = jax.Array
Denoiser = Callable[[Array, Array, Array], Array]

__all__ = [
    "Denoiser",
    "METHODS",
    "ddpm_ancestral",
    "ddim",
    "euler_pf_ode",
    "heun_pf_ode",
    "draw_noises",
    "default_timesteps",
    "sample",
]

#: The ``method`` names of :func:`sample`.
METHODS = ("ddpm", "ddim", "euler", "heun")


# ------------------------------------------------------------------------------------------
# Input checks (shapes always; values only where concrete).
# ------------------------------------------------------------------------------------------
def _check_denoiser(denoiser) -> None:
    if not callable(denoiser):
        fail("denoiser", f"must be a callable x0_hat = denoiser(x_t, sigma, scale); got "
             f"{type(denoiser).__name__}")


def _vp_setup(denoiser, x_T, schedule, timesteps):
    """The shared checks of the VP samplers: ``(schedule, x_T, timesteps, num_steps)``."""
    _check_denoiser(denoiser)
    schedule = DDPMLinear() if schedule is None else schedule
    _check_schedule(schedule)
    x = _float_state("x_T", x_T)
    timesteps = _check_timesteps(schedule, timesteps)
    return schedule, x, timesteps, int(np.shape(timesteps)[0])


def _float_state(name: str, x) -> Array:
    """The sampler state ``(B, n)`` as a floating array."""
    shape = np.shape(x)
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        fail(name, f"must have shape (batch, n); got shape {shape}")
    check_finite(name, x)
    x = as_float(x)
    return x


def _check_noises(noises, num_steps: int, x: Array) -> Array:
    want = (num_steps,) + tuple(x.shape)
    if np.shape(noises) != want:
        fail("noises", f"must have shape (num_steps, batch, n) = {want}, one standard normal "
             f"draw per step; got shape {np.shape(noises)}")
    check_finite("noises", noises)
    noises = jnp.asarray(noises)
    if noises.dtype != x.dtype:
        noises = noises.astype(x.dtype)
    return noises


def _check_schedule(schedule) -> None:
    if not isinstance(schedule, DDPMLinear):
        fail("schedule", f"must be a molrg.schedules.DDPMLinear; got {type(schedule).__name__}")


def default_timesteps(schedule: DDPMLinear, num_steps: int | None = None) -> np.ndarray:
    """A decreasing grid of ``num_steps`` timesteps ending at 0 (all T when None).

    Evenly spaced ("linear" spacing of DDIM): ``round(linspace(T - 1, 0, num_steps))``.
    """
    _check_schedule(schedule)
    if num_steps is None:
        return np.arange(schedule.T - 1, -1, -1)
    if not isinstance(num_steps, (int, np.integer)) or not 1 <= num_steps <= schedule.T:
        fail("num_steps", f"must be an integer in [1, T] = [1, {schedule.T}]; got {num_steps!r}")
    if num_steps == 1:
        return np.asarray([schedule.T - 1])
    return np.round(np.linspace(schedule.T - 1, 0, num_steps)).astype(np.int64)


def _check_timesteps(schedule: DDPMLinear, timesteps):
    if timesteps is None:
        return default_timesteps(schedule)
    shape = np.shape(timesteps)
    if len(shape) != 1 or shape[0] < 1:
        fail("timesteps", f"must be a non-empty 1-D array of integer time indices; got shape {shape}")
    if is_concrete(timesteps):
        t = np.asarray(timesteps)
        if not np.issubdtype(t.dtype, np.integer):
            fail("timesteps", f"must be integer time indices; got dtype {t.dtype}")
        if t.min() < 0 or t.max() >= schedule.T:
            fail("timesteps", f"must lie in [0, T-1] = [0, {schedule.T - 1}]; got range "
                 f"[{t.min()}, {t.max()}]")
        if np.any(np.diff(t) >= 0):
            fail("timesteps", "must be strictly decreasing (sampling runs from noise to data)")
        return t
    if not jnp.issubdtype(jnp.asarray(timesteps).dtype, jnp.integer):
        fail("timesteps", f"must be integer time indices; got dtype {jnp.asarray(timesteps).dtype}")
    return timesteps


def _check_sigmas(sigmas) -> None:
    shape = np.shape(sigmas)
    if len(shape) != 1 or shape[0] < 2:
        fail("sigmas", f"must be a 1-D grid of at least 2 noise levels; got shape {shape}")
    if is_concrete(sigmas):
        s = np.asarray(sigmas, np.float64)
        if not np.all(np.isfinite(s)):
            fail("sigmas", "must be finite")
        if np.any(s[:-1] <= 0) or s[-1] < 0:
            fail("sigmas", "must be > 0, except that the last may be exactly 0")
        if np.any(np.diff(s) >= 0):
            fail("sigmas", "must be strictly decreasing (sampling runs from noise to data)")


# ------------------------------------------------------------------------------------------
# VP coefficient tables.
# ------------------------------------------------------------------------------------------
def _vp_table(schedule: DDPMLinear, timesteps, dtype):
    """Per-step ``(sigma_t, scale_t, c_x0, c_xt, std, sqrt(abar_s), 1 - abar_s)``."""
    if is_concrete(timesteps):
        xp, cast = np, (lambda a: jnp.asarray(a, dtype))
        abar_all = schedule.alphas_cumprod  # float64 NumPy
        t = np.asarray(timesteps)
    else:  # traced grid: the same formulas in the working dtype
        xp, cast = jnp, (lambda a: a.astype(dtype))
        abar_all = jnp.asarray(schedule.alphas_cumprod, dtype)
        t = timesteps
    abar_t = abar_all[t]
    abar_s = xp.concatenate([abar_t[1:], xp.ones((1,), abar_t.dtype)])
    ratio = abar_t / abar_s  # alpha of the (possibly skipped) step
    beta = 1.0 - ratio
    one_minus_t = 1.0 - abar_t
    one_minus_s = 1.0 - abar_s
    table = dict(
        sigma=xp.sqrt(one_minus_t / abar_t),
        scale=xp.sqrt(abar_t),
        c_x0=xp.sqrt(abar_s) * beta / one_minus_t,
        c_xt=xp.sqrt(ratio) * one_minus_s / one_minus_t,
        std=xp.sqrt(beta * one_minus_s / one_minus_t),
        sqrt_abar_s=xp.sqrt(abar_s),
        one_minus_s=one_minus_s,
    )
    return {k: cast(v) for k, v in table.items()}


def _scan(body, x, xs, return_trajectory):
    def step(carry, inputs):
        new = body(carry, inputs)
        return new, (new if return_trajectory else None)

    out, traj = lax.scan(step, x, xs)
    return (out, traj) if return_trajectory else out


# ------------------------------------------------------------------------------------------
# Samplers.
# ------------------------------------------------------------------------------------------
def ddpm_ancestral(denoiser: Denoiser, x_T, noises, schedule: DDPMLinear | None = None,
                   timesteps=None, *, return_trajectory: bool = False):
    """DDPM ancestral sampling with the posterior-mean parameterisation.

    Each step replaces ``x_0`` by ``x0_hat = denoiser(x_t, sigma_t, scale_t)`` in the
    Gaussian posterior ``q(x_s | x_t, x_0)`` of the VP process (module docstring; Ho et
    al. 2020, eqs. 6-7, variance ``beta~``), and draws from it with the pre-drawn noise.

    Args:
      denoiser: ``x0_hat = denoiser(x_t, sigma, scale)`` (module docstring).
      x_T: ``(B, n)`` starting points at ``timesteps[0]``; ``N(0, I)`` is the usual
        approximation of the VP marginal at the last timestep.
      noises: ``(num_steps, B, n)`` standard normal draws, one per step (the last step is
        noiseless, so ``noises[-1]`` is not used).
      schedule: the VP schedule (default: P1's ``DDPMLinear(T=500)``).
      timesteps: decreasing integer time indices to visit (default: all,
        ``T-1, ..., 0``); after the last one the sampler returns ``x0_hat``.
      return_trajectory: also return the ``(num_steps, B, n)`` states after each step.

    Returns:
      ``(B, n)`` samples (and the trajectory), in ``x_T``'s dtype.

    Example:
      >>> den = functools.partial(molrg.denoise, mix)
      >>> x_T, noises = draw_noises(jax.random.key(0), 100, mix.n, 500)
      >>> x0 = jax.jit(lambda a, z: ddpm_ancestral(den, a, z))(x_T, noises)
    """
    schedule, x, timesteps, num_steps = _vp_setup(denoiser, x_T, schedule, timesteps)
    noises = _check_noises(noises, num_steps, x)
    tab = _vp_table(schedule, timesteps, x.dtype)

    def body(x, inputs):
        sigma, scale, c_x0, c_xt, std, z = inputs
        x0_hat = denoiser(x, sigma, scale)
        return c_x0 * x0_hat + c_xt * x + std * z

    xs = (tab["sigma"], tab["scale"], tab["c_x0"], tab["c_xt"], tab["std"], noises)
    return _scan(body, x, xs, return_trajectory)


def ddim(denoiser: Denoiser, x_T, schedule: DDPMLinear | None = None, timesteps=None,
         eta=0.0, noises=None, *, return_trajectory: bool = False):
    """DDIM sampling (Song et al. 2021, eq. 12), deterministic for ``eta = 0``.

    Args:
      denoiser: ``x0_hat = denoiser(x_t, sigma, scale)``.
      x_T: ``(B, n)`` starting points at ``timesteps[0]``.
      schedule: the VP schedule (default ``DDPMLinear(T=500)``).
      timesteps: decreasing integer time indices (default: all T; see
        :func:`default_timesteps` for a sub-grid).
      eta: stochasticity in ``[0, 1]``, a scalar (traceable); 1 equals
        :func:`ddpm_ancestral` on the same grid and noise.
      noises: ``(num_steps, B, n)`` standard normal draws; required unless ``eta`` is the
        concrete value 0.
      return_trajectory: also return the states after each step.

    Returns:
      ``(B, n)`` samples (and the ``(num_steps, B, n)`` trajectory).
    """
    schedule, x, timesteps, num_steps = _vp_setup(denoiser, x_T, schedule, timesteps)
    if np.shape(eta) != ():
        fail("eta", f"must be a scalar; got shape {np.shape(eta)}")
    if is_concrete(eta):
        e = float(np.asarray(eta))
        if not (0.0 <= e <= 1.0):
            fail("eta", f"must lie in [0, 1]; got {e:g}")
    deterministic = is_concrete(eta) and float(np.asarray(eta)) == 0.0
    if noises is None:
        if not deterministic:
            fail("noises", "are required when eta may be > 0 (draw them with draw_noises)")
        noises = jnp.zeros((num_steps,) + tuple(x.shape), x.dtype)
    else:
        noises = _check_noises(noises, num_steps, x)
    tab = _vp_table(schedule, timesteps, x.dtype)
    eta = jnp.asarray(eta, x.dtype)

    def body(x, inputs):
        sigma, scale, std, sqrt_abar_s, one_minus_s, z = inputs
        x0_hat = denoiser(x, sigma, scale)
        eps_hat = (x / scale - x0_hat) / sigma
        if deterministic:
            return sqrt_abar_s * x0_hat + jnp.sqrt(one_minus_s) * eps_hat
        c = eta * std
        # max(., 0): 1 - abar_s - c^2 >= 0 exactly for eta <= 1; guard the last rounding bit.
        return (sqrt_abar_s * x0_hat + jnp.sqrt(jnp.maximum(one_minus_s - c * c, 0.0)) * eps_hat
                + c * z)

    xs = (tab["sigma"], tab["scale"], tab["std"], tab["sqrt_abar_s"], tab["one_minus_s"], noises)
    return _scan(body, x, xs, return_trajectory)


def _ode_setup(denoiser, x_init, sigmas):
    _check_denoiser(denoiser)
    x = _float_state("x_init", x_init)
    _check_sigmas(sigmas)
    if is_concrete(sigmas):
        s = jnp.asarray(np.asarray(sigmas, np.float64), x.dtype)
    else:
        s = jnp.asarray(sigmas).astype(x.dtype)
    return x, s[:-1], s[1:], jnp.ones((), x.dtype)


def euler_pf_ode(denoiser: Denoiser, x_init, sigmas, *, return_trajectory: bool = False):
    """Euler's method for the VE probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``.

    Args:
      denoiser: ``x0_hat = denoiser(x, sigma, scale)``; called with ``scale = 1``.
      x_init: ``(B, n)`` points at ``sigmas[0]`` (e.g. ``sigmas[0] * N(0, I)``).
      sigmas: strictly decreasing ``(num_steps + 1,)`` grid, > 0 except possibly a final 0.
      return_trajectory: also return the ``(num_steps, B, n)`` states after each step.

    Returns:
      ``(B, n)`` the state at ``sigmas[-1]`` (and the trajectory). Global error ``O(h)``.
    """
    x, s_cur, s_next, one = _ode_setup(denoiser, x_init, sigmas)

    def body(x, inputs):
        sc, sn = inputs
        slope = (x - denoiser(x, sc, one)) / sc
        return x + (sn - sc) * slope

    return _scan(body, x, (s_cur, s_next), return_trajectory)


def heun_pf_ode(denoiser: Denoiser, x_init, sigmas, *, return_trajectory: bool = False):
    """Heun's (2nd-order) method for the VE probability-flow ODE (Karras et al. 2022, Alg. 1).

    ``x' = x + h d(x, sigma_i)``, then ``x_{i+1} = x + h (d(x, sigma_i) + d(x', sigma_{i+1})) / 2``
    with ``h = sigma_{i+1} - sigma_i`` and ``d(x, sigma) = (x - D(x, sigma)) / sigma``; a
    step to ``sigma = 0`` skips the correction (``d`` is undefined there) and returns
    ``x' = D(x, sigma_i)``. Two denoiser calls per step (one for a step to 0).

    Args and returns as :func:`euler_pf_ode`. Global error ``O(h^2)``.
    """
    x, s_cur, s_next, one = _ode_setup(denoiser, x_init, sigmas)

    def body(x, inputs):
        sc, sn = inputs
        h = sn - sc
        slope = (x - denoiser(x, sc, one)) / sc
        x_euler = x + h * slope

        def correct(_):
            # The safe sigma keeps the unused branch finite when vmap turns cond into select.
            sn_safe = jnp.where(sn > 0, sn, one)
            slope2 = (x_euler - denoiser(x_euler, sn_safe, one)) / sn_safe
            return x + (0.5 * h) * (slope + slope2)

        return lax.cond(sn > 0, correct, lambda _: x_euler, None)

    return _scan(body, x, (s_cur, s_next), return_trajectory)


# ------------------------------------------------------------------------------------------
# Drawing the noise, and a one-call front end.
# ------------------------------------------------------------------------------------------
def draw_noises(key: Array, num: int, n: int, num_steps: int, *, init_std=1.0,
                dtype=None) -> tuple[Array, Array]:
    """The starting points and per-step noise of a sampler, from one key.

    Args:
      key: a PRNG key, ``jax.random.key(seed)`` or a legacy uint32 ``(2,)`` key (consumed by
        one draw of shape ``(num_steps + 1, num, n)``).
      num: number of samples B.
      n: ambient dimension.
      num_steps: number of sampler steps (0 for the ODE solvers).
      init_std: standard deviation of the starting points (1 for VP samplers,
        ``sigmas[0]`` for the VE ODE); a scalar, traceable.
      dtype: floating dtype (default: JAX's default float).

    Returns:
      ``(x_init, noises)``: ``(num, n)`` ``init_std * N(0, I)`` and ``(num_steps, num, n)``
      standard normal draws.
    """
    check_key("key", key)
    for name, value, lo in (("num", num, 1), ("n", n, 1), ("num_steps", num_steps, 0)):
        if not isinstance(value, (int, np.integer)) or value < lo:
            fail(name, f"must be an integer >= {lo}; got {value!r}")
    if np.shape(init_std) != ():
        fail("init_std", f"must be a scalar; got shape {np.shape(init_std)}")
    check_positive("init_std", init_std)
    dtype = jnp.dtype(dtype or jnp.zeros((), dtype=float).dtype)
    return _draw(key, jnp.asarray(init_std, dtype), (num_steps + 1, num, n))


@functools.partial(jax.jit, static_argnames=("shape",))
def _draw(key, init_std, shape):
    # One draw for the start and every step: a single compiled random program per shape
    # (threefry is slow to compile on CPU), and no key to split.
    draws = jax.random.normal(key, shape, init_std.dtype)
    return init_std * draws[0], draws[1:]


def sample(denoiser: Denoiser, key: Array, num: int, n: int, *, method: str = "ddpm",
           schedule: DDPMLinear | None = None, timesteps=None, eta=0.0, sigmas=None,
           dtype=None) -> Array:
    """Draws ``num`` samples: :func:`draw_noises`, then the chosen sampler.

    Args:
      denoiser: ``x0_hat = denoiser(x_t, sigma, scale)``.
      key: a PRNG key (``vmap`` over keys for several seeds).
      num, n: number of samples and ambient dimension (static).
      method: ``"ddpm"`` (:func:`ddpm_ancestral`), ``"ddim"`` (:func:`ddim`, with ``eta``),
        ``"euler"`` or ``"heun"`` (the VE PF-ODE solvers).
      schedule, timesteps: the VP grid for ``"ddpm"``/``"ddim"`` (default: all 500 steps
        of P1's schedule). VP samplers start from ``N(0, I)``.
      eta: DDIM stochasticity.
      sigmas: the VE grid for ``"euler"``/``"heun"`` (default ``edm_sigmas(18)`` followed
        by 0). ODE samplers start from ``sigmas[0] * N(0, I)``, which ignores the data's
        own variance (relative error ``~ Var(x_0) / sigma_max^2``).
      dtype: floating dtype (default: JAX's default float).

    Returns:
      ``(num, n)`` samples.

    Example:
      >>> den = functools.partial(molrg.denoise, mix)
      >>> x = jax.jit(lambda k: sample(den, k, 1000, mix.n, method="heun"))(jax.random.key(0))
    """
    if method not in METHODS:
        fail("method", f"must be one of {METHODS}; got {method!r}")
    if method in ("ddpm", "ddim"):
        if sigmas is not None:
            fail("sigmas", f"is for the ODE methods ('euler', 'heun'), not {method!r}")
        schedule = DDPMLinear() if schedule is None else schedule
        _check_schedule(schedule)
        timesteps = _check_timesteps(schedule, timesteps)
        num_steps = int(np.shape(timesteps)[0])
        x_init, noises = draw_noises(key, num, n, num_steps, dtype=dtype)
        if method == "ddpm":
            return ddpm_ancestral(denoiser, x_init, noises, schedule, timesteps)
        return ddim(denoiser, x_init, schedule, timesteps, eta=eta, noises=noises)
    if schedule is not None or timesteps is not None:
        fail("schedule/timesteps", f"are for the VP methods ('ddpm', 'ddim'), not {method!r}")
    if sigmas is None:
        sigmas = np.concatenate([edm_sigmas(18), [0.0]])
    _check_sigmas(sigmas)
    init_std = sigmas[0] if is_concrete(sigmas) else jnp.asarray(sigmas)[0]
    x_init, _ = draw_noises(key, num, n, 0, init_std=init_std, dtype=dtype)
    solver = euler_pf_ode if method == "euler" else heun_pf_ode
    return solver(denoiser, x_init, sigmas)
