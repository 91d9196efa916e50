"""`unils serve`: protocol validation, every refusal path, isolation of sessions, equality with offline.

Everything runs on 127.0.0.1 with ports chosen by the OS; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("websockets")

from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from helpers import randomize_, speech_like, tiny_config  # noqa: E402
from helpers.browser import browser_missing, wait_js  # noqa: E402
from unils import Motion, UniLS  # noqa: E402
from unils.cli import main  # noqa: E402
from unils.errors import ConfigError, ProtocolError  # noqa: E402
from unils.serve import AsyncStreamClient, ServeConfig, ServerThread, StreamClient  # noqa: E402
from unils.serve import protocol as P  # noqa: E402

WAIT = 20.0  # upper bound of any single wait, never an assertion on time


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(UniLS(tiny_config())).eval()


@pytest.fixture(scope="module")
def server(model):
    with ServerThread(model, ServeConfig(port=0, max_sessions=6)) as srv:
        yield srv


def hello(**kw) -> str:
    return json.dumps({"type": "hello", "sample_rate": 16000, **kw})


def close_of(ws) -> tuple[int, str]:
    """Read until the server closes; return its close code and reason."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=WAIT)
    frame = info.value.rcvd
    assert frame is not None, "the connection dropped without a close frame"
    return frame.code, frame.reason


def opened(url: str, first: str | None = None, **kw):
    ws = connect(url, open_timeout=WAIT, **kw)
    ws.__enter__()  # what `with connect(...)` does (websockets >= 17.1 warns otherwise); callers close it
    if first is not None:
        ws.send(first)
    return ws


def ready(ws) -> dict:
    msg = json.loads(ws.recv(timeout=WAIT))
    assert msg["type"] == "ready"
    return msg


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def stream_blocks(client, a, b=None, block=320):
    out = []
    for i in range(0, a.shape[0], block):
        out.append(client.push(a[i : i + block], None if b is None else b[i : i + block]))
    out.append(client.end())
    return out


def local_frames(model, a, b=None, block=320, **kw):
    with model.stream(partner=b is not None, **kw) as s:
        out = [s.push(a[i : i + block], *(() if b is None else (b[i : i + block],))) for i in range(0, len(a), block)]
        out.append(s.flush())
    return out


def cat(parts):
    if isinstance(parts[0], tuple):
        return tuple(Motion.concatenate([p[k] for p in parts]) for k in range(2))
    return Motion.concatenate(parts)


# ---------------------------------------------------------------------------------------------- hello
@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"sample_rate": 16000}), "first message must be"),
        (json.dumps({"type": "hello"}), "sample_rate is required"),
        (hello(sampel_rate=1), "unknown field(s) 'sampel_rate'"),
        (hello(version=2), "version 2"),
        (hello(channels=3), "channels must be between 1 and 2"),
        (hello(channels=True), "channels must be an integer"),
        (hello(both=True), "needs channels=2"),
        (hello(both=1, channels=2), "both must be true or false"),
        (hello(encoding="mp3"), "encoding must be one of pcm16, float32"),
        (hello(format="xml"), "format must be one of json, binary"),
        (hello(hop_frames=0), "hop_frames must be between"),
        (hello(hop_frames=101), "hop_frames must be between"),
        (hello(seed=-1), "seed must be between"),
        (hello(temperature="hot"), "temperature must be a finite number"),
    ],
)
def test_parse_hello_refusals(message, needle):
    with pytest.raises(ProtocolError) as info:
        P.parse_hello(message)
    assert needle in str(info.value)
    assert info.value.code == P.CLOSE_BAD_HELLO
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("rate", [0, 4000, 44100.5, "16k", 10**6, None, True])
def test_parse_hello_wrong_sample_rate(rate):
    with pytest.raises(ProtocolError, match="sample_rate") as info:
        P.parse_hello(json.dumps({"type": "hello", "sample_rate": rate}))
    assert info.value.code == P.CLOSE_BAD_HELLO


