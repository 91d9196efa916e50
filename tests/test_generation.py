"""The window engine: planning rules, immutable state, and one loop for offline, streaming and bench."""

import dataclasses

import numpy as np
import pytest
import torch

from helpers import speech_like
from unils import MotionError
from unils.generation import (
    ChunkState,
    WindowEvent,
    expand_seeds,
    frame_count,
    pad_window,
    pad_windows,
    per_person,
    plan_windows,
    prev_clip,
    style_clip,
)
from unils.motion import Motion


def test_frame_and_window_planning():
    assert frame_count(0, 640) == 0 and frame_count(1, 640) == 1 and frame_count(640, 640) == 1
    assert frame_count(641, 640) == 2
    assert plan_windows(64000, 640, 100) == (100, 1)
    assert plan_windows(64001, 640, 100) == (101, 2)
    assert plan_windows(16000 * 9, 640, 100) == (225, 3)


def test_padding_cuts_and_zero_fills():
    seg = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(pad_window(seg, 8), [1, 2, 3, 4, 5, 0, 0, 0])
    np.testing.assert_array_equal(pad_window(seg, 3), [1, 2, 3])
    audio = np.arange(1, 11, dtype=np.float32)
    w = pad_windows(audio, 3, 4)
    assert w.shape == (3, 4) and w.dtype == torch.float32
    np.testing.assert_array_equal(w.numpy(), [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 0, 0]])
    np.testing.assert_array_equal(pad_windows(audio, 2, 4, first=1).numpy(), [[5, 6, 7, 8], [9, 10, 0, 0]])


def test_conditioning_clips():
    motion = np.random.default_rng(0).standard_normal((130, 108)).astype(np.float32)
    np.testing.assert_array_equal(style_clip(motion, 100), motion[:100])
    np.testing.assert_array_equal(prev_clip(motion, 100), motion[-100:])
    short = motion[:30]
    prev = prev_clip(Motion.from_array(short), 100)
    assert prev.shape == (100, 108)
    np.testing.assert_array_equal(prev[:70], 0)
    np.testing.assert_array_equal(prev[70:], short)
    with pytest.raises(MotionError, match="at least 100 frames"):
        style_clip(short, 100)


def test_seeds_and_per_person_values():
    assert expand_seeds(None, 3) == [None, None, None]
    assert expand_seeds(5, 3) == [5, 6, 7]
    assert expand_seeds(np.int64(2), 2) == [2, 3]
    assert expand_seeds((4, None), 2) == [4, None]
    with pytest.raises(ValueError, match="2 people but 3 seeds"):
        expand_seeds([1, 2, 3], 2)
    with pytest.raises(ValueError, match="seed must be"):
        expand_seeds("7", 1)
    clip = np.zeros((100, 108), np.float32)
    assert per_person(None, 2, "style") == [None, None]
    assert per_person(clip, 2, "style")[1] is clip
    assert per_person((clip, None), 2, "style") == [clip, None]
    with pytest.raises(ValueError, match="style: 2 people but 3 values"):
        per_person([clip, clip, clip], 2, "style")


def test_state_is_immutable_and_step_returns_a_new_one(tiny_model):
    engine = tiny_model.engine
    state = engine.start([1, 2])
    assert isinstance(state, ChunkState) and state.batch == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.prev_motion = torch.ones(1)  # type: ignore[misc]
    feats = engine.encode(pad_windows(speech_like(4.0), 1, 64000)).expand(2, -1, -1)
    motion, new = engine.step(state, feats, feats, tiny_model.options())
    assert new is not state and new.windows_done == 1 and state.windows_done == 0
    assert torch.equal(new.prev_motion, motion) and not torch.equal(state.prev_motion, motion)
    rechained = new.with_prev_motion(torch.zeros(2, 100, 108))
    assert rechained.windows_done == 1 and not torch.equal(rechained.prev_motion, new.prev_motion)


def test_style_and_prev_motion_change_the_result_and_are_per_person(tiny_model):
    audio = speech_like(4.0, seed=3)
    clip = np.random.default_rng(1).standard_normal((120, 108)).astype(np.float32)
    plain = tiny_model.generate(audio, seed=0)
    styled = tiny_model.generate(audio, seed=0, style=clip)
    chained = tiny_model.generate(audio, seed=0, prev_motion=clip)
    assert not styled.allclose(plain, atol=1e-3) and not chained.allclose(plain, atol=1e-3)
    first, second = tiny_model.generate_both(audio, speech_like(4.0, seed=4), seed=0, style=(clip, None))
    assert first.allclose(tiny_model.generate(audio, speech_like(4.0, seed=4), seed=0, style=clip), atol=1e-4)
    assert second.allclose(tiny_model.generate(speech_like(4.0, seed=4), audio, seed=1), atol=1e-4)
    batch = tiny_model.generate_batch([audio, audio], seed=0, prev_motion=[clip, None])
    assert batch[0].allclose(chained, atol=1e-4)
    assert batch[1].allclose(tiny_model.generate(audio, seed=1), atol=1e-4)


def test_bounded_lookahead_equals_all_at_once_and_reports_each_window(tiny_model):
    engine = tiny_model.engine
    a, b = speech_like(9.0, seed=1), speech_like(9.0, seed=2)  # 3 windows
    rows = [(0, 1), (1, 0)]
    events: list[WindowEvent] = []
    all_at_once = engine.run([a, b], rows, engine.start([3, 4]), tiny_model.options(), lookahead=None)
    bounded = engine.run(
        [a, b], rows, engine.start([3, 4]), tiny_model.options(), lookahead=2, on_window=events.append
    )
    assert np.array_equal(all_at_once, bounded)
    assert bounded.shape == (2, 300, 108)
    assert [e.index for e in events] == list(range(3)) and all(e.windows == 3 for e in events)
    # Encoding happens once per group of two windows.
    assert [e.encode_s > 0 for e in events] == [True, False, True]
    assert all(e.step_s > 0 for e in events)
    np.testing.assert_array_equal(torch.cat([e.motion for e in events], 1).numpy(), bounded)


def test_offline_and_streaming_share_the_engine(tiny_model):
    # The session steps the same engine object: same options, same draws.
    session = tiny_model.stream(seed=9, temperature=0.7, top_p=0.8, cfg_scale=2.0)
    assert session.engine is tiny_model.engine
    assert session.options == tiny_model.options(seed=9, temperature=0.7, top_p=0.8, cfg_scale=2.0)
    assert session.sampling == session.options.sampling(tiny_model.config)
    a, b = speech_like(5.0, seed=5), speech_like(5.0, seed=6)
    out = [session.push(a[i : i + 8000], b[i : i + 8000]) for i in range(0, a.shape[0], 8000)]
    streamed = Motion.concatenate([*[m for m in out if len(m)], session.flush()])
    offline = tiny_model.generate(a, b, seed=9, temperature=0.7, top_p=0.8, cfg_scale=2.0)
    assert streamed.allclose(offline, atol=1e-5)
