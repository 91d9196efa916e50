"""unils.arkit: names, rotations, jawOpen / eyeLook mappings, expression maps and the solver, files."""

import json
import math

import numpy as np
import pytest

from unils import Motion
from unils.arkit import (
    ARKIT_NAMES,
    LIVELINK_NAMES,
    ArkitAnimation,
    ArkitConverter,
    ExpressionMap,
    arkit_index,
    axis_angle_to_euler,
    euler_to_axis_angle,
    eye_axis_angle_to_gaze,
    gaze_to_eye_axis_angle,
    load_expression_map,
    to_arkit,
)
from unils.errors import ArkitError

# Unreal Engine's EARFaceBlendShape enum, in declaration order, as in Epic's
# Engine/Source/Runtime/AugmentedReality/Public/ARTrackable.h (also the order of
# FAppleARKitLiveLinkRemotePublisher's packets and of Live Link Face CSV columns).
EPIC_EAR_FACE_BLEND_SHAPE = ["EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft", "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight", "EyeSquintRight", "EyeWideRight", "JawForward", "JawLeft", "JawRight", "JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthLeft", "MouthRight", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight", "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut", "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]


def test_names_follow_epics_enum():
    assert len(ARKIT_NAMES) == 52 and len(LIVELINK_NAMES) == 61
    assert list(LIVELINK_NAMES) == EPIC_EAR_FACE_BLEND_SHAPE
    assert [n[0].upper() + n[1:] for n in ARKIT_NAMES] == EPIC_EAR_FACE_BLEND_SHAPE[:52]
    assert all(n[0].islower() for n in ARKIT_NAMES)
    assert arkit_index("jawOpen") == arkit_index("JawOpen") == arkit_index(" JAWOPEN ") == 17
    assert arkit_index("RightEyeRoll") == 60
    with pytest.raises(ArkitError, match="not an ARKit"):
        arkit_index("smile")


def test_head_euler_round_trip_and_convention():
    rng = np.random.default_rng(0)
    euler = rng.uniform(-1.2, 1.2, (500, 3))
    np.testing.assert_allclose(axis_angle_to_euler(euler_to_axis_angle(euler)), euler, atol=1e-12)
    aa = rng.normal(0, 0.4, (500, 3))
    np.testing.assert_allclose(euler_to_axis_angle(axis_angle_to_euler(aa)), aa, atol=1e-12)
    # single-axis rotations: about +y turns toward the subject's left (+x), about -x tilts up
    np.testing.assert_allclose(axis_angle_to_euler(np.array([0.0, 0.3, 0.0])), [0.3, 0, 0], atol=1e-15)
    np.testing.assert_allclose(axis_angle_to_euler(np.array([-0.2, 0.0, 0.0])), [0, 0.2, 0], atol=1e-15)
    np.testing.assert_allclose(axis_angle_to_euler(np.array([0.0, 0.0, 0.1])), [0, 0, 0.1], atol=1e-15)


def test_eye_gaze_round_trip():
    rng = np.random.default_rng(1)
    xy = rng.normal(0, 0.3, (400, 2))
    np.testing.assert_allclose(gaze_to_eye_axis_angle(eye_axis_angle_to_gaze(xy)), xy, atol=1e-12)
    gaze = rng.uniform(-0.8, 0.8, (400, 2))
    np.testing.assert_allclose(eye_axis_angle_to_gaze(gaze_to_eye_axis_angle(gaze)), gaze, atol=1e-12)


def _motion(t=10, jaw=None, eyes=None, head=None, expression=None):
    arr = np.zeros((t, 108), np.float32)
    if expression is not None:
        arr[:, :expression.shape[1]] = expression
    if head is not None:
        arr[:, 100:103] = head
    if jaw is not None:
        arr[:, 103] = jaw
    if eyes is not None:
        arr[:, 104:108] = eyes
    return Motion.from_array(arr)


