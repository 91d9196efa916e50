"""The ``unils serve`` WebSocket server: one connection = one streaming session.

Built on the asyncio server of ``websockets``. The event loop only moves bytes; decoding audio,
the model steps and frame encoding run on worker threads, scheduled round-robin across sessions
(``scheduler.py``), so a slow or greedy session never blocks the others. Each connection's flow
control and deadlines live in ``session.py``; who may connect in ``access.py``. Every failure of
one session ends that session alone, with a close code and a readable reason.

The same port serves the browser demo (``/``, static files shipped in the package), a health
endpoint (``/healthz``) and Prometheus metrics (``/metrics``).
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

try:
    from websockets.asyncio.server import Server, ServerConnection, serve
    from websockets.datastructures import Headers
    from websockets.http11 import Request, Response
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('unils serve needs the "serve" extra: pip install "unils[serve]"') from exc

from ..errors import ConfigError
from .access import HostPolicy, is_loopback, token_ok
from .metrics import ServerMetrics
from .protocol import CLOSE_GOING_AWAY, PROTOCOL_VERSION
from .scheduler import FairScheduler
from .session import Connection

if TYPE_CHECKING:
    from ..model import UniLS
    from ..streaming import StreamSession

__all__ = ["ServeConfig", "UniLSServer", "ServerThread", "WS_PATH", "is_loopback", "run"]

logger = logging.getLogger("unils.serve")
access = logging.getLogger("unils.serve.access")

#: Path of the WebSocket endpoint; every other path is plain HTTP (demo page, health, metrics).
WS_PATH = "/ws"

# URL path -> (file in unils/serve/static, content type). Only these are served.
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/avatar.js": ("avatar.js", "text/javascript; charset=utf-8"),
    "/capture-worklet.js": ("capture-worklet.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/head3d.js": ("head3d.js", "text/javascript; charset=utf-8"),
    "/three.min.js": ("three.min.js", "text/javascript; charset=utf-8"),
    "/three.LICENSE.txt": ("three.LICENSE.txt", "text/plain; charset=utf-8"),
}
# URL path -> (file in unils/assets/ict_head, content type): the 3-D head the page draws.
_HEAD_FILES = {
    "/ict_head.json": ("ict_head.json", "application/json"),
    "/ict_head.bin": ("ict_head.bin", "application/octet-stream"),
    "/ict_head.LICENSE.txt": ("LICENSE-ICT-FaceKit.txt", "text/plain; charset=utf-8"),
}


@dataclass
class ServeConfig:
    """Settings of a :class:`UniLSServer` (the idle and deadline rules are tabled in ``docs/serve.md``).

    Attributes:
        host: interface to bind. The default, 127.0.0.1, accepts local clients only; any other
            address needs a ``token``.
        port: TCP port (0 = any free port; read it back from :attr:`UniLSServer.port`).
        token: shared secret clients must present (``?token=`` in the URL or an
            ``Authorization: Bearer`` header). At least 8 characters.
        max_sessions: concurrent sessions (a valid hello takes a slot); one more is closed with 1013.
        max_message_bytes: largest message a client may send (larger: close code 1009).
        idle_timeout_s: a session that sends no non-empty message for this long, while the server
            has none of its audio left to process, is closed (4008).
        hello_timeout_s: a connection must send its hello within this time (else 4008); until then
            it holds no session slot.
        send_timeout_s: a send that waits this long for the client to read its frames closes the
            session (4009) and frees its slot.
        max_queued_audio_s: audio (seconds, at the client's rate) a session may have waiting for the
            model; the protocol's credit. Beyond it the server stops reading that connection.
        max_output_bytes: frames/stats bytes a session may have waiting to be sent; beyond it its
            model work pauses until the client reads.
        max_connections_per_address: open WebSocket connections per client IP (more: HTTP 429).
        send_buffer_bytes: kernel send buffer of each connection (``SO_SNDBUF``). Bounded, so that
            a client that stops reading is noticed after this much unread data, not after megabytes.
        workers: threads running model steps (default: ``min(max_sessions, CPU count)``).
        min_hop_frames: the smallest low-latency hop a client may ask for (a hop of ``h`` frames
            costs ``window / h`` times the compute of exact mode).
        allowed_origins: browser origins allowed besides the server's own (e.g.
            ``"https://app.example.com"``); requests from other web pages are refused (403).
        allowed_hosts: Host names accepted besides loopback names, IP literals and ``host`` (e.g. the
            public name a TLS proxy forwards); others get 421 (DNS rebinding). ``"*"``: any.
        ping_interval_s: keepalive: a client silent this long is pinged (None: no keepalive).
        ping_timeout_s: a pinged client that neither answers nor sends anything for this long is
            closed (4010); never counted while the server itself withholds reads.
        drain_timeout_s: on shutdown, sessions are closed with 1001 and the server exits within this
            time, even if a model step is still running.
        close_timeout_s: how long a closing handshake may take before the connection is dropped.
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
    max_output_bytes: int = 4 << 20
    max_connections_per_address: int = 16
    send_buffer_bytes: int = 256 * 1024
    workers: int | None = None
    min_hop_frames: int = 5
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float = 20.0
    drain_timeout_s: float = 5.0
    close_timeout_s: float = 2.0

    def validate(self) -> ServeConfig:
        """Refuse unsafe or impossible settings.

        Raises:
            ConfigError: no token off-localhost, a short token, or a non-positive limit.
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
            "max_output_bytes",
            "max_connections_per_address",
            "send_buffer_bytes",
            "ping_timeout_s",
            "drain_timeout_s",
            "close_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        return self


def _static_file(name: str) -> bytes:
    return (resources.files("unils.serve") / "static" / name).read_bytes()


class UniLSServer:
    """Serve streaming sessions of one model over WebSocket.

    Use it inside a running event loop::

        server = UniLSServer(model, ServeConfig(port=0))
        await server.start()
        print(server.ws_url)
        ...
        await server.stop()

    or from synchronous code with :class:`ServerThread`, or from the command line with
    ``unils serve``.

    Args:
        model: the loaded model, shared by all sessions (each session has its own state).
        config: settings (validated on construction).
    """

    def __init__(self, model: UniLS, config: ServeConfig | None = None) -> None:
        self.model = model
        self.config = (config or ServeConfig()).validate()
        self._server: Server | None = None
        self.scheduler: FairScheduler | None = None  # type: ignore[assignment]
        self._active = 0
        self._ids = itertools.count(1)
        self._static = {path: (_static_file(name), ctype) for path, (name, ctype) in _STATIC.items()}
        head = resources.files("unils") / "assets" / "ict_head"
        self._static.update(
            {path: ((head / n).read_bytes(), ctype) for path, (n, ctype) in _HEAD_FILES.items()}
        )
        self._policy = HostPolicy(self.config.host, self.config.allowed_hosts, self.config.allowed_origins)
        self._connections: dict[int, Connection] = {}
        self._per_address: Counter[str] = Counter()
        self._draining = False
        self.metrics = ServerMetrics()

    @property
    def closed_by_code(self) -> Counter[int]:
        """Connections ended so far, by close code (1006: the client vanished without a close frame)."""
        return self.metrics.closes

    @property
    def sessions_opened(self) -> int:
        """Sessions started so far (valid hellos)."""
        return self.metrics.sessions_total

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind and start accepting connections."""
        cfg = self.config
        workers = cfg.workers or max(1, min(cfg.max_sessions, os.cpu_count() or 1))
        self.scheduler = FairScheduler(workers)
        self._server = await serve(
            self._handler,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            # Keepalive is the session's own (session.py): it must not time out a client whose
            # pongs wait behind audio the server itself has not read yet.
            max_size=cfg.max_message_bytes,
            ping_interval=None,
            open_timeout=cfg.hello_timeout_s,
            close_timeout=cfg.close_timeout_s,
            # Audio is incompressible noise to deflate; compression would only cost CPU.
            compression=None,
            server_header=None,
            logger=logging.getLogger("unils.serve.websockets"),
        )
        logger.info(
            "serving %s on %s (max %d sessions, %d model threads)",
            self.model.config.name,
            self.url,
            cfg.max_sessions,
            workers,
        )

    async def stop(self) -> None:
        """Drain: stop accepting, close every session with 1001, return within ``drain_timeout_s``."""
        if self._server is None:
            return
        deadline = time.monotonic() + self.config.drain_timeout_s
        self._draining = True
        server, self._server = self._server, None
        server.close(close_connections=False)  # stop listening; sessions are closed below, with a reason
        if self._connections:
            logger.info("draining: closing %d connection(s)", len(self._connections))
        for conn in list(self._connections.values()):
            conn.finish(CLOSE_GOING_AWAY, "server shutting down; reconnect later or to another replica")
        try:
            await asyncio.wait_for(server.wait_closed(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            logger.warning(
                "drain deadline (%g s) reached: dropping %d connection(s)",
                self.config.drain_timeout_s,
                len(self._connections),
            )
            for conn in list(self._connections.values()):
                conn.ws.transport.abort()
        if self.scheduler is not None:
            if self.scheduler.busy:
                logger.warning("exiting with %d model step(s) still running (abandoned)", self.scheduler.busy)
            self.scheduler.shutdown()

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.stop()

    async def __aenter__(self) -> UniLSServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None:
            return self.config.port
        return self._server.sockets[0].getsockname()[1]

    @property
    def _host_for_url(self) -> str:
        host = self.config.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    @property
    def url(self) -> str:
        """The demo page, ``http://host:port/``."""
        return f"http://{self._host_for_url}:{self.port}/"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint, ``ws://host:port/ws``."""
        return f"ws://{self._host_for_url}:{self.port}{WS_PATH}"

    @property
    def active_sessions(self) -> int:
        """Sessions currently holding a slot."""
        return self._active

    @property
    def open_connections(self) -> int:
        """WebSocket connections currently open (with or without a hello)."""
        return len(self._connections)

    def queued_audio_s(self) -> float:
        """Audio (seconds) received by all sessions and not yet consumed by the model."""
        return sum(c.queued_bytes / c.hello.bytes_per_second for c in self._connections.values() if c.hello)

    # ------------------------------------------------------------------ slots (called by session.py)
    def take_slot(self) -> bool:
        """Take a session slot for a connection that sent a valid hello (False: all taken, or draining)."""
        if self._draining or self._active >= self.config.max_sessions:
            return False
        self._active += 1
        return True

    def release(self, conn: Connection) -> None:
        """Free a connection's slot (if it held one) and count its close code; called once per connection."""
        if conn.has_slot:
            conn.has_slot = False
            self._active -= 1
        code = conn.closing[0] if conn.closing else 1006
        self.metrics.closes[code] += 1

    def stats_message(self, session: StreamSession, push_s: float, kind: str = "stats") -> str:
        """The JSON ``stats`` (or final ``end``) message of a session."""
        return json.dumps(
            {
                "type": kind,
                "frames_emitted": session.frames_emitted,
                "push_compute_s": push_s,
                **session.stats().__dict__,
            }
        )

    # ------------------------------------------------------------------ HTTP side
    def _response(
        self, status: int, reason: str, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> Response:
        headers = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Connection", "close"),
                ("Content-Length", str(len(body))),
                ("Content-Type", ctype),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ]
        )
        for k, v in (extra or {}).items():
            headers[k] = v
        return Response(status, reason, headers, body)

    def _refuse(
        self, connection: ServerConnection, request: Request, status: int, reason: str, text: str
    ) -> Response:
        self.metrics.http_refusals[status] += 1
        peer = connection.remote_address[0] if connection.remote_address else "?"
        access.warning(
            "refused peer=%s path=%s status=%d reason=%r", peer, urlsplit(request.path).path, status, text
        )
        return self._response(status, reason, (text + "\n").encode(), "text/plain; charset=utf-8")

    def _supplied_token(self, request: Request, query: dict[str, list[str]]) -> str | None:
        tokens = query.get("token")
        supplied = tokens[0] if tokens else None
        auth = request.headers.get("Authorization", "")
        if supplied is None and auth.lower().startswith("bearer "):
            supplied = auth[7:].strip()
        return supplied

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path, query = parts.path, parse_qs(parts.query)
        host = request.headers.get("Host")
        ok, why = self._policy.host_ok(host)
        if not ok:
            return self._refuse(connection, request, 421, "Misdirected Request", why)
        if path == WS_PATH:
            origin = request.headers.get("Origin")
            if origin is not None and not self._policy.origin_ok(origin, host or ""):
                return self._refuse(
                    connection,
                    request,
                    403,
                    "Forbidden",
                    f"origin {origin} is not allowed (see --allow-origin)",
                )
            if not token_ok(self.config.token, self._supplied_token(request, query)):
                return self._refuse(
                    connection,
                    request,
                    401,
                    "Unauthorized",
                    "missing or wrong token: add ?token=... "
                    "to the URL or an 'Authorization: Bearer ...' header",
                )
            if self._draining:
                return self._refuse(
                    connection, request, 503, "Service Unavailable", "the server is shutting down"
                )
            address = connection.remote_address[0] if connection.remote_address else "?"
            if self._per_address[address] >= self.config.max_connections_per_address:
                return self._refuse(
                    connection,
                    request,
                    429,
                    "Too Many Requests",
                    f"too many connections from {address} (limit {self.config.max_connections_per_address})",
                )
            return None  # go on with the WebSocket handshake
        if path in self._static:
            body, ctype = self._static[path]
            return self._response(
                200,
                "OK",
                body,
                ctype,
                {
                    # The page only talks to its own server.
                    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
                },
            )
        if path == "/healthz":
            body = json.dumps(
                {
                    "status": "draining" if self._draining else "ok",
                    "model": self.model.config.name,
                    "sessions": self._active,
                    "max_sessions": self.config.max_sessions,
                    "protocol": PROTOCOL_VERSION,
                }
            ).encode()
            return self._response(503 if self._draining else 200, "OK", body, "application/json")
        if path == "/metrics":
            if not token_ok(self.config.token, self._supplied_token(request, query)):
                return self._refuse(connection, request, 401, "Unauthorized", "metrics need the token")
            return self._response(
                200, "OK", self._metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8"
            )
        return self._refuse(
            connection,
            request,
            404,
            "Not Found",
            f"nothing at {path}: the demo is at /, the WebSocket at {WS_PATH}",
        )

    def _metrics_text(self) -> str:
        sched = self.scheduler
        gauges = {
            "unils_serve_sessions_active": ("Sessions holding a slot.", float(self._active)),
            "unils_serve_sessions_max": ("Configured --max-sessions.", float(self.config.max_sessions)),
            "unils_serve_connections_open": (
                "Open WebSocket connections, with or without a hello.",
                float(len(self._connections)),
            ),
            "unils_serve_queued_audio_seconds": (
                "Audio received and not yet consumed by the model, all sessions.",
                self.queued_audio_s(),
            ),
            "unils_serve_steps_running": ("Model work items running now.", float(sched.busy if sched else 0)),
        }
        return self.metrics.render(
            gauges, {"model": self.model.config.name, "protocol": str(PROTOCOL_VERSION)}
        )

    # ------------------------------------------------------------------ connections
    async def _handler(self, ws: ServerConnection) -> None:
        conn = Connection(self, ws, next(self._ids))
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.send_buffer_bytes)
        address = ws.remote_address[0] if ws.remote_address else "?"
        self._per_address[address] += 1
        self._connections[conn.id] = conn
        self.metrics.connections_total += 1
        try:
            await conn.run()
        finally:
            del self._connections[conn.id]
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]
            if conn.closing is None:  # cancelled (the loop is stopping)
                conn.finish(CLOSE_GOING_AWAY, "server stopped")
            conn.dispose()


