"""FLAME loading (pickle without chumpy/scipy, .pt), LBS against hand computation, rendering.

Everything uses a synthetic FLAME-shaped model built here (random numbers, FLAME 2020 shapes); no
FLAME data is needed or shipped.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from helpers.flame_synth import EYE1, EYE2, synthetic_flame_arrays, write_flame_pickle
from unils import Motion
from unils.errors import FlameError, MotionError
from unils.flame import (
    LIP_INDICES,
    UPPER_INDICES,
    Camera,
    FlameModel,
    batch_rodrigues,
    fit_camera,
    load_flame_arrays,
    pose_from_motion,
    rasterize,
    render_motion,
    render_vertices,
    write_rendered_video,
    write_video,
)
from unils.flame.indices import parse_index_runs


@pytest.fixture(scope="module")
def arrays():
    return synthetic_flame_arrays(seed=0)


@pytest.fixture(scope="module")
def flame(arrays):
    return FlameModel(**{k: arrays[k] for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights",
                                                "kintree_table")}, faces=arrays["f"], dtype=torch.float64)


@pytest.fixture(scope="module")
def rigid():
    """Same geometry without pose correctives, so that rotations are pure skinning."""
    a = synthetic_flame_arrays(seed=0, zero_posedirs=True)
    return a, FlameModel(a["v_template"], a["shapedirs"], a["posedirs"], a["J_regressor"], a["weights"],
                         a["kintree_table"], a["f"], dtype=torch.float64)


# batch_rodrigues adds FLAME's 1e-8 stabiliser to the axis-angle vector: rotations then differ from the exact
# ones by ~1e-8 rad, i.e. ~1e-9 m on a 0.1 m lever.
ROT_ATOL = 1e-9


def rot(axis_angle) -> np.ndarray:
    """Rotation matrix by the matrix exponential of the skew matrix (independent of batch_rodrigues)."""
    x, y, z = axis_angle
    k = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=torch.float64)
    return torch.linalg.matrix_exp(k).numpy()


def motion_with(frames: int = 1, **cols) -> np.ndarray:
    m = np.zeros((frames, 108))
    for name, (col, value) in cols.items():
        m[:, col] = value
    return m


# ------------------------------------------------------------------ index lists
def test_index_lists_match_the_official_counts():
    assert LIP_INDICES.shape == (254,) and len(np.unique(LIP_INDICES)) == 250
    assert UPPER_INDICES.shape == (884,) and len(np.unique(UPPER_INDICES)) == 827
    # Two blocks: 751 entries ending at 3913, then a second block restarting at 16.
    assert UPPER_INDICES[750] == 3913 and UPPER_INDICES[751] == 16 and UPPER_INDICES[0] == 16
    assert LIP_INDICES.max() < 5023 and UPPER_INDICES.max() < 5023
    assert np.sum(LIP_INDICES == 1590) == 2 and np.sum(LIP_INDICES == 2729) == 2
    assert not LIP_INDICES.flags.writeable


def test_parse_index_runs():
    assert parse_index_runs("3, 5-7,\n 5").tolist() == [3, 5, 6, 7, 5]
    with pytest.raises(ValueError):
        parse_index_runs("7-5")


# ------------------------------------------------------------------ loading
@pytest.fixture(scope="module")
def pkl_path(arrays, tmp_path_factory):
    # Protocol 2, as FLAME 2020's Python-2 pickle (written once: it is ~76 MB of latin-1 text).
    return write_flame_pickle(tmp_path_factory.mktemp("flame") / "generic_model.pkl", arrays, protocol=2)


def test_pickle_with_chumpy_and_sparse_loads_without_them(pkl_path, arrays, flame):
    loaded = load_flame_arrays(pkl_path)
    for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f"):
        np.testing.assert_array_equal(loaded[k], arrays[k], err_msg=k)
    assert loaded["J_regressor"].shape == (5, 5023) and loaded["shapedirs"].shape == (5023, 3, 400)
    model = FlameModel(*(loaded[k] for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights",
                                              "kintree_table", "f")), dtype=torch.float64)
    m = motion_with(2, jaw=(103, 0.2), head=(101, 0.1))
    torch.testing.assert_close(model.vertices(m), flame.vertices(m), rtol=0, atol=0)


def test_protocol_0_pickle_uses_the_safe_reconstructor(tmp_path, arrays):
    # Protocols 0/1 build objects through copy_reg._reconstructor; small arrays keep the text pickle quick.
    small = {k: (v[:, :, :4] if k in ("shapedirs", "posedirs") else v) for k, v in arrays.items()}
    loaded = load_flame_arrays(write_flame_pickle(tmp_path / "p0.pkl", small, protocol=0))
    for k in small:
        np.testing.assert_array_equal(loaded[k], small[k], err_msg=k)


def test_real_scipy_sparse_matrices_are_densified(tmp_path, arrays):
    sparse = pytest.importorskip("scipy.sparse")
    small = {k: (v[:, :, :4] if k in ("shapedirs", "posedirs") else v) for k, v in arrays.items()}
    for make in (sparse.csc_matrix, sparse.csr_matrix, sparse.coo_matrix):
        data = dict(small, J_regressor=make(arrays["J_regressor"]))
        path = tmp_path / "m.pkl"
        path.write_bytes(pickle.dumps(data, protocol=4))
        np.testing.assert_array_equal(load_flame_arrays(path)["J_regressor"], arrays["J_regressor"])


def test_pt_round_trip_and_official_style_pt(tmp_path, arrays, flame):
    m = np.random.default_rng(1).normal(0, 0.2, (3, 108))
    flame.save(tmp_path / "flame.pt")
    again = FlameModel.from_file(tmp_path / "flame.pt", dtype=torch.float64)
    torch.testing.assert_close(again.vertices(m), flame.vertices(m), rtol=0, atol=0)
    # A converter may store tensors with posedirs flattened to [36, 3V] and faces as int64.
    official = {k: torch.as_tensor(np.asarray(v, dtype=np.int64 if k in ("f", "kintree_table") else np.float64))
                for k, v in arrays.items()}
    official["posedirs"] = official["posedirs"].reshape(-1, 36).T.contiguous()
    torch.save(official, tmp_path / "flame_2020.pt")
    conv = FlameModel.from_file(tmp_path / "flame_2020.pt", dtype=torch.float64)
    torch.testing.assert_close(conv.vertices(m), flame.vertices(m), rtol=0, atol=1e-12)
    # Kind is told by content, not by suffix.
    os.replace(tmp_path / "flame.pt", tmp_path / "flame.bin")
    assert FlameModel.from_file(tmp_path / "flame.bin").num_vertices == 5023


def test_pickle_naming_other_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("x")

    class Evil:
        def __reduce__(self):
            return (os.remove, (str(marker),))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(FlameError, match="refusing"):
        load_flame_arrays(path)
    assert marker.exists()


def test_loading_errors(tmp_path, arrays):
    with pytest.raises(FileNotFoundError, match="flame.is.tue.mpg.de"):
        load_flame_arrays(tmp_path / "nope.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(FlameError):
        load_flame_arrays(tmp_path / "junk.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(FlameError, match="expected a dict"):
        load_flame_arrays(tmp_path / "list.pkl")
    partial = {k: v for k, v in arrays.items() if k != "posedirs"}
    (tmp_path / "partial.pkl").write_bytes(pickle.dumps(partial))
    with pytest.raises(FlameError, match="posedirs"):
        load_flame_arrays(tmp_path / "partial.pkl")
    a = dict(arrays)
    with pytest.raises(FlameError, match="5 joints"):
        FlameModel(a["v_template"], a["shapedirs"], a["posedirs"], a["J_regressor"][:4], a["weights"][:, :4],
                   a["kintree_table"][:, :4], a["f"])
    with pytest.raises(FlameError, match="posedirs"):
        FlameModel(a["v_template"], a["shapedirs"], a["posedirs"][..., :30], a["J_regressor"], a["weights"],
                   a["kintree_table"], a["f"])
    with pytest.raises(FlameError, match="faces"):
        FlameModel(a["v_template"], a["shapedirs"], a["posedirs"], a["J_regressor"], a["weights"],
                   a["kintree_table"], a["f"].astype(np.int64) + 5023)


# ------------------------------------------------------------------ geometry
def test_rodrigues_matches_matrix_exponential():
    r = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.5], [np.pi / 2, 0, 0], [0, 0, -2.5]], dtype=torch.float64)
    got = batch_rodrigues(r)
    for i in range(len(r)):
        np.testing.assert_allclose(got[i].numpy(), rot(r[i].tolist()), atol=1e-7)
    assert batch_rodrigues(r[None]).shape == (1, 4, 3, 3)


def test_pose_from_motion_layout():
    m = np.arange(108, dtype=np.float64)[None] / 100
    pose = pose_from_motion(m)[0].numpy()
    want = [1.00, 1.01, 1.02, 0, 0, 0, 1.03, 0, 0, 1.04, 1.05, 0, 1.06, 1.07, 0]
    np.testing.assert_allclose(pose, want, atol=1e-6)
    assert pose_from_motion(m, with_head_pose=False)[0, :3].abs().max() == 0
    assert pose_from_motion(Motion.from_array(m.astype(np.float32))).shape == (1, 15)
    with pytest.raises(MotionError):
        pose_from_motion(np.zeros((2, 107)))


def test_zero_pose_is_template_plus_blendshapes(arrays, flame):
    # Equal up to rounding: skinning computes R (v - J) + J with R the identity.
    np.testing.assert_allclose(flame.vertices(np.zeros((1, 108)))[0].numpy(), arrays["v_template"], rtol=0, atol=1e-15)
    expr = np.random.default_rng(2).normal(0, 1, 100)
    m = motion_with(1, e=(slice(0, 100), expr))
    want = arrays["v_template"] + arrays["shapedirs"][:, :, 300:] @ expr
    np.testing.assert_allclose(flame.vertices(m)[0].numpy(), want, atol=1e-12)
    shape = np.random.default_rng(3).normal(0, 1, 300)
    want = arrays["v_template"] + arrays["shapedirs"][:, :, :300] @ shape
    np.testing.assert_allclose(flame.vertices(np.zeros((1, 108)), shape=shape)[0].numpy(), want, atol=1e-12)


def test_jaw_rotation_moves_only_jaw_weighted_vertices(rigid):
    a, model = rigid
    theta = 0.35
    got = model.vertices(motion_with(1, jaw=(103, theta)))[0].numpy()
    v, w = a["v_template"], a["weights"]
    j_jaw = a["J_regressor"][2] @ v
    rotated = (v - j_jaw) @ rot([theta, 0, 0]).T + j_jaw
    still, full, half = w[:, 2] == 0, w[:, 2] == 1, w[:, 2] == 0.5
    assert still.sum() > 100 and full.sum() > 100 and half.sum() > 10
    np.testing.assert_allclose(got[still], v[still], rtol=0, atol=1e-15)
    np.testing.assert_allclose(got[full], rotated[full], atol=ROT_ATOL)
    np.testing.assert_allclose(got[half], 0.5 * rotated[half] + 0.5 * v[half], atol=ROT_ATOL)


def test_eye_rotation_uses_x_y_and_its_own_joint(rigid):
    a, model = rigid
    got = model.vertices(motion_with(1, e1x=(104, 0.2), e1y=(105, -0.1)))[0].numpy()
    v = a["v_template"]
    j3 = a["J_regressor"][3] @ v
    np.testing.assert_allclose(got[EYE1], (v[EYE1] - j3) @ rot([0.2, -0.1, 0]).T + j3, atol=ROT_ATOL)
    others = np.setdiff1d(np.arange(5023), EYE1)
    np.testing.assert_allclose(got[others], v[others], rtol=0, atol=1e-15)
    got2 = model.vertices(motion_with(1, e2x=(106, 0.3), e2y=(107, 0.4)))[0].numpy()
    j4 = a["J_regressor"][4] @ v
    np.testing.assert_allclose(got2[EYE2], (v[EYE2] - j4) @ rot([0.3, 0.4, 0]).T + j4, atol=ROT_ATOL)


def test_pose_correctives_follow_lrotmin(arrays, flame):
    theta = 0.4
    got = flame.vertices(motion_with(1, jaw=(103, theta)))[0].numpy()
    # Vertices without jaw weight only see the corrective of joint 2 (entries 9..17 of the feature).
    feature = (rot([theta, 0, 0]) - np.eye(3)).ravel()
    want = arrays["v_template"] + arrays["posedirs"][:, :, 9:18] @ feature
    still = arrays["weights"][:, 2] == 0
    np.testing.assert_allclose(got[still], want[still], atol=ROT_ATOL)


def test_head_pose_is_a_rigid_rotation_about_the_root(arrays, flame):
    r = [0.1, -0.3, 0.2]
    m = motion_with(1, hx=(100, r[0]), hy=(101, r[1]), hz=(102, r[2]))
    v = arrays["v_template"]
    j0 = arrays["J_regressor"][0] @ v
    np.testing.assert_allclose(flame.vertices(m)[0].numpy(), (v - j0) @ rot(r).T + j0, atol=ROT_ATOL)
    np.testing.assert_allclose(flame.vertices(m, with_head_pose=False)[0].numpy(), v, rtol=0, atol=1e-15)


def test_batched_equals_per_item_and_chunking(flame):
    m = np.random.default_rng(4).normal(0, 0.3, (2, 3, 108))
    batched = flame.vertices(m)
    assert batched.shape == (2, 3, 5023, 3)
    for b in range(2):
        for t in range(3):
            torch.testing.assert_close(batched[b, t], flame.vertices(m[b, t : t + 1])[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(flame.vertices(m, chunk_size=2), batched, rtol=0, atol=1e-15)
    motion = Motion.from_array(m[0].astype(np.float32))
    assert flame.vertices(motion).shape == (3, 5023, 3)
    assert flame.vertices(np.zeros((0, 108))).shape == (0, 5023, 3)


def test_vertices_are_differentiable(flame):
    m = torch.zeros(2, 108, dtype=torch.float64, requires_grad=True)
    flame.vertices(m).sum().backward()
    assert m.grad is not None and m.grad[:, :100].abs().sum() > 0


def test_float32_close_to_float64(arrays, flame):
    f32 = FlameModel(arrays["v_template"], arrays["shapedirs"], arrays["posedirs"], arrays["J_regressor"],
                     arrays["weights"], arrays["kintree_table"], arrays["f"])
    m = np.random.default_rng(5).normal(0, 0.3, (2, 108))
    np.testing.assert_allclose(f32.vertices(m).numpy(), flame.vertices(m).numpy(), atol=2e-6)


# ------------------------------------------------------------------ rendering
def test_rasterize_depth_order_and_coverage():
    # Two overlapping triangles covering a 4x4 image; the second is nearer (larger depth).
    screen = torch.tensor([[0, 0, 0], [4, 0, 0], [0, 4, 0], [0, 0, 1], [4, 0, 1], [4, 4, 1]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    fid, bary = rasterize(screen, faces, 4, 4)
    # Pixel centre (col + .5, row + .5): the near triangle covers col >= row, the far one col + row <= 3.
    rows, cols = np.indices((4, 4))
    want = np.where(cols >= rows, 1, np.where(cols + rows <= 3, 0, -1))
    np.testing.assert_array_equal(fid.numpy(), want)
    np.testing.assert_allclose(bary.sum(-1).numpy()[want >= 0], 1.0, atol=1e-12)
    empty, _ = rasterize(screen, faces[:0], 4, 4)
    assert (empty == -1).all()


def test_render_flat_lambert_value():
    # A square facing the camera, lit head-on: colour * (ambient + (1 - ambient) * 1).
    v = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    cam = Camera((0.0, 0.0), 8.0, 32, 32)
    img = render_vertices(v, f, camera=cam, shading="flat", color=(0.5, 0.5, 0.5), light=(0, 0, 1), ambient=0.2)
    assert img.shape == (1, 32, 32, 3) and img.dtype == np.uint8
    assert (img[0, 16, 16] == 128).all()  # 0.5 * 1.0 * 255, rounded
    assert (img[0, 0, 0] == 255).all()  # background
    assert (img[0, 9:23, 9:23] == 128).all()
    # Lit at 60 degrees: cos = 0.5 -> 0.5 * (0.2 + 0.8 * 0.5) = 0.3.
    tilted = render_vertices(v, f, camera=cam, shading="smooth", color=(0.5, 0.5, 0.5),
                             light=(0, np.sqrt(3), 1), ambient=0.2)
    assert abs(int(tilted[0, 16, 16, 0]) - round(0.3 * 255)) <= 1
    aa = render_vertices(v, f, camera=cam, supersample=2)
    assert aa.shape == (1, 32, 32, 3)
    with pytest.raises(ValueError):
        render_vertices(v, f, camera=cam, shading="phong")


def test_render_motion_frames(flame):
    m = motion_with(3, jaw=(103, 0.2))
    m[1, 100:103] = [0.1, 0.2, 0.0]
    frames = render_motion(m, flame, 64)
    assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.uint8
    bg = (frames == 255).all(-1)
    assert 0.2 < 1 - bg[0].mean() < 0.9  # the face fills part of the image
    assert not np.array_equal(frames[0], frames[1])  # head pose changes the picture
    cam = fit_camera(flame.v_template, 64)
    assert cam.width == 64 and cam.scale > 0


def test_write_rendered_video(tmp_path):
    iio = pytest.importorskip("imageio_ffmpeg")
    frames = np.zeros((5, 32, 48, 3), np.uint8)
    frames[:, :, :24] = 200
    write_rendered_video(frames, tmp_path / "out.mp4", fps=25)
    reader = iio.read_frames(str(tmp_path / "out.mp4"))
    meta = next(reader)
    assert tuple(meta["size"]) == (48, 32)
    assert sum(1 for _ in reader) == 5
    with pytest.warns(DeprecationWarning, match="write_rendered_video"):
        write_video(frames, tmp_path / "old.mp4", fps=25)  # the old name still writes the same video
    assert sum(1 for _ in iio.read_frames(str(tmp_path / "old.mp4"))) - 1 == 5


def test_frame_renderer_panels_activity_and_fps(flame):
    from unils.flame import FlameFrameRenderer

    me = Motion.from_array(motion_with(4, jaw=(103, 0.2)).astype(np.float32))
    you = Motion.from_array(motion_with(4, head=(101, 0.3)).astype(np.float32))
    r = FlameFrameRenderer(flame, supersample=1)
    speaking = [np.array([1, 0, 1, 0], bool), None]
    frames = list(r([me, you], size=47, activity=speaking, labels=["me", "you"]))
    assert len(frames) == 4 and frames[0].shape == (48, 96, 3) and frames[0].dtype == np.uint8
    green = np.array([46, 160, 67], np.uint8)
    assert (frames[0][24, 0] == green).all() and not (frames[1][24, 0] == green).all()
    assert not (frames[0][24, 48] == green).all()  # unknown activity: no border
    assert len(list(r(me, size=32, fps=50))) == 8  # output frame k shows time k / fps
    np.testing.assert_array_equal(r.still([me, you], 2, size=47, activity=speaking, labels=["me", "you"]), frames[2])
    with pytest.raises(MotionError):
        list(r([me, you[:3]], size=32))


def test_frame_renderer_plugs_into_the_preview(tmp_path, flame):
    viz = pytest.importorskip("unils.viz")
    pytest.importorskip("PIL")
    from unils.flame import FlameFrameRenderer

    me = Motion.from_array(motion_with(3, jaw=(103, 0.2)).astype(np.float32))
    result = viz.render_preview(me, tmp_path / "still.png", renderer=FlameFrameRenderer(flame, supersample=1), size=32)
    assert (tmp_path / "still.png").is_file() and result is not None


def test_cli_preview_with_flame(tmp_path, arrays):
    pytest.importorskip("PIL")
    pytest.importorskip("imageio_ffmpeg")
    from unils.cli import main

    small = FlameModel(arrays["v_template"], arrays["shapedirs"], arrays["posedirs"], arrays["J_regressor"],
                       arrays["weights"], arrays["kintree_table"], arrays["f"])  # float32: a smaller file
    small.save(tmp_path / "flame.pt")
    Motion.from_array(motion_with(4, jaw=(103, 0.2)).astype(np.float32)).save(tmp_path / "me.npz")
    for out in ("still.png", "clip.mp4"):
        code = main(["preview", str(tmp_path / "me.npz"), "-o", str(tmp_path / out), "--flame",
                     str(tmp_path / "flame.pt"), "--size", "32"])
        assert code == 0 and (tmp_path / out).stat().st_size > 0
    assert main(["preview", str(tmp_path / "me.npz"), "-o", str(tmp_path / "x.png"), "--flame",
                 str(tmp_path / "missing.pkl")]) == 2
