"""The report of ``molrg reproduce``: ``REPORT.md`` (claims, then each experiment with its
figures) and ``checks.json``, both written atomically into the figure folder."""

from __future__ import annotations

import datetime
import json
import os

from molrg.study.claims import format_measured, summary
from molrg.study.results import atomic_write, load_results, provenance, write_json_atomic


def write_checks(claims, path: str) -> None:
    """The claims as JSON (:func:`molrg.study.claims.summary`) with provenance."""
    payload = summary(claims)
    payload["provenance"] = provenance()
    write_json_atomic(path, payload)


def _claim_row(c) -> str:
    fig = f" ([figure]({c.figure}))" if c.figure else ""
    why = f" {c.reason}" if c.reason else ""
    return (f"| **{c.verdict}** | `{c.name}` ({c.source}): {c.statement}{fig} | {format_measured(c.measured)} "
            f"| {c.tolerance} | {c.expected}{why} |")


#: the report's claim sections: (title, test on a claim).
SECTIONS = (
    ("Unexpected verdicts (a regression, or an expectation to revisit)", lambda c: not c.as_expected),
    ("Paper claims reproduced", lambda c: c.as_expected and c.source in ("P0", "P1") and c.passed),
    ("Paper claims not reproduced (with numbers)",
     lambda c: c.as_expected and c.source in ("P0", "P1") and not c.passed),
    ("molrg's own findings (derived laws, conjectures and checks of molrg's own)",
     lambda c: c.as_expected and c.source == "molrg"),
)


def claim_sections(claims) -> list[str]:
    """The claims as markdown tables in the sections of :data:`SECTIONS` (empty ones left out),
    after one line counting verdicts and expectations."""
    unexpected = sum(not c.as_expected for c in claims)
    lines = [f"{len(claims)} claims: {sum(c.passed for c in claims)} PASS, "
             f"{sum(not c.passed for c in claims)} FAIL; {len(claims) - unexpected} as molrg expects, "
             f"{unexpected} not (`molrg check` exits {1 if unexpected else 0}).", ""]
    for title, keep in SECTIONS:
        sel = [c for c in claims if keep(c)]
        if not sel:
            continue
        lines += [f"### {title}", "", "| verdict | claim (source) | measured | tolerance | expected |",
                  "|---|---|---|---|---|"]
        lines += [_claim_row(c) for c in sel]
        lines.append("")
    return lines


def write_report(claims, ran, fig_dir: str, *, quick: bool, seconds: float) -> str:
    """``fig_dir/REPORT.md``; ``ran`` is a list of ``(experiment, results_dir, seconds)`` or
    ``(experiment, results_dir, seconds, figure_paths)``.

    With ``figure_paths`` (what the experiment's ``plot`` returned) the report shows exactly
    those PNGs; without, the PNGs in ``fig_dir`` whose names start with the experiment's name.
    Quick figures carry the mark of :func:`molrg.study.plotting.mark_quick`.
    """
    prov = provenance()
    scale = ("quick (smoke-test scale; not the committed results; every figure is marked QUICK)" if quick
             else "full")
    lines = ["# molrg report" + (" (quick)" if quick else ""), "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} "
             f"by `molrg reproduce{' --quick' if quick else ''}` in {seconds:.0f} s, scale: {scale} "
             f"(molrg {prov['molrg']}, git {prov['git']}, jax {prov['jax']}, devices {prov['devices']}).",
             "", "## Claims", ""]
    lines += claim_sections(claims)
    lines += ["", "## Experiments", ""]
    for exp, path, dt, *figures in ran:
        res = load_results(path)
        lines += [f"### {exp.name}" + (f" — {exp.paper}" if exp.paper else ""), "", exp.summary + ".", "",
                  f"Results: `{os.path.relpath(path, os.path.dirname(fig_dir))}` ({dt:.0f} s).", ""]
        text = res["scalars"].get("summary")
        if text:
            lines += [text, ""]
        listed = os.path.join(path, "figures.json")
        if not figures and os.path.exists(listed):  # what run_experiment drew
            with open(listed) as fh:
                figures = [json.load(fh)]
        if figures:
            pngs = [os.path.basename(f) for f in figures[0] if f.endswith(".png")]
        else:
            pngs = [f for f in sorted(os.listdir(fig_dir)) if f.startswith(exp.name) and f.endswith(".png")]
        lines += [f"![{f}]({f})" for f in pngs]
        lines.append("")
    path = os.path.join(fig_dir, "REPORT.md")
    with atomic_write(path) as fh:
        fh.write("\n".join(lines) + "\n")
    return path
