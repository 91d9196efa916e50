"""Multi-scale binary spherical quantization (BSQ) of codec features, coarse to fine.

Each level takes the residual left by the coarser levels, area-pools it to the level's token count,
L2-normalises every token and keeps only the signs: a code value is ``(2*bit - 1) / sqrt(C)``.
Coarse levels are linearly upsampled back to the window length before they are subtracted, so the
sum of all levels (the "sum feature") is what the decoder consumes. The quantizer has no weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import downsample_area, upsample_linear

__all__ = ["MultiScaleBSQ", "bsq_aux_loss"]


class MultiScaleBSQ:
    """Bits <-> features for the scale schedule ``scales`` (e.g. 1, 5, 25, 50, 100) of width ``code_dim``.

    Bits are laid out along time in level order: ``[B, sum(scales), code_dim]`` with values {0, 1}.
    """

    def __init__(self, scales: Sequence[int], code_dim: int) -> None:
        self.scales = tuple(int(s) for s in scales)
        self.code_dim = int(code_dim)
        self.window = self.scales[-1]
        self.offsets = tuple(int(x) for x in np.cumsum((0,) + self.scales))

    @property
    def num_tokens(self) -> int:
        """Total tokens (bits rows) over all levels."""
        return self.offsets[-1]

    def level_slice(self, level: int) -> slice:
        """Rows of level ``level`` inside the concatenated bit tensor."""
        return slice(self.offsets[level], self.offsets[level + 1])

    def bits_to_codes(self, bits: Tensor) -> Tensor:
        """{0,1} bits -> code values ±1/sqrt(C) in float32."""
        return (bits.float() * 2 - 1.0) / (self.code_dim**0.5)

    def _resize(self, x: Tensor, size: int) -> Tensor:
        return x if size == x.shape[1] else upsample_linear(x, size)

    def quantize(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Quantize encoder output [B, T, C]; return (quantized sum [B, T, C], bits [B, N, C])."""
        quantized_out: Tensor | float = 0.0
        residual = features
        all_bits = []
        for size in self.scales:
            level_in = downsample_area(residual, size) if size != self.window else residual
            z = F.normalize(level_in, dim=-1)
            zhat = torch.where(z > 0, torch.ones((), dtype=z.dtype), -torch.ones((), dtype=z.dtype))
            zhat = zhat * (1.0 / (self.code_dim**0.5))
            # Straight-through value z + (zhat - z): keeps the official rounding of the residual update.
            q = z + (zhat - z).detach()
            all_bits.append((q > 0).int())
            q = upsample_linear(q, self.window) if size != self.window else q
            residual = residual - q.detach()
            quantized_out = quantized_out + q
        assert isinstance(quantized_out, Tensor)
        return quantized_out, torch.cat(all_bits, dim=1)

    def bits_to_features(self, bits: Tensor) -> Tensor:
        """Sum feature [B, T, C] of a full bit tensor: what the decoder reads."""
        codes = self.bits_to_codes(bits)
        acc = codes.new_zeros(codes.shape[0], self.window, self.code_dim)
        for level in range(len(self.scales) - 1):
            acc.add_(upsample_linear(codes[:, self.level_slice(level)], self.window))
        acc.add_(codes[:, self.offsets[-2] :])
        return acc

    def accumulate(self, acc: Tensor | None, level_bits: Tensor) -> Tensor:
        """Add one level's upsampled codes to the running sum at window resolution."""
        up = upsample_linear(self.bits_to_codes(level_bits), self.window)
        if acc is None:
            acc = up.new_zeros(up.shape)
        return acc.add_(up)

    def next_level_inputs(self, acc: Tensor, next_level: int) -> Tensor:
        """Generator inputs for ``next_level``: the running sum area-pooled to that level's size."""
        return downsample_area(acc, self.scales[next_level])

    def accum_next_features(self, bits: Tensor, last_level: int | None = None) -> Tensor:
        """Teacher-forcing inputs for levels 1.. (last_level+1) from bits of levels 0..last_level.

        Equals concatenating [`next_level_inputs`][unils.nn.quantizer.MultiScaleBSQ.next_level_inputs] after
        each [`accumulate`][unils.nn.quantizer.MultiScaleBSQ.accumulate].
        """
        end = len(self.scales) - 1 if last_level is None else last_level + 1
        acc: Tensor | None = None
        pieces = []
        for level in range(end):
            if self.offsets[level] >= bits.shape[1]:
                break
            acc = self.accumulate(acc, bits[:, self.level_slice(level)])
            pieces.append(self.next_level_inputs(acc, level + 1))
        return torch.cat(pieces, dim=1).contiguous()

    def flip_quantize(
        self,
        features: Tensor,
        flip_ratio: float,
        rng: np.random.Generator,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Training-time quantization with random bit flips on every level but the last.

        Returns (true bits, flipped bits). True bits of a level are computed from the residual left by
        the *flipped* coarser levels, so targets teach the generator to correct its own errors.
        """
        residual = features
        true_bits, flipped_bits = [], []
        for index, size in enumerate(self.scales):
            level_in = downsample_area(residual, size) if size != self.window else residual
            bits = (F.normalize(level_in, dim=-1) > 0).int()
            true_bits.append(bits)
            if index < len(self.scales) - 1 and flip_ratio > 0.0:
                ratio = int(rng.integers(0, int(100 * flip_ratio) + 1)) * 0.01
                mask = (torch.rand(bits.shape, generator=generator) < ratio).to(bits.device)
                bits = torch.where(mask, 1 - bits, bits)
            flipped_bits.append(bits)
            q = self.bits_to_codes(bits)
            q = upsample_linear(q, self.window) if size != self.window else q
            residual = residual - q
        return torch.cat(true_bits, dim=1), torch.cat(flipped_bits, dim=1)


def bsq_aux_loss(features: Tensor, scales: Sequence[int], code_dim: int) -> Tensor:
    """Training auxiliary loss of the codec: mean over levels of entropy penalty + commitment.

    Follows the reference BSQ: inverse temperature 100, entropy weight 0.1, commitment weight 0.2.
    """
    window = scales[-1]
    residual = features
    losses = []
    scale = 1.0 / code_dim**0.5
    for size in scales:
        level_in = downsample_area(residual, size) if size != window else residual
        z = F.normalize(level_in, dim=-1)
        zhat = torch.where(z > 0, torch.ones((), dtype=z.dtype), -torch.ones((), dtype=z.dtype)) * scale
        q = z + (zhat - z).detach()
        p = torch.sigmoid(-4 * z / (code_dim**0.5) * 100.0)
        prob = torch.stack([p, 1 - p], dim=-1)
        per_sample = (-(prob * torch.log(prob + 1e-8)).sum(-1)).sum(-1).mean()
        avg = prob.mean(dim=(0, 1))
        codebook = (-(avg * torch.log(avg + 1e-8)).sum(-1)).sum()
        commit = ((q.detach() - z) ** 2).sum(-1).mean()
        losses.append((per_sample - codebook) / 100.0 * 0.1 + commit * 0.2)
        qu = upsample_linear(q, window) if size != window else q
        residual = residual - qu.detach()
    return torch.stack(losses).mean()
