"""Metrics against hand-computed values; speaking/listening split; folders, files, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from helpers.flame_synth import synthetic_flame_arrays
from unils import Motion
from unils.cli import main
from unils.errors import EvaluationError, MotionError
from unils.flame import LIP_INDICES, UPPER_INDICES, FlameModel
from unils.metrics import (
    EvaluationResult,
    coefficient_metrics,
    diversity,
    dynamics_deviation,
    evaluate_folder,
    evaluate_sequence,
    face_dynamics_deviation,
    jaw_dynamics_deviation,
    lip_vertex_error,
    load_ground_truth,
    mean_head_distance,
    pose_dynamics_deviation,
    save_ground_truth,
)

SQRT_1_3 = math.sqrt(1 / 3)  # unbiased std of [0, 1, 0, 1]


@pytest.fixture(scope="module")
def flame():
    a = synthetic_flame_arrays(seed=1)
    return FlameModel(
        a["v_template"],
        a["shapedirs"],
        a["posedirs"],
        a["J_regressor"],
        a["weights"],
        a["kintree_table"],
        a["f"],
        dtype=torch.float64,
    )


def rand_motion(frames: int, seed: int, scale: float = 0.3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, scale, (frames, 108))


# ------------------------------------------------------------------ mesh metrics by hand
def test_constant_offset_gives_offset_for_lve_and_mhd():
    gt = np.random.default_rng(0).normal(size=(4, 5023, 3))
    pred = gt + np.array([3.0, 0.0, 4.0])  # 5 mm everywhere
    assert lip_vertex_error(pred, gt) == pytest.approx(5.0)
    assert mean_head_distance(pred, gt) == pytest.approx(5.0)
    assert face_dynamics_deviation(pred, gt) == pytest.approx(0.0, abs=1e-9)  # constant offsets keep stds


def test_lve_is_root_of_mean_of_per_frame_max():
    gt = np.zeros((4, 5023, 3))
    pred = gt.copy()
    lip = LIP_INDICES[10]
    pred[0, lip, 0] = 2.0  # frame 0: max squared lip distance 4
    pred[1, lip, 1] = 1.0  # frame 1: 1 (a second, smaller lip error the max ignores)
    pred[1, LIP_INDICES[20], 1] = 0.5
    pred[2, 0, 2] = 9.0  # not a lip vertex: no effect on LVE
    assert lip_vertex_error(pred, gt) == pytest.approx(math.sqrt((4 + 1 + 0 + 0) / 4))
    want_mhd = math.sqrt((4 + 1 + 0.25 + 81) / (4 * 5023))
    assert mean_head_distance(pred, gt) == pytest.approx(want_mhd)
    # Batched [B, T, V, 3]: mean over batch and frames.
    assert lip_vertex_error(np.stack([pred, gt]), np.stack([gt, gt])) == pytest.approx(math.sqrt(5 / 8))


def test_fdd_uses_coordinate_sums_unbiased_std_and_duplicates():
    gt = np.zeros((4, 5023, 3))
    pred = gt.copy()
    once = [v for v in np.unique(UPPER_INDICES) if np.sum(UPPER_INDICES == v) == 1][0]
    twice = [v for v in np.unique(UPPER_INDICES) if np.sum(UPPER_INDICES == v) == 2][0]
    pred[[1, 3], once, 0] = 1.0  # coordinate sum 0, 1, 0, 1 -> std sqrt(1/3)
    assert face_dynamics_deviation(pred, gt) == pytest.approx(100 * SQRT_1_3 / 884)
    pred2 = gt.copy()
    pred2[[1, 3], twice, 1] = 0.5
    pred2[[1, 3], twice, 2] = 0.5  # x + y + z: 0, 1, 0, 1 again; counted twice
    assert face_dynamics_deviation(pred2, gt) == pytest.approx(2 * 100 * SQRT_1_3 / 884)
    # Opposite coordinates cancel in the sum (the official definition, not a vector norm).
    pred3 = gt.copy()
    pred3[[1, 3], once] = [1.0, -1.0, 0.0]
    assert face_dynamics_deviation(pred3, gt) == pytest.approx(0.0)
    assert math.isnan(face_dynamics_deviation(pred[:1], gt[:1]))
    assert math.isnan(lip_vertex_error(pred[:0], gt[:0]))


def test_mesh_metric_input_checks():
    with pytest.raises(MotionError):
        lip_vertex_error(np.zeros((2, 5023, 3)), np.zeros((3, 5023, 3)))
    with pytest.raises(MotionError):
        mean_head_distance(np.zeros((2, 5023)), np.zeros((2, 5023)))
    t = torch.zeros(2, 5023, 3)
    assert lip_vertex_error(t + 1, t) == pytest.approx(math.sqrt(3))


# ------------------------------------------------------------------ coefficient metrics by hand
def test_pdd_and_jdd_by_hand():
    gt = np.zeros((4, 108))
    pred = gt.copy()
    pred[:, 100] = [0, 1, 0, 1]
    pred[:, 103] = [0, 2, 4, 6]  # unbiased var (9 + 1 + 1 + 9) / 3
    assert pose_dynamics_deviation(pred, gt) == pytest.approx(100 * SQRT_1_3 / 3)
    assert jaw_dynamics_deviation(pred, gt) == pytest.approx(100 * math.sqrt(20 / 3))
    # |std_pred - std_gt|: a GT with the same spread scores zero whatever its values.
    assert pose_dynamics_deviation(pred, pred[::-1] + 7) == pytest.approx(0.0)
    assert dynamics_deviation(pred, gt, [100, 103]) == pytest.approx(100 * (SQRT_1_3 + math.sqrt(20 / 3)) / 2)
    assert math.isnan(pose_dynamics_deviation(pred[:1], gt[:1]))
    m = Motion.from_array(pred.astype(np.float32))
    assert jaw_dynamics_deviation(m, Motion.from_array(gt)) == pytest.approx(100 * math.sqrt(20 / 3))


def test_coefficient_metrics_by_hand():
    gt = np.zeros((2, 108))
    pred = gt.copy()
    pred[:, :100] = 1.0  # expression off by 1 everywhere
    pred[0, 103], pred[1, 103] = 1.0, 3.0  # jaw errors 1 and 3
    out = coefficient_metrics(pred, gt)
    assert out["expression_L1"] == 1.0 and out["expression_L2"] == 1.0
    assert out["jaw_L1"] == 2.0 and out["jaw_L2"] == 5.0
    assert out["head_pose_L1"] == 0.0 and out["eyes_L2"] == 0.0
    assert out["jaw_var"] == 2.0 and out["jaw_var_gt"] == 0.0  # unbiased var of [1, 3]
    assert out["expression_var"] == 0.0
    one = coefficient_metrics(pred[:1], gt[:1])
    assert one["jaw_L1"] == 1.0 and math.isnan(one["jaw_var"])
    with pytest.raises(MotionError):
        coefficient_metrics(np.zeros((2, 100)), np.zeros((2, 100)))


def test_diversity_by_hand():
    a = np.zeros((3, 108))
    b = np.zeros((3, 108))
    b[:, 0] = 3.0
    c = np.zeros((5, 108))  # longer: only the 3 common frames count
    c[:, 1] = 4.0
    c[3:, 1] = 100.0
    assert diversity([a, b, c], slice(0, 100)) == pytest.approx((3 + 4 + 5) / 3)
    assert diversity([a, b, c], slice(100, 103)) == 0.0
    assert math.isnan(diversity([a]))


# ------------------------------------------------------------------ one sequence
def test_evaluate_sequence_without_flame_or_mask():
    gt, pred = rand_motion(6, 0), rand_motion(6, 1)
    out = evaluate_sequence(pred, gt)
    assert not any(k.startswith(("S_", "L_")) for k in out)
    assert "LVE" not in out
    assert out["PDD"] == pytest.approx(pose_dynamics_deviation(pred, gt))
    assert out["expression_L1"] == pytest.approx(np.abs(pred[:, :100] - gt[:, :100]).mean())


def test_speaking_listening_split_matches_masked_frames(flame):
    gt, pred = rand_motion(7, 2), rand_motion(7, 3)
    mask = np.array([1, 1, 0, 0, 1, 0, 1])  # non-contiguous on purpose
    out = evaluate_sequence(pred, gt, speech_mask=mask, flame=flame, chunk_size=3)
    s, l = mask.astype(bool), ~mask.astype(bool)
    vp = flame.vertices(pred, with_head_pose=False).numpy() * 1000
    vg = flame.vertices(gt, with_head_pose=False).numpy() * 1000
    assert out["S_LVE"] == pytest.approx(lip_vertex_error(vp[s], vg[s]), rel=1e-9)
    assert out["S_MHD"] == pytest.approx(mean_head_distance(vp[s], vg[s]), rel=1e-9)
    assert out["S_FDD"] == pytest.approx(face_dynamics_deviation(vp[s], vg[s]), rel=1e-9)
    assert out["L_FDD"] == pytest.approx(face_dynamics_deviation(vp[l], vg[l]), rel=1e-9)
    assert out["S_PDD"] == pytest.approx(pose_dynamics_deviation(pred[s], gt[s]))
    assert out["L_JDD"] == pytest.approx(jaw_dynamics_deviation(pred[l], gt[l]))
    assert out["LVE"] == pytest.approx(lip_vertex_error(vp, vg), rel=1e-9)
    assert out["MHD"] == pytest.approx(mean_head_distance(vp, vg), rel=1e-9)
    assert out["FDD"] == pytest.approx(face_dynamics_deviation(vp, vg), rel=1e-9)
    assert out["S_LVE"] > 0 and out["L_FDD"] > 0


def test_mesh_metrics_ignore_head_pose(flame):
    gt = rand_motion(4, 4)
    pred = gt.copy()
    pred[:, 100:103] += 0.5
    out = evaluate_sequence(pred, gt, flame=flame)
    assert out["LVE"] == pytest.approx(0.0, abs=1e-9) and out["MHD"] == pytest.approx(0.0, abs=1e-9)
    assert out["head_pose_L1"] == pytest.approx(0.5)


def test_missing_parts_are_nan(flame):
    gt, pred = rand_motion(5, 5), rand_motion(5, 6)
    out = evaluate_sequence(pred, gt, speech_mask=[0, 0, 1, 0, 0], flame=flame)  # one speaking frame
    for k in ("S_LVE", "S_MHD", "S_FDD", "S_PDD", "S_JDD"):
        assert math.isnan(out[k]), k
    for k in ("L_FDD", "L_PDD", "L_JDD"):
        assert math.isfinite(out[k]), k
    out = evaluate_sequence(pred, gt, speech_mask=np.ones(5, bool))  # never listening
    assert math.isnan(out["L_PDD"]) and math.isfinite(out["S_PDD"])
    with pytest.raises(EvaluationError):
        evaluate_sequence(pred, gt, speech_mask=np.ones(4))


# ------------------------------------------------------------------ files and folders
def test_ground_truth_round_trip(tmp_path):
    me, you = Motion.from_array(rand_motion(6, 7)), Motion.from_array(rand_motion(6, 8))
    mask, pmask = np.array([1, 1, 0, 0, 0, 1]), np.array([0, 0, 1, 1, 0, 0])
    save_ground_truth(tmp_path / "a.npz", me, you, mask, pmask)
    gt = load_ground_truth(tmp_path / "a.npz")
    assert gt.motion == me and gt.partner == you
    np.testing.assert_array_equal(gt.speech_mask, mask.astype(bool))
    np.testing.assert_array_equal(gt.partner_speech_mask, pmask.astype(bool))
    assert Motion.load(tmp_path / "a.npz") == me  # a plain Motion reader sees the scored person
    save_ground_truth(tmp_path / "b.npz", me, speech_mask=mask)
    gt = load_ground_truth(tmp_path / "b.npz")
    assert gt.partner is None and gt.partner_speech_mask is None and gt.speech_mask.sum() == 3
    me.save(tmp_path / "c.npz")
    assert load_ground_truth(tmp_path / "c.npz").speech_mask is None
    with pytest.raises(EvaluationError):
        save_ground_truth(tmp_path / "d.npz", me, speech_mask=np.ones(5))
    with pytest.raises(EvaluationError):
        save_ground_truth(tmp_path / "d.npz", me, partner=Motion.from_array(rand_motion(5, 9)))


def make_folders(tmp_path, n=3, frames=8):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    for i in range(n):
        gt = Motion.from_array(rand_motion(frames, 10 + i))
        mask = np.zeros(frames)
        mask[: 4 + i] = 1
        save_ground_truth(gt_dir / f"clip{i}.npz", gt, Motion.from_array(rand_motion(frames, 20 + i)), mask)
        pred = Motion.from_array(rand_motion(frames + (1 if i == 1 else 0), 30 + i))  # one a frame longer
        if i == 2:
            pred.save(pred_dir / f"clip{i}.json")
        else:
            pred.save(pred_dir / f"clip{i}.npz")
    return pred_dir, gt_dir


def test_evaluate_folder_summary_is_nanmean(tmp_path, flame):
    pred_dir, gt_dir = make_folders(tmp_path)
    Motion.from_array(rand_motion(8, 99)).save(pred_dir / "extra.npz")
    Motion.from_array(rand_motion(8, 98)).save(gt_dir / "lonely.npz")
    res = evaluate_folder(pred_dir, gt_dir, flame=flame)
    assert isinstance(res, EvaluationResult) and res.flame
    assert sorted(res.per_file) == ["clip0", "clip1", "clip2"]
    assert res.missing == ["lonely"] and res.unmatched == ["extra"]
    assert res.frames["clip1"] == 8
    for key in ("S_LVE", "L_FDD", "MHD", "PDD", "expression_L1"):
        vals = [m[key] for m in res.per_file.values() if key in m and math.isfinite(m[key])]
        assert res.summary[key] == pytest.approx(np.mean(vals)), key
        assert res.counts[key] == len(vals)
    # 'lonely' has no mask: it is not scored at all (no prediction), so S_/L_ counts are 3.
    assert res.counts["S_PDD"] == 3
    # clip0 is checked against a direct computation.
    gt0 = load_ground_truth(gt_dir / "clip0.npz")
    direct = evaluate_sequence(Motion.load(pred_dir / "clip0.npz"), gt0.motion, gt0.speech_mask, flame)
    assert res.per_file["clip0"] == pytest.approx(direct)
    assert "expression_diversity" in res.dataset and res.dataset["expression_diversity"] > 0
    text = res.table()
    assert "S_LVE" in text and "mm" in text and "expression_diversity" in text


def test_evaluate_folder_errors(tmp_path):
    pred_dir, gt_dir = make_folders(tmp_path, n=1)
    with pytest.raises(EvaluationError, match="tolerance"):
        evaluate_folder(pred_dir, gt_dir, length_tolerance=-1)
    other = tmp_path / "other"
    other.mkdir()
    Motion.from_array(rand_motion(4, 1)).save(other / "zzz.npz")
    with pytest.raises(EvaluationError, match="matched by name"):
        evaluate_folder(other, gt_dir)
    with pytest.raises(FileNotFoundError):
        evaluate_folder(tmp_path / "nope", gt_dir)
    slow = tmp_path / "slow"
    slow.mkdir()
    Motion.from_array(rand_motion(8, 1), fps=30).save(slow / "clip0.npz")
    with pytest.raises(EvaluationError, match="fps"):
        evaluate_folder(slow, gt_dir)


def test_json_has_null_for_nan(tmp_path):
    pred_dir, gt_dir = make_folders(tmp_path, n=2)
    res = evaluate_folder(pred_dir, gt_dir)
    res.per_file["clip0"]["S_PDD"] = math.nan
    res.save_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["per_file"]["clip0"]["S_PDD"] is None
    assert data["flame"] is False and "LVE" not in data["summary"]
    assert set(data["summary"]) >= {"S_PDD", "L_JDD", "PDD", "JDD", "jaw_L2"}


def test_cli_evaluate(tmp_path, capsys, flame, monkeypatch):
    monkeypatch.delenv("UNILS_FLAME", raising=False)
    pred_dir, gt_dir = make_folders(tmp_path, n=2)
    flame.save(tmp_path / "flame.pt")
    out = tmp_path / "scores.json"
    assert (
        main(
            [
                "evaluate",
                str(pred_dir),
                str(gt_dir),
                "--flame",
                str(tmp_path / "flame.pt"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "S_LVE" in printed and "L_FDD" in printed and "2 sequence" in printed
    data = json.loads(out.read_text())
    assert data["flame"] is True and data["summary"]["S_LVE"] > 0
    assert main(["evaluate", str(pred_dir), str(tmp_path)]) == 2
    assert "no prediction" in capsys.readouterr().err


def test_evaluate_shards_over_torchrun_ranks_and_equals_one_process(tmp_path, flame):
    """`torchrun -m unils evaluate`: files shared among 2 gloo ranks; rank 0 reports the same scores."""
    import os
    import socket
    import subprocess
    import sys

    pred_dir, gt_dir = make_folders(tmp_path, n=5)
    flame.save(tmp_path / "flame.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # each rank's threads: the same float sums
    args = [
        "-m",
        "unils",
        "-q",
        "evaluate",
        str(pred_dir),
        str(gt_dir),
        "--flame",
        str(tmp_path / "flame.pt"),
    ]
    single = tmp_path / "single.json"
    one = subprocess.run(
        [sys.executable, *args, "--json", str(single)], env=env, capture_output=True, timeout=300
    )
    assert one.returncode == 0, one.stderr[-3000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sharded = tmp_path / "sharded.json"
    dist = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd = [sys.executable, *dist, "--master_port", str(port), *args, "--json", str(sharded)]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("5 sequence(s) scored") == 1  # rank 0 alone prints
    assert json.loads(sharded.read_text()) == json.loads(single.read_text())
