"""Inference benchmark: frames per second, real-time factor, per-stage time and peak memory.

Used by ``unils bench`` and ``benchmarks/run.py``. It times, in one run, the fast path
([`generate_both`][unils.model.UniLS.generate_both]: each channel encoded once, both people and both guidance
branches batched, key/value cache) against the straightforward path (the official procedure: one
full pass per person, each encoding both channels, no cache), so the speed-up is a measured ratio.
Results are plain JSON so runs can be compared.
"""

from __future__ import annotations

import copy
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
from .generation import DEFAULT_LOOKAHEAD, WindowEvent, frame_count, pad_windows
from .options import GenerationOptions
from .precision import choose_precision, cpu_has_native, cpu_kind

__all__ = [
    "BenchResult",
    "DriftResult",
    "run_benchmark",
    "measure_drift",
    "random_model",
    "small_random_config",
    "conversation_audio",
]

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
    """Time the engine's real loop ([`run`][unils.generation.WindowEngine.run]) stage by stage."""
    engine = model.engine
    options = GenerationOptions(cfg_scale=cfg_scale, use_cache=use_cache).sampling(engine.config)
    frames = frame_count(max(ch.shape[0] for ch in channels), model.config.samples_per_frame)
    events: list[WindowEvent] = []
    state = engine.start(seeds)
    t0 = time.perf_counter()
    # One conversation runs as generate_both does (window by window, the shapes of a stream); several
    # as generate_batch does (windows encoded ahead in batches).
    lookahead = 1 if len(rows) <= 2 else DEFAULT_LOOKAHEAD
    engine.run(channels, rows, state, options, on_window=events.append, lookahead=lookahead)
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
    straightforward_max_seconds: float | None = None,
    config: UniLSConfig | None = None,
    device: str = "cpu",
    dtype: str = "auto",
    audio_autocast: str | None = None,
    cfg_scale: float = 1.5,
    threads: int | None = None,
    compile: bool = False,
    cuda_graphs: bool = False,
) -> list[BenchResult]:
    """Time two-party generation for each audio length and batch size: defaults vs the official procedure.

    The default path is what ``UniLS.from_pretrained`` gives: precision ``dtype`` (``"auto"``: the
    fastest native one), each channel encoded once, both people and both guidance branches batched,
    key/value cache, audio encoded a bounded number of windows ahead. The straightforward path is the
    official procedure in float32: one full pass per person, each encoding both channels, no cache.

    Args:
        seconds: audio lengths to time (e.g. 10, 60, 600), in increasing order for the memory figures.
        batches: numbers of independent conversations generated together.
        straightforward: also time the official-style procedure for the speed-up ratio.
        straightforward_max_seconds: skip the straightforward path above this length (it is slow).
        config: model size (default: official large, random weights).
        device: "cpu" or "cuda".
        dtype: precision of the default path (see
            [`unils.precision.choose_precision`][unils.precision.choose_precision]).
        audio_autocast: "bfloat16"/"float16" to run the audio encoder under autocast (default path).
        cfg_scale: guidance scale (1.5 as the official scripts).
        threads: torch CPU threads (default: torch's).
        compile: ``torch.compile`` the default path's audio encoder and generator blocks first
            ([`unils.UniLS.compile`][unils.model.UniLS.compile]; the warm-up pays for compilation).
        cuda_graphs: replay the default path's steps from recorded CUDA graphs
            ([`unils.UniLS.cuda_graphs`][unils.model.UniLS.cuda_graphs]); every timed run is run once
            before, untimed, so the figures hold replays only, not recordings.
    """
    if threads:
        torch.set_num_threads(threads)
    exact = random_model(config).to(device).set_precision("float32")
    shared = choose_precision(dtype, device).exact and not audio_autocast
    shared = shared and not compile and not cuda_graphs
    fast = exact if shared else copy.deepcopy(exact)
    fast.set_precision(dtype)
    if compile:
        fast.compile()
    if cuda_graphs:
        fast.cuda_graphs()
    if audio_autocast:
        fast.set_audio_autocast(audio_autocast)
    # Warm-up: first calls pay for allocator growth and kernel selection; keep them out of the figures.
    warm = conversation_audio(4.0, seed=99)
    for m in {id(exact): exact, id(fast): fast}.values():
        _timed_pipeline(m, list(warm), [(0, 1), (1, 0)], [0, 1], True, cfg_scale)
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
            if cuda_graphs:  # record every shape of this run before timing it
                _timed_pipeline(fast, channels, rows, seeds, True, cfg_scale)
            default = _timed_pipeline(fast, channels, rows, seeds, True, cfg_scale)
            results.append(_result("default", sec, batch, default))
            results[-1].extra["precision"] = str(fast.precision)
            if straightforward and (
                straightforward_max_seconds is None or sec <= straightforward_max_seconds
            ):
                # Official procedure: per person, a pass that encodes both channels, no cache, float32.
                tot = {"frames": 0, "enc": 0.0, "gen": 0.0, "dec": 0.0, "total": 0.0}
                for s, o in rows:
                    r = _timed_pipeline(exact, [channels[s], channels[o]], [(0, 1)], [0], False, cfg_scale)
                    for k in ("enc", "gen", "dec", "total"):
                        tot[k] += r[k]
                    tot["frames"] = r["frames"]
                results.append(_result("straightforward", sec, batch, tot))
                results[-1].extra["precision"] = "float32"
                results[-1].extra["speedup_default_vs_straightforward"] = round(
                    tot["total"] / default["total"], 3
                )
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "machine": platform.machine(),
        "cpu": cpu_kind(),
        "audio_autocast": audio_autocast,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_has_native(torch.bfloat16),
        "precision_reason": fast.precision.reason,
        "compiled": compile,
        "cuda_graphs": cuda_graphs,
        "model": (config or UniLSConfig.large()).name,
    }
    for res in results:
        res.extra.update(meta)
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


