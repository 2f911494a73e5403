"""The `Producer` protocol: what a source of outgoing bytes must look like.

Theory of operation: this module holds the library's ``runtime_checkable`` protocol on its
own because it must stay pure Python in every build: mypyc compiles a class into a native
class, and ``runtime_checkable`` refuses anything that is not a real protocol class.  So the
compiled build (see the README's "Compiled build") never lists this module; `_producers`
re-exports `Producer` from here, so every import site stays the same.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Producer"]


@runtime_checkable
class Producer(Protocol):
    """Anything with a ``more()`` method: the source of outgoing bytes that asynchat defined.

    ``more()`` returns the next bytes to send, and ``b""`` if, and only if, the producer is
    exhausted; it is not called again after that.  The send queue also takes a
    ``bytearray`` or ``memoryview`` from it (copied if mutable; empty means exhausted).
    """

    def more(self) -> bytes:
        """Return the next bytes to send, or ``b""`` once exhausted."""
        ...
