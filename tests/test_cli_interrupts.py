"""Ctrl-C on the command line: one line saying what was saved, exit status 130, no traceback;
an interrupted sweep resumes where it stopped when the same command is run again."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from molrg import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a subprocess")


def _env(cache=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    # the test's own compilation cache (the user's is left alone): later runs skip the compile
    env["MOLRG_CACHE_DIR"] = str(cache) if cache else "off"
    return env


def _default_sigint():
    """For the child (``preexec_fn``): Ctrl-C's default action. A process started in the
    background by a non-interactive shell (``cmd &``, as CI runners may) inherits SIGINT
    ignored, and so would every child: the interrupt these tests send would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(proc, stderr_file):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    with open(stderr_file) as fh:
        return fh.read()


def _one_interrupt_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    hits = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert len(hits) == 1 and hits[0].startswith("molrg: interrupted"), err[-3000:]
    assert err.rstrip("\n").splitlines()[-1] == hits[0]  # the last word
    return hits[0]


def test_keyboard_interrupt_anywhere_is_one_line_and_130(monkeypatch, capsys):
    def boom(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_list", boom)
    assert cli.main(["list"]) == 130
    err = capsys.readouterr().err
    assert err == "molrg: interrupted\n"


def _toy(name, run=None, plot=None):
    import dataclasses

    from molrg.study import Experiment, Results

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        seed: int = 0  # unused

    return Experiment(name=name, summary=name, config=Cfg(),
                      run=run or (lambda cfg, verbose=True: Results(tables={"t": [{"x": 1.0}]})),
                      plot=plot or (lambda r, f: []), claims=lambda res: [])


def test_interrupt_while_drawing_says_the_results_are_saved(tmp_path, monkeypatch, capsys):
    import molrg.experiments as catalogue

    def plot(results_dir, fig_dir):
        raise KeyboardInterrupt

    monkeypatch.setitem(catalogue.EXPERIMENTS, "drawn", _toy("drawn", plot=plot))
    out = tmp_path / "res"
    assert cli.main(["run", "drawn", "--out", str(out), "--fig-dir", str(tmp_path / "f")]) == 130
    line = _one_interrupt_line(capsys.readouterr().err)
    assert f"drawn: results saved in {out / 'drawn'}, figures not all drawn" in line
    assert (out / "drawn" / "manifest.json").exists() and os.readlink(out / "latest") == "drawn"


def test_interrupted_check_counts_the_checked_experiments(tmp_path, monkeypatch, capsys):
    import molrg.experiments as catalogue

    def stop(cfg, verbose=True):
        raise KeyboardInterrupt

    monkeypatch.setitem(catalogue.EXPERIMENTS, "first", _toy("first"))
    monkeypatch.setitem(catalogue.EXPERIMENTS, "stops", _toy("stops", run=stop))
    report = tmp_path / "checks.json"
    assert cli.main(["check", "--only", "first", "stops", "--json", str(report)]) == 130
    line = _one_interrupt_line(capsys.readouterr().err)
    assert "1 of 2 experiments checked, no report written" in line and not report.exists()


# A toy catalogue for subprocesses: "quick" finishes at once, "slow" sleeps until interrupted.
TOY = """
import dataclasses, sys, time
import molrg.experiments as catalogue
from molrg import cli
from molrg.study import Experiment, Results

@dataclasses.dataclass(frozen=True)
class Cfg:
    seed: int = 0  # unused

def quick(cfg, verbose=True):
    return Results(scalars={"a": 1.0}, tables={"t": [{"x": 1.0}]})

def slow(cfg, verbose=True):
    print("STARTED", flush=True)
    time.sleep(600)
    return quick(cfg)

for name, run in (("quick", quick), ("slow", slow)):
    catalogue.EXPERIMENTS[name] = Experiment(name=name, summary=name, config=Cfg(), run=run,
                                             plot=lambda r, f: [], claims=lambda res: [])
sys.exit(cli.main(sys.argv[1:]))
"""


def _toy_proc(tmp_path, argv):
    err = tmp_path / "stderr.txt"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(TOY), *argv], preexec_fn=_default_sigint,
                            stdout=subprocess.PIPE,
                            stderr=open(err, "w"), text=True, cwd=str(tmp_path), env=_env())
    deadline = time.time() + 240
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("STARTED") or not line:
            break
    assert proc.poll() is None, open(err).read()[-3000:]
    return proc, err


