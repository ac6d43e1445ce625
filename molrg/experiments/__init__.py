"""The experiment catalogue: importing this package registers every experiment.

Each module defines a frozen config of paper-scale defaults, a ``run`` that returns
:class:`molrg.runner.Results`, and a ``plot`` that draws from saved results.
"""

import importlib

_MODULES = ["demo", "mechanism", "approximation", "geometry", "relaxations", "peak_map", "probes",
            "fig3_trained", "phase_transition", "memorization", "mlp_memorization"]

for _name in _MODULES:
    try:
        importlib.import_module(f"molrg.experiments.{_name}")
    except ModuleNotFoundError as exc:  # modules not written yet are simply absent
        if exc.name != f"molrg.experiments.{_name}":
            raise
