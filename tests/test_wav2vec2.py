"""Our wav2vec2 against the reference implementation (transformers, a dev-only dependency)."""

from __future__ import annotations

import copy
import logging
import time

import pytest
import torch

from unils.config import Wav2Vec2Config
from unils.errors import AudioError, CheckpointError, ConfigError
from unils.nn.wav2vec2 import Wav2Vec2Encoder, config_from_hf, convert_hf_state_dict

transformers = pytest.importorskip("transformers")

logger = logging.getLogger(__name__)

HF_KW = {
    "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
    "conv_dim": (32,) * 7, "conv_kernel": (10, 3, 3, 3, 3, 2, 2), "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "conv_bias": True, "feat_extract_norm": "layer", "do_stable_layer_norm": True,
    "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4,
}
G_HF = "encoder.pos_conv_embed.conv.parametrizations.weight.original0"
V_HF = "encoder.pos_conv_embed.conv.parametrizations.weight.original1"
G_OURS = "encoder.pos_conv_embed.conv.weight_g"
V_OURS = "encoder.pos_conv_embed.conv.weight_v"


def legacy_names(sd):
    """transformers v4 / hub checkpoint names (weight_g / weight_v)."""
    return {k.replace("parametrizations.weight.original0", "weight_g").replace(
        "parametrizations.weight.original1", "weight_v"): v for k, v in sd.items()}


def parametrization_names(sd):
    """transformers v5 runtime names (weight-norm parametrization)."""
    return {k.replace("conv.weight_g", "conv.parametrizations.weight.original0").replace(
        "conv.weight_v", "conv.parametrizations.weight.original1"): v for k, v in sd.items()}


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    ref = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**HF_KW)).eval()
    with torch.no_grad():  # non-trivial LayerNorms, biases and weight-norm gains, so wiring mistakes show
        for name, p in ref.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
            elif "original0" in name or name.endswith("weight_g"):
                p.mul_(torch.rand_like(p) + 0.5)
    return ref


@pytest.fixture(scope="module")
def ours(hf_model):
    enc = Wav2Vec2Encoder(config_from_hf(hf_model.config.to_dict())).eval()
    enc.load_state_dict(convert_hf_state_dict(hf_model.state_dict()), strict=True)
    return enc


def reference_features(ref, wave):
    """UniLS's wrapper (spec 5.1): per-window unbiased normalisation, conv stack, projection, encoder."""
    x = (wave - wave.mean(-1, keepdim=True)) / (wave.std(-1, keepdim=True) + 1e-6)
    h = ref.feature_extractor(x).transpose(1, 2)
    h = ref.feature_projection(h)[0]
    return ref.encoder(h, attention_mask=None, return_dict=True).last_hidden_state


@pytest.mark.parametrize("samples", [64000, 16123])
def test_features_match_reference(hf_model, ours, samples):
    wave = torch.randn(2, samples, generator=torch.Generator().manual_seed(samples)) * 0.3
    wave[1] *= 5.0  # rows are normalised separately
    with torch.no_grad():
        expected = reference_features(hf_model, wave)
        got = ours(wave)
        via_model = hf_model(Wav2Vec2Encoder.normalize(wave)).last_hidden_state
    assert got.shape == expected.shape == (2, ours.num_frames(samples), 64)
    assert got.dtype == torch.float32
    assert (got - expected).abs().max().item() < 1e-4
    assert (got - via_model).abs().max().item() < 1e-4
    with torch.no_grad():  # the cached positional weight gives the same result
        assert torch.equal(ours(wave), got)


def test_normalize_false_takes_input_as_is(ours):
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = ours(wave * 3.0 + 1.0)
        b = ours(Wav2Vec2Encoder.normalize(wave * 3.0 + 1.0), normalize=False)
        c = ours(wave * 3.0 + 1.0, normalize=False)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c, atol=1e-3)


def test_key_sets_match(hf_model, ours):
    ours_keys = set(ours.state_dict())
    converted = convert_hf_state_dict(hf_model.state_dict())
    assert set(converted) == ours_keys
    pos_keys = {k for k in ours_keys if "pos_conv_embed" in k}
    assert pos_keys == {G_OURS, V_OURS, "encoder.pos_conv_embed.conv.bias"}
    # our names are transformers' relative names: nothing else is needed to go back
    hf_keys = set(legacy_names(hf_model.state_dict()))
    assert ours_keys == hf_keys - {"masked_spec_embed"}


@pytest.mark.parametrize("naming", [legacy_names, parametrization_names])
def test_weight_norm_key_renaming(hf_model, ours, naming):
    sd = naming(hf_model.state_dict())
    assert (G_HF in sd) == (naming is parametrization_names)
    converted = convert_hf_state_dict(sd)
    assert set(converted) == set(ours.state_dict())
    assert converted[G_OURS].shape == (1, 1, 16)
    assert converted[V_OURS].shape == (64, 16, 16)
    assert torch.equal(converted[V_OURS], hf_model.state_dict()[V_HF])


