"""Classifiers on features of the optimal denoiser across noise (P1 Fig. 3 setting).

P1 reads the unimodal SNR curve of the optimal denoiser as unimodal representation
quality and probes it with a linear probe (P1 Fig. 3). This experiment measures, on P1's
MoLRG (K = 3, n = 50, d = 5, delta = 0.2) at P1's noise levels, for features

* ``denoiser``: the optimal denoiser output ``E[x_0 | x_t]`` (:func:`molrg.denoise`);
* ``input``: the noisy input ``x_t`` itself (a baseline);

the accuracy of a linear probe (:func:`molrg.probes.linear_probe`, multinomial logistic
regression trained on a training split), of the projection classifier
(the rule of :func:`molrg.probes.projection_classifier`, class subspaces of rank 5 fitted
on the training split), and, as the ceiling, of the Bayes classifier ``argmax_k p(k | x_t)``
(:func:`molrg.posterior`); plus the SNR of the denoiser output (P1 Definition 1,
:func:`molrg.metrics.snr_per_class`) for reference. Each curve is classified with
:func:`molrg.metrics.unimodality` (3 standard errors, 1% relative floor).

Caveat (docs/theory.md section 5): MoLRG classes are zero-mean and the denoiser is an odd function
of ``x_t`` (``E[x_0 | -x_t] = -E[x_0 | x_t]``), so every class-conditional feature mean is
zero and a *linear* probe has no mean difference to use. It can still beat chance (1/K)
somewhat, because the classes are anisotropic (a region bounded by hyperplanes can hold
more of one class's mass than of the others'), but it stays far below the Bayes accuracy.
Class information sits in the block energies, which the projection classifier reads. The
Bayes classifier on ``x_t`` can only lose accuracy as sigma grows (the noisy observations at
larger sigma are a degraded version of those at smaller sigma), so any interior peak of a
classifier on features is a property of the features, not of the information available.

Noise: P1's toy experiments use DDPM (``x_t = s_t (x_0 + sigma_t eps)``); the optimal
denoiser's ``E[x_0 | x_t]`` and posterior depend on ``x_t / s_t`` only, and every classifier
here is invariant to a global feature scale (probe: standardised features; projection:
unit-normalised rows; Bayes: the posterior), so the experiment runs at ``s = 1`` with P1's
timestep sigmas. Within a repeat the same noise draws serve every sigma (common random
numbers), so each curve is smooth in sigma.

Error bars. The experiment is repeated ``num_repeats`` times independently (new random
subspaces, training split, test sets and noise): the linear probe standardises features
coordinate-wise, so it is not rotation invariant and its accuracy varies from one mixture
to the next by more than its binomial error. Curves are means over repeats; their
standard error is the within-repeat one (each repeat centred on its own mean over sigma
before taking the spread, Cousineau-Morey), floored by the binomial (for the SNR,
delta-method) error: a mixture shifts its whole curve, which is irrelevant to the curve's
shape. Verdicts are given for the mean curve, for each repeat with its own binomial
errors, and (reported only) with plain between-repeat errors.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import molrg
from molrg import metrics, probes, schedules
from molrg.study import Claim, Experiment, Progress, Results, load_results, save_figure
from molrg.study.plotting import FULL_WIDTH, mark_quick, paper_style

FEATURES = ("denoiser", "input")


@dataclasses.dataclass(frozen=True)
class ProbesConfig:
    """P1 Fig. 3 setting; empty ``sigmas`` means P1's DDPM timesteps {5, ..., 280} of T = 500."""

    n: int = 50  # ambient dimension
    K: int = 3  # number of classes (subspaces)
    d: int = 5  # dimension of each class's subspace
    delta: float = 0.2  # scale of the class-irrelevant detail on the other subspaces
    num_train: int = 12_000  # training split of the probes and the projection classifier
    num_test_sets: int = 5  # test sets per repeat
    num_test: int = 9_000  # per test set
    sigmas: tuple[float, ...] = ()  # noise levels; empty: P1's DDPM timesteps
    features: tuple[str, ...] = FEATURES  # features classified: denoiser output, input x_t
    probe_steps: int = 150  # most L-BFGS steps of a linear probe
    probe_l2: float = 1e-3  # L2 penalty of the linear probe's weights
    # Stop L-BFGS at this gradient norm: in float32 the objective stalls near 3e-4 after a few
    # steps, and running on to the step cap changed no accuracy by more than 5e-4 (measured).
    probe_gtol: float = 1e-3  # L-BFGS stops at this gradient norm
    rank: int = 5  # rank of the projection classifier's class subspaces
    z: float = 3.0  # significance multiplier (standard errors) of the unimodality verdicts
    num_repeats: int = 3  # independent repeats (new mixture, split, test sets, noise)
    seed: int = 0  # PRNG seed of the repeats

    def validate(self):
        if self.K < 2:
            raise ValueError("K: must be >= 2")
        if self.d < 1 or self.n < 1:
            raise ValueError("d: d and n must be >= 1")
        if self.K * self.d > self.n:
            raise ValueError(f"d: need K * d <= n; got {self.K} * {self.d} > {self.n}")
        if not 0.0 <= self.delta < 1.0:
            raise ValueError("delta: must lie in [0, 1)")
        if self.num_train < self.K * max(self.rank, 2):
            raise ValueError("num_train: need at least K * rank training samples")
        if self.num_test_sets < 2:
            raise ValueError("num_test_sets: need >= 2 (spread over test sets)")
        if self.num_test < 1:
            raise ValueError("num_test: must be >= 1")
        if self.sigmas:
            if len(self.sigmas) < 3:
                raise ValueError("sigmas: need at least 3 noise levels")
            if min(self.sigmas) <= 0 or any(b <= a for a, b in zip(self.sigmas, self.sigmas[1:])):
                raise ValueError("sigmas: must be > 0 and strictly increasing")
        if not self.features or any(f not in FEATURES for f in self.features):
            raise ValueError(f"features: each must be one of {FEATURES}")
        if self.probe_steps < 1:
            raise ValueError("probe_steps: must be >= 1")
        if self.probe_l2 < 0:
            raise ValueError("probe_l2: must be >= 0")
        if self.probe_gtol < 0:
            raise ValueError("probe_gtol: must be >= 0")
        if not 1 <= self.rank <= self.n:
            raise ValueError("rank: must be in [1, n]")
        if self.z <= 0:
            raise ValueError("z: must be > 0")
        if self.num_repeats < 2:
            raise ValueError("num_repeats: need >= 2 (spread over independent repeats)")


