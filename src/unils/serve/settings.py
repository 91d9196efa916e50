"""Settings of ``unils serve`` ([`ServeConfig`][unils.serve.settings.ServeConfig]), shared by the server and
its connections."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from .access import ForwardedPolicy, is_loopback

__all__ = ["ServeConfig"]


@dataclass
class ServeConfig:
    """Settings of a `unils.serve.UniLSServer` (the idle and deadline rules are tabled in ``docs/serve.md``).

    Attributes:
        host: interface to bind. The default, 127.0.0.1, accepts local clients only; any other
            address needs a ``token``.
        port: TCP port (0 = any free port; read it back from `UniLSServer.port`).
        token: shared secret clients must present (``?token=`` in the URL or an
            ``Authorization: Bearer`` header). At least 8 characters.
        max_sessions: concurrent sessions (a valid hello takes a slot); one more is closed with 1013.
        max_message_bytes: largest message a client may send (larger: close code 1009). The Python
            clients and the browser page split longer blocks into messages within it.
        idle_timeout_s: a session that sends no non-empty message for this long, while the server
            has none of its audio left to process, is closed (4008).
        hello_timeout_s: a connection must send its hello within this time (else 4008); until then
            it holds no session slot. The HTTP request before it has the same deadline.
        send_timeout_s: a send that waits this long for the client to read its frames closes the
            session (4009) and frees its slot.
        max_queued_audio_s: audio (seconds, at the client's rate) a session may have waiting for the
            model; the protocol's credit, which the clients honour.
        max_read_ahead_bytes: audio bytes the server reads ahead for a client that ignores the
            credit; beyond it the server stops reading that connection and TCP slows the sender.
            Large, because a client's keepalive pings queue behind its audio: while the server
            withholds reads, a ping waits until the model has consumed all the audio in front of it
            (up to megabytes in the client's own kernel send buffer).
        max_output_bytes: frames/stats bytes a session may have waiting to be sent; beyond it its
            model work pauses until the client reads.
        max_connections_per_address: open WebSocket connections per client IP (more: HTTP 429). The
            client IP is the forwarded one for requests from ``forwarded_allow_ips``.
        send_buffer_bytes: kernel send buffer of each connection (``SO_SNDBUF``). Bounded, so that
            a client that stops reading is noticed after this much unread data, not after megabytes.
        recv_buffer_bytes: kernel receive buffer of each connection (``SO_RCVBUF``). Bounded, so that
            little audio waits in the server's kernel in front of a client's keepalive pings while
            the server withholds reads (their pongs come after that audio is consumed).
        workers: threads running model work (default: ``max_sessions`` with ``batch_steps``, where a
            worker waits for its batch, else ``min(max_sessions, CPU count)``).
        batch_steps: continuous batching: the ready steps of all sessions, gathered within
            ``batch_gather_ms``, run as one batched step
            ([`StepBatcher`][unils.serve.batcher.StepBatcher]); the frames are those of each session
            stepped alone (bit for bit in float32 on CPU).
        max_batch: most sessions in one batched step.
        batch_gather_ms: how long the batcher waits for more sessions after the first ready one (ms).
        min_hop_frames: the smallest low-latency hop a client may ask for (a hop of ``h`` frames
            costs ``window / h`` times the compute of exact mode).
        allowed_origins: browser origins allowed besides the server's own (e.g.
            ``"https://app.example.com"``); requests from other web pages are refused (403).
        allowed_hosts: Host names accepted besides loopback names, IP literals and ``host`` (e.g. the
            public name a TLS proxy forwards); others get 421 (DNS rebinding). ``"*"``: any.
        forwarded_allow_ips: addresses or networks of reverse proxies whose ``X-Forwarded-For`` is
            trusted (uvicorn's and gunicorn's ``--forwarded-allow-ips``); ``"*"``: any peer. For a
            request from one of them, the client address (per-address limit, logs) is the
            right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy.
        ping_interval_s: keepalive: a client silent this long is pinged (None: no keepalive).
        ping_timeout_s: a pinged client that neither answers nor sends anything for this long is
            closed (4010); never counted while the server itself withholds reads.
        drain_timeout_s: on shutdown, new requests get 503 while sessions get the frames of the
            steps already running and then 1001; the server exits within this time, even if a model
            step is still running.
        close_timeout_s: how long a closing handshake may take before the connection is dropped
            (the TCP connection is aborted then, even if the peer reads nothing).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_sessions: int = 8
    max_message_bytes: int = 1 << 20
    idle_timeout_s: float = 30.0
    hello_timeout_s: float = 5.0
    send_timeout_s: float = 20.0
    max_queued_audio_s: float = 4.0
    max_read_ahead_bytes: int = 16 << 20
    max_output_bytes: int = 4 << 20
    max_connections_per_address: int = 16
    send_buffer_bytes: int = 256 * 1024
    recv_buffer_bytes: int = 128 * 1024
    workers: int | None = None
    batch_steps: bool = True
    max_batch: int = 64
    batch_gather_ms: float = 4.0
    min_hop_frames: int = 5
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float = 20.0
    drain_timeout_s: float = 5.0
    close_timeout_s: float = 2.0

    def validate(self) -> ServeConfig:
        """Refuse unsafe or impossible settings.

        Raises:
            ConfigError: no token off-localhost, a short token, a non-positive limit, or a
                ``forwarded_allow_ips`` entry that is neither an address, a network nor ``*``.
        """
        if self.token is not None and len(self.token) < 8:
            raise ConfigError("the serve token must be at least 8 characters (use a random string)")
        if self.token is None and not is_loopback(self.host):
            raise ConfigError(
                f"binding to {self.host!r} exposes the server beyond this machine: pass a token "
                "(--token or UNILS_SERVE_TOKEN), or bind to 127.0.0.1"
            )
        if not 0 <= int(self.port) <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        for name in (
            "max_sessions",
            "max_message_bytes",
            "idle_timeout_s",
            "min_hop_frames",
            "hello_timeout_s",
            "send_timeout_s",
            "max_queued_audio_s",
            "max_read_ahead_bytes",
            "max_output_bytes",
            "max_connections_per_address",
            "send_buffer_bytes",
            "recv_buffer_bytes",
            "ping_timeout_s",
            "drain_timeout_s",
            "close_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if not isinstance(self.batch_steps, bool):
            raise ConfigError(f"batch_steps must be True or False, got {self.batch_steps!r}")
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ConfigError(
                f"max_batch must be an int >= 1 (sessions per batched step), got {self.max_batch!r}"
            )
        gather = self.batch_gather_ms
        if isinstance(gather, bool) or not isinstance(gather, (int, float)) or not 0 <= gather <= 1000:
            raise ConfigError(
                f"batch_gather_ms must be between 0 and 1000 ms (a few ms is typical), got {gather!r}"
            )
        ForwardedPolicy(self.forwarded_allow_ips)  # raises ConfigError on a malformed entry
        return self
