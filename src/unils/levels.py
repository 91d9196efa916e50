"""One window of generation as a fixed sequence of device operations.

A window is generated level by level (coarse to fine): every level runs the generator on the tokens of
that level, turns its logits into bit probabilities, and each row picks its bits with noise drawn from
its own random generator. The noise does not depend on the probabilities (``torch.multinomial`` picks
``argmax(p / q)`` with ``q ~ Exp(1)``), so every row's noise for every level is drawn *before* the window
([`draw`][unils.levels.draw]), and the window itself ([`window`][unils.levels.window]) is then a pure
function of tensors whose shapes depend only on the number of rows: no value is read back to the host,
no tensor is built from host data, no branch depends on a number. That is what lets
[`unils.graphs`][unils.graphs] record it once per batch size as a CUDA graph and replay it, while
[`unils.generation`][unils.generation] runs the same function eagerly: both give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .nn.codec import MotionCodec
from .nn.generator import AudioContext, Generator
from .sampling import RowKnobs, bit_probabilities, draw_noise, pick_bits

__all__ = ["WindowInputs", "window", "draw", "noise_shapes"]


@dataclass(frozen=True)
class WindowInputs:
    """What a window of ``B`` rows starts from, on the model's device.

    Attributes:
        prev_motion: raw motion [B, W, 108] of each row's previous window (float32).
        style_features: codec sum features [B, W, C] of each row's style clip.
        zero_features: codec sum features [B, W, C] of all-zero motion (the unconditional branch).
        first: whether each row is at its first window: a list of bools, or a bool tensor [B] (the
            recorded step's form: then no host value decides anything).
        self_features: audio features [B, La, A] of each row's own voice.
        other_features: audio features [B, La, A] of each row's partner.
    """

    prev_motion: Tensor
    style_features: Tensor
    zero_features: Tensor
    first: list[bool] | Tensor
    self_features: Tensor
    other_features: Tensor

    @property
    def batch(self) -> int:
        """Number of rows."""
        return self.prev_motion.shape[0]


def noise_shapes(generator: Generator) -> list[tuple[int, int]]:
    """(tokens, code channels) of every level: the shapes of the noise a row draws per window."""
    return [(n, generator.code_dim) for n in generator.scales]


def draw(generator: Generator, generators: Sequence[torch.Generator], device: torch.device) -> list[Tensor]:
    """Every row's noise for every level of one window: [B, n_l * C, 2] per level.

    Each row draws from its own generator, level after level, exactly what the row-by-row
    ``torch.multinomial`` of the official sampler draws.
    """
    return [draw_noise(generators, n, c, device) for n, c in noise_shapes(generator)]


def _first_mask(first: list[bool] | Tensor, device: torch.device) -> bool | Tensor:
    """True/False when all rows agree (host lists only), else a bool tensor [B, 1, 1]."""
    if isinstance(first, Tensor):
        return first.view(-1, 1, 1)
    if all(first):
        return True
    if not any(first):
        return False
    return torch.tensor(first, device=device).view(-1, 1, 1)


def window(
    codec: MotionCodec,
    generator: Generator,
    inputs: WindowInputs,
    knobs: RowKnobs,
    noise: Sequence[Tensor],
    use_cache: bool,
    dtype: torch.dtype,
    null_audio: AudioContext | None = None,
) -> tuple[Tensor, Tensor]:
    """Generate one window for every row: ``(motion [B, W, 108] float32, bits [B, N, C] int64)``.

    Args:
        codec: the motion codec (conditioning features in, bits out to motion).
        generator: the token generator.
        inputs: the rows' previous windows, styles and audio features.
        knobs: the rows' sampling knobs.
        noise: from [`draw`][unils.levels.draw], one tensor per level.
        use_cache: keep per-layer keys/values across levels (else recompute the whole sequence at
            every level, as the official inference; the same numbers up to summation order).
        dtype: compute dtype of the generator.
        null_audio: the unconditional rows' audio keys/values for ``B`` rows (default: the generator's
            cached `null_audio_context`).

    With guidance (``knobs.guided``) every row gets a twin unconditional row: zero audio features, zero
    raw style, and zero raw previous motion before the row's first window (the official inference).
    """
    b = inputs.batch
    self_f, other_f = inputs.self_features, inputs.other_features
    if self_f.shape[0] != b or other_f.shape[0] != b:
        raise ValueError(f"features batch {self_f.shape[0]}/{other_f.shape[0]} != state batch {b}")
    guided = knobs.guided
    prev_features = codec.sum_features(inputs.prev_motion)
    style_features = inputs.style_features
    if guided:
        first = _first_mask(inputs.first, prev_features.device)
        if first is True:
            uncond_prev = inputs.zero_features
        elif first is False:
            uncond_prev = prev_features
        else:
            uncond_prev = torch.where(first, inputs.zero_features, prev_features)
        style_features = torch.cat([style_features, inputs.zero_features])
        prev_features = torch.cat([prev_features, uncond_prev])
    prefix = generator.condition_tokens(style_features.to(dtype), prev_features.to(dtype))

    if use_cache:
        audio = generator.audio_context(self_f, other_f)
        if guided:
            # Zero audio features: the same keys/values for every window, computed once per model.
            if null_audio is None:
                null_audio = generator.null_audio_context(b, self_f.shape[1], self_f.device)
            audio = generator.concat_contexts(audio, null_audio)
        cache = generator.prefill(prefix, audio)
    elif guided:
        self_f = torch.cat([self_f, torch.zeros_like(self_f)])
        other_f = torch.cat([other_f, torch.zeros_like(other_f)])
    quantizer = codec.quantizer
    current: list[Tensor] = []
    acc: Tensor | None = None
    level_bits: list[Tensor] = []
    for level in range(len(generator.scales)):
        if level == 0:
            tokens = generator.level_tokens(0, None, b)
        else:
            acc = quantizer.accumulate(acc, level_bits[-1])
            tokens = generator.level_tokens(level, quantizer.next_level_inputs(acc, level).to(dtype), b)
        if guided:
            tokens = torch.cat([tokens, tokens])
        if use_cache:
            hidden = generator.extend(tokens, level, cache, audio)
        else:
            current.append(tokens)
            hidden = generator.forward_reference(prefix, torch.cat(current, dim=1), self_f, other_f)
            hidden = hidden[:, generator.offsets[level] :]
        probs = bit_probabilities(generator.logits(hidden), b, knobs)
        level_bits.append(pick_bits(probs, noise[level]))
    all_bits = torch.cat(level_bits, dim=1)
    return codec.decode(all_bits), all_bits
