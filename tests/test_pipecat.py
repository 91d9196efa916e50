"""unils.pipecat in a real Pipecat pipeline (PipelineWorker + WorkerRunner), driven by a manual clock.

The bot's TTS audio arrives in bursts (24 kHz), the user's microphone in 20 ms frames at real-time pace
(16 kHz); the user barges in. The motion must come out on the bot's playback timeline and equal a
library session fed the two channels as they played: the bot audio up to the interruption, silence,
the next reply; the user's audio throughout.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("pipecat")

from helpers import speech_like
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputTransportMessageUrgentFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.processors.frameworks.rtvi import RTVIServerMessageFrame
from pipecat.workers.runner import WorkerRunner

import unils.pipecat
import unils.voice
from unils import Motion
from unils.arkit import to_arkit
from unils.pipecat import MotionFrame, UniLSAvatarProcessor
from unils.resample import Resampler
from unils.voice import PlaybackTimeline

TTS_RATE, MIC_RATE, RATE = 24000, 16000, 16000


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Sink(FrameProcessor):
    """Records every frame that leaves the pipeline, with the (manual) clock time it left."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.frames: list[tuple[float, Frame]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append((self.clock.t, frame))
        await self.push_frame(frame, direction)

    def count(self, kind: type) -> int:
        return sum(isinstance(f, kind) for _, f in self.frames)


def pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()


def from_pcm16(b: bytes) -> np.ndarray:
    return np.frombuffer(b, "<i2").astype(np.float32) / np.float32(32768.0)


def chunks(x: np.ndarray, n: int) -> list[np.ndarray]:
    return [x[i : i + n] for i in range(0, len(x), n)]


async def until(cond, what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def conversation():
    """Bot reply 1 (2.0 s, interrupted at 1.2 s), bot reply 2 at 2.4 s (1.6 s), the mic for 4.0 s."""
    bot1 = from_pcm16(pcm16(0.5 * speech_like(2.0, seed=3, sr=TTS_RATE)))
    bot2 = from_pcm16(pcm16(0.5 * speech_like(1.6, seed=4, sr=TTS_RATE)))
    mic = from_pcm16(pcm16(0.5 * speech_like(4.0, seed=5, sr=MIC_RATE)))
    return bot1, bot2, mic


async def drive(proc: UniLSAvatarProcessor, clock: Clock, bot1, bot2, mic, interrupt_at=1.2, reply_at=2.4):
    """Run the conversation through a real pipeline; returns the sink."""
    sink = Sink(clock)
    worker = PipelineWorker(Pipeline([proc, sink]), cancel_on_idle_timeout=False, enable_rtvi=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker, frame):
        started.set()

    async def script():
        await asyncio.wait_for(started.wait(), 10)
        sent_tts = 0

        async def burst(audio):
            nonlocal sent_tts
            for c in chunks(audio, TTS_RATE // 25):  # 40 ms TTS chunks, all at once
                await worker.queue_frame(
                    TTSAudioRawFrame(audio=pcm16(c), sample_rate=TTS_RATE, num_channels=1)
                )
                sent_tts += 1
            await until(lambda: sink.count(TTSAudioRawFrame) == sent_tts, "the TTS burst")

        await burst(bot1)
        block = MIC_RATE // 50
        for k, c in enumerate(chunks(mic, block)):
            clock.t = round((k + 1) * 0.02, 6)
            await worker.queue_frame(InputAudioRawFrame(audio=pcm16(c), sample_rate=MIC_RATE, num_channels=1))
            await until(lambda n=k + 1: sink.count(InputAudioRawFrame) == n, "a mic frame")
            if abs(clock.t - interrupt_at) < 1e-9:
                await worker.queue_frame(InterruptionFrame())
                await until(lambda: sink.count(InterruptionFrame) == 1, "the interruption")
            if abs(clock.t - reply_at) < 1e-9:
                await burst(bot2)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), script()), 60)
    return sink


