"""Sweep-only study of the exact denoiser, by sampling (see :mod:`molrg.study.sweep`).

``optimal_snr`` -- SNR (docs/theory.md section 5), MSE and Bayes accuracy of the exact optimal
denoiser's outputs by sampling the model: static ``n, K, d, num_samples``; numeric
``sigma, delta, seed``. The memorising (empirical) denoiser's SNR next to the exact one's,
over N, is the sweep ``memorization`` of :mod:`molrg.experiments.memorization`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

import molrg
from molrg import metrics
from molrg.study import sweepable


def _check_shape_fields(cfg, names):
    for f in names:
        if getattr(cfg, f) < 1:
            raise ValueError(f"{f}: must be >= 1; got {getattr(cfg, f)}")
    if cfg.K * cfg.d > cfg.n:
        raise ValueError(f"d: need K * d <= n for orthogonal subspaces; got {cfg.K} * {cfg.d} > {cfg.n}")
    if cfg.sigma <= 0:
        raise ValueError(f"sigma: must be > 0; got {cfg.sigma}")
    if cfg.delta < 0:
        raise ValueError(f"delta: must be >= 0; got {cfg.delta}")


@dataclasses.dataclass(frozen=True)
class OptimalSNRConfig:
    n: int = 50  # ambient dimension
    K: int = 3  # number of classes (subspaces)
    d: int = 5  # dimension of each class's subspace
    num_samples: int = 4000  # model samples per point
    sigma: float = 0.3  # noise level
    delta: float = 0.2  # scale of the class-irrelevant detail on the other subspaces
    seed: int = 0  # PRNG seed of the mixture, samples and noise

    def validate(self):
        _check_shape_fields(self, ("n", "K", "d", "num_samples"))


def _optimal_point(cfg: OptimalSNRConfig, v):
    k_mix, k_x, k_eps = jax.random.split(jax.random.key(v["seed"]), 3)
    mix = molrg.random_molrg(k_mix, n=cfg.n, K=cfg.K, d=cfg.d, delta=v["delta"])
    x0, labels = mix.sample(k_x, cfg.num_samples)
    xt = x0 + v["sigma"] * jax.random.normal(k_eps, x0.shape, x0.dtype)
    xh, post = molrg.denoise(mix, xt, v["sigma"], return_posterior=True)
    return {"snr": metrics.snr(xh, labels, mix),
            "mse": jnp.mean(jnp.sum((xh - x0) ** 2, axis=1)),
            "bayes_accuracy": jnp.mean((jnp.argmax(post, axis=1).astype(labels.dtype) == labels).astype(xh.dtype))}


OPTIMAL_SNR = sweepable("optimal_snr", summary="SNR of the exact optimal denoiser, by sampling",
                   config=OptimalSNRConfig(), static=("n", "K", "d", "num_samples"),
                   numeric=("sigma", "delta", "seed"), point=_optimal_point)


EXPERIMENT = None  # sweep-only: `molrg sweep optimal_snr`
SWEEPABLES = (OPTIMAL_SNR,)
