"""Savitzky-Golay smoothing along time, offline and streaming, in numpy (no scipy at run time).

[`savgol_filter`][unils.smoothing.savgol_filter] reproduces ``scipy.signal.savgol_filter(x, window_length,
polyorder, axis=0, mode="interp")``, the official post-processing (window 9, order 3, derivative 0): interior
frames use the convolution coefficients, the first and last ``window // 2`` frames are evaluated on the
polynomial least-squares fit to the first / last ``window`` frames.

Inputs shorter than the window (which scipy refuses in interp mode) are handled by
[`effective_window`][unils.smoothing.effective_window]: the largest odd window that fits is used, and inputs
too short for any smoothing are returned unchanged.

[`StreamingSavgol`][unils.smoothing.StreamingSavgol] needs ``window // 2`` frames of lookahead and returns
*bitwise* the same numbers as [`savgol_filter`][unils.smoothing.savgol_filter] for any split of the input
into blocks: both run the same elementwise operations, in the same order, on the same frames.
"""

from __future__ import annotations

import operator
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import MotionError

__all__ = [
    "DEFAULT_WINDOW",
    "DEFAULT_POLYORDER",
    "savgol_coeffs",
    "effective_window",
    "savgol_filter",
    "StreamingSavgol",
]

#: Window length of the official post-processing (frames).
DEFAULT_WINDOW = 9
#: Polynomial order of the official post-processing.
DEFAULT_POLYORDER = 3


def _check_params(window: Any, polyorder: Any) -> tuple[int, int]:
    if isinstance(window, bool) or isinstance(polyorder, bool):
        raise TypeError("window and polyorder must be integers, not bool")
    try:
        w, p = operator.index(window), operator.index(polyorder)
    except TypeError as exc:
        raise TypeError(f"window and polyorder must be integers, got {window!r} and {polyorder!r}") from exc
    if w < 1 or w % 2 != 1:
        raise ValueError(f"window must be a positive odd number of frames, got {w}")
    if not 0 <= p < w:
        raise ValueError(f"polyorder must be in [0, window), got polyorder={p} with window={w}")
    return w, p


@lru_cache(maxsize=64)
def _projection(window: int, polyorder: int) -> np.ndarray:
    """Hat matrix [window, window] of the least-squares polynomial fit over one window.

    Row ``i`` maps the window's samples to the fitted polynomial's value at position ``i``: the middle
    row is the smoothing kernel, the first / last ``window // 2`` rows are scipy's interp-mode edges.
    Cached (and read-only) so that offline and streaming code use the very same numbers.
    """
    half = window // 2
    # Centred, scaled abscissa: the fit (hence the hat matrix) is the same, the Vandermonde
    # matrix is far better conditioned for long windows.
    t = (np.arange(window, dtype=np.float64) - half) / max(half, 1)
    q, _ = np.linalg.qr(np.vander(t, polyorder + 1, increasing=True))
    hat = q @ q.T
    hat.setflags(write=False)
    return hat


