"""Events that `Channel.receive` and `Channel.receive_eof` produce.

Theory of operation: an event is a frozen, slotted dataclass under one small base class, and
`Event` is the closed union of the three event classes, so that a type checker knows a
``match`` over them is exhaustive.  Events carry data, never behaviour; users dispatch on
their type with ``match`` or ``isinstance`` (``isinstance(x, Event)`` works on the union).
For one byte stream the events are, in order, any number of frames, each
made of zero or more `Data` events and one `TerminatorFound`, then (after
`Channel.receive_eof`) possibly a last unterminated run of `Data` and exactly one
`EndOfStream`.  Terminator bytes never appear inside `Data`.

The events have explicit ``__init__`` methods (a dataclass-generated one stays interpreted
when mypyc compiles this module); the core builds `Data` with `make_data` / `make_datas`,
the fastest correct way in each build.  `COMPILED` tells which build this module runs as.

Compiled, the event classes are *acyclic* (their fields hold bytes, an int or a bool, which
cannot lead back to them, and mypyc's typed setters refuse anything else), so their
instances carry no garbage-collector header and are never tracked; and `Data` keeps the
last instance freed for the next one it makes (mypyc's one-entry free list), which is the
pattern of an event loop that lets each `Data` go before it reaches the next: a bulk read
through `receive` then costs no allocation per frame (docs/benchmarks.md has the figures).
(Compiling them needs mypy 1.20 or later; the pure build ignores the decorator.)
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Final, TypeAlias

from ._mypyc import mypyc_attr

__all__ = ["Data", "EndOfStream", "Event", "TerminatorFound"]


def _probe() -> None:
    """Compiled by mypyc along with this module, it is no longer a Python function."""


#: True when this module runs compiled by mypyc (see `sanschat.COMPILED`).
COMPILED: Final = not isinstance(_probe, types.FunctionType)


@mypyc_attr(acyclic=True)
class _EventBase:
    """Base class of every event sanschat produces (their union is `Event`)."""

    __slots__ = ()


@mypyc_attr(acyclic=True, free_list_len=1)
@dataclass(frozen=True, slots=True)
class Data(_EventBase):
    """Bytes of the current frame, in stream order; never empty, never terminator bytes.

    How a frame is cut into `Data` events depends on how the stream arrived; joining the
    ``data`` of every `Data` event between two `TerminatorFound` events gives the frame.
    """

    data: bytes

    def __init__(self, data: bytes) -> None:
        object.__setattr__(self, "data", data)


@mypyc_attr(acyclic=True)
@dataclass(frozen=True, slots=True)
class TerminatorFound(_EventBase):
    """The current frame has ended.

    ``terminator`` is what ended it: the byte string that matched (for a tuple terminator,
    the alternative that matched), or the ``int`` byte count that was set.
    """

    terminator: bytes | int

    def __init__(self, terminator: bytes | int) -> None:
        object.__setattr__(self, "terminator", terminator)


@mypyc_attr(acyclic=True)
@dataclass(frozen=True, slots=True)
class EndOfStream(_EventBase):
    """The peer will send nothing more; always the last event of a channel.

    ``incomplete`` is true if the stream ended inside a frame: bytes of a frame were
    delivered and no terminator followed them, or a byte-count terminator was still waiting
    for bytes.
    """

    incomplete: bool

    def __init__(self, incomplete: bool) -> None:
        object.__setattr__(self, "incomplete", incomplete)


#: Every event sanschat produces: a closed union, so ``match`` over `Data`,
#: `TerminatorFound` and `EndOfStream` can end in ``assert_never``; ``isinstance(x, Event)``
#: works too.
Event: TypeAlias = Data | TerminatorFound | EndOfStream


# Building events fast.  A compiled `Data(data)` is a direct call of the explicit __init__
# above (~40 ns).  In pure Python a class call runs __init__ as a Python frame (~300 ns), so
# there the fastest correct way is to allocate the instance and fill its one slot through the
# slot descriptor, which is what the frozen dataclass's own __setattr__ guard is bypassed by
# (the instance is new, nobody else can see it yet).  Compiled, ``object.__new__(Data)`` is
# refused ("not safe"), hence the two ways.
_new: Final = object.__new__
_set_data: Final[Callable[[Data, bytes], None]] = vars(Data)["data"].__set__


def make_data(data: bytes) -> Data:
    """Return ``Data(data)``, built the fastest correct way for this build."""
    if COMPILED:
        return Data(data)
    event: Data = _new(Data)
    _set_data(event, data)
    return event


def make_datas(parts: list[bytes]) -> list[Data]:
    """Return ``[Data(part) for part in parts]``, built the fastest correct way for this build."""
    if COMPILED:
        return [Data(part) for part in parts]
    datas: list[Data] = list(map(_new, repeat(Data, len(parts))))
    deque(map(_set_data, datas, parts), maxlen=0)
    return datas
