"""Next-scale autoregressive generator with self-audio and partner-audio cross-attention.

Sequence layout of one window: ``[style (W tokens) | prev (W tokens) | sos | level 1 | ... | level L-1]``
where W is the window length (100). Style/prev tokens attend only to themselves; a current token sees
the whole prefix, every token of its own level and all coarser levels (block-causal by scale). Every
token cross-attends to all audio frames of the window, once for the person's own voice and once for
the partner's.

Two ways to run the same math:

* [`Generator.forward_reference`][unils.nn.generator.Generator.forward_reference] recomputes the whole
  sequence with the additive mask, exactly as the official inference does at each level (the straightforward
  path, kept for parity checks);
* [`Generator.prefill`][unils.nn.generator.Generator.prefill] +
  [`Generator.extend`][unils.nn.generator.Generator.extend] keep per-layer key/value caches so each level only
  processes its own new tokens. Because of the block-causal mask both give the same numbers up to
  floating-point summation order.

Parameter names map one-to-one to the official ``UniLSGen`` (see [`unils.convert`][unils.convert]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import CodecConfig, GeneratorConfig
from .layers import RotaryCache, apply_rope, merge_heads, split_heads

__all__ = ["Generator", "GeneratorBlock", "AudioContext", "KVCache"]

KV = tuple[Tensor, Tensor]


@dataclass
class AudioContext:
    """Per-layer cross-attention keys/values of one window's audio (self and partner streams)."""

    self_kv: list[KV]
    other_kv: list[KV]


