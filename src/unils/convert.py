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

__all__ = [
    "ConversionReport",
    "convert_official",
    "convert_state_dict",
    "official_to_unils_key",
    "unils_to_official_key",
    "merge_lora",
    "config_from_meta",
    "find_official_checkpoint",
]

logger = logging.getLogger("unils")

_PREFIXES = ("module.", "_orig_mod.", "base_model.model.", "model.", "net.")
_GEN_TOP = ("sos_embed", "code_token_embed.", "logits_head.")
_GEN_DECODER_PARAMS = ("lvl_embed.weight", "style_pos", "prev_pos", "self_pos", "other_pos")


@dataclass
class ConversionReport:
    """What a conversion consumed, merged and dropped."""

    source: str
    output: str
    sha256: str
    consumed: int
    merged_lora: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    audio_encoder_source: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"converted {self.source} -> {self.output} in {self.seconds:.1f} s",
            f"  sha256 {self.sha256}",
            f"  {self.consumed} official tensors consumed, {len(self.merged_lora)} LoRA adapters merged",
            f"  audio encoder from {self.audio_encoder_source}",
        ]
        if self.dropped:
            lines.append(f"  dropped {len(self.dropped)}: " + ", ".join(f"{k} ({v})" for k, v in list(self.dropped.items())[:8]))
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


def merge_lora(state: Mapping[str, Tensor], scale: float = 1.0) -> tuple[dict[str, Tensor], list[str], dict[str, str]]:
    """Merge peft adapters: returns (plain state dict, merged module names, dropped keys with reasons).

    ``X.base_layer.weight`` + ``X.lora_A.<a>.weight`` [r, in] + ``X.lora_B.<a>.weight`` [out, r] become
    ``X.weight = W + scale * B @ A`` (float64, cast back); ``M.modules_to_save.<a>.*`` become ``M.*``.
    """
    out: dict[str, Tensor] = {}
    lora: dict[str, dict[str, Tensor]] = {}
    dropped: dict[str, str] = {}
    for key, value in state.items():
        if m := _LORA.match(key):
            lora.setdefault(m["mod"], {})[m["ab"]] = value
        elif m := _SAVED.match(key):
            out[f"{m['mod']}.{m['rest']}"] = value
        elif _ORIG.match(key):
            dropped[key] = "frozen peft original_module (the modules_to_save copy is used)"
        elif ".base_layer." in key:
            out[key.replace(".base_layer.", ".")] = value
        else:
            out.setdefault(key, value)
    merged = []
    for mod, ab in sorted(lora.items()):
        if set(ab) != {"A", "B"}:
            raise CheckpointError(f"LoRA adapter of {mod} lacks lora_{'B' if 'A' in ab else 'A'}")
        wkey = f"{mod}.weight"
        if wkey not in out:
            raise CheckpointError(f"LoRA adapter {mod} has no base_layer weight")
        base = out[wkey]
        delta = ab["B"].double() @ ab["A"].double()
        if delta.shape != base.shape:
            raise CheckpointError(f"LoRA {mod}: B @ A is {list(delta.shape)}, base weight {list(base.shape)}")
        out[wkey] = (base.double() + scale * delta).to(base.dtype)
        merged.append(mod)
    return out, merged, dropped


