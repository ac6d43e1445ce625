"""Theory of P1 in its own setting: Theorem 1 and the exact SNR of the optimal denoiser.

Setting (docs/theory.md sections 3, 5, 6; P1 Assumption 1): K classes on mutually orthogonal
subspaces of equal dimension d, uniform weights, zero means, ``eta = 0``, scale
``s = 1`` (variance exploding, ``x_t = x_0 + sigma * eps``), class-irrelevant detail
level ``0 <= delta < 1``.

With ``e_l = ||U_l^T x_t||^2`` the block energies, the optimal denoiser is (docs/theory.md section 3)

    E[x_0 | x_t] = sum_l beta_l U_l U_l^T x_t,   beta_l = xi + (zeta - xi) w_l,
    w = softmax(a * e),   a = (1 - delta^2) / (2 (1 + sigma^2)(delta^2 + sigma^2)),
    zeta = 1 / (1 + sigma^2),   xi = delta^2 / (delta^2 + sigma^2).

For an input of class k the energies are independent, ``e_k ~ (1 + sigma^2) chi2_d`` and
``e_l ~ (delta^2 + sigma^2) chi2_d`` for ``l != k``, and

    ||P_k xh||^2 = beta_k^2 e_k,     ||xh - P_k xh||^2 = sum_{l != k} beta_l^2 e_l,

so the SNR of P1's Definition 1 (docs/theory.md section 5; all classes are equal by symmetry)

    SNR(sigma) = E[beta_k^2 e_k] / E[sum_{l != k} beta_l^2 e_l]

is an expectation over K chi-square variables; the n-dimensional model is never needed.
Three ways to get it:

- :func:`approx_snr`: P1's Theorem 1 (posterior weights replaced by "typical" values).
- :func:`exact_snr`: Monte Carlo over the chi-squares with a delta-method standard error.
- :func:`exact_snr_quadrature`: deterministic, ~1e-12 relative in float64, and the
  fastest (see its docstring for the integral representation it uses).

Every function is vectorised over ``sigma`` (array in, array of the same shape out), is a
pure ``jax.numpy`` function and works under ``jit``/``vmap`` with traced ``sigma`` and
``delta``. ``d`` and ``K`` may be traced in the closed forms; they must be Python ints
(static) where they set array shapes (:func:`exact_snr`, :func:`exact_snr_quadrature`).
Value checks (``sigma > 0``, ``0 <= delta < 1``, ``d >= 1``, ``K >= 2``) raise
``ValueError`` naming the argument and the rule, but only for concrete values.

The peak of a curve (:func:`peak_sigma`, :func:`approx_peak_sigma`,
:func:`exact_peak_sigma_quadrature`, :func:`exact_peak_sigma`) is searched by
:mod:`molrg.peaks`. At the end, host-side helpers for studies (NumPy in, NumPy out, grids
padded so that one compiled program serves a study): :func:`exact_snr_curve`,
:func:`approx_snr_curve`, :func:`closed_form_curves`, and P1's reference settings
:data:`P1_SETTINGS`.

Beyond Assumption 1 (overlapping subspaces, unequal ranks or weights, means, ambient
noise): :func:`snr_curve` and :func:`peak` are the one entry point for any mixture
:class:`molrg.MoLRG` can sample. They use the quadrature where :func:`assumption_1` holds
and otherwise the exact denoiser on Monte Carlo samples (:func:`monte_carlo_snr`), with
standard errors.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from molrg import metrics, peaks
from molrg.mixture import MoLRG
from molrg.posterior import denoise

Array = jax.Array

__all__ = [
    "zeta",
    "xi",
    "logit_scale",
    "block_shrinkage",
    "typical_margin",
    "confidence_plus",
    "confidence_minus",
    "h",
    "class_confidence",
    "C_t",
    "denoising_rate",
    "approx_snr",
    "snr_limit_small_sigma",
    "snr_limit_large_sigma",
    "exact_snr",
    "exact_snr_quadrature",
    "peak_sigma",
    "approx_peak_sigma",
    "exact_peak_sigma",
    "exact_peak_sigma_quadrature",
    "P1_SETTINGS",
    "exact_snr_curve",
    "approx_snr_curve",
    "closed_form_curves",
    "SNRCurve",
    "SNRPeak",
    "assumption_1",
    "monte_carlo_snr",
    "snr_curve",
    "peak",
]


# --------------------------------------------------------------------------------------
# Validation (value rules only run on concrete values, so jit/vmap with tracers work).


def _is_concrete(value: Any) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


def _fail(name: str, rule: str) -> None:
    raise ValueError(f"{name}: {rule}")


def _concrete_array(value: Any) -> np.ndarray | None:
    if not _is_concrete(value):
        return None
    return np.asarray(value, dtype=np.float64)


def _check_sigma(sigma: Any, name: str = "sigma") -> None:
    arr = _concrete_array(sigma)
    if arr is None:
        return
    if not np.all(np.isfinite(arr)):
        _fail(name, "must be finite (found NaN or inf)")
    if np.any(arr <= 0):
        _fail(name, f"must be > 0 (noise level); found {arr.min():g}")


def _check_delta(delta: Any, *, positive: bool = False) -> None:
    arr = _concrete_array(delta)
    if arr is None:
        return
    if not np.all(np.isfinite(arr)):
        _fail("delta", "must be finite (found NaN or inf)")
    if positive and np.any(arr <= 0):
        _fail("delta", f"must lie in (0, 1) here (the formula divides by delta); found {arr.min():g}")
    if np.any(arr < 0) or np.any(arr >= 1):
        bad = arr[(arr < 0) | (arr >= 1)].flat[0]
        _fail("delta", f"must lie in [0, 1) (P1 Assumption 1); found {bad:g}")


def _check_at_least(name: str, value: Any, minimum: int, meaning: str) -> None:
    arr = _concrete_array(value)
    if arr is None:
        return
    if not np.all(np.isfinite(arr)) or np.any(arr < minimum):
        _fail(name, f"must be >= {minimum} ({meaning}); found {arr.min() if arr.size else arr}")


def _check_d(d: Any) -> None:
    _check_at_least("d", d, 1, "subspace dimension")


def _check_K(K: Any) -> None:
    _check_at_least("K", K, 2, "number of classes; the SNR needs another class")


def _check_static_int(name: str, value: Any, minimum: int, meaning: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        _fail(name, f"must be a Python int (it sets array shapes); got {type(value).__name__}")
    if value < minimum:
        _fail(name, f"must be >= {minimum} ({meaning}); found {value}")
    return int(value)


def _float_dtype(*values: Any):
    """Float dtype of the inputs (float64 only if an input is float64 and x64 is on)."""
    dtypes = [np.dtype(v.dtype) for v in values if hasattr(v, "dtype")]
    dtypes = [dt for dt in dtypes if np.issubdtype(dt, np.floating)]
    dt = np.result_type(*dtypes) if dtypes else jnp.zeros((), dtype=float).dtype
    return jax.dtypes.canonicalize_dtype(dt)


def _as_float(x: Any, dtype) -> Array:
    return jnp.asarray(x, dtype=dtype)


# --------------------------------------------------------------------------------------
# Closed forms (docs/theory.md section 3 and 6).


def zeta(sigma: Any) -> Array:
    """On-subspace shrinkage of the true class, ``zeta = 1 / (1 + sigma^2)`` (docs/theory.md section 3).

    Args:
      sigma: noise level(s), any shape, > 0.

    Returns:
      Array of the shape of ``sigma``.
    """
    _check_sigma(sigma)
    sigma = _as_float(sigma, _float_dtype(sigma))
    return 1.0 / (1.0 + sigma**2)


def xi(sigma: Any, delta: Any) -> Array:
    """Shrinkage of the other classes' blocks, ``xi = delta^2 / (delta^2 + sigma^2)`` (docs/theory.md section 3).

    Args:
      sigma: noise level(s), any shape, > 0.
      delta: detail level in [0, 1), broadcastable against ``sigma``.

    Returns:
      Array of the broadcast shape.
    """
    _check_sigma(sigma)
    _check_delta(delta)
    dt = _float_dtype(sigma, delta)
    sigma, delta = _as_float(sigma, dt), _as_float(delta, dt)
    return delta**2 / (delta**2 + sigma**2)


def logit_scale(sigma: Any, delta: Any) -> Array:
    """Posterior logit per unit block energy, ``a = (1 - delta^2) / (2 (1 + sigma^2)(delta^2 + sigma^2))``.

    The exact posterior class weights are ``w = softmax(a * e)`` with block energies
    ``e_l = ||U_l^T x_t||^2`` (docs/theory.md section 3; the log-determinants cancel for equal d).
    """
    _check_sigma(sigma)
    _check_delta(delta)
    dt = _float_dtype(sigma, delta)
    sigma, delta = _as_float(sigma, dt), _as_float(delta, dt)
    return (1.0 - delta**2) / (2.0 * (1.0 + sigma**2) * (delta**2 + sigma**2))


def block_shrinkage(w: Any, sigma: Any, delta: Any) -> Array:
    """Per-block denoising strength ``beta = xi + (zeta - xi) w`` (docs/theory.md section 3).

    ``beta = (delta^2 + sigma^2 h(w)) / ((1 + sigma^2)(delta^2 + sigma^2))`` with
    ``h(w) = (1 - delta^2) w + delta^2``, the form behind Theorem 1.

    Args:
      w: posterior weight(s) of the block, in [0, 1].
      sigma: noise level(s) > 0.
      delta: detail level in [0, 1).
    """
    _check_sigma(sigma)
    _check_delta(delta)
    dt = _float_dtype(w, sigma, delta)
    w, sigma, delta = _as_float(w, dt), _as_float(sigma, dt), _as_float(delta, dt)
    z = 1.0 / (1.0 + sigma**2)
    x = delta**2 / (delta**2 + sigma**2)
    return x + (z - x) * w


def typical_margin(sigma: Any, *, d: Any, delta: Any) -> Array:
    """Typical logit margin ``D_t = d (1 - delta^2)^2 / (2 (1 + sigma^2)(delta^2 + sigma^2))`` (docs/theory.md section 6).

    It is exactly ``E[a e_k - a e_l | k]`` for ``l != k``: the expected difference between
    the own-class and another class's posterior logit (linearity of expectation with
    ``E e_k = d (1 + sigma^2)``, ``E e_l = d (delta^2 + sigma^2)``).

    Args:
      sigma: noise level(s) > 0, any shape.
      d: subspace dimension (>= 1).
      delta: detail level in [0, 1).

    Returns:
      ``D_t`` with the broadcast shape of ``sigma`` and ``delta``.
    """
    _check_sigma(sigma)
    _check_d(d)
    _check_delta(delta)
    dt = _float_dtype(sigma, delta)
    sigma, delta = _as_float(sigma, dt), _as_float(delta, dt)
    d = _as_float(d, dt)
    return d * (1.0 - delta**2) ** 2 / (2.0 * (1.0 + sigma**2) * (delta**2 + sigma**2))


def confidence_plus(sigma: Any, *, d: Any, K: Any, delta: Any) -> Array:
    """Typical own-class posterior weight ``w+ = 1 / (1 + (K - 1) exp(-D_t))`` (P1 Theorem 1)."""
    _check_K(K)
    margin = typical_margin(sigma, d=d, delta=delta)
    K = _as_float(K, margin.dtype)
    # sigmoid(D_t - log(K - 1)) is the overflow-free form of 1 / (1 + (K-1) e^{-D_t}).
    return jax.nn.sigmoid(margin - jnp.log(K - 1.0))


def confidence_minus(sigma: Any, *, d: Any, K: Any, delta: Any) -> Array:
    """Typical weight of each other class, ``w- = (1 - w+) / (K - 1)`` (P1 Theorem 1)."""
    _check_K(K)
    margin = typical_margin(sigma, d=d, delta=delta)
    K = _as_float(K, margin.dtype)
    # 1 - w+ = sigmoid(log(K-1) - D_t), computed without cancellation.
    return jax.nn.sigmoid(jnp.log(K - 1.0) - margin) / (K - 1.0)


def h(w: Any, delta: Any) -> Array:
    """``h(w) = (1 - delta^2) w + delta^2`` (P1 Theorem 1).

    Args:
      w: posterior weight(s) in [0, 1].
      delta: detail level in [0, 1).
    """
    _check_delta(delta)
    dt = _float_dtype(w, delta)
    w, delta = _as_float(w, dt), _as_float(delta, dt)
    return (1.0 - delta**2) * w + delta**2


def class_confidence(sigma: Any, *, d: Any, K: Any, delta: Any) -> Array:
    """Class-confidence rate ``h(w+)`` of P1 (Fig. 4).

    Falls with sigma from 1 (sigma -> 0) to ``(1 - delta^2)/K + delta^2`` (sigma -> infinity).
    """
    return h(confidence_plus(sigma, d=d, K=K, delta=delta), delta)


def C_t(sigma: Any, delta: Any) -> Array:
    """SNR prefactor ``C_t = (1 + sigma^2) / (delta^2 + sigma^2)`` (P1 Theorem 1)."""
    _check_sigma(sigma)
    _check_delta(delta)
    dt = _float_dtype(sigma, delta)
    sigma, delta = _as_float(sigma, dt), _as_float(delta, dt)
    return (1.0 + sigma**2) / (delta**2 + sigma**2)


def denoising_rate(sigma: Any, delta: Any) -> Array:
    """Denoising rate ``sigma^2 / delta^2`` of P1 (Fig. 4); needs ``0 < delta < 1``."""
    _check_sigma(sigma)
    _check_delta(delta, positive=True)
    dt = _float_dtype(sigma, delta)
    sigma, delta = _as_float(sigma, dt), _as_float(delta, dt)
    return sigma**2 / delta**2


def approx_snr(sigma: Any, *, d: Any, K: Any, delta: Any) -> Array:
    """Approximate SNR of the optimal denoiser, P1 Theorem 1 (docs/theory.md section 6).

        SNR ~= C_t / (K - 1) * [(1 + (sigma^2/delta^2) h(w+)) / (1 + (sigma^2/delta^2) h(w-))]^2

    evaluated as ``C_t/(K-1) * [(delta^2 + sigma^2 h(w+)) / (delta^2 + sigma^2 h(w-))]^2``,
    the same number, which stays finite at ``delta = 0``. It is the exact SNR with the
    posterior weights replaced by their typical values ``w+``, ``w-``; limits
    ``1/((K-1) delta^2)`` as sigma -> 0 and ``1/(K-1)`` as sigma -> infinity.

    Args:
      sigma: noise level(s) > 0, any shape.
      d: subspace dimension (>= 1).
      K: number of classes (>= 2).
      delta: detail level in [0, 1).

    Returns:
      Array with the shape of ``sigma`` (broadcast with ``delta``).

    Example:
      >>> approx_snr(jnp.logspace(-3, 3, 7), d=5, K=3, delta=0.2)
    """
    wp = confidence_plus(sigma, d=d, K=K, delta=delta)
    wm = confidence_minus(sigma, d=d, K=K, delta=delta)
    dt = wp.dtype
    s2, d2 = _as_float(sigma, dt) ** 2, _as_float(delta, dt) ** 2
    K = _as_float(K, dt)
    ratio = (d2 + s2 * h(wp, delta)) / (d2 + s2 * h(wm, delta))
    return (1.0 + s2) / (d2 + s2) / (K - 1.0) * ratio**2


def snr_limit_small_sigma(K: Any, delta: Any) -> Array:
    """``lim_{sigma -> 0} SNR = 1 / ((K - 1) delta^2)`` (exact and approximate SNR)."""
    _check_K(K)
    _check_delta(delta, positive=True)
    dt = _float_dtype(delta)
    return 1.0 / ((_as_float(K, dt) - 1.0) * _as_float(delta, dt) ** 2)


def snr_limit_large_sigma(K: Any) -> Array:
    """``lim_{sigma -> infinity} SNR = 1 / (K - 1)`` (exact and approximate SNR)."""
    _check_K(K)
    return 1.0 / (_as_float(K, _float_dtype(K)) - 1.0)


# --------------------------------------------------------------------------------------
# Exact SNR by Monte Carlo over the block energies.


def _per_draw_terms(X: Array, sigma: Array, delta: Array) -> tuple[Array, Array]:
    """Numerator and denominator of the SNR for each noise level and draw.

    Args:
      X: ``(K, m)`` chi-square(d) draws; row 0 is the true class.
      sigma: ``(S,)`` noise levels.
      delta: scalar detail level.

    Returns:
      ``(num, den)``, each ``(S, m)``: ``beta_k^2 e_k`` and ``sum_{l != k} beta_l^2 e_l``.
    """
    K = X.shape[0]
    s2, d2 = sigma**2, delta**2
    a = (1.0 - d2) / (2.0 * (1.0 + s2) * (d2 + s2))
    z, x = 1.0 / (1.0 + s2), d2 / (d2 + s2)
    # Block energies e_j = scale_j X_j; the class axis is a short static loop so every
    # array is (S, m) with the long draw axis last.
    scales = [(1.0 + s2)[:, None]] + [(d2 + s2)[:, None]] * (K - 1)
    e = [scale * X[j][None, :] for j, scale in enumerate(scales)]
    logits = [a[:, None] * ej for ej in e]
    top = functools.reduce(jnp.maximum, logits)
    p = [jnp.exp(lj - top) for lj in logits]
    inv_total = 1.0 / functools.reduce(jnp.add, p)
    terms = [(x[:, None] + (z - x)[:, None] * (pj * inv_total)) ** 2 * ej for pj, ej in zip(p, e)]
    return terms[0], functools.reduce(jnp.add, terms[1:])


def _chi_square(key: Array, d: int, shape: tuple[int, ...], dtype) -> Array:
    """Exact chi2_d draws: ``chi2_2 = -2 log U`` for each pair of degrees of freedom, plus
    one squared normal when d is odd (2-3x cheaper than d squared normals, and than
    ``jax.random.chisquare``'s rejection sampler, on CPU)."""
    pairs, odd = divmod(d, 2)
    key_u, key_z = jax.random.split(key)
    X = jnp.zeros(shape, dtype)
    if pairs:
        u = jax.random.uniform(key_u, (pairs,) + shape, dtype)
        X = X - 2.0 * jnp.sum(jnp.log1p(-u), axis=0)  # 1 - u in (0, 1]: finite
    if odd:
        z = jax.random.normal(key_z, shape, dtype)
        X = X + z * z
    return X


def _chunk_stats(key: Array, sigma: Array, delta: Array, d: int, K: int, chunk: int) -> Array:
    """Means and centred second moments of (num, den) over one chunk: ``(S, 5)``."""
    X = _chi_square(key, d, (K, chunk), sigma.dtype)
    num, den = _per_draw_terms(X, sigma, delta)
    mn, md = jnp.mean(num, axis=1), jnp.mean(den, axis=1)
    cn, cd = num - mn[:, None], den - md[:, None]
    return jnp.stack(
        [mn, md, jnp.mean(cn * cn, axis=1), jnp.mean(cd * cd, axis=1), jnp.mean(cn * cd, axis=1)],
        axis=-1,
    )


@functools.partial(jax.jit, static_argnames=("d", "K", "num_chunks", "chunk"))
def _mc_chunk_stats(key, sigma, delta, *, d, K, num_chunks, chunk):
    """Per-chunk statistics ``(num_chunks, S, 5)``; one compiled program for all sigma."""
    keys = jax.random.split(key, num_chunks)
    return jax.lax.map(lambda k: _chunk_stats(k, sigma, delta, d, K, chunk), keys)


def _combine_chunks(stats: Array) -> tuple[Array, Array, Array, Array, Array]:
    """Pool equal-size chunks: means and (population) covariance of (num, den)."""
    mn, md = stats[..., 0], stats[..., 1]
    mean_n, mean_d = jnp.mean(mn, axis=0), jnp.mean(md, axis=0)
    dn, dd = mn - mean_n[None], md - mean_d[None]
    var_n = jnp.mean(stats[..., 2], axis=0) + jnp.mean(dn * dn, axis=0)
    var_d = jnp.mean(stats[..., 3], axis=0) + jnp.mean(dd * dd, axis=0)
    cov = jnp.mean(stats[..., 4], axis=0) + jnp.mean(dn * dd, axis=0)
    return mean_n, mean_d, var_n, var_d, cov


def _mc_setup(sigma, delta, d, K, num_samples, chunk_size):
    _check_sigma(sigma)
    _check_delta(delta)
    d = _check_static_int("d", d, 1, "subspace dimension")
    K = _check_static_int("K", K, 2, "number of classes; the SNR needs another class")
    num_samples = _check_static_int("num_samples", num_samples, 2, "Monte Carlo draws")
    chunk_size = _check_static_int("chunk_size", chunk_size, 1, "draws per chunk")
    if np.ndim(delta) != 0:
        _fail("delta", f"must be a scalar here (vmap over delta instead); got shape {np.shape(delta)}")
    dt = _float_dtype(sigma, delta)
    sigma = _as_float(sigma, dt)
    chunk = min(chunk_size, num_samples)
    num_chunks = -(-num_samples // chunk)
    return sigma, _as_float(delta, dt), d, K, chunk, num_chunks


def exact_snr(
    sigma: Any,
    *,
    d: int,
    K: int,
    delta: Any,
    key: Array,
    num_samples: int = 2**20,
    chunk_size: int = 2**13,
    return_stderr: bool = False,
) -> Array | tuple[Array, Array]:
    """Exact SNR of the optimal denoiser by Monte Carlo over the block energies (docs/theory.md section 3, 5).

        SNR(sigma) = E[beta_k^2 e_k] / E[sum_{l != k} beta_l^2 e_l],
        e_k = (1 + sigma^2) X_k,  e_l = (delta^2 + sigma^2) X_l,  X ~ chi2_d i.i.d.,
        beta_l = xi + (zeta - xi) softmax(a e)_l.

    The same draws serve every sigma (common random numbers), so the curve is smooth in
    sigma and differences between noise levels are much more precise than the values.
    Draws are made in chunks of ``chunk_size`` (memory ``O(chunk_size * len(sigma) * K)``)
    inside one compiled program; the estimate is the ratio of the pooled means, and its
    standard error the delta-method one,
    ``se^2 = (var N - 2 R cov(N, D) + R^2 var D) / (M mean(D)^2)``.

    Precision: the relative standard error is about ``c / sqrt(M)`` with ``c ~ 1`` away
    from the peak and ``c ~ 2.5`` near it (K = 3, d = 5, delta = 0.2), i.e. 2-3e-3 for the
    default ``M = 2^20``; three significant digits near the peak need ``M ~ 10^7``. For
    ``delta -> 0`` at small sigma the denominator is dominated by rare draws (the other
    blocks' weight is exponentially small except when a class is confused) and ``c`` grows
    to ~50 (d = 2, K = 4, delta = 0, sigma = 0.02); trust the returned stderr. Use
    :func:`exact_snr_quadrature` (deterministic, ~1e-12) when precision or speed matters;
    this estimator is its independent check. Cost: ~1 s for ``M = 2^20`` draws at 50
    noise levels on 2 CPU cores.

    Args:
      sigma: noise level(s) > 0, any shape (flattened internally).
      d: subspace dimension (static int >= 1).
      K: number of classes (static int >= 2).
      delta: scalar detail level in [0, 1) (may be traced).
      key: PRNG key.
      num_samples: number of draws ``M`` (rounded up to a whole number of chunks).
      chunk_size: draws per chunk.
      return_stderr: also return the standard error.

    Returns:
      SNR with the shape of ``sigma``; with ``return_stderr``, ``(snr, stderr)``.
    """
    sigma, delta, d, K, chunk, num_chunks = _mc_setup(sigma, delta, d, K, num_samples, chunk_size)
    shape = sigma.shape
    stats = _mc_chunk_stats(key, sigma.reshape(-1), delta, d=d, K=K, num_chunks=num_chunks, chunk=chunk)
    mean_n, mean_d, var_n, var_d, cov = _combine_chunks(stats)
    ratio = mean_n / mean_d
    if not return_stderr:
        return ratio.reshape(shape)
    m = num_chunks * chunk
    var_ratio = (var_n - 2.0 * ratio * cov + ratio**2 * var_d) / (m * mean_d**2)
    return ratio.reshape(shape), jnp.sqrt(jnp.maximum(var_ratio, 0.0)).reshape(shape)


# --------------------------------------------------------------------------------------
# Exact SNR by deterministic quadrature.

_TAIL = 1e-18  # neglected probability in each tail of a chi-square
_RESOLUTION = dict(panel_width=2.0, nodes_per_panel=12, u_step=0.25)  # converged to ~1e-13


@functools.lru_cache(maxsize=None)
def _gamma_range(d: int) -> tuple[float, float]:
    """Quantiles of Gamma(d/2, 1) outside which a mass of at most 1e-18 lies."""
    k = 0.5 * d
    hi = float(scipy.special.gammainccinv(k, _TAIL))
    lo = float(scipy.special.gammaincinv(k, _TAIL)) if d > 20 else 0.0
    return lo, hi


@functools.lru_cache(maxsize=None)
def _gauss_legendre01(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (x + 1.0), 0.5 * w


def _gamma_nodes(lo, hi, theta, k, panels, nodes, dtype):
    """Nodes and probability weights for ``c ~ Gamma(k, theta)`` restricted to ``[lo, hi]``.

    Composite Gauss-Legendre on ``panels`` equal panels; on the first panel ``c = lo +
    width * t^2``, which makes the ``c^(k-1)`` endpoint behaviour (singular for d = 1)
    smooth in t. ``lo``, ``hi``, ``theta`` and ``k`` may be traced.
    """
    t, wt = _gauss_legendre01(nodes)
    t, wt = jnp.asarray(t, dtype), jnp.asarray(wt, dtype)
    width = (hi - lo) / panels
    first = lo + width * t**2
    first_logw = jnp.log(2.0 * width * t * wt)
    j = jnp.arange(1, panels, dtype=dtype)[:, None]
    rest = (lo + width * (j + t[None, :])).reshape(-1)
    rest_logw = jnp.broadcast_to(jnp.log(width * wt)[None, :], (panels - 1, nodes)).reshape(-1)
    c = jnp.concatenate([first, rest])
    logw = jnp.concatenate([first_logw, rest_logw])
    logpdf = (k - 1.0) * jnp.log(c) - c / theta - jax.lax.lgamma(jnp.asarray(k, dtype)) - k * jnp.log(theta)
    weight = jnp.where(width > 0, jnp.exp(logw + logpdf), 0.0)
    return c, weight


def quadrature_snr_one(sigma, delta, d, K, *, g_lo, g_hi, margin, panel_width, nodes_per_panel,
                       u_step):
    """Exact SNR at one noise level; the quadrature of :func:`exact_snr_quadrature`.

    ``sigma``, ``delta``, ``d`` and ``K`` are scalars and may all be traced (``K`` only ever
    appears as an exponent), so one compiled program can serve a grid over (d, K):
    :mod:`molrg.experiments.peak_map` does that. What fixes the shapes is static: the
    chi-square/2 range ``[g_lo, g_hi]`` (it must cover every d the program sees; nodes
    beyond a smaller d's range carry negligible weight), the u-grid ``margin`` in e-folds
    (integrands beyond it are below e^-margin relative) and the resolution.
    """
    dtype = sigma.dtype
    k = 0.5 * d
    s2, d2 = sigma**2, delta**2
    s_own, s_other = 1.0 + s2, d2 + s2
    a = (1.0 - d2) / (2.0 * s_own * s_other)
    theta_own, theta_other = 2.0 * a * s_own, 2.0 * a * s_other  # logits c = a e ~ Gamma(k, theta)

    # u-grid (log of the Laplace variable). Outside it every integrand is < e^-margin relative.
    u_lo = -(theta_other * g_hi) - margin
    u_hi = -(theta_other * g_lo) + 6.0
    n_u = int(math.ceil((g_hi - g_lo + margin + 6.0) / u_step)) + 1  # theta_other <= 1
    u = jnp.linspace(u_lo, u_hi, n_u, dtype=dtype)
    du = (u_hi - u_lo) / (n_u - 1)

    # Logit nodes. Own-class logits beyond margin - u_lo give exp(-e^{u+c}) = 0 on the whole grid.
    panels_other = int(math.ceil((g_hi - g_lo) / panel_width))
    panels_own = int(math.ceil((g_hi + 2.0 * margin) / panel_width))  # own range <= theta- g_hi + 2 margin
    c_m, w_m = _gamma_nodes(
        theta_other * g_lo, theta_other * g_hi, theta_other, k, panels_other, nodes_per_panel, dtype
    )
    own_lo = theta_own * g_lo
    own_hi = jnp.maximum(jnp.minimum(theta_own * g_hi, margin - u_lo), own_lo)
    c_p, w_p = _gamma_nodes(own_lo, own_hi, theta_own, k, panels_own, nodes_per_panel, dtype)

    def transforms(c):
        t = jnp.minimum(u[:, None] + c[None, :], 80.0)  # clamp: exp(-e^80) is already 0
        big = jnp.exp(t)
        base = jnp.exp(-big)  # exp(-t e^c) with t = e^u
        return big, base

    # Other-class transforms: 1 - L_-(u), L_-(u) and H_{-,m}(u) = E[e (e^{u+c})^m exp(-e^{u+c})].
    # E * (E * base), not (E * E) * base: E^2 overflows float32 where base is already 0.
    big, base = transforms(c_m)
    one_minus_L_m = jnp.clip((-jnp.expm1(-big)) @ w_m, 0.0, 1.0)
    L_m = base @ w_m
    e_m = c_m / a
    H1_m = (big * base) @ (w_m * e_m)
    H2_m = (big * (big * base)) @ (w_m * e_m)
    # Own-class transforms.
    big, base = transforms(c_p)
    L_p = base @ w_p
    e_p = c_p / a
    H1_p = (big * base) @ (w_p * e_p)
    H2_p = (big * (big * base)) @ (w_p * e_p)

    # E[e_k w_k^m] = E[e_k] - (1/Gamma(m)) int H_{+,m} (1 - L_-^{K-1}) du.
    others_win = -jnp.expm1((K - 1.0) * jnp.log1p(-one_minus_L_m))
    mean_own, mean_other = d * s_own, d * s_other
    own_w1 = mean_own - du * jnp.sum(H1_p * others_win)
    own_w2 = mean_own - du * jnp.sum(H2_p * others_win)  # 1/Gamma(2) = 1
    # E[e_l w_l^m] = (1/Gamma(m)) int H_{-,m} L_+ L_-^{K-2} du.
    rest = L_p * L_m ** (K - 2.0)
    other_w1 = du * jnp.sum(H1_m * rest)
    other_w2 = du * jnp.sum(H2_m * rest)

    z, x = 1.0 / s_own, d2 / s_other
    gap = z - x
    num = x**2 * mean_own + 2.0 * x * gap * own_w1 + gap**2 * own_w2
    den = (K - 1.0) * (x**2 * mean_other + 2.0 * x * gap * other_w1 + gap**2 * other_w2)
    return num / den


@functools.partial(jax.jit, static_argnames=("d", "K", "panel_width", "nodes_per_panel", "u_step"))
def _quadrature(sigma, delta, *, d, K, panel_width, nodes_per_panel, u_step):
    g_lo, g_hi = _gamma_range(d)
    one = functools.partial(
        quadrature_snr_one, d=d, K=K, g_lo=g_lo, g_hi=g_hi, margin=40.0, panel_width=panel_width,
        nodes_per_panel=nodes_per_panel, u_step=u_step
    )
    # Sequential over sigma: each level's (u-grid x nodes) tables stay in cache; 2-3x
    # faster than vmap on CPU.
    return jax.lax.map(lambda s: one(s, delta), sigma)


def exact_snr_quadrature(
    sigma: Any,
    *,
    d: int,
    K: int,
    delta: Any,
    panel_width: float = _RESOLUTION["panel_width"],
    nodes_per_panel: int = _RESOLUTION["nodes_per_panel"],
    u_step: float = _RESOLUTION["u_step"],
) -> Array:
    """Exact SNR of the optimal denoiser, deterministic (docs/theory.md section 3, 5); cost independent of K.

    Write the logits as ``c_l = a e_l``: ``c_k ~ Gamma(d/2, theta+)``, ``theta+ =
    (1 - delta^2)/(delta^2 + sigma^2)``, and ``c_l ~ Gamma(d/2, theta-)``, ``theta- =
    (1 - delta^2)/(1 + sigma^2)``, independent. Expanding ``beta^2`` the SNR needs
    ``E[e_j w_j^m]`` for m = 1, 2 and j = k or j = l != k. With ``A = sum_i e^{c_i}``,
    ``A^{-m} = Gamma(m)^{-1} int_0^inf t^{m-1} e^{-t A} dt`` factorises over classes, and
    with ``t = e^u``:

        E[e_j w_j^m] = (1/Gamma(m)) int du H_{j,m}(u) prod_{i != j} L_i(u),
        L(u) = E[exp(-e^{u+c})],   H_m(u) = E[e exp(m (u+c) - e^{u+c})].

    For j = k the integral is rewritten as ``E[e_k] - int H_{+,m} (1 - L_-^{K-1})`` so that
    it lives on a bounded u-range. L and H are integrals over one Gamma variable (composite
    Gauss-Legendre, panels of width ``panel_width`` in the logit, ``nodes_per_panel``
    nodes each; the integrands vary on a unit scale in the logit), the u-integral is a
    trapezoid rule with step ``u_step`` (spectrally accurate: analytic, decaying integrand).
    Neglected tails are below 1e-17 relative.

    Precision (float64): agrees with nested adaptive quadrature of the K = 2 double
    integral to ~1e-12 (d = 1 and 5), with grids refined 2-3x to ~1e-13 for sigma in
    [1e-4, 1e4] (d in {1, 3, 5, 50}, K in {2, 3, 4, 10}, delta in {0, ..., 0.9}), and with
    Monte Carlo (:func:`exact_snr`) within its standard error. float32: ~4e-5. Cost: about
    5 ms per noise level on one CPU core for d = 5 (~0.25 s for a 50-point grid after
    compilation); it grows with d (the chi-square range) but not with K.

    Args:
      sigma: noise level(s) > 0, any shape.
      d: subspace dimension (static int >= 1).
      K: number of classes (static int >= 2).
      delta: scalar detail level in [0, 1) (may be traced).
      panel_width, nodes_per_panel, u_step: resolution (static); the defaults are
        converged.

    Returns:
      SNR with the shape of ``sigma``.

    Example:
      >>> snr = exact_snr_quadrature(jnp.logspace(-2, 1, 50), d=5, K=3, delta=0.2)
    """
    _check_sigma(sigma)
    _check_delta(delta)
    d = _check_static_int("d", d, 1, "subspace dimension")
    K = _check_static_int("K", K, 2, "number of classes; the SNR needs another class")
    nodes_per_panel = _check_static_int("nodes_per_panel", nodes_per_panel, 2, "Gauss nodes")
    if np.ndim(delta) != 0:
        _fail("delta", f"must be a scalar here (vmap over delta instead); got shape {np.shape(delta)}")
    if not (panel_width > 0 and u_step > 0):
        _fail("panel_width/u_step", "must be > 0")
    dt = _float_dtype(sigma, delta)
    sigma = _as_float(sigma, dt)
    flat = sigma.reshape(-1)
    # Pad the length (to a power of two up to 8, then a multiple of 8) so that sweeps of
    # different lengths share a few compiled programs; the cost is linear in it.
    size = flat.shape[0]
    padded = 1 << max(size - 1, 0).bit_length() if size <= 8 else -(-size // 8) * 8
    flat = jnp.concatenate([flat, jnp.ones((padded - size,), dt)])
    out = _quadrature(
        flat,
        _as_float(delta, dt),
        d=d,
        K=K,
        panel_width=float(panel_width),
        nodes_per_panel=nodes_per_panel,
        u_step=float(u_step),
    )
    return out[:size].reshape(sigma.shape)


# --------------------------------------------------------------------------------------
# Peak of the SNR curve (the searches themselves are molrg.peaks').


def _check_range(lo, hi):
    _check_sigma(lo, "lo")
    _check_sigma(hi, "hi")
    if _is_concrete((lo, hi)) and not float(lo) < float(hi):
        _fail("lo", f"must be < hi; got lo={float(lo):g}, hi={float(hi):g}")


def peak_sigma(
    snr_fn: Callable[[Array], Array],
    lo: Any,
    hi: Any,
    *,
    num_grid: int = 64,
    num_iters: int = 40,
) -> tuple[Array, Array]:
    """Noise level of the maximum of a smooth SNR curve; deterministic and jit-able.

    A log-spaced grid of ``num_grid`` points on ``[lo, hi]`` finds the best grid point;
    golden-section search in ``log sigma`` over its two neighbouring intervals refines it
    (the bracket shrinks by 0.618 per iteration; :func:`molrg.peaks.golden_section_peak`).
    Near a smooth maximum the attainable relative precision in sigma is about
    ``sqrt(relative error of snr_fn)``: ~1e-8 for float64 closed forms or
    :func:`exact_snr_quadrature`. If the maximum is at an end of the range, that end is
    returned: compare with ``lo``/``hi`` when interiority matters.

    Args:
      snr_fn: maps a 1-D array of sigmas to their SNRs (vectorised, jnp-traceable).
      lo, hi: search range, ``0 < lo < hi``.
      num_grid: points of the initial grid (static).
      num_iters: golden-section iterations (static).

    Returns:
      ``(sigma_star, snr_star)``.

    Example:
      >>> peak_sigma(lambda s: approx_snr(s, d=5, K=3, delta=0.2), 1e-3, 1e3)
    """
    _check_range(lo, hi)
    dt = _float_dtype(lo, hi)
    search = jax.jit(peaks.golden_section_peak, static_argnums=(0, 3, 4))
    return search(snr_fn, jnp.log(_as_float(lo, dt)), jnp.log(_as_float(hi, dt)), num_grid, num_iters)


@jax.jit
def _approx_peak(d, K, delta, log_lo, log_hi):
    return peaks.golden_section_peak(lambda s: approx_snr(s, d=d, K=K, delta=delta), log_lo, log_hi, 64, 40)


def approx_peak_sigma(*, d: Any, K: Any, delta: Any, lo: Any = 1e-4, hi: Any = 1e4) -> tuple[Array, Array]:
    """Peak ``(sigma*, SNR*)`` of P1's approximate SNR (Theorem 1), as in :func:`peak_sigma`.

    ``d``, ``K`` and ``delta`` may be traced (one compiled program serves all values).
    """
    _check_d(d)
    _check_K(K)
    _check_delta(delta)
    _check_range(lo, hi)
    dt = _float_dtype(delta, lo, hi)
    return _approx_peak(
        _as_float(d, dt), _as_float(K, dt), _as_float(delta, dt), jnp.log(_as_float(lo, dt)), jnp.log(_as_float(hi, dt))
    )


@functools.partial(jax.jit, static_argnames=("d", "K"))
def _quadrature_peak(delta, log_lo, log_hi, *, d, K):
    def snr_fn(s):
        return _quadrature(s, delta, d=d, K=K, **_RESOLUTION)

    return peaks.golden_section_peak(snr_fn, log_lo, log_hi, 64, 40)


def exact_peak_sigma_quadrature(*, d: int, K: int, delta: Any, lo: Any = 1e-3, hi: Any = 1e3) -> tuple[Array, Array]:
    """Peak ``(sigma*, SNR*)`` of the exact SNR, deterministic (:func:`exact_snr_quadrature`
    at its default resolution, searched as in :func:`peak_sigma`; ~1e-8 relative in sigma).

    In P1's setting (K = 3, d = 5, delta = 0.2) it gives sigma* = 0.3257, SNR* = 30.77,
    while Theorem 1 (:func:`approx_peak_sigma`) puts the peak at sigma = 0.563 with
    SNR = 76.0: the approximation overestimates both near the peak.
    """
    _check_delta(delta)
    _check_range(lo, hi)
    d = _check_static_int("d", d, 1, "subspace dimension")
    K = _check_static_int("K", K, 2, "number of classes; the SNR needs another class")
    dt = _float_dtype(delta, lo, hi)
    return _quadrature_peak(
        _as_float(delta, dt), jnp.log(_as_float(lo, dt)), jnp.log(_as_float(hi, dt)), d=d, K=K
    )


def exact_peak_sigma(
    *,
    d: int,
    K: int,
    delta: Any,
    key: Array,
    num_samples: int = 2**20,
    chunk_size: int = 2**13,
    lo: Any = 1e-3,
    hi: Any = 1e3,
    num_grid: int = 41,
    num_groups: int = 16,
) -> tuple[Array, Array]:
    """Peak ``sigma*`` of the exact SNR by Monte Carlo, with its standard error.

    A log-grid of ``num_grid`` points on ``[lo, hi]`` brackets the maximum of the Monte
    Carlo SNR curve (two grid steps); a second grid of ``num_grid`` points on the bracket
    is estimated with common random numbers (so the curve is smooth in sigma), and the
    peak is the vertex of the parabola in ``log sigma`` through its best point and the two
    neighbours (:func:`molrg.peaks.parabola_vertex`). The standard error is by batch means:
    the draws are split into ``num_groups`` independent groups, the vertex is found for each, and
    ``se(log sigma*) = std(group vertices) / sqrt(num_groups)``,
    ``se(sigma*) = sigma* se(log sigma*)``. With the defaults the relative stderr is ~1e-3
    (K = 3, d = 5, delta = 0.2). For a deterministic value use
    :func:`exact_peak_sigma_quadrature`; this function is its independent check.

    Args:
      d, K: static ints (d >= 1, K >= 2).
      delta: scalar detail level in [0, 1) (may be traced).
      key: PRNG key (split for the two grids).
      num_samples: draws per grid (rounded up to a multiple of ``chunk_size * num_groups``).
      chunk_size: draws per chunk.
      lo, hi: search range.
      num_grid: points of each grid (static).
      num_groups: batches for the standard error (static, >= 2).

    Returns:
      ``(sigma_star, stderr)``.
    """
    _check_range(lo, hi)
    _, delta, d, K, chunk, num_chunks = _mc_setup(1.0, delta, d, K, num_samples, chunk_size)
    num_groups = _check_static_int("num_groups", num_groups, 2, "batches for the standard error")
    num_grid = _check_static_int("num_grid", num_grid, 3, "grid points")
    num_chunks = -(-num_chunks // num_groups) * num_groups
    dt = delta.dtype
    key_coarse, key_fine = jax.random.split(key)
    run = functools.partial(_mc_chunk_stats, delta=delta, d=d, K=K, num_chunks=num_chunks, chunk=chunk)

    coarse = jnp.linspace(jnp.log(_as_float(lo, dt)), jnp.log(_as_float(hi, dt)), num_grid, dtype=dt)
    stats = run(key_coarse, jnp.exp(coarse))
    i = jnp.argmax(jnp.mean(stats[..., 0], axis=0) / jnp.mean(stats[..., 1], axis=0))
    fine = jnp.linspace(coarse[jnp.maximum(i - 1, 0)], coarse[jnp.minimum(i + 1, num_grid - 1)], num_grid, dtype=dt)
    stats = run(key_fine, jnp.exp(fine))

    # Chunk means -> group means: independent batches of equal size.
    grouped = stats[..., :2].reshape(num_groups, num_chunks // num_groups, num_grid, 2).mean(axis=1)
    pooled = grouped.mean(axis=0)
    t_star = peaks.parabola_vertex(fine, pooled[:, 0] / pooled[:, 1])
    t_groups = jax.vmap(lambda g: peaks.parabola_vertex(fine, g[:, 0] / g[:, 1]))(grouped)
    se_t = jnp.std(t_groups, ddof=1) / jnp.sqrt(jnp.asarray(num_groups, dt))
    sigma_star = jnp.exp(t_star)
    return sigma_star, sigma_star * se_t


# --------------------------------------------------------------------------------------
# Host-side curves on grids: NumPy in, NumPy out, in JAX's default float dtype.

P1_SETTINGS: dict[str, dict[str, Any]] = {
    "paper": dict(n=50, K=3, d=5, delta=0.2),  # P1 Figs. 3, 4 and 15
    "fig14": dict(n=100, K=10, d=5, delta=0.3),  # the defaults of P1 Fig. 14
}
"""P1's two reference settings (docs/theory.md section 7), by name."""


def _padded(sigmas: Any, pad: int | None) -> tuple[np.ndarray, int]:
    """``sigmas`` as float64, padded with ones to ``max(len, pad, 64)`` rounded up to a power of two.

    Padding lets every call of one study (dense grid, zoom, a few extra points) reuse one
    compiled program; compiling costs far more than evaluating 128 points.
    """
    if pad is not None and (isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0):
        _fail("pad", f"must be None or an int >= 0; got {pad!r}")
    sig = np.asarray(sigmas, np.float64).reshape(-1)
    _check_sigma(sig, "sigmas")
    size = sig.shape[0]
    length = 1 << (max(size, pad or 0, 64) - 1).bit_length()  # the next power of two
    return np.concatenate([sig, np.ones(length - size)]), size


def exact_snr_curve(sigmas: Any, *, d: int, K: int, delta: float, pad: int | None = None) -> np.ndarray:
    """Exact SNR by quadrature (:func:`exact_snr_quadrature`) at ``sigmas``, NumPy in and out.

    Evaluated in JAX's default float dtype (float32 unless x64 is on; ~1e-5 relative) and
    returned as float64. The grid is padded to ``pad`` points (at least 64, a power of two;
    see :func:`_padded`): pass the length of a study's main grid so that short calls reuse
    its compiled program.

    Args:
      sigmas: noise levels > 0, any shape (flattened).
      d: subspace dimension (int >= 1).
      K: number of classes (int >= 2).
      delta: detail level in [0, 1).
      pad: minimum padded length, or None.

    Returns:
      ``(S,)`` float64 array.
    """
    dtype = jnp.zeros((), dtype=float).dtype
    sig, size = _padded(sigmas, pad)
    out = exact_snr_quadrature(jnp.asarray(sig, dtype), d=d, K=K, delta=jnp.asarray(delta, dtype))
    return np.asarray(out, np.float64)[:size]


@jax.jit
def _closed_forms(sigma, d, K, delta):
    """Theorem 1 and the two rates, ``(4, S)``: one compiled program for every (d, K, delta)."""
    return jnp.stack([
        approx_snr(sigma, d=d, K=K, delta=delta),
        denoising_rate(sigma, delta),
        class_confidence(sigma, d=d, K=K, delta=delta),
        confidence_plus(sigma, d=d, K=K, delta=delta),
    ])


def closed_form_curves(sigmas: Any, *, d: int, K: int, delta: float,
                       pad: int | None = None) -> dict[str, np.ndarray]:
    """Theorem 1's SNR and the rates of P1 Fig. 4 at ``sigmas``, NumPy in and out.

    Keys ``approx_snr`` (:func:`approx_snr`), ``denoising_rate`` (``sigma^2 / delta^2``),
    ``class_confidence`` (``h(w+)``) and ``confidence_plus`` (``w+``), each ``(S,)`` float64,
    evaluated in JAX's default float dtype. ``d``, ``K`` and ``delta`` are traced and the grid
    is padded as in :func:`exact_snr_curve`, so one compiled program serves every call of
    the same padded length.

    Args:
      sigmas: noise levels > 0, any shape (flattened).
      d: subspace dimension (>= 1).
      K: number of classes (>= 2).
      delta: detail level in (0, 1) (the denoising rate divides by it).
      pad: minimum padded length, or None.
    """
    _check_d(d)
    _check_K(K)
    _check_delta(delta, positive=True)
    dtype = jnp.zeros((), dtype=float).dtype
    sig, size = _padded(sigmas, pad)
    out = np.asarray(_closed_forms(jnp.asarray(sig, dtype), jnp.asarray(d, dtype), jnp.asarray(K, dtype),
                                   jnp.asarray(delta, dtype)), np.float64)[:, :size]
    return dict(zip(("approx_snr", "denoising_rate", "class_confidence", "confidence_plus"), out))


def approx_snr_curve(sigmas: Any, *, d: int, K: int, delta: float, pad: int | None = None) -> np.ndarray:
    """Theorem 1's SNR at ``sigmas``, NumPy in and out: :func:`closed_form_curves`' ``approx_snr``."""
    return closed_form_curves(sigmas, d=d, K=K, delta=delta, pad=pad)["approx_snr"]


# --------------------------------------------------------------------------------------
# Any mixture molrg can sample: the exact SNR curve and its peak, one entry point each.
#
# Under Assumption 1 the quadrature above is exact and deterministic. Anything else
# (overlapping subspaces, unequal ranks or weights, means, ambient noise, delta >= 1) has
# no reduction to a few chi-squares, so the exact denoiser (molrg.denoise) is scored on
# samples of the mixture itself (molrg.metrics.snr_per_class, delta-method errors).

_METHODS = ("auto", "quadrature", "monte_carlo")
_UNIFORM_TOL = 1e-6  # |K pi_k - 1| below this counts as uniform (float32 rounds 1/3 to ~3e-8)

# x0, labels and eps from ONE normal array: one threefry program per model shape
# (metrics._draw_noisy explains why that matters for compile time on CPU).
_draw = jax.jit(metrics._draw_noisy, static_argnums=2)


class SNRCurve(NamedTuple):
    """The exact SNR of the optimal denoiser on a grid of noise levels (:func:`snr_curve`).

    Attributes:
      sigma: ``(S,)`` noise levels (float64).
      snr: ``(S,)`` SNR of P1 Definition 1 (docs/theory.md section 5), float64.
      stderr: ``(S,)`` standard errors: the delta-method Monte Carlo error, or 0 for the
        quadrature (deterministic; its numerical error, ~1e-12 relative in float64 and
        ~4e-5 in float32, is not a statistical one and is not reported).
      method: ``"quadrature"`` or ``"monte_carlo"``.
    """

    sigma: np.ndarray
    snr: np.ndarray
    stderr: np.ndarray
    method: str


class SNRPeak(NamedTuple):
    """The noise level of the maximum of the exact SNR (:func:`peak`).

    Attributes:
      sigma: the peak ``sigma*`` (an end of the range when ``interior`` is False).
      stderr: standard error of ``sigma*``: batch means for Monte Carlo, 0 for the
        quadrature (deterministic, ~1e-8 relative), NaN when the maximum is at an end.
      snr: the SNR at the peak (Monte Carlo: the best value of the refined grid).
      interior: False when the maximum sits at an end of ``[lo, hi]``.
      method: ``"quadrature"`` or ``"monte_carlo"``.
    """

    sigma: float
    stderr: float
    snr: float
    interior: bool
    method: str


def _check_mixture(mix: Any, *, concrete: bool) -> None:
    if not isinstance(mix, MoLRG):
        _fail("mix", f"must be a molrg.MoLRG; got {type(mix).__name__}")
    if mix.K < 2:
        _fail("mix", f"must have K >= 2 classes (the SNR compares a class with the others); got K = {mix.K}")
    if concrete and not _is_concrete(mix):
        _fail("mix", "must hold concrete arrays here (a host-side function); under jit use monte_carlo_snr")


def _assumption_1_violation(mix: MoLRG) -> str | None:
    """Why ``mix`` is outside P1's Assumption 1, or None when it satisfies it (concrete mix)."""
    if mix.structure != "orthogonal":
        return "the subspaces are not mutually orthogonal"
    if len(set(mix.dims)) != 1:
        return f"the subspace dimensions differ, d = {mix.dims}"
    w = np.asarray(mix.weights, np.float64)
    if np.max(np.abs(mix.K * w - 1.0)) > _UNIFORM_TOL:
        return f"the class weights are not uniform, pi = {np.round(w, 6).tolist()}"
    if mix.means is not None and np.any(np.asarray(mix.means) != 0):
        return "the class means are not zero"
    if float(mix.noise) != 0.0:
        return f"the ambient noise eta = {float(mix.noise):g} is not 0"
    if not float(mix.delta) < 1.0:
        return f"delta = {float(mix.delta):g} is not < 1"
    return None


def assumption_1(mix: MoLRG) -> dict[str, Any] | None:
    """P1's Assumption 1 setting of ``mix`` (``dict(d=, K=, delta=)``), or None outside it.

    Assumption 1 (docs/theory.md sections 2 and 3.2): mutually orthogonal subspaces
    (``mix.structure == "orthogonal"``, detected by :class:`molrg.MoLRG`), one dimension d
    for every class, uniform weights (``|K pi_k - 1| <= 1e-6``), zero means, no ambient
    noise (``eta = 0``) and ``0 <= delta < 1``. There the exact SNR is the K-chi-square
    expectation of :func:`exact_snr_quadrature`.

    Args:
      mix: a concrete :class:`molrg.MoLRG` with ``K >= 2``.

    Returns:
      ``{"d": int, "K": int, "delta": float}`` or None.
    """
    _check_mixture(mix, concrete=True)
    if _assumption_1_violation(mix) is not None:
        return None
    return {"d": mix.dims[0], "K": mix.K, "delta": float(mix.delta)}


def _pick(stats: metrics.SNRStats, pooled: bool) -> tuple[Array, Array]:
    return (stats.pooled, stats.pooled_stderr) if pooled else (stats.snr, stats.snr_stderr)


@functools.partial(jax.jit, static_argnames=("pooled", "num_groups", "batch_size"))
def _snr_levels(mix, x0, labels, eps, sigmas, scales, *, pooled, num_groups, batch_size):
    """SNR and stderr ``(S,)`` of the exact denoiser on fixed draws (and ``(S, G)`` per group).

    The draws are the same at every level (common random numbers); ``lax.map`` with a
    ``batch_size`` vmaps the levels in batches, so memory is ``O(batch_size N n)``.
    """
    n = mix.n
    size = (x0.shape[0] // num_groups) * num_groups if num_groups else 0

    def level(args):
        sigma, scale = args
        x_t = scale * (x0 + sigma * eps)
        out = denoise(mix, x_t, sigma, scale)
        value, se = _pick(metrics.snr_per_class(out, labels, mix), pooled)
        if not num_groups:
            return value, se
        # Contiguous groups of i.i.d. draws are independent batches (for batch means).
        groups = jax.vmap(lambda o, y: _pick(metrics.snr_per_class(o, y, mix), pooled)[0])(
            out[:size].reshape(num_groups, -1, n), labels[:size].reshape(num_groups, -1))
        return value, se, groups

    return jax.lax.map(level, (sigmas, scales), batch_size=batch_size)


def _check_level_shape(name: str, value: Any) -> None:
    if np.ndim(value) > 1:
        _fail(name, f"must be a scalar or a 1-D array of noise levels; got shape {np.shape(value)}")
    if np.size(value) == 0:
        _fail(name, "must hold at least one noise level")


def _check_scales(scale: Any, num: int) -> None:
    if np.shape(scale) not in ((), (num,)):
        _fail("scale", f"must be a scalar or one value per sigma, shape ({num},); got shape {np.shape(scale)}")
    _check_sigma(scale, "scale")


def _check_class_counts(labels: Array, K: int, num_groups: int) -> None:
    """Every class needs >= 2 draws (its ratio and its standard error), in every group."""
    lab = np.asarray(labels)
    rows = lab[None] if not num_groups else lab[:(lab.size // num_groups) * num_groups].reshape(num_groups, -1)
    counts = np.stack([np.bincount(r, minlength=K) for r in rows])
    if counts.min() < 2:
        k = int(np.argmin(counts.min(axis=0)))
        where = f" in one of the {num_groups} groups" if num_groups else ""
        _fail("num_samples", f"too small for the class weights: class {k} drew {int(counts.min())} samples{where}; "
              "every class needs >= 2 (its ratio and its standard error)")


def monte_carlo_snr(
    mix: MoLRG,
    sigmas: Any,
    *,
    key: Array,
    num_samples: int,
    scale: Any = 1.0,
    pooled: bool = False,
    batch_size: int = 16,
) -> tuple[Array, Array]:
    """Exact SNR of the optimal denoiser of any mixture, by Monte Carlo (docs/theory.md sections 3, 5).

        SNR(sigma) = (1/K) sum_k E[||P_k xh||^2 | k] / E[||xh - P_k xh||^2 | k],
        xh = E[x_0 | x_t],   x_t = s (x_0 + sigma eps),   P_k = U_k U_k^T

    (P1 Definition 1; with ``pooled`` the ratio ``sum_k pi_k E[.|k] / sum_k pi_k E[.|k]``).
    ``num_samples`` draws of ``(x_0, k)`` from ``mix`` and as many noises ``eps`` are made
    once and shared by every noise level (common random numbers: the curve is smooth in
    sigma, and differences between levels are far more precise than the values); the
    exact denoiser (:func:`molrg.denoise`) and :func:`molrg.metrics.snr_per_class` run in
    one compiled program vmapped over the levels (in batches of ``batch_size``). Each
    level's standard error is the delta-method one of :func:`molrg.metrics.snr_per_class`;
    the errors of different levels are positively correlated. The SNR does not depend on
    the scale ``s`` (the posterior is a function of ``x_t / s``); it is an argument so that
    a schedule's levels can be checked as they are used.

    Traceable: ``sigmas``, ``scale`` and the mixture's arrays may be traced (value checks
    then skipped; a class without draws gives NaN). With concrete labels every class must
    get >= 2 draws.

    Args:
      mix: the mixture (:class:`molrg.MoLRG`, ``K >= 2``).
      sigmas: ``(S,)`` noise levels > 0 (or a scalar).
      key: PRNG key (consumed once).
      num_samples: draws ``N`` (static int >= 2); relative stderr ~ ``c / sqrt(N)``.
      scale: signal scale ``s > 0``, a scalar or ``(S,)``.
      pooled: the pooled ratio instead of the class mean of ratios (static).
      batch_size: levels per vmapped batch (static int >= 1): memory ``O(batch_size N n)``.

    Returns:
      ``(snr, stderr)``, each ``(S,)`` in the mixture's dtype.

    Example:
      >>> mix = random_molrg(jax.random.key(0), n=30, K=2, d=3, angle=30.0, delta=0.1)
      >>> snr, se = monte_carlo_snr(mix, jnp.logspace(-2, 1, 20), key=jax.random.key(1), num_samples=8192)
    """
    _check_mixture(mix, concrete=False)
    _check_level_shape("sigmas", sigmas)
    _check_sigma(sigmas, "sigmas")
    num = int(np.size(sigmas))
    _check_scales(scale, num)
    num_samples = _check_static_int("num_samples", num_samples, 2, "Monte Carlo draws")
    batch_size = _check_static_int("batch_size", batch_size, 1, "noise levels per vmapped batch")
    if not isinstance(pooled, bool):
        _fail("pooled", f"must be a bool; got {pooled!r}")
    if key is None:
        _fail("key", "must be a PRNG key (the Monte Carlo draws need one)")
    dtype = mix.dtype
    sig = jnp.asarray(sigmas, dtype).reshape(-1)
    scales = jnp.broadcast_to(jnp.asarray(scale, dtype), sig.shape)
    x0, labels, eps = _draw(mix, key, num_samples)
    if _is_concrete(labels):
        _check_class_counts(labels, mix.K, 0)
    return _snr_levels(mix, x0, labels, eps, sig, scales, pooled=pooled, num_groups=0,
                       batch_size=min(batch_size, num))


def _check_method(method: Any, pooled: Any) -> None:
    if method not in _METHODS:
        _fail("method", f"must be one of {_METHODS}; got {method!r}")
    if not isinstance(pooled, bool):
        _fail("pooled", f"must be a bool; got {pooled!r}")


def _use_quadrature(mix: MoLRG, method: str) -> bool:
    violation = _assumption_1_violation(mix)
    if method == "quadrature" and violation is not None:
        _fail("method", "'quadrature' needs P1's Assumption 1 (orthogonal subspaces, equal d, uniform "
              f"weights, zero means, eta = 0, delta < 1); here {violation}")
    return method == "quadrature" or (method == "auto" and violation is None)


def snr_curve(
    mix: MoLRG,
    sigmas: Any,
    *,
    key: Array | None = None,
    num_samples: int = 2**14,
    scale: Any = 1.0,
    method: str = "auto",
    pooled: bool = False,
    batch_size: int = 16,
) -> SNRCurve:
    """The exact SNR curve of the optimal denoiser of any mixture, with its error.

    The SNR of P1 Definition 1 (docs/theory.md section 5) of ``E[x_0 | x_t]`` for ``x_0 ~
    mix``, at each noise level. Two methods (``method="auto"`` picks the first that applies):

    - ``"quadrature"``: where :func:`assumption_1` holds (orthogonal subspaces, equal d,
      uniform weights, zero means, ``eta = 0``, ``delta < 1``), the deterministic
      :func:`exact_snr_quadrature` (~1e-12 relative in float64); ``stderr`` is 0.
    - ``"monte_carlo"``: anywhere, :func:`monte_carlo_snr` (the exact denoiser on
      ``num_samples`` draws shared by every level, one compiled program vmapped over sigma)
      with delta-method standard errors.

    Forcing ``method="monte_carlo"`` on an Assumption-1 mixture gives an independent check
    of the quadrature. By symmetry the pooled and class-mean SNRs agree under Assumption 1,
    so ``pooled`` only matters for Monte Carlo. Host-side: concrete inputs, NumPy out.

    Args:
      mix: a concrete :class:`molrg.MoLRG` with ``K >= 2``.
      sigmas: ``(S,)`` noise levels > 0 (or a scalar).
      key: PRNG key; needed only when Monte Carlo is used.
      num_samples: Monte Carlo draws (int >= 2).
      scale: signal scale ``s > 0``, scalar or ``(S,)`` (the SNR does not depend on it).
      method: ``"auto"``, ``"quadrature"`` or ``"monte_carlo"``.
      pooled: the pooled ratio instead of the class mean of ratios.
      batch_size: Monte Carlo levels per vmapped batch (memory ``O(batch_size N n)``).

    Returns:
      :class:`SNRCurve` ``(sigma, snr, stderr, method)``, arrays ``(S,)`` float64.

    Raises:
      ValueError: a bad argument (named), ``method="quadrature"`` outside Assumption 1,
        no ``key`` where Monte Carlo is needed, or too few draws for some class.

    Example:
      >>> mix = random_molrg(jax.random.key(0), n=30, K=2, d=(10, 2))
      >>> curve = snr_curve(mix, np.geomspace(0.01, 10, 25), key=jax.random.key(1))
    """
    _check_mixture(mix, concrete=True)
    _check_level_shape("sigmas", sigmas)
    if not _is_concrete(sigmas):
        _fail("sigmas", "must be concrete (snr_curve is host-side; under jit use monte_carlo_snr)")
    sig = np.asarray(sigmas, np.float64).reshape(-1)
    _check_sigma(sig, "sigmas")
    _check_scales(scale, sig.size)
    _check_static_int("num_samples", num_samples, 2, "Monte Carlo draws")
    _check_static_int("batch_size", batch_size, 1, "noise levels per vmapped batch")
    _check_method(method, pooled)
    if _use_quadrature(mix, method):
        snr = exact_snr_quadrature(jnp.asarray(sig, mix.dtype), d=mix.dims[0], K=mix.K, delta=mix.delta)
        return SNRCurve(sig, np.asarray(snr, np.float64), np.zeros_like(sig), "quadrature")
    if key is None:
        _fail("key", "must be a PRNG key: this mixture needs the Monte Carlo method")
    snr, se = monte_carlo_snr(mix, sig, key=key, num_samples=num_samples, scale=scale, pooled=pooled,
                              batch_size=batch_size)
    return SNRCurve(sig, np.asarray(snr, np.float64), np.asarray(se, np.float64), "monte_carlo")


def peak(
    mix: MoLRG,
    *,
    key: Array | None = None,
    lo: float = 1e-3,
    hi: float = 1e3,
    num_samples: int = 2**14,
    num_grid: int = 17,
    num_groups: int = 16,
    method: str = "auto",
    pooled: bool = False,
    batch_size: int = 16,
) -> SNRPeak:
    """Noise level ``sigma*`` of the maximum of the exact SNR of any mixture, with its error.

    - ``"quadrature"`` (where :func:`assumption_1` holds): :func:`exact_peak_sigma_quadrature`,
      a grid and golden-section search (:func:`molrg.peaks.golden_section_peak`) on the
      deterministic quadrature, ~1e-8 relative; ``stderr`` is 0.
    - ``"monte_carlo"``: a grid of ``num_grid`` points uniform in ``log sigma`` on
      ``[lo, hi]`` (:func:`monte_carlo_snr`, common random numbers) brackets the maximum
      (two grid steps); a second grid of ``num_grid`` points on the bracket, with fresh
      draws, gives the peak as the vertex of the parabola through its best point and the
      two neighbours (:func:`molrg.peaks.parabola_vertex`). The standard error is by batch
      means (not from the curvature): the fresh draws are split into ``num_groups``
      independent groups, the vertex is found for each group's curve, and
      ``se(log sigma*) = std(group vertices) / sqrt(num_groups)``, ``se(sigma*) = sigma*
      se(log sigma*)``. When the first grid's maximum is an end of the range, that end is
      returned with ``interior=False`` and ``stderr = NaN``.

    Args:
      mix: a concrete :class:`molrg.MoLRG` with ``K >= 2``.
      key: PRNG key; needed only when Monte Carlo is used (split for the two grids).
      lo, hi: the search range, ``0 < lo < hi``.
      num_samples: Monte Carlo draws per grid (int >= 2); every class needs >= 2 draws in
        every group.
      num_grid: points of each Monte Carlo grid (int >= 3).
      num_groups: batches for the standard error (int >= 2).
      method: ``"auto"``, ``"quadrature"`` or ``"monte_carlo"``.
      pooled: the pooled ratio instead of the class mean of ratios.
      batch_size: Monte Carlo levels per vmapped batch.

    Returns:
      :class:`SNRPeak` ``(sigma, stderr, snr, interior, method)``.

    Example:
      >>> mix = random_molrg(jax.random.key(0), n=30, K=2, d=3, weights=jnp.array([0.8, 0.2]), delta=0.2)
      >>> peak(mix, key=jax.random.key(1), lo=1e-2, hi=10.0)
    """
    _check_mixture(mix, concrete=True)
    if not _is_concrete((lo, hi)):
        _fail("lo", "lo and hi must be concrete numbers (peak is host-side)")
    _check_range(lo, hi)
    num_samples = _check_static_int("num_samples", num_samples, 2, "Monte Carlo draws")
    num_grid = _check_static_int("num_grid", num_grid, 3, "grid points: a vertex needs three")
    num_groups = _check_static_int("num_groups", num_groups, 2, "batches for the standard error")
    batch_size = _check_static_int("batch_size", batch_size, 1, "noise levels per vmapped batch")
    _check_method(method, pooled)
    lo, hi = float(lo), float(hi)
    if _use_quadrature(mix, method):
        sigma, value = exact_peak_sigma_quadrature(d=mix.dims[0], K=mix.K, delta=mix.delta, lo=lo, hi=hi)
        sigma = float(sigma)
        interior = not (math.isclose(sigma, lo, rel_tol=1e-9) or math.isclose(sigma, hi, rel_tol=1e-9))
        return SNRPeak(sigma, 0.0, float(value), interior, "quadrature")
    if key is None:
        _fail("key", "must be a PRNG key: this mixture needs the Monte Carlo method")
    dtype = mix.dtype
    batch = min(batch_size, num_grid)
    key_coarse, key_fine = jax.random.split(key)

    def levels(k, t, groups):
        x0, labels, eps = _draw(mix, k, num_samples)
        _check_class_counts(labels, mix.K, groups)
        sig = jnp.asarray(np.exp(t), dtype)
        return _snr_levels(mix, x0, labels, eps, sig, jnp.ones_like(sig), pooled=pooled, num_groups=groups,
                           batch_size=batch)

    coarse = np.linspace(math.log(lo), math.log(hi), num_grid)
    snr_coarse = np.asarray(levels(key_coarse, coarse, 0)[0], np.float64)
    i = int(np.argmax(snr_coarse))
    if i in (0, num_grid - 1):
        return SNRPeak(float(np.exp(coarse[i])), math.nan, float(snr_coarse[i]), False, "monte_carlo")
    fine = np.linspace(coarse[i - 1], coarse[i + 1], num_grid)
    snr_fine, _, groups = levels(key_fine, fine, num_groups)
    t = jnp.asarray(fine, dtype)
    t_star = float(peaks.parabola_vertex(t, snr_fine))
    t_groups = np.asarray(jax.vmap(lambda y: peaks.parabola_vertex(t, y))(groups.T), np.float64)
    se_t = float(np.std(t_groups, ddof=1) / math.sqrt(num_groups))
    sigma = math.exp(t_star)
    return SNRPeak(sigma, sigma * se_t, float(jnp.max(snr_fine)), True, "monte_carlo")
