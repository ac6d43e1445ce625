"""Speed of the exact-SNR theory routes, each against a baseline measured in the same run.

(a) The exact SNR curve of the optimal denoiser in P1's setting (d=5, K=3, delta=0.2) on a
    50-point sigma grid to 3 significant digits (relative error <= 5e-4 at every sigma):
    * molrg.theory.exact_snr_quadrature (deterministic; precision checked against its
      float64 value), time after compilation;
    * baseline: sample the full n = 50 dimensional model, add noise, denoise with
      molrg.denoise and measure the SNR (metrics.snr_per_class); its relative standard
      error is measured on a batch, and the time to reach 5e-4 at the worst sigma is
      extrapolated (cost is linear in the number of samples);
    * middle route: molrg.theory.exact_snr (Monte Carlo over the K block energies),
      extrapolated the same way.
(b) The peak map over >= 200 cells (molrg.experiments.peak_map, one compiled program):
    wall time including compilation (target < 60 s) against a Python loop over cells with
    molrg.theory's per-cell peak search (static d and K: one compilation per (d, K) pair),
    estimated from a few timed cells: (#pairs) x compile + (#cells) x run.

Run: ``python benchmarks/bench_theory.py [--quick]``; writes benchmarks/results/theory.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _timing  # noqa: E402

import molrg  # noqa: E402
from molrg import metrics, theory  # noqa: E402
from molrg.experiments import peak_map  # noqa: E402

PAPER = dict(d=5, K=3, delta=0.2)
TARGET_REL = 5e-4  # "3 significant digits"


def _denoise_snr_stats(mix, key, sigmas, num):
    """SNR and its stderr at each sigma from ``num`` samples of the full model (one program)."""
    x0, labels = mix.sample(key, num)
    eps = jax.random.normal(jax.random.fold_in(key, 1), x0.shape, x0.dtype)

    def one(sigma):
        st = metrics.snr_per_class(molrg.denoise(mix, x0 + sigma * eps, sigma), labels, mix)
        return st.snr, st.snr_stderr

    return jax.lax.map(one, sigmas)


def bench_curve(repeats, num_baseline):
    sigmas = jnp.asarray(np.geomspace(0.01, 10.0, 50), jnp.float32)
    quad = jax.jit(lambda s: theory.exact_snr_quadrature(s, **PAPER))
    with jax.enable_x64(True):
        ref = np.asarray(theory.exact_snr_quadrature(jnp.asarray(np.asarray(sigmas), jnp.float64), **PAPER))
    got = np.asarray(quad(sigmas))
    quad_rel = float(np.max(np.abs(got / ref - 1)))

    mix = molrg.paper_molrg(jax.random.key(0), dtype=jnp.float32)
    full = jax.jit(lambda k: _denoise_snr_stats(mix, k, sigmas, num_baseline))
    mc_samples = 1 << 16
    mc = jax.jit(lambda k: theory.exact_snr(sigmas, key=k, num_samples=mc_samples, return_stderr=True, **PAPER))
    t = _timing.interleaved({
        "quadrature": lambda: quad(sigmas),
        "full_model": lambda: full(jax.random.key(1)),
        "block_mc": lambda: mc(jax.random.key(2)),
    }, repeats=repeats)
    snr, se = (np.asarray(v) for v in full(jax.random.key(1)))
    need_full = num_baseline * float(np.max(se / snr) / TARGET_REL) ** 2
    sec_full = t["full_model"] * need_full / num_baseline
    mc_val, mc_se = (np.asarray(v) for v in mc(jax.random.key(2)))
    need_mc = mc_samples * float(np.max(mc_se / mc_val) / TARGET_REL) ** 2
    sec_mc = t["block_mc"] * need_mc / mc_samples
    row = {
        "sigmas": 50, "quadrature_seconds": t["quadrature"], "quadrature_max_rel_error_vs_float64": quad_rel,
        "full_model_samples_measured": num_baseline, "full_model_seconds_measured": t["full_model"],
        "full_model_worst_rel_stderr": float(np.max(se / snr)), "full_model_samples_needed": need_full,
        "full_model_seconds_needed": sec_full,
        "block_mc_samples_measured": mc_samples, "block_mc_seconds_measured": t["block_mc"],
        "block_mc_samples_needed": need_mc, "block_mc_seconds_needed": sec_mc,
        "speedup_vs_full_model": sec_full / t["quadrature"], "speedup_vs_block_mc": sec_mc / t["quadrature"],
        "target_quadrature_seconds": 1.0,
    }
    print(f"  (a) exact SNR curve, 50 sigmas, 3 digits: quadrature {t['quadrature'] * 1e3:.1f} ms "
          f"(max rel. error {quad_rel:.1e}); full model + denoise would need {need_full:.2e} samples, "
          f"~{sec_full:.0f} s (x{row['speedup_vs_full_model']:.0f}); block-energy Monte Carlo {need_mc:.2e} "
          f"draws, ~{sec_mc:.1f} s (x{row['speedup_vs_block_mc']:.0f})", flush=True)
    return row


def bench_peak_map(overrides, loop_cells):
    from molrg.study import apply_overrides
    cfg = apply_overrides(peak_map.PeakMapConfig(), overrides)
    cells = peak_map._cells(cfg)
    d, dl, K = (jnp.asarray(c, jnp.float32) for c in cells.T)
    lo, hi = jnp.log(jnp.float32(cfg.sigma_lo)), jnp.log(jnp.float32(cfg.sigma_hi))

    def run():
        return jax.block_until_ready(peak_map.exact_peaks(
            dl, d, K, lo, hi, d_max=max(cfg.ds), num_grid=cfg.num_grid, num_stages=cfg.num_stages,
            panel_width=cfg.panel_width, nodes_per_panel=cfg.nodes_per_panel, u_step=cfg.u_step))

    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run()
    again = time.perf_counter() - t0

    # Baseline: theory's per-cell peak search, one compilation per (d, K) pair.
    per_cell = getattr(theory, "exact_peak_sigma_quadrature", None)
    if per_cell is None:  # older theory: the same search written out
        def per_cell(*, d, K, delta, lo, hi):
            return theory.peak_sigma(lambda s: theory.exact_snr_quadrature(s, d=d, K=K, delta=delta), lo, hi)
    firsts, reruns = [], []
    picks = [cells[i] for i in np.linspace(0, len(cells) - 1, loop_cells).astype(int)]
    for dd, delta, KK in picks:
        args = dict(d=int(dd), K=int(KK), delta=jnp.float32(delta), lo=cfg.sigma_lo, hi=cfg.sigma_hi)
        t0 = time.perf_counter()
        jax.block_until_ready(per_cell(**args))
        firsts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        jax.block_until_ready(per_cell(**args))
        reruns.append(time.perf_counter() - t0)
    compile_each = float(np.median(np.array(firsts) - np.array(reruns)))
    run_each = float(np.median(reruns))
    pairs = len(cfg.ds) * len(cfg.Ks)
    loop_estimate = pairs * compile_each + len(cells) * run_each
    row = {"cells": len(cells), "pairs_d_K": pairs, "seconds_with_compile": first, "seconds_compiled": again,
           "loop_cells_timed": loop_cells, "loop_compile_per_pair": compile_each, "loop_run_per_cell": run_each,
           "loop_estimated_seconds": loop_estimate, "speedup_with_compile": loop_estimate / first,
           "speedup_compiled": len(cells) * run_each / again, "target_seconds": 60.0}
    print(f"  (b) peak map, {len(cells)} cells: {first:.1f} s with compilation, {again:.1f} s compiled; a Python "
          f"loop over theory's per-cell search: ~{loop_estimate:.0f} s ({pairs} compilations of "
          f"{compile_each:.1f} s + {len(cells)} x {run_each:.2f} s) -> x{row['speedup_with_compile']:.1f} "
          f"(compiled runs only: x{row['speedup_compiled']:.1f})", flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, a 24-cell map, 3 loop cells")
    args = ap.parse_args(argv)
    print("theory: exact SNR curve (quadrature vs sampling the full model)", flush=True)
    curve = bench_curve(repeats=3 if args.quick else 7, num_baseline=1 << 13 if args.quick else 1 << 15)
    print("theory: peak map vs a loop over cells", flush=True)
    grid = ({"ds": "1,5,12", "deltas": "0.01,0.1,0.3,0.7", "Ks": "2,10"} if args.quick else {})
    peaks = bench_peak_map(grid, loop_cells=3 if args.quick else 6)
    out = {"environment": _timing.environment(), "quick": args.quick, "curve": curve, "peak_map": peaks}
    _timing.write_json(os.path.join(os.path.dirname(__file__), "results", "theory.json"), out)
    return out


if __name__ == "__main__":
    main()
