"""Official UniLS checkpoints (``torch.save({"model", "meta_cfg"})``) -> unils folders.

What it does, in order:

1. reads the ``.pt`` with ``torch.load(weights_only=True)`` (the only place unils reads a pickle);
2. strips wrapper prefixes (``module.``, ``model.``, ``net.``, ``_orig_mod.``, peft's ``base_model.model.``);
3. merges every peft LoRA adapter into its base weight, ``W + (alpha / r) * B @ A``, and takes the
   trained ``modules_to_save`` copies (dropping the frozen ``original_module`` ones);
4. renames official keys to ours with one table (:func:`official_to_unils_key`, bijective);
5. maps ``meta_cfg["MODEL"]`` to :class:`~unils.config.UniLSConfig` (or infers sizes from shapes);
6. takes the wav2vec2 weights from the checkpoint when present, else from a transformers folder/repo;
7. loads everything strictly (every key used, every tensor filled) and writes a unils folder.

Only stage-3 (audio) checkpoints are converted. Stage-1 codec and stage-2 audio-free prior
checkpoints are training intermediates without audio cross-attention: they are refused with a
message saying so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import AudioEncoderConfig, CodecConfig, GeneratorConfig, UniLSConfig, Wav2Vec2Config
from .errors import CheckpointError, CheckpointNotFoundError
from .nn.lora import merged_weight

__all__ = [
    "DEFAULT_AUDIO_ENCODER",
    "ConversionReport",
    "config_from_meta",
    "convert_official",
    "convert_state_dict",
    "converted_cache_root",
    "find_official_checkpoint",
    "lora_scale_from_meta",
    "maybe_convert_official",
    "merge_lora",
    "official_to_unils_key",
    "read_official",
    "unils_to_official_key",
]

logger = logging.getLogger("unils")

#: The wav2vec2 the official models were trained with (its weights are never in their checkpoints).
DEFAULT_AUDIO_ENCODER = "facebook/wav2vec2-xls-r-300m"
_PREFIXES = ("module.", "_orig_mod.", "base_model.model.", "model.", "net.")
_GEN_TOP = ("sos_embed", "code_token_embed.", "logits_head.")
_GEN_DECODER_PARAMS = ("lvl_embed.weight", "style_pos", "prev_pos", "self_pos", "other_pos")


@dataclass
class ConversionReport:
    """What a conversion consumed, merged and dropped.

    Attributes:
        source: the official ``.pt`` file.
        output: the unils folder written.
        sha256: checksum of the source file.
        consumed: official tensors that ended up in the model (LoRA A/B/base pieces included).
        total: tensors in the official state dict.
        merged_lora: modules whose LoRA adapters were merged (``module`` or ``module[adapter]``).
        modules_to_save: peft ``modules_to_save`` modules whose trained copy was taken.
        dropped: keys not used, with the reason (only known-harmless ones; anything else is an error).
        audio_encoder_source: where the wav2vec2 weights came from.
        lora_scale: alpha / r used for the merge.
        seconds: wall time of the conversion.
    """

    source: str
    output: str
    sha256: str
    consumed: int
    total: int = 0
    merged_lora: list[str] = field(default_factory=list)
    modules_to_save: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    audio_encoder_source: str = ""
    lora_scale: float = 1.0
    seconds: float = 0.0

    def summary(self) -> str:
        """A readable report of the conversion (what ``unils convert`` prints)."""
        lines = [
            f"converted {self.source} -> {self.output} in {self.seconds:.1f} s",
            f"  sha256 {self.sha256}",
            (
                f"  {self.consumed} of {self.total} official tensors consumed; {len(self.merged_lora)} LoRA "
                f"adapters merged (alpha/r = {self.lora_scale:g}); {len(self.modules_to_save)} modules_to_save "
                "copies taken"
            ),
            f"  audio encoder from {self.audio_encoder_source}",
        ]
        if self.dropped:
            reasons: dict[str, int] = {}
            for reason in self.dropped.values():
                reasons[reason] = reasons.get(reason, 0) + 1
            lines.append(
                f"  dropped {len(self.dropped)}: " + "; ".join(f"{n} x {r}" for r, n in reasons.items())
            )
        return "\n".join(lines)


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
    """Inverse of :func:`official_to_unils_key` (for writing official-format files in tests and tools)."""
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


def _strip(key: str) -> str:
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


# ---------------------------------------------------------------------------------- config
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


# ---------------------------------------------------------------------------------- audio encoder
def _load_wav2vec2(
    source: str | os.PathLike[str], revision: str | None, cache_dir: Any, local_files_only: bool
) -> tuple[dict[str, Tensor], Wav2Vec2Config, str]:
    """(tensors, config, description) of a transformers wav2vec2 folder, weights file or Hub repo."""
    from .nn.wav2vec2 import config_from_hf

    path = Path(source).expanduser()
    if path.is_file():
        folder, files = path.parent, [path]
    elif path.is_dir():
        folder, files = path, [path / "model.safetensors", path / "pytorch_model.bin"]
    else:
        if str(source).count("/") != 1 or str(source).startswith((".", "/", "~")):
            raise CheckpointNotFoundError(
                f"audio encoder {source!r}: no such file or folder, and not a Hub repo id"
            )
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            folder = Path(
                snapshot_download(
                    str(source),
                    revision=revision,
                    cache_dir=cache_dir,
                    local_files_only=local_files_only,
                    allow_patterns=["config.json", "model.safetensors", "pytorch_model.bin"],
                )
            )
        except (LocalEntryNotFoundError, HfHubHTTPError, ValueError) as exc:
            raise CheckpointNotFoundError(f"could not find the wav2vec2 weights {source!r}: {exc}") from exc
        files = [folder / "model.safetensors", folder / "pytorch_model.bin"]
    weights = next((f for f in files if f.is_file()), None)
    if weights is None:
        raise CheckpointNotFoundError(f"{source} has no model.safetensors or pytorch_model.bin")
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(weights))
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
    return dict(sd), config_from_hf(hf_cfg), str(weights)


_W2V_DROPPED = (
    (re.compile(r"^(quantizer\.|project_q\.|project_hid\.|dropout_features)"), "wav2vec2 pre-training head"),
    (re.compile(r"^masked_spec_embed$"), "wav2vec2 SpecAugment embedding (unused at inference)"),
    (re.compile(r"^lm_head\."), "wav2vec2 CTC head (UniLS uses the hidden states)"),
)


def _w2v_drop_reason(key: str) -> str | None:
    k = key.removeprefix("wav2vec2.")
    return next((reason for pattern, reason in _W2V_DROPPED if pattern.match(k)), None)


def _infer_w2v_config(sd: Mapping[str, Tensor]) -> Wav2Vec2Config:
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


# ---------------------------------------------------------------------------------- reading
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_official(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """Read an official ``.pt``: (state dict, meta_cfg or None). Uses ``weights_only=True``.

    Accepts ``{"model": ...}`` (the official format), ``state_dict``/``model_state_dict``/``net``
    wrappers, or a bare state dict.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointNotFoundError(f"no official checkpoint at {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors have many types
        raise CheckpointError(f"{p} is not a readable torch checkpoint (weights_only=True): {exc}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p} does not hold a dict")
    meta = obj.get("meta_cfg") if isinstance(obj.get("meta_cfg"), Mapping) else None
    for key in ("model", "state_dict", "model_state_dict", "net"):
        if isinstance(obj.get(key), Mapping):
            state = dict(obj[key])
            break
    else:
        if not obj or not all(isinstance(v, Tensor) for v in obj.values()):
            raise CheckpointError(f"{p} has no model/state_dict entry (keys: {sorted(map(str, obj))[:8]})")
        state = dict(obj)
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{p}: non-tensor entries in the state dict: {', '.join(map(str, bad[:8]))}")
    return state, meta


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
        s = _strip(k)
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


def _check_fit(model: torch.nn.Module, tensors: Mapping[str, Tensor], src: Path) -> None:
    """Every model tensor filled with the right shape and every converted tensor used, or one
    CheckpointError listing the offenders under our and the official names."""

    def both(key: str) -> str:
        try:
            return f"{key} [official {unils_to_official_key(key)}]"
        except CheckpointError:
            return key

    from .hub import state_dict_problems

    problems = state_dict_problems(model, tensors, both)
    if problems:
        raise CheckpointError(
            f"{src} does not fit the UniLS model described by its meta_cfg/shapes: " + "; ".join(problems)
        )


# ---------------------------------------------------------------------------------- main entry
def convert_official(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    audio_encoder: str | os.PathLike[str] | None = None,
    dtype: torch.dtype | str | None = None,
    lora_scale: float | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> ConversionReport:
    """Convert an official stage-3 checkpoint into a unils folder loadable by ``from_pretrained``.

    Args:
        checkpoint: the official ``.pt`` file (merged release weights, or an unmerged peft dict).
        out_dir: output folder (config.json, model.safetensors, README.md).
        audio_encoder: wav2vec2 weights when the checkpoint has none (official ones never do): a
            transformers folder, a weights file (``model.safetensors``/``pytorch_model.bin``) or a
            Hub repo id such as ``facebook/wav2vec2-xls-r-300m``. When given, it replaces any
            ``audio_encoder.*`` tensors found in the checkpoint.
        dtype: storage precision of the generator and audio encoder (the codec stays float32);
            default float32.
        lora_scale: alpha / r of unmerged LoRA adapters. Default: from meta_cfg when recorded there,
            else 1.0 (the official r = alpha = 32). An explicit value wins over meta_cfg.
        revision: Hub branch, tag or commit of ``audio_encoder`` (when it is a repo id).
        cache_dir: Hub cache folder for ``audio_encoder``.
        local_files_only: resolve ``audio_encoder`` from the Hub cache only, never the network.

    Raises:
        CheckpointError: unknown, missing or misshapen tensors (named), meta_cfg disagreeing with
            the tensors, or a stage-1/stage-2 checkpoint.
        CheckpointNotFoundError: missing checkpoint or audio encoder weights.
    """
    from .hub import load_state_dict_strict
    from .model import UniLS
    from .nn.wav2vec2 import convert_hf_state_dict

    t0 = time.perf_counter()
    src = Path(checkpoint).expanduser()
    official, meta = read_official(src)
    meta_scale = lora_scale_from_meta(meta)
    if lora_scale is None:
        lora_scale = 1.0 if meta_scale is None else meta_scale
    elif meta_scale is not None and abs(meta_scale - lora_scale) > 1e-12:
        logger.warning("lora_scale=%g overrides alpha/r = %g recorded in meta_cfg", lora_scale, meta_scale)
    ours, audio, merged, dropped, saved = convert_state_dict(official, lora_scale)
    audio_from_argument = audio_encoder is not None
    if audio_from_argument:
        audio_sd, w2v_cfg, audio_src = _load_wav2vec2(audio_encoder, revision, cache_dir, local_files_only)
        dropped.update({f"audio_encoder.{k}": "replaced by the audio_encoder argument" for k in audio})
    elif audio:
        audio_sd, w2v_cfg, audio_src = audio, _infer_w2v_config(audio), f"{src} (audio_encoder.* tensors)"
    else:
        raise CheckpointNotFoundError(
            "the official checkpoint holds no wav2vec2 weights (they are never saved there): pass "
            f"audio_encoder= (CLI: --audio-encoder) with a transformers wav2vec2 folder or Hub repo, e.g. {DEFAULT_AUDIO_ENCODER}"
        )
    width = ours.get("generator.self_pos")
    if width is not None and width.shape[-1] != w2v_cfg.hidden_size:
        raise CheckpointError(
            f"the wav2vec2 from {audio_src} is {w2v_cfg.hidden_size} wide but the checkpoint expects "
            f"{width.shape[-1]}-d audio features (attn_blocks.self_pos): wrong audio encoder? "
            f"The official models use {DEFAULT_AUDIO_ENCODER}"
        )
    config = config_from_meta(meta, ours, w2v_cfg)
    model = UniLS(config)
    expected_audio = {
        k[len("audio_encoder.") :] for k in model.state_dict() if k.startswith("audio_encoder.")
    }
    w2v_drop = {k: r for k in audio_sd if (r := _w2v_drop_reason(k))}
    prefix = "" if audio_from_argument else "audio_encoder."
    dropped.update({prefix + k: r for k, r in w2v_drop.items()})
    audio_ours = convert_hf_state_dict(
        {k: v for k, v in audio_sd.items() if k not in w2v_drop}, expected_audio
    )
    full = {**ours, **{f"audio_encoder.{k}": v for k, v in audio_ours.items()}}
    _check_fit(model, full, src)
    load_state_dict_strict(model, full, label=f"{src} (converted)")
    if dtype is not None:
        model.set_precision(dtype)
    out = model.save_pretrained(out_dir)
    external = (
        len(w2v_drop) if audio_from_argument else 0
    )  # dropped tensors that came from the wav2vec2 folder
    report = ConversionReport(
        source=str(src),
        output=str(out),
        sha256=_sha256(src),
        consumed=len(official) - (len(dropped) - external),
        total=len(official),
        merged_lora=merged,
        modules_to_save=saved,
        dropped=dropped,
        audio_encoder_source=audio_src,
        lora_scale=lora_scale,
        seconds=time.perf_counter() - t0,
    )
    _write_card(out, config, report, model)
    logger.info("%s", report.summary())
    return report


def _write_card(folder: Path, config: UniLSConfig, report: ConversionReport, model: Any) -> None:
    from . import __version__

    def params(prefix: str) -> str:
        n = sum(v.numel() for k, v in model.state_dict().items() if k.startswith(prefix))
        return f"{n:,}"

    w = config.audio_encoder.wav2vec2
    src = Path(report.source)
    lora = (
        f"{len(report.merged_lora)} LoRA adapters merged as W + {report.lora_scale:g} * B @ A "
        f"({', '.join(report.merged_lora[:6])}{', ...' if len(report.merged_lora) > 6 else ''})"
        if report.merged_lora
        else "none (the checkpoint was already merged)"
    )
    text = f"""# {config.name} (converted official UniLS checkpoint)

Converted with unils {__version__} from `{src.name}` ({src.stat().st_size:,} bytes,
sha256 `{report.sha256}`).

| part | size | parameters |
|---|---|---|
| motion codec | {config.codec.hidden_dim} wide, {config.codec.depth} deep, {config.codec.num_heads} heads, scales {list(config.codec.scales)} | {params("codec.")} |
| generator | {config.generator.embed_dim} wide, {config.generator.depth} deep, {config.generator.num_heads} heads | {params("generator.")} |
| audio encoder | wav2vec2, {w.hidden_size} wide, {w.num_hidden_layers} layers, from `{report.audio_encoder_source}` | {params("audio_encoder.")} |

- LoRA: {lora}
- peft modules_to_save copies taken: {len(report.modules_to_save)}
- official tensors consumed: {report.consumed} of {report.total}; dropped (known-harmless): {len(report.dropped)}

UniLS: "End-to-End Audio-Driven Avatars for Unified Listening and Speaking" (CVPR 2026, arXiv 2512.09327).
Use and licence terms are those of the original release and of the wav2vec2 weights.

```python
from unils import UniLS
model = UniLS.from_pretrained("{folder}")
```
"""
    (folder / "README.md").write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------- auto-conversion
_ITER = re.compile(r"^iter_(\d+)$")
_AUDIO_SUBFOLDERS = ("wav2vec2", "audio_encoder", "wav2vec2-xls-r-300m")


def find_official_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The official ``.pt`` inside a folder without ``config.json``, or None.

    The highest ``iter_N.pt`` wins; otherwise the folder must hold exactly one ``.pt``.

    Raises:
        CheckpointError: several ``.pt`` files and no way to choose.
    """
    folder = Path(folder)
    if (folder / "config.json").is_file() or not folder.is_dir():
        return None
    candidates = sorted(p for p in folder.glob("*.pt") if p.is_file())
    if not candidates:
        return None
    iters = [(int(m.group(1)), p) for p in candidates if (m := _ITER.match(p.stem))]
    if iters:
        return max(iters)[1]
    if len(candidates) > 1:
        raise CheckpointError(
            f"{folder} holds several official checkpoints ({', '.join(p.name for p in candidates)}): "
            "convert the one you want with `unils convert FILE OUT_DIR`"
        )
    return candidates[0]


def converted_cache_root() -> Path:
    """Where auto-converted checkpoints live: ``$UNILS_CACHE/converted`` (default ~/.cache/unils/converted)."""
    root = os.environ.get("UNILS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "unils")
    return Path(root) / "converted"


def maybe_convert_official(
    folder: str | os.PathLike[str],
    *,
    audio_encoder: str | os.PathLike[str] | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> Path | None:
    """If ``folder`` holds an official ``.pt`` (and no config.json), convert it once and return the
    converted unils folder; otherwise return None.

    The result is cached under ``cache_root`` (default :func:`converted_cache_root`) by the sha256
    of the source file, so later calls only hash the file. The wav2vec2 weights come from
    ``audio_encoder``, else a ``wav2vec2/`` (or ``audio_encoder/``) subfolder, else the Hub repo
    ``facebook/wav2vec2-xls-r-300m``. The conversion is written to a temporary folder and renamed
    into place, so concurrent loaders never see a half-written copy.
    """
    official = find_official_checkpoint(folder)
    if official is None:
        return None
    root = Path(cache_root) if cache_root is not None else converted_cache_root()
    target = root / _sha256(official)[:16]
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        logger.info("using the converted copy of official checkpoint %s in %s", official, target)
        return target
    if audio_encoder is None:
        sub = next((Path(folder) / n for n in _AUDIO_SUBFOLDERS if (Path(folder) / n).is_dir()), None)
        audio_encoder = sub if sub is not None else DEFAULT_AUDIO_ENCODER
    logger.info(
        "%s is an official UniLS checkpoint: converting it once into %s (audio encoder: %s)",
        official,
        target,
        audio_encoder,
    )
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        convert_official(official, tmp, audio_encoder=audio_encoder, local_files_only=local_files_only)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return target
