import pickle

import numpy as np
import pytest
import torch

from unils import MotionError
from unils.smoothing import StreamingSavgol, effective_window, savgol_coeffs, savgol_filter

scipy_signal = pytest.importorskip("scipy.signal")

PAIRS = [(9, 3), (5, 2), (11, 4), (3, 0), (7, 6), (21, 5)]


def _scipy(x, window, order):
    return scipy_signal.savgol_filter(x, window, order, axis=0, mode="interp")


@pytest.mark.parametrize("frames", [9, 10, 21, 57, 300])
@pytest.mark.parametrize("window, order", PAIRS)
def test_matches_scipy_interp_mode(frames, window, order):
    if frames < window:
        pytest.skip("covered by the short-input tests")
    x = np.random.default_rng(frames * 100 + window).normal(size=(frames, 6))
    np.testing.assert_allclose(savgol_filter(x, window, order), _scipy(x, window, order), rtol=0, atol=1e-9)
    x32 = x.astype(np.float32)
    out32 = savgol_filter(x32, window, order)
    assert out32.dtype == np.float32
    # unils computes in float64 and rounds once; scipy computes float32 input in float32, whose
    # edge polyfit is off by up to ~1e-2 for high orders, so compare with its float64 result.
    np.testing.assert_allclose(out32, _scipy(x32.astype(np.float64), window, order), rtol=0, atol=1e-6)
    if (window, order) == (9, 3):
        np.testing.assert_allclose(out32, _scipy(x32, window, order), rtol=0, atol=1e-5)


def test_defaults_are_the_official_post_processing():
    x = np.random.default_rng(1).normal(size=(100, 108)).astype(np.float32)
    expected = _scipy(x.astype(np.float64), 9, 3)
    np.testing.assert_allclose(savgol_filter(x), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(savgol_coeffs(), scipy_signal.savgol_coeffs(9, 3), rtol=0, atol=1e-14)


def test_polynomials_are_preserved_and_edges_are_fits():
    t = np.arange(30, dtype=np.float64)
    cubic = (0.01 * t**3 - 0.2 * t**2 + t - 3)[:, None]
    np.testing.assert_allclose(savgol_filter(cubic), cubic, atol=1e-9)
    # An outlier in the first window moves the first frames (edge fit), not the far interior.
    spike = np.zeros((30, 1))
    spike[1] = 1.0
    out = savgol_filter(spike)
    assert out[0, 0] != 0 and out[4, 0] != 0 and np.all(out[6:] == 0)


def test_shapes_and_dtypes():
    x = np.random.default_rng(2).normal(size=(40, 3, 2))
    out = savgol_filter(x)
    assert out.shape == (40, 3, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out, _scipy(x, 9, 3), atol=1e-9)
    one_d = x[:, 0, 0]
    np.testing.assert_allclose(savgol_filter(one_d), _scipy(one_d, 9, 3), atol=1e-9)
    ints = np.arange(20)[:, None] ** 2
    assert savgol_filter(ints).dtype == np.float64
    np.testing.assert_allclose(savgol_filter(torch.from_numpy(x)), out)
    x_copy = x.copy()
    savgol_filter(x)
    assert np.array_equal(x, x_copy)  # input untouched


def test_parameter_and_input_errors():
    for window, order in [(8, 3), (0, 0), (-3, 1), (5, 5), (5, -1)]:
        with pytest.raises(ValueError):
            savgol_filter(np.zeros((20, 2)), window, order)
        with pytest.raises(ValueError):
            StreamingSavgol(window, order)
    with pytest.raises(TypeError):
        savgol_filter(np.zeros((20, 2)), 9.0, 3)
    with pytest.raises(MotionError):
        savgol_filter(np.float64(1.0))
    with pytest.raises(MotionError):
        savgol_filter(np.zeros((20, 2), complex))


# ---------------------------------------------------------------------- short inputs


@pytest.mark.parametrize(
    "frames, window, order, used",
    [
        (100, 9, 3, 9),
        (9, 9, 3, 9),
        (8, 9, 3, 7),
        (7, 9, 3, 7),
        (6, 9, 3, 5),
        (5, 9, 3, 5),
        (4, 9, 3, 1),
        (1, 9, 3, 1),
        (0, 9, 3, 1),
        (4, 5, 2, 1),  # window 3 would fit order 2 exactly: no smoothing
        (6, 11, 2, 5),
        (2, 3, 0, 1),
    ],
)
def test_effective_window(frames, window, order, used):
    assert effective_window(frames, window, order) == used


@pytest.mark.parametrize("frames", [5, 6, 7, 8])
def test_short_inputs_use_the_largest_odd_window_that_fits(frames):
    x = np.random.default_rng(frames).normal(size=(frames, 3))
    with pytest.raises(ValueError):
        _scipy(x, 9, 3)  # scipy refuses, unils falls back
    w = frames if frames % 2 else frames - 1
    np.testing.assert_allclose(savgol_filter(x), _scipy(x, w, 3), rtol=0, atol=1e-9)


@pytest.mark.parametrize("frames", [0, 1, 2, 3, 4])
def test_too_short_inputs_are_returned_unchanged(frames):
    x = np.random.default_rng(frames).normal(size=(frames, 3)).astype(np.float32)
    out = savgol_filter(x)
    assert out.shape == (frames, 3) and out.dtype == np.float32
    assert np.array_equal(out, x) and (frames == 0 or out is not x)


# ---------------------------------------------------------------------- streaming


def _stream(x, sizes, window=9, order=3):
    s = StreamingSavgol(window, order)
    out, i, k = [s.push(x[:0])], 0, 0  # an empty first push: the stream learns C even if no frame comes
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(s.push(x[i : i + n]))
        i += n
        k += 1
    out.append(s.flush())
    assert s.pending == 0
    return np.concatenate(out)


UNEVEN = [5, 1, 0, 13, 2, 40, 1, 38]


@pytest.mark.parametrize("sizes", [[1], [3], [7], [100], UNEVEN], ids=["1", "3", "7", "100", "uneven"])
@pytest.mark.parametrize("frames", [0, 1, 3, 4, 5, 8, 9, 10, 17, 100, 257])
def test_streaming_equals_offline_bitwise(sizes, frames):
    x = np.random.default_rng(frames).normal(size=(frames, 5)).astype(np.float32)
    out = _stream(x, sizes)
    expected = savgol_filter(x)
    assert out.shape == expected.shape and out.dtype == np.float32
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("window, order", [(5, 2), (11, 4), (3, 0), (1, 0)])
@pytest.mark.parametrize("sizes", [[1], [4], UNEVEN], ids=["1", "4", "uneven"])
def test_streaming_equals_offline_other_windows(window, order, sizes):
    for frames in (2, window - 1, window, window + 1, 63):
        x = np.random.default_rng(frames).normal(size=(max(frames, 0), 2))
        out = _stream(x, sizes, window, order)
        assert out.dtype == np.float64 and np.array_equal(out, savgol_filter(x, window, order))


def test_streaming_random_splits_match_scipy():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 108))
    cuts = np.sort(rng.choice(np.arange(1, 300), size=30, replace=False))
    s = StreamingSavgol()
    out = np.concatenate([s.push(b) for b in np.split(x, cuts)] + [s.flush()])
    np.testing.assert_allclose(out, _scipy(x, 9, 3), rtol=0, atol=1e-9)


