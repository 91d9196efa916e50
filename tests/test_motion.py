import json

import numpy as np
import pytest
import torch

from unils import Motion, MotionError
from unils.motion import COLUMNS, MOTION_FORMAT_VERSION, PARTS


@pytest.fixture
def arr():
    return np.random.default_rng(0).normal(size=(50, 108)).astype(np.float32)


@pytest.fixture
def motion(arr):
    return Motion.from_array(arr)


# ---------------------------------------------------------------------- layout and construction


def test_array_round_trip_is_exact(arr, motion):
    out = motion.to_array()
    assert out.shape == (50, 108) and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.array_equal(out, arr)
    assert np.array_equal(Motion.from_array(out).to_array(), arr)
    # float64 input is cast once; torch input (with grad) is accepted
    assert Motion.from_array(arr.astype(np.float64)) == motion
    assert Motion.from_array(torch.from_numpy(arr).requires_grad_()) == motion


def test_layout(arr, motion):
    assert {n: (s.start, s.stop) for n, s in PARTS.items()} == {
        "expression": (0, 100),
        "head_pose": (100, 103),
        "jaw": (103, 104),
        "eyes": (104, 108),
    }
    assert motion.expression.shape == (50, 100) and motion.expression[7, 42] == arr[7, 42]
    assert motion.head_pose.shape == (50, 3) and np.array_equal(motion.head_pose, arr[:, 100:103])
    assert motion.jaw.shape == (50, 1) and np.array_equal(motion.jaw[:, 0], arr[:, 103])
    assert motion.eyes.shape == (50, 4) and np.array_equal(motion.eyes, arr[:, 104:108])
    single = np.zeros((1, 108), np.float32)
    single[0, 103] = 0.25
    assert Motion.from_array(single).jaw.tolist() == [[0.25]]
    assert len(COLUMNS) == 108 and COLUMNS[0] == "expression_0" and COLUMNS[99] == "expression_99"
    assert COLUMNS[100:] == ("head_pose_x", "head_pose_y", "head_pose_z", "jaw", "eye1_x", "eye1_y", "eye2_x", "eye2_y")
    with pytest.raises(TypeError):
        PARTS["jaw"] = slice(0, 1)  # read-only


def test_parts_are_float32_contiguous():
    m = Motion(
        expression=np.zeros((4, 100), np.float64),
        head_pose=np.asfortranarray(np.ones((4, 3))),
        jaw=np.arange(4, dtype=np.int64)[:, None],
        eyes=[[0.0] * 4] * 4,
        fps=30,
    )
    for name in PARTS:
        part = getattr(m, name)
        assert part.dtype == np.float32 and part.flags.c_contiguous
    assert m.jaw[:, 0].tolist() == [0, 1, 2, 3] and m.fps == 30.0 and isinstance(m.fps, float)


def test_zeros():
    z = Motion.zeros(10, fps=30.0)
    assert len(z) == 10 and z.fps == 30.0 and not z.to_array().any()
    assert len(Motion.zeros(0)) == 0 and Motion.zeros(0).to_array().shape == (0, 108)
    with pytest.raises(MotionError):
        Motion.zeros(-1)


# ---------------------------------------------------------------------- validation


def _parts(t=3, **override):
    parts = {"expression": np.zeros((t, 100)), "head_pose": np.zeros((t, 3)), "jaw": np.zeros((t, 1)), "eyes": np.zeros((t, 4))}
    parts.update(override)
    return parts


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Motion.from_array(np.zeros((10, 107))), r"shape \[frames, 108\], got \[10, 107\]"),
        (lambda: Motion.from_array(np.zeros(108)), r"shape \[frames, 108\], got \[108\]"),
        (lambda: Motion.from_array(np.zeros((2, 10, 108))), r"\[frames, 108\]"),
        (lambda: Motion.from_array(np.full((3, 108), np.nan)), "NaN"),
        (lambda: Motion.from_array(np.pad(np.full((1, 1), np.inf), ((2, 0), (5, 102)))), "first at frame 2"),
        (lambda: Motion.from_array(np.full((3, 108), 1e300)), "NaN/inf"),  # overflows float32
        (lambda: Motion(**_parts(jaw=np.zeros((2, 1)))), "same number of frames.*jaw=2"),
        (lambda: Motion(**_parts(expression=np.zeros((3, 99)))), r"expression must have shape \[frames, 100\], got \[3, 99\]"),
        (lambda: Motion(**_parts(jaw=np.zeros(3))), r"jaw must have shape \[frames, 1\], got \[3\]"),
        (lambda: Motion(**_parts(eyes=np.zeros((3, 4), complex))), "real numeric"),
        (lambda: Motion(**_parts(eyes=np.full((3, 4), "1"))), "real numeric"),
        (lambda: Motion.zeros(3, fps=0), "fps"),
        (lambda: Motion.zeros(3, fps=-25), "fps"),
        (lambda: Motion.zeros(3, fps=float("nan")), "fps"),
        (lambda: Motion.zeros(3, fps="25"), "fps"),
        (lambda: Motion.zeros(3, fps=True), "fps"),
    ],
)
def test_validation_errors(make, message):
    with pytest.raises(MotionError, match=message) as info:
        make()
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------- time and indexing


