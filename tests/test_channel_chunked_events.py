"""The pure build's chunked events outbox: a batch of many frames builds its `Data` events
`_CHUNK` frames at a time (`sanschat._channel._Pending`), as the consumer gets there.

Nothing a consumer can observe may change: every script below (a loop broken anywhere, a
terminator or limit set anywhere, `take_unframed`, `discard_buffers`, `interrupt`, the
end of stream after an abandoned loop, the state getters after every event) is played on
a channel chunking at a tiny `_CHUNK` and on one with chunking out of reach (the batch
built at once, as before), and the two logs must be equal; the plain loop is also compared
with a channel fed one byte at a time.  The property suite runs again with ``_CHUNK = 1``.
What does change: the number of `Data` objects alive while a long read is consumed.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import test_channel_properties as properties
from framing import summary

import sanschat
import sanschat._channel as channel_module
from sanschat import Channel, Chat, Data, FrameTooLarge, TerminatorFound
from sanschat.testing import ChatHarness, RecordingTransport

pytestmark = pytest.mark.skipif(
    sanschat.COMPILED, reason="the compiled build builds each Data as it is reached instead"
)

CHUNK = 4  # frames per chunk in the scripts below: a read of their dozen frames makes 3 or 4
OFF = 10**9  # no read reaches it: the batch is built at once


@pytest.fixture
def chunk_size(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    def set_chunk(size: int) -> None:
        monkeypatch.setattr(channel_module, "_CHUNK", size)

    return set_chunk


# A dozen frames, empty ones among them or not, then the start of one more (and, with b"\r\n",
# half of its terminator, held back).
FRAMES = {
    "empty frames": [b"a", b"", b"bb", b"ccc", b"", b"", b"d", b"ee", b"f", b"", b"gg", b"h", b""],
    "no empty frame": [b"a", b"bb", b"c", b"dd", b"e", b"ff", b"g", b"hh", b"i", b"jj", b"k", b"l"],
}


def stream(term: bytes, frames: str = "empty frames") -> bytes:
    return term.join(FRAMES[frames]) + term + b"tail" + term[:-1]


#: Whether the scripts keep every event they log (True) or only what it says (False): a
#: `Data` the consumer lets go may be refilled with a later frame (`_reusable`), one kept
#: never is, and both must log the same.
KEEP = True


def record(log: list[Any], event: object) -> None:
    log.append(event if KEEP or type(event) is not Data else ("Data", event.data))  # type: ignore[attr-defined]


def observe(channel: Channel, log: list[Any]) -> None:
    log.append(("state", channel.buffered_input, channel.get_terminator(), channel.max_frame_size))


def drain(channel: Channel, events: Iterator[Any], log: list[Any]) -> None:
    """Log every event of *events*, and the channel's state after each; an error too."""
    try:
        for event in events:
            record(log, event)
            observe(channel, log)
    except FrameTooLarge as error:
        log.append(("too large", error.limit, error.size, error.buffered))


Action = Callable[[Channel, list[Any]], bool]


def play(size: int, term: bytes, frames: str, at: int, action: Action) -> list[Any]:
    """Run *action* after event *at* of the loop over one read; it returns True to break
    out of the loop.  Then go on as a program would: a new call, then the end of stream."""
    channel_module._CHUNK = size
    channel = Channel(term)
    log: list[Any] = []
    events = channel.receive(stream(term, frames))
    try:
        for i, event in enumerate(events):
            record(log, event)
            observe(channel, log)
            del event  # (the loop would otherwise keep the last one)
            if i == at and action(channel, log):
                break
    except FrameTooLarge as error:
        log.append(("too large", error.limit, error.size, error.buffered))
    log.append("next call")
    try:
        drain(channel, channel.receive(b"more" + term + term), log)
    except ValueError as error:  # after receive_eof in the loop
        log.append(("refused", str(error)))
    log.append("eof")
    drain(channel, channel.receive_eof(), log)
    log.append(("left", channel.take_unframed()))
    return log


def setting(terminator: Any, **limit: int) -> Action:
    def action(channel: Channel, log: list[Any]) -> bool:
        try:
            channel.set_terminator(terminator, **limit)
        except FrameTooLarge as error:
            log.append(("too large now", error.limit, error.size))
        observe(channel, log)
        return False

    return action


def breaking(channel: Channel, log: list[Any]) -> bool:
    return True


def unframed(channel: Channel, log: list[Any]) -> bool:
    log.append(("unframed", channel.take_unframed()))
    observe(channel, log)
    return False


def unframed_and_break(channel: Channel, log: list[Any]) -> bool:
    unframed(channel, log)
    return True


def discarding(channel: Channel, log: list[Any]) -> bool:
    channel.discard_buffers()
    observe(channel, log)
    return False


