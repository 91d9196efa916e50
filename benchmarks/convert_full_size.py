"""Convert a full-size official-format checkpoint (random weights) and report time and peak memory.

Builds, with unils' own modules (no official code), an official stage-3 checkpoint at the real "L"
sizes ({"model": ..., "meta_cfg": ...}, official key names) and a full-size wav2vec2-XLS-R-300M
folder in the transformers layout, then runs ``unils convert`` in a child process and measures its
wall time and peak resident memory, loads the result and generates 4 s of two-person motion.

    python benchmarks/convert_full_size.py [--workdir DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from unils import UniLS, UniLSConfig
from unils.convert import unils_to_official_key


def build(workdir: Path) -> tuple[Path, Path]:
    cfg = UniLSConfig.large()
    torch.manual_seed(0)
    model = UniLS(cfg)
    state = {unils_to_official_key(k): v for k, v in model.state_dict().items() if not k.startswith("audio_encoder.")}
    meta = {"MODEL": {"NAME": "UniLSLoRAGen", "AUDIO_ENCODER": "wav2vec", "T_DEPTH": 8, "T_NUM_HEAD": 8, "T_EMBED_DIM": 512,
                      "VAE_CONFIG": {"MOTION_DIM": 108, "V_CODE_DIM": 32, "V_PATCH_NUMS": [1, 5, 25, 50, 100],
                                     "T_DEPTH": 8, "T_NUM_HEADS": 8, "T_HIDDEN_DIM": 512}},
            "EXP_STR": "UniLSLoRAGen_random_full_size"}
    pt = workdir / "iter_400000.pt"
    torch.save({"model": state, "meta_cfg": meta}, pt)
    w2v = workdir / "wav2vec2-xls-r-300m-random"
    w2v.mkdir(exist_ok=True)
    hf = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
          "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
          "conv_bias": True, "feat_extract_norm": "layer", "do_stable_layer_norm": True,
          "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16, "layer_norm_eps": 1e-5}
    (w2v / "config.json").write_text(json.dumps(hf))
    sd = {"wav2vec2." + k: v.contiguous() for k, v in model.audio_encoder.state_dict().items()}
    save_file(sd, str(w2v / "model.safetensors"))
    return pt, w2v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="unils-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    pt, w2v = build(work)
    out = work / "converted"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "unils", "convert", str(pt), str(out), "--audio-encoder", str(w2v)], check=True)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    model = UniLS.from_pretrained(out)
    a = (0.1 * np.random.default_rng(0).standard_normal(64000)).astype(np.float32)
    me, you = model.generate_both(a, a[::-1].copy(), seed=0)
    result = {
        "checkpoint_mb": round(pt.stat().st_size / 2**20, 1),
        "wav2vec2_mb": round((w2v / "model.safetensors").stat().st_size / 2**20, 1),
        "output_mb": round((out / "model.safetensors").stat().st_size / 2**20, 1),
        "convert_seconds": round(seconds, 2),
        "convert_peak_rss_mb": round(peak_mb, 1),
        "generated_frames": [len(me), len(you)],
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
