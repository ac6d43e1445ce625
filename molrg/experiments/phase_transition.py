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
* ``ksub`` -- K-subspaces clustering without labels (K > 1; equal to ``pca`` for K = 1;
  :func:`molrg.subspaces.k_subspaces_assign`): hard assignment to the subspace of largest
  energy ``||U_k^T x||^2``, refit by one subspace-iteration step, ``restarts`` random
  orthonormal starts of ``iterations`` steps each, the restart with the smallest residual
  kept and its clusters refitted by the exact PCA. This is the objective P0 shows the
  hard-max network training solves.
* ``net`` -- P0's network itself (:class:`molrg.networks.SubspaceDenoiser`) trained with
  the denoising loss by :func:`molrg.training.fit`: full batch (padding rows of weight 0),
  Adam with cosine decay to ``1e-3`` of the learning rate, ``sigma`` log-uniform in
  ``[sigma_min, sigma_max]`` (:class:`molrg.schedules.LogUniformNoise`; study
  ``phase_transition_net``; a sub-grid by default, see below).

Claims (:func:`claims`, from the saved tables): ``phase_boundary`` -- the success rate
switches from below 0.5 to at least 0.5 (and stays there) within one sample of
``N_k = d_k`` for every d, for class PCA at K = 1 and (full scale) K-subspaces at K = 2;
``phase_boundary_network`` (full scale) -- the same for the trained network on its
sub-grid.

Speed. Shapes are what JAX compiles for, so only what fixes a shape is static. Each class's
sample is drawn at ``N_max`` and masked to its first N rows (weight-0 rows drop out of
every scatter, assignment and loss: one compile serves every N, and a seed's samples are
nested in N); the bases are drawn at ``d_max`` columns and the coefficients of the columns
``j >= d`` are zero, so ``d`` is numeric too for the references: the study
``phase_transition`` compiles once per K, and the full grid (7 x 14 x 3 cells x 10 seeds)
is the default scale (about 30 s on 2 CPU cores). A seed gives the same bases and samples
to every cell, truncated: common random numbers across the grid. The network has a static
``d`` (its parameter shape), so ``phase_transition_net`` compiles once per (K, d) and its
training dominates: by default it runs on the sub-grid ``net_K_values x net_d_values`` =
{1, 2} x {4} (same seeds and data as the references); the whole grid takes about 4 minutes
(``--set net_K_values=1,2,3 --set net_d_values=2,3,4,5,6,7,8``), ``train_steps=0`` skips it.

