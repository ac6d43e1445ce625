"""P1 Fig. 3 with trained networks: learned vs optimal vs approximate denoisers across noise.

Setting (docs/theory.md section 7): K = 3, n = 50, d = 5, delta = 0.2, 12,000 training samples, Adam 5e-4,
DDPM T = 500, batch 32. Trains (a) P1's low-rank network (eq. 4, docs/theory.md section 4) from random
starts with P1's loss (unweighted x0 loss, uniform t) by molrg's recipe (below; ``lowrank_recipe="plain"``
is P1's plain training from one start) and (b) an MLP denoiser (width 128,
depth 3), and fits (c) the linear (Wiener) baseline in closed form. At each paper timestep,
on ``num_test_sets`` independent test sets (error = the std over test sets), measures

* output SNR (P1 Def. 1) of every denoiser and of the exact optimal denoiser, and the
  Theorem-1 approximation;
* excess MSE over the Bayes MSE (the optimal denoiser's MSE on the same noisy points);
* feature SNR (P1's recipe for features without known subspaces, docs/theory.md section 5:
  :func:`molrg.metrics.feature_snr` with rank-5 class subspaces fitted on the probe's
  training split) and linear-probe accuracy of: the low-rank net's ``h``, the optimal
  denoiser's outputs, the linear baseline's shrunk eigen-coordinates ``h``, and *every*
  hidden layer of the MLP (``mlp_hidden_1`` .. ``mlp_hidden_<depth>``);
* the low-rank network's subspace recovery and the KL of its posterior from the exact one, its
  recovery rate over ``recovery_seeds`` runs of the recipe (one vmapped program) and the
  optimisation certificate of every run (:mod:`molrg.certify`);
* the unimodality verdict (:func:`molrg.metrics.unimodality`, z = 3) of every curve.

The MLP (measured, see the ``networks_compare`` figure and tests/test_networks.py): with
EDM preconditioning, P1's uniform-t unweighted loss and the noise embedding only
concatenated to the input, 15,000 steps leave its outputs at the smallest noise levels
equal to its (scaled) input (excess MSE 2.4x the Bayes MSE, exactly the identity map's):
the preconditioned target there needs an input gain ``sigma_data / sigma`` that varies
100-fold over the paper grid, which a concat-conditioned MLP does not learn, and P1's
loss gives those levels ~sigma^2 of the weight. The defaults therefore train it with
FiLM conditioning (``mlp_film``) and EDM's loss weighting (``mlp_weighting="edm"``,
realised by importance sampling of t, :class:`molrg.schedules.DDPMNoise`), and set the
preconditioning's ``sigma_data`` to the training data's per-coordinate std (about 0.33;
``mlp_sigma_data`` overrides). ``--set mlp_film=false --set mlp_weighting=uniform``
reproduces the plain setting.

The low-rank network's recipe and certificate. Trained from a random start, eq. 4 finds the
stacked span but often leaves directions in the wrong block (a local minimum: objective 2-8%
above the optimum's). The certificate: the final objective (P1's loss on fixed draws, every
training point twice, :func:`molrg.recovery.objective_draws`) against ``objective_truth``, the network started
at the true subspaces and trained by the same recipe; ``reached`` when within
``CERTIFICATE_RTOL`` = 0.5% of it (:func:`molrg.certify.reached`; recovered networks lie within
0.16%, the misassigned ones 2-8% above). The recipe (:class:`molrg.recovery.LowRankRecipe`): 16 random starts,
each 2,000 Adam steps at lr 5e-3 (batch 32), the one of least objective kept and trained 2,000
more steps at batch 512 with the lr cosine-decayed to 1%. What each ingredient did, measured
(Fig. 3 data, seed 0; "recovered": matched error < 0.1; 16 or 64 starts, 2 CPU cores, load ~15)::

    training (K = 3 unless stated)                                  recovered
    P1 plain: lr 5e-4 constant, batch 32, 2,000 steps               0/16
    P1 plain, 75,000 steps (P1's scale; checks.json, seed 0)        1/1 (error 0.042)
    lr 5e-3 cosine to 1%, 5,000 steps, batch 32                     5/16
      the same at batch 128 / at lr 2e-2, batch 128                 4/16, 4/16
    lr 1e-2, 5% warm-up + cosine, 2,000 steps                       2/16
    lr 5e-3 held 2,000 + cosine 2,000 (one start, batch 32)         14/64
    continuation: 2,000 steps at sigma log-uniform [0.3, 3],
      then 3,000 cosine; the same from [0.1, 1]                     6/16; 7/16
    annealed continuation [1, 3] > [0.5, 1.5] > [0.25, 0.75]
      (1,000 steps each), then 2,000 cosine                         5/16
    gating continuation: eq. 4 with delta 0.6 > 0.4 > 0.2           1/16
    start inside the true stacked span, random rotation             0/64
    RECIPE: 16 starts, least objective kept, decay (16 seeds)       16/16
      its single starts after the search stage: objective reached   26/256
    K = 2 (appendix setting): lr 5e-3 cosine, 3,000 steps           4/16
    K = 2: lr 5e-3 held 2,000 + cosine 2,000                        32/64
    K = 2 RECIPE (8 starts; relaxations experiment, 16 seeds)       16/16

Every kept network of the recipe reached the certified optimum (relative excess -6e-5 ..
+5e-5 at full scale; -2e-4 .. +1.6e-3 with a batch-32 decay). The single starts that miss are
optimisation failures: objective 2-8% above the truth-started network's (230 of 256 after
the search stage; 21 more reach its objective but sit at matched error 0.10-0.14, the held
lr's minibatch noise, so the error threshold counts them as misses there).
Restarts selected by the objective are the ingredient that works; continuation adds at most
a seed or two in 16; the final decay at a large batch sets the precision: started at the
truth, the network ends at matched error 0.044 at batch 32, 0.019 at 256 and 0.012 at 1,024
(minibatch noise, not the 12,000 samples). The K = 2 rate is measured by the relaxations
experiment (``lowrank_recovery_rate[K=2]``, 8 starts).

The defaults are P1's scale (200 epochs = 75,000 steps per network, 5 test sets of 9,000);
``--set epochs=20 --set test_size=3000`` is a 1-minute version.

Measured at paper scale (75,000 steps, 5 x 9,000 test points, seed 0; 2 CPU cores, load
1.5): MLP excess MSE at most 0.22x the Bayes MSE (sigma = 0.29; 0.07x at the smallest
level), output SNR monotone decreasing, feature SNR of all three hidden layers with an interior
peak (sigma 0.29-0.38, as the optimal denoiser's at 0.29), probe accuracy monotone decreasing
for every representation. Wall time 156 s: training 19 s (low-rank, P1's plain recipe) + 97 s
(MLP), evaluation 6 s, feature SNR 5 s, linear probes 20 s. At 7,500 steps the MLP's excess
MSE is still 1.6x the Bayes MSE at the smallest level and no hidden layer peaks. The MLP's
certificate: objective 3.766 vs the Bayes-optimal denoiser's 3.662 on the same draws (+2.8%):
its FAILs (excess MSE, monotone output SNR) are its optimiser's / capacity's, not P1's.

With molrg's recipe (defaults; one run, 2 CPU cores at load ~20, so times are upper bounds):
16/16 seeds recover (matched errors 0.0125-0.0143, every one certified: relative excess
-5.8e-5 .. +4.6e-5 of the truth-started network's objective, which ends at error 0.0135), and
the low-rank network's output SNR is within 3 combined test-set stds of the optimum's at 14/14
levels (largest gap 0.114; the truth-started network's gaps are the same). P1's plain recipe
(one start, lr 5e-4 held, batch 32) that recovered at seed 0 ended at matched error 0.042
(minibatch noise) and its SNR missed the optimum's at 5 of 14 levels (small sigma, gap
0.21-1.3): the SNR FAIL was the final precision of the optimiser, not P1's claim. Wall time
657 s at that load: the low-rank recovery study 279 s, MLP 137 s, evaluation 46 s, feature SNR
69 s, probes 93 s.
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import molrg
from molrg import certify, metrics, probes, theory
from molrg.subspaces import compare_subspaces
from molrg.networks import LinearDenoiser, LowRankDenoiser, MLPDenoiser, fit_linear
from molrg.recovery import (CERTIFICATE_RTOL, RECOVERY_THRESHOLD, LowRankRecipe, objective_draws, recovery_study,
                            recovery_summary)
from molrg.study import Claim, Experiment, Progress, Results, load_results, save_figure
from molrg.study.plotting import FULL_WIDTH, mark_quick, paper_style, plain_log_ticks
from molrg.schedules import PAPER_TIMESTEPS, DDPMNoise, paper_timestep_sigmas
from molrg.training import denoising_loss, train

CURVES_SNR = ("lowrank", "optimal", "mlp", "linear")
#: SNR curves measured (the plotted ones and the truth-started low-rank network, whose gap to the
#: optimum is what 12,000 training samples allow a certified-optimal network).
CURVES_SNR_ALL = CURVES_SNR + ("lowrank_truth",)
CURVES_MSE = ("lowrank", "mlp", "linear")
#: Fixed representations; the MLP's hidden layers ``mlp_hidden_<i>`` are added per depth.
BASE_REPS = ("lowrank_h", "optimal_out", "linear_h")


def representations(mlp_depth: int) -> tuple[str, ...]:
    """Names of the representations whose feature SNR and probe accuracy are measured."""
    return BASE_REPS + tuple(f"mlp_hidden_{i}" for i in range(1, mlp_depth + 1))


@dataclasses.dataclass(frozen=True)
class Fig3TrainedConfig:
    n: int = 50  # ambient dimension
    K: int = 3  # number of classes (subspaces)
    d: int = 5  # dimension of each class's subspace
    delta: float = 0.2  # scale of the class-irrelevant detail on the other subspaces
    num_train: int = 12_000  # training samples of both networks
    epochs: int = 200  # P1: 200 (= 75,000 steps at batch 32)
    batch_size: int = 32  # training batch size
    learning_rate: float = 5e-4  # Adam learning rate of both networks
    mlp_width: int = 128  # hidden width of the MLP denoiser
    mlp_depth: int = 3  # hidden layers of the MLP denoiser
    mlp_film: bool = True  # FiLM conditioning on the noise embedding (module doc)
    mlp_weighting: str = "edm"  # "uniform" (P1's loss) or "edm" (module doc)
    mlp_sigma_data: float | None = None  # None: the training data's per-coordinate std
    num_test_sets: int = 5  # independent test sets (error bars = their std)
    test_size: int = 9_000  # P1: 9,000
    probe_train: int = 3_000  # probe and feature subspaces fitted on this many training samples
    probe_steps: int = 300  # L-BFGS steps of each linear probe
    feature_rank: int = 5  # P1's top-5 singular vectors per class
    probes: bool = True  # False skips the linear probes (probe curves are then NaN)
    seed: int = 0  # PRNG seed of the mixture, the data and the test sets
    train_seed: int = 0  # PRNG seed of the networks' initialisation and batches
    lowrank_recipe: str = "restarts"  # "restarts" (LowRankRecipe below) or "plain" (P1's: one start, lr/steps above)
    lowrank_restarts: int = 16  # random starts per seed, the one of least objective kept
    lowrank_steps: int = 4000  # Adam steps per start
    lowrank_decay_steps: int = 2000  # the last steps cosine-decay the learning rate to 1%
    lowrank_learning_rate: float = 5e-3  # Adam learning rate of the low-rank net's recipe
    lowrank_continuation_steps: int = 0  # large-sigma stage first (sigma log-uniform in [0.1, 1]); 0: none
    recovery_seeds: int = 16  # independent runs of the recipe (seed 0's network is the one evaluated)

    @property
    def steps(self) -> int:
        return max(1, self.epochs * self.num_train // self.batch_size)

    def validate(self):
        if self.d * self.K > self.n:
            raise ValueError(f"d: need K * d <= n; got {self.K} * {self.d} > {self.n}")
        if self.K < 2:
            raise ValueError("K: must be >= 2")
        if not (0 < self.delta < 1):
            raise ValueError(f"delta: must be in (0, 1); got {self.delta}")
        for f in ("n", "d", "num_train", "epochs", "batch_size", "mlp_width", "mlp_depth",
                  "test_size", "probe_train", "probe_steps", "feature_rank"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}: must be >= 1")
        if self.num_test_sets < 2:
            raise ValueError("num_test_sets: must be >= 2 (the std over test sets is the error bar)")
        if self.batch_size > self.num_train:
            raise ValueError("batch_size: must be <= num_train")
        if self.probe_train > self.num_train:
            raise ValueError("probe_train: must be <= num_train")
        if self.feature_rank > min(self.K * self.d, self.n, self.mlp_width):
            raise ValueError("feature_rank: must be <= the narrowest representation (K*d, n, mlp_width)")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate: must be > 0")
        if self.mlp_weighting not in ("uniform", "edm"):
            raise ValueError(f"mlp_weighting: must be 'uniform' or 'edm'; got {self.mlp_weighting!r}")
        if self.mlp_sigma_data is not None and not (np.isfinite(self.mlp_sigma_data) and self.mlp_sigma_data > 0):
            raise ValueError(f"mlp_sigma_data: must be None or finite and > 0; got {self.mlp_sigma_data}")
        if self.seed < 0 or self.train_seed < 0:
            raise ValueError("seed/train_seed: must be >= 0")
        if self.lowrank_recipe not in ("restarts", "plain"):
            raise ValueError(f"lowrank_recipe: must be 'restarts' or 'plain'; got {self.lowrank_recipe!r}")
        if self.recovery_seeds < 1:
            raise ValueError("recovery_seeds: must be >= 1")
        lowrank_recipe(self).validate(self.num_train)


def _kl(p, q):
    """Mean KL(p || q) over rows."""
    p = jnp.clip(p, 1e-30, 1.0)
    q = jnp.clip(q, 1e-30, 1.0)
    return jnp.mean(jnp.sum(p * (jnp.log(p) - jnp.log(q)), axis=-1))


def _probe_accuracy(probe, feats, labels):
    z = (feats - probe.mean[None, :]) / probe.scale[None, :]
    pred = jnp.argmax(z @ probe.weights + probe.bias[None, :], axis=-1)
    return jnp.mean((pred.astype(labels.dtype) == labels).astype(z.dtype))


class _FittedSubspaces(NamedTuple):
    """Duck-typed mixture for :func:`molrg.metrics.snr`: fitted class bases, equal weights."""

    bases: tuple
    weights: jax.Array


def feature_snr_with_fit(features, labels, fit: metrics.ClassSubspaces):
    """P1's feature SNR of ``features`` (M, m) against already fitted class subspaces.

    Equals ``metrics.feature_snr(features, labels, fit_features=F, fit_labels=y)`` when
    ``fit = metrics.class_subspaces(F, y)`` (tested): rows normalised to unit norm (zero rows
    stay zero), centred by the fit's mean, SNR of :func:`molrg.metrics.snr` with
    ``P_k = V_k V_k^T``. Taking the fit as an argument keeps the eigendecompositions out of
    the vmapped evaluation (see ``run``).
    """
    norm = jnp.sqrt(jnp.sum(features**2, axis=-1, keepdims=True))
    z = features / jnp.where(norm > 0, norm, jnp.ones_like(norm)) - fit.mean[None, :]
    K = fit.bases.shape[0]
    return metrics.snr(z, labels, _FittedSubspaces(tuple(fit.bases[k] for k in range(K)),
                                                   jnp.ones((K,), z.dtype)))


def lowrank_recipe(cfg) -> LowRankRecipe:
    """The low-rank network's recipe of a config: molrg's restarts recipe, or P1's plain
    training (one random start, the MLP's learning rate, steps and batch size)."""
    if cfg.lowrank_recipe == "plain":
        return LowRankRecipe(restarts=1, steps=cfg.steps, decay_steps=0, learning_rate=cfg.learning_rate,
                             batch_size=cfg.batch_size)
    return LowRankRecipe(restarts=cfg.lowrank_restarts, steps=cfg.lowrank_steps, decay_steps=cfg.lowrank_decay_steps,
                         learning_rate=cfg.lowrank_learning_rate, batch_size=cfg.batch_size,
                         continuation_steps=cfg.lowrank_continuation_steps)


def _recipe_text(recipe: LowRankRecipe) -> str:
    cont = (f"{recipe.continuation_steps} steps at sigma log-uniform in {list(recipe.continuation_sigmas)}, then "
            if recipe.continuation_steps else "")
    decay = (f", the last {recipe.decay_steps} (kept start, batch {recipe.decay_batch_size}) cosine-decayed to 1%"
             if recipe.decay_steps else "")
    kept = ", the least objective kept" if recipe.restarts > 1 else ""
    return (f"{recipe.restarts} random start{'s' if recipe.restarts > 1 else ''} per seed, each {cont}{recipe.steps} "
            f"Adam steps at lr {recipe.learning_rate:g}{decay}, batch {recipe.batch_size}{kept}")


def build_networks(cfg: Fig3TrainedConfig, x_train):
    """The three networks and the MLP's noise distribution; ``sigma_data`` from the data."""
    sigma_data = (float(jnp.std(x_train)) if cfg.mlp_sigma_data is None else float(cfg.mlp_sigma_data))
    lowrank = LowRankDenoiser(cfg.n, cfg.K, cfg.d, cfg.delta)
    mlp = MLPDenoiser(cfg.n, cfg.mlp_width, cfg.mlp_depth, sigma_data=sigma_data, film=cfg.mlp_film)
    linear = LinearDenoiser(cfg.n)
    return lowrank, mlp, linear, DDPMNoise(weighting=cfg.mlp_weighting, sigma_data=sigma_data)


def _verdict(sig, arr):
    if not np.all(np.isfinite(arr)):
        return {"verdict": "not measured", "peak_sigma": float("nan"), "peak_value": float("nan"),
                "peak_timestep": -1}
    u = metrics.unimodality(sig, arr.mean(1), arr.std(1, ddof=1))
    return {"verdict": u.verdict, "peak_sigma": u.peak_x, "peak_value": u.peak_value,
            "peak_timestep": int(PAPER_TIMESTEPS[u.peak_index])}


def run(cfg: Fig3TrainedConfig, verbose: bool = True) -> Results:
    cfg.validate()
    t_start = time.perf_counter()
    keys = list(jax.random.split(jax.random.key(cfg.seed), 6))
    mix = molrg.random_molrg(keys[0], n=cfg.n, K=cfg.K, d=cfg.d, delta=cfg.delta)
    x_train, y_train = mix.sample(keys[1], cfg.num_train)
    lowrank, mlp, linear, mlp_noise = build_networks(cfg, x_train)
    reps = representations(cfg.mlp_depth)
    times = {}

    t0 = time.perf_counter()
    recipe = lowrank_recipe(cfg)
    draws = objective_draws(keys[5], x_train)  # the certificates' fixed noise draws
    study = recovery_study(lowrank, x_train, mix, recipe, seeds=cfg.recovery_seeds,
                           key=jax.random.key(cfg.train_seed), draws=draws)
    recovery = recovery_summary(study)
    p_lr = {"A": jnp.asarray(study["A"][0])}  # seed 0's kept network is the one evaluated below
    p_truth = {"A": jnp.asarray(study["truth_A"])}  # started at the truth, trained by the same recipe
    times["train_lowrank_s"] = time.perf_counter() - t0
    if verbose:
        print(f"  low-rank net: {cfg.recovery_seeds} seeds x {recipe.restarts} starts x {recipe.steps} steps in "
              f"{times['train_lowrank_s']:.1f} s; recovered {recovery['recovered']}/{cfg.recovery_seeds} "
              f"(single starts after the search stage: {recovery['single_start']['reached']}/"
              f"{recovery['single_start']['starts']} reach the truth's objective)")
    t0 = time.perf_counter()
    res_mlp = train(mlp, x_train, seed=cfg.train_seed, steps=cfg.steps, batch_size=cfg.batch_size,
                    learning_rate=cfg.learning_rate, noise=mlp_noise)
    res_mlp.losses.block_until_ready()
    times["train_mlp_s"] = time.perf_counter() - t0
    if verbose:
        print(f"  MLP:          {cfg.steps} steps in {times['train_mlp_s']:.1f} s "
              f"(sigma_data {mlp.sigma_data:.4f}, film={mlp.film}, weighting {mlp_noise.weighting})")
    p_mlp, p_lin = res_mlp.params, fit_linear(x_train)

    # The MLP's certificate: its objective (P1's loss, uniform t) on the low-rank net's fixed
    # draws against the Bayes-optimal denoiser's on the same draws (the optimum of any network).
    @jax.jit
    def mlp_certificate_objectives(draws):
        x0, eps, sigma, scale = draws
        xt = scale[:, None] * (x0 + sigma[:, None] * eps)
        bayes_loss = jnp.mean(jnp.sum((molrg.denoise(mix, xt, sigma, scale) - x0) ** 2, axis=-1))
        return denoising_loss(mlp, p_mlp, x0, sigma, scale, eps), bayes_loss

    mlp_obj, bayes_obj = (float(v) for v in mlp_certificate_objectives(draws))
    mlp_cert = {"objective": mlp_obj, "objective_bayes": bayes_obj,
                "relative_excess": (mlp_obj - bayes_obj) / bayes_obj,
                "reached": bool(certify.reached(mlp_obj, bayes_obj, rtol=CERTIFICATE_RTOL))}

    # Subspace recovery of the learned low-rank network.
    U = np.asarray(lowrank.bases(p_lr))
    blocks = [U[:, k * cfg.d:(k + 1) * cfg.d] for k in range(cfg.K)]
    rec = compare_subspaces(blocks, mix)  # rec.error normalised; rec.frobenius_error = sqrt(2Kd) x it
    max_angles_deg = [float(np.degrees(np.max(a))) for a in rec.angles]
    Ustar = np.asarray(mix.stacked_bases)
    stacked_err = float(np.linalg.norm(U @ U.T - Ustar @ Ustar.T))

    sig, sc = paper_timestep_sigmas()
    J, S, M = len(sig), cfg.num_test_sets, cfg.test_size

    def forward(x0, eps, sigma, scale):
        """Outputs and representations of every denoiser on a flat batch (B, n)."""
        xt = scale * (x0 + sigma * eps)
        opt, post = molrg.denoise(mix, xt, sigma, scale, return_posterior=True)
        o_lr, f_lr = lowrank.apply(p_lr, xt, sigma, scale, return_features=True)
        o_truth = lowrank.apply(p_truth, xt, sigma, scale)
        o_mlp, f_mlp = mlp.apply(p_mlp, xt, sigma, scale, return_features=True)
        o_lin, f_lin = linear.apply(p_lin, xt, sigma, scale, return_features=True)
        outs = {"lowrank": o_lr, "optimal": opt, "mlp": o_mlp, "linear": o_lin, "lowrank_truth": o_truth}
        feats = {"lowrank_h": f_lr["h"], "optimal_out": opt, "linear_h": f_lin["h"],
                 **{f"mlp_{k}": v for k, v in f_mlp.items()}}
        return outs, feats, post, f_lr["posterior"]

    # Stage 1, all test sets of one level and the probe's training split in one forward pass
    # of one compiled program (sigma and scale are traced: one compile serves every level).
    # It holds a single LAPACK call (the low-rank net's polar factor): jaxlib can deadlock on
    # 2 cores when batched LAPACK calls run concurrently, so the subspace fits (eigh) run
    # as separate, sequential programs (stage 2).
    @jax.jit
    def level_eval(x0s, labs, eps_s, xp, eps_p, sigma, scale):
        x0 = jnp.concatenate([x0s.reshape(S * M, -1), xp])
        eps = jnp.concatenate([eps_s.reshape(S * M, -1), eps_p])
        outs, feats, post, post_lr = forward(x0, eps, sigma, scale)
        test = lambda v: v[:S * M].reshape(S, M, -1)  # noqa: E731
        outs = {c: test(v) for c, v in outs.items()}
        snr = {c: jax.vmap(lambda o, lab: metrics.snr(o, lab, mix))(outs[c], labs) for c in CURVES_SNR_ALL}
        sq = {c: jnp.mean(jnp.sum((outs[c] - x0s) ** 2, axis=-1), axis=-1) for c in CURVES_SNR}
        kl = jax.vmap(_kl)(test(post), test(post_lr))
        return snr, sq, kl, {c: v[S * M:] for c, v in feats.items()}, {c: test(v) for c, v in feats.items()}

    @jax.jit
    def feature_snr_eval(feats, labs, fits):
        return {c: jax.vmap(lambda f, lab, c=c: feature_snr_with_fit(f, lab, fits[c]))(feats[c], labs)
                for c in reps}

    # Probes: one compiled fit for every representation, features zero-padded to a common
    # width (a constant zero column is only centred, gets zero gradient and stays at weight 0,
    # so padding does not change the fit), vmapped over representations.
    width = max(cfg.K * cfg.d, cfg.n, cfg.mlp_width)

    @jax.jit
    def probe_eval(feats_tr, feats, yp, labs):
        pad = lambda f: jnp.pad(f, [(0, 0)] * (f.ndim - 1) + [(0, width - f.shape[-1])])  # noqa: E731
        tr = jnp.stack([pad(feats_tr[c]) for c in reps])  # (R, P, width)
        te = jnp.stack([pad(feats[c]) for c in reps])  # (R, S, M, width)
        fit = jax.vmap(lambda a, b: probes.linear_probe(a, yp, b, labs[0], num_classes=cfg.K,
                                                         steps=cfg.probe_steps))(tr, te[:, 0])
        acc = jax.vmap(lambda f, t: jax.vmap(lambda ts, lab: _probe_accuracy(f, ts, lab))(t, labs))(fit, te)
        return acc  # (R, S)

    test = [mix.sample(k, M) for k in jax.random.split(keys[2], S)]
    x0s = jnp.stack([t[0] for t in test])
    labs = jnp.stack([t[1] for t in test])
    sub = jax.random.choice(keys[3], cfg.num_train, (cfg.probe_train,), replace=False)
    xp, yp = x_train[sub], y_train[sub]
    snr = {c: np.zeros((J, S)) for c in CURVES_SNR_ALL}
    fsnr = {c: np.zeros((J, S)) for c in reps}
    probe = {c: np.full((J, S), np.nan) for c in reps}
    bayes = np.zeros((J, S))
    excess = {c: np.zeros((J, S)) for c in CURVES_MSE}
    kl = np.zeros((J, S))
    times["eval_s"], times["feature_snr_s"], times["probes_s"] = 0.0, 0.0, 0.0
    prog = Progress(J, "noise levels", enabled=verbose)
    for j in range(J):
        t0 = time.perf_counter()
        kj = jax.random.fold_in(keys[4], j)
        eps_p = jax.random.normal(jax.random.fold_in(kj, 999), xp.shape, xp.dtype)
        eps_s = jax.random.normal(jax.random.fold_in(kj, 0), x0s.shape, x0s.dtype)
        s_j, sq_j, kl_j, feats_tr, feats = jax.block_until_ready(level_eval(
            x0s, labs, eps_s, xp, eps_p, jnp.asarray(sig[j], x0s.dtype), jnp.asarray(sc[j], x0s.dtype)))
        sq_j = {c: np.asarray(v, np.float64) for c, v in sq_j.items()}
        for c in CURVES_SNR_ALL:
            snr[c][j] = np.asarray(s_j[c])
        bayes[j] = sq_j["optimal"]
        for c in CURVES_MSE:
            excess[c][j] = sq_j[c] - sq_j["optimal"]
        kl[j] = np.asarray(kl_j)
        t1 = time.perf_counter()
        times["eval_s"] += t1 - t0
        # Stage 2: one subspace fit (one eigh program) at a time, then every set at once.
        fits = {c: jax.block_until_ready(metrics.class_subspaces(
            feats_tr[c], yp, num_classes=cfg.K, rank=cfg.feature_rank)) for c in reps}
        fs_j = feature_snr_eval(feats, labs, fits)
        for c in reps:
            fsnr[c][j] = np.asarray(fs_j[c])
        times["feature_snr_s"] += time.perf_counter() - t1
        if cfg.probes:
            t0 = time.perf_counter()
            acc = np.asarray(probe_eval(feats_tr, feats, yp, labs))
            for i, c in enumerate(reps):
                probe[c][j] = acc[i]
            times["probes_s"] += time.perf_counter() - t0
        prog.update(1)
    approx = np.asarray(theory.approx_snr(jnp.asarray(sig), d=cfg.d, K=cfg.K, delta=cfg.delta))

    # Unimodality verdicts (error = std over the test sets).
    verdicts = {f"snr_{c}": _verdict(sig, snr[c]) for c in CURVES_SNR}
    verdicts.update({f"fsnr_{c}": _verdict(sig, fsnr[c]) for c in reps})
    verdicts.update({f"probe_{c}": _verdict(sig, probe[c]) for c in reps})
    ua = metrics.unimodality(sig, approx)
    verdicts["snr_approx"] = {"verdict": ua.verdict, "peak_sigma": ua.peak_x, "peak_value": ua.peak_value,
                              "peak_timestep": int(PAPER_TIMESTEPS[ua.peak_index])}

    rows = []
    for j in range(J):
        r = {"timestep": int(PAPER_TIMESTEPS[j]), "sigma": float(sig[j]), "scale": float(sc[j]),
             "snr_approx": float(approx[j])}
        for c in CURVES_SNR_ALL:
            r[f"snr_{c}"], r[f"snr_{c}_std"] = float(snr[c][j].mean()), float(snr[c][j].std(ddof=1))
        for c in reps:
            r[f"fsnr_{c}"], r[f"fsnr_{c}_std"] = float(fsnr[c][j].mean()), float(fsnr[c][j].std(ddof=1))
            r[f"probe_{c}"], r[f"probe_{c}_std"] = float(probe[c][j].mean()), float(probe[c][j].std(ddof=1))
        r["bayes_mse"], r["bayes_mse_std"] = float(bayes[j].mean()), float(bayes[j].std(ddof=1))
        for c in CURVES_MSE:
            r[f"excess_mse_{c}"] = float(excess[c][j].mean())
            r[f"excess_mse_{c}_std"] = float(excess[c][j].std(ddof=1))
            r[f"rel_excess_mse_{c}"] = float(excess[c][j].mean() / bayes[j].mean())
        r["kl_posterior_lowrank"], r["kl_posterior_lowrank_std"] = float(kl[j].mean()), float(kl[j].std(ddof=1))
        rows.append(r)

    # SNR of the low-rank net vs the optimum: within error bars (3 combined stds) at each level?
    gap = np.array([abs(r["snr_lowrank"] - r["snr_optimal"]) for r in rows])
    bars = np.array([3 * np.hypot(r["snr_lowrank_std"], r["snr_optimal_std"]) for r in rows])
    threshold = RECOVERY_THRESHOLD  # normalised error: an RMS sine of the principal angles of 0.1 (5.7 deg)
    times["total_s"] = time.perf_counter() - t_start
    max_rel = {c: max(r[f"rel_excess_mse_{c}"] for r in rows) for c in CURVES_MSE}
    v = verdicts

    def vtxt(name):
        x = v[name]
        return f"{x['verdict']} (peak {x['peak_value']:.3g} at sigma {x['peak_sigma']:.3g})"

    peaked = [c for c in reps if v[f"fsnr_{c}"]["verdict"] == "interior peak"]
    peaked_probe = [c for c in reps if v[f"probe_{c}"]["verdict"] == "interior peak"]
    summary = (
        f"P1 Fig. 3 with trained networks (K={cfg.K}, n={cfg.n}, d={cfg.d}, delta={cfg.delta}, "
        f"{cfg.num_train} training samples, {cfg.epochs} epochs = {cfg.steps} Adam steps at batch "
        f"{cfg.batch_size}, lr {cfg.learning_rate}; paper scale is `--set epochs=200 --set test_size=9000`, "
        f"this run uses {cfg.num_test_sets} test sets of {cfg.test_size}, probes and feature subspaces fitted on "
        f"{cfg.probe_train} training points). MLP: width {cfg.mlp_width}, depth {cfg.mlp_depth}, "
        f"{'FiLM' if cfg.mlp_film else 'concat'} conditioning, {mlp_noise.weighting} loss weighting, "
        f"sigma_data {mlp.sigma_data:.4f}. "
        f"Low-rank net ({_recipe_text(recipe)}): {recovery['recovered']}/{recovery['seeds']} seeds recover the "
        f"subspaces ({recovery['optimisation_failures']} optimisation failures, "
        f"{recovery['sample_complexity_failures']} sample-complexity failures; single random starts after the "
        f"search stage, at the held lr whose minibatch noise inflates their matched error: "
        f"{recovery['single_start']['reached']}/{recovery['single_start']['starts']} reach the truth-started "
        f"network's objective at that stage, {recovery['single_start']['recovered']} are below the threshold); "
        f"certificate of seed 0's "
        f"network: objective {study['objective'][0]:.5f} vs {study['objective_truth']:.5f} started at the truth "
        f"(relative excess {study['relative_excess'][0]:+.2e}, tolerance rtol {CERTIFICATE_RTOL:g}: "
        f"{'reached' if study['reached'][0] else 'NOT reached'}); the truth-started network ends at matched error "
        f"{study['truth_error']:.4f}. Seed 0's network: matched subspace error {rec.error:.4f} "
        f"(normalised, molrg.subspaces; unnormalised {rec.frobenius_error:.3f}; recovery threshold {threshold:g}; "
        f"{'recovered' if rec.error < threshold else 'NOT recovered'}), per-block errors "
        f"{np.round(rec.block_errors, 3).tolist()}, largest principal angle per block "
        f"{np.round(max_angles_deg, 1).tolist()} deg, stacked-span error ||UU^T - U*U*^T||_F = {stacked_err:.3f}; "
        f"mean KL(exact posterior || net posterior) ranges {min(r['kl_posterior_lowrank'] for r in rows):.3g}"
        f"-{max(r['kl_posterior_lowrank'] for r in rows):.3g} over levels. "
        f"Output SNR verdicts: optimal {vtxt('snr_optimal')}; low-rank {vtxt('snr_lowrank')}; "
        f"MLP {vtxt('snr_mlp')}; linear {vtxt('snr_linear')}; Theorem-1 approximation {vtxt('snr_approx')}. "
        f"Low-rank SNR within 3 combined test-set stds of the optimum at "
        f"{int(np.sum(gap <= bars))}/{J} levels (largest gap {gap.max():.3g}). "
        f"Feature SNR (fitted rank-{cfg.feature_rank} subspaces): "
        + "; ".join(f"{c} {vtxt('fsnr_' + c)}" for c in reps)
        + f". Interior peak in feature SNR: {', '.join(peaked) or 'none'}. Probe accuracy: "
        + "; ".join(f"{c} {vtxt('probe_' + c)}" for c in reps)
        + f". Interior peak in probe accuracy: {', '.join(peaked_probe) or 'none'}. "
        f"Largest excess MSE relative to the Bayes MSE over levels: MLP {max_rel['mlp']:.3g}, low-rank "
        f"{max_rel['lowrank']:.3g}, linear {max_rel['linear']:.3g}. MLP certificate: its objective (P1's loss, "
        f"uniform t, on the fixed draws) {mlp_cert['objective']:.5f} vs the Bayes-optimal denoiser's "
        f"{mlp_cert['objective_bayes']:.5f} (relative excess {mlp_cert['relative_excess']:+.3g}). Unimodality uses the std over test sets "
        f"as the error (z = 3). Runtime {times['total_s']:.0f} s (training {times['train_lowrank_s']:.0f} s + "
        f"{times['train_mlp_s']:.0f} s, evaluation {times['eval_s']:.0f} s, feature SNR "
        f"{times['feature_snr_s']:.0f} s, probes {times['probes_s']:.0f} s)."
    )
    if verbose:
        print(summary)
    scalars = {
        "summary": summary, "steps": cfg.steps, "subspace_error": float(rec.error),
        "subspace_frobenius_error": float(rec.frobenius_error),
        "subspace_threshold": float(threshold), "block_errors": [float(b) for b in rec.block_errors],
        "block_match": [int(m) for m in rec.match], "max_principal_angle_deg": max_angles_deg,
        "stacked_span_error": stacked_err, "verdicts": verdicts,
        "snr_lowrank_within_bars": int(np.sum(gap <= bars)), "snr_max_gap": float(gap.max()),
        "max_rel_excess_mse": max_rel,
        "final_loss": {"lowrank": float(np.mean(study["losses"][0][-500:])),
                       "mlp": float(jnp.mean(res_mlp.losses[-500:]))},
        "representations": list(reps), "feature_snr_interior_peak": peaked,
        "probe_interior_peak": peaked_probe,
        "lowrank_recovery": recovery, "lowrank_recipe": {"name": cfg.lowrank_recipe, **dataclasses.asdict(recipe)},
        "mlp_certificate": mlp_cert,
        "mlp": {"width": cfg.mlp_width, "depth": cfg.mlp_depth, "film": cfg.mlp_film,
                "weighting": mlp_noise.weighting, "sigma_data": mlp.sigma_data},
        "runtime": times,
    }
    arrays = {"sigma": sig, "scale": sc, "snr_approx": approx, "bayes_mse": bayes, "kl_posterior": kl,
              "lowrank_bases": U, "loss_lowrank": study["losses"][0],
              "loss_mlp": np.asarray(res_mlp.losses)}
    arrays.update({f"snr_{c}": snr[c] for c in CURVES_SNR_ALL})
    arrays.update({f"fsnr_{c}": fsnr[c] for c in reps})
    arrays.update({f"probe_{c}": probe[c] for c in reps})
    arrays.update({f"excess_mse_{c}": excess[c] for c in CURVES_MSE})
    return Results(scalars=scalars, tables={"fig3_trained": rows}, arrays=arrays)


_STYLE = {"lowrank": ("o-", "low-rank net (trained)"), "optimal": ("k-", "optimal denoiser"),
          "mlp": ("s--", "MLP (trained)"), "linear": ("^:", "linear (Wiener) baseline")}
_REP_STYLE = {"lowrank_h": ("o-", "low-rank net h"), "optimal_out": ("k-", "optimal denoiser outputs"),
              "linear_h": ("^:", "linear baseline h")}


def _rep_style(c):
    if c in _REP_STYLE:
        return _REP_STYLE[c]
    i = int(c.rsplit("_", 1)[1])
    return (["s--", "D--", "v--", "P--", "X--"][(i - 1) % 5], f"MLP hidden layer {i}")


def _log_sigma_axis(ax, ylabel, title, legend=None):
    """Log sigma axis, labels and title; ``legend``: a ``loc`` for the legend inside the axes,
    ``"below"`` for one under the x label (outside the data), None for no legend."""
    ax.set_xscale("log")
    plain_log_ticks(ax)
    ax.set_xlabel(r"noise level $\sigma$")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend == "below":
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False, columnspacing=1.0)
    elif legend is not None:
        ax.legend(loc=legend)


