"""wav2vec2 (XLS-R 300M layout) in plain torch, with the reference implementation's parameter names.

The "stable layer norm" variant: a 7-layer convolutional feature encoder with per-step LayerNorm,
a feature projection, a grouped convolutional positional embedding with weight normalisation, and
pre-LN transformer layers closed by a final LayerNorm. Parameter names are the transformers
``Wav2Vec2Model`` names (without the ``wav2vec2.`` prefix), so hub weights load unchanged after
[`convert_hf_state_dict`][unils.nn.wav2vec2.convert_hf_state_dict].

UniLS normalises every 4 s window on its own (zero mean, unit *unbiased* std + 1e-6) before the conv stack;
[`Wav2Vec2Encoder.forward`][unils.nn.wav2vec2.Wav2Vec2Encoder.forward] does that when ``normalize=True``.

Speed notes (this encoder is about half of UniLS's inference cost):

* The feature encoder keeps activations time-major ``[B, T, C]`` and runs each strided convolution
  as an unfold plus one GEMM. That skips the two transposes per layer that a ``Conv1d`` followed by
  a channel LayerNorm needs, and it avoids oneDNN's bfloat16 convolution, which on CPUs without
  native bfloat16 is more than 5x slower than this path under autocast.
* Attention uses `torch.nn.functional.scaled_dot_product_attention` (no mask).
* The weight-normalised positional convolution caches its effective weight while gradients are
  off, keyed on the parameters' version counters, so in-place loads invalidate it. It always runs
  in float32 (see [`_WeightNormConv1d`][unils.nn.wav2vec2._WeightNormConv1d]).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import Wav2Vec2Config
from ..errors import AudioError, CheckpointError, ConfigError

__all__ = ["Wav2Vec2Encoder", "config_from_hf", "convert_hf_state_dict"]

#: Added to the std in UniLS's per-window normalisation (so a silent window stays all-zero).
NORM_EPS = 1e-6


class _ConvLayer(nn.Module):
    """Conv1d -> LayerNorm over channels -> GELU, on time-major activations."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, bias: bool, eps: float) -> None:
        super().__init__()
        # The Conv1d module is kept for its parameters' names, shapes and init; forward uses a GEMM.
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, bias=bias)
        self.layer_norm = nn.LayerNorm(cout, eps=eps)
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, T, C_in] -> [B, T', C_out]."""
        b, _, cin = x.shape
        # unfold yields [B, T', C_in, k], matching the Conv1d weight's [C_out, C_in, k] order.
        cols = x.unfold(1, self.kernel, self.stride).reshape(b, -1, cin * self.kernel)
        w = self.conv.weight
        y = F.linear(cols, w.reshape(w.shape[0], -1), self.conv.bias)
        return F.gelu(self.layer_norm(y))


class _FeatureExtractor(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        dims = (1, *cfg.conv_dim)
        eps = cfg.layer_norm_eps
        self.conv_layers = nn.ModuleList(
            [
                _ConvLayer(dims[i], dims[i + 1], cfg.conv_kernel[i], cfg.conv_stride[i], cfg.conv_bias, eps)
                for i in range(len(cfg.conv_dim))
            ]
        )

    def forward(self, wave: Tensor) -> Tensor:
        """``wave`` [B, N] -> features [B, frames, conv_dim[-1]] (time-major, unlike transformers)."""
        x = wave.unsqueeze(-1)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class _FeatureProjection(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.conv_dim[-1], eps=cfg.layer_norm_eps)
        self.projection = nn.Linear(cfg.conv_dim[-1], cfg.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(self.layer_norm(x))


class _WeightNormConv1d(nn.Module):
    """Grouped, "same"-padded Conv1d whose weight is ``g * v / ||v||`` (norm over dims 0, 1 per tap).

    Plain ``weight_g``/``weight_v`` parameters (not ``torch.nn.utils`` weight norm) keep the state
    dict keys stable across torch and transformers versions.
    """

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.groups = groups
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.empty(channels))
        self._cache: tuple[tuple[Any, ...], Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """transformers' init: v ~ N(0, 2 / fan_in), g = ||v|| (so the weight starts equal to v)."""
        with torch.no_grad():
            fan_in = self.weight_v.shape[1] * self.kernel
            self.weight_v.normal_(0.0, 2.0 / math.sqrt(fan_in))
            self.weight_g.copy_(self._norm(self.weight_v).to(self.weight_g.dtype))
            self.bias.zero_()
        self._cache = None

    @staticmethod
    def _norm(v: Tensor) -> Tensor:
        # Summing squares over the leading dims is a vectorised column reduction; v.norm(dim=(0, 1))
        # takes a slower strided path. float32 so that a bfloat16 model does not lose the norm.
        v = v.float()
        return (v * v).sum(dim=(0, 1), keepdim=True).sqrt()

    def weight(self) -> Tensor:
        """The effective convolution weight [C, C / groups, K], in float32."""
        g, v = self.weight_g, self.weight_v
        if torch.is_grad_enabled():
            return g.float() * v.float() / self._norm(v)
        # Aliases of g and v keep their storage alive, so an equal data_ptr means the same tensor;
        # the version counters change on every in-place write (load_state_dict, copy_).
        key = (g.data_ptr(), v.data_ptr(), g._version, v._version, v.dtype, v.device)
        cache = self._cache
        if cache is not None and cache[0][2:] == key:
            return cache[1]
        w = g.float() * v.float() / self._norm(v)
        self._cache = ((g.detach(), v.detach()) + key, w)
        return w

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, C, T] -> float32 [B, C, T + 1 - K % 2], whatever the input and parameter dtypes."""
        # float32 always: oneDNN's grouped bfloat16 convolution measured 20-45x slower than float32 on CPUs
        # without native bfloat16, and this layer is only ~2% of the FLOPs.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.conv1d(
                x.float(), self.weight(), self.bias.float(), padding=self.kernel // 2, groups=self.groups
            )

    def _apply(self, fn: Any, recurse: bool = True) -> _WeightNormConv1d:
        self._cache = None  # .to()/.half() etc. replace the parameters; drop the stale weight now
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None  # derived from the parameters; not worth pickling or deep-copying
        return state


class _PositionalConv(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.conv = _WeightNormConv1d(
            cfg.hidden_size, cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups
        )
        # Padding K // 2 on both sides gives one extra step for an even kernel.
        self.remove = 1 if cfg.num_conv_pos_embeddings % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, T, C] -> float32 positional embedding [B, T, C]."""
        h = self.conv(x.transpose(1, 2))
        if self.remove:
            h = h[:, :, : h.shape[2] - self.remove]
        return F.gelu(h).transpose(1, 2)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        h = self.heads

        def heads(y: Tensor) -> Tensor:
            return y.view(b, t, h, d // h).transpose(1, 2)

        # Separate q/k/v GEMMs measured faster than one GEMM on concatenated weights (CPU, B=1..4).
        # SDPA's default scale is 1/sqrt(head_dim), which is wav2vec2's.
        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, inner)
        self.output_dense = nn.Linear(inner, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(x)))


class _Layer(nn.Module):
    """Pre-LN transformer layer ("stable layer norm")."""

    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.attention = _Attention(cfg.hidden_size, cfg.num_attention_heads)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.feed_forward = _FeedForward(cfg.hidden_size, cfg.intermediate_size)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.layer_norm(x))
        return x + self.feed_forward(self.final_layer_norm(x))


