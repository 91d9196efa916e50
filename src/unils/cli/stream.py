"""``unils stream``: replay audio files through a streaming session; report latency and real-time factor."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from . import arkit_flags, options

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``stream`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser(
        "stream",
        help="replay audio through a streaming session; report latency and RTF",
        description="Push AUDIO (and --partner) block by block through UniLS.stream, as a live call would, and "
        "report latency statistics as JSON. In exact mode (no --hop-frames) the frames equal `unils generate` "
        "with the same flags.",
    )
    p.add_argument("audio", help="the person's voice")
    p.add_argument("--partner", "-p", default=None, help="the other person's audio")
    p.add_argument("--block-ms", type=float, default=20.0, help="block size pushed per call (ms, default 20)")
    p.add_argument(
        "--hop-frames", type=int, default=None, help="low-latency hop (frames); default exact mode"
    )
    p.add_argument("--realtime", action="store_true", help="push at real-time pace")
    p.add_argument("-o", "--output", default=None, help="also write the motion (.npz, .json, .csv)")
    arkit_flags.add_livelink_flags(p)
    options.add_model_flags(p)
    options.add_generation_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils stream``."""
    from ..audio import load_audio, pad_to_same_length
    from ..motion import Motion

    opts = options.generation_options(args)
    model = options.load_model(args)
    livelink = arkit_flags.sender(args, fps=float(model.fps))
    conv = arkit_flags.converter(args) if livelink is not None else None
    rate = model.config.sample_rate
    a = load_audio(args.audio, target_rate=rate, name="audio")
    channels = [a]
    if args.partner is not None:
        channels = pad_to_same_length(a, load_audio(args.partner, target_rate=rate, name="partner"))
    block = max(1, int(args.block_ms * rate / 1000))
    frames: list[Any] = []
    session = model.stream(
        options=opts, partner=args.partner is not None, sample_rate=rate, hop_frames=args.hop_frames
    )
    t_start = time.perf_counter()
    with session:
        for start in range(0, channels[0].shape[0], block):
            if args.realtime:
                time.sleep(max(0.0, t_start + start / rate - time.perf_counter()))
            out = session.push(*[c[start : start + block] for c in channels])
            if len(out):
                frames.append(out)
                if livelink is not None and conv is not None:
                    livelink.send(conv.push(out))
                lag = (time.perf_counter() - t_start) - session.frames_emitted / model.fps
                if not args.quiet:
                    print(
                        f"t={start / rate:7.2f}s  +{len(out):4d} frames  total {session.frames_emitted:6d}  "
                        f"lag {lag:6.2f}s"
                    )
        rest = session.flush()
        frames.append(rest)
        if livelink is not None and conv is not None:
            if len(rest):
                livelink.send(conv.push(rest))
            livelink.close()
        stats = session.stats()
    motion = Motion.concatenate([f for f in frames if len(f)] or [Motion.zeros(0)])
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        motion.save(args.output)
    report: dict[str, Any] = {"frames": len(motion), **stats.__dict__}
    if livelink is not None:
        report["livelink"] = {"packets": livelink.packets_sent, "errors": livelink.errors}
    print(json.dumps(report, indent=2))
    return 0
