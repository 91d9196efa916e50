"""Continuous batching of live sessions: the ready windows of many sessions run as one step.

Each session's work runs on a worker thread, as before (one audio piece at a time, in order). With a
:class:`StepBatcher`, a worker does not step its session alone: it feeds the audio, and for every
window that became ready it asks the batcher for a step and waits. One stepping thread gathers the
requests that arrive within a short window (``gather_s``, or until ``max_batch`` are waiting) and runs
them as one batched step (:meth:`unils.SessionGroup.step_once`: one encoder batch, one generator batch,
each row with its own options and random generator), then wakes every worker of the batch. Flow
control, deadlines, fairness and per-session closes stay with the scheduler and the sessions: the
batcher only changes how the model work of the sessions that are ready at the same time is done.

A step that fails in a batch is retried for each session alone, so one session's bad state closes
that session only.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, StreamError
from ..streaming import SessionGroup, StreamSession

__all__ = ["StepBatcher", "BatcherStats"]

logger = logging.getLogger("unils.serve")


@dataclass
class _Request:
    session: StreamSession
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass(frozen=True)
class BatcherStats:
    """What the batcher did so far.

    Attributes:
        batches: batched steps run.
        rows: session windows stepped in them (``rows / batches`` is the mean batch size).
        largest: the largest batch.
        step_s: seconds spent in batched steps.
    """

    batches: int
    rows: int
    largest: int
    step_s: float


class StepBatcher:
    """Gathers the ready steps of many sessions (of one model) and runs them as one batched step.

    Args:
        engine: the model's engine (``model.engine``; a [UniLS][unils.UniLS] is accepted too).
        max_batch: most sessions in one step.
        gather_s: how long the stepping thread waits for more requests after the first one.
    """

    def __init__(self, engine: Any, *, max_batch: int = 64, gather_s: float = 0.004) -> None:
        if not (isinstance(gather_s, (int, float)) and 0 <= gather_s <= 1):
            raise ConfigError(f"gather_s must be between 0 and 1 second, got {gather_s!r}")
        self.group = SessionGroup(engine, max_batch=max_batch)
        self.max_batch = self.group.max_batch
        self.gather_s = float(gather_s)
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._closed = False
        self._batches = self._rows = self._largest = 0
        self._step_s = 0.0
        self._thread = threading.Thread(target=self._run, name="unils-batcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the workers' side
    def push(self, session: StreamSession, audio: Any, partner_audio: Any = None) -> Any:
        """``session.push(audio, partner_audio)``, with its steps batched with other sessions' steps.

        Call from a worker thread (it blocks until the session's ready windows are generated).

        Raises:
            StreamError: the batcher is closed.
        """
        session.feed(audio, partner_audio)
        while session.ready():
            self.step(session)
        return session.take()

    def step(self, session: StreamSession) -> None:
        """Generate the session's next ready window in the next batch (blocks until it ran)."""
        req = _Request(session)
        with self._cond:
            if self._closed:
                raise StreamError("the server is shutting down: no more steps are run")
            self._pending.append(req)
            self._cond.notify_all()
        req.done.wait()
        if req.error is not None:
            raise req.error

    def stats(self) -> BatcherStats:
        """Batches, rows, largest batch and step seconds so far."""
        with self._cond:
            return BatcherStats(self._batches, self._rows, self._largest, self._step_s)

    def close(self) -> None:
        """Stop the stepping thread once the pending requests ran; later requests raise StreamError."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ the stepping thread
    def _take_batch(self) -> list[_Request]:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return []
            deadline = time.monotonic() + self.gather_s
            while len(self._pending) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return  # closed and nothing pending
            t0 = time.perf_counter()
            try:
                self.group.step_once([r.session for r in batch])
            except Exception as exc:  # find the session at fault: each alone
                logger.warning(
                    "a batched step of %d sessions failed (%s); stepping each alone", len(batch), exc
                )
                for r in batch:
                    try:
                        self.group.step_once([r.session])
                    except Exception as one:
                        r.error = one
            spent = time.perf_counter() - t0
            with self._cond:
                self._batches += 1
                self._rows += len(batch)
                self._largest = max(self._largest, len(batch))
                self._step_s += spent
            for r in batch:
                r.done.set()
