"""Smaller checkpoint files: weight matrices stored in half precision.

Loading casts them back to the model's float32 parameters, so only storage shrinks (to about half);
vectors (biases, norms) and the codec's normalisation statistics keep float32. The bundled demo
model is written this way.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..hub import read_checkpoint, save_checkpoint

__all__ = ["compact_checkpoint"]


def compact_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], dtype: torch.dtype = torch.float16
) -> Path:
    """Copy the checkpoint folder ``src`` to ``dst`` with every 2-D+ floating tensor cast to ``dtype``.

    Raises:
        ValueError: a weight does not fit ``dtype``'s range (it would become infinite).
    """
    config, tensors = read_checkpoint(Path(src))
    out = {}
    for key, value in tensors.items():
        if value.is_floating_point() and value.dim() >= 2 and not key.startswith("codec.motion_"):
            cast = value.to(dtype)
            if not torch.isfinite(cast).all():
                raise ValueError(f"{key} does not fit {dtype} (max |w| = {value.abs().max():.3g})")
            out[key] = cast
        else:
            out[key] = value
    return save_checkpoint(dst, config, out)