def write_json(
    results: list[BenchResult], path: str | os.PathLike[str], drift: list[dict[str, Any]] | None = None
) -> None:
    """Write results as a JSON list (an object ``{"results", "drift"}`` when drift figures are given)."""
    data: Any = [asdict(r) for r in results]
    if drift:
        data = {"results": data, "drift": drift}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)


@dataclass
class DriftResult:
    """How far one precision moves from float32 on the same inputs (random weights at the given size).

    Attributes:
        precision: the precision measured.
        feature_rel_err: ``||f - f32|| / ||f32||`` of the audio features of the test audio.
        logit_rel_err: the same for the generator's logits, given the same (float32) inputs.
        motion_mean_abs: mean absolute motion difference at near-greedy sampling (temperature
            0.001), same seed, both people, unsmoothed.
        motion_max_abs: the largest absolute motion difference of the same.
        motion_rms_f32: RMS of the float32 motion, the scale to read the differences against.
    """

    precision: str
    feature_rel_err: float
    logit_rel_err: float
    motion_mean_abs: float
    motion_max_abs: float
    motion_rms_f32: float


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-30))


def measure_drift(
    precisions: list[str],
    *,
    config: UniLSConfig | None = None,
    seconds: float = 8.0,
    seed: int = 0,
    device: str = "cpu",
) -> list[DriftResult]:
    """Relative error of audio features and logits, and the motion difference, of each precision vs float32.

    Args:
        precisions: names of [`unils.precision.PRECISIONS`][unils.precision.PRECISIONS] (not "auto"), e.g.
            bfloat16, int8.
        config: model size (default: official large, random weights).
        seconds: length of the two-person test audio.
        seed: seed of the weights' and the sampling's random numbers.
        device: "cpu" or "cuda".
    """
    exact = random_model(config, seed=seed).to(device)
    a, b = conversation_audio(seconds, seed=seed)
    ws = exact.config.window_samples
    windows = torch.cat([pad_windows(ch, 1, ws) for ch in (a, b)])
    gen32 = exact.generator
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        feats32 = exact.engine.encode(windows)
        prefix32 = gen32.condition_tokens(
            exact.codec.sum_features(torch.randn(1, exact.config.window_frames, 108, generator=g).to(device)),
            exact.codec.sum_features(torch.randn(1, exact.config.window_frames, 108, generator=g).to(device)),
        )
        current = torch.randn(1, gen32.num_tokens, prefix32.shape[-1], generator=g).to(device)

        def logits(model: Any) -> torch.Tensor:
            dt = model.generator.sos_embed.dtype
            hidden = model.generator.forward_reference(
                prefix32.to(dt), current.to(dt), feats32[:1].to(dt), feats32[1:].to(dt)
            )
            return model.generator.logits(hidden).float()

        logits32 = logits(exact)
        near_greedy = {"seed": seed, "temperature": 1e-3, "smooth": False}
        m32 = [m.to_array() for m in exact.generate_both(a, b, **near_greedy)]
    out = []
    for name in precisions:
        model = copy.deepcopy(exact)
        model.set_precision(name)
        with torch.inference_mode():
            feats = model.engine.encode(windows)
            lg = logits(model)
            motions = [m.to_array() for m in model.generate_both(a, b, **near_greedy)]
        diff = np.abs(np.stack(motions) - np.stack(m32))
        out.append(
            DriftResult(
                precision=name,
                feature_rel_err=round(_rel(feats, feats32), 6),
                logit_rel_err=round(_rel(lg, logits32), 6),
                motion_mean_abs=round(float(diff.mean()), 6),
                motion_max_abs=round(float(diff.max()), 6),
                motion_rms_f32=round(float(np.sqrt(np.mean(np.stack(m32) ** 2))), 6),
            )
        )
        del model
    return out