def test_parse_hello_accepts_and_defaults():
    h = P.parse_hello(hello(sample_rate=48000.0, channels=2, both=True, format="binary", hop_frames=25, seed=3))
    assert h == P.Hello(sample_rate=48000, channels=2, both=True, format="binary", hop_frames=25, seed=3)
    assert h.people == 2 and h.bytes_per_sample == 2 and h.encoding == "pcm16" and h.smooth
    assert P.parse_hello(h.to_message()) == h
    with pytest.raises(ProtocolError, match="between 5 and 100"):
        P.parse_hello(hello(hop_frames=2), min_hop_frames=5)
    with pytest.raises(ProtocolError, match="binary"):
        P.parse_hello(b"\x00\x01")


def test_hello_errors_close_the_session_with_reason(server):
    for message, code, needle in [
        ("{oops", P.CLOSE_BAD_HELLO, "not valid JSON"),
        (hello(sample_rate=1000), P.CLOSE_BAD_HELLO, "sample_rate must be between 8000 and 192000, got 1000"),
        (hello(cfg_scale=-1.0), P.CLOSE_BAD_HELLO, "cfg_scale"),  # refused by the session itself
    ]:
        with opened(server.ws_url, message) as ws:
            got_code, reason = close_of(ws)
        assert got_code == code and needle in reason, (message, got_code, reason)
    # A reason longer than a close frame allows (123 bytes) is cut, not an error.
    with opened(server.ws_url, hello(**{"x" * 300: 1})) as ws:
        code, reason = close_of(ws)
    assert code == P.CLOSE_BAD_HELLO and reason.startswith("hello: unknown field(s) 'xxx") and reason.endswith("...")
    assert len(reason.encode()) <= 123
    # Binary before the hello.
    with opened(server.ws_url) as ws:
        ws.send(b"\x00" * 64)
        assert close_of(ws)[0] == P.CLOSE_BAD_HELLO


# ---------------------------------------------------------------------------------------------- audio
def test_decode_and_encode_audio_roundtrip():
    h2 = P.Hello(sample_rate=16000, channels=2, encoding="float32")
    a, b = speech_like(0.1, seed=1), speech_like(0.1, seed=2)
    da, db = P.decode_audio(P.encode_audio(h2, a, b), h2)
    assert np.array_equal(da, a) and np.array_equal(db, b)
    h1 = P.Hello(sample_rate=16000)
    pcm = (a * 20000).astype(np.int16)
    (back,) = P.decode_audio(P.encode_audio(h1, pcm), h1)
    assert back.dtype == np.int16 and np.array_equal(back, pcm)
    (q,) = P.decode_audio(P.encode_audio(h1, a), h1)
    assert np.abs(q / 32768.0 - a).max() <= 0.5 / 32768 + 1e-9
    with pytest.raises(ValueError, match="same length"):
        P.encode_audio(h2, a, b[:-1])
    with pytest.raises(ValueError, match="partner_audio"):
        P.encode_audio(h2, a)


@pytest.mark.parametrize(
    ("encoding", "channels", "payload", "needle"),
    [
        ("pcm16", 1, b"\x01\x02\x03", "not a whole number of 1-channel pcm16 samples"),
        ("pcm16", 2, b"\x00" * 6, "2-channel pcm16"),
        ("float32", 1, np.array([0.1, np.nan], "<f4").tobytes(), "NaN/inf"),
        ("float32", 1, np.array([0.1, 1e30], "<f4").tobytes(), "magnitude 1e+30"),
    ],
)
def test_bad_audio_closes_with_4001(server, encoding, channels, payload, needle):
    with opened(server.ws_url, hello(encoding=encoding, channels=channels)) as ws:
        ready(ws)
        ws.send(b"")  # an empty block is fine
        ws.send(payload)
        code, reason = close_of(ws)
    assert code == P.CLOSE_BAD_AUDIO and needle in reason


