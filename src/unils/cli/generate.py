"""``unils generate``: audio file(s) -> motion file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..batch.command import add_batch_arguments, run_batch_command
from ..errors import UniLSError
from . import arkit_flags, options

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``generate`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser(
        "generate",
        help="audio file(s) -> motion file (.npz, .json or .csv)",
        description="Generate the motion of the person speaking in AUDIO (listening to --partner).",
    )
    p.add_argument(
        "audio", nargs="?", default=None, help="the person's voice (WAV, FLAC, MP3 ...); omit with --batch"
    )
    p.add_argument("--partner", "-p", default=None, help="the other person's audio")
    p.add_argument(
        "--both",
        action="store_true",
        help="also write the partner's motion (seeded SEED + 1; --style / --prev-motion apply to both)",
    )
    p.add_argument(
        "-o",
        "--output",
        default="motion.npz",
        help="motion file (.npz, .json, .csv), or with --both a folder (self.npz, partner.npz)",
    )
    options.add_model_flags(p)
    options.add_generation_flags(p)
    arkit_flags.add_arkit_file_flag(p)
    add_batch_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils generate``."""
    if args.batch is not None:
        if args.audio is not None or args.partner is not None:
            raise UniLSError("--batch reads the audio from the manifest: drop AUDIO and --partner")
        return run_batch_command(args, lambda: options.load_model(args))
    if args.audio is None:
        raise UniLSError("give an AUDIO file, or --batch MANIFEST --out-dir DIR for many")
    if args.both and args.partner is None:
        raise UniLSError("--both needs --partner")
    opts = options.generation_options(args)
    # Refuse a bad --arkit path or map before the (long) generation.
    arkit_out = arkit_flags.check_arkit_path(args.arkit)
    conv = arkit_flags.converter(args) if arkit_out is not None else None
    model = options.load_model(args)
    t0 = time.perf_counter()
    out = Path(args.output)
    if args.both:
        first, second = model.generate_both(args.audio, args.partner, options=opts, progress=not args.quiet)
        if out.suffix:
            a_path, b_path = out, out.with_name(out.stem + "_partner" + out.suffix)
        else:
            a_path, b_path = out / "self.npz", out / "partner.npz"
        people = [(first, a_path), (second, b_path)]
    else:
        people = [(model.generate(args.audio, args.partner, options=opts, progress=not args.quiet), out)]
    written = []
    for i, (motion, path) in enumerate(people):
        path.parent.mkdir(parents=True, exist_ok=True)
        written.append(str(motion.save(path)))
        if conv is not None and arkit_out is not None:
            target = (
                arkit_out if i == 0 else arkit_out.with_name(f"{arkit_out.stem}_partner{arkit_out.suffix}")
            )
            written.append(str(conv.push(motion).save(target, mirror=getattr(args, "mirror", False))))
    frames = len(people[0][0])
    dt = time.perf_counter() - t0
    print(f"wrote {', '.join(written)}: {frames} frames ({frames / model.fps:.2f} s) in {dt:.2f} s")
    return 0
