"""The training loop shared by the three stages: AdamW, warm-up + linear decay, EMA, clipping,
mixed precision on GPU, resumable checkpoints, DistributedDataParallel under ``torchrun``.

Recipe (official defaults): AdamW (betas 0.9/0.999, weight decay 0.01 on every trainable tensor),
learning rate factor 0.1 -> 1 over the warm-up steps, then linearly down to ``lr_decay_rate`` at the
last step, gradient norm clipped at 1.0, an EMA of the whole state updated every step. The EMA
weights are what gets exported. One deliberate difference: the EMA decay ramps up as
``min(decay, (1 + n) / (10 + n))`` so that short runs (fine-tuning, tests) export useful weights; over
hundreds of thousands of steps this is the official constant decay.

Checkpoints are safetensors plus a JSON file (no pickles) in ``OUT/checkpoint``; ``OUT/export`` holds
the stage's export from the EMA weights; ``OUT/log.jsonl`` one line per logged step.

Several processes: launch with ``torchrun --nproc_per_node N -m unils.cli train ...``; each process
draws its own batches (``batch_size`` per process), gradients are averaged by DDP (gloo on CPU, NCCL
on GPU), and only rank 0 writes files. Unlike the official trainer, step counts and the learning rate
are not rescaled by the number of processes: the effective batch grows with them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..config import UniLSConfig
from .data import ClipSampler, load_dataset
from .stages import STAGES, StageOptions, check_dataset_for

__all__ = ["TrainOptions", "TrainResult", "lr_factor", "EMA", "train_stage"]

logger = logging.getLogger("unils.train")

CHECKPOINT_FORMAT = 1


@dataclass
class TrainOptions:
    """Loop settings. Official values: batch 64 (codec) / 128, lr 1e-4, warm-up 1000, decay to 0.1."""

    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    warmup: int = 1000
    lr_decay_rate: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    checkpoint_every: int = 1000
    log_every: int = 10
    seed: int = 42
    #: "auto" (bfloat16 autocast on CUDA, float32 on CPU), "fp32", "bf16" or "fp16".
    precision: str = "auto"
    progress: bool = True
    #: Stop (checkpointed, exported) at this step although the schedule runs to ``steps``: for jobs
    #: with a time limit that continue with ``resume``.
    stop_at: int | None = None

    def validate(self) -> None:
        """Check the options; raise ValueError naming the bad one."""
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup < 0 or not 0 < self.lr_decay_rate <= 1:
            raise ValueError("lr must be > 0, warmup >= 0 and lr_decay_rate in (0, 1]")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")


@dataclass
class TrainResult:
    """What a run did: steps, the export folder and the logged losses."""

    stage: str
    steps: int
    export_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def mean_loss(self, first: bool, fraction: float = 0.2) -> float:
        """Mean logged loss over the first or last ``fraction`` of the logged steps."""
        n = max(1, int(len(self.history) * fraction))
        rows = self.history[:n] if first else self.history[-n:]
        return float(np.mean([r["loss"] for r in rows]))


def lr_factor(step: int, warmup: int, total: int, decay_rate: float) -> float:
    """Learning-rate factor after ``step`` scheduler steps (official warm-up then linear decay)."""
    if step < warmup:
        return 0.1 + 0.9 * step / warmup
    span = max(total - warmup, 1)
    return 1.0 - (1.0 - decay_rate) * min(step - warmup, span) / span


class EMA:
    """Exponential moving average of every floating-point entry of a state dict (integers copied)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average towards ``module``'s current weights."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in module.state_dict().items():
            s = self.shadow[k]
            if v.is_floating_point():
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)

    def copy_to(self, module: nn.Module) -> None:
        """Load the averaged weights into ``module``."""
        module.load_state_dict(self.shadow)


