"""``unils preview``: schematic (or FLAME) avatar video or still of motion or audio files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import arkit_flags, options

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``preview`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser(
        "preview",
        help="schematic avatar video (MP4 with sound, GIF) or still (PNG) of motion or audio files",
        description="Draw one or two people side by side with speaking / listening indicators. INPUTs are motion "
        "files (.npz/.npy/.json/.csv; sound from --audio / --partner-audio) or audio files (the motion is "
        "generated with --model and the generation flags first; two voices = both people, the second seeded "
        "SEED + 1). Needs the viz extra.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="one or two motion files, or one or two audio files"
    )
    p.add_argument(
        "-o", "--output", default="preview.mp4", help=".mp4 (with sound), .gif or .png (default preview.mp4)"
    )
    p.add_argument("--audio", "-a", default=None, help="first person's audio, for motion inputs")
    p.add_argument("--partner-audio", "-p", default=None, help="second person's audio")
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: the motion's, 25)")
    p.add_argument("--size", type=int, default=320, help="panel size in pixels (default 320)")
    p.add_argument("--labels", nargs="+", default=None, help="names on the panels (default: file names)")
    p.add_argument("--at", type=float, default=None, help="time (s) of a .png still (default: the middle)")
    p.add_argument(
        "--save-motion", default=None, help="also write generated motion(s) here (.npz/.json/.csv)"
    )
    p.add_argument(
        "--head-gain",
        type=float,
        default=1.0,
        help="schematic avatar: multiply head rotations (e.g. 2 to make small nods visible)",
    )
    p.add_argument(
        "--flame",
        default=None,
        help="draw FLAME meshes with your FLAME 2020 model (generic_model.pkl or .pt) "
        "instead of the schematic face",
    )
    p.add_argument(
        "--arkit-plot",
        default=None,
        metavar="IMAGE",
        help="also plot the people's ARKit-52 curves (jawOpen, eyeLook*, head, gaze) to IMAGE (.png/.pdf/.svg)",
    )
    arkit_flags.add_map_flags(p)
    options.add_model_flags(p)
    options.add_generation_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils preview``."""
    from ..viz.preview import preview_from_files

    def save(index: int, motion: Any) -> None:
        out = Path(args.save_motion)
        motion.save(out if index == 0 else out.with_name(f"{out.stem}_partner{out.suffix}"))

    if args.arkit_plot:
        arkit_flags.converter(args)  # a bad map is refused before any work
    renderer: Any = None
    if args.flame:
        from ..flame import FlameFrameRenderer, FlameModel

        renderer = FlameFrameRenderer(FlameModel.from_file(args.flame, device=args.device))
    elif args.head_gain != 1.0:
        from ..viz import SchematicRenderer

        renderer = SchematicRenderer(head_gain=args.head_gain)
    opts = options.generation_options(args)
    result = preview_from_files(
        args.inputs,
        args.output,
        audio=args.audio,
        partner_audio=args.partner_audio,
        model=lambda: options.load_model(args),
        seed=opts.seed,  # type: ignore[arg-type]
        generate_options=opts,
        fps=args.fps,
        size=args.size,
        labels=args.labels,
        at=args.at,
        save_motion=save if args.save_motion else None,
        renderer=renderer,
    )
    print(result.summary())
    if args.arkit_plot:
        from ..viz.arkit_plot import plot_arkit

        conv = arkit_flags.converter(args)
        labels = args.labels or [chr(ord("A") + i) for i in range(len(result.motions))]
        plot_arkit(
            [conv.push(m) for m in result.motions], args.arkit_plot, labels=labels, activity=result.activity
        )
        print(f"wrote {args.arkit_plot}")
    return 0
