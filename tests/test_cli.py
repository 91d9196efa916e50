import json

import numpy as np
from conftest import speech_like, tiny_config

from unils import Motion
from unils.audio import save_audio
from unils.bench import run_benchmark
from unils.cli import main


def test_generate_command(tiny_model, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    save_audio(tmp_path / "a.wav", speech_like(2.0, seed=1))
    save_audio(tmp_path / "b.wav", speech_like(2.0, seed=2))
    assert main(["-q", "generate", str(tmp_path / "a.wav"), "-p", str(tmp_path / "b.wav"), "-m", str(tmp_path / "ckpt"),
                 "-o", str(tmp_path / "out.npz"), "--seed", "3"]) == 0
    assert "50 frames" in capsys.readouterr().out
    motion = Motion.load(tmp_path / "out.npz")
    assert motion == tiny_model.generate(tmp_path / "a.wav", tmp_path / "b.wav", seed=3)
    assert main(["-q", "generate", str(tmp_path / "a.wav"), "-p", str(tmp_path / "b.wav"), "--both", "-m",
                 str(tmp_path / "ckpt"), "-o", str(tmp_path / "pair.csv")]) == 0
    assert len(Motion.from_csv(tmp_path / "pair.csv")) == len(Motion.from_csv(tmp_path / "pair_partner.csv")) == 50


def test_generate_command_errors(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "missing.wav"), "-m", str(tmp_path / "nope")]) == 2
    assert "error" in capsys.readouterr().err


def test_stream_command(tiny_model, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    save_audio(tmp_path / "a.wav", speech_like(4.5, seed=1))
    assert main(["-q", "stream", str(tmp_path / "a.wav"), "-m", str(tmp_path / "ckpt"), "--block-ms", "100",
                 "-o", str(tmp_path / "s.npz")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 113 and report["steps"] == 2 and report["real_time_factor"] > 0
    assert Motion.load(tmp_path / "s.npz").allclose(tiny_model.generate(tmp_path / "a.wav", seed=0), atol=1e-5)


def test_benchmark_reports_both_paths(tmp_path):
    results = run_benchmark([2.0], batches=[1, 2], config=tiny_config())
    modes = [(r.mode, r.batch) for r in results]
    assert modes == [("fast", 1), ("straightforward", 1), ("fast", 2), ("straightforward", 2)]
    fast = results[0]
    assert fast.frames == 2 * 50 and fast.total_s > 0 and fast.rtf > 0 and fast.peak_rss_mb > 0
    assert results[1].extra["speedup_fast_vs_straightforward"] > 0
    assert np.isclose(fast.total_s, fast.audio_encoder_s + fast.generator_s + fast.codec_decode_s, atol=1e-3)
