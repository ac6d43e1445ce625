"""Where does a curve over the noise level peak? The one peak finder of the package.

A curve here is a smooth function of the noise level sigma (an SNR, an accuracy, ...) that
can be evaluated on whole grids at once. Every search works in ``t = log sigma`` (the curves
of docs/theory.md sections 5-6 span decades of sigma) and starts the same way: the argmax of a
uniform grid in ``t``. Three refinements follow, for three kinds of curve:

- :func:`golden_section_peak` (traceable): golden-section search on the two grid intervals
  around the best grid point, one curve evaluation per iteration. For cheap deterministic
  curves: closed forms, the quadrature of one noise level (:func:`molrg.theory.peak_sigma`).
- :func:`zoom_peak` (traceable): grids that zoom on the best point stage after stage (the
  bracket shrinks by ``(num_grid - 1) / 2`` per stage), then the vertex of a parabola
  (:func:`parabola_vertex`). Whole grids per stage, all stages through one copy of the curve
  inside a ``lax.scan``: a small compiled program that vmaps over many curves
  (:mod:`molrg.experiments.peak_map`).
- :func:`grid_peak` (host side): the same zoom with two stages for a curve that is a NumPy
  function (for instance one that pads its grid to reuse a compiled program), with the
  grids in float64 whatever JAX's default precision; it also says whether the maximum is
  interior.

The refinement by a parabola is :func:`parabola_vertex` (traceable), built on
:func:`vertex_offset`, the one formula for the vertex; Monte Carlo curves use it directly
(:func:`molrg.theory.exact_peak_sigma`). :func:`local_maxima` counts the interior local
maxima of a sampled curve that stand out from rounding noise.

A maximum at an end of the search range stays at that end: :func:`golden_section_peak` and
:func:`zoom_peak` then return the end, :func:`grid_peak` returns it with ``interior=False``.
Compare with the range when interiority matters.

Traceable functions take the range as ``log_lo, log_hi`` (arrays, possibly traced): a
caller that takes the logarithm outside a compiled program keeps control of its rounding.
Value checks (``log_lo < log_hi``, grid sizes) raise ``ValueError`` naming the argument and
the rule, on concrete values only, so ``jit`` and ``vmap`` with traced ranges work.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from molrg._validate import fail as _fail
from molrg._validate import is_concrete as _is_concrete

Array = jax.Array

__all__ = [
    "ZoomPeak",
    "vertex_offset",
    "parabola_vertex",
    "golden_section_peak",
    "zoom_peak",
    "grid_peak",
    "local_maxima",
]

_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # golden-section ratio: the bracket shrinks by 0.618


# ------------------------------------------------------------------------------------------
# Argument checks (value rules only on concrete values, so jit/vmap with tracers work).
# ------------------------------------------------------------------------------------------
def _check_count(name: str, value: Any, minimum: int, meaning: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        _fail(name, f"must be a Python int ({meaning}; it sets array shapes); got {type(value).__name__}")
    if value < minimum:
        _fail(name, f"must be >= {minimum} ({meaning}); got {value}")
    return int(value)


def _check_log_range(log_lo: Any, log_hi: Any) -> None:
    for name, value in (("log_lo", log_lo), ("log_hi", log_hi)):
        if np.ndim(value) != 0:
            _fail(name, f"must be a scalar (vmap over ranges instead); got shape {np.shape(value)}")
    if not _is_concrete(log_lo, log_hi):
        return
    lo, hi = float(log_lo), float(log_hi)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        _fail("log_lo", f"the range must be finite; got log_lo={lo:g}, log_hi={hi:g}")
    if not lo < hi:
        _fail("log_lo", f"must be < log_hi; got log_lo={lo:g}, log_hi={hi:g}")


def _as_range(log_lo: Any, log_hi: Any) -> tuple[Array, Array]:
    """The range as two arrays of one float dtype (arrays pass through unchanged)."""
    log_lo, log_hi = jnp.asarray(log_lo), jnp.asarray(log_hi)
    dtype = jnp.result_type(log_lo, log_hi)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.zeros((), dtype=float).dtype
    return log_lo.astype(dtype), log_hi.astype(dtype)


# ------------------------------------------------------------------------------------------
# The vertex of a parabola.
# ------------------------------------------------------------------------------------------
def vertex_offset(y_left: Any, y_mid: Any, y_right: Any) -> Any:
    """Vertex of the parabola through three equally spaced points, in grid steps from the middle.

    Through ``(-1, y_left)``, ``(0, y_mid)``, ``(1, y_right)``:

        offset = (y_left - y_right) / (2 (y_left - 2 y_mid + y_right)),

    clipped to ``[-1, 1]`` (the vertex stays inside the bracket), and 0 when the points are
    not strictly concave (curvature ``>= 0``: no maximum to interpolate). Computed as
    ``0.5 (y_left - y_right) / curvature`` on the concave branch only, so no division by
    zero is ever evaluated.

    Args:
      y_left, y_mid, y_right: values at the three points, scalars or arrays of one shape;
        NumPy values give a NumPy result, JAX values (tracers too) a JAX one.

    Returns:
      The offset, shape of the inputs.
    """
    xp = jnp if any(isinstance(v, jax.Array) for v in (y_left, y_mid, y_right)) else np
    curvature = y_left - 2.0 * y_mid + y_right
    concave = curvature < 0
    offset = xp.where(concave, 0.5 * (y_left - y_right) / xp.where(concave, curvature, -1.0), 0.0)
    return xp.clip(offset, -1.0, 1.0)


def parabola_vertex(t: Any, y: Any) -> Array:
    """Abscissa of the vertex of the parabola through the best grid point and its neighbours.

    With ``j`` the argmax of ``y`` moved inside ``[1, n - 2]`` (an end point has one
    neighbour only), ``t* = t[j] + vertex_offset(y[j-1], y[j], y[j+1]) (t[1] - t[0])``:
    within one grid step of ``t[j]``. Near a smooth maximum the error is third order in the
    grid step. Traceable; vmap over curves sampled on one grid.

    Args:
      t: ``(n,)`` uniform grid, ``n >= 3`` (typically log sigma).
      y: ``(n,)`` values on it.

    Returns:
      Scalar ``t*``.

    Example:
      >>> t = jnp.linspace(-1.0, 1.0, 11)
      >>> parabola_vertex(t, -(t - 0.13) ** 2)  # 0.13
    """
    if np.ndim(t) != 1 or np.ndim(y) != 1 or np.shape(t) != np.shape(y):
        _fail("t", f"t and y must be 1-D of one length; got shapes {np.shape(t)} and {np.shape(y)}")
    n = _check_count("t", np.shape(t)[0], 3, "grid points: a vertex needs three")
    t, y = jnp.asarray(t), jnp.asarray(y)
    j = jnp.clip(jnp.argmax(y), 1, n - 2)
    return t[j] + vertex_offset(y[j - 1], y[j], y[j + 1]) * (t[1] - t[0])


# ------------------------------------------------------------------------------------------
# Traceable searches.
# ------------------------------------------------------------------------------------------
def golden_section_peak(
    fn: Callable[[Array], Array],
    log_lo: Any,
    log_hi: Any,
    num_grid: int = 64,
    num_iters: int = 40,
) -> tuple[Array, Array]:
    """Maximum of ``fn`` over ``sigma in [e^log_lo, e^log_hi]``: a grid, then golden sections.

    A grid of ``num_grid`` points uniform in ``t = log sigma`` finds the best point ``t_i``;
    golden-section search on ``[t_{i-1}, t_{i+1}]`` refines it (``num_iters`` iterations,
    the bracket shrinks by 0.618 each, one evaluation of ``fn`` each). If the best grid
    value beats the refined one (a maximum at an end of the range) the grid point is kept.
    Near a smooth maximum the attainable relative precision in sigma is about
    ``sqrt(relative error of fn)``. Traceable (``fn`` must be); ``num_grid`` and
    ``num_iters`` are static.

    Args:
      fn: maps a 1-D array of sigmas to their values (vectorised, jnp-traceable).
      log_lo, log_hi: scalar log of the search range, ``log_lo < log_hi`` (may be traced).
      num_grid: points of the initial grid (>= 3).
      num_iters: golden-section iterations (>= 0).

    Returns:
      ``(sigma_star, value_star)``.

    Example:
      >>> golden_section_peak(lambda s: -jnp.log(s / 0.3) ** 2, jnp.log(1e-3), jnp.log(1e3))
    """
    num_grid = _check_count("num_grid", num_grid, 3, "grid points")
    num_iters = _check_count("num_iters", num_iters, 0, "golden-section iterations")
    _check_log_range(log_lo, log_hi)
    log_lo, log_hi = _as_range(log_lo, log_hi)
    grid = jnp.linspace(log_lo, log_hi, num_grid, dtype=log_lo.dtype)
    values = fn(jnp.exp(grid))
    i = jnp.argmax(values)
    a = grid[jnp.maximum(i - 1, 0)]
    b = grid[jnp.minimum(i + 1, num_grid - 1)]

    def f(t):
        return fn(jnp.exp(t)[None])[0]

    def step(_, state):
        a, b, x1, x2, f1, f2 = state
        left = f1 >= f2  # the maximum lies in [a, x2]
        a_new = jnp.where(left, a, x1)
        b_new = jnp.where(left, x2, b)
        x1_new = jnp.where(left, b_new - _INV_PHI * (b_new - a_new), x2)
        x2_new = jnp.where(left, x1, a_new + _INV_PHI * (b_new - a_new))
        fp = f(jnp.where(left, x1_new, x2_new))
        return a_new, b_new, x1_new, x2_new, jnp.where(left, fp, f2), jnp.where(left, f1, fp)

    x1 = b - _INV_PHI * (b - a)
    x2 = a + _INV_PHI * (b - a)
    _, _, x1, x2, f1, f2 = jax.lax.fori_loop(0, num_iters, step, (a, b, x1, x2, f(x1), f(x2)))
    t_best = jnp.where(f1 >= f2, x1, x2)
    f_best = jnp.maximum(f1, f2)
    # Keep the grid point when it is better (a maximum at an end of the range).
    t_star = jnp.where(values[i] > f_best, grid[i], t_best)
    return jnp.exp(t_star), jnp.maximum(values[i], f_best)


class ZoomPeak(NamedTuple):
    """Result of :func:`zoom_peak` (a pytree: it passes through ``jit``, ``vmap``, ``lax.map``)."""

    sigma: Array  # the peak, e^t*
    value: Array  # the best value of the last stage
    log_sigmas: Array  # (num_stages, num_grid): every stage's grid in log sigma
    values: Array  # (num_stages, num_grid): the curve on those grids


def zoom_peak(
    fn: Callable[[Array], Array],
    log_lo: Any,
    log_hi: Any,
    num_grid: int = 16,
    num_stages: int = 4,
) -> ZoomPeak:
    """Maximum of ``fn`` over ``sigma in [e^log_lo, e^log_hi]`` by zooming grids and a parabola.

    Stage 1 evaluates ``fn`` on ``num_grid`` points uniform in ``t = log sigma``; each next
    stage evaluates it on ``num_grid`` points spanning the two grid intervals around the
    previous best point (so the step shrinks by ``(num_grid - 1) / 2`` per stage). The peak
    is the :func:`parabola_vertex` of the last stage, unless the best point of the last stage
    is an end of the search range, which is then kept (no vertex beyond the range). The
    stages run through one copy of ``fn`` inside a ``lax.scan``, which keeps the compiled
    program small. Traceable; ``num_grid`` and ``num_stages`` are static.

    Args:
      fn: maps a 1-D array of sigmas to their values (vectorised, jnp-traceable).
      log_lo, log_hi: scalar log of the search range, ``log_lo < log_hi`` (may be traced).
      num_grid: points per stage (>= 3).
      num_stages: stages (>= 1).

    Returns:
      :class:`ZoomPeak` ``(sigma, value, log_sigmas, values)``.

    Example:
      >>> zoom_peak(lambda s: -jnp.log(s / 0.3) ** 2, jnp.log(1e-3), jnp.log(1e3)).sigma
    """
    num_grid = _check_count("num_grid", num_grid, 3, "grid points per stage")
    num_stages = _check_count("num_stages", num_stages, 1, "zoom stages")
    _check_log_range(log_lo, log_hi)
    log_lo, log_hi = _as_range(log_lo, log_hi)

    def stage(bracket, _):
        lo, hi = bracket
        t = jnp.linspace(lo, hi, num_grid, dtype=lo.dtype)
        y = fn(jnp.exp(t))
        i = jnp.argmax(y)
        new = (t[jnp.maximum(i - 1, 0)], t[jnp.minimum(i + 1, num_grid - 1)])
        return new, (t, y)

    _, (ts, ys) = jax.lax.scan(stage, (log_lo, log_hi), None, length=num_stages)
    t, y = ts[-1], ys[-1]
    i = jnp.argmax(y)
    at_end = ((i == 0) & (t[0] <= log_lo)) | ((i == num_grid - 1) & (t[-1] >= log_hi))
    t_star = jnp.where(at_end, t[i], parabola_vertex(t, y))
    return ZoomPeak(jnp.exp(t_star), jnp.max(y), ts, ys)


# ------------------------------------------------------------------------------------------
# Host side.
# ------------------------------------------------------------------------------------------
def grid_peak(fn: Callable[[np.ndarray], Any], lo: float, hi: float, num: int = 128) -> dict:
    """Maximum of a curve ``fn`` on ``[lo, hi]`` (log sigma) by a grid, a zoom and a parabola.

    Host-side :func:`zoom_peak` with two stages, for a curve that is a NumPy function: a grid
    of ``num`` points uniform in log sigma (float64) locates the best point; if it is an end
    of the range that end is the answer (``interior=False``). Otherwise a second grid of the
    same length (so a compiled program behind ``fn`` serves both) on the two neighbouring
    intervals refines it, and the vertex of the parabola through the best refined point and
    its neighbours (:func:`vertex_offset`, scaled by the spacing of the refined grid at that
    point) gives the peak.

    Args:
      fn: maps a ``(num,)`` NumPy array of sigmas to ``num`` values.
      lo, hi: the range, ``0 < lo < hi``.
      num: points per grid (>= 3).

    Returns:
      dict with ``sigma`` (the peak), ``value`` (the best value of the last grid evaluated),
      ``interior`` (False when the maximum sits at an end of the range) and ``index`` (of
      the best point of the first grid).

    Example:
      >>> grid_peak(lambda s: -np.log(s / 0.3) ** 2, 1e-3, 1e3, 64)["sigma"]  # 0.3
    """
    num = _check_count("num", num, 3, "grid points")
    lo_f, hi_f = float(lo), float(hi)
    if not (np.isfinite(lo_f) and np.isfinite(hi_f) and 0.0 < lo_f < hi_f):
        _fail("lo", f"need 0 < lo < hi, both finite; got lo={lo_f:g}, hi={hi_f:g}")
    t = np.linspace(np.log(lo), np.log(hi), num)
    y = np.asarray(fn(np.exp(t)), np.float64)
    if y.shape != (num,):
        _fail("fn", f"must return one value per sigma, shape ({num},); got {y.shape}")
    i = int(np.argmax(y))
    if i == 0 or i == num - 1:
        return {"sigma": float(np.exp(t[i])), "value": float(y[i]), "interior": False, "index": i}
    fine = np.linspace(t[i - 1], t[i + 1], num)
    yf = np.asarray(fn(np.exp(fine)), np.float64)
    j = int(np.clip(np.argmax(yf), 1, num - 2))
    # The local spacing fine[j+1] - fine[j] (equal to fine[1] - fine[0] up to rounding).
    offset = float(vertex_offset(yf[j - 1], yf[j], yf[j + 1]))
    t_star = fine[j] + offset * (fine[j + 1] - fine[j])
    return {"sigma": float(np.exp(t_star)), "value": float(np.max(yf)), "interior": True, "index": i}


def local_maxima(y: Any, rel_prominence: float = 1e-3) -> int:
    """Number of interior local maxima of a sampled curve that stand out from rounding noise.

    A maximum counts when its prominence (its height above the higher of the two minima that
    separate it from higher points or the ends, :func:`scipy.signal.find_peaks`) exceeds
    ``rel_prominence`` times the curve's range. Curves computed in float32 carry rounding
    (~1e-5 relative on the quadrature) that makes spurious micro-maxima on flat plateaus.

    Args:
      y: ``(n,)`` values of the curve on a grid.
      rel_prominence: threshold relative to ``max(y) - min(y)`` (>= 0).

    Returns:
      The count (0 for a constant or monotone curve).
    """
    from scipy.signal import find_peaks
    y = np.asarray(y, np.float64)
    if y.ndim != 1:
        _fail("y", f"must be 1-D (one curve); got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        _fail("y", "must be finite (found NaN or inf)")
    if not rel_prominence >= 0:
        _fail("rel_prominence", f"must be >= 0; got {rel_prominence}")
    span = float(np.max(y) - np.min(y)) if y.size else 0.0
    if span == 0.0:
        return 0
    peaks, _ = find_peaks(y, prominence=rel_prominence * span)
    return int(peaks.size)
