"""One WebSocket connection of ``unils serve``: hello, flow control, deadlines, ordered replies.

Three tasks share a connection:

* the **reader** keeps receiving (so pings, pongs and close frames are always read) until the
  session holds ``read_ahead_bytes`` of audio that the model has not consumed yet; then it stops
  reading, and TCP back-pressure slows the sender. Clients that honour the protocol's credit
  (``ack`` messages, ``credit_bytes``) never hold more than the credit; one that ignores it is read
  ahead up to ``max_read_ahead_bytes`` (so its keepalive pings, which queue behind its audio, are
  still answered) and then slowed, not dropped;
* the **scheduler** (``scheduler.py``) runs the session's audio, piece by piece (one hop of audio,
  about one model step, each), round-robin with the other sessions;
* the **writer** sends frames, stats and acks in order, each send with a deadline: a client that
  leaves its frames unread that long is closed with 4009 and its slot is freed.

A keepalive replaces the websockets library's: a client is alive when it answers a ping *or sends
anything*, and it is never timed out while the server itself is withholding reads.

A connection sees only a [`SessionHandle`][unils.serve.session.SessionHandle]: the model, the settings, a way
to open its scheduler lane, the metrics and its [`Slot`][unils.serve.slots.Slot]; it never touches the server
itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..arkit import ARKIT_NAMES, ArkitConverter, expression_map_for
from ..errors import AudioError, ProtocolError, UniLSError
from ..motion import PARTS
from ..resample import Resampler
from .metrics import ServerMetrics
from .protocol import (
    CLOSE_BAD_AUDIO,
    CLOSE_BAD_HELLO,
    CLOSE_DEAD_PEER,
    CLOSE_GOING_AWAY,
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_SLOW_READER,
    CLOSE_TRY_LATER,
    PROTOCOL_VERSION,
    Hello,
    ack_message,
    arkit_binary,
    decode_audio,
    frames_binary,
    frames_json,
    parse_control,
    parse_hello,
    stats_message,
)
from .scheduler import Lane
from .settings import ServeConfig
from .slots import Slot

if TYPE_CHECKING:
    from ..streaming import StreamSession

__all__ = ["Connection", "SessionHandle", "push_alone"]

logger = logging.getLogger("unils.serve")
access = logging.getLogger("unils.serve.access")

_END = object()  # the writer's last message: after it, close with 1000


@dataclass
class _Piece:
    nbytes: int
    payload: Any = None
    arkit_payload: bytes | None = None  # binary sessions with ``arkit``: the ULSA message after the frames
    stats: str = ""
    frames: int = 0
    steps: int = 0
    seconds: float = 0.0
    final: bool = False


def truncate_reason(text: str) -> str:
    """A close frame's reason is at most 123 bytes of UTF-8."""
    text = " ".join(text.split())
    raw = text.encode()
    return text if len(raw) <= 123 else raw[:120].decode(errors="ignore") + "..."


def push_alone(session: StreamSession, *channels: Any) -> Any:
    """``session.push(*channels)``: the session steps on its own (no batching)."""
    return session.push(*channels)


@dataclass(frozen=True)
class SessionHandle:
    """What one connection may use of its server, and nothing more.

    Attributes:
        model: the model shared by all sessions (its config, ``fps`` and ``stream``).
        config: the server's settings (limits, deadlines).
        lanes: opens the connection's scheduler lane (``FairScheduler.lane``).
        metrics: where the connection's figures are counted.
        slot: the connection's session place; released (with the close code) when it ends.
        push: runs ``session.push(*channels)`` on a worker thread: the session alone, or through the
            server's [`StepBatcher`][unils.serve.batcher.StepBatcher] (``batcher.push``), which steps it
            together with the other sessions' ready windows.
    """

    model: Any
    config: ServeConfig
    lanes: Callable[..., Lane]
    metrics: ServerMetrics
    slot: Slot
    push: Callable[..., Any] = push_alone


