"""molrg: exact theory of diffusion-model representations on mixtures of low-rank Gaussians.

Top-level names are the core (data model, exact posterior/denoiser/score, empirical
denoiser); the core's submodules hold the rest: ``schedules``, ``theory``, ``peaks``,
``subspaces``, ``metrics``, ``probes``, ``sample_quality``, ``networks``, ``training``,
``checkpoint``, ``sampling``. Above the core: ``molrg.study`` (configs, results, runner, sweep
engine, claims, report), ``molrg.experiments`` (the catalogue) and ``molrg.cli``. The maths,
with the function that computes each formula: ``docs/theory.md``.
"""

from molrg.mixture import MoLRG, Geometry, geometry, paper_molrg, random_molrg, separated_means
from molrg.posterior import denoise, log_posterior, posterior, predict_noise, score
from molrg.empirical import empirical_denoise
from molrg import (checkpoint, metrics, networks, peaks, probes, sample_quality, sampling, schedules,
                   subspaces, theory, training)

__version__ = "0.1.0"

__all__ = [
    "MoLRG", "Geometry", "geometry", "random_molrg", "paper_molrg", "separated_means",
    "posterior", "log_posterior", "denoise", "predict_noise", "score", "empirical_denoise",
    "schedules", "metrics", "probes", "theory", "networks", "training", "sampling", "sample_quality",
    "checkpoint", "peaks", "subspaces",
    "__version__",
]
