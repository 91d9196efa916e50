"""unils.livekit against the real livekit-agents / livekit-rtc classes, in process, without a server.

Real: LiveKit's ``DataStreamAudioReceiver`` (the agent's audio as a byte stream, ``lk.clear_buffer``,
``lk.playback_started`` / ``lk.playback_finished``) and its in-process ``QueueAudioOutput``, the
``rtc.AudioSource`` that paces the agent's voice in real time, ``rtc.AudioFrame`` /
``rtc.AudioResampler``, the API token. Faked, because they need a connection: the room's participant
registry, RPC transport (``register_rpc_method`` / ``perform_rpc``), byte-stream readers,
``publish_track`` and ``send_text``.
The microphone subscription reads a real ``rtc.AudioStream`` of a local track.
Not run here: a LiveKit server (the network side of those calls, a remote participant's track),
``AvatarSession.start`` (connecting the avatar and the agent's ``DataStreamAudioOutput``).
"""

from __future__ import annotations

import asyncio
import json

import jwt
import numpy as np
import pytest

pytest.importorskip("livekit.agents")

from helpers import speech_like
from livekit import rtc
from livekit.agents.voice.avatar import QueueAudioOutput

from unils import Motion
from unils.livekit import MOTION_TOPIC, AvatarSession, AvatarWorker, is_user_microphone


def pcm16_float(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.float32) / np.float32(32768)


class FakeLocalParticipant:
    identity = "unils-avatar"

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.tracks: list[object] = []

    async def send_text(self, text: str, *, topic: str = "") -> None:
        self.texts.append((topic, text))

    async def publish_track(self, track, options) -> None:
        self.tracks.append(track)


class FakeRoom(rtc.EventEmitter):
    def __init__(self) -> None:
        super().__init__()
        self.local_participant = FakeLocalParticipant()
        self.remote_participants: dict = {}


def pcm_frames(x: np.ndarray, rate: int, ms: int = 20) -> list[rtc.AudioFrame]:
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
    n = rate * ms // 1000
    return [
        rtc.AudioFrame(pcm[i : i + n].tobytes(), rate, 1, len(pcm[i : i + n])) for i in range(0, len(pcm), n)
    ]


def test_worker_plays_listens_handles_clear_buffer_and_publishes(tiny_model):
    reply1 = 0.5 * speech_like(1.2, sr=16000, seed=1)
    reply2 = 0.5 * speech_like(2.0, sr=16000, seed=2)
    mic = 0.5 * speech_like(8.0, sr=16000, seed=3)

    box = {}

    async def main():
        room = FakeRoom()
        receiver = QueueAudioOutput(sample_rate=16000)
        finished = []
        receiver.on("playback_finished", lambda ev: finished.append((ev.playback_position, ev.interrupted)))
        batches = []
        worker = AvatarWorker(
            room,
            tiny_model,
            audio_receiver=receiver,
            hop_frames=25,
            seed=0,
            partner_timeout_s=1.0,
            on_motion=lambda m, first, a: batches.append((first, m, a)),
        )
        records: list[tuple[np.ndarray, np.ndarray]] = []

        def recording(method):
            def wrapper(*a, **k):
                blocks = method(*a, **k)
                records.extend(blocks)
                return blocks

            return wrapper

        worker.timeline.advance = recording(worker.timeline.advance)
        worker.timeline.finish = recording(worker.timeline.finish)
        box.update(room=room, worker=worker, finished=finished, batches=batches, records=records)
        await worker.start()

        done = asyncio.Event()

        async def user():  # the microphone, at real-time pace, until the agent part is over
            for f in pcm_frames(mic, 16000):
                worker.push_user_audio(f)
                await asyncio.sleep(0.02)
                if done.is_set():
                    break

        async def agent():
            for f in pcm_frames(reply1, 16000):  # the whole reply at once, as TTS bursts it
                await receiver.capture_frame(f)
            receiver.flush()
            while not finished:
                await asyncio.sleep(0.01)
            for f in pcm_frames(reply2, 16000):
                await receiver.capture_frame(f)
            receiver.flush()
            while worker.playback_position < 0.5:
                await asyncio.sleep(0.005)
            receiver.clear_buffer()  # barge-in half a second into reply 2
            await asyncio.sleep(0.3)
            done.set()

        await asyncio.gather(user(), agent())
        await asyncio.sleep(0.2)
        await worker.aclose()

    asyncio.run(asyncio.wait_for(main(), 60))
    room, worker, finished, batches, records = (
        box[k] for k in ("room", "worker", "finished", "batches", "records")
    )

    # playback notifications: reply 1 played to its end, reply 2 interrupted after about 0.5 s
    assert len(finished) == 2
    assert finished[0][1] is False and abs(finished[0][0] - 1.2) < 0.03
    assert finished[1][1] is True and 0.35 < finished[1][0] <= 0.55  # less what the 100 ms queue held
    stats = worker.timeline.stats()
    # the receiver dropped what it had not handed over; the timeline what the track had not played
    assert stats.interruptions == 1 and 0 < stats.agent_dropped / 16000 <= 0.15
    assert 1.6 < stats.agent_samples / 16000 < 1.2 + 0.7
    assert len(room.local_participant.tracks) == 1  # the agent's voice, published by the avatar

    own = np.concatenate([o for o, _ in records])
    partner = np.concatenate([p for _, p in records])

    # the own channel: reply 1 whole, then reply 2 up to the barge-in, never the part after it (in
    # order; a busy event loop may delay a frame into the track, which the timeline keeps as silence)
    def resampled(x):  # 16 kHz agent audio: no resampling (tests/test_pipecat.py covers 24 kHz TTS)
        y = pcm16_float(x)
        return y[y != 0]

    voiced, r1, r2 = own[own != 0], resampled(reply1), resampled(reply2)
    assert np.array_equal(voiced[: len(r1)], r1)
    assert 0.2 * 16000 < len(voiced) - len(r1) < 0.7 * 16000  # (pauses have exact zeros)
    assert np.array_equal(voiced[len(r1) :], r2[: len(voiced) - len(r1)])
    # the partner channel holds the whole microphone signal, in order
    start = int(np.flatnonzero(partner)[0])
    heard = stats.user_samples
    bad = np.flatnonzero(partner[start : start + heard] != pcm16_float(mic)[:heard])
    assert heard > 16000 and len(bad) == 0, (start, len(partner), bad[:3], len(bad))

    # the motion: frames on the timeline, one per 40 ms of it, equal to a session fed the same blocks
    got = Motion.concatenate([m for _, m, _ in batches])
    assert len(got) == -(-len(own) // 640) and [b[0] for b in batches] == list(
        np.cumsum([0] + [len(m) for _, m, _ in batches[:-1]])
    )
    with tiny_model.stream(partner=True, sample_rate=16000, hop_frames=25, seed=0) as s:
        want = Motion.concatenate([s.push(o, p) for o, p in records] + [s.flush()])
    assert np.array_equal(got.to_array(), want.to_array())

    # the messages: the "frames" message on the unils.motion topic, with ARKit, covering every frame
    msgs = [json.loads(text) for topic, text in room.local_participant.texts]
    assert {topic for topic, _ in room.local_participant.texts} == {MOTION_TOPIC}
    assert all(m["type"] == "frames" and m["count"] <= 5 and len(m["arkit"]) == m["count"] for m in msgs)
    assert Motion.from_frames([f for m in msgs for f in m["frames"]]) == got
    assert len(msgs[0]["arkit"][0]["weights"]) == 52
    assert max(len(text.encode()) for _, text in room.local_participant.texts) < 64_000


