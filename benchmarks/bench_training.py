"""Training throughput: molrg's jitted lax.scan loop vs the same MLP and loop in PyTorch
(eager and ``torch.compile``), and an ensemble of 16 seeds trained as one vmapped program vs
the same 16 one after another.

Ratios measured in this run (float32, CPU), as medians of interleaved repeats:
  * sample-steps/s of molrg.training.train(MLPDenoiser(n=50, width 128, depth 3)) over
    PyTorch 2.13.0 (CPU build, in .venv-bench-torch, built on first use by
    setup_torch_env.sh; never a molrg dependency), eager and ``torch.compile``, at batch 32
    and 256 — target >= 3x. Each PyTorch side is a persistent worker (_torch_runner.py) and
    its timed blocks of ``steps`` steps are interleaved with molrg's ``train`` calls
    (round-robin, as ``_timing.interleaved``), so the machine's load hits every side alike.
    Same problem on both sides: the same training set (a sample of P1's mixture), the same
    initial parameters (molrg's, copied into the torch layers) and a fixed evaluation set;
    the run fails (RuntimeError) if the initial evaluation losses differ by more than
    ``INIT_RTOL`` (the two forward passes are the same function) or the losses after the same
    number of steps differ by more than ``LOSS_BAND`` relative (the minibatch and noise
    streams differ, JAX's RNG vs torch's, so only a band can hold: SGD noise).
  * train_ensemble(16 seeds) throughput over 16 sequential train() calls — target >= 4x.
    Measured in a subprocess with two virtual CPU devices (one per core,
    ``--xla_force_host_platform_device_count=2``): ``train`` runs on one device, as a
    user's loop would, and the ensemble is timed both on one device and sharded over the
    two (``train_ensemble``'s default). Two baselines: the sequential loop on one core, and
    the fair one for two cores, two sequential streams at once (two worker processes, each
    pinned to its own core, each training 8 of the 16 seeds one after another). The
    repetitions are interleaved and medians reported, with the load average, the MLP's
    GFLOP/s on each side and the GFLOP/s of a bare (32, 128) x (128, 128) matmul on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import _timing  # noqa: E402

import molrg  # noqa: E402
from molrg import networks, training  # noqa: E402

TORCH_PY = os.path.join(ROOT, ".venv-bench-torch", "bin", "python")


INIT_RTOL = 1e-4
LOSS_BAND = 0.10


class _TorchWorker:
    """A persistent PyTorch worker (_torch_runner.py); ``run()`` times one block of steps."""

    def __init__(self, inp, batch, steps, threads, compile_):
        cmd = [TORCH_PY, os.path.join(HERE, "_torch_runner.py"), inp, "--steps", str(steps),
               "--batch", str(batch), "--threads", str(threads)] + (["--compile"] if compile_ else [])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()
        self.times = []

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"torch worker exited ({self.proc.wait()})")
        return json.loads(line)

    def run(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        self.times.append(self._read()["seconds"])

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def _problem(net, data, path):
    """The shared inputs: training set, molrg's initial parameters, a fixed eval set."""
    import numpy as np
    params = net.init(training._init_key(0), dtype=jnp.float32)  # what train(seed=0) starts from
    rng = np.random.default_rng(7)
    x0 = np.asarray(data[:2048], np.float32)
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 500))
    ab = abar[rng.integers(0, 500, size=len(x0))]
    sigma = np.sqrt((1 - ab) / ab).astype(np.float32)
    y = (x0 + sigma[:, None] * rng.standard_normal(x0.shape)).astype(np.float32)
    arrays = {"data": np.asarray(data, np.float32), "eval_y": y, "eval_sigma": sigma, "eval_x0": x0}
    names = [("input", params["input"])] + [(f"block{i}", b) for i, b in enumerate(params["blocks"])] \
        + [("output", params["output"])]
    for name, layer in names:
        arrays[f"{name}_w"], arrays[f"{name}_b"] = np.asarray(layer["w"]), np.asarray(layer["b"])
    np.savez(path, **arrays)
    ev = (jnp.asarray(y), jnp.asarray(sigma), jnp.asarray(x0))
    loss = jax.jit(lambda p: jnp.mean(jnp.sum(jnp.square(net.apply(p, ev[0], ev[1]) - ev[2]), axis=-1)))
    return params, loss


