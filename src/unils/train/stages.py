"""The three training stages as modules whose ``forward`` returns the loss of one batch.

Keeping each stage's loss inside ``forward`` is what lets DistributedDataParallel wrap it.

* [`CodecStage`][unils.train.stages.CodecStage] (stage 1) trains the motion codec; its normalisation
  statistics come from the data.
* [`PriorStage`][unils.train.stages.PriorStage] (stage 2) trains the audio-free next-scale prior (official
  ``UniLSFreeGen``) over a frozen codec.
* [`AudioStage`][unils.train.stages.AudioStage] (stage 3) adds self- and partner-audio cross-attention to the
  prior, trains them fully and the prior's linear layers through LoRA adapters (rank 32, alpha 32, dropout 0.1
  by default, the official targets); the export merges the adapters, so the result is a plain
  [`unils.UniLS`][unils.model.UniLS] checkpoint.

Each stage exports a folder with the full ``config.json`` and the weights trained so far:
``codec.safetensors`` (stage 1), ``prior.safetensors`` (stage 2), ``model.safetensors`` (stage 3,
loadable with [`unils.UniLS.from_pretrained`][unils.model.UniLS.from_pretrained]).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..config import UniLSConfig
from ..hub import CONFIG_NAME, save_checkpoint, state_dict_problems
from ..model import UniLS
from ..nn.codec import MotionCodec
from ..nn.generator import Generator
from ..nn.lora import apply_lora, lora_parameters, merge_lora_modules
from ..nn.quantizer import bsq_aux_loss
from .data import ClipSampler, DatasetError
from .losses import CodecLossWeights, bit_accuracy, bit_cross_entropy, codec_losses

__all__ = [
    "StageOptions",
    "CodecStage",
    "PriorStage",
    "AudioStage",
    "STAGES",
    "lora_targets",
    "read_stage_export",
]

logger = logging.getLogger("unils.train")

STAGE_FILES = {"codec": "codec.safetensors", "prior": "prior.safetensors", "audio": "model.safetensors"}


@dataclass
class StageOptions:
    """Recipe knobs of the stages (official values by default)."""

    flip_ratio: float = 0.3
    style_free: float = 0.1
    prev_free: float = 0.1
    audio_free: float = 0.1
    lora_r: int = 32
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1
    #: Largest stochastic-depth rate of the generator blocks (official: 0.1 * depth / 24).
    drop_path: float | None = None
    #: Stage 3: train the audio front end too (default: only the small mel encoder, never wav2vec2).
    train_audio_encoder: bool | None = None
    codec_weights: CodecLossWeights = CodecLossWeights()


def _drop(x: Tensor, p: float, gen: torch.Generator) -> Tensor:
    """Zero whole samples of ``x`` with probability ``p`` each (condition dropout for guidance)."""
    if p <= 0:
        return x
    keep = (torch.rand(x.shape[0], generator=gen) >= p).to(device=x.device, dtype=x.dtype)
    return x * keep.view(-1, *([1] * (x.dim() - 1)))


def _tensor(a: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def read_stage_export(folder: str | Path, stage: str) -> tuple[UniLSConfig, dict[str, Tensor]]:
    """Config and tensors of a stage's export folder.

    Raises:
        DatasetError: never; FileNotFoundError when the folder lacks the stage's files.
    """
    folder = Path(folder)
    cfg, weights = folder / CONFIG_NAME, folder / STAGE_FILES[stage]
    for f in (cfg, weights):
        if not f.is_file():
            raise FileNotFoundError(
                f"{f} not found: pass the export folder of a finished `unils train {stage}` run (its OUT/export)"
            )
    return UniLSConfig.load(cfg), load_file(str(weights))


def _load_subset(
    module: nn.Module, tensors: dict[str, Tensor], allowed_missing: tuple[str, ...], label: str
) -> list[str]:
    """Load ``tensors`` into ``module``; only keys starting with ``allowed_missing`` may be absent."""
    problems = state_dict_problems(module, tensors)
    missing = [k for k in module.state_dict() if k not in tensors]
    fatal = [p for p in problems if " missing: " not in p] + [
        f"missing {k}" for k in missing if not k.startswith(allowed_missing)
    ]
    if fatal:
        raise ValueError(f"{label} does not fit this model: " + "; ".join(fatal[:10]))
    module.load_state_dict(tensors, strict=False)
    return missing


class _Stage(nn.Module):
    name = ""

    def __init__(self, config: UniLSConfig, options: StageOptions) -> None:
        super().__init__()
        self.config = config
        self.options = options
        self.gen = torch.Generator().manual_seed(0)
        self.np_rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        """Seed the stage's own random draws (dropouts, flips); call once per process (rank)."""
        self.gen.manual_seed(seed)
        self.np_rng = np.random.default_rng(seed)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def draw(self, sampler: ClipSampler, batch_size: int) -> dict[str, Tensor]:
        raise NotImplementedError

    def export(self, folder: Path) -> Path:
        raise NotImplementedError

    def _drop_path(self) -> float:
        if self.options.drop_path is not None:
            return self.options.drop_path
        return 0.1 * self.config.generator.depth / 24

    def _flip_targets(self, codec: MotionCodec, motion: Tensor) -> tuple[Tensor, Tensor]:
        """(true bits, accum-next inputs built from randomly flipped bits) of raw motion windows."""
        with torch.no_grad():
            feats = codec.encode_features(motion)
            true_bits, flipped = codec.quantizer.flip_quantize(
                feats, self.options.flip_ratio, self.np_rng, self.gen
            )
            return true_bits, codec.quantizer.accum_next_features(flipped)

    def _conditions(self, codec: MotionCodec, style: Tensor, prev: Tensor) -> tuple[Tensor, Tensor]:
        """Sum features of the style and previous clips after their guidance dropouts (raw zeros)."""
        style = _drop(style, self.options.style_free, self.gen)
        prev = _drop(prev, self.options.prev_free, self.gen)
        with torch.no_grad():
            return codec.sum_features(style), codec.sum_features(prev)


