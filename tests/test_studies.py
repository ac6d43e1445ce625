"""The phase-transition and memorisation studies: pieces against independent references,
masking against the unmasked computation, both experiments end to end, and their claims.

The quick experiments and the quick claims use the same static sweep values, so the module
compiles each sweep program once (the engine caches compiled group functions).
"""

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import molrg
from molrg import metrics
from molrg.experiments import get, run_experiment, run_sweep
from molrg.experiments import memorization as mem
from molrg.experiments import phase_transition as pt
from molrg.study import Claim, load_results


# ------------------------------------------------------------------------------------------
# Phase transition: pieces.
# ------------------------------------------------------------------------------------------
def test_draw_problem_exact_counts_and_subspaces():
    d, N = 3, 4
    draw = jax.jit(lambda key: pt.draw_problem(key, n=16, K=2, d=d, N=N, d_max=5, N_max=7))
    bases, x, cols, rows = draw(jax.random.key(0))
    bases, x = np.asarray(bases), np.asarray(x)
    assert bases.shape == (2, 16, 5) and x.shape == (2, 7, 16)
    np.testing.assert_array_equal(np.asarray(cols), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(rows), [1, 1, 1, 1, 0, 0, 0])
    assert np.all(bases[:, :, d:] == 0) and np.all(x[:, N:] == 0)
    for k in range(2):
        U = bases[k, :, :d]
        np.testing.assert_allclose(U.T @ U, np.eye(d), atol=1e-12)
        resid = x[k, :N] - x[k, :N] @ U @ U.T  # every sample lies in its class subspace
        assert np.max(np.abs(resid)) < 1e-12
        assert np.linalg.matrix_rank(x[k, :N], tol=1e-9) == min(N, d)
    np.testing.assert_allclose(bases[0, :, :d].T @ bases[1, :, :d], 0, atol=1e-12)  # orthogonal classes


def test_pca_success_flips_at_N_equals_d_for_K1(tmp_path):
    """K = 1 (P0: training = PCA): every seed fails at N = d - 1 and succeeds at N = d, d + 1;
    below d the error is about sqrt((d - N) / d) (the missing directions are unknowable)."""
    # The grid and batch of ``molrg check --quick`` (phase_boundary): one shared compile.
    ds, Ns, seeds = list(range(2, 9)), list(range(2, 11)), list(range(10))
    res = run_sweep("phase_transition", {"K": [1], "d": ds, "N": Ns, "seed": seeds},
                    overrides=dict(d_max=8, N_max=10, restarts=8, iterations=10, threshold=0.1),
                    out_dir=str(tmp_path), batch_size=pt.slice_batch(Ns, len(seeds)), verbose=False)
    rows = res["rows"]
    for d in ds:
        for N in (d - 1, d, d + 1):
            if N not in Ns:
                continue
            sel = [r for r in rows if r["d"] == d and r["N"] == N]
            assert len(sel) == len(seeds)
            succ = [r["success_pca"] for r in sel]
            if N < d:
                assert succ == [0.0] * len(seeds)
                errs = np.array([r["err_pca"] for r in sel])
                assert np.all(errs > 0.8 * math.sqrt((d - N) / d))
            else:
                assert succ == [1.0] * len(seeds)