def test_garbage_bytes_on_the_socket_do_not_disturb_a_session(server, model):
    a = speech_like(4.2, seed=5)
    port = int(server.ws_url.rsplit(":", 1)[1].split("/")[0])
    with StreamClient(server.ws_url, seed=1) as client:
        parts = [client.push(a[:16000])]
        # Not HTTP at all (e.g. a TLS hello on the plain port): refused with a 400, nothing else.
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
            raw.sendall(b"\x16\x03\x01\x02\x00garbage\xff\xfe\r\n\r\n")
            answer = raw.recv(4096)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400")  # websockets drops it, older ones said 400
        # HTTP, but not a WebSocket upgrade.
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
            raw.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: \xff\xfe\r\n\r\n")
            answer = raw.recv(4096)
        assert re.match(rb"HTTP/1.1 4\d\d ", answer), answer
        # Garbage text after the hello on another session.
        with opened(server.ws_url, hello()) as ws:
            ready(ws)
            ws.send("\x00garbage")
            code, reason = close_of(ws)
        assert code == P.CLOSE_BAD_MESSAGE and "not valid JSON" in reason
        with opened(server.ws_url, hello()) as ws:
            ready(ws)
            ws.send(json.dumps({"type": "dance"}))
            assert close_of(ws) == (P.CLOSE_BAD_MESSAGE, "unknown message type 'dance': after the hello send "
                                    'binary audio and finally {"type": "end"}')
        got = cat([*parts, client.receive(), *stream_blocks(client, a[16000:])])
    assert got == cat(local_frames(model, a, seed=1))


def test_oversize_messages_close_with_1009(model):
    with ServerThread(model, ServeConfig(port=0, max_message_bytes=4000)) as srv:
        with opened(srv.ws_url, hello()) as ws:
            ready(ws)
            ws.send(b"\x00" * 4000)  # at the limit: accepted
            ws.send(b"\x00" * 4002)
            assert close_of(ws)[0] == P.CLOSE_TOO_BIG
        with opened(srv.ws_url, hello()) as ws:
            ready(ws)
            ws.send("x" * 4002)  # text counts too
            assert close_of(ws)[0] == P.CLOSE_TOO_BIG
    with ServerThread(model, ServeConfig(port=0)) as srv:
        with opened(srv.ws_url, hello()) as ws:
            ready(ws)
            ws.send("x" * 9000)  # text messages have their own, smaller limit
            code, reason = close_of(ws)
        assert code == P.CLOSE_TOO_BIG and "8192" in reason


# ---------------------------------------------------------------------------------------------- access
def test_token_required_off_localhost(capsys):
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.org"):
        with pytest.raises(ConfigError, match="token"):
            ServeConfig(host=host).validate()
    ServeConfig(host="0.0.0.0", token="long-enough-secret").validate()
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        ServeConfig(host=host).validate()
    with pytest.raises(ConfigError, match="8 characters"):
        ServeConfig(token="short").validate()
    with pytest.raises(ConfigError, match="max_sessions"):
        ServeConfig(max_sessions=0).validate()
    # The command line refuses before loading a model or binding anything.
    assert main(["serve", "--host", "0.0.0.0", "--model", "/nonexistent"]) == 2
    assert "pass a token" in capsys.readouterr().err


def test_token_checked(model):
    token = "s3cret-token-123"
    with ServerThread(model, ServeConfig(port=0, token=token)) as srv:
        for url, headers in [(srv.ws_url, None), (srv.ws_url + "?token=wrong-token", None),
                             (srv.ws_url, {"Authorization": "Bearer nope-nope-nope"})]:
            with pytest.raises(InvalidStatus) as info:
                connect(url, additional_headers=headers, open_timeout=WAIT)
            assert info.value.response.status_code == 401
        with pytest.raises(ProtocolError, match="HTTP 401") as info:
            StreamClient(srv.ws_url, token="wrong-token")
        assert info.value.code == 401
        with opened(srv.ws_url + "?token=" + token, hello()) as ws:
            assert ready(ws)["session"] >= 1
        with StreamClient(srv.ws_url, token=token) as client:  # Authorization: Bearer
            assert client.ready["fps"] == 25
        # The page itself is public (it holds no secret); only the WebSocket needs the token.
        assert urllib.request.urlopen(srv.url, timeout=WAIT).status == 200


def test_foreign_browser_origin_refused(server):
    with pytest.raises(InvalidStatus) as info:
        connect(server.ws_url, origin="http://evil.example", open_timeout=WAIT)
    assert info.value.response.status_code == 403
    host = server.ws_url.split("/")[2]
    with opened(server.ws_url, hello(), origin=f"http://{host}") as ws:  # the demo page's own origin
        ready(ws)


