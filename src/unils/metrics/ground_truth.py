"""The ground-truth file of ``unils evaluate``: one person's motion, optionally the partner and speech masks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvaluationError
from ..motion import MOTION_FORMAT_VERSION, PARTS, Motion, load_motion_file
from .scores import as_speech_mask

__all__ = ["GroundTruth", "load_ground_truth", "load_motion_file", "save_ground_truth"]


@dataclass(eq=False)
class GroundTruth:
    """Ground truth of one conversation clip: the scored person, optionally the partner and speech masks.

    Attributes:
        motion: the scored person's motion (the one predictions are compared with).
        partner: the other person's motion, if stored.
        speech_mask: bool [T], True where the scored person speaks; None when unknown.
        partner_speech_mask: bool [T] of the partner, if stored.
    """

    motion: Motion
    partner: Motion | None = None
    speech_mask: np.ndarray | None = None
    partner_speech_mask: np.ndarray | None = None


def save_ground_truth(
    path: str | os.PathLike[str],
    motion: Motion,
    partner: Motion | None = None,
    speech_mask: Any | None = None,
    partner_speech_mask: Any | None = None,
) -> None:
    """Write a ground-truth ``.npz`` (the file convention of ``unils evaluate``).

    The file holds the scored person exactly as [`Motion.save`][unils.motion.Motion.save] writes it
    (``expression``, ``head_pose``, ``jaw``, ``eyes``, ``fps``, ``format_version``; so
    [`Motion.load`][unils.motion.Motion.load] reads it too), the partner's parts as ``partner_expression`` ...
    ``partner_eyes``, and ``speech_mask`` as uint8 [T] (scored person) or [2, T] (row 0 scored person, row 1
    partner).

    Args:
        path: destination ``.npz`` (written at exactly this path).
        motion: the scored person.
        partner: the other person (same frame count and fps).
        speech_mask: [T] mask of the scored person (nonzero = speaking).
        partner_speech_mask: [T] mask of the partner (needs ``speech_mask``).

    Raises:
        EvaluationError: lengths or fps disagree, or a partner mask without the person's mask.
    """
    frames = len(motion)
    arrays: dict[str, np.ndarray] = {n: getattr(motion, n) for n in PARTS}
    if partner is not None:
        if len(partner) != frames or partner.fps != motion.fps:
            raise EvaluationError(
                f"partner has {len(partner)} frames at {partner.fps:g} fps, the person {frames} at {motion.fps:g}"
            )
        arrays.update({f"partner_{n}": getattr(partner, n) for n in PARTS})
    if partner_speech_mask is not None and speech_mask is None:
        raise EvaluationError("partner_speech_mask needs speech_mask (row 0 of the stored mask)")
    if speech_mask is not None:
        rows = [as_speech_mask(speech_mask, frames)]
        if partner_speech_mask is not None:
            rows.append(as_speech_mask(partner_speech_mask, frames))
        arrays["speech_mask"] = (np.stack(rows) if len(rows) == 2 else rows[0]).astype(np.uint8)
    with open(path, "wb") as fh:
        np.savez_compressed(
            fh,
            **arrays,  # type: ignore[arg-type]  # numpy's stub: a **dict could set allow_pickle
            fps=np.float64(motion.fps),
            format_version=np.int64(MOTION_FORMAT_VERSION),
        )


def load_ground_truth(path: str | os.PathLike[str]) -> GroundTruth:
    """Read a ground-truth file written by [`save_ground_truth`][unils.metrics.ground_truth.save_ground_truth]
    (or any motion file: no partner, no mask).

    Args:
        path: ``.npz`` ground truth, or a ``.npy`` / ``.json`` / ``.csv`` motion file.

    Returns:
        The [`GroundTruth`][unils.metrics.ground_truth.GroundTruth].

    Raises:
        FileNotFoundError: no such file.
        MotionError: the motion parts are invalid.
        EvaluationError: the speech mask or partner does not match the motion.
    """
    p = Path(path)
    motion = Motion.load(p)
    if p.suffix.lower() != ".npz":
        return GroundTruth(motion)
    with np.load(p, allow_pickle=False) as data:
        keys = set(data.files)
        partner = None
        if any(k.startswith("partner_") for k in keys):
            missing = [f"partner_{n}" for n in PARTS if f"partner_{n}" not in keys]
            if missing:
                raise EvaluationError(f"{p} has partner data but lacks {missing}")
            partner = Motion(**{n: data[f"partner_{n}"] for n in PARTS}, fps=motion.fps)
            if len(partner) != len(motion):
                raise EvaluationError(f"{p}: partner has {len(partner)} frames, the person {len(motion)}")
        mask = partner_mask = None
        if "speech_mask" in keys:
            raw = data["speech_mask"]
            if raw.ndim == 2 and raw.shape[0] == 2:
                mask, partner_mask = as_speech_mask(raw[0], len(motion)), as_speech_mask(raw[1], len(motion))
            elif raw.ndim == 1:
                mask = as_speech_mask(raw, len(motion))
            else:
                raise EvaluationError(f"{p}: speech_mask must be [T] or [2, T], got {list(raw.shape)}")
    return GroundTruth(motion, partner, mask, partner_mask)
