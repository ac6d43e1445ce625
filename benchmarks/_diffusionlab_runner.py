"""Baseline side of the molrg-vs-diffusionlab speed benchmark.

Run with the Python 3.12 venv made by ``benchmarks/setup_diffusionlab_env.sh``::

    .venv-bench-dl/bin/python benchmarks/_diffusionlab_runner.py IN.npz OUT.npz \
        [--single-cpu] [--timeout SECONDS]

This script must not import molrg (it runs in a separate venv).

--single-cpu   pin this process to one CPU (before jax is imported), so XLA's
               CPU intra-op pool has one thread.  Work-around for a jaxlib
               0.10.2 CPU deadlock, see KNOWN HANG below.
--timeout S    watchdog (default 900 s): if the whole run takes longer, print a
               message and exit with status 3 instead of hanging forever.

KNOWN HANG (jaxlib 0.10.2, CPU backend, few cores): in the per-sample-t case
the batched LAPACK calls inside low_rank_gmm_x0 (gesdd from jnp.linalg.lstsq
and syevd from jnp.linalg.eigvalsh, each batched over B*K small matrices) are
independent, so XLA runs them concurrently on its intra-op pool; each one, once
B*K is large enough, splits its batch via jaxlib's ParallelBatchMap, schedules
the chunks on the *same* pool and blocks waiting for them.  With a 2-thread
pool (2-core host) both workers block -> deadlock (all threads in futex wait;
seen in most runs for (B,n,K,d) = (4096,50,3,5) and (2048,784,10,16) on a
2-core host; not seen for (B<=2048, n=50, K=3, d=5)).
The shared-t case is unaffected (its LAPACK calls are batched over K only).
Use --single-cpu on such hosts, or a host with more cores / a GPU.

It evaluates diffusionlab 3.0.4's closed-form low-rank GMM denoiser

    diffusionlab.distributions.gmm.low_rank_gmm.low_rank_gmm_x0(
        x_t,                # (n,)       one sample, unbatched
        t,                  # ()         scalar time
        diffusion_process,  # DiffusionProcess: provides alpha(t), sigma(t)
        means,              # (K, n)
        cov_factors,        # (K, n, d)  Sigma_k = cov_factors[k] @ cov_factors[k].T
        priors,             # (K,)       mixture weights (enter via log; softmax-normalised)
    ) -> (n,)               # E[x_0 | x_t]

for the forward process ``x_t = alpha(t) x_0 + sigma(t) eps``.  The function is
single-sample, so batches go through ``jax.vmap``: ``in_axes=(0, None)`` for
one shared t, ``in_axes=(0, 0)`` for per-sample t.  Everything runs under
``jax.jit`` with means/factors/weights passed as (traced) arguments, so no
t-independent work is constant-folded at compile time.

Input .npz
    x_t      (B, n)  float32
    t        (B,)    float32, strictly inside (0, 1)   -- per-sample times
    means    (K, n)
    factors  (K, n, d)   class covariance factors_k @ factors_k.T (no isotropic term)
    weights  (K,)
    process  scalar str or int selecting the diffusionlab process:
        "flow_matching" / "fm" / 0 -> diffusionlab.dynamics.FlowMatchingProcess()
                                      alpha(t) = 1 - t,          sigma(t) = t
        "vp"                   / 1 -> diffusionlab.dynamics.VariancePreservingProcess()
                                      alpha(t) = sqrt(1 - t**2), sigma(t) = t
        "ve"                   / 2 -> diffusionlab.dynamics.VarianceExplodingProcess(sigma=lambda t: t)
                                      alpha(t) = 1,              sigma(t) = t
    optional:
    t_shared   scalar float, the shared time for case (a); default t[0]
    n_repeats  scalar int, timed repetitions per case; default 10

    molrg convention ``x_t = scale * (x0 + sigma_m * eps)`` corresponds to
    scale = alpha(t), sigma_m = sigma(t) / alpha(t).

Output .npz
    x0_shared          (B, n)  E[x0|x_t] with every sample at t_shared
    x0_per_sample      (B, n)  E[x0|x_t] with sample i at t[i]
    t_shared           ()      the shared time used
    alpha_shared, sigma_shared   ()    alpha(t_shared), sigma(t_shared) as evaluated by the process
    alpha, sigma       (B,)    alpha(t[i]), sigma(t[i]) as evaluated by the process
    time_shared_s, time_per_sample_s   ()   median wall seconds of one jitted call
    times_shared_s, times_per_sample_s (n_repeats,)  all timed repeats
    compile_shared_s, compile_per_sample_s  ()  first call (trace+compile+run)
    process            str     canonical process name
    versions           str     "python=... diffusionlab=... jax=... jaxlib=... numpy=... backend=... cpus=N"
                               (cpus = CPUs in this process's affinity mask)
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from importlib.metadata import version

import numpy as np

# jax / diffusionlab are imported in _import_jax(), after --single-cpu is applied
# (XLA sizes its CPU thread pool from the process affinity at start-up).
jax = jnp = low_rank_gmm_x0 = None
FlowMatchingProcess = VarianceExplodingProcess = VariancePreservingProcess = None


def _import_jax():
    global jax, jnp, low_rank_gmm_x0
    global FlowMatchingProcess, VarianceExplodingProcess, VariancePreservingProcess
    import jax as _jax
    import jax.numpy as _jnp
    from diffusionlab.distributions.gmm.low_rank_gmm import low_rank_gmm_x0 as _x0
    from diffusionlab.dynamics import (
        FlowMatchingProcess as _FM,
        VarianceExplodingProcess as _VE,
        VariancePreservingProcess as _VP,
    )

    jax, jnp, low_rank_gmm_x0 = _jax, _jnp, _x0
    FlowMatchingProcess, VarianceExplodingProcess, VariancePreservingProcess = _FM, _VE, _VP

_PROCESS_ALIASES = {
    "flow_matching": "flow_matching",
    "fm": "flow_matching",
    "0": "flow_matching",
    "vp": "vp",
    "1": "vp",
    "ve": "ve",
    "2": "ve",
}


def make_process(name):
    """Return (canonical_name, diffusionlab DiffusionProcess)."""
    key = str(np.asarray(name).item()).strip().lower()
    if key not in _PROCESS_ALIASES:
        raise ValueError(f"unknown process {name!r}; use one of {sorted(_PROCESS_ALIASES)}")
    canon = _PROCESS_ALIASES[key]
    if canon == "flow_matching":
        proc = FlowMatchingProcess()  # alpha = 1 - t, sigma = t
    elif canon == "vp":
        proc = VariancePreservingProcess()  # alpha = sqrt(1 - t^2), sigma = t
    else:
        proc = VarianceExplodingProcess(sigma=lambda t: t)  # alpha = 1, sigma = t
    return canon, proc


def _time_calls(fn, args, n_repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))  # trace + compile + first run
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(fn(*args))  # one extra warm run
    times = []
    for _ in range(n_repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    times = np.asarray(times, dtype=np.float64)
    return np.asarray(out), float(np.median(times)), times, compile_s


def main(in_path, out_path):
    data = np.load(in_path, allow_pickle=False)
    x_t = jnp.asarray(data["x_t"], dtype=jnp.float32)
    t = jnp.asarray(data["t"], dtype=jnp.float32)
    means = jnp.asarray(data["means"], dtype=jnp.float32)
    factors = jnp.asarray(data["factors"], dtype=jnp.float32)
    weights = jnp.asarray(data["weights"], dtype=jnp.float32)
    process_name, proc = make_process(data["process"] if "process" in data else "flow_matching")
    t_shared = jnp.asarray(
        data["t_shared"] if "t_shared" in data else np.asarray(data["t"])[0], dtype=jnp.float32
    ).reshape(())
    n_repeats = int(data["n_repeats"]) if "n_repeats" in data else 10

    B, n = x_t.shape
    K, n2, d = factors.shape
    assert n2 == n and means.shape == (K, n) and weights.shape == (K,) and t.shape == (B,)
    t_np = np.asarray(t)
    if not (np.all(t_np > 0) and np.all(t_np < 1) and 0 < float(t_shared) < 1):
        raise ValueError("times must lie strictly inside (0, 1)")

    def one(x, tt, mu, U, w):
        return low_rank_gmm_x0(x, tt, proc, mu, U, w)

    f_shared = jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None)))
    f_per_sample = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None)))

    x0_shared, med_shared, times_shared, comp_shared = _time_calls(
        f_shared, (x_t, t_shared, means, factors, weights), n_repeats
    )
    print(f"shared t: median {med_shared * 1e3:.3f} ms", file=sys.stderr, flush=True)
    x0_per, med_per, times_per, comp_per = _time_calls(
        f_per_sample, (x_t, t, means, factors, weights), n_repeats
    )

    alpha = np.asarray(jax.vmap(proc.alpha)(t), dtype=np.float32)
    sigma = np.asarray(jax.vmap(proc.sigma)(t), dtype=np.float32)
    alpha_shared = np.asarray(proc.alpha(t_shared), dtype=np.float32)
    sigma_shared = np.asarray(proc.sigma(t_shared), dtype=np.float32)

    versions = " ".join(
        [
            f"python={sys.version.split()[0]}",
            f"diffusionlab={version('diffusionlab')}",
            f"jax={jax.__version__}",
            f"jaxlib={version('jaxlib')}",
            f"numpy={np.__version__}",
            f"backend={jax.default_backend()}",
            f"cpus={len(os.sched_getaffinity(0))}",
        ]
    )
    np.savez(
        out_path,
        x0_shared=x0_shared.astype(np.float32),
        x0_per_sample=x0_per.astype(np.float32),
        t_shared=np.asarray(t_shared, dtype=np.float32),
        alpha_shared=alpha_shared,
        sigma_shared=sigma_shared,
        alpha=alpha,
        sigma=sigma,
        time_shared_s=np.float64(med_shared),
        time_per_sample_s=np.float64(med_per),
        times_shared_s=times_shared,
        times_per_sample_s=times_per,
        compile_shared_s=np.float64(comp_shared),
        compile_per_sample_s=np.float64(comp_per),
        process=np.asarray(process_name),
        versions=np.asarray(versions),
    )
    print(
        f"diffusionlab low_rank_gmm_x0 [{process_name}] B={B} n={n} K={K} d={d}: "
        f"shared t {med_shared * 1e3:.3f} ms, per-sample t {med_per * 1e3:.3f} ms "
        f"(median of {n_repeats}; {versions})"
    )


def _watchdog(seconds):
    def fire():
        sys.stderr.write(
            f"_diffusionlab_runner: no result after {seconds:.0f} s; probably the jaxlib "
            "CPU LAPACK deadlock described in this file's docstring (KNOWN HANG). "
            "Re-run with --single-cpu, or on a host with more cores / a GPU.\n"
        )
        sys.stderr.flush()
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--single-cpu", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    if args.single_cpu:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    watchdog = _watchdog(args.timeout)
    _import_jax()
    main(args.inp, args.out)
    watchdog.cancel()
