"""`Motion`: one person's FLAME motion as typed, named numpy arrays at a frame rate.

The official 108-d per-frame layout:

| part | columns | meaning |
|---|---|---|
| expression | 0-99 | FLAME expression coefficients |
| head_pose | 100-102 | global head rotation, axis-angle (radians) |
| jaw | 103 | jaw rotation, first axis-angle component |
| eyes | 104-107 | eye joint 1 (x, y), eye joint 2 (x, y) |

[`PARTS`][unils.motion.PARTS] maps each part to its columns; [`COLUMNS`][unils.motion.COLUMNS] names the 108
columns as they appear in CSV headers.
"""

from __future__ import annotations

import csv
import json
import math
import operator
import os
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from .config import MOTION_DIM
from .errors import FormatError, MotionError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["COLUMNS", "MOTION_DIM", "MOTION_FORMAT_VERSION", "PARTS", "Motion", "MotionLike"]

#: Part name -> columns of the 108-d vector, in the official order (read-only).
PARTS: Mapping[str, slice] = MappingProxyType(
    {
        "expression": slice(0, 100),
        "head_pose": slice(100, 103),
        "jaw": slice(103, 104),
        "eyes": slice(104, 108),
    }
)
_WIDTHS = {name: cols.stop - cols.start for name, cols in PARTS.items()}

#: Version written into ``.npz`` / JSON files by [`Motion.save`][unils.motion.Motion.save] and
#: [`Motion.to_json`][unils.motion.Motion.to_json]; files from a newer unils are refused rather than misread.
MOTION_FORMAT_VERSION = 1

#: Names of the 108 channels in order, as used in CSV headers (after a leading ``time`` column).
COLUMNS: tuple[str, ...] = (
    *(f"expression_{i}" for i in range(100)),
    "head_pose_x",
    "head_pose_y",
    "head_pose_z",
    "jaw",
    "eye1_x",
    "eye1_y",
    "eye2_x",
    "eye2_y",
)

#: What the model accepts wherever it takes a motion (style, previous motion): a
#: [`Motion`][unils.motion.Motion], or a [T, 108] numpy array or torch tensor in the official layout. A string
#: so motion.py never imports torch.
MotionLike: TypeAlias = "Motion | np.ndarray | Tensor"


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is deprecated and will be removed in a future release; use {new}",
        DeprecationWarning,
        stacklevel=3,
    )


