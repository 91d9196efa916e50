"""A schematic avatar driven by [`Motion`][unils.motion.Motion]: no FLAME model needed, drawn with Pillow.

The face is a cartoon head (ellipsoids for skull, chin, hair and ears; eyes, brows, nose and mouth
on its surface), rotated in 3-D by the motion's head pose and projected orthographically. It shows
what the coefficients do over time (jaw opening, head rotation, gaze, blinks, coarse expression),
not what a FLAME mesh would look like.

What is exact and what is approximate:

* **Head pose** is applied as the axis-angle rotation it is (about a neck pivot), times
  ``head_gain`` (1 by default).
* **Jaw** is the jaw rotation, drawn with gain (``CueMap.jaw_full_open`` radians open the mouth
  fully); the mouth corners open less than its centre.
* **Gaze**: each eye's axis-angle (x = down, y = towards the image's right) turns its eyeball,
  times ``CueMap.gaze_gain`` (2 by default, because real gaze angles are small on a schematic eye).
* **Expression** coefficients are FLAME's PCA weights; without the FLAME model there is no exact way to turn
  them into lips and brows. [`CueMap`][unils.viz.avatar.CueMap] says which coefficient drives which cue. Its
  defaults follow the channel convention of unils' synthetic corpus
  ([`unils.train.corpus`][unils.train.corpus]: 0 mouth opening, 1 lip rounding, 2 lip spreading, 3 lip press,
  4 brow raise, 5 smile, 6 blink), which models trained on that corpus reproduce. For models trained on real
  FLAME fits (the official checkpoints) these coefficients have no such meaning and the mouth shape, brows and
  smile are only a rough impression; jaw, head pose, gaze and the cheek flush (overall magnitude of the
  leading coefficients, "how far from neutral") hold for both.
* **Blinks**: the lids close as the weighted sum of ``CueMap.blink_coefs`` (default: coefficient
  6 alone) rises from ``blink_onset`` (0.3) to ``blink_full`` (0.9); the corpus' blinks peak at
  1.3-1.7. The lids also follow the eyes' vertical rotation (looking down lowers them), as real
  lids do, and turn with the head.

[`SchematicRenderer`][unils.viz.avatar.SchematicRenderer] is the default
[`FrameRenderer`][unils.viz.avatar.FrameRenderer] of
[`unils.viz.render_preview`][unils.viz.preview.render_preview] and ``unils preview``; any callable with the
same signature (a FLAME mesh renderer, say) can replace it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError, MotionError
from ..motion import Motion
from ._deps import require

__all__ = [
    "CueMap",
    "FaceCues",
    "FrameRenderer",
    "SchematicRenderer",
    "face_cues",
    "output_frame_indices",
]

RGB = tuple[int, int, int]


class FrameRenderer(Protocol):
    """What [`unils.viz.render_preview`][unils.viz.preview.render_preview] calls to turn motions into
    pictures.

    ``frames = renderer(motions, size=..., fps=..., activity=..., labels=...)`` yields one ``[H, W, 3]`` uint8
    RGB array per output frame, every frame the same shape with even H and W (video encoders need that).
    Output frame ``k`` shows time ``k / fps`` (see
    [`output_frame_indices`][unils.viz.avatar.output_frame_indices]). A FLAME mesh renderer plugs into the
    preview by implementing this.
    """

    def __call__(
        self,
        motions: Sequence[Motion],
        *,
        size: int = 320,
        fps: float | None = None,
        activity: Sequence[np.ndarray | None] | None = None,
        labels: Sequence[str] | None = None,
    ) -> Iterator[np.ndarray]: ...


def output_frame_indices(num_frames: int, motion_fps: float, fps: float | None = None) -> np.ndarray:
    """Motion frame shown by each output frame when the output runs at ``fps``.

    Output frame ``k`` is at time ``k / fps`` and shows the nearest motion frame; the output lasts
    as long as the motion (``ceil(num_frames * fps / motion_fps)`` frames).

    Args:
        num_frames: frames of the motion.
        motion_fps: frame rate of the motion.
        fps: output frame rate; None = the motion's (every frame once).

    Returns:
        int64 array of motion frame indices.
    """
    if fps is None or fps == motion_fps:
        return np.arange(num_frames, dtype=np.int64)
    if not (math.isfinite(fps) and fps > 0):
        raise MotionError(f"fps must be a positive number, got {fps!r}")
    count = math.ceil(num_frames * fps / motion_fps - 1e-9)
    idx = np.floor(np.arange(count) * (motion_fps / fps) + 0.5).astype(np.int64)
    return np.minimum(idx, max(num_frames - 1, 0))


# ---------------------------------------------------------------------------------------------- cues


@dataclass(frozen=True)
class CueMap:
    """Which motion coefficients drive which cue of the schematic face (see the module notes).

    The defaults follow the channel convention of [`unils.train.corpus`][unils.train.corpus]. Signed cues use
    ``tanh(value / scale)``; one-sided ones ``clip(value / scale, 0, 1)``.

    Attributes:
        jaw_full_open: jaw rotation (radians) drawn as a fully open mouth (open vowels: 0.15-0.2).
        lip_part_coef: expression coefficient whose positive part parts the lips a little more.
        lip_part_scale: value of that coefficient that adds ``lip_part_max`` opening.
        lip_part_max: most opening (0-1) the lips get from it.
        round_coef: coefficient that rounds (narrows) the mouth.
        spread_coef: coefficient that spreads (widens) the mouth.
        press_coef: coefficient that presses the lips together (closes and thins them).
        lip_scale: value of the rounding / spreading / press coefficients that gives the full effect.
        brow_coef: coefficient that raises (positive) or lowers (negative) the brows.
        brow_scale: its scale.
        smile_coef: coefficient that bends the mouth corners (positive = up).
        smile_scale: its scale.
        blink_coefs: coefficients whose weighted sum drives the lids.
        blink_weights: their weights.
        blink_onset: weighted sum at which the lids start to close.
        blink_full: weighted sum at which they are closed.
        lid_rest: lid opening (0-1) of a neutral face looking straight ahead.
        lid_follow: how much the lids follow vertical gaze (opening per radian of eye rotation).
        expressive_coefs: how many leading coefficients measure "how far from neutral".
        expressive_scale: their RMS that counts as fully expressive.
        gaze_gain: multiplies eye rotations before drawing.
        max_gaze: drawn eye rotations are clipped to +-this (radians, after the gain).
    """

    jaw_full_open: float = 0.25
    lip_part_coef: int = 0
    lip_part_scale: float = 1.5
    lip_part_max: float = 0.15
    round_coef: int = 1
    spread_coef: int = 2
    press_coef: int = 3
    lip_scale: float = 1.0
    brow_coef: int = 4
    brow_scale: float = 0.6
    smile_coef: int = 5
    smile_scale: float = 0.5
    blink_coefs: tuple[int, ...] = (6,)
    blink_weights: tuple[float, ...] = (1.0,)
    blink_onset: float = 0.3
    blink_full: float = 0.9
    lid_rest: float = 0.85
    lid_follow: float = 1.5
    expressive_coefs: int = 10
    expressive_scale: float = 1.0
    gaze_gain: float = 2.0
    max_gaze: float = 0.6

    def __post_init__(self) -> None:
        coefs = [
            self.lip_part_coef,
            self.round_coef,
            self.spread_coef,
            self.press_coef,
            self.brow_coef,
            self.smile_coef,
            *self.blink_coefs,
        ]
        if any(not 0 <= c < 100 for c in coefs) or not 1 <= self.expressive_coefs <= 100:
            raise MotionError("CueMap coefficients must index the 100 expression coefficients")
        if len(self.blink_coefs) != len(self.blink_weights):
            raise MotionError("CueMap.blink_coefs and blink_weights must have the same length")
        if not self.blink_full > self.blink_onset:
            raise MotionError("CueMap.blink_full must be greater than blink_onset")
        if (
            min(
                self.jaw_full_open,
                self.lip_part_scale,
                self.lip_scale,
                self.smile_scale,
                self.brow_scale,
                self.expressive_scale,
                self.max_gaze,
            )
            <= 0
        ):
            raise MotionError("CueMap scales must be positive")


@dataclass
class FaceCues:
    """Per-frame drawing cues of one motion (all arrays have T rows).

    Attributes:
        mouth_open: [T] 0 (closed) to 1 (fully open): jaw plus a little lip parting, less when pressed.
        mouth_width: [T] -1 (rounded, narrow) to 1 (spread, wide).
        press: [T] 0 to 1, lips pressed together.
        smile: [T] -1 (corners down) to 1 (corners up).
        brow: [T] -1 (lowered, frowning) to 1 (raised).
        blink: [T] 0 (open) to 1 (closed) from the blink coefficients alone.
        eye_open: [T] final lid opening 0-1 (rest opening, minus blink, following vertical gaze).
        expressive: [T] 0 (neutral) to 1 (RMS of the leading coefficients at ``expressive_scale``).
        head_pose: [T, 3] head rotation, axis-angle radians (as in the motion).
        jaw: [T] jaw rotation in radians (as in the motion).
        gaze: [T, 2, 2] eye rotations (eye, (x, y)) in radians, times ``gaze_gain``, clipped to ``max_gaze``.
    """

    mouth_open: np.ndarray
    mouth_width: np.ndarray
    press: np.ndarray
    smile: np.ndarray
    brow: np.ndarray
    blink: np.ndarray
    eye_open: np.ndarray
    expressive: np.ndarray
    head_pose: np.ndarray
    jaw: np.ndarray
    gaze: np.ndarray


def face_cues(motion: Motion, cue_map: CueMap | None = None) -> FaceCues:
    """Turn a motion into the schematic face's cues (vectorised over frames).

    Args:
        motion: the motion.
        cue_map: the heuristics; None = [`CueMap`][unils.viz.avatar.CueMap] defaults.

    Returns:
        The [`FaceCues`][unils.viz.avatar.FaceCues] of every frame.
    """
    cm = cue_map or CueMap()
    e = motion.expression.astype(np.float64)
    jaw = motion.jaw[:, 0].astype(np.float64)
    lip = np.clip(e[:, cm.lip_part_coef] / cm.lip_part_scale, 0.0, 1.0) * cm.lip_part_max
    press = np.clip(e[:, cm.press_coef] / cm.lip_scale, 0.0, 1.0)
    mouth_open = np.clip(jaw / cm.jaw_full_open + lip, 0.0, 1.0) * (1.0 - 0.8 * press)
    rounding = np.clip(e[:, cm.round_coef] / cm.lip_scale, 0.0, 1.0)
    spreading = np.clip(e[:, cm.spread_coef] / cm.lip_scale, 0.0, 1.0)
    mouth_width = np.clip(spreading - rounding, -1.0, 1.0)
    smile = np.tanh(e[:, cm.smile_coef] / cm.smile_scale)
    brow = np.tanh(e[:, cm.brow_coef] / cm.brow_scale)
    b = e[:, list(cm.blink_coefs)] @ np.asarray(cm.blink_weights, dtype=np.float64)
    blink = np.clip((b - cm.blink_onset) / (cm.blink_full - cm.blink_onset), 0.0, 1.0)
    eyes = motion.eyes.astype(np.float64).reshape(-1, 2, 2)
    gaze = np.clip(eyes * cm.gaze_gain, -cm.max_gaze, cm.max_gaze)
    # Positive x turns the eyes down; the lids follow (lower when looking down, higher when up).
    pitch = eyes[:, :, 0].mean(axis=1)
    rest = np.clip(cm.lid_rest - cm.lid_follow * pitch, 0.15, 1.0)
    eye_open = rest * (1.0 - blink)
    k = cm.expressive_coefs
    expressive = np.clip(np.sqrt(np.mean(e[:, :k] ** 2, axis=1)) / cm.expressive_scale, 0.0, 1.0)
    return FaceCues(
        mouth_open=mouth_open,
        mouth_width=mouth_width,
        press=press,
        smile=smile,
        brow=brow,
        blink=blink,
        eye_open=eye_open,
        expressive=expressive,
        head_pose=motion.head_pose.astype(np.float64),
        jaw=jaw,
        gaze=gaze,
    )


# ---------------------------------------------------------------------------------------------- geometry


def _rodrigues(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector."""
    theta = float(np.linalg.norm(v))
    if theta < 1e-12:
        return np.eye(3)
    k = np.asarray(v, dtype=np.float64) / theta
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(theta) * kx + (1.0 - math.cos(theta)) * (kx @ kx)


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


