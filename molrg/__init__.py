"""molrg: exact theory of diffusion-model representations on mixtures of low-rank Gaussians.

Top-level names are the core (data model, exact posterior/denoiser/score, empirical
denoiser); the core's submodules hold the rest: ``schedules``, ``theory``, ``peaks``,
``subspaces``, ``metrics``, ``probes``, ``sample_quality``, ``networks``, ``training``,
``checkpoint``, ``sampling``, ``fitting``. Above the core: ``molrg.study`` (configs, results,
runner, sweep engine, claims, report), ``molrg.experiments`` (the catalogue) and ``molrg.cli``;
``molrg.load(path)`` reads a saved run or sweep as pandas DataFrames (it imports the study
layer when called, not at ``import molrg``). The maths, with the function that computes each
formula: ``docs/theory.md``.
"""

from molrg.mixture import MoLRG, Geometry, geometry, paper_molrg, random_molrg, separated_means
from molrg.posterior import denoise, log_posterior, posterior, predict_noise, score
from molrg.empirical import empirical_denoise
from molrg import (checkpoint, fitting, metrics, networks, peaks, probes, sample_quality, sampling,
                   schedules, subspaces, theory, training)

__version__ = "0.1.0"


def load(path, table=None):
    """A saved result folder as pandas DataFrames: :func:`molrg.study.tables.load`.

    A sweep folder gives one DataFrame (one row per saved point: ``key``, config fields,
    outputs, ``finite``); a run folder gives ``{table name: DataFrame}`` (or the one
    ``table``); ``results/latest`` links to the folder written last.
    """
    # imported when called: ``import molrg`` loads the core only, never the study layer
    from molrg.study.tables import load as load_tables
    return load_tables(path, table)


__all__ = [
    "MoLRG", "Geometry", "geometry", "random_molrg", "paper_molrg", "separated_means",
    "posterior", "log_posterior", "denoise", "predict_noise", "score", "empirical_denoise",
    "schedules", "metrics", "probes", "theory", "networks", "training", "sampling", "sample_quality",
    "checkpoint", "peaks", "subspaces", "fitting", "load",
    "__version__",
]
