"""Small helpers the tests share to run a channel over chunks and summarise what came out."""

from __future__ import annotations

from collections.abc import Iterable

from sanschat import Channel, Data, EndOfStream, Event, TerminatorFound


def run(channel: Channel, chunks: Iterable[bytes], eof: bool = True) -> list[Event]:
    """Feed *chunks* one by one (then end of stream if *eof*); return every event."""
    events: list[Event] = []
    for chunk in chunks:
        events.extend(channel.receive(chunk))
    if eof:
        events.extend(channel.receive_eof())
    return events


def summary(events: Iterable[Event]) -> list[tuple[bytes, object]]:
    """Join Data per frame: ``[(frame, terminator), ..., (rest, EndOfStream)]``.

    Two event lists with the same summary differ only in how `Data` was cut.
    """
    out: list[tuple[bytes, object]] = []
    data = bytearray()
    for event in events:
        if isinstance(event, Data):
            assert event.data, "Data events are never empty"
            data += event.data
        elif isinstance(event, TerminatorFound):
            out.append((bytes(data), event.terminator))
            data.clear()
        elif isinstance(event, EndOfStream):
            out.append((bytes(data), event))
            data.clear()
    if data:
        out.append((bytes(data), None))
    return out


def cut(data: bytes, size: int) -> list[bytes]:
    """*data* in chunks of *size* bytes (the last may be shorter)."""
    return [data[i : i + size] for i in range(0, len(data), size)]
