"""Save/load round trips: local folder, fake Hub cache offline, strict key checks."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_config
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


# ------------------------------------------------------------------------------- import order
# errors/config -> audio, motion, smoothing, sampling -> nn -> checkpoint -> convert -> hub ->
# generation -> streaming -> model; everything else (cli, serve, viz, metrics, ...) ranks last.
RANKS = {
    "unils._version": 0, "unils.errors": 0, "unils.config": 0,
    "unils.audio": 1, "unils.motion": 1, "unils.smoothing": 1, "unils.sampling": 1,
    "unils.nn": 2, "unils.checkpoint": 3, "unils.convert": 4, "unils.hub": 5,
    "unils.generation": 6, "unils.streaming": 7, "unils.model": 8,
}
LAST = 9
SRC = Path(__file__).resolve().parents[1] / "src" / "unils"


def _rank(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in RANKS:
            return RANKS[".".join(parts[:n])]
    return LAST


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, me: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every unils import, function-level ones included, TYPE_CHECKING ones not."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("unils"):
                continue
            if node.module is None or target == "unils":  # `from . import x`: x may be a submodule
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("unils")]
    return found


def test_imports_run_one_way():
    ranked = sorted((p for p in SRC.rglob("*.py") if _rank(_module_name(p)) < LAST), key=lambda p: _rank(_module_name(p)))
    assert {_module_name(p) for p in ranked} >= {"unils.checkpoint", "unils.convert.cache", "unils.nn.build", "unils.hub"}
    bad = [v for path in ranked for v in _violations(path, _module_name(path))]
    assert not bad, bad
    # and each ranked module imports on its own, in that order, in a fresh interpreter
    code = "import importlib\nfor m in %r:\n    importlib.import_module(m)\n" % [_module_name(p) for p in ranked]
    env = dict(os.environ, PYTHONPATH=str(SRC.parent))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def _violations(path: Path, me: str) -> list[str]:
    return [
        f"{me}:{line} imports {target}"
        for line, target in _imports(path, me)
        if target == "unils.__version__" or _rank(target) > _rank(me)
    ]


def test_import_rank_check_catches_late_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from .codec import MotionCodec\n"
        "if TYPE_CHECKING:\n    from ..model import UniLS\n"
        "def f():\n    from ..hub import resolve_checkpoint\n    from .. import __version__\n"
    )
    assert _violations(probe, "unils.nn.probe") == [
        "unils.nn.probe:5 imports unils.hub",
        "unils.nn.probe:6 imports unils.__version__",
    ]


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
