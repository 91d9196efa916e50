"""A Pipecat frame processor that animates the bot's avatar from both sides of the call.

Needs the ``pipecat`` extra (``pip install "unils[pipecat]"``). Place
[`UniLSAvatarProcessor`][unils.pipecat.UniLSAvatarProcessor] after the TTS service, before the output
transport:

```python
pipeline = Pipeline([
    transport.input(), stt, context_aggregator.user(), llm, tts,
    UniLSAvatarProcessor("demo", hop_frames=5, arkit=True, send_to_client="rtvi"),
    transport.output(), context_aggregator.assistant(),
])
```

Its own channel is the bot's voice (``TTSAudioRawFrame``, any sample rate), its partner channel the user's
microphone (``InputAudioRawFrame`` from the input transport); both are aligned on the bot's playback timeline
by [`unils.voice.PlaybackTimeline`][unils.voice.PlaybackTimeline]. It pushes a
[`MotionFrame`][unils.pipecat.MotionFrame] downstream for every batch of new frames and, when asked, sends
them to the client as transport messages. An ``InterruptionFrame`` drops the bot audio not played yet, without
resetting the session: the face carries on, listening. Every frame passes through unchanged. See
``docs/voice-agents.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .errors import MissingDependencyError
from .motion import Motion
from .options import GenerationOptions
from .voice import (
    DEFAULT_PARTNER_TIMEOUT_S,
    PlaybackTimeline,
    frames_message,
    load_model,
    open_session,
    pcm16_to_float32,
    step_and_emit,
)

try:
    from pipecat.frames.frames import (
        CancelFrame,
        DataFrame,
        EndFrame,
        Frame,
        InputAudioRawFrame,
        InterruptionFrame,
        OutputTransportMessageUrgentFrame,
        StartFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        'unils.pipecat needs Pipecat: pip install "unils[pipecat]" (or pip install pipecat-ai)'
    ) from exc

if TYPE_CHECKING:
    from .arkit import ArkitAnimation, ArkitConverter
    from .model import UniLS
    from .serve.batcher import StepBatcher
    from .streaming import StreamSession

__all__ = ["UniLSAvatarProcessor", "MotionFrame"]

logger = logging.getLogger("unils")


@dataclass
class MotionFrame(DataFrame):
    """New avatar frames, pushed downstream by [`UniLSAvatarProcessor`][unils.pipecat.UniLSAvatarProcessor].

    Parameters:
        motion: the new frames (FLAME coefficients at 25 fps), in order.
        first_frame: index of ``motion``'s first frame in the conversation.
        presentation_time: seconds on the bot's playback timeline (0 = the pipeline's start) at
            which the first frame shows; frame ``i`` of ``motion`` shows at
            ``presentation_time + i / motion.fps``.
        arkit: the same frames as ARKit-52 weights, head rotation and gaze, when the processor was
            created with ``arkit``.

    Not interruptible: the frames describe audio that has played already, so an interruption
    must not drop them on their way to the output.
    """

    motion: Motion
    first_frame: int
    presentation_time: float
    arkit: ArkitAnimation | None = None
    interruptible: bool = field(default=False, init=False)

    def __str__(self) -> str:
        return (
            f"{self.name}(frames: {self.first_frame}..{self.first_frame + len(self.motion)}, "
            f"time: {self.presentation_time:.2f} s, arkit: {self.arkit is not None})"
        )


class UniLSAvatarProcessor(FrameProcessor):
    """Animate the bot's avatar from its own voice and the user's, on the bot's playback timeline.

    Args:
        model: a loaded [`UniLS`][unils.model.UniLS], or a name/path to load (``"demo"``).
        options: generation options ([`unils.GenerationOptions`][unils.options.GenerationOptions]: sampling,
            smoothing, style, previous motion; None = the model's defaults).
        batcher: a ``unils.serve.batcher.StepBatcher`` shared by the calls of this process: their
            ready windows then run as batched steps (one model, many calls). None = each call steps
            its own session.
        hop_frames: None for exact mode (frames equal offline generation; 4.16 s latency), or the
            low-latency hop in frames (5: 0.36 s algorithmic latency, 20 steps per second of audio).
        seed: seed of the draws (overrides ``options.seed``; None = the options' seed).
        dtype: precision when ``model`` is a name or path (``"auto"``, ``"float32"``, ``"bfloat16"``).
        arkit: True (or an [`ArkitConverter`][unils.arkit.convert.ArkitConverter], e.g. with an expression
            map) to add ARKit-52 weights to every [`MotionFrame`][unils.pipecat.MotionFrame] and client
            message.
        send_to_client: ``"transport"`` to send each batch of frames as an
            ``OutputTransportMessageUrgentFrame``, ``"rtvi"`` as an RTVI server message
            (``RTVIServerMessageFrame``), None to only push [`MotionFrame`][unils.pipecat.MotionFrame]
            downstream.
        max_frames_per_message: most frames in one client message (messages are split).
        partner_timeout_s: with no user audio for this long, the partner channel is silence.
        tick_s: how often the processor checks the clock when no audio arrives.
        clock: monotonic time in seconds (tests drive it by hand).
        **kwargs: `FrameProcessor` arguments (``name``...).
    """

    def __init__(
        self,
        model: UniLS | str,
        *,
        options: GenerationOptions | None = None,
        batcher: StepBatcher | None = None,
        hop_frames: int | None = None,
        seed: int | None = None,
        dtype: Any = None,
        arkit: bool | ArkitConverter = False,
        send_to_client: Literal["transport", "rtvi"] | None = None,
        max_frames_per_message: int = 5,
        partner_timeout_s: float = DEFAULT_PARTNER_TIMEOUT_S,
        tick_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if send_to_client not in (None, "transport", "rtvi"):
            raise ValueError(f'send_to_client must be None, "transport" or "rtvi", got {send_to_client!r}')
        if int(max_frames_per_message) < 1:
            raise ValueError(f"max_frames_per_message must be at least 1, got {max_frames_per_message}")
        if not tick_s > 0:
            raise ValueError(f"tick_s must be a positive number of seconds, got {tick_s}")
        self.model = load_model(model, dtype)
        self.options = options
        self.batcher = batcher
        self.hop_frames = hop_frames
        self.seed = seed
        self.send_to_client = send_to_client
        self.max_frames_per_message = int(max_frames_per_message)
        self._arkit: ArkitConverter | None = None
        if arkit is True:
            from .arkit import ArkitConverter

            self._arkit = ArkitConverter()
        elif arkit is not False and arkit is not None:
            self._arkit = arkit
        cfg = self.model.config
        self.fps = float(cfg.fps)
        self._new_timeline = lambda: PlaybackTimeline(
            cfg.sample_rate, cfg.samples_per_frame, partner_timeout_s=partner_timeout_s, clock=clock
        )
        self._timeline = self._new_timeline()
        self._tick_s = float(tick_s)
        self._session: StreamSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()
        self._emitted = 0
        # Fail now, not at the pipeline's start, on bad session options.
        self._open_session().close()

    # ------------------------------------------------------------------ state
    @property
    def timeline(self) -> PlaybackTimeline:
        """The audio of both channels on the bot's playback timeline (read its ``stats()``)."""
        return self._timeline

    @property
    def frames_emitted(self) -> int:
        """Frames pushed downstream so far."""
        return self._emitted

    def _open_session(self) -> StreamSession:
        overrides = {} if self.seed is None else {"seed": self.seed}
        return open_session(self.model, options=self.options, hop_frames=self.hop_frames, **overrides)

    # ------------------------------------------------------------------ frames
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Take the audio and interruptions it needs from ``frame``, then pass the frame on unchanged."""
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self._start()
            return
        if isinstance(frame, (EndFrame, CancelFrame)):
            await self._stop(final=isinstance(frame, EndFrame))
            await self.push_frame(frame, direction)
            return
        if self._timeline.started and self._session is not None:
            if isinstance(frame, TTSAudioRawFrame):
                self._timeline.add_agent_audio(
                    pcm16_to_float32(frame.audio, frame.num_channels), frame.sample_rate
                )
                self._wake.set()
            elif isinstance(frame, InputAudioRawFrame):
                self._timeline.add_user_audio(
                    pcm16_to_float32(frame.audio, frame.num_channels), frame.sample_rate
                )
                self._wake.set()
            elif isinstance(frame, TTSStoppedFrame):
                self._timeline.end_agent_segment()
            elif isinstance(frame, InterruptionFrame):
                self._timeline.interrupt()
                self._wake.set()
        await self.push_frame(frame, direction)

    def _start(self) -> None:
        if self._session is not None:
            return
        self._session = self._open_session()
        self._emitted = 0
        self._stopping = False
        if self._timeline.started:  # a new conversation
            self._timeline = self._new_timeline()
        self._timeline.start()
        self._worker = self.create_task(self._run(), name=f"{self.name}::unils")

    async def _run(self) -> None:
        try:
            while not self._stopping:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._tick_s)
                self._wake.clear()
                if self._stopping:
                    break
                await self._step(self._timeline.advance(), final=False)
        except Exception as exc:  # the avatar stops; the call goes on
            logger.exception("the avatar's generation failed; no more motion frames in this call")
            await self.push_error(f"unils avatar: {exc}", exception=exc)
            session, self._session = self._session, None
            if session is not None:
                session.close()

    async def _stop(self, final: bool) -> None:
        self._stopping = True
        self._wake.set()
        worker, self._worker = self._worker, None
        if worker is not None:
            try:
                await asyncio.wait_for(asyncio.shield(worker), timeout=10.0)
            except asyncio.TimeoutError:
                await self.cancel_task(worker)
        if self._session is None:
            return
        if final:
            await self._step(self._timeline.finish(), final=True)
        session, self._session = self._session, None
        session.close()

    async def cleanup(self) -> None:
        """Stop the generation task (the pipeline is being torn down)."""
        await super().cleanup()
        if self._worker is not None:
            self._stopping = True
            await self.cancel_task(self._worker)
            self._worker = None

    # ------------------------------------------------------------------ generation
    async def _step(self, blocks: list[tuple[np.ndarray, np.ndarray]], final: bool) -> None:
        await step_and_emit(
            self._lock,
            lambda: self._session,
            blocks,
            self._emit,
            final=final,
            batcher=self.batcher,
            arkit=self._arkit,
        )

    async def _emit(self, motion: Motion, anim: ArkitAnimation | None) -> None:
        first = self._emitted
        self._emitted += len(motion)
        await self.push_frame(
            MotionFrame(motion=motion, first_frame=first, presentation_time=first / self.fps, arkit=anim)
        )
        if self.send_to_client is None:
            return
        step = self.max_frames_per_message
        for i in range(0, len(motion), step):
            message = frames_message(
                motion[i : i + step], first + i, None if anim is None else anim[i : i + step]
            )
            out: Frame
            if self.send_to_client == "rtvi":
                from pipecat.processors.frameworks.rtvi import RTVIServerMessageFrame

                out = RTVIServerMessageFrame(data=message)
            else:
                out = OutputTransportMessageUrgentFrame(message=message)
            await self.push_frame(out)