# Head coordinates: x to the image's right, y up, z towards the viewer; the skull's half-height is 1.
_SKULL = (0.78, 1.0, 0.85)
_NECK_PIVOT = np.array([0.0, -0.95, -0.15])
_JAW_PIVOT = np.array([0.0, -0.05, -0.3])
_JAW_DRAW_MAX = 0.5  # radians of drawn jaw rotation at mouth_open = 1 (exaggerated for legibility)
_EYE_X, _EYE_Y, _EYE_A, _EYE_B, _EYEBALL = 0.29, 0.12, 0.135, 0.075, 0.13
_MOUTH_Y, _MOUTH_W = -0.5, 0.24
_EYE3 = np.eye(3)


def _surface_z(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    a, b, c = _SKULL
    return c * np.sqrt(np.clip(1.0 - (u / a) ** 2 - (v / b) ** 2, 0.0, None))


def _face(u: Any, v: Any, dz: Any = 0.0) -> np.ndarray:
    """Points on the face surface (plus ``dz`` outwards) as [N, 3]."""
    u, v, dz = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float), np.asarray(dz, float))
    return np.stack([u, v, _surface_z(u, v) + dz], axis=-1).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------- styling


@dataclass(frozen=True)
class _Look:
    hair: RGB
    shirt: RGB
    iris: RGB


