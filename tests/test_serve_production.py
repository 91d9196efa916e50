"""`unils serve` in production (issue 28): TTS-sized pushes, credit-ignoring senders, rolling restarts,
peers that never read, proxies, a visible drain, handshake metrics; and slot accounting without a server
(issue 25).

Everything runs on 127.0.0.1 with ports chosen by the OS, tiny models and short audio; every wait is bounded.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("websockets")

from helpers import randomize_, speech_like, tiny_config
from helpers.wire import read_all_frames
from test_serve_live import RawWebSocket
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from unils import Motion, UniLS
from unils.errors import ConfigError, ProtocolError
from unils.serve import AsyncStreamClient, ServeConfig, ServerThread, StreamClient
from unils.serve import protocol as P

WAIT = 30.0  # upper bound of any single wait, never an assertion on speed
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(UniLS(tiny_config())).eval()


def hello(**kw) -> str:
    return json.dumps({"type": "hello", "sample_rate": 16000, **kw})


def wait_until(predicate, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def metric_values(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url + "metrics", timeout=WAIT).read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


# ---------------------------------------------------------------------------------------------- 1. TTS-sized pushes
def test_a_whole_utterance_in_one_push_from_both_clients(model):
    """10 s of two-person float32 audio is 1 280 000 bytes, more than the 1 MiB message limit.

    The clients split it into messages within the limit and the credit; the frames equal a local session
    given the same block. The first clients sent it as one message and the server closed with 1009.
    """
    a, b = speech_like(10.0, seed=1), speech_like(10.0, seed=2)
    with model.stream(partner=True, seed=0) as s:
        want = Motion.concatenate([s.push(a, b), s.flush()])
    assert len(want) == 250
    with ServerThread(model, ServeConfig(port=0)) as srv:
        with StreamClient(srv.ws_url, partner=True, seed=0) as client:
            assert a.nbytes * 2 > client.ready["limits"]["max_message_bytes"]
            got = Motion.concatenate([client.push(a, b), client.end()])
        assert got == want

        async def run_async() -> Motion:
            client = await AsyncStreamClient.connect(srv.ws_url, partner=True, seed=0)
            return Motion.concatenate([await client.push(a, b), await client.end()])

        assert asyncio.run(run_async()) == want
        wait_until(lambda: srv.server.closed_by_code[1000] == 2, "both sessions to end")
        assert srv.server.closed_by_code == {1000: 2}


def test_the_clients_split_within_the_credit(model):
    """A 1 s credit and a 64 KiB limit: every message fits both, and the frames are still exact."""
    a = speech_like(6.0, seed=3)
    with model.stream(partner=False, seed=0) as s:
        want = Motion.concatenate([s.push(a), s.flush()])
    cfg = ServeConfig(port=0, max_message_bytes=1 << 16, max_queued_audio_s=1.0)
    with ServerThread(model, cfg) as srv:
        with StreamClient(srv.ws_url, seed=0, encoding="float32") as client:
            sizes = [len(m) for m in client._inbox.messages(a.astype("<f4").tobytes())]
            assert (
                max(sizes) <= min(1 << 16, client.ready["flow"]["credit_bytes"] // 2)
                and sum(sizes) == a.nbytes
            )
            got = Motion.concatenate([client.push(a), client.end()])
    assert got == want


def _node_websocket() -> str | None:
    node = shutil.which("node")
    if node is None:
        return "needs node (>= 20, for its WebSocket) to run the page's script"
    probe = subprocess.run(
        [node, "--experimental-websocket", "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
        capture_output=True,
        timeout=60,
    )
    return None if probe.returncode == 0 else "this node has no WebSocket"


# The page's own app.js, run by node against the server: a stub DOM, node's WebSocket.
PAGE_HARNESS = r"""
const [port, seconds, rate] = process.argv.slice(2).map(Number);
const elements = {};
const element = (id) => elements[id] ??= {
  id, textContent: '', innerHTML: '', className: '', hidden: false, disabled: false, checked: false,
  value: id === 'mode' ? 'exact' : '', addEventListener() {},
  getContext: () => new Proxy({}, { get: () => () => ({ addColorStop() {} }) }),
};
globalThis.document = { getElementById: element };
globalThis.window = globalThis;
globalThis.location = { host: `127.0.0.1:${port}`, protocol: 'http:', search: '' };
globalThis.requestAnimationFrame = () => 0;
const sent = [];
const Native = WebSocket;
globalThis.WebSocket = class extends Native {
  send(data) { sent.push(typeof data === 'string' ? -1 : data.byteLength); super.send(data); }
};
await import(process.env.APP_JS);
const demo = window.unilsDemo;
const n = Math.round(seconds * rate);
const samples = new Float32Array(n);
for (let i = 0; i < n; i++) samples[i] = 0.3 * Math.sin(i * 0.05) * Math.sin(i * 0.0007);
demo.streamSamples(samples, rate);  // one block: a whole file or utterance
const t0 = Date.now();
while (demo.closeCode === null && Date.now() - t0 < 60000) await new Promise((r) => setTimeout(r, 20));
console.log(JSON.stringify({
  closeCode: demo.closeCode, closeReason: demo.closeReason, framesReceived: demo.framesReceived,
  framesEmitted: demo.stats && demo.stats.frames_emitted, credit: demo.ready && demo.ready.flow.credit_bytes,
  maxMessage: Math.max(...sent), audioBytes: sent.filter((x) => x > 0).reduce((x, y) => x + y, 0),
  errors: demo.errors,
}));
process.exit(0);
"""


@pytest.mark.skipif(_node_websocket() is not None, reason=str(_node_websocket()))
def test_the_browser_page_sends_a_block_of_any_length(model, tmp_path):
    """The page's script streams 12 s at 48 kHz (1.15 MB of PCM16) given as one block, with a 64 KiB limit."""
    harness = tmp_path / "harness.mjs"
    harness.write_text(PAGE_HARNESS)
    from importlib import resources

    app_js = Path(str(resources.files("unils.serve") / "static" / "app.js"))
    with ServerThread(model, ServeConfig(port=0, max_message_bytes=1 << 16)) as srv:
        out = subprocess.run(
            [
                "node",
                "--experimental-websocket",
                "--no-warnings",
                str(harness),
                str(srv.server.port),
                "12",
                "48000",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "APP_JS": app_js.as_uri()},
        )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["closeCode"] == 1000 and got["errors"] == [], got
    assert got["framesReceived"] == got["framesEmitted"] == 300
    assert got["audioBytes"] == 12 * 48000 * 2 and got["maxMessage"] <= min(1 << 16, got["credit"] // 2)


# ---------------------------------------------------------------------------------------------- 2. credit-ignoring senders
def test_a_credit_ignoring_sender_is_not_killed_by_its_keepalive(model):
    """40 s of float32 audio for two people (5 MB) as fast as the socket takes it, acks ignored; the client
    pings every 0.2 s and gives up after 1 s without a pong.

    While the server withholds reads, the client's pings wait behind the audio already in the kernel's
    buffers (the client's own send buffer grows to 4 MB: seconds of compute). The first server read no
    further than the credit, so the pong came too late and the session died with 1011; reading ahead (up
    to max_read_ahead_bytes), the server answers the pings and the session ends with 1000 and every frame.
    """
    seconds = 40.0
    a, b = speech_like(seconds, seed=5), speech_like(seconds, seed=6)
    data = np.stack([a, b], axis=1).astype("<f4").tobytes()
    cfg = ServeConfig(port=0, workers=1, max_queued_audio_s=0.5)
    with ServerThread(model, cfg) as srv:
        with connect(
            srv.ws_url,
            open_timeout=WAIT,
            ping_interval=0.2,
            ping_timeout=1.5,
            max_queue=None,
            compression=None,
        ) as ws:
            ws.send(hello(partner=True, encoding="float32", seed=1, format="binary"))
            json.loads(ws.recv(timeout=WAIT))
            block = 12800  # 0.1 s
            try:
                for i in range(0, len(data), block):
                    ws.send(data[i : i + block])
                ws.send(json.dumps({"type": "end"}))
                frames, last = read_all_frames(ws, WAIT)
            except ConnectionClosed as exc:
                pytest.fail(f"closed during the session: {exc}")
        assert last["frames_emitted"] == int(seconds * 25) == sum(len(f) for f in frames)
        wait_until(lambda: srv.server.closed_by_code[1000] == 1, "the session to end")
        assert srv.server.closed_by_code == {1000: 1}


# ---------------------------------------------------------------------------------------------- 3. and 6. the drain
def slow_step(monkeypatch, length: int, seconds: float) -> threading.Event:
    """Make a push of exactly ``length`` samples take ``seconds`` longer (in `feed`, which both the batched and
    the in-turn paths call); returns an event set when it starts."""
    from unils.streaming import StreamSession

    original, started = StreamSession.feed, threading.Event()

    def slow(self, audio, partner_audio=None):
        if audio.shape[0] == length:
            started.set()
            time.sleep(seconds)
        return original(self, audio, partner_audio)

    monkeypatch.setattr(StreamSession, "feed", slow)
    return started


def test_the_drain_sends_the_running_steps_frames_then_1001_and_joins_its_threads(model, monkeypatch):
    """Shutdown while a step runs: the client gets that step's frames, then 1001; no model thread is left.

    The first server closed with 1001 at once, dropped the step's frames and left the step running in a
    thread while the process exited (in native code that aborts the interpreter: SIGABRT).
    """
    started = slow_step(monkeypatch, 3200, 0.8)  # 0.2 s at hop 5: one step, 5 frames
    srv = ServerThread(model, ServeConfig(port=0, drain_timeout_s=5.0)).start()
    try:
        with connect(srv.ws_url, open_timeout=WAIT) as ws:
            ws.send(hello(hop_frames=5, format="binary", seed=0, smooth=False))
            json.loads(ws.recv(timeout=WAIT))
            ws.send((speech_like(0.2, seed=1) * 20000).astype("<i2").tobytes())
            assert started.wait(WAIT)
            srv.stop()
            frames = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    msg = ws.recv(timeout=WAIT)
                    if isinstance(msg, bytes):
                        frames.append(P.decode_frames_binary(msg)[1])
        assert closed.value.rcvd.code == P.CLOSE_GOING_AWAY and "shutting down" in closed.value.rcvd.reason
        assert sum(f.shape[1] for f in frames) == 5
        assert srv.server.abandoned_steps == 0
        assert not [t for t in threading.enumerate() if t.name.startswith("unils-serve-")]
    finally:
        srv.stop()


def test_the_drain_answers_503_and_health_says_draining(model, monkeypatch):
    """While a session drains, new WebSocket requests get 503 and /healthz 503 "draining" (not refused)."""
    started = slow_step(monkeypatch, 3200, 2.0)
    srv = ServerThread(model, ServeConfig(port=0, drain_timeout_s=8.0)).start()
    port = srv.server.port
    try:
        with connect(srv.ws_url, open_timeout=WAIT) as ws:
            ws.send(hello(hop_frames=5, format="binary", seed=0))
            json.loads(ws.recv(timeout=WAIT))
            ws.send(np.zeros(3200, np.int16).tobytes())
            assert started.wait(WAIT)
            stopper = threading.Thread(target=srv.stop)
            stopper.start()
            wait_until(lambda: srv.server.draining, "the drain to begin")
            with pytest.raises(urllib.error.HTTPError) as health:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=WAIT)
            assert health.value.code == 503 and json.loads(health.value.read())["status"] == "draining"
            with pytest.raises(InvalidStatus) as refused:
                connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT)
            assert refused.value.response.status_code == 503
            assert srv.server.open_connections == 1  # the draining session is still there
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=WAIT)
            assert closed.value.rcvd.code == P.CLOSE_GOING_AWAY
            stopper.join(WAIT)
        with pytest.raises(OSError):  # once drained, the listener is closed
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        srv.stop()


