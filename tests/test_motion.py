import numpy as np
import pytest
import torch

from unils import Motion, MotionError
from unils.motion import COLUMNS, PARTS


@pytest.fixture
def motion():
    rng = np.random.default_rng(0)
    return Motion.from_array(rng.normal(size=(50, 108)).astype(np.float32))


def test_layout_and_round_trip(motion):
    arr = motion.to_array()
    assert arr.shape == (50, 108) and arr.dtype == np.float32
    assert np.array_equal(Motion.from_array(arr).to_array(), arr)
    assert np.array_equal(motion.jaw[:, 0], arr[:, 103])
    assert np.array_equal(motion.head_pose, arr[:, 100:103])
    assert np.array_equal(motion.eyes, arr[:, 104:108])
    assert [(s.start, s.stop) for s in PARTS.values()] == [(0, 100), (100, 103), (103, 104), (104, 108)]
    assert len(COLUMNS) == 108 and COLUMNS[103] == "jaw"
    assert Motion.from_array(torch.from_numpy(arr)) == motion


def test_time_properties_and_slicing(motion):
    assert len(motion) == motion.num_frames == 50
    assert motion.duration == pytest.approx(2.0)
    assert motion.times[25] == pytest.approx(1.0)
    assert len(motion[10:20]) == 10 and motion[10:20].to_array()[0].tolist() == motion.to_array()[10].tolist()
    assert len(motion[3]) == 1 and len(motion[-1]) == 1
    assert np.array_equal(motion[-1].to_array(), motion.to_array()[-1:])
    assert len(motion[np.array([1, 5, 7])]) == 3
    assert len(motion[motion.jaw[:, 0] > 0]) == int((motion.jaw[:, 0] > 0).sum())
    assert motion.slice_time(1.0, 1.4) == motion[25:35]
    assert len(motion.slice_time(1.0)) == 25
    with pytest.raises(IndexError):
        motion[50]


def test_concatenate(motion):
    both = Motion.concatenate([motion[:20], motion[20:]])
    assert both == motion
    with pytest.raises(MotionError, match="different fps"):
        Motion.concatenate([motion, Motion.zeros(3, fps=30)])


def test_files_round_trip(motion, tmp_path):
    motion.save(tmp_path / "m.npz")
    assert Motion.load(tmp_path / "m.npz") == motion
    motion.to_csv(tmp_path / "m.csv")
    back = Motion.from_csv(tmp_path / "m.csv")
    assert back.fps == 25.0 and back.allclose(motion, atol=0)
    text = motion.to_json(tmp_path / "m.json")
    assert Motion.from_json(text) == motion
    assert Motion.from_json(tmp_path / "m.json") == motion
    frames = list(motion.frames())
    assert len(frames) == 50 and frames[2]["time"] == pytest.approx(0.08) and len(frames[2]["expression"]) == 100
    with pytest.raises(FileNotFoundError):
        Motion.load(tmp_path / "missing.npz")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Motion.from_array(np.zeros((10, 107))), r"\[frames, 108\]"),
        (lambda: Motion.from_array(np.full((3, 108), np.nan)), "NaN"),
        (lambda: Motion(np.zeros((3, 100)), np.zeros((3, 3)), np.zeros((2, 1)), np.zeros((3, 4))), "same number"),
        (lambda: Motion.zeros(3, fps=0), "fps"),
        (lambda: Motion(np.zeros((3, 99)), np.zeros((3, 3)), np.zeros((3, 1)), np.zeros((3, 4))), "expression"),
    ],
)
def test_validation(make, message):
    with pytest.raises(MotionError, match=message) as info:
        make()
    assert isinstance(info.value, ValueError)


def test_equality_helpers(motion):
    other = Motion.from_array(motion.to_array() + 1e-7)
    assert other != motion and other.allclose(motion, atol=1e-6)
    assert not motion.allclose(motion[:10])
    with pytest.raises(TypeError):
        hash(motion)
