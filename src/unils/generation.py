"""The chunk step: one window of motion for a batch of people, over explicit state.

Offline :meth:`unils.UniLS.generate` and streaming sessions both call :func:`step` window after window,
so they share every number: same tokens, same cache, same random draws in the same order.

Batch rows are people. With guidance (``cfg_scale > 1``) every row gets a twin unconditional row
(zero audio features, zero raw style, zero raw previous motion before the first window), exactly
as the official inference. Without guidance the unconditional rows are never computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .nn.codec import MotionCodec
from .nn.generator import Generator
from .sampling import guided_logits, sample_bits

__all__ = ["GenerationOptions", "ChunkState", "step", "plan_windows", "initial_state"]


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling knobs of one generation (see :meth:`unils.UniLS.generate`)."""

    temperature: float = 1.0
    top_p: float = 0.97
    cfg_scale: float = 1.5
    #: True: key/value cache across levels (fast path). False: the official full recomputation.
    use_cache: bool = True

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1], got {self.top_p}")
        if not self.cfg_scale >= 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale}")

    @property
    def guided(self) -> bool:
        """Whether classifier-free guidance runs (``cfg_scale > 1``)."""
        return self.cfg_scale > 1.0


@dataclass
class ChunkState:
    """What one window hands to the next, for B people (rows). Holds no model weights.

    Attributes:
        prev_motion: raw motion [B, W, 108] of the previous window (zeros or a given clip at first).
        style_features: codec sum features [B, W, C] of each row's style clip (zeros = no style).
        generators: one random generator per row.
        windows_done: number of windows generated so far.
    """

    prev_motion: Tensor
    style_features: Tensor
    generators: list[torch.Generator]
    windows_done: int = 0
    _uncond_cache: dict[str, Tensor] = field(default_factory=dict, repr=False)

    @property
    def batch(self) -> int:
        """Number of rows (people)."""
        return self.prev_motion.shape[0]


def plan_windows(num_samples: int, samples_per_frame: int, window_frames: int) -> tuple[int, int]:
    """(frames, windows) for ``num_samples`` of audio: frames = ceil(N / samples_per_frame)."""
    frames = -(-num_samples // samples_per_frame)
    return frames, math.ceil(frames / window_frames)


@torch.inference_mode()
def initial_state(
    codec: MotionCodec,
    generators: list[torch.Generator],
    style: Tensor | None = None,
    prev_motion: Tensor | None = None,
) -> ChunkState:
    """State before the first window. ``style``/``prev_motion``: raw motion [B, W, 108] or None (zeros)."""
    b = len(generators)
    w, d = codec.window, codec.config.motion_dim
    device = codec.motion_mean.device
    zeros = torch.zeros(b, w, d, device=device)
    style = zeros if style is None else style.to(device=device, dtype=torch.float32)
    prev = zeros if prev_motion is None else prev_motion.to(device=device, dtype=torch.float32)
    return ChunkState(prev_motion=prev, style_features=codec.sum_features(style), generators=list(generators))


def _zero_features(codec: MotionCodec, state: ChunkState) -> Tensor:
    # The unconditional branch's style (always) and prev (first window) are zeros in raw motion
    # space pushed through the codec, not zero features.
    feat = state._uncond_cache.get("zero")
    if feat is None:
        zeros = torch.zeros(state.batch, codec.window, codec.config.motion_dim, device=state.prev_motion.device)
        feat = codec.sum_features(zeros)
        state._uncond_cache["zero"] = feat
    return feat


@torch.inference_mode()
def step(
    codec: MotionCodec,
    generator: Generator,
    state: ChunkState,
    self_features: Tensor,
    other_features: Tensor,
    options: GenerationOptions,
) -> tuple[Tensor, Tensor, ChunkState]:
    """Generate one window for every row.

    Args:
        codec: the motion codec (decodes bits, encodes conditioning clips).
        generator: the token generator.
        state: state after the previous window (see :func:`initial_state`).
        self_features: audio features of each row's own voice for this window [B, La, A].
        other_features: audio features of each row's partner for this window [B, La, A].
        options: sampling options.

    Returns:
        ``(motion [B, W, 108] float32, bits [B, N, C] int64, new_state)``.
    """
    b = state.batch
    if self_features.shape[0] != b or other_features.shape[0] != b:
        raise ValueError(f"features batch {self_features.shape[0]}/{other_features.shape[0]} != state batch {b}")
    dtype = generator.sos_embed.dtype
    quantizer = codec.quantizer
    prev_features = codec.sum_features(state.prev_motion)
    style_features, self_f, other_f = state.style_features, self_features, other_features
    if options.guided:
        zero = _zero_features(codec, state)
        uncond_prev = zero if state.windows_done == 0 else prev_features
        style_features = torch.cat([style_features, zero])
        prev_features = torch.cat([prev_features, uncond_prev])
    prefix = generator.condition_tokens(style_features.to(dtype), prev_features.to(dtype))

    if options.use_cache:
        audio = generator.audio_context(self_f, other_f)
        if options.guided:
            # Zero audio features: the same keys/values for every window, computed once per model.
            null = generator.null_audio_context(b, self_f.shape[1], self_f.device)
            audio = generator.concat_contexts(audio, null)
        cache = generator.prefill(prefix, audio)
    elif options.guided:
        self_f = torch.cat([self_f, torch.zeros_like(self_f)])
        other_f = torch.cat([other_f, torch.zeros_like(other_f)])
    current: list[Tensor] = []
    acc: Tensor | None = None
    next_inputs: Tensor | None = None
    level_bits = []
    num_levels = len(generator.scales)
    for level in range(num_levels):
        tokens = generator.level_tokens(level, None if next_inputs is None else next_inputs.to(dtype), b)
        if options.guided:
            tokens = torch.cat([tokens, tokens])
        if options.use_cache:
            hidden = generator.extend(tokens, level, cache, audio)
        else:
            current.append(tokens)
            hidden = generator.forward_reference(prefix, torch.cat(current, dim=1), self_f, other_f)
            hidden = hidden[:, generator.offsets[level] :]
        logits = guided_logits(generator.logits(hidden), b, options.temperature, options.cfg_scale)
        bits = sample_bits(logits, state.generators, options.top_p)
        level_bits.append(bits)
        if level < num_levels - 1:
            acc = quantizer.accumulate(acc, bits)
            next_inputs = quantizer.next_level_inputs(acc, level + 1)
    all_bits = torch.cat(level_bits, dim=1)
    motion = codec.decode(all_bits)
    # Chaining: the decoded (unsmoothed) window is the next window's previous motion, for both branches.
    new_state = replace(state, prev_motion=motion, windows_done=state.windows_done + 1)
    return motion, all_bits, new_state