_LOOKS = (
    _Look(hair=(96, 62, 40), shirt=(66, 118, 198), iris=(70, 110, 160)),
    _Look(hair=(44, 44, 52), shirt=(222, 128, 56), iris=(96, 130, 70)),
    _Look(hair=(150, 110, 60), shirt=(130, 80, 170), iris=(110, 80, 50)),
    _Look(hair=(60, 40, 30), shirt=(60, 160, 140), iris=(60, 90, 140)),
)
_SKIN: RGB = (238, 204, 176)
_BLUSH: RGB = (236, 130, 130)
_INK: RGB = (70, 48, 40)
_LIP: RGB = (196, 96, 98)
_MOUTH: RGB = (88, 22, 34)
_TEETH: RGB = (250, 250, 244)
_WHITE: RGB = (252, 252, 252)
_SPEAK: RGB = (34, 160, 76)
_SPEAK_BG: RGB = (222, 244, 226)
_LISTEN: RGB = (110, 120, 140)
_LISTEN_BG: RGB = (234, 237, 243)
_NEUTRAL_BG: RGB = (240, 240, 240)


def _flat(points: np.ndarray) -> list[float]:
    """[N, 2] points as the flat ``[x0, y0, x1, y1, ...]`` list Pillow draws fastest."""
    return np.asarray(points, dtype=np.float64).ravel().tolist()


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    t = min(max(t, 0.0), 1.0)
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


@lru_cache(maxsize=16)
def _font(px: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(8, px))
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: fixed-size bitmap font
        return ImageFont.load_default()


# ---------------------------------------------------------------------------------------------- renderer


