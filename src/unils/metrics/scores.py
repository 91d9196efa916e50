"""Metrics of one predicted sequence against its ground truth (mesh and coefficient metrics).

The definitions are in the [`unils.metrics`][unils.metrics] docstring;
[`evaluate_sequence`][unils.metrics.scores.evaluate_sequence] computes all of them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import EvaluationError, MotionError
from ..flame.indices import LIP_INDICES, UPPER_INDICES
from ..motion import PARTS, Motion

__all__ = [
    "METRIC_UNITS",
    "MM_PER_M",
    "coefficient_metrics",
    "diversity",
    "dynamics_deviation",
    "evaluate_sequence",
    "face_dynamics_deviation",
    "jaw_dynamics_deviation",
    "lip_vertex_error",
    "mean_head_distance",
    "pose_dynamics_deviation",
]

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
        raise MotionError(
            f"pred and gt vertices must have the same shape, got {list(p.shape)} and {list(g.shape)}"
        )
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

    The coordinate sum and the duplicates in [`UPPER_INDICES`][unils.flame.indices.UPPER_INDICES] follow the
    official code.

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
        pred: [`Motion`][unils.motion.Motion] or [..., T, 108] coefficients.
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
    """PDD: [`dynamics_deviation`][unils.metrics.scores.dynamics_deviation] on the head pose (columns
    100-102), radians x100."""
    return dynamics_deviation(pred, gt, PARTS["head_pose"])


def jaw_dynamics_deviation(pred: Any, gt: Any) -> float:
    """JDD: [`dynamics_deviation`][unils.metrics.scores.dynamics_deviation] on the jaw (column 103), radians
    x100."""
    return dynamics_deviation(pred, gt, PARTS["jaw"])


def coefficient_metrics(pred: Any, gt: Any) -> dict[str, float]:
    """FLAME-free metrics per part: ``<part>_L1``, ``<part>_L2`` (MSE), ``<part>_var``, ``<part>_var_gt``.

    Args:
        pred: [`Motion`][unils.motion.Motion] or [..., T, 108] coefficients.
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
        motions: [`Motion`][unils.motion.Motion] objects or [T, 108] arrays.
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
def as_speech_mask(speech_mask: Any, frames: int) -> np.ndarray:
    """A [T] speech mask (array or tensor, nonzero = speaking) as bool, checked against ``frames``."""
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
        raise EvaluationError(
            f"the FLAME model has {nv} vertices; the metrics need the FLAME 2020 topology (5023)"
        )
    lip_max, mean_sq, up_p, up_g = [], [], [], []
    with torch.no_grad():
        for a in range(0, pred.shape[0], chunk_size):
            vp = (
                flame.vertices(pred[a : a + chunk_size], with_head_pose=False).double().cpu().numpy()
                * MM_PER_M
            )
            vg = (
                flame.vertices(gt[a : a + chunk_size], with_head_pose=False).double().cpu().numpy() * MM_PER_M
            )
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
        "FDD": float(np.mean(np.abs(_unbiased_std(up_p, 0) - _unbiased_std(up_g, 0))) * 100.0)
        if n > 1
        else math.nan,
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
        pred: predicted [`Motion`][unils.motion.Motion] or [T, 108] array.
        gt: ground truth, same number of frames.
        speech_mask: optional [T] mask of the scored person (nonzero = speaking); adds the ``S_*``
            (speaking frames) and ``L_*`` (listening frames) metrics.
        flame: optional [`FlameModel`][unils.flame.model.FlameModel] (FLAME 2020 topology); adds LVE, MHD,
            FDD.
        chunk_size: frames turned into vertices at once.

    Returns:
        ``{"S_LVE", "S_MHD", "S_FDD", "S_PDD", "S_JDD", "L_FDD", "L_PDD", "L_JDD"`` (with a mask), ``"LVE",
        "MHD", "FDD"`` (with FLAME, all frames), ``"PDD", "JDD"`` (all frames) and the coefficient metrics of
        [`coefficient_metrics`][unils.metrics.scores.coefficient_metrics]}; NaN where a metric is undefined.

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
        speaking = as_speech_mask(speech_mask, frames)
        listening = ~speaking
        s_ok, l_ok = int(speaking.sum()) > 1, int(listening.sum()) > 1
        if stats is not None:
            s_mesh = (
                _mesh_from_stats(stats, speaking) if s_ok else dict.fromkeys(("LVE", "MHD", "FDD"), math.nan)
            )
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
