"""A LiveKit Agents avatar whose face listens to the user as well as speaking the agent's words.

Needs the ``livekit`` extra (``pip install "unils[livekit]"``). It follows LiveKit's avatar pattern:

* [`AvatarSession`][unils.livekit.AvatarSession] (agent side, the shape of the avatar plugins in
  ``livekit.plugins``): ``await AvatarSession("demo").start(session, room=ctx.room)`` routes the agent's audio
  to the avatar participant as LiveKit's audio data stream (``DataStreamAudioOutput``) and runs the avatar
  worker in the same process, joined to the room as its own participant.
* [`AvatarWorker`][unils.livekit.AvatarWorker] (avatar side): receives the agent's audio
  (``DataStreamAudioReceiver``), plays it into the room as the agent's voice, answers ``lk.clear_buffer``
  (barge-in) and reports ``lk.playback_started`` / ``lk.playback_finished``; it also subscribes to the user's
  microphone as the partner channel, and publishes the motion on the text-stream topic ``unils.motion`` as the
  ``frames`` message of ``unils serve`` (FLAME coefficients, and ARKit-52 weights when asked), for a web or
  Unity client to render. See ``docs/voice-agents.md`` for the schema.

The agent's and the user's audio are aligned on the avatar's playback timeline by
[`unils.voice.PlaybackTimeline`][unils.voice.PlaybackTimeline], as in [`unils.pipecat`][unils.pipecat].
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
    from livekit import rtc
    from livekit.agents.voice.avatar import (
        AudioReceiver,
        AudioSegmentEnd,
        DataStreamAudioOutput,
        DataStreamAudioReceiver,
    )
    from livekit.agents.voice.avatar import AvatarSession as _LiveKitAvatarSession
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        'unils.livekit needs LiveKit Agents: pip install "unils[livekit]" (or pip install livekit-agents)'
    ) from exc

if TYPE_CHECKING:
    from livekit.agents import AgentSession

    from .arkit import ArkitAnimation, ArkitConverter
    from .model import UniLS
    from .serve.batcher import StepBatcher
    from .streaming import StreamSession

__all__ = ["AvatarSession", "AvatarWorker", "MOTION_TOPIC", "DEFAULT_AVATAR_IDENTITY", "is_user_microphone"]

logger = logging.getLogger("unils")

#: Text-stream topic of the motion messages.
MOTION_TOPIC = "unils.motion"
#: Participant identity of the avatar worker.
DEFAULT_AVATAR_IDENTITY = "unils-avatar"


def is_user_microphone(participant: Any, publication: Any, user_identity: str | None = None) -> bool:
    """Whether a remote track is the user's microphone: an audio track from a participant that is not
    an agent (and, when ``user_identity`` is given, has that identity)."""
    if getattr(publication, "kind", None) != rtc.TrackKind.KIND_AUDIO:
        return False
    if getattr(participant, "kind", None) == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
        return False
    if user_identity is not None:
        return bool(participant.identity == user_identity)
    return getattr(publication, "source", rtc.TrackSource.SOURCE_MICROPHONE) in (
        rtc.TrackSource.SOURCE_MICROPHONE,
        rtc.TrackSource.SOURCE_UNKNOWN,
    )


class AvatarWorker:
    """The avatar participant: plays the agent's voice, listens to the user, publishes the motion.

    Args:
        room: the avatar's connected room (its own participant, not the agent's).
        model: a loaded [`UniLS`][unils.model.UniLS], or a name/path to load (``"demo"``).
        audio_receiver: where the agent's audio comes from (default: LiveKit's
            ``DataStreamAudioReceiver`` on ``room``, from ``agent_identity`` or the first agent).
        agent_identity: identity of the agent participant that sends the audio.
        user_identity: identity of the user whose microphone is the partner channel (None = every
            non-agent participant's microphone; with several, their audio is mixed).
        options: generation options ([`unils.GenerationOptions`][unils.options.GenerationOptions]: sampling,
            smoothing, style, previous motion; None = the model's defaults).
        batcher: a ``unils.serve.batcher.StepBatcher`` shared by the calls of this process: their
            ready windows then run as batched steps (one model, many calls). None = each call steps
            its own session.
        hop_frames: None for exact mode (4.16 s latency), or the low-latency hop in frames.
        seed: seed of the draws (overrides ``options.seed``; None = the options' seed).
        dtype: precision when ``model`` is a name or path.
        arkit: True (or an [`ArkitConverter`][unils.arkit.convert.ArkitConverter]) to add ARKit-52 weights to
            the messages.
        topic: text-stream topic of the motion messages.
        max_frames_per_message: most frames in one message.
        sample_rate: rate of the published audio track.
        partner_timeout_s: with no user audio for this long, the partner channel is silence.
        tick_s: how often the worker checks the clock when no audio arrives.
        on_motion: optional callback, called with ``(motion, first_frame, arkit)`` for each batch.
        clock: monotonic time in seconds (the playback clock of the published audio).
    """

    def __init__(
        self,
        room: rtc.Room | Any,
        model: UniLS | str,
        *,
        audio_receiver: AudioReceiver | None = None,
        agent_identity: str | None = None,
        user_identity: str | None = None,
        options: GenerationOptions | None = None,
        batcher: StepBatcher | None = None,
        hop_frames: int | None = 5,
        seed: int | None = None,
        dtype: Any = None,
        arkit: bool | ArkitConverter = True,
        topic: str = MOTION_TOPIC,
        max_frames_per_message: int = 5,
        sample_rate: int = 24000,
        partner_timeout_s: float = DEFAULT_PARTNER_TIMEOUT_S,
        tick_s: float = 0.02,
        on_motion: Callable[[Motion, int, ArkitAnimation | None], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if int(max_frames_per_message) < 1:
            raise ValueError(f"max_frames_per_message must be at least 1, got {max_frames_per_message}")
        self.room = room
        self.model = load_model(model, dtype)
        self.options = options
        self.batcher = batcher
        self.hop_frames = hop_frames
        self.seed = seed
        self.topic = topic
        self.max_frames_per_message = int(max_frames_per_message)
        self.sample_rate = int(sample_rate)
        self.user_identity = user_identity
        self.on_motion = on_motion
        self._arkit: ArkitConverter | None = None
        if arkit is True:
            from .arkit import ArkitConverter

            self._arkit = ArkitConverter()
        elif arkit is not False and arkit is not None:
            self._arkit = arkit
        self._receiver = audio_receiver or DataStreamAudioReceiver(room, sender_identity=agent_identity)
        cfg = self.model.config
        self.fps = float(cfg.fps)
        self._new_timeline = lambda: PlaybackTimeline(
            cfg.sample_rate, cfg.samples_per_frame, partner_timeout_s=partner_timeout_s, clock=clock
        )
        self._timeline = self._new_timeline()
        self._tick_s = float(tick_s)
        self._session: StreamSession | None = None
        self._source: rtc.AudioSource | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._mic_tasks: dict[str, asyncio.Task[Any]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._emitted = 0
        self._playing = False
        self._position = 0.0  # seconds of the current segment handed to the audio source
        self._track_resampler: tuple[int, rtc.AudioResampler] | None = None
        self._notify_tasks: set[asyncio.Task[Any]] = set()
        self.messages_sent = 0
        self._open_session().close()  # fail now on bad options

    # ------------------------------------------------------------------ state
    @property
    def timeline(self) -> PlaybackTimeline:
        """Both channels on the avatar's playback timeline (read its ``stats()``)."""
        return self._timeline

    @property
    def frames_emitted(self) -> int:
        """Frames published so far."""
        return self._emitted

    @property
    def playback_position(self) -> float:
        """Seconds of the current agent segment handed to the audio track (0 between segments)."""
        return self._position

    def _open_session(self) -> StreamSession:
        overrides = {} if self.seed is None else {"seed": self.seed}
        return open_session(self.model, options=self.options, hop_frames=self.hop_frames, **overrides)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Publish the audio track, start receiving the agent's audio and the user's microphone."""
        self._session = self._open_session()
        self._emitted = 0
        self._stopping = False
        self._source = rtc.AudioSource(self.sample_rate, 1, queue_size_ms=100)
        await self._publish_audio_track(self._source)
        await self._receiver.start()
        self._receiver.on("clear_buffer", self._on_clear_buffer)
        self.room.on("track_subscribed", self._on_track_subscribed)
        for participant in list(getattr(self.room, "remote_participants", {}).values()):
            for publication in participant.track_publications.values():
                if publication.track is not None:
                    self._on_track_subscribed(publication.track, publication, participant)
        if self._timeline.started:  # a new conversation
            self._timeline = self._new_timeline()
        self._timeline.start()
        self._tasks = [
            asyncio.create_task(self._play_agent_audio(), name="unils-avatar-audio"),
            asyncio.create_task(self._run(), name="unils-avatar-motion"),
        ]

    async def _publish_audio_track(self, source: rtc.AudioSource) -> None:
        track = rtc.LocalAudioTrack.create_audio_track("avatar_audio", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, options)

    async def aclose(self, flush: bool = True) -> None:
        """Stop; with ``flush`` the queued agent audio is animated to its end and published first."""
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(Exception):
            self.room.off("track_subscribed", self._on_track_subscribed)
        with contextlib.suppress(Exception):
            self._receiver.off("clear_buffer", self._on_clear_buffer)
        play, run = (self._tasks + [None, None])[:2]
        if run is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(run), timeout=10.0)
        for task in [*self._tasks, *self._mic_tasks.values()]:
            task.cancel()
        for task in [*self._tasks, *self._mic_tasks.values()]:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception("the avatar's task %s failed", task.get_name())
        self._tasks, self._mic_tasks = [], {}
        if self._session is not None:
            if flush:
                await self._step(self._timeline.finish(), final=True)
            session, self._session = self._session, None
            session.close()
        await self._receiver.aclose()
        if self._source is not None:
            await self._source.aclose()
            self._source = None

    # ------------------------------------------------------------------ the agent's audio
    async def _play_agent_audio(self) -> None:
        """Play the agent's audio into the room at real-time pace, putting it on the timeline as it plays."""
        assert self._source is not None
        async for frame in self._receiver:
            if isinstance(frame, AudioSegmentEnd):
                self._timeline.end_agent_segment()
                await self._source.wait_for_playout()
                if self._playing:
                    await self._notify_finished(interrupted=False)
                continue
            if not self._playing:
                self._playing = True
                self._position = 0.0
                result = self._receiver.notify_playback_started()
                if asyncio.iscoroutine(result):
                    await result
            samples = pcm16_to_float32(bytes(frame.data), frame.num_channels)
            # It plays once the audio source's queue has played out.
            starts = self._timeline.clock() + self._source.queued_duration
            self._timeline.add_agent_audio(samples, frame.sample_rate, now=starts)
            self._wake.set()
            # The source holds 100 ms: capture returns once the frame fits, at real-time pace.
            out = self._resample_for_track(frame)
            if out.samples_per_channel:
                await self._source.capture_frame(out)
            self._position += frame.samples_per_channel / frame.sample_rate

    def _resample_for_track(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
        """The frame as mono at the published track's rate."""
        if frame.num_channels != 1:
            pcm = np.frombuffer(bytes(frame.data), "<i2").reshape(-1, frame.num_channels).mean(axis=1)
            frame = rtc.AudioFrame(pcm.astype("<i2").tobytes(), frame.sample_rate, 1, pcm.shape[0])
        if frame.sample_rate == self.sample_rate:
            return frame
        if self._track_resampler is None or self._track_resampler[0] != frame.sample_rate:
            self._track_resampler = (
                frame.sample_rate,
                rtc.AudioResampler(frame.sample_rate, self.sample_rate),
            )
        data = b"".join(bytes(f.data) for f in self._track_resampler[1].push(frame))
        return rtc.AudioFrame(data, self.sample_rate, 1, len(data) // 2)

    def _on_clear_buffer(self) -> None:
        """Barge-in (``lk.clear_buffer``): drop the agent audio not played yet, keep the session."""
        if self._source is not None:
            self._source.clear_queue()
        self._timeline.interrupt()
        self._wake.set()
        if self._playing:
            task = asyncio.get_running_loop().create_task(self._notify_finished(interrupted=True))
            self._notify_tasks.add(task)
            task.add_done_callback(self._notify_tasks.discard)

    async def _notify_finished(self, interrupted: bool) -> None:
        position = self._position
        if interrupted and self._source is not None:
            position = max(0.0, position - self._source.queued_duration)
        self._playing = False
        self._position = 0.0
        result = self._receiver.notify_playback_finished(playback_position=position, interrupted=interrupted)
        if asyncio.iscoroutine(result):
            await result

    # ------------------------------------------------------------------ the user's microphone
    def _on_track_subscribed(self, track: Any, publication: Any, participant: Any) -> None:
        if not is_user_microphone(participant, publication, self.user_identity):
            return
        key = f"{participant.identity}/{publication.sid}"
        if key in self._mic_tasks:
            return
        rate = self.model.config.sample_rate
        stream = rtc.AudioStream.from_track(track=track, sample_rate=rate, num_channels=1)
        self._mic_tasks[key] = asyncio.create_task(self._read_microphone(stream), name=f"unils-mic-{key}")
        logger.info("avatar listens to %s", participant.identity)

    async def _read_microphone(self, stream: Any) -> None:
        async for event in stream:
            self.push_user_audio(event.frame)

    def push_user_audio(self, frame: rtc.AudioFrame) -> None:
        """Add a frame of the user's microphone (what the subscription to their track does)."""
        if self._stopping or not self._timeline.started:
            return
        samples = pcm16_to_float32(bytes(frame.data), frame.num_channels)
        self._timeline.add_user_audio(samples, frame.sample_rate)
        self._wake.set()

    # ------------------------------------------------------------------ motion
    async def _run(self) -> None:
        try:
            while not self._stopping:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._tick_s)
                self._wake.clear()
                if self._stopping:
                    break
                await self._step(self._timeline.advance(), final=False)
        except Exception:  # the avatar stops moving; the agent's audio goes on
            logger.exception("the avatar's generation failed; no more motion in this session")
            session, self._session = self._session, None
            if session is not None:
                session.close()

    async def _step(self, blocks: list[tuple[np.ndarray, np.ndarray]], final: bool) -> None:
        await step_and_emit(
            self._lock,
            lambda: self._session,
            blocks,
            self._publish,
            final=final,
            batcher=self.batcher,
            arkit=self._arkit,
        )

    async def _publish(self, motion: Motion, anim: ArkitAnimation | None) -> None:
        first = self._emitted
        self._emitted += len(motion)
        if self.on_motion is not None:
            result = self.on_motion(motion, first, anim)
            if asyncio.iscoroutine(result):
                await result
        step = self.max_frames_per_message
        for i in range(0, len(motion), step):
            message = frames_message(
                motion[i : i + step], first + i, None if anim is None else anim[i : i + step]
            )
            await self.room.local_participant.send_text(json.dumps(message), topic=self.topic)
            self.messages_sent += 1


class AvatarSession(_LiveKitAvatarSession):
    """A unils avatar for a LiveKit ``AgentSession``, shaped like the avatar plugins.

    ``start`` sends the agent's audio to the avatar participant (LiveKit's ``DataStreamAudioOutput``) and runs
    [`AvatarWorker`][unils.livekit.AvatarWorker] in this process, connected to the room as ``avatar_identity``
    with a token minted from the LiveKit API key and secret.

    Args:
        model: a loaded [`UniLS`][unils.model.UniLS], or a name/path to load (``"demo"``).
        avatar_identity: participant identity of the avatar.
        avatar_name: participant name of the avatar.
        livekit_url: server URL (default ``$LIVEKIT_URL``).
        api_key: API key (default ``$LIVEKIT_API_KEY``).
        api_secret: API secret (default ``$LIVEKIT_API_SECRET``).
        options: generation options ([`unils.GenerationOptions`][unils.options.GenerationOptions]: sampling,
            smoothing, style, previous motion; None = the model's defaults).
        batcher: a ``StepBatcher`` shared by the avatars of this process (see
            [`AvatarWorker`][unils.livekit.AvatarWorker]).
        hop_frames: None for exact mode (4.16 s latency), or the low-latency hop in frames.
        seed: seed of the draws (overrides ``options.seed``; None = the options' seed).
        dtype: precision when ``model`` is a name or path.
        arkit: True (or an [`ArkitConverter`][unils.arkit.convert.ArkitConverter]) to add ARKit-52 weights to
            the messages.
        user_identity: identity of the user whose microphone is the partner channel (None = every
            non-agent participant's microphone).
        topic: text-stream topic of the motion messages.
        max_frames_per_message: most frames in one message.
    """

    def __init__(
        self,
        model: UniLS | str = "demo",
        *,
        avatar_identity: str = DEFAULT_AVATAR_IDENTITY,
        avatar_name: str = "unils avatar",
        livekit_url: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        options: GenerationOptions | None = None,
        batcher: StepBatcher | None = None,
        hop_frames: int | None = 5,
        seed: int | None = None,
        dtype: Any = None,
        arkit: bool | ArkitConverter = True,
        user_identity: str | None = None,
        topic: str = MOTION_TOPIC,
        max_frames_per_message: int = 5,
    ) -> None:
        super().__init__()
        self.model = load_model(model, dtype)
        self._identity = avatar_identity
        self._name = avatar_name
        self._url = livekit_url
        self._api_key = api_key
        self._api_secret = api_secret
        self._worker_options: dict[str, Any] = {
            "options": options,
            "batcher": batcher,
            "hop_frames": hop_frames,
            "seed": seed,
            "arkit": arkit,
            "user_identity": user_identity,
            "topic": topic,
            "max_frames_per_message": max_frames_per_message,
        }
        self.worker: AvatarWorker | None = None
        self._avatar_room: rtc.Room | None = None

    @property
    def avatar_identity(self) -> str:
        """Participant identity of the avatar."""
        return self._identity

    @property
    def provider(self) -> str:
        """``"unils"`` (reported in LiveKit's avatar metrics)."""
        return "unils"

    def avatar_token(self, room_name: str, agent_identity: str) -> str:
        """A token for the avatar participant (publishes on behalf of the agent, as avatar plugins do)."""
        from livekit import api
        from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF

        key = self._api_key or os.environ.get("LIVEKIT_API_KEY")
        secret = self._api_secret or os.environ.get("LIVEKIT_API_SECRET")
        if not key or not secret:
            raise ValueError(
                "the avatar needs LiveKit API credentials: pass api_key= and api_secret= or set "
                "LIVEKIT_API_KEY and LIVEKIT_API_SECRET"
            )
        return (
            api.AccessToken(api_key=key, api_secret=secret)
            .with_kind("agent")
            .with_identity(self._identity)
            .with_name(self._name)
            .with_grants(api.VideoGrants(room_join=True, room=room_name))
            .with_attributes({ATTRIBUTE_PUBLISH_ON_BEHALF: agent_identity})
            .to_jwt()
        )

    async def start(self, agent_session: AgentSession, room: rtc.Room) -> None:
        """Join the avatar to ``room`` and route ``agent_session``'s audio to it."""
        url = self._url or os.environ.get("LIVEKIT_URL")
        if not url:
            raise ValueError("the avatar needs the LiveKit server URL: pass livekit_url= or set LIVEKIT_URL")
        agent_identity = room.local_participant.identity
        token = self.avatar_token(room.name, agent_identity)
        await super().start(agent_session, room)
        self._avatar_room = rtc.Room()
        await self._avatar_room.connect(url, token)
        self.worker = AvatarWorker(
            self._avatar_room, self.model, agent_identity=agent_identity, **self._worker_options
        )
        await self.worker.start()
        agent_session.output.audio = DataStreamAudioOutput(
            room,
            destination_identity=self._identity,
            sample_rate=self.worker.sample_rate,
            wait_remote_track=rtc.TrackKind.KIND_AUDIO,
        )

    async def _wait_avatar_join(self) -> None:
        # The base class waits for a video track; this avatar publishes audio and data only.
        assert self._room is not None
        from livekit.agents import utils

        await utils.wait_for_participant(room=self._room, identity=self._identity)

    async def aclose(self) -> None:
        """Stop the avatar worker and take the avatar out of the room."""
        if self.worker is not None:
            await self.worker.aclose()
            self.worker = None
        if self._avatar_room is not None:
            await self._avatar_room.disconnect()
            self._avatar_room = None
        await super().aclose()
