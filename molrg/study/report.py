"""The report of ``molrg reproduce``: ``REPORT.md`` (claims, then each experiment with its
figures) and ``checks.json``, both written atomically into the figure folder."""

from __future__ import annotations

import datetime
import os

from molrg.study.claims import format_measured, summary
from molrg.study.results import atomic_write, load_results, provenance, write_json_atomic


def write_checks(claims, path: str) -> None:
    """The claims as JSON (:func:`molrg.study.claims.summary`) with provenance."""
    payload = summary(claims)
    payload["provenance"] = provenance()
    write_json_atomic(path, payload)


def write_report(claims, ran, fig_dir: str, *, quick: bool, seconds: float) -> str:
    """``fig_dir/REPORT.md``; ``ran`` is a list of ``(experiment, results_dir, seconds)``."""
    prov = provenance()
    scale = "quick (smoke-test scale; not the committed results)" if quick else "full"
    lines = ["# molrg report" + (" (quick)" if quick else ""), "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} "
             f"by `molrg reproduce{' --quick' if quick else ''}` in {seconds:.0f} s, scale: {scale} "
             f"(molrg {prov['molrg']}, git {prov['git']}, jax {prov['jax']}, devices {prov['devices']}).",
             "", "## Claims", "",
             "| verdict | claim | measured | tolerance |", "|---|---|---|---|"]
    for c in claims:
        fig = f" ([figure]({c.figure}))" if c.figure else ""
        lines.append(f"| **{c.verdict}** | `{c.name}`: {c.statement}{fig} | {format_measured(c.measured)} "
                     f"| {c.tolerance} |")
    lines += ["", "## Experiments", ""]
    for exp, path, dt in ran:
        res = load_results(path)
        lines += [f"### {exp.name}" + (f" — {exp.paper}" if exp.paper else ""), "", exp.summary + ".", "",
                  f"Results: `{os.path.relpath(path, os.path.dirname(fig_dir))}` ({dt:.0f} s).", ""]
        text = res["scalars"].get("summary")
        if text:
            lines += [text, ""]
        for f in sorted(os.listdir(fig_dir)):
            if f.startswith(exp.name) and f.endswith(".png"):
                lines.append(f"![{f}]({f})")
        lines.append("")
    path = os.path.join(fig_dir, "REPORT.md")
    with atomic_write(path) as fh:
        fh.write("\n".join(lines) + "\n")
    return path
