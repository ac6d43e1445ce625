"""The command line: list, run with overrides, error paths, atomic result folders."""

import dataclasses
import json
import os
import time

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
    assert json.load(open(out / "demo" / "figures.json")) == [str(figs / "demo.png"), str(figs / "demo.pdf")]
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no partial folders left
    assert os.path.islink(out / "latest") and os.path.realpath(out / "latest") == str(out / "demo")


def test_bad_overrides_fail_before_any_work(tmp_path, capsys):
    out = tmp_path / "res"
    assert cli.main(["run", "demo", "--set", "bogus=1", "--out", str(out)]) == 2
    assert "--set bogus: unknown config key" in capsys.readouterr().err
    assert cli.main(["run", "demo", "--set", "sigmas=0,1", "--out", str(out)]) == 2
    assert "sigmas: every sigma must be > 0" in capsys.readouterr().err
    assert cli.main(["run", "nope", "--out", str(out)]) == 2
    assert not out.exists() or not os.listdir(out)  # nothing written


def _toy_experiment(passed: bool, expected: str | None = "PASS"):
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
        return [Claim("toy", "value is 2", {"value": v}, "exact", bool(ok is True and v == 2.0) == passed,
                      source="molrg", expected=expected, reason="toy reason" if expected == "FAIL" else "")]

    return Experiment(name="toy", summary="toy", config=ToyConfig(), run=run, plot=lambda r, f: [],
                      quick={"value": 2.0}, claims=claims)


@pytest.mark.parametrize("passed, expected, rc_want", [
    (True, "PASS", 0), (False, "PASS", 1), (False, "FAIL", 0), (True, "FAIL", 1), (True, None, 1)])
def test_check_exit_code_is_whether_verdicts_match_expectations(tmp_path, monkeypatch, passed, expected,
                                                                 rc_want, capsys):
    import molrg.experiments as catalogue

    monkeypatch.setitem(catalogue.EXPERIMENTS, "toy", _toy_experiment(passed, expected))
    path = tmp_path / "checks.json"
    keep = tmp_path / "kept"
    rc = cli.main(["check", "--quick", "--only", "toy", "--json", str(path), "--out", str(keep)])
    rep = json.load(open(path))
    assert rc == rc_want
    c = rep["claims"][0]
    assert c["name"] == "toy" and c["verdict"] == ("PASS" if passed else "FAIL")
    assert c["source"] == "molrg" and c["expected"] == expected and c["as_expected"] == (rc_want == 0)
    assert rep["passed"] == int(passed) and rep["failed"] == int(not passed)
    assert rep["unexpected"] == ([] if rc_want == 0 else ["toy"])
    assert (keep / "toy" / "manifest.json").exists()  # the run the claims were computed from
    if rc_want:
        assert "UNEXPECTED" in capsys.readouterr().out


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


# ----- --show-config: every key with its type, default and meaning, nothing run -------------

def _configs():
    import molrg.experiments as catalogue

    return ([("run", n, e.config) for n, e in catalogue.EXPERIMENTS.items()]
            + [("sweep", n, s.config) for n, s in catalogue.SWEEPABLES.items()])


def test_every_config_field_has_a_meaning():
    import dataclasses

    from molrg.study.config import field_docs

    missing = [(name, f.name) for _, name, cfg in _configs() for f in dataclasses.fields(cfg)
               if not field_docs(type(cfg))[f.name].strip()]
    assert not missing, f"config fields without a one-line meaning: {missing}"


@pytest.mark.parametrize("kind", ["run", "sweep"])
def test_show_config_prints_every_key_and_runs_nothing(tmp_path, monkeypatch, capsys, kind):
    import dataclasses
    import typing

    from molrg.study.config import field_docs, format_value, type_name

    monkeypatch.chdir(tmp_path)
    for k, name, cfg in _configs():
        if k != kind:
            continue
        assert cli.main([kind, name, "--show-config"]) == 0
        out = capsys.readouterr().out
        lines = out.splitlines()
        hints = typing.get_type_hints(type(cfg))
        docs = field_docs(type(cfg))
        for f in dataclasses.fields(cfg):
            line = next((ln for ln in lines if ln.split()[:1] == [f.name]), None)
            assert line is not None, (name, f.name, out)
            assert type_name(hints[f.name]) in line and docs[f.name] in line, (name, line)
            assert format_value(getattr(cfg, f.name)) in line, (name, line)
    assert os.listdir(tmp_path) == []  # nothing run, nothing written


