"""Where the wav2vec2 weights of an official model come from: a transformers folder, a weights file
or a Hub repo (one weights format, safetensors first, the commit recorded), and their sizes."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ..config import Wav2Vec2Config
from ..errors import CheckpointError, CheckpointNotFoundError
from ..nn.wav2vec2 import config_from_hf
from .remote import fetch_file, is_repo_id, list_repo

__all__ = [
    "DEFAULT_AUDIO_ENCODER",
    "WAV2VEC2_WEIGHTS",
    "infer_wav2vec2_config",
    "load_wav2vec2",
    "wav2vec2_drop_reason",
]

logger = logging.getLogger("unils")

#: The wav2vec2 the official models were trained with (its weights are never in their checkpoints).
DEFAULT_AUDIO_ENCODER = "facebook/wav2vec2-xls-r-300m"
#: wav2vec2 weight files in order of preference: one is used, never both.
WAV2VEC2_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def load_wav2vec2(
    source: str | os.PathLike[str],
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> tuple[dict[str, Tensor], Wav2Vec2Config, str]:
    """Tensors, config and a description of a transformers wav2vec2 folder, weights file or Hub repo.

    From a Hub repo only ``config.json`` and one weights file are fetched (``model.safetensors`` when
    the repo has it, else ``pytorch_model.bin``); the description names the commit, so the converted
    model card pins the exact weights.

    Raises:
        CheckpointNotFoundError: no such folder/file/repo, or no weights in it.
        CheckpointError: unreadable weights or an unsupported wav2vec2 variant.
    """
    path = Path(source).expanduser()
    if path.is_file():
        folder, weights, label = path.parent, path, str(path)
    elif path.is_dir():
        found = next((path / n for n in WAV2VEC2_WEIGHTS if (path / n).is_file()), None)
        if found is None:
            raise CheckpointNotFoundError(f"{source} has no {' or '.join(WAV2VEC2_WEIGHTS)}")
        folder, weights, label = path, found, str(found)
    else:
        if not is_repo_id(str(source)):
            raise CheckpointNotFoundError(
                f"audio encoder {source!r}: no such file or folder, and not a Hub repo id"
            )
        listing = list_repo(
            str(source),
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        name = next((n for n in WAV2VEC2_WEIGHTS if n in listing.sizes), None)
        if name is None:
            raise CheckpointNotFoundError(
                f"could not find the wav2vec2 weights {source!r}: {listing.pinned} has no {' or '.join(WAV2VEC2_WEIGHTS)}"
            )
        weights = fetch_file(listing, name, local_files_only=local_files_only, token=token)
        cfg_path = (
            fetch_file(listing, "config.json", local_files_only=local_files_only, token=token)
            if "config.json" in listing.sizes
            else None
        )
        folder = cfg_path.parent if cfg_path is not None else weights.parent
        label = f"{listing.pinned} {name}"
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(weights))
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{weights} is not a readable safetensors file: {exc}") from exc
    else:
        try:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors have many types
            raise CheckpointError(
                f"{weights} is not a readable torch file (weights_only=True): {exc}"
            ) from exc
    cfg_file = folder / "config.json"
    hf_cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    if hf_cfg.get("add_adapter"):
        raise CheckpointError(f"{source}: wav2vec2 models with add_adapter=true are not supported")
    if not hf_cfg:
        logger.warning("%s has no config.json: assuming the wav2vec2-xls-r-300m sizes", source)
    return dict(sd), config_from_hf(hf_cfg), label


_W2V_DROPPED = (
    (re.compile(r"^(quantizer\.|project_q\.|project_hid\.|dropout_features)"), "wav2vec2 pre-training head"),
    (re.compile(r"^masked_spec_embed$"), "wav2vec2 SpecAugment embedding (unused at inference)"),
    (re.compile(r"^lm_head\."), "wav2vec2 CTC head (UniLS uses the hidden states)"),
)


def wav2vec2_drop_reason(key: str) -> str | None:
    """Why a transformers wav2vec2 tensor is not used (pre-training or CTC heads), or None when it is."""
    k = key.removeprefix("wav2vec2.")
    return next((reason for pattern, reason in _W2V_DROPPED if pattern.match(k)), None)


def infer_wav2vec2_config(sd: Mapping[str, Tensor]) -> Wav2Vec2Config:
    """wav2vec2 sizes from its tensors (used when the weights come inside an unmerged peft dict)."""

    def get(name: str) -> Tensor:
        for k in (name, "wav2vec2." + name):
            if k in sd:
                return sd[k]
        raise CheckpointError(f"the checkpoint's audio_encoder tensors lack {name}")

    hidden = get("feature_projection.projection.weight").shape[0]
    layers = len({m.group(1) for k in sd if (m := re.search(r"encoder\.layers\.(\d+)\.", k))})
    inner = get("encoder.layers.0.feed_forward.intermediate_dense.weight").shape[0]
    convs = sorted({int(m.group(1)) for k in sd if (m := re.search(r"conv_layers\.(\d+)\.conv\.weight", k))})
    conv_w = [get(f"feature_extractor.conv_layers.{i}.conv.weight") for i in convs]
    v = None
    for name in (
        "encoder.pos_conv_embed.conv.weight_v",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    ):
        for k in (name, "wav2vec2." + name):
            v = sd.get(k, v)
    if v is None:
        raise CheckpointError("the checkpoint's audio_encoder tensors lack the positional convolution")
    default = Wav2Vec2Config()
    if len(convs) != len(default.conv_stride):
        raise CheckpointError(f"cannot infer the strides of a {len(convs)}-layer wav2vec2 feature encoder")
    return Wav2Vec2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=inner,
        conv_dim=tuple(w.shape[0] for w in conv_w),
        conv_kernel=tuple(w.shape[2] for w in conv_w),
        conv_stride=default.conv_stride,
        num_conv_pos_embeddings=v.shape[2],
        num_conv_pos_embedding_groups=hidden // v.shape[1],
    )
