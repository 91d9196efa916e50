"""The window engine: everything that happens to one 4 s window, for offline and streaming alike.

Offline :meth:`unils.UniLS.generate` (and its batched forms), streaming sessions and ``unils bench``
all run windows through one :class:`WindowEngine`, so they share every number: the same options,
the same padding, the same tokens and cache, the same random draws in the same order.

- :class:`GenerationOptions` resolves the sampling knobs against a config (defaults and validation
  live in :mod:`unils.config`, nowhere else).
- :func:`plan_windows`, :func:`pad_window`, :func:`style_clip`, :func:`prev_clip`, :func:`expand_seeds`
  and :func:`per_person` are the planning rules.
- :func:`step` is a pure function over an immutable :class:`ChunkState`.

Batch rows are people. With guidance (``cfg_scale > 1``) every row gets a twin unconditional row
(zero audio features, zero raw style, zero raw previous motion before the first window), exactly
as the official inference. Without guidance the unconditional rows are never computed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from .config import UniLSConfig, check_sampling
from .errors import MotionError
from .motion import Motion
from .nn.codec import MotionCodec
from .nn.generator import Generator
from .sampling import guided_logits, make_generator, sample_bits

if TYPE_CHECKING:
    from .motion import MotionLike

__all__ = [
    "GenerationOptions",
    "ChunkState",
    "WindowEngine",
    "WindowEvent",
    "step",
    "initial_state",
    "plan_windows",
    "frame_count",
    "pad_window",
    "pad_windows",
    "style_clip",
    "prev_clip",
    "expand_seeds",
    "per_person",
    "DEFAULT_LOOKAHEAD",
]

logger = logging.getLogger("unils")

#: Windows encoded ahead of the generator in offline runs: enough to batch the audio encoder well,
#: few enough that peak memory does not grow with the length of the audio.
DEFAULT_LOOKAHEAD = 8


# ---------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class GenerationOptions:
    """Sampling knobs of one generation (see :meth:`unils.UniLS.generate`).

    Build them with :meth:`resolve` to take the model's defaults; every value is checked against
    :data:`unils.config.SAMPLING_RANGES`.
    """

    temperature: float = 1.0
    top_p: float = 0.97
    cfg_scale: float = 1.5
    #: True: key/value cache across levels (fast path). False: the official full recomputation.
    use_cache: bool = True

    def __post_init__(self) -> None:
        check_sampling(temperature=self.temperature, top_p=self.top_p, cfg_scale=self.cfg_scale)

    @classmethod
    def resolve(
        cls,
        config: UniLSConfig,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        use_cache: bool = True,
    ) -> GenerationOptions:
        """Options from ``config``'s defaults, overridden by every argument that is not None.

        Raises:
            ConfigError: a knob outside its documented range (it subclasses ``ValueError``).
        """
        return cls(
            temperature=config.temperature if temperature is None else temperature,
            top_p=config.top_p if top_p is None else top_p,
            cfg_scale=config.cfg_scale if cfg_scale is None else cfg_scale,
            use_cache=bool(use_cache),
        )

    @property
    def guided(self) -> bool:
        """Whether classifier-free guidance runs (``cfg_scale > 1``)."""
        return self.cfg_scale > 1.0


# ---------------------------------------------------------------------------------------- planning
def frame_count(num_samples: int, samples_per_frame: int) -> int:
    """Motion frames for ``num_samples`` of audio: ``ceil(N / samples_per_frame)``, as the official inference."""
    return -(-int(num_samples) // samples_per_frame)


def plan_windows(num_samples: int, samples_per_frame: int, window_frames: int) -> tuple[int, int]:
    """(frames, windows) for ``num_samples`` of audio: frames = ceil(N / samples_per_frame)."""
    frames = frame_count(num_samples, samples_per_frame)
    return frames, math.ceil(frames / window_frames)


def pad_window(segment: np.ndarray, window_samples: int) -> np.ndarray:
    """One window of audio: ``segment`` cut to ``window_samples`` and zero-padded at the end."""
    out = np.zeros(window_samples, dtype=np.float32)
    seg = segment[:window_samples]
    out[: seg.shape[0]] = seg
    return out


def pad_windows(samples: np.ndarray, num_windows: int, window_samples: int, first: int = 0) -> Tensor:
    """Windows ``first .. first + num_windows`` of ``samples`` as [num_windows, window_samples], zero-padded."""
    start = first * window_samples
    return torch.from_numpy(
        np.stack(
            [pad_window(samples[start + k * window_samples :], window_samples) for k in range(num_windows)]
        )
    )


def _as_array(motion: MotionLike) -> np.ndarray:
    if isinstance(motion, Motion):
        return motion.to_array()
    return Motion.from_array(motion).to_array()


def style_clip(motion: MotionLike, window_frames: int) -> np.ndarray:
    """The style clip of a motion: its first window. Raises :class:`MotionError` when it is shorter."""
    arr = _as_array(motion)
    if arr.shape[0] < window_frames:
        raise MotionError(
            f"style needs at least {window_frames} frames (one window); got {arr.shape[0]}: pass a longer clip"
        )
    return np.ascontiguousarray(arr[:window_frames])


def prev_clip(motion: MotionLike | np.ndarray, window_frames: int) -> np.ndarray:
    """The previous-motion clip: the last window of ``motion``, left-padded with zeros as in training."""
    arr = motion if isinstance(motion, np.ndarray) and motion.ndim == 2 else _as_array(motion)
    arr = arr[-window_frames:]
    out = np.zeros((window_frames, arr.shape[1]), np.float32)
    out[window_frames - arr.shape[0] :] = arr
    return out


def expand_seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    """One seed per person: ``s`` means ``s, s + 1, ...``; a sequence gives each its own; None is random."""
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return [int(seed) + i for i in range(n)]
    if isinstance(seed, (str, bytes, bool)) or not isinstance(seed, Sequence):
        raise ValueError(f"seed must be an int, a sequence of ints or None, got {seed!r}")
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"{n} people but {len(seeds)} seeds: pass one seed per person, or one int")
    return [None if s is None else int(s) for s in seeds]


def per_person(value: Any, n: int, name: str) -> list[Any]:
    """A per-person option: a tuple/list gives one value per person; anything else is shared by all."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(
                f"{name}: {n} people but {len(value)} values: pass one per person, or one for all"
            )
        return list(value)
    return [value] * n