def test_interrupted_run_saves_nothing_and_says_so(tmp_path):
    out = tmp_path / "res"
    proc, err = _toy_proc(tmp_path, ["run", "slow", "--out", str(out), "--fig-dir", str(tmp_path / "f")])
    text = _interrupt(proc, err)
    assert proc.returncode == 130
    line = _one_interrupt_line(text)
    assert f"slow stopped before it finished; nothing written to {out / 'slow'}" in line
    assert "rerun the same command" in line
    assert os.listdir(out) == []  # no partial folder, no result that looks whole


def test_interrupted_reproduce_counts_the_finished_experiments(tmp_path):
    out = tmp_path / "res"
    proc, err = _toy_proc(tmp_path, ["reproduce", "--only", "quick", "slow", "--out", str(out),
                                     "--fig-dir", str(tmp_path / "f")])
    text = _interrupt(proc, err)
    assert proc.returncode == 130
    line = _one_interrupt_line(text)
    assert "1 of 2 experiments finished" in line and "--only slow" in line
    assert sorted(os.listdir(out)) == ["quick"]


SWEEP = ["sweep", "optimal_snr", "--grid", "sigma=0.01:10:40g", "--grid", "seed=0:5:6",
         "--set", "n=20", "--set", "K=2", "--set", "d=4", "--set", "num_samples=4000", "--batch", "1"]


def _cli(argv, cache):
    return subprocess.run([sys.executable, "-m", "molrg.cli", *argv], capture_output=True, text=True,
                          cwd=ROOT, env=_env(cache), timeout=600)


def test_interrupted_sweep_resumes_through_the_cli(tmp_path):
    import molrg

    out = tmp_path / "res"
    err_file = tmp_path / "stderr.txt"
    cache = tmp_path / "xla-cache"
    proc = subprocess.Popen([sys.executable, "-m", "molrg.cli", *SWEEP, "--out", str(out)], preexec_fn=_default_sigint,
                            stdout=subprocess.DEVNULL, stderr=open(err_file, "w"), cwd=ROOT, env=_env(cache))
    points = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        # --batch 1: one Parquet chunk per point
        found = [p for p in out.glob("sweep-optimal_snr-*/chunks")] if out.exists() else []
        if found and len([f for f in os.listdir(found[0]) if f.endswith(".parquet") and not f.startswith(".")]) >= 3:
            points = found[0]
            break
        time.sleep(0.02)
    assert points is not None and proc.poll() is None, "the sweep finished before it could be interrupted"
    text = _interrupt(proc, err_file)
    assert proc.returncode == 130, text[-3000:]
    line = _one_interrupt_line(text)
    saved = len([f for f in os.listdir(points) if f.endswith(".parquet") and not f.startswith(".")])
    assert f"{saved} of 240 points saved in {points.parent}" in line and "rerun the same command to resume" in line
    assert 3 <= saved < 240
    assert os.path.realpath(out / "latest") == str(points.parent)

    again = _cli([*SWEEP, "--out", str(out)], cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"({240 - saved} computed, {saved} already done)" in again.stdout
    clean = _cli([*SWEEP, "--out", str(tmp_path / "clean")], cache)
    assert clean.returncode == 0, clean.stderr[-3000:]
    resumed = molrg.load(out / "latest")
    whole = molrg.load(tmp_path / "clean" / "latest")
    assert len(resumed) == len(whole) == 240 and list(resumed["key"]) == list(whole["key"])
    for col in ("snr", "mse", "bayes_accuracy"):
        np.testing.assert_array_equal(resumed[col].to_numpy(), whole[col].to_numpy())