QUICK = {"num_train": 1500, "num_test_sets": 2, "num_test": 1500, "sigmas": "0.03,0.1,0.3,1.0,2.0",
         "probe_steps": 40, "num_repeats": 2}


def noise_levels(cfg: ProbesConfig) -> np.ndarray:
    return np.asarray(cfg.sigmas if cfg.sigmas else schedules.paper_timestep_sigmas()[0], float)


def _probe_accuracies(probe, test_x, test_y, num_sets):
    """Per-test-set accuracy of a fitted linear probe: ``(num_sets,)``."""
    z = (test_x - probe.mean[None, :]) / probe.scale[None, :]
    logits = jnp.matmul(z, probe.weights, precision=jax.lax.Precision.HIGHEST) + probe.bias[None, :]
    hits = (jnp.argmax(logits, axis=-1).astype(test_y.dtype) == test_y).reshape(num_sets, -1)
    return jnp.mean(hits.astype(test_x.dtype), axis=1)


def projection_accuracies(fit, test_x, test_y, num_sets):
    """Per-test-set accuracy of the projection classifier ``argmax_k ||V_k^T (h/||h|| - mu)||^2``.

    The scoring of :func:`molrg.probes.projection_classifier` for subspaces fitted once
    (:func:`molrg.metrics.class_subspaces`) and several test sets, ``(num_sets,)``; the tests
    check it against ``projection_classifier`` itself.
    """
    norm = jnp.sqrt(jnp.sum(test_x**2, axis=-1, keepdims=True))
    centred = test_x / jnp.where(norm > 0, norm, jnp.ones_like(norm)) - fit.mean[None, :]
    coef = jnp.einsum("im,kmr->ikr", centred, fit.bases, precision=jax.lax.Precision.HIGHEST)
    hits = (jnp.argmax(jnp.sum(coef**2, axis=-1), axis=-1).astype(test_y.dtype) == test_y).reshape(num_sets, -1)
    return jnp.mean(hits.astype(test_x.dtype), axis=1)


