"""Unit tests of `sanschat.Channel`: one rule of DESIGN.md per test, fed every which way."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from framing import cut, run, summary

import sanschat
from sanschat import (
    Channel,
    Data,
    EndOfStream,
    FrameTooLarge,
    ProtocolError,
    SanschatError,
    TerminatorFound,
)

EOS_CLEAN = EndOfStream(incomplete=False)
EOS_OPEN = EndOfStream(incomplete=True)

# Each case: terminator, stream, expected summary (frames, then what end of stream gives).
CASES = [
    (b"\r\n", b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", [
        (b"GET / HTTP/1.0", b"\r\n"), (b"Host: x", b"\r\n"), (b"", b"\r\n"), (b"", EOS_CLEAN)]),
    (b"\n", b"a\nbb\n\nccc", [(b"a", b"\n"), (b"bb", b"\n"), (b"", b"\n"), (b"ccc", EOS_OPEN)]),
    (b"aa", b"aaa", [(b"", b"aa"), (b"a", EOS_OPEN)]),
    (b"\r\n\r\n", b"x\r\n\r\n\r\n", [(b"x", b"\r\n\r\n"), (b"\r\n", EOS_OPEN)]),
    (b"ab", b"xaab", [(b"xa", b"ab"), (b"", EOS_CLEAN)]),
    (None, b"everything\nis data", [(b"everything\nis data", EOS_OPEN)]),
    (5, b"12345678", [(b"12345", 5), (b"678", EOS_OPEN)]),
    ((b"\r\n", b"\n", b"\r"), b"a\r\nb\nc\rd\r", [
        (b"a", b"\r\n"), (b"b", b"\n"), (b"c", b"\r"), (b"d", b"\r"), (b"", EOS_CLEAN)]),
    ((b"abcd", b"c"), b"xabcyabcdz", [(b"xab", b"c"), (b"y", b"abcd"), (b"z", EOS_OPEN)]),
]
# Packet sizes 1 to 9 and whole, as h11 and Twisted feed their parsers.
SIZES = [*range(1, 10), 1 << 20]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("terminator", "stream", "expected"), CASES)
def test_frames_are_the_same_however_the_stream_is_cut(
    terminator: object, stream: bytes, expected: list[tuple[bytes, object]], size: int
) -> None:
    events = run(Channel(terminator), cut(stream, size))  # type: ignore[arg-type]
    assert summary(events) == expected


@pytest.mark.parametrize("size", SIZES)
def test_trailing_bytes_after_the_last_frame_stay_buffered_until_eof(size: int) -> None:
    channel = Channel(b"\r\n")
    events = run(channel, cut(b"one\r\ntwo\r\nthr", size), eof=False)
    assert summary(events)[:2] == [(b"one", b"\r\n"), (b"two", b"\r\n")]
    assert list(channel.receive_eof())[-1] == EOS_OPEN


def test_data_events_are_never_empty_and_exclude_the_terminator() -> None:
    events = run(Channel(b"--"), [b"--", b"a-", b"-", b"--b"])
    assert events == [
        TerminatorFound(b"--"), Data(b"a"), TerminatorFound(b"--"), TerminatorFound(b"--"),
        Data(b"b"), EOS_OPEN,
    ]


def test_a_partial_terminator_is_held_back_and_nothing_else() -> None:
    channel = Channel(b"\r\n")
    assert list(channel.receive(b"abc\r")) == [Data(b"abc")]
    assert channel.buffered_input == 1
    assert list(channel.receive(b"x")) == [Data(b"\rx")]


def test_a_held_back_partial_terminator_is_delivered_at_eof_not_lost() -> None:
    channel = Channel(b"\r\n\r\n")
    assert list(channel.receive(b"body\r\n\r")) == [Data(b"body")]
    assert list(channel.receive_eof()) == [Data(b"\r\n\r"), EOS_OPEN]


def test_tuple_terminator_waits_to_see_if_the_longer_alternative_matches() -> None:
    channel = Channel((b"\r", b"\r\n"))
    assert list(channel.receive(b"a\r")) == [Data(b"a")]
    assert list(channel.receive(b"\nb\r")) == [TerminatorFound(b"\r\n"), Data(b"b")]
    assert list(channel.receive(b"c")) == [TerminatorFound(b"\r"), Data(b"c")]


def test_tuple_terminator_shorter_alternative_ends_the_frame_at_eof() -> None:
    channel = Channel((b"\r", b"\r\n"))
    assert list(channel.receive(b"last\r")) == [Data(b"last")]
    assert list(channel.receive_eof()) == [TerminatorFound(b"\r"), EOS_CLEAN]


def test_tuple_terminator_earliest_start_beats_a_longer_later_match() -> None:
    channel = Channel((b"bcd", b"a"))
    assert summary(run(channel, [b"xabcdy"])) == [(b"x", b"a"), (b"", b"bcd"), (b"y", EOS_OPEN)]


def test_tuple_terminator_earlier_undecided_start_holds_a_later_complete_match() -> None:
    channel = Channel((b"abcd", b"c"))
    assert list(channel.receive(b"xabc")) == [Data(b"x")]
    assert list(channel.receive(b"d")) == [TerminatorFound(b"abcd")]


def test_tuple_terminator_drops_duplicate_alternatives() -> None:
    channel = Channel((b"\n", bytearray(b"\n")))
    assert channel.get_terminator() == (b"\n",)


def test_int_terminator_is_one_shot_then_collects_everything() -> None:
    channel = Channel(3)
    events = list(channel.receive(b"abcdef"))
    assert events == [Data(b"abc"), TerminatorFound(3), Data(b"def")]
    assert channel.get_terminator() is None


def test_get_terminator_for_an_int_is_the_bytes_still_wanted() -> None:
    channel = Channel(10)
    list(channel.receive(b"1234"))
    assert channel.get_terminator() == 6
    list(channel.frames(b"56"))
    assert channel.get_terminator() == 6  # frames() keeps the partial frame unread


def test_int_zero_ends_one_empty_frame_at_once() -> None:
    channel = Channel(0)
    assert list(channel.receive(b"")) == [TerminatorFound(0)]
    assert list(channel.receive(b"x")) == [Data(b"x")]


def test_none_terminator_never_ends_a_frame() -> None:
    channel = Channel(None)
    assert list(channel.receive(b"a\r\nb")) == [Data(b"a\r\nb")]
    assert list(channel.receive_eof()) == [EOS_OPEN]


def test_end_of_stream_is_clean_at_a_frame_boundary() -> None:
    assert run(Channel(b"\n"), [b"a\n"])[-1] == EOS_CLEAN


def test_end_of_stream_is_incomplete_when_an_int_terminator_still_wants_bytes() -> None:
    assert run(Channel(4), [])[-1] == EOS_OPEN


def test_end_of_stream_is_yielded_once() -> None:
    channel = Channel(b"\n")
    assert list(channel.receive_eof()) == [EOS_CLEAN]
    assert list(channel.receive_eof()) == []


def test_receive_after_eof_is_a_value_error() -> None:
    channel = Channel(b"\n")
    list(channel.receive_eof())
    with pytest.raises(ValueError, match="after receive_eof"):
        channel.receive(b"x")


@pytest.mark.parametrize("bad", ["text", 3, None, [b"x"]])
def test_receive_rejects_what_is_not_bytes_like(bad: object) -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        Channel().receive(bad)  # type: ignore[arg-type]


def test_receive_accepts_bytearray_and_memoryview() -> None:
    channel = Channel(b"\n")
    assert list(channel.frames(bytearray(b"a\n"))) == [b"a"]
    assert list(channel.frames(memoryview(b"b\n"))) == [b"b"]


# ---------------------------------------------------------------- changing the terminator


def _http(channel: Channel, chunks: list[bytes]) -> list[tuple[str, bytes]]:
    """The HTTP pattern: header lines, a Content-Length body, then None for the rest."""
    out: list[tuple[str, bytes]] = []
    body = bytearray()
    length = 0
    for chunk in chunks:
        for event in channel.receive(chunk):
            if isinstance(event, Data):
                body += event.data
            elif isinstance(event, TerminatorFound):
                if event.terminator == b"\r\n":
                    line = bytes(body)
                    body.clear()
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    if line:
                        out.append(("header", line))
                    else:
                        channel.set_terminator(length)
                else:
                    out.append(("body", bytes(body)))
                    body.clear()
                    channel.set_terminator(None)
    out.append(("extra", bytes(body)))
    return out


REQUEST = b"POST /x HTTP/1.0\r\nContent-Length: 11\r\n\r\nhello\r\nworlEXTRA\r\n"


@pytest.mark.parametrize("size", SIZES)
def test_terminator_changed_inside_the_loop_applies_to_the_next_unread_byte(size: int) -> None:
    assert _http(Channel(b"\r\n"), cut(REQUEST, size)) == [
        ("header", b"POST /x HTTP/1.0"),
        ("header", b"Content-Length: 11"),
        ("body", b"hello\r\nworl"),
        ("extra", b"EXTRA\r\n"),
    ]


def test_terminator_changed_mid_batch_reframes_the_rest() -> None:
    channel = Channel(b"\n")
    frames = []
    for frame in channel.frames(b"a\nb\nc;d;e\nf"):
        frames.append(frame)
        if frame == b"b":
            channel.set_terminator(b";")
    assert frames == [b"a", b"b", b"c", b"d"]
    assert channel.take_unframed() == b"e\nf"


def test_setting_the_same_terminator_every_frame_keeps_the_batch() -> None:
    channel = Channel(b"\n")
    frames = []
    for frame in channel.frames(b"a\nb\nc\n"):
        frames.append(frame)
        channel.set_terminator(b"\n")
    assert frames == [b"a", b"b", b"c"]


def test_terminator_set_between_data_and_its_terminator_found_applies_after_it() -> None:
    channel = Channel(b"\n")
    events = []
    for event in channel.receive(b"ab\ncd\n"):
        events.append(event)
        if event == Data(b"ab"):
            channel.set_terminator(1)
    assert events == [Data(b"ab"), TerminatorFound(b"\n"), Data(b"c"), TerminatorFound(1),
                      Data(b"d\n")]


# ---------------------------------------------------------------- laziness and resumption


def test_an_abandoned_receive_loop_loses_nothing() -> None:
    channel = Channel(b"\n")
    stream = b"a\nbb\nccc\ndd"
    seen = []
    for event in channel.receive(stream):
        seen.append(event)
        if len(seen) == 3:
            break  # between Data(b"bb") and its TerminatorFound
    gc.collect()
    seen.extend(channel.receive(b"\n"))
    assert summary(seen) == [(b"a", b"\n"), (b"bb", b"\n"), (b"ccc", b"\n"), (b"dd", b"\n")]


def test_a_new_call_ends_an_unfinished_iterator_that_is_still_referenced() -> None:
    channel = Channel(b"\n")
    first = channel.receive(b"a\nbb\nccc\n")
    got = [next(first), next(first), next(first)]
    assert got == [Data(b"a"), TerminatorFound(b"\n"), Data(b"bb")]
    assert list(channel.receive(b"")) == [
        TerminatorFound(b"\n"), Data(b"ccc"), TerminatorFound(b"\n")]
    assert list(first) == []


def test_receive_called_inside_a_loop_takes_over_where_that_loop_stopped() -> None:
    channel = Channel(b"\n")
    seen, inner = [], []
    for event in channel.receive(b"a\n"):
        seen.append(event)
        inner.extend(channel.receive(b"b\n"))
    assert seen == [Data(b"a")]
    assert inner == [TerminatorFound(b"\n"), Data(b"b"), TerminatorFound(b"\n")]


def test_an_abandoned_frames_loop_loses_nothing() -> None:
    channel = Channel(b"\n")
    first = channel.frames(b"1\n2\n3\n4\n")
    assert next(first) == b"1"
    del first
    assert list(channel.frames(b"5\n")) == [b"2", b"3", b"4", b"5"]


def test_receive_takes_the_bytes_before_the_iterator_runs() -> None:
    channel = Channel(b"\n")
    channel.receive(b"a\n")
    channel.receive(b"b\n")
    assert list(channel.frames()) == [b"a", b"b"]


def test_frames_and_receive_mixed_lose_and_duplicate_nothing() -> None:
    channel = Channel(b"\n")
    assert list(channel.receive(b"ab")) == [Data(b"ab")]
    assert list(channel.frames(b"c\nd\ne")) == [b"c", b"d"]
    assert list(channel.receive(b"f\n")) == [Data(b"ef"), TerminatorFound(b"\n")]


def test_frames_yields_an_empty_rest_for_a_frame_already_delivered_as_data() -> None:
    channel = Channel(b"\n")
    events = channel.receive(b"ab\ncd\n")
    assert next(events) == Data(b"ab")
    assert list(channel.frames()) == [b"", b"cd"]


# ---------------------------------------------------------------- take_unframed


def test_take_unframed_hands_over_the_bytes_after_starttls() -> None:
    channel = Channel(b"\r\n")
    taken = b""
    frames = []
    for frame in channel.frames(b"EHLO x\r\nSTARTTLS\r\n\x16\x03\x01TLS-HELLO\r\nNOOP\r\n"):
        frames.append(frame)
        if frame == b"STARTTLS":
            taken = channel.take_unframed()
    assert frames == [b"EHLO x", b"STARTTLS"]
    assert taken == b"\x16\x03\x01TLS-HELLO\r\nNOOP\r\n"
    assert channel.buffered_input == 0


# ---------------------------------------------------------------- max_frame_size


@pytest.mark.parametrize("size", SIZES)
def test_frame_too_large_is_raised_before_any_byte_past_the_limit(size: int) -> None:
    channel = Channel(b"\n", max_frame_size=4)
    delivered = bytearray()
    fed = 0
    with pytest.raises(FrameTooLarge) as info:
        for chunk in cut(b"1234\nabcdefgh\n", size):
            fed += len(chunk)
            for event in channel.receive(chunk):
                if isinstance(event, Data):
                    delivered += event.data
    assert info.value.limit == 4
    assert info.value.size > 4
    assert len(delivered) - 4 <= 4  # "1234" plus at most the limit of the next frame
    assert info.value.buffered == channel.buffered_input == fed - len(delivered) - 1


def test_frame_too_large_tolerates_a_half_received_terminator() -> None:
    channel = Channel(b"\r\n", max_frame_size=4)
    assert list(channel.frames(b"1234\r")) == []
    assert list(channel.frames(b"\n")) == [b"1234"]


def test_frames_raise_frame_too_large_at_the_exact_frame_of_a_batch() -> None:
    channel = Channel(b"\n", max_frame_size=3)
    got = []
    with pytest.raises(FrameTooLarge):
        for frame in channel.frames(b"a\nbb\nccc\ndddd\ne\n"):
            got.append(frame)
    assert got == [b"a", b"bb", b"ccc"]
    assert channel.take_unframed() == b"dddd\ne\n"


def test_after_frame_too_large_the_channel_is_unchanged_and_raises_again() -> None:
    channel = Channel(b"\n", max_frame_size=2)
    for _ in range(2):
        with pytest.raises(FrameTooLarge):
            list(channel.frames(b"abc"))
    assert channel.buffered_input == 6


def test_raising_the_limit_after_frame_too_large_resumes_the_frame() -> None:
    channel = Channel(b"\n", max_frame_size=2)
    with pytest.raises(FrameTooLarge):
        list(channel.frames(b"abcd\n"))
    channel.set_terminator(b"\n", max_frame_size=10)
    assert list(channel.frames()) == [b"abcd"]


def test_per_terminator_limit_overrides_the_channel_limit_until_the_next_set() -> None:
    channel = Channel(b"\r\n", max_frame_size=8)
    channel.set_terminator(20, max_frame_size=20)
    assert channel.max_frame_size == 20
    assert list(channel.frames(b"x" * 20)) == [b"x" * 20]
    channel.set_terminator(b"\r\n")
    assert channel.max_frame_size == 8


def test_frame_too_large_with_none_terminator_bounds_the_buffer() -> None:
    channel = Channel(None, max_frame_size=16)
    with pytest.raises(FrameTooLarge):
        for _ in range(100):
            list(channel.frames(b"x" * 5))
    assert channel.buffered_input <= 16 + 5


def test_frame_too_large_counts_data_already_delivered_in_the_frame() -> None:
    channel = Channel(b"\n", max_frame_size=5)
    assert list(channel.receive(b"abc")) == [Data(b"abc")]
    with pytest.raises(FrameTooLarge) as info:
        list(channel.receive(b"def"))
    assert info.value.size == 6


def test_frame_too_large_is_a_protocol_error_and_a_sanschat_error() -> None:
    assert issubclass(FrameTooLarge, ProtocolError)
    assert issubclass(ProtocolError, SanschatError)


# ---------------------------------------------------------------- bad terminators


@pytest.mark.parametrize(
    ("bad", "error", "mentions"),
    [
        ("\r\n", TypeError, "str"),
        (True, TypeError, "bool"),
        (-1, ValueError, "-1"),
        (b"", ValueError, "empty"),
        ((), ValueError, "at least one"),
        ((b"a", b""), ValueError, "empty"),
        ((b"a", "b"), TypeError, "'b'"),
        ([b"\n"], TypeError, "list"),
        (1.5, TypeError, "1.5"),
    ],
)
def test_invalid_terminator_is_refused_naming_the_value(
    bad: object, error: type[Exception], mentions: str
) -> None:
    channel = Channel(b"\n")
    with pytest.raises(error, match=mentions.replace("(", r"\(")):
        channel.set_terminator(bad)  # type: ignore[arg-type]
    assert channel.get_terminator() == b"\n"
    with pytest.raises(error):
        Channel(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("bad", "error"), [(-1, ValueError), (True, TypeError), ("9", TypeError)])
def test_invalid_max_frame_size_is_refused(bad: object, error: type[Exception]) -> None:
    # The compiled build checks the argument's type itself, in mypyc's words.
    words = "max_frame_size|int or None object expected" if sanschat.COMPILED else "max_frame_size"
    with pytest.raises(error, match=words):
        Channel(max_frame_size=bad)  # type: ignore[arg-type]


def test_bytes_like_terminators_are_kept_as_bytes() -> None:
    assert Channel(bytearray(b"\n")).get_terminator() == b"\n"
    assert type(Channel(memoryview(b"ab")).get_terminator()) is bytes


# ---------------------------------------------------------------- send side


class Recorder:
    """A producer that records each call to more()."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.calls = 0

    def more(self) -> bytes:
        self.calls += 1
        return self.chunks.pop(0) if self.chunks else b""