def test_time_properties(motion):
    assert len(motion) == motion.num_frames == 50
    assert motion.duration == 2.0
    assert motion.times.shape == (50,) and motion.times[0] == 0.0 and motion.times[25] == 1.0
    assert motion.times[1] == pytest.approx(0.04)
    m30 = Motion.zeros(45, fps=30)
    assert m30.duration == 1.5 and m30.times[-1] == pytest.approx(44 / 30)


def test_indexing(arr, motion):
    one = motion[3]
    assert isinstance(one, Motion) and len(one) == 1 and np.array_equal(one.to_array(), arr[3:4])
    assert np.array_equal(motion[-1].to_array(), arr[-1:])
    assert np.array_equal(motion[np.int64(-50)].to_array(), arr[:1])
    assert np.array_equal(motion[10:20].to_array(), arr[10:20])
    assert np.array_equal(motion[::7].to_array(), arr[::7])
    assert np.array_equal(motion[[1, 5, 7]].to_array(), arr[[1, 5, 7]])
    assert np.array_equal(motion[np.array([4, 0])].to_array(), arr[[4, 0]])
    mask = arr[:, 103] > 0
    assert np.array_equal(motion[mask].to_array(), arr[mask])
    assert len(motion[[]]) == 0 and len(motion[40:10]) == 0
    assert motion[5:9].fps == motion.fps
    for bad in (50, -51):
        with pytest.raises(IndexError):
            motion[bad]
    with pytest.raises(IndexError):
        motion[np.ones(49, bool)]
    with pytest.raises(TypeError):
        motion[0, 5]


def test_slice_time(motion):
    assert motion.slice_time(1.0, 1.4) == motion[25:35]
    assert motion.slice_time(1.0) == motion[25:]
    assert motion.slice_time(0.0, 0.038) == motion[0:1]  # 0.95 frames rounds to 1
    assert motion.slice_time(-3.0, 0.2) == motion[:5]
    assert motion.slice_time(1.5, 99.0) == motion[38:]  # 37.5 -> 38 (halves to even)
    assert len(motion.slice_time(1.2, 1.0)) == 0 and len(motion.slice_time(5.0, 6.0)) == 0
    parts = [motion.slice_time(a, b) for a, b in [(0.0, 0.33), (0.33, 1.01), (1.01, 2.0)]]
    assert Motion.concatenate(parts) == motion
    with pytest.raises(MotionError):
        motion.slice_time(float("nan"), 1.0)


def test_concatenate(motion):
    assert Motion.concatenate([motion[:20], motion[20:33], motion[33:]]) == motion
    assert Motion.concatenate([motion]) == motion
    assert len(Motion.concatenate([Motion.zeros(0), Motion.zeros(4)])) == 4
    with pytest.raises(MotionError, match="different fps"):
        Motion.concatenate([motion, Motion.zeros(3, fps=30)])
    with pytest.raises(MotionError, match="nothing"):
        Motion.concatenate([])


# ---------------------------------------------------------------------- comparison and repr


def test_equality_and_hash(arr, motion):
    assert motion == Motion.from_array(arr.copy())
    assert motion != Motion.from_array(arr, fps=30)
    assert motion != motion[:49]
    nudged = arr.copy()
    nudged[10, 103] += 1e-3
    assert motion != Motion.from_array(nudged)
    assert (motion == "motion") is False
    with pytest.raises(TypeError):
        hash(motion)
    assert motion.copy() == motion and motion.copy().expression is not motion.expression


