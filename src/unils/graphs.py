"""Window steps recorded once as CUDA graphs and replayed: one launch per window instead of thousands.

A window step on a GPU is mostly launch overhead: the generator runs every level through every block,
a few hundred small kernels each, and the arithmetic of one live session keeps the GPU busy for a small
part of the time the host needs to launch them. [`levels.window`][unils.levels.window] is a pure function
of tensors whose shapes depend only on the number of rows (the random draws are made before it), so it
can be recorded as a CUDA graph and replayed with new inputs copied into the same buffers.

[`StepGraphs`][unils.graphs.StepGraphs] keeps one recording per number of rows, rounded up to a power of
two (a *bucket*: 1, 2, 4, ... up to ``max_rows``), per guidance on/off and compute dtype; the rows beyond
the real ones are padding whose results are dropped. A bucket is recorded the first time it is needed
(a warm-up run and a capture: about the time of two eager steps). Rows that fill their bucket exactly
replay the kernels an eager step launches, so they give the eager numbers bit for bit; padded rows run
the batch-size-dependent kernels of the bucket, so they agree with an eager step within the precision's
drift (as any batching on a GPU).

Enable it with [`UniLS.cuda_graphs`][unils.model.UniLS.cuda_graphs] (``--cuda-graphs`` on the command line).
Only steps with the key/value cache (the default) are recorded; ``use_cache=False`` runs eagerly.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import levels
from .errors import ConfigError
from .nn.codec import MotionCodec
from .nn.generator import Generator
from .sampling import RowKnobs, fill_noise

__all__ = ["StepGraphs", "GraphStats", "bucket_rows"]

logger = logging.getLogger("unils")


def bucket_rows(rows: int, max_rows: int) -> int | None:
    """The recorded batch size for ``rows`` rows: the next power of two (None above ``max_rows``)."""
    if rows > max_rows:
        return None
    size = 1
    while size < rows:
        size *= 2
    return min(size, max_rows)


@dataclass(frozen=True)
class GraphStats:
    """What the recorded steps did so far.

    Attributes:
        buckets: the recorded window steps, as (rows, guided, dtype).
        encoder_buckets: the recorded audio encoder batches (windows).
        captures: recordings made (a change of the weights drops them and records again).
        replays: steps and encoder batches replayed from a recording.
        eager: steps or encoder batches run eagerly because they exceeded ``max_rows``.
    """

    buckets: tuple[tuple[int, bool, str], ...]
    encoder_buckets: tuple[int, ...]
    captures: int
    replays: int
    eager: int


def _record(
    fn: Callable[[], Any], device: torch.device, capture: bool
) -> tuple[torch.cuda.CUDAGraph | None, Any]:
    """Run ``fn`` once on a side stream (warm-up: kernels chosen, host caches filled), then record it as a
    CUDA graph; returns the graph and the outputs it writes on every replay. Without ``capture``: no
    graph, the outputs of one eager run."""
    if not capture:
        return None, fn()
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    # thread_local: other threads (a server's sessions) may keep using the device while this one records.
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        out = fn()
    return graph, out


class _EncoderRecording:
    """A static batch of audio windows [rows, samples] and the recorded encoder over it."""

    def __init__(
        self, encode: Callable[[Tensor], Tensor], rows: int, samples: int, device: torch.device, capture: bool
    ):
        self.audio = torch.zeros(rows, samples, device=device)
        self.encode = encode
        self.graph, self.features = _record(lambda: encode(self.audio), device, capture)

    def replay(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.features = self.encode(self.audio)


class _Recording:
    """Static input buffers, the recorded window and its outputs, for ``rows`` rows."""

    def __init__(
        self,
        codec: MotionCodec,
        generator: Generator,
        rows: int,
        guided: bool,
        dtype: torch.dtype,
        audio_shape: tuple[int, int],
        capture: bool,
    ) -> None:
        device = codec.motion_mean.device
        w, d, c = codec.window, codec.config.motion_dim, codec.config.code_dim

        def full(*shape: int, value: float = 0.0) -> Tensor:
            return torch.full(shape, value, device=device, dtype=torch.float32)

        self.rows = rows
        self.prev = full(rows, w, d)
        self.style = full(rows, w, c)
        self.zero = full(rows, w, c)
        self.first = torch.ones(rows, dtype=torch.bool, device=device)
        self.self_f = full(rows, *audio_shape)
        self.other_f = full(rows, *audio_shape)
        # Knobs of padding rows: temperature 1, no guidance, no top-p (any finite values would do).
        self.knobs = RowKnobs(
            inv_temperature=full(rows, 1, 1, 1, value=1.0),
            cfg=full(rows, 1, 1, 1, value=1.0),
            one_minus_cfg=full(rows, 1, 1, 1),
            threshold=full(rows, 1, 1, 1, value=-math.inf),
            guided=guided,
        )
        self.noise = [full(rows, n * ch, 2, value=1.0) for n, ch in levels.noise_shapes(generator)]
        inputs = levels.WindowInputs(self.prev, self.style, self.zero, self.first, self.self_f, self.other_f)
        # The unconditional keys/values, held for as long as the recording reads them.
        self.keep = generator.null_audio_context(rows, audio_shape[0], device) if guided else None

        def window() -> tuple[Tensor, Tensor]:
            return levels.window(codec, generator, inputs, self.knobs, self.noise, True, dtype, self.keep)

        self.window = window
        self.graph, (self.motion, self.bits) = _record(window, device, capture)

    def load(
        self, inputs: levels.WindowInputs, knobs: RowKnobs, generators: Sequence[torch.Generator]
    ) -> None:
        """Copy the real rows' inputs into the buffers and draw their noise (padding rows keep theirs)."""
        b = inputs.batch
        self.prev[:b].copy_(inputs.prev_motion)
        self.style[:b].copy_(inputs.style_features)
        self.zero[:b].copy_(inputs.zero_features)
        first = inputs.first
        self.first[:b].copy_(first if isinstance(first, Tensor) else torch.tensor(first, dtype=torch.bool))
        self.self_f[:b].copy_(inputs.self_features)
        self.other_f[:b].copy_(inputs.other_features)
        for buf, value in (
            (self.knobs.inv_temperature, knobs.inv_temperature),
            (self.knobs.cfg, knobs.cfg),
            (self.knobs.one_minus_cfg, knobs.one_minus_cfg),
            (self.knobs.threshold, knobs.threshold),
        ):
            assert isinstance(buf, Tensor)
            if isinstance(value, Tensor):
                buf[:b].copy_(value)
            else:
                buf[:b].fill_(value)
        # The draws of the eager step, level by level, each row from its own generator.
        for noise in self.noise:
            fill_noise(noise, generators)

    def replay(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.motion, self.bits = self.window()


class StepGraphs:
    """Window steps of one model recorded as CUDA graphs, one recording per bucket of rows.

    Args:
        codec: the model's motion codec.
        generator: the model's generator.
        audio_encoder: the model's audio front end (its recordings are checked against its weights).
        max_rows: the largest bucket (rows of all sessions in one step, guided twins not counted);
            larger steps run eagerly.
        capture: record CUDA graphs (default: whether the model is on a CUDA device). ``False`` runs
            the same buffers and function eagerly: the bookkeeping without the graphs, for tests on a
            CPU.

    Raises:
        ConfigError: ``capture`` on a model that is not on a CUDA device, or a bad ``max_rows``.
    """

    def __init__(
        self,
        codec: MotionCodec,
        generator: Generator,
        audio_encoder: torch.nn.Module | None = None,
        *,
        max_rows: int = 256,
        capture: bool | None = None,
    ) -> None:
        device = codec.motion_mean.device
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or not 1 <= max_rows <= 4096:
            raise ConfigError(
                f"max_rows must be an int in 1..4096 (rows per recorded step), got {max_rows!r}"
            )
        if capture is None:
            capture = device.type == "cuda"
        if capture and device.type != "cuda":
            raise ConfigError(
                f"CUDA graphs need the model on a CUDA device (it is on {device}): move it with "
                "UniLS.from_pretrained(..., device='cuda') first; on a CPU steps run eagerly"
            )
        self.codec = codec
        self.generator = generator
        self.audio_encoder = audio_encoder
        self.max_rows = max_rows
        self.capture = capture
        self._recordings: dict[tuple[int, bool, torch.dtype, tuple[int, int]], _Recording] = {}
        self._encoders: dict[tuple[int, int, Hashable], _EncoderRecording] = {}
        self._lock = threading.Lock()
        self._weights = self._fingerprint()
        self._captures = self._replays = self._eager = 0

    def _fingerprint(self) -> tuple[int, ...]:
        # A recording reads the weights' memory and values derived from them (the unconditional keys and
        # values, cached effective weights): a cast or move (new storage) or an in-place write (version
        # counter) drops it.
        modules = [self.codec, self.generator] + ([] if self.audio_encoder is None else [self.audio_encoder])
        return tuple(x for m in modules for p in m.parameters() for x in (p.data_ptr(), p._version))

    def _check_weights(self) -> None:
        weights = self._fingerprint()
        if weights != self._weights:
            logger.info(
                "the weights changed: dropping %d recorded steps", len(self._recordings) + len(self._encoders)
            )
            self._recordings.clear()
            self._encoders.clear()
            self._weights = weights

    def stats(self) -> GraphStats:
        """Recorded buckets, captures, replays and eager windows so far."""
        with self._lock:
            keys = tuple((r, g, str(d).removeprefix("torch.")) for r, g, d, _ in self._recordings)
            encoders = tuple(sorted(r for r, _, _ in self._encoders))
            return GraphStats(keys, encoders, self._captures, self._replays, self._eager)

    def encode(self, encode: Callable[[Tensor], Tensor], windows: Tensor, key: Hashable) -> Tensor:
        """``encode(windows)`` for audio windows [K, samples] on the device, replayed from a recording of
        the bucket of ``K`` (padding windows are silent; their features are dropped). ``key`` names what
        ``encode`` computes beyond the weights (e.g. the precision), so a change records again."""
        k, samples = int(windows.shape[0]), int(windows.shape[1])
        rows = bucket_rows(k, self.max_rows)
        if rows is None:
            with self._lock:
                self._eager += 1
            return encode(windows)
        with self._lock:
            self._check_weights()
            rec = self._encoders.get((rows, samples, key))
            if rec is None:
                logger.info("recording the audio encoder for %d windows", rows)
                rec = _EncoderRecording(encode, rows, samples, windows.device, self.capture)
                self._encoders[(rows, samples, key)] = rec
                self._captures += 1
            rec.audio[:k].copy_(windows)
            rec.replay()
            self._replays += 1
            return rec.features[:k].clone()

    def run(
        self,
        inputs: levels.WindowInputs,
        knobs: RowKnobs,
        generators: Sequence[torch.Generator],
        dtype: torch.dtype,
    ) -> tuple[Tensor, Tensor] | None:
        """One window for every row (as [`levels.window`][unils.levels.window] with the cache):
        ``(motion [B, W, 108], bits [B, N, C])``, or None when the rows exceed ``max_rows`` (then the
        caller steps eagerly; counted in ``stats().eager``)."""
        b = inputs.batch
        rows = bucket_rows(b, self.max_rows)
        if rows is None:
            with self._lock:
                self._eager += 1
            return None
        audio_shape = (int(inputs.self_features.shape[1]), int(inputs.self_features.shape[2]))
        key = (rows, knobs.guided, dtype, audio_shape)
        with self._lock:
            self._check_weights()
            rec = self._recordings.get(key)
            if rec is None:
                logger.info(
                    "recording the window step for %d rows (guided=%s, %s)", rows, knobs.guided, dtype
                )
                rec = _Recording(
                    self.codec, self.generator, rows, knobs.guided, dtype, audio_shape, self.capture
                )
                self._recordings[key] = rec
                self._captures += 1
            rec.load(inputs, knobs, generators)
            rec.replay()
            self._replays += 1
            return rec.motion[:b].clone(), rec.bits[:b].clone()
