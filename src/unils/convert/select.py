"""Choosing the official checkpoint among the files of a folder or Hub repo, without guessing.

Stage-1 (codec) and stage-2 (audio-free prior) checkpoints are skipped: a local file's stage is read
from its metadata only (``torch.load(mmap=True)`` maps the file, tensors are not read), a file that is
not downloaded yet is judged by its path (``unils_codec``, ``unils_freegen``, ``unils_loragen``).

As on the Hub (transformers, diffusers), the top of the folder or repo (or of ``subfolder``) holds the
default model and its subfolders hold variants chosen with ``subfolder=`` or ``filename=``: one
stage-3 checkpoint at the top is the default, whatever the subfolders hold. With none at the top, the
one stage-3 checkpoint of the subfolders is taken. When several remain at the top, or several in the
subfolders with none at the top (sizes, iterations), the error lists each with the exact call that
chooses it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AmbiguousCheckpointError, CheckpointNotFoundError
from .keys import strip_prefixes
from .meta import STAGE_NAMES, stage_from_keys, stage_from_meta

__all__ = [
    "OFFICIAL_SUFFIXES",
    "Candidate",
    "choose_official",
    "official_files",
    "peek_stage",
    "stage_from_path",
]

logger = logging.getLogger("unils")

#: Suffixes of official checkpoint files.
OFFICIAL_SUFFIXES = (".pt", ".pth")
#: Folder names that hold the wav2vec2 weights of a release (never a UniLS checkpoint).
AUDIO_SUBFOLDERS = ("wav2vec2", "audio_encoder", "wav2vec2-xls-r-300m")


@dataclass(frozen=True)
class Candidate:
    """One official checkpoint file and what is known of it.

    Attributes:
        path: path relative to the folder or repo root (``/``-separated).
        stage: training stage (1, 2, 3) or None when unknown.
        basis: how the stage was found: ``"metadata"``, ``"file name"`` or ``"unknown"``.
        size: bytes, when known.
    """

    path: str
    stage: int | None
    basis: str
    size: int | None = None

    def describe(self) -> str:
        """``path (stage-3 audio model, from its metadata)``."""
        what = STAGE_NAMES.get(self.stage or 0, "stage unknown")
        return (
            f"{self.path} ({what}, from its {self.basis})" if self.stage else f"{self.path} (stage unknown)"
        )


def peek_stage(path: str | os.PathLike[str]) -> int | None:
    """Training stage of an official ``.pt`` from its metadata and key names, without reading tensors.

    Returns None when the file cannot be mapped (not a zip-format torch file) or says nothing.
    """
    try:
        obj = torch.load(Path(path), map_location="cpu", mmap=True, weights_only=True)
    except Exception:
        return None
    if not isinstance(obj, Mapping):
        return None
    meta = obj.get("meta_cfg") if isinstance(obj.get("meta_cfg"), Mapping) else None
    stage = stage_from_meta(meta)
    if stage is not None:
        return stage
    state = next(
        (
            obj[k]
            for k in ("model", "state_dict", "model_state_dict", "net")
            if isinstance(obj.get(k), Mapping)
        ),
        obj,
    )
    return stage_from_keys([strip_prefixes(str(k)) for k in state])


def stage_from_path(path: str) -> int | None:
    """Training stage suggested by an official file or folder name (the release's config names)."""
    low = path.lower()
    if "loragen" in low:
        return 3
    if "freegen" in low or "prior" in low:
        return 2
    if "codec" in low or "vae" in low:
        return 1
    return None


def _natural(path: str) -> list[object]:
    # iter_2.pt before iter_10.pt
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def official_files(sizes: Mapping[str, int | None], subfolder: str | None = None) -> dict[str, int | None]:
    """The official checkpoint files among ``sizes`` (relative path -> size), under ``subfolder``."""
    prefix = subfolder.strip("/") + "/" if subfolder else ""
    return {
        p: s
        for p, s in sizes.items()
        if p.startswith(prefix)
        and p.endswith(OFFICIAL_SUFFIXES)
        and not any(part in AUDIO_SUBFOLDERS for part in p.split("/")[:-1])
    }


def _classify(files: Mapping[str, int | None], local: Callable[[str], Path | None]) -> list[Candidate]:
    """Each file as a candidate with its stage (metadata when on disk, else its name), in natural order."""
    out = []
    for path, size in sorted(files.items(), key=lambda kv: _natural(kv[0])):
        on_disk = local(path)
        stage = peek_stage(on_disk) if on_disk is not None else None
        basis = "metadata"
        if stage is None:
            stage, basis = stage_from_path(path), "file name"
        out.append(Candidate(path, stage, basis if stage else "unknown", size))
    return out


def choose_official(
    files: Mapping[str, int | None],
    *,
    label: str,
    call: Callable[[str], str],
    local: Callable[[str], Path | None],
    subfolder: str | None = None,
    filename: str | None = None,
) -> Candidate:
    """The one official checkpoint to convert among ``files``.

    Args:
        files: every file of the folder or repo (relative path -> size).
        label: the folder or repo, for messages.
        call: the exact user call that selects a relative path (shown in the error).
        local: the local file of a relative path when it is on disk, else None (not downloaded).
        subfolder: only consider files under this folder.
        filename: the file the user chose (relative to ``subfolder``): taken as is, nothing else read.

    Raises:
        CheckpointNotFoundError: ``filename`` is not there, or no stage-3 checkpoint is.
        AmbiguousCheckpointError: several candidates remain; each is listed with its call.
    """
    found = official_files(files, subfolder)
    where = f"{label}{'/' + subfolder.strip('/') if subfolder else ''}"
    if filename is not None:
        path = posixpath.join(subfolder.strip("/"), filename) if subfolder else filename
        if path not in files:
            listed = ", ".join(sorted(found)) or "none"
            raise CheckpointNotFoundError(
                f"{where} has no file {filename!r} (official checkpoints there: {listed})"
            )
        return Candidate(path, None, "choice", files[path])
    scope = subfolder.strip("/") + "/" if subfolder else ""
    top = {p: s for p, s in found.items() if "/" not in p[len(scope) :]}
    nested = {p: s for p, s in found.items() if p not in top}
    # the Hub convention: the root holds the default model, subfolders hold variants
    candidates = _classify(top, local)
    kept = [c for c in candidates if c.stage in (3, None)]
    if len(kept) == 1:
        variants = [p for p in sorted(nested, key=_natural) if stage_from_path(p) in (3, None)]
        if variants:
            logger.info(
                "using the default model at the top of %s; the variants in its subfolders are chosen with: %s",
                where,
                "; ".join(call(p) for p in variants),
            )
    elif not kept:  # nothing at the root: the subfolders' one stage-3 checkpoint, if only one
        deeper = _classify(nested, local)
        candidates += deeper
        kept = [c for c in deeper if c.stage in (3, None)]
    for c in candidates:
        if c.stage not in (3, None):
            logger.info("skipping %s: a training intermediate, not the audio model", c.describe())
    if not kept:
        if candidates:
            raise CheckpointNotFoundError(
                f"{where} holds only training intermediates ({'; '.join(c.describe() for c in candidates)}), "
                "no stage-3 audio model (unils_loragen) checkpoint"
            )
        raise CheckpointNotFoundError(
            f"{where} holds no official checkpoint ({', '.join(OFFICIAL_SUFFIXES)} file)"
        )
    if len(kept) > 1:
        calls = [call(c.path) for c in kept]
        lines = "\n".join(f"  {c.describe()}:\n    {k}" for c, k in zip(kept, calls))
        at = "at its top" if all(c.path in top for c in kept) else "in its subfolders (none at its top)"
        raise AmbiguousCheckpointError(
            f"{where} holds several official checkpoints {at} that could be the model; choose one:\n{lines}",
            [c.path for c in kept],
            calls,
        )
    chosen = kept[0]
    logger.info("using %s from %s", chosen.describe(), label)
    return chosen
