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
    ("mlp_weighting", "none"), ("mlp_sigma_data", 0.0), ("lowrank_recipe", "bogus"), ("lowrank_restarts", 0),
    ("lowrank_decay_steps", 4000), ("lowrank_learning_rate", -1.0), ("recovery_seeds", 0),
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
    assert len(claims) == 6
    for c in claims:
        assert isinstance(c, Claim) and isinstance(c.passed, bool)
        assert c.measured and c.tolerance and "reduced training" in c.statement
        assert c.source in ("P0", "P1", "molrg") and c.expected in ("PASS", "FAIL"), c.name
    rate = {c.name: c for c in claims}["lowrank_recovery_rate[K=3]"]
    assert rate.measured["seeds"] == f3.QUICK["recovery_seeds"] and not rate.passed  # < 16 seeds never passes
    assert rate.measured["recovered"] + rate.measured["optimisation_failures"] \
        + rate.measured["sample_complexity_failures"] == rate.measured["seeds"]
    # The saved files (CSV, JSON) carry every number the claims read: the same claims, bit for bit.
    direct = f3.EXPERIMENT.claims(memory)
    assert [c.name for c in claims] == [c.name for c in direct]
    for a, b in zip(claims, direct):
        assert (a.statement, a.tolerance, a.passed) == (b.statement, b.tolerance, b.passed), a.name
        assert same_exactly(a.measured, b.measured), (a.name, a.measured, b.measured)


# ------------------------------------------------------------------------------------------
# The low-rank network's recipe and certificate (small scale, float64).
# ------------------------------------------------------------------------------------------
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import molrg  # noqa: E402
from molrg import certify  # noqa: E402
from molrg import recovery as rc  # noqa: E402
from molrg.experiments import relaxations  # noqa: E402
from molrg.networks import LowRankDenoiser  # noqa: E402


def _small(K=2, d=2, n=12, N=400):
    mix = molrg.random_molrg(jax.random.key(3), n=n, K=K, d=d, delta=0.2, dtype=jnp.float64)
    x, _ = mix.sample(jax.random.key(4), N)
    return mix, x, LowRankDenoiser(n, K, d, 0.2)


def test_objective_at_the_truth_is_the_exact_denoisers_loss():
    """At U = U* the network is the exact denoiser: its objective on the fixed draws equals the
    Bayes denoiser's squared error on the same draws, computed independently (float64)."""
    mix, x, net = _small()
    draws = rc.objective_draws(jax.random.key(5), x, draws=3)
    x0, eps, sigma, scale = (np.asarray(v, np.float64) for v in draws)
    assert x0.shape == eps.shape == (3 * 400, 12) and sigma.shape == scale.shape == (3 * 400,)
    assert np.array_equal(x0[:400], np.asarray(x)) and np.array_equal(x0[800:], np.asarray(x))
    xt = scale[:, None] * (x0 + sigma[:, None] * eps)
    bayes = np.asarray(molrg.denoise(mix, jnp.asarray(xt), jnp.asarray(sigma), jnp.asarray(scale)), np.float64)
    ref = np.mean(np.sum((bayes - x0) ** 2, axis=1))
    truth = {"A": jnp.concatenate(mix.bases, axis=1)}
    got = float(rc.lowrank_objective(net, truth, draws))
    assert abs(got - ref) <= 1e-10 * ref
    # A random network is worse on the same draws.
    assert float(rc.lowrank_objective(net, net.init(jax.random.key(0), dtype=jnp.float64), draws)) > 1.05 * got


