"""Evaluation metrics: the UniLS paper's speaking/listening metrics and FLAME-free coefficient metrics.

Mesh metrics (need FLAME vertices; pass your own [`FlameModel`][unils.flame.model.FlameModel]), as the
official evaluation computes them: vertices with the head pose zeroed and zero shape, in millimetres.

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
- ``<part>_diversity`` / ``<part>_diversity_gt`` (dataset level,
  [`diversity`][unils.metrics.scores.diversity]): mean over all pairs of different sequences of the mean
  per-frame Euclidean distance between them (common frames only).

With a speech mask (nonzero = the scored person speaks at that frame), metrics are also computed on
the speaking frames (``S_LVE``, ``S_MHD``, ``S_FDD``, ``S_PDD``, ``S_JDD``; only when more than one
frame speaks) and on the listening frames (``L_FDD``, ``L_PDD``, ``L_JDD``; more than one listening
frame), NaN otherwise. Frames are selected by the mask, contiguous or not. Dataset scores are NaN-means
over sequences.
"""

from .folder import EvaluationResult, evaluate_folder
from .ground_truth import GroundTruth, load_ground_truth, load_motion_file, save_ground_truth
from .scores import (
    METRIC_UNITS,
    MM_PER_M,
    coefficient_metrics,
    diversity,
    dynamics_deviation,
    evaluate_sequence,
    face_dynamics_deviation,
    jaw_dynamics_deviation,
    lip_vertex_error,
    mean_head_distance,
    pose_dynamics_deviation,
)

__all__ = [
    "METRIC_UNITS",
    "MM_PER_M",
    "EvaluationResult",
    "GroundTruth",
    "coefficient_metrics",
    "diversity",
    "dynamics_deviation",
    "evaluate_folder",
    "evaluate_sequence",
    "face_dynamics_deviation",
    "jaw_dynamics_deviation",
    "lip_vertex_error",
    "load_ground_truth",
    "load_motion_file",
    "mean_head_distance",
    "pose_dynamics_deviation",
    "save_ground_truth",
]
