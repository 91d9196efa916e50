"""One options object for every entry point: :class:`GenerationOptions`.

``UniLS.generate``, ``generate_both``, ``generate_batch``, ``stream`` and ``stream_group`` accept
``options=GenerationOptions(...)`` (or a plain dict of its fields) plus keyword overrides; the CLI
flags, the batch manifest columns, the server's hello fields and the clients' keywords are derived
from the fields declared here (name, default, help, range), so an option is declared once.

```python
from unils import GenerationOptions, UniLS

model = UniLS.from_pretrained("demo")
calm = GenerationOptions(temperature=0.7, cfg_scale=2.0, seed=0)
motion = model.generate("me.wav", options=calm)                  # the object as it is
other = model.generate("me.wav", options=calm, seed=1)           # ... with one field overridden
```

Sampling fields left at ``None`` take the model's defaults (``config.temperature``, ``top_p``,
``cfg_scale``: :data:`unils.config.SAMPLING_DEFAULTS` unless a checkpoint says otherwise); their
ranges are :data:`unils.config.SAMPLING_RANGES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from typing_extensions import TypedDict

from .config import SAMPLING_DEFAULTS, SAMPLING_RANGES, UniLSConfig, check_sampling
from .errors import ConfigError

__all__ = [
    "GenerationOptions",
    "OptionOverrides",
    "Sampling",
    "OptionField",
    "option_fields",
    "merge_options",
    "expand_seeds",
    "per_person",
    "MAX_SEED",
]

#: Largest seed: integers that JavaScript and every JSON parser represent exactly (the server's hello).
MAX_SEED = 2**53 - 1


@dataclass(frozen=True)
class OptionField:
    """What every interface needs to know of one option (read from the dataclass field's metadata).

    Attributes:
        name: the Python name (also the manifest column, the hello field and the client keyword).
        kind: ``"seed"``, ``"float"``, ``"bool"`` or ``"motion"`` (a clip: a motion file on the CLI).
        default: the default value (None for sampling knobs: the model's own default).
        help: one line for ``--help`` and the docs.
        flag: the CLI flag (``--no-smooth`` for a boolean that defaults to True).
        range: inclusive (low, high) for floats, else None.
        per_person: whether a pair / a list gives one value per person in multi-person calls.
        cli_default: the command line's default where it differs from ``default`` (the seed: 0, so
            that commands are reproducible), else ``default``.
    """

    name: str
    kind: str
    default: Any
    help: str
    flag: str
    range: tuple[float, float] | None
    per_person: bool
    cli_default: Any = None


def _opt(
    default: Any,
    kind: str,
    help: str,
    *,
    per_person: bool = False,
    flag: str | None = None,
    cli_default: Any = None,
) -> Any:
    meta = {"kind": kind, "help": help, "per_person": per_person, "flag": flag, "cli_default": cli_default}
    return field(default=default, metadata=meta)


class OptionOverrides(TypedDict, total=False):
    """Keyword overrides accepted beside ``options=`` (the fields of :class:`GenerationOptions`)."""

    seed: Any
    temperature: float | None
    top_p: float | None
    cfg_scale: float | None
    smooth: bool
    style: Any
    prev_motion: Any
    use_cache: bool


@dataclass(frozen=True)
class GenerationOptions:
    """Options of one generation, the same for every entry point (Python, CLI, manifest, server).

    Build one directly (``GenerationOptions(temperature=0.7)``), from a dict
    (``GenerationOptions(**d)``), or let an entry point merge ``options=`` with keyword overrides.
    Values are checked when the object is made: a bad one raises :class:`~unils.errors.ConfigError`.

    Attributes:
        seed: seed of the random draws (None: fresh randomness). Multi-person calls: an int ``s``
            gives people ``s, s + 1, ...``; a tuple gives each person their own.
        temperature: divides the logits (None: the model's default, 1.0). 0 decodes greedily (argmax);
            any finite value in [0, 1e30] works (bits whose scaled logits overflow are decoded greedily).
        top_p: per-bit nucleus threshold in [0, 1] (None: the model's default, 0.97).
        cfg_scale: classifier-free guidance scale in [0, 100] (None: the model's default, 1.5; <= 1
            disables guidance and its cost).
        smooth: the official Savitzky-Golay smoothing (window 9, order 3).
        style: a style clip (at least one window, 100 frames; its first window is used), or None.
            Multi-person calls: one clip for everybody or a tuple with one per person.
        prev_motion: motion that precedes the audio (its last window is used), or None; per person as
            ``style``.
        use_cache: key/value caching across scales (fast). False runs the official full recomputation.
    """

    seed: int | tuple[int | None, ...] | None = _opt(
        None, "seed", "random seed (None: fresh randomness)", per_person=True, cli_default=0
    )
    temperature: float | None = _opt(
        None, "float", "sampling temperature (default: the model's, 1.0; 0 = greedy)"
    )
    top_p: float | None = _opt(None, "float", "per-bit nucleus threshold (default: the model's, 0.97)")
    cfg_scale: float | None = _opt(
        None, "float", "classifier-free guidance scale (default: the model's, 1.5; <= 1 disables it)"
    )
    smooth: bool = _opt(True, "bool", "Savitzky-Golay smoothing (window 9, order 3)")
    style: Any = _opt(
        None,
        "motion",
        "style clip (at least 100 frames; its first window is used)",
        per_person=True,
    )
    prev_motion: Any = _opt(
        None, "motion", "motion that precedes the audio (its last window is used)", per_person=True
    )
    use_cache: bool = _opt(
        True,
        "bool",
        "key/value caching across scales (off: the official full recomputation, slower; equal within "
        "float rounding)",
        flag="--no-cache",
    )

    def __post_init__(self) -> None:
        knobs = {k: getattr(self, k) for k in SAMPLING_RANGES if getattr(self, k) is not None}
        check_sampling(**knobs)
        for name in ("smooth", "use_cache"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_seed(self.seed)

    def replace(self, **overrides: Any) -> GenerationOptions:
        """A copy with some fields changed (checked like a new object).

        Raises:
            ConfigError: an unknown field name or a bad value.
        """
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(_unknown_message(unknown))
        return dataclasses.replace(self, **overrides)

    def sampling(self, config: UniLSConfig) -> Sampling:
        """The sampling knobs resolved against ``config``'s defaults (what one window step needs)."""
        return Sampling(
            temperature=config.temperature if self.temperature is None else float(self.temperature),
            top_p=config.top_p if self.top_p is None else float(self.top_p),
            cfg_scale=config.cfg_scale if self.cfg_scale is None else float(self.cfg_scale),
            use_cache=bool(self.use_cache),
        )

    def people(self, n: int) -> list[GenerationOptions]:
        """One options object per person of an ``n``-person call (seeds, styles, previous motions split).

        Raises:
            ConfigError: a per-person tuple whose length is not ``n``.
        """
        seeds = expand_seeds(self.seed, n)
        styles = per_person(self.style, n, "style")
        prevs = per_person(self.prev_motion, n, "prev_motion")
        return [
            dataclasses.replace(self, seed=s, style=st, prev_motion=pm)
            for s, st, pm in zip(seeds, styles, prevs)
        ]

    # Historic name kept for code that resolved sampling options through the class.
    @classmethod
    def resolve(
        cls,
        config: UniLSConfig,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        use_cache: bool = True,
    ) -> Sampling:
        """The sampling knobs of ``config`` overridden by every argument that is not None."""
        return cls(temperature=temperature, top_p=top_p, cfg_scale=cfg_scale, use_cache=use_cache).sampling(
            config
        )


@dataclass(frozen=True)
class Sampling:
    """The resolved sampling knobs one window step uses (:meth:`GenerationOptions.sampling`)."""

    temperature: float = SAMPLING_DEFAULTS["temperature"]
    top_p: float = SAMPLING_DEFAULTS["top_p"]
    cfg_scale: float = SAMPLING_DEFAULTS["cfg_scale"]
    #: True: key/value cache across levels (fast path). False: the official full recomputation.
    use_cache: bool = True

    def __post_init__(self) -> None:
        check_sampling(temperature=self.temperature, top_p=self.top_p, cfg_scale=self.cfg_scale)

    @property
    def guided(self) -> bool:
        """Whether classifier-free guidance runs (``cfg_scale > 1``)."""
        return self.cfg_scale > 1.0


def option_fields() -> tuple[OptionField, ...]:
    """Every option with what the CLI, the manifest, the hello and the clients derive from it."""
    out = []
    for f in dataclasses.fields(GenerationOptions):
        kind = f.metadata["kind"]
        negated = kind == "bool" and f.default is True
        flag = f.metadata["flag"] or (
            "--no-" + f.name.replace("_", "-") if negated else "--" + f.name.replace("_", "-")
        )
        cli_default = f.metadata["cli_default"]
        out.append(
            OptionField(
                name=f.name,
                kind=kind,
                default=f.default,
                help=f.metadata["help"],
                flag=flag,
                range=SAMPLING_RANGES.get(f.name),
                per_person=f.metadata["per_person"],
                cli_default=f.default if cli_default is None else cli_default,
            )
        )
    return tuple(out)


def _unknown_message(unknown: set[str]) -> str:
    known = ", ".join(f.name for f in dataclasses.fields(GenerationOptions))
    return f"unknown option(s) {', '.join(sorted(unknown))}: the options are {known}"


def merge_options(
    options: GenerationOptions | Mapping[str, Any] | None, overrides: Mapping[str, Any]
) -> GenerationOptions:
    """``options`` (an object, a dict of fields or None) with the keyword ``overrides`` applied on top.

    Raises:
        ConfigError: ``options`` of another type, an unknown field, or a bad value.
    """
    if options is None:
        base = GenerationOptions()
    elif isinstance(options, GenerationOptions):
        base = options
    elif isinstance(options, Mapping):
        base = GenerationOptions().replace(**dict(options))
    else:
        raise ConfigError(
            f"options must be a GenerationOptions, a dict of its fields or None, got {type(options).__name__}"
        )
    return base.replace(**overrides) if overrides else base


def _check_seed(seed: Any) -> None:
    if seed is None:
        return
    items = seed if isinstance(seed, (tuple, list)) else (seed,)
    for s in items:
        if s is None:
            continue
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise ConfigError(
                f"seed must be an int (0 .. 2**53 - 1), a tuple of ints (one per person) or None, got {seed!r}"
            )
        if not 0 <= int(s) <= MAX_SEED:
            raise ConfigError(f"seed must be between 0 and 2**53 - 1, got {s}")


def expand_seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    """One seed per person: ``s`` means ``s, s + 1, ...``; a sequence gives each its own; None is random.

    Raises:
        ConfigError: a seed that is not an int / sequence / None, or a sequence of the wrong length.
    """
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        return [int(seed) + i for i in range(n)]
    if isinstance(seed, (str, bytes, bool, np.bool_)) or not isinstance(seed, Sequence):
        raise ConfigError(f"seed must be an int, a sequence of ints (one per person) or None, got {seed!r}")
    seeds = list(seed)
    if len(seeds) != n:
        raise ConfigError(f"{n} people but {len(seeds)} seeds: pass one seed per person, or one int")
    _check_seed(tuple(seeds))
    return [None if s is None else int(s) for s in seeds]


def per_person(value: Any, n: int, name: str) -> list[Any]:
    """A per-person option: a tuple/list gives one value per person; anything else is shared by all.

    Raises:
        ConfigError: a tuple/list whose length is not ``n``.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(
                f"{name}: {n} people but {len(value)} values: pass one per person, or one for all"
            )
        return list(value)
    return [value] * n
