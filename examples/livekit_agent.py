"""A LiveKit agent whose avatar listens to the user (unils.livekit).

An ordinary LiveKit voice agent (speech-to-text, LLM and text-to-speech through LiveKit Inference,
so the LiveKit credentials are the only keys) with a unils AvatarSession: the avatar participant
plays the agent's voice, listens to the user's microphone and publishes the face's frames (FLAME
and ARKit-52) on the text-stream topic "unils.motion" for a web or Unity client.

Live (needs a LiveKit server or LiveKit Cloud project):

    pip install "unils[livekit]"
    export LIVEKIT_URL=wss://YOUR_PROJECT.livekit.cloud
    export LIVEKIT_API_KEY=YOUR_API_KEY LIVEKIT_API_SECRET=YOUR_API_SECRET
    python examples/livekit_agent.py dev            # then join the room from a client

Offline replay (no server, no key): a recording of the agent and one of the user go through the
avatar worker (the agent's audio through LiveKit's in-process audio channel, in real time), and the
messages a client would receive are counted and the frames saved:

    python examples/livekit_agent.py --replay examples/dialogue/person_a.flac examples/dialogue/person_b.flac -o avatar.npz
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys

import numpy as np

from unils import Motion, UniLS
from unils.audio import load_audio

MODEL = os.environ.get("UNILS_MODEL", "demo")  # a checkpoint folder, a Hub id or "demo"
HOP_FRAMES = 5  # 0.36 s algorithmic latency; None for exact mode (4.16 s)


@functools.cache
def load_model(name: str) -> UniLS:
    """One model per process, shared by every job (each avatar gets its own session)."""
    return UniLS.from_pretrained(name)


def make_server():
    from livekit.agents import Agent, AgentServer, AgentSession, JobContext

    from unils.livekit import AvatarSession

    server = AgentServer()

    @server.rtc_session()
    async def entrypoint(ctx: JobContext) -> None:
        session = AgentSession(stt="deepgram/nova-3", llm="openai/gpt-4.1-mini", tts="cartesia/sonic-3")
        avatar = AvatarSession(load_model(MODEL), hop_frames=HOP_FRAMES, arkit=True)
        await avatar.start(session, room=ctx.room)  # the agent's audio now goes to the avatar
        await session.start(
            agent=Agent(instructions="You are a friendly assistant with a face. Answer in one or two sentences."),
            room=ctx.room,
        )
        await session.generate_reply(instructions="Greet the user.")

    return server


class PrintingRoom:
    """Stands in for the avatar's room in the offline replay: counts what a client would receive."""

    def __init__(self) -> None:
        from livekit import rtc

        self.local_participant = self
        self.remote_participants: dict = {}
        self.messages: list[dict] = []
        self._events = rtc.EventEmitter()
        self.on, self.off = self._events.on, self._events.off

    async def publish_track(self, track, options) -> None:
        print("published the agent's voice as the avatar's audio track")

    async def send_text(self, text: str, *, topic: str = "") -> None:
        msg = json.loads(text)
        self.messages.append(msg)
        if len(self.messages) % 25 == 1:
            print(f"{topic}: frames {msg['start']}..{msg['start'] + msg['count'] - 1} ({len(text)} bytes)")


async def replay(model: UniLS, agent_audio: np.ndarray, user_audio: np.ndarray, hop_frames: int | None) -> Motion:
    from livekit import rtc
    from livekit.agents.voice.avatar import QueueAudioOutput

    from unils.livekit import AvatarWorker

    room = PrintingRoom()
    agent_channel = QueueAudioOutput(sample_rate=16000)  # what DataStreamAudioOutput is over the network
    worker = AvatarWorker(room, model, audio_receiver=agent_channel, hop_frames=hop_frames, seed=0, sample_rate=16000)
    await worker.start()

    def frame(x: np.ndarray) -> rtc.AudioFrame:
        pcm = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
        return rtc.AudioFrame(pcm.tobytes(), 16000, 1, len(pcm))

    async def agent() -> None:  # the agent's reply, all at once as TTS bursts it
        for i in range(0, len(agent_audio), 320):
            await agent_channel.capture_frame(frame(agent_audio[i : i + 320]))
        agent_channel.flush()

    async def user() -> None:  # the user's microphone, in real time
        for i in range(0, len(user_audio), 320):
            worker.push_user_audio(frame(user_audio[i : i + 320]))
            await asyncio.sleep(0.02)

    await asyncio.gather(agent(), user())
    await asyncio.sleep(max(0.0, (len(agent_audio) - len(user_audio)) / 16000) + 0.1)
    await worker.aclose()
    print(f"{len(room.messages)} messages")
    return Motion.from_frames([f for m in room.messages for f in m["frames"]])


def main() -> None:
    if "--replay" not in sys.argv:
        from livekit.agents import cli

        cli.run_app(make_server())  # python examples/livekit_agent.py dev|start|console
        return
    ap = argparse.ArgumentParser(description="Replay an agent and a user recording through the avatar worker.")
    ap.add_argument("--replay", nargs=2, metavar=("AGENT", "USER"), required=True, help="audio files: the agent's voice, the user's")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--hop-frames", type=int, default=HOP_FRAMES, help="0 = exact mode")
    ap.add_argument("-o", "--output", default=None, help="save the avatar's motion (.npz, .json, .csv)")
    args = ap.parse_args()
    agent_audio, user_audio = (load_audio(p) for p in args.replay)  # 16 kHz mono
    motion = asyncio.run(replay(load_model(args.model), agent_audio, user_audio, args.hop_frames or None))
    print(f"{len(motion)} frames ({len(motion) / motion.fps:.2f} s at {motion.fps:g} fps)")
    if args.output:
        motion.save(args.output)
        print(f"saved {args.output}")


if __name__ == "__main__":
    main()
