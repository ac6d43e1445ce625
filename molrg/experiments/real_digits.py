"""Real data: does a MoLRG fitted to handwritten digits predict a trained diffusion model's peak?

P1 argues that the MoLRG explains what real diffusion models do: their features are best at
an intermediate noise level, and the peak fades when the model memorises. This experiment
builds that bridge on the 8x8 handwritten digits bundled with scikit-learn
(``sklearn.datasets.load_digits``: 1,797 images, 10 classes; pixels 0..16 mapped to
``x / 8 - 1`` in [-1, 1]), split by a seeded permutation into ``num_train`` training images
and the rest held out.

1. **Fit** (:func:`molrg.fitting.fit_molrg`, THEORY section 9): per-class subspaces by the
   explained-energy rule (``fit_energy``), class means and weights, delta and eta, on the
   training images; :func:`molrg.fitting.fit_report` on the held-out images (explained
   energy, log-likelihood vs a full-covariance Gaussian mixture, broken assumptions).
2. **Prediction**: the fitted model's exact denoiser on the real images, noised on a
   log-uniform sigma grid over P1's range (up to its largest level, 1.923; VP scaling ``s = 1 / sqrt(1 + sigma^2)``, as the network sees);
   its outputs go through P1's feature protocol (below), plus the fitted posterior's Bayes
   accuracy and the model's own output SNR (P1 Def. 1 with the fitted subspaces). Peak
   sigma* = the parabola vertex in log sigma of the feature-SNR curve
   (:func:`molrg.peaks.parabola_vertex`); its uncertainty is the std of log sigma* over
   ``bootstrap`` class-stratified refits (:func:`molrg.fitting.bootstrap_fits`).
3. **Measurement**: an MLP denoiser (:class:`molrg.networks.MLPDenoiser`, FiLM, EDM loss
   weighting, as in fig3_trained) trained on the digits, ``num_seeds`` seeds as one vmapped
   ensemble (:func:`molrg.training.train_ensemble`); hidden layer ``feature_layer`` taken at
   every sigma. P1's protocol (:mod:`molrg.metrics`, :mod:`molrg.probes`): each feature row
   unit-normalised, the global training mean removed, rank-``feature_rank`` class subspaces
   fitted on the training images' features; feature SNR on the training images; linear-probe
   and projection-classifier accuracy on the held-out images. Error bars: std over seeds
   (standard error of the mean = std / sqrt(seeds)); measured sigma* = geometric mean of the
   per-seed parabola vertices, its standard error that of the mean log.
4. **Memorisation**: the same measurement for models trained on the first N images of a
   class-stratified order of the training split (``N_values``; the largest is the whole
   split, the model of item 3), each tiled to ``num_train`` rows so one compiled program
   serves every N (as in mlp_memorization), with the copy fraction (nearest training image
   closer than 1/3 of the second nearest) and nearest-neighbour ratio (mean distance of
   generated samples to their nearest training image over that of the held-out images) of
   ``num_samples`` DDPM-ancestral samples. The feature protocol's training images are always
   the whole training split (a subset of 32 images has too few per class for rank-5 fits).

Why the grid stops at sigma = 2: in a first run on 0.02 .. 8 both the predicted and the measured
feature SNR rose again above sigma ~ 1.5, where every accuracy is near chance (0.10-0.18 at sigma 8):
there the features of all classes collapse onto a few directions, which any rank-5 class fit
captures, so the fitted-subspace SNR grows without any class information. P1's grids stop at
1.923 and never see that regime.

Measured (default config, seed 0; 2 CPU cores shared with other jobs, load 4-6): 161 s (fit 7 s,
prediction with 10 bootstrap refits 36 s, training 68 s, measurement and sampling 43 s; 287-300 s
at load 6-8). The fit: ranks 10-17 (90% energy), delta 0.18, eta 0 (the union of the subspaces
spans the 61 non-constant pixels), smallest principal angle between class subspaces 7 deg, mean
separation up to 1.27; held-out log-likelihood 6.1 nats per image against -154 for the
full-covariance Gaussian mixture. Predicted: interior peak, sigma* = 0.277 x/÷ 1.04 (bootstrap),
though the class means are well separated. Measured (width-128 MLP, 3 seeds, 3,000 steps):
hidden-layer feature SNR monotone decreasing (no peak; also with 10,000 steps: 'flat'); so the
predicted-vs-measured and memorisation claims fail. N = 32 does not memorise at 3,000 steps (copy
fraction 0.01, NN ratio 0.77); at 10,000 steps it copies more (0.32, NN ratio 0.46), still
monotone decreasing.

Full scale (the issue's N = 2^5 .. all, more seeds and steps)::

    molrg run real_digits --set N_values=32,64,128,256,512,1024 --set num_seeds=5 \\
        --set steps=8000 --set bootstrap=50

(not run; from the measured per-step cost, about 10-15 minutes on 2 cores.)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from molrg import metrics, probes
from molrg.fitting import bootstrap_fits, fit_molrg, fit_report
from molrg.networks import MLPDenoiser
from molrg.peaks import parabola_vertex
from molrg.sample_quality import nearest_neighbors
from molrg.sampling import ddpm_ancestral, default_timesteps, draw_noises
from molrg.schedules import DDPMLinear, DDPMNoise
from molrg.study import Claim, Experiment, Results, load_results, save_figure
from molrg.study.plotting import FULL_WIDTH, mark_quick, paper_style
from molrg.training import train_ensemble

MEMORISING_COPY_FRACTION = 0.5
NUM_CLASSES = 10
DIM = 64
NUM_IMAGES = 1797


@dataclasses.dataclass(frozen=True)
class RealDigitsConfig:
    """Config of ``real_digits`` (defaults: the 2-core scale of ``make reproduce``).

    Attributes:
      num_train: training images (the rest of the 1,797 are held out).
      fit_energy: explained-energy rule of the MoLRG fit (``fit_rank`` overrides it).
      fit_rank: one rank for every class, or None for the energy rule.
      bootstrap: bootstrap refits for the predicted sigma*'s uncertainty.
      sigma_min, sigma_max, num_sigmas: the log-uniform noise grid (default 0.01 .. 2, P1's range
        of noise levels up to its largest, 1.923).
      width, depth: MLP denoiser size (FiLM, EDM loss weighting).
      num_seeds: networks per training set (one vmapped ensemble).
      steps, batch_size, learning_rate: Adam training.
      N_values: training-set sizes; increasing, each dividing ``num_train``, the last equal
        to it.
      feature_layer: hidden layer (1..depth) whose features are measured.
      feature_rank: P1's rank of the fitted class subspaces (5).
      probe_steps: L-BFGS steps of each linear probe.
      num_samples, sample_steps: generated samples per model and DDPM ancestral steps.
      z: significance multiplier of the unimodality verdicts.
      seed: split, noise draws, bootstrap and sampler noise; train_seed: first network seed.
    """

    num_train: int = 1024
    fit_energy: float = 0.9
    fit_rank: int | None = None
    bootstrap: int = 10
    sigma_min: float = 0.01
    sigma_max: float = 2.0  # about P1's largest noise level, 1.923 (PAPER_SIGMAS); see the module doc
    num_sigmas: int = 15
    width: int = 128
    depth: int = 3
    num_seeds: int = 3
    steps: int = 3000
    batch_size: int = 128
    learning_rate: float = 2e-3
    N_values: tuple[int, ...] = (32, 128, 1024)
    feature_layer: int = 2
    feature_rank: int = 5
    probe_steps: int = 100
    num_samples: int = 256
    sample_steps: int = 100
    z: float = 3.0
    seed: int = 0
    train_seed: int = 0

    def validate(self):
        for f in ("num_train", "bootstrap", "num_sigmas", "width", "depth", "num_seeds", "steps",
                  "batch_size", "feature_layer", "feature_rank", "probe_steps", "num_samples",
                  "sample_steps"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{f}: must be a positive integer; got {v!r}")
        if not 100 <= self.num_train <= NUM_IMAGES - 100:
            raise ValueError(f"num_train: must lie in [100, {NUM_IMAGES - 100}] (100 held out at least); "
                             f"got {self.num_train}")
        if not (isinstance(self.fit_energy, (int, float)) and 0 < self.fit_energy <= 1):
            raise ValueError(f"fit_energy: must lie in (0, 1]; got {self.fit_energy!r}")
        if self.fit_rank is not None and (isinstance(self.fit_rank, bool) or not isinstance(self.fit_rank, int)
                                          or not 1 <= self.fit_rank <= 20):
            raise ValueError(f"fit_rank: must be None or an int in [1, 20]; got {self.fit_rank!r}")
        if self.bootstrap < 2:
            raise ValueError(f"bootstrap: need >= 2 refits for a std; got {self.bootstrap}")
        if self.num_sigmas < 5:
            raise ValueError(f"num_sigmas: need >= 5 levels for a peak; got {self.num_sigmas}")
        if not (math.isfinite(self.sigma_min) and math.isfinite(self.sigma_max)
                and 0 < self.sigma_min < self.sigma_max):
            raise ValueError(f"sigma_min: need 0 < sigma_min < sigma_max; got {self.sigma_min}, {self.sigma_max}")
        if self.num_seeds < 2:
            raise ValueError(f"num_seeds: need >= 2 for error bars; got {self.num_seeds}")
        if self.feature_layer > self.depth:
            raise ValueError(f"feature_layer: must lie in [1, depth = {self.depth}]; got {self.feature_layer}")
        if self.feature_rank > min(self.width, DIM):
            raise ValueError(f"feature_rank: must be <= min(width, 64); got {self.feature_rank}")
        Ns = list(self.N_values)
        if not Ns or any(isinstance(N, bool) or not isinstance(N, int) for N in Ns):
            raise ValueError(f"N_values: need integers; got {self.N_values!r}")
        if Ns != sorted(set(Ns)) or Ns[-1] != self.num_train:
            raise ValueError(f"N_values: must be strictly increasing and end at num_train = {self.num_train}; "
                             f"got {self.N_values}")
        if Ns[0] < 2 * NUM_CLASSES or any(self.num_train % N for N in Ns):
            raise ValueError(f"N_values: each must be >= {2 * NUM_CLASSES} and divide num_train; got {self.N_values}")
        if self.batch_size > self.num_train:
            raise ValueError(f"batch_size: must be <= num_train; got {self.batch_size}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate: must be > 0; got {self.learning_rate}")
        if self.sample_steps > DDPMLinear().T:
            raise ValueError(f"sample_steps: must be <= {DDPMLinear().T}; got {self.sample_steps}")
        if not (math.isfinite(self.z) and self.z > 0):
            raise ValueError(f"z: must be > 0; got {self.z}")
        for f in ("seed", "train_seed"):
            if not 0 <= getattr(self, f) < 2**31 - self.num_seeds:
                raise ValueError(f"{f}: must lie in [0, 2^31 - num_seeds); got {getattr(self, f)}")


# ------------------------------------------------------------------------------------------
# Data.
# ------------------------------------------------------------------------------------------
def load_split(num_train: int, seed: int):
    """Digits in [-1, 1]: ``(x_train, y_train, x_test, y_test)`` (float64 / int64 NumPy).

    The training split is class-stratified in order (round-robin over classes of a seeded
    permutation) so its first N images hold about N/10 of each class.
    """
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = d.data / 8.0 - 1.0, d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    per_class = [list(perm[y[perm] == k]) for k in range(NUM_CLASSES)]
    order = []
    while len(order) < num_train:
        for k in range(NUM_CLASSES):
            if per_class[k] and len(order) < num_train:
                order.append(per_class[k].pop(0))
    train = np.asarray(order)
    test = np.setdiff1d(np.arange(x.shape[0]), train)
    return x[train], y[train], x[test], y[test]


# ------------------------------------------------------------------------------------------
# Compiled pieces.
# ------------------------------------------------------------------------------------------
def _scales(sigmas):
    return 1.0 / jnp.sqrt(1.0 + sigmas * sigmas)


@jax.jit
def exact_outputs(mix, c, x0, eps, sigmas):
    """Exact denoiser outputs ``(L, M, n)`` of a fitted model (model units scaled by ``c``)."""
    from molrg.posterior import denoise

    def level(e, s):
        sc = 1.0 / jnp.sqrt(1.0 + s * s)
        return c * denoise(mix, sc * (x0 + s * e) / c, s / c, sc)
    return jax.vmap(level)(eps, sigmas)


@functools.partial(jax.jit, static_argnames=("rank",))
def exact_feature_snr(mix, c, x0, labels, eps, sigmas, *, rank: int):
    """Feature SNR ``(L,)`` (P1 protocol) of a fitted model's exact denoiser outputs: one
    compiled program for every bootstrap replicate (same ranks, so same shapes)."""
    out = exact_outputs(mix, c, x0, eps, sigmas)
    return jax.vmap(lambda f: metrics.feature_snr(f, labels, num_classes=NUM_CLASSES, rank=rank))(out)


@jax.jit
def exact_bayes(mix, c, x0, labels, eps, sigmas):
    """Bayes accuracy ``(L,)`` of the fitted posterior on noised points."""
    from molrg.posterior import log_posterior

    def level(e, s):
        sc = 1.0 / jnp.sqrt(1.0 + s * s)
        lp = log_posterior(mix, sc * (x0 + s * e) / c, s / c, sc)
        return jnp.mean((jnp.argmax(lp, -1).astype(labels.dtype) == labels).astype(x0.dtype))
    return jax.vmap(level)(eps, sigmas)


@jax.jit
def model_snr(mix, c, outputs, labels):
    """P1 Def. 1 SNR ``(L,)`` of data-unit outputs against the fitted subspaces."""
    return jax.vmap(lambda o: metrics.snr(o / c, labels, mix))(outputs)


@functools.partial(jax.jit, static_argnames=("net", "layer"))
def network_features(net, params, x0, eps, sigmas, *, layer: str):
    """Hidden features ``(E, L, M, W)`` of an ensemble on noised points."""
    def member(p):
        def level(e, s):
            sc = 1.0 / jnp.sqrt(1.0 + s * s)
            _, f = net.apply(p, sc * (x0 + s * e), s, sc, return_features=True)
            return f[layer]
        return jax.vmap(level)(eps, sigmas)
    return jax.vmap(member)(params)


@functools.partial(jax.jit, static_argnames=("rank", "probe_steps"))
def protocol(f_train, y_train, f_test, y_test, *, rank: int, probe_steps: int):
    """P1's protocol on ``(L, M, m)`` features: feature SNR on the training features,
    projection-classifier and linear-probe accuracy on the held-out features; ``(L,)`` each."""
    def level(ftr, fte):
        fsnr = metrics.feature_snr(ftr, y_train, num_classes=NUM_CLASSES, rank=rank)
        proj = probes.projection_classifier(ftr, y_train, fte, y_test, num_classes=NUM_CLASSES, rank=rank)
        lp = probes.linear_probe(ftr, y_train, fte, y_test, num_classes=NUM_CLASSES, steps=probe_steps)
        return fsnr, proj.accuracy, lp.accuracy
    return jax.vmap(level)(f_train, f_test)


@functools.partial(jax.jit, static_argnames=("net", "num_steps"))
def generate(net, params, x_T, noises, *, num_steps: int):
    """DDPM ancestral samples ``(E, S, n)`` of every ensemble member (shared noise)."""
    ts = default_timesteps(DDPMLinear(), num_steps)
    return jax.vmap(lambda p: ddpm_ancestral(lambda x, s, c: net.apply(p, x, s, c), x_T, noises,
                                             timesteps=ts))(params)


def log_peak(log_sigmas, y) -> float:
    """Parabola vertex of ``y`` over the uniform ``log sigma`` grid, as sigma."""
    return float(np.exp(parabola_vertex(jnp.asarray(np.asarray(log_sigmas, float)),
                                        jnp.asarray(np.asarray(y, float)))))


def verdict(sigmas, y, err, z) -> dict:
    u = metrics.unimodality(sigmas, y, err, z=z)
    return {"verdict": u.verdict, "peak_index": u.peak_index, "peak_sigma_grid": u.peak_x,
            "peak_value": u.peak_value, "peak_gain": float(y[u.peak_index] / y[0])}


# ------------------------------------------------------------------------------------------
# The run.
# ------------------------------------------------------------------------------------------
def run(cfg: RealDigitsConfig, verbose: bool = True) -> Results:
    cfg.validate()
    t_start = time.perf_counter()
    times = {}
    f32 = jnp.float32
    xtr, ytr, xte, yte = load_split(cfg.num_train, cfg.seed)
    keys = jax.random.split(jax.random.key(cfg.seed), 4)
    sig_np = np.geomspace(cfg.sigma_min, cfg.sigma_max, cfg.num_sigmas)
    log_sig = np.log(sig_np)
    sig = jnp.asarray(sig_np, f32)
    L = sig_np.size
    eps_tr = jax.random.normal(keys[0], (L, xtr.shape[0], DIM), f32)
    eps_te = jax.random.normal(keys[1], (L, xte.shape[0], DIM), f32)
    x_tr, x_te = jnp.asarray(xtr, f32), jnp.asarray(xte, f32)
    y_tr, y_te = jnp.asarray(ytr, jnp.int32), jnp.asarray(yte, jnp.int32)
    run_protocol = functools.partial(protocol, rank=cfg.feature_rank, probe_steps=cfg.probe_steps)

    # 1. Fit, report, bootstrap.
    t0 = time.perf_counter()
    fit = fit_molrg(xtr, ytr, num_classes=NUM_CLASSES, rank=cfg.fit_rank, energy=cfg.fit_energy, dtype=f32)
    rep = fit_report(fit, xte)
    boots = bootstrap_fits(xtr, ytr, key=keys[2], num=cfg.bootstrap, fit=fit, num_classes=NUM_CLASSES,
                           dtype=f32)
    times["fit_s"] = time.perf_counter() - t0

    # 2. Prediction: the fitted model's exact denoiser through P1's protocol.
    t0 = time.perf_counter()
    c = jnp.asarray(fit.scale, f32)
    out_tr = exact_outputs(fit.mix, c, x_tr, eps_tr, sig)
    out_te = exact_outputs(fit.mix, c, x_te, eps_te, sig)
    p_fsnr, p_proj, p_probe = (np.asarray(a) for a in run_protocol(out_tr, y_tr, out_te, y_te))
    p_bayes = np.asarray(exact_bayes(fit.mix, c, x_te, y_te, eps_te, sig))
    p_snr = np.asarray(model_snr(fit.mix, c, out_te, y_te))
    boot_fsnr = np.stack([np.asarray(exact_feature_snr(b.mix, jnp.asarray(b.scale, f32), x_tr, y_tr, eps_tr, sig,
                                                       rank=cfg.feature_rank)) for b in boots])  # (B, L)
    pred_peak = log_peak(log_sig, p_fsnr)
    boot_peaks = np.array([log_peak(log_sig, f) for f in boot_fsnr])
    pred_log_se = float(np.std(np.log(boot_peaks), ddof=1))
    pred_err = np.std(boot_fsnr, axis=0, ddof=1)
    pred_v = verdict(sig_np, p_fsnr, pred_err, cfg.z)
    # P1 Def. 1 with the fitted subspaces (no error bars: the verdict's relative floor only)
    model_snr_v = verdict(sig_np, p_snr, None, cfg.z)
    times["predict_s"] = time.perf_counter() - t0
    if verbose:
        print(f"  fit: ranks {list(fit.ranks)}, delta {fit.delta:.3f}, eta {fit.noise:.3g}, scale "
              f"{fit.scale:.3f}; predicted sigma* {pred_peak:.3g} (x/÷ {np.exp(pred_log_se):.3f}), "
              f"{pred_v['verdict']} ({times['fit_s'] + times['predict_s']:.0f} s)", flush=True)

    # 3-4. Measurement on nested subsets, one vmapped ensemble per N.
    sd = float(np.std(xtr))
    net = MLPDenoiser(DIM, cfg.width, cfg.depth, sigma_data=sd, film=True)
    noise = DDPMNoise(weighting="edm", sigma_data=sd)
    seeds = np.arange(cfg.train_seed, cfg.train_seed + cfg.num_seeds)
    x_T, noises = draw_noises(keys[3], cfg.num_samples, DIM, cfg.sample_steps, dtype=f32)
    layer = f"hidden_{cfg.feature_layer}"
    per_N, rows_mem = {}, []
    times["train_s"] = times["measure_s"] = 0.0
    nn_te_cache = {}
    for N in cfg.N_values:
        t0 = time.perf_counter()
        data = jnp.tile(x_tr[:N], (cfg.num_train // N, 1))
        res = train_ensemble(net, data, seeds=seeds, learning_rates=cfg.learning_rate, steps=cfg.steps,
                             batch_size=cfg.batch_size, noise=noise)
        res.losses.block_until_ready()
        times["train_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        h_tr = network_features(net, res.params, x_tr, eps_tr, sig, layer=layer)
        h_te = network_features(net, res.params, x_te, eps_te, sig, layer=layer)
        m = [np.asarray(a) for a in jax.vmap(run_protocol)(h_tr, jnp.broadcast_to(y_tr, (cfg.num_seeds,) + y_tr.shape),
                                                            h_te, jnp.broadcast_to(y_te, (cfg.num_seeds,) + y_te.shape))]
        fsnr, proj, probe = m  # (E, L) each
        samples = generate(net, res.params, x_T, noises, num_steps=cfg.sample_steps)
        nn = nearest_neighbors(samples, x_tr[:N])
        if N not in nn_te_cache:
            nn_te_cache[N] = float(jnp.mean(nearest_neighbors(x_te, x_tr[:N]).distance))
        copy = np.asarray(jnp.mean((nn.distance < nn.second_distance / 3.0).astype(f32), -1))
        nn_ratio = np.asarray(jnp.mean(nn.distance, -1)) / nn_te_cache[N]
        peaks = np.array([log_peak(log_sig, f) for f in fsnr])
        se = fsnr.std(0, ddof=1) / np.sqrt(cfg.num_seeds)
        v = verdict(sig_np, fsnr.mean(0), se, cfg.z)
        per_N[N] = {"fsnr": fsnr, "proj": proj, "probe": probe, "peaks": peaks, "verdict": v,
                    "copy": copy, "nn_ratio": nn_ratio,
                    "final_loss": float(np.mean(np.asarray(res.losses)[:, -200:]))}
        rows_mem.append({"N": N, "verdict": v["verdict"], "peak_gain": v["peak_gain"],
                         "peak_sigma": float(np.exp(np.mean(np.log(peaks)))),
                         "copy_fraction": float(copy.mean()), "copy_fraction_std": float(copy.std(ddof=1)),
                         "nn_ratio": float(nn_ratio.mean()), "nn_ratio_std": float(nn_ratio.std(ddof=1)),
                         "final_loss": per_N[N]["final_loss"],
                         "probe_best": float(probe.mean(0).max()), "probe_at_min_sigma": float(probe.mean(0)[0])})
        times["measure_s"] += time.perf_counter() - t0
        if verbose:
            print(f"  N = {N}: {v['verdict']} (peak gain {v['peak_gain']:.3f}), copy fraction "
                  f"{copy.mean():.2f}, NN ratio {nn_ratio.mean():.2f}, loss {per_N[N]['final_loss']:.3f} "
                  f"({times['train_s'] + times['measure_s']:.0f} s so far)", flush=True)

    full = per_N[cfg.num_train]
    meas_log = np.log(full["peaks"])
    meas_peak = float(np.exp(meas_log.mean()))
    meas_log_se = float(meas_log.std(ddof=1) / np.sqrt(cfg.num_seeds))
    log_ratio = float(np.log(meas_peak / pred_peak))
    log_ratio_se = float(np.hypot(meas_log_se, pred_log_se))

    rows = []
    for j in range(L):
        r = {"sigma": float(sig_np[j]), "pred_feature_snr": float(p_fsnr[j]),
             "pred_feature_snr_std": float(pred_err[j]), "pred_projection_acc": float(p_proj[j]),
             "pred_probe_acc": float(p_probe[j]), "pred_bayes_acc": float(p_bayes[j]),
             "pred_model_snr": float(p_snr[j])}
        for N in cfg.N_values:
            d = per_N[N]
            tag = "meas" if N == cfg.num_train else f"meas_N{N}"
            for name, arr in (("feature_snr", d["fsnr"]), ("projection_acc", d["proj"]), ("probe_acc", d["probe"])):
                r[f"{tag}_{name}"] = float(arr[:, j].mean())
                r[f"{tag}_{name}_std"] = float(arr[:, j].std(ddof=1))
        rows.append(r)
    times["total_s"] = time.perf_counter() - t_start
    v_full = full["verdict"]
    smallest = rows_mem[0]
    summary = (
        f"Digits (sklearn, 8x8, 10 classes): {cfg.num_train} training / {xte.shape[0]} held-out images. "
        f"Fitted MoLRG (energy rule {cfg.fit_energy}): ranks {list(fit.ranks)}, delta {fit.delta:.3f}, "
        f"eta {fit.noise:.3g} (model units), scale {fit.scale:.3f}, union rank {fit.union_rank}; held-out "
        f"log-likelihood {rep.loglik_molrg:.1f} (MoLRG) vs {rep.loglik_gmm:.1f} (full-covariance GMM) nats per "
        f"image; broken assumptions: {'; '.join(rep.broken) or 'none'}. "
        f"Predicted feature SNR (exact denoiser outputs, P1 protocol): {pred_v['verdict']}, sigma* "
        f"{pred_peak:.3g} (bootstrap x/÷ {np.exp(pred_log_se):.3f}, {cfg.bootstrap} refits); its output SNR "
        f"(P1 Def. 1, fitted subspaces): {model_snr_v['verdict']}. Measured "
        f"(MLP width {cfg.width}, depth {cfg.depth}, layer {cfg.feature_layer}, {cfg.num_seeds} seeds, "
        f"{cfg.steps} steps): {v_full['verdict']}, parabola vertex {meas_peak:.3g} (x/÷ {np.exp(meas_log_se):.3f}; "
        f"a peak only if the verdict is 'interior peak'). "
        f"Ratio measured / predicted {np.exp(log_ratio):.3g} (log ratio {log_ratio:.3f} +- {log_ratio_se:.3f}). "
        f"Memorisation: " + "; ".join(
            f"N={r['N']}: {r['verdict']}, copy {r['copy_fraction']:.2f}, NN ratio {r['nn_ratio']:.2f}"
            for r in rows_mem)
        + f". Smallest N={smallest['N']}: {smallest['verdict']}. Runtime {times['total_s']:.0f} s.")
    if verbose:
        print(summary)
    scalars = {
        "summary": summary,
        "fit": {"ranks": list(fit.ranks), "delta": fit.delta, "noise": fit.noise, "scale": fit.scale,
                "union_rank": fit.union_rank, "weights": fit.weights.tolist(),
                "explained_energy": rep.explained_energy.tolist(), "loglik_molrg": rep.loglik_molrg,
                "loglik_gmm": rep.loglik_gmm, "ridge": rep.ridge, "largest_cosine": rep.largest_cosine,
                "orthogonal": rep.orthogonal, "equal_ranks": rep.equal_ranks, "zero_means": rep.zero_means,
                "max_mean_separation": float(rep.mean_separation.max()), "broken": list(rep.broken),
                "min_principal_angle_deg": float(rep.principal_angles_deg[~np.eye(NUM_CLASSES, dtype=bool)].min())},
        "predicted": {**pred_v, "peak_sigma": pred_peak, "log_se": pred_log_se,
                      "bootstrap_peaks": boot_peaks.tolist()},
        "predicted_model_snr": model_snr_v,
        "measured": {**v_full, "peak_sigma": meas_peak, "log_se": meas_log_se,
                     "seed_peaks": full["peaks"].tolist()},
        "log_ratio": log_ratio, "log_ratio_se": log_ratio_se,
        "memorisation": {str(r["N"]): r for r in rows_mem},
        "runtime": times,
    }
    arrays = {"sigma": sig_np, "pred_feature_snr_boot": boot_fsnr}
    for N in cfg.N_values:
        arrays[f"feature_snr_N{N}"] = per_N[N]["fsnr"]
    return Results(scalars=scalars, tables={"real_digits": rows, "memorisation": rows_mem}, arrays=arrays)


# ------------------------------------------------------------------------------------------
# Figures.
# ------------------------------------------------------------------------------------------
def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt
    res = load_results(results_dir)
    rows, mem = res["tables"]["real_digits"], res["tables"]["memorisation"]
    sc = res["scalars"]
    s = np.array([r["sigma"] for r in rows])
    col = lambda k: np.array([float(r[k]) for r in rows])  # noqa: E731
    paths = []
    with paper_style():
        paths += _plot_compare(plt, res, rows, sc, s, col, fig_dir)
        paths += _plot_memorisation(plt, res, mem, s, fig_dir)
    return paths


def _plot_compare(plt, res, rows, sc, s, col, fig_dir=None):
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH, 3.4), layout="constrained")
    ax = axes[0]
    p, m = col("pred_feature_snr"), col("meas_feature_snr")
    ax.errorbar(s, p / p.max(), yerr=col("pred_feature_snr_std") / p.max(), fmt="k-", capsize=2,
                label="predicted: fitted MoLRG, exact denoiser")
    ax.errorbar(s, m / m.max(), yerr=col("meas_feature_snr_std") / m.max(), fmt="s--", ms=4, capsize=2,
                label="measured: trained MLP hidden layer")
    title = []
    for key, color in (("predicted", "k"), ("measured", "C0")):
        if sc[key]["verdict"] != "interior peak":  # a vertex at the grid's edge is no peak
            title.append(f"{key}: {sc[key]['verdict']}")
            continue
        ps, se = float(sc[key]["peak_sigma"]), float(sc[key]["log_se"])
        ax.axvline(ps, color=color, lw=1)
        ax.axvspan(ps * np.exp(-se), ps * np.exp(se), color=color, alpha=0.15)
        title.append(f"{key} peak {ps:.3g} x/÷ {np.exp(se):.3g}")
    ax.set_xscale("log")
    ax.set_xlabel(r"noise level $\sigma$")
    ax.set_ylabel("feature SNR / its maximum")
    ax.set_title("\n".join(title))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax = axes[1]
    ax.plot(s, col("pred_bayes_acc"), "k-", label="predicted: Bayes accuracy")
    ax.plot(s, col("pred_probe_acc"), "k:", label="predicted: linear probe (exact outputs)")
    ax.plot(s, col("pred_projection_acc"), "k-.", label="predicted: projection classifier")
    ax.errorbar(s, col("meas_probe_acc"), yerr=col("meas_probe_acc_std"), fmt="s--", ms=4, capsize=2,
                label="measured: linear probe")
    ax.errorbar(s, col("meas_projection_acc"), yerr=col("meas_projection_acc_std"), fmt="o--", ms=4,
                capsize=2, label="measured: projection classifier")
    ax.set_xscale("log")
    ax.set_xlabel(r"noise level $\sigma$")
    ax.set_ylabel("held-out accuracy")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2))
    mark_quick(fig, res)
    paths += save_figure(fig, fig_dir, "real_digits_compare")
    return paths


def _plot_memorisation(plt, res, mem, s, fig_dir):
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH, 3.0), layout="constrained")
    Ns = [int(r["N"]) for r in mem]
    for N in Ns:
        a = res["arrays"][f"feature_snr_N{N}"]
        y = a.mean(0)
        axes[0].errorbar(s, y / y.max(), yerr=a.std(0, ddof=1) / y.max(), capsize=2, label=f"N = {N}")
    axes[0].set_xscale("log")
    axes[0].set_xlabel(r"noise level $\sigma$")
    axes[0].set_ylabel("measured feature SNR / its maximum")
    axes[0].legend()
    axes[1].errorbar(Ns, [float(r["copy_fraction"]) for r in mem], yerr=[float(r["copy_fraction_std"]) for r in mem],
                     fmt="o-", capsize=2, label="copy fraction")
    axes[1].errorbar(Ns, [float(r["nn_ratio"]) for r in mem], yerr=[float(r["nn_ratio_std"]) for r in mem],
                     fmt="s--", capsize=2, label="nearest-neighbour ratio")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("training images N")
    axes[1].legend()
    mark_quick(fig, res)
    paths += save_figure(fig, fig_dir, "real_digits_memorisation")
    return paths


# ------------------------------------------------------------------------------------------
# Claims.
# ------------------------------------------------------------------------------------------
def claims(results: dict) -> list[Claim]:
    """Claims of the real-data bridge, from the saved results (:func:`molrg.study.load_results`)."""
    cfg, sc = results["manifest"]["config"], results["scalars"]
    pred, meas = sc["predicted"], sc["measured"]
    z = float(cfg["z"])
    scale = (f"{cfg['num_seeds']} seeds x {cfg['steps']} steps, width {cfg['width']}, "
             f"{cfg['bootstrap']} bootstrap refits")
    out = [Claim(
        "real_digits[fitted model predicts a peak]",
        "the MoLRG fitted to the digits (class means included) predicts an interior peak of feature SNR over "
        "sigma (its exact denoiser's outputs through P1's protocol), although P1's appendix says well-separated "
        "means remove the peak",
        {"verdict": pred["verdict"], "peak_sigma": float(pred["peak_sigma"]), "peak_gain": float(pred["peak_gain"]),
         "max_mean_separation": float(sc["fit"]["max_mean_separation"])},
        f"metrics.unimodality verdict 'interior peak' (z = {z:g}, error = bootstrap std of the curve)",
        pred["verdict"] == "interior peak")]
    out.append(Claim(
        "real_digits[trained model peaks]",
        f"a diffusion model trained on the digits has an interior peak of hidden-feature SNR over sigma ({scale})",
        {"verdict": meas["verdict"], "peak_sigma": float(meas["peak_sigma"]), "peak_gain": float(meas["peak_gain"])},
        f"metrics.unimodality verdict 'interior peak' (z = {z:g}, error = standard error over seeds)",
        meas["verdict"] == "interior peak"))
    lr, se = float(sc["log_ratio"]), float(sc["log_ratio_se"])
    both = pred["verdict"] == "interior peak" and meas["verdict"] == "interior peak"
    out.append(Claim(
        "real_digits[predicted vs measured sigma*]",
        f"the fitted MoLRG predicts the trained model's peak noise level: measured / predicted sigma* = 1 "
        f"within uncertainty ({scale})",
        {"predicted_sigma": float(pred["peak_sigma"]), "measured_sigma": float(meas["peak_sigma"]),
         "ratio": float(np.exp(lr)), "log_ratio": lr, "log_ratio_se": se, "both_interior": both},
        f"both curves have an interior peak and |log ratio| <= {z:g} x its standard error (bootstrap and seeds "
        f"combined)",
        bool(both and abs(lr) <= z * se)))
    mem = [sc["memorisation"][k] for k in sorted(sc["memorisation"], key=int)]
    small, big = mem[0], mem[-1]
    out.append(Claim(
        "real_digits[memorisation removes the peak]",
        f"a model trained on N = {small['N']} images memorises (copy fraction >= {MEMORISING_COPY_FRACTION}) and "
        f"its feature-SNR peak is gone, while the model trained on all {big['N']} has one ({scale})",
        {"N": [int(r["N"]) for r in mem], "verdicts": [r["verdict"] for r in mem],
         "copy_fraction": [float(r["copy_fraction"]) for r in mem],
         "nn_ratio": [float(r["nn_ratio"]) for r in mem], "peak_gain": [float(r["peak_gain"]) for r in mem]},
        f"copy fraction (smallest N) >= {MEMORISING_COPY_FRACTION}, its verdict not 'interior peak', and "
        f"'interior peak' at N = all (z = {z:g})",
        bool(float(small["copy_fraction"]) >= MEMORISING_COPY_FRACTION and small["verdict"] != "interior peak"
             and big["verdict"] == "interior peak")))
    return out


QUICK = {"num_train": 320, "bootstrap": 2, "num_sigmas": 7, "width": 32, "depth": 2, "steps": 100,
         "batch_size": 64, "N_values": (32, 320), "feature_layer": 1, "probe_steps": 10, "num_samples": 32,
         "sample_steps": 10, "num_seeds": 2}

EXPERIMENT = Experiment(
    name="real_digits",
    summary="MoLRG fitted to real digits: predicted vs measured feature-SNR peak, and memorisation",
    config=RealDigitsConfig(), run=run, plot=plot, quick=QUICK,
    paper="P1's real-data argument (peak at intermediate noise, fading with memorisation), on sklearn digits",
    claims=claims)

SWEEPABLES = ()
