"""The accelerator run list (benchmarks/device_run.py): its plan validates, and the same steps run
end to end at tiny scale on the CPU, so it works the first time it meets a device."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
    spec = importlib.util.spec_from_file_location("device_run", os.path.join(ROOT, "benchmarks", "device_run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("scale", ["full", "tiny"])
def test_every_step_config_validates(scale, tmp_path):
    dr = _module()
    steps = dr.plan(scale, str(tmp_path), with_tests=True)
    dr.validate(steps)  # raises on an unknown or invalid --set key
    names = [s["name"] for s in steps]
    assert names == ["env", "mlp_memorization", "phase_transition", "real_digits", "benchmarks", "tests"]
    if scale == "full":
        assert sum(s["limit_s"] for s in steps if s["name"] != "tests") <= 600  # the 10-minute budget
    full = {s["name"]: s for s in dr.plan("full", str(tmp_path), False)}
    assert full["mlp_memorization"]["sets"]["N_values"].split(",") == [str(2 ** k) for k in range(4, 15)]
    assert int(full["phase_transition"]["sets"]["net_seeds"]) >= 20


def test_a_bad_key_fails_before_any_work(tmp_path, monkeypatch):
    dr = _module()
    monkeypatch.setitem(dr.STEPS["real_digits"], "tiny", {"no_such_key": 1})
    with pytest.raises(ValueError, match="device_run step real_digits: .*no_such_key"):
        dr.validate(dr.plan("tiny", str(tmp_path), False))


def test_tiny_scale_refuses_tracked_folders(capsys):
    dr = _module()
    with pytest.raises(SystemExit):
        dr.main(["--scale", "tiny", "--dry-run", "--out", os.path.join(ROOT, "figures", "device", "x")])
    assert "never writes under figures/" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
    dr = _module()
    assert dr.main(["--scale", "tiny", "--out", str(tmp_path)]) == 0
    rec = json.load(open(tmp_path / "run.json"))
    assert rec["complete"] and rec["failed"] == []
    assert [s["exit_code"] for s in rec["steps"]] == [0] * 5
    for name in ("mlp_memorization", "phase_transition", "real_digits"):
        assert (tmp_path / "results" / name / "manifest.json").exists()
    assert any(f.endswith(".png") for f in os.listdir(tmp_path / "figures"))