def _compare(net, data, batch, steps, repeats, threads):
    """molrg vs torch eager vs torch.compile: losses checked, then interleaved timing."""
    if not os.path.exists(TORCH_PY):
        subprocess.run(["bash", os.path.join(HERE, "setup_torch_env.sh")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "problem.npz")
        params, eval_loss = _problem(net, data, inp)
        workers = {}
        try:
            for mode in ("eager", "compile"):
                workers[mode] = _TorchWorker(inp, batch, steps, threads, mode == "compile")
            run = lambda: training.train(net, data, seed=0, steps=steps, batch_size=batch).params  # noqa: E731
            final = run()
            losses = {"molrg": (float(eval_loss(params)), float(eval_loss(final)))}
            losses.update({f"torch_{m}": (w.info["eval_loss_init"], w.info["eval_loss_final"])
                           for m, w in workers.items()})
            ref_init, ref_final = losses["molrg"]
            for name, (li, lf) in losses.items():
                if abs(li - ref_init) > INIT_RTOL * ref_init:
                    raise RuntimeError(f"batch {batch}: initial eval loss {name} {li:.6g} vs molrg {ref_init:.6g} "
                                       f"(same parameters and eval set; rtol {INIT_RTOL})")
                if abs(lf - ref_final) > LOSS_BAND * ref_final:
                    raise RuntimeError(f"batch {batch}: eval loss after {steps} steps {name} {lf:.4g} vs molrg "
                                       f"{ref_final:.4g}: outside the {LOSS_BAND:.0%} band")
            load0 = os.getloadavg()
            t = _timing.interleaved({"molrg": run, "torch_eager": workers["eager"].run,
                                     "torch_compile": workers["compile"].run}, repeats=repeats, min_time=0.0)
            load1 = os.getloadavg()
        finally:
            for w in workers.values():
                w.close()
    sps = {k: steps * batch / v for k, v in t.items()}
    return {"steps": steps, "batch": batch, "repeats": repeats, "torch_threads": threads,
            "loadavg_before_after": [load0, load1], "seconds_median": t, "sample_steps_per_s": sps,
            "eval_loss_init_final": losses, "loss_band": LOSS_BAND,
            "ratio_vs_eager": sps["molrg"] / sps["torch_eager"],
            "ratio_vs_compile": sps["molrg"] / sps["torch_compile"]}


def _mlp_train_flops(net, batch):
    """Matmul FLOPs of one training step (forward 2*in*out per sample and layer; backward 2x)."""
    dims = [(net.n + net.embed_dim, net.width)] + [(net.width, net.width)] * (net.depth - 1) + [(net.width, net.n)]
    return 3 * 2 * batch * sum(i * o for i, o in dims)


def _matmul_gflops():
    """GFLOP/s of XLA:CPU on the MLP's (32, 128) @ (128, 128) product, on one core."""
    x = jnp.ones((32, 128), jnp.float32)
    w = jnp.full((128, 128), 1e-3, jnp.float32)
    reps = 2000
    loop = jax.jit(lambda x, w: jax.lax.fori_loop(0, reps, lambda i, h: jnp.tanh(h @ w), x))
    jax.block_until_ready(loop(x, w))
    best = min(_timed(lambda: loop(x, w)) for _ in range(5))
    return reps * 2 * 32 * 128 * 128 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def _ensemble(steps, repeats):
    """16 seeds: sequential train() calls vs train_ensemble on one device and on all."""
    net = networks.MLPDenoiser(n=50)
    mix = molrg.paper_molrg(jax.random.key(0))
    data = mix.sample(jax.random.key(1), 12000)[0].astype(jnp.float32)
    seeds = list(range(16))
    devs = jax.devices()
    fns = {
        "sequential": lambda: [training.train(net, data, seed=s, steps=steps, batch_size=32).params
                               for s in seeds],
        "vmapped_1_device": lambda: training.train_ensemble(net, data, seeds=seeds, steps=steps, batch_size=32,
                                                            devices=devs[:1]).params,
    }
    if len(devs) > 1:
        fns[f"vmapped_{len(devs)}_devices"] = lambda: training.train_ensemble(
            net, data, seeds=seeds, steps=steps, batch_size=32).params
    if len(devs) != (os.cpu_count() or 1):
        raise RuntimeError(f"ensemble child sees {len(devs)} device(s) on {os.cpu_count()} cores: check XLA_FLAGS")
    streams = _Streams(seeds, steps) if len(devs) > 1 else None
    if streams is not None:
        fns["two_streams_2_cores"] = streams.run
    for fn in fns.values():
        jax.block_until_ready(fn())  # compile
    load0 = os.getloadavg()
    samples = {k: [] for k in fns}
    for _ in range(repeats):  # interleaved: the machine's load hits every side alike
        for k, fn in fns.items():
            samples[k].append(_timed(fn))
    if streams is not None:
        streams.close()
    med = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
    flops = 16 * steps * _mlp_train_flops(net, 32)
    out = {"steps": steps, "batch": 32, "repeats": repeats, "devices": len(devs),
           "loadavg_before_after": [load0, os.getloadavg()], "seconds_median": med,
           "seconds_all": samples, "mlp_matmul_gflops_per_s": {k: flops / v / 1e9 for k, v in med.items()},
           "bare_matmul_gflops_per_s_one_core": _matmul_gflops()}
    out["ratio"] = {k: med["sequential"] / v for k, v in med.items() if k != "sequential"}
    if streams is not None:
        out["ratio_vs_two_streams"] = {k: med["two_streams_2_cores"] / v for k, v in med.items()
                                       if k.startswith("vmapped")}
    return out


class _Streams:
    """The fair two-core baseline: two worker processes, each pinned to one core with one
    XLA device and one thread, each training its half of the seeds one after another."""

    def __init__(self, seeds, steps):
        env = dict(os.environ)
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        cores = sorted(os.sched_getaffinity(0))
        half = len(seeds) // 2
        self.procs = []
        for i, part in enumerate((seeds[:half], seeds[half:])):
            cmd = [sys.executable, os.path.abspath(__file__), "--stream-worker", str(cores[i % len(cores)]),
                   ",".join(map(str, part)), str(steps)]
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env))
        for p in self.procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("stream worker failed to start")

    def run(self):
        for p in self.procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in self.procs:
            if p.stdout.readline().strip() != "done":
                raise RuntimeError("stream worker failed")

    def close(self):
        for p in self.procs:
            p.stdin.write("quit\n")
            p.stdin.flush()
            p.wait(timeout=60)


