"""Typed, versioned model configuration with strict JSON round-trips.

A checkpoint folder holds ``config.json`` written from :class:`UniLSConfig`. Reading is strict:
an unknown field, a wrong type or inconsistent sizes raise :class:`~unils.errors.ConfigError`
with the offending path, so a typo in a hand-edited config never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

__all__ = [
    "CONFIG_FORMAT_VERSION",
    "CodecConfig",
    "GeneratorConfig",
    "Wav2Vec2Config",
    "MelConfig",
    "AudioEncoderConfig",
    "UniLSConfig",
    "SAMPLING_DEFAULTS",
    "SAMPLING_RANGES",
    "check_sampling",
]

#: Bumped when the meaning of a saved field changes; older files are migrated or refused.
CONFIG_FORMAT_VERSION = 1

SAMPLE_RATE = 16000
FPS = 25
#: Numbers per motion frame: 100 expression, 3 head pose, 1 jaw, 4 eye rotations.
MOTION_DIM = 108

#: Default sampling knobs (the official inference scripts' values); a config may override them.
SAMPLING_DEFAULTS: dict[str, float] = {"temperature": 1.0, "top_p": 0.97, "cfg_scale": 1.5}
#: Accepted range (inclusive) of each sampling knob. ``temperature`` 0 means greedy decoding (argmax); a
#: temperature so small that ``logits / temperature`` overflows float32 decodes those bits greedily too
#: (the limit the official sampler converges to), so every finite value the official inference accepts
#: works. Above 1e30, ``1 / temperature`` underflows float32 and every bit would be a fair coin flip: refused.
SAMPLING_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 1e30),
    "top_p": (0.0, 1.0),
    "cfg_scale": (0.0, 100.0),
}


def check_sampling(**knobs: object) -> None:
    """Check sampling knobs against :data:`SAMPLING_RANGES`; the one validation of them in unils.

    Raises:
        ConfigError: a knob that is unknown, not a finite real number, or out of its range (the message
            names the knob, the value and the range).
    """
    for name, value in knobs.items():
        if name not in SAMPLING_RANGES:
            raise ConfigError(f"unknown sampling option {name!r} (known: {', '.join(SAMPLING_RANGES)})")
        lo, hi = SAMPLING_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")


@dataclass
class CodecConfig:
    """Motion codec: transformer encoder/decoder around the multi-scale binary spherical quantizer."""

    motion_dim: int = MOTION_DIM
    hidden_dim: int = 512
    depth: int = 8
    num_heads: int = 8
    code_dim: int = 32
    #: Token counts of the quantizer levels, coarse to fine; the last one is the window length.
    scales: tuple[int, ...] = (1, 5, 25, 50, 100)
    rope_max_len: int = 300

    @property
    def window(self) -> int:
        """Frames per window (the finest scale)."""
        return self.scales[-1]

    def validate(self) -> None:
        """Check the fields; raise :class:`ConfigError` naming the first bad one."""
        for name in ("motion_dim", "hidden_dim", "depth", "num_heads", "code_dim"):
            _check(getattr(self, name) > 0, f"codec.{name} must be positive")
        _check(self.hidden_dim % self.num_heads == 0, "codec.hidden_dim must be divisible by codec.num_heads")
        _check((self.hidden_dim // self.num_heads) % 2 == 0, "codec head dim must be even (RoPE pairs)")
        _check(len(self.scales) >= 1, "codec.scales must not be empty")
        _check(all(s > 0 for s in self.scales), "codec.scales must be positive")
        _check(list(self.scales) == sorted(self.scales), "codec.scales must be increasing (coarse to fine)")
        _check(self.scales[-1] <= self.rope_max_len, "codec.rope_max_len must cover the window")


@dataclass
class GeneratorConfig:
    """Next-scale autoregressive generator with self- and partner-audio cross-attention."""

    embed_dim: int = 512
    depth: int = 8
    num_heads: int = 8
    rope_max_len: int = 5000
    ffn_ratio: float = 4.0

    def validate(self) -> None:
        """Check the fields; raise :class:`ConfigError` naming the first bad one."""
        for name in ("embed_dim", "depth", "num_heads", "rope_max_len"):
            _check(getattr(self, name) > 0, f"generator.{name} must be positive")
        _check(self.ffn_ratio > 0, "generator.ffn_ratio must be positive")
        _check(self.embed_dim % self.num_heads == 0, "generator.embed_dim must be divisible by num_heads")
        _check((self.embed_dim // self.num_heads) % 2 == 0, "generator head dim must be even (RoPE pairs)")


@dataclass
class Wav2Vec2Config:
    """wav2vec2 (stable-layer-norm variant, as facebook/wav2vec2-xls-r-300m). Names follow transformers."""

    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = True
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    layer_norm_eps: float = 1e-5

    def validate(self) -> None:
        """Check the fields; raise :class:`ConfigError` naming the first bad one."""
        for name in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "num_conv_pos_embeddings",
            "num_conv_pos_embedding_groups",
        ):
            _check(getattr(self, name) > 0, f"audio_encoder.wav2vec2.{name} must be positive")
        _check(
            all(v > 0 for v in self.conv_dim + self.conv_kernel + self.conv_stride),
            "audio_encoder.wav2vec2 conv sizes must be positive",
        )
        _check(
            len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride),
            "audio_encoder.wav2vec2 conv_dim, conv_kernel and conv_stride must have the same length",
        )
        _check(self.hidden_size % self.num_attention_heads == 0, "wav2vec2 hidden_size % heads must be 0")
        _check(self.hidden_size % self.num_conv_pos_embedding_groups == 0, "wav2vec2 pos-conv groups")


@dataclass
class MelConfig:
    """Small log-mel + convolution front end for small, low-latency models."""

    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    channels: int = 256
    num_layers: int = 3
    out_dim: int = 256

    def validate(self) -> None:
        """Check the fields; raise :class:`ConfigError` naming the first bad one."""
        for name in ("n_fft", "hop_length", "n_mels", "channels", "num_layers", "out_dim"):
            _check(getattr(self, name) > 0, f"audio_encoder.mel.{name} must be positive")


@dataclass
class AudioEncoderConfig:
    """Which audio front end turns a 16 kHz window into features, and its settings."""

    type: Literal["wav2vec2", "mel"] = "wav2vec2"
    wav2vec2: Wav2Vec2Config = field(default_factory=Wav2Vec2Config)
    mel: MelConfig = field(default_factory=MelConfig)

    @property
    def out_dim(self) -> int:
        """Feature width that the generator's cross-attention consumes."""
        return self.wav2vec2.hidden_size if self.type == "wav2vec2" else self.mel.out_dim

    def validate(self) -> None:
        """Check the fields; raise :class:`ConfigError` naming the first bad one."""
        _check(
            self.type in ("wav2vec2", "mel"),
            f"audio_encoder.type must be 'wav2vec2' or 'mel', got {self.type!r}",
        )
        self.wav2vec2.validate()
        self.mel.validate()