def test_jaw_open_monotone_and_zero_at_rest():
    jaw = np.linspace(-0.1, 0.6, 200)
    anim = to_arkit(_motion(200, jaw=jaw), jaw_full_open=0.4)
    j = anim.weight("jawOpen")
    assert j[jaw <= 0].max() == 0.0
    assert np.all(np.diff(j) >= 0) and np.all(np.diff(j[(jaw > 0) & (jaw < 0.4)]) > 0)
    assert j[-1] == 1.0
    np.testing.assert_allclose(j[(jaw > 0) & (jaw < 0.4)], jaw[(jaw > 0) & (jaw < 0.4)] / 0.4, atol=1e-6)
    rest = to_arkit(Motion.zeros(5))
    assert not rest.weights.any() and not rest.head.any() and not rest.eyes.any()
    assert rest.expression_mapped is False


def test_eyes_and_head_recovered_by_round_trip():
    rng = np.random.default_rng(2)
    head = rng.uniform(-0.5, 0.5, (30, 3))
    gaze = rng.uniform(-0.3, 0.3, (30, 2, 2))
    eyes = gaze_to_eye_axis_angle(gaze).reshape(30, 4)
    anim = to_arkit(_motion(30, head=euler_to_axis_angle(head), eyes=eyes), eye_full_angle=0.3)
    np.testing.assert_allclose(anim.head, head, atol=1e-5)
    np.testing.assert_allclose(anim.eyes, gaze, atol=1e-5)
    # yaw > 0 looks toward the subject's left: "out" for the left eye, "in" for the right eye
    np.testing.assert_allclose(anim.weight("eyeLookOutLeft"), np.clip(gaze[:, 0, 0] / 0.3, 0, 1), atol=1e-5)
    np.testing.assert_allclose(anim.weight("eyeLookInLeft"), np.clip(-gaze[:, 0, 0] / 0.3, 0, 1), atol=1e-5)
    np.testing.assert_allclose(anim.weight("eyeLookInRight"), np.clip(gaze[:, 1, 0] / 0.3, 0, 1), atol=1e-5)
    np.testing.assert_allclose(anim.weight("eyeLookUpRight"), np.clip(gaze[:, 1, 1] / 0.3, 0, 1), atol=1e-5)
    np.testing.assert_allclose(anim.weight("eyeLookDownLeft"), np.clip(-gaze[:, 0, 1] / 0.3, 0, 1), atol=1e-5)


def _known_weights(t, rng):
    w = rng.uniform(0, 1, (t, 52))
    w[rng.uniform(size=w.shape) < 0.3] = 0.0
    w[rng.uniform(size=w.shape) < 0.1] = 1.0
    fixed = [arkit_index(n) for n in ARKIT_NAMES if n == "jawOpen" or n.startswith("eyeLook")]
    w[:, fixed] = 0.0  # these come from the (zero) jaw and eye rotation
    return w


def test_solver_recovers_known_weights_from_random_map():
    rng = np.random.default_rng(3)
    basis = rng.normal(0, 1, (52, 100))
    w = _known_weights(64, rng)
    motion = _motion(64, expression=(w @ basis).astype(np.float32))
    anim = to_arkit(motion, expression_map=ExpressionMap.from_array(basis), symmetry=0.0, small_weight=0.0,
                    iterations=500)
    assert anim.expression_mapped is True
    np.testing.assert_allclose(anim.weights, w, atol=2e-3)
    # the default small penalties bias the answer only slightly
    default = to_arkit(motion, expression_map=ExpressionMap.from_array(basis))
    assert np.abs(default.weights - w).mean() < 0.02
    assert default.weights.min() >= 0 and default.weights.max() <= 1


def test_map_file_formats_directions_and_names(tmp_path):
    rng = np.random.default_rng(4)
    basis = rng.normal(0, 1, (52, 101))  # 100 expressions + jaw
    np.save(tmp_path / "m.npy", basis)
    m = load_expression_map(tmp_path / "m.npy")
    assert m.direction == "arkit_to_flame" and m.jaw and m.expression_coefs == 100
    # a file in another row order (e.g. Apple's alphabetical one), with names
    order = np.argsort(ARKIT_NAMES)
    np.savez(tmp_path / "m.npz", arkit_to_flame=basis[order], names=np.array([ARKIT_NAMES[i] for i in order]))
    np.testing.assert_array_equal(load_expression_map(tmp_path / "m.npz").matrix, basis)
    from safetensors.numpy import save_file

    save_file({"flame_to_arkit": basis.T[:50].copy()}, str(tmp_path / "m.safetensors"), metadata={"jaw": "0"})
    inv = load_expression_map(tmp_path / "m.safetensors")
    assert inv.direction == "flame_to_arkit" and not inv.jaw and inv.expression_coefs == 50
    expr = rng.normal(0, 0.5, (20, 100)).astype(np.float32)
    anim = to_arkit(_motion(20, expression=expr), expression_map=inv)
    free = [i for i, n in enumerate(ARKIT_NAMES) if n != "jawOpen" and not n.startswith("eyeLook")]
    np.testing.assert_allclose(anim.weights[:, free], np.clip(expr[:, :50] @ basis.T[:50][:, free], 0, 1), atol=1e-5)


