"""Official-format checkpoints -> unils: key table, LoRA merge, strictness, CLI, auto-conversion.

The official code is never imported: the official-format files are built from a randomized tiny
UniLS with the inverse key table (:func:`unils.convert.unils_to_official_key`).
"""

import copy
import json
import logging

import pytest
import torch
from unils.precision import choose_precision
from helpers import randomize_, speech_like, tiny_config
from safetensors.torch import load_file, save_file
from torch import nn

from unils import CheckpointError, CheckpointNotFoundError, UniLS
from unils.cli import main
from unils.convert import (
    convert_official,
    find_official_checkpoint,
    maybe_convert_official,
    merge_lora,
    official_to_unils_key,
    unils_to_official_key,
)

DEPTH = tiny_config().generator.depth
LORA_TARGETS = ["code_token_embed", "logits_head.1"] + [
    f"attn_blocks.attn_blocks.{i}.{m}"
    for i in range(DEPTH)
    for m in ("self_attn.to_qkv", "self_attn.to_out", "ffn.1", "ffn.3")
]
SAVED = [
    f"attn_blocks.attn_blocks.{i}.{m}" for i in range(DEPTH) for m in ("self_audio_attn", "other_audio_attn")
]


def official_meta(cfg, **extra):
    return {
        "MODEL": {
            "NAME": "UniLSLoRAGen",
            "AUDIO_ENCODER": "wav2vec",
            "T_DEPTH": cfg.generator.depth,
            "T_NUM_HEAD": cfg.generator.num_heads,
            "T_EMBED_DIM": cfg.generator.embed_dim,
            "VAE_CONFIG": {
                "MOTION_DIM": 108,
                "V_CODE_DIM": 32,
                "V_PATCH_NUMS": list(cfg.codec.scales),
                "T_DEPTH": cfg.codec.depth,
                "T_NUM_HEADS": cfg.codec.num_heads,
                "T_HIDDEN_DIM": cfg.codec.hidden_dim,
            },
        },
        "EXP_STR": "UniLSLoRAGen_Test",
        **extra,
    }


def hf_audio_state(model, prefix="wav2vec2."):
    """Our wav2vec2 tensors under transformers v5 names (weight-norm parametrization) + pre-training extras."""
    sd = {}
    for k, v in model.audio_encoder.state_dict().items():
        k = k.replace("conv.weight_g", "conv.parametrizations.weight.original0").replace(
            "conv.weight_v", "conv.parametrizations.weight.original1"
        )
        sd[prefix + k] = v.clone()
    sd[prefix + "masked_spec_embed"] = torch.zeros(model.config.audio_encoder.wav2vec2.hidden_size)
    return sd


def write_wav2vec2_folder(model, folder):
    """The audio encoder as a transformers-format folder (config.json + prefixed model.safetensors)."""
    folder.mkdir()
    w = model.config.audio_encoder.wav2vec2
    hf = {
        "model_type": "wav2vec2",
        "hidden_size": w.hidden_size,
        "num_hidden_layers": w.num_hidden_layers,
        "num_attention_heads": w.num_attention_heads,
        "intermediate_size": w.intermediate_size,
        "conv_dim": list(w.conv_dim),
        "conv_kernel": list(w.conv_kernel),
        "conv_stride": list(w.conv_stride),
        "conv_bias": True,
        "feat_extract_norm": "layer",
        "do_stable_layer_norm": True,
        "num_conv_pos_embeddings": w.num_conv_pos_embeddings,
        "num_conv_pos_embedding_groups": w.num_conv_pos_embedding_groups,
        "layer_norm_eps": 1e-5,
    }
    (folder / "config.json").write_text(json.dumps(hf))
    sd = hf_audio_state(model)
    sd["quantizer.codevectors"] = torch.zeros(1, 4, 8)
    sd["project_q.weight"] = torch.zeros(4, 4)
    save_file(sd, str(folder / "model.safetensors"))


def official_state(model):
    return {
        unils_to_official_key(k): v.clone()
        for k, v in model.state_dict().items()
        if not k.startswith("audio_encoder.")
    }


