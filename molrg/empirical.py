"""The empirical (memorising) optimal denoiser, THEORY section 3.

For a training set ``{y_i}`` the minimiser of the training denoising loss over all
functions is

    E_emp[x_0 | x_t] = sum_i y_i softmax_i( -||x_t / s - y_i||^2 / (2 sigma^2) ).

It is computed by streaming over the training set in chunks with an online softmax
(the running max / running sum recurrence of flash attention), so memory is
``O(B * chunk_size + B n)`` whatever N is: with ``-||x - y||^2 = 2 x.y - ||y||^2 -
||x||^2`` and the last term common to all i, each chunk costs two matrix products,
``x @ Y_c^T`` and ``p @ Y_c``. The full chunks are read in place with
``lax.dynamic_slice`` (no padded copy of the training set); a final partial chunk is
processed on its own.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from molrg._precision import full_precision
from molrg._validate import as_float, check_finite, check_noise_level, check_points, fail

Array = jax.Array


def _update(x, inv_two_var, carry, Y):
    """One online-softmax step over a chunk ``Y`` (C, n)."""
    run_max, run_sum, acc = carry
    logits = (2.0 * (x @ Y.T) - jnp.sum(Y * Y, axis=-1)[None, :]) * inv_two_var  # (B, C)
    new_max = jnp.maximum(run_max, jnp.max(logits, axis=-1))
    correction = jnp.exp(run_max - new_max)
    p = jnp.exp(logits - new_max[:, None])
    run_sum = run_sum * correction + jnp.sum(p, axis=-1)
    acc = acc * correction[:, None] + p @ Y
    return new_max, run_sum, acc


@functools.partial(jax.jit, static_argnames=("chunk_size",))
@full_precision
def _stream(train_x, x, sigma, scale, chunk_size):
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

    def body(i, carry):
        return step(carry, lax.dynamic_slice_in_dim(train_x, i * chunk, chunk, axis=0))

    carry = lax.fori_loop(0, full, body, carry)
    if N % chunk:
        carry = step(carry, train_x[full * chunk:])
    _, run_sum, acc = carry
    return acc / run_sum[:, None]


def empirical_denoise(train_x, x_t, sigma, scale=1.0, *, chunk_size: int = 2048) -> Array:
    """``E_emp[x_0 | x_t]`` under the empirical distribution of ``train_x``.

    Args:
      train_x: ``(N, n)`` training points.
      x_t: ``(..., n)`` noisy points, ``x_t = scale * (x_0 + sigma * eps)``.
      sigma: a scalar or one value per sample, > 0.
      scale: a scalar or one value per sample, > 0.
      chunk_size: training points per streamed chunk (memory ~ batch x chunk_size).

    Returns:
      ``(..., n)`` in ``x_t``'s dtype: a convex combination of training points.
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
    x = as_float(x_t)
    dtype = x.dtype
    flat = x.reshape(-1, n)

    def per_sample(v):
        v = jnp.asarray(v, dtype)
        return v if v.ndim == 0 else v.reshape(-1)

    out = _stream(jnp.asarray(train_x, dtype), flat, per_sample(sigma), per_sample(scale),
                  int(chunk_size))
    return out.reshape(*batch, n)
