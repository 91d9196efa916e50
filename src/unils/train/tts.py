"""Speech synthesis for the synthetic corpus: eSpeak NG through ctypes, with phoneme timing.

eSpeak NG comes from the ``espeakng-loader`` package (the ``unils[train]`` extra), which bundles
``libespeak-ng`` and its ``espeak-ng-data``. [`synthesize`][unils.train.tts.synthesize] turns one utterance
into 16 kHz float32 samples plus the time of every phoneme and word, taken from the synthesizer's own
``espeakEVENT_PHONEME`` / ``espeakEVENT_WORD`` events (their ``audio_position``, in ms).

Reproducibility: eSpeak keeps synthesis state in C static variables (pitch flutter index, wave phase, gain
control, echo buffer) that carry over from one utterance to the next, so the same text synthesized twice in
one process gives slightly different samples. Re-initialising does not reset them.
[`synthesize`][unils.train.tts.synthesize] therefore loads a private copy of the library, synthesizes,
terminates and unloads it again (about 1 ms): every utterance starts from the library's initial state, and its
samples depend only on the text and the [`Voice`][unils.train.tts.Voice]. Calls are serialised by a lock (the
library is not thread-safe).
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..audio import SAMPLE_RATE, load_audio
from ..errors import AudioError, MissingDependencyError

__all__ = [
    "FEMALE_VARIANTS",
    "MALE_VARIANTS",
    "Phoneme",
    "Utterance",
    "Voice",
    "Word",
    "espeak_version",
    "synthesize",
]

logger = logging.getLogger("unils.train.tts")

#: eSpeak voice variants (``espeak-ng-data/voices/!v``) without breath noise or Klatt synthesis: both
#: draw from libc ``rand()`` and would make the samples depend on the process's random state.
MALE_VARIANTS = ("m1", "m3", "m4", "m6", "m7", "robert", "Michael")
#: Female eSpeak voice variants, chosen by the same rule.
FEMALE_VARIANTS = ("f1", "f4", "linda", "belinda", "steph", "aunty", "Annie")

# speak_lib.h (API revision 12): espeak_AUDIO_OUTPUT, espeak_EVENT_TYPE, espeak_PARAMETER, flags.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PHONEMES = 0x100  # text inside [[ ]] is eSpeak phoneme mnemonics (used for "mm-hmm")
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h (40 bytes on 64-bit platforms: six ints, a pointer, a union)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    Attributes:
        name: eSpeak voice name, a language with an optional variant (``"en-us+f4"``, ``"en+m3"``).
        rate: speaking rate in words per minute (eSpeak accepts 80-450; 140-190 sounds natural).
        pitch: base pitch, 0-100 (50 is the voice's default).
        pitch_range: pitch range (intonation), 0-100 (50 is the default, 0 is monotone).
    """

    name: str = "en-us"
    rate: int = 170
    pitch: int = 50
    pitch_range: int = 50

    def to_dict(self) -> dict[str, object]:
        """The voice as a JSON-ready dict."""
        return {"name": self.name, "rate": self.rate, "pitch": self.pitch, "pitch_range": self.pitch_range}


class Phoneme(NamedTuple):
    """One phoneme of an utterance: times in seconds from the utterance start."""

    start: float
    end: float
    symbol: str  # eSpeak mnemonic without stress marks ("aI", "m", "_:" for a pause)
    stress: int  # 2 primary ("'"), 1 secondary (","), 0 none


class Word(NamedTuple):
    """One word of an utterance: start in seconds from the utterance start, and its text."""

    start: float
    text: str


@dataclass(frozen=True)
class Utterance:
    """A synthesized utterance.

    Attributes:
        text: what was synthesized.
        audio: mono float32 samples at ``sample_rate``, peak below 1.
        sample_rate: rate of ``audio`` in Hz.
        phonemes: every phoneme with its start and end (pauses have symbols starting with ``_``).
        words: every word with its start.
        speech_end: end of the last non-pause phoneme, in seconds (the rest is trailing silence).
    """

    text: str
    audio: np.ndarray
    sample_rate: int
    phonemes: tuple[Phoneme, ...]
    words: tuple[Word, ...]
    speech_end: float

    @property
    def duration(self) -> float:
        """Length of ``audio`` in seconds."""
        return self.audio.shape[0] / self.sample_rate