def test_reference_certificate_columns_and_the_identifiability_limit(tmp_path):
    """Certified K-subspaces (K = 2, d = 3) on the quick sweep's static values: every row
    carries the certificate of each reference; outcome codes agree with success / reached;
    the truth's residual is rounding (noiseless data); the certified estimator succeeds from
    N = d (its failures below are sample-complexity failures); no start reaches the truth's
    residual with another partition at N >= d + 1 (identifiability), and random-start
    K-subspaces' failures there are optimisation failures."""
    from molrg import certify

    d, Ns, seeds = 3, list(range(2, 11)), list(range(10))
    res = run_sweep("phase_transition", {"K": [2], "d": [d], "N": Ns, "seed": seeds},
                    overrides=dict(d_max=8, N_max=10, restarts=8, iterations=10, threshold=0.1),
                    out_dir=str(tmp_path), batch_size=pt.slice_batch(Ns, len(seeds)), verbose=False)
    rows = res["rows"]
    tol = pt.PhaseTransitionPoint().certificate_tol
    for m in pt.REFERENCE_METHODS:
        get_ = lambda key: np.array([r[f"{key}_{m}"] for r in rows])  # noqa: E731
        success, hit, code = get_("success"), get_("reached"), get_("outcome")
        np.testing.assert_array_equal(success, get_("err") < 0.1)
        np.testing.assert_array_equal(hit, get_("objective") <= get_("objective_truth") + tol)
        np.testing.assert_array_equal(code, certify.outcome(success > 0, hit > 0))
        assert np.all(np.abs(get_("objective_truth")) < 1e-20)  # float64 rounding of an exact fit
        above = np.array([r["N"] >= d + 1 for r in rows])
        assert not np.any(code[above] == certify.SAMPLE_COMPLEXITY_FAILURE), m  # unique optimum
    for r in rows:
        assert r["reached_pca"] == 1 and r["reached_ksub"] == 1  # labels / certified: the optimum
        assert r["success_ksub"] == (r["N"] >= d), r  # certified: from N = d
        if r["N"] >= d + 1:
            assert r["other_optimum"] == 0
    at_d = [r["other_optimum"] for r in rows if r["N"] == d]
    assert max(at_d) == 1  # at N = d some start found another zero-residual partition


# ------------------------------------------------------------------------------------------
# Phase transition: P0's trained network, its certificate and its recipe.
# ------------------------------------------------------------------------------------------
def _net_cfg(**kw):
    base = dict(n=16, K=2, d=2, N=4, d_max=2, N_max=4, train_steps=300, restarts=2, start="neighbours")
    return dataclasses.replace(pt.PhaseTransitionNetPoint(), **{**base, **kw})


def _net_points(cfg, Ns, seeds):
    vals = {"N": jnp.asarray(Ns), "seed": jnp.asarray(seeds),
            "learning_rate": jnp.full(len(Ns), cfg.learning_rate)}
    out = jax.jit(jax.vmap(lambda v: pt._net_point(cfg, v)))(vals)
    return {k: np.asarray(v) for k, v in out.items()}


def test_net_certificate_columns_consistent():
    """The shared certificate columns: reached = objective <= (1 + rtol) objective_truth,
    success = err < threshold, outcome = molrg.certify.outcome(success, reached)."""
    from molrg import certify

    cfg = _net_cfg(train_steps=60, start="random")  # short plain training: some runs miss
    out = _net_points(cfg, [1, 2, 4, 4, 4, 4], [0, 1, 0, 1, 2, 3])
    for k in ("success", "reached", "objective", "objective_truth", "outcome", "err_net", "success_net"):
        assert k in out and out[k].shape == (6,), k
    assert np.all(np.isfinite(out["objective"])) and np.all(out["objective_truth"] > 0)
    np.testing.assert_array_equal(out["reached"], out["objective"] <= (1 + cfg.rtol) * out["objective_truth"])
    np.testing.assert_array_equal(out["success"], out["err_net"] < cfg.threshold)
    np.testing.assert_array_equal(out["success"], out["success_net"])
    np.testing.assert_array_equal(out["outcome"], certify.outcome(out["success"] > 0, out["reached"] > 0))


def test_plain_recipe_in_the_certified_batch_equals_its_own_sweep():
    """``plain=True`` trains P0's plain start in the certified points' batch, sharing their
    truth-started run: the certified outputs are those of ``plain=False``, and the plain outputs
    those of a separate ``restarts=1, start="random"`` point (same start, same noise draws,
    same certificate), up to the rounding of a differently batched product."""
    Ns, seeds = [2, 4, 4, 4], [0, 0, 1, 2]
    merged = _net_points(_net_cfg(train_steps=40, plain=True), Ns, seeds)
    certified = _net_points(_net_cfg(train_steps=40), Ns, seeds)
    plain = _net_points(_net_cfg(train_steps=40, restarts=1, start="random"), Ns, seeds)
    for k, v in certified.items():
        np.testing.assert_allclose(merged[k], v, rtol=1e-7, atol=1e-12, err_msg=k)
    for k in ("err", "success", "objective", "reached", "outcome"):
        np.testing.assert_allclose(merged[f"{k}_plain"], plain["err_net" if k == "err" else k], rtol=1e-7,
                                   atol=1e-12, err_msg=k)
    with pytest.raises(ValueError, match="plain: must be true or false"):
        _net_cfg(plain="yes").validate()


