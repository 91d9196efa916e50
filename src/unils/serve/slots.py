"""Session slots of ``unils serve``: how many sessions may run, and the tally of how connections end.

Every connection gets a [`Slot`][unils.serve.slots.Slot] from the server's
[`SlotPool`][unils.serve.slots.SlotPool] when it opens. A valid hello *takes* the slot (a session runs); the
connection's end *releases* it, once, with the close code, which frees the session place (if it was taken) and
counts the code in the metrics. Leaving a ``with`` block releases it too (with 1006 when no code was given),
so a connection cannot leak its place, whatever path its end takes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["Slot", "SlotPool"]

#: The close code counted for a connection that ended without one (it dropped, or a bug).
CLOSE_ABNORMAL = 1006


class SlotPool:
    """At most ``max_sessions`` sessions at once; counts every connection's close code in ``closes``.

    Args:
        max_sessions: the number of session places.
        closes: where close codes are counted (the server's metrics); a new counter if None.
    """

    def __init__(self, max_sessions: int, closes: Counter[int] | None = None) -> None:
        self.max_sessions = max_sessions
        self.closes: Counter[int] = closes if closes is not None else Counter()
        self.active = 0
        self.draining = False

    def slot(self) -> Slot:
        """The slot of a new connection (it holds no session place until
        [`Slot.take`][unils.serve.slots.Slot.take])."""
        return Slot(self)

    @property
    def free(self) -> int:
        """Session places left (0 while draining)."""
        return 0 if self.draining else max(0, self.max_sessions - self.active)


class Slot:
    """One connection's claim on the pool: take a session place once, release it (and count the close) once."""

    def __init__(self, pool: SlotPool) -> None:
        self._pool = pool
        self.held = False
        self.code: int | None = None  # the close code, once released

    def take(self) -> bool:
        """Take a session place (False: all taken, draining, or this slot was released)."""
        pool = self._pool
        if self.held or self.code is not None or pool.draining or pool.active >= pool.max_sessions:
            return self.held
        pool.active += 1
        self.held = True
        return True

    def release(self, code: int) -> None:
        """Free the session place (if taken) and count ``code``; later calls do nothing."""
        if self.code is not None:
            return
        self.code = code
        if self.held:
            self.held = False
            self._pool.active -= 1
        self._pool.closes[code] += 1

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release(CLOSE_ABNORMAL)