SERVE_UNDER_LOAD = r"""
import logging, sys, time, torch
sys.path.insert(0, sys.argv[2])
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
from helpers import randomize_, tiny_config
from unils import UniLS
from unils.serve.server import ServeConfig, run
from unils.streaming import StreamSession

torch.set_num_threads(2)
model = randomize_(UniLS(tiny_config())).eval()
original = StreamSession.feed
x = torch.randn(384, 384)

def heavy(self, audio, partner_audio=None):
    for _ in range(int(sys.argv[1])):  # native work in the model thread, as a real model's step
        torch.mm(x, x)
    return original(self, audio, partner_audio)

StreamSession.feed = heavy
cfg = ServeConfig(port=0, max_sessions=8, workers=2, drain_timeout_s=10.0)
sys.exit(run(model, cfg, on_ready=lambda s: print(s.ws_url, flush=True)))
"""


def test_sigterm_under_load_exits_0_after_1001_and_every_computed_frame(model, tmp_path):
    """A rolling restart: 4 sessions at 4x real time, steps running in native code, SIGTERM. Exit status 0,
    every client gets 1001, and every frame the server counted as computed was received.
    """
    script = tmp_path / "serve.py"
    script.write_text(SERVE_UNDER_LOAD)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", str(ROOT / "src")), str(ROOT / "tests")]),
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), "50", str(ROOT / "tests")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=120), "the server printed nothing"
        url = proc.stdout.readline().strip()
        assert url.startswith("ws://"), url + proc.stderr.read()
        results: dict[int, tuple[int, int]] = {}  # session id -> (close code, frames received)

        def one(k: int) -> None:
            a = speech_like(30.0, seed=k)
            client = StreamClient(url, seed=k, hop_frames=5)
            try:
                t0 = time.monotonic()
                for i in range(0, len(a), 1600):
                    time.sleep(max(0.0, t0 + i / 16000 / 4 - time.monotonic()))
                    client.push(a[i : i + 1600])
                client.end(timeout=WAIT)
                results[client.ready["session"]] = (1000, client.frames_received)
            except ProtocolError as exc:
                results[client.ready["session"]] = (exc.code, client.frames_received)

        threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(3.0)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(WAIT)
        rc = proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, err[-3000:]
    assert "abandoned" not in err and "terminate called" not in err, err[-3000:]
    assert sorted(code for code, _ in results.values()) == [1001] * 4, results
    # Every frame the server sent before its 1001 (its close log) arrived, the running steps' included.
    sent = {int(c): int(f) for c, f in re.findall(r"close conn=(\d+) .*code=1001 .*frames=(\d+)", err)}
    assert sent == {cid: frames for cid, (_, frames) in results.items()}, (sent, results)


