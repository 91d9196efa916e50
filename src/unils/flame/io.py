"""Reading FLAME model files safely: the official pickle without chumpy or scipy, or a ``.pt`` of tensors.

The official ``generic_model.pkl`` holds chumpy objects and a scipy sparse matrix. A restricted
unpickler maps those classes to plain numpy, so neither chumpy nor scipy is needed, and a pickle that
names anything else (which a FLAME file never does) is refused rather than run.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FlameError

__all__ = ["load_flame_arrays"]

_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


# ---------------------------------------------------------------------------------------------
# Reading the official pickle without chumpy or scipy
# ---------------------------------------------------------------------------------------------
class _Foreign:
    """Stand-in for a chumpy or scipy.sparse object: keeps whatever state the pickle gives it."""

    origin: tuple[str, str] = ("", "")
    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args: Any, **kwargs: Any) -> _Foreign:
        obj = object.__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __setstate__(self, state: Any) -> None:
        self.state = state


_FOREIGN_CLASSES: dict[tuple[str, str], type] = {}


def _foreign_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _FOREIGN_CLASSES:
        _FOREIGN_CLASSES[key] = type(f"_Foreign_{name}", (_Foreign,), {"origin": key})
    return _FOREIGN_CLASSES[key]


def _safe_reconstructor(cls: type, base: type, state: Any) -> Any:
    # Protocol 0/1 pickles build objects through copy_reg._reconstructor; only our stand-ins may be built.
    if isinstance(cls, type) and issubclass(cls, _Foreign):
        return cls.__new__(cls)
    raise FlameError(f"FLAME pickle asks to build {cls!r}; refusing (not part of a FLAME model file)")


def _numpy_core(name: str) -> str:
    # Old pickles name numpy.core.*; numpy 2 renamed it to numpy._core (the old name warns).
    if name.startswith("numpy.core") and hasattr(np, "_core"):
        return "numpy._core" + name[len("numpy.core") :]
    return name


_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "object"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("builtins", "bytearray"),
    ("_codecs", "encode"),
}


class _FlameUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy/builtin data types; chumpy and scipy.sparse become stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy.") or module.startswith("scipy.sparse"):
            return _foreign_class(module, name)
        # Python 2 names (FLAME 2020 was pickled by Python 2; Python 3 writes them for protocols < 3).
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        if (module, name) == ("copyreg", "_reconstructor"):
            return _safe_reconstructor
        module = _numpy_core(module)
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise FlameError(
            f"the FLAME pickle refers to {module}.{name}, which a FLAME model file never contains; "
            "refusing to load it (pickles can run code)"
        )


def _densify_sparse(obj: _Foreign, field: str) -> np.ndarray:
    state = obj.state if isinstance(obj.state, dict) else {}
    shape = state.get("_shape", state.get("shape"))
    name = obj.origin[1]
    fmt = state.get("format") or name[:3]
    try:
        if shape is None:
            raise KeyError("_shape")  # same report as any other missing sparse field
        rows, cols = (int(s) for s in shape)
        dense = np.zeros((rows, cols), dtype=np.float64)
        data = np.asarray(state["data"], dtype=np.float64)
        if fmt in ("csc", "csr"):
            indices = np.asarray(state["indices"], dtype=np.int64)
            indptr = np.asarray(state["indptr"], dtype=np.int64)
            major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            r, c = (indices, major) if fmt == "csc" else (major, indices)
        elif fmt == "coo":
            r = np.asarray(state.get("row", state.get("coords", [None])[0]), dtype=np.int64)
            c = np.asarray(state.get("col", state.get("coords", [None, None])[1]), dtype=np.int64)
        else:
            raise FlameError(
                f"FLAME field {field!r} is a scipy {name} (format {fmt!r}); only csc/csr/coo are read"
            )
        np.add.at(dense, (r, c), data)  # duplicates in an unsorted sparse matrix add up, as in scipy
    except FlameError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FlameError(f"FLAME field {field!r}: cannot read the scipy sparse matrix ({exc})") from exc
    return dense


def as_plain_array(value: Any, field: str) -> np.ndarray:
    """One FLAME field (numpy, chumpy stand-in, sparse stand-in or tensor) as a plain numpy array."""
    """Turn one pickled field (ndarray, chumpy stand-in, sparse stand-in, nested list) into numpy."""
    if isinstance(value, _Foreign):
        module, name = value.origin
        if module.startswith("scipy.sparse"):
            return _densify_sparse(value, field)
        state = value.state if isinstance(value.state, dict) else {}
        if "x" in state and not isinstance(state["x"], _Foreign):
            return np.asarray(state["x"])
        raise FlameError(
            f"FLAME field {field!r} is a chumpy {name} expression, not a plain array; "
            "convert the model with chumpy installed (np.array(model[field])) or use the official FLAME 2020 file"
        )
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise FlameError(f"FLAME field {field!r} is not an array: {exc}") from exc


def _read_pickle(path: Path) -> Mapping[str, Any]:
    try:
        with open(path, "rb") as fh:
            # latin1: FLAME 2020 was pickled by Python 2, whose str holds numpy's raw bytes.
            data = _FlameUnpickler(fh, encoding="latin1").load()
    except FlameError:
        raise
    except Exception as exc:
        raise FlameError(f"{path} is not a readable FLAME pickle: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise FlameError(f"{path} does not hold a FLAME model (expected a dict, got {type(data).__name__})")
    return data


def _read_torch(path: Path) -> Mapping[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise FlameError(
            f"{path} is not a FLAME .pt holding a dict of tensors ({' '.join(str(exc).split())[:300]})"
        ) from exc
    if not isinstance(data, Mapping):
        raise FlameError(f"{path} does not hold a FLAME model (expected a dict, got {type(data).__name__})")
    return data


def load_flame_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read the arrays of a FLAME model file as plain numpy.

    Args:
        path: the official ``generic_model.pkl`` (FLAME 2020, chumpy objects and a scipy sparse
            ``J_regressor`` are read without chumpy or scipy), or a ``.pt`` / ``.pth`` dict of tensors with
            the same field names (e.g. written by [`FlameModel.save`][unils.flame.model.FlameModel.save] or
            the official converter). Files are told apart by content (a zip archive is a torch file), not only
            by suffix.

    Returns:
        ``{"v_template", "shapedirs", "posedirs", "J_regressor" (dense), "weights", "kintree_table", "f"}``.

    Raises:
        FileNotFoundError: no file at ``path``.
        FlameError: the file is unreadable, lacks a field, or the pickle names anything but numpy,
            chumpy and scipy.sparse data.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"no FLAME model at {p}; download FLAME 2020 (generic_model.pkl) from https://flame.is.tue.mpg.de "
            "under its licence and pass its path"
        )
    with open(p, "rb") as fh:
        head = fh.read(4)
    raw = _read_torch(p) if head.startswith(b"PK") else _read_pickle(p)
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise FlameError(f"{p} lacks the FLAME field(s) {missing} (found {sorted(map(str, raw))[:20]})")
    return {k: as_plain_array(raw[k], k) for k in _REQUIRED}
