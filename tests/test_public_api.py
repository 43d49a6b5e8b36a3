"""The public API is chosen on purpose: `__all__` lists exactly what the package exports
(a habit from httpx), and the exception tree has one root."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType

import wiz_executor
from wiz_executor import errors


def test_all_lists_exactly_the_exported_names() -> None:
    exported = {
        name
        for name, value in vars(wiz_executor).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert set(wiz_executor.__all__) - {"__version__"} == exported
    assert len(wiz_executor.__all__) == len(set(wiz_executor.__all__))
    assert wiz_executor.__all__ == sorted(wiz_executor.__all__)
    for name in wiz_executor.__all__:
        assert getattr(wiz_executor, name) is not None


def test_every_error_is_exported_under_one_root() -> None:
    tree = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == errors.__name__
    }
    assert tree
    for cls in tree:
        assert issubclass(cls, wiz_executor.WizError), cls
        assert getattr(wiz_executor, cls.__name__) is cls
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the tree"


def test_the_package_ships_type_information() -> None:
    assert (Path(wiz_executor.__file__).parent / "py.typed").is_file()


def test_version_is_a_string() -> None:
    assert isinstance(wiz_executor.__version__, str)
    assert wiz_executor.__version__.count(".") == 2