def drain(channel: Channel, max_bytes: int = 65536) -> bytes:
    out = bytearray()
    while chunk := channel.data_to_send(max_bytes):
        out += chunk
    return bytes(out)


def test_small_pushes_are_coalesced_into_one_chunk() -> None:
    channel = Channel()
    for word in (b"a", b"bb", b"ccc"):
        channel.push(word)
    assert channel.data_to_send() == b"abbccc"
    assert channel.data_to_send() == b""


def test_data_to_send_never_returns_more_than_max_bytes() -> None:
    channel = Channel()
    channel.push(b"0123456789")
    channel.push(b"abc")
    assert [bytes(channel.data_to_send(4)) for _ in range(4)] == [b"0123", b"4567", b"89ab", b"c"]


def test_a_large_push_is_sent_as_views_not_copies() -> None:
    big = bytes(range(256)) * 1024
    channel = Channel()
    channel.push(big)
    chunk = channel.data_to_send(1000)
    assert isinstance(chunk, memoryview)
    assert chunk.obj is big
    assert bytes(chunk) + drain(channel, 5000) == big


def test_a_line_pushed_to_many_channels_is_shared_not_copied() -> None:
    """A fan-out: each channel already coalesces a burst; a 600-byte line pushed to 500 of
    them is held by reference (8 bytes each), not copied into each one's tail."""
    import tracemalloc

    channels = [Channel() for _ in range(500)]
    for channel in channels:
        channel.push(b"a")
        channel.push(b"b")  # the tail bytearray exists: a small push would be copied in
    line = bytes(600)
    tracemalloc.start()
    try:
        for channel in channels:
            channel.push(line)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < len(channels) * len(line) // 10
    assert all(drain(channel) == b"ab" + line for channel in channels)


