"""The training dataset format, its validator, and the clip sampler of the three stages.

A dataset is a folder:

```text
DIR/
  dataset.json                 {"format": "unils-dataset", "version": 1, "fps": 25, "sample_rate": 16000}
  conversations/<clip_id>/
      speaker0.wav             mono 16 kHz, the first person's voice
      speaker1.wav             mono 16 kHz, the second person's voice
      motion.npz               speaker0 [T, 108], speaker1 [T, 108] float32 (25 fps);
                               optional speech_mask [2, T] bool
  motion_only/<clip_id>.npz    motion [T, 108] float32 (optional; stages 1 and 2 only)
```

Audio is padded or cropped to ``T * 640`` samples when read, as the official loader does, so a
small length mismatch is fine; a large one is reported. Sequences of 101 frames or fewer are too
short to train on (a 100-frame clip plus at least one frame) and are skipped with a warning.

Sampling follows the official recipe: one index entry per start ``s`` in ``0, 50, 100, ...`` below
``T - 100``; at draw time the start is uniform in ``[s, s + 50]`` clipped to ``T - 100``; the previous
clip is the 100 frames before it (left-padded with zeros), the style clip a uniformly random window of
the same sequence. Both people of a conversation share the start.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ..config import FPS, MOTION_DIM, SAMPLE_RATE
from ..errors import DatasetError

__all__ = [
    "DATASET_FORMAT",
    "DATASET_VERSION",
    "DatasetError",
    "DatasetReport",
    "Sequence",
    "Conversation",
    "TrainingData",
    "validate_dataset",
    "load_dataset",
    "write_dataset_json",
    "ClipSampler",
    "MotionBatch",
    "PairBatch",
]

logger = logging.getLogger("unils.train")

#: The ``format`` field of a dataset folder's ``dataset.json``.
DATASET_FORMAT = "unils-dataset"
#: The dataset layout version this unils reads and writes.
DATASET_VERSION = 1
CLIP = 100
STRIDE = 50


@dataclass
class DatasetReport:
    """What [`validate_dataset`][unils.train.data.validate_dataset] found: counts, frames, problems and
    warnings."""

    root: Path
    conversations: int = 0
    motion_only: int = 0
    frames: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings are allowed)."""
        return not self.errors

    def summary(self) -> str:
        """A human-readable multi-line report."""
        lines = [
            f"{self.root}: {self.conversations} conversation(s), {self.motion_only} motion-only clip(s), "
            f"{self.frames} frames ({self.frames / FPS / 60:.1f} min of motion per person)",
        ]
        lines += [f"error: {e}" for e in self.errors]
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append("OK" if self.ok else f"{len(self.errors)} error(s)")
        return "\n".join(lines)


@dataclass
class Sequence:
    """One person's motion sequence [T, 108] (float32)."""

    key: str
    motion: np.ndarray


@dataclass
class Conversation:
    """Two people's motion and the paths of their audio tracks."""

    key: str
    motion: np.ndarray  # [2, T, 108]
    audio_paths: tuple[Path, Path]
    speech_mask: np.ndarray | None = None  # [2, T] bool

    @property
    def frames(self) -> int:
        """Motion frames of the conversation."""
        return self.motion.shape[1]


