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

from .errors import ConfigError

__all__ = [
    "PRECISIONS",
    "dtype_of",
    "Precision",
    "choose_precision",
    "cpu_has_native",
    "cpu_kind",
    "quantize_linear_int8",
    "autocast_name",
    "ENV_VAR",
]

logger = logging.getLogger("unils")

#: Names accepted wherever a precision is chosen (``from_pretrained(dtype=...)``, ``--dtype``).
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
#: Environment variable that replaces the automatic choice (one of :data:`PRECISIONS` but "auto").
ENV_VAR = "UNILS_DTYPE"

#: The one table from precision names to torch dtypes (int8 computes its activations in float32).
_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "int8": torch.float32,
}


def dtype_of(name: str) -> torch.dtype:
    """The torch dtype of a precision name (``"int8"``: float32 activations around int8 weights)."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise ConfigError(
            f"precision {name!r} is not supported: use one of {', '.join(PRECISIONS)}"
        ) from None


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
        audio_autocast: ``"bfloat16"``/``"float16"`` to run the audio encoder under autocast, else None.
    """

    name: str
    audio_encoder: str
    generator: str
    codec: str = "float32"
    reason: str = ""
    audio_autocast: str | None = None

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

    @property
    def audio_dtype(self) -> torch.dtype:
        """The torch dtype the audio encoder takes its input in (float32 around int8 weights)."""
        return _DTYPES[self.audio_encoder]

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of the audio encoder, or None."""
        return None if self.audio_autocast is None else _DTYPES[self.audio_autocast]


def _named(name: str, reason: str) -> Precision:
    if name == "int8":
        return Precision("int8", audio_encoder="int8", generator="float32", reason=reason)
    return Precision(name, audio_encoder=name, generator=name, reason=reason)


def _name_of(requested: str | torch.dtype) -> str:
    if isinstance(requested, torch.dtype):
        for name in ("float32", "bfloat16", "float16"):
            if _DTYPES[name] == requested:
                return name
        raise ConfigError(f"dtype {requested} is not supported: use one of {', '.join(PRECISIONS)}")
    if not isinstance(requested, str):
        raise ConfigError(
            f"precision must be a name ({', '.join(PRECISIONS)}) or a torch dtype, got {requested!r}"
        )
    name = requested.lower().removeprefix("torch.")
    if name not in PRECISIONS:
        raise ConfigError(f"precision {requested!r} is not supported: use one of {', '.join(PRECISIONS)}")
    return name


def choose_precision(requested: str | torch.dtype | None, device: torch.device | str) -> Precision:
    """The precision for ``requested`` on ``device``: ``"auto"`` (or None) picks the fastest native one.

    Args:
        requested: ``"auto"``/None, a name of :data:`PRECISIONS`, or a torch dtype.
        device: where the model runs.

    Raises:
        ConfigError: an unknown precision, or int8 on a device other than the CPU (a ``ValueError``).
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
        raise ConfigError("int8 runs on the CPU only (dynamic int8 linear layers); use bfloat16 on GPUs")
    return _named(name, reason)


def autocast_name(dtype: torch.dtype | str | None) -> str | None:
    """The audio-autocast name of ``dtype``: ``"bfloat16"``, ``"float16"``, or None (no autocast).

    Raises:
        ConfigError: another dtype.
    """
    if dtype is None:
        return None
    name = _name_of(dtype)
    if name == "float32":
        return None
    if name not in ("bfloat16", "float16"):
        raise ConfigError(
            f"audio autocast runs in bfloat16 or float16 (or None to switch it off), got {dtype!r}"
        )
    return name


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
