"""Sampling of code bits: temperature, classifier-free guidance, per-bit top-p, seeded draws.

Order and arithmetic follow the official ``sample_idx_with_top_p_``: logits are multiplied by
``1/temperature`` *before* guidance, guidance mixes ``cfg*cond + (1-cfg)*uncond`` only when
``cfg > 1``, and top-p drops the less likely value of a bit when its probability is at most
``1 - top_p``. Each row of the batch draws from its own `torch.Generator`, with the same call
shape as the official code, so a row seeded with ``s`` reproduces ``torch.manual_seed(s)`` there.

Greedy decoding: ``temperature=0``, or a temperature so small that ``logits / temperature`` overflows
float32 for a bit (the official sampler fails there on NaN probabilities), takes the most likely value of
that bit under the guided logits at temperature 1 (the limit the official sampler converges to). The draw
is still made from the row's generator, so the random stream advances exactly as with sampling. This is
decided element-wise on the device: no host synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "guided_logits",
    "apply_top_p",
    "bit_probabilities",
    "RowKnobs",
    "sample_bits",
    "draw_noise",
    "fill_noise",
    "pick_bits",
    "make_generator",
    "official_skipped_draws",
]


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
    conditional rows are used (and need be computed). ``temperature=0`` gives infinite logits: use
    [`bit_probabilities`][unils.sampling.bit_probabilities], which decodes those greedily.
    """
    knobs = RowKnobs.of([temperature], [cfg_scale], [1.0])
    return _mix(logits.float().mul(knobs.inv_temperature), batch, knobs)


@dataclass(frozen=True)
class RowKnobs:
    """The sampling knobs of a batch, as the arithmetic uses them (floats when all rows agree).

    A knob is a Python float when every row has the same value, so the arithmetic is exactly the
    official scalar one; otherwise a float32 tensor [B, 1, 1, 1] holding each row's value, rounded as the
    scalar would be (every derived value is computed in double first, as Python does).

    Attributes:
        inv_temperature: ``1 / temperature`` (inf for temperature 0: greedy).
        cfg: the guidance scale of the conditional logits (1 for rows without guidance).
        one_minus_cfg: ``1 - cfg`` for the unconditional logits (0 for rows without guidance).
        threshold: ``1 - top_p`` (-inf where ``top_p <= 0``: nothing is dropped).
        guided: whether the logits hold unconditional rows (any row has ``cfg_scale > 1``).
    """

    inv_temperature: float | Tensor
    cfg: float | Tensor
    one_minus_cfg: float | Tensor
    threshold: float | Tensor
    guided: bool

    @classmethod
    def of(
        cls,
        temperatures: Sequence[float],
        cfg_scales: Sequence[float],
        top_ps: Sequence[float],
        device: torch.device | str = "cpu",
    ) -> RowKnobs:
        """Knobs of rows with these temperatures, guidance scales and top-p thresholds."""
        guided = any(c > 1.0 for c in cfg_scales)
        cfgs = [c if c > 1.0 else 1.0 for c in cfg_scales]

        def knob(values: list[float]) -> float | Tensor:
            if all(v == values[0] for v in values):
                return values[0]
            return torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1, 1, 1)

        return cls(
            inv_temperature=knob([math.inf if t == 0 else 1 / t for t in temperatures]),
            cfg=knob(cfgs),
            one_minus_cfg=knob([1 - c for c in cfgs]),
            threshold=knob([1 - p if p > 0 else -math.inf for p in top_ps]),
            guided=guided,
        )


def _mix(logits: Tensor, batch: int, knobs: RowKnobs) -> Tensor:
    if not knobs.guided:
        return logits[:batch]
    cond, uncond = logits[:batch], logits[batch : 2 * batch]
    if isinstance(knobs.cfg, Tensor):
        return torch.where(knobs.cfg > 1.0, knobs.cfg * cond + knobs.one_minus_cfg * uncond, cond)
    return knobs.cfg * cond + knobs.one_minus_cfg * uncond if knobs.cfg > 1.0 else cond