class P:
    def __init__(self, identity, kind=rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD):
        self.identity, self.kind = identity, kind


class Pub:
    def __init__(self, kind=rtc.TrackKind.KIND_AUDIO, source=rtc.TrackSource.SOURCE_MICROPHONE):
        self.kind, self.source = kind, source


def test_only_the_users_microphone_is_the_partner():
    assert is_user_microphone(P("user"), Pub())
    assert not is_user_microphone(P("agent", rtc.ParticipantKind.PARTICIPANT_KIND_AGENT), Pub())
    assert not is_user_microphone(P("user"), Pub(kind=rtc.TrackKind.KIND_VIDEO))
    assert not is_user_microphone(P("user"), Pub(source=rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO))
    assert not is_user_microphone(P("other"), Pub(), user_identity="user")
    assert is_user_microphone(
        P("user"), Pub(source=rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO), user_identity="user"
    )


def test_avatar_session_token_publishes_on_behalf_of_the_agent(tiny_model, monkeypatch):
    avatar = AvatarSession(tiny_model, api_key="key", api_secret="secret-" + "x" * 32)
    assert avatar.avatar_identity == "unils-avatar" and avatar.provider == "unils"
    claims = jwt.decode(avatar.avatar_token("room-1", "agent-7"), "secret-" + "x" * 32, algorithms=["HS256"])
    assert claims["sub"] == "unils-avatar" and claims["kind"] == "agent"
    assert claims["video"]["room"] == "room-1" and claims["video"]["roomJoin"] is True
    assert claims["attributes"] == {"lk.publish_on_behalf": "agent-7"}
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.delenv("LIVEKIT_API_SECRET", raising=False)
    with pytest.raises(ValueError, match="LIVEKIT_API_KEY"):
        AvatarSession(tiny_model).avatar_token("room-1", "agent-7")
    with pytest.raises(ValueError, match="dtype applies when loading"):
        AvatarSession(tiny_model, dtype="bfloat16")


class ByteStreamReader:
    """What ``room.register_byte_stream_handler`` hands over: the agent's audio as PCM16 chunks."""

    def __init__(self, audio: np.ndarray, rate: int, chunk_s: float = 0.1) -> None:
        from types import SimpleNamespace

        pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2").tobytes()
        step = int(rate * chunk_s) * 2
        self.chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
        self.info = SimpleNamespace(
            attributes={"sample_rate": str(rate), "num_channels": "1"}, stream_id="AUDIO_1"
        )

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        if not self.chunks:
            raise StopAsyncIteration
        await asyncio.sleep(0)
        return self.chunks.pop(0)


