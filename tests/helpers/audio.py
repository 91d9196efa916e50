"""Deterministic test audio (no files needed)."""

from __future__ import annotations

import numpy as np


def speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Deterministic noise bursts with pauses: enough structure for the encoders, no files needed."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    env = (np.sin(2 * np.pi * 1.3 * t) > -0.2).astype(np.float32)
    return np.clip(0.25 * env * rng.standard_normal(n), -1, 1).astype(np.float32)
