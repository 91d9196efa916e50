"""Flags shared by the commands: which model to load, and the generation options.

Every command that generates (``generate``, ``stream``, ``preview``) adds the same flags with
``add_model_flags`` and ``add_generation_flags`` (one flag per field of
[GenerationOptions][unils.GenerationOptions]) and reads them back as one options object with
``generation_options``, so one flag means the same thing everywhere.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..options import GenerationOptions, option_fields
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
    """Add ``--model/-m``, ``--device``, ``--dtype``, ``--audio-autocast`` and ``--cuda-graphs`` (read by
    [`load_model`][unils.cli.options.load_model])."""
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
    g.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="replay window steps from recorded CUDA graphs (CUDA devices; one launch per step)",
    )


def add_generation_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per field of [GenerationOptions][unils.GenerationOptions] (names, help and ranges
    come from the fields); [generation_options][unils.cli.options.generation_options] reads them back."""
    g = parser.add_argument_group("generation")
    for f in option_fields():
        default_txt = "" if f.cli_default is None else f" (default {f.cli_default})"
        if f.kind == "seed":
            g.add_argument(f.flag, dest=f.name, type=int, default=f.cli_default, help=f.help + default_txt)
        elif f.kind == "float":
            lo, hi = f.range or (float("-inf"), float("inf"))
            g.add_argument(
                f.flag, dest=f.name, type=float, default=None, help=f"{f.help}; range {lo:g} .. {hi:g}"
            )
        elif f.kind == "bool":
            negated = f.flag.startswith("--no-")
            g.add_argument(
                f.flag,
                dest=f.name,
                action="store_false" if negated else "store_true",
                default=f.default,
                help=("switch off: " if negated else "") + f.help,
            )
        else:  # a motion clip
            g.add_argument(
                f.flag,
                dest=f.name,
                default=None,
                metavar="MOTION_FILE",
                help=f.help + " (.npz/.npy/.json/.csv)",
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


def generation_options(args: argparse.Namespace) -> GenerationOptions:
    """The [GenerationOptions][unils.GenerationOptions] given by the generation flags (motion files read).

    Raises:
        ConfigError: a value out of its range.
        FileNotFoundError: a motion file that does not exist.
        FormatError: a motion file of an unknown format.
    """
    values: dict[str, Any] = {}
    for f in option_fields():
        value = getattr(args, f.name)
        values[f.name] = read_motion(value) if f.kind == "motion" else value
    return GenerationOptions(**values)


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
    if getattr(args, "cuda_graphs", False):
        model.cuda_graphs()
    return model
