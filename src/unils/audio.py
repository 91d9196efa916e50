"""Reading, validating and resampling audio inputs (soundfile + resampy).

Every entry point turns its input into mono float32 at 16 kHz or raises a clear error:
[`AudioError`][unils.errors.AudioError] (a ``ValueError``) for unusable samples and
[`AudioFileError`][unils.errors.AudioFileError] (a ``FileNotFoundError``) for files that are missing or cannot
be decoded. Resampling always uses resampy's ``kaiser_best`` filter, offline
([`load_audio`][unils.audio.load_audio]) and streaming ([`Resampler`][unils.resample.Resampler], in
[`unils.resample`][unils.resample]) alike, so both paths see the same samples.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch

from .errors import AudioError, AudioFileError
from .resample import RESAMPLE_FILTER, Resampler, check_rate, pcm_to_float32, resampled_length

__all__ = [
    "MIN_SECONDS",
    "SAMPLE_RATE",
    "AudioInput",
    "Resampler",
    "duration_to_frames",
    "load_audio",
    "pad_to_same_length",
    "save_audio",
    "to_mono_float32",
]

logger = logging.getLogger("unils")

#: A path to an audio file, or samples as a numpy array or torch tensor.
AudioInput: TypeAlias = str | os.PathLike | np.ndarray | torch.Tensor

#: Rate the model consumes; every input is resampled to it.
SAMPLE_RATE = 16000
#: One motion frame of audio (40 ms at 25 fps): the shortest input that yields a frame.
MIN_SECONDS = 0.04
_MIN_MS = 40
#: Most channels a 2-D array may have; the longer axis of a 2-D array is time.
_MAX_CHANNELS = 8
_COMMON_FORMATS = ("WAV", "FLAC", "OGG", "MP3", "AIFF")


def _check_count(value: object, what: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        # Exact: going through float would round counts above 2**53.
        if int(value) < 0:
            raise AudioError(f"{what} must be a non-negative integer, got {value!r}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AudioError(f"{what} must be a non-negative integer, got {value!r}")
    f = float(value)
    if not math.isfinite(f) or f < 0 or f != int(f):
        raise AudioError(f"{what} must be a non-negative integer, got {value!r}")
    return int(f)


def duration_to_frames(num_samples: int, sample_rate: int = SAMPLE_RATE, fps: int = 25) -> int:
    """Number of motion frames for ``num_samples`` audio samples.

    This is the official frame count, ``ceil(num_samples / (sample_rate / fps))`` (``ceil(N / 640)``
    at 16 kHz and 25 fps), computed in exact integer arithmetic so that no rounding error can add or
    drop a frame on long inputs.

    Args:
        num_samples: length of the audio in samples (>= 0).
        sample_rate: rate of those samples in Hz.
        fps: motion frame rate.

    Returns:
        The frame count; 0 for no samples, 1 for any partial frame.

    Raises:
        AudioError: a negative or fractional count, or a non-positive rate.
    """
    n = _check_count(num_samples, "num_samples")
    rate = check_rate(sample_rate, "duration_to_frames")
    frames_per_s = check_rate(fps, "duration_to_frames", "fps")
    return -(-n * frames_per_s // rate)


def to_mono_float32(audio: np.ndarray | torch.Tensor, name: str = "audio") -> np.ndarray:
    """Validate samples and return them as 1-D float32 mono.

    Integer PCM is scaled to [-1, 1] (int16 by 1/32768, int32 by 1/2**31, uint8 as
    ``(x - 128) / 128``, int8 by 1/128); float16/float64 are converted. A 2-D input is
    ``[channels, samples]`` or ``[samples, channels]``: the axis of size <= 8 is taken as channels
    when the other is longer, and channels are averaged. The length is not checked, so this also
    serves streaming blocks of any size; see [`load_audio`][unils.audio.load_audio] for complete inputs.

    Args:
        audio: samples as a numpy array or torch tensor (any device; it is detached and copied to CPU).
        name: how the input is called in error messages.

    Returns:
        A C-contiguous 1-D float32 array (it may share memory with a float32 1-D input).

    Raises:
        AudioError: unsupported type or shape, or NaN/inf samples.
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        # numpy has no bfloat16; every floating tensor goes through float32.
        audio = audio.float().numpy() if audio.is_floating_point() else audio.numpy()
    try:
        arr = np.asarray(audio)
    except (TypeError, ValueError) as exc:
        raise AudioError(f"{name}: could not read samples from {type(audio).__name__} ({exc})") from None
    if arr.ndim == 0:
        raise AudioError(f"{name}: expected an array of samples, got a scalar")
    if arr.ndim > 2:
        raise AudioError(
            f"{name}: expected 1-D mono or 2-D [channels, samples] audio, got {arr.ndim} dimensions "
            f"(shape {list(arr.shape)}); pass one clip at a time"
        )
    arr = pcm_to_float32(arr, name)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise AudioError(
            f"{name}: {int(bad.sum())} of {arr.size} samples are NaN or inf; clean the signal first, "
            "for example with np.nan_to_num(audio)"
        )
    if arr.ndim == 2:
        rows, cols = arr.shape
        if arr.size == 0:
            arr = arr.reshape(-1)
        elif rows <= _MAX_CHANNELS < cols:
            arr = arr.mean(axis=0, dtype=np.float32) if rows > 1 else arr[0]
        elif cols <= _MAX_CHANNELS < rows:
            arr = arr.mean(axis=1, dtype=np.float32) if cols > 1 else arr[:, 0]
        else:
            raise AudioError(
                f"{name}: cannot tell channels from samples in shape {list(arr.shape)} (a 2-D input needs "
                f"one axis of at most {_MAX_CHANNELS} channels and a longer time axis); pass 1-D mono or "
                "[channels, samples]"
            )
        if min(rows, cols) > 1:
            logger.debug("%s: averaged %d channels to mono", name, min(rows, cols))
    return np.ascontiguousarray(arr, dtype=np.float32)


