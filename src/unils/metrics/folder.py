"""Score a folder of predictions against a folder of ground truths (``unils evaluate``)."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EvaluationError
from ..motion import PARTS, Motion
from .ground_truth import load_ground_truth
from .scores import METRIC_UNITS, diversity, evaluate_sequence

if TYPE_CHECKING:
    from ..batch.shard import DistContext

__all__ = ["EvaluationResult", "evaluate_folder"]

logger = logging.getLogger("unils.metrics")

_MOTION_SUFFIXES = Motion.SUFFIXES


# ---------------------------------------------------------------------------------------------
# A folder of predictions
# ---------------------------------------------------------------------------------------------
def _motion_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in _MOTION_SUFFIXES:
            if f.stem in files:
                raise EvaluationError(
                    f"{what} folder {folder} has two files named {f.stem!r}: {files[f.stem].name}, {f.name}"
                )
            files[f.stem] = f
    return files


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
        per_file: name -> that sequence's metrics (see
            [`evaluate_sequence`][unils.metrics.scores.evaluate_sequence]).
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
        """Write [`to_dict`][unils.metrics.folder.EvaluationResult.to_dict] as JSON (UTF-8, indented)."""
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


def _score_pairs(
    names: list[str],
    pred_files: dict[str, Path],
    gt_files: dict[str, Path],
    flame: Any | None,
    length_tolerance: int,
    chunk_size: int,
) -> tuple[dict[str, tuple[dict[str, float], int, Motion, Motion]], tuple[str, str] | None]:
    """Score ``names``; stops at the first bad pair and returns it as ``(name, message)``."""
    out: dict[str, tuple[dict[str, float], int, Motion, Motion]] = {}
    for name in names:
        pred = Motion.load(pred_files[name])
        truth = load_ground_truth(gt_files[name])
        gt = truth.motion
        if pred.fps != gt.fps:
            return out, (name, f"{name}: prediction at {pred.fps:g} fps, ground truth at {gt.fps:g} fps")
        if abs(len(pred) - len(gt)) > length_tolerance:
            return out, (
                name,
                f"{name}: prediction has {len(pred)} frames, ground truth {len(gt)} "
                f"(more than the tolerance of {length_tolerance})",
            )
        t = min(len(pred), len(gt))
        mask = None if truth.speech_mask is None else truth.speech_mask[:t]
        metrics = evaluate_sequence(pred[:t], gt[:t], speech_mask=mask, flame=flame, chunk_size=chunk_size)
        out[name] = (metrics, t, pred[:t], gt[:t])
        logger.info("%s: %d frames scored", name, t)
    return out, None


def evaluate_folder(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    flame: Any | None = None,
    length_tolerance: int = 2,
    chunk_size: int = 256,
    dist: DistContext | None = None,
) -> EvaluationResult:
    """Score every prediction against the ground truth of the same name.

    Under ``torchrun`` (or with ``dist``) the files are shared among the processes, balanced by file
    size with the same rule as ``unils generate --batch``; every process returns the whole result,
    equal to a single process's.

    Files are matched by name without suffix (``clip01.npz`` <-> ``clip01.npz``/``.json``/``.csv``).
    Predictions are any motion files; ground truths are
    [`save_ground_truth`][unils.metrics.ground_truth.save_ground_truth] files (or plain motion files, then
    without speech mask). Each pair is trimmed to the shorter length when the frame counts differ by at most
    ``length_tolerance``.

    Args:
        pred_dir: folder of predicted motions.
        gt_dir: folder of ground truths.
        flame: optional [`FlameModel`][unils.flame.model.FlameModel]; without it only coefficient metrics are
            computed.
        length_tolerance: largest accepted frame-count difference per pair.
        chunk_size: frames turned into vertices at once.
        dist: the process's place in a torchrun job (default: read from the environment).

    Returns:
        The [`EvaluationResult`][unils.metrics.folder.EvaluationResult].

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
        logger.warning(
            "%d ground truth(s) have no prediction and are not scored: %s", len(missing), missing[:5]
        )
    if unmatched:
        logger.warning(
            "%d prediction(s) have no ground truth and are ignored: %s", len(unmatched), unmatched[:5]
        )
    # The same sharding as `unils generate --batch` (imported here: it brings torch.distributed in).
    from ..batch.shard import DistContext, balanced_assignment

    ctx = dist if dist is not None else DistContext.from_env()
    mine = names
    if ctx.world_size > 1:
        ctx.init()
        sizes = [float(pred_files[n].stat().st_size + gt_files[n].stat().st_size) for n in names]
        mine = [names[i] for i in balanced_assignment(sizes, ctx.world_size)[ctx.rank]]
    scored, error = _score_pairs(mine, pred_files, gt_files, flame, length_tolerance, chunk_size)
    found: dict[str, tuple[dict[str, float], int, Motion, Motion]] = {}
    errors: list[tuple[int, str]] = []
    for part_scored, part_error in ctx.all_gather((scored, error)):
        found.update(part_scored)
        if part_error is not None:
            errors.append((names.index(part_error[0]), part_error[1]))
    if errors:
        raise EvaluationError(min(errors)[1])
    per_file: dict[str, dict[str, float]] = {}
    frames: dict[str, int] = {}
    preds, gts = [], []
    for name in names:  # merged in name order, whichever process scored each
        per_file[name], frames[name], pred, gt = found[name]
        preds.append(pred)
        gts.append(gt)
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