def test_allclose(arr, motion):
    other = Motion.from_array(arr + 1e-7)
    assert other != motion and other.allclose(motion, atol=1e-6)
    assert not Motion.from_array(arr + 1e-3).allclose(motion, atol=1e-6)
    assert Motion.from_array(arr * 1.001).allclose(motion, atol=0, rtol=2e-3)
    assert not motion.allclose(motion[:10])
    assert not motion.allclose(Motion.from_array(arr, fps=30))


def test_repr(motion):
    assert repr(motion) == "Motion(frames=50, duration=2.00s, fps=25)"
    assert repr(Motion.zeros(3, fps=29.97)) == "Motion(frames=3, duration=0.10s, fps=29.97)"


# ---------------------------------------------------------------------- files and exporters


def test_npz_round_trip(motion, tmp_path):
    motion.save(tmp_path / "m.npz")
    assert Motion.load(tmp_path / "m.npz") == motion
    with np.load(tmp_path / "m.npz") as data:
        assert set(data.files) == {*PARTS, "fps", "format_version"}
        assert int(data["format_version"]) == MOTION_FORMAT_VERSION
    # written at exactly the given path (numpy alone would append ".npz")
    m30 = Motion.from_array(motion.to_array(), fps=30)
    m30.save(tmp_path / "m.motion")
    assert not (tmp_path / "m.motion.npz").exists()
    assert Motion.load(str(tmp_path / "m.motion")) == m30
    Motion.zeros(0).save(tmp_path / "empty.npz")
    assert len(Motion.load(tmp_path / "empty.npz")) == 0
    # a plain [T, 108] array is accepted too
    np.save(tmp_path / "plain.npy", motion.to_array())
    assert Motion.load(tmp_path / "plain.npy") == motion