class CodecStage(_Stage):
    """Stage 1: the motion codec, with normalisation statistics measured on the training data."""

    name = "codec"

    def __init__(
        self,
        config: UniLSConfig,
        options: StageOptions,
        stats: tuple[np.ndarray, np.ndarray] | None = None,
        vertices: Any = None,
        lip_indices: Tensor | None = None,
    ) -> None:
        super().__init__(config, options)
        self.codec = MotionCodec(config.codec)
        if stats is not None:
            with torch.no_grad():
                self.codec.motion_mean.copy_(torch.from_numpy(stats[0]))
                self.codec.motion_std.copy_(torch.from_numpy(stats[1]))
        self._vertices = vertices
        self._lips = lip_indices

    def init_from(self, folder: str | Path) -> None:
        """Continue from an earlier stage-1 export (fine-tuning)."""
        _, tensors = read_stage_export(folder, "codec")
        _load_subset(self, tensors, (), str(folder))

    def draw(self, sampler: ClipSampler, batch_size: int) -> dict[str, Tensor]:
        """One training batch from ``sampler``, on the stage's device."""
        return {"motion": _tensor(sampler.motion_batch(batch_size).motion, self.device)}

    def forward(self, motion: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The loss of a batch and its terms (floats, for the log)."""
        feats = self.codec.encode_features(motion)
        quantized, _ = self.codec.quantizer.quantize(feats)
        pred = self.codec.decode_features(quantized)
        vq = bsq_aux_loss(feats, self.config.codec.scales, self.config.codec.code_dim)
        terms = codec_losses(pred, motion, vq, self.options.codec_weights, self._vertices, self._lips)
        loss = torch.stack(list(terms.values())).sum()
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs["rec_l1"] = float((pred - motion).detach().abs().mean())
        return loss, logs

    def export(self, folder: Path) -> Path:
        """Write the stage's result (``config.json`` + weights) into ``folder``; return it."""
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder / CONFIG_NAME)
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
            str(folder / STAGE_FILES["codec"]),
        )
        return folder


