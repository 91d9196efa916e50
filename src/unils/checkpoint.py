"""unils checkpoint folders on disk: ``config.json`` + ``model.safetensors``, and strict loading.

Knows nothing about the Hub or the official format: [`unils.hub`][unils.hub] finds folders,
[`unils.convert`][unils.convert] writes them from official checkpoints, and both use these functions to read,
write and check them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ._version import __version__
from .config import UniLSConfig
from .errors import CheckpointError, CheckpointNotFoundError

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "is_checkpoint_folder",
    "load_state_dict_strict",
    "read_checkpoint",
    "require_checkpoint_files",
    "save_checkpoint",
    "state_dict_problems",
]

logger = logging.getLogger("unils")

#: File name of a checkpoint folder's configuration (a [`UniLSConfig`][unils.config.UniLSConfig] as JSON).
CONFIG_NAME = "config.json"
#: File name of a checkpoint folder's weights (safetensors, motion statistics included).
WEIGHTS_NAME = "model.safetensors"


def is_checkpoint_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds both ``config.json`` and ``model.safetensors``."""
    p = Path(folder)
    return (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file()


def require_checkpoint_files(folder: str | os.PathLike[str], label: str) -> None:
    """Raise unless ``folder`` is a unils checkpoint folder.

    Raises:
        CheckpointNotFoundError: ``config.json`` or ``model.safetensors`` is missing (both named).
    """
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (Path(folder) / n).is_file()]
    if missing:
        raise CheckpointNotFoundError(
            f"{label} has no {' and no '.join(missing)}; a unils checkpoint folder needs {CONFIG_NAME} "
            f"and {WEIGHTS_NAME} (write one with save_pretrained, or `unils convert` an official checkpoint)"
        )


def read_checkpoint(folder: str | os.PathLike[str]) -> tuple[UniLSConfig, dict[str, torch.Tensor]]:
    """Config and tensors of a checkpoint folder (safetensors only: no pickle at run time).

    Raises:
        ConfigError: config.json is malformed.
        CheckpointError: model.safetensors is not readable.
    """
    folder = Path(folder)
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

    Args:
        module: the module whose ``state_dict`` is the reference.
        tensors: the tensors to check.
        describe: formats a key for the message (the converter adds the official name).

    Returns:
        One readable line per kind of problem, each naming the tensors (at most 12, then a count).
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


def load_state_dict_strict(
    module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], label: str = "checkpoint"
) -> None:
    """Load ``tensors`` into ``module``; any missing, unexpected or misshapen tensor is one error.

    Raises:
        CheckpointError: the tensors do not fit; the message names each bad tensor.
    """
    problems = state_dict_problems(module, tensors)
    if problems:
        raise CheckpointError(
            f"{label} does not match the model built from its config.json: "
            + "; ".join(problems)
            + ". Was it written by another version or converted with the wrong config?"
        )
    module.load_state_dict(dict(tensors), strict=True)


def save_checkpoint(
    folder: str | os.PathLike[str], config: UniLSConfig, state: Mapping[str, torch.Tensor]
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created if needed)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / CONFIG_NAME)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt", "unils_version": __version__})
    logger.info("saved %s (%d tensors) to %s", config.name, len(tensors), out)
    return out
