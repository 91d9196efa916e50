"""`Motion`: one person's FLAME motion as typed, named numpy arrays at a frame rate.

The official 108-d per-frame layout (see the spec):

==========  =========  =============================================
part        columns    meaning
==========  =========  =============================================
expression  0-99       FLAME expression coefficients
head_pose   100-102    global head rotation, axis-angle (radians)
jaw         103        jaw rotation, first axis-angle component
eyes        104-107    eye joint 1 (x, y), eye joint 2 (x, y)
==========  =========  =============================================
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MotionError

__all__ = ["Motion", "PARTS", "MOTION_DIM"]

MOTION_DIM = 108
#: Part name -> columns of the 108-d vector, in the official order.
PARTS: dict[str, slice] = {
    "expression": slice(0, 100),
    "head_pose": slice(100, 103),
    "jaw": slice(103, 104),
    "eyes": slice(104, 108),
}
_FORMAT_VERSION = 1


def _column_names() -> list[str]:
    return (
        [f"expression_{i}" for i in range(100)]
        + ["head_pose_x", "head_pose_y", "head_pose_z", "jaw"]
        + ["eye1_x", "eye1_y", "eye2_x", "eye2_y"]
    )


#: CSV/JSON column names of the 108 channels, in order.
COLUMNS: list[str] = _column_names()


@dataclass(eq=False)
class Motion:
    """Motion of one person: named coefficient arrays over T frames at ``fps``.

    Attributes:
        expression: [T, 100] FLAME expression coefficients.
        head_pose: [T, 3] global head rotation (axis-angle, radians).
        jaw: [T, 1] jaw opening (first axis-angle component, radians).
        eyes: [T, 4] eye rotations (eye 1 x, y, eye 2 x, y).
        fps: frames per second (25 for UniLS).
    """

    expression: np.ndarray
    head_pose: np.ndarray
    jaw: np.ndarray
    eyes: np.ndarray
    fps: float = 25.0

    __hash__ = None  # type: ignore[assignment]  # mutable arrays: not hashable

    def __post_init__(self) -> None:
        lengths = set()
        for name, cols in PARTS.items():
            value = getattr(self, name)
            try:
                arr = np.ascontiguousarray(value, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise MotionError(f"Motion.{name} must be a numeric array: {exc}") from exc
            width = cols.stop - cols.start
            if arr.ndim != 2 or arr.shape[1] != width:
                raise MotionError(f"Motion.{name} must have shape [frames, {width}], got {list(arr.shape)}")
            if not np.isfinite(arr).all():
                raise MotionError(f"Motion.{name} has {int((~np.isfinite(arr)).sum())} NaN/inf values")
            lengths.add(arr.shape[0])
            object.__setattr__(self, name, arr)
        if len(lengths) > 1:
            raise MotionError(f"all parts need the same number of frames, got {sorted(lengths)}")
        if not (isinstance(self.fps, (int, float)) and np.isfinite(self.fps) and self.fps > 0):
            raise MotionError(f"fps must be a positive number, got {self.fps!r}")
        self.fps = float(self.fps)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_array(cls, array: Any, fps: float = 25.0) -> "Motion":
        """Build from a [T, 108] array (numpy or torch) in the official column order."""
        if hasattr(array, "detach"):
            array = array.detach().cpu().numpy()
        arr = np.asarray(array)
        if arr.ndim != 2 or arr.shape[1] != MOTION_DIM:
            raise MotionError(f"motion array must have shape [frames, {MOTION_DIM}], got {list(arr.shape)}")
        return cls(**{name: arr[:, cols] for name, cols in PARTS.items()}, fps=fps)

    @classmethod
    def zeros(cls, frames: int, fps: float = 25.0) -> "Motion":
        """A neutral motion of ``frames`` frames."""
        return cls.from_array(np.zeros((frames, MOTION_DIM), np.float32), fps=fps)

    def to_array(self) -> np.ndarray:
        """[T, 108] float32 in the official column order."""
        return np.concatenate([getattr(self, name) for name in PARTS], axis=1)

    # ------------------------------------------------------------------ time
    def __len__(self) -> int:
        return self.expression.shape[0]

    @property
    def num_frames(self) -> int:
        return len(self)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self) / self.fps

    @property
    def times(self) -> np.ndarray:
        """Timestamp (seconds) of every frame."""
        return np.arange(len(self)) / self.fps

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> "Motion":
        """Frames by index, slice, index array or boolean mask; always returns a Motion."""
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"frame {i} out of range for {len(self)} frames")
            index = slice(i, i + 1 if i != -1 else None)
        arr = self.to_array()[index]
        return Motion.from_array(arr, fps=self.fps)

    def slice_time(self, start: float, end: float | None = None) -> "Motion":
        """Frames whose index is in [round(start * fps), round(end * fps))."""
        a = int(round(start * self.fps))
        b = len(self) if end is None else int(round(end * self.fps))
        return self[max(a, 0) : max(b, 0)]

    @staticmethod
    def concatenate(motions: Sequence["Motion"]) -> "Motion":
        """Join motions in time; all must share the same fps."""
        if not motions:
            raise MotionError("nothing to concatenate")
        fps = {m.fps for m in motions}
        if len(fps) != 1:
            raise MotionError(f"cannot concatenate motions with different fps: {sorted(fps)}")
        return Motion.from_array(np.concatenate([m.to_array() for m in motions]), fps=motions[0].fps)

    # ------------------------------------------------------------------ comparison
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Motion):
            return NotImplemented
        return self.fps == other.fps and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in PARTS)

    def allclose(self, other: "Motion", atol: float = 1e-6, rtol: float = 0.0) -> bool:
        """Same length and fps, and every value within ``atol + rtol * |other|``."""
        return (
            len(self) == len(other)
            and self.fps == other.fps
            and bool(np.allclose(self.to_array(), other.to_array(), atol=atol, rtol=rtol))
        )

    def __repr__(self) -> str:
        return f"Motion(frames={len(self)}, duration={self.duration:.2f}s, fps={self.fps:g})"

    # ------------------------------------------------------------------ files and exporters
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a compressed ``.npz`` with the named parts and fps."""
        np.savez_compressed(path, **{n: getattr(self, n) for n in PARTS}, fps=self.fps, format_version=_FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Motion":
        """Read a file written by :meth:`save` (also accepts an ``.npz`` with one [T, 108] array)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no motion file at {p}")
        try:
            with np.load(p) as data:
                keys = set(data.files)
                if set(PARTS) <= keys:
                    return cls(**{n: data[n] for n in PARTS}, fps=float(data["fps"]) if "fps" in keys else 25.0)
                if len(keys) == 1:
                    return cls.from_array(data[next(iter(keys))])
        except (OSError, ValueError) as exc:
            raise MotionError(f"{p} is not a readable motion .npz: {exc}") from exc
        raise MotionError(f"{p} lacks the motion parts {sorted(set(PARTS) - keys)}")

    def to_dict(self) -> dict[str, Any]:
        """``{"fps", "expression", "head_pose", "jaw", "eyes"}`` with nested lists (JSON-ready)."""
        return {"fps": self.fps, **{n: getattr(self, n).tolist() for n in PARTS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Motion":
        """Inverse of :meth:`to_dict`."""
        missing = [n for n in PARTS if n not in data]
        if missing:
            raise MotionError(f"motion dict lacks {missing}")
        return cls(**{n: np.asarray(data[n], np.float32).reshape(-1, PARTS[n].stop - PARTS[n].start) for n in PARTS},
                   fps=data.get("fps", 25.0))

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """JSON text of :meth:`to_dict`; also written to ``path`` when given."""
        text = json.dumps(self.to_dict())
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike[str]) -> "Motion":
        """Read JSON text or a ``.json`` file written by :meth:`to_json`."""
        p = Path(text_or_path) if not str(text_or_path).lstrip().startswith("{") else None
        text = p.read_text(encoding="utf-8") if p is not None else str(text_or_path)
        return cls.from_dict(json.loads(text))

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """CSV with a ``time`` column then the 108 named channels (see ``COLUMNS``)."""
        arr = self.to_array()
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["time", *COLUMNS])
            for t, row in zip(self.times, arr):
                writer.writerow([repr(float(t)), *(repr(float(v)) for v in row)])

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> "Motion":
        """Read a CSV written by :meth:`to_csv` (fps recovered from the time column)."""
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows or rows[0][1:] != COLUMNS:
            raise MotionError(f"{path} does not have the unils motion CSV header")
        data = np.asarray([[float(v) for v in r] for r in rows[1:]], np.float64).reshape(-1, MOTION_DIM + 1)
        fps = 1.0 / (data[1, 0] - data[0, 0]) if data.shape[0] > 1 else 25.0
        return cls.from_array(data[:, 1:].astype(np.float32), fps=round(fps, 6))

    def frames(self) -> Iterator[dict[str, Any]]:
        """Per-frame dicts ``{"index", "time", "expression", "head_pose", "jaw", "eyes"}`` (lists of floats)."""
        for i in range(len(self)):
            yield {
                "index": i,
                "time": i / self.fps,
                **{n: getattr(self, n)[i].tolist() for n in PARTS},
            }
