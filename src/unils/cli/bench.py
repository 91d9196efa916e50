"""``unils bench``: speed benchmark at full model size (random weights)."""

from __future__ import annotations

import argparse
from typing import Any

from ..precision import PRECISIONS

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``bench`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser(
        "bench",
        help="speed benchmark at full model size (random weights): defaults vs the official procedure",
        description="Time two-person generation with the default settings (precision chosen for this device, "
        "cached, batched) against the official procedure (float32, one pass per person, no cache), with "
        "the CPU kind, the precision and peak memory; --drift adds each precision's numerical drift.",
    )
    p.add_argument(
        "--seconds", type=float, nargs="+", default=[10.0, 60.0], help="audio lengths (default 10 60)"
    )
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--size", choices=["large", "small"], default="large", help="model size (default large)")
    p.add_argument("--fast-only", action="store_true", help="skip the straightforward (official-style) path")
    p.add_argument(
        "--straightforward-max-seconds",
        type=float,
        default=None,
        help="time the straightforward path only up to this length (it is slow)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda ... (default cpu)")
    p.add_argument(
        "--dtype",
        choices=list(PRECISIONS),
        default="auto",
        help="precision of the default path (default auto)",
    )
    p.add_argument(
        "--audio-autocast",
        choices=["bfloat16", "float16"],
        default=None,
        help="run the audio encoder under autocast",
    )
    p.add_argument(
        "--drift",
        nargs="*",
        default=None,
        metavar="PRECISION",
        help="also measure the drift of these precisions vs float32 (default: bfloat16 int8)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the default path first (compilation can take minutes; on a GPU prefer --cuda-graphs)",
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="replay the default path's window steps from recorded CUDA graphs (CUDA devices)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--json", default=None, help="write results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils bench``."""
    from dataclasses import asdict

    from ..bench import measure_drift, run_benchmark, write_json
    from ..config import UniLSConfig
    from ..precision import cpu_kind

    config = {"large": UniLSConfig.large(), "small": UniLSConfig.small()}[args.size]
    device = args.device or "cpu"
    results = run_benchmark(
        args.seconds,
        batches=args.batch,
        straightforward=not args.fast_only,
        straightforward_max_seconds=args.straightforward_max_seconds,
        config=config,
        device=device,
        dtype=args.dtype,
        audio_autocast=args.audio_autocast,
        threads=args.threads,
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
    )
    first = results[0].extra
    print(
        f"{config.name} on {first['device']} ({first['cpu']}), {first['threads']} threads; default precision "
        f"{first['precision']} ({first['precision_reason']})"
    )
    for r in results:
        extra = r.extra.get("speedup_default_vs_straightforward")
        print(
            f"{r.mode:16s} {r.extra['precision']:8s} {r.seconds_of_audio:6.0f}s x{r.batch}: total {r.total_s:8.2f}s  "
            f"rtf {r.rtf:6.3f}  fps {r.fps:8.1f}  enc {r.audio_encoder_s:7.2f}  gen {r.generator_s:7.2f}  "
            f"dec {r.codec_decode_s:6.2f}  rss {r.peak_rss_mb:7.0f}MB"
            + (f"  speed-up x{extra}" if extra else "")
        )
    drift = []
    if args.drift is not None:
        drift = measure_drift(args.drift or ["bfloat16", "int8"], config=config, device=device)
        print(
            f"drift vs float32 ({cpu_kind()}): feature / logit relative error, motion mean / max abs difference"
        )
        for d in drift:
            print(
                f"  {d.precision:9s} features {d.feature_rel_err:.2e}  logits {d.logit_rel_err:.2e}  "
                f"motion {d.motion_mean_abs:.2e} / {d.motion_max_abs:.2e} (float32 motion RMS {d.motion_rms_f32:.2e})"
            )
    if args.json:
        write_json(results, args.json, drift=[asdict(d) for d in drift])
        print(f"wrote {args.json}")
    return 0
