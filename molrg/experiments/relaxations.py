"""Beyond Assumption 1: the SNR curve when the MoLRG assumptions are relaxed (P1 appendix tables).

K = 2, n = 50, d = 5, delta = 0.2, 30,000 samples per noise level, P1's sigma grid
(:data:`molrg.schedules.PAPER_SIGMAS`). Variants (THEORY section 2):

* ``orthogonal``: the baseline (Assumption 1);
* ``overlap30``: the two subspaces at principal angle 30 degrees (all d angles equal;
  :func:`molrg.random_molrg` with ``angle=30``). The class-irrelevant detail of class k lives in
  the other class's subspace, which now overlaps ``U_k``;
* ``unequal_ranks``: ``d = (10, 2)``;
* ``unequal_weights``: ``pi = (0.8, 0.2)``;
* ``separated_means``: orthogonal subspaces plus class means ``mu_k`` of norm ``mean_radius``
  (default 3), pairwise orthogonal, random directions (:func:`molrg.separated_means`); the means
  are ``3 sqrt 2 ~ 4.2`` apart, far more than the within-class spread along the line joining them
  (about ``sqrt(d/n) ~ 0.3`` plus sigma), so the clusters are well separated at every sigma of the
  grid (the Bayes accuracy is reported to show it). The SNR keeps P1's definition (projection on
  ``span U_k``), so the part of the mean outside ``span U_k`` counts as "noise".

All variants but ``unequal_ranks`` and ``separated_means`` are evaluated with the mixture's general
(eigen-frame) exact code path, so they share one compiled program; for orthogonal subspaces it
gives the same numbers as the specialised path (tested).

For each variant and sigma: fresh ``x_0``, ``x_t = x_0 + sigma eps`` (variance exploding),
the exact denoiser's output, and :func:`molrg.metrics.snr_per_class` (per-class ratios, class-mean
SNR and pooled ratio, with delta-method standard errors); batches at different sigmas are
independent. The unimodality verdict (:func:`molrg.metrics.unimodality`, 3 standard errors) is
taken on the class-mean SNR. Tables as CSV and markdown.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

import molrg
from molrg.experiments.mechanism import plain_log_ticks, sampled_snr
from molrg.metrics import unimodality
from molrg.study import Experiment, Progress, Results, load_results, save_figure
from molrg.schedules import PAPER_SIGMAS

VARIANTS = ("orthogonal", "overlap30", "unequal_ranks", "unequal_weights", "separated_means")
_LABELS = {"orthogonal": "orthogonal (baseline)", "overlap30": "30° overlap", "unequal_ranks": "ranks d=(10, 2)",
           "unequal_weights": "weights (0.8, 0.2)", "separated_means": "separated means"}


@dataclasses.dataclass(frozen=True)
class RelaxationsConfig:
    n: int = 50
    K: int = 2
    d: int = 5
    delta: float = 0.2
    num_samples: int = 30_000  # per noise level and variant
    sigmas: tuple[float, ...] = PAPER_SIGMAS
    angle: float = 30.0  # principal angle (degrees) of the overlap variant
    ranks: tuple[int, ...] = (10, 2)
    weights: tuple[float, ...] = (0.8, 0.2)
    mean_radius: float = 3.0  # norm of each class mean in the separated-means variant
    variants: tuple[str, ...] = VARIANTS
    seed: int = 0

    def validate(self):
        for f in ("n", "d", "num_samples"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}: must be >= 1")
        if self.K < 2:
            raise ValueError("K: must be >= 2")
        if not self.variants or any(v not in VARIANTS for v in self.variants):
            raise ValueError(f"variants: must be a non-empty subset of {VARIANTS}; got {self.variants}")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("variants: must not repeat")
        if not 0.0 <= self.delta < 1.0:
            raise ValueError(f"delta: must lie in [0, 1); got {self.delta}")
        if len(self.sigmas) < 3 or min(self.sigmas) <= 0 or list(self.sigmas) != sorted(set(self.sigmas)):
            raise ValueError("sigmas: need at least 3 strictly increasing values > 0")
        if self.K * self.d > self.n:
            raise ValueError(f"d: need K * d <= n; got {self.K} * {self.d} > {self.n}")
        if not 0.0 < self.angle <= 90.0:
            raise ValueError(f"angle: must lie in (0, 90] degrees; got {self.angle}")
        if "overlap30" in self.variants and self.d * (self.K + 1) > self.n:
            raise ValueError(f"angle: the overlap variant needs n >= d (K + 1) = {self.d * (self.K + 1)}")
        if len(self.ranks) != self.K or min(self.ranks) < 1 or sum(self.ranks) > self.n:
            raise ValueError(f"ranks: need K = {self.K} ranks >= 1 with sum <= n; got {self.ranks}")
        if len(self.weights) != self.K or min(self.weights) <= 0 or abs(sum(self.weights) - 1) > 1e-9:
            raise ValueError(f"weights: need K = {self.K} positive weights summing to 1; got {self.weights}")
        if self.mean_radius <= 0:
            raise ValueError(f"mean_radius: must be > 0; got {self.mean_radius}")
        if self.K > self.n:
            raise ValueError("K: separated means need K <= n")
        if self.num_samples < 4 * self.K / min(self.weights):
            raise ValueError("num_samples: too few for every class to be sampled")


def make_variant(name: str, cfg: RelaxationsConfig, key) -> molrg.MoLRG:
    """The mixture of one variant (all share the base settings of ``cfg``)."""
    k_bases, k_means = jax.random.split(key)
    common = dict(n=cfg.n, K=cfg.K, delta=cfg.delta)
    if name in ("orthogonal", "unequal_weights"):
        weights = jnp.asarray(cfg.weights) if name == "unequal_weights" else None
        mix = molrg.random_molrg(k_bases, d=cfg.d, weights=weights, **common)
        # The general (eigen-frame) code path is exact for orthogonal subspaces too; using it
        # here lets these variants and the overlap variant share one compiled sampling program
        # (same shapes and pytree structure), which saves seconds of XLA compilation.
        return molrg.MoLRG(mix.bases, weights=mix.weights, delta=mix.delta, structure="general")
    if name == "overlap30":
        return molrg.random_molrg(k_bases, d=cfg.d, angle=cfg.angle, **common)
    if name == "unequal_ranks":
        return molrg.random_molrg(k_bases, d=cfg.ranks, **common)
    if name == "separated_means":
        means = molrg.separated_means(k_means, n=cfg.n, K=cfg.K, radius=cfg.mean_radius)
        return molrg.random_molrg(k_bases, d=cfg.d, means=means, **common)
    raise ValueError(f"variant: unknown {name!r}; known: {VARIANTS}")


def compute(cfg: RelaxationsConfig, variants=None, *, verbose: bool = False) -> dict:
    """Sampled SNR statistics per variant: ``{name: sampled_snr(...) dict + verdict}``."""
    variants = tuple(variants or cfg.variants)
    keys = jax.random.split(jax.random.key(cfg.seed), 2 * len(VARIANTS))
    prog = Progress(len(variants), "relaxations", enabled=verbose)
    out = {}
    for name in variants:
        i = VARIANTS.index(name)  # a variant's draws do not depend on which others run
        mix = make_variant(name, cfg, keys[2 * i])
        st = sampled_snr(mix, np.asarray(cfg.sigmas), key=keys[2 * i + 1], num_samples=cfg.num_samples,
                         extras=False)
        st["verdict"] = unimodality(np.asarray(cfg.sigmas), st["snr"], st["snr_se"])
        out[name] = st
        prog.update(1, name)
    return out


def _pm(v, se):
    return f"{v:.3g} ± {se:.2g}"


def markdown_tables(cfg: RelaxationsConfig, stats: dict) -> str:
    """The tables of P1's appendix as markdown: class-mean SNR, then per class."""
    names = list(stats)
    lines = [f"SNR of the exact denoiser's outputs (class mean of per-class ratios, ± 1 s.e.), K={cfg.K}, "
             f"n={cfg.n}, d={cfg.d}, delta={cfg.delta}, {cfg.num_samples:,} samples per cell.", "",
             "| sigma | " + " | ".join(_LABELS[v] for v in names) + " |",
             "|---:|" + "---:|" * len(names)]
    for j, s in enumerate(cfg.sigmas):
        lines.append(f"| {s:g} | " + " | ".join(_pm(stats[v]["snr"][j], stats[v]["snr_se"][j]) for v in names) + " |")
    lines.append("| **verdict** | " + " | ".join(stats[v]["verdict"].verdict for v in names) + " |")
    lines += ["", "Per-class SNR (class k: ratio of class-k expectations, ± 1 s.e.).", "",
              "| sigma | " + " | ".join(f"{_LABELS[v]}, class {k + 1}" for v in names for k in range(cfg.K)) + " |",
              "|---:|" + "---:|" * (len(names) * cfg.K)]
    for j, s in enumerate(cfg.sigmas):
        lines.append(f"| {s:g} | " + " | ".join(_pm(stats[v]["ratio"][j, k], stats[v]["ratio_se"][j, k])
                                             for v in names for k in range(cfg.K)) + " |")
    return "\n".join(lines)


