import numpy as np
import pytest
import resampy
import soundfile as sf
import torch

from unils import AudioError, AudioFileError
from unils.audio import Resampler, duration_to_frames, load_audio, pad_to_same_length, save_audio


def sine(freq, seconds, sr):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_wav_round_trip_and_stereo_file(tmp_path):
    x = sine(440, 1.0, 16000)
    save_audio(tmp_path / "a.wav", x)
    np.testing.assert_allclose(load_audio(tmp_path / "a.wav"), x, atol=1e-7)
    sf.write(tmp_path / "s.wav", np.stack([x, np.zeros_like(x)], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), x / 2, atol=1e-6)
    with pytest.raises(AudioError, match="does not match"):
        load_audio(tmp_path / "a.wav", sample_rate=8000)


@pytest.mark.parametrize("sr", [8000, 44100])
def test_resampling_keeps_length_and_frequency(sr):
    y = load_audio(sine(500, 2.0, sr), sr)
    assert y.shape[0] == 32000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / y.shape[0] - 500) < 1.0


def test_pcm_and_layouts():
    x = sine(300, 0.5, 16000)
    pcm = (x * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm), x, atol=1e-4)
    np.testing.assert_allclose(load_audio(np.stack([x, x])), x)  # [2, N]
    np.testing.assert_allclose(load_audio(np.stack([x, x], 1)), x)  # [N, 2]
    np.testing.assert_allclose(load_audio(torch.from_numpy(x)), x)
    np.testing.assert_allclose(load_audio(x.astype(np.float64)), x)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.1, np.nan] * 400, np.float32), "NaN"),
        (np.array([0.1, np.inf] * 400, np.float32), "NaN or inf"),
        (np.zeros(100, np.float32), "too short.*40 ms"),
        (np.zeros((2, 2, 1000), np.float32), "dimensions"),
        (np.zeros((5, 5), np.float32), "cannot tell channels"),
        (np.zeros(1000, dtype=bool), "unsupported"),
    ],
)
def test_refusals(bad, message):
    with pytest.raises(AudioError, match=message) as info:
        load_audio(bad)
    assert isinstance(info.value, ValueError)


def test_bad_rates():
    for rate in (0, -16000, 16000.5, "fast"):
        with pytest.raises(AudioError, match="sample_rate"):
            load_audio(np.zeros(16000, np.float32), rate)


def test_file_errors(tmp_path):
    with pytest.raises(AudioFileError, match="no audio file") as info:
        load_audio(tmp_path / "missing.wav")
    assert isinstance(info.value, FileNotFoundError)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioFileError, match="could not decode"):
        load_audio(junk)


def test_frames_and_padding():
    assert [duration_to_frames(int(s * 16000)) for s in (0.3, 4, 9, 61)] == [8, 100, 225, 1525]
    assert duration_to_frames(641) == 2 and duration_to_frames(640) == 1
    a, b = pad_to_same_length(np.ones(3, np.float32), np.ones(5, np.float32))
    assert a.tolist() == [1, 1, 1, 0, 0] and b.shape == (5,)


@pytest.mark.parametrize("sr", [44100, 48000, 8000, 22050])
@pytest.mark.parametrize("blocks", [[160], [441], [4410], [7, 1000, 33, 5000, 1]])
def test_streaming_resampler_matches_one_shot(sr, blocks):
    x = (0.1 * np.random.default_rng(sr).normal(size=int(sr * 1.5))).astype(np.float32)
    ref = resampy.resample(x, sr, 16000, filter="kaiser_best")
    r = Resampler(sr)
    out, i, k = [], 0, 0
    while i < x.shape[0]:
        n = blocks[k % len(blocks)]
        out.append(r.push(x[i : i + n]))
        i, k = i + n, k + 1
    out.append(r.flush())
    y = np.concatenate(out)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-6)
    assert r.delay_samples > 0


def test_resampler_pass_through_rates():
    r = Resampler(16000)
    x = np.arange(1000, dtype=np.float32)
    y = np.concatenate([r.push(x[:300]), r.push(x[300:]), r.flush()])
    np.testing.assert_allclose(y, resampy.resample(x, 16000, 16000, filter="kaiser_best"), atol=1e-3)