# ---------------------------------------------------------------------------------------- state + step
@dataclass(frozen=True)
class ChunkState:
    """What one window hands to the next, for B people (rows). Holds no model weights; never mutated.

    Attributes:
        prev_motion: raw motion [B, W, 108] of the previous window (zeros or a given clip at first).
        style_features: codec sum features [B, W, C] of each row's style clip (zeros = no style).
        zero_features: codec sum features of all-zero motion [B, W, C] (the unconditional branch).
        generators: one random generator per row (their states advance as windows are drawn).
        windows_done: number of windows generated so far.
    """

    prev_motion: Tensor
    style_features: Tensor
    zero_features: Tensor
    generators: tuple[torch.Generator, ...]
    windows_done: int = 0

    @property
    def batch(self) -> int:
        """Number of rows (people)."""
        return self.prev_motion.shape[0]

    def with_prev_motion(self, prev_motion: Tensor) -> ChunkState:
        """The same state conditioned on another previous window (low-latency streaming re-chains)."""
        return replace(self, prev_motion=prev_motion.to(self.prev_motion))


@torch.inference_mode()
def initial_state(
    codec: MotionCodec,
    generators: Sequence[torch.Generator],
    style: Tensor | None = None,
    prev_motion: Tensor | None = None,
) -> ChunkState:
    """State before the first window. ``style``/``prev_motion``: raw motion [B, W, 108] or None (zeros)."""
    b = len(generators)
    w, d = codec.window, codec.config.motion_dim
    device = codec.motion_mean.device
    zeros = torch.zeros(b, w, d, device=device)
    # Zeros in raw motion space pushed through the codec, not zero features.
    zero_features = codec.sum_features(zeros)
    style_features = (
        zero_features if style is None else codec.sum_features(style.to(device=device, dtype=torch.float32))
    )
    prev = zeros if prev_motion is None else prev_motion.to(device=device, dtype=torch.float32)
    return ChunkState(prev, style_features, zero_features, tuple(generators))