def savgol_coeffs(window: int = DEFAULT_WINDOW, polyorder: int = DEFAULT_POLYORDER) -> np.ndarray:
    """Smoothing (derivative 0) coefficients of a window's centre frame.

    Args:
        window: odd window length in frames.
        polyorder: order of the fitted polynomial, ``< window``.

    Returns:
        float64 array [window]; equal (to ~1e-15) to ``scipy.signal.savgol_coeffs(window, polyorder)``.
        The kernel is symmetric, so correlation and convolution order coincide.
    """
    w, p = _check_params(window, polyorder)
    return _projection(w, p)[w // 2].copy()


def effective_window(
    num_frames: int, window: int = DEFAULT_WINDOW, polyorder: int = DEFAULT_POLYORDER
) -> int:
    """Window that [`savgol_filter`][unils.smoothing.savgol_filter] actually uses for an input of
    ``num_frames`` frames.

    * ``num_frames >= window``: ``window`` (exactly scipy's interp mode).
    * shorter inputs, which scipy refuses in interp mode: the largest odd window ``<= num_frames``,
      provided it is at least ``polyorder + 2``; e.g. 7 frames with (9, 3) use a window of 7,
      8 frames also 7, 5 or 6 frames use 5.
    * otherwise 1, meaning "returned unchanged": a window of ``polyorder + 1`` frames or fewer is
      fitted exactly by the polynomial and cannot smooth (with (9, 3): inputs of 0 to 4 frames).

    Args:
        num_frames: length T of the input along time.
        window: requested odd window length.
        polyorder: polynomial order, ``< window``.

    Returns:
        The odd window length used, 1 when the input is returned unchanged.
    """
    w, p = _check_params(window, polyorder)
    n = operator.index(num_frames)
    if n >= w:
        return w
    short = n if n % 2 == 1 else n - 1
    return short if short >= p + 2 else 1


def _correlate(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Valid correlation along axis 0: out[t] = sum_j kernel[j] * x[t + j].

    Written as one multiply-add per tap (not matmul/BLAS) so that each output value is computed by the
    same floating-point operations whatever the length of ``x``: streaming == offline, bitwise.
    """
    m = x.shape[0] - kernel.shape[0] + 1
    if m <= 0:
        return np.zeros((0, x.shape[1]), np.float64)
    out = kernel[0] * x[0:m]
    for j in range(1, kernel.shape[0]):
        out += kernel[j] * x[j : j + m]
    return out


def _apply_rows(rows: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """out[i] = sum_j rows[i, j] * segment[j], tap by tap like [`_correlate`][unils.smoothing._correlate]."""
    out = rows[:, 0:1] * segment[0]
    for j in range(1, rows.shape[1]):
        out += rows[:, j : j + 1] * segment[j]
    return out


def _smooth_2d(x: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Smooth float64 [T, C] along axis 0 (parameters already checked)."""
    n = x.shape[0]
    w = effective_window(n, window, polyorder)
    if w == 1:
        return x.copy()
    hat = _projection(w, polyorder)
    half = w // 2
    out = np.empty_like(x)
    out[half : n - half] = _correlate(x, hat[half])
    out[:half] = _apply_rows(hat[:half], x[:w])
    out[n - half :] = _apply_rows(hat[w - half :], x[n - w :])
    return out


def _output_dtype(dtype: np.dtype) -> np.dtype:
    # scipy keeps float32 and float64, and computes everything else in float64.
    return dtype if dtype in (np.dtype(np.float32), np.dtype(np.float64)) else np.dtype(np.float64)


def _as_numeric(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise MotionError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
    return arr


def savgol_filter(x: Any, window: int = DEFAULT_WINDOW, polyorder: int = DEFAULT_POLYORDER) -> np.ndarray:
    """Savitzky-Golay smoothing along time (axis 0), as scipy's ``mode="interp"``.

    Equals ``scipy.signal.savgol_filter(x, window, polyorder, axis=0, mode="interp")`` (to float rounding:
    computed in float64) whenever ``len(x) >= window``. Shorter inputs, which scipy refuses, use the window
    given by [`effective_window`][unils.smoothing.effective_window]: the largest odd window that fits, or no
    smoothing at all (an unchanged copy) when fewer than ``polyorder + 2`` frames remain.

    Args:
        x: [T] or [T, ...] array (numpy or torch); time is axis 0, every other axis is a channel.
        window: odd window length in frames (9 in the official post-processing).
        polyorder: order of the local polynomial, ``< window`` (3 in the official post-processing).

    Returns:
        Smoothed array of the same shape; float32 for float32 input, float64 otherwise.

    Raises:
        MotionError: ``x`` is 0-d or not real numeric.
        ValueError: ``window`` is not a positive odd integer, or ``polyorder`` not in ``[0, window)``.
    """
    w, p = _check_params(window, polyorder)
    arr = _as_numeric(x, "savgol_filter input")
    if arr.ndim == 0:
        raise MotionError("savgol_filter needs at least one (time) axis, got a scalar")
    flat = arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:], dtype=np.int64)))
    out = _smooth_2d(flat.astype(np.float64), w, p)
    return out.astype(_output_dtype(arr.dtype)).reshape(arr.shape)