def expected_channels(bot1, bot2, mic, interrupt_at=1.2, reply_at=2.4):
    """The two channels as they played, at 16 kHz (one-shot resampling equals the streaming one)."""
    b1 = Resampler(TTS_RATE, RATE).push(bot1)
    b1 = np.concatenate([b1, Resampler(TTS_RATE, RATE).flush()])[: round(interrupt_at * RATE)]
    r = Resampler(TTS_RATE, RATE)
    b2 = np.concatenate([r.push(bot2), r.flush()])
    own = np.concatenate([b1, np.zeros(round(reply_at * RATE) - len(b1), np.float32), b2])
    partner = np.concatenate([mic, np.zeros(max(0, len(own) - len(mic)), np.float32)])
    own = np.concatenate([own, np.zeros(len(partner) - len(own), np.float32)])
    return own, partner


def session_frames(model, own, partner, hop, seed=0):
    """A library session fed the two channels in 40 ms lockstep blocks (as the processor feeds it)."""
    with model.stream(partner=True, sample_rate=RATE, hop_frames=hop, seed=seed) as s:
        parts = [s.push(own[i : i + 640], partner[i : i + 640]) for i in range(0, len(own), 640)]
        parts.append(s.flush())
    return Motion.concatenate(parts)


@pytest.mark.parametrize("hop", [None, 25])
def test_frames_follow_the_bot_timeline_and_equal_a_session(tiny_model, hop):
    clock = Clock()
    bot1, bot2, mic = conversation()
    proc = UniLSAvatarProcessor(tiny_model, hop_frames=hop, seed=0, clock=clock, send_to_client="transport")
    sink = asyncio.run(drive(proc, clock, bot1, bot2, mic))

    motion_frames = [(t, f) for t, f in sink.frames if isinstance(f, MotionFrame)]
    got = Motion.concatenate([f.motion for _, f in motion_frames])
    # 4.0 s of bot playback timeline (played audio, silence, the reply) at 25 fps
    assert len(got) == 100 and proc.frames_emitted == 100
    # consecutive, on the bot timeline
    starts = [f.first_frame for _, f in motion_frames]
    assert starts == list(np.cumsum([0] + [len(f.motion) for _, f in motion_frames[:-1]]))
    assert all(f.presentation_time == f.first_frame / 25 for _, f in motion_frames)
    # no frame leaves before its audio has played (and the user's audio at that time has arrived):
    # before the end, a frame is final once the audio of the 4 frames of smoothing lookahead after it has
    for t, f in motion_frames[:-1]:
        if t < 4.0:
            assert (f.first_frame + len(f.motion) + 4) / 25 <= t + 1e-9, (t, f)
    assert motion_frames[0][0] >= (4.0 if hop is None else 29 / 25)  # exact mode waits for a whole window

    own, partner = expected_channels(bot1, bot2, mic)
    assert len(own) == 64000
    want = session_frames(tiny_model, own, partner, hop)
    assert np.array_equal(got.to_array(), want.to_array())
    if hop is None:  # exact mode equals offline generation of the same two channels
        offline = tiny_model.generate(own, partner_audio=partner, seed=0)
        assert np.array_equal(got.to_array(), offline.to_array())

    # the interruption dropped the 0.8 s of reply 1 that never played (less the 3 ms the resampler held)
    stats = proc.timeline.stats()
    assert stats.interruptions == 1 and 12800 - 60 <= stats.agent_dropped <= 12800
    # every frame passed through unchanged and in order
    tts = [f for _, f in sink.frames if isinstance(f, TTSAudioRawFrame)]
    assert b"".join(f.audio for f in tts) == pcm16(bot1) + pcm16(bot2)
    mics = [f for _, f in sink.frames if isinstance(f, InputAudioRawFrame)]
    assert b"".join(f.audio for f in mics) == pcm16(mic)
    # client messages: the serve "frames" message, split in at most 5 frames, covering every frame
    msgs = [f.message for _, f in sink.frames if isinstance(f, OutputTransportMessageUrgentFrame)]
    assert all(m["type"] == "frames" and 1 <= m["count"] <= 5 and "arkit" not in m for m in msgs)
    assert [m["start"] for m in msgs] == list(np.cumsum([0] + [m["count"] for m in msgs[:-1]]))
    rows = [fr for m in msgs for fr in m["frames"]]
    assert Motion.from_frames(rows) == got and [fr["time"] for fr in rows] == [i / 25 for i in range(100)]


