"""Official-format checkpoints -> unils: key table, LoRA merge, strictness, CLI, auto-conversion."""

import copy
import json
import logging

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from conftest import randomize_, speech_like, tiny_config
from unils import CheckpointError, CheckpointNotFoundError, UniLS
from unils.cli import main
from unils.convert import convert_official, official_to_unils_key, unils_to_official_key

LORA_TARGETS = ["code_token_embed", "logits_head.1"] + [
    f"attn_blocks.attn_blocks.{i}.{m}" for i in range(2) for m in ("self_attn.to_qkv", "self_attn.to_out", "ffn.1", "ffn.3")
]


def official_meta(cfg):
    return {
        "MODEL": {
            "NAME": "UniLSLoRAGen", "AUDIO_ENCODER": "wav2vec", "T_DEPTH": cfg.generator.depth,
            "T_NUM_HEAD": cfg.generator.num_heads, "T_EMBED_DIM": cfg.generator.embed_dim,
            "VAE_CONFIG": {
                "MOTION_DIM": 108, "V_CODE_DIM": 32, "V_PATCH_NUMS": list(cfg.codec.scales),
                "T_DEPTH": cfg.codec.depth, "T_NUM_HEADS": cfg.codec.num_heads, "T_HIDDEN_DIM": cfg.codec.hidden_dim,
            },
        },
        "EXP_STR": "UniLSLoRAGen_Test",
    }


def write_wav2vec2_folder(model, folder):
    """The audio encoder as a transformers-format folder (prefixed keys, v5 weight-norm names)."""
    folder.mkdir()
    w = model.config.audio_encoder.wav2vec2
    hf = {"hidden_size": w.hidden_size, "num_hidden_layers": w.num_hidden_layers,
          "num_attention_heads": w.num_attention_heads, "intermediate_size": w.intermediate_size,
          "conv_dim": list(w.conv_dim), "conv_kernel": list(w.conv_kernel), "conv_stride": list(w.conv_stride),
          "conv_bias": True, "feat_extract_norm": "layer", "do_stable_layer_norm": True,
          "num_conv_pos_embeddings": w.num_conv_pos_embeddings,
          "num_conv_pos_embedding_groups": w.num_conv_pos_embedding_groups, "layer_norm_eps": 1e-5}
    (folder / "config.json").write_text(json.dumps(hf))
    sd = {}
    for k, v in model.audio_encoder.state_dict().items():
        k = k.replace("conv.weight_g", "conv.parametrizations.weight.original0").replace(
            "conv.weight_v", "conv.parametrizations.weight.original1")
        sd["wav2vec2." + k] = v.clone()
    sd["quantizer.codevectors"] = torch.zeros(1, 4, 8)
    sd["wav2vec2.masked_spec_embed"] = torch.zeros(w.hidden_size)
    save_file(sd, str(folder / "model.safetensors"))


def official_state(model):
    return {unils_to_official_key(k): v.clone() for k, v in model.state_dict().items() if not k.startswith("audio_encoder.")}


@pytest.fixture
def official(tiny_model, tmp_path):
    torch.save({"model": official_state(tiny_model), "meta_cfg": official_meta(tiny_model.config)}, tmp_path / "iter_1.pt")
    write_wav2vec2_folder(tiny_model, tmp_path / "w2v")
    return tmp_path / "iter_1.pt", tmp_path / "w2v"


def test_key_table_is_a_bijection(tiny_model):
    keys = list(tiny_model.state_dict())
    off = [unils_to_official_key(k) for k in keys]
    assert len(set(off)) == len(keys)
    assert all(official_to_unils_key(o) == k for o, k in zip(off, keys))
    assert "attn_blocks.attn_blocks.0.self_audio_attn.k_proj.weight" in off
    assert "attn_blocks.lvl_embed.weight" in off and "sos_embed" in off and "base_codec.motion_std" in off
    with pytest.raises(CheckpointError, match="no unils counterpart"):
        official_to_unils_key("attn_blocks.mystery")


def test_convert_round_trip_is_exact(tiny_model, official, tmp_path):
    pt, w2v = official
    report = convert_official(pt, tmp_path / "out", audio_encoder=w2v)
    assert report.consumed == len(official_state(tiny_model)) and not report.merged_lora
    assert "wav2vec2.masked_spec_embed" in report.dropped
    loaded = UniLS.from_pretrained(tmp_path / "out")
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert loaded.config.codec == tiny_model.config.codec and loaded.config.name == "UniLSLoRAGen_Test"
    audio = speech_like(4.4)
    assert loaded.generate(audio, seed=3) == tiny_model.generate(audio, seed=3)
    assert (tmp_path / "out" / "README.md").read_text().count(report.sha256) == 1


class LoRALinear(nn.Module):
    """Unmerged LoRA forward, as peft computes it: base(x) + scale * B(A(x))."""

    def __init__(self, base, a, b, scale):
        super().__init__()
        self.base, self.a, self.b, self.scale = base, a, b, scale

    def forward(self, x):
        return self.base(x) + self.scale * (x @ self.a.T) @ self.b.T


