"""How good is Theorem 1? Approximate vs exact SNR of the optimal denoiser (P1 Fig. 14).

Defaults n = 100, d = 5, K = 10, delta = 0.3 (docs/theory.md section 7); one of n, d, K, delta is varied
per panel. For every curve:

* the exact SNR by deterministic quadrature over the block energies
  (:func:`molrg.theory.exact_snr_quadrature`; ~1e-5 relative in float32). P1 estimates it from
  2,400 samples; the quadrature is the cheaper exact route and has no sampling error. In P1's
  setting the exact SNR depends on the data only through the block energies ``||U_l^T x_t||^2``,
  whose law does not involve n, so it does not depend on n (beyond ``n >= K d``). The n panel
  verifies that by sampling the n-dimensional model (``num_samples`` = 2,400 draws per noise
  level, as in P1) for each n and comparing with the quadrature (z-scores);
* the Theorem-1 approximation (:func:`molrg.theory.approx_snr`);
* the gap: the approximation's relative error at the exact peak, where its own peak lands
  (``sigma*_approx / sigma*_exact``), the ratio of the peak heights, and the largest relative
  error over the grid.

Claim (:func:`claims`, from the saved results): Theorem 1's SNR has a single interior peak,
like the exact SNR, in each of P1's settings named in ``peak_settings``
(:data:`molrg.theory.P1_SETTINGS`; the curves of the default settings are those of the
panels), on the experiment's sigma grid; the gap at the peak is recorded.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

import molrg
from molrg import peaks, theory
from molrg.metrics import sampled_snr
from molrg.study import Claim, Experiment, Progress, Results, load_results, save_figure
from molrg.study.plotting import FULL_WIDTH, mark_quick, paper_style, plain_log_ticks

_PANELS = ("n", "d", "K", "delta")
# What the claim reads of compare() in each of its settings.
_CLAIM_KEYS = ("approx_local_maxima", "exact_local_maxima", "exact_peak_sigma", "approx_peak_sigma", "peak_ratio",
               "height_ratio", "rel_error_at_exact_peak", "approx_interior", "exact_interior")


@dataclasses.dataclass(frozen=True)
class ApproximationConfig:
    n: int = 100  # ambient dimension (the panels' default)
    d: int = 5  # dimension of each class's subspace (default)
    K: int = 10  # number of classes (default)
    delta: float = 0.3  # scale of the class-irrelevant detail (default)
    ns: tuple[int, ...] = (50, 100, 200)  # n values of the n panel (checked by sampling)
    ds: tuple[int, ...] = (3, 5, 10)  # d values of the d panel
    Ks: tuple[int, ...] = (3, 5, 10)  # K values of the K panel
    deltas: tuple[float, ...] = (0.1, 0.3, 0.5)  # delta values of the delta panel
    sigma_min: float = 1e-3  # smallest noise level of the curves' grid
    sigma_max: float = 100.0  # largest noise level of the curves' grid
    num_sigmas: int = 128  # log-spaced noise levels of the curves' grid
    num_samples: int = 2400  # n-dim model samples per noise level (n panel), as in P1
    sampled_sigmas: int = 12  # noise levels of the sampled check, log-spaced in [0.01, 10]
    peak_settings: tuple[str, ...] = ("paper", "fig14")  # P1 settings (theory.P1_SETTINGS) of the claim
    seed: int = 0  # PRNG seed of the sampled n-panel check

    def curves(self) -> list[dict]:
        """One dict (panel, value, n, d, K, delta) per curve."""
        base = {"n": self.n, "d": self.d, "K": self.K, "delta": self.delta}
        out = []
        for panel, values in zip(_PANELS, (self.ns, self.ds, self.Ks, self.deltas)):
            for v in values:
                out.append({"panel": panel, "value": v, **base, panel: v})
        return out

    def validate(self):
        for f in ("n", "d", "K", "num_sigmas", "num_samples", "sampled_sigmas"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}: must be >= 1")
        for f in ("ns", "ds", "Ks", "deltas"):
            if not getattr(self, f):
                raise ValueError(f"{f}: must hold at least one value")
        if not 0.0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"sigma_min: need 0 < sigma_min < sigma_max; got {self.sigma_min}, {self.sigma_max}")
        if self.num_sigmas < 8:
            raise ValueError("num_sigmas: must be >= 8 (a dense grid)")
        if self.sampled_sigmas < 2:
            raise ValueError("sampled_sigmas: must be >= 2")
        if (not self.peak_settings or len(set(self.peak_settings)) != len(self.peak_settings)
                or any(name not in theory.P1_SETTINGS for name in self.peak_settings)):
            raise ValueError(f"peak_settings: need distinct names among {tuple(theory.P1_SETTINGS)}; "
                             f"got {self.peak_settings}")
        for c in self.curves():
            if c["K"] < 2:
                raise ValueError(f"{'Ks' if c['panel'] == 'K' else 'K'}: every K must be >= 2; got {c['K']}")
            if c["d"] < 1:
                raise ValueError(f"ds: every d must be >= 1; got {c['d']}")
            if not 0.0 < c["delta"] < 1.0:
                name = "deltas" if c["panel"] == "delta" else "delta"
                raise ValueError(f"{name}: must lie in (0, 1); got {c['delta']}")
            if c["K"] * c["d"] > c["n"]:
                name = {"n": "ns", "d": "ds", "K": "Ks"}.get(c["panel"], "n")
                raise ValueError(f"{name}: need K * d <= n for every curve; got K={c['K']}, d={c['d']}, n={c['n']}")
        if self.num_samples < 2 * max(c["K"] for c in self.curves()):
            raise ValueError("num_samples: must be >= 2 K (every class needs samples)")


def compare(*, d: int, K: int, delta: float, sigma_min: float = 1e-3, sigma_max: float = 100.0,
            num: int = 128) -> dict:
    """Exact (quadrature) vs Theorem-1 SNR on a log grid, with the peaks and the gap.

    Returns:
      dict with ``sigma``, ``exact``, ``approx`` (``(num,)`` arrays) and scalars
      ``exact_peak_sigma``, ``exact_peak_snr``, ``approx_peak_sigma``, ``approx_peak_snr``,
      ``peak_ratio`` (approx / exact location), ``height_ratio``, ``rel_error_at_exact_peak``
      (``approx(sigma*_exact) / exact(sigma*_exact) - 1``), ``max_abs_rel_error`` over the grid,
      ``exact_interior``/``approx_interior`` (peak inside the range), ``approx_local_maxima`` and
      ``exact_local_maxima`` (on the grid).
    """
    grid = np.geomspace(sigma_min, sigma_max, num)
    exact = theory.exact_snr_curve(grid, d=d, K=K, delta=delta)
    approx = theory.approx_snr_curve(grid, d=d, K=K, delta=delta)
    ep = peaks.grid_peak(lambda s: theory.exact_snr_curve(s, d=d, K=K, delta=delta), sigma_min, sigma_max, num)
    ap = peaks.grid_peak(lambda s: theory.approx_snr_curve(s, d=d, K=K, delta=delta), sigma_min, sigma_max, num)
    at_peak = float(theory.approx_snr_curve(np.array([ep["sigma"]]), d=d, K=K, delta=delta, pad=num)[0])
    return {
        "sigma": grid, "exact": exact, "approx": approx,
        "exact_peak_sigma": ep["sigma"], "exact_peak_snr": ep["value"], "exact_interior": ep["interior"],
        "approx_peak_sigma": ap["sigma"], "approx_peak_snr": ap["value"], "approx_interior": ap["interior"],
        "peak_ratio": ap["sigma"] / ep["sigma"], "height_ratio": ap["value"] / ep["value"],
        "rel_error_at_exact_peak": at_peak / ep["value"] - 1.0,
        "max_abs_rel_error": float(np.max(np.abs(approx / exact - 1.0))),
        "exact_local_maxima": peaks.local_maxima(exact), "approx_local_maxima": peaks.local_maxima(approx),
    }


def run(cfg: ApproximationConfig, verbose: bool = True) -> Results:
    curves = cfg.curves()
    prog = Progress(len(curves) + len(cfg.ns) + 1, "approximation", enabled=verbose)
    rows, dense = [], []
    cache: dict[tuple, dict] = {}
    for c in curves:
        key = (c["d"], c["K"], c["delta"])
        if key not in cache:  # the n panel's curves are one curve: the exact SNR does not involve n
            cache[key] = compare(d=c["d"], K=c["K"], delta=c["delta"], sigma_min=cfg.sigma_min,
                                 sigma_max=cfg.sigma_max, num=cfg.num_sigmas)
        r = cache[key]
        label = {k: c[k] for k in ("panel", "value", "n", "d", "K", "delta")}
        rows.append({**label, **{k: v for k, v in r.items() if k not in ("sigma", "exact", "approx")}})
        dense += [{**label, "sigma": float(s), "exact_snr": float(e), "approx_snr": float(a)}
                  for s, e, a in zip(r["sigma"], r["exact"], r["approx"])]
        prog.update(1, f"{c['panel']}={c['value']}")

    # The n panel by sampling the n-dimensional model (P1's route), against the quadrature.
    sig = np.geomspace(0.01, 10.0, cfg.sampled_sigmas)
    exact_s = theory.exact_snr_curve(sig, d=cfg.d, K=cfg.K, delta=cfg.delta, pad=cfg.num_sigmas)
    keys = jax.random.split(jax.random.key(cfg.seed), 2 * len(cfg.ns))
    sampled, chi2 = [], {}
    for i, n in enumerate(cfg.ns):
        mix = molrg.paper_molrg(keys[2 * i], n=n, K=cfg.K, d=cfg.d, delta=cfg.delta)
        # extras=True: the same compiled program as the mechanism experiment's for the same shapes.
        st = sampled_snr(mix, sig, key=keys[2 * i + 1], num_samples=cfg.num_samples)
        z = (st["snr"] - exact_s) / st["snr_se"]
        chi2[n] = float(np.sum(z**2))
        sampled += [{"n": n, "sigma": float(s), "snr": float(st["snr"][j]), "snr_se": float(st["snr_se"][j]),
                     "exact_snr_quadrature": float(exact_s[j]), "z_vs_quadrature": float(z[j])}
                    for j, s in enumerate(sig)]
        prog.update(1, f"sampled n={n}")
    zs = np.array([r["z_vs_quadrature"] for r in sampled])

    def describe(rows):
        return "; ".join(f"{r['panel']}={r['value']:g}: peak ratio {r['peak_ratio']:.2f}, "
                         f"error at exact peak {100 * r['rel_error_at_exact_peak']:+.0f}%" for r in rows)

    key = (cfg.d, cfg.K, cfg.delta)  # the defaults' curve (in every panel unless overridden away)
    if key not in cache:
        cache[key] = compare(d=cfg.d, K=cfg.K, delta=cfg.delta, sigma_min=cfg.sigma_min,
                             sigma_max=cfg.sigma_max, num=cfg.num_sigmas)
    base = cache[key]
    # The claim's settings (P1's; a curve already computed is reused: compare is deterministic).
    claim = {}
    for name in cfg.peak_settings:
        s = theory.P1_SETTINGS[name]
        key = (s["d"], s["K"], s["delta"])
        if key not in cache:
            cache[key] = compare(d=s["d"], K=s["K"], delta=s["delta"], sigma_min=cfg.sigma_min,
                                 sigma_max=cfg.sigma_max, num=cfg.num_sigmas)
        claim[name] = {k: v for k, v in cache[key].items() if k in _CLAIM_KEYS}
    prog.update(1, "claim settings")
    others = [r for r in rows if r["panel"] != "n"]
    single = all(r["approx_local_maxima"] == 1 and r["approx_interior"] for r in rows)
    ratios = np.array([r["peak_ratio"] for r in others])
    errs = np.array([r["rel_error_at_exact_peak"] for r in others])
    summary = (
        f"Exact SNR by quadrature over the block energies (no sampling error), Theorem 1 in closed form, "
        f"{cfg.num_sigmas} log-spaced sigma in [{cfg.sigma_min:g}, {cfg.sigma_max:g}]. At the defaults "
        f"(n={cfg.n}, d={cfg.d}, K={cfg.K}, delta={cfg.delta}) the exact SNR peaks at sigma* = "
        f"{base['exact_peak_sigma']:.3g} (SNR {base['exact_peak_snr']:.3g}); Theorem 1 peaks at "
        f"{base['approx_peak_sigma']:.3g} (SNR {base['approx_peak_snr']:.3g}): {base['peak_ratio']:.2f}x later and "
        f"{base['height_ratio']:.2f}x higher, {100 * base['rel_error_at_exact_peak']:+.0f}% at the exact peak. "
        f"Theorem 1 {'has' if single else 'does NOT have'} a single interior peak on every curve, but over "
        f"the d, K, delta panels it places the peak {ratios.min():.2f}-{ratios.max():.2f}x the exact "
        f"location and errs by {100 * errs.min():+.0f}% to {100 * errs.max():+.0f}% at the exact peak "
        f"({describe(others)}). The approximation is accurate only far from the peak (both share the limits "
        f"1/((K-1) delta^2) and 1/(K-1)). n: the exact SNR does not involve n; sampling the n-dimensional model "
        f"({cfg.num_samples} samples per level, {cfg.sampled_sigmas} levels, n in {list(cfg.ns)}) agrees with the "
        f"quadrature with max |z| = {np.max(np.abs(zs)):.2f} and chi^2 = "
        + ", ".join(f"{chi2[n]:.1f}" for n in cfg.ns) + f" on {cfg.sampled_sigmas} d.o.f."
    )
    if verbose:
        print("  " + summary)
    scalars = {
        "summary": summary,
        "exact_route": "deterministic quadrature over block energies (molrg.theory.exact_snr_quadrature); "
                       "n panel additionally sampled in n dimensions",
        "default_exact_peak_sigma": base["exact_peak_sigma"], "default_approx_peak_sigma": base["approx_peak_sigma"],
        "default_peak_ratio": base["peak_ratio"], "default_rel_error_at_exact_peak": base["rel_error_at_exact_peak"],
        "approx_single_interior_peak_all": single,
        "peak_ratio_range": [float(ratios.min()), float(ratios.max())],
        "rel_error_at_exact_peak_range": [float(errs.min()), float(errs.max())],
        "sampled_max_abs_z": float(np.max(np.abs(zs))), "sampled_chi2_per_n": chi2,
        "sampled_dof": cfg.sampled_sigmas,
        "claims": {"approximation_peak": claim},
    }
    return Results(scalars=scalars, tables={"approximation_peaks": rows, "approximation_curves": dense,
                                            "approximation_sampled": sampled})


_TITLES = {"n": "ambient dimension $n$", "d": "subspace dimension $d$", "K": "number of classes $K$",
           "delta": r"detail level $\delta$"}
_SYMBOLS = {"n": "n", "d": "d", "K": "K", "delta": r"$\delta$"}
"""How the figures name each panel's parameter."""


