"""What a model name means: a bundled name, a local folder or a Hugging Face Hub repo, resolved to a
unils checkpoint folder (``config.json`` + ``model.safetensors``).

A folder or repo holding official ``.pt`` checkpoints instead is resolved to its default stage-3
checkpoint (the one at its top; subfolders hold variants, chosen with ``subfolder=`` or
``filename=``), converted once into the converted cache.
Hub repos are listed first and only the chosen files are downloaded (``hf_hub_download``, which
honours ``HF_HUB_OFFLINE``, ``cache_dir``, ``revision`` and ``token``).
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    is_checkpoint_folder,
    load_state_dict_strict,
    read_checkpoint,
    require_checkpoint_files,
    save_checkpoint,
    state_dict_problems,
)
from .config import UniLSConfig
from .convert import cached_conversion, converted_copy, file_sha256, find_official_checkpoint
from .convert.remote import RepoFiles, fetch_file, is_repo_id, list_repo
from .convert.select import AUDIO_SUBFOLDERS, choose_official
from .convert.wav2vec2 import WAV2VEC2_WEIGHTS
from .errors import CheckpointError, CheckpointNotFoundError

__all__ = [
    "BUNDLED",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "ModelDescription",
    "Resolved",
    "describe_model",
    "load_state_dict_strict",
    "read_checkpoint",
    "resolve",
    "resolve_checkpoint",
    "save_checkpoint",
    "state_dict_problems",
]

logger = logging.getLogger("unils")

#: Names that resolve to checkpoints shipped inside the package (folders under ``unils/assets``).
BUNDLED: dict[str, str] = {"demo": "demo"}


@dataclass
class Resolved:
    """What a model name resolved to.

    Attributes:
        folder: the unils checkpoint folder to load.
        kind: ``"bundled"``, ``"folder"`` or ``"hub"``.
        label: the name as given (with ``@commit`` for Hub repos).
        files: the files of the folder or repo revision that were looked at (path -> bytes).
        official: the official checkpoint converted into ``folder`` (relative path), or None.
        sha256: sha256 of that official file, or None.
    """

    folder: Path
    kind: str
    label: str
    files: dict[str, int | None] = field(default_factory=dict)
    official: str | None = None
    sha256: str | None = None


def _bundled_dir(name: str) -> Path | None:
    sub = BUNDLED.get(name)
    if sub is None:
        return None
    folder = Path(__file__).parent / "assets" / sub
    if not is_checkpoint_folder(folder):
        raise CheckpointNotFoundError(
            f"the bundled {name!r} checkpoint is missing from this installation ({folder}); reinstall unils"
        )
    if name == "demo":
        logger.info(
            "using the bundled demo model: a small model trained on synthetic speech and rule-based motion "
            "(see its model card, %s); use an official checkpoint for real avatars",
            folder / "README.md",
        )
    return folder


def _call(name: str, subfolder: str | None) -> Callable[[str], str]:
    """The exact ``from_pretrained`` call that picks a (root-relative) path."""

    def call(path: str) -> str:
        if subfolder:
            rel = posixpath.relpath(path, subfolder.strip("/"))
            return f'UniLS.from_pretrained("{name}", subfolder="{subfolder.strip("/")}", filename="{rel}")'
        return f'UniLS.from_pretrained("{name}", filename="{path}")'

    return call


def resolve(
    name_or_path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    subfolder: str | None = None,
    audio_encoder: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Resolved:
    """Resolve a model name to a local unils checkpoint folder (see
    [`resolve_checkpoint`][unils.hub.resolve_checkpoint]).

    Returns:
        The folder and how it was found (files looked at, official file converted, its sha256).
    """
    bundled = _bundled_dir(str(name_or_path))
    if bundled is not None:
        return Resolved(bundled, "bundled", str(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _resolve_folder(
            path, str(name_or_path), filename, subfolder, audio_encoder, cache_dir, local_files_only, token
        )
    if path.is_file():
        raise CheckpointNotFoundError(
            f"{name_or_path} is a file; pass the folder that holds it (with filename={path.name!r} for an "
            f"official .pt), or the folder that holds {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    repo_id = str(name_or_path)
    if not is_repo_id(repo_id):
        raise CheckpointNotFoundError(
            f"no folder named {name_or_path!r}, and it is not a Hub repo id of the form 'org/name'"
        )
    listing = list_repo(
        repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )
    return _resolve_repo(listing, filename, subfolder, audio_encoder, local_files_only, token)


def _resolve_folder(
    path: Path,
    label: str,
    filename: str | None,
    subfolder: str | None,
    audio_encoder: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    token: str | bool | None,
) -> Resolved:
    # ``revision`` names a revision of a Hub repo: a local folder has none, and it must not leak into
    # the default wav2vec2 repo (cache_dir, local_files_only and token do apply to that download)
    root = path / subfolder if subfolder else path
    if filename is None and is_checkpoint_folder(root):
        return Resolved(root, "folder", label)
    files: dict[str, int | None] = {
        p.relative_to(path).as_posix(): p.stat().st_size for p in path.rglob("*") if p.is_file()
    }
    official = find_official_checkpoint(path, filename=filename, subfolder=subfolder)
    if official is None:
        require_checkpoint_files(root, label)
        return Resolved(root, "folder", label)  # not reached: the folder lacks a file
    if audio_encoder is None:
        audio_encoder = next(
            (b / n for b in (official.parent, path) for n in AUDIO_SUBFOLDERS if (b / n).is_dir()), None
        )
    sha = file_sha256(official)
    folder = cached_conversion(
        official,
        audio_encoder=audio_encoder,
        sha256=sha,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    return Resolved(folder, "folder", label, files, official.relative_to(path).as_posix(), sha)


def _repo_audio_encoder(
    listing: RepoFiles, checkpoint: str, local_files_only: bool, token: str | bool | None
) -> Path | None:
    """A wav2vec2 folder of the repo itself (beside the checkpoint or at the top): fetch its config
    and one weights file (safetensors first), or None when the repo has none."""
    for base in (posixpath.dirname(checkpoint), ""):
        for name in AUDIO_SUBFOLDERS:
            sub = posixpath.join(base, name) if base else name
            weights = next((f"{sub}/{w}" for w in WAV2VEC2_WEIGHTS if f"{sub}/{w}" in listing.sizes), None)
            if weights is None:
                continue
            local = fetch_file(listing, weights, local_files_only=local_files_only, token=token)
            if f"{sub}/config.json" in listing.sizes:
                fetch_file(listing, f"{sub}/config.json", local_files_only=local_files_only, token=token)
            return local
    return None


def _resolve_repo(
    listing: RepoFiles,
    filename: str | None,
    subfolder: str | None,
    audio_encoder: str | os.PathLike[str] | None,
    local_files_only: bool,
    token: str | bool | None,
) -> Resolved:
    label = listing.pinned
    prefix = subfolder.strip("/") + "/" if subfolder else ""
    unils_files = [prefix + CONFIG_NAME, prefix + WEIGHTS_NAME]
    if filename is None and all(f in listing.sizes for f in unils_files):
        paths = [fetch_file(listing, f, local_files_only=local_files_only, token=token) for f in unils_files]
        return Resolved(paths[1].parent, "hub", label, dict(listing.sizes))
    has_official = any(p.startswith(prefix) and p.endswith((".pt", ".pth")) for p in listing.sizes)
    if filename is None and not has_official:
        missing = [f for f in unils_files if f not in listing.sizes]
        raise CheckpointNotFoundError(
            f"{label}{'/' + prefix.rstrip('/') if prefix else ''} has no {' and no '.join(missing)} and no official "
            f".pt checkpoint; a unils checkpoint needs {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    chosen = choose_official(
        listing.sizes,
        label=label,
        call=_call(listing.repo_id, subfolder),
        local=listing.local_path,
        subfolder=subfolder,
        filename=filename,
    )
    sha = listing.sha256.get(chosen.path)
    done = converted_copy(sha) if sha else None
    if done is not None:  # converted before: nothing to download
        logger.info("using the converted copy of %s %s in %s", label, chosen.path, done)
        return Resolved(done, "hub", label, dict(listing.sizes), chosen.path, sha)
    local = fetch_file(listing, chosen.path, local_files_only=local_files_only, token=token)

    def audio() -> str | os.PathLike[str]:
        if audio_encoder is not None:
            return audio_encoder
        own = _repo_audio_encoder(listing, chosen.path, local_files_only, token)
        from .convert import DEFAULT_AUDIO_ENCODER

        return own if own is not None else DEFAULT_AUDIO_ENCODER

    sha = sha or file_sha256(local)
    folder = cached_conversion(
        local,
        audio_encoder=audio,
        sha256=sha,
        cache_dir=listing.cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    return Resolved(folder, "hub", label, dict(listing.sizes), chosen.path, sha)


def resolve_checkpoint(
    name_or_path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    subfolder: str | None = None,
    audio_encoder: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """Return a local folder holding ``config.json`` and ``model.safetensors``.

    Args:
        name_or_path: a local folder, a bundled name, or a Hub repo id (``"org/name"``).
        filename: official checkpoint to use (relative to the folder/repo and ``subfolder``).
        subfolder: only look inside this folder of the folder/repo.
        audio_encoder: wav2vec2 weights for an official checkpoint (default: the repo's own
            ``wav2vec2/`` folder, else ``facebook/wav2vec2-xls-r-300m``).
        revision: Hub branch, tag or commit.
        cache_dir: Hub cache folder (default: the huggingface_hub cache).
        local_files_only: never touch the network; use the cache only (also implied by HF_HUB_OFFLINE=1).
        token: Hub token for private repos.

    Raises:
        CheckpointNotFoundError: nothing usable was found; the message says where it looked.
        AmbiguousCheckpointError: several stage-3 checkpoints at the top of the folder/repo (or of
            ``subfolder``), or several in its subfolders and none at the top; the message shows the
            call for each. One at the top is the default, whatever the subfolders hold.
    """
    return resolve(
        name_or_path,
        filename=filename,
        subfolder=subfolder,
        audio_encoder=audio_encoder,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    ).folder


@dataclass
class ModelDescription:
    """What a model name resolves to, read from file headers (no weights loaded, nothing generated).

    Attributes:
        resolved: how the name was resolved.
        config: the checkpoint's configuration.
        parameters: parameter count per part (``codec``, ``audio_encoder``, ``generator``) and ``total``.
        dtypes: storage precision -> number of tensors.
        weights_bytes: size of ``model.safetensors``.
        stage: training stage of the official file (3), or None for a unils checkpoint.
    """

    resolved: Resolved
    config: UniLSConfig
    parameters: dict[str, int]
    dtypes: dict[str, int]
    weights_bytes: int
    stage: int | None = None

    def lines(self) -> list[str]:
        """A readable report (what ``unils info`` prints)."""
        r, c = self.resolved, self.config
        out = [f"{r.label} ({r.kind})"]
        if r.official is not None:
            out.append(f"  official checkpoint: {r.official} (stage-3 audio model), sha256 {r.sha256}")
            out.append(f"  converted copy: {r.folder}")
        else:
            out.append(f"  folder: {r.folder}")
        for path, size in sorted(r.files.items()):
            mark = " <- used" if path == r.official else ""
            out.append(f"    {path}  {'?' if size is None else f'{size:,}'} bytes{mark}")
        out.append(
            f"  config: {c.name}; codec {c.codec.hidden_dim} wide x {c.codec.depth} deep, scales {list(c.codec.scales)}; "
            f"generator {c.generator.embed_dim} wide x {c.generator.depth} deep, {c.generator.num_heads} heads; "
            f"audio encoder {c.audio_encoder.type}; {c.fps} fps"
        )
        out.append("  parameters: " + ", ".join(f"{k} {v:,}" for k, v in self.parameters.items()))
        out.append("  precision: " + ", ".join(f"{k} ({n} tensors)" for k, n in sorted(self.dtypes.items())))
        out.append(f"  weights: {self.weights_bytes:,} bytes")
        return out


def describe_model(
    name_or_path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    subfolder: str | None = None,
    audio_encoder: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> ModelDescription:
    """Resolve a name as [`UniLS.from_pretrained`][unils.model.UniLS.from_pretrained] does and describe it
    from file headers.

    An official checkpoint is downloaded and converted (once) like ``from_pretrained`` would; the
    weights themselves are never loaded: shapes and dtypes come from the safetensors header.

    Example:
        ```python
        from unils.hub import describe_model

        print("\n".join(describe_model("demo").lines()))
        ```
    """
    from safetensors import safe_open

    r = resolve(
        name_or_path,
        filename=filename,
        subfolder=subfolder,
        audio_encoder=audio_encoder,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    config = UniLSConfig.load(r.folder / CONFIG_NAME)
    params: dict[str, int] = {}
    dtypes: dict[str, int] = {}
    try:
        with safe_open(str(r.folder / WEIGHTS_NAME), framework="pt") as f:
            for key in f.keys():
                sl = f.get_slice(key)
                n = 1
                for d in sl.get_shape():
                    n *= int(d)
                part = key.split(".", 1)[0]
                params[part] = params.get(part, 0) + n
                dtype = str(sl.get_dtype())
                dtypes[dtype] = dtypes.get(dtype, 0) + 1
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{r.folder / WEIGHTS_NAME} is not a readable safetensors file: {exc}") from exc
    params["total"] = sum(params.values())
    return ModelDescription(
        r, config, params, dtypes, (r.folder / WEIGHTS_NAME).stat().st_size, 3 if r.official else None
    )
