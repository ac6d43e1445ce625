"""Classifiers on features across noise levels (docs/theory.md section 5): P1's linear probe
and projection classifier.

- `linear_probe`: multinomial logistic regression fitted on the features of a training split
  (L-BFGS to a dtype-aware gradient tolerance), accuracy on a test split.
- `projection_classifier`: `argmax_k ||P_k h||^2` with class subspaces fitted on the training
  split by P1's recipe (:func:`molrg.metrics.class_subspaces`).

Inputs are checked as in :mod:`molrg.metrics` (shapes always, values when concrete).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from molrg.metrics import (_HIGHEST, ClassSubspaces, _accuracy, _check_finite, _float_array, _int_labels,
                           _is_concrete, _like_columns, _num_classes, _unit_rows, class_subspaces)

__all__ = ["LinearProbe", "ProjectionClassifier", "linear_probe", "projection_classifier"]

Array = jax.Array


class LinearProbe(NamedTuple):
    """A fitted multinomial logistic-regression probe.

    Attributes:
      accuracy: () accuracy on the test split.
      train_accuracy: () accuracy on the training split.
      loss: () final training objective (mean cross-entropy + (l2/2) ||W||_F^2).
      grad_norm: () Euclidean norm of the objective's gradient at the returned parameters (a
        convergence check: small means converged).
      iterations: () number of L-BFGS steps taken (< `steps` when it converged to `gtol` first).
      weights: (m, K) weights acting on standardised features.
      bias: (K,) bias (not penalised).
      mean: (m,) training mean used to standardise.
      scale: (m,) training standard deviation used to standardise (1 for constant features).
    """

    accuracy: Array
    train_accuracy: Array
    loss: Array
    grad_norm: Array
    iterations: Array
    weights: Array
    bias: Array
    mean: Array
    scale: Array


def _tree_select(pred: Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree.map(lambda t, f: jnp.where(pred, t, f), on_true, on_false)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps", "memory_size"))
def _fit_linear_probe(train_x, train_y, test_x, test_y, l2, gtol, num_classes, steps, memory_size):
    dtype = train_x.dtype
    mean = jnp.mean(train_x, axis=0)
    std = jnp.std(train_x, axis=0)
    scale = jnp.where(std > 0, std, jnp.ones_like(std))
    z_train = (train_x - mean[None, :]) / scale[None, :]
    z_test = (test_x - mean[None, :]) / scale[None, :]
    onehot = jax.nn.one_hot(train_y, num_classes, dtype=dtype)

    def objective(params):
        weights, bias = params
        logits = jnp.matmul(z_train, weights, precision=_HIGHEST) + bias[None, :]
        nll = jnp.mean(jax.nn.logsumexp(logits, axis=-1) - jnp.sum(onehot * logits, axis=-1))
        return nll + 0.5 * l2 * jnp.sum(weights**2)

    params = (jnp.zeros((z_train.shape[1], num_classes), dtype), jnp.zeros((num_classes,), dtype))
    solver = optax.lbfgs(memory_size=memory_size)
    value_and_grad = optax.value_and_grad_from_state(objective)
    inf = jnp.asarray(jnp.inf, dtype)

    def keep_going(carry):
        iteration, *_, done = carry
        return (iteration < steps) & ~done

    def step(carry):
        iteration, params, state, best_params, best_value, _ = carry
        value, grad = value_and_grad(params, state=state)
        better = value < best_value
        best_params = _tree_select(better, params, best_params)
        best_value = jnp.where(better, value, best_value)
        # Stop once converged (or broken): further L-BFGS steps on a ~zero gradient are wasted work
        # and can be numerically ill-defined. The iteration cap keeps the loop bounded; under vmap
        # the loop runs until every member has stopped, finished members unchanged.
        done = (optax.tree.norm(grad) <= gtol) | ~jnp.isfinite(value)
        # optax's L-BFGS mixes int32/int64 internally; allow standard promotion inside it only.
        with jax.numpy_dtype_promotion("standard"):
            updates, new_state = solver.update(
                grad, state, params, value=value, grad=grad, value_fn=objective
            )
        new_params = optax.apply_updates(params, updates)
        params = _tree_select(done, params, new_params)
        state = _tree_select(done, state, new_state)
        iteration = iteration + jnp.where(done, 0, 1).astype(iteration.dtype)
        return iteration, params, state, best_params, best_value, done

    with jax.numpy_dtype_promotion("standard"):
        state = solver.init(params)
    init = (jnp.asarray(0, jnp.int32), params, state, params, inf, jnp.asarray(False))
    iterations, params, _, best_params, best_value, _ = jax.lax.while_loop(keep_going, step, init)
    # The last iterate may not have been compared yet; return the best of all iterates.
    last_value = objective(params)
    better = last_value < best_value
    params = _tree_select(better, params, best_params)
    loss, grad = jax.value_and_grad(objective)(params)
    weights, bias = params
    train_logits = jnp.matmul(z_train, weights, precision=_HIGHEST) + bias[None, :]
    test_logits = jnp.matmul(z_test, weights, precision=_HIGHEST) + bias[None, :]
    return LinearProbe(
        accuracy=_accuracy(test_logits, test_y),
        train_accuracy=_accuracy(train_logits, train_y),
        loss=loss,
        grad_norm=optax.tree.norm(grad),
        iterations=iterations,
        weights=weights,
        bias=bias,
        mean=mean,
        scale=scale,
    )


def _check_split(train_features, train_labels, test_features, test_labels, num_classes):
    train_features = _float_array(train_features, "train_features", 2)
    test_features = _like_columns(test_features, "test_features", train_features, "train_features")
    train_labels = _int_labels(train_labels, "train_labels", train_features.shape[0], num_classes)
    test_labels = _int_labels(test_labels, "test_labels", test_features.shape[0], num_classes)
    if train_features.shape[0] < 1 or test_features.shape[0] < 1:
        raise ValueError("train_features, test_features: must have at least one row each")
    _check_finite(train_features, "train_features")
    _check_finite(test_features, "test_features")
    return train_features, train_labels, test_features, test_labels


def linear_probe(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    *,
    num_classes: int,
    l2: float = 1e-3,
    steps: int = 300,
    memory_size: int = 10,
    gtol: float | None = None,
) -> LinearProbe:
    """Linear probe: multinomial logistic regression with L2 on standardised features.

    Features are standardised with the training split's per-feature mean and standard deviation
    (ddof=0; constant features are only centred), `z = (h - mean) / scale`. The probe minimises::

        L(W, b) = (1/N) sum_i [ logsumexp_k (z_i W + b)_k - (z_i W + b)_{y_i} ] + (l2/2) ||W||_F^2

    (bias unpenalised) by full-batch L-BFGS (`optax.lbfgs`, zoom line search) from zero, in a
    `lax.while_loop` that stops when the gradient norm falls to `gtol` or after `steps` steps; the
    iterate with the lowest objective is returned. Deterministic (same inputs, same result),
    `jit`-able, and `vmap`-able over a leading noise-level axis of the features (close over the
    labels); under vmap the loop runs until the slowest member stops. Not differentiable (nothing
    here needs gradients through the fit).

    Args:
      train_features: (N, m) training features.
      train_labels: (N,) integer classes in [0, num_classes).
      test_features: (M, m) test features.
      test_labels: (M,) integer classes.
      num_classes: K (static).
      l2: L2 strength on W (may be traced), >= 0; with l2 = 0 and separable data the optimum is
        at infinity and the loss only approaches 0.
      steps: maximum number of L-BFGS iterations (static), >= 1.
      memory_size: L-BFGS history length (static), >= 1.
      gtol: gradient-norm tolerance for stopping, >= 0. Default: 1e-9 for float64 features,
        1e-5 otherwise. float32 cannot reach 1e-9: its fits then ran all `steps`, each L-BFGS
        step at the rounding floor costing many line-search evaluations (measured: 300 steps on
        six (3000, 128) float32 problems took 31 s; with 1e-5 they stop after 15 steps in
        0.25 s with the same loss to 7 digits and the same accuracies).

    Returns:
      `LinearProbe`; check `grad_norm` for convergence.
    """
    num_classes = _num_classes(num_classes)
    for name, value in (("steps", steps), ("memory_size", memory_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: must be an int >= 1, got {value!r}")
    for name, value in (("l2", l2), ("gtol", 0.0 if gtol is None else gtol)):
        if _is_concrete(value) and not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name}: must be finite and >= 0, got {value!r}")
    train_features, train_labels, test_features, test_labels = _check_split(
        train_features, train_labels, test_features, test_labels, num_classes
    )
    dtype = train_features.dtype
    if gtol is None:
        gtol = 1e-9 if dtype == jnp.float64 else 1e-5
    return _fit_linear_probe(
        train_features,
        train_labels,
        test_features,
        test_labels,
        jnp.asarray(l2, dtype),
        jnp.asarray(gtol, dtype),
        num_classes,
        int(steps),
        int(memory_size),
    )


class ProjectionClassifier(NamedTuple):
    """Result of `projection_classifier`.

    Attributes:
      accuracy: () test accuracy.
      train_accuracy: () training accuracy.
      subspaces: the `ClassSubspaces` fitted on the training split.
    """

    accuracy: Array
    train_accuracy: Array
    subspaces: ClassSubspaces


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _projection_scores(features: Array, fit: ClassSubspaces, num_classes: int) -> Array:
    centred = _unit_rows(features) - fit.mean[None, :]
    coef = jnp.einsum("im,kmr->ikr", centred, fit.bases, precision=_HIGHEST)
    return jnp.sum(coef**2, axis=-1)


def projection_classifier(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    *,
    num_classes: int,
    rank: int = 5,
) -> ProjectionClassifier:
    """Subspace classifier: predict `argmax_k ||V_k^T z||^2` with class subspaces of the train split.

    `V_k` and the preprocessing `z = h/||h|| - mu` are those of `class_subspaces` fitted on the
    training split (the same recipe as `feature_snr`); test features get the training mean.

    Args:
      train_features: (N, m).
      train_labels: (N,) integer classes; every class needs >= `rank` samples.
      test_features: (M, m).
      test_labels: (M,).
      num_classes: K (static).
      rank: subspace dimension (static).

    Returns:
      `ProjectionClassifier` with test and train accuracy and the fitted subspaces.
    """
    num_classes = _num_classes(num_classes)
    train_features, train_labels, test_features, test_labels = _check_split(
        train_features, train_labels, test_features, test_labels, num_classes
    )
    fit = class_subspaces(train_features, train_labels, num_classes=num_classes, rank=rank)
    return ProjectionClassifier(
        accuracy=_accuracy(_projection_scores(test_features, fit, num_classes), test_labels),
        train_accuracy=_accuracy(_projection_scores(train_features, fit, num_classes), train_labels),
        subspaces=fit,
    )
