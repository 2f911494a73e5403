"""``mypyc_attr``, the class decorator that tells mypyc how to compile a class.

mypyc reads the decorator at build time (and a compiled class never calls it); at run
time ``mypy_extensions`` may be missing, since it is no dependency of sanschat, so this
module falls back to a stand-in that leaves the class as it is.  Not compiled itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["mypyc_attr"]

_T = TypeVar("_T")

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # the pure build without mypy_extensions installed
    def mypyc_attr(*attrs: str, **kwattrs: object) -> Callable[[_T], _T]:
        """A stand-in for ``mypy_extensions.mypyc_attr``: leaves the class as it is."""
        return lambda cls: cls
