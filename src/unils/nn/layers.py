"""Layers shared by the motion codec and the generator: interleaved RoPE and 1-D resampling.

The rotary embedding is the torchtune variant the official code uses: adjacent channel pairs
(x[2i], x[2i+1]) are rotated (not the half-split NeoX layout), computed in float32 and cast back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RotaryCache", "apply_rope", "upsample_linear", "downsample_area", "split_heads", "merge_heads"]


class RotaryCache:
    """cos/sin table for positions ``0 .. max_len-1``.

    Deliberately not a module buffer: it is never saved, and it must stay float32 when the model is
    cast to half precision (the reference computes the rotation in float32). It follows the device
    of the tensors it is used with.
    """

    def __init__(self, head_dim: int, max_len: int, base: float = 10_000.0) -> None:
        theta = 1.0 / (base ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
        pos = torch.arange(max_len, dtype=theta.dtype)
        angles = torch.einsum("i, j -> ij", pos, theta).float()
        self.max_len = max_len
        self._tables = {torch.device("cpu"): torch.stack([angles.cos(), angles.sin()], dim=-1)}

    def table(self, device: torch.device) -> Tensor:
        """The whole [max_len, head_dim/2, 2] table on ``device``."""
        tab = self._tables.get(device)
        if tab is None:
            tab = self._tables[torch.device("cpu")].to(device)
            self._tables[device] = tab
        return tab

    def __call__(self, positions: Tensor | None, length: int, device: torch.device) -> Tensor:
        """Return the [S, head_dim/2, 2] table rows for ``positions`` (or 0..length-1)."""
        tab = self.table(device)
        if positions is None:
            return tab[:length]
        return tab[positions]


def apply_rope(x: Tensor, table: Tensor) -> Tensor:
    """Rotate ``x`` [B, S, H, D] by ``table`` [S, D/2, 2] (interleaved pairs, float32 math)."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    t = table.view(1, xs.size(1), 1, xs.size(3), 2)
    out = torch.stack(
        [
            xs[..., 0] * t[..., 0] - xs[..., 1] * t[..., 1],
            xs[..., 1] * t[..., 0] + xs[..., 0] * t[..., 1],
        ],
        -1,
    )
    return out.flatten(3).type_as(x)


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """[B, S, H*D] -> [B, S, H, D] (head-major channel blocks)."""
    return x.view(x.shape[0], x.shape[1], num_heads, x.shape[2] // num_heads)


def merge_heads(x: Tensor) -> Tensor:
    """[B, H, S, D] (SDPA output) -> [B, S, H*D]."""
    b, h, s, d = x.shape
    return x.transpose(1, 2).reshape(b, s, h * d)


def upsample_linear(x: Tensor, size: int) -> Tensor:
    """Linear interpolation over time of [B, T, C] to ``size`` steps (align_corners=False)."""
    return F.interpolate(x.permute(0, 2, 1), size=size, mode="linear").permute(0, 2, 1)


def downsample_area(x: Tensor, size: int) -> Tensor:
    """Area (adaptive average) pooling over time of [B, T, C] to ``size`` steps."""
    return F.interpolate(x.permute(0, 2, 1), size=size, mode="area").permute(0, 2, 1)
