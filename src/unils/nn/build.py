"""Build the module tree of a UniLS model from its config, without the [`UniLS`][unils.model.UniLS] class.

The converter builds models here (to check and load converted tensors) so it never imports
[`unils.model`][unils.model]; the state-dict names are those of ``UniLS`` (``codec.*``, ``audio_encoder.*``,
``generator.*``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import UniLSConfig
from .codec import MotionCodec
from .generator import Generator

__all__ = ["UniLSModules", "build_audio_encoder"]


def build_audio_encoder(config: UniLSConfig) -> nn.Module:
    """The audio front end named by ``config.audio_encoder.type`` (``wav2vec2`` or ``mel``)."""
    enc = config.audio_encoder
    if enc.type == "wav2vec2":
        from .wav2vec2 import Wav2Vec2Encoder

        return Wav2Vec2Encoder(enc.wav2vec2)
    from .mel import MelEncoder

    return MelEncoder(enc.mel, sample_rate=config.sample_rate)


class UniLSModules(nn.Module):
    """The weights of a UniLS model (codec, audio encoder, generator) and nothing else.

    Same state-dict names and dtypes as [`UniLS`][unils.model.UniLS], so tensors loaded here load there.
    """

    def __init__(self, config: UniLSConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.codec = MotionCodec(config.codec)
        self.audio_encoder = build_audio_encoder(config)
        self.generator = Generator(config.generator, config.codec, config.audio_encoder.out_dim)
        self.eval()

    def forward(self, *args: object) -> None:  # pragma: no cover - a weight container, not a network
        raise TypeError(
            "not callable: generate with UniLS.generate() or UniLS.stream() (this holds the weights)"
        )

    def set_precision(self, dtype: torch.dtype | str) -> UniLSModules:
        """Cast the generator and audio encoder to ``dtype``; the codec and its statistics stay float32."""
        if isinstance(dtype, str):
            dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        self.generator.to(dtype)
        self.audio_encoder.to(dtype)
        return self
