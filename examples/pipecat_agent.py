"""A Pipecat voice agent whose avatar listens to the user (unils.pipecat).

The pipeline is an ordinary speech-to-speech agent (OpenAI speech-to-text, LLM and text-to-speech)
with UniLSAvatarProcessor after the TTS: its own channel is the bot's voice, its partner channel the
user's microphone, and it sends the avatar's frames (FLAME and ARKit-52) to the client as RTVI
server messages, next to the bot's audio.

Live (needs an OpenAI API key, the Pipecat runner and WebRTC transport):

    pip install "unils[pipecat]" "pipecat-ai[runner,webrtc]"
    export OPENAI_API_KEY=...                        # the only key it needs
    python examples/pipecat_agent.py                 # open http://localhost:7860/client

Offline replay (no key, no network): a recording of the bot and one of the user go through the same
avatar processor in a Pipecat pipeline, in real time, and the frames are saved:

    python examples/pipecat_agent.py --replay examples/dialogue/person_a.flac examples/dialogue/person_b.flac -o avatar.npz
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time

import numpy as np

from unils import Motion, UniLS
from unils.audio import load_audio

MODEL = os.environ.get("UNILS_MODEL", "demo")  # a checkpoint folder, a Hub id or "demo"
HOP_FRAMES = 5  # 0.36 s algorithmic latency; None for exact mode (4.16 s)


@functools.cache
def load_model(name: str) -> UniLS:
    """One model per process, shared by every call (each call gets its own session)."""
    return UniLS.from_pretrained(name)


def build_pipeline(transport, model: UniLS, hop_frames: int | None = HOP_FRAMES):
    """The agent: mic -> STT -> LLM -> TTS -> avatar -> speaker (+ frames to the client)."""
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.openai.stt import OpenAISTTService
    from pipecat.services.openai.tts import OpenAITTSService

    from unils.pipecat import UniLSAvatarProcessor

    api_key = os.environ.get("OPENAI_API_KEY", "YOUR_OPENAI_API_KEY")
    stt = OpenAISTTService(api_key=api_key)
    llm = OpenAILLMService(api_key=api_key)
    tts = OpenAITTSService(api_key=api_key, settings=OpenAITTSService.Settings(voice="alloy"))
    context = LLMContext(
        [{"role": "system", "content": "You are a friendly assistant with a face. Answer in one or two sentences."}]
    )
    turns = LLMContextAggregatorPair(context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()))
    avatar = UniLSAvatarProcessor(model, hop_frames=hop_frames, arkit=True, send_to_client="rtvi")
    return Pipeline(
        [transport.input(), stt, turns.user(), llm, tts, avatar, transport.output(), turns.assistant()]
    )


async def bot(runner_args) -> None:
    """Entry point of the Pipecat development runner: one call."""
    from pipecat.frames.frames import LLMRunFrame
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.runner.utils import create_transport
    from pipecat.transports.base_transport import TransportParams
    from pipecat.workers.runner import WorkerRunner

    transport = await create_transport(
        runner_args, {"webrtc": lambda: TransportParams(audio_in_enabled=True, audio_out_enabled=True)}
    )
    worker = PipelineWorker(build_pipeline(transport, load_model(MODEL)), enable_rtvi=True)

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):
        await worker.queue_frame(LLMRunFrame())  # the bot greets first

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        await worker.cancel()

    await WorkerRunner(handle_sigint=runner_args.handle_sigint).run(worker)


async def replay(model: UniLS, bot_audio: np.ndarray, user_audio: np.ndarray, hop_frames: int | None) -> Motion:
    """The two recordings through the avatar processor in a Pipecat pipeline, in real time."""
    from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, TTSAudioRawFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from unils.pipecat import MotionFrame, UniLSAvatarProcessor

    received: list[MotionFrame] = []
    t0 = time.monotonic()

    class Show(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, MotionFrame):
                received.append(frame)
                jaw = frame.motion.jaw[:, 0].max()
                print(
                    f"{time.monotonic() - t0:5.2f} s: frames {frame.first_frame}..{frame.first_frame + len(frame.motion) - 1}"
                    f" (shown at {frame.presentation_time:.2f} s), max jaw {jaw:.3f}"
                )
            await self.push_frame(frame, direction)

    avatar = UniLSAvatarProcessor(model, hop_frames=hop_frames, seed=0)
    worker = PipelineWorker(Pipeline([avatar, Show()]), cancel_on_idle_timeout=False, enable_rtvi=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker, frame):
        started.set()

    def pcm16(x: np.ndarray) -> bytes:
        return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()

    async def feed() -> None:
        await started.wait()
        start = time.monotonic()
        n = max(len(bot_audio), len(user_audio))
        for k, i in enumerate(range(0, n, 320)):  # 20 ms at 16 kHz, in real time
            await asyncio.sleep(max(0.0, start + k * 0.02 - time.monotonic()))
            if i < len(bot_audio):
                await worker.queue_frame(TTSAudioRawFrame(audio=pcm16(bot_audio[i : i + 320]), sample_rate=16000, num_channels=1))
            if i < len(user_audio):
                await worker.queue_frame(InputAudioRawFrame(audio=pcm16(user_audio[i : i + 320]), sample_rate=16000, num_channels=1))
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())
    return Motion.concatenate([f.motion for f in received])


def main() -> None:
    if "--replay" not in sys.argv:
        from pipecat.runner.run import main as run_live

        run_live()  # the development runner: python examples/pipecat_agent.py [-t webrtc|daily]
        return
    ap = argparse.ArgumentParser(description="Replay a bot and a user recording through the avatar processor.")
    ap.add_argument("--replay", nargs=2, metavar=("BOT", "USER"), required=True, help="audio files: the bot's voice, the user's")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--hop-frames", type=int, default=HOP_FRAMES, help="0 = exact mode")
    ap.add_argument("-o", "--output", default=None, help="save the avatar's motion (.npz, .json, .csv)")
    args = ap.parse_args()
    bot_audio, user_audio = (load_audio(p) for p in args.replay)  # 16 kHz mono
    motion = asyncio.run(replay(load_model(args.model), bot_audio, user_audio, args.hop_frames or None))
    print(f"{len(motion)} frames ({len(motion) / motion.fps:.2f} s at {motion.fps:g} fps)")
    if args.output:
        motion.save(args.output)
        print(f"saved {args.output}")


if __name__ == "__main__":
    main()
