"""An openly licensed 3-D head with ARKit blendshapes: the ICT-FaceKit face, bundled with unils.

The geometry is ICT-FaceKit's generic neutral head and its expression shapes (USC Institute for
Creative Technologies, Vision and Graphics Lab, MIT licence; ``unils/assets/ict_head/`` holds the
licence and credits), reduced by ``scripts/build_ict_head.py`` to what a viewer sees (face, head and
neck, mouth socket, gums and tongue, teeth, eyeballs; 24,591 vertices, 48,836 triangles) and to 51
of Apple's 52 blendshapes stored as sparse float16 offsets. ``tongueOut`` has no ICT shape and is
ignored. Units are centimetres in ARKit's face frame (x to the subject's left, y up, z forward).

[`ArkitHead.pose`][unils.arkit.head.ArkitHead.pose] turns ARKit weights, head rotation and gaze (an
[`ArkitAnimation`][unils.arkit.animation.ArkitAnimation]'s ``weights``, ``head`` and ``eyes``) into vertices:
blendshapes first, then each eyeball turned about its centre by its gaze, then the whole head turned about a
neck pivot. The browser demo (``unils serve``) reads the same two files and does the same in JavaScript.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArkitError
from .names import ARKIT_NAMES, NUM_BLENDSHAPES
from .rotations import axis_angle_to_matrix, euler_to_axis_angle, gaze_to_eye_axis_angle

__all__ = ["HEAD_ASSET", "ArkitHead", "load_head"]

#: Name of the bundled head's manifest inside ``unils/assets/ict_head`` (the arrays are in ``ict_head.bin``).
HEAD_ASSET = "ict_head.json"


@dataclass(frozen=True, eq=False)
class ArkitHead:
    """A head mesh with ARKit blendshapes (see the module notes). Build it with
    [`load_head`][unils.arkit.head.load_head].

    Attributes:
        vertices: float32 [V, 3] neutral vertices (cm).
        faces: int64 [F, 3] triangles.
        part: uint8 [V] part of each vertex, an index into ``part_names``.
        part_names: ``("skin", "mouth", "eye_socket", "gums", "teeth", "cornea", "eyeball")``; the
            cornea is ICT's clear outer eye shell (viewers leave it out or draw it transparent),
            the eyeball carries the white, the iris and the pupil.
        paint: uint8 [V] colour class of each vertex, an index into ``paint_names``.
        paint_names: ``("skin", "lip", "mouth", "eye_socket", "gums", "teeth", "cornea", "sclera",
            "iris", "pupil")``.
        shape_names: the ARKit names that have a shape, in [`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES]
            order.
        missing: ARKit names without a shape -> what happens to them.
        eye_vertices: per eye (left, right), the ``[start, stop)`` vertex range of its eyeball.
        eye_centres: float64 [2, 3] eyeball centres.
        pivot: float64 [3] point the head turns about (the top of the neck).
        deltas: float32 [52, V * 3] blendshape offsets, zero rows for missing shapes.
        manifest: the asset's manifest (source, licence, sizes).
    """

    vertices: np.ndarray
    faces: np.ndarray
    part: np.ndarray
    part_names: tuple[str, ...]
    paint: np.ndarray
    paint_names: tuple[str, ...]
    shape_names: tuple[str, ...]
    missing: dict[str, str]
    eye_vertices: tuple[tuple[int, int], tuple[int, int]]
    eye_centres: np.ndarray
    pivot: np.ndarray
    deltas: np.ndarray = field(repr=False)
    manifest: dict[str, Any] = field(repr=False)

    @property
    def num_vertices(self) -> int:
        """V."""
        return int(self.vertices.shape[0])

    def pose(self, weights: Any, head: Any = None, eyes: Any = None) -> np.ndarray:
        """Vertices for one or more frames of ARKit weights, head rotation and gaze.

        Args:
            weights: [52] or [T, 52] ARKit weights ([`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES] order;
                usually in [0, 1]).
            head: [3] or [T, 3] head (yaw, pitch, roll) in radians, or None for none.
            eyes: [2, 2] or [T, 2, 2] gaze (yaw, pitch) of the left then the right eye, or None.

        Returns:
            float32 [T, V, 3] vertices ([1, V, 3] for one frame).

        Raises:
            ArkitError: misshapen or non-finite inputs.
        """
        w = _frames(weights, (NUM_BLENDSHAPES,), "weights")
        t = w.shape[0]
        v = (self.vertices.reshape(1, -1) + w.astype(np.float32) @ self.deltas).reshape(t, -1, 3)
        if eyes is not None:
            g = _frames(eyes, (2, 2), "eyes", t)
            if np.any(g):
                rot = axis_angle_to_matrix(
                    np.concatenate([gaze_to_eye_axis_angle(g), np.zeros((t, 2, 1))], axis=-1)
                ).astype(np.float32)  # [T, 2, 3, 3]
                for e, (a, b) in enumerate(self.eye_vertices):
                    c = self.eye_centres[e].astype(np.float32)
                    v[:, a:b] = (v[:, a:b] - c) @ np.swapaxes(rot[:, e], 1, 2) + c
        if head is not None:
            h = _frames(head, (3,), "head", t)
            if np.any(h):
                rot = axis_angle_to_matrix(euler_to_axis_angle(h)).astype(np.float32)
                p = self.pivot.astype(np.float32)
                v = (v - p) @ np.swapaxes(rot, 1, 2) + p
        return v

    def save_glb(self, path: str | os.PathLike[str], colors: Any = None) -> Path:
        """Write the head as a binary glTF 2.0 file (``.glb``) with its ARKit blendshapes as morph targets.

        For engines and viewers: three.js (``GLTFLoader``: ``mesh.morphTargetDictionary`` holds the ARKit
        names), Unity (glTFast, UniGLTF), Blender, Godot. Metres, glTF axes (y up, the face looking down +z,
        as in ARKit's face frame); one mesh without the clear cornea shells, one dense morph target per name
        in `shape_names` (``mesh.extras.targetNames``), vertex
        colours when ``colors`` ([V, 3] RGB in [0, 1]) is given. Head rotation and gaze are not in the file:
        turn the node and the eyeball vertices (``eye_vertices`` about ``eye_centres``) in your engine, or use
        ``eyeLook*`` only.

        Args:
            path: output file (about 16 MB: the morph targets are dense float32).
            colors: optional per-vertex albedo.

        Returns:
            The path written.
        """
        out = Path(path)
        keep = ~(self.part[self.faces] == self.part_names.index("cornea")).any(axis=1)
        faces = self.faces[keep].astype("<u4")
        blobs: list[bytes] = []
        views: list[dict[str, Any]] = []
        accessors: list[dict[str, Any]] = []

        def add(arr: np.ndarray, kind: str, component: int, target: int | None, minmax: bool) -> int:
            offset = sum(len(b) for b in blobs)
            data = np.ascontiguousarray(arr).tobytes()
            blobs.append(data + b"\0" * (-len(data) % 4))
            view: dict[str, Any] = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
            if target is not None:
                view["target"] = target
            views.append(view)
            acc: dict[str, Any] = {
                "bufferView": len(views) - 1, "componentType": component, "count": int(arr.shape[0]), "type": kind,
            }  # fmt: skip
            if minmax:
                acc["min"] = arr.min(axis=0).astype(float).tolist()
                acc["max"] = arr.max(axis=0).astype(float).tolist()
            accessors.append(acc)
            return len(accessors) - 1

        float_, uint_, array_buffer, element_buffer = 5126, 5125, 34962, 34963
        attributes = {
            "POSITION": add((self.vertices * 0.01).astype("<f4"), "VEC3", float_, array_buffer, True)
        }
        if colors is not None:
            rgb = np.clip(np.asarray(colors, np.float32).reshape(self.num_vertices, 3), 0.0, 1.0)
            attributes["COLOR_0"] = add(rgb.astype("<f4"), "VEC3", float_, array_buffer, False)
        indices = add(faces.reshape(-1), "SCALAR", uint_, element_buffer, False)
        targets = []
        for name in self.shape_names:
            delta = (self.deltas[ARKIT_NAMES.index(name)].reshape(-1, 3) * 0.01).astype("<f4")
            targets.append({"POSITION": add(delta, "VEC3", float_, array_buffer, True)})
        binary = b"".join(blobs)
        gltf = {
            "asset": {"version": "2.0", "generator": "unils (ICT-FaceKit head, MIT licence)",
                      "copyright": "ICT-FaceKit: Copyright (c) 2020 USC Institute for Creative Technologies, MIT"},
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0, "name": "ict_head"}],
            "materials": [{"name": "skin", "pbrMetallicRoughness": {
                "baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.7}}],
            "meshes": [{
                "name": "ict_head",
                "primitives": [{"attributes": attributes, "indices": indices, "material": 0, "targets": targets}],
                "weights": [0.0] * len(targets),
                "extras": {"targetNames": list(self.shape_names)},
            }],
            "buffers": [{"byteLength": len(binary)}],
            "bufferViews": views,
            "accessors": accessors,
        }  # fmt: skip
        text = json.dumps(gltf, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 4)
        total = 12 + 8 + len(text) + 8 + len(binary)
        with open(out, "wb") as fh:
            fh.write(struct.pack("<4sII", b"glTF", 2, total))
            fh.write(struct.pack("<I4s", len(text), b"JSON") + text)
            fh.write(struct.pack("<I4s", len(binary), b"BIN\0") + binary)
        return out


def _frames(value: Any, tail: tuple[int, ...], name: str, frames: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ArkitError(f"{name} must be numeric: {exc}") from exc
    if arr.shape == tail:
        arr = arr[None]
    if arr.shape[1:] != tail or (frames is not None and arr.shape[0] != frames):
        want = f"[{frames if frames is not None else 'T'}, {', '.join(map(str, tail))}]"
        raise ArkitError(f"{name} must have shape {list(tail)} or {want}, got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ArkitError(f"{name} holds NaN or inf values")
    return arr


def load_head(path: str | os.PathLike[str] | None = None) -> ArkitHead:
    """Load a head asset: the bundled ICT-FaceKit head (``None``) or a manifest written by ``scripts/build_ict_head.py``.

    The bundled head is read once per process and shared (its arrays are read-only).

    Args:
        path: an ``ict_head.json``-style manifest (its ``.bin`` beside it), or None for the bundled one.

    Returns:
        The [`ArkitHead`][unils.arkit.head.ArkitHead].

    Raises:
        FileNotFoundError: no manifest at ``path``.
        ArkitError: the files are not a head asset or disagree with each other.
    """
    if path is None:
        return _bundled()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no head manifest at {p}")
    return _read(p.read_text(), p.parent)


@lru_cache(maxsize=1)
def _bundled() -> ArkitHead:
    folder = resources.files("unils") / "assets" / "ict_head"
    text = (folder / HEAD_ASSET).read_text()
    return _read(text, folder)


def _read(text: str, folder: Any) -> ArkitHead:
    try:
        man = json.loads(text)
        if man.get("format") != "unils-ict-head":
            raise ArkitError("not a unils head manifest (format is not 'unils-ict-head')")
        blob = (folder / man["bin"]).read_bytes()
        arrays = {}
        for key, spec in man["arrays"].items():
            a, n = int(spec["offset"]), int(spec["nbytes"])
            if a + n > len(blob):
                raise ArkitError(f"{man['bin']} is shorter than its manifest says (array {key})")
            arrays[key] = np.frombuffer(
                blob, np.dtype(spec["dtype"]), n // np.dtype(spec["dtype"]).itemsize, a
            )
            arrays[key] = arrays[key].reshape(spec["shape"])
        names = [str(s) for s in man["shapes"]]
        counts = np.asarray(man["shape_counts"], np.int64)
        vertices = arrays["vertices"].astype(np.float32)
        idx = arrays["shape_indices"].astype(np.int64)
        off = arrays["shape_offsets"].astype(np.float32)
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ArkitError(f"unreadable head asset: {exc}") from exc
    v = vertices.shape[0]
    if len(names) != len(counts) or int(counts.sum()) != len(idx) or len(idx) != len(off):
        raise ArkitError("head asset: shape names, counts and offsets disagree")
    deltas = np.zeros((NUM_BLENDSHAPES, v, 3), np.float32)
    start = 0
    for name, n in zip(names, counts.tolist()):
        if name not in ARKIT_NAMES:
            raise ArkitError(f"head asset: {name!r} is not an ARKit blendshape name")
        deltas[ARKIT_NAMES.index(name), idx[start : start + n]] = off[start : start + n]
        start += n
    faces = arrays["faces"].astype(np.int64)
    if faces.size and int(faces.max()) >= v:
        raise ArkitError("head asset: triangles index vertices that do not exist")
    vertices.setflags(write=False)
    deltas = deltas.reshape(NUM_BLENDSHAPES, v * 3)
    deltas.setflags(write=False)
    ev = man["eye_vertices"]
    return ArkitHead(
        vertices=vertices,
        faces=faces,
        part=arrays["part"].astype(np.uint8),
        part_names=tuple(man["part_names"]),
        paint=arrays["paint"].astype(np.uint8),
        paint_names=tuple(man["paint_names"]),
        shape_names=tuple(n for n in ARKIT_NAMES if n in names),
        missing=dict(man.get("missing", {})),
        eye_vertices=((int(ev[0][0]), int(ev[0][1])), (int(ev[1][0]), int(ev[1][1]))),
        eye_centres=np.asarray(man["eye_centres"], np.float64),
        pivot=np.asarray(man["pivot"], np.float64),
        deltas=deltas,
        manifest=man,
    )