def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt
    res = load_results(results_dir)
    rows = res["tables"]["fig3_trained"]
    reps = res["scalars"]["representations"]
    s = np.array([r["sigma"] for r in rows])
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    paths = []

    def snr_panel(ax):
        for c in CURVES_SNR:
            ax.errorbar(s, col(f"snr_{c}"), yerr=col(f"snr_{c}_std"), fmt=_STYLE[c][0], ms=3, capsize=1.5,
                        label=_STYLE[c][1])
        ax.set_yscale("log")

    def excess_panel(ax):
        for c in CURVES_MSE:
            ax.plot(s, np.maximum(col(f"rel_excess_mse_{c}"), 1e-6), _STYLE[c][0], ms=3, label=_STYLE[c][1])
        ax.axhline(0.1, color="gray", lw=0.8, ls=":")
        ax.set_yscale("log")

    def rep_panel(ax, prefix):
        for c in reps:
            fmt, label = _rep_style(c)
            ax.errorbar(s, col(f"{prefix}_{c}"), yerr=col(f"{prefix}_{c}_std"), fmt=fmt, ms=3, capsize=1.5,
                        label=label)

    with paper_style():
        # The single panels: half the full width (one column), the legend under the axes.
        single = (FULL_WIDTH / 2, 3.4)
        fig, ax = plt.subplots(figsize=single, layout="constrained")
        snr_panel(ax)
        ax.plot(s, col("snr_approx"), "r-.", label="Theorem 1 approximation")
        _log_sigma_axis(ax, "output SNR", "SNR of denoiser outputs", legend="below")
        mark_quick(fig, res)
        paths += save_figure(fig, fig_dir, "fig3_trained_snr")

        fig, ax = plt.subplots(figsize=single, layout="constrained")
        rep_panel(ax, "probe")
        _log_sigma_axis(ax, "linear-probe test accuracy", "linear probe", legend="below")
        mark_quick(fig, res)
        paths += save_figure(fig, fig_dir, "fig3_trained_probe")

        fig, ax = plt.subplots(figsize=single, layout="constrained")
        excess_panel(ax)
        _log_sigma_axis(ax, "excess MSE / Bayes MSE\n(floored at 1e-6)", "excess MSE over the optimal denoiser",
                        legend="below")
        mark_quick(fig, res)
        paths += save_figure(fig, fig_dir, "fig3_trained_excess_mse")

        mlp = res["scalars"].get("mlp", {})
        fig, axes = plt.subplots(2, 2, figsize=(FULL_WIDTH, 5.6), layout="constrained")
        # Legends where they cover no data: (a) and (b) lower left, under the curves; the
        # representations' legend once for (c) and (d), under the figure.
        excess_panel(axes[0, 0])
        _log_sigma_axis(axes[0, 0], "excess MSE / Bayes MSE", "(a) excess MSE per noise level", legend="lower left")
        snr_panel(axes[0, 1])
        lo, hi = axes[0, 1].get_ylim()
        axes[0, 1].set_ylim(lo / 3.0, hi)  # room under the curves for the legend
        _log_sigma_axis(axes[0, 1], "output SNR (true subspaces)", "(b) output SNR", legend="lower left")
        rep_panel(axes[1, 0], "fsnr")
        axes[1, 0].set_yscale("log")
        _log_sigma_axis(axes[1, 0], "feature SNR (fitted rank-5 subspaces)", "(c) feature / hidden-layer SNR")
        rep_panel(axes[1, 1], "probe")
        _log_sigma_axis(axes[1, 1], "linear-probe test accuracy", "(d) linear probe")
        handles, labels = axes[1, 1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False, title="(c) and (d)")
        fig.suptitle(f"networks vs the optimum (MLP width {mlp.get('width')}, depth {mlp.get('depth')}, "
                     f"{'FiLM' if mlp.get('film') else 'concat'}, {mlp.get('weighting')} weighting; "
                     f"{res['scalars']['steps']} steps)")
        mark_quick(fig, res)
        paths += save_figure(fig, fig_dir, "networks_compare")
    return paths


