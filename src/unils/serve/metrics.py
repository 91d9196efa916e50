"""Server figures in the Prometheus text exposition format (``GET /metrics``), with no dependency.

Only touched from the server's event loop, so plain integers and lists suffice.
"""

from __future__ import annotations

import bisect
from collections import Counter

__all__ = ["STEP_BUCKETS", "ServerMetrics"]

#: Upper bounds (seconds) of the step-time histogram buckets.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """Counters, gauges and the step-time histogram of one server."""

    def __init__(self) -> None:
        self.sessions_total = 0
        self.connections_total = 0
        self.frames_total = 0
        self.steps_total = 0
        self.audio_seconds_total = 0.0
        self.handshake_timeouts = 0  # TCP connections that sent no HTTP request within the deadline
        self.slowloris_drops = 0  # connections that began a request and did not finish it in time
        self.closes: Counter[int] = Counter()
        self.http_refusals: Counter[int] = Counter()
        self._buckets = [0] * (len(STEP_BUCKETS) + 1)
        self._step_sum = 0.0

    def observe_steps(self, steps: int, seconds: float) -> None:
        """Record ``steps`` model steps that took ``seconds`` together (split evenly between them)."""
        if steps <= 0:
            return
        each = seconds / steps
        self._buckets[bisect.bisect_left(STEP_BUCKETS, each)] += steps
        self._step_sum += seconds
        self.steps_total += steps

    def render(
        self,
        gauges: dict[str, tuple[str, float]],
        info: dict[str, str],
        counters: dict[str, tuple[str, float]] | None = None,
    ) -> str:
        """The exposition text. ``gauges`` and ``counters``: name -> (help, value), read at scrape time."""
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {_num(v)}" for labels, v in samples)

        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in info.items())
        metric("unils_serve_info", "gauge", "Model and protocol of this server.", [(f"{{{labels}}}", 1)])
        for name, (help_, value) in gauges.items():
            metric(name, "gauge", help_, [("", value)])
        for name, (help_, value) in (counters or {}).items():
            metric(name, "counter", help_, [("", value)])
        metric(
            "unils_serve_connections_total",
            "counter",
            "WebSocket connections accepted.",
            [("", self.connections_total)],
        )
        metric(
            "unils_serve_sessions_total",
            "counter",
            "Sessions started (a valid hello was received).",
            [("", self.sessions_total)],
        )
        metric(
            "unils_serve_frames_total", "counter", "Motion frames sent to clients.", [("", self.frames_total)]
        )
        metric("unils_serve_steps_total", "counter", "Model steps run.", [("", self.steps_total)])
        metric(
            "unils_serve_audio_seconds_total",
            "counter",
            "Audio consumed by sessions (seconds).",
            [("", self.audio_seconds_total)],
        )
        metric(
            "unils_serve_closes_total",
            "counter",
            "Connections ended, by WebSocket close code.",
            [(f'{{code="{c}"}}', n) for c, n in sorted(self.closes.items())],
        )
        metric(
            "unils_serve_http_refusals_total",
            "counter",
            "HTTP requests refused before any WebSocket, by status.",
            [(f'{{status="{c}"}}', n) for c, n in sorted(self.http_refusals.items())],
        )
        metric(
            "unils_serve_handshake_timeouts_total",
            "counter",
            "TCP connections dropped for sending no HTTP request within --hello-timeout.",
            [("", self.handshake_timeouts)],
        )
        metric(
            "unils_serve_slowloris_drops_total",
            "counter",
            "Connections dropped for not finishing their HTTP request within --hello-timeout (slowloris).",
            [("", self.slowloris_drops)],
        )
        cumulative, samples = 0, []
        for bound, n in zip((*STEP_BUCKETS, float("inf")), self._buckets):
            cumulative += n
            samples.append(
                (f'_bucket{{le="{"+Inf" if bound == float("inf") else _num(bound)}"}}', cumulative)
            )
        out.append("# HELP unils_serve_step_seconds Compute time of one model step.")
        out.append("# TYPE unils_serve_step_seconds histogram")
        out.extend(f"unils_serve_step_seconds{suffix} {_num(v)}" for suffix, v in samples)
        out.append(f"unils_serve_step_seconds_sum {_num(self._step_sum)}")
        out.append(f"unils_serve_step_seconds_count {self.steps_total}")
        return "\n".join(out) + "\n"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
