"""Batch manifests: one row per output, read from CSV or JSON lines and checked before any work.

Columns (only ``audio`` is required; an empty CSV cell or a JSON ``null`` means "the default"):

===============  ==================================================================================
``audio``        the person's voice (a path, relative to the manifest's folder)
``partner``      the other person's voice (default: none, i.e. silence)
``output``       output file, relative to the output folder; without a suffix the chosen one is added
                 (default: the audio's path relative to the manifest's folder, with that suffix)
``seed``         seed of the row's draws (default: the command's ``--seed``)
``both``         also write the partner's motion, to ``<output stem>_partner<suffix>`` (needs ``partner``)
``temperature``  sampling knobs with the names and meaning of :meth:`unils.UniLS.generate`
``top_p``
``cfg_scale``
``smooth``
``use_cache``
``style``        motion file (.npz/.npy/.json/.csv) of a style clip (for ``both``: used by both people)
``prev_motion``  motion file preceding the audio (for ``both``: used by both people)
===============  ==================================================================================
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ManifestError, ManifestFilesNotFoundError
from ..motion import Motion
from ..options import option_fields

__all__ = ["COLUMNS", "BatchDefaults", "BatchRow", "check_files", "partner_output", "read_manifest"]

_OPTIONS = option_fields()
#: Every column a manifest may have: the row's files, ``both``, and one per field of
#: [GenerationOptions][unils.GenerationOptions] (same names, meanings and ranges).
COLUMNS = ("audio", "partner", "output", "both", *(f.name for f in _OPTIONS))
_FLOATS = tuple(f.name for f in _OPTIONS if f.kind == "float")
_BOOLS = ("both", *(f.name for f in _OPTIONS if f.kind == "bool"))
_PATHS = ("audio", "partner", *(f.name for f in _OPTIONS if f.kind == "motion"))
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}
#: At most this many problems are spelled out in one error message (all are kept in ``problems``).
_SHOWN = 20


@dataclass(frozen=True)
class BatchDefaults:
    """Values of the columns a row leaves empty (the command's own options).

    Attributes:
        suffix: output format, ``.npz``, ``.json`` or ``.csv``.
        seed: seed of rows without one.
        temperature: as in :meth:`unils.UniLS.generate` (None: the model's default).
        top_p: as in :meth:`unils.UniLS.generate`.
        cfg_scale: as in :meth:`unils.UniLS.generate`.
        smooth: Savitzky-Golay smoothing.
        use_cache: key/value caching across scales.
        both: write both people for rows with a partner and no ``both`` value.
        style: style motion file of rows without one (the command's ``--style``).
        prev_motion: preceding motion file of rows without one (the command's ``--prev-motion``).
    """

    suffix: str = ".npz"
    seed: int = 0
    temperature: float | None = None
    top_p: float | None = None
    cfg_scale: float | None = None
    smooth: bool = True
    use_cache: bool = True
    both: bool = False
    style: Path | None = None
    prev_motion: Path | None = None


@dataclass(frozen=True)
class BatchRow:
    """One validated manifest row, with absolute paths and every default filled in.

    Attributes:
        index: position in the manifest (0-based); results are reported by it.
        line: line of the manifest file it came from (1-based), for messages.
        audio: the person's voice.
        partner: the other person's voice, or None.
        output: output file (absolute).
        partner_output: the partner's output file for ``both`` rows, else None.
        seed: seed of the draws (``both``: the partner gets ``seed + 1``, as in ``generate_both``).
        temperature: sampling temperature (None: the model's default).
        top_p: nucleus threshold (None: the model's default).
        cfg_scale: guidance scale (None: the model's default).
        smooth: Savitzky-Golay smoothing.
        use_cache: key/value caching across scales.
        style: style motion file, or None.
        prev_motion: preceding motion file, or None.
    """

    index: int
    line: int
    audio: Path
    partner: Path | None
    output: Path
    partner_output: Path | None
    seed: int
    temperature: float | None
    top_p: float | None
    cfg_scale: float | None
    smooth: bool
    use_cache: bool
    style: Path | None
    prev_motion: Path | None

    @property
    def both(self) -> bool:
        """Whether the row writes both people."""
        return self.partner_output is not None

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Every file the row writes."""
        return (self.output,) if self.partner_output is None else (self.output, self.partner_output)

    def sampling_key(self) -> tuple[Any, ...]:
        """Options one ``generate_batch`` call shares: rows with equal keys may be batched together."""
        return (self.both, self.temperature, self.top_p, self.cfg_scale, self.smooth, self.use_cache)


def partner_output(output: Path) -> Path:
    """Where a ``both`` row writes the partner's motion: ``<stem>_partner<suffix>`` next to ``output``."""
    return output.with_name(f"{output.stem}_partner{output.suffix}")


def _read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, record) pairs of a ``.csv`` or JSON-lines (``.jsonl`` / ``.json`` / ``.ndjson``) manifest."""
    if not path.is_file():
        raise ManifestFilesNotFoundError(f"no manifest file at {path}", [(-1, "manifest", str(path))])
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            raise ManifestError(
                f"{path}: empty CSV manifest; the first line names the columns (at least 'audio')"
            )
        header = [h.strip() for h in reader.fieldnames]
        _check_columns(path, header)
        records = []
        for rec in reader:
            if None in rec:
                raise ManifestError(
                    f"{path}, line {reader.line_num}: more cells than the {len(header)} columns"
                )
            cells = {h: (v.strip() if isinstance(v, str) else v) for h, v in zip(header, rec.values())}
            records.append((reader.line_num, {k: v for k, v in cells.items() if v not in ("", None)}))
        return records
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise ManifestError(
            f"{path}: a manifest is a .csv file or JSON lines (.jsonl), not {path.suffix or 'no suffix'}"
        )
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ManifestError(
                f"{path}, line {number}: not JSON ({exc.msg}); write one JSON object per line"
            ) from exc
        if not isinstance(rec, dict):
            raise ManifestError(
                f"{path}, line {number}: expected a JSON object per line, got {type(rec).__name__}"
            )
        _check_columns(path, list(rec), number)
        records.append((number, {k: v for k, v in rec.items() if v is not None and v != ""}))
    return records


def _check_columns(path: Path, names: list[str], line: int | None = None) -> None:
    where = f"{path}" if line is None else f"{path}, line {line}"
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ManifestError(
            f"{where}: unknown column(s) {', '.join(map(repr, unknown))}; the columns are {', '.join(COLUMNS)}"
        )
    if line is None and "audio" not in names:
        raise ManifestError(
            f"{where}: no 'audio' column; the first line must name the columns, e.g. 'audio,seed'"
        )


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise TypeError("expected true/false (or 1/0, yes/no)")


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value.strip())
    raise TypeError("expected an integer")


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError("expected a number")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError("expected a finite number")
    return out


def _output_path(rec: Mapping[str, Any], audio: Path, base: Path, out_dir: Path, suffix: str) -> Path:
    name = rec.get("output")
    if name is None:
        try:
            rel = audio.relative_to(base)
        except ValueError:  # audio outside the manifest's folder: keep its name only
            rel = Path(audio.name)
        return out_dir / rel.with_suffix(suffix)
    p = Path(os.path.expanduser(str(name)))
    if not p.suffix:
        p = p.with_name(p.name + suffix)
    elif p.suffix.lower() not in (".npz", ".json", ".csv"):
        raise ValueError(
            f"output {name!r}: motion is written as .npz, .json or .csv (or leave the suffix out)"
        )
    return p if p.is_absolute() else out_dir / p


def _row(
    number: int, index: int, rec: Mapping[str, Any], base: Path, out_dir: Path, d: BatchDefaults
) -> BatchRow:
    if "audio" not in rec:
        raise ValueError("'audio' is empty")
    paths: dict[str, Path | None] = {}
    for col in _PATHS:
        value = rec.get(col)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{col}: expected a path, got {value!r}")
        if value is None:
            # The command's own value (already absolute or relative to the working folder).
            default = getattr(d, col, None)
            paths[col] = None if default is None else Path(os.path.abspath(default))
            continue
        # normpath, not resolve: a symlinked audio keeps its place in the tree (and its output name)
        paths[col] = Path(os.path.normpath(base / os.path.expanduser(value)))
    floats: dict[str, float | None] = {}
    for col in _FLOATS:
        try:
            floats[col] = _as_float(rec[col]) if col in rec else getattr(d, col)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{col}: {rec[col]!r}: {exc}") from None
    flags: dict[str, bool] = {}
    for col in _BOOLS:
        try:
            flags[col] = _as_bool(rec[col]) if col in rec else getattr(d, col)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{col}: {rec[col]!r}: {exc}") from None
    try:
        seed = _as_int(rec["seed"]) if "seed" in rec else d.seed
    except (TypeError, ValueError):
        raise ValueError(f"seed: {rec['seed']!r}: expected an integer") from None
    if flags["both"] and paths["partner"] is None:
        if "both" in rec:
            raise ValueError("both=true needs a partner")
        flags["both"] = False  # the command-wide --both only applies to rows with a partner
    audio = paths["audio"]
    assert audio is not None
    output = Path(os.path.normpath(_output_path(rec, audio, base, out_dir, d.suffix)))
    return BatchRow(
        index=index,
        line=number,
        audio=audio,
        partner=paths["partner"],
        output=output,
        partner_output=partner_output(output) if flags["both"] else None,
        seed=seed,
        temperature=floats["temperature"],
        top_p=floats["top_p"],
        cfg_scale=floats["cfg_scale"],
        smooth=flags["smooth"],
        use_cache=flags["use_cache"],
        style=paths["style"],
        prev_motion=paths["prev_motion"],
    )


def _raise_problems(path: Path, problems: list[str]) -> None:
    if problems:
        shown = "; ".join(problems[:_SHOWN]) + (
            f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        )
        raise ManifestError(f"{path}: {len(problems)} problem(s): {shown}", problems)


def read_manifest(
    path: str | os.PathLike[str], out_dir: str | os.PathLike[str], defaults: BatchDefaults | None = None
) -> list[BatchRow]:
    """Read and validate a manifest: every problem of every row is reported at once.

    Args:
        path: ``.csv`` (first line: column names) or JSON lines (``.jsonl``; one object per line).
            Input paths in it are relative to its folder.
        out_dir: folder that relative ``output`` names are resolved against.
        defaults: values of empty cells (the command's options).

    Returns:
        The rows in manifest order.

    Raises:
        ManifestError: unknown or missing columns, a value of the wrong type, duplicate outputs, no rows.
        ManifestFilesNotFoundError: no manifest at ``path``.

    Example:
        ```python
        from unils.batch import read_manifest, check_files

        rows = read_manifest("clips.csv", "motions/")
        check_files(rows)  # every missing input in one error, before any work
        ```
    """
    d = defaults or BatchDefaults()
    if d.suffix not in (".npz", ".json", ".csv"):
        raise ManifestError(f"output format {d.suffix!r}: choose .npz, .json or .csv")
    mpath = Path(os.path.abspath(path))
    base, out = mpath.parent, Path(os.path.abspath(out_dir))
    records = _read_records(mpath)
    if not records:
        raise ManifestError(f"{mpath}: no rows; add one line per output (column 'audio' at least)")
    rows: list[BatchRow] = []
    problems: list[str] = []
    for index, (number, rec) in enumerate(records):
        try:
            rows.append(_row(number, index, rec, base, out, d))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    _raise_problems(mpath, problems)
    seen: dict[Path, int] = {}
    for row in rows:
        for target in row.outputs:
            if target in seen:
                problems.append(
                    f"line {row.line}: output {target} is also written by line {seen[target]} (set 'output' to tell them apart)"
                )
            else:
                seen[target] = row.line
    _raise_problems(mpath, problems)
    return rows


def check_files(rows: list[BatchRow]) -> None:
    """Raise one error listing every input file (audio, partner, style, prev_motion) that does not exist.

    Raises:
        ManifestFilesNotFoundError: at least one file is missing; ``missing`` holds (line, column, path).
        ManifestError: a style / prev_motion file whose suffix is not a motion format.
    """
    missing: list[tuple[int, str, str]] = []
    bad: list[str] = []
    for row in rows:
        for col in _PATHS:
            p = getattr(row, col)
            if p is None:
                continue
            if not p.is_file():
                missing.append((row.line, col, str(p)))
            elif col in ("style", "prev_motion") and p.suffix.lower() not in Motion.SUFFIXES:
                bad.append(
                    f"line {row.line}: {col} {p.name} is not a motion file ({', '.join(Motion.SUFFIXES)})"
                )
    if missing:
        shown = "; ".join(f"line {ln} {col}: {p}" for ln, col, p in missing[:_SHOWN])
        more = f"; and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise ManifestFilesNotFoundError(
            f"{len(missing)} input file(s) named by the manifest do not exist (paths are relative to the "
            f"manifest's folder): {shown}{more}",
            missing,
        )
    if bad:
        raise ManifestError(f"{len(bad)} problem(s): " + "; ".join(bad[:_SHOWN]), bad)
