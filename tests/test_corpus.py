"""Synthetic two-person corpus: eSpeak synthesis, reproducibility, format on disk, motion rules."""

from __future__ import annotations

import hashlib
import itertools
import json
import sys

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

import soundfile as sf

from unils.errors import ConfigError, MissingDependencyError
from unils.train import tts
from unils.train.corpus import (
    BLINK_AFTER_SENTENCE,
    BLINK_INTERVAL,
    CHANNELS,
    EXPR_BLINK,
    HEAD_PITCH,
    JAW,
    generate_conversation,
    write_corpus,
)
from unils.train.tts import Voice, synthesize

FRAME = 640


def frame_rms(audio: np.ndarray, num_frames: int) -> np.ndarray:
    return np.sqrt(
        (audio[: num_frames * FRAME].astype(np.float64).reshape(num_frames, FRAME) ** 2).mean(axis=1)
    )


@pytest.fixture(scope="module")
def conv():
    return generate_conversation(7, 24.0)


def test_synthesize_times_phonemes_and_is_history_independent():
    voice = Voice("en-us+f4", rate=160, pitch=55)
    a = synthesize("Did you see the old boat near the river?", voice)
    synthesize("Something else first, to change the synthesizer's state.", Voice("en+m3"))
    b = synthesize("Did you see the old boat near the river?", voice)
    assert np.array_equal(a.audio, b.audio) and a.phonemes == b.phonemes
    assert a.audio.dtype == np.float32 and a.sample_rate == 16000 and 0.5 < np.abs(a.audio).max() < 1.0
    assert [w.text for w in a.words] == ["Did", "you", "see", "the", "old", "boat", "near", "the", "river"]
    starts = [p.start for p in a.phonemes]
    assert starts == sorted(starts) and a.phonemes[-1].end == pytest.approx(a.duration)
    assert any(p.stress == 2 for p in a.phonemes)
    # The event times line up with the sound: phonemes are loud, pauses after the speech are quiet.
    sr = a.sample_rate

    def rms(t0, t1):
        seg = a.audio[int(t0 * sr) : int(t1 * sr)]
        return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if seg.size else 0.0

    vowels = [p for p in a.phonemes if p.symbol in ("i:", "oU", "u:", "I", "aI") and p.end - p.start > 0.04]
    assert vowels and min(rms(p.start, p.end) for p in vowels) > 0.03
    assert rms(a.speech_end + 0.01, a.duration) < 0.01
    # A different voice sounds different.
    c = synthesize("Did you see the old boat near the river?", Voice("en-us+m3"))
    assert c.audio.shape != a.audio.shape or not np.array_equal(c.audio, a.audio)


def test_synthesize_refuses_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        synthesize("   ")
    with pytest.raises(ValueError, match="no voice"):
        synthesize("hello", Voice("xx-nonexistent"))


def test_missing_espeak_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tts, "_LIBRARY", None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(MissingDependencyError, match=r"unils\[train\]") as info:
        synthesize("hello")
    assert isinstance(info.value, ImportError)


def test_conversation_is_reproducible(conv):
    other = generate_conversation(8, 24.0)
    again = generate_conversation(7, 24.0)
    for name in ("audio0", "audio1", "motion0", "motion1", "speech_mask"):
        assert np.array_equal(getattr(conv, name), getattr(again, name)), name
    assert conv.turns == again.turns and conv.voices == again.voices
    assert not np.array_equal(conv.audio0, other.audio0)
    assert not np.array_equal(conv.motion0, other.motion0)
    assert conv.turns != other.turns


def test_conversation_shapes_and_ranges(conv):
    T = conv.num_frames
    assert T == 600 and conv.seconds == 24.0
    for audio in (conv.audio0, conv.audio1):
        assert audio.dtype == np.float32 and audio.shape == (T * FRAME,)
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    for m in (conv.motion0, conv.motion1):
        assert m.dtype == np.float32 and m.shape == (T, 108) and np.isfinite(m).all()
        assert np.abs(m[:, :100]).max() <= 2.0
        assert 0.0 <= m[:, JAW].min() and 0.15 < m[:, JAW].max() <= 0.3
        assert np.abs(m[:, 100:103]).max() < 0.3 and np.abs(m[:, 104:]).max() < 0.5
        assert (m[:, 15:100].std(axis=0) > 0).all()  # no dead coefficients
    assert conv.speech_mask.dtype == bool and conv.speech_mask.shape == (2, T)
    # Both people talk, with turns, backchannels and some overlap, and some shared silence.
    assert 0.2 < conv.speech_mask[0].mean() < 0.7 and 0.2 < conv.speech_mask[1].mean() < 0.7
    kinds = {t.kind for t in conv.turns}
    assert kinds == {"sentence", "backchannel"}
    assert {t.speaker for t in conv.turns if t.kind == "sentence"} == {0, 1}
    assert (~conv.speech_mask[0] & ~conv.speech_mask[1]).mean() > 0.1
    assert all(t.end <= conv.seconds - 0.1 for t in conv.turns)


