"""Side-by-side timing: every candidate runs interleaved with its baseline in one process.

Machines here are shared and noisy, so absolute times mean little; what we report is the
ratio of medians of interleaved repeats (and every function is compiled and warmed first).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import jax


def block(out):
    return jax.block_until_ready(out)


def interleaved(fns: dict, *, repeats: int = 15, min_time: float = 0.05) -> dict:
    """Median seconds per call of each callable, timed round-robin.

    Each callable is warmed (compiled) once; each timing sample loops the call enough
    times to last at least ``min_time`` seconds.
    """
    loops = {}
    for name, fn in fns.items():
        block(fn())  # compile + warm
        t0 = time.perf_counter()
        block(fn())
        once = max(time.perf_counter() - t0, 1e-6)
        loops[name] = max(1, int(min_time / once))
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(loops[name]):
                out = fn()
            block(out)
            samples[name].append((time.perf_counter() - t0) / loops[name])
    return {name: statistics.median(v) for name, v in samples.items()}


def environment() -> dict:
    import numpy as np
    return {
        "jax": jax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, default=str)
    os.replace(tmp, path)
