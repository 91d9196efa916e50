"""Dataset-scale generation (unils.batch): manifests, sharding over torchrun ranks, resuming, failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from unils import Motion
from unils.batch import (
    BatchDefaults,
    assign_groups,
    balanced_assignment,
    check_files,
    make_groups,
    read_manifest,
    run_rows,
)
from unils.errors import ManifestError, ManifestFilesNotFoundError

# The command under test, in one place.
MODULE = ["-m", "unils"]


def batch_argv(manifest: Path, out_dir: Path, *extra: str) -> list[str]:
    return ["-q", "generate", "--batch", str(manifest), "--out-dir", str(out_dir), *extra]


def cli_main(argv: list[str]) -> int:
    from unils.cli import main

    return main(argv)


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
SECONDS = [1.3, 0.6, 2.2, 0.9, 1.7, 0.5, 1.1]


def _wav(path: Path, seconds: float, seed: int, rate: int = 16000) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, (rng.standard_normal(int(rate * seconds)) * 0.1).astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Seven clips (one at 22.05 kHz, in a subfolder) and a manifest that uses every kind of row."""
    root = tmp_path_factory.mktemp("batch")
    (root / "sub").mkdir()
    for i, s in enumerate(SECONDS):
        _wav(root / f"c{i}.wav", s, i)
    _wav(root / "sub" / "other.wav", 1.0, 99, rate=22050)
    Motion.from_array(np.random.default_rng(5).standard_normal((110, 108)).astype(np.float32) * 0.1).save(
        root / "style.npz")
    (root / "m.csv").write_text(
        "audio,partner,seed,both,temperature,style,output\n"
        "c0.wav,,1,,,,\n"
        "c1.wav,c2.wav,2,,,,\n"
        "c2.wav,,3,,,style.npz,\n"
        "c3.wav,c4.wav,4,true,,,pair\n"
        "c4.wav,,5,,0.8,,\n"
        "c5.wav,,6,,,,\n"
        "sub/other.wav,,7,,,,\n"
        "c6.wav,,8,,,,named.json\n"
    )
    return root


def _outputs(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): Motion.load(p).to_array() for p in sorted(folder.rglob("*"))
            if p.suffix in (".npz", ".json") and not p.name.startswith((".", "unils_batch"))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """One process, as a subprocess under the same thread settings as the torchrun workers."""
    out = tmp_path_factory.mktemp("ref")
    proc = subprocess.run([sys.executable, *MODULE, *batch_argv(data / "m.csv", out, "--batch-size", "2")],
                          check=False, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_manifest_rows_names_and_defaults(data, tmp_path):
    rows = read_manifest(data / "m.csv", tmp_path, BatchDefaults(suffix=".npz", seed=9, cfg_scale=2.0))
    assert [r.output.relative_to(tmp_path).as_posix() for r in rows] == [
        "c0.npz", "c1.npz", "c2.npz", "pair.npz", "c4.npz", "c5.npz", "sub/other.npz", "named.json"]
    pair = rows[3]
    assert pair.both and pair.partner_output == tmp_path / "pair_partner.npz"
    assert [r.seed for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert rows[4].temperature == 0.8 and rows[0].temperature is None and rows[0].cfg_scale == 2.0
    assert rows[2].style == data / "style.npz" and rows[1].partner == data / "c2.wav"
    check_files(rows)  # everything exists
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"audio": str(data / "c0.wav"), "seed": 3, "smooth": False}) + "\n\n"
        + json.dumps({"audio": str(data / "c1.wav"), "output": "x", "temperature": None}) + "\n")
    j = read_manifest(tmp_path / "m.jsonl", tmp_path / "o", BatchDefaults(suffix=".csv"))
    assert [r.output.name for r in j] == ["c0.csv", "x.csv"] and j[0].seed == 3 and not j[0].smooth and j[1].smooth


@pytest.mark.parametrize(
    "text, match",
    [
        ("seed\n1\n", "no 'audio' column"),
        ("audio,speed\nc0.wav,2\n", "unknown column"),
        ("audio\nc0.wav\nc0.wav\n", "also written by line 2"),
        ("audio,output\nc0.wav,a\nc1.wav,a.npz\n", "also written by line 2"),
        ("audio,both,partner,output\nc0.wav,1,c1.wav,x\nc2.wav,,,x_partner\n", "also written by line 2"),
        ("audio,seed,temperature,both\nc0.wav,abc,,\nc1.wav,,hot,\nc2.wav,,,yes\n", "3 problem"),
        ("audio,output\nc0.wav,a.mp4\n", "written as .npz"),
        ("audio\n", "no rows"),
    ],
)
def test_bad_manifest_is_a_typed_error(data, tmp_path, text, match):
    path = data / f"bad_{abs(hash(text))}.csv"
    path.write_text(text)
    try:
        with pytest.raises(ManifestError, match=match) as info:
            read_manifest(path, tmp_path)
    finally:
        path.unlink()
    assert isinstance(info.value, ValueError)


def test_bad_jsonl_and_missing_files_listed_at_once(data, tmp_path, capsys):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"audio": "a.wav"}\n{"audio": "b.wav", "tempo": 1}\n')
    with pytest.raises(ManifestError, match="line 2: unknown column"):
        read_manifest(bad, tmp_path)
    bad.write_text('{"audio": "a.wav"\n')
    with pytest.raises(ManifestError, match="line 1: not JSON"):
        read_manifest(bad, tmp_path)
    missing = tmp_path / "m.csv"
    missing.write_text(f"audio,partner,style\n{data / 'c0.wav'},gone1.wav,\nnope.wav,,gone.npz\n")
    with pytest.raises(ManifestFilesNotFoundError, match="3 input file") as info:
        check_files(read_manifest(missing, tmp_path))
    assert isinstance(info.value, FileNotFoundError)
    assert [(line, col) for line, col, _ in info.value.missing] == [(2, "partner"), (3, "audio"), (3, "style")]
    # The command refuses before any work: exit status 2, nothing written.
    assert cli_main(batch_argv(missing, tmp_path / "out")) == 2
    assert "gone1.wav" in capsys.readouterr().err and not (tmp_path / "out").exists()
    with pytest.raises(ManifestFilesNotFoundError, match="no manifest"):
        read_manifest(tmp_path / "absent.csv", tmp_path)


def test_sharding_is_stable_balanced_and_keeps_batches_whole(data, tmp_path):
    assert balanced_assignment([5.0, 1.0, 4.0, 2.0], 2) == [[0, 1], [2, 3]]
    costs = np.random.default_rng(0).uniform(1, 100, 200)
    shares = balanced_assignment(costs, 3)
    assert sorted(i for s in shares for i in s) == list(range(200))
    loads = [costs[s].sum() for s in shares]
    assert max(loads) - min(loads) <= costs.max()  # LPT bound: within one item
    assert shares == balanced_assignment(list(costs), 3)
    rows = read_manifest(data / "m.csv", tmp_path)
    frames = {r.index: 10 * (r.index % 4) + 5 for r in rows}
    groups = make_groups(rows, frames, 2)
    # Rows that share options, by length; `both` rows and other temperatures in their own calls.
    assert [g.rows for g in groups] == [(0, 1), (5, 2), (6, 7), (3,), (4,)]
    for world in (1, 2, 3):
        assigned = assign_groups(groups, world)
        assert sorted(g.index for share in assigned for g in share) == [g.index for g in groups]


