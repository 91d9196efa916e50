"""Official UniLS checkpoints (``torch.save({"model", "meta_cfg"})``) -> unils folders.

The steps of a conversion (prefix stripping, LoRA merge, key table, meta_cfg -> config, wav2vec2
sourcing, strict loading) are listed once, in `unils.convert.official`.

Only stage-3 (audio) checkpoints are converted; stage-1 codec and stage-2 audio-free prior
checkpoints are training intermediates and are refused (or skipped when choosing a file).

Modules: `unils.convert.keys` (key table, LoRA merge), `unils.convert.meta`
(meta_cfg -> config, stages), `unils.convert.wav2vec2` (the audio encoder's weights),
`unils.convert.remote` (Hub listing and single-file downloads), `unils.convert.select`
(which checkpoint), `unils.convert.official` (the conversion), `unils.convert.cache`
(converted once, reused).
"""

from __future__ import annotations

from .cache import (
    ConvertedCopy,
    cached_conversion,
    clear_converted,
    converted_cache_root,
    converted_copy,
    find_official_checkpoint,
    list_converted,
    maybe_convert_official,
)
from .keys import (
    convert_state_dict,
    lora_scale_from_meta,
    merge_lora,
    official_to_unils_key,
    unils_to_official_key,
)
from .meta import config_from_meta
from .official import ConversionReport, convert_official, file_sha256, read_official
from .select import Candidate, choose_official, peek_stage
from .wav2vec2 import DEFAULT_AUDIO_ENCODER, load_wav2vec2

__all__ = [
    "DEFAULT_AUDIO_ENCODER",
    "Candidate",
    "ConversionReport",
    "ConvertedCopy",
    "cached_conversion",
    "choose_official",
    "clear_converted",
    "config_from_meta",
    "convert_official",
    "convert_state_dict",
    "converted_cache_root",
    "converted_copy",
    "file_sha256",
    "find_official_checkpoint",
    "list_converted",
    "load_wav2vec2",
    "lora_scale_from_meta",
    "maybe_convert_official",
    "merge_lora",
    "official_to_unils_key",
    "peek_stage",
    "read_official",
    "unils_to_official_key",
]
