"""Motion codec: 108-d motion windows <-> multi-scale binary codes.

Parameter names follow the official ``UniLSCodec`` so converted checkpoints map one-to-one:
``encoder.inp_mapping.0``, ``encoder.encoder_transformer.{2i}`` (attention) /
``{2i+1}`` (FFN), ``encoder.code_mapping``, the mirrored ``decoder.*`` and the normalisation
buffers ``motion_mean`` / ``motion_std``, which live in the checkpoint, not in a side file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import CodecConfig
from .layers import RotaryCache, apply_rope, merge_heads, split_heads
from .quantizer import MultiScaleBSQ

__all__ = ["MotionCodec", "CodecAttention", "CodecTransformer"]


class CodecAttention(nn.Module):
    """Pre-LN bidirectional self-attention with RoPE at positions 0..T-1 (no FFN norm in the codec)."""

    def __init__(self, dim: int, num_heads: int, rope: RotaryCache) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        table = self.rope(None, x.shape[1], x.device)
        q = apply_rope(split_heads(q, self.num_heads), table).transpose(1, 2)
        k = apply_rope(split_heads(k, self.num_heads), table).transpose(1, 2)
        v = split_heads(v, self.num_heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(merge_heads(out))


class CodecTransformer(nn.Module):
    """Linear+LeakyReLU in, alternating [attention, FFN] residual blocks, linear out."""

    def __init__(
        self, in_dim: int, hidden: int, out_dim: int, depth: int, num_heads: int, rope_len: int, kind: str
    ):
        super().__init__()
        self.kind = kind
        self.rope = RotaryCache(hidden // num_heads, rope_len)
        self.inp_mapping = nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(0.2))
        blocks: list[nn.Module] = []
        for _ in range(depth):
            blocks.append(CodecAttention(hidden, num_heads, self.rope))
            blocks.append(
                nn.Sequential(
                    nn.Linear(hidden, int(1.5 * hidden)),
                    nn.GELU(approximate="tanh"),
                    nn.Linear(int(1.5 * hidden), hidden),
                )
            )
        # Official names: encoder_transformer / code_mapping, decoder_transformer / out_mapping.
        setattr(self, f"{kind}_transformer", nn.ModuleList(blocks))
        setattr(self, "code_mapping" if kind == "encoder" else "out_mapping", nn.Linear(hidden, out_dim))

    @property
    def blocks(self) -> nn.ModuleList:
        return getattr(self, f"{self.kind}_transformer")

    @property
    def head(self) -> nn.Linear:
        return getattr(self, "code_mapping" if self.kind == "encoder" else "out_mapping")

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp_mapping(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


class MotionCodec(nn.Module):
    """Normalise -> transformer encoder -> multi-scale BSQ bits -> sum feature -> decoder -> denormalise.

    Works on windows of ``config.window`` frames (100 for the official models).
    """

    # Buffers, declared so that the type checker sees tensors instead of ``Module.__getattr__``'s union.
    motion_mean: Tensor
    motion_std: Tensor

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = CodecTransformer(
            config.motion_dim,
            config.hidden_dim,
            config.code_dim,
            config.depth,
            config.num_heads,
            config.rope_max_len,
            "encoder",
        )
        self.decoder = CodecTransformer(
            config.code_dim,
            config.hidden_dim,
            config.motion_dim,
            config.depth,
            config.num_heads,
            config.rope_max_len,
            "decoder",
        )
        nn.init.xavier_uniform_(self.decoder.head.weight, gain=0.05)
        nn.init.zeros_(self.decoder.head.bias)
        self.quantizer = MultiScaleBSQ(config.scales, config.code_dim)
        self.register_buffer("motion_mean", torch.zeros(config.motion_dim))
        self.register_buffer("motion_std", torch.ones(config.motion_dim))

    @property
    def window(self) -> int:
        return self.config.window

    def normalize(self, motion: Tensor) -> Tensor:
        return (motion - self.motion_mean) / (self.motion_std + 1e-8)

    def denormalize(self, motion: Tensor) -> Tensor:
        # No epsilon here: the official codec is asymmetric and checkpoints were trained with it.
        return motion * self.motion_std + self.motion_mean

    def _check_window(self, motion: Tensor) -> None:
        if motion.dim() != 3 or motion.shape[1] != self.window or motion.shape[2] != self.config.motion_dim:
            raise ValueError(
                f"codec expects motion windows [B, {self.window}, {self.config.motion_dim}], got {list(motion.shape)}"
            )

    def encode_features(self, motion: Tensor) -> Tensor:
        """Continuous encoder output [B, T, code_dim] for raw motion [B, T, 108]."""
        self._check_window(motion)
        return self.encoder(self.normalize(motion))

    def encode(self, motion: Tensor) -> Tensor:
        """Raw motion windows [B, T, 108] -> bits [B, sum(scales), code_dim] (int32 0/1)."""
        return self.quantizer.quantize(self.encode_features(motion))[1]

    def decode(self, bits: Tensor) -> Tensor:
        """Bits [B, sum(scales), code_dim] -> raw motion [B, T, 108]."""
        return self.decode_features(self.quantizer.bits_to_features(bits))

    def decode_features(self, features: Tensor) -> Tensor:
        """Sum feature [B, T, code_dim] -> raw motion [B, T, 108]."""
        return self.denormalize(self.decoder(features))

    def sum_features(self, motion: Tensor) -> Tensor:
        """Quantised sum feature of raw motion windows, rebuilt from the bits (conditioning tokens)."""
        return self.quantizer.bits_to_features(self.encode(motion))

    def forward(self, motion: Tensor) -> Tensor:
        """Reconstruction through the quantizer (straight-through), for training and checks."""
        quantized, _ = self.quantizer.quantize(self.encode_features(motion))
        return self.decode_features(quantized)

    def reconstruct(self, motion: Tensor) -> Tensor:
        """Encode -> bits -> decode any length [B, T, 108]: zero-pad (raw space) to whole windows."""
        b, t, c = motion.shape
        windows = -(-t // self.window)
        padded = torch.cat([motion, motion.new_zeros(b, windows * self.window - t, c)], dim=1)
        chunks = padded.view(b, windows, self.window, c).reshape(b * windows, self.window, c)
        out = self.decode(self.encode(chunks)).view(b, windows * self.window, c)
        return out[:, :t]