def test_max_sessions(model):
    with ServerThread(model, ServeConfig(port=0, max_sessions=1)) as srv:
        first = StreamClient(srv.ws_url)
        with pytest.raises(ProtocolError, match="server busy") as info:
            StreamClient(srv.ws_url)
        assert info.value.code == P.CLOSE_TRY_LATER
        first.end()
        wait_until(lambda: srv.server.active_sessions == 0, "the first session to end")
        with StreamClient(srv.ws_url) as again:
            assert again.ready["session"] == 3
        assert srv.server.closed_by_code[P.CLOSE_TRY_LATER] == 1


def test_idle_timeout(model):
    with ServerThread(model, ServeConfig(port=0, idle_timeout_s=0.3, hello_timeout_s=0.3)) as srv:
        with opened(srv.ws_url) as ws:  # silent before the hello
            assert close_of(ws) == (P.CLOSE_IDLE, "no hello within 0.3 s")
        with opened(srv.ws_url, hello()) as ws:  # silent after it
            ready(ws)
            ws.send(np.zeros(320, np.int16).tobytes())
            assert close_of(ws) == (P.CLOSE_IDLE, "idle timeout: no audio for 0.3 s")
        # Empty messages are allowed but are not activity: they do not keep a session alive.
        with opened(srv.ws_url, hello()) as ws:
            ready(ws)
            sent = 0
            with pytest.raises(ConnectionClosed):
                for sent in range(1, 200):  # noqa: B007 - counted below
                    ws.send(b"")
                    time.sleep(0.02)
            assert ws.close_code == P.CLOSE_IDLE and sent < 100
        wait_until(lambda: srv.server.active_sessions == 0, "sessions to close")


def test_vanished_client_does_not_disturb_another_session(server, model):
    a, b = speech_like(9.0, seed=7), speech_like(9.0, seed=8)
    opened_before = server.server.sessions_opened
    gone_before = server.server.closed_by_code[1006]
    with StreamClient(server.ws_url, partner=True, seed=4) as steady:
        half = 4 * 16000
        parts = [steady.push(a[i : i + 640], b[i : i + 640]) for i in range(0, half, 640)]
        # Another client starts a window step, then its machine vanishes: a TCP reset, no close frame.
        ws = opened(server.ws_url, hello(encoding="float32"))
        ready(ws)
        ws.send(speech_like(4.5, seed=9).astype("<f4").tobytes())
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.socket.close()
        parts += stream_blocks(steady, a[half:], b[half:], block=640)
    got = cat(parts)
    assert got == cat(local_frames(model, a, b, block=640, seed=4))
    assert got.allclose(model.generate(a, b, seed=4), atol=1e-5)
    wait_until(lambda: server.server.active_sessions == 0, "both sessions to end")
    assert server.server.sessions_opened == opened_before + 2
    assert server.server.closed_by_code[1006] == gone_before + 1


def test_internal_error_closes_only_that_session(server, monkeypatch):
    from unils.streaming import StreamSession

    original = StreamSession.feed

    def broken(self, audio, partner_audio=None):
        if audio.shape[0] == 321:
            raise RuntimeError("simulated bug")
        return original(self, audio, partner_audio)

    monkeypatch.setattr(StreamSession, "feed", broken)
    with StreamClient(server.ws_url) as fine, opened(server.ws_url, hello()) as ws:
        ready(ws)
        ws.send(np.zeros(321, np.int16).tobytes())
        ws.send(json.dumps({"type": "end"}))  # less than a hop: the model gets it with the end
        assert close_of(ws) == (P.CLOSE_INTERNAL, "internal server error (logged on the server)")
        assert len(fine.push(np.zeros(320, np.float32))) == 0
        assert len(fine.end()) == 1


# ---------------------------------------------------------------------------------------------- frames
def test_frames_equal_offline_json_and_binary(server, model):
    a, b = speech_like(5.0, seed=1), speech_like(5.0, seed=2)
    want = model.generate(a, b, seed=3)
    got = {}
    for fmt in ("json", "binary"):
        with StreamClient(server.ws_url, partner=True, seed=3, format=fmt) as client:
            assert client.ready["format"] == fmt and client.ready["exact"] and client.ready["people"] == 1
            got[fmt] = cat(stream_blocks(client, a, b))
            assert client.stats["type"] == "end" and client.stats["frames_emitted"] == 125
            assert client.stats["steps"] == 2 and client.stats["algorithmic_latency_s"] == pytest.approx(4.16)
    assert got["json"] == got["binary"] == cat(local_frames(model, a, b, seed=3))
    assert len(got["json"]) == len(want) == 125 and got["json"].allclose(want, atol=1e-5)


