"""Save/load round trips: local folder, fake Hub cache offline, strict key checks."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import tiny_config
from unils import CheckpointError, CheckpointNotFoundError, ConfigError, UniLS


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_folder_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = UniLS.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == tiny_model.config
    _assert_same_weights(loaded, tiny_model)
    # motion statistics travel inside the weights, not in a side file
    assert "codec.motion_mean" in load_file(str(tmp_path / "ckpt" / "model.safetensors"))


def _fake_hub_cache(src, cache, repo="unils-test/tiny", commit="a" * 40):
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copy(f, snap / f.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return repo


def test_fake_hub_cache_offline(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny_model.save_pretrained(tmp_path / "ckpt")
    repo = _fake_hub_cache(tmp_path / "ckpt", tmp_path / "cache")
    loaded = UniLS.from_pretrained(repo, cache_dir=tmp_path / "cache", local_files_only=True)
    _assert_same_weights(loaded, tiny_model)
    loaded_rev = UniLS.from_pretrained(repo, cache_dir=tmp_path / "cache", revision="a" * 40)
    _assert_same_weights(loaded_rev, tiny_model)


def test_missing_repo_in_offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError, match="not in the local Hub cache"):
        UniLS.from_pretrained("nobody/nothing", cache_dir=tmp_path)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Hub repo id"):
        UniLS.from_pretrained(tmp_path / "does" / "not" / "exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointNotFoundError, match="config.json"):
        UniLS.from_pretrained(tmp_path / "empty")


def _rewrite(folder, fn):
    tensors = load_file(str(folder / "model.safetensors"))
    fn(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def test_strict_loading_names_the_tensors(tiny_model, tmp_path):
    folder = tiny_model.save_pretrained(tmp_path / "a")
    _rewrite(folder, lambda t: t.pop("generator.sos_embed"))
    with pytest.raises(CheckpointError, match=r"1 missing: generator\.sos_embed"):
        UniLS.from_pretrained(folder)

    folder = tiny_model.save_pretrained(tmp_path / "b")
    _rewrite(folder, lambda t: t.__setitem__("generator.extra", torch.zeros(1)))
    with pytest.raises(CheckpointError, match=r"1 unexpected: generator\.extra"):
        UniLS.from_pretrained(folder)

    folder = tiny_model.save_pretrained(tmp_path / "c")
    _rewrite(folder, lambda t: t.__setitem__("codec.motion_std", torch.ones(7)))
    with pytest.raises(CheckpointError, match=r"codec\.motion_std \(checkpoint \[7\], model \[108\]\)"):
        UniLS.from_pretrained(folder)


def test_bad_config_is_a_config_error(tiny_model, tmp_path):
    folder = tiny_model.save_pretrained(tmp_path / "a")
    data = json.loads((folder / "config.json").read_text())
    data["generator"]["embed_dims"] = 3
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="embed_dims"):
        UniLS.from_pretrained(folder)
    data["generator"].pop("embed_dims")
    data["generator"]["num_heads"] = 5
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="divisible"):
        UniLS.from_pretrained(folder)


def test_config_round_trip_and_presets():
    for cfg in (tiny_config(), UniLSConfigPresets.large(), UniLSConfigPresets.small()):
        assert type(cfg).from_json(cfg.to_json()) == cfg
    assert UniLSConfigPresets.small().codec.scales == (1, 25, 50, 100)
    assert UniLSConfigPresets.large().window_samples == 64000


from unils import UniLSConfig as UniLSConfigPresets  # noqa: E402


def test_dtype_and_device_at_load(tiny_model, tmp_path):
    folder = tiny_model.save_pretrained(tmp_path / "a")
    m = UniLS.from_pretrained(folder, device="cpu", dtype=torch.bfloat16)
    assert m.generator.sos_embed.dtype == torch.bfloat16
    assert m.codec.motion_mean.dtype == torch.float32  # codec and stats stay exact
