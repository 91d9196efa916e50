"""Resampling with resampy's ``kaiser_best`` filter: the rate checks, the one-shot output length and the
streaming [`Resampler`][unils.resample.Resampler], whose output is bit-identical to a one-shot
``resampy.resample``.

[`unils.audio`][unils.audio] builds on this module (``from unils.audio import Resampler`` keeps working).
"""

from __future__ import annotations

import logging
import math
import numbers

import numpy as np

from .config import SAMPLE_RATE
from .errors import AudioError

__all__ = ["Resampler"]

logger = logging.getLogger("unils")

#: The resampy filter every resampling in unils uses, offline and streaming alike.
RESAMPLE_FILTER = "kaiser_best"


def check_rate(sample_rate: object, name: str, what: str = "sample_rate") -> int:
    """Return ``sample_rate`` as a positive int, accepting integer-valued floats (``16000.0``)."""
    bad = AudioError(f"{name}: {what} must be a positive integer number of Hz, got {sample_rate!r}")
    # bool is an int and numeric strings convert to float; neither is a plausible rate.
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise bad
    rate = float(sample_rate)
    if not math.isfinite(rate) or rate <= 0 or rate != int(rate):
        raise bad
    return int(rate)


def pcm_to_float32(arr: np.ndarray, name: str) -> np.ndarray:
    """Convert any supported sample type to float32, scaling integer PCM to [-1, 1]."""
    kind = arr.dtype.kind
    if kind == "f":
        return arr.astype(np.float32, copy=False)
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / np.float32(32768.0)
    if arr.dtype == np.int32:
        # float64 first: float32 cannot hold every 32-bit value and the scale would round twice.
        return (arr.astype(np.float64) / 2.0**31).astype(np.float32)
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - np.float32(128.0)) / np.float32(128.0)
    if arr.dtype == np.int8:
        return arr.astype(np.float32) / np.float32(128.0)
    if kind in "iu":
        # int64 and friends have no PCM convention: scaling would be a guess, not scaling is wrong.
        raise AudioError(
            f"{name}: integer samples of type {arr.dtype} have no standard PCM scale; pass int16, int32 "
            "or uint8 PCM, or float samples in [-1, 1]"
        )
    raise AudioError(
        f"{name}: unsupported sample type {arr.dtype}; pass float samples in [-1, 1] or int16/int32/uint8 PCM"
    )


def resampled_length(num_samples: int, orig_rate: int, target_rate: int) -> int:
    """Output length of ``resampy.resample`` (its exact formula, so that checks agree with it)."""
    if orig_rate == target_rate:
        return num_samples
    return int(num_samples * float(target_rate) / float(orig_rate))


class _Kernel:
    """resampy's ``kaiser_best`` filter prepared once for a rate pair, evaluated at chosen outputs.

    ``resampy.resample`` rebuilds the scaled filter and its differences (400k taps) on every call, about 8 ms,
    which would dominate a stream pushed in 10 ms blocks. This replicates its setup once and calls the same
    compiled kernel, so each output is computed exactly as ``resampy.resample`` computes it. Without that
    kernel (a future resampy) [`create`][unils.resample._Kernel.create] returns None and the
    [`Resampler`][unils.resample.Resampler] calls ``resampy.resample`` instead.
    """

    def __init__(self, orig_rate: int, target_rate: int) -> None:
        from resampy.filters import get_filter
        from resampy.interpn import resample_f_s

        self._run = resample_f_s
        interp_win, self.precision, _ = get_filter(RESAMPLE_FILTER)
        ratio = float(target_rate) / orig_rate
        # As in resampy.resample: scale the filter when downsampling, then take its differences.
        self.win = ratio * interp_win if ratio < 1 else interp_win
        self.delta = np.diff(self.win, append=self.win[-1])
        self.scale = min(1.0, ratio)
        self.time_increment = 1.0 / ratio
        #: Input samples on each side of an output time that the filter reads (per the kernel loop).
        self.reach = self.win.shape[0] // int(self.scale * self.precision) + 1

    @classmethod
    def create(cls, orig_rate: int, target_rate: int) -> _Kernel | None:
        try:
            return cls(orig_rate, target_rate)
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            logger.debug("resampy kernel unavailable (%s); streaming uses resampy.resample per block", exc)
            return None

    def __call__(self, seg: np.ndarray, start: int, lo: int, hi: int) -> np.ndarray:
        """Outputs ``lo..hi-1`` of a one-shot resample, from ``seg`` = input samples ``start`` on.

        The output times are the one-shot ones (``n * time_increment``) minus ``start``; that
        subtraction of an integer is exact in floating point, so every output is bit-identical to
        the one-shot value as long as ``seg`` covers the filter's reach.
        """
        t_out = np.arange(lo, hi) * self.time_increment - start
        # The compiled loop does not check bounds: never let it read outside the segment.
        if hi > lo and (t_out[0] < 0 or t_out[-1] >= seg.shape[0]):
            raise RuntimeError(
                f"internal error: outputs {lo}..{hi} outside input {start}..{start + seg.shape[0]}"
            )
        y = np.zeros(hi - lo, seg.dtype)
        self._run(seg, t_out, self.win, self.delta, self.precision, self.scale, y)
        return y


