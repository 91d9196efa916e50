"""FLAME 2020 as UniLS uses it: a user-supplied model file turned into batched vertices in torch.

unils never ships FLAME; users download FLAME 2020 under its licence and point unils to
``generic_model.pkl`` (the official pickle) or to a converted ``.pt``, which
[`load_flame_arrays`][unils.flame.io.load_flame_arrays] reads safely ([`unils.flame.io`][unils.flame.io]).

Motion -> FLAME pose (official layout, see [`unils.motion`][unils.motion]):

| FLAME joint | pose (axis-angle) | from the 108-d motion |
|---|---|---|
| 0 global | ``head_pose`` (3) | columns 100-102 (zeroed for the metrics) |
| 1 neck | ``[0, 0, 0]`` | never modelled |
| 2 jaw | ``[jaw, 0, 0]`` | column 103 |
| 3 eye 1 | ``[x, y, 0]`` | columns 104-105 |
| 4 eye 2 | ``[x, y, 0]`` | columns 106-107 |

Expression coefficients are FLAME's 100 expression components; shape is zero unless given.
Vertices come out in metres (FLAME's unit); the metrics convert to millimetres.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import MOTION_DIM
from ..errors import FlameError, MotionError
from .io import as_plain_array, load_flame_arrays

__all__ = [
    "FlameModel",
    "pose_from_motion",
    "batch_rodrigues",
    "FLAME_NUM_VERTICES",
    "FLAME_NUM_JOINTS",
    "NUM_EXPRESSION",
]

logger = logging.getLogger("unils.flame")

#: Vertices of the FLAME 2020 topology (the metrics' index lists refer to it).
FLAME_NUM_VERTICES = 5023
#: FLAME joints: global (root), neck, jaw, eye 1, eye 2.
FLAME_NUM_JOINTS = 5
#: Expression components driven by the motion (columns 0-99).
NUM_EXPRESSION = 100


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------
def batch_rodrigues(rotvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors to rotation matrices.

    As in FLAME's reference LBS, the angle is ``|r + 1e-8|`` so that a zero vector gives the identity
    without dividing by zero.

    Args:
        rotvec: [..., 3] axis-angle (radians).

    Returns:
        [..., 3, 3] rotation matrices.
    """
    angle = torch.linalg.vector_norm(rotvec + 1e-8, dim=-1, keepdim=True)
    axis = rotvec / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*rotvec.shape[:-1], 3, 3)
    sin = torch.sin(angle)[..., None]
    cos = torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + sin * k + (1 - cos) * (k @ k)