def test_npz_errors(motion, tmp_path):
    with pytest.raises(FileNotFoundError):
        Motion.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "partial.npz", expression=motion.expression, head_pose=motion.head_pose, fps=25.0)
    with pytest.raises(MotionError, match=r"lacks.*'eyes', 'jaw'"):
        Motion.load(tmp_path / "partial.npz")
    parts = {n: getattr(motion, n) for n in PARTS}
    np.savez(tmp_path / "future.npz", **parts, fps=25.0, format_version=MOTION_FORMAT_VERSION + 1)
    with pytest.raises(MotionError, match="format version"):
        Motion.load(tmp_path / "future.npz")
    np.savez(tmp_path / "nan.npz", **{**parts, "jaw": np.full((50, 1), np.nan)}, fps=25.0)
    with pytest.raises(MotionError, match="NaN"):
        Motion.load(tmp_path / "nan.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(MotionError):
        Motion.load(tmp_path / "junk.npz")


def test_json_round_trip(motion, tmp_path):
    d = motion.to_dict()
    assert set(d) == {"fps", *PARTS} and d["fps"] == 25.0
    assert len(d["expression"]) == 50 and len(d["expression"][0]) == 100 and d["jaw"][3] == [float(motion.jaw[3, 0])]
    assert Motion.from_dict(d) == motion
    text = motion.to_json()
    assert motion.save(tmp_path / "m.json") == tmp_path / "m.json"
    assert (tmp_path / "m.json").read_text() == text
    assert json.loads(text)["format_version"] == MOTION_FORMAT_VERSION
    assert Motion.from_json(text) == motion
    assert Motion.load(tmp_path / "m.json") == motion
    assert Motion.load(str(tmp_path / "m.json")) == motion
    assert Motion.from_json(Motion.zeros(0, fps=30).to_json()) == Motion.zeros(0, fps=30)
    with pytest.raises(MotionError, match="lacks"):
        Motion.from_dict({"fps": 25.0, "expression": []})
    with pytest.raises(MotionError, match="not valid JSON"):
        Motion.from_json("{oops")
    with pytest.raises(MotionError):
        Motion.from_dict({**d, "jaw": d["jaw"][:-1]})


def test_csv_round_trip(motion, tmp_path):
    motion.save(tmp_path / "m.csv")
    lines = (tmp_path / "m.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert len(lines) == 51 and header[0] == "time" and header[1:] == list(COLUMNS)
    assert header[104] == "jaw" and float(lines[4].split(",")[104]) == motion.jaw[3, 0]
    assert float(lines[2].split(",")[0]) == pytest.approx(0.04)
    back = Motion.load(tmp_path / "m.csv")
    assert back == motion  # exact, fps recovered as 25.0
    m = Motion.from_array(motion.to_array()[:7], fps=29.97)
    m.save(tmp_path / "m30.csv")
    assert Motion.load(tmp_path / "m30.csv") == m
    motion[:1].save(tmp_path / "one.csv")
    assert Motion.load(tmp_path / "one.csv") == motion[:1]
    (tmp_path / "bad.csv").write_text("time,jaw\n0,1\n")
    with pytest.raises(MotionError, match="lacks"):
        Motion.load(tmp_path / "bad.csv")
    lines[3] = lines[3].replace(lines[3].split(",")[5], "abc", 1)
    (tmp_path / "text.csv").write_text("\n".join(lines))
    with pytest.raises(MotionError, match="non-numeric"):
        Motion.load(tmp_path / "text.csv")


def test_frames_iterator(motion):
    frames = list(motion.frames())
    assert len(frames) == 50
    f = frames[2]
    assert list(f) == ["index", "time", "expression", "head_pose", "jaw", "eyes"]
    assert f["index"] == 2 and f["time"] == pytest.approx(0.08)
    assert len(f["expression"]) == 100 and len(f["head_pose"]) == 3 and len(f["eyes"]) == 4
    assert f["jaw"] == [float(motion.jaw[2, 0])]
    json.dumps(f)  # JSON-ready
    assert list(Motion.zeros(0).frames()) == []


def test_save_load_by_suffix(tmp_path):
    from unils.errors import FormatError

    rng = np.random.default_rng(0)
    m = Motion.from_array(rng.standard_normal((12, 108)).astype(np.float32))
    for suffix in (".npz", ".npy", ".json", ".csv", ".NPZ", ".CSV"):
        path = m.save(tmp_path / "sub" / f"m{suffix}")  # parent folders are created
        assert path.is_file() and Motion.load(path) == m  # every format is exact
    assert np.array_equal(np.load(tmp_path / "sub" / "m.npy"), m.to_array())
    m30 = Motion.from_array(m.to_array(), fps=30)
    with pytest.raises(FormatError, match="no frame rate"):
        m30.save(tmp_path / "m30.npy")
    assert not (tmp_path / "m30.npy").exists()
    assert Motion.load(m30.save(tmp_path / "m30.json")).fps == 30.0
    with pytest.raises(FileNotFoundError):
        Motion.load(tmp_path / "missing.csv")


def test_old_file_names_are_deprecated_aliases(tmp_path):
    from unils.errors import FormatError
    from unils.metrics import load_motion_file
    from unils.viz import load_motion_file as viz_load_motion_file

    m = Motion.from_array(np.random.default_rng(1).standard_normal((6, 108)).astype(np.float32), fps=30)
    assert viz_load_motion_file is load_motion_file  # one function, two old homes
    with pytest.warns(DeprecationWarning, match=r"Motion\.save"):
        assert m.write(tmp_path / "w.csv") == tmp_path / "w.csv"
    with pytest.warns(DeprecationWarning, match=r"Motion\.load"):
        assert Motion.read(tmp_path / "w.csv") == m
    with pytest.warns(DeprecationWarning, match=r"Motion\.save"):
        m.to_csv(tmp_path / "c.txt")  # CSV whatever the suffix, as before
    with pytest.warns(DeprecationWarning, match=r"Motion\.load"):
        assert Motion.from_csv(tmp_path / "c.txt") == m
    with pytest.warns(DeprecationWarning, match=r"Motion\.load"):
        assert Motion.from_csv(tmp_path / "c.txt", fps=60).fps == 60.0
    with pytest.warns(DeprecationWarning, match=r"Motion\.save"):
        text = m.to_json(tmp_path / "j.json")
    assert (tmp_path / "j.json").read_text() == text
    with pytest.warns(DeprecationWarning, match=r"Motion\.load"):
        assert Motion.from_json(tmp_path / "j.json") == m
    with pytest.warns(DeprecationWarning, match=r"Motion\.load"):
        assert load_motion_file(tmp_path / "j.json") == m
    with pytest.warns(DeprecationWarning), pytest.raises(FormatError, match="expected .npz"):
        Motion.read(tmp_path / "m.txt")
    with pytest.warns(DeprecationWarning), pytest.raises(FormatError, match="written as"):
        m.write(tmp_path / "m.txt")
    with pytest.warns(DeprecationWarning), pytest.raises(FormatError, match="expected .npz"):
        load_motion_file(tmp_path / "m.txt")


def test_motion_like_alias_names_the_accepted_types():
    import unils.motion

    assert unils.motion.MotionLike == "Motion | np.ndarray | Tensor"
