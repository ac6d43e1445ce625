"""The trained-MLP memorisation study: config checks, the measurement pipeline against
independent references, an end-to-end quick run, and its claims computed from saved results."""

import csv
import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import molrg
from molrg import study
from molrg.experiments import mlp_memorization as mm
from molrg.study import apply_overrides, load_results
from molrg.sampling import ddpm_ancestral, default_timesteps, draw_noises
from molrg.schedules import DDPMLinear, paper_timestep_sigmas
from tests.oracle import run_keeping_results, same_exactly


# ------------------------------------------------------------------------------------------
# Config validation.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, field", [
    ("N_values", "16,40", "N_values"),          # 16 does not divide 40
    ("N_values", "64,16", "N_values"),          # not increasing
    ("N_values", "2,16", "N_values"),           # N < K
    ("widths", "64,64", "widths"),
    ("widths", "0", "widths"),
    ("delta", "1.0", "delta"),
    ("d", "20", "d"),                           # K d > n
    ("K", "1", "K"),
    ("num_seeds", "0", "num_seeds"),
    ("segment_steps", "0", "segment_steps"),
    ("batch_size", "8192", "batch_size"),
    ("sample_steps", "501", "sample_steps"),
    ("learning_rate", "-1", "learning_rate"),
    ("loglik_sigma", "0", "loglik_sigma"),
    ("num_test", "4", "num_test"),
])
def test_config_errors_name_the_field(key, value, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        apply_overrides(mm.MLPMemorizationConfig(), {key: value})


def test_unknown_key_is_rejected():
    with pytest.raises(ValueError, match="unknown config key"):
        apply_overrides(mm.MLPMemorizationConfig(), {"wdith": "3"})


def test_default_and_quick_configs_validate():
    mm.MLPMemorizationConfig().validate()
    apply_overrides(mm.MLPMemorizationConfig(), mm.QUICK)


# ------------------------------------------------------------------------------------------
# Data helpers.
# ------------------------------------------------------------------------------------------
def test_stratified_pool_balances_every_prefix_and_tiles():
    mix = molrg.paper_molrg(jax.random.key(0))
    x, lab = mm.stratified_pool(jax.random.key(1), mix, 64)
    assert x.shape == (64, 50) and lab.shape == (64,)
    for N in (3, 16, 64):
        counts = np.bincount(np.asarray(lab[:N]), minlength=3)
        assert counts.max() - counts.min() <= 1
    # Each point lies on its class: the part outside span(U_k) is the delta detail only.
    for k in range(3):
        U = np.asarray(mix.bases[k])
        xs = np.asarray(x)[np.asarray(lab) == k]
        inside = np.sum((xs @ U) ** 2, 1)
        assert np.all(inside > 0)
    t = mm.tiled(x, 16, 64)
    assert t.shape == (64, 50)
    np.testing.assert_array_equal(np.asarray(t[16:32]), np.asarray(x[:16]))


# ------------------------------------------------------------------------------------------
# The SNR pipeline against known curves.
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class _Blend:
    """A stand-in "network": ``a * exact denoiser + (1 - a) * identity``, feature = output."""

    mix: object

    def apply(self, params, x_t, sigma, scale=1.0, *, return_features=False):
        a = params["a"]
        out = a * molrg.denoise(self.mix, x_t, sigma, scale) + (1.0 - a) * x_t / scale
        return (out, {"hidden_2": out}) if return_features else out


def test_snr_pipeline_exact_peak_and_identity_formula():
    """Member 0 is the exact denoiser: its curve has P1's interior peak (and equals the
    direct per-level computation); member 1 is the identity x_t / s, whose SNR is known in
    closed form: d (1 + sigma^2) / ((K - 1) d delta^2 + (n - d) sigma^2)."""
    K, n, d, delta = 3, 50, 5, 0.2
    mix = molrg.paper_molrg(jax.random.key(3))
    x0, labels = mix.sample(jax.random.key(4), 1500)
    sig, sc = paper_timestep_sigmas()
    L = len(sig)
    eps = jax.random.normal(jax.random.key(5), (L * 1500 * n,)).reshape(L, 1500, n)
    params = {"a": jnp.asarray([1.0, 0.0])}
    out = mm.curves(_Blend(mix), params, mix, x0, labels, x0, labels, eps, jnp.asarray(sig),
                    jnp.asarray(sc), features=True)
    snr, se = np.asarray(out["snr_test"]), np.asarray(out["snr_test_stderr"])
    assert snr.shape == (2, L)
    # Exact member: equal to the direct computation, and an interior peak by the z = 3 test.
    direct, direct_se = mm.exact_curve(mix, x0, labels, eps, jnp.asarray(sig), jnp.asarray(sc))
    np.testing.assert_allclose(snr[0], direct, rtol=1e-10)
    v = mm.curve_verdict(sig, snr[0], se[0])
    assert v["verdict"] == "interior peak"
    assert v["peak_gain"] > 1.5 and 0 < v["peak_sigma"] < 1.5
    # Identity member: the closed form, within 4 standard errors at every level.
    theory = d * (1 + sig**2) / ((K - 1) * d * delta**2 + (n - d) * sig**2)
    assert np.all(np.abs(snr[1] - theory) < 4 * se[1]), (snr[1], theory, se[1])
    # Identity: the "memorised" monotone-decreasing shape.
    assert mm.curve_verdict(sig, snr[1], se[1])["verdict"] == "monotone decreasing"
    # Train inputs equal test inputs here: identical curves; features = outputs here, and the
    # feature SNR is a different (fitted-subspace) number, but finite.
    np.testing.assert_allclose(np.asarray(out["snr_train"]), snr)
    assert np.all(np.isfinite(np.asarray(out["feature_snr"])))


def test_curve_verdict_peak_gain_and_error():
    x = np.arange(1.0, 6.0)
    y = np.array([1.0, 2.0, 4.0, 2.0, 1.0])
    e = np.full(5, 0.01)
    v = mm.curve_verdict(x, y, e)
    assert v["verdict"] == "interior peak" and v["peak_gain"] == pytest.approx(4.0)
    assert v["peak_gain_stderr"] == pytest.approx(4.0 * np.hypot(0.01 / 4, 0.01 / 1))
    v = mm.curve_verdict(x, y[::-1][2:].tolist() + [0.5, 0.25], e)
    assert v["peak_gain"] == pytest.approx(1.0) and v["peak_gain_stderr"] == 0.0


# ------------------------------------------------------------------------------------------
# Memorisation measures: the memorising optimum copies, the true distribution does not.
# ------------------------------------------------------------------------------------------
def test_empirical_denoiser_samples_are_copies_and_true_samples_are_not():
    mix = molrg.paper_molrg(jax.random.key(7))
    train, _ = mix.sample(jax.random.key(8), 32)
    ts = default_timesteps(DDPMLinear(), 100)
    x_T, noises = draw_noises(jax.random.key(9), 200, 50, len(ts))
    den = lambda x, s, c: molrg.empirical_denoise(train, x, s, c)  # noqa: E731
    copies = jax.jit(lambda a, z: ddpm_ancestral(den, a, z, timesteps=ts))(x_T, noises)
    fresh, _ = mix.sample(jax.random.key(10), 200)
    reference, _ = mix.sample(jax.random.key(11), 200)
    got = mm.memorisation_measures(jnp.stack([copies, fresh]), train, mix, reference=reference,
                                   loglik_sigma=0.1)
    # Empirical denoiser: every sample is (within sampling error) a training point.
    assert got["copy_fraction"][0] >= 0.95
    assert got["nn_ratio"][0] < 0.2
    # Fresh true samples: NN ratio 1 within Monte Carlo error (two independent means of
    # 200 NN distances; relative std of one NN distance measured below), few copies.
    ref = molrg.sample_quality.nearest_neighbors(reference, train).distance
    rel_se = float(np.std(np.asarray(ref), ddof=1) / np.mean(np.asarray(ref)) / np.sqrt(200))
    assert abs(got["nn_ratio"][1] - 1.0) < 4 * np.sqrt(2) * rel_se
    assert got["copy_fraction"][1] <= 0.05
    # The fresh samples sit on the subspaces as the reference does; likelihoods agree too.
    assert got["union_distance"][1] == pytest.approx(got["union_distance_ref"], rel=0.1)
    assert got["loglik"][0] == pytest.approx(got["loglik_ref"], rel=0.2)


def test_classify_thresholds():
    assert mm.classify(0.9, 5.0, 0.6) == "memorising"
    assert mm.classify(0.5, 0.6, 0.6) == "memorising"
    assert mm.classify(0.2, 0.6, 0.6) == "intermediate"
    assert mm.classify(0.0, 0.6, 0.6) == "generalising"
    assert mm.classify(0.0, 0.95, 0.6) == "underfit"


# ------------------------------------------------------------------------------------------
# End to end.
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A smaller-than-quick run: ``(results folder, figures folder, seconds, in-memory results)``.

    The in-memory results (what ``run`` returned, in the form :func:`molrg.study.load_results`
    gives) are the reference for the claims' round trip through the saved files.
    """
    out, figs = tmp_path_factory.mktemp("res"), tmp_path_factory.mktemp("fig")
    overrides = {"N_values": "16,64", "widths": "16", "segment_steps": "40", "num_test": "60", "num_seeds": "1",
                 "num_samples": "32", "sample_steps": "10"}
    t0 = time.perf_counter()
    path, memory = run_keeping_results(mm.EXPERIMENT, quick=True, overrides=overrides, out_dir=str(out),
                                       fig_dir=str(figs), verbose=False)
    return path, figs, time.perf_counter() - t0, memory


def test_quick_run_writes_results_and_figures(quick_run):
    path, figs, seconds, _ = quick_run
    res = load_results(path)
    models = res["tables"]["models"]
    cfg = res["manifest"]["config"]
    S, Nn, G = cfg["num_seeds"], 2, cfg["num_segments"]
    assert len(models) == S * Nn * G
    assert len(res["tables"]["curves"]) == S * Nn * G * 14
    assert {int(r["step"]) for r in models} == {40 * (g + 1) for g in range(G)}
    for r in models:
        assert 0.0 <= r["copy_fraction"] <= 1.0 and r["nn_ratio"] > 0
        assert r["verdict_test"] in ("interior peak", "monotone decreasing", "monotone increasing",
                                     "interior dip", "flat")
    assert res["scalars"]["exact"]["verdict"] == "interior peak"
    for stem in ("mlp_memorization", "mlp_memorization_curves", "mlp_memorization_training"):
        assert os.path.exists(figs / f"{stem}.png")
    assert seconds < 60, seconds  # target < 30 s; generous for a loaded 2-core machine


def test_claims_from_saved_results_follow_the_saved_models_table(quick_run):
    """claims(load_results(path)): group sizes and agreement as read off the raw models.csv,
    and the same claims, bit for bit, as from the in-memory results."""
    path, _, _, memory = quick_run
    got = {c.name: c for c in mm.claims(load_results(path))}
    assert set(got) == {"mlp_memorization_shape[memorising]", "mlp_memorization_shape[generalising]"}
    with open(os.path.join(path, "models.csv"), newline="") as fh:
        final = [r for r in csv.DictReader(fh) if r["final"] == "True"]
    assert len(final) == 2  # one seed, two N, the last checkpoint of each
    for group, want in (("memorising", False), ("generalising", True)):
        # The grouping rule written out: memorising copy >= 1/2; generalising copy <= 0.05 on the support.
        rows = [r for r in final if (float(r["copy_fraction"]) >= 0.5) == (group == "memorising")
                and (group == "memorising" or (float(r["copy_fraction"]) <= 0.05
                                               and float(r["union_distance"]) <= 1.5 * float(r["union_distance_ref"])))]
        agree = sum((r["verdict_test"] == "interior peak") == want for r in rows)
        c = got[f"mlp_memorization_shape[{group}]"]
        assert c.measured["models_in_group"] == len(rows) and c.measured["agreeing"] == agree
        assert c.passed == (len(rows) > 0 and agree == len(rows))
        assert len(c.measured["models"]) == 2 and c.measured["models"][0].startswith("W16/N16/s0: ")
        assert c.measured["steps"] == 40 * mm.QUICK["num_segments"]
        assert c.measured["N"] == [16, 64] and c.measured["widths"] == [16]
    direct = {c.name: c for c in mm.claims(memory)}
    for name, c in got.items():
        d = direct[name]
        assert (c.statement, c.tolerance, c.passed) == (d.statement, d.tolerance, d.passed)
        assert same_exactly(c.measured, d.measured), (c.measured, d.measured)


def _planted_results(folder, models):
    """A results folder holding only what the claims read: a ``models`` table and two scalars."""
    cfg = dataclasses.asdict(mm.MLPMemorizationConfig())
    study.write_table(os.path.join(folder, "models.csv"), models)
    study.write_json_atomic(os.path.join(folder, "results.json"),
                            {"steps": 10_000, "exact": {"verdict": "interior peak"}})
    study.write_json_atomic(os.path.join(folder, "manifest.json"), {"config": cfg, "tables": ["models"]})
    return str(folder)


def test_claims_on_a_planted_models_table(tmp_path):
    """Known groups and verdicts: a memorising model with a peak fails its claim; only final rows count."""
    base = {"width": 256, "N": 16, "seed": 0, "union_distance": 0.7, "union_distance_ref": 0.6, "nn_ratio": 0.5,
            "peak_gain_test": 1.0, "peak_gain_stderr_test": 0.0}
    models = [
        dict(base, final=False, copy_fraction=0.9, verdict_test="interior peak"),  # not final: ignored
        dict(base, final=True, copy_fraction=0.9, verdict_test="monotone decreasing"),  # memorising, agrees
        dict(base, final=True, copy_fraction=0.6, seed=1, verdict_test="interior peak"),  # memorising, disagrees
        dict(base, final=True, copy_fraction=0.0, N=4096, verdict_test="interior peak"),  # generalising, agrees
        dict(base, final=True, copy_fraction=0.0, N=4096, seed=1, union_distance=1.0,
             verdict_test="monotone decreasing"),  # underfit (1.0 > 1.5 x 0.6): in neither group
        dict(base, final=True, copy_fraction=0.2, seed=2, verdict_test="flat"),  # intermediate: neither
    ]
    got = {c.name: c for c in mm.claims(load_results(_planted_results(tmp_path, models)))}
    mem, gen = got["mlp_memorization_shape[memorising]"], got["mlp_memorization_shape[generalising]"]
    assert (mem.measured["models_in_group"], mem.measured["agreeing"], mem.passed) == (2, 1, False)
    assert (gen.measured["models_in_group"], gen.measured["agreeing"], gen.passed) == (1, 1, True)
    assert len(mem.measured["models"]) == 5
    second = mem.measured["models"][1]
    assert second.startswith("W256/N16/s1: copy 0.60") and "-> memorising; interior peak" in second
    assert "-> underfit" in mem.measured["models"][3] and "-> intermediate" in mem.measured["models"][4]
    assert mem.measured["exact_denoiser"] == "interior peak" and mem.measured["steps"] == 10_000
    # An empty group is a FAIL: nothing supports the claim.
    got = {c.name: c for c in mm.claims(load_results(_planted_results(tmp_path / "empty", models[:2])))}
    assert not got["mlp_memorization_shape[generalising]"].passed
    assert got["mlp_memorization_shape[generalising]"].measured["models_in_group"] == 0
