"""Energy-based voice activity per motion frame (numpy only, no extra needed).

This is a deliberately simple detector for previews and plots: it tells, frame by frame, whether a
person's own audio channel carries speech. It is not a robust VAD: loud background noise or the
other person's voice leaking into the microphone can count as speech (set ``threshold_db`` then).
"""

from __future__ import annotations

import math

import numpy as np

from ..audio import SAMPLE_RATE, AudioInput, load_audio
from ..errors import AudioError

__all__ = ["frame_energy_db", "speech_activity"]

#: Frames quieter than this (dBFS) never count as speech, whatever the recording's dynamics.
SILENCE_DB = -50.0
_FLOOR_DB = -120.0


def _check_fps(fps: float) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise AudioError(f"fps must be a positive number, got {fps!r}")
    value = float(fps)
    if not (math.isfinite(value) and value > 0):
        raise AudioError(f"fps must be a positive finite number, got {fps!r}")
    return value


def frame_energy_db(
    samples: np.ndarray, sample_rate: int, fps: float, num_frames: int | None = None
) -> np.ndarray:
    """Mean-square energy in dBFS of each motion frame's slice of audio.

    Frame ``i`` covers samples ``[round(i * sr / fps), round((i + 1) * sr / fps))``; samples past the
    end count as silence, so any ``num_frames`` can be asked for.

    Args:
        samples: 1-D float samples in [-1, 1].
        sample_rate: rate of ``samples`` in Hz.
        fps: motion frame rate.
        num_frames: frames to return; None = ``ceil(len(samples) * fps / sample_rate)``.

    Returns:
        float64 [num_frames] energies, floored at -120 dBFS (digital silence).
    """
    fps = _check_fps(fps)
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    hop = sample_rate / fps
    n = math.ceil(x.shape[0] / hop - 1e-9) if num_frames is None else int(num_frames)
    if n < 0:
        raise AudioError(f"num_frames must be >= 0, got {num_frames}")
    bounds = np.minimum(np.round(np.arange(n + 1) * hop).astype(np.int64), x.shape[0])
    # Cumulative sums give every frame's energy in one pass, whatever the hop.
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    sums = csum[bounds[1:]] - csum[bounds[:-1]]
    width = np.round(np.arange(1, n + 1) * hop) - np.round(np.arange(n) * hop)
    power = sums / np.maximum(width, 1.0)
    return np.maximum(10.0 * np.log10(power + 1e-30), _FLOOR_DB)


def _runs(mask: np.ndarray, value: bool) -> list[tuple[int, int]]:
    """(start, stop) of every maximal run of ``value`` in a 1-D bool array."""
    padded = np.concatenate([[0], (mask == value).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def speech_activity(
    audio: AudioInput,
    sample_rate: int | None = None,
    fps: float = 25.0,
    *,
    num_frames: int | None = None,
    threshold_db: float | None = None,
    min_gap: float = 0.2,
    min_speech: float = 0.1,
) -> np.ndarray:
    """Whether each motion frame of ``audio`` holds speech, from its energy.

    A frame is active when its energy (see [`frame_energy_db`][unils.viz.activity.frame_energy_db]) is above a
    threshold. The default threshold adapts to the recording: 15 dB above its noise floor (10th percentile of
    the frame energies) but at most 25 dB below its loud frames (95th percentile), and never below -50 dBFS,
    so that a silent channel has no activity. Then pauses shorter than ``min_gap`` are filled (words of one
    phrase stay together) and bursts shorter than ``min_speech`` are dropped (clicks). This is approximate by
    design; see the module notes.

    Args:
        audio: a path or samples (anything [`unils.audio.load_audio`][unils.audio.load_audio] reads; resampled
            to 16 kHz).
        sample_rate: rate of array inputs (default 16000); files carry their own.
        fps: motion frame rate (25 for UniLS).
        num_frames: length of the result; None = one frame per started ``1 / fps`` of audio (the
            model's frame count). Longer results are padded with inactive frames.
        threshold_db: fixed threshold in dBFS instead of the adaptive one.
        min_gap: pauses shorter than this (seconds) inside speech count as speech.
        min_speech: active runs shorter than this (seconds) are dropped.

    Returns:
        bool [num_frames] array, True where the person speaks.

    Raises:
        AudioError: unusable audio (empty, NaN/inf, too short) or a bad ``fps``.
        AudioFileError: a path that does not exist or cannot be decoded.
    """
    fps = _check_fps(fps)
    x = load_audio(audio, sample_rate, target_rate=SAMPLE_RATE)
    db = frame_energy_db(x, SAMPLE_RATE, fps, num_frames)
    if db.size == 0:
        return np.zeros(0, dtype=bool)
    if threshold_db is None:
        floor, loud = np.percentile(db, [10.0, 95.0])
        threshold = max(SILENCE_DB, min(floor + 15.0, loud - 25.0))
    else:
        threshold = float(threshold_db)
    active = db > threshold
    gap, short = round(min_gap * fps), round(min_speech * fps)
    for start, stop in _runs(active, False):
        if start > 0 and stop < active.shape[0] and stop - start < gap:
            active[start:stop] = True
    for start, stop in _runs(active, True):
        if stop - start < short:
            active[start:stop] = False
    return active
