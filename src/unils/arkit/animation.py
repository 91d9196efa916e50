"""`ArkitAnimation`: ARKit blendshape weights plus head and eye rotation over time, and its files.

Files by suffix: ``.npz`` (exact), ``.json`` (per-frame ``{name: weight}`` dictionaries, ready for a
three.js ``morphTargetDictionary``) and ``.csv`` (Live Link Face's CSV layout).
"""

from __future__ import annotations

import csv
import json
import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArkitError
from .names import ARKIT_NAMES, LIVELINK_NAMES, NUM_BLENDSHAPES, arkit_index, mirror_index

__all__ = ["ARKIT_FORMAT_VERSION", "ArkitAnimation", "from_livelink_values", "livelink_values"]

#: Version written into ``.npz`` / JSON files; newer files are refused rather than misread.
ARKIT_FORMAT_VERSION = 1

_YAW_ROLL = np.array([1.0, 0.0, 1.0])


def livelink_values(
    weights: np.ndarray, head: np.ndarray, eyes: np.ndarray, *, mirror: bool = False
) -> np.ndarray:
    """The 61 Live Link Face values per frame, as Unreal's Apple ARKit source reads them.

    Weights are copied; rotations are divided by pi, Epic's mapping of -180..180 degrees onto -1..1
    (``AppleARKitFaceSupport``'s ``ToBlendShapeMap``); eye roll is 0. With ``mirror`` the face is
    mirrored the way Epic's code distinguishes its two tracking directions: left and right channels
    swap and yaw and roll change sign.

    Args:
        weights: [T, 52] in [`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES] order.
        head: [T, 3] (yaw, pitch, roll), radians.
        eyes: [T, 2, 2] left then right eye (yaw, pitch), radians.
        mirror: mirror the face (see above).

    Returns:
        float32 [T, 61] in [`LIVELINK_NAMES`][unils.arkit.names.LIVELINK_NAMES] order.
    """
    t = weights.shape[0]
    rot = np.zeros((t, 9), np.float64)
    rot[:, 0:3] = head
    rot[:, 3:5] = eyes[:, 0]
    rot[:, 6:8] = eyes[:, 1]
    rot /= math.pi
    values = np.concatenate([np.asarray(weights, np.float64), rot], axis=1)
    if mirror:
        values = values[:, list(mirror_index())]
        for start in (52, 55, 58):
            values[:, start : start + 3] *= np.where(_YAW_ROLL > 0, -1.0, 1.0)
    return values.astype(np.float32)