class _Encoder(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.pos_conv_embed = _PositionalConv(cfg)
        self.layers = nn.ModuleList([_Layer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        # The residual stream stays in the parameters' dtype: float32 under autocast (only the GEMM
        # inputs are lowered, so 24 layers of residual sums do not accumulate bfloat16 rounding).
        x = (x.float() + self.pos_conv_embed(x)).to(self.layer_norm.weight.dtype)
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)


class Wav2Vec2Encoder(nn.Module):
    """16 kHz windows [B, N] -> wav2vec2 last hidden state [B, frames, hidden_size].

    Equivalent to UniLS's wrapper around transformers' ``Wav2Vec2Model``: optional per-row
    normalisation, conv feature encoder, feature projection, encoder without attention mask, final
    LayerNorm. A 64 000-sample (4 s) window gives 199 frames. Always deterministic (no dropout,
    masking or layer drop). Runs exactly in float32, in bfloat16 after ``.to(torch.bfloat16)``, or
    under ``torch.autocast``.

    Args:
        config: sizes of the model (defaults: facebook/wav2vec2-xls-r-300m).
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.feature_extractor = _FeatureExtractor(config)
        self.feature_projection = _FeatureProjection(config)
        self.encoder = _Encoder(config)

    @property
    def out_dim(self) -> int:
        """Feature width of the output (``hidden_size``)."""
        return self.config.hidden_size

    def num_frames(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` input samples (conv length arithmetic; <= 0: too short)."""
        n = int(num_samples)
        for k, s in zip(self.config.conv_kernel, self.config.conv_stride):
            if n < k:
                return 0
            n = (n - k) // s + 1
        return n

    @staticmethod
    def normalize(waveform: Tensor) -> Tensor:
        """Per-row ``(x - mean) / (std + 1e-6)`` over the last axis, unbiased std, in float32.

        This is UniLS's per-window normalisation; an all-zero row stays all-zero.
        """
        x = waveform.float()
        std, mean = torch.std_mean(x, dim=-1, keepdim=True)
        return (x - mean) / (std + NORM_EPS)

    def forward(self, waveform: Tensor, normalize: bool = True) -> Tensor:
        """Encode a batch of 16 kHz waveforms.

        Args:
            waveform: [B, N] samples; each row is one window.
            normalize: apply UniLS's per-row normalisation first (see
                [`normalize`][unils.nn.wav2vec2.Wav2Vec2Encoder.normalize]).

        Returns:
            [B, num_frames(N), hidden_size], in the parameters' dtype (or autocast's).

        Raises:
            AudioError: not a 2-D batch, or too short for one output frame.
        """
        if waveform.dim() != 2:
            raise AudioError(f"expected waveforms [batch, samples], got shape {list(waveform.shape)}")
        if self.num_frames(waveform.shape[1]) < 1:
            raise AudioError(
                f"{waveform.shape[1]} samples are too short for wav2vec2 (needs at least "
                f"{self._min_samples()} samples at 16 kHz)"
            )
        dtype = self.feature_projection.projection.weight.dtype
        x = self.normalize(waveform) if normalize else waveform
        feats = self.feature_extractor(x.to(dtype))
        return self.encoder(self.feature_projection(feats))

    def _min_samples(self) -> int:
        n = 1
        for k, s in reversed(list(zip(self.config.conv_kernel, self.config.conv_stride))):
            n = (n - 1) * s + k
        return n


# ---------------------------------------------------------------------------------- conversion
_PREFIX = "wav2vec2."
#: Tensors of transformers heads and pre-training modules that UniLS never runs.
_DROP = re.compile(
    r"^(quantizer\.|project_q\.|project_hid\.|masked_spec_embed$|lm_head\.|adapter\.|dropout_features\.)"
)
_RENAMES = {
    "encoder.pos_conv_embed.conv.parametrizations.weight.original0": "encoder.pos_conv_embed.conv.weight_g",
    "encoder.pos_conv_embed.conv.parametrizations.weight.original1": "encoder.pos_conv_embed.conv.weight_v",
}
_OUR_KEY = re.compile(
    r"^(?:"
    r"feature_extractor\.conv_layers\.\d+\.(?:conv|layer_norm)\.(?:weight|bias)"
    r"|feature_projection\.(?:layer_norm|projection)\.(?:weight|bias)"
    r"|encoder\.pos_conv_embed\.conv\.(?:weight_g|weight_v|bias)"
    r"|encoder\.layer_norm\.(?:weight|bias)"
    r"|encoder\.layers\.\d+\.(?:attention\.(?:q_proj|k_proj|v_proj|out_proj)|layer_norm"
    r"|feed_forward\.(?:intermediate_dense|output_dense)|final_layer_norm)\.(?:weight|bias)"
    r")$"
)


def convert_hf_state_dict(
    state_dict: Mapping[str, Tensor], expected: set[str] | None = None
) -> dict[str, Tensor]:
    """Map a transformers wav2vec2 state dict to [`Wav2Vec2Encoder`][unils.nn.wav2vec2.Wav2Vec2Encoder] keys.

    Accepts ``Wav2Vec2ForPreTraining``-style keys (prefix ``wav2vec2.``) or bare ``Wav2Vec2Model``
    keys: strips the prefix, renames the weight-norm parametrization keys
    (``...conv.parametrizations.weight.original0/1``, transformers v5) to ``weight_g``/``weight_v``
    and drops pre-training and head tensors (``quantizer.*``, ``project_q.*``, ``project_hid.*``,
    ``masked_spec_embed``, ``lm_head.*``, ``adapter.*``). Missing tensors are left for a strict
    ``load_state_dict`` to report.

    Args:
        state_dict: the transformers tensors.
        expected: our key set (e.g. ``set(encoder.state_dict())``); when given, keys must be in it,
            otherwise they must follow this module's naming scheme.

    Raises:
        CheckpointError: unexpected keys (listed), or two source keys for one of ours.
    """
    out: dict[str, Tensor] = {}
    source: dict[str, str] = {}
    unknown: list[str] = []
    clashes: list[str] = []
    for key, value in state_dict.items():
        k = key.removeprefix(_PREFIX)
        if _DROP.match(k):
            continue
        k = _RENAMES.get(k, k)
        if (expected is not None and k not in expected) or (expected is None and not _OUR_KEY.match(k)):
            unknown.append(key)
            continue
        if k in out:
            clashes.append(f"{source[k]} and {key}")
            continue
        out[k] = value
        source[k] = key
    if unknown:
        shown = sorted(unknown)
        more = f" (and {len(shown) - 20} more)" if len(shown) > 20 else ""
        raise CheckpointError(
            f"unexpected tensors in the wav2vec2 state dict: {', '.join(shown[:20])}{more}; only the "
            "stable-layer-norm wav2vec2 (e.g. facebook/wav2vec2-xls-r-300m) is supported"
        )
    if clashes:
        raise CheckpointError(
            f"wav2vec2 state dict holds the same tensor twice: {'; '.join(sorted(clashes))}"
        )
    return out


def config_from_hf(hf_config: Mapping[str, Any]) -> Wav2Vec2Config:
    """A [`Wav2Vec2Config`][unils.config.Wav2Vec2Config] from a transformers ``config.json`` dict.

    Only the stable-layer-norm layout with conv biases and GELU (XLS-R, large-lv60) is supported.
    Fields absent from the dict take the facebook/wav2vec2-xls-r-300m values, so ``{}`` (a folder
    without ``config.json``) means XLS-R 300M.

    Raises:
        ConfigError: another wav2vec2 variant, another model type, or inconsistent sizes.
    """
    hf = hf_config
    model_type = hf.get("model_type", "wav2vec2")
    if model_type != "wav2vec2":
        raise ConfigError(f"model_type {model_type!r} is not supported; expected a 'wav2vec2' config")
    norm = hf.get("feat_extract_norm", "layer")
    stable = hf.get("do_stable_layer_norm", True)
    if norm != "layer" or stable is not True:
        raise ConfigError(
            f"wav2vec2 with feat_extract_norm={norm!r}, do_stable_layer_norm={stable!r} is not supported; "
            "only feat_extract_norm='layer' with do_stable_layer_norm=true (the XLS-R / large-lv60 layout "
            "UniLS uses) is"
        )
    if hf.get("conv_bias", True) is not True:
        raise ConfigError("wav2vec2 with conv_bias=false is not supported; only conv_bias=true (XLS-R) is")
    for name in ("hidden_act", "feat_extract_activation"):
        if hf.get(name, "gelu") != "gelu":
            raise ConfigError(f"wav2vec2 with {name}={hf[name]!r} is not supported; only 'gelu' is")
    if hf.get("add_adapter", False):
        raise ConfigError("wav2vec2 with add_adapter=true is not supported (UniLS never runs the adapter)")
    defaults = Wav2Vec2Config()
    try:
        cfg = Wav2Vec2Config(
            hidden_size=int(hf.get("hidden_size", defaults.hidden_size)),
            num_hidden_layers=int(hf.get("num_hidden_layers", defaults.num_hidden_layers)),
            num_attention_heads=int(hf.get("num_attention_heads", defaults.num_attention_heads)),
            intermediate_size=int(hf.get("intermediate_size", defaults.intermediate_size)),
            conv_dim=tuple(int(x) for x in hf.get("conv_dim", defaults.conv_dim)),
            conv_kernel=tuple(int(x) for x in hf.get("conv_kernel", defaults.conv_kernel)),
            conv_stride=tuple(int(x) for x in hf.get("conv_stride", defaults.conv_stride)),
            conv_bias=True,
            num_conv_pos_embeddings=int(hf.get("num_conv_pos_embeddings", defaults.num_conv_pos_embeddings)),
            num_conv_pos_embedding_groups=int(
                hf.get("num_conv_pos_embedding_groups", defaults.num_conv_pos_embedding_groups)
            ),
            layer_norm_eps=float(hf.get("layer_norm_eps", defaults.layer_norm_eps)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"malformed wav2vec2 config: {exc}") from exc
    layers = hf.get("num_feat_extract_layers")
    if layers is not None and int(layers) != len(cfg.conv_dim):
        raise ConfigError(
            f"wav2vec2 num_feat_extract_layers={layers} but conv_dim has {len(cfg.conv_dim)} entries"
        )
    cfg.validate()
    return cfg
