"""Finding checkpoint files (local folder, Hub repo, Hub cache, bundled names) and strict loading.

A unils checkpoint is a folder with ``config.json`` and ``model.safetensors``. Anything that is not a
local folder is treated as a Hugging Face Hub repo id and resolved with ``huggingface_hub``, which
honours ``HF_HUB_OFFLINE``, ``cache_dir``, ``revision`` and ``token``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import UniLSConfig
from .errors import CheckpointError, CheckpointNotFoundError

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "resolve_checkpoint", "load_state_dict_strict", "save_checkpoint"]

logger = logging.getLogger("unils")

#: File name of a checkpoint folder's configuration (a :class:`~unils.UniLSConfig` as JSON).
CONFIG_NAME = "config.json"
#: File name of a checkpoint folder's weights (safetensors, motion statistics included).
WEIGHTS_NAME = "model.safetensors"
#: Names that resolve to checkpoints shipped inside the package (folders under ``unils/assets``).
BUNDLED: dict[str, str] = {"demo": "demo"}


def _bundled_dir(name: str) -> Path | None:
    sub = BUNDLED.get(name)
    if sub is None:
        return None
    folder = Path(__file__).parent / "assets" / sub
    if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise CheckpointNotFoundError(
            f"the bundled {name!r} checkpoint is missing from this installation ({folder}); reinstall unils"
        )
    if name == "demo":
        logger.info(
            "using the bundled demo model: a small model trained on synthetic speech and rule-based motion "
            "(see its model card, %s); use an official checkpoint for real avatars", folder / "README.md"
        )
    return folder


def resolve_checkpoint(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """Return a local folder holding ``config.json`` and ``model.safetensors``.

    Args:
        name_or_path: a local folder, a bundled name, or a Hub repo id (``"org/name"``).
        revision: Hub branch, tag or commit.
        cache_dir: Hub cache folder (default: the huggingface_hub cache).
        local_files_only: never touch the network; use the cache only (also implied by HF_HUB_OFFLINE=1).
        token: Hub token for private repos.

    Raises:
        CheckpointNotFoundError: nothing usable was found; the message says where it looked.
    """
    bundled = _bundled_dir(str(name_or_path))
    if bundled is not None:
        return bundled
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _maybe_converted(path, str(name_or_path), cache_dir, local_files_only, token)
    if path.is_file():
        raise CheckpointNotFoundError(
            f"{name_or_path} is a file; pass the folder that holds {CONFIG_NAME} and {WEIGHTS_NAME}, "
            "or convert an official .pt checkpoint with `unils convert`"
        )
    repo_id = str(name_or_path)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        raise CheckpointNotFoundError(
            f"no folder named {name_or_path!r}, and it is not a Hub repo id of the form 'org/name'"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "*.md", "*.pt", "*.json"],
        )
    except LocalEntryNotFoundError as exc:
        raise CheckpointNotFoundError(
            f"{repo_id} (revision {revision or 'main'}) is not in the local Hub cache"
            f"{' ' + str(cache_dir) if cache_dir else ''} and downloading is disabled "
            "(offline mode or local_files_only=True); download it once with network access"
        ) from exc
    except HfHubHTTPError as exc:
        raise CheckpointNotFoundError(f"could not fetch {repo_id} from the Hub: {exc}") from exc
    except ValueError as exc:  # e.g. malformed repo id
        raise CheckpointNotFoundError(f"{repo_id!r} is not a valid Hub repo id: {exc}") from exc
    return _maybe_converted(Path(folder), repo_id, cache_dir, local_files_only, token)


def _maybe_converted(folder: Path, label: str, cache_dir: object, local_files_only: bool, token: object) -> Path:
    """A unils folder as is; a folder holding an official ``.pt`` is converted once into the cache."""
    from .convert import maybe_convert_official

    converted = maybe_convert_official(folder, local_files_only=local_files_only)
    if converted is not None:
        return converted
    _require_files(folder, label)
    return folder


def _require_files(folder: Path, label: str) -> None:
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise CheckpointNotFoundError(
            f"{label} has no {' and no '.join(missing)}; a unils checkpoint folder needs {CONFIG_NAME} "
            f"and {WEIGHTS_NAME} (write one with save_pretrained, or `unils convert` an official checkpoint)"
        )


def read_checkpoint(folder: Path) -> tuple[UniLSConfig, dict[str, torch.Tensor]]:
    """Read config and tensors of a resolved folder (safetensors only: no pickle at run time)."""
    config = UniLSConfig.load(folder / CONFIG_NAME)
    try:
        tensors = load_file(str(folder / WEIGHTS_NAME))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{folder / WEIGHTS_NAME} is not a readable safetensors file: {exc}") from exc
    return config, tensors


def _summarise(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def state_dict_problems(
    module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], describe: Callable[[str], str] = str
) -> list[str]:
    """Missing, unexpected and misshapen tensors of ``tensors`` against ``module`` (empty when it fits).

    ``describe`` formats a key for the message (the converter adds the official name).
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshapen = sorted(
        f"{describe(k)} (checkpoint {list(tensors[k].shape)}, model {list(expected[k].shape)})"
        for k in set(expected) & set(tensors)
        if tuple(tensors[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    for what, names in (
        ("missing", [describe(k) for k in missing]),
        ("unexpected", [describe(k) for k in unexpected]),
        ("misshapen", misshapen),
    ):
        if names:
            problems.append(f"{len(names)} {what}: {_summarise(names)}")
    return problems


def load_state_dict_strict(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], label: str = "checkpoint") -> None:
    """Load ``tensors`` into ``module``; any missing, unexpected or misshapen tensor is one CheckpointError."""
    problems = state_dict_problems(module, tensors)
    if problems:
        raise CheckpointError(
            f"{label} does not match the model built from its config.json: " + "; ".join(problems)
            + ". Was it written by another version or converted with the wrong config?"
        )
    module.load_state_dict(dict(tensors), strict=True)


def save_checkpoint(folder: str | os.PathLike[str], config: UniLSConfig, state: Mapping[str, torch.Tensor]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created if needed)."""
    from . import __version__

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / CONFIG_NAME)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt", "unils_version": __version__})
    logger.info("saved %s (%d tensors) to %s", config.name, len(tensors), out)
    return out
