"""Reading, validating and resampling audio inputs (soundfile + resampy).

Every entry point turns its input into mono float32 at 16 kHz or raises a clear error:
:class:`~unils.errors.AudioError` (a ``ValueError``) for unusable samples and
:class:`~unils.errors.AudioFileError` (a ``FileNotFoundError``) for files that are missing or
cannot be decoded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Union

import numpy as np
import torch

from .errors import AudioError, AudioFileError

__all__ = ["AudioInput", "load_audio", "to_mono_float32", "pad_to_same_length", "save_audio", "duration_to_frames", "Resampler"]

logger = logging.getLogger("unils")

AudioInput = Union[str, os.PathLike, np.ndarray, torch.Tensor]

SAMPLE_RATE = 16000
#: One motion frame of audio (40 ms): the shortest input that yields a frame.
MIN_SECONDS = 0.04


def duration_to_frames(num_samples: int, sample_rate: int = SAMPLE_RATE, fps: int = 25) -> int:
    """Motion frames for ``num_samples``: ceil(num_samples * fps / sample_rate), in exact integers."""
    return -(-int(num_samples) * int(fps) // int(sample_rate))


def _check_rate(sample_rate: object, name: str) -> int:
    try:
        rate = float(sample_rate)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AudioError(f"{name}: sample_rate must be a positive integer, got {sample_rate!r}") from None
    if not np.isfinite(rate) or rate <= 0 or rate != int(rate):
        raise AudioError(f"{name}: sample_rate must be a positive integer, got {sample_rate!r}")
    return int(rate)


def to_mono_float32(audio: np.ndarray | torch.Tensor, name: str = "audio") -> np.ndarray:
    """Validate samples and return mono float32 (channels averaged, integer PCM scaled to [-1, 1]).

    Accepts 1-D mono, ``[channels, samples]`` or ``[samples, channels]`` (the axis of size <= 8 is
    the channel axis). Does not check the length; see :func:`load_audio`.
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        audio = audio.float().numpy() if audio.is_floating_point() else audio.numpy()
    arr = np.asarray(audio)
    if arr.dtype == bool or np.iscomplexobj(arr) or arr.dtype == object:
        raise AudioError(f"{name}: unsupported sample type {arr.dtype}; pass float or integer PCM samples")
    if arr.dtype == np.int16:
        arr = arr.astype(np.float32) / 32768.0
    elif arr.dtype == np.int32:
        arr = arr.astype(np.float32) / 2.0**31
    elif arr.dtype == np.uint8:
        arr = (arr.astype(np.float32) - 128.0) / 128.0
    elif not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    if arr.ndim == 2:
        rows, cols = arr.shape
        if rows <= 8 < cols:
            arr = arr.mean(axis=0)
        elif cols <= 8 < rows:
            arr = arr.mean(axis=1)
        elif arr.size == 0:
            arr = arr.reshape(-1)
        else:
            raise AudioError(
                f"{name}: cannot tell channels from samples in shape {list(arr.shape)}; "
                "pass 1-D mono or [channels, samples]"
            )
        if arr.ndim == 1 and min(rows, cols) > 1:
            logger.debug("%s: averaged %d channels to mono", name, min(rows, cols))
    elif arr.ndim != 1:
        raise AudioError(f"{name}: expected 1-D mono or 2-D [channels, samples] audio, got {arr.ndim} dimensions")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise AudioError(
            f"{name}: {int(bad.sum())} of {arr.size} samples are NaN or inf; clean the signal "
            "(for example with np.nan_to_num) before generating"
        )
    return arr


