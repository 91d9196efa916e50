"""Save/load round trips, fake Hub caches (unils and official releases), import order, info/cache CLI."""

import ast
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_convert import (
    assert_same_weights,
    official_meta,
    official_state,
    save_official,
    write_wav2vec2_folder,
)

import unils.convert.official as official_mod
import unils.convert.select as select_mod
import unils.hub as hub_mod
from helpers import randomize_, tiny_config
from unils import CheckpointError, CheckpointNotFoundError, ConfigError, UniLS
from unils import UniLSConfig as UniLSConfigPresets
from unils.cli import main
from unils.convert.remote import RepoFiles
from unils.errors import AmbiguousCheckpointError


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




def test_dtype_and_device_at_load(tiny_model, tmp_path):
    folder = tiny_model.save_pretrained(tmp_path / "a")
    m = UniLS.from_pretrained(folder, device="cpu", dtype=torch.bfloat16)
    assert m.generator.sos_embed.dtype == torch.bfloat16
    assert m.codec.motion_mean.dtype == torch.float32  # codec and stats stay exact


def test_legacy_names_stay_importable():
    from unils import __version__, hub, model
    from unils._version import __version__ as v
    from unils.checkpoint import load_state_dict_strict
    from unils.nn.build import build_audio_encoder

    assert __version__ == v
    assert hub.load_state_dict_strict is load_state_dict_strict
    assert model.build_audio_encoder is build_audio_encoder
    for name in ("CONFIG_NAME", "WEIGHTS_NAME", "read_checkpoint", "save_checkpoint", "state_dict_problems", "resolve_checkpoint"):
        assert hasattr(hub, name), name


# ------------------------------------------------------------------------------- official releases
COMMIT = "b" * 40


def _stage_files(model, folder):
    """Stage-1, stage-2 and stage-3 official files of ``model`` and its wav2vec2 folder, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    state, meta = official_state(model), official_meta(model.config)
    codec = {k[len("base_codec."):]: v for k, v in state.items() if k.startswith("base_codec.")}
    prior = {k: v for k, v in state.items() if "_audio_attn." not in k and k not in ("attn_blocks.self_pos", "attn_blocks.other_pos")}
    files = {
        "stage1.pt": save_official(folder / "stage1.pt", codec, {"MODEL": {"NAME": "UniLSCodec"}}),
        "stage2.pt": save_official(folder / "stage2.pt", prior, {"MODEL": dict(meta["MODEL"], NAME="UniLSFreeGen")}),
        "stage3.pt": save_official(folder / "stage3.pt", state, meta),
    }
    write_wav2vec2_folder(model, folder / "w2v")
    torch.save(load_file(str(folder / "w2v" / "model.safetensors")), folder / "w2v" / "pytorch_model.bin")
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        files[f"wav2vec2/{name}"] = folder / "w2v" / name
    return files


def _hub_cache(cache, files, repo="xg-chu/UniLS", commit=COMMIT):
    """A huggingface_hub cache: blobs named by sha256, snapshot links, refs/main."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    for rel, src in files.items():
        data = Path(src).read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo_dir / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return repo


@pytest.fixture
def spy(monkeypatch):
    """Records every full read of an official file, every metadata peek and every Hub download."""
    calls = {"read": [], "peek": [], "download": []}
    read, peek, download = official_mod.read_official, select_mod.peek_stage, huggingface_hub.hf_hub_download

    def read_spy(path):
        rel = Path(path).as_posix().split(f"{COMMIT}/")[-1]  # repo-relative for Hub snapshots
        calls["read"].append(rel if COMMIT in Path(path).as_posix() else Path(path).name)
        return read(path)

    def peek_spy(path):
        calls["peek"].append(Path(path).name)
        return peek(path)

    def download_spy(repo_id, filename, **kw):
        calls["download"].append(filename)
        return download(repo_id, filename, **kw)

    monkeypatch.setattr(official_mod, "read_official", read_spy)
    monkeypatch.setattr(select_mod, "peek_stage", peek_spy)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download_spy)
    return calls


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UNILS_CACHE", str(tmp_path / "unils-cache"))
    return tmp_path / "hf"


