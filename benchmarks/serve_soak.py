"""Soak test of ``unils serve``: ten kinds of client at once, rolling restarts, on loopback, for minutes.

    python benchmarks/serve_soak.py [--model demo] [--seconds 600] [--restart-every 0]
                                    [--json benchmarks/results/serve_soak.json]

Starts a server as a subprocess on 127.0.0.1 (a free port; 2 model threads, torch intra-op
threads 1) and runs, in one asyncio loop, until ``--seconds`` have passed:

* ``realtime_hop25``: 16 kHz, person + partner, hop 25, real-time pace, 60 s sessions (the neighbour
  whose lag is measured);
* ``realtime_exact_48k``: 48 kHz, both people, exact mode, real-time pace, 60 s sessions;
* ``fast_10x``: exact mode at 10x real time, 120 s sessions;
* ``fast_flood``: hop 25, as fast as the server's credit allows (the hog), 60 s sessions;
* ``staller``: hello, 20 s of audio at once, then never reads (expects close 4009);
* ``garbage``: non-HTTP bytes, broken JSON, 3000-deep hellos, absurd knobs, odd-length audio;
* ``helloless``: three connections at a time that never say hello (expect 4008);
* ``storm``: every 5 s, ten connections at once: hello, 1 s of audio, then half end, half vanish;
* ``tts``: text-to-speech-sized pushes: whole 10 s utterances of two-person float32 audio (1.28 MB,
  more than one message may hold) in one ``push`` each, three per session, one every 10 s;
* ``ignore_credit_exact`` / ``ignore_credit_hop5``: raw websockets clients (their default keepalive:
  ping every 20 s, 20 s timeout) that send ``--long-audio-s`` (128 s) of two-person float32 audio as
  fast as the socket takes it, ignoring acks, and read the frames (expect 1000 and every frame).

With ``--restart-every S`` the server gets SIGTERM every S seconds (a rolling restart): the benchmark
checks that ``/healthz`` answers 503 "draining" during the drain, records the exit status and the
drain time, and starts a new server on the same port; clients reconnect (sessions cut by a restart
end with 1001 and are tallied apart).

Reported: sessions per client kind; frames expected (``ceil(samples / 640)`` at 16 kHz) against
received for every session that ended normally; lag of the real-time clients (from sending the
audio that completes a frames message, smoothing lookahead included, to receiving it) p50/p95;
the server's RSS every 5 s and its slope after the first minute; closes by code (server metrics)
and the client-side tallies, per server instance and summed. Only 127.0.0.1 is ever contacted; every
loop is bounded by the clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from unils.bench import conversation_audio
from unils.serve import AsyncStreamClient
from unils.serve.protocol import PROTOCOL_VERSION

SERVER = r"""
import sys, logging, torch
torch.set_num_threads(1)
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
from unils import UniLS
from unils.bench import random_model, small_random_config
from unils.serve.server import ServeConfig, run
model = random_model(small_random_config()) if sys.argv[1] == "small" else UniLS.from_pretrained(sys.argv[1])
cfg = ServeConfig(port=int(sys.argv[2]), max_sessions=16, workers=2, max_connections_per_address=64, hello_timeout_s=2.0,
                  idle_timeout_s=10.0, send_timeout_s=5.0, min_hop_frames=5)
