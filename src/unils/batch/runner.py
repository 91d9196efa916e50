"""Run a manifest on this rank: plan with the other ranks, generate my batches, write atomically.

Failures of one row (undecodable audio, a style clip too short...) are recorded in its
:class:`RowResult` and never stop the other rows; anything that is not an ``Exception`` (Ctrl-C, a
kill) stops the run, and a rerun picks up where it stopped because every finished output is a
complete file (temp file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..audio import load_audio, pad_to_same_length
from ..motion import Motion
from ..options import GenerationOptions
from .manifest import BatchRow
from .plan import BatchGroup, assign_groups, expected_frames, make_groups, output_is_valid
from .shard import DistContext

if TYPE_CHECKING:
    from ..model import UniLS

__all__ = ["RankResult", "RowResult", "run_rows", "write_motion_atomic"]

logger = logging.getLogger("unils")


@dataclass
class RowResult:
    """What happened to one manifest row.

    Attributes:
        index: the row's position in the manifest (0-based).
        line: its line in the manifest file.
        audio: its audio file.
        outputs: the file(s) it writes.
        status: ``"generated"``, ``"skipped"`` (valid outputs were already there) or ``"failed"``.
        frames: motion frames per output (0 when unknown).
        reason: why it failed (``"ExceptionType: message"``), else "".
    """

    index: int
    line: int
    audio: str
    outputs: list[str]
    status: str
    frames: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


@dataclass
class RankResult:
    """One rank's share of a run.

    Attributes:
        rank: the rank.
        results: one :class:`RowResult` per row this rank accounted for.
        busy_s: seconds spent loading the model and generating.
        groups: batches this rank ran.
    """

    rank: int
    results: list[RowResult] = field(default_factory=list)
    busy_s: float = 0.0
    groups: int = 0


def write_motion_atomic(motion: Motion, path: Path) -> None:
    """Write ``motion`` to ``path`` so that ``path`` is either absent, the old file or the complete new one.

    The data goes to a hidden temp file in the same folder (same file system), then ``os.replace``
    renames it over ``path``; temp files left by a killed earlier run are removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp{path.suffix}"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        motion.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _result(row: BatchRow, status: str, frames: int, reason: str = "") -> RowResult:
    return RowResult(
        row.index, row.line, str(row.audio), [str(p) for p in row.outputs], status, frames, reason
    )


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _probe(row: BatchRow, overwrite: bool) -> tuple[int, str, bool]:
    """(frames, failure reason, done) of a row, from headers and existing outputs only."""
    try:
        frames = expected_frames(row)
    except Exception as exc:
        return 0, _reason(exc), False
    done = not overwrite and all(output_is_valid(p, frames) for p in row.outputs)
    return frames, "", done


@dataclass
class _Inputs:
    audio: Any
    partner: Any
    style: Motion | None
    prev_motion: Motion | None


def _load(row: BatchRow) -> _Inputs:
    audio = load_audio(row.audio, name=f"audio {row.audio.name}")
    partner = None
    if row.partner is not None:
        audio, partner = pad_to_same_length(
            audio, load_audio(row.partner, name=f"partner {row.partner.name}")
        )
    style = Motion.load(row.style) if row.style is not None else None
    prev = Motion.load(row.prev_motion) if row.prev_motion is not None else None
    return _Inputs(audio, partner, style, prev)


def _options(row: BatchRow) -> GenerationOptions:
    """The options a row shares with the rows it is batched with (its ``sampling_key``)."""
    return GenerationOptions(
        temperature=row.temperature,
        top_p=row.top_p,
        cfg_scale=row.cfg_scale,
        smooth=row.smooth,
        use_cache=row.use_cache,
    )


def _generate(model: UniLS, rows: Sequence[BatchRow], inputs: Sequence[_Inputs]) -> list[list[Motion]]:
    """Motions of each row (one, or two for ``both``), from one model call."""
    first = rows[0]
    if first.both:
        a, b = model.generate_both(
            inputs[0].audio,
            inputs[0].partner,
            options=_options(first),
            seed=first.seed,
            style=inputs[0].style,
            prev_motion=inputs[0].prev_motion,
        )
        return [[a, b]]
    motions = model.generate_batch(
        [(x.audio, x.partner) for x in inputs],
        options=_options(first),
        seed=tuple(r.seed for r in rows),
        style=tuple(x.style for x in inputs),
        prev_motion=tuple(x.prev_motion for x in inputs),
    )
    return [[m] for m in motions]


