"""A sweep across two JAX processes on localhost: the documented multi-host path, run.

Two processes start with ``MOLRG_DISTRIBUTED=1`` and JAX's coordinator variables
(``JAX_COORDINATOR_ADDRESS`` on a free local port, ``JAX_NUM_PROCESSES=2``,
``JAX_PROCESS_ID``), two virtual CPU devices each (``--xla_force_host_platform_device_count``)
and CPU collectives over gloo, so the sweep's mesh spans four devices in two processes. The
test shows that (a) the numbers equal a one-process run, (b) only process 0 writes files
(every file-writing function of the engine is wrapped in the children and prints its
caller's process index), and (c) after ``kill -9`` of one process once a chunk has landed
(the other waits on its lost peer then, and is killed too, as a cluster's scheduler would),
relaunching both resumes: every saved chunk is kept as it was and no saved point is computed
again.

Every child runs under a timeout, so a hang (a lost peer, a port in use) fails the test
instead of hanging CI.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from molrg.experiments import run_sweep
from molrg.study.sweep import _read_chunk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"num_samples": 64, "n": 12, "K": 2, "d": 3}
GRID = {"sigma": ["0.05", "0.5", "5", "20"], "seed": ["0", "1", "2", "3"]}  # 16 points
BATCH = 4  # 4 global devices: chunks of 4 points, 4 chunks, one compiled program
TIMEOUT = 150  # seconds for one launch of both processes

CHILD = textwrap.dedent("""
    import json, os, sys, time
    import jax
    jax.config.update("jax_enable_x64", True)
    from molrg.experiments import run_sweep
    from molrg.study import sweep as sweep_mod

    log = []
    def logged(fn, name):  # every file write of the engine, with the writing process
        def wrapper(path, *args, **kwargs):
            log.append([jax.process_index(), name, os.path.basename(str(path))])
            print("WRITE", *log[-1], flush=True)
            return fn(path, *args, **kwargs)
        return wrapper
    for name in ("atomic_write", "write_json_atomic", "_lock_folder"):
        setattr(sweep_mod, name, logged(getattr(sweep_mod, name), name))

    out, grid, small, batch, pause = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), \\
        int(sys.argv[4]), float(sys.argv[5])
    jax.config.update("jax_compilation_cache_dir", sys.argv[6])  # launch 2 reuses launch 1's programs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    def hook(key):
        if jax.process_index() == 0:
            print("WROTE", key, flush=True)
        time.sleep(pause)
    res = run_sweep("optimal_snr", grid, overrides=small, out_dir=out, batch_size=batch, verbose=False,
                    on_point_written=hook)
    print("RESULT", json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                                "devices": len(jax.devices()), "local": len(jax.local_devices()),
                                "computed": res["computed"], "skipped": res["skipped"],
                                "keys": [r["key"] for r in res["rows"]],
                                "snr": [r["snr"] for r in res["rows"]], "mse": [r["mse"] for r in res["rows"]],
                                "log": log}), flush=True)
