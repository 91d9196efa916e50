"""Procedural two-person conversations: real synthesized speech and rule-based 108-d motion.

A conversation is planned from a seed: two eSpeak NG voices, sentences from a small built-in grammar,
turns with pauses, overlapping turn changes and short listener backchannels ("yeah", "mm-hmm",
"right", "okay"). Each utterance is synthesized (:mod:`unils.train.tts`) with its phoneme timing;
the motion of both people is then built from that timing by fixed rules, at an internal 100 Hz and
averaged to 25 fps frames (frame ``f`` covers audio samples ``[640 f, 640 (f + 1))``).

Motion channels (columns of the 108-d vector; every other expression coefficient carries only
small slow noise):

==================  ======  ================================================================
channel             column  behaviour
==================  ======  ================================================================
mouth opening       0       follows the jaw (lip aperture); pressed lips pull it down
lip rounding        1       rounded vowels and consonants (u, o, w, sh)
lip spreading       2       spread vowels (i, e) and j
lip press           3       bilabial closures (p, b, m), weaker for f and v
brow raise          4       stressed words, questions, listener feedback
smile               5       per-person mood, listener smiles around backchannels
blink               6       eyelid closure pulse: about 150 ms, peak 1.3-1.7, every 2-6 s
texture             7-14    small fixed mixtures of the four articulation channels
noise               15-99   slow Ornstein-Uhlenbeck noise, decreasing with the index
head pitch          100     nod; positive is chin down
head yaw            101     turn; follows gaze aversions a little
head roll           102     tilt
jaw                 103     opening in radians: about 0.15-0.2 open vowels, 0-0.03 bilabials
gaze                104-107 eye 1 (x vertical, y horizontal), eye 2 (x, y), radians; 0 looks
                            at the partner
==================  ======  ================================================================

Rules: articulation targets per phoneme class (open / mid / close vowels, bilabial, labiodental,
other consonants, pauses), 20 ms anticipation, one-pole attack/release smoothing; speakers nod and
raise brows on some stressed syllables, nod at the end of a statement turn and raise and tilt the
head at the end of a question, avert their gaze at the start of turns; listeners nod (single or
double) and shift gaze in the partner's pauses, nod at their own backchannels and sometimes on the
partner's stressed syllables; everyone sways slowly (sinusoids plus Ornstein-Uhlenbeck noise, more
while speaking) and blinks. All randomness comes from numpy Generators seeded by the conversation
seed, and the synthesized audio depends only on text and voice, so a seed gives byte-identical
output.

A corpus on disk (:func:`write_corpus`)::

    DIR/
      dataset.json           {"format": "unils-dataset", "version": 1, "fps": 25, "sample_rate": 16000,
                              "generator": {... parameters, seed ...}}
      conversations/<clip_id>/
          speaker0.wav, speaker1.wav   mono 16 kHz PCM16, equal length, T * 640 samples
          motion.npz                   speaker0 [T, 108] float32, speaker1 [T, 108] float32,
                                       speech_mask [2, T] bool (True where that person speaks)
      motion_only/<clip_id>.npz        motion [T, 108] float32 (one person of a generated conversation)
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import numbers
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FPS, MOTION_DIM, SAMPLE_RATE
from ..errors import ConfigError
from .tts import FEMALE_VARIANTS, MALE_VARIANTS, Utterance, Voice, espeak_version, synthesize

__all__ = [
    "BACKCHANNELS",
    "BLINK_INTERVAL",
    "CHANNELS",
    "CORPUS_VERSION",
    "Conversation",
    "Turn",
    "generate_conversation",
    "write_corpus",
]

logger = logging.getLogger("unils.train.corpus")

#: Bumped whenever a rule changes the output for a given seed.
CORPUS_VERSION = 1
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
#: Shortest and longest conversation :func:`generate_conversation` accepts, in seconds.
MIN_SECONDS = 2.0
MAX_SECONDS = 3600.0

EXPR_MOUTH_OPEN = 0
EXPR_LIP_ROUND = 1
EXPR_LIP_SPREAD = 2
EXPR_LIP_PRESS = 3
EXPR_BROW_RAISE = 4
EXPR_SMILE = 5
EXPR_BLINK = 6
HEAD_PITCH = 100
HEAD_YAW = 101
HEAD_ROLL = 102
JAW = 103
#: Named columns of the generated motion (recorded in ``dataset.json``).
CHANNELS: dict[str, int | list[int]] = {
    "mouth_open": EXPR_MOUTH_OPEN,
    "lip_round": EXPR_LIP_ROUND,
    "lip_spread": EXPR_LIP_SPREAD,
    "lip_press": EXPR_LIP_PRESS,
    "brow_raise": EXPR_BROW_RAISE,
    "smile": EXPR_SMILE,
    "blink": EXPR_BLINK,
    "head_pitch": HEAD_PITCH,
    "head_yaw": HEAD_YAW,
    "head_roll": HEAD_ROLL,
    "jaw": JAW,
    "gaze": [104, 105, 106, 107],
}
#: Seconds between blink onsets: uniform in this range (15 blinks a minute on average).
BLINK_INTERVAL = (2.0, 6.0)
#: Blink pulse: closing, closed, opening (seconds).
_BLINK_SHAPE = (0.05, 0.02, 0.08)
#: Backchannel transcript -> what eSpeak is given ("mm-hmm" as text is read as letters).
BACKCHANNELS: dict[str, str] = {
    "yeah": "yeah",
    "mm-hmm": "[[m@'h@m]]",
    "right": "right",
    "okay": "okay",
    "uh-huh": "uh-huh",
    "I see": "I see",
}
_BACKCHANNEL_P = (0.3, 0.25, 0.15, 0.15, 0.1, 0.05)

_DT = 0.01  # internal control step: 100 Hz, 4 steps per frame
_SUB = 4
_NOISE_FLOOR = 10 ** (-66 / 20)  # RMS of the background noise added to both tracks (-66 dBFS)

# -- grammar ---------------------------------------------------------------------------------------
_SLOTS: dict[str, tuple[str, ...]] = {
    "subj": ("I", "we", "my sister", "my brother", "our neighbour", "the teacher", "my friend Anna",
             "the kids", "my uncle", "everyone"),
    "verb": ("visited", "painted", "found", "cooked", "bought", "fixed", "watched", "borrowed", "cleaned",
             "moved", "sold", "built", "lost", "tried"),
    "verb_base": ("visit", "paint", "find", "cook", "buy", "fix", "watch", "borrow", "clean", "move", "try"),
    "obj": ("the old boat", "a blue bicycle", "the garden", "some fresh bread", "the kitchen table",
            "a little dog", "the music room", "a new camera", "the train station", "that big map",
            "a strange letter", "the red car", "an old piano", "the whole house"),
    "place": ("near the river", "in the city", "at the market", "by the harbour", "on the hill",
              "at the museum", "in the park", "at the station", "behind the school", "next to the bakery"),
    "time": ("yesterday", "last weekend", "this morning", "on Monday", "after lunch", "last summer",
             "a while ago", "two days ago"),
    "time2": ("tomorrow", "next week", "on Friday", "after work", "this weekend", "soon"),
    "adj": ("beautiful", "strange", "expensive", "quiet", "amazing", "really busy", "pretty cold",
            "wonderful", "a bit boring", "so much fun", "funny", "crowded"),
    "noun": ("weather", "food", "music", "traffic", "light", "view", "water", "coffee"),
    "num": ("two", "three", "four", "five"),
    "opener": ("well,", "so,", "actually,", "you know,", "honestly,", "anyway,", "oh,"),
}  # fmt: skip
_STATEMENTS = (
    "{subj} {verb} {obj} {time}.",
    "{subj} {verb} {obj} {place}.",
    "{opener} {subj} {verb} {obj} {place}.",
    "{opener} it was {adj}.",
    "the {noun} {place} was {adj}.",
    "I think {subj} {verb} {obj}.",
    "{subj} {verb} {obj}, and it was {adj}.",
    "we should {verb_base} {obj} {time2}.",
    "there was {obj} {place}, and nobody knew why.",
    "it took us {num} hours to get there.",
    "I really like the {noun} {place}.",
    "{opener} the {noun} was {adj} {time}.",
)
_QUESTIONS = (
    "did you see {obj} {place}?",
    "have you ever been {place}?",
    "what do you think about {obj}?",
    "why was it so {adj}?",
    "do you want to {verb_base} {obj} {time2}?",
    "where did {subj} find {obj}?",
)
_TURN_OPENERS = ("oh,", "yeah,", "well,", "no,", "really?", "right,", "hmm,", "okay,")

# -- articulation ----------------------------------------------------------------------------------
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


# -- data classes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Turn:
    """One utterance of a conversation.

    Attributes:
        speaker: 0 or 1.
        start: start time in seconds.
        end: end of its speech (last phoneme) in seconds.
        text: what was said.
        kind: ``"sentence"`` or ``"backchannel"``.
        turn_end: True for the last sentence of a speaker's turn.
    """

    speaker: int
    start: float
    end: float
    text: str
    kind: str
    turn_end: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The utterance as a JSON-ready dict (times rounded to ms)."""
        return {
            "speaker": self.speaker,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "kind": self.kind,
            "turn_end": self.turn_end,
        }


