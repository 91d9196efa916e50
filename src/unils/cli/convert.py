"""``unils convert``: official UniLS checkpoint -> unils folder."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``convert`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser(
        "convert",
        help="official UniLS .pt -> unils folder",
        description="Convert an official UniLS stage-3 checkpoint (merged, or an unmerged peft dict) into a "
        "unils folder (config.json, model.safetensors, README.md). Official checkpoints never hold the "
        "wav2vec2 weights: pass them with --audio-encoder.",
    )
    p.add_argument("checkpoint", help="official .pt file (e.g. iter_400000.pt)")
    p.add_argument("out_dir", help="output folder")
    p.add_argument(
        "--audio-encoder",
        default=None,
        help="transformers wav2vec2 folder, weights file or Hub repo (facebook/wav2vec2-xls-r-300m)",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="storage precision of generator and audio encoder (codec stays float32)",
    )
    p.add_argument(
        "--lora-scale",
        type=float,
        default=None,
        help="alpha/r for unmerged LoRA adapters (default: meta_cfg, else 1.0)",
    )
    p.add_argument("--revision", default=None, help="Hub revision of --audio-encoder")
    p.add_argument("--offline", action="store_true", help="use the local Hub cache only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils convert``."""
    from ..convert import convert_official

    report = convert_official(
        args.checkpoint,
        args.out_dir,
        audio_encoder=args.audio_encoder,
        dtype=args.dtype,
        lora_scale=args.lora_scale,
        revision=args.revision,
        local_files_only=args.offline,
    )
    print(report.summary())
    return 0