def bit_probabilities(logits: Tensor, batch: int, knobs: RowKnobs) -> Tensor:
    """Probabilities [batch, n, C, 2] of each bit's two values: temperature, guidance, top-p, softmax.

    ``logits`` [R, n, C, 2] hold the conditional rows first and, when ``knobs.guided``, the unconditional
    rows after them. Bits whose scaled logits overflow float32 (every bit when the temperature is 0) get
    a one-hot on the value the guided logits at temperature 1 prefer: greedy decoding, the limit of the
    official sampler as the temperature goes to 0. No host synchronisation.
    """
    raw = logits.float()
    inv = knobs.inv_temperature
    if isinstance(inv, Tensor) and raw.shape[0] != inv.shape[0]:
        inv = inv.repeat(raw.shape[0] // inv.shape[0], 1, 1, 1)  # the unconditional rows too
    probs = _top_p(_mix(raw.mul(inv), batch, knobs), knobs.threshold).softmax(dim=-1)
    bad = probs.isnan().any(dim=-1, keepdim=True)
    limit = _mix(raw, batch, knobs)
    greedy = torch.nn.functional.one_hot(limit.argmax(dim=-1), limit.shape[-1]).to(probs.dtype)
    return torch.where(bad, greedy, probs)


def _top_p(logits: Tensor, threshold: float | Tensor) -> Tensor:
    if not isinstance(threshold, Tensor) and threshold == -math.inf:
        return logits
    sorted_logits, sorted_idx = logits.sort(dim=-1, descending=False)
    remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= threshold
    remove[..., -1:] = False
    return logits.masked_fill(remove.scatter(logits.ndim - 1, sorted_idx, remove), float("-inf"))


def apply_top_p(logits: Tensor, top_p: float) -> Tensor:
    """Mask (to -inf) the values whose sorted cumulative probability is at most ``1 - top_p``.

    Works on the last axis; the most likely value is always kept. Returns a new tensor.
    """
    return _top_p(logits, 1 - top_p if top_p > 0 else -math.inf)


def draw_noise(
    generators: Sequence[torch.Generator], tokens: int, channels: int, device: torch.device
) -> Tensor:
    """Each row's random draws for one level: Exp(1) noise [B, tokens * channels, 2], row ``i`` from
    ``generators[i]``.

    These are exactly the draws ``torch.multinomial(p, 1, replacement=True, generator=g)`` makes for a
    row ``p`` of that shape (it samples ``argmax(p / q)`` with ``q ~ Exp(1)`` of ``p``'s shape), so
    [`pick_bits`][unils.sampling.pick_bits] on them reproduces the official sampler bit for bit while the
    noise is drawn before, and apart from, the arithmetic that needs it.
    """
    noise = torch.empty(len(generators), tokens * channels, 2, device=device, dtype=torch.float32)
    return fill_noise(noise, generators)


def fill_noise(noise: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
    """Draw [`draw_noise`][unils.sampling.draw_noise]'s noise into the first ``len(generators)`` rows of
    ``noise`` [R, tokens * channels, 2] (in place; the recorded steps' static buffers); returns ``noise``."""
    for row, gen in zip(noise, generators):
        row.exponential_(1, generator=gen)
    return noise


def pick_bits(probs: Tensor, noise: Tensor) -> Tensor:
    """Bits int64 [B, n, C] from probabilities [B, n, C, 2] and [`draw_noise`][unils.sampling.draw_noise]
    noise: ``argmax(p / q)``, all rows at once, on the device (no host synchronisation)."""
    b, n, c, v = probs.shape
    return probs.reshape(b, n * c, v).div(noise).argmax(dim=-1).view(b, n, c)


def sample_bits(
    logits: Tensor | None,
    generators: Sequence[torch.Generator],
    top_p: float = 0.97,
    *,
    probs: Tensor | None = None,
) -> Tensor:
    """Draw one bit per (row, token, channel) -> int64 [B, n, C], as ``torch.multinomial`` row by row.

    Args:
        logits: guided logits [B, n, C, 2] (top-p is applied here), or None when ``probs`` is given.
        generators: one random generator per row.
        top_p: nucleus threshold applied to ``logits``.
        probs: probabilities [B, n, C, 2] from [`bit_probabilities`][unils.sampling.bit_probabilities] (then
            ``logits`` is ignored).
    """
    if probs is None:
        if logits is None:
            raise ValueError("sample_bits needs logits or probs")
        probs = apply_top_p(logits, top_p).softmax(dim=-1)
    b, n, c, _ = probs.shape
    if len(generators) != b:
        raise ValueError(f"need one generator per row: {b} rows, {len(generators)} generators")
    return pick_bits(probs, draw_noise(generators, n, c, probs.device))
