"""Dataset-scale generation: a manifest of rows, sharded over torchrun processes, resumable.

Command line: ``unils generate --batch MANIFEST --out-dir DIR`` (see the "Large datasets" page). From Python,
the same steps are [`read_manifest`][unils.batch.manifest.read_manifest],
[`check_files`][unils.batch.manifest.check_files] and [`run_rows`][unils.batch.runner.run_rows].
"""

from __future__ import annotations

from .manifest import COLUMNS, BatchDefaults, BatchRow, check_files, partner_output, read_manifest
from .plan import BatchGroup, assign_groups, audio_frames, expected_frames, make_groups, output_is_valid
from .runner import RankResult, RowResult, run_rows, write_motion_atomic
from .shard import DistContext, balanced_assignment
from .summary import BatchSummary

__all__ = [
    "COLUMNS",
    "BatchDefaults",
    "BatchGroup",
    "BatchRow",
    "BatchSummary",
    "DistContext",
    "RankResult",
    "RowResult",
    "assign_groups",
    "audio_frames",
    "balanced_assignment",
    "check_files",
    "expected_frames",
    "make_groups",
    "output_is_valid",
    "partner_output",
    "read_manifest",
    "run_rows",
    "write_motion_atomic",
]