def test_hub_repo_with_all_stages_loads_the_stage3_model(tiny_model, tmp_path, offline, spy):
    files = _stage_files(tiny_model, tmp_path / "src")
    repo = _hub_cache(offline, {
        "unils_codec.pt": files["stage1.pt"], "unils_freegen.pt": files["stage2.pt"],
        "unils_loragen.pt": files["stage3.pt"], **{k: v for k, v in files.items() if "/" in k},
    })
    m = UniLS.from_pretrained(repo, cache_dir=offline)
    assert_same_weights(m, tiny_model)
    assert spy["read"] == ["unils_loragen.pt"]  # the others: metadata only
    assert sorted(spy["peek"]) == ["unils_codec.pt", "unils_freegen.pt", "unils_loragen.pt"]
    # one wav2vec2 format (safetensors first), never both
    assert sorted(spy["download"]) == ["unils_loragen.pt", "wav2vec2/config.json", "wav2vec2/model.safetensors"]
    # parity: the same tensors as `unils convert`
    assert main(["convert", str(files["stage3.pt"]), str(tmp_path / "cli"), "--audio-encoder", str(tmp_path / "src" / "w2v")]) == 0
    ours = load_file(str(hub_mod.resolve_checkpoint(repo, cache_dir=offline) / "model.safetensors"))
    cli = load_file(str(tmp_path / "cli" / "model.safetensors"))
    assert ours.keys() == cli.keys() and all(torch.equal(ours[k], cli[k]) for k in cli)
    # the card pins where the audio encoder came from (the repo snapshot, i.e. its commit)
    card = (hub_mod.resolve_checkpoint(repo, cache_dir=offline) / "README.md").read_text()
    assert COMMIT in card and "wav2vec2/model.safetensors" in card


def test_stage_comes_from_metadata_not_names(tiny_model, tmp_path, offline, spy):
    files = _stage_files(tiny_model, tmp_path / "src")
    folder = tmp_path / "release"
    (folder / "wav2vec2").mkdir(parents=True)
    for name, src in (("a.pt", "stage3.pt"), ("b.pt", "stage1.pt"), ("c.pt", "stage2.pt")):
        shutil.copy(files[src], folder / name)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(files[f"wav2vec2/{name}"], folder / "wav2vec2" / name)
    assert_same_weights(UniLS.from_pretrained(folder), tiny_model)
    assert spy["read"] == ["a.pt"]
    (folder / "a.pt").unlink()
    with pytest.raises(CheckpointNotFoundError, match=r"only training intermediates.*b\.pt \(stage-1 motion codec, from its metadata\)"):
        UniLS.from_pretrained(folder)


def test_sizes_in_subfolders_are_listed_with_the_exact_call(tiny_model, tmp_path, offline, spy):
    files = _stage_files(tiny_model, tmp_path / "src")
    small = randomize_(UniLS(tiny_config((1, 25, 50, 100))), seed=3)
    small.audio_encoder.load_state_dict(tiny_model.audio_encoder.state_dict())  # one wav2vec2 in the repo
    small_pt = save_official(tmp_path / "small.pt", official_state(small), official_meta(small.config))
    repo = _hub_cache(offline, {
        "unils_loragen/iter_400000.pt": files["stage3.pt"], "unils_loragen_s/iter_400000.pt": small_pt,
        "unils_codec/iter_200000.pt": files["stage1.pt"], **{k: v for k, v in files.items() if "/" in k},
    })
    with pytest.raises(AmbiguousCheckpointError) as err:
        UniLS.from_pretrained(repo, cache_dir=offline)
    calls = [
        'UniLS.from_pretrained("xg-chu/UniLS", filename="unils_loragen/iter_400000.pt")',
        'UniLS.from_pretrained("xg-chu/UniLS", filename="unils_loragen_s/iter_400000.pt")',
    ]
    assert err.value.calls == calls and all(c in str(err.value) for c in calls)
    assert err.value.candidates == ["unils_loragen/iter_400000.pt", "unils_loragen_s/iter_400000.pt"]
    assert isinstance(err.value, ValueError) and "unils_codec" not in str(err.value)
    assert spy["read"] == [] and "iter_400000.pt" not in spy["download"]
    spy["peek"].clear()
    m = UniLS.from_pretrained(repo, cache_dir=offline, filename="unils_loragen_s/iter_400000.pt")
    assert m.config.codec.scales == (1, 25, 50, 100) and spy["peek"] == []  # a named file: nothing else looked at
    assert_same_weights(m, small)
    assert spy["read"] == ["unils_loragen_s/iter_400000.pt"]
    m = UniLS.from_pretrained(repo, cache_dir=offline, subfolder="unils_loragen")
    assert_same_weights(m, tiny_model)
    with pytest.raises(CheckpointNotFoundError, match="has no file 'iter_1.pt'.*unils_loragen/iter_400000.pt"):
        UniLS.from_pretrained(repo, cache_dir=offline, subfolder="unils_loragen", filename="iter_1.pt")