@functools.partial(jax.jit, static_argnames=("num_train", "num_test", "num_sets", "features", "rank",
                                             "steps"))
def _measure(mix, key, sigmas, l2, gtol, *, num_train, num_test, num_sets, features, rank, steps):
    """Everything of one run as one compiled program (compiles dominate at this size).

    Returns a dict of ``(S, ...)`` arrays: per-test-set accuracies ``(S, num_sets)`` of the
    Bayes classifier and ``(S, F, num_sets)`` of the probes, the SNR and its stderr, and
    the probes' training accuracy and final gradient norm ``(S, F)``.
    """
    K = mix.K
    k_data, k_noise = jax.random.split(key)
    x, y = mix.sample(k_data, num_train + num_sets * num_test)
    # Default integer labels: metrics compares them with argmax output (int64 under x64).
    y = y.astype(jnp.argmax(jnp.zeros(2)).dtype)
    # The same noise at every sigma (common random numbers): smooth curves in sigma.
    eps = jax.random.normal(k_noise, x.shape, x.dtype)
    x_train, y_train, e_train = x[:num_train], y[:num_train], eps[:num_train]
    x_test, y_test, e_test = x[num_train:], y[num_train:], eps[num_train:]

    def probe(train_x, test_x):
        fit = probes.linear_probe(train_x, y_train, test_x[:num_test], y_test[:num_test], num_classes=K,
                                   l2=l2, gtol=gtol, steps=steps)
        return _probe_accuracies(fit, test_x, y_test, num_sets), fit.train_accuracy, fit.grad_norm

    def project(train_x, test_x):
        fit = metrics.class_subspaces(train_x, y_train, num_classes=K, rank=rank)
        return projection_accuracies(fit, test_x, y_test, num_sets)

    def one_sigma(sigma):
        xt_train, xt_test = x_train + sigma * e_train, x_test + sigma * e_test
        out_train = molrg.denoise(mix, xt_train, sigma)
        out_test, post = molrg.denoise(mix, xt_test, sigma, return_posterior=True)
        hits = (jnp.argmax(post, axis=-1).astype(y_test.dtype) == y_test).reshape(num_sets, num_test)
        stats = metrics.snr_per_class(out_test, y_test, mix)
        by_name = {"denoiser": (out_train, out_test), "input": (xt_train, xt_test)}
        train_f = jnp.stack([by_name[f][0] for f in features])
        test_f = jnp.stack([by_name[f][1] for f in features])
        # lax.map, not vmap, over features: one copy of the L-BFGS loop compiles faster.
        probe_acc, probe_train, probe_grad = jax.lax.map(lambda a: probe(*a), (train_f, test_f))
        return {"bayes": jnp.mean(hits.astype(post.dtype), axis=1), "snr": stats.snr, "snr_stderr": stats.snr_stderr,
                "linear_probe": probe_acc, "probe_train_accuracy": probe_train, "probe_grad_norm": probe_grad,
                "projection": jax.vmap(project)(train_f, test_f)}

    return jax.lax.map(one_sigma, sigmas)


