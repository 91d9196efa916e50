"""One conversation from a seed: plan it, synthesize both voices, build both motions."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from ...config import FPS, SAMPLE_RATE
from ...errors import ConfigError
from .channels import DT, NOISE_FLOOR, SAMPLES_PER_FRAME, SUB
from .motion_rules import person_motion
from .planning import Conversation, Planner, Turn, check_seconds, check_seed, draw_voices

__all__ = ["generate_conversation"]


def generate_conversation(
    seed: int | Sequence[int],
    seconds: float = 30.0,
    *,
    backchannel_rate: float = 0.55,
    overlap_rate: float = 0.2,
) -> Conversation:
    """Generate one two-person conversation: both voices, both motions and who speaks when.

    Args:
        seed: a non-negative integer, or a sequence of them (e.g. ``(corpus_seed, index)``); the same
            seed and arguments give byte-identical arrays.
        seconds: duration (2 to 3600 s), rounded to whole 25 fps frames. Speech stops at least
            0.25 s before the end; the rest is silence.
        backchannel_rate: probability that the listener backchannels in a pause between two of the
            speaker's sentences (0-1); about a fifth as many also fall over the speaker's words.
        overlap_rate: probability that a turn change overlaps (the next speaker starts 0.1-0.45 s
            before the other finishes), 0-1.

    Returns:
        The [`Conversation`][unils.train.corpus.planning.Conversation].

    Raises:
        ConfigError: a bad seed, duration or rate.
        MissingDependencyError: ``espeakng-loader`` is not installed (``pip install 'unils[train]'``).
    """
    seed_ = check_seed(seed)
    duration = check_seconds(seconds, "seconds")
    for name, value in (("backchannel_rate", backchannel_rate), ("overlap_rate", overlap_rate)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
    num_frames = max(1, round(duration * FPS))
    duration = num_frames / FPS
    num_samples = num_frames * SAMPLES_PER_FRAME
    # Independent streams: plan (voices, text, timing), each person's motion, background noise.
    plan_ss, motion0_ss, motion1_ss, noise_ss = np.random.SeedSequence(seed_).spawn(4)
    rng = np.random.default_rng(plan_ss)
    voices = draw_voices(rng)
    placed = Planner(rng, duration, voices, float(backchannel_rate), float(overlap_rate)).run()

    noise_rng = np.random.default_rng(noise_ss)
    tracks = [noise_rng.standard_normal(num_samples) * NOISE_FLOOR for _ in range(2)]
    speech100 = np.zeros((2, num_frames * SUB), dtype=bool)
    for p in placed:
        s0 = round(p.start * SAMPLE_RATE)
        seg = p.utt.audio[: max(0, num_samples - s0)]
        tracks[p.speaker][s0 : s0 + seg.shape[0]] += p.gain * seg
        for ph in p.utt.phonemes:
            if not ph.symbol.startswith("_") and ph.end > ph.start:
                lo = max(round((p.start + ph.start) / DT), 0)
                hi = min(round((p.start + ph.end) / DT), speech100.shape[1])
                speech100[p.speaker, lo:hi] = True
    audio = [np.clip(tr, -1.0, 1.0).astype(np.float32) for tr in tracks]
    speech_mask = speech100.reshape(2, num_frames, SUB).mean(axis=2) >= 0.5

    motion = [
        person_motion(np.random.default_rng(ss), i, placed, speech100, num_frames)
        for i, ss in enumerate((motion0_ss, motion1_ss))
    ]
    turns = [Turn(p.speaker, p.start, p.end, p.text, p.kind, p.turn_end) for p in placed]
    overlap = float(np.logical_and(speech_mask[0], speech_mask[1]).mean())
    info = {
        "utterances": len(placed),
        "backchannels": sum(p.kind == "backchannel" for p in placed),
        "speech_fraction": [round(float(m.mean()), 4) for m in speech_mask],
        "overlap_fraction": round(overlap, 4),
    }
    return Conversation(
        audio[0], audio[1], motion[0], motion[1], speech_mask, turns, voices, seed_, info=info
    )
