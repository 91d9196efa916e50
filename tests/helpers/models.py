"""Tiny models with the real layout, and random weights that let tests tell layers apart."""

from __future__ import annotations

import torch

from unils.config import AudioEncoderConfig, CodecConfig, GeneratorConfig, UniLSConfig, Wav2Vec2Config


def tiny_config(scales: tuple[int, ...] = (1, 5, 25, 50, 100)) -> UniLSConfig:
    """A few-thousand-parameter model with the real layout (108-d motion, 100-frame windows)."""
    return UniLSConfig(
        codec=CodecConfig(hidden_dim=32, depth=1, num_heads=2, scales=scales),
        generator=GeneratorConfig(embed_dim=32, depth=2, num_heads=2),
        audio_encoder=AudioEncoderConfig(
            wav2vec2=Wav2Vec2Config(
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
                conv_dim=(16,) * 7,
                num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2,
            )
        ),
        name="tiny-test",
    )


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Give every parameter and buffer random values so that tests can tell layers apart.

    Default inits leave biases at zero, LayerNorms at identity and the decoder head near zero, which
    would hide wiring mistakes. Motion std stays positive.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.state_dict().items():
            if not p.is_floating_point():
                continue
            noise = torch.randn(p.shape, generator=gen) * scale
            if name.endswith("motion_std"):
                p.copy_(noise.abs() + 0.1)
            elif p.dim() >= 2:
                p.copy_(noise / max(1.0, p.shape[-1] ** 0.5) * 2)
            else:
                p.copy_(noise)
    return module
