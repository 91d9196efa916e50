"""``unils plot``: coefficient curves of motion files under the speakers' speech activity."""

from __future__ import annotations

import argparse
from typing import Any

from . import arkit_flags

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``plot`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser(
        "plot",
        help="coefficient curves of motion files under the speakers' speech activity",
        description="Plot jaw, head pose, eyes and leading expression coefficients over time, one "
        "column per motion, shaded where each person speaks (from --audio / --partner-audio).",
    )
    p.add_argument("inputs", nargs="+", metavar="MOTION", help="one or two motion files")
    p.add_argument(
        "-o", "--output", default="motion.png", help="image file (.png, .pdf, .svg; default motion.png)"
    )
    p.add_argument("--audio", "-a", default=None, help="first person's audio (speech shading)")
    p.add_argument("--partner-audio", "-p", default=None, help="second person's audio")
    p.add_argument("--labels", nargs="+", default=None, help="names (default: file names)")
    p.add_argument(
        "--expression-coefs", type=int, default=6, help="leading expression coefficients drawn (default 6)"
    )
    p.add_argument("--dpi", type=int, default=100, help="resolution (default 100)")
    p.add_argument(
        "--arkit",
        action="store_true",
        help="plot the ARKit-52 curves (jawOpen, eyeLook*, head, gaze) instead",
    )
    arkit_flags.add_map_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils plot``."""
    from ..viz.preview import plot_from_files

    out = plot_from_files(
        args.inputs,
        args.output,
        audio=args.audio,
        partner_audio=args.partner_audio,
        labels=args.labels,
        expression_coefs=args.expression_coefs,
        dpi=args.dpi,
        arkit=arkit_flags.converter(args) if args.arkit else None,
    )
    print(f"wrote {out}")
    return 0
