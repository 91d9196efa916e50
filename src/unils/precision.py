"""What this device runs natively: the probes behind precision choices (no model code here)."""

from __future__ import annotations

import torch

__all__ = ["cpu_has_native"]


def cpu_has_native(dtype: torch.dtype) -> bool:
    """Whether this CPU runs ``dtype`` matrix work natively (oneDNN bf16/fp16 kernels)."""
    try:
        if dtype == torch.bfloat16:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        if dtype == torch.float16:
            return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):  # older torch builds without the probe
        return False
    return dtype == torch.float32