def save_official(path, state, meta=None, wrapper="model"):
    obj = {wrapper: state} if wrapper else dict(state)
    if meta is not None:
        obj["meta_cfg"] = meta
    torch.save(obj, path)
    return path


@pytest.fixture
def official(tiny_model, tmp_path):
    pt = save_official(tmp_path / "iter_1.pt", official_state(tiny_model), official_meta(tiny_model.config))
    write_wav2vec2_folder(tiny_model, tmp_path / "w2v")
    return pt, tmp_path / "w2v"


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k, v in sa.items():
        assert torch.equal(sb[k], v), k


# ------------------------------------------------------------------------------- key table
@pytest.mark.parametrize("scales", [(1, 5, 25, 50, 100), (1, 25, 50, 100)])
def test_key_table_is_a_bijection(scales):
    keys = list(UniLS(tiny_config(scales)).state_dict())
    off = [unils_to_official_key(k) for k in keys]
    assert len(set(off)) == len(keys)
    assert [official_to_unils_key(o) for o in off] == keys
    # spot checks against the official names (spec 3.5, 4.7)
    for name in (
        "attn_blocks.attn_blocks.0.self_audio_attn.k_proj.weight",
        "attn_blocks.lvl_embed.weight",
        "sos_embed",
        "attn_blocks.self_pos",
        "attn_blocks.other_pos",
        "logits_head.0.weight",
        "code_token_embed.bias",
        "base_codec.motion_std",
        "base_codec.encoder.encoder_transformer.0.to_qkv.weight",
        "base_codec.encoder.encoder_transformer.1.2.bias",
        "base_codec.decoder.out_mapping.weight",
        "attn_blocks.attn_blocks.1.ffn.3.weight",
    ):
        assert name in off, name
    for bad in ("attn_blocks.mystery", "quantize.foo", "generator.sos_embed"):
        with pytest.raises(CheckpointError, match="no unils counterpart"):
            official_to_unils_key(bad)


# ------------------------------------------------------------------------------- plain conversion
def test_convert_round_trip_is_exact(tiny_model, official, tmp_path):
    pt, w2v = official
    report = convert_official(pt, tmp_path / "out", audio_encoder=w2v)
    n = len(official_state(tiny_model))
    assert report.consumed == report.total == n and not report.merged_lora and not report.modules_to_save
    assert report.dropped == {
        "wav2vec2.masked_spec_embed": "wav2vec2 SpecAugment embedding (unused at inference)",
        "quantizer.codevectors": "wav2vec2 pre-training head",
        "project_q.weight": "wav2vec2 pre-training head",
    }
    assert report.output == str(tmp_path / "out") and report.seconds > 0
    loaded = UniLS.from_pretrained(tmp_path / "out")
    assert_same_weights(loaded, tiny_model)
    assert (
        loaded.config.codec == tiny_model.config.codec
        and loaded.config.generator == tiny_model.config.generator
    )
    assert (
        loaded.config.audio_encoder == tiny_model.config.audio_encoder
        and loaded.config.name == "UniLSLoRAGen_Test"
    )
    audio, partner = speech_like(4.4), speech_like(4.4, seed=5)
    assert loaded.generate(audio, partner, seed=3) == tiny_model.generate(audio, partner, seed=3)
    card = (tmp_path / "out" / "README.md").read_text()
    assert report.sha256 in card and "iter_1.pt" in card and f"{pt.stat().st_size:,} bytes" in card
    assert "\n" in report.summary() and report.sha256 in report.summary()


def test_wrappers_prefixes_and_no_meta(tiny_model, official, tmp_path):
    """state_dict/net wrappers, module./_orig_mod. prefixes, fp16 storage, sizes inferred from shapes."""
    _, w2v = official
    state = {
        f"module._orig_mod.{k}": v.half() if v.is_floating_point() else v
        for k, v in official_state(tiny_model).items()
    }
    pt = save_official(tmp_path / "wrapped.pt", state, meta=None, wrapper="state_dict")
    convert_official(pt, tmp_path / "out", audio_encoder=w2v / "model.safetensors")
    loaded = UniLS.from_pretrained(tmp_path / "out")
    assert loaded.config.generator.depth == DEPTH and loaded.config.codec.scales == (1, 5, 25, 50, 100)
    # head counts are inferred as dim // 64 without meta_cfg (both official sizes use 64-d heads)
    assert loaded.config.generator.num_heads == 1
    for k, v in tiny_model.state_dict().items():
        if k.startswith("audio_encoder."):
            assert torch.equal(loaded.state_dict()[k], v), k
        else:
            assert torch.equal(loaded.state_dict()[k], v.half().float()), k
    bare = save_official(tmp_path / "bare.pt", official_state(tiny_model), meta=None, wrapper=None)
    convert_official(bare, tmp_path / "out2", audio_encoder=w2v)