class Connection:
    """State and tasks of one connection (created by `unils.serve.UniLSServer`).

    Args:
        handle: what the connection may use of its server.
        ws: the WebSocket.
        cid: the connection's number (``ready["session"]``, logs).
        peer: the client's address for the logs (the forwarded one behind a trusted proxy).
    """

    def __init__(self, handle: SessionHandle, ws: ServerConnection, cid: int, peer: str) -> None:
        self.handle = handle
        self.model = handle.model
        self.cfg = handle.config
        self.slot = handle.slot
        self.metrics = handle.metrics
        self.ws = ws
        self.id = cid
        self.peer = peer
        self.hello: Hello | None = None
        self.session: StreamSession | None = None
        self.arkit: ArkitConverter | None = None
        self.queued_bytes = 0  # audio received, not yet consumed by the model
        self._pending: list[list[np.ndarray]] = []  # received messages (channels) not yet handed to the model
        self._pending_bytes = 0
        self._received = 0  # audio bytes received
        self._frame_bytes = 1  # bytes of one sample of every channel
        self._next_hop = 1  # the hop whose audio completes the next piece
        self._counter: Resampler | None = None
        self._hop_samples = 1
        self._max_piece = 1
        self.consumed_bytes = 0
        self.acked_bytes = 0
        self.credit_bytes = 0
        self.read_ahead_bytes = 0
        self.frames_sent = 0
        self.messages_received = 0
        self.withholding = False
        self.first_audio_at: float | None = None
        self.last_activity = time.monotonic()
        self.opened_at = time.monotonic()
        self.closing: tuple[int, str] | None = None
        self.draining: str | None = None  # the 1001 reason, once the server drains
        self._done = asyncio.Event()
        self._can_read = asyncio.Event()
        self._out: deque[Any] = deque()
        self._out_bytes = 0
        self._out_ready = asyncio.Event()
        self.lane: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ the whole life
    async def run(self) -> None:
        """Serve the connection until it ends, then close it within ``close_timeout_s``."""
        done = asyncio.ensure_future(self._done.wait())
        start = asyncio.ensure_future(self._start())
        try:
            # finish() (a drain, a bug elsewhere) ends the wait for the hello too.
            await asyncio.wait([start, done], return_when=asyncio.FIRST_COMPLETED)
            if start.done():
                start.result()
                if self.closing is None:
                    self._tasks = [
                        asyncio.create_task(t) for t in (self._read(), self._write(), self._keepalive())
                    ]
                    await self._done.wait()
        except ProtocolError as exc:
            self.finish(exc.code, str(exc))
        except ConnectionClosed as exc:
            self.finish_closed(exc)
        except Exception:  # a bug: keep the server and the other sessions alive, tell this client
            logger.exception("connection %d failed", self.id)
            self.finish(CLOSE_INTERNAL, "internal server error (logged on the server)")
        finally:
            for t in (*self._tasks, start, done):
                t.cancel()
            await asyncio.gather(*self._tasks, start, done, return_exceptions=True)
        code, reason = self.closing or (CLOSE_INTERNAL, "")
        if code != 1006 and self.ws.close_code is None:
            # Bounded: the closing handshake first waits for our unsent data to drain, which a
            # peer that reads nothing never allows; then the TCP connection is aborted.
            try:
                await asyncio.wait_for(self.ws.close(code, truncate_reason(reason)), self.cfg.close_timeout_s)
            except asyncio.TimeoutError:
                logger.debug("conn %d: closing handshake timed out, aborting", self.id)
            except Exception as exc:
                logger.debug("conn %d: close failed (%s)", self.id, exc)
        if self.ws.close_code is None or code == 1006:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection now (no closing handshake)."""
        self.ws.transport.abort()

    async def _start(self) -> None:
        cfg, model = self.cfg, self.model
        try:
            first = await asyncio.wait_for(self.ws.recv(), cfg.hello_timeout_s)
        except asyncio.TimeoutError:
            raise ProtocolError(f"no hello within {cfg.hello_timeout_s:g} s", CLOSE_IDLE) from None
        hello = parse_hello(first, model.config.window_frames, cfg.min_hop_frames)
        if not self.slot.take():
            raise ProtocolError(
                f"server busy: all {cfg.max_sessions} sessions are taken, try again later", CLOSE_TRY_LATER
            )
        self.hello = hello
        if hello.arkit:
            # Frame by frame, so pieces converted as they come equal the whole motion converted at once.
            self.arkit = ArkitConverter(expression_map_for(model))  # the demo ships its map
        try:
            self.session = await asyncio.to_thread(open_session, model, hello)
        except (UniLSError, ValueError, TypeError) as exc:
            raise ProtocolError(f"hello: {exc}", CLOSE_BAD_HELLO) from exc
        bps = hello.bytes_per_second
        frame_bytes = self._frame_bytes = hello.channels * hello.bytes_per_sample
        self.credit_bytes = max(frame_bytes, int(cfg.max_queued_audio_s * bps) // frame_bytes * frame_bytes)
        self.read_ahead_bytes = max(self.credit_bytes, cfg.max_read_ahead_bytes // frame_bytes * frame_bytes)
        hop_samples = -(-self.session.hop * hello.sample_rate // int(model.fps))
        self.piece_bytes = hop_samples * frame_bytes
        # What the session's resampler (rates other than 16 kHz) has let out, counted without resampling.
        self._counter = Resampler(hello.sample_rate)
        self._hop_samples = self.session.hop * model.config.samples_per_frame
        self._max_piece = max(frame_bytes, self.credit_bytes // 2 // frame_bytes * frame_bytes)
        self.lane = self.handle.lanes(
            self._done_piece, lambda: self._out_bytes < self.cfg.max_output_bytes, self._ahead_s
        )
        self.metrics.sessions_total += 1
        access.info(
            "open conn=%d peer=%s sample_rate=%d channels=%d both=%s hop=%s format=%s",
            self.id,
            self.peer,
            hello.sample_rate,
            hello.channels,
            hello.both,
            hello.hop_frames,
            hello.format,
        )
        await self.ws.send(self._ready())

    def _ready(self) -> str:
        assert self.hello is not None and self.session is not None
        m, cfg, hello = self.model, self.cfg, self.hello
        return json.dumps(
            {
                "type": "ready",
                "version": PROTOCOL_VERSION,
                "session": self.id,
                "model": m.config.name,
                "fps": m.fps,
                "motion_dim": m.config.codec.motion_dim,
                "model_sample_rate": m.config.sample_rate,
                "parts": {name: [s.start, s.stop] for name, s in PARTS.items()},
                "people": hello.people,
                "format": hello.format,
                "hop_frames": self.session.hop,
                "exact": hello.hop_frames is None,
                "algorithmic_latency_s": self.session.algorithmic_latency_s,
                "hello": hello.to_dict(clips=False),
                **({"arkit_names": list(ARKIT_NAMES)} if hello.arkit else {}),
                "flow": {
                    "credit_bytes": self.credit_bytes,
                    "ack_every_bytes": max(1, self.credit_bytes // 4),
                    "max_queued_audio_s": cfg.max_queued_audio_s,
                },
                "limits": {
                    "max_message_bytes": cfg.max_message_bytes,
                    "idle_timeout_s": cfg.idle_timeout_s,
                    "send_timeout_s": cfg.send_timeout_s,
                    "ping_interval_s": cfg.ping_interval_s,
                    "ping_timeout_s": cfg.ping_timeout_s,
                },
            }
        )

    # ------------------------------------------------------------------ ending
    def drain(self, reason: str) -> None:
        """The server is shutting down: send the frames of the step running now, then close with 1001.

        Audio not yet given to the model is dropped; a connection without a session closes at once.
        """
        if self.closing is not None or self.draining is not None:
            return
        if self.lane is None:
            self.finish(CLOSE_GOING_AWAY, reason)
            return
        self.draining = reason
        self.lane.close()  # a running step still finishes, and its frames are sent
        self._out_ready.set()

    def finish(self, code: int, reason: str) -> None:
        """Decide how the connection ends (the first decision wins), free its slot at once."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        if self.lane is not None:
            self.lane.close()
        self.slot.release(code)
        self._done.set()
        self._can_read.set()
        self._out_ready.set()
        if code == CLOSE_INTERNAL:
            level = logging.ERROR
        elif code in (CLOSE_NORMAL, 1001, 1006):
            level = logging.INFO
        else:
            level = logging.WARNING
        audio_s = self.consumed_bytes / self.hello.bytes_per_second if self.hello else 0.0
        access.log(
            level,
            "close conn=%d peer=%s code=%d reason=%r duration_s=%.2f audio_s=%.2f frames=%d",
            self.id,
            self.peer,
            code,
            reason,
            time.monotonic() - self.opened_at,
            audio_s,
            self.frames_sent,
        )

    def dispose(self) -> None:
        """Release the model session; a step still running in its thread closes it when it returns."""
        session, self.session = self.session, None
        if session is None:
            return
        if self.lane is not None and self.lane.running:
            self.lane.on_done = lambda _r, _e: session.close()
        else:
            session.close()

    def finish_closed(self, exc: ConnectionClosed) -> None:
        """The client closed (or vanished: 1006)."""
        if exc.sent is not None:  # our echo of the client's close, or the library's own (1009: oversize)
            self.finish(exc.sent.code, exc.sent.reason or "closed by the client")
        elif exc.rcvd is not None:
            self.finish(exc.rcvd.code, exc.rcvd.reason or "closed by the client")
        else:
            self.finish(1006, "the connection dropped without a close frame")

    # ------------------------------------------------------------------ reading
    async def _read(self) -> None:
        cfg = self.cfg
        ended = False
        try:
            while self.closing is None:
                if self.queued_bytes >= self.read_ahead_bytes and not ended:
                    # Enough audio waits already: stop reading, let TCP slow the sender.
                    self.withholding = True
                    self._can_read.clear()
                    await self._can_read.wait()
                    self.withholding = False
                    self.last_activity = time.monotonic()
                    continue
                if ended:
                    msg = await self.ws.recv()
                else:
                    left = self.last_activity + cfg.idle_timeout_s - time.monotonic()
                    try:
                        msg = await asyncio.wait_for(self.ws.recv(), max(0.0, left))
                    except asyncio.TimeoutError:
                        if not self.lane.idle or self._out:  # the client waits for us, not we for it
                            self.last_activity = time.monotonic()
                        elif time.monotonic() - self.last_activity >= cfg.idle_timeout_s:
                            raise ProtocolError(
                                f"idle timeout: no audio for {cfg.idle_timeout_s:g} s", CLOSE_IDLE
                            ) from None
                        continue
                self.messages_received += 1
                if ended:
                    raise ProtocolError('no message may follow {"type": "end"}', 4002)
                if isinstance(msg, str):
                    parse_control(msg)  # only "end" is valid
                    ended = True
                    self._hand_pending()
                    self.lane.put(self._flush)
                    continue
                if not msg:
                    continue  # allowed, but does not count as activity
                self.last_activity = time.monotonic()
                self._take_audio(msg)
        except ProtocolError as exc:
            self.finish(exc.code, str(exc))
        except ConnectionClosed as exc:
            self.finish_closed(exc)

    def _ahead_s(self) -> float:
        # How far the consumed audio runs ahead of the wall clock since the first audio arrived.
        if self.first_audio_at is None or self.hello is None:
            return 0.0
        return self.consumed_bytes / self.hello.bytes_per_second - (time.monotonic() - self.first_audio_at)

    def _take_audio(self, data: bytes) -> None:
        assert self.hello is not None
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
        # Decoded (and checked) on arrival: a malformed message closes the session now, not later.
        channels = decode_audio(data, self.hello)
        self.queued_bytes += len(data)
        self._received += len(data)
        if len(data) >= self.piece_bytes:
            # A long message (a producer faster than real time): pieces of one hop, as they come
            # (_hand_pending also moves the next hop past this message's audio, already counted).
            self._hand_pending()
            hop = self.piece_bytes // self._frame_bytes
            for i in range(0, channels[0].shape[0], hop):
                self._hand([ch[i : i + hop] for ch in channels])
            return
        # Short messages (a real-time client's 20 ms) are handed to the model together, up to the message
        # with which the session's next window becomes ready: one worker call per model step instead of
        # one per message. The model sees the same audio at each step as if every message were pushed
        # on its own (frames only ever come with steps), so the frames are the same. At most half the
        # credit waits, so a client waiting for its credit always gets an acknowledgement.
        self._pending.append(channels)
        self._pending_bytes += len(data)
        if self._ready_hops() >= self._next_hop or self._pending_bytes >= self._max_piece:
            self._hand_pending()

    def _ready_hops(self) -> int:
        """Hops whose audio (model rate, after the stream's resampler) has all been received."""
        if self._counter is None:
            return 0
        return self._counter.output_after(self._received // self._frame_bytes) // self._hop_samples

    def _hand(self, channels: list[np.ndarray]) -> None:
        self.lane.put(lambda c=channels: self._push(c))

    def _hand_pending(self) -> None:
        """Hand the received audio not yet given to the model (also before the end of the stream)."""
        if self._pending:
            pending, self._pending, self._pending_bytes = self._pending, [], 0
            self._hand([np.concatenate(parts) for parts in zip(*pending)])
        self._next_hop = self._ready_hops() + 1

    # ------------------------------------------------------------------ model work (worker threads)
    def _reply(self, out: Any, start: int, nbytes: int, t0: float, steps0: int, final: bool) -> _Piece:
        assert self.session is not None and self.hello is not None
        seconds = time.perf_counter() - t0
        stats = self.session.stats()
        n = len(out[0] if isinstance(out, tuple) else out)
        piece = _Piece(nbytes, frames=n, steps=stats.steps - steps0, seconds=seconds, final=final)
        if n:
            people = list(out) if isinstance(out, tuple) else [out]
            arkit = [self.arkit.push(m) for m in people] if self.arkit is not None else None
            if self.hello.format == "binary":
                piece.payload = frames_binary(out, start)
                if arkit is not None:
                    piece.arkit_payload = arkit_binary(arkit, start)
            else:
                piece.payload = frames_json(out, start, arkit=arkit)
            piece.stats = stats_message(self.session, seconds)
        return piece

    def _push(self, channels: list[np.ndarray]) -> _Piece:
        assert self.session is not None
        nbytes = channels[0].shape[0] * self._frame_bytes
        start, steps0, t0 = self.session.frames_emitted, self.session.stats().steps, time.perf_counter()
        try:
            out = self.handle.push(self.session, *channels)
        except AudioError as exc:
            raise ProtocolError(str(exc), CLOSE_BAD_AUDIO) from exc
        return self._reply(out, start, nbytes, t0, steps0, final=False)

    def _flush(self) -> _Piece:
        assert self.session is not None
        start, steps0, t0 = self.session.frames_emitted, self.session.stats().steps, time.perf_counter()
        return self._reply(self.session.flush(), start, 0, t0, steps0, final=True)

    # ------------------------------------------------------------------ back on the event loop
    def _done_piece(self, piece: _Piece | None, error: BaseException | None) -> None:
        if self.closing is not None:
            return
        if error is not None:
            if isinstance(error, ProtocolError):
                self.finish(error.code, str(error))
            else:
                logger.error(
                    "conn %d: a step failed", self.id, exc_info=(type(error), error, error.__traceback__)
                )
                self.finish(CLOSE_INTERNAL, "internal server error (logged on the server)")
            return
        assert piece is not None and self.hello is not None
        m = self.metrics
        m.observe_steps(piece.steps, piece.seconds)
        m.audio_seconds_total += piece.nbytes / self.hello.bytes_per_second
        self.queued_bytes -= piece.nbytes
        self.consumed_bytes += piece.nbytes
        if piece.payload is not None:
            self._send(piece.payload, frames=piece.frames)
            if piece.arkit_payload is not None:
                self._send(piece.arkit_payload)
            self._send(piece.stats)
        if self.consumed_bytes - self.acked_bytes >= max(1, self.credit_bytes // 4):
            self.acked_bytes = self.consumed_bytes
            self._send(ack_message(self.consumed_bytes, self.hello))
        if piece.final:
            assert self.session is not None
            self._send(stats_message(self.session, 0.0, kind="end"))
            self._send(_END)
        if self.draining is not None:
            self._out_ready.set()  # the writer closes once the last frames are out
        if self.lane.idle:
            self.last_activity = time.monotonic()  # caught up: the idle clock starts now
        if self.queued_bytes < self.read_ahead_bytes:
            self._can_read.set()

    def _send(self, msg: Any, frames: int = 0) -> None:
        self._out.append((msg, frames))
        self._out_bytes += len(msg) if isinstance(msg, (str, bytes)) else 0
        self._out_ready.set()

    async def _write(self) -> None:
        try:
            while self.closing is None:
                if not self._out:
                    if self.draining is not None and not self.lane.running:
                        self.finish(CLOSE_GOING_AWAY, self.draining)
                        return
                    self._out_ready.clear()
                    await self._out_ready.wait()
                    continue
                msg, frames = self._out.popleft()
                if msg is _END:
                    self.finish(CLOSE_NORMAL, "session complete")
                    return
                try:
                    await asyncio.wait_for(self.ws.send(msg), self.cfg.send_timeout_s)
                except asyncio.TimeoutError:
                    self.finish(CLOSE_SLOW_READER, f"frames left unread for {self.cfg.send_timeout_s:g} s")
                    return
                self._out_bytes -= len(msg)
                self.frames_sent += frames
                self.metrics.frames_total += frames
                self.lane.wake()  # it may have been paused while this output waited
        except ConnectionClosed as exc:
            self.finish_closed(exc)

    # ------------------------------------------------------------------ keepalive
    async def _keepalive(self) -> None:
        cfg = self.cfg
        if not cfg.ping_interval_s:
            return
        try:
            while self.closing is None:
                seen = self.messages_received
                await asyncio.sleep(cfg.ping_interval_s)
                if self.withholding or self.messages_received != seen:
                    continue  # it is sending: alive (or we are the ones not reading)
                pong = cast("asyncio.Future[float]", await self.ws.ping())
                sent = time.monotonic()
                while not pong.done():
                    await asyncio.wait([pong], timeout=min(0.5, cfg.ping_timeout_s))
                    if self.withholding or self.messages_received != seen:
                        break
                    if not pong.done() and time.monotonic() - sent >= cfg.ping_timeout_s:
                        self.finish(
                            CLOSE_DEAD_PEER, f"keepalive: no pong nor message within {cfg.ping_timeout_s:g} s"
                        )
                        return
        except ConnectionClosed as exc:
            self.finish_closed(exc)


def open_session(model: Any, hello: Hello) -> StreamSession:
    """Open the model's streaming session for a hello: its options object
    ([`Hello.options`][unils.serve.hello.Hello.options]) and the stream's own settings."""
    return model.stream(
        options=hello.options(),
        partner=hello.partner,
        both=hello.both,
        sample_rate=hello.sample_rate,
        hop_frames=hello.hop_frames,
    )
