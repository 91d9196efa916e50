"""Exporters, speech activity, the schematic renderer, video/GIF/PNG writers, plots and the CLI."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import speech_like

from unils import Motion, MotionError
from unils.audio import save_audio
from unils.cli import main
from unils.errors import AudioError, FormatError, MissingDependencyError
from unils.viz import (
    CueMap,
    SchematicRenderer,
    face_cues,
    frame_energy_db,
    mix_audio,
    output_frame_indices,
    plot_motion,
    render_preview,
    speech_activity,
    write_video,
)
from unils.viz.avatar import _SPEAK, check_participants

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
PIL = pytest.importorskip("PIL")
from PIL import Image

SIZE = 64


def probe(path):
    """ffmpeg's description of a media file (the streams it holds)."""
    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True, check=False)
    return proc.stderr


@pytest.fixture
def pair():
    """Two people, 20 frames: A opens the jaw and turns, B nods and looks aside."""
    rng = np.random.default_rng(0)
    t = np.arange(20) / 25
    a = Motion.from_array(rng.normal(scale=0.3, size=(20, 108)))
    b = Motion.from_array(rng.normal(scale=0.3, size=(20, 108)))
    a.jaw[:, 0] = 0.2 * (np.sin(2 * np.pi * 3 * t) > 0)
    a.head_pose[:, 1] = 0.2 * np.sin(2 * np.pi * t)
    b.head_pose[:, 0] = 0.15 * np.sin(2 * np.pi * 2 * t)
    return a, b