def _curve_stats(per_repeat, per_repeat_err):
    """Mean over repeats and standard errors for comparing noise levels: ``(mean, err, naive, within)``.

    ``per_repeat``/``per_repeat_err``: ``(R, S)``. A repeat (one mixture, one training split)
    shifts its whole curve up or down, the same at every sigma, and that common shift says
    nothing about the curve's shape. ``err`` is therefore the within-repeat (Cousineau-Morey)
    standard error: each repeat is centred on its own mean over sigma before the spread over
    repeats is taken, with the correction ``sqrt(S / (S - 1))``; it is floored by the
    binomial (or delta-method) error of the mean, ``within``, so that a small number of
    repeats cannot overstate the precision. ``naive`` is the plain between-repeat standard
    error, which includes the common shifts (reported, not used for the verdicts).
    """
    R, S = per_repeat.shape
    mean = per_repeat.mean(axis=0)
    naive = per_repeat.std(axis=0, ddof=1) / math.sqrt(R)
    centred = per_repeat - per_repeat.mean(axis=1, keepdims=True) + mean.mean()
    shape = centred.std(axis=0, ddof=1) / math.sqrt(R) * math.sqrt(S / (S - 1))
    within = np.sqrt(np.mean(per_repeat_err**2, axis=0) / R)
    return mean, np.maximum(shape, within), naive, within


def run(cfg: ProbesConfig, verbose: bool = True) -> Results:
    import time

    sigmas = noise_levels(cfg)
    S, T, R = len(sigmas), cfg.num_test_sets, cfg.num_repeats
    key_mix, key_run = jax.random.split(jax.random.key(cfg.seed))
    # Independent repeats: a new mixture (random subspaces), training split, test sets and noise each.
    mixes = [molrg.paper_molrg(k, n=cfg.n, K=cfg.K, d=cfg.d, delta=cfg.delta) for k in jax.random.split(key_mix, R)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *mixes)
    dtype = mixes[0].dtype
    prog = Progress(1, f"probes ({R} repeats, one compiled program)", enabled=verbose)
    t0 = time.perf_counter()
    out = jax.block_until_ready(_repeat(
        stacked, jax.random.split(key_run, R), jnp.asarray(sigmas, dtype), jnp.asarray(cfg.probe_l2, dtype),
        jnp.asarray(cfg.probe_gtol, dtype),
        num_train=cfg.num_train, num_test=cfg.num_test, num_sets=T, features=tuple(cfg.features), rank=cfg.rank,
        steps=cfg.probe_steps))
    out = {k: np.asarray(v) for k, v in out.items()}
    seconds = time.perf_counter() - t0
    prog.update(1, f"{S} noise levels")

    per_set = {("bayes", "x_t"): out["bayes"]}  # (R, S, T)
    for j, f in enumerate(cfg.features):
        per_set[("linear_probe", f)] = out["linear_probe"][:, :, j]
        per_set[("projection", f)] = out["projection"][:, :, j]
    rows, verdicts, repeat_verdicts, curves, naive = [], {}, {}, {}, {}
    n_pool = T * cfg.num_test
    for (curve, feature), acc in per_set.items():
        pooled = acc.mean(axis=2)  # (R, S)
        binom = np.sqrt(pooled * (1 - pooled) / n_pool)
        mean, err, between, within = _curve_stats(pooled, binom)
        name = f"{curve}/{feature}"
        verdicts[name] = dataclasses.asdict(metrics.unimodality(sigmas, mean, err, z=cfg.z))
        naive[name] = metrics.unimodality(sigmas, mean, between, z=cfg.z).verdict
        repeat_verdicts[name] = [metrics.unimodality(sigmas, pooled[r], binom[r], z=cfg.z).verdict for r in range(R)]
        curves[name] = mean
        for i, s in enumerate(sigmas):
            row = {"curve": curve, "feature": feature, "sigma": float(s), "accuracy": float(mean[i]),
                   "stderr": float(err[i]), "stderr_between_repeats": float(between[i]),
                   "stderr_binomial": float(within[i]),
                   **{f"accuracy_repeat{r}": float(pooled[r, i]) for r in range(R)}}
            if curve == "linear_probe":
                j = cfg.features.index(feature)
                row["train_accuracy"] = float(out["probe_train_accuracy"][:, i, j].mean())
                row["grad_norm_max"] = float(out["probe_grad_norm"][:, i, j].max())
            rows.append(row)
    mean, err, between, within = _curve_stats(out["snr"], out["snr_stderr"])
    verdicts["snr/denoiser"] = dataclasses.asdict(metrics.unimodality(sigmas, mean, err, z=cfg.z))
    naive["snr/denoiser"] = metrics.unimodality(sigmas, mean, between, z=cfg.z).verdict
    repeat_verdicts["snr/denoiser"] = [metrics.unimodality(sigmas, out["snr"][r], out["snr_stderr"][r], z=cfg.z).verdict
                                       for r in range(R)]
    curves["snr/denoiser"] = mean
    for i, s in enumerate(sigmas):
        rows.append({"curve": "snr", "feature": "denoiser", "sigma": float(s), "snr": float(mean[i]),
                     "stderr": float(err[i]), "stderr_between_repeats": float(between[i]),
                     "stderr_binomial": float(within[i]),
                     **{f"snr_repeat{r}": float(out["snr"][r, i]) for r in range(R)}})

    scalars = {"sigmas": sigmas, "verdicts": verdicts, "repeat_verdicts": repeat_verdicts,
               "verdicts_with_between_repeat_errors": naive, "chance": 1.0 / cfg.K,
               "num_test_pooled": n_pool, "num_repeats": R, "seconds_measure": seconds,
               "probe_grad_norm_max": {f: float(out["probe_grad_norm"][:, :, j].max())
                                       for j, f in enumerate(cfg.features)}}
    scalars["summary"] = _summary(cfg, sigmas, curves, verdicts, repeat_verdicts, naive)
    if verbose:
        print(scalars["summary"])
    arrays = {"sigmas": sigmas, **{f"acc_{c}_{f}": a for (c, f), a in per_set.items()},
              "snr": out["snr"], "snr_stderr": out["snr_stderr"]}
    return Results(scalars=scalars, tables={"probes": rows}, arrays=arrays)


