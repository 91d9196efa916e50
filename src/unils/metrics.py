"""Evaluation metrics: the UniLS paper's speaking/listening metrics and FLAME-free coefficient metrics.

Mesh metrics (need FLAME vertices; pass your own :class:`~unils.flame.FlameModel`), as the official
evaluation computes them: vertices with the head pose zeroed and zero shape, in millimetres.

- **LVE** (lip vertex error, mm): per frame, the largest squared distance over the lip vertices;
  the mean of that over frames; then the square root.
- **MHD** (mean head distance, mm): square root of the mean squared vertex distance over all
  vertices and frames.
- **FDD** (upper-face dynamics deviation): per upper-face vertex entry, the sum of its x+y+z
  coordinates (mm) per frame; the temporal standard deviation (unbiased) of that for prediction and
  ground truth; ``|std_pred - std_gt|`` averaged over the 884 entries (duplicates included); x100.

Coefficient metrics (no FLAME needed):

- **PDD** / **JDD** (pose / jaw dynamics deviation): per channel, the temporal standard deviation
  (unbiased) of head pose (columns 100-102) or jaw (column 103) for prediction and ground truth;
  ``|difference|`` averaged over channels; x100 (radians x100).
- ``<part>_L1``: mean absolute error over frames and the part's channels; ``<part>_L2``: mean squared
  error over frames and channels (parts: expression, head_pose, jaw, eyes).
- ``<part>_var`` / ``<part>_var_gt``: temporal variance (unbiased) per channel, averaged over channels,
  of prediction / ground truth.
- ``<part>_diversity`` / ``<part>_diversity_gt`` (dataset level, :func:`diversity`): mean over all pairs
  of different sequences of the mean per-frame Euclidean distance between them (common frames only).

With a speech mask (nonzero = the scored person speaks at that frame), metrics are also computed on
the speaking frames (``S_LVE``, ``S_MHD``, ``S_FDD``, ``S_PDD``, ``S_JDD``; only when more than one
frame speaks) and on the listening frames (``L_FDD``, ``L_PDD``, ``L_JDD``; more than one listening
frame), NaN otherwise. Frames are selected by the mask, contiguous or not. Dataset scores are NaN-means
over sequences.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EvaluationError, MotionError
from .flame.indices import LIP_INDICES, UPPER_INDICES
from .motion import PARTS, Motion

__all__ = [
    "lip_vertex_error",
    "mean_head_distance",
    "face_dynamics_deviation",
    "dynamics_deviation",
    "pose_dynamics_deviation",
    "jaw_dynamics_deviation",
    "coefficient_metrics",
    "diversity",
    "evaluate_sequence",
    "evaluate_folder",
    "EvaluationResult",
    "GroundTruth",
    "save_ground_truth",
    "load_ground_truth",
    "load_motion_file",
    "METRIC_UNITS",
    "MM_PER_M",
]

logger = logging.getLogger("unils.metrics")

#: FLAME vertices are in metres; the paper's mesh metrics are in millimetres.
MM_PER_M = 1000.0

#: Units shown next to each metric name (prefix-free names; ``S_``/``L_`` variants share them).
METRIC_UNITS: Mapping[str, str] = {
    "LVE": "mm",
    "MHD": "mm",
    "FDD": "mm x100",
    "PDD": "rad x100",
    "JDD": "rad x100",
}

_MOTION_SUFFIXES = Motion.SUFFIXES


# ---------------------------------------------------------------------------------------------
# Array helpers
# ---------------------------------------------------------------------------------------------
def _array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, Motion):
        x = x.to_array()
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise MotionError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two coefficient arrays [..., T, 108] of the same shape (Motions are turned into arrays)."""
    p, g = _array(pred, "pred"), _array(gt, "gt")
    if p.shape != g.shape:
        raise MotionError(f"pred and gt must have the same shape, got {list(p.shape)} and {list(g.shape)}")
    if p.ndim < 2 or p.shape[-1] != 108:
        raise MotionError(f"motion must be [..., T, 108], got {list(p.shape)}")
    return p, g


