"""Which precision runs fastest on this device, and the one int8 transformation unils offers.

``UniLS.from_pretrained(dtype="auto")`` (the default) asks :func:`choose_precision`: bfloat16 for the
audio encoder and the generator where the device runs it natively (CUDA with bfloat16 support, CPUs
with AVX512-BF16 or AMX), float32 elsewhere. The motion codec always stays float32. float32 is the
exact reference: parity with the official implementation is checked in float32. The environment
variable ``UNILS_DTYPE`` (e.g. ``float32``) replaces the automatic choice without code changes.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "PRECISIONS",
    "Precision",
    "choose_precision",
    "cpu_has_native",
    "cpu_kind",
    "quantize_linear_int8",
    "ENV_VAR",
]

logger = logging.getLogger("unils")

#: Names accepted wherever a precision is chosen (``from_pretrained(dtype=...)``, ``--dtype``).
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
#: Environment variable that replaces the automatic choice (one of :data:`PRECISIONS` but "auto").
ENV_VAR = "UNILS_DTYPE"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def cpu_kind() -> str:
    """This CPU in a few words, written next to every speed figure: vector ISA and native bfloat16."""
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{capability}, {'native' if cpu_has_native(torch.bfloat16) else 'no native'} bfloat16"


@dataclass(frozen=True)
class Precision:
    """The number formats a model computes in (``model.precision``).

    Attributes:
        name: ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"int8"``.
        audio_encoder: format of the audio encoder's matrix work (``"int8"``: dynamic int8 linear
            layers in the transformer, float32 elsewhere).
        generator: format of the token generator.
        codec: format of the motion codec (always float32: it is small and decodes the output).
        reason: why this precision was chosen (the device probe, an explicit request, the environment).
    """

    name: str
    audio_encoder: str
    generator: str
    codec: str = "float32"
    reason: str = ""

    def __str__(self) -> str:
        return self.name

    @property
    def exact(self) -> bool:
        """Whether this is the exact float32 reference path."""
        return self.name == "float32"

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of the generator's parameters."""
        return _DTYPES[self.generator]


def _named(name: str, reason: str) -> Precision:
    if name == "int8":
        return Precision("int8", audio_encoder="int8", generator="float32", reason=reason)
    return Precision(name, audio_encoder=name, generator=name, reason=reason)


def _name_of(requested: str | torch.dtype) -> str:
    if isinstance(requested, torch.dtype):
        for name, dtype in _DTYPES.items():
            if dtype == requested:
                return name
        raise ValueError(f"dtype {requested} is not supported: use one of {', '.join(PRECISIONS)}")
    name = str(requested).lower().removeprefix("torch.")
    if name not in PRECISIONS:
        raise ValueError(f"precision {requested!r} is not supported: use one of {', '.join(PRECISIONS)}")
    return name


def choose_precision(requested: str | torch.dtype | None, device: torch.device | str) -> Precision:
    """The precision for ``requested`` on ``device``: ``"auto"`` (or None) picks the fastest native one.

    Args:
        requested: ``"auto"``/None, a name of :data:`PRECISIONS`, or a torch dtype.
        device: where the model runs.

    Raises:
        ValueError: an unknown precision, or int8 on a device other than the CPU.
    """
    device = torch.device(device)
    name = "auto" if requested is None else _name_of(requested)
    reason = "requested"
    if name == "auto" and os.environ.get(ENV_VAR):
        name, reason = _name_of(os.environ[ENV_VAR]), f"${ENV_VAR}"
        if name == "auto":
            reason = "auto"
    if name == "auto":
        if device.type == "cuda":
            native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            name = "bfloat16" if native else "float32"
            reason = f"auto: CUDA {'with' if native else 'without'} bfloat16"
        elif device.type == "cpu":
            native = cpu_has_native(torch.bfloat16)
            name = "bfloat16" if native else "float32"
            reason = f"auto: CPU {cpu_kind()}"
        else:
            name, reason = "float32", f"auto: {device.type}"
    if name == "int8" and device.type != "cpu":
        raise ValueError("int8 runs on the CPU only (dynamic int8 linear layers); use bfloat16 on GPUs")
    return _named(name, reason)


def quantize_linear_int8(module: nn.Module) -> int:
    """Replace every ``nn.Linear`` inside ``module`` by a dynamic int8 linear layer, in place.

    Weights are quantized once (per tensor, int8); activations are quantized on every call from their
    own range (torch's dynamic scheme). CPU only. Returns the number of layers replaced.
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import default_dynamic_qconfig

    count = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            child.qconfig = default_dynamic_qconfig  # type: ignore[assignment]
            with warnings.catch_warnings():
                # torch points eager-mode quantization users to torchao; the kernels are the same.
                warnings.simplefilter("ignore")
                setattr(module, name, DynamicLinear.from_float(child))
            count += 1
        else:
            count += quantize_linear_int8(child)
    return count