@dataclasses.dataclass(frozen=True)
class _Documented:
    """A config documented every way field_docs reads (``double quotes`` dropped).

    Attributes:
      a: from the docstring,
        on two lines
      b, c: shared entry
      e: one; f: two
    """

    a: int = 1  # the docstring wins
    b: float = 0.5
    c: tuple[int, ...] = (1, 2)
    d: str = ""  # the comment
    e: bool = True
    f: float | None = None
    g: int = 0

    def validate(self):
        x: int = 3  # a local variable is not a field
        return x


def test_show_config_reads_comments_and_docstring_attributes():
    from molrg.study.config import describe_config, field_docs

    assert field_docs(_Documented) == {"a": "from the docstring, on two lines", "b": "shared entry",
                                       "c": "shared entry", "d": "the comment", "e": "one", "f": "two",
                                       "g": ""}
    lines = describe_config(_Documented(), {"quick": {"a": 3}}).splitlines()
    assert lines[0].split() == ["key", "type", "default", "quick", "meaning"]
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    assert rows["a"].split()[:4] == ["a", "int", "1", "3"]
    assert rows["c"].split()[:3] == ["c", "tuple[int,", "...]"] and " 1,2 " in rows["c"]
    assert rows["d"].split()[:3] == ["d", "str", "(empty)"]
    assert rows["e"].split()[:3] == ["e", "bool", "true"] and rows["f"].split()[:5] == ["f", "float", "|", "None", "none"]


def test_show_config_with_overrides_shows_and_validates_the_values(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "demo", "--show-config", "--quick", "--set", "num_test=7"]) == 0
    out = capsys.readouterr().out
    header = next(ln for ln in out.splitlines() if ln.split()[:1] == ["key"])
    assert header.split() == ["key", "type", "default", "quick", "value", "meaning"]
    line = next(ln for ln in out.splitlines() if ln.split()[:1] == ["num_test"])
    assert line.split()[2] == "4000" and " 7 " in line
    assert cli.main(["run", "demo", "--show-config", "--set", "sigmas=0,1"]) == 2
    assert "sigmas: every sigma must be > 0" in capsys.readouterr().err
    assert cli.main(["sweep", "optimal_snr", "--show-config", "--grid", "sigma=0.1,1", "--grid", "seed=0,1"]) == 0
    out = capsys.readouterr().out
    assert "4 points" in out and " numeric " in next(ln for ln in out.splitlines() if ln.startswith("  sigma"))
    assert os.listdir(tmp_path) == []


# ----- bad input: one error line naming the argument, exit 2, before any work or file -------

SMALL_SETS = ["--set", "num_samples=64", "--set", "n=12", "--set", "K=2", "--set", "d=3"]