def test_a_shared_item_is_handed_out_as_a_view_of_itself_even_after_a_partial_write() -> None:
    line = bytes(range(256)) * 80  # 20 KiB, pushed to many channels in a fan-out
    channel = Channel()
    channel.push(b"a")
    channel.push(b"b")
    channel.push(line)
    assert channel.data_to_send(1 << 20) == b"ab"  # not joined with the line: that copies it
    chunk = channel.data_to_send(1 << 20)
    assert chunk is line  # whole: the object itself
    channel.unsend(memoryview(chunk)[100:])  # the socket took 100 bytes (as a driver gives back)
    rest = channel.data_to_send(1 << 20)
    assert isinstance(rest, memoryview) and rest.obj is line and bytes(rest) == line[100:]


def test_a_joined_chunk_copies_at_most_16_kib() -> None:
    channel = Channel()
    lines = [bytes([i]) * 600 for i in range(100)]  # held by reference, joined when sent
    for line in lines:
        channel.push(line)
    chunks = []
    while chunk := channel.data_to_send(1 << 20):
        chunks.append(bytes(chunk))
    assert max(len(c) for c in chunks) <= 16 * 1024
    assert b"".join(chunks) == b"".join(lines)


def test_push_copies_mutable_buffers() -> None:
    channel = Channel()
    data = bytearray(b"abc")
    channel.push(data)
    channel.push(memoryview(data))
    data[0] = ord("X")
    assert drain(channel) == b"abcabc"