@dataclass
class Conversation:
    """A generated two-person conversation.

    Attributes:
        audio0: person 0's voice, float32 mono at 16 kHz, ``num_frames * 640`` samples.
        audio1: person 1's voice, same length.
        motion0: person 0's motion, ``[T, 108]`` float32 at 25 fps.
        motion1: person 1's motion.
        speech_mask: ``[2, T]`` bool, True in frames where that person speaks (at least half the
            frame covered by non-pause phonemes).
        turns: every utterance in time order.
        voices: the two eSpeak voices.
        seed: the seed it was generated from.
    """

    audio0: np.ndarray
    audio1: np.ndarray
    motion0: np.ndarray
    motion1: np.ndarray
    speech_mask: np.ndarray
    turns: list[Turn]
    voices: tuple[Voice, Voice]
    seed: Any
    fps: int = FPS
    sample_rate: int = SAMPLE_RATE
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        """Number of motion frames ``T``."""
        return int(self.motion0.shape[0])

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.num_frames / self.fps

    def transcript(self) -> list[dict[str, Any]]:
        """The utterances as JSON-ready dicts."""
        return [t.to_dict() for t in self.turns]


@dataclass
class _Placed:
    speaker: int
    start: float
    utt: Utterance
    text: str
    kind: str
    gain: float
    question: bool = False
    turn_start: bool = False
    turn_end: bool = False

    @property
    def end(self) -> float:
        return self.start + self.utt.speech_end