def _stream_worker(core, seeds, steps):
    """One sequential stream of the two-core baseline (see _Streams)."""
    os.sched_setaffinity(0, {int(core)})
    seeds, steps = [int(s) for s in seeds.split(",")], int(steps)
    net = networks.MLPDenoiser(n=50)
    data = molrg.paper_molrg(jax.random.key(0)).sample(jax.random.key(1), 12000)[0].astype(jnp.float32)
    run = lambda: [training.train(net, data, seed=s, steps=steps, batch_size=32).params for s in seeds]  # noqa: E731
    jax.block_until_ready(run())  # compile + warm
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        jax.block_until_ready(run())
        print("done", flush=True)


def _ensemble_subprocess(steps, repeats):
    """Runs :func:`_ensemble` in a child with one virtual CPU device per core (XLA reads
    the device count only when the backend starts, so it cannot be changed in-process)."""
    env = dict(os.environ)
    ncores = os.cpu_count() or 1
    # Prepended: XLA stops reading flags at a malformed token (e.g. a bare
    # ``intra_op_parallelism_threads=1``), which would silently leave one device.
    env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={ncores} " + env.get("XLA_FLAGS", "")).strip()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ensemble.json")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--ensemble-child", out,
                        "--ensemble-steps", str(steps), "--ensemble-repeats", str(repeats)],
                       check=True, env=env)
        got = json.load(open(out))
    med = got["seconds_median"]
    print(f"  ensemble of 16 (batch 32, {steps} steps, medians of {repeats} interleaved runs, "
          f"load {got['loadavg_before_after'][0][0]:.1f}): sequential {med['sequential']:.2f}s", flush=True)
    for k, r in got["ratio"].items():
        vs2 = got.get("ratio_vs_two_streams", {}).get(k)
        print(f"    {k}: {med[k]:.2f}s -> {r:.1f}x vs sequential on one core"
              + (f", {vs2:.1f}x vs two sequential streams on two cores" if vs2 else ""), flush=True)
    g = got["mlp_matmul_gflops_per_s"]
    print("    MLP matmul GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in g.items())
          + f"; bare (32,128)x(128,128) matmul on one core: {got['bare_matmul_gflops_per_s_one_core']:.0f}",
          flush=True)
    return got


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ensemble-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ensemble-steps", type=int, default=200, help=argparse.SUPPRESS)
    ap.add_argument("--ensemble-repeats", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--ensemble-only", action="store_true", help="only the 16-seed ensemble comparison")
    ap.add_argument("--torch-threads", type=int, default=1, help="PyTorch intra-op threads (default 1)")
    ap.add_argument("--stream-worker", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stream_worker:
        return _stream_worker(*args.stream_worker)
    if args.ensemble_child:
        _timing.write_json(args.ensemble_child, _ensemble(args.ensemble_steps, args.ensemble_repeats))
        return None
    if args.ensemble_only:
        return _ensemble_subprocess(200 if args.quick else 1000, 3 if args.quick else 5)
    steps = 300 if args.quick else 2000
    net = networks.MLPDenoiser(n=50)
    mix = molrg.paper_molrg(jax.random.key(0))
    data, _ = mix.sample(jax.random.key(1), 12000)
    data = data.astype(jnp.float32)
    rows = {}
    print(f"training throughput: molrg vs PyTorch 2.13.0 eager and torch.compile ({args.torch_threads} "
          f"torch thread(s); same MLP, data, init; interleaved medians)", flush=True)
    for batch in (32, 256):
        row = _compare(net, data, batch, steps, 3 if args.quick else 5, args.torch_threads)
        rows[f"batch_{batch}"] = row
        sps, ls = row["sample_steps_per_s"], row["eval_loss_init_final"]
        print(f"  batch {batch} [load {row['loadavg_before_after'][0][0]:.1f}]: molrg {sps['molrg']:,.0f}, torch eager "
              f"{sps['torch_eager']:,.0f}, torch.compile {sps['torch_compile']:,.0f} sample-steps/s -> "
              f"{row['ratio_vs_eager']:.1f}x eager, {row['ratio_vs_compile']:.1f}x compile; eval loss after "
              f"{steps} steps " + ", ".join(f"{k} {v[1]:.4g}" for k, v in ls.items())
              + f" (band {LOSS_BAND:.0%})", flush=True)
    rows["ensemble16"] = _ensemble_subprocess(200 if args.quick else 1000, 3 if args.quick else 5)
    _timing.write_json(os.path.join(HERE, "results", "training.json"),
                       {"environment": _timing.environment(), "steps": steps, "results": rows})
    return rows


if __name__ == "__main__":
    main()
