"""Tests of the peak-map and probes experiments and their claims.

References: molrg.theory's exact SNR (its float64 quadrature and its Monte Carlo estimator)
for the peak map's re-implemented quadrature and peak search; finite differences of the
exact SNR for the derived existence law; the exact peak at very small delta for the derived
small-delta law; probes.projection_classifier for the per-test-set projection scoring.
The end-to-end runs use the experiments' quick overrides; the claims are computed from
their saved results, and must equal the claims of the in-memory results.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import molrg
from molrg import metrics, probes, theory
from molrg.experiments import get, peak_map
from molrg.experiments import probes as probes_exp
from molrg.study import Claim, apply_overrides, load_results
from tests.oracle import run_keeping_results, same_exactly


# ------------------------------------------------------------------------------------------
# End to end (quick), with the claims built from the same runs.
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Quick runs of both experiments: ``({name: results folder}, figures folder, {name: in-memory})``.

    The in-memory results (what ``run`` returned, before saving) are kept, in the form
    :func:`molrg.study.load_results` gives, as the reference for the claims' round trip.
    """
    out = tmp_path_factory.mktemp("results")
    figs = tmp_path_factory.mktemp("figures")
    paths, memory = {}, {}
    for name in ("peak_map", "probes"):
        paths[name], memory[name] = run_keeping_results(get(name), quick=True, out_dir=str(out),
                                                        fig_dir=str(figs), verbose=False)
    return paths, str(figs), memory


@pytest.mark.parametrize("name,tables,stems", [
    ("peak_map", ["peak_map"], ["peak_map_sigma_star", "peak_map_gain", "peak_map_laws"]),
    ("probes", ["probes"], ["probes"]),
])
def test_quick_run_writes_everything(runs, name, tables, stems):
    paths, figs, _ = runs
    path = paths[name]
    for f in ["manifest.json", "results.json", "arrays.npz"] + [f"{t}.csv" for t in tables]:
        assert os.path.getsize(os.path.join(path, f)) > 0, f
    with open(os.path.join(path, "manifest.json")) as fh:
        manifest = json.load(fh)
    assert manifest["experiment"] == name and manifest["quick"] is True
    res = load_results(path)
    summary = res["scalars"]["summary"]
    assert isinstance(summary, str) and len(summary) > 100
    for stem in stems:
        for ext in ("png", "pdf"):
            assert os.path.getsize(os.path.join(figs, f"{stem}.{ext}")) > 1000


def test_peak_map_results_are_consistent(runs):
    res = load_results(runs[0]["peak_map"])
    rows = res["tables"]["peak_map"]
    cfg = res["manifest"]["config"]
    assert len(rows) == len(cfg["ds"]) * len(cfg["deltas"]) * len(cfg["Ks"])
    for r in rows:
        small = 1 / ((r["K"] - 1) * r["delta"] ** 2)
        assert r["limit_small_sigma"] == pytest.approx(small)
        assert r["gain"] == pytest.approx(r["snr_star"] / max(small, 1 / (r["K"] - 1)))
        # No cell's supremum is below its small-noise limit (beyond float32 rounding).
        assert r["gain"] > 1 - 1e-4
        assert r["interior"] == (r["gain"] > 1 + cfg["interior_tol"])


def test_claims_from_the_quick_runs(runs):
    paths, _, _ = runs
    claims = get("peak_map").claims(load_results(paths["peak_map"])) + get("probes").claims(
        load_results(paths["probes"]))
    names = [c.name for c in claims]
    for expected in ("peak_map_interior", "peak_existence_law", "peak_power_law", "peak_small_delta_law",
                     "bayes_accuracy_monotone", "snr_unimodal", "linear_probe_unimodal", "projection_unimodal"):
        assert expected in names
    for c in claims:
        assert isinstance(c, Claim) and isinstance(c.passed, bool) and c.measured and c.tolerance
    by_name = {c.name: c for c in claims}
    # Statements that hold in any setting: Bayes accuracy cannot rise with noise, the SNR has a peak.
    assert by_name["bayes_accuracy_monotone"].passed
    assert by_name["snr_unimodal"].passed


@pytest.mark.parametrize("name", ["peak_map", "probes"])
def test_claims_survive_the_round_trip_through_saved_results(runs, name):
    """Claims from the saved files (CSV, JSON) equal those from the in-memory results, bit for bit."""
    paths, _, memory = runs
    saved = get(name).claims(load_results(paths[name]))
    direct = get(name).claims(memory[name])
    assert [c.name for c in saved] == [c.name for c in direct] and saved
    for a, b in zip(saved, direct):
        assert (a.statement, a.tolerance, a.passed) == (b.statement, b.tolerance, b.passed), a.name
        assert same_exactly(a.measured, b.measured), (a.name, a.measured, b.measured)