def interrupting(channel: Channel, log: list[Any]) -> bool:
    channel.interrupt()
    return False


def ending(channel: Channel, log: list[Any]) -> bool:
    drain(channel, channel.receive_eof(), log)
    return False


ACTIONS: dict[str, Action] = {
    "break": breaking,
    "same terminator": setting(b"\n"),
    "bytes": setting(b"e"),
    "longer bytes": setting(b"\n\n"),
    "int": setting(3),
    "int 0": setting(0),
    "None": setting(None),
    "tuple": setting((b"\n", b"c")),
    "smaller limit": setting(b"\n", max_frame_size=2),
    "limit 0": setting(b"\r\n", max_frame_size=0),
    "take_unframed": unframed,
    "take_unframed, break": unframed_and_break,
    "discard_buffers": discarding,
    "interrupt": interrupting,
    "receive_eof": ending,
}


@pytest.mark.parametrize("keep", [True, False], ids=["events kept", "events let go"])
@pytest.mark.parametrize("frames", FRAMES)
@pytest.mark.parametrize("term", [b"\n", b"\r\n"])
@pytest.mark.parametrize("name", ACTIONS)
def test_every_script_sees_what_it_saw_with_the_batch_built_at_once(
    name: str, term: bytes, frames: str, keep: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_module, "_CHUNK", OFF)  # (restored afterwards)
    monkeypatch.setattr(sys.modules[__name__], "KEEP", keep)
    action = ACTIONS[name]
    whole = play(OFF, term, frames, -1, action)
    count = len(
        [e for e in whole[: whole.index("next call")] if not isinstance(e, tuple) or e[0] == "Data"]
    )
    assert count > 3 * CHUNK  # the read spans several chunks
    for at in range(count + 1):  # every position: inside chunks, at their ends, past them
        for size in (1, CHUNK):
            got = play(size, term, frames, at, action)
            assert got == play(OFF, term, frames, at, action), (size, at)


def test_the_plain_loop_agrees_with_a_channel_fed_one_byte_at_a_time(
    chunk_size: Callable[[int], None],
) -> None:
    chunk_size(CHUNK)
    data = stream(b"\r\n") * 2 + stream(b"\r\n", "no empty frame") * 2
    chunked = Channel(b"\r\n")
    events = [*chunked.receive(data), *chunked.receive_eof()]
    bytewise = Channel(b"\r\n")
    reference = [e for i in range(len(data)) for e in bytewise.receive(data[i : i + 1])]
    assert summary(events) == summary([*reference, *bytewise.receive_eof()])


def test_a_frame_over_the_limit_after_the_chunks_raises_after_all_of_them(
    chunk_size: Callable[[int], None],
) -> None:
    chunk_size(CHUNK)
    channel = Channel(b"\n", max_frame_size=3)
    events = channel.receive(b"x\n" * 20 + b"toolong\nnext\n")
    frames = 0
    with pytest.raises(FrameTooLarge) as caught:
        for event in events:
            frames += not isinstance(event, Data)
    assert frames == 20 and caught.value.size == 7
    assert caught.value.buffered == len(b"toolong\nnext\n")


# ---------------------------------------------------------------- the property suite again


@pytest.mark.parametrize(
    "prop",
    [
        properties.test_events_do_not_depend_on_how_the_stream_is_chunked,
        properties.test_events_do_not_depend_on_chunking_when_the_handler_changes_terminator_per_frame,
        properties.test_frames_and_receive_mixed_and_abandoned_per_chunk_give_the_frames_receive_gives,
        properties.test_abandoning_event_iterators_anywhere_loses_and_duplicates_nothing,
        properties.test_receive_matches_the_reference_framer_after_every_chunk_and_at_eof,
        properties.test_max_frame_size_bounds_buffered_input_and_frame_too_large_loses_nothing,
    ],
    ids=lambda prop: prop.__name__.removeprefix("test_"),
)
def test_the_channel_properties_hold_with_one_frame_per_chunk(
    prop: Callable[[], None], chunk_size: Callable[[int], None]
) -> None:
    chunk_size(1)
    prop()


# ---------------------------------------------------------------- what it is for


def live_data() -> int:
    return sum(type(o) is Data for o in gc.get_objects())


def test_a_long_read_keeps_a_bounded_number_of_data_events_alive() -> None:
    chunk = channel_module._CHUNK
    lines = 16 * chunk
    channel = Channel(b"\n")
    before = live_data()
    count = most = 0
    for event in channel.receive(b"abcdefghijklmno\n" * lines):
        count += type(event) is Data
        if count % 97 == 0:
            most = max(most, live_data() - before)
    assert count == lines and 0 < most <= 3 * chunk  # (building them all at once: `lines`)


