"""FLAME 2020 support: load your own model file, turn motion into meshes, render them.

unils ships no FLAME data. Download FLAME 2020 (``generic_model.pkl``) from
https://flame.is.tue.mpg.de under its licence, then load it.

Example:
    ```python
    from unils.flame import FlameModel, render_motion

    flame = FlameModel.from_file("generic_model.pkl")        # or a .pt written by flame.save()
    verts = flame.vertices(motion)                            # [T, 5023, 3] metres
    frames = render_motion(motion, flame)                     # uint8 [T, 512, 512, 3]
    ```
"""

from __future__ import annotations

from .indices import LIP_INDICES, LOWER_LIP_INDICES, UPPER_INDICES, UPPER_LIP_INDICES
from .io import load_flame_arrays
from .model import (
    FLAME_NUM_JOINTS,
    FLAME_NUM_VERTICES,
    NUM_EXPRESSION,
    FlameModel,
    batch_rodrigues,
    pose_from_motion,
)
from .render import (
    Camera,
    FlameFrameRenderer,
    fit_camera,
    rasterize,
    render_motion,
    render_vertices,
    write_rendered_video,
    write_video,
)

__all__ = [
    "FlameModel",
    "load_flame_arrays",
    "pose_from_motion",
    "batch_rodrigues",
    "render_motion",
    "render_vertices",
    "rasterize",
    "fit_camera",
    "Camera",
    "write_rendered_video",
    "write_video",
    "FlameFrameRenderer",
    "LIP_INDICES",
    "UPPER_INDICES",
    "UPPER_LIP_INDICES",
    "LOWER_LIP_INDICES",
    "FLAME_NUM_VERTICES",
    "FLAME_NUM_JOINTS",
    "NUM_EXPRESSION",
]
