"""Savitzky-Golay smoothing along time, offline and streaming, in numpy (no scipy at run time).

Reproduces ``scipy.signal.savgol_filter(x, window_length, polyorder, axis=0, mode="interp")``, the
official post-processing (window 9, order 3): interior frames use the convolution coefficients, the
first and last ``window // 2`` frames are evaluated on a polynomial fitted to the first / last window.

The streaming form needs ``window // 2`` frames of lookahead and gives the same numbers as the
offline function for any split of the input into blocks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["savgol_coeffs", "savgol_filter", "StreamingSavgol"]


def savgol_coeffs(window: int, polyorder: int) -> np.ndarray:
    """Smoothing (derivative 0) coefficients for the centre of a window, as scipy computes them."""
    half = window // 2
    x = np.arange(-half, window - half, dtype=np.float64)
    a = x[np.newaxis, :] ** np.arange(polyorder + 1)[:, np.newaxis]  # Vandermonde [order+1, window]
    y = np.zeros(polyorder + 1)
    y[0] = 1.0
    coeffs, *_ = np.linalg.lstsq(a, y, rcond=None)
    return coeffs


def _edge_fit(segment: np.ndarray, polyorder: int, positions: np.ndarray) -> np.ndarray:
    """Fit a polynomial to ``segment`` [window, C] over 0..window-1 and evaluate at ``positions``."""
    window = segment.shape[0]
    x = np.arange(window, dtype=np.float64)
    vander = np.vander(x, polyorder + 1)
    coef, *_ = np.linalg.lstsq(vander, segment.astype(np.float64), rcond=None)
    return np.vander(positions.astype(np.float64), polyorder + 1) @ coef


def _effective_window(n: int, window: int, polyorder: int) -> int | None:
    # Short inputs: shrink to the largest odd window that fits (scipy would raise); None = leave as is.
    if n >= window:
        return window
    w = n if n % 2 == 1 else n - 1
    return w if w > polyorder else None


def savgol_filter(x: np.ndarray, window: int = 9, polyorder: int = 3) -> np.ndarray:
    """Smooth ``x`` [T, C] (or [T]) along time.

    Inputs shorter than ``window`` use the largest odd window that fits; inputs of ``polyorder + 1``
    frames or fewer are returned unchanged (no polynomial of that order can smooth them).
    """
    arr = np.asarray(x)
    squeeze = arr.ndim == 1
    data = arr[:, None] if squeeze else arr
    n = data.shape[0]
    w = _effective_window(n, window, polyorder)
    if w is None:
        return arr.astype(np.float32, copy=True)
    out = _interior(data, w, polyorder, 0, n)
    out = _with_edges(data, out, w, polyorder, start=True, end=True)
    out = out.astype(np.float32)
    return out[:, 0] if squeeze else out


def _interior(data: np.ndarray, window: int, polyorder: int, lo: int, hi: int) -> np.ndarray:
    """Convolution output for frames lo..hi-1 (edge frames are left at zero, filled later)."""
    half = window // 2
    coeffs = savgol_coeffs(window, polyorder)
    n = data.shape[0]
    out = np.zeros((hi - lo, data.shape[1]), np.float64)
    a, b = max(lo, half), min(hi, n - half)
    if b > a:
        windows = np.lib.stride_tricks.sliding_window_view(data[a - half : b + half].astype(np.float64), window, axis=0)
        out[a - lo : b - lo] = windows @ coeffs
    return out


def _with_edges(data: np.ndarray, out: np.ndarray, window: int, polyorder: int, start: bool, end: bool) -> np.ndarray:
    half = window // 2
    n = data.shape[0]
    if start:
        out[:half] = _edge_fit(data[:window], polyorder, np.arange(half))
    if end:
        out[n - half :] = _edge_fit(data[n - window :], polyorder, np.arange(window - half, window))
    return out


class StreamingSavgol:
    """Streaming Savitzky-Golay: push frames, get the frames that are final.

    A frame is final once ``lookahead`` later frames are known (its window is complete). The first
    ``window // 2`` frames come out once the first ``window`` frames are known; the last ones at
    :meth:`flush`, which applies the same end rule as :func:`savgol_filter` (including short inputs).
    Memory stays bounded: only the last ``window`` frames are kept.
    """

    def __init__(self, window: int = 9, polyorder: int = 3) -> None:
        if window % 2 != 1 or window <= polyorder:
            raise ValueError("window must be odd and larger than polyorder")
        self.window = window
        self.polyorder = polyorder
        self._coeffs = savgol_coeffs(window, polyorder)
        self.reset()

    @property
    def lookahead(self) -> int:
        """Frames that must follow a frame before it is emitted (``window // 2``)."""
        return self.window // 2

    def reset(self) -> None:
        """Forget everything pushed so far."""
        self._head: np.ndarray | None = None  # first frames until the start edge is emitted
        self._tail: np.ndarray | None = None  # last `window` frames
        self._seen = 0
        self._emitted = 0

    def push(self, frames: np.ndarray) -> np.ndarray:
        """Add frames [n, C]; return the frames that became final [m, C] (float32)."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2:
            raise ValueError(f"frames must be [n, channels], got shape {frames.shape}")
        c = frames.shape[1]
        if self._tail is None:
            self._tail = np.zeros((0, c), np.float32)
            self._head = np.zeros((0, c), np.float32)
        if frames.shape[0] == 0:
            return np.zeros((0, c), np.float32)
        half = self.lookahead
        outputs = []
        if self._seen < self.window:
            assert self._head is not None
            self._head = np.concatenate([self._head, frames[: self.window - self._seen]])
        buf = np.concatenate([self._tail, frames])
        buf_start = self._seen - self._tail.shape[0]  # absolute index of buf[0]
        self._seen += frames.shape[0]
        if self._emitted == 0 and self._seen >= self.window:
            assert self._head is not None
            outputs.append(_edge_fit(self._head[: self.window], self.polyorder, np.arange(half)))
            self._emitted = half
        # Interior frames i with i + half < seen are final.
        last = self._seen - half  # exclusive
        if self._emitted >= half and last > self._emitted:
            idx = np.arange(self._emitted, last)
            rows = np.stack([buf[i - half - buf_start : i + half + 1 - buf_start] for i in idx]).astype(np.float64)
            outputs.append(np.einsum("w,nwc->nc", self._coeffs, rows))
            self._emitted = last
        self._tail = buf[-self.window :]
        if not outputs:
            return np.zeros((0, c), np.float32)
        return np.concatenate(outputs).astype(np.float32)

    def flush(self) -> np.ndarray:
        """Return the remaining frames, smoothed as the offline filter ends a sequence; then reset."""
        if self._tail is None:
            return np.zeros((0, 0), np.float32)
        n = self._seen
        if n < self.window:
            # Never emitted anything: the whole (short) input goes through the offline rule.
            assert self._head is not None
            out = savgol_filter(self._head, self.window, self.polyorder).reshape(self._head.shape)
        else:
            out = _edge_fit(self._tail, self.polyorder, np.arange(self.window - self.lookahead, self.window))
        self.reset()
        return out.astype(np.float32)
