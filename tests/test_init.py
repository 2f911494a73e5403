"""The public surface: what ``sanschat/__init__.py`` exports agrees with ``__all__``."""

from __future__ import annotations

import importlib.resources
import inspect

import sanschat


def test_all_lists_exactly_the_public_names_of_the_package() -> None:
    public = {
        name
        for name, value in vars(sanschat).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(sanschat.__all__) == public


def test_every_public_name_has_a_docstring() -> None:
    for name in sanschat.__all__:
        value = getattr(sanschat, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name


def test_every_public_method_has_a_docstring() -> None:
    for name in sanschat.__all__:
        value = getattr(sanschat, name)
        if not inspect.isclass(value):
            continue
        for attr, member in vars(value).items():
            if attr.startswith("_") or not (callable(member) or isinstance(member, property)):
                continue
            assert inspect.getdoc(member), f"{name}.{attr}"


def test_the_package_ships_its_py_typed_marker() -> None:
    assert importlib.resources.files("sanschat").joinpath("py.typed").is_file()
