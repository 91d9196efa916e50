"""Dataset-scale generation: rows/s and RTF of one process vs two (torchrun) with the bundled demo model.

    python benchmarks/batch_generate.py [--clips 24] [--min-s 3] [--max-s 9] [--json benchmarks/results/x.json]

Writes synthetic clips and a manifest to a temporary folder, then runs the batch command three
ways: 1 process x 1 thread, 1 process x 2 threads, 2 processes (torchrun, gloo) x 1 thread. Each
run starts from an empty output folder and includes process start-up and model loading, as a user
would see it. The machine's load (``os.getloadavg``) is recorded before each run, since other work
on a shared machine slows every figure down. Also checks that the 1- and 2-process outputs are
identical (same thread count per process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

COMMAND = ["-m", "unils", "-q", "generate", "--batch"]


def write_clips(folder: Path, clips: int, lo: float, hi: float, seed: int = 0) -> tuple[Path, float]:
    """Noise-like speech stand-ins (the cost does not depend on content) and a manifest; returns (manifest, seconds)."""
    rng = np.random.default_rng(seed)
    lines, total = ["audio,partner,seed"], 0.0
    for i in range(clips):
        seconds = float(rng.uniform(lo, hi))
        total += seconds
        sf.write(folder / f"clip{i:03d}.wav", (rng.standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32), 16000)
        partner = f"clip{i - 1:03d}.wav" if i % 3 == 2 else ""  # every third row has a partner
        lines.append(f"clip{i:03d}.wav,{partner},{i}")
    manifest = folder / "clips.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(manifest: Path, out: Path, processes: int, threads: int, batch_size: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    args = [str(manifest), "--out-dir", str(out), "--batch-size", str(batch_size), "--threads", str(threads)]
    if processes == 1:
        cmd = [sys.executable, *COMMAND, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
               "127.0.0.1", "--master_port", str(free_port()), *COMMAND, *args]
    load = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "unils_batch_summary.json").read_text())
    return {
        "processes": processes, "threads_per_process": threads, "batch_size": batch_size,
        "load_avg_before": [round(x, 2) for x in load], "command_s": round(elapsed, 2),
        "wall_s": summary["wall_s"], "rows": summary["rows"], "audio_seconds": summary["audio_seconds"],
        "rows_per_s": round(summary["rows"] / elapsed, 3), "rtf": round(elapsed / summary["audio_seconds"], 4),
        "ranks": summary["ranks"],
    }


def same_outputs(a: Path, b: Path) -> bool:
    from unils import Motion

    names = sorted(p.name for p in a.glob("*.npz"))
    return names == sorted(p.name for p in b.glob("*.npz")) and all(
        np.array_equal(Motion.load(a / n).to_array(), Motion.load(b / n).to_array()) for n in names
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--min-s", type=float, default=3.0)
    ap.add_argument("--max-s", type=float, default=9.0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest, seconds = write_clips(root, args.clips, args.min_s, args.max_s)
        runs = []
        for processes, threads in ((1, 1), (1, 2), (2, 1)):
            out = root / f"out_{processes}p{threads}t"
            r = run(manifest, out, processes, threads, args.batch_size)
            runs.append(r)
            print(f"{processes} process(es) x {threads} thread(s): {r['command_s']:7.1f} s  {r['rows_per_s']:.3f} rows/s  "
                  f"RTF {r['rtf']:.4f}  (load before {r['load_avg_before'][0]})", flush=True)
        identical = same_outputs(root / "out_1p1t", root / "out_2p1t")
    print(f"1 and 2 processes (1 thread each) wrote identical outputs: {identical}")
    result = {
        "benchmark": "batch_generate", "model": "demo", "clips": args.clips, "audio_seconds": round(seconds, 2),
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "runs": runs, "identical_1p_vs_2p": identical,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