@pytest.mark.parametrize("fmt", ["json", "binary"])
def test_pcm16_both_people(server, model, fmt):
    a = (speech_like(4.4, seed=3) * 30000).astype(np.int16)
    b = (speech_like(4.4, seed=4) * 30000).astype(np.int16)
    with StreamClient(server.ws_url, both=True, encoding="pcm16", format=fmt, seed=6) as client:
        assert client.ready["people"] == 2
        me, you = cat(stream_blocks(client, a, b, block=800))
    want_me, want_you = model.generate_both(a, b, seed=6)
    assert len(me) == len(you) == 110
    assert me.allclose(want_me, atol=1e-5) and you.allclose(want_you, atol=1e-5)


def test_resampled_low_latency_session_matches_local(server, model):
    a = speech_like(2.0, sr=48000, seed=11)
    with StreamClient(server.ws_url, sample_rate=48000, hop_frames=25, seed=2) as client:
        assert client.ready["algorithmic_latency_s"] == pytest.approx(1.16)
        got = cat(stream_blocks(client, a, block=960))
    assert len(got) == 50
    assert got == cat(local_frames(model, a, block=960, seed=2, sample_rate=48000, hop_frames=25))


@pytest.mark.parametrize("rate", [16000, 48000])
def test_audio_reaches_the_model_hop_by_hop(server, model, rate, monkeypatch):
    """A real-time client's 20 ms messages reach the model in one piece per hop, not one call per message,
    and each hop's frames come without waiting for more audio (also from a resampled client, whose windows
    become ready a resampler delay later)."""
    from unils.streaming import StreamSession

    feeds = []
    feed = StreamSession.feed
    monkeypatch.setattr(StreamSession, "feed", lambda self, *a, **k: (feeds.append(1), feed(self, *a, **k))[1])
    a = speech_like(3.0, sr=rate, seed=5)
    block = rate // 50  # 20 ms
    with StreamClient(server.ws_url, sample_rate=rate, hop_frames=25, seed=1) as client:
        for i in range(0, rate + block, block):  # one hop (1 s) and one more message
            client.send(a[i : i + block])
        got = [client.receive(timeout=WAIT)]
        deadline = time.monotonic() + WAIT
        while not sum(len(m) for m in got) and time.monotonic() < deadline:
            got.append(client.receive(timeout=0.5))
        assert sum(len(m) for m in got) > 0, "the first hop's frames did not come"
        assert len(feeds) == 1  # 51 messages, one piece
        for i in range(rate + block, a.shape[0], block):
            client.send(a[i : i + block])
        got.append(client.end())
    assert len(feeds) <= 4  # 150 messages of 20 ms: three pieces and the rest at the end
    assert cat(got) == cat(local_frames(model, a, block=block, seed=1, sample_rate=rate, hop_frames=25))


def test_wire_messages(server):
    """The raw protocol as a non-Python client sees it: ready, binary frames + stats, end, close 1000."""
    a = speech_like(4.0, seed=2)
    with opened(server.ws_url, hello(format="binary", encoding="float32", seed=0)) as ws:
        info = ready(ws)
        assert info["parts"] == {"expression": [0, 100], "head_pose": [100, 103], "jaw": [103, 104], "eyes": [104, 108]}
        assert info["model_sample_rate"] == 16000 and info["hop_frames"] == 100
        ws.send(a.astype("<f4").tobytes())
        frames = ws.recv(timeout=WAIT)
        magic, version, people, start, count = struct.unpack_from("<4sHHII", frames)
        assert (magic, version, people, start, count) == (b"ULSM", 1, 1, 0, 96)  # 4 held for smoothing
        assert len(frames) == 16 + 96 * 108 * 4
        stats = json.loads(ws.recv(timeout=WAIT))
        assert stats["type"] == "stats" and stats["frames_emitted"] == 96 and stats["audio_s"] == 4.0
        # Flow control: 4 s of 16 kHz float32 is the whole credit; acks come every quarter of it.
        assert info["flow"] == {"credit_bytes": 256000, "ack_every_bytes": 64000, "max_queued_audio_s": 4.0}
        assert json.loads(ws.recv(timeout=WAIT)) == {"type": "ack", "audio_bytes": 256000, "audio_s": 4.0}
        ws.send(json.dumps({"type": "end"}))
        start, rest = P.decode_frames_binary(ws.recv(timeout=WAIT))
        assert start == 96 and rest.shape == (1, 4, 108)
        assert json.loads(ws.recv(timeout=WAIT))["type"] == "stats"
        assert json.loads(ws.recv(timeout=WAIT))["type"] == "end"
        assert close_of(ws) == (1000, "session complete")
    with pytest.raises(ProtocolError, match="magic"):
        P.decode_frames_binary(b"XXXX" + frames[4:])
    with pytest.raises(ProtocolError, match="expected"):
        P.decode_frames_binary(frames[:-4])


