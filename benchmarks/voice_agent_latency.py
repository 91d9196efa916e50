"""Voice-agent latency: from a bot audio sample arriving at UniLSAvatarProcessor to its frame leaving.

    python benchmarks/voice_agent_latency.py [--model demo] [--seconds 12] [--hops 0 25 10 5]
                                             [--dtype auto] [--threads 2] [--out benchmarks/results/...json]

A real Pipecat pipeline runs in process on the wall clock: the bot's TTS audio (24 kHz) arrives at
real-time pace in 20 ms chunks, as a streaming TTS delivers it to the output transport, and the
user's microphone (16 kHz) in 20 ms frames, both from ``examples/dialogue`` (person A is the bot,
person B the user). For every motion frame, the latency is the time from the arrival of the last
bot audio sample of that frame (the end of its 40 ms) to the ``MotionFrame`` reaching the end of the
pipeline. It includes the algorithmic latency (the rest of the hop and the 4 frames of smoothing
lookahead) and the compute. Hop 0 means exact mode. Frames of the final flush are left out.

When the TTS delivers faster than real time, the bot audio waits for its playback before it can be
animated (the user's audio of that moment is needed): add that queueing time to these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from unils import UniLS
from unils.audio import load_audio
from unils.precision import cpu_kind
from unils.resample import Resampler

ROOT = Path(__file__).resolve().parents[1]


async def run_mode(model: UniLS, bot: np.ndarray, user: np.ndarray, hop: int | None) -> dict:
    from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, TTSAudioRawFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from unils.pipecat import MotionFrame, UniLSAvatarProcessor

    leaves: list[tuple[float, MotionFrame]] = []

    class Sink(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, MotionFrame):
                leaves.append((time.monotonic(), frame))
            await self.push_frame(frame, direction)

    proc = UniLSAvatarProcessor(model, hop_frames=hop, seed=0)
    worker = PipelineWorker(Pipeline([proc, Sink()]), cancel_on_idle_timeout=False, enable_rtvi=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: object, frame: object) -> None:
        started.set()

    def pcm16(x: np.ndarray) -> bytes:
        return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()

    bot_chunk, user_chunk = 24000 // 50, 16000 // 50
    arrivals: list[float] = []  # wall time when each 20 ms bot chunk arrived
    end_time = [0.0]

    async def feed() -> None:
        await started.wait()
        t0 = time.monotonic()
        n = min(len(bot) // bot_chunk, len(user) // user_chunk)
        for k in range(n):
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - time.monotonic()))
            arrivals.append(time.monotonic())
            b = bot[k * bot_chunk : (k + 1) * bot_chunk]
            u = user[k * user_chunk : (k + 1) * user_chunk]
            await worker.queue_frame(TTSAudioRawFrame(audio=pcm16(b), sample_rate=24000, num_channels=1))
            await worker.queue_frame(InputAudioRawFrame(audio=pcm16(u), sample_rate=16000, num_channels=1))
        await asyncio.sleep(0.05)
        end_time[0] = time.monotonic()
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())

    latencies = []
    for t, f in leaves:
        if t >= end_time[0]:
            continue  # the final flush
        for i in range(f.first_frame, f.first_frame + len(f.motion)):
            last_chunk = 2 * i + 1  # frame i ends with the 20 ms chunk 2i+1
            if last_chunk < len(arrivals):
                latencies.append(t - arrivals[last_chunk])
    lat = np.asarray(latencies)
    frames = sum(len(f.motion) for _, f in leaves)
    lookahead = 4
    hop_frames = model.config.window_frames if hop is None else hop
    return {
        "mode": "exact" if hop is None else f"hop {hop}",
        "hop_frames": hop,
        "algorithmic_latency_s": round((hop_frames + lookahead) / model.config.fps, 3),
        "frames": frames,
        "frames_measured": int(lat.size),
        "latency_p50_s": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "latency_p95_s": round(float(np.percentile(lat, 95)), 3) if lat.size else None,
        "latency_max_s": round(float(lat.max()), 3) if lat.size else None,
        "latency_min_s": round(float(lat.min()), 3) if lat.size else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--hops", type=int, nargs="+", default=[0, 25, 10, 5], help="0 = exact mode")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = UniLS.from_pretrained(args.model, dtype=args.dtype)
    a = load_audio(ROOT / "examples/dialogue/person_a.flac")  # 16 kHz mono
    b = load_audio(ROOT / "examples/dialogue/person_b.flac")
    n = int(args.seconds * 16000)
    res = Resampler(16000, 24000)
    bot = np.concatenate([res.push(a[:n]), res.flush()])
    user = b[:n]
    load_before = os.getloadavg()[0]
    rows = []
    for hop in args.hops:
        row = asyncio.run(run_mode(model, bot, user, None if hop == 0 else hop))
        print(json.dumps(row))
        rows.append(row)
    result = {
        "benchmark": "voice_agent_latency",
        "cpu_kind": cpu_kind(),
        "threads": args.threads,
        "model": args.model,
        "precision": str(model.precision),
        "seconds": args.seconds,
        # The machine may be shared: the 1-minute load average before and after the run.
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "pipeline": "pipecat PipelineWorker [UniLSAvatarProcessor, sink], TTS 24 kHz + mic 16 kHz, 20 ms real-time chunks",
        "rows": rows,
    }
    kind = cpu_kind().replace(", ", "_").replace(" ", "-").lower()
    out = Path(args.out or ROOT / "benchmarks/results" / f"voice_agent_latency_{args.model}_{kind}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