# ------------------------------------------------------------------------------- LoRA
class LoRALinear(nn.Module):
    """Unmerged LoRA forward as peft computes it: x @ W^T + b + sum_a scale * (x @ A_a^T) @ B_a^T."""

    def __init__(self, base, adapters, scale):
        super().__init__()
        self.base, self.adapters, self.scale = base, adapters, scale

    def forward(self, x):
        out = (
            x @ self.base.weight.T + self.base.bias if self.base.bias is not None else x @ self.base.weight.T
        )
        for a, b in self.adapters:
            out = out + self.scale * (x @ a.T) @ b.T
        return out


def peft_checkpoint(model, scale_meta, rank=4, seed=0):
    """An unmerged peft state dict of ``model`` (official names) and the adapters it holds."""
    gen = torch.Generator().manual_seed(seed)
    state = official_state(model)
    peft, adapters = {}, {}
    for key, value in state.items():
        mod, _, leaf = key.rpartition(".")
        saved = next((s for s in SAVED if key.startswith(s + ".")), None)
        if mod in LORA_TARGETS:
            peft[f"base_model.model.{mod}.base_layer.{leaf}"] = value
            if leaf == "weight":
                names = ["default", "extra"] if mod == "attn_blocks.attn_blocks.0.ffn.1" else ["default"]
                for name in names:
                    a = torch.randn(rank, value.shape[1], generator=gen) * 0.2
                    b = torch.randn(value.shape[0], rank, generator=gen) * 0.2  # nonzero B: a trained adapter
                    peft[f"base_model.model.{mod}.lora_A.{name}.weight"] = a
                    peft[f"base_model.model.{mod}.lora_B.{name}.weight"] = b
                    adapters.setdefault(mod, []).append((a, b))
        elif saved is not None:
            rest = key[len(saved) + 1 :]
            peft[f"base_model.model.{saved}.modules_to_save.default.{rest}"] = value
            peft[f"base_model.model.{saved}.original_module.{rest}"] = torch.randn(value.shape, generator=gen)
        else:
            peft[f"base_model.model.{key}"] = value
    # the official state_dict override only strips top-level audio_encoder.*: peft dicts keep them
    peft.update(hf_audio_state(model, prefix="base_model.model.audio_encoder."))
    meta = official_meta(model.config, LORA={"R": rank, "ALPHA": rank * scale_meta})
    return peft, meta, adapters


def unmerged_model(model, adapters, scale):
    m = copy.deepcopy(model)
    for mod, pairs in adapters.items():
        parent_name, child = official_to_unils_key(mod + ".weight").rsplit(".", 2)[:2]
        parent = m.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), pairs, scale))
    return m


def generator_logits(model, seed=0):
    """Logits of all levels of one window through the full (reference) path, for fixed random inputs."""
    g = torch.Generator().manual_seed(seed)
    gen = model.generator
    style, prev = torch.randn(2, 100, 32, generator=g), torch.randn(2, 100, 32, generator=g)
    audio_dim = model.config.audio_encoder.out_dim
    a_self, a_other = torch.randn(2, 199, audio_dim, generator=g), torch.randn(2, 199, audio_dim, generator=g)
    current = [gen.level_tokens(0, None, 2)]
    for level, p in enumerate(gen.scales[1:], start=1):
        current.append(gen.level_tokens(level, torch.randn(2, p, 32, generator=g) * 0.2, 2))
    with torch.no_grad():
        hidden = gen.forward_reference(
            gen.condition_tokens(style, prev), torch.cat(current, 1), a_self, a_other
        )
        return gen.logits(hidden)