class _Library:
    """Where the bundled library and data are, and a private copy of the library to load."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise MissingDependencyError(
                "the synthetic corpus needs eSpeak NG from the 'espeakng-loader' package: "
                "pip install 'unils[train]'"
            ) from exc
        source = Path(espeakng_loader.get_library_path())
        self.data_path = str(espeakng_loader.get_data_path())
        if not source.is_file() or not Path(self.data_path).is_dir():
            raise MissingDependencyError(
                f"espeakng-loader is installed but its library ({source}) or data ({self.data_path}) is "
                "missing; reinstall it: pip install --force-reinstall espeakng-loader"
            )
        # A private file: unloading it really resets its state even if something else in the process
        # has the package's own copy loaded.
        self._dir = tempfile.mkdtemp(prefix="unils-espeak-")
        atexit.register(shutil.rmtree, self._dir, True)
        self.path = str(Path(self._dir) / source.name)
        shutil.copyfile(source, self.path)
        self.can_unload = _dlclose is not None
        if not self.can_unload:
            logger.warning(
                "cannot unload shared libraries on this platform: eSpeak keeps state between utterances, "
                "so the corpus is reproducible only for the same sequence of calls in a fresh process"
            )
        self._persistent: ctypes.CDLL | None = None
        #: Output sample rate eSpeak reported when the library was last initialised by
        #: [`open`][unils.train.tts._Library.open].
        self.rate = 0

    def open(self) -> ctypes.CDLL:
        if self._persistent is not None:
            return self._persistent
        lib = ctypes.CDLL(self.path, mode=getattr(ctypes, "RTLD_LOCAL", 0))
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), _INITIALIZE_PHONEME_EVENTS
        )
        if rate <= 0:
            raise MissingDependencyError(
                f"eSpeak NG failed to initialise with data at {self.data_path}; reinstall espeakng-loader"
            )
        self.rate = int(rate)
        if not self.can_unload:
            self._persistent = lib
        return lib

    def close(self, lib: ctypes.CDLL) -> None:
        if self._persistent is not None:
            return
        lib.espeak_Terminate()
        _dlclose(lib._handle)  # type: ignore[misc]


def _find_dlclose():
    import _ctypes

    if sys.platform.startswith("win"):
        return getattr(_ctypes, "FreeLibrary", None)
    return getattr(_ctypes, "dlclose", None)


_dlclose = _find_dlclose()
_LOCK = threading.Lock()
_LIBRARY: _Library | None = None


def _library() -> _Library:
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = _Library()
    return _LIBRARY


def espeak_version() -> str:
    """Version of the bundled eSpeak NG library (e.g. ``"1.52.0"``).

    Raises:
        MissingDependencyError: ``espeakng-loader`` is not installed (``pip install 'unils[train]'``).
    """
    with _LOCK:
        lib_info = _library()
        lib = lib_info.open()
        try:
            return lib.espeak_Info(None).decode()
        finally:
            lib_info.close(lib)


def _split_stress(name: str) -> tuple[str, int]:
    stress = 0
    i = 0
    while i < len(name) and name[i] in "',%=":
        if name[i] == "'":
            stress = 2
        elif name[i] == ",":
            stress = max(stress, 1)
        i += 1
    return name[i:] or name, stress


def synthesize(text: str, voice: Voice = Voice(), *, sample_rate: int = SAMPLE_RATE) -> Utterance:
    """Synthesize one utterance with eSpeak NG and time its phonemes and words.

    Args:
        text: UTF-8 text; ``[[...]]`` spans are eSpeak phoneme mnemonics (e.g. ``"[[m@'h@m]]"``).
        voice: the speaker (voice name, rate, pitch, range).
        sample_rate: rate of the returned audio; eSpeak's own rate (22050 Hz) is resampled with
            [`unils.audio.load_audio`][unils.audio.load_audio] (resampy ``kaiser_best``).

    Returns:
        The [`Utterance`][unils.train.tts.Utterance]: float32 audio normalised to a peak of 0.9, phonemes and
        words with their times. The same text and voice always give the same samples.

    Raises:
        MissingDependencyError: ``espeakng-loader`` is not installed (``pip install 'unils[train]'``).
        AudioError: empty text, an unknown voice name, or synthesis produced no sound.
    """
    if not isinstance(text, str) or not text.strip():
        raise AudioError(f"synthesize: text must be a non-empty string, got {text!r}")
    chunks: list[np.ndarray] = []
    raw_events: list[tuple[int, int, int, int, bytes]] = []

    failures: list[BaseException] = []

    def on_audio(wav, num_samples, events):  # called by eSpeak from inside espeak_Synth
        # ctypes only prints exceptions raised in a callback; keep the first and abort synthesis.
        try:
            if wav and num_samples > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
            i = 0
            while events[i].type != _EVENT_LIST_TERMINATED:
                ev = events[i]
                if ev.type in (_EVENT_PHONEME, _EVENT_WORD):
                    # id.string reads as bytes, cut at the first NUL or after 8 bytes.
                    name = ev.id.string if ev.type == _EVENT_PHONEME else b""
                    raw_events.append((ev.type, ev.audio_position, ev.text_position, ev.length, name))
                i += 1
        except BaseException as exc:
            failures.append(exc)
            return 1
        return 0

    callback = _CALLBACK(on_audio)
    encoded = text.encode("utf-8")
    buffer = ctypes.create_string_buffer(encoded)
    with _LOCK:
        lib_info = _library()
        lib = lib_info.open()
        try:
            lib.espeak_SetSynthCallback(callback)
            if lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
                raise AudioError(
                    f"synthesize: eSpeak has no voice {voice.name!r}; use a language with an optional "
                    "variant, e.g. 'en-us' or 'en-us+f4'"
                )
            lib.espeak_SetParameter(_PARAM_RATE, int(voice.rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(voice.pitch), 0)
            lib.espeak_SetParameter(_PARAM_RANGE, int(voice.pitch_range), 0)
            lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
            status = lib.espeak_Synth(
                buffer, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _PHONEMES, None, None
            )
            native_rate = lib_info.rate
        finally:
            lib_info.close(lib)
    if failures:
        raise failures[0]
    if status != _EE_OK or not chunks:
        raise AudioError(f"synthesize: eSpeak produced no audio for {text!r} (status {status})")
    pcm = np.concatenate(chunks)
    peak = int(np.abs(pcm.astype(np.int32)).max())
    if peak == 0:
        raise AudioError(f"synthesize: eSpeak produced only silence for {text!r}")
    audio = load_audio(
        pcm.astype(np.float32) * (0.9 / peak), native_rate, target_rate=sample_rate, name="tts"
    )
    peak_out = float(np.abs(audio).max())
    if peak_out > 0.99:  # resampling can overshoot a little
        audio *= 0.99 / peak_out
    total = audio.shape[0] / sample_rate

    phonemes: list[Phoneme] = []
    words: list[Word] = []
    starts = [(pos / 1000.0, name) for kind, pos, _, _, name in raw_events if kind == _EVENT_PHONEME]
    for k, (start, name) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else total
        symbol, stress = _split_stress(name.decode("utf-8", "replace"))
        phonemes.append(Phoneme(min(start, total), min(max(end, start), total), symbol, stress))
    for kind, pos, text_pos, length, _ in raw_events:
        if kind == _EVENT_WORD:
            # text_position counts characters from 1; for ASCII text bytes and characters agree.
            word = encoded[max(text_pos - 1, 0) : max(text_pos - 1, 0) + length].decode("utf-8", "replace")
            words.append(Word(min(pos / 1000.0, total), word))
    speech = [p for p in phonemes if not p.symbol.startswith("_") and p.end > p.start]
    speech_end = speech[-1].end if speech else 0.0
    return Utterance(text, audio, sample_rate, tuple(phonemes), tuple(words), speech_end)