def test_uninterrupted_reply_gives_its_duration_in_frames_and_arkit(tiny_model):
    clock = Clock()
    bot1, _, mic = conversation()
    proc = UniLSAvatarProcessor(tiny_model, seed=1, clock=clock, arkit=True, send_to_client="rtvi")
    # no interruption, no second reply, the mic for as long as the bot talks
    sink = asyncio.run(
        drive(proc, clock, bot1, np.zeros(0, np.float32), mic[:32000], interrupt_at=-1, reply_at=-1)
    )
    frames = [f for _, f in sink.frames if isinstance(f, MotionFrame)]
    got = Motion.concatenate([f.motion for f in frames])
    assert len(got) == 50  # 2.0 s of bot audio at 25 fps
    anim = [f.arkit for f in frames]
    assert all(a is not None and len(a) == len(f.motion) for a, f in zip(anim, frames))
    whole = to_arkit(got)
    assert np.array_equal(np.concatenate([a.weights for a in anim]), whole.weights)
    msgs = [f.data for _, f in sink.frames if isinstance(f, RTVIServerMessageFrame)]
    assert sum(m["count"] for m in msgs) == 50 and all(len(m["arkit"]) == m["count"] for m in msgs)
    assert len(msgs[0]["arkit"][0]["weights"]) == 52
    own, partner = expected_channels(
        bot1, np.zeros(0, np.float32), mic[:32000], interrupt_at=2.0, reply_at=2.0
    )
    assert np.array_equal(got.to_array(), session_frames(tiny_model, own, partner, None, seed=1).to_array())


def test_bfloat16_model_matches_its_own_session(tiny_model):
    tiny_model.set_precision("bfloat16")
    clock = Clock()
    bot1, _, mic = conversation()
    proc = UniLSAvatarProcessor(tiny_model, hop_frames=25, seed=2, clock=clock)
    sink = asyncio.run(
        drive(proc, clock, bot1, np.zeros(0, np.float32), mic[:32000], interrupt_at=-1, reply_at=-1)
    )
    got = Motion.concatenate([f.motion for _, f in sink.frames if isinstance(f, MotionFrame)])
    own, partner = expected_channels(
        bot1, np.zeros(0, np.float32), mic[:32000], interrupt_at=2.0, reply_at=2.0
    )
    want = session_frames(tiny_model, own, partner, 25, seed=2)
    assert len(got) == 50 and np.array_equal(got.to_array(), want.to_array())


def test_timeline_places_bursts_silence_and_late_user_audio():
    clock = Clock()
    tl = PlaybackTimeline(16000, 640, partner_timeout_s=0.1, clock=clock)
    tl.start()
    clock.t = 0.5  # the bot starts talking at 0.5 s with 1 s of audio at once
    tl.add_agent_audio(np.ones(16000, np.float32), 16000)
    assert tl.agent_end == 24000
    clock.t = 1.0  # no user audio yet: silence up to 0.9 s, released in whole 40 ms blocks
    blocks = tl.advance()
    own = np.concatenate([o for o, _ in blocks])
    partner = np.concatenate([p for _, p in blocks])
    assert len(own) == 14080 and not own[:8000].any() and (own[8000:] == 1).all() and not partner.any()
    clock.t = 1.3  # 20 ms of user audio, captured just before 1.3 s: after a gap, so at its own time
    tl.add_user_audio(np.full(320, 0.5, np.float32), 16000)
    assert tl.partner_end == 20800 and tl.stats().user_samples == 320
    assert tl.interrupt() == 3200 and tl.agent_end == 20800  # the unplayed 0.2 s is gone
    clock.t = 2.0
    rest = tl.advance()  # the partner is final up to 1.9 s: 30080 samples in whole blocks
    own = np.concatenate([o for o, _ in rest])
    partner = np.concatenate([p for _, p in rest])
    assert len(own) == 30080 - 14080 and (own[: 20800 - 14080] == 1).all() and not own[20800 - 14080 :].any()
    assert (partner[20480 - 14080 : 20800 - 14080] == 0.5).all() and np.count_nonzero(partner) == 320
    tail = tl.finish()  # the end: both channels padded to the longer one (the partner, 1.9 s)
    assert sum(len(o) for o, _ in tail) == 320 and tl.released == 30400
    with pytest.raises(ValueError, match="block"):
        PlaybackTimeline(16000, 0)