# ---------------------------------------------------------------------------------- checkpoints
def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"opt.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _save_checkpoint(
    folder: Path,
    stage: nn.Module,
    ema: EMA,
    opt: torch.optim.Optimizer,
    meta: dict[str, Any],
    rng_tensors: dict[str, Tensor],
) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in stage.state_dict().items()},
        str(tmp / "model.safetensors"),
    )
    save_file({k: v.contiguous().cpu() for k, v in ema.shadow.items()}, str(tmp / "ema.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(opt)
    save_file({**opt_tensors, **rng_tensors}, str(tmp / "optimizer.safetensors"))
    (tmp / "trainer.json").write_text(
        json.dumps({**meta, "optimizer": opt_meta}, indent=1) + "\n", encoding="utf-8"
    )
    # Swap in the new checkpoint only once it is complete: a crash mid-write keeps the old one.
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _np_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def _set_np_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


# ---------------------------------------------------------------------------------- the loop
def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _autocast(device: torch.device, precision: str) -> tuple[contextlib.AbstractContextManager[Any], bool]:
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext(), False
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype), precision == "fp16"


def train_stage(
    stage: str,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    config: UniLSConfig | None = None,
    init: str | os.PathLike[str] | None = None,
    audio_encoder: str | os.PathLike[str] | None = None,
    resume: bool = False,
    options: TrainOptions | None = None,
    stage_options: StageOptions | None = None,
    device: str | torch.device | None = None,
    vertices: Any = None,
    lip_indices: Tensor | None = None,
) -> TrainResult:
    """Train one stage and export it (``OUT/export``).

    Args:
        stage: "codec" (stage 1), "prior" (stage 2) or "audio" (stage 3).
        data_dir: dataset folder (see [`unils.train.data`][unils.train.data]).
        out_dir: run folder: ``checkpoint/``, ``export/``, ``log.jsonl``.
        config: model sizes for stage 1 (later stages take the config of ``init``).
        init: export folder of the previous stage (prior: a codec export; audio: a prior export), or
            of the same stage to fine-tune.
        audio_encoder: stage 3 with wav2vec2: a transformers wav2vec2 folder, file or Hub repo.
        resume: continue from ``OUT/checkpoint`` (same stage, same data).
        options: loop settings.
        stage_options: recipe knobs (dropouts, flips, LoRA).
        device: "cpu", "cuda", "cuda:1"... (default: CUDA if available, per local rank).
        vertices: stage 1 only: motion -> FLAME vertices (adds the mesh and lips losses).
        lip_indices: vertex indices of the lips loss.

    Raises:
        DatasetError: the data cannot feed this stage.
        FileNotFoundError: ``init`` or the checkpoint to resume is missing.
        ValueError: inconsistent settings.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")
    opts = options or TrainOptions()
    opts.validate()
    sopts = stage_options or StageOptions()
    out = Path(out_dir)
    rank, world, local_rank = _dist_info()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and device != "cpu" else "gloo")
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)

    ckpt_dir = out / "checkpoint"
    meta: dict[str, Any] = {}
    if resume:
        if not (ckpt_dir / "trainer.json").is_file():
            raise FileNotFoundError(f"{ckpt_dir} has no checkpoint to resume from")
        meta = json.loads((ckpt_dir / "trainer.json").read_text(encoding="utf-8"))
        if meta.get("stage") != stage:
            raise ValueError(f"{ckpt_dir} holds a {meta.get('stage')!r} run, not {stage!r}")
        config = UniLSConfig.from_dict(meta["config"])
    elif init is not None:
        init_cfg = (
            UniLSConfig.load(Path(init) / "config.json") if (Path(init) / "config.json").is_file() else None
        )
        if init_cfg is None:
            raise FileNotFoundError(f"{init}: no config.json (pass the export folder of an earlier stage)")
        if config is not None and config.to_dict() != init_cfg.to_dict():
            raise ValueError(
                f"--config differs from the config of {init}; later stages keep the sizes of stage 1"
            )
        config = init_cfg
    if config is None:
        if stage != "codec":
            raise ValueError(f"stage {stage!r} starts from an earlier stage: pass init (its export folder)")
        config = UniLSConfig.small()
    config.validate()

    data = load_dataset(data_dir, need_audio=stage == "audio")
    sampler = ClipSampler(data, seed=opts.seed + 1000 * rank)
    check_dataset_for(stage, sampler)

    # ---- build the stage module (same initial weights on every rank and for every run of a seed)
    torch.manual_seed(opts.seed)
    if stage == "codec":
        module: Any = STAGES[stage](
            config,
            sopts,
            stats=None if (init or resume) else data.motion_stats(),
            vertices=vertices,
            lip_indices=lip_indices,
        )
        if init is not None and not resume:
            module.init_from(init)
    elif stage == "prior":
        module = STAGES[stage](config, sopts)
        if init is not None and not resume:
            module.init_from(init, _export_stage(Path(init)))
    else:
        module = STAGES[stage](config, sopts)
        if init is not None and not resume:
            enc = None
            if audio_encoder is not None:
                enc = _wav2vec2_tensors(audio_encoder, config)
            fresh = module.init_from(init, _export_stage(Path(init)), enc)
            if fresh:
                logger.info(
                    "stage 3 starts %d tensors fresh (cross-attention, audio positions%s)",
                    len(fresh),
                    ", audio encoder" if any(k.startswith("audio_encoder.") for k in fresh) else "",
                )
        elif init is None and not resume:
            raise ValueError("stage 3 starts from a prior: pass init (the export of `unils train prior`)")
    module.to(dev)
    module.seed(opts.seed + 7919 * (rank + 1))
    params = module.trainable_parameters()
    if not params:
        raise ValueError(f"stage {stage!r} has nothing to train")
    opt = torch.optim.AdamW(params, lr=opts.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=opts.weight_decay)
    ema = EMA(module, opts.ema_decay)
    step = 0
    if resume:
        module.load_state_dict(load_file(str(ckpt_dir / "model.safetensors")))
        ema.shadow = {k: v.to(dev) for k, v in load_file(str(ckpt_dir / "ema.safetensors")).items()}
        ema.updates = meta["ema_updates"]
        tensors = load_file(str(ckpt_dir / "optimizer.safetensors"))
        opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        step = meta["step"]
        if rank == 0:
            _set_np_state(sampler.rng, meta["sampler_rng"])
            _set_np_state(module.np_rng, meta["stage_rng"])
            module.gen.set_state(tensors["rng.stage_gen"])
            torch.set_rng_state(tensors["rng.torch"])
        logger.info("resumed %s at step %d from %s", stage, step, ckpt_dir)
    if step >= opts.steps:
        raise ValueError(f"the checkpoint is at step {step}; pass more steps than that to continue")

    runner: nn.Module = module
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)
    amp, use_scaler = _autocast(dev, opts.precision)
    scaler = torch.amp.GradScaler(dev.type) if use_scaler else None

    history: list[dict[str, float]] = []
    log_path = out / "log.jsonl"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and log_path.exists():
            log_path.unlink()
    bar = _progress(opts.progress and rank == 0, opts.steps, step, f"train {stage}")
    module.train()
    t0 = time.perf_counter()
    window: list[dict[str, float]] = []
    last = opts.steps if opts.stop_at is None else min(opts.steps, opts.stop_at)
    while step < last:
        for group in opt.param_groups:
            group["lr"] = opts.lr * lr_factor(step, opts.warmup, opts.steps, opts.lr_decay_rate)
        batch = module.draw(sampler, opts.batch_size)
        with amp:
            loss, logs = runner(**batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {float(loss)} at step {step}: lower the learning rate or check the data"
            )
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        ema.update(module)
        step += 1
        window.append({"loss": float(loss.detach()), **logs, "grad_norm": float(grad_norm)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if step % opts.log_every == 0 or step == last:
            row = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            row.update(step=step, lr=opt.param_groups[0]["lr"])
            window = []
            history.append(row)
            if rank == 0:
                logger.info(
                    "%s step %d/%d %s",
                    stage,
                    step,
                    opts.steps,
                    " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("step",)),
                )
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
        if (step % opts.checkpoint_every == 0 or step == last) and rank == 0:
            ckpt_meta = {
                "format": CHECKPOINT_FORMAT,
                "stage": stage,
                "step": step,
                "ema_updates": ema.updates,
                "config": config.to_dict(),
                "options": asdict(opts),
                "sampler_rng": _np_state(sampler.rng),
                "stage_rng": _np_state(module.np_rng),
            }
            _save_checkpoint(
                ckpt_dir,
                module,
                ema,
                opt,
                _jsonable(ckpt_meta),
                {"rng.stage_gen": module.gen.get_state(), "rng.torch": torch.get_rng_state()},
            )
    if bar is not None:
        bar.close()
    export_dir = out / "export"
    if rank == 0:
        shadow = copy.deepcopy(module)
        ema.copy_to(shadow)
        shadow.eval()
        export_dir = shadow.export(export_dir)
        logger.info("exported %s (EMA weights) to %s", stage, export_dir)
    if world > 1:
        dist.barrier()
    return TrainResult(stage, step, export_dir, history, time.perf_counter() - t0)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def _export_stage(folder: Path) -> str:
    for name, fname in (
        ("audio", "model.safetensors"),
        ("prior", "prior.safetensors"),
        ("codec", "codec.safetensors"),
    ):
        if (folder / fname).is_file():
            return name
    raise FileNotFoundError(
        f"{folder} is not a stage export (no codec.safetensors, prior.safetensors or model.safetensors)"
    )


def _wav2vec2_tensors(source: str | os.PathLike[str], config: UniLSConfig) -> dict[str, Tensor]:
    from ..convert import load_wav2vec2
    from ..nn.wav2vec2 import convert_hf_state_dict

    if config.audio_encoder.type != "wav2vec2":
        raise ValueError("--audio-encoder is for wav2vec2 models; this config uses the mel front end")
    sd, _cfg, desc = load_wav2vec2(source)
    logger.info("stage 3 audio encoder from %s", desc)
    return convert_hf_state_dict(sd)


def _progress(enabled: bool, total: int, initial: int, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the train extra brings tqdm; without it, log lines only
        return None
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False)