def test_a_consumed_read_leaves_nothing_for_the_collector_to_free() -> None:
    channel = Channel(b"\n")
    gc.collect()
    gc.disable()  # what is still alive below is alive, or garbage only a collection frees
    before = live_data()  # (other tests may leave some)
    try:
        for _ in channel.receive(b"abcdefghijklmno\n" * 8 * channel_module._CHUNK):
            pass
        assert any(type(o) is channel_module._Pending for o in gc.get_objects())
        assert list(channel.receive(b"x")) == [Data(b"x")]  # the earlier outbox is dropped
        assert not any(type(o) is channel_module._Pending for o in gc.get_objects())
        assert live_data() - before <= 1
    finally:
        gc.enable()


# ---------------------------------------------------------------- Data refilled, never seen


def counting_make_datas(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the `Data` the outbox makes in batches (`_events_of` and `_Pending`)."""
    made: list[int] = []
    real = channel_module.make_datas

    def make_datas(parts: list[bytes]) -> list[Data]:
        made.append(len(parts))
        return real(parts)

    monkeypatch.setattr(channel_module, "make_datas", make_datas)
    return made


def lines(count: int) -> bytes:
    return b"".join(b"line %d of the read\n" % i for i in range(count))


@pytest.mark.skipif(not channel_module._REFCOUNTS_EXACT, reason="no refill without exact counts")
def test_a_loop_that_lets_each_data_go_gets_them_refilled_with_the_next_chunk(
    chunk_size: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk_size(CHUNK)
    made = counting_make_datas(monkeypatch)
    data = lines(10 * CHUNK + 3)  # the last chunk is shorter: a part of the Data is refilled
    got = []
    for event in Channel(b"\n").receive(data):
        got.append(event.data if type(event) is Data else event)
    assert made == [CHUNK, CHUNK]  # the first chunk, then the second: no more objects made
    assert got == [part for line in data.splitlines() for part in (line, TerminatorFound(b"\n"))]


def test_a_data_the_consumer_keeps_is_never_refilled(
    chunk_size: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk_size(CHUNK)
    made = counting_make_datas(monkeypatch)
    data = lines(12 * CHUNK)
    kept: list[Data] = []
    held: dict[str, Data] = {}

    class Holder:
        data: Data | None = None

    holder = Holder()
    seen = []
    for i, event in enumerate(Channel(b"\n").receive(data)):
        if type(event) is Data:
            seen.append(event.data)
            if i % 14 == 0:  # a Data in every chunk or so, each held a different way
                if i % 3 == 0:
                    kept.append(event)
                elif i % 3 == 1:
                    held[str(i)] = event
                else:
                    holder.data = event
    assert seen == data.splitlines()
    for event in [*kept, *held.values(), holder.data]:
        assert isinstance(event, Data) and event.data in seen
        assert seen.index(event.data) * 2 % 14 == 0  # still the frame it was made for
    assert holder.data is not None and len(kept) + len(held) > 4
    assert len(made) >= 4  # chunks whose Data were kept made new ones


def test_without_exact_reference_counts_every_chunk_makes_its_own(
    chunk_size: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk_size(CHUNK)
    monkeypatch.setattr(channel_module, "_REFCOUNTS_EXACT", False)
    made = counting_make_datas(monkeypatch)
    data = lines(10 * CHUNK + 3)
    got = [event.data for event in Channel(b"\n").receive(data) if type(event) is Data]
    assert got == data.splitlines()
    assert made == [CHUNK] * 10 + [3]


class Lines(Chat):
    frame_budget = 10

    def __init__(self) -> None:
        super().__init__()
        self.log: list[object] = []
        self.set_terminator(b"\n")

    def collect_incoming_data(self, data: bytes) -> None:
        self.log.append(data)

    def found_terminator(self) -> None:
        self.log.append("END")
        if len(self.log) == 25:
            self.set_terminator(b"4")  # a switch inside a chunk, in a later round


def test_an_event_style_chat_stops_at_its_budget_inside_a_chunked_read(
    chunk_size: Callable[[int], None],
) -> None:
    chunk_size(CHUNK)
    chat = Lines()
    chat.attach(RecordingTransport())
    data = b"".join(b"%d\n" % i for i in range(40))
    chat.feed(data)
    assert len(chat.log) == 10 and chat.input_backlog  # 10 events: 5 frames
    rounds = 0
    while chat.input_backlog:
        chat.feed(b"")
        rounds += 1
    chunk_size(OFF)
    reference = ChatHarness(Lines())
    reference.feed(data)
    assert chat.log == reference.chat.log  # type: ignore[attr-defined]
    assert rounds == reference.rounds > 3
