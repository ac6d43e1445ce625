"""Representation-quality metrics of docs/theory.md section 5.

Everything here measures how well outputs or features of a denoiser carry class information:

- `snr`, `snr_per_class`: the SNR of P1 (Definition 1) for decoded outputs with the known class
  subspaces of a mixture, with per-class values and delta-method standard errors.
- `class_subspaces`, `feature_snr`, `feature_snr_per_class`: the same SNR for arbitrary features,
  with class subspaces fitted by P1's recipe (unit-normalise, subtract the global mean, top
  right singular vectors per class).
- `bayes_accuracy`: the Bayes classifier's accuracy (the probes live in :mod:`molrg.probes`).
- `unimodality`: is a metric-versus-noise curve an interior peak, monotone, or flat, given its
  standard errors.
- `sampled_snr`: the SNR (and posterior confidence, Bayes accuracy, block-energy retention) of
  the exact denoiser, measured on fresh samples of a mixture at each noise level (host-side
  driver of one compiled kernel).

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

from molrg.mixture import MoLRG, geometry
from molrg.posterior import denoise

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
    "sampled_snr",
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


def _like_columns(x: Any, name: str, ref: Array, ref_name: str) -> Array:
    """``x`` as a float (M, m) array with the columns and dtype of ``ref`` (N, m)."""
    x = _float_array(x, name, 2)
    if x.shape[1] != ref.shape[1]:
        raise ValueError(f"{name}: must have {ref.shape[1]} columns like {ref_name}, got {x.shape[1]}")
    return x.astype(ref.dtype)


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


def _check_counts(labels: Array, name: str, num_classes: int, minimum: int, why: str,
                  sample_weights: Optional[Array] = None) -> None:
    """Every class has `minimum` samples (of positive weight, when `sample_weights` is given)."""
    if _is_concrete(labels) and (sample_weights is None or _is_concrete(sample_weights)):
        keep = None if sample_weights is None else np.asarray(sample_weights) > 0
        counts = np.bincount(np.asarray(labels), weights=keep, minlength=num_classes).astype(int)
        short = np.flatnonzero(counts < minimum)
        if short.size:
            raise ValueError(
                f"{name}: must contain at least {minimum} sample(s) of every class ({why}); "
                f"classes {short.tolist()} have counts {counts[short].tolist()}"
            )


def _sample_weights(sample_weights: Any, length: int, dtype: Any) -> Array:
    """Checks (length,) non-negative finite weights with a positive entry; returns them as dtype."""
    if np.shape(sample_weights) != (length,):
        raise ValueError(f"sample_weights: must have shape ({length},) (one per row), "
                         f"got {np.shape(sample_weights)}")
    w = jnp.asarray(sample_weights)
    if jnp.issubdtype(w.dtype, jnp.complexfloating):
        raise ValueError(f"sample_weights: must be real, got dtype {w.dtype}")
    if _is_concrete(w):
        values = np.asarray(w, np.float64)
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError("sample_weights: must be finite and >= 0")
        if not np.any(values > 0):
            raise ValueError("sample_weights: must have a positive entry (every sample is left out)")
    return w.astype(dtype)


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

    With `skip_absent=True` the sums over k run over the K' classes present in the sample (absent
    classes have NaN per-class entries) and `pi` is renormalised over them.

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
      count: (K,) number of samples `N_k` of each class (int32); with sample weights, their total
        weight per class (in the outputs' dtype).
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


@functools.partial(jax.jit, static_argnames=("skip_absent",))
def _snr_stats(outputs: Array, labels: Array, bases: tuple[Array, ...], weights: Array,
               sample_weights: Optional[Array] = None, skip_absent: bool = False) -> SNRStats:
    """Kernel of `snr_per_class` (inputs already checked).

    `weights` are the class weights `pi` of the pooled ratio; `sample_weights` (N,) are frequency
    weights of the samples (None: all 1).
    """
    num_classes = len(bases)
    signal, residual = _class_energies(outputs, bases)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=outputs.dtype)  # (N, K)
    # Energies of each sample against its own class.
    a = jnp.sum(onehot * signal, axis=-1)
    b = jnp.sum(onehot * residual, axis=-1)
    member = onehot if sample_weights is None else onehot * sample_weights[:, None]
    used = None if sample_weights is None else sample_weights > 0

    def ignore_unused(v: Array) -> Array:
        # 0 * NaN = NaN: a left-out sample's value (e.g. a deviation from an absent class's NaN
        # centre) is zeroed, not multiplied by its zero weight.
        return v if used is None else jnp.where(used, v, jnp.zeros_like(v))

    a, b = ignore_unused(a), ignore_unused(b)
    count = jnp.sum(member, axis=0)
    present = count > 0
    if skip_absent:
        # An absent class divides its zero sums by 1, not 0: its num and den are then 0, not NaN,
        # and drop out of the pooled sums (pi_k = 0); its per-class entries are NaN-ed below.
        count = jnp.where(present, count, jnp.ones_like(count))

    def class_mean(v: Array) -> Array:
        return jnp.sum(member * v[:, None], axis=0) / count

    def class_var(v: Array, centre: Array) -> Array:
        # Within-class sample variance (ddof=1) of v around the class value `centre`.
        dev = ignore_unused(v - centre[labels])
        return jnp.sum(member * (dev**2)[:, None], axis=0) / (count - 1)

    num, den = class_mean(a), class_mean(b)
    ratio = num / den
    num_stderr = jnp.sqrt(class_var(a, num) / count)
    den_stderr = jnp.sqrt(class_var(b, den) / count)
    # Delta method for a ratio of means: Var(num/den) ~= Var(mean(a - R b)) / den^2.
    ratio_stderr = jnp.sqrt(class_var(a - ratio[labels] * b, jnp.zeros_like(ratio)) / count) / den

    pi = weights
    if skip_absent:
        keep = present.astype(outputs.dtype)
        num_present = jnp.sum(keep)
        snr_value = jnp.sum(jnp.where(present, ratio, 0.0)) / num_present
        snr_stderr = jnp.sqrt(jnp.sum(jnp.where(present, ratio_stderr, 0.0) ** 2)) / num_present
        pi = pi * keep
    else:
        snr_value = jnp.mean(ratio)
        snr_stderr = jnp.sqrt(jnp.sum(ratio_stderr**2)) / num_classes

    pi = pi / jnp.sum(pi)
    pooled_num, pooled_den = jnp.sum(pi * num), jnp.sum(pi * den)
    pooled = pooled_num / pooled_den
    # Var(sum_k pi_k (num_k - R den_k)) / (sum_k pi_k den_k)^2, classes independent.
    pooled_terms = pi**2 * class_var(a - pooled * b, num - pooled * den) / count
    if skip_absent:
        pooled_terms = jnp.where(present, pooled_terms, 0.0)
    pooled_stderr = jnp.sqrt(jnp.sum(pooled_terms)) / pooled_den

    stats = SNRStats(
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
        count=(jnp.sum(jax.nn.one_hot(labels, num_classes, dtype=jnp.int32), axis=0)
               if sample_weights is None else jnp.where(present, count, jnp.zeros_like(count))),
    )
    if skip_absent:
        nan = jnp.full_like(num, jnp.nan)
        stats = stats._replace(**{f: jnp.where(present, getattr(stats, f), nan)
                                  for f in ("num", "den", "ratio", "num_stderr", "den_stderr", "ratio_stderr")})
    return stats


def snr_per_class(outputs: Any, labels: Any, mix: Any, *, sample_weights: Any = None,
                  skip_absent: bool = False) -> SNRStats:
    """SNR of decoded outputs against the true class subspaces, per class, with standard errors.

    For outputs `xh_i` with true labels `y_i` and `P_k = U_k U_k^T` (docs/theory.md section 5, P1
    Definition 1)::

        num_k = mean_{i: y_i = k} ||U_k^T xh_i||^2
        den_k = mean_{i: y_i = k} ||xh_i - U_k U_k^T xh_i||^2
        SNR   = (1/K) sum_k num_k / den_k,    pooled = sum_k pi_k num_k / sum_k pi_k den_k

    Standard errors treat samples as independent. `ratio_stderr_k` is the delta method for a ratio
    of means, `std_{i in k}(a_i - R_k b_i) / (sqrt(N_k) den_k)` with `a_i, b_i` the per-sample
    numerator and denominator energies and ddof=1. Classes with a single sample get NaN standard
    errors. Cost O(N n sum_k d_k); no n x n matrix is formed.

    Sample weights `w_i >= 0` are frequency weights: every mean and variance above becomes its
    weighted version with `N_k = sum_{y_i = k} w_i` (a sample of weight 2 counts twice), so a 0/1
    mask gives exactly the statistics of the selected samples, and a padded sample set can be
    masked to any subset inside one compiled program.

    Absent classes (no sample, or zero total weight). By default every class must be present
    (concrete inputs raise; under `jit` an absent class makes the SNR NaN), since the SNR averages
    over all K classes. With `skip_absent=True` an absent class is left out: `SNR = (1/K') sum_k
    num_k / den_k` over the K' present classes, the pooled ratio renormalises `pi` over them, and
    the absent classes' per-class entries are NaN. This is the SNR of a masked subset whose
    classes are not all drawn (a small training set).

    Args:
      outputs: (N, n) decoded outputs `xh`. Integers are promoted to float.
      labels: (N,) integer true classes in [0, K).
      mix: mixture with `bases` (K arrays (n, d_k), orthonormal columns) and `weights` (K,)
        (`K`, `n`, `dims` are checked when present). Close over it under `jit`/`vmap`.
      sample_weights: optional (N,) non-negative frequency weights (0 leaves a sample out); may be
        traced.
      skip_absent: average over the classes present instead of requiring all K (static).

    Returns:
      `SNRStats`.

    Raises:
      ValueError: on bad shapes, non-integer labels, and (for concrete values) non-finite
        outputs or sample weights, labels out of range, negative sample weights, no sample of
        positive weight, or (without `skip_absent`) a class without samples.

    Example:
      >>> stats = snr_per_class(outputs, labels, mix)          # doctest: +SKIP
      >>> per_sigma = jax.vmap(lambda o: snr_per_class(o, labels, mix))(outputs_by_sigma)  # +SKIP
    """
    outputs = _float_array(outputs, "outputs", 2)
    bases, weights = _mixture(mix, outputs.shape[1], outputs.dtype)
    labels = _int_labels(labels, "labels", outputs.shape[0], len(bases))
    _check_finite(outputs, "outputs")
    if not isinstance(skip_absent, bool):
        raise ValueError(f"skip_absent: must be a bool, got {skip_absent!r}")
    if sample_weights is not None:
        sample_weights = _sample_weights(sample_weights, outputs.shape[0], outputs.dtype)
    if not skip_absent:
        _check_counts(labels, "labels", len(bases), 1, "each class ratio needs samples",
                      sample_weights=sample_weights)
    return _snr_stats(outputs, labels, bases, weights, sample_weights, skip_absent)


def snr(outputs: Any, labels: Any, mix: Any, *, pooled: bool = False, sample_weights: Any = None,
        skip_absent: bool = False) -> Array:
    """SNR of decoded outputs (P1, Definition 1): `(1/K) sum_k num_k / den_k`.

    See `snr_per_class` for the definitions of `num_k`, `den_k`, the sample weights, absent
    classes and the checks. With `pooled=True` returns `sum_k pi_k num_k / sum_k pi_k den_k` with
    `pi = mix.weights`.

    Args:
      outputs: (N, n) decoded outputs.
      labels: (N,) integer true classes.
      mix: mixture with `bases` and `weights`.
      pooled: return the pooled ratio instead of the class mean of ratios.
      sample_weights: optional (N,) non-negative frequency weights (0 leaves a sample out).
      skip_absent: average over the classes present instead of requiring all K.

    Returns:
      () scalar.

    Example:
      >>> # the SNR of the first m outputs of a padded batch, m traced
      >>> snr(outputs, labels, mix, sample_weights=jnp.arange(N) < m, skip_absent=True)  # +SKIP
    """
    stats = snr_per_class(outputs, labels, mix, sample_weights=sample_weights, skip_absent=skip_absent)
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
    """Fits one subspace per class to features (P1's recipe, docs/theory.md section 5).

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
        fit_features = _like_columns(fit_features, "fit_features", features, "features")
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
      rel_gain_left: ``gain_left / max(|y_peak|, |y[0]|)`` (0 when both are 0).
      rel_gain_right: ``gain_right / max(|y_peak|, |y[-1]|)``.
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
    call a difference `y_i - y_j >= 0` *significant* when both::

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


# ----------------------------------------------------------------------------------------------
# The SNR of the exact denoiser, by sampling the model (host-side driver, compiled kernel).
# ----------------------------------------------------------------------------------------------


def _draw_noisy(mix: MoLRG, key: Array, num: int) -> tuple[Array, Array, Array]:
    """``(x0, labels, eps)``: ``num`` draws of the mixture and as many standard normal noises.

    The law of ``(x0, labels)`` is exactly that of :meth:`molrg.MoLRG.sample` (same frame
    construction, :func:`molrg.geometry`), but everything comes from ONE standard normal array:
    the labels by comparing one column with the normal quantiles of the cumulative weights,
    the frame coefficients, the isotropic part and ``eps`` from the others. Each separate
    threefry call costs ~0.5 s of XLA compilation on CPU; ``MoLRG.sample`` plus a noise draw
    makes five, and :func:`sampled_snr` compiles this kernel once per model shape. Traceable.
    """
    geo = geometry(mix, mix.dtype)
    r = geo.frame.shape[1]
    n = mix.n
    z = jax.random.normal(key, (num, r + 2 * n + 1), mix.dtype)
    # P(label <= k) = P(z_last < Phi^-1(pi_0 + ... + pi_k)): quantiles of the last column.
    edges = jax.scipy.special.ndtri(jnp.cumsum(mix.weights)[:-1])
    labels = jnp.sum(z[:, -1:] >= edges[None, :], axis=1).astype(jnp.int32)
    sizes = np.asarray(geo.group_sizes)
    std = jnp.sqrt(jnp.repeat(geo.variances, sizes, axis=1, total_repeat_length=r))  # (K, r)
    coef = z[:, :r] * std[labels]
    if geo.rotations is not None:
        coef = jnp.einsum("bj,bij->bi", coef, geo.rotations[labels])
    x0 = coef @ geo.frame.T
    if geo.mean_coords is not None:
        x0 = x0 + mix.means[labels]
    if not mix.noiseless:
        x0 = x0 + mix.noise * z[:, r:r + n]
    return x0, labels, z[:, r + n:r + 2 * n]


def _ratio_of_means(a: Array, b: Array) -> tuple[Array, Array]:
    """``mean(a) / mean(b)`` and its delta-method standard error (samples independent)."""
    ratio = jnp.mean(a) / jnp.mean(b)
    se = jnp.std(a - ratio * b, ddof=1) / (jnp.sqrt(jnp.asarray(a.shape[0], a.dtype)) * jnp.mean(b))
    return ratio, se


@functools.partial(jax.jit, static_argnames=("num_samples", "extras"))
def _level_stats(mix, sigma, scale, key, num_samples, extras):
    """One noise level: fresh samples, the exact denoiser, and what :func:`sampled_snr` measures.

    Compiled once per model shape and ``num_samples`` (not per grid): every study that
    samples the same model shape at any noise levels reuses it.
    """
    x0, labels, eps = _draw_noisy(mix, key, num_samples)
    x_t = scale * (x0 + sigma * eps)
    out, post = denoise(mix, x_t, sigma, scale, return_posterior=True)
    stats = snr_per_class(out, labels, mix)
    dtype = out.dtype
    root_n = jnp.sqrt(jnp.asarray(num_samples, dtype))
    onehot = jax.nn.one_hot(labels, mix.K, dtype=dtype)
    conf = jnp.sum(post * onehot, axis=1)
    correct = (jnp.argmax(post, axis=1).astype(labels.dtype) == labels).astype(dtype)
    basic = dict(
        snr=stats.snr, snr_se=stats.snr_stderr, pooled=stats.pooled, pooled_se=stats.pooled_stderr,
        ratio=stats.ratio, ratio_se=stats.ratio_stderr, count=stats.count,
        confidence=jnp.mean(conf), confidence_se=jnp.std(conf, ddof=1) / root_n,
        bayes_accuracy=jnp.mean(correct), bayes_accuracy_se=jnp.std(correct, ddof=1) / root_n,
    )
    if not extras:  # compiling the extras costs ~1 s; SNR-only callers skip them
        return basic
    # Block energies ||U_l^T v||^2 of the clean input and of the output: how much of the own
    # class and of the other classes' blocks (the class-irrelevant detail) the denoiser keeps.
    member = np.zeros((mix.D, mix.K), np.float32)
    member[np.arange(mix.D), mix.class_of_column] = 1.0
    member = jnp.asarray(member, dtype)
    U = mix.stacked_bases

    def blocks(v):
        e = jnp.square(v @ U) @ member  # (N, K)
        return jnp.sum(e * onehot, axis=1), jnp.sum(e * (1.0 - onehot), axis=1)

    own_x0, other_x0 = blocks(x0)
    own_out, other_out = blocks(out)
    keep_own, keep_own_se = _ratio_of_means(own_out, own_x0)
    keep_other, keep_other_se = _ratio_of_means(other_out, other_x0)
    # Coordinates on the first column of each class basis (P1 Fig. 15).
    probe = jnp.stack([b[:, 0] for b in mix.bases], axis=1)  # (n, K)
    c_out = out @ probe
    own_axis = jnp.sum(jnp.square(c_out) * onehot, axis=1) / jnp.sum(jnp.square(c_out), axis=1)
    return dict(
        **basic,
        own_retention=keep_own, own_retention_se=keep_own_se,
        other_retention=keep_other, other_retention_se=keep_other_se,
        own_axis_fraction=jnp.mean(own_axis), own_axis_fraction_se=jnp.std(own_axis, ddof=1) / root_n,
        rms_projection=jnp.sqrt(jnp.mean(jnp.sum(jnp.square(c_out), axis=1))),
        points_in=(x_t / scale) @ probe, points_out=c_out, labels=labels,
    )


_POINT_KEYS = ("points_in", "points_out", "labels")


def sampled_snr(mix: MoLRG, sigmas: Any, scales: Any = None, *, key: Array, num_samples: int,
                num_points: int = 0, extras: bool = True) -> dict:
    """SNR of the exact denoiser's outputs by sampling the model, one fresh batch per noise level.

    For each ``sigma_j`` (and scale ``s_j``): ``x_0 ~ mix`` (``num_samples`` draws),
    ``x_t = s_j (x_0 + sigma_j eps)``, ``xh = E[x_0 | x_t]`` (:func:`molrg.denoise`), then
    :func:`snr_per_class` (P1 Definition 1 with delta-method standard errors), the mean
    posterior confidence in the true class ``E[p(k_true | x_t)]``, the Bayes accuracy, how much
    block energy the output keeps (``E||U_k^T xh||^2 / E||U_k^T x_0||^2`` on the own class, the
    same over the other classes' blocks) and the coordinates on the first column of each
    ``U_k``. Batches at different levels are independent, so errors of different levels
    combine as independent (as :func:`unimodality` assumes). One compiled program per model
    shape and ``num_samples`` serves any grid (a short host loop over the levels; memory of
    one batch).

    Args:
      mix: the mixture (:class:`molrg.MoLRG`).
      sigmas: ``(S,)`` noise levels > 0.
      scales: ``(S,)`` signal scales > 0 (default 1: variance exploding).
      key: PRNG key (split into one key per level).
      num_samples: samples per noise level (int >= 2; static).
      num_points: also return the first ``num_points`` samples' coordinates (``points_in`` of
        ``x_t / s``, ``points_out`` of ``xh``, each ``(S, num_points, K)``) and ``labels``.
      extras: compute the retentions, own-axis fractions and coordinates; without them only the
        SNR, confidence and accuracy statistics (a separate, cheaper compiled program).

    Returns:
      dict of NumPy arrays: ``snr``, ``snr_se``, ``pooled``, ``pooled_se``, ``confidence``,
      ``confidence_se``, ``bayes_accuracy``, ``bayes_accuracy_se`` (each ``(S,)``) and
      ``ratio``, ``ratio_se``, ``count`` (each ``(S, K)``, per class); with ``extras`` also
      ``own_retention``, ``other_retention`` (+ ``_se``), ``own_axis_fraction`` (+ ``_se``) and
      ``rms_projection`` (each ``(S,)``).

    Example:
      >>> st = sampled_snr(molrg.paper_molrg(jax.random.key(0)), [0.1, 0.3, 1.0],
      ...                  key=jax.random.key(1), num_samples=4000)
    """
    dtype = mix.dtype
    sig = np.asarray(sigmas, np.float64).reshape(-1)
    sc = np.ones_like(sig) if scales is None else np.asarray(scales, np.float64).reshape(-1)
    if sc.shape != sig.shape:
        raise ValueError(f"scales: must have one value per sigma ({sig.shape[0]}); got {sc.shape[0]}")
    if sig.size == 0:
        raise ValueError("sigmas: need at least one noise level")
    if np.any(sig <= 0) or np.any(sc <= 0) or not np.all(np.isfinite(sig)) or not np.all(np.isfinite(sc)):
        raise ValueError("sigmas: every sigma and scale must be finite and > 0")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"num_samples: must be an integer >= 2; got {num_samples!r}")
    if not 0 <= num_points <= num_samples:
        raise ValueError(f"num_points: must lie in [0, num_samples]; got {num_points}")
    if num_points and not extras:
        raise ValueError("num_points: needs extras=True")
    keys = jax.random.split(key, sig.shape[0])
    levels = []
    for j in range(sig.shape[0]):
        res = _level_stats(mix, jnp.asarray(sig[j], dtype), jnp.asarray(sc[j], dtype), keys[j], int(num_samples),
                           bool(extras))
        levels.append({k: np.asarray(v[:num_points] if k in _POINT_KEYS else v) for k, v in res.items()
                       if num_points or k not in _POINT_KEYS})
    return {k: np.stack([lv[k] for lv in levels]) for k in levels[0]}
