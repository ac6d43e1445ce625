"""The theory experiments (mechanism, approximation, geometry, relaxations) and their claims.

Each experiment runs end to end in quick mode into temporary folders (results saved, figures
drawn from them); configs reject bad values with "key: rule" errors; the experiments' claims,
computed from their saved results, come back as Claims and the two SNR limits hold. The helpers
are tested against independent references (the project's own sampler, the specialised exact
path, a known peak). Tests run in file order, so later tests reuse the kernels the experiments
compiled.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import molrg
from molrg import metrics, peaks, theory
from molrg.experiments import approximation, geometry, get, mechanism, relaxations, run_experiment
from molrg.study import Claim, apply_overrides, evaluate, load_results

_CLAIMS = {
    "mechanism": ["snr_limit_small_sigma", "snr_limit_large_sigma", "interior_peak", "fine_to_coarse_shrinkage",
                  "fine_to_coarse_output"],
    "approximation": ["approximation_peak"],
    "relaxations": ["relaxation_overlap_lowers_snr", "relaxation_overlap_small_sigma_limit",
                    "relaxation_separated_means", "relaxation_overlap_lowers_snr[trained network]",
                    "lowrank_recovery_rate[K=2]"],
}

_FIGURES = {
    "mechanism": ["mechanism"],
    "approximation": ["approximation", "approximation_gap"],
    "geometry": ["geometry"],
    "relaxations": ["relaxations"],
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("theory_experiments")
    return str(root / "results"), str(root / "figures")


@pytest.mark.parametrize("name", list(_FIGURES))
def test_quick_run_end_to_end(name, folders):
    out, figs = folders
    path = run_experiment(name, quick=True, out_dir=out, fig_dir=figs, verbose=False)
    with open(os.path.join(path, "manifest.json")) as fh:
        manifest = json.load(fh)
    with open(os.path.join(path, "results.json")) as fh:
        scalars = json.load(fh)
    assert manifest["experiment"] == name and manifest["quick"] is True
    assert manifest["paper"].startswith("P1")
    assert manifest["tables"], "an experiment must save at least one table"
    for table in manifest["tables"]:
        csv = os.path.join(path, f"{table}.csv")
        assert os.path.getsize(csv) > 0
        with open(csv) as fh:
            assert len(fh.readlines()) >= 2  # header and at least one row
    assert isinstance(scalars["summary"], str) and len(scalars["summary"]) > 80
    for stem in _FIGURES[name]:
        for ext in ("png", "pdf"):
            assert os.path.getsize(os.path.join(figs, f"{stem}.{ext}")) > 1000
    if name == "relaxations":
        md = open(os.path.join(figs, "relaxations_table.md")).read()
        assert "| sigma |" in md and "verdict" in md


def test_quick_results_are_consistent(folders):
    """Numbers the quick runs saved agree with the theory they illustrate."""
    out, _ = folders
    mech = load_results(os.path.join(out, "mechanism"))
    sc = mech["scalars"]
    # The sampled n-dimensional model agrees with the quadrature (14 levels: |z| < 4 everywhere).
    assert sc["sampled_max_abs_z_vs_quadrature"] < 4.0
    # P1's setting: exact peak inside the timestep range; Theorem 1 peaks later and higher.
    assert 0.1 < sc["exact_peak_sigma"] < 1.0
    assert sc["approx_peak_sigma"] > sc["exact_peak_sigma"]
    assert sc["limit_small_sigma"] == pytest.approx(12.5)
    rows = mech["tables"]["mechanism_dense"]
    conf = np.array([r["mean_true_posterior"] for r in rows])
    assert conf[0] > 0.99 and abs(conf[-1] - 1 / 3) < 0.02  # confident at small sigma, uniform at large
    approx = load_results(os.path.join(out, "approximation"))
    assert approx["scalars"]["sampled_max_abs_z"] < 4.0
    for r in approx["tables"]["approximation_peaks"]:
        assert r["exact_local_maxima"] == 1 and r["approx_local_maxima"] == 1
    relax = load_results(os.path.join(out, "relaxations"))
    assert set(relax["scalars"]["verdicts"]) == set(get("relaxations").quick["variants"])
    geo = load_results(os.path.join(out, "geometry"))
    assert geo["arrays"]["outputs_3d"].shape == (5, 600, 3)
    assert np.allclose(geo["arrays"]["projection_2d"].T @ geo["arrays"]["projection_2d"], np.eye(2), atol=1e-6)


def test_theory_claims(folders):
    """The claims come back from each experiment's saved quick results (no recomputation)."""
    out, _ = folders
    claims = []
    for name, expected in _CLAIMS.items():
        got = get(name).claims(load_results(os.path.join(out, name)))
        assert isinstance(got, list) and [c.name for c in got] == expected
        for c in got:
            assert isinstance(c, Claim) and c.name and c.statement and c.tolerance
            assert isinstance(c.passed, bool) and c.measured
        claims += got
    by_name = {c.name: c for c in claims}
    assert by_name["snr_limit_small_sigma"].passed, by_name["snr_limit_small_sigma"].measured
    assert by_name["snr_limit_large_sigma"].passed, by_name["snr_limit_large_sigma"].measured
    # Quick mode measures P1's Fig. 3 setting only, at the quick sample size.
    assert set(k for k in by_name["snr_limit_small_sigma"].measured if k.startswith("limit_")) == {"limit_paper"}
    assert by_name["interior_peak"].measured["samples_per_step"] == get("mechanism").quick["num_samples"]
    # evaluate() reads the same results folder.
    again = evaluate(get("relaxations"), os.path.join(out, "relaxations"), verbose=False)
    assert [c.passed for c in again] == [by_name[c.name].passed for c in again]