def test_net_objective_against_a_float64_formula_and_truth_start_beats_a_bad_start():
    """``net_objective`` equals P0's delta=0 network loss written out in float64 NumPy on
    the same draws; and the truth-started training ends at a lower objective than a start
    that mixes the two subspaces in each block (the certificate's premise)."""
    from molrg.networks import SubspaceDenoiser, polar
    from molrg.schedules import LogUniformNoise
    from molrg.training import fit

    n, K, d, N = 16, 2, 2, 6
    bases, x, _, rows = pt.draw_problem(jax.random.key(3), n=n, K=K, d=d, N=N, d_max=d, N_max=N)
    X, W = x.reshape(K * N, n), jnp.tile(rows, K)
    net = SubspaceDenoiser(n=n, K=K, d=d)
    true = jnp.transpose(bases, (1, 0, 2)).reshape(n, K * d)
    bad = jnp.stack([bases[0, :, 0], bases[1, :, 0], bases[0, :, 1], bases[1, :, 1]], axis=1)
    key = lambda: jax.random.key(5)  # noqa: E731  (fresh: the tests check key reuse)
    got = float(pt.net_objective(net, bad, X, W, key(), 0.01, 0.3))
    # the reference: same eval draws, the network written out (s = 1, gamma = sigma)
    J, M = pt.NET_EVAL_LEVELS, pt.NET_EVAL_DRAWS
    sig = np.repeat(np.exp(np.linspace(np.log(0.01), np.log(0.3), J)), M)
    eps = np.asarray(jax.random.normal(key(), (J * M * X.size,), X.dtype), np.float64)
    eps = eps.reshape(J * M, *X.shape)
    U, x0 = np.asarray(bad, np.float64), np.asarray(X, np.float64)
    losses = []
    for s, e in zip(sig, eps):
        y = x0 + s * e
        blocks = [U[:, k * d:(k + 1) * d] for k in range(K)]
        en = np.stack([np.sum((y @ B) ** 2, axis=1) for B in blocks], axis=1) / (2 * s**2 * (1 + s**2))
        w = np.exp(en - en.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        pred = sum(w[:, [k]] * (y @ B @ B.T) for k, B in enumerate(blocks)) / (1 + s**2)
        losses.append(np.sum((pred - x0) ** 2, axis=1).mean())
    np.testing.assert_allclose(got, np.mean(losses), rtol=1e-10)

    def trained(a):
        res = fit(net, X, key=jax.random.key(0), weights=W, steps=200, learning_rate=1e-2,
                  noise=LogUniformNoise(0.01, 0.3), params={"A": a})
        return float(pt.net_objective(net, polar(res.params["A"]), X, W, key(), 0.01, 0.3))

    from_truth, from_bad = trained(true), trained(bad)
    assert from_truth <= from_bad, (from_truth, from_bad)
    assert from_bad > 1.2 * from_truth  # the mixed start stays in its basin: an optimisation failure


def test_net_recipe_recovers_K2_at_N_2d():
    """The default recipe (two neighbourhood starts, the lower objective kept) recovers both
    subspaces at N_k = 2 d_k for every seed, at the truth-started run's objective."""
    cfg = _net_cfg(d=3, d_max=3, N_max=6)
    out = _net_points(cfg, [6] * 4, [0, 1, 2, 3])
    assert np.all(out["success"] == 1) and np.all(out["reached"] == 1), out
    assert np.all(out["outcome"] == 0)


def test_net_bad_input_named():
    for kw, name in ((dict(start="pca"), "start"), (dict(restarts=0), "restarts"),
                     (dict(rtol=-0.1), "rtol"), (dict(train_steps=0), "train_steps")):
        with pytest.raises(ValueError, match=name):
            _net_cfg(**kw).validate()
    for kw, name in ((dict(net_start="x"), "net_start"), (dict(net_restarts=0), "net_restarts"),
                     (dict(net_rtol=2.0), "net_rtol")):
        with pytest.raises(ValueError, match=name):
            dataclasses.replace(pt.PhaseTransitionConfig(), **kw).validate()


# ------------------------------------------------------------------------------------------
# Memorisation: the sweep point's masking against the unmasked library computation.
# ------------------------------------------------------------------------------------------
def test_memorization_point_masked_equals_the_subset():
    """The point keeps the first N of N_max training points by masks (N traced); the same
    draws with the training set cut to N rows, through the unmasked library calls, give the
    same numbers."""
    cfg = mem.MemorizationPoint(n=20, K=3, d=2, N_max=50, num_test=120, num_train_inputs=40)
    sigma, delta, seed = 0.4, 0.3, 3
    point = jax.jit(lambda N: mem._point(cfg, {"N": N, "sigma": jnp.asarray(sigma),
                                                "delta": jnp.asarray(delta), "seed": jnp.asarray(seed)}))
    # The draws of the point, replayed (only the masking is under test here).
    k_mix, k_train, k_test, k_e1, k_e2 = jax.random.split(jax.random.key(seed), 5)
    mix = molrg.random_molrg(k_mix, n=20, K=3, d=2, delta=delta)
    train, train_labels = mix.sample(k_train, 50)
    x0, labels = mix.sample(k_test, 120)
    xt = x0 + sigma * jax.random.normal(k_e1, x0.shape)
    xt_train = train[:40] + sigma * jax.random.normal(k_e2, (40, 20))
    exact = molrg.denoise(mix, xt, sigma)
    for N in (2, 37, 50):
        got = point(jnp.asarray(N))
        emp_test = molrg.empirical_denoise(train[:N], xt, sigma)
        T = min(N, 40)  # training inputs: the first 40 points, of which the first N are in the set
        emp_train = molrg.empirical_denoise(train[:N], xt_train[:T], sigma)
        present = np.unique(np.asarray(train_labels[:T]))
        sub = molrg.MoLRG([mix.bases[k] for k in present], delta=delta)
        want = {"snr_test": metrics.snr(emp_test, labels, mix),
                "snr_train": metrics.snr(emp_train, jnp.searchsorted(jnp.asarray(present), train_labels[:T]),
                                         sub),
                "snr_exact": metrics.snr(exact, labels, mix),
                "mse_test": np.mean(np.sum((np.asarray(emp_test) - np.asarray(x0)) ** 2, axis=1)),
                "mse_exact": np.mean(np.sum((np.asarray(exact) - np.asarray(x0)) ** 2, axis=1))}
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-9, err_msg=f"N={N} {k}")
    assert len(np.unique(np.asarray(train_labels[:2]))) < 3  # N = 2 misses a class (skip_absent path)


