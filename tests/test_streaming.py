"""Streaming sessions: equal to offline generation, independent across threads, bounded state."""

import threading

import numpy as np
import pytest

from helpers import speech_like
from unils import Motion, StreamError


def run_stream(session, audio, partner=None, blocks=(320,)):
    out, i, k = [], 0, 0
    while i < audio.shape[0]:
        n = blocks[k % len(blocks)]
        args = (audio[i : i + n],) + ((partner[i : i + n],) if partner is not None else ())
        out.append(session.push(*args))
        i, k = i + n, k + 1
    out.append(session.flush())
    if isinstance(out[0], tuple):
        return tuple(Motion.concatenate([o[j] for o in out]) for j in range(2))
    return Motion.concatenate(out)


@pytest.mark.parametrize("blocks", [(160,), (320,), (16000,), (5000, 17, 640, 12345, 1)])
def test_stream_equals_generate(tiny_model, blocks):
    a, b = speech_like(9.3, seed=1), speech_like(9.3, seed=2)
    offline = tiny_model.generate(a, b, seed=4)
    with tiny_model.stream(seed=4) as session:
        streamed = run_stream(session, a, b, blocks)
    assert len(streamed) == len(offline) == 233
    assert streamed.allclose(offline, atol=1e-5)


def test_stream_without_partner_and_without_smoothing(tiny_model):
    a = speech_like(4.5, seed=3)
    offline = tiny_model.generate(a, seed=2, smooth=False)
    streamed = run_stream(tiny_model.stream(partner=False, seed=2, smooth=False), a, blocks=(999,))
    assert streamed.allclose(offline, atol=1e-5)


def test_stream_both_people(tiny_model):
    a, b = speech_like(5.0, seed=1), speech_like(5.0, seed=2)
    first, second = tiny_model.generate_both(a, b, seed=10)
    s1, s2 = run_stream(tiny_model.stream(both=True, seed=10), a, b, blocks=(4000,))
    assert s1.allclose(first, atol=1e-5) and s2.allclose(second, atol=1e-5)


def test_frames_arrive_as_soon_as_their_window_is_complete(tiny_model):
    a, b = speech_like(10.0, seed=1), speech_like(10.0, seed=2)
    session = tiny_model.stream(seed=0)
    got = session.push(a[:63999], b[:63999])
    assert len(got) == 0
    got = session.push(a[63999:64000], b[63999:64000])
    assert len(got) == 96  # 100 frames, 4 held back for the smoothing lookahead
    assert session.algorithmic_latency_s == pytest.approx(4.16)
    stats = session.stats()
    assert stats.steps == 1 and stats.step_p50_s > 0 and stats.real_time_factor > 0


def test_low_latency_mode(tiny_model):
    a, b = speech_like(6.0, seed=1), speech_like(6.0, seed=2)
    session = tiny_model.stream(seed=0, hop_frames=10)
    assert session.algorithmic_latency_s == pytest.approx(0.56)
    first = session.push(a[: 10 * 640], b[: 10 * 640])
    assert len(first) == 6  # 10 committed, 4 held for smoothing
    rest = run_stream(session, a[6400:], b[6400:], blocks=(640,))
    assert len(first) + len(rest) == 150
    assert session.stats().steps == 15


def test_resampled_stream_matches_offline(tiny_model):
    a = speech_like(4.2, seed=5, sr=8000)
    offline = tiny_model.generate(a, sample_rate=8000, seed=1)
    streamed = run_stream(tiny_model.stream(partner=False, sample_rate=8000, seed=1), a, blocks=(800,))
    assert len(streamed) == len(offline) == 105
    assert streamed.allclose(offline, atol=1e-3)


def test_sessions_in_threads_do_not_interfere(tiny_model):
    inputs = [(speech_like(5.0, seed=i), speech_like(5.0, seed=10 + i)) for i in range(4)]
    expected = [tiny_model.generate(a, b, seed=i) for i, (a, b) in enumerate(inputs)]
    results = [None] * 4

    def worker(i):
        a, b = inputs[i]
        results[i] = run_stream(tiny_model.stream(seed=i), a, b, blocks=(321 + 100 * i,))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert got.allclose(want, atol=1e-5)


def test_state_stays_bounded_on_long_streams(tiny_model):
    session = tiny_model.stream(partner=False, seed=0, cfg_scale=1.0)
    block = speech_like(1.0, seed=0)
    for _ in range(40):
        session.push(block)
        assert session.buffered_samples <= 64000
    assert session.frames_emitted == 40 * 25 - 4


def test_lifecycle_and_misuse(tiny_model):
    a = speech_like(1.0)
    session = tiny_model.stream(seed=0)
    with pytest.raises(ValueError, match="partner_audio"):
        session.push(a)
    solo = tiny_model.stream(partner=False)
    with pytest.raises(ValueError, match="partner=False"):
        solo.push(a, a)
    with pytest.raises(ValueError, match="NaN"):
        solo.push(np.full(100, np.nan, np.float32))
    with pytest.raises(ValueError, match="path"):
        solo.push("file.wav")
    solo.push(a)
    assert len(solo.flush()) == 25
    with pytest.raises(StreamError, match="reset"):
        solo.push(a)
    solo.reset()
    assert len(solo.push(a)) == 0 and len(solo.flush()) == 25
    solo.close()
    with pytest.raises(StreamError, match="closed"):
        solo.push(a)
    with pytest.raises(ValueError, match="hop_frames"):
        tiny_model.stream(hop_frames=0)
    with pytest.raises(ValueError, match="both"):
        tiny_model.stream(both=True, partner=False)
