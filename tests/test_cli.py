"""The command line: list, run with overrides, error paths, atomic result folders."""

import json
import os

import pytest

from molrg import cli


def test_list_and_run_demo(tmp_path, capsys):
    assert cli.main(["list"]) == 0
    assert "demo" in capsys.readouterr().out
    out, figs = tmp_path / "res", tmp_path / "figs"
    rc = cli.main(["run", "demo", "--quick", "--set", "num_test=200", "--set", "sigmas=0.1,1.0",
                   "--out", str(out), "--fig-dir", str(figs)])
    assert rc == 0
    man = json.load(open(out / "demo" / "manifest.json"))
    assert man["config"]["num_test"] == 200 and man["config"]["sigmas"] == [0.1, 1.0]
    assert man["provenance"]["jax"] and man["quick"] is True
    assert (figs / "demo.png").exists() and (figs / "demo.pdf").exists()
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no partial folders left


def test_bad_overrides_fail_before_any_work(tmp_path, capsys):
    out = tmp_path / "res"
    assert cli.main(["run", "demo", "--set", "bogus=1", "--out", str(out)]) == 2
    assert "--set bogus: unknown config key" in capsys.readouterr().err
    assert cli.main(["run", "demo", "--set", "sigmas=0,1", "--out", str(out)]) == 2
    assert "sigmas: every sigma must be > 0" in capsys.readouterr().err
    assert cli.main(["run", "nope", "--out", str(out)]) == 2
    assert not out.exists() or not os.listdir(out)  # nothing written


def _toy_experiment(passed: bool):
    """A tiny experiment with one claim, computed from its saved results (no JAX work)."""
    import dataclasses

    from molrg.study import Claim, Experiment, Results

    @dataclasses.dataclass(frozen=True)
    class ToyConfig:
        value: float = 2.0
        seed: int = 0

    def run(cfg, verbose=True):
        return Results(scalars={"value": cfg.value}, tables={"rows": [{"x": 1.0, "ok": True}]})

    def claims(results):
        v = results["scalars"]["value"]
        ok = results["tables"]["rows"][0]["ok"]  # a bool again after the CSV round trip
        return [Claim("toy", "value is 2", {"value": v}, "exact", bool(ok is True and v == 2.0) == passed)]

    return Experiment(name="toy", summary="toy", config=ToyConfig(), run=run, plot=lambda r, f: [],
                      quick={"value": 2.0}, claims=claims)


@pytest.mark.parametrize("passed", [True, False])
def test_check_runs_claims_from_saved_results_and_sets_exit_code(tmp_path, monkeypatch, passed):
    import molrg.experiments as catalogue

    monkeypatch.setitem(catalogue.EXPERIMENTS, "toy", _toy_experiment(passed))
    path = tmp_path / "checks.json"
    keep = tmp_path / "kept"
    rc = cli.main(["check", "--quick", "--only", "toy", "--json", str(path), "--out", str(keep)])
    rep = json.load(open(path))
    assert rc == (0 if passed else 1)
    assert rep["claims"][0]["name"] == "toy" and rep["claims"][0]["verdict"] == ("PASS" if passed else "FAIL")
    assert rep["passed"] == int(passed) and rep["failed"] == int(not passed)
    assert (keep / "toy" / "manifest.json").exists()  # the run the claims were computed from


def test_check_only_rejects_unknown_names(capsys):
    assert cli.main(["check", "--only", "nope"]) == 2
    assert "--only: unknown experiments ['nope']" in capsys.readouterr().err


def test_quick_runs_default_to_scratch_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "demo", "--quick", "--set", "num_test=100", "--set", "sigmas=0.1,1.0"]) == 0
    assert (tmp_path / "results" / "quick" / "demo" / "manifest.json").exists()
    assert (tmp_path / "figures" / "quick" / "demo.png").exists()
    assert not (tmp_path / "figures" / "demo.png").exists()


def test_run_reads_a_config_file(tmp_path):
    cfg = tmp_path / "demo.toml"
    cfg.write_text('[run]\nnum_test = 150\nsigmas = [0.2, 2.0]\n')
    out = tmp_path / "res"
    assert cli.main(["run", "demo", "--config", str(cfg), "--set", "num_train=300", "--out", str(out),
                     "--fig-dir", str(tmp_path / "f")]) == 0
    man = json.load(open(out / "demo" / "manifest.json"))
    assert man["config"]["num_test"] == 150 and man["config"]["sigmas"] == [0.2, 2.0]
    assert man["config"]["num_train"] == 300
    assert cli.main(["run", "demo", "--config", str(tmp_path / "missing.toml")]) == 2
