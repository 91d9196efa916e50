import logging

import numpy as np
import pytest
import resampy
import soundfile as sf
import torch

from unils import AudioError, AudioFileError
from unils.audio import (
    Resampler,
    duration_to_frames,
    load_audio,
    pad_to_same_length,
    save_audio,
    to_mono_float32,
)


def sine(freq, seconds, sr, amp=0.5):
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(y, sr):
    return np.argmax(np.abs(np.fft.rfft(y))) * sr / y.shape[0]


# ----------------------------------------------------------------------------- files


def test_wav_round_trip(tmp_path):
    x = sine(440, 1.0, 16000)
    save_audio(tmp_path / "a.wav", x)
    assert sf.info(str(tmp_path / "a.wav")).subtype == "FLOAT"
    y = load_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.ndim == 1 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(load_audio(str(tmp_path / "a.wav"), sample_rate=16000), x)


def test_flac_file_is_read_and_resampled(tmp_path):
    x = sine(440, 1.0, 22050)
    save_audio(tmp_path / "a.flac", x, 22050)  # FLAC has no float subtype: 16-bit PCM
    y = load_audio(tmp_path / "a.flac")
    assert y.shape == (16000,)
    assert abs(dominant_hz(y, 16000) - 440) <= 1.0


def test_stereo_file_is_averaged(tmp_path):
    x = sine(440, 1.0, 16000)
    sf.write(tmp_path / "s.wav", np.stack([x, np.zeros_like(x)], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), x / 2, atol=1e-7)


def test_file_rate_mismatch(tmp_path):
    save_audio(tmp_path / "a.wav", sine(440, 1.0, 16000))
    with pytest.raises(AudioError, match="does not match the file's 16000 Hz") as info:
        load_audio(tmp_path / "a.wav", sample_rate=8000)
    assert isinstance(info.value, ValueError)


def test_missing_and_undecodable_files(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioFileError, match="no audio file") as info:
        load_audio(missing)
    assert isinstance(info.value, FileNotFoundError)
    assert str(missing) in str(info.value)

    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioFileError, match="could not decode") as info:
        load_audio(junk)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(junk) in message and "WAV" in message and "FLAC" in message

    with pytest.raises(AudioFileError, match="directory"):
        load_audio(tmp_path)


def test_save_audio_refusals(tmp_path):
    with pytest.raises(AudioError, match="suffix"):
        save_audio(tmp_path / "a.unknownformat", np.zeros(1000, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "a.wav", np.full(1000, np.nan, np.float32))


# ----------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resampling_keeps_length_and_frequency(sr):
    y = load_audio(sine(500, 2.0, sr), sr)
    assert y.shape == (32000,) and y.dtype == np.float32
    assert abs(dominant_hz(y, 16000) - 500) <= 0.5


def test_resampled_length_follows_resampy():
    x = sine(300, 1.2345, 44100)
    y = load_audio(x, 44100)
    assert y.shape == resampy.resample(x, 44100, 16000).shape == (int(x.shape[0] * 16000 / 44100),)


def test_resampling_is_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="unils"):
        load_audio(sine(500, 0.5, 8000), 8000)
    assert "resampling" in caplog.text and "8000 Hz" in caplog.text


def test_target_rate():
    assert load_audio(sine(500, 1.0, 16000), target_rate=8000).shape == (8000,)


# ----------------------------------------------------------------------------- arrays


def test_integer_pcm_scaling():
    x = sine(300, 0.5, 16000)
    np.testing.assert_allclose(load_audio((x * 32767).astype(np.int16)), x, atol=1e-4)
    np.testing.assert_array_equal(
        load_audio(np.array([-32768, 0, 16384] * 300, np.int16))[:3], [-1.0, 0.0, 0.5]
    )
    np.testing.assert_array_equal(
        load_audio(np.array([-(2**31), 0, 2**30] * 300, np.int32))[:3], [-1.0, 0.0, 0.5]
    )
    np.testing.assert_array_equal(load_audio(np.array([0, 128, 192] * 300, np.uint8))[:3], [-1.0, 0.0, 0.5])
    np.testing.assert_allclose(load_audio(torch.from_numpy((x * 32767).astype(np.int16))), x, atol=1e-4)


def test_channel_layouts():
    x = sine(300, 0.5, 16000)
    z = np.zeros_like(x)
    np.testing.assert_allclose(load_audio(np.stack([x, z])), x / 2)  # [2, N]
    np.testing.assert_allclose(load_audio(np.stack([x, z], 1)), x / 2)  # [N, 2]
    np.testing.assert_array_equal(load_audio(x[None]), x)  # [1, N]
    np.testing.assert_array_equal(load_audio(x[:, None]), x)  # [N, 1]
    np.testing.assert_allclose(load_audio(np.stack([x] * 8)), x, atol=1e-7)  # 8 channels


