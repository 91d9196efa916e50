"""Rebuild unils' 3-D head asset (``src/unils/assets/ict_head/``) from an ICT-FaceKit checkout.

ICT-FaceKit (USC Institute for Creative Technologies, Vision and Graphics Lab; MIT licence):
https://github.com/ICT-VGL/ICT-FaceKit. Its ``FaceXModel/`` folder holds the generic neutral head
(``generic_neutral_mesh.obj``, 26,719 vertices, centimetres, y up, the face looking down +z) and 53
expression shapes named like ARKit's (``browDown_L``, ``jawOpen``...), each a full mesh of the same
topology.

What the asset keeps (nothing else of ICT-FaceKit is copied):

* the neutral vertices of what a viewer sees: face, head and neck, mouth socket, eye sockets, gums and
  tongue, teeth, eyeballs (ICT's geometries #0-#8, vertices 0-24590; the translucent eye overlays and
  eyelash strips, #9-#16, are left out), as float32, and its polygons split into triangles (uint16);
* a part id per vertex (skin, mouth interior, eye socket, gums, teeth, cornea, eyeball; ICT's
  transparent outer eye shell is the "cornea", which viewers leave out) and a colour class per vertex
  (the part, with the lips, the iris and the pupil marked; see :func:`paint_classes`);
* one shape per ARKit blendshape that ICT has, in :data:`unils.arkit.ARKIT_NAMES` order: the offsets
  from the neutral mesh of the vertices that move more than ``--threshold`` cm, stored sparse
  (vertex indices + float16 offsets). ICT's split ``browInnerUp_L/_R`` and ``cheekPuff_L/_R`` are
  summed into ARKit's single ``browInnerUp`` and ``cheekPuff``; ICT's ``cheekRaiser_L/_R`` and
  ``PupilDilate_L/_R`` have no ARKit channel and are left out; ARKit's ``tongueOut`` has no ICT shape.

Usage::

    git clone https://github.com/ICT-VGL/ICT-FaceKit
    python scripts/build_ict_head.py ICT-FaceKit     # writes src/unils/assets/ict_head/ict_head.{json,bin}
    python scripts/build_ict_head.py ICT-FaceKit --out /tmp/head.json --threshold 0.002

The licence (``LICENSE``) and credits (``CREDITS.md``) of the checkout are copied beside the asset.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from unils.arkit import ARKIT_NAMES  # noqa: E402

#: Vertices kept: ICT geometries #0-#8 (face ... right eyeball) are vertices 0-24590.
KEEP_VERTICES = 24591
#: (first vertex, last vertex + 1, part name) in ICT's topology (its README's tables).
PARTS = (
    (0, 11248, "skin"),  # face (#0) and head and neck (#1)
    (11248, 13294, "mouth"),  # mouth socket (#2)
    (13294, 14062, "eye_socket"),  # eye sockets (#3, #4)
    (14062, 17039, "gums"),  # gums and tongue (#5)
    (17039, 21451, "teeth"),  # teeth (#6)
    # ICT calls the two shells of each eyeball "sclera" (outer, radius 1.45-1.67 cm: the clear cornea
    # and wet layer, textured transparent) and "iris" (inner, 1.2-1.58 cm: the eye's white, iris and
    # pupil come from its texture); unils keeps both and names them by what they show.
    (21451, 22221, "cornea"),  # left "sclera"
    (22221, 23021, "eyeball"),  # left "iris"
    (23021, 23791, "cornea"),  # right "sclera"
    (23791, 24591, "eyeball"),  # right "iris"
)
PART_NAMES = ("skin", "mouth", "eye_socket", "gums", "teeth", "cornea", "eyeball")
#: Sclera and iris vertex ranges of the left and right eyeballs (turned by the gaze).
EYE_SCLERA = ((21451, 22221), (23021, 23791))
EYE_IRIS = ((22221, 23021), (23791, 24591))
#: What stands in for the ARKit names ICT has no shape for.
MISSING_NOTE = {"tongueOut": "no ICT shape (the tongue stays in the mouth); the weight is ignored"}
#: ARKit names that end in Left / Right without being one side of a pair (ICT keeps them as they are).
UNSPLIT = ("jawLeft", "jawRight", "mouthLeft", "mouthRight")
#: Colour classes of the vertices (viewers pick the colours; skin and iris may differ per person).
PAINT_NAMES = ("skin", "lip", "mouth", "eye_socket", "gums", "teeth", "cornea", "sclera", "iris", "pupil")
PART_PAINT = {"skin": "skin", "mouth": "mouth", "eye_socket": "eye_socket", "gums": "gums", "teeth": "teeth",
              "cornea": "cornea", "eyeball": "sclera"}  # fmt: skip
#: Iris and pupil rims, degrees from the eye's forward axis seen from the eyeball's centre.
IRIS_ANGLE = 24.0
LIP_SHARE = 0.3
PUPIL_ANGLE = 9.0
#: ARKit names made of two ICT shapes.
SUMMED = {"browInnerUp": ("browInnerUp_L", "browInnerUp_R"), "cheekPuff": ("cheekPuff_L", "cheekPuff_R")}


def sphere_centre(points: np.ndarray) -> np.ndarray:
    """Least-squares centre of a sphere through ``points`` (an eyeball's sclera)."""
    a = np.c_[2.0 * points, np.ones(len(points))]
    sol = np.linalg.lstsq(a, (points**2).sum(axis=1), rcond=None)[0]
    return sol[:3]


def paint_classes(base, part, names, indices, offsets, centres) -> np.ndarray:  # type: ignore[no-untyped-def]
    """What colour class each vertex gets (:data:`PAINT_NAMES`): the part, with lips and eyes refined.

    Lips: the skin that one of ARKit's lip-roll shapes moves more than ``LIP_SHARE`` of its largest
    offset (those shapes move the lips and little else). Eyes: on the inner eyeball, the iris within
    ``IRIS_ANGLE`` degrees of the forward axis and the pupil within ``PUPIL_ANGLE``.
    """
    paint = np.array([PAINT_NAMES.index(PART_PAINT[PART_NAMES[p]]) for p in part], np.uint8)
    roll = np.zeros(len(base))
    for n in ("mouthRollLower", "mouthRollUpper"):
        k = names.index(n)
        d = np.zeros(len(base))
        d[indices[k].astype(np.int64)] = np.linalg.norm(offsets[k].astype(np.float64), axis=1)
        roll = np.maximum(roll, d / d.max())
    # ... between the outer lip midpoints (Multi-PIE landmarks 52 and 58: vertices 0 and 5518).
    between = (base[:, 1] <= base[0, 1] + 0.05) & (base[:, 1] >= base[5518, 1] - 0.05)
    lip = (roll > LIP_SHARE) & between & (part == PART_NAMES.index("skin"))
    paint[lip] = PAINT_NAMES.index("lip")
    for (a, _), (_, b), c in zip(EYE_SCLERA, EYE_IRIS, centres):
        inner = np.arange(a, b)[part[a:b] == PART_NAMES.index("eyeball")]
        v = base[inner] - c
        angle = np.degrees(np.arccos(np.clip(v[:, 2] / np.linalg.norm(v, axis=1), -1.0, 1.0)))
        paint[inner[angle <= IRIS_ANGLE]] = PAINT_NAMES.index("iris")
        paint[inner[angle <= PUPIL_ANGLE]] = PAINT_NAMES.index("pupil")
    return paint


def ict_name(arkit: str) -> str:
    """ICT's file stem for an ARKit name (``mouthSmileLeft`` -> ``mouthSmile_L``; ``jawLeft`` stays)."""
    if arkit in UNSPLIT:
        return arkit
    for side, tag in (("Left", "_L"), ("Right", "_R")):
        if arkit.endswith(side):
            return arkit[: -len(side)] + tag
    return arkit


def read_obj(path: Path) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices [V, 3] float64 and polygons (0-based vertex indices) of an OBJ file."""
    verts: list[str] = []
    polys: list[list[int]] = []
    with open(path) as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append(line[2:])
            elif line.startswith("f "):
                polys.append([int(tok.split("/")[0]) - 1 for tok in line.split()[1:]])
    v = np.array([row.split()[:3] for row in verts], dtype=np.float64)
    return v, polys


def read_vertices(path: Path) -> np.ndarray:
    with open(path) as fh:
        rows = [line[2:].split()[:3] for line in fh if line.startswith("v ")]
    return np.array(rows, dtype=np.float64)


def triangles(polys: list[list[int]], keep: int) -> np.ndarray:
    """Fan-triangulate the polygons whose vertices are all below ``keep``."""
    out = []
    for p in polys:
        if max(p) >= keep:
            continue
        out.extend((p[0], p[k], p[k + 1]) for k in range(1, len(p) - 1))
    return np.array(out, dtype=np.int64)


def build(checkout: Path, out: Path, threshold: float) -> dict[str, object]:
    model = checkout / "FaceXModel"
    neutral_path = model / "generic_neutral_mesh.obj"
    if not neutral_path.is_file():
        raise SystemExit(f"{neutral_path} not found: give the root of an ICT-FaceKit checkout")
    neutral, polys = read_obj(neutral_path)
    if neutral.shape[0] != 26719:
        raise SystemExit(f"expected ICT's 26,719-vertex topology, got {neutral.shape[0]} vertices")
    faces = triangles(polys, KEEP_VERTICES)
    base = neutral[:KEEP_VERTICES]
    part = np.zeros(KEEP_VERTICES, np.uint8)
    for a, b, name in PARTS:
        part[a:b] = PART_NAMES.index(name)

    names, indices, offsets, counts = [], [], [], []
    missing = []
    for arkit in ARKIT_NAMES:
        stems = SUMMED.get(arkit, (ict_name(arkit),))
        files = [model / f"{s}.obj" for s in stems]
        if not all(f.is_file() for f in files):
            missing.append(arkit)
            continue
        delta = sum(read_vertices(f)[:KEEP_VERTICES] - base for f in files)
        moved = np.flatnonzero(np.abs(delta).max(axis=1) > threshold)
        names.append(arkit)
        indices.append(moved.astype(np.uint16))
        offsets.append(delta[moved].astype(np.float16))
        counts.append(len(moved))
    centres = [sphere_centre(base[a:b]) for a, b in EYE_SCLERA]
    paint = paint_classes(base, part, names, indices, offsets, centres)
    arrays = {
        "vertices": base.astype("<f4"),
        "faces": faces.astype("<u2"),
        "shape_indices": np.concatenate(indices).astype("<u2"),
        "shape_offsets": np.concatenate(offsets).astype("<f2"),
        "part": part,
        "paint": paint,
    }
    blob = bytearray()
    table = {}
    for key, arr in arrays.items():
        blob += b"\0" * (-len(blob) % 4)  # 4-byte aligned for typed-array views
        table[key] = {
            "dtype": arr.dtype.str,
            "shape": list(arr.shape),
            "offset": len(blob),
            "nbytes": arr.nbytes,
        }
        blob += arr.tobytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    bin_path = out.with_suffix(".bin")
    bin_path.write_bytes(bytes(blob))
    manifest = {
        "format": "unils-ict-head",
        "version": 1,
        "source": "ICT-FaceKit FaceXModel (https://github.com/ICT-VGL/ICT-FaceKit), generic neutral mesh and "
        "expression shapes; MIT licence, Copyright (c) 2020 USC Institute for Creative Technologies",
        "licence": "MIT, see LICENSE-ICT-FaceKit.txt",
        "built_by": "scripts/build_ict_head.py",
        "units": "cm",
        "axes": "x to the subject's left, y up, z out of the face (towards the viewer)",
        "bin": bin_path.name,
        "bin_sha256": hashlib.sha256(bytes(blob)).hexdigest(),
        "threshold_cm": threshold,
        "arrays": table,
        "part_names": list(PART_NAMES),
        "paint_names": list(PAINT_NAMES),
        "shapes": names,
        "shape_counts": counts,
        "missing": {n: MISSING_NOTE.get(n, "no ICT shape: the weight is ignored") for n in missing},
        "summed": {k: list(v) for k, v in SUMMED.items()},
        "eye_vertices": [[EYE_SCLERA[0][0], EYE_IRIS[0][1]], [EYE_SCLERA[1][0], EYE_IRIS[1][1]]],
        "eye_centres": [[round(float(x), 5) for x in c] for c in centres],
        "eye_axis": [0.0, 0.0, 1.0],
        # ICT's Multi-PIE 68 landmarks 63 and 67 (1-based): the inner lips' midpoints.
        "lip_midpoints": {"upper": 5533, "lower": 5517},
        "pivot": [0.0, round(float(centres[0][1]) - 10.0, 5), round(float(centres[0][2]) - 8.0, 5)],
    }
    out.write_text(json.dumps(manifest, indent=1) + "\n")
    for name in ("LICENSE", "CREDITS.md"):
        if (checkout / name).is_file():
            target = out.parent / (
                "LICENSE-ICT-FaceKit.txt" if name == "LICENSE" else "CREDITS-ICT-FaceKit.md"
            )
            shutil.copyfile(checkout / name, target)
    return {
        "files": [str(out), str(bin_path)],
        "bytes": out.stat().st_size + bin_path.stat().st_size,
        "vertices": int(base.shape[0]),
        "triangles": int(faces.shape[0]),
        "shapes": len(names),
        "moved_vertices": int(sum(counts)),
        "missing": missing,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkout", type=Path, help="root of an ICT-FaceKit checkout (holds FaceXModel/)")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "src" / "unils" / "assets" / "ict_head" / "ict_head.json",
        help="output manifest (.json; the arrays go beside it as .bin; default: the package asset)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.001,
        help="offsets at or below this (cm) are dropped (default 0.001)",
    )
    args = p.parse_args()
    print(json.dumps(build(args.checkout, args.out, args.threshold), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