@dataclass
class SchematicRenderer:
    """Draws each participant's schematic avatar side by side, with speaking / listening indicators.

    Call it as a [`FrameRenderer`][unils.viz.avatar.FrameRenderer]: ``for frame in
    SchematicRenderer()(motions, size=320): ...``. Each participant gets a square ``size`` x ``size`` panel
    (label, a SPEAKING / listening badge when their speech activity is known, a green frame while they speak);
    below the panels a timeline shows every participant's speech over the whole clip with a playhead.

    Attributes:
        cue_map: the coefficient-to-cue heuristics ([`CueMap`][unils.viz.avatar.CueMap]).
        head_gain: multiplies the head rotation (1 = as generated).
        max_head_angle: rotations beyond this angle (radians, default 0.7 = 40 degrees) are drawn at it,
            so that implausible poses (an untrained model) keep the face in view; conversational head
            motion stays well within it.
        antialias: draw at twice the size and downsample (smoother edges, about 2x slower).
        timeline: draw the speech timeline under the panels.
    """

    cue_map: CueMap = field(default_factory=CueMap)
    head_gain: float = 1.0
    max_head_angle: float = 0.7
    antialias: bool = True
    timeline: bool = True

    def __post_init__(self) -> None:
        if not (
            math.isfinite(self.head_gain) and math.isfinite(self.max_head_angle) and self.max_head_angle > 0
        ):
            raise ConfigError(
                f"head_gain must be finite and max_head_angle positive, got {self.head_gain!r}, {self.max_head_angle!r}"
            )

    # ------------------------------------------------------------------ public
    def __call__(
        self,
        motions: Sequence[Motion],
        *,
        size: int = 320,
        fps: float | None = None,
        activity: Sequence[np.ndarray | None] | None = None,
        labels: Sequence[str] | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield one RGB frame per output frame (see [`FrameRenderer`][unils.viz.avatar.FrameRenderer]).

        Args:
            motions: one motion per participant (1 to 4), all of the same length and fps.
            size: panel side in pixels (rounded up to even, at least 64).
            fps: output frame rate; None = the motions' frame rate.
            activity: per participant, a bool [T] speech activity (or None when unknown).
            labels: per participant, a short name shown on the panel (default "A", "B", ...).

        Yields:
            uint8 arrays [H, W, 3] with W = participants * size.

        Raises:
            MotionError: no motions, more than 4, or motions of different lengths or frame rates.
        """
        motions, activity, labels = check_participants(motions, activity, labels)
        require("PIL", "pillow")
        size = max(64, int(size) + int(size) % 2)
        cues = [face_cues(m, self.cue_map) for m in motions]
        indices = output_frame_indices(len(motions[0]), motions[0].fps, fps)
        base = timeline_strip(activity, labels, size) if self.timeline else None
        for k, i in enumerate(indices):
            yield self.render_frame(
                cues,
                int(i),
                size=size,
                activity=activity,
                labels=labels,
                time=k / (fps or motions[0].fps),
                duration=motions[0].duration,
                timeline_base=base,
            )

    def still(
        self,
        motions: Sequence[Motion],
        index: int,
        *,
        size: int = 320,
        activity: Sequence[np.ndarray | None] | None = None,
        labels: Sequence[str] | None = None,
    ) -> np.ndarray:
        """One frame (motion frame ``index``) as an RGB array, without drawing the frames before it.

        Args:
            motions: as for [`__call__`][unils.viz.avatar.SchematicRenderer.__call__].
            index: motion frame to draw.
            size: panel side in pixels.
            activity: per participant, bool speech activity or None.
            labels: per participant, a name.

        Returns:
            uint8 [H, W, 3] array, the same picture [`__call__`][unils.viz.avatar.SchematicRenderer.__call__]
            yields for that frame.
        """
        motions, activity, labels = check_participants(motions, activity, labels)
        require("PIL", "pillow")
        if not 0 <= index < len(motions[0]):
            raise IndexError(f"frame {index} out of range for {len(motions[0])} frames")
        size = max(64, int(size) + int(size) % 2)
        cues = [face_cues(m[index], self.cue_map) for m in motions]
        base = timeline_strip(activity, labels, size) if self.timeline else None
        return self.render_frame(
            cues,
            0,
            size=size,
            activity=[None if a is None else a[index : index + 1] for a in activity],
            labels=labels,
            time=index / motions[0].fps,
            duration=motions[0].duration,
            timeline_base=base,
        )

    def render_frame(
        self,
        cues: Sequence[FaceCues],
        index: int,
        *,
        size: int,
        activity: Sequence[np.ndarray | None],
        labels: Sequence[str],
        time: float,
        duration: float,
        timeline_base: Any = None,
    ) -> np.ndarray:
        """Draw motion frame ``index`` of every participant (used by
        [`__call__`][unils.viz.avatar.SchematicRenderer.__call__]).

        Args:
            cues: per participant, the cues from [`face_cues`][unils.viz.avatar.face_cues].
            index: motion frame to draw.
            size: panel side in pixels (even).
            activity: per participant, bool speech activity or None.
            labels: per participant, the panel label.
            time: playhead time in seconds.
            duration: clip length in seconds (for the timeline).
            timeline_base: a prepared timeline image (internal), or None for none.

        Returns:
            uint8 [H, W, 3] array.
        """
        panels = []
        for j, c in enumerate(cues):
            act = activity[j]
            speaking = None if act is None else bool(act[index]) if index < len(act) else False
            panels.append(self._panel(c, index, j, size, speaking, labels[j]))
        return compose_frame(panels, size, timeline_base, time, duration)

    # ------------------------------------------------------------------ panel
    def _panel(self, c: FaceCues, i: int, who: int, size: int, speaking: bool | None, label: str) -> Any:
        from PIL import Image, ImageDraw

        ss = 2 if self.antialias else 1
        big = size * ss
        img = Image.new("RGB", (big, big), panel_background(speaking))
        draw = ImageDraw.Draw(img)
        look = _LOOKS[who % len(_LOOKS)]
        self._draw_body(draw, big, look)
        self._draw_head(img, draw, big, c, i, look, speaking)
        if ss > 1:
            img = img.reduce(ss)
        return decorate_panel(img, speaking, label)

    def _draw_body(self, draw: Any, big: int, look: _Look) -> None:
        s, cx, cy = 0.28 * big, big / 2, 0.5 * big
        # Shoulders and neck do not rotate: the head turns relative to them.
        top = cy + 1.25 * s
        draw.rounded_rectangle(
            [cx - 1.45 * s, top, cx + 1.45 * s, big + s], radius=int(0.5 * s), fill=look.shirt
        )
        draw.rectangle(
            [cx - 0.3 * s, cy + 0.55 * s, cx + 0.3 * s, top + 0.1 * s], fill=_mix(_SKIN, _INK, 0.12)
        )
        draw.pieslice(
            [cx - 0.42 * s, top - 0.3 * s, cx + 0.42 * s, top + 0.3 * s], 0, 180, fill=_mix(_SKIN, _INK, 0.12)
        )

    def _draw_head(
        self, canvas: Any, draw: Any, big: int, c: FaceCues, i: int, look: _Look, speaking: bool | None
    ) -> None:
        s, cx, cy = 0.28 * big, big / 2, 0.5 * big
        pose = c.head_pose[i] * self.head_gain
        angle = float(np.linalg.norm(pose))
        R = _rodrigues(pose if angle <= self.max_head_angle else pose * (self.max_head_angle / angle))
        phi = float(c.mouth_open[i]) * _JAW_DRAW_MAX
        Rj = _rot_x(phi)

        def world(p: np.ndarray, jaw: float | np.ndarray | None = None) -> np.ndarray:
            p = np.atleast_2d(p).astype(float)
            if jaw is not None:
                w = np.broadcast_to(np.asarray(jaw, float), (p.shape[0],))
                q = p - _JAW_PIVOT
                cs, sn = np.cos(phi * w), np.sin(phi * w)
                p = (
                    np.stack([q[:, 0], q[:, 1] * cs - q[:, 2] * sn, q[:, 1] * sn + q[:, 2] * cs], 1)
                    + _JAW_PIVOT
                )
            return (p - _NECK_PIVOT) @ R.T + _NECK_PIVOT

        def img(p: np.ndarray) -> np.ndarray:
            return np.stack([cx + s * p[:, 0], cy - s * p[:, 1]], axis=1)

        def ellipsoid(centre: Any, radii: Any, M: np.ndarray = _EYE3) -> list[float]:
            # Orthographic silhouette of {x : (x - c)^T A (x - c) <= 1}, A = M D M^T: a 2-D ellipse.
            A = (R @ M) @ np.diag(1.0 / np.square(radii)) @ (R @ M).T
            Q = A[:2, :2] - np.outer(A[:2, 2], A[2, :2]) / A[2, 2]
            lam, V = np.linalg.eigh(Q)
            t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
            pts = (V @ (np.stack([np.cos(t), np.sin(t)]) / np.sqrt(lam)[:, None])).T
            centre3 = world(np.asarray(centre, float))[0]
            return _flat(img(np.c_[pts + centre3[:2], np.zeros(len(t))]))

        def facing(p: np.ndarray) -> bool:
            # Features on the far side of the head (strong turns) are not drawn.
            n = (p - np.array([0.0, 0.0, 0.0])) @ R.T
            return bool(n[..., 2].mean() > 0.12)

        lw = max(1, int(0.022 * s))
        hair, skin = look.hair, _mix(_SKIN, (255, 255, 255), 0.0)
        # Back to front: hair, ears, chin and skull (one silhouette with an outline), then features.
        shapes = [
            (ellipsoid((0.0, 0.1, -0.08), (0.84, 1.02, 0.9)), hair),
            (ellipsoid((0.77, 0.02, -0.08), (0.09, 0.19, 0.1)), skin),
            (ellipsoid((-0.77, 0.02, -0.08), (0.09, 0.19, 0.1)), skin),
        ]
        chin_c = Rj @ (np.array([0.0, -0.45, 0.1]) - _JAW_PIVOT) + _JAW_PIVOT
        chin = ellipsoid(chin_c, (0.6, 0.6, 0.66), Rj)
        skull = ellipsoid((0.0, 0.0, 0.0), _SKULL)
        for poly, colour in shapes:
            draw.polygon(poly, fill=colour, outline=_INK, width=lw)
        for poly in (chin, skull):
            draw.polygon(poly, fill=skin, outline=_INK, width=2 * lw)
        draw.polygon(chin, fill=skin)
        draw.polygon(skull, fill=skin)
        # Hair on the skull: from the hairline on the forehead over the top to behind it, drawn as strips
        # between curves of constant angle on the skull. Every vertex is on the skull, so the hair stays
        # inside its silhouette; only the parts facing the viewer are drawn (there is no depth buffer,
        # and hair at the back would otherwise be painted over the face of a head tilted back).
        t = np.linspace(-0.999, 0.999, 31) * _SKULL[0]
        r = np.sqrt(np.clip(1 - (t / _SKULL[0]) ** 2, 1e-9, None))
        hairline = np.minimum(0.6 + 0.1 * np.cos(t * 2.4), _SKULL[1] * r)
        start = np.arccos(np.clip(hairline / (_SKULL[1] * r), -1, 1))  # angle from the top, front > 0
        curves, shown = [], []
        for beta in np.linspace(start, -1.2, 13):
            local = np.stack([t, _SKULL[1] * r * np.cos(beta), _SKULL[2] * r * np.sin(beta)], 1)
            normal = local / np.square(_SKULL)
            nz = (normal @ R.T)[:, 2] / np.linalg.norm(normal, axis=1)
            curves.append(world(local))
            shown.append(nz > -0.1)  # a little past the limb, so the hair reaches the outline
        for (c0, f0), (c1, f1) in itertools.pairwise(zip(curves, shown)):
            for a, b in active_runs(f0 & f1):
                if b - a >= 2:
                    draw.polygon(_flat(img(np.r_[c0[a:b], c1[a:b][::-1]])), fill=hair)

        # Cheeks flush with expressiveness.
        blush = _mix(skin, _BLUSH, 0.7 * float(c.expressive[i]))
        tt = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        for sx in (-1, 1):
            cheek = _face(sx * 0.44 + 0.1 * np.cos(tt), -0.2 + 0.065 * np.sin(tt), 0.005)
            if facing(cheek) and blush != skin:
                draw.polygon(_flat(img(world(cheek))), fill=blush)

        self._draw_eyes(canvas, draw, c, i, look, world, img, facing, lw)
        self._draw_brows(draw, c, i, look, world, img, facing, lw)
        nose = _face([0.0, 0.0, 0.0], [0.1, -0.05, -0.17], [0.0, 0.07, 0.17])
        draw.line(_flat(img(world(nose))), fill=_mix(skin, _INK, 0.55), width=2 * lw, joint="curve")
        base = _face([-0.075, 0.0, 0.075], [-0.19, -0.225, -0.19], [0.03, 0.1, 0.03])
        draw.line(_flat(img(world(base))), fill=_mix(skin, _INK, 0.55), width=2 * lw, joint="curve")
        self._draw_mouth(draw, c, i, world, img, lw)
        if speaking:
            self._draw_voice(draw, world, img, lw)

    def _draw_eyes(self, canvas, draw, c, i, look, world, img, facing, lw) -> None:
        from PIL import Image, ImageDraw

        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        half = len(t) // 2 + 1
        opening = float(c.eye_open[i])
        a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        for k, sx in enumerate((-1.0, 1.0)):
            ex = sx * _EYE_X
            # Visible opening: the almond below the upper lid's edge (lid_v), in face coordinates.
            lid_v = _EYE_Y - _EYE_B + 2 * _EYE_B * opening
            u = ex + _EYE_A * np.cos(t)
            v = np.minimum(_EYE_Y + _EYE_B * np.sin(t), lid_v)
            pts = _face(u, v, 0.02)
            if not facing(pts):
                continue
            poly = img(world(pts))
            if opening > 0.04:
                # Eyeball layer (white, iris, pupil) pasted through the opening's mask: the lids
                # cut the iris without any polygon clipping.
                x0, y0 = np.floor(poly.min(axis=0)).astype(int) - 1
                x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + 2
                layer = Image.new("RGB", (x1 - x0, y1 - y0), _WHITE)
                ldraw = ImageDraw.Draw(layer)
                centre = _face(ex, _EYE_Y, 0.02 - _EYEBALL)[0]
                Re = _rodrigues(np.array([c.gaze[i, k, 0], c.gaze[i, k, 1], 0.0]))
                for radius, colour in ((0.52, look.iris), (0.24, (20, 20, 24))):
                    d = np.stack(
                        [
                            np.sin(radius) * np.cos(a),
                            np.sin(radius) * np.sin(a),
                            np.full_like(a, np.cos(radius)),
                        ],
                        1,
                    )
                    disk = (img(world(centre + _EYEBALL * d @ Re.T))) - (x0, y0)
                    ldraw.polygon(_flat(disk), fill=colour)
                mask = Image.new("L", layer.size, 0)
                ImageDraw.Draw(mask).polygon(_flat(poly - (x0, y0)), fill=255)
                canvas.paste(layer, (int(x0), int(y0)), mask)
                draw.polygon(_flat(poly), outline=_mix(_SKIN, _INK, 0.5), width=lw)
                upper = img(world(_face(u[:half], v[:half], 0.02)))
            else:  # closed: the lid line follows the lower arc
                upper = img(world(_face(u[half - 1 :], _EYE_Y + 0.4 * _EYE_B * np.sin(t[half - 1 :]), 0.02)))
            draw.line(_flat(upper), fill=_INK, width=2 * lw, joint="curve")

    def _draw_brows(self, draw, c, i, look, world, img, facing, lw) -> None:
        raise_ = float(c.brow[i])
        u = np.linspace(0.12, 0.47, 12)
        frac = (u - u[0]) / (u[-1] - u[0])
        v = 0.31 + 0.05 * np.sin(np.pi * frac) + 0.09 * raise_
        if raise_ < 0:  # frowning pulls the inner ends down
            v = v + 0.05 * raise_ * (1.0 - frac)
        for sx in (-1.0, 1.0):
            pts = _face(sx * u, v, 0.01)
            if facing(pts):
                draw.line(_flat(img(world(pts))), fill=look.hair, width=int(4.5 * lw), joint="curve")

    def _draw_mouth(self, draw, c, i, world, img, lw) -> None:
        smile = float(c.smile[i])
        width = float(c.mouth_width[i])
        # Spread widens the mouth by up to 25%, rounding narrows it by up to 35%; smiles widen a little.
        w = _MOUTH_W * (1.0 + (0.25 if width > 0 else 0.35) * width + 0.1 * abs(smile))
        u = np.linspace(-w, w, 25)
        r = (u / w) ** 2
        line = _MOUTH_Y + 0.08 * smile * r  # corners up for a smile, down for a frown
        bow = np.sqrt(np.clip(1 - r, 0, None))
        thick = (1.0 - 0.6 * float(c.press[i])) * (1.0 + 0.3 * max(-width, 0.0))  # pressed lips thin
        upper_out = line + 0.06 * thick * bow**0.7
        lower_out = line - 0.075 * thick * bow**0.7
        # Lower lip moves with the jaw; its middle most, its corners little.
        jaw_w = 0.15 + 0.85 * bow
        up_in = world(_face(u, line, 0.02))
        lo_in = world(_face(u, line, 0.02), jaw=jaw_w)
        up_out = world(_face(u, upper_out, 0.02))
        lo_out = world(_face(u, lower_out, 0.02), jaw=jaw_w)
        if float(c.mouth_open[i]) > 0.02:
            draw.polygon(_flat(img(np.r_[up_in, lo_in[::-1]])), fill=_MOUTH)
            teeth = world(_face(u[4:-4], line[4:-4] - 0.035 * bow[4:-4], 0.015))
            draw.polygon(_flat(img(np.r_[up_in[4:-4], teeth[::-1]])), fill=_TEETH)
        draw.polygon(_flat(img(np.r_[up_out, up_in[::-1]])), fill=_LIP)
        draw.polygon(_flat(img(np.r_[lo_in, lo_out[::-1]])), fill=_LIP)
        draw.line(_flat(img(up_in)), fill=_mix(_LIP, _INK, 0.5), width=lw, joint="curve")

    def _draw_voice(self, draw, world, img, lw) -> None:
        # Sound arcs beside the mouth, on the image's right, while the person speaks.
        centre = img(world(_face(0.0, _MOUTH_Y - 0.05, 0.02)))[0]
        s = draw.im.size[0] * 0.28
        for k, radius in enumerate((0.78, 0.95, 1.12)):
            r = radius * s
            box = [centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r]
            draw.arc(box, -28, 28, fill=_mix(_SPEAK, (255, 255, 255), 0.25 * k), width=3 * lw)


@dataclass(frozen=True)
class Timeline:
    """A prepared speech timeline strip: its image and the x range the clip spans."""

    image: Any
    x0: float
    x1: float


def timeline_strip(activity: Sequence[np.ndarray | None], labels: Sequence[str], size: int) -> Timeline:
    """The speech timeline drawn under the panels (without its playhead), shared by every preview renderer."""
    from PIL import Image, ImageDraw

    n = len(activity)
    row = max(10, size // 14)
    strip = row * n + 2 * max(6, size // 40) + max(10, size // 20)
    strip += strip % 2
    width = n * size
    img = Image.new("RGB", (width, strip), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    font = _font(max(9, int(row * 0.9)))
    # Room for the longest label, but at most a third of the width.
    x0 = min(max(font.getlength(str(x)) for x in labels) + 14, width / 3)
    x1 = width - 10
    y = max(6, size // 40)
    for j, act in enumerate(activity):
        look = _LOOKS[j % len(_LOOKS)]
        draw.text((x0 - 6, y + row / 2), labels[j], fill=(50, 50, 50), font=font, anchor="rm")
        draw.rectangle([x0, y + 1, x1, y + row - 2], fill=(225, 225, 230))
        if act is None:
            draw.text(((x0 + x1) / 2, y + row / 2), "no audio", fill=(130, 130, 130), font=font, anchor="mm")
        else:
            n_frames = max(len(act), 1)
            for start, stop in active_runs(np.asarray(act, bool)):
                xa = x0 + (x1 - x0) * start / n_frames
                xb = x0 + (x1 - x0) * stop / n_frames
                draw.rectangle([xa, y + 1, max(xa + 1, xb), y + row - 2], fill=look.shirt)
        y += row
    return Timeline(img, float(x0), float(x1))


def panel_background(speaking: bool | None) -> RGB:
    """Panel colour: green-tinted while speaking, grey-blue while listening, grey when unknown."""
    return _NEUTRAL_BG if speaking is None else _SPEAK_BG if speaking else _LISTEN_BG


def decorate_panel(img: Any, speaking: bool | None, label: str) -> Any:
    """Draw a panel's label, its SPEAKING / listening badge and its frame onto a square PIL image."""
    from PIL import ImageDraw

    size = img.size[0]
    draw = ImageDraw.Draw(img)
    if speaking:
        draw.rectangle([1, 1, size - 2, size - 2], outline=_SPEAK, width=max(3, size // 60))
    else:
        draw.rectangle([0, 0, size - 1, size - 1], outline=(200, 200, 205), width=1)
    font = _font(max(10, size // 16))
    pad = max(4, size // 40)
    draw.text((pad + 2, pad), label, fill=(40, 40, 40), font=font)
    if speaking is not None:
        text = "SPEAKING" if speaking else "listening"
        colour = _SPEAK if speaking else _LISTEN
        box = draw.textbbox((0, 0), text, font=font)
        w, h = box[2] - box[0], box[3] - box[1]
        x1, y0 = size - pad - 2, pad
        rect = [x1 - w - 2 * pad, y0, x1, y0 + h + pad + 2]
        draw.rounded_rectangle(
            rect, radius=(h + pad) // 2, fill=colour if speaking else None, outline=colour, width=2
        )
        draw.text(
            ((rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2),
            text,
            anchor="mm",
            font=font,
            fill=(255, 255, 255) if speaking else colour,
        )
    return img


def compose_frame(
    panels: Sequence[Any], size: int, timeline: Timeline | None, time: float, duration: float
) -> np.ndarray:
    """Panels side by side, the timeline under them with its playhead at ``time``: one RGB frame."""
    from PIL import Image, ImageDraw

    n = len(panels)
    strip = 0 if timeline is None else timeline.image.size[1]
    frame = Image.new("RGB", (n * size, size + strip), (255, 255, 255))
    for j, panel in enumerate(panels):
        frame.paste(panel, (j * size, 0))
    if timeline is not None:
        frame.paste(timeline.image, (0, size))
        draw = ImageDraw.Draw(frame)
        x0, x1 = timeline.x0, timeline.x1
        x = x0 + (x1 - x0) * (0.0 if duration <= 0 else min(time / duration, 1.0))
        draw.line([(x, size + 2), (x, size + strip - 3)], fill=(200, 30, 40), width=2)
        draw.text(
            (n * size - 6, size + strip - 3),
            f"{time:5.2f} / {duration:.2f} s",
            fill=(60, 60, 60),
            font=_font(max(9, strip // 5)),
            anchor="rd",
        )
    return np.asarray(frame)


def participant_colour(index: int) -> str:
    """The ``#rrggbb`` colour of participant ``index`` (its avatar's shirt), shared by every plot."""
    return "#{:02x}{:02x}{:02x}".format(*_LOOKS[index % len(_LOOKS)].shirt)


def active_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` frame ranges where ``mask`` is true (for shading speech in plots)."""
    padded = np.concatenate([[0], mask.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def check_participants(
    motions: Motion | Sequence[Motion],
    activity: Sequence[np.ndarray | None] | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[list[Motion], list[np.ndarray | None], list[str]]:
    """Validate the participants of a preview and fill in defaults.

    Args:
        motions: one Motion, or 1 to 4 motions of one conversation.
        activity: per participant, speech activity or None (None = unknown for all).
        labels: per participant, a name (default "A", "B", ...).

    Returns:
        ``(motions, activity, labels)`` as lists; activity arrays are bool and as long as the motions
        (padded with False or cut).

    Raises:
        MotionError: no motions, more than 4, different lengths or frame rates, or a list whose
            length does not match the number of motions.
    """
    if isinstance(motions, Motion):
        motions = [motions]
    motions = list(motions)
    if not motions:
        raise MotionError("nothing to draw: give at least one Motion")
    if len(motions) > len(_LOOKS):
        raise MotionError(f"at most {len(_LOOKS)} participants can be drawn side by side, got {len(motions)}")
    for m in motions:
        if not isinstance(m, Motion):
            raise MotionError(f"expected Motion objects, got {type(m).__name__}")
    lengths = [len(m) for m in motions]
    if len(set(lengths)) > 1:
        raise MotionError(
            f"the motions have different lengths ({', '.join(map(str, lengths))} frames); "
            "preview two people of one conversation (same audio length), or cut them to the same length"
        )
    if len({m.fps for m in motions}) > 1:
        raise MotionError(
            f"the motions have different frame rates ({', '.join(f'{m.fps:g}' for m in motions)})"
        )
    if lengths[0] == 0:
        raise MotionError("the motions have no frames")
    n = len(motions)
    acts = [None] * n if activity is None else list(activity)
    names = [chr(ord("A") + j) for j in range(n)] if labels is None else [str(x) for x in labels]
    if len(acts) != n or len(names) != n:
        raise MotionError(
            f"give one activity and one label per motion ({n}), got {len(acts)} and {len(names)}"
        )
    fixed: list[np.ndarray | None] = []
    for a in acts:
        if a is None:
            fixed.append(None)
            continue
        a = np.asarray(a, dtype=bool).reshape(-1)
        fixed.append(np.pad(a, (0, lengths[0] - len(a))) if len(a) < lengths[0] else a[: lengths[0]])
    return motions, fixed, names
