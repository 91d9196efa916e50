"""Writing rendered frames: MP4 (H.264, audio muxed in, via imageio-ffmpeg), GIF (Pillow), PNG.

imageio-ffmpeg ships its own ffmpeg binary, so nothing has to be installed system-wide.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import AudioError, FormatError, MotionError
from ._deps import require

__all__ = [
    "GIF_SUFFIXES",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "mix_audio",
    "write_gif",
    "write_mp4",
    "write_png",
    "write_video",
]

logger = logging.getLogger("unils.viz")

#: Suffixes written as H.264 video with an AAC audio track.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")
#: Suffixes written as animated GIF (no sound).
GIF_SUFFIXES = (".gif",)
#: Suffixes written as a single still frame.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def mix_audio(
    tracks: Sequence[np.ndarray | None], num_samples: int, *, spread: float = 0.6
) -> np.ndarray | None:
    """Mix the participants' mono tracks into one stereo track for a side-by-side preview.

    Participant ``j`` of ``n`` is panned from left (first) to right (last), so each voice comes from
    its panel's side; ``spread`` 0 puts everyone in the middle. Tracks are cut or zero-padded to
    ``num_samples``; the mix is scaled down if it would clip.

    Args:
        tracks: per participant, 1-D float samples at one common rate, or None (no audio).
        num_samples: length of the result.
        spread: 0 (all centred) to 1 (hard left / right).

    Returns:
        float32 [num_samples, 2], or None when every track is None.
    """
    present = [(j, t) for j, t in enumerate(tracks) if t is not None]
    if not present:
        return None
    n = len(tracks)
    out = np.zeros((num_samples, 2), np.float64)
    for j, t in present:
        x = np.asarray(t, np.float64).reshape(-1)[:num_samples]
        pan = 0.0 if n == 1 else spread * (2.0 * j / (n - 1) - 1.0)  # -1 left .. 1 right
        # Balance-style panning: the near side keeps full level, the far side is attenuated.
        out[: len(x), 0] += min(1.0, 1.0 - pan) * x
        out[: len(x), 1] += min(1.0, 1.0 + pan) * x
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 0.99:
        out *= 0.99 / peak
    return out.astype(np.float32)


def _first(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise MotionError("no frames to write") from None
    first = np.asarray(first)
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise MotionError(f"frames must be uint8 [H, W, 3] RGB arrays, got {first.dtype} {list(first.shape)}")
    return first, it


def write_mp4(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    fps: float,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    quality: float = 7.0,
) -> int:
    """Encode frames as H.264 (yuv420p, plays everywhere) and mux ``audio`` as AAC.

    Args:
        frames: uint8 [H, W, 3] RGB arrays of one shape with even H and W.
        path: destination (.mp4, .m4v, .mov, .mkv).
        fps: frame rate of the video.
        audio: float samples [N] or [N, channels] in [-1, 1]; None = silent video. The track is cut
            or zero-padded to the video's length (frames / fps).
        sample_rate: rate of ``audio`` in Hz.
        quality: 0 (smallest) to 10 (best), imageio-ffmpeg's scale.

    Returns:
        The number of frames written.

    Raises:
        MissingDependencyError: imageio-ffmpeg (or soundfile for the audio) is missing.
        MotionError: no frames, or frames that are not RGB uint8 of one shape.
    """
    ffmpeg = require("imageio_ffmpeg", "imageio-ffmpeg")
    first, rest = _first(frames)
    h, w = first.shape[:2]
    if h % 2 or w % 2:
        raise MotionError(f"H.264 needs even frame sizes, got {w}x{h}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="unils-preview-") as tmp:
        audio_path = None
        if audio is not None:
            audio_path = os.path.join(tmp, "audio.wav")
            _write_wav(audio_path, audio, sample_rate)
        writer = ffmpeg.write_frames(
            str(path),
            (w, h),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=quality,
            macro_block_size=2,
            ffmpeg_log_level="error",
            audio_path=audio_path,
            audio_codec="aac" if audio_path else None,
            # 48 kHz AAC plays everywhere (some players refuse 16 kHz); -shortest: AAC padding may
            # otherwise run a few samples past the last frame.
            output_params=["-movflags", "+faststart"] + (["-ar", "48000", "-shortest"] if audio_path else []),
        )
        writer.send(None)
        count = 0
        try:
            for frame in _checked(first, rest):
                writer.send(np.ascontiguousarray(frame))
                count += 1
        finally:
            writer.close()
    if audio is not None:
        _log_length(audio, sample_rate, count, fps)
    return count


def _checked(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    for k, frame in enumerate(rest, start=1):
        frame = np.asarray(frame)
        if frame.shape != first.shape or frame.dtype != np.uint8:
            raise MotionError(
                f"frame {k} has {frame.dtype} {list(frame.shape)}, frame 0 {first.dtype} {list(first.shape)}"
            )
        yield frame


def _write_wav(path: str, audio: np.ndarray, sample_rate: int) -> None:
    sf = require("soundfile")
    data = np.asarray(audio, dtype=np.float32)
    if data.ndim not in (1, 2) or not np.isfinite(data).all():
        raise AudioError(
            f"preview audio must be finite [N] or [N, channels] samples, got shape {list(data.shape)}"
        )
    # 16-bit PCM: every ffmpeg build reads it, and it is the AAC encoder's input precision anyway.
    sf.write(path, np.clip(data, -1.0, 1.0), int(sample_rate), subtype="PCM_16")


def _log_length(audio: np.ndarray, sample_rate: int, frames: int, fps: float) -> None:
    video_s, audio_s = frames / fps, np.asarray(audio).shape[0] / sample_rate
    if abs(video_s - audio_s) > 1.0 / fps:
        logger.info("preview: audio lasts %.2f s, video %.2f s; the longer one is cut", audio_s, video_s)


def write_gif(
    frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: float, *, colors: int = 128
) -> int:
    """Write an animated GIF (looping, no sound) with Pillow.

    GIF frame times are multiples of 10 ms, so 25 fps (40 ms) is exact and other rates are rounded.
    Pillow merges consecutive identical frames into one longer frame. GIFs hold every frame
    uncompressed in memory while writing: keep them to short clips (or lower ``fps``).

    Args:
        frames: uint8 [H, W, 3] RGB arrays of one shape.
        path: destination .gif.
        fps: frame rate.
        colors: palette size per frame (2-256).

    Returns:
        The number of frames given.

    Raises:
        MissingDependencyError: Pillow is missing.
        MotionError: no frames, or frames that are not RGB uint8 of one shape.
    """
    require("PIL", "pillow")
    from PIL import Image

    first, rest = _first(frames)
    count = 0

    def images() -> Iterator[Image.Image]:
        nonlocal count
        for frame in _checked(first, rest):
            count += 1
            # One adaptive palette per frame keeps the flat cartoon colours exact.
            yield Image.fromarray(frame).quantize(colors=int(colors), method=Image.Quantize.MEDIANCUT)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = images()
    head = next(gen)
    head.save(
        path,
        format="GIF",
        save_all=True,
        append_images=gen,
        duration=round(1000.0 / fps),
        loop=0,
        optimize=False,
        disposal=1,
    )
    return count


def write_png(frame: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write one RGB frame as a still image (PNG or JPEG by suffix)."""
    require("PIL", "pillow")
    from PIL import Image

    first, _ = _first([frame])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(first).save(path)


