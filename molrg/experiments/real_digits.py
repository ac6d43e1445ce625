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
   ensemble (:func:`molrg.training.train_ensemble`, Adam with cosine decay to 1% when
   ``cosine``); every hidden layer (as fig3_trained) and the denoiser's output taken at every
   sigma (feature SNR of each; the comparison and the probes use hidden layer
   ``feature_layer``). P1's protocol (:mod:`molrg.metrics`, :mod:`molrg.probes`): each feature row
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
   The subset models train for ``mem_steps`` steps.
5. **Certificates** (:mod:`molrg.certify`, issue 10: a FAIL must be the theory's, not the
   optimiser's). The objective is the denoising loss (squared error summed over pixels)
   averaged over the sigma grid's levels, on fixed noise draws. (a) Every model is compared on
   the held-out images with the fitted MoLRG's exact denoiser on the same noisy points, a
   reference a well-trained network should match or beat: ``reached`` when its loss is at
   most ``(1 + cert_rtol)`` times the reference's. (b) Every model's training loss (its own
   training points, tiled, same noise draws) is compared with that of the empirical denoiser
   of those points (:func:`molrg.empirical.empirical_denoise`), the global optimum of the
   training objective: ``reached`` means the model memorises. Why the grid mean and not EDM's
   weighting ``1/sigma^2 + 1/sigma_data^2``: that weighting puts most of the mass at
   sigma = 0.01, where the empirical denoiser's loss is exactly 0 and any network's is about
   that of the identity (measured at N = 32: 16x the optimum's), so it certifies nothing
   about the levels where the features and the copies are decided.

Why the grid stops at sigma = 2: in a first run on 0.02 .. 8 both the predicted and the measured
feature SNR rose again above sigma ~ 1.5, where every accuracy is near chance (0.10-0.18 at sigma 8):
there the features of all classes collapse onto a few directions, which any rank-5 class fit
captures, so the fitted-subspace SNR grows without any class information. P1's grids stop at
1.923 and never see that regime.

Measured (seed 0; the default run, ``molrg run real_digits``, alone on the 2-core machine).
The fit: ranks 10-17 (90% energy), delta 0.18, eta 0 (the union of the subspaces spans the 61
non-constant pixels), smallest principal angle between class subspaces 7 deg, mean separation
up to 1.27; held-out log-likelihood 6.1 nats per image against -154 for the full-covariance
Gaussian mixture. **Predicted**: interior peak at sigma* = 0.277 x/÷ 1.04 (10 bootstrap refits),
though the class means are well separated. **Measured** (width 256, depth 3, 3 seeds, 5,000
steps, cosine decay; certified: held-out loss 1.012, 1.008, 1.008 x the fitted MoLRG's exact
denoiser's, 3 of 3 reached at rtol 0.05): the feature SNR of all three hidden layers is
monotone decreasing (parabola vertex of layer 2 at the grid's edge, 0.014; log ratio to the
prediction -2.99 +- 0.06), so P1's hidden-layer peak is absent on digits for a model that
matches the reference -- the FAIL is not the optimiser's. The denoiser's *outputs* through the
same protocol do peak, and their curve follows the prediction's shape (figure
``real_digits_compare``), at sigma* = 0.316, 1.14x the predicted 0.277 (log ratio 0.13 +- 0.07:
within 3 standard errors, PASS). That agreement is not robust to the training budget: the
previous default, 6,000 steps (held-out loss 0.989-0.993x, better trained), put the outputs'
peak at 0.40 x/÷ 1.03, 1.44x the prediction (log ratio 0.36 +- 0.05, 7 standard errors: FAIL);
the outputs' peak moves up as training goes on.
Memorisation (the trend is the reverse of P1's): N = 32 copies at 12,000 steps (copy fraction
0.77, NN ratio 0.18; training loss 1.26-1.28 x the empirical optimum's, so not the global
optimum: 0 of 3 reached at rtol 0.05); 0.79-0.88 at 14,000 steps (1.23-1.25 x), 0.70 at 10,000,
0.38 at 6,000; the model on all 1,024 images copies nothing (0.00, NN ratio 1.35). The full
model has no hidden-layer peak to lose, and the memorising N = 32 model has an interior peak in
all three hidden layers; at 6,000 steps, not yet copying, N = 32 was monotone decreasing.
7 claims; 6 as expected at first, the outputs' claim flipped to PASS with the shorter budget
(its expectation now records both budgets). Run time 203 s (fit 1 s, prediction 7 s, training
155 s -- 12,000 steps at N = 32, 5,000 at N = 1,024 --, measurement 37 s): under the 4-minute
target. The previous 6,000 / 14,000-step default took 275 s on the same machine; 4,000 /
10,000 steps took 161 s but certified with less margin (1.031-1.038x) and copied less (0.70).

What each tried change gave (N = 1,024 unless stated; 3 seeds; "held-out / MoLRG" = grid-mean
held-out loss over the fitted MoLRG's exact denoiser's, the certificate's ratio)::

    recipe                                      held-out / MoLRG     hidden layers 1-3         output
    width 128, 3,000 steps, constant lr         1.14, 1.13, 1.15     monotone decreasing (x3)  peak (gain 1.01)
    width 128, 10,000 steps, constant lr        (not measured)       layer 2 'flat'            --
    width 256, 4,000 steps, cosine              1.04, 1.03, 1.03     monotone decreasing (x3)  peak
    width 256, 5,000 steps, cosine (default)    1.01, 1.01, 1.01     monotone decreasing (x3)  peak (sigma 0.32)
    width 256, 6,000 steps, cosine              0.99, 0.99, 0.99     monotone decreasing (x3)  peak (sigma 0.40)
    N = 32, width 256, 6,000, batch 32, cosine  train/empirical 16x (EDM-weighted), copy 0.00
    N = 32, width 256, 6,000, batch 128, cosine train/empirical 1.47-1.49, copy 0.38
    N = 32, width 256, 10,000, batch 128, cosine train/empirical 1.30-1.32, copy 0.70
    N = 32, width 256, 12,000, batch 128, cosine train/empirical 1.26-1.28, copy 0.77 (default mem_steps);
                                                hidden layers 1-3 and output: interior peak
    N = 32, width 256, 14,000, batch 128, cosine train/empirical 1.23-1.25, copy 0.79-0.88

A convolutional denoiser was not tried: the MLP reaches the reference (1.01x at 5,000 steps,
0.99x at 6,000, no hidden-layer peak either way), so the missing hidden-layer peak is not an MLP
capacity limit by this certificate.

Subsets N = 2^5 .. all (``molrg run real_digits --set N_values=32,64,128,256,512,1024``, the
default steps and 3 seeds; 764 s on the 2-core machine; figures, table and manifest committed under
``figures/real_digits_full/``)::

    N      copy   NN ratio  held-out / MoLRG  hidden 1   hidden 2   hidden 3   output
    32     0.77   0.18      2.20 (0/3)        peak       peak       peak       peak
    64     0.38   0.38      1.79 (0/3)        peak       monotone   monotone   peak
    128    0.05   0.58      1.37 (0/3)        monotone   monotone   monotone   peak
    256    0.00   0.84      1.06 (0/3)        peak       monotone   monotone   peak
    512    0.00   1.04      0.96 (3/3)        peak       monotone   monotone   peak
    1024   0.00   1.35      1.01 (3/3)        monotone   monotone   monotone   peak     (5,000 steps; the rest 12,000)

Copying fades smoothly with N (0.77 -> 0 by N = 256) while the hidden-layer verdicts follow no
trend in N: P1's "the peak fades as the model memorises" is not what digits show. The budget
matters as much as N: the subsets train 12,000 steps, the full model 5,000. A control, the full
model trained 12,000 steps (``--set N_values=1024 --set steps=12000``, 267 s; committed under
``figures/real_digits_full/control_N1024_12000_steps/``): held-out loss 0.94x the reference
(certified), hidden layers still 'monotone decreasing' (hidden 1's curve now has a hump at sigma
0.14, 2% above its value at the grid's edge, not significant), and the outputs' peak at sigma 0.64
(2.3x the prediction; 0.32 at 5,000 steps, 0.40 at 6,000). So the full model's missing hidden
peak is not the budget's, but where its outputs peak is.

A bigger run (5 seeds, 50 bootstrap refits: ``--set num_seeds=5 --set bootstrap=50`` on the
command above) is in ``benchmarks/device_run.py``'s list for an accelerator; not run here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from molrg import metrics, probes
from molrg.certify import certificate
from molrg.empirical import empirical_denoise
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
      steps, batch_size, learning_rate: Adam training of the model on all ``num_train`` images.
      mem_steps: training steps of the models on the smaller subsets (memorisation).
      cosine: cosine learning-rate decay to 1% over the run (else constant).
      cert_rtol: relative tolerance of the optimisation certificates (module doc, item 5).
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
    width: int = 256
    depth: int = 3
    num_seeds: int = 3
    steps: int = 5000
    mem_steps: int = 12000
    cosine: bool = True
    batch_size: int = 128
    learning_rate: float = 2e-3
    N_values: tuple[int, ...] = (32, 1024)
    cert_rtol: float = 0.05
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
                  "batch_size", "mem_steps", "feature_layer", "feature_rank", "probe_steps", "num_samples",
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
        if not isinstance(self.cosine, bool):
            raise ValueError(f"cosine: must be a bool; got {self.cosine!r}")
        if not (isinstance(self.cert_rtol, (int, float)) and math.isfinite(self.cert_rtol) and self.cert_rtol >= 0):
            raise ValueError(f"cert_rtol: must be a finite number >= 0; got {self.cert_rtol!r}")
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


@functools.partial(jax.jit, static_argnames=("net",))
def network_taps(net, params, x0, eps, sigmas):
    """Outputs ``(E, L, M, n)`` and every hidden layer's features ``{name: (E, L, M, W)}`` of
    an ensemble on noised points ``s (x0 + sigma eps)``."""
    def member(p):
        def level(e, s):
            sc = 1.0 / jnp.sqrt(1.0 + s * s)
            return net.apply(p, sc * (x0 + s * e), s, sc, return_features=True)
        return jax.vmap(level)(eps, sigmas)
    return jax.vmap(member)(params)


@functools.partial(jax.jit, static_argnames=("rank",))
def feature_snr_curves(feats, labels, *, rank: int):
    """P1 feature SNR ``(..., L)`` of features ``(..., L, M, m)`` (every leading index)."""
    fn = lambda f: metrics.feature_snr(f, labels, num_classes=NUM_CLASSES, rank=rank)  # noqa: E731
    flat = feats.reshape((-1,) + feats.shape[-2:])
    return jax.lax.map(fn, flat).reshape(feats.shape[:-2])


@jax.jit
def level_mse(out, x0):
    """Mean squared error summed over coordinates, ``(..., L)`` from outputs ``(..., L, M, n)``."""
    return jnp.mean(jnp.sum(jnp.square(out - jnp.broadcast_to(x0, out.shape)), -1), -1)


@jax.jit
def empirical_outputs(train_x, x0, eps, sigmas):
    """The empirical (memorising) optimal denoiser of ``train_x`` on ``s (x0 + sigma eps)``:
    ``(L, M, n)``, the global optimum of the training objective on those points."""
    def level(e, s):
        sc = 1.0 / jnp.sqrt(1.0 + s * s)
        return empirical_denoise(train_x, sc * (x0 + s * e), s, sc)
    return jax.vmap(level)(eps, sigmas)


def certify_losses(found, truth, weights, rtol: float) -> dict:
    """:func:`molrg.certify.certificate` of the weighted grid loss ``found @ weights``
    (``(E, L)`` per-level MSEs of E models) against ``truth @ weights`` (``(L,)``, the
    reference on the same noisy points), as plain floats / lists, plus the per-level ratios."""
    found, truth = np.asarray(found, float), np.asarray(truth, float)
    c = certificate(found @ weights, truth @ weights, rtol=rtol)
    return {"objective": np.asarray(c["objective"]).tolist(), "objective_truth": float(c["objective_truth"]),
            "relative_excess": np.asarray(c["relative_excess"]).tolist(),
            "reached": np.asarray(c["reached"]).tolist(), "num_reached": int(np.sum(c["reached"])),
            "level_ratio": [float(f / t) if t > 0 else None for f, t in zip(found.mean(0), truth)], "rtol": rtol}


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


def _fmt_ratios(cert: dict) -> str:
    r = ", ".join(f"{1 + e:.3f}" for e in cert["relative_excess"])
    return f"[{r}] (reached {cert['num_reached']} of {len(cert['reached'])})"


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

    # 3-4. Measurement on nested subsets, one vmapped ensemble per N, each certified.
    sd = float(np.std(xtr))
    net = MLPDenoiser(DIM, cfg.width, cfg.depth, sigma_data=sd, film=True)
    noise = DDPMNoise(weighting="edm", sigma_data=sd)
    seeds = np.arange(cfg.train_seed, cfg.train_seed + cfg.num_seeds)
    x_T, noises = draw_noises(keys[3], cfg.num_samples, DIM, cfg.sample_steps, dtype=f32)
    layer = f"hidden_{cfg.feature_layer}"
    layers = [f"hidden_{i}" for i in range(1, cfg.depth + 1)]
    # the certified objective: the denoising loss averaged over the grid's levels (uniform in log
    # sigma; EDM's weighting would make sigma = 0.01 decide it, see the module doc)
    w_grid = np.full(L, 1.0 / L)
    # the reference a well-trained network should match or beat on held-out images: the fitted
    # MoLRG's exact denoiser on the same noisy held-out points
    mse_ref = np.asarray(level_mse(out_te, x_te))
    per_N, rows_mem = {}, []
    times["train_s"] = times["measure_s"] = 0.0
    nn_te_cache = {}
    for N in cfg.N_values:
        t0 = time.perf_counter()
        steps = cfg.steps if N == cfg.num_train else cfg.mem_steps
        sched = optax.cosine_decay_schedule(1.0, steps, alpha=0.01) if cfg.cosine else None
        data = jnp.tile(x_tr[:N], (cfg.num_train // N, 1))
        res = train_ensemble(net, data, seeds=seeds, learning_rates=cfg.learning_rate, steps=steps,
                             batch_size=cfg.batch_size, noise=noise, schedule=sched)
        res.losses.block_until_ready()
        times["train_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        o_tr, h_tr = network_taps(net, res.params, x_tr, eps_tr, sig)
        o_te, h_te = network_taps(net, res.params, x_te, eps_te, sig)
        ybr = lambda y: jnp.broadcast_to(y, (cfg.num_seeds,) + y.shape)  # noqa: E731
        fsnr, proj, probe = (np.asarray(a) for a in jax.vmap(run_protocol)(h_tr[layer], ybr(y_tr),
                                                                          h_te[layer], ybr(y_te)))  # (E, L)
        layer_fsnr = {k: np.asarray(feature_snr_curves(h_tr[k], y_tr, rank=cfg.feature_rank)) for k in layers}
        layer_fsnr["output"] = np.asarray(feature_snr_curves(o_tr, y_tr, rank=cfg.feature_rank))
        layer_v = {k: verdict(sig_np, a.mean(0), a.std(0, ddof=1) / np.sqrt(cfg.num_seeds), cfg.z)
                   for k, a in layer_fsnr.items()}
        # certificates: held-out loss vs the fitted MoLRG's exact denoiser (the reference), and
        # training loss vs the empirical (memorising) optimum on the same training points
        cert_ref = certify_losses(level_mse(o_te, x_te), mse_ref, w_grid, cfg.cert_rtol)
        o_fit = o_tr if N == cfg.num_train else network_taps(net, res.params, data, eps_tr, sig)[0]
        mse_emp = np.asarray(level_mse(empirical_outputs(x_tr[:N], data, eps_tr, sig), data))
        cert_emp = certify_losses(level_mse(o_fit, data), mse_emp, w_grid, cfg.cert_rtol)
        del o_tr, h_tr, o_te, h_te, o_fit
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
                    "copy": copy, "nn_ratio": nn_ratio, "layer_fsnr": layer_fsnr,
                    "final_loss": float(np.mean(np.asarray(res.losses)[:, -200:]))}
        rows_mem.append({"N": N, "steps": steps, "verdict": v["verdict"], "peak_gain": v["peak_gain"],
                         "peak_sigma": float(np.exp(np.mean(np.log(peaks)))),
                         "layer_verdicts": {k: d["verdict"] for k, d in layer_v.items()},
                         "layer_peak_sigma": {k: d["peak_sigma_grid"] for k, d in layer_v.items()},
                         "copy_fraction": float(copy.mean()), "copy_fraction_std": float(copy.std(ddof=1)),
                         "nn_ratio": float(nn_ratio.mean()), "nn_ratio_std": float(nn_ratio.std(ddof=1)),
                         "final_loss": per_N[N]["final_loss"],
                         "heldout_vs_molrg": cert_ref, "train_vs_empirical": cert_emp,
                         "probe_best": float(probe.mean(0).max()), "probe_at_min_sigma": float(probe.mean(0)[0])})
        times["measure_s"] += time.perf_counter() - t0
        if verbose:
            print(f"  N = {N} ({steps} steps): layer {cfg.feature_layer} {v['verdict']} (peak gain "
                  f"{v['peak_gain']:.3f}); all layers {rows_mem[-1]['layer_verdicts']}; copy fraction "
                  f"{copy.mean():.2f}, NN ratio {nn_ratio.mean():.2f}; held-out loss / MoLRG's "
                  f"{np.round(1 + np.asarray(cert_ref['relative_excess']), 3).tolist()} (reached "
                  f"{cert_ref['num_reached']}/{cfg.num_seeds}); training loss / empirical optimum's "
                  f"{np.round(1 + np.asarray(cert_emp['relative_excess']), 3).tolist()} (reached "
                  f"{cert_emp['num_reached']}/{cfg.num_seeds}) "
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
            for name, arr in (("feature_snr", d["fsnr"]), ("projection_acc", d["proj"]), ("probe_acc", d["probe"]),
                              *((f"{k}_feature_snr", a) for k, a in d["layer_fsnr"].items())):
                r[f"{tag}_{name}"] = float(arr[:, j].mean())
                r[f"{tag}_{name}_std"] = float(arr[:, j].std(ddof=1))
        rows.append(r)
    times["total_s"] = time.perf_counter() - t_start
    v_full = full["verdict"]
    smallest, mem_full = rows_mem[0], rows_mem[-1]
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
        f"Every layer (N = all): {mem_full['layer_verdicts']}. Certificates (grid-mean denoising loss, rtol "
        f"{cfg.cert_rtol:g}): held-out loss / fitted MoLRG's exact denoiser's "
        f"{_fmt_ratios(mem_full['heldout_vs_molrg'])}. "
        f"Memorisation: " + "; ".join(
            f"N={r['N']} ({r['steps']} steps): {r['verdict']}, copy {r['copy_fraction']:.2f}, NN ratio "
            f"{r['nn_ratio']:.2f}, training loss / empirical optimum's {_fmt_ratios(r['train_vs_empirical'])}"
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
                     "seed_peaks": full["peaks"].tolist(), "layer": layer,
                     "layer_verdicts": mem_full["layer_verdicts"], "layer_peak_sigma": mem_full["layer_peak_sigma"],
                     "heldout_vs_molrg": mem_full["heldout_vs_molrg"],
                     "train_vs_empirical": mem_full["train_vs_empirical"]},
        "heldout_loss_molrg": mse_ref.tolist(),
        "log_ratio": log_ratio, "log_ratio_se": log_ratio_se,
        "memorisation": {str(r["N"]): r for r in rows_mem},
        "runtime": times,
    }
    arrays = {"sigma": sig_np, "pred_feature_snr_boot": boot_fsnr}
    for N in cfg.N_values:
        arrays[f"feature_snr_N{N}"] = per_N[N]["fsnr"]
        for k, a in per_N[N]["layer_fsnr"].items():
            arrays[f"{k}_feature_snr_N{N}"] = a
    table_mem = [{**{k: v for k, v in r.items() if not isinstance(v, dict)},
                  **{f"{k}_{layer_k}": v for k in ("layer_verdicts",) for layer_k, v in r[k].items()},
                  **{f"{k}_{f}": r[k][f] for k in ("heldout_vs_molrg", "train_vs_empirical")
                     for f in ("relative_excess", "num_reached")}} for r in rows_mem]
    return Results(scalars=scalars, tables={"real_digits": rows, "memorisation": table_mem}, arrays=arrays)


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
    for i, key in enumerate(k for k in rows[0] if k.startswith("meas_") and k.endswith("_feature_snr")
                            and k[5:-12].startswith(("hidden_", "output"))):
        y = col(key)
        ax.plot(s, y / y.max(), ":", lw=1, color=f"C{i + 1}", label=f"measured: {key[5:-12].replace('_', ' ')}")
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
#: expected verdicts (and reasons for an expected FAIL) at the default scale and at the quick
#: scale, from the measurements in the module docstring.
EXPECTED = {
    "fitted model predicts a peak": ("PASS", ""),
    "trained model peaks": ("FAIL", "certified models (held-out loss 1.008-1.012x the fitted MoLRG's exact denoiser's, "
                                    "3 of 3 reached at rtol 0.05; width 256, 5,000 steps, cosine) have a monotone "
                                    "decreasing feature SNR in all three hidden layers; so did 0.99x models at 6,000 "
                                    "steps and width 128 at 3,000 and 10,000 steps (module doc, table); only the "
                                    "denoiser's output peaks"),
    "predicted vs measured sigma*": ("FAIL", "the certified model's hidden-layer SNR has no interior peak (vertex "
                                             "at the grid edge, 0.014): log ratio -2.99 +- 0.06 (see trained model "
                                             "peaks)"),
    "memorisation removes the peak": ("FAIL", "the trend is reversed: N = 32 memorises (copy fraction 0.77 at "
                                              "12,000 steps; 0.79-0.88 at 14,000) and all three of its hidden layers "
                                              "have an interior peak, while the certified model on all 1,024 images "
                                              "has none (see trained model peaks); not an artefact of the shorter "
                                              "budget of the full model: trained 12,000 steps like the subsets it "
                                              "still has none (held-out 0.94x). On N = 2^5 .. all (module doc) no "
                                              "monotone trend in N"),
    "trained models certified": ("PASS", ""),
    "smallest N memorises": ("PASS", ""),
    "trained outputs peak where predicted": (
        "PASS", "at the default 5,000 steps (held-out loss 1.008-1.012x the reference) the outputs peak at sigma* "
                "0.316, 1.14x the predicted 0.277 (log ratio 0.13 +- 0.07, within 3 standard errors); but at 6,000 "
                "steps (0.989-0.993x, the better-trained models) the same claim FAILED: 0.40 x/÷ 1.03, 1.44x (log "
                "ratio 0.36 +- 0.05), and at 12,000 steps (0.94x) it is at 0.64, 2.3x. The outputs' peak moves up "
                "as training goes on, so this agreement depends on the training budget and is not robust"),
}
EXPECTED_QUICK = {
    "fitted model predicts a peak": ("PASS", ""),
    "trained model peaks": ("FAIL", "quick scale: 100 steps of a width-32 MLP, far from the reference (held-out "
                                    "loss about 2x the fitted MoLRG's); no layer peaks"),
    "predicted vs measured sigma*": ("FAIL", "quick scale: no measured peak (see trained model peaks)"),
    "memorisation removes the peak": ("FAIL", "quick scale: 100 steps, nothing memorises (copy fraction 0) and "
                                              "the full model has no peak"),
    "trained models certified": ("FAIL", "quick scale: 100 steps leave the held-out loss about 2x the fitted "
                                         "MoLRG's (optimisation failure by design of the smoke test)"),
    "smallest N memorises": ("FAIL", "quick scale: 100 steps, training loss ~5.6x the empirical optimum's, "
                                     "copy fraction 0"),
    "trained outputs peak where predicted": ("FAIL", "quick scale: 100 steps (held-out loss about 2x the "
                                                     "reference); the outputs' feature SNR is monotone decreasing"),
}


def _claim(name, statement, measured, tolerance, passed, source, quick):
    expected, reason = (EXPECTED_QUICK if quick else EXPECTED)[name]
    return Claim(f"real_digits[{name}]", statement, measured, tolerance, bool(passed), source=source,
                 expected=expected, reason=reason)


def claims(results: dict) -> list[Claim]:
    """Claims of the real-data bridge, from the saved results (:func:`molrg.study.load_results`)."""
    cfg, sc = results["manifest"]["config"], results["scalars"]
    quick = bool(results["manifest"].get("quick", False))
    pred, meas = sc["predicted"], sc["measured"]
    z, rtol = float(cfg["z"]), float(cfg["cert_rtol"])
    scale = (f"{cfg['num_seeds']} seeds x {cfg['steps']} steps (subsets {cfg['mem_steps']}), width {cfg['width']}, "
             f"{cfg['bootstrap']} bootstrap refits")
    cert = meas["heldout_vs_molrg"]
    cert_m = {"heldout_loss_over_molrg": [1 + e for e in cert["relative_excess"]],
              "certified": f"{cert['num_reached']}/{len(cert['reached'])}"}
    hidden = {k: v for k, v in meas["layer_verdicts"].items() if k.startswith("hidden_")}
    out = [_claim(
        "fitted model predicts a peak",
        "the MoLRG fitted to the digits (class means included) predicts an interior peak of feature SNR over "
        "sigma (its exact denoiser's outputs through P1's protocol), although P1's appendix says well-separated "
        "means remove the peak",
        {"verdict": pred["verdict"], "peak_sigma": float(pred["peak_sigma"]), "peak_gain": float(pred["peak_gain"]),
         "max_mean_separation": float(sc["fit"]["max_mean_separation"])},
        f"metrics.unimodality verdict 'interior peak' (z = {z:g}, error = bootstrap std of the curve)",
        pred["verdict"] == "interior peak", "molrg", quick)]
    out.append(_claim(
        "trained model peaks",
        f"P1: a diffusion model trained on the digits has an interior peak of hidden-feature SNR over sigma in "
        f"some hidden layer ({scale})",
        {"layer_verdicts": hidden, "layer_peak_sigma": {k: meas["layer_peak_sigma"][k] for k in hidden},
         "output_verdict": meas["layer_verdicts"].get("output"), **cert_m},
        f"metrics.unimodality verdict 'interior peak' in at least one hidden layer (z = {z:g}, error = standard "
        f"error over seeds); the certificate (held-out loss vs the fitted MoLRG's exact denoiser) is reported "
        f"beside it",
        any(v == "interior peak" for v in hidden.values()), "P1", quick))
    lr, se = float(sc["log_ratio"]), float(sc["log_ratio_se"])
    both = pred["verdict"] == "interior peak" and meas["verdict"] == "interior peak"
    out.append(_claim(
        "predicted vs measured sigma*",
        f"the fitted MoLRG predicts the trained model's peak noise level (hidden layer {meas['layer']}): "
        f"measured / predicted sigma* = 1 within uncertainty ({scale})",
        {"predicted_sigma": float(pred["peak_sigma"]), "measured_sigma": float(meas["peak_sigma"]),
         "ratio": float(np.exp(lr)), "log_ratio": lr, "log_ratio_se": se, "both_interior": both},
        f"both curves have an interior peak and |log ratio| <= {z:g} x its standard error (bootstrap and seeds "
        f"combined)",
        both and abs(lr) <= z * se, "molrg", quick))
    mem = [sc["memorisation"][k] for k in sorted(sc["memorisation"], key=int)]
    small, big = mem[0], mem[-1]
    small_hidden = {k: v for k, v in small["layer_verdicts"].items() if k.startswith("hidden_")}
    big_peaks = any(v == "interior peak" for v in hidden.values())
    out.append(_claim(
        "memorisation removes the peak",
        f"P1: a model trained on N = {small['N']} images memorises (copy fraction >= {MEMORISING_COPY_FRACTION}) and "
        f"no hidden layer's feature SNR peaks, while the model trained on all {big['N']} has a peak ({scale})",
        {"N": [int(r["N"]) for r in mem], "layer_verdicts": [r["layer_verdicts"] for r in mem],
         "copy_fraction": [float(r["copy_fraction"]) for r in mem],
         "nn_ratio": [float(r["nn_ratio"]) for r in mem]},
        f"copy fraction (smallest N) >= {MEMORISING_COPY_FRACTION}, no hidden layer 'interior peak' there, and "
        f"some hidden layer 'interior peak' at N = all (z = {z:g})",
        float(small["copy_fraction"]) >= MEMORISING_COPY_FRACTION
        and all(v != "interior peak" for v in small_hidden.values()) and big_peaks, "P1", quick))
    out.append(_claim(
        "trained models certified",
        f"every model trained on all {big['N']} images reaches the reference: its held-out denoising "
        f"loss (mean over the sigma grid) is at most (1 + {rtol:g}) x that of the fitted MoLRG's exact "
        f"denoiser on the same noisy held-out images ({scale})",
        cert_m, f"molrg.certify.certificate, rtol = {rtol:g}, per model",
        cert["num_reached"] == len(cert["reached"]), "molrg", quick))
    emp = small["train_vs_empirical"]
    log_sig = np.log(np.asarray(results["arrays"]["sigma"], float))
    o_peaks = np.log([log_peak(log_sig, f) for f in results["arrays"][f"output_feature_snr_N{big['N']}"]])
    o_lr = float(o_peaks.mean() - np.log(float(pred["peak_sigma"])))
    o_se = float(np.hypot(o_peaks.std(ddof=1) / np.sqrt(o_peaks.size), float(pred["log_se"])))
    o_verdict = meas["layer_verdicts"].get("output")
    out.append(_claim(
        "trained outputs peak where predicted",
        f"the outputs of the models trained on all {big['N']} images, through P1's protocol, peak where the fitted "
        f"MoLRG's exact denoiser's outputs do ({scale})",
        {"verdict": o_verdict, "measured_sigma": float(np.exp(o_peaks.mean())),
         "predicted_sigma": float(pred["peak_sigma"]), "ratio": float(np.exp(o_lr)), "log_ratio": o_lr,
         "log_ratio_se": o_se, **cert_m},
        f"output verdict 'interior peak' and |log ratio| <= {z:g} x its standard error (seeds and bootstrap)",
        o_verdict == "interior peak" and pred["verdict"] == "interior peak" and abs(o_lr) <= z * o_se,
        "molrg", quick))
    out.append(_claim(
        "smallest N memorises",
        f"the models trained on N = {small['N']} images memorise: copy fraction of their samples >= "
        f"{MEMORISING_COPY_FRACTION} ({small['steps']} steps); their training loss against the empirical "
        f"(memorising) optimum's on the same noisy training points is reported beside it",
        {"copy_fraction": float(small["copy_fraction"]), "nn_ratio": float(small["nn_ratio"]),
         "train_loss_over_empirical": [1 + e for e in emp["relative_excess"]],
         "certified": f"{emp['num_reached']}/{len(emp['reached'])} (rtol {rtol:g})"},
        f"mean copy fraction over seeds >= {MEMORISING_COPY_FRACTION}",
        float(small["copy_fraction"]) >= MEMORISING_COPY_FRACTION, "molrg", quick))
    return out


QUICK = {"num_train": 320, "bootstrap": 2, "num_sigmas": 7, "width": 32, "depth": 2, "steps": 100, "mem_steps": 100,
         "batch_size": 64, "N_values": (32, 320), "feature_layer": 1, "probe_steps": 10, "num_samples": 32,
         "sample_steps": 10, "num_seeds": 2}

EXPERIMENT = Experiment(
    name="real_digits", cost=190,
    summary="MoLRG fitted to real digits: predicted vs measured feature-SNR peak, and memorisation",
    config=RealDigitsConfig(), run=run, plot=plot, quick=QUICK,
    paper="P1's real-data argument (peak at intermediate noise, fading with memorisation), on sklearn digits",
    claims=claims)

SWEEPABLES = ()
