"""Previews of one or two people's motion with their conversation's sound, from objects or files.

:func:`render_preview` takes :class:`~unils.Motion` objects (and optional audio);
:func:`preview_from_files` and :func:`plot_from_files` are what ``unils preview`` and ``unils plot``
run: they read motion files, or generate the motion from audio files with a model first.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..audio import SAMPLE_RATE, AudioInput, load_audio
from ..errors import AudioError, FormatError, MotionError
from ..motion import Motion, load_motion_file
from ..options import GenerationOptions
from .activity import speech_activity
from .avatar import FrameRenderer, SchematicRenderer, check_participants, output_frame_indices
from .video import GIF_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES, mix_audio, write_png, write_video

__all__ = [
    "MOTION_SUFFIXES",
    "PreviewResult",
    "load_motion_file",
    "plot_from_files",
    "preview_from_files",
    "render_preview",
]

logger = logging.getLogger("unils.viz")

#: Suffixes read as motion files (written by :meth:`Motion.save`, read by :meth:`Motion.load`).
MOTION_SUFFIXES = Motion.SUFFIXES
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64")


def _kind(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in MOTION_SUFFIXES:
        return "motion"
    if suffix in _AUDIO_SUFFIXES:
        return "audio"
    raise FormatError(
        f"{Path(path).name}: unknown suffix {suffix or '(none)'!r}; give a motion file "
        f"({', '.join(MOTION_SUFFIXES)}) or an audio file ({', '.join(_AUDIO_SUFFIXES[:6])}, ...)"
    )


@dataclass
class PreviewResult:
    """What :func:`render_preview` wrote.

    Attributes:
        path: the output file.
        frames: frames written (1 for a still image).
        fps: frame rate of the output.
        motions: the participants' motions.
        activity: per participant, the speech activity used for the indicators (None = unknown).
        has_audio: whether a sound track was muxed in.
    """

    path: Path
    frames: int
    fps: float
    motions: list[Motion] = field(repr=False)
    activity: list[np.ndarray | None] = field(repr=False)
    has_audio: bool = False

    def summary(self) -> str:
        """One line for humans: file, frames, duration, participants, sound."""
        kind = "image" if self.frames == 1 and self.path.suffix.lower() in IMAGE_SUFFIXES else "video"
        sound = "with sound" if self.has_audio else "no sound"
        who = f"{len(self.motions)} participant{'s' if len(self.motions) > 1 else ''}"
        if kind == "image":
            return f"wrote {self.path}: one frame, {who}"
        return f"wrote {self.path}: {self.frames} frames ({self.frames / self.fps:.2f} s at {self.fps:g} fps), {who}, {sound}"


def _check_output(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    if out.suffix.lower() not in VIDEO_SUFFIXES + GIF_SUFFIXES + IMAGE_SUFFIXES:
        raise FormatError(
            f"cannot write a preview to {out.name!r}: use {', '.join(VIDEO_SUFFIXES + GIF_SUFFIXES + IMAGE_SUFFIXES)}"
        )
    return out


def _load_track(audio: AudioInput, name: str, sample_rate: int | None) -> np.ndarray:
    return load_audio(audio, sample_rate, target_rate=SAMPLE_RATE, name=name)


def render_preview(
    motions: Motion | Sequence[Motion],
    path: str | os.PathLike[str],
    *,
    audio: Sequence[AudioInput | None] | AudioInput | None = None,
    partner_audio: AudioInput | None = None,
    sample_rate: int | None = None,
    fps: float | None = None,
    size: int = 320,
    labels: Sequence[str] | None = None,
    renderer: FrameRenderer | None = None,
    at: float | None = None,
) -> PreviewResult:
    """Render participants side by side to a video (with their sound), a GIF or a still image.

    Each participant's audio drives their speaking / listening indicator (see
    :func:`~unils.viz.speech_activity`) and is mixed into the video's stereo sound track, panned
    towards their panel. Audio is cut or zero-padded to the motion's duration.

    Args:
        motions: one Motion, or up to 4 of one conversation (same length and fps).
        path: output file: ``.mp4`` / ``.m4v`` / ``.mov`` / ``.mkv`` (H.264 + AAC), ``.gif`` (no sound),
            ``.png`` / ``.jpg`` (one frame, at ``at`` seconds).
        audio: per participant, their own voice (path or samples) or None; a single path / array is
            taken as the first participant's.
        partner_audio: with a single motion, the other person's voice: mixed into the sound (and
            the motion's panel says "listening" while the person does not speak).
        sample_rate: rate of array audio inputs (default 16000); files carry their own.
        fps: output frame rate; None = the motions' (25 for UniLS). Other rates show the nearest frame.
        size: panel side in pixels.
        labels: per participant, a name shown on the panel (default "A", "B", ...).
        renderer: the :class:`~unils.viz.FrameRenderer` (default :class:`~unils.viz.SchematicRenderer`).
        at: for still images, the time in seconds (default: the middle of the clip).

    Returns:
        A :class:`PreviewResult`.

    Raises:
        FormatError: an output suffix that is neither a video, a GIF nor an image.
        MotionError: motions of different lengths or frame rates, or mismatched lists.
        AudioError, AudioFileError: unusable audio.
        MissingDependencyError: the ``viz`` extra is not installed.
    """
    out = _check_output(path)
    suffix = out.suffix.lower()
    motions, _, labels = check_participants(motions, None, labels)
    n, T, motion_fps = len(motions), len(motions[0]), motions[0].fps
    # Tensors are recognised by duck typing (no torch import here), which the checker cannot follow.
    inputs: list[AudioInput | None]
    if audio is None or isinstance(audio, (str, os.PathLike, np.ndarray)) or hasattr(audio, "detach"):
        inputs = [cast("AudioInput | None", audio)] + [None] * (n - 1)
    else:
        inputs = list(cast("Sequence[AudioInput | None]", audio))
    if len(inputs) != n:
        raise AudioError(f"give one audio (or None) per motion: {n} motion(s), {len(inputs)} audio input(s)")
    if partner_audio is not None and n != 1:
        raise AudioError("partner_audio is for a single motion; with two motions pass audio=[a, b]")
    num_samples = round(T / motion_fps * SAMPLE_RATE)
    tracks = [
        None if a is None else _load_track(a, f"audio of {labels[j]}", sample_rate)
        for j, a in enumerate(inputs)
    ]
    activity = [
        None if x is None else speech_activity(x, SAMPLE_RATE, motion_fps, num_frames=T) for x in tracks
    ]
    for j, x in enumerate(tracks):
        if x is not None and abs(x.shape[0] - num_samples) > SAMPLE_RATE / motion_fps:
            logger.warning(
                "preview: %s's audio lasts %.2f s but the motion %.2f s; cut or padded to the motion",
                labels[j],
                x.shape[0] / SAMPLE_RATE,
                T / motion_fps,
            )
    mix_tracks = list(tracks)
    if partner_audio is not None:
        partner = _load_track(partner_audio, "partner audio", sample_rate)
        mix_tracks.append(partner)
        if activity[0] is None:
            activity[0] = np.zeros(T, dtype=bool)
    render = renderer if renderer is not None else SchematicRenderer()
    out_fps = motion_fps if fps is None else float(fps)
    if not (math.isfinite(out_fps) and out_fps > 0):
        raise MotionError(f"fps must be a positive number, got {fps!r}")
    if suffix in IMAGE_SUFFIXES:
        t = 0.5 * T / motion_fps if at is None else float(at)
        i = min(max(round(t * motion_fps), 0), T - 1)
        if hasattr(render, "still"):
            frame = render.still(motions, i, size=size, activity=activity, labels=labels)
        else:  # any FrameRenderer: take its frame i
            frame = next(
                itertools.islice(
                    render(motions, size=size, fps=None, activity=activity, labels=labels), i, None
                )
            )
        write_png(frame, out)
        return PreviewResult(out, 1, out_fps, motions, activity, has_audio=False)
    frames = render(motions, size=size, fps=out_fps, activity=activity, labels=labels)
    sound = mix_audio(mix_tracks, num_samples) if suffix in VIDEO_SUFFIXES else None
    count = write_video(frames, out, out_fps, audio=sound, sample_rate=SAMPLE_RATE)
    expected = len(output_frame_indices(T, motion_fps, out_fps))
    if count != expected:
        logger.warning("preview: the renderer gave %d frames, expected %d", count, expected)
    return PreviewResult(out, count, out_fps, motions, activity, has_audio=sound is not None)


def _labels_from(paths: Sequence[str | os.PathLike[str]]) -> list[str] | None:
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) and all(stems) else None


def _resolve_model(model: Any) -> Any:
    if model is None:
        raise AudioError("audio inputs need a model to generate the motion first (pass --model)")
    if hasattr(model, "generate_both"):
        return model
    if isinstance(model, (str, os.PathLike)):
        from ..model import UniLS

        return UniLS.from_pretrained(model)
    if callable(model):
        return model()
    raise TypeError(
        f"model must be a UniLS, a path / repo id or a zero-argument loader, got {type(model).__name__}"
    )


def _gather(
    inputs: Sequence[str | os.PathLike[str]],
    audio: str | os.PathLike[str] | None,
    partner_audio: str | os.PathLike[str] | None,
    model: Any,
    seed: int | None,
    generate_options: GenerationOptions | dict[str, Any] | None,
) -> tuple[list[Motion], list[Any], Any, list[str] | None]:
    """Motions, per-participant audio, extra partner audio and labels for file inputs."""
    inputs = list(inputs)
    if not 1 <= len(inputs) <= 2:
        raise FormatError(f"give one or two inputs (motion or audio files), got {len(inputs)}")
    kinds = {_kind(p) for p in inputs}
    if len(kinds) > 1:
        raise FormatError("give motion files or audio files, not one of each")
    if kinds == {"motion"}:
        motions = [Motion.load(p) for p in inputs]
        if len(motions) == 2:
            return motions, [audio, partner_audio], None, _labels_from(inputs)
        return motions, [audio], partner_audio, _labels_from(inputs)
    if audio is not None:
        raise AudioError("--audio is for motion inputs; an audio input is already the person's own sound")
    if len(inputs) == 2 and partner_audio is not None:
        raise AudioError("two audio inputs already give both people's sound; drop --partner-audio")
    voices = [*inputs, *([partner_audio] if partner_audio is not None else [])]
    net = _resolve_model(model)
    if len(voices) == 2:
        first, second = net.generate_both(voices[0], voices[1], options=generate_options, seed=seed)
        motions = [first, second]
    else:
        motions = [net.generate(voices[0], options=generate_options, seed=seed)]
    return motions, voices, None, _labels_from(voices)


def preview_from_files(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    audio: str | os.PathLike[str] | None = None,
    partner_audio: str | os.PathLike[str] | None = None,
    model: Any = None,
    seed: int | None = 0,
    generate_options: GenerationOptions | dict[str, Any] | None = None,
    fps: float | None = None,
    size: int = 320,
    labels: Sequence[str] | None = None,
    renderer: FrameRenderer | None = None,
    at: float | None = None,
    save_motion: Callable[[int, Motion], None] | None = None,
) -> PreviewResult:
    """``unils preview``: preview motion files, or audio files turned into motion by a model.

    * Motion inputs (``.npz`` / ``.npy`` / ``.json`` / ``.csv``): one or two people. ``audio`` is the
      first person's voice, ``partner_audio`` the second's (or, with one motion, the other side of
      the conversation, heard but not drawn).
    * Audio inputs: one or two voices (a second voice may come as ``partner_audio``). With two
      voices both people are generated in one pass (:meth:`UniLS.generate_both`) and drawn side by
      side; with one, :meth:`UniLS.generate` without partner.

    Args:
        inputs: one or two paths, all motion files or all audio files.
        output: the preview file (see :func:`render_preview`).
        audio: for motion inputs, the first person's audio.
        partner_audio: the second person's audio.
        model: for audio inputs, a :class:`~unils.UniLS`, a checkpoint path / Hub id, or a
            zero-argument callable returning one (loaded only when needed).
        seed: generation seed (the second person gets ``seed + 1``).
        generate_options: a [GenerationOptions][unils.GenerationOptions] or a dict of its fields
            (``temperature``, ``smooth``...); ``seed`` overrides its seed.
        fps: output frame rate (default: the motion's).
        size: panel side in pixels.
        labels: names on the panels (default: the input files' names).
        renderer: replaces the schematic renderer (e.g. a FLAME mesh renderer).
        at: time of a still image.
        save_motion: called as ``save_motion(index, motion)`` for every generated motion.

    Returns:
        A :class:`PreviewResult`.

    Raises:
        FormatError: unknown input or output suffix, mixed or too many inputs.
        AudioError: inconsistent audio options, or audio inputs without a model.
        MotionError: motions of different lengths.
    """
    _check_output(output)  # before any generation
    motions, tracks, extra, names = _gather(inputs, audio, partner_audio, model, seed, generate_options)
    if save_motion is not None:
        for j, m in enumerate(motions):
            save_motion(j, m)
    return render_preview(
        motions,
        output,
        audio=tracks,
        partner_audio=extra,
        fps=fps,
        size=size,
        labels=labels or names,
        renderer=renderer,
        at=at,
    )


def plot_from_files(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    audio: str | os.PathLike[str] | None = None,
    partner_audio: str | os.PathLike[str] | None = None,
    labels: Sequence[str] | None = None,
    expression_coefs: int = 6,
    dpi: int = 100,
    arkit: Any = None,
) -> Path:
    """``unils plot``: coefficient curves of one or two motion files under their speech activity.

    Args:
        inputs: one or two motion files.
        output: image file (.png, .pdf, .svg...).
        audio: the first person's audio (for the speech shading).
        partner_audio: the second person's audio.
        labels: names (default: the files' names).
        expression_coefs: leading expression coefficients to draw (with ``arkit``: mapped blendshapes).
        dpi: resolution.
        arkit: an :class:`~unils.arkit.ArkitConverter`: plot the ARKit curves (jawOpen, eyeLook*, head
            and gaze angles, mapped expressions) of the motions instead of their FLAME coefficients.

    Returns:
        The output path.

    Raises:
        FormatError: an input that is not a motion file, or more than two.
        MotionError: motions of different lengths.
    """
    inputs = list(inputs)
    if not 1 <= len(inputs) <= 2:
        raise FormatError(f"give one or two motion files, got {len(inputs)}")
    for p in inputs:
        if _kind(p) != "motion":
            raise FormatError(f"{Path(p).name}: unils plot takes motion files ({', '.join(MOTION_SUFFIXES)})")
    motions = [Motion.load(p) for p in inputs]
    motions, _, names = check_participants(motions, None, labels or _labels_from(inputs))
    T, motion_fps = len(motions[0]), motions[0].fps
    voices = [audio, partner_audio][: len(motions)]
    activity = [None if a is None else speech_activity(a, None, motion_fps, num_frames=T) for a in voices]
    from .plot import plot_motion

    out = Path(output)
    if arkit is not None:
        from .arkit_plot import plot_arkit

        animations = [arkit.push(m) for m in motions]
        plot_arkit(
            animations, out, labels=names, activity=activity, expression_channels=expression_coefs, dpi=dpi
        )
        return out
    plot_motion(motions, out, activity=activity, labels=names, expression_coefs=expression_coefs, dpi=dpi)
    return out