def load_motion_file(path: str | os.PathLike[str]) -> Motion:
    """Deprecated: use [`Motion.load`][unils.motion.Motion.load]. Reads ``.npz``, ``.npy``, ``.json`` or
    ``.csv`` by suffix.

    Raises:
        FileNotFoundError: no such file.
        FormatError: another suffix.
        MotionError: the file's content is not a valid motion.
    """
    _deprecated("load_motion_file(path)", "Motion.load(path)")
    p = Path(path)
    if p.suffix.lower() not in Motion.SUFFIXES:
        raise FormatError(f"{p.name}: not a motion file (expected {', '.join(Motion.SUFFIXES)})")
    return Motion.load(p)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor (any device, with or without grad), without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _as_part(value: Any, name: str) -> np.ndarray:
    try:
        arr = _to_numpy(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise MotionError(f"Motion.{name} must be a numeric array: {exc}") from exc
    if arr.dtype.kind not in "iuf":
        raise MotionError(f"Motion.{name} must be a real numeric array, got dtype {arr.dtype}")
    width = _WIDTHS[name]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise MotionError(f"Motion.{name} must have shape [frames, {width}], got {list(arr.shape)}")
    # Checked after the cast: float64 values beyond float32 range become inf, reported below
    # as a MotionError rather than as a numpy warning.
    with np.errstate(over="ignore", invalid="ignore"):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        frame = int(np.argwhere(bad)[0, 0])
        raise MotionError(f"Motion.{name} has {int(bad.sum())} NaN/inf value(s) (first at frame {frame})")
    return arr


def _as_fps(fps: Any) -> float:
    if isinstance(fps, (bool, np.bool_)) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise MotionError(f"fps must be a positive number, got {fps!r}")
    value = float(fps)
    if not (math.isfinite(value) and value > 0):
        raise MotionError(f"fps must be a positive finite number, got {fps!r}")
    return value


@dataclass(eq=False, repr=False)
class Motion:
    """Motion of one person: named float32 coefficient arrays over T frames at ``fps``.

    Build one from named parts, from the official [T, 108] array
    ([`from_array`][unils.motion.Motion.from_array]) or from a file ([`load`][unils.motion.Motion.load];
    [`save`][unils.motion.Motion.save] writes one). Inputs are validated and converted to C-contiguous
    float32; an input that already is may be shared rather than copied.

    Indexing selects frames and always returns a Motion: ``m[3]`` (one frame), ``m[10:20]``, ``m[[1, 5, 7]]``,
    ``m[mask]``. Motions are mutable (their arrays are), hence unhashable; ``==`` is exact equality of every
    value and of fps, [`allclose`][unils.motion.Motion.allclose] the tolerant form.

    Attributes:
        expression: [T, 100] FLAME expression coefficients (columns 0-99).
        head_pose: [T, 3] global head rotation, axis-angle in radians (columns 100-102).
        jaw: [T, 1] jaw rotation, first axis-angle component (column 103).
        eyes: [T, 4] eye joint 1 (x, y) then eye joint 2 (x, y) (columns 104-107).
        fps: frames per second (25 for UniLS).

    Raises:
        MotionError: a part has the wrong shape or non-finite values, the parts disagree on T,
            or fps is not a positive number.
    """

    expression: np.ndarray
    head_pose: np.ndarray
    jaw: np.ndarray
    eyes: np.ndarray
    fps: float = 25.0

    # The arrays are mutable, so a hash could change under a dict's feet.
    __hash__ = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        for name in PARTS:
            setattr(self, name, _as_part(getattr(self, name), name))
        lengths = {name: getattr(self, name).shape[0] for name in PARTS}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{n}={t}" for n, t in lengths.items())
            raise MotionError(f"all parts need the same number of frames, got {detail}")
        self.fps = _as_fps(self.fps)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_array(cls, array: Any, fps: float = 25.0) -> Motion:
        """Build from the official [T, 108] layout.

        Args:
            array: [T, 108] numpy array or torch tensor, columns in the order of
                [`PARTS`][unils.motion.PARTS]. A single frame must be given as [1, 108].
            fps: frames per second.

        Returns:
            A new Motion (the parts are copies).

        Raises:
            MotionError: ``array`` is not [T, 108] or holds NaN/inf.
        """
        try:
            arr = _to_numpy(array)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise MotionError(f"motion array must be numeric: {exc}") from exc
        if arr.ndim != 2 or arr.shape[1] != MOTION_DIM:
            raise MotionError(f"motion array must have shape [frames, {MOTION_DIM}], got {list(arr.shape)}")
        return cls(**{name: arr[:, cols] for name, cols in PARTS.items()}, fps=fps)

    @classmethod
    def zeros(cls, frames: int, fps: float = 25.0) -> Motion:
        """A neutral motion (all coefficients zero).

        Args:
            frames: number of frames, ``>= 0``.
            fps: frames per second.

        Returns:
            A Motion of ``frames`` zero frames.
        """
        n = operator.index(frames)
        if n < 0:
            raise MotionError(f"frames must be >= 0, got {n}")
        return cls.from_array(np.zeros((n, MOTION_DIM), np.float32), fps=fps)

    def to_array(self) -> np.ndarray:
        """The official layout.

        Returns:
            New [T, 108] float32 array, columns in the order of [`PARTS`][unils.motion.PARTS].
        """
        return np.concatenate([getattr(self, name) for name in PARTS], axis=1)

    def copy(self) -> Motion:
        """A deep copy (arrays are not shared)."""
        return Motion(**{n: getattr(self, n).copy() for n in PARTS}, fps=self.fps)

    # ------------------------------------------------------------------ time
    def __len__(self) -> int:
        """Number of frames."""
        return self.expression.shape[0]

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return len(self)

    @property
    def duration(self) -> float:
        """Length in seconds (``num_frames / fps``)."""
        return len(self) / self.fps

    @property
    def times(self) -> np.ndarray:
        """Timestamp in seconds of every frame (``index / fps``), float64 [T]."""
        return np.arange(len(self)) / self.fps

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Motion:
        """Select frames.

        Args:
            index: an int (gives a 1-frame Motion), a slice, a 1-D integer index array / list, or a
                boolean mask of length T.

        Returns:
            A new Motion with the selected frames and the same fps.

        Raises:
            IndexError: an index is out of range, or the mask has the wrong length.
            TypeError: ``index`` is a tuple (only frames can be selected) or of another type.
        """
        if isinstance(index, tuple):
            raise TypeError("Motion indexing selects frames only; use .to_array() for [frames, columns]")
        n = len(self)
        if isinstance(index, slice):
            key: slice | np.ndarray = index
        elif isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"frame {i} out of range for {n} frames")
            i %= n
            key = slice(i, i + 1)
        else:
            key = _to_numpy(index)
            if key.ndim != 1:
                raise IndexError(f"frame index arrays must be 1-D, got shape {list(key.shape)}")
            if key.size == 0:
                key = key.astype(np.intp)
            elif key.dtype.kind not in "biu":
                raise TypeError(f"frame indices must be integers or booleans, got dtype {key.dtype}")
        return Motion(**{name: getattr(self, name)[key] for name in PARTS}, fps=self.fps)

    def slice_time(self, start: float, end: float | None = None) -> Motion:
        """Frames whose index is in ``[round(start * fps), round(end * fps))``.

        Bounds are clipped to the motion, so ``slice_time(a, b)`` and ``slice_time(b, c)`` tile
        ``slice_time(a, c)`` exactly. Rounding is Python's ``round`` (halves to even).

        Args:
            start: start time in seconds.
            end: end time in seconds (exclusive); None = until the end.

        Returns:
            A new Motion (possibly empty).
        """
        if not math.isfinite(start) or (end is not None and not math.isfinite(end)):
            raise MotionError(f"slice_time bounds must be finite, got start={start!r}, end={end!r}")
        n = len(self)
        a = min(max(int(round(float(start) * self.fps)), 0), n)
        b = n if end is None else min(max(int(round(float(end) * self.fps)), 0), n)
        return self[a : max(a, b)]

    @staticmethod
    def concatenate(motions: Sequence[Motion]) -> Motion:
        """Join motions in time.

        Args:
            motions: non-empty sequence of Motions sharing the same fps.

        Returns:
            A new Motion with all frames in order.

        Raises:
            MotionError: the sequence is empty or the fps differ.
        """
        motions = list(motions)
        if not motions:
            raise MotionError("nothing to concatenate (give at least one Motion)")
        for m in motions:
            if not isinstance(m, Motion):
                raise TypeError(f"Motion.concatenate takes Motions, got {type(m).__name__}")
        fps = sorted({m.fps for m in motions})
        if len(fps) != 1:
            raise MotionError(f"cannot concatenate motions with different fps: {fps}")
        return Motion(**{n: np.concatenate([getattr(m, n) for m in motions]) for n in PARTS}, fps=fps[0])

    # ------------------------------------------------------------------ comparison
    def __eq__(self, other: object) -> bool:
        """Exact equality of fps and of every value (shapes included)."""
        if not isinstance(other, Motion):
            return NotImplemented
        return self.fps == other.fps and all(
            np.array_equal(getattr(self, n), getattr(other, n)) for n in PARTS
        )

    def allclose(self, other: Motion, atol: float = 1e-6, rtol: float = 0.0) -> bool:
        """Same length and fps, and every value within ``atol + rtol * |other|``.

        Args:
            other: the Motion to compare with.
            atol: absolute tolerance.
            rtol: relative tolerance.

        Returns:
            True when the motions match within tolerance.
        """
        if not isinstance(other, Motion):
            raise TypeError(f"allclose compares two Motions, got {type(other).__name__}")
        return (
            len(self) == len(other)
            and self.fps == other.fps
            and all(np.allclose(getattr(self, n), getattr(other, n), atol=atol, rtol=rtol) for n in PARTS)
        )

    def __repr__(self) -> str:
        return f"Motion(frames={len(self)}, duration={self.duration:.2f}s, fps={self.fps:g})"

    # ------------------------------------------------------------------ files, by suffix
    #: File suffixes [`save`][unils.motion.Motion.save] and [`load`][unils.motion.Motion.load] choose the
    #: format by.
    SUFFIXES = (".npz", ".npy", ".json", ".csv")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this motion to a file in the format its suffix names.

        - ``.npz`` (and any suffix unils does not know, as before): compressed, the four parts,
          ``fps`` and ``format_version``; exact. Written at exactly ``path`` (numpy would append ``.npz``).
        - ``.json``: the text of [`to_json`][unils.motion.Motion.to_json]; exact.
        - ``.csv``: header ``time`` then [`COLUMNS`][unils.motion.COLUMNS], one row per frame, with enough
          digits for an exact float32 round trip.
        - ``.npy``: the [T, 108] float32 array of [`to_array`][unils.motion.Motion.to_array]; it stores no
          frame rate, so only 25 fps motions are written this way.

        Args:
            path: destination file; parent folders are created.

        Returns:
            The path written.

        Raises:
            FormatError: ``.npy`` for a motion that is not at 25 fps.

        Example:
            ```python
            motion.save("me.npz"); motion.save("me.csv")
            assert Motion.load("me.csv") == Motion.load("me.npz")
            ```
        """
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix == ".npy" and self.fps != 25.0:
            raise FormatError(
                f"{p.name}: a .npy file stores no frame rate; save this {self.fps:g} fps motion as .npz, .json or .csv"
            )
        p.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            p.write_text(self.to_json(), encoding="utf-8")
        elif suffix == ".csv":
            self._write_csv(p)
        elif suffix == ".npy":
            with open(p, "wb") as fh:
                np.save(fh, self.to_array())
        else:
            with open(p, "wb") as fh:
                np.savez_compressed(
                    fh,
                    **{n: getattr(self, n) for n in PARTS},
                    fps=np.float64(self.fps),
                    format_version=np.int64(MOTION_FORMAT_VERSION),
                )
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Motion:
        """Read a motion file written by [`save`][unils.motion.Motion.save], in the format its suffix names.

        ``.json`` and ``.csv`` are read as text (CSV columns are matched by name, in any order; the frame rate
        comes from the ``time`` column, 25 when it has fewer than two rows). Any other suffix is read as numpy
        data: an ``.npz`` from [`save`][unils.motion.Motion.save], an ``.npz`` holding one [T, 108] array, or
        an ``.npy`` [T, 108] array (at 25 fps).

        Args:
            path: the file.

        Returns:
            The validated Motion.

        Raises:
            FileNotFoundError: no file at ``path``.
            MotionError: the file is not a motion file, lacks keys or columns, comes from a newer
                format version or holds invalid values.
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no motion file at {p}")
        suffix = p.suffix.lower()
        if suffix == ".json":
            return cls._from_json_text(p.read_text(encoding="utf-8"))
        if suffix == ".csv":
            return cls._read_csv(p, None)
        try:
            data = np.load(p, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise MotionError(f"{p} is not a readable motion .npz/.npy file: {exc}") from exc
        if isinstance(data, np.ndarray):
            return cls.from_array(data)
        try:
            with data:
                return cls._from_npz(data, p)
        except (OSError, zipfile.BadZipFile) as exc:
            raise MotionError(f"{p} is not a readable motion .npz file: {exc}") from exc

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Motion:
        """Deprecated: use [`load`][unils.motion.Motion.load], which reads every suffix.

        Unlike [`load`][unils.motion.Motion.load], refuses suffixes other than
        [`SUFFIXES`][unils.motion.Motion.SUFFIXES] with a ``FormatError``.
        """
        _deprecated("Motion.read(path)", "Motion.load(path)")
        p = Path(path)
        if p.suffix.lower() not in cls.SUFFIXES:
            raise FormatError(f"{p.name}: not a motion file (expected {', '.join(cls.SUFFIXES)})")
        return cls.load(p)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Deprecated: use [`save`][unils.motion.Motion.save], which writes every suffix.

        Unlike [`save`][unils.motion.Motion.save], refuses suffixes other than ``.npz``, ``.json`` and
        ``.csv`` with a ``FormatError``.
        """
        _deprecated("Motion.write(path)", "Motion.save(path)")
        p = Path(path)
        if p.suffix.lower() not in (".npz", ".json", ".csv"):
            raise FormatError(f"{p.name}: motion is written as .npz, .json or .csv")
        return self.save(p)

    @classmethod
    def _from_npz(cls, data: Any, p: Path) -> Motion:
        keys = set(data.files)
        if len(keys) == 1 and not keys & set(PARTS):
            return cls.from_array(data[next(iter(keys))])
        missing = sorted((set(PARTS) | {"fps"}) - keys)
        if missing:
            raise MotionError(f"{p} lacks the motion key(s) {missing} (found {sorted(keys)})")
        version = int(data["format_version"]) if "format_version" in keys else MOTION_FORMAT_VERSION
        if version > MOTION_FORMAT_VERSION:
            raise MotionError(
                f"{p} has motion format version {version}, this unils reads up to {MOTION_FORMAT_VERSION}; "
                "upgrade unils"
            )
        fps = data["fps"]
        if fps.shape != ():
            raise MotionError(f"{p}: fps must be a scalar, got shape {list(fps.shape)}")
        return cls(**{n: data[n] for n in PARTS}, fps=fps.item())

    # ------------------------------------------------------------------ dict / JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"fps": float, "expression": [[...]], "head_pose", "jaw", "eyes"}``.

        Each part is a nested list ``[T][width]`` of Python floats (exact float32 values).
        """
        return {"fps": self.fps, **{n: getattr(self, n).tolist() for n in PARTS}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Motion:
        """Inverse of [`to_dict`][unils.motion.Motion.to_dict] (``fps`` defaults to 25 when absent).

        Raises:
            MotionError: a part is missing or misshapen, or the format version is newer than supported.
        """
        if not isinstance(data, Mapping):
            raise MotionError(f"motion dict must be a mapping, got {type(data).__name__}")
        missing = [n for n in PARTS if n not in data]
        if missing:
            raise MotionError(f"motion dict lacks {missing}")
        version = data.get("format_version", MOTION_FORMAT_VERSION)
        if not isinstance(version, int) or version > MOTION_FORMAT_VERSION:
            raise MotionError(
                f"unsupported motion format version {version!r} (this unils reads up to {MOTION_FORMAT_VERSION})"
            )
        parts = {}
        for n in PARTS:
            try:
                arr = np.asarray(data[n], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise MotionError(
                    f"motion dict: {n} must be a [frames, {_WIDTHS[n]}] list of numbers: {exc}"
                ) from exc
            # An empty list carries no width; it can only mean zero frames.
            parts[n] = np.zeros((0, _WIDTHS[n]), np.float32) if arr.size == 0 else arr
        return cls(**parts, fps=data.get("fps", 25.0))

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """JSON text of [`to_dict`][unils.motion.Motion.to_dict] plus ``format_version`` (for APIs and
        messages; files: [`save`][unils.motion.Motion.save]).

        Args:
            path: deprecated; when given, the text is also written there (use ``save("x.json")``).

        Returns:
            The JSON text.
        """
        text = json.dumps({"format_version": MOTION_FORMAT_VERSION, **self.to_dict()})
        if path is not None:
            _deprecated("Motion.to_json(path)", "Motion.save(path) with a .json suffix")
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike[str]) -> Motion:
        """Parse JSON text written by [`to_json`][unils.motion.Motion.to_json] (files:
        [`load`][unils.motion.Motion.load]).

        Args:
            text_or_path: JSON text (a string starting with ``{``); a path is deprecated (use ``load``).

        Raises:
            FileNotFoundError: a path was given and there is no such file.
            MotionError: the text is not valid motion JSON.
        """
        if isinstance(text_or_path, str) and text_or_path.lstrip().startswith("{"):
            return cls._from_json_text(text_or_path)
        _deprecated("Motion.from_json(path)", "Motion.load(path)")
        return cls._from_json_text(Path(text_or_path).read_text(encoding="utf-8"))

    @classmethod
    def _from_json_text(cls, text: str) -> Motion:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MotionError(f"motion JSON is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    # ------------------------------------------------------------------ CSV
    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Deprecated: use [`save`][unils.motion.Motion.save] with a ``.csv`` suffix (this writes CSV whatever
        the suffix)."""
        _deprecated("Motion.to_csv(path)", "Motion.save(path) with a .csv suffix")
        self._write_csv(Path(path))

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], fps: float | None = None) -> Motion:
        """Deprecated: use [`load`][unils.motion.Motion.load] (this reads CSV whatever the suffix; ``fps``
        overrides the time column)."""
        _deprecated("Motion.from_csv(path)", "Motion.load(path)")
        return cls._read_csv(Path(path), fps)

    def _write_csv(self, path: Path) -> None:
        arr = self.to_array()
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["time", *COLUMNS])
            for t, row in zip(self.times, arr):
                writer.writerow([repr(float(t)), *(repr(float(v)) for v in row)])

    @classmethod
    def _read_csv(cls, path: Path, fps: float | None) -> Motion:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            raise MotionError(f"{path} is empty (expected a unils motion CSV header)")
        header = [h.strip() for h in rows[0]]
        missing = [c for c in ["time", *COLUMNS] if c not in header]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise MotionError(f"{path} lacks motion CSV column(s) {shown}")
        body = [r for r in rows[1:] if r]
        try:
            table = np.array([[float(v) for v in r] for r in body], dtype=np.float64).reshape(
                len(body), len(header)
            )
        except ValueError as exc:
            raise MotionError(f"{path} has a non-numeric cell or a row of the wrong length: {exc}") from exc
        col = {name: i for i, name in enumerate(header)}
        values = table[:, [col[c] for c in COLUMNS]].astype(np.float32)
        if fps is None:
            fps = _fps_from_times(table[:, col["time"]], path)
        return cls.from_array(values, fps=fps)

    def frames(self) -> Iterator[dict[str, Any]]:
        """Iterate over frames as JSON-ready dicts, for streaming consumers.

        Yields:
            ``{"index": int, "time": float, "expression": [100 floats], "head_pose": [3],
            "jaw": [1], "eyes": [4]}`` for each frame in order.
        """
        for i in range(len(self)):
            yield {
                "index": i,
                "time": i / self.fps,
                **{n: getattr(self, n)[i].tolist() for n in PARTS},
            }

    @classmethod
    def from_frames(cls, frames: Iterable[Mapping[str, Any]], fps: float | None = None) -> Motion:
        """Rebuild a Motion from per-frame dicts such as those [`frames`][unils.motion.Motion.frames] yields.

        Only the four parts are read from each dict; other keys (``index``, ``time``...) are ignored
        except for recovering the frame rate.

        Args:
            frames: dicts with ``expression`` [100], ``head_pose`` [3], ``jaw`` [1] and ``eyes`` [4].
            fps: frame rate; None = from the ``time`` keys of the first two frames (25 when there
                are fewer than two frames or no ``time`` keys).

        Returns:
            A new Motion with one frame per dict (an empty Motion for no dicts).

        Raises:
            MotionError: a dict lacks a part, or a part has the wrong length or non-numeric values.
        """
        frames = list(frames)
        parts: dict[str, Any] = {}
        for n in PARTS:
            rows = []
            for i, f in enumerate(frames):
                if not isinstance(f, Mapping) or n not in f:
                    raise MotionError(f"frame {i} lacks {n!r} (expected a dict as Motion.frames() yields)")
                rows.append(f[n])
            try:
                arr = np.asarray(rows, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise MotionError(f"frames: every {n} must be {_WIDTHS[n]} numbers: {exc}") from exc
            parts[n] = arr.reshape(0, _WIDTHS[n]) if arr.size == 0 else arr
        if fps is None:
            fps = 25.0
            if len(frames) >= 2 and "time" in frames[0] and "time" in frames[1]:
                fps = _fps_from_times(np.array([frames[0]["time"], frames[1]["time"]], np.float64), "frames")
        return cls(**parts, fps=fps)


def _fps_from_times(times: np.ndarray, path: Any) -> float:
    if times.shape[0] < 2:
        return 25.0
    span = float(times[-1] - times[0])
    if not (math.isfinite(span) and span > 0):
        raise MotionError(f"{path}: the time column does not increase; pass fps= explicitly")
    # Rounded so that e.g. 24 / 0.96 gives 25.0 rather than 25.000000000000004.
    return round((times.shape[0] - 1) / span, 6)
