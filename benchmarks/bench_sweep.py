"""Sweep engine: grouped, vmapped execution vs a Python loop over the same points, and the
issue's full phase-transition sweep against its 10-minute budget.

1. Ratio (target >= 5x). Both paths go through ``molrg.experiments.run_sweep`` into fresh
   folders, so both include point-file writing and the table. Per study: one *cold* sweep
   each (compilation included) and then ``repeats`` *warm* sweeps each on new seeds (same
   shapes: compiled programs reused), alternated grouped / loop so the machine's load hits
   both alike; reported: median warm ratio ("compiled") and cold ratio ("including
   compile"). Studies with small points, where grouping matters:
   * ``phase_transition`` (P0's references, one K: d x N x seeds points);
   * ``phase_transition_net`` (P0's network trained per point, one (K, d) slice);
   * ``optimal_snr`` (exact-denoiser SNR by sampling, 256 samples per point).
2. The full phase-transition sweep, 7 d x 14 N x 3 K x 10 seeds = 2,940 points of the
   reference estimators, timed cold (compilation included) in one run; target < 10 min
   on 2 cores. The trained-network version over the same grid is 21 (K, d) groups; one
   group per K is timed cold and the total is EXTRAPOLATED (7 d-groups per K at the
   measured per-group time), labelled as such.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _timing  # noqa: E402

from molrg.experiments import run_sweep  # noqa: E402


def _ints(values):
    return [str(v) for v in values]


def _studies(quick: bool):
    """(name, grids(seed offset), overrides, batch_size) per study."""
    ds, Ns = _ints(range(2, 9)), _ints(range(2, 16))
    s_ref = 2 if quick else 4
    s_net = 4 if quick else 10
    s_snr = 8 if quick else 32
    sigmas = [repr(float(x)) for x in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0, 5.0, 10.0)]
    return [
        ("phase_transition",
         lambda o: {"K": ["2"], "d": ds, "N": Ns, "seed": _ints(range(o, o + s_ref))},
         {"d_max": 8, "N_max": 15}, 256),
        ("phase_transition_net",
         lambda o: {"K": ["2"], "d": ["4"], "N": Ns, "seed": _ints(range(o, o + s_net))},
         {"d_max": 8, "N_max": 15, "train_steps": 300 if quick else 1000}, 256),
        ("optimal_snr",
         lambda o: {"sigma": sigmas, "delta": ["0.1", "0.3"], "seed": _ints(range(o, o + s_snr))},
         {"num_samples": 256}, 256),
    ]


def _sweep_seconds(name, grids, overrides, batch, out_dir, loop):
    t0 = time.perf_counter()
    res = run_sweep(name, grids, overrides=overrides, out_dir=out_dir, loop=loop, verbose=False,
                    batch_size=batch)
    assert res["computed"] == res["points"], res  # fresh points only
    return time.perf_counter() - t0, res["points"]


def _ratio(name, grids, overrides, batch, tmp, repeats):
    out = {"cold": {}, "warm": {"grouped": [], "loop": []}}
    offset = 0
    for mode in ("grouped", "loop"):
        out["cold"][mode], npts = _sweep_seconds(name, grids(offset), overrides, batch,
                                                 os.path.join(tmp, name, mode), mode == "loop")
    for r in range(repeats):
        offset = 1000 * (r + 1)  # new seeds: every point computed, same shapes
        for mode in (("grouped", "loop") if r % 2 == 0 else ("loop", "grouped")):
            secs, _ = _sweep_seconds(name, grids(offset), overrides, batch,
                                     os.path.join(tmp, name, mode), mode == "loop")
            out["warm"][mode].append(secs)
    med = {m: statistics.median(v) for m, v in out["warm"].items()}
    out.update(points=npts, warm_median=med, speedup=med["loop"] / med["grouped"],
               speedup_including_compile=out["cold"]["loop"] / out["cold"]["grouped"])
    print(f"  {name} ({npts} points): grouped {med['grouped']:.2f}s vs loop {med['loop']:.2f}s "
          f"-> {out['speedup']:.1f}x compiled; cold {out['cold']['grouped']:.1f}s vs "
          f"{out['cold']['loop']:.1f}s -> {out['speedup_including_compile']:.1f}x including compilation",
          flush=True)
    return out


def _full_phase_transition(tmp, quick):
    """The issue's full grid, as ``molrg run phase_transition`` runs it (slice-sized calls)."""
    grid = {"K": ["1", "2", "3"], "d": _ints(range(2, 9)), "N": _ints(range(2, 16)),
            "seed": _ints(range(10))}
    load0 = os.getloadavg()[0]
    secs, npts = _sweep_seconds("phase_transition", grid, {"d_max": 8, "N_max": 15}, 14 * 10,
                                os.path.join(tmp, "full"), False)
    out = {"reference_points": npts, "reference_seconds": secs, "load_before": load0,
           "reference_under_10_min": secs < 600}
    print(f"  full phase-transition sweep, references (3 K x 7 d x 14 N x 10 seeds = {npts} points, "
          f"compilation included, load {load0:.1f}): {secs:.0f} s -> "
          f"{'under' if secs < 600 else 'OVER'} 10 min", flush=True)
    steps = 1000
    per_k = {}
    for K in (("3",) if quick else ("1", "2", "3")):
        grid = {"K": [K], "d": ["8"], "N": _ints(range(2, 16)), "seed": _ints(range(10))}
        per_k[K], _ = _sweep_seconds("phase_transition_net", grid,
                                     {"d_max": 8, "N_max": 15, "train_steps": steps}, 14 * 10,
                                     os.path.join(tmp, f"net{K}"), False)
    # Quick: K = 3 (the largest network) stands in for every K, an upper bound.
    total = sum(7 * per_k.get(K, per_k["3"]) for K in ("1", "2", "3"))
    out.update(net_train_steps=steps, net_group_seconds_d8=per_k, net_full_grid_seconds_EXTRAPOLATED=total,
               net_under_10_min_EXTRAPOLATED=total < 600)
    print(f"  trained network ({steps} steps) over the same grid: one (K, d=8) group of 140 points "
          f"takes {', '.join(f'K={k}: {v:.0f}s' for k, v in per_k.items())} (cold); EXTRAPOLATED to "
          f"21 groups: {total:.0f} s ({total / 60:.1f} min; d = 8 is the largest network)", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-full", action="store_true", help="only the grouped-vs-loop ratios")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else 4
    print(f"sweep engine: grouped+vmapped vs a Python loop (load {os.getloadavg()[0]:.1f})", flush=True)
    out = {"loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, grids, overrides, batch in _studies(args.quick):
            out[name] = _ratio(name, grids, overrides, batch, tmp, repeats)
        if not args.skip_full:
            out["full_phase_transition"] = _full_phase_transition(tmp, args.quick)
    out["loadavg_end"] = os.getloadavg()
    _timing.write_json(os.path.join(HERE, "results", "sweep.json"),
                       {"environment": _timing.environment(), "results": out})
    return out


if __name__ == "__main__":
    main()
