"""Every example script runs end to end on a tiny checkpoint."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import speech_like
from unils import Motion
from unils.audio import save_audio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, args, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


@pytest.fixture
def setup(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    save_audio(tmp_path / "a.wav", speech_like(2.2, seed=1))
    save_audio(tmp_path / "b.wav", speech_like(2.0, seed=2))
    return tmp_path


def test_generate_from_file(setup, monkeypatch, capsys):
    run_example("generate_from_file.py", [setup / "a.wav", "--partner", setup / "b.wav", "--model", setup / "ckpt",
                                          "-o", setup / "m.npz"], monkeypatch)
    assert len(Motion.load(setup / "m.npz")) == 55
    assert "jaw opening" in capsys.readouterr().out


def test_two_person(setup, monkeypatch):
    run_example("two_person.py", [setup / "a.wav", setup / "b.wav", "--model", setup / "ckpt", "--out-dir", setup / "c"],
                monkeypatch)
    assert len(Motion.load(setup / "c" / "a.npz")) == len(Motion.load(setup / "c" / "b.npz")) == 55


def test_stream_from_file(setup, monkeypatch, capsys):
    run_example("stream_from_file.py", [setup / "a.wav", "--partner", setup / "b.wav", "--model", setup / "ckpt",
                                        "--fast", "--hop-frames", "25"], monkeypatch)
    out = capsys.readouterr().out
    assert "total 55" in out and "real-time factor" in out and "algorithmic latency: 1.16 s" in out


def test_batch_folder(setup, monkeypatch, capsys):
    (setup / "in").mkdir()
    for name in ("a.wav", "b.wav"):
        (setup / "in" / name).write_bytes((setup / name).read_bytes())
    (setup / "in" / "broken.wav").write_bytes(b"junk" * 10)
    run_example("batch_folder.py", [setup / "in", setup / "out", "--model", setup / "ckpt"], monkeypatch)
    assert sorted(p.name for p in (setup / "out").iterdir()) == ["a.npz", "b.npz"]
    assert "skip broken.wav" in capsys.readouterr().out


def test_export_and_preview(setup, monkeypatch, capsys):
    pytest.importorskip("imageio_ffmpeg")
    run_example("export_and_preview.py", [setup / "a.wav", setup / "b.wav", "--model", setup / "ckpt",
                                          "--out-dir", setup / "p", "--size", "64"], monkeypatch)
    out = capsys.readouterr().out
    assert "55 frames (2.20 s at 25 fps), 2 participants, with sound" in out and "speaks in" in out
    me = Motion.load(setup / "p" / "me.npz")
    assert len(me) == 55 and Motion.load(setup / "p" / "me.csv") == me
    lines = (setup / "p" / "you.jsonl").read_text().splitlines()
    assert len(lines) == 55 and Motion.from_frames(map(json.loads, lines)) == Motion.load(setup / "p" / "you.npz")
    for name in ("preview.mp4", "preview.gif", "still.png", "curves.png"):
        assert (setup / "p" / name).stat().st_size > 0


def test_every_example_is_run_by_a_test():
    tests = Path(__file__).resolve().parent
    text = "".join((tests / name).read_text() for name in ("test_examples.py", "test_serve.py"))
    untested = [p.name for p in sorted(EXAMPLES.glob("*.py")) if f'"{p.name}"' not in text]
    assert untested == [], "add a test that runs these examples"


def test_examples_default_to_the_bundled_demo(tmp_path, monkeypatch, capsys):
    import unils

    demo = Path(unils.__file__).parent / "assets" / "demo"
    if not (demo / "config.json").is_file() or not (demo / "model.safetensors").is_file():
        pytest.skip("demo checkpoint not bundled yet")
    dialogue = EXAMPLES / "dialogue"
    run_example("generate_from_file.py", [dialogue / "person_a.flac", "--partner", dialogue / "person_b.flac",
                                          "-o", tmp_path / "m.npz"], monkeypatch)
    assert len(Motion.load(tmp_path / "m.npz")) == 400  # 16 s at 25 fps
    assert "jaw opening" in capsys.readouterr().out


def test_arkit_dialogue(setup, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from unils.arkit import ARKIT_NAMES, ArkitAnimation

    run_example("arkit_dialogue.py", ["--model", setup / "ckpt", "--a", setup / "a.wav", "--b", setup / "b.wav",
                                      "--out-dir", setup / "ark"], monkeypatch)
    from_csv = ArkitAnimation.load(setup / "ark" / "person_a.csv")
    from_json = ArkitAnimation.load(setup / "ark" / "person_a.json")
    assert len(from_json) == 55 and from_csv.allclose(from_json, atol=1e-6)
    data = json.loads((setup / "ark" / "person_b.json").read_text())
    assert list(data["frames"][0]["blendshapes"]) == list(ARKIT_NAMES)
    assert (setup / "ark" / "arkit_curves.png").stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out


def test_serve_to_livelink(tiny_model, setup, monkeypatch, capsys):
    import socket

    pytest.importorskip("websockets")
    from unils.arkit import decode_packet, to_arkit
    from unils.serve import ServeConfig, ServerThread

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    with receiver, ServerThread(tiny_model, ServeConfig(port=0)) as srv:
        run_example("serve_to_livelink.py", [setup / "a.wav", "--partner", setup / "b.wav", "--url", srv.ws_url,
                                             "--livelink", f"127.0.0.1:{receiver.getsockname()[1]}", "--subject",
                                             "bridge", "--fast"], monkeypatch)
        packets = [decode_packet(receiver.recv(4096)) for _ in range(55)]
    assert "sent 55 frames" in capsys.readouterr().out
    offline = to_arkit(tiny_model.generate(setup / "a.wav", setup / "b.wav", seed=0))
    assert {p.subject for p in packets} == {"bridge"}
    np.testing.assert_allclose(np.stack([p.values for p in packets]), offline.livelink_values(), atol=1e-4)


def test_pipecat_agent(setup, monkeypatch, capsys):
    pytest.importorskip("pipecat")
    run_example("pipecat_agent.py", ["--replay", setup / "a.wav", setup / "b.wav", "--model", setup / "ckpt",
                                     "--hop-frames", "25", "-o", setup / "avatar.npz"], monkeypatch)
    out = capsys.readouterr().out
    motion = Motion.load(setup / "avatar.npz")
    # the timeline runs from the pipeline's start to the end of the bot's 2.2 s (the first audio frame
    # reaches the processor a moment after the start: that moment is silence on the timeline)
    assert 55 <= len(motion) <= 62 and f"{len(motion)} frames ({len(motion) / 25:.2f} s at 25 fps)" in out
    assert "shown at 0.00 s" in out


def test_pipecat_agent_pipeline_is_wired_for_the_avatar(tiny_model):
    pytest.importorskip("pipecat")
    from pipecat.processors.frame_processor import FrameProcessor

    from unils.pipecat import UniLSAvatarProcessor

    class Transport:  # the live transport needs a client; its two ends are plain processors here
        def __init__(self):
            self.ends = (FrameProcessor(name="in"), FrameProcessor(name="out"))

        def input(self):
            return self.ends[0]

        def output(self):
            return self.ends[1]

    agent = runpy.run_path(str(EXAMPLES / "pipecat_agent.py"), run_name="pipecat_agent")
    pipeline = agent["build_pipeline"](Transport(), tiny_model)
    names = [type(p).__name__ for p in pipeline.processors]
    avatar = names.index("UniLSAvatarProcessor")
    assert names[avatar - 1] == "OpenAITTSService" and names[avatar + 1] == "FrameProcessor"  # after TTS, before output
    proc = pipeline.processors[avatar]
    assert isinstance(proc, UniLSAvatarProcessor) and proc.send_to_client == "rtvi" and proc.hop_frames == 5


def test_livekit_agent(setup, monkeypatch, capsys):
    pytest.importorskip("livekit.agents")
    run_example("livekit_agent.py", ["--replay", setup / "a.wav", setup / "b.wav", "--model", setup / "ckpt",
                                     "--hop-frames", "25", "-o", setup / "avatar.npz"], monkeypatch)
    out = capsys.readouterr().out
    motion = Motion.load(setup / "avatar.npz")
    # the avatar's timeline runs from its start to the end of the agent's 2.2 s reply (the worker
    # starts before the reply arrives, so a few frames of silence may precede it)
    assert 55 <= len(motion) <= 62 and f"{len(motion)} frames" in out and "unils.motion: frames 0..4" in out


def test_livekit_agent_server_registers_the_session():
    pytest.importorskip("livekit.agents")
    agent = runpy.run_path(str(EXAMPLES / "livekit_agent.py"), run_name="livekit_agent")
    server = agent["make_server"]()
    assert server._entrypoint_fnc is not None and server._entrypoint_fnc.__name__ == "entrypoint"