def _small_variant(tiny_model, tmp_path):
    """A small-size stage-3 file sharing tiny_model's wav2vec2 (one audio encoder in the repo)."""
    small = randomize_(UniLS(tiny_config((1, 25, 50, 100))), seed=3)
    small.audio_encoder.load_state_dict(tiny_model.audio_encoder.state_dict())
    return small, save_official(tmp_path / "small.pt", official_state(small), official_meta(small.config))


def test_hub_root_holds_the_default_and_subfolders_the_variants(tiny_model, tmp_path, offline, spy, caplog):
    """transformers/diffusers convention: the top of the repo is the default model, subfolders are variants."""
    files = _stage_files(tiny_model, tmp_path / "src")
    small, small_pt = _small_variant(tiny_model, tmp_path)
    repo = _hub_cache(
        offline,
        {
            "unils_loragen.pt": files["stage3.pt"],
            "small/unils_loragen_s.pt": small_pt,
            "unils_codec.pt": files["stage1.pt"],
            **{k: v for k, v in files.items() if "/" in k},
        },
    )
    with caplog.at_level(logging.INFO, logger="unils"):
        m = UniLS.from_pretrained(repo, cache_dir=offline)
    assert_same_weights(m, tiny_model)
    assert spy["read"] == ["unils_loragen.pt"]
    # the variant is neither read nor peeked (it is on disk in this cache): the top decided
    assert sorted(spy["peek"]) == ["unils_codec.pt", "unils_loragen.pt"]
    assert 'UniLS.from_pretrained("xg-chu/UniLS", filename="small/unils_loragen_s.pt")' in caplog.text
    info = hub_mod.describe_model(repo, cache_dir=offline)
    assert (
        info.resolved.official == "unils_loragen.pt"
        and info.config.codec.scales == tiny_model.config.codec.scales
    )
    # variants: subfolder= (its top is then the default) or filename=
    spy["read"].clear()
    m = UniLS.from_pretrained(repo, cache_dir=offline, subfolder="small")
    assert m.config.codec.scales == (1, 25, 50, 100)
    assert_same_weights(m, small)
    assert spy["read"] == ["small/unils_loragen_s.pt"]
    m = UniLS.from_pretrained(repo, cache_dir=offline, filename="small/unils_loragen_s.pt")
    assert_same_weights(m, small)
    m = UniLS.from_pretrained(repo, cache_dir=offline, filename="unils_loragen.pt")
    assert_same_weights(m, tiny_model)


