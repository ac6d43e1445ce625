"""Optimisation certificates: did a trained or clustered estimate reach the optimum?

A verdict on a trained network or a clustering is about the theory only if the optimiser
found the optimum of its objective. molrg certifies every such estimate by comparing the
objective it reached, ``found``, with the same objective evaluated at the ground truth
refitted on the same training points, ``truth`` (for a denoising network: the empirical
denoising loss on the same noise draws, with the network started at the true subspaces and
trained; for a clustering: the residual of the true partition, each class refitted by PCA).

* ``found <= truth + rtol |truth| + atol``: the optimiser **reached** the optimum (or beat
  the truth's objective: with few samples the empirical objective can prefer another
  solution). An estimate that reached it and still misses the subspaces is a
  **sample-complexity failure** -- the data do not determine the answer, which is what a
  sample-complexity theorem is about.
* otherwise the estimate is an **optimisation failure**: a better solution exists on the
  same data, so a miss says nothing about the theory.

:func:`certificate` and :func:`outcome` are plain array operations (``jit``/``vmap``
safe); :func:`split` counts outcomes for a claim or a figure.
"""

from __future__ import annotations

import numpy as np

import jax.numpy as jnp

#: outcome codes of :func:`outcome`, in this order.
OUTCOMES = ("success", "optimisation failure", "sample-complexity failure")
SUCCESS, OPTIMISATION_FAILURE, SAMPLE_COMPLEXITY_FAILURE = range(3)


def _check_tolerance(name, value):
    if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def reached(found, truth, *, rtol: float, atol: float = 0.0):
    """Whether the objective ``found`` is within ``rtol |truth| + atol`` of (or below) the
    ground truth's objective ``truth`` on the same data (elementwise; NaN -> False)."""
    _check_tolerance("rtol", rtol)
    _check_tolerance("atol", atol)
    found, truth = jnp.asarray(found), jnp.asarray(truth)
    return found <= truth + rtol * jnp.abs(truth) + atol


def certificate(found, truth, *, rtol: float, atol: float = 0.0) -> dict:
    """The certificate of one estimate or an array of them: ``objective`` (found),
    ``objective_truth``, ``excess`` = found - truth (negative: below the truth's objective),
    ``relative_excess`` = ``excess / abs(truth)``, and ``reached`` (see :func:`reached`)."""
    found, truth = jnp.asarray(found), jnp.asarray(truth)
    excess = found - truth
    return {"objective": found, "objective_truth": truth, "excess": excess,
            "relative_excess": excess / jnp.maximum(jnp.abs(truth), jnp.finfo(excess.dtype).tiny),
            "reached": reached(found, truth, rtol=rtol, atol=atol)}


def outcome(recovered, reached_optimum):
    """Outcome code per estimate: :data:`SUCCESS` when it recovered the truth, else
    :data:`OPTIMISATION_FAILURE` when the optimiser did not reach the certified optimum, else
    :data:`SAMPLE_COMPLEXITY_FAILURE`."""
    recovered = jnp.asarray(recovered, bool)
    reached_optimum = jnp.asarray(reached_optimum, bool)
    return jnp.where(recovered, SUCCESS,
                     jnp.where(reached_optimum, SAMPLE_COMPLEXITY_FAILURE, OPTIMISATION_FAILURE))


def split(outcomes) -> dict:
    """Counts and fractions of each outcome: ``{"n": ..., "success": ..., "optimisation failure":
    ..., "sample-complexity failure": ..., "success_rate": ..., "optimisation_failure_rate": ...,
    "sample_complexity_failure_rate": ...}`` (rates NaN for an empty input)."""
    codes = np.asarray(outcomes).ravel()
    if codes.size and not np.isin(codes, range(len(OUTCOMES))).all():
        raise ValueError(f"outcomes must be codes in 0..{len(OUTCOMES) - 1}, got {np.unique(codes)}")
    n = int(codes.size)
    out = {"n": n}
    for code, name in enumerate(OUTCOMES):
        count = int((codes == code).sum())
        out[name] = count
        out[name.replace("-", "_").replace(" ", "_") + "_rate"] = count / n if n else float("nan")
    return out
