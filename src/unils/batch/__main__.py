"""Temporary entry point, ``python -m unils.batch MANIFEST --out-dir DIR``, until ``unils generate --batch``.

It only builds the parser the generate command will have and calls :func:`run_batch_command`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import UniLSError
from .command import add_batch_arguments, run_batch_command


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m unils.batch")
    p.add_argument("manifest", metavar="MANIFEST")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--model", "-m", default="demo")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--cfg-scale", type=float, default=None)
    p.add_argument("--no-smooth", action="store_true")
    p.add_argument("--both", action="store_true")
    add_batch_arguments(p)
    args = p.parse_args(argv)
    args.batch = args.manifest
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def load():
        from ..model import UniLS

        return UniLS.from_pretrained(args.model, device=args.device, dtype=args.dtype)

    try:
        return run_batch_command(args, load)
    except (UniLSError, FileNotFoundError, ValueError) as exc:
        print(f"unils batch: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