def test_memorization_sweep_one_program_for_every_N(tmp_path):
    """N is numeric: several N share one compiled group; d is static (a group per d)."""
    res = run_sweep("memorization", {"d": [1, 2], "N": [4, 30], "sigma": [0.1, 1.0], "seed": [0]},
                    overrides={"n": 12, "K": 2, "N_max": 30, "num_test": 16, "num_train_inputs": 8},
                    out_dir=str(tmp_path), verbose=False)
    assert res["computed"] == 8
    rows = res["rows"]
    assert all(np.isfinite(r[k]) for r in rows for k in ("snr_test", "snr_train", "snr_exact", "mse_test"))
    # The exact denoiser does not depend on N.
    for d in (1, 2):
        by_N = {N: sorted(r["snr_exact"] for r in rows if r["d"] == d and r["N"] == N) for N in (4, 30)}
        np.testing.assert_allclose(by_N[4], by_N[30], rtol=1e-12)


# ------------------------------------------------------------------------------------------
# End to end, and the claims.
# ------------------------------------------------------------------------------------------
def test_phase_transition_quick_end_to_end(tmp_path):
    out = run_experiment("phase_transition", quick=True, out_dir=str(tmp_path / "r"),
                         fig_dir=str(tmp_path / "f"), verbose=False)
    res = load_results(out)
    bounds = res["tables"]["boundary"]
    pca1 = [b for b in bounds if b["method"] == "pca" and b["K"] == 1]
    assert len(pca1) == 4 and all(b["boundary_minus_d"] == 0 for b in pca1)
    assert res["scalars"]["num_reference_points"] == 2 * 4 * 9 * 10
    assert {"pca", "ksub", "net", "net_random"} <= {b["method"] for b in bounds}
    for method in ("net", "net_random"):  # the certified recipe and P0's plain one beside it
        net = [b for b in bounds if b["method"] == method]
        assert len(net) == 1 and net[0]["K"] == 1 and net[0]["d"] == 2  # the quick network sub-grid
    net_points = [p for p in res["tables"]["points"] if p["method"] == "network"]
    assert net_points and all(p["outcome"] in (0, 1, 2) for p in net_points)
    assert os.path.exists(tmp_path / "f" / "phase_transition.png")
    # quick claims: the references' (class PCA at K = 1; K = 2 without labels), from the saved tables
    claims = get("phase_transition").claims(res)
    assert [c.name for c in claims] == ["phase_boundary[K=1, class PCA = P0 network optimum]",
                                        "phase_boundary[K=2, K-subspaces, no labels]",
                                        "phase_boundary[K=2, K-subspaces random starts, no labels]",
                                        "identifiability_limit[K=2, K-subspaces, no labels]"]
    assert all(c.passed for c in claims) and all(c.as_expected for c in claims)
    assert claims[1].measured["boundary_minus_d"] == [0.0] * 4  # certified: at N_k = d_k
    assert claims[1].measured["optimisation_failures"] == 0
    assert claims[0].passed and claims[0].measured["boundary_minus_d"] == [0.0] * 4
    assert claims[0].measured["d"] == [2, 4, 6, 8] and claims[0].measured["N_range"] == [2, 10]


