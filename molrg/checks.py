"""``molrg check``: the theory's claims, each measured, with a tolerance and a verdict.

A check is a function ``fn(quick: bool) -> list[Claim]`` registered with :func:`check`.
Each :class:`Claim` names what is claimed, the numbers measured, the tolerance (derived
from standard errors wherever sampling is involved) and PASS/FAIL. A claim of the paper
that does not hold is reported as FAIL with its numbers; tolerances are never tuned to
make a claim pass.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from typing import Callable

_CHECKS: dict[str, Callable] = {}
_ORDER: list[str] = []


@dataclasses.dataclass
class Claim:
    name: str
    statement: str
    measured: dict
    tolerance: str
    passed: bool
    figure: str | None = None
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


def check(name: str):
    """Decorator registering a check function under ``name`` (run in registration order)."""
    def deco(fn):
        _CHECKS[name] = fn
        if name not in _ORDER:
            _ORDER.append(name)
        return fn
    return deco


_CHECK_MODULES = ["check_core", "check_theory", "check_probes", "check_training", "check_sweeps",
                  "check_mlp_memorization"]


def _load_all():
    import importlib
    for mod in _CHECK_MODULES:
        try:
            importlib.import_module(f"molrg.{mod}")
        except ModuleNotFoundError as exc:  # modules not written yet are simply absent
            if exc.name != f"molrg.{mod}":
                raise


def registered() -> list[str]:
    _load_all()
    return list(_ORDER)


def run_checks(*, quick: bool = False, only: list[str] | None = None, verbose: bool = True) -> list[Claim]:
    _load_all()
    claims: list[Claim] = []
    names = [n for n in _ORDER if not only or n in only]
    unknown = set(only or []) - set(_ORDER)
    if unknown:
        raise ValueError(f"--only: unknown checks {sorted(unknown)}; known: {_ORDER}")
    for name in names:
        t0 = time.perf_counter()
        try:
            got = _CHECKS[name](quick)
        except Exception as exc:  # a crashing check is a failed claim, not a crashed report
            got = [Claim(name, "check ran to completion", {"error": repr(exc),
                                                            "traceback": traceback.format_exc()[-2000:]},
                         "no exception", False)]
        dt = time.perf_counter() - t0
        for c in got:
            c.seconds = dt / max(len(got), 1)
            claims.append(c)
            if verbose:
                print(f"  [{c.verdict}] {c.name}: {c.statement}", flush=True)
                print(f"         measured {_fmt_measured(c.measured)}; tolerance: {c.tolerance}", flush=True)
    return claims


def _fmt_measured(m: dict) -> str:
    parts = []
    for k, v in m.items():
        if k == "traceback":
            continue
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, float) for x in v):
            parts.append(f"{k}=[" + ", ".join(f"{x:.3g}" for x in v) + "]")
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def report(claims: list[Claim]) -> dict:
    return {
        "passed": sum(c.passed for c in claims),
        "failed": sum(not c.passed for c in claims),
        "claims": [dataclasses.asdict(c) | {"verdict": c.verdict} for c in claims],
    }