def run(cfg: RelaxationsConfig, verbose: bool = True) -> Results:
    stats = compute(cfg, verbose=verbose)
    rows = []
    for name, st in stats.items():
        for j, s in enumerate(cfg.sigmas):
            row = {"variant": name, "sigma": float(s), "snr": float(st["snr"][j]), "snr_se": float(st["snr_se"][j]),
                   "pooled_snr": float(st["pooled"][j]), "pooled_snr_se": float(st["pooled_se"][j]),
                   "bayes_accuracy": float(st["bayes_accuracy"][j]),
                   "mean_true_posterior": float(st["confidence"][j])}
            for k in range(cfg.K):
                row[f"snr_class{k + 1}"] = float(st["ratio"][j, k])
                row[f"snr_class{k + 1}_se"] = float(st["ratio_se"][j, k])
                row[f"count_class{k + 1}"] = int(st["count"][j, k])
            rows.append(row)
    verdicts = [{"variant": name, "verdict": st["verdict"].verdict, "peak_sigma": st["verdict"].peak_x,
                 "peak_snr": st["verdict"].peak_value, "gain_left": st["verdict"].gain_left,
                 "gain_left_se": st["verdict"].gain_left_stderr, "gain_right": st["verdict"].gain_right,
                 "gain_right_se": st["verdict"].gain_right_stderr} for name, st in stats.items()]
    md = markdown_tables(cfg, stats)
    parts = []
    for name, st in stats.items():
        v = st["verdict"]
        parts.append(f"{_LABELS[name]}: {v.verdict} (SNR {st['snr'][0]:.3g} at sigma={cfg.sigmas[0]:g}, "
                     f"max {v.peak_value:.3g} at sigma={v.peak_x:g}, {st['snr'][-1]:.3g} at sigma={cfg.sigmas[-1]:g})")
    summary = (f"Sampled exact-denoiser SNR, K={cfg.K}, n={cfg.n}, d={cfg.d}, delta={cfg.delta}, "
               f"{cfg.num_samples:,} samples per sigma and variant, P1's sigma grid; verdicts at 3 standard errors. "
               + "; ".join(parts) + ". Separated means: radius "
               f"{cfg.mean_radius:g} (Bayes accuracy "
               + (f"{np.min(stats['separated_means']['bayes_accuracy']):.3f} at worst"
                  if "separated_means" in stats else "n/a") + ").")
    if verbose:
        print("  " + summary)
    scalars = {"summary": summary, "markdown": md,
               "verdicts": {name: st["verdict"].verdict for name, st in stats.items()}}
    return Results(scalars=scalars, tables={"relaxations": rows, "relaxations_verdicts": verdicts})


