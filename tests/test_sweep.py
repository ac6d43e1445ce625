"""The sweep engine: grouping, sharding over virtual devices, atomic resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from molrg.experiments import run_sweep, sweepable
from molrg.study.config import parse_grids
from molrg.study.sweep import _chunks, _read_chunk, expand_grid, load_points, point_key

SMALL = {"num_samples": 64, "n": 12, "K": 2, "d": 3}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_grid_expansion_and_validation():
    sw = sweepable("optimal_snr")
    pts = expand_grid(sw, parse_grids(["sigma=0.1,1", "delta=0.1,0.2,0.3"]), SMALL)
    assert len(pts) == 6 and len({point_key(p) for p in pts}) == 6
    assert parse_grids(["sigma=0.01:1:3g"])["sigma"] == [repr(0.01), repr(0.1), repr(1.0)]
    with pytest.raises(ValueError, match="--grid bogus: unknown config key"):
        expand_grid(sw, {"bogus": ["1"]})
    with pytest.raises(ValueError, match="--grid sigma: needs at least one value"):
        expand_grid(sw, {"sigma": []})
    with pytest.raises(ValueError, match="--grid sigma: cannot read 'x' as float"):
        expand_grid(sw, {"sigma": ["x"]})
    with pytest.raises(ValueError, match="sigma: must be > 0"):
        expand_grid(sw, {"sigma": ["-1"]})
    with pytest.raises(ValueError, match="d: need K \\* d <= n"):
        expand_grid(sw, {"d": ["20"]}, SMALL)
    with pytest.raises(ValueError, match="sweep: unknown study"):
        run_sweep("nope", {})


def test_chunks_have_one_size_per_group():
    for n, batch, ndev in [(300, 256, 1), (9, 256, 4), (257, 256, 2), (5, 1, 2), (12, 5, 1)]:
        calls = list(_chunks(list(range(n)), batch, ndev))
        sizes = {len(padded) for _, padded in calls}
        assert len(sizes) == 1, (n, batch, ndev, sizes)  # one compiled shape per group
        size = sizes.pop()
        assert size % ndev == 0 and size <= max(ndev, batch)
        assert [x for chunk, _ in calls for x in chunk] == list(range(n))  # each point once, in order
        assert len(calls) == -(-n // max(ndev, (batch // ndev) * ndev))  # no more calls than needed
        for chunk, padded in calls:
            assert padded[:len(chunk)] == chunk and set(padded[len(chunk):]) <= {chunk[-1]}


def test_grouped_vmapped_equals_loop_and_resumes(tmp_path):
    grids = parse_grids(["sigma=0.05,0.5,5", "seed=0,1", "d=2,3"])  # two static groups
    a = run_sweep("optimal_snr", grids, overrides=SMALL, out_dir=str(tmp_path / "a"), verbose=False)
    assert a["computed"] == 12 and a["skipped"] == 0
    b = run_sweep("optimal_snr", grids, overrides=SMALL, out_dir=str(tmp_path / "b"), loop=True,
                  verbose=False)
    snr_a = np.array([r["snr"] for r in a["rows"]])
    snr_b = np.array([r["snr"] for r in b["rows"]])
    np.testing.assert_allclose(snr_a, snr_b, rtol=1e-9)
    again = run_sweep("optimal_snr", grids, overrides=SMALL, out_dir=str(tmp_path / "a"), verbose=False)
    assert again["computed"] == 0 and again["skipped"] == 12
    man = json.load(open(os.path.join(a["dir"], "manifest.json")))
    assert man["status"] == "complete" and man["num_points"] == 12 and man["provenance"]["jax"]
    assert len(load_points(a["dir"])) == 12
    assert os.path.exists(os.path.join(a["dir"], "table.csv"))


def _run_py(code, env_extra=None, timeout=300):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=timeout)


def test_sharded_over_virtual_devices_matches_one_device(tmp_path):
    code = f"""
        import json, jax, molrg
        from molrg.experiments import run_sweep
        from molrg.study.config import parse_grids
        jax.config.update("jax_enable_x64", True)
        assert len(jax.devices()) == 4, jax.devices()
        grids = parse_grids(["sigma=0.05,0.5,5", "seed=0,1,2"])   # 9 points: padded to 12
        r = run_sweep("optimal_snr", grids, overrides={SMALL!r}, out_dir={str(tmp_path)!r} + "/four",
                      verbose=False)
        one = run_sweep("optimal_snr", grids, overrides={SMALL!r}, out_dir={str(tmp_path)!r} + "/one",
                        devices=jax.devices()[:1], verbose=False)
        print(json.dumps([[x["snr"] for x in r["rows"]], [x["snr"] for x in one["rows"]]]))
    """
    # Virtual CPU devices, also on a GPU/TPU host.
    res = _run_py(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 0, res.stderr[-3000:]
    four, one = json.loads(res.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(four, one, rtol=1e-12)
    man = json.load(open(next(p for p in (tmp_path / "four").glob("sweep-*/manifest.json"))))
    assert len(man["devices"]) == 4


def test_kill_midway_then_resume_recomputes_nothing_finished(tmp_path):
    out = str(tmp_path / "killed")
    code = f"""
        import os, time, jax, molrg
        from molrg.experiments import run_sweep
        from molrg.study.config import parse_grids
        jax.config.update("jax_enable_x64", True)
        def slow(key):
            print("WROTE", key, flush=True)
            time.sleep(0.3)
        run_sweep("optimal_snr", parse_grids(["sigma=0.05,0.5,5", "seed=0,1,2,3"]),
                  overrides={SMALL!r}, out_dir={out!r}, batch_size=1, verbose=False,
                  on_point_written=slow)
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    written = []
    deadline = time.time() + 240
    while len(written) < 4 and time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("WROTE"):
            written.append(line.split()[1])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(written) >= 4
    sweep_dir = next(p for p in os.listdir(out) if p.startswith("sweep-"))
    cdir = os.path.join(out, sweep_dir, "chunks")
    files = os.listdir(cdir)
    # no partial file visible (a kill inside a write may leave a hidden ".chunk-N.parquet.*.tmp")
    assert all(f.endswith(".parquet") for f in files if not f.startswith("."))
    done_before = set()
    for f in files:  # every visible chunk is whole and verifies
        if not f.startswith("."):
            chunk, reason = _read_chunk(os.path.join(cdir, f))
            assert reason is None, (f, reason)
            done_before.update(chunk["keys"])
    assert set(written) <= done_before and len(done_before) < 12
    import jax
    with jax.enable_x64(True):
        res = run_sweep("optimal_snr", parse_grids(["sigma=0.05,0.5,5", "seed=0,1,2,3"]),
                        overrides=SMALL, out_dir=out, verbose=False)
    assert res["skipped"] == len(done_before) and res["computed"] == 12 - len(done_before)
    assert not res["rejected"]  # every file a killed run left verifies
    assert not [f for f in os.listdir(cdir) if f.endswith(".tmp")]
    full = run_sweep("optimal_snr", parse_grids(["sigma=0.05,0.5,5", "seed=0,1,2,3"]),
                     overrides=SMALL, out_dir=str(tmp_path / "clean"), verbose=False)
    np.testing.assert_allclose([r["snr"] for r in res["rows"]], [r["snr"] for r in full["rows"]],
                               rtol=1e-12)