# ---------------------------------------------------------------------------------------------- 4. 4009 drops the socket
def test_a_peer_that_never_reads_is_dropped_after_4009(model):
    """After 4009 the TCP connection is gone within the close timeout, though the peer keeps its socket open.

    The first server's close waited for its unsent data to drain, which this peer never allows: the
    connection stayed open, counted in connections_open and in the per-address limit.
    """
    cfg = ServeConfig(
        port=0,
        send_timeout_s=0.5,
        close_timeout_s=0.5,
        max_output_bytes=1 << 16,
        send_buffer_bytes=8192,
        max_connections_per_address=2,
    )
    with ServerThread(model, cfg) as srv:
        stallers = [RawWebSocket(srv.server.port, rcvbuf=4096) for _ in range(2)]
        for s in stallers:
            assert s.status == 101
            s.send(hello(hop_frames=5, format="json", seed=0))
            s.send((speech_like(20.0, seed=1) * 20000).astype("<i2").tobytes()[: 1 << 19])
        wait_until(lambda: srv.server.closed_by_code[P.CLOSE_SLOW_READER] == 2, "both stallers to get 4009")
        t0 = time.monotonic()
        wait_until(lambda: srv.server.open_connections == 0, "the connections to be dropped", timeout=10)
        dropped_after = time.monotonic() - t0
        assert srv.server.active_sessions == 0 and srv.server._per_address == Counter()
        # The address's places are free again, and the peers see their connection end (reset or EOF).
        with StreamClient(srv.ws_url, seed=0) as client:
            assert len(client.end()) == 0
        for s in stallers:
            s.sock.settimeout(5)
            with pytest.raises((ConnectionResetError, AssertionError)):
                while s.sock.recv(1 << 16):
                    pass
                raise AssertionError("EOF")
            s.close()
    assert dropped_after < 10  # bounded (close timeout 0.5 s; generous for a loaded machine)


