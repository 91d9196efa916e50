"""Fair scheduling of model work across sessions: one lane per session, most urgent first, round-robin.

Each session queues its work as small items (one audio piece of at most one hop, so about one model step each)
on its [`Lane`][unils.serve.scheduler.Lane]. A free worker thread takes one item from the most urgent lane and
puts the lane back at the tail of the ring, so a session with a thousand queued steps and a session with one
take turns: the second waits for at most one item per worker, not for the first's backlog. A lane runs one
item at a time (a session's audio must be pushed in order), so one session never holds more than one worker.

Urgency is how far a session's consumed audio is ahead of the wall clock since its audio began: a client
sending 10x faster than real time is far ahead and yields to a real-time client, which is at most at real
time. Lanes more than [`MAX_BEHIND_S`][unils.serve.scheduler.MAX_BEHIND_S] behind count as equally urgent (so
an idle start banks no priority), and equally urgent lanes are served in ring order: round-robin.

Workers are daemon threads: a step that is still running when the server must exit (a drain past its deadline)
does not keep the process alive. A drain joins them
([`FairScheduler.join`][unils.serve.scheduler.FairScheduler.join]) so that the process does not exit while a
step runs in native code.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_BEHIND_S", "FairScheduler", "Lane"]

#: Lanes further behind real time than this (seconds) are all equally urgent.
MAX_BEHIND_S = 2.0

logger = logging.getLogger("unils.serve")

#: ``on_done(result, error)``, called on the event loop after each item of a lane.
Done = Callable[[Any, "BaseException | None"], None]


class Lane:
    """One session's queue of work items (callables run in a worker thread, in order)."""

    def __init__(
        self,
        scheduler: FairScheduler,
        on_done: Done,
        can_run: Callable[[], bool] = lambda: True,
        ahead_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._scheduler = scheduler
        self.on_done = on_done
        self.can_run = can_run  # False while the session's output waits for a slow reader
        self.ahead_s = ahead_s  # seconds of audio consumed ahead of the wall clock
        self.items: deque[Callable[[], Any]] = deque()
        self.running = False
        self.queued = False
        self.closed = False

    def put(self, fn: Callable[[], Any]) -> None:
        """Queue one item (call on the event loop)."""
        if not self.closed:
            self.items.append(fn)
            self._scheduler.wake(self)

    def wake(self) -> None:
        """Tell the scheduler the lane may run again (e.g. its reader caught up)."""
        self._scheduler.wake(self)

    def close(self) -> None:
        """Drop queued items; an item already running finishes (its result still reaches ``on_done``)."""
        self.closed = True
        self.items.clear()

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return not self.items and not self.running


class FairScheduler:
    """Round-robin over lanes on ``workers`` daemon threads. Create and use it on one event loop."""

    def __init__(self, workers: int, name: str = "unils-serve") -> None:
        self.workers = workers
        self._loop = asyncio.get_running_loop()
        self._ring: deque[Lane] = deque()
        self._busy = 0
        self._jobs: queue.SimpleQueue[tuple[Lane, Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def busy(self) -> int:
        """Items running now."""
        return self._busy

    def lane(
        self,
        on_done: Done,
        can_run: Callable[[], bool] = lambda: True,
        ahead_s: Callable[[], float] = lambda: 0.0,
    ) -> Lane:
        """A new lane for one session (``ahead_s``: how far its audio is ahead of real time)."""
        return Lane(self, on_done, can_run, ahead_s)

    def wake(self, lane: Lane) -> None:
        if not lane.running and not lane.queued and lane.items and not lane.closed:
            self._ring.append(lane)
            lane.queued = True
        self._dispatch()

    def _dispatch(self) -> None:
        skipped: list[Lane] = []
        while self._busy < self.workers and self._ring:
            # The most urgent lane; among equals the first in the ring (min keeps the first minimum).
            lane = min(self._ring, key=lambda ln: max(ln.ahead_s(), -MAX_BEHIND_S))
            self._ring.remove(lane)
            lane.queued = False
            if lane.closed or not lane.items:
                continue
            if not lane.can_run():
                skipped.append(lane)  # woken again when its reader catches up
                continue
            lane.running = True
            self._busy += 1
            self._jobs.put((lane, lane.items.popleft()))
        for lane in skipped:
            lane.queued = False

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            lane, fn = job
            try:
                result, error = fn(), None
            except BaseException as exc:
                result, error = None, exc
            try:
                self._loop.call_soon_threadsafe(self._finished, lane, result, error)
            except RuntimeError:  # the loop is gone: the server exited while this step ran
                return

    def _finished(self, lane: Lane, result: Any, error: BaseException | None) -> None:
        self._busy -= 1
        lane.running = False
        try:
            lane.on_done(result, error)
        except Exception:  # a bug in a session's callback must not stop the scheduler
            logger.exception("a session's completion callback failed")
        self.wake(lane)  # back to the tail of the ring: round-robin

    def shutdown(self) -> None:
        """Let the threads exit once idle (a running item is not interrupted)."""
        for _ in self._threads:
            self._jobs.put(None)

    def join(self, timeout: float) -> bool:
        """After [`shutdown`][unils.serve.scheduler.FairScheduler.shutdown], wait up to ``timeout`` seconds
        for the threads; True if all exited."""
        import time

        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)
