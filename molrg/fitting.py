"""Fitting a MoLRG to labelled data: the bridge from the theory to real data (THEORY section 9).

:func:`fit_molrg` estimates, from points ``x_i`` with labels ``y_i``, a mixture of low-rank
Gaussians by moment estimators (C_k = the centred class-k covariance, P_k = U_k U_k^T, P_o,k the
projector onto the span of the *other* classes' bases, P_U onto the union of all of them, r_U
its dimension, R_k onto the part of span(others) orthogonal to U_k, m_k = rank R_k):

* ``pi_k`` = class frequencies; ``mu_k`` = class means;
* ``U_k`` = top-``d_k`` eigenvectors of ``C_k``; ``d_k`` given, or the smallest rank whose
  eigenvalues hold at least ``energy`` of ``tr C_k`` (explained-energy rule);
* ``eta^2 = sum_k pi_k tr((I - P_U) C_k) / (n - r_U)`` (residual energy outside the union,
  per dimension; 0 when the union spans R^n: then eta and delta are not separable and all
  off-subspace energy is attributed to delta);
* ``delta^2 = sum_k pi_k (tr(R_k C_k) - eta^2 m_k) / sum_k pi_k tr(R_k P_o,k)`` (class-k energy
  in the other classes' span off its own subspace, per unit of model energy there; clipped at 0);
* ``s = sum_k pi_k (tr(P_k C_k) - delta^2 tr(P_k P_o,k) - eta^2 d_k) / sum_k pi_k d_k``, the
  energy per dimension inside the own subspace.

Under the model ``C_k = s U_k U_k^T + delta^2 P_o,k + eta^2 I`` these estimators are exact given
the subspaces (each trace equation is linear in ``(s, delta^2, eta^2)``). A MoLRG fixes unit
variance inside each ``U_k``, so the fitted :class:`molrg.MoLRG` lives in *model units*
``x / c`` with ``c = sqrt(s)``: its ``delta = delta / c``, ``noise = eta / c``, ``means = mu / c``.
:meth:`MoLRGFit.denoise` and :meth:`MoLRGFit.log_posterior` take data-unit inputs.

:func:`fit_report` says how well the fit matches held-out data: per-class explained energy,
mean held-out log-likelihood under the fit and under a full-covariance Gaussian mixture with the
same weights and means, and which of P1's Assumption 1 the data break (non-orthogonal subspaces
with their principal angles, unequal ranks, non-zero means). :func:`bootstrap_fits` refits on
class-stratified resamples (the fit's uncertainty).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from molrg.mixture import MoLRG
from molrg.posterior import denoise as _denoise, log_posterior as _log_posterior
from molrg.subspaces import principal_angles
from molrg._validate import check_key, fail

__all__ = ["MoLRGFit", "FitReport", "fit_molrg", "fit_report", "bootstrap_fits"]


@dataclasses.dataclass(frozen=True)
class MoLRGFit:
    """A MoLRG fitted to labelled data (see the module docstring for the estimators).

    Attributes:
      mix: the fitted :class:`molrg.MoLRG`, in model units ``x / scale``.
      scale: ``c = sqrt(s)``, the data-unit std per dimension inside a class subspace.
      ranks: ``(K,)`` tuple of the fitted ranks ``d_k``.
      weights: ``(K,)`` class frequencies.
      means: ``(K, n)`` class means (data units).
      delta: fitted delta in model units (comparable with P1's delta).
      noise: fitted eta in model units.
      explained_energy: ``(K,)`` fraction of class-k centred energy in its fitted subspace.
      union_rank: dimension of the union of the fitted subspaces.
      class_covariances: ``(K, n, n)`` empirical centred class covariances (float64).
      num_samples: ``(K,)`` training points per class.
    """

    mix: MoLRG
    scale: float
    ranks: tuple
    weights: np.ndarray
    means: np.ndarray
    delta: float
    noise: float
    explained_energy: np.ndarray
    union_rank: int
    class_covariances: np.ndarray
    num_samples: np.ndarray

    @property
    def K(self) -> int:
        return len(self.ranks)

    @property
    def n(self) -> int:
        return int(self.means.shape[1])

    def covariances(self) -> np.ndarray:
        """``(K, n, n)`` fitted class covariances in data units, ``c^2 Sigma_k`` (float64)."""
        bases = [np.asarray(b, np.float64) for b in self.mix.bases]
        out = []
        for k, Uk in enumerate(bases):
            Po = _span_projector([b for j, b in enumerate(bases) if j != k], self.n)
            out.append(Uk @ Uk.T + self.delta**2 * Po + self.noise**2 * np.eye(self.n))
        return self.scale**2 * np.stack(out)

    def denoise(self, x_t, sigma, scale=1.0):
        """Exact ``E[x_0 | x_t]`` of the fitted model, in data units.

        ``x_t = scale (x_0 + sigma eps)`` in data units is ``x_t / c = scale (x_0 / c +
        (sigma / c) eps)`` in model units, so this is ``c * molrg.denoise(mix, x_t / c,
        sigma / c, scale)``. Args and shapes as :func:`molrg.denoise`.
        """
        c = jnp.asarray(self.scale, self.mix.dtype)
        return c * _denoise(self.mix, jnp.asarray(x_t) / c, jnp.asarray(sigma) / c, scale)

    def log_posterior(self, x_t, sigma, scale=1.0):
        """``log p(k | x_t)`` of the fitted model for data-unit ``x_t``: ``(..., K)``."""
        c = jnp.asarray(self.scale, self.mix.dtype)
        return _log_posterior(self.mix, jnp.asarray(x_t) / c, jnp.asarray(sigma) / c, scale)


@dataclasses.dataclass(frozen=True)
class FitReport:
    """How well a :class:`MoLRGFit` matches data (:func:`fit_report`).

    Attributes:
      explained_energy: ``(K,)`` fraction of class-k training energy in its fitted subspace.
      loglik_molrg: mean held-out log-likelihood (nats per point) under the fitted MoLRG.
      loglik_gmm: the same under the full-covariance Gaussian mixture (empirical class
        covariances, same weights and means).
      ridge: the ridge added to every covariance of both densities.
      principal_angles_deg: ``(K, K)`` smallest principal angle between class subspaces, degrees
        (diagonal 0).
      largest_cosine: the largest cosine of a principal angle over class pairs (0: orthogonal).
      orthogonal: whether every principal angle is within 1 degree of 90.
      equal_ranks: whether all fitted ranks are equal.
      mean_separation: ``(K, K)`` distance between class means over the rms within-class
        distance ``sqrt(tr C_k + tr C_l)`` (about 1 or more: well separated).
      zero_means: whether every class mean is within 3 standard errors of the global mean.
      broken: the list of P1 Assumption-1 items the data break.
    """

    explained_energy: np.ndarray
    loglik_molrg: float
    loglik_gmm: float
    ridge: float
    principal_angles_deg: np.ndarray
    largest_cosine: float
    orthogonal: bool
    equal_ranks: bool
    mean_separation: np.ndarray
    zero_means: bool
    broken: tuple


# ----------------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------------
def _check_data(x, labels, num_classes):
    xa = np.asarray(x)
    if xa.ndim != 2 or xa.shape[0] < 1 or xa.shape[1] < 1:
        fail("x", f"must be a non-empty 2-D array (N, n); got shape {xa.shape}")
    if not (np.issubdtype(xa.dtype, np.floating) or np.issubdtype(xa.dtype, np.integer)) \
            or xa.dtype == bool:
        fail("x", f"must hold real numbers; got dtype {xa.dtype}")
    if not np.all(np.isfinite(xa)):
        fail("x", "must contain only finite values (no NaN or inf)")
    ya = np.asarray(labels)
    if ya.shape != (xa.shape[0],):
        fail("labels", f"must have shape (N,) = ({xa.shape[0]},); got {ya.shape}")
    if not np.issubdtype(ya.dtype, np.integer) or ya.dtype == bool:
        fail("labels", f"must be integers; got dtype {ya.dtype}")
    if ya.min() < 0:
        fail("labels", f"must lie in [0, num_classes); got a negative label {ya.min()}")
    if num_classes is None:
        num_classes = int(ya.max()) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        fail("num_classes", f"must be an integer; got {num_classes!r}")
    K = int(num_classes)
    if K < 2:
        fail("num_classes", f"a mixture needs at least 2 classes; got {K} (one class in the labels?)")
    if ya.min() < 0 or ya.max() >= K:
        fail("labels", f"must lie in [0, num_classes) = [0, {K}); got values in [{ya.min()}, {ya.max()}]")
    counts = np.bincount(ya, minlength=K)
    if np.any(counts < 2):
        k = int(np.argmin(counts))
        fail("labels", f"every class needs at least 2 points; class {k} has {counts[k]}")
    return np.asarray(xa, np.float64), ya.astype(np.int64), K, counts


def _check_rank(rank, energy, K, n, counts):
    if rank is None:
        if isinstance(energy, bool) or not (np.isfinite(energy) and 0 < energy <= 1):
            fail("energy", f"must lie in (0, 1]; got {energy!r}")
        return None
    if isinstance(rank, (int, np.integer)) and not isinstance(rank, bool):
        ranks = [int(rank)] * K
    elif isinstance(rank, (list, tuple, np.ndarray)) and len(rank) == K and all(
            isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in rank):
        ranks = [int(r) for r in rank]
    else:
        fail("rank", f"must be None, an int, or one int per class ({K}); got {rank!r}")
    for k, r in enumerate(ranks):
        if not 1 <= r <= n:
            fail("rank", f"must lie in [1, n = {n}]; class {k} has {r}")
        if counts[k] < r + 1:
            fail("rank", f"a rank-{r} subspace of centred points needs at least {r + 1} points; "
                         f"class {k} has {counts[k]} (too few samples for the rank)")
    return ranks


# ----------------------------------------------------------------------------------------------
# Fitting.
# ----------------------------------------------------------------------------------------------
def _span_projector(blocks, n):
    if not blocks:
        return np.zeros((n, n))
    u, s, _ = np.linalg.svd(np.concatenate(blocks, axis=1), full_matrices=False)
    keep = s > 1e-9 * max(1.0, s[0])
    return u[:, keep] @ u[:, keep].T


def _energy_rank(evals, energy, count):
    total = float(np.sum(evals))
    if total <= 0:
        return 1
    frac = np.cumsum(evals) / total
    d = int(np.searchsorted(frac, energy - 1e-12) + 1)
    return max(1, min(d, count - 1, evals.size))


def fit_molrg(x, labels, *, num_classes: int | None = None, rank: int | Sequence[int] | None = None,
              energy: float = 0.9, dtype=None) -> MoLRGFit:
    """Fits a MoLRG to labelled points by moment estimators (module docstring, THEORY section 9).

    Args:
      x: ``(N, n)`` finite real points.
      labels: ``(N,)`` integer classes in ``[0, num_classes)``; every class needs >= 2 points
        (and >= d_k + 1 for a rank-d_k subspace).
      num_classes: K (default ``max(labels) + 1``); at least 2.
      rank: the ranks ``d_k``: one int for all classes, one per class, or None for the
        explained-energy rule.
      energy: with ``rank=None``, ``d_k`` is the smallest rank whose top eigenvalues of ``C_k``
        hold at least this fraction of ``tr C_k`` (capped at ``N_k - 1``); in ``(0, 1]``.
      dtype: floating dtype of the fitted :class:`molrg.MoLRG` (default: JAX's default float).
        The estimation itself runs in float64 NumPy.

    Returns:
      A :class:`MoLRGFit`.

    Raises:
      ValueError: non-2-D or non-finite ``x``; labels of the wrong shape, non-integer or out of
        range; fewer than 2 classes; a class with fewer than 2 points or fewer than ``d_k + 1``;
        a bad ``rank`` or ``energy``; no energy inside the subspaces (``s <= 0``).
    """
    xa, ya, K, counts = _check_data(x, labels, num_classes)
    N, n = xa.shape
    ranks = _check_rank(rank, energy, K, n, counts)
    weights = counts / N
    means = np.stack([xa[ya == k].mean(axis=0) for k in range(K)])
    covs, bases, dims, explained = [], [], [], []
    for k in range(K):
        xc = xa[ya == k] - means[k]
        C = xc.T @ xc / counts[k]
        evals, evecs = np.linalg.eigh(C)
        evals, evecs = np.clip(evals[::-1], 0.0, None), evecs[:, ::-1]
        d = ranks[k] if ranks is not None else _energy_rank(evals, energy, int(counts[k]))
        covs.append(C)
        bases.append(evecs[:, :d])
        dims.append(d)
        tr = float(np.trace(C))
        explained.append(float(np.sum(evals[:d]) / tr) if tr > 0 else 1.0)
    P = [U @ U.T for U in bases]
    P_union = _span_projector(bases, n)
    r_union = int(round(np.trace(P_union)))
    eta2 = 0.0
    if r_union < n:
        eta2 = sum(weights[k] * np.trace((np.eye(n) - P_union) @ covs[k]) for k in range(K)) / (n - r_union)
        # Residual energy at the rounding level of the eigendecomposition is no energy.
        if eta2 <= 1e-10 * float(np.mean([np.trace(C) for C in covs])) / n:
            eta2 = 0.0
    num, den = 0.0, 0.0
    P_other = []
    for k in range(K):
        Po = _span_projector([b for j, b in enumerate(bases) if j != k], n)
        P_other.append(Po)
        R = _span_projector([(np.eye(n) - P[k]) @ Po], n)
        m = float(np.trace(R))
        num += weights[k] * (np.trace(R @ covs[k]) - eta2 * m)
        den += weights[k] * np.trace(R @ Po)
    delta2 = max(0.0, num / den) if den > 1e-12 else 0.0
    s = sum(weights[k] * (np.trace(P[k] @ covs[k]) - delta2 * np.trace(P[k] @ P_other[k]) - eta2 * dims[k])
            for k in range(K)) / float(np.sum(weights * np.asarray(dims)))
    if not s > 0:
        fail("x", f"the fitted subspaces hold no energy beyond delta and eta (s = {s:.3g}); "
                  "constant classes cannot be fitted")
    c = float(np.sqrt(s))
    dt = dtype or jnp.zeros((), dtype=float).dtype
    mix = MoLRG([jnp.asarray(U, dt) for U in bases], weights=jnp.asarray(weights, dt),
                delta=float(np.sqrt(delta2) / c), noise=float(np.sqrt(eta2) / c),
                means=jnp.asarray(means / c, dt))
    return MoLRGFit(mix=mix, scale=c, ranks=tuple(dims), weights=weights, means=means,
                    delta=float(np.sqrt(delta2) / c), noise=float(np.sqrt(eta2) / c),
                    explained_energy=np.asarray(explained), union_rank=r_union,
                    class_covariances=np.stack(covs), num_samples=counts)


def bootstrap_fits(x, labels, *, key, num: int, fit: MoLRGFit | None = None, **fit_kwargs) -> list[MoLRGFit]:
    """Fits on ``num`` class-stratified bootstrap resamples (the fit's sampling uncertainty).

    Each resample draws ``N_k`` points with replacement from class k's points. The ranks are
    held at ``fit.ranks`` when ``fit`` is given (so every replicate has the same shapes and
    the fitted mixtures can be stacked and vmapped).

    Args:
      x, labels: as :func:`fit_molrg`.
      key: a PRNG key (one split per replicate).
      num: number of replicates, >= 1.
      fit: optional reference fit whose ranks the replicates keep.
      fit_kwargs: passed to :func:`fit_molrg` (not ``rank`` when ``fit`` is given).

    Returns:
      A list of ``num`` :class:`MoLRGFit`.
    """
    check_key("key", key)
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        fail("num", f"must be an integer >= 1; got {num!r}")
    xa, ya, K, counts = _check_data(x, labels, fit_kwargs.get("num_classes"))
    if fit is not None:
        if "rank" in fit_kwargs:
            fail("rank", "give either fit (its ranks are kept) or rank, not both")
        fit_kwargs = dict(fit_kwargs, rank=list(fit.ranks), num_classes=K)
    idx = [np.flatnonzero(ya == k) for k in range(K)]
    out = []
    for key_b in jax.random.split(key, num):
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key_b)).ravel().tolist())
        pick = np.concatenate([rng.choice(i, size=i.size, replace=True) for i in idx])
        out.append(fit_molrg(xa[pick], ya[pick], **fit_kwargs))
    return out


# ----------------------------------------------------------------------------------------------
# Report.
# ----------------------------------------------------------------------------------------------
def _gaussian_mixture_loglik(x, weights, means, covs):
    """Mean of ``log sum_k pi_k N(x; mu_k, Sigma_k)`` over rows (dense, float64)."""
    n = x.shape[1]
    logs = []
    for w, mu, C in zip(weights, means, covs):
        L = np.linalg.cholesky(C)
        z = np.linalg.solve(L, (x - mu).T)
        logdet = 2.0 * np.sum(np.log(np.diag(L)))
        logs.append(np.log(w) - 0.5 * (np.sum(z * z, axis=0) + logdet + n * np.log(2 * np.pi)))
    logs = np.stack(logs)
    top = logs.max(axis=0)
    return float(np.mean(top + np.log(np.sum(np.exp(logs - top), axis=0))))


def fit_report(fit: MoLRGFit, x_test, *, ridge: float | None = None) -> FitReport:
    """How well ``fit`` matches data, and which MoLRG assumptions (P1, Assumption 1) it breaks.

    Held-out log-likelihood ``mean_i log sum_k pi_k N(x_i; mu_k, Sigma_k + ridge I)`` with the
    fitted MoLRG covariances (:meth:`MoLRGFit.covariances`) and with the empirical class
    covariances (the full-covariance Gaussian mixture; it has ``K n (n + 1) / 2`` covariance
    parameters against the MoLRG's ``sum_k n d_k + 3``). The ridge (default ``1e-6`` times the
    mean per-dimension training variance) keeps both densities proper when a class covariance
    is singular (e.g. pixels that are always 0).

    Args:
      fit: a :class:`MoLRGFit`.
      x_test: ``(M, n)`` finite held-out points.
      ridge: covariance ridge, >= 0 (default: see above).

    Returns:
      A :class:`FitReport`.
    """
    xt = np.asarray(x_test)
    if xt.ndim != 2 or xt.shape[1] != fit.n or xt.shape[0] < 1:
        fail("x_test", f"must be a non-empty (M, n = {fit.n}) array; got shape {xt.shape}")
    if not np.all(np.isfinite(xt)):
        fail("x_test", "must contain only finite values (no NaN or inf)")
    xt = xt.astype(np.float64)
    emp = fit.class_covariances
    if ridge is None:
        ridge = 1e-6 * float(np.mean([np.trace(C) for C in emp])) / fit.n
    elif isinstance(ridge, bool) or not (np.isfinite(ridge) and ridge >= 0):
        fail("ridge", f"must be finite and >= 0; got {ridge!r}")
    eye = ridge * np.eye(fit.n)
    ll_molrg = _gaussian_mixture_loglik(xt, fit.weights, fit.means, fit.covariances() + eye)
    ll_gmm = _gaussian_mixture_loglik(xt, fit.weights, fit.means, emp + eye)
    K = fit.K
    bases = [np.asarray(b, np.float64) for b in fit.mix.bases]
    angles = np.zeros((K, K))
    for k in range(K):
        for j in range(k + 1, K):
            angles[k, j] = angles[j, k] = float(np.degrees(np.min(principal_angles(bases[k], bases[j]))))
    off = angles[~np.eye(K, dtype=bool)]
    largest_cos = float(np.max(np.cos(np.radians(off))))
    orthogonal = bool(np.all(off > 89.0))
    equal_ranks = len(set(fit.ranks)) == 1
    tr = np.array([np.trace(C) for C in emp])
    sep = np.zeros((K, K))
    for k in range(K):
        for j in range(K):
            sep[k, j] = np.linalg.norm(fit.means[k] - fit.means[j]) / np.sqrt(tr[k] + tr[j])
    glob = fit.weights @ fit.means
    # standard error of a class mean's distance from the global mean: sqrt(tr C_k / N_k)
    zero_means = bool(np.all([np.linalg.norm(fit.means[k] - glob) <= 3 * np.sqrt(tr[k] / fit.num_samples[k])
                              for k in range(K)]))
    broken = []
    if not orthogonal:
        broken.append(f"non-orthogonal subspaces (smallest principal angle {off.min():.1f} deg)")
    if not equal_ranks:
        broken.append(f"unequal ranks {list(fit.ranks)}")
    if not zero_means:
        broken.append(f"non-zero class means (largest separation {sep.max():.2f})")
    if np.ptp(fit.weights) > 3 * np.sqrt(np.max(fit.weights) / np.sum(fit.num_samples)):
        broken.append("unequal class weights")
    if fit.noise > 1e-6:
        broken.append(f"ambient noise eta = {fit.noise:.3g} (model units)")
    return FitReport(explained_energy=fit.explained_energy, loglik_molrg=ll_molrg, loglik_gmm=ll_gmm,
                     ridge=float(ridge), principal_angles_deg=angles, largest_cosine=largest_cos,
                     orthogonal=orthogonal, equal_ranks=equal_ranks, mean_separation=sep,
                     zero_means=zero_means, broken=tuple(broken))
