"""Sanity check of benchmarks/_diffusionlab_runner.py against a dense NumPy reference.

Run in the diffusionlab venv (numpy is the only import besides the runner,
which is invoked as a subprocess with the same interpreter)::

    .venv-bench-dl/bin/python benchmarks/_check_diffusionlab_runner.py

Reference, for x_t = alpha x0 + sigma eps and x0 ~ sum_k w_k N(mu_k, Sigma_k):
    post_k  ∝ w_k N(x_t; alpha mu_k, alpha^2 Sigma_k + sigma^2 I)
    E[x0|x_t] = sum_k post_k [mu_k + alpha Sigma_k (alpha^2 Sigma_k + sigma^2 I)^{-1} (x_t - alpha mu_k)]
computed in float64 with dense n x n matrices.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_diffusionlab_runner.py")

ALPHA_SIGMA = {
    "flow_matching": lambda t: (1.0 - t, t),
    "vp": lambda t: (np.sqrt(1.0 - t**2), t),
    "ve": lambda t: (np.ones_like(t), t),
}


def dense_x0(x_t, alpha, sigma, means, factors, weights):
    """E[x0 | x_t] per sample, float64, dense covariances. alpha/sigma: (B,)."""
    x_t = np.asarray(x_t, np.float64)
    means = np.asarray(means, np.float64)
    factors = np.asarray(factors, np.float64)
    weights = np.asarray(weights, np.float64)
    K, n, _ = factors.shape
    covs = np.einsum("kid,kjd->kij", factors, factors)
    out = np.empty_like(x_t)
    for i, (x, a, s) in enumerate(zip(x_t, alpha, sigma)):
        logp = np.empty(K)
        cond = np.empty((K, n))
        for k in range(K):
            C = a**2 * covs[k] + s**2 * np.eye(n)
            r = x - a * means[k]
            Cinv_r = np.linalg.solve(C, r)
            _, logdet = np.linalg.slogdet(C)
            logp[k] = np.log(weights[k]) - 0.5 * (r @ Cinv_r + logdet + n * np.log(2 * np.pi))
            cond[k] = means[k] + a * covs[k] @ Cinv_r
        p = np.exp(logp - logp.max())
        p /= p.sum()
        out[i] = p @ cond
    return out


def make_case(rng, B, n, K, d, *, zero_means, uniform, orthonormal, process):
    if orthonormal:
        factors = np.stack([np.linalg.qr(rng.standard_normal((n, d)))[0] for _ in range(K)])
    else:
        factors = rng.standard_normal((K, n, d)) * rng.uniform(0.5, 2.0, size=(K, 1, d))
    means = np.zeros((K, n)) if zero_means else rng.standard_normal((K, n))
    weights = np.full(K, 1.0 / K) if uniform else rng.dirichlet(np.ones(K))
    t = rng.uniform(0.05, 0.95, size=B)
    alpha, sigma = ALPHA_SIGMA[process](t)
    comp = rng.choice(K, size=B, p=weights)
    x0 = means[comp] + np.einsum("bnd,bd->bn", factors[comp], rng.standard_normal((B, d)))
    x_t = alpha[:, None] * x0 + sigma[:, None] * rng.standard_normal((B, n))
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return dict(
        x_t=f32(x_t), t=f32(t), means=f32(means), factors=f32(factors),
        weights=f32(weights), process=np.asarray(process), n_repeats=np.asarray(2),
    )


def run_runner(inputs, tmp):
    inp, outp = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
    np.savez(inp, **inputs)
    subprocess.run([sys.executable, RUNNER, inp, outp], check=True)
    with np.load(outp) as f:
        return {k: f[k] for k in f.files}


def check(name, inputs, tmp, rtol):
    res = run_runner(inputs, tmp)
    t = inputs["t"].astype(np.float64)
    a_ref, s_ref = ALPHA_SIGMA[str(inputs["process"])](t)
    assert np.allclose(res["alpha"], a_ref, rtol=1e-6, atol=1e-6), "alpha mismatch"
    assert np.allclose(res["sigma"], s_ref, rtol=1e-6, atol=1e-6), "sigma mismatch"
    ref_per = dense_x0(inputs["x_t"], res["alpha"], res["sigma"],
                       inputs["means"], inputs["factors"], inputs["weights"])
    B = t.shape[0]
    ref_sh = dense_x0(inputs["x_t"], np.full(B, res["alpha_shared"]), np.full(B, res["sigma_shared"]),
                      inputs["means"], inputs["factors"], inputs["weights"])
    ok = True
    for label, got, ref in [("per-sample t", res["x0_per_sample"], ref_per),
                            ("shared t", res["x0_shared"], ref_sh)]:
        err = np.max(np.abs(got - ref)) / max(1.0, np.max(np.abs(ref)))
        status = "OK" if err < rtol else "FAIL"
        ok &= err < rtol
        print(f"  {name:38s} {label:13s} max rel err {err:.2e}  {status}")
    return ok


def main():
    rng = np.random.default_rng(0)
    B, n, K, d = 64, 20, 3, 4
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for process in ("flow_matching", "vp", "ve"):
            inputs = make_case(rng, B, n, K, d, zero_means=True, uniform=True,
                               orthonormal=True, process=process)
            ok &= check(f"{process}: orthonormal, mu=0, uniform", inputs, tmp, rtol=1e-4)
        inputs = make_case(rng, B, n, K, d, zero_means=False, uniform=False,
                           orthonormal=False, process="flow_matching")
        # Looser: Sigma_k eigenvalues up to ~80 here, so at t~0.05 the float32
        # Woodbury step in diffusionlab ((1/sigma^2) * (xbar - U lstsq(...)))
        # cancels catastrophically (cond ~ 1e4 -> rel err ~ 1e-3).  The same
        # function under jax_enable_x64 matches this reference to ~1e-12.
        ok &= check("flow_matching: general U, mu, w", inputs, tmp, rtol=1e-2)
    print("ALL OK" if ok else "SOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
