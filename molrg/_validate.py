"""Input validation shared by the public functions.

Every public function checks its arguments *before* doing any work and raises a
``ValueError`` that names the argument and the rule it broke. Shape and dtype rules are
always checked (shapes and dtypes are static under ``jit``); value rules (positivity,
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


def _dtype_of(value: Any):
    """The dtype ``value`` would have as an array (static, also for tracers); None if unknown."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        return dtype
    try:
        return np.asarray(value).dtype
    except Exception:  # e.g. a list holding tracers: leave it to jnp
        try:
            return jnp.asarray(value).dtype
        except Exception:
            return None


def check_real(name: str, value: Any, *, allow_bool: bool = True) -> None:
    """A real number or array of them: integer or floating (or bool with ``allow_bool``).

    Complex input is refused rather than cast, which would drop the imaginary part; so are
    strings, objects and PRNG keys.
    """
    dtype = _dtype_of(value)
    if dtype is None:
        fail(name, f"must be a real number or array of real numbers; got {type(value).__name__}")
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        fail(name, "must be a real number or array of real numbers; got a PRNG key")
    if jnp.issubdtype(dtype, jnp.complexfloating):
        fail(name, f"must be real; got complex dtype {dtype} (casting would drop the imaginary part)")
    if jnp.issubdtype(dtype, jnp.bool_):
        if not allow_bool:
            fail(name, "must be a number, not a boolean")
        return
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        what = type(value).__name__ if np.ndim(value) == 0 and not hasattr(value, "dtype") else f"dtype {dtype}"
        fail(name, f"must be a real number or array of real numbers; got {what}")


def check_int(name: str, value: Any, lo: int | None = 1) -> int:
    """A Python or NumPy integer (not a bool, not a float) ``>= lo``; returns it as an int.

    ``lo=None`` checks the type only (for callers with their own range message).
    """
    rule = ("must be an integer" if lo is None else
            "must be a positive integer" if lo == 1 else f"must be an integer >= {lo}")
    if isinstance(value, (bool, np.bool_)):
        fail(name, f"{rule}; got the boolean {value!r}")
    if not isinstance(value, (int, np.integer)):
        fail(name, f"{rule}; got {value!r} ({type(value).__name__})")
    if lo is not None and value < lo:
        fail(name, f"{rule}; got {value!r}")
    return int(value)


def check_key(name: str, key: Any) -> None:
    """One PRNG key: a typed key (``jax.random.key(seed)``, shape ``()``) or a legacy raw key
    (``jax.random.PRNGKey(seed)``, uint32 of shape ``(2,)``). Shape and dtype are static, so
    traced keys (``vmap`` over seeds) are checked the same way."""
    dtype = getattr(key, "dtype", None)
    shape = tuple(np.shape(key)) if dtype is not None else None
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            fail(name, f"must be a single PRNG key; got an array of keys of shape {shape}")
        return
    if dtype is not None and dtype == jnp.uint32 and shape == (2,):
        return
    got = f"{dtype} array of shape {shape}" if dtype is not None else type(key).__name__
    fail(name, "must be a PRNG key, jax.random.key(seed) (or a legacy jax.random.PRNGKey(seed): "
               f"uint32, shape (2,)); got {got}")


def check_finite(name: str, value: Any) -> None:
    check_real(name, value)
    if is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
        fail(name, "must contain only finite values (found NaN or inf)")


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Real, finite and > 0 (or >= 0 with ``allow_zero``), elementwise, when concrete."""
    check_real(name, value)
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
    """``sigma``/``scale``: a real scalar or one value per sample, positive and finite.

    The values are checked where concrete; traced values cannot be, and the public functions
    return NaN for the samples where a traced ``sigma`` or ``scale`` is not positive and finite
    (see :func:`valid_noise_level`).
    """
    check_real(name, value, allow_bool=False)
    shape = np.shape(value)
    if shape != () and shape != tuple(batch_shape):
        fail(
            name,
            f"must be a scalar or have one value per sample, shape {tuple(batch_shape)}; "
            f"got shape {shape}",
        )
    check_positive(name, value)


def valid_noise_level(*values: jax.Array) -> jax.Array:
    """``True`` where every one of ``values`` (each ``()`` or ``(B,)``) is positive and finite.

    Inside ``jit`` a non-positive ``sigma`` would otherwise give a finite, meaningless number
    (the formulas only use ``sigma^2``); the callers put NaN in those samples instead.
    """
    ok = jnp.asarray(True)
    for v in values:
        ok = ok & (v > 0) & jnp.isfinite(v)
    return ok


def check_points(name: str, x: Any, n: int, *, width_of: str = "the ambient dimension") -> None:
    """Points ``(..., n)``: real, at least 1-D, last axis n, finite when concrete.

    ``width_of`` says where n comes from, so that a mismatch names both arguments.
    """
    check_real(name, x, allow_bool=False)
    shape = np.shape(x)
    if len(shape) < 1:
        fail(name, f"must have shape (..., n) with n = {n}; got a scalar")
    if shape[-1] != n:
        fail(name, f"last axis must have length n = {n} ({width_of}); got shape {shape}")
    check_finite(name, x)
