"""``unils train``: the three training stages, dataset validation and the synthetic corpus (unils[train]).

Each of ``codec``, ``prior``, ``audio``, ``validate`` and ``corpus`` is a subcommand with only the
flags it uses.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from ..errors import UniLSError

__all__ = ["register", "run_corpus", "run_stage", "run_validate"]

_STAGE_HELP = {
    "codec": (
        "stage 1: the motion codec and its normalisation statistics",
        (
            "Stage 1: train the motion codec (encoder, multi-scale BSQ, decoder) from scratch (--config picks "
            "the size) or fine-tune one (--init a codec export)."
        ),
    ),
    "prior": (
        "stage 2: the audio-free prior over the frozen codec (--init a codec export)",
        "Stage 2: train the audio-free next-scale prior over the frozen codec of --init (a codec export).",
    ),
    "audio": (
        "stage 3: dual-audio cross-attention and LoRA (--init a prior export)",
        (
            "Stage 3: train the self- and partner-audio cross-attention and LoRA adapters on the prior of "
            "--init (a prior export); the export is a plain checkpoint for UniLS.from_pretrained."
        ),
    ),
}


def register(sub: Any) -> None:
    """Add the ``train`` parser and its subcommands to ``sub`` (the ``unils`` subparsers)."""
    t = sub.add_parser(
        "train",
        help="train a stage (codec, prior, audio), validate a dataset or write the synthetic corpus "
        "(needs unils[train])",
        description="The three UniLS training stages, 'codec', 'prior' and 'audio', each write OUT/checkpoint "
        "(resumable), OUT/export and OUT/log.jsonl; 'validate' checks a dataset folder; 'corpus' writes the "
        "synthetic two-person corpus. `unils train STAGE --help` lists a subcommand's flags. Several processes: "
        "torchrun --nproc_per_node N -m unils train ...",
    )
    stages = t.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage, (short, long) in _STAGE_HELP.items():
        p = stages.add_parser(stage, help=short, description=long)
        _add_run_flags(p, stage)
        p.set_defaults(func=run_stage)

    v = stages.add_parser(
        "validate",
        help="check a dataset folder (exit code 1 when it has errors)",
        description="Report every problem of a dataset folder (unils-dataset format).",
    )
    v.add_argument("--data", required=True, help="dataset folder")
    v.set_defaults(func=run_validate)

    c = stages.add_parser(
        "corpus",
        help="write the synthetic two-person corpus (synthesized speech, rule-based motion)",
        description="Write a synthetic two-person dataset in the unils-dataset format.",
    )
    c.add_argument("--data", required=True, help="the folder to write")
    c.add_argument("--conversations", type=int, default=200, help="number of conversations (default 200)")
    c.add_argument(
        "--seconds",
        type=float,
        nargs=2,
        default=(20.0, 40.0),
        metavar=("MIN", "MAX"),
        help="conversation length range (default 20 40)",
    )
    c.add_argument("--motion-only", type=int, default=0, help="extra motion-only clips (default 0)")
    c.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    c.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    c.set_defaults(func=run_corpus)


def _add_run_flags(p: argparse.ArgumentParser, stage: str) -> None:
    p.add_argument("--data", required=True, help="dataset folder (unils-dataset format)")
    p.add_argument("--out", help="run folder (checkpoint/, export/, log.jsonl)")
    if stage == "codec":
        p.add_argument(
            "--config", default=None, help="model size: large, small (default), demo or a config.json"
        )
        p.add_argument("--init", default=None, help="a codec export, to fine-tune")
    else:
        previous = "codec" if stage == "prior" else "prior"
        p.add_argument(
            "--init",
            default=None,
            help=f"export folder of the {previous} stage (or of this stage, to fine-tune)",
        )
    if stage == "audio":
        p.add_argument(
            "--audio-encoder",
            default=None,
            help="wav2vec2 models: transformers wav2vec2 folder, file or Hub repo",
        )
        p.add_argument("--lora-r", type=int, default=32, help="LoRA rank (default 32)")
        p.add_argument("--lora-alpha", type=float, default=32.0, help="LoRA alpha (default 32)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--steps", type=int, default=1000, help="length of the schedule (default 1000)")
    p.add_argument(
        "--stop-at", type=int, default=None, help="stop (checkpointed) at this step; continue with --resume"
    )
    p.add_argument(
        "--batch-size", type=int, default=16, help="per process (official: 64 codec, 128 prior/audio)"
    )
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    p.add_argument("--warmup", type=int, default=1000, help="warm-up steps (default 1000)")
    p.add_argument("--ema-decay", type=float, default=0.9999, help="EMA decay (default 0.9999)")
    p.add_argument(
        "--checkpoint-every", type=int, default=1000, help="steps between checkpoints (default 1000)"
    )
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines (default 10)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="auto: bf16 autocast on CUDA, fp32 on the CPU",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    if stage == "codec":
        p.add_argument("--flame", default=None, help="FLAME 2020 model file: adds the mesh and lip losses")
        p.add_argument(
            "--expr-mse",
            type=float,
            default=0.0,
            help="weight of an extra MSE over the leading expression coefficients, so rare short events "
            "(blinks, lip closures) are not averaged away by the L1 loss (default 0: official recipe)",
        )
        p.add_argument(
            "--expr-mse-dims",
            type=int,
            default=100,
            help="how many leading expression coefficients --expr-mse covers (default 100: all)",
        )


def _train_module(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"unils.train.{name}")
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise UniLSError(f"training needs the train extra: pip install 'unils[train]' ({exc})") from exc


def _config(value: str | None) -> Any:
    from ..config import UniLSConfig

    if value is None:
        return None
    presets = {"large": UniLSConfig.large, "small": UniLSConfig.small, "demo": UniLSConfig.demo}
    if value in presets:
        return presets[value]()
    if not Path(value).is_file():
        raise FileNotFoundError(
            f"--config {value!r}: not a preset ({', '.join(presets)}) nor a config.json file"
        )
    return UniLSConfig.load(value)


def run_validate(args: argparse.Namespace) -> int:
    """Handler of ``unils train validate``: 0 for a valid dataset, 1 when it has errors."""
    report = _train_module("data").validate_dataset(args.data)
    print(report.summary())
    return 0 if report.ok else 1


def run_corpus(args: argparse.Namespace) -> int:
    """Handler of ``unils train corpus``."""
    write_corpus = _train_module("corpus").write_corpus
    lo, hi = args.seconds
    t0 = time.perf_counter()
    root = write_corpus(
        args.data,
        args.conversations,
        seconds=(lo, hi),
        seed=args.seed,
        motion_only=args.motion_only,
        progress=not args.quiet,
        workers=args.workers,
    )
    print(
        f"wrote {args.conversations} conversation(s) and {args.motion_only} motion-only clip(s) to {root} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def run_stage(args: argparse.Namespace) -> int:
    """Handler of ``unils train codec|prior|audio``."""
    trainer = _train_module("trainer")
    stages = _train_module("stages")
    if not args.out:
        raise UniLSError(f"unils train {args.stage} needs --out (the run folder)")
    logging.getLogger("unils").setLevel(logging.INFO)
    opts = trainer.TrainOptions(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        ema_decay=args.ema_decay,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        seed=args.seed,
        precision=args.precision,
        progress=not args.quiet,
        stop_at=args.stop_at,
    )
    knobs: dict[str, Any] = {}
    if args.stage == "audio":
        knobs = {"lora_r": args.lora_r, "lora_alpha": args.lora_alpha}
    if args.stage == "codec":
        knobs["codec_weights"] = _train_module("losses").CodecLossWeights(
            expr_mse=args.expr_mse, expr_mse_dims=args.expr_mse_dims
        )
    vertices = lips = None
    if getattr(args, "flame", None):
        vertices, lips = _train_module("mesh").flame_vertices(args.flame, args.device or "cpu")
    result = trainer.train_stage(
        args.stage,
        args.data,
        args.out,
        config=_config(getattr(args, "config", None)),
        init=args.init,
        audio_encoder=getattr(args, "audio_encoder", None),
        resume=args.resume,
        options=opts,
        stage_options=stages.StageOptions(**knobs),
        device=args.device,
        vertices=vertices,
        lip_indices=lips,
    )
    if result.history:
        print(
            f"{args.stage}: {result.steps} steps in {result.seconds:.1f} s, loss "
            f"{result.mean_loss(first=True):.4f} (first 20% of logged steps) -> {result.mean_loss(first=False):.4f} "
            f"(last 20%); export: {result.export_dir}"
        )
    return 0
