"""FLAME mesh and lip losses for stage 1, from a user-supplied FLAME 2020 model (never shipped).

The official codec adds an MSE over all 5023 vertices (x2.0) and over the lip vertices (x0.1), in mm²,
with the head pose zeroed and zero shape. Without a FLAME model the coefficient losses stand alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["flame_vertices"]


def flame_vertices(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """(motion [N, 108] -> vertices [N, V, 3] in metres without head pose, lip vertex indices).

    Raises:
        FileNotFoundError: no file at ``path``.
        FlameError: the file is not a usable FLAME model.
    """
    from ..flame import LIP_INDICES, FlameModel

    flame = FlameModel.from_file(path, device=device)
    flame.requires_grad_(False)

    def vertices(motion: Tensor) -> Tensor:
        return flame.vertices(motion, with_head_pose=False)

    return vertices, torch.tensor(LIP_INDICES.tolist(), dtype=torch.long, device=device)
