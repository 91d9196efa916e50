"""Build the module tree of a UniLS model from its config, without the :class:`~unils.UniLS` class.

The converter builds models here (to check and load converted tensors) so it never imports
:mod:`unils.model`; the state-dict names are those of ``UniLS`` (``codec.*``, ``audio_encoder.*``,
``generator.*``).
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from ..config import UniLSConfig
from ..errors import ConfigError
from ..precision import Precision, dtype_of, quantize_linear_int8
from .codec import MotionCodec
from .generator import Generator

__all__ = ["UniLSModules", "build_audio_encoder"]

logger = logging.getLogger("unils")


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

    Same state-dict names and dtypes as :class:`~unils.UniLS`, so tensors loaded here load there.
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

    def cast_to(self, precision: Precision, current: Precision | None = None) -> Precision:
        """Cast the generator and audio encoder to ``precision`` (the codec stays float32).

        Returns the precision that now holds: the log-mel front end stays float32 under int8 (it has no
        transformer to quantize). ``current`` is the precision the weights are in now.

        Raises:
            ConfigError: leaving int8 (the float weights are gone: reload the model).
        """
        if current is not None and current.audio_encoder == "int8" and precision.audio_encoder != "int8":
            raise ConfigError("the weights were quantized to int8: reload the model for another precision")
        self.generator.to(precision.dtype)
        if precision.audio_encoder == "int8":
            transformer = getattr(self.audio_encoder, "encoder", None)
            if transformer is None:
                return dataclasses.replace(
                    precision,
                    audio_encoder="float32",
                    reason=precision.reason + "; the mel audio encoder stays float32",
                )
            if current is None or current.audio_encoder != "int8":
                self.audio_encoder.to(torch.float32)
                # wav2vec2's transformer only: the conv front end and the projection stay float32.
                layers = quantize_linear_int8(transformer)
                logger.info("int8: %d linear layers of the audio encoder quantized", layers)
            return precision
        self.audio_encoder.to(dtype_of(precision.audio_encoder))
        return precision