def test_phase_transition_claims_from_tables():
    """Full-scale claims on hand-made tables: names, verdicts, NaN = never settles = FAIL."""
    Ns = list(range(2, 8))

    def cells_and_bound(method, K, d, rates):
        cells = [{"method": method, "K": float(K), "d": float(d), "N": float(N), "success_rate": r}
                 for N, r in zip(Ns, rates)]
        b = pt.boundary(Ns, rates, 0.5)
        at = lambda N: rates[Ns.index(N)] if N in Ns else float("nan")  # noqa: E731
        bound = {"method": method, "K": float(K), "d": float(d), "boundary_N": b, "boundary_minus_d": b - d,
                 "rate_at_N_eq_d": at(d), "rate_at_N_eq_d_minus_1": at(d - 1)}
        return cells, [bound]

    parts = [cells_and_bound("pca", 1, 2, [1, 1, 1, 1, 1, 1]), cells_and_bound("pca", 1, 3, [0, 1, 1, 1, 1, 1]),
             cells_and_bound("ksub", 2, 2, [0, 0, 0, 1, 1, 1]),  # boundary 5 = d + 3: FAIL
             cells_and_bound("ksub", 2, 3, [0, 0, 1, 1, 1, 1]),
             cells_and_bound("net", 1, 4, [0, 0, 0.3, 0.6, 1, 1]),  # boundary 5 = d + 1: PASS
             cells_and_bound("net", 2, 4, [0, 0, 0, 0.6, 0.6, 0.4])]  # never settles: FAIL
    cfg = dict(dataclasses.asdict(pt.PhaseTransitionConfig()), K_values=[1, 2])
    results = {"manifest": {"quick": False, "config": cfg}, "scalars": {},
               "tables": {"cells": [c for p in parts for c in p[0]],
                          "boundary": [b for p in parts for b in p[1]]}}
    got = {c.name: c for c in pt.claims(results)}
    assert list(got) == ["phase_boundary[K=1, class PCA = P0 network optimum]",
                         "phase_boundary[K=2, K-subspaces, no labels]",
                         "identifiability_limit[K=2, K-subspaces, no labels]",
                         "phase_boundary_network[K=1, d=4]", "phase_boundary_network[K=2, d=4]"]
    # K = 2 without labels: limit d + 1, so d = 2's boundary 5 is 2 off (FAIL); the tables
    # carry no other-optimum rates, so the identifiability claim cannot pass
    assert [c.passed for c in got.values()] == [True, False, False, True, False]
    assert got["phase_boundary[K=2, K-subspaces, no labels]"].measured["boundary_minus_limit"] == [2.0, 0.0]
    assert all(c.source and c.expected for c in got.values())
    k1 = got["phase_boundary[K=1, class PCA = P0 network optimum]"].measured
    assert k1["d"] == [2, 3] and k1["boundary_minus_d"] == [0.0, 0.0] and k1["N_range"] == [2, 7]
    assert k1["rate_at_N_eq_d"] == [1.0, 1.0] and math.isnan(k1["rate_at_N_eq_d_minus_1"][0])
    net = got["phase_boundary_network[K=1, d=4]"].measured
    assert net["boundary_N"] == 5.0 and net["success_rate_by_N"][4] == 0.3 and net["seeds_per_cell"] == 10
    assert math.isnan(got["phase_boundary_network[K=2, d=4]"].measured["boundary_N"])
    results["manifest"]["quick"] = True  # quick: the references' claims only
    assert [c.name for c in pt.claims(results)] == list(got)[:3]


