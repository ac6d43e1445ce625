"""Memorisation turns the unimodal SNR curve monotone: the exact version with the empirical denoiser.

P1 (THEORY section 7) reports that a diffusion model that memorises its training set loses
the interior peak of its feature-quality-versus-noise curve: the curve turns monotone
decreasing. On MoLRG data the fully memorising model is known exactly: it is the empirical
optimal denoiser of the training set (THEORY section 3),

    E_emp[x_0 | x_t] = sum_i y_i softmax_i( -||x_t - y_i||^2 / (2 sigma^2) ),

the minimiser of the training loss over all functions. This experiment measures, in P1's
setting (K = 3, n = 50, d = 5, delta = 0.2, s = 1), the SNR of its outputs (P1 Definition 1,
THEORY section 5) against sigma, for training sets of N = 2^4 ... 2^12 samples,

* for fresh **test** inputs ``x_0 + sigma eps`` (``x_0`` not in the training set), and
* for noised **training** inputs ``y_i + sigma eps``,

next to the exact optimal denoiser's curve (the N -> infinity limit), and classifies each
curve with :func:`molrg.metrics.unimodality` (z = 3 standard errors across seeds). Each seed
is a new mixture and the seeds differ mostly in the curve's overall level, so the verdict is
taken on the per-seed curves divided by their own value at the smallest sigma (a paired
comparison; the unpaired verdict on the raw mean is reported next to it). A heatmap of the
**peak gain** ``max_sigma SNR / SNR(sigma_min)`` over (d, N) shows where the peak emerges.
Within a seed every sigma uses the same test points and the same noise direction (common
random numbers), so a curve is smooth in sigma.

Speed. The study ``memorization`` draws the training set at ``N_max`` and masks it to its
first N rows (the logits of padded rows are -inf), and the bases at ``d_max`` columns
masked to the first d, so N and d are numeric (traced): the experiment compiles one
program for all N <= ``small_N_max`` and one for the larger N. Training sets are nested in
N for a seed, and a seed gives the same bases to every d (common random numbers). The
samples are drawn directly from the definition (class k: ``U_k a + delta sum_{l != k} U_l
e_l``, which is P1's MoLRG with orthogonal subspaces), and the exact denoiser is P1's
closed form (THEORY section 3), both on the masked columns; ``tests/test_studies.py``
checks them against :class:`molrg.MoLRG` and :func:`molrg.denoise`.
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
from molrg.study import Experiment, Results, load_results, run_sweep, save_figure, sweepable

Array = jax.Array


# ------------------------------------------------------------------------------------------
# Pieces (pure JAX, masked).
# ------------------------------------------------------------------------------------------
def sample_masked(key: Array, bases: Array, cols: Array, delta, num: int):
    """``num`` samples of P1's MoLRG whose class-k basis is the first d columns of bases[k].

    Class k (uniform): ``x_0 = U_k a + delta sum_{l != k} U_l e_l``, ``a, e_l ~ N(0, I_d)``.

    Args:
      key: PRNG key.
      bases: ``(K, n, d_max)`` mutually orthogonal orthonormal blocks.
      cols: ``(d_max,)`` column mask (1 for j < d).
      delta: detail level (may be traced).
      num: static number of samples.

    Returns:
      ``(x0 (num, n), labels (num,) int32)``.
    """
    K = bases.shape[0]
    k_lab, k_coef = jax.random.split(key)
    labels = jax.random.randint(k_lab, (num,), 0, K, dtype=jnp.int32)
    coef = jax.random.normal(k_coef, (num, K, bases.shape[2]), bases.dtype) * cols[None, None, :]
    own = jax.nn.one_hot(labels, K, dtype=bases.dtype)
    scale = own + jnp.asarray(delta, bases.dtype) * (1 - own)
    return jnp.einsum("bkd,knd->bn", coef * scale[:, :, None], bases * cols[None, None, :]), labels


def empirical_denoise_masked(train: Array, weights: Array, x_t: Array, sigma) -> Array:
    """The empirical denoiser of the rows of ``train`` with weight > 0 (``s = 1``).

    ``sum_i y_i softmax_i(-||x_t - y_i||^2 / (2 sigma^2))`` over rows i with
    ``weights[i] > 0`` (padded rows get logit -inf). Dense ``(B, N_max)`` logits.
    """
    inv = 1.0 / (2.0 * jnp.square(sigma))
    logits = (2.0 * (x_t @ train.T) - jnp.sum(train * train, axis=-1)[None, :]) * inv
    logits = jnp.where(weights[None, :] > 0, logits, -jnp.inf)
    return jax.nn.softmax(logits, axis=-1) @ train


def exact_denoise_masked(bases: Array, cols: Array, delta, x_t: Array, sigma) -> Array:
    """P1's closed-form exact denoiser (THEORY section 3; orthogonal, equal d, s = 1, eta = 0).

    ``w = softmax_l((1 - delta^2) ||U_l^T x||^2 / (2 (1 + sigma^2)(delta^2 + sigma^2)))``,
    ``beta_l = xi + (zeta - xi) w_l``, output ``sum_l beta_l U_l U_l^T x``.
    """
    U = bases * cols[None, None, :]
    proj = jnp.einsum("bn,knd->bkd", x_t, U)
    energy = jnp.sum(jnp.square(proj), axis=-1)
    s2, d2 = jnp.square(sigma), jnp.square(delta)
    w = jax.nn.softmax((1.0 - d2) * energy / (2.0 * (1.0 + s2) * (d2 + s2)), axis=-1)
    zeta, xi = 1.0 / (1.0 + s2), d2 / (d2 + s2)
    beta = xi + (zeta - xi) * w
    return jnp.einsum("bkd,knd->bn", beta[:, :, None] * proj, U)


def snr_masked(outputs: Array, labels: Array, weights: Array, bases: Array, cols: Array) -> Array:
    """P1's SNR (THEORY section 5), ``(1/K') sum_k num_k / den_k`` over the K' classes present.

    ``num_k`` and ``den_k`` are the weighted means of ``||U_k^T xh||^2`` and ``||xh - P_k
    xh||^2`` over outputs of true class k (rows of weight 0 are ignored); equal to
    :func:`molrg.metrics.snr` when every weight is 1 and every class is present.
    """
    K = bases.shape[0]
    U = bases * cols[None, None, :]
    onclass = jnp.sum(jnp.square(jnp.einsum("bn,knd->bkd", outputs, U)), axis=-1)  # (B, K)
    total = jnp.sum(outputs * outputs, axis=-1)
    member = jax.nn.one_hot(labels, K, dtype=outputs.dtype) * weights[:, None]
    count = jnp.sum(member, axis=0)
    num = jnp.sum(member * onclass, axis=0)
    den = jnp.sum(member * (total[:, None] - onclass), axis=0)
    present = count > 0
    ratio = jnp.where(present, num / jnp.where(present, den, 1.0), 0.0)
    return jnp.sum(ratio) / jnp.sum(present.astype(outputs.dtype))


# ------------------------------------------------------------------------------------------
# The sweepable study.
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MemorizationPoint:
    """One (d, N, sigma, delta, seed) point. Static: n, K, d_max, N_max, num_test,
    num_train_inputs. Numeric: d, N, sigma, delta, seed."""

    n: int = 50
    K: int = 3
    d: int = 5
    N: int = 16
    sigma: float = 0.3
    delta: float = 0.2
    seed: int = 0
    d_max: int = 5
    N_max: int = 512
    num_test: int = 200
    num_train_inputs: int = 200

    def validate(self):
        for f in ("n", "K", "d", "N", "d_max", "N_max", "num_test", "num_train_inputs"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{f}: must be a positive integer; got {v!r}")
        if self.d > self.d_max:
            raise ValueError(f"d: must be <= d_max = {self.d_max}; got {self.d}")
        if self.N > self.N_max:
            raise ValueError(f"N: must be <= N_max = {self.N_max}; got {self.N}")
        if self.K < 2:
            raise ValueError("K: the SNR needs K >= 2 classes")
        if self.K * self.d_max > self.n:
            raise ValueError(f"d_max: need K * d_max <= n; got {self.K} * {self.d_max} > {self.n}")
        if not self.sigma > 0:
            raise ValueError(f"sigma: must be > 0; got {self.sigma}")
        if not 0 <= self.delta < 1:
            raise ValueError(f"delta: must lie in [0, 1); got {self.delta}")
        if self.seed < 0 or self.seed >= 2**31:
            raise ValueError(f"seed: must lie in [0, 2^31); got {self.seed}")


def _point(cfg: MemorizationPoint, v):
    k_basis, k_train, k_test, k_e1, k_e2 = jax.random.split(jax.random.key(v["seed"]), 5)
    mix = molrg.random_molrg(k_basis, n=cfg.n, K=cfg.K, d=cfg.d_max)
    dtype = mix.dtype
    bases = jnp.stack(mix.bases)
    cols = (jnp.arange(cfg.d_max, dtype=jnp.int32) < jnp.asarray(v["d"]).astype(jnp.int32)).astype(dtype)
    rows = (jnp.arange(cfg.N_max, dtype=jnp.int32) < jnp.asarray(v["N"]).astype(jnp.int32)).astype(dtype)
    sigma = jnp.asarray(v["sigma"]).astype(dtype)
    delta = jnp.asarray(v["delta"]).astype(dtype)
    train, train_labels = sample_masked(k_train, bases, cols, delta, cfg.N_max)
    x0, labels = sample_masked(k_test, bases, cols, delta, cfg.num_test)
    xt = x0 + sigma * jax.random.normal(k_e1, x0.shape, dtype)
    T = min(cfg.num_train_inputs, cfg.N_max)  # the first T training points (those < N count)
    xt_train = train[:T] + sigma * jax.random.normal(k_e2, (T, cfg.n), dtype)
    ones = jnp.ones((cfg.num_test,), dtype)
    emp_test = empirical_denoise_masked(train, rows, xt, sigma)
    emp_train = empirical_denoise_masked(train, rows, xt_train, sigma)
    exact = exact_denoise_masked(bases, cols, delta, xt, sigma)
    return {"snr_test": snr_masked(emp_test, labels, ones, bases, cols),
            "snr_train": snr_masked(emp_train, train_labels[:T], rows[:T], bases, cols),
            "snr_exact": snr_masked(exact, labels, ones, bases, cols)}


MEMORIZATION = sweepable(
    "memorization",
    summary="SNR of the memorising (empirical) denoiser, test and training inputs, vs the exact one",
    config=MemorizationPoint(),
    static=("n", "K", "d_max", "N_max", "num_test", "num_train_inputs"),
    numeric=("d", "N", "sigma", "delta", "seed"), point=_point)


def _divisor_at_most(num: int, cap: float) -> int:
    return max(k for k in range(1, num + 1) if num % k == 0 and (k <= cap or k == 1))


def sweep_curves(*, n, K, d_values, N_values, sigmas, delta, seeds, num_test, num_train_inputs,
                 small_N_max, out_dir, verbose=False, memory_floats: float = 4e7) -> list[dict]:
    """Runs the ``memorization`` study over (d, N, sigma, seed), one compile per N bucket.

    N <= small_N_max share a program with ``N_max = small_N_max``; larger N share one with
    ``N_max = max(N_values)``. Points per compiled call: the largest divisor of the number
    of noise levels whose logits stay under ``memory_floats`` numbers, so that every call
    of a program has one shape (a compiled program is specialised to it) and sweeps with
    the same static values share one compile whatever their (d, N, seed) grid (the quick
    experiment and ``molrg check --quick`` do). Returns the sweep rows.
    """
    d_max = max(d_values)
    buckets = [(small_N_max, [N for N in N_values if N <= small_N_max]),
               (max(N_values), [N for N in N_values if N > small_N_max])]
    rows = []
    for N_max, Ns in buckets:
        if not Ns:
            continue
        per_point = N_max * (num_test + num_train_inputs)
        res = run_sweep(MEMORIZATION, {
            "d": list(d_values), "N": Ns, "sigma": [float(s) for s in sigmas], "seed": list(seeds)},
            overrides={"n": n, "K": K, "d_max": d_max, "N_max": N_max,
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
    n: int = 50
    K: int = 3
    d: int = 5  # the curves' d (P1's setting); must be in heatmap_d_values
    delta: float = 0.2
    N_values: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    heatmap_d_values: tuple[int, ...] = (2, 5, 10)
    sigma_min: float = 0.002
    sigma_max: float = 3.0
    num_sigmas: int = 12
    num_seeds: int = 8
    num_test: int = 200
    num_train_inputs: int = 200
    small_N_max: int = 512  # N up to this share one compiled program; larger N another
    sweep_dir: str = ""

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


def _sigmas(cfg) -> np.ndarray:
    return np.geomspace(cfg.sigma_min, cfg.sigma_max, cfg.num_sigmas)


def run(cfg: MemorizationConfig, verbose: bool = True) -> Results:
    sigmas = _sigmas(cfg)
    own = not cfg.sweep_dir
    root = tempfile.mkdtemp(prefix="molrg-memo-") if own else cfg.sweep_dir
    t0 = time.perf_counter()
    try:
        rows = sweep_curves(n=cfg.n, K=cfg.K, d_values=cfg.heatmap_d_values, N_values=cfg.N_values,
                            sigmas=sigmas, delta=cfg.delta, seeds=range(cfg.num_seeds),
                            num_test=cfg.num_test, num_train_inputs=cfg.num_train_inputs,
                            small_N_max=cfg.small_N_max, out_dir=root, verbose=verbose)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    seconds = time.perf_counter() - t0

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
    scalars = {"seconds_sweep": seconds, "sigmas": sigmas.tolist(), "num_points": len(rows)}
    for v in verdicts:
        if v["d"] == cfg.d:
            scalars[f"verdict_{v['inputs']}_N{v['N']}"] = v["verdict"]
    return Results(scalars=scalars, tables={"curves": curves, "verdicts": verdicts})


def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt

    res = load_results(results_dir)
    cfg = res["manifest"]["config"]
    curves = res["tables"]["curves"]
    verdicts = res["tables"]["verdicts"]
    d0 = int(cfg["d"])
    Ns = sorted({int(r["N"]) for r in curves})
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, title in ((axes[0], "test", "test inputs"), (axes[1], "train", "training inputs")):
        for i, N in enumerate(Ns):
            sel = sorted((r for r in curves if int(r["d"]) == d0 and int(r["N"]) == N),
                         key=lambda r: r["sigma"])
            s = [r["sigma"] for r in sel]
            ax.errorbar(s, [r[f"snr_{key}"] for r in sel], yerr=[r[f"snr_{key}_stderr"] for r in sel],
                        color=cmap(i / max(len(Ns) - 1, 1)), lw=1.2, capsize=2, label=f"N={N}")
        sel = sorted((r for r in curves if int(r["d"]) == d0 and int(r["N"]) == Ns[-1]),
                     key=lambda r: r["sigma"])
        ax.plot([r["sigma"] for r in sel], [r["snr_exact"] for r in sel], "k--", lw=2, label="exact denoiser")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"noise level $\sigma$")
        ax.set_ylabel("SNR of the denoiser's output")
        ax.set_title(f"empirical denoiser, {title} (K={cfg['K']}, n={cfg['n']}, d={d0}, "
                     f"$\\delta$={cfg['delta']})", fontsize=9)
    axes[0].legend(fontsize=7, ncol=2)
    ds = sorted({int(r["d"]) for r in verdicts})
    grid = np.full((len(ds), len(Ns)), np.nan)
    marks = {}
    for v in verdicts:
        if v["inputs"] == "test":
            i, j = ds.index(int(v["d"])), Ns.index(int(v["N"]))
            grid[i, j] = v["peak_gain"]
            marks[i, j] = "P" if v["verdict"] == "interior peak" else "-"
    ax = axes[2]
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="magma")
    lo, hi = np.nanmin(grid), np.nanmax(grid)
    for (i, j), m in marks.items():
        dark = (grid[i, j] - lo) < 0.6 * (hi - lo)  # magma is dark at the low end
        ax.text(j, i, f"{grid[i, j]:.2f}\n{m}", ha="center", va="center", fontsize=7,
                color="w" if dark else "k")
    ax.set_xticks(range(len(Ns)), [str(N) for N in Ns], fontsize=7)
    ax.set_yticks(range(len(ds)), [str(d) for d in ds])
    ax.set_xlabel("training set size N")
    ax.set_ylabel("subspace dimension d")
    ax.set_title("peak gain max SNR / SNR($\\sigma_{min}$), test inputs\n"
                 "(P = interior peak by the z=3 test, - = none)", fontsize=9)
    fig.colorbar(im, ax=ax, label="peak gain")
    fig.tight_layout()
    return save_figure(fig, fig_dir, "memorization")


QUICK = {"N_values": "16,64,512", "heatmap_d_values": "5", "num_seeds": 3}

EXPERIMENT = Experiment(name="memorization",
         summary="memorising (empirical) denoiser: SNR curves vs N (test, training inputs), where the peak emerges",
         config=MemorizationConfig(), run=run, plot=plot, quick=QUICK,
         paper="P1 memorisation claim (Sec. on memorisation / early stopping), exact MoLRG version")

SWEEPABLES = (MEMORIZATION,)
