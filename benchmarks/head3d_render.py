"""Frames per second of ``unils preview --head 3d`` (the ICT-FaceKit head) against the 2-D schematic view.

    python benchmarks/head3d_render.py [--size 320] [--frames 50] [--threads 2]

Renders two people (the example dialogue's demo motion when present, else a speaking jaw) side by
side at the preview's default size, as ``unils preview`` does (torch CPU rasterizer for the head,
Pillow for the schematic face), without encoding. Prints the CPU kind, frames/s of each renderer and
the head asset's size.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import unils
from unils import Motion
from unils.precision import cpu_kind
from unils.viz import SchematicRenderer
from unils.viz.head3d import HeadRenderer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="torch threads outside the renderer")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t = args.frames + 1
    me, you = Motion.zeros(t), Motion.zeros(t)
    me.jaw[:, 0] = 0.1 + 0.08 * np.sin(np.arange(t) / 2.0)
    me.head_pose[:, 1] = 0.1 * np.sin(np.arange(t) / 10.0)
    activity = [np.ones(t, bool), np.zeros(t, bool)]
    from unils.arkit import ArkitConverter

    print(f"CPU: {cpu_kind()}; torch threads {args.threads}; panels {args.size} px, 2 people")
    for name, renderer in (
        ("3-D head (ICT-FaceKit)", HeadRenderer(converter=ArkitConverter("demo"))),
        ("2-D schematic", SchematicRenderer()),
    ):
        frames = renderer([me, you], size=args.size, activity=activity, labels=["A", "B"])
        next(frames)  # set-up (asset load, timeline) not counted
        start, cpu = time.perf_counter(), time.process_time()
        n = sum(1 for _ in frames)
        wall, used = time.perf_counter() - start, time.process_time() - cpu
        print(
            f"{name}: {n / wall:.1f} frames/s ({1000 * wall / n:.0f} ms/frame, CPU {1000 * used / n:.0f} ms/frame)"
        )
    asset = Path(unils.__file__).parent / "assets" / "ict_head"
    size = sum(p.stat().st_size for p in asset.iterdir())
    print(
        f"head asset: {size / 2**20:.2f} MiB on disk ({', '.join(sorted(p.name for p in asset.iterdir()))})"
    )


if __name__ == "__main__":
    main()