sys.exit(run(model, cfg, on_ready=lambda s: print(s.ws_url, flush=True)))
"""

FPS, SPF = 25, 640


class Soak:
    def __init__(self, url: str, seconds: float, long_audio_s: float = 128.0) -> None:
        self.long_audio_s = long_audio_s
        self.url = url
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.end = time.monotonic() + seconds
        self.sessions: Counter[str] = Counter()
        self.expected: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.mismatches: list[dict] = []
        self.closes: dict[str, Counter[str]] = defaultdict(Counter)
        self.lags: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []

    def live(self) -> bool:
        return time.monotonic() < self.end

    # ------------------------------------------------------------------ well-behaved streams
    async def stream(self, kind: str, session_s: float, speed: float | None, hop: int | None, rate: int = 16000,
                     both: bool = False, seed: int = 0) -> None:
        a16, b16 = conversation_audio(session_s, seed=seed)
        if rate != 16000:
            a, b = (np.repeat(x, rate // 16000) for x in (a16, b16))  # simple, exact length
        else:
            a, b = a16, b16
        block = rate // 50  # 20 ms
        while self.live():
            sent_at: list[float] = []
            arrivals: list[tuple[int, float]] = []
            try:
                client = await AsyncStreamClient.connect(
                    self.url, sample_rate=rate, partner=True, both=both, encoding="pcm16", format="binary",
                    seed=seed, hop_frames=hop, on_frames=lambda s, n, t, got=arrivals: got.append((s + n, t)))
            except Exception as exc:  # noqa: BLE001 - tallied (1013 under a storm is expected)
                self.closes[kind][f"connect: {getattr(exc, 'code', type(exc).__name__)}"] += 1
                await asyncio.sleep(0.5)
                continue
            self.sessions[kind] += 1
            t0 = time.monotonic()
            try:
                for k, i in enumerate(range(0, len(a), block)):
                    if speed is not None:
                        await asyncio.sleep(max(0.0, t0 + k * 0.02 / speed - time.monotonic()))
                    await client.send(a[i : i + block], b[i : i + block])
                    sent_at.append(time.monotonic())
                await client.end(timeout=600)
            except Exception as exc:  # noqa: BLE001 - a broken session is a finding, tallied
                self.closes[kind][f"broken: {getattr(exc, 'code', type(exc).__name__)}"] += 1
                if getattr(exc, "code", None) != 1001:  # 1001: a rolling restart, tallied only
                    self.errors.append(f"{kind}: {exc}")
                await client.close()
                continue
            self.closes[kind]["1000"] += 1
            want = math.ceil(len(a16) / SPF)
            self.expected[kind] += want
            self.received[kind] += client.frames_received
            if client.frames_received != want:
                self.mismatches.append({"kind": kind, "expected": want, "received": client.frames_received})
            if speed == 1.0:
                for end, t in arrivals:
                    need = min(len(sent_at) - 1, ((end + 4) * SPF - 1) // 320)  # the 20 ms block completing it
                    if (end + 4) * SPF <= len(a16):
                        self.lags[kind].append(t - sent_at[need])

    # ------------------------------------------------------------------ hostile clients
    async def raw(self, headers: str = "", rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        import base64
        import socket

        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: "
                      f"Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n").encode())
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        return reader, writer

    @staticmethod
    def frame(payload: bytes, opcode: int) -> bytes:
        import struct

        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0xFE]) + struct.pack(">H", n)
                                          if n < 65536 else bytes([0xFF]) + struct.pack(">Q", n))
        return head + b"\0\0\0\0" + payload  # a zero mask leaves the payload as is

    async def staller(self) -> None:
        audio = (conversation_audio(20.0, seed=9)[0] * 20000).astype("<i2").tobytes()
        hello = json.dumps({"type": "hello", "sample_rate": 16000, "hop_frames": 25, "format": "json"}).encode()
        while self.live():
            try:
                _reader, writer = await self.raw(rcvbuf=4096)
                self.sessions["staller"] += 1
                writer.write(self.frame(hello, 1) + self.frame(audio, 2))
                await asyncio.sleep(15)  # never reads; the server should give up after its send deadline
                writer.close()
            except Exception as exc:  # noqa: BLE001
                self.closes["staller"][type(exc).__name__] += 1
                await asyncio.sleep(0.5)  # e.g. refused during a restart

    async def garbage(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        hello = {"type": "hello", "sample_rate": 16000}
        cases = [
            ("bad json", ["{oops"]),
            ("deep", ['{"type": "hello", "sample_rate": 16000, "seed": ' + "[" * 3000 + "]" * 3000 + "}"]),
            ("absurd cfg", [json.dumps({**hello, "cfg_scale": 1e308})]),
            ("version true", [json.dumps({**hello, "version": True})]),
            ("odd audio", [json.dumps(hello), b"\x01\x02\x03"]),
            ("nan audio", [json.dumps({**hello, "encoding": "float32"}), np.array([np.nan], "<f4").tobytes()]),
            ("text after hello", [json.dumps(hello), "\x00garbage"]),
        ]
        i = 0
        while self.live():
            name, messages = cases[i % len(cases)]
            i += 1
            try:
                if i % 8 == 0:  # not HTTP at all
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.write(os.urandom(300) + b"\r\n\r\n")
                    await writer.drain()
                    writer.close()
                    self.closes["garbage"]["not http"] += 1
                    continue
                async with connect(self.url, open_timeout=10, compression=None) as ws:
                    self.sessions["garbage"] += 1
                    for m in messages:
                        await ws.send(m)
                    try:
                        while True:
                            await asyncio.wait_for(ws.recv(), 10)
                    except ConnectionClosed as exc:
                        self.closes["garbage"][f"{name}: {exc.rcvd.code if exc.rcvd else 1006}"] += 1
            except Exception as exc:  # noqa: BLE001
                self.closes["garbage"][f"{name}: {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5)

    async def helloless(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        async def one() -> None:
            try:
                async with connect(self.url, open_timeout=10, compression=None) as ws:
                    self.sessions["helloless"] += 1
                    try:
                        await asyncio.wait_for(ws.recv(), 15)
                    except ConnectionClosed as exc:
                        self.closes["helloless"][str(exc.rcvd.code if exc.rcvd else 1006)] += 1
            except Exception as exc:  # noqa: BLE001
                self.closes["helloless"][type(exc).__name__] += 1
                await asyncio.sleep(0.5)  # e.g. refused during a restart

        while self.live():
            await asyncio.gather(*(one() for _ in range(3)))

    async def storm(self) -> None:
        a, b = conversation_audio(1.0, seed=11)

        async def one(vanish: bool) -> None:
            try:
                client = await AsyncStreamClient.connect(self.url, partner=True, encoding="pcm16", format="binary")
            except Exception as exc:  # noqa: BLE001
                self.closes["storm"][f"connect: {getattr(exc, 'code', type(exc).__name__)}"] += 1
                return
            self.sessions["storm"] += 1
            await client.send(a, b)
            if vanish:
                client._ws.transport.abort()
                self.closes["storm"]["vanished"] += 1
                return
            try:
                await client.end(timeout=120)
                self.closes["storm"]["1000"] += 1
                self.expected["storm"] += 25
                self.received["storm"] += client.frames_received
                if client.frames_received != 25:
                    self.mismatches.append({"kind": "storm", "expected": 25, "received": client.frames_received})
            except Exception as exc:  # noqa: BLE001
                self.closes["storm"][f"broken: {getattr(exc, 'code', type(exc).__name__)}"] += 1

        while self.live():
            await asyncio.gather(*(one(k % 2 == 1) for k in range(10)))
            await asyncio.sleep(5)

    # ------------------------------------------------------------------ production clients
    async def tts(self, utterance_s: float = 10.0, per_session: int = 3) -> None:
        """Whole utterances in one push each (float32, two people: more than one message holds)."""
        kind = "tts"
        a, b = conversation_audio(utterance_s * per_session, seed=12)
        n = int(utterance_s * 16000)
        while self.live():
            try:
                client = await AsyncStreamClient.connect(self.url, partner=True, encoding="float32",
                                                         format="binary", seed=12)
            except Exception as exc:  # noqa: BLE001
                self.closes[kind][f"connect: {getattr(exc, 'code', type(exc).__name__)}"] += 1
                await asyncio.sleep(0.5)
                continue
            self.sessions[kind] += 1
            try:
                t0 = time.monotonic()
                for k in range(per_session):
                    await asyncio.sleep(max(0.0, t0 + k * utterance_s - time.monotonic()))
                    await client.push(a[k * n : (k + 1) * n], b[k * n : (k + 1) * n])
                await client.end(timeout=600)
            except Exception as exc:  # noqa: BLE001
                self.closes[kind][f"broken: {getattr(exc, 'code', type(exc).__name__)}"] += 1
                if getattr(exc, "code", None) != 1001:
                    self.errors.append(f"{kind}: {exc}")
                await client.close()
                continue
            self.closes[kind]["1000"] += 1
            want = math.ceil(len(a) / SPF)
            self.expected[kind] += want
            self.received[kind] += client.frames_received
            if client.frames_received != want:
                self.mismatches.append({"kind": kind, "expected": want, "received": client.frames_received})

    async def ignore_credit(self, kind: str, hop: int | None) -> None:
        """Long audio as fast as the socket takes it, acks ignored; frames read as they come."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        from unils.serve.protocol import decode_frames_binary

        a, b = conversation_audio(self.long_audio_s, seed=13)
        data = np.stack([a, b], axis=1).astype("<f4").tobytes()
        hello = json.dumps({"type": "hello", "sample_rate": 16000, "partner": True, "encoding": "float32",
                            "format": "binary", "seed": 13, "hop_frames": hop})
        want = math.ceil(len(a) / SPF)
        while self.live():
            got, code = 0, None
            try:
                async with connect(self.url, open_timeout=10, max_queue=None, compression=None) as ws:
                    await ws.send(hello)
                    json.loads(await ws.recv())
                    self.sessions[kind] += 1

                    async def read() -> None:
                        nonlocal got
                        async for msg in ws:
                            if isinstance(msg, bytes):
                                start, arr = decode_frames_binary(msg)
                                if start != got:
                                    raise AssertionError(f"frame {start} after {got}")
                                got += arr.shape[1]

                    reader = asyncio.ensure_future(read())
                    for i in range(0, len(data), 64000):  # 0.5 s per message
                        await ws.send(data[i : i + 64000])
                    await ws.send(json.dumps({"type": "end"}))
                    try:
                        await asyncio.wait_for(reader, 900)
                    except ConnectionClosed:
                        pass
                    code = ws.close_code
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else (exc.sent.code if exc.sent else 1006)
            except Exception as exc:  # noqa: BLE001
                self.closes[kind][f"connect: {getattr(exc, 'code', type(exc).__name__)}"] += 1
                await asyncio.sleep(0.5)
                continue
            self.closes[kind][str(code)] += 1
            if code == 1000:
                self.expected[kind] += want
                self.received[kind] += got
                if got != want:
                    self.mismatches.append({"kind": kind, "expected": want, "received": got})
            elif code == 1013:  # all sessions taken (storms): try again, as the other clients do
                await asyncio.sleep(0.5)
            elif code != 1001:  # 1001: a rolling restart
                self.errors.append(f"{kind}: closed with {code} after {got} of {want} frames")

    async def run(self) -> None:
        await asyncio.gather(
            self.tts(),
            self.ignore_credit("ignore_credit_exact", None),
            self.ignore_credit("ignore_credit_hop5", 5),
            self.stream("realtime_hop25", 60.0, 1.0, 25, seed=1),
            self.stream("realtime_exact_48k", 60.0, 1.0, None, rate=48000, both=True, seed=2),
            self.stream("fast_10x", 120.0, 10.0, None, seed=3),
            self.stream("fast_flood", 60.0, None, 25, seed=4),
            self.staller(), self.garbage(), self.helloless(), self.storm(),
        )


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]


def metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


class Server:
    """The server subprocess, restartable on the same port."""

    def __init__(self, model: str, log: str) -> None:
        self.model, self.log = model, log
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc: subprocess.Popen | None = None
        self.instances: list[dict] = []

    def start(self) -> str:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", SERVER, self.model, str(self.port)],
                                         stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        if not sel.select(timeout=300):
            raise SystemExit("the server did not start")
        return self.proc.stdout.readline().strip()  # type: ignore[union-attr]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def restart(self) -> None:
        """SIGTERM; watch /healthz during the drain; record exit status and times; start again."""
        assert self.proc is not None
        before = metrics(self.base + "metrics")
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        health: Counter[str] = Counter()
        while self.proc.poll() is None and time.monotonic() - t0 < 60:
            try:
                urllib.request.urlopen(self.base + "healthz", timeout=2)
                health["200"] += 1
            except urllib.error.HTTPError as exc:
                status = json.loads(exc.read()).get("status", "?")
                health[f"{exc.code} {status}"] += 1
            except OSError:
                health["refused"] += 1
            await asyncio.sleep(0.05)
        rc = await asyncio.to_thread(self.proc.wait, 60)
        drained = time.monotonic() - t0
        self.instances.append({"exit_status": rc, "drain_s": round(drained, 2), "healthz_during_drain": dict(health),
                               "metrics_before_sigterm": {k: v for k, v in before.items()
                                                          if k.startswith(("unils_serve_closes_total",
                                                                           "unils_serve_sessions_total",
                                                                           "unils_serve_frames_total"))}})
        await asyncio.to_thread(self.start)
        self.instances[-1]["down_s"] = round(time.monotonic() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="a model path/repo, 'demo' (bundled) or 'small' (random)")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--restart-every", type=float, default=0.0, help="SIGTERM and restart the server every S s")
    ap.add_argument("--long-audio-s", type=float, default=128.0, help="audio of each credit-ignoring session")
    ap.add_argument("--json", default=None)
    ap.add_argument("--server-log", default=os.devnull, help="where the server's warnings go")
    args = ap.parse_args()
    server = Server(args.model, args.server_log)
    url = server.start()
    try:
        base = server.base
        load_before = os.getloadavg()
        soak = Soak(url, args.seconds, args.long_audio_s)
        rss: list[tuple[float, float]] = []
        t0 = time.monotonic()

        async def sample() -> None:
            while soak.live():
                try:
                    rss.append((round(time.monotonic() - t0, 1), round(rss_mb(server.proc.pid), 1)))
                except (OSError, AttributeError):
                    pass  # restarting
                await asyncio.sleep(5)

        async def restarts() -> None:
            if args.restart_every <= 0:
                return
            while True:
                await asyncio.sleep(args.restart_every)
                if time.monotonic() + 10 > soak.end:
                    return
                await server.restart()

        async def everything() -> None:
            await asyncio.gather(soak.run(), sample(), restarts())

        asyncio.run(everything())
        wall = time.monotonic() - t0
        time.sleep(3)  # let the last closes land
        m = metrics(base + "metrics")
        load_after = os.getloadavg()
    finally:
        if server.proc is not None:
            server.proc.terminate()
            final_rc = server.proc.wait(timeout=60)
    later = [(t, r) for t, r in rss if t >= 60] or rss
    slope = float(np.polyfit([t for t, _ in later], [r for _, r in later], 1)[0] * 60) if len(later) > 2 else 0.0
    lag = {k: {"p50_s": round(float(np.percentile(v, 50)), 3), "p95_s": round(float(np.percentile(v, 95)), 3),
               "max_s": round(float(np.max(v)), 3), "n": len(v)} for k, v in soak.lags.items() if v}
    out = {
        "model": args.model, "seconds": round(wall, 1), "protocol": PROTOCOL_VERSION,
        "restart_every_s": args.restart_every, "long_audio_s": args.long_audio_s,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": load_before,
                    "load_after": load_after},
        "sessions": dict(soak.sessions), "frames_expected": dict(soak.expected), "frames_received": dict(soak.received),
        "mismatches": soak.mismatches, "lag": lag,
        "rss_mb": {"start": rss[0][1] if rss else None, "end": rss[-1][1] if rss else None,
                   "max": max(r for _, r in rss) if rss else None, "slope_mb_per_min_after_60s": round(slope, 3),
                   "series": rss},
        "restarts": server.instances, "final_exit_status": final_rc,
        "server_closes_by_code (last instance)": {k.split('"')[1]: v for k, v in m.items()
                                                  if k.startswith("unils_serve_closes_total")},
        "server_http_refusals (last instance)": {k.split('"')[1]: v for k, v in m.items()
                                                 if k.startswith("unils_serve_http_refusals_total")},
        "server (last instance)": {k: m[k] for k in ("unils_serve_sessions_total", "unils_serve_connections_total",
                                                     "unils_serve_frames_total", "unils_serve_steps_total",
                                                     "unils_serve_step_seconds_sum",
                                                     "unils_serve_handshake_timeouts_total",
                                                     "unils_serve_slowloris_drops_total") if k in m},
        "client_closes": {k: dict(v) for k, v in soak.closes.items()},
        "errors": soak.errors[:20],
    }
    print(json.dumps({k: v for k, v in out.items() if k != "rss_mb"}, indent=1))
    print("rss", {k: v for k, v in out["rss_mb"].items() if k != "series"})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
