"""Memorisation with trained MLPs: does the SNR peak vanish when a trained network memorises?

P1 (docs/theory.md section 7) reports that a diffusion model trained on few samples, or large, or
trained long, memorises its training set, and that its unimodal feature-quality-versus-noise
curve then turns monotone decreasing; it proposes the interior peak as a label-free
early-stopping signal. :mod:`molrg.experiments.memorization` measures the fully memorising
limit exactly (the empirical denoiser). This experiment trains the networks.

Setting: P1's Fig. 3 mixture (K = 3, n = 50, d = 5, delta = 0.2, docs/theory.md section 7), the MLP
denoiser of :mod:`molrg.networks` (tiny-diffusion-like, EDM preconditioned, depth 3) with
``sigma_data`` passed explicitly as the std measured on the training pool, Adam at P1's
learning rate 5e-4, batch 32, P1's DDPM noise (T = 500). For every width W, training-set
size N and seed, the network is trained in ``num_segments`` chained segments of
``segment_steps`` steps (:func:`molrg.training.train_ensemble` resumed from its
parameters, optimiser state and step: identical to one long run), and after every segment
(a checkpoint) it is measured:

* **output SNR** (P1 Def. 1, :func:`molrg.metrics.snr_per_class`) at P1's 14 DDPM
  timesteps (:data:`molrg.schedules.PAPER_TIMESTEPS`) on a fixed test set, and on noised
  training points (training inputs), with delta-method standard errors over the inputs;
  the same noise draws at every checkpoint (paired along training);
* **feature SNR** of the middle hidden layer (P1's recipe, :func:`molrg.metrics.feature_snr`:
  unit-normalised, centred, top-5 class subspaces fitted on the test features), at the
  last checkpoint only by default (``feature_every_checkpoint``);
* the verdict of :func:`molrg.metrics.unimodality` on each model's curve (z = 3 of those
  standard errors) and its **peak gain** ``max_sigma SNR / SNR(sigma_min)`` (1 when the
  maximum is at the smallest noise level) with a delta-method error;
* **memorisation / generalisation** of ``num_samples`` generated samples (DDPM ancestral
  sampler of :mod:`molrg.sampling` with ``sample_steps`` evenly spaced timesteps, the same
  pre-drawn noise for every model): copy fraction (nearest training point closer than 1/3
  of the second nearest), nearest-neighbour distance to the training set relative to that
  of fresh samples of the true mixture (the **NN ratio**: about 1 for a generalising
  model, near 0 for a copying one), distance to the union of the true subspaces, and log
  likelihood under the true mixture noised to ``loglik_sigma`` (the density of the
  ``eta = 0`` mixture itself is singular), each with the value of fresh true samples as
  the reference; and the train/test denoising gap (MSE on training inputs over MSE on
  test inputs, averaged over levels; 1 = no memorisation).

Shapes. The training sets are nested (the first N points of one pool of ``max(N_values)``
points drawn class-stratified, so every N has N/K points per class up to rounding) and
every set is tiled to ``max(N_values)`` rows (each N must divide it; powers of two do).
An epoch over the tiled set visits each of the N points ``max(N)/N`` times in random order,
the same minibatch distribution as epochs over the N points, and every N then has the same
shapes, so one compiled training program serves every N of a width. ``sigma_data`` is a
static field of :class:`~molrg.networks.MLPDenoiser`, so it is the std measured on the whole
pool (not per N, which would recompile per N; the per-N estimates differ only by sampling
error). ``num_seeds`` networks per (W, N) are trained as one vmapped ensemble (different
initialisation, minibatch order and noise; the same training set).

Scale. The default (width 256, N = 16 and 4096, 1 seed, 5 checkpoints x 2,000 steps
at batch 256 and learning rate 2e-3) is the smallest run that shows both ends of the story
(measured: N = 16 reaches copy fraction 0.54 at step 10,000; N = 4096 has an interior peak
from step 3,000 on; width 64 underfits at both N with these steps, so it is left to the
full scale); the claims (:func:`claims`) are computed from this run's saved results. It
departs from P1's optimiser settings (batch 32, lr 5e-4) because those fit too slowly for
this budget: measured, 6,000 steps at batch 32 / lr 5e-4 left every model (W = 64, 256;
N = 16..4096) far off the data's support (mean distance to the subspaces 1.3-2.1 vs 0.62
for true samples), with no copies and monotone curves; lr 5e-3 at batch 256 fitted worse
than 2e-3. Full scale, N = 2^4..2^14, three widths, P1's training length in steps (75,000),
checkpoints every 5,000::

    molrg run mlp_memorization --set N_values=16,32,64,128,256,512,1024,2048,4096,8192,16384 \\
        --set widths=64,256,1024 --set num_seeds=3 --set segment_steps=5000 --set num_segments=15

(not run: extrapolated from the measured per-step cost, see the README).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import molrg
from molrg import metrics
from molrg.sample_quality import distance_to_union, mixture_log_likelihood, nearest_neighbors
from molrg.networks import MLPDenoiser
from molrg.study import Claim, Experiment, Progress, Results, load_results, save_figure
from molrg.study.plotting import FULL_WIDTH, mark_quick, paper_style
from molrg.sampling import ddpm_ancestral, default_timesteps, draw_noises
from molrg.schedules import PAPER_TIMESTEPS, DDPMLinear, paper_timestep_sigmas
from molrg.training import train_ensemble

Array = jax.Array

#: A model memorises when at least this fraction of its samples copy a training point; it
#: generalises when at most ``GENERALISING_COPY_FRACTION`` do *and* its samples lie on the
#: data's support about as well as true samples: mean distance to the union of subspaces at
#: most ``SUPPORT_FACTOR`` times that of fresh true samples (otherwise it is "underfit").
MEMORISING_COPY_FRACTION = 0.5
GENERALISING_COPY_FRACTION = 0.05
SUPPORT_FACTOR = 1.5


@dataclasses.dataclass(frozen=True)
class MLPMemorizationConfig:
    """Config of the ``mlp_memorization`` experiment (defaults: 2-core scale; see module doc).

    Attributes:
      n, K, d, delta: P1's Fig. 3 mixture (50, 3, 5, 0.2).
      N_values: training-set sizes; increasing, each dividing the largest (paper-scale
        study: 2^4..2^14).
      widths: MLP hidden widths (default 256 only, the width that both memorises at
        N = 16 and generalises at N = 4096 in 10,000 steps; width 64 underfits at
        both; full scale: 64, 256, 1024).
      depth: MLP depth (3, as in fig3_trained).
      num_seeds: networks per (width, N), trained as one vmapped ensemble.
      segment_steps, num_segments: checkpoints every ``segment_steps`` Adam steps, for
        ``segment_steps * num_segments`` steps in all (P1: 75,000).
      batch_size, learning_rate: 256 and 2e-3 by default (P1: 32, tiny-diffusion's default,
        and 5e-4: ``--set batch_size=32 --set learning_rate=5e-4``).
      num_test: test inputs per noise level for the SNR curves (also the number of noised
        training inputs).
      num_samples: generated samples per model and checkpoint.
      sample_steps: DDPM ancestral steps (evenly spaced timesteps of T = 500).
      feature_every_checkpoint: hidden-layer feature SNR at every checkpoint (else only
        at the last; it costs an eigendecomposition of a width x width Gram per class and level).
      loglik_sigma: noise level of the log-likelihood under the true mixture.
      z: significance multiplier of the unimodality verdicts.
      seed: mixture, pool, test set and sampler noise; train_seed: first ensemble seed.
    """

    n: int = 50
    K: int = 3
    d: int = 5
    delta: float = 0.2
    N_values: tuple[int, ...] = (16, 4096)
    widths: tuple[int, ...] = (256,)
    depth: int = 3
    num_seeds: int = 1
    segment_steps: int = 2000
    num_segments: int = 5
    batch_size: int = 256  # P1: 32; see the module doc (Scale)
    learning_rate: float = 2e-3  # P1: 5e-4
    num_test: int = 900
    num_samples: int = 256
    sample_steps: int = 100
    feature_every_checkpoint: bool = False
    loglik_sigma: float = 0.1
    z: float = 3.0
    seed: int = 0
    train_seed: int = 0

    @property
    def steps(self) -> int:
        return self.segment_steps * self.num_segments

    def validate(self):
        for f in ("n", "K", "d", "depth", "num_seeds", "segment_steps", "num_segments", "batch_size",
                  "num_test", "num_samples", "sample_steps"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{f}: must be a positive integer; got {v!r}")
        if self.K < 2:
            raise ValueError(f"K: the SNR needs K >= 2 classes; got {self.K}")
        if self.K * self.d > self.n:
            raise ValueError(f"d: need K * d <= n; got {self.K} * {self.d} > {self.n}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta: must lie in (0, 1); got {self.delta}")
        if not self.N_values or any(isinstance(N, bool) or N < 2 for N in self.N_values):
            raise ValueError(f"N_values: need integers >= 2; got {self.N_values}")
        if list(self.N_values) != sorted(set(self.N_values)):
            raise ValueError(f"N_values: must be strictly increasing; got {self.N_values}")
        big = max(self.N_values)
        if any(big % N for N in self.N_values):
            raise ValueError(f"N_values: each must divide the largest ({big}) so the sets tile to one "
                             f"shape; got {self.N_values}")
        if min(self.N_values) < self.K:
            raise ValueError(f"N_values: need N >= K = {self.K} (a point of every class)")
        if self.batch_size > big:
            raise ValueError(f"batch_size: must be <= max(N_values) = {big}; got {self.batch_size}")
        if not self.widths or any(isinstance(w, bool) or w < 1 for w in self.widths):
            raise ValueError(f"widths: need positive integers; got {self.widths}")
        if len(set(self.widths)) != len(self.widths):
            raise ValueError(f"widths: must not repeat; got {self.widths}")
        if self.num_test < 2 * self.K or self.num_samples < 2:
            raise ValueError(f"num_test: need >= 2K points (errors per class); num_samples >= 2; got "
                             f"{self.num_test}, {self.num_samples}")
        if self.sample_steps > DDPMLinear().T:
            raise ValueError(f"sample_steps: must be <= T = {DDPMLinear().T}; got {self.sample_steps}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate: must be > 0; got {self.learning_rate}")
        if not (math.isfinite(self.loglik_sigma) and self.loglik_sigma > 0):
            raise ValueError(f"loglik_sigma: must be > 0; got {self.loglik_sigma}")
        if not (math.isfinite(self.z) and self.z > 0):
            raise ValueError(f"z: must be > 0; got {self.z}")
        for f in ("seed", "train_seed"):
            v = getattr(self, f)
            if not 0 <= v < 2**31 - self.num_seeds:
                raise ValueError(f"{f}: must lie in [0, 2^31 - num_seeds); got {v}")


# ------------------------------------------------------------------------------------------
# Data.
# ------------------------------------------------------------------------------------------
def stratified_pool(key, mix, size: int):
    """``size`` samples ordered round-robin by class, so the first N hold ~N/K of each class.

    Draws ``2 size + 64 K`` samples and keeps, per class, its first ``ceil(size / K)`` in
    draw order, interleaved class 0, 1, ..., K-1, 0, ... (each class's points are i.i.d.
    from that class; the order only stratifies the prefixes).

    Returns:
      ``(x (size, n), labels (size,))``.
    """
    K = mix.K
    per = -(-size // K)
    x, lab = mix.sample(key, 2 * size + 64 * K)
    x, lab = np.asarray(x), np.asarray(lab)
    rows = []
    for k in range(K):
        idx = np.flatnonzero(lab == k)
        if idx.size < per:  # ~impossible (binomial tail); say so rather than return a short pool
            raise RuntimeError(f"stratified_pool: class {k} has {idx.size} < {per} draws")
        rows.append(idx[:per])
    order = np.stack(rows, axis=1).reshape(-1)[:size]
    return jnp.asarray(x[order]), jnp.asarray(lab[order].astype(np.int32))


def tiled(x, N: int, size: int):
    """The first ``N`` rows of ``x`` repeated to ``size`` rows (``N`` divides ``size``)."""
    return jnp.tile(x[:N], (size // N, 1))


# ------------------------------------------------------------------------------------------
# Compiled measurements (vmapped over the ensemble axis E and the noise levels L).
# ------------------------------------------------------------------------------------------
def _member_outputs(net, params, x0, eps, sigmas, scales, layer):
    """Outputs ``(L, M, n)`` and hidden features ``(L, M, W)`` of one network."""
    def level(e, s, c):
        out, feats = net.apply(params, c * (x0 + s * e), s, c, return_features=True)
        return out, feats[layer]
    return jax.vmap(level)(eps, sigmas, scales)


@functools.partial(jax.jit, static_argnames=("net", "layer", "features"))
def curves(net, params, mix, x0, labels, x0_train, labels_train, eps, sigmas, scales, *,
           layer: str = "hidden_2", features: bool = False):
    """SNR curves of an ensemble on test and training inputs, MSEs, feature SNR.

    Args:
      net: the network (static).
      params: ensemble parameters with a leading axis E.
      mix: the true mixture (subspaces for the SNR).
      x0, labels: ``(M, n)`` test points and classes.
      x0_train, labels_train: ``(M, n)`` training points (repeated) and classes.
      eps: ``(L, M, n)`` noise, the same for both input sets.
      sigmas, scales: ``(L,)`` noise levels.
      layer: hidden layer for the feature SNR.
      features: also the feature SNR (one batched eigh of (E L K) Gram matrices).

    Returns:
      A dict of ``(E, L)`` arrays: ``snr_test``, ``snr_test_stderr``, ``snr_train``,
      ``snr_train_stderr``, ``mse_test``, ``mse_train`` and, with ``features``,
      ``feature_snr``, ``feature_snr_stderr``.
    """
    def member(p):
        out_te, h_te = _member_outputs(net, p, x0, eps, sigmas, scales, layer)
        out_tr, _ = _member_outputs(net, p, x0_train, eps, sigmas, scales, layer)
        st_te = jax.vmap(lambda o: metrics.snr_per_class(o, labels, mix))(out_te)
        st_tr = jax.vmap(lambda o: metrics.snr_per_class(o, labels_train, mix))(out_tr)
        res = {"snr_test": st_te.snr, "snr_test_stderr": st_te.snr_stderr,
               "snr_train": st_tr.snr, "snr_train_stderr": st_tr.snr_stderr,
               "mse_test": jnp.mean(jnp.sum(jnp.square(out_te - x0[None]), -1), -1),
               "mse_train": jnp.mean(jnp.sum(jnp.square(out_tr - x0_train[None]), -1), -1)}
        if features:
            fs = jax.vmap(lambda h: metrics.feature_snr_per_class(h, labels, num_classes=mix.K))(h_te)
            res["feature_snr"], res["feature_snr_stderr"] = fs.snr, fs.snr_stderr
        return res
    return jax.vmap(member)(params)


@functools.partial(jax.jit, static_argnames=("net", "num_steps"))
def generate(net, params, x_T, noises, *, num_steps: int):
    """DDPM ancestral samples ``(E, S, n)`` of every ensemble member (shared noise)."""
    ts = default_timesteps(DDPMLinear(), num_steps)

    def member(p):
        return ddpm_ancestral(lambda x, s, c: net.apply(p, x, s, c), x_T, noises, timesteps=ts)
    return jax.vmap(member)(params)


def memorisation_measures(samples, train, mix, *, reference, loglik_sigma: float) -> dict:
    """Per-model memorisation / generalisation measures of generated samples.

    Args:
      samples: ``(E, S, n)`` generated samples.
      train: ``(N, n)`` the training set.
      mix: the true mixture.
      reference: ``(S', n)`` fresh samples of the true mixture (the generalising reference).
      loglik_sigma: noise level of the log-likelihood.

    Returns:
      A dict of ``(E,)`` arrays: ``copy_fraction``, ``nn_distance`` (mean), ``nn_ratio``
      (over the reference's mean), ``union_distance`` (mean), ``loglik`` (mean), and the
      reference scalars ``nn_distance_ref``, ``union_distance_ref``, ``loglik_ref``.
    """
    nn = nearest_neighbors(samples, train)
    ref = nearest_neighbors(reference, train)
    copies = (nn.distance < nn.second_distance / 3.0).astype(samples.dtype)
    nn_ref = float(jnp.mean(ref.distance))
    return {
        "copy_fraction": np.asarray(jnp.mean(copies, -1)),
        "nn_distance": np.asarray(jnp.mean(nn.distance, -1)),
        "nn_ratio": np.asarray(jnp.mean(nn.distance, -1)) / nn_ref,
        "union_distance": np.asarray(jnp.mean(distance_to_union(samples, mix), -1)),
        "loglik": np.asarray(jnp.mean(mixture_log_likelihood(samples, mix, sigma=loglik_sigma), -1)),
        "nn_distance_ref": nn_ref,
        "union_distance_ref": float(jnp.mean(distance_to_union(reference, mix))),
        "loglik_ref": float(jnp.mean(mixture_log_likelihood(reference, mix, sigma=loglik_sigma))),
    }


def curve_verdict(sigmas, y, err, *, z: float = 3.0) -> dict:
    """Unimodality verdict and peak gain ``y_max / y[0]`` (delta-method error) of one curve."""
    y, err = np.asarray(y, float), np.asarray(err, float)
    u = metrics.unimodality(sigmas, y, err, z=z)
    p = u.peak_index
    gain = y[p] / y[0]
    gain_se = 0.0 if p == 0 else float(gain * np.hypot(err[p] / y[p], err[0] / y[0]))
    return {"verdict": u.verdict, "peak_sigma": u.peak_x, "peak_timestep": int(PAPER_TIMESTEPS[p]),
            "peak_value": u.peak_value, "peak_gain": float(gain), "peak_gain_stderr": gain_se}


def exact_curve(mix, x0, labels, eps, sigmas, scales) -> tuple[np.ndarray, np.ndarray]:
    """SNR and its standard error of the exact denoiser :func:`molrg.denoise` at each level."""
    @jax.jit
    def one(e, s, c):
        st = metrics.snr_per_class(molrg.denoise(mix, c * (x0 + s * e), s, c), labels, mix)
        return st.snr, st.snr_stderr
    out = [one(eps[j], sigmas[j], scales[j]) for j in range(len(sigmas))]
    return np.asarray([float(a) for a, _ in out]), np.asarray([float(b) for _, b in out])


# ------------------------------------------------------------------------------------------
# The experiment.
# ------------------------------------------------------------------------------------------
def run(cfg: MLPMemorizationConfig, verbose: bool = True) -> Results:
    """Trains and measures every model of ``cfg`` (see the module doc).

    Returns:
      Results with tables ``curves`` (one row per model, checkpoint and level), ``models``
      (one row per model and checkpoint; ``final`` marks the last) and ``exact``.
    """
    cfg.validate()
    t_start = time.perf_counter()
    k_mix, k_pool, k_test, k_eps, k_ref, k_samp = jax.random.split(jax.random.key(cfg.seed), 6)
    mix = molrg.paper_molrg(k_mix, n=cfg.n, K=cfg.K, d=cfg.d, delta=cfg.delta)
    big = max(cfg.N_values)
    pool, pool_labels = stratified_pool(k_pool, mix, big)
    dtype = pool.dtype
    sigma_data = float(jnp.std(pool))  # per-coordinate std of the whole pool (module doc)
    x0, labels = mix.sample(k_test, cfg.num_test)
    reference, _ = mix.sample(k_ref, cfg.num_samples)
    sig_np, sc_np = paper_timestep_sigmas()
    L = len(sig_np)
    sigmas, scales = jnp.asarray(sig_np, dtype), jnp.asarray(sc_np, dtype)
    eps = jax.random.normal(k_eps, (L * cfg.num_test * cfg.n,), dtype).reshape(L, cfg.num_test, cfg.n)
    x_T, noises = draw_noises(k_samp, cfg.num_samples, cfg.n, cfg.sample_steps, dtype=dtype)
    snr_exact, snr_exact_se = exact_curve(mix, x0, labels, eps, sigmas, scales)
    exact_v = curve_verdict(sig_np, snr_exact, snr_exact_se, z=cfg.z)
    layer = f"hidden_{(cfg.depth + 1) // 2}"
    seeds = np.arange(cfg.train_seed, cfg.train_seed + cfg.num_seeds)
    if verbose:
        print(f"  exact denoiser: {exact_v['verdict']}, peak gain {exact_v['peak_gain']:.3f} at sigma "
              f"{exact_v['peak_sigma']:.3g}; sigma_data = {sigma_data:.4f}; {len(cfg.widths)} widths x "
              f"{len(cfg.N_values)} N x {cfg.num_seeds} seeds x {cfg.steps} steps", flush=True)

    curve_rows, model_rows, times = [], [], {}
    prog = Progress(len(cfg.widths) * len(cfg.N_values) * cfg.num_segments, "checkpoints", enabled=verbose)
    for W in cfg.widths:
        net = MLPDenoiser(cfg.n, W, cfg.depth, sigma_data=sigma_data)
        t_train = t_eval = 0.0
        for N in cfg.N_values:
            train_set, train_labels = pool[:N], pool_labels[:N]
            data = tiled(pool, N, big)
            reps = -(-cfg.num_test // N)
            x0_tr = jnp.tile(train_set, (reps, 1))[:cfg.num_test]
            lab_tr = jnp.tile(train_labels, reps)[:cfg.num_test]
            params = opt_state = None
            step = 0
            for seg in range(cfg.num_segments):
                t0 = time.perf_counter()
                res = train_ensemble(net, data, seeds=seeds, steps=cfg.segment_steps,
                                     batch_size=cfg.batch_size,
                                     learning_rates=cfg.learning_rate if params is None else None,
                                     params=params, opt_state=opt_state, start_step=step)
                params, opt_state, step = res.params, res.opt_state, res.step
                loss = np.asarray(res.losses)[:, -max(1, cfg.segment_steps // 10):].mean(-1)
                t1 = time.perf_counter()
                t_train += t1 - t0
                last = seg == cfg.num_segments - 1
                feats = cfg.feature_every_checkpoint or last
                cv = {k: np.asarray(v) for k, v in curves(
                    net, params, mix, x0, labels, x0_tr, lab_tr, eps, sigmas, scales,
                    layer=layer, features=feats).items()}
                samples = generate(net, params, x_T, noises, num_steps=cfg.sample_steps)
                mm = memorisation_measures(samples, train_set, mix, reference=reference,
                                           loglik_sigma=cfg.loglik_sigma)
                t_eval += time.perf_counter() - t1
                for e, s in enumerate(seeds):
                    base = {"width": W, "N": N, "seed": int(s), "step": step, "epochs": step * cfg.batch_size / N}
                    for j in range(L):
                        row = dict(base, timestep=int(PAPER_TIMESTEPS[j]), sigma=float(sig_np[j]))
                        for k in ("snr_test", "snr_test_stderr", "snr_train", "snr_train_stderr",
                                  "mse_test", "mse_train"):
                            row[k] = float(cv[k][e, j])
                        row["feature_snr"] = float(cv["feature_snr"][e, j]) if feats else float("nan")
                        row["feature_snr_stderr"] = (float(cv["feature_snr_stderr"][e, j]) if feats
                                                     else float("nan"))
                        curve_rows.append(row)
                    row = dict(base, final=last, train_loss=float(loss[e]))
                    for inputs in ("test", "train"):
                        v = curve_verdict(sig_np, cv[f"snr_{inputs}"][e], cv[f"snr_{inputs}_stderr"][e], z=cfg.z)
                        row.update({f"{k}_{inputs}": val for k, val in v.items()})
                    if feats:
                        v = curve_verdict(sig_np, cv["feature_snr"][e], cv["feature_snr_stderr"][e], z=cfg.z)
                        row.update({f"{k}_feature": val for k, val in v.items()})
                    row["mse_gap"] = float(np.mean(cv["mse_train"][e] / cv["mse_test"][e]))
                    for k in ("copy_fraction", "nn_distance", "nn_ratio", "union_distance", "loglik"):
                        row[k] = float(mm[k][e])
                    for k in ("nn_distance_ref", "union_distance_ref", "loglik_ref"):
                        row[k] = mm[k]
                    model_rows.append(row)
                prog.update(1, note=f"W={W} N={N} step {step}")
        times[f"train_W{W}_s"] = t_train
        times[f"eval_W{W}_s"] = t_eval
    times["total_s"] = time.perf_counter() - t_start

    exact_rows = [{"timestep": int(PAPER_TIMESTEPS[j]), "sigma": float(sig_np[j]), "snr_exact": float(snr_exact[j]),
                   "snr_exact_stderr": float(snr_exact_se[j])} for j in range(L)]
    summ = summarise(model_rows)
    scalars = {"sigma_data": sigma_data, "exact": exact_v, "steps": cfg.steps, "seconds": times,
               "groups": summ, "summary": _summary_text(cfg, exact_v, summ, times)}
    if verbose:
        print(scalars["summary"], flush=True)
    return Results(scalars=scalars, tables={"curves": curve_rows, "models": model_rows, "exact": exact_rows})


def classify(copy_fraction: float, union_distance: float, union_distance_ref: float) -> str:
    """``"memorising"``, ``"generalising"``, ``"underfit"`` or ``"intermediate"``.

    By the copy fraction and the samples' mean distance to the union of subspaces relative
    to fresh true samples' (thresholds above, fixed before measuring).
    """
    if copy_fraction >= MEMORISING_COPY_FRACTION:
        return "memorising"
    if copy_fraction <= GENERALISING_COPY_FRACTION:
        return "generalising" if union_distance <= SUPPORT_FACTOR * union_distance_ref else "underfit"
    return "intermediate"


def group_of(r) -> str:
    """:func:`classify` of a ``models`` table row."""
    return classify(r["copy_fraction"], r["union_distance"], r["union_distance_ref"])


def summarise(model_rows) -> dict:
    """Verdict counts of the final checkpoints by memorisation class (test-input output SNR)."""
    out = {}
    for group in ("memorising", "intermediate", "underfit", "generalising"):
        rows = [r for r in model_rows if r["final"] and group_of(r) == group]
        counts: dict = {}
        for r in rows:
            counts[r["verdict_test"]] = counts.get(r["verdict_test"], 0) + 1
        out[group] = {"models": len(rows), "verdicts_test": counts,
                      "cells": sorted({(int(r["width"]), int(r["N"])) for r in rows})}
    return out


def _summary_text(cfg, exact_v, summ, times) -> str:
    parts = []
    for g, s in summ.items():
        parts.append(f"{g}: {s['models']} models, verdicts {s['verdicts_test'] or '{}'}")
    return (f"Trained MLPs on P1's Fig. 3 mixture (K={cfg.K}, n={cfg.n}, d={cfg.d}, delta={cfg.delta}), "
            f"widths {list(cfg.widths)}, depth {cfg.depth}, N in {list(cfg.N_values)}, {cfg.num_seeds} seeds, "
            f"{cfg.steps} Adam steps (lr {cfg.learning_rate}, batch {cfg.batch_size}), checkpoints every "
            f"{cfg.segment_steps}. Exact denoiser on the same inputs: {exact_v['verdict']} (peak gain "
            f"{exact_v['peak_gain']:.3f} at sigma {exact_v['peak_sigma']:.3g}). Final checkpoints by copy "
            f"fraction (memorising >= {MEMORISING_COPY_FRACTION}; generalising <= {GENERALISING_COPY_FRACTION} "
            f"with mean distance to the subspaces <= {SUPPORT_FACTOR}x that of true samples, else underfit; "
            f"output-SNR verdicts on test inputs, z = {cfg.z}): " + "; ".join(parts)
            + f". Runtime {times['total_s']:.0f} s.")


# ------------------------------------------------------------------------------------------
# Figures (from saved results).
# ------------------------------------------------------------------------------------------
_MARKERS = "osD^v<>"


def _panels(num: int, height: float = 2.5):
    """A grid of ``num`` panels, at most three a row, at most :data:`FULL_WIDTH` wide."""
    import matplotlib.pyplot as plt

    cols = min(num, 3)
    rows = -(-num // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(min(FULL_WIDTH, 0.6 + 2.3 * cols), height * rows), squeeze=False)
    for ax in axes.flat[num:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:num])


def _measured_N_axis(ax, Ns) -> None:
    """Log-2 axis ticked at the measured N only: markers, no lines, so nothing suggests values
    between measured training-set sizes."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log", base=2)
    ax.set_xticks(Ns, [str(N) for N in Ns])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(Ns) / 2, max(Ns) * 2)


