"""Flags shared by the commands: which model to load, and the generation options.

Every command that generates (``generate``, ``stream``, ``preview``) adds the same flags with
:func:`add_model_flags` and :func:`add_generation_flags` and turns them into keyword arguments of
the model's methods with :func:`generation_options`, so one flag means the same thing everywhere.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..precision import PRECISIONS

if TYPE_CHECKING:
    from ..model import UniLS
    from ..motion import Motion

__all__ = [
    "DEFAULT_MODEL",
    "add_generation_flags",
    "add_model_flags",
    "generation_options",
    "load_model",
    "read_motion",
]

#: Model loaded when ``--model`` is not given: the bundled synthetic demo.
DEFAULT_MODEL = "demo"


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--model/-m``, ``--device``, ``--dtype`` and ``--audio-autocast`` (read by :func:`load_model`)."""
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        help="checkpoint folder, Hub repo id or bundled name (default: the bundled synthetic demo)",
    )
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default cpu)")
    g.add_argument(
        "--dtype",
        choices=list(PRECISIONS),
        default="auto",
        help="precision of the audio encoder and generator: auto (default: bfloat16 where the device runs it "
        "natively, else float32), float32 (exact), bfloat16, float16, int8 (CPU: int8 audio encoder)",
    )
    g.add_argument(
        "--audio-autocast",
        choices=["bfloat16", "float16"],
        default=None,
        help="run the audio encoder under autocast (faster on CPUs with bf16 support; small drift)",
    )


def add_generation_flags(parser: argparse.ArgumentParser) -> None:
    """Add the generation flags; :func:`generation_options` turns them into the model's keyword options."""
    g = parser.add_argument_group("generation")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument(
        "--temperature", type=float, default=None, help="sampling temperature (default: the model's, 1.0)"
    )
    g.add_argument(
        "--top-p", type=float, default=None, help="per-bit nucleus threshold (default: the model's, 0.97)"
    )
    g.add_argument(
        "--cfg-scale",
        type=float,
        default=None,
        help="classifier-free guidance scale (default: the model's, 1.5; <= 1 disables it)",
    )
    g.add_argument("--no-smooth", action="store_true", help="skip the Savitzky-Golay smoothing")
    g.add_argument(
        "--style",
        default=None,
        metavar="MOTION_FILE",
        help="style clip (.npz/.npy/.json/.csv, at least 100 frames; its first window is used)",
    )
    g.add_argument(
        "--prev-motion",
        default=None,
        metavar="MOTION_FILE",
        help="motion that precedes the audio (its last window is used)",
    )
    g.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute every scale in full, as the official code does (slower; equal within float rounding)",
    )


def read_motion(path: str | os.PathLike[str] | None) -> Motion | None:
    """The motion in ``path`` (any format unils writes, by suffix), or None for None.

    Raises:
        FileNotFoundError: no such file.
        FormatError: an unknown suffix.
        MotionError: the content is not a valid motion.
    """
    if path is None:
        return None
    from ..errors import FormatError
    from ..motion import Motion

    if Path(path).suffix.lower() not in Motion.SUFFIXES:
        raise FormatError(f"{Path(path).name}: not a motion file (expected {', '.join(Motion.SUFFIXES)})")
    return Motion.load(path)


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options of ``UniLS.generate`` / ``generate_both`` / ``stream`` given by the flags.

    Returns:
        ``seed``, ``temperature``, ``top_p``, ``cfg_scale``, ``smooth``, ``style``, ``prev_motion``
        and ``use_cache`` (motion files already read).
    """
    return {
        "seed": args.seed,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "cfg_scale": args.cfg_scale,
        "smooth": not args.no_smooth,
        "style": read_motion(args.style),
        "prev_motion": read_motion(args.prev_motion),
        "use_cache": not args.no_cache,
    }


def load_model(args: argparse.Namespace) -> UniLS:
    """Load the model named by the model flags (warning when it is the synthetic demo)."""
    from ..model import UniLS

    if args.model == DEFAULT_MODEL:
        logging.getLogger("unils").warning(
            "no --model given: using the bundled synthetic demo model (trained on synthesized speech and "
            "rule-based motion, for trying unils out); pass --model for a real checkpoint"
        )
    model = UniLS.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    if args.audio_autocast:
        model.set_audio_autocast(args.audio_autocast)
    return model
