"""Fault injection for the sweep engine's storage (and the run folder's): every way a result
file can go wrong is recomputed and named, never trusted; concurrent writers, kill -9 at
random moments and a full disk never leave a wrong table.

The reference for every resumed table is a clean, uninterrupted run of the same grid: the
resumed ``table.csv`` must equal it byte for byte (same batch size, so the same compiled
program computes every point). Results are Parquet chunks (one per compiled call; with
``batch_size=1`` one point each); the JSON point files of older molrg are still read, so
their faults are tested on a legacy copy of the clean folder.
"""

import contextlib
import csv
import dataclasses
import errno
import fcntl
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types

import jax.numpy as jnp
import numpy as np
import pytest

from molrg import cli
from molrg._io import default_mode
from molrg.experiments import run_sweep
from molrg.experiments import sweepable as find_sweepable
from molrg.study import Experiment, Results, load_results, run_experiment, sweepable
from molrg.study import run_sweep as run_study_sweep
from molrg.study import progress as progress_mod
from molrg.study import results as results_mod
from molrg.study import sweep as sweep_mod
from molrg.study.config import parse_grids
from molrg.study.progress import Progress
from molrg.study.sweep import (_make_record, _read_chunk, _verify, _write_record, expand_grid, load_points,
                               point_key)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"num_samples": 64, "n": 8, "K": 2, "d": 2}
GRID = {"sigma": ["0.1", "1.0"], "seed": ["0", "1"]}  # 4 points, one compiled program
_SETS = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]


def _sweep(out, grids=GRID, **kw):
    kw.setdefault("verbose", False)
    kw.setdefault("batch_size", 1)  # one program shape: resumed and clean runs agree bit for bit
    return run_sweep("optimal_snr", grids, overrides=SMALL, out_dir=str(out), **kw)


def _table(res) -> bytes:
    with open(os.path.join(res["dir"], "table.csv"), "rb") as fh:
        return fh.read()


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("molrg: warning:")]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A clean run of GRID: its folder and its table's bytes."""
    res = _sweep(tmp_path_factory.mktemp("clean"))
    assert res["computed"] == 4 and not res["rejected"] and not res["nonfinite"]
    return res, _table(res)


def _copy(clean_res, tmp_path):
    """A copy of the clean sweep folder under ``tmp_path`` (same sweep id); its chunk files."""
    dst = tmp_path / os.path.basename(clean_res["dir"])
    shutil.copytree(clean_res["dir"], dst)
    cdir = dst / "chunks"
    return dst, sorted(cdir / f for f in os.listdir(cdir) if f.endswith(".parquet"))


def _copy_legacy(clean_res, tmp_path):
    """The clean folder as older molrg wrote it (one schema-2 JSON file per point, no chunks);
    its point files."""
    dst, _ = _copy(clean_res, tmp_path)
    pdir = dst / "points"
    pdir.mkdir()
    for rec in load_points(str(dst)):
        _write_record(str(pdir / f"{rec['key']}.json"), _make_record(rec["key"], rec["config"], rec["outputs"]))
    shutil.rmtree(dst / "chunks")
    return dst, sorted(pdir / f for f in os.listdir(pdir) if f.endswith(".json"))


def _chunk_of(sweep_dir, key):
    cdir = os.path.join(sweep_dir, "chunks")
    for f in sorted(os.listdir(cdir)):
        chunk, reason = _read_chunk(os.path.join(cdir, f))
        if chunk is not None and key in chunk["keys"]:
            return chunk, chunk["keys"].index(key)
    raise AssertionError(f"no chunk holds {key}")


# ----- item 1: non-finite inputs and outputs ------------------------------------------------

