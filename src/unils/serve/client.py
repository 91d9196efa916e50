"""Python clients of ``unils serve``: a blocking one and an asyncio one, with the same methods.

```python
from unils import GenerationOptions
from unils.serve import StreamClient

calm = GenerationOptions(temperature=0.7, seed=0)
with StreamClient("ws://127.0.0.1:8765/ws", sample_rate=16000, partner=True, options=calm) as client:
    for mic, call in blocks():
        frames = client.push(mic, call)   # the frames that have arrived so far (a Motion)
    frames = client.end()                 # the rest, once the server has flushed
```

The options are the Python API's ([`GenerationOptions`][unils.options.GenerationOptions], or any of its fields
as a keyword: ``StreamClient(url, seed=0, use_cache=False)``).

Frames arrive when the server has them (exact mode: a window, 4 s, at a time), so ``push`` often returns zero
frames; [`StreamClient.stats`][unils.serve.client.StreamClient.stats] holds the server's latest latency
figures.

Both clients honour the server's flow control: they never have more than
``ready["flow"]["credit_bytes"]`` of audio sent and not yet acknowledged, so a program may push audio
as fast as it has it (a text-to-speech engine, a file) and ``push`` simply waits for the model. A
block of any length (a whole utterance at once) is split into messages within the server's
``max_message_bytes`` and half the credit, at whole sample frames; the frames are the same.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from typing_extensions import Unpack

try:
    from websockets.asyncio.client import ClientConnection
    from websockets.asyncio.client import connect as aconnect
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import ClientConnection as SyncClientConnection
    from websockets.sync.client import connect as sconnect
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('the unils serve client needs the "serve" extra: pip install "unils[serve]"') from exc

from ..arkit import ArkitAnimation, from_livelink_values
from ..errors import ConfigError, ProtocolError, StreamError
from ..motion import MOTION_DIM, PARTS, Motion
from ..options import GenerationOptions, OptionOverrides, merge_options, option_fields
from .protocol import ARKIT_MAGIC, CLOSE_NORMAL, Clip, Hello, decode_frames_binary, encode_audio

__all__ = ["StreamClient", "AsyncStreamClient", "FramesEvent"]

#: ``on_frames(start, count, received_at)``: called for every frames message (``received_at`` is
#: ``time.perf_counter()`` when it arrived), e.g. to measure latency.
FramesEvent = Callable[[int, int, float], None]

# Frames messages can be large (a long block, JSON, two people); the server is trusted.
_CLIENT_MAX_SIZE = 64 << 20


def _clipset(value: Any, both: bool) -> tuple[Clip | None, ...] | None:
    # One clip (the person), or for `both` sessions a pair (person, partner) whose items may be None.
    if value is None:
        return None
    if both and isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(None if v is None else Clip.from_array(v) for v in value)
    return (Clip.from_array(value),)


def _hello_seed(seed: Any, both: bool) -> int | None:
    # The hello carries one seed; a `both` session's partner takes seed + 1 (as the Python API's int seed).
    if seed is None or not isinstance(seed, (tuple, list)):
        return None if seed is None else int(seed)
    if both and len(seed) == 2 and seed[0] is not None and seed[1] == seed[0] + 1:
        return int(seed[0])
    raise ConfigError(
        f"the server takes one seed per session (a both session's partner gets seed + 1), got {seed!r}"
    )


def _make_hello(
    sample_rate: int,
    partner: bool,
    both: bool,
    encoding: str,
    format: str,
    hop_frames: int | None,
    arkit: bool,
    options: GenerationOptions | Mapping[str, Any] | None,
    overrides: Mapping[str, Any],
) -> Hello:
    """The hello of a session: the stream's settings and every option field (derived from
    [`option_fields`][unils.options.option_fields], so a new option travels without a change here)."""
    opts = merge_options(options, overrides)
    fields: dict[str, Any] = {}
    for f in option_fields():
        value = getattr(opts, f.name)
        if f.kind == "motion":
            value = _clipset(value, both)
        elif f.kind == "seed":
            value = _hello_seed(value, both)
        fields[f.name] = value
    return Hello(
        sample_rate=int(sample_rate),
        encoding=encoding,
        channels=2 if (partner or both) else 1,
        both=both,
        format=format,
        hop_frames=hop_frames,
        arkit=bool(arkit),
        **fields,
    )


def _closed_error(exc: ConnectionClosed) -> ProtocolError:
    frame = exc.rcvd or exc.sent
    code = frame.code if frame is not None else 1006
    reason = frame.reason if frame is not None and frame.reason else "no reason given (connection lost)"
    return ProtocolError(f"the server closed the session ({code}): {reason}", code)


def _refused_error(exc: InvalidStatus) -> ProtocolError:
    status = exc.response.status_code
    body = bytes(exc.response.body or b"").decode(errors="replace").strip()
    return ProtocolError(f"the server refused the connection: HTTP {status} {body}", status)


def _auth_headers(token: str | None) -> dict[str, str] | None:
    return {"Authorization": f"Bearer {token}"} if token else None


def _empty_arkit(fps: float) -> ArkitAnimation:
    return ArkitAnimation(
        np.zeros((0, 52), np.float32), np.zeros((0, 3), np.float32), np.zeros((0, 2, 2), np.float32), fps
    )


class _Inbox:
    """Client-side state shared by both clients: frames received, latest stats, end of session."""

    def __init__(self, hello: Hello, on_frames: FramesEvent | None) -> None:
        self.hello = hello
        self.on_frames = on_frames
        self.ready: dict[str, Any] | None = None
        self.stats: dict[str, Any] | None = None
        self.ended = False
        self.received = 0
        self.acked = 0  # audio bytes the server has consumed (flow control)
        self._pieces: list[list[np.ndarray]] = [[] for _ in range(hello.people)]
        self._arkit: list[list[ArkitAnimation]] = [[] for _ in range(hello.people)]
        self._fps = 25.0

    def handle(self, msg: str | bytes) -> None:
        now = time.perf_counter()
        if isinstance(msg, bytes):
            if msg[:4] == ARKIT_MAGIC:
                start, values = decode_frames_binary(msg, ARKIT_MAGIC)
                for piece, v in zip(self._arkit, values):
                    w, head, eyes = from_livelink_values(v)
                    piece.append(
                        ArkitAnimation(
                            w.astype(np.float32), head.astype(np.float32), eyes.astype(np.float32), self._fps
                        )
                    )
                return
            start, arr = decode_frames_binary(msg)
            self._add(start, list(arr), now)
            return
        obj = json.loads(msg)
        kind = obj.get("type")
        if kind == "ready":
            self.ready = obj
            self._fps = float(obj["fps"])
        elif kind == "frames":
            people = [obj["frames"]] + ([obj["partner_frames"]] if "partner_frames" in obj else [])
            arrays = [
                np.asarray([[x for n in PARTS for x in f[n]] for f in rows], np.float32).reshape(
                    -1, MOTION_DIM
                )
                for rows in people
            ]
            self._add(int(obj["start"]), arrays, now)
            for piece, key in zip(self._arkit, ("arkit", "partner_arkit")):
                if key in obj:
                    entries = obj[key]
                    piece.append(
                        ArkitAnimation(
                            np.asarray([e["weights"] for e in entries], np.float32),
                            np.asarray([e["head"] for e in entries], np.float32),
                            np.asarray([e["eyes"] for e in entries], np.float32).reshape(-1, 2, 2),
                            self._fps,
                        )
                    )
        elif kind == "stats":
            self.stats = obj
        elif kind == "ack":
            self.acked = int(obj["audio_bytes"])
        elif kind == "end":
            self.stats = obj
            self.ended = True

    def _add(self, start: int, arrays: list[np.ndarray], now: float) -> None:
        if start != self.received or len(arrays) != len(self._pieces):
            raise ProtocolError(
                f"frames out of order: got frame {start} with {len(arrays)} people, expected frame "
                f"{self.received} with {len(self._pieces)}"
            )
        for piece, arr in zip(self._pieces, arrays):
            piece.append(arr)
        self.received += arrays[0].shape[0]
        if self.on_frames is not None:
            self.on_frames(start, arrays[0].shape[0], now)

    @property
    def credit(self) -> int:
        assert self.ready is not None
        return int(self.ready["flow"]["credit_bytes"])

    def messages(self, data: bytes) -> list[bytes]:
        """``data`` split into audio messages the server takes: at most its ``max_message_bytes`` and
        half the credit (so the next one always fits once the server has caught up), whole frames."""
        assert self.ready is not None
        frame = self.hello.channels * self.hello.bytes_per_sample
        limit = min(int(self.ready.get("limits", {}).get("max_message_bytes", 1 << 20)), self.credit // 2)
        size = max(frame, limit // frame * frame)
        if len(data) <= size:
            return [data]
        view = memoryview(data)
        return [bytes(view[i : i + size]) for i in range(0, len(data), size)]

    def room(self, sent: int, nbytes: int) -> bool:
        """Whether ``nbytes`` more may be sent with ``sent`` bytes sent so far (the credit)."""
        return sent - self.acked + nbytes <= self.credit or sent == self.acked

    def take_arkit(self) -> ArkitAnimation | tuple[ArkitAnimation, ArkitAnimation]:
        out = []
        for i, piece in enumerate(self._arkit):
            out.append(ArkitAnimation.concatenate(piece) if piece else _empty_arkit(self._fps))
            self._arkit[i] = []
        return (out[0], out[1]) if len(out) == 2 else out[0]

    def take(self) -> Motion | tuple[Motion, Motion]:
        out = []
        for i, piece in enumerate(self._pieces):
            arr = np.concatenate(piece) if piece else np.zeros((0, MOTION_DIM), np.float32)
            out.append(Motion.from_array(arr, fps=self._fps))
            self._pieces[i] = []
        return (out[0], out[1]) if len(out) == 2 else out[0]


class StreamClient:
    """A blocking client: one instance is one streaming session on a ``unils serve`` server.

    Args:
        url: the WebSocket endpoint, e.g. ``ws://127.0.0.1:8765/ws``.
        sample_rate: rate of the audio you will send (the server resamples to 16 kHz).
        partner: send the partner's audio too (two channels).
        both: also receive the partner's motion (implies ``partner``); methods then return pairs.
        encoding: ``"float32"`` (exact) or ``"pcm16"`` (half the bytes).
        format: frames as ``"binary"`` (compact) or ``"json"`` (named parts), same values.
        hop_frames: None for exact mode or the low-latency hop, as in
            [`unils.UniLS.stream`][unils.model.UniLS.stream].
        arkit: also receive ARKit-52 weights with head and eye rotation for every frame
            ([`receive_arkit`][unils.serve.client.StreamClient.receive_arkit]).
        token: the server's token, if it has one.
        on_frames: optional callback ``(start, count, received_at)`` for every frames message.
        open_timeout: seconds to wait for the connection and the server's ``ready``.
        credit_timeout: longest wait for the server to acknowledge audio before a send (flow control).
        options: the session's [`GenerationOptions`][unils.options.GenerationOptions] (or a dict of its
            fields), as in [`unils.UniLS.stream`][unils.model.UniLS.stream].
        **overrides: any option field as a keyword (``seed``, ``temperature``, ``top_p``, ``cfg_scale``,
            ``smooth``, ``style``, ``prev_motion``, ``use_cache``), applied over ``options``. Clips
            (``style``, ``prev_motion``) are a [`Motion`][unils.motion.Motion] or ``[frames, 108]`` array of
            at most one window; with ``both``, a pair ``(person, partner)`` (items may be None). The server
            takes one ``seed`` (a ``both`` session's partner gets ``seed + 1``).

    Raises:
        ProtocolError: the server refused the connection or the hello (``code`` says why).
        ConfigError: an unknown option or a bad value (refused before connecting).
    """

    def __init__(
        self,
        url: str,
        *,
        sample_rate: int = 16000,
        partner: bool = False,
        both: bool = False,
        encoding: str = "float32",
        format: str = "binary",
        hop_frames: int | None = None,
        arkit: bool = False,
        options: GenerationOptions | Mapping[str, Any] | None = None,
        token: str | None = None,
        on_frames: FramesEvent | None = None,
        open_timeout: float = 10.0,
        credit_timeout: float = 120.0,
        **overrides: Unpack[OptionOverrides],
    ) -> None:
        self.hello = _make_hello(
            sample_rate, partner, both, encoding, format, hop_frames, arkit, options, overrides
        )
        self._inbox = _Inbox(self.hello, on_frames)
        self._sent = 0
        self._credit_timeout = credit_timeout
        try:
            self._ws: SyncClientConnection = sconnect(
                url,
                additional_headers=_auth_headers(token),
                open_timeout=open_timeout,
                max_size=_CLIENT_MAX_SIZE,
                compression=None,
            )
        except InvalidStatus as exc:
            raise _refused_error(exc) from None
        # websockets >= 17.1 wants its sync connection entered as a context manager; this object is
        # the context manager around it (close() is its exit), which older versions accept too.
        self._ws.__enter__()
        try:
            self._ws.send(self.hello.to_message())
            self._inbox.handle(self._ws.recv(timeout=open_timeout))
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None
        except TimeoutError:
            self._ws.close()
            raise ProtocolError(f"no answer to the hello within {open_timeout:g} s") from None

    @property
    def ready(self) -> dict[str, Any]:
        """The server's ``ready`` message (fps, parts, algorithmic latency, limits...)."""
        assert self._inbox.ready is not None
        return self._inbox.ready

    @property
    def stats(self) -> dict[str, Any] | None:
        """The latest ``stats`` (or final ``end``) message from the server."""
        return self._inbox.stats

    @property
    def frames_received(self) -> int:
        """Frames received so far."""
        return self._inbox.received

    def send(self, audio: Any, partner_audio: Any = None) -> None:
        """Send one block of audio (any length, split into messages the server takes; channels equal)."""
        if self._inbox.ended:
            raise StreamError("this session has ended; open a new client")
        data = encode_audio(self.hello, audio, partner_audio)
        try:
            for message in self._inbox.messages(data):
                # Flow control: wait (reading frames and acks) until the credit has room for this message.
                deadline = time.monotonic() + self._credit_timeout
                while not self._inbox.room(self._sent, len(message)):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ProtocolError(
                            f"the server acknowledged no audio for {self._credit_timeout:g} s"
                        )
                    try:
                        self._inbox.handle(self._ws.recv(timeout=left))
                    except TimeoutError:
                        continue
                self._ws.send(message)
                self._sent += len(message)
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None

    def receive(self, timeout: float = 0.0) -> Motion | tuple[Motion, Motion]:
        """Frames that have arrived and were not returned yet.

        Args:
            timeout: seconds to wait for the first message when none is waiting (0 = do not wait).
        """
        wait = timeout
        while not self._inbox.ended:
            try:
                msg = self._ws.recv(timeout=wait)
            except TimeoutError:
                break
            except ConnectionClosed as exc:
                raise _closed_error(exc) from None
            self._inbox.handle(msg)
            wait = 0
        return self._inbox.take()

    def push(self, audio: Any, partner_audio: Any = None) -> Motion | tuple[Motion, Motion]:
        """Send a block, then return the frames that have arrived so far (without waiting)."""
        self.send(audio, partner_audio)
        return self.receive(0)

    def receive_arkit(self) -> ArkitAnimation | tuple[ArkitAnimation, ArkitAnimation]:
        """ARKit frames (sessions opened with ``arkit=True``) that arrived with the frames returned so far."""
        return self._inbox.take_arkit()

    def end(self, timeout: float = 120.0) -> Motion | tuple[Motion, Motion]:
        """End the audio; wait for the server to flush; return the frames not returned yet."""
        try:
            self._ws.send(json.dumps({"type": "end"}))
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None
        deadline = time.monotonic() + timeout
        while not self._inbox.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError(f"the server did not finish the session within {timeout:g} s")
            try:
                self._inbox.handle(self._ws.recv(timeout=left))
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                raise _closed_error(exc) from None
        out = self._inbox.take()
        self.close()
        return out

    def close(self) -> None:
        """Close the connection (the server ends the session)."""
        self._ws.close(CLOSE_NORMAL)

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncStreamClient:
    """The asyncio twin of [`StreamClient`][unils.serve.client.StreamClient]; create it with ``await
    AsyncStreamClient.connect(...)``.

    A background task reads the server's messages as they arrive, so
    [`receive`][unils.serve.client.AsyncStreamClient.receive] never waits and ``on_frames`` timestamps are
    taken on arrival.
    """

    def __init__(self, ws: ClientConnection, hello: Hello, inbox: _Inbox) -> None:
        import asyncio

        self._ws = ws
        self.hello = hello
        self._inbox = inbox
        self._error: ProtocolError | None = None
        self._sent = 0
        self._acked = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        sample_rate: int = 16000,
        partner: bool = False,
        both: bool = False,
        encoding: str = "float32",
        format: str = "binary",
        hop_frames: int | None = None,
        arkit: bool = False,
        options: GenerationOptions | Mapping[str, Any] | None = None,
        token: str | None = None,
        on_frames: FramesEvent | None = None,
        open_timeout: float = 10.0,
        **overrides: Unpack[OptionOverrides],
    ) -> AsyncStreamClient:
        """Connect, send the hello and wait for ``ready`` (arguments as
        [`StreamClient`][unils.serve.client.StreamClient])."""
        import asyncio

        hello = _make_hello(
            sample_rate, partner, both, encoding, format, hop_frames, arkit, options, overrides
        )
        inbox = _Inbox(hello, on_frames)
        try:
            ws = await aconnect(
                url,
                additional_headers=_auth_headers(token),
                open_timeout=open_timeout,
                max_size=_CLIENT_MAX_SIZE,
                compression=None,
            )
        except InvalidStatus as exc:
            raise _refused_error(exc) from None
        try:
            await ws.send(hello.to_message())
            inbox.handle(await asyncio.wait_for(ws.recv(), open_timeout))
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None
        except asyncio.TimeoutError:
            await ws.close()
            raise ProtocolError(f"no answer to the hello within {open_timeout:g} s") from None
        return cls(ws, hello, inbox)

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                self._inbox.handle(msg)
                self._acked.set()
                if self._inbox.ended:
                    break
        except ConnectionClosed as exc:
            self._error = _closed_error(exc)
        except ProtocolError as exc:
            self._error = exc
        self._acked.set()  # wake a send waiting for credit: it reports the error
        if not self._inbox.ended and self._error is None:
            code = self._ws.close_code or 1006
            self._error = ProtocolError(
                f"the server closed the session ({code}) before its end: "
                f"{self._ws.close_reason or 'no reason given'}",
                code,
            )

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    @property
    def ready(self) -> dict[str, Any]:
        """The server's ``ready`` message (available once connected)."""
        assert self._inbox.ready is not None
        return self._inbox.ready

    @property
    def stats(self) -> dict[str, Any] | None:
        """The latest ``stats`` message from the server (None before the first)."""
        return self._inbox.stats

    @property
    def frames_received(self) -> int:
        """Frames received so far."""
        return self._inbox.received

    async def send(self, audio: Any, partner_audio: Any = None) -> None:
        """Send one block of audio (any length, split into messages the server takes; channels equal)."""
        self._check()
        if self._inbox.ended:
            raise StreamError("this session has ended; open a new client")
        data = encode_audio(self.hello, audio, partner_audio)
        for message in self._inbox.messages(data):
            while not self._inbox.room(self._sent, len(message)):  # flow control, see StreamClient.send
                if self._reader.done():
                    self._check()
                    raise StreamError("this session has ended; open a new client")
                self._acked.clear()
                await self._acked.wait()
                self._check()
            try:
                await self._ws.send(message)
                self._sent += len(message)
            except ConnectionClosed:
                await self._reader
                self._check()
                raise

    def receive(self) -> Motion | tuple[Motion, Motion]:
        """Frames that have arrived and were not returned yet (never waits)."""
        self._check()
        return self._inbox.take()

    def receive_arkit(self) -> ArkitAnimation | tuple[ArkitAnimation, ArkitAnimation]:
        """ARKit frames (sessions opened with ``arkit=True``) that have arrived and were not returned yet."""
        return self._inbox.take_arkit()

    async def push(self, audio: Any, partner_audio: Any = None) -> Motion | tuple[Motion, Motion]:
        """Send a block, then return the frames that have arrived so far (without waiting)."""
        await self.send(audio, partner_audio)
        return self.receive()

    async def end(self, timeout: float = 120.0) -> Motion | tuple[Motion, Motion]:
        """End the audio; wait for the server to flush; return the frames not returned yet."""
        import asyncio

        self._check()
        try:
            await self._ws.send(json.dumps({"type": "end"}))
        except ConnectionClosed:
            pass  # the reader reports why
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except asyncio.TimeoutError:
            raise ProtocolError(f"the server did not finish the session within {timeout:g} s") from None
        self._check()
        out = self._inbox.take()
        await self.close()
        return out

    async def close(self) -> None:
        """Close the connection (the server ends the session)."""
        await self._ws.close(CLOSE_NORMAL)
        if not self._reader.done():
            self._reader.cancel()
            try:
                await self._reader
            except BaseException:
                pass

    async def __aenter__(self) -> AsyncStreamClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
