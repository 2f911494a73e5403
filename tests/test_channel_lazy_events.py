"""`_LazyEvents`, the compiled build's iterator of a large events outbox: it must behave as the
``map(_as_event, iter(out))`` it replaces, item for item, in both builds (it is plain Python in
the pure one, where the channel never uses it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sanschat import COMPILED, Channel, Data, FrameTooLarge, TerminatorFound, _channel

FOUND = TerminatorFound(b"\n")


def outbox() -> list[Any]:
    return [b"one", FOUND, b"two", FOUND, FOUND]


def lazy(out: list[Any]) -> Any:
    return _channel._LazyEvents(out)


def mapped(out: list[Any]) -> Any:
    return map(_channel._as_event, iter(out))


def test_it_yields_a_data_for_each_frame_and_the_other_items_as_they_are() -> None:
    assert list(lazy(outbox())) == list(mapped(outbox())) == [
        Data(b"one"), FOUND, Data(b"two"), FOUND, FOUND
    ]


def test_its_length_hint_counts_the_items_not_reached_as_a_list_iterator_does() -> None:
    out = outbox()
    events, plain = lazy(out), iter(list(out))
    for _ in range(len(out) + 1):
        assert events.__length_hint__() == plain.__length_hint__()
        next(events, None)
        next(plain, None)
    assert events.__length_hint__() == 0


def test_before_its_end_it_sees_appended_items_and_once_past_it_never_again() -> None:
    out = outbox()
    events = lazy(out)
    for _ in range(len(out)):
        next(events)
    out.append(b"three")  # at its end, not past it: still seen
    assert next(events) == Data(b"three")
    assert not _channel._exhausted(events)
    with pytest.raises(StopIteration):
        next(events)
    assert _channel._exhausted(events)
    out.append(b"four")  # past its end: ignored, as a list iterator does
    assert list(events) == [] and events.__length_hint__() == 0


def test_items_taken_back_behind_it_end_it_with_a_zero_hint() -> None:
    out = outbox()
    events = lazy(out)
    next(events)
    next(events)
    del out[1:]  # taken back, including the one it reached (a list iterator's case too)
    assert events.__length_hint__() == 0
    assert list(events) == []


def test_an_overflow_item_raises_frame_too_large_when_reached() -> None:
    channel = Channel(b"\n", max_frame_size=4)
    out: list[Any] = [b"ok"]
    out.append(_channel._Overflow(channel, out, 4, 9))
    events = lazy(out)
    assert next(events) == Data(b"ok")
    with pytest.raises(FrameTooLarge):
        next(events)


@pytest.mark.parametrize("make", [lazy, mapped])
def test_both_iterators_agree_on_every_prefix_then_abandon(
    make: Callable[[list[Any]], Any],
) -> None:
    for stop in range(len(outbox()) + 1):
        events: Iterator[Any] = make(outbox())
        taken = [next(events) for _ in range(stop)]
        assert taken == list(mapped(outbox()))[:stop]


@pytest.mark.skipif(not COMPILED, reason="only the compiled build hands out a _LazyEvents")
def test_a_large_batch_of_events_is_handed_out_lazily_and_a_small_one_by_map() -> None:
    channel = Channel(b"\n")
    many = channel.receive(b"x\n" * _channel._LAZY_MIN)
    assert type(many) is _channel._LazyEvents
    assert sum(1 for event in many if type(event) is Data) == _channel._LAZY_MIN
    few = channel.receive(b"y\nz\n")
    assert type(few) is not _channel._LazyEvents
    assert [event for event in few] == [Data(b"y"), FOUND, Data(b"z"), FOUND]


def test_an_abandoned_large_batch_loses_nothing_in_either_build() -> None:
    channel = Channel(b"\n")
    events = channel.receive(b"".join(b"%d\n" % i for i in range(100)))
    first = [next(events) for _ in range(11)]  # the sixth Data, not its end
    assert first[-1] == Data(b"5")
    rest = list(channel.receive(b"100\n"))
    assert rest[0] == FOUND  # the owed end of "5" comes first
    datas = [event.data for event in first + rest if type(event) is Data]
    assert datas == [b"%d" % i for i in range(101)]
