"""The bundled 3-D head (ICT-FaceKit, MIT) in previews: ``unils preview --head 3d``.

Each person's motion becomes ARKit weights, head rotation and gaze
([`ArkitConverter`][unils.arkit.convert.ArkitConverter], with the model's expression map when it has one),
which pose the head ([`pose`][unils.arkit.head.ArkitHead.pose]); the mesh is drawn by the z-buffer rasterizer
of [`unils.flame.render`][unils.flame.render] (torch on the CPU, smooth Lambert shading, back faces culled)
with a colour per part (skin, lips and mouth interior, teeth, eyes). Panels carry the same label, SPEAKING /
listening badge, frame and speech timeline as the schematic view
([`SchematicRenderer`][unils.viz.avatar.SchematicRenderer]).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..motion import Motion
from ._deps import require
from .avatar import (
    check_participants,
    compose_frame,
    decorate_panel,
    output_frame_indices,
    panel_background,
    timeline_strip,
)

__all__ = ["HeadRenderer", "head_colors", "visible_faces"]

#: Colour class -> albedo (RGB 0-1); skin and iris differ per participant. The browser demo uses the same.
_PAINT_RGB = {
    "lip": (0.70, 0.40, 0.40),
    "mouth": (0.42, 0.12, 0.14),
    "eye_socket": (0.78, 0.52, 0.48),
    "gums": (0.74, 0.36, 0.38),
    "teeth": (0.93, 0.91, 0.84),
    "cornea": (0.95, 0.94, 0.92),
    "sclera": (0.95, 0.94, 0.92),
    "pupil": (0.05, 0.04, 0.04),
}
_SKINS = ((0.90, 0.72, 0.62), (0.74, 0.55, 0.43), (0.95, 0.80, 0.70), (0.60, 0.43, 0.33))
_IRISES = ((0.27, 0.43, 0.63), (0.30, 0.20, 0.12), (0.35, 0.45, 0.25), (0.24, 0.35, 0.55))
#: Panel framing: centre (cm, in the head's frame) and the height of the view (cm).
_VIEW_CENTRE = (0.0, -1.5)
_VIEW_HEIGHT = 34.0


def visible_faces(head: Any) -> np.ndarray:
    """The triangles a viewer draws: all but the clear cornea shells over the eyes."""
    names = list(head.part_names)
    if "cornea" not in names:
        return np.asarray(head.faces)
    clear = head.part[head.faces] == names.index("cornea")
    return np.asarray(head.faces)[~clear.any(axis=1)]


def head_colors(head: Any, who: int = 0) -> np.ndarray:
    """Albedo per vertex ([V, 3] float32, RGB 0-1) of participant ``who``, from the head's colour classes."""
    table = np.array(
        [
            _SKINS[who % len(_SKINS)]
            if n == "skin"
            else _IRISES[who % len(_IRISES)]
            if n == "iris"
            else _PAINT_RGB[n]
            for n in head.paint_names
        ],
        np.float32,
    )
    return table[head.paint]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: the rasterizer's many small operations spend more time synchronising
    threads than computing (2 threads were 2-7x slower than 1 on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class _Scene:
    head: Any
    faces: np.ndarray
    colors: list[np.ndarray]
    pool: ThreadPoolExecutor | None


@dataclass
class HeadRenderer:
    """Panels of the ICT-FaceKit head driven by each person's motion (a
    [`FrameRenderer`][unils.viz.avatar.FrameRenderer]).

    Attributes:
        converter: the [`ArkitConverter`][unils.arkit.convert.ArkitConverter] that turns motion into ARKit
            weights; None = one without an expression map (only jaw, gaze and head move). ``unils preview``
            passes one with the model's map (the bundled demo ships one).
        head: the [`ArkitHead`][unils.arkit.head.ArkitHead]; None = the bundled ICT-FaceKit head.
        head_gain: multiplies the head rotation (1 = as generated).
        supersample: anti-aliasing factor (1 = none; 2 looks smoother and is about 3x slower).
        timeline: draw the speech timeline under the panels.
    """

    converter: Any = None
    head: Any = None
    head_gain: float = 1.0
    supersample: int = 1
    timeline: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.head_gain):
            raise ConfigError(f"head_gain must be finite, got {self.head_gain!r}")
        if int(self.supersample) < 1:
            raise ConfigError(f"supersample must be >= 1, got {self.supersample!r}")

    def _setup(self, people: int) -> tuple[_Scene, Any]:
        from ..arkit import ArkitConverter
        from ..arkit.head import load_head

        head = self.head if self.head is not None else load_head()
        conv = self.converter if self.converter is not None else ArkitConverter()
        pool = ThreadPoolExecutor(max_workers=people) if people > 1 else None
        scene = _Scene(head, visible_faces(head), [head_colors(head, j) for j in range(people)], pool)
        return scene, conv

    def __call__(
        self,
        motions: Sequence[Motion],
        *,
        size: int = 320,
        fps: float | None = None,
        activity: Sequence[np.ndarray | None] | None = None,
        labels: Sequence[str] | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield one RGB frame per output frame (see [`FrameRenderer`][unils.viz.avatar.FrameRenderer]).

        Args:
            motions: one motion per participant (1 to 4), all of the same length and fps.
            size: panel side in pixels (rounded up to even, at least 64).
            fps: output frame rate; None = the motions' frame rate.
            activity: per participant, a bool [T] speech activity (or None when unknown).
            labels: per participant, a name shown on the panel (default "A", "B", ...).

        Yields:
            uint8 arrays [H, W, 3] with W = participants * size.
        """
        motions, activity, labels = check_participants(motions, activity, labels)
        require("PIL", "pillow")
        size = max(64, int(size) + int(size) % 2)
        scene, conv = self._setup(len(motions))
        anims = [conv.push(m) for m in motions]
        base = timeline_strip(activity, labels, size) if self.timeline else None
        indices = output_frame_indices(len(motions[0]), motions[0].fps, fps)
        try:
            for k, i in enumerate(indices):
                t = k / (fps or motions[0].fps)
                with _one_thread():
                    frame = self._frame(
                        scene, anims, int(i), size, activity, labels, t, motions[0].duration, base
                    )
                yield frame
        finally:
            if scene.pool is not None:
                scene.pool.shutdown()

    def still(
        self,
        motions: Sequence[Motion],
        index: int,
        *,
        size: int = 320,
        activity: Sequence[np.ndarray | None] | None = None,
        labels: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Motion frame ``index`` as one RGB array (the picture
        [`__call__`][unils.viz.head3d.HeadRenderer.__call__] yields for it)."""
        motions, activity, labels = check_participants(motions, activity, labels)
        require("PIL", "pillow")
        if not 0 <= index < len(motions[0]):
            raise IndexError(f"frame {index} out of range for {len(motions[0])} frames")
        size = max(64, int(size) + int(size) % 2)
        scene, conv = self._setup(len(motions))
        anims = [conv.push(m[index]) for m in motions]
        base = timeline_strip(activity, labels, size) if self.timeline else None
        one = [None if a is None else a[index : index + 1] for a in activity]
        t = index / motions[0].fps
        try:
            with _one_thread():
                return self._frame(scene, anims, 0, size, one, labels, t, motions[0].duration, base)
        finally:
            if scene.pool is not None:
                scene.pool.shutdown()

    def _frame(
        self,
        scene: _Scene,
        anims: Sequence[Any],
        i: int,
        size: int,
        activity: Sequence[np.ndarray | None],
        labels: Sequence[str],
        time: float,
        duration: float,
        base: Any,
    ) -> np.ndarray:
        from PIL import Image

        from ..flame.render import Camera, render_vertices

        scale = size / _VIEW_HEIGHT
        camera = Camera(_VIEW_CENTRE, scale, size, size)
        head = scene.head

        def panel(j: int) -> Any:
            a, act = anims[j], activity[j]
            speaking = None if act is None else bool(act[i]) if i < len(act) else False
            verts = head.pose(a.weights[i], a.head[i] * self.head_gain, a.eyes[i])
            img = render_vertices(
                verts,
                scene.faces,
                camera=camera,
                color=scene.colors[j],
                background=panel_background(speaking),
                light=(0.3, 0.4, 1.0),
                ambient=0.35,
                supersample=int(self.supersample),
                cull_back=True,
            )[0]
            return decorate_panel(Image.fromarray(img), speaking, labels[j])

        # One person per thread: torch releases the GIL, so the panels render on separate cores.
        panels = list(scene.pool.map(panel, range(len(anims)))) if scene.pool else [panel(0)]
        return compose_frame(panels, size, base, time, duration)
