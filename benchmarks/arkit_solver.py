"""Frames per second of unils.arkit's expression solve (bounded least squares over a [52, 101] map).

    python benchmarks/arkit_solver.py [--frames 5000] [--iterations 200]

Uses a random map (the speed does not depend on the values) and random motion; prints frames/s of
to_arkit with and without a map, and of the Live Link encoder.
"""

import argparse
import time

import numpy as np

from unils import Motion
from unils.arkit import ExpressionMap, encode_packet, to_arkit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--iterations", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    motion = Motion.from_array(rng.normal(0, 0.3, (args.frames, 108)).astype(np.float32))
    emap = ExpressionMap.from_array(rng.normal(0, 1, (52, 101)))
    for label, kwargs in (("no map", {}), ("arkit_to_flame map", {"expression_map": emap})):
        start = time.perf_counter()
        anim = to_arkit(motion, iterations=args.iterations, **kwargs)
        dt = time.perf_counter() - start
        print(f"to_arkit, {label}: {args.frames / dt:,.0f} frames/s ({dt * 1000:.0f} ms for {args.frames})")
    values = anim.livelink_values()
    start = time.perf_counter()
    for row in values:
        encode_packet(row)
    dt = time.perf_counter() - start
    print(f"encode_packet: {len(values) / dt:,.0f} packets/s")


if __name__ == "__main__":
    main()
