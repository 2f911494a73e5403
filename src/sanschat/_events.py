"""Events that `Channel.receive` and `Channel.receive_eof` produce.

Theory of operation: an event is a frozen, slotted dataclass under the `Event` base class.
Events carry data, never behaviour; users dispatch on their type with ``match`` or
``isinstance``.  For one byte stream the events are, in order, any number of frames, each
made of zero or more `Data` events and one `TerminatorFound`, then (after
`Channel.receive_eof`) possibly a last unterminated run of `Data` and exactly one
`EndOfStream`.  Terminator bytes never appear inside `Data`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Data", "EndOfStream", "Event", "TerminatorFound"]


class Event:
    """Base class of every event sanschat produces."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Data(Event):
    """Bytes of the current frame, in stream order; never empty, never terminator bytes.

    How a frame is cut into `Data` events depends on how the stream arrived; joining the
    ``data`` of every `Data` event between two `TerminatorFound` events gives the frame.
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class TerminatorFound(Event):
    """The current frame has ended.

    ``terminator`` is what ended it: the byte string that matched (for a tuple terminator,
    the alternative that matched), or the ``int`` byte count that was set.
    """

    terminator: bytes | int


@dataclass(frozen=True, slots=True)
class EndOfStream(Event):
    """The peer will send nothing more; always the last event of a channel.

    ``incomplete`` is true if the stream ended inside a frame: bytes of a frame were
    delivered and no terminator followed them, or a byte-count terminator was still waiting
    for bytes.
    """

    incomplete: bool
