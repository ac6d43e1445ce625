"""The phase-transition and memorisation studies: pieces against independent references,
masking against the unmasked computation, both experiments end to end, and their claims.

The quick experiments and the quick claims use the same static sweep values, so the module
compiles each sweep program once (the engine caches compiled group functions).
"""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

import molrg
from molrg import metrics
from molrg.checks import Claim
from molrg.experiments import memorization as mem
from molrg.experiments import phase_transition as pt
from molrg.sample_quality import subspace_recovery_error
from molrg.networks import SubspaceDenoiser
from molrg.runner import load_results, run_experiment
from molrg.sweep import run_sweep


def _orthonormal(key, n, r):
    return jnp.linalg.qr(jax.random.normal(key, (n, r)))[0]


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


def test_pca_masked_equals_unmasked_and_numpy_svd():
    n, N, N_max, d, d_max = 12, 6, 9, 3, 4
    U = _orthonormal(jax.random.key(1), n, d)
    x = jax.random.normal(jax.random.key(2), (N, d)) @ U.T
    x = x + 0.05 * jax.random.normal(jax.random.key(3), (N, n))  # not exactly low rank
    padded = jnp.concatenate([x, jnp.zeros((N_max - N, n))])
    w = (jnp.arange(N_max) < N).astype(x.dtype)
    cols = (jnp.arange(d_max) < d).astype(x.dtype)
    got_masked = np.asarray(pt.pca(padded, w, cols))
    got_plain = np.asarray(pt.pca(x, jnp.ones((N,)), cols))
    _, _, vt = np.linalg.svd(np.asarray(x), full_matrices=False)  # independent reference
    ref = vt[:d].T
    for got in (got_masked, got_plain):
        assert np.all(got[:, d:] == 0)
        np.testing.assert_allclose(got[:, :d].T @ got[:, :d], np.eye(d), atol=1e-12)
        np.testing.assert_allclose(got[:, :d] @ got[:, :d].T, ref @ ref.T, atol=1e-10)


def test_pca_float32_keeps_an_ill_conditioned_direction():
    # N = d with a weak direction (singular value ratio 1e-4): eigh of X^T X in float32 loses it
    # (relative eigenvalue 1e-8 < float32 eps), the QR route must not.
    n, d = 48, 5
    U = np.asarray(_orthonormal(jax.random.key(4), n, d))
    A = np.diag([1.0, 0.8, 0.5, 0.3, 1e-4]) @ np.asarray(_orthonormal(jax.random.key(5), d, d)).T
    x = jnp.asarray(A @ U.T, jnp.float32)
    ones = jnp.ones((d,), jnp.float32)
    # also with padding rows (weight 0) ahead of the data, as in a pooled K-class sample
    padded = jnp.concatenate([jnp.zeros((10, n), jnp.float32), x])
    w = jnp.concatenate([jnp.zeros((10,), jnp.float32), ones])
    for got in (pt.pca(x, ones, ones), pt.pca(padded, w, ones)):
        got = np.asarray(got, np.float64)
        err = np.linalg.norm(got @ got.T - U @ U.T) / math.sqrt(2 * d)
        assert err < 1e-2


def test_subspace_error_matches_library_reference():
    K, n, d, d_max = 3, 14, 2, 3
    true = jnp.stack([_orthonormal(k, n, d_max) for k in jax.random.split(jax.random.key(6), K)])
    est = jnp.stack([_orthonormal(k, n, d_max) for k in jax.random.split(jax.random.key(7), K)])
    # make the estimate a noisy, block-permuted version of the truth
    est = jnp.stack([jnp.linalg.qr(true[p] + 0.3 * est[i])[0] for i, p in enumerate([2, 0, 1])])
    cols = (jnp.arange(d_max) < d).astype(true.dtype)
    got = float(pt.subspace_error(est, true, cols))
    ref = subspace_recovery_error([np.asarray(e[:, :d]) for e in est],
                                  [np.asarray(t[:, :d]) for t in true])
    np.testing.assert_allclose(got, ref.error / math.sqrt(2 * K * d), rtol=1e-10)
    assert float(pt.subspace_error(true, true, cols)) < 1e-7
    assert 0.0 < got < 1.0


def test_k_subspaces_masked_equals_unmasked_and_recovers():
    K, n, d, d_max, N, N_max = 2, 16, 2, 3, 6, 8
    bases, x, cols, rows = pt.draw_problem(jax.random.key(8), n=n, K=K, d=d, N=N, d_max=d_max, N_max=N_max)
    ksub = jax.jit(lambda x, w, key: pt.k_subspaces(x, w, cols, key=key, K=K, restarts=4, iterations=8))
    masked = ksub(x.reshape(K * N_max, n), jnp.tile(rows, K), jax.random.key(9))
    plain = ksub(x[:, :N].reshape(K * N, n), jnp.ones((K * N,)), jax.random.key(9))
    proj = lambda U: np.einsum("knd,kmd->knm", np.asarray(U), np.asarray(U))  # noqa: E731
    np.testing.assert_allclose(proj(masked), proj(plain), atol=1e-8)
    assert float(pt.subspace_error(masked, bases, cols)) < 1e-8  # N = d + 4: recovered exactly


