"""Events are frozen, slotted value objects; `Event` is their closed union."""

from __future__ import annotations

import dataclasses
import gc
import threading
import typing

import pytest

from sanschat import COMPILED, Channel, Data, EndOfStream, Event, TerminatorFound

EVENTS = [Data(b"x"), TerminatorFound(b"\n"), TerminatorFound(3), EndOfStream(True)]


@pytest.mark.parametrize("event", EVENTS)
def test_every_event_is_an_instance_of_the_event_union(event: Event) -> None:
    assert isinstance(event, Event)


def test_the_event_union_is_closed_over_the_three_event_classes() -> None:
    assert typing.get_args(Event) == (Data, TerminatorFound, EndOfStream)
    assert not isinstance(b"x", Event)


@pytest.mark.parametrize("event", EVENTS)
def test_events_are_frozen(event: Event) -> None:
    field = dataclasses.fields(event)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, field, None)


@pytest.mark.parametrize("event", EVENTS)
def test_events_have_no_instance_dict(event: Event) -> None:
    assert not hasattr(event, "__dict__")


def test_events_compare_by_value_and_hash() -> None:
    assert Data(b"a") == Data(b"a") != Data(b"b")
    assert len({TerminatorFound(b"\n"), TerminatorFound(b"\n")}) == 1


def test_events_dispatch_with_match() -> None:
    def kind(event: Event) -> str:
        match event:
            case Data(data=data):
                return f"data {data!r}"
            case TerminatorFound(terminator=term):
                return f"end {term!r}"
            case EndOfStream(incomplete=incomplete):
                return f"eof {incomplete}"
        return "?"

    assert [kind(e) for e in EVENTS] == ["data b'x'", "end b'\\n'", "end 3", "eof True"]


# ------------------------------------------------- compiled: acyclic events, Data's free list


@pytest.mark.parametrize("event", EVENTS)
def test_compiled_events_are_not_tracked_by_the_garbage_collector(event: Event) -> None:
    # Compiled they are acyclic (no GC header); pure Python, slotted instances are tracked.
    assert gc.is_tracked(event) is not COMPILED


@pytest.mark.skipif(not COMPILED, reason="pure Python slots take any object")
@pytest.mark.parametrize(
    ("event", "field"), [(Data(b"x"), "data"), (TerminatorFound(b"\n"), "terminator")]
)
def test_compiled_event_fields_refuse_objects_that_could_make_a_cycle(
    event: Event, field: str
) -> None:
    # What makes them safe to leave untracked: nothing but the declared type gets in.
    with pytest.raises(TypeError):
        object.__setattr__(event, field, [event])
    assert getattr(event, field) in (b"x", b"\n")


def _kept_and_let_go(channel: Channel, reads: list[bytes], keep_every: int) -> list[Data]:
    """Receive *reads*, keeping every *keep_every*-th Data and letting the others go at once."""
    kept: list[Data] = []
    count = 0
    for read in reads:
        for event in channel.receive(read):
            if type(event) is Data:
                count += 1
                if count % keep_every == 0:
                    kept.append(event)
    return kept


@pytest.mark.parametrize("keep_every", [1, 2, 3, 1000])
def test_data_kept_by_the_consumer_keep_their_bytes_while_later_ones_are_made(
    keep_every: int,
) -> None:
    # The free list reuses only a Data nobody refers to: the ones kept never change.
    lines = [b"line %05d of many" % i for i in range(3000)]
    stream = b"".join(line + b"\n" for line in lines)
    reads = [stream[i : i + 4093] for i in range(0, len(stream), 4093)]  # cuts inside lines
    kept = _kept_and_let_go(Channel(b"\n"), reads, keep_every)
    pieces = [event.data for event in _kept_and_let_go(Channel(b"\n"), reads, 1)]
    assert b"".join(pieces) == stream.replace(b"\n", b"")
    assert [event.data for event in kept] == pieces[keep_every - 1 :: keep_every]
    copies = [bytes(event.data) for event in kept]
    _kept_and_let_go(Channel(b"\n"), reads, 7)  # more made and freed meanwhile
    assert [event.data for event in kept] == copies


def test_threads_making_and_freeing_data_each_get_their_own_bytes() -> None:
    # (The compiled free list is per thread.)
    results: dict[int, bool] = {}

    def work(worker: int) -> None:
        lines = [b"%d:%06d" % (worker, i) for i in range(20000)]
        channel = Channel(b"\n")
        got = [e.data for e in channel.receive(b"\n".join(lines) + b"\n") if type(e) is Data]
        results[worker] = got == lines

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {w: True for w in range(4)}
