"""Sweep engine: grouped, vmapped execution vs a Python loop over the same points.

1. Ratio (target >= 5x). Both paths go through ``molrg.experiments.run_sweep`` into fresh
   folders, so both include chunk writing and the table. Per study: one *cold* sweep
   each (compilation included) and then ``repeats`` *warm* sweeps each on new seeds (same
   shapes: compiled programs reused), alternated grouped / loop so the machine's load hits
   both alike; reported: median warm ratio ("compiled") and cold ratio ("including
   compile"). Studies with small points, where grouping matters:
   * ``phase_transition`` (P0's references, one K: d x N x seeds points);
   * ``phase_transition_net`` (P0's network trained per point, one (K, d) slice);
   * ``optimal_snr`` (exact-denoiser SNR by sampling, 256 samples per point).
2. The full, certified phase-transition grid (references and trained networks, measured)
   against its 10-minute budget is ``benchmarks/bench_phase_transition.py``.
3. Sweeps that scale in files and reading: a cheap sweepable defined here (``tiny``: two
   numeric fields, two scalar outputs; not in the catalogue) swept over 10^5 and 10^6 points
   (``--quick``: 10^5) at ``batch_size=4096``: the time to write it (one Parquet chunk per
   compiled call) and the number of files, the time ``molrg.load`` takes to read it back,
   and a rerun that finds every point done (nothing recomputed): its total time and the
   part spent finding its place (grid expansion + reading the chunks). The JSON engine
   before chunks wrote one file per point.
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


def _tiny_sweepable():
    """A sweepable so cheap that the engine's own work (expansion, storage, reading) is what
    is timed."""
    import dataclasses

    import jax.numpy as jnp

    from molrg.study.sweep import sweepable

    @dataclasses.dataclass(frozen=True)
    class Tiny:
        x: float = 0.0
        seed: int = 0

    return sweepable("tiny", summary="x^2 + seed and sin(x)", config=Tiny(), static=(), numeric=("x", "seed"),
                     point=lambda cfg, v: {"y": v["x"] * v["x"] + v["seed"], "z": jnp.sin(v["x"])})


def _folder_stats(folder):
    files, size = 0, 0
    for root, _, names in os.walk(folder):
        files += len(names)
        size += sum(os.path.getsize(os.path.join(root, f)) for f in names)
    return files, size


def _large_sweeps(tmp, quick):
    """Write, load and resume large sweeps of ``tiny`` (section 3 of the docstring)."""
    import json

    import molrg
    from molrg.study.sweep import run_sweep as run_study_sweep

    sw, batch = _tiny_sweepable(), 4096
    out = {}
    for n in [10 ** 5] if quick else [10 ** 5, 10 ** 6]:
        grids = {"x": [i / n for i in range(n // 100)], "seed": list(range(100))}
        folder = os.path.join(tmp, f"large{n}")
        t0 = time.perf_counter()
        res = run_study_sweep(sw, grids, out_dir=folder, batch_size=batch, verbose=False)
        write_s = time.perf_counter() - t0
        assert res["computed"] == n, res["computed"]
        chunks = len(os.listdir(os.path.join(res["dir"], "chunks")))
        files, size = _folder_stats(res["dir"])
        t0 = time.perf_counter()
        df = molrg.load(res["dir"])
        load_s = time.perf_counter() - t0
        assert len(df) == n and bool(df["finite"].all())
        t0 = time.perf_counter()
        again = run_study_sweep(sw, grids, out_dir=folder, batch_size=batch, verbose=False)
        resume_s = time.perf_counter() - t0
        assert again["computed"] == 0 and again["skipped"] == n  # found its place: nothing recomputed
        with open(os.path.join(res["dir"], "manifest.json")) as fh:
            find_s = json.load(fh)["seconds_to_find_done"]
        load_avg = os.getloadavg()[0]
        out[n] = {"points": n, "batch_size": batch, "write_seconds": write_s, "chunk_files": chunks,
                  "files_in_folder": files, "folder_bytes": size, "json_engine_files": n,
                  "load_seconds": load_s, "resume_seconds": resume_s, "resume_find_done_seconds": find_s,
                  "load_avg": load_avg}
        print(f"  {n:.0e} points of a cheap study (batch {batch}, load {load_avg:.1f}): written in "
              f"{write_s:.1f} s as {chunks} chunk files ({files} files in the folder, {size / 1e6:.1f} MB; "
              f"the JSON engine wrote {n} files); molrg.load {load_s:.1f} s; a resume with every point "
              f"done {resume_s:.1f} s ({find_s:.1f} s to find its place), nothing recomputed", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only-large", action="store_true", help="only the large-sweep storage figures")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else 4
    print(f"sweep engine: grouped+vmapped vs a Python loop (load {os.getloadavg()[0]:.1f})", flush=True)
    out = {"loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        print("large sweeps: files, writing, loading, resuming", flush=True)
        out["large_sweeps"] = _large_sweeps(tmp, args.quick)
        for name, grids, overrides, batch in ([] if args.only_large else _studies(args.quick)):
            out[name] = _ratio(name, grids, overrides, batch, tmp, repeats)
    out["loadavg_end"] = os.getloadavg()
    _timing.write_json(os.path.join(HERE, "results", "sweep_large.json" if args.only_large else "sweep.json"),
                       {"environment": _timing.environment(), "results": out})
    return out


if __name__ == "__main__":
    main()