class Resampler:
    """Resample a stream given block by block (blocks of any size) to ``target_rate``.

    resampy has no streaming mode, so each [`push`][unils.resample.Resampler.push] evaluates resampy's
    ``kaiser_best`` filter on a segment of buffered input that covers the new output plus a margin wider than
    the filter on both sides, and returns only outputs whose filter support lies inside the samples received
    so far. Each output is computed from the same samples with the same weights, in the same order, as in a
    one-shot ``resampy.resample(x, orig_rate, target_rate, filter="kaiser_best")``: the concatenated output of
    all pushes and [`flush`][unils.resample.Resampler.flush] has that call's length and bit-identical values.
    (Should resampy's compiled kernel become unreachable, segments aligned on the output grid go through
    ``resampy.resample`` instead: about 8 ms more per push, outputs within 1e-7.)

    Equal rates pass blocks through unchanged, with no delay.

    Args:
        orig_rate: rate of the pushed samples in Hz.
        target_rate: rate of the output in Hz.

    Raises:
        AudioError: a non-positive or fractional rate.
    """

    def __init__(self, orig_rate: int, target_rate: int = SAMPLE_RATE) -> None:
        self.orig_rate = check_rate(orig_rate, "Resampler")
        self.target_rate = check_rate(target_rate, "Resampler")
        self._passthrough = self.orig_rate == self.target_rate
        self._step = self.orig_rate // math.gcd(self.orig_rate, self.target_rate)
        self._kernel = None if self._passthrough else _Kernel.create(self.orig_rate, self.target_rate)
        if self._passthrough:
            self._margin = 0
        else:
            if self._kernel is not None:
                reach = self._kernel.reach
            else:
                # kaiser_best spans 50 zero crossings per side (resampy 0.4); 64 leaves room.
                reach = math.ceil(64 / min(1.0, self.target_rate / self.orig_rate))
            # Two spare samples keep the bound safe whichever way float rounding puts an output time.
            self._margin = reach + 2
        self.reset()

    def reset(self) -> None:
        """Forget all input: the next push starts a new stream."""
        self._buf = np.zeros(0, np.float32)  # input samples from index self._buf_start on
        self._buf_start = 0
        self._in_total = 0
        self._out_total = 0

    @property
    def delay_samples(self) -> int:
        """Most output samples held back until more input (or [`flush`][unils.resample.Resampler.flush])
        arrives; 0 when passing through.

        After pushing ``n`` samples in total, at least ``int(n * target_rate / orig_rate) - delay_samples``
        output samples have been returned: 51 samples (3.2 ms) from 44.1 or 48 kHz, 106 (6.6 ms) from 8 kHz.
        """
        return -(-self._margin * self.target_rate // self.orig_rate)

    def output_after(self, num_samples: int) -> int:
        """Output samples a stream has returned once ``num_samples`` input samples were pushed in total
        (before [`flush`][unils.resample.Resampler.flush]), however they were split into blocks."""
        if self._passthrough:
            return int(num_samples)
        return max(0, int(num_samples) - self._margin) * self.target_rate // self.orig_rate

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add the next input samples and return the output samples that became final.

        Args:
            block: 1-D float samples at ``orig_rate`` (any length, including 0).

        Returns:
            1-D float32 samples at ``target_rate`` (possibly empty).

        Raises:
            AudioError: a block that is not 1-D or has NaN/inf samples.
        """
        x = np.asarray(block)
        if x.ndim != 1:
            raise AudioError(
                f"Resampler.push: expected a 1-D block of mono samples, got shape {list(x.shape)}"
            )
        x = pcm_to_float32(x, "Resampler.push")
        if not np.isfinite(x).all():
            raise AudioError("Resampler.push: the block has NaN or inf samples; clean it with np.nan_to_num")
        self._in_total += x.shape[0]
        if self._passthrough:
            self._out_total += x.shape[0]
            return np.array(x, dtype=np.float32)  # a copy: the caller may reuse its buffer
        self._buf = np.concatenate([self._buf, x])
        ready = self.output_after(self._in_total)
        out = self._segment(self._out_total, ready, final=False)
        self._out_total += out.shape[0]
        self._trim()
        return out

    def flush(self) -> np.ndarray:
        """Return the remaining output and [`reset`][unils.resample.Resampler.reset] for a new stream.

        The output of all pushes plus this call has exactly the length of a one-shot
        ``resampy.resample`` of the whole input (``int(n * target_rate / orig_rate)``).
        """
        if self._passthrough:
            out = np.zeros(0, np.float32)
        else:
            total = resampled_length(self._in_total, self.orig_rate, self.target_rate)
            out = self._segment(self._out_total, total, final=True)
        self.reset()
        return out

    def _segment(self, out_lo: int, out_hi: int, final: bool) -> np.ndarray:
        """Output samples ``[out_lo, out_hi)`` from a grid-aligned segment of the buffered input."""
        if out_hi <= out_lo:
            return np.zeros(0, np.float32)
        start = max(0, out_lo * self.orig_rate // self.target_rate - self._margin)
        start -= start % self._step
        stop = self._in_total
        if not final:
            stop = min(stop, -(-out_hi * self.orig_rate // self.target_rate) + self._margin)
        seg = self._buf[start - self._buf_start : stop - self._buf_start]
        if self._kernel is not None:
            return self._kernel(seg, start, out_lo, out_hi)
        import resampy

        first = start * self.target_rate // self.orig_rate  # exact: start is on the output grid
        y = resampy.resample(seg, self.orig_rate, self.target_rate, filter=RESAMPLE_FILTER)
        return np.array(y[out_lo - first : out_hi - first], dtype=np.float32)

    def _trim(self) -> None:
        # The next segment starts at most one grid step before (next output time - margin).
        keep_from = max(0, self._out_total * self.orig_rate // self.target_rate - self._margin - self._step)
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :]
            self._buf_start = keep_from
