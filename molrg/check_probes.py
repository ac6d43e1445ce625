"""Claims about the peak of the exact SNR and about classifiers on optimal-denoiser features.

Each claim reruns the computation of its experiment (``molrg.experiments.peak_map`` and
``molrg.experiments.probes``) at a check scale and reports what was measured; verdicts
follow the experiments' own rules (quadrature precision, Monte Carlo standard errors,
:func:`molrg.metrics.unimodality`), never a tolerance chosen to make a claim pass.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from molrg.checks import Claim, check
from molrg.runner import apply_overrides

# Check scale: the experiments' quick overrides (compilation dominates; the programs are shared
# with `molrg run --quick` in one process) or their defaults (the peak map's 315-cell grid, the
# probes at P1's scale). The approximate-SNR comparison of the peak map is not needed here.


@functools.lru_cache(maxsize=2)
def _peak_map(quick: bool):
    from molrg.experiments import peak_map
    cfg = apply_overrides(peak_map.PeakMapConfig(), {**(peak_map.QUICK if quick else {}), "compare_approx": False})
    return cfg, peak_map.run(cfg, verbose=False)


@functools.lru_cache(maxsize=2)
def _probes(quick: bool):
    from molrg.experiments import probes
    cfg = apply_overrides(probes.ProbesConfig(), probes.QUICK if quick else {})
    return cfg, probes.run(cfg, verbose=False)


@check("peak_map")
def peak_map_check(quick: bool):
    return peak_map_claims(*_peak_map(quick))


def peak_map_claims(cfg, res) -> list[Claim]:
    """Claims from a peak-map run (:func:`molrg.experiments.peak_map.run`)."""
    from molrg.experiments import peak_map
    rows = res.tables["peak_map"]
    sc = res.scalars
    laws = sc["laws"]
    n, k = sc["num_cells"], sc["num_interior"]
    none = [(r["d"], r["delta"], r["K"]) for r in rows if not r["interior"]]
    claims = [Claim(
        "peak_map_interior",
        "the exact SNR of the optimal denoiser has an interior peak (above both limits) in every cell with "
        "0 < delta < 1",
        {"cells": n, "interior": k, "fraction_interior": k / n,
         "smallest_delta_without_peak": min((c[1] for c in none), default=None),
         "largest_d_without_peak": max((c[0] for c in none), default=None),
         "min_gain_interior": min((r["gain"] for r in rows if r["interior"]), default=None)},
        f"every cell: SNR* / max(1/((K-1) delta^2), 1/(K-1)) > 1 + {cfg.interior_tol:g} (float32 quadrature "
        "error ~1e-5)",
        k == n)]
    claims.append(Claim(
        "peak_existence_law",
        "an interior peak exists iff delta < delta_c(d, K), the root of G = 2(E[w_k X_k] - E[w_l X_l])/d - 1 "
        "(derived small-noise expansion)",
        {"cells": n, "agreement": laws["existence_agreement"],
         "resolved_cells": laws["existence_resolved_cells"],
         "agreement_resolved": laws["existence_agreement_resolved"],
         "disagreements": [(c["d"], c["delta"], c["K"]) for c in laws["existence_disagreements"]]},
        "agreement in every cell farther than 3 Monte Carlo standard errors from delta_c",
        laws["existence_agreement_resolved"] == 1.0))
    if "power_law" in laws:
        p = laws["power_law"]
        claims.append(Claim(
            "peak_power_law",
            "sigma* follows one power law c delta^a d^b K^c over the interior cells",
            {"exponent_delta": p["coef"]["delta"], "exponent_d": p["coef"]["d"], "exponent_K": p["coef"]["K"],
             "stderr": [p["stderr"]["delta"], p["stderr"]["d"], p["stderr"]["K"]], "r2": p["r2"],
             "worst_factor": math.exp(p["max_abs_residual"]), "cells": p["num_points"]},
            "R^2 >= 0.95 and every cell within a factor 1.25 of the fit",
            peak_map.power_law_holds(p)))
        by = laws["asymptotic_by_delta"]
        small = [b for b in by if b["delta"] <= 0.1]
        errors = [math.exp(b["max_abs_log_error"]) - 1 for b in small]
        shrinking = all(e1 < e2 for e1, e2 in zip(errors, errors[1:]))
        claims.append(Claim(
            "peak_small_delta_law",
            "as delta -> 0, sigma* -> (2d/((d+2) c_dK))^(1/(d+4)) delta^(4/(d+4)) (derived; c_dK by Monte Carlo)",
            {"deltas": [b["delta"] for b in small], "worst_relative_error": errors,
             "median_relative_error": [math.exp(b["median_abs_log_error"]) - 1 for b in small]},
            "the worst relative error over (d, K) shrinks at every step as delta decreases (grid deltas <= 0.1): "
            "convergence, as an asymptotic law can only promise",
            len(small) >= 2 and shrinking))
    return claims


@check("probes")
def probes_check(quick: bool):
    return probes_claims(*_probes(quick))


def probes_claims(cfg, res) -> list[Claim]:
    """Claims from a probes run (:func:`molrg.experiments.probes.run`)."""
    sigmas = np.asarray(res.scalars["sigmas"])
    verdicts = res.scalars["verdicts"]
    rows = res.tables["probes"]
    bayes = [r for r in rows if r["curve"] == "bayes"]
    acc = np.array([r["accuracy"] for r in bayes])
    err = np.array([r["stderr"] for r in bayes])
    rise = np.diff(acc)
    z = rise / np.maximum(np.hypot(err[1:], err[:-1]), 1e-12)
    reps = res.scalars["repeat_verdicts"]
    scale = (f"{cfg.num_repeats} repeats x ({cfg.num_train} train, {cfg.num_test_sets} x {cfg.num_test} test), "
             f"{len(sigmas)} noise levels")
    claims = [Claim(
        "bayes_accuracy_monotone",
        "Bayes accuracy argmax_k p(k | x_t) is non-increasing in sigma",
        {"accuracy_first": float(acc[0]), "accuracy_last": float(acc[-1]), "largest_rise": float(rise.max()),
         "largest_rise_z": float(z.max()), "scale": scale},
        f"no rise between neighbouring noise levels above {cfg.z:g} combined standard errors of the mean over "
        "repeats (conservative: the noise draws are shared across sigma)",
        bool(z.max() <= cfg.z))]
    for key, name, what in (("snr/denoiser", "snr_unimodal", "SNR of the optimal-denoiser output"),
                            ("linear_probe/denoiser", "linear_probe_unimodal",
                             "linear-probe accuracy on optimal-denoiser features"),
                            ("projection/denoiser", "projection_unimodal",
                             "projection-classifier accuracy on optimal-denoiser features")):
        u = verdicts[key]
        claims.append(Claim(
            name, f"{what} is unimodal in sigma (an interior peak)",
            {"verdict": u["verdict"], "peak_sigma": u["peak_x"], "peak_value": u["peak_value"],
             "gain_left": u["gain_left"], "gain_right": u["gain_right"],
             "gain_left_stderr": u["gain_left_stderr"], "gain_right_stderr": u["gain_right_stderr"],
             "verdicts_per_repeat": reps[key], "scale": scale},
            f"metrics.unimodality verdict 'interior peak' on the mean over repeats ({cfg.z:g} within-repeat "
            "standard errors, 1% relative floor)",
            u["verdict"] == "interior peak"))
    return claims