@pytest.mark.parametrize("bad", ["text", 10, None, [b"x"]])
def test_push_refuses_what_is_not_bytes_like(bad: object) -> None:
    with pytest.raises(TypeError, match="push"):
        Channel().push(bad)  # type: ignore[arg-type]


def test_producers_are_pulled_only_when_their_bytes_are_wanted() -> None:
    channel = Channel()
    first, second = Recorder([b"abc", b"def"]), Recorder([b"xyz"])
    channel.push(b"head")
    channel.push_with_producer(first)
    channel.push_with_producer(second)
    assert channel.data_to_send(4) == b"head"
    assert (first.calls, second.calls) == (0, 0)
    assert channel.data_to_send(2) == b"ab"
    assert (first.calls, second.calls) == (1, 0)
    assert drain(channel) == b"cdefxyz"


def test_push_with_producer_accepts_bytes_lists_and_generators() -> None:
    channel = Channel()
    channel.push_with_producer(b"a")
    channel.push_with_producer([b"b", b"", bytearray(b"c")])
    channel.push_with_producer(bytes([n]) for n in b"de")
    assert drain(channel) == b"abcde"


def test_producer_returning_non_bytes_is_a_type_error_naming_it() -> None:
    class Bad:
        def more(self) -> str:
            return "oops"

        def __repr__(self) -> str:
            return "<Bad producer>"

    channel = Channel()
    channel.push(b"ok")
    channel.push_with_producer(Bad())
    assert channel.data_to_send(2) == b"ok"
    with pytest.raises(TypeError, match=r"<Bad producer>.*str"):
        channel.data_to_send()


def test_iterable_producer_yielding_non_bytes_is_a_type_error() -> None:
    channel = Channel()
    channel.push_with_producer([b"a", 7])
    with pytest.raises(TypeError, match="int"):
        drain(channel)


@pytest.mark.parametrize("bad", ["text", 10, None])
def test_push_with_producer_refuses_non_producers(bad: object) -> None:
    with pytest.raises(TypeError, match="push_with_producer"):
        Channel().push_with_producer(bad)


def test_unsend_puts_the_unwritten_rest_back_in_front() -> None:
    channel = Channel()
    channel.push(b"hello world")
    channel.push(b"!")
    chunk = channel.data_to_send()
    channel.unsend(chunk[5:])
    assert drain(channel) == b" world!"


def test_close_when_done_closes_after_the_last_byte() -> None:
    channel = Channel()
    channel.push(b"bye")
    channel.close_when_done()
    assert channel.wants_write and not channel.wants_close
    assert channel.data_to_send() == b"bye"
    assert not channel.wants_close
    assert channel.data_to_send() == b""
    assert channel.wants_close and not channel.wants_write


def test_push_after_close_when_done_is_refused() -> None:
    channel = Channel()
    channel.close_when_done()
    with pytest.raises(ValueError, match="close_when_done"):
        channel.push(b"late")
    with pytest.raises(ValueError, match="close_when_done"):
        channel.push_with_producer([b"late"])


def test_discard_buffers_drops_both_directions() -> None:
    channel = Channel(b"\n")
    list(channel.frames(b"partial"))
    channel.push(b"queued")
    channel.close_when_done()
    channel.discard_buffers()
    assert channel.buffered_input == channel.buffered_output == 0
    assert channel.data_to_send() == b""
    assert not channel.wants_close


def test_buffered_output_counts_queued_bytes() -> None:
    channel = Channel()
    channel.push(b"12345")
    channel.push_with_producer([b"678"])
    assert channel.buffered_output == 5
    channel.data_to_send(3)
    assert channel.buffered_output == 2


def test_buffered_output_counts_the_small_pushes_joined_at_the_tail() -> None:
    channel = Channel()
    channel.push(b"ab")
    channel.push(b"cd")  # the second small push starts the joined tail
    channel.push(b"")
    channel.push(bytearray(b"ef"))
    assert channel.buffered_output == 6
    channel.push(b"x" * 600)  # too large to join: the tail ends, its bytes stay counted
    channel.push(b"gh")
    assert channel.buffered_output == 608
    chunk = channel.data_to_send(4)
    assert channel.buffered_output == 604
    channel.unsend(chunk[1:])
    assert channel.buffered_output == 607
    channel.push_with_producer([b"ij"])
    channel.close_when_done()
    assert channel.buffered_output == 607
    assert drain(channel) == b"bcdef" + b"x" * 600 + b"ghij"
    assert channel.buffered_output == 0


def test_a_push_after_close_when_done_is_refused_even_onto_a_joined_tail() -> None:
    channel = Channel()
    channel.push(b"a")
    channel.push(b"b")  # a tail that a later small push would join
    channel.close_when_done()
    with pytest.raises(TypeError, match="str"):
        channel.push("late")  # type: ignore[arg-type]
    for late in (b"late", b"", bytearray(b"late")):
        with pytest.raises(ValueError, match="close_when_done"):
            channel.push(late)
    assert drain(channel) == b"ab"


def test_data_to_send_refuses_a_max_below_one() -> None:
    channel = Channel()
    channel.push(b"x")
    with pytest.raises(ValueError, match="max_bytes"):
        channel.data_to_send(0)


def test_a_ten_gigabyte_producer_is_never_read_ahead() -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"x" * 65536

    channel = Channel()
    channel.push_with_producer(endless())
    for _ in range(3):
        assert len(channel.data_to_send(1000)) == 1000
    assert channel.buffered_output < 65536


def test_repr_shows_the_terminator_and_buffers() -> None:
    text = repr(Channel(b"\n", max_frame_size=5))
    assert "b'\\n'" in text and "max_frame_size=5" in text


def test_a_chunk_handed_out_is_never_changed_by_later_pushes() -> None:
    channel = Channel()
    channel.push(b"abc")
    first = channel.data_to_send()
    channel.push(b"later")
    assert bytes(first) == b"abc"
    assert channel.data_to_send() == b"later"


def test_small_pushes_after_a_partial_hand_out_keep_their_order() -> None:
    channel = Channel()
    channel.push(b"a" * 10)
    head = bytes(channel.data_to_send(4))
    channel.push(b"b")
    channel.push_with_producer([b"c"])
    channel.push(b"d")
    assert head + drain(channel) == b"a" * 10 + b"bcd"


def test_discard_buffers_inside_a_loop_drops_the_frames_it_has_not_reached() -> None:
    channel = Channel(b"\n", max_frame_size=10)
    got = []
    for frame in channel.frames(b"a\nb\nc\n123456"):
        got.append(frame)
        channel.discard_buffers()
    assert got == [b"a"]
    assert channel.buffered_input == 0
    assert list(channel.frames(b"abcd\n")) == [b"abcd"]  # the frame count starts afresh


def test_a_failing_producer_loses_none_of_the_bytes_queued_before_it() -> None:
    def failing() -> Iterator[bytes]:
        yield b"from the producer "
        raise RuntimeError("disk gone")

    channel = Channel()
    channel.push(b"hello ")
    channel.push_with_producer(failing())
    with pytest.raises(RuntimeError, match="disk gone"):
        channel.data_to_send()
    assert channel.buffered_output == len(b"hello from the producer ")
    assert bytes(channel.data_to_send(24)) == b"hello from the producer "


def test_closing_says_whether_close_when_done_was_called() -> None:
    channel = Channel()
    assert not channel.closing
    channel.close_when_done()
    assert channel.closing


def test_interrupt_ends_the_loop_and_keeps_the_rest() -> None:
    channel = Channel(b"\n")
    got = []
    for frame in channel.frames(b"a\nb\nc\n"):
        got.append(frame)
        channel.interrupt()
    assert got == [b"a"]
    assert list(channel.frames()) == [b"b", b"c"]


def test_discard_buffers_ends_a_paused_iterator_and_forgets_its_owed_terminator() -> None:
    channel = Channel(b"\n")
    events = channel.receive(b"a\nb\nc\n")
    assert next(events) == Data(b"a")
    channel.discard_buffers()
    assert list(events) == []
    assert list(channel.receive(b"d\n")) == [Data(b"d"), TerminatorFound(b"\n")]


def test_terminator_changed_after_the_only_frame_of_a_chunk_reframes_the_rest() -> None:
    channel = Channel(b"\n")
    frames = []
    for frame in channel.frames(b"HEAD\nbody;more;tail"):
        frames.append(frame)
        if frame == b"HEAD":
            channel.set_terminator(b";")
    assert frames == [b"HEAD", b"body", b"more"]
    assert channel.take_unframed() == b"tail"


def test_limit_changed_after_the_only_frame_of_a_chunk_applies_to_the_rest() -> None:
    channel = Channel(b"\n")
    got = []
    with pytest.raises(FrameTooLarge):
        for frame in channel.frames(b"a\nlonger than four"):
            got.append(frame)
            channel.set_terminator(b"\n", max_frame_size=4)
    assert got == [b"a"]


def test_a_batch_put_back_before_it_is_read_keeps_the_open_frames_size() -> None:
    channel = Channel(b"\n", max_frame_size=5)
    assert list(channel.receive(b"abc")) == [Data(b"abc")]  # 3 bytes of the frame are out
    channel.receive(b"de\nf\n")  # cuts a batch at once; nothing of it is read yet
    channel.set_terminator(b";", max_frame_size=5)  # puts it back: the frame is still open
    with pytest.raises(FrameTooLarge) as info:
        list(channel.receive(b""))
    assert info.value.size == 8  # "abc" delivered + "de\nf\n", all data under ";"


def test_terminator_changed_after_frames_yields_the_rest_of_a_delivered_frame() -> None:
    channel = Channel(b"\n")
    events = channel.receive(b"a\nb\n")
    assert next(events) == Data(b"a")
    frames = channel.frames(b"")
    assert next(frames) == b""  # the rest of frame "a", whose Data is out
    channel.set_terminator(b";")
    assert list(frames) == []
    assert channel.take_unframed() == b"b\n"