# ---------------------------------------------------------------------------------- config
def config_from_meta(meta: Mapping[str, Any] | None, state: Mapping[str, Tensor], w2v: Wav2Vec2Config | None) -> UniLSConfig:
    """UniLSConfig from the official ``meta_cfg`` (MODEL block), checked against tensor shapes."""
    model = dict((meta or {}).get("MODEL", {}))
    vae = dict(model.get("VAE_CONFIG", {}))
    try:
        hidden = int(vae.get("T_HIDDEN_DIM") or state["codec.encoder.inp_mapping.0.weight"].shape[0])
        depth_c = int(vae.get("T_DEPTH") or sum(1 for k in state if re.match(r"codec\.encoder\.encoder_transformer\.\d+\.to_qkv\.weight$", k)))
        embed = int(model.get("T_EMBED_DIM") or state["generator.sos_embed"].shape[-1])
        depth_g = int(model.get("T_DEPTH") or sum(1 for k in state if re.match(r"generator\.blocks\.\d+\.self_attn\.to_qkv\.weight$", k)))
        scales = tuple(int(s) for s in vae.get("V_PATCH_NUMS", ())) or None
        if scales is None:
            n_levels = state["generator.lvl_embed.weight"].shape[0]
            scales = {5: (1, 5, 25, 50, 100), 4: (1, 25, 50, 100)}.get(n_levels)
            if scales is None:
                raise CheckpointError("cannot infer the scale schedule: pass a checkpoint with meta_cfg")
    except KeyError as exc:
        raise CheckpointError(f"not an official UniLS generator checkpoint: missing {exc}") from exc
    heads_c = int(vae.get("T_NUM_HEADS") or hidden // 64)
    heads_g = int(model.get("T_NUM_HEAD") or embed // 64)
    audio = str(model.get("AUDIO_ENCODER", "wav2vec"))
    if audio != "wav2vec":
        raise CheckpointError(f"official AUDIO_ENCODER {audio!r} is not supported (only 'wav2vec')")
    cfg = UniLSConfig(
        codec=CodecConfig(
            motion_dim=int(vae.get("MOTION_DIM", 108)), hidden_dim=hidden, depth=depth_c, num_heads=heads_c,
            code_dim=int(vae.get("V_CODE_DIM", 32)), scales=scales,
        ),
        generator=GeneratorConfig(embed_dim=embed, depth=depth_g, num_heads=heads_g),
        audio_encoder=AudioEncoderConfig(type="wav2vec2", wav2vec2=w2v or Wav2Vec2Config()),
        name=str((meta or {}).get("EXP_STR") or model.get("NAME") or "unils-official"),
    )
    return cfg.validate()


# ---------------------------------------------------------------------------------- audio encoder
def _load_wav2vec2(source: str | os.PathLike[str], revision: str | None, cache_dir: Any, local_files_only: bool) -> tuple[dict[str, Tensor], Wav2Vec2Config, str]:
    from .nn.wav2vec2 import config_from_hf

    path = Path(source)
    if path.is_file():
        folder, files = path.parent, [path]
    elif path.is_dir():
        folder, files = path, [path / "model.safetensors", path / "pytorch_model.bin"]
    else:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            folder = Path(
                snapshot_download(
                    str(source), revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
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
        sd = torch.load(weights, map_location="cpu", weights_only=True)
    cfg_file = folder / "config.json"
    hf_cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    return sd, config_from_hf(hf_cfg), str(weights)


# ---------------------------------------------------------------------------------- main entry
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_official(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """Read an official ``.pt``: (state dict, meta_cfg or None). Uses ``weights_only=True``."""
    p = Path(path)
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
            return dict(obj[key]), meta
    if all(isinstance(v, Tensor) for v in obj.values()):
        return dict(obj), meta
    raise CheckpointError(f"{p} has no model/state_dict entry (keys: {sorted(obj)[:8]})")


def convert_state_dict(
    official: Mapping[str, Tensor], lora_scale: float = 1.0
) -> tuple[dict[str, Tensor], dict[str, Tensor], list[str], dict[str, str]]:
    """Official state dict -> (our generator/codec tensors, wav2vec2 tensors found, merged, dropped)."""
    stripped = {_strip(k): v for k, v in official.items()}
    plain, merged, dropped = merge_lora(stripped, lora_scale)
    ours: dict[str, Tensor] = {}
    audio: dict[str, Tensor] = {}
    for key, value in plain.items():
        if key.startswith("audio_encoder."):
            audio[key[len("audio_encoder.") :]] = value
        elif key.startswith("face_decoder."):
            dropped[key] = "FLAME decoder (training only)"
        else:
            ours[official_to_unils_key(key)] = value
    if not any(k.startswith("generator.") for k in ours):
        raise CheckpointError(
            "this is a stage-1 codec checkpoint (no generator): convert the stage-3 (audio) checkpoint; "
            "codec and prior checkpoints are training intermediates"
        )
    if not any(".self_audio_attn." in k for k in ours):
        raise CheckpointError(
            "this is a stage-2 audio-free prior (no audio cross-attention): convert the stage-3 checkpoint"
        )
    return ours, audio, merged, dropped


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
        checkpoint: the official ``.pt`` file.
        out_dir: output folder (config.json, model.safetensors, README.md).
        audio_encoder: wav2vec2 weights when the checkpoint has none (the official ones never do):
            a transformers folder, a weights file, or a Hub repo id such as
            ``facebook/wav2vec2-xls-r-300m``.
        dtype: storage precision of the written tensors (float32 default).
        lora_scale: alpha / r of unmerged LoRA adapters (default: from meta_cfg, else 1.0 as the
            official r = alpha = 32).
        revision, cache_dir, local_files_only: Hub options for ``audio_encoder``.

    Raises:
        CheckpointError: unknown, missing or misshapen tensors (named), or an unsupported stage.
        CheckpointNotFoundError: missing checkpoint or audio encoder weights.
    """
    from .hub import load_state_dict_strict
    from .model import UniLS
    from .nn.wav2vec2 import convert_hf_state_dict

    t0 = time.perf_counter()
    src = Path(checkpoint)
    official, meta = read_official(src)
    if lora_scale is None:
        lora_cfg = (meta or {}).get("LORA", {}) if meta else {}
        lora_scale = float(lora_cfg.get("ALPHA", 32)) / float(lora_cfg.get("R", 32)) if lora_cfg else 1.0
    ours, audio, merged, dropped = convert_state_dict(official, lora_scale)
    if audio and audio_encoder is None:
        audio_src = f"{src} (audio_encoder.* tensors)"
        w2v_cfg = _infer_w2v_config(audio)
        audio_sd = audio
    elif audio_encoder is not None:
        audio_sd, w2v_cfg, audio_src = _load_wav2vec2(audio_encoder, revision, cache_dir, local_files_only)
        if audio:
            dropped.update({f"audio_encoder.{k}": "replaced by --audio-encoder" for k in audio})
    else:
        raise CheckpointNotFoundError(
            "the official checkpoint holds no wav2vec2 weights (they are never saved there); pass "
            "audio_encoder= / --audio-encoder with a transformers wav2vec2 folder or repo, e.g. "
            "facebook/wav2vec2-xls-r-300m"
        )
    config = config_from_meta(meta, ours, w2v_cfg)
    model = UniLS(config)
    expected_audio = {k[len("audio_encoder.") :] for k in model.state_dict() if k.startswith("audio_encoder.")}
    dropped.update({k: "wav2vec2 pre-training only" for k in audio_sd if _is_pretraining_key(k)})
    audio_ours = convert_hf_state_dict(audio_sd, expected_audio)
    full = {**ours, **{f"audio_encoder.{k}": v for k, v in audio_ours.items()}}
    load_state_dict_strict(model, full, label=f"{src} (converted)")
    if dtype is not None:
        model.set_precision(dtype)
    out = model.save_pretrained(out_dir)
    report = ConversionReport(
        source=str(src), output=str(out), sha256=_sha256(src), consumed=len(official), merged_lora=merged,
        dropped=dropped, audio_encoder_source=audio_src, seconds=time.perf_counter() - t0,
    )
    _write_card(out, config, report)
    logger.info("%s", report.summary())
    return report


def _is_pretraining_key(key: str) -> bool:
    k = key[len("wav2vec2.") :] if key.startswith("wav2vec2.") else key
    return k.startswith(("quantizer.", "project_q.", "project_hid.")) or k == "masked_spec_embed"


def _infer_w2v_config(sd: Mapping[str, Tensor]) -> Wav2Vec2Config:
    def get(name: str) -> Tensor:
        for k in (name, "wav2vec2." + name):
            if k in sd:
                return sd[k]
        raise CheckpointError(f"audio encoder tensors lack {name}")

    hidden = get("feature_projection.projection.weight").shape[0]
    layers = len({m.group(1) for k in sd if (m := re.search(r"encoder\.layers\.(\d+)\.", k))})
    inner = get("encoder.layers.0.feed_forward.intermediate_dense.weight").shape[0]
    convs = sorted({int(m.group(1)) for k in sd if (m := re.search(r"conv_layers\.(\d+)\.conv\.weight", k))})
    conv_dim = tuple(get(f"feature_extractor.conv_layers.{i}.conv.weight").shape[0] for i in convs)
    conv_kernel = tuple(get(f"feature_extractor.conv_layers.{i}.conv.weight").shape[2] for i in convs)
    v = sd.get("encoder.pos_conv_embed.conv.weight_v", sd.get("encoder.pos_conv_embed.conv.parametrizations.weight.original1"))
    if v is None:
        raise CheckpointError("audio encoder tensors lack the positional convolution")
    default = Wav2Vec2Config()
    return Wav2Vec2Config(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64), intermediate_size=inner,
        conv_dim=conv_dim, conv_kernel=conv_kernel,
        conv_stride=default.conv_stride if len(convs) == 7 else tuple([5] + [2] * (len(convs) - 1)),
        num_conv_pos_embeddings=v.shape[2], num_conv_pos_embedding_groups=hidden // v.shape[1],
    )


def _write_card(folder: Path, config: UniLSConfig, report: ConversionReport) -> None:
    from . import __version__

    text = f"""# {config.name} (converted official UniLS checkpoint)

Converted with unils {__version__} from `{Path(report.source).name}` (sha256 `{report.sha256}`).

- codec: {config.codec.hidden_dim} wide, {config.codec.depth} deep, scales {list(config.codec.scales)}
- generator: {config.generator.embed_dim} wide, {config.generator.depth} deep, {config.generator.num_heads} heads
- audio encoder: wav2vec2 ({config.audio_encoder.wav2vec2.num_hidden_layers} layers) from `{report.audio_encoder_source}`
- LoRA adapters merged: {len(report.merged_lora)}
- official tensors consumed: {report.consumed}

UniLS: "End-to-End Audio-Driven Avatars for Unified Listening and Speaking" (CVPR 2026, arXiv 2512.09327).
Use and licence terms are those of the original release.

```python
from unils import UniLS
model = UniLS.from_pretrained("{folder}")
```
"""
    (folder / "README.md").write_text(text, encoding="utf-8")


def find_official_checkpoint(folder: Path) -> Path | None:
    """The official ``.pt`` inside a folder without ``config.json`` (newest ``iter_*.pt`` first)."""
    if (folder / "config.json").is_file():
        return None
    candidates = sorted(folder.glob("*.pt"), key=lambda p: (p.stem.startswith("iter_"), p.stat().st_mtime))
    return candidates[-1] if candidates else None