def test_network_claims_carry_the_failure_split_and_the_plain_recipe():
    """``phase_boundary_network``: the certified recipe's boundary and failure split, P0's
    plain recipe beside it, source P0 with an expected verdict (hand-made tables)."""
    Ns = list(range(2, 8))

    def cells(method, rates, opt):
        return [{"method": method, "K": 2.0, "d": 3.0, "N": float(N), "seeds": 10, "success_rate": r,
                 "optimisation_failure_rate": o, "sample_complexity_failure_rate": 1 - r - o}
                for N, r, o in zip(Ns, rates, opt)]

    net = cells("net", [0, 0.2, 0.9, 1, 1, 1], [0.1, 0, 0.1, 0, 0, 0])
    plain = cells("net_random", [0, 0, 0.1, 0.2, 0.1, 0.3], [0.5, 0.8, 0.9, 0.8, 0.9, 0.7])
    rates = [c["success_rate"] for c in net]
    bound = {"method": "net", "K": 2.0, "d": 3.0, "boundary_N": pt.boundary(Ns, rates, 0.5)}
    results = {"manifest": {"quick": False, "config": dataclasses.asdict(pt.PhaseTransitionConfig())},
               "scalars": {}, "tables": {"cells": net + plain, "boundary": [bound]}}
    (claim,) = [c for c in pt.claims(results) if c.name.startswith("phase_boundary_network")]
    assert claim.name == "phase_boundary_network[K=2, d=3]" and claim.passed  # boundary 4 = d + 1
    assert claim.source == "P0" and claim.expected == "PASS"
    m = claim.measured
    assert m["boundary_N"] == 4.0 and m["success_rate_by_N"][4] == 0.9
    assert m["optimisation_failures"] == 2 and m["sample_complexity_failures"] == 17  # 19 failures in all
    assert math.isclose(m["optimisation_failure_fraction"], 2 / 19)
    assert m["plain_success_rate_by_N"][7] == 0.3 and m["plain_optimisation_failures"] == 46

def test_memorization_quick_end_to_end(tmp_path):
    out = run_experiment("memorization", quick=True, out_dir=str(tmp_path / "r"),
                         fig_dir=str(tmp_path / "f"), verbose=False)
    res = load_results(out)
    curves = res["tables"]["curves"]
    verdicts = res["tables"]["verdicts"]
    assert {int(v["N"]) for v in verdicts if v["inputs"] == "test"} == {16, 64, 512}
    # The exact denoiser does not depend on N: same seeds give the same curve for every N.
    by_N = {N: [r["snr_exact"] for r in curves if r["N"] == N] for N in (16, 512)}
    np.testing.assert_allclose(by_N[16], by_N[512], rtol=1e-12)
    assert os.path.exists(tmp_path / "f" / "memorization.png")
    # The claim's quick sweep (N = 16, 512; 3 seeds) has the quick curves' static values and
    # seeds, so its verdicts are the curves' verdicts at those N.
    claims = get("memorization").claims(res)
    assert [c.name for c in claims] == ["memorization_shape[test inputs]", "memorization_shape[train inputs]"]
    for c, inputs in zip(claims, ("test", "train")):
        assert isinstance(c, Claim) and isinstance(c.passed, bool) and c.tolerance
        assert c.measured["seeds"] == 3 and c.measured["d"] == 5
        for N in (16, 512):
            v = next(v for v in verdicts if v["inputs"] == inputs and int(v["N"]) == N and int(v["d"]) == 5)
            assert c.measured[f"N{N}_verdict"] == v["verdict"]
            np.testing.assert_allclose(c.measured[f"N{N}_peak_gain"], v["peak_gain"], rtol=1e-12)
        assert c.passed == (c.measured["N16_verdict"] != "interior peak"
                            and c.measured["N512_verdict"] == "interior peak")
