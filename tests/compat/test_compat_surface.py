"""The public surface of sanschat.compat: every stdlib name, with the same signature.

Where Python still has ``asynchat``/``asyncore`` (3.11), every name they define must exist
in sanschat.compat's modules, every function and method must take the same parameters with
the same defaults, and the class attributes code tunes must have the same defaults.  On any
Python, every public name of sanschat.compat must be documented.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

import pytest
from compat_util import sanschat_mods, stdlib_mods

import sanschat.compat

STDLIB = stdlib_mods()
COMPAT = sanschat_mods()
needs_stdlib = pytest.mark.skipif(STDLIB is None, reason="no stdlib asynchat in this Python")
PAIRS = ["asynchat", "asyncore"]
# Private to the stdlib modules' deprecation, which sanschat.compat does not issue.
# Deprecation plumbing, and (3.10 only) asynchat's module-level import of warnings.warn:
# the surface copied is 3.11's.
NOT_COPIED = {"_DEPRECATION_MSG", "_deprecated", "warn"}


def _modules(name: str) -> tuple[Any, Any]:
    assert STDLIB is not None
    return getattr(STDLIB, name), getattr(COMPAT, name)


def _params(func: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


@needs_stdlib
@pytest.mark.parametrize("name", PAIRS)
def test_every_stdlib_name_exists_in_compat(name: str) -> None:
    theirs, ours = _modules(name)
    names = {n for n in vars(theirs) if not n.startswith("__")} - NOT_COPIED
    assert sorted(n for n in names if not hasattr(ours, n)) == []


@needs_stdlib
@pytest.mark.parametrize("name", PAIRS)
def test_functions_and_methods_take_the_same_parameters(name: str) -> None:
    theirs, ours = _modules(name)
    checked = 0
    for attr, value in vars(theirs).items():
        if inspect.isfunction(value) and value.__module__ == theirs.__name__:
            assert _params(getattr(ours, attr)) == _params(value), attr
            checked += 1
        elif inspect.isclass(value) and value.__module__ == theirs.__name__:
            mine = getattr(ours, attr)
            for method, func in vars(value).items():
                if inspect.isfunction(func):
                    assert _params(getattr(mine, method)) == _params(func), f"{attr}.{method}"
                    checked += 1
    assert checked > 10


@needs_stdlib
def test_class_attributes_have_the_same_defaults() -> None:
    assert STDLIB is not None
    for cls in ("async_chat",):
        theirs, ours = getattr(STDLIB.asynchat, cls), getattr(COMPAT.asynchat, cls)
        for attr in ("ac_in_buffer_size", "ac_out_buffer_size", "use_encoding", "encoding"):
            assert getattr(ours, attr) == getattr(theirs, attr), attr
    theirs, ours = STDLIB.asyncore.dispatcher, COMPAT.asyncore.dispatcher
    for attr in (
        "debug",
        "connected",
        "accepting",
        "connecting",
        "closing",
        "addr",
        "ignore_log_types",
    ):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert COMPAT.asyncore._DISCONNECTED == STDLIB.asyncore._DISCONNECTED
    assert issubclass(COMPAT.asyncore.ExitNow, Exception)


def test_async_chat_is_a_dispatcher_and_there_is_no_fifo() -> None:
    assert issubclass(COMPAT.asynchat.async_chat, COMPAT.asyncore.dispatcher)
    assert COMPAT.asynchat.asyncore is COMPAT.asyncore
    assert not hasattr(COMPAT.asynchat, "fifo")  # Python 3.11 had none either
    if STDLIB is not None:
        assert not hasattr(STDLIB.asynchat, "fifo")
    assert not hasattr(COMPAT.asynchat.async_chat(map={}), "terminator")
    # 3.6 removed dispatcher.__getattr__ (delegation to the socket); 3.11 has none either
    assert "__getattr__" not in vars(COMPAT.asyncore.dispatcher)
    if STDLIB is not None:
        assert "__getattr__" not in vars(STDLIB.asyncore.dispatcher)


def test_importing_compat_does_not_warn() -> None:
    code = "from sanschat.compat import asynchat, asyncore; print(asynchat.async_chat)"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("name", PAIRS)
def test_all_lists_documented_names(name: str) -> None:
    module = getattr(COMPAT, name)
    assert module.__doc__
    for public in module.__all__:
        value = getattr(module, public)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), public
        if inspect.isclass(value):
            for attr, member in vars(value).items():
                if not attr.startswith("_") and (
                    inspect.isfunction(member) or isinstance(member, property)
                ):
                    assert inspect.getdoc(member), f"{public}.{attr}"
    assert sanschat.compat.__all__ == ["asynchat", "asyncore"]
