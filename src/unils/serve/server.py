"""The ``unils serve`` WebSocket server: one connection = one streaming session.

Built on the asyncio server of ``websockets``. The event loop only moves bytes; decoding audio,
the model steps and frame encoding run in a thread pool (torch releases the GIL), so a slow session
never blocks the others. Every failure of one session (bad hello, undecodable audio, a client that
vanishes, an idle client) ends that session alone, with a close code and a readable reason.

The same port serves the browser demo (``/``, static files shipped in the package) and a small
health endpoint (``/healthz``).
"""

from __future__ import annotations

import asyncio
import email.utils
import hmac
import ipaddress
import itertools
import json
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, urlsplit

try:
    from websockets.asyncio.server import Server, ServerConnection, serve
    from websockets.datastructures import Headers
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('unils serve needs the "serve" extra: pip install "unils[serve]"') from exc

from ..errors import AudioError, ConfigError, ProtocolError, UniLSError
from ..motion import PARTS
from .protocol import (
    CLOSE_BAD_AUDIO,
    CLOSE_BAD_HELLO,
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_TOO_BIG,
    CLOSE_TRY_LATER,
    PROTOCOL_VERSION,
    Hello,
    decode_audio,
    frames_binary,
    frames_json,
    parse_control,
    parse_hello,
)

if TYPE_CHECKING:
    from ..model import UniLS
    from ..streaming import StreamSession

__all__ = ["ServeConfig", "UniLSServer", "ServerThread", "WS_PATH", "is_loopback"]

logger = logging.getLogger("unils.serve")

#: Path of the WebSocket endpoint; every other path is plain HTTP (demo page, health).
WS_PATH = "/ws"
#: Text messages (hello, end) are tiny; anything longer is refused without parsing it.
MAX_TEXT_BYTES = 8192