def test_nothing_follows_end_of_stream_even_after_a_new_terminator() -> None:
    channel = Channel(None)
    assert list(channel.receive_eof()) == [EOS_CLEAN]
    channel.set_terminator(0)
    assert list(channel.receive_eof()) == []


def test_a_limit_lowered_with_the_same_terminator_object_still_applies() -> None:
    term = b"\n"
    channel = Channel(term)
    events = channel.receive(b"abc")
    assert next(events) == Data(b"abc")
    channel.set_terminator(term, max_frame_size=1)
    with pytest.raises(FrameTooLarge):
        list(events)


def test_discard_buffers_drops_a_close_already_reached() -> None:
    channel = Channel()
    channel.push(b"x")
    channel.close_when_done()
    drain(channel)
    assert channel.wants_close
    channel.discard_buffers()
    channel.push(b"hello")
    assert (channel.closing, channel.wants_close, channel.wants_write) == (False, False, True)
    assert channel.data_to_send() == b"hello"


def test_frames_with_a_tuple_terminator_returns_at_once_when_no_frame_can_end() -> None:
    channel = Channel((b"\r", b"\r\n"))
    frames = channel.frames(b"abc")
    channel.set_terminator(b"b")  # set between the call and its loop: applies from the next call
    assert list(frames) == []
    assert list(channel.frames()) == [b"a"]


@pytest.mark.parametrize("limit", [0, 2, 3, 4, None])
def test_a_read_that_is_one_frame_respects_every_limit_including_zero(limit: int | None) -> None:
    for read in (Channel.frames, Channel.receive):
        channel = Channel(b"\n", max_frame_size=limit)
        if limit is not None and limit < 3:
            with pytest.raises(FrameTooLarge):
                list(read(channel, b"abc\n"))
            assert channel.take_unframed() == b"abc\n"
        else:
            got = list(read(channel, b"abc\n"))
            assert got in ([b"abc"], [Data(b"abc"), TerminatorFound(b"\n")])


def test_a_read_that_ends_an_open_frame_keeps_the_frame_s_earlier_bytes_on_take_back() -> None:
    # The short path of `receive` for a read that ends a frame whose first bytes came in
    # earlier reads: a limit set before its loop counts those bytes too.
    for earlier in ([b"x" * 10], [b"x" * 4, b"y" * 6]):
        channel = Channel(b"\n")
        for read in earlier:
            assert list(channel.receive(read)) == [Data(read)]
        events = channel.receive(b"yy\n")
        channel.set_terminator(b"\n", max_frame_size=11)
        with pytest.raises(FrameTooLarge) as info:
            list(events)
        assert (info.value.limit, info.value.size) == (11, 12)
    channel = Channel(b"\n")
    assert list(channel.receive(b"x" * 10)) == [Data(b"x" * 10)]
    events = channel.receive(b"\n")  # nothing but the end: the same rule
    channel.set_terminator(b"\n", max_frame_size=12)
    assert list(events) == [TerminatorFound(b"\n")]
    assert list(channel.receive(b"abc\n")) == [Data(b"abc"), TerminatorFound(b"\n")]


# ---------------------------------------------------------------------- found by a differential
# run of the rewritten core against the one it replaced (16.6 M random operations)


def test_set_terminator_does_not_raise_while_an_owed_frame_end_is_still_to_come() -> None:
    channel = Channel(b"\n", max_frame_size=5)
    events = channel.receive(b"xy\n")
    assert next(events) == Data(b"xy")  # its TerminatorFound is owed
    frames = channel.frames(b"abc")  # starts with b"": the rest of that frame
    channel.set_terminator(None, max_frame_size=2)  # b"abc" is now too large, but comes later
    assert next(frames) == b""
    assert next(frames, "end") == "end"  # a plain list iterator: the next call raises
    with pytest.raises(FrameTooLarge) as info:
        list(channel.frames())
    assert (info.value.limit, info.value.size) == (2, 3)


def test_a_loop_that_set_terminator_ended_with_an_error_is_not_live_any_more() -> None:
    channel = Channel(b"\n", max_frame_size=5)
    with pytest.raises(FrameTooLarge):
        for _ in channel.frames(b"ab\nabc"):
            channel.set_terminator(b"\n", max_frame_size=2)
    channel.set_terminator(b"\n", max_frame_size=1)  # outside any loop: no error here
    with pytest.raises(FrameTooLarge):
        list(channel.frames(b""))


@pytest.mark.parametrize("read", [Channel.frames, Channel.receive])
def test_an_iterator_that_raised_frame_too_large_yields_nothing_more(read: Any) -> None:
    channel = Channel(b"\n", max_frame_size=3)
    iterator = read(channel, b"abcdef")
    with pytest.raises(FrameTooLarge):
        next(iterator)
    channel.set_terminator(2, max_frame_size=None)
    assert next(iterator, "end") == "end"
    assert list(read(channel, b"")) in (
        [b"ab"],
        [Data(b"ab"), TerminatorFound(2), Data(b"cdef")],
    )


def test_take_unframed_inside_a_loop_lets_the_loop_go_on() -> None:
    channel = Channel(0)
    frames = channel.frames()
    assert channel.take_unframed() == b""
    assert next(frames) == b""  # the empty frame of the int 0, in this loop
    assert channel.get_terminator() is None
    channel = Channel(b"\n")
    channel.receive(b"x")
    events = channel.receive_eof()
    assert channel.take_unframed() == b"x"
    assert list(events) == [EndOfStream(False)]


