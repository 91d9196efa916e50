"""Low-rank adapters (LoRA) for ``nn.Linear``: training wrapper and the one merge rule.

Stage 3 of UniLS trains adapters on the audio-free prior's linear layers. Exported checkpoints are always
merged (``W + scale * B @ A``), so inference never sees adapters;
[`merged_weight`][unils.nn.lora.merged_weight] is the single implementation of that rule, used both when
exporting our own training runs and when converting official peft state dicts
([`unils.convert.merge_lora`][unils.convert.keys.merge_lora]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LoRALinear", "merged_weight", "apply_lora", "merge_lora_modules", "lora_parameters"]


def merged_weight(base: Tensor, a: Tensor, b: Tensor, scale: float) -> Tensor:
    """``base + scale * (b @ a)`` computed in float64 and cast back to ``base``'s dtype.

    Args:
        base: weight [out, in].
        a: LoRA down-projection [r, in].
        b: LoRA up-projection [out, r].
        scale: ``alpha / r``.
    """
    delta = b.double() @ a.double()
    if delta.shape != base.shape:
        raise ValueError(f"LoRA B @ A is {list(delta.shape)}, base weight {list(base.shape)}")
    return (base.double() + scale * delta).to(base.dtype)


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update: ``y = W x + b + scale * B A dropout(x)``.

    Initialised like peft: A kaiming-uniform (a = sqrt 5), B zeros, so training starts at the base model.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        if r <= 0:
            raise ValueError(f"LoRA rank must be positive, got {r}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.r = r
        self.scale = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)
        return self.base(x) + self.scale * update

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the adapter folded into its weight."""
        out = nn.Linear(
            self.base.in_features,
            self.base.out_features,
            bias=self.base.bias is not None,
            device=self.base.weight.device,
            dtype=self.base.weight.dtype,
        )
        with torch.no_grad():
            out.weight.copy_(merged_weight(self.base.weight, self.lora_A, self.lora_B, self.scale))
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def apply_lora(root: nn.Module, targets: list[str], r: int, alpha: float, dropout: float = 0.0) -> list[str]:
    """Wrap the named ``nn.Linear`` submodules of ``root`` in [`LoRALinear`][unils.nn.lora.LoRALinear] (in
    place).

    Returns:
        The wrapped names.
    """
    wrapped = []
    for name in targets:
        module = root.get_submodule(name)
        if not isinstance(module, nn.Linear):
            raise TypeError(f"LoRA target {name} is {type(module).__name__}, not nn.Linear")
        _set(root, name, LoRALinear(module, r, alpha, dropout))
        wrapped.append(name)
    return wrapped


def merge_lora_modules(root: nn.Module) -> list[str]:
    """Replace every [`LoRALinear`][unils.nn.lora.LoRALinear] inside ``root`` by its merged ``nn.Linear`` (in
    place)."""
    found = [(n, m) for n, m in root.named_modules() if isinstance(m, LoRALinear)]
    for name, module in found:
        _set(root, name, module.merged())
    return [name for name, _ in found]


def lora_parameters(root: nn.Module) -> list[nn.Parameter]:
    """The adapter matrices of every [`LoRALinear`][unils.nn.lora.LoRALinear] inside ``root``."""
    return [p for m in root.modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B)]
