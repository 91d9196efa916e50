"""The framework-free core of the voice-agent integrations ([`unils.pipecat`][unils.pipecat],
[`unils.livekit`][unils.livekit]).

A voice agent's avatar is driven from two audio streams that run on different clocks:

* the agent's own voice (TTS audio) arrives in bursts, often much faster than real time, and is
  queued for playback; an interruption (barge-in) drops whatever has not played yet;
* the user's microphone arrives at real-time pace.

[`PlaybackTimeline`][unils.voice.PlaybackTimeline] puts both on the agent's *playback* timeline (sample 0 =
when the conversation started): the own channel holds the agent audio that plays at each instant and zeros
where the agent is silent, the partner channel holds the user audio captured at the same instant and zeros
where there is none. It releases a stretch of both channels only once it is final: the agent audio up to the
playback position (later audio may still be interrupted) and the user audio received. Channels are released in
lockstep, in blocks of one motion frame (40 ms at 16 kHz), so each window step of a streaming session sees
exactly the audio up to its hop, whatever the arrival timing: the motion is a deterministic function of the
two channels.

[`open_session`][unils.voice.open_session] is the one place the integrations open a streaming session.
[`frames_message`][unils.voice.frames_message] builds the JSON message they send to clients (the ``frames``
message of ``unils serve``, see ``docs/voice-agents.md``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import to_mono_float32
from .errors import AudioError
from .options import GenerationOptions
from .resample import Resampler, check_rate

if TYPE_CHECKING:
    from .arkit import ArkitAnimation, ArkitConverter
    from .model import UniLS
    from .motion import Motion
    from .serve.batcher import StepBatcher
    from .streaming import StreamSession

__all__ = [
    "PlaybackTimeline",
    "TimelineStats",
    "open_session",
    "run_blocks",
    "step_and_emit",
    "load_model",
    "frames_message",
    "pcm16_to_float32",
]

logger = logging.getLogger("unils")

#: Default wait (seconds) before the partner channel is filled with silence when no user audio arrives.
DEFAULT_PARTNER_TIMEOUT_S = 0.1


def load_model(model: UniLS | str | Any, dtype: Any = None) -> UniLS:
    """The model an integration runs: a loaded [`UniLS`][unils.model.UniLS], or a name/path to load.

    Args:
        model: a [`UniLS`][unils.model.UniLS], or anything
            [`from_pretrained`][unils.model.UniLS.from_pretrained] accepts (``"demo"``, a checkpoint folder, a
            Hub id).
        dtype: precision when loading (``"auto"``, ``"float32"``, ``"bfloat16"``...; None = the
            loader's default). Only for a model given by name: a loaded model keeps its precision.

    Raises:
        ValueError: ``dtype`` given with an already loaded model.
    """
    from .model import UniLS

    if isinstance(model, UniLS):
        if dtype is not None:
            raise ValueError(
                "dtype applies when loading: pass the model by name or path, or load it with "
                "UniLS.from_pretrained(..., dtype=...)"
            )
        return model
    if dtype is None:
        return UniLS.from_pretrained(model)
    return UniLS.from_pretrained(model, dtype=dtype)


def open_session(
    model: UniLS,
    *,
    options: GenerationOptions | None = None,
    hop_frames: int | None = None,
    **overrides: Any,
) -> StreamSession:
    """Open the streaming session of one conversation (own voice + partner), at the model's sample rate.

    The voice-agent integrations create every session here and only here.

    Args:
        model: the loaded model.
        options: generation options (None = the model's defaults).
        hop_frames: None for exact mode, or the low-latency hop in frames.
        **overrides: fields of [`GenerationOptions`][unils.options.GenerationOptions] that override
            ``options`` (``seed``...).
    """
    if options is not None and not isinstance(options, GenerationOptions):
        raise TypeError(f"options must be a unils.GenerationOptions, got {type(options).__name__}")
    return model.stream(
        options=options,
        partner=True,
        sample_rate=model.config.sample_rate,
        hop_frames=hop_frames,
        **overrides,
    )


def run_blocks(
    session: StreamSession,
    blocks: list[tuple[np.ndarray, np.ndarray]],
    *,
    final: bool = False,
    batcher: StepBatcher | None = None,
    arkit: ArkitConverter | None = None,
) -> tuple[Motion, ArkitAnimation | None]:
    """Feed released blocks to a session and return the frames that became final (blocking: run it in
    a worker thread).

    Args:
        session: the conversation's session (from [`open_session`][unils.voice.open_session]).
        blocks: ``(own, partner)`` blocks from
            [`PlaybackTimeline.advance`][unils.voice.PlaybackTimeline.advance] or ``finish``.
        final: the end of the conversation: flush the session after the blocks.
        batcher: a ``unils.serve.batcher.StepBatcher`` to step the session's windows in batches with
            other sessions' (None: the session steps alone). The frames are the same either way.
        arkit: a converter for ARKit-52 weights of the new frames (None: no ARKit).

    Returns:
        The new frames, and their ARKit animation (None without ``arkit`` or without new frames).
    """
    from .motion import Motion

    if batcher is not None:
        pieces = [batcher.push(session, own, partner) for own, partner in blocks]
    else:
        pieces = [session.push(own, partner) for own, partner in blocks]
    if final:
        pieces.append(session.flush())
    motion = Motion.concatenate([p for p in pieces if isinstance(p, Motion)])
    anim = arkit.push(motion) if arkit is not None and len(motion) else None
    return motion, anim


async def step_and_emit(
    lock: asyncio.Lock,
    session: Callable[[], StreamSession | None],
    blocks: list[tuple[np.ndarray, np.ndarray]],
    emit: Callable[[Motion, ArkitAnimation | None], Awaitable[None]],
    *,
    final: bool = False,
    batcher: StepBatcher | None = None,
    arkit: ArkitConverter | None = None,
) -> None:
    """The integrations' step: under ``lock`` (one step of a conversation at a time, frames in order),
    run [`run_blocks`][unils.voice.run_blocks] in a worker thread on the current session and hand new
    frames to ``emit`` (a Pipecat frame push, a LiveKit publish).

    Args:
        lock: the conversation's lock.
        session: returns the current session (None once it stopped: nothing is done).
        blocks: released ``(own, partner)`` blocks.
        emit: called with the new frames and their ARKit animation (only when there are frames).
        final: flush the session after the blocks.
        batcher: as in [`run_blocks`][unils.voice.run_blocks].
        arkit: as in [`run_blocks`][unils.voice.run_blocks].
    """
    if not blocks and not final:
        return
    async with lock:
        current = session()
        if current is None:
            return
        motion, anim = await asyncio.to_thread(
            run_blocks, current, blocks, final=final, batcher=batcher, arkit=arkit
        )
        if len(motion):
            await emit(motion, anim)


def pcm16_to_float32(data: bytes, num_channels: int = 1) -> np.ndarray:
    """Interleaved little-endian PCM16 bytes to mono float32 samples in [-1, 1] (channels averaged)."""
    if num_channels < 1:
        raise AudioError(f"num_channels must be at least 1, got {num_channels}")
    if len(data) % (2 * num_channels):
        raise AudioError(
            f"PCM16 audio of {len(data)} bytes is not a whole number of {num_channels}-channel samples"
        )
    pcm = np.frombuffer(data, "<i2").astype(np.float32) / np.float32(32768.0)
    if num_channels > 1:
        pcm = pcm.reshape(-1, num_channels).mean(axis=1, dtype=np.float32)
    return pcm


@functools.cache
def warm_up_resampling() -> None:
    """Run the resampling kernel once (its first use in a process compiles it: seconds of CPU).

    [`PlaybackTimeline`][unils.voice.PlaybackTimeline] calls it when created, so that the first utterance of a
    conversation does not stall the event loop.
    """
    Resampler(48000, 16000).push(np.zeros(4800, np.float32))


@dataclass(frozen=True)
class TimelineStats:
    """What a [`PlaybackTimeline`][unils.voice.PlaybackTimeline] has seen (samples at the timeline's rate).

    Attributes:
        agent_samples: agent audio received.
        agent_dropped: agent audio dropped by interruptions (never played).
        user_samples: user audio received.
        released: samples of each channel released so far.
        interruptions: interruptions handled.
    """

    agent_samples: int
    agent_dropped: int
    user_samples: int
    released: int
    interruptions: int


class PlaybackTimeline:
    """The agent's and the user's audio aligned on the agent's playback timeline.

    Not thread-safe: call it from one thread (the event loop of the integration).

    Args:
        rate: sample rate of the timeline (the model's, 16 kHz).
        block: samples per released block (one motion frame: ``rate / fps``).
        partner_timeout_s: with no user audio for this long, the partner channel is filled with
            silence up to ``now - partner_timeout_s``; user audio that arrives more than this after
            the end of the partner channel starts at its own time (the gap is silence).
        clock: seconds, monotonic (``time.monotonic``); the timeline starts at
            [`start`][unils.voice.PlaybackTimeline.start].
    """

    def __init__(
        self,
        rate: int,
        block: int,
        *,
        partner_timeout_s: float = DEFAULT_PARTNER_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = check_rate(rate, "PlaybackTimeline")
        if int(block) < 1:
            raise ValueError(f"block must be at least one sample, got {block}")
        if not partner_timeout_s >= 0:
            raise ValueError(f"partner_timeout_s must be >= 0 seconds, got {partner_timeout_s}")
        warm_up_resampling()
        self.block = int(block)
        self.partner_timeout = round(float(partner_timeout_s) * self.rate)
        self.clock = clock
        self.origin: float | None = None
        # One resampling stream per agent utterance, one for the whole user stream (per source rate).
        self._agent_resampler: Resampler | None = None
        self._user_resampler: Resampler | None = None
        # Own channel: released samples [0, released), then the queue (agent audio and the silence
        # before it, scheduled from `released` on), then silence.
        self._queue = np.zeros(0, np.float32)
        # Partner channel: released samples [0, released), then the received user audio not yet released.
        self._partner = np.zeros(0, np.float32)
        self._released = 0
        self._agent_samples = 0
        self._agent_dropped = 0
        self._user_samples = 0
        self._interruptions = 0

    # ------------------------------------------------------------------ state
    def start(self, now: float | None = None) -> None:
        """Start the timeline (sample 0) at ``now`` (default: the clock's time)."""
        self.origin = self.clock() if now is None else float(now)

    @property
    def started(self) -> bool:
        """Whether [`start`][unils.voice.PlaybackTimeline.start] was called."""
        return self.origin is not None

    def position(self, now: float | None = None) -> int:
        """The playback position (samples since [`start`][unils.voice.PlaybackTimeline.start]) at ``now``."""
        if self.origin is None:
            raise RuntimeError("the timeline has not started: call start() first")
        t = self.clock() if now is None else now
        return max(0, int((t - self.origin) * self.rate))

    @property
    def released(self) -> int:
        """Samples of each channel released so far."""
        return self._released

    @property
    def agent_end(self) -> int:
        """Timeline sample where the queued agent audio ends (its playback end, as scheduled)."""
        return self._released + self._queue.shape[0]

    @property
    def partner_end(self) -> int:
        """Timeline sample where the received user audio ends."""
        return self._released + self._partner.shape[0]

    def stats(self) -> TimelineStats:
        """Counts of what the timeline has seen."""
        return TimelineStats(
            agent_samples=self._agent_samples,
            agent_dropped=self._agent_dropped,
            user_samples=self._user_samples,
            released=self._released,
            interruptions=self._interruptions,
        )

    # ------------------------------------------------------------------ audio in
    def _flush_agent_tail(self) -> None:
        """The agent's utterance has played out: append its resampler's held-back tail (3 ms at most)."""
        if self._agent_resampler is not None:
            tail = self._agent_resampler.flush()
            self._agent_samples += tail.shape[0]
            self._queue = np.concatenate([self._queue, tail])

    def add_agent_audio(self, samples: Any, sample_rate: int, now: float | None = None) -> None:
        """Queue agent audio for playback after the audio already queued (or now, if none is).

        A gap shorter than one block between the queued audio and ``now`` is taken as jitter: the
        audio follows the queued audio directly.

        Args:
            samples: mono float32 samples (or anything
                [`unils.audio.to_mono_float32`][unils.audio.to_mono_float32] accepts).
            sample_rate: their rate (resampled to the timeline's rate, as one stream per utterance).
            now: when the audio starts playing if nothing is queued (default: the clock's time).
        """
        pos = self.position(now)
        x = to_mono_float32(samples, "agent audio")
        if pos - self.agent_end >= self.block:
            # The queue ran dry before this audio came (a pause, or a stream slower than real time);
            # shorter gaps are arrival jitter that the player's buffer absorbs.
            self._queue = np.concatenate([self._queue, np.zeros(pos - self.agent_end, np.float32)])
        rate = check_rate(sample_rate, "agent audio")
        if self._agent_resampler is not None and self._agent_resampler.orig_rate != rate:
            self._flush_agent_tail()
            self._agent_resampler = None
        if self._agent_resampler is None:
            self._agent_resampler = Resampler(rate, self.rate)
        y = self._agent_resampler.push(x)
        self._agent_samples += y.shape[0]
        self._queue = np.concatenate([self._queue, y])

    def end_agent_segment(self) -> None:
        """The agent's utterance is complete: release the few samples the resampler holds back.

        Call it when the agent stops speaking (the end of a TTS segment); later audio starts a
        new resampling stream.
        """
        self._flush_agent_tail()
        self._agent_resampler = None

    def add_user_audio(self, samples: Any, sample_rate: int, now: float | None = None) -> None:
        """Append user audio that was captured just before ``now`` to the partner channel."""
        pos = self.position(now)
        x = to_mono_float32(samples, "user audio")
        rate = check_rate(sample_rate, "user audio")
        if self._user_resampler is None or self._user_resampler.orig_rate != rate:
            self._user_resampler = Resampler(rate, self.rate)
        y = self._user_resampler.push(x)
        self._user_samples += y.shape[0]
        start = pos - y.shape[0]
        if start - self.partner_end > self.partner_timeout:
            # The user audio stopped for a while (or starts late): the gap was silence.
            self._partner = np.concatenate([self._partner, np.zeros(start - self.partner_end, np.float32)])
        self._partner = np.concatenate([self._partner, y])

    def interrupt(self, now: float | None = None) -> int:
        """Barge-in: drop the agent audio that has not played by ``now``; returns the samples dropped.

        The audio already played stays on the timeline and nothing else is reset.
        """
        pos = self.position(now)
        self._interruptions += 1
        if self.agent_end <= pos:
            self.end_agent_segment()
            return 0
        keep = max(0, pos - self._released)
        dropped = self._queue.shape[0] - keep
        self._queue = self._queue[:keep]
        self._agent_resampler = None
        self._agent_dropped += dropped
        logger.debug("interruption: dropped %.2f s of unplayed agent audio", dropped / self.rate)
        return dropped

    # ------------------------------------------------------------------ audio out
    def advance(self, now: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Release the whole blocks of both channels that are final at ``now``.

        Returns:
            ``(own, partner)`` pairs of ``block`` float32 samples each, in timeline order.
        """
        pos = self.position(now)
        # User audio missing for longer than the timeout is silence.
        if self.partner_end < pos - self.partner_timeout:
            fill = pos - self.partner_timeout - self.partner_end
            self._partner = np.concatenate([self._partner, np.zeros(fill, np.float32)])
        final = min(pos, self.partner_end)
        n_blocks = max(0, final - self._released) // self.block
        return self._release(n_blocks * self.block)

    def finish(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """End of the conversation: release everything queued (the agent audio as if played to its
        end, the partner channel padded with silence to the same length), the last block possibly short."""
        self._flush_agent_tail()
        end = max(self.agent_end, self.partner_end)
        if self.partner_end < end:
            self._partner = np.concatenate([self._partner, np.zeros(end - self.partner_end, np.float32)])
        n = end - self._released
        blocks = self._release(n - n % self.block)
        if n % self.block:
            blocks += self._release(n % self.block)
        return blocks

    def _release(self, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        if n <= 0:
            return []
        if self._queue.shape[0] < n:
            # The playhead passes the end of the queued audio: the utterance has played out.
            self.end_agent_segment()
        own = self._queue[:n]
        if own.shape[0] < n:
            own = np.concatenate([own, np.zeros(n - own.shape[0], np.float32)])
        partner = self._partner[:n]
        self._queue = self._queue[n:]
        self._partner = self._partner[n:]
        self._released += n
        step = self.block
        return [(own[i : i + step], partner[i : i + step]) for i in range(0, n, step)]


def frames_message(motion: Motion, start: int, arkit: ArkitAnimation | None = None) -> dict[str, Any]:
    """The JSON-ready message a client receives for new frames (the ``frames`` message of ``unils serve``).

    ``{"type": "frames", "start", "count", "fps", "frames": [{"index", "time", "expression" [100],
    "head_pose" [3], "jaw" [1], "eyes" [4]}...]}``, plus ``"arkit": [{"weights" [52], "head" [3],
    "eyes" [[2], [2]]}...]`` with ARKit. ``time`` is the frame's time on the agent's playback timeline.
    """
    from .serve.protocol import frames_json

    return dict(json.loads(frames_json(motion, start, None if arkit is None else [arkit])))