def test_tensors_and_float64():
    x = sine(300, 0.5, 16000)
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    np.testing.assert_array_equal(load_audio(t), x)
    np.testing.assert_array_equal(load_audio(torch.from_numpy(x).double()), x)
    np.testing.assert_allclose(load_audio(torch.from_numpy(x).to(torch.bfloat16)), x, atol=4e-3)
    np.testing.assert_array_equal(load_audio(x.astype(np.float64)), x)
    np.testing.assert_allclose(load_audio(torch.from_numpy(np.stack([x, x]))), x)


def test_result_does_not_alias_input():
    x = sine(300, 0.5, 16000)
    y = load_audio(x)
    y[:] = 0
    assert np.abs(x).max() > 0.4


def test_loud_input_warns_but_is_kept(caplog):
    x = sine(300, 0.5, 16000, amp=3.0)
    with caplog.at_level(logging.WARNING, logger="unils"):
        y = load_audio(x)
    assert "peak amplitude" in caplog.text
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(0, np.float32), "empty"),
        (torch.zeros(0), "empty"),
        (np.zeros((2, 0), np.float32), "empty"),
        (np.array([0.1, np.nan] * 400, np.float32), r"400 of 800 samples are NaN or inf.*np\.nan_to_num"),
        (np.array([0.1, np.inf] * 400, np.float32), "NaN or inf"),
        (np.array([0.1, -np.inf] * 400, np.float64), "NaN or inf"),
        (
            np.zeros(100, np.float32),
            r"too short \(100 samples at 16000 Hz = 6\.2 ms\).*at least 40 ms \(640 samples",
        ),
        (np.zeros(639, np.float32), "too short"),
        (np.zeros((2, 2, 1000), np.float32), "3 dimensions"),
        (np.zeros((5, 5), np.float32), "cannot tell channels.*1-D mono or \\[channels, samples\\]"),
        (np.zeros((20, 30), np.float32), "cannot tell channels"),
        (np.zeros(1000, dtype=bool), "unsupported sample type bool"),
        (np.zeros(1000, dtype=np.complex64), "unsupported sample type complex64"),
        (np.array([None] * 1000), "unsupported sample type object"),
        (np.zeros(1000, dtype=np.int64), "no standard PCM scale"),
        (np.float32(0.5), "scalar"),
    ],
)
def test_refusals(bad, message):
    with pytest.raises(AudioError, match=message) as info:
        load_audio(bad)
    assert isinstance(info.value, ValueError)


def test_minimum_is_checked_after_resampling():
    assert load_audio(np.zeros(640, np.float32)).shape == (640,)
    assert load_audio(np.zeros(1764, np.float32), 44100).shape == (640,)
    assert load_audio(np.zeros(320, np.float32), 8000).shape == (640,)
    with pytest.raises(AudioError, match="1763 samples at 44100 Hz.*640 samples at 16000 Hz"):
        load_audio(np.zeros(1763, np.float32), 44100)
    with pytest.raises(AudioError, match="too short"):
        load_audio(np.zeros(319, np.float32), 8000)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, float("nan"), "16000", True])
def test_bad_rates(rate):
    with pytest.raises(AudioError, match="sample_rate must be a positive integer"):
        load_audio(np.zeros(16000, np.float32), rate)


def test_rate_defaults_and_integer_valued_floats():
    assert load_audio(np.zeros(8000, np.float32), None).shape == (8000,)  # None means 16 kHz
    assert load_audio(np.zeros(8000, np.float32), 8000.0).shape == (16000,)
    assert load_audio(np.zeros(8000, np.float32), np.int64(8000)).shape == (16000,)


def test_to_mono_float32_accepts_short_blocks():
    assert to_mono_float32(np.zeros(3, np.int16)).tolist() == [0.0, 0.0, 0.0]
    assert to_mono_float32(np.zeros(0, np.float32)).shape == (0,)


# ----------------------------------------------------------------------------- frames and padding


def test_duration_to_frames():
    assert [duration_to_frames(int(s * 16000)) for s in (0.3, 4, 9, 61)] == [8, 100, 225, 1525]
    assert [duration_to_frames(n) for n in (0, 1, 639, 640, 641, 1280, 1281)] == [0, 1, 1, 1, 2, 2, 3]
    assert duration_to_frames(44100, sample_rate=44100) == 25
    assert duration_to_frames(1765, sample_rate=44100) == 2
    # Exact integers: a float formula is off by one somewhere in long inputs; this is not.
    n = 10**15 * 640 + 1
    assert duration_to_frames(n) == 10**15 + 1
    with pytest.raises(AudioError):
        duration_to_frames(-1)
    with pytest.raises(AudioError):
        duration_to_frames(640.5)
    with pytest.raises(AudioError):
        duration_to_frames(640, sample_rate=0)