def test_local_folder_root_default_and_ambiguity_only_at_the_root(tiny_model, tmp_path, offline, spy):
    files = _stage_files(tiny_model, tmp_path / "src")
    small, small_pt = _small_variant(tiny_model, tmp_path)
    folder = tmp_path / "release"
    (folder / "small").mkdir(parents=True)
    shutil.copy(files["stage3.pt"], folder / "unils_loragen.pt")
    shutil.copy(small_pt, folder / "small" / "unils_loragen_s.pt")
    shutil.copytree(tmp_path / "src" / "w2v", folder / "wav2vec2")
    assert_same_weights(UniLS.from_pretrained(folder), tiny_model)
    assert spy["peek"] == ["unils_loragen.pt"] and spy["read"] == ["unils_loragen.pt"]
    assert_same_weights(UniLS.from_pretrained(folder, subfolder="small"), small)
    # the root itself ambiguous: only its own candidates are listed, with the exact calls
    shutil.copy(files["stage3.pt"], folder / "iter_10.pt")
    with pytest.raises(AmbiguousCheckpointError, match="at its top") as err:
        UniLS.from_pretrained(folder)
    assert err.value.candidates == ["iter_10.pt", "unils_loragen.pt"]
    assert err.value.calls == [
        f'UniLS.from_pretrained("{folder}", filename="{n}")' for n in err.value.candidates
    ]
    assert "unils_loragen_s" not in str(err.value)
    # nothing at the root (an intermediate only) and several in the subfolders: those are listed
    (folder / "iter_10.pt").unlink()
    (folder / "large").mkdir()
    (folder / "unils_loragen.pt").rename(folder / "large" / "unils_loragen.pt")
    shutil.copy(files["stage1.pt"], folder / "unils_codec.pt")
    with pytest.raises(AmbiguousCheckpointError, match=r"in its subfolders \(none at its top\)") as err:
        UniLS.from_pretrained(folder)
    assert err.value.candidates == ["large/unils_loragen.pt", "small/unils_loragen_s.pt"]
    assert err.value.calls == [
        f'UniLS.from_pretrained("{folder}", filename="{n}")' for n in err.value.candidates
    ]
    # and one in the subfolders with none at the root is still taken without asking
    shutil.rmtree(folder / "small")
    assert_same_weights(UniLS.from_pretrained(folder), tiny_model)


def test_iteration_runs_are_ambiguous_in_a_folder(tiny_model, tmp_path, offline):
    files = _stage_files(tiny_model, tmp_path / "src")
    run = tmp_path / "run"
    run.mkdir()
    for it in (2, 10):
        shutil.copy(files["stage3.pt"], run / f"iter_{it}.pt")
    with pytest.raises(AmbiguousCheckpointError) as err:
        UniLS.from_pretrained(run, audio_encoder=tmp_path / "src" / "w2v")
    assert err.value.calls == [f'UniLS.from_pretrained("{run}", filename="iter_{it}.pt")' for it in (2, 10)]
    m = UniLS.from_pretrained(run, filename="iter_10.pt", audio_encoder=tmp_path / "src" / "w2v")
    assert_same_weights(m, tiny_model)