class StreamingSavgol:
    """Streaming [`savgol_filter`][unils.smoothing.savgol_filter]: push frames, get back the frames that
    became final.

    Frame ``t`` is final once frame ``t + lookahead`` has been pushed (its window is complete). The first
    ``window // 2`` frames come out together once ``window`` frames are known; the last ``window // 2`` at
    [`flush`][unils.smoothing.StreamingSavgol.flush], which is when the end of the sequence (hence which
    frames are edge frames, and the short-input rule of
    [`effective_window`][unils.smoothing.effective_window]) becomes known.

    Concatenating every [`push`][unils.smoothing.StreamingSavgol.push] result and the
    [`flush`][unils.smoothing.StreamingSavgol.flush] result gives bitwise the output of
    [`savgol_filter`][unils.smoothing.savgol_filter] on the whole input, whatever the block sizes (empty
    blocks included). Memory is bounded: between calls only the last ``window`` frames are kept.

    Args:
        window: odd window length in frames.
        polyorder: polynomial order, ``< window``.

    Example:
        ```python
        s = StreamingSavgol()
        parts = [s.push(block) for block in blocks]  # blocks: [n, C] arrays as they arrive
        smoothed = np.concatenate(parts + [s.flush()])
        ```
    """

    def __init__(self, window: int = DEFAULT_WINDOW, polyorder: int = DEFAULT_POLYORDER) -> None:
        self._window, self._polyorder = _check_params(window, polyorder)
        self.reset()

    @property
    def window(self) -> int:
        """Window length in frames."""
        return self._window

    @property
    def polyorder(self) -> int:
        """Polynomial order."""
        return self._polyorder

    @property
    def lookahead(self) -> int:
        """Frames that must follow a frame before it is emitted (``window // 2``), in steady state."""
        return self._window // 2

    @property
    def pending(self) -> int:
        """Frames pushed but not returned yet (they come out of later pushes or
        [`flush`][unils.smoothing.StreamingSavgol.flush])."""
        return self._seen - self._emitted

    def reset(self) -> None:
        """Forget everything pushed so far; the next push starts a new sequence."""
        self._buf: np.ndarray | None = None  # float64 [<= window, C] (all frames until the first emit)
        self._channels: int | None = None
        self._dtype: np.dtype | None = None
        self._seen = 0
        self._emitted = 0

    def _empty(self) -> np.ndarray:
        # Not `self._dtype or ...`: a numpy dtype is falsy (it has no fields).
        dtype = np.float32 if self._dtype is None else self._dtype
        return np.zeros((0, 0 if self._channels is None else self._channels), dtype)

    def push(self, frames: Any) -> np.ndarray:
        """Add frames and return those that became final.

        Args:
            frames: [n, C] array (numpy or torch), ``n`` may be 0. ``C`` is fixed by the first push;
                the output dtype too (float32 for float32 input, float64 otherwise).

        Returns:
            [m, C] smoothed frames that follow the ones returned before (``m`` may be 0).

        Raises:
            MotionError: ``frames`` is not 2-D, or its channel count differs from earlier pushes.
        """
        arr = _as_numeric(frames, "StreamingSavgol.push frames")
        if arr.ndim == 1 and arr.shape[0] == 0:
            return self._empty()
        if arr.ndim != 2:
            raise MotionError(f"StreamingSavgol.push expects [frames, channels], got shape {list(arr.shape)}")
        if self._channels is None:
            self._channels, self._dtype = arr.shape[1], _output_dtype(arr.dtype)
        elif arr.shape[1] != self._channels:
            raise MotionError(
                f"StreamingSavgol.push got {arr.shape[1]} channels, earlier pushes had {self._channels}"
            )
        if arr.shape[0] == 0:
            return self._empty()

        x = arr.astype(np.float64)
        buf = x if self._buf is None else np.concatenate([self._buf, x])
        buf_start = self._seen - (0 if self._buf is None else self._buf.shape[0])  # absolute index of buf[0]
        self._seen += x.shape[0]
        w, half = self._window, self.lookahead
        outputs = []
        if self._seen >= w:
            hat = _projection(w, self._polyorder)
            if self._emitted == 0:
                # buf still holds every frame since the start (nothing was dropped before this point).
                outputs.append(_apply_rows(hat[:half], buf[:w]))
                self._emitted = half
            # Frames emitted..seen-half-1 are interior: their whole window is in buf.
            first = self._emitted - half - buf_start
            outputs.append(_correlate(buf[first:], hat[half]))
            self._emitted = self._seen - half
            # The end edge at flush needs the last `window` frames; interior frames need less.
            buf = buf[-w:].copy()
        self._buf = buf
        if not outputs:
            return self._empty()
        return np.concatenate(outputs).astype(self._dtype)

    def flush(self) -> np.ndarray:
        """End the sequence: return the remaining frames, then
        [`reset`][unils.smoothing.StreamingSavgol.reset].

        Returns:
            [pending, C] frames smoothed as [`savgol_filter`][unils.smoothing.savgol_filter] ends a sequence;
            for a sequence shorter than ``window`` this is the whole (short) input, smoothed with
            [`effective_window`][unils.smoothing.effective_window].
        """
        if self._buf is None:
            out = self._empty()
        elif self._seen < self._window:
            # Nothing was emitted: the whole sequence is in buf, so run exactly the offline code.
            out = _smooth_2d(self._buf, self._window, self._polyorder).astype(self._dtype)
        else:
            w, half = self._window, self.lookahead
            out = _apply_rows(_projection(w, self._polyorder)[w - half :], self._buf[-w:]).astype(self._dtype)
        self.reset()
        return out
