"""Planning a conversation: voices, sentences from a small grammar, turns, pauses, overlaps and backchannels.

[`Planner`][unils.train.corpus.planning.Planner] lays utterances out on the timeline (synthesizing each once);
[`Turn`][unils.train.corpus.planning.Turn] and [`Conversation`][unils.train.corpus.planning.Conversation] are
what [`generate_conversation`][unils.train.corpus.generate.generate_conversation] returns.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...config import FPS, SAMPLE_RATE
from ...errors import ConfigError
from ..tts import FEMALE_VARIANTS, MALE_VARIANTS, Utterance, Voice, synthesize
from .channels import BACKCHANNEL_P, BACKCHANNELS, MAX_SECONDS, MIN_SECONDS

__all__ = ["Conversation", "Turn"]


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
class Placed:
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
def check_seed(seed: object, name: str = "seed") -> int | tuple[int, ...]:
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


def check_seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not MIN_SECONDS <= v <= MAX_SECONDS:
        raise ConfigError(f"{name} must be between {MIN_SECONDS} and {MAX_SECONDS} seconds, got {value!r}")
    return v


def check_count(value: object, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# -- planning --------------------------------------------------------------------------------------
def draw_voices(rng: np.random.Generator) -> tuple[Voice, Voice]:
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


class Planner:
    """Lays utterances out on the timeline; synthesizes each distinct (text, speaker) once."""

    def __init__(self, rng: np.random.Generator, duration: float, voices: tuple[Voice, Voice],
                 backchannel_rate: float, overlap_rate: float) -> None:  # fmt: skip
        self.rng = rng
        self.duration = duration
        self.voices = voices
        self.backchannel_rate = backchannel_rate
        self.overlap_rate = overlap_rate
        self.placed: list[Placed] = []
        self.busy = [0.0, 0.0]  # when each person's last utterance ends
        self._cache: dict[tuple[str, int], Utterance] = {}

    def _synth(self, spoken: str, speaker: int) -> Utterance:
        key = (spoken, speaker)
        if key not in self._cache:
            self._cache[key] = synthesize(spoken, self.voices[speaker])
        return self._cache[key]

    def backchannel(self, listener: int, at: float) -> bool:
        rng = self.rng
        text = list(BACKCHANNELS)[int(rng.choice(len(BACKCHANNELS), p=BACKCHANNEL_P))]
        gain = float(rng.uniform(0.45, 0.75))
        if at < self.busy[listener] + 0.3 or at < 0.05:
            return False
        utt = self._synth(BACKCHANNELS[text], listener)
        if at + utt.speech_end > self.duration - 0.1:
            return False
        self.placed.append(Placed(listener, at, utt, text, "backchannel", gain))
        self.busy[listener] = at + utt.speech_end
        return True

    def run(self) -> list[Placed]:
        rng = self.rng
        t = float(rng.uniform(0.2, 1.0))
        speaker = int(rng.integers(2))
        first_turn = True
        while True:
            n_sentences = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
            listener = 1 - speaker
            turn: list[Placed] = []
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
                placed = Placed(speaker, t, utt, text, "sentence", gain, question, turn_start=j == 0)
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
