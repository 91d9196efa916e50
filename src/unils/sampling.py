"""Sampling of code bits: temperature, classifier-free guidance, per-bit top-p, seeded draws.

Order and arithmetic follow the official ``sample_idx_with_top_p_``: logits are multiplied by
``1/temperature`` *before* guidance, guidance mixes ``cfg*cond + (1-cfg)*uncond`` only when
``cfg > 1``, and top-p drops the less likely value of a bit when its probability is at most
``1 - top_p``. Each row of the batch draws from its own :class:`torch.Generator`, with the same call
shape as the official code, so a row seeded with ``s`` reproduces ``torch.manual_seed(s)`` there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["guided_logits", "apply_top_p", "sample_bits", "make_generator", "official_skipped_draws"]


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (a fresh random seed when None)."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def official_skipped_draws(device: torch.device | str, windows: int, layers: int) -> int:
    """Draws the official inference takes from its *sampling* generator before it samples a bit.

    The official environment pins transformers 5.3, whose wav2vec2 calls ``torch.rand([])`` once per
    encoder layer per encoded window even in eval mode; the official encodes both channels (``windows``
    windows each) before sampling. ``torch.rand([])`` draws from torch's CPU generator whatever the
    model's device, while the official samples with the generator of the logits' device. So these
    draws shift the sampling stream only when the model runs on the CPU; on CUDA (or any other
    accelerator) they leave it untouched and nothing is to be skipped.
    """
    return 2 * windows * layers if torch.device(device).type == "cpu" else 0


def guided_logits(logits: Tensor, batch: int, temperature: float, cfg_scale: float) -> Tensor:
    """Temperature then CFG on logits [R, n, C, 2] whose first ``batch`` rows are conditional.

    Rows ``batch: 2*batch`` are the unconditional branch when ``cfg_scale > 1``; otherwise only the
    conditional rows are used (and need be computed).
    """
    logits = logits.float().mul(1 / temperature)
    if cfg_scale > 1.0:
        return cfg_scale * logits[:batch] + (1 - cfg_scale) * logits[batch : 2 * batch]
    return logits[:batch]


def apply_top_p(logits: Tensor, top_p: float) -> Tensor:
    """Mask (to -inf) the values whose sorted cumulative probability is at most ``1 - top_p``.

    Works on the last axis; the most likely value is always kept. Returns a new tensor.
    """
    if top_p <= 0:
        return logits
    sorted_logits, sorted_idx = logits.sort(dim=-1, descending=False)
    remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
    remove[..., -1:] = False
    return logits.masked_fill(remove.scatter(logits.ndim - 1, sorted_idx, remove), float("-inf"))


def sample_bits(logits: Tensor, generators: Sequence[torch.Generator], top_p: float = 0.97) -> Tensor:
    """Draw one bit per (row, token, channel) from guided logits [B, n, C, 2] -> int64 [B, n, C]."""
    b, n, c, v = logits.shape
    if len(generators) != b:
        raise ValueError(f"need one generator per row: {b} rows, {len(generators)} generators")
    probs = apply_top_p(logits.reshape(b, n * c, v), top_p).softmax(dim=-1)
    rows = [
        torch.multinomial(probs[i].view(-1, v), num_samples=1, replacement=True, generator=generators[i])
        for i in range(b)
    ]
    return torch.stack(rows).view(b, n, c)
