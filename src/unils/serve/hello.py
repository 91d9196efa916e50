"""The hello of the ``unils serve`` protocol: bounded parsing, exact types, documented ranges.

The hello is the only message that carries structure, so it is the one a hostile client would use to
crash the server. Every check here runs before anything is built from it: the size is counted in
UTF-8 bytes, the nesting depth is measured before ``json.loads`` (which recurses), every number has a
range that keeps the model's arithmetic finite, and unknown fields are refused.

The option fields are derived from [`GenerationOptions`][unils.options.GenerationOptions]
([`option_fields`][unils.options.option_fields]: ``seed``, ``temperature``, ``top_p``, ``cfg_scale``,
``smooth``, ``style``, ``prev_motion``, ``use_cache``), parsed by their kind with their declared ranges; the
stream's own ``hop_frames``, ``partner``, ``both`` and ``sample_rate`` are the Python API's
([`unils.UniLS.stream`][unils.model.UniLS.stream]), and the wire adds ``encoding``, ``channels``, ``format``,
``arkit`` and ``version``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import SAMPLING_RANGES
from ..errors import ProtocolError
from ..motion import MOTION_DIM
from ..options import MAX_SEED as _OPTIONS_MAX_SEED
from ..options import GenerationOptions, OptionField, option_fields

__all__ = [
    "CLOSE_BAD_HELLO",
    "CLOSE_TOO_BIG",
    "MAX_HELLO_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "PROTOCOL_VERSION",
    "RANGES",
    "Clip",
    "Hello",
    "load_message",
    "parse_hello",
]

#: Version of the message protocol: sent in the hello (a mismatch is refused) and in binary frame headers.
PROTOCOL_VERSION = 1
CLOSE_TOO_BIG = 1009  #: a message exceeded a size limit
CLOSE_BAD_HELLO = 4000  #: the hello is malformed or asks for something unsupported

#: Lowest accepted audio sample rate (Hz); accepted rates other than 16 kHz are resampled by the session.
MIN_SAMPLE_RATE = 8000
#: Highest accepted audio sample rate (Hz).
MAX_SAMPLE_RATE = 192000
#: Largest hello in UTF-8 bytes: room for four clips of one 100-frame window (``style`` and
#: ``prev_motion`` for two people, 57 600 base64 characters each) and the scalar options.
MAX_HELLO_BYTES = 256 * 1024
#: Deepest nesting of arrays/objects a message may have (the hello needs 3: object, clip, shape).
MAX_JSON_DEPTH = 8
#: Inclusive ranges of the sampling knobs: the model's own
#: ([`unils.config.SAMPLING_RANGES`][unils.config.SAMPLING_RANGES]), within which its arithmetic stays finite
#: (logits are multiplied by ``1 / temperature`` and by ``cfg_scale``).
RANGES: dict[str, tuple[float, float]] = SAMPLING_RANGES
#: Largest seed: integers JavaScript and every JSON parser represent exactly
#: ([`unils.options.MAX_SEED`][unils.options.MAX_SEED]); a ``both`` session's partner takes ``seed + 1``.
MAX_SEED = _OPTIONS_MAX_SEED

_ENCODINGS = ("pcm16", "float32")
_FORMATS = ("json", "binary")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


@dataclass(frozen=True)
class Clip:
    """A motion clip carried by the hello: ``frames`` rows of 108 little-endian float32 values.

    Wire form: ``{"shape": [frames, 108], "data": "<base64 of the float32 values, row-major>"}``.
    """

    frames: int
    data: bytes

    def array(self) -> np.ndarray:
        """The clip as a float32 array ``[frames, 108]``."""
        return np.frombuffer(self.data, "<f4").reshape(self.frames, MOTION_DIM).astype(np.float32)

    @classmethod
    def from_array(cls, arr: Any) -> Clip:
        """Encode a ``[frames, 108]`` array (or a [`Motion`][unils.motion.Motion])."""
        a = np.asarray(arr.to_array() if hasattr(arr, "to_array") else arr, dtype="<f4")
        if a.ndim != 2 or a.shape[1] != MOTION_DIM:
            raise ProtocolError(
                f"a clip must be [frames, {MOTION_DIM}], got shape {list(a.shape)}", CLOSE_BAD_HELLO
            )
        return cls(int(a.shape[0]), np.ascontiguousarray(a).tobytes())

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return {"shape": [self.frames, MOTION_DIM], "data": base64.b64encode(self.data).decode("ascii")}


#: ``style`` / ``prev_motion``: one clip (the person), or one per person for ``both`` sessions.
ClipSet = tuple["Clip | None", ...]


@dataclass(frozen=True)
class Hello:
    """A validated hello: what the client will send and what it wants back.

    Attributes:
        sample_rate: rate of the audio the client sends (Hz).
        encoding: ``"pcm16"`` (int16) or ``"float32"``, little-endian.
        channels: 1 (the person only) or 2 (person and partner, interleaved sample by sample).
        both: also animate the partner (needs ``channels=2``).
        format: ``"json"`` (frames with named parts) or ``"binary"`` (compact float32).
        seed: random seed (None = fresh randomness; ``both``: the partner takes ``seed + 1``).
        hop_frames: None for exact mode (equals offline generation), or the low-latency hop.
        smooth: Savitzky-Golay smoothing.
        temperature: sampling temperature (None = the model's default; 0 = greedy).
        top_p: per-bit nucleus threshold (None = the model's default).
        cfg_scale: classifier-free guidance scale (None = the model's default).
        style: style clip(s): ``(person,)`` or, for ``both``, ``(person, partner)``; None = none.
        prev_motion: motion preceding the audio, in the same form as ``style``.
        use_cache: key/value caching across scales (False: the official full recomputation).
        arkit: also send each frame as Apple ARKit-52 weights with head and eye rotation (see
            [`unils.arkit`][unils.arkit]): JSON frames get ``arkit`` (and ``partner_arkit``) entries, binary
            sessions get an ``ULSA`` message after each ``ULSM`` one.
    """

    sample_rate: int
    encoding: str = "pcm16"
    channels: int = 1
    both: bool = False
    format: str = "json"
    seed: int | None = None
    hop_frames: int | None = None
    smooth: bool = True
    temperature: float | None = None
    top_p: float | None = None
    cfg_scale: float | None = None
    style: ClipSet | None = None
    prev_motion: ClipSet | None = None
    use_cache: bool = True
    arkit: bool = False

    @property
    def bytes_per_sample(self) -> int:
        """Bytes per audio sample of the chosen encoding."""
        return 2 if self.encoding == "pcm16" else 4

    @property
    def bytes_per_second(self) -> int:
        """Audio bytes per second of the client's stream (all channels)."""
        return self.sample_rate * self.channels * self.bytes_per_sample

    @property
    def people(self) -> int:
        """People whose motion the session returns (2 with ``both``)."""
        return 2 if self.both else 1

    @property
    def partner(self) -> bool:
        """Whether the partner's audio is sent (two channels)."""
        return self.channels == 2

    def to_dict(self, clips: bool = True) -> dict[str, Any]:
        """The hello as a JSON-ready dict (``clips=False`` gives clip sizes instead of their data)."""
        out: dict[str, Any] = {"type": "hello", "version": PROTOCOL_VERSION}
        for name in _PROTOCOL_FIELDS:
            out[name] = getattr(self, name)
        out["partner"] = self.partner
        for f in option_fields():
            value = getattr(self, f.name)
            if f.kind != "motion":
                out[f.name] = value
            elif value is not None:
                enc = [None if c is None else (c.to_json() if clips else {"frames": c.frames}) for c in value]
                out[f.name] = enc[0] if len(enc) == 1 else enc
        return out

    def options(self) -> GenerationOptions:
        """The session's [`GenerationOptions`][unils.options.GenerationOptions] (clips as float32 arrays:
        one for the person, or a pair for a ``both`` session)."""
        values: dict[str, Any] = {}
        for f in option_fields():
            value = getattr(self, f.name)
            values[f.name] = _clip_arrays(value) if f.kind == "motion" else value
        return GenerationOptions(**values)

    def to_message(self) -> str:
        """The hello as the JSON text a client sends."""
        return json.dumps(self.to_dict())


#: The hello's own fields (besides ``type``, ``version``, ``partner`` and the option fields).
_PROTOCOL_FIELDS = ("sample_rate", "encoding", "channels", "both", "format", "hop_frames", "arkit")


def _clip_arrays(clips: ClipSet | None) -> Any:
    # One clip: the person's (an array); two: one per person of a `both` session (a tuple).
    if clips is None:
        return None
    arrays = tuple(None if c is None else c.array() for c in clips)
    return arrays[0] if len(arrays) == 1 else arrays


def _depth(text: str) -> int:
    # Brackets inside strings do not nest; strip the strings, then measure bracket depth with a cumsum.
    skeleton = _STRING.sub("", text)
    steps = np.frombuffer(skeleton.encode("ascii", "replace"), np.uint8)
    delta = np.where((steps == ord("[")) | (steps == ord("{")), 1, 0) - np.where(
        (steps == ord("]")) | (steps == ord("}")), 1, 0
    )
    return int(np.cumsum(delta).max(initial=0))


def load_message(text: str | bytes, what: str, code: int, max_bytes: int) -> dict[str, Any]:
    """Parse one JSON text message within a byte and depth budget.

    Raises:
        ProtocolError: binary data (``code``), more than ``max_bytes`` UTF-8 bytes (1009), deeper than
            [`MAX_JSON_DEPTH`][unils.serve.hello.MAX_JSON_DEPTH] (``code``), invalid JSON or not an object
            (``code``).
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        raise ProtocolError(
            f"the {what} must be a JSON text message, got {len(text)} bytes of binary data", code
        )
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(
            f"the {what} is {size} bytes of UTF-8; the limit is {max_bytes} bytes", CLOSE_TOO_BIG
        )
    depth = _depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ProtocolError(f"the {what} nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}", code)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"the {what} is not valid JSON ({exc})", code) from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"the {what} must be a JSON object, got {type(obj).__name__}", code)
    return obj


def _bad(message: str) -> ProtocolError:
    return ProtocolError(f"hello: {message}", CLOSE_BAD_HELLO)


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, allow_none: bool) -> int | None:
    v = obj.get(key)
    if v is None and allow_none:
        return None
    # bool is an int in Python and JSON true would otherwise pass as 1; 48000.0 is fine for a rate.
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(f"{key} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise _bad(f"{key} must be between {lo} and {hi}, got {v}")
    return v


def _float(obj: dict[str, Any], key: str, bounds: tuple[float, float]) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    lo, hi = bounds
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _bad(f"{key} must be a finite number or null, got {v!r}")
    if not lo <= v <= hi:
        raise _bad(f"{key} must be between {lo:g} and {hi:g} (beyond, the sampling overflows), got {v!r}")
    return float(v)


def _bool(obj: dict[str, Any], key: str, default: bool) -> bool:
    v = obj.get(key, default)
    if not isinstance(v, bool):
        raise _bad(f"{key} must be true or false, got {v!r}")
    return v


def _choice(obj: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    v = obj.get(key, default)
    if v not in choices:
        raise _bad(f"{key} must be one of {', '.join(choices)}, got {v!r}")
    return v


def _clip(v: Any, key: str, max_frames: int) -> Clip:
    if not isinstance(v, dict) or set(v) != {"shape", "data"}:
        raise _bad(f'{key} must be {{"shape": [frames, {MOTION_DIM}], "data": "<base64 float32>"}}')
    shape, data = v["shape"], v["data"]
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or any(isinstance(s, bool) or not isinstance(s, int) for s in shape)
        or shape[1] != MOTION_DIM
        or not 1 <= shape[0] <= max_frames
    ):
        raise _bad(
            f"{key}: shape must be [frames, {MOTION_DIM}] with 1 <= frames <= {max_frames}, got {shape!r}"
        )
    want = shape[0] * MOTION_DIM * 4
    if not isinstance(data, str) or len(data) != 4 * -(-want // 3):
        raise _bad(f"{key}: data must be the base64 of {want} bytes ({4 * -(-want // 3)} characters)")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{key}: data is not valid base64") from None
    if len(raw) != want or not np.isfinite(np.frombuffer(raw, "<f4")).all():
        raise _bad(f"{key}: data must hold {want} bytes of finite float32 values")
    return Clip(shape[0], raw)


def _clips(obj: dict[str, Any], key: str, people: int, max_frames: int) -> ClipSet | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, list):
        if len(v) != people:
            raise _bad(f"{key}: a list gives one clip (or null) per person: {people} here, got {len(v)}")
        return tuple(None if c is None else _clip(c, key, max_frames) for c in v)
    return (_clip(v, key, max_frames),)


_FIELDS = {"type", "version", "partner", *Hello.__dataclass_fields__}


def _option(obj: dict[str, Any], f: OptionField, people: int, window_frames: int) -> Any:
    """One option field of the hello, parsed by its kind with its declared range."""
    if f.kind == "seed":  # one integer: a `both` session's partner takes seed + 1
        return _int(obj, f.name, 0, MAX_SEED - 1 if people == 2 else MAX_SEED, allow_none=True)
    if f.kind == "float":
        assert f.range is not None
        return _float(obj, f.name, f.range)
    if f.kind == "bool":
        return _bool(obj, f.name, bool(f.default))
    if f.kind == "motion":
        return _clips(obj, f.name, people, window_frames)
    raise AssertionError(f"the hello cannot carry an option of kind {f.kind!r} ({f.name}): add it here")


def parse_hello(
    text: str | bytes, window_frames: int = 100, min_hop_frames: int = 1, max_bytes: int = MAX_HELLO_BYTES
) -> Hello:
    """Validate a client's first message.

    Unknown fields are refused (a misspelt option would otherwise be silently ignored).

    Args:
        text: the message as received (a ``bytes`` message is refused: the hello is text).
        window_frames: the model's window; ``hop_frames`` and clip lengths may not exceed it.
        min_hop_frames: the smallest low-latency hop the server allows (small hops cost
            ``window / hop`` times the compute of exact mode).
        max_bytes: largest hello in UTF-8 bytes.

    Returns:
        The validated [`Hello`][unils.serve.hello.Hello].

    Raises:
        ProtocolError: with ``code == CLOSE_BAD_HELLO`` (or 1009 for size) and a message naming the field.
    """
    obj = load_message(text, "hello", CLOSE_BAD_HELLO, max_bytes)
    if obj.get("type") != "hello":
        raise ProtocolError(
            f'the first message must be {{"type": "hello", ...}}, got type {obj.get("type")!r}',
            CLOSE_BAD_HELLO,
        )
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(_FIELDS))}")
    version = obj.get("version", PROTOCOL_VERSION)
    # Exactly the integer: true and 1.0 compare equal to 1 in Python but are not a version.
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise _bad(f"protocol version {version!r} is not supported (this server speaks {PROTOCOL_VERSION})")
    if "sample_rate" not in obj:
        raise _bad("sample_rate is required (the rate of the audio you will send, in Hz)")
    sample_rate = _int(obj, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, allow_none=False)
    channels = _int(obj, "channels", 1, 2, allow_none=False) if "channels" in obj else None
    partner = _bool(obj, "partner", False) if "partner" in obj else None
    if channels is not None and partner is not None and (channels == 2) != partner:
        raise _bad(
            f"partner={str(partner).lower()} contradicts channels={channels} (partner audio is channel 2)"
        )
    both = _bool(obj, "both", False)
    n_channels = channels if channels is not None else 2 if partner else 1
    if both and n_channels != 2:
        raise _bad(
            "both=true needs channels=2 (or partner=true): it animates the partner from the partner's audio"
        )
    lo = max(1, min(int(min_hop_frames), window_frames))
    people = 2 if both else 1
    options = {f.name: _option(obj, f, people, window_frames) for f in option_fields()}
    return Hello(
        sample_rate=int(sample_rate),  # type: ignore[arg-type]
        encoding=_choice(obj, "encoding", _ENCODINGS, "pcm16"),
        channels=int(n_channels),
        both=both,
        format=_choice(obj, "format", _FORMATS, "json"),
        hop_frames=_int(obj, "hop_frames", lo, window_frames, allow_none=True),
        arkit=_bool(obj, "arkit", False),
        **options,
    )