@dataclass
class TrainingData:
    """A loaded dataset: motion in memory, audio read on demand."""

    root: Path
    conversations: list[Conversation]
    motion_only: list[Sequence]

    def motion_sequences(self) -> list[Sequence]:
        """Every person's motion: both people of each conversation plus the motion-only clips."""
        out = [Sequence(f"{c.key}/speaker{i}", c.motion[i]) for c in self.conversations for i in range(2)]
        return out + self.motion_only

    def motion_stats(self, floor: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std over all motion frames (the codec's normalisation statistics).

        ``floor`` keeps channels that never move (unused expression coefficients) from dividing by ~0.
        """
        frames = np.concatenate([s.motion for s in self.motion_sequences()]).astype(np.float64)
        return frames.mean(0).astype(np.float32), np.maximum(frames.std(0), floor).astype(np.float32)


def write_dataset_json(root: str | os.PathLike[str], **extra: object) -> Path:
    """Write the ``dataset.json`` marker (with any extra fields, e.g. how the data was made)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    path = Path(root) / "dataset.json"
    meta = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        **extra,
    }
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def _read_motion(path: Path, keys: tuple[str, ...], report: DatasetReport) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                report.errors.append(f"{path}: missing array(s) {missing} (has {data.files})")
                return None
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        report.errors.append(f"{path}: not a readable .npz ({exc})")
        return None
    for k in keys:
        a = arrays[k]
        if a.ndim != 2 or a.shape[1] != MOTION_DIM:
            report.errors.append(f"{path}: {k} must be [T, {MOTION_DIM}], got {list(a.shape)}")
            return None
        if not np.issubdtype(a.dtype, np.floating):
            report.errors.append(f"{path}: {k} must be floating point, got {a.dtype}")
            return None
        if not np.isfinite(a).all():
            report.errors.append(f"{path}: {k} holds NaN or infinite values")
            return None
        arrays[k] = a.astype(np.float32, copy=False)
    return arrays


def _check_audio(path: Path, frames: int, report: DatasetReport) -> bool:
    if not path.is_file():
        report.errors.append(f"{path}: missing")
        return False
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
        report.errors.append(f"{path}: not a readable audio file ({exc})")
        return False
    if info.samplerate != SAMPLE_RATE:
        report.errors.append(f"{path}: sample rate {info.samplerate} Hz, the format needs {SAMPLE_RATE} Hz")
        return False
    if info.channels != 1:
        report.errors.append(f"{path}: {info.channels} channels, the format needs mono")
        return False
    expected = frames * (SAMPLE_RATE // FPS)
    if abs(info.frames - expected) > SAMPLE_RATE:  # more than a second off: probably the wrong file
        report.warnings.append(
            f"{path}: {info.frames / SAMPLE_RATE:.2f} s of audio for {frames / FPS:.2f} s of motion "
            "(padded/cropped when read)"
        )
    return True


def _scan(root: Path, load: bool) -> tuple[DatasetReport, TrainingData]:
    report = DatasetReport(root)
    data = TrainingData(root, [], [])
    if not root.is_dir():
        report.errors.append(f"{root}: not a folder")
        return report, data
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        report.errors.append(f"{meta_path}: missing (write it with unils.train.data.write_dataset_json)")
    else:
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            report.errors.append(f"{meta_path}: not valid JSON ({exc})")
            meta = {}
        if meta and meta.get("format") != DATASET_FORMAT:
            report.errors.append(
                f"{meta_path}: format is {meta.get('format')!r}, expected {DATASET_FORMAT!r}"
            )
        if meta and meta.get("version") != DATASET_VERSION:
            report.errors.append(
                f"{meta_path}: version {meta.get('version')!r} not supported (expects {DATASET_VERSION})"
            )
        for key, want in (("fps", FPS), ("sample_rate", SAMPLE_RATE)):
            if meta and key in meta and meta[key] != want:
                report.errors.append(f"{meta_path}: {key} {meta[key]} (unils trains at {want})")
    conv_dir, mo_dir = root / "conversations", root / "motion_only"
    if not conv_dir.is_dir() and not mo_dir.is_dir():
        report.errors.append(f"{root}: has neither conversations/ nor motion_only/")
    for clip in sorted(conv_dir.iterdir()) if conv_dir.is_dir() else []:
        if not clip.is_dir():
            report.warnings.append(f"{clip}: not a clip folder, ignored")
            continue
        arrays = (
            _read_motion(clip / "motion.npz", ("speaker0", "speaker1"), report)
            if (clip / "motion.npz").is_file()
            else None
        )
        if arrays is None:
            if not (clip / "motion.npz").is_file():
                report.errors.append(f"{clip / 'motion.npz'}: missing")
            continue
        m0, m1 = arrays["speaker0"], arrays["speaker1"]
        if m0.shape != m1.shape:
            report.errors.append(
                f"{clip / 'motion.npz'}: speaker0 {list(m0.shape)} and speaker1 {list(m1.shape)} differ"
            )
            continue
        mask = arrays.get("speech_mask")
        if mask is not None and mask.shape != (2, m0.shape[0]):
            report.errors.append(
                f"{clip / 'motion.npz'}: speech_mask must be [2, {m0.shape[0]}], got {list(mask.shape)}"
            )
            continue
        paths = (clip / "speaker0.wav", clip / "speaker1.wav")
        # A list, not a generator: both files are checked so the report names every problem.
        if not all([_check_audio(p, m0.shape[0], report) for p in paths]):  # noqa: C419
            continue
        if m0.shape[0] <= CLIP + 1:
            report.warnings.append(
                f"{clip.name}: {m0.shape[0]} frames, too short (needs > {CLIP + 1}); skipped"
            )
            continue
        report.conversations += 1
        report.frames += m0.shape[0]
        if load:
            data.conversations.append(
                Conversation(
                    clip.name, np.stack([m0, m1]), paths, None if mask is None else mask.astype(bool)
                )
            )
    for path in sorted(mo_dir.glob("*.npz")) if mo_dir.is_dir() else []:
        arrays = _read_motion(path, ("motion",), report)
        if arrays is None:
            continue
        m = arrays["motion"]
        if m.shape[0] <= CLIP + 1:
            report.warnings.append(
                f"{path.name}: {m.shape[0]} frames, too short (needs > {CLIP + 1}); skipped"
            )
            continue
        report.motion_only += 1
        report.frames += m.shape[0]
        if load:
            data.motion_only.append(Sequence(path.stem, m))
    if report.conversations == 0 and report.motion_only == 0 and not report.errors:
        report.errors.append(f"{root}: no usable clips")
    return report, data


def validate_dataset(root: str | os.PathLike[str]) -> DatasetReport:
    """Check a dataset folder without loading it for training; see the module docs for the format."""
    return _scan(Path(root), load=False)[0]


def load_dataset(root: str | os.PathLike[str], need_audio: bool = False) -> TrainingData:
    """Validate and load a dataset folder (motion in memory, audio read per batch).

    Raises:
        DatasetError: the folder has errors, or no conversations when ``need_audio``.
    """
    report, data = _scan(Path(root), load=True)
    for w in report.warnings:
        logger.warning("%s", w)
    if not report.ok:
        raise DatasetError("dataset has errors:\n" + "\n".join(report.errors[:20]))
    if need_audio and not data.conversations:
        raise DatasetError(f"{root}: stage 3 needs conversations with audio; only motion-only clips found")
    logger.info("%s", report.summary().splitlines()[0])
    return data


@dataclass
class MotionBatch:
    """Stage 1/2 batch: current, previous and style clips of B sequences, each [B, 100, 108]."""

    motion: np.ndarray
    prev: np.ndarray
    style: np.ndarray


@dataclass
class PairBatch:
    """Stage 3 batch of B conversations: motion/prev/style [B, 2, 100, 108], audio [B, 2, 64000]."""

    motion: np.ndarray
    prev: np.ndarray
    style: np.ndarray
    audio: np.ndarray


class ClipSampler:
    """Draws training clips with the official sampling rules; seeded, so runs are reproducible.

    Attributes:
        motion_index: ``(sequence, start)`` of every stage 1/2 clip window: starts ``0, stride, ...``
            below ``T - clip`` of each person's motion; a batch picks windows uniformly, then a start
            in ``[start, start + stride]``.
        pair_index: ``(conversation, start)`` of every stage 3 window, by the same rule.
        rng: the generator every draw comes from.
    """

    def __init__(self, data: TrainingData, seed: int = 0, clip: int = CLIP, stride: int = STRIDE) -> None:
        self.data = data
        self.clip = clip
        self.stride = stride
        self.rng = np.random.default_rng(seed)
        self.sequences = data.motion_sequences()
        self.motion_index = [
            (i, s) for i, seq in enumerate(self.sequences) for s in self._starts(len(seq.motion))
        ]
        self.pair_index = [(i, s) for i, c in enumerate(data.conversations) for s in self._starts(c.frames)]

    def _starts(self, length: int) -> range:
        return range(0, length - self.clip, self.stride)

    def _start(self, s: int, length: int) -> int:
        return min(int(self.rng.integers(s, s + self.stride + 1)), length - self.clip)

    def clips(self, motion: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The official (current, previous, style) clips of a [..., T, 108] array at ``start``.

        Current: frames ``start .. start + clip``; previous: the ``clip`` frames before it, zero-padded
        on the left; style: a ``clip``-frame window at a start drawn uniformly from ``0 .. T - clip``.
        """
        t = motion.shape[-2]
        cur = motion[..., start : start + self.clip, :]
        prev = motion[..., max(start - self.clip, 0) : start, :]
        pad = np.zeros(motion.shape[:-2] + (self.clip - prev.shape[-2], motion.shape[-1]), np.float32)
        prev = np.concatenate([pad, prev], axis=-2)
        s0 = int(self.rng.integers(0, t - self.clip + 1))
        style = motion[..., s0 : s0 + self.clip, :]
        return cur, prev, style

    def motion_batch(self, batch_size: int) -> MotionBatch:
        """B clips from every person's motion (stages 1 and 2)."""
        if not self.motion_index:
            raise DatasetError("no motion sequence is long enough to sample a clip")
        picks = self.rng.integers(0, len(self.motion_index), batch_size)
        out = []
        for p in picks:
            i, s = self.motion_index[int(p)]
            m = self.sequences[i].motion
            out.append(self.clips(m, self._start(s, len(m))))
        return MotionBatch(*(np.stack(x) for x in zip(*out)))

    def pair_batch(self, batch_size: int) -> PairBatch:
        """B conversations with both people's clips and audio windows (stage 3)."""
        if not self.pair_index:
            raise DatasetError("no conversation is long enough to sample a clip")
        picks = self.rng.integers(0, len(self.pair_index), batch_size)
        spf = SAMPLE_RATE // FPS
        out, audio = [], []
        for p in picks:
            i, s = self.pair_index[int(p)]
            conv = self.data.conversations[i]
            start = self._start(s, conv.frames)
            out.append(self.clips(conv.motion, start))
            audio.append(
                np.stack(
                    [
                        _read_window(path, start * spf, self.clip * spf, conv.frames * spf)
                        for path in conv.audio_paths
                    ]
                )
            )
        motion, prev, style = (np.stack(x) for x in zip(*out))
        return PairBatch(motion, prev, style, audio=np.stack(audio))


def _read_window(path: Path, start: int, length: int, total: int) -> np.ndarray:
    # The track is treated as padded/cropped to `total` samples, then the window is cut from it.
    stop = min(start + length, total)
    samples, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=False)
    out = np.zeros(length, np.float32)
    out[: samples.shape[0]] = samples[:length]
    return out
