"""molrg.load: saved runs and sweeps as pandas DataFrames, round trips against what was saved."""

import dataclasses
import json
import math
import os

import numpy as np
import pandas as pd
import pytest

import molrg
from molrg.experiments import run_sweep
from molrg.study import Experiment, Results, load_results, run_experiment
from molrg.study.config import parse_grids
from molrg.study.tables import update_latest

SMALL = {"num_samples": 64, "n": 12, "K": 2, "d": 3}

ROWS = [
    {"sigma": 0.1, "count": 3, "ok": True, "name": "paper", "note": None, "value": float("nan")},
    {"sigma": 1.5, "count": 7, "ok": False, "name": "NA", "note": "x", "value": float("inf")},
    {"sigma": 20.0, "count": -2, "ok": True, "name": "null", "note": "y", "value": -1e-300},
]


@dataclasses.dataclass(frozen=True)
class _Cfg:
    seed: int = 0  # unused


def _toy():
    def run(cfg, verbose=True):
        return Results(scalars={"a": 1.0}, tables={"rows": ROWS, "other": [{"x": 1.0, "y": 2.0}]},
                       arrays={"z": np.zeros(3)})

    return Experiment(name="toy", summary="toy", config=_Cfg(), run=run, plot=lambda r, f: [])


def _same(a, b):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if a is None:
        return b is None or (isinstance(b, float) and math.isnan(b))
    return a == b and type(a) is type(b) if isinstance(a, bool) else a == b


def test_run_tables_round_trip(tmp_path):
    path = run_experiment(_toy(), out_dir=str(tmp_path), verbose=False, plot=False)
    frames = molrg.load(path)
    assert set(frames) == {"rows", "other"} and all(isinstance(f, pd.DataFrame) for f in frames.values())
    df = frames["rows"]
    assert list(df.columns) == list(ROWS[0]) and len(df) == len(ROWS)
    for row, (_, got) in zip(ROWS, df.iterrows()):
        for k, v in row.items():
            g = got[k]
            g = g.item() if hasattr(g, "item") else g
            assert _same(v, g), (k, v, g)
    assert df["count"].dtype.kind == "i" and df["ok"].dtype == bool and df["value"].dtype.kind == "f"
    assert list(df["name"]) == ["paper", "NA", "null"]  # text stays text
    one = molrg.load(path, "other")
    assert one.equals(frames["other"]) and one.attrs["kind"] == "run" and one.attrs["table"] == "other"
    # the same numbers as the study layer's reader
    rows = load_results(path)["tables"]["other"]
    assert one.to_dict("records") == rows
    with pytest.raises(ValueError, match="table: toy has no table 'nope'"):
        molrg.load(path, "nope")
    assert molrg.load(os.path.join(path, "other.csv")).equals(frames["other"])


def test_sweep_loads_one_row_per_point_in_grid_order(tmp_path):
    grids = parse_grids(["sigma=5,0.05,0.5", "seed=1,0"])
    res = run_sweep("optimal_snr", grids, overrides=SMALL, out_dir=str(tmp_path), verbose=False)
    df = molrg.load(res["dir"])
    assert isinstance(df, pd.DataFrame) and len(df) == 6
    assert list(df["key"]) == [r["key"] for r in res["rows"]]  # the engine's (grid) order
    assert list(zip(df["sigma"], df["seed"])) == [(s, e) for s in (5.0, 0.05, 0.5) for e in (1, 0)]
    cfg_fields = ["n", "K", "d", "num_samples", "sigma", "delta", "seed"]
    assert set(cfg_fields + ["key", "snr", "mse", "bayes_accuracy", "finite"]) <= set(df.columns)
    assert (df["n"] == 12).all() and (df["num_samples"] == 64).all() and df["finite"].all()
    for r, (_, got) in zip(res["rows"], df.iterrows()):
        assert got["snr"] == r["snr"] and got["mse"] == r["mse"] and got["bayes_accuracy"] == r["bayes_accuracy"]
    table = molrg.load(os.path.join(res["dir"], "table.csv"))
    np.testing.assert_array_equal(table["snr"].to_numpy(), df["snr"].to_numpy())
    assert df.attrs["kind"] == "sweep" and df.attrs["study"] == "optimal_snr" and df.attrs["num_points"] == 6
    # through the latest link
    link = update_latest(str(tmp_path), res["dir"])
    assert link == str(tmp_path / "latest") and molrg.load(link).equals(df)


def test_partial_sweep_loads_the_saved_points(tmp_path):
    grids = parse_grids(["sigma=0.05,0.5,5", "seed=0,1"])
    res = run_sweep("optimal_snr", grids, overrides=SMALL, out_dir=str(tmp_path), verbose=False,
                    batch_size=1)  # one chunk file per point
    gone = [res["rows"][1]["key"], res["rows"][4]["key"]]
    cdir = os.path.join(res["dir"], "chunks")
    for f in os.listdir(cdir):
        if pd.read_parquet(os.path.join(cdir, f), columns=["key"])["key"].iloc[0] in gone:
            os.unlink(os.path.join(cdir, f))
    man_path = os.path.join(res["dir"], "manifest.json")
    json.dump(dict(json.load(open(man_path)), status="interrupted"), open(man_path, "w"))
    df = molrg.load(res["dir"])
    assert list(df["key"]) == [r["key"] for r in res["rows"] if r["key"] not in gone]
    assert df.attrs["status"] == "interrupted" and df.attrs["num_points"] == 6


def test_latest_link_is_replaced_atomically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert update_latest(str(tmp_path), str(a)) == str(tmp_path / "latest")
    assert os.readlink(tmp_path / "latest") == "a"
    update_latest(str(tmp_path), str(b))
    assert os.readlink(tmp_path / "latest") == "b"
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "latest"]  # no temporary link left
    real = tmp_path / "other"
    (real / "latest").mkdir(parents=True)
    assert update_latest(str(real), str(a)) is None and (real / "latest").is_dir()  # a real folder is kept


def test_load_rejects_what_is_not_a_result(tmp_path):
    with pytest.raises(ValueError, match="path: no such result folder"):
        molrg.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="is not a run or sweep folder"):
        molrg.load(tmp_path)


def test_import_molrg_does_not_import_the_study_layer():
    import subprocess
    import sys

    code = "import sys, molrg; print(any(m.startswith('molrg.study') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]