def test_bad_arguments_say_what_to_do(tiny_model):
    with pytest.raises(ValueError, match="send_to_client"):
        UniLSAvatarProcessor(tiny_model, send_to_client="websocket")
    with pytest.raises(ValueError, match="hop_frames"):
        UniLSAvatarProcessor(tiny_model, hop_frames=0)
    with pytest.raises(ValueError, match="dtype applies when loading"):
        UniLSAvatarProcessor(tiny_model, dtype="bfloat16")
    with pytest.raises(TypeError, match="GenerationOptions"):
        UniLSAvatarProcessor(tiny_model, options={"temperature": 0.5})


def test_a_failing_model_stops_the_avatar_not_the_call(tiny_model, monkeypatch):
    clock = Clock()
    bot1, _, mic = conversation()
    proc = UniLSAvatarProcessor(tiny_model, hop_frames=25, seed=0, clock=clock)
    errors = []

    def broken(session, blocks, **kw):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(unils.voice, "run_blocks", broken)  # the one step of both integrations
    monkeypatch.setattr(
        proc, "push_error", lambda msg, exception=None, **k: errors.append(msg) or asyncio.sleep(0)
    )
    sink = asyncio.run(
        drive(proc, clock, bot1, np.zeros(0, np.float32), mic[:32000], interrupt_at=-1, reply_at=-1)
    )
    assert sink.count(MotionFrame) == 0 and errors == ["unils avatar: out of memory"]
    assert sink.count(TTSAudioRawFrame) == 50 and sink.count(InputAudioRawFrame) == 100  # the call went on


def test_two_calls_share_one_model_and_batcher(tiny_model):
    """One process, two calls at once: their steps go through one StepBatcher, each call's frames equal
    its own session's."""
    from unils.serve.batcher import StepBatcher

    bot1, _, mic = conversation()
    bot_b = from_pcm16(pcm16(0.5 * speech_like(2.0, seed=7, sr=TTS_RATE)))
    batcher = StepBatcher(tiny_model, gather_s=0.01)
    calls = [(Clock(), bot1, 0), (Clock(), bot_b, 1)]
    procs = [
        UniLSAvatarProcessor(tiny_model, hop_frames=25, seed=s, clock=c, batcher=batcher) for c, _, s in calls
    ]
    none = np.zeros(0, np.float32)

    async def both():
        return await asyncio.gather(
            *(
                drive(p, c, b, none, mic[:32000], interrupt_at=-1, reply_at=-1)
                for p, (c, b, _) in zip(procs, calls)
            )
        )

    sinks = asyncio.run(both())
    batcher.close()
    for sink, (_, bot, seed) in zip(sinks, calls):
        got = Motion.concatenate([f.motion for _, f in sink.frames if isinstance(f, MotionFrame)])
        own, partner = expected_channels(bot, none, mic[:32000], interrupt_at=2.0, reply_at=2.0)
        assert len(got) == 50 and np.array_equal(
            got.to_array(), session_frames(tiny_model, own, partner, 25, seed).to_array()
        )
    assert batcher.stats().rows == 2 * 2  # two low-latency steps per call before the final flush