def from_livelink_values(
    values: np.ndarray, *, mirror: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of [`livelink_values`][unils.arkit.animation.livelink_values]: [T, 61] -> (weights [T, 52],
    head [T, 3], eyes [T, 2, 2])."""
    v = np.asarray(values, np.float64).copy()
    if mirror:  # mirroring is its own inverse
        for start in (52, 55, 58):
            v[:, start : start + 3] *= np.where(_YAW_ROLL > 0, -1.0, 1.0)
        v = v[:, list(mirror_index())]
    rot = v[:, 52:] * math.pi
    eyes = np.stack([rot[:, 3:5], rot[:, 6:8]], axis=1)
    return v[:, :52], rot[:, :3], eyes


def _as(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ArkitError(f"ArkitAnimation.{name} must be a numeric array: {exc}") from exc
    if arr.dtype.kind not in "iuf" or arr.ndim != len(shape) + 1 or arr.shape[1:] != shape:
        raise ArkitError(
            f"ArkitAnimation.{name} must be a real array of shape [frames, {', '.join(map(str, shape))}], got {list(arr.shape)} {arr.dtype}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ArkitError(f"ArkitAnimation.{name} has NaN/inf values")
    return arr


@dataclass(eq=False, repr=False)
class ArkitAnimation:
    """ARKit-52 weights, head rotation and gaze of one person over T frames at ``fps``.

    Indexing selects frames and returns an ArkitAnimation (``a[3]``, ``a[10:20]``, ``a[mask]``);
    [`slice_time`][unils.arkit.animation.ArkitAnimation.slice_time] selects by seconds. ``==`` is exact
    equality, [`allclose`][unils.arkit.animation.ArkitAnimation.allclose] tolerant.

    Attributes:
        weights: float32 [T, 52] in [0, 1], columns in [`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES] order.
        head: float32 [T, 3] head (yaw, pitch, roll), radians (convention in
            [`unils.arkit.rotations`][unils.arkit.rotations]).
        eyes: float32 [T, 2, 2] gaze (yaw, pitch) of the left then the right eye, radians.
        fps: frames per second.
        expression_mapped: whether expression channels came from an expression map; when False,
            only ``jawOpen`` and the eight ``eyeLook*`` weights can be non-zero.

    Raises:
        ArkitError: misshapen or non-finite arrays, weights outside [0, 1], parts of different
            lengths, or a non-positive fps.
    """

    weights: np.ndarray
    head: np.ndarray
    eyes: np.ndarray
    fps: float = 25.0
    expression_mapped: bool = False

    __hash__ = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.weights = _as(self.weights, "weights", (NUM_BLENDSHAPES,))
        self.head = _as(self.head, "head", (3,))
        self.eyes = _as(self.eyes, "eyes", (2, 2))
        if self.weights.size and (self.weights.min() < 0.0 or self.weights.max() > 1.0):
            raise ArkitError("ArkitAnimation.weights must lie in [0, 1]")
        lengths = {len(self.weights), len(self.head), len(self.eyes)}
        if len(lengths) > 1:
            raise ArkitError(f"weights, head and eyes need the same number of frames, got {sorted(lengths)}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float, np.integer, np.floating)):
            raise ArkitError(f"fps must be a positive number, got {self.fps!r}")
        self.fps = float(self.fps)
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ArkitError(f"fps must be a positive finite number, got {self.fps!r}")
        self.expression_mapped = bool(self.expression_mapped)

    # ------------------------------------------------------------------ names and time
    @property
    def names(self) -> tuple[str, ...]:
        """The 52 blendshape names, in column order ([`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES])."""
        return ARKIT_NAMES

    def weight(self, name: str) -> np.ndarray:
        """One blendshape's weights over time, [T]; ``name`` in any case (``jawOpen`` or ``JawOpen``)."""
        i = arkit_index(name)
        if i >= NUM_BLENDSHAPES:
            raise ArkitError(f"{name!r} is a rotation channel, not a blendshape; use .head or .eyes")
        return self.weights[:, i]

    def __len__(self) -> int:
        """Number of frames."""
        return self.weights.shape[0]

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return len(self)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self) / self.fps

    @property
    def times(self) -> np.ndarray:
        """Timestamp in seconds of every frame, float64 [T]."""
        return np.arange(len(self)) / self.fps

    def _with(self, key: Any) -> ArkitAnimation:
        return ArkitAnimation(
            self.weights[key], self.head[key], self.eyes[key], self.fps, self.expression_mapped
        )

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> ArkitAnimation:
        """Select frames: an int (1-frame animation), a slice, an integer index array or a boolean mask."""
        if isinstance(index, tuple):
            raise TypeError("ArkitAnimation indexing selects frames only")
        n = len(self)
        if isinstance(index, slice):
            return self._with(index)
        if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"frame {i} out of range for {n} frames")
            i %= n
            return self._with(slice(i, i + 1))
        key = np.asarray(index)
        if key.ndim != 1:
            raise IndexError(f"frame index arrays must be 1-D, got shape {list(key.shape)}")
        if key.size == 0:
            key = key.astype(np.intp)
        elif key.dtype.kind not in "biu":
            raise TypeError(f"frame indices must be integers or booleans, got dtype {key.dtype}")
        return self._with(key)

    def slice_time(self, start: float, end: float | None = None) -> ArkitAnimation:
        """Frames whose index is in ``[round(start * fps), round(end * fps))``, clipped to the animation."""
        if not math.isfinite(start) or (end is not None and not math.isfinite(end)):
            raise ArkitError(f"slice_time bounds must be finite, got start={start!r}, end={end!r}")
        n = len(self)
        a = min(max(round(float(start) * self.fps), 0), n)
        b = n if end is None else min(max(round(float(end) * self.fps), 0), n)
        return self[a : max(a, b)]

    @staticmethod
    def concatenate(parts: Sequence[ArkitAnimation]) -> ArkitAnimation:
        """Join animations of the same fps in time (``expression_mapped`` if all of them are)."""
        parts = list(parts)
        if not parts:
            raise ArkitError("nothing to concatenate (give at least one ArkitAnimation)")
        if len({p.fps for p in parts}) != 1:
            raise ArkitError(
                f"cannot concatenate animations with different fps: {sorted({p.fps for p in parts})}"
            )
        return ArkitAnimation(
            np.concatenate([p.weights for p in parts]),
            np.concatenate([p.head for p in parts]),
            np.concatenate([p.eyes for p in parts]),
            parts[0].fps,
            all(p.expression_mapped for p in parts),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArkitAnimation):
            return NotImplemented
        return (
            self.fps == other.fps
            and self.expression_mapped == other.expression_mapped
            and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in ("weights", "head", "eyes"))
        )

    def allclose(self, other: ArkitAnimation, atol: float = 1e-6) -> bool:
        """Same length and fps, and every weight and angle within ``atol``."""
        return (
            len(self) == len(other)
            and self.fps == other.fps
            and all(
                np.allclose(getattr(self, n), getattr(other, n), atol=atol, rtol=0)
                for n in ("weights", "head", "eyes")
            )
        )

    def __repr__(self) -> str:
        mapped = "expressions mapped" if self.expression_mapped else "no expression map"
        return (
            f"ArkitAnimation(frames={len(self)}, duration={self.duration:.2f}s, fps={self.fps:g}, {mapped})"
        )

    def livelink_values(self, *, mirror: bool = False) -> np.ndarray:
        """float32 [T, 61] values of Live Link Face packets / CSV rows (see
        [`livelink_values`][unils.arkit.animation.livelink_values])."""
        return livelink_values(self.weights, self.head, self.eyes, mirror=mirror)

    # ------------------------------------------------------------------ files
    SUFFIXES = (".npz", ".json", ".csv")

    def save(self, path: str | os.PathLike[str], *, mirror: bool = False) -> Path:
        """Write by suffix: ``.npz`` (exact), ``.json`` (three.js-ready) or ``.csv`` (Live Link Face).

        Args:
            path: destination; parent folders are created.
            mirror: for ``.csv`` only, mirror the face as
                [`livelink_values`][unils.arkit.animation.livelink_values] does.

        Returns:
            The path written.

        Raises:
            ArkitError: another suffix.
        """
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in self.SUFFIXES:
            raise ArkitError(f"{p.name}: ARKit animations are written as {', '.join(self.SUFFIXES)}")
        p.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".npz":
            with open(p, "wb") as fh:
                np.savez_compressed(
                    fh, weights=self.weights, head=self.head, eyes=self.eyes, fps=np.float64(self.fps),
                    expression_mapped=np.bool_(self.expression_mapped), names=np.array(ARKIT_NAMES),
                    format_version=np.int64(ARKIT_FORMAT_VERSION),
                )  # fmt: skip
        elif suffix == ".json":
            p.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        else:
            self.to_csv(p, mirror=mirror)
        return p

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, fps: float | None = None, mirror: bool = False
    ) -> ArkitAnimation:
        """Read a file written by [`save`][unils.arkit.animation.ArkitAnimation.save], by suffix (``.csv``
        also reads Live Link Face recordings).

        Args:
            path: the file.
            fps: for ``.csv`` only, the frame rate (None = from the timecodes, see
                [`from_csv`][unils.arkit.animation.ArkitAnimation.from_csv]).
            mirror: for ``.csv`` only, undo a mirrored face.

        Raises:
            FileNotFoundError: no such file.
            ArkitError: unknown suffix or invalid content.
        """
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in cls.SUFFIXES:
            raise ArkitError(f"{p.name}: ARKit animations are read from {', '.join(cls.SUFFIXES)}")
        if not p.is_file():
            raise FileNotFoundError(f"no ARKit animation file at {p}")
        if suffix == ".json":
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ArkitError(f"{p} is not valid JSON: {exc}") from exc
            return cls.from_dict(data)
        if suffix == ".csv":
            return cls.from_csv(p, fps=fps, mirror=mirror)
        try:
            with np.load(p, allow_pickle=False) as data:
                missing = sorted({"weights", "head", "eyes", "fps"} - set(data.files))
                if missing:
                    raise ArkitError(f"{p} lacks the key(s) {missing}")
                _check_version(int(data["format_version"]) if "format_version" in data.files else 1, p)
                if "names" in data.files and tuple(str(n) for n in data["names"]) != ARKIT_NAMES:
                    raise ArkitError(f"{p}: blendshape names differ from unils.arkit.ARKIT_NAMES")
                mapped = bool(data["expression_mapped"]) if "expression_mapped" in data.files else False
                return cls(data["weights"], data["head"], data["eyes"], float(data["fps"]), mapped)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            if isinstance(exc, ArkitError):
                raise
            raise ArkitError(f"{p} is not a readable ARKit .npz file: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``fps``, ``names``, ``expression_mapped`` and per frame ``time``,
        ``blendshapes`` (``{name: weight}``), ``head`` [yaw, pitch, roll] and ``eyes`` [[yaw, pitch] x 2]."""
        frames = [
            {
                "time": i / self.fps,
                "blendshapes": dict(zip(ARKIT_NAMES, w.tolist())),
                "head": h.tolist(),
                "eyes": e.tolist(),
            }
            for i, (w, h, e) in enumerate(zip(self.weights, self.head, self.eyes))
        ]
        return {
            "format": "unils-arkit",
            "format_version": ARKIT_FORMAT_VERSION,
            "fps": self.fps,
            "names": list(ARKIT_NAMES),
            "expression_mapped": self.expression_mapped,
            "angles": "radians; head (yaw, pitch, roll), eyes left then right (yaw, pitch)",
            "frames": frames,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ArkitAnimation:
        """Inverse of [`to_dict`][unils.arkit.animation.ArkitAnimation.to_dict]; blendshape keys are matched
        ignoring case, missing ones are 0."""
        if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
            raise ArkitError(
                "ARKit JSON must be an object with a 'frames' list (as ArkitAnimation.to_dict writes)"
            )
        _check_version(data.get("format_version", ARKIT_FORMAT_VERSION), "ARKit JSON")
        t = len(data["frames"])
        weights = np.zeros((t, NUM_BLENDSHAPES))
        head = np.zeros((t, 3))
        eyes = np.zeros((t, 2, 2))
        try:
            for i, f in enumerate(data["frames"]):
                for name, value in f.get("blendshapes", {}).items():
                    weights[i, arkit_index(name)] = float(value)
                head[i] = f.get("head", [0.0, 0.0, 0.0])
                eyes[i] = f.get("eyes", [[0.0, 0.0], [0.0, 0.0]])
        except (TypeError, ValueError, AttributeError) as exc:
            raise ArkitError(f"ARKit JSON frame {i} is malformed: {exc}") from exc
        return cls(weights, head, eyes, data.get("fps", 25.0), bool(data.get("expression_mapped", False)))

    def to_csv(self, path: str | os.PathLike[str], *, mirror: bool = False, start_frame: int = 0) -> None:
        """Write Live Link Face's CSV: ``Timecode,BlendShapeCount,`` then the 61 channel names.

        The timecode is ``HH:MM:SS:FF.mmm`` (frame ``FF`` within the second at this fps, ``.mmm`` the
        sub-frame in thousandths, always 000 here), counted from ``start_frame``; values are those of
        [`livelink_values`][unils.arkit.animation.livelink_values] (rotations divided by pi).

        Args:
            path: destination file.
            mirror: mirror the face (see [`livelink_values`][unils.arkit.animation.livelink_values]).
            start_frame: frame count of the first row's timecode.
        """
        values = self.livelink_values(mirror=mirror)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["Timecode", "BlendShapeCount", *LIVELINK_NAMES])
            for i, row in enumerate(values):
                writer.writerow(
                    [
                        _timecode(start_frame + i, self.fps),
                        len(LIVELINK_NAMES),
                        *(repr(float(v)) for v in row),
                    ]
                )

    @classmethod
    def from_csv(
        cls, path: str | os.PathLike[str], *, fps: float | None = None, mirror: bool = False
    ) -> ArkitAnimation:
        """Read a Live Link Face CSV (columns by name, any case; absent channels are 0).

        Args:
            path: the CSV file.
            fps: the frame rate; None = the largest ``FF`` field + 1 when the file spans a whole
                second, else 25.
            mirror: undo a mirrored face.

        Raises:
            ArkitError: no ``Timecode`` column, an unknown timecode, or non-numeric cells.
        """
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
        if not rows or rows[0][0].strip().lower() != "timecode":
            raise ArkitError(f"{path} is not a Live Link Face CSV (its first column must be Timecode)")
        header = [h.strip() for h in rows[0]]
        cols: dict[int, int] = {}
        for j, h in enumerate(header[1:], start=1):
            if h.lower() in ("blendshapecount", ""):
                continue
            cols[arkit_index(h)] = j
        values = np.zeros((len(rows) - 1, len(LIVELINK_NAMES)))
        frames_in_second = []
        try:
            for i, r in enumerate(rows[1:]):
                frames_in_second.append(int(r[0].split(":")[3].split(".")[0]))
                for k, j in cols.items():
                    values[i, k] = float(r[j])
        except (ValueError, IndexError) as exc:
            raise ArkitError(f"{path} row {i + 2} is malformed: {exc}") from exc
        if fps is None:
            fps = (
                float(max(frames_in_second) + 1)
                if frames_in_second and frames_in_second.count(0) >= 2
                else 25.0
            )
        weights, head, eyes = from_livelink_values(values, mirror=mirror)
        return cls(np.clip(weights, 0.0, 1.0), head, eyes, fps, False)


def _timecode(frame: int, fps: float) -> str:
    per_second = max(1, round(fps))
    seconds, ff = divmod(frame, per_second)
    minutes, ss = divmod(seconds, 60)
    hh, mm = divmod(minutes, 60)
    return f"{hh % 24:02d}:{mm:02d}:{ss:02d}:{ff:02d}.000"


def _check_version(version: Any, where: Any) -> None:
    if not isinstance(version, (int, np.integer)) or int(version) > ARKIT_FORMAT_VERSION:
        raise ArkitError(
            f"{where}: ARKit format version {version!r} is newer than this unils reads ({ARKIT_FORMAT_VERSION}); upgrade unils"
        )
