"""The per-frame loops of `Chat`, kept interpreted in every build.

Theory of operation: in the compiled build (docs/guide/compiled.md) `Chat` is a native class,
but the hooks it calls once per frame (`Chat.found_frame`, `collect_incoming_data`,
`found_terminator`) are the subclass's Python methods.  CPython calls a Python function from
Python code without leaving its eval loop, and from compiled code through a new entry into
it, which costs more than the loop saves: so a loop over many frames is run here, entered
once per read, and a read of one or two frames is looped by `Chat` itself.  The compiled
build never lists this module; in the pure build it is just the same loop one call away.
These functions only loop: what to dispatch and when to stop is decided by `Chat`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ._events import Data

__all__ = ["each_event", "each_frame"]


def each_frame(found: Callable[[bytes], object], frames: Iterable[bytes]) -> None:
    """Call *found* with each frame of *frames*, in order."""
    for frame in frames:
        found(frame)


def each_event(
    collect: Callable[[bytes], object], terminated: Callable[[], object], events: Iterable[object]
) -> None:
    """asynchat's style: *collect* the bytes of each `Data`, *terminated* for each other event
    (a `TerminatorFound`), in order."""
    for event in events:
        if type(event) is Data:
            collect(event.data)
        else:
            terminated()
