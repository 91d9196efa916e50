"""Inference benchmark: frames per second, real-time factor, per-stage time and peak memory.

Used by ``unils bench`` and ``benchmarks/run.py``. It times, in one run, the fast path
(:meth:`~unils.UniLS.generate_both`: each channel encoded once, both people and both guidance
branches batched, key/value cache) against the straightforward path (the official procedure: one
full pass per person, each encoding both channels, no cache), so the speed-up is a measured ratio.
Results are plain JSON so runs can be compared.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .config import UniLSConfig
from .generation import WindowEvent, frame_count
from .precision import cpu_has_native

__all__ = ["BenchResult", "run_benchmark", "random_model", "small_random_config", "conversation_audio"]

logger = logging.getLogger("unils")


@dataclass
class BenchResult:
    """One timed configuration. Times in seconds; rtf = compute time / audio time (lower is faster)."""

    mode: str
    seconds_of_audio: float
    batch: int
    frames: int
    total_s: float
    audio_encoder_s: float
    generator_s: float
    codec_decode_s: float
    fps: float
    rtf: float
    peak_rss_mb: float
    extra: dict[str, Any] = field(default_factory=dict)


def random_model(config: UniLSConfig | None = None, seed: int = 0) -> Any:
    """A model of ``config`` (default: the official large size) with random weights."""
    from .model import UniLS

    torch.manual_seed(seed)
    return UniLS(config or UniLSConfig.large()).eval()


def small_random_config() -> UniLSConfig:
    """The small benchmark size: mel front end, codec and generator 256 wide and 4 deep."""
    from .config import AudioEncoderConfig, CodecConfig, GeneratorConfig

    return UniLSConfig(
        codec=CodecConfig(hidden_dim=256, depth=4, num_heads=4),
        generator=GeneratorConfig(embed_dim=256, depth=4, num_heads=4),
        audio_encoder=AudioEncoderConfig(type="mel"),
        name="bench-small-random",
    )


def conversation_audio(seconds: float, seed: int = 0, sr: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """Two synthetic voices taking turns (noise bursts, 3 s turns): deterministic test audio."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    turn = (np.floor(t / 3.0) % 2).astype(np.float32)
    a = (0.2 * (1 - turn) * rng.standard_normal(n)).astype(np.float32)
    b = (0.2 * turn * rng.standard_normal(n)).astype(np.float32)
    return a, b


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _timed_pipeline(
    model: Any,
    channels: list[np.ndarray],
    rows: list[tuple[int, int]],
    seeds: list[int],
    use_cache: bool,
    cfg_scale: float,
) -> dict[str, float]:
    """Time the engine's real loop (:meth:`~unils.generation.WindowEngine.run`) stage by stage."""
    engine = model.engine
    options = engine.options(cfg_scale=cfg_scale, use_cache=use_cache)
    frames = frame_count(max(ch.shape[0] for ch in channels), model.config.samples_per_frame)
    events: list[WindowEvent] = []
    state = engine.start(seeds)
    t0 = time.perf_counter()
    engine.run(channels, rows, state, options, on_window=events.append)
    _sync(model.device)
    total = time.perf_counter() - t0
    t_enc = sum(e.encode_s for e in events)
    t_step = sum(e.step_s for e in events)
    # The step decodes inside; time one more decode of the last window's motion to apportion it.
    last = events[-1].motion.float()
    t2 = time.perf_counter()
    model.codec.decode(model.codec.encode(last))
    _sync(model.device)
    t_dec = (time.perf_counter() - t2) * len(events)
    return {"frames": frames, "enc": t_enc, "gen": t_step - t_dec, "dec": t_dec, "total": total}


def run_benchmark(
    seconds: list[float],
    *,
    batches: list[int] = (1,),  # type: ignore[assignment]
    straightforward: bool = True,
    config: UniLSConfig | None = None,
    device: str = "cpu",
    audio_autocast: str | None = None,
    cfg_scale: float = 1.5,
    threads: int | None = None,
) -> list[BenchResult]:
    """Time two-party generation for each audio length and batch size.

    Args:
        seconds: audio lengths to time (e.g. 10, 60, 600).
        batches: numbers of independent conversations generated together.
        straightforward: also time the official-style procedure for the speed-up ratio.
        config: model size (default: official large, random weights).
        device: "cpu" or "cuda".
        audio_autocast: "bfloat16"/"float16" to run the audio encoder under autocast.
        cfg_scale: guidance scale (1.5 as the official scripts).
        threads: torch CPU threads (default: torch's).
    """
    if threads:
        torch.set_num_threads(threads)
    model = random_model(config).to(device)
    if audio_autocast:
        model.set_audio_autocast(audio_autocast)
    # Warm-up: first calls pay for allocator growth and kernel selection; keep them out of the figures.
    warm = conversation_audio(4.0, seed=99)
    _timed_pipeline(model, list(warm), [(0, 1), (1, 0)], [0, 1], True, cfg_scale)
    results = []
    for sec in seconds:
        for batch in batches:
            channels: list[np.ndarray] = []
            rows: list[tuple[int, int]] = []
            for i in range(batch):
                a, b = conversation_audio(sec, seed=i)
                channels += [a, b]
                rows += [(2 * i, 2 * i + 1), (2 * i + 1, 2 * i)]
            seeds = list(range(len(rows)))
            fast = _timed_pipeline(model, channels, rows, seeds, True, cfg_scale)
            results.append(_result("fast", sec, batch, fast))
            if straightforward:
                # Official procedure: per person, a pass that encodes both channels, no cache.
                tot = {"frames": 0, "enc": 0.0, "gen": 0.0, "dec": 0.0, "total": 0.0}
                for s, o in rows:
                    r = _timed_pipeline(model, [channels[s], channels[o]], [(0, 1)], [0], False, cfg_scale)
                    for k in ("enc", "gen", "dec", "total"):
                        tot[k] += r[k]
                    tot["frames"] = r["frames"]
                results.append(_result("straightforward", sec, batch, tot))
                results[-1].extra["speedup_fast_vs_straightforward"] = round(tot["total"] / fast["total"], 3)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "machine": platform.machine(),
        "audio_autocast": audio_autocast,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_has_native(torch.bfloat16),
        "model": (config or UniLSConfig.large()).name,
    }
    for r in results:
        r.extra.update(meta)
    return results


def _result(mode: str, sec: float, batch: int, t: dict[str, float]) -> BenchResult:
    people = 2 * batch
    frames = int(t["frames"]) * people
    return BenchResult(
        mode=mode,
        seconds_of_audio=sec,
        batch=batch,
        frames=frames,
        total_s=round(t["total"], 4),
        audio_encoder_s=round(t["enc"], 4),
        generator_s=round(t["gen"], 4),
        codec_decode_s=round(t["dec"], 4),
        fps=round(frames / t["total"], 2),
        rtf=round(t["total"] / (sec * batch), 4),
        peak_rss_mb=round(_peak_rss_mb(), 1),
    )


def write_json(results: list[BenchResult], path: str | os.PathLike[str]) -> None:
    """Write results as a JSON list."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump([asdict(r) for r in results], fh, indent=2)