class ServerThread:
    """Run a :class:`UniLSServer` in a background thread with its own event loop.

    For tests, notebooks and programs that are not asyncio-based::

        with ServerThread(model, ServeConfig(port=0)) as server:
            client = StreamClient(server.ws_url, sample_rate=16000)

    Args:
        model: the loaded model.
        config: settings.
    """

    def __init__(self, model: UniLS, config: ServeConfig | None = None) -> None:
        self.server = UniLSServer(model, config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._started: Future[None] = Future()

    def start(self) -> ServerThread:
        """Start serving; returns once the port is bound (raises what binding raised)."""
        self._thread = threading.Thread(target=self._run, name="unils-serve-loop", daemon=True)
        self._thread.start()
        self._started.result()
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as exc:  # reported to start()'s caller
                self._started.set_exception(exc)
                return
            self._started.set_result(None)
            try:
                await self._stopped.wait()
            finally:
                await self.server.stop()

        asyncio.run(main())

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on the server's loop thread and return its result (for inspection)."""
        assert self._loop is not None
        fut: Future[Any] = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return fut.result()

    def stop(self) -> None:
        """Close all sessions and stop the thread."""
        if (
            self._loop is not None
            and self._stopped is not None
            and self._thread is not None
            and self._thread.is_alive()
        ):
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join()

    @property
    def url(self) -> str:
        """The demo page, ``http://host:port/``."""
        return self.server.url

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint, ``ws://host:port/ws``."""
        return self.server.ws_url

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run(model: UniLS, config: ServeConfig, on_ready: Callable[[UniLSServer], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (blocking), then drain within ``config.drain_timeout_s``.

    On the signal the server stops accepting, closes every session with 1001 and a reason, and
    returns within the drain deadline even while a model step runs (its thread is abandoned).
    ``on_ready`` is called once the port is bound.
    """
    import signal

    async def main() -> None:
        server = UniLSServer(model, config)
        await server.start()
        if on_ready is not None:
            on_ready(server)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - e.g. Windows
                pass
        try:
            await stop.wait()
        finally:
            logger.info(
                "shutting down: draining %d session(s) within %g s",
                server.active_sessions,
                config.drain_timeout_s,
            )
            await server.stop()

    asyncio.run(main())