@torch.inference_mode()
def step(
    codec: MotionCodec,
    generator: Generator,
    state: ChunkState,
    self_features: Tensor,
    other_features: Tensor,
    options: GenerationOptions,
) -> tuple[Tensor, Tensor, ChunkState]:
    """Generate one window for every row.

    Args:
        codec: the motion codec (decodes bits, encodes conditioning clips).
        generator: the token generator.
        state: state after the previous window (see :func:`initial_state`).
        self_features: audio features of each row's own voice for this window [B, La, A].
        other_features: audio features of each row's partner for this window [B, La, A].
        options: sampling options.

    Returns:
        ``(motion [B, W, 108] float32, bits [B, N, C] int64, new_state)``.
    """
    b = state.batch
    if self_features.shape[0] != b or other_features.shape[0] != b:
        raise ValueError(
            f"features batch {self_features.shape[0]}/{other_features.shape[0]} != state batch {b}"
        )
    dtype = generator.sos_embed.dtype
    quantizer = codec.quantizer
    prev_features = codec.sum_features(state.prev_motion)
    style_features, self_f, other_f = state.style_features, self_features, other_features
    if options.guided:
        zero = state.zero_features
        uncond_prev = zero if state.windows_done == 0 else prev_features
        style_features = torch.cat([style_features, zero])
        prev_features = torch.cat([prev_features, uncond_prev])
    prefix = generator.condition_tokens(style_features.to(dtype), prev_features.to(dtype))

    if options.use_cache:
        audio = generator.audio_context(self_f, other_f)
        if options.guided:
            # Zero audio features: the same keys/values for every window, computed once per model.
            null = generator.null_audio_context(b, self_f.shape[1], self_f.device)
            audio = generator.concat_contexts(audio, null)
        cache = generator.prefill(prefix, audio)
    elif options.guided:
        self_f = torch.cat([self_f, torch.zeros_like(self_f)])
        other_f = torch.cat([other_f, torch.zeros_like(other_f)])
    current: list[Tensor] = []
    acc: Tensor | None = None
    next_inputs: Tensor | None = None
    level_bits = []
    num_levels = len(generator.scales)
    for level in range(num_levels):
        tokens = generator.level_tokens(level, None if next_inputs is None else next_inputs.to(dtype), b)
        if options.guided:
            tokens = torch.cat([tokens, tokens])
        if options.use_cache:
            hidden = generator.extend(tokens, level, cache, audio)
        else:
            current.append(tokens)
            hidden = generator.forward_reference(prefix, torch.cat(current, dim=1), self_f, other_f)
            hidden = hidden[:, generator.offsets[level] :]
        logits = guided_logits(generator.logits(hidden), b, options.temperature, options.cfg_scale)
        bits = sample_bits(logits, state.generators, options.top_p)
        level_bits.append(bits)
        if level < num_levels - 1:
            acc = quantizer.accumulate(acc, bits)
            next_inputs = quantizer.next_level_inputs(acc, level + 1)
    all_bits = torch.cat(level_bits, dim=1)
    motion = codec.decode(all_bits)
    # Chaining: the decoded (unsmoothed) window is the next window's previous motion, for both branches.
    new_state = replace(state, prev_motion=motion, windows_done=state.windows_done + 1)
    return motion, all_bits, new_state


