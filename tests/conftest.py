"""Test configuration: float64 numerics, strict JAX semantics, headless matplotlib.

Strict dtype promotion and rank-promotion errors catch silent up-casts and accidental
broadcasting; the key-reuse checker catches PRNG keys used twice (STYLE.md).
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_debug_key_reuse", True)
