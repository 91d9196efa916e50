"""The precision choice: the fastest native format by default, float32 exact, int8 opt-in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import speech_like

import unils.precision
from unils import ConfigError, UniLS
from unils.precision import ENV_VAR, choose_precision, cpu_kind, quantize_linear_int8


@pytest.fixture
def probe(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bfloat16; no $UNILS_DTYPE."""
    monkeypatch.delenv(ENV_VAR, raising=False)

    def set_native(native: bool) -> None:
        monkeypatch.setattr(
            unils.precision, "cpu_has_native", lambda dtype: native and dtype == torch.bfloat16
        )

    return set_native


def test_auto_is_bfloat16_where_native_and_float32_elsewhere(probe):
    probe(True)
    p = choose_precision("auto", "cpu")
    assert (p.name, p.audio_encoder, p.generator, p.codec) == ("bfloat16", "bfloat16", "bfloat16", "float32")
    assert p.reason.startswith("auto: CPU") and not p.exact and p.dtype == torch.bfloat16
    assert choose_precision(None, "cpu").name == "bfloat16"
    probe(False)
    p = choose_precision("auto", "cpu")
    assert p.name == "float32" and p.exact and "no native bfloat16" in p.reason


def test_auto_on_cuda_follows_bfloat16_support(probe, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_precision("auto", "cuda").name == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_precision("auto", "cuda:0").name == "float32"
    with pytest.raises(ValueError, match="int8 runs on the CPU only"):
        choose_precision("int8", "cuda")


def test_explicit_choices_and_the_environment_override(probe, monkeypatch):
    probe(True)
    assert choose_precision("float32", "cpu").name == "float32"
    assert choose_precision(torch.float16, "cpu").name == "float16"
    assert choose_precision("torch.bfloat16", "cpu").reason == "requested"
    int8 = choose_precision("int8", "cpu")
    assert (int8.audio_encoder, int8.generator) == ("int8", "float32")
    monkeypatch.setenv(ENV_VAR, "float32")
    assert choose_precision("auto", "cpu").name == "float32"
    assert choose_precision("auto", "cpu").reason == f"${ENV_VAR}"
    assert choose_precision("bfloat16", "cpu").name == "bfloat16"  # an explicit request wins
    with pytest.raises(ValueError, match="precision 'fp8' is not supported"):
        choose_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="not supported"):
        choose_precision(torch.int32, "cpu")


def test_from_pretrained_defaults_to_auto(tiny_model, tmp_path, probe):
    tiny_model.save_pretrained(tmp_path / "m")
    probe(True)
    fast = UniLS.from_pretrained(tmp_path / "m")
    assert fast.precision.name == "bfloat16" and fast.generator.sos_embed.dtype == torch.bfloat16
    assert fast.codec.motion_mean.dtype == torch.float32
    probe(False)
    exact = UniLS.from_pretrained(tmp_path / "m")
    assert exact.precision.name == "float32" and exact.generator.sos_embed.dtype == torch.float32
    audio = speech_like(3.0)
    assert exact.generate(audio, seed=1) == tiny_model.generate(audio, seed=1)  # float32 stays exact
    bf16 = fast.generate(audio, seed=1, temperature=0.001)
    assert np.isfinite(bf16.to_array()).all() and len(bf16) == 75


def test_int8_audio_encoder(tiny_model, tmp_path):
    audio = speech_like(4.0, seed=2)
    ref = tiny_model.generate(audio, seed=0, smooth=False)
    windows = torch.from_numpy(audio).view(1, -1)
    feats32 = tiny_model.engine.encode(windows)
    tiny_model.set_precision("int8")
    assert str(tiny_model.precision) == "int8" and tiny_model.precision.generator == "float32"
    kinds = {type(m).__module__ for m in tiny_model.audio_encoder.encoder.modules()}
    assert "torch.ao.nn.quantized.dynamic.modules.linear" in kinds
    feats8 = tiny_model.engine.encode(windows)
    rel = float((feats8 - feats32).norm() / feats32.norm())
    assert 0 < rel < 0.1  # quantized, not broken
    got = tiny_model.generate(audio, seed=0, smooth=False)
    assert got.to_array().shape == ref.to_array().shape and np.isfinite(got.to_array()).all()
    with pytest.raises(ConfigError, match="int8 is a run-time form"):
        tiny_model.save_pretrained(tmp_path / "q")
    with pytest.raises(ValueError, match="reload the model"):
        tiny_model.set_precision("float32")


def test_quantize_replaces_only_linear_layers():
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Sequential(torch.nn.Linear(8, 2))
    )
    x = torch.randn(3, 4)
    want = net(x)
    assert quantize_linear_int8(net) == 2
    assert isinstance(net[1], torch.nn.GELU)
    torch.testing.assert_close(net(x), want, atol=0.05, rtol=0.05)


def test_cpu_kind_names_the_isa():
    kind = cpu_kind()
    assert torch.backends.cpu.get_cpu_capability() in kind and "bfloat16" in kind


def _mel_config():
    from helpers import tiny_config

    from unils.config import AudioEncoderConfig, MelConfig

    cfg = tiny_config()
    cfg.audio_encoder = AudioEncoderConfig(
        type="mel", mel=MelConfig(channels=16, out_dim=16, n_mels=20, num_layers=1)
    )
    return cfg


@pytest.mark.parametrize("encoder", ["wav2vec2", "mel"])
@pytest.mark.parametrize("precision", ["bfloat16", "float16", "int8"])
def test_every_entry_point_runs_in_every_precision(encoder, precision):
    """Regression: the mel front end's buffers were cast to bfloat16 and its STFT failed under "auto"."""
    from helpers import randomize_, tiny_config

    cfg = tiny_config() if encoder == "wav2vec2" else _mel_config()
    torch.manual_seed(0)
    model = randomize_(UniLS(cfg)).eval()
    a, b = speech_like(4.5, seed=1), speech_like(4.5, seed=2)
    ref = model.generate(a, b, seed=0, temperature=0.001, smooth=False)
    model.set_precision(precision)
    got = model.generate(a, b, seed=0, temperature=0.001, smooth=False)
    assert len(got) == len(ref) == 113 and np.isfinite(got.to_array()).all()
    assert float(np.abs(got.to_array() - ref.to_array()).mean()) < 0.5 * float(np.abs(ref.to_array()).mean())
    first, second = model.generate_both(a, b, seed=0)
    batch = model.generate_batch([a, (a, b)], seed=0)
    assert len(first) == len(second) == len(batch[1]) == 113
    with model.stream(seed=0) as session:
        frames = [session.push(a[i : i + 8000], b[i : i + 8000]) for i in range(0, len(a), 8000)]
        frames.append(session.flush())
    assert sum(len(f) for f in frames) == 113
    if encoder == "mel":  # signal processing stays float32 whatever the model's precision
        assert (
            model.audio_encoder.filters.dtype == torch.float32
            and model.audio_encoder.window.dtype == torch.float32
        )