def test_one_chunk_per_call_and_old_point_folders_still_load_and_resume(tmp_path):
    """Results are one Parquet chunk per compiled call; a folder of schema-2 JSON point files
    (molrg before chunks) loads, and resumes with its points skipped and new ones in chunks."""
    import molrg
    from molrg.study.sweep import _make_record, _write_record

    grids = parse_grids(["sigma=0.05,0.5,5", "seed=0,1", "d=2,3"])  # two static groups of 6
    ref = run_sweep("optimal_snr", grids, overrides=SMALL, out_dir=str(tmp_path / "ref"), batch_size=4,
                    verbose=False)
    chunks = sorted(os.listdir(os.path.join(ref["dir"], "chunks")))
    assert len(chunks) == 4 and not os.path.exists(os.path.join(ref["dir"], "points"))  # 2 calls per group
    # an old folder: 5 of the 12 points as JSON point files
    old = tmp_path / "old" / os.path.basename(ref["dir"])
    (old / "points").mkdir(parents=True)
    recs = {r["key"]: r for r in load_points(ref["dir"])}
    assert len(recs) == 12 and all(r["schema"] == 3 for r in recs.values())
    kept = [r["key"] for r in ref["rows"][::3]][:5]
    for key in kept:
        _write_record(str(old / "points" / f"{key}.json"),
                      _make_record(key, recs[key]["config"], recs[key]["outputs"]))
    df_old = molrg.load(str(old))
    assert sorted(df_old["key"]) == sorted(kept) and df_old["finite"].all()
    res = run_sweep("optimal_snr", grids, overrides=SMALL, out_dir=str(tmp_path / "old"), batch_size=4,
                    verbose=False)
    assert res["skipped"] == len(kept) and res["computed"] == 12 - len(kept) and not res["rejected"]
    assert [r["key"] for r in res["rows"]] == [r["key"] for r in ref["rows"]]
    np.testing.assert_allclose([r["snr"] for r in res["rows"]], [r["snr"] for r in ref["rows"]], rtol=1e-6)
    df = molrg.load(str(old))  # both kinds read into one table, in grid order
    assert list(df["key"]) == [r["key"] for r in ref["rows"]]
    assert {r["schema"] for r in load_points(str(old))} == {2, 3}


def test_tables_parquet_always_csv_up_to_the_limit(tmp_path, monkeypatch):
    import pandas as pd

    import molrg
    from molrg.study import sweep as sweep_mod

    grids = parse_grids(["sigma=0.05,0.5,5", "seed=0,1"])
    res = run_sweep("optimal_snr", grids, overrides=SMALL, out_dir=str(tmp_path), verbose=False)
    pq_table = pd.read_parquet(os.path.join(res["dir"], "table.parquet"))
    csv_table = molrg.load(os.path.join(res["dir"], "table.csv"))
    assert list(pq_table["key"]) == list(csv_table["key"]) == [r["key"] for r in res["rows"]]
    np.testing.assert_array_equal(pq_table["snr"].to_numpy(), csv_table["snr"].to_numpy())
    monkeypatch.setattr(sweep_mod, "CSV_MAX_ROWS", 5)  # 6 rows: above the limit
    big = run_sweep("optimal_snr", parse_grids(["sigma=0.05,0.5,5", "seed=0,1"]), overrides=dict(SMALL, n=13),
                    out_dir=str(tmp_path), verbose=False)
    assert not os.path.exists(os.path.join(big["dir"], "table.csv"))
    assert len(pd.read_parquet(os.path.join(big["dir"], "table.parquet"))) == 6
    assert len(molrg.load(big["dir"])) == 6