def test_network_masked_training_equals_unmasked():
    K, n, d, N, N_max = 2, 12, 2, 3, 5
    _, x, _, rows = pt.draw_problem(jax.random.key(10), n=n, K=K, d=d, N=N, d_max=d, N_max=N_max)
    X = x.reshape(K * N_max, n)
    W = jnp.tile(rows, K)
    valid = np.flatnonzero(np.asarray(W) > 0)
    net = SubspaceDenoiser(n=n, K=K, d=d)
    params = net.init(jax.random.key(11), dtype=X.dtype)
    noise_key = jax.random.key(12)

    def padded_noise(i):
        return pt.log_uniform_noise(jax.random.fold_in(noise_key, i), K * N_max, n, 0.01, 0.3, X.dtype)

    def plain_noise(i):
        eps, sigma = padded_noise(i)
        return eps[valid], sigma[valid]

    run = jax.jit(lambda x0, w, p, masked: pt.train_network(
        net, x0, w, p, padded_noise if masked else plain_noise, steps=60, learning_rate=1e-2),
        static_argnums=3)
    a = run(X, W, params, True)
    b = run(X[valid], jnp.ones((len(valid),)), params, False)
    np.testing.assert_allclose(np.asarray(a["A"]), np.asarray(b["A"]), rtol=1e-9, atol=1e-12)
    assert not np.allclose(np.asarray(a["A"]), np.asarray(params["A"]))  # it did train


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
# Memorisation: pieces against the library.
# ------------------------------------------------------------------------------------------
def test_memorization_pieces_match_library():
    n, K, d, d_max, delta, sigma = 20, 3, 2, 4, 0.3, 0.4
    base_mix = molrg.random_molrg(jax.random.key(20), n=n, K=K, d=d_max)
    bases = jnp.stack(base_mix.bases)
    cols = (jnp.arange(d_max) < d).astype(bases.dtype)
    mix = molrg.MoLRG([b[:, :d] for b in base_mix.bases], delta=delta)  # the masked model, explicitly
    x0, labels = mix.sample(jax.random.key(21), 300)
    xt = x0 + sigma * jax.random.normal(jax.random.key(22), x0.shape)
    out = molrg.denoise(mix, xt, sigma)
    np.testing.assert_allclose(jax.jit(mem.exact_denoise_masked)(bases, cols, delta, xt, sigma), out,
                               atol=1e-10)
    np.testing.assert_allclose(jax.jit(mem.snr_masked)(out, labels, jnp.ones((300,)), bases, cols),
                               metrics.snr(out, labels, mix), rtol=1e-10)
    train, _ = mix.sample(jax.random.key(23), 50)
    w = (jnp.arange(50) < 37).astype(train.dtype)
    np.testing.assert_allclose(jax.jit(mem.empirical_denoise_masked)(train, w, xt, sigma),
                               molrg.empirical_denoise(train[:37], xt, sigma), atol=1e-10)


def test_sample_masked_has_the_class_energies():
    """E||U_k^T x||^2 = d on the own class and delta^2 d on every other class (MC, 5 SE)."""
    n, K, d, d_max, delta, num = 20, 3, 2, 4, 0.3, 6000
    bases = jnp.stack(molrg.random_molrg(jax.random.key(24), n=n, K=K, d=d_max).bases)
    cols = (jnp.arange(d_max) < d).astype(bases.dtype)
    x, labels = mem.sample_masked(jax.random.key(25), bases, cols, delta, num)
    x, labels = np.asarray(x), np.asarray(labels)
    B = np.asarray(bases)
    assert np.allclose(x - sum(x @ B[k, :, :d] @ B[k, :, :d].T for k in range(K)), 0, atol=1e-12)
    for k in range(K):
        for l in range(K):
            e = np.sum((x[labels == k] @ B[l, :, :d]) ** 2, axis=1)
            want = d if k == l else delta**2 * d
            assert abs(e.mean() - want) < 5 * e.std() / math.sqrt(len(e))
    assert abs(np.mean(labels == 0) - 1 / K) < 5 * math.sqrt(1 / K * (1 - 1 / K) / num)


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


def test_claims_return_claims():
    from molrg import check_sweeps

    claims = check_sweeps.phase_boundary(True) + check_sweeps.memorization_shape(True)
    assert len(claims) == 3
    for c in claims:
        assert isinstance(c, Claim) and isinstance(c.passed, bool) and c.measured and c.tolerance
