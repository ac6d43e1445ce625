"""Sweep-only studies of the exact and memorising denoisers, by sampling (see :mod:`molrg.study.sweep`).

* ``optimal_snr`` -- SNR (THEORY section 5) of the exact optimal denoiser's outputs by
  sampling the model: static ``n, K, d, num_samples``; numeric ``sigma, delta, seed``.
* ``empirical_snr`` -- the memorising (empirical) optimal denoiser built on N training
  samples: SNR of its outputs for fresh test inputs and for noised training inputs, next
  to the exact denoiser's: static ``n, K, d, N, num_test``; numeric ``sigma, delta, seed``.
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
    n: int = 50
    K: int = 3
    d: int = 5
    num_samples: int = 4000
    sigma: float = 0.3
    delta: float = 0.2
    seed: int = 0

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


@dataclasses.dataclass(frozen=True)
class EmpiricalSNRConfig:
    n: int = 50
    K: int = 3
    d: int = 5
    N: int = 300
    num_test: int = 2000
    sigma: float = 0.3
    delta: float = 0.2
    seed: int = 0

    def validate(self):
        _check_shape_fields(self, ("n", "K", "d", "N", "num_test"))


def _empirical_point(cfg: EmpiricalSNRConfig, v):
    k_mix, k_tr, k_te, k_e1, k_e2 = jax.random.split(jax.random.key(v["seed"]), 5)
    mix = molrg.random_molrg(k_mix, n=cfg.n, K=cfg.K, d=cfg.d, delta=v["delta"])
    train, train_labels = mix.sample(k_tr, cfg.N)
    x0, labels = mix.sample(k_te, cfg.num_test)
    sigma = v["sigma"]
    xt = x0 + sigma * jax.random.normal(k_e1, x0.shape, x0.dtype)
    xt_train = train + sigma * jax.random.normal(k_e2, train.shape, train.dtype)
    emp_test = molrg.empirical_denoise(train, xt, sigma, chunk_size=min(cfg.N, 1024))
    emp_train = molrg.empirical_denoise(train, xt_train, sigma, chunk_size=min(cfg.N, 1024))
    exact = molrg.denoise(mix, xt, sigma)
    return {"snr_empirical_test": metrics.snr(emp_test, labels, mix),
            "snr_empirical_train": metrics.snr(emp_train, train_labels, mix),
            "snr_exact": metrics.snr(exact, labels, mix),
            "mse_empirical_test": jnp.mean(jnp.sum((emp_test - x0) ** 2, axis=1)),
            "mse_exact": jnp.mean(jnp.sum((exact - x0) ** 2, axis=1))}


EMPIRICAL_SNR = sweepable("empirical_snr", summary="SNR of the memorising (empirical) denoiser vs the exact one",
                   config=EmpiricalSNRConfig(), static=("n", "K", "d", "N", "num_test"),
                   numeric=("sigma", "delta", "seed"), point=_empirical_point)


EXPERIMENT = None  # sweep-only: `molrg sweep optimal_snr|empirical_snr`
SWEEPABLES = (OPTIMAL_SNR, EMPIRICAL_SNR)
