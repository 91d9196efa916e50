"""Streaming sessions: feed audio blocks as they arrive, get motion frames as soon as they are final.

A :class:`StreamSession` holds all per-conversation state (audio buffers, the chunk state, random
generators, the smoothing tail, latency statistics); the model holds weights only, so one model can
serve many sessions from many threads.

Two modes:

* exact (default, ``hop_frames=None``): a window is generated once its whole 4 s of audio has
  arrived, exactly as offline :meth:`~unils.UniLS.generate` does. Frames equal offline generation
  for the same audio and seed. Algorithmic latency: one window (4 s) + the smoothing lookahead.
* low latency (``hop_frames=h < window``): every ``h`` frames of new audio, the window starting at
  the first uncommitted frame is generated with the audio that has arrived (the rest zero-padded,
  as offline pads the last window) and only its first ``h`` frames are committed; the next window
  is conditioned on the last 100 committed frames. Latency ``h`` frames + lookahead, at ``window/h``
  times the compute, with some drift from the offline result (measured in ``benchmarks/``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .audio import AudioInput, Resampler, to_mono_float32
from .errors import AudioError, StreamError
from .generation import WindowEngine, expand_seeds, frame_count, pad_window, per_person, prev_clip
from .motion import Motion
from .smoothing import StreamingSavgol

if TYPE_CHECKING:
    from .motion import MotionLike

__all__ = ["StreamSession", "LatencyStats"]

logger = logging.getLogger("unils")


@dataclass(frozen=True)
class LatencyStats:
    """Latency figures of a session so far.

    Attributes:
        algorithmic_latency_s: audio that must arrive after a frame's time before that frame is final.
        steps: window steps run.
        step_p50_s: median compute time of one step (encoding + generation + decoding).
        step_p95_s: 95th percentile of the same.
        audio_s: audio received so far (seconds).
        compute_s: total compute time spent in steps.
        real_time_factor: compute time / audio time (below 1 keeps up with live audio).
    """

    algorithmic_latency_s: float
    steps: int
    step_p50_s: float
    step_p95_s: float
    audio_s: float
    compute_s: float
    real_time_factor: float


class StreamSession:
    """A live, stateful generation session (one person, or both people of a call).

    Create it with :meth:`unils.UniLS.stream`. Use it as a context manager or call :meth:`close`.

    Args:
        engine: the shared model's :class:`~unils.generation.WindowEngine` (``model.engine``; a
            :class:`~unils.UniLS` is accepted too).
        partner: whether partner audio will be pushed (False = the person talks to silence).
        both: generate both people (requires ``partner``); :meth:`push` then returns a pair.
        sample_rate: rate of the pushed audio; other than 16 kHz is resampled on the fly.
        seed: seed (``both``: ``seed`` and ``seed + 1``, or a pair, as :meth:`~unils.UniLS.generate_both`).
        temperature: sampling temperature (default from the model config).
        top_p: nucleus threshold (default from the model config).
        cfg_scale: classifier-free guidance scale (default from the model config).
        smooth: Savitzky-Golay smoothing with 4 frames of lookahead (equals offline smoothing).
        hop_frames: None for exact mode, or the low-latency hop in frames (1 .. window).
        style: optional style clip (a pair for ``both``), as for :meth:`~unils.UniLS.generate`.
        prev_motion: optional motion preceding the audio (a pair for ``both``).
        use_cache: key/value caching across scales.
    """

    def __init__(
        self,
        engine: WindowEngine | Any,
        *,
        partner: bool = True,
        both: bool = False,
        sample_rate: int = 16000,
        seed: int | tuple[int | None, int | None] | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        smooth: bool = True,
        hop_frames: int | None = None,
        style: MotionLike | tuple[MotionLike | None, MotionLike | None] | None = None,
        prev_motion: MotionLike | tuple[MotionLike | None, MotionLike | None] | None = None,
        use_cache: bool = True,
    ) -> None:
        if not isinstance(engine, WindowEngine):
            engine = getattr(engine, "engine", None)
            if not isinstance(engine, WindowEngine):
                raise TypeError("StreamSession needs a model's engine: open sessions with model.stream()")
        cfg = engine.config
        if both and not partner:
            raise ValueError("both=True needs partner audio: create the session with partner=True")
        window = cfg.window_frames
        if hop_frames is not None and not (1 <= int(hop_frames) <= window):
            raise ValueError(
                f"hop_frames must be between 1 and {window} (or None for exact mode), got {hop_frames}"
            )
        if int(sample_rate) <= 0:
            raise ValueError(
                f"sample_rate must be a positive number of samples per second, got {sample_rate}"
            )
        self.engine = engine
        self.partner = partner
        self.both = both
        self.sample_rate = int(sample_rate)
        self.hop = window if hop_frames is None else int(hop_frames)
        self.smooth = smooth
        self.options = engine.options(
            temperature=temperature, top_p=top_p, cfg_scale=cfg_scale, use_cache=use_cache
        )
        n_people = 2 if both else 1
        self._seeds = expand_seeds(seed, n_people)
        self._styles = per_person(style, n_people, "style")
        self._prevs = per_person(prev_motion, n_people, "prev_motion")
        self._fps = float(cfg.fps)
        self._spf = cfg.samples_per_frame
        self._window = window
        self._window_samples = cfg.window_samples
        self._lock = threading.Lock()
        self._closed = False
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Forget all audio and motion: the next push starts a new conversation (same seed)."""
        n_people = 2 if self.both else 1
        rate = self.engine.config.sample_rate
        self._state = self.engine.start(self._seeds, self._styles, self._prevs)
        channels = 2 if self.partner else 1
        self._resamplers = [
            Resampler(self.sample_rate, rate) if self.sample_rate != rate else None for _ in range(channels)
        ]
        self._buffers = [np.zeros(0, np.float32) for _ in range(channels)]
        self._received = [0 for _ in range(channels)]  # samples (16 kHz) received per channel
        self._buffer_start = 0  # sample index of buffers[..][0]
        self._committed = 0  # frames committed (before smoothing)
        # Low-latency mode only: the last `window` committed frames per person (unsmoothed), starting
        # from the given previous motion, so that re-chaining sees what preceded the audio.
        self._history = self._state.prev_motion.float().cpu().numpy()
        if all(p is None for p in self._prevs):
            self._history = self._history[:, :0]
        self._smoothers = [StreamingSavgol() for _ in range(n_people)] if self.smooth else None
        self._emitted = 0
        self._step_times: list[float] = []
        self._flushed = False

    def close(self) -> None:
        """Release buffers; further pushes raise :class:`~unils.errors.StreamError`."""
        self._closed = True
        self._buffers = []
        self._history = np.zeros((0, 0, 0), np.float32)

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ properties
    @property
    def algorithmic_latency_s(self) -> float:
        """Seconds of audio that must arrive after a frame's time before the frame is final."""
        lookahead = StreamingSavgol().lookahead if self.smooth else 0
        return (self.hop + lookahead) / self._fps

    @property
    def frames_emitted(self) -> int:
        """Frames returned so far by :meth:`push` and :meth:`flush`."""
        return self._emitted

    @property
    def buffered_samples(self) -> int:
        """Audio samples (16 kHz, per channel, the longest channel) the session holds for future windows.

        At most about one window: audio no future window needs is dropped, so long streams keep a
        flat memory footprint.
        """
        return max((b.shape[0] for b in self._buffers), default=0)

    def stats(self) -> LatencyStats:
        """Latency and real-time figures measured so far."""
        times = np.asarray(self._step_times) if self._step_times else np.zeros(1)
        audio_s = max(self._received) / self.engine.config.sample_rate if self._received else 0.0
        compute = float(np.sum(self._step_times)) if self._step_times else 0.0
        return LatencyStats(
            algorithmic_latency_s=self.algorithmic_latency_s,
            steps=len(self._step_times),
            step_p50_s=float(np.percentile(times, 50)),
            step_p95_s=float(np.percentile(times, 95)),
            audio_s=audio_s,
            compute_s=compute,
            real_time_factor=compute / audio_s if audio_s > 0 else 0.0,
        )

    # ------------------------------------------------------------------ audio in
    def _prepare(self, block: AudioInput, name: str) -> np.ndarray:
        if isinstance(block, (str, bytes)) or hasattr(block, "__fspath__"):
            raise AudioError(f"{name}: push audio samples (numpy array or tensor), not a path")
        # Same validation as offline loading (dtype, NaN, channels); blocks may be any length.
        return to_mono_float32(block, name)

    def push(
        self, audio: AudioInput, partner_audio: AudioInput | None = None
    ) -> Motion | tuple[Motion, Motion]:
        """Add a block of audio (any size) and return the motion frames that became final.

        Args:
            audio: the next samples of the person's voice (1-D or [channels, samples] array/tensor).
            partner_audio: the next samples of the partner's voice (required when the session was
                opened with ``partner=True``; blocks of the two may differ in length).

        Returns:
            A :class:`~unils.Motion` (possibly with zero frames), or a pair for ``both=True`` sessions.
        """
        with self._lock:
            self._check_open()
            if self.partner and partner_audio is None:
                raise ValueError(
                    "this session expects partner_audio with every push (open it with partner=False otherwise)"
                )
            if not self.partner and partner_audio is not None:
                raise ValueError("this session was opened with partner=False; pass only audio")
            blocks: list[AudioInput] = [audio] if partner_audio is None else [audio, partner_audio]
            for i, blk in enumerate(blocks):
                x = self._prepare(blk, "audio" if i == 0 else "partner_audio")
                resampler = self._resamplers[i]
                if resampler is not None and x.size:
                    x = resampler.push(x)
                self._buffers[i] = np.concatenate([self._buffers[i], x])
                self._received[i] += x.shape[0]
            out = []
            # A hop is ready when every channel has the audio of its frames.
            while min(self._received) >= (self._committed + self.hop) * self._spf:
                out.append(self._run(self.hop))
            return self._emit(out, final=False)

    def flush(self) -> Motion | tuple[Motion, Motion]:
        """End of audio: generate the rest (last window zero-padded) and return all remaining frames."""
        with self._lock:
            self._check_open()
            if self._flushed:
                return self._emit([], final=False)
            for i, res in enumerate(self._resamplers):
                if res is not None:
                    tail = res.flush()
                    self._buffers[i] = np.concatenate([self._buffers[i], tail])
                    self._received[i] += tail.shape[0]
            frames = frame_count(max(self._received), self._spf)
            out = []
            while self._committed < frames:
                out.append(self._run(min(self.hop, frames - self._committed)))
            self._flushed = True
            return self._emit(out, final=True)

    def _check_open(self) -> None:
        if self._closed:
            raise StreamError("this session is closed; open a new one with model.stream()")
        if getattr(self, "_flushed", False):
            raise StreamError("this session was flushed; call reset() to start a new conversation")

    # ------------------------------------------------------------------ the step
    def _run(self, commit: int) -> np.ndarray:
        t0 = time.perf_counter()
        engine = self.engine
        start = self._committed * self._spf - self._buffer_start
        windows = np.stack([pad_window(buf[start:], self._window_samples) for buf in self._buffers])
        feats = engine.encode(torch.from_numpy(windows))
        own = feats[0]
        other = feats[1] if self.partner else engine.silence()
        if self.both:
            self_f, other_f = torch.stack([own, other]), torch.stack([other, own])
        else:
            self_f, other_f = own[None], other[None]
        motion, state = engine.step(self._state, self_f, other_f, self.options)
        motion_np = motion.float().cpu().numpy()[:, :commit]
        self._committed += commit
        if self.hop < self._window:
            # Low-latency chaining: the next window is conditioned on the last `window` committed frames.
            self._history = np.concatenate([self._history, motion_np], axis=1)[:, -self._window :]
            prev = np.stack([prev_clip(h, self._window) for h in self._history])
            state = state.with_prev_motion(torch.from_numpy(prev))
        self._state = state
        # Drop audio that no future window can need.
        drop = self._committed * self._spf - self._buffer_start
        if drop > 0:
            self._buffers = [b[drop:] for b in self._buffers]
            self._buffer_start += drop
        self._step_times.append(time.perf_counter() - t0)
        return motion_np

    def _emit(self, pieces: list[np.ndarray], final: bool) -> Motion | tuple[Motion, Motion]:
        n_people = 2 if self.both else 1
        d = self.engine.config.codec.motion_dim
        raw = np.concatenate(pieces, axis=1) if pieces else np.zeros((n_people, 0, d), np.float32)
        people = []
        for i in range(n_people):
            frames = raw[i]
            if self._smoothers is not None:
                frames = self._smoothers[i].push(frames)
                if final:
                    frames = np.concatenate([frames, self._smoothers[i].flush()])
            people.append(Motion.from_array(frames, fps=self._fps))
        self._emitted += len(people[0])
        return (people[0], people[1]) if self.both else people[0]
