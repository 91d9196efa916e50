"""A corpus on disk: conversations and motion-only clips written in the unils dataset format."""

from __future__ import annotations

import json
import logging
import numbers
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...config import FPS, SAMPLE_RATE
from ...errors import ConfigError
from ..tts import espeak_version
from .channels import BLINK_AFTER_SENTENCE, BLINK_INTERVAL, CHANNELS, CORPUS_VERSION
from .generate import generate_conversation
from .planning import check_count, check_seconds, check_seed

__all__ = ["write_corpus"]

logger = logging.getLogger("unils.train.corpus")


def _write_pcm16(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")


def _conversation_job(root: str, clip_id: str, seed: tuple[int, ...], seconds: float, kwargs: dict[str, float],
                      transcripts: bool) -> dict[str, Any]:  # fmt: skip
    conv = generate_conversation(seed, seconds, **kwargs)
    folder = Path(root) / "conversations" / clip_id
    folder.mkdir(parents=True, exist_ok=True)
    _write_pcm16(folder / "speaker0.wav", conv.audio0)
    _write_pcm16(folder / "speaker1.wav", conv.audio1)
    np.savez(
        folder / "motion.npz", speaker0=conv.motion0, speaker1=conv.motion1, speech_mask=conv.speech_mask
    )
    if transcripts:
        meta = {"seed": list(seed), "voices": [v.to_dict() for v in conv.voices], "turns": conv.transcript()}
        (folder / "transcript.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return {"frames": conv.num_frames, **conv.info}


def _motion_only_job(root: str, clip_ids: tuple[str, ...], seed: tuple[int, ...], seconds: float,
                     kwargs: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    conv = generate_conversation(seed, seconds, **kwargs)
    folder = Path(root) / "motion_only"
    folder.mkdir(parents=True, exist_ok=True)
    for clip_id, motion in zip(clip_ids, (conv.motion0, conv.motion1), strict=False):
        np.savez(folder / f"{clip_id}.npz", motion=motion)
    return {"frames": conv.num_frames * len(clip_ids)}


def _run_job(job: tuple[Any, ...]) -> dict[str, Any]:
    kind, args = job[0], job[1:]
    return _conversation_job(*args) if kind == "conversation" else _motion_only_job(*args)


def write_corpus(
    out_dir: str | os.PathLike[str],
    num_conversations: int,
    seconds: tuple[float, float] = (20.0, 40.0),
    seed: int = 0,
    motion_only: int = 0,
    progress: bool = False,
    *,
    workers: int = 1,
    overwrite: bool = False,
    transcripts: bool = False,
    backchannel_rate: float = 0.55,
    overlap_rate: float = 0.2,
) -> Path:
    """Write a synthetic training corpus in the unils dataset format.

    Conversation ``i`` is ``generate_conversation((seed, 0, i), seconds_i)`` with ``seconds_i`` drawn
    uniformly from ``seconds`` by ``default_rng((seed, 2))``; motion-only clips ``2k`` and ``2k + 1``
    are the two people of ``generate_conversation((seed, 1, k), ...)`` (durations from
    ``default_rng((seed, 3))``). A clip therefore does not depend on how many others are written or
    on ``workers``, and the same arguments write byte-identical files.

    Args:
        out_dir: destination folder; created if missing, and must be empty unless ``overwrite``.
        num_conversations: number of conversations (``conversations/00000`` ...).
        seconds: (shortest, longest) duration in seconds, each between 2 and 3600.
        seed: corpus seed (non-negative integer).
        motion_only: number of extra motion-only clips (``motion_only/00000.npz`` ...).
        progress: show a tqdm progress bar.
        workers: processes generating in parallel (1: in this process).
        overwrite: replace a corpus that [`write_corpus`][unils.train.corpus.writing.write_corpus] wrote
            before into ``out_dir`` (other non-empty folders are never deleted).
        transcripts: also write ``transcript.json`` (voices and timed utterances) per conversation;
            not part of the dataset format.
        backchannel_rate: see [`generate_conversation`][unils.train.corpus.generate.generate_conversation].
        overlap_rate: see [`generate_conversation`][unils.train.corpus.generate.generate_conversation].

    Returns:
        The path of ``out_dir``; ``dataset.json`` is written last, so its presence marks a complete corpus.

    Raises:
        ConfigError: bad counts, durations, seed or workers, or ``out_dir`` is not empty.
        MissingDependencyError: ``espeakng-loader`` is not installed (``pip install 'unils[train]'``).
    """
    n_conv = check_count(num_conversations, "num_conversations")
    n_motion = check_count(motion_only, "motion_only")
    n_workers = check_count(workers, "workers", minimum=1)
    seed_ = check_seed(seed)
    if not isinstance(seed_, int):
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(seconds, Sequence) or isinstance(seconds, (str, bytes)) or len(seconds) != 2:
        raise ConfigError(f"seconds must be a (min, max) pair, got {seconds!r}")
    lo, hi = check_seconds(seconds[0], "seconds[0]"), check_seconds(seconds[1], "seconds[1]")
    if lo > hi:
        raise ConfigError(f"seconds must be (min, max) with min <= max, got {seconds!r}")
    if n_conv + n_motion == 0:
        raise ConfigError("nothing to write: num_conversations and motion_only are both 0")
    kwargs = {"backchannel_rate": backchannel_rate, "overlap_rate": overlap_rate}
    for name, value in kwargs.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")

    root = Path(out_dir)
    _prepare_folder(root, overwrite)
    version = espeak_version()  # fails early with a clear message if eSpeak is missing

    durations = np.random.default_rng((seed_, 2)).uniform(lo, hi, size=n_conv)
    mo_durations = np.random.default_rng((seed_, 3)).uniform(lo, hi, size=(n_motion + 1) // 2)
    jobs: list[tuple[Any, ...]] = [
        ("conversation", str(root), f"{i:05d}", (seed_, 0, i), float(durations[i]), kwargs, transcripts)
        for i in range(n_conv)
    ]
    for k in range((n_motion + 1) // 2):
        ids = tuple(f"{j:05d}" for j in (2 * k, 2 * k + 1) if j < n_motion)
        jobs.append(("motion_only", str(root), ids, (seed_, 1, k), float(mo_durations[k]), kwargs))

    started = time.perf_counter()
    results = _run_jobs(jobs, n_workers, progress)
    elapsed = time.perf_counter() - started
    conv_results = results[:n_conv]
    total_frames = sum(r["frames"] for r in conv_results)
    generator = {
        "name": "unils.train.corpus",
        "corpus_version": CORPUS_VERSION,
        "seed": seed_,
        "num_conversations": n_conv,
        "seconds": [lo, hi],
        "motion_only": n_motion,
        "backchannel_rate": float(backchannel_rate),
        "overlap_rate": float(overlap_rate),
        "conversation_seed": "(seed, 0, index)",
        "motion_only_seed": "(seed, 1, index // 2), person index % 2",
        "espeak_ng": version,
        "channels": CHANNELS,
        "blink_interval_s": list(BLINK_INTERVAL),
        "blink_after_sentence_s": list(BLINK_AFTER_SENTENCE),
        "total_conversation_seconds": round(total_frames / FPS, 2),
        "backchannels": int(sum(r.get("backchannels", 0) for r in conv_results)),
    }
    meta = {
        "format": "unils-dataset",
        "version": 1,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "generator": generator,
    }
    tmp = root / "dataset.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, root / "dataset.json")
    logger.info(
        "wrote %d conversation(s) (%.1f min) and %d motion-only clip(s) to %s in %.1f s",
        n_conv, total_frames / FPS / 60, n_motion, root, elapsed,
    )  # fmt: skip
    return root


def _prepare_folder(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        meta = root / "dataset.json"
        ours = False
        if meta.is_file():
            try:
                ours = (
                    json.loads(meta.read_text(encoding="utf-8")).get("generator", {}).get("name")
                    == "unils.train.corpus"
                )
            except (OSError, ValueError, AttributeError):
                ours = False
        if not overwrite:
            raise ConfigError(f"{root}: folder is not empty; choose an empty folder or pass overwrite=True")
        if not ours:
            raise ConfigError(
                f"{root}: not a corpus written by write_corpus (no matching dataset.json); refusing to "
                "delete it, choose an empty folder"
            )
        meta.unlink()
        for sub in ("conversations", "motion_only"):
            if (root / sub).is_dir():
                shutil.rmtree(root / sub)
    root.mkdir(parents=True, exist_ok=True)


def _run_jobs(jobs: list[tuple[Any, ...]], workers: int, progress: bool) -> list[dict[str, Any]]:
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), desc="corpus", unit="clip")
        except ImportError:
            logger.warning("progress=True needs tqdm (pip install 'unils[train]'); continuing without a bar")
    results: list[dict[str, Any]] = []
    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(_run_job(job))
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the parent may hold torch threads and eSpeak state that fork would copy.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                for result in pool.map(_run_job, jobs, chunksize=1):
                    results.append(result)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results
