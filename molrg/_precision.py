"""Full float32 matrix-product precision for the exact quantities.

On GPUs (Ampere and later) and TPUs, JAX's default precision computes float32 matrix
products in reduced precision (TF32 / bf16 passes: about 1e-3 relative). molrg's exact
quantities (posterior, denoiser, score, empirical denoiser, memorisation measures) are
references, so their products are traced under ``jax.default_matmul_precision("highest")``:
true float32 everywhere, and no change on CPU, where float32 products are already exact
to rounding. Networks keep JAX's default (a training-speed choice the user controls with the
same context manager). Measured on an H200: without it, ``denoise`` in float32 was 6e-4
relative off float64 at sigma = 1e-4 (tests/test_posterior.py allows 5e-5).
"""

from __future__ import annotations

import functools

import jax


def full_precision(fn):
    """Trace ``fn`` with float32 matrix products at full precision (apply below ``jax.jit``)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapper
