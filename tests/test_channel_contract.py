"""`Channel` held to its own docs: the cases an independent check found to disagree with them.

Each test names one sentence of a docstring (or of the README's tables) and checks it.  The
first part covers the five contradictions that check reported (issue 10); the second, the
points on which the docs were silent or disagreed with each other, now written down.  The
two properties at the end replay random operation sequences twice, once with and once
without the thing under test, and compare everything a user can observe.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanschat import Channel, Data, EndOfStream, FrameTooLarge, TerminatorFound

# ---------------------------------------------------------------------- contradictions


@pytest.mark.parametrize("max_bytes", [0, -1])
@pytest.mark.parametrize("queued", ["nothing", "bytes", "the close point"])
def test_data_to_send_refuses_a_max_below_one_whatever_is_queued(
    max_bytes: int, queued: str
) -> None:
    channel = Channel()
    if queued == "bytes":
        channel.push(b"x")
    elif queued == "the close point":
        channel.close_when_done()
        assert channel.data_to_send() == b""
    with pytest.raises(ValueError, match="max_bytes"):
        channel.data_to_send(max_bytes)
    assert channel.data_to_send() == (b"x" if queued == "bytes" else b"")


REFUSED: list[tuple[str, Callable[[Channel], object], type[Exception]]] = [
    ("receive(str)", lambda c: c.receive("text"), TypeError),  # type: ignore[arg-type]
    ("frames(str)", lambda c: c.frames("text"), TypeError),  # type: ignore[arg-type]
    ("receive(int)", lambda c: c.receive(5), TypeError),  # type: ignore[arg-type]
    ("frames(list)", lambda c: c.frames([1]), TypeError),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("name", "call", "error"), REFUSED, ids=[r[0] for r in REFUSED])
@pytest.mark.parametrize("read", [Channel.receive, Channel.frames])
def test_a_refused_call_leaves_the_live_iterator_running(
    read: Any, name: str, call: Callable[[Channel], object], error: type[Exception]
) -> None:
    channel = Channel(b"\n")
    iterator = read(channel, b"a\nb\nc")
    first = next(iterator)
    with pytest.raises(error):
        call(channel)
    assert [first, *iterator] in (
        [b"a", b"b"],
        [Data(b"a"), TerminatorFound(b"\n"), Data(b"b"), TerminatorFound(b"\n"), Data(b"c")],
    )
    assert channel.buffered_input == (1 if read is Channel.frames else 0)


@pytest.mark.parametrize("read", [Channel.receive, Channel.frames])
@pytest.mark.parametrize("data", [b"more", b""])
def test_a_call_refused_after_eof_leaves_the_last_events_running(read: Any, data: bytes) -> None:
    channel = Channel(b"\r\n")
    list(channel.receive(b"x\r\ny\r"))  # b"\r" is held back
    events = channel.receive_eof()
    assert next(events) == Data(b"\r")
    with pytest.raises(ValueError, match="receive_eof"):
        read(channel, data)
    assert list(events) == [EndOfStream(incomplete=True)]


def test_unsend_after_the_close_point_puts_the_close_point_after_those_bytes() -> None:
    channel = Channel()
    channel.push(b"goodbye")
    channel.close_when_done()
    chunk = channel.data_to_send()
    assert channel.data_to_send() == b"" and channel.wants_close
    channel.unsend(memoryview(chunk)[4:])
    assert (channel.wants_write, channel.wants_close) == (True, False)
    assert channel.data_to_send() == b"bye"
    assert (channel.wants_write, channel.wants_close) == (True, False)
    assert channel.data_to_send() == b""
    assert (channel.wants_write, channel.wants_close) == (False, True)


def test_unsend_of_nothing_after_the_close_point_changes_nothing() -> None:
    channel = Channel()
    channel.close_when_done()
    assert channel.data_to_send() == b""
    channel.unsend(b"")
    assert (channel.wants_write, channel.wants_close) == (False, True)


def test_frames_after_a_loop_left_by_break_returns_at_once_when_no_frame_can_end() -> None:
    channel = Channel(b"\n")
    for _ in channel.frames(b"a\nb"):
        break
    frames = channel.frames(b"")  # b"b" cannot end a frame yet
    channel.set_terminator(1)  # set between the call and its loop: applies from the next call
    assert list(frames) == []
    assert list(channel.frames()) == [b"b"]


def test_frames_after_a_break_mid_batch_returns_at_once_when_no_frame_can_end() -> None:
    channel = Channel((b"\r", b"\r\n"))
    for _ in channel.frames(b"a\rb\rc\r"):
        break
    for _ in channel.frames(b""):  # b"b" then b"c" may still be followed by b"\n"
        break
    frames = channel.frames(b"")
    channel.set_terminator(b"c")
    assert list(frames) == []
    assert list(channel.frames()) == [b""]  # the b"c" frame ends at once: an empty frame
    assert channel.take_unframed() == b"\r"


# ---------------------------------------------------------------------- ambiguities resolved


def test_wants_close_turns_true_on_the_call_that_reaches_the_close_point() -> None:
    channel = Channel()
    channel.push(b"last")
    channel.close_when_done()
    assert channel.data_to_send() == b"last"  # everything is handed out, the point not reached
    assert (channel.wants_write, channel.wants_close) == (True, False)
    assert channel.data_to_send() == b""
    assert (channel.wants_write, channel.wants_close) == (False, True)
    assert channel.data_to_send() == b""  # and it stays there
    assert (channel.wants_write, channel.wants_close) == (False, True)


def test_wants_close_waits_for_a_producer_queued_before_the_close_point() -> None:
    channel = Channel()
    channel.push_with_producer(iter([b"a", b"b"]))
    channel.close_when_done()
    assert channel.data_to_send(1) == b"a"
    assert not channel.wants_close
    assert channel.data_to_send() == b"b"
    assert not channel.wants_close  # the producer is not known to be exhausted yet
    assert channel.data_to_send() == b""
    assert channel.wants_close


def test_setting_the_same_int_terminator_again_starts_a_new_count() -> None:
    channel = Channel(5)
    assert list(channel.receive(b"ab")) == [Data(b"ab")]
    assert channel.get_terminator() == 3
    channel.set_terminator(5)
    assert channel.get_terminator() == 5
    assert list(channel.receive(b"cdefgh")) == [Data(b"cdefg"), TerminatorFound(5), Data(b"h")]


def test_a_restarted_count_still_counts_the_open_frame_against_the_limit() -> None:
    channel = Channel(5, max_frame_size=6)
    assert list(channel.receive(b"ab")) == [Data(b"ab")]
    channel.set_terminator(5)  # 2 delivered + 5 more > 6
    with pytest.raises(FrameTooLarge) as info:
        list(channel.receive(b"cdefg"))
    assert (info.value.limit, info.value.size) == (6, 7)


def test_setting_the_same_bytes_terminator_again_changes_nothing() -> None:
    channel = Channel(b"ab", max_frame_size=10)
    assert list(channel.receive(b"xya")) == [Data(b"xy")]  # b"a" is held back
    channel.set_terminator(b"ab")
    assert channel.buffered_input == 1
    assert list(channel.receive(b"b")) == [TerminatorFound(b"ab")]


def test_discard_buffers_keeps_an_int_count_and_restarts_the_frame_size() -> None:
    channel = Channel(5, max_frame_size=4)
    assert list(channel.receive(b"ab")) == [Data(b"ab")]
    channel.discard_buffers()
    assert channel.get_terminator() == 3  # the bytes it still wanted
    # 3 more bytes end the count; the frame's size starts again at 0, so 3 <= 4 is allowed
    assert list(channel.receive(b"cdefg")) == [Data(b"cde"), TerminatorFound(5), Data(b"fg")]


def test_discard_buffers_after_the_data_that_completed_a_count_leaves_none() -> None:
    channel = Channel(3)
    events = channel.receive(b"abcdef")
    assert next(events) == Data(b"abc")  # the count is complete; TerminatorFound(3) is owed
    channel.discard_buffers()
    assert channel.get_terminator() is None
    assert list(events) == []  # the loop ended, and the owed frame end went with it
    assert list(channel.receive(b"xyz")) == [Data(b"xyz")]


def test_discard_buffers_mid_count_leaves_the_stream_incomplete_at_eof() -> None:
    channel = Channel(5)
    list(channel.receive(b"ab"))
    channel.discard_buffers()
    assert list(channel.receive_eof()) == [EndOfStream(incomplete=True)]


def test_discard_buffers_forgets_the_open_frame_of_a_bytes_terminator() -> None:
    channel = Channel(b"\r\n", max_frame_size=4)
    assert list(channel.receive(b"abc\r")) == [Data(b"abc")]  # b"\r" held back
    channel.discard_buffers()
    assert channel.buffered_input == 0
    assert list(channel.receive(b"wxyz\r\n")) == [Data(b"wxyz"), TerminatorFound(b"\r\n")]
    channel.discard_buffers()
    assert list(channel.receive_eof()) == [EndOfStream(incomplete=False)]


def test_a_per_terminator_limit_covers_the_open_frame() -> None:
    channel = Channel(b"\n")
    assert list(channel.receive(b"ab")) == [Data(b"ab")]
    channel.set_terminator(b"\r", max_frame_size=3)
    with pytest.raises(FrameTooLarge) as info:
        list(channel.receive(b"cd\r"))
    assert (info.value.limit, info.value.size) == (3, 4)


def test_a_per_terminator_limit_of_an_int_stays_for_the_none_that_follows() -> None:
    channel = Channel(b"\n", max_frame_size=100)
    channel.set_terminator(2, max_frame_size=5)
    assert list(channel.frames(b"ab1234")) == [b"ab"]
    assert (channel.get_terminator(), channel.max_frame_size) == (None, 5)
    with pytest.raises(FrameTooLarge) as info:
        list(channel.frames(b"56"))
    assert (info.value.limit, info.value.size) == (5, 6)


def test_the_next_set_terminator_without_a_limit_brings_back_the_channels() -> None:
    channel = Channel(b"\n", max_frame_size=100)
    channel.set_terminator(b"\r", max_frame_size=2)
    assert channel.max_frame_size == 2
    channel.set_terminator(b"\n")
    assert channel.max_frame_size == 100
    assert list(channel.frames(b"abcdef\n")) == [b"abcdef"]


def test_a_per_terminator_limit_does_not_reach_back_to_a_frame_already_ended() -> None:
    channel = Channel(b"\n")
    events = channel.receive(b"abcdef\nxy")
    assert next(events) == Data(b"abcdef")  # its TerminatorFound is owed: that frame ended
    channel.set_terminator(b"\n", max_frame_size=2)
    assert list(events) == [TerminatorFound(b"\n"), Data(b"xy")]


def test_push_of_nothing_is_ignored_before_close_when_done_and_refused_after() -> None:
    channel = Channel()
    channel.push(b"")
    channel.push(bytearray())
    assert (channel.wants_write, channel.buffered_output) == (False, 0)
    channel.close_when_done()
    with pytest.raises(ValueError, match="close_when_done"):
        channel.push(b"")
    with pytest.raises(ValueError, match="close_when_done"):
        channel.push_with_producer(b"")
    with pytest.raises(TypeError):  # the type is checked first
        channel.push("")  # type: ignore[arg-type]
    assert channel.data_to_send() == b"" and channel.wants_close


class _ReusingProducer:
    """Returns the same mutable buffer from every ``more()``, refilled each time."""

    def __init__(self, chunks: list[bytes], kind: Callable[[bytearray], Any]) -> None:
        self.chunks = chunks
        self.buffer = bytearray()
        self.kind = kind

    def more(self) -> Any:
        self.buffer[:] = self.chunks.pop(0) if self.chunks else b""
        return self.kind(self.buffer)


@pytest.mark.parametrize("kind", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_more_may_return_a_mutable_buffer_and_reuse_it(kind: Callable[[bytearray], Any]) -> None:
    channel = Channel()
    channel.push_with_producer(_ReusingProducer([b"one", b"two", b"three"], lambda b: b))
    if kind is memoryview:
        channel.push_with_producer(_ReusingProducer([b"four"], memoryview))
    channel.push(b"!")
    sent = []
    while chunk := channel.data_to_send(2):
        sent.append(bytes(chunk))
    expected = b"onetwothree" + (b"four" if kind is memoryview else b"") + b"!"
    assert b"".join(sent) == expected


def test_more_may_return_a_read_only_memoryview_and_it_is_not_copied() -> None:
    payload = b"x" * 100_000
    channel = Channel()
    channel.push_with_producer(_OneShot(memoryview(payload)))
    chunk = channel.data_to_send(10)
    assert isinstance(chunk, memoryview) and chunk.obj is payload


class _OneShot:
    def __init__(self, value: object) -> None:
        self.value: object = value

    def more(self) -> Any:
        value, self.value = self.value, b""
        return value


@pytest.mark.parametrize("empty", [bytearray(), memoryview(b""), b""])
def test_an_empty_buffer_from_more_means_exhausted(empty: object) -> None:
    channel = Channel()
    channel.push_with_producer(_OneShot(empty))
    channel.push(b"after")
    assert channel.data_to_send() == b"after"


@pytest.mark.parametrize("bad", ["text", 7, None, [b"x"]])
def test_more_returning_what_is_not_bytes_like_is_a_type_error_naming_it(bad: object) -> None:
    channel = Channel()
    producer = _OneShot(bad)
    channel.push_with_producer(producer)
    with pytest.raises(TypeError, match="_OneShot"):
        channel.data_to_send()


# ---------------------------------------------------------------------- properties

TERMINATORS: list[Any] = [b"\n", b"ab", (b"\r", b"\r\n"), (b"ab", b"abcd"), 0, 1, 3, None]
_data = st.lists(st.sampled_from([b"a", b"b", b"\r", b"\n", b"x", b"cd"]), max_size=5).map(b"".join)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("term"), st.sampled_from(TERMINATORS), st.sampled_from([None, 3])),
        st.tuples(st.sampled_from(["receive", "frames"]), _data, st.integers(0, 3)),
        st.tuples(st.just("next"), st.just(b""), st.integers(0, 3)),
        st.tuples(st.just("eof"), st.just(b""), st.integers(0, 3)),
    ),
    max_size=7,
)


def _replay(initial: Any, ops: list[Any], hook: Callable[[Channel, int, bool], None]) -> list[Any]:
    """Run *ops* on a new channel, calling ``hook(channel, i, ended)`` before op *i*
    (*ended*: `receive_eof` was called); return what a user would have seen, step by step."""
    channel = Channel(initial, max_frame_size=4)
    seen: list[Any] = []
    iterator: Iterator[Any] = iter(())
    ended = False

    def take(count: int | None) -> None:
        nonlocal iterator
        try:
            seen.append(list(itertools.islice(iterator, count)))
        except FrameTooLarge as error:
            seen.append(("too large", error.limit, error.size, error.buffered))
            iterator = iter(())

    for i, (kind, arg, count) in enumerate(ops):
        hook(channel, i, ended)
        try:
            if kind == "term":
                channel.set_terminator(arg, max_frame_size=count)
            elif kind == "eof":
                iterator = channel.receive_eof()
                ended = True
            elif kind in ("receive", "frames"):
                if channel.buffered_input > 64:
                    continue
                iterator = getattr(channel, kind)(arg)
            take(count)
        except FrameTooLarge as error:
            seen.append(("too large at the call", error.limit, error.size))
        except ValueError:
            seen.append("after eof")
    take(None)
    seen.append((channel.get_terminator(), channel.max_frame_size, channel.buffered_input))
    return seen


_refusals: st.SearchStrategy[Callable[[Channel, bool], object]] = st.sampled_from(
    [
        lambda c, ended: c.receive("text"),  # type: ignore[arg-type]
        lambda c, ended: c.frames("text"),  # type: ignore[arg-type]
        lambda c, ended: c.receive(None),  # type: ignore[arg-type]
        lambda c, ended: c.receive(b"x") if ended else c.frames(3),  # type: ignore[arg-type]
        lambda c, ended: c.frames(b"") if ended else c.receive([b"x"]),  # type: ignore[arg-type]
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TERMINATORS), _ops, st.integers(0, 7), _refusals)
def test_a_refused_call_anywhere_changes_nothing_a_user_can_see(
    initial: Any, ops: list[Any], at: int, refusal: Callable[[Channel, bool], object]
) -> None:
    def hook(channel: Channel, i: int, ended: bool) -> None:
        if i == at:
            with pytest.raises((TypeError, ValueError)):
                refusal(channel, ended)

    assert _replay(initial, ops, hook) == _replay(initial, ops, lambda c, i, ended: None)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TERMINATORS), _ops, _data, st.sampled_from(TERMINATORS))
def test_frames_that_can_end_no_frame_ignore_a_terminator_set_before_the_loop(
    initial: Any, ops: list[Any], data: bytes, later: Any
) -> None:
    def run(between: bool) -> tuple[list[Any], list[Any]] | None:
        channel = Channel(initial, max_frame_size=4)
        try:
            for kind, arg, count in ops:
                if kind == "eof":
                    return None  # frames() would be refused
                if kind == "term":
                    channel.set_terminator(arg, max_frame_size=count)
                elif kind != "next":
                    for _ in itertools.islice(getattr(channel, kind)(arg), count):
                        pass
            frames = channel.frames(data)
            if between:
                channel.set_terminator(later)
            first = list(frames)
            if not between:
                channel.set_terminator(later)
            return first, list(channel.frames())
        except FrameTooLarge:
            return None

    alone = run(between=False)
    if alone is None or alone[0]:
        return  # the call had a frame to hand out: its loop is live, by design
    assert run(between=True) == alone
