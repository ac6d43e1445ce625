"""Input validation shared by the public functions.

Every public function checks its arguments *before* doing any work and raises a
``ValueError`` that names the argument and the rule it broke. Shape rules are
always checked (shapes are static under ``jit``); value rules (positivity,
finiteness, orthonormality) only run where the values are concrete, so the same
functions work unchanged under ``jit`` and ``vmap`` with traced arguments.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*values: Any) -> bool:
    """True when none of ``values`` (pytrees allowed) holds a JAX tracer."""
    for leaf in jax.tree_util.tree_leaves(values):
        if isinstance(leaf, jax.core.Tracer):
            return False
    return True


def as_float(x: Any) -> jax.Array:
    """``x`` as a jnp array; integer input becomes the default float dtype (float64 under x64)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.zeros((), dtype=float).dtype)
    return x


def fail(name: str, rule: str) -> None:
    raise ValueError(f"{name}: {rule}")


def check_finite(name: str, value: Any) -> None:
    if is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
        fail(name, "must contain only finite values (found NaN or inf)")


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Finite and > 0 (or >= 0 with ``allow_zero``), elementwise, when concrete."""
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)):
        fail(name, "must be finite (found NaN or inf)")
    if allow_zero:
        if np.any(arr < 0):
            fail(name, f"must be >= 0 (found {arr.min():g})")
    elif np.any(arr <= 0):
        fail(name, f"must be > 0 (found {arr.min():g})")


def check_noise_level(name: str, value: Any, batch_shape: tuple[int, ...]) -> None:
    """``sigma``/``scale``: a scalar or one value per sample, positive and finite."""
    shape = np.shape(value)
    if shape != () and shape != tuple(batch_shape):
        fail(
            name,
            f"must be a scalar or have one value per sample, shape {tuple(batch_shape)}; "
            f"got shape {shape}",
        )
    check_positive(name, value)


def check_points(name: str, x: Any, n: int) -> None:
    """Points ``(..., n)``: at least 1-D, last axis n, finite when concrete."""
    shape = np.shape(x)
    if len(shape) < 1:
        fail(name, f"must have shape (..., n) with n = {n}; got a scalar")
    if shape[-1] != n:
        fail(name, f"last axis must have length n = {n} (the ambient dimension); got shape {shape}")
    check_finite(name, x)
