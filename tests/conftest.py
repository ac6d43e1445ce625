"""Test configuration: float64 numerics, strict JAX semantics, headless matplotlib.

Strict dtype promotion and rank-promotion errors catch silent up-casts and accidental
broadcasting; the key-reuse checker catches PRNG keys used twice (STYLE.md).
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_debug_key_reuse", True)


@pytest.fixture(autouse=True)
def _x64_stays_on():
    """Every test runs, and leaves the session, in float64: a test that switches x64 off turns
    every later float64 test float32 (once seen as 60 failures far from the culprit)."""
    yield
    assert jax.config.jax_enable_x64, "this test switched jax_enable_x64 off; leave the session's setting alone"
