"""User-provided linear maps between ARKit weights and FLAME expression (+ jaw) coefficients.

FLAME's expression space is licensed and unils ships none of it, so expressions can only be turned
into blendshape weights through a map the user brings. Two directions are understood:

* ``arkit_to_flame``: a [52, K] matrix ``B`` with ``flame ~= weights @ B + bias``; the weights of each frame
  are then found by bounded least squares
  ([`solve_bounded_least_squares`][unils.arkit.expression_map.solve_bounded_least_squares]).
* ``flame_to_arkit``: a [K, 52] matrix ``M`` with ``weights ~= flame @ M + bias``, clipped to [0, 1].

The K FLAME columns are the first ``K`` expression coefficients, or the first ``K - 1`` followed by
the jaw angle when the map includes the jaw (the default when K = 101).

The bundled demo model is the exception: its expression coefficients have known meanings (it was trained on
rule-based motion), so unils ships its map (``unils/assets/demo/arkit_map.npz``, a ``flame_to_arkit`` map of
the first 7 coefficients). [`bundled_expression_map`][unils.arkit.expression_map.bundled_expression_map] reads
it and [`expression_map_for`][unils.arkit.expression_map.expression_map_for] finds it for a loaded model;
``unils generate --arkit``, ``unils preview`` and ``unils serve`` use it on their own.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ArkitError
from .names import NUM_BLENDSHAPES, arkit_index

__all__ = [
    "BUNDLED_MAPS",
    "ExpressionMap",
    "bundled_expression_map",
    "expression_map_for",
    "load_expression_map",
    "solve_bounded_least_squares",
]

Direction = Literal["arkit_to_flame", "flame_to_arkit"]
_DIRECTIONS = ("arkit_to_flame", "flame_to_arkit")
_EXPRESSION_COEFS = 100
#: Model name (``config.name``) -> the bundled map made for it (a folder of ``unils/assets``).
BUNDLED_MAPS: dict[str, str] = {"unils-demo": "demo"}
_MAP_FILE = "arkit_map.npz"


@dataclass(frozen=True, eq=False)
class ExpressionMap:
    """A validated linear map between the 52 ARKit weights and K FLAME coefficients.

    Build one with [`from_array`][unils.arkit.expression_map.ExpressionMap.from_array] or
    [`load_expression_map`][unils.arkit.expression_map.load_expression_map]; rows / columns are stored in
    [`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES] order.

    Attributes:
        matrix: float64 [52, K] for ``arkit_to_flame``, [K, 52] for ``flame_to_arkit``.
        direction: ``"arkit_to_flame"`` or ``"flame_to_arkit"``.
        jaw: whether the last FLAME column is the jaw angle (motion column 103).
        bias: float64 [K] (``arkit_to_flame``) or [52] (``flame_to_arkit``) offset, zeros if none.
    """

    matrix: np.ndarray
    direction: Direction
    jaw: bool
    bias: np.ndarray

    @property
    def flame_width(self) -> int:
        """K, the number of FLAME columns the map covers."""
        return self.matrix.shape[1] if self.direction == "arkit_to_flame" else self.matrix.shape[0]

    @property
    def expression_coefs(self) -> int:
        """How many leading FLAME expression coefficients the map covers."""
        return self.flame_width - int(self.jaw)

    @classmethod
    def from_array(
        cls,
        matrix: Any,
        direction: Direction | None = None,
        *,
        jaw: bool | None = None,
        bias: Any = None,
        names: Sequence[str] | None = None,
    ) -> ExpressionMap:
        """Validate a matrix and its direction.

        Args:
            matrix: [52, K] (ARKit -> FLAME) or [K, 52] (FLAME -> ARKit), K <= 101.
            direction: ``"arkit_to_flame"`` or ``"flame_to_arkit"``; None = from the shape, which
                must then be unambiguous (exactly one axis of length 52).
            jaw: whether the last FLAME column is the jaw angle; None = True when K is 101.
            bias: optional offset ([K] for arkit_to_flame, [52] for flame_to_arkit).
            names: the order of the 52 ARKit rows/columns in ``matrix`` (any case); None = the order
                of [`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES].

        Returns:
            The map, reordered to [`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES].

        Raises:
            ArkitError: wrong shape, ambiguous or unknown direction, non-finite values, bad names.
        """
        try:
            m = np.array(matrix, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ArkitError(f"expression map must be a numeric matrix: {exc}") from exc
        if m.ndim != 2 or NUM_BLENDSHAPES not in m.shape:
            raise ArkitError(
                f"expression map must be [52, K] (arkit_to_flame) or [K, 52] (flame_to_arkit) with K <= 101, "
                f"got shape {list(m.shape)}"
            )
        if direction is None:
            if m.shape == (NUM_BLENDSHAPES, NUM_BLENDSHAPES):
                raise ArkitError(
                    "a [52, 52] expression map is ambiguous: pass direction='arkit_to_flame' or 'flame_to_arkit'"
                )
            direction = "arkit_to_flame" if m.shape[0] == NUM_BLENDSHAPES else "flame_to_arkit"
        if direction not in _DIRECTIONS:
            raise ArkitError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
        arkit_axis = 0 if direction == "arkit_to_flame" else 1
        if m.shape[arkit_axis] != NUM_BLENDSHAPES:
            raise ArkitError(
                f"a {direction} map must have 52 ARKit {'rows' if arkit_axis == 0 else 'columns'}, got shape {list(m.shape)}"
            )
        k = m.shape[1 - arkit_axis]
        if jaw is None:
            jaw = k == _EXPRESSION_COEFS + 1
        if k < 1 or k - int(jaw) > _EXPRESSION_COEFS or (jaw and k < 2):
            raise ArkitError(
                f"the map covers {k} FLAME columns ({'with' if jaw else 'without'} jaw); it must cover 1-100 "
                "expression coefficients plus optionally the jaw (K <= 101)"
            )
        if not np.isfinite(m).all():
            raise ArkitError("expression map holds NaN or inf values")
        if names is not None:
            order = _name_order(names)
            m = m[order] if arkit_axis == 0 else m[:, order]
        width = k if direction == "arkit_to_flame" else NUM_BLENDSHAPES
        if bias is None:
            b = np.zeros(width)
        else:
            try:
                b = np.array(bias, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise ArkitError(f"expression map bias must be numeric: {exc}") from exc
            if b.shape != (width,) or not np.isfinite(b).all():
                raise ArkitError(
                    f"expression map bias must be {width} finite numbers, got shape {list(b.shape)}"
                )
            if names is not None and direction == "flame_to_arkit":
                b = b[_name_order(names)]
        return cls(np.ascontiguousarray(m), direction, bool(jaw), b)

    def flame_targets(self, expression: np.ndarray, jaw: np.ndarray) -> np.ndarray:
        """The [T, K] FLAME columns this map covers, taken from motion parts ([T, 100] and [T, 1])."""
        cols = [np.asarray(expression, np.float64)[:, : self.expression_coefs]]
        if self.jaw:
            cols.append(np.asarray(jaw, np.float64)[:, :1])
        return np.concatenate(cols, axis=1)


def _name_order(names: Sequence[str]) -> np.ndarray:
    given = [str(n) for n in names]
    if len(given) != NUM_BLENDSHAPES:
        raise ArkitError(f"expression map names must list the 52 ARKit blendshapes, got {len(given)} names")
    idx = [arkit_index(n) for n in given]
    if sorted(idx) != list(range(NUM_BLENDSHAPES)):
        raise ArkitError("expression map names must be the 52 ARKit blendshapes, each once")
    # order[j] = row of the file that holds ARKIT_NAMES[j]
    order = np.empty(NUM_BLENDSHAPES, np.intp)
    order[idx] = np.arange(NUM_BLENDSHAPES)
    return order


def load_expression_map(
    path: str | os.PathLike[str],
    direction: Direction | None = None,
    *,
    jaw: bool | None = None,
    names: Sequence[str] | None = None,
) -> ExpressionMap:
    """Read an expression map from ``.npy``, ``.npz`` or ``.safetensors``.

    An ``.npz`` / ``.safetensors`` file holds the matrix under the key ``arkit_to_flame`` or
    ``flame_to_arkit`` (which also gives the direction), or as its only array; optional keys are
    ``bias`` and, in ``.npz``, ``names`` (52 strings) and ``jaw`` (0/1). A ``.safetensors`` file
    may give ``names`` (comma-separated) and ``jaw`` in its metadata. Arguments override the file.

    Args:
        path: the map file.
        direction: see [`ExpressionMap.from_array`][unils.arkit.expression_map.ExpressionMap.from_array]; None
            = from the key or the shape.
        jaw: whether the last FLAME column is the jaw; None = from the file, else True for K = 101.
        names: order of the ARKit rows/columns; None = from the file, else
            [`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES].

    Returns:
        The validated map.

    Raises:
        FileNotFoundError: no such file.
        ArkitError: unreadable file, unknown suffix, several candidate matrices, or a bad matrix.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no expression map file at {p}")
    suffix = p.suffix.lower()
    arrays: dict[str, Any]
    meta: dict[str, str] = {}
    try:
        if suffix == ".npy":
            arrays = {"": np.load(p, allow_pickle=False)}
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        elif suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), framework="np") as fh:
                arrays = {k: fh.get_tensor(k) for k in fh.keys()}
                meta = dict(fh.metadata() or {})
        else:
            raise ArkitError(f"{p.name}: expression maps are read from .npy, .npz or .safetensors")
    except ArkitError:
        raise
    except (
        OSError,
        ValueError,
        zipfile.BadZipFile,
        Exception,
    ) as exc:  # safetensors raises its own error type
        raise ArkitError(f"{p} is not a readable expression map: {exc}") from exc
    keyed = [k for k in _DIRECTIONS if k in arrays]
    if len(keyed) > 1:
        raise ArkitError(f"{p} holds both arkit_to_flame and flame_to_arkit; keep one")
    if keyed:
        key = keyed[0]
        if direction is not None and direction != key:
            raise ArkitError(f"{p} holds a {key} map but direction={direction!r} was asked for")
        direction = key  # type: ignore[assignment]
    else:
        candidates = [k for k in arrays if k not in ("bias", "names", "jaw")]
        if len(candidates) != 1:
            raise ArkitError(
                f"{p}: cannot tell which array is the map (found {sorted(arrays)}); name it arkit_to_flame or flame_to_arkit"
            )
        key = candidates[0]
    if names is None:
        if "names" in arrays:
            names = [str(n) for n in np.asarray(arrays["names"]).reshape(-1)]
        elif meta.get("names"):
            names = [n.strip() for n in meta["names"].split(",")]
    if jaw is None:
        if "jaw" in arrays:
            jaw = bool(np.asarray(arrays["jaw"]).reshape(-1)[0])
        elif "jaw" in meta:
            jaw = meta["jaw"].strip().lower() in ("1", "true", "yes")
    return ExpressionMap.from_array(arrays[key], direction, jaw=jaw, bias=arrays.get("bias"), names=names)