def _verts(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = _array(pred, "pred"), _array(gt, "gt")
    if p.shape != g.shape:
        raise MotionError(f"pred and gt vertices must have the same shape, got {list(p.shape)} and {list(g.shape)}")
    if p.ndim < 3 or p.shape[-1] != 3:
        raise MotionError(f"vertices must be [..., T, V, 3], got {list(p.shape)}")
    return p, g


def _unbiased_std(x: np.ndarray, axis: int) -> np.ndarray:
    return np.std(x, axis=axis, ddof=1)


# ---------------------------------------------------------------------------------------------
# Mesh metrics (vertices; pass millimetres for the paper's numbers)
# ---------------------------------------------------------------------------------------------
def lip_vertex_error(pred: Any, gt: Any, lip_indices: Any = LIP_INDICES) -> float:
    """LVE: ``sqrt(mean over frames of max over lip vertices of squared distance)``.

    Args:
        pred: [..., T, V, 3] predicted vertices (mm for the paper's numbers), numpy or torch.
        gt: ground-truth vertices, same shape.
        lip_indices: lip vertex indices (FLAME 2020 list by default).

    Returns:
        The error in the vertices' unit; NaN for zero frames.
    """
    p, g = _verts(pred, gt)
    if p.shape[-3] == 0:
        return math.nan
    idx = np.asarray(lip_indices)
    d = np.sum((p[..., idx, :] - g[..., idx, :]) ** 2, axis=-1)
    return float(np.sqrt(np.mean(np.max(d, axis=-1))))


def mean_head_distance(pred: Any, gt: Any) -> float:
    """MHD: square root of the mean squared Euclidean vertex distance over all vertices and frames.

    Args:
        pred: [..., T, V, 3] predicted vertices (mm, head pose zeroed, for the paper's numbers).
        gt: ground-truth vertices, same shape.

    Returns:
        The distance in the vertices' unit; NaN for zero frames.
    """
    p, g = _verts(pred, gt)
    if p.shape[-3] == 0:
        return math.nan
    return float(np.sqrt(np.mean(np.sum((p - g) ** 2, axis=-1))))


def face_dynamics_deviation(pred: Any, gt: Any, upper_indices: Any = UPPER_INDICES) -> float:
    """FDD: mean over upper-face entries of ``|std_t(sum_xyz pred) - std_t(sum_xyz gt)|``, x100.

    The coordinate sum and the duplicates in :data:`~unils.flame.UPPER_INDICES` follow the official code.

    Args:
        pred: [..., T, V, 3] predicted vertices (mm for the paper's numbers).
        gt: ground-truth vertices, same shape.
        upper_indices: upper-face vertex entries (FLAME 2020 list, 884 entries, by default).

    Returns:
        The deviation x100; NaN for fewer than 2 frames (the unbiased std is undefined).
    """
    p, g = _verts(pred, gt)
    if p.shape[-3] < 2:
        return math.nan
    idx = np.asarray(upper_indices)
    sp = p[..., idx, :].sum(-1)
    sg = g[..., idx, :].sum(-1)
    return float(np.mean(np.abs(_unbiased_std(sp, -2) - _unbiased_std(sg, -2))) * 100.0)


# ---------------------------------------------------------------------------------------------
# Coefficient metrics (no FLAME)
# ---------------------------------------------------------------------------------------------
def dynamics_deviation(pred: Any, gt: Any, columns: slice | Sequence[int]) -> float:
    """Mean over ``columns`` of ``|std_t(pred) - std_t(gt)|`` (unbiased temporal std), x100.

    Args:
        pred: :class:`~unils.Motion` or [..., T, 108] coefficients.
        gt: same shape.
        columns: channels of the 108-d layout.

    Returns:
        The deviation x100; NaN for fewer than 2 frames.
    """
    p, g = _pair(pred, gt)
    if p.shape[-2] < 2:
        return math.nan
    cols = columns if isinstance(columns, slice) else np.asarray(columns)
    return float(np.mean(np.abs(_unbiased_std(p[..., cols], -2) - _unbiased_std(g[..., cols], -2))) * 100.0)


def pose_dynamics_deviation(pred: Any, gt: Any) -> float:
    """PDD: :func:`dynamics_deviation` on the head pose (columns 100-102), radians x100."""
    return dynamics_deviation(pred, gt, PARTS["head_pose"])


def jaw_dynamics_deviation(pred: Any, gt: Any) -> float:
    """JDD: :func:`dynamics_deviation` on the jaw (column 103), radians x100."""
    return dynamics_deviation(pred, gt, PARTS["jaw"])


def coefficient_metrics(pred: Any, gt: Any) -> dict[str, float]:
    """FLAME-free metrics per part: ``<part>_L1``, ``<part>_L2`` (MSE), ``<part>_var``, ``<part>_var_gt``.

    Args:
        pred: :class:`~unils.Motion` or [..., T, 108] coefficients.
        gt: same shape.

    Returns:
        Dict of floats (L1/L2 NaN for zero frames, variances NaN for fewer than 2 frames).
    """
    p, g = _pair(pred, gt)
    out: dict[str, float] = {}
    n = p.shape[-2]
    for name, cols in PARTS.items():
        d = p[..., cols] - g[..., cols]
        out[f"{name}_L1"] = float(np.mean(np.abs(d))) if n else math.nan
        out[f"{name}_L2"] = float(np.mean(d * d)) if n else math.nan
    for name, cols in PARTS.items():
        out[f"{name}_var"] = float(np.mean(np.var(p[..., cols], axis=-2, ddof=1))) if n > 1 else math.nan
        out[f"{name}_var_gt"] = float(np.mean(np.var(g[..., cols], axis=-2, ddof=1))) if n > 1 else math.nan
    return out


def diversity(motions: Sequence[Any], columns: slice | Sequence[int] = slice(0, 108)) -> float:
    """Mean pairwise distance between different sequences (dataset-level diversity).

    For every pair ``i < j``: the Euclidean distance over ``columns`` between frame ``t`` of both,
    averaged over their common frames ``t < min(T_i, T_j)``; then the mean over pairs.
    Cost grows with the square of the number of sequences.

    Args:
        motions: :class:`~unils.Motion` objects or [T, 108] arrays.
        columns: channels of the 108-d layout (e.g. ``PARTS["expression"]``).

    Returns:
        The diversity; NaN for fewer than two sequences (or no common frames).
    """
    arrs = [_array(m, "motion") for m in motions]
    for a in arrs:
        if a.ndim != 2 or a.shape[1] != 108:
            raise MotionError(f"diversity takes [T, 108] sequences, got {list(a.shape)}")
    cols = columns if isinstance(columns, slice) else np.asarray(columns)
    arrs = [a[:, cols] for a in arrs if a.shape[0] > 0]
    if len(arrs) < 2:
        return math.nan
    tmax = max(a.shape[0] for a in arrs)
    stack = np.full((len(arrs), tmax, arrs[0].shape[1]), np.nan)
    for i, a in enumerate(arrs):
        stack[i, : a.shape[0]] = a
    dists = []
    for i in range(len(arrs) - 1):
        d = np.sqrt(np.sum((stack[i + 1 :] - stack[i]) ** 2, axis=-1))  # NaN past either end
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            dists.append(np.nanmean(d, axis=1))
    return float(np.mean(np.concatenate(dists)))


# ---------------------------------------------------------------------------------------------
# One sequence
# ---------------------------------------------------------------------------------------------
def _as_mask(speech_mask: Any, frames: int) -> np.ndarray:
    m = np.asarray(speech_mask.detach().cpu().numpy() if hasattr(speech_mask, "detach") else speech_mask)
    if m.ndim != 1 or m.shape[0] != frames:
        raise EvaluationError(f"speech_mask must be [T] with T = {frames}, got {list(m.shape)}")
    if m.dtype.kind not in "biuf":
        raise EvaluationError(f"speech_mask must be numeric or boolean, got dtype {m.dtype}")
    return m != 0


def _mesh_frame_stats(pred: np.ndarray, gt: np.ndarray, flame: Any, chunk_size: int) -> dict[str, np.ndarray]:
    """Per-frame quantities from which LVE/MHD/FDD follow exactly for any subset of frames (bounded memory)."""
    import torch

    lip, upper = np.asarray(LIP_INDICES), np.asarray(UPPER_INDICES)
    nv = flame.num_vertices
    if lip.max() >= nv or upper.max() >= nv:
        raise EvaluationError(f"the FLAME model has {nv} vertices; the metrics need the FLAME 2020 topology (5023)")
    lip_max, mean_sq, up_p, up_g = [], [], [], []
    with torch.no_grad():
        for a in range(0, pred.shape[0], chunk_size):
            vp = flame.vertices(pred[a : a + chunk_size], with_head_pose=False).double().cpu().numpy() * MM_PER_M
            vg = flame.vertices(gt[a : a + chunk_size], with_head_pose=False).double().cpu().numpy() * MM_PER_M
            sq = np.sum((vp - vg) ** 2, axis=-1)  # [t, V]
            lip_max.append(sq[:, lip].max(axis=1))
            mean_sq.append(sq.mean(axis=1))
            up_p.append(vp[:, upper].sum(-1))
            up_g.append(vg[:, upper].sum(-1))
    return {
        "lip_max_sq": np.concatenate(lip_max),
        "mean_sq": np.concatenate(mean_sq),
        "upper_pred": np.concatenate(up_p),
        "upper_gt": np.concatenate(up_g),
    }


def _mesh_from_stats(stats: Mapping[str, np.ndarray], sel: np.ndarray | slice) -> dict[str, float]:
    lip_max, mean_sq = stats["lip_max_sq"][sel], stats["mean_sq"][sel]
    up_p, up_g = stats["upper_pred"][sel], stats["upper_gt"][sel]
    n = lip_max.shape[0]
    return {
        "LVE": float(np.sqrt(lip_max.mean())) if n else math.nan,
        "MHD": float(np.sqrt(mean_sq.mean())) if n else math.nan,
        "FDD": float(np.mean(np.abs(_unbiased_std(up_p, 0) - _unbiased_std(up_g, 0))) * 100.0) if n > 1 else math.nan,
    }


def evaluate_sequence(
    pred: Any,
    gt: Any,
    speech_mask: Any | None = None,
    flame: Any | None = None,
    chunk_size: int = 256,
) -> dict[str, float]:
    """All metrics of one predicted sequence against its ground truth.

    Args:
        pred: predicted :class:`~unils.Motion` or [T, 108] array.
        gt: ground truth, same number of frames.
        speech_mask: optional [T] mask of the scored person (nonzero = speaking); adds the ``S_*``
            (speaking frames) and ``L_*`` (listening frames) metrics.
        flame: optional :class:`~unils.flame.FlameModel` (FLAME 2020 topology); adds LVE, MHD, FDD.
        chunk_size: frames turned into vertices at once.

    Returns:
        ``{"S_LVE", "S_MHD", "S_FDD", "S_PDD", "S_JDD", "L_FDD", "L_PDD", "L_JDD"`` (with a mask),
        ``"LVE", "MHD", "FDD"`` (with FLAME, all frames), ``"PDD", "JDD"`` (all frames) and the
        coefficient metrics of :func:`coefficient_metrics`}; NaN where a metric is undefined.

    Raises:
        MotionError: pred and gt differ in shape.
        EvaluationError: the mask does not have one entry per frame.
    """
    p, g = _pair(pred, gt)
    if p.ndim != 2:
        raise MotionError(f"evaluate_sequence takes one sequence [T, 108], got {list(p.shape)}")
    frames = p.shape[0]
    stats = _mesh_frame_stats(p, g, flame, max(1, int(chunk_size))) if flame is not None else None
    out: dict[str, float] = {}
    if speech_mask is not None:
        speaking = _as_mask(speech_mask, frames)
        listening = ~speaking
        s_ok, l_ok = int(speaking.sum()) > 1, int(listening.sum()) > 1
        if stats is not None:
            s_mesh = _mesh_from_stats(stats, speaking) if s_ok else dict.fromkeys(("LVE", "MHD", "FDD"), math.nan)
            out.update({f"S_{k}": v for k, v in s_mesh.items()})
        out["S_PDD"] = pose_dynamics_deviation(p[speaking], g[speaking]) if s_ok else math.nan
        out["S_JDD"] = jaw_dynamics_deviation(p[speaking], g[speaking]) if s_ok else math.nan
        if stats is not None:
            out["L_FDD"] = _mesh_from_stats(stats, listening)["FDD"] if l_ok else math.nan
        out["L_PDD"] = pose_dynamics_deviation(p[listening], g[listening]) if l_ok else math.nan
        out["L_JDD"] = jaw_dynamics_deviation(p[listening], g[listening]) if l_ok else math.nan
    if stats is not None:
        out.update(_mesh_from_stats(stats, slice(None)))
    out["PDD"] = pose_dynamics_deviation(p, g)
    out["JDD"] = jaw_dynamics_deviation(p, g)
    out.update(coefficient_metrics(p, g))
    return out


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
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

    The file holds the scored person exactly as :meth:`Motion.save` writes it (``expression``,
    ``head_pose``, ``jaw``, ``eyes``, ``fps``, ``format_version``; so :meth:`Motion.load` reads it too),
    the partner's parts as ``partner_expression`` ... ``partner_eyes``, and ``speech_mask`` as uint8
    [T] (scored person) or [2, T] (row 0 scored person, row 1 partner).

    Args:
        path: destination ``.npz`` (written at exactly this path).
        motion: the scored person.
        partner: the other person (same frame count and fps).
        speech_mask: [T] mask of the scored person (nonzero = speaking).
        partner_speech_mask: [T] mask of the partner (needs ``speech_mask``).

    Raises:
        EvaluationError: lengths or fps disagree, or a partner mask without the person's mask.
    """
    from .motion import MOTION_FORMAT_VERSION

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
        rows = [_as_mask(speech_mask, frames)]
        if partner_speech_mask is not None:
            rows.append(_as_mask(partner_speech_mask, frames))
        arrays["speech_mask"] = (np.stack(rows) if len(rows) == 2 else rows[0]).astype(np.uint8)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays, fps=np.float64(motion.fps), format_version=np.int64(MOTION_FORMAT_VERSION))


def load_motion_file(path: str | os.PathLike[str]) -> Motion:
    """Read a motion file by suffix: ``.npz`` / ``.npy`` (:meth:`Motion.load`), ``.json``, ``.csv``.

    Raises:
        FileNotFoundError: no such file.
        MotionError: the file is not a valid motion file.
    """
    return Motion.read(path)


def load_ground_truth(path: str | os.PathLike[str]) -> GroundTruth:
    """Read a ground-truth file written by :func:`save_ground_truth` (or any motion file: no partner, no mask).

    Args:
        path: ``.npz`` ground truth, or a ``.npy`` / ``.json`` / ``.csv`` motion file.

    Returns:
        The :class:`GroundTruth`.

    Raises:
        FileNotFoundError: no such file.
        MotionError: the motion parts are invalid.
        EvaluationError: the speech mask or partner does not match the motion.
    """
    p = Path(path)
    motion = load_motion_file(p)
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
                mask, partner_mask = _as_mask(raw[0], len(motion)), _as_mask(raw[1], len(motion))
            elif raw.ndim == 1:
                mask = _as_mask(raw, len(motion))
            else:
                raise EvaluationError(f"{p}: speech_mask must be [T] or [2, T], got {list(raw.shape)}")
    return GroundTruth(motion, partner, mask, partner_mask)


def _motion_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in _MOTION_SUFFIXES:
            if f.stem in files:
                raise EvaluationError(f"{what} folder {folder} has two files named {f.stem!r}: {files[f.stem].name}, {f.name}")
            files[f.stem] = f
    return files


# ---------------------------------------------------------------------------------------------
# A folder of predictions
# ---------------------------------------------------------------------------------------------
def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    return x


@dataclass(eq=False)
class EvaluationResult:
    """Scores of a folder of predictions.

    Attributes:
        summary: metric -> NaN-mean over sequences (NaN when no sequence defines it).
        counts: metric -> number of sequences where it is defined.
        per_file: name -> that sequence's metrics (see :func:`evaluate_sequence`).
        dataset: dataset-level metrics (``<part>_diversity`` and ``<part>_diversity_gt``).
        frames: name -> frames scored (after trimming to the common length).
        missing: ground-truth names without a prediction (not scored).
        unmatched: prediction names without ground truth (ignored).
        flame: whether mesh metrics were computed.
    """

    summary: dict[str, float]
    counts: dict[str, int]
    per_file: dict[str, dict[str, float]]
    dataset: dict[str, float] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    flame: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``null``)."""
        return {
            "summary": _nan_to_none(dict(self.summary)),
            "counts": dict(self.counts),
            "dataset": _nan_to_none(dict(self.dataset)),
            "flame": self.flame,
            "units": dict(METRIC_UNITS),
            "missing_predictions": list(self.missing),
            "unmatched_predictions": list(self.unmatched),
            "frames": dict(self.frames),
            "per_file": {k: _nan_to_none(v) for k, v in self.per_file.items()},
        }

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON (UTF-8, indented)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def table(self) -> str:
        """A plain-text table grouped by frames used: metric, value, unit, number of sequences."""
        rows = [(_group(k), k, v, self.counts.get(k, 0)) for k, v in self.summary.items()]
        rows += [("dataset (across sequences)", k, v, len(self.per_file)) for k, v in self.dataset.items()]
        width = max([len("metric")] + [len(r[1]) for r in rows])
        lines = [f"{'metric':<{width}}  {'value':>12}  {'unit':<9} {'files':>5}"]
        group = None
        for g, k, v, n in rows:
            if g != group:
                lines.append(f"-- {g} " + "-" * max(0, width + 27 - len(g)))
                group = g
            unit = METRIC_UNITS.get(k[2:] if k[:2] in ("S_", "L_") else k, "")
            value = "nan" if not math.isfinite(v) else f"{v:.6g}"
            lines.append(f"{k:<{width}}  {value:>12}  {unit:<9} {n:>5}")
        return "\n".join(lines)


def _group(key: str) -> str:
    if key.startswith("S_"):
        return "speaking frames"
    if key.startswith("L_"):
        return "listening frames"
    if key in METRIC_UNITS:
        return "all frames"
    return "coefficients, all frames"


def evaluate_folder(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    flame: Any | None = None,
    length_tolerance: int = 2,
    chunk_size: int = 256,
) -> EvaluationResult:
    """Score every prediction against the ground truth of the same name.

    Files are matched by name without suffix (``clip01.npz`` <-> ``clip01.npz``/``.json``/``.csv``).
    Predictions are any motion files; ground truths are :func:`save_ground_truth` files (or plain
    motion files, then without speech mask). Each pair is trimmed to the shorter length when the
    frame counts differ by at most ``length_tolerance``.

    Args:
        pred_dir: folder of predicted motions.
        gt_dir: folder of ground truths.
        flame: optional :class:`~unils.flame.FlameModel`; without it only coefficient metrics are computed.
        length_tolerance: largest accepted frame-count difference per pair.
        chunk_size: frames turned into vertices at once.

    Returns:
        The :class:`EvaluationResult`.

    Raises:
        FileNotFoundError: a folder does not exist.
        EvaluationError: no names match, frame rates differ, or lengths differ by more than the tolerance.
    """
    pred_files = _motion_files(Path(pred_dir), "prediction")
    gt_files = _motion_files(Path(gt_dir), "ground-truth")
    names = [n for n in gt_files if n in pred_files]
    if not names:
        raise EvaluationError(
            f"no prediction in {pred_dir} has the name of a ground truth in {gt_dir} "
            f"({len(pred_files)} predictions, {len(gt_files)} ground truths; files are matched by name)"
        )
    missing = [n for n in gt_files if n not in pred_files]
    unmatched = [n for n in pred_files if n not in gt_files]
    if missing:
        logger.warning("%d ground truth(s) have no prediction and are not scored: %s", len(missing), missing[:5])
    if unmatched:
        logger.warning("%d prediction(s) have no ground truth and are ignored: %s", len(unmatched), unmatched[:5])
    per_file: dict[str, dict[str, float]] = {}
    frames: dict[str, int] = {}
    preds, gts = [], []
    for name in names:
        pred = load_motion_file(pred_files[name])
        truth = load_ground_truth(gt_files[name])
        gt = truth.motion
        if pred.fps != gt.fps:
            raise EvaluationError(f"{name}: prediction at {pred.fps:g} fps, ground truth at {gt.fps:g} fps")
        if abs(len(pred) - len(gt)) > length_tolerance:
            raise EvaluationError(
                f"{name}: prediction has {len(pred)} frames, ground truth {len(gt)} "
                f"(more than the tolerance of {length_tolerance})"
            )
        t = min(len(pred), len(gt))
        mask = None if truth.speech_mask is None else truth.speech_mask[:t]
        per_file[name] = evaluate_sequence(pred[:t], gt[:t], speech_mask=mask, flame=flame, chunk_size=chunk_size)
        frames[name] = t
        preds.append(pred[:t])
        gts.append(gt[:t])
        logger.info("%s: %d frames scored", name, t)
    keys: list[str] = []
    for metrics in per_file.values():
        keys += [k for k in metrics if k not in keys]
    summary, counts = {}, {}
    for k in keys:
        vals = np.array([m.get(k, math.nan) for m in per_file.values()], dtype=np.float64)
        ok = np.isfinite(vals)
        counts[k] = int(ok.sum())
        summary[k] = float(vals[ok].mean()) if ok.any() else math.nan
    dataset: dict[str, float] = {}
    for part, cols in PARTS.items():
        dataset[f"{part}_diversity"] = diversity(preds, cols)
        dataset[f"{part}_diversity_gt"] = diversity(gts, cols)
    return EvaluationResult(summary, counts, per_file, dataset, frames, missing, unmatched, flame is not None)
