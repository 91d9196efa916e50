"""Official ``meta_cfg`` -> [`UniLSConfig`][unils.config.UniLSConfig] (checked against the tensor shapes),
and which training stage a checkpoint belongs to."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from torch import Tensor

from ..config import AudioEncoderConfig, CodecConfig, GeneratorConfig, UniLSConfig, Wav2Vec2Config
from ..errors import CheckpointError

__all__ = ["STAGE_NAMES", "config_from_meta", "stage_from_keys", "stage_from_meta"]

#: What each official training stage produces.
STAGE_NAMES = {1: "stage-1 motion codec", 2: "stage-2 audio-free prior", 3: "stage-3 audio model"}


def stage_from_meta(meta: Mapping[str, Any] | None) -> int | None:
    """Training stage named by ``meta_cfg["MODEL"]["NAME"]`` (UniLSCodec* 1, UniLSFreeGen* 2,
    UniLSLoRAGen*/UniLSGen 3), or None when absent or unknown."""
    model = (meta or {}).get("MODEL")
    name = str(model.get("NAME", "")) if isinstance(model, Mapping) else ""
    if "LoRAGen" in name or name == "UniLSGen":
        return 3
    if "FreeGen" in name:
        return 2
    if "Codec" in name:
        return 1
    return None


def stage_from_keys(keys: Collection[str]) -> int | None:
    """Training stage read from (prefix-stripped) official key names: audio cross-attention means
    stage 3, a generator without it stage 2, a codec alone stage 1; None when none of these."""
    if any(".self_audio_attn." in k for k in keys):
        return 3
    if any(k.startswith(("attn_blocks.", "sos_embed", "code_token_embed.", "logits_head.")) for k in keys):
        return 2
    if any(k.startswith(("encoder.", "decoder.", "base_codec.", "motion_mean")) for k in keys):
        return 1
    return None


def _shape_sizes(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Sizes readable from the tensors themselves (our key names)."""
    try:
        sizes: dict[str, Any] = {
            "VAE_CONFIG.T_HIDDEN_DIM": state["codec.encoder.inp_mapping.0.weight"].shape[0],
            "VAE_CONFIG.MOTION_DIM": state["codec.encoder.inp_mapping.0.weight"].shape[1],
            "VAE_CONFIG.V_CODE_DIM": state["codec.encoder.code_mapping.weight"].shape[0],
            "VAE_CONFIG.T_DEPTH": sum(
                1
                for k in state
                if re.fullmatch(r"codec\.encoder\.encoder_transformer\.\d+\.to_qkv\.weight", k)
            ),
            "T_EMBED_DIM": state["generator.sos_embed"].shape[-1],
            "T_DEPTH": sum(
                1 for k in state if re.fullmatch(r"generator\.blocks\.\d+\.self_attn\.to_qkv\.weight", k)
            ),
            "levels": state["generator.lvl_embed.weight"].shape[0],
        }
    except KeyError as exc:
        raise CheckpointError(f"not an official UniLS generator checkpoint: missing {exc.args[0]}") from exc
    return {k: int(v) for k, v in sizes.items()}


def config_from_meta(
    meta: Mapping[str, Any] | None, state: Mapping[str, Tensor], w2v: Wav2Vec2Config | None
) -> UniLSConfig:
    """UniLSConfig from the official ``meta_cfg["MODEL"]``, checked against the tensor shapes.

    ``state`` uses our key names. Without ``meta_cfg`` the sizes come from the shapes (head dim 64,
    as in both official sizes; scales (1, 5, 25, 50, 100) for 5 levels, (1, 25, 50, 100) for 4).

    Raises:
        CheckpointError: meta_cfg and tensors disagree (names the field), or sizes cannot be inferred.
    """
    model = dict((meta or {}).get("MODEL", {}) or {})
    vae = dict(model.get("VAE_CONFIG", {}) or {})
    shapes = _shape_sizes(state)

    def pick(field_name: str) -> int:
        block, _, name = field_name.rpartition(".")
        value = (vae if block else model).get(name)
        if value is None:
            return shapes[field_name]
        if int(value) != shapes[field_name]:
            raise CheckpointError(
                f"meta_cfg MODEL.{field_name} = {value} but the checkpoint tensors have {shapes[field_name]}"
            )
        return int(value)

    hidden, depth_c = pick("VAE_CONFIG.T_HIDDEN_DIM"), pick("VAE_CONFIG.T_DEPTH")
    embed, depth_g = pick("T_EMBED_DIM"), pick("T_DEPTH")
    motion_dim, code_dim = pick("VAE_CONFIG.MOTION_DIM"), pick("VAE_CONFIG.V_CODE_DIM")
    if vae.get("V_PATCH_NUMS"):
        scales = tuple(int(x) for x in vae["V_PATCH_NUMS"])
        if len(scales) != shapes["levels"]:
            raise CheckpointError(
                f"meta_cfg MODEL.VAE_CONFIG.V_PATCH_NUMS = {list(scales)} has {len(scales)} levels but "
                f"attn_blocks.lvl_embed.weight has {shapes['levels']}"
            )
    else:
        known = {5: (1, 5, 25, 50, 100), 4: (1, 25, 50, 100)}
        if shapes["levels"] not in known:
            raise CheckpointError(
                f"cannot infer the scale schedule of {shapes['levels']} levels without meta_cfg "
                "(MODEL.VAE_CONFIG.V_PATCH_NUMS)"
            )
        scales = known[shapes["levels"]]
    heads_c = int(vae.get("T_NUM_HEADS") or max(1, hidden // 64))
    heads_g = int(model.get("T_NUM_HEAD") or model.get("T_NUM_HEADS") or max(1, embed // 64))
    audio = str(model.get("AUDIO_ENCODER", "wav2vec"))
    if audio != "wav2vec":
        raise CheckpointError(f"official AUDIO_ENCODER {audio!r} is not supported (only 'wav2vec')")
    cfg = UniLSConfig(
        codec=CodecConfig(
            motion_dim=motion_dim,
            hidden_dim=hidden,
            depth=depth_c,
            num_heads=heads_c,
            code_dim=code_dim,
            scales=scales,
        ),
        generator=GeneratorConfig(embed_dim=embed, depth=depth_g, num_heads=heads_g),
        audio_encoder=AudioEncoderConfig(type="wav2vec2", wav2vec2=w2v or Wav2Vec2Config()),
        name=str((meta or {}).get("EXP_STR") or model.get("NAME") or "unils-official"),
    )
    try:
        return cfg.validate()
    except ValueError as exc:
        raise CheckpointError(f"the official configuration is not usable: {exc}") from exc
