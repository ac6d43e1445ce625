"""The experiment catalogue: one module per experiment, listed in :data:`MODULES`.

Each module defines a frozen config of paper-scale defaults, ``run`` (computes and returns
:class:`molrg.study.Results`), ``plot`` (draws from saved results), optionally ``claims``
(the claims it tests, computed from its saved results), and two names the catalogue reads:
``EXPERIMENT`` (a :class:`molrg.study.Experiment`, or None for a sweep-only module) and
``SWEEPABLES`` (its :class:`molrg.study.Sweepable` studies, possibly none). The order of
:data:`MODULES` is the order of ``molrg list``, ``molrg check`` and ``molrg reproduce``.
"""

from __future__ import annotations

from molrg import study
from molrg.experiments import (approximation, demo, fig3_trained, geometry, mechanism, memorization,
                               mlp_memorization, optimal_snr, peak_map, phase_transition, probes,
                               real_digits, relaxations)

MODULES = (demo, mechanism, approximation, geometry, relaxations, peak_map, probes, fig3_trained,
           phase_transition, memorization, mlp_memorization, real_digits, optimal_snr)

EXPERIMENTS: dict[str, study.Experiment] = {
    m.EXPERIMENT.name: m.EXPERIMENT for m in MODULES if m.EXPERIMENT is not None}
SWEEPABLES: dict[str, study.Sweepable] = {sw.name: sw for m in MODULES for sw in m.SWEEPABLES}


def get(name: str) -> study.Experiment:
    """The experiment called ``name``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment: unknown name {name!r}; known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def sweepable(name: str) -> study.Sweepable:
    """The sweepable study called ``name``."""
    if name not in SWEEPABLES:
        raise ValueError(f"sweep: unknown study {name!r}; known: {', '.join(sorted(SWEEPABLES))}")
    return SWEEPABLES[name]


def run_experiment(name: str, **kwargs) -> str:
    """:func:`molrg.study.run_experiment` for the experiment called ``name``."""
    return study.run_experiment(get(name), **kwargs)


def run_sweep(name: str, grids: dict, **kwargs) -> dict:
    """:func:`molrg.study.run_sweep` for the study called ``name``."""
    return study.run_sweep(sweepable(name), grids, **kwargs)
