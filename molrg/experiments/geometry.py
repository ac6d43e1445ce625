"""What the optimal denoiser does to the classes, seen in 2-D (P1 Fig. 15).

P1's setting (K = 3, n = 50, d = 5, delta = 0.2). At the DDPM timesteps t in {5, 20, 60, 120, 260}
(linear betas, T = 500; ``(sigma_t, s_t)`` from :class:`molrg.schedules.DDPMLinear`) it draws
``x_0 ~ MoLRG``, ``x_t = s_t (x_0 + sigma_t eps)`` and the exact denoiser's output
``xh = E[x_0 | x_t]``, projects ``xh`` on the first column of each class basis ``U_k`` (3-D, one
axis per class) and maps the result to 2-D with one fixed random orthonormal ``3 x 2`` map; the
inputs ``x_t / s_t`` are shown the same way for reference. Scatter plots coloured by the true
class, one panel per timestep.

Besides the figure it records, per timestep: the SNR of the outputs (P1 Def. 1, with standard
errors), the mean posterior confidence in the true class, the Bayes accuracy, how much of each
output's 3-D projection lies on its own class's axis (``E[c_own^2 / ||c||^2]``; 1/3 when the
class structure is gone), and the RMS size of the 3-D projection.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import molrg
from molrg.metrics import sampled_snr
from molrg.schedules import DDPMLinear
from molrg.study import Experiment, Progress, Results, load_results, save_figure
from molrg.study.plotting import FULL_WIDTH, mark_quick, paper_style


@dataclasses.dataclass(frozen=True)
class GeometryConfig:
    n: int = 50  # ambient dimension
    K: int = 3  # number of classes (subspaces)
    d: int = 5  # dimension of each class's subspace
    delta: float = 0.2  # scale of the class-irrelevant detail on the other subspaces
    timesteps: tuple[int, ...] = (5, 20, 60, 120, 260)  # DDPM steps (T = 500) shown
    num_samples: int = 30_000  # samples per timestep for the statistics
    num_points: int = 1500  # of which drawn in the scatter plots
    seed: int = 0  # PRNG seed of the mixture, the projection and the samples

    def validate(self):
        for f in ("n", "d", "num_samples", "num_points"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}: must be >= 1")
        if self.K != 3:
            raise ValueError(f"K: must be 3 (one 3-D axis per class, P1 Fig. 15); got {self.K}")
        if self.K * self.d > self.n:
            raise ValueError(f"d: need K * d <= n for orthogonal subspaces; got {self.K} * {self.d} > {self.n}")
        if not 0.0 <= self.delta < 1.0:
            raise ValueError(f"delta: must lie in [0, 1) (P1 Assumption 1); got {self.delta}")
        if not self.timesteps or min(self.timesteps) < 0 or max(self.timesteps) >= DDPMLinear().T:
            raise ValueError(f"timesteps: must be non-empty DDPM indices in [0, {DDPMLinear().T - 1}]")
        if self.num_samples < 2 * self.K:
            raise ValueError(f"num_samples: must be >= 2 K = {2 * self.K} (every class needs samples)")
        if self.num_points > self.num_samples:
            raise ValueError(f"num_points: must be <= num_samples = {self.num_samples}")


def run(cfg: GeometryConfig, verbose: bool = True) -> Results:
    prog = Progress(2, "geometry", enabled=verbose)
    k_mix, k_map, k_data = jax.random.split(jax.random.key(cfg.seed), 3)
    mix = molrg.paper_molrg(k_mix, n=cfg.n, K=cfg.K, d=cfg.d, delta=cfg.delta)
    dtype = mix.dtype
    q, r = jnp.linalg.qr(jax.random.normal(k_map, (cfg.K, 2), dtype))
    to_2d = np.asarray(q * jnp.sign(jnp.diagonal(r))[None, :], np.float64)  # fixed random orthonormal 3x2
    steps = np.asarray(cfg.timesteps)
    sigma, scale = (np.asarray(v, np.float64) for v in DDPMLinear()(steps))
    prog.update(1, "setup")
    res = sampled_snr(mix, sigma, scale, key=k_data, num_samples=cfg.num_samples, num_points=cfg.num_points)
    prog.update(1, "denoised")

    rows = [{"timestep": int(t), "sigma": float(sigma[j]), "scale": float(scale[j]),
             "snr": float(res["snr"][j]), "snr_se": float(res["snr_se"][j]),
             "mean_true_posterior": float(res["confidence"][j]),
             "mean_true_posterior_se": float(res["confidence_se"][j]),
             "bayes_accuracy": float(res["bayes_accuracy"][j]),
             "own_axis_fraction": float(res["own_axis_fraction"][j]),
             "own_axis_fraction_se": float(res["own_axis_fraction_se"][j]),
             "rms_projection": float(res["rms_projection"][j])} for j, t in enumerate(steps)]
    best = rows[int(np.argmax(res["snr"]))]
    summary = (
        f"Exact denoiser outputs (K={cfg.K}, n={cfg.n}, d={cfg.d}, delta={cfg.delta}; statistics from "
        f"{cfg.num_samples} samples per timestep, {cfg.num_points} drawn) projected on the first column of each "
        f"U_k, then to 2-D by a fixed random orthonormal map. "
        + "; ".join(f"t={r['timestep']} (sigma={r['sigma']:.3g}): {100 * r['own_axis_fraction']:.0f}% of the "
                    f"projected energy on the own-class axis, mean true-class posterior "
                    f"{r['mean_true_posterior']:.2f}, SNR {r['snr']:.3g}" for r in rows)
        + f". The classes are cleanest (highest SNR) at t={best['timestep']}: at small t the outputs keep "
        f"the class-irrelevant detail (delta-sized spread off the own axis), at intermediate t it is removed "
        f"while the outputs stay on their class axes, and at large t the posterior loses the class and the "
        f"outputs shrink to a blob mixing the axes (own-axis fraction -> 1/K)."
    )
    if verbose:
        print("  " + summary)
    scalars = {"summary": summary, "projection_2d": to_2d.tolist(), "best_timestep": best["timestep"]}
    arrays = {"inputs_3d": res["points_in"], "outputs_3d": res["points_out"], "labels": res["labels"],
              "timesteps": steps, "projection_2d": to_2d}
    return Results(scalars=scalars, tables={"geometry": rows}, arrays=arrays)


def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    res = load_results(results_dir)
    cfg = res["manifest"]["config"]
    arr = res["arrays"]
    rows = res["tables"]["geometry"]
    to_2d = arr["projection_2d"]
    labels = arr["labels"]
    steps = arr["timesteps"]
    cols = len(steps)
    with paper_style():
        # Square panels, five to a full-width row: about 1.3 inches each.
        fig, axes = plt.subplots(2, cols, figsize=(FULL_WIDTH, 4.0), squeeze=False,
                                 layout="constrained")
        for j, t in enumerate(steps):
            for i, (key, what) in enumerate((("inputs_3d", r"input $x_t/s_t$"),
                                             ("outputs_3d", r"output $E[x_0|x_t]$"))):
                ax = axes[i, j]
                pts = arr[key][j] @ to_2d
                for k in range(cfg["K"]):
                    m = labels[j] == k
                    ax.scatter(pts[m, 0], pts[m, 1], s=2, alpha=0.5, color=f"C{k}", lw=0, label=f"class {k + 1}",
                               rasterized=True)
                # Where each class axis (the first column of U_k) lands in the 2-D view.
                lim = np.percentile(np.abs(pts), 99.5) * 1.1
                for k in range(cfg["K"]):  # the whole line through the origin (the class spreads both ways)
                    v = to_2d[k] * lim / np.max(np.abs(to_2d[k]))
                    ax.plot([-v[0], v[0]], [-v[1], v[1]], "-", color=f"C{k}", lw=0.8, alpha=0.8)
                ax.set_xlim(-lim, lim)
                ax.set_ylim(-lim, lim)
                ax.set_aspect("equal")
                # Three ticks a side: more crowd a 1.3-inch panel at 7 pt.
                ax.xaxis.set_major_locator(MaxNLocator(3))
                ax.yaxis.set_major_locator(MaxNLocator(3))
                r = rows[j]
                if i == 0:
                    ax.set_title(f"t = {int(t)}\n$\\sigma_t$ = {r['sigma']:.3g}")
                else:
                    ax.set_title(f"own-axis {100 * r['own_axis_fraction']:.0f}%\nSNR {r['snr']:.3g}")
                if i == 1:
                    ax.set_xlabel("2-D coord. 1")
                if j == 0:
                    ax.set_ylabel(f"{what}\n2-D coordinate 2")
        handles, names = axes[1, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncol=len(names), markerscale=4, frameon=False)
        fig.suptitle(f"Optimal-denoiser geometry: projections on the first column of each $U_k$ (lines: the class "
                     f"axes),\nrandom 2-D view; K={cfg['K']}, n={cfg['n']}, d={cfg['d']}, $\\delta$={cfg['delta']}")
        mark_quick(fig, res)
        return save_figure(fig, fig_dir, "geometry")


QUICK = {"num_samples": 4000, "num_points": 600}

EXPERIMENT = Experiment(
    name="geometry", cost=2,
    summary="optimal denoiser outputs projected on the class axes, 2-D view, across DDPM timesteps",
    config=GeometryConfig(), run=run, plot=plot, quick=QUICK, paper="P1 Fig. 15 (posterior geometry)")

SWEEPABLES = ()