def _read_file(path: Path, name: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not path.is_file():
        raise AudioFileError(f"{name}: no audio file at {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError if hasattr(sf, "LibsndfileError") else RuntimeError, ValueError) as exc:
        raise AudioFileError(
            f"{name}: could not decode {path} ({exc}); use a format libsndfile reads, e.g. WAV, FLAC or OGG"
        ) from exc
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0], int(rate)


def load_audio(
    audio: AudioInput,
    sample_rate: int | None = None,
    *,
    target_rate: int = SAMPLE_RATE,
    name: str = "audio",
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Load ``audio`` as mono float32 at ``target_rate``.

    Args:
        audio: a path to an audio file, or samples as a numpy array / torch tensor (1-D mono,
            ``[channels, samples]`` or ``[samples, channels]``; int16/int32/uint8 PCM is scaled).
        sample_rate: rate of array inputs (default 16000). For files, None or the file's rate.
        target_rate: output rate (resampled with resampy's ``kaiser_best`` when different).
        name: how the input is called in error messages.
        min_seconds: shortest accepted duration (one motion frame, 40 ms, by default).

    Raises:
        AudioError: empty, NaN/inf, too short, malformed shape or type, bad sample rate.
        AudioFileError: missing or undecodable file.
    """
    if isinstance(audio, (str, os.PathLike)):
        arr, file_rate = _read_file(Path(audio), name)
        if sample_rate is not None and _check_rate(sample_rate, name) != file_rate:
            raise AudioError(f"{name}: sample_rate={sample_rate} does not match the file's {file_rate} Hz; omit it")
        rate = file_rate
        arr = to_mono_float32(arr, name)
    else:
        rate = SAMPLE_RATE if sample_rate is None else _check_rate(sample_rate, name)
        arr = to_mono_float32(audio, name)
    if arr.size == 0:
        raise AudioError(f"{name}: the audio is empty; pass at least {min_seconds * 1000:.0f} ms of samples")
    if arr.shape[0] < min_seconds * rate:
        raise AudioError(
            f"{name}: audio too short ({arr.shape[0] / rate * 1000:.1f} ms); at least {min_seconds * 1000:.0f} ms "
            "is needed for one motion frame"
        )
    peak = float(np.abs(arr).max())
    if peak > 1.0:
        logger.warning("%s: peak amplitude %.2f > 1.0; is the audio normalised to [-1, 1]?", name, peak)
    if rate != target_rate:
        import resampy

        logger.debug("%s: resampling %d Hz -> %d Hz", name, rate, target_rate)
        arr = resampy.resample(arr, rate, target_rate, filter="kaiser_best").astype(np.float32)
    return np.ascontiguousarray(arr)


def pad_to_same_length(*arrays: np.ndarray) -> list[np.ndarray]:
    """Zero-pad 1-D arrays at the end to the longest one (two speakers' tracks, as the official code)."""
    n = max(a.shape[0] for a in arrays)
    return [np.pad(a, (0, n - a.shape[0])) if a.shape[0] < n else a for a in arrays]


def save_audio(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write samples to a float32 WAV (or any format soundfile infers from the suffix)."""
    import soundfile as sf

    sf.write(str(path), np.asarray(audio, dtype=np.float32), int(sample_rate), subtype="FLOAT")


class Resampler:
    """Resample a stream block by block.

    resampy has no streaming mode, so the stream is resampled in overlapping segments: each call
    resamples the new input plus ``margin`` samples of context on both sides and keeps only the part
    whose filter support lies inside the known signal. The output is delayed by the margin and matches
    a one-shot resample to about 1e-4 (interior), with the same total length after :meth:`flush`.
    """

    def __init__(self, orig_rate: int, target_rate: int = SAMPLE_RATE, margin_s: float = 0.02) -> None:
        self.orig = _check_rate(orig_rate, "stream")
        self.target = _check_rate(target_rate, "stream")
        # Segments must start on input samples that fall exactly on the output grid.
        self.step = self.orig // np.gcd(self.orig, self.target)
        self.margin = max(64, int(margin_s * self.orig))
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float32)  # input samples from index self._buf_start
        self._buf_start = 0
        self._in_total = 0
        self._out_total = 0

    @property
    def delay_samples(self) -> int:
        """Output samples held back until more input (or flush) arrives."""
        return int(np.ceil(self.margin * self.target / self.orig))

    def _resample_range(self, out_lo: int, out_hi: int, final: bool) -> np.ndarray:
        import resampy

        if out_hi <= out_lo:
            return np.zeros(0, np.float32)
        ratio = self.target / self.orig
        in_lo = max(0, int(np.floor(out_lo / ratio)) - self.margin)
        in_lo -= in_lo % self.step
        in_hi = self._in_total if final else min(self._in_total, int(np.ceil(out_hi / ratio)) + self.margin)
        seg = self._buf[in_lo - self._buf_start : in_hi - self._buf_start]
        res = resampy.resample(seg, self.orig, self.target, filter="kaiser_best").astype(np.float32)
        offset = in_lo * self.target // self.orig
        return res[out_lo - offset : out_hi - offset]

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add input samples; return the output samples that are final."""
        block = np.asarray(block, np.float32).reshape(-1)
        self._buf = np.concatenate([self._buf, block])
        self._in_total += block.shape[0]
        ready = int((self._in_total - self.margin) * self.target / self.orig)
        out = self._resample_range(self._out_total, ready, final=False)
        self._out_total += out.shape[0]
        self._trim()
        return out

    def flush(self) -> np.ndarray:
        """Return the rest: total output length equals a one-shot resample of all input."""
        total = int(self._in_total * self.target / self.orig)
        out = self._resample_range(self._out_total, total, final=True)
        self._out_total += out.shape[0]
        return out

    def _trim(self) -> None:
        keep_from = max(0, int(np.floor(self._out_total * self.orig / self.target)) - 2 * self.margin - self.step)
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :]
            self._buf_start = keep_from
