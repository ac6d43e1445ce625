"""Memorisation turns the unimodal SNR curve monotone: the exact version with the empirical denoiser.

P1 (docs/theory.md section 7) reports that a diffusion model that memorises its training set loses
the interior peak of its feature-quality-versus-noise curve: the curve turns monotone
decreasing. On MoLRG data the fully memorising model is known exactly: it is the empirical
optimal denoiser of the training set (docs/theory.md section 3),

    E_emp[x_0 | x_t] = sum_i y_i softmax_i( -||x_t - y_i||^2 / (2 sigma^2) ),

the minimiser of the training loss over all functions. This experiment measures, in P1's
setting (K = 3, n = 50, d = 5, delta = 0.2, s = 1), the SNR of its outputs (P1 Definition 1,
docs/theory.md section 5) against sigma, for training sets of N = 2^4 ... 2^12 samples,

* for fresh **test** inputs ``x_0 + sigma eps`` (``x_0`` not in the training set), and
* for noised **training** inputs ``y_i + sigma eps``,

next to the exact optimal denoiser's curve (the N -> infinity limit), and classifies each
curve with :func:`molrg.metrics.unimodality` (z = 3 standard errors across seeds). Each seed
is a new mixture and the seeds differ mostly in the curve's overall level, so the verdict is
taken on the per-seed curves divided by their own value at the smallest sigma (a paired
comparison; the unpaired verdict on the raw mean is reported next to it). A heatmap of the
**peak gain** ``max_sigma SNR / SNR(sigma_min)`` over (d, N) shows where the peak emerges.
Within a seed every sigma uses the same mixture, test points and noise direction (common
random numbers), so a curve is smooth in sigma.

Claim ``memorization_shape`` (P1: a memorising model loses the interior peak): the curve for
d = 5 has no interior peak at N = ``claim_N_small`` (16) and an interior peak at N =
``claim_N_large`` (4096; 512 quick), over ``claim_num_seeds`` seeds (5; 3 quick), for test
inputs and for noised training inputs. run() measures it; :func:`claims` reads it back.

Every piece is the core's: :meth:`molrg.MoLRG.sample` (mixture from
:func:`molrg.random_molrg`), :func:`molrg.denoise` (exact), :func:`molrg.empirical_denoise`
and :func:`molrg.metrics.snr`. The sweepable study ``memorization`` (one point: one (d, N,
sigma, delta, seed); outputs ``snr_test``, ``snr_train``, ``snr_exact``, ``mse_test``,
``mse_exact``) draws the training set at ``N_max`` and keeps its first N rows with the
empirical denoiser's ``weights`` mask (and the SNR's ``sample_weights`` for the training
inputs), so N is numeric (traced): one compiled program serves every N <= ``N_max``.
Training sets are nested in N for a seed. d fixes the shapes of the mixture, so it is
static: one compile per d (and per N bucket, see :func:`sweep_curves`). For example

    molrg sweep memorization --set N_max=4096 --set num_test=2000 --batch 36 \
        --grid N=16,64,256,1024,4096 --grid sigma=0.002:1.923:9g --grid seed=0,1,2,3

(``--batch`` bounds the memory, about batch x (num_test + num_train_inputs) x 2048 numbers.)
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import molrg
from molrg import metrics
from molrg.study import Claim, Experiment, Results, load_results, run_sweep, save_figure, sweepable
from molrg.study.plotting import FULL_WIDTH, MIN_FONT, mark_quick, paper_style, plain_log_ticks


# ------------------------------------------------------------------------------------------
# The sweepable study.
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MemorizationPoint:
    """One (d, N, sigma, delta, seed) point. Static: n, K, d, N_max, num_test,
    num_train_inputs. Numeric: N, sigma, delta, seed."""

    n: int = 50  # ambient dimension
    K: int = 3  # number of classes (subspaces)
    d: int = 5  # dimension of each class's subspace
    N: int = 16  # training-set size (the first N of N_max drawn samples)
    sigma: float = 0.3  # noise level
    delta: float = 0.2  # scale of the class-irrelevant detail on the other subspaces
    seed: int = 0  # PRNG seed of the mixture, training set, test set and noise
    N_max: int = 512  # training samples drawn (N <= N_max share one compiled program)
    num_test: int = 200  # fresh test inputs
    num_train_inputs: int = 200  # noised training inputs (the first ones of the training set)

    def validate(self):
        for f in ("n", "K", "d", "N", "N_max", "num_test", "num_train_inputs"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{f}: must be a positive integer; got {v!r}")
        if self.N > self.N_max:
            raise ValueError(f"N: must be <= N_max = {self.N_max}; got {self.N}")
        if self.K < 2:
            raise ValueError("K: the SNR needs K >= 2 classes")
        if self.K * self.d > self.n:
            raise ValueError(f"d: need K * d <= n for orthogonal subspaces; got {self.K} * {self.d} > {self.n}")
        if not self.sigma > 0:
            raise ValueError(f"sigma: must be > 0; got {self.sigma}")
        if not 0 <= self.delta < 1:
            raise ValueError(f"delta: must lie in [0, 1); got {self.delta}")
        if self.seed < 0 or self.seed >= 2**31:
            raise ValueError(f"seed: must lie in [0, 2^31); got {self.seed}")


def _point(cfg: MemorizationPoint, v):
    k_mix, k_train, k_test, k_e1, k_e2 = jax.random.split(jax.random.key(v["seed"]), 5)
    mix = molrg.random_molrg(k_mix, n=cfg.n, K=cfg.K, d=cfg.d, delta=v["delta"])
    dtype = mix.dtype
    sigma = jnp.asarray(v["sigma"]).astype(dtype)
    train, train_labels = mix.sample(k_train, cfg.N_max)
    x0, labels = mix.sample(k_test, cfg.num_test)
    xt = x0 + sigma * jax.random.normal(k_e1, x0.shape, dtype)
    T = min(cfg.num_train_inputs, cfg.N_max)  # the first T training points (those < N count)
    xt_train = train[:T] + sigma * jax.random.normal(k_e2, (T, cfg.n), dtype)
    rows = jnp.arange(cfg.N_max) < v["N"]  # the training set: the first N of N_max points
    # One pass over the training set for both kinds of input.
    emp = molrg.empirical_denoise(train, jnp.concatenate([xt, xt_train]), sigma, weights=rows)
    emp_test, emp_train = emp[:cfg.num_test], emp[cfg.num_test:]
    exact = molrg.denoise(mix, xt, sigma)
    # A small training set may miss a class: the SNR then averages over the classes present.
    return {"snr_test": metrics.snr(emp_test, labels, mix, skip_absent=True),
            "snr_train": metrics.snr(emp_train, train_labels[:T], mix, sample_weights=rows[:T],
                                     skip_absent=True),
            "snr_exact": metrics.snr(exact, labels, mix, skip_absent=True),
            "mse_test": jnp.mean(jnp.sum(jnp.square(emp_test - x0), axis=1)),
            "mse_exact": jnp.mean(jnp.sum(jnp.square(exact - x0), axis=1))}


MEMORIZATION = sweepable(
    "memorization",
    summary="SNR of the memorising (empirical) denoiser, test and training inputs, vs the exact one",
    config=MemorizationPoint(),
    static=("n", "K", "d", "N_max", "num_test", "num_train_inputs"),
    numeric=("N", "sigma", "delta", "seed"), point=_point)


def _divisor_at_most(num: int, cap: float) -> int:
    return max(k for k in range(1, num + 1) if num % k == 0 and (k <= cap or k == 1))


def sweep_curves(*, n, K, d_values, N_values, sigmas, delta, seeds, num_test, num_train_inputs,
                 small_N_max, out_dir, verbose=False, memory_floats: float = 4e7) -> list[dict]:
    """Runs the ``memorization`` study over (d, N, sigma, seed), one compile per (d, N bucket).

    N <= small_N_max share a program with ``N_max = small_N_max``; larger N share one with
    ``N_max = max(N_values)``. Points per compiled call: the largest divisor of the number
    of noise levels whose logits stay under ``memory_floats`` numbers, so that every call
    of a program has one shape (a compiled program is specialised to it) and sweeps with
    the same static values share one compile whatever their (N, seed) grid (the experiment's
    curves and its claim do). Returns the sweep rows.
    """
    buckets = [(small_N_max, [N for N in N_values if N <= small_N_max]),
               (max(N_values), [N for N in N_values if N > small_N_max])]
    rows = []
    for N_max, Ns in buckets:
        if not Ns:
            continue
        per_point = N_max * (num_test + num_train_inputs)
        res = run_sweep(MEMORIZATION, {
            "d": list(d_values), "N": Ns, "sigma": [float(s) for s in sigmas], "seed": list(seeds)},
            overrides={"n": n, "K": K, "N_max": N_max,
                       "num_test": num_test, "num_train_inputs": num_train_inputs, "delta": delta},
            out_dir=out_dir, batch_size=_divisor_at_most(len(sigmas), memory_floats // per_point),
            verbose=verbose)
        rows += res["rows"]
    return rows


def seed_curves(rows, key: str, d: int, N: int, sigmas) -> np.ndarray:
    """``(S, L)``: output ``key`` at (d, N) for every seed (rows) and sigma (columns)."""
    seeds = sorted({int(r["seed"]) for r in rows})
    out = np.full((len(seeds), len(sigmas)), np.nan)
    for r in rows:
        if int(r["d"]) == d and int(r["N"]) == N:
            j = int(np.argmin(np.abs(np.log(np.asarray(sigmas) / r["sigma"]))))
            out[seeds.index(int(r["seed"])), j] = r[key]
    return out


def _mean_se(c: np.ndarray):
    S = c.shape[0]
    return c.mean(0), (c.std(0, ddof=1) / np.sqrt(S) if S > 1 else np.zeros(c.shape[1]))


def verdict(sigmas, curves: np.ndarray) -> dict:
    """Unimodality of a curve measured on several seeds (rows of ``curves``).

    Primary verdict (``verdict``): on the per-seed curves divided by their own value at the
    smallest sigma, mean and standard error across seeds. Seeds differ mostly in the
    curve's overall level (each seed is a new mixture), so this paired comparison is the
    fair test of "the curve rises above its small-noise value"; ``peak_gain`` is that
    normalised curve's maximum (1 when the maximum is at the left end). The unpaired
    verdict on the raw mean and standard error is reported too (``verdict_unpaired``).
    """
    sigmas = np.asarray(sigmas)
    norm = curves / curves[:, :1]
    m, e = _mean_se(norm)
    u = metrics.unimodality(sigmas, m, e)
    rm, re = _mean_se(curves)
    raw = metrics.unimodality(sigmas, rm, re)
    return {"verdict": u.verdict, "peak_sigma": u.peak_x, "peak_gain": u.peak_value,
            "peak_gain_stderr": float(e[u.peak_index]),
            "right_gain": u.gain_right, "right_gain_stderr": u.gain_right_stderr,
            "verdict_unpaired": raw.verdict, "peak_sigma_unpaired": raw.peak_x,
            "peak_snr": raw.peak_value, "snr_at_sigma_min": float(rm[0]),
            "gain_left_unpaired": raw.gain_left, "gain_left_unpaired_stderr": raw.gain_left_stderr,
            "seeds": int(curves.shape[0])}


# ------------------------------------------------------------------------------------------
# The experiment.
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MemorizationConfig:
    n: int = 50  # ambient dimension
    K: int = 3  # number of classes (subspaces)
    d: int = 5  # the curves' d (P1's setting); must be in heatmap_d_values
    delta: float = 0.2  # scale of the class-irrelevant detail on the other subspaces
    N_values: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)  # training-set sizes
    heatmap_d_values: tuple[int, ...] = (2, 5, 10)  # d values of the peak-gain heatmap
    sigma_min: float = 0.002  # smallest noise level (log-spaced grid)
    sigma_max: float = 3.0  # largest noise level
    num_sigmas: int = 12  # noise levels of the curves
    num_seeds: int = 8  # seeds (mixtures) per curve
    num_test: int = 200  # fresh test inputs per point
    num_train_inputs: int = 200  # noised training inputs per point
    small_N_max: int = 512  # N up to this share one compiled program; larger N another
    # The claim memorization_shape: curves at d, N = claim_N_small and claim_N_large, over
    # claim_num_seeds seeds (its own sweep, so its numbers do not depend on N_values/num_seeds).
    claim_N_small: int = 16  # the claim's small N (no interior peak expected)
    claim_N_large: int = 4096  # the claim's large N (an interior peak expected)
    claim_num_seeds: int = 5  # seeds of the claim's curves
    sweep_dir: str = ""  # keep the sweep folders here (resumable); empty: a temporary folder

    def validate(self):
        if self.d not in self.heatmap_d_values:
            raise ValueError(f"d: must be one of heatmap_d_values {self.heatmap_d_values}; got {self.d}")
        if not self.N_values or min(self.N_values) < 2:
            raise ValueError("N_values: need values >= 2")
        if list(self.N_values) != sorted(set(self.N_values)):
            raise ValueError("N_values: must be strictly increasing")
        if self.K < 2 or self.K * max(self.heatmap_d_values) > self.n:
            raise ValueError("K, heatmap_d_values: need K >= 2 and K * max(d) <= n")
        if not 0 < self.sigma_min < self.sigma_max or self.num_sigmas < 3:
            raise ValueError("sigma_min, sigma_max, num_sigmas: need 0 < min < max and >= 3 levels")
        if self.num_seeds < 2:
            raise ValueError("num_seeds: need >= 2 (errors across seeds)")
        if not 0 <= self.delta < 1:
            raise ValueError(f"delta: must lie in [0, 1); got {self.delta}")
        if min(self.num_test, self.num_train_inputs, self.small_N_max) < 1:
            raise ValueError("num_test, num_train_inputs, small_N_max: must be >= 1")
        if not 2 <= self.claim_N_small < self.claim_N_large:
            raise ValueError(f"claim_N_small, claim_N_large: need 2 <= small < large; got "
                             f"{self.claim_N_small}, {self.claim_N_large}")
        if self.claim_num_seeds < 2:
            raise ValueError("claim_num_seeds: need >= 2 (errors across seeds)")


def _sigmas(cfg) -> np.ndarray:
    return np.geomspace(cfg.sigma_min, cfg.sigma_max, cfg.num_sigmas)


def run(cfg: MemorizationConfig, verbose: bool = True) -> Results:
    sigmas = _sigmas(cfg)
    own = not cfg.sweep_dir
    root = tempfile.mkdtemp(prefix="molrg-memo-") if own else cfg.sweep_dir
    common = dict(n=cfg.n, K=cfg.K, sigmas=sigmas, delta=cfg.delta, num_test=cfg.num_test,
                  num_train_inputs=cfg.num_train_inputs, small_N_max=cfg.small_N_max, out_dir=root,
                  verbose=verbose)
    claim_Ns = (cfg.claim_N_small, cfg.claim_N_large)
    t0 = time.perf_counter()
    try:
        rows = sweep_curves(d_values=cfg.heatmap_d_values, N_values=cfg.N_values,
                            seeds=range(cfg.num_seeds), **common)
        t1 = time.perf_counter()
        claim_rows = sweep_curves(d_values=(cfg.d,), N_values=claim_Ns, seeds=range(cfg.claim_num_seeds),
                                  **common)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    seconds, seconds_claim = t1 - t0, time.perf_counter() - t1
    claim_verdicts = [{"inputs": inputs, "N": N,
                       **verdict(sigmas, seed_curves(claim_rows, f"snr_{inputs}", cfg.d, N, sigmas))}
                      for inputs in ("test", "train") for N in claim_Ns]

    curves, verdicts = [], []
    for d in cfg.heatmap_d_values:
        for N in cfg.N_values:
            per_seed = {k: seed_curves(rows, f"snr_{k}", d, N, sigmas) for k in ("test", "train", "exact")}
            for i, s in enumerate(sigmas):
                row = {"d": d, "N": N, "sigma": float(s), "seeds": per_seed["test"].shape[0]}
                for k, c in per_seed.items():
                    m, e = _mean_se(c)
                    row[f"snr_{k}"] = float(m[i])
                    row[f"snr_{k}_stderr"] = float(e[i])
                curves.append(row)
            for k, c in per_seed.items():
                if k == "exact" and N != cfg.N_values[-1]:
                    continue  # the exact curve does not depend on N: report it once per d
                verdicts.append({"d": d, "N": N, "inputs": k, **verdict(sigmas, c)})
    if verbose:
        print(f"  unimodality verdicts (d = {cfg.d}; per-seed curves / their value at sigma_min, z = 3 "
                  f"standard errors across {cfg.num_seeds} seeds)")
        for v in verdicts:
            if v["d"] == cfg.d:
                label = "exact" if v["inputs"] == "exact" else f"N={v['N']}"
                print(f"  {label:>7s} {v['inputs']:>5s}: {v['verdict']:<20s} "
                      f"peak sigma={v['peak_sigma']:.3f} gain={v['peak_gain']:.3f}+-{v['peak_gain_stderr']:.3f}  "
                      f"[unpaired: {v['verdict_unpaired']}, SNR {v['snr_at_sigma_min']:.2f} -> "
                      f"peak {v['peak_snr']:.2f}]")
    scalars = {"seconds_sweep": seconds, "seconds_claim_sweep": seconds_claim, "sigmas": sigmas.tolist(),
               "num_points": len(rows), "num_claim_points": len(claim_rows)}
    for v in verdicts:
        if v["d"] == cfg.d:
            scalars[f"verdict_{v['inputs']}_N{v['N']}"] = v["verdict"]
    return Results(scalars=scalars,
                   tables={"curves": curves, "verdicts": verdicts, "claim_verdicts": claim_verdicts})


def claims(results: dict) -> list[Claim]:
    """``memorization_shape[test inputs]``, ``[train inputs]`` from the saved results.

    P1: a memorising model loses the interior SNR peak. The empirical denoiser's curve at d
    (verdicts of :func:`verdict`, z = 3 across seeds, on per-seed curves divided by their
    small-noise value) must have no interior peak at N = ``claim_N_small`` and an interior peak
    at N = ``claim_N_large``.
    """
    cfg = results["manifest"]["config"]
    small, large = int(cfg["claim_N_small"]), int(cfg["claim_N_large"])
    out = []
    for inputs in ("test", "train"):
        v = {int(r["N"]): r for r in results["tables"]["claim_verdicts"] if r["inputs"] == inputs}
        ok = v[small]["verdict"] != "interior peak" and v[large]["verdict"] == "interior peak"
        measured = {}
        for N in (small, large):
            for key in ("verdict", "peak_sigma", "peak_gain", "peak_gain_stderr", "verdict_unpaired"):
                measured[f"N{N}_{key}"] = v[N][key]
        measured.update(seeds=int(cfg["claim_num_seeds"]), points_per_seed=int(cfg["num_test"]),
                        K=int(cfg["K"]), n=int(cfg["n"]), d=int(cfg["d"]), delta=float(cfg["delta"]))
        out.append(Claim(
            f"memorization_shape[{inputs} inputs]",
            f"P1: the memorising (empirical) denoiser's SNR curve has no interior peak at N = {small} "
            f"and an interior peak at N = {large} ({inputs} inputs)",
            measured,
            f"metrics.unimodality, z = 3 standard errors across seeds of SNR(sigma)/SNR({cfg['sigma_min']:g}), "
            f"1% relative floor; {cfg['num_sigmas']} log-spaced sigma in [{cfg['sigma_min']:g}, {cfg['sigma_max']:g}]",
            bool(ok), source="P1", expected="PASS"))
    return out


def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt

    res = load_results(results_dir)
    cfg = res["manifest"]["config"]
    curves = res["tables"]["curves"]
    verdicts = res["tables"]["verdicts"]
    d0 = int(cfg["d"])
    Ns = sorted({int(r["N"]) for r in curves})
    cmap = plt.get_cmap("viridis")
    with paper_style():
        # The two SNR panels side by side; the peak-gain map under them, across the full width.
        fig, axd = plt.subplot_mosaic([["test", "train"], ["map", "map"]], figsize=(FULL_WIDTH, 5.4),
                                      layout="constrained", height_ratios=(1.25, 1.0))
        for ax, key, title in ((axd["test"], "test", "test inputs"), (axd["train"], "train", "training inputs")):
            for i, N in enumerate(Ns):
                sel = sorted((r for r in curves if int(r["d"]) == d0 and int(r["N"]) == N),
                             key=lambda r: r["sigma"])
                s = [r["sigma"] for r in sel]
                ax.errorbar(s, [r[f"snr_{key}"] for r in sel], yerr=[r[f"snr_{key}_stderr"] for r in sel],
                            color=cmap(i / max(len(Ns) - 1, 1)), lw=1.0, capsize=1.5, label=f"N={N}")
            sel = sorted((r for r in curves if int(r["d"]) == d0 and int(r["N"]) == Ns[-1]),
                         key=lambda r: r["sigma"])
            ax.plot([r["sigma"] for r in sel], [r["snr_exact"] for r in sel], "k--", lw=1.5, label="exact denoiser")
            ax.set_xscale("log")
            ax.set_yscale("log")
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo / 3.0, hi)  # the same room in both panels; the legend sits there
            plain_log_ticks(ax)
            ax.set_xlabel(r"noise level $\sigma$")
            ax.set_ylabel("SNR of the denoiser's output")
            ax.set_title(f"empirical denoiser, {title}\n(K={cfg['K']}, n={cfg['n']}, d={d0}, "
                         f"$\\delta$={cfg['delta']})")
        # One legend for both panels, in the training panel's empty lower left (its curves stay
        # near the exact one until the drop), so it covers no data.
        handles, names = axd["test"].get_legend_handles_labels()
        axd["train"].legend(handles, names, ncol=2, loc="lower left", title="both panels", columnspacing=0.8,
                            handlelength=1.5, labelspacing=0.2)
        ds = sorted({int(r["d"]) for r in verdicts})
        grid = np.full((len(ds), len(Ns)), np.nan)
        marks = {}
        for v in verdicts:
            if v["inputs"] == "test":
                i, j = ds.index(int(v["d"])), Ns.index(int(v["N"]))
                grid[i, j] = v["peak_gain"]
                marks[i, j] = "P" if v["verdict"] == "interior peak" else "-"
        ax = axd["map"]
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="magma")
        lo, hi = np.nanmin(grid), np.nanmax(grid)
        for (i, j), m in marks.items():
            dark = (grid[i, j] - lo) < 0.6 * (hi - lo)  # magma is dark at the low end
            ax.text(j, i, f"{grid[i, j]:.2f}\n{m}", ha="center", va="center", fontsize=MIN_FONT,
                    color="w" if dark else "k")
        ax.set_xticks(range(len(Ns)), [str(N) for N in Ns])
        ax.set_yticks(range(len(ds)), [str(d) for d in ds])
        ax.set_xlabel("training set size N")
        ax.set_ylabel("subspace dimension d")
        ax.set_title("peak gain max SNR / SNR($\\sigma_{min}$), test inputs "
                     "(P = interior peak by the z=3 test, - = none)")
        fig.colorbar(im, ax=ax, label="peak gain")
        mark_quick(fig, res)
        return save_figure(fig, fig_dir, "memorization")


QUICK = {"N_values": "16,64,512", "heatmap_d_values": "5", "num_seeds": 3, "claim_N_large": 512,
         "claim_num_seeds": 3}

EXPERIMENT = Experiment(name="memorization", cost=41,
         summary="memorising (empirical) denoiser: SNR curves vs N (test, training inputs), where the peak emerges",
         config=MemorizationConfig(), run=run, plot=plot, quick=QUICK,
         paper="P1 memorisation claim (Sec. on memorisation / early stopping), exact MoLRG version",
         claims=claims,
         quick_fails={"memorization_shape[train inputs]": "too few seeds to resolve the N = large peak on "
                                                          "training inputs (the full run resolves it)"})

SWEEPABLES = (MEMORIZATION,)