@dataclass
class KVCache:
    """Per-layer self-attention keys/values of the tokens processed so far in one window."""

    layers: list[KV]

    @property
    def length(self) -> int:
        return 0 if not self.layers else self.layers[0][0].shape[2]


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, rope: RotaryCache) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.rope = rope
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(
        self, x: Tensor, table: Tensor, mask: Tensor | None = None, past: KV | None = None
    ) -> tuple[Tensor, KV]:
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        q = apply_rope(split_heads(q, self.num_heads), table).transpose(1, 2)
        k = apply_rope(split_heads(k, self.num_heads), table).transpose(1, 2)
        v = split_heads(v, self.num_heads).transpose(1, 2)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(merge_heads(out)), (k, v)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int, num_heads: int, rope: RotaryCache) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.rope = rope
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(context_dim, dim)
        self.v_proj = nn.Linear(context_dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.self_norm = nn.LayerNorm(dim, eps=1e-6)
        self.context_norm = nn.LayerNorm(context_dim, eps=1e-6)

    def context_kv(self, context: Tensor, table: Tensor) -> KV:
        """Keys/values of the audio frames: computed once per window, reused by every level."""
        c = self.context_norm(context)
        k = apply_rope(split_heads(self.k_proj(c), self.num_heads), table).transpose(1, 2)
        v = split_heads(self.v_proj(c), self.num_heads).transpose(1, 2)
        return k, v

    def forward(self, x: Tensor, table: Tensor, kv: KV) -> Tensor:
        q = apply_rope(split_heads(self.q_proj(self.self_norm(x)), self.num_heads), table).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.out_proj(merge_heads(out))


class GeneratorBlock(nn.Module):
    """x += SelfAttn(x); x += CrossAttn(x, own audio); x += CrossAttn(x, partner audio); x += FFN(x).

    Without audio (the stage-2 prior, the official ``UniLSFreeGen``) the two cross-attentions do not
    exist. ``drop_path`` is the stochastic-depth rate of every residual branch during training.
    """

    # Only set when the block has audio (``with_audio`` tests for them); declared for the type checker.
    self_audio_attn: CrossAttention
    other_audio_attn: CrossAttention

    def __init__(
        self,
        dim: int,
        audio_dim: int,
        num_heads: int,
        ffn_dim: int,
        rope: RotaryCache,
        with_audio: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.self_attn = SelfAttention(dim, num_heads, rope)
        if with_audio:
            self.self_audio_attn = CrossAttention(dim, audio_dim, num_heads, rope)
            self.other_audio_attn = CrossAttention(dim, audio_dim, num_heads, rope)
        self.ffn = nn.Sequential(
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, ffn_dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(ffn_dim, dim),
        )

    @property
    def with_audio(self) -> bool:
        return hasattr(self, "self_audio_attn")

    def _drop(self, branch: Tensor) -> Tensor:
        # Stochastic depth per sample, rescaled so the expectation matches evaluation.
        if not self.training or self.drop_path <= 0.0:
            return branch
        keep = 1.0 - self.drop_path
        mask = branch.new_empty(branch.shape[0], *([1] * (branch.dim() - 1))).bernoulli_(keep)
        return branch * mask / keep

    def forward(
        self,
        x: Tensor,
        table: Tensor,
        self_kv: KV | None,
        other_kv: KV | None,
        mask: Tensor | None = None,
        past: KV | None = None,
    ) -> tuple[Tensor, KV]:
        attn, kv = self.self_attn(x, table, mask, past)
        x = x + self._drop(attn)
        if self_kv is not None and other_kv is not None:
            x = x + self._drop(self.self_audio_attn(x, table, self_kv))
            x = x + self._drop(self.other_audio_attn(x, table, other_kv))
        elif self.with_audio:
            raise ValueError("this generator cross-attends to audio: pass the audio context")
        x = x + self._drop(self.ffn(x))
        return x, kv


class Generator(nn.Module):
    """The UniLS token generator: embeddings, transformer blocks and the per-bit logits head."""

    # Buffers, declared so that the type checker sees tensors instead of ``Module.__getattr__``'s union.
    token_pos: Tensor
    token_level: Tensor

    def __init__(
        self,
        config: GeneratorConfig,
        codec: CodecConfig,
        audio_dim: int,
        with_audio: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        """Build the generator.

        Args:
            config: sizes.
            codec: the codec whose bits it predicts (scales, window, code width).
            audio_dim: width of the audio features.
            with_audio: False builds the audio-free prior of training stage 2 (no cross-attention,
                no ``self_pos``/``other_pos``), the official ``UniLSFreeGen``.
            drop_path: largest stochastic-depth rate (last block; 0 for the first), training only.
        """
        super().__init__()
        self.with_audio = with_audio
        self.config = config
        self.scales = tuple(codec.scales)
        self.window = codec.window
        self.code_dim = codec.code_dim
        self.audio_dim = audio_dim
        dim = config.embed_dim
        self.rope = RotaryCache(dim // config.num_heads, config.rope_max_len)
        ffn_dim = round(dim * config.ffn_ratio)

        self.sos_embed = nn.Parameter(torch.zeros(1, 1, dim))
        self.code_token_embed = nn.Linear(codec.code_dim, dim)
        rates = torch.linspace(0, drop_path, config.depth).tolist() if config.depth > 1 else [0.0]
        self.blocks = nn.ModuleList(
            [
                GeneratorBlock(dim, audio_dim, config.num_heads, ffn_dim, self.rope, with_audio, rate)
                for rate in rates
            ]
        )
        self.lvl_embed = nn.Embedding(len(self.scales), dim)
        self.style_pos = nn.Parameter(torch.zeros(1, 1, dim))
        self.prev_pos = nn.Parameter(torch.zeros(1, 1, dim))
        if with_audio:
            self.self_pos = nn.Parameter(torch.zeros(1, 1, audio_dim))
            self.other_pos = nn.Parameter(torch.zeros(1, 1, audio_dim))
        self.logits_head = nn.Sequential(nn.LayerNorm(dim, eps=1e-5), nn.Linear(dim, codec.code_dim * 2))
        self._init_weights()

        # Positions and levels of the current tokens (non-persistent: recomputed, never saved).
        self.prefix_len = 2 * self.window  # style + prev clips
        centres = [torch.linspace(0, self.window - 1, p * 2 + 1)[1::2].round().long() for p in self.scales]
        self.register_buffer("token_pos", torch.cat(centres) + self.prefix_len, persistent=False)
        levels = torch.cat([torch.full((p,), i, dtype=torch.long) for i, p in enumerate(self.scales)])
        self.register_buffer("token_level", levels, persistent=False)
        self.offsets = [0]
        for p in self.scales:
            self.offsets.append(self.offsets[-1] + p)

    def _init_weights(self) -> None:
        dim = self.config.embed_dim
        for p in (self.sos_embed, self.lvl_embed.weight, self.style_pos, self.prev_pos):
            nn.init.trunc_normal_(p, mean=0.0, std=(1 / dim / 3) ** 0.5)
        if self.with_audio:
            for p in (self.self_pos, self.other_pos):
                nn.init.trunc_normal_(p, mean=0.0, std=(1 / self.audio_dim / 3) ** 0.5)

    @property
    def num_tokens(self) -> int:
        return self.offsets[-1]

    def block_list(self) -> list[GeneratorBlock]:
        """The transformer blocks in order (``blocks`` itself is an untyped ``nn.ModuleList``)."""
        # __init__ fills ``blocks`` with GeneratorBlocks only.
        return cast("list[GeneratorBlock]", list(self.blocks))

    # ------------------------------------------------------------------ inputs
    def condition_tokens(self, style_features: Tensor, prev_features: Tensor) -> Tensor:
        """Prefix tokens [B, 2W, D] from the codec sum features of the style and previous clips."""
        style = self.code_token_embed(style_features) + self.style_pos
        prev = self.code_token_embed(prev_features) + self.prev_pos
        return torch.cat([style, prev], dim=1)

    def level_tokens(self, level: int, next_inputs: Tensor | None, batch: int) -> Tensor:
        """Un-positioned input tokens of ``level``: sos for level 0, embedded accum-next inputs after."""
        if level == 0:
            tokens = self.sos_embed.expand(batch, 1, -1)
        else:
            assert next_inputs is not None
            tokens = self.code_token_embed(next_inputs)
        return tokens + self.lvl_embed.weight[level]

    def audio_positions(self, num_frames: int, device: torch.device) -> Tensor:
        """Positions of ``num_frames`` audio frames (cached per device: no host-to-device copy in a step)."""
        # Audio is never resampled to the motion rate: frame j of L sits at floor(W * j / L).
        cache = self.__dict__.setdefault("_audio_positions", {})
        key = (num_frames, torch.device(device))
        pos = cache.get(key)
        if pos is None:
            pos = torch.linspace(0, self.window, steps=num_frames + 1)[:-1].long() + self.prefix_len
            pos = cache[key] = pos.to(device)
        return pos

    def null_audio_context(self, batch: int, num_frames: int, device: torch.device) -> AudioContext:
        """Keys/values of all-zero audio features (the unconditional branch), computed once and reused.

        They depend on the weights only, so every window and every session shares them.
        """
        # Parameter version counters change with every in-place update (optimizer steps,
        # load_state_dict), so a cached entry can never outlive the weights it was computed from.
        version = sum(p._version for p in self._null_audio_params())
        key = (device, self.self_pos.dtype, num_frames, version)
        cache = self.__dict__.setdefault("_null_audio", {})
        ctx = cache.get(key)
        if ctx is None:
            if len(cache) > 8:
                cache.clear()
            zeros = torch.zeros(1, num_frames, self.audio_dim, device=device, dtype=self.self_pos.dtype)
            ctx = self.audio_context(zeros, zeros)
            cache[key] = ctx
        return AudioContext(
            self_kv=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in ctx.self_kv],
            other_kv=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in ctx.other_kv],
        )

    def _null_audio_params(self) -> list[Tensor]:
        params: list[Tensor] = [self.self_pos, self.other_pos]
        for blk in self.block_list():
            for attn in (blk.self_audio_attn, blk.other_audio_attn):
                params += [
                    attn.k_proj.weight,
                    attn.k_proj.bias,
                    attn.v_proj.weight,
                    attn.v_proj.bias,
                    attn.context_norm.weight,
                    attn.context_norm.bias,
                ]
        return params

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # Moving or casting the weights invalidates the cached unconditional keys/values.
        self.__dict__.pop("_null_audio", None)
        return super()._apply(fn, recurse)

    @staticmethod
    def concat_contexts(a: AudioContext, b: AudioContext) -> AudioContext:
        """Rows of ``a`` then rows of ``b``."""
        cat = lambda x, y: (torch.cat([x[0], y[0]]), torch.cat([x[1], y[1]]))  # noqa: E731
        return AudioContext(
            self_kv=[cat(x, y) for x, y in zip(a.self_kv, b.self_kv)],
            other_kv=[cat(x, y) for x, y in zip(a.other_kv, b.other_kv)],
        )

    def audio_context(self, self_features: Tensor, other_features: Tensor) -> AudioContext:
        """Cross-attention keys/values for one window; zero rows give the unconditional branch."""
        dtype = self.self_pos.dtype
        table = self.rope(
            self.audio_positions(self_features.shape[1], self_features.device), 0, self_features.device
        )
        s = self_features.to(dtype) + self.self_pos
        o = other_features.to(dtype) + self.other_pos
        return AudioContext(
            self_kv=[blk.self_audio_attn.context_kv(s, table) for blk in self.block_list()],
            other_kv=[blk.other_audio_attn.context_kv(o, table) for blk in self.block_list()],
        )

    # ------------------------------------------------------------------ cached path
    def prefill(self, prefix: Tensor, audio: AudioContext) -> KVCache:
        """Run the style/prev prefix through every layer and keep its keys/values."""
        table = self.rope(None, prefix.shape[1], prefix.device)
        x = prefix
        layers: list[KV] = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, table, audio.self_kv[i], audio.other_kv[i])
            layers.append(kv)
        return KVCache(layers)

    def extend(self, tokens: Tensor, level: int, cache: KVCache, audio: AudioContext) -> Tensor:
        """Process one level's tokens against the cache (updated in place); return their hidden states."""
        sl = slice(self.offsets[level], self.offsets[level + 1])
        table = self.rope(self.token_pos[sl], 0, tokens.device)
        x = tokens
        for i, blk in enumerate(self.blocks):
            x, cache.layers[i] = blk(x, table, audio.self_kv[i], audio.other_kv[i], past=cache.layers[i])
        return x

    # ------------------------------------------------------------------ reference path
    def reference_mask(self, num_current: int, device: torch.device) -> Tensor:
        """Additive [1, 1, S, S] mask of the official layout truncated to ``num_current`` tokens."""
        p = self.prefix_len
        total = p + num_current
        lv = self.token_level[:num_current].to(device)
        allowed = torch.zeros(total, total, dtype=torch.bool, device=device)
        allowed[:, :p] = True
        allowed[p:, p:] = lv[:, None] >= lv[None, :]
        mask = torch.zeros(total, total, device=device)
        mask.masked_fill_(~allowed, float("-inf"))
        return mask.view(1, 1, total, total)

    def forward_reference(
        self, prefix: Tensor, current: Tensor, self_features: Tensor, other_features: Tensor
    ) -> Tensor:
        """Full recomputation of [prefix | current] (no cache); returns hidden states of ``current``.

        ``current`` holds the already level-embedded tokens of levels 0..k in order.
        """
        return self.forward_full(prefix, current, self.audio_context(self_features, other_features))

    def forward_full(self, prefix: Tensor, current: Tensor, audio: AudioContext | None) -> Tensor:
        """[prefix | current] under the block-causal mask in one pass (teacher forcing in training).

        ``audio`` is None for the audio-free prior.
        """
        n = current.shape[1]
        positions = torch.cat(
            [torch.arange(self.prefix_len, device=current.device), self.token_pos[:n].to(current.device)]
        )
        table = self.rope(positions, 0, current.device)
        mask = self.reference_mask(n, current.device).to(current.dtype)
        x = torch.cat([prefix, current], dim=1)
        for i, blk in enumerate(self.blocks):
            x, _ = blk(
                x,
                table,
                None if audio is None else audio.self_kv[i],
                None if audio is None else audio.other_kv[i],
                mask=mask,
            )
        return x[:, -n:]

    def teacher_tokens(self, next_inputs: Tensor) -> Tensor:
        """All current tokens at once: [sos | embedded accum-next inputs of levels 1..] + level embeddings.

        ``next_inputs`` [B, num_tokens - 1, code_dim] are the quantizer's accum-next features.
        """
        b = next_inputs.shape[0]
        tokens = torch.cat([self.sos_embed.expand(b, 1, -1), self.code_token_embed(next_inputs)], dim=1)
        return tokens + self.lvl_embed(self.token_level.to(tokens.device))

    def logits(self, hidden: Tensor) -> Tensor:
        """[B, n, D] -> [B, n, code_dim, 2] logits; channel pair (2c, 2c+1) = (bit c = 0, bit c = 1)."""
        out = self.logits_head(hidden)
        return out.view(out.shape[0], out.shape[1], self.code_dim, 2)