def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt
    res = load_results(results_dir)
    cfg = res["manifest"]["config"]
    rows = res["tables"]["relaxations"]
    verdicts = {r["variant"]: r["verdict"] for r in res["tables"]["relaxations_verdicts"]}
    names = [v for v in VARIANTS if v in verdicts]
    K = cfg["K"]
    fig, axes = plt.subplots(1, 1 + K, figsize=(5.2 * (1 + K), 4.3))
    for i, name in enumerate(names):
        r = [x for x in rows if x["variant"] == name]
        s = np.array([x["sigma"] for x in r])
        marker = "osD^v"[i % 5]
        axes[0].errorbar(s, [x["snr"] for x in r], yerr=[x["snr_se"] for x in r], fmt=f"{marker}-", ms=4, capsize=2,
                         color=f"C{i}", label=f"{_LABELS[name]}: {verdicts[name]}")
        for k in range(K):
            axes[1 + k].errorbar(s, [x[f"snr_class{k + 1}"] for x in r], yerr=[x[f"snr_class{k + 1}_se"] for x in r],
                                 fmt=f"{marker}-", ms=4, capsize=2, color=f"C{i}", label=_LABELS[name])
    axes[0].set_title("class-mean SNR (verdict at 3 s.e.)", fontsize=9)
    for k in range(K):
        axes[1 + k].set_title(f"class {k + 1} SNR"
                              + (f" (ranks: d={cfg['ranks'][k]}, weights: {cfg['weights'][k]})" if K == 2 else ""),
                              fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax)
        ax.set_xlabel(r"noise level $\sigma$")
        ax.set_ylabel("SNR of $E[x_0\\,|\\,x_t]$ (P1 Def. 1, $\\pm$1 s.e.)")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Relaxing Assumption 1: K={K}, n={cfg['n']}, d={cfg['d']}, $\\delta$={cfg['delta']}, "
                 f"{cfg['num_samples']:,} samples per point", fontsize=10)
    fig.tight_layout()
    paths = save_figure(fig, fig_dir, "relaxations")
    md_path = os.path.join(fig_dir, "relaxations_table.md")
    tmp = md_path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(res["scalars"]["markdown"] + "\n")
    os.replace(tmp, md_path)
    return paths + [md_path]


EXPERIMENT = Experiment(name="relaxations",
         summary="SNR of the exact denoiser when Assumption 1 is relaxed (overlap, ranks, weights, means)",
         config=RelaxationsConfig(), run=run, plot=plot, quick={"num_samples": 4000,
                "variants": ("orthogonal", "overlap30", "unequal_weights", "separated_means")},
         paper="P1 appendix tables (relaxed MoLRG assumptions)")

SWEEPABLES = ()
