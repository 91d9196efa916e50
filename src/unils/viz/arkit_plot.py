"""ARKit curves over time (jawOpen, eyeLook*, head and gaze angles, mapped expressions), matplotlib Agg."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..arkit import ARKIT_NAMES, ArkitAnimation
from ..errors import ArkitError
from ._deps import require
from .avatar import active_runs, participant_colour
from .plot import column_figure

__all__ = ["plot_arkit"]

_EYE_LOOK = tuple(n for n in ARKIT_NAMES if n.startswith("eyeLook"))


def plot_arkit(
    animations: ArkitAnimation | Sequence[ArkitAnimation],
    path: str | os.PathLike[str] | None = None,
    *,
    labels: Sequence[str] | None = None,
    activity: Sequence[np.ndarray | None] | None = None,
    expression_channels: int = 6,
    dpi: int = 100,
) -> Any:
    """Plot ARKit curves per participant: jawOpen, the eyeLook weights, head and gaze angles.

    One column per participant, shaded where they speak (when ``activity`` is given). When the
    animation was made with an expression map, a last row shows its most active other blendshapes.

    Args:
        animations: one [`ArkitAnimation`][unils.arkit.animation.ArkitAnimation] or up to 4 of the same fps.
        path: where to save (.png, .pdf, .svg...); None = don't save.
        labels: per participant, a name (default "A", "B", ...).
        activity: per participant, a bool [T] speech activity or None.
        expression_channels: how many of the most active mapped blendshapes to draw.
        dpi: resolution of raster outputs.

    Returns:
        The `matplotlib.figure.Figure`.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        ArkitError: no animations, more than 4, or different frame rates.
    """
    require("matplotlib")

    anims = [animations] if isinstance(animations, ArkitAnimation) else list(animations)
    if not 1 <= len(anims) <= 4 or not all(isinstance(a, ArkitAnimation) for a in anims):
        raise ArkitError("plot_arkit takes 1 to 4 ArkitAnimations")
    if len({a.fps for a in anims}) != 1:
        raise ArkitError("plot_arkit: animations need the same fps")
    labels = list(labels) if labels is not None else [chr(ord("A") + i) for i in range(len(anims))]
    acts = list(activity) if activity is not None else [None] * len(anims)
    if len(labels) != len(anims) or len(acts) != len(anims):
        raise ArkitError("plot_arkit: give one label and one activity per animation")
    rows = ["jawOpen", "eyeLook", "head", "gaze"]
    if any(a.expression_mapped for a in anims):
        rows.append("expressions")
    fig, axes = column_figure(len(rows), len(anims), dpi, row_height=1.6)
    for j, anim in enumerate(anims):
        t = anim.times
        colour = participant_colour(j)
        for r, row in enumerate(rows):
            ax = axes[r, j]
            act = acts[j]
            if act is not None:
                act = np.asarray(act, bool)[: len(t)]
                for start, stop in active_runs(act):
                    ax.axvspan(t[start], t[min(stop, len(t) - 1)], color=colour, alpha=0.13, lw=0)
            _row(ax, row, anim, expression_channels)
            ax.grid(True, alpha=0.3)
        axes[0, j].set_title(labels[j], loc="left", fontsize=11, fontweight="bold")
        axes[-1, j].set_xlabel("time (s)")
        axes[-1, j].set_xlim(0, max(anim.duration, 1.0 / anim.fps))
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=dpi)
    return fig


def _row(ax: Any, row: str, anim: ArkitAnimation, expression_channels: int) -> None:
    t = anim.times
    if row == "jawOpen":
        ax.plot(t, anim.weight("jawOpen"), color="#8b1e2d", lw=1.4)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("jawOpen")
    elif row == "eyeLook":
        for name in _EYE_LOOK:
            if anim.weight(name).any():
                ax.plot(
                    t, anim.weight(name), lw=1.0, ls="-" if name.endswith("Left") else "--", label=name[7:]
                )
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("eyeLook*")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=6, ncol=4)
    elif row == "head":
        for k, name in enumerate(("yaw", "pitch", "roll")):
            ax.plot(t, np.degrees(anim.head[:, k]), lw=1.2, label=name)
        ax.set_ylabel("head (deg)")
        ax.legend(loc="upper right", fontsize=7, ncol=3)
    elif row == "gaze":
        for e, side in enumerate(("left", "right")):
            for k, comp in enumerate(("yaw", "pitch")):
                ax.plot(
                    t,
                    np.degrees(anim.eyes[:, e, k]),
                    lw=1.0,
                    ls="-" if e == 0 else "--",
                    label=f"{side} {comp}",
                )
        ax.set_ylabel("gaze (deg)")
        ax.legend(loc="upper right", fontsize=7, ncol=4)
    else:
        for i, label in mapped_channels(anim.weights, expression_channels):
            ax.plot(t, anim.weights[:, i], lw=1.0, label=label)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("mapped")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=6, ncol=3)


def mapped_channels(weights: np.ndarray, count: int) -> list[tuple[int, str]]:
    """The ``count`` mapped blendshapes with the largest excursions, as (column, label) pairs.

    Ranked by their 99th percentile, so short events (a blink) count as much as steady ones (a smile);
    jawOpen and eyeLook* have their own rows; channels that never move are left out; a ``...Right``
    channel equal to its ``...Left`` twin is drawn once, labelled ``name L/R``.
    """
    skip = {"jawOpen", *_EYE_LOOK}
    cols = [i for i, name in enumerate(ARKIT_NAMES) if name not in skip]
    if not len(weights) or count <= 0:
        return []
    score = np.percentile(weights[:, cols], 99, axis=0)
    chosen: list[tuple[int, str]] = []
    for k in np.argsort(-score, kind="stable"):
        if score[k] <= 0:
            break
        i, name = cols[k], ARKIT_NAMES[cols[k]]
        base = name.removesuffix("Left").removesuffix("Right")
        pair = _pair(base) if base != name else ()
        twin = next((n for n, (j, _) in enumerate(chosen) if j in pair), None)
        if twin is not None and np.allclose(weights[:, i], weights[:, chosen[twin][0]], atol=1e-3):
            chosen[twin] = (chosen[twin][0], base + " L/R")
        elif len(chosen) < count:
            chosen.append((i, name))
    return chosen


def _pair(base: str) -> tuple[int, ...]:
    """Columns of ``base + "Left"`` and ``base + "Right"`` (those that exist)."""
    return tuple(ARKIT_NAMES.index(base + side) for side in ("Left", "Right") if base + side in ARKIT_NAMES)
