"""What users see of the types: public module names, no private names in public signatures,
and the typed user program of ``tests/typing`` (which CI also checks with mypy and pyright)."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import sanschat

PUBLIC_MODULES = [
    "sanschat",
    "sanschat.drivers",
    "sanschat.drivers.select",
    "sanschat.drivers.asyncio",
    "sanschat.drivers.trio",
    "sanschat.testing",
    "sanschat.testing.strategies",
    "sanschat.fuzz",
    "sanschat.examples",
]
# a name starting with "_" that is not a dunder, alone or after a dot: _Default, x._Marker
PRIVATE = re.compile(r"(?<![\w])_(?!_)[A-Za-z]\w*")


def public_callables() -> Iterator[tuple[str, Callable[..., object]]]:
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isfunction(value):
                yield f"{module_name}.{name}", value
            elif inspect.isclass(value):
                for attr in dir(value):
                    if attr.startswith("_") and attr != "__init__":
                        continue
                    member = inspect.getattr_static(value, attr)
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if isinstance(member, property) and member.fget is not None:
                        member = member.fget
                    if inspect.isfunction(member):
                        yield f"{module_name}.{name}.{attr}", member


def signatures_of(function: Callable[..., object]) -> list[inspect.Signature]:
    overloads = typing.get_overloads(function)  # type: ignore[attr-defined, unused-ignore]
    return [inspect.signature(f) for f in overloads or [function]]


def test_public_classes_name_the_module_users_import_them_from() -> None:
    for name in sanschat.__all__:
        value = getattr(sanschat, name)
        if isinstance(value, type):
            assert value.__module__ == "sanschat", name
    assert repr(sanschat.Chat).startswith("<class 'sanschat.Chat'")
    assert repr(sanschat.Chat()).startswith("<sanschat.Chat object at ")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="typing.get_overloads is 3.11+")
@pytest.mark.skipif(sanschat.COMPILED, reason="compiled methods keep no annotations")
def test_no_public_signature_names_a_private_type() -> None:
    found = []
    checked = 0
    for where, function in public_callables():
        for signature in signatures_of(function):
            checked += 1
            annotations = [p.annotation for p in signature.parameters.values()]
            annotations.append(signature.return_annotation)
            for annotation in annotations:
                if annotation is inspect.Parameter.empty:
                    continue
                text = annotation if isinstance(annotation, str) else repr(annotation)
                if PRIVATE.search(text):
                    found.append(f"{where}: {text}")
    assert checked > 150
    assert found == []


def test_the_private_pattern_finds_what_it_is_for() -> None:
    assert PRIVATE.search("int | _Default | None")
    assert PRIVATE.search("sanschat._channel._Default")
    assert not PRIVATE.search("Iterator[Event] | __dunder__ | my_type")


def test_the_typed_user_program_runs() -> None:
    path = Path(__file__).parent / "typing" / "user_program.py"
    namespace: dict[str, object] = {"__name__": "user_program"}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    main = namespace["main"]
    assert callable(main)
    assert main() == [
        "data b'GET'",
        "end b'\\r\\n'",
        "data b'tail'",
        "eof incomplete",
    ]