# URL path -> (file in unils/serve/static, content type). Only these are served.
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/avatar.js": ("avatar.js", "text/javascript; charset=utf-8"),
    "/capture-worklet.js": ("capture-worklet.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServeConfig:
    """Settings of a :class:`UniLSServer`.

    Attributes:
        host: interface to bind. The default, 127.0.0.1, accepts local clients only; any other
            address needs a ``token``.
        port: TCP port (0 = any free port; read it back from :attr:`UniLSServer.port`).
        token: shared secret clients must present (``?token=`` in the URL or an
            ``Authorization: Bearer`` header). At least 8 characters.
        max_sessions: concurrent sessions; one more is closed with code 1013 (try again later).
        max_message_bytes: largest message a client may send (larger: close code 1009).
        idle_timeout_s: a session with no message for this long is closed (code 4008).
        workers: threads running model steps (default: ``min(max_sessions, CPU count)``).
        min_hop_frames: the smallest low-latency hop a client may ask for (a hop of ``h`` frames
            costs ``window / h`` times the compute of exact mode).
        allowed_origins: browser origins allowed besides the server's own (e.g.
            ``"https://app.example.com"``); requests from other web pages are refused (403).
        ping_interval_s: keepalive ping period; a client that stops answering is dropped.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_sessions: int = 8
    max_message_bytes: int = 1 << 20
    idle_timeout_s: float = 30.0
    workers: int | None = None
    min_hop_frames: int = 5
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    ping_interval_s: float | None = 20.0

    def validate(self) -> "ServeConfig":
        """Refuse unsafe or impossible settings.

        Raises:
            ConfigError: no token off-localhost, a short token, or a non-positive limit.
        """
        if self.token is not None and len(self.token) < 8:
            raise ConfigError("the serve token must be at least 8 characters (use a random string)")
        if self.token is None and not is_loopback(self.host):
            raise ConfigError(
                f"binding to {self.host!r} exposes the server beyond this machine: pass a token "
                "(--token or UNILS_SERVE_TOKEN), or bind to 127.0.0.1")
        if not 0 <= int(self.port) <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        for name in ("max_sessions", "max_message_bytes", "idle_timeout_s", "min_hop_frames"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        return self


def _static_file(name: str) -> bytes:
    return (resources.files("unils.serve") / "static" / name).read_bytes()


def _truncate_reason(text: str) -> str:
    # A close frame's reason is at most 123 bytes of UTF-8.
    text = " ".join(text.split())
    raw = text.encode()
    return text if len(raw) <= 123 else raw[:120].decode(errors="ignore") + "..."


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

    def __init__(self, model: "UniLS", config: ServeConfig | None = None) -> None:
        self.model = model
        self.config = (config or ServeConfig()).validate()
        self._server: Server | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._active = 0
        self._ids = itertools.count(1)
        self._static = {path: (_static_file(name), ctype) for path, (name, ctype) in _STATIC.items()}
        #: Sessions ended so far, by close code (1006: the client vanished without a close frame).
        self.closed_by_code: Counter[int] = Counter()
        self.sessions_opened = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind and start accepting connections."""
        cfg = self.config
        workers = cfg.workers or max(1, min(cfg.max_sessions, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unils-serve")
        self._server = await serve(
            self._handler, cfg.host, cfg.port, process_request=self._process_request,
            max_size=cfg.max_message_bytes, ping_interval=cfg.ping_interval_s, ping_timeout=cfg.ping_interval_s,
            # Audio is incompressible noise to deflate; compression would only cost CPU.
            compression=None, server_header=None, logger=logging.getLogger("unils.serve.websockets"),
        )
        logger.info("serving %s on %s (max %d sessions, %d model threads)", self.model.config.name, self.url,
                    cfg.max_sessions, workers)

    async def stop(self) -> None:
        """Close every connection (code 1001) and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.stop()

    async def __aenter__(self) -> "UniLSServer":
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
        """Sessions currently open."""
        return self._active

    # ------------------------------------------------------------------ HTTP side
    def _response(self, status: int, reason: str, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> Response:
        headers = Headers([
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", ctype),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ])
        for k, v in (extra or {}).items():
            headers[k] = v
        return Response(status, reason, headers, body)

    def _text(self, status: int, reason: str, text: str) -> Response:
        return self._response(status, reason, (text + "\n").encode(), "text/plain; charset=utf-8")

    def _origin_ok(self, origin: str, host: str | None) -> bool:
        if origin in self.config.allowed_origins:
            return True
        # A page served by this server has the server's own host:port as origin.
        return host is not None and urlsplit(origin).netloc.lower() == host.lower()

    def _token_ok(self, request: Request, query: dict[str, list[str]]) -> bool:
        token = self.config.token
        if token is None:
            return True
        supplied = (query.get("token") or [None])[0]
        auth = request.headers.get("Authorization", "")
        if supplied is None and auth.lower().startswith("bearer "):
            supplied = auth[7:].strip()
        return supplied is not None and hmac.compare_digest(supplied.encode(), token.encode())

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == WS_PATH:
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_ok(origin, request.headers.get("Host")):
                logger.warning("refused a WebSocket from origin %s", origin)
                return self._text(403, "Forbidden", f"origin {origin} is not allowed (see --allow-origin)")
            if not self._token_ok(request, query):
                logger.warning("refused a WebSocket with a missing or wrong token")
                return self._text(401, "Unauthorized", "missing or wrong token: add ?token=... to the URL or "
                                  "an 'Authorization: Bearer ...' header")
            return None  # go on with the WebSocket handshake
        if path in self._static:
            body, ctype = self._static[path]
            return self._response(200, "OK", body, ctype, {
                # The page only talks to its own server.
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
            })
        if path == "/healthz":
            body = json.dumps({"status": "ok", "model": self.model.config.name, "sessions": self._active,
                               "max_sessions": self.config.max_sessions, "protocol": PROTOCOL_VERSION}).encode()
            return self._response(200, "OK", body, "application/json")
        return self._text(404, "Not Found", f"nothing at {path}: the demo is at /, the WebSocket at {WS_PATH}")

    # ------------------------------------------------------------------ sessions
    async def _recv(self, ws: ServerConnection) -> str | bytes:
        try:
            # Cancelling recv() on timeout is safe in websockets: no message is lost or half-read.
            msg = await asyncio.wait_for(ws.recv(), self.config.idle_timeout_s)
        except asyncio.TimeoutError:
            raise ProtocolError(f"idle timeout: no message for {self.config.idle_timeout_s:g} s", CLOSE_IDLE) from None
        if isinstance(msg, str) and len(msg) > MAX_TEXT_BYTES:
            raise ProtocolError(f"text messages are limited to {MAX_TEXT_BYTES} bytes (got {len(msg)})", CLOSE_TOO_BIG)
        return msg

    def _ready(self, sid: int, hello: Hello, session: "StreamSession") -> str:
        cfg = self.model.config
        return json.dumps({
            "type": "ready", "version": PROTOCOL_VERSION, "session": sid, "model": cfg.name, "fps": self.model.fps,
            "motion_dim": cfg.codec.motion_dim, "model_sample_rate": cfg.sample_rate,
            "parts": {name: [s.start, s.stop] for name, s in PARTS.items()}, "people": hello.people,
            "format": hello.format, "hop_frames": session.hop, "exact": hello.hop_frames is None,
            "algorithmic_latency_s": session.algorithmic_latency_s,
            "hello": json.loads(hello.to_message()),
            "limits": {"max_message_bytes": self.config.max_message_bytes,
                       "idle_timeout_s": self.config.idle_timeout_s},
        })

    @staticmethod
    def _stats(session: "StreamSession", push_s: float, kind: str = "stats") -> str:
        return json.dumps({"type": kind, "frames_emitted": session.frames_emitted, "push_compute_s": push_s,
                           **session.stats().__dict__})

    def _work(self, session: "StreamSession", hello: Hello, data: bytes | None) -> tuple[Any, str]:
        """In a worker thread: decode, push (or flush when ``data`` is None), encode the reply."""
        start = session.frames_emitted
        if data is None:
            t0 = time.perf_counter()
            out = session.flush()
        else:
            channels = decode_audio(data, hello)
            t0 = time.perf_counter()
            try:
                out = session.push(*channels)
            except AudioError as exc:
                raise ProtocolError(str(exc), CLOSE_BAD_AUDIO) from exc
        push_s = time.perf_counter() - t0
        if len(out[0] if isinstance(out, tuple) else out) == 0:
            return None, ""
        payload = frames_binary(out, start) if hello.format == "binary" else frames_json(out, start)
        return payload, self._stats(session, push_s)

    async def _handler(self, ws: ServerConnection) -> None:
        cfg = self.config
        sid = next(self._ids)
        peer = ws.remote_address
        if self._active >= cfg.max_sessions:
            self.closed_by_code[CLOSE_TRY_LATER] += 1
            logger.warning("session %d from %s refused: all %d sessions taken", sid, peer, cfg.max_sessions)
            await ws.close(CLOSE_TRY_LATER, f"server busy: all {cfg.max_sessions} sessions are taken, try again later")
            return
        self._active += 1
        self.sessions_opened += 1
        loop = asyncio.get_running_loop()
        session: StreamSession | None = None
        pending: asyncio.Future[Any] | None = None
        code, reason = CLOSE_NORMAL, "session complete"
        try:
            hello = parse_hello(await self._recv(ws), self.model.config.window_frames, cfg.min_hop_frames)
            try:
                session = self.model.stream(**hello.session_kwargs())
            except (UniLSError, ValueError) as exc:
                raise ProtocolError(f"hello: {exc}", CLOSE_BAD_HELLO) from exc
            logger.info("session %d from %s: %s", sid, peer, hello)
            await ws.send(self._ready(sid, hello, session))
            while True:
                msg = await self._recv(ws)
                if isinstance(msg, str):
                    parse_control(msg)  # only "end" is valid
                    data = None
                else:
                    data = msg
                pending = loop.run_in_executor(self._pool, self._work, session, hello, data)
                payload, stats = await pending
                pending = None
                # Every frames message is followed by the session's figures.
                if payload is not None:
                    await ws.send(payload)
                    await ws.send(stats)
                if data is None:
                    await ws.send(self._stats(session, 0.0, kind="end"))
                    break
        except ProtocolError as exc:
            code, reason = exc.code, str(exc)
            logger.info("session %d closed: %s (%d)", sid, reason, code)
        except ConnectionClosed as exc:
            # The client left (or the library closed the connection, e.g. for an oversize message).
            code = exc.sent.code if exc.sent is not None else exc.rcvd.code if exc.rcvd is not None else 1006
            self.closed_by_code[code] += 1
            logger.info("session %d: connection closed (%s)", sid, exc)
            code = 0
        except Exception:  # a bug: keep the server and the other sessions alive, tell this client
            logger.exception("session %d failed", sid)
            code, reason = CLOSE_INTERNAL, "internal server error (logged on the server)"
        finally:
            self._active -= 1
            if session is not None:
                _close_when_done(session, pending)
        if code:
            self.closed_by_code[code] += 1
            await ws.close(code, _truncate_reason(reason))


def _close_when_done(session: "StreamSession", pending: "asyncio.Future[Any] | None") -> None:
    # A step may still run in its thread (the client left mid-step); close after it, not under it.
    if pending is not None and not pending.done():
        pending.add_done_callback(lambda _f: session.close())
    else:
        session.close()


class ServerThread:
    """Run a :class:`UniLSServer` in a background thread with its own event loop.

    For tests, notebooks and programs that are not asyncio-based::

        with ServerThread(model, ServeConfig(port=0)) as server:
            client = StreamClient(server.ws_url, sample_rate=16000)

    Args:
        model: the loaded model.
        config: settings.
    """

    def __init__(self, model: "UniLS", config: ServeConfig | None = None) -> None:
        self.server = UniLSServer(model, config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._started: Future[None] = Future()

    def start(self) -> "ServerThread":
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
        if self._loop is not None and self._stopped is not None and self._thread is not None and self._thread.is_alive():
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

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run(model: "UniLS", config: ServeConfig, on_ready: Callable[[UniLSServer], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (blocking). ``on_ready`` is called once the port is bound."""
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
            logger.info("shutting down: closing %d session(s)", server.active_sessions)
            await server.stop()

    asyncio.run(main())