def _as_motion_tensor(motion: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    from ..motion import Motion

    if isinstance(motion, Motion):
        motion = motion.to_array()
    if isinstance(motion, torch.Tensor):
        t = motion.to(device=device, dtype=dtype)
    else:
        arr = np.asarray(motion)
        if arr.dtype.kind not in "iuf":
            raise MotionError(f"motion must be a numeric array, got dtype {arr.dtype}")
        t = torch.as_tensor(arr, dtype=dtype, device=device)
    if t.ndim < 1 or t.shape[-1] != MOTION_DIM:
        raise MotionError(f"motion must have shape [..., {MOTION_DIM}], got {list(t.shape)}")
    return t


def pose_from_motion(motion: Any, with_head_pose: bool = True) -> torch.Tensor:
    """FLAME's 15-d pose (5 joints x axis-angle) from the official 108-d motion layout.

    Args:
        motion: [`Motion`][unils.motion.Motion], numpy array or tensor [..., 108].
        with_head_pose: use columns 100-102 as the global rotation; False zeroes it (as the metrics do).

    Returns:
        [..., 15]: global (3), neck (zeros), jaw ``[c103, 0, 0]``, eye 1 ``[c104, c105, 0]``,
        eye 2 ``[c106, c107, 0]``. Same dtype/device as a tensor input (float32 otherwise).
    """
    if isinstance(motion, torch.Tensor):
        m = _as_motion_tensor(
            motion, motion.dtype if motion.is_floating_point() else torch.float32, motion.device
        )
    else:
        m = _as_motion_tensor(motion, torch.float32, torch.device("cpu"))
    zero = torch.zeros_like(m[..., :1])
    head = m[..., 100:103] if with_head_pose else torch.zeros_like(m[..., 100:103])
    parts = [
        head,
        zero,
        zero,
        zero,
        m[..., 103:104],
        zero,
        zero,
        m[..., 104:106],
        zero,
        m[..., 106:108],
        zero,
    ]
    return torch.cat(parts, dim=-1)


class FlameModel(nn.Module):
    """FLAME (linear blend skinning with shape/expression blendshapes and pose correctives), batched in torch.

    Build it from a file you downloaded with [`from_file`][unils.flame.model.FlameModel.from_file]; unils
    contains no FLAME data. All arrays are buffers, so ``.to(device)`` moves the model; nothing is trainable.

    Args:
        v_template: [V, 3] template vertices (metres).
        shapedirs: [V, 3, K] shape then expression blendshapes; the last ``num_expression`` are expression.
        posedirs: [V, 3, P], [P, 3V] or [3V, P] pose-corrective blendshapes, ``P = 9 * (joints - 1)``.
        J_regressor: [J, V] dense joint regressor.
        weights: [V, J] skinning weights.
        kintree_table: [2, J] FLAME kinematic tree (row 0 = parents) or [J] parents (root -1).
        faces: [F, 3] triangle vertex indices.
        num_expression: number of expression components at the end of ``shapedirs`` (100 for FLAME 2020).
        dtype: storage/computation dtype of the float buffers.

    Raises:
        FlameError: inconsistent shapes, not 5 joints, or a parent that does not precede its child.
    """

    # Buffers, declared so that the type checker sees tensors instead of ``Module.__getattr__``'s union.
    v_template: torch.Tensor
    shapedirs: torch.Tensor
    exprdirs: torch.Tensor
    posedirs: torch.Tensor
    J_regressor: torch.Tensor
    lbs_weights: torch.Tensor
    faces: torch.Tensor
    parents: torch.Tensor

    def __init__(
        self,
        v_template: Any,
        shapedirs: Any,
        posedirs: Any,
        J_regressor: Any,
        weights: Any,
        kintree_table: Any,
        faces: Any,
        num_expression: int = NUM_EXPRESSION,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        arr = {
            k: as_plain_array(v, k)
            for k, v in dict(
                v_template=v_template,
                shapedirs=shapedirs,
                posedirs=posedirs,
                J_regressor=J_regressor,
                weights=weights,
                kintree_table=kintree_table,
                f=faces,
            ).items()
        }
        v_t = arr["v_template"]
        if v_t.ndim != 2 or v_t.shape[1] != 3:
            raise FlameError(f"v_template must be [V, 3], got {list(v_t.shape)}")
        nv = v_t.shape[0]
        sd = arr["shapedirs"]
        if sd.ndim != 3 or sd.shape[:2] != (nv, 3):
            raise FlameError(f"shapedirs must be [{nv}, 3, K], got {list(sd.shape)}")
        if sd.shape[2] < num_expression:
            raise FlameError(
                f"shapedirs has {sd.shape[2]} components, fewer than the {num_expression} expression ones"
            )
        jr = arr["J_regressor"]
        if jr.ndim != 2 or jr.shape[1] != nv:
            raise FlameError(f"J_regressor must be [J, {nv}], got {list(jr.shape)}")
        nj = jr.shape[0]
        if nj != FLAME_NUM_JOINTS:
            raise FlameError(
                f"FLAME has {FLAME_NUM_JOINTS} joints (global, neck, jaw, eyes); this model has {nj}"
            )
        w = arr["weights"]
        if w.shape != (nv, nj):
            raise FlameError(f"weights must be [{nv}, {nj}], got {list(w.shape)}")
        npose = 9 * (nj - 1)
        pd = arr["posedirs"]
        if pd.ndim == 3 and pd.shape == (nv, 3, npose):
            pd = pd.reshape(nv * 3, npose).T
        elif pd.shape == (npose, nv * 3):
            pass
        elif pd.shape == (nv * 3, npose):
            pd = pd.T
        else:
            raise FlameError(
                f"posedirs must be [{nv}, 3, {npose}] (or [{npose}, {nv * 3}]), got {list(pd.shape)}"
            )
        kt = arr["kintree_table"]
        parents = (kt[0] if kt.ndim == 2 else kt).astype(np.int64)
        if parents.shape != (nj,):
            raise FlameError(f"kintree_table must be [2, {nj}] or [{nj}], got {list(kt.shape)}")
        parents = parents.copy()
        parents[0] = -1  # stored as 2**32 - 1 in the official file
        if any(not 0 <= parents[i] < i for i in range(1, nj)):
            raise FlameError(f"kinematic tree parents {parents.tolist()} are not in topological order")
        f = arr["f"]
        if f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
            raise FlameError(f"faces must be an integer [F, 3] array, got {f.dtype} {list(f.shape)}")
        if f.size and (f.min() < 0 or f.max() >= nv):
            raise FlameError(f"faces index vertices outside 0..{nv - 1}")

        def buf(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64)).to(dtype)

        ns = sd.shape[2] - num_expression
        flat = sd.reshape(nv * 3, -1).T  # [K, 3V]: blendshape offsets become one matmul
        self.num_shape = ns
        self.num_expression = num_expression
        self.register_buffer("v_template", buf(v_t))
        self.register_buffer("shapedirs", buf(flat[:ns]))
        self.register_buffer("exprdirs", buf(flat[ns:]))
        self.register_buffer("posedirs", buf(pd))
        self.register_buffer("J_regressor", buf(jr))
        self.register_buffer("lbs_weights", buf(w))
        self.register_buffer("faces", torch.as_tensor(f.astype(np.int64)))
        self.register_buffer("parents", torch.as_tensor(parents))
        self._parents = parents.tolist()

    # ------------------------------------------------------------------ construction / files
    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> FlameModel:
        """Load a user-supplied FLAME model.

        Args:
            path: official FLAME 2020 ``generic_model.pkl`` (read without chumpy/scipy) or a ``.pt``
                written by [`save`][unils.flame.model.FlameModel.save] / the official converter.
            device: where to put the buffers (default CPU).
            dtype: float dtype of the buffers and of the computation.

        Returns:
            The model in eval mode.

        Raises:
            FileNotFoundError: no file at ``path``.
            FlameError: the file is not a usable FLAME model.
        """
        arrays = load_flame_arrays(path)
        model = cls(
            arrays["v_template"],
            arrays["shapedirs"],
            arrays["posedirs"],
            arrays["J_regressor"],
            arrays["weights"],
            arrays["kintree_table"],
            arrays["f"],
            dtype=dtype,
        )
        logger.info(
            "loaded FLAME model %s: %d vertices, %d faces", path, model.num_vertices, model.faces.shape[0]
        )
        return model.to(device).eval() if device is not None else model.eval()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model as a ``.pt`` dict of tensors (loadable by
        [`from_file`][unils.flame.model.FlameModel.from_file] without pickles of code).

        The file holds FLAME data: keep it under FLAME's licence and out of repositories.

        Args:
            path: destination file.
        """
        nv = self.num_vertices
        dirs = torch.cat([self.shapedirs, self.exprdirs]).T.reshape(nv, 3, -1)
        state = {
            "v_template": self.v_template.detach().cpu().clone(),
            "shapedirs": dirs.detach().cpu().contiguous(),
            "posedirs": self.posedirs.T.reshape(nv, 3, -1).detach().cpu().contiguous(),
            "J_regressor": self.J_regressor.detach().cpu().clone(),
            "weights": self.lbs_weights.detach().cpu().clone(),
            "kintree_table": torch.stack([self.parents.cpu(), torch.arange(len(self._parents))]),
            "f": self.faces.detach().cpu().clone(),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        Path(path).write_bytes(buffer.getvalue())

    @property
    def num_vertices(self) -> int:
        """Number of vertices V (5023 for FLAME 2020)."""
        return int(self.v_template.shape[0])

    # ------------------------------------------------------------------ LBS
    def forward(
        self,
        expression: torch.Tensor,
        pose: torch.Tensor,
        shape: torch.Tensor | None = None,
        return_joints: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Vertices from expression, full pose and (optional) shape, for any leading batch dimensions.

        Args:
            expression: [..., E] expression coefficients (E <= ``num_expression``; missing ones are zero).
            pose: [..., 15] axis-angle of global, neck, jaw, eye 1, eye 2 (see
                [`pose_from_motion`][unils.flame.model.pose_from_motion]).
            shape: [..., S] or [S] shape coefficients (S <= ``num_shape``); None = zero shape.
            return_joints: also return the posed joints.

        Returns:
            [..., V, 3] vertices (and [..., 5, 3] joints when ``return_joints``).
        """
        lead = pose.shape[:-1]
        if pose.shape[-1] != 3 * FLAME_NUM_JOINTS:
            raise MotionError(f"pose must be [..., {3 * FLAME_NUM_JOINTS}], got {list(pose.shape)}")
        if expression.shape[:-1] != lead or expression.shape[-1] > self.num_expression:
            raise MotionError(
                f"expression must be [..., <= {self.num_expression}] with the pose's batch shape {list(lead)}, "
                f"got {list(expression.shape)}"
            )
        n = int(np.prod(lead)) if len(lead) else 1
        dtype, dev = self.v_template.dtype, self.v_template.device
        expr = expression.reshape(n, -1).to(dtype=dtype, device=dev)
        rot = pose.reshape(n, FLAME_NUM_JOINTS, 3).to(dtype=dtype, device=dev)
        nv = self.num_vertices

        offsets = expr @ self.exprdirs[: expr.shape[1]]
        if shape is not None:
            s = shape.to(dtype=dtype, device=dev)
            if s.shape[-1] > self.num_shape:
                raise MotionError(f"shape has {s.shape[-1]} coefficients, the model has {self.num_shape}")
            if s.ndim == 1:
                s = s.expand(n, -1)
            elif s.shape[:-1] == lead:
                s = s.reshape(n, -1)
            else:
                raise MotionError(
                    f"shape must be [S] or [..., S] with batch shape {list(lead)}, got {list(s.shape)}"
                )
            offsets = offsets + s @ self.shapedirs[: s.shape[1]]
        v_shaped = self.v_template + offsets.view(n, nv, 3)
        joints = torch.einsum("jv,nvc->njc", self.J_regressor, v_shaped)

        rmats = batch_rodrigues(rot)  # [n, J, 3, 3]
        eye = torch.eye(3, dtype=dtype, device=dev)
        pose_feature = (rmats[:, 1:] - eye).reshape(n, -1)  # root rotation never adds correctives
        v_posed = v_shaped + (pose_feature @ self.posedirs).view(n, nv, 3)

        # Forward kinematics: world transform of each joint, parents before children.
        world_r = [rmats[:, 0]]
        world_t = [joints[:, 0]]
        for j in range(1, FLAME_NUM_JOINTS):
            p = self._parents[j]
            local_t = joints[:, j] - joints[:, p]
            world_r.append(world_r[p] @ rmats[:, j])
            world_t.append(world_t[p] + (world_r[p] @ local_t[..., None])[..., 0])
        r = torch.stack(world_r, dim=1)  # [n, J, 3, 3]
        t = torch.stack(world_t, dim=1)  # [n, J, 3]
        # Skinning transforms map rest-pose points: x -> R (x - J_rest) + t.
        t_rest = t - (r @ joints[..., None])[..., 0]
        blend_r = torch.einsum("vj,njab->nvab", self.lbs_weights, r)
        blend_t = torch.einsum("vj,nja->nva", self.lbs_weights, t_rest)
        verts = (blend_r @ v_posed[..., None])[..., 0] + blend_t
        verts = verts.reshape(*lead, nv, 3)
        if return_joints:
            return verts, t.reshape(*lead, FLAME_NUM_JOINTS, 3)
        return verts

    def vertices(
        self,
        motion: Any,
        with_head_pose: bool = True,
        shape: Any | None = None,
        chunk_size: int = 512,
    ) -> torch.Tensor:
        """Vertices of a motion in the official 108-d layout.

        Args:
            motion: [`Motion`][unils.motion.Motion], numpy array or tensor [..., 108] (e.g. [T, 108] or [B, T,
                108]).
            with_head_pose: apply the global head rotation (columns 100-102); the paper's metrics use False.
            shape: optional shape coefficients [S] (same identity for all frames) or [..., S].
            chunk_size: frames evaluated at once (bounds memory for long motions).

        Returns:
            [..., V, 3] vertices in metres, on the model's device and dtype (differentiable for tensor input).
        """
        m = _as_motion_tensor(motion, self.v_template.dtype, self.v_template.device)
        pose = pose_from_motion(m, with_head_pose=with_head_pose)
        expr = m[..., :NUM_EXPRESSION]
        lead = m.shape[:-1]
        shp = (
            None
            if shape is None
            else torch.as_tensor(np.asarray(shape) if not isinstance(shape, torch.Tensor) else shape)
        )
        if shp is not None and shp.ndim > 1:
            shp = shp.expand(*lead, shp.shape[-1]).reshape(-1, shp.shape[-1])
        flat_pose, flat_expr = pose.reshape(-1, pose.shape[-1]), expr.reshape(-1, NUM_EXPRESSION)
        step = max(1, int(chunk_size))
        outs = []
        for a in range(0, flat_pose.shape[0], step):
            s = None if shp is None else (shp if shp.ndim == 1 else shp[a : a + step])
            outs.append(self(flat_expr[a : a + step], flat_pose[a : a + step], shape=s))
        if not outs:
            return torch.zeros(
                *lead, self.num_vertices, 3, dtype=self.v_template.dtype, device=self.v_template.device
            )
        return torch.cat(outs).reshape(*lead, self.num_vertices, 3)

    def extra_repr(self) -> str:
        return (
            f"vertices={self.num_vertices}, faces={self.faces.shape[0]}, shape={self.num_shape}, "
            f"expression={self.num_expression}, dtype={self.v_template.dtype}"
        )