# ---------------------------------------------------------------------------------------------- 5. behind a proxy
def test_forwarded_policy_unit():
    from unils.serve.access import ForwardedPolicy

    local = ForwardedPolicy(("127.0.0.1", "::1"))
    assert local.client("127.0.0.1", "203.0.113.7") == "203.0.113.7"
    assert local.client("198.51.100.1", "203.0.113.7") == "198.51.100.1"  # untrusted peer: header ignored
    assert local.client("127.0.0.1", None) == "127.0.0.1"
    # Right to left, skipping trusted proxies; a spoofed left-most entry does not win.
    chain = ForwardedPolicy(("10.0.0.0/8",))
    assert chain.client("10.0.0.2", "1.1.1.1, 203.0.113.7, 10.0.0.9") == "203.0.113.7"
    assert chain.client("10.0.0.2", "10.0.0.5, 10.0.0.9") == "10.0.0.5"  # all trusted: the left-most
    assert chain.client("10.1.2.3", "[2001:db8::1]:443") == "2001:db8::1"
    anyone = ForwardedPolicy(("*",))
    assert anyone.client("198.51.100.1", "1.1.1.1, 2.2.2.2") == "1.1.1.1"
    with pytest.raises(ConfigError, match="forwarded-allow-ips"):
        ServeConfig(forwarded_allow_ips=("proxy.example",)).validate()


