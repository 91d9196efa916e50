"""The window engine: everything that happens to one 4 s window, for offline and streaming alike.

Offline [`unils.UniLS.generate`][unils.model.UniLS.generate] (and its batched forms), streaming sessions and
``unils bench`` all run windows through one [`WindowEngine`][unils.generation.WindowEngine], so they share
every number: the same options, the same padding, the same tokens and cache, the same random draws in the same
order.

- [`GenerationOptions`][unils.options.GenerationOptions] (in [`unils.options`][unils.options]) is the one
  options object; the engine resolves its sampling knobs into a [`Sampling`][unils.options.Sampling] per row.
- [`plan_windows`][unils.generation.plan_windows], [`pad_window`][unils.generation.pad_window],
  [`style_clip`][unils.generation.style_clip], [`prev_clip`][unils.generation.prev_clip],
  [`expand_seeds`][unils.options.expand_seeds] and [`per_person`][unils.options.per_person] are the planning
  rules.
- [`step`][unils.generation.step] is a pure function over an immutable
  [`ChunkState`][unils.generation.ChunkState]; [`step_many`][unils.generation.step_many] steps several states
  (sessions) as one batch, each row with its own sampling knobs and random generator.

Batch rows are people. With guidance (``cfg_scale > 1``) every row gets a twin unconditional row
(zero audio features, zero raw style, zero raw previous motion before the first window), exactly
as the official inference. Without guidance the unconditional rows are never computed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from . import levels
from .config import UniLSConfig
from .errors import ConfigError, MotionError, StreamError
from .graphs import StepGraphs
from .levels import WindowInputs
from .motion import Motion
from .nn.codec import MotionCodec
from .nn.generator import Generator
from .options import GenerationOptions, Sampling, expand_seeds, per_person
from .precision import Precision
from .sampling import RowKnobs, make_generator

if TYPE_CHECKING:
    from .motion import MotionLike

__all__ = [
    "GenerationOptions",
    "Sampling",
    "ChunkState",
    "WindowEngine",
    "WindowEvent",
    "step",
    "step_many",
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
    """The style clip of a motion: its first window. Raises [`MotionError`][unils.errors.MotionError] when it
    is shorter."""
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
def _generate_rows(
    codec: MotionCodec,
    generator: Generator,
    inputs: WindowInputs,
    generators: Sequence[torch.Generator],
    samplings: list[Sampling],
    dtype: torch.dtype,
    graphs: StepGraphs | None = None,
) -> tuple[Tensor, Tensor]:
    """The window of every row; rows may differ in sampling knobs and in being at their first window.
    With ``graphs`` (and the key/value cache) the window replays a recorded CUDA graph."""
    use_cache = samplings[0].use_cache
    if any(o.use_cache != use_cache for o in samplings):
        raise ConfigError("rows of one step must agree on use_cache: step them in separate batches")
    knobs = RowKnobs.of(
        [o.temperature for o in samplings],
        [o.cfg_scale for o in samplings],
        [o.top_p for o in samplings],
        inputs.prev_motion.device,
    )
    if use_cache and graphs is not None:
        recorded = graphs.run(inputs, knobs, generators, dtype)
        if recorded is not None:
            return recorded
    noise = levels.draw(generator, generators, inputs.prev_motion.device)
    return levels.window(codec, generator, inputs, knobs, noise, use_cache, dtype)


def step(
    codec: MotionCodec,
    generator: Generator,
    state: ChunkState,
    self_features: Tensor,
    other_features: Tensor,
    options: Sampling,
    dtype: torch.dtype | None = None,
    graphs: StepGraphs | None = None,
) -> tuple[Tensor, Tensor, ChunkState]:
    """Generate one window for every row.

    Args:
        codec: the motion codec (decodes bits, encodes conditioning clips).
        generator: the token generator.
        state: state after the previous window (see [`initial_state`][unils.generation.initial_state]).
        self_features: audio features of each row's own voice for this window [B, La, A].
        other_features: audio features of each row's partner for this window [B, La, A].
        options: the resolved sampling knobs
            ([`GenerationOptions.sampling`][unils.options.GenerationOptions.sampling]).
        dtype: compute dtype of the generator (default: its weights' dtype).
        graphs: replay the window as a recorded CUDA graph ([`StepGraphs`][unils.graphs.StepGraphs]).

    Returns:
        ``(motion [B, W, 108] float32, bits [B, N, C] int64, new_state)``.
    """
    b = state.batch
    inputs = WindowInputs(
        state.prev_motion,
        state.style_features,
        state.zero_features,
        [state.windows_done == 0] * b,
        self_features,
        other_features,
    )
    motion, bits = _generate_rows(
        codec,
        generator,
        inputs,
        state.generators,
        [options] * b,
        generator.sos_embed.dtype if dtype is None else dtype,
        graphs,
    )
    # Chaining: the decoded (unsmoothed) window is the next window's previous motion, for both branches.
    new_state = replace(state, prev_motion=motion, windows_done=state.windows_done + 1)
    return motion, bits, new_state


def step_many(
    codec: MotionCodec,
    generator: Generator,
    states: Sequence[ChunkState],
    self_features: Sequence[Tensor],
    other_features: Sequence[Tensor],
    options: Sequence[Sampling],
    dtype: torch.dtype | None = None,
    graphs: StepGraphs | None = None,
) -> list[tuple[Tensor, ChunkState]]:
    """One window for several states (e.g. sessions) at once, as one batch; each keeps its own knobs.

    The rows of all states run through the generator together; each row draws from its own random generator,
    so a state stepped here gives the frames it gives stepped alone with [`step`][unils.generation.step] (bit
    for bit where the device's kernels do not depend on the batch size: float32 on CPU; within the precision's
    drift elsewhere). States whose ``use_cache`` differs must be stepped in separate calls. ``graphs``: as in
    [`step`][unils.generation.step].

    Returns:
        ``(motion [B_i, W, 108], new_state)`` for each state, in order.
    """
    if not (len(states) == len(self_features) == len(other_features) == len(options)):
        raise ValueError("step_many needs one features pair and one options object per state")
    if not states:
        return []
    rows = [st.batch for st in states]
    cat = torch.cat
    inputs = WindowInputs(
        cat([st.prev_motion for st in states]),
        cat([st.style_features for st in states]),
        cat([st.zero_features for st in states]),
        [st.windows_done == 0 for st, n in zip(states, rows) for _ in range(n)],
        cat(list(self_features)),
        cat(list(other_features)),
    )
    motion, _bits = _generate_rows(
        codec,
        generator,
        inputs,
        [g for st in states for g in st.generators],
        [o for o, n in zip(options, rows) for _ in range(n)],
        generator.sos_embed.dtype if dtype is None else dtype,
        graphs,
    )
    out = []
    start = 0
    for st, n in zip(states, rows):
        m = motion[start : start + n]
        out.append((m, replace(st, prev_motion=m, windows_done=st.windows_done + 1)))
        start += n
    return out


# ---------------------------------------------------------------------------------------- the engine
@dataclass(frozen=True)
class WindowEvent:
    """What [`WindowEngine.run`][unils.generation.WindowEngine.run] reports after each window (for progress
    and benchmarks).

    Attributes:
        index: window index (0-based).
        windows: number of windows of the run.
        encode_s: seconds spent encoding audio for this window (0 when it was encoded earlier).
        step_s: seconds of [`step`][unils.generation.step] (generation and codec decoding) for this window.
        motion: the window's raw motion [B, W, 108] (before trimming and smoothing).
    """

    index: int
    windows: int
    encode_s: float
    step_s: float
    motion: Tensor


class WindowEngine:
    """Runs windows over the model's parts. Holds references to weights, never copies of them.

    One engine serves any number of offline calls and streaming sessions at once: all their state lives in the
    [`ChunkState`][unils.generation.ChunkState] each of them holds. The engine keeps only its precision record
    (immutable; replaced as a whole by [`UniLS.set_precision`][unils.model.UniLS.set_precision], which refuses
    while sessions are open), the sessions it serves, and a cache of the silent window's features.

    Args:
        config: the model's config (window sizes, sampling defaults).
        codec: the motion codec.
        generator: the token generator.
        audio_encoder: the audio front end (wav2vec2 or log-mel).
        precision: the number formats the weights are in (default: float32).
    """

    def __init__(
        self,
        config: UniLSConfig,
        codec: MotionCodec,
        generator: Generator,
        audio_encoder: nn.Module,
        precision: Precision | None = None,
    ) -> None:
        self.config = config
        self.codec = codec
        self.generator = generator
        self.audio_encoder = audio_encoder
        self._precision = precision or Precision("float32", "float32", "float32", reason="constructed")
        self._silence: dict[tuple[Any, ...], Tensor] = {}
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._graphs: StepGraphs | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Copies (copy.deepcopy of a model, pickling) get their own lock, no sessions, caches or recordings.
        state = dict(self.__dict__)
        state.pop("_lock"), state.pop("_sessions")
        state["_silence"] = {}
        state["_graphs"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._sessions = weakref.WeakSet()

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.codec.motion_mean.device

    @property
    def precision(self) -> Precision:
        """The number formats the weights compute in (an immutable record)."""
        return self._precision

    @property
    def audio_autocast(self) -> torch.dtype | None:
        """Autocast dtype of the audio encoder (None = it runs in its own dtype); part of
        [`precision`][unils.generation.WindowEngine.precision]."""
        return self._precision.autocast_dtype

    # ------------------------------------------------------------------ sessions and precision
    def attach(self, session: Any) -> None:
        """Count ``session`` as open (it holds state computed in this precision)."""
        with self._lock:
            self._sessions.add(session)

    def detach(self, session: Any) -> None:
        """Stop counting ``session`` (closed)."""
        with self._lock:
            self._sessions.discard(session)

    @property
    def open_sessions(self) -> int:
        """Streaming sessions open on this engine."""
        return len(self._sessions)

    def require_no_sessions(self, action: str) -> None:
        """Raise [`StreamError`][unils.errors.StreamError] when sessions are open (``action`` would change
        them).

        Raises:
            StreamError: sessions are open.
        """
        if self.open_sessions:
            raise StreamError(
                f"{action} would change the numbers under {self.open_sessions} open streaming session(s): "
                "close them first (session.close() or leave their with-blocks)"
            )

    def set_precision(self, precision: Precision) -> None:
        """Record the precision the weights were cast to (called by
        [`UniLS.set_precision`][unils.model.UniLS.set_precision]).

        Raises:
            StreamError: sessions are open.
        """
        self.require_no_sessions("changing the precision")
        self._precision = precision
        self._silence.clear()

    @property
    def graphs(self) -> StepGraphs | None:
        """The recorded CUDA-graph steps in use (None: steps run eagerly)."""
        return self._graphs

    def use_graphs(self, enabled: bool = True, *, max_rows: int = 256, capture: bool | None = None) -> None:
        """Replay steps from recorded CUDA graphs ([`StepGraphs`][unils.graphs.StepGraphs]), or stop.

        ``capture=False`` keeps the recorded-step bookkeeping but runs it eagerly (tests on a CPU).

        Raises:
            ConfigError: ``capture`` without a CUDA device, or a bad ``max_rows``.
            StreamError: sessions are open.
        """
        self.require_no_sessions("switching CUDA graphs")
        self._graphs = (
            StepGraphs(self.codec, self.generator, self.audio_encoder, max_rows=max_rows, capture=capture)
            if enabled
            else None
        )

    def options(
        self,
        options: GenerationOptions | Any = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        use_cache: bool = True,
    ) -> Sampling:
        """The resolved sampling knobs of ``options`` (or of the given knobs) against this model's config."""
        if isinstance(options, GenerationOptions):
            return options.sampling(self.config)
        return GenerationOptions.resolve(
            self.config, temperature=temperature, top_p=top_p, cfg_scale=cfg_scale, use_cache=use_cache
        )

    def clear_caches(self) -> None:
        """Forget cached features (after a change of device or compilation)."""
        self._silence.clear()

    # ------------------------------------------------------------------ audio
    @torch.inference_mode()
    def encode(self, windows: Tensor, batch_size: int = 8) -> Tensor:
        """Audio windows [K, window_samples] (16 kHz) -> features [K, La, A] float32, each window on its own."""
        enc_dtype = self._precision.audio_dtype
        autocast = self._precision.autocast_dtype

        def run(chunk: Tensor) -> Tensor:
            if autocast is not None:
                with torch.autocast(device_type=self.device.type, dtype=autocast):
                    return self.audio_encoder(chunk.to(enc_dtype)).float()
            return self.audio_encoder(chunk.to(enc_dtype)).float()

        graphs = self._graphs
        outs = []
        for start in range(0, windows.shape[0], batch_size):
            chunk = windows[start : start + batch_size].to(self.device, torch.float32)
            outs.append(run(chunk) if graphs is None else graphs.encode(run, chunk, self._precision))
        return torch.cat(outs)

    def silence(self) -> Tensor:
        """Features [La, A] of an all-zero window: the partner channel when there is no partner audio."""
        key = (self.device, self._precision)
        feats = self._silence.get(key)
        if feats is None:
            feats = self.encode(torch.zeros(1, self.config.window_samples))[0]
            self._silence[key] = feats
        return feats

    # ------------------------------------------------------------------ state
    def start_people(self, people: Sequence[GenerationOptions], skip_draws: int = 0) -> ChunkState:
        """[start][unils.generation.WindowEngine.start] for one options object per person (from
        [GenerationOptions.people][unils.options.GenerationOptions.people]): their seeds, styles and
        previous motions."""
        return self.start(
            [p.seed for p in people],  # type: ignore[misc]  # people() gives each one seed
            [p.style for p in people],
            [p.prev_motion for p in people],
            skip_draws=skip_draws,
        )

    def start(
        self,
        seeds: Sequence[int | None],
        styles: Sequence[MotionLike | None] | None = None,
        prev_motions: Sequence[MotionLike | None] | None = None,
        skip_draws: int = 0,
    ) -> ChunkState:
        """Fresh [`ChunkState`][unils.generation.ChunkState] for ``len(seeds)`` people (per-person style and
        previous motion).

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
        self, state: ChunkState, self_features: Tensor, other_features: Tensor, options: Sampling
    ) -> tuple[Tensor, ChunkState]:
        """One window for every row of ``state``; see [`step`][unils.generation.step]. Returns ``(motion,
        new_state)``."""
        if isinstance(options, GenerationOptions):
            options = options.sampling(self.config)
        motion, _bits, new_state = step(
            self.codec,
            self.generator,
            state,
            self_features,
            other_features,
            options,
            self._precision.dtype,
            self._graphs,
        )
        return motion, new_state

    def step_many(
        self,
        states: Sequence[ChunkState],
        self_features: Sequence[Tensor],
        other_features: Sequence[Tensor],
        options: Sequence[Sampling],
    ) -> list[tuple[Tensor, ChunkState]]:
        """One window for several states as one batch; see [`step_many`][unils.generation.step_many]."""
        return step_many(
            self.codec,
            self.generator,
            states,
            self_features,
            other_features,
            options,
            self._precision.dtype,
            self._graphs,
        )

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
        options: Sampling,
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
            state: from [`start`][unils.generation.WindowEngine.start], one row per person.
            options: sampling options.
            on_window: called after each window with a [`WindowEvent`][unils.generation.WindowEvent].
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