def write_video(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    fps: float,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> int:
    """Write frames to ``path``, choosing the format by suffix.

    ``.mp4`` / ``.m4v`` / ``.mov`` / ``.mkv``: H.264 with ``audio`` muxed in
    ([`write_mp4`][unils.viz.video.write_mp4]); ``.gif``: animated GIF without sound
    ([`write_gif`][unils.viz.video.write_gif]; ``audio`` is ignored).

    Args:
        frames: uint8 [H, W, 3] RGB arrays.
        path: destination.
        fps: frame rate.
        audio: float samples [N] or [N, channels] for video files.
        sample_rate: rate of ``audio``.

    Returns:
        The number of frames written.

    Raises:
        FormatError: the suffix is not one of [`VIDEO_SUFFIXES`][unils.viz.video.VIDEO_SUFFIXES] or
            [`GIF_SUFFIXES`][unils.viz.video.GIF_SUFFIXES].
    """
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return write_mp4(frames, path, fps, audio=audio, sample_rate=sample_rate)
    if suffix in GIF_SUFFIXES:
        if audio is not None:
            logger.info("preview: GIF has no sound; the audio is only used for the speaking indicators")
        return write_gif(frames, path, fps)
    raise FormatError(
        f"cannot write a video to {Path(path).name!r}: use one of {', '.join(VIDEO_SUFFIXES + GIF_SUFFIXES)}"
    )
