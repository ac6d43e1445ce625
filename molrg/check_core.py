"""Core claims: the exact denoiser is the conditional mean, and the score obeys Tweedie."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm

import molrg
from molrg.checks import Claim, check


def _general_mixture(key):
    k1, k2 = jax.random.split(key)
    return molrg.random_molrg(k1, n=16, K=3, d=3, delta=0.3, noise=0.05, angle=30.0,
                              weights=jnp.asarray([0.5, 0.2, 0.3]),
                              means=0.5 * jax.random.normal(k2, (3, 16)))


@check("conditional_mean")
def conditional_mean(quick: bool):
    """Orthogonality principle E[(x0 - xhat) g(x_t)] = 0 and MSE minimality, by Monte Carlo."""
    claims = []
    num = 40_000 if quick else 200_000
    for label, mix in (("P1 setting (K=3, n=50, d=5, delta=0.2)", molrg.paper_molrg(jax.random.key(0))),
                       ("general (30 deg overlap, means, weights, eta)", _general_mixture(jax.random.key(1)))):
        k1, k2 = jax.random.split(jax.random.key(2))
        x0, _ = mix.sample(k1, num)
        sigma = 0.5
        xt = x0 + sigma * jax.random.normal(k2, x0.shape, x0.dtype)
        err = x0 - molrg.denoise(mix, xt, sigma)
        g = jnp.concatenate([xt[:, :4], jnp.tanh(xt[:, 4:6]), molrg.posterior(mix, xt, sigma)], axis=1)
        prods = np.asarray(err[:, :, None] * g[:, None, :]).reshape(num, -1)
        z = prods.mean(0) / (prods.std(0) / np.sqrt(num))
        m = z.size
        bound = float(norm.isf(0.001 / (2 * m)))  # Bonferroni: family-wise 0.1% false alarm
        d_mse = np.asarray(jnp.sum((err - 0.1 * jnp.tanh(xt)) ** 2, 1) - jnp.sum(err**2, 1))
        t_mse = float(d_mse.mean() / (d_mse.std() / np.sqrt(num)))
        claims.append(Claim(
            f"conditional_mean[{label}]",
            "E[x0|x_t] is the conditional mean: its error is uncorrelated with functions of x_t, "
            "and perturbing it raises the MSE",
            {"samples": num, "max_abs_z_orthogonality": float(np.max(np.abs(z))), "statistics": m,
             "mse_increase_z": t_mse},
            f"max |z| < {bound:.2f} (Bonferroni, 0.1% family-wise) and MSE increase z > 3",
            bool(np.max(np.abs(z)) < bound and t_mse > 3)))
    return claims


def _dense_log_density(mix, sigma, scale):
    """log p_t written from the definition with dense covariances (independent of molrg)."""
    n = mix.n
    bases = [np.asarray(b, np.float64) for b in mix.bases]
    delta, eta = float(mix.delta), float(mix.noise)
    covs = []
    for k, Uk in enumerate(bases):
        others = np.concatenate([b for j, b in enumerate(bases) if j != k], axis=1)
        u, s, _ = np.linalg.svd(others, full_matrices=False)
        Ut = u[:, s > 1e-9]
        covs.append(Uk @ Uk.T + delta**2 * Ut @ Ut.T + (eta**2 + sigma**2) * np.eye(n))
    means = np.zeros((mix.K, n)) if mix.means is None else np.asarray(mix.means, np.float64)
    logw = np.log(np.asarray(mix.weights, np.float64))

    def logp(x):
        terms = []
        for k in range(mix.K):
            C = scale**2 * jnp.asarray(covs[k])
            diff = x - scale * jnp.asarray(means[k])
            terms.append(logw[k] - 0.5 * (jnp.linalg.slogdet(C)[1] + diff @ jnp.linalg.solve(C, diff)
                                         + n * jnp.log(2 * jnp.pi)))
        return jax.nn.logsumexp(jnp.stack(terms))

    return logp


@check("tweedie")
def tweedie(quick: bool):
    """score == grad log p_t, by autodiff of an independently written density (float64)."""
    with jax.enable_x64(True):
        mix = _general_mixture(jax.random.key(3))
        mix = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), mix)
        worst = 0.0
        for sigma, scale in ((0.02, 1.0), (0.5, 0.8), (5.0, 0.2)):
            x0, _ = mix.sample(jax.random.key(4), 16)
            xt = scale * (x0 + sigma * jax.random.normal(jax.random.key(5), x0.shape, jnp.float64))
            ref = jax.vmap(jax.grad(_dense_log_density(mix, sigma, scale)))(xt)
            got = molrg.score(mix, xt, sigma, scale)
            worst = max(worst, float(jnp.max(jnp.abs(got - ref)) / jnp.max(jnp.abs(ref))))
    return [Claim("tweedie", "the score equals the gradient of log p_t (Tweedie), general mixture",
                  {"max_relative_error": worst, "sigmas": [0.02, 0.5, 5.0]}, "< 1e-8 (float64)",
                  worst < 1e-8)]