@functools.partial(jax.jit, static_argnames=("num_train", "num_test", "num_sets", "features", "rank", "steps"))
def _repeat(mixes, keys, sigmas, l2, gtol, **static):
    """:func:`_measure` for each repeat (stacked mixtures and keys), sequentially."""
    return jax.lax.map(lambda args: _measure(args[0], args[1], sigmas, l2, gtol, **static), (mixes, keys))


def _describe(u: dict, reps: list[str]) -> str:
    agree = sum(v == u["verdict"] for v in reps)
    return (f"{u['verdict']} (max {u['peak_value']:.3f} at sigma={u['peak_x']:.3g}; "
            f"{agree}/{len(reps)} repeats give the same verdict on their own)")


def _summary(cfg, sigmas, curves, verdicts, reps, naive) -> str:
    T, N, R = cfg.num_test_sets, cfg.num_test, cfg.num_repeats
    head = (f"P1 Fig. 3 setting (K={cfg.K}, n={cfg.n}, d={cfg.d}, delta={cfg.delta}); {R} independent repeats "
            f"(mixture, {cfg.num_train} training and {T} x {N} test samples each); {len(sigmas)} noise levels from "
            f"{sigmas[0]:.3g} to {sigmas[-1]:.3g}; verdicts by metrics.unimodality on the mean over repeats "
            f"({cfg.z:g} within-repeat standard errors, 1% floor). ")
    parts = []
    b = curves["bayes/x_t"]
    parts.append(f"Bayes accuracy falls from {b[0]:.3f} to {b[-1]:.3f}: "
                 f"{_describe(verdicts['bayes/x_t'], reps['bayes/x_t'])}.")
    parts.append(f"SNR of the denoiser output: {_describe(verdicts['snr/denoiser'], reps['snr/denoiser'])}.")
    for f in cfg.features:
        lp, pc = curves[f"linear_probe/{f}"], curves[f"projection/{f}"]
        parts.append(f"Linear probe on {f}: accuracy {lp.min():.3f}-{lp.max():.3f} (chance {1 / cfg.K:.3f}), "
                     f"{_describe(verdicts[f'linear_probe/{f}'], reps[f'linear_probe/{f}'])}.")
        parts.append(f"Projection classifier on {f}: {pc.min():.3f}-{pc.max():.3f}, "
                     f"{_describe(verdicts[f'projection/{f}'], reps[f'projection/{f}'])}.")
    changed = [k for k in naive if naive[k] != verdicts[k]["verdict"]]
    if changed:
        parts.append("With plain between-repeat errors (which include each mixture's common level shift) the "
                     "verdict would differ for " + ", ".join(f"{k} ({naive[k]})" for k in changed) + ".")
    return head + " ".join(parts)