@pytest.mark.parametrize(
    "matrix, kwargs, match",
    [
        (np.zeros((51, 100)), {}, "must be"),
        (np.zeros((52, 52)), {}, "ambiguous"),
        (np.zeros((52, 102)), {}, "K <= 101"),
        (np.zeros((52, 100)), {"direction": "sideways"}, "direction"),
        (np.zeros((100, 52)), {"direction": "arkit_to_flame"}, "52 ARKit rows"),
        (np.full((52, 10), np.nan), {}, "NaN"),
        (np.zeros((52, 10)), {"bias": np.zeros(3)}, "bias"),
        (np.zeros((52, 10)), {"names": ARKIT_NAMES[:51]}, "52"),
        (np.zeros((52, 10)), {"names": ("jawOpen",) * 52}, "each once"),
    ],
)
def test_bad_maps_give_typed_errors(matrix, kwargs, match):
    with pytest.raises(ArkitError, match=match):
        ExpressionMap.from_array(matrix, **kwargs)


def test_bad_map_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_expression_map(tmp_path / "nope.npz")
    (tmp_path / "m.txt").write_text("1 2 3")
    with pytest.raises(ArkitError, match=r"\.npy"):
        load_expression_map(tmp_path / "m.txt")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(ArkitError, match="not a readable"):
        load_expression_map(tmp_path / "bad.npz")
    np.savez(tmp_path / "two.npz", a=np.zeros((52, 5)), b=np.zeros((52, 5)))
    with pytest.raises(ArkitError, match="which array"):
        load_expression_map(tmp_path / "two.npz")
    np.savez(tmp_path / "dir.npz", flame_to_arkit=np.zeros((5, 52)))
    with pytest.raises(ArkitError, match="direction"):
        load_expression_map(tmp_path / "dir.npz", direction="arkit_to_flame")
    with pytest.raises(ArkitError, match="jaw_full_open"):
        ArkitConverter(jaw_full_open=0)


def test_streaming_converter_equals_offline():
    rng = np.random.default_rng(5)
    arr = rng.normal(0, 0.2, (90, 108)).astype(np.float32)
    basis = ExpressionMap.from_array(rng.normal(0, 1, (52, 101)))
    motion = Motion.from_array(arr)
    whole = to_arkit(motion, expression_map=basis)
    conv = ArkitConverter(basis)
    parts = [conv.push(motion[a:b]) for a, b in ((0, 1), (1, 26), (26, 27), (27, 90))]
    assert conv.frames_converted == 90
    assert ArkitAnimation.concatenate(parts).allclose(whole, atol=1e-6)


