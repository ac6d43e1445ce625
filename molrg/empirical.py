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
``O(B * chunk_size + B n)`` whatever N is: with ``-||x - y||^2 = 2 x.y - ||y||^2 -
||x||^2`` and the last term common to all i, each chunk costs two matrix products,
``x @ Y_c^T`` and ``p @ Y_c``. The full chunks are read in place with
``lax.dynamic_slice`` (no padded copy of the training set); a final partial chunk is
processed on its own. A chunk whose logits are all ``-inf`` (every point masked) leaves
the running state unchanged.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from molrg._precision import full_precision
from molrg._validate import (as_float, check_finite, check_noise_level, check_points, check_positive,
                             fail, is_concrete)

Array = jax.Array


def _update(x, inv_two_var, carry, chunk):
    """One online-softmax step over a chunk ``(Y (C, n), log_w (C,) or None)``."""
    Y, log_w = chunk
    run_max, run_sum, acc = carry
    logits = (2.0 * (x @ Y.T) - jnp.sum(Y * Y, axis=-1)[None, :]) * inv_two_var  # (B, C)
    if log_w is not None:
        logits = logits + log_w[None, :]
    new_max = jnp.maximum(run_max, jnp.max(logits, axis=-1))
    # While every point seen so far is masked the maximum is -inf; shifting by 0 instead
    # keeps exp(-inf - (-inf)) = NaN out (the masked terms are exp(-inf) = 0 either way).
    shift = jnp.where(jnp.isneginf(new_max), jnp.zeros_like(new_max), new_max)
    correction = jnp.exp(run_max - shift)
    p = jnp.exp(logits - shift[:, None])
    run_sum = run_sum * correction + jnp.sum(p, axis=-1)
    acc = acc * correction[:, None] + p @ Y
    return new_max, run_sum, acc


@functools.partial(jax.jit, static_argnames=("chunk_size",))
@full_precision
def _stream(train_x, log_w, x, sigma, scale, chunk_size):
    N, n = train_x.shape
    B = x.shape[0]
    col = (lambda v: v) if sigma.ndim == 0 else (lambda v: v[:, None])
    xs = x / (scale if scale.ndim == 0 else scale[:, None])
    inv_two_var = 1.0 / (2.0 * col(jnp.square(sigma)))
    dtype = x.dtype
    carry = (jnp.full((B,), -jnp.inf, dtype), jnp.zeros((B,), dtype), jnp.zeros((B, n), dtype))
    step = functools.partial(_update, xs, inv_two_var)
    chunk = min(chunk_size, N)
    full = N // chunk

    def rows(a, start, size):
        return None if a is None else lax.dynamic_slice_in_dim(a, start, size, axis=0)

    def body(i, carry):
        return step(carry, (rows(train_x, i * chunk, chunk), rows(log_w, i * chunk, chunk)))

    carry = lax.fori_loop(0, full, body, carry)
    if N % chunk:
        tail = N - full * chunk
        carry = step(carry, (rows(train_x, full * chunk, tail), rows(log_w, full * chunk, tail)))
    _, run_sum, acc = carry
    return acc / run_sum[:, None]


def empirical_denoise(train_x, x_t, sigma, scale=1.0, *, weights=None,
                      chunk_size: int = 2048) -> Array:
    """``E_emp[x_0 | x_t]`` under the (weighted) empirical distribution of ``train_x``.

    ``sum_i w_i y_i exp(l_i) / sum_i w_i exp(l_i)`` with ``l_i = -||x_t / s - y_i||^2 /
    (2 sigma^2)`` (docs/theory.md section 3); ``w_i = 1`` without ``weights``.

    Args:
      train_x: ``(N, n)`` training points ``y_i``.
      x_t: ``(..., n)`` noisy points, ``x_t = scale * (x_0 + sigma * eps)``.
      sigma: a scalar or one value per sample, > 0.
      scale: a scalar or one value per sample, > 0.
      weights: optional ``(N,)`` non-negative weights of the training points (their scale
        does not matter); points of weight 0 are left out (logit ``-inf``), so a 0/1 mask
        gives the empirical denoiser of the selected rows. At least one weight must be
        positive. May be traced (a mask over a padded training set under ``jit``/``vmap``).
      chunk_size: training points per streamed chunk (memory ~ batch x chunk_size).

    Returns:
      ``(..., n)`` in ``x_t``'s dtype: a convex combination of training points.

    Example:
      >>> mask = jnp.arange(train.shape[0]) < 37  # the first 37 points only
      >>> xhat = empirical_denoise(train, x_t, 0.5, weights=mask)  # doctest: +SKIP
    """
    if np.ndim(train_x) != 2 or np.shape(train_x)[0] < 1:
        fail("train_x", f"must have shape (N, n) with N >= 1; got shape {np.shape(train_x)}")
    n = np.shape(train_x)[1]
    check_points("x_t", x_t, n)
    batch = tuple(np.shape(x_t)[:-1])
    check_noise_level("sigma", sigma, batch)
    check_noise_level("scale", scale, batch)
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        fail("chunk_size", f"must be a positive integer; got {chunk_size!r}")
    check_finite("train_x", train_x)
    if weights is not None:
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