class PriorStage(_Stage):
    """Stage 2: the audio-free next-scale prior over the frozen stage-1 codec."""

    name = "prior"

    def __init__(self, config: UniLSConfig, options: StageOptions) -> None:
        super().__init__(config, options)
        self.codec = MotionCodec(config.codec)
        self.codec.requires_grad_(False)
        self.generator = Generator(
            config.generator,
            config.codec,
            config.audio_encoder.out_dim,
            with_audio=False,
            drop_path=self._drop_path(),
        )

    def train(self, mode: bool = True) -> PriorStage:
        """Set training mode; the frozen codec stays in eval mode."""
        super().train(mode)
        self.codec.eval()  # frozen: never in training mode
        return self

    def init_from(self, folder: str | Path, stage: str) -> None:
        """Take the codec from a stage-1 export, or everything from an earlier stage-2 export."""
        _, tensors = read_stage_export(folder, stage)
        allowed = ("generator.",) if stage == "codec" else ()
        _load_subset(self, tensors, allowed, str(folder))

    def draw(self, sampler: ClipSampler, batch_size: int) -> dict[str, Tensor]:
        """One training batch from ``sampler``, on the stage's device."""
        b = sampler.motion_batch(batch_size)
        d = self.device
        return {"motion": _tensor(b.motion, d), "prev": _tensor(b.prev, d), "style": _tensor(b.style, d)}

    def forward(self, motion: Tensor, prev: Tensor, style: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The loss of a batch and its terms (floats, for the log)."""
        style_f, prev_f = self._conditions(self.codec, style, prev)
        bits, next_inputs = self._flip_targets(self.codec, motion)
        g = self.generator
        hidden = g.forward_full(g.condition_tokens(style_f, prev_f), g.teacher_tokens(next_inputs), None)
        logits = g.logits(hidden)
        loss = bit_cross_entropy(logits, bits)
        return loss, {"ce": float(loss.detach()), "bit_acc": bit_accuracy(logits, bits)}

    def export(self, folder: Path) -> Path:
        """Write the stage's result (``config.json`` + weights) into ``folder``; return it."""
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder / CONFIG_NAME)
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
            str(folder / STAGE_FILES["prior"]),
        )
        return folder


def lora_targets(depth: int) -> list[str]:
    """The official LoRA targets inside the generator: embeddings, logits head, self-attention, FFN."""
    names = ["code_token_embed", "logits_head.1"]
    for i in range(depth):
        names += [
            f"blocks.{i}.self_attn.to_qkv",
            f"blocks.{i}.self_attn.to_out",
            f"blocks.{i}.ffn.1",
            f"blocks.{i}.ffn.3",
        ]
    return names


