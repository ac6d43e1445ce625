"""molrg: exact theory of diffusion-model representations on mixtures of low-rank Gaussians.

Top-level names are the core (data model, exact posterior/denoiser/score, empirical
denoiser); the submodules hold the rest: ``schedules``, ``metrics``, ``theory``,
``networks``, ``training``, ``sampling``, ``memorization``, ``sweep``.
"""

from molrg.mixture import MoLRG, Geometry, geometry, paper_molrg, random_molrg, separated_means
from molrg.posterior import denoise, log_posterior, posterior, predict_noise, score
from molrg.empirical import empirical_denoise
from molrg import metrics, networks, probes, sample_quality, sampling, schedules, theory, training

__version__ = "0.1.0"

__all__ = [
    "MoLRG", "Geometry", "geometry", "random_molrg", "paper_molrg", "separated_means",
    "posterior", "log_posterior", "denoise", "predict_noise", "score", "empirical_denoise",
    "schedules", "metrics", "probes", "theory", "networks", "training", "sampling", "sample_quality",
    "__version__",
]
