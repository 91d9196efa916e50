"""Every error type lives in unils.errors, is exported from unils and subclasses a builtin."""

from __future__ import annotations

import inspect

import unils
import unils.errors


def _error_types():
    return [obj for _, obj in inspect.getmembers(unils.errors, inspect.isclass) if issubclass(obj, Exception)]


def test_every_error_type_is_in_errors_and_exported_from_unils():
    names = {cls.__name__ for cls in _error_types()}
    assert names == set(unils.errors.__all__)
    missing = sorted(n for n in names if getattr(unils, n, None) is not getattr(unils.errors, n))
    assert missing == [], f"export these from unils: {missing}"
    assert names <= set(unils.__all__)


def test_errors_subclass_unils_error_and_a_builtin():
    for cls in _error_types():
        if cls is unils.UniLSError:
            continue
        assert issubclass(cls, unils.UniLSError), cls
        generic = (Exception, BaseException, object)
        builtin = [b for b in cls.__mro__[1:] if b.__module__ == "builtins" and b not in generic]
        assert builtin, f"{cls.__name__} should also subclass a builtin (ValueError, FileNotFoundError...)"


def test_no_error_type_is_defined_outside_errors():
    import importlib
    import pkgutil

    stray = []
    for info in pkgutil.walk_packages(unils.__path__, "unils."):
        if info.name.endswith(".__main__"):
            continue  # runs the CLI
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue  # an optional extra that is not installed
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Exception) and obj.__module__ == info.name and info.name != "unils.errors":
                stray.append(f"{info.name}.{obj.__name__}")
    assert stray == [], f"move these to unils/errors.py: {stray}"


def test_old_import_locations_still_work():
    from unils.train.data import DatasetError

    assert DatasetError is unils.DatasetError and issubclass(DatasetError, ValueError)
    assert unils.FormatError is unils.errors.FormatError