@pytest.mark.parametrize("grid", [["sigma=nan"], ["sigma=inf"], ["delta=nan"], ["sigma=0.1,-inf"]])
def test_nonfinite_grid_values_fail_before_any_work(tmp_path, capsys, grid):
    out = tmp_path / "res"
    rc = cli.main(["sweep", "optimal_snr", *sum((["--grid", g] for g in grid), []), "--set", "num_samples=100",
                   "--set", "n=20", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("molrg: error: ") and len(err.strip().splitlines()) == 1
    assert grid[0].split("=")[0] in err and ("finite" in err or "nan" in err or "inf" in err)
    assert not out.exists()  # nothing written


def test_nonfinite_python_values_and_overrides_fail(tmp_path):
    with pytest.raises(ValueError, match=r"--grid sigma: must be a finite number; got nan"):
        _sweep(tmp_path, {"sigma": [0.1, float("nan")]})
    with pytest.raises(ValueError, match=r"--grid delta: must be a finite number; got inf"):
        _sweep(tmp_path, {"delta": [np.float64(np.inf)]})
    with pytest.raises(ValueError, match=r"sigma.*(finite|nan)"):
        run_sweep("optimal_snr", {"delta": [0.1]}, overrides=dict(SMALL, sigma="nan"),
                  out_dir=str(tmp_path), verbose=False)
    assert not os.listdir(tmp_path)


@dataclasses.dataclass(frozen=True)
class _ToyPoint:
    x: float = 2.0
    seed: int = 0


_TOY = sweepable("toy_sqrt", summary="sqrt(x - 1): NaN below x = 1", config=_ToyPoint(), static=(),
                 numeric=("x", "seed"),
                 point=lambda cfg, v: {"y": jnp.sqrt(v["x"] - 1.0), "z": 2.0 * v["x"]})


def test_nonfinite_outputs_are_flagged_and_not_counted_done(tmp_path, capsys):
    res = run_study_sweep(_TOY, {"x": [0.5, 2.0]}, out_dir=str(tmp_path), verbose=False)
    bad, good = res["rows"]
    assert np.isnan(bad["y"]) and bad["finite"] is False and bad["z"] == 1.0
    assert good["y"] == 1.0 and good["finite"] is True
    assert res["nonfinite"] == [bad["key"]]
    warn = _warnings(capsys.readouterr().err)
    assert len(warn) == 1 and "1 point(s) with NaN or infinite outputs" in warn[0] and "x=0.5" in warn[0]
    with open(os.path.join(res["dir"], "table.csv"), newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["finite"] for r in table] == ["False", "True"] and table[0]["y"] == "nan"
    man = json.load(open(os.path.join(res["dir"], "manifest.json")))
    assert man["nonfinite_points"] == [bad["key"]]
    # the stored chunk verifies (NaN stored as NaN) but the point is not done: a rerun recomputes it
    chunk, i = _chunk_of(res["dir"], bad["key"])
    assert not chunk["finite"][i] and np.isnan(chunk["outputs"]["y"][i]) and chunk["outputs"]["z"][i] == 1.0
    again = run_study_sweep(_TOY, {"x": [0.5, 2.0]}, out_dir=str(tmp_path), verbose=False)
    assert again["computed"] == 1 and again["skipped"] == 1


def test_record_checksum_covers_every_field():
    cfg = _ToyPoint(x=3.0)
    key = point_key(cfg)
    rec = _make_record(key, cfg, {"y": np.float64(np.inf), "v": np.arange(3.0)})
    assert rec["outputs"] == {"y": "inf", "v": [0.0, 1.0, 2.0]} and rec["finite"] is False
    for field, value in [("outputs", {"y": "inf", "v": [0.0, 1.0, 2.5]}), ("finite", True),
                         ("config", dict(rec["config"], x=4.0)), ("key", "0" * 20)]:
        forged = dict(rec, **{field: value})
        assert sweep_mod._checksum(forged["key"], forged["config"], forged["outputs"],
                                   forged["finite"]) != rec["sha256"], field


# ----- item 5 (and 4): corrupt, swapped, edited, old point files ----------------------------

def _valid_bytes(path):
    return open(path, "rb").read()


CORRUPTIONS = {
    "random_bytes": (lambda ok: b"\xff\xfe\x00" + bytes(random.Random(0).randrange(256) for _ in range(300)),
                     "not UTF-8"),
    "a_number": (lambda ok: b"5", "not a point record (a JSON int)"),
    "null": (lambda ok: b"null", "not a point record (a JSON NoneType)"),
    "empty_outputs": (lambda ok: b'{"outputs": {}}', "schema 1"),
    "empty_file": (lambda ok: b"", "not valid JSON"),
    "truncated": (lambda ok: ok[: len(ok) // 2], "not valid JSON"),
    "deep_nesting": (lambda ok: b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    "schema_1": (lambda ok: json.dumps({k: v for k, v in json.loads(ok).items()
                                        if k in ("key", "config", "outputs")}).encode(), "schema 1"),
    "unknown_schema": (lambda ok: json.dumps(dict(json.loads(ok), schema=3)).encode(), "unknown schema 3"),
    "missing_checksum": (lambda ok: json.dumps({k: v for k, v in json.loads(ok).items()
                                                if k != "sha256"}).encode(), "'sha256' missing"),
    "outputs_not_numbers": (lambda ok: json.dumps(dict(json.loads(ok), outputs={"snr": "high"})).encode(),
                            "holds non-numbers"),
    "edited_value": (lambda ok: json.dumps(dict(json.loads(ok), outputs=dict(
        json.loads(ok)["outputs"], snr=json.loads(ok)["outputs"]["snr"] * 1.5))).encode(), "checksum mismatch"),
    "edited_config": (lambda ok: json.dumps(dict(json.loads(ok), config=dict(
        json.loads(ok)["config"], sigma=7.0))).encode(), "checksum mismatch"),
    "forged_finite_flag": (lambda ok: _forged(ok, snr="nan"), "'finite' flag contradicts"),
    "ragged_outputs": (lambda ok: _forged(ok, snr=[[1.0], [1.0, 2.0]]), "ragged"),
}


def _forged(ok: bytes, **outputs) -> bytes:
    """A record with changed outputs and a checksum recomputed to match (claiming finite)."""
    rec = json.loads(ok)
    rec["outputs"].update(outputs)
    rec["sha256"] = sweep_mod._checksum(rec["key"], rec["config"], rec["outputs"], rec["finite"])
    return json.dumps(rec).encode()


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_bad_legacy_point_file_is_named_and_recomputed(clean, tmp_path, capsys, case):
    clean_res, clean_table = clean
    _, files = _copy_legacy(clean_res, tmp_path)
    make, reason = CORRUPTIONS[case]
    victim = files[1]
    victim.write_bytes(make(_valid_bytes(victim)))
    capsys.readouterr()
    res = _sweep(tmp_path)
    warn = _warnings(capsys.readouterr().err)
    assert len(warn) == 1 and str(victim) in warn[0] and reason in warn[0], warn
    assert res["computed"] == 1 and res["skipped"] == 3
    assert res["rejected"] == [(str(victim), res["rejected"][0][1])] and reason in res["rejected"][0][1]
    assert _table(res) == clean_table  # recomputed, bit for bit
    assert not victim.exists() and _chunk_of(res["dir"], victim.name[:-5])  # superseded by a chunk
    assert all(_verify(str(f), f.name[:-5])[1] is None for f in files if f != victim)  # the rest kept
    man = json.load(open(os.path.join(res["dir"], "manifest.json")))
    assert man["status"] == "complete" and man["rejected_files"][0]["file"] == str(victim)
    again = _sweep(tmp_path)
    assert again["computed"] == 0 and not _warnings(capsys.readouterr().err)


def _rewrite_chunk(path, edit, recompute_checksum=False):
    """Rewrites a chunk through pyarrow: ``edit(table, meta) -> (table, meta)``."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"molrg"])
    table, meta = edit(table, meta)
    if recompute_checksum and meta is not None:
        chunk_keys = table.column("key").to_pylist()
        cols = {}
        for name in table.column_names[1:]:
            col = table.column(name)
            cols[name] = col.to_pylist() if str(col.type) == "string" else col.to_numpy()
        meta["sha256"] = sweep_mod._chunk_digest(meta, chunk_keys, cols)
    table = table.replace_schema_metadata(None if meta is None else {"molrg": json.dumps(meta)})
    pq.write_table(table, path)


def _set_column(table, name, values):
    import pyarrow as pa

    return table.set_column(table.column_names.index(name), name, pa.array(values, table.column(name).type))


def test_a_flipped_byte_anywhere_is_caught_or_harmless(clean, tmp_path):
    """Each byte of a chunk flipped in turn (every 7th): the chunk is rejected, or what it reads
    is exactly the original (the byte carried no content: padding, statistics)."""
    _, files = _copy(clean[0], tmp_path)
    ok = files[0].read_bytes()
    good, _ = _read_chunk(str(files[0]))
    caught = 0
    for pos in range(0, len(ok), 7):
        bad = bytearray(ok)
        bad[pos] ^= 0xFF
        files[0].write_bytes(bytes(bad))
        chunk, reason = _read_chunk(str(files[0]))
        if reason is not None:
            caught += 1
            continue
        assert chunk["keys"] == good["keys"] and chunk["config"] == good["config"], pos
        assert np.array_equal(chunk["finite"], good["finite"]), pos
        for k, v in good["outputs"].items():
            assert v.tobytes() == chunk["outputs"][k].tobytes(), (pos, k)
    assert caught > len(ok) // 7 // 2  # most bytes carry content


CHUNK_CORRUPTIONS = {  # name: (bytes -> bytes, or a _rewrite_chunk edit; reasons that may be given)
    "random_bytes": (lambda ok: bytes(random.Random(0).randrange(256) for _ in range(300)), ["not a readable Parquet"]),
    "empty_file": (lambda ok: b"", ["not a readable Parquet"]),
    "truncated": (lambda ok: ok[: len(ok) // 2], ["not a readable Parquet"]),
    "json_point_record": (lambda ok: b'{"schema": 2}', ["not a readable Parquet"]),
    "edited_value": (lambda t, m: (_set_column(t, "out.snr", [t.column("out.snr")[0].as_py() * 1.5]), m),
                     ["checksum mismatch"]),
    "edited_config": (lambda t, m: (t, dict(m, config=dict(m["config"], sigma=7.0))), ["checksum mismatch"]),
    "edited_key": (lambda t, m: (_set_column(t, "key", ["0" * 20]), m), ["checksum mismatch"]),
    "no_metadata": (lambda t, m: (t, None), ["has no molrg metadata"]),
    "unknown_schema": (lambda t, m: (t, dict(m, schema=99)), ["unknown chunk schema 99"]),
    "dropped_column": (lambda t, m: (t.drop_columns(["out.mse"]), m), ["do not match its metadata"]),
    "forged_finite_flag": (lambda t, m: (_set_column(t, "out.snr", [float("nan")]), m),
                           ["'finite' column contradicts"]),
}


@pytest.mark.parametrize("case", sorted(CHUNK_CORRUPTIONS))
def test_bad_chunk_is_named_and_its_points_recomputed(clean, tmp_path, capsys, case):
    clean_res, clean_table = clean
    _, files = _copy(clean_res, tmp_path)
    make, reasons = CHUNK_CORRUPTIONS[case]
    victim = files[1]
    if make.__code__.co_argcount == 1:
        victim.write_bytes(make(victim.read_bytes()))
    else:
        _rewrite_chunk(str(victim), make, recompute_checksum=case == "forged_finite_flag")
    capsys.readouterr()
    res = _sweep(tmp_path)
    warn = _warnings(capsys.readouterr().err)
    assert len(warn) == 1 and f"chunk {victim} " in warn[0] and any(r in warn[0] for r in reasons), warn
    assert res["computed"] == 1 and res["skipped"] == 3 and res["rejected"][0][0] == str(victim)
    assert _table(res) == clean_table  # recomputed, bit for bit
    assert not victim.exists()  # superseded by the new chunk
    again = _sweep(tmp_path)
    assert again["computed"] == 0 and not _warnings(capsys.readouterr().err)


def test_chunk_copied_over_another_is_a_duplicate_not_a_loss_of_trust(clean, tmp_path, capsys):
    clean_res, clean_table = clean
    _, files = _copy(clean_res, tmp_path)
    shutil.copyfile(files[0], files[2])  # one point twice (it verifies: keys travel inside), one missing
    res = _sweep(tmp_path)
    assert not _warnings(capsys.readouterr().err)
    keys = [r["key"] for r in res["rows"]]
    assert len(keys) == len(set(keys)) == 4 and res["computed"] == 1
    assert _table(res) == clean_table


def test_file_copied_over_another_point_is_recomputed(clean, tmp_path, capsys):
    clean_res, clean_table = clean
    _, files = _copy_legacy(clean_res, tmp_path)
    shutil.copyfile(files[0], files[2])  # the issue: one point twice, one missing
    res = _sweep(tmp_path)
    warn = _warnings(capsys.readouterr().err)
    assert len(warn) == 1 and str(files[2]) in warn[0] and f"holds the point {files[0].name[:-5]}" in warn[0]
    keys = [r["key"] for r in res["rows"]]
    assert len(keys) == len(set(keys)) == 4 and res["computed"] == 1
    assert _table(res) == clean_table


def test_unreadable_point_file_is_named_and_recomputed(clean, tmp_path, capsys):
    clean_res, clean_table = clean
    _, files = _copy(clean_res, tmp_path)
    files[3].unlink()
    files[3].mkdir()  # not a file it can read (also under root, unlike chmod 000)
    (files[3] / "x").write_text("x")
    res = _sweep(tmp_path)  # named, its point recomputed into a new chunk
    warn = _warnings(capsys.readouterr().err)
    assert len(warn) == 1 and str(files[3]) in warn[0] and "unreadable" in warn[0]
    assert res["computed"] == 1 and _table(res) == clean_table
    shutil.rmtree(files[3])
    assert _sweep(tmp_path)["computed"] == 0 and not _warnings(capsys.readouterr().err)


def test_many_bad_files_give_bounded_warnings(tmp_path, capsys):
    grids = {"sigma": [repr(float(s)) for s in np.geomspace(0.05, 5, 25)]}
    res = _sweep(tmp_path, grids)  # batch_size=1: 25 chunks
    for f in os.listdir(os.path.join(res["dir"], "chunks")):
        with open(os.path.join(res["dir"], "chunks", f), "w") as fh:
            fh.write("5")
    capsys.readouterr()
    again = _sweep(tmp_path, grids)
    warn = _warnings(capsys.readouterr().err)
    assert again["computed"] == 25 and len(again["rejected"]) == 25
    assert len(warn) == sweep_mod._MAX_WARNINGS + 1 and "5 more files" in warn[-1]


@pytest.mark.parametrize("legacy", [False, True])
def test_load_points_verifies(clean, tmp_path, capsys, legacy):
    clean_res, _ = clean
    dst, files = (_copy_legacy if legacy else _copy)(clean_res, tmp_path)
    files[0].write_bytes(b"null")
    recs = load_points(str(dst))
    assert len(recs) == 3 and all(r["schema"] == (2 if legacy else 3) and r["finite"] for r in recs)
    assert all(point_key(r["config"]) == r["key"] for r in recs)  # each config as it was hashed
    warn = _warnings(capsys.readouterr().err)
    assert len(warn) == 1 and str(files[0]) in warn[0]


# ----- item 7: repeated grid values ---------------------------------------------------------

def test_repeated_grid_values_are_one_point(tmp_path, capsys):
    grids = parse_grids(["sigma=0.1,0.10,1e-1,1.0", "seed=0,0"])
    assert len(expand_grid(find_sweepable("optimal_snr"), grids, SMALL)) == 2
    res = _sweep(tmp_path, grids)
    assert res["points"] == res["computed"] == len(res["rows"]) == 2
    with open(os.path.join(res["dir"], "table.csv")) as fh:
        assert len(fh.read().strip().splitlines()) == 3  # header + one row per distinct point
    assert cli.main(["sweep", "optimal_snr", "--grid", "sigma=0.5,0.5", *_SETS, "--batch", "1",
                     "--out", str(tmp_path / "cli")]) == 0
    assert "1 points (1 computed" in capsys.readouterr().out


# ----- item 6: two writers ------------------------------------------------------------------

@contextlib.contextmanager
def _held_lock(sweep_dir, holder="4242@elsewhere"):
    fd = os.open(os.path.join(sweep_dir, ".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, holder.encode())
    try:
        yield
    finally:
        os.close(fd)


def test_locked_folder_fails_fast_with_the_holder(clean, tmp_path, capsys):
    clean_res, clean_table = clean
    dst, _ = _copy(clean_res, tmp_path)
    before = {f: os.stat(dst / f).st_mtime_ns for f in ("manifest.json", "table.csv")}
    with _held_lock(dst):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=r"sweep folder .* is in use by pid 4242 on elsewhere"):
            _sweep(tmp_path)
        assert time.perf_counter() - t0 < 5  # fails at once, no wait
    assert {f: os.stat(dst / f).st_mtime_ns for f in before} == before  # nothing touched
    assert _table(_sweep(tmp_path)) == clean_table  # the lock is free again
    # the command line: one error line, exit code 2
    argv = ["sweep", "optimal_snr", "--grid", "sigma=0.1", *_SETS, "--batch", "1", "--out", str(tmp_path / "cli")]
    assert cli.main(argv) == 0
    (folder,) = (tmp_path / "cli").glob("sweep-*")
    capsys.readouterr()
    with _held_lock(folder, holder="4243@here"):
        rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"molrg: error: sweep folder {folder} is in use by pid 4243 on here")
    assert len(err.strip().splitlines()) == 1


def test_non_writer_process_skips_the_lock(clean, tmp_path, monkeypatch):
    clean_res, _ = clean
    dst, _ = _copy(clean_res, tmp_path)
    monkeypatch.setattr(sweep_mod.jax, "process_index", lambda: 1)  # a second host: reads only
    with _held_lock(dst):
        res = _sweep(tmp_path)
    assert res["skipped"] == 4 and len(res["rows"]) == 4


def _child(code, **env_extra):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **env_extra)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


_PRELUDE = """
    import os, sys, time, jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_compilation_cache_dir", {cache!r})
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    from molrg.experiments import run_sweep
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A persistent compilation cache the child processes share (each compiles once)."""
    return tmp_path_factory.mktemp("xla-cache")


def _script(cache, body):
    """The child's source: the prelude (x64, the shared compilation cache), then ``body``."""
    return textwrap.dedent(_PRELUDE.format(cache=str(cache))) + textwrap.dedent(body)


def test_second_process_gets_a_clear_error_while_first_runs(clean, cache, tmp_path):
    clean_res, clean_table = clean
    code = _script(cache, f"""
    def slow(key):
        print("WROTE", key, flush=True)
        time.sleep(0.4)
    run_sweep("optimal_snr", {GRID!r}, overrides={SMALL!r}, out_dir={str(tmp_path)!r}, batch_size=1,
              verbose=False, on_point_written=slow)
    """)
    proc = _child(code)
    try:
        line = proc.stdout.readline()
        assert line.startswith("WROTE"), proc.stderr.read()
        with pytest.raises(ValueError, match=rf"is in use by pid {proc.pid} on {socket.gethostname()}"):
            _sweep(tmp_path)
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    res = _sweep(tmp_path)
    assert res["skipped"] == 4 and _table(res) == clean_table


@pytest.mark.slow
def test_many_concurrent_cli_sweeps(clean, tmp_path, capsys):
    """Six CLI sweeps into one folder at once: each finishes or fails with the lock's one line."""
    clean_res, _ = clean
    argv = ["-m", "molrg.cli", "sweep", "optimal_snr", "--grid", "sigma=0.1,1.0", "--grid", "seed=0,1",
            *sum((["--set", f"{k}={v}"] for k, v in SMALL.items()), []), "--batch", "1", "--out", str(tmp_path)]
    procs = [subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for _ in range(6)]
    outs = [(p.communicate(timeout=300)[1], p.returncode) for p in procs]
    for err, rc in outs:
        assert rc == 0 or (rc == 2 and "in use by pid" in err and "Traceback" not in err), err
    assert any(rc == 0 for _, rc in outs)
    (folder,) = tmp_path.glob("sweep-*")  # the CLI's folder (its --set values are strings)
    assert json.load(open(folder / "manifest.json"))["status"] == "complete"
    with open(folder / "table.csv", newline="") as fh:
        keys = [r["key"] for r in csv.DictReader(fh)]
    # one row per point, the clean run's points (the CLI computes in float32: values differ)
    assert keys == [r["key"] for r in clean_res["rows"]]
    assert cli.main(argv[2:]) == 0  # and a rerun finds every point done and verified
    assert "(0 computed, 4 already done)" in capsys.readouterr().out


# ----- kill -9 at random moments ------------------------------------------------------------

KILL_GRID = {"n": ["8", "9", "10"], "sigma": ["0.1", "0.5", "2.0"], "seed": ["0", "1"]}  # 18 points


def _check_folder_is_consistent(out):
    """Whatever a kill left: every visible chunk verifies; JSON files parse."""
    for sweep in [d for d in os.listdir(out) if d.startswith("sweep-")]:
        cdir = os.path.join(out, sweep, "chunks")
        for f in os.listdir(cdir):
            if not f.startswith("."):
                assert f.endswith(".parquet") and _read_chunk(os.path.join(cdir, f))[1] is None, f
        man = os.path.join(out, sweep, "manifest.json")
        if os.path.exists(man):
            json.load(open(man))


def _kill_trials(tmp_path, cache, trials, seed):
    out = tmp_path / "killed"
    code = _script(cache, f"""
    print("READY", flush=True)
    run_sweep("optimal_snr", {KILL_GRID!r}, overrides={dict(SMALL, d=2)!r}, out_dir={str(out)!r},
              batch_size=1, verbose=False)
    print("DONE", flush=True)
    """)
    rng = random.Random(seed)
    for _ in range(trials):
        proc = _child(code)
        try:
            assert proc.stdout.readline().startswith("READY"), proc.stderr.read()
            time.sleep(rng.uniform(0.2, 3.0))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        _check_folder_is_consistent(out)
    res = run_sweep("optimal_snr", KILL_GRID, overrides=dict(SMALL, d=2), out_dir=str(out), batch_size=1,
                    verbose=False)
    assert not res["rejected"] and res["computed"] + res["skipped"] == 18
    ref = run_sweep("optimal_snr", KILL_GRID, overrides=dict(SMALL, d=2), out_dir=str(tmp_path / "ref"),
                    batch_size=1, verbose=False)
    assert _table(res) == _table(ref)
    man = json.load(open(os.path.join(res["dir"], "manifest.json")))
    assert man["status"] == "complete"
    assert not [f for f in os.listdir(res["dir"]) + os.listdir(os.path.join(res["dir"], "chunks"))
                if f.endswith(".tmp")]
    return res


def test_kill9_at_random_moments_then_resume_equals_clean_run(tmp_path, cache):
    _kill_trials(tmp_path, cache, trials=3, seed=0)


@pytest.mark.slow
def test_kill9_over_many_trials(tmp_path, cache):
    _kill_trials(tmp_path, cache, trials=12, seed=1)


def test_leftover_temporaries_are_removed(clean, tmp_path):
    clean_res, clean_table = clean
    dst, files = _copy(clean_res, tmp_path)
    junk = [dst / "chunks" / f".{files[0].name}.abc123.tmp", dst / ".table.csv.xyz.tmp"]
    for j in junk:
        j.write_text('{"half":')
    res = _sweep(tmp_path)
    assert res["computed"] == 0 and not any(j.exists() for j in junk) and _table(res) == clean_table


# ----- a full disk --------------------------------------------------------------------------

class _Disk:
    def __init__(self, free):
        self.free = free


class _LimitedFile:
    """A file whose writes fail with ENOSPC once the disk's free bytes run out."""

    def __init__(self, fh, disk):
        self._fh, self._disk = fh, disk

    def write(self, s):
        self._disk.free -= len(s)
        if self._disk.free < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._fh.write(s)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def test_full_disk_stops_cleanly_and_resumes(clean, tmp_path, monkeypatch):
    clean_res, clean_table = clean
    real = results_mod.atomic_write
    disk = _Disk(free=0)

    @contextlib.contextmanager
    def limited(path, mode="w", **kw):
        with real(path, mode, **kw) as fh:
            yield _LimitedFile(fh, disk)

    monkeypatch.setattr(results_mod, "atomic_write", limited)
    monkeypatch.setattr(sweep_mod, "atomic_write", limited)
    cdir = os.path.join(clean_res["dir"], "chunks")
    one_point = max(os.path.getsize(os.path.join(cdir, f)) for f in os.listdir(cdir))  # a chunk: one point
    manifest = os.path.getsize(os.path.join(clean_res["dir"], "manifest.json"))  # > a "running" one
    disk.free = manifest + 2 * one_point + 50  # the manifest, two chunks, then full
    with pytest.raises(OSError) as info:
        _sweep(tmp_path)
    assert info.value.errno == errno.ENOSPC and "cannot write" in str(info.value)
    assert "rerun to resume" in str(info.value) and "/chunks/" in str(info.value)
    sweep_dir = os.path.join(tmp_path, os.path.basename(clean_res["dir"]))
    visible = [f for f in os.listdir(os.path.join(sweep_dir, "chunks")) if not f.startswith(".")]
    assert 1 <= len(visible) < 4 and not [f for f in os.listdir(os.path.join(sweep_dir, "chunks"))
                                          if f.endswith(".tmp")]  # no torn or temporary file
    _check_folder_is_consistent(str(tmp_path))
    assert json.load(open(os.path.join(sweep_dir, "manifest.json")))["status"] != "complete"
    monkeypatch.undo()  # space again
    res = _sweep(tmp_path)
    assert res["skipped"] == len(visible) and _table(res) == clean_table


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="no user namespaces to mount a small tmpfs")
def test_real_full_tmpfs(clean, cache, tmp_path):
    """A real 48 KiB tmpfs (user + mount namespace): ENOSPC from the kernel, then resume."""
    clean_res, clean_table = clean
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = _script(cache, f"""
    import json
    fill = os.path.join({str(mnt)!r}, "filler")
    with open(fill, "wb") as fh:  # leave room for the manifest and about two chunks
        fh.write(b"x" * (48 * 1024 - 4 * 4096 - 2048))
    err = None
    try:
        run_sweep("optimal_snr", {GRID!r}, overrides={SMALL!r}, out_dir={str(mnt)!r}, batch_size=1,
                  verbose=False)
    except OSError as exc:
        err = [exc.errno, str(exc)]
    os.unlink(fill)
    res = run_sweep("optimal_snr", {GRID!r}, overrides={SMALL!r}, out_dir={str(mnt)!r}, batch_size=1,
                    verbose=False)
    print(json.dumps({{"err": err, "skipped": res["skipped"],
                      "table": open(os.path.join(res["dir"], "table.csv"), newline="").read()}}))
    """)
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run(["unshare", "-rm", "sh", "-c",
                           f"mount -t tmpfs -o size=48k tmpfs {mnt} && exec {sys.executable} {script}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["err"] and got["err"][0] == errno.ENOSPC, got
    assert got["table"].encode() == clean_table


# ----- item 9: modes, leftover run folders, arrays.npz; progress lines ----------------------

@contextlib.contextmanager
def _umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path):
    return os.stat(path).st_mode & 0o777


def test_files_and_folders_get_umask_modes(tmp_path):
    with _umask(0o022):
        assert default_mode() == 0o644 and default_mode(directory=True) == 0o755
        res = _sweep(tmp_path / "sweep", {"sigma": ["0.3"]})
        for f in ("manifest.json", "table.csv", "table.parquet", *(f"chunks/{c}" for c in
                                                                    os.listdir(os.path.join(res["dir"], "chunks")))):
            assert _mode(os.path.join(res["dir"], f)) == 0o644, f
        path = run_experiment(_toy_experiment(), out_dir=str(tmp_path / "runs"), verbose=False, plot=False)
        assert _mode(path) == 0o755
        for f in os.listdir(path):
            assert _mode(os.path.join(path, f)) == 0o644, f
    with _umask(0o077):
        path = run_experiment(_toy_experiment(), out_dir=str(tmp_path / "private"), verbose=False, plot=False)
        assert _mode(path) == 0o700 and _mode(os.path.join(path, "manifest.json")) == 0o600


def _toy_experiment():
    @dataclasses.dataclass(frozen=True)
    class ToyConfig:
        value: float = 2.0

    return Experiment(name="toy", summary="toy", config=ToyConfig(),
                      run=lambda cfg, verbose=True: Results(scalars={"value": cfg.value}, tables={"t": [{"x": 1}]}),
                      plot=lambda r, f: [])


def test_run_folder_always_has_arrays_npz(tmp_path):
    path = run_experiment(_toy_experiment(), out_dir=str(tmp_path), verbose=False, plot=False)
    assert os.path.exists(os.path.join(path, "arrays.npz"))
    assert load_results(path)["arrays"] == {}


def test_dead_runs_partial_folders_are_removed(tmp_path):
    host = socket.gethostname()
    sleeper = None
    made = {}
    try:
        def make(name, age=0.0):
            p = tmp_path / name
            p.mkdir()
            (p / "results.json").write_text("{}")
            if age:
                os.utime(p, (time.time() - age, time.time() - age))
            made[name] = p
            return p

        dead_pid = 2 ** 22 + 12345  # above Linux's largest pid_max: never alive
        make(f".toy.partial-{dead_pid}@{host}-abc")            # killed run: removed
        make(f"toy.old-{dead_pid}")                            # killed between renames: removed
        make(f".toy.partial-{os.getppid()}@{host}-live")       # a live process's run: kept
        make(f".toy.partial-{dead_pid}@other-host-abc")        # another host's: kept
        make(".toy.partial-oldstyle", age=2 * 86400)           # pre-pid name, two days old: removed
        make(".toy.partial-recent")                            # pre-pid name, fresh: kept
        make(f".other.partial-{dead_pid}@{host}-abc")          # another experiment's: kept
        sleeper = subprocess.Popen(["sleep", "60"])
        make(f".toy.partial-{sleeper.pid}@{host}-reused", age=3600)  # pid reused since: removed
        run_experiment(_toy_experiment(), out_dir=str(tmp_path), verbose=False, plot=False)
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
    left = {n for n, p in made.items() if p.exists()}
    assert left == {f".toy.partial-{os.getppid()}@{host}-live", f".toy.partial-{dead_pid}@other-host-abc",
                    ".toy.partial-recent", f".other.partial-{dead_pid}@{host}-abc"}
    assert (tmp_path / "toy" / "manifest.json").exists()


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_progress_writes_plain_lines_off_a_terminal(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress_mod, "time", types.SimpleNamespace(perf_counter=clock))
    s = _Stream(tty=False)
    p = Progress(1000, "job", stream=s)
    for _ in range(1000):
        clock.t += 0.001
        p.update(1)
    lines = s.getvalue().split("\n")
    assert "\r" not in s.getvalue() and lines[-1] == ""
    assert 10 <= len(lines) - 1 <= 11 and "1000/1000" in lines[-2]  # one per tenth, and the last
    s = _Stream(tty=False)
    p = Progress(1000, "slow", stream=s)
    for _ in range(20):
        clock.t += 6.0  # slower than the interval: a line each time
        p.update(1)
    assert len(s.getvalue().splitlines()) == 20


def test_progress_redraws_in_place_on_a_terminal_and_eta_ignores_skipped(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress_mod, "time", types.SimpleNamespace(perf_counter=clock))
    s = _Stream(tty=True)
    p = Progress(100, "sweep", stream=s)
    p.skip(90, note="(90 already done)")  # found on disk: no time spent
    clock.t += 1.0
    p.update(1)  # one point computed in 1 s: 9 left take 9 s
    assert "91/100" in s.getvalue() and "ETA   9.0s" in s.getvalue() and s.getvalue().endswith("\r")
    clock.t += 9.0
    p.update(9)
    assert s.getvalue().endswith("\n") and "100/100" in s.getvalue()