def _legend_below(fig, ax, **kwargs) -> None:
    """The legend of ``ax`` under the whole figure, centred on ``ax`` (after the layout is
    done): below every panel's axis labels, so it covers neither data nor labels."""
    box = ax.get_position()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5 * (box.x0 + box.x1), 0.0), bbox_transform=fig.transFigure,
              frameon=False, **kwargs)


def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    res = load_results(results_dir)
    cfg = res["manifest"]["config"]
    models = res["tables"]["models"]
    curves_t = res["tables"]["curves"]
    exact = sorted(res["tables"]["exact"], key=lambda r: r["sigma"])
    widths = sorted({int(r["width"]) for r in models})
    Ns = sorted({int(r["N"]) for r in models})
    final = [r for r in models if str(r["final"]) in ("True", "1", "1.0")]
    cmap = plt.get_cmap("viridis")
    colour = lambda N: cmap(0.85 * Ns.index(N) / max(len(Ns) - 1, 1))  # noqa: E731  (no pale yellow)
    marker = lambda i: _MARKERS[i % len(_MARKERS)]  # noqa: E731
    N_handles = [Line2D([], [], ls="none", marker="o", color=colour(N), label=f"N = {N}") for N in Ns]
    W_handles = [Line2D([], [], ls="none", marker=marker(i), color="0.4", label=f"width {W}")
                 for i, W in enumerate(widths)]
    paths = []

    with paper_style():
        # Figure 1: verdict and peak gain against the generalisation measure and N.
        fig, axes = plt.subplots(1, 3, figsize=(FULL_WIDTH, 2.5))
        ax = axes[0]
        for i, W in enumerate(widths):
            for r in (r for r in final if int(r["width"]) == W):
                peak = r["verdict_test"] == "interior peak"
                ax.errorbar(r["nn_ratio"], r["peak_gain_test"], yerr=r["peak_gain_stderr_test"], fmt="none",
                            ecolor="0.7", lw=0.8)
                ax.scatter(r["nn_ratio"], r["peak_gain_test"], marker=marker(i), s=25,
                           facecolor=colour(int(r["N"])) if peak else "none", edgecolor=colour(int(r["N"])))
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set_xlabel("NN ratio\n(1: generalising, 0: copying)")
        ax.set_ylabel("peak gain\nmax SNR / SNR($\\sigma_{min}$)")
        ax.set_title("final models (z = 3)")
        fill = [Line2D([], [], ls="none", marker="o", color="0.4", label="interior peak"),
                Line2D([], [], ls="none", marker="o", mfc="none", color="0.4", label="no peak")]
        ax = axes[1]
        for i, W in enumerate(widths):
            for key, shift, filled in (("test", 0.9, True), ("train", 1.1, False)):
                xs, ys, es = [], [], []
                for N in Ns:
                    sel = [r for r in final if int(r["width"]) == W and int(r["N"]) == N]
                    g = np.array([r[f"peak_gain_{key}"] for r in sel])
                    xs.append(N * shift)  # side by side at each measured N
                    ys.append(g.mean())
                    es.append(g.std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else 0.0)
                ax.errorbar(xs, ys, yerr=es, ls="none", marker=marker(i), color="tab:blue" if filled else "tab:orange",
                            mfc=None if filled else "none", capsize=1.5, label=f"width {W}, {key} inputs")
            cf = [np.mean([r["copy_fraction"] for r in final if int(r["width"]) == W and int(r["N"]) == N])
                  for N in Ns]
            axes[2].plot(np.array(Ns) * 0.9, cf, ls="none", marker=marker(i), color="tab:blue",
                         label=f"copy fraction, width {W}")
            nr = [np.mean([r["nn_ratio"] for r in final if int(r["width"]) == W and int(r["N"]) == N]) for N in Ns]
            axes[2].plot(np.array(Ns) * 1.1, nr, ls="none", marker=marker(i), color="tab:orange", mfc="none",
                         label=f"NN ratio, width {W}")
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.axhline(float(res["scalars"]["exact"]["peak_gain"]), color="k", lw=1.0, ls="--", label="exact denoiser")
        _measured_N_axis(ax, Ns)
        ax.set_xlabel("training set size N")
        ax.set_ylabel("peak gain (mean over seeds)")
        ax.set_title(f"peak gain at step {int(cfg['segment_steps']) * int(cfg['num_segments'])}")
        _measured_N_axis(axes[2], Ns)
        axes[2].set_xlabel("training set size N")
        axes[2].set_ylabel("memorisation measures")
        axes[2].set_ylim(-0.05, max(1.05, axes[2].get_ylim()[1]))
        axes[2].set_title("generated samples")
        fig.tight_layout()
        _legend_below(fig, axes[0], handles=N_handles + W_handles + fill, ncol=2)
        _legend_below(fig, axes[1])
        _legend_below(fig, axes[2])
        mark_quick(fig, res)
        paths += save_figure(fig, fig_dir, "mlp_memorization")

        # Figure 2: SNR curves at the last checkpoint, seed mean, one panel per width.
        fig, axes = _panels(len(widths), 2.6)
        last_step = max(int(r["step"]) for r in curves_t)
        for ax, W in zip(axes, widths):
            for N in Ns:
                sel = [r for r in curves_t
                       if int(r["width"]) == W and int(r["N"]) == N and int(r["step"]) == last_step]
                sig = sorted({r["sigma"] for r in sel})
                m = [np.mean([r["snr_test"] for r in sel if r["sigma"] == s]) for s in sig]
                ax.plot(sig, m, marker=".", color=colour(N), label=f"N = {N}")
            ax.plot([r["sigma"] for r in exact], [r["snr_exact"] for r in exact], "k--", lw=1.5, label="exact")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(r"noise level $\sigma$ (P1 timesteps)")
            ax.set_ylabel("output SNR, test inputs")
            ax.set_title(f"MLP width {W}, step {last_step}, seed mean")
            ax.legend()
        fig.tight_layout()
        mark_quick(fig, res)
        paths += save_figure(fig, fig_dir, "mlp_memorization_curves")

        # Figure 3: the peak over training against memorisation (the early-stopping signal).
        fig, axes = _panels(len(widths) + 1, 2.6)
        for ax, W in zip(axes, widths):
            ax2 = ax.twinx()
            for N in Ns:
                sel = [r for r in models if int(r["width"]) == W and int(r["N"]) == N]
                steps = sorted({int(r["step"]) for r in sel})
                g = [np.mean([r["peak_gain_test"] for r in sel if int(r["step"]) == s]) for s in steps]
                c = [np.mean([r["copy_fraction"] for r in sel if int(r["step"]) == s]) for s in steps]
                ax.plot(steps, g, marker="o", color=colour(N), label=f"N = {N}")
                ax2.plot(steps, c, marker="x", ls=":", color=colour(N))
            ax.axhline(1.0, color="k", lw=0.8, ls=":")
            ax.set_xlabel("training step")
            ax.set_ylabel("peak gain (solid, o)")
            ax2.set_ylabel("copy fraction (dotted, x)")
            ax2.set_ylim(-0.03, 1.03)
            ax.set_title(f"width {W}: peak gain and copying")
            ax.legend(loc="best")
        ax = axes[-1]
        for i, W in enumerate(widths):
            for N in Ns:
                sel = sorted((r for r in models if int(r["width"]) == W and int(r["N"]) == N),
                             key=lambda r: (r["seed"], r["step"]))
                ax.scatter([r["copy_fraction"] for r in sel], [r["peak_gain_test"] for r in sel],
                           marker=marker(i), color=colour(N), s=12, alpha=0.8)
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set_xlabel("copy fraction")
        ax.set_ylabel("peak gain")
        ax.set_title("every checkpoint")
        ax.legend(handles=N_handles + W_handles, loc="best")
        fig.tight_layout()
        mark_quick(fig, res)
        paths += save_figure(fig, fig_dir, "mlp_memorization_training")
    return paths


