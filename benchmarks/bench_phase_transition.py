"""P0's certified phase-transition grid (issue 10), timed against its 10-minute budget.

The whole experiment as ``molrg run phase_transition`` runs it (:func:`molrg.experiments.
phase_transition.run`, default = full configuration): the reference estimators
(``phase_transition``: class PCA, certified and random-start K-subspaces, 3 K x 7 d x 14 N
x 10 seeds = 2,940 points) and P0's trained network on the same grid (``phase_transition_net``,
21 (K, d) groups of 140 points: the certified recipe -- ``net_restarts`` data-driven starts
and one truth-started run per point, trained side by side -- and, with ``net_plain``, P0's
plain random-start recipe beside it), every point with its optimisation certificate. Timed
cold (compilation included), measured, not extrapolated. Target: under 10 minutes on 2 cores.

Baseline (same run): the network points computed one by one in a Python loop
(``run_sweep(..., loop=True)``, compiled once, then one call per point) on ``LOOP_POINTS``
points of the largest group (K = 3, d = 8); its per-point time times the grid's network
points, plus its compile time per (K, d, recipe) group, is the EXTRAPOLATED sequential cost
(labelled as such); the ratio is that over the measured grouped network time (both include
compilation; the loop runs the certified recipe's points, the dearer of the two, so the
extrapolation is an upper bound). Measured on a loaded 2-core machine (load ~12, quick):
grouped 1.03x the loop -- the vmapped batch of small matrix products gains little on 2
cores, so the ratio is reported, not asserted.

``--quick``: K = 2, d = 4 only (references and network, 4 seeds), same code path.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _timing  # noqa: E402

from molrg.experiments import phase_transition as pt  # noqa: E402
from molrg.experiments import run_sweep  # noqa: E402

LOOP_POINTS = 4


def _config(quick: bool) -> pt.PhaseTransitionConfig:
    cfg = pt.PhaseTransitionConfig()
    if quick:
        cfg = dataclasses.replace(cfg, K_values=(2,), d_values=(4,), num_seeds=4, net_K_values=(2,),
                                  net_d_values=(4,), net_seeds=4)
    return cfg


def _loop_baseline(cfg: pt.PhaseTransitionConfig, tmp: str) -> tuple[float, float]:
    """(seconds per network point, point by point, compiled; seconds of the first call
    beyond that: the compile of one (K, d) program)."""
    K, d = max(cfg.net_K_values), max(cfg.net_d_values)
    Ns = list(cfg.N_values)
    over = {"n": cfg.n, "d_max": max(max(cfg.d_values), d), "N_max": max(Ns),
            "train_steps": cfg.train_steps, "restarts": cfg.net_restarts, "start": cfg.net_start,
            "rtol": cfg.net_rtol}
    grid = lambda seeds: {"K": [K], "d": [d], "N": [Ns[-1]], "seed": seeds}  # noqa: E731
    t0 = time.perf_counter()
    run_sweep("phase_transition_net", grid([0]), overrides=over, out_dir=os.path.join(tmp, "w"),
              loop=True, verbose=False)  # compile + one point
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = run_sweep("phase_transition_net", grid(list(range(1, 1 + LOOP_POINTS))), overrides=over,
                    out_dir=os.path.join(tmp, "l"), loop=True, verbose=False)
    assert res["computed"] == LOOP_POINTS, res
    per_point = (time.perf_counter() - t0) / LOOP_POINTS
    return per_point, max(first - per_point, 0.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    cfg = _config(args.quick)
    load0 = os.getloadavg()[0]
    print(f"certified phase-transition grid{' (quick)' if args.quick else ''}, load {load0:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = pt.run(dataclasses.replace(cfg, sweep_dir=os.path.join(tmp, "run")), verbose=False)
        total = time.perf_counter() - t0
        per_loop, compile_s = _loop_baseline(cfg, tmp)
    sc = res.scalars
    recipes = 2 if cfg.net_plain else 1
    net_points = recipes * len(cfg.net_K_values) * len(cfg.net_d_values) * len(cfg.N_values) * cfg.net_seeds
    groups = recipes * len(cfg.net_K_values) * len(cfg.net_d_values)  # one compile each, both ways
    loop_total = per_loop * net_points + compile_s * groups
    out = {"quick": args.quick, "load_before": load0, "load_after": os.getloadavg()[0],
           "total_seconds": total, "reference_seconds": sc["seconds_reference_sweep"],
           "network_seconds": sc["seconds_network_sweep"], "reference_points": sc["num_reference_points"],
           "network_points": net_points, "net_train_steps": cfg.train_steps,
           "net_restarts": cfg.net_restarts, "net_start": cfg.net_start, "net_plain": cfg.net_plain,
           "loop_seconds_per_network_point": per_loop, "loop_compile_seconds_per_group": compile_s,
           "loop_network_seconds_EXTRAPOLATED": loop_total,
           "speedup_vs_loop": loop_total / max(sc["seconds_network_sweep"], 1e-9),
           "under_10_min": total < 600}
    print(f"  references: {sc['num_reference_points']} points, {sc['seconds_reference_sweep']:.0f} s; "
          f"network: {net_points} points ({recipes} recipe(s), {cfg.train_steps} steps, "
          f"{cfg.net_restarts} {cfg.net_start} starts + the truth-started run), "
          f"{sc['seconds_network_sweep']:.0f} s; whole experiment {total:.0f} s -> "
          f"{'under' if total < 600 else 'OVER'} 10 min (compilation included, load {load0:.1f})", flush=True)
    print(f"  baseline: a Python loop over network points, {per_loop:.2f} s/point + {compile_s:.0f} s "
          f"compile per (K, d, recipe) -> EXTRAPOLATED {loop_total:.0f} s for the network grid: grouped "
          f"is {out['speedup_vs_loop']:.2f}x that (both including compilation)", flush=True)
    for b in res.tables["boundary"]:
        if b["method"] in ("net", "net_random"):
            print(f"  {b['method']:>10s} K={b['K']} d={b['d']}: boundary N={b['boundary_N']:.0f}; failures "
                  f"{b['optimisation_failures']} optimisation, {b['sample_complexity_failures']} "
                  f"sample-complexity", flush=True)
    _timing.write_json(os.path.join(HERE, "results", "phase_transition.json"),
                       {"environment": _timing.environment(), "results": out})
    return out


if __name__ == "__main__":
    main()
