import numpy as np
import pytest

from unils.smoothing import StreamingSavgol, savgol_filter

scipy_signal = pytest.importorskip("scipy.signal")


@pytest.mark.parametrize("frames", [9, 10, 57, 300])
@pytest.mark.parametrize("window, order", [(9, 3), (5, 2), (11, 4)])
def test_matches_scipy_interp_mode(frames, window, order):
    if frames < window:
        pytest.skip("scipy refuses windows longer than the input")
    x = np.random.default_rng(frames).normal(size=(frames, 6)).astype(np.float32)
    expected = scipy_signal.savgol_filter(x.astype(np.float64), window, order, axis=0, mode="interp")
    np.testing.assert_allclose(savgol_filter(x, window, order), expected, atol=1e-5)


def test_short_inputs():
    x = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    # 7 frames: the largest odd window that fits (7) with the same order
    expected = scipy_signal.savgol_filter(x.astype(np.float64), 7, 3, axis=0, mode="interp")
    np.testing.assert_allclose(savgol_filter(x), expected, atol=1e-5)
    tiny = x[:4]  # order 3 needs more than 4 frames: returned unchanged
    assert np.array_equal(savgol_filter(tiny), tiny)
    assert savgol_filter(x[:0]).shape == (0, 3)


@pytest.mark.parametrize("blocks", [[1], [3], [7], [100], [5, 1, 0, 13, 2, 40, 1, 38]])
@pytest.mark.parametrize("frames", [3, 8, 9, 10, 100])
def test_streaming_equals_offline(blocks, frames):
    x = np.random.default_rng(frames).normal(size=(frames, 4)).astype(np.float32)
    s = StreamingSavgol()
    out, i, k = [], 0, 0
    while i < frames:
        n = blocks[k % len(blocks)]
        out.append(s.push(x[i : i + n]))
        i += n
        k += 1
    out.append(s.flush())
    np.testing.assert_allclose(np.concatenate(out), savgol_filter(x), atol=1e-6)


def test_streaming_lookahead_and_bounded_memory():
    s = StreamingSavgol()
    assert s.lookahead == 4
    x = np.random.default_rng(0).normal(size=(1000, 2)).astype(np.float32)
    first = s.push(x[:9])
    assert len(first) == 5  # frames 0..4 are final once 9 frames are known
    for i in range(9, 1000):
        assert len(s.push(x[i : i + 1])) == 1
        assert s._tail.shape[0] <= 9
    assert len(s.flush()) == 4
