"""Streaming sessions: feed audio blocks as they arrive, get motion frames as soon as they are final.

A [`StreamSession`][unils.streaming.StreamSession] holds all per-conversation state (audio buffers, the chunk
state, random generators, the smoothing tail, latency statistics); the model holds weights only, so one model
can serve many sessions from many threads.

Two modes:

* exact (default, ``hop_frames=None``): a window is generated once its whole 4 s of audio has
  arrived, exactly as offline [`generate`][unils.model.UniLS.generate] does. Frames equal offline generation
  for the same audio and seed. Algorithmic latency: one window (4 s) + the smoothing lookahead.
* low latency (``hop_frames=h < window``): every ``h`` frames of new audio, the window starting at
  the first uncommitted frame is generated with the audio that has arrived (the rest zero-padded,
  as offline pads the last window) and only its first ``h`` frames are committed; the next window
  is conditioned on the last 100 committed frames. Latency ``h`` frames + lookahead, at ``window/h``
  times the compute, with some drift from the offline result (measured in ``benchmarks/``).

Many sessions in one process share batched steps through a [`SessionGroup`][unils.streaming.SessionGroup]
(``model.stream_group()``): each session is fed on its own, and ``group.step()`` runs the windows that
are ready in all of them as one batch.
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
from .errors import AudioError, ConfigError, StreamError
from .generation import WindowEngine, frame_count, pad_window, prev_clip
from .motion import Motion
from .options import GenerationOptions, merge_options
from .smoothing import StreamingSavgol

if TYPE_CHECKING:
    from .generation import ChunkState
    from .options import Sampling

__all__ = ["StreamSession", "SessionGroup", "LatencyStats"]

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

    Create it with [UniLS.stream][unils.UniLS.stream] (or [SessionGroup.open][unils.SessionGroup.open]).
    Use it as a context manager or call [close][unils.StreamSession.close].

    Args:
        engine: the shared model's [WindowEngine][unils.generation.WindowEngine] (``model.engine``; a
            [UniLS][unils.UniLS] is accepted too).
        options: the [GenerationOptions][unils.GenerationOptions] of the session (for ``both``: ``seed``,
            ``style`` and ``prev_motion`` per person as in [generate_both][unils.UniLS.generate_both]).
        partner: whether partner audio will be pushed (False = the person talks to silence).
        both: generate both people (requires ``partner``); [push][unils.StreamSession.push] then returns a
            pair.
        sample_rate: rate of the pushed audio; other than 16 kHz is resampled on the fly.
        hop_frames: None for exact mode, or the low-latency hop in frames (1 .. window).
        **overrides: fields of [GenerationOptions][unils.GenerationOptions] (override ``options``).

    Raises:
        ConfigError: a bad option, ``both`` without ``partner``, a bad ``hop_frames`` or ``sample_rate``.
    """

    def __init__(
        self,
        engine: WindowEngine | Any,
        *,
        options: GenerationOptions | Any = None,
        partner: bool = True,
        both: bool = False,
        sample_rate: int = 16000,
        hop_frames: int | None = None,
        **overrides: Any,
    ) -> None:
        if not isinstance(engine, WindowEngine):
            engine = getattr(engine, "engine", None)
            if not isinstance(engine, WindowEngine):
                raise TypeError("StreamSession needs a model's engine: open sessions with model.stream()")
        cfg = engine.config
        opts = merge_options(options, overrides)
        if both and not partner:
            raise ConfigError("both=True needs partner audio: create the session with partner=True")
        window = cfg.window_frames
        if hop_frames is not None and (
            isinstance(hop_frames, bool)
            or not isinstance(hop_frames, (int, np.integer))
            or not 1 <= int(hop_frames) <= window
        ):
            raise ConfigError(
                f"hop_frames must be an int between 1 and {window} (or None for exact mode), got {hop_frames!r}"
            )
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, (int, np.integer))
            or sample_rate <= 0
        ):
            raise ConfigError(
                f"sample_rate must be a positive number of samples per second, got {sample_rate!r}"
            )
        self.engine = engine
        self.partner = partner
        self.both = both
        self.sample_rate = int(sample_rate)
        self.hop = window if hop_frames is None else int(hop_frames)
        #: The session's [GenerationOptions][unils.GenerationOptions].
        self.options = opts
        self.smooth = bool(opts.smooth)
        #: The resolved sampling knobs every step of this session uses.
        self.sampling: Sampling = opts.sampling(cfg)
        n_people = 2 if both else 1
        self._people = opts.people(n_people)
        self._fps = float(cfg.fps)
        self._spf = cfg.samples_per_frame
        self._window = window
        self._window_samples = cfg.window_samples
        self._lock = threading.RLock()
        self._closed = False
        self.reset()
        engine.attach(self)

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Forget all audio and motion: the next push starts a new conversation (same seed)."""
        n_people = 2 if self.both else 1
        rate = self.engine.config.sample_rate
        self._state = self.engine.start_people(self._people)
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
        if all(p.prev_motion is None for p in self._people):
            self._history = self._history[:, :0]
        self._smoothers = [StreamingSavgol() for _ in range(n_people)] if self.smooth else None
        self._emitted = 0
        self._step_times: list[float] = []
        self._flushed = False
        self._pending: list[np.ndarray] = []

    def close(self) -> None:
        """Release buffers; further pushes raise [StreamError][unils.StreamError]."""
        self._closed = True
        self._buffers = []
        self._history = np.zeros((0, 0, 0), np.float32)
        self._pending = []
        self.engine.detach(self)

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ properties
    @property
    def closed(self) -> bool:
        """Whether [close][unils.StreamSession.close] was called."""
        return self._closed

    @property
    def algorithmic_latency_s(self) -> float:
        """Seconds of audio that must arrive after a frame's time before the frame is final."""
        lookahead = StreamingSavgol().lookahead if self.smooth else 0
        return (self.hop + lookahead) / self._fps

    @property
    def frames_emitted(self) -> int:
        """Frames returned so far by [push][unils.StreamSession.push] and
        [flush][unils.StreamSession.flush]."""
        return self._emitted

    @property
    def frames_committed(self) -> int:
        """Frames generated so far (before the smoothing lookahead holds the last few back)."""
        return self._committed

    @property
    def buffered_samples(self) -> int:
        """Audio samples (16 kHz, per channel, the longest channel) the session holds for future windows.

        At most about one window plus what arrived ahead of it: audio no future window needs is
        dropped, so long streams keep a flat memory footprint.
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

    def feed(self, audio: AudioInput, partner_audio: AudioInput | None = None) -> None:
        """Add a block of audio (any size) without generating: a [SessionGroup][unils.SessionGroup]'s
        ``step()`` (or the next [push][unils.StreamSession.push]) generates what became ready.

        Raises:
            StreamError: the session is closed or flushed.
            AudioError: a malformed block, or partner audio missing / unexpected for this session.
        """
        with self._lock:
            self._check_open()
            if self.partner and partner_audio is None:
                raise AudioError(
                    "this session expects partner_audio with every push (open it with partner=False otherwise)"
                )
            if not self.partner and partner_audio is not None:
                raise AudioError("this session was opened with partner=False; pass only audio")
            blocks: list[AudioInput] = [audio] if partner_audio is None else [audio, partner_audio]
            prepared = [
                self._prepare(blk, "audio" if i == 0 else "partner_audio") for i, blk in enumerate(blocks)
            ]
            for i, x in enumerate(prepared):
                resampler = self._resamplers[i]
                if resampler is not None and x.size:
                    x = resampler.push(x)
                self._buffers[i] = np.concatenate([self._buffers[i], x])
                self._received[i] += x.shape[0]

    def push(
        self, audio: AudioInput, partner_audio: AudioInput | None = None
    ) -> Motion | tuple[Motion, Motion]:
        """Add a block of audio (any size) and return the motion frames that became final.

        Args:
            audio: the next samples of the person's voice (1-D or [channels, samples] array/tensor).
            partner_audio: the next samples of the partner's voice (required when the session was
                opened with ``partner=True``; blocks of the two may differ in length).

        Returns:
            A [Motion][unils.Motion] (possibly with zero frames), or a pair for ``both=True`` sessions.
        """
        with self._lock:
            self.feed(audio, partner_audio)
            while self.ready():
                self._step_alone()
            return self.take()

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
            while self._committed < frames:
                self._step_alone(min(self.hop, frames - self._committed))
            self._flushed = True
            pending, self._pending = self._pending, []
            return self._emit(pending, final=True)

    def _check_open(self) -> None:
        if self._closed:
            raise StreamError("this session is closed; open a new one with model.stream()")
        if getattr(self, "_flushed", False):
            raise StreamError("this session was flushed; call reset() to start a new conversation")

    # ------------------------------------------------------------------ the step, in three parts
    def ready(self) -> bool:
        """Whether the audio of the next hop has arrived on every channel (a window can be generated)."""
        return not self._closed and min(self._received) >= (self._committed + self.hop) * self._spf

    def next_window(self) -> np.ndarray:
        """Audio [channels, window_samples] (16 kHz) of the next window, zero-padded where not arrived."""
        start = self._committed * self._spf - self._buffer_start
        return np.stack([pad_window(buf[start:], self._window_samples) for buf in self._buffers])

    def step_inputs(self, feats: Any, silence: Any) -> tuple[Any, Any, ChunkState, Sampling]:
        """(own features [P, La, A], partner features [P, La, A], state, sampling) of the next step, from
        the encoded [next_window][unils.StreamSession.next_window] ``feats`` [channels, La, A]."""
        own = feats[0]
        other = feats[1] if self.partner else silence
        if self.both:
            return torch.stack([own, other]), torch.stack([other, own]), self._state, self.sampling
        return own[None], other[None], self._state, self.sampling

    def commit(self, motion: Any, state: ChunkState, commit: int | None = None, spent_s: float = 0.0) -> None:
        """Take a generated window: keep its first ``commit`` frames (default: the hop) for
        [take][unils.StreamSession.take], chain the state and drop audio no future window needs."""
        commit = self.hop if commit is None else commit
        with self._lock:
            motion_np = motion.float().cpu().numpy()[:, :commit]
            self._committed += commit
            if self.hop < self._window:
                # Low-latency chaining: the next window is conditioned on the last `window` committed frames.
                self._history = np.concatenate([self._history, motion_np], axis=1)[:, -self._window :]
                prev = np.stack([prev_clip(h, self._window) for h in self._history])
                state = state.with_prev_motion(torch.from_numpy(prev))
            self._state = state
            drop = self._committed * self._spf - self._buffer_start
            if drop > 0:
                self._buffers = [b[drop:] for b in self._buffers]
                self._buffer_start += drop
            self._step_times.append(spent_s)
            self._pending.append(motion_np)

    def take(self) -> Motion | tuple[Motion, Motion]:
        """The frames that became final since the last push/take (smoothed when the session smooths)."""
        with self._lock:
            pending, self._pending = self._pending, []
            return self._emit(pending, final=False)

    def _step_alone(self, commit: int | None = None) -> None:
        step_sessions(self.engine, [self], commit)

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


def step_sessions(engine: WindowEngine, sessions: list[StreamSession], commit: int | None = None) -> None:
    """One window for each of ``sessions`` (their next windows must be ready), as one batch: their audio
    windows through the encoder together, the generator's levels together (one batched step per value of
    ``use_cache``), then each session commits its rows. A session alone (``push``) and sessions of a
    [SessionGroup][unils.streaming.SessionGroup] step through this one function, so a single session
    runs the same shapes either way.

    Args:
        engine: the sessions' engine.
        sessions: sessions of that engine.
        commit: frames each session keeps (default: its hop; the last window of a flush keeps fewer).
    """
    t0 = time.perf_counter()
    windows = [s.next_window() for s in sessions]
    counts = [w.shape[0] for w in windows]
    feats = engine.encode(torch.from_numpy(np.concatenate(windows)), batch_size=max(8, sum(counts)))
    silence = engine.silence() if any(not s.partner for s in sessions) else None
    inputs = []
    start = 0
    for s, n in zip(sessions, counts):
        inputs.append(s.step_inputs(feats[start : start + n], silence))
        start += n
    # Rows of one batch agree on use_cache (two code paths): one batched step per value.
    results: dict[int, tuple[Any, ChunkState]] = {}
    for cache in (True, False):
        idx = [i for i, inp in enumerate(inputs) if inp[3].use_cache is cache]
        if not idx:
            continue
        outs = engine.step_many(
            [inputs[i][2] for i in idx],
            [inputs[i][0] for i in idx],
            [inputs[i][1] for i in idx],
            [inputs[i][3] for i in idx],
        )
        for i, out in zip(idx, outs):
            results[i] = out
    spent = time.perf_counter() - t0
    for i, s in enumerate(sessions):
        motion, state = results[i]
        s.commit(motion, state, commit, spent)


class SessionGroup:
    """Many live sessions of one model, stepped together: the windows that are ready in all of them run
    as one batch (audio encoder and generator), each row with its own options and random generator.

    Open sessions with [open][unils.SessionGroup.open], [feed][unils.StreamSession.feed] them audio as it
    arrives (each on its own clock), and call [step][unils.SessionGroup.step] regularly (e.g. every 40 ms,
    or whenever audio arrived): it generates every ready window of every session, in batches of at most
    ``max_batch`` sessions, and returns the frames that became final per session. A session stepped in a
    group gives the frames it gives stepped alone: bit for bit in float32 on CPU, within the precision's
    drift elsewhere (measured on the benchmarks page).

    Args:
        engine: the model's engine (``model.engine``; a [UniLS][unils.UniLS] is accepted too).
        max_batch: most sessions in one batched step.

    Example:
        ```python
        import numpy as np
        from unils import UniLS

        model = UniLS.from_pretrained("demo")
        group = model.stream_group()
        calls = [group.open(seed=i) for i in range(8)]          # 8 live conversations
        for _ in range(50):                                      # 50 blocks of 80 ms each
            for call in calls:
                call.feed(np.zeros(1280, np.float32), np.zeros(1280, np.float32))
            frames = group.step()                                # {session: Motion}
        group.close()
        ```
    """

    def __init__(self, engine: WindowEngine | Any, *, max_batch: int = 64) -> None:
        if not isinstance(engine, WindowEngine):
            engine = getattr(engine, "engine", None)
            if not isinstance(engine, WindowEngine):
                raise TypeError("SessionGroup needs a model's engine: use model.stream_group()")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be a positive int, got {max_batch!r}")
        self.engine = engine
        self.max_batch = max_batch
        self._sessions: list[StreamSession] = []
        self._lock = threading.Lock()
        #: Batched steps run so far, and the rows (sessions) they held in total.
        self.steps_run = 0
        self.rows_stepped = 0

    def open(
        self,
        *,
        options: GenerationOptions | Any = None,
        partner: bool = True,
        both: bool = False,
        sample_rate: int = 16000,
        hop_frames: int | None = None,
        **overrides: Any,
    ) -> StreamSession:
        """A new session of this group (arguments as [UniLS.stream][unils.UniLS.stream])."""
        session = StreamSession(
            self.engine,
            options=options,
            partner=partner,
            both=both,
            sample_rate=sample_rate,
            hop_frames=hop_frames,
            **overrides,
        )
        with self._lock:
            self._sessions.append(session)
        return session

    def add(self, session: StreamSession) -> StreamSession:
        """Step an existing session of the same model in this group."""
        if session.engine is not self.engine:
            raise ConfigError("this session belongs to another model: open it with group.open()")
        with self._lock:
            if session not in self._sessions:
                self._sessions.append(session)
        return session

    def remove(self, session: StreamSession) -> None:
        """Stop stepping ``session`` in this group (it stays open)."""
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)

    @property
    def sessions(self) -> list[StreamSession]:
        """The open sessions of the group."""
        with self._lock:
            self._sessions = [s for s in self._sessions if not s.closed]
            return list(self._sessions)

    def ready(self) -> list[StreamSession]:
        """The sessions whose next window is ready."""
        return [s for s in self.sessions if s.ready()]

    def step_once(self, sessions: list[StreamSession] | None = None) -> int:
        """One batched window for each ready session (or each of ``sessions`` that is ready), at most
        ``max_batch`` sessions per batch; returns how many sessions stepped. Frames wait in each
        session for [take][unils.StreamSession.take]."""
        todo = [s for s in (self.ready() if sessions is None else sessions) if s.ready()]
        for start in range(0, len(todo), self.max_batch):
            self._step_batch(todo[start : start + self.max_batch])
        return len(todo)

    def step(self) -> dict[StreamSession, Motion | tuple[Motion, Motion]]:
        """Generate every ready window of every session (batched) and return each session's new frames.

        Sessions with several windows ready (audio that arrived in a burst) step once per round until
        none is ready. Sessions without new frames are left out of the result.
        """
        stepped: set[StreamSession] = set()
        while True:
            todo = self.ready()
            if not todo:
                break
            self.step_once(todo)
            stepped.update(todo)
        out: dict[StreamSession, Motion | tuple[Motion, Motion]] = {}
        for s in stepped:
            if not s.closed:
                out[s] = s.take()
        return out

    def _step_batch(self, sessions: list[StreamSession]) -> None:
        step_sessions(self.engine, sessions)
        self.steps_run += 1
        self.rows_stepped += len(sessions)

    def close(self) -> None:
        """Close every session of the group."""
        for s in self.sessions:
            s.close()
        with self._lock:
            self._sessions = []

    def __enter__(self) -> SessionGroup:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
