"""Generalisation and memorisation measures for generated samples (docs/theory.md section 7).

* :func:`nearest_neighbors`, :func:`copy_fraction` -- distance of each generated sample
  to its nearest and second-nearest training point, and the fraction of samples that
  copy a training point: ``d_1 < ratio * d_2`` (the criterion of Yoon et al. 2023 and
  Gu et al. 2023, ``ratio = 1/3``). The training set is streamed in chunks with a
  running top-2 (``-2 x.y + ||y||^2`` by one matrix product per chunk), so memory is
  ``O(B * chunk_size + B n)`` whatever N is. The two selected distances are then
  recomputed directly as ``||x - y_i||``: the expanded form loses all digits of a
  distance much smaller than ``||x||`` (a copy!), the direct one does not.
* :func:`distance_to_union` -- distance to the nearest class affine subspace
  ``mu_k + span(U_k)``: ``min_k ||r_k - U_k (U_k^T r_k)||``, ``r_k = x - mu_k``
  (never an ``n x n`` projector; the residual is formed explicitly so that small
  distances keep their digits).
* :func:`mixture_log_likelihood` -- the normalised log density of the MoLRG itself, or
  of its noisy version ``x_t = s (x_0 + sigma eps)``, by the frame/Woodbury route of
  :mod:`molrg.posterior`.

The array functions are pure, batch-native and ``jit``/``vmap``-friendly; input checks
run eagerly (shape checks always, value checks only on concrete values).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from molrg._precision import full_precision
from molrg._validate import as_float, check_finite, check_points, fail, is_concrete
from molrg.mixture import MoLRG, geometry

Array = jax.Array

__all__ = [
    "NearestNeighbors",
    "SINGULAR_SIGMA",
    "nearest_neighbors",
    "copy_fraction",
    "distance_to_union",
    "mixture_log_likelihood",
]

#: The noise level :func:`mixture_log_likelihood` uses by default when the MoLRG has no
#: ambient noise (``noise = 0``), where the density of ``x_0`` itself is singular.
SINGULAR_SIGMA = 1e-3


def _float(name: str, x, ndim: int) -> Array:
    if np.ndim(x) != ndim:
        fail(name, f"must be {ndim}-D; got shape {np.shape(x)}")
    check_finite(name, x)
    x = as_float(x)
    return x


def _check_mix(mix) -> None:
    if not isinstance(mix, MoLRG):
        fail("mix", f"must be a molrg.MoLRG; got {type(mix).__name__}")


# ------------------------------------------------------------------------------------------
# Nearest neighbours in the training set.
# ------------------------------------------------------------------------------------------
class NearestNeighbors(NamedTuple):
    """Nearest and second-nearest training points of each sample.

    Attributes:
      distance: ``(B,)`` Euclidean distance to the nearest training point.
      second_distance: ``(B,)`` distance to the second nearest (another index).
      index: ``(B,)`` int32 index of the nearest training point.
    """

    distance: Array
    second_distance: Array
    index: Array


def _smallest_two(scores, idx):
    """The two smallest ``scores`` (B, m) per row, with their ``idx`` (B, m) entries."""
    neg, pos = lax.top_k(-scores, 2)
    return -neg, jnp.take_along_axis(idx, pos, axis=1)


def _chunk_top2(x, carry, Y, offset):
    """Merges the two nearest points of chunk ``Y`` (C, n) into the running top-2."""
    best, best_idx = carry
    # ||x - y||^2 less the common ||x||^2: one matrix product per chunk.
    scores = jnp.sum(Y * Y, axis=-1)[None, :] - 2.0 * (x @ Y.T)  # (B, C)
    cols = offset + jnp.arange(Y.shape[0], dtype=jnp.int32)
    idx = jnp.broadcast_to(cols[None, :], scores.shape)
    if Y.shape[0] >= 2:
        scores, idx = _smallest_two(scores, idx)
    return _smallest_two(jnp.concatenate([best, scores], axis=1),
                         jnp.concatenate([best_idx, idx], axis=1))


@functools.partial(jax.jit, static_argnames=("chunk_size",))
@full_precision
def _nearest(train, x, chunk_size):
    N = train.shape[0]
    B = x.shape[0]
    carry = (jnp.full((B, 2), jnp.inf, x.dtype), jnp.zeros((B, 2), jnp.int32))
    chunk = min(chunk_size, N)
    full = N // chunk

    def body(i, carry):
        start = i * chunk
        Y = lax.dynamic_slice_in_dim(train, start, chunk, axis=0)
        return _chunk_top2(x, carry, Y, start.astype(jnp.int32))

    carry = lax.fori_loop(0, full, body, carry)
    if N % chunk:
        carry = _chunk_top2(x, carry, train[full * chunk:], jnp.int32(full * chunk))
    _, idx = carry
    # Exact distances of the two selected points (see the module docstring).
    dist = jnp.sqrt(jnp.sum(jnp.square(x[:, None, :] - train[idx]), axis=-1))  # (B, 2)
    swap = dist[:, 1] < dist[:, 0]  # recomputation can reorder near-ties
    first = jnp.where(swap, dist[:, 1], dist[:, 0])
    second = jnp.where(swap, dist[:, 0], dist[:, 1])
    index = jnp.where(swap, idx[:, 1], idx[:, 0])
    return NearestNeighbors(first, second, index)


def _check_pair(samples, train, chunk_size):
    train = _float("train", train, 2)
    N, n = train.shape
    if N < 2:
        fail("train", f"needs at least 2 points (for the second-nearest distance); got N = {N}")
    check_points("samples", samples, n)
    samples = jnp.asarray(samples)
    if not jnp.issubdtype(samples.dtype, jnp.floating):
        samples = samples.astype(train.dtype)
    if samples.dtype != train.dtype:
        fail("samples", f"must have the dtype of train ({train.dtype}); got {samples.dtype}")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        fail("chunk_size", f"must be a positive integer; got {chunk_size!r}")
    return samples, train


def nearest_neighbors(samples, train, *, chunk_size: int = 1024) -> NearestNeighbors:
    """Nearest and second-nearest training points of each sample, streamed over ``train``.

    Args:
      samples: ``(..., n)`` generated points.
      train: ``(N, n)`` training points, ``N >= 2``, same dtype.
      chunk_size: training points per chunk; memory is ``O(B * chunk_size)``.

    Returns:
      :class:`NearestNeighbors` with arrays of shape ``samples.shape[:-1]``.
    """
    samples, train = _check_pair(samples, train, chunk_size)
    batch = samples.shape[:-1]
    out = _nearest(train, samples.reshape(-1, train.shape[1]), int(chunk_size))
    return NearestNeighbors(*(a.reshape(batch) for a in out))


def copy_fraction(samples, train, ratio=1.0 / 3.0, *, chunk_size: int = 1024) -> Array:
    """Fraction of samples that copy a training point: ``d_1 < ratio * d_2``.

    ``d_1``, ``d_2`` are the distances to the nearest and second-nearest training point
    (:func:`nearest_neighbors`); a copy sits much closer to one training point than to
    any other. ``ratio = 1/3`` is the threshold of Yoon et al. (2023).

    Args:
      samples: ``(..., n)`` generated points.
      train: ``(N, n)`` training points.
      ratio: threshold in ``(0, 1]``, a scalar (traceable).
      chunk_size: as in :func:`nearest_neighbors`.

    Returns:
      A scalar in ``[0, 1]``.
    """
    if np.shape(ratio) != ():
        fail("ratio", f"must be a scalar; got shape {np.shape(ratio)}")
    if is_concrete(ratio) and not (0.0 < float(np.asarray(ratio)) <= 1.0):
        fail("ratio", f"must lie in (0, 1]; got {float(np.asarray(ratio)):g}")
    nn = nearest_neighbors(samples, train, chunk_size=chunk_size)
    ratio = jnp.asarray(ratio, nn.distance.dtype)
    return jnp.mean((nn.distance < ratio * nn.second_distance).astype(nn.distance.dtype))


# ------------------------------------------------------------------------------------------
# Distances and densities under the mixture.
# ------------------------------------------------------------------------------------------
def distance_to_union(samples, mix: MoLRG, *, return_class: bool = False):
    """Distance to the nearest class affine subspace ``mu_k + span(U_k)``.

    ``dist(x) = min_k ||(x - mu_k) - U_k U_k^T (x - mu_k)||``, computed with ``U_k^T``
    products (``O(B n sum_k d_k)``, never an ``n x n`` projector). It ignores the
    ``delta`` and ``eta`` parts of the model: it measures how far a sample is from the
    union of the class subspaces.

    Args:
      samples: ``(..., n)`` points.
      mix: the mixture.
      return_class: also return the index of the nearest subspace.

    Returns:
      ``samples.shape[:-1]`` distances (and int32 nearest classes).
    """
    _check_mix(mix)
    check_points("samples", samples, mix.n)
    x = as_float(samples)
    batch = x.shape[:-1]
    dist = _union_distances(mix, x.reshape(-1, mix.n))
    out = jnp.min(dist, axis=-1).reshape(batch)
    if return_class:
        return out, jnp.argmin(dist, axis=-1).astype(jnp.int32).reshape(batch)
    return out


@jax.jit
@full_precision
def _union_distances(mix, x):
    dists = []
    for k, U in enumerate(mix.bases):
        U = U.astype(x.dtype)
        r = x if mix.means is None else x - mix.means[k].astype(x.dtype)[None, :]
        resid = r - (r @ U) @ U.T
        dists.append(jnp.sqrt(jnp.sum(resid * resid, axis=-1)))
    return jnp.stack(dists, axis=-1)  # (B, K)


def _noise_level(name, value, batch, allow_zero):
    shape = np.shape(value)
    if shape != () and shape != tuple(batch):
        fail(name, f"must be a scalar or have one value per sample, shape {tuple(batch)}; "
             f"got shape {shape}")
    if is_concrete(value):
        arr = np.asarray(value, np.float64)
        if not np.all(np.isfinite(arr)):
            fail(name, "must be finite (found NaN or inf)")
        if allow_zero and np.any(arr < 0):
            fail(name, f"must be >= 0 (found {arr.min():g})")
        if not allow_zero and np.any(arr <= 0):
            fail(name, f"must be > 0 (found {arr.min():g})")


def mixture_log_likelihood(samples, mix: MoLRG, sigma=None, scale=1.0) -> Array:
    """Normalised log density of the MoLRG, ``log p(x)``, or of its noisy version.

    ``x ~ sum_k pi_k N(s mu_k, s^2 (Sigma_k + sigma^2 I))`` (``x = s (x_0 + sigma eps)``,
    docs/theory.md section 3); ``sigma = 0, s = 1`` is the data distribution itself. With the
    frame ``W`` (n x r) of :func:`molrg.mixture.geometry`, ``y = x / s``, ``z = W^T y``,
    ``c = eta^2 + sigma^2`` and class k's eigen-coordinates ``u_k = Q_k^T (z - W^T mu_k)``
    with group variances ``v_kg`` (sizes ``n_g``) and energies ``E_kg``,

        log p(x) = logsumexp_k [log pi_k - 1/2 sum_g n_g log1p(v_kg / c) - 1/2 sum_g E_kg / (v_kg + c)]
                   - n/2 log(2 pi c) - ||y - W z||^2 / (2 c) - n log s

    (Woodbury and the determinant lemma in the frame; outside it every class has
    covariance ``c I``). Never an ``n x n`` matrix.

    The density of ``x_0`` is singular when ``eta = 0`` (the data lie in a union of
    subspaces); then ``sigma`` defaults to :data:`SINGULAR_SIGMA` ``= 1e-3``, i.e. the
    log density of the slightly noised ``x_0 + 1e-3 eps``, finite and comparable
    between sample sets (a point off the subspaces by distance ``r`` loses about
    ``r^2 / (2 * 1e-6)`` nats).

    Args:
      samples: ``(..., n)`` points.
      mix: the mixture.
      sigma: noise level ``>= 0``, a scalar or one per sample; None: 0 when the mixture
        has ambient noise (``noise > 0`` or traced), else :data:`SINGULAR_SIGMA`.
        ``eta^2 + sigma^2`` must be > 0.
      scale: ``s > 0``, a scalar or one per sample.

    Returns:
      ``samples.shape[:-1]`` log densities (nats), in the samples' dtype.
    """
    _check_mix(mix)
    check_points("samples", samples, mix.n)
    batch = tuple(np.shape(samples)[:-1])
    if sigma is None:
        sigma = SINGULAR_SIGMA if mix.noiseless else 0.0
    _noise_level("sigma", sigma, batch, allow_zero=True)
    _noise_level("scale", scale, batch, allow_zero=False)
    if is_concrete(sigma, mix.noise):
        c = float(np.asarray(mix.noise)) ** 2 + np.asarray(sigma, np.float64) ** 2
        if np.any(c <= 0):
            fail("sigma", "must be > 0 when the mixture has no ambient noise (noise = 0): the "
                 f"density of x_0 is singular there; use e.g. sigma = {SINGULAR_SIGMA}")
    x = as_float(samples)
    dtype = x.dtype

    def per_sample(v):
        v = jnp.asarray(v, dtype)
        return v if v.ndim == 0 else v.reshape(-1)

    out = _log_likelihood(mix, x.reshape(-1, mix.n), per_sample(sigma), per_sample(scale))
    return out.reshape(batch)


@jax.jit
@full_precision
def _log_likelihood(mix, x, sigma, scale):
    dtype = x.dtype
    W, Q, v, sizes, m = geometry(mix, dtype)
    col = (lambda a: a) if scale.ndim == 0 else (lambda a: a[:, None])
    y = x / col(scale)
    z = y @ W  # (B, r)
    outside = y - z @ W.T  # the part of y outside the frame, formed explicitly
    out_energy = jnp.sum(outside * outside, axis=-1)  # (B,)

    c = jnp.square(mix.noise.astype(dtype)) + jnp.square(sigma)  # () or (B,)
    coords = z[:, None, :] if m is None else z[:, None, :] - m.astype(dtype)[None, :, :]
    if Q is not None:
        coords = jnp.einsum("bkr,krs->bks", coords, Q.astype(dtype))
    r = W.shape[1]
    G = len(sizes)
    groups = np.zeros((r, G))
    groups[np.arange(r), np.repeat(np.arange(G), sizes)] = 1.0
    energy = (coords * coords) @ jnp.asarray(groups, dtype)  # (B, 1 or K, G)

    v = v.astype(dtype)[None]  # (1, K, G)
    cc = c if c.ndim == 0 else c[:, None, None]
    n_g = jnp.asarray(np.asarray(sizes), dtype)[None, None, :]
    logdet = jnp.sum(n_g * jnp.log1p(v / cc), axis=-1)  # (1 or B, K), less n log c
    quad = jnp.sum(energy / (v + cc), axis=-1)  # (B, K)
    comp = jnp.log(mix.weights.astype(dtype))[None, :] - 0.5 * logdet - 0.5 * quad
    n = mix.n
    common = (-0.5 * n * jnp.log(2.0 * jnp.pi * c) - 0.5 * out_energy / c
              - n * jnp.log(scale))
    return jax.nn.logsumexp(comp, axis=-1) + common
