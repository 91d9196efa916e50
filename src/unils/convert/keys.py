"""Official key names <-> ours (one bijective table), wrapper prefixes, and the peft LoRA merge."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..errors import CheckpointError
from ..nn.lora import merged_weight

__all__ = [
    "convert_state_dict",
    "lora_scale_from_meta",
    "merge_lora",
    "official_to_unils_key",
    "strip_prefixes",
    "unils_to_official_key",
]

_PREFIXES = ("module.", "_orig_mod.", "base_model.model.", "model.", "net.")
_GEN_TOP = ("sos_embed", "code_token_embed.", "logits_head.")
_GEN_DECODER_PARAMS = ("lvl_embed.weight", "style_pos", "prev_pos", "self_pos", "other_pos")


# ---------------------------------------------------------------------------------- key table
def official_to_unils_key(key: str) -> str:
    """Official generator/codec key -> our key (``base_codec.X`` -> ``codec.X`` etc.)."""
    if key.startswith("base_codec."):
        return "codec." + key[len("base_codec.") :]
    if key.startswith("attn_blocks.attn_blocks."):
        return "generator.blocks." + key[len("attn_blocks.attn_blocks.") :]
    if key.startswith("attn_blocks."):
        rest = key[len("attn_blocks.") :]
        if rest in _GEN_DECODER_PARAMS:
            return "generator." + rest
    if key.startswith(_GEN_TOP):
        return "generator." + key
    if key.startswith("audio_encoder."):
        return key
    raise CheckpointError(f"official key {key!r} has no unils counterpart")


def unils_to_official_key(key: str) -> str:
    """Inverse of [`official_to_unils_key`][unils.convert.keys.official_to_unils_key] (for writing
    official-format files in tests and tools)."""
    if key.startswith("codec."):
        return "base_codec." + key[len("codec.") :]
    if key.startswith("generator.blocks."):
        return "attn_blocks.attn_blocks." + key[len("generator.blocks.") :]
    if key.startswith("generator."):
        rest = key[len("generator.") :]
        return ("attn_blocks." + rest) if rest in _GEN_DECODER_PARAMS else rest
    if key.startswith("audio_encoder."):
        return key
    raise CheckpointError(f"unils key {key!r} has no official counterpart")


def strip_prefixes(key: str) -> str:
    """``key`` without wrapper prefixes (``module.``, ``_orig_mod.``, ``base_model.model.``, ``model.``, ``net.``)."""
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


# ---------------------------------------------------------------------------------- LoRA
_LORA = re.compile(r"^(?P<mod>.+)\.lora_(?P<ab>[AB])\.(?P<adapter>[^.]+)\.weight$")
_SAVED = re.compile(r"^(?P<mod>.+)\.modules_to_save\.(?P<adapter>[^.]+)\.(?P<rest>.+)$")
_ORIG = re.compile(r"^(?P<mod>.+)\.original_module\.(?P<rest>.+)$")


def merge_lora(
    state: Mapping[str, Tensor], scale: float = 1.0
) -> tuple[dict[str, Tensor], list[str], dict[str, str], list[str]]:
    """Merge peft adapters into plain weights.

    ``X.base_layer.weight`` (or, with old peft, ``X.weight``) + ``X.lora_A.<a>.weight`` [r, in] +
    ``X.lora_B.<a>.weight`` [out, r] become ``X.weight = W + scale * B @ A`` for every adapter ``a``
    (computed in float64, cast back to the base dtype); ``M.modules_to_save.<a>.*`` become ``M.*``
    and the frozen ``M.original_module.*`` copies are dropped.

    Returns:
        (plain state dict, merged module names, dropped keys with reasons, modules_to_save names)
    """
    out: dict[str, Tensor] = {}
    lora: dict[tuple[str, str], dict[str, Tensor]] = {}
    dropped: dict[str, str] = {}
    saved: dict[str, set[str]] = {}
    originals: dict[str, str] = {}
    for key, value in state.items():
        if m := _LORA.match(key):
            lora.setdefault((m["mod"], m["adapter"]), {})[m["ab"]] = value
        elif m := _SAVED.match(key):
            saved.setdefault(m["mod"], set()).add(m["adapter"])
            out[f"{m['mod']}.{m['rest']}"] = value
        elif m := _ORIG.match(key):
            originals[key] = m["mod"]
        elif ".base_layer." in key:
            out[key.replace(".base_layer.", ".")] = value
        else:
            if key in out:
                raise CheckpointError(
                    f"{key} appears both plainly and as a peft base_layer/modules_to_save tensor"
                )
            out[key] = value
    for mod, adapters in saved.items():
        if len(adapters) > 1:
            raise CheckpointError(
                f"{mod} has several modules_to_save adapters ({sorted(adapters)}); keep one"
            )
    for key, mod in originals.items():
        if mod not in saved:
            raise CheckpointError(f"{key}: peft original_module without a modules_to_save copy")
        dropped[key] = "frozen peft original_module (the trained modules_to_save copy is used)"
    merged = []
    for (mod, adapter), ab in sorted(lora.items()):
        if set(ab) != {"A", "B"}:
            raise CheckpointError(f"LoRA adapter {adapter!r} of {mod} lacks lora_{'B' if 'A' in ab else 'A'}")
        wkey = f"{mod}.weight"
        if wkey not in out:
            raise CheckpointError(f"LoRA adapter {adapter!r} of {mod} has no base_layer weight")
        base = out[wkey]
        a, b = ab["A"], ab["B"]
        if a.dim() != 2 or b.dim() != 2 or b.shape[1] != a.shape[0]:
            raise CheckpointError(
                f"LoRA {mod}: lora_A {list(a.shape)} and lora_B {list(b.shape)} do not chain"
            )
        try:
            out[wkey] = merged_weight(base, a, b, scale)
        except ValueError as exc:
            raise CheckpointError(f"LoRA {mod}: {exc}") from None
        merged.append(mod if adapter == "default" else f"{mod}[{adapter}]")
    return out, merged, dropped, sorted(saved)


def lora_scale_from_meta(meta: Mapping[str, Any] | None) -> float | None:
    """alpha / r recorded in ``meta_cfg`` (``LORA: {R, ALPHA}``, ``MODEL.LORA_R/LORA_ALPHA`` or a peft
    ``r``/``lora_alpha`` dict); None when absent (the official configs never record it: r = alpha = 32)."""
    if not meta:
        return None
    model = meta.get("MODEL", {}) if isinstance(meta.get("MODEL"), Mapping) else {}
    candidates = [meta.get("LORA"), model.get("LORA"), meta.get("peft_config"), meta.get("lora_config")]
    candidates.append({"R": model.get("LORA_R"), "ALPHA": model.get("LORA_ALPHA")})
    for c in candidates:
        if not isinstance(c, Mapping):
            continue
        r = c.get("R", c.get("r"))
        alpha = c.get("ALPHA", c.get("lora_alpha", c.get("alpha")))
        if r is not None and alpha is not None:
            return float(alpha) / float(r)
    return None


def convert_state_dict(
    official: Mapping[str, Tensor], lora_scale: float = 1.0
) -> tuple[dict[str, Tensor], dict[str, Tensor], list[str], dict[str, str], list[str]]:
    """Official state dict -> (our codec/generator tensors, wav2vec2 tensors found in it, merged LoRA
    modules, dropped keys with reasons, modules_to_save taken).

    Raises:
        CheckpointError: a key with no unils counterpart, or a stage-1/stage-2 checkpoint.
    """
    stripped: dict[str, Tensor] = {}
    for k, v in official.items():
        s = strip_prefixes(k)
        if s in stripped:
            raise CheckpointError(f"{k} and another key both become {s} once wrapper prefixes are removed")
        stripped[s] = v
    plain, merged, dropped, saved = merge_lora(stripped, lora_scale)
    generator_keys = [
        k for k in plain if k.startswith(("attn_blocks.", "sos_embed", "code_token_embed.", "logits_head."))
    ]
    if not generator_keys and any(
        k.startswith(("encoder.", "decoder.", "base_codec.", "motion_mean")) for k in plain
    ):
        raise CheckpointError(
            "this is a stage-1 motion-codec checkpoint (no generator): it is a training intermediate; "
            "convert the stage-3 audio model (unils_loragen) checkpoint instead"
        )
    ours: dict[str, Tensor] = {}
    audio: dict[str, Tensor] = {}
    for key, value in plain.items():
        if key.startswith("audio_encoder."):
            audio[key[len("audio_encoder.") :]] = value
        elif key.startswith("face_decoder."):
            dropped[key] = "FLAME decoder (training only)"
        else:
            ours[official_to_unils_key(key)] = value
    if not any(".self_audio_attn." in k for k in ours):
        raise CheckpointError(
            "this is a stage-2 audio-free prior (no audio cross-attention): it is a training intermediate; "
            "convert the stage-3 audio model (unils_loragen) checkpoint instead"
        )
    return ours, audio, merged, dropped, saved
