"""Rotations between FLAME's axis-angle and the yaw / pitch / roll that ARKit and Live Link use.

Frame: FLAME's head frame, which is also ARKit's face-anchor frame: +x toward the subject's own
left, +y up, +z out of the face (forward). Euler convention (intrinsic Y-X-Z):

    R = Ry(yaw) @ Rx(-pitch) @ Rz(roll)

so **yaw > 0 turns the face toward the subject's left**, **pitch > 0 tilts it up** and **roll > 0
lowers the subject's right ear** (right-hand rotation about the forward axis). An eye's gaze is the
rotated +z axis; its yaw and pitch are defined the same way (eyes have no roll in FLAME).
All angles are radians; every function is vectorised over leading axes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "axis_angle_to_euler",
    "axis_angle_to_matrix",
    "euler_to_axis_angle",
    "eye_axis_angle_to_gaze",
    "gaze_to_eye_axis_angle",
    "matrix_to_euler",
]


def _skew(v: np.ndarray) -> np.ndarray:
    z = np.zeros(v.shape[:-1], v.dtype)
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([np.stack([z, -w, y], -1), np.stack([w, z, -x], -1), np.stack([-y, x, z], -1)], -2)


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: [..., 3] axis-angle (radians) -> [..., 3, 3] rotation matrices (float64)."""
    v = np.asarray(rotvec, np.float64)
    theta2 = np.sum(v * v, axis=-1)[..., None, None]
    theta = np.sqrt(theta2)
    small = theta2 < 1e-12
    safe = np.where(small, 1.0, theta)
    # Taylor terms below 1e-6 rad, where sin(t)/t and (1-cos t)/t^2 lose precision.
    a = np.where(small, 1.0 - theta2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta2 / 24.0, (1.0 - np.cos(safe)) / np.where(small, 1.0, theta2))
    k = _skew(v)
    return np.eye(3) + a * k + b * (k @ k)


def matrix_to_euler(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices -> [..., 3] (yaw, pitch, roll) in the module's convention."""
    r = np.asarray(matrix, np.float64)
    yaw = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    pitch = np.arcsin(np.clip(r[..., 1, 2], -1.0, 1.0))
    roll = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return np.stack([yaw, pitch, roll], axis=-1)


def axis_angle_to_euler(rotvec: np.ndarray) -> np.ndarray:
    """[..., 3] axis-angle (FLAME head pose) -> [..., 3] (yaw, pitch, roll), radians."""
    return matrix_to_euler(axis_angle_to_matrix(rotvec))


def _quat_mul(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    pw, px, py, pz = np.moveaxis(p, -1, 0)
    qw, qx, qy, qz = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            pw * qw - px * qx - py * qy - pz * qz,
            pw * qx + px * qw + py * qz - pz * qy,
            pw * qy - px * qz + py * qw + pz * qx,
            pw * qz + px * qy - py * qx + pz * qw,
        ],
        axis=-1,
    )


def _axis_quat(angle: np.ndarray, axis: int) -> np.ndarray:
    q = np.zeros(angle.shape + (4,))
    q[..., 0] = np.cos(angle / 2)
    q[..., 1 + axis] = np.sin(angle / 2)
    return q


def _quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    q = np.where(q[..., :1] < 0, -q, q)  # the shorter of the two equivalent rotations
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, q[..., :1])
    scale = np.where(s < 1e-12, 2.0, angle / np.where(s < 1e-12, 1.0, s))
    return q[..., 1:] * scale


def euler_to_axis_angle(euler: np.ndarray) -> np.ndarray:
    """[..., 3] (yaw, pitch, roll) -> [..., 3] axis-angle, the inverse of
    [`axis_angle_to_euler`][unils.arkit.rotations.axis_angle_to_euler].

    Exact inverse for |pitch| < pi/2 and rotation angles below pi.
    """
    e = np.asarray(euler, np.float64)
    q = _quat_mul(_quat_mul(_axis_quat(e[..., 0], 1), _axis_quat(-e[..., 1], 0)), _axis_quat(e[..., 2], 2))
    return _quat_to_axis_angle(q)


def eye_axis_angle_to_gaze(xy: np.ndarray) -> np.ndarray:
    """[..., 2] FLAME eye rotation ``[x, y]`` (axis-angle with z = 0) -> [..., 2] gaze (yaw, pitch)."""
    v = np.asarray(xy, np.float64)
    rotvec = np.concatenate([v, np.zeros(v.shape[:-1] + (1,))], axis=-1)
    gaze = axis_angle_to_matrix(rotvec)[..., :, 2]
    yaw = np.arctan2(gaze[..., 0], gaze[..., 2])
    pitch = np.arcsin(np.clip(gaze[..., 1], -1.0, 1.0))
    return np.stack([yaw, pitch], axis=-1)


def gaze_to_eye_axis_angle(yaw_pitch: np.ndarray) -> np.ndarray:
    """[..., 2] gaze (yaw, pitch) -> [..., 2] FLAME eye ``[x, y]``, the inverse of
    [`eye_axis_angle_to_gaze`][unils.arkit.rotations.eye_axis_angle_to_gaze].

    The rotation returned is the one without twist (axis in the x-y plane), which is what FLAME's
    ``[x, y, 0]`` eye pose can express; exact for gaze angles below pi.
    """
    e = np.asarray(yaw_pitch, np.float64)
    yaw, pitch = e[..., 0], e[..., 1]
    d = np.stack([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)], axis=-1)
    axis = np.stack([-d[..., 1], d[..., 0]], axis=-1)  # +z x d, whose z component is 0
    s = np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.arctan2(s, d[..., 2:3])
    return axis * np.where(s < 1e-12, 1.0, angle / np.where(s < 1e-12, 1.0, s))
