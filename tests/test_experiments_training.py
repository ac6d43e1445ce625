"""Tests of the fig3_trained experiment (quick mode, end to end) and its claims, computed from the
saved results and checked against the claims of the in-memory results."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from molrg.experiments import fig3_trained as f3
from molrg.study import Claim, load_results
from tests.oracle import run_keeping_results, same_exactly


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The quick run: ``(results folder, figures folder, in-memory results as load_results gives them)``."""
    out = tmp_path_factory.mktemp("results")
    figs = tmp_path_factory.mktemp("figures")
    path, memory = run_keeping_results(f3.EXPERIMENT, quick=True, out_dir=str(out), fig_dir=str(figs),
                                       verbose=False)
    return path, str(figs), memory


def test_quick_run_writes_everything(run):
    path, figs, _ = run
    for f in ("manifest.json", "results.json", "arrays.npz", "fig3_trained.csv"):
        assert os.path.getsize(os.path.join(path, f)) > 0, f
    with open(os.path.join(path, "manifest.json")) as fh:
        manifest = json.load(fh)
    assert manifest["experiment"] == "fig3_trained" and manifest["quick"] is True
    for stem in ("fig3_trained_snr", "fig3_trained_probe", "fig3_trained_excess_mse", "networks_compare"):
        for ext in ("png", "pdf"):
            assert os.path.getsize(os.path.join(figs, f"{stem}.{ext}")) > 1000


def test_quick_results_are_consistent(run):
    path, _, _ = run
    res = load_results(path)
    sc, rows = res["scalars"], res["tables"]["fig3_trained"]
    assert isinstance(sc["summary"], str) and "epochs=200" in sc["summary"]
    assert len(rows) == 14
    sig = np.array([r["sigma"] for r in rows])
    assert np.all(np.diff(sig) > 0)
    for r in rows:
        # The optimal denoiser is the MMSE: no network beats it by more than sampling noise.
        for c in f3.CURVES_MSE:
            assert r[f"excess_mse_{c}"] > -0.05 * r["bayes_mse"], (c, r)
        for c in f3.representations(3):
            assert 0.0 <= r[f"probe_{c}"] <= 1.0
            assert r[f"fsnr_{c}"] > 0 and np.isfinite(r[f"fsnr_{c}_std"])
        assert r["kl_posterior_lowrank"] >= -1e-6
        assert r["snr_optimal"] > 0 and r["snr_approx"] > 0
    assert 0 <= sc["subspace_error"] <= 1 + 1e-6
    assert abs(sc["subspace_frobenius_error"] - np.sqrt(2 * 3 * 5) * sc["subspace_error"]) < 1e-5
    reps = f3.representations(3)
    assert sc["representations"] == list(reps) == ["lowrank_h", "optimal_out", "linear_h", "mlp_hidden_1",
                                                  "mlp_hidden_2", "mlp_hidden_3"]
    assert set(sc["verdicts"]) >= ({"snr_lowrank", "snr_optimal", "snr_mlp", "snr_linear", "snr_approx"}
                                   | {f"fsnr_{c}" for c in reps} | {f"probe_{c}" for c in reps})
    assert sc["mlp"]["film"] is True and sc["mlp"]["weighting"] == "edm"
    assert abs(sc["mlp"]["sigma_data"] - 0.33) < 0.02  # the data's per-coordinate std, not EDM's 0.5
    # A linear map of x_t cannot separate zero-mean classes: its probe stays near chance (1/3).
    assert all(r["probe_linear_h"] < 0.5 for r in rows)
    # Theorem-1 curve has an interior peak in this setting (docs/theory.md section 6).
    assert sc["verdicts"]["snr_approx"]["verdict"] == "interior peak"


@pytest.mark.parametrize("field,value", [
    ("d", 20), ("delta", 0.0), ("delta", 1.0), ("epochs", 0), ("num_test_sets", 1),
    ("test_size", 0), ("probe_train", 20_000), ("batch_size", 0), ("learning_rate", 0.0), ("K", 1),
    ("mlp_weighting", "none"), ("mlp_sigma_data", 0.0),
])
def test_config_validation(field, value):
    cfg = dataclasses.replace(f3.Fig3TrainedConfig(), **{field: value})
    with pytest.raises(ValueError, match=f"^{field.split('_')[0]}"):
        cfg.validate()


def test_default_config_is_valid_and_paper_steps():
    f3.Fig3TrainedConfig().validate()
    assert dataclasses.replace(f3.Fig3TrainedConfig(), epochs=200).steps == 75_000


def test_claims_from_the_saved_results(run):
    path, _, memory = run
    claims = f3.EXPERIMENT.claims(load_results(path))
    assert len(claims) == 5
    for c in claims:
        assert isinstance(c, Claim) and isinstance(c.passed, bool)
        assert c.measured and c.tolerance and "reduced training" in c.statement
    # The saved files (CSV, JSON) carry every number the claims read: the same claims, bit for bit.
    direct = f3.EXPERIMENT.claims(memory)
    assert [c.name for c in claims] == [c.name for c in direct]
    for a, b in zip(claims, direct):
        assert (a.statement, a.tolerance, a.passed) == (b.statement, b.tolerance, b.passed), a.name
        assert same_exactly(a.measured, b.measured), (a.name, a.measured, b.measured)