@dataclass
class UniLSConfig:
    """Everything needed to rebuild a UniLS model; saved as ``config.json`` beside the weights.

    The presets :meth:`large` and :meth:`small` are the official "L" and "S" sizes.
    """

    codec: CodecConfig = field(default_factory=CodecConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    audio_encoder: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    sample_rate: int = SAMPLE_RATE
    fps: int = FPS
    #: Default sampling knobs of :meth:`unils.UniLS.generate` (:data:`SAMPLING_DEFAULTS`).
    temperature: float = SAMPLING_DEFAULTS["temperature"]
    top_p: float = SAMPLING_DEFAULTS["top_p"]
    cfg_scale: float = SAMPLING_DEFAULTS["cfg_scale"]
    #: Free text shown in logs and model cards.
    name: str = "unils"
    format_version: int = CONFIG_FORMAT_VERSION

    # ------------------------------------------------------------------ derived sizes
    @property
    def window_frames(self) -> int:
        """Motion frames generated per window (100 = 4 s at 25 fps)."""
        return self.codec.window

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per motion frame (640 at 16 kHz / 25 fps)."""
        return self.sample_rate // self.fps

    @property
    def window_samples(self) -> int:
        """Audio samples per window (64 000 for the official models)."""
        return self.window_frames * self.samples_per_frame

    # ------------------------------------------------------------------ presets
    @classmethod
    def large(cls) -> UniLSConfig:
        """The official default ("L") size: codec and generator 512 wide, 8 deep, 5 scales."""
        return cls(name="unils-large")

    @classmethod
    def small(cls) -> UniLSConfig:
        """The official "S" size: 384 wide, 6 deep, scales (1, 25, 50, 100)."""
        return cls(
            codec=CodecConfig(hidden_dim=384, depth=6, num_heads=6, scales=(1, 25, 50, 100)),
            generator=GeneratorConfig(embed_dim=384, depth=6, num_heads=6),
            name="unils-small",
        )

    @classmethod
    def demo(cls) -> UniLSConfig:
        """The bundled demo model's size: a few million parameters and the log-mel front end.

        Small enough to train on a CPU and to run many times faster than real time; not a substitute
        for the official models (see the demo model card).
        """
        return cls(
            codec=CodecConfig(hidden_dim=128, depth=2, num_heads=4, scales=(1, 5, 25, 50, 100)),
            generator=GeneratorConfig(embed_dim=128, depth=4, num_heads=4),
            audio_encoder=AudioEncoderConfig(
                type="mel", mel=MelConfig(n_mels=80, channels=128, num_layers=2, out_dim=128)
            ),
            name="unils-demo",
        )

    # ------------------------------------------------------------------ validation / IO
    def validate(self) -> UniLSConfig:
        """Check internal consistency; raise :class:`ConfigError` naming the bad field."""
        _check(
            self.format_version == CONFIG_FORMAT_VERSION,
            f"config format_version {self.format_version} is not supported by this unils "
            f"(expects {CONFIG_FORMAT_VERSION}); upgrade unils",
        )
        self.codec.validate()
        self.generator.validate()
        self.audio_encoder.validate()
        _check(self.sample_rate == SAMPLE_RATE, "sample_rate must be 16000 (models are trained at 16 kHz)")
        _check(self.fps > 0 and self.sample_rate % self.fps == 0, "fps must divide sample_rate")
        check_sampling(temperature=self.temperature, top_p=self.top_p, cfg_scale=self.cfg_scale)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return _to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UniLSConfig:
        """Build and validate a config from a dict; unknown or mistyped fields raise ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        return _from_dict(cls, data, "config").validate()

    def to_json(self) -> str:
        """The config as indented JSON text (what ``config.json`` holds)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> UniLSConfig:
        """Parse and validate ``config.json`` text; bad JSON or fields raise :class:`ConfigError`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``config.json`` (or any path) with this config."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> UniLSConfig:
        """Read a config written by :meth:`save`."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_json(fh.read())


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    return obj


def _from_dict(cls: type, data: dict[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown field(s) in {path}: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{path}.{name}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be an object, got {type(value).__name__}")
        return _from_dict(tp, value, path)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path} must be one of {typing.get_args(tp)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {type(value).__name__}")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp!r}")  # pragma: no cover - config schema bug
