"""FLAME motion -> ARKit weights: [`to_arkit`][unils.arkit.convert.to_arkit] for a whole motion,
[`ArkitConverter`][unils.arkit.convert.ArkitConverter] for streams.

Exact (no FLAME file): head yaw / pitch / roll from the head-pose axis-angle and each eye's gaze from its
rotation. Approximate but documented: ``jawOpen`` is the jaw angle over ``jaw_full_open``, the ``eyeLook*``
weights are gaze angles over ``eye_full_angle`` (both clipped to [0, 1]). Everything else (blinks, brows,
smiles, lips) needs an [`ExpressionMap`][unils.arkit.expression_map.ExpressionMap]: the user's, or for the
bundled demo model the one shipped with it (``expression_map="demo"``, or
[`expression_map_for`][unils.arkit.expression_map.expression_map_for] of the model).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..errors import ArkitError
from ..motion import Motion
from .animation import ArkitAnimation
from .expression_map import (
    BUNDLED_MAPS,
    ExpressionMap,
    bundled_expression_map,
    load_expression_map,
    solve_bounded_least_squares,
)
from .names import NUM_BLENDSHAPES, arkit_index, mirror_index
from .rotations import axis_angle_to_euler, eye_axis_angle_to_gaze

__all__ = ["DEFAULT_EYE_FULL_ANGLE", "DEFAULT_JAW_FULL_OPEN", "ArkitConverter", "to_arkit"]

#: Jaw rotation (radians, motion column 103) that maps to ``jawOpen = 1`` (about 20 degrees).
DEFAULT_JAW_FULL_OPEN = 0.35
#: Gaze angle (radians) that maps to an ``eyeLook*`` weight of 1 (30 degrees).
DEFAULT_EYE_FULL_ANGLE = math.radians(30.0)

_JAW_OPEN = arkit_index("jawOpen")
# (channel, eye 0 = left / 1 = right, component 0 = yaw / 1 = pitch, sign): yaw > 0 looks toward the
# subject's left, which is "out" for the left eye and "in" for the right eye.
_EYE_LOOK = (
    ("eyeLookOutLeft", 0, 0, 1.0), ("eyeLookInLeft", 0, 0, -1.0),
    ("eyeLookUpLeft", 0, 1, 1.0), ("eyeLookDownLeft", 0, 1, -1.0),
    ("eyeLookInRight", 1, 0, 1.0), ("eyeLookOutRight", 1, 0, -1.0),
    ("eyeLookUpRight", 1, 1, 1.0), ("eyeLookDownRight", 1, 1, -1.0),
)  # fmt: skip
_FIXED = np.array([_JAW_OPEN, *(arkit_index(c) for c, *_ in _EYE_LOOK)])
_FREE = np.array([i for i in range(NUM_BLENDSHAPES) if i not in set(_FIXED.tolist())])


def _positive(value: Any, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not (math.isfinite(float(value)) and float(value) > 0)
    ):
        raise ArkitError(f"{name} must be a positive angle in radians, got {value!r}")
    return float(value)


def _non_negative(value: Any, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not (math.isfinite(float(value)) and float(value) >= 0)
    ):
        raise ArkitError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


class ArkitConverter:
    """Converts FLAME motion to [`ArkitAnimation`][unils.arkit.animation.ArkitAnimation], whole or chunk by
    chunk.

    Every frame is converted on its own, so pushing a motion in pieces and concatenating the
    results gives the same animation as converting it at once ([`to_arkit`][unils.arkit.convert.to_arkit]).

    Args:
        expression_map: an [`ExpressionMap`][unils.arkit.expression_map.ExpressionMap], a path to a map file
            (see [`load_expression_map`][unils.arkit.expression_map.load_expression_map]), ``"demo"`` (the map
            shipped with the bundled demo model, when no file of that name exists) or None (expression
            channels stay 0).
        jaw_full_open: jaw angle (radians) mapped to ``jawOpen = 1``; ``jawOpen`` is
            ``clip(jaw / jaw_full_open, 0, 1)``, 0 at rest and non-decreasing in the jaw angle.
        eye_full_angle: gaze angle (radians) mapped to ``eyeLook* = 1``.
        symmetry: weight of the penalty on left/right differences in the least-squares solve,
            relative to the map's mean squared row norm.
        small_weight: weight of the penalty on large weights (ridge), same scale.
        iterations: projected-gradient iterations per frame.

    Example:
        ```python
        conv = ArkitConverter()
        parts = [conv.push(chunk) for chunk in chunks]   # chunks: Motions as a stream emits them
        anim = ArkitAnimation.concatenate(parts)
        ```

    Raises:
        ArkitError: a bad option or map.
    """

    def __init__(
        self,
        expression_map: ExpressionMap | str | os.PathLike[str] | None = None,
        *,
        jaw_full_open: float = DEFAULT_JAW_FULL_OPEN,
        eye_full_angle: float = DEFAULT_EYE_FULL_ANGLE,
        symmetry: float = 0.01,
        small_weight: float = 0.001,
        iterations: int = 200,
    ) -> None:
        if isinstance(expression_map, str) and expression_map in BUNDLED_MAPS.values():
            if not os.path.exists(expression_map):
                expression_map = bundled_expression_map(expression_map)
        if expression_map is not None and not isinstance(expression_map, ExpressionMap):
            expression_map = load_expression_map(expression_map)
        self.expression_map = expression_map
        self.jaw_full_open = _positive(jaw_full_open, "jaw_full_open")
        self.eye_full_angle = _positive(eye_full_angle, "eye_full_angle")
        self.symmetry = _non_negative(symmetry, "symmetry")
        self.small_weight = _non_negative(small_weight, "small_weight")
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ArkitError(f"iterations must be an int >= 0, got {iterations!r}")
        self.iterations = int(iterations)
        self.frames_converted = 0
        self._hessian: np.ndarray | None = None
        if expression_map is not None and expression_map.direction == "arkit_to_flame":
            self._hessian = self._normal_matrix(expression_map.matrix[_FREE])

    def _normal_matrix(self, basis: np.ndarray) -> np.ndarray:
        n = basis.shape[0]
        gram = basis @ basis.T
        scale = max(float(np.trace(gram)) / n, 1e-12)
        free = _FREE.tolist()
        mirror = mirror_index()
        diff = []
        for a, idx in enumerate(free):
            b = mirror[idx]
            if b != idx and b in free and idx < b:
                row = np.zeros(n)
                row[a], row[free.index(b)] = 1.0, -1.0
                diff.append(row)
        d = np.array(diff) if diff else np.zeros((0, n))
        return gram + scale * (self.symmetry * d.T @ d + max(self.small_weight, 1e-9) * np.eye(n))

    def push(self, motion: Motion | Any) -> ArkitAnimation:
        """Convert some frames.

        Args:
            motion: a [`Motion`][unils.motion.Motion] or an array [T, 108] in the official layout (at 25 fps).

        Returns:
            The ARKit animation of these frames.

        Raises:
            MotionError: an array that is not a valid motion.
        """
        if not isinstance(motion, Motion):
            motion = Motion.from_array(motion)
        t = len(motion)
        weights = np.zeros((t, NUM_BLENDSHAPES))
        head = axis_angle_to_euler(motion.head_pose)
        eyes = eye_axis_angle_to_gaze(motion.eyes.reshape(t, 2, 2))
        weights[:, _JAW_OPEN] = np.clip(motion.jaw[:, 0] / self.jaw_full_open, 0.0, 1.0)
        for name, eye, comp, sign in _EYE_LOOK:
            weights[:, arkit_index(name)] = np.clip(sign * eyes[:, eye, comp] / self.eye_full_angle, 0.0, 1.0)
        m = self.expression_map
        if m is not None and t:
            targets = m.flame_targets(motion.expression, motion.jaw)
            if m.direction == "flame_to_arkit":
                weights[:, _FREE] = np.clip(targets @ m.matrix[:, _FREE] + m.bias[_FREE], 0.0, 1.0)
            else:
                assert self._hessian is not None
                residual = targets - m.bias - weights[:, _FIXED] @ m.matrix[_FIXED]
                linear = residual @ m.matrix[_FREE].T
                weights[:, _FREE] = solve_bounded_least_squares(
                    self._hessian, linear, iterations=self.iterations
                )
        self.frames_converted += t
        return ArkitAnimation(weights.astype(np.float32), head, eyes, motion.fps, m is not None)


def to_arkit(
    motion: Motion | Any,
    *,
    expression_map: ExpressionMap | str | os.PathLike[str] | None = None,
    jaw_full_open: float = DEFAULT_JAW_FULL_OPEN,
    eye_full_angle: float = DEFAULT_EYE_FULL_ANGLE,
    symmetry: float = 0.01,
    small_weight: float = 0.001,
    iterations: int = 200,
) -> ArkitAnimation:
    """Convert a FLAME motion to ARKit-52 weights, head rotation and gaze.

    Args:
        motion: a [`Motion`][unils.motion.Motion] or a [T, 108] array.
        expression_map: see [`ArkitConverter`][unils.arkit.convert.ArkitConverter]: a map, a map file,
            ``"demo"`` for motion of the bundled demo model; None leaves expression channels at 0 and the
            result's ``expression_mapped`` False.
        jaw_full_open: see [`ArkitConverter`][unils.arkit.convert.ArkitConverter].
        eye_full_angle: see [`ArkitConverter`][unils.arkit.convert.ArkitConverter].
        symmetry: see [`ArkitConverter`][unils.arkit.convert.ArkitConverter].
        small_weight: see [`ArkitConverter`][unils.arkit.convert.ArkitConverter].
        iterations: see [`ArkitConverter`][unils.arkit.convert.ArkitConverter].

    Returns:
        The [`ArkitAnimation`][unils.arkit.animation.ArkitAnimation], frame for frame, at the motion's fps.

    Example:
        ```python
        from unils import UniLS
        from unils.arkit import to_arkit

        motion = UniLS.from_pretrained("demo").generate("me.wav", partner_audio="you.wav", seed=0)
        to_arkit(motion, expression_map="demo").save("me_arkit.csv")   # Live Link Face CSV
        ```
    """
    return ArkitConverter(
        expression_map, jaw_full_open=jaw_full_open, eye_full_angle=eye_full_angle, symmetry=symmetry,
        small_weight=small_weight, iterations=iterations,
    ).push(motion)  # fmt: skip