@pytest.mark.parametrize("name, overrides, key", [
    ("mechanism", {"delta": 1.5}, "delta"),
    ("mechanism", {"d": 20}, "d"),
    ("mechanism", {"timesteps": (5, 600)}, "timesteps"),
    ("mechanism", {"sigma_min": 10.0, "sigma_max": 1.0}, "sigma_min"),
    ("approximation", {"Ks": (1, 3)}, "Ks"),
    ("approximation", {"ds": (30,)}, "ds"),
    ("approximation", {"deltas": (0.3, 1.0)}, "deltas"),
    ("approximation", {"num_sigmas": 4}, "num_sigmas"),
    ("geometry", {"K": 4}, "K"),
    ("geometry", {"num_points": 10**6}, "num_points"),
    ("relaxations", {"variants": ("orthogonal", "bogus")}, "variants"),
    ("relaxations", {"weights": (0.7, 0.2)}, "weights"),
    ("relaxations", {"ranks": (30, 30)}, "ranks"),
    ("relaxations", {"sigmas": (0.1, 0.01, 1.0)}, "sigmas"),
    ("relaxations", {"mean_radius": -1.0}, "mean_radius"),
    ("relaxations", {"n": 12, "variants": ("orthogonal",)}, "angle"),
    ("mechanism", {"limit_settings": ("paper", "bogus")}, "limit_settings"),
    ("approximation", {"peak_settings": ()}, "peak_settings"),
])
def test_config_validation(name, overrides, key):
    exp = get(name)
    with pytest.raises(ValueError, match=f"^{key}:"):
        apply_overrides(exp.config, overrides)


def test_configs_are_frozen_and_valid():
    for name in _FIGURES:
        exp = get(name)
        exp.config.validate()
        apply_overrides(exp.config, exp.quick)
        with pytest.raises(dataclasses.FrozenInstanceError):
            exp.config.seed = 1  # type: ignore[misc]


def test_string_overrides_parse():
    cfg = apply_overrides(approximation.ApproximationConfig(), {"Ks": "3,5", "delta": "0.25"})
    assert cfg.Ks == (3, 5) and cfg.delta == 0.25


# ----------------------------------------------------------------------------------------------
# Helpers against independent references.
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow  # ~10 s, mostly compiling two samplers; the fast tier's z-tests against the
# quadrature and the closed-form limits exercise draw_noisy end to end.
def test_draw_noisy_matches_the_mixture_sampler():
    """Same law as MoLRG.sample: class frequencies, class means and block energies (z-tests)."""
    key_mix, key_a, key_b = jax.random.split(jax.random.key(0), 3)
    mix = molrg.random_molrg(key_mix, n=12, K=3, d=2, delta=0.3, weights=jnp.asarray([0.5, 0.3, 0.2]),
                             means=0.7 * jnp.eye(3, 12), angle=60.0)
    num = 40_000
    x_a, y_a, eps = (np.asarray(v) for v in jax.jit(metrics._draw_noisy, static_argnums=2)(mix, key_a, num))
    x_b, y_b = (np.asarray(v) for v in jax.jit(lambda m, k: m.sample(k, num))(mix, key_b))
    assert x_a.shape == (num, 12) and eps.shape == (num, 12) and y_a.dtype == np.int32
    assert abs(eps.mean()) < 4 / np.sqrt(eps.size) and abs(eps.var() - 1) < 0.02
    U = np.asarray(mix.stacked_bases)
    for k in range(3):
        pa, pb = np.mean(y_a == k), np.mean(y_b == k)
        assert abs(pa - pb) < 4 * np.sqrt(2 * pb * (1 - pb) / num)
        ea = np.sum(np.square(x_a[y_a == k] @ U), axis=1)
        eb = np.sum(np.square(x_b[y_b == k] @ U), axis=1)
        z = (ea.mean() - eb.mean()) / np.hypot(ea.std() / np.sqrt(ea.size), eb.std() / np.sqrt(eb.size))
        assert abs(z) < 4
        xa, xb = x_a[y_a == k], x_b[y_b == k]
        se = np.hypot(xa.std(0) / np.sqrt(len(xa)), xb.std(0) / np.sqrt(len(xb)))
        assert np.max(np.abs(xa.mean(0) - xb.mean(0)) / se) < 4.5  # 12 coordinates


