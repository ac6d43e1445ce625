"""Noise schedules against their defining formulas, computed independently."""

import jax.numpy as jnp
import numpy as np
import pytest

from molrg import schedules


def test_ddpm_linear_matches_loop_definition():
    sch = schedules.DDPMLinear(T=500, beta_start=1e-4, beta_end=0.02)
    betas = [1e-4 + i * (0.02 - 1e-4) / 499 for i in range(500)]
    abar, prod = [], 1.0
    for b in betas:
        prod *= 1.0 - b
        abar.append(prod)
    abar = np.asarray(abar)
    t = np.asarray(schedules.PAPER_TIMESTEPS)
    sigma, scale = sch(t)
    np.testing.assert_allclose(scale, np.sqrt(abar[t]), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.sqrt((1 - abar[t]) / abar[t]), rtol=1e-10)
    s2, c2 = schedules.paper_timestep_sigmas()
    np.testing.assert_allclose(s2, sigma, rtol=1e-12)
    np.testing.assert_allclose(c2, scale, rtol=1e-12)
    # the VP relation between sigma and scale
    np.testing.assert_allclose(schedules.vp_scale(sigma), scale, rtol=1e-12)


def test_logsnr_roundtrip_and_vp_scale():
    sigma = jnp.geomspace(1e-4, 1e4, 17)
    lam = schedules.logsnr_from_sigma(sigma)
    np.testing.assert_allclose(schedules.sigma_from_logsnr(lam), sigma, rtol=1e-12)
    np.testing.assert_allclose(schedules.vp_scale_from_logsnr(lam), schedules.vp_scale(sigma), rtol=1e-12)
    with pytest.raises(ValueError, match="sigma: must be > 0"):
        schedules.logsnr_from_sigma(0.0)


def test_cosine_and_ve_and_edm():
    sigma, scale = schedules.Cosine()(jnp.asarray([0.0, 0.5, 0.999]))
    f = lambda t: np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    abar = f(np.asarray([0.0, 0.5, 0.999])) / f(0.0)
    np.testing.assert_allclose(scale, np.sqrt(abar), rtol=1e-12)
    np.testing.assert_allclose(sigma[1:], np.sqrt((1 - abar[1:]) / abar[1:]), rtol=1e-9)
    assert float(sigma[0]) == 0.0
    s, c = schedules.VE()(jnp.asarray([0.1, 2.0]))
    np.testing.assert_allclose(s, [0.1, 2.0])
    np.testing.assert_allclose(c, 1.0)
    grid = schedules.edm_sigmas(18)
    assert grid[0] == pytest.approx(80.0) and grid[-1] == pytest.approx(0.002)
    assert np.all(np.diff(grid) < 0)
    i = 7
    ref = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert grid[i] == pytest.approx(ref, rel=1e-12)
    assert len(schedules.PAPER_SIGMAS) == 9 and len(schedules.PAPER_TIMESTEPS) == 14


def test_schedule_validation():
    with pytest.raises(ValueError, match=r"t: must lie in \[0, T-1\]"):
        schedules.DDPMLinear()(np.asarray([0, 500]))
    with pytest.raises(ValueError, match="t: must be integer time indices"):
        schedules.DDPMLinear()(np.asarray([0.5]))
    with pytest.raises(ValueError, match="T: must be a positive integer"):
        schedules.DDPMLinear(T=0)
    with pytest.raises(ValueError, match="beta_start/beta_end"):
        schedules.DDPMLinear(beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match=r"t: must lie in \[0, t_max\]"):
        schedules.Cosine()(1.0)
    with pytest.raises(ValueError, match="t: must be > 0"):
        schedules.VE()(0.0)
    with pytest.raises(ValueError, match="num: must be an integer >= 2"):
        schedules.edm_sigmas(1)