def test_the_per_address_limit_reads_x_forwarded_for_from_trusted_proxies(model):
    cfg = ServeConfig(port=0, max_connections_per_address=1, forwarded_allow_ips=("127.0.0.1",))
    with ServerThread(model, cfg) as srv:
        port = srv.server.port
        a = RawWebSocket(port, {"X-Forwarded-For": "203.0.113.1"})
        b = RawWebSocket(port, {"X-Forwarded-For": "203.0.113.2"})  # another user behind the same proxy
        c = RawWebSocket(port, {"X-Forwarded-For": "203.0.113.1"})  # the first user again
        assert (a.status, b.status, c.status) == (101, 101, 429)
        for s in (a, b, c):
            s.close()
    # The proxy is not trusted: the header is ignored and the proxy's own address is limited.
    with ServerThread(
        model, ServeConfig(port=0, max_connections_per_address=1, forwarded_allow_ips=("10.0.0.1",))
    ) as srv:
        a = RawWebSocket(srv.server.port, {"X-Forwarded-For": "203.0.113.1"})
        b = RawWebSocket(srv.server.port, {"X-Forwarded-For": "203.0.113.2"})
        assert (a.status, b.status) == (101, 429)
        for s in (a, b):
            s.close()


def test_serve_command_takes_forwarded_allow_ips():
    import argparse

    from unils.cli import serve as serve_cli

    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--forwarded-allow-ips", "10.0.0.0/8, 192.168.1.5"])
    assert serve_cli.config_from_args(args).forwarded_allow_ips == ("10.0.0.0/8", "192.168.1.5")
    args = parser.parse_args(["serve"])
    assert serve_cli.config_from_args(args).forwarded_allow_ips == ("127.0.0.1", "::1")


