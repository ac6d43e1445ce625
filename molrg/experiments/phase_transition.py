"""P0's sample-complexity phase transition: how many samples per class recover the subspaces?

P0 (docs/theory.md sections 4 and 7) shows that training its ``delta = 0`` network
``x_theta = (s / (s^2 + gamma^2)) sum_k w_k U_k U_k^T x_t`` on N_k samples per class is
PCA for K = 1 and K-subspaces clustering for K > 1, and that recovering the subspaces
needs ``N_k >= d_k`` samples per class, with a sharp phase transition there. This
experiment measures it on P0's grid: n = 48, d in {2..8}, N_k in {2..15}, K in {1, 2, 3}.

For each cell (K, d, N) and seed: draw a ``delta = 0`` MoLRG (``random_molrg``, noise 0),
exactly N samples of every class, estimate the K subspaces, and call the cell a success
when the subspace error of :func:`molrg.subspaces.subspace_error`

    err = sqrt( min_pi sum_l ||P^_pi(l) - P_l||_F^2 / (2 K d) ),     P_l = U_l U_l^T

(blocks matched by the best permutation pi; 0 = exact, 1 = every learned block orthogonal
to its true block) is below ``threshold`` (default 0.1, i.e. a root-mean-square principal
angle of about 5.7 degrees). Estimators (:mod:`molrg.subspaces`):

* ``pca`` -- PCA of each class on the true labels (:func:`molrg.subspaces.pca`): P0's
  network optimum for K = 1, and an oracle (labels known) for K > 1. Computed without
  squaring the data's condition number (float32 eigenvectors of ``X^T X`` itself lose the
  weakest direction of an ill-conditioned sample at N = d, and the transition sits
  exactly there).
* ``ksub`` -- certified K-subspaces clustering without labels (K > 1; equal to ``pca`` for
  K = 1; :func:`molrg.subspaces.k_subspaces_fit`, ``init="spectral"``): a spectral start
  (thresholded cosine affinity, the K top eigenvectors of the normalised affinity,
  farthest-first centres and spherical k-means: :func:`molrg.subspaces.spectral_start`)
  and ``restarts`` random orthonormal starts, all refined side by side (vmapped) by
  ``iterations`` K-subspaces steps (hard assignment to the subspace of largest energy
  ``||U_k^T x||^2``, refit by one subspace-iteration step); the start with the smallest
  residual ``sum_r w_r min_k ||x_r - P_k x_r||^2`` is kept (ties within 1e-6 of the energy
  go to the spectral start) and its clusters refitted by the exact PCA. The residual is
  the objective P0 shows the hard-max network training solves. On P0's data the classes
  are mutually orthogonal, so the affinity graph's components are the classes and the
  spectral start is the true partition for every N_k (even N_k < d_k).
* ``ksub_random`` -- plain K-subspaces: the best of the same ``restarts`` random starts
  (same call, same data), reported beside: how often it fails is itself a finding
  (``phase_boundary[K=k, K-subspaces random starts, no labels]``).

  Certificate of the references (:mod:`molrg.certify`; columns ``err_M``, ``success_M``,
  ``objective_M``, ``objective_truth_M``, ``reached_M``, ``outcome_M`` per method M):
  ``objective`` is the K-subspaces objective of the found partition (each cluster refitted
  by PCA; :func:`molrg.subspaces.partition_residual`) and ``objective_truth`` that of the
  true partition refitted the same way, both as fractions of the data's energy
  ``sum_r w_r ||x_r||^2``; ``reached`` when ``objective <= objective_truth +
  certificate_tol`` (:data:`CERTIFICATE_TOL` = 1e-6 of the energy: the data are noiseless,
  so the truth's residual is rounding, <= 1.1e-12 in float32 on the full grid, while the
  smallest residual of a wrong partition found there was 2.8e-5). For class PCA ``objective`` is the
  truth's, so its misses are sample-complexity failures by construction.

  Identifiability without labels (:func:`identifiability_limit`; tested by
  ``other_optimum``: some start reached the truth's residual with another partition).
  Noiseless generic samples, K >= 2 subspaces of dimension d whose sum is direct. A group
  of points spans ``sum_c min(n_c, d)`` dimensions (n_c its points of class c), so it has
  residual 0 iff that sum is <= d: either it holds >= d + 1 points of one class and no
  other point, or it holds at most d points. Let N = N_k >= d + 1 and m groups be of the
  first kind (each within one class, so <= N points); the other K - m hold <= d points
  each, so K N <= m N + (K - m) d forces m = K: every group lies in one class and, each
  class needing a group, the true partition is the unique zero-residual partition. With
  N_k = d every split into K groups of d points has residual 0 ((K d)! / ((d!)^K K!) of
  them), so the objective cannot tell the truth apart: the K-subspaces limit is
  N_k = d_k + 1, one above the limit with labels (N_k = d_k; fewer points leave
  d_k - N_k directions unknown).
* ``net`` -- P0's network itself (:class:`molrg.networks.SubspaceDenoiser`) trained with
  the denoising loss by :func:`molrg.training.fit` (study ``phase_transition_net``): full
  batch (padding rows of weight 0), Adam at ``learning_rate`` with cosine decay to ``1e-3``
  of it over ``train_steps`` (default 500), ``sigma`` log-uniform in ``[sigma_min,
  sigma_max]`` (:class:`molrg.schedules.LogUniformNoise`). The certified recipe: per point,
  ``net_restarts`` (default 2) starts of kind ``net_start`` (default ``"neighbours"``:
  block k is seeded with a data point chosen farthest-first -- least aligned with the
  seeds so far -- and the ``d - 1`` points most aligned with it, :func:`seeded_start`) and
  one start AT THE TRUE SUBSPACES, all trained side by side (vmapped, the same noise
  draws); the start of lowest objective is the estimate. This start leans on the data's
  geometry (on P0's orthogonal subspaces it is nearly a clustering); the network then
  refines it. ``net_plain`` (default on) also trains P0's plain recipe, one random start
  (method ``net_random``), on the same data and noise, reported beside: in the same
  vmapped batch as the certified starts, sharing their truth-started run (the point's
  ``plain`` flag), so a point trains 4 networks, not the 5 of two separate sweeps (measured
  on the K = 3, d = 6 slice, 140 points: 17.7-22.6 s against 30-32 s, identical certified
  results; the plain run's own verdicts were identical on all 140 points, its objective
  not bit for bit: a random start's 500 steps amplify the rounding of a differently batched
  product, median 0.4%).

  Certificate (:mod:`molrg.certify`, columns ``success``, ``reached``, ``objective``,
  ``objective_truth``, ``outcome``): ``objective`` is the estimate's empirical denoising
  loss on the training points, on one fixed set of draws (:data:`NET_EVAL_LEVELS` sigmas
  log-spaced over ``[sigma_min, sigma_max]`` x :data:`NET_EVAL_DRAWS` noise draws per
  point, :func:`net_objective`), ``objective_truth`` the same loss of the truth-started run
  on the same draws; ``reached`` when ``objective <= (1 + net_rtol) objective_truth``
  (``net_rtol`` = 0.05). A miss that reached it is a sample-complexity failure of the
  network's objective, otherwise an optimisation failure.

  What each training ingredient does (measured on 2 CPU cores, 2026-12-02: the study
  ``phase_transition_net`` with each start kind, or the same program with ``fit`` in
  stages; K = 2 and 3, d = 4, N_k = 3 / 4 / 6 / 8, 8 seeds, 500 steps unless stated;
  "reach" = fraction of seeds whose kept run reached the certified optimum, "succ" =
  success rate)::

      ingredient                                  K=2 reach / succ               K=3 reach / succ
      plain: one random start (P0's recipe)       .12 0 0 .12 / 0 0 0 .12        0 0 0 0 / 0 0 0 0
      random starts, best of 4 by objective       .12 .12 0 .50 / 0 0 0 .38      .12 0 0 0 / 0 0 0 0
      plain, 1000 steps (the old default)         .25 .25 .12 .38 / 0 .25 .12 .38  0 0 .12 .12 / 0 0 .12 .12
      random, best of 4, 1000 steps               .62 .25 .50 .75 / 0 .25 .50 .75  --
      random, best of 16 (1000 steps)             --                             .38 .12 .25 .25 / 0 .12 .25 .25
      random, best of 4, 3000 steps               .75 .38 .50 .75 / 0 .25 .50 .75  --
      random, best of 4, lr 3e-2 (1000 steps)     .50 .38 .38 .62 / 0 .25 .38 .62  --
      continuation sigma_max 3 -> 0.3 (4 stages)  .12 0 0 0 / 0 0 0 0           --
      continuation sigma_max 1 -> 0.3 (3 stages)  .38 .12 .25 .25 / 0 0 .25 .25  --
      farthest-point seed (1 column), 1 start     .50 .25 .12 .12 / 0 0 .12 .12  .38 0 .12 .25 / 0 0 .12 .25
      farthest-point seed, best of 4              .88 .62 .88 .62 / 0 0 .88 .62  .88 .38 .62 .75 / 0 0 .62 .75
      seed + its neighbours, 1 start              1 1 1 1 / 0 .12 1 1            .88 .88 1 1 / 0 0 1 1
      seed + its neighbours, best of 2 (default)  1 1 1 1 / 0 .12 1 1            1 1 1 1 / 0 0 1 1
      the truth-started run itself                -- / 0 .12 1 1                 -- / 0 0 1 1

  (continuation: ``fit`` in stages of equal length with ``sigma`` log-uniform in
  ``[sigma_max_s / 10, sigma_max_s]`` then the final range, parameters and optimiser state
  carried over; it moves even the truth-started run off the truth at large sigma: its
  success fell to 0.5-0.88.) Random starts fail by getting stuck in K-subspaces-like local
  minima (objective 2-6x the truth's); restarts help slowly at K = 2 and hardly at K = 3;
  continuation, longer training and a larger learning rate do not help. At N_k = d_k even
  the truth-started run drifts to a lower objective off the truth (the denoising loss
  trades a weak sample direction against noise): sample-complexity failures of the
  network's objective, not of the optimiser.

  Full scale (K = 1, 2, 3 x d = 2..8 x N_k = 2..15 x 10 seeds, default recipe, measured
  2026-12-02): the certified run reached the truth-started run's objective at 96-98% of
  all points and at 99-100% of the points with N_k >= d_k + 1 (success there 95-97%);
  failures: K = 1 / 2 / 3: 37 / 28 / 21 optimisation, 227 / 271 / 271 sample-complexity.
  The boundary is at d_k or d_k + 1 for every (K, d) but (3, 6) (d_k + 2: rate 0.4 at
  N_k = 7 on 10 seeds, its failures the objective's). P0's plain recipe on the same data:
  reached at N_k >= d_k + 1 in 90% / 24% / 3% of the points (K = 1 / 2 / 3), with 165 /
  770 / 951 optimisation failures; for K = 2 at d_k >= 4 and K = 3 at every d its success
  rate never settles above 0.5.

Claims (:func:`claims`, from the saved tables): ``phase_boundary`` -- the success rate
switches from below 0.5 to at least 0.5 (and stays there) within one sample of the
identifiability limit for every d: class PCA at K = 1 (limit N_k = d_k), certified
K-subspaces at every K >= 2 of the run (limit d_k + 1; measured: the boundary is N_k = d_k,
the spectral start being the truth there), with the failures split into optimisation and
sample-complexity failures; ``phase_boundary[K=k, K-subspaces random starts, no labels]``
(molrg) -- plain K-subspaces' failures at and above the limit are all optimisation
failures; ``identifiability_limit[K=k, ...]`` (molrg) -- no start reaches the truth's
residual with another partition at N_k >= d_k + 1, some do at N_k = d_k;
``phase_boundary_network[K=k, d=d]`` (full scale) -- the same for the trained network
(certified recipe) at every (K, d) of ``net_K_values x net_d_values``, with the success rate
by N, the failures split into optimisation / sample-complexity failures, and the plain
recipe's rate and split beside.

Speed. Shapes are what JAX compiles for, so only what fixes a shape is static. Each class's
sample is drawn at ``N_max`` and masked to its first N rows (weight-0 rows drop out of
every scatter, assignment and loss: one compile serves every N, and a seed's samples are
nested in N); the bases are drawn at ``d_max`` columns and the coefficients of the columns
``j >= d`` are zero, so ``d`` is numeric too for the references: the study
``phase_transition`` compiles once per K, and the full grid (7 x 14 x 3 cells x 10 seeds)
is the default scale (compilation dominates: the certified clustering's point costs about
what the random-start one's did, measured in one run, 2026-12-02). A seed gives the same bases and samples
to every cell, truncated: common random numbers across the grid. The network has a static
``d`` (its parameter shape), so ``phase_transition_net`` compiles once per (K, d) and its
training dominates: by default it runs on the whole grid ``net_K_values x net_d_values``
= {1, 2, 3} x {2..8}, 10 seeds (same seeds and data as the references), each point
training ``net_restarts + 1`` networks side by side for the certified recipe and one more
for the plain one (``net_plain=false`` drops it); ``benchmarks/bench_phase_transition.py`` times
the whole certified grid. ``train_steps=0`` skips the network.

Sweeps: ``molrg sweep phase_transition --grid K=1,2,3 --grid d=2,3,4,5,6,7,8 --grid
N=2,3,4,5,6,7,8,9,10,11,12,13,14,15 --grid seed=0,1,2,3,4,5,6,7,8,9`` runs the full grid
(``molrg sweep phase_transition_net ...`` the network; ``--set start=random --set
restarts=1`` is P0's plain recipe alone, ``--set plain=true`` adds it to the certified one); ``molrg run
phase_transition`` runs it through :func:`molrg.study.run_sweep` and draws success-rate
heatmaps, one per K and estimator, with the line N_k = d_k.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import molrg
from molrg.networks import SubspaceDenoiser
from molrg.study import Claim, Experiment, Results, load_results, run_sweep, save_figure, sweepable
from molrg.study.plotting import FULL_WIDTH, mark_quick, paper_style
from molrg.certify import outcome, reached, split
from molrg.subspaces import k_subspaces_fit, partition_residual, pca, same_partition, subspace_error
from molrg.schedules import LogUniformNoise
from molrg.training import denoising_loss, fit

Array = jax.Array

#: The clustering certificate's tolerance: an estimate reached the optimum when its residual
#: is at most the true partition's (each class refitted by PCA) plus this fraction of the
#: data's energy ``sum_r w_r ||x_r||^2``. The data are noiseless, so the truth's residual is
#: rounding (measured <= 1.1e-12 of the energy in float32 on the full grid, 2026-12-02); the
#: smallest residual of a wrong partition found there was 2.8e-5 of the energy.
CERTIFICATE_TOL = 1e-6


# ------------------------------------------------------------------------------------------
# Data: K classes of exactly N samples, drawn at (N_max, d_max) and masked.
# ------------------------------------------------------------------------------------------
def _masks(d, N, d_max: int, N_max: int, dtype):
    """Column mask (d_max,) for ``j < d`` and row mask (N_max,) for ``i < N``."""
    def first(count, size):
        return (jnp.arange(size, dtype=jnp.int32) < jnp.asarray(count).astype(jnp.int32)).astype(dtype)

    return first(d, d_max), first(N, N_max)


def draw_problem(key: Array, *, n: int, K: int, d, N, d_max: int, N_max: int):
    """A ``delta = 0`` MoLRG and exactly N samples per class, padded to static shapes.

    The bases come from :func:`molrg.random_molrg` with ``d_max`` columns per class;
    class l's true subspace is the span of its first ``d`` columns. Sample i of class l is
    ``U_l a_i`` with ``a_i ~ N(0, I_d)`` (coefficients of columns ``>= d`` are zero); rows
    ``i >= N`` are padding (weight 0).

    Args:
      key: PRNG key.
      n, K, d_max, N_max: static sizes.
      d, N: the cell's subspace dimension and samples per class (ints, may be traced).

    Returns:
      ``(bases, x, cols, rows)``: bases ``(K, n, d_max)`` with masked columns zeroed;
      samples ``(K, N_max, n)``; column mask ``(d_max,)``; row mask ``(N_max,)``.
    """
    k_mix, k_coef = jax.random.split(key)
    mix = molrg.random_molrg(k_mix, n=n, K=K, d=d_max)
    cols, rows = _masks(d, N, d_max, N_max, mix.dtype)
    bases = jnp.stack(mix.bases) * cols[None, None, :]
    coef = jax.random.normal(k_coef, (K, N_max, d_max), mix.dtype)
    coef = coef * cols[None, None, :] * rows[None, :, None]
    x = jnp.einsum("kid,knd->kin", coef, bases)
    return bases, x, cols, rows


# ------------------------------------------------------------------------------------------
# Sweepable studies.
# ------------------------------------------------------------------------------------------
def _validate_common(cfg):
    for f in ("n", "K", "d", "N", "d_max", "N_max"):
        v = getattr(cfg, f)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{f}: must be a positive integer; got {v!r}")
    if cfg.d > cfg.d_max:
        raise ValueError(f"d: must be <= d_max = {cfg.d_max}; got {cfg.d} (raise d_max)")
    if cfg.N > cfg.N_max:
        raise ValueError(f"N: must be <= N_max = {cfg.N_max}; got {cfg.N} (raise N_max)")
    if cfg.K * cfg.d_max > cfg.n:
        raise ValueError(f"d_max: need K * d_max <= n; got {cfg.K} * {cfg.d_max} > {cfg.n}")
    if cfg.seed < 0 or cfg.seed >= 2**31:
        raise ValueError(f"seed: must lie in [0, 2^31); got {cfg.seed}")
    if not 0.0 < cfg.threshold <= 1.0:
        raise ValueError(f"threshold: must lie in (0, 1]; got {cfg.threshold}")


@dataclasses.dataclass(frozen=True)
class PhaseTransitionPoint:
    """One cell and seed of the reference estimators (study ``phase_transition``): class PCA,
    certified K-subspaces and random-start K-subspaces, each with its certificate (module
    docstring), and ``other_optimum`` (the identifiability test).

    Static: n, K, d_max, N_max, restarts, iterations, threshold, certificate_tol. Numeric:
    d, N, seed.
    """

    n: int = 48  # ambient dimension
    K: int = 2  # number of classes (subspaces)
    d: int = 2  # subspace dimension of the cell
    N: int = 2  # samples per class of the cell
    seed: int = 0  # PRNG seed of the subspaces and samples
    d_max: int = 8  # bases drawn with d_max columns (static shape); the first d are the subspace
    N_max: int = 15  # samples drawn per class (static shape); the first N are used
    restarts: int = 16  # K-subspaces: random orthonormal starts (the certified one adds the spectral start)
    iterations: int = 20  # K-subspaces: steps per start
    threshold: float = 0.1  # success: subspace error below this
    certificate_tol: float = CERTIFICATE_TOL  # reached: residual <= truth's + this fraction of the energy

    def validate(self):
        _validate_common(self)
        for f in ("restarts", "iterations"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}: must be >= 1; got {getattr(self, f)}")
        if not 0.0 <= self.certificate_tol < 1.0:
            raise ValueError(f"certificate_tol: must lie in [0, 1); got {self.certificate_tol}")


# Why the point functions below never let two LAPACK calls (QR, eigh) run side by side:
# on XLA:CPU with jaxlib 0.10.2, two batched LAPACK calls running concurrently on a pool of
# two threads (a 2-core machine) wait for each other forever (:mod:`molrg.subspaces`). So
# K-subspaces orthonormalises by Gram-Schmidt (:func:`molrg.subspaces.orthonormalize`),
# all PCAs of a point are one batched call, every remaining LAPACK call depends on the
# previous one, and the network point holds no PCA. Measured: the first versions hung
# within a few compiled calls on 2 cores; this one ran 60+ calls of each study.


#: The reference estimators of ``phase_transition``, in the order of its figure's rows:
#: class PCA on the true labels, certified K-subspaces (spectral start + random starts,
#: selected by the objective), plain random-start K-subspaces.
REFERENCE_METHODS = ("pca", "ksub", "ksub_random")


def _keys(seed):
    k_data, k_ksub, k_init, k_noise = jax.random.split(jax.random.key(seed), 4)
    return k_data, k_ksub, k_init, k_noise


def _reference_point(cfg: PhaseTransitionPoint, v):
    k_data, k_ksub, _, _ = _keys(v["seed"])
    K, R = cfg.K, cfg.K * cfg.N_max
    bases, x, cols, rows = draw_problem(k_data, n=cfg.n, K=K, d=v["d"], N=v["N"],
                                        d_max=cfg.d_max, N_max=cfg.N_max)
    X = x.reshape(R, cfg.n)
    W = jnp.tile(rows, K)
    dtype = X.dtype
    energy = jnp.sum(W * jnp.sum(X * X, axis=-1))  # the certificate's scale
    # class k's rows (true labels) as weights on the pooled points
    label_weights = jnp.repeat(jnp.eye(K, dtype=dtype), cfg.N_max, axis=0) * W[:, None]  # (R, K)
    if K == 1:
        weights = label_weights  # one cluster: K-subspaces is PCA
    else:
        # One call runs the spectral start and the random starts side by side; the certified
        # estimator keeps the best of all (ties to the spectral start), the plain random-start
        # estimator the best of the random ones.
        fit = k_subspaces_fit(X, W, cols, key=k_ksub, K=K, restarts=cfg.restarts,
                              iterations=cfg.iterations, init="spectral")
        random_best = 1 + jnp.argmin(fit.start_objectives[1:])
        weights = jnp.concatenate([label_weights, fit.assign, fit.start_assigns[random_best]], axis=1)
    # One batched PCA (one QR call, then one eigh call) for the classes and the clusters:
    # see the note above ``_keys`` for why LAPACK calls must not run side by side.
    est = jax.vmap(lambda w: pca(X, w, cols), in_axes=1)(weights)  # (K or 3K, n, d_max)
    truth = partition_residual(X, label_weights, est[:K]) / energy
    out = {}
    for m, block in (("pca", 0), ("ksub", 1), ("ksub_random", 2)):
        if K == 1:
            block = 0
        lo = block * K
        err = subspace_error(est[lo:lo + K], bases, cols)
        found = partition_residual(X, weights[:, lo:lo + K], est[lo:lo + K]) / energy
        success = err < cfg.threshold
        hit = reached(found, truth, rtol=0.0, atol=cfg.certificate_tol)
        out.update({f"err_{m}": err, f"success_{m}": success.astype(dtype),
                    f"objective_{m}": found, f"objective_truth_{m}": truth,
                    f"reached_{m}": hit.astype(dtype), f"outcome_{m}": outcome(success, hit).astype(dtype)})
    # The identifiability test without labels: did any start reach the truth's residual with
    # another partition of the points (then the objective cannot tell the truth apart)?
    if K == 1:
        out["other_optimum"] = jnp.zeros((), dtype)
    else:
        other = jax.vmap(lambda a: ~same_partition(a, label_weights))(fit.start_assigns)
        at_optimum = fit.start_objectives / energy <= truth + cfg.certificate_tol
        out["other_optimum"] = jnp.any(other & at_optimum).astype(dtype)
    return out


PHASE_TRANSITION = sweepable(
    "phase_transition",
    summary="P0 phase transition: subspace recovery by class PCA and K-subspaces vs samples per class",
    config=PhaseTransitionPoint(),
    static=("n", "K", "d_max", "N_max", "restarts", "iterations", "threshold", "certificate_tol"),
    numeric=("d", "N", "seed"), point=_reference_point)


#: The trained network's starts (``PhaseTransitionNetPoint.start``): ``"random"`` -- Haar
#: random frames (P0's plain training); ``"seeded"`` -- column 1 of block k is a data point
#: chosen farthest-first (the point least aligned, by squared cosine, with the blocks seeded
#: so far), the rest random; ``"neighbours"`` -- each seeded block also takes the ``d - 1``
#: points most aligned with its seed (plus a small random part that keeps the frame full
#: rank), a greedy neighbourhood start that leans on the data's geometry like a clustering.
NET_STARTS = ("random", "seeded", "neighbours")
#: The certificate's objective: the empirical denoising loss of the final network on the
#: training points, at ``NET_EVAL_LEVELS`` noise levels log-spaced over
#: ``[sigma_min, sigma_max]`` with ``NET_EVAL_DRAWS`` noise draws per point and level, the
#: same draws for the random-start runs and the truth-started run.
NET_EVAL_LEVELS, NET_EVAL_DRAWS = 8, 4
#: The network's certificate tolerance: reached when its objective is at most the truth-
#: started run's times ``1 + NET_RTOL``. Measured (K = 2, 3, d = 4, N_k = 3..8): runs that
#: recover the subspaces end within 2% of the truth's objective (about 0.07); runs that
#: miss at N_k >= d_k end 15% to 500% above it (one misassigned point costs ~1/(K N) of the
#: data's energy).
NET_RTOL = 0.05


@dataclasses.dataclass(frozen=True)
class PhaseTransitionNetPoint:
    """One cell and seed of P0's trained network (study ``phase_transition_net``).

    Static: n, K, d, d_max, N_max, train_steps, sigma_min, sigma_max, threshold, restarts,
    start, rtol. Numeric: N, seed, learning_rate. Same data as ``phase_transition`` for the
    same (seed, d, N) when d_max and N_max agree. Training: :func:`molrg.training.fit`, full
    batch, Adam at ``learning_rate`` with cosine decay to 1e-3 of it over ``train_steps``,
    sigma log-uniform in ``[sigma_min, sigma_max]``; ``restarts`` starts of kind ``start``
    (:data:`NET_STARTS`) and one start at the true subspaces, all trained side by side
    (vmapped, same noise draws); the restart of lowest objective is the estimate, the truth-
    started run its certificate (module docstring).

    Outputs: ``err_net`` / ``success_net`` (the estimate; ``success`` = ``success_net``),
    ``objective``, ``objective_truth``, ``reached``, ``outcome`` (:mod:`molrg.certify`
    codes), ``err_truth_start`` (where the truth-started run ended), and
    ``success_first_start`` / ``reached_first_start`` (the first start alone: one start of
    the same kind, no selection). With ``plain``, P0's plain recipe -- one random start, the
    start that ``restarts=1, start="random"`` would train -- is trained in the same vmapped
    batch, on the same noise draws and certified against the same truth-started run (which
    it would otherwise train again): ``err_plain``, ``success_plain``, ``objective_plain``,
    ``reached_plain``, ``outcome_plain``.
    """

    n: int = 48  # ambient dimension
    K: int = 1  # number of classes (subspaces)
    d: int = 2  # subspace dimension of the cell
    N: int = 2  # samples per class of the cell
    seed: int = 0  # PRNG seed of the subspaces, samples, initialisation and noise
    learning_rate: float = 1e-2  # Adam's peak learning rate (cosine decay to 1e-3 of it)
    d_max: int = 8  # bases drawn with d_max columns (static shape); the first d are the subspace
    N_max: int = 15  # samples drawn per class (static shape); the first N are used
    train_steps: int = 500  # full-batch Adam steps
    sigma_min: float = 0.01  # training noise levels: log-uniform from sigma_min ...
    sigma_max: float = 0.3  # ... to sigma_max
    threshold: float = 0.1  # success: subspace error below this
    restarts: int = 2  # starts trained side by side; the lowest objective is kept
    start: str = "neighbours"  # kind of start: "random" (P0's plain training), "seeded", "neighbours"
    rtol: float = NET_RTOL  # certificate: reached when objective <= (1 + rtol) x the truth-started run's
    plain: bool = False  # also train P0's plain recipe (one random start) beside them: the *_plain outputs

    def validate(self):
        _validate_common(self)
        if not isinstance(self.plain, (bool, np.bool_)):
            raise ValueError(f"plain: must be true or false; got {self.plain!r}")
        if self.train_steps < 1:
            raise ValueError(f"train_steps: must be >= 1; got {self.train_steps}")
        if not 0.0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"sigma_min, sigma_max: need 0 < sigma_min < sigma_max; got "
                             f"{self.sigma_min}, {self.sigma_max}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: must be > 0; got {self.learning_rate}")
        if isinstance(self.restarts, bool) or not isinstance(self.restarts, (int, np.integer)) \
                or self.restarts < 1:
            raise ValueError(f"restarts: must be an integer >= 1; got {self.restarts!r}")
        if self.start not in NET_STARTS:
            raise ValueError(f"start: must be one of {NET_STARTS}; got {self.start!r}")
        if not (isinstance(self.rtol, (int, float)) and 0.0 <= self.rtol < 1.0):
            raise ValueError(f"rtol: must lie in [0, 1); got {self.rtol!r}")


#: A neighbour joins a seeded block only when its squared cosine with the seed exceeds this:
#: points of other (orthogonal) subspaces have squared cosine ~1e-32 from rounding, not 0, and
#: with N_k < d_k they would otherwise fill the block's spare columns (measured: every start
#: then missed the optimum at N_k < d_k).
NEIGHBOUR_COS2 = 1e-8


def seeded_start(key: Array, a: Array, X: Array, W: Array, K: int, d: int, neighbours: bool) -> Array:
    """A data-driven start: ``a`` (n, K d) with block k's first column the unit vector of a
    data point chosen farthest-first, and (``neighbours``) its other columns the ``d - 1``
    points most aligned with that seed (squared cosine above :data:`NEIGHBOUR_COS2`) plus
    ``0.1 a`` (so the frame stays full rank when fewer points exist).

    The first seed is a uniformly random valid row (``W > 0``, nonzero); seed k + 1 is the
    valid row of least ``max_j cos^2(x, seed_j)`` (ties broken by the same random draw). On
    noiseless samples of subspaces with a direct sum, every seed lies in its own subspace
    when K subspaces are sampled.
    """
    norms = jnp.sqrt(jnp.sum(X * X, axis=-1))
    valid = (W > 0) & (norms > 0)
    Xn = X / jnp.where(norms > 0, norms, jnp.ones_like(norms))[:, None]
    u = jax.random.uniform(key, (X.shape[0],), X.dtype)
    score = jnp.where(valid, u, -jnp.inf)
    align = jnp.zeros(X.shape[0], X.dtype)
    for k in range(K):
        i = jnp.argmax(score)
        a = a.at[:, k * d].set(Xn[i])
        cos2 = jnp.square(Xn @ Xn[i])
        if neighbours:
            near = jnp.where(valid, cos2, -jnp.ones_like(cos2)).at[i].set(-1.0)
            for j in range(1, d):
                m = jnp.argmax(near)
                col = jnp.where(near[m] > NEIGHBOUR_COS2, Xn[m], jnp.zeros_like(Xn[m]))
                a = a.at[:, k * d + j].set(col + 0.1 * a[:, k * d + j])
                near = near.at[m].set(-1.0)
        align = jnp.maximum(align, cos2)
        score = jnp.where(valid, 1e-3 * u - align, -jnp.inf)
    return a


def net_objective(net, U: Array, X: Array, W: Array, key: Array, sigma_min: float, sigma_max: float):
    """The certificate's objective of the network with orthonormal frame ``U`` (module
    docstring): its weighted denoising loss on the training points ``X`` (weights ``W``),
    averaged over :data:`NET_EVAL_LEVELS` noise levels log-spaced over [sigma_min, sigma_max]
    and :data:`NET_EVAL_DRAWS` noise draws per level, all from ``key`` (fixed draws: runs
    evaluated with one key are compared on the same noise)."""
    J, M = NET_EVAL_LEVELS, NET_EVAL_DRAWS
    sig = jnp.exp(jnp.linspace(np.log(sigma_min), np.log(sigma_max), J)).astype(X.dtype)
    eps = jax.random.normal(key, (J * M * X.size,), X.dtype).reshape(J * M, *X.shape)
    losses = jax.vmap(lambda s, e: denoising_loss(net, {"A": U}, X, s, 1.0, e, W))(jnp.repeat(sig, M), eps)
    return jnp.mean(losses)


def _net_point(cfg: PhaseTransitionNetPoint, v):
    k_data, _, k_train, k_noise = _keys(v["seed"])
    K, d, n, R = cfg.K, cfg.d, cfg.n, cfg.restarts
    bases, x, cols, rows = draw_problem(k_data, n=n, K=K, d=d, N=v["N"],
                                       d_max=cfg.d_max, N_max=cfg.N_max)
    dtype = x.dtype
    true = bases[:, :, :d]
    # No PCA here (its QR/eigh could run beside the training loop's eigh; see the note
    # above): ``phase_transition`` gives the references on the same data. Every eigh below
    # (the polar factor in training, then U, then the objective's polar of U) is one batched
    # call over the runs, each depending on the previous one.
    X = x.reshape(K * cfg.N_max, n)
    W = jnp.tile(rows, K)  # padding rows (i >= N) have weight 0: they count nothing
    net = SubspaceDenoiser(n=n, K=K, d=d)
    k_starts = jax.random.split(jax.random.fold_in(k_train, 1), R)
    starts = jax.vmap(lambda k: net.init(k, dtype=dtype)["A"])(k_starts)
    if cfg.start != "random":
        k_seed = jax.random.split(jax.random.fold_in(k_train, 2), R)
        starts = jax.vmap(lambda k, a: seeded_start(k, a, X, W, K, d, cfg.start == "neighbours"))(
            k_seed, starts)
    a_true = jnp.transpose(true, (1, 0, 2)).reshape(n, K * d)
    runs = [a_true[None].astype(dtype), starts]  # run 0: the truth-started run
    if cfg.plain:  # the last run: P0's plain recipe's start (restarts=1, start="random")
        runs.append(net.init(jax.random.split(jax.random.fold_in(k_train, 1), 1)[0], dtype=dtype)["A"][None])
    a0 = jnp.concatenate(runs)
    schedule = optax.cosine_decay_schedule(1.0, cfg.train_steps, alpha=1e-3)

    def train(a):
        res = fit(net, X, key=k_train, weights=W, steps=cfg.train_steps, batch_size=None,
                  learning_rate=v["learning_rate"], noise=LogUniformNoise(cfg.sigma_min, cfg.sigma_max),
                  schedule=schedule, params={"A": a})
        return net.bases(res.params)

    U = jax.vmap(train)(a0)  # (R + 1, n, K d), orthonormal
    objective = jax.vmap(lambda u: net_objective(net, u, X, W, k_noise, cfg.sigma_min, cfg.sigma_max))(U)
    errs = jax.vmap(lambda u: subspace_error(jnp.transpose(u.reshape(n, K, d), (1, 0, 2)), true))(U)
    best = 1 + jnp.argmin(objective[1:R + 1])
    err, found, truth = errs[best], objective[best], objective[0]
    success = err < cfg.threshold
    hit = reached(found, truth, rtol=cfg.rtol)
    plain = {}
    if cfg.plain:
        ok, hit_p = errs[-1] < cfg.threshold, reached(objective[-1], truth, rtol=cfg.rtol)
        plain = {"err_plain": errs[-1], "success_plain": ok.astype(dtype), "objective_plain": objective[-1],
                 "reached_plain": hit_p.astype(dtype), "outcome_plain": outcome(ok, hit_p).astype(dtype)}
    return {**plain, "err_net": err, "success_net": success.astype(dtype), "success": success.astype(dtype),
            "reached": hit.astype(dtype), "objective": found, "objective_truth": truth,
            "outcome": outcome(success, hit).astype(dtype), "err_truth_start": errs[0],
            "success_first_start": (errs[1] < cfg.threshold).astype(dtype),
            "reached_first_start": reached(objective[1], truth, rtol=cfg.rtol).astype(dtype)}


PHASE_TRANSITION_NET = sweepable(
    "phase_transition_net",
    summary="P0 phase transition: subspace recovery by training P0's delta=0 network (masked N), certified",
    config=PhaseTransitionNetPoint(),
    static=("n", "K", "d", "d_max", "N_max", "train_steps", "sigma_min", "sigma_max", "threshold",
            "restarts", "start", "rtol", "plain"),
    numeric=("N", "seed", "learning_rate"), point=_net_point)


# ------------------------------------------------------------------------------------------
# The experiment.
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PhaseTransitionConfig:
    n: int = 48  # ambient dimension
    K_values: tuple[int, ...] = (1, 2, 3)  # numbers of classes of the grid
    d_values: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)  # subspace dimensions of the grid
    N_values: tuple[int, ...] = tuple(range(2, 16))  # samples per class of the grid
    num_seeds: int = 10  # seeds per cell (success rate = fraction of seeds)
    restarts: int = 16  # K-subspaces: random orthonormal starts (certified: + the spectral start)
    iterations: int = 20  # K-subspaces: steps per start
    threshold: float = 0.1  # success: subspace error below this
    certificate_tol: float = CERTIFICATE_TOL  # clustering reached the optimum: residual <= truth's + this x energy
    success_level: float = 0.5  # the boundary: smallest N whose success rate reaches this
    train_steps: int = 500  # > 0: also train P0's network on net_K_values x net_d_values
    net_K_values: tuple[int, ...] = (1, 2, 3)  # K values of the trained-network cells
    net_d_values: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)  # d values of the trained-network cells
    net_seeds: int = 10  # seeds per trained-network cell
    net_restarts: int = 2  # the network's starts per point, trained side by side, lowest objective kept
    net_start: str = "neighbours"  # their kind (NET_STARTS): "random" = P0's plain training
    net_rtol: float = NET_RTOL  # network certificate: reached when objective <= (1 + net_rtol) x truth's
    net_plain: bool = True  # also train P0's plain recipe (one random start; method "net_random")
    learning_rate: float = 1e-2  # the network's Adam peak learning rate
    sigma_min: float = 0.01  # the network's training noise levels: log-uniform from sigma_min ...
    sigma_max: float = 0.3  # ... to sigma_max
    sweep_dir: str = ""  # keep the sweep folders here (resumable); empty: a temporary folder

    def validate(self):
        for name in ("K_values", "d_values", "N_values"):
            vals = getattr(self, name)
            if not vals or min(vals) < 1:
                raise ValueError(f"{name}: needs at least one value, all >= 1; got {vals}")
        if max(self.K_values) * max(self.d_values) > self.n:
            raise ValueError(f"d_values: need max(K) * max(d) <= n = {self.n}")
        if self.num_seeds < 1 or self.net_seeds < 1:
            raise ValueError("num_seeds, net_seeds: must be >= 1")
        if not 0.0 < self.success_level <= 1.0:
            raise ValueError(f"success_level: must lie in (0, 1]; got {self.success_level}")
        if self.train_steps < 0:
            raise ValueError(f"train_steps: must be >= 0; got {self.train_steps}")
        if self.train_steps and (not self.net_K_values or not self.net_d_values
                                 or max(self.net_K_values) * max(self.net_d_values) > self.n):
            raise ValueError("net_K_values, net_d_values: need values with max(K) * max(d) <= n")
        if self.net_restarts < 1:
            raise ValueError(f"net_restarts: must be >= 1; got {self.net_restarts}")
        if self.net_start not in NET_STARTS:
            raise ValueError(f"net_start: must be one of {NET_STARTS}; got {self.net_start!r}")
        if not 0.0 <= self.net_rtol < 1.0:
            raise ValueError(f"net_rtol: must lie in [0, 1); got {self.net_rtol}")


def slice_batch(N_values, num_seeds: int) -> int:
    """Points per compiled call: one (K, d) slice, ``len(N_values) * num_seeds``.

    A compiled program is specialised to its batch shape; with calls of one slice each,
    every sweep with the same static values and the same (N, seed) grid reuses one
    program whatever its d grid (the quick experiment, ``molrg check --quick`` and the
    tests share it).
    """
    return len(N_values) * num_seeds


def boundary(N_values, rates, level: float) -> float:
    """Smallest N with success rate >= level, if every larger N also has it; else NaN.

    Requiring the rate to stay above ``level`` for all larger N makes a lucky small-N cell
    not count as the boundary; NaN means the estimator never settles above ``level``.
    """
    N_values = np.asarray(N_values)
    rates = np.asarray(rates, float)
    ok = rates >= level
    for i in range(len(ok)):
        if ok[i:].all():
            return float(N_values[i])
    return float("nan")


def _outcomes(sel, method):
    """Outcome codes (:mod:`molrg.certify`) of the rows ``sel``: ``outcome_{method}`` (or
    ``outcome``) if the rows have it, else from ``success_`` and ``reached_{method}``; None
    when the rows carry no certificate."""
    for key in (f"outcome_{method}", "outcome"):
        if sel and key in sel[0]:
            return np.array([r[key] for r in sel], float).astype(int)
    for key in (f"reached_{method}", "reached"):
        if sel and key in sel[0]:
            return np.asarray(outcome([bool(r[f"success_{method}"]) for r in sel],
                                      [bool(r[key]) for r in sel]), int)
    return None


def _aggregate(rows, method, level, Ns):
    """Per (K, d, N) success rates, errors and the failure split; per (K, d) the boundary.

    The split (:func:`molrg.certify.split` of the rows' outcome codes): optimisation failures
    (the estimate's objective above the truth's on the same data) and sample-complexity
    failures (the optimum reached, the subspaces missed); NaN for rows without a certificate.
    """
    cells, bounds = [], []
    keys = sorted({(int(r["K"]), int(r["d"])) for r in rows})
    for K, d in keys:
        rates, opt, samp = [], 0, 0
        for N in Ns:
            sel = [r for r in rows if int(r["K"]) == K and int(r["d"]) == d and int(r["N"]) == N]
            errs = np.array([r[f"err_{method}"] for r in sel])
            succ = np.array([r[f"success_{method}"] for r in sel])
            rate = float(succ.mean())
            rates.append(rate)
            codes = _outcomes(sel, method)
            parts = split(codes) if codes is not None else {}
            opt += parts.get("optimisation failure", 0)
            samp += parts.get("sample-complexity failure", 0)
            cells.append({"method": method, "K": K, "d": d, "N": N, "seeds": len(errs),
                          "success_rate": rate,
                          "success_stderr": float(np.sqrt(rate * (1 - rate) / max(len(errs), 1))),
                          "err_median": float(np.median(errs)), "err_mean": float(errs.mean()),
                          "err_max": float(errs.max()),
                          "optimisation_failure_rate": parts.get("optimisation_failure_rate", float("nan")),
                          "sample_complexity_failure_rate": parts.get("sample_complexity_failure_rate",
                                                                      float("nan")),
                          "other_optimum_rate": (float(np.mean([r["other_optimum"] for r in sel]))
                                                 if sel and "other_optimum" in sel[0] else float("nan"))})
        b = boundary(Ns, rates, level)
        bounds.append({"method": method, "K": K, "d": d, "boundary_N": b,
                       "boundary_minus_d": b - d if np.isfinite(b) else float("nan"),
                       "rate_at_N_eq_d": rates[Ns.index(d)] if d in Ns else float("nan"),
                       "rate_at_N_eq_d_minus_1": rates[Ns.index(d - 1)] if d - 1 in Ns else float("nan"),
                       "rate_at_N_eq_d_plus_1": rates[Ns.index(d + 1)] if d + 1 in Ns else float("nan"),
                       "optimisation_failures": opt, "sample_complexity_failures": samp})
    return cells, bounds


def _network_sweeps(cfg: PhaseTransitionConfig, Ns, root: str, verbose: bool) -> dict:
    """The trained network's rows: ``{"net": rows}`` (the certified recipe: ``net_restarts``
    starts of kind ``net_start``), plus ``"net_random"`` (P0's plain recipe: one random start,
    same data, noise draws and certificate) when ``net_plain``; the plain rows carry their
    errors as ``err_net_random`` / ``success_net_random``. Both recipes are one sweep: the plain
    start is trained in the certified points' vmapped batch (``plain=True``), sharing their
    truth-started run, which a separate sweep would train again (4 runs per point, not 5)."""
    grid = {"K": list(cfg.net_K_values), "d": list(cfg.net_d_values), "N": Ns,
            "seed": list(range(cfg.net_seeds))}
    base = {"n": cfg.n, "d_max": max(max(cfg.d_values), max(cfg.net_d_values)), "N_max": max(Ns),
            "train_steps": cfg.train_steps, "learning_rate": cfg.learning_rate,
            "sigma_min": cfg.sigma_min, "sigma_max": cfg.sigma_max, "threshold": cfg.threshold,
            "rtol": cfg.net_rtol, "restarts": cfg.net_restarts, "start": cfg.net_start,
            "plain": bool(cfg.net_plain)}
    res = run_sweep(PHASE_TRANSITION_NET, grid, overrides=base, out_dir=os.path.join(root, "net"),
                    batch_size=slice_batch(Ns, cfg.net_seeds), verbose=verbose)
    rows = res["rows"]
    out = {"net": [{k: v for k, v in r.items() if not k.endswith("_plain")} for r in rows]}
    if cfg.net_plain:
        m = "net_random"
        out[m] = [{**{k: v for k, v in r.items() if not k.endswith("_plain")},
                   "err_net": r["err_plain"], "success_net": r["success_plain"], "success": r["success_plain"],
                   "objective": r["objective_plain"], "reached": r["reached_plain"],
                   "outcome": r["outcome_plain"], "success_first_start": r["success_plain"],
                   "reached_first_start": r["reached_plain"],
                   f"err_{m}": r["err_plain"], f"success_{m}": r["success_plain"]} for r in rows]
    return out


def run(cfg: PhaseTransitionConfig, verbose: bool = True) -> Results:
    own = not cfg.sweep_dir
    root = tempfile.mkdtemp(prefix="molrg-phase-") if own else cfg.sweep_dir
    Ns = list(cfg.N_values)
    try:
        t0 = time.perf_counter()
        ref = run_sweep(PHASE_TRANSITION, {
            "K": list(cfg.K_values), "d": list(cfg.d_values), "N": Ns,
            "seed": list(range(cfg.num_seeds))},
            overrides={"n": cfg.n, "d_max": max(cfg.d_values), "N_max": max(Ns),
                       "restarts": cfg.restarts, "iterations": cfg.iterations,
                       "threshold": cfg.threshold, "certificate_tol": cfg.certificate_tol},
            out_dir=root, batch_size=slice_batch(Ns, cfg.num_seeds), verbose=verbose)
        t_ref = time.perf_counter() - t0
        rows = ref["rows"]
        cells, bounds = [], []
        for method in REFERENCE_METHODS:
            c, b = _aggregate(rows, method, cfg.success_level, Ns)
            cells += c
            bounds += b
        points = [dict(r, method="reference") for r in rows]
        t_net = 0.0
        if cfg.train_steps:
            t1 = time.perf_counter()
            net_rows = _network_sweeps(cfg, Ns, root, verbose)
            t_net = time.perf_counter() - t1
            for method, rs in net_rows.items():
                c, b = _aggregate(rs, method, cfg.success_level, Ns)
                cells += c
                bounds += b
                points += [dict(r, method="network" if method == "net" else "network_random") for r in rs]
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)

    if verbose:
        print(f"  boundary = smallest N_k with success rate >= {cfg.success_level} (and above it after)")
        for b in bounds:
            print(f"  {b['method']:>4s} K={b['K']} d={b['d']}: boundary N={b['boundary_N']:.0f} "
                  f"(N - d = {b['boundary_minus_d']:+.0f}); rate at N=d-1/d/d+1: "
                  f"{b['rate_at_N_eq_d_minus_1']:.2f}/{b['rate_at_N_eq_d']:.2f}/"
                  f"{b['rate_at_N_eq_d_plus_1']:.2f}; failures: {b['optimisation_failures']} "
                  f"optimisation, {b['sample_complexity_failures']} sample-complexity")
    scalars = {"seconds_reference_sweep": t_ref, "seconds_network_sweep": t_net,
               "num_reference_points": len(rows),
               "threshold": cfg.threshold, "success_level": cfg.success_level,
               "certificate_tol": cfg.certificate_tol}
    for method in REFERENCE_METHODS + ("net",):
        for K in cfg.K_values:
            sel = [b["boundary_minus_d"] for b in bounds if b["method"] == method and b["K"] == K]
            if sel:
                scalars[f"boundary_minus_d_{method}_K{K}"] = sel
    return Results(scalars=scalars, tables={"cells": cells, "boundary": bounds, "points": points})


def plot(results_dir: str, fig_dir: str) -> list[str]:
    with paper_style():
        return _plot(load_results(results_dir), fig_dir)


def _plot(res: dict, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    cells = res["tables"]["cells"]
    bounds = res["tables"]["boundary"]
    methods = [m for m in REFERENCE_METHODS + ("net", "net_random") if any(c["method"] == m for c in cells)]
    labels = {"pca": "class PCA (labels known; = P0 net optimum for K=1)",
              "ksub": "K-subspaces, certified (spectral + random starts)",
              "ksub_random": "K-subspaces, random starts", "net": "P0 network, trained",
              "net_random": "P0 network, plain recipe"}
    Ks = sorted({int(c["K"]) for c in cells})
    fig, axes = plt.subplots(len(methods), len(Ks), figsize=(FULL_WIDTH, 1.9 * len(methods) + 0.6),
                             squeeze=False, layout="constrained")
    level = res["scalars"]["success_level"]
    im = None
    for i, m in enumerate(methods):
        for j, K in enumerate(Ks):
            ax = axes[i, j]
            sel = [c for c in cells if c["method"] == m and int(c["K"]) == K]
            if not sel:
                ax.axis("off")
                continue
            # full integer ranges (missing cells blank), so that rows and columns sit at their values
            ds = list(range(min(int(c["d"]) for c in sel), max(int(c["d"]) for c in sel) + 1))
            Ns = list(range(min(int(c["N"]) for c in sel), max(int(c["N"]) for c in sel) + 1))
            grid = np.full((len(ds), len(Ns)), np.nan)
            for c in sel:
                grid[ds.index(int(c["d"])), Ns.index(int(c["N"]))] = c["success_rate"]
            im = ax.imshow(grid, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis",
                           extent=(Ns[0] - 0.5, Ns[-1] + 0.5, ds[0] - 0.5, ds[-1] + 0.5))
            # Hatched: most failures of the cell are optimisation failures (the estimate's
            # objective above the truth's on the same data), so its colour is the optimiser's.
            for c in sel:
                opt = float(c.get("optimisation_failure_rate", float("nan")))
                if opt > 0 and opt > float(c.get("sample_complexity_failure_rate", 0.0)):
                    ax.add_patch(Rectangle((int(c["N"]) - 0.5, int(c["d"]) - 0.5), 1, 1, fill=False,
                                           hatch="////", edgecolor="r", lw=0))
            dd = np.array([ds[0] - 0.5, ds[-1] + 0.5])
            ax.plot(dd, dd, "w--", lw=1.5, label=r"$N_k = d_k$")
            if m in ("ksub", "ksub_random") and K >= 2:  # the limit without labels
                ax.plot(dd + 1, dd, "w:", lw=1.2, label=r"$N_k = d_k + 1$ (no labels)")
                if m == "ksub" and K == min(k for k in Ks if k >= 2):
                    ax.legend(loc="upper left")
            bsel = [b for b in bounds if b["method"] == m and int(b["K"]) == K]
            bx = [b["boundary_N"] for b in bsel]
            by = [b["d"] for b in bsel]
            ax.plot(bx, by, "r.", ms=6, label=f"rate $\\geq$ {level:g}")
            ax.set_xlim(Ns[0] - 0.5, Ns[-1] + 0.5)
            ax.set_ylim(ds[0] - 0.5, ds[-1] + 0.5)
            ax.set_title(f"{labels[m].split(' (')[0]}, K={K}")
            if i == len(methods) - 1:
                ax.set_xlabel("samples per class $N_k$")
            if j == 0:
                ax.set_ylabel("subspace dim $d_k$")
            if i == 0 and j == 0:
                ax.legend(loc="upper left")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label="success rate")
    thr = res["scalars"]["threshold"]
    fig.suptitle(f"P0 phase transition (n={res['manifest']['config']['n']}, success: error < {thr:g}; "
                 "hatched: most failures are optimisation failures)")
    mark_quick(fig, res)
    return save_figure(fig, fig_dir, "phase_transition")


# ------------------------------------------------------------------------------------------
# Claims, from the saved tables.
# ------------------------------------------------------------------------------------------
def _cells_of(cells, method, K, d):
    sel = [c for c in cells if c["method"] == method and int(c["K"]) == K and int(c["d"]) == d]
    return sorted(sel, key=lambda c: int(c["N"]))


def _failure_counts(cells, method, K, d, N_min=None):
    """(optimisation failures, sample-complexity failures) over the cells of (method, K, d)
    with ``N >= N_min`` (all N if None): rate x seeds summed; NaN without a certificate."""
    opt = samp = 0.0
    for c in _cells_of(cells, method, K, d):
        if N_min is not None and int(c["N"]) < N_min:
            continue
        seeds = float(c.get("seeds", float("nan")))
        opt += float(c.get("optimisation_failure_rate", float("nan"))) * seeds
        samp += float(c.get("sample_complexity_failure_rate", float("nan"))) * seeds
    return round(opt, 6), round(samp, 6)


def _fraction(part, whole):
    return part / whole if whole > 0 else (0.0 if whole == 0 else float("nan"))


def identifiability_limit(d: int, K: int, labels: bool) -> int:
    """Smallest N_k at which the estimator's objective determines the subspaces (noiseless
    generic samples, subspaces with a direct sum): ``d`` with labels or for K = 1, ``d + 1``
    for K-subspaces without labels (K >= 2); see the module docstring for the proof."""
    return d if labels or K == 1 else d + 1


def _reference_claims(cells, bounds, cfg) -> list[Claim]:
    """``phase_boundary[...]`` for class PCA (K = 1), certified K-subspaces and random-start
    K-subspaces (K >= 2), and ``identifiability_limit[...]`` (K >= 2), from the tables."""
    out = []
    Ks = sorted({int(b["K"]) for b in bounds if b["method"] in REFERENCE_METHODS})
    cases = [(1, "pca", "class PCA = P0 network optimum")] if 1 in Ks else []
    cases += [(K, m, label) for K in Ks if K >= 2
              for m, label in (("ksub", "K-subspaces, no labels"),
                               ("ksub_random", "K-subspaces random starts, no labels"))]
    for K, method, label in cases:
        sel = sorted((b for b in bounds if b["method"] == method and int(b["K"]) == K),
                     key=lambda b: int(b["d"]))
        if not sel:
            continue
        ds = [int(b["d"]) for b in sel]
        labels = method == "pca"
        limits = [identifiability_limit(d, K, labels) for d in ds]
        bN = [float(b["boundary_N"]) for b in sel]
        offsets = [b - lim for b, lim in zip(bN, limits)]
        Ns = [int(c["N"]) for c in _cells_of(cells, method, K, ds[0])]
        counts = [_failure_counts(cells, method, K, d) for d in ds]
        above = [_failure_counts(cells, method, K, d, lim) for d, lim in zip(ds, limits)]
        opt, samp = sum(c[0] for c in counts), sum(c[1] for c in counts)
        opt_above, samp_above = sum(c[0] for c in above), sum(c[1] for c in above)
        measured = {
            "d": ds, "boundary_N": bN, "boundary_minus_d": [float(b["boundary_minus_d"]) for b in sel],
            "identifiability_limit": limits, "boundary_minus_limit": offsets,
            "rate_at_N_eq_d_minus_1": [float(b["rate_at_N_eq_d_minus_1"]) for b in sel],
            "rate_at_N_eq_d": [float(b["rate_at_N_eq_d"]) for b in sel],
            "rate_at_N_eq_d_plus_1": [float(b.get("rate_at_N_eq_d_plus_1", float("nan"))) for b in sel],
            "optimisation_failures": opt, "sample_complexity_failures": samp,
            "optimisation_failure_fraction": _fraction(opt, opt + samp),
            "optimisation_failures_at_or_above_limit": opt_above,
            "sample_complexity_failures_at_or_above_limit": samp_above,
            "seeds_per_cell": int(cfg["num_seeds"]), "N_range": [min(Ns), max(Ns)], "n": int(cfg["n"])}
        if method == "ksub_random":
            measured["restarts"] = int(cfg["restarts"])
            out.append(Claim(
                f"phase_boundary[K={K}, {label}]",
                f"molrg: plain K-subspaces from {int(cfg['restarts'])} random starts (the best by "
                "residual) misses subspaces that its objective determines: at and above the "
                "identifiability limit N_k = d_k + 1 its failures are optimisation failures (residual "
                "above the true partition's), not sample-complexity failures",
                measured,
                "every failure at N_k >= d_k + 1 is an optimisation failure (0 sample-complexity "
                "failures there; uniqueness of the zero-residual partition); boundary reported",
                bool(samp_above == 0), source="molrg", expected="PASS"))
            continue
        statement = ("P0: subspace recovery switches from failure to success within one sample of "
                     "N_k = d_k (boundary = smallest N_k with success rate >= 0.5 that stays >= 0.5; "
                     "success: error < 0.1)")
        if not labels:
            statement += ("; molrg: without labels the K-subspaces objective determines the subspaces "
                          "from N_k = d_k + 1 (identifiability limit), and the certified estimator "
                          "(spectral start + random starts, selected by the residual) has its boundary "
                          "within one sample of it")
        out.append(Claim(
            f"phase_boundary[K={K}, {label}]", statement, measured,
            "|boundary - limit| <= 1 for every d (limit = d_k with labels, d_k + 1 without; NaN = never "
            "settles above 0.5 = FAIL)",
            all(np.isfinite(o) and abs(o) <= 1 for o in offsets), source="P0", expected="PASS"))
    for K in Ks:
        if K < 2:
            continue
        per_d = {}
        for d in sorted({int(b["d"]) for b in bounds if b["method"] == "ksub" and int(b["K"]) == K}):
            rates = {int(c["N"]): float(c.get("other_optimum_rate", float("nan")))
                     for c in _cells_of(cells, "ksub", K, d)}
            per_d[d] = rates
        if not per_d:
            continue
        above = [r for d, rates in per_d.items() for N, r in rates.items() if N >= d + 1]
        at = {d: rates[d] for d, rates in per_d.items() if d in rates}
        out.append(Claim(
            f"identifiability_limit[K={K}, K-subspaces, no labels]",
            "molrg: without labels (noiseless generic samples, K >= 2 subspaces of dimension d_k with a "
            "direct sum) the true partition is the unique zero-residual partition iff N_k >= d_k + 1: "
            "at N_k = d_k every split into K groups of d_k points has residual 0; so no start of the "
            "estimator reaches the truth's residual with another partition at N_k >= d_k + 1, while at "
            "N_k = d_k the starts find such partitions",
            {"other_optimum_rate_at_N_eq_d": at,
             "other_optimum_max_at_N_ge_d_plus_1": max(above) if above else float("nan"),
             "cells_at_N_ge_d_plus_1": len(above), "seeds_per_cell": int(cfg["num_seeds"]),
             "starts": int(cfg["restarts"]) + 1},
            "rate of 'another partition at the truth's residual' = 0 in every cell with N_k >= d_k + 1, "
            "and > 0 at N_k = d_k for at least one d (existence is proved; the random starts sample it)",
            bool(above) and max(above) == 0 and any(r > 0 for r in at.values()),
            source="molrg", expected="PASS"))
    return out


def claims(results: dict) -> list[Claim]:
    """P0's phase boundary for the references and the trained network (module docstring).

    ``phase_boundary``: class PCA at K = 1, certified and random-start K-subspaces at every
    K >= 2 of the run, every d; ``identifiability_limit`` for K >= 2 (:func:`_reference_claims`);
    ``phase_boundary_network`` (full scale only): every (K, d) of the network
    sub-grid. The boundary is the run's (``boundary`` table): the smallest N_k whose success
    rate reaches ``success_level`` and stays there; NaN (never settles) fails.
    """
    quick = bool(results["manifest"].get("quick", False))
    cfg = results["manifest"]["config"]
    cells, bounds = results["tables"]["cells"], results["tables"]["boundary"]
    out = _reference_claims(cells, bounds, cfg)
    if quick:
        return out
    net = sorted(((int(b["K"]), int(b["d"]), b) for b in bounds if b["method"] == "net"),
                 key=lambda t: t[:2])
    for K, d, b in net:
        rates = {int(c["N"]): float(c["success_rate"]) for c in _cells_of(cells, "net", K, d)}
        plain = {int(c["N"]): float(c["success_rate"]) for c in _cells_of(cells, "net_random", K, d)}
        opt, samp = _failure_counts(cells, "net", K, d)
        opt_plain, samp_plain = _failure_counts(cells, "net_random", K, d)
        opt_id, samp_id = _failure_counts(cells, "net", K, d, d)  # at and above N_k = d_k
        bN = float(b["boundary_N"])
        expected, reason = NETWORK_EXPECTED.get((K, d), ("PASS", ""))
        measured = {"boundary_N": bN, "boundary_minus_d": bN - d, "success_rate_by_N": rates,
                    "optimisation_failures": opt, "sample_complexity_failures": samp,
                    "optimisation_failure_fraction": _fraction(opt, opt + samp),
                    "optimisation_failures_at_N_ge_d": opt_id, "sample_complexity_failures_at_N_ge_d": samp_id,
                    "seeds_per_cell": int(cfg["net_seeds"]), "train_steps": int(cfg["train_steps"]),
                    "restarts": int(cfg.get("net_restarts", 1)), "start": cfg.get("net_start", "random"),
                    "certificate_rtol": float(cfg.get("net_rtol", float("nan"))),
                    "learning_rate": float(cfg["learning_rate"]),
                    "sigma_range": [float(cfg["sigma_min"]), float(cfg["sigma_max"])], "n": int(cfg["n"])}
        if plain:
            measured.update(plain_success_rate_by_N=plain, plain_optimisation_failures=opt_plain,
                            plain_sample_complexity_failures=samp_plain,
                            plain_optimisation_failure_fraction=_fraction(opt_plain, opt_plain + samp_plain))
        out.append(Claim(
            f"phase_boundary_network[K={K}, d={d}]",
            "P0: training P0's delta=0 network with the denoising loss recovers the subspaces "
            "from N_k >= d_k samples per class, failing below (boundary within one sample of d); "
            "molrg trains it with a certified recipe (data-driven starts, restarts selected by the "
            "objective; every failure split into optimisation / sample-complexity by the truth-"
            "started run's objective) and reports P0's plain random-start recipe beside",
            measured,
            "|boundary - d| <= 1 (success: subspace error < 0.1; NaN = never settles above 0.5 = FAIL)",
            bool(np.isfinite(bN) and abs(bN - d) <= 1), source="P0", expected=expected,
            reason=reason))
    return out


#: The verdict each ``phase_boundary_network[K=k, d=d]`` claim is expected to give at the
#: default (full) scale, with the reason for an expected FAIL (measured; module docstring).
NETWORK_EXPECTED: dict = {
    (3, 6): ("FAIL", "measured at full scale (2026-12-02, 10 seeds, default recipe): success rate "
             "0.2 / 0.4 / 0.9 at N_k = 6 / 7 / 8, boundary N = 8 = d + 2; 14 of the 15 failures at "
             "N_k >= d_k are certified sample-complexity failures (the estimate reached the truth-"
             "started run's objective; that run itself leaves the truth: with N_k close to d_k the "
             "empirical denoising loss at sigma in [0.01, 0.3] trades the sample's weakest direction "
             "for noise), 1 is the optimiser's; every other (K, d) has its boundary at d or d + 1, so "
             "this is the objective's borderline sample complexity (0.4 vs 0.5 on 10 seeds), not a "
             "weak optimiser"),
}

# The K = 1 slice of the quick run has the static values (d_max 8, N_max 10, restarts 8,
# iterations 10) of the old ``molrg check --quick`` phase_boundary sweep: same numbers.
QUICK = {"K_values": "1,2", "d_values": "2,4,6,8", "N_values": "2,3,4,5,6,7,8,9,10", "num_seeds": 10,
         "restarts": 8, "iterations": 10, "train_steps": 200, "net_K_values": "1", "net_d_values": "2",
         "net_seeds": 4}

EXPERIMENT = Experiment(name="phase_transition", cost=380,
         summary="P0's sample-complexity phase transition: subspace recovery vs samples per class",
         config=PhaseTransitionConfig(), run=run, plot=plot, quick=QUICK,
         paper="P0 phase-transition figure (n=48, d in 2..8, N_k in 2..15, K in 1..3)",
         claims=claims)

SWEEPABLES = (PHASE_TRANSITION, PHASE_TRANSITION_NET)
