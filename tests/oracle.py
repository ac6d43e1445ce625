"""Independent dense references for the tests: explicit n x n covariances, SciPy densities.

Nothing here uses molrg's frame/Woodbury algebra: the class covariance is built from its
definition (docs/theory.md section 2) with an SVD for the other classes' span.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import multivariate_normal


def class_covariances(mix) -> list[np.ndarray]:
    """``Sigma_k = U_k U_k^T + delta^2 Ut_k Ut_k^T + eta^2 I`` as dense float64 matrices."""
    n = mix.n
    bases = [np.asarray(b, np.float64) for b in mix.bases]
    delta, eta = float(mix.delta), float(mix.noise)
    covs = []
    for k, Uk in enumerate(bases):
        others = [b for l, b in enumerate(bases) if l != k]
        if others:
            O = np.concatenate(others, axis=1)
            u, s, _ = np.linalg.svd(O, full_matrices=False)
            Ut = u[:, s > 1e-9]
        else:
            Ut = np.zeros((n, 0))
        covs.append(Uk @ Uk.T + delta**2 * Ut @ Ut.T + eta**2 * np.eye(n))
    return covs


def class_means(mix) -> np.ndarray:
    return np.zeros((mix.K, mix.n)) if mix.means is None else np.asarray(mix.means, np.float64)


def dense_posterior_and_denoise(mix, x_t, sigma, scale=1.0):
    """p(k|x_t) and E[x0|x_t] by explicit covariances; sigma/scale scalar or per sample."""
    x = np.asarray(x_t, np.float64)
    B = x.shape[0]
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (B,))
    sc = np.broadcast_to(np.asarray(scale, np.float64), (B,))
    covs, mus = class_covariances(mix), class_means(mix)
    w = np.asarray(mix.weights, np.float64)
    logp = np.zeros((B, mix.K))
    cond = np.zeros((B, mix.K, mix.n))
    eye = np.eye(mix.n)
    for b in range(B):
        for k in range(mix.K):
            C = covs[k] + sig[b] ** 2 * eye
            logp[b, k] = np.log(w[k]) + multivariate_normal(sc[b] * mus[k], sc[b] ** 2 * C).logpdf(x[b])
            cond[b, k] = mus[k] + covs[k] @ np.linalg.solve(C, x[b] / sc[b] - mus[k])
    logp -= logp.max(axis=1, keepdims=True)
    post = np.exp(logp)
    post /= post.sum(axis=1, keepdims=True)
    return post, np.einsum("bk,bkn->bn", post, cond)


def make_log_density(mix, sigma, scale=1.0):
    """An independently written ``log p_t(x)`` (jnp, dense) for autodiff checks."""
    covs = [jnp.asarray(c) for c in class_covariances(mix)]
    mus = jnp.asarray(class_means(mix))
    logw = jnp.log(jnp.asarray(np.asarray(mix.weights, np.float64)))
    n = mix.n

    def log_density(x):
        terms = []
        for k in range(mix.K):
            C = scale**2 * (covs[k] + sigma**2 * jnp.eye(n))
            diff = x - scale * mus[k]
            _, logdet = jnp.linalg.slogdet(C)
            quad = diff @ jnp.linalg.solve(C, diff)
            terms.append(logw[k] - 0.5 * (logdet + quad + n * jnp.log(2 * jnp.pi)))
        return jax.nn.logsumexp(jnp.stack(terms))

    return log_density


def same_exactly(a, b) -> bool:
    """Equal values of equal types (list and tuple alike), NaN equal to NaN; no tolerance."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_exactly(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_exactly(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    return (isinstance(a, float) and math.isnan(a) and math.isnan(b)) or a == b


def random_test_mixture(seed, K, d, delta, noise, overlap, with_means):
    """The random valid MoLRG of the property tests (n = d (K + 1) + 2, float64): Dirichlet
    weights floored at 0.05, optional means, and subspaces at 40 degrees when ``overlap``."""
    import molrg

    n = d * (K + 1) + 2
    keys = jax.random.split(jax.random.key(seed), 3)
    w = np.asarray(jax.random.dirichlet(keys[1], jnp.ones(K) * 2.0), np.float64) + 0.05
    w = w / w.sum()
    means = 0.5 * jax.random.normal(keys[2], (K, n), jnp.float64) if with_means else None
    angle = 40.0 if (overlap and K > 1) else None
    return molrg.random_molrg(keys[0], n=n, K=K, d=d, delta=delta, noise=noise, weights=w,
                              angle=angle, means=means)


def run_keeping_results(exp, **kwargs):
    """``molrg.study.run_experiment(exp, **kwargs)``, also returning what ``run`` returned in
    memory, in the form :func:`molrg.study.load_results` gives (the reference for round trips)."""
    import dataclasses

    from molrg import study

    memory = {}

    def run(cfg, verbose=True):
        res = exp.run(cfg, verbose=verbose)
        memory.update(manifest={"config": dataclasses.asdict(cfg)}, scalars=res.scalars, tables=res.tables,
                      arrays=res.arrays)
        return res

    return study.run_experiment(dataclasses.replace(exp, run=run), **kwargs), memory
