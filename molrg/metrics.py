"""Representation-quality metrics of THEORY.md section 5.

Everything here measures how well outputs or features of a denoiser carry class information:

- `snr`, `snr_per_class`: the SNR of P1 (Definition 1) for decoded outputs with the known class
  subspaces of a mixture, with per-class values and delta-method standard errors.
- `class_subspaces`, `feature_snr`, `feature_snr_per_class`: the same SNR for arbitrary features,
  with class subspaces fitted by P1's recipe (unit-normalise, subtract the global mean, top
  right singular vectors per class).
- `bayes_accuracy`: the Bayes classifier's accuracy (the probes live in :mod:`molrg.probes`).
- `unimodality`: is a metric-versus-noise curve an interior peak, monotone, or flat, given its
  standard errors.

All array functions are pure, take labels as integer arrays, and are `jax.jit`- and
`jax.vmap`-friendly: to sweep noise levels, vmap over a leading axis of the outputs or features
and close over the labels and the mixture, e.g.
`jax.vmap(lambda out: snr(out, labels, mix))(outputs_per_sigma)`. Input checks run eagerly: shape
checks always, value checks (finiteness, label range, class counts) only on concrete values, never
on tracers. `unimodality` is host-side post-processing (numpy) and returns plain Python values.

Matrix products use `Precision.HIGHEST` so that float32 on accelerators is not silently
downgraded to TF32/bf16 inside a measurement.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "SNRStats",
    "ClassSubspaces",
    "Unimodality",
    "VERDICTS",
    "snr",
    "snr_per_class",
    "class_subspaces",
    "feature_snr",
    "feature_snr_per_class",
    "bayes_accuracy",
    "unimodality",
]

Array = jax.Array
_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------------------------
# Input checks (eager; value checks skipped on tracers).
# ----------------------------------------------------------------------------------------------


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _float_array(x: Any, name: str, ndim: int) -> Array:
    """Converts to a floating jnp array of rank `ndim` (integers are promoted to float)."""
    try:
        x = jnp.asarray(x)
    except TypeError as err:
        raise ValueError(f"{name}: must be a numeric array, got {type(x).__name__}") from err
    if jnp.issubdtype(x.dtype, jnp.complexfloating) or x.dtype == jnp.bool_:
        raise ValueError(f"{name}: must be a real array, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
    if x.ndim != ndim:
        raise ValueError(f"{name}: must have rank {ndim}, got shape {x.shape}")
    return x


def _check_finite(x: Array, name: str) -> None:
    if _is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name}: must be finite (found NaN or inf)")


def _int_labels(labels: Any, name: str, length: int, num_classes: int) -> Array:
    """Checks integer labels of shape (length,) with values in [0, num_classes)."""
    labels = jnp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name}: must have rank 1, got shape {labels.shape}")
    if labels.shape[0] != length:
        raise ValueError(f"{name}: must have length {length} (one label per row), got {labels.shape[0]}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"{name}: must have an integer dtype, got {labels.dtype}")
    if _is_concrete(labels) and labels.shape[0] > 0:
        values = np.asarray(labels)
        if values.min() < 0 or values.max() >= num_classes:
            raise ValueError(
                f"{name}: must lie in [0, {num_classes}), got range [{values.min()}, {values.max()}]"
            )
    return labels


def _check_counts(labels: Array, name: str, num_classes: int, minimum: int, why: str) -> None:
    if _is_concrete(labels):
        counts = np.bincount(np.asarray(labels), minlength=num_classes)
        short = np.flatnonzero(counts < minimum)
        if short.size:
            raise ValueError(
                f"{name}: must contain at least {minimum} sample(s) of every class ({why}); "
                f"classes {short.tolist()} have counts {counts[short].tolist()}"
            )


def _num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes: must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes: must be >= 1, got {num_classes}")
    return int(num_classes)


def _rank(rank: Any, dim: int) -> int:
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
        raise ValueError(f"rank: must be an int, got {rank!r}")
    if not 1 <= rank <= dim:
        raise ValueError(f"rank: must satisfy 1 <= rank <= feature dimension {dim}, got {rank}")
    return int(rank)


def _mixture(mix: Any, n: int, dtype: Any) -> tuple[tuple[Array, ...], Array]:
    """Reads `mix.bases` and `mix.weights` (duck-typed) and checks them against dimension n."""
    try:
        bases = tuple(mix.bases)
        weights = mix.weights
    except AttributeError as err:
        raise ValueError("mix: must have attributes `bases` (tuple of (n, d_k)) and `weights` (K,)") from err
    if not bases:
        raise ValueError("mix.bases: must hold at least one basis")
    checked = []
    for k, basis in enumerate(bases):
        basis = jnp.asarray(basis)
        if basis.ndim != 2 or basis.shape[0] != n or basis.shape[1] < 1:
            raise ValueError(
                f"mix.bases[{k}]: must have shape (n={n}, d_k>=1) to match outputs, got {basis.shape}"
            )
        checked.append(basis.astype(dtype))
    num_classes = len(checked)
    for attr, expected in (("K", num_classes), ("n", n), ("dims", tuple(b.shape[1] for b in checked))):
        value = getattr(mix, attr, None)
        if value is not None and not _is_concrete(value):
            continue
        if value is not None and (tuple(value) if attr == "dims" else int(value)) != expected:
            raise ValueError(f"mix.{attr}: must equal {expected} (from mix.bases), got {value}")
    weights = jnp.asarray(weights)
    if weights.shape != (num_classes,):
        raise ValueError(f"mix.weights: must have shape ({num_classes},), got {weights.shape}")
    if _is_concrete(weights):
        w = np.asarray(weights)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("mix.weights: must be finite, non-negative and sum to a positive value")
    return tuple(checked), weights.astype(dtype)


# ----------------------------------------------------------------------------------------------
# SNR (P1, Definition 1).
# ----------------------------------------------------------------------------------------------


class SNRStats(NamedTuple):
    """Per-class and overall SNR with delta-method standard errors.

    Attributes:
      snr: () class-mean SNR `(1/K) sum_k num_k / den_k` (P1, Definition 1).
      snr_stderr: () its standard error, `sqrt(sum_k ratio_stderr_k^2) / K` (classes independent).
      pooled: () pooled ratio `sum_k pi_k num_k / sum_k pi_k den_k`.
      pooled_stderr: () its delta-method standard error.
      num: (K,) `mean ||P_k xh||^2` over samples of true class k.
      den: (K,) `mean ||xh - P_k xh||^2` over samples of true class k.
      ratio: (K,) `num / den`.
      num_stderr: (K,) standard error of `num` (sample std with ddof=1 over sqrt(N_k)).
      den_stderr: (K,) standard error of `den`.
      ratio_stderr: (K,) delta-method standard error of `ratio`.
      count: (K,) number of samples `N_k` of each class.
    """

    snr: Array
    snr_stderr: Array
    pooled: Array
    pooled_stderr: Array
    num: Array
    den: Array
    ratio: Array
    num_stderr: Array
    den_stderr: Array
    ratio_stderr: Array
    count: Array


def _class_energies(outputs: Array, bases: tuple[Array, ...]) -> tuple[Array, Array]:
    """Signal and residual energies of every sample against every class subspace.

    signal[i, k] = ||U_k^T x_i||^2 and residual[i, k] = ||x_i - U_k U_k^T x_i||^2, for orthonormal
    U_k, without forming an n x n projector. The residual is computed from the explicit residual
    vector rather than as ||x||^2 - ||U_k^T x||^2: the difference cancels catastrophically when x
    lies almost inside span(U_k) (large SNR), the direct form keeps relative accuracy.

    Args:
      outputs: (N, n).
      bases: K arrays of shape (n, d_k) with orthonormal columns.

    Returns:
      signal, residual: each (N, K).
    """
    signal, residual = [], []
    for basis in bases:
        coef = jnp.matmul(outputs, basis, precision=_HIGHEST)  # (N, d_k)
        signal.append(jnp.sum(coef**2, axis=-1))
        resid = outputs - jnp.matmul(coef, basis.T, precision=_HIGHEST)
        residual.append(jnp.sum(resid**2, axis=-1))
    return jnp.stack(signal, axis=-1), jnp.stack(residual, axis=-1)


@jax.jit
def _snr_stats(outputs: Array, labels: Array, bases: tuple[Array, ...], weights: Array) -> SNRStats:
    """Kernel of `snr_per_class` (inputs already checked)."""
    num_classes = len(bases)
    signal, residual = _class_energies(outputs, bases)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=outputs.dtype)  # (N, K)
    # Energies of each sample against its own class.
    a = jnp.sum(onehot * signal, axis=-1)
    b = jnp.sum(onehot * residual, axis=-1)
    count = jnp.sum(onehot, axis=0)

    def class_mean(v: Array) -> Array:
        return jnp.sum(onehot * v[:, None], axis=0) / count

    def class_var(v: Array, centre: Array) -> Array:
        # Within-class sample variance (ddof=1) of v around the class value `centre`.
        dev = v - centre[labels]
        return jnp.sum(onehot * (dev**2)[:, None], axis=0) / (count - 1)

    num, den = class_mean(a), class_mean(b)
    ratio = num / den
    num_stderr = jnp.sqrt(class_var(a, num) / count)
    den_stderr = jnp.sqrt(class_var(b, den) / count)
    # Delta method for a ratio of means: Var(num/den) ~= Var(mean(a - R b)) / den^2.
    ratio_stderr = jnp.sqrt(class_var(a - ratio[labels] * b, jnp.zeros_like(ratio)) / count) / den

    snr_value = jnp.mean(ratio)
    snr_stderr = jnp.sqrt(jnp.sum(ratio_stderr**2)) / num_classes

    pi = weights / jnp.sum(weights)
    pooled_num, pooled_den = jnp.sum(pi * num), jnp.sum(pi * den)
    pooled = pooled_num / pooled_den
    # Var(sum_k pi_k (num_k - R den_k)) / (sum_k pi_k den_k)^2, classes independent.
    pooled_var = jnp.sum(pi**2 * class_var(a - pooled * b, num - pooled * den) / count)
    pooled_stderr = jnp.sqrt(pooled_var) / pooled_den

    return SNRStats(
        snr=snr_value,
        snr_stderr=snr_stderr,
        pooled=pooled,
        pooled_stderr=pooled_stderr,
        num=num,
        den=den,
        ratio=ratio,
        num_stderr=num_stderr,
        den_stderr=den_stderr,
        ratio_stderr=ratio_stderr,
        count=jnp.sum(jax.nn.one_hot(labels, num_classes, dtype=jnp.int32), axis=0),
    )


def snr_per_class(outputs: Any, labels: Any, mix: Any) -> SNRStats:
    """SNR of decoded outputs against the true class subspaces, per class, with standard errors.

    For outputs `xh_i` with true labels `y_i` and `P_k = U_k U_k^T` (THEORY.md section 5, P1
    Definition 1)::

        num_k = mean_{i: y_i = k} ||U_k^T xh_i||^2
        den_k = mean_{i: y_i = k} ||xh_i - U_k U_k^T xh_i||^2
        SNR   = (1/K) sum_k num_k / den_k,    pooled = sum_k pi_k num_k / sum_k pi_k den_k

    Standard errors treat samples as independent. `ratio_stderr_k` is the delta method for a ratio
    of means, `std_{i in k}(a_i - R_k b_i) / (sqrt(N_k) den_k)` with `a_i, b_i` the per-sample
    numerator and denominator energies and ddof=1. Classes with a single sample get NaN standard
    errors. Cost O(N n sum_k d_k); no n x n matrix is formed.

    Args:
      outputs: (N, n) decoded outputs `xh`. Integers are promoted to float.
      labels: (N,) integer true classes in [0, K).
      mix: mixture with `bases` (K arrays (n, d_k), orthonormal columns) and `weights` (K,)
        (`K`, `n`, `dims` are checked when present). Close over it under `jit`/`vmap`.

    Returns:
      `SNRStats`.

    Raises:
      ValueError: on bad shapes, non-integer labels, and (for concrete values) non-finite
        outputs, labels out of range, or a class without samples.

    Example:
      >>> stats = snr_per_class(outputs, labels, mix)          # doctest: +SKIP
      >>> per_sigma = jax.vmap(lambda o: snr_per_class(o, labels, mix))(outputs_by_sigma)  # +SKIP
    """
    outputs = _float_array(outputs, "outputs", 2)
    bases, weights = _mixture(mix, outputs.shape[1], outputs.dtype)
    labels = _int_labels(labels, "labels", outputs.shape[0], len(bases))
    _check_finite(outputs, "outputs")
    _check_counts(labels, "labels", len(bases), 1, "each class ratio needs samples")
    return _snr_stats(outputs, labels, bases, weights)


def snr(outputs: Any, labels: Any, mix: Any, *, pooled: bool = False) -> Array:
    """SNR of decoded outputs (P1, Definition 1): `(1/K) sum_k num_k / den_k`.

    See `snr_per_class` for the definitions of `num_k`, `den_k` and the checks. With
    `pooled=True` returns `sum_k pi_k num_k / sum_k pi_k den_k` with `pi = mix.weights`.

    Args:
      outputs: (N, n) decoded outputs.
      labels: (N,) integer true classes.
      mix: mixture with `bases` and `weights`.
      pooled: return the pooled ratio instead of the class mean of ratios.

    Returns:
      () scalar.
    """
    stats = snr_per_class(outputs, labels, mix)
    return stats.pooled if pooled else stats.snr


# ----------------------------------------------------------------------------------------------
# Feature SNR with fitted subspaces (P1's recipe for hidden features).
# ----------------------------------------------------------------------------------------------


class ClassSubspaces(NamedTuple):
    """Class subspaces fitted to features by P1's recipe.

    Attributes:
      bases: (K, m, rank) orthonormal bases, columns ordered by decreasing singular value.
      singular_values: (K, rank) the matching singular values of each class's centred features.
      mean: (m,) global mean of the unit-normalised fit features (subtracted before projecting).
    """

    bases: Array
    singular_values: Array
    mean: Array


def _unit_rows(features: Array) -> Array:
    # Zero rows stay zero rather than becoming NaN.
    norm = jnp.sqrt(jnp.sum(features**2, axis=-1, keepdims=True))
    return features / jnp.where(norm > 0, norm, jnp.ones_like(norm))


@functools.partial(jax.jit, static_argnames=("num_classes", "rank"))
def _fit_subspaces(features: Array, labels: Array, num_classes: int, rank: int) -> ClassSubspaces:
    unit = _unit_rows(features)
    mean = jnp.mean(unit, axis=0)
    centred = unit - mean[None, :]
    onehot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
    # Right singular vectors of class k's rows = eigenvectors of its m x m Gram matrix; masking rows
    # with the one-hot keeps shapes static for jit/vmap. The Gram route costs O(N m^2 + K m^3) and
    # is accurate for the top `rank` directions, which is all that is used.
    # Explicit two-step contraction: intermediate (N, K, m), never (N, m, m).
    masked = onehot[:, :, None] * centred[:, None, :]
    gram = jnp.einsum("ika,ib->kab", masked, centred, precision=_HIGHEST)
    evals, evecs = jnp.linalg.eigh(gram)  # ascending
    bases = evecs[..., ::-1][..., :rank]
    singular_values = jnp.sqrt(jnp.clip(evals[..., ::-1][..., :rank], 0.0))
    return ClassSubspaces(bases=bases, singular_values=singular_values, mean=mean)


def class_subspaces(features: Any, labels: Any, *, num_classes: int, rank: int = 5) -> ClassSubspaces:
    """Fits one subspace per class to features (P1's recipe, THEORY.md section 5).

    Each feature row is normalised to unit Euclidean norm (zero rows stay zero), the global mean
    `mu` of the normalised rows is subtracted, and class k's subspace is spanned by the top-`rank`
    right singular vectors of its centred rows `{h_i / ||h_i|| - mu : y_i = k}`.

    Args:
      features: (N, m).
      labels: (N,) integer classes in [0, num_classes).
      num_classes: K (static).
      rank: subspace dimension r, 1 <= r <= m (static).

    Returns:
      `ClassSubspaces` with bases (K, m, r), singular values (K, r), mean (m,).

    Raises:
      ValueError: bad shapes or arguments; for concrete values also non-finite features, labels
        out of range, or a class with fewer than `rank` samples (its subspace would be arbitrary).
    """
    num_classes = _num_classes(num_classes)
    features = _float_array(features, "features", 2)
    rank = _rank(rank, features.shape[1])
    labels = _int_labels(labels, "labels", features.shape[0], num_classes)
    _check_finite(features, "features")
    _check_counts(labels, "labels", num_classes, rank, "a rank-r subspace needs r samples")
    return _fit_subspaces(features, labels, num_classes, rank)


def _feature_inputs(features, labels, num_classes, rank, fit_features, fit_labels):
    num_classes = _num_classes(num_classes)
    features = _float_array(features, "features", 2)
    rank = _rank(rank, features.shape[1])
    labels = _int_labels(labels, "labels", features.shape[0], num_classes)
    _check_finite(features, "features")
    if (fit_features is None) != (fit_labels is None):
        raise ValueError("fit_labels: must be given together with fit_features (both or neither)")
    if fit_features is None:
        fit = class_subspaces(features, labels, num_classes=num_classes, rank=rank)
    else:
        fit_features = _float_array(fit_features, "fit_features", 2)
        if fit_features.shape[1] != features.shape[1]:
            raise ValueError(
                f"fit_features: must have {features.shape[1]} columns like features, "
                f"got {fit_features.shape[1]}"
            )
        fit_features = fit_features.astype(features.dtype)
        fit = class_subspaces(fit_features, fit_labels, num_classes=num_classes, rank=rank)
    _check_counts(labels, "labels", num_classes, 1, "each class ratio needs samples")
    return features, labels, fit


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _feature_snr_kernel(features, labels, fit: ClassSubspaces, num_classes: int) -> SNRStats:
    centred = _unit_rows(features) - fit.mean[None, :]
    bases = tuple(fit.bases[k] for k in range(num_classes))
    counts = jnp.sum(jax.nn.one_hot(labels, num_classes, dtype=features.dtype), axis=0)
    return _snr_stats(centred, labels, bases, counts)


def feature_snr_per_class(
    features: Any,
    labels: Any,
    *,
    num_classes: int,
    rank: int = 5,
    fit_features: Any = None,
    fit_labels: Any = None,
) -> SNRStats:
    """Per-class SNR of arbitrary features with fitted class subspaces (P1's recipe).

    Subspaces `V_k` come from `class_subspaces` on (`fit_features`, `fit_labels`), or on
    (`features`, `labels`) when no fit split is given. The evaluated features are normalised to
    unit norm and centred with the fit split's global mean `mu` (the fitted transform is applied
    unchanged, as with standardisation by training statistics); then, with `z_i = h_i/||h_i|| - mu`,
    the SNR of `snr_per_class` is taken with `P_k = V_k V_k^T`::

        num_k = mean_{y_i = k} ||V_k^T z_i||^2,   den_k = mean_{y_i = k} ||z_i - V_k V_k^T z_i||^2

    The pooled ratio uses the empirical class proportions of the evaluated labels, so
    `pooled = sum_i ||V_{y_i}^T z_i||^2 / sum_i ||z_i - V_{y_i} V_{y_i}^T z_i||^2`.

    Args:
      features: (N, m) features to evaluate.
      labels: (N,) integer classes.
      num_classes: K (static).
      rank: subspace dimension (static), default 5 as in P1.
      fit_features: optional (N_fit, m) features to fit the subspaces on.
      fit_labels: optional (N_fit,) their labels; given together with `fit_features`.

    Returns:
      `SNRStats`. Standard errors are conditional on the fitted subspaces (they ignore the fit's
      own sampling noise).
    """
    features, labels, fit = _feature_inputs(features, labels, num_classes, rank, fit_features, fit_labels)
    return _feature_snr_kernel(features, labels, fit, fit.bases.shape[0])


def feature_snr(
    features: Any,
    labels: Any,
    *,
    num_classes: int,
    rank: int = 5,
    fit_features: Any = None,
    fit_labels: Any = None,
    pooled: bool = False,
) -> Array:
    """SNR of arbitrary features with fitted class subspaces: `(1/K) sum_k num_k / den_k`.

    See `feature_snr_per_class` for the recipe and arguments; `pooled=True` returns the pooled ratio.

    Returns:
      () scalar.
    """
    stats = feature_snr_per_class(
        features, labels, num_classes=num_classes, rank=rank, fit_features=fit_features, fit_labels=fit_labels
    )
    return stats.pooled if pooled else stats.snr


# ----------------------------------------------------------------------------------------------
# Classifiers.
# ----------------------------------------------------------------------------------------------


def _accuracy(scores: Array, labels: Array) -> Array:
    return jnp.mean((jnp.argmax(scores, axis=-1).astype(labels.dtype) == labels).astype(scores.dtype))


def bayes_accuracy(log_post: Any, labels: Any) -> Array:
    """Accuracy of the maximum-a-posteriori class: `mean_i [argmax_k log_post[i, k] == y_i]`.

    The caller computes the log posteriors `log p(k | x_t)` (or any scores with the same argmax);
    `-inf` entries (zero posterior) are allowed. Ties go to the lowest class index.

    Args:
      log_post: (N, K) log posteriors.
      labels: (N,) integer true classes in [0, K).

    Returns:
      () accuracy in [0, 1].

    Raises:
      ValueError: bad shapes, non-integer labels; for concrete values, NaN or +inf in `log_post`
        or labels out of range.
    """
    log_post = _float_array(log_post, "log_post", 2)
    labels = _int_labels(labels, "labels", log_post.shape[0], log_post.shape[1])
    if _is_concrete(log_post):
        values = np.asarray(log_post)
        if np.any(np.isnan(values)) or np.any(values == np.inf):
            raise ValueError("log_post: must not contain NaN or +inf (-inf is allowed)")
    return _accuracy(log_post, labels)


# ----------------------------------------------------------------------------------------------
# Unimodality of a curve over noise levels.
# ----------------------------------------------------------------------------------------------

VERDICTS = ("interior peak", "monotone decreasing", "monotone increasing", "interior dip", "flat")


@dataclasses.dataclass(frozen=True)
class Unimodality:
    """Shape of a metric-versus-noise curve (see `unimodality` for the rule).

    Attributes:
      verdict: one of "interior peak", "monotone decreasing", "monotone increasing",
        "interior dip", "flat".
      peak_index: index of the maximum of y (first one on ties).
      peak_x: x at the maximum.
      peak_value: y at the maximum.
      gain_left: y_peak - y[0] (>= 0).
      gain_right: y_peak - y[-1] (>= 0).
      rel_gain_left: gain_left / max(|y_peak|, |y[0]|) (0 when both are 0).
      rel_gain_right: gain_right / max(|y_peak|, |y[-1]|).
      gain_left_stderr: sqrt(e_peak^2 + e_0^2), 0 when the peak is the left end; None without y_err.
      gain_right_stderr: sqrt(e_peak^2 + e_last^2), likewise.
      range_stderr: standard error of max(y) - min(y); None without y_err.
    """

    verdict: str
    peak_index: int
    peak_x: float
    peak_value: float
    gain_left: float
    gain_right: float
    rel_gain_left: float
    rel_gain_right: float
    gain_left_stderr: Optional[float]
    gain_right_stderr: Optional[float]
    range_stderr: Optional[float]


def unimodality(
    x: Any, y: Any, y_err: Any = None, *, z: float = 3.0, min_rel_gain: float = 0.01
) -> Unimodality:
    """Classifies a curve y(x) as an interior peak, monotone, a dip, or flat, given its errors.

    Let p = argmax y (first on ties), q = argmin y, e_i = y_err[i] (0 when `y_err` is None), and
    call a difference `y_i - y_j >= 0` *significant* when both

        y_i - y_j > z * sqrt(e_i^2 + e_j^2)   and   (y_i - y_j) / max(|y_i|, |y_j|) >= min_rel_gain

    (a zero difference is never significant; the relative floor keeps rounding noise from counting
    when errors are zero or underestimated). With L = left = y[p] - y[0] and R = y[p] - y[-1]:

    1. "flat" if y[p] - y[q] is not significant (the whole range is within the errors);
    2. else "interior peak" if 0 < p < len(y) - 1 and both L and R are significant;
    3. else "monotone decreasing" if L is not significant (the maximum is at, or statistically
       indistinguishable from, the left end) and R is significant;
    4. else "monotone increasing" if R is not significant and L is significant;
    5. else "interior dip": neither end is below the maximum, yet the range is significant, so an
       interior minimum lies significantly below both (e.g. a U shape).

    The monotone verdicts describe where the maximum sits relative to the ends; they do not test
    every step of the curve. Standard errors are combined as independent.

    Args:
      x: (L,) strictly increasing abscissae (e.g. noise levels), L >= 2.
      y: (L,) finite values.
      y_err: optional (L,) finite, non-negative standard errors of y.
      z: significance multiplier on combined standard errors, > 0.
      min_rel_gain: relative-difference floor, >= 0.

    Returns:
      `Unimodality` (plain Python floats; host-side, not jit-able).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"x: must have rank 1, got shape {x.shape}")
    if y.shape != x.shape:
        raise ValueError(f"y: must have the same shape as x {x.shape}, got {y.shape}")
    if y.shape[0] < 2:
        raise ValueError(f"y: must have at least 2 points, got {y.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x: must be finite")
    if not np.all(np.isfinite(y)):
        raise ValueError("y: must be finite")
    if not np.all(np.diff(x) > 0):
        raise ValueError("x: must be strictly increasing")
    has_err = y_err is not None
    if has_err:
        err = np.asarray(y_err, dtype=float)
        if err.shape != y.shape:
            raise ValueError(f"y_err: must have the same shape as y {y.shape}, got {err.shape}")
        if not np.all(np.isfinite(err)) or np.any(err < 0):
            raise ValueError("y_err: must be finite and non-negative")
    else:
        err = np.zeros_like(y)
    if not (np.isfinite(z) and z > 0):
        raise ValueError(f"z: must be finite and > 0, got {z!r}")
    if not (np.isfinite(min_rel_gain) and min_rel_gain >= 0):
        raise ValueError(f"min_rel_gain: must be finite and >= 0, got {min_rel_gain!r}")

    def relative(i: int, j: int) -> float:
        scale = max(abs(y[i]), abs(y[j]))
        return float((y[i] - y[j]) / scale) if scale > 0 else 0.0

    def stderr(i: int, j: int) -> float:
        return 0.0 if i == j else float(np.hypot(err[i], err[j]))

    def significant(i: int, j: int) -> bool:
        diff = y[i] - y[j]
        return bool(diff > 0 and diff > z * stderr(i, j) and relative(i, j) >= min_rel_gain)

    last = y.shape[0] - 1
    p, q = int(np.argmax(y)), int(np.argmin(y))
    left, right = significant(p, 0), significant(p, last)
    if not significant(p, q):
        verdict = "flat"
    elif 0 < p < last and left and right:
        verdict = "interior peak"
    elif right and not left:
        verdict = "monotone decreasing"
    elif left and not right:
        verdict = "monotone increasing"
    else:
        verdict = "interior dip"
    return Unimodality(
        verdict=verdict,
        peak_index=p,
        peak_x=float(x[p]),
        peak_value=float(y[p]),
        gain_left=float(y[p] - y[0]),
        gain_right=float(y[p] - y[last]),
        rel_gain_left=relative(p, 0),
        rel_gain_right=relative(p, last),
        gain_left_stderr=stderr(p, 0) if has_err else None,
        gain_right_stderr=stderr(p, last) if has_err else None,
        range_stderr=stderr(p, q) if has_err else None,
    )
