"""Work sharding across torchrun processes: who am I, which device, which items are mine.

Reusable beyond batch generation (e.g. scoring a large folder): compute one cost per item, take this rank's
items from [`balanced_assignment`][unils.batch.shard.balanced_assignment], and gather the per-rank results on
rank 0 with [`DistContext.gather`][unils.batch.shard.DistContext.gather]. The assignment is a pure function of
the costs and the world size, so every process computes the same one without talking to the others.
"""

from __future__ import annotations

import datetime
import heapq
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["DistContext", "balanced_assignment"]

logger = logging.getLogger("unils")


def balanced_assignment(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Split items over ``world_size`` ranks so that each gets about the same total cost.

    Greedy longest-processing-time rule: items in order of decreasing cost (ties: lower index
    first) each go to the rank with the least total so far (ties: lower rank). Deterministic, so
    every process computes the same split; within a rank, items keep their index order.

    Args:
        costs: one non-negative cost per item (e.g. audio seconds).
        world_size: number of ranks (>= 1).

    Returns:
        For each rank, the sorted indices of its items.

    Example:
        ```python
        balanced_assignment([5.0, 1.0, 4.0, 2.0], 2)  # [[0, 1], [2, 3]]
        ```
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    heap = [(0.0, r) for r in range(world_size)]
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(costs)), key=lambda k: (-float(costs[k]), k)):
        load, r = heapq.heappop(heap)
        shares[r].append(i)
        heapq.heappush(heap, (load + float(costs[i]), r))
    return [sorted(s) for s in shares]


@dataclass
class DistContext:
    """This process's place in a torchrun job (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Without torchrun it is rank 0 of 1 and never touches ``torch.distributed``.

    Attributes:
        rank: global rank.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Read the torchrun variables (absent: a single process)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that reports)."""
        return self.rank == 0

    def device(self, requested: str | None = None) -> torch.device:
        """One device per rank: the requested one, with ``cuda`` meaning ``cuda:LOCAL_RANK``; else CUDA if present."""
        if requested is None:
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        if requested == "cuda":
            requested = f"cuda:{self.local_rank}"
        return torch.device(requested)

    def init(self, timeout_s: float = 24 * 3600.0) -> None:
        """Join the process group when ``world_size > 1`` (no-op otherwise, or when already joined).

        The group uses gloo whatever the device: it only carries small pickled objects (work lists,
        summaries) between ranks, never model tensors, and gloo needs no GPU for that.

        Args:
            timeout_s: how long a rank may wait for the others at a collective (e.g. rank 0 for
                the slowest rank at the end).
        """
        if self.world_size <= 1 or torch.distributed.is_initialized():
            return
        torch.distributed.init_process_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
        logger.info("rank %d of %d joined the process group", self.rank, self.world_size)

    def close(self) -> None:
        """Leave the process group (if this context joined one)."""
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` in rank order, on every rank (a list of one without torchrun)."""
        if self.world_size <= 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` in rank order on rank 0; None on the other ranks."""
        if self.world_size <= 1:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world_size <= 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]
