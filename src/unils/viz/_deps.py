"""Optional dependencies of [`unils.viz`][unils.viz], imported only when needed."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingDependencyError


def require(module: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or say which package (from the ``viz`` extra) to install.

    Args:
        module: importable name, e.g. ``"PIL"``.
        package: pip name when it differs, e.g. ``"pillow"``.

    Raises:
        MissingDependencyError: the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{package or module} is needed for previews and plots: pip install 'unils[viz]' ({exc})"
        ) from exc