def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt

    res = load_results(results_dir)
    rows = res["tables"]["probes"]
    chance = res["scalars"]["chance"]
    verdicts = res["scalars"]["verdicts"]
    # The Bayes classifier and the projection classifier on the denoiser output agree to the
    # width of a line: Bayes is drawn last, on top, as a dashed black line with large open
    # squares, so both stay visible where they coincide.
    styles = {("projection", "denoiser"): dict(color="tab:blue", ls="-", marker="o", ms=3, zorder=2,
                                               label="projection clf., $E[x_0|x_t]$"),
              ("projection", "input"): dict(color="tab:blue", ls="--", marker="^", ms=3, zorder=2,
                                            label="projection clf., $x_t$"),
              ("linear_probe", "denoiser"): dict(color="tab:red", ls="-", marker="o", ms=3, zorder=2,
                                                 label="linear probe, $E[x_0|x_t]$"),
              ("linear_probe", "input"): dict(color="tab:red", ls="--", marker="^", ms=3, zorder=2,
                                              label="linear probe, $x_t$"),
              ("bayes", "x_t"): dict(color="k", ls=(0, (3, 2)), lw=1.0, marker="s", ms=6, mfc="none", mew=0.9,
                                     zorder=5, label="Bayes argmax $p(k|x_t)$")}
    with paper_style():
        fig, (a, b) = plt.subplots(1, 2, figsize=(FULL_WIDTH, 2.6), gridspec_kw=dict(width_ratios=(1.3, 1)))
        for (curve, feature), style in styles.items():
            sub = [r for r in rows if r["curve"] == curve and r["feature"] == feature]
            if not sub:
                continue
            v = verdicts[f"{curve}/{feature}"]["verdict"]
            a.errorbar([r["sigma"] for r in sub], [r["accuracy"] for r in sub], yerr=[r["stderr"] for r in sub],
                       capsize=1.5, **{**style, "label": f"{style['label']} [{v}]"})
        a.axhline(chance, color="gray", lw=0.8, ls=":", label="chance 1/K", zorder=1)
        a.set_xscale("log")
        a.set_xlabel(r"noise level $\sigma$")
        a.set_ylabel("test accuracy (bars: s.e.)")
        a.set_title("classifiers on features of the optimal denoiser")
        handles, labels = a.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: (not labels[i].startswith("Bayes"), i))
        fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
        sub = [r for r in rows if r["curve"] == "snr"]
        b.errorbar([r["sigma"] for r in sub], [r["snr"] for r in sub], yerr=[r["stderr"] for r in sub],
                   marker="o", ms=3, capsize=1.5, color="tab:green",
                   label=f"SNR of $E[x_0|x_t]$ [{verdicts['snr/denoiser']['verdict']}]")
        b.set_xscale("log")
        b.set_xlabel(r"noise level $\sigma$")
        b.set_ylabel("SNR (P1 Definition 1)")
        b.set_title("reference: SNR of the same outputs")
        top = max(r["snr"] + r["stderr"] for r in sub) if sub else 1.0
        b.set_ylim(0.0, 1.3 * top)  # headroom: the legend sits above the curve, never on its peak
        b.legend(loc="upper right")
        fig.tight_layout()
        mark_quick(fig, res)
        return save_figure(fig, fig_dir, "probes")


