"""`sanschat._loops`: the interpreted per-frame loops `Chat` hands many frames to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sanschat import Data, TerminatorFound
from sanschat._loops import each_event, each_frame


def test_each_frame_calls_the_hook_once_per_frame_in_order() -> None:
    seen: list[bytes] = []
    each_frame(seen.append, iter([b"a", b"", b"c"]))
    assert seen == [b"a", b"", b"c"]


def test_each_frame_stops_at_the_hook_error_and_leaves_the_rest() -> None:
    def found(frame: bytes) -> None:
        if frame == b"b":
            raise RuntimeError("bug")

    frames = iter([b"a", b"b", b"c"])
    with pytest.raises(RuntimeError, match="bug"):
        each_frame(found, frames)
    assert list(frames) == [b"c"]


def test_each_event_collects_data_and_ends_frames_in_order() -> None:
    log: list[object] = []
    events = [Data(b"ab"), Data(b"c"), TerminatorFound(b"\n"), TerminatorFound(b"\n"), Data(b"d")]
    each_event(log.append, lambda: log.append("END"), iter(events))
    assert log == [b"ab", b"c", "END", "END", b"d"]


def test_each_event_passes_the_iterator_error_on_after_the_events_before_it() -> None:
    log: list[object] = []

    def events() -> Iterator[Data]:
        yield Data(b"x")
        raise ValueError("cut")

    with pytest.raises(ValueError, match="cut"):
        each_event(log.append, lambda: log.append("END"), events())
    assert log == [b"x"]