# ------------------------------------------------------------------------------------------
# Numerics of the peak map against molrg.theory.
# ------------------------------------------------------------------------------------------
# The float64 references reuse few (d, K, grid length) programs of theory.exact_snr_quadrature:
# each new combination is a compilation, which dominates the cost of these tests.
_SIGMAS = np.geomspace(1e-3, 30.0, 64)


def _theory_snr(d, K, delta, sigmas=_SIGMAS):
    return np.asarray(theory.exact_snr_quadrature(jnp.asarray(sigmas), d=d, K=K, delta=delta))


def test_traced_quadrature_matches_theory_float64():
    cells = [(1, 2, 0.05), (5, 3, 0.2), (12, 20, 0.9), (12, 20, 0.01)]
    got = np.asarray(peak_map.exact_snr_cells(
        jnp.asarray(_SIGMAS), jnp.asarray([c[2] for c in cells]), jnp.asarray([float(c[0]) for c in cells]),
        jnp.asarray([float(c[1]) for c in cells]), d_max=12))
    for row, (d, K, delta) in zip(got, cells):
        np.testing.assert_allclose(row, _theory_snr(d, K, delta), rtol=2e-6, err_msg=f"d={d}, K={K}, delta={delta}")


def test_peak_agrees_with_dense_grids_of_theory():
    """One cell (P1's d=5, K=3, delta=0.2): the float32 staged search vs dense float64 grids."""
    d, K, delta = 5, 3, 0.2
    f32 = jnp.float32
    s_star, y_star, _, _ = peak_map.exact_peaks(
        jnp.asarray([delta], f32), jnp.asarray([float(d)], f32), jnp.asarray([float(K)], f32),
        jnp.log(f32(1e-4)), jnp.log(f32(1e3)), d_max=d, num_grid=16, num_stages=4)
    s_star, y_star = float(s_star[0]), float(y_star[0])
    # Deterministic reference: a dense grid of the float64 quadrature (spacing 0.5% in sigma).
    grid = np.geomspace(0.26, 0.4, 64)
    ref = _theory_snr(d, K, delta, grid)
    step = np.log(grid[1] / grid[0])
    assert 0 < np.argmax(ref) < len(grid) - 1
    assert abs(np.log(s_star / grid[np.argmax(ref)])) < step + 5e-3  # 5e-3: float32 flatness at the top
    assert y_star == pytest.approx(ref.max(), rel=1e-4)
    # Monte Carlo reference (theory.exact_snr, common random numbers): sigma* must lie where
    # the Monte Carlo curve is within 2 standard errors of its maximum, and the peak values agree.
    mc_grid = np.geomspace(0.15, 0.7, 64)
    mc, se = theory.exact_snr(jnp.asarray(mc_grid), d=d, K=K, delta=delta, key=jax.random.key(0),
                              num_samples=1 << 18, return_stderr=True)
    mc, se = np.asarray(mc), np.asarray(se)
    near = mc_grid[mc >= mc.max() - 2 * se]
    assert near.min() <= s_star <= near.max()
    i = np.argmin(np.abs(np.log(mc_grid / s_star)))
    assert abs(mc[i] - y_star) < 4 * se[i]


def test_no_peak_cell_is_monotone_in_float64():
    """A cell the map reports without a peak: the float64 quadrature never exceeds the limit."""
    d, K, delta = 1, 2, 0.5
    y = _theory_snr(d, K, delta)
    limit = 1 / ((K - 1) * delta**2)
    assert y.max() <= limit * (1 + 1e-8)
    assert np.all(np.diff(y) <= 1e-9 * limit)


def test_existence_law_matches_finite_differences():
    """G of the derived expansion SNR (K-1) delta^2 = 1 + s (1-delta^2)/delta^2 G + O(s^2)."""
    rng = np.random.default_rng(1)
    sigmas = np.concatenate([[0.01, 0.02], np.ones(62)])
    for d, K, delta in ((1, 2, 0.5), (1, 2, 0.2), (12, 20, 0.6)):
        X = peak_map.chi_square_draws(rng, d, K, 1 << 17)
        g, se = peak_map.initial_slope(delta, d, X)
        y = _theory_snr(d, K, delta, sigmas)[:2]
        s1, s2 = (y * (K - 1) * delta**2 - 1) / (sigmas[:2] ** 2 * (1 - delta**2) / delta**2)
        fd = (4 * s1 - s2) / 3  # Richardson extrapolation to s -> 0
        assert abs(g - fd) < 4 * se + 1e-3, (d, K, delta, g, se, fd)