def test_lora_merge_equals_unmerged_forward(tiny_model, tmp_path):
    peft, meta, adapters = peft_checkpoint(tiny_model, scale_meta=2.0)
    save_official(tmp_path / "peft.pt", peft, meta)
    # no audio_encoder argument: the wav2vec2 tensors come from the checkpoint itself
    report = convert_official(tmp_path / "peft.pt", tmp_path / "out")
    assert report.lora_scale == 2.0
    assert sorted(report.merged_lora) == sorted(LORA_TARGETS + ["attn_blocks.attn_blocks.0.ffn.1[extra]"])
    assert report.modules_to_save == sorted(SAVED)
    originals = [k for k, r in report.dropped.items() if "original_module" in r]
    assert len(originals) == sum(1 for k in peft if ".original_module." in k)
    assert "audio_encoder.masked_spec_embed" in report.dropped
    assert report.consumed == report.total - len(report.dropped) and report.total == len(peft)
    assert report.audio_encoder_source == f"{tmp_path / 'peft.pt'} (audio_encoder.* tensors)"
    merged = UniLS.from_pretrained(tmp_path / "out")
    reference = unmerged_model(tiny_model, adapters, 2.0)

    want, got = generator_logits(reference), generator_logits(merged)
    assert (want - got).abs().max() < 1e-5
    assert (want - generator_logits(tiny_model)).abs().max() > 1e-2  # the adapters matter
    for k, v in tiny_model.state_dict().items():  # audio encoder and cross-attention copied exactly
        if k.startswith(("audio_encoder.", "codec.")) or "_audio_attn." in k:
            assert torch.equal(merged.state_dict()[k], v), k
    audio, partner = speech_like(2.4), speech_like(2.4, seed=9)
    got_m = merged.generate(audio, partner, seed=1, smooth=False)
    want_m = reference.generate(audio, partner, seed=1, smooth=False)
    assert got_m.allclose(want_m, atol=1e-5)
    assert got_m.allclose(merged.generate(audio, partner, seed=1, smooth=False, use_cache=False), atol=1e-5)

    # an explicit lora_scale wins over meta_cfg (and without LORA in meta_cfg the default is 1.0)
    r1 = convert_official(tmp_path / "peft.pt", tmp_path / "out1", lora_scale=1.0)
    assert r1.lora_scale == 1.0
    one = generator_logits(UniLS.from_pretrained(tmp_path / "out1"))
    assert (one - generator_logits(unmerged_model(tiny_model, adapters, 1.0))).abs().max() < 1e-5


def test_merge_lora_rules():
    w, a, b = torch.randn(6, 5), torch.randn(2, 5), torch.randn(6, 2)
    out, merged, dropped, saved = merge_lora(
        {
            "x.base_layer.weight": w.half(),
            "x.base_layer.bias": torch.ones(6),
            "x.lora_A.default.weight": a,
            "x.lora_B.default.weight": b,
        },
        scale=0.5,
    )
    assert merged == ["x"] and not dropped and not saved and out["x.weight"].dtype == torch.float16
    assert torch.allclose(
        out["x.weight"].double(), (w.half().double() + 0.5 * b.double() @ a.double()).half().double()
    )
    assert torch.equal(out["x.bias"], torch.ones(6))
    # old peft layout (no base_layer)
    out, merged, _, _ = merge_lora(
        {"x.weight": w, "x.lora_A.default.weight": a, "x.lora_B.default.weight": b}
    )
    assert torch.allclose(out["x.weight"], w + b @ a, atol=1e-6)
    with pytest.raises(CheckpointError, match="lacks lora_B"):
        merge_lora({"x.weight": w, "x.lora_A.default.weight": a})
    with pytest.raises(CheckpointError, match="no base_layer weight"):
        merge_lora({"x.lora_A.default.weight": a, "x.lora_B.default.weight": b})
    with pytest.raises(CheckpointError, match="B @ A is"):
        merge_lora(
            {"x.weight": w, "x.lora_A.default.weight": a, "x.lora_B.default.weight": torch.randn(3, 2)}
        )
    with pytest.raises(CheckpointError, match="without a modules_to_save copy"):
        merge_lora({"m.original_module.weight": w})
    with pytest.raises(CheckpointError, match="several modules_to_save"):
        merge_lora({"m.modules_to_save.a.weight": w, "m.modules_to_save.b.bias": w[0]})


