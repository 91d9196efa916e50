"""Training losses of the three stages (official recipe, see the spec's section 10).

Stage 1 (codec), all on raw 108-d motion: BSQ auxiliary loss, L1 over all channels, L1 over head pose
and jaw (channels 100-103), MSE of their velocities, and a smoothness penalty on the prediction's
velocity. The official recipe adds FLAME mesh and lip losses; they are used only when the caller
passes a vertex function (a user-supplied FLAME model), otherwise the coefficient losses stand alone.

One optional term is not in the official recipe and is off by default: ``expr_mse``, a squared error
over the first ``expr_mse_dims`` expression coefficients. An L1 loss pulls a channel towards its
per-frame median, so events that are rare and short (a blink lasts about 5 frames every 1-6 s in the
synthetic corpus, a lip closure 1-3 frames) are reconstructed as 0 unless the codes carry them; a
squared error makes a missed 1.5 spike cost what it should (see the training page of the docs for measured effects).

Stages 2 and 3: two-class cross-entropy over every bit of every token, all levels weighted equally.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

__all__ = ["CodecLossWeights", "codec_losses", "bit_cross_entropy", "bit_accuracy"]

POSE = slice(100, 104)  # global head rotation and jaw: the official "head pose" loss covers both


@dataclass(frozen=True)
class CodecLossWeights:
    """Weights of the stage-1 loss terms (official values)."""

    vq: float = 1.0
    exp: float = 1.0
    pose: float = 8.0
    head_vel: float = 5.0
    head_smooth: float = 0.5
    mesh: float = 2.0
    lips: float = 0.1
    #: Not official (0 = off, the official recipe): weight of the MSE over expression coefficients
    #: ``0 .. expr_mse_dims - 1`` (raw units), so rare short events such as blinks are not averaged away.
    expr_mse: float = 0.0
    #: How many leading expression coefficients ``expr_mse`` covers (1-100).
    expr_mse_dims: int = 100

    def __post_init__(self) -> None:
        if self.expr_mse < 0:
            raise ConfigError(f"expr_mse must be >= 0, got {self.expr_mse}")
        if not 1 <= self.expr_mse_dims <= 100:
            raise ConfigError(
                f"expr_mse_dims must be in 1..100 (FLAME expression coefficients), got {self.expr_mse_dims}"
            )


def codec_losses(
    pred: Tensor,
    target: Tensor,
    vq_loss: Tensor,
    weights: CodecLossWeights = CodecLossWeights(),
    vertices: Callable[[Tensor], Tensor] | None = None,
    lip_indices: Tensor | None = None,
) -> dict[str, Tensor]:
    """Weighted stage-1 loss terms; their sum is the training loss.

    Args:
        pred: reconstructed raw motion [B, T, 108].
        target: ground-truth raw motion [B, T, 108].
        vq_loss: the quantizer's auxiliary loss (already a mean over levels).
        weights: term weights.
        vertices: optional motion [N, 108] -> FLAME vertices [N, V, 3] in metres (head pose zeroed);
            adds the mesh (all vertices) and lips terms, both MSE in mm².
        lip_indices: vertex indices of the lips term (required with ``vertices``).
    """
    gt_pose, pr_pose = target[..., POSE], pred[..., POSE]
    gt_vel = gt_pose[:, 1:] - gt_pose[:, :-1]
    pr_vel = pr_pose[:, 1:] - pr_pose[:, :-1]
    out = {
        "vq": vq_loss * weights.vq,
        "exp": F.l1_loss(pred, target) * weights.exp,
        "pose": F.l1_loss(pr_pose, gt_pose) * weights.pose,
        "head_vel": F.mse_loss(pr_vel, gt_vel) * weights.head_vel,
        "head_smooth": F.mse_loss(pr_vel[:, 1:], pr_vel[:, :-1]) * weights.head_smooth,
    }
    if weights.expr_mse > 0:
        k = weights.expr_mse_dims
        out["expr_mse"] = F.mse_loss(pred[..., :k], target[..., :k]) * weights.expr_mse
    if vertices is not None:
        if lip_indices is None:
            raise ValueError("the lips loss needs lip_indices")
        pv = vertices(pred.reshape(-1, pred.shape[-1])) * 1000.0
        gv = vertices(target.reshape(-1, target.shape[-1])) * 1000.0
        out["mesh"] = F.mse_loss(pv, gv) * weights.mesh
        out["lips"] = F.mse_loss(pv[:, lip_indices], gv[:, lip_indices]) * weights.lips
    return out


def bit_cross_entropy(logits: Tensor, bits: Tensor) -> Tensor:
    """Mean two-class cross-entropy: logits [B, N, C, 2], target bits [B, N, C] (0/1)."""
    return F.cross_entropy(logits.reshape(-1, 2).float(), bits.reshape(-1).long())


@torch.no_grad()
def bit_accuracy(logits: Tensor, bits: Tensor) -> float:
    """Fraction of bits whose most likely class is the target (a readable training figure)."""
    return float((logits.argmax(-1) == bits.long()).float().mean())
