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
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

try:
    from websockets.asyncio.server import Server, ServerConnection, serve
    from websockets.datastructures import Headers
    from websockets.http11 import Request, Response
    from websockets.protocol import State
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('unils serve needs the "serve" extra: pip install "unils[serve]"') from exc

from .access import ForwardedPolicy, HostPolicy, is_loopback, token_ok
from .batcher import StepBatcher
from .metrics import ServerMetrics
from .protocol import CLOSE_GOING_AWAY, PROTOCOL_VERSION
from .scheduler import FairScheduler
from .session import Connection, SessionHandle, push_alone
from .settings import ServeConfig
from .slots import SlotPool

if TYPE_CHECKING:
    from ..model import UniLS

__all__ = ["ServeConfig", "UniLSServer", "ServerThread", "WS_PATH", "is_loopback", "run"]

logger = logging.getLogger("unils.serve")
access = logging.getLogger("unils.serve.access")

#: Why sessions end with 1001 when the server shuts down.
DRAIN_REASON = "server shutting down; reconnect later or to another replica"

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


def _static_file(name: str) -> bytes:
    return (resources.files("unils.serve") / "static" / name).read_bytes()


class UniLSServer:
    """Serve streaming sessions of one model over WebSocket.

    Use it inside a running event loop:

    ```python
    server = UniLSServer(model, ServeConfig(port=0))
    await server.start()
    print(server.ws_url)
    ...
    await server.stop()
    ```

    or from synchronous code with [`ServerThread`][unils.serve.server.ServerThread], or from the command line
    with ``unils serve``.

    Args:
        model: the loaded model, shared by all sessions (each session has its own state).
        config: settings (validated on construction).
    """

    def __init__(self, model: UniLS, config: ServeConfig | None = None) -> None:
        self.model = model
        self.config = (config or ServeConfig()).validate()
        self._server: Server | None = None
        self.scheduler: FairScheduler | None = None  # type: ignore[assignment]
        #: The continuous batcher of the sessions' steps (``config.batch_steps``), made by
        #: [`start`][unils.serve.server.UniLSServer.start].
        self.batcher: StepBatcher | None = None
        self._ids = itertools.count(1)
        self._static = {path: (_static_file(name), ctype) for path, (name, ctype) in _STATIC.items()}
        head = resources.files("unils") / "assets" / "ict_head"
        self._static.update(
            {path: ((head / n).read_bytes(), ctype) for path, (n, ctype) in _HEAD_FILES.items()}
        )
        self._policy = HostPolicy(self.config.host, self.config.allowed_hosts, self.config.allowed_origins)
        self._forwarded = ForwardedPolicy(self.config.forwarded_allow_ips)
        self._connections: dict[int, Connection] = {}
        self._per_address: Counter[str] = Counter()
        self._draining = False
        self._stopping = False
        self.metrics = ServerMetrics()
        self.slots = SlotPool(self.config.max_sessions, self.metrics.closes)
        #: Model steps still running when [`stop`][unils.serve.server.UniLSServer.stop] returned (abandoned
        #: past the drain deadline).
        self.abandoned_steps = 0

    @property
    def closed_by_code(self) -> Counter[int]:
        """Connections ended so far, by close code (1006: the client vanished without a close frame)."""
        return self.metrics.closes

    @property
    def sessions_opened(self) -> int:
        """Sessions started so far (valid hellos)."""
        return self.metrics.sessions_total

    @property
    def draining(self) -> bool:
        """Whether the server is draining (new requests get 503, ``/healthz`` says ``draining``)."""
        return self._draining

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind and start accepting connections."""
        cfg = self.config
        if cfg.batch_steps:
            # A worker waits while its session's window runs in a batch: one worker per session.
            workers = cfg.workers or cfg.max_sessions
            self.batcher = StepBatcher(
                self.model.engine, max_batch=cfg.max_batch, gather_s=cfg.batch_gather_ms / 1000.0
            )
        else:
            workers = cfg.workers or max(1, min(cfg.max_sessions, os.cpu_count() or 1))
        self.scheduler = FairScheduler(workers)
        self._server = await serve(
            self._handler,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            create_connection=self._connection_class(),
            # Keepalive is the session's own (session.py): it must not time out a client whose
            # pongs wait behind audio the server itself has not read yet.
            max_size=cfg.max_message_bytes,
            # Few received messages wait in the library beyond the session's credit (see recv_buffer_bytes).
            max_queue=4,
            ping_interval=None,
            open_timeout=cfg.hello_timeout_s,
            close_timeout=cfg.close_timeout_s,
            # Audio is incompressible noise to deflate; compression would only cost CPU.
            compression=None,
            server_header=None,
            logger=logging.getLogger("unils.serve.websockets"),
        )
        for sock in self._server.sockets:
            # Inherited by every accepted connection: little audio waits in the kernel in front of a
            # client's keepalive ping while the server withholds reads from that client.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg.recv_buffer_bytes)
        logger.info(
            "serving %s on %s (max %d sessions, %d model threads, %s)",
            self.model.config.name,
            self.url,
            cfg.max_sessions,
            workers,
            f"batched steps of up to {cfg.max_batch} sessions" if cfg.batch_steps else "steps in turn",
        )

    def _connection_class(self) -> type[ServerConnection]:
        server = self

        class _Counted(ServerConnection):
            # Tells a connection that never sent a request from one that sent part of it (slowloris)
            # when the opening handshake times out; websockets then drops both silently.
            request_bytes = 0

            def data_received(self, data: bytes) -> None:
                if self.protocol.state is State.CONNECTING:
                    self.request_bytes += len(data)
                super().data_received(data)

            async def handshake(self, *args: Any, **kwargs: Any) -> None:
                try:
                    await super().handshake(*args, **kwargs)
                except asyncio.CancelledError:
                    if not server._stopping:  # the open timeout, not the server closing
                        server._handshake_timed_out(self, self.request_bytes)
                    raise

        return _Counted

    def _handshake_timed_out(self, connection: ServerConnection, request_bytes: int) -> None:
        peer = connection.remote_address[0] if connection.remote_address else "?"
        if request_bytes:
            self.metrics.slowloris_drops += 1
        else:
            self.metrics.handshake_timeouts += 1
        access.warning(
            "dropped peer=%s: no complete HTTP request within %g s (%d bytes received)",
            peer,
            self.config.hello_timeout_s,
            request_bytes,
        )

    async def stop(self) -> None:
        """Drain within ``drain_timeout_s``, then stop listening.

        During the drain new WebSocket requests get 503 and ``/healthz`` reports ``draining`` (the listener
        stays open, so load balancers see it); every session gets the frames of the model step running now,
        then 1001; connections without a session get 1001 at once. Sessions still busy when only
        ``close_timeout_s`` is left get 1001 then; the TCP connections still open at the deadline are dropped.
        The model threads are joined within the deadline; a step still running after it is abandoned (counted
        in [`abandoned_steps`][unils.serve.server.UniLSServer.abandoned_steps]).
        """
        if self._server is None:
            return
        cfg = self.config
        deadline = time.monotonic() + cfg.drain_timeout_s
        soft = deadline - min(cfg.close_timeout_s, cfg.drain_timeout_s / 2)
        self._draining = True
        self.slots.draining = True
        server, self._server = self._server, None
        if self._connections:
            logger.info("draining: %d connection(s)", len(self._connections))
        for conn in list(self._connections.values()):
            conn.drain(DRAIN_REASON)
        await self._until(lambda: not self._connections, soft)
        for conn in list(self._connections.values()):
            conn.finish(CLOSE_GOING_AWAY, DRAIN_REASON)
        await self._until(lambda: not self._connections, deadline)
        if self._connections:
            logger.warning(
                "drain deadline (%g s) reached: dropping %d connection(s)",
                cfg.drain_timeout_s,
                len(self._connections),
            )
            for conn in list(self._connections.values()):
                conn.abort()
            await self._until(lambda: not self._connections, time.monotonic() + 0.5)
        self._stopping = True
        server.close(close_connections=False)
        try:
            await asyncio.wait_for(server.wait_closed(), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
        if self.scheduler is not None:
            self.scheduler.shutdown()
            # Join the model threads: a process must not exit while a step runs in native code.
            joined = await asyncio.to_thread(self.scheduler.join, max(0.0, deadline - time.monotonic()))
            if not joined:
                self.abandoned_steps = self.scheduler.busy
                logger.warning(
                    "drain deadline (%g s) reached with %d model step(s) still running (abandoned)",
                    cfg.drain_timeout_s,
                    self.abandoned_steps,
                )
        if self.batcher is not None:
            # After the running steps: the batcher runs what is pending, then its thread ends.
            self.batcher.close()

    @staticmethod
    async def _until(predicate: Callable[[], bool], deadline: float) -> None:
        while not predicate() and time.monotonic() < deadline:
            await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

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
        return self.slots.active

    @property
    def open_connections(self) -> int:
        """WebSocket connections currently open (with or without a hello)."""
        return len(self._connections)

    def queued_audio_s(self) -> float:
        """Audio (seconds) received by all sessions and not yet consumed by the model."""
        return sum(c.queued_bytes / c.hello.bytes_per_second for c in self._connections.values() if c.hello)

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
        peer = self.client_address(connection, request)
        access.warning(
            "refused peer=%s path=%s status=%d reason=%r", peer, urlsplit(request.path).path, status, text
        )
        return self._response(status, reason, (text + "\n").encode(), "text/plain; charset=utf-8")

    def client_address(self, connection: ServerConnection, request: Request | None = None) -> str:
        """The client's IP: the TCP peer's, or behind a trusted proxy the forwarded one."""
        peer = connection.remote_address[0] if connection.remote_address else "?"
        request = request or connection.request
        if request is None:
            return peer
        forwarded = request.headers.get_all("X-Forwarded-For")
        return self._forwarded.client(peer, ",".join(forwarded) if forwarded else None)

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
            address = self.client_address(connection, request)
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
                    "sessions": self.slots.active,
                    "max_sessions": self.config.max_sessions,
                    "protocol": PROTOCOL_VERSION,
                }
            ).encode()
            if self._draining:
                return self._response(503, "Service Unavailable", body, "application/json")
            return self._response(200, "OK", body, "application/json")
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
            "unils_serve_sessions_active": ("Sessions holding a slot.", float(self.slots.active)),
            "unils_serve_draining": (
                "1 while the server drains (shutting down), else 0.",
                float(self._draining),
            ),
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
        counters: dict[str, tuple[str, float]] = {}
        if self.batcher is not None:
            b = self.batcher.stats()
            counters = {
                "unils_serve_batches_total": ("Batched steps run (continuous batching).", float(b.batches)),
                "unils_serve_batched_rows_total": (
                    "Session windows stepped in batched steps (rows / batches = mean batch size).",
                    float(b.rows),
                ),
            }
            gauges["unils_serve_batch_size_max"] = (
                "Largest batched step so far (sessions).",
                float(b.largest),
            )
        return self.metrics.render(
            gauges, {"model": self.model.config.name, "protocol": str(PROTOCOL_VERSION)}, counters
        )

    # ------------------------------------------------------------------ connections
    async def _handler(self, ws: ServerConnection) -> None:
        address = self.client_address(ws)
        port = ws.remote_address[1] if ws.remote_address else 0
        assert self.scheduler is not None
        with self.slots.slot() as slot:
            push = self.batcher.push if self.batcher is not None else push_alone
            handle = SessionHandle(self.model, self.config, self.scheduler.lane, self.metrics, slot, push)
            conn = Connection(handle, ws, next(self._ids), f"{address}:{port}")
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.send_buffer_bytes)
            self._per_address[address] += 1
            self._connections[conn.id] = conn
            self.metrics.connections_total += 1
            if self._draining:  # accepted just before the drain began
                conn.drain(DRAIN_REASON)
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
    """Run a [`UniLSServer`][unils.serve.server.UniLSServer] in a background thread with its own event loop.

    For tests, notebooks and programs that are not asyncio-based:

    ```python
    with ServerThread(model, ServeConfig(port=0)) as server:
        client = StreamClient(server.ws_url, sample_rate=16000)
    ```

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


def run(model: UniLS, config: ServeConfig, on_ready: Callable[[UniLSServer], None] | None = None) -> int:
    """Serve until SIGINT/SIGTERM (blocking), then drain within ``config.drain_timeout_s``.

    On the signal the server answers new requests with 503 (``/healthz``: ``draining``), sends every
    session the frames of the step running now and then 1001 with a reason, joins its model
    threads and returns, within the drain deadline even while a model step runs. ``on_ready`` is
    called once the port is bound.

    Returns:
        The number of model steps still running (abandoned) when the deadline passed: 0 unless a
        step outlived the deadline. A program should then end with ``os._exit`` rather than let
        the interpreter tear down under a thread in native code (``unils serve`` does).
    """
    import signal

    abandoned = 0

    async def main() -> None:
        nonlocal abandoned
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
            abandoned = server.abandoned_steps

    asyncio.run(main())
    return abandoned
