"""Live sessions under load: N concurrent conversations at a hop, stepped in turn vs in one batched step.

Every tick, each of N sessions receives ``hop`` frames of two-person audio (the audio of one hop of real
time, all sessions at once: the worst case burst) and then every ready window is generated, either

* ``turn``: each session steps alone (``session.push``), one after another, as before unils 0.2, or
* ``group``: one ``SessionGroup.step()`` runs the ready windows of all sessions as one batch.

A tick keeps up with real time when its compute fits in one hop of audio (``hop / 25`` seconds): then
no frame is later than one hop. The largest N whose p99 tick fits is reported as the capacity. Times
are per tick (all N sessions); a session's step latency in ``group`` mode is the tick time.

    python benchmarks/session_load.py --size demo --hops 25 10 --sessions 1 4 16 64 --json out.json
    python benchmarks/session_load.py --size large --device cuda --sessions 1 16 64 256 --modes group
    python benchmarks/session_load.py --size large --device cuda --sessions 1 16 256 --modes group --cuda-graphs

CPU figures carry the CPU kind (``unils.precision.cpu_kind()``); precision is the model's default
(``--dtype auto``) unless given.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from unils import UniLS
from unils.bench import conversation_audio, random_model, small_random_config
from unils.config import UniLSConfig
from unils.precision import cpu_kind


def load(size: str, device: str, dtype: str) -> UniLS:
    if size == "demo":
        model = UniLS.from_pretrained("demo", device=device, dtype=dtype)
    else:
        config = UniLSConfig.large() if size == "large" else small_random_config()
        model = random_model(config).to(device)
        model.set_precision(dtype)
    return model


def sync(model: UniLS) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def run(model: UniLS, n: int, hop: int, ticks: int, mode: str, warmup: int, both: bool = False) -> dict:
    spf = model.config.samples_per_frame
    block = hop * spf
    a, b = conversation_audio((ticks + warmup) * hop / model.fps + 1.0, seed=n)
    group = model.stream_group(max_batch=max(1, n))
    sessions = [group.open(seed=i, hop_frames=hop, both=both) for i in range(n)]
    times, frames = [], 0
    for t in range(ticks + warmup):
        lo = t * block
        t0 = time.perf_counter()
        if mode == "group":
            for s in sessions:
                s.feed(a[lo : lo + block], b[lo : lo + block])
            out = group.step()
            got = sum(len(m[0] if both else m) for m in out.values())  # type: ignore[index, arg-type]
        else:
            pushed = [s.push(a[lo : lo + block], b[lo : lo + block]) for s in sessions]
            got = sum(len(m[0] if both else m) for m in pushed)  # type: ignore[index, arg-type]
        sync(model)
        if t >= warmup:
            times.append(time.perf_counter() - t0)
            frames += got
    group.close()
    hop_s = hop / model.fps
    arr = np.asarray(times)
    p50, p95, p99 = (float(np.percentile(arr, q)) for q in (50, 95, 99))
    return {
        "mode": mode,
        "sessions": n,
        "people_per_session": 2 if both else 1,
        "hop_frames": hop,
        "hop_s": hop_s,
        "tick_p50_s": p50,
        "tick_p95_s": p95,
        "tick_p99_s": p99,
        "per_session_step_p50_s": p50 / n if mode == "turn" else p50,
        "frames_out": frames,
        "rtf": p50 / hop_s,
        "real_time": p99 <= hop_s,
    }


def group_vs_alone(model: UniLS, n: int = 4, hop: int = 25, seconds: float = 8.0) -> dict:
    """Max abs difference between sessions stepped in one group and the same sessions stepped alone."""
    spf = model.config.samples_per_frame
    block = hop * spf
    audio = [conversation_audio(seconds, seed=100 + i) for i in range(n)]

    def collect(grouped: bool) -> list[np.ndarray]:
        group = model.stream_group(max_batch=n)
        sessions = [group.open(seed=i, hop_frames=hop) for i in range(n)]
        parts: list[list[np.ndarray]] = [[] for _ in range(n)]
        for lo in range(0, audio[0][0].shape[0], block):
            if grouped:
                for s, (a, b) in zip(sessions, audio):
                    s.feed(a[lo : lo + block], b[lo : lo + block])
                for s, m in group.step().items():
                    parts[sessions.index(s)].append(m.to_array())
            else:
                for k, (s, (a, b)) in enumerate(zip(sessions, audio)):
                    parts[k].append(s.push(a[lo : lo + block], b[lo : lo + block]).to_array())
        for k, s in enumerate(sessions):
            parts[k].append(s.flush().to_array())
        group.close()
        return [np.concatenate(p) for p in parts]

    grouped, alone = collect(True), collect(False)
    diffs = [float(np.abs(x - y).max()) for x, y in zip(grouped, alone)]
    rms = float(np.sqrt(np.mean(np.concatenate(alone) ** 2)))
    return {
        "sessions": n,
        "hop_frames": hop,
        "max_abs_diff": max(diffs),
        "per_session": diffs,
        "motion_rms": rms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["demo", "small", "large"], default="demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--hops", type=int, nargs="+", default=[25, 10])
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--modes", nargs="+", choices=["turn", "group"], default=["turn", "group"])
    ap.add_argument("--ticks", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--max-tick-s", type=float, default=60.0, help="stop growing N once a tick takes this long"
    )
    ap.add_argument("--equality", action="store_true", help="also compare grouped with solo sessions")
    ap.add_argument(
        "--both", action="store_true", help="two-person sessions (stream(both=True): 2 rows each)"
    )
    ap.add_argument("--cuda-graphs", action="store_true", help="replay steps from recorded CUDA graphs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.size, args.device, args.dtype)
    if args.cuda_graphs:
        model.cuda_graphs(max_rows=2 * max(args.sessions))  # two audio windows per session
    info = {
        "size": args.size,
        "device": str(model.device),
        "gpu": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else None,
        "cpu": cpu_kind(),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "precision": str(model.precision),
        "torch": torch.__version__,
        "cuda_graphs": args.cuda_graphs,
    }
    print(json.dumps(info), flush=True)
    results = []
    equality = None
    if args.equality:
        equality = group_vs_alone(model)
        print("group vs alone:", json.dumps(equality), flush=True)
    for hop in args.hops:
        for mode in args.modes:
            for n in args.sessions:
                try:
                    r = run(model, n, hop, args.ticks, mode, args.warmup, args.both)
                except torch.OutOfMemoryError as exc:
                    print(f"hop {hop} {mode} N={n}: out of memory ({exc})", flush=True)
                    break
                results.append(r)
                if args.json:  # written as it goes: a run stopped by a time limit keeps what it measured
                    with open(args.json, "w") as fh:
                        json.dump({"info": info, "results": results, "equality": equality}, fh, indent=1)
                print(
                    f"hop {hop:3d} {mode:5s} {'2p' if args.both else '1p'} N={n:4d}: tick p50 {r['tick_p50_s'] * 1e3:8.1f} ms "
                    f"p99 {r['tick_p99_s'] * 1e3:8.1f} ms (hop {r['hop_s'] * 1e3:.0f} ms) "
                    f"rtf {r['rtf']:.3f} {'real time' if r['real_time'] else 'LATE'}",
                    flush=True,
                )
                if r["tick_p50_s"] > args.max_tick_s:
                    break
    capacity = {}
    for hop in args.hops:
        for mode in args.modes:
            ok = [
                r["sessions"]
                for r in results
                if r["hop_frames"] == hop and r["mode"] == mode and r["real_time"]
            ]
            capacity[f"hop{hop}_{mode}"] = max(ok, default=0)
    print("largest N in real time:", json.dumps(capacity), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"info": info, "results": results, "capacity": capacity, "equality": equality}, fh, indent=1
            )


if __name__ == "__main__":
    main()
