"""Coefficient curves over time under the participants' speech activity (matplotlib, Agg).

No pyplot: figures are built with the object API, so plotting never opens windows, never touches
matplotlib's global state and works in threads and on headless machines.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..motion import Motion
from ._deps import require
from .avatar import active_runs, check_participants, participant_colour

__all__ = ["plot_motion"]

_PART_ROWS = ("jaw", "head_pose", "eyes", "expression")


def column_figure(
    rows: int, columns: int, dpi: int, row_height: float, height_ratios: Sequence[float] | None = None
) -> tuple[Any, np.ndarray]:
    """A figure of ``rows`` x ``columns`` axes sharing x, one 6.4-inch column per participant.

    Margins are fixed in inches: much faster to save than a constrained layout, and as tidy here.
    Shared by the motion plot and the ARKit plot. Needs matplotlib.
    """
    from matplotlib.figure import Figure

    ratios = list(height_ratios) if height_ratios is not None else [1.0] * rows
    width, height = 6.4 * columns, row_height * sum(ratios) + 0.9
    fig = Figure(figsize=(width, height), dpi=dpi)
    fig.subplots_adjust(
        left=0.8 / width,
        right=1 - 0.15 / width,
        bottom=0.5 / height,
        top=1 - 0.3 / height,
        wspace=0.8 * columns / width,
        hspace=0.22,
    )
    axes = fig.subplots(rows, columns, sharex=True, squeeze=False, gridspec_kw={"height_ratios": ratios})
    return fig, np.array(axes)


def plot_motion(
    motions: Motion | Sequence[Motion],
    path: str | os.PathLike[str] | None = None,
    *,
    activity: Sequence[np.ndarray | None] | None = None,
    labels: Sequence[str] | None = None,
    expression_coefs: int = 6,
    dpi: int = 100,
) -> Any:
    """Plot each participant's motion, part by part, over time, shaded where they speak.

    One column per participant. The top row shows every participant's speech activity (when known);
    below it, jaw rotation, head rotation (pitch x, yaw y, roll z), eye rotations and the leading
    expression coefficients plus the RMS of all 100. Angles are shown in degrees. In every panel a
    participant's own speech is shaded in their colour, so speaking and listening phases line up
    with the curves.

    Args:
        motions: one Motion or up to 4 of the same length and fps.
        path: where to save (the suffix picks the format: .png, .pdf, .svg...); None = don't save.
        activity: per participant, a bool [T] speech activity or None.
        labels: per participant, a name (default "A", "B", ...).
        expression_coefs: how many leading expression coefficients to draw.
        dpi: resolution of raster outputs.

    Returns:
        The `matplotlib.figure.Figure`.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        MotionError: no motions, or motions of different lengths or frame rates.
    """
    require("matplotlib")
    motions, activity, labels = check_participants(motions, activity, labels)
    n = len(motions)
    has_activity = any(a is not None for a in activity)
    rows = (["speech"] if has_activity else []) + list(_PART_ROWS)
    ratios = [0.45 if r == "speech" else 1.0 for r in rows]
    fig, axes = column_figure(len(rows), n, dpi, row_height=1.7, height_ratios=ratios)
    for j, motion in enumerate(motions):
        t = motion.times
        colour = participant_colour(j)
        for r, row in enumerate(rows):
            ax = axes[r, j]
            if row == "speech":
                _speech_row(ax, activity, labels, t)
                ax.set_title(f"{labels[j]}", loc="left", fontsize=11, fontweight="bold")
                continue
            own = activity[j]
            if own is not None:
                for start, stop in active_runs(own):
                    ax.axvspan(t[start], t[min(stop, len(t) - 1)], color=colour, alpha=0.13, lw=0)
            _part_row(ax, row, motion, expression_coefs)
            if r == 0:
                ax.set_title(f"{labels[j]}", loc="left", fontsize=11, fontweight="bold")
            ax.grid(True, alpha=0.3)
        axes[-1, j].set_xlabel("time (s)")
        axes[-1, j].set_xlim(0, max(motion.duration, 1.0 / motion.fps))
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def _speech_row(ax: Any, activity: Sequence[np.ndarray | None], labels: Sequence[str], t: np.ndarray) -> None:
    step = t[1] - t[0] if len(t) > 1 else 0.04
    for k, act in enumerate(activity):
        y = len(activity) - 1 - k
        if act is None:
            ax.text(
                0.5 * (t[-1] + step), y + 0.4, "no audio", ha="center", va="center", fontsize=8, color="0.5"
            )
            continue
        colour = participant_colour(k)
        for start, stop in active_runs(act):
            ax.broken_barh([(t[start], (stop - start) * step)], (y + 0.1, 0.6), color=colour)
    ax.set_yticks(
        [len(activity) - 1 - k + 0.4 for k in range(len(activity))], [str(x) for x in labels], fontsize=8
    )
    ax.set_ylim(0, len(activity))
    ax.set_ylabel("speaks", fontsize=9)


def _part_row(ax: Any, row: str, motion: Motion, expression_coefs: int) -> None:
    t = motion.times
    if row == "jaw":
        ax.plot(t, np.degrees(motion.jaw[:, 0]), color="#8b1e2d", lw=1.4, label="jaw")
        ax.set_ylabel("jaw (deg)")
    elif row == "head_pose":
        for k, name in enumerate(("pitch (x)", "yaw (y)", "roll (z)")):
            ax.plot(t, np.degrees(motion.head_pose[:, k]), lw=1.2, label=name)
        ax.set_ylabel("head (deg)")
        ax.legend(loc="upper right", fontsize=7, ncol=3)
    elif row == "eyes":
        names = ("eye 1 x", "eye 1 y", "eye 2 x", "eye 2 y")
        for k, name in enumerate(names):
            ax.plot(t, np.degrees(motion.eyes[:, k]), lw=1.0, ls="-" if k < 2 else "--", label=name)
        ax.set_ylabel("eyes (deg)")
        ax.legend(loc="upper right", fontsize=7, ncol=4)
    else:
        k = max(0, min(int(expression_coefs), 100))
        for c in range(k):
            ax.plot(t, motion.expression[:, c], lw=1.0, label=f"exp {c}")
        rms = np.sqrt(np.mean(motion.expression.astype(np.float64) ** 2, axis=1))
        ax.plot(t, rms, color="black", lw=1.6, label="RMS(all)")
        ax.set_ylabel("expression")
        ax.legend(loc="upper right", fontsize=7, ncol=min(k + 1, 7))