def test_small_delta_law_matches_the_exact_peak():
    rng = np.random.default_rng(2)
    for d, K in ((3, 2), (5, 10)):
        X = peak_map.chi_square_draws(rng, d, K, 1 << 15)
        c, c_se = peak_map.asymptotic_constant(d, X[1:])
        delta = 1e-4
        s_law, _ = peak_map.asymptotic_peak(delta, d, c)
        s_exact, _, _, _ = peak_map.exact_peaks(
            jnp.asarray([delta]), jnp.asarray([float(d)]), jnp.asarray([float(K)]), jnp.log(1e-6), jnp.log(10.0),
            d_max=5, num_grid=16, num_stages=4)
        # MC error of c moves sigma* by (se/c)/(d+4); the law's own error at delta=1e-4 is < 1%.
        tol = 3 * (c_se / c) / (d + 4) + 0.01
        assert abs(np.log(s_law / float(s_exact[0]))) < tol, (d, K, s_law, float(s_exact[0]))


def test_laws_fit_recovers_a_planted_power_law():
    rows = []
    for d in (1, 2, 4, 8):
        for delta in (0.05, 0.1, 0.2):
            for K in (2, 4):
                rows.append({"d": d, "delta": delta, "K": K, "interior": True, "gain": 2.0,
                             "sigma_star": 0.3 * delta**0.4 * d**0.5 * K**0.1})
    laws = peak_map.fit_laws(rows, num_samples=2048)
    p = laws["power_law"]
    assert p["coef"]["delta"] == pytest.approx(0.4, abs=1e-9)
    assert p["coef"]["d"] == pytest.approx(0.5, abs=1e-9)
    assert p["coef"]["K"] == pytest.approx(0.1, abs=1e-9)
    assert p["r2"] == pytest.approx(1.0) and peak_map.power_law_holds(p)


# ------------------------------------------------------------------------------------------
# Probes helpers and validation.
# ------------------------------------------------------------------------------------------
def test_projection_scoring_matches_metrics():
    mix = molrg.paper_molrg(jax.random.key(0))
    x, y = mix.sample(jax.random.key(1), 3000)
    y = y.astype(jnp.argmax(jnp.zeros(2)).dtype)  # metrics compares labels with argmax (int64 under x64)
    xt = x + 0.5 * jax.random.normal(jax.random.key(2), x.shape, x.dtype)
    feats = molrg.denoise(mix, xt, 0.5)
    train, test, ytr, yte = feats[:1000], feats[1000:], y[:1000], y[1000:]
    fit = metrics.class_subspaces(train, ytr, num_classes=3, rank=5)
    per_set = probes_exp.projection_accuracies(fit, test, yte, 2)
    for i in range(2):
        ref = probes.projection_classifier(train, ytr, test[i * 1000:(i + 1) * 1000], yte[i * 1000:(i + 1) * 1000],
                                            num_classes=3, rank=5).accuracy
        assert float(per_set[i]) == pytest.approx(float(ref), abs=1e-12)


@pytest.mark.parametrize("config,overrides,key", [
    (peak_map.PeakMapConfig(), {"deltas": "0.1,1.0"}, "deltas"),
    (peak_map.PeakMapConfig(), {"Ks": "1,2"}, "Ks"),
    (peak_map.PeakMapConfig(), {"ds": "0,2"}, "ds"),
    (peak_map.PeakMapConfig(), {"sigma_lo": "10", "sigma_hi": "1"}, "sigma_lo"),
    (peak_map.PeakMapConfig(), {"num_grid": "3"}, "num_grid"),
    (peak_map.PeakMapConfig(), {"dtype": "float16"}, "dtype"),
    (peak_map.PeakMapConfig(), {"deltas": "0.1,0.1"}, "deltas"),
    (probes_exp.ProbesConfig(), {"d": "20"}, "d"),
    (probes_exp.ProbesConfig(), {"delta": "1.0"}, "delta"),
    (probes_exp.ProbesConfig(), {"sigmas": "0.3,0.1,1.0"}, "sigmas"),
    (probes_exp.ProbesConfig(), {"features": "denoiser,hidden"}, "features"),
    (probes_exp.ProbesConfig(), {"num_repeats": "1"}, "num_repeats"),
    (probes_exp.ProbesConfig(), {"num_test_sets": "1"}, "num_test_sets"),
    (probes_exp.ProbesConfig(), {"rank": "0"}, "rank"),
])
def test_config_validation(config, overrides, key):
    with pytest.raises(ValueError, match=f"^{key}:"):
        apply_overrides(config, overrides)


def test_defaults_and_quick_overrides_validate():
    for cfg, quick in ((peak_map.PeakMapConfig(), peak_map.QUICK), (probes_exp.ProbesConfig(), probes_exp.QUICK)):
        cfg.validate()
        apply_overrides(cfg, quick)
    cells = peak_map._cells(peak_map.PeakMapConfig())
    assert len(cells) >= 200
