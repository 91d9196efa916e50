"""``unils cache``: list or clear the converted copies of official checkpoints."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``cache`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser("cache", help="list or clear the converted copies of official checkpoints")
    p.add_argument("action", choices=["list", "clear"])
    p.add_argument("--sha256", default=None, help="clear only the copy whose source sha256 starts with this")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils cache``."""
    from ..convert import clear_converted, converted_cache_root, list_converted

    if args.action == "list":
        copies = list_converted()
        print(f"{converted_cache_root()}: {len(copies)} converted checkpoint(s)")
        for c in copies:
            print(f"  {c.sha256[:16]}  {c.size / 1e6:8.1f} MB  {c.path}")
            print(f"      from {c.source}\n      audio encoder {c.audio_encoder}")
        return 0
    removed = clear_converted(sha256=args.sha256)
    print(f"removed {len(removed)} converted checkpoint(s), {sum(c.size for c in removed) / 1e6:.1f} MB")
    return 0