def test_animation_validation_slicing_and_files(tmp_path):
    rng = np.random.default_rng(6)
    anim = ArkitAnimation(rng.uniform(0, 1, (50, 52)), rng.normal(0, 0.2, (50, 3)), rng.normal(0, 0.2, (50, 2, 2)),
                          fps=25, expression_mapped=True)
    assert anim.names == ARKIT_NAMES and anim.weights.dtype == np.float32
    assert len(anim[3]) == 1 and len(anim[10:20]) == 10 and len(anim.slice_time(0.4, 1.0)) == 15
    assert anim[anim.weights[:, 0] > 2].num_frames == 0
    assert ArkitAnimation.concatenate([anim[:20], anim[20:]]) == anim
    with pytest.raises(ArkitError, match=r"\[0, 1\]"):
        ArkitAnimation(np.full((2, 52), 1.5), np.zeros((2, 3)), np.zeros((2, 2, 2)))
    with pytest.raises(ArkitError, match="same number"):
        ArkitAnimation(np.zeros((2, 52)), np.zeros((3, 3)), np.zeros((2, 2, 2)))
    with pytest.raises(ArkitError, match="shape"):
        ArkitAnimation(np.zeros((2, 51)), np.zeros((2, 3)), np.zeros((2, 2, 2)))
    assert ArkitAnimation.load(anim.save(tmp_path / "a.npz")) == anim
    back = ArkitAnimation.load(anim.save(tmp_path / "a.json"))
    assert back == anim
    data = json.loads((tmp_path / "a.json").read_text())
    assert list(data["frames"][0]["blendshapes"]) == list(ARKIT_NAMES) and data["fps"] == 25
    csv_back = ArkitAnimation.load(anim.save(tmp_path / "a.csv"))
    assert csv_back.fps == 25 and csv_back.allclose(anim, atol=1e-6)
    for mirror in (False, True):
        assert ArkitAnimation.load(anim.save(tmp_path / "m.csv", mirror=mirror), mirror=mirror).allclose(anim, atol=1e-6)
    with pytest.raises(ArkitError, match="written as"):
        anim.save(tmp_path / "a.txt")


def test_livelink_csv_layout(tmp_path):
    anim = to_arkit(_motion(30, jaw=np.full(30, 0.175), head=np.tile([0.0, 0.3, 0.0], (30, 1))))
    anim.save(tmp_path / "take.csv")
    lines = (tmp_path / "take.csv").read_text().splitlines()
    assert lines[0].split(",") == ["Timecode", "BlendShapeCount", *LIVELINK_NAMES]
    row = lines[26].split(",")
    assert row[0] == "00:00:01:00.000" and row[1] == "61"
    assert float(row[2 + arkit_index("JawOpen")]) == pytest.approx(0.5, abs=1e-6)
    assert float(row[2 + arkit_index("HeadYaw")]) == pytest.approx(0.3 / math.pi, abs=1e-6)


def test_plot_arkit(tmp_path):
    pytest.importorskip("matplotlib")
    from unils.viz import plot_arkit

    rng = np.random.default_rng(7)
    basis = ExpressionMap.from_array(rng.normal(0, 1, (52, 100)))
    anims = [to_arkit(Motion.from_array(rng.normal(0, 0.1, (50, 108)).astype(np.float32)), expression_map=basis)
             for _ in range(2)]
    fig = plot_arkit(anims, tmp_path / "c.png", labels=["me", "you"], activity=[np.arange(50) < 20, None])
    assert len(fig.axes) == 10 and (tmp_path / "c.png").stat().st_size > 5000
    assert len(plot_arkit(anims[0]).axes) == 5
    with pytest.raises(ArkitError):
        plot_arkit([anims[0], to_arkit(Motion.zeros(5, fps=30))])


def test_plot_arkit_draws_the_largest_excursions_once_per_pair():
    from unils.viz.arkit_plot import mapped_channels

    w = np.zeros((200, 52), np.float32)
    w[:, arkit_index("mouthSmileLeft")] = w[:, arkit_index("mouthSmileRight")] = 0.4  # steady, high mean
    w[50:54, arkit_index("eyeBlinkLeft")] = w[50:54, arkit_index("eyeBlinkRight")] = 1.0  # short, large
    w[:, arkit_index("browInnerUp")] = np.linspace(0.0, 0.2, 200)
    w[:, arkit_index("cheekSquintLeft")] = 0.3
    w[:, arkit_index("cheekSquintRight")] = 0.1  # not the twin's curve: drawn on its own
    w[:, arkit_index("jawOpen")] = 1.0  # has its own row
    got = mapped_channels(w, 6)
    assert got == [
        (arkit_index("eyeBlinkLeft"), "eyeBlink L/R"),
        (arkit_index("mouthSmileLeft"), "mouthSmile L/R"),
        (arkit_index("cheekSquintLeft"), "cheekSquintLeft"),
        (arkit_index("browInnerUp"), "browInnerUp"),
        (arkit_index("cheekSquintRight"), "cheekSquintRight"),
    ]  # channels that never move are left out
    assert mapped_channels(w, 2) == got[:2] and mapped_channels(w, 0) == [] and mapped_channels(w[:0], 3) == []