@pytest.mark.parametrize("argv, message", [
    (["sweep", "optimal_snr", "--grid", "sigma=nan"], "--grid sigma: must be a finite number"),
    (["sweep", "optimal_snr", "--grid", "sigma=0.1,inf"], "--grid sigma: must be a finite number"),
    (["sweep", "optimal_snr", "--grid", "sigma=0.1", "--set", "delta=nan"], "--set delta: must be a finite number"),
    (["run", "demo", "--set", "delta=nan"], "--set delta: must be a finite number"),
    (["run", "demo", "--set", "sigmas=0.1,-inf"], "--set sigmas: must be a finite number"),
    (["sweep", "optimal_snr", "--grid", "sigma=1:2:-3"], "--grid sigma: '1:2:-3' must be lo:hi:num"),
    (["sweep", "optimal_snr", "--grid", "sigma=0.1:1:xg"], "--grid sigma: '0.1:1:xg' must be lo:hi:num"),
    (["sweep", "optimal_snr", "--grid", "sigma=0:1:3g"], "a geometric grid needs lo and hi nonzero"),
    (["sweep", "optimal_snr", "--grid", "sigma=1:2"], "--grid sigma: '1:2' must be lo:hi:num"),
    (["sweep", "optimal_snr", "--grid", "sigma=0.1", "--grid", "sigma=0.2"], "--grid sigma: given twice"),
    (["sweep", "optimal_snr", "--grid", "sigma=0.1", "--batch", "0"], "--batch: must be >= 1"),
    (["run", "demo", "--config", "MISSING.toml"], "--config: no such file"),
    (["sweep", "optimal_snr", "--config", "MISSING.toml"], "--config: no such file"),
    (["ls", "MISSING"], "DIR: no such folder"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "res"
    extra = [] if argv[0] == "ls" else ["--out", str(out)]
    assert cli.main(argv + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("molrg: error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("text, message", [
    ("[sweeps.optimal_snr]\ngrid = 5\n", "[sweeps.optimal_snr.grid] must be a table"),
    ("[sweeps.optimal_snr.grid]\nsigma = {a = 1}\n", "expected a value or a list of values"),
    ("[sweeps.optimal_snr\n", "not valid TOML"),
    ("sweeps = 3\n", "sweeps must be tables"),
    ("[sweeps]\noptimal_snr = 3\n", "[sweeps.optimal_snr] must be a table"),
    ("[sweeps.optimal_snr.set]\ndelta = nan\n", "--set delta: must be a finite number"),
    ("[sweeps.optimal_snr.grid]\nsigma = [0.1, inf]\n", "--grid sigma: must be a finite number"),
])
def test_malformed_config_files_are_named(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    out = tmp_path / "res"
    assert cli.main(["sweep", "optimal_snr", "--config", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and ("--config" in err or "--set" in err or "--grid" in err), err
    assert not out.exists()


def test_run_config_file_errors_are_named(tmp_path, capsys):
    for text, message in [("run = 5\n", "[run] must be a table"), ("[run]\nnum_test = [[1]]\n", "num_test"),
                          ("[run\n", "not valid TOML")]:
        path = tmp_path / "bad.toml"
        path.write_text(text)
        assert cli.main(["run", "demo", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert f"--config {path}" in err and message in err, err
    assert cli.main(["run", "demo", "--config", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_repeated_grid_values_are_one_point():
    from molrg.study.config import parse_grids

    assert parse_grids(["sigma=0.1,0.2,0.1", "seed=0:3:4"]) == {"sigma": ["0.1", "0.2"],
                                                                 "seed": ["0.0", "1.0", "2.0", "3.0"]}


def test_int_fields_read_integral_floats_from_ranges():
    from molrg.experiments import sweepable
    from molrg.study.config import parse_grids, parse_value
    from molrg.study.sweep import expand_grid

    assert parse_value("3.0", int, "seed") == 3 and parse_value("1e3", int, "n") == 1000
    with pytest.raises(ValueError, match="--set seed: cannot read '2.5' as int"):
        parse_value("2.5", int, "seed")
    pts = expand_grid(sweepable("optimal_snr"), parse_grids(["seed=0:3:4"]))
    assert [p.seed for p in pts] == [0, 1, 2, 3]


def _unwritable(tmp_path):
    """A folder this process cannot write in (root ignores permission bits: use /proc)."""
    if os.geteuid() == 0:
        if not os.path.isdir("/proc/self"):
            pytest.skip("needs a read-only folder")
        return "/proc/molrg-cannot-write"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    return str(ro / "sub")


def _counting_experiment(calls):
    import dataclasses

    from molrg.study import Experiment, Results

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        value: float = 1.0  # a number

    def run(cfg, verbose=True):
        calls.append(cfg)
        return Results(scalars={"value": cfg.value}, tables={"rows": [{"x": 1.0}]})

    return Experiment(name="counting", summary="counts its runs", config=Cfg(), run=run,
                      plot=lambda r, f: [])


@pytest.mark.parametrize("flag", ["--out", "--fig-dir"])
@pytest.mark.parametrize("shape", ["file", "under_file", "read_only"])
def test_unwritable_folders_fail_before_the_computation(tmp_path, monkeypatch, capsys, flag, shape):
    import molrg.experiments as catalogue

    calls = []
    monkeypatch.setitem(catalogue.EXPERIMENTS, "counting", _counting_experiment(calls))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    bad = {"file": str(a_file), "under_file": str(a_file / "sub"), "read_only": _unwritable(tmp_path)}[shape]
    good = {"--out": str(tmp_path / "res"), "--fig-dir": str(tmp_path / "figs")}
    good[flag] = bad
    assert cli.main(["run", "counting", "--out", good["--out"], "--fig-dir", good["--fig-dir"]]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"molrg: error: {flag}: ") and err.count("\n") == 1, err
    assert calls == []  # no work done
    assert not (tmp_path / "res").exists()


def test_sweep_and_check_refuse_unwritable_paths(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert cli.main(["sweep", "optimal_snr", "--grid", "sigma=0.1", "--out", str(a_file)]) == 2
    assert "--out: " in capsys.readouterr().err
    assert cli.main(["check", "--only", "demo", "--json", str(a_file / "r.json")]) == 2
    assert "--json: " in capsys.readouterr().err
    assert cli.main(["check", "--only", "demo", "--json", str(tmp_path)]) == 2
    assert "--json: " in capsys.readouterr().err
    assert cli.main(["reproduce", "--only", "demo", "--fig-dir", str(a_file)]) == 2
    assert "--fig-dir: " in capsys.readouterr().err


# ----- latest link and molrg ls -----------------------------------------------------------

def test_sweep_prints_its_folder_links_latest_and_ls_lists_it(tmp_path, capsys):
    import molrg.experiments as catalogue

    out = tmp_path / "res"
    argv = ["sweep", "optimal_snr", "--grid", "sigma=0.1,1", "--grid", "seed=0,1", *SMALL_SETS, "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    folder = next(p for p in os.listdir(out) if p.startswith("sweep-optimal_snr-"))
    assert str(out / folder) in printed
    assert os.path.realpath(out / "latest") == str(out / folder) and os.path.islink(out / "latest")
    catalogue.run_experiment("demo", quick=True, overrides={"num_test": 100, "sigmas": "0.1,1.0"},
                             out_dir=str(out), verbose=False, plot=False)
    # a stopped sweep: its manifest says so and some points are missing (3 of the 4 one-point chunks)
    assert cli.main(argv + ["--batch", "1", "--out", str(tmp_path / "one-per-chunk")]) == 0
    capsys.readouterr()
    (one,) = (tmp_path / "one-per-chunk").glob("sweep-*")
    chunks = sorted((one / "chunks").glob("*.parquet"))
    man = json.load(open(out / folder / "manifest.json"))
    (out / "sweep-optimal_snr-stopped" / "chunks").mkdir(parents=True)
    for p in chunks[:3]:
        (out / "sweep-optimal_snr-stopped" / "chunks" / p.name).write_bytes(p.read_bytes())
    json.dump(dict(man, status="interrupted"), open(out / "sweep-optimal_snr-stopped" / "manifest.json", "w"))
    assert cli.main(["ls", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["folder", "kind", "study", "points", "status", "date"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert rows[folder][1:6] == ["(latest)", "sweep", "optimal_snr", "4/4", "complete"]
    assert rows["sweep-optimal_snr-stopped"][1:5] == ["sweep", "optimal_snr", "3/4", "partial"]
    assert rows["demo"][1:5] == ["run", "demo", "-", "complete"]
    assert len(rows) == 3


def test_os_errors_are_one_line_and_exit_1(monkeypatch, capsys):
    import errno

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device: results/x.json; rerun to resume")

    monkeypatch.setattr(cli, "_cmd_ls", full_disk)
    assert cli.main(["ls"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("molrg: error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ----- reproduce --jobs: experiments in worker processes -----------------------------------
def test_reproduce_in_worker_processes_equals_sequential(tmp_path):
    """``--jobs 2`` runs each experiment in its own process (costliest first) and must give
    the same results, verdicts and report as the sequential run (both through the command
    line, so both run in the configuration ``molrg`` itself sets up)."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MOLRG_CACHE_DIR=str(tmp_path / "cache"))
    runs, printed = {}, {}
    for jobs in ("1", "2"):
        out, figs = tmp_path / f"res{jobs}", tmp_path / f"fig{jobs}"
        proc = subprocess.run([sys.executable, "-m", "molrg.cli", "reproduce", "--quick", "--only", "probes",
                               "peak_map", "--jobs", jobs, "--out", str(out), "--fig-dir", str(figs)],
                              capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        printed[jobs] = proc.stdout
        runs[jobs] = json.loads((figs / "checks.json").read_text())
        assert sorted(p for p in os.listdir(out) if not p.startswith(".")) == ["peak_map", "probes"]
        assert (figs / "REPORT.md").exists()
    assert "in 2 worker processes" in printed["2"] and "[probes]" in printed["2"] and "[peak_map]" in printed["2"]
    seq, par = runs["1"], runs["2"]
    assert [c["name"] for c in par["claims"]] == [c["name"] for c in seq["claims"]] and seq["claims"]
    for a, b in zip(seq["claims"], par["claims"]):
        assert a["passed"] == b["passed"] and a["measured"] == b["measured"], a["name"]


def test_reproduce_jobs_must_be_positive(tmp_path, capsys):
    assert cli.main(["reproduce", "--only", "demo", "--jobs", "0", "--out", str(tmp_path / "r"),
                     "--fig-dir", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("molrg: error: --jobs: must be >= 1") and err.count("\n") == 1
    assert not (tmp_path / "r").exists() and not (tmp_path / "f").exists()


def test_a_failing_worker_stops_the_others_and_names_itself(tmp_path):
    """A worker that fails (here: an experiment the worker cannot find) stops the run with an
    error naming it, and the worker still running is stopped, not left behind."""
    import types

    slow = types.SimpleNamespace(name="phase_transition", cost=1.0)  # real, and long: must be stopped
    bad = types.SimpleNamespace(name="no_such_experiment", cost=0.0)
    t0 = time.perf_counter()
    with pytest.raises(OSError, match="experiment no_such_experiment failed"):
        cli._run_parallel([slow, bad], 2, False, str(tmp_path / "r"), str(tmp_path / "f"))
    assert time.perf_counter() - t0 < 120
    assert not (tmp_path / "r" / "phase_transition").exists()
