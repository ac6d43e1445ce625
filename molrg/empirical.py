"""The empirical (memorising) optimal denoiser, docs/theory.md section 3.

For a training set ``{y_i}`` the minimiser of the training denoising loss over all
functions is

    E_emp[x_0 | x_t] = sum_i y_i softmax_i( -||x_t / s - y_i||^2 / (2 sigma^2) ).

With weights ``w_i >= 0`` on the training points (the weighted empirical distribution
``sum_i w_i delta_{y_i} / sum_i w_i``) the softmax logits gain ``log w_i``; a point of
weight 0 has logit ``-inf`` and drops out, so a fixed-size training set can be masked to
any subset inside one compiled program.

It is computed by streaming over the training set in chunks with an online softmax
(the running max / running sum recurrence of flash attention), so memory is
``O(B * chunk_size + B n)`` whatever N is. Each chunk costs two matrix products,
``x @ Y_c^T`` for the squared distances ``||x||^2 - 2 x.y + ||y||^2`` and ``p @ Y_c``
(inputs and training points centred on the training mean). That expansion cancels
catastrophically for the points nearest to ``x`` (absolute error ``~eps (||x||^2 +
||y||^2)``, many nats at small sigma: float32 gave NaN or a wrong point at sigma = 1e-5),
and those are the points that carry the weight at small sigma; so the few nearest points
of each chunk (``_REFINE``, by the expanded distance) get their distances recomputed
directly as ``||x - y||^2``. Inputs far outside the training set use ``||y||^2 - 2 x.y``
instead (the common ``||x||^2`` dropped). Logits are kept relative to the smallest
distance seen so far, so they neither overflow nor lose the nearest point at any sigma.
The full chunks are read in place with ``lax.dynamic_slice`` (no padded copy of the
training set); a final partial chunk is processed on its own. A chunk whose logits are
all ``-inf`` (every point masked) leaves the running state unchanged.

Accuracy (float32 against float64 on the same inputs): every softmax weight comes from a
distance with absolute error ``~eps min(||x - y||^2, ||x|| ||y||)`` (centred), so the
output is finite and matches float64 for sigma from 1e-8 to 1e4 and inputs at any scale
the dtype holds (tests/test_empirical.py, tests/test_numerics_hardening.py). Limits: the
weights carry an error of ``eps d / (2 sigma^2)`` nats, so where the answer is a genuine
mixture of points at distance ``d >> sigma`` (near-ties at tiny sigma) float32 resolves
the mixing weights only to that; and where more than ``_REFINE`` points of one chunk are
within the expansion's error of the nearest (near-duplicate training points at tiny sigma)
the weights among those near-ties carry the expansion's error. Either way the output is a
convex combination of the near-tied points.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from molrg._precision import full_precision
from molrg._validate import (as_float, check_finite, check_int, check_noise_level, check_points,
                             check_positive, check_real, fail, is_concrete, valid_noise_level)

Array = jax.Array


# Training points per chunk whose squared distances are recomputed directly (see _update).
_REFINE = 4


def _update(x, xx, direct_rows, inv_two_var, carry, chunk):
    """One online-softmax step over a chunk ``(Y (C, n), log_w (C,) or None)``.

    ``x`` (B, n) and ``Y`` are centred on the training mean. The state is ``(ref, run_max,
    run_sum, acc)``: ``ref`` (B,) is the smallest distance measure to an unmasked point so
    far, and the logits are kept relative to it, ``l_i = -(d_i - ref) / (2 sigma^2) + log w_i``,
    so they stay finite at any sigma and input scale (``-d_i / (2 sigma^2)`` itself
    overflows float32 for ``d_i / sigma^2 > ~7e38``, e.g. sigma = 1e-8 with distances 3e11).

    The distance measure ``d_i`` is one of two, per row (``direct_rows``), both exact up to
    a constant of the row:

    * rows near the training set: the squared distance ``||x||^2 - 2 x.y + ||y||^2``, whose
      expansion cancels catastrophically for the nearest points (absolute error
      ``~eps (||x||^2 + ||y||^2)``, i.e. ``eps ||y||^2 / (2 sigma^2)`` nats: 1e9 nats at
      sigma = 1e-8 in float32, NaN or a wrong point before). Those points carry the weight
      at small sigma, so the ``_REFINE`` nearest points of the chunk get their distances
      recomputed directly as ``||x - y||^2`` (relative error ~eps): an input equal to a
      training point is at distance 0 from it exactly.
    * rows far from it (``||x||`` beyond the training set's radius): ``||y||^2 - 2 x.y``,
      the distance less the common ``||x||^2``, accurate to ``eps ||x|| ||y||`` where the
      squared distance itself (and any direct ``||x - y||^2``) carries ``eps ||x||^2``.
    """
    Y, log_w = chunk
    ref, run_max, run_sum, acc = carry
    dist_less_xx = jnp.sum(Y * Y, axis=-1)[None, :] - 2.0 * lax.optimization_barrier(x @ Y.T)  # (B, C)
    near = -(xx[:, None] + dist_less_xx)  # minus the expanded squared distance
    if log_w is not None:
        masked = jnp.isneginf(log_w)[None, :]
        near = jnp.where(masked, -jnp.inf, near)
    # The points strictly above the (_REFINE + 1)-th largest `near` (at most _REFINE of
    # them; all of them, ties included) are recomputed directly; the rest keep the
    # expansion. Splitting by a threshold rather than writing the direct values back into
    # the (B, C) array keeps the two sets disjoint without a scatter (slow on CPU).
    # (The barriers stop XLA from fusing the matrix product into several consumers,
    # recomputing it in each: 20x slower on CPU.)
    near = lax.optimization_barrier(near)
    top, idx = lax.optimization_barrier(lax.top_k(near, min(_REFINE + 1, Y.shape[0])))  # (B, k)
    threshold = top[:, -1:]
    refine = (top > threshold) & direct_rows[:, None]  # (B, k)
    y_near = Y[idx]  # (B, k, n)
    d_ref = jnp.sum(jnp.square(x[:, None, :] - y_near), axis=-1)  # (B, k), relative error ~eps
    expanded = jnp.where(direct_rows[:, None], jnp.maximum(-near, 0.0), dist_less_xx)
    expanded = jnp.where((near > threshold) & direct_rows[:, None], jnp.inf, expanded)
    d_ref = jnp.where(refine, d_ref, jnp.inf)
    if log_w is not None:
        expanded = jnp.where(masked, jnp.inf, expanded)
        lw_ref = jnp.where(refine, log_w[idx], 0.0)
    new_ref = jnp.minimum(ref, jnp.minimum(jnp.min(expanded, axis=-1), jnp.min(d_ref, axis=-1)))
    # While every point seen so far is masked there is no reference yet (ref = inf):
    # measure from 0 instead (all those terms are exp(-inf) = 0 either way).
    base = jnp.where(jnp.isinf(new_ref), jnp.zeros_like(new_ref), new_ref)[:, None]
    # inf distances (masked, or counted in the other set) give logit -inf, weight 0
    logits = -(expanded - base) * inv_two_var  # (B, C)
    logits_ref = -(d_ref - base) * inv_two_var  # (B, k)
    if log_w is not None:
        logits = logits + jnp.where(masked, 0.0, log_w[None, :])
        logits_ref = logits_ref + lw_ref
    # The old state's logits were relative to the old reference: rebase them (ref only
    # decreases, so this lowers them; an overflow to -inf means they no longer count).
    run_max = run_max - (ref - base[:, 0]) * jnp.reshape(inv_two_var, (-1,))
    new_max = jnp.maximum(run_max, jnp.maximum(jnp.max(logits, axis=-1), jnp.max(logits_ref, axis=-1)))
    # While every point seen so far is masked the maximum is -inf; shifting by 0 instead
    # keeps exp(-inf - (-inf)) = NaN out (the masked terms are exp(-inf) = 0 either way).
    shift = jnp.where(jnp.isneginf(new_max), jnp.zeros_like(new_max), new_max)
    correction = jnp.exp(run_max - shift)
    p = jnp.exp(logits - shift[:, None])
    p_ref = jnp.exp(logits_ref - shift[:, None])
    run_sum = run_sum * correction + jnp.sum(p, axis=-1) + jnp.sum(p_ref, axis=-1)
    acc = acc * correction[:, None] + p @ Y + jnp.sum(p_ref[:, :, None] * y_near, axis=1)
    return new_ref, new_max, run_sum, acc


@functools.partial(jax.jit, static_argnames=("chunk_size",))
@full_precision
def _stream(train_x, log_w, x, sigma, scale, chunk_size):
    N, n = train_x.shape
    B = x.shape[0]
    col = (lambda v: v) if sigma.ndim == 0 else (lambda v: v[:, None])
    # Centred on the training mean (any reference point is exact; the mean keeps the
    # squares small for data away from the origin).
    centre = jnp.mean(train_x, axis=0)[None, :]  # (1, n)
    xs = x / (scale if scale.ndim == 0 else scale[:, None]) - centre
    # sum_j max_i (y_ij - centre_j)^2 >= max_i ||y_i - centre||^2, as column reductions
    # (no (N,) temporary): rows outside this radius are "far" (see _update).
    radius2 = jnp.sum(jnp.max(jnp.square(train_x - centre), axis=0))
    xx = jnp.sum(xs * xs, axis=-1)
    inv_two_var = 1.0 / (2.0 * col(jnp.square(sigma)))
    dtype = x.dtype
    carry = (jnp.full((B,), jnp.inf, dtype), jnp.full((B,), -jnp.inf, dtype), jnp.zeros((B,), dtype),
             jnp.zeros((B, n), dtype))
    step = functools.partial(_update, xs, xx, xx <= radius2, inv_two_var)
    chunk = min(chunk_size, N)
    full = N // chunk

    def rows(a, start, size):
        return None if a is None else lax.dynamic_slice_in_dim(a, start, size, axis=0)

    def body(i, carry):
        return step(carry, (rows(train_x, i * chunk, chunk) - centre, rows(log_w, i * chunk, chunk)))

    carry = lax.fori_loop(0, full, body, carry)
    if N % chunk:
        tail = N - full * chunk
        carry = step(carry, (rows(train_x, full * chunk, tail) - centre, rows(log_w, full * chunk, tail)))
    _, _, run_sum, acc = carry
    out = centre + acc / run_sum[:, None]
    # Traced sigma/scale escape the ValueError checks: NaN where they are not positive and
    # finite, rather than the finite nonsense the formula gives (it only sees sigma^2).
    return jnp.where(col(valid_noise_level(sigma, scale)), out, jnp.nan)


def empirical_denoise(train_x, x_t, sigma, scale=1.0, *, weights=None,
                      chunk_size: int = 2048) -> Array:
    """``E_emp[x_0 | x_t]`` under the (weighted) empirical distribution of ``train_x``.

    ``sum_i w_i y_i exp(l_i) / sum_i w_i exp(l_i)`` with ``l_i = -||x_t / s - y_i||^2 /
    (2 sigma^2)`` (docs/theory.md section 3); ``w_i = 1`` without ``weights``.

    Args:
      train_x: ``(N, n)`` training points ``y_i`` (real).
      x_t: ``(..., n)`` noisy points, ``x_t = scale * (x_0 + sigma * eps)``.
      sigma: a scalar or one value per sample, > 0. Concrete values are checked (ValueError);
        where a traced value (inside ``jit``/``vmap``) is not positive and finite the
        output rows are NaN.
      scale: a scalar or one value per sample, > 0 (traced: as ``sigma``).
      weights: optional ``(N,)`` non-negative weights of the training points (their scale
        does not matter); points of weight 0 are left out (logit ``-inf``), so a 0/1 mask
        gives the empirical denoiser of the selected rows. At least one weight must be
        positive. May be traced (a mask over a padded training set under ``jit``/``vmap``).
      chunk_size: training points per streamed chunk (memory ~ batch x chunk_size).

    Returns:
      ``(..., n)`` in ``x_t``'s dtype: a convex combination of training points; NaN rows
      where a traced sigma/scale is not positive and finite (module docstring: accuracy
      and limits).

    Example:
      >>> mask = jnp.arange(train.shape[0]) < 37  # the first 37 points only
      >>> xhat = empirical_denoise(train, x_t, 0.5, weights=mask)  # doctest: +SKIP
    """
    check_real("train_x", train_x, allow_bool=False)
    if np.ndim(train_x) != 2 or np.shape(train_x)[0] < 1:
        fail("train_x", f"must have shape (N, n) with N >= 1; got shape {np.shape(train_x)}")
    n = np.shape(train_x)[1]
    check_points("x_t", x_t, n, width_of=f"the width of train_x, shape {tuple(np.shape(train_x))}")
    batch = tuple(np.shape(x_t)[:-1])
    check_noise_level("sigma", sigma, batch)
    check_noise_level("scale", scale, batch)
    check_int("chunk_size", chunk_size)
    check_finite("train_x", train_x)
    if weights is not None:
        check_real("weights", weights)
        if np.shape(weights) != (np.shape(train_x)[0],):
            fail("weights", f"must have shape (N,) = ({np.shape(train_x)[0]},), one per training point; "
                            f"got shape {np.shape(weights)}")
        check_positive("weights", weights, allow_zero=True)
        if is_concrete(weights) and not np.any(np.asarray(weights) > 0):
            fail("weights", "must have at least one positive entry (all training points are masked)")
    x = as_float(x_t)
    dtype = x.dtype
    flat = x.reshape(-1, n)

    def per_sample(v):
        v = jnp.asarray(v, dtype)
        return v if v.ndim == 0 else v.reshape(-1)

    # log 0 = -inf: a point of weight 0 gets logit -inf, hence softmax weight exactly 0
    log_w = None if weights is None else jnp.log(jnp.asarray(weights, dtype))
    out = _stream(jnp.asarray(train_x, dtype), log_w, flat, per_sample(sigma), per_sample(scale),
                  int(chunk_size))
    return out.reshape(*batch, n)
