"""The bundled demo model: present, small, offline, used by default, and it does its job."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import unils
from unils import UniLS
from unils.errors import CheckpointNotFoundError

ASSETS = Path(unils.__file__).parent / "assets" / "demo"
DIALOGUE = Path(__file__).resolve().parents[1] / "examples" / "dialogue"


@pytest.fixture(scope="module")
def demo() -> UniLS:
    return UniLS.from_pretrained("demo")


def _log_energy(audio: np.ndarray, frames: int) -> np.ndarray:
    padded = np.zeros(frames * 640, np.float32)
    padded[: min(len(audio), frames * 640)] = audio[: frames * 640]
    return np.log10(np.mean(padded.reshape(frames, 640) ** 2, axis=1) + 1e-8)


def test_demo_is_bundled_and_small():
    files = {p.name for p in ASSETS.iterdir()}
    assert {"config.json", "model.safetensors", "README.md"} <= files
    size = sum(p.stat().st_size for p in ASSETS.iterdir())
    assert size < 6 * 2**20, f"bundled demo is {size / 2**20:.1f} MiB"
    card = (ASSETS / "README.md").read_text(encoding="utf-8")
    assert "synthetic" in card and "unils train audio" in card


def test_demo_loads_offline_with_a_log_line(demo, caplog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.INFO, logger="unils"):
        model = UniLS.from_pretrained("demo")
    assert model.config.name == "unils-demo" and model.config.audio_encoder.type == "mel"
    assert any("bundled demo model" in r.getMessage() for r in caplog.records)


def test_missing_bundle_is_a_clear_error(monkeypatch, tmp_path):
    from unils import hub

    monkeypatch.setattr(hub, "BUNDLED", {"demo": "does-not-exist"})
    with pytest.raises(CheckpointNotFoundError, match="missing from this installation"):
        UniLS.from_pretrained("demo")


def test_demo_jaw_follows_own_speech(demo):
    """On the example dialogue (not in the training data) the jaw follows the person's own voice."""
    a, _ = sf.read(DIALOGUE / "person_a.flac", dtype="float32")
    b, _ = sf.read(DIALOGUE / "person_b.flac", dtype="float32")
    me, you = demo.generate_both(a, b, seed=0)
    for motion, own, other in ((me, a, b), (you, b, a)):
        jaw = motion.jaw[:, 0]
        e_own, e_other = _log_energy(own, len(jaw)), _log_energy(other, len(jaw))
        r_own = np.corrcoef(jaw, e_own)[0, 1]
        r_other = np.corrcoef(jaw, e_other)[0, 1]
        assert r_own > 0.5, r_own
        assert r_other < r_own - 0.4, (r_own, r_other)


def test_cli_generate_defaults_to_the_demo(tmp_path, capsys, caplog):
    from unils.cli import main

    out = tmp_path / "motion.npz"
    with caplog.at_level(logging.WARNING, logger="unils"):
        rc = main(["generate", str(DIALOGUE / "person_a.flac"), "--partner", str(DIALOGUE / "person_b.flac"),
                   "-o", str(out)])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    assert any("synthetic demo" in r.getMessage() for r in caplog.records)
    motion = unils.Motion.load(out)
    assert len(motion) == 400 and np.isfinite(motion.to_array()).all()