# ------------------------------------------------------------------------------------------
# Claims (from saved results).
# ------------------------------------------------------------------------------------------
def claims(results: dict) -> list[Claim]:
    """P1's memorisation story for trained MLPs, from the saved results.

    ``mlp_memorization_shape[memorising]``: every memorising final model (:func:`group_of`:
    copy fraction >= 1/2) has no interior peak in its output-SNR curve on test inputs;
    ``[generalising]``: every generalising one (no copies, samples on the support) has one.
    Verdicts are the run's :func:`molrg.metrics.unimodality` with z = 3 standard errors over
    the test inputs; the thresholds were fixed before measuring. A group with no model is a
    FAIL (nothing supports the claim), reported with the numbers of every model.
    """
    cfg = results["manifest"]["config"]
    final = [r for r in results["tables"]["models"] if r["final"]]
    # The CSV gives every number back as a float: width, N and seed are integers.
    per_model = [f"W{int(r['width'])}/N{int(r['N'])}/s{int(r['seed'])}: copy {r['copy_fraction']:.2f}, NN ratio "
                 f"{r['nn_ratio']:.2f}, union dist {r['union_distance']:.2f} (ref "
                 f"{r['union_distance_ref']:.2f}) -> {group_of(r)}; "
                 f"{r['verdict_test']}, gain {r['peak_gain_test']:.3f}+-{r['peak_gain_stderr_test']:.3f}"
                 for r in final]
    setting = {"steps": results["scalars"]["steps"], "lr": cfg["learning_rate"], "batch": cfg["batch_size"],
               "widths": list(cfg["widths"]), "N": list(cfg["N_values"]), "seeds": cfg["num_seeds"],
               "exact_denoiser": results["scalars"]["exact"]["verdict"]}
    out = []
    for group, want, statement in (
            ("memorising", False, "memorising MLPs (copy fraction >= 1/2) have no interior SNR peak"),
            ("generalising", True, "generalising MLPs (no copies, samples on the support) have an "
                                   "interior SNR peak")):
        rows = [r for r in final if group_of(r) == group]
        hits = [(r["verdict_test"] == "interior peak") == want for r in rows]
        out.append(Claim(
            f"mlp_memorization_shape[{group}]",
            f"P1: {statement} (trained in P1's Fig. 3 setting; output SNR on test inputs)",
            {"models_in_group": len(rows), "agreeing": int(sum(hits)), **setting, "models": per_model},
            "metrics.unimodality with z = 3 test-input standard errors per model, 1% relative floor; "
            "every model of the group must agree, and the group must be non-empty",
            bool(rows) and all(hits), source="P1", expected="PASS"))
    return out


QUICK = {"N_values": "16,256", "widths": "32", "num_seeds": 2, "segment_steps": 100, "num_segments": 2, "batch_size": 32,
         "num_test": 150, "num_samples": 64, "sample_steps": 20}

EXPERIMENT = Experiment(name="mlp_memorization", cost=48,
         summary="trained MLPs vs N, width, training length: SNR peak against copying of training points",
         config=MLPMemorizationConfig(), run=run, plot=plot, quick=QUICK,
         paper="P1 memorisation / early-stopping claim (Sec. 7), trained MLPs in the Fig. 3 setting",
         claims=claims, quick_fails={
             name: "200 steps at width 32 leave every model underfit (neither memorising nor "
                   "generalising), so the group is empty"
             for name in ("mlp_memorization_shape[memorising]", "mlp_memorization_shape[generalising]")})

SWEEPABLES = ()
