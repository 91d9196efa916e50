"""`unils serve` under real clients: fast senders, stalled readers, idle sockets, hostile pages and hellos,
a hog beside a real-time client, and shutdown during a heavy step.

Each test but the equality checks (10x exact mode, clips) reproduces a failure of the first server
(issue 17). Everything runs on 127.0.0.1 with ports chosen by the OS, tiny models and short audio;
every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import struct
import threading
import time
import urllib.request

import numpy as np
import pytest
import torch

pytest.importorskip("websockets")

from helpers import randomize_, speech_like, tiny_config
from helpers.wire import read_all_frames
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from unils import Motion, UniLS
from unils.errors import ProtocolError
from unils.serve import ServeConfig, ServerThread, StreamClient
from unils.serve import protocol as P
from unils.serve.access import HostPolicy, host_name

WAIT = 30.0  # upper bound of any single wait, never an assertion on speed


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(UniLS(tiny_config())).eval()


def hello(**kw) -> str:
    return json.dumps({"type": "hello", "sample_rate": 16000, **kw})


def port_of(srv: ServerThread) -> int:
    return srv.server.port


def local_frames(model, a, block, **kw) -> Motion:
    with model.stream(partner=False, **kw) as s:
        out = [s.push(a[i : i + block]) for i in range(0, len(a), block)]
        out.append(s.flush())
    return Motion.concatenate(out)


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


class RawWebSocket:
    """A bare-socket WebSocket client: it reads only when told to (a stalled or hostile client)."""

    def __init__(self, port: int, headers: dict[str, str] | None = None, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        hdrs = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        lines = ["GET /ws HTTP/1.1", *(f"{k}: {v}" for k, v in hdrs.items()), "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", "", ""]
        self.sock.sendall("\r\n".join(lines).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                break
            head += chunk
        self.status = int(head.split(b" ", 2)[1]) if head else 0
        self.head = head

    def send(self, payload: str | bytes) -> None:
        opcode, data = (1, payload.encode()) if isinstance(payload, str) else (2, payload)
        n = len(data)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = (np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.sock.sendall(header + mask + masked)

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------------------------- flow control
def test_fast_sender_at_the_smallest_hop_keeps_its_session(model):
    """As fast as the socket takes it, hop 5: every frame arrives, in order, equal to a local session.

    The first server stopped reading during steps, so the client's pongs waited behind its audio and
    the keepalive killed the session (1011). Keepalive is short here so that would show in seconds.
    """
    a = speech_like(12.0, seed=3)
    want = local_frames(model, a, 320, seed=1, hop_frames=5)
    cfg = ServeConfig(port=0, ping_interval_s=0.2, ping_timeout_s=0.4, max_queued_audio_s=1.0)
    with ServerThread(model, cfg) as srv:
        # StreamClient honours the credit: push() waits for acks instead of flooding.
        with StreamClient(srv.ws_url, seed=1, hop_frames=5, encoding="float32") as client:
            parts = [client.push(a[i : i + 320]) for i in range(0, len(a), 320)]
            parts.append(client.end())
        assert Motion.concatenate(parts) == want and len(want) == 300
        # A client that ignores the credit (and its own keepalive) is slowed by TCP, not closed.
        with connect(srv.ws_url, open_timeout=WAIT, ping_interval=None, max_queue=None, compression=None) as ws:
            ws.send(hello(hop_frames=5, encoding="float32", seed=1, format="binary"))
            assert json.loads(ws.recv(timeout=WAIT))["flow"]["credit_bytes"] == 64000
            for i in range(0, len(a), 320):
                ws.send(a[i : i + 320].astype("<f4").tobytes())
            ws.send(json.dumps({"type": "end"}))
            frames, last = read_all_frames(ws, WAIT)
        assert Motion.from_array(np.concatenate(frames)) == want and last["frames_emitted"] == 300
        wait_until(lambda: srv.server.closed_by_code[1000] == 2, "both sessions to close")
        assert srv.server.closed_by_code == {1000: 2}


def test_ten_times_real_time_exact_mode_equals_offline(model):
    a = speech_like(12.0, seed=4)
    with ServerThread(model, ServeConfig(port=0, ping_interval_s=0.2, ping_timeout_s=0.4)) as srv:
        with StreamClient(srv.ws_url, seed=2, encoding="float32") as client:
            t0, parts = time.monotonic(), []
            for i in range(0, len(a), 640):
                time.sleep(max(0.0, t0 + i / 16000 / 10 - time.monotonic()))  # 10x real time
                parts.append(client.push(a[i : i + 640]))
            parts.append(client.end())
    got = Motion.concatenate(parts)
    assert len(got) == 300 and got.allclose(model.generate(a, seed=2), atol=1e-5)


def test_stalled_reader_is_closed_and_its_slot_freed(model):
    cfg = ServeConfig(port=0, max_sessions=1, send_timeout_s=1.0, max_output_bytes=1 << 16, send_buffer_bytes=8192)
    with ServerThread(model, cfg) as srv:
        # Never reads, with a tiny receive buffer: the server's frames back up within a few steps.
        staller = RawWebSocket(port_of(srv), rcvbuf=4096)
        assert staller.status == 101
        staller.send(hello(hop_frames=5, format="json", seed=0))
        staller.send((speech_like(30.0, seed=1) * 20000).astype("<i2").tobytes()[: 1 << 19])
        wait_until(lambda: srv.server.closed_by_code[P.CLOSE_SLOW_READER] == 1, "the staller to be closed")
        assert srv.server.active_sessions == 0
        with StreamClient(srv.ws_url, seed=0) as client:  # the slot is free again
            assert len(client.end()) == 0
        staller.close()


def test_hello_less_connections_hold_no_slot_and_are_capped(model):
    cfg = ServeConfig(port=0, max_sessions=1, hello_timeout_s=1.0, max_connections_per_address=4)
    with ServerThread(model, cfg) as srv:
        silent = [RawWebSocket(port_of(srv)) for _ in range(3)]
        assert [s.status for s in silent] == [101] * 3
        with StreamClient(srv.ws_url, seed=0) as client:  # the one session slot is still free
            assert client.ready["session"] == 4
            with pytest.raises(InvalidStatus) as info:  # a fifth connection from this address
                connect(srv.ws_url, open_timeout=WAIT)
            assert info.value.response.status_code == 429
            client.end()
        wait_until(lambda: srv.server.closed_by_code[P.CLOSE_IDLE] == 3, "the silent connections to time out")
        # They do not answer the close either: dropped after the closing handshake's timeout.
        wait_until(lambda: srv.server.open_connections == 0, "the silent connections to be dropped")
        for s in silent:
            s.close()


# ---------------------------------------------------------------------------------------------- hostile pages
def http_status(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        raw.sendall((f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                     + "\r\n").encode())
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def test_dns_rebinding_is_refused(model):
    with ServerThread(model, ServeConfig(port=0)) as srv:
        port = port_of(srv)
        evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        ws = RawWebSocket(port, evil)
        assert ws.status == 421
        ws.close()
        status, body = http_status(port, "/", {"Host": f"evil.example:{port}"})
        assert status == 421 and b"--allow-host" in body
        # Right Host, foreign page: the Origin check still applies.
        ws = RawWebSocket(port, {"Origin": "http://evil.example"})
        assert ws.status == 403
        ws.close()
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            ws = RawWebSocket(port, {"Host": host, "Origin": f"http://{host}"})
            assert ws.status == 101, host
            ws.close()
        assert srv.server.metrics.http_refusals == {421: 2, 403: 1}
    with ServerThread(model, ServeConfig(port=0, allowed_hosts=("avatar.example.com",))) as srv:
        port = port_of(srv)
        ws = RawWebSocket(port, {"Host": "avatar.example.com", "Origin": "https://avatar.example.com"})
        assert ws.status == 101
        ws.close()


def test_host_policy_unit():
    assert host_name("[::1]:8765") == "::1" and host_name("Example.COM.:80") == "example.com"
    assert host_name("a b") is None and host_name("x:y") is None and host_name("") is None
    policy = HostPolicy("10.0.0.5", ("avatar.example.com",), ("https://app.example.com",))
    assert policy.host_ok("10.0.0.5:8765")[0] and policy.host_ok("avatar.example.com")[0]
    assert policy.host_ok("192.168.1.2:8765")[0]  # an IP literal cannot be rebound
    assert not policy.host_ok("evil.example")[0] and not policy.host_ok(None)[0]
    assert policy.origin_ok("https://app.example.com", "10.0.0.5:8765")
    assert policy.origin_ok("https://avatar.example.com", "avatar.example.com")
    assert not policy.origin_ok("http://evil.example", "avatar.example.com")


# ---------------------------------------------------------------------------------------------- hostile hellos
@pytest.mark.parametrize(
    ("message", "code", "needle"),
    [
        ('{"type": "hello", "sample_rate": 16000, "seed": ' + "[" * 3000 + "]" * 3000 + "}", 4000, "nests 3001"),
        (hello(cfg_scale=1e308), 4000, "cfg_scale must be between 0 and 100"),
        (hello(temperature=1e31), 4000, "temperature must be between 0 and 1e+30"),
        (hello(top_p=2), 4000, "top_p must be between 0 and 1"),
        (hello(version=True), 4000, "version True"),
        (hello(version=1.0), 4000, "version 1.0"),
        (hello(seed=2**60), 4000, "seed must be between"),
        (hello(partner=True, channels=1), 4000, "contradicts"),
        (hello(style={"shape": [100, 108], "data": "AAAA"}), 4000, "base64 of 43200 bytes"),
        (hello(style={"shape": [101, 108], "data": ""}), 4000, "1 <= frames <= 100"),
    ],
)
def test_hostile_hellos_are_refused_not_crashed(model, message, code, needle):
    with ServerThread(model, ServeConfig(port=0)) as srv:
        with pytest.raises(ProtocolError) as info:
            P.parse_hello(message)
        assert info.value.code == code and needle in str(info.value)
        ws = connect(srv.ws_url, open_timeout=WAIT)
        with ws:
            ws.send(message)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=WAIT)
        assert closed.value.rcvd.code == code and needle in closed.value.rcvd.reason
        assert srv.server.closed_by_code == {code: 1}


@pytest.mark.parametrize("temperature", [1e-300, 0])
def test_tiny_and_zero_temperatures_stream_and_end_normally(model, temperature):
    """A hello with temperature 1e-300 or 0 (greedy decoding) streams frames and ends with 1000, not 1011."""
    a = speech_like(2.0, seed=3)
    with ServerThread(model, ServeConfig(port=0)) as srv:
        with StreamClient(srv.ws_url, partner=False, hop_frames=25, seed=0, temperature=temperature) as c:
            assert c.ready["hello"]["temperature"] == temperature
            got = Motion.concatenate([c.push(a), c.end(timeout=WAIT)])
        assert srv.server.closed_by_code == {1000: 1}
    assert len(got) == 50 and np.isfinite(got.to_array()).all()
    assert got == local_frames(model, a, len(a), seed=0, hop_frames=25, temperature=temperature)


def test_text_limits_count_bytes(model):
    with ServerThread(model, ServeConfig(port=0)) as srv, connect(srv.ws_url, open_timeout=WAIT) as ws:
        ws.send(hello())
        json.loads(ws.recv(timeout=WAIT))
        ws.send('"' + "é" * 5000 + '"')  # 5002 characters, 10002 bytes
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT)
    assert closed.value.rcvd.code == P.CLOSE_TOO_BIG and "10002 bytes" in closed.value.rcvd.reason


@pytest.mark.parametrize("knobs", [{"temperature": 0.001, "cfg_scale": 100.0, "top_p": 0.0},
                                   {"temperature": 100.0, "cfg_scale": 0.0, "top_p": 1.0}])
def test_knob_extremes_stay_finite(model, knobs):
    h = P.parse_hello(hello(seed=0, **knobs))
    with model.stream(partner=False, seed=0, hop_frames=25, **knobs) as s:
        out = s.push(speech_like(2.0, seed=2))
        out = Motion.concatenate([out, s.flush()])
    assert len(out) == 50 and np.isfinite(out.to_array()).all() and h.temperature == knobs["temperature"]


def test_failed_step_logs_its_traceback(model, monkeypatch, caplog):
    from unils.streaming import StreamSession

    original = StreamSession.feed

    def broken(self, audio, partner_audio=None):
        if audio.shape[0] == 321:
            raise RuntimeError("simulated bug")
        return original(self, audio, partner_audio)

    monkeypatch.setattr(StreamSession, "feed", broken)
    with ServerThread(model, ServeConfig(port=0)) as srv, caplog.at_level(logging.ERROR, "unils.serve"):
        with StreamClient(srv.ws_url) as fine, connect(srv.ws_url, open_timeout=WAIT) as ws:
            ws.send(hello())
            ws.recv(timeout=WAIT)
            ws.send(np.zeros(321, np.int16).tobytes())
            ws.send(json.dumps({"type": "end"}))  # less than a hop: the model gets it with the end
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=WAIT)
            assert closed.value.rcvd.code == P.CLOSE_INTERNAL
            assert len(fine.end()) == 0
    failed = [r for r in caplog.records if r.exc_info and "simulated bug" in str(r.exc_info[1])]
    assert len(failed) == 1 and "a step failed" in failed[0].getMessage()


# ---------------------------------------------------------------------------------------------- fairness
def test_a_hog_does_not_starve_a_real_time_neighbour(model):
    """One model thread; a hog queues 100 steps in one message, then a neighbour needs two steps.

    Round-robin serves the neighbour after at most one of the hog's steps; the first server ran the
    hog's whole message first. Asserted on order (how much of the hog was served), not on speed.
    """
    cfg = ServeConfig(port=0, workers=1, max_message_bytes=1 << 20)
    hog_audio = (speech_like(20.0, seed=5) * 20000).astype("<i2").tobytes()  # 640 000 bytes: 100 hop-5 steps
    arrivals: list[tuple[float, int]] = []
    with ServerThread(model, cfg) as srv:
        hog = connect(srv.ws_url, open_timeout=WAIT, max_queue=None, compression=None)
        with hog, StreamClient(srv.ws_url, seed=0, hop_frames=5) as neighbour:
            hog.send(hello(hop_frames=5, format="binary", seed=0))
            hog.recv(timeout=WAIT)

            def read_hog() -> None:
                try:
                    while True:
                        msg = hog.recv(timeout=WAIT)
                        if isinstance(msg, bytes):
                            start, arr = P.decode_frames_binary(msg)
                            arrivals.append((time.monotonic(), start + arr.shape[1]))
                except (ConnectionClosed, TimeoutError):
                    pass

            reader = threading.Thread(target=read_hog, daemon=True)
            reader.start()
            hog.send(hog_audio)
            wait_until(lambda: len(arrivals) >= 2, "the hog's first frames")
            sent_at = time.monotonic()
            got = neighbour.push(speech_like(0.4, seed=6))
            while len(got) < 2:  # 10 frames of audio: 2 steps, 2 frames held back for smoothing
                got = Motion.concatenate([got, neighbour.receive(timeout=WAIT)])
            served_at = time.monotonic()
            hog_done_before = max(n for t, n in arrivals if t <= served_at)
            hog.send(json.dumps({"type": "end"}))
            reader.join(WAIT)
    total = arrivals[-1][1]
    assert total == 500
    # At most a few hog steps (5 frames each) ran between the neighbour's send and its frames.
    served_meanwhile = hog_done_before - max(n for t, n in arrivals if t <= sent_at)
    assert served_meanwhile <= 30 and hog_done_before < total // 2, (served_meanwhile, hog_done_before)


# ---------------------------------------------------------------------------------------------- drain
def test_drain_meets_its_deadline_during_a_stuck_step(model, monkeypatch):
    from unils.streaming import StreamSession

    original, release = StreamSession.feed, threading.Event()

    def stuck(self, audio, partner_audio=None):
        if audio.shape[0] == 333:
            release.wait(60)  # a step far longer than the drain deadline
        return original(self, audio, partner_audio)

    monkeypatch.setattr(StreamSession, "feed", stuck)
    threading.Timer(20, release.set).start()  # never hang the suite, whatever the server does
    srv = ServerThread(model, ServeConfig(port=0, drain_timeout_s=1.0, close_timeout_s=0.5)).start()
    try:
        ws = connect(srv.ws_url, open_timeout=WAIT)
        ws.__enter__()
        ws.send(hello())
        ws.recv(timeout=WAIT)
        ws.send(np.zeros(333, np.int16).tobytes())
        ws.send(json.dumps({"type": "end"}))  # less than a hop: the model gets it with the end
        wait_until(lambda: srv.call(lambda: srv.server.scheduler.busy) == 1, "the stuck step to start")
        t0 = time.monotonic()
        srv.stop()
        took = time.monotonic() - t0
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT)
        assert closed.value.rcvd.code == P.CLOSE_GOING_AWAY and "shutting down" in closed.value.rcvd.reason
        assert took < 1.0 + 2.0, took  # the documented deadline, plus scheduling slack on a loaded machine
        ws.close()
    finally:
        release.set()
        srv.stop()


# ---------------------------------------------------------------------------------------------- operations
def test_metrics_endpoint(model):
    with ServerThread(model, ServeConfig(port=0)) as srv:
        with StreamClient(srv.ws_url, seed=0, hop_frames=25) as client:
            client.push(speech_like(2.0, seed=1))
            client.end()
        wait_until(lambda: srv.server.active_sessions == 0, "the session to end")
        text = urllib.request.urlopen(srv.url + "metrics", timeout=WAIT).read().decode()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["unils_serve_sessions_total"] == 1 and values['unils_serve_closes_total{code="1000"}'] == 1
    assert values["unils_serve_frames_total"] == 50 and values["unils_serve_steps_total"] == 2
    assert values['unils_serve_step_seconds_bucket{le="+Inf"}'] == 2 == values["unils_serve_step_seconds_count"]
    assert values["unils_serve_sessions_active"] == 0 and values["unils_serve_queued_audio_seconds"] == 0
    assert values["unils_serve_audio_seconds_total"] == 2.0
    assert "# TYPE unils_serve_step_seconds histogram" in text


# ---------------------------------------------------------------------------------------------- clips
def test_style_clip_in_the_hello_equals_a_local_session(model):
    style = Motion.from_array(np.random.default_rng(0).standard_normal((100, 108)).astype(np.float32) * 0.1)
    clip = P.Clip.from_array(style)
    assert len(clip.to_json()["data"]) == 57600 and np.array_equal(clip.array(), style.to_array())
    h = P.parse_hello(json.dumps({"type": "hello", "sample_rate": 16000, "style": clip.to_json()}))
    assert h.style == (clip,) and len(P.Hello(sample_rate=16000, style=(clip,)).to_message()) < P.MAX_HELLO_BYTES
    a = speech_like(4.4, seed=7)
    with ServerThread(model, ServeConfig(port=0)) as srv:
        with StreamClient(srv.ws_url, seed=3, style=style) as client:
            assert client.ready["hello"]["style"] == {"frames": 100}
            got = Motion.concatenate([client.push(a), client.end()])
    with model.stream(partner=False, seed=3, style=style) as s:
        want = Motion.concatenate([s.push(a), s.flush()])
    assert got == want


def test_prev_motion_clip_in_the_hello(model):
    prev = Motion.from_array(np.random.default_rng(1).standard_normal((60, 108)).astype(np.float32) * 0.1)
    a = speech_like(4.4, seed=8)
    with ServerThread(model, ServeConfig(port=0)) as srv:
        with StreamClient(srv.ws_url, seed=3, prev_motion=prev) as client:
            got = Motion.concatenate([client.push(a), client.end()])
    with model.stream(partner=False, seed=3, prev_motion=prev) as s:
        want = Motion.concatenate([s.push(a), s.flush()])
    assert got == want
