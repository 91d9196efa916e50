"""The rules that turn a planned conversation into one person's 108-d motion (100 Hz inside, 25 fps out).

Articulation targets per eSpeak phoneme class, anticipation and attack/release smoothing for the
mouth and jaw; nods, brow raises, head tilts and gaze aversions around turns, stresses and
backchannels; slow sway and blinks. See the channel table of [`unils.train.corpus`][unils.train.corpus].
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from ...config import MOTION_DIM
from .channels import (
    BLINK_AFTER_SENTENCE,
    BLINK_INTERVAL,
    BLINK_SHAPE,
    DT,
    EXPR_BLINK,
    EXPR_BROW_RAISE,
    EXPR_LIP_PRESS,
    EXPR_LIP_ROUND,
    EXPR_LIP_SPREAD,
    EXPR_MOUTH_OPEN,
    EXPR_SMILE,
    HEAD_PITCH,
    HEAD_ROLL,
    JAW,
    SUB,
)
from .planning import Placed

__all__: list[str] = []

# eSpeak phoneme mnemonic (stress marks removed) -> (jaw radians, rounding, spreading, lip press)
_OPEN_VOWELS = ("a", "aa", "A", "A:", "a#", "aI", "aU", "A@", "0", "O", "O:", "V", "&")
_MID_VOWELS = ("E", "e", "eI", "@", "@2", "@5", "@L", "3", "3:", "O@", "o@", "e@", "oU", "o", "OI", "a2")
_CLOSE_VOWELS = ("i", "i:", "I", "I2", "I#", "i@", "i@3", "u", "u:", "U", "U@", "y")
_ROUNDED = {"u": 1.0, "u:": 1.0, "U": 0.8, "U@": 0.8, "o": 0.9, "oU": 0.9, "O": 0.7, "O:": 0.7, "O@": 0.7,
            "o@": 0.7, "OI": 0.6, "0": 0.5, "aU": 0.4, "w": 1.0, "S": 0.45, "Z": 0.45, "tS": 0.45,
            "dZ": 0.45, "r": 0.3}  # fmt: skip
_SPREAD = {"i": 1.0, "i:": 1.0, "I": 0.7, "I2": 0.6, "i@": 0.7, "e": 0.6, "eI": 0.7, "E": 0.5, "j": 0.6,
           "s": 0.25, "z": 0.25, "aI": 0.3}  # fmt: skip
_CONSONANT_JAW = {"p": 0.01, "b": 0.01, "m": 0.015, "f": 0.03, "v": 0.03, "T": 0.05, "D": 0.05,
                  "t": 0.04, "d": 0.04, "n": 0.045, "l": 0.05, "s": 0.035, "z": 0.035, "S": 0.045,
                  "Z": 0.045, "tS": 0.045, "dZ": 0.045, "r": 0.06, "k": 0.07, "g": 0.07, "N": 0.07,
                  "h": 0.09, "j": 0.05, "w": 0.04, "?": 0.06}  # fmt: skip
_PRESS = {"p": 1.0, "b": 1.0, "m": 0.9, "f": 0.35, "v": 0.35}


def _articulation(symbol: str) -> tuple[float, float, float, float, bool]:
    """(jaw, round, spread, press, is_vowel) of one eSpeak phoneme."""
    if symbol.startswith("_") or not symbol:
        return 0.0, 0.0, 0.0, 0.0, False
    if symbol in _OPEN_VOWELS:
        jaw = 0.18
    elif symbol in _MID_VOWELS:
        jaw = 0.12
    elif symbol in _CLOSE_VOWELS:
        jaw = 0.065
    elif symbol in _CONSONANT_JAW:
        return (
            _CONSONANT_JAW[symbol],
            _ROUNDED.get(symbol, 0.0),
            _SPREAD.get(symbol, 0.0),
            _PRESS.get(symbol, 0.0),
            False,
        )
    elif symbol[0] in "aAV0O&":
        jaw = 0.17
    elif symbol[0] in "eE@3o":
        jaw = 0.12
    elif symbol[0] in "iIuUy":
        jaw = 0.065
    else:
        return 0.05, 0.0, 0.0, 0.0, False
    return jaw, _ROUNDED.get(symbol, 0.0), _SPREAD.get(symbol, 0.0), 0.0, True


# -- signal helpers (100 Hz) -----------------------------------------------------------------------
def _index(t: float) -> int:
    return math.floor(t / DT + 1e-9)


def _add_bump(x: np.ndarray, t0: float, dur: float, amp: float) -> None:
    """Add a raised-cosine pulse of ``dur`` seconds starting at ``t0`` to ``x`` (1-D, 100 Hz)."""
    n = max(2, round(dur / DT))
    i0 = _index(t0)
    w = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2 * amp
    lo, hi = max(i0, 0), min(i0 + n, x.shape[0])
    if hi > lo:
        x[lo:hi] += w[lo - i0 : hi - i0]


def _add_plateau(x: np.ndarray, t0: float, t1: float, amp: float, ramp: float) -> None:
    """Add ``amp`` between ``t0`` and ``t1`` with raised-cosine ramps of ``ramp`` seconds."""
    n = x.shape[0]
    t = (np.arange(n) + 0.5) * DT
    lo, hi = max(_index(t0 - ramp), 0), min(_index(t1 + ramp) + 1, n)
    if hi <= lo:
        return
    tt = t[lo:hi]
    up = np.clip((tt - (t0 - ramp)) / ramp, 0.0, 1.0)
    down = np.clip(((t1 + ramp) - tt) / ramp, 0.0, 1.0)
    w = np.minimum(0.5 - 0.5 * np.cos(np.pi * up), 0.5 - 0.5 * np.cos(np.pi * down))
    x[lo:hi] += amp * w


def _ou(rng: np.random.Generator, n: int, tau: np.ndarray, std: np.ndarray, dt: float = DT) -> np.ndarray:
    """Ornstein-Uhlenbeck noise ``[n, C]`` at step ``dt`` (stationary from the first step)."""
    tau = np.asarray(tau, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    a = np.exp(-dt / tau)
    drive = rng.standard_normal((n, tau.shape[0])) * (std * np.sqrt(1.0 - a * a))
    out = np.empty_like(drive)
    y = rng.standard_normal(tau.shape[0]) * std
    for k in range(n):
        y = a * y + drive[k]
        out[k] = y
    return out


def _attack_release(target: np.ndarray, attack: Sequence[float], release: Sequence[float]) -> np.ndarray:
    """One-pole smoothing per column, time constant ``attack`` (s) rising and ``release`` falling."""
    out = np.empty(target.shape, dtype=np.float64)
    # Plain Python floats: for a handful of columns this is ~10x faster than per-step numpy calls.
    for c in range(target.shape[1]):
        up = 1.0 - math.exp(-DT / attack[c])
        down = 1.0 - math.exp(-DT / release[c])
        col = target[:, c].tolist()
        y = col[0]
        res = [0.0] * len(col)
        for k, v in enumerate(col):
            d = v - y
            y += (up if d > 0 else down) * d
            res[k] = y
        out[:, c] = res
    return out


def _smooth_gate(mask: np.ndarray, tau: float) -> np.ndarray:
    """A 0/1 activity signal smoothed symmetrically (activity envelope)."""
    return _attack_release(mask[:, None].astype(np.float64), [tau], [tau])[:, 0]


# -- motion ----------------------------------------------------------------------------------------
# Fixed (not per conversation) small mixtures of the articulation channels into coefficients 7-14.
_TEXTURE = np.random.default_rng(20260108).normal(0.0, 0.12, size=(4, 8))


def person_motion(
    rng: np.random.Generator,
    person: int,
    placed: list[Placed],
    speech100: np.ndarray,
    num_frames: int,
) -> np.ndarray:
    """The ``[T, 108]`` float32 motion of ``person`` from the conversation plan."""
    n = num_frames * SUB
    t = (np.arange(n) + 0.5) * DT
    x = np.zeros((n, MOTION_DIM), dtype=np.float64)
    own = [p for p in placed if p.speaker == person]
    other = [p for p in placed if p.speaker != person]
    # Person style: how much they articulate, move, nod, smile.
    articulate = rng.uniform(0.85, 1.2)
    sway = rng.uniform(0.6, 1.4)
    nod_scale = rng.uniform(0.7, 1.3)
    smile_base = rng.uniform(0.0, 0.35)
    gaze_home = np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.05, 0.05)])
    vergence = rng.uniform(0.005, 0.015)

    # Articulation: per-phoneme targets, 20 ms anticipation, attack/release smoothing.
    target = np.zeros((n, 4))  # jaw, round, spread, press
    lead = 0.02
    for p in own:
        loud = p.gain**0.3
        for ph in p.utt.phonemes:
            if ph.end <= ph.start:
                continue
            jaw, rnd, spr, prs, vowel = _articulation(ph.symbol)
            jitter = rng.uniform(0.85, 1.15)
            if vowel:
                jaw *= (0.92, 1.05, 1.15)[ph.stress] * articulate * loud
            i0, i1 = _index(p.start + ph.start - lead), _index(p.start + ph.end - lead)
            i0, i1 = max(i0, 0), min(max(i1, i0 + 1), n)
            if i1 > i0:
                target[i0:i1] = (jaw * jitter, rnd * jitter, spr * jitter, prs)
    artic = _attack_release(target, [0.035, 0.05, 0.05, 0.02], [0.05, 0.06, 0.06, 0.04])
    jaw_track = artic[:, 0]
    x[:, JAW] = jaw_track
    x[:, EXPR_MOUTH_OPEN] = 5.5 * jaw_track - 0.8 * artic[:, 3]
    x[:, EXPR_LIP_ROUND] = 1.4 * artic[:, 1]
    x[:, EXPR_LIP_SPREAD] = 1.0 * artic[:, 2]
    x[:, EXPR_LIP_PRESS] = 1.2 * artic[:, 3]
    x[:, 7:15] = np.stack([5.5 * jaw_track, artic[:, 1], artic[:, 2], artic[:, 3]], axis=1) @ _TEXTURE

    # Slow background: brow, smile and the texture/noise coefficients.
    k = np.arange(7, 100)
    noise_tau = np.concatenate([[2.0, 3.0], rng.uniform(0.8, 3.0, size=k.shape[0])])
    noise_std = np.concatenate([[0.1, 0.12], 0.1 / (1.0 + (k - 7) / 15.0)])
    # Slow channels are drawn at the frame rate: averaging 100 Hz steps back to frames would only
    # smooth them further. Fast ones (head noise, speaking activity, fixation drift) at 100 Hz.
    slow = np.repeat(_ou(rng, num_frames, noise_tau, noise_std, dt=DT * SUB), SUB, axis=0)
    fast = _ou(
        rng, n, np.array([0.4, 0.5, 0.4, 0.25, 0.3, 0.25, 0.2, 0.2]),
        np.concatenate([np.array([0.006, 0.008, 0.004, 0.012, 0.016, 0.008]) * sway, [0.004, 0.004]]),
    )  # fmt: skip
    x[:, EXPR_BROW_RAISE] += slow[:, 0]
    x[:, EXPR_SMILE] += smile_base + slow[:, 1]
    x[:, 7:100] += slow[:, 2:]

    # Head: slow sinusoidal sway + OU noise, more movement while speaking.
    head = np.zeros((n, 3))
    amp = np.array([0.012, 0.025, 0.01]) * sway
    for axis in range(3):
        for _ in range(3):
            f = rng.uniform(0.04, 0.3)
            head[:, axis] += (
                amp[axis] * rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            )
    speaking = _smooth_gate(speech100[person], 0.3)
    head += fast[:, 0:3] + fast[:, 3:6] * speaking[:, None]
    brow = x[:, EXPR_BROW_RAISE]
    smile = x[:, EXPR_SMILE]

    # Gaze: looking at the partner, with aversions and small fixation shifts.
    gaze = np.zeros((n, 2)) + gaze_home
    last_nod = -10.0
    for p in own:
        if p.kind == "backchannel":
            # Listener feedback: a nod with the backchannel, brows up, sometimes a smile.
            if rng.random() < 0.9:
                _add_bump(
                    head[:, 0], p.start - 0.05, rng.uniform(0.35, 0.5), nod_scale * rng.uniform(0.03, 0.07)
                )
            _add_bump(brow, p.start - 0.05, 0.5, rng.uniform(0.1, 0.35))
            if rng.random() < 0.4:
                _add_plateau(smile, p.start, p.start + rng.uniform(0.8, 2.0), rng.uniform(0.15, 0.45), 0.3)
            continue
        if p.turn_start and rng.random() < 0.6:
            # Speakers look away when they start a turn (planning), then back at the listener.
            dur = rng.uniform(0.6, 1.8)
            target_gaze = np.array([rng.uniform(-0.2, 0.05), rng.choice([-1, 1]) * rng.uniform(0.12, 0.3)])
            _add_plateau(gaze[:, 0], p.start - 0.15, p.start + dur, target_gaze[0], 0.04)
            _add_plateau(gaze[:, 1], p.start - 0.15, p.start + dur, target_gaze[1], 0.04)
            _add_plateau(head[:, 1], p.start - 0.1, p.start + dur, 0.25 * target_gaze[1], 0.3)
        for ph in p.utt.phonemes:
            ts = p.start + ph.start
            if ph.stress == 2 and ts - last_nod > 0.5 and rng.random() < 0.35:
                # Beat gestures on stressed syllables: small nod, sometimes tilt and brows.
                _add_bump(
                    head[:, 0], ts - 0.08, rng.uniform(0.25, 0.4), nod_scale * rng.uniform(0.015, 0.045)
                )
                if rng.random() < 0.3:
                    _add_bump(head[:, 2], ts - 0.08, 0.4, rng.choice([-1, 1]) * rng.uniform(0.01, 0.025))
                if rng.random() < 0.25:
                    _add_bump(brow, ts - 0.1, 0.5, rng.uniform(0.2, 0.5))
                last_nod = ts
        if p.turn_end:
            if p.question:
                # End of a question: chin up, tilt, brows raised, held into the answer.
                side = rng.choice([-1, 1])
                _add_plateau(head[:, 0], p.end - 0.6, p.end + 0.5, -nod_scale * rng.uniform(0.03, 0.06), 0.3)
                _add_plateau(head[:, 2], p.end - 0.6, p.end + 0.5, side * rng.uniform(0.02, 0.05), 0.3)
                _add_plateau(brow, p.end - 0.6, p.end + 0.4, rng.uniform(0.5, 0.9), 0.2)
            else:
                _add_bump(head[:, 0], p.end - 0.35, 0.6, nod_scale * rng.uniform(0.03, 0.07))
        elif rng.random() < 0.3:
            # Mid-turn gaze aversion.
            ts = p.start + rng.uniform(0.2, max(0.3, p.utt.speech_end - 0.5))
            _add_plateau(
                gaze[:, 1], ts, ts + rng.uniform(0.4, 1.2), rng.choice([-1, 1]) * rng.uniform(0.08, 0.2), 0.04
            )

    # Listening: nods and gaze shifts in the partner's pauses, small nods on their stresses.
    sentences = [p for p in other if p.kind == "sentence"]
    last_small = -10.0
    for a, b in itertools.pairwise(sentences):
        pause0, pause1 = a.end, b.start
        if pause1 - pause0 < 0.2 or _busy(speech100[person], pause0, pause1):
            continue
        if rng.random() < 0.75:
            ts = pause0 + rng.uniform(0.0, 0.2)
            d = rng.uniform(0.35, 0.55)
            a1 = nod_scale * rng.uniform(0.04, 0.09)
            _add_bump(head[:, 0], ts, d, a1)
            if rng.random() < 0.35:
                _add_bump(head[:, 0], ts + 0.9 * d, d, 0.7 * a1)
        if rng.random() < 0.45:
            ts = pause0 + rng.uniform(0.0, 0.3)
            te = ts + rng.uniform(0.3, 0.9)
            _add_plateau(gaze[:, 1], ts, te, rng.choice([-1, 1]) * rng.uniform(0.05, 0.15), 0.04)
            _add_plateau(gaze[:, 0], ts, te, rng.uniform(-0.08, 0.08), 0.04)
    for p in sentences:
        if p.turn_start and rng.random() < 0.3:
            # Attentive tilt while the partner's turn unfolds.
            _add_plateau(
                head[:, 2],
                p.start + 0.3,
                p.start + min(3.0, p.utt.speech_end),
                rng.choice([-1, 1]) * rng.uniform(0.03, 0.06),
                0.5,
            )
        for ph in p.utt.phonemes:
            ts = p.start + ph.start
            if ph.stress == 2 and ts - last_small > 1.5 and rng.random() < 0.08:
                _add_bump(head[:, 0], ts, 0.4, nod_scale * rng.uniform(0.01, 0.025))
                last_small = ts
    # Small fixation changes every 1-3 s, and saccade-like fast transitions.
    ts = rng.uniform(0.5, 2.0)
    while ts < t[-1]:
        d = rng.uniform(1.0, 3.0)
        _add_plateau(gaze[:, 0], ts, ts + d, rng.normal(0.0, 0.015), 0.02)
        _add_plateau(gaze[:, 1], ts, ts + d, rng.normal(0.0, 0.02), 0.02)
        ts += d + rng.uniform(0.0, 0.5)
    gaze = _attack_release(gaze, [0.015, 0.015], [0.015, 0.015]) + fast[:, 6:8]

    # Blinks: in the pause after every sentence (the person's own and the partner's), at least
    # BLINK_INTERVAL[0] apart; gaps longer than BLINK_INTERVAL[1] get spontaneous blinks.
    close, hold, open_ = BLINK_SHAPE
    shape = np.concatenate([
        0.5 - 0.5 * np.cos(np.pi * (np.arange(round(close / DT)) + 1) / round(close / DT)),
        np.ones(round(hold / DT)),
        0.5 + 0.5 * np.cos(np.pi * (np.arange(round(open_ / DT)) + 1) / round(open_ / DT)),
    ])  # fmt: skip
    min_gap, max_gap = BLINK_INTERVAL
    last = -rng.uniform(0.0, max_gap - 0.3)  # the last blink before the conversation starts
    onsets: list[float] = []
    ends = sorted(p.end for p in placed if p.kind == "sentence")
    for anchor in [e + rng.uniform(*BLINK_AFTER_SENTENCE) for e in ends] + [t[-1] + max_gap]:
        while anchor - last > max_gap:
            last = min(last + rng.uniform(2.0, max_gap), anchor - min_gap)
            onsets.append(last)
        if anchor - last >= min_gap:
            onsets.append(anchor)
            last = anchor
    blink = x[:, EXPR_BLINK]
    for ts in onsets:
        i0 = _index(ts)
        if 0 <= i0 < n:
            m = min(shape.shape[0], n - i0)
            blink[i0 : i0 + m] += rng.uniform(1.3, 1.7) * shape[:m]

    x[:, HEAD_PITCH : HEAD_ROLL + 1] = head
    x[:, 104] = gaze[:, 0]
    x[:, 105] = gaze[:, 1] + vergence
    x[:, 106] = gaze[:, 0]
    x[:, 107] = gaze[:, 1] - vergence

    frames = x.reshape(num_frames, SUB, MOTION_DIM).mean(axis=1)
    np.clip(frames[:, :100], -2.0, 2.0, out=frames[:, :100])
    np.clip(frames[:, JAW], 0.0, 0.3, out=frames[:, JAW])
    np.clip(frames[:, 100:103], -0.5, 0.5, out=frames[:, 100:103])
    np.clip(frames[:, 104:], -0.5, 0.5, out=frames[:, 104:])
    return frames.astype(np.float32)


def _busy(mask100: np.ndarray, t0: float, t1: float) -> bool:
    lo, hi = max(_index(t0), 0), min(_index(t1) + 1, mask100.shape[0])
    return bool(mask100[lo:hi].any()) if hi > lo else False