# ------------------------------------------------------------------------------- strictness
def test_strict_conversion_errors(tiny_model, official, tmp_path):
    pt, w2v = official
    state = official_state(tiny_model)
    meta = official_meta(tiny_model.config)

    def convert(name, st, m=meta, **kw):
        return convert_official(
            save_official(tmp_path / f"{name}.pt", st, m), tmp_path / name, **({"audio_encoder": w2v} | kw)
        )

    with pytest.raises(
        CheckpointError,
        match=r"1 unexpected: generator\.blocks\.0\.self_attn\.extra \[official attn_blocks\.attn_blocks\.0\.self_attn\.extra\]",
    ):
        convert("extra", dict(state, **{"attn_blocks.attn_blocks.0.self_attn.extra": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match=r"attn_blocks\.mystery.*no unils counterpart"):
        convert("unknown", dict(state, **{"attn_blocks.mystery": torch.zeros(1)}))
    missing = dict(state)
    missing.pop("logits_head.1.bias")
    with pytest.raises(
        CheckpointError, match=r"1 missing: generator\.logits_head\.1\.bias \[official logits_head\.1\.bias\]"
    ):
        convert("missing", missing)
    shaped = dict(state, **{"attn_blocks.attn_blocks.1.ffn.1.weight": torch.zeros(7, 32)})
    with pytest.raises(
        CheckpointError,
        match=r"misshapen: generator\.blocks\.1\.ffn\.1\.weight \[official attn_blocks\.attn_blocks\.1\.ffn\.1\.weight\] \(checkpoint \[7, 32\], model \[128, 32\]\)",
    ):
        convert("shape", shaped)
    bad_meta = copy.deepcopy(meta)
    bad_meta["MODEL"]["T_DEPTH"] = 3
    with pytest.raises(CheckpointError, match=r"MODEL\.T_DEPTH = 3 but the checkpoint tensors have 2"):
        convert("meta", state, bad_meta)
    bad_meta = copy.deepcopy(meta)
    bad_meta["MODEL"]["VAE_CONFIG"]["V_PATCH_NUMS"] = [1, 25, 50, 100]
    with pytest.raises(CheckpointError, match="V_PATCH_NUMS"):
        convert("scales", state, bad_meta)
    with pytest.raises(CheckpointNotFoundError, match="--audio-encoder"):
        convert_official(pt, tmp_path / "no_audio")
    with pytest.raises(CheckpointNotFoundError, match="no official checkpoint"):
        convert_official(tmp_path / "nope.pt", tmp_path / "nope")
    codec_only = {k[len("base_codec.") :]: v for k, v in state.items() if k.startswith("base_codec.")}
    with pytest.raises(CheckpointError, match="stage-1"):
        convert("codec", codec_only, {"MODEL": meta["MODEL"]["VAE_CONFIG"]})
    prior = {
        k: v
        for k, v in state.items()
        if "_audio_attn." not in k and k not in ("attn_blocks.self_pos", "attn_blocks.other_pos")
    }
    with pytest.raises(CheckpointError, match="stage-2"):
        convert("prior", prior)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="does not hold a dict"):
        convert_official(tmp_path / "list.pt", tmp_path / "list", audio_encoder=w2v)
    # a wav2vec2 of the wrong width: self_pos/other_pos (1024-d in the release) no longer fit
    other = UniLS(tiny_config())
    other.config.audio_encoder.wav2vec2.hidden_size = 64
    with pytest.raises(CheckpointError, match=r"64 wide but the checkpoint expects 32-d audio features"):
        wide = randomize_(UniLS(other.config))
        write_wav2vec2_folder(wide, tmp_path / "w2v64")
        convert("wide", state, audio_encoder=tmp_path / "w2v64")
    assert not (tmp_path / "wide" / "model.safetensors").exists()


# ------------------------------------------------------------------------------- CLI
def test_cli_convert(official, tmp_path, capsys):
    pt, w2v = official
    assert (
        main(["convert", str(pt), str(tmp_path / "cli"), "--audio-encoder", str(w2v), "--dtype", "bfloat16"])
        == 0
    )
    out = capsys.readouterr().out
    assert "LoRA" in out and "consumed" in out
    weights = load_file(str(tmp_path / "cli" / "model.safetensors"))
    assert weights["generator.sos_embed"].dtype == torch.bfloat16
    assert weights["codec.motion_std"].dtype == torch.float32  # the codec stays float32
    m = UniLS.from_pretrained(tmp_path / "cli")  # storage precision; compute precision is chosen at load
    assert m.generator.sos_embed.dtype == torch.float32
    assert main(["convert", str(tmp_path / "nope.pt"), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no official checkpoint" in err and err.count("\n") == 1
    assert main(["convert", str(pt), str(tmp_path / "y")]) == 2
    assert "--audio-encoder" in capsys.readouterr().err


# ------------------------------------------------------------------------------- auto-conversion
def test_maybe_convert_official(tiny_model, official, tmp_path, caplog):
    pt, w2v = official
    tiny_model.save_pretrained(tmp_path / "unils")
    assert maybe_convert_official(tmp_path / "unils", cache_root=tmp_path / "cache") is None
    assert maybe_convert_official(tmp_path / "empty_does_not_exist", cache_root=tmp_path / "cache") is None
    release = tmp_path / "release"
    release.mkdir()
    for name in ("iter_2.pt", "iter_10.pt"):
        (release / name).write_bytes(pt.read_bytes())
    # iterations of one run are several candidates: the error lists each with the call that picks it
    with pytest.raises(CheckpointError, match=r'(?s)iter_2\.pt.*filename="iter_2\.pt".*iter_10\.pt.*filename="iter_10\.pt"'):
        find_official_checkpoint(release)
    assert find_official_checkpoint(release, filename="iter_10.pt").name == "iter_10.pt"
    with caplog.at_level(logging.INFO, logger="unils"):
        out = maybe_convert_official(release, filename="iter_10.pt", audio_encoder=w2v, cache_root=tmp_path / "cache")
    assert "converting it once" in caplog.text
    assert_same_weights(UniLS.from_pretrained(out), tiny_model)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [out.name]  # no temporary folder left
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unils"):
        assert maybe_convert_official(release, filename="iter_10.pt", audio_encoder=w2v, cache_root=tmp_path / "cache") == out
    assert "using the converted copy" in caplog.text and "converting" not in caplog.text
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.pt").write_bytes(b"x")
    (two / "b.pt").write_bytes(b"y")
    with pytest.raises(CheckpointError, match="several official checkpoints"):
        find_official_checkpoint(two)


def test_from_pretrained_converts_an_official_folder_once(
    tiny_model, official, tmp_path, monkeypatch, caplog
):
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
    assert_same_weights(m, tiny_model)


def test_module_tree_matches_unils(tiny_model):
    """The converter builds models from unils.nn.build: same names, shapes and dtypes as UniLS."""
    from unils.config import AudioEncoderConfig
    from unils.nn.build import UniLSModules, build_audio_encoder
    from unils.nn.mel import MelEncoder

    for cfg in (tiny_config(), tiny_config((1, 25, 50, 100))):
        ours, theirs = UniLSModules(cfg).state_dict(), UniLS(cfg).state_dict()
        assert {k: (v.shape, v.dtype) for k, v in ours.items()} == {k: (v.shape, v.dtype) for k, v in theirs.items()}
    mel = tiny_config()
    mel.audio_encoder = AudioEncoderConfig(type="mel")
    assert isinstance(build_audio_encoder(mel), MelEncoder)
    tree = UniLSModules(tiny_config())
    tree.cast_to(choose_precision("bfloat16", "cpu"))
    assert tree.generator.sos_embed.dtype == torch.bfloat16 and tree.codec.motion_std.dtype == torch.float32
    tree.load_state_dict(tiny_model.state_dict())  # strict by default
