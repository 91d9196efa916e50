"""A tiny structured training dataset written in the unils-dataset format (no TTS needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from unils.train.data import write_dataset_json


def _person(frames: int, rng: np.random.Generator, talk: np.ndarray) -> np.ndarray:
    t = np.arange(frames) / 25.0
    m = np.zeros((frames, 108), np.float32)
    for c in range(6):  # a few expression coefficients with slow oscillations
        m[:, c] = 0.5 * np.sin(2 * np.pi * (0.2 + 0.1 * c) * t + rng.uniform(0, 6))
    m[:, 100] = 0.05 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6))  # nods
    m[:, 101] = 0.08 * np.sin(2 * np.pi * 0.15 * t + rng.uniform(0, 6))
    m[:, 103] = 0.15 * talk  # jaw follows speech
    m[:, 104:108] = 0.02 * np.sin(2 * np.pi * 0.3 * t)[:, None]
    return m + rng.normal(0, 0.01, m.shape).astype(np.float32)


def make_dataset(root: Path, conversations: int = 3, seconds: float = 12.0, motion_only: int = 1, seed: int = 0) -> Path:
    """Conversations where each person's jaw opens with their own (noise-burst) voice."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * 25)
    write_dataset_json(root, generator="tests/helpers/train_data.py")
    for i in range(conversations):
        clip = root / "conversations" / f"conv{i:03d}"
        clip.mkdir(parents=True)
        turns = (np.sin(2 * np.pi * np.arange(frames) / 25.0 / rng.uniform(3, 5)) > 0).astype(np.float32)
        talk = np.stack([turns, 1 - turns])
        motions = []
        for p in range(2):
            syll = (np.sin(2 * np.pi * 4 * np.arange(frames) / 25.0 + p) > 0).astype(np.float32)
            env = talk[p] * syll
            motions.append(_person(frames, rng, env))
            audio = np.repeat(env, 640) * 0.3 * rng.standard_normal(frames * 640).astype(np.float32)
            sf.write(clip / f"speaker{p}.wav", audio.astype(np.float32), 16000, subtype="PCM_16")
        np.savez(clip / "motion.npz", speaker0=motions[0], speaker1=motions[1], speech_mask=talk.astype(bool))
    if motion_only:
        (root / "motion_only").mkdir(parents=True)
        for i in range(motion_only):
            np.savez(root / "motion_only" / f"solo{i:03d}.npz", motion=_person(frames, rng, np.zeros(frames)))
    return root