class AudioStage(_Stage):
    """Stage 3: dual-audio fine-tuning of the prior (LoRA + fully trained cross-attention)."""

    name = "audio"

    def __init__(self, config: UniLSConfig, options: StageOptions) -> None:
        super().__init__(config, options)
        self.model = UniLS(config)
        g = self.model.generator
        g.requires_grad_(False)
        for blk, rate in zip(g.blocks, torch.linspace(0, self._drop_path(), len(g.blocks)).tolist()):
            blk.drop_path = rate
        apply_lora(
            g, lora_targets(config.generator.depth), options.lora_r, options.lora_alpha, options.lora_dropout
        )
        for blk in g.blocks:
            blk.self_audio_attn.requires_grad_(True)
            blk.other_audio_attn.requires_grad_(True)
        # self_pos / other_pos stay frozen at their initialisation, as in the official recipe.
        self.model.codec.requires_grad_(False)
        train_enc = options.train_audio_encoder
        if train_enc is None:
            train_enc = config.audio_encoder.type == "mel"
        self.train_audio_encoder = bool(train_enc)
        self.model.audio_encoder.requires_grad_(self.train_audio_encoder)

    def train(self, mode: bool = True) -> AudioStage:
        """Set training mode; the frozen codec (and a frozen audio encoder) stay in eval mode."""
        super().train(mode)
        self.model.codec.eval()
        if not self.train_audio_encoder:
            self.model.audio_encoder.eval()
        return self

    def init_from(
        self, folder: str | Path, stage: str, audio_encoder: dict[str, Tensor] | None = None
    ) -> list[str]:
        """Load a stage-2 export (cross-attention starts fresh) or a stage-3 export (fine-tuning).

        Returns:
            The keys left at their initialisation.
        """
        _, tensors = read_stage_export(folder, stage)
        if audio_encoder is not None:
            tensors = {
                **{k: v for k, v in tensors.items() if not k.startswith("audio_encoder.")},
                **{f"audio_encoder.{k}": v for k, v in audio_encoder.items()},
            }
        if not self.train_audio_encoder and not any(k.startswith("audio_encoder.") for k in tensors):
            raise ValueError(
                "the wav2vec2 audio encoder is frozen in stage 3 and needs pretrained weights: pass "
                "--audio-encoder (a transformers wav2vec2 folder, file or Hub repo)"
            )
        # LoRA wraps change parameter names (X.weight -> X.base.weight); map plain names onto them.
        plain_to_wrapped = {_plain(k): k for k in self.model.state_dict()}
        mapped = {plain_to_wrapped.get(k, k): v for k, v in tensors.items()}
        allowed: tuple[str, ...] = ("audio_encoder.",) if self.train_audio_encoder else ()
        if stage == "prior":
            allowed += ("generator.self_pos", "generator.other_pos", "generator.blocks.")
        # LoRA matrices are new in every run.
        lora_keys = tuple(k for k in self.model.state_dict() if ".lora_" in k)
        missing = _load_subset(self.model, mapped, allowed + lora_keys, str(folder))
        if stage == "prior":
            bad = [
                k
                for k in missing
                if k.startswith("generator.blocks.") and "_audio_attn." not in k and ".lora_" not in k
            ]
            if bad:
                raise ValueError(f"{folder}: prior export lacks {bad[:5]}")
        return [k for k in missing if ".lora_" not in k]

    def draw(self, sampler: ClipSampler, batch_size: int) -> dict[str, Tensor]:
        """One training batch from ``sampler``, on the stage's device."""
        b = sampler.pair_batch(batch_size)
        d = self.device
        return {
            "motion": _tensor(b.motion, d),
            "prev": _tensor(b.prev, d),
            "style": _tensor(b.style, d),
            "audio": _tensor(b.audio, d),
        }

    def _features(self, audio: Tensor) -> Tensor:
        flat = audio.reshape(-1, audio.shape[-1])
        enc = self.model.audio_encoder
        if self.train_audio_encoder:
            feats = enc(flat)
        else:
            with torch.no_grad():
                feats = enc(flat)
        return feats.view(audio.shape[0], audio.shape[1], *feats.shape[1:]).float()

    def forward(
        self, motion: Tensor, prev: Tensor, style: Tensor, audio: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """The loss of a batch and its terms (floats, for the log)."""
        feats = self._features(audio)  # [B, 2, La, A]
        # Both people of each conversation become rows: person 0 then person 1, each with the
        # other's voice as the partner stream.
        self_f = torch.cat([feats[:, 0], feats[:, 1]])
        other_f = torch.cat([feats[:, 1], feats[:, 0]])
        motion, prev, style = (torch.cat([x[:, 0], x[:, 1]]) for x in (motion, prev, style))
        self_f = _drop(self_f, self.options.audio_free, self.gen)
        other_f = _drop(other_f, self.options.audio_free, self.gen)
        codec, g = self.model.codec, self.model.generator
        style_f, prev_f = self._conditions(codec, style, prev)
        bits, next_inputs = self._flip_targets(codec, motion)
        hidden = g.forward_full(
            g.condition_tokens(style_f, prev_f),
            g.teacher_tokens(next_inputs),
            g.audio_context(self_f, other_f),
        )
        logits = g.logits(hidden)
        loss = bit_cross_entropy(logits, bits)
        return loss, {"ce": float(loss.detach()), "bit_acc": bit_accuracy(logits, bits)}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimiser updates (LoRA adapters, cross-attention, ...)."""
        params = [p for p in self.parameters() if p.requires_grad]
        assert all(p.requires_grad for p in lora_parameters(self.model.generator))
        return params

    def export(self, folder: Path) -> Path:
        """Write the stage's result (``config.json`` + merged weights) into ``folder``; return it."""
        model = copy.deepcopy(self.model).cpu().float()
        merge_lora_modules(model.generator)
        for blk in model.generator.block_list():
            blk.drop_path = 0.0
        model.eval()
        return save_checkpoint(folder, self.config, model.state_dict())


def _plain(key: str) -> str:
    return key.replace(".base.weight", ".weight").replace(".base.bias", ".bias")


#: Stage name (as in ``unils train NAME``) -> its stage class.
STAGES = {"codec": CodecStage, "prior": PriorStage, "audio": AudioStage}


def check_dataset_for(stage: str, sampler: ClipSampler) -> None:
    """Refuse a dataset that cannot feed ``stage``."""
    if stage == "audio" and not sampler.pair_index:
        raise DatasetError("stage 3 needs conversations longer than 101 frames with audio")
    if stage != "audio" and not sampler.motion_index:
        raise DatasetError("no motion sequence is longer than 101 frames")
