"""Noise schedules (docs/theory.md section 1).

molrg's convention is ``x_t = scale * (x_0 + sigma * eps)``; a schedule maps time to
``(sigma, scale)``. For a variance-preserving process ``x_t = sqrt(abar) x_0 +
sqrt(1 - abar) eps`` this means ``scale = sqrt(abar)`` and
``sigma = sqrt((1 - abar) / abar)``; the signal-to-noise ratio is ``1 / sigma^2`` in
every case, so ``logsnr = -2 log sigma``.

Schedules:
  * :class:`VE` -- variance exploding, indexed by sigma itself (P1's theory).
  * :class:`DDPMLinear` -- discrete DDPM with linear betas (P1's toy experiments:
    T = 500, betas 1e-4..0.02, as in the "tiny-diffusion" project). Time is the 0-based
    index ``t in {0, ..., T-1}`` with ``abar_t = prod_{i<=t} (1 - beta_i)``.
  * :class:`Cosine` -- Nichol & Dhariwal's cosine schedule, continuous ``t in [0, 1]``.
  * :func:`edm_sigmas` -- the sigma grid of Karras et al. (EDM), with ``scale = 1``.

Training noise distributions (how a training step draws ``(sigma, scale)``; used by
:mod:`molrg.training`): :class:`DDPMNoise` (a DDPM timestep, uniform or EDM-weighted),
:class:`LogNormalNoise` (EDM) and :class:`LogUniformNoise` (VE).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from molrg._validate import check_positive, fail, is_concrete

Array = jax.Array

#: P1's sigma grid (its relaxation tables).
PAPER_SIGMAS = (0.002, 0.008, 0.023, 0.060, 0.140, 0.296, 0.585, 1.088, 1.923)
#: P1's DDPM timesteps (of T = 500) for its MoLRG figures.
PAPER_TIMESTEPS = (5, 10, 20, 40, 60, 80, 100, 120, 140, 160, 180, 240, 260, 280)


def logsnr_from_sigma(sigma) -> Array:
    """``log SNR = -2 log sigma`` (for the convention ``x_t = s (x_0 + sigma eps)``)."""
    check_positive("sigma", sigma)
    return -2.0 * jnp.log(jnp.asarray(sigma))


def sigma_from_logsnr(logsnr) -> Array:
    """Inverse of :func:`logsnr_from_sigma`: ``sigma = exp(-logsnr / 2)``."""
    return jnp.exp(-0.5 * jnp.asarray(logsnr))


def vp_scale(sigma) -> Array:
    """The variance-preserving scale ``s = sqrt(abar) = 1 / sqrt(1 + sigma^2)``."""
    return jax.lax.rsqrt(1.0 + jnp.square(jnp.asarray(sigma)))


def vp_scale_from_logsnr(logsnr) -> Array:
    """``s = sqrt(sigmoid(logsnr))``: the VP scale at a given log-SNR."""
    return jnp.sqrt(jax.nn.sigmoid(jnp.asarray(logsnr)))


@dataclasses.dataclass(frozen=True)
class VE:
    """Variance exploding: time *is* sigma, ``scale = 1``."""

    def __call__(self, t):
        check_positive("t", t)
        sigma = jnp.asarray(t)
        return sigma, jnp.ones_like(sigma)


@dataclasses.dataclass(frozen=True)
class DDPMLinear:
    """Discrete DDPM with linearly spaced betas.

    Attributes:
      T: number of steps.
      beta_start, beta_end: the first and last beta.
    """

    T: int = 500
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self):
        if not isinstance(self.T, (int, np.integer)) or self.T < 1:
            fail("T", f"must be a positive integer; got {self.T!r}")
        if not (0.0 < self.beta_start <= self.beta_end < 1.0):
            fail("beta_start/beta_end", f"need 0 < beta_start <= beta_end < 1; got "
                 f"{self.beta_start}, {self.beta_end}")

    @property
    def betas(self) -> np.ndarray:
        return np.linspace(self.beta_start, self.beta_end, self.T, dtype=np.float64)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """``abar_t`` for ``t = 0..T-1`` (float64 NumPy, computed once)."""
        return np.cumprod(1.0 - self.betas)

    @property
    def sigmas(self) -> np.ndarray:
        abar = self.alphas_cumprod
        return np.sqrt((1.0 - abar) / abar)

    def __call__(self, t):
        """``(sigma, scale)`` at integer time index ``t`` (array or scalar, 0-based)."""
        if is_concrete(t):
            arr = np.asarray(t)
            if not np.issubdtype(arr.dtype, np.integer):
                fail("t", f"must be integer time indices; got dtype {arr.dtype}")
            if arr.size and (arr.min() < 0 or arr.max() >= self.T):
                fail("t", f"must lie in [0, T-1] = [0, {self.T - 1}]; got range "
                     f"[{arr.min()}, {arr.max()}]")
        abar = jnp.asarray(self.alphas_cumprod, jnp.zeros((), dtype=float).dtype)[jnp.asarray(t)]
        return jnp.sqrt((1.0 - abar) / abar), jnp.sqrt(abar)


@dataclasses.dataclass(frozen=True)
class Cosine:
    """Cosine schedule: ``abar(t) = f(t) / f(0)``, ``f(t) = cos^2((t + s)/(1 + s) pi/2)``.

    Continuous ``t in [0, t_max]``; ``t_max < 1`` keeps sigma finite (default 0.999).
    """

    s: float = 0.008
    t_max: float = 0.999

    def __call__(self, t):
        if is_concrete(t):
            arr = np.asarray(t, np.float64)
            if arr.size and (arr.min() < 0 or arr.max() > self.t_max):
                fail("t", f"must lie in [0, t_max] = [0, {self.t_max}]")
        t = jnp.asarray(t, jnp.zeros((), dtype=float).dtype)
        f = lambda u: jnp.square(jnp.cos((u + self.s) / (1.0 + self.s) * jnp.pi / 2))  # noqa: E731
        abar = f(t) / f(jnp.zeros_like(t))
        # sigma^2 = (1 - abar) / abar; keep t = 0 exactly noiseless rather than 0/0 noise.
        return jnp.sqrt(jnp.maximum(1.0 - abar, 0.0) / abar), jnp.sqrt(abar)


def edm_sigmas(num: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0,
               rho: float = 7.0) -> np.ndarray:
    """EDM's sampling grid (Karras et al. 2022, eq. 5), decreasing from sigma_max.

    ``sigma_i = (sigma_max^(1/rho) + i/(num-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``.
    """
    if not isinstance(num, (int, np.integer)) or num < 2:
        fail("num", f"must be an integer >= 2; got {num!r}")
    if not (0 < sigma_min < sigma_max):
        fail("sigma_min/sigma_max", f"need 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
    check_positive("rho", rho)
    i = np.arange(num) / (num - 1)
    return (sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def paper_timestep_sigmas(schedule: DDPMLinear | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(sigma, scale)`` at :data:`PAPER_TIMESTEPS` under the paper's DDPM schedule."""
    schedule = schedule or DDPMLinear()
    abar = schedule.alphas_cumprod[np.asarray(PAPER_TIMESTEPS)]
    return np.sqrt((1 - abar) / abar), np.sqrt(abar)


# ----------------------------------------------------------------------------------------
# Training noise distributions: how a training step draws (sigma, scale).
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DDPMNoise:
    """``t ~ Uniform{0, ..., T-1}`` of a :class:`molrg.schedules.DDPMLinear` schedule.

    Default: P1's T = 500, betas 1e-4..0.02. Evaluation levels: P1's timesteps
    (:data:`molrg.schedules.PAPER_TIMESTEPS`).

    ``weighting="edm"`` draws ``t`` with probability proportional to EDM's loss weight
    ``lambda(sigma_t) = 1 / sigma_t^2 + 1 / sigma_data^2`` (Karras et al. 2022, the
    ``1 / c_out^2`` of :class:`molrg.networks.MLPDenoiser`'s preconditioning) instead.
    Importance sampling: the unweighted loss's expected gradient is then that of the
    ``lambda``-weighted loss over uniform ``t`` (up to a constant factor), with no heavy
    per-sample weights. P1's own loss is ``"uniform"``.
    """

    schedule: DDPMLinear = DDPMLinear()
    weighting: str = "uniform"
    sigma_data: float = 0.5

    def __post_init__(self):
        if self.weighting not in ("uniform", "edm"):
            fail("weighting", f"must be 'uniform' or 'edm'; got {self.weighting!r}")
        if not (math.isfinite(self.sigma_data) and self.sigma_data > 0):
            fail("sigma_data", f"must be finite and > 0; got {self.sigma_data!r}")

    def probabilities(self) -> np.ndarray:
        """``P(t)`` for ``t = 0..T-1`` (float64, sums to 1)."""
        T = self.schedule.T
        if self.weighting == "uniform":
            return np.full(T, 1.0 / T)
        w = 1.0 / np.square(self.schedule.sigmas) + 1.0 / self.sigma_data**2
        return w / w.sum()

    def from_normal(self, z: Array) -> tuple[Array, Array]:
        """``(sigma, scale)`` from standard normals ``z`` by inverse transform.

        ``t = floor(Phi(z) T)`` is uniform on ``{0, ..., T-1}`` (``"edm"``: the first
        ``t`` whose cumulative probability exceeds ``Phi(z)``); ``(sigma, scale)`` are
        read from the float64 tables cast to ``z``'s dtype.
        """
        T = self.schedule.T
        if self.weighting == "uniform":
            t = jnp.clip(jnp.floor(jax.scipy.special.ndtr(z) * T).astype(jnp.int32), 0, T - 1)
        else:
            cdf = jnp.asarray(np.cumsum(self.probabilities()), z.dtype)
            t = jnp.clip(jnp.searchsorted(cdf, jax.scipy.special.ndtr(z), side="right"), 0, T - 1)
        sigmas = jnp.asarray(self.schedule.sigmas, z.dtype)
        scales = jnp.asarray(np.sqrt(self.schedule.alphas_cumprod), z.dtype)
        return sigmas[t], scales[t]

    def eval_levels(self) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray([t for t in PAPER_TIMESTEPS if t < self.schedule.T])
        return self.schedule.sigmas[t], np.sqrt(self.schedule.alphas_cumprod[t])


@dataclasses.dataclass(frozen=True)
class LogNormalNoise:
    """EDM's training distribution ``log sigma ~ N(p_mean, p_std^2)``, ``scale = 1``.

    Evaluation levels: P1's sigma grid (:data:`molrg.schedules.PAPER_SIGMAS`).
    """

    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self):
        if not (math.isfinite(self.p_mean) and math.isfinite(self.p_std) and self.p_std > 0):
            fail("p_mean/p_std", f"need finite p_mean and p_std > 0; got {self.p_mean}, {self.p_std}")

    def from_normal(self, z: Array) -> tuple[Array, Array]:
        """``(sigma, scale)`` from standard normals ``z``."""
        return jnp.exp(self.p_mean + self.p_std * z), jnp.ones_like(z)

    def eval_levels(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(PAPER_SIGMAS), np.ones(len(PAPER_SIGMAS))


@dataclasses.dataclass(frozen=True)
class LogUniformNoise:
    """``log sigma ~ Uniform[log sigma_min, log sigma_max]``, ``scale = 1`` (VE)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self):
        if not (0 < self.sigma_min < self.sigma_max < math.inf):
            fail("sigma_min/sigma_max", f"need 0 < sigma_min < sigma_max < inf; got "
                 f"{self.sigma_min}, {self.sigma_max}")

    def from_normal(self, z: Array) -> tuple[Array, Array]:
        """``(sigma, scale)`` from standard normals ``z`` by inverse transform."""
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return jnp.exp(lo + (hi - lo) * jax.scipy.special.ndtr(z)), jnp.ones_like(z)

    def eval_levels(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(PAPER_SIGMAS), np.ones(len(PAPER_SIGMAS))