# ---------------------------------------------------------------------------------------------- 7. metrics, 1007
def test_handshake_timeouts_and_slowloris_drops_are_counted(model):
    with ServerThread(model, ServeConfig(port=0, hello_timeout_s=0.5)) as srv:
        port = srv.server.port
        silent = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        slow = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        slow.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
        for s in (silent, slow):
            assert s.recv(100) == b""  # dropped by the server
            s.close()
        wait_until(lambda: srv.server.metrics.slowloris_drops == 1, "the count")
        values = metric_values(srv.url)
    assert values["unils_serve_handshake_timeouts_total"] == 1
    assert values["unils_serve_slowloris_drops_total"] == 1


def test_invalid_utf8_closes_with_1007_and_every_close_code_is_documented(model):
    with ServerThread(model, ServeConfig(port=0)) as srv:
        raw = RawWebSocket(srv.server.port)
        raw.send(hello())
        raw.sock.sendall(bytes([0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28]))  # a text frame of invalid UTF-8
        data = b""
        while len(data) < 4 or b"\x88" not in data:
            chunk = raw.sock.recv(4096)
            if not chunk:
                break
            data += chunk
        raw.close()
        close = data[data.index(b"\x88") :]
        assert int.from_bytes(close[2:4], "big") == P.CLOSE_BAD_DATA == 1007
        wait_until(lambda: srv.server.closed_by_code[1007] == 1, "the close to be counted")
    table = (ROOT / "docs" / "serve.md").read_text().split("### Close codes", 1)[1].split("\n### ", 1)[0]
    documented = {int(c) for c in re.findall(r"^\| (\d{4}) \|", table, re.M)}
    codes = {getattr(P, n) for n in P.__all__ if n.startswith("CLOSE_")}
    assert codes <= documented, codes - documented


# ---------------------------------------------------------------------------------------------- issue 25: slots
def test_slot_accounting_without_a_server():
    from unils.serve.slots import SlotPool

    pool = SlotPool(2)
    a, b, c = pool.slot(), pool.slot(), pool.slot()
    assert a.take() and b.take() and not c.take() and pool.active == 2 and pool.free == 0
    a.release(1000)
    a.release(4009)  # once only: the first code counts
    assert pool.active == 1 and c.take() and pool.active == 2
    with pool.slot() as d:  # a connection whose end took no explicit path: 1006, never a leak
        assert not d.take()
    b.release(4009)
    c.release(1001)
    assert pool.active == 0 and pool.closes == {1000: 1, 1006: 1, 4009: 1, 1001: 1}
    pool.draining = True
    e = pool.slot()
    assert not e.take() and pool.free == 0
    e.release(1001)
    assert pool.active == 0 and pool.closes[1001] == 2


def test_session_module_does_not_import_the_server():
    import unils.serve

    serve_dir = Path(unils.serve.__file__).parent  # the sources under test
    for name in ("session.py", "slots.py", "settings.py", "scheduler.py", "metrics.py", "protocol.py"):
        path = serve_dir / name
        if not path.exists():
            pytest.fail(f"{name} is missing: slots and settings live in their own modules")
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "server" not in imported and "unils.serve.server" not in imported, name
    text = (serve_dir / "server.py").read_text()
    assert "has_slot" not in text and ".ws.transport" not in text


def test_stats_message_lives_beside_ack_message(model):
    with model.stream(partner=False, seed=0) as s:
        s.push(speech_like(0.5, seed=1))
        msg = json.loads(P.stats_message(s, 0.25))
        end = json.loads(P.stats_message(s, 0.0, kind="end"))
    assert (
        msg["type"] == "stats" and msg["push_compute_s"] == 0.25 and msg["frames_emitted"] == s.frames_emitted
    )
    assert end["type"] == "end" and "real_time_factor" in msg