# ---------------------------------------------------------------------------------------- the engine
@dataclass(frozen=True)
class WindowEvent:
    """What :meth:`WindowEngine.run` reports after each window (for progress and benchmarks).

    Attributes:
        index: window index (0-based).
        windows: number of windows of the run.
        encode_s: seconds spent encoding audio for this window (0 when it was encoded earlier).
        step_s: seconds of :func:`step` (generation and codec decoding) for this window.
        motion: the window's raw motion [B, W, 108] (before trimming and smoothing).
    """

    index: int
    windows: int
    encode_s: float
    step_s: float
    motion: Tensor


class WindowEngine:
    """Runs windows over the model's parts. Holds references to weights, never copies of them.

    One engine serves any number of offline calls and streaming sessions at once: all their state
    lives in the :class:`ChunkState` each of them holds. The engine keeps only the audio precision
    setting and a cache of the silent window's features.

    Args:
        config: the model's config (window sizes, sampling defaults).
        codec: the motion codec.
        generator: the token generator.
        audio_encoder: the audio front end (wav2vec2 or log-mel).
    """

    def __init__(
        self, config: UniLSConfig, codec: MotionCodec, generator: Generator, audio_encoder: nn.Module
    ) -> None:
        self.config = config
        self.codec = codec
        self.generator = generator
        self.audio_encoder = audio_encoder
        #: Autocast dtype of the audio encoder (None = run it in its own dtype).
        self.audio_autocast: torch.dtype | None = None
        self._silence: dict[tuple[Any, ...], Tensor] = {}

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.codec.motion_mean.device

    def options(
        self,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        use_cache: bool = True,
    ) -> GenerationOptions:
        """:meth:`GenerationOptions.resolve` against this model's config."""
        return GenerationOptions.resolve(
            self.config, temperature=temperature, top_p=top_p, cfg_scale=cfg_scale, use_cache=use_cache
        )

    def clear_caches(self) -> None:
        """Forget cached features (after a change of precision, device or compilation)."""
        self._silence.clear()

    # ------------------------------------------------------------------ audio
    @torch.inference_mode()
    def encode(self, windows: Tensor, batch_size: int = 8) -> Tensor:
        """Audio windows [K, window_samples] (16 kHz) -> features [K, La, A] float32, each window on its own."""
        enc_dtype = next(self.audio_encoder.parameters()).dtype
        outs = []
        for start in range(0, windows.shape[0], batch_size):
            chunk = windows[start : start + batch_size].to(self.device)
            if self.audio_autocast is not None:
                with torch.autocast(device_type=self.device.type, dtype=self.audio_autocast):
                    feats = self.audio_encoder(chunk.to(enc_dtype))
            else:
                feats = self.audio_encoder(chunk.to(enc_dtype))
            outs.append(feats.float())
        return torch.cat(outs)

    def silence(self) -> Tensor:
        """Features [La, A] of an all-zero window: the partner channel when there is no partner audio."""
        key = (self.device, next(self.audio_encoder.parameters()).dtype, self.audio_autocast)
        feats = self._silence.get(key)
        if feats is None:
            feats = self.encode(torch.zeros(1, self.config.window_samples))[0]
            self._silence[key] = feats
        return feats

    # ------------------------------------------------------------------ state
    def start(
        self,
        seeds: Sequence[int | None],
        styles: Sequence[MotionLike | None] | None = None,
        prev_motions: Sequence[MotionLike | None] | None = None,
        skip_draws: int = 0,
    ) -> ChunkState:
        """Fresh :class:`ChunkState` for ``len(seeds)`` people (per-person style and previous motion).

        ``skip_draws`` advances every person's generator by that many draws first (used to
        reproduce the official pipeline's random stream, see ``official_rng``).
        """
        n = len(seeds)
        w, d = self.config.window_frames, self.config.codec.motion_dim

        def stack(items: Sequence[Any] | None, clip: Callable[[Any, int], np.ndarray]) -> Tensor | None:
            if items is None or all(m is None for m in items):
                return None
            if len(items) != n:
                raise ValueError(f"{n} people but {len(items)} clips")
            return torch.from_numpy(
                np.stack([np.zeros((w, d), np.float32) if m is None else clip(m, w) for m in items])
            )

        gens = [make_generator(s, self.device) for s in seeds]
        for gen in gens:
            for _ in range(skip_draws):
                torch.rand((), generator=gen, device=gen.device)
        return initial_state(self.codec, gens, stack(styles, style_clip), stack(prev_motions, prev_clip))

    def step(
        self, state: ChunkState, self_features: Tensor, other_features: Tensor, options: GenerationOptions
    ) -> tuple[Tensor, ChunkState]:
        """One window for every row of ``state``; see :func:`step`. Returns ``(motion, new_state)``."""
        motion, _bits, new_state = step(
            self.codec, self.generator, state, self_features, other_features, options
        )
        return motion, new_state

    # ------------------------------------------------------------------ whole runs
    def _features(
        self, channels: Sequence[np.ndarray], windows: int, lookahead: int | None
    ) -> Iterator[tuple[Tensor, float]]:
        """Yield (features [C, La, A], encode seconds) window by window, encoding ``lookahead`` at a time."""
        group = windows if lookahead is None else max(1, int(lookahead))
        ws = self.config.window_samples
        for first in range(0, windows, group):
            count = min(group, windows - first)
            t0 = time.perf_counter()
            batch = torch.cat([pad_windows(ch, count, ws, first) for ch in channels])
            feats = self.encode(batch)
            feats = feats.view(len(channels), count, *feats.shape[1:])
            spent = time.perf_counter() - t0
            for k in range(count):
                yield feats[:, k], spent if k == 0 else 0.0

    @torch.inference_mode()
    def run(
        self,
        channels: Sequence[np.ndarray],
        rows: Sequence[tuple[int, int | None]],
        state: ChunkState,
        options: GenerationOptions,
        *,
        on_window: Callable[[WindowEvent], None] | None = None,
        progress: bool = False,
        lookahead: int | None = DEFAULT_LOOKAHEAD,
    ) -> np.ndarray:
        """Generate every window of ``channels`` for each row; returns raw motion [B, frames_padded, 108].

        Args:
            channels: 16 kHz mono audio, one array per voice (the longest sets the number of windows).
            rows: one ``(own channel, partner channel or None)`` per person of ``state``. Each channel
                is encoded once and serves every row that uses it.
            state: from :meth:`start`, one row per person.
            options: sampling options.
            on_window: called after each window with a :class:`WindowEvent`.
            progress: show a progress bar over windows.
            lookahead: windows encoded ahead of the generator (None: all at once). Features are the
                same either way; a bound keeps peak memory flat on long audio.
        """
        if len(rows) != state.batch:
            raise ValueError(f"{len(rows)} rows but the state has {state.batch} people")
        longest = max(ch.shape[0] for ch in channels)
        _, windows = plan_windows(longest, self.config.samples_per_frame, self.config.window_frames)
        silence = self.silence() if any(o is None for _, o in rows) else None
        bar = None
        if progress:
            from huggingface_hub.utils import tqdm

            bar = tqdm(total=windows, desc="unils", unit="window")
        out = []
        sync = on_window is not None and self.device.type == "cuda"
        for k, (feats, enc_s) in enumerate(self._features(channels, windows, lookahead)):
            t0 = time.perf_counter()
            self_f = feats[[s for s, _ in rows]]
            other_f = torch.stack([feats[o] if o is not None else silence for _, o in rows])  # type: ignore[misc]
            motion, state = self.step(state, self_f, other_f, options)
            if sync:
                torch.cuda.synchronize(self.device)
            out.append(motion.float().cpu())
            if on_window is not None:
                on_window(WindowEvent(k, windows, enc_s, time.perf_counter() - t0, motion))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return torch.cat(out, dim=1).numpy()