# -- validation ------------------------------------------------------------------------------------
def _check_seed(seed: object, name: str = "seed") -> int | tuple[int, ...]:
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and int(seed) >= 0:
        return int(seed)
    if (
        isinstance(seed, Sequence)
        and not isinstance(seed, (str, bytes))
        and len(seed) > 0
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and int(s) >= 0 for s in seed)
    ):
        return tuple(int(s) for s in seed)
    raise ConfigError(f"{name} must be a non-negative integer (or a sequence of them), got {seed!r}")


def _check_seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not MIN_SECONDS <= v <= MAX_SECONDS:
        raise ConfigError(f"{name} must be between {MIN_SECONDS} and {MAX_SECONDS} seconds, got {value!r}")
    return v


def _check_count(value: object, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# -- planning --------------------------------------------------------------------------------------
def _draw_voices(rng: np.random.Generator) -> tuple[Voice, Voice]:
    voices: list[Voice] = []
    for _ in range(2):
        while True:
            variants = MALE_VARIANTS if rng.random() < 0.5 else FEMALE_VARIANTS
            base = "en-us" if rng.random() < 0.6 else "en"
            voice = Voice(
                name=f"{base}+{variants[int(rng.integers(len(variants)))]}",
                rate=int(rng.integers(145, 186)),
                pitch=int(rng.integers(35, 66)),
                pitch_range=int(rng.integers(40, 81)),
            )
            # Two people, two timbres: never the same variant twice in one conversation.
            if not voices or voice.name.split("+")[1] != voices[0].name.split("+")[1]:
                voices.append(voice)
                break
    return voices[0], voices[1]


def _sentence(rng: np.random.Generator, question: bool, turn_opener: bool) -> str:
    templates = _QUESTIONS if question else _STATEMENTS
    template = templates[int(rng.integers(len(templates)))]
    values = {k: v[int(rng.integers(len(v)))] for k, v in _SLOTS.items()}
    text = template.format(**values)
    if turn_opener:
        text = f"{_TURN_OPENERS[int(rng.integers(len(_TURN_OPENERS)))]} {text}"
    return text[0].upper() + text[1:]


class _Planner:
    """Lays utterances out on the timeline; synthesizes each distinct (text, speaker) once."""

    def __init__(self, rng: np.random.Generator, duration: float, voices: tuple[Voice, Voice],
                 backchannel_rate: float, overlap_rate: float) -> None:  # fmt: skip
        self.rng = rng
        self.duration = duration
        self.voices = voices
        self.backchannel_rate = backchannel_rate
        self.overlap_rate = overlap_rate
        self.placed: list[_Placed] = []
        self.busy = [0.0, 0.0]  # when each person's last utterance ends
        self._cache: dict[tuple[str, int], Utterance] = {}

    def _synth(self, spoken: str, speaker: int) -> Utterance:
        key = (spoken, speaker)
        if key not in self._cache:
            self._cache[key] = synthesize(spoken, self.voices[speaker])
        return self._cache[key]

    def backchannel(self, listener: int, at: float) -> bool:
        rng = self.rng
        text = list(BACKCHANNELS)[int(rng.choice(len(BACKCHANNELS), p=_BACKCHANNEL_P))]
        gain = float(rng.uniform(0.45, 0.75))
        if at < self.busy[listener] + 0.3 or at < 0.05:
            return False
        utt = self._synth(BACKCHANNELS[text], listener)
        if at + utt.speech_end > self.duration - 0.1:
            return False
        self.placed.append(_Placed(listener, at, utt, text, "backchannel", gain))
        self.busy[listener] = at + utt.speech_end
        return True

    def run(self) -> list[_Placed]:
        rng = self.rng
        t = float(rng.uniform(0.2, 1.0))
        speaker = int(rng.integers(2))
        first_turn = True
        while True:
            n_sentences = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
            listener = 1 - speaker
            turn: list[_Placed] = []
            stop = False
            for j in range(n_sentences):
                question = j == n_sentences - 1 and rng.random() < 0.3
                opener = j == 0 and not first_turn and rng.random() < 0.5
                text = _sentence(rng, question, opener)
                gain = float(rng.uniform(0.8, 1.0))
                # Every choice is drawn before testing whether the sentence fits, so that the draws
                # do not depend on sentence lengths.
                overlap_bc = rng.random() < 0.12 * self.backchannel_rate / 0.5
                bc_pick = float(rng.random())
                pause = float(rng.uniform(0.3, 1.0))
                pause_bc = rng.random() < self.backchannel_rate
                bc_offset = float(rng.uniform(-0.15, 0.25))
                utt = self._synth(text, speaker)
                for _ in range(3):
                    # Near the end, try a few other sentences before leaving the rest silent.
                    if t + utt.speech_end <= self.duration - 0.25:
                        break
                    text = _sentence(rng, question, opener)
                    utt = self._synth(text, speaker)
                if t + utt.speech_end > self.duration - 0.25:
                    stop = True
                    break
                placed = _Placed(speaker, t, utt, text, "sentence", gain, question, turn_start=j == 0)
                self.placed.append(placed)
                turn.append(placed)
                self.busy[speaker] = placed.end
                words = utt.words
                if overlap_bc and len(words) > 4:
                    # A backchannel over the partner's speech, at a word boundary.
                    w = words[2 + int(bc_pick * (len(words) - 2))]
                    self.backchannel(listener, t + w.start)
                if j < n_sentences - 1:
                    if pause_bc:
                        self.backchannel(listener, placed.end + min(bc_offset, 0.3 * pause))
                    t = placed.end + pause
            if turn:
                turn[-1].turn_end = not stop
                first_turn = False
            if stop:
                break
            end = turn[-1].end
            # Turn change: mostly a short gap, sometimes an overlap (negative gap), rarely the same
            # speaker again after a longer pause.
            if rng.random() < self.overlap_rate:
                gap = -float(rng.uniform(0.1, 0.45))
            else:
                gap = float(np.clip(rng.normal(0.35, 0.25), 0.05, 1.4))
            if rng.random() < 0.1:
                gap = float(rng.uniform(0.8, 1.6))
            else:
                speaker = 1 - speaker
            t = max(end + gap, self.busy[speaker] + 0.15)
        return sorted(self.placed, key=lambda p: (p.start, p.speaker))


# -- signal helpers (100 Hz) -----------------------------------------------------------------------
def _index(t: float) -> int:
    return math.floor(t / _DT + 1e-9)


def _add_bump(x: np.ndarray, t0: float, dur: float, amp: float) -> None:
    """Add a raised-cosine pulse of ``dur`` seconds starting at ``t0`` to ``x`` (1-D, 100 Hz)."""
    n = max(2, round(dur / _DT))
    i0 = _index(t0)
    w = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2 * amp
    lo, hi = max(i0, 0), min(i0 + n, x.shape[0])
    if hi > lo:
        x[lo:hi] += w[lo - i0 : hi - i0]


def _add_plateau(x: np.ndarray, t0: float, t1: float, amp: float, ramp: float) -> None:
    """Add ``amp`` between ``t0`` and ``t1`` with raised-cosine ramps of ``ramp`` seconds."""
    n = x.shape[0]
    t = (np.arange(n) + 0.5) * _DT
    lo, hi = max(_index(t0 - ramp), 0), min(_index(t1 + ramp) + 1, n)
    if hi <= lo:
        return
    tt = t[lo:hi]
    up = np.clip((tt - (t0 - ramp)) / ramp, 0.0, 1.0)
    down = np.clip(((t1 + ramp) - tt) / ramp, 0.0, 1.0)
    w = np.minimum(0.5 - 0.5 * np.cos(np.pi * up), 0.5 - 0.5 * np.cos(np.pi * down))
    x[lo:hi] += amp * w


def _ou(rng: np.random.Generator, n: int, tau: np.ndarray, std: np.ndarray, dt: float = _DT) -> np.ndarray:
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
        up = 1.0 - math.exp(-_DT / attack[c])
        down = 1.0 - math.exp(-_DT / release[c])
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


def _person_motion(
    rng: np.random.Generator,
    person: int,
    placed: list[_Placed],
    speech100: np.ndarray,
    num_frames: int,
) -> np.ndarray:
    """The ``[T, 108]`` float32 motion of ``person`` from the conversation plan."""
    n = num_frames * _SUB
    t = (np.arange(n) + 0.5) * _DT
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
    jaw = artic[:, 0]
    x[:, JAW] = jaw
    x[:, EXPR_MOUTH_OPEN] = 5.5 * jaw - 0.8 * artic[:, 3]
    x[:, EXPR_LIP_ROUND] = 1.4 * artic[:, 1]
    x[:, EXPR_LIP_SPREAD] = 1.0 * artic[:, 2]
    x[:, EXPR_LIP_PRESS] = 1.2 * artic[:, 3]
    x[:, 7:15] = np.stack([5.5 * jaw, artic[:, 1], artic[:, 2], artic[:, 3]], axis=1) @ _TEXTURE

    # Slow background: brow, smile and the texture/noise coefficients.
    k = np.arange(7, 100)
    noise_tau = np.concatenate([[2.0, 3.0], rng.uniform(0.8, 3.0, size=k.shape[0])])
    noise_std = np.concatenate([[0.1, 0.12], 0.1 / (1.0 + (k - 7) / 15.0)])
    # Slow channels are drawn at the frame rate: averaging 100 Hz steps back to frames would only
    # smooth them further. Fast ones (head noise, speaking activity, fixation drift) at 100 Hz.
    slow = np.repeat(_ou(rng, num_frames, noise_tau, noise_std, dt=_DT * _SUB), _SUB, axis=0)
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

    # Blinks.
    close, hold, open_ = _BLINK_SHAPE
    shape = np.concatenate([
        0.5 - 0.5 * np.cos(np.pi * (np.arange(round(close / _DT)) + 1) / round(close / _DT)),
        np.ones(round(hold / _DT)),
        0.5 + 0.5 * np.cos(np.pi * (np.arange(round(open_ / _DT)) + 1) / round(open_ / _DT)),
    ])  # fmt: skip
    ts = rng.uniform(0.3, BLINK_INTERVAL[1])
    blink = x[:, EXPR_BLINK]
    while ts < t[-1]:
        i0 = _index(ts)
        m = min(shape.shape[0], n - i0)
        blink[i0 : i0 + m] += rng.uniform(1.3, 1.7) * shape[:m]
        ts += rng.uniform(*BLINK_INTERVAL)

    x[:, HEAD_PITCH : HEAD_ROLL + 1] = head
    x[:, 104] = gaze[:, 0]
    x[:, 105] = gaze[:, 1] + vergence
    x[:, 106] = gaze[:, 0]
    x[:, 107] = gaze[:, 1] - vergence

    frames = x.reshape(num_frames, _SUB, MOTION_DIM).mean(axis=1)
    np.clip(frames[:, :100], -2.0, 2.0, out=frames[:, :100])
    np.clip(frames[:, JAW], 0.0, 0.3, out=frames[:, JAW])
    np.clip(frames[:, 100:103], -0.5, 0.5, out=frames[:, 100:103])
    np.clip(frames[:, 104:], -0.5, 0.5, out=frames[:, 104:])
    return frames.astype(np.float32)


def _busy(mask100: np.ndarray, t0: float, t1: float) -> bool:
    lo, hi = max(_index(t0), 0), min(_index(t1) + 1, mask100.shape[0])
    return bool(mask100[lo:hi].any()) if hi > lo else False


# -- public API ------------------------------------------------------------------------------------
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
        The :class:`Conversation`.

    Raises:
        ConfigError: a bad seed, duration or rate.
        MissingDependencyError: ``espeakng-loader`` is not installed (``pip install 'unils[train]'``).
    """
    seed_ = _check_seed(seed)
    duration = _check_seconds(seconds, "seconds")
    for name, value in (("backchannel_rate", backchannel_rate), ("overlap_rate", overlap_rate)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
    num_frames = max(1, round(duration * FPS))
    duration = num_frames / FPS
    num_samples = num_frames * SAMPLES_PER_FRAME
    # Independent streams: plan (voices, text, timing), each person's motion, background noise.
    plan_ss, motion0_ss, motion1_ss, noise_ss = np.random.SeedSequence(seed_).spawn(4)
    rng = np.random.default_rng(plan_ss)
    voices = _draw_voices(rng)
    placed = _Planner(rng, duration, voices, float(backchannel_rate), float(overlap_rate)).run()

    noise_rng = np.random.default_rng(noise_ss)
    tracks = [noise_rng.standard_normal(num_samples) * _NOISE_FLOOR for _ in range(2)]
    speech100 = np.zeros((2, num_frames * _SUB), dtype=bool)
    for p in placed:
        s0 = round(p.start * SAMPLE_RATE)
        seg = p.utt.audio[: max(0, num_samples - s0)]
        tracks[p.speaker][s0 : s0 + seg.shape[0]] += p.gain * seg
        for ph in p.utt.phonemes:
            if not ph.symbol.startswith("_") and ph.end > ph.start:
                lo = max(round((p.start + ph.start) / _DT), 0)
                hi = min(round((p.start + ph.end) / _DT), speech100.shape[1])
                speech100[p.speaker, lo:hi] = True
    audio = [np.clip(tr, -1.0, 1.0).astype(np.float32) for tr in tracks]
    speech_mask = speech100.reshape(2, num_frames, _SUB).mean(axis=2) >= 0.5

    motion = [
        _person_motion(np.random.default_rng(ss), i, placed, speech100, num_frames)
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


def _write_pcm16(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")


def _conversation_job(root: str, clip_id: str, seed: tuple[int, ...], seconds: float, kwargs: dict[str, float],
                      transcripts: bool) -> dict[str, Any]:  # fmt: skip
    conv = generate_conversation(seed, seconds, **kwargs)
    folder = Path(root) / "conversations" / clip_id
    folder.mkdir(parents=True, exist_ok=True)
    _write_pcm16(folder / "speaker0.wav", conv.audio0)
    _write_pcm16(folder / "speaker1.wav", conv.audio1)
    np.savez(
        folder / "motion.npz", speaker0=conv.motion0, speaker1=conv.motion1, speech_mask=conv.speech_mask
    )
    if transcripts:
        meta = {"seed": list(seed), "voices": [v.to_dict() for v in conv.voices], "turns": conv.transcript()}
        (folder / "transcript.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return {"frames": conv.num_frames, **conv.info}


def _motion_only_job(root: str, clip_ids: tuple[str, ...], seed: tuple[int, ...], seconds: float,
                     kwargs: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    conv = generate_conversation(seed, seconds, **kwargs)
    folder = Path(root) / "motion_only"
    folder.mkdir(parents=True, exist_ok=True)
    for clip_id, motion in zip(clip_ids, (conv.motion0, conv.motion1), strict=False):
        np.savez(folder / f"{clip_id}.npz", motion=motion)
    return {"frames": conv.num_frames * len(clip_ids)}


def _run_job(job: tuple[Any, ...]) -> dict[str, Any]:
    kind, args = job[0], job[1:]
    return _conversation_job(*args) if kind == "conversation" else _motion_only_job(*args)


def write_corpus(
    out_dir: str | os.PathLike[str],
    num_conversations: int,
    seconds: tuple[float, float] = (20.0, 40.0),
    seed: int = 0,
    motion_only: int = 0,
    progress: bool = False,
    *,
    workers: int = 1,
    overwrite: bool = False,
    transcripts: bool = False,
    backchannel_rate: float = 0.55,
    overlap_rate: float = 0.2,
) -> Path:
    """Write a synthetic training corpus in the unils dataset format.

    Conversation ``i`` is ``generate_conversation((seed, 0, i), seconds_i)`` with ``seconds_i`` drawn
    uniformly from ``seconds`` by ``default_rng((seed, 2))``; motion-only clips ``2k`` and ``2k + 1``
    are the two people of ``generate_conversation((seed, 1, k), ...)`` (durations from
    ``default_rng((seed, 3))``). A clip therefore does not depend on how many others are written or
    on ``workers``, and the same arguments write byte-identical files.

    Args:
        out_dir: destination folder; created if missing, and must be empty unless ``overwrite``.
        num_conversations: number of conversations (``conversations/00000`` ...).
        seconds: (shortest, longest) duration in seconds, each between 2 and 3600.
        seed: corpus seed (non-negative integer).
        motion_only: number of extra motion-only clips (``motion_only/00000.npz`` ...).
        progress: show a tqdm progress bar.
        workers: processes generating in parallel (1: in this process).
        overwrite: replace a corpus that :func:`write_corpus` wrote before into ``out_dir``
            (other non-empty folders are never deleted).
        transcripts: also write ``transcript.json`` (voices and timed utterances) per conversation;
            not part of the dataset format.
        backchannel_rate: see :func:`generate_conversation`.
        overlap_rate: see :func:`generate_conversation`.

    Returns:
        The path of ``out_dir``; ``dataset.json`` is written last, so its presence marks a complete corpus.

    Raises:
        ConfigError: bad counts, durations, seed or workers, or ``out_dir`` is not empty.
        MissingDependencyError: ``espeakng-loader`` is not installed (``pip install 'unils[train]'``).
    """
    n_conv = _check_count(num_conversations, "num_conversations")
    n_motion = _check_count(motion_only, "motion_only")
    n_workers = _check_count(workers, "workers", minimum=1)
    seed_ = _check_seed(seed)
    if not isinstance(seed_, int):
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(seconds, Sequence) or isinstance(seconds, (str, bytes)) or len(seconds) != 2:
        raise ConfigError(f"seconds must be a (min, max) pair, got {seconds!r}")
    lo, hi = _check_seconds(seconds[0], "seconds[0]"), _check_seconds(seconds[1], "seconds[1]")
    if lo > hi:
        raise ConfigError(f"seconds must be (min, max) with min <= max, got {seconds!r}")
    if n_conv + n_motion == 0:
        raise ConfigError("nothing to write: num_conversations and motion_only are both 0")
    kwargs = {"backchannel_rate": backchannel_rate, "overlap_rate": overlap_rate}
    for name, value in kwargs.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")

    root = Path(out_dir)
    _prepare_folder(root, overwrite)
    version = espeak_version()  # fails early with a clear message if eSpeak is missing

    durations = np.random.default_rng((seed_, 2)).uniform(lo, hi, size=n_conv)
    mo_durations = np.random.default_rng((seed_, 3)).uniform(lo, hi, size=(n_motion + 1) // 2)
    jobs: list[tuple[Any, ...]] = [
        ("conversation", str(root), f"{i:05d}", (seed_, 0, i), float(durations[i]), kwargs, transcripts)
        for i in range(n_conv)
    ]
    for k in range((n_motion + 1) // 2):
        ids = tuple(f"{j:05d}" for j in (2 * k, 2 * k + 1) if j < n_motion)
        jobs.append(("motion_only", str(root), ids, (seed_, 1, k), float(mo_durations[k]), kwargs))

    started = time.perf_counter()
    results = _run_jobs(jobs, n_workers, progress)
    elapsed = time.perf_counter() - started
    conv_results = results[:n_conv]
    total_frames = sum(r["frames"] for r in conv_results)
    generator = {
        "name": "unils.train.corpus",
        "corpus_version": CORPUS_VERSION,
        "seed": seed_,
        "num_conversations": n_conv,
        "seconds": [lo, hi],
        "motion_only": n_motion,
        "backchannel_rate": float(backchannel_rate),
        "overlap_rate": float(overlap_rate),
        "conversation_seed": "(seed, 0, index)",
        "motion_only_seed": "(seed, 1, index // 2), person index % 2",
        "espeak_ng": version,
        "channels": CHANNELS,
        "blink_interval_s": list(BLINK_INTERVAL),
        "total_conversation_seconds": round(total_frames / FPS, 2),
        "backchannels": int(sum(r.get("backchannels", 0) for r in conv_results)),
    }
    meta = {
        "format": "unils-dataset",
        "version": 1,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "generator": generator,
    }
    tmp = root / "dataset.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, root / "dataset.json")
    logger.info(
        "wrote %d conversation(s) (%.1f min) and %d motion-only clip(s) to %s in %.1f s",
        n_conv, total_frames / FPS / 60, n_motion, root, elapsed,
    )  # fmt: skip
    return root


def _prepare_folder(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        meta = root / "dataset.json"
        ours = False
        if meta.is_file():
            try:
                ours = (
                    json.loads(meta.read_text(encoding="utf-8")).get("generator", {}).get("name")
                    == "unils.train.corpus"
                )
            except (OSError, ValueError, AttributeError):
                ours = False
        if not overwrite:
            raise ConfigError(f"{root}: folder is not empty; choose an empty folder or pass overwrite=True")
        if not ours:
            raise ConfigError(
                f"{root}: not a corpus written by write_corpus (no matching dataset.json); refusing to "
                "delete it, choose an empty folder"
            )
        meta.unlink()
        for sub in ("conversations", "motion_only"):
            if (root / sub).is_dir():
                shutil.rmtree(root / sub)
    root.mkdir(parents=True, exist_ok=True)


def _run_jobs(jobs: list[tuple[Any, ...]], workers: int, progress: bool) -> list[dict[str, Any]]:
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), desc="corpus", unit="clip")
        except ImportError:
            logger.warning("progress=True needs tqdm (pip install 'unils[train]'); continuing without a bar")
    results: list[dict[str, Any]] = []
    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(_run_job(job))
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the parent may hold torch threads and eSpeak state that fork would copy.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                for result in pool.map(_run_job, jobs, chunksize=1):
                    results.append(result)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results