""")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out, cache, pause=0.0):
    """Both processes of one launch (``Popen``s), on a fresh coordinator port."""
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, MOLRG_DISTRIBUTED="1", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid), JAX_PLATFORMS="cpu",
                   JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo", PYTHONUNBUFFERED="1",
                   XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false "
                             "intra_op_parallelism_threads=1")
        procs.append(subprocess.Popen(
            [sys.executable, "-c", CHILD, str(out), json.dumps(GRID), json.dumps(SMALL), str(BATCH), str(pause),
             str(cache)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env))
    return procs


def _finish(procs):
    """Each process's RESULT, failing (never hanging) on a timeout or an error."""
    results = []
    deadline = time.time() + TIMEOUT
    try:
        for p in procs:
            try:
                stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"a sweep process hung for {TIMEOUT} s")
            assert p.returncode == 0, stderr[-3000:]
            line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
            assert line, stdout[-2000:] + stderr[-2000:]
            results.append(json.loads(line[-1][len("RESULT "):]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return sorted(results, key=lambda r: r["process"])


def _files(sweep_dir):
    out = []
    for folder, _, names in os.walk(sweep_dir):
        out += [os.path.relpath(os.path.join(folder, f), sweep_dir) for f in names]
    return sorted(out)


def _reference(tmp_path):
    """The same sweep in this (one) process, one device."""
    import jax

    with jax.enable_x64(True):
        return run_sweep("optimal_snr", GRID, overrides=SMALL, out_dir=str(tmp_path / "one"), verbose=False,
                         batch_size=BATCH)


def _saved_keys(sweep_dir):
    cdir = os.path.join(sweep_dir, "chunks")
    keys, chunks = set(), {}
    for f in sorted(os.listdir(cdir)):
        if f.endswith(".parquet") and not f.startswith("."):
            chunk, reason = _read_chunk(os.path.join(cdir, f))
            assert reason is None, (f, reason)  # a kill never leaves a chunk that does not verify
            keys.update(chunk["keys"])
            chunks[f] = open(os.path.join(cdir, f), "rb").read()
    return keys, chunks


# fast tier (CI runs it): 59-77 s on the loaded 2-core development machine (three JAX start-ups, two compiles)
def test_two_processes_kill_one_relaunch_equals_one_process(tmp_path):
    out, cache = tmp_path / "multi", tmp_path / "xla-cache"
    # launch 1: a pause after each chunk lands (the engine lets at most one chunk wait for the
    # disk, so the computation is held back too); kill -9 process 1 once the first chunk is saved
    procs = _launch(out, cache, pause=0.3)
    try:
        deadline = time.time() + TIMEOUT
        seen = [procs[0].stdout.readline()]
        while seen[-1] and not seen[-1].startswith("WROTE") and time.time() < deadline:
            seen.append(procs[0].stdout.readline())
        assert seen[-1].startswith("WROTE"), procs[0].stderr.read()[-3000:]
        os.kill(procs[1].pid, signal.SIGKILL)  # one host dies mid-sweep
        try:  # the other waits on its lost peer (or fails): a scheduler ends the job
            procs[0].wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(procs[0].pid, signal.SIGKILL)
        killed_out = ["".join(seen) + p.communicate(timeout=30)[0] if i == 0 else p.communicate(timeout=30)[0]
                      for i, p in enumerate(procs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert all(p.returncode != 0 for p in procs)  # neither finished the sweep
    (sweep,) = [d for d in os.listdir(out) if d.startswith("sweep-")]
    saved, chunks_before = _saved_keys(out / sweep)
    assert 0 < len(saved) < 16 and len(saved) % BATCH == 0  # whole chunks only, the sweep unfinished

    # launch 2: both processes again, same command
    p0, p1 = _finish(_launch(out, cache))
    assert (p0["processes"], p0["devices"], p0["local"]) == (2, 4, 2) and p1["process"] == 1
    # (c) resumed: both processes agree on what is left; nothing saved is computed again
    assert p0["skipped"] == p1["skipped"] == len(saved) and p0["computed"] == p1["computed"] == 16 - len(saved)
    after, chunks_after = _saved_keys(out / sweep)
    assert after == set(p0["keys"]) and len(after) == 16
    assert {f: chunks_after[f] for f in chunks_before} == chunks_before  # saved chunks untouched
    new = set().union(*(_read_chunk(str(out / sweep / "chunks" / f))[0]["keys"]
                        for f in set(chunks_after) - set(chunks_before)))
    assert not new & saved and len(new) == 16 - len(saved)
    # (a) the numbers equal a one-process run (float64; each point is computed on its own)
    one = _reference(tmp_path)
    assert p0["keys"] == p1["keys"] == [r["key"] for r in one["rows"]]
    for name in ("snr", "mse"):
        np.testing.assert_allclose(p0[name], [r[name] for r in one["rows"]], rtol=1e-12, atol=0)
        np.testing.assert_array_equal(p0[name], p1[name])  # every process holds every result
    # (b) only process 0 writes, in both launches: every file is one that process 0 wrote
    writes = [ln.split()[1:] for text in killed_out for ln in text.splitlines() if ln.startswith("WRITE ")]
    writes += [e for r in (p0, p1) for e in r["log"]]
    assert writes and {int(w[0]) for w in writes} == {0}, writes
    files = _files(out / sweep)
    written = {w[2] for w in writes} | {".lock"}
    assert {os.path.basename(f) for f in files} <= written, (files, written)
    assert len([f for f in files if f.startswith("chunks" + os.sep)]) == 4  # one chunk per compiled call
    man = json.load(open(out / sweep / "manifest.json"))
    assert man["status"] == "complete" and man["process_count"] == 2 and len(man["devices"]) == 4
