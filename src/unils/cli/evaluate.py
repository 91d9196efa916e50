"""``unils evaluate``: score predicted motions against ground truth (the paper's metrics)."""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``evaluate`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser(
        "evaluate",
        help="score predicted motions against ground truth (the paper's metrics; table + JSON)",
        description="Match PRED_DIR and GT_DIR files by name and compute the UniLS metrics: speaking (S_LVE, "
        "S_MHD, S_FDD, S_PDD, S_JDD) and listening (L_FDD, L_PDD, L_JDD) from the ground truth's speech_mask, "
        "whole-sequence and FLAME-free coefficient metrics. Mesh metrics need your FLAME 2020 model (--flame). "
        "File conventions: docs/evaluation.md.",
    )
    p.add_argument("pred_dir", help="folder of predicted motions (.npz/.npy/.json/.csv)")
    p.add_argument(
        "gt_dir", help="folder of ground truths (unils.metrics.save_ground_truth .npz, or motion files)"
    )
    p.add_argument(
        "--flame", default=None, help="FLAME 2020 generic_model.pkl or converted .pt (default $UNILS_FLAME)"
    )
    p.add_argument("--json", default=None, help="also write the scores (summary and per file) as JSON")
    p.add_argument(
        "--length-tolerance",
        type=int,
        default=2,
        help="largest frame-count difference trimmed per pair (default 2)",
    )
    p.add_argument("--device", default=None, help="device for the FLAME vertices (cpu, cuda ...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils evaluate``."""
    from ..batch.shard import DistContext
    from ..metrics import evaluate_folder

    # Under torchrun the files are shared among the processes; rank 0 reports.
    ctx = DistContext.from_env()
    flame = None
    flame_path = args.flame or os.environ.get("UNILS_FLAME")
    if flame_path:
        from ..flame import FlameModel

        device = args.device if ctx.world_size == 1 else ctx.device(args.device)
        flame = FlameModel.from_file(flame_path, device=device)
    result = evaluate_folder(
        args.pred_dir, args.gt_dir, flame=flame, length_tolerance=args.length_tolerance, dist=ctx
    )
    ctx.close()
    if not ctx.is_main:
        return 0
    print(result.table())
    note = (
        "" if flame is not None else "; coefficient metrics only (--flame or $UNILS_FLAME adds LVE/MHD/FDD)"
    )
    print(f"{len(result.per_file)} sequence(s) scored{note}")
    if result.missing:
        print(f"not scored, no prediction: {', '.join(result.missing)}")
    if result.unmatched:
        print(f"ignored, no ground truth: {', '.join(result.unmatched)}")
    if args.json:
        result.save_json(args.json)
        print(f"wrote {args.json}")
    return 0