def test_jaw_follows_own_voice(conv):
    T = conv.num_frames
    for me, (audio, partner, m) in enumerate(
        [(conv.audio0, conv.audio1, conv.motion0), (conv.audio1, conv.audio0, conv.motion1)]
    ):
        own = np.corrcoef(m[:, JAW], frame_rms(audio, T))[0, 1]
        other = np.corrcoef(m[:, JAW], frame_rms(partner, T))[0, 1]
        assert own > 0.6, (me, own)
        assert other < 0.1, (me, other)
        # Closed while not speaking.
        assert m[~conv.speech_mask[me], JAW].mean() < 0.02


def test_speech_mask_agrees_with_energy(conv):
    T = conv.num_frames
    for me, audio in enumerate((conv.audio0, conv.audio1)):
        loud = frame_rms(audio, T) > 0.01
        agreement = (loud == conv.speech_mask[me]).mean()
        assert agreement > 0.93, (me, agreement)


def test_listener_moves_head_and_nods(conv):
    for me, m in enumerate((conv.motion0, conv.motion1)):
        listening = conv.speech_mask[1 - me] & ~conv.speech_mask[me]
        speed = np.abs(np.diff(m[:, 100:103], axis=0)).sum(axis=1) * 25  # rad/s
        assert listening.sum() > 50
        assert speed[listening[1:]].mean() > 0.03, me
        # Speakers move more than listeners.
        assert speed[conv.speech_mask[me][1:]].mean() > speed[listening[1:]].mean()
    # Listeners nod in the partner's pauses: the head pitches down there more than on average.
    nods = []
    for me, m in enumerate((conv.motion0, conv.motion1)):
        sentences = [t for t in conv.turns if t.speaker != me and t.kind == "sentence"]
        for a, b in itertools.pairwise(sentences):
            f0, f1 = int(a.end * 25), int(b.start * 25) + 5
            if b.start - a.end > 0.2 and not conv.speech_mask[me, f0:f1].any():
                pitch = m[:, HEAD_PITCH]
                nods.append(pitch[f0:f1].max() - np.median(pitch[max(0, f0 - 50) : f0]))
    assert nods and np.mean(nods) > 0.02


def test_blinks_follow_sentence_ends(conv):
    lo, hi = BLINK_INTERVAL
    after = BLINK_AFTER_SENTENCE
    ends = sorted(t.end for t in conv.turns if t.kind == "sentence")
    assert len(ends) >= 5
    for m in (conv.motion0, conv.motion1):
        closed = m[:, EXPR_BLINK] > 0.6
        onsets = np.flatnonzero(closed[1:] & ~closed[:-1]) + 1
        times = onsets / 25
        gaps = np.diff(times)
        assert gaps.min() >= lo - 0.1 and gaps.max() <= hi + 0.1, gaps
        assert 10 <= len(onsets) / conv.seconds * 60 <= 30  # blinks a minute
        # Short pulses: about 200 ms, peak 1.3-1.7.
        assert closed.sum() <= 5 * len(onsets)
        assert 1.2 < m[:, EXPR_BLINK].max() < 1.8
        # After every sentence (either person's) a blink follows within the pause, unless one
        # came less than BLINK_INTERVAL[0] before.
        for e in ends:
            if e + after[1] + 0.2 >= conv.seconds or (times[(times > e - lo) & (times <= e)]).size:
                continue
            near = times[(times >= e + after[0] - 0.05) & (times <= e + after[1] + 0.2)]
            assert near.size == 1, (e, times)
        # Most blinks are anchored to sentence ends: the partner can hear when they come.
        anchored = [any(0 <= t - e <= after[1] + 0.2 for e in ends) for t in times]
        assert np.mean(anchored) >= 0.7


def _digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "dataset.json"
    }


