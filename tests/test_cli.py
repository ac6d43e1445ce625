"""The command line: list, run with overrides, error paths, atomic result folders."""

import json
import os

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


def test_check_json_report(tmp_path):
    path = tmp_path / "checks.json"
    rc = cli.main(["check", "--quick", "--only", "tweedie", "--json", str(path)])
    rep = json.load(open(path))
    assert rc == (1 if rep["failed"] else 0)
    assert rep["claims"][0]["name"] == "tweedie" and rep["claims"][0]["verdict"] in ("PASS", "FAIL")
