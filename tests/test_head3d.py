"""The bundled ICT-FaceKit head, the demo's FLAME->ARKit map and ``unils preview --head 3d``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import unils
from unils import Motion, UniLS
from unils.arkit import (
    ARKIT_NAMES,
    arkit_index,
    bundled_expression_map,
    expression_map_for,
    load_expression_map,
    load_head,
    to_arkit,
)
from unils.errors import ArkitError

HEAD = Path(unils.__file__).parent / "assets" / "ict_head"
DIALOGUE = Path(__file__).resolve().parents[1] / "examples" / "dialogue"


@pytest.fixture(scope="module")
def head():
    return load_head()


@pytest.fixture(scope="module")
def demo() -> UniLS:
    return UniLS.from_pretrained("demo")


def _weights(**named: float) -> np.ndarray:
    w = np.zeros(52)
    for name, value in named.items():
        w[arkit_index(name)] = value
    return w


# ---------------------------------------------------------------------------------------------- asset
def test_head_asset_is_small_licensed_and_complete(head):
    files = {p.name: p.stat().st_size for p in HEAD.iterdir()}
    assert {"ict_head.json", "ict_head.bin", "LICENSE-ICT-FaceKit.txt", "CREDITS-ICT-FaceKit.md"} <= set(
        files
    )
    assert sum(files.values()) < 4 * 2**20  # a few MB in the wheel at most
    licence = (HEAD / "LICENSE-ICT-FaceKit.txt").read_text()
    assert "MIT License" in licence and "USC Institute for Creative Technologies" in licence
    man = json.loads((HEAD / "ict_head.json").read_text())
    assert (
        man["missing"] == {"tongueOut": man["missing"]["tongueOut"]}
        and "ignored" in man["missing"]["tongueOut"]
    )
    assert head.vertices.shape == (24591, 3) and head.faces.shape == (48836, 3)
    assert len(head.shape_names) == 51 and set(ARKIT_NAMES) - set(head.shape_names) == {"tongueOut"}
    # every present shape moves something, tongueOut nothing
    norms = np.abs(head.deltas).max(axis=1)
    assert (norms[[arkit_index(n) for n in head.shape_names]] > 0.05).all()
    assert norms[arkit_index("tongueOut")] == 0
    # ICT's "_L" is the subject's left (+x), as in ARKit
    moved = np.abs(head.deltas[arkit_index("eyeBlinkLeft")].reshape(-1, 3)).max(axis=1) > 0.1
    assert head.vertices[moved, 0].mean() > 2.0


def test_pose_blendshapes_head_and_gaze(head):
    up, low = head.manifest["lip_midpoints"]["upper"], head.manifest["lip_midpoints"]["lower"]
    rest = head.pose(np.zeros(52))[0]
    np.testing.assert_allclose(rest, head.vertices, atol=1e-6)
    gaps = [float(np.subtract(*head.pose(_weights(jawOpen=w))[0][[up, low], 1])) for w in (0.0, 0.5, 1.0)]
    assert gaps[0] < 0.2 and gaps[1] > 1.0 and gaps[2] > gaps[1] + 1.0
    # yaw > 0 turns the face toward the subject's left (+x); pitch > 0 lifts the chin
    nose = int(np.argmax(head.vertices[:, 2]))
    turned = head.pose(np.zeros(52), head=[0.3, 0.0, 0.0])[0]
    assert turned[nose, 0] > rest[nose, 0] + 2.0
    lifted = head.pose(np.zeros(52), head=[0.0, 0.3, 0.0])[0]
    assert lifted[nose, 1] > rest[nose, 1] + 1.0
    # gaze turns the eyeballs about their centres (the pupil moves, the skin does not)
    pupil = np.flatnonzero(head.paint == head.paint_names.index("pupil"))
    looked = head.pose(np.zeros(52), eyes=[[0.3, 0.0], [0.3, 0.0]])[0]
    assert (looked[pupil, 0] - rest[pupil, 0]).mean() > 0.3
    np.testing.assert_allclose(looked[:11248], rest[:11248])
    batch = head.pose(
        np.stack([_weights(), _weights(jawOpen=1.0)]), head=np.zeros((2, 3)), eyes=np.zeros((2, 2, 2))
    )
    assert batch.shape == (2, 24591, 3) and batch.dtype == np.float32
    with pytest.raises(ArkitError, match="weights must have shape"):
        head.pose(np.zeros(51))
    with pytest.raises(ArkitError, match="NaN"):
        head.pose(np.full(52, np.nan))
    with pytest.raises(FileNotFoundError):
        load_head("/nonexistent/head.json")


# ---------------------------------------------------------------------------------------------- demo map
def test_demo_ships_its_expression_map(demo, tiny_model):
    m = bundled_expression_map("demo")
    assert m.direction == "flame_to_arkit" and m.matrix.shape == (7, 52) and not m.jaw
    assert expression_map_for(demo) is not None and expression_map_for("unils-demo") is not None
    assert expression_map_for(tiny_model) is None  # other models: bring your own
    with pytest.raises(ArkitError, match="no bundled expression map"):
        bundled_expression_map("official")
    same = load_expression_map(Path(unils.__file__).parent / "assets" / "demo" / "arkit_map.npz")
    np.testing.assert_array_equal(same.matrix, m.matrix)


def test_demo_map_gives_each_channel_its_meaning():
    """Corpus-like coefficients (the demo's training data) light the blendshapes they mean."""
    t = 50
    x = np.zeros((t, 108), np.float32)
    x[10:14, 6] = [0.7, 1.5, 1.4, 0.5]  # a blink
    x[:, 4] = np.linspace(-0.3, 0.5, t)  # brows from lowered to raised (corpus: bumps 0.1-0.5)
    x[:, 5] = np.linspace(0.0, 0.4, t)  # a growing smile
    x[30:40, 1] = 1.0  # lips rounded (an "oo": 1.4 at most)
    x[40:50, 3] = 1.0  # lips pressed (an "m": 1.2)
    anim = to_arkit(Motion.from_array(x), expression_map="demo")
    w = anim.weights
    assert anim.expression_mapped
    blink = w[:, arkit_index("eyeBlinkLeft")]
    assert blink[11] > 0.9 and w[11, arkit_index("eyeBlinkRight")] > 0.9 and blink[20:].max() == 0
    up, down = w[:, arkit_index("browInnerUp")], w[:, arkit_index("browDownLeft")]
    assert up[-1] > 0.3 and up[0] == 0 and down[0] > 0.3 and down[-1] == 0
    smile = w[:, arkit_index("mouthSmileLeft")]
    assert smile[-1] > 0.5 and np.all(np.diff(smile) >= 0)
    assert w[35, arkit_index("mouthPucker")] > 0.5 and w[20, arkit_index("mouthPucker")] == 0
    assert w[45, arkit_index("mouthPressLeft")] > 0.5
    # jawOpen and gaze stay the map-free formulas
    assert w[:, arkit_index("jawOpen")].max() == 0


def test_demo_arkit_output_follows_its_motion(demo):
    """Generated demo motion: blink, brow, smile and lip channels are non-zero and follow the coefficients."""
    a, sr = sf.read(DIALOGUE / "person_a.flac", dtype="float32")
    b, _ = sf.read(DIALOGUE / "person_b.flac", dtype="float32")
    me, you = demo.generate_both(a[: 5 * sr], b[: 5 * sr], seed=0)
    for motion in (me, you):
        w = to_arkit(motion, expression_map="demo").weights
        e = motion.expression

        def follows(name: str, coef: int, least: float = 0.1, w: np.ndarray = w, e: np.ndarray = e) -> None:
            ch = w[:, arkit_index(name)]
            assert ch.max() > least, name
            on = ch > 0
            assert np.corrcoef(ch[on], e[on, coef])[0, 1] > 0.95, name

        follows("cheekSquintLeft", 5, 0.05)  # mouthSmile* also take some lip spreading
        assert w[:, arkit_index("mouthSmileLeft")].max() > 0.2  # mood, drift and listener smiles
        follows("browInnerUp", 4)
        follows("mouthPucker", 1)
        follows("mouthStretchLeft", 2)
        follows("mouthLowerDownLeft", 0)
        if motion is me:  # person A speaks in these 5 s (p, b, m press the lips)
            follows("mouthPressLeft", 3)
        # the demo blinks in the pause after a sentence: both people at the first one (frame ~50)
        blink = w[:, arkit_index("eyeBlinkLeft")]
        assert blink[:100].max() > 0.6 and 45 <= blink[:100].argmax() <= 56
        assert (blink[:100] > 0).sum() <= 8 and np.array_equal(blink, w[:, arkit_index("eyeBlinkRight")])
    # what a caller without the map gets: expression channels at 0
    plain = to_arkit(me).weights
    assert plain[:, arkit_index("mouthSmileLeft")].max() == 0


# ---------------------------------------------------------------------------------------------- preview
def _mouth_open(frames: np.ndarray, size: int, who: int, head) -> np.ndarray:
    """Per frame, dark pixels (the open mouth's inside and the gaps between lips and teeth) in panel ``who``'s mouth area.

    The area is 5 cm x 3 cm around the inner lips' midpoint at rest, projected the way the renderer
    frames the head (centre (0, -1.5) cm, 34 cm tall).
    """
    lips = head.vertices[
        [head.manifest["lip_midpoints"]["upper"], head.manifest["lip_midpoints"]["lower"]]
    ].mean(0)
    scale = size / 34.0
    col = who * size + size / 2 + lips[0] * scale
    row = size / 2 - (lips[1] + 1.5) * scale
    box = frames[
        :, int(row - 1.5 * scale) : int(row + 1.5 * scale), int(col - 2.5 * scale) : int(col + 2.5 * scale)
    ]
    return (box.astype(np.float32).mean(axis=-1) < 80).sum(axis=(1, 2))


@pytest.mark.slow
def test_preview_3d_speaker_opens_mouth_listener_does_not(demo, tmp_path):
    """``unils preview --head 3d``: B speaks, A listens (the example's first 1.8 s); read the video back."""
    import imageio.v3 as iio

    from unils.cli import main

    a, sr = sf.read(DIALOGUE / "person_a.flac", dtype="float32")
    b, _ = sf.read(DIALOGUE / "person_b.flac", dtype="float32")
    sf.write(tmp_path / "a.wav", a[: int(1.8 * sr)], sr)
    sf.write(tmp_path / "b.wav", b[: int(1.8 * sr)], sr)
    out = tmp_path / "talk.mp4"
    size = 240
    code = main(["preview", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--head", "3d", "--size", str(size),
                 "--fps", "10", "-o", str(out), "--save-motion", str(tmp_path / "m.npz")])  # fmt: skip
    assert code == 0 and out.stat().st_size > 10_000
    frames = iio.imread(out, plugin="pyav")
    assert frames.shape[2:] == (2 * size, 3) and len(frames) == 18
    head = load_head()
    listener, speaker = _mouth_open(frames, size, 0, head), _mouth_open(frames, size, 1, head)
    assert speaker.max() - speaker.min() > 40, speaker  # the mouth opens and closes
    assert listener.max() - listener.min() < 0.5 * (speaker.max() - speaker.min()), (listener, speaker)
    assert speaker.mean() > listener.mean() + 20 and speaker.max() > listener.max() + 30, (listener, speaker)
    # the motion behind it agrees: B's jaw opens, A's stays nearly closed
    jaw_a = Motion.load(tmp_path / "m.npz").jaw[:, 0]
    jaw_b = Motion.load(tmp_path / "m_partner.npz").jaw[:, 0]
    assert jaw_b.max() > 0.1 and jaw_a.max() < 0.5 * jaw_b.max()


def test_preview_3d_still_is_a_shaded_face(tmp_path):
    from PIL import Image

    from unils.viz.head3d import HeadRenderer

    m = Motion.zeros(3)
    m.jaw[:] = 0.25
    img = HeadRenderer().still(
        [m, Motion.zeros(3)], 1, size=128, activity=[np.ones(3, bool), np.zeros(3, bool)]
    )
    assert img.shape[1] == 256 and img.dtype == np.uint8
    Image.fromarray(img).save(tmp_path / "still.png")
    face = img[20:110, 30:98].astype(np.float32)
    assert face.std() > 20  # shaded, not a flat fill
    # skin tone in the middle of each face, the speaker's panel has the green frame
    assert img[60, 64, 0] > img[60, 64, 2] and img[60, 192, 0] > img[60, 192, 2]
    assert img[2, 64, 1] > img[2, 64, 0]


def test_head_exports_as_glb_with_arkit_morph_targets(head, tmp_path):
    """The glTF file engines import (three.js read it back with 51 named morph targets when written)."""
    import struct

    from unils.viz.head3d import head_colors

    path = head.save_glb(tmp_path / "head.glb", colors=head_colors(head))
    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, total) == (b"glTF", 2, len(data))
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    gltf = json.loads(data[20 : 20 + jlen])
    blen, btype = struct.unpack_from("<I4s", data, 20 + jlen)
    binary = data[28 + jlen : 28 + jlen + blen]
    assert jtype == b"JSON" and btype == b"BIN\0" and gltf["buffers"][0]["byteLength"] == blen
    mesh = gltf["meshes"][0]
    prim = mesh["primitives"][0]
    assert mesh["extras"]["targetNames"] == list(head.shape_names) and len(prim["targets"]) == 51
    assert {"POSITION", "COLOR_0"} <= set(prim["attributes"])

    def read(index: int) -> np.ndarray:
        acc = gltf["accessors"][index]
        view = gltf["bufferViews"][acc["bufferView"]]
        dtype = {5126: "<f4", 5125: "<u4"}[acc["componentType"]]
        width = {"VEC3": 3, "SCALAR": 1}[acc["type"]]
        arr = np.frombuffer(binary, dtype, acc["count"] * width, view["byteOffset"])
        return arr.reshape(acc["count"], width) if width > 1 else arr

    np.testing.assert_allclose(read(prim["attributes"]["POSITION"]), head.vertices * 0.01, rtol=1e-6)
    jaw = read(prim["targets"][head.shape_names.index("jawOpen")]["POSITION"])
    np.testing.assert_allclose(jaw, head.deltas[arkit_index("jawOpen")].reshape(-1, 3) * 0.01, atol=1e-7)
    tris = read(prim["indices"])
    assert tris.max() < head.num_vertices and len(tris) % 3 == 0 and len(tris) < head.faces.size
