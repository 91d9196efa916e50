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

from .._version import __version__
from ..checkpoint import load_state_dict_strict, save_checkpoint, state_dict_problems
from ..config import UniLSConfig
from ..errors import CheckpointError, CheckpointNotFoundError
from ..nn.build import UniLSModules
from ..nn.wav2vec2 import convert_hf_state_dict
from ..precision import choose_precision
from .keys import convert_state_dict, lora_scale_from_meta, unils_to_official_key
from .meta import config_from_meta
from .wav2vec2 import DEFAULT_AUDIO_ENCODER, infer_wav2vec2_config, load_wav2vec2, wav2vec2_drop_reason

__all__ = ["ConversionReport", "convert_official", "file_sha256", "read_official"]

logger = logging.getLogger("unils")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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


# ---------------------------------------------------------------------------------- reading
def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file. A Hub cache file (a link to a blob named by its sha256) is not read again."""
    p = Path(path)
    blob = p.resolve().name
    if p.is_symlink() and _SHA256.match(blob):
        return blob
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


def _check_fit(model: torch.nn.Module, tensors: Mapping[str, Tensor], src: Path) -> None:
    """Every model tensor filled with the right shape and every converted tensor used, or one
    CheckpointError listing the offenders under our and the official names."""

    def both(key: str) -> str:
        try:
            return f"{key} [official {unils_to_official_key(key)}]"
        except CheckpointError:
            return key

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
    token: str | bool | None = None,
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
        token: Hub token for ``audio_encoder``.

    Raises:
        CheckpointError: unknown, missing or misshapen tensors (named), meta_cfg disagreeing with
            the tensors, or a stage-1/stage-2 checkpoint.
        CheckpointNotFoundError: missing checkpoint or audio encoder weights.
    """
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
    if audio_encoder is not None:
        audio_sd, w2v_cfg, audio_src = load_wav2vec2(
            audio_encoder, revision, cache_dir, local_files_only, token
        )
        dropped.update({f"audio_encoder.{k}": "replaced by the audio_encoder argument" for k in audio})
    elif audio:
        audio_sd, w2v_cfg, audio_src = audio, infer_wav2vec2_config(audio), f"{src} (audio_encoder.* tensors)"
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
    model = UniLSModules(config)
    expected_audio = {
        k[len("audio_encoder.") :] for k in model.state_dict() if k.startswith("audio_encoder.")
    }
    w2v_drop = {k: r for k in audio_sd if (r := wav2vec2_drop_reason(k))}
    prefix = "" if audio_from_argument else "audio_encoder."
    dropped.update({prefix + k: r for k, r in w2v_drop.items()})
    audio_ours = convert_hf_state_dict(
        {k: v for k, v in audio_sd.items() if k not in w2v_drop}, expected_audio
    )
    full = {**ours, **{f"audio_encoder.{k}": v for k, v in audio_ours.items()}}
    _check_fit(model, full, src)
    load_state_dict_strict(model, full, label=f"{src} (converted)")
    if dtype is not None:
        model.cast_to(choose_precision(dtype, "cpu"))
    out = save_checkpoint(out_dir, config, model.state_dict())
    external = (
        len(w2v_drop) if audio_from_argument else 0
    )  # dropped tensors that came from the wav2vec2 folder
    report = ConversionReport(
        source=str(src),
        output=str(out),
        sha256=file_sha256(src),
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