def test_pad_to_same_length():
    a, b = pad_to_same_length(np.ones(3, np.float32), np.ones(5, np.float32))
    assert a.tolist() == [1, 1, 1, 0, 0] and b.shape == (5,) and a.dtype == np.float32
    assert pad_to_same_length() == []
    with pytest.raises(AudioError, match="1-D"):
        pad_to_same_length(np.ones((2, 3)))


# ----------------------------------------------------------------------------- streaming resampler


def stream(resampler, x, blocks):
    out, i, k = [], 0, 0
    while i < x.shape[0]:
        n = blocks[k % len(blocks)]
        out.append(resampler.push(x[i : i + n]))
        i, k = i + n, k + 1
    out.append(resampler.flush())
    return np.concatenate(out)


@pytest.mark.parametrize("sr", [44100, 48000, 8000, 22050])
@pytest.mark.parametrize("blocks", [[160], [441], [4410], [7, 1000, 33, 5000, 1, 0, 2]])
def test_streaming_resampler_matches_one_shot(sr, blocks):
    x = (0.1 * np.random.default_rng(sr).normal(size=int(sr * 1.5) + 17)).astype(np.float32)
    ref = resampy.resample(x, sr, 16000, filter="kaiser_best")
    y = stream(Resampler(sr), x, blocks)
    assert y.dtype == np.float32
    assert y.shape == ref.shape == (int(x.shape[0] * 16000 / sr),)
    np.testing.assert_array_equal(y, ref)


def test_streaming_resampler_unusual_rate():
    sr = 44101  # gcd(44101, 16000) == 1: segments align only once per second of input
    x = (0.1 * np.random.default_rng(1).normal(size=int(sr * 2.3))).astype(np.float32)
    ref = resampy.resample(x, sr, 16000, filter="kaiser_best")
    y = stream(Resampler(sr), x, [4410, 777])
    assert y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("sr", [8000, 44100, 48000])
def test_resampler_delay_bound(sr):
    r = Resampler(sr)
    assert r.delay_samples > 0
    x = (0.1 * np.random.default_rng(2).normal(size=sr)).astype(np.float32)
    emitted = 0
    for i in range(0, x.shape[0], 333):
        emitted += r.push(x[i : i + 333]).shape[0]
        pushed = min(i + 333, x.shape[0])
        assert emitted >= int(pushed * 16000 / sr) - r.delay_samples
    assert emitted + r.flush().shape[0] == 16000


def test_resampler_is_reusable_after_flush():
    x = (0.1 * np.random.default_rng(3).normal(size=44100)).astype(np.float32)
    r = Resampler(44100)
    first = stream(r, x, [1000])
    second = stream(r, x, [2205])
    np.testing.assert_array_equal(first, second)


def test_resampler_pass_through_when_rates_are_equal():
    r = Resampler(16000)
    assert r.delay_samples == 0
    x = np.arange(1000, dtype=np.float32)
    a = r.push(x[:300])
    np.testing.assert_array_equal(a, x[:300])
    y = np.concatenate([a, r.push(x[300:]), r.flush()])
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(y, resampy.resample(x, 16000, 16000, filter="kaiser_best"))


def test_resampler_refusals():
    with pytest.raises(AudioError, match="sample_rate"):
        Resampler(0)
    r = Resampler(44100)
    with pytest.raises(AudioError, match="1-D"):
        r.push(np.zeros((2, 100), np.float32))
    with pytest.raises(AudioError, match="NaN"):
        r.push(np.array([0.0, np.nan], np.float32))
    assert r.flush().shape == (0,)


def test_resampler_without_resampy_kernel(monkeypatch, caplog):
    # A future resampy may move its kernel: the Resampler then calls resampy.resample per block.
    import resampy.interpn

    x = (0.1 * np.random.default_rng(4).normal(size=33000)).astype(np.float32)
    ref = resampy.resample(x, 22050, 16000, filter="kaiser_best")
    monkeypatch.delattr(resampy.interpn, "resample_f_s")
    with caplog.at_level("DEBUG", logger="unils"):
        r = Resampler(22050)
    assert "resampy kernel unavailable" in caplog.text
    y = stream(r, x, [4410, 123])
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6)