def test_only_the_chosen_files_are_downloaded(tiny_model, tmp_path, monkeypatch, spy):
    """Online: the listing comes from the Hub, stages from the names, one file of each kind is fetched."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("UNILS_CACHE", str(tmp_path / "unils-cache"))
    files = _stage_files(tiny_model, tmp_path / "src")
    remote = {
        "unils_codec/iter_200000.pt": files["stage1.pt"], "unils_freegen/iter_600000.pt": files["stage2.pt"],
        "unils_loragen/iter_400000.pt": files["stage3.pt"], **{k: v for k, v in files.items() if "/" in k},
    }
    sha = hashlib.sha256(files["stage3.pt"].read_bytes()).hexdigest()

    def listing(repo_id, **kw):
        assert kw["token"] == "tok" and kw["cache_dir"] == tmp_path / "hf"
        return RepoFiles(repo_id, None, COMMIT, {k: Path(v).stat().st_size for k, v in remote.items()},
                         {"unils_loragen/iter_400000.pt": sha}, str(tmp_path / "hf"))

    def download(repo_id, filename, **kw):
        spy["download"].append(filename)
        assert kw["revision"] == COMMIT and kw["token"] == "tok" and kw["local_files_only"] is False
        out = tmp_path / "dl" / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(remote[filename], out)
        return str(out)

    monkeypatch.setattr(hub_mod, "list_repo", listing)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    m = UniLS.from_pretrained("xg-chu/UniLS", cache_dir=tmp_path / "hf", token="tok")
    assert_same_weights(m, tiny_model)
    assert spy["download"] == ["unils_loragen/iter_400000.pt", "wav2vec2/model.safetensors", "wav2vec2/config.json"]
    assert spy["peek"] == []  # nothing was on disk: names decided
    spy["download"].clear()
    UniLS.from_pretrained("xg-chu/UniLS", cache_dir=tmp_path / "hf", token="tok")
    assert spy["download"] == []  # converted before (known by the listed sha256): nothing fetched


def test_conversion_is_reused_by_another_process(tiny_model, tmp_path, offline):
    files = _stage_files(tiny_model, tmp_path / "src")
    folder = tmp_path / "release"
    folder.mkdir()
    shutil.copy(files["stage3.pt"], folder / "unils_loragen.pt")
    shutil.copytree(tmp_path / "src" / "w2v", folder / "wav2vec2")
    UniLS.from_pretrained(folder)
    shutil.rmtree(folder / "wav2vec2")  # converting again would now fail
    code = (
        "import logging, sys\nlogging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from unils import UniLS\nm = UniLS.from_pretrained(sys.argv[1])\n"
        "print(float(sum(v.double().sum() for v in m.state_dict().values())))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "using the converted copy" in out.stderr and "converting" not in out.stderr
    assert float(out.stdout) == float(sum(v.double().sum() for v in tiny_model.state_dict().values()))


def test_default_audio_encoder_uses_the_given_hub_cache(tiny_model, tmp_path, offline, spy):
    """No wav2vec2 folder: facebook/wav2vec2-xls-r-300m comes from the cache_dir passed to from_pretrained."""
    files = _stage_files(tiny_model, tmp_path / "src")
    _hub_cache(offline, {k.split("/")[1]: v for k, v in files.items() if "/" in k}, repo="facebook/wav2vec2-xls-r-300m")
    folder = tmp_path / "release"
    folder.mkdir()
    shutil.copy(files["stage3.pt"], folder / "unils_loragen.pt")
    m = UniLS.from_pretrained(folder, cache_dir=offline)
    assert_same_weights(m, tiny_model)
    assert sorted(spy["download"]) == ["config.json", "model.safetensors"]
    card = (hub_mod.resolve_checkpoint(folder) / "README.md").read_text()
    assert f"facebook/wav2vec2-xls-r-300m@{COMMIT} model.safetensors" in card


def test_cli_info_and_cache(tiny_model, tmp_path, offline, capsys):
    files = _stage_files(tiny_model, tmp_path / "src")
    folder = tmp_path / "release"
    folder.mkdir()
    shutil.copy(files["stage3.pt"], folder / "unils_loragen.pt")
    shutil.copy(files["stage1.pt"], folder / "unils_codec.pt")
    sha = hashlib.sha256(files["stage3.pt"].read_bytes()).hexdigest()
    assert main(["info", str(folder), "--audio-encoder", str(tmp_path / "src" / "w2v")]) == 0
    out = capsys.readouterr().out
    n = sum(v.numel() for v in tiny_model.state_dict().values())
    assert f"official checkpoint: unils_loragen.pt (stage-3 audio model), sha256 {sha}" in out
    assert f"total {n:,}" in out and "F32" in out and str(tmp_path / "unils-cache" / "converted" / sha[:16]) in out
    assert "unils_codec.pt" in out and "<- used" in out
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "1 converted checkpoint(s)" in out and sha[:16] in out and str(folder / "unils_loragen.pt") in out
    assert main(["cache", "clear", "--sha256", "0" * 8 if not sha.startswith("0") else "f" * 8]) == 2
    assert "no converted copy" in capsys.readouterr().err
    assert main(["cache", "clear"]) == 0
    assert "removed 1 converted checkpoint(s)" in capsys.readouterr().out
    assert main(["cache", "list"]) == 0 and "0 converted checkpoint(s)" in capsys.readouterr().out
