"""The ``unils serve`` wire protocol: hello validation, audio decoding, frame encoding, close codes.

Pure functions and constants with no network code, shared by the server and the Python clients so
that both sides agree byte for byte. ``docs/serve.md`` is the human-readable specification.

One WebSocket connection is one streaming session:

1. client -> server, text: a JSON hello (``{"type": "hello", "sample_rate": 48000, ...}``);
2. server -> client, text: ``{"type": "ready", ...}`` (or a close with a reason);
3. client -> server, binary: audio blocks (PCM16 or float32, little-endian, channels interleaved),
   at most ``ready["flow"]["credit_bytes"]`` of them not yet acknowledged;
   server -> client: frames messages (JSON text or binary, as the hello chose) as frames become
   final, each followed by a JSON ``stats`` message, and ``ack`` messages as audio is consumed;
4. client -> server, text: ``{"type": "end"}``; the server sends the remaining frames, a JSON
   ``end`` message, and closes with code 1000.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from ..audio import to_mono_float32
from ..errors import AudioError, ProtocolError
from ..motion import MOTION_DIM, PARTS, Motion
from .hello import (
    CLOSE_BAD_HELLO,
    CLOSE_TOO_BIG,
    MAX_HELLO_BYTES,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    PROTOCOL_VERSION,
    RANGES,
    Clip,
    Hello,
    load_message,
    parse_hello,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Hello",
    "Clip",
    "parse_hello",
    "ack_message",
    "stats_message",
    "RANGES",
    "MAX_HELLO_BYTES",
    "MAX_CONTROL_BYTES",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "decode_audio",
    "encode_audio",
    "parse_control",
    "frames_json",
    "frames_binary",
    "decode_frames_binary",
    "BINARY_MAGIC",
    "ARKIT_MAGIC",
    "BINARY_HEADER",
    "arkit_json",
    "arkit_binary",
    "CLOSE_NORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_BAD_DATA",
    "CLOSE_TOO_BIG",
    "CLOSE_INTERNAL",
    "CLOSE_TRY_LATER",
    "CLOSE_BAD_HELLO",
    "CLOSE_BAD_AUDIO",
    "CLOSE_BAD_MESSAGE",
    "CLOSE_IDLE",
    "CLOSE_SLOW_READER",
    "CLOSE_DEAD_PEER",
]

# Close codes. 1xxx are the standard ones (RFC 6455); 4xxx are this protocol's own.
CLOSE_NORMAL = 1000  #: the session ended after the client's "end"
CLOSE_GOING_AWAY = 1001  #: the server is shutting down
CLOSE_BAD_DATA = 1007  #: a text message that is not valid UTF-8 (sent by the websockets library)
CLOSE_INTERNAL = 1011  #: the model failed (a bug; logged on the server)
CLOSE_TRY_LATER = 1013  #: all sessions are taken (--max-sessions)
CLOSE_BAD_AUDIO = 4001  #: an audio message cannot be decoded (length, NaN, out-of-range floats)
CLOSE_BAD_MESSAGE = 4002  #: a message of the wrong kind or at the wrong time
CLOSE_IDLE = 4008  #: no hello, or no non-empty message, within its deadline
CLOSE_SLOW_READER = 4009  #: the client left its frames unread past the send deadline
CLOSE_DEAD_PEER = 4010  #: keepalive: neither a pong nor any message within the ping timeout

#: Binary frames message header: magic, version, people, first frame index, frame count.
BINARY_MAGIC = b"ULSM"
#: First bytes of a binary ARKit message (sent after each ``ULSM`` message when the hello asks ``arkit``).
ARKIT_MAGIC = b"ULSA"
#: Layout of that header (little-endian): ``<4sHHII``.
BINARY_HEADER = struct.Struct("<4sHHII")
#: Control messages after the hello (``end``) are tiny; longer ones are refused (in UTF-8 bytes).
MAX_CONTROL_BYTES = 8192

#: float32 audio is expected in [-1, 1]; beyond this magnitude the bytes are almost surely not float
#: audio (e.g. PCM16 sent as float32) and would only make the encoder produce garbage.
MAX_FLOAT_MAGNITUDE = 16.0

_ENCODINGS: dict[str, np.dtype] = {"pcm16": np.dtype("<i2"), "float32": np.dtype("<f4")}


def ack_message(audio_bytes: int, hello: Hello) -> str:
    """The server's flow-control acknowledgement: audio bytes consumed by the session so far.

    A client may have at most ``ready["flow"]["credit_bytes"]`` bytes of audio sent and not yet
    acknowledged; `unils.serve.StreamClient` and the browser page wait for acks beyond it.
    """
    return json.dumps(
        {"type": "ack", "audio_bytes": audio_bytes, "audio_s": audio_bytes / hello.bytes_per_second}
    )


def stats_message(session: Any, push_s: float, kind: str = "stats") -> str:
    """The server's ``stats`` message after frames (or, with ``kind="end"``, the final ``end`` message).

    Args:
        session: the session's [`StreamSession`][unils.streaming.StreamSession] (frames emitted, latency
            figures).
        push_s: compute time of the work that produced the frames just sent (0 for ``end``).
        kind: ``"stats"`` or ``"end"``.
    """
    return json.dumps(
        {
            "type": kind,
            "frames_emitted": session.frames_emitted,
            "push_compute_s": push_s,
            **session.stats().__dict__,
        }
    )


def decode_audio(data: bytes, hello: Hello) -> list[np.ndarray]:
    """Split one binary audio message into per-channel sample arrays.

    Args:
        data: little-endian samples, channels interleaved (person, partner, person, ...).
        hello: the session's hello (encoding and channel count).

    Returns:
        ``hello.channels`` 1-D arrays (int16 or float32) of equal length.

    Raises:
        ProtocolError: with ``code == CLOSE_BAD_AUDIO`` when the length is not a whole number of
            sample frames, or float32 samples are NaN/inf or far outside [-1, 1].
    """
    dtype = _ENCODINGS[hello.encoding]
    step = dtype.itemsize * hello.channels
    if len(data) % step:
        raise ProtocolError(
            f"an audio message of {len(data)} bytes is not a whole number of {hello.channels}-channel "
            f"{hello.encoding} samples ({step} bytes each)",
            CLOSE_BAD_AUDIO,
        )
    samples = np.frombuffer(data, dtype=dtype).reshape(-1, hello.channels)
    if hello.encoding == "float32" and samples.size:
        finite = np.isfinite(samples)
        if not finite.all():
            raise ProtocolError(
                f"float32 audio holds {int((~finite).sum())} NaN/inf samples", CLOSE_BAD_AUDIO
            )
        peak = float(np.abs(samples).max())
        if peak > MAX_FLOAT_MAGNITUDE:
            raise ProtocolError(
                f"float32 audio is expected in [-1, 1], got a sample of magnitude {peak:.3g} (are these PCM16 "
                "bytes? then say encoding=pcm16 in the hello)",
                CLOSE_BAD_AUDIO,
            )
    # Native byte order, contiguous: what the session's validation expects.
    return [
        np.ascontiguousarray(samples[:, c]).astype(dtype.newbyteorder("="), copy=False)
        for c in range(hello.channels)
    ]


def _channel(block: Any, name: str, encoding: str) -> np.ndarray:
    arr = block if isinstance(block, np.ndarray) else None
    if encoding == "pcm16" and arr is not None and arr.dtype == np.int16 and arr.ndim == 1:
        return arr.astype("<i2", copy=False)  # already PCM16: sent bit for bit
    x = to_mono_float32(block, name)
    if encoding == "float32":
        return x.astype("<f4", copy=False)
    # The server reads PCM16 as x / 32768 (as audio files are read), so this is the inverse.
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")


def encode_audio(hello: Hello, audio: Any, partner_audio: Any = None) -> bytes:
    """One binary audio message (the client side of [`decode_audio`][unils.serve.protocol.decode_audio]).

    Args:
        hello: the session's hello (encoding, channels).
        audio: the person's next samples (numpy array or tensor; int16 is sent as is for pcm16).
        partner_audio: the partner's next samples, same length (required when ``channels == 2``).

    Returns:
        Little-endian samples, channels interleaved.

    Raises:
        AudioError: missing or extra partner audio, different lengths, NaN/inf samples.
    """
    if (partner_audio is None) != (hello.channels == 1):
        raise AudioError(
            "this session has 2 channels: pass partner_audio with every block"
            if hello.channels == 2
            else "this session has 1 channel: open it with partner=True to send partner audio"
        )
    chans = [_channel(audio, "audio", hello.encoding)]
    if partner_audio is not None:
        chans.append(_channel(partner_audio, "partner_audio", hello.encoding))
        if chans[0].shape != chans[1].shape:
            raise AudioError(
                f"audio and partner_audio blocks must have the same length, got {chans[0].shape[0]} "
                f"and {chans[1].shape[0]} samples"
            )
    return np.stack(chans, axis=1).tobytes()


def parse_control(text: str) -> str:
    """Validate a text message after the hello; return its type (only ``"end"`` exists).

    Raises:
        ProtocolError: with ``code == CLOSE_BAD_MESSAGE`` (1009 beyond
            [`MAX_CONTROL_BYTES`][unils.serve.protocol.MAX_CONTROL_BYTES]).
    """
    obj = load_message(text, "control message", CLOSE_BAD_MESSAGE, MAX_CONTROL_BYTES)
    kind = obj.get("type")
    if kind == "end":
        return "end"
    if kind == "hello":
        raise ProtocolError(
            "a session takes one hello; open a new connection for a new session", CLOSE_BAD_MESSAGE
        )
    raise ProtocolError(
        f'unknown message type {kind!r}: after the hello send binary audio and finally {{"type": "end"}}',
        CLOSE_BAD_MESSAGE,
    )


def _people(motion: Motion | tuple[Motion, Motion]) -> list[Motion]:
    return list(motion) if isinstance(motion, tuple) else [motion]


def frames_json(motion: Motion | tuple[Motion, Motion], start: int, arkit: list[Any] | None = None) -> str:
    """A JSON frames message: ``{"type": "frames", "start", "count", "frames": [...]}``.

    Each frame is ``{"index", "time", "expression", "head_pose", "jaw", "eyes"}``; a ``both`` session adds
    ``"partner_frames"`` in the same form. Values are the float32 values written in full (they read back bit
    for bit). With ``arkit`` (one [`ArkitAnimation`][unils.arkit.animation.ArkitAnimation] per person) the
    message also has ``"arkit"`` (and ``"partner_arkit"``), see
    [`arkit_json`][unils.serve.protocol.arkit_json].
    """
    people = _people(motion)
    count = len(people[0])
    fps = people[0].fps

    def rows(m: Motion) -> list[dict[str, Any]]:
        parts = {name: getattr(m, name).astype(np.float32).tolist() for name in PARTS}
        return [
            {"index": start + i, "time": (start + i) / fps, **{n: parts[n][i] for n in PARTS}}
            for i in range(count)
        ]

    msg: dict[str, Any] = {
        "type": "frames",
        "start": start,
        "count": count,
        "fps": fps,
        "frames": rows(people[0]),
    }
    if len(people) == 2:
        msg["partner_frames"] = rows(people[1])
    if arkit is not None:
        for key, entries in zip(("arkit", "partner_arkit"), arkit_json(arkit)):
            msg[key] = entries
    return json.dumps(msg)


def frames_binary(motion: Motion | tuple[Motion, Motion], start: int) -> bytes:
    """A binary frames message: 16-byte header then float32 ``[people, count, 108]``, little-endian.

    Header (``<4sHHII``): ``b"ULSM"``, protocol version, people (1 or 2), index of the first frame,
    frame count. Columns are the official 108-d order (see ``unils.motion.PARTS``).
    """
    people = _people(motion)
    arr = np.stack([m.to_array() for m in people]).astype("<f4", copy=False)
    return (
        BINARY_HEADER.pack(BINARY_MAGIC, PROTOCOL_VERSION, len(people), start, arr.shape[1]) + arr.tobytes()
    )


def arkit_json(animations: list[Any]) -> list[list[dict[str, Any]]]:
    """Per person, the ARKit entries of a JSON frames message: ``{"weights", "head", "eyes"}`` per frame.

    ``weights`` are the 52 blendshapes in the order of ``ready.arkit_names`` (Apple's names, Unreal's
    ``EARFaceBlendShape`` order), in [0, 1]; ``head`` is yaw, pitch, roll and ``eyes`` is
    ``[[left yaw, left pitch], [right yaw, right pitch]]``, all in radians.
    """
    return [
        [
            {"weights": w.tolist(), "head": h.tolist(), "eyes": e.tolist()}
            for w, h, e in zip(
                a.weights.astype(np.float32), a.head.astype(np.float32), a.eyes.astype(np.float32)
            )
        ]
        for a in animations
    ]


def arkit_binary(animations: list[Any], start: int) -> bytes:
    """A binary ARKit message: 16-byte header then float32 ``[people, count, 61]``, little-endian.

    Header (``<4sHHII``) as the frames message with magic ``b"ULSA"``. The 61 values per frame are a
    Live Link Face packet's (``unils.arkit.LIVELINK_NAMES``): 52 weights, then head yaw, pitch, roll
    and each eye's yaw, pitch, roll, rotations divided by pi as Unreal reads them.
    """
    arr = np.stack([a.livelink_values() for a in animations]).astype("<f4", copy=False)
    return (
        BINARY_HEADER.pack(ARKIT_MAGIC, PROTOCOL_VERSION, len(animations), start, arr.shape[1])
        + arr.tobytes()
    )


def decode_frames_binary(data: bytes, magic: bytes = BINARY_MAGIC) -> tuple[int, np.ndarray]:
    """Read a binary frames message (or, with ``magic=ARKIT_MAGIC``, a binary ARKit message).

    Returns:
        ``(start, values)`` with ``values`` float32 ``[people, count, 108]`` (``[people, count, 61]``
        for ARKit).

    Raises:
        ProtocolError: bad magic, version or length.
    """
    width = {BINARY_MAGIC: MOTION_DIM, ARKIT_MAGIC: 61}[magic]
    if len(data) < BINARY_HEADER.size:
        raise ProtocolError(f"binary message too short ({len(data)} bytes)", CLOSE_BAD_MESSAGE)
    got, version, people, start, count = BINARY_HEADER.unpack_from(data)
    if got != magic or version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"not a unils {magic!r} message (magic {got!r}, version {version})", CLOSE_BAD_MESSAGE
        )
    expected = BINARY_HEADER.size + people * count * width * 4
    if len(data) != expected:
        raise ProtocolError(f"binary message has {len(data)} bytes, expected {expected}", CLOSE_BAD_MESSAGE)
    values = np.frombuffer(data, "<f4", offset=BINARY_HEADER.size).reshape(people, count, width)
    return start, values.astype(np.float32)
