"""wav2vec2 (XLS-R 300M layout) in plain torch, with the reference implementation's parameter names.

The "stable layer norm" variant: a 7-layer convolutional feature encoder with per-step LayerNorm,
a feature projection, a grouped convolutional positional embedding with weight normalisation, and
pre-LN transformer layers closed by a final LayerNorm. Parameter names are the transformers
``Wav2Vec2Model`` names, so hub weights load unchanged after :func:`convert_hf_state_dict`.

UniLS normalises every 4 s window on its own (zero mean, unit *unbiased* std + 1e-6) before the
conv stack; :meth:`Wav2Vec2Encoder.forward` does that when ``normalize=True``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import Wav2Vec2Config
from ..errors import CheckpointError, ConfigError

__all__ = ["Wav2Vec2Encoder", "convert_hf_state_dict", "config_from_hf"]


class _ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, bias: bool, eps: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, bias=bias)
        self.layer_norm = nn.LayerNorm(cout, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x)


class _FeatureExtractor(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        dims = (1,) + tuple(cfg.conv_dim)
        self.conv_layers = nn.ModuleList(
            [
                _ConvLayer(dims[i], dims[i + 1], cfg.conv_kernel[i], cfg.conv_stride[i], cfg.conv_bias, cfg.layer_norm_eps)
                for i in range(len(cfg.conv_dim))
            ]
        )

    def forward(self, wave: Tensor) -> Tensor:
        x = wave[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class _FeatureProjection(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.conv_dim[-1], eps=cfg.layer_norm_eps)
        self.projection = nn.Linear(cfg.conv_dim[-1], cfg.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(self.layer_norm(x))


class _WeightNormConv(nn.Module):
    """Grouped Conv1d whose weight is ``g * v / ||v||`` (norm over dims 0 and 1, per kernel tap)."""

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.groups = groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel) * 0.02)
        self.bias = nn.Parameter(torch.zeros(channels))

    def weight(self) -> Tensor:
        v = self.weight_v
        return self.weight_g * v / v.norm(dim=(0, 1), keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.weight(), self.bias, padding=self.kernel // 2, groups=self.groups)


class _PositionalConv(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.conv = _WeightNormConv(cfg.hidden_size, cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups)
        self.remove = 1 if cfg.num_conv_pos_embeddings % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x.transpose(1, 2))
        if self.remove:
            h = h[:, :, : -self.remove]
        return F.gelu(h).transpose(1, 2)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        h = self.heads

        def split(y: Tensor) -> Tensor:
            return y.view(b, t, h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, inner)
        self.output_dense = nn.Linear(inner, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(x)))


class _Layer(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.attention = _Attention(cfg.hidden_size, cfg.num_attention_heads)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.feed_forward = _FeedForward(cfg.hidden_size, cfg.intermediate_size)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.layer_norm(x))
        return x + self.feed_forward(self.final_layer_norm(x))


class _Encoder(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.pos_conv_embed = _PositionalConv(cfg)
        self.layers = nn.ModuleList([_Layer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos_conv_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)


class Wav2Vec2Encoder(nn.Module):
    """16 kHz windows [B, N] -> last hidden state [B, frames, hidden_size] (199 frames for 4 s)."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.config = config
        self.feature_extractor = _FeatureExtractor(config)
        self.feature_projection = _FeatureProjection(config)
        self.encoder = _Encoder(config)

    @property
    def out_dim(self) -> int:
        return self.config.hidden_size

    def num_frames(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` input samples (conv length arithmetic)."""
        n = num_samples
        for k, s in zip(self.config.conv_kernel, self.config.conv_stride):
            n = (n - k) // s + 1
        return n

    @staticmethod
    def normalize(wave: Tensor) -> Tensor:
        """Per-row zero mean, unit unbiased std (+1e-6): the UniLS wrapper's normalisation."""
        return (wave - wave.mean(dim=-1, keepdim=True)) / (wave.std(dim=-1, keepdim=True) + 1e-6)

    def forward(self, waveform: Tensor, normalize: bool = True) -> Tensor:
        if waveform.dim() != 2:
            raise ValueError(f"expected waveforms [batch, samples], got {list(waveform.shape)}")
        if normalize:
            waveform = self.normalize(waveform)
        feats = self.feature_extractor(waveform).transpose(1, 2)
        return self.encoder(self.feature_projection(feats))


_DROP = re.compile(r"^(quantizer\.|project_q\.|project_hid\.|masked_spec_embed$|lm_head\.|adapter\.|dropout_features)")
_RENAMES = {
    "encoder.pos_conv_embed.conv.parametrizations.weight.original0": "encoder.pos_conv_embed.conv.weight_g",
    "encoder.pos_conv_embed.conv.parametrizations.weight.original1": "encoder.pos_conv_embed.conv.weight_v",
}


def convert_hf_state_dict(state_dict: Mapping[str, Tensor], expected: set[str] | None = None) -> dict[str, Tensor]:
    """Map a transformers wav2vec2 state dict (``Wav2Vec2Model`` or ``...ForPreTraining``) to ours.

    Strips the ``wav2vec2.`` prefix, renames the weight-norm parametrization keys to
    ``weight_g``/``weight_v`` and drops pre-training-only tensors. With ``expected`` (our key set),
    any key that is neither ours nor known-droppable raises :class:`CheckpointError`.
    """
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        k = key[len("wav2vec2.") :] if key.startswith("wav2vec2.") else key
        if _DROP.match(k):
            continue
        k = _RENAMES.get(k, k)
        if expected is not None and k not in expected:
            unknown.append(key)
            continue
        out[k] = value
    if unknown:
        raise CheckpointError(f"unexpected wav2vec2 tensors: {', '.join(sorted(unknown)[:12])}")
    return out


def config_from_hf(hf: Mapping[str, Any]) -> Wav2Vec2Config:
    """Wav2Vec2Config from a transformers ``config.json`` dict (stable-layer-norm variant only)."""
    if hf.get("feat_extract_norm", "layer") != "layer" or not hf.get("do_stable_layer_norm", True):
        raise ConfigError(
            "only wav2vec2 models with feat_extract_norm='layer' and do_stable_layer_norm=true "
            "(the XLS-R / large-lv60 layout UniLS uses) are supported"
        )
    if not hf.get("conv_bias", True):
        raise ConfigError("wav2vec2 models without conv biases are not supported")
    if hf.get("hidden_act", "gelu") != "gelu" or hf.get("feat_extract_activation", "gelu") != "gelu":
        raise ConfigError("only GELU wav2vec2 models are supported")
    return Wav2Vec2Config(
        hidden_size=int(hf.get("hidden_size", 1024)),
        num_hidden_layers=int(hf.get("num_hidden_layers", 24)),
        num_attention_heads=int(hf.get("num_attention_heads", 16)),
        intermediate_size=int(hf.get("intermediate_size", 4096)),
        conv_dim=tuple(int(x) for x in hf.get("conv_dim", (512,) * 7)),
        conv_kernel=tuple(int(x) for x in hf.get("conv_kernel", (10, 3, 3, 3, 3, 2, 2))),
        conv_stride=tuple(int(x) for x in hf.get("conv_stride", (5, 2, 2, 2, 2, 2, 2))),
        conv_bias=True,
        num_conv_pos_embeddings=int(hf.get("num_conv_pos_embeddings", 128)),
        num_conv_pos_embedding_groups=int(hf.get("num_conv_pos_embedding_groups", 16)),
        layer_norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
    )