def _run_group(
    model: UniLS, rows: Sequence[BatchRow], pending: set[int], frames: dict[int, int]
) -> list[RowResult]:
    results: list[RowResult] = []
    ready: list[tuple[BatchRow, _Inputs]] = []

    def result(row: BatchRow, status: str, reason: str = "") -> RowResult:
        return _result(row, status, frames.get(row.index, 0), reason)

    for row in rows:
        try:
            ready.append((row, _load(row)))
        except Exception as exc:
            results.append(result(row, "failed", _reason(exc)))
    if not ready:
        return results
    batch_rows, batch_inputs = [r for r, _ in ready], [x for _, x in ready]
    try:
        outcomes: list[list[Motion] | BaseException] = list(_generate(model, batch_rows, batch_inputs))
    except Exception as exc:
        logger.warning(
            "a batch of %d rows failed (%s); running its rows one by one", len(ready), _reason(exc)
        )
        outcomes = []
        for r, x in ready:
            try:
                outcomes.append(_generate(model, [r], [x])[0])
            except Exception as one:
                outcomes.append(one)
    for (row, _), outcome in zip(ready, outcomes):
        if isinstance(outcome, BaseException):
            results.append(result(row, "failed", _reason(outcome)))
            continue
        if row.index not in pending:  # finished earlier; regenerated only to keep its batch as planned
            results.append(result(row, "skipped"))
            continue
        try:
            for motion, path in zip(outcome, row.outputs):
                write_motion_atomic(motion, path)
        except Exception as exc:
            results.append(result(row, "failed", _reason(exc)))
            continue
        results.append(result(row, "generated"))
    return sorted(results, key=lambda r: r.index)


def run_rows(
    rows: Sequence[BatchRow],
    load_model: Callable[[], UniLS],
    *,
    context: DistContext | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    on_plan: Callable[[int, int, int], None] | None = None,
    on_results: Callable[[list[RowResult]], None] | None = None,
) -> RankResult:
    """Generate this rank's share of ``rows``; every rank of the job calls it with the same rows.

    The ranks first split the probing (frame counts from audio headers, validity of existing
    outputs) and share it; then each runs the batches :func:`~unils.batch.plan.assign_groups` gives
    it. The model is loaded only if this rank has work.

    Args:
        rows: the manifest, from :func:`~unils.batch.manifest.read_manifest`.
        load_model: returns the model, on this rank's device.
        context: this process's place in the job (default: from the torchrun variables; its
            process group must be joined when ``world_size > 1``).
        batch_size: most rows per ``generate_batch`` call.
        overwrite: regenerate rows whose outputs already exist.
        on_plan: called once with (rows, rows already done, frames to generate), counted over the whole job.
        on_results: called with the results of each batch as they come.

    Returns:
        This rank's :class:`RankResult` (rows already done are counted by the rank that probed them).
    """
    ctx = context or DistContext.from_env()
    t0 = time.perf_counter()
    mine = {row.index: _probe(row, overwrite) for row in rows if row.index % ctx.world_size == ctx.rank}
    probed: dict[int, tuple[int, str, bool]] = {}
    for part in ctx.all_gather(mine):
        probed.update(part)
    by_index = {row.index: row for row in rows}
    frames = {i: f for i, (f, _, _) in probed.items()}
    out = RankResult(ctx.rank)
    for i in sorted(mine):  # rows that cannot even be planned, reported by the rank that probed them
        if mine[i][1]:
            out.results.append(_result(by_index[i], "failed", 0, mine[i][1]))
    plannable = [row for row in rows if not probed[row.index][1]]
    pending = {row.index for row in plannable if not probed[row.index][2]}
    groups = make_groups(plannable, frames, batch_size)
    todo = [g for g in groups if pending.intersection(g.rows)]
    done_groups = [g for g in groups if not pending.intersection(g.rows)]
    for g in done_groups:  # whole batches done earlier: rank 0 accounts for them
        if ctx.is_main:
            out.results.extend(_result(by_index[i], "skipped", frames[i]) for i in g.rows)
    if on_plan is not None:
        on_plan(len(rows), sum(1 for _, _, ok in probed.values() if ok), sum(frames[i] for i in pending))
    share: list[BatchGroup] = assign_groups(todo, ctx.world_size)[ctx.rank]
    if ctx.is_main and out.results and on_results is not None:
        on_results(list(out.results))
    if not share:
        out.busy_s = time.perf_counter() - t0
        return out
    model = load_model()
    logger.info("rank %d: %d batch(es), %d row(s)", ctx.rank, len(share), sum(len(g.rows) for g in share))
    for group in share:
        got = _run_group(model, [by_index[i] for i in group.rows], pending, frames)
        out.results.extend(got)
        out.groups += 1
        if on_results is not None:
            on_results(got)
    out.busy_s = time.perf_counter() - t0
    return out