def test_recovery_study_selects_by_objective_and_certifies():
    mix, x, net = _small()
    recipe = rc.LowRankRecipe(restarts=3, steps=300, decay_steps=100, learning_rate=5e-3, decay_batch_size=64)
    draws = rc.objective_draws(jax.random.key(5), x)
    st = rc.recovery_study(net, x, mix, recipe, seeds=2, key=jax.random.key(0), draws=draws)
    assert st["start_objective"].shape == st["start_error"].shape == (2, 3)
    assert st["A"].shape == (2, 12, 4) and st["losses"].shape == (2, 300)
    # The kept start is the one of least objective after the search stage.
    assert np.array_equal(st["best"], np.argmin(st["start_objective"], axis=1))
    # The certificate is molrg.certify's, at the stated tolerance.
    assert np.array_equal(st["reached"], np.asarray(certify.reached(st["objective"], st["objective_truth"],
                                                                    rtol=rc.CERTIFICATE_RTOL)))
    assert np.array_equal(st["outcome"], np.asarray(certify.outcome(st["error"] < st["threshold"], st["reached"])))
    assert st["split"]["n"] == 2 and st["start_split"]["n"] == 6
    # Started at the truth and trained the same way, the network stays at the truth.
    assert st["truth_error"] < 0.1
    # The kept objective is the objective of the kept parameters on the same draws.
    again = float(rc.lowrank_objective(net, {"A": jnp.asarray(st["A"][1])}, draws))
    assert abs(again - st["objective"][1]) <= 1e-9 * abs(again)
    summary = rc.recovery_summary(st)
    assert summary["recovered"] + summary["optimisation_failures"] + summary["sample_complexity_failures"] == 2
    with pytest.raises(ValueError, match="^seeds"):
        rc.recovery_study(net, x, mix, recipe, seeds=0, key=jax.random.key(0), draws=draws)


def test_train_with_recipe_matches_its_certificate():
    mix, x, net = _small()
    recipe = rc.LowRankRecipe(restarts=2, steps=200, decay_steps=50, decay_batch_size=64)
    draws = rc.objective_draws(jax.random.key(6), x)
    res = rc.train_with_recipe(net, x, recipe, key=jax.random.key(1), draws=draws,
                               truth_a=jnp.concatenate(mix.bases, axis=1))
    assert res["A"].shape == (12, 4) and res["start_objective"].shape == (2,)
    assert res["reached"] == bool(res["objective"] <= res["objective_truth"] * (1 + res["rtol"]))
    assert np.isclose(res["relative_excess"], (res["objective"] - res["objective_truth"]) / res["objective_truth"])


def test_recipes_and_their_validation():
    cfg = f3.Fig3TrainedConfig()
    plain = f3.lowrank_recipe(dataclasses.replace(cfg, lowrank_recipe="plain"))
    assert (plain.restarts, plain.steps, plain.decay_steps, plain.learning_rate) == (1, cfg.steps, 0, cfg.learning_rate)
    default = f3.lowrank_recipe(cfg)
    assert (default.restarts, default.steps, default.search_steps) == (16, 4000, 2000)
    with pytest.raises(ValueError, match="^lowrank_decay_steps"):
        rc.LowRankRecipe(steps=100, decay_steps=100).validate(1000)
    with pytest.raises(ValueError, match="^lowrank_batch_size"):
        rc.LowRankRecipe(decay_batch_size=2000).validate(1000)


def test_relaxations_truth_frame_and_matched_angles():
    """Unequal ranks: the padded start holds each U_k, stays orthonormal, and its matched
    principal angles to the true subspaces are zero (float64)."""
    mix = molrg.random_molrg(jax.random.key(2), n=20, K=2, d=(4, 2), delta=0.2, dtype=jnp.float64)
    frame = np.asarray(relaxations.truth_frame(mix, 4, jax.random.key(0)))
    assert frame.shape == (20, 8)
    assert np.allclose(frame.T @ frame, np.eye(8), atol=1e-12)
    assert np.allclose(frame[:, 4:6], np.asarray(mix.bases[1]))
    angles, match, every = relaxations.matched_angles(frame, 4, mix)
    assert match == [0, 1] and [len(a) for a in angles] == [4, 2]
    assert float(np.min(every[0][1])) > 89.0  # block 1 is orthogonal to U_2
    assert max(float(np.max(a)) for a in angles) < 1e-5
    # Swapped blocks are matched back.
    swapped = np.concatenate([frame[:, 4:], frame[:, :4]], axis=1)
    assert relaxations.matched_angles(swapped, 4, mix)[1] == [1, 0]