def test_overlap_limit_at_right_angles_is_the_orthogonal_limit():
    """At theta = 90 degrees the overlap formula must reduce to 1/((K-1) delta^2) with K = 2."""
    for delta in (0.1, 0.2, 0.5):
        assert relaxations.overlap_limit(delta, 90.0) == pytest.approx(1.0 / delta**2, rel=1e-12)
    # Overlap keeps more of the detail as signal: the limit grows as the angle shrinks.
    assert relaxations.overlap_limit(0.2, 30.0) > relaxations.overlap_limit(0.2, 60.0) > 1.0 / 0.2**2


def test_general_path_equals_orthogonal_path():
    """The relaxations evaluate orthogonal mixtures on the general code path: same denoiser."""
    cfg = relaxations.RelaxationsConfig()
    general = relaxations.make_variant("unequal_weights", cfg, jax.random.key(1))
    assert general.structure == "general"
    special = molrg.MoLRG(general.bases, weights=general.weights, delta=general.delta)
    assert special.structure == "orthogonal"
    # Any inputs will do for comparing two implementations of the same function: points near
    # each class subspace plus noise of three sizes (NumPy draws, nothing to compile).
    rng = np.random.default_rng(0)
    U = np.asarray(special.stacked_bases)
    x0 = rng.normal(size=(256, U.shape[1])) @ U.T
    sigma = np.repeat([0.002, 0.3, 2.0], 256).reshape(3, 256)
    x_t = jnp.asarray(x0[None] + sigma[:, :, None] * rng.normal(size=(3, 256, U.shape[0])))
    sigma = jnp.asarray(sigma)
    a, pa = molrg.denoise(general, x_t, sigma, return_posterior=True)
    b, pb = molrg.denoise(special, x_t, sigma, return_posterior=True)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-8)
    np.testing.assert_allclose(np.asarray(pa), np.asarray(pb), atol=1e-8)


def test_grid_peak_and_local_maxima():
    f = lambda s: 3.0 - np.square(np.log(s / 0.37))  # noqa: E731
    p = peaks.grid_peak(f, 1e-3, 1e3, 64)
    assert p["interior"] and p["sigma"] == pytest.approx(0.37, rel=1e-4) and p["value"] == pytest.approx(3.0, abs=1e-4)
    edge = peaks.grid_peak(lambda s: -np.log(s), 1e-2, 1e2, 32)
    assert not edge["interior"] and edge["sigma"] == pytest.approx(1e-2)
    s = np.geomspace(1e-3, 1e3, 200)
    y = f(s)
    assert peaks.local_maxima(y) == 1
    noisy = y + 1e-9 * np.sin(np.arange(200) * 2.1)  # rounding-size wiggles do not count
    assert peaks.local_maxima(noisy) == 1
    assert peaks.local_maxima(np.sin(np.linspace(0, 4 * np.pi, 400))) == 2


def test_sampled_snr_rejects_bad_input():
    mix = molrg.paper_molrg(jax.random.key(4))
    with pytest.raises(ValueError, match="^scales:"):
        metrics.sampled_snr(mix, [0.1, 0.2], [1.0], key=jax.random.key(5), num_samples=100)
    with pytest.raises(ValueError, match="^num_samples:"):
        metrics.sampled_snr(mix, [0.1], key=jax.random.key(6), num_samples=1)
    with pytest.raises(ValueError, match="^sigmas:"):
        metrics.sampled_snr(mix, [0.0], key=jax.random.key(7), num_samples=100)


def test_closed_forms_match_theory():
    s = np.geomspace(1e-2, 10, 7)
    got = theory.closed_form_curves(s, d=5, K=3, delta=0.2)
    np.testing.assert_allclose(got["approx_snr"], np.asarray(theory.approx_snr(jnp.asarray(s), d=5, K=3, delta=0.2)),
                               rtol=1e-12)
    np.testing.assert_allclose(got["denoising_rate"], s**2 / 0.04, rtol=1e-12)
    with pytest.raises(ValueError, match="^K:"):
        theory.closed_form_curves(s, d=5, K=1, delta=0.2)


def test_energy_confidence_matches_the_sampled_posterior():
    """Block-energy Monte Carlo of E[p(k_true | x_t)] vs molrg.posterior on the n-dim model."""
    sigma = np.array([0.02, 0.6, 1e3])
    mean, se = mechanism.energy_confidence(sigma, d=5, K=3, delta=0.2, key=jax.random.key(8), num_draws=8192)
    mix = molrg.paper_molrg(jax.random.key(9))
    st = metrics.sampled_snr(mix, sigma, key=jax.random.key(10), num_samples=4000)
    z = (mean - st["confidence"]) / np.hypot(se, st["confidence_se"])
    assert np.all(np.abs(z) < 4), z
    assert mean[0] > 0.99 and abs(mean[-1] - 1 / 3) < 1e-3


def test_geometry_module_registered():
    for name, mod in (("mechanism", mechanism), ("approximation", approximation), ("geometry", geometry),
                      ("relaxations", relaxations)):
        exp = get(name)
        assert exp.run is mod.run and exp.plot is mod.plot and exp.quick is mod.QUICK
        assert exp.claims is getattr(mod, "claims", None)
