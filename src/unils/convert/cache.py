"""The converted cache: each official checkpoint is converted once, keyed by its sha256, and reused
by every later call and process (``$UNILS_CACHE/converted/<sha256[:16]>/``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from ..checkpoint import is_checkpoint_folder
from ..errors import CheckpointNotFoundError
from .official import convert_official, file_sha256
from .select import AUDIO_SUBFOLDERS, choose_official
from .wav2vec2 import DEFAULT_AUDIO_ENCODER

__all__ = [
    "ConvertedCopy",
    "cached_conversion",
    "clear_converted",
    "converted_cache_root",
    "converted_copy",
    "find_official_checkpoint",
    "list_converted",
    "maybe_convert_official",
]

logger = logging.getLogger("unils")

#: Written next to each converted copy: where it came from.
SOURCE_NAME = "conversion.json"


@dataclass(frozen=True)
class ConvertedCopy:
    """One converted checkpoint in the cache.

    Attributes:
        path: the unils folder (loadable with ``UniLS.from_pretrained``).
        sha256: sha256 of the official file it was converted from.
        source: that file when converted.
        audio_encoder: where its wav2vec2 weights came from.
        size: bytes on disk.
        created: conversion time (seconds since the epoch).
    """

    path: Path
    sha256: str
    source: str
    audio_encoder: str
    size: int
    created: float


def converted_cache_root() -> Path:
    """Where converted checkpoints live: ``$UNILS_CACHE/converted`` (default ~/.cache/unils/converted)."""
    root = os.environ.get("UNILS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "unils")
    return Path(root) / "converted"


def _root(cache_root: str | os.PathLike[str] | None) -> Path:
    return Path(cache_root) if cache_root is not None else converted_cache_root()


def converted_copy(sha256: str, cache_root: str | os.PathLike[str] | None = None) -> Path | None:
    """The converted copy of the official file with this sha256, or None when not converted yet."""
    target = _root(cache_root) / sha256[:16]
    return target if is_checkpoint_folder(target) else None


def cached_conversion(
    official: str | os.PathLike[str],
    *,
    audio_encoder: str | os.PathLike[str] | Callable[[], str | os.PathLike[str]] | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """Convert an official ``.pt`` once into the cache and return the unils folder.

    Args:
        official: the official checkpoint file.
        audio_encoder: wav2vec2 source (see [`convert_official`][unils.convert.official.convert_official]), or
            a function returning it, called only when a conversion is needed (so nothing is downloaded for a
            cached copy). Default: ``facebook/wav2vec2-xls-r-300m``.
        cache_root: default [`converted_cache_root`][unils.convert.cache.converted_cache_root].
        sha256: the file's sha256 when already known (e.g. from the Hub listing).
        revision: Hub revision of ``audio_encoder``.
        cache_dir: Hub cache folder for ``audio_encoder``.
        local_files_only: never use the network for ``audio_encoder``.
        token: Hub token for ``audio_encoder``.

    The conversion is written to a temporary folder and renamed into place, so concurrent loaders
    never see a half-written copy.
    """
    src = Path(official)
    digest = sha256 or file_sha256(src)
    root = _root(cache_root)
    target = root / digest[:16]
    if is_checkpoint_folder(target):
        logger.info("using the converted copy of official checkpoint %s in %s", src, target)
        return target
    source = audio_encoder() if callable(audio_encoder) else audio_encoder
    source = DEFAULT_AUDIO_ENCODER if source is None else source
    logger.info(
        "%s is an official UniLS checkpoint: converting it once into %s (audio encoder: %s)",
        src,
        target,
        source,
    )
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        report = convert_official(
            src,
            tmp,
            audio_encoder=source,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        record = {
            "sha256": report.sha256,
            "source": str(src),
            "audio_encoder": report.audio_encoder_source,
            "unils_version": __version__,
            "created": time.time(),
        }
        (tmp / SOURCE_NAME).write_text(json.dumps(record, indent=2), encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not is_checkpoint_folder(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _local_audio_folder(root: Path, checkpoint: Path) -> Path | None:
    for base in (checkpoint.parent, root):
        sub = next((base / n for n in AUDIO_SUBFOLDERS if (base / n).is_dir()), None)
        if sub is not None:
            return sub
    return None


def find_official_checkpoint(
    folder: str | os.PathLike[str], *, filename: str | None = None, subfolder: str | None = None
) -> Path | None:
    """The official ``.pt`` inside a folder without ``config.json`` (subfolders count), or None.

    Stage-1/2 checkpoints are skipped (read from their metadata); the one stage-3 checkpoint at the
    top of the folder (or of ``subfolder``) is the default, its subfolders hold variants;
    ``filename`` (relative to ``subfolder``) picks a file without reading any other.

    Raises:
        AmbiguousCheckpointError: several candidates at the top, or none there and several in the
            subfolders (each listed with the call that picks it).
        CheckpointNotFoundError: ``filename`` is not there, or only stage-1/2 checkpoints are.
    """
    root = Path(folder)
    if not root.is_dir() or (filename is None and is_checkpoint_folder(root / (subfolder or ""))):
        return None
    files = {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}
    if filename is None and not any(p.endswith((".pt", ".pth")) for p in files):
        return None

    def call(path: str) -> str:
        return f'UniLS.from_pretrained("{root}", filename="{path}")'

    chosen = choose_official(
        files, label=str(root), call=call, local=lambda p: root / p, subfolder=subfolder, filename=filename
    )
    return root / chosen.path


def maybe_convert_official(
    folder: str | os.PathLike[str],
    *,
    filename: str | None = None,
    subfolder: str | None = None,
    audio_encoder: str | os.PathLike[str] | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path | None:
    """If ``folder`` holds an official ``.pt`` (and no config.json), convert it once and return the
    converted unils folder; otherwise return None.

    The wav2vec2 weights come from ``audio_encoder``, else a ``wav2vec2/`` (or ``audio_encoder/``)
    folder beside the checkpoint or at the top of ``folder``, else the Hub repo
    ``facebook/wav2vec2-xls-r-300m``. ``revision``, ``cache_dir``, ``local_files_only`` and ``token``
    apply to that Hub repo.
    """
    official = find_official_checkpoint(folder, filename=filename, subfolder=subfolder)
    if official is None:
        return None
    source = audio_encoder if audio_encoder is not None else _local_audio_folder(Path(folder), official)
    return cached_conversion(
        official,
        audio_encoder=source,
        cache_root=cache_root,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def list_converted(cache_root: str | os.PathLike[str] | None = None) -> list[ConvertedCopy]:
    """Every converted copy in the cache, oldest first."""
    root = _root(cache_root)
    copies = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name.startswith(".") or not is_checkpoint_folder(folder):
            continue
        try:
            record = json.loads((folder / SOURCE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # copies made before the record existed
            record = {}
        copies.append(
            ConvertedCopy(
                path=folder,
                sha256=str(record.get("sha256", folder.name)),
                source=str(record.get("source", "?")),
                audio_encoder=str(record.get("audio_encoder", "?")),
                size=_folder_size(folder),
                created=float(record.get("created", folder.stat().st_mtime)),
            )
        )
    return sorted(copies, key=lambda c: c.created)


def clear_converted(
    cache_root: str | os.PathLike[str] | None = None, *, sha256: str | None = None
) -> list[ConvertedCopy]:
    """Delete converted copies (all, or those whose sha256 starts with ``sha256``); return them.

    Raises:
        CheckpointNotFoundError: ``sha256`` matches no copy.
    """
    copies = [c for c in list_converted(cache_root) if sha256 is None or c.sha256.startswith(sha256.lower())]
    if sha256 is not None and not copies:
        raise CheckpointNotFoundError(
            f"no converted copy whose sha256 starts with {sha256!r} in {_root(cache_root)}"
        )
    for c in copies:
        shutil.rmtree(c.path)
    root = _root(cache_root)
    for leftover in root.glob(".*.tmp-*") if sha256 is None and root.is_dir() else []:
        shutil.rmtree(leftover, ignore_errors=True)  # interrupted conversions
    return copies