def test_async_client(server, model):
    import asyncio

    a = speech_like(4.5, seed=12)
    arrivals = []

    async def run():
        client = await AsyncStreamClient.connect(server.ws_url, seed=5, format="json",
                                                 on_frames=lambda s, n, t: arrivals.append((s, n)))
        parts = []
        for i in range(0, len(a), 1600):
            parts.append(await client.push(a[i : i + 1600]))
        parts.append(await client.end())
        return cat(parts), client.stats

    got, stats = asyncio.run(run())
    assert got == cat(local_frames(model, a, seed=5))
    assert arrivals == [(0, 96), (96, 17)] and stats["frames_emitted"] == 113


# ---------------------------------------------------------------------------------------------- HTTP
def test_static_page_and_health(server):
    page = urllib.request.urlopen(server.url, timeout=WAIT)
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.read().decode()
    assert '<canvas id="avatar"' in html and 'src="app.js"' in html
    for name in ("app.js", "avatar.js", "capture-worklet.js", "style.css"):
        assert len(urllib.request.urlopen(server.url + name, timeout=WAIT).read()) > 100
    health = json.loads(urllib.request.urlopen(server.url + "healthz", timeout=WAIT).read())
    assert health["status"] == "ok" and health["max_sessions"] == 6 and health["protocol"] == 1
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url + "../etc/passwd", timeout=WAIT)
    assert info.value.code == 404


def test_static_files_ship_with_the_package():
    # hatchling puts every file under src/unils into the wheel; the server reads them as package resources.
    from importlib import resources

    files = {p.name for p in (resources.files("unils.serve") / "static").iterdir()}
    assert {"index.html", "app.js", "avatar.js", "capture-worklet.js", "style.css"} <= files


# ---------------------------------------------------------------------------------------------- CLI
def test_serve_command(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "unils", "serve", "--model", str(tmp_path / "ckpt"), "--port", "0",
                             "--max-sessions", "2", "--threads", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=120), "unils serve printed nothing"
        line = proc.stdout.readline()
        match = re.search(r"(ws://127\.0\.0\.1:\d+/ws)", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        assert "max 2 sessions" in line
        a = speech_like(4.3, seed=3)
        with StreamClient(match.group(1), seed=0) as client:
            got = cat(stream_blocks(client, a, block=1600))
        assert got == cat(local_frames(model, a, block=1600, seed=0))
        # SIGTERM drains: a session still open is closed with 1001 and a reason, and the process exits.
        live = StreamClient(match.group(1), seed=0)
        live.push(a[:1600])
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(ProtocolError) as info:
            live.end(timeout=WAIT)
        assert info.value.code == 1001 and "shutting down" in str(info.value)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=60)
    assert rc == 0