Sweeps: ``molrg sweep phase_transition --grid K=1,2,3 --grid d=2,3,4,5,6,7,8 --grid
N=2,3,4,5,6,7,8,9,10,11,12,13,14,15 --grid seed=0,1,2,3,4,5,6,7,8,9`` runs the full grid
(``molrg sweep phase_transition_net ... --set train_steps=1000`` the network); ``molrg run
phase_transition`` runs it through :func:`molrg.study.run_sweep` and draws success-rate
heatmaps, one per K and estimator, with the line N_k = d_k.
"""

from __future__ import annotations

import dataclasses
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
from molrg.subspaces import k_subspaces_assign, pca, subspace_error
from molrg.schedules import LogUniformNoise
from molrg.training import fit

Array = jax.Array


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
    """One cell and seed of the reference estimators (study ``phase_transition``).

    Static: n, K, d_max, N_max, restarts, iterations, threshold. Numeric: d, N, seed.
    """

    n: int = 48  # ambient dimension
    K: int = 2  # number of classes (subspaces)
    d: int = 2  # subspace dimension of the cell
    N: int = 2  # samples per class of the cell
    seed: int = 0  # PRNG seed of the subspaces and samples
    d_max: int = 8  # bases drawn with d_max columns (static shape); the first d are the subspace
    N_max: int = 15  # samples drawn per class (static shape); the first N are used
    restarts: int = 16  # K-subspaces: random orthonormal starts
    iterations: int = 20  # K-subspaces: steps per start
    threshold: float = 0.1  # success: subspace error below this

    def validate(self):
        _validate_common(self)
        for f in ("restarts", "iterations"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}: must be >= 1; got {getattr(self, f)}")


# Why the point functions below never let two LAPACK calls (QR, eigh) run side by side:
# on XLA:CPU with jaxlib 0.10.2, two batched LAPACK calls running concurrently on a pool of
# two threads (a 2-core machine) wait for each other forever (:mod:`molrg.subspaces`). So
# K-subspaces orthonormalises by Gram-Schmidt (:func:`molrg.subspaces.orthonormalize`),
# all PCAs of a point are one batched call, every remaining LAPACK call depends on the
# previous one, and the network point holds no PCA. Measured: the first versions hung
# within a few compiled calls on 2 cores; this one ran 60+ calls of each study.


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
    # class k's rows (true labels) as weights on the pooled points
    label_weights = jnp.repeat(jnp.eye(K, dtype=X.dtype), cfg.N_max, axis=0) * W[:, None]  # (R, K)
    if K == 1:
        weights = label_weights  # one cluster: K-subspaces is PCA
    else:
        clusters = k_subspaces_assign(X, W, cols, key=k_ksub, K=K, restarts=cfg.restarts,
                                      iterations=cfg.iterations)
        weights = jnp.concatenate([label_weights, clusters], axis=1)  # (R, 2K)
    # One batched PCA (one QR call, then one eigh call) for the classes and the clusters:
    # see the note above ``_keys`` for why LAPACK calls must not run side by side.
    est = jax.vmap(lambda w: pca(X, w, cols), in_axes=1)(weights)
    err_pca = subspace_error(est[:K], bases, cols)
    err_ksub = err_pca if K == 1 else subspace_error(est[K:], bases, cols)
    dtype = err_pca.dtype
    return {"err_pca": err_pca, "err_ksub": err_ksub,
            "success_pca": (err_pca < cfg.threshold).astype(dtype),
            "success_ksub": (err_ksub < cfg.threshold).astype(dtype)}


PHASE_TRANSITION = sweepable(
    "phase_transition",
    summary="P0 phase transition: subspace recovery by class PCA and K-subspaces vs samples per class",
    config=PhaseTransitionPoint(),
    static=("n", "K", "d_max", "N_max", "restarts", "iterations", "threshold"),
    numeric=("d", "N", "seed"), point=_reference_point)


@dataclasses.dataclass(frozen=True)
class PhaseTransitionNetPoint:
    """One cell and seed of P0's trained network (study ``phase_transition_net``).

    Static: n, K, d, d_max, N_max, train_steps, sigma_min, sigma_max, threshold.
    Numeric: N, seed, learning_rate. Same data as ``phase_transition`` for the same
    (seed, d, N) when d_max and N_max agree. Training: :func:`molrg.training.fit`, full
    batch, Adam at ``learning_rate`` with cosine decay to 1e-3 of it over ``train_steps``,
    sigma log-uniform in ``[sigma_min, sigma_max]``.
    """

    n: int = 48  # ambient dimension
    K: int = 1  # number of classes (subspaces)
    d: int = 2  # subspace dimension of the cell
    N: int = 2  # samples per class of the cell
    seed: int = 0  # PRNG seed of the subspaces, samples, initialisation and noise
    learning_rate: float = 1e-2  # Adam's peak learning rate (cosine decay to 1e-3 of it)
    d_max: int = 8  # bases drawn with d_max columns (static shape); the first d are the subspace
    N_max: int = 15  # samples drawn per class (static shape); the first N are used
    train_steps: int = 1000  # full-batch Adam steps
    sigma_min: float = 0.01  # training noise levels: log-uniform from sigma_min ...
    sigma_max: float = 0.3  # ... to sigma_max
    threshold: float = 0.1  # success: subspace error below this

    def validate(self):
        _validate_common(self)
        if self.train_steps < 1:
            raise ValueError(f"train_steps: must be >= 1; got {self.train_steps}")
        if not 0.0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"sigma_min, sigma_max: need 0 < sigma_min < sigma_max; got "
                             f"{self.sigma_min}, {self.sigma_max}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: must be > 0; got {self.learning_rate}")


def _net_point(cfg: PhaseTransitionNetPoint, v):
    k_data, _, k_train, _ = _keys(v["seed"])
    bases, x, cols, rows = draw_problem(k_data, n=cfg.n, K=cfg.K, d=cfg.d, N=v["N"],
                                       d_max=cfg.d_max, N_max=cfg.N_max)
    dtype = x.dtype
    d = cfg.d
    true = bases[:, :, :d]
    # No PCA here (its QR/eigh could run beside the training loop's SVD; see the note
    # above): ``phase_transition`` gives the references on the same data.
    X = x.reshape(cfg.K * cfg.N_max, cfg.n)
    W = jnp.tile(rows, cfg.K)  # padding rows (i >= N) have weight 0: they count nothing
    net = SubspaceDenoiser(n=cfg.n, K=cfg.K, d=d)
    res = fit(net, X, key=k_train, weights=W, steps=cfg.train_steps, batch_size=None,
              learning_rate=v["learning_rate"], noise=LogUniformNoise(cfg.sigma_min, cfg.sigma_max),
              schedule=optax.cosine_decay_schedule(1.0, cfg.train_steps, alpha=1e-3))
    learned = jnp.transpose(net.bases(res.params).reshape(cfg.n, cfg.K, d), (1, 0, 2))
    err_net = subspace_error(learned, true)
    return {"err_net": err_net, "success_net": (err_net < cfg.threshold).astype(dtype)}


PHASE_TRANSITION_NET = sweepable(
    "phase_transition_net",
    summary="P0 phase transition: subspace recovery by training P0's delta=0 network (masked N)",
    config=PhaseTransitionNetPoint(),
    static=("n", "K", "d", "d_max", "N_max", "train_steps", "sigma_min", "sigma_max", "threshold"),
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
    restarts: int = 16  # K-subspaces: random orthonormal starts
    iterations: int = 20  # K-subspaces: steps per start
    threshold: float = 0.1  # success: subspace error below this
    success_level: float = 0.5  # the boundary: smallest N whose success rate reaches this
    train_steps: int = 1000  # > 0: also train P0's network on net_K_values x net_d_values
    net_K_values: tuple[int, ...] = (1, 2)  # K values of the trained-network cells
    net_d_values: tuple[int, ...] = (4,)  # d values of the trained-network cells
    net_seeds: int = 10  # seeds per trained-network cell
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


def _aggregate(rows, method, level, Ns):
    """Per (K, d, N) success rates and errors; per (K, d) the boundary."""
    cells, bounds = [], []
    keys = sorted({(int(r["K"]), int(r["d"])) for r in rows})
    for K, d in keys:
        rates = []
        for N in Ns:
            errs = np.array([r[f"err_{method}"] for r in rows
                             if int(r["K"]) == K and int(r["d"]) == d and int(r["N"]) == N])
            succ = np.array([r[f"success_{method}"] for r in rows
                             if int(r["K"]) == K and int(r["d"]) == d and int(r["N"]) == N])
            rate = float(succ.mean())
            rates.append(rate)
            cells.append({"method": method, "K": K, "d": d, "N": N, "seeds": len(errs),
                          "success_rate": rate,
                          "success_stderr": float(np.sqrt(rate * (1 - rate) / max(len(errs), 1))),
                          "err_median": float(np.median(errs)), "err_mean": float(errs.mean()),
                          "err_max": float(errs.max())})
        b = boundary(Ns, rates, level)
        bounds.append({"method": method, "K": K, "d": d, "boundary_N": b,
                       "boundary_minus_d": b - d if np.isfinite(b) else float("nan"),
                       "rate_at_N_eq_d": rates[Ns.index(d)] if d in Ns else float("nan"),
                       "rate_at_N_eq_d_minus_1": rates[Ns.index(d - 1)] if d - 1 in Ns else float("nan"),
                       "rate_at_N_eq_d_plus_1": rates[Ns.index(d + 1)] if d + 1 in Ns else float("nan")})
    return cells, bounds


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
                       "threshold": cfg.threshold},
            out_dir=root, batch_size=slice_batch(Ns, cfg.num_seeds), verbose=verbose)
        t_ref = time.perf_counter() - t0
        rows = ref["rows"]
        cells, bounds = [], []
        for method in ("pca", "ksub"):
            c, b = _aggregate(rows, method, cfg.success_level, Ns)
            cells += c
            bounds += b
        points = [dict(r, method="reference") for r in rows]
        t_net = 0.0
        if cfg.train_steps:
            t1 = time.perf_counter()
            net = run_sweep(PHASE_TRANSITION_NET, {
                "K": list(cfg.net_K_values), "d": list(cfg.net_d_values), "N": Ns,
                "seed": list(range(cfg.net_seeds))},
                overrides={"n": cfg.n, "d_max": max(max(cfg.d_values), max(cfg.net_d_values)),
                           "N_max": max(Ns), "train_steps": cfg.train_steps,
                           "learning_rate": cfg.learning_rate, "sigma_min": cfg.sigma_min,
                           "sigma_max": cfg.sigma_max, "threshold": cfg.threshold},
                out_dir=root, batch_size=slice_batch(Ns, cfg.net_seeds), verbose=verbose)
            t_net = time.perf_counter() - t1
            c, b = _aggregate(net["rows"], "net", cfg.success_level, Ns)
            cells += c
            bounds += b
            points += [dict(r, method="network") for r in net["rows"]]
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)

    if verbose:
        print(f"  boundary = smallest N_k with success rate >= {cfg.success_level} (and above it after)")
        for b in bounds:
            print(f"  {b['method']:>4s} K={b['K']} d={b['d']}: boundary N={b['boundary_N']:.0f} "
                  f"(N - d = {b['boundary_minus_d']:+.0f}); rate at N=d-1/d/d+1: "
                  f"{b['rate_at_N_eq_d_minus_1']:.2f}/{b['rate_at_N_eq_d']:.2f}/"
                  f"{b['rate_at_N_eq_d_plus_1']:.2f}")
    scalars = {"seconds_reference_sweep": t_ref, "seconds_network_sweep": t_net,
               "num_reference_points": len(rows),
               "threshold": cfg.threshold, "success_level": cfg.success_level}
    for method in ("pca", "ksub", "net"):
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

    cells = res["tables"]["cells"]
    bounds = res["tables"]["boundary"]
    methods = [m for m in ("pca", "ksub", "net") if any(c["method"] == m for c in cells)]
    labels = {"pca": "class PCA (labels known; = P0 net optimum for K=1)",
              "ksub": "K-subspaces (no labels)", "net": "P0 network, trained"}
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
            dd = np.array([ds[0] - 0.5, ds[-1] + 0.5])
            ax.plot(dd, dd, "w--", lw=1.5, label=r"$N_k = d_k$")
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
    fig.suptitle(f"P0 phase transition (n={res['manifest']['config']['n']}, success: error < {thr:g})")
    mark_quick(fig, res)
    return save_figure(fig, fig_dir, "phase_transition")


# ------------------------------------------------------------------------------------------
# Claims, from the saved tables.
# ------------------------------------------------------------------------------------------
def _cells_of(cells, method, K, d):
    sel = [c for c in cells if c["method"] == method and int(c["K"]) == K and int(c["d"]) == d]
    return sorted(sel, key=lambda c: int(c["N"]))


def claims(results: dict) -> list[Claim]:
    """P0's phase boundary for the references and the trained network (module docstring).

    ``phase_boundary``: class PCA at K = 1 and (full scale only) K-subspaces at K = 2, every
    d of the run; ``phase_boundary_network`` (full scale only): every (K, d) of the network
    sub-grid. The boundary is the run's (``boundary`` table): the smallest N_k whose success
    rate reaches ``success_level`` and stays there; NaN (never settles) fails.
    """
    quick = bool(results["manifest"].get("quick", False))
    cfg = results["manifest"]["config"]
    cells, bounds = results["tables"]["cells"], results["tables"]["boundary"]
    out = []
    cases = [(1, "pca", "class PCA = P0 network optimum")]
    if not quick:
        cases.append((2, "ksub", "K-subspaces, no labels"))
    for K, method, label in cases:
        sel = sorted((b for b in bounds if b["method"] == method and int(b["K"]) == K),
                     key=lambda b: int(b["d"]))
        if not sel:
            continue
        ds = [int(b["d"]) for b in sel]
        offsets = [float(b["boundary_minus_d"]) for b in sel]
        Ns = [int(c["N"]) for c in _cells_of(cells, method, K, ds[0])]
        out.append(Claim(
            f"phase_boundary[K={K}, {label}]",
            "P0: subspace recovery switches from failure to success within one sample of N_k = d_k "
            "(boundary = smallest N_k with success rate >= 0.5 that stays >= 0.5; success: error < 0.1)",
            {"d": ds, "boundary_minus_d": offsets,
             "rate_at_N_eq_d_minus_1": [float(b["rate_at_N_eq_d_minus_1"]) for b in sel],
             "rate_at_N_eq_d": [float(b["rate_at_N_eq_d"]) for b in sel],
             "seeds_per_cell": int(cfg["num_seeds"]), "N_range": [min(Ns), max(Ns)],
             "n": int(cfg["n"])},
            "|boundary - d| <= 1 for every d in 2..8 (NaN = never settles above 0.5 = FAIL)",
            all(np.isfinite(o) and abs(o) <= 1 for o in offsets)))
    if quick:
        return out
    net = sorted(((int(b["K"]), int(b["d"]), b) for b in bounds if b["method"] == "net"),
                 key=lambda t: t[:2])
    for K, d, b in net:
        rates = {int(c["N"]): float(c["success_rate"]) for c in _cells_of(cells, "net", K, d)}
        bN = float(b["boundary_N"])
        out.append(Claim(
            f"phase_boundary_network[K={K}, d={d}]",
            "P0: training P0's delta=0 network with the denoising loss recovers the subspaces "
            "from N_k >= d_k samples per class, failing below (boundary within one sample of d)",
            {"boundary_N": bN, "boundary_minus_d": bN - d, "success_rate_by_N": rates,
             "seeds_per_cell": int(cfg["net_seeds"]), "train_steps": int(cfg["train_steps"]),
             "learning_rate": float(cfg["learning_rate"]),
             "sigma_range": [float(cfg["sigma_min"]), float(cfg["sigma_max"])], "n": int(cfg["n"])},
            "|boundary - d| <= 1 (success: subspace error < 0.1; NaN = never settles above 0.5 = FAIL)",
            bool(np.isfinite(bN) and abs(bN - d) <= 1)))
    return out


# The K = 1 slice of the quick run has the static values (d_max 8, N_max 10, restarts 8,
# iterations 10) of the old ``molrg check --quick`` phase_boundary sweep: same numbers.
QUICK = {"K_values": "1,2", "d_values": "2,4,6,8", "N_values": "2,3,4,5,6,7,8,9,10", "num_seeds": 10,
         "restarts": 8, "iterations": 10, "train_steps": 200, "net_K_values": "1", "net_d_values": "2",
         "net_seeds": 4}

EXPERIMENT = Experiment(name="phase_transition",
         summary="P0's sample-complexity phase transition: subspace recovery vs samples per class",
         config=PhaseTransitionConfig(), run=run, plot=plot, quick=QUICK,
         paper="P0 phase-transition figure (n=48, d in 2..8, N_k in 2..15, K in 1..3)",
         claims=claims)

SWEEPABLES = (PHASE_TRANSITION, PHASE_TRANSITION_NET)