def _decodable_formats() -> str:
    import soundfile as sf

    available = sf.available_formats()
    common = [f for f in _COMMON_FORMATS if f in available]
    return ", ".join(common) + f" and {len(available) - len(common)} more (soundfile.available_formats())"


def _read_file(path: Path, name: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not path.exists():
        raise AudioFileError(f"{name}: no audio file at {path}")
    if path.is_dir():
        raise AudioFileError(f"{name}: {path} is a directory, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, TypeError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioFileError(
            f"{name}: could not decode {path} ({exc}). Readable formats: {_decodable_formats()}; "
            "convert others (m4a/AAC, video files...) first, e.g. `ffmpeg -i input -ac 1 -ar 16000 output.wav`"
        ) from exc
    if data.shape[1] > 1:
        logger.debug("%s: averaged %d channels of %s to mono", name, data.shape[1], path)
        return data.mean(axis=1, dtype=np.float32), int(rate)
    return data[:, 0], int(rate)


def load_audio(
    audio: AudioInput,
    sample_rate: int | None = None,
    *,
    target_rate: int = SAMPLE_RATE,
    name: str = "audio",
) -> np.ndarray:
    """Load ``audio`` as mono float32 samples at ``target_rate``.

    Args:
        audio: a path to an audio file in any format soundfile decodes (WAV, FLAC, OGG, MP3...), or
            samples as a numpy array / torch tensor: 1-D mono, ``[channels, samples]`` or
            ``[samples, channels]`` (the axis of size <= 8 is the channel axis; channels are
            averaged). int16/int32/uint8 PCM is scaled to [-1, 1]; float64 is converted.
        sample_rate: rate of array inputs in Hz; ``None`` means 16000. For files, ``None`` or the
            file's own rate (files always use their own rate).
        target_rate: rate of the result; other rates are resampled with resampy's ``kaiser_best``.
        name: how the input is called in error messages (e.g. ``"partner_audio"``).

    Returns:
        A new C-contiguous 1-D float32 array at ``target_rate``. A peak above 1.0 is logged as a
        warning (unnormalised or clipped input) but left unchanged.

    Raises:
        AudioError: empty audio, NaN/inf samples, less than 40 ms (one motion frame) after
            resampling, an unsupported shape or sample type, or a bad or mismatched sample rate.
        AudioFileError: the file does not exist or cannot be decoded.
    """
    target = check_rate(target_rate, name, "target_rate")
    if isinstance(audio, (str, os.PathLike)):
        arr, rate = _read_file(Path(audio), name)
        if sample_rate is not None and check_rate(sample_rate, name) != rate:
            raise AudioError(
                f"{name}: sample_rate={sample_rate} does not match the file's {rate} Hz; omit sample_rate "
                "for files (they are resampled from their own rate)"
            )
    else:
        rate = SAMPLE_RATE if sample_rate is None else check_rate(sample_rate, name)
        arr = to_mono_float32(audio, name)
    if arr.size == 0:
        raise AudioError(f"{name}: the audio is empty; pass at least {_MIN_MS} ms of samples")
    min_samples = -(-target * _MIN_MS // 1000)
    if resampled_length(arr.shape[0], rate, target) < min_samples:
        raise AudioError(
            f"{name}: audio too short ({arr.shape[0]} samples at {rate} Hz = {arr.shape[0] / rate * 1000:.1f} ms); "
            f"at least {_MIN_MS} ms ({min_samples} samples at {target} Hz) is needed for one motion frame; "
            "pad it with silence if it is really this short"
        )
    peak = float(np.abs(arr).max())
    if peak > 1.0:
        logger.warning(
            "%s: peak amplitude %.3g > 1.0 (clipped or not normalised to [-1, 1]); using it unchanged",
            name,
            peak,
        )
    if rate != target:
        import resampy

        logger.debug("%s: resampling %d samples from %d Hz to %d Hz", name, arr.shape[0], rate, target)
        arr = resampy.resample(arr, rate, target, filter=RESAMPLE_FILTER).astype(np.float32, copy=False)
    elif not isinstance(audio, (str, os.PathLike)):
        # The result may still be a view of the caller's buffer, which callers reuse (audio capture).
        arr = arr.copy()
    return np.ascontiguousarray(arr)


def pad_to_same_length(*arrays: np.ndarray) -> list[np.ndarray]:
    """Zero-pad 1-D arrays at the end to the length of the longest one.

    The official inference pads the two speakers' tracks this way before generating.

    Args:
        *arrays: 1-D arrays (any dtype).

    Returns:
        The arrays in the same order; the longest ones are returned as given, the others padded.

    Raises:
        AudioError: an input is not 1-D.
    """
    arrays_ = [np.asarray(a) for a in arrays]
    for i, a in enumerate(arrays_):
        if a.ndim != 1:
            raise AudioError(
                f"pad_to_same_length: argument {i} has shape {list(a.shape)}; expected 1-D audio"
            )
    if not arrays_:
        return []
    n = max(a.shape[0] for a in arrays_)
    return [np.pad(a, (0, n - a.shape[0])) if a.shape[0] < n else a for a in arrays_]


def save_audio(
    path: str | os.PathLike[str], audio: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE
) -> None:
    """Write audio to a file; the format follows the suffix (``.wav`` is written as float32 WAV).

    Args:
        path: destination; ``.wav`` (float32 samples), ``.flac``, ``.ogg``... as soundfile supports.
        audio: 1-D mono samples, or ``[samples, channels]``, as float in [-1, 1].
        sample_rate: rate of ``audio`` in Hz.

    Raises:
        AudioError: bad rate, shape, NaN/inf samples, or a suffix soundfile cannot write.
    """
    import soundfile as sf

    rate = check_rate(sample_rate, "save_audio")
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().float().numpy()
    data = np.asarray(audio, dtype=np.float32)
    if data.ndim not in (1, 2):
        raise AudioError(
            f"save_audio: expected 1-D or [samples, channels] audio, got shape {list(data.shape)}"
        )
    if not np.isfinite(data).all():
        raise AudioError("save_audio: the audio has NaN or inf samples")
    fmt = Path(path).suffix.lstrip(".").upper()
    if fmt not in sf.available_formats():
        raise AudioError(f"save_audio: cannot write {Path(path).name!r}; use a suffix such as .wav or .flac")
    # Float WAV keeps the samples bit-exact; formats without float samples use their default subtype.
    subtype = "FLOAT" if sf.check_format(fmt, "FLOAT") else None
    sf.write(str(path), data, rate, subtype=subtype)
