"""Our wav2vec2 against the reference implementation (transformers, a dev-only dependency)."""

import numpy as np
import pytest
import torch

from unils import CheckpointError, ConfigError
from unils.config import Wav2Vec2Config
from unils.nn.wav2vec2 import Wav2Vec2Encoder, config_from_hf, convert_hf_state_dict

transformers = pytest.importorskip("transformers")

HF_KW = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
    conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
    conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    hf_cfg = transformers.Wav2Vec2Config(**HF_KW)
    ref = transformers.Wav2Vec2Model(hf_cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so wiring mistakes show
        for name, p in ref.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
    ours = Wav2Vec2Encoder(config_from_hf(hf_cfg.to_dict())).eval()
    ours.load_state_dict(convert_hf_state_dict(ref.state_dict(), set(ours.state_dict())), strict=True)
    return ref, ours


def reference_features(ref, wave):
    """The UniLS wrapper: per-window unbiased normalisation, conv stack, projection, encoder."""
    x = (wave - wave.mean(-1, keepdim=True)) / (wave.std(-1, keepdim=True) + 1e-6)
    h = ref.feature_extractor(x).transpose(1, 2)
    h = ref.feature_projection(h)[0]
    return ref.encoder(h, attention_mask=None, return_dict=True)[0]


@pytest.mark.parametrize("samples", [64000, 16123])
def test_features_match_reference(pair, samples):
    ref, ours = pair
    wave = torch.randn(2, samples, generator=torch.Generator().manual_seed(samples)) * 0.3
    with torch.no_grad():
        expected = reference_features(ref, wave)
        got = ours(wave)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-4


def test_frame_count_of_a_window():
    enc = Wav2Vec2Encoder(Wav2Vec2Config(**{k: v for k, v in HF_KW.items() if k in Wav2Vec2Config.__dataclass_fields__}))
    assert enc.num_frames(64000) == 199
    with torch.no_grad():
        assert enc(torch.zeros(1, 64000)).shape == (1, 199, 64)
        assert torch.isfinite(enc(torch.zeros(1, 64000))).all()  # silent window stays finite


def test_state_dict_conversion_variants(pair):
    ref, ours = pair
    expected = set(ours.state_dict())
    sd = ref.state_dict()
    # transformers v5 parametrization names or legacy weight_g/weight_v both map to ours
    keys = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v") for k in sd}
    assert set(convert_hf_state_dict({k: torch.zeros(1) for k in keys})) == expected
    param = {
        k.replace("weight_g", "parametrizations.weight.original0").replace("weight_v", "parametrizations.weight.original1"): v
        for k, v in sd.items()
    }
    assert set(convert_hf_state_dict(param, expected)) == expected
    pretraining = {f"wav2vec2.{k}": v for k, v in sd.items()}
    pretraining.update({"quantizer.codevectors": torch.zeros(1), "project_q.weight": torch.zeros(1),
                        "project_hid.weight": torch.zeros(1), "wav2vec2.masked_spec_embed": torch.zeros(64)})
    assert set(convert_hf_state_dict(pretraining, expected)) == expected
    with pytest.raises(CheckpointError, match="surprise"):
        convert_hf_state_dict({**sd, "surprise.weight": torch.zeros(1)}, expected)


def test_unsupported_variants_are_refused():
    with pytest.raises(ConfigError, match="feat_extract_norm"):
        config_from_hf({"feat_extract_norm": "group", "do_stable_layer_norm": False})


def test_bfloat16_autocast_is_close(pair):
    _, ours = pair
    wave = torch.randn(1, 64000, generator=torch.Generator().manual_seed(3)) * 0.3
    with torch.no_grad():
        exact = ours(wave)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = ours(wave).float()
    rel = ((fast - exact).norm() / exact.norm()).item()
    assert rel < 0.05


@pytest.mark.slow
def test_full_size_shape():
    enc = Wav2Vec2Encoder(Wav2Vec2Config()).eval()
    with torch.no_grad():
        assert enc(torch.randn(1, 64000) * 0.1).shape == (1, 199, 1024)
