"""The trained-MLP memorisation study: config checks, the measurement pipeline against
independent references, and an end-to-end quick run."""

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import molrg
from molrg.experiments import mlp_memorization as mm
from molrg.runner import apply_overrides, load_results, run_experiment
from molrg.sampling import ddpm_ancestral, default_timesteps, draw_noises
from molrg.schedules import DDPMLinear, paper_timestep_sigmas


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
    ref = molrg.memorization.nearest_neighbors(reference, train).distance
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
def test_quick_run_writes_results_and_figures(tmp_path):
    t0 = time.perf_counter()
    overrides = {"N_values": "16,64", "widths": "16", "segment_steps": "40", "num_test": "60", "num_seeds": "1",
                 "num_samples": "32", "sample_steps": "10"}
    path = run_experiment("mlp_memorization", quick=True, overrides=overrides,
                          out_dir=str(tmp_path / "res"), fig_dir=str(tmp_path / "fig"), verbose=False)
    seconds = time.perf_counter() - t0
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
        assert os.path.exists(tmp_path / "fig" / f"{stem}.png")
    assert seconds < 60, seconds  # target < 30 s; generous for a loaded 2-core machine


def test_run_is_memoised_per_config():
    """molrg reproduce trains the check's models once: equal configs reuse, others retrain."""
    from molrg.experiments import mlp_memorization as mm
    from molrg.runner import memoized_run

    assert hasattr(mm.run, "memo")  # the experiment's run goes through the memo
    calls = []
    run = memoized_run(lambda cfg, verbose: calls.append(cfg) or object())
    a = run(mm.MLPMemorizationConfig(), verbose=False)
    b = run(mm.MLPMemorizationConfig(), verbose=False)
    c = run(mm.MLPMemorizationConfig(num_test=300), verbose=False)
    assert a is b and c is not a
    assert len(calls) == 2