def test_frames_returns_at_once_while_a_longer_alternative_is_undecided() -> None:
    channel = Channel((b"\r", b"\r\n"))
    frames = channel.frames(b"x\r")  # b"\r" may still become b"\r\n": no frame ends yet
    channel.set_terminator(1)  # set between the call and its loop: applies from the next call
    assert list(frames) == []
    assert list(channel.frames()) == [b"x"]


def test_a_lone_reply_comes_out_as_pushed_and_in_pieces_when_it_does_not_fit() -> None:
    # The one-item paths of push and data_to_send (request/response traffic) keep the rules.
    channel = Channel()
    reply = b"0123456789"
    channel.push(reply)
    assert channel.buffered_output == 10 and channel.wants_write
    assert channel.data_to_send() is reply  # no copy
    assert channel.buffered_output == 0 and not channel.wants_write
    channel.push(reply)
    assert bytes(channel.data_to_send(4)) == b"0123"  # too large for max_bytes: a piece
    assert channel.buffered_output == 6
    assert bytes(channel.data_to_send()) == b"456789"
    buffer = bytearray(b"mutable")
    channel.push(buffer)
    buffer[:] = b"changed"
    assert bytes(channel.data_to_send()) == b"mutable"  # copied at the push
    channel.push(b"last")
    channel.close_when_done()
    assert channel.data_to_send() == b"last"
    assert channel.data_to_send() == b"" and channel.wants_close
    with pytest.raises(ValueError):
        channel.data_to_send(0)


def test_buffered_input_counts_what_an_abandoned_loop_did_not_reach() -> None:
    channel = Channel(b"\n")
    for _frame in channel.frames(b"a\nbb\nccc"):
        break
    assert channel.buffered_input == len(b"bb\nccc")
    assert list(channel.frames()) == [b"bb"]
    assert channel.buffered_input == 3


# Reads fed one per call whose frames come out of the one-frame read's short path in
# `frames` (and out of the general path when a read is not exactly one frame); the compiled
# build cuts such reads natively and leaves to the general path a read whose body holds
# the terminator's first byte, so these cover both of its outcomes in either build.
ONE_FRAME_READS = [
    (b"\n", [b"abc\n", b"\n", b"x\ny\n", b"no end", b"\n", b"z\n"]),
    (b"\r\n", [b"GET /\r\n", b"a\rb\r\n", b"\r\n", b"x\r\n\r\n", b"\r", b"\n", b"q\r\n"]),
    (b"aa", [b"xaa", b"xaaa", b"aa", b"a", b"aaa", b"baa"]),
    (b"\r\n\r\n", [b"h\r\n\r\n", b"h\r\nx\r\n\r\n", b"\r\n\r\n", b"t\r\n\r\n"]),
]


@pytest.mark.parametrize(("terminator", "reads"), ONE_FRAME_READS)
def test_a_read_per_frame_gives_the_frames_of_the_stream(
    terminator: bytes, reads: list[bytes]
) -> None:
    stream = b"".join(reads)
    *expected, rest = stream.split(terminator)
    channel = Channel(terminator)
    got = [frame for read in reads for frame in channel.frames(read)]
    assert got == expected
    assert channel.take_unframed() == rest


def test_a_one_frame_read_past_the_limit_raises_and_one_at_it_does_not() -> None:
    channel = Channel(b"\n", max_frame_size=3)
    assert list(channel.frames(b"abc\n")) == [b"abc"]
    with pytest.raises(FrameTooLarge):
        list(channel.frames(b"abcd\n"))


def test_a_one_frame_read_after_an_unfinished_loop_comes_after_its_frames() -> None:
    channel = Channel(b"\n")
    earlier = channel.frames(b"a\nb\n")
    assert next(earlier) == b"a"
    assert list(channel.frames(b"c\n")) == [b"b", b"c"]  # the earlier loop's rest first
    assert list(earlier) == []  # ended by the new call
    channel = Channel(b"\n")
    events = channel.receive(b"".join(b"%d\n" % i for i in range(40)))  # a large outbox
    assert [next(events), next(events), next(events)] == [
        Data(b"0"), TerminatorFound(b"\n"), Data(b"1")]
    frames = list(channel.frames(b"x\n"))
    assert frames[:3] == [b"", b"2", b"3"]  # frame 1's Data was delivered: only its end is left
    assert frames[-1] == b"x" and len(frames) == 40
    assert list(events) == []


@pytest.mark.parametrize("old", [10, b"\r\n", (b"\r\n", b"\r")])
def test_a_terminator_set_over_held_bytes_finds_them_though_the_read_lacks_it(
    old: int | bytes | tuple[bytes, ...],
) -> None:
    # A read without the terminator's last byte ends no frame only if the bytes held were
    # already searched: under a terminator just set, they were not.
    channel = Channel(old)
    assert list(channel.frames(b"ab\ncd")) == []
    channel.set_terminator(b"\n")
    assert list(channel.frames(b"e")) == [b"ab"]
    assert channel.take_unframed() == b"cde"
    channel = Channel(b"\n")
    assert list(channel.frames(b"0xy1")) == []
    channel.set_terminator(b"xy")
    assert list(channel.frames(b"2")) == [b"0"]  # held bytes hold the whole new terminator
    assert list(channel.frames(b"3x")) == []
    assert list(channel.frames(b"y")) == [b"123"]  # held back: "x" may begin "xy"
