"""Load test of ``unils serve``: many concurrent clients on the loopback address, bounded in time.

    python benchmarks/serve_load.py [--model PATH | --size small|tiny] [--clients 16] [--seconds 60] [--session-s 15]
        [--hop-frames N] [--resampled-clients 2] [--threads 1] [--no-batch-steps] [--dtype float32]
        [--json benchmarks/results/serve_load.json]

Starts ``unils serve`` as a subprocess on 127.0.0.1 (a port the OS picks), then runs ``--clients``
clients in one asyncio loop, their starts spread over ``--stagger-s`` (one 4 s window by default). Each client streams two-person synthetic audio (person + partner,
20 ms blocks) at real-time pace, in sessions of ``--session-s`` seconds, opening a new session
after each one until ``--seconds`` have passed; then every client ends its session and the server
is stopped. Session churn is deliberate: memory must stay flat across sessions, not only within one.

Reported: frames/s received; newest-frame latency p50/p95 (from sending the audio a frame ends on
to receiving that frame: the smoothing lookahead 0.16 s + server queueing + compute; in exact mode
the first frame of a window additionally waits for the rest of its 4 s window); the server's step
compute p50/p95; the share of frames late (arriving more than one hop after the session's algorithmic
latency, from the audio they end on); the server's batched steps (``--batch-steps``, the default, vs
``--no-batch-steps``: sessions stepped in turn); errors (any refused or broken session, and any session whose frame count differs
from ceil(samples / 640)); the server's RSS sampled every second.

Without ``--model`` a random model is used: ``--size small`` (mel front end, 256-wide generator, as
``benchmarks/streaming.py``) or ``--size tiny`` (the test suite's layout, so that the figures
measure the server: protocol, concurrency, memory, rather than model compute).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import platform
import re
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unils import UniLS, UniLSConfig
from unils.bench import conversation_audio, random_model, small_random_config
from unils.config import AudioEncoderConfig, CodecConfig, GeneratorConfig, Wav2Vec2Config
from unils.precision import cpu_kind
from unils.serve import AsyncStreamClient


def tiny_random_model() -> UniLS:
    """The test suite's tiny layout (real 108-d motion, 100-frame windows, a 1-layer wav2vec2)."""
    cfg = UniLSConfig(
        codec=CodecConfig(hidden_dim=32, depth=1, num_heads=2),
        generator=GeneratorConfig(embed_dim=32, depth=2, num_heads=2),
        audio_encoder=AudioEncoderConfig(wav2vec2=Wav2Vec2Config(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)),
        name="bench-tiny-random",
    )
    torch.manual_seed(0)
    return UniLS(cfg).eval()


