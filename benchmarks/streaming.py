"""Streaming benchmarks: low-latency drift vs latency, and memory over a long (one-hour) stream.

    python benchmarks/streaming.py drift  [--model PATH] [--seconds 40] [--hops 100 50 25 10]
    python benchmarks/streaming.py memory [--model PATH] [--seconds 3600] [--block-ms 20]
    python benchmarks/streaming.py steps  [--size large] [--dtype auto] [--seconds 12] [--hops 100 25 10]

Without ``--model`` a small random model is used (mel front end, 256-wide generator): memory
flatness is a property of the session code, and drift figures of random weights only say how far the
low-latency chaining moves away from the offline chaining, not how good either looks.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from unils import UniLS
from unils.bench import conversation_audio, random_model, small_random_config
from unils.config import UniLSConfig
from unils.precision import cpu_kind


def small_random_model() -> UniLS:
    return random_model(small_random_config())


def load(path: str | None) -> UniLS:
    return UniLS.from_pretrained(path) if path else small_random_model()


def drift(model: UniLS, seconds: float, hops: list[int], seed: int = 0) -> list[dict]:
    a, b = conversation_audio(seconds, seed=seed)
    offline = model.generate(a, b, seed=seed).to_array()
    rows = []
    for hop in hops:
        session = model.stream(seed=seed, hop_frames=hop)
        out = []
        t0 = time.perf_counter()
        for i in range(0, a.shape[0], 320):
            out.append(session.push(a[i : i + 320], b[i : i + 320]).to_array())
        out.append(session.flush().to_array())
        wall = time.perf_counter() - t0
        streamed = np.concatenate(out)
        stats = session.stats()
        diff = np.abs(streamed - offline)
        rows.append(
            {
                "hop_frames": hop,
                "algorithmic_latency_s": round(stats.algorithmic_latency_s, 3),
                "step_p50_s": round(stats.step_p50_s, 4),
                "step_p95_s": round(stats.step_p95_s, 4),
                "real_time_factor": round(wall / seconds, 4),
                "mean_abs_diff_all": float(diff.mean()),
                "mean_abs_diff_jaw": float(diff[:, 103].mean()),
                "mean_abs_diff_head_pose": float(diff[:, 100:103].mean()),
                "offline_std_jaw": float(offline[:, 103].std()),
                "identical_to_offline": bool(diff.max() < 1e-5),
            }
        )
        print(json.dumps(rows[-1]))
    return rows


def memory(model: UniLS, seconds: float, block_ms: float) -> dict:
    block = int(16000 * block_ms / 1000)
    minute = conversation_audio(60.0, seed=1)
    session = model.stream(seed=0)
    rss = []
    pushed = 0
    t0 = time.perf_counter()
    frames = 0
    while pushed < seconds * 16000:
        for i in range(0, minute[0].shape[0], block):
            frames += len(session.push(minute[0][i : i + block], minute[1][i : i + block]))
        pushed += minute[0].shape[0]
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    frames += len(session.flush())
    wall = time.perf_counter() - t0
    minutes = np.arange(len(rss)) + 1
    slope = float(np.polyfit(minutes[len(rss) // 4 :], rss[len(rss) // 4 :], 1)[0]) if len(rss) >= 8 else 0.0
    result = {
        "audio_s": seconds,
        "frames": frames,
        "wall_s": round(wall, 1),
        "real_time_factor": round(wall / seconds, 4),
        "peak_rss_mb_first_minute": round(rss[0], 1),
        "peak_rss_mb_last_minute": round(rss[-1], 1),
        "rss_slope_mb_per_minute_after_warmup": round(slope, 4),
        "stats": session.stats().__dict__,
    }
    print(json.dumps(result, indent=2))
    return result


def steps(config_name: str, dtype: str, seconds: float, hops: list[int]) -> list[dict]:
    """Full-size step times per hop: one person with partner audio, random weights, precision ``dtype``."""
    config = UniLSConfig.large() if config_name == "large" else UniLSConfig.small()
    model = random_model(config).set_precision(dtype)
    a, b = conversation_audio(seconds, seed=0)
    rows = []
    for hop in hops:
        session = model.stream(seed=0, hop_frames=None if hop >= 100 else hop)
        session.push(a[:64000], b[:64000])  # warm-up window, not counted below
        session = model.stream(seed=0, hop_frames=None if hop >= 100 else hop)
        for i in range(0, a.shape[0], 320):
            session.push(a[i : i + 320], b[i : i + 320])
        stats = session.stats()
        rows.append(
            {
                "model": config.name,
                "precision": str(model.precision),
                "cpu": cpu_kind(),
                "threads": torch.get_num_threads(),
                "hop_frames": hop,
                "algorithmic_latency_s": round(stats.algorithmic_latency_s, 3),
                "steps": stats.steps,
                "step_p50_s": round(stats.step_p50_s, 4),
                "step_p95_s": round(stats.step_p95_s, 4),
                "real_time_factor": round(stats.real_time_factor, 3),
            }
        )
        print(json.dumps(rows[-1]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["drift", "memory", "steps"])
    ap.add_argument("--size", choices=["large", "small"], default="large", help="steps: model size")
    ap.add_argument("--dtype", default="auto", help="steps: precision (default auto)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--hops", type=int, nargs="+", default=[100, 50, 25, 10])
    ap.add_argument("--block-ms", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "steps":
        result: object = steps(args.size, args.dtype, args.seconds or 12.0, args.hops)
    elif args.what == "drift":
        model = load(args.model)
        result = drift(model, args.seconds or 40.0, args.hops)
    else:
        result = memory(load(args.model), args.seconds or 3600.0, args.block_ms)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
