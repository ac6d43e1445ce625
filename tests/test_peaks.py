"""Tests of molrg.peaks against curves with known maxima (float64).

References: log-parabolas (the parabola vertex is exact for them), ``s^a / (1 + s)^(a+b)``
whose maximum ``s* = a / b`` follows from setting the log-derivative to zero, monotone curves
(maximum at an end of the range), and the functions' own loop versions for vmap.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from molrg import peaks

LOG_LO, LOG_HI = math.log(1e-3), math.log(1e3)


def log_parabola(center, height=3.0, curvature=1.0):
    """``height - curvature (log(s / center))^2``: maximum ``height`` at ``s = center``."""
    return lambda s: height - curvature * jnp.square(jnp.log(s / center))


def beta_prime(a, b):
    """``s^a (1 + s)^-(a+b)`` in logs: d/ds log f = a/s - (a+b)/(1+s) = 0 at ``s* = a / b``."""
    return lambda s: a * jnp.log(s) - (a + b) * jnp.log1p(s)


def beta_prime_max(a, b):
    s = a / b
    return a * math.log(s) - (a + b) * math.log1p(s)


# ------------------------------------------------------------------------------------------
# The vertex.
# ------------------------------------------------------------------------------------------
def test_parabola_vertex_is_exact_on_a_parabola():
    t = jnp.linspace(-1.0, 1.0, 11)
    for center in (-0.87, -0.13, 0.0, 0.13, 0.42):
        got = peaks.parabola_vertex(t, 2.0 - 5.0 * jnp.square(t - center))
        assert float(got) == pytest.approx(center, abs=1e-12)


def test_parabola_vertex_edge_cases():
    t = jnp.linspace(0.0, 1.0, 6)  # step 0.2
    # Convex (curvature > 0): no vertex to interpolate, the best interior point is kept.
    assert float(peaks.parabola_vertex(t, jnp.square(t))) == pytest.approx(float(t[4]), abs=1e-15)
    # Best point at an end: the triple is the one next to it, and the vertex (far outside, at
    # -0.5 or 3) is clipped to one step from the triple's middle, i.e. to the end point.
    assert float(peaks.parabola_vertex(t, -jnp.square(t + 0.5))) == pytest.approx(0.0, abs=1e-15)
    assert float(peaks.parabola_vertex(t, -jnp.square(t - 3.0))) == pytest.approx(1.0, abs=1e-15)
    # A best point in the middle keeps the vertex within half a step of it.
    y = jnp.asarray([0.0, 1.0, 1.0 - 1e-12, -5.0, -9.0, -20.0])
    assert float(peaks.parabola_vertex(t, y)) == pytest.approx(float(t[1]) + 0.5 * 0.2, abs=1e-9)


def test_vertex_offset_numpy_and_jax_agree():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(3, 50))
    got_np = peaks.vertex_offset(*y)
    got_jax = peaks.vertex_offset(*(jnp.asarray(v) for v in y))
    assert isinstance(got_np, np.ndarray) and isinstance(got_jax, jax.Array)
    np.testing.assert_allclose(np.asarray(got_jax), got_np, rtol=0, atol=1e-15)
    # Reference: vertex -b / (2a) of a t^2 + b t + c through (-1, y0), (0, y1), (1, y2).
    a, b = 0.5 * (y[0] - 2 * y[1] + y[2]), 0.5 * (y[2] - y[0])
    ref = np.where(a < 0, np.clip(-b / (2 * np.where(a < 0, a, -1.0)), -1, 1), 0.0)
    np.testing.assert_allclose(got_np, ref, rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------------------------------
# The searches against known maxima.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("center", [3.7e-3, 0.37, 12.0, 800.0])
def test_golden_section_finds_the_log_parabola_maximum(center):
    sigma, value = peaks.golden_section_peak(log_parabola(center), LOG_LO, LOG_HI)
    # 40 golden sections shrink a two-step bracket (0.44 in t) by 0.618^40 ~ 4e-9; on a flat
    # maximum the values decide only to ~sqrt(eps) ~ 1.5e-8 in t.
    assert float(sigma) == pytest.approx(center, rel=5e-8)
    assert float(value) == pytest.approx(3.0, abs=1e-14)


def test_golden_section_finds_a_non_parabolic_maximum():
    a, b = 2.0, 3.0
    sigma, value = peaks.golden_section_peak(beta_prime(a, b), LOG_LO, LOG_HI)
    assert float(sigma) == pytest.approx(a / b, rel=5e-8)
    assert float(value) == pytest.approx(beta_prime_max(a, b), abs=1e-14)


@pytest.mark.parametrize("center", [3.7e-3, 0.37, 12.0, 800.0])
def test_zoom_peak_finds_the_log_parabola_maximum(center):
    p = peaks.zoom_peak(log_parabola(center, curvature=0.3), LOG_LO, LOG_HI, num_grid=16, num_stages=4)
    assert float(p.sigma) == pytest.approx(center, rel=1e-12)  # the vertex is exact on a parabola
    assert float(p.value) <= 3.0 and float(p.value) == pytest.approx(3.0, abs=1e-4)
    assert p.log_sigmas.shape == p.values.shape == (4, 16)
    # Each stage spans the two grid intervals around the previous stage's best point (one
    # interval when that point is an end of the grid).
    steps = np.diff(np.asarray(p.log_sigmas), axis=1)[:, 0]
    assert steps[0] == pytest.approx((LOG_HI - LOG_LO) / 15.0, rel=1e-12)
    ratio = steps[1:] / steps[:-1] * 15.0
    assert np.all((np.abs(ratio - 2.0) < 1e-9) | (np.abs(ratio - 1.0) < 1e-9)), ratio


def test_zoom_peak_finds_a_non_parabolic_maximum():
    a, b = 2.0, 3.0
    p = peaks.zoom_peak(beta_prime(a, b), LOG_LO, LOG_HI, num_grid=16, num_stages=4)
    # Vertex error ~ h^2 f'''/f'' with h the last step (~2.4e-3): well below 1e-5 in log sigma.
    assert abs(math.log(float(p.sigma) / (a / b))) < 1e-5
    assert float(p.value) == pytest.approx(beta_prime_max(a, b), abs=1e-5)


def test_grid_peak_finds_known_maxima():
    p = peaks.grid_peak(lambda s: np.asarray(beta_prime(2.0, 3.0)(jnp.asarray(s))), 1e-3, 1e3, 64)
    assert p["interior"] and abs(math.log(p["sigma"] / (2.0 / 3.0))) < 1e-5
    assert 0 < p["index"] < 63
    q = peaks.grid_peak(lambda s: 3.0 - np.square(np.log(s / 0.37)), 1e-3, 1e3, 64)
    assert q["sigma"] == pytest.approx(0.37, rel=1e-12) and q["value"] == pytest.approx(3.0, abs=1e-4)


def test_maximum_at_an_end_stays_at_the_end():
    rising, falling = (lambda s: jnp.log(s)), (lambda s: -jnp.log(s))
    for fn, end in ((rising, 1e3), (falling, 1e-3)):
        sigma, value = peaks.golden_section_peak(fn, LOG_LO, LOG_HI)
        assert float(sigma) == pytest.approx(end, rel=1e-12)
        assert float(value) == pytest.approx(math.log(end) * (1 if fn is rising else -1), abs=1e-12)
        p = peaks.zoom_peak(fn, LOG_LO, LOG_HI)
        assert float(p.sigma) == pytest.approx(end, rel=1e-12)
        g = peaks.grid_peak(lambda s, fn=fn: np.asarray(fn(jnp.asarray(s))), 1e-3, 1e3, 32)
        assert not g["interior"] and g["sigma"] == pytest.approx(end, rel=1e-12)


def test_local_maxima_counts():
    t = np.linspace(0.0, 1.0, 500)
    assert peaks.local_maxima(-(t - 0.3) ** 2) == 1
    assert peaks.local_maxima(t) == 0 and peaks.local_maxima(np.ones(5)) == 0
    two = np.exp(-((t - 0.3) / 0.05) ** 2) + 0.5 * np.exp(-((t - 0.7) / 0.05) ** 2)
    assert peaks.local_maxima(two) == 2
    assert peaks.local_maxima(two, rel_prominence=0.6) == 1  # the smaller bump is 0.5 of the range


# ------------------------------------------------------------------------------------------
# jit / vmap / dtypes.
# ------------------------------------------------------------------------------------------
def test_vmap_equals_loop():
    centers = jnp.asarray([3e-3, 0.05, 0.37, 2.0, 90.0])

    def golden(c):
        return peaks.golden_section_peak(log_parabola(c), jnp.log(1e-3), jnp.log(1e3), 32, 30)

    def zoom(c):
        return peaks.zoom_peak(log_parabola(c), jnp.log(1e-3), jnp.log(1e3), 16, 3)

    for search in (golden, zoom):
        batched = jax.jit(jax.vmap(search))(centers)
        for i, c in enumerate(centers):
            one = search(c)
            for b, o in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(one)):
                np.testing.assert_allclose(np.asarray(b)[i], np.asarray(o), rtol=1e-12, atol=0)
    # vmap over the range too (traced log_lo, log_hi skip the value checks).
    his = jnp.log(jnp.asarray([1.0, 10.0, 1e3]))
    got = jax.vmap(lambda hi: peaks.golden_section_peak(log_parabola(0.37), jnp.log(1e-3), hi)[0])(his)
    np.testing.assert_allclose(np.asarray(got), [0.37, 0.37, 0.37], rtol=5e-8)
    # parabola_vertex over a batch of curves on one grid.
    t = jnp.linspace(-2.0, 2.0, 21)
    ys = -jnp.square(t[None, :] - jnp.asarray([-0.7, 0.1, 1.3])[:, None])
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda y: peaks.parabola_vertex(t, y))(ys)),
                               [-0.7, 0.1, 1.3], atol=1e-12)


def test_float32_in_float32_out():
    with jax.numpy_dtype_promotion("strict"):
        sigma, value = peaks.golden_section_peak(log_parabola(0.37), jnp.float32(LOG_LO), jnp.float32(LOG_HI))
        p = peaks.zoom_peak(log_parabola(0.37), jnp.float32(LOG_LO), jnp.float32(LOG_HI))
    assert sigma.dtype == value.dtype == p.sigma.dtype == p.log_sigmas.dtype == jnp.float32
    assert float(sigma) == pytest.approx(0.37, rel=1e-3) and float(p.sigma) == pytest.approx(0.37, rel=1e-3)


# ------------------------------------------------------------------------------------------
# Bad input.
# ------------------------------------------------------------------------------------------
def test_bad_input_errors():
    f = log_parabola(0.37)
    with pytest.raises(ValueError, match="^log_lo: must be < log_hi"):
        peaks.golden_section_peak(f, 1.0, 1.0)
    with pytest.raises(ValueError, match="^log_lo: the range must be finite"):
        peaks.zoom_peak(f, -np.inf, 1.0)
    with pytest.raises(ValueError, match="^log_lo: must be a scalar"):
        peaks.zoom_peak(f, jnp.zeros(2), 1.0)
    with pytest.raises(ValueError, match="^num_grid: must be >= 3"):
        peaks.golden_section_peak(f, LOG_LO, LOG_HI, num_grid=2)
    with pytest.raises(ValueError, match="^num_grid: must be a Python int"):
        peaks.zoom_peak(f, LOG_LO, LOG_HI, num_grid=16.0)
    with pytest.raises(ValueError, match="^num_iters: must be >= 0"):
        peaks.golden_section_peak(f, LOG_LO, LOG_HI, num_iters=-1)
    with pytest.raises(ValueError, match="^num_stages: must be >= 1"):
        peaks.zoom_peak(f, LOG_LO, LOG_HI, num_stages=0)
    with pytest.raises(ValueError, match="^t: t and y must be 1-D of one length"):
        peaks.parabola_vertex(jnp.zeros(5), jnp.zeros(4))
    with pytest.raises(ValueError, match="^t: must be >= 3"):
        peaks.parabola_vertex(jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(ValueError, match="^lo: need 0 < lo < hi"):
        peaks.grid_peak(lambda s: s, 0.0, 1.0)
    with pytest.raises(ValueError, match="^lo: need 0 < lo < hi"):
        peaks.grid_peak(lambda s: s, 2.0, 1.0)
    with pytest.raises(ValueError, match="^num: must be >= 3"):
        peaks.grid_peak(lambda s: s, 1.0, 2.0, num=2)
    with pytest.raises(ValueError, match=r"^fn: must return one value per sigma"):
        peaks.grid_peak(lambda s: s[:-1], 1.0, 2.0, num=8)
    with pytest.raises(ValueError, match="^y: must be 1-D"):
        peaks.local_maxima(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="^y: must be finite"):
        peaks.local_maxima(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="^rel_prominence: must be >= 0"):
        peaks.local_maxima(np.zeros(4), rel_prominence=-1.0)