PROJECTION_REASON = (
    "on the optimal denoiser's outputs the projection classifier argmax_k ||P_k h||^2 is already "
    "about 99.7% accurate at the smallest sigma (the output lies near its own class subspace: energy d "
    "in it against delta^2 d in the others), so its accuracy can only fall with sigma; the peak P1 "
    "shows needs features that mix the classes at small noise, as the linear probe's do")


def claims(results: dict) -> list[Claim]:
    """The probes' claims, from the saved results (:func:`molrg.study.load_results`).

    Bayes accuracy non-increasing in sigma (no rise above ``z`` combined standard errors
    between neighbouring levels), and an interior peak ("interior peak" verdict of
    :func:`molrg.metrics.unimodality` on the mean over repeats) of the denoiser output's
    SNR, of the linear probe and of the projection classifier on denoiser outputs.
    """
    cfg = results["manifest"]["config"]
    sigmas = results["scalars"]["sigmas"]
    verdicts = results["scalars"]["verdicts"]
    reps = results["scalars"]["repeat_verdicts"]
    bayes = [r for r in results["tables"]["probes"] if r["curve"] == "bayes"]
    acc = np.array([r["accuracy"] for r in bayes])
    err = np.array([r["stderr"] for r in bayes])
    rise = np.diff(acc)
    z = rise / np.maximum(np.hypot(err[1:], err[:-1]), 1e-12)
    scale = (f"{cfg['num_repeats']} repeats x ({cfg['num_train']} train, {cfg['num_test_sets']} x "
             f"{cfg['num_test']} test), {len(sigmas)} noise levels")
    out = [Claim(
        "bayes_accuracy_monotone",
        "Bayes accuracy argmax_k p(k | x_t) is non-increasing in sigma",
        {"accuracy_first": float(acc[0]), "accuracy_last": float(acc[-1]), "largest_rise": float(rise.max()),
         "largest_rise_z": float(z.max()), "scale": scale},
        f"no rise between neighbouring noise levels above {cfg['z']:g} combined standard errors of the mean "
        "over repeats (conservative: the noise draws are shared across sigma)",
        bool(z.max() <= cfg["z"]), source="P1", expected="PASS")]
    for key, name, what in (("snr/denoiser", "snr_unimodal", "SNR of the optimal-denoiser output"),
                            ("linear_probe/denoiser", "linear_probe_unimodal",
                             "linear-probe accuracy on optimal-denoiser features"),
                            ("projection/denoiser", "projection_unimodal",
                             "projection-classifier accuracy on optimal-denoiser features")):
        u = verdicts[key]
        out.append(Claim(
            name, f"{what} is unimodal in sigma (an interior peak)",
            {"verdict": u["verdict"], "peak_sigma": u["peak_x"], "peak_value": u["peak_value"],
             "gain_left": u["gain_left"], "gain_right": u["gain_right"],
             "gain_left_stderr": u["gain_left_stderr"], "gain_right_stderr": u["gain_right_stderr"],
             "verdicts_per_repeat": reps[key], "scale": scale},
            f"metrics.unimodality verdict 'interior peak' on the mean over repeats ({cfg['z']:g} within-repeat "
            "standard errors, 1% relative floor)",
            u["verdict"] == "interior peak", source="P1",
            **({"expected": "FAIL", "reason": PROJECTION_REASON} if name == "projection_unimodal"
               else {"expected": "PASS"})))
    return out


EXPERIMENT = Experiment(name="probes", cost=7, summary="linear probe, projection classifier and Bayes accuracy on optimal-denoiser features "
                           "across noise, with unimodality verdicts",
         config=ProbesConfig(), run=run, plot=plot, quick=QUICK,
         paper="P1 Fig. 3 (probe accuracy of the optimal denoiser)", claims=claims,
         quick_fails={"linear_probe_unimodal": "5 noise levels and 2 x 1,500 test points leave the probe's "
                                               "rise within its error bars (the full scale resolves it)"})

SWEEPABLES = ()