# ---------------------------------------------------------------------------------------------- browser
@pytest.mark.slow
@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_browser_demo(model, tmp_path):
    """The demo page in headless Chromium, with a fake microphone playing a wav file."""
    import soundfile as sf
    from playwright.sync_api import sync_playwright

    wav = tmp_path / "mic.wav"
    sf.write(wav, speech_like(6.0, sr=48000, seed=3), 48000, subtype="PCM_16")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with ServerThread(model, ServeConfig(port=0)) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            console = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(srv.url + "?hop=10&arkit=1", timeout=WAIT * 1000)
            page.click("#start")
            wait_js(page, "window.unilsDemo.framesReceived >= 75 && window.unilsDemo.framesShown > 20", 90)
            # ARKit asked for in the hello: the panel shows the weights of the frame on screen.
            assert page.evaluate("window.unilsDemo.ready.arkit_names.length") == 52
            assert page.evaluate("window.unilsDemo.arkitShown.weights.length") == 52
            assert "jawOpen" in page.inner_text("#arkit-panel") and page.is_visible("#arkit-panel")
            demo = page.evaluate("window.unilsDemo")
            page.screenshot(path=str(tmp_path / "demo.png"))
            shot = os.environ.get("UNILS_DEMO_SCREENSHOT")
            if shot:
                shutil.copy(tmp_path / "demo.png", shot)
            assert demo["errors"] == [], demo["errors"]
            assert demo["ready"]["hello"]["sample_rate"] == demo["sampleRate"] and demo["ready"]["hop_frames"] == 10
            assert demo["ready"]["algorithmic_latency_s"] == pytest.approx(0.56)
            assert demo["stats"]["steps"] >= 7 and demo["audioSent"] > 3.0
            assert demo["lag"] >= 0.16  # the newest frame waits at least for the smoothing lookahead
            assert page.inner_text("#lag").endswith(" s") and page.inner_text("#algo") == "0.56 s"
            assert page.inner_text("#status").startswith("streaming")
            page.click("#stop")
            wait_js(page, "window.unilsDemo.closeCode !== null", 60)
            demo = page.evaluate("window.unilsDemo")
            assert demo["closeCode"] == 1000 and demo["status"].startswith("ended")
            assert not [c for c in console if c.startswith(("error", "pageerror"))], console
        finally:
            browser.close()
        assert srv.server.closed_by_code[1000] == 1


@pytest.mark.slow
@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_browser_demo_streams_a_two_minute_file(model, tmp_path):
    """The page's file input: 2 minutes sent as fast as the credit allows, every frame back, close 1000."""
    import soundfile as sf
    from playwright.sync_api import sync_playwright

    wav = tmp_path / "talk.wav"
    sf.write(wav, speech_like(120.0, sr=48000, seed=4), 48000, subtype="PCM_16")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with ServerThread(model, ServeConfig(port=0)) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(srv.url + "?hop=exact", timeout=WAIT * 1000)
            page.set_input_files("#file", str(wav))
            wait_js(page, "window.unilsDemo.closeCode !== null", 240)
            demo = page.evaluate("window.unilsDemo")
            assert demo["errors"] == [] and demo["closeCode"] == 1000, demo
            assert demo["framesReceived"] == 3000 and demo["stats"]["frames_emitted"] == 3000
            # The page held audio back for credit instead of flooding the socket.
            assert demo["maxWaitingBytes"] > demo["ready"]["flow"]["credit_bytes"]
            assert demo["audioSent"] == pytest.approx(120.0, abs=0.02) and demo["ackedBytes"] <= demo["sentBytes"]
        finally:
            browser.close()


def test_example_client(server, model, tmp_path, monkeypatch, capsys):
    import runpy

    from unils.audio import save_audio

    # A 2-minute file, sent as fast as the server's credit allows (the example's default).
    save_audio(tmp_path / "a.wav", speech_like(120.0, seed=1))
    save_audio(tmp_path / "b.wav", speech_like(119.6, seed=2))
    example = Path(__file__).resolve().parent.parent / "examples" / "serve_client.py"
    monkeypatch.setattr(sys, "argv", ["serve_client.py", str(tmp_path / "a.wav"), "--partner", str(tmp_path / "b.wav"),
                                      "--url", server.ws_url, "-o", str(tmp_path / "m.npz")])
    runpy.run_path(str(example), run_name="__main__")
    out = capsys.readouterr().out
    assert "algorithmic latency 4.16 s" in out and "3000 frames" in out
    motion = Motion.load(tmp_path / "m.npz")
    assert len(motion) == 3000
    assert motion.allclose(model.generate(tmp_path / "a.wav", tmp_path / "b.wav", seed=0), atol=1e-5)