def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    res = load_results(results_dir)
    cfg = res["manifest"]["config"]
    peak_rows, dense, samp = (res["tables"][k] for k in ("approximation_peaks", "approximation_curves",
                                                     "approximation_sampled"))
    with paper_style():
        # Four panels in a 2 x 2 grid: a 1 x 4 row at full width would leave each panel too
        # narrow for its legend. Constrained layout keeps the suptitle clear of the panel titles.
        fig, axes = plt.subplots(2, 2, figsize=(FULL_WIDTH, 5.6), layout="constrained")
        for ax, panel in zip(axes.flat, _PANELS):
            rows = [r for r in peak_rows if r["panel"] == panel]
            handles = []
            for i, pk in enumerate(rows):
                v = pk["value"]
                cur = [r for r in dense if r["panel"] == panel and r["value"] == v]
                s = np.array([r["sigma"] for r in cur])
                color = f"C{i}"
                vs = f"{int(v)}" if panel != "delta" else f"{v:g}"
                line, = ax.plot(s, [r["exact_snr"] for r in cur], "-", color=color, lw=1.5)
                if panel != "n" or i == 0:
                    ax.plot(s, [r["approx_snr"] for r in cur], "--", color=color, lw=1.2)
                    ax.plot(pk["exact_peak_sigma"], pk["exact_peak_snr"], "o", color=color, ms=4)
                    ax.plot(pk["approx_peak_sigma"], pk["approx_peak_snr"], "^", color=color, ms=5, mfc="white")
                if panel != "n":
                    # One entry per value: the line styles (solid exact, dashed Theorem 1) are
                    # told once, in the suptitle.
                    handles.append(Line2D([], [], color=color, lw=1.5, label=f"{_SYMBOLS[panel]}={vs}"))
                else:
                    pts = [r for r in samp if r["n"] == v]
                    jitter = 1.0 + 0.04 * (i - 1)  # side by side, so the error bars stay readable
                    ax.errorbar(np.array([r["sigma"] for r in pts]) * jitter, [r["snr"] for r in pts],
                                yerr=[r["snr_se"] for r in pts], fmt="o", ms=3, color=f"C{i + 1}", mfc="white",
                                capsize=1.5, label=f"n={vs}: sampled")
            ax.set_xscale("log")
            ax.set_yscale("log")
            plain_log_ticks(ax)
            ax.set_xlabel(r"noise level $\sigma$")
            if panel in ("n", "K"):
                ax.set_ylabel("SNR of the optimal denoiser")
            fixed = ", ".join(f"{_SYMBOLS[k]}={cfg[k]}" for k in _PANELS if k != panel)
            title = f"varying {_TITLES[panel]}\n({fixed})"
            # Room under the lowest curve for a one-row legend, so it covers no data.
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo / 3.0, hi)
            if panel == "n":
                title += f"; points: {cfg['num_samples']:,} draws/level, $\\pm$1 s.e."
                styles = [Line2D([], [], color="C0", lw=1.5, label="exact (every n)"),
                          Line2D([], [], color="C0", lw=1.2, ls="--", label="Theorem 1 (every n)")]
                h, _ = ax.get_legend_handles_labels()
                ax.legend(handles=styles + h, loc="lower left", ncol=2, handlelength=1.6, columnspacing=0.8,
                          labelspacing=0.2)
            else:
                ax.legend(handles=handles, loc="lower left", ncol=len(handles), handlelength=1.6,
                          columnspacing=0.8)
            ax.set_title(title)
        fig.suptitle("Theorem 1 (dashed, triangles: its peak) vs exact SNR (solid, circles: its peak)")
        mark_quick(fig, res)
        paths = save_figure(fig, fig_dir, "approximation")

        # The gap, curve by curve.
        others = [r for r in peak_rows if r["panel"] != "n"]
        labels = [f"{_SYMBOLS[r['panel']]}={int(r['value']) if r['panel'] != 'delta' else r['value']:g}"
                  for r in others]
        x = np.arange(len(others))
        fig, (a, b) = plt.subplots(1, 2, figsize=(FULL_WIDTH, 2.7), layout="constrained")
        a.bar(x, [r["peak_ratio"] for r in others], color=[f"C{_PANELS.index(r['panel'])}" for r in others])
        a.axhline(1.0, color="k", lw=0.8)
        a.set_xticks(x, labels, rotation=45)
        a.set_ylabel(r"peak location: approx. $\sigma^*$ / exact $\sigma^*$")
        a.set_title("where Theorem 1 puts the peak")
        b.bar(x, [100 * r["rel_error_at_exact_peak"] for r in others],
              color=[f"C{_PANELS.index(r['panel'])}" for r in others])
        b.axhline(0.0, color="k", lw=0.8)
        b.set_xticks(x, labels, rotation=45)
        b.set_ylabel(r"relative error at the exact $\sigma^*$ (%)")
        b.set_title("Theorem 1's error at the exact peak")
        mark_quick(fig, res)
        return paths + save_figure(fig, fig_dir, "approximation_gap")


