import json

import numpy as np

from helpers import speech_like, tiny_config
from unils import Motion
from unils.audio import save_audio
from unils.bench import measure_drift, run_benchmark
from unils.cli import main


def test_generate_command(tiny_model, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    save_audio(tmp_path / "a.wav", speech_like(2.0, seed=1))
    save_audio(tmp_path / "b.wav", speech_like(2.0, seed=2))
    assert (
        main(
            [
                "-q",
                "generate",
                str(tmp_path / "a.wav"),
                "-p",
                str(tmp_path / "b.wav"),
                "-m",
                str(tmp_path / "ckpt"),
                "-o",
                str(tmp_path / "out.npz"),
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert "50 frames" in capsys.readouterr().out
    motion = Motion.load(tmp_path / "out.npz")
    assert motion == tiny_model.generate(tmp_path / "a.wav", tmp_path / "b.wav", seed=3)
    assert (
        main(
            [
                "-q",
                "generate",
                str(tmp_path / "a.wav"),
                "-p",
                str(tmp_path / "b.wav"),
                "--both",
                "-m",
                str(tmp_path / "ckpt"),
                "-o",
                str(tmp_path / "pair.csv"),
            ]
        )
        == 0
    )
    assert len(Motion.load(tmp_path / "pair.csv")) == len(Motion.load(tmp_path / "pair_partner.csv")) == 50


def test_generate_command_errors(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "missing.wav"), "-m", str(tmp_path / "nope")]) == 2
    assert "error" in capsys.readouterr().err


def test_stream_command(tiny_model, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    save_audio(tmp_path / "a.wav", speech_like(4.5, seed=1))
    assert (
        main(
            [
                "-q",
                "stream",
                str(tmp_path / "a.wav"),
                "-m",
                str(tmp_path / "ckpt"),
                "--block-ms",
                "100",
                "-o",
                str(tmp_path / "s.npz"),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 113 and report["steps"] == 2 and report["real_time_factor"] > 0
    assert Motion.load(tmp_path / "s.npz").allclose(
        tiny_model.generate(tmp_path / "a.wav", seed=0), atol=1e-5
    )


def test_benchmark_reports_both_paths(tmp_path):
    results = run_benchmark([2.0, 5.0], batches=[1, 2], config=tiny_config(), straightforward_max_seconds=3)
    modes = [(r.mode, r.seconds_of_audio, r.batch) for r in results]
    assert modes == [
        ("default", 2, 1),
        ("straightforward", 2, 1),
        ("default", 2, 2),
        ("straightforward", 2, 2),
        ("default", 5, 1),
        ("default", 5, 2),
    ]
    fast = results[0]
    assert fast.frames == 2 * 50 and fast.total_s > 0 and fast.rtf > 0 and fast.peak_rss_mb > 0
    assert results[1].extra["speedup_default_vs_straightforward"] > 0
    # Stage times come from the engine's own loop (its on_window reports); the rest is bookkeeping.
    stages = fast.audio_encoder_s + fast.generator_s + fast.codec_decode_s
    assert 0 < stages <= fast.total_s + 1e-3
    assert fast.extra["precision"] == "float32" and results[1].extra["precision"] == "float32"
    assert "bfloat16" in fast.extra["cpu"] and fast.extra["precision_reason"] == "$UNILS_DTYPE"


def test_benchmark_default_path_takes_the_precision_and_drift_is_measured():
    results = run_benchmark([1.0], config=tiny_config(), dtype="bfloat16")
    assert [r.extra["precision"] for r in results] == ["bfloat16", "float32"]
    drift = {
        d.precision: d
        for d in measure_drift(["float32", "bfloat16", "int8"], config=tiny_config(), seconds=2)
    }
    assert drift["float32"].feature_rel_err == 0 and drift["float32"].motion_max_abs == 0
    assert 0 < drift["bfloat16"].feature_rel_err < 0.05 and 0 < drift["bfloat16"].logit_rel_err < 0.05
    assert (
        0 < drift["int8"].feature_rel_err < 0.2 and drift["int8"].logit_rel_err == 0
    )  # generator stays float32
    assert drift["bfloat16"].motion_rms_f32 > 0
