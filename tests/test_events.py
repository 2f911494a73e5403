"""Events are frozen, slotted value objects; `Event` is their closed union."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from sanschat import Data, EndOfStream, Event, TerminatorFound

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