def test_pretraining_state_dict(hf_model, ours):
    torch.manual_seed(1)
    pre = transformers.Wav2Vec2ForPreTraining(hf_model.config).eval()
    pre.wav2vec2.load_state_dict(hf_model.state_dict())
    sd = pre.state_dict()
    assert any(k.startswith("quantizer.") for k in sd)
    assert any(k.startswith("project_q.") for k in sd) and any(k.startswith("project_hid.") for k in sd)
    assert "wav2vec2.masked_spec_embed" in sd
    for naming in (legacy_names, parametrization_names):
        converted = convert_hf_state_dict(naming(sd), set(ours.state_dict()))
        assert set(converted) == set(ours.state_dict())
    fresh = Wav2Vec2Encoder(ours.config).eval()
    fresh.load_state_dict(convert_hf_state_dict(sd), strict=True)
    wave = torch.randn(1, 8000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(fresh(wave), ours(wave), rtol=0, atol=0)


def test_unexpected_keys_raise(hf_model, ours):
    sd = hf_model.state_dict()
    with pytest.raises(CheckpointError, match="surprise.weight"):
        convert_hf_state_dict({**sd, "surprise.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="wav2vec2.encoder.layers.9.attention.q_proj.weight"):
        convert_hf_state_dict({**sd, "wav2vec2.encoder.layers.9.attention.q_proj.weight": torch.zeros(1)},
                              set(ours.state_dict()))
    with pytest.raises(CheckpointError, match="twice"):
        convert_hf_state_dict({**sd, "wav2vec2." + G_OURS: torch.zeros(1)})


def test_config_from_hf(hf_model):
    cfg = config_from_hf(hf_model.config.to_dict())
    sizes = (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size)
    assert sizes == (64, 2, 4, 128)
    assert cfg.conv_dim == (32,) * 7
    assert (cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups) == (16, 4)
    assert config_from_hf({}) == Wav2Vec2Config()  # no config.json: XLS-R 300M
    base = hf_model.config.to_dict()
    for bad, match in [
        ({"feat_extract_norm": "group"}, "feat_extract_norm"),
        ({"do_stable_layer_norm": False}, "do_stable_layer_norm"),
        ({"conv_bias": False}, "conv_bias"),
        ({"hidden_act": "relu"}, "hidden_act"),
        ({"model_type": "hubert"}, "model_type"),
    ]:
        with pytest.raises(ConfigError, match=match):
            config_from_hf({**base, **bad})
    with pytest.raises(ConfigError, match="feat_extract_norm"):  # transformers' default (base) variant
        config_from_hf(transformers.Wav2Vec2Config().to_dict())


def test_frame_count_of_a_window():
    full = Wav2Vec2Encoder.__new__(Wav2Vec2Encoder)  # arithmetic only: no 300M-parameter model
    nn_init = torch.nn.Module.__init__
    nn_init(full)
    full.config = Wav2Vec2Config()
    assert full.num_frames(64000) == 199
    assert full.num_frames(400) == 1 and full.num_frames(399) == 0


def test_silence_and_short_input(ours):
    with torch.no_grad():
        out = ours(torch.zeros(2, 64000))
    assert out.shape == (2, 199, 64)
    assert torch.isfinite(out).all()
    assert torch.equal(Wav2Vec2Encoder.normalize(torch.zeros(1, 100)), torch.zeros(1, 100))
    with torch.no_grad():
        assert ours(torch.randn(1, 400)).shape == (1, 1, 64)
        with pytest.raises(AudioError, match="too short"):
            ours(torch.randn(1, 399))
        with pytest.raises(AudioError, match="batch"):
            ours(torch.randn(64000))


def test_positional_weight_cache_follows_parameters(ours):
    enc = copy.deepcopy(ours)
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = enc(wave)
        enc.encoder.pos_conv_embed.conv.weight_g.mul_(2.0)  # in-place write, as load_state_dict does
        after = enc(wave)
        assert not torch.allclose(before, after)
        enc.load_state_dict(ours.state_dict())
        torch.testing.assert_close(enc(wave), before, rtol=0, atol=0)
    # with gradients on, the weight is rebuilt on every call and gradients reach weight_g / weight_v
    enc.zero_grad()
    enc(wave).square().mean().backward()
    assert enc.encoder.pos_conv_embed.conv.weight_g.grad.abs().sum() > 0
    assert enc.encoder.pos_conv_embed.conv.weight_v.grad.abs().sum() > 0


def test_bfloat16_autocast_is_close(ours):
    wave = torch.randn(2, 64000, generator=torch.Generator().manual_seed(3)) * 0.3
    with torch.no_grad():
        exact = ours(wave)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            fast = ours(wave)
    assert torch.isfinite(fast).all()
    rel = ((fast.float() - exact).norm() / exact.norm()).item()
    logger.info("bf16 autocast relative error (tiny random model): %.4f", rel)
    assert rel < 0.05


def test_bfloat16_weights_run():
    torch.manual_seed(0)
    ours_fields = Wav2Vec2Config.__dataclass_fields__
    enc = Wav2Vec2Encoder(Wav2Vec2Config(**{k: v for k, v in HF_KW.items() if k in ours_fields}))
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        exact = enc.eval()(wave)
        low = enc.to(torch.bfloat16)(wave)
    assert low.dtype == torch.bfloat16
    assert ((low.float() - exact).norm() / exact.norm()).item() < 0.05


@pytest.mark.slow
def test_full_size_shape_and_time():
    enc = Wav2Vec2Encoder(Wav2Vec2Config()).eval()
    assert sum(p.numel() for p in enc.parameters()) > 300_000_000
    wave = torch.randn(1, 64000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        enc(wave)
        t0 = time.perf_counter()
        out = enc(wave)
        seconds = time.perf_counter() - t0
    assert out.shape == (1, 199, 1024)
    assert torch.isfinite(out).all()
    logger.info("full-size wav2vec2, one 4 s window, %d threads: %.2f s", torch.get_num_threads(), seconds)
