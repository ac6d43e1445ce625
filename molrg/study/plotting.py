"""Plotting helpers shared by the experiments' figures (matplotlib is imported lazily)."""

from __future__ import annotations

import numpy as np

__all__ = ["plain_log_ticks", "mark_quick", "is_quick", "paper_style", "QUICK_LABEL", "FULL_WIDTH", "MIN_FONT"]

QUICK_LABEL = "QUICK (smoke-test scale)"
"""The mark on every figure drawn from a quick run (:func:`mark_quick`)."""

FULL_WIDTH = 7.0
"""Width in inches of a figure that spans both columns of a paper page; at most this wide,
with fonts of at least :data:`MIN_FONT` points, a figure is legible printed at its size."""

MIN_FONT = 7.0
"""Smallest font size (points) used in the figures."""


def _plain_number(value: float, _pos=None) -> str:
    """A tick label: ``0.01``, ``1``, ``1000`` for decades in [1e-3, 1e3], ``1e4`` beyond."""
    if value <= 0:
        return ""
    exponent = int(np.round(np.log10(value)))
    if abs(np.log10(value) - exponent) > 1e-6:  # not a decade
        return f"{value:g}"
    return f"{value:g}" if -3 <= exponent <= 3 else f"1e{exponent}"


def plain_log_ticks(ax, axes: str = "xy") -> None:
    """Plain-text decade labels (0.01, 1, 1e4) on log axes instead of mathtext ``10^{k}``.

    Same information; matplotlib's mathtext parser costs ~30 ms per distinct label and makes up
    a quarter of the time spent saving these figures. Linear axes are left alone.

    Args:
      ax: a matplotlib ``Axes``.
      axes: which axes to relabel, any of ``"x"`` and ``"y"``.
    """
    if set(axes) - {"x", "y"}:
        raise ValueError(f"axes: must be made of 'x' and 'y'; got {axes!r}")
    from matplotlib.ticker import FuncFormatter, NullFormatter
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        if axis.get_scale() == "log":
            axis.set_major_formatter(FuncFormatter(_plain_number))
            axis.set_minor_formatter(NullFormatter())


def is_quick(results: dict) -> bool:
    """Whether ``results`` (:func:`molrg.study.load_results`) come from a quick run."""
    manifest = results.get("manifest") if isinstance(results, dict) else None
    if not isinstance(manifest, dict):
        raise ValueError("results: must be a dict from molrg.study.load_results (with a 'manifest')")
    return manifest.get("quick") in (True, "True", "true", 1)


def mark_quick(fig, results: dict) -> bool:
    """Stamps :data:`QUICK_LABEL` above the top-left corner of ``fig`` when the results are quick.

    Quick runs (``molrg run NAME --quick``, ``molrg reproduce --quick``) use smoke-test sizes,
    so their figures must never pass for the committed ones. The label is a red, boxed
    figure text placed just above the figure's top edge; ``save_figure`` crops with
    ``bbox_inches="tight"``, which keeps it, so no panel or title is covered.

    Args:
      fig: a matplotlib ``Figure`` (call after the layout is done, before saving).
      results: the experiment's results, ``molrg.study.load_results(results_dir)``.

    Returns:
      True when the label was added.
    """
    if not is_quick(results):
        return False
    fig.text(0.0, 1.0, QUICK_LABEL, ha="left", va="bottom", fontsize=9, fontweight="bold", color="#b00000",
             bbox=dict(boxstyle="round,pad=0.25", facecolor="#ffe9e9", edgecolor="#b00000", lw=0.8))
    return True


def paper_style():
    """A ``matplotlib.rc_context`` with the font sizes of a figure printed at :data:`FULL_WIDTH`.

    Text 8 pt, tick labels and legends :data:`MIN_FONT` (7 pt): legible when the figure is
    printed at its own size, at most 7 inches wide. Draw and save the figure inside the
    ``with`` block (tick labels created at drawing time read these settings).

    Example:
      >>> with paper_style():
      ...     fig, ax = plt.subplots(figsize=(FULL_WIDTH, 2.8))
      ...     save_figure(fig, fig_dir, "name")
    """
    import matplotlib

    return matplotlib.rc_context({
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "figure.titlesize": 9,
        "legend.fontsize": MIN_FONT, "xtick.labelsize": MIN_FONT, "ytick.labelsize": MIN_FONT,
        "lines.markersize": 4, "lines.linewidth": 1.2, "errorbar.capsize": 1.5,
    })
