"""A synthetic FLAME-shaped model for tests: real FLAME 2020 shapes, random numbers, no FLAME data.

The template is a smooth height field (a "face" patch) plus two small eye clusters, so that the mesh
renders sensibly; shapedirs/posedirs/J_regressor/weights are random with FLAME's shapes
(5023 vertices, 5 joints, 300 shape + 100 expression components, 36 pose correctives).
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np

V, J, K, P = 5023, 5, 400, 36
GRID_W, GRID_H = 71, 70  # 4970 face-patch vertices; the 53 others are the eyes
EYE1 = np.arange(GRID_W * GRID_H, GRID_W * GRID_H + 26)
EYE2 = np.arange(GRID_W * GRID_H + 26, V)


def synthetic_flame_arrays(seed: int = 0, zero_posedirs: bool = False) -> dict[str, np.ndarray]:
    """Arrays in the official pickle's layout (shapedirs [V, 3, 400], posedirs [V, 3, 36], dense J_regressor)."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.linspace(-0.08, 0.08, GRID_W), np.linspace(-0.1, 0.1, GRID_H))
    gz = 0.06 * np.sqrt(np.clip(1 - (gx / 0.1) ** 2 - (gy / 0.13) ** 2, 0, None))
    face = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], 1)
    eye1 = np.array([0.03, 0.03, 0.065]) + 0.004 * rng.standard_normal((len(EYE1), 3))
    eye2 = np.array([-0.03, 0.03, 0.065]) + 0.004 * rng.standard_normal((len(EYE2), 3))
    v_template = np.concatenate([face, eye1, eye2])

    weights = np.zeros((V, J))
    y = v_template[:, 1]
    grid = np.arange(GRID_W * GRID_H)
    weights[grid[y[grid] >= -0.02], 1] = 1.0  # neck (upper face)
    weights[grid[y[grid] < -0.04], 2] = 1.0  # jaw
    band = grid[(y[grid] >= -0.04) & (y[grid] < -0.02)]
    weights[band, 1], weights[band, 2] = 0.5, 0.5  # a blended band
    weights[EYE1, 3] = 1.0
    weights[EYE2, 4] = 1.0

    jreg = np.zeros((J, V))
    for j, members in enumerate([grid, grid[y[grid] < -0.09], grid[np.abs(y[grid] + 0.03) < 0.005], EYE1, EYE2]):
        w = rng.uniform(0.5, 1.5, len(members))
        jreg[j, members] = w / w.sum()

    faces = []
    for r in range(GRID_H - 1):
        for c in range(GRID_W - 1):
            a = r * GRID_W + c
            faces += [(a, a + 1, a + GRID_W), (a + 1, a + GRID_W + 1, a + GRID_W)]
    return {
        "v_template": v_template,
        "shapedirs": 1e-3 * rng.standard_normal((V, 3, K)),
        "posedirs": np.zeros((V, 3, P)) if zero_posedirs else 1e-3 * rng.standard_normal((V, 3, P)),
        "J_regressor": jreg,
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "f": np.asarray(faces, dtype=np.uint32),
    }


@contextlib.contextmanager
def _fake_modules() -> Iterator[tuple[type, type]]:
    """Classes importable as chumpy.ch.Ch and scipy.sparse.csc.csc_matrix while pickling (no chumpy needed)."""
    ch_mod, sp_mod, root = types.ModuleType("chumpy.ch"), types.ModuleType("scipy.sparse.csc"), types.ModuleType("chumpy")

    class Ch:  # state like chumpy's __getstate__: the __dict__ minus caches, the array under "x"
        def __init__(self, x: np.ndarray) -> None:
            self.x = x
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = False
            self._make_sparse = False

    class csc_matrix:  # state like old scipy: _shape, indices, indptr, data, format
        def __init__(self, dense: np.ndarray) -> None:
            rows, cols = np.nonzero(dense.T)  # column-major order: (column, row) pairs
            self.indices = cols.astype(np.int32)
            self.data = dense.T[rows, cols]
            self.indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=dense.shape[1]))]).astype(np.int32)
            self._shape = dense.shape
            self.maxprint = 50
            self.format = "csc"

    for cls, mod in ((Ch, ch_mod), (csc_matrix, sp_mod)):
        cls.__module__, cls.__qualname__ = mod.__name__, cls.__name__
        setattr(mod, cls.__name__, cls)
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch", "scipy.sparse.csc")}
    sys.modules.update({"chumpy": root, "chumpy.ch": ch_mod, "scipy.sparse.csc": sp_mod})
    try:
        yield Ch, csc_matrix
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def write_flame_pickle(path: Path, arrays: dict[str, np.ndarray], protocol: int = 2) -> Path:
    """Write arrays the way FLAME 2020's generic_model.pkl holds them: chumpy shapedirs, sparse J_regressor."""
    with _fake_modules() as (Ch, csc_matrix):
        data = dict(arrays)
        data["shapedirs"] = Ch(arrays["shapedirs"])
        data["J_regressor"] = csc_matrix(arrays["J_regressor"])
        data["J"] = Ch(arrays["J_regressor"] @ arrays["v_template"])
        data["bs_style"], data["bs_type"] = "lbs", "lrotmin"
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=protocol)
    return path