#: the expectation of ``fig3_trained[low-rank SNR = optimal SNR]`` at the default (full) scale:
#: 14/14 levels with the recipe (module docstring); P1's plain recipe misses 5 levels (matched
#: error 0.042 from minibatch noise), so ``--set lowrank_recipe=plain`` measures FAIL there.
SNR_CLAIM_EXPECTED = "PASS"
SNR_CLAIM_REASON = ""
MLP_REASON = (
    "molrg's MLP (width 128, depth 3, FiLM, EDM weighting, P1's 75,000 steps) does not reach the optimum: "
    "its certificate (objective on the fixed draws vs the Bayes-optimal denoiser's, P1's loss) stays above, and its "
    "excess MSE peaks at 0.22x the Bayes MSE near sigma = 0.29 -- an optimisation / capacity shortfall of this "
    "network and trainer (molrg's check of its own MLP), not a claim of P1 failing")


def claims(results: dict) -> list[Claim]:
    """Claims about the trained networks, from the saved results (:func:`molrg.study.load_results`).

    Subspace recovery of the low-rank network, its output SNR against the optimal one, the
    MLP's excess MSE, and the shape (:func:`molrg.metrics.unimodality`, z = 3) of the MLP's
    output SNR and of its hidden layers' feature SNR. Statements name the training scale
    (P1's 75,000 Adam steps, or a reduced run).
    """
    cfg, sc = results["manifest"]["config"], results["scalars"]
    rows = results["tables"]["fig3_trained"]
    steps = sc["steps"]
    scale = (f"{'reduced' if steps < 75_000 else 'P1-scale'} training: {cfg['num_train']} samples, "
             f"{cfg['epochs']} epochs = {steps} Adam steps (P1: 75,000)")
    out = []

    thr = sc["subspace_threshold"]
    rec = sc["lowrank_recovery"]
    recipe = sc["lowrank_recipe"]
    how = (f"molrg's recipe: {recipe['restarts']} random starts x {recipe['steps']} Adam steps at lr "
           f"{recipe['learning_rate']:g}, the least objective kept" if recipe["name"] == "restarts" else
           f"P1's plain training from one random start ({recipe['steps']} steps at lr {recipe['learning_rate']:g})")
    cert0 = {"objective": rec["objective"][0], "objective_truth": rec["objective_truth"],
             "relative_excess": rec["relative_excess"][0], "reached": rec["reached"][0], "rtol": rec["rtol"]}
    out.append(Claim(
        "fig3_trained[subspace recovery]",
        f"the low-rank network trained from random starts ({how}) recovers the class subspaces ({scale})",
        {"matched_error": sc["subspace_error"], "matched_frobenius_error": sc["subspace_frobenius_error"],
         "block_errors": sc["block_errors"], "max_principal_angle_deg": sc["max_principal_angle_deg"],
         "stacked_span_error": sc["stacked_span_error"], "certificate": cert0},
        f"matched error (molrg.subspaces.subspace_error, normalised to [0, 1]) < {thr:g}",
        bool(sc["subspace_error"] < thr), source="P1", expected="PASS"))
    out.append(Claim(
        f"lowrank_recovery_rate[K={cfg['K']}]",
        f"the low-rank network ({how}) recovers the subspaces in at least 15 of 16 seeds in P1's Fig. 3 setting "
        f"(K={cfg['K']}, n={cfg['n']}, d={cfg['d']}, delta={cfg['delta']}; {scale}); "
        f"optimisation / sample-complexity failures split by the certificate (objective within rtol {rec['rtol']:g} "
        f"of the truth-started network's); single random starts before the selection reported beside",
        rec, f"recovered (matched error < {rec['threshold']:g}) in >= 15/16 of the seeds (>= 16 seeds)",
        bool(rec["seeds"] >= 16 and rec["recovered"] >= 15 * rec["seeds"] / 16), source="molrg", expected="PASS"))

    gap = np.array([abs(r["snr_lowrank"] - r["snr_optimal"]) for r in rows])
    bars = np.array([3 * np.hypot(r["snr_lowrank_std"], r["snr_optimal_std"]) for r in rows])
    truth_gap = np.array([abs(r["snr_lowrank_truth"] - r["snr_optimal"]) for r in rows])
    truth_bars = np.array([3 * np.hypot(r["snr_lowrank_truth_std"], r["snr_optimal_std"]) for r in rows])
    out.append(Claim(
        "fig3_trained[low-rank SNR = optimal SNR]",
        f"the trained low-rank network's output SNR matches the optimal denoiser's within error bars "
        f"at every paper timestep ({how}; {scale})",
        {"levels_within": int(np.sum(gap <= bars)), "levels": len(rows),
         "abs_gap": gap.round(4).tolist(), "three_sigma_bar": bars.round(4).tolist(),
         "signed_gap": [round(r["snr_lowrank"] - r["snr_optimal"], 4) for r in rows],
         "truth_started_signed_gap": [round(r["snr_lowrank_truth"] - r["snr_optimal"], 4) for r in rows],
         "truth_started_levels_within": int(np.sum(truth_gap <= truth_bars)),
         "certificate": cert0, "matched_error": sc["subspace_error"],
         "truth_started_matched_error": rec["truth_error"],
         "test_sets": cfg["num_test_sets"], "test_size": cfg["test_size"]},
        "|SNR_net - SNR_opt| <= 3 sqrt(std_net^2 + std_opt^2) (std over test sets) at every level",
        bool(np.all(gap <= bars)), source="P1", expected=SNR_CLAIM_EXPECTED, reason=SNR_CLAIM_REASON))

    rel = np.array([r["rel_excess_mse_mlp"] for r in rows])
    out.append(Claim(
        "fig3_trained[MLP excess MSE small]",
        f"the trained MLP (width {cfg['mlp_width']}, depth {cfg['mlp_depth']}, FiLM={cfg['mlp_film']}, "
        f"{cfg['mlp_weighting']} loss weighting) is near-optimal: excess MSE "
        f"< 10% of the Bayes MSE at every level ({scale})",
        {"rel_excess_mse": rel.round(4).tolist(), "max_rel_excess_mse": float(rel.max()),
         "sigma_at_max": float(rows[int(np.argmax(rel))]["sigma"]), "certificate": sc["mlp_certificate"]},
        "excess / Bayes MSE < 0.1 at every level", bool(np.all(rel < 0.1)),
        source="molrg", expected="FAIL", reason=MLP_REASON))

    v = sc["verdicts"]["snr_mlp"]
    out.append(Claim(
        "fig3_trained[MLP SNR unimodal]",
        f"the trained MLP's output SNR curve over the paper timesteps is unimodal ({scale})",
        {"verdict": v["verdict"], "peak_sigma": float(v["peak_sigma"]), "peak_value": float(v["peak_value"]),
         "optimal_verdict": sc["verdicts"]["snr_optimal"]["verdict"],
         "lowrank_verdict": sc["verdicts"]["snr_lowrank"]["verdict"], "mlp_certificate": sc["mlp_certificate"]},
        "metrics.unimodality verdict 'interior peak' (z = 3, error = std over test sets)",
        v["verdict"] == "interior peak", source="P1", expected="FAIL",
        reason="an optimiser's FAIL, not P1's: the MLP does not reach the optimum (its certificate: objective above "
               "the Bayes-optimal denoiser's on the same draws, excess MSE up to 0.22x the Bayes MSE near "
               "sigma = 0.29, fig3_trained[MLP excess MSE small]); the optimal denoiser's and the certified "
               "low-rank network's SNR curves have the interior peak (verdicts in measured)"))

    # float() on verdict peaks (here and above): an unmeasured curve's NaN peak comes back from
    # results.json as the string "nan".
    layers = [c for c in sc["representations"] if c.startswith("mlp_hidden_")]
    per_layer = {c: sc["verdicts"][f"fsnr_{c}"] for c in layers}
    peaked = [c for c in layers if per_layer[c]["verdict"] == "interior peak"]
    out.append(Claim(
        "fig3_trained[MLP hidden-layer SNR unimodal]",
        f"some hidden layer of the trained MLP has a feature SNR (P1's recipe: rank-{cfg['feature_rank']} class "
        f"subspaces fitted on training features) with an interior peak over the paper timesteps, as the "
        f"optimal denoiser's outputs do ({scale})",
        {"verdicts": {c: per_layer[c]["verdict"] for c in layers},
         "peak_sigma": {c: float(per_layer[c]["peak_sigma"]) for c in layers},
         "peak_value": {c: float(per_layer[c]["peak_value"]) for c in layers},
         "optimal_out_verdict": sc["verdicts"]["fsnr_optimal_out"]["verdict"],
         "linear_h_verdict": sc["verdicts"]["fsnr_linear_h"]["verdict"]},
        "metrics.unimodality verdict 'interior peak' for at least one hidden layer (z = 3)",
        bool(peaked), source="P1", expected="PASS"))
    return out


QUICK = {"num_train": 3000, "epochs": 2, "num_test_sets": 2, "test_size": 500, "probe_train": 500,
         "probe_steps": 50, "lowrank_restarts": 2, "lowrank_steps": 300, "lowrank_decay_steps": 100,
         "recovery_seeds": 2}

EXPERIMENT = Experiment(name="fig3_trained", cost=124, summary="P1 Fig. 3 with trained networks: SNR, feature SNR, probes, excess MSE vs noise",
         config=Fig3TrainedConfig(), run=run, plot=plot, quick=QUICK,
         paper="P1 Fig. 3 (trained low-rank net, MLP and linear baseline vs optimal and Theorem 1)",
         claims=claims, quick_fails={
             name: "2 seeds x 2 starts and a few hundred steps do not train the networks (the "
                   "certificates say so: optimisation failures); the full scale recovers 16/16"
             for name in ("lowrank_recovery_rate[K=3]", "fig3_trained[subspace recovery]",
                          "fig3_trained[low-rank SNR = optimal SNR]",
                          "fig3_trained[MLP hidden-layer SNR unimodal]")})

SWEEPABLES = ()
