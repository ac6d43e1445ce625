"""molrg side of bench_diffusionlab: same .npz inputs, same output fields, pinned to 1 CPU.

Usage: python benchmarks/_molrg_runner.py IN.npz OUT.npz
diffusionlab's flow-matching x_t = (1 - t) x0 + t eps is molrg's x_t = s (x0 + sigma eps)
with s = 1 - t and sigma = t / (1 - t).
"""

import os
import sys

os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before jax: a 1-thread XLA pool

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402

import molrg  # noqa: E402


def main(inp, out):
    with np.load(inp) as z:
        data = dict(z)
    mix = molrg.MoLRG(list(jnp.asarray(data["factors"])), weights=jnp.asarray(data["weights"]))
    x = jnp.asarray(data["x_t"])
    t = jnp.asarray(data["t"])
    ts = jnp.float32(data["t_shared"])
    fn = jax.jit(lambda m, x, s, a: molrg.denoise(m, x, s, a))
    shared = lambda: fn(mix, x, ts / (1 - ts), 1 - ts)  # noqa: E731
    per = lambda: fn(mix, x, t / (1 - t), 1 - t)  # noqa: E731
    times = _timing.interleaved({"shared": shared, "per": per}, repeats=7)
    np.savez(out, x0_shared=np.asarray(shared()), x0_per_sample=np.asarray(per()),
             alpha=np.asarray(1 - t), time_shared_s=times["shared"], time_per_sample_s=times["per"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