def _decade(x: float) -> str:
    """``1e-3`` for a power of ten, else ``%g``."""
    e = math.log10(x)
    return f"1e{round(e)}" if abs(e - round(e)) < 1e-9 else f"{x:g}"


def claims(results: dict) -> list[Claim]:
    """Theorem 1's single interior peak in each of ``peak_settings``, from the saved results."""
    cfg = results["manifest"]["config"]
    got = results["scalars"]["claims"]["approximation_peak"]
    measured, ok = {}, True
    for name, r in got.items():
        single = r["approx_local_maxima"] == 1 and r["approx_interior"]
        exact_single = r["exact_local_maxima"] == 1 and r["exact_interior"]
        ok = ok and single and exact_single
        measured.update({
            f"{name}_approx_local_maxima": r["approx_local_maxima"],
            f"{name}_exact_local_maxima": r["exact_local_maxima"],
            f"{name}_exact_peak_sigma": r["exact_peak_sigma"], f"{name}_approx_peak_sigma": r["approx_peak_sigma"],
            f"{name}_peak_ratio": r["peak_ratio"], f"{name}_height_ratio": r["height_ratio"],
            f"{name}_rel_error_at_exact_peak": r["rel_error_at_exact_peak"],
        })
    settings = [theory.P1_SETTINGS[name] for name in got]
    return [Claim(
        "approximation_peak",
        "Theorem 1's approximate SNR has a single interior peak, like the exact SNR ("
        + " and ".join(f"K={s['K']},d={s['d']},delta={s['delta']}" for s in settings)
        + "); the gap at the peak is recorded, not tested (docs/theory.md section 6: not exact near the peak)",
        measured,
        f"exactly one interior local maximum of each curve on {cfg['num_sigmas']} log-spaced sigma in "
        f"[{_decade(cfg['sigma_min'])}, {_decade(cfg['sigma_max'])}], maxima counted above 1e-3 of the curve's range "
        "(float32 rounding makes micro-maxima on plateaus) (quadrature for the exact SNR)",
        bool(ok), source="P1", expected="PASS")]


# Quick: P1's Fig. 3 model (so the quadrature and the sampling program are the ones the mechanism
# experiment compiles) with one value per panel and two detail levels; the claim on that model only.
QUICK = {"n": 50, "K": 3, "delta": 0.2, "ns": (50,), "ds": (5,), "Ks": (3,), "deltas": (0.2, 0.3),
         "num_sigmas": 64, "num_samples": 4000, "sampled_sigmas": 6, "peak_settings": ("paper",)}

EXPERIMENT = Experiment(
    name="approximation", cost=12,
    summary="Theorem-1 approximate vs exact SNR, varying n, d, K, delta; the gap at the peak",
    config=ApproximationConfig(), run=run, plot=plot, quick=QUICK,
    paper="P1 Fig. 14 (approximation vs exact SNR)", claims=claims)

SWEEPABLES = ()
