"""The shared generation flags reach the model unchanged from every command that generates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import speech_like

import unils.cli.options
from unils import Motion
from unils.audio import save_audio
from unils.cli import main

DIALOGUE = Path(__file__).resolve().parents[1] / "examples" / "dialogue"

# What the model receives when no generation flag is given.
DEFAULTS = {"seed": 0, "temperature": None, "top_p": None, "cfg_scale": None, "smooth": True, "style": None,
            "prev_motion": None, "use_cache": True}


class Recorder:
    """A real model whose generating methods record the keyword options they receive."""

    def __init__(self, model):
        self.model = model
        self.calls = []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, *args, **kw):
        self.calls.append(("generate", kw))
        return self.model.generate(*args, **kw)

    def generate_both(self, *args, **kw):
        self.calls.append(("generate_both", kw))
        return self.model.generate_both(*args, **kw)

    def stream(self, **kw):
        self.calls.append(("stream", kw))
        return self.model.stream(**kw)


@pytest.fixture
def recorder(tiny_model, monkeypatch):
    rec = Recorder(tiny_model)
    monkeypatch.setattr(unils.cli.options, "load_model", lambda args: rec)
    return rec


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    style = Motion.from_array(rng.normal(0, 0.1, (120, 108)).astype(np.float32))
    prev = Motion.from_array(rng.normal(0, 0.1, (110, 108)).astype(np.float32))
    style.save(tmp_path / "style.json")
    prev.save(tmp_path / "prev.csv")
    save_audio(tmp_path / "a.wav", speech_like(4.5, seed=1))
    save_audio(tmp_path / "b.wav", speech_like(4.5, seed=2))
    # The values as they come back from the files (JSON and CSV round floats).
    flags = ["--seed", "7", "--temperature", "0.8", "--top-p", "0.9", "--cfg-scale", "2.5", "--no-smooth",
             "--style", str(tmp_path / "style.json"), "--prev-motion", str(tmp_path / "prev.csv"), "--no-cache"]
    expected = {"seed": 7, "temperature": 0.8, "top_p": 0.9, "cfg_scale": 2.5, "smooth": False,
                "style": Motion.load(tmp_path / "style.json"), "prev_motion": Motion.load(tmp_path / "prev.csv"),
                "use_cache": False}
    assert expected["style"].allclose(style, atol=1e-6)
    return tmp_path, flags, expected


@pytest.mark.parametrize("full", [True, False], ids=["all-flags", "no-flags"])
def test_generate_passes_every_flag(recorder, files, full):
    d, flags, expected = files
    flags, expected = (flags, expected) if full else ([], DEFAULTS)
    assert main(["-q", "generate", str(d / "a.wav"), "-p", str(d / "b.wav"), "-o", str(d / "m.npz"), *flags]) == 0
    assert recorder.calls == [("generate", {**expected, "progress": False})]
    assert main(["-q", "generate", str(d / "a.wav"), "-p", str(d / "b.wav"), "--both", "-o", str(d / "pair"),
                 *flags]) == 0
    assert recorder.calls[1] == ("generate_both", {**expected, "progress": False})
    assert len(Motion.load(d / "pair" / "self.npz")) == len(Motion.load(d / "pair" / "partner.npz")) == 113


@pytest.mark.parametrize("full", [True, False], ids=["all-flags", "no-flags"])
def test_stream_passes_every_flag(recorder, files, full):
    d, flags, expected = files
    flags, expected = (flags, expected) if full else ([], DEFAULTS)
    assert main(["-q", "stream", str(d / "a.wav"), "-p", str(d / "b.wav"), "--block-ms", "500",
                 "-o", str(d / "s.npz"), *flags]) == 0
    rate = recorder.model.config.sample_rate
    assert recorder.calls == [("stream", {**expected, "partner": True, "sample_rate": rate, "hop_frames": None})]
    offline = recorder.model.generate(d / "a.wav", d / "b.wav", **expected)
    assert Motion.load(d / "s.npz").allclose(offline, atol=1e-5)


def test_preview_passes_every_flag(recorder, files):
    pytest.importorskip("PIL")
    d, flags, expected = files
    assert main(["-q", "preview", str(d / "a.wav"), str(d / "b.wav"), "-o", str(d / "p.png"), "--size", "64",
                 "--save-motion", str(d / "p.npz"), *flags]) == 0
    assert recorder.calls == [("generate_both", expected)]
    first, _ = recorder.model.generate_both(d / "a.wav", d / "b.wav", **expected)
    assert Motion.load(d / "p.npz") == first


def test_bad_motion_flag_is_a_one_line_error(recorder, files, capsys):
    d, _, _ = files
    rc = main(["generate", str(d / "a.wav"), "--style", str(d / "missing.npz"), "-o", str(d / "m.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("unils generate: error: ") and "missing.npz" in err and err.count("\n") == 1
    assert recorder.calls == []  # refused before generating
    assert main(["stream", str(d / "a.wav"), "--prev-motion", str(d / "a.wav")]) == 2
    assert "not a motion file" in capsys.readouterr().err


def test_stream_equals_generate_with_the_same_flags(tmp_path):
    """`unils stream` and `unils generate` with the same sampling flags write the same frames (demo model)."""
    a, b = str(DIALOGUE / "person_a.flac"), str(DIALOGUE / "person_b.flac")
    flags = ["--temperature", "0.3", "--top-p", "0.5", "--cfg-scale", "3", "--seed", "5"]
    assert main(["-q", "generate", a, "-p", b, "-o", str(tmp_path / "g.npz"), *flags]) == 0
    assert main(["-q", "stream", a, "-p", b, "--block-ms", "400", "-o", str(tmp_path / "s.npz"), *flags]) == 0
    assert main(["-q", "stream", a, "-p", b, "--block-ms", "400", "-o", str(tmp_path / "d.npz")]) == 0
    generated, streamed = Motion.load(tmp_path / "g.npz"), Motion.load(tmp_path / "s.npz")
    assert len(generated) == 400
    assert streamed.allclose(generated, atol=1e-5)
    # The flags matter: the default options give other frames.
    assert not Motion.load(tmp_path / "d.npz").allclose(generated, atol=1e-2)