def small_random_model() -> UniLS:
    return random_model(small_random_config())


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_server(model_dir: str, clients: int, threads: int, workers: int | None, hop: int | None,
                 batch_steps: bool = True, dtype: str | None = None) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "unils", "serve", "--model", model_dir, "--host", "127.0.0.1", "--port", "0",
           "--max-sessions", str(clients), "--threads", str(threads), "--min-hop-frames", str(min(hop or 5, 5)),
           "--max-connections-per-address", str(max(16, clients))]  # every client comes from 127.0.0.1
    if workers:
        cmd += ["--workers", str(workers)]
    if not batch_steps:
        cmd += ["--no-batch-steps"]
    if dtype:
        cmd += ["--dtype", dtype]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout=120):
        proc.kill()
        raise RuntimeError("unils serve did not start within 120 s")
    line = proc.stdout.readline()
    match = re.search(r"(ws://127\.0\.0\.1:\d+/ws)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"unexpected server output: {line!r} {proc.stderr.read()}")
    return proc, match.group(1)


def server_metrics(ws_url: str) -> dict[str, float]:
    """The server's unlabelled metrics (``GET /metrics``)."""
    import urllib.request

    with urllib.request.urlopen(ws_url.replace("ws://", "http://").replace("/ws", "/metrics"), timeout=30) as r:
        text = r.read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#") and "{" not in line}


class Tally:
    def __init__(self) -> None:
        self.frames = 0
        self.sessions = 0
        self.latencies: list[float] = []
        self.frames_late = 0
        self.frames_timed = 0
        self.step_p50: list[float] = []
        self.step_p95: list[float] = []
        self.errors: list[str] = []


async def client_loop(idx: int, url: str, args: argparse.Namespace, deadline: float, tally: Tally) -> None:
    sr = 48000 if idx < args.resampled_clients else 16000
    block = int(sr * args.block_ms / 1000)
    session_no = 0
    # Real users do not start in the same 20 ms: spread the starts over --stagger-s so that window
    # steps (and end-of-session flushes) do not all fall due at once (--stagger-s 0: the worst case).
    await asyncio.sleep(idx * args.stagger_s / args.clients)
    while time.perf_counter() < deadline:
        a, b = conversation_audio(args.session_s, seed=1000 * idx + session_no, sr=sr)
        session_no += 1
        sent: list[tuple[float, float]] = []  # (audio seconds sent so far, when)
        on_time = [math.inf]  # latency allowed: the session's algorithmic latency + one hop (from ready)

        def on_frames(start: int, count: int, received_at: float) -> None:
            # The newest frame ends at end_s; its audio left with the first block reaching end_s
            # (the last block for the tail frames that the final flush rounds up).
            end_s = (start + count) / 25.0
            i = min(bisect.bisect_left(sent, (end_s, -math.inf)), len(sent) - 1)
            if i >= 0:
                tally.latencies.append(received_at - sent[i][1])
                tally.frames_timed += count
                tally.frames_late += count if received_at - sent[i][1] > on_time[0] else 0

        try:
            client = await AsyncStreamClient.connect(url, sample_rate=sr, partner=True, encoding="pcm16",
                                                     format=args.format, seed=idx, hop_frames=args.hop_frames,
                                                     on_frames=on_frames)
            on_time[0] = client.ready["algorithmic_latency_s"] + client.ready["hop_frames"] / 25.0
            t0 = time.perf_counter()
            got = 0
            for i in range(0, a.shape[0], block):
                # Real-time pace: a block is sent when it would have been recorded.
                await asyncio.sleep(max(0.0, t0 + (i + block) / sr - time.perf_counter()))
                got += len(await client.push(a[i : i + block], b[i : i + block]))
                sent.append(((i + block) / sr, time.perf_counter()))
                if time.perf_counter() > deadline + 2 * args.session_s:
                    break
            got += len(await client.end(timeout=120))
            expected = math.ceil(round(a.shape[0] * 16000 / sr) / 640)
            if got != expected:
                tally.errors.append(f"client {idx}: {got} frames, expected {expected}")
            tally.frames += got
            tally.sessions += 1
            if client.stats:
                tally.step_p50.append(client.stats["step_p50_s"])
                tally.step_p95.append(client.stats["step_p95_s"])
        except Exception as exc:  # noqa: BLE001 - every failure is a counted error
            tally.errors.append(f"client {idx}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.5)


async def run_clients(url: str, pid: int, args: argparse.Namespace) -> dict:
    tally = Tally()
    rss: list[tuple[float, float]] = []
    t_start = time.perf_counter()
    deadline = t_start + args.seconds
    server_cpu0, client_cpu0 = cpu_s(pid), own_cpu_s()

    async def sample_rss() -> None:
        while True:
            rss.append((time.perf_counter() - t_start, rss_mb(pid)))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample_rss())
    await asyncio.gather(*(client_loop(i, url, args, deadline, tally) for i in range(args.clients)))
    elapsed = time.perf_counter() - t_start
    scraped = await asyncio.to_thread(server_metrics, url)
    server_cpu, client_cpu = cpu_s(pid) - server_cpu0, own_cpu_s() - client_cpu0
    sampler.cancel()
    rss.append((elapsed, rss_mb(pid)))
    def pct(q: float) -> float | None:
        return round(float(np.percentile(tally.latencies, q)), 3) if tally.latencies else None

    warm = [m for t, m in rss if t >= min(10.0, args.seconds / 2)]
    return {
        "elapsed_s": round(elapsed, 2),
        "sessions_completed": tally.sessions,
        "frames": tally.frames,
        "frames_per_s": round(tally.frames / elapsed, 1),
        "realtime_frames_per_s_needed": 25 * args.clients,
        "latency_newest_frame_p50_s": pct(50),
        "latency_newest_frame_p95_s": pct(95),
        "latency_samples": len(tally.latencies),
        "frames_late_fraction": round(tally.frames_late / tally.frames_timed, 4) if tally.frames_timed else None,
        "server_step_p50_s": round(float(np.median(tally.step_p50)), 4) if tally.step_p50 else None,
        "server_step_p95_s": round(float(np.median(tally.step_p95)), 4) if tally.step_p95 else None,
        # CPU actually used (cores = CPU seconds / wall seconds): what the load costs, whatever else
        # the machine is running; the client figure is the load generator itself.
        "server_cpu_s": round(server_cpu, 1),
        "server_cores_used": round(server_cpu / elapsed, 2),
        "client_cpu_s": round(client_cpu, 1),
        "load_average_1min_end": round(os.getloadavg()[0], 2),
        "server_steps_total": scraped.get("unils_serve_steps_total"),
        "server_batches_total": scraped.get("unils_serve_batches_total"),
        "server_batched_rows_total": scraped.get("unils_serve_batched_rows_total"),
        "server_batch_size_max": scraped.get("unils_serve_batch_size_max"),
        "errors": len(tally.errors),
        "error_messages": tally.errors[:20],
        "rss_mb_start": round(rss[0][1], 1),
        "rss_mb_after_warmup": round(warm[0], 1) if warm else None,
        "rss_mb_end": round(rss[-1][1], 1),
        "rss_mb_max": round(max(m for _, m in rss), 1),
        "rss_mb_samples": [[round(t, 1), round(m, 1)] for t, m in rss],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint folder (default: a random model of --size)")
    ap.add_argument("--size", choices=["small", "tiny"], default="small",
                    help="random model without --model: small (mel, 256-wide) or tiny (the tests' layout; "
                    "measures the server rather than the model)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0, help="how long clients keep opening sessions")
    ap.add_argument("--session-s", type=float, default=15.0, help="audio per session")
    ap.add_argument("--block-ms", type=float, default=20.0)
    ap.add_argument("--stagger-s", type=float, default=4.0,
                    help="spread client starts over this many seconds (default one window; 0 = all at once)")
    ap.add_argument("--hop-frames", type=int, default=None, help="low-latency hop; default exact mode")
    ap.add_argument("--format", choices=["binary", "json"], default="binary")
    ap.add_argument("--resampled-clients", type=int, default=2, help="clients sending 48 kHz audio")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per model worker in the server")
    ap.add_argument("--workers", type=int, default=None, help="server model threads (default: CPUs)")
    ap.add_argument("--batch-steps", action=argparse.BooleanOptionalAction, default=True,
                    help="continuous batching in the server (default on; --no-batch-steps: steps in turn)")
    ap.add_argument("--dtype", default=None, help="the server's --dtype (default: the model's default precision)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    if not (1 <= args.clients <= 64 and 0 < args.seconds <= 600 and 0 < args.session_s <= 120):
        ap.error("bounded load only: 1..64 clients, at most 600 s, sessions of at most 120 s")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            model_dir = str(Path(tmp) / "model")
            (small_random_model() if args.size == "small" else tiny_random_model()).save_pretrained(model_dir)
        proc, url = start_server(model_dir, args.clients, args.threads, args.workers, args.hop_frames,
                                 args.batch_steps, args.dtype)
        try:
            results = asyncio.run(run_clients(url, proc.pid, args))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    report = {
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "model": args.model or {"small": "small random (mel front end, 256-wide, 4 layers)",
                                "tiny": "tiny random (tests' layout: 32-wide, 1-layer wav2vec2)"}[args.size],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpu_kind": cpu_kind()},
        **results,
    }
    summary = {k: v for k, v in report.items() if k not in ("rss_mb_samples", "error_messages")}
    print(json.dumps(summary, indent=2))
    for msg in report["error_messages"]:
        print("error:", msg)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