def test_write_corpus_format(tmp_path):
    root = write_corpus(tmp_path / "corpus", 2, seconds=(4.0, 6.0), seed=3, motion_only=3)
    meta = json.loads((root / "dataset.json").read_text())
    assert {k: meta[k] for k in ("format", "version", "fps", "sample_rate")} == {
        "format": "unils-dataset", "version": 1, "fps": 25, "sample_rate": 16000
    }  # fmt: skip
    gen = meta["generator"]
    assert gen["seed"] == 3 and gen["num_conversations"] == 2 and gen["motion_only"] == 3
    assert gen["channels"] == json.loads(json.dumps(CHANNELS)) and gen["blink_interval_s"] == [1.0, 6.0]
    assert gen["blink_after_sentence_s"] == list(BLINK_AFTER_SENTENCE)
    clips = sorted(p.name for p in (root / "conversations").iterdir())
    assert clips == ["00000", "00001"]
    for clip in clips:
        folder = root / "conversations" / clip
        assert sorted(p.name for p in folder.iterdir()) == ["motion.npz", "speaker0.wav", "speaker1.wav"]
        with np.load(folder / "motion.npz") as data:
            assert sorted(data.files) == ["speaker0", "speaker1", "speech_mask"]
            m0, m1, mask = data["speaker0"], data["speaker1"], data["speech_mask"]
        T = m0.shape[0]
        assert 100 <= T <= 150 and m0.shape == m1.shape == (T, 108)
        assert m0.dtype == m1.dtype == np.float32 and mask.dtype == bool and mask.shape == (2, T)
        lengths = []
        for name in ("speaker0.wav", "speaker1.wav"):
            info = sf.info(str(folder / name))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            lengths.append(info.frames)
        assert lengths[0] == lengths[1] == T * FRAME
        if clip == "00001":
            # The files hold what generate_conversation makes for that clip's seed.
            conv = generate_conversation((3, 0, 1), T / 25)
            assert np.array_equal(conv.motion0, m0) and np.array_equal(conv.speech_mask, mask)
            audio, _ = sf.read(str(folder / "speaker1.wav"), dtype="float32")
            assert np.abs(audio - conv.audio1).max() <= 1.0 / 32768 + 1e-7
    motion_only = sorted(p.name for p in (root / "motion_only").iterdir())
    assert motion_only == ["00000.npz", "00001.npz", "00002.npz"]
    for name in motion_only:
        with np.load(root / "motion_only" / name) as data:
            assert data.files == ["motion"] and data["motion"].dtype == np.float32
            assert data["motion"].shape[1] == 108 and data["motion"].shape[0] >= 100

    # Same seed, same bytes, whatever the number of clips written.
    again = write_corpus(tmp_path / "again", 1, seconds=(4.0, 6.0), seed=3)
    first = _digest(root)
    assert _digest(again) == {k: v for k, v in first.items() if k.startswith("conversations/00000/")}
    # A non-empty folder is refused unless overwriting a corpus written by write_corpus.
    with pytest.raises(ConfigError, match="not empty"):
        write_corpus(root, 1, seconds=(4.0, 4.0))
    write_corpus(root, 1, seconds=(4.0, 4.0), seed=5, overwrite=True)
    assert sorted(p.name for p in (root / "conversations").iterdir()) == ["00000"]
    assert not (root / "motion_only").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="refusing"):
        write_corpus(other, 1, seconds=(4.0, 4.0), overwrite=True)
    assert (other / "notes.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_conversations": -1}, "num_conversations"),
        ({"num_conversations": 1, "seconds": (1.0, 5.0)}, "seconds"),
        ({"num_conversations": 1, "seconds": (6.0, 5.0)}, "min <= max"),
        ({"num_conversations": 1, "seconds": 5.0}, "pair"),
        ({"num_conversations": 1, "seed": -1}, "seed"),
        ({"num_conversations": 1, "workers": 0}, "workers"),
        ({"num_conversations": 1, "overlap_rate": 1.5}, "overlap_rate"),
        ({"num_conversations": 0}, "nothing to write"),
    ],
)
def test_write_corpus_refuses_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        write_corpus(tmp_path / "c", **kwargs)
    assert not (tmp_path / "c").exists()


def test_generate_conversation_refuses_bad_arguments():
    for kwargs in ({"seed": -1}, {"seed": 1.5}, {"seed": 0, "seconds": 0.5}, {"seed": 0, "seconds": float("nan")},
                   {"seed": 0, "backchannel_rate": -0.1}):  # fmt: skip
        with pytest.raises(ConfigError):
            generate_conversation(**kwargs)