class ConnectedRoom(FakeRoom):
    """The room as DataStreamAudioReceiver uses it: an agent participant, RPC and byte-stream registries."""

    def __init__(self) -> None:
        super().__init__()
        agent = P("agent", rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
        agent.state = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE
        agent.track_publications = {}
        self.remote_participants = {"agent": agent}
        self.byte_stream_handlers: dict = {}
        self.rpc_calls: list[tuple[str, str, str]] = []
        lp = self.local_participant
        lp._rpc_handlers = {}
        lp.register_rpc_method = lambda name, handler: lp._rpc_handlers.__setitem__(name, handler)

        async def perform_rpc(*, destination_identity, method, payload, **kw):
            self.rpc_calls.append((destination_identity, method, payload))
            return ""

        lp.perform_rpc = perform_rpc

    def isconnected(self) -> bool:
        return True

    def register_byte_stream_handler(self, topic, handler) -> None:
        self.byte_stream_handlers[topic] = handler


def test_worker_with_livekits_data_stream_receiver_and_rpcs(tiny_model):
    """The real DataStreamAudioReceiver: audio as a byte stream, lk.clear_buffer and the playback RPCs."""
    reply1 = 0.5 * speech_like(1.0, sr=16000, seed=4)
    reply2 = 0.5 * speech_like(2.0, sr=16000, seed=5)
    box = {}

    async def main():
        room = ConnectedRoom()
        worker = AvatarWorker(room, tiny_model, agent_identity="agent", hop_frames=25, seed=0, arkit=False)
        box.update(room=room, worker=worker)
        await worker.start()
        stream = room.byte_stream_handlers["lk.audio_stream"]
        stream(ByteStreamReader(reply1, 16000), "agent")
        while not any(m == "lk.playback_finished" for _, m, _ in room.rpc_calls):
            await asyncio.sleep(0.01)
        stream(ByteStreamReader(reply2, 16000), "agent")
        while worker.playback_position < 0.5:
            await asyncio.sleep(0.005)
        clear = room.local_participant._rpc_handlers["lk.clear_buffer"]
        answer = clear(rtc.RpcInvocationData("r1", "agent", "", 5.0, "lk.clear_buffer"))
        box["answer"] = answer
        await asyncio.sleep(0.3)
        await worker.aclose()

    asyncio.run(asyncio.wait_for(main(), 60))
    room, worker = box["room"], box["worker"]
    assert box["answer"] == "ok"
    calls = [
        (dest, method, json.loads(payload) if payload else None) for dest, method, payload in room.rpc_calls
    ]
    assert [c[:2] for c in calls] == [("agent", "lk.playback_started"), ("agent", "lk.playback_finished")] * 2
    first, second = calls[1][2], calls[3][2]
    assert first["interrupted"] is False and abs(first["playback_position"] - 1.0) < 0.03
    assert second["interrupted"] is True and 0.35 < second["playback_position"] <= 0.55
    stats = worker.timeline.stats()
    assert stats.interruptions == 1 and 1.4 < stats.agent_samples / 16000 < 1.8
    msgs = [json.loads(text) for _, text in room.local_participant.texts]
    assert sum(m["count"] for m in msgs) == worker.frames_emitted > 0 and "arkit" not in msgs[0]


def test_worker_listens_to_the_users_microphone_track(tiny_model):
    """A subscribed microphone track (a real local track here) becomes the partner channel."""
    box = {}

    async def main():
        room = FakeRoom()
        worker = AvatarWorker(
            room, tiny_model, audio_receiver=QueueAudioOutput(sample_rate=16000), hop_frames=25
        )
        await worker.start()
        mic = rtc.AudioSource(16000, 1, queue_size_ms=100)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", mic)
        pub = Pub()
        pub.sid = "TR_user"
        room.emit("track_subscribed", track, pub, P("user"))
        other = rtc.LocalAudioTrack.create_audio_track("agent-voice", rtc.AudioSource(16000, 1))
        room.emit("track_subscribed", other, Pub(), P("agent", rtc.ParticipantKind.PARTICIPANT_KIND_AGENT))
        voice = pcm16_float(0.5 * speech_like(1.0, sr=16000, seed=6))
        for f in pcm_frames(voice, 16000):
            await mic.capture_frame(f)
        await mic.wait_for_playout()
        await asyncio.sleep(0.2)
        box["user"] = worker.timeline.stats().user_samples
        await worker.aclose()

    asyncio.run(asyncio.wait_for(main(), 30))
    # the track delivers audio for as long as it runs (1 s of voice, then silence until closed: about
    # 1.2 s); the agent's track, also subscribed, would double it
    assert 15000 <= box["user"] <= 24000