def test_torchrun_two_processes_equal_one_process_and_rerun_skips(data, reference, tmp_path, capsys):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *MODULE, *batch_argv(data / "m.csv", out, "--batch-size", "2")]
    proc = subprocess.run(cmd, check=False, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("8 row(s): 8 generated, 0 skipped") == 1  # rank 0 alone reports
    ref, got = _outputs(reference), _outputs(out)
    assert sorted(got) == sorted(ref) and len(got) == 9  # 8 rows, one of them writes both people
    for name in ref:
        assert np.array_equal(got[name], ref[name]), name
    assert got["sub/other.npz"].shape[0] == 25 and got["pair_partner.npz"].shape == got["pair.npz"].shape
    summary = json.loads((out / "unils_batch_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ok"] and summary["generated"] == 8
    assert all(r["groups"] > 0 for r in summary["ranks"])
    assert summary["frames"] == sum(v.shape[0] for k, v in got.items() if not k.endswith("_partner.npz"))
    assert not (out / ".unils-batch").exists()
    # A rerun finds every output valid: nothing regenerated, nothing rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    assert cli_main(batch_argv(data / "m.csv", out)) == 0
    assert "8 row(s): 0 generated, 8 skipped" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}


class _Killed(BaseException):
    """Stands for a kill: not an Exception, so no row handler catches it."""


def test_killed_run_resumes_to_the_same_outputs(data, tmp_path, capsys):
    from unils import UniLS

    rows = read_manifest(data / "m.csv", tmp_path / "full")
    model = UniLS.from_pretrained("demo")
    full = run_rows(rows, lambda: model, batch_size=2)
    assert [r.status for r in full.results] == ["generated"] * 8

    out = tmp_path / "killed"
    rows = read_manifest(data / "m.csv", out)
    seen: list[int] = []

    def kill_after_two_batches(results):
        seen.append(len(results))
        if len(seen) == 2:
            raise _Killed

    with pytest.raises(_Killed):
        run_rows(rows, lambda: model, batch_size=2, on_results=kill_after_two_batches)
    written = [n for n in _outputs(out) if not n.endswith("_partner.npz")]
    assert len(written) == sum(seen) and 0 < len(written) < 8
    # Leftovers of a harder kill: a temp file and a truncated output are not taken for results.
    (out / ".c5.npz.123.tmp.npz").write_bytes(b"partial")
    (out / "c5.npz").write_bytes((tmp_path / "full" / "c5.npz").read_bytes()[:200])
    assert cli_main(batch_argv(data / "m.csv", out, "--batch-size", "2")) == 0
    done = len([n for n in written if n != "c5.npz"])
    assert f"8 row(s): {8 - done} generated, {done} skipped" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp*"))
    ref, got = _outputs(tmp_path / "full"), _outputs(out)
    assert sorted(got) == sorted(ref)
    for name in ref:
        assert np.array_equal(got[name], ref[name]), name


def test_failing_rows_are_reported_and_do_not_stop_the_others(data, tmp_path, capsys):
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wave file")
    Motion.zeros(10).save(tmp_path / "short_style.npz")  # a style clip needs one window (100 frames)
    (tmp_path / "m.csv").write_text(
        "audio,seed,style\n"
        f"{data / 'c0.wav'},1,\n"
        "broken.wav,2,\n"
        f"{data / 'c1.wav'},3,short_style.npz\n"
        f"{data / 'c3.wav'},4,\n"
    )
    out = tmp_path / "out"
    assert cli_main(batch_argv(tmp_path / "m.csv", out, "--batch-size", "4", "--summary", str(tmp_path / "s.json"))) == 1
    printed = capsys.readouterr().out
    assert "4 row(s): 2 generated, 0 skipped (already done), 2 failed" in printed
    summary = json.loads((tmp_path / "s.json").read_text())
    assert not summary["ok"] and summary["failed"] == 2
    assert [(f["line"], Path(f["audio"]).name) for f in summary["failures"]] == [(3, "broken.wav"), (4, "c1.wav")]
    assert "AudioFileError" in summary["failures"][0]["reason"] and "MotionError" in summary["failures"][1]["reason"]
    assert sorted(p.name for p in out.glob("*.npz")) == ["c0.npz", "c3.npz"]
    assert len(Motion.load(out / "c3.npz")) == 23  # 0.9 s -> ceil(14400 / 640) frames
