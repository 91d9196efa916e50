"""``unils bench``: speed benchmark at full model size (random weights)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``bench`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser("bench", help="speed benchmark at full model size (random weights)")
    p.add_argument(
        "--seconds", type=float, nargs="+", default=[10.0, 60.0], help="audio lengths (default 10 60)"
    )
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--size", choices=["large", "small"], default="large", help="model size (default large)")
    p.add_argument("--fast-only", action="store_true", help="skip the straightforward (official-style) path")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default cpu)")
    p.add_argument(
        "--audio-autocast",
        choices=["bfloat16", "float16"],
        default=None,
        help="run the audio encoder under autocast",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--json", default=None, help="write results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils bench``."""
    from ..bench import run_benchmark, write_json
    from ..config import UniLSConfig

    config = {"large": UniLSConfig.large(), "small": UniLSConfig.small()}[args.size]
    results = run_benchmark(
        args.seconds,
        batches=args.batch,
        straightforward=not args.fast_only,
        config=config,
        device=args.device or "cpu",
        audio_autocast=args.audio_autocast,
        threads=args.threads,
    )
    for r in results:
        extra = r.extra.get("speedup_fast_vs_straightforward")
        print(
            f"{r.mode:16s} {r.seconds_of_audio:6.0f}s x{r.batch}: total {r.total_s:8.2f}s  rtf {r.rtf:6.3f}  "
            f"fps {r.fps:8.1f}  enc {r.audio_encoder_s:7.2f}  gen {r.generator_s:7.2f}  dec {r.codec_decode_s:6.2f}  "
            f"rss {r.peak_rss_mb:7.0f}MB" + (f"  speed-up x{extra}" if extra else "")
        )
    if args.json:
        write_json(results, args.json)
        print(f"wrote {args.json}")
    return 0