def test_streaming_latency_and_bounded_memory():
    s = StreamingSavgol()
    assert s.lookahead == 4 and s.window == 9 and s.polyorder == 3
    x = np.random.default_rng(0).normal(size=(1000, 2)).astype(np.float32)
    assert len(s.push(x[:8])) == 0 and s.pending == 8
    assert len(s.push(x[8:9])) == 5  # frames 0..4 are final once 9 frames are known
    state_bytes = []
    for i in range(9, 1000):
        assert len(s.push(x[i : i + 1])) == 1  # steady state: one in, one out, 4 frames behind
        assert s.pending == s.lookahead
        if i in (20, 999):
            state_bytes.append(len(pickle.dumps(s)))
    # The state does not grow with the stream (980 more frames would add ~15 kB; counters a few bytes).
    assert abs(state_bytes[1] - state_bytes[0]) <= 16
    assert len(s.push(x[:0])) == 0 and len(s.push([])) == 0
    assert len(s.flush()) == 4 and s.pending == 0


def test_streaming_state_handling():
    x = np.random.default_rng(3).normal(size=(30, 4)).astype(np.float32)
    s = StreamingSavgol()
    assert s.flush().shape == (0, 0)  # nothing pushed
    s.push(x[:12])
    s.reset()
    assert s.pending == 0
    first = np.concatenate([s.push(x), s.flush()])
    # flush resets: the same object serves a second, independent sequence
    second = np.concatenate([s.push(x[:20]), s.flush()])
    assert np.array_equal(first, savgol_filter(x)) and np.array_equal(second, savgol_filter(x[:20]))
    assert s.push(np.zeros((0, 4), np.float32)).shape == (0, 4)
    with pytest.raises(MotionError, match="channels"):
        s.push(np.zeros((3, 5), np.float32))
    with pytest.raises(MotionError, match=r"\[frames, channels\]"):
        s.push(np.zeros(4, np.float32))
    assert np.array_equal(np.concatenate([s.push(torch.from_numpy(x)), s.flush()]), savgol_filter(x))
