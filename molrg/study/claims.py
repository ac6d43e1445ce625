"""Claims as data: a statement, the numbers measured, a tolerance and a verdict.

An experiment's ``claims(results)`` turns its saved results into :class:`Claim` objects.
Tolerances derive from standard errors wherever sampling is involved; a claim of a paper
that does not hold is reported as FAIL with its numbers, never tuned to pass.
:func:`evaluate` runs one experiment's claims from its results folder; a claim function
that crashes becomes one failed claim with its traceback, not a crashed report.
"""

from __future__ import annotations

import dataclasses
import time
import traceback

from molrg.study.results import load_results


@dataclasses.dataclass
class Claim:
    name: str
    statement: str
    measured: dict
    tolerance: str
    passed: bool
    figure: str | None = None
    seconds: float = 0.0
    #: where the claim comes from: "P0", "P1" (the papers) or "molrg" (molrg's own finding or
    #: conjecture, derived or measured here).
    source: str | None = None
    #: the verdict molrg expects ("PASS" or "FAIL") and why; ``molrg check`` exits 1 when a
    #: verdict differs from its expectation (or a claim states none).
    expected: str | None = None
    reason: str = ""

    def __post_init__(self):
        if self.source is not None and self.source not in SOURCES:
            raise ValueError(f"Claim {self.name!r}: source must be one of {SOURCES}, got {self.source!r}")
        if self.expected is not None and self.expected not in ("PASS", "FAIL"):
            raise ValueError(f"Claim {self.name!r}: expected must be 'PASS' or 'FAIL', got {self.expected!r}")
        if self.expected == "FAIL" and not self.reason:
            raise ValueError(f"Claim {self.name!r}: an expected FAIL needs a reason")

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def as_expected(self) -> bool:
        """The verdict is the one molrg expects (False when no expectation is stated)."""
        return self.expected is not None and self.source is not None and self.verdict == self.expected


SOURCES = ("P0", "P1", "molrg")


def evaluate(exp, results_dir: str, *, verbose: bool = True) -> list[Claim]:
    """The claims of experiment ``exp`` computed from its saved results in ``results_dir``."""
    if exp.claims is None:
        return []
    t0 = time.perf_counter()
    quick = False
    try:
        results = load_results(results_dir)
        quick = bool(results["manifest"].get("quick", False))
        got = list(exp.claims(results))
    except Exception as exc:  # a crashing claim function is a failed claim
        got = [Claim(exp.name, "claims computed from the saved results",
                     {"error": repr(exc), "traceback": traceback.format_exc()[-2000:]},
                     "no exception", False, source="molrg", expected="PASS")]
    dt = time.perf_counter() - t0
    for c in got:
        c.seconds = dt / max(len(got), 1)
        if quick and c.name in exp.quick_fails:
            c.expected, c.reason = "FAIL", "quick scale: " + exp.quick_fails[c.name]
        if verbose:
            note = "" if c.as_expected else f"  <-- UNEXPECTED (expected {c.expected})"
            print(f"  [{c.verdict}] {c.name}: {c.statement}{note}", flush=True)
            print(f"         measured {format_measured(c.measured)}; tolerance: {c.tolerance}", flush=True)
    return got


def format_measured(m: dict) -> str:
    """``measured`` as one line: floats to 4 significant digits, lists of floats to 3."""
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


def summary(claims: list[Claim]) -> dict:
    """The JSON report of ``molrg check --json`` and ``figures/checks.json``."""
    return {
        "passed": sum(c.passed for c in claims),
        "failed": sum(not c.passed for c in claims),
        "as_expected": sum(c.as_expected for c in claims),
        "unexpected": [c.name for c in claims if not c.as_expected],
        "claims": [dataclasses.asdict(c) | {"verdict": c.verdict, "as_expected": c.as_expected}
                   for c in claims],
    }