def test_lora_merge_equals_unmerged_forward(tiny_model, tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = official_state(tiny_model)
    peft = {}
    adapters = {}
    for key, value in state.items():
        mod = key.rsplit(".", 1)[0]
        if mod in LORA_TARGETS:
            peft[f"base_model.model.{mod}.base_layer.{key.rsplit('.', 1)[1]}"] = value
            if key.endswith(".weight"):
                a = torch.randn(4, value.shape[1], generator=gen) * 0.1
                b = torch.randn(value.shape[0], 4, generator=gen) * 0.1
                peft[f"base_model.model.{mod}.lora_A.default.weight"] = a
                peft[f"base_model.model.{mod}.lora_B.default.weight"] = b
                adapters[mod] = (a, b)
        elif "_audio_attn." in key:
            mod, rest = key.split("_audio_attn.", 1)
            peft[f"base_model.model.{mod}_audio_attn.modules_to_save.default.{rest}"] = value
            peft[f"base_model.model.{mod}_audio_attn.original_module.{rest}"] = torch.randn_like(value)
        else:
            peft[f"base_model.model.{key}"] = value
    for k, v in tiny_model.audio_encoder.state_dict().items():
        peft[f"base_model.model.audio_encoder.{k}"] = v
    torch.save({"model": peft, "meta_cfg": official_meta(tiny_model.config)}, tmp_path / "peft.pt")
    report = convert_official(tmp_path / "peft.pt", tmp_path / "out", lora_scale=2.0)
    assert len(report.merged_lora) == len(LORA_TARGETS)
    merged = UniLS.from_pretrained(tmp_path / "out")

    unmerged = copy.deepcopy(tiny_model)
    for mod, (a, b) in adapters.items():
        ours = official_to_unils_key(mod + ".weight").rsplit(".", 1)[0]
        parent_name, child = ours.rsplit(".", 1)
        parent = unmerged.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), a, b, 2.0))
    audio = speech_like(4.0)
    got = merged.generate(audio, seed=1, smooth=False)
    want = unmerged.generate(audio, seed=1, smooth=False)
    assert got.allclose(want, atol=1e-4)
    assert not got.allclose(tiny_model.generate(audio, seed=1, smooth=False), atol=1e-3)


def test_strict_conversion_errors(tiny_model, official, tmp_path):
    pt, w2v = official
    state = official_state(tiny_model)
    extra = dict(state, **{"attn_blocks.attn_blocks.0.self_attn.extra": torch.zeros(1)})
    torch.save({"model": extra, "meta_cfg": official_meta(tiny_model.config)}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected: generator\.blocks\.0\.self_attn\.extra"):
        convert_official(tmp_path / "extra.pt", tmp_path / "o1", audio_encoder=w2v)
    missing = dict(state)
    missing.pop("logits_head.1.bias")
    torch.save({"model": missing, "meta_cfg": official_meta(tiny_model.config)}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing: generator\.logits_head\.1\.bias"):
        convert_official(tmp_path / "missing.pt", tmp_path / "o2", audio_encoder=w2v)
    shaped = dict(state, sos_embed=torch.zeros(1, 1, 7))
    torch.save({"model": shaped, "meta_cfg": official_meta(tiny_model.config)}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"generator\.sos_embed \(checkpoint \[1, 1, 7\]"):
        convert_official(tmp_path / "shape.pt", tmp_path / "o3", audio_encoder=w2v)
    with pytest.raises(CheckpointNotFoundError, match="--audio-encoder"):
        convert_official(pt, tmp_path / "o4")
    codec_only = {k[len("base_codec."):]: v for k, v in state.items() if k.startswith("base_codec.")}
    torch.save({"model": codec_only}, tmp_path / "codec.pt")
    with pytest.raises(CheckpointError):
        convert_official(tmp_path / "codec.pt", tmp_path / "o5", audio_encoder=w2v)


def test_cli_convert(official, tmp_path, capsys):
    pt, w2v = official
    assert main(["convert", str(pt), str(tmp_path / "cli"), "--audio-encoder", str(w2v), "--dtype", "bfloat16"]) == 0
    assert "LoRA" in capsys.readouterr().out
    from safetensors.torch import load_file

    assert load_file(str(tmp_path / "cli" / "model.safetensors"))["generator.sos_embed"].dtype == torch.bfloat16
    assert load_file(str(tmp_path / "cli" / "model.safetensors"))["codec.motion_std"].dtype == torch.float32
    m = UniLS.from_pretrained(tmp_path / "cli")  # storage precision; compute precision is chosen at load
    assert m.generator.sos_embed.dtype == torch.float32
    assert main(["convert", str(tmp_path / "nope.pt"), str(tmp_path / "x")]) != 0
    assert "no official checkpoint" in capsys.readouterr().err


def test_from_pretrained_converts_an_official_folder_once(tiny_model, official, tmp_path, monkeypatch, caplog):
    pt, w2v = official
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "iter_1.pt").write_bytes(pt.read_bytes())
    w2v.rename(folder / "wav2vec2")
    monkeypatch.setenv("UNILS_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="unils"):
        m = UniLS.from_pretrained(folder)
    assert "converting it once" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unils"):
        UniLS.from_pretrained(folder)
    assert "using the converted copy" in caplog.text
    assert torch.equal(m.generator.sos_embed, tiny_model.generator.sos_embed)
