"""Study infrastructure: configs and overrides, saved results and provenance, progress,
the experiment runner, the sweep engine, claims and the report.

This layer knows no particular experiment (it never imports :mod:`molrg.experiments`);
experiments are handed to it as :class:`Experiment` and :class:`Sweepable` values.
"""

from molrg.study.claims import Claim, evaluate, format_measured
from molrg.study.config import apply_overrides, load_config_file, parse_grids, parse_sets
from molrg.study.progress import Progress
from molrg.study.results import (Results, atomic_write, load_results, provenance, save_figure,
                                 write_json_atomic, write_table)
from molrg.study.runner import Experiment, run_experiment
from molrg.study.sweep import Sweepable, load_points, run_sweep, sweepable

__all__ = [
    "Claim", "evaluate", "format_measured", "apply_overrides", "load_config_file", "parse_grids",
    "parse_sets", "Progress", "Results", "atomic_write", "load_results", "provenance", "save_figure",
    "write_json_atomic", "write_table", "Experiment", "run_experiment", "Sweepable", "load_points",
    "run_sweep", "sweepable",
]
