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
    assert {b["method"] for b in bounds} == {"pca", "ksub", "net"}
    net = [b for b in bounds if b["method"] == "net"]
    assert len(net) == 1 and net[0]["K"] == 1 and net[0]["d"] == 2  # the quick network sub-grid
    assert os.path.exists(tmp_path / "f" / "phase_transition.png")
    # quick claims: class PCA at K = 1 only (the old quick check's), from the saved tables
    claims = get("phase_transition").claims(res)
    assert [c.name for c in claims] == ["phase_boundary[K=1, class PCA = P0 network optimum]"]
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
                         "phase_boundary_network[K=1, d=4]", "phase_boundary_network[K=2, d=4]"]
    assert [c.passed for c in got.values()] == [True, False, True, False]
    k1 = got["phase_boundary[K=1, class PCA = P0 network optimum]"].measured
    assert k1["d"] == [2, 3] and k1["boundary_minus_d"] == [0.0, 0.0] and k1["N_range"] == [2, 7]
    assert k1["rate_at_N_eq_d"] == [1.0, 1.0] and math.isnan(k1["rate_at_N_eq_d_minus_1"][0])
    net = got["phase_boundary_network[K=1, d=4]"].measured
    assert net["boundary_N"] == 5.0 and net["success_rate_by_N"][4] == 0.3 and net["seeds_per_cell"] == 10
    assert math.isnan(got["phase_boundary_network[K=2, d=4]"].measured["boundary_N"])
    results["manifest"]["quick"] = True  # quick: class PCA only
    assert [c.name for c in pt.claims(results)] == ["phase_boundary[K=1, class PCA = P0 network optimum]"]


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
