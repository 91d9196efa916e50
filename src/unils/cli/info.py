"""``unils info``: what a model name resolves to, without generating anything."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``info`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser(
        "info",
        help="what a model name resolves to: files, stage, sizes, precision, cache",
        description="Resolve MODEL as UniLS.from_pretrained does (an official checkpoint is "
        "downloaded and converted once) and describe it without generating anything.",
    )
    p.add_argument("model", help="checkpoint folder, Hub repo id or bundled name")
    p.add_argument("--filename", default=None, help="official checkpoint file to use (relative path)")
    p.add_argument("--subfolder", default=None, help="look only inside this folder of the repo")
    p.add_argument(
        "--audio-encoder", default=None, help="wav2vec2 folder or Hub repo for an official checkpoint"
    )
    p.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    p.add_argument("--offline", action="store_true", help="use the local Hub cache only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils info``."""
    from ..hub import describe_model

    desc = describe_model(
        args.model,
        filename=args.filename,
        subfolder=args.subfolder,
        audio_encoder=args.audio_encoder,
        revision=args.revision,
        local_files_only=args.offline,
    )
    print("\n".join(desc.lines()))
    return 0
