"""Subspace estimation and comparison: PCA, K-subspaces clustering, and the subspace error.

Estimation (P0, docs/theory.md sections 4 and 7). Training P0's ``delta = 0`` network is PCA for
K = 1 and K-subspaces clustering for K > 1:

* :func:`pca` -- top principal directions of weighted points (weight 0 = padding), by a
  Householder QR of the data and the eigenvectors of the small ``R R^T`` (no squared
  condition number);
* :func:`k_subspaces_fit` (and :func:`k_subspaces_assign`, :func:`k_subspaces`) --
  K-subspaces clustering without labels: hard assignment, several starts run side by side
  (``vmap``), the one of smallest residual kept, each cluster refitted by :func:`pca`.
  ``init="spectral"`` (default) adds :func:`spectral_start` (thresholded cosine affinity,
  spectral embedding, farthest-first centres: the true partition for noiseless samples of
  mutually orthogonal classes, at any number of samples) as the first start;
  ``init="random"`` is plain K-subspaces from random orthonormal bases, which on P0's data
  often stops at a partition of larger residual than the truth's (an optimisation failure);
* :func:`partition_objective`, :func:`partition_residual` -- the K-subspaces objective of
  a given clustering (the true partition's is the optimisation certificate's ``truth``,
  :mod:`molrg.certify`); :func:`same_partition` -- two clusterings equal up to relabelling;
* :func:`orthonormalize` -- Gram-Schmidt twice, in plain array operations.

Subspaces of a common dimension d are stacked as ``(K, n, d)`` orthonormal bases; a
column mask ``cols`` (1 for the first d of ``d_max`` columns, 0 after, with the masked
columns zero) lets d vary without changing shapes, so one compiled program serves every d.

Comparison: THE subspace error. For estimated blocks ``U^_i`` and true blocks ``U_j``
(orthonormal, dimension d each) the pair errors are

    E[i, j] = ||P^_i - P_j||_F^2 = 2 ||(I - P_j) U^_i||_F^2 = 2 sum_m sin^2(theta_m(i, j)),

``P = U U^T`` and ``theta_m(i, j)`` the d principal angles between the two subspaces
(:func:`pair_errors`: a sum of squares of a residual, so small errors keep their digits;
never an ``n x n`` projector). Estimated blocks are matched to true blocks by the
permutation ``pi`` minimising ``sum_l E[pi(l), l]`` (:func:`match_blocks`), and

    err = sqrt( min_pi sum_l ||P^_pi(l) - P_l||_F^2 / (2 K d) )  in [0, 1]

(:func:`subspace_error`): 0 means exact recovery, 1 means every estimated block is
orthogonal to its match (``||P^ - P||_F^2 = 2d``, its largest value). Equivalently, ``err``
is the root-mean-square sine of the ``K d`` principal angles between matched blocks, so a
threshold of 0.1 is an RMS principal angle of about 5.7 degrees. The unnormalised
``sqrt(sum_l ||P^_pi(l) - P_l||_F^2) = sqrt(2 K d) err`` is
:attr:`SubspaceMatch.frobenius_error`.

Matching: by brute force over all K! permutations for ``K <= MAX_BRUTE_FORCE_K``
(traceable: works under ``jit``/``vmap``), by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``, host side, concrete values only) above. Both
find a minimising permutation; they can differ only between permutations of equal cost.

:func:`pair_errors`, :func:`pair_cosines`, :func:`match_blocks`, :func:`match_pairs` and
:func:`subspace_error` follow their input: JAX arrays in, JAX arrays out (traceable);
NumPy arrays in, NumPy arrays out (host, the input's precision, e.g. float64 whether or not
JAX's x64 mode is on). :func:`compare_subspaces` is the host-side report (float64): matched
error, per-block errors, the match and accurate principal angles.

Why the estimators never let two LAPACK calls run side by side: on XLA:CPU with jaxlib
0.10.2, a batched LAPACK call fans its batch out to the intra-op thread pool and blocks
until the pieces finish; two such calls running concurrently on a pool of two threads (a
2-core machine) wait for each other forever. XLA may run any two independent operations
concurrently (and drops ``lax.optimization_barrier`` before execution, so a barrier does
not order them), hence: K-subspaces orthonormalises by Gram-Schmidt
(:func:`orthonormalize`), and every LAPACK call of :func:`pca` depends on the previous one.
``tests/test_lapack_order.py`` checks the compiled programs.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from molrg._validate import fail, is_concrete
from molrg.mixture import MoLRG

Array = jax.Array

__all__ = [
    "MAX_BRUTE_FORCE_K",
    "SubspaceMatch",
    "pca",
    "orthonormalize",
    "INITS",
    "AFFINITY_THRESHOLD",
    "TIE_RTOL",
    "KSubspacesFit",
    "spectral_start",
    "k_subspaces_fit",
    "k_subspaces_assign",
    "k_subspaces",
    "partition_residual",
    "partition_objective",
    "same_partition",
    "pair_errors",
    "pair_cosines",
    "match_blocks",
    "match_pairs",
    "subspace_error",
    "principal_angles",
    "compare_subspaces",
]

#: Largest K matched by brute force over all K! permutations (8! = 40,320); larger K is
#: matched by the Hungarian algorithm on the host.
MAX_BRUTE_FORCE_K = 8


# ------------------------------------------------------------------------------------------
# Estimation.
# ------------------------------------------------------------------------------------------
def pca(x: Array, weights: Array, cols: Array) -> Array:
    """Top principal directions of weighted points, masked to ``d`` columns.

    The top eigenvectors of ``S = sum_i w_i x_i x_i^T``, computed as ``Q v`` from a
    Householder QR ``(sqrt(w) x)^T = Q R`` and the eigenvectors ``v`` of ``R R^T``: the QR
    does not square the condition number of the data, so the weakest direction of an
    ill-conditioned sample survives float32 (``eigh(S)`` does not at N = d).

    Args:
      x: ``(R, n)`` points.
      weights: ``(R,)`` non-negative weights (0 = padding).
      cols: ``(d_max,)`` column mask (1 for the first d columns).

    Returns:
      ``(n, d_max)``: orthonormal first d columns, zeros after. With rank < d the extra
      columns are arbitrary orthonormal directions of no data (PCA cannot know them).
    """
    d_max = cols.shape[0]
    # Rows of weight 0 go last: a zero column of (sqrt(w) x)^T ahead of data columns keeps
    # the Householder QR from triangularising those rows of R (they would then hold raw
    # data, and R R^T would square the condition number after all).
    order = jnp.argsort(weights <= 0, stable=True)
    x, weights = x[order], weights[order]
    q, r = jnp.linalg.qr((jnp.sqrt(weights)[:, None] * x).T)
    # Forming q (LAPACK orgqr) and the eigh below are otherwise independent, so XLA:CPU may
    # run them side by side, and two concurrent batched LAPACK calls deadlock jaxlib 0.10 on
    # 2 cores (seen twice in `molrg run phase_transition`: orgqr and syevd both waiting for
    # the same two-thread pool). A real data dependency orders them (an optimization barrier
    # does not: XLA drops it before execution); numerically the identity.
    r = jnp.where(jnp.isnan(q[0, 0]), jnp.nan, r)
    _, vecs = jnp.linalg.eigh(r @ r.T)
    return (q @ vecs[:, ::-1][:, :d_max]) * cols[None, :]


def orthonormalize(m: Array) -> Array:
    """Orthonormal columns spanning the leading columns of ``m`` (n, c): Gram-Schmidt, twice.

    Column j is orthogonalised against the previous ones twice ("twice is enough" for
    float32 stability) and normalised; a zero column stays zero (masked columns). Plain
    array operations, on purpose: with a LAPACK QR inside the ``fori_loop`` of
    :func:`k_subspaces`, the sweep engine's sharded program intermittently deadlocked on
    XLA:CPU (jaxlib 0.10; every thread idle, the result never ready).
    """
    cols = []
    for j in range(m.shape[1]):
        v = m[:, j]
        for _ in range(2):
            for u in cols:
                v = v - jnp.dot(u, v) * u
        norm = jnp.sqrt(jnp.sum(v * v))
        cols.append(v / jnp.where(norm > 0, norm, 1.0))
    return jnp.stack(cols, axis=1)


def _energies(x, U):
    """``||U_k^T x_r||^2``: (R, K)."""
    return jnp.sum(jnp.square(jnp.einsum("rn,knd->rkd", x, U)), axis=-1)


def _residuals(x, U):
    """``||x_r - U_k U_k^T x_r||^2``: (R, K), as a sum of squares of the residual vector (an
    exact fit gives ~eps^2 of the energy, not the ~eps of ``||x||^2 - ||U^T x||^2``)."""
    fit = jnp.einsum("knd,rkd->rkn", U, jnp.einsum("rn,knd->rkd", x, U))
    return jnp.sum(jnp.square(x[:, None, :] - fit), axis=-1)


def _check_clustering(x, weights, K, *, cols=None, restarts=None, iterations=None, init=None,
                      threshold=None):
    if np.ndim(x) != 2:
        fail("x", f"must be (R, n) points; got shape {np.shape(x)}")
    if np.shape(weights) != (np.shape(x)[0],):
        fail("weights", f"must have shape ({np.shape(x)[0]},), one per point; got {np.shape(weights)}")
    if cols is not None and np.ndim(cols) != 1:
        fail("cols", f"must be a (d_max,) column mask; got shape {np.shape(cols)}")
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        fail("K", f"must be a positive integer (static); got {K!r}")
    if restarts is not None and (not isinstance(restarts, (int, np.integer)) or restarts < 0):
        fail("restarts", f"must be an integer >= 0 (static); got {restarts!r}")
    if iterations is not None and (not isinstance(iterations, (int, np.integer)) or iterations < 0):
        fail("iterations", f"must be an integer >= 0 (static); got {iterations!r}")
    if init is not None:
        if init not in INITS:
            fail("init", f"must be one of {INITS}; got {init!r}")
        if init == "random" and restarts == 0:
            fail("restarts", "must be >= 1 with init='random' (no start otherwise)")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 <= threshold < 1):
        fail("threshold", f"must be a number in [0, 1); got {threshold!r}")
    if is_concrete(weights) and not bool(jnp.all(jnp.asarray(weights) >= 0)):
        fail("weights", "must be >= 0 (0 = padding)")


#: Starts of :func:`k_subspaces_fit`: ``"spectral"`` (the spectral start, then random ones)
#: or ``"random"`` (random orthonormal starts only: plain K-subspaces).
INITS = ("spectral", "random")

#: Default affinity threshold of :func:`spectral_start`: absolute cosines at or below it are
#: cut. Points of orthogonal classes have cosine 0 up to rounding (~1e-7 in float32), two
#: generic points of one d-dimensional class a cosine of order 1/sqrt(d).
AFFINITY_THRESHOLD = 1e-4

#: Ties in the selection of :func:`k_subspaces_fit`: a start whose residual is within
#: ``TIE_RTOL * sum_r w_r ||x_r||^2`` of the smallest counts as tied, and ties go to the
#: first such start (the spectral one with ``init="spectral"``).
TIE_RTOL = 1e-6


def spectral_start(x: Array, weights: Array, *, K: int, threshold: float = AFFINITY_THRESHOLD,
                   iterations: int = 10) -> Array:
    """A clustering from the thresholded cosine affinity and its spectral embedding.

    Affinity ``A_rs = |<x_r, x_s>| / (|x_r| |x_s|)`` for ``r != s``, set to 0 where it is at
    most ``threshold`` and on every padding row and column (weight 0); the normalised
    affinity ``D^-1/2 A D^-1/2`` (D the degrees); the rows of its K top eigenvectors,
    normalised to unit length; K centres picked farthest-first (the first point with weight,
    then each next the point least aligned with the centres so far) and ``iterations``
    spherical k-means steps; each point goes to its most aligned centre.

    Why it is good on P0's data: points of mutually orthogonal classes have affinity 0, so
    with noiseless samples the affinity graph's connected components are the classes
    (generic samples of one class are pairwise non-orthogonal). The normalised affinity then
    has eigenvalue 1 exactly K times, its top eigenvectors are the class indicators up to a
    rotation, the embedded rows of one class coincide and those of different classes are
    orthogonal: farthest-first picks one centre per class and the assignment is the true
    partition, for any number of samples per class (even N_k < d_k). For classes that are
    not orthogonal it is a heuristic start (refine it with :func:`k_subspaces_fit`).

    Args:
      x: ``(R, n)`` points; weights ``(R,)`` (0 = padding).
      K: number of clusters (static).
      threshold: affinities at or below it are cut (``[0, 1)``, static).
      iterations: spherical k-means steps after the farthest-first centres (static).

    Returns:
      ``(R, K)``: the clustering as weights (``weights[r]`` in point r's column).
    """
    _check_clustering(x, weights, K, iterations=iterations, threshold=threshold)
    R = x.shape[0]
    dtype = x.dtype
    valid = weights > 0
    norms = jnp.sqrt(jnp.sum(x * x, axis=-1))
    y = x / jnp.where(norms > 0, norms, 1.0)[:, None]
    keep = valid[:, None] & valid[None, :] & ~jnp.eye(R, dtype=bool)
    A = jnp.abs(y @ y.T)
    A = jnp.where(keep & (A > threshold), A, 0.0)
    deg = jnp.sum(A, axis=1)
    scale = jnp.where(deg > 0, 1.0 / jnp.sqrt(jnp.where(deg > 0, deg, 1.0)), 0.0)
    _, vecs = jnp.linalg.eigh(scale[:, None] * A * scale[None, :])
    emb = vecs[:, ::-1][:, :K]
    length = jnp.sqrt(jnp.sum(emb * emb, axis=-1))
    emb = jnp.where(valid[:, None], emb / jnp.where(length > 0, length, 1.0)[:, None], 0.0)

    centres = [emb[jnp.argmax(valid)]]
    for _ in range(1, K):  # K is static and small
        align = jnp.max(jnp.stack([emb @ c for c in centres], axis=1), axis=1)
        centres.append(emb[jnp.argmin(jnp.where(valid, align, jnp.inf))])
    centres = jnp.stack(centres)

    def lloyd(_, c):
        member = jax.nn.one_hot(jnp.argmax(emb @ c.T, axis=1), K, dtype=dtype) * valid[:, None].astype(dtype)
        s = member.T @ emb
        size = jnp.sqrt(jnp.sum(s * s, axis=-1, keepdims=True))
        return jnp.where(size > 0, s / jnp.where(size > 0, size, 1.0), c)  # empty: keep the centre

    centres = jax.lax.fori_loop(0, iterations, lloyd, centres)
    return jax.nn.one_hot(jnp.argmax(emb @ centres.T, axis=1), K, dtype=dtype) * weights[:, None]


class KSubspacesFit(NamedTuple):
    """The starts of :func:`k_subspaces_fit` and the one kept.

    Attributes:
      assign: ``(R, K)`` the kept clustering as weights (refit each column with :func:`pca`).
      objective: ``()`` its residual ``sum_r w_r min_k ||x_r - P_k x_r||^2`` at the end of
        its iterations.
      start: ``()`` index of the kept start (0 = the spectral start with ``init="spectral"``).
      start_assigns: ``(S, R, K)`` every start's final clustering.
      start_objectives: ``(S,)`` every start's final residual.
    """

    assign: Array
    objective: Array
    start: Array
    start_assigns: Array
    start_objectives: Array


def k_subspaces_fit(x: Array, weights: Array, cols: Array, *, key: Array, K: int, restarts: int,
                    iterations: int, init: str = "spectral",
                    threshold: float = AFFINITY_THRESHOLD) -> KSubspacesFit:
    """K-subspaces clustering (hard assignment) from several starts, the best kept.

    Starts: with ``init="spectral"`` the :func:`spectral_start` first, then ``restarts``
    random orthonormal bases; with ``init="random"`` the random bases only (plain
    K-subspaces). All starts run side by side (``vmap``). Each step assigns point r to
    ``argmax_k ||U_k^T x_r||^2`` and refits every U_k by one subspace-iteration step
    ``U_k <- orth(S_k U_k + mu U_k)`` (:func:`orthonormalize`; ``S_k`` the scatter of its
    points; ``mu = 1e-6`` of the mean energy keeps an empty or rank-deficient cluster's
    columns defined); a clustering start begins with one such refit of random bases. The
    start with the smallest residual (the K-subspaces objective)

        sum_r w_r min_k ||x_r - U_k U_k^T x_r||^2

    is kept; starts within ``TIE_RTOL`` of the data's energy ``sum_r w_r ||x_r||^2`` of the
    smallest are tied, and a tie goes to the first of them (the spectral start).

    Args:
      x: ``(R, n)`` pooled points (labels unknown); weights ``(R,)`` (0 = padding);
        cols ``(d_max,)`` column mask.
      key: PRNG key of the random starts.
      K, restarts, iterations, init, threshold: static; ``threshold`` as in
        :func:`spectral_start`.

    Returns:
      :class:`KSubspacesFit` (``1 + restarts`` starts with ``init="spectral"``).
    """
    _check_clustering(x, weights, K, cols=cols, restarts=restarts, iterations=iterations, init=init,
                      threshold=threshold)
    R, n = x.shape
    d_max = cols.shape[0]
    dtype = x.dtype
    norms = jnp.sum(x * x, axis=-1)
    energy = jnp.sum(weights * norms)
    mu = 1e-6 * energy / jnp.maximum(jnp.sum(weights), 1.0)

    def refit(U, assign):
        proj = jnp.einsum("rn,knd->rkd", x, U) * assign[:, :, None]  # a_rk U_k^T x_r
        M = jnp.einsum("rn,rkd->knd", x, proj)  # S_k U_k
        return jax.vmap(orthonormalize)(M + mu * U) * cols[None, None, :]

    def hard(U):
        return jax.nn.one_hot(jnp.argmax(_energies(x, U), axis=1), K, dtype=dtype) * weights[:, None]

    def one_start(k, assign0, from_clustering):
        U = jax.vmap(orthonormalize)(jax.random.normal(k, (K, n, d_max), dtype)) * cols[None, None, :]
        U = jnp.where(from_clustering, refit(U, assign0), U)
        U = jax.lax.fori_loop(0, iterations, lambda _, U: refit(U, hard(U)), U)
        return hard(U), jnp.sum(weights * jnp.min(_residuals(x, U), axis=1))

    num = restarts + (init == "spectral")
    keys = jax.random.split(key, num)
    assign0 = jnp.zeros((num, R, K), dtype)
    from_clustering = jnp.zeros((num,), bool)
    if init == "spectral":
        assign0 = assign0.at[0].set(spectral_start(x, weights, K=K, threshold=threshold))
        from_clustering = from_clustering.at[0].set(True)
    assigns, residual = jax.vmap(one_start)(keys, assign0, from_clustering)
    tied = residual <= jnp.min(residual) + TIE_RTOL * energy
    best = jnp.argmax(tied)  # the first start within the tie tolerance of the smallest
    return KSubspacesFit(assigns[best], residual[best], best, assigns, residual)


def k_subspaces_assign(x: Array, weights: Array, cols: Array, *, key: Array, K: int,
                       restarts: int, iterations: int, init: str = "spectral",
                       threshold: float = AFFINITY_THRESHOLD) -> Array:
    """The kept clustering of :func:`k_subspaces_fit`: ``(R, K)`` weights, ``weights[r]`` in
    the column of point r's cluster and 0 elsewhere (refit each cluster with :func:`pca`)."""
    return k_subspaces_fit(x, weights, cols, key=key, K=K, restarts=restarts, iterations=iterations,
                           init=init, threshold=threshold).assign


def k_subspaces(x: Array, weights: Array, cols: Array, *, key: Array, K: int, restarts: int,
                iterations: int, init: str = "spectral", threshold: float = AFFINITY_THRESHOLD) -> Array:
    """:func:`k_subspaces_assign`, each cluster refitted exactly by :func:`pca`: ``(K, n, d_max)``."""
    best = k_subspaces_assign(x, weights, cols, key=key, K=K, restarts=restarts, iterations=iterations,
                              init=init, threshold=threshold)
    return jax.vmap(lambda a: pca(x, a, cols), in_axes=1)(best)


def partition_residual(x: Array, assign: Array, bases: Array) -> Array:
    """``sum_k sum_r a_rk ||x_r - U_k U_k^T x_r||^2``: the residual of a clustering ``assign``
    ``(R, K)`` (weights per cluster) with cluster k fitted by the orthonormal ``bases[k]``
    ``(K, n, d_max)`` (masked columns zero)."""
    if np.ndim(assign) != 2 or np.shape(assign)[0] != np.shape(x)[0]:
        fail("assign", f"must be (R, K) cluster weights for the {np.shape(x)[0]} points; got "
             f"{np.shape(assign)}")
    if np.ndim(bases) != 3 or np.shape(bases)[0] != np.shape(assign)[1]:
        fail("bases", f"must be (K, n, d) with K = {np.shape(assign)[1]}; got {np.shape(bases)}")
    return jnp.sum(assign * _residuals(x, bases))


def partition_objective(x: Array, assign: Array, cols: Array) -> Array:
    """The K-subspaces objective of a given clustering: every cluster refitted by :func:`pca`,
    ::

        J(assign) = sum_k sum_r a_rk ||x_r - P_k x_r||^2,   P_k = U_k U_k^T, U_k = pca(x, a_:k),

    i.e. the sum over clusters of the weighted scatter's eigenvalues beyond the top d. With
    ``assign`` the true labels (as weights) this is the certificate's ``truth``: no clustering
    with these subspace dimensions has a smaller residual than the best one, so an estimate
    whose residual exceeds the truth's has not reached the optimum.

    Args:
      x: ``(R, n)`` points; assign ``(R, K)`` cluster weights (0 = not in the cluster or
        padding); cols ``(d_max,)`` column mask.

    Returns:
      ``()`` the objective.
    """
    if np.ndim(x) != 2:
        fail("x", f"must be (R, n) points; got shape {np.shape(x)}")
    if np.ndim(assign) != 2 or np.shape(assign)[0] != np.shape(x)[0]:
        fail("assign", f"must be (R, K) cluster weights for the {np.shape(x)[0]} points; got "
             f"{np.shape(assign)}")
    if np.ndim(cols) != 1:
        fail("cols", f"must be a (d_max,) column mask; got shape {np.shape(cols)}")
    if is_concrete(assign) and not bool(jnp.all(jnp.asarray(assign) >= 0)):
        fail("assign", "must be >= 0 (cluster weights)")
    bases = jax.vmap(lambda a: pca(x, a, cols), in_axes=1)(assign)
    return partition_residual(x, assign, bases)


def same_partition(a: Array, b: Array) -> Array:
    """Whether two clusterings ``(R, K)`` (weights per cluster) split the weighted points the
    same way up to relabelling: every cluster of one meets exactly one cluster of the other.
    An empty cluster meets none, so a clustering with an empty cluster never equals one
    without."""
    if np.ndim(a) != 2 or np.shape(a) != np.shape(b):
        fail("a/b", f"must be two (R, K) clusterings of one shape; got {np.shape(a)}, {np.shape(b)}")
    meet = jnp.einsum("rk,rl->kl", (a > 0).astype(jnp.int32), (b > 0).astype(jnp.int32)) > 0
    return jnp.all(jnp.sum(meet, axis=0) == 1) & jnp.all(jnp.sum(meet, axis=1) == 1)


# ------------------------------------------------------------------------------------------
# Comparison: the subspace error.
# ------------------------------------------------------------------------------------------
def _xp(*arrays):
    """NumPy for NumPy (or list) inputs, ``jax.numpy`` as soon as one input is a JAX array."""
    return jnp if any(isinstance(a, (jax.Array, jax.core.Tracer)) for a in arrays) else np


def _check_stacks(est, true, cols):
    if np.ndim(est) != 3 or np.ndim(true) != 3:
        fail("est/true", f"must be stacked bases of shape (K, n, d); got shapes {np.shape(est)}, "
             f"{np.shape(true)}")
    if np.shape(est) != np.shape(true):
        fail("est", f"must have the shape of true {np.shape(true)} (K blocks of n x d); got "
             f"{np.shape(est)}")
    if cols is not None and np.shape(cols) != (np.shape(true)[-1],):
        fail("cols", f"must be a ({np.shape(true)[-1]},) column mask; got shape {np.shape(cols)}")


def pair_errors(est, true, cols=None):
    """``E[i, j] = ||P^_i - P_j||_F^2 = 2 ||(I - P_j) U^_i||_F^2`` for every pair of blocks.

    The identity holds for orthonormal bases of equal dimension; the residual form is a sum
    of squares (no cancellation, so small errors keep their digits) and never forms an
    ``n x n`` projector.

    Args:
      est: ``(K, n, d)`` estimated bases (orthonormal columns).
      true: ``(K, n, d)`` true bases (orthonormal columns).
      cols: optional ``(d,)`` column mask: 1 for the columns that count, 0 for padding
        (the masked columns of both are ignored).

    Returns:
      ``(K, K)``: entry ``[i, j]`` for estimated block i and true block j, in ``[0, 2d]``.
    """
    _check_stacks(est, true, cols)
    xp = _xp(est, true, cols)
    if cols is not None:
        est = est * cols[None, None, :]
        true = true * cols[None, None, :]
    overlap = xp.einsum("ind,jne->ijde", est, true)  # U^_i^T U_j
    resid = est[:, None] - xp.einsum("jne,ijde->ijnd", true, overlap)  # (I - P_j) U^_i
    return 2.0 * xp.sum(xp.square(resid), axis=(-2, -1))


def pair_cosines(est, true, cols=None):
    """Cosines of the principal angles of every pair of blocks: singular values of ``U^_i^T U_j``.

    Args:
      est, true, cols: as in :func:`pair_errors`.

    Returns:
      ``(K, K, d)``, descending (masked columns give trailing zeros). ``arccos`` of them
      loses digits for angles below about ``sqrt(eps)``; :func:`principal_angles` does not.
    """
    _check_stacks(est, true, cols)
    xp = _xp(est, true, cols)
    if cols is not None:
        est = est * cols[None, None, :]
        true = true * cols[None, None, :]
    return xp.linalg.svd(xp.einsum("ind,jne->ijde", est, true), compute_uv=False)


def _check_pairs(pair_error):
    shape = np.shape(pair_error)
    if len(shape) < 2 or shape[-1] != shape[-2] or shape[-1] < 1:
        fail("pair_error", f"must have shape (..., K, K); got {shape}")
    return shape[-1]


def _permutations(K):
    return np.asarray(list(itertools.permutations(range(K))), np.int32)


def _matched(pair_error, method):
    """``(match (..., K), cost (...))``: the assignment and ``sum_l E[match[l], l]``."""
    K = _check_pairs(pair_error)
    if method == "auto":
        method = "brute_force" if K <= MAX_BRUTE_FORCE_K else "hungarian"
    if method == "brute_force":
        if K > MAX_BRUTE_FORCE_K:
            fail("pair_error", f"brute-force matching takes K <= {MAX_BRUTE_FORCE_K}; got K = {K} "
                 "(match concrete values with method='hungarian')")
        xp = _xp(pair_error)
        perms = _permutations(K)  # perms[p, l]: the estimated block matched to true block l
        cost = xp.sum(pair_error[..., perms, np.arange(K)[None, :]], axis=-1)  # (..., K!)
        best = xp.argmin(cost, axis=-1)
        return xp.asarray(perms)[best], xp.min(cost, axis=-1)
    if method != "hungarian":
        fail("method", f"must be 'auto', 'brute_force' or 'hungarian'; got {method!r}")
    if not is_concrete(pair_error):
        fail("pair_error", f"Hungarian matching runs on the host and needs concrete values; under "
             f"jit/vmap use brute force (K <= {MAX_BRUTE_FORCE_K})")
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(pair_error)
    flat = cost.reshape(-1, K, K)
    match = np.empty((flat.shape[0], K), np.int64)
    for b in range(flat.shape[0]):
        est_idx, true_idx = linear_sum_assignment(flat[b])
        match[b, true_idx] = est_idx
    match = match.reshape(*cost.shape[:-2], K)
    total = np.sum(np.take_along_axis(cost, match[..., None, :], axis=-2)[..., 0, :], axis=-1)
    return match, total


def match_blocks(pair_error, *, method: str = "auto"):
    """The matching of estimated to true blocks that minimises ``sum_l E[match[l], l]``.

    Args:
      pair_error: ``(..., K, K)`` pair errors (:func:`pair_errors`), entry ``[i, j]`` for
        estimated block i and true block j.
      method: ``"auto"`` (brute force for ``K <= MAX_BRUTE_FORCE_K``, else Hungarian),
        ``"brute_force"`` (all K! permutations; traceable) or ``"hungarian"``
        (``scipy.optimize.linear_sum_assignment``; host, concrete values only).

    Returns:
      ``(..., K)`` integers: ``match[l]`` is the estimated block matched to true block l.
    """
    return _matched(pair_error, method)[0]


class SubspaceMatch(NamedTuple):
    """Estimated subspaces against the true ones after matching blocks (equal dimensions d).

    Attributes:
      error: ``(...)`` the normalised subspace error
        ``sqrt(sum_l ||P^_match[l] - P_l||_F^2 / (2 K d))`` in [0, 1] (module docstring).
      match: ``(..., K)`` the estimated block matched to true block l.
      block_errors: ``(..., K)`` ``||P^_match[l] - P_l||_F`` per true block l
        (unnormalised, in ``[0, sqrt(2d)]``).
      angles: ``(..., K, d)`` principal angles (radians, ascending) between true block l
        and its match, or None.
    """

    error: Array
    match: Array
    block_errors: Array
    angles: Array | None

    @property
    def frobenius_error(self):
        """``sqrt(sum_l ||P^_match[l] - P_l||_F^2) = sqrt(2 K d) * error`` (unnormalised)."""
        xp = _xp(self.block_errors)
        return xp.sqrt(xp.sum(xp.square(self.block_errors), axis=-1))


def match_pairs(pair_error, *, d, cosines=None, method: str = "auto") -> SubspaceMatch:
    """Matches blocks from their pair errors and returns the matched subspace error.

    For pair errors computed inside a compiled program and matched afterwards (e.g.
    :func:`molrg.training.train`'s evaluation).

    Args:
      pair_error: ``(..., K, K)`` from :func:`pair_errors`.
      d: the dimension of every block (a count: the normalisation is ``2 K d``).
      cosines: optional ``(..., K, K, d)`` from :func:`pair_cosines`; angles are then
        ``arccos`` of the matched pair's cosines (see :func:`pair_cosines` for accuracy).
      method: as in :func:`match_blocks`.

    Returns:
      :class:`SubspaceMatch`.
    """
    K = _check_pairs(pair_error)
    if cosines is not None and np.shape(cosines)[:-1] != np.shape(pair_error):
        fail("cosines", f"must have shape {np.shape(pair_error) + ('d',)}; got {np.shape(cosines)}")
    xp = _xp(pair_error, cosines)
    match, cost = _matched(pair_error, method)
    block_sq = xp.take_along_axis(pair_error, match[..., None, :], axis=-2)[..., 0, :]
    error = xp.sqrt(cost / (2.0 * K * d))
    angles = None
    if cosines is not None:
        idx = xp.broadcast_to(match[..., None, :, None], (*match.shape[:-1], 1, K, np.shape(cosines)[-1]))
        cos = xp.take_along_axis(cosines, idx, axis=-3)[..., 0, :, :]  # (..., K, d)
        angles = xp.sort(xp.arccos(xp.clip(cos, -1.0, 1.0)), axis=-1)
    return SubspaceMatch(error, match, xp.sqrt(xp.maximum(block_sq, 0.0)), angles)


def subspace_error(est, true, cols=None):
    """THE subspace error: ``sqrt(min_pi sum_l ||P^_pi(l) - P_l||_F^2 / (2 K d))`` in [0, 1].

    0 = exact recovery; 1 = every estimated block orthogonal to its match; the RMS sine of
    the ``K d`` principal angles between matched blocks (module docstring). Traceable for
    ``K <= MAX_BRUTE_FORCE_K`` (matching by brute force over all K! permutations).

    Args:
      est: ``(K, n, d)`` estimated bases (orthonormal columns).
      true: ``(K, n, d)`` true bases (orthonormal columns).
      cols: optional ``(d,)`` column mask; then ``d = sum(cols)``.

    Returns:
      ``()`` the error.
    """
    pair = pair_errors(est, true, cols)
    xp = _xp(pair)
    K = pair.shape[-1]
    _, cost = _matched(pair, "auto")
    d = true.shape[-1] if cols is None else xp.sum(xp.asarray(cols)).astype(pair.dtype)
    return xp.sqrt(cost / (2.0 * K * d))


def principal_angles(a, b):
    """Principal angles between ``span(a)`` and ``span(b)``, ascending, accurate at any size.

    Cosines are the singular values of ``a^T b``, sines those of the residual of the smaller
    basis off the larger one; each angle is read from the sine below 45 degrees and from the
    cosine above (``arccos`` alone loses digits for small angles, ``arcsin`` for large).

    Args:
      a: ``(n, p)`` orthonormal columns.
      b: ``(n, q)`` orthonormal columns.

    Returns:
      ``(min(p, q),)`` radians in ``[0, pi/2]``.
    """
    xp = _xp(a, b)
    cos = xp.clip(xp.linalg.svd(a.T @ b, compute_uv=False), 0.0, 1.0)  # descending
    small, large = (a, b) if a.shape[1] <= b.shape[1] else (b, a)
    resid = small - large @ (large.T @ small)
    sin = xp.clip(xp.sort(xp.linalg.svd(resid, compute_uv=False)), 0.0, 1.0)  # ascending
    m = min(a.shape[1], b.shape[1])
    cos = cos[:m]
    return xp.where(cos * cos >= 0.5, xp.arcsin(sin[:m]), xp.arccos(cos))


def _as_stack(name: str, blocks) -> np.ndarray:
    """``(K, n, d)`` float64 orthonormal bases of the spans of ``blocks``."""
    if isinstance(blocks, MoLRG):
        blocks = blocks.bases
    if isinstance(blocks, (list, tuple)):
        if not blocks:
            fail(name, "must hold at least one block")
        shapes = {np.shape(b) for b in blocks}
        if len(shapes) != 1:
            fail(name, f"blocks must all have one shape (n, d) (equal dimensions); got {sorted(shapes)}")
        blocks = np.stack([np.asarray(b, np.float64) for b in blocks])
    arr = np.asarray(blocks, np.float64)
    if arr.ndim != 3 or arr.shape[0] < 1 or not 1 <= arr.shape[2] <= arr.shape[1]:
        fail(name, f"must be a (K, n, d) array or a sequence of K (n, d) arrays with 1 <= d <= n; "
             f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        fail(name, "must contain only finite values")
    out = np.empty_like(arr)
    for k, b in enumerate(arr):
        u, s, _ = np.linalg.svd(b, full_matrices=False)
        if s[-1] <= 1e-6 * s[0]:
            fail(name, f"block {k} must have full column rank (singular values {s[0]:.3g} .. {s[-1]:.3g})")
        out[k] = u
    return out


def compare_subspaces(est, true, *, method: str = "auto") -> SubspaceMatch:
    """Host-side report of estimated subspaces against the true ones (NumPy float64).

    Each block is first replaced by an orthonormal basis of its span (an SVD), so columns
    need not be orthonormal; then :func:`pair_errors`, :func:`match_pairs` and, per
    matched pair, :func:`principal_angles`.

    Args:
      est: K estimated bases: a ``(K, n, d)`` array or a sequence of ``(n, d)`` arrays of
        full column rank.
      true: the true mixture (a :class:`molrg.MoLRG`) or its K bases in the same forms, of
        the same dimension d.
      method: as in :func:`match_blocks`.

    Returns:
      :class:`SubspaceMatch` of NumPy values (``error`` a float, ``angles`` ``(K, d)``).
    """
    est_b = _as_stack("est", est)
    true_b = _as_stack("true", true)
    if est_b.shape != true_b.shape:
        fail("est", f"must hold K = {true_b.shape[0]} blocks of shape {true_b.shape[1:]} like true; "
             f"got {est_b.shape[0]} of {est_b.shape[1:]}")
    K, _, d = true_b.shape
    m = match_pairs(pair_errors(est_b, true_b), d=d, method=method)
    angles = np.stack([principal_angles(est_b[m.match[l]], true_b[l]) for l in range(K)])
    return SubspaceMatch(float(m.error), m.match, m.block_errors, angles)