@pytest.fixture
def voices(tmp_path):
    """A speaks in the first half of 0.8 s, B in the second."""
    n = 20 * 640
    rng = np.random.default_rng(1)
    va = np.zeros(n, np.float32)
    vb = np.zeros(n, np.float32)
    va[: n // 2] = 0.3 * rng.standard_normal(n // 2)
    vb[n // 2 :] = 0.3 * rng.standard_normal(n - n // 2)
    save_audio(tmp_path / "a.wav", va)
    save_audio(tmp_path / "b.wav", vb)
    return tmp_path / "a.wav", tmp_path / "b.wav"


# ---------------------------------------------------------------------- exporters


def test_exporter_round_trips_are_exact(pair, tmp_path):
    m = Motion.from_array(pair[0].to_array(), fps=30.0)
    m.save(tmp_path / "m.npz")
    m.save(tmp_path / "m.json")
    m.save(tmp_path / "m.csv")
    np.save(tmp_path / "m.npy", m.to_array())
    for name in ("m.npz", "m.json", "m.csv"):
        back = Motion.load(tmp_path / name)
        assert back == m and back.fps == 30.0, name
    assert Motion.load(tmp_path / "m.npy").allclose(Motion.from_array(m.to_array()), atol=0)
    # CSV: named columns, time first
    header = (tmp_path / "m.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["time", "expression_0"] and header[101:105] == ["head_pose_x", "head_pose_y", "head_pose_z", "jaw"]
    assert header[-4:] == ["eye1_x", "eye1_y", "eye2_x", "eye2_y"] and len(header) == 109


def test_per_frame_dicts_round_trip(pair):
    m = Motion.from_array(pair[1].to_array(), fps=30.0)
    frames = list(m.frames())
    assert [f["index"] for f in frames] == list(range(20))
    assert frames[3]["time"] == pytest.approx(0.1)
    # JSON-ready: survives a text round trip, and rebuilds the same motion (fps from the times)
    back = Motion.from_frames(json.loads(json.dumps(frames)))
    assert back == m and back.fps == 30.0
    assert Motion.from_frames(frames, fps=25.0).fps == 25.0
    assert len(Motion.from_frames([])) == 0 and Motion.from_frames(frames[:1]).fps == 25.0
    with pytest.raises(MotionError, match="lacks 'jaw'"):
        Motion.from_frames([{k: v for k, v in frames[0].items() if k != "jaw"}])
    bad = dict(frames[0], eyes=[0.0, 1.0])
    with pytest.raises(MotionError, match="eyes"):
        Motion.from_frames([bad])


def test_motion_file_errors(tmp_path):
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(MotionError, match="not a readable motion"):
        Motion.load(tmp_path / "m.txt")
    with pytest.raises(FileNotFoundError):
        Motion.load(tmp_path / "missing.npz")


# ---------------------------------------------------------------------- speech activity


def test_frame_energy_db_values():
    x = np.full(1000, 0.5, np.float32)
    db = frame_energy_db(x, 16000, 25.0)
    assert db.shape == (2,) and db[0] == pytest.approx(20 * np.log10(0.5), abs=1e-6)
    # the second frame holds 360 of 640 samples: energy averaged over the whole frame
    assert db[1] == pytest.approx(10 * np.log10(0.25 * 360 / 640), abs=1e-6)
    assert frame_energy_db(np.zeros(640), 16000, 25.0, num_frames=3).tolist() == [-120.0] * 3


def test_speech_activity_follows_the_bursts():
    x = speech_like(4.0, seed=3)
    act = speech_activity(x)
    t = np.arange(100) / 25
    truth = np.sin(2 * np.pi * 1.3 * t) > -0.2
    assert act.dtype == bool and act.shape == (100,)
    assert (act == truth).mean() >= 0.9
    assert not speech_activity(np.zeros(16000, np.float32)).any()
    assert speech_activity(x, num_frames=120)[100:].sum() == 0
    # a fixed threshold above the signal finds nothing; pauses shorter than min_gap are bridged
    assert not speech_activity(x, threshold_db=0.0).any()
    y = np.zeros(16000, np.float32)
    y[:6400] = 0.3
    y[7040:] = 0.3  # a 40 ms pause
    assert speech_activity(y).all()
    assert not speech_activity(y, min_gap=0.0)[10]
    with pytest.raises(AudioError):
        speech_activity(x, fps=0)


# ---------------------------------------------------------------------- cues and renderer


def test_face_cues_mapping():
    m = Motion.zeros(5)
    m.jaw[:, 0] = [0.0, 0.125, 0.25, 0.5, 0.125]
    m.expression[:, 6] = [0.0, 0.6, 0.9, 0.0, 0.0]  # the corpus' blink channel
    m.expression[4, 3] = 0.5  # lip press
    m.expression[1, 1] = 1.0  # rounding
    m.expression[2, 2] = 0.5  # spreading
    m.expression[1, 4] = 0.6  # brow raise
    m.expression[2, 5] = -0.5  # corners down
    m.eyes[3, [0, 2]] = 0.2  # looking down
    c = face_cues(m)
    assert c.mouth_open.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.5 * 0.6])
    assert c.press.tolist() == pytest.approx([0, 0, 0, 0, 0.5]) and c.mouth_width.tolist() == pytest.approx([0, -1, 0.5, 0, 0])
    assert c.brow[1] == pytest.approx(np.tanh(1.0)) and c.smile[2] == pytest.approx(np.tanh(-1.0))
    assert c.blink.tolist() == pytest.approx([0.0, 0.5, 1.0, 0.0, 0.0])
    assert c.eye_open[2] == pytest.approx(0.0, abs=1e-6) and c.eye_open[1] == pytest.approx(0.85 * 0.5)
    assert c.eye_open[3] < c.eye_open[0] == pytest.approx(0.85)  # lids follow the eyes down
    assert c.gaze.shape == (5, 2, 2) and c.gaze[3, 0, 0] == pytest.approx(0.4)  # gain 2
    assert c.expressive[0] == 0.0 < c.expressive[1]
    # another blink combination, e.g. for data that encodes blinks elsewhere
    c2 = face_cues(m, CueMap(blink_coefs=(6, 7), blink_weights=(0.5, 0.5)))
    assert c2.blink[2] == pytest.approx(0.25)  # (0.5 * 0.9 - 0.3) / 0.6
    with pytest.raises(MotionError):
        CueMap(blink_coefs=(3,), blink_weights=(1.0, 2.0))
    with pytest.raises(MotionError):
        CueMap(smile_coef=100)
    with pytest.raises(MotionError):
        CueMap(blink_onset=1.0, blink_full=0.5)


def test_output_frame_indices():
    assert output_frame_indices(50, 25.0).tolist() == list(range(50))
    assert output_frame_indices(50, 25.0, 12.5).tolist() == list(range(0, 50, 2))
    # 50 fps from 25: each frame twice (nearest frame, halves rounded up), never past the end
    assert output_frame_indices(4, 25.0, 50.0).tolist() == [0, 1, 1, 2, 2, 3, 3, 3]
    assert output_frame_indices(5, 25.0, 30.0).tolist() == [0, 1, 2, 3, 3, 4]
    with pytest.raises(MotionError):
        output_frame_indices(5, 25.0, 0.0)


def test_renderer_frames_and_indicators(pair):
    a, b = pair
    act_a = np.arange(20) < 10
    frames = list(SchematicRenderer()([a, b], size=SIZE, activity=[act_a, ~act_a], labels=["a", "b"]))
    assert len(frames) == 20
    h, w, _ = frames[0].shape
    assert w == 2 * SIZE and h > SIZE and h % 2 == 0 and frames[0].dtype == np.uint8
    assert all(f.shape == frames[0].shape for f in frames)

    def green_frame(frame, panel):  # the speaker's panel has a green border
        return np.abs(frame[SIZE // 2, panel * SIZE + 2].astype(int) - _SPEAK).max() < 40

    assert green_frame(frames[2], 0) and not green_frame(frames[2], 1)
    assert green_frame(frames[15], 1) and not green_frame(frames[15], 0)
    # the picture follows the motion: a still motion gives the same panel, a moving one does not
    still = list(SchematicRenderer(timeline=False)([Motion.zeros(3)], size=SIZE))
    assert np.array_equal(still[0], still[2]) and still[0].shape == (SIZE, SIZE, 3)
    moving = list(SchematicRenderer(timeline=False)([a], size=SIZE))
    assert not np.array_equal(moving[0], moving[5])
    # a single frame drawn on its own is the frame of the clip
    assert np.array_equal(SchematicRenderer().still([a, b], 7, size=SIZE, activity=[act_a, ~act_a],
                                                     labels=["a", "b"]), frames[7])


def test_renderer_refuses_bad_participants(pair):
    a, b = pair
    with pytest.raises(MotionError, match="different lengths"):
        list(SchematicRenderer()([a, b[:10]], size=SIZE))
    with pytest.raises(MotionError, match="frame rates"):
        check_participants([a, Motion.from_array(b.to_array(), fps=30)])
    with pytest.raises(MotionError, match="at most 4"):
        check_participants([a] * 5)
    with pytest.raises(MotionError, match="one activity and one label"):
        check_participants([a, b], labels=["x"])
    with pytest.raises(MotionError, match="at least one"):
        check_participants([])
    with pytest.raises(MotionError, match="no frames"):
        check_participants([Motion.zeros(0)])


# ---------------------------------------------------------------------- writers


def test_mp4_has_video_and_audio(pair, voices, tmp_path):
    out = tmp_path / "talk.mp4"
    result = render_preview(list(pair), out, audio=list(voices), size=SIZE)
    assert result.frames == 20 and result.has_audio
    info = probe(out)
    assert re.search(r"Video: h264.*yuv420p.*128x\d+", info), info
    assert re.search(r"Audio: aac.*48000 Hz, stereo", info), info
    frames, secs = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert frames == 20 and secs == pytest.approx(0.8, abs=0.05)
    # speech activity from each voice: A in the first half, B in the second
    assert result.activity[0][:8].all() and not result.activity[0][12:].any()
    assert result.activity[1][12:].all() and not result.activity[1][:8].any()
    assert "20 frames (0.80 s at 25 fps), 2 participants, with sound" in result.summary()
    # without audio: a silent video
    silent = render_preview(pair[0], tmp_path / "silent.mp4", size=SIZE)
    assert not silent.has_audio and "Audio:" not in probe(tmp_path / "silent.mp4")


def test_gif_and_png(pair, voices, tmp_path):
    result = render_preview(list(pair), tmp_path / "talk.gif", audio=list(voices), size=SIZE, fps=12.5)
    assert result.frames == 10
    with Image.open(tmp_path / "talk.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 10 and gif.info["duration"] == 80 and gif.info["loop"] == 0
        assert gif.size[0] == 2 * SIZE
    render_preview(list(pair), tmp_path / "still.png", audio=list(voices), size=SIZE, at=0.1)
    with Image.open(tmp_path / "still.png") as png:
        assert png.format == "PNG" and png.size[0] == 2 * SIZE
        assert np.array_equal(np.asarray(png.convert("RGB")),
                              SchematicRenderer().still(list(pair), 2, size=SIZE,
                                                        activity=[speech_activity(v, num_frames=20) for v in voices],
                                                        labels=["A", "B"]))


def test_writer_errors(pair, tmp_path, monkeypatch):
    frames = [np.zeros((4, 4, 3), np.uint8)] * 2
    with pytest.raises(FormatError, match="cannot write a video"):
        write_video(frames, tmp_path / "x.avi", 25)
    with pytest.raises(FormatError, match="cannot write a preview"):
        render_preview(pair[0], tmp_path / "x.webm")
    with pytest.raises(MotionError, match="no frames"):
        write_video([], tmp_path / "x.mp4", 25)
    with pytest.raises(MotionError, match="uint8"):
        write_video([np.zeros((4, 4, 3), np.float32)], tmp_path / "x.gif", 25)
    with pytest.raises(MotionError, match="even"):
        write_video([np.zeros((5, 4, 3), np.uint8)], tmp_path / "x.mp4", 25)
    with pytest.raises(AudioError, match="one audio"):
        render_preview(list(pair), tmp_path / "x.mp4", audio=[None, None, None])
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
        with pytest.raises(MissingDependencyError, match=r"unils\[viz\]"):
            plot_motion(pair[0], tmp_path / "x.png")


def test_mix_audio_pans_and_fits():
    a = np.ones(10, np.float32) * 0.5
    b = np.ones(4, np.float32) * 0.5
    out = mix_audio([a, b], 8)
    assert out.shape == (8, 2) and out.dtype == np.float32
    # A louder on the left, B on the right; B is zero-padded after its 4 samples
    assert out[5, 0] > out[5, 1] > 0 and out[0, 1] > out[5, 1]
    loud = mix_audio([np.ones(8), np.ones(8)], 8)
    assert np.abs(loud).max() == pytest.approx(0.99)
    assert mix_audio([None, None], 8) is None
    mono = mix_audio([a], 10)
    assert np.array_equal(mono[:, 0], mono[:, 1]) and mono[0, 0] == pytest.approx(0.5)


def test_plot_writes_png(pair, tmp_path):
    act = np.arange(20) < 10
    fig = plot_motion(list(pair), tmp_path / "plot.png", activity=[act, ~act], labels=["a", "b"], dpi=40)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 2 * 5  # speech row + 4 parts, per participant
    fig = plot_motion(pair[0], None)
    assert len(fig.axes) == 4


# ---------------------------------------------------------------------- CLI


def test_cli_preview_and_plot_of_motion_files(pair, voices, tmp_path, capsys):
    pair[0].save(tmp_path / "alice.npz")
    pair[1].save(tmp_path / "bob.json")
    a, b = map(str, voices)
    assert main(["preview", str(tmp_path / "alice.npz"), str(tmp_path / "bob.json"), "-a", a, "-p", b,
                 "-o", str(tmp_path / "p.mp4"), "--size", str(SIZE)]) == 0
    assert "20 frames" in capsys.readouterr().out and "Audio: aac" in probe(tmp_path / "p.mp4")
    assert main(["plot", str(tmp_path / "alice.npz"), str(tmp_path / "bob.json"), "-a", a, "-p", b,
                 "-o", str(tmp_path / "p.png"), "--dpi", "30"]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "p.png").stat().st_size > 1000


def test_cli_preview_generates_from_audio(tiny_model, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    save_audio(tmp_path / "me.wav", speech_like(0.4, seed=1))
    save_audio(tmp_path / "you.wav", speech_like(0.4, seed=2))
    assert main(["-q", "preview", str(tmp_path / "me.wav"), str(tmp_path / "you.wav"), "-m", str(tmp_path / "ckpt"),
                 "-o", str(tmp_path / "g.gif"), "--size", str(SIZE), "--save-motion", str(tmp_path / "g.npz")]) == 0
    assert "10 frames" in capsys.readouterr().out
    with Image.open(tmp_path / "g.gif") as gif:
        assert gif.n_frames == 10
    me, you = tiny_model.generate_both(tmp_path / "me.wav", tmp_path / "you.wav", seed=0)
    assert Motion.load(tmp_path / "g.npz") == me and Motion.load(tmp_path / "g_partner.npz") == you


@pytest.mark.parametrize(
    "args, message",
    [
        (["x.avi"], "unknown suffix"),
        (["m.npz", "-o", "out.webm"], "cannot write a preview"),
        (["m.npz", "short.npz"], "different lengths"),
        (["m.npz", "a.wav"], "not one of each"),
        (["a.wav", "-m", "nowhere"], "nowhere"),
        (["a.wav", "-a", "a.wav"], "--audio is for motion inputs"),
        (["m.npz", "m.npz", "m.npz"], "one or two"),
    ],
)
def test_cli_preview_errors(args, message, pair, voices, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pair[0].save(tmp_path / "m.npz")
    pair[1][:10].save(tmp_path / "short.npz")
    assert main(["preview", *args] + ([] if "-o" in args else ["-o", "out.mp4"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("unils preview: error:") and message in err and err.count("\n") == 1


def test_cli_preview_head_gain(pair, tmp_path, capsys):
    pair[0].save(tmp_path / "m.npz")
    assert main(["preview", str(tmp_path / "m.npz"), "-o", str(tmp_path / "g.png"), "--size", str(SIZE),
                 "--head-gain", "2", "--at", "0.2"]) == 0
    assert main(["preview", str(tmp_path / "m.npz"), "-o", str(tmp_path / "n.png"), "--size", str(SIZE),
                 "--head-gain", "nan"]) == 2
    assert "head_gain must be finite" in capsys.readouterr().err
    with Image.open(tmp_path / "g.png") as img:
        doubled = np.asarray(img)
    assert not np.array_equal(doubled, SchematicRenderer().still([pair[0]], 5, size=SIZE, labels=["m"]))
    assert np.array_equal(doubled, SchematicRenderer(head_gain=2).still([pair[0]], 5, size=SIZE, labels=["m"]))


def test_cli_plot_errors(pair, voices, tmp_path, capsys):
    pair[0].save(tmp_path / "m.npz")
    assert main(["plot", str(voices[0]), "-o", str(tmp_path / "p.png")]) == 2
    assert "takes motion files" in capsys.readouterr().err


def test_missing_extra_is_a_clear_error(pair, tmp_path, monkeypatch):
    import sys

    for module in ("PIL", "matplotlib", "imageio_ffmpeg"):
        monkeypatch.setitem(sys.modules, module, None)  # as if the viz extra were not installed
    with pytest.raises(MissingDependencyError, match=r"pillow .*unils\[viz\]"):
        next(SchematicRenderer()([pair[0]], size=SIZE))
    with pytest.raises(MissingDependencyError, match="matplotlib"):
        plot_motion(pair[0])
    with pytest.raises(MissingDependencyError, match="imageio-ffmpeg"):
        write_video([np.zeros((4, 4, 3), np.uint8)], tmp_path / "x.mp4", 25)
    # the speech activity needs no extra
    assert speech_activity(np.zeros(1600, np.float32)).shape == (3,)