def bundled_expression_map(name: str = "demo") -> ExpressionMap:
    """The expression map shipped with a bundled model (``"demo"``: ``unils/assets/demo/arkit_map.npz``).

    Args:
        name: the bundled model's name (a value of [`BUNDLED_MAPS`][unils.arkit.expression_map.BUNDLED_MAPS]).

    Returns:
        The validated map.

    Raises:
        ArkitError: no bundled map of that name.
    """
    from importlib import resources

    if name not in BUNDLED_MAPS.values():
        raise ArkitError(f"no bundled expression map {name!r}; bundled: {sorted(set(BUNDLED_MAPS.values()))}")
    with resources.as_file(resources.files("unils") / "assets" / name / _MAP_FILE) as path:
        return load_expression_map(path)


def expression_map_for(model: Any) -> ExpressionMap | None:
    """The expression map that comes with a model, or None when the model has none (bring your own).

    Only the bundled demo has one today (its expression coefficients mean known things); official
    checkpoints need a user map (see ``docs/arkit.md``).

    Args:
        model: a [`UniLS`][unils.model.UniLS] (anything with ``config.name``) or a model name
            (``config.name``, e.g. ``"unils-demo"``).

    Returns:
        The map, or None.
    """
    name = model if isinstance(model, str) else getattr(getattr(model, "config", None), "name", None)
    folder = BUNDLED_MAPS.get(str(name)) if name is not None else None
    return None if folder is None else bundled_expression_map(folder)


