"""ARKit / Live Link flags shared by ``unils generate``, ``stream``, ``preview`` and ``plot``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..arkit import ArkitConverter, LiveLinkSender

__all__ = [
    "add_map_flags",
    "add_arkit_file_flag",
    "add_livelink_flags",
    "converter",
    "check_arkit_path",
    "sender",
]


def add_map_flags(p: argparse.ArgumentParser) -> None:
    """``--arkit-map`` and ``--jaw-full-open``: how FLAME motion becomes ARKit weights."""
    p.add_argument(
        "--arkit-map",
        default=None,
        metavar="FILE",
        help="your FLAME<->ARKit linear map (.npy/.npz/.safetensors) for the expression blendshapes "
        "(docs: ARKit page); default: the model's own map (the bundled demo ships one), else none: "
        "only jawOpen, eyeLook*, head and eyes are filled",
    )
    p.add_argument(
        "--jaw-full-open",
        type=float,
        default=None,
        help="jaw angle (radians) that means jawOpen = 1 (default 0.35)",
    )


def add_arkit_file_flag(p: argparse.ArgumentParser) -> None:
    """``--arkit OUT``: also write ARKit weights (Live Link Face CSV, three.js JSON or npz)."""
    p.add_argument(
        "--arkit",
        default=None,
        metavar="OUT",
        help="also write ARKit-52 weights + head/eye rotation: .csv (Live Link Face), .json (three.js), .npz",
    )
    add_map_flags(p)


def add_livelink_flags(p: argparse.ArgumentParser) -> None:
    """``--livelink HOST:PORT`` and ``--subject``: send frames to Unreal's Live Link as they become final."""
    p.add_argument(
        "--livelink",
        default=None,
        metavar="HOST:PORT",
        help="send each final frame as a Live Link Face UDP packet (Unreal: Apple ARKit Live Link source)",
    )
    p.add_argument("--subject", default="unils", help="Live Link subject name (default unils)")
    p.add_argument("--mirror", action="store_true", help="mirror the face for Live Link (swap left/right)")
    add_map_flags(p)


def converter(args: argparse.Namespace, model: Any = None) -> ArkitConverter:
    """An [`ArkitConverter`][unils.arkit.convert.ArkitConverter] from the map flags (reads and checks the map
    now).

    Without ``--arkit-map`` the map is the model's own
    ([`expression_map_for`][unils.arkit.expression_map.expression_map_for]: the bundled demo's), when
    ``model`` (a loaded model or its ``config.name``) is given.
    """
    from ..arkit import ArkitConverter, expression_map_for

    kw: dict[str, Any] = {}
    if args.jaw_full_open is not None:
        kw["jaw_full_open"] = args.jaw_full_open
    chosen = args.arkit_map
    if chosen is None and model is not None:
        chosen = expression_map_for(model)
    return ArkitConverter(chosen, **kw)


def check_arkit_path(path: str | None) -> Path | None:
    """The ``--arkit`` output path, refused early when its suffix cannot be written."""
    if path is None:
        return None
    from ..arkit import ArkitAnimation
    from ..errors import FormatError

    p = Path(path)
    if p.suffix.lower() not in ArkitAnimation.SUFFIXES:
        raise FormatError(
            f"--arkit {p.name}: ARKit animations are written as {', '.join(ArkitAnimation.SUFFIXES)}"
        )
    return p


def sender(args: argparse.Namespace, fps: float) -> LiveLinkSender | None:
    """A [`LiveLinkSender`][unils.arkit.livelink.LiveLinkSender] for ``--livelink`` (None without it); bad
    addresses raise now."""
    if args.livelink is None:
        return None
    from ..arkit import LiveLinkSender, parse_address

    host, port = parse_address(args.livelink)
    return LiveLinkSender(host, port, subject=args.subject, fps=fps, mirror=args.mirror)
