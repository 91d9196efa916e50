"""Command-line layer of batch generation (``unils generate --batch``): options, progress bar, report.

The only part of `unils.batch` that prints.
[`add_batch_arguments`][unils.batch.command.add_batch_arguments] adds the batch options to a parser that
already has the single-file generate options (``--seed``, ``--temperature``, ``--top-p``, ``--cfg-scale``,
``--no-smooth``, ``--both``, ``--device``); their values become the defaults of empty manifest cells.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..options import option_fields
from .manifest import COLUMNS, BatchDefaults, check_files, read_manifest
from .runner import RowResult, run_rows
from .shard import DistContext
from .summary import BatchSummary, ProgressFiles

if TYPE_CHECKING:
    from ..model import UniLS

__all__ = ["SUMMARY_NAME", "add_batch_arguments", "run_batch_command"]

#: Default file name of the JSON summary, in the output folder.
SUMMARY_NAME = "unils_batch_summary.json"
#: Seconds between rank 0's looks at the other ranks' progress once its own work is done.
_POLL_S = 0.5


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--batch MANIFEST``, ``--out-dir``, ``--format``, ``--batch-size``, ``--summary``, ``--overwrite``, ``--threads``."""
    g = parser.add_argument_group("dataset-scale generation (docs: Large datasets)")
    g.add_argument(
        "--batch",
        metavar="MANIFEST",
        default=None,
        help=f"CSV or JSON-lines manifest, one row per output (columns: {', '.join(COLUMNS)}; empty "
        "cells take the command's flags); several processes with torchrun",
    )
    g.add_argument(
        "--out-dir", default=None, help="folder of the outputs (relative 'output' names are inside it)"
    )
    g.add_argument(
        "--format",
        "--suffix",
        dest="batch_format",
        choices=["npz", "json", "csv"],
        default="npz",
        help="format of outputs whose name has no suffix (default npz)",
    )
    g.add_argument("--batch-size", type=int, default=8, help="rows per generate_batch call (default 8)")
    g.add_argument("--summary", default=None, help=f"JSON summary file (default OUT_DIR/{SUMMARY_NAME})")
    g.add_argument("--overwrite", action="store_true", help="regenerate rows whose outputs already exist")
    g.add_argument("--threads", type=int, default=None, help="torch intra-op threads per process")


def _defaults(args: argparse.Namespace) -> BatchDefaults:
    """The manifest's defaults: the command's own flags, one per option field (the same flags as a
    single-file ``unils generate``, read the same way)."""
    values: dict[str, Any] = {}
    for f in option_fields():
        value = getattr(args, f.name, f.cli_default)
        values[f.name] = None if value is None else (Path(value) if f.kind == "motion" else value)
    if values.get("seed") is None:
        values["seed"] = 0
    return BatchDefaults(
        suffix="." + getattr(args, "batch_format", "npz"), both=bool(getattr(args, "both", False)), **values
    )


class _Progress:
    """Rank 0's bar over every rank's frames (other ranks publish their counters in files)."""

    def __init__(self, files: ProgressFiles, ctx: DistContext, enabled: bool) -> None:
        self.files, self.ctx, self.enabled = files, ctx, enabled
        self.rows = self.frames = 0
        self.total_rows = 0
        self.bar: Any = None

    def plan(self, rows: int, done: int, frames: int) -> None:
        self.total_rows = rows
        if self.ctx.is_main and self.enabled:
            from huggingface_hub.utils import tqdm

            self.bar = tqdm(total=frames, unit="frame", desc=f"rows {done}/{rows}", dynamic_ncols=True)
        self.rows = done if self.ctx.is_main else 0  # rank 0 counts the rows done earlier

    def add(self, results: list[RowResult]) -> None:
        self.rows += sum(r.status != "skipped" for r in results)  # skipped rows are in plan()'s `done`
        self.frames += sum(r.frames for r in results if r.status == "generated")
        self.publish(finished=False)

    def publish(self, finished: bool) -> bool:
        """Rank > 0: write the counters. Rank 0: redraw; True while another rank is visibly unfinished."""
        if not self.ctx.is_main:
            self.files.write(self.rows, self.frames, finished)
            return False
        rows, frames, waiting = self.rows, self.frames, False
        for r in range(1, self.ctx.world_size):
            other = self.files.read(r)
            if other is not None:
                rows, frames = rows + int(other["rows"]), frames + int(other["frames"])
                waiting = waiting or not other["finished"]
        if self.bar is not None:
            self.bar.set_description(f"rows {min(rows, self.total_rows)}/{self.total_rows}")
            self.bar.n = frames
            self.bar.refresh()
        return waiting

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_batch_command(args: argparse.Namespace, load_model: Callable[[], UniLS]) -> int:
    """Run ``unils generate --batch`` (on every torchrun rank); rank 0 prints the summary.

    Args:
        args: parsed options of [`add_batch_arguments`][unils.batch.command.add_batch_arguments] plus the
            generate options.
        load_model: loads the model; called only on ranks with work, after ``args.device`` is set
            to this rank's device (``cuda:LOCAL_RANK`` when GPUs exist).

    Returns:
        0 when every row has its outputs, 1 when some row failed (see the summary file).

    Raises:
        ManifestError: a malformed manifest (before any work).
        ManifestFilesNotFoundError: input files missing (all listed, before any work).
    """
    import torch

    t0 = time.perf_counter()
    if not args.out_dir:
        raise ValueError("--batch needs --out-dir (the folder of the outputs)")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    rows = read_manifest(args.batch, args.out_dir, _defaults(args))
    check_files(rows)
    ctx = DistContext.from_env()
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    device = ctx.device(getattr(args, "device", None))
    args.device = str(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    def load() -> UniLS:
        model = load_model()
        return model if model.device == device else model.to(device)

    ctx.init()
    try:
        run_id = ctx.broadcast(uuid.uuid4().hex[:12])
        progress = _Progress(
            ProgressFiles(args.out_dir, run_id, ctx.rank), ctx, not getattr(args, "quiet", False)
        )
        part = run_rows(
            rows,
            load,
            context=ctx,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            on_plan=progress.plan,
            on_results=progress.add,
        )
        progress.publish(finished=True)
        while ctx.is_main and progress.publish(finished=False):  # redraw until the others are done
            time.sleep(_POLL_S)
        progress.close()
        parts = ctx.gather(part)
        status = 1
        if parts is not None:
            summary = BatchSummary.from_ranks(
                parts,
                manifest=str(Path(args.batch).resolve()),
                out_dir=str(Path(args.out_dir).resolve()),
                rows=len(rows),
                wall_s=time.perf_counter() - t0,
            )
            path = summary.save_json(args.summary or Path(args.out_dir) / SUMMARY_NAME)
            progress.files.remove(ctx.world_size)
            for line in summary.lines():
                print(line)
            print(f"wrote {path}")
            status = 0 if summary.ok else 1
        return int(ctx.broadcast(status))
    finally:
        ctx.close()