def solve_bounded_least_squares(
    hessian: np.ndarray,
    linear: np.ndarray,
    *,
    lower: float = 0.0,
    upper: float = 1.0,
    iterations: int = 200,
) -> np.ndarray:
    """Minimise ``0.5 * w H w' - g w'`` for every row ``g`` subject to ``lower <= w <= upper``.

    Accelerated projected gradient (FISTA) on the normal equations, batched over rows, started from
    the clipped unconstrained solution. A fixed iteration count keeps each row's answer independent
    of the others, so converting frames one chunk at a time gives the same weights as converting all.

    Args:
        hessian: [n, n] symmetric positive definite matrix H.
        linear: [T, n] right-hand sides g.
        lower: lower bound of every weight.
        upper: upper bound of every weight.
        iterations: gradient steps per row.

    Returns:
        [T, n] float64 solutions.
    """
    h = np.asarray(hessian, np.float64)
    g = np.atleast_2d(np.asarray(linear, np.float64))
    if g.shape[0] == 0:
        return np.zeros_like(g)
    step = 1.0 / float(np.linalg.eigvalsh(h)[-1])
    w = np.clip(np.linalg.solve(h, g.T).T, lower, upper)
    y = w.copy()
    t = 1.0
    for _ in range(int(iterations)):
        w_next = np.clip(y - step * (y @ h - g), lower, upper)
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        y = w_next + ((t - 1.0) / t_next) * (w_next - w)
        w, t = w_next, t_next
    return w
