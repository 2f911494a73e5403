"""async_chat without sockets: callbacks, terminators and the output queue, stdlib vs compat.

A scripted chat (``compat_util.scripted_class``) reads chunks from a list instead of a
socket, so the exact sequence of callbacks can be compared: hypothesis cuts streams every
way and switches terminators from the callbacks, and the stdlib's ``async_chat`` and
sanschat's must make the same calls with the same bytes and show the same ``terminator``
and ``ac_in_buffer`` after every chunk.  The unit tests below run against both module
pairs (the ``mods`` fixture); deliberate differences are asserted per side.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from typing import Any

import pytest
from compat_util import Mods, sanschat_mods, scripted_class, stdlib_mods
from hypothesis import given, settings
from hypothesis import strategies as st

STDLIB = stdlib_mods()
COMPAT = sanschat_mods()
needs_stdlib = pytest.mark.skipif(STDLIB is None, reason="no stdlib asynchat in this Python")

# ---------------------------------------------------------------- differential framing

ALPHABET = [b"a", b"b", b"x", b"\r", b"\n", b"\r\n", b";"]
byte_terms = st.sampled_from([b"\n", b"\r\n", b"\r\n\r\n", b"aa", b"aba", b";", b"\r\n."])
terms = st.one_of(byte_terms, st.integers(0, 9), st.sampled_from([None, b""]))
KEEP = "keep"
ASSIGN = "assign"  # set self.terminator directly instead of calling set_terminator
DISCARD = "discard"  # call discard_buffers()
PEEK = "peek"  # record ac_in_buffer (what follows the frame)
DROP = "drop"  # assign b"" to ac_in_buffer: the rest of the read is dropped


@st.composite
def scripts(draw: st.DrawFn) -> tuple[list[bytes], Any, list[tuple[str, Any]], int]:
    initial = draw(terms)
    changes = draw(
        st.lists(
            st.tuples(st.sampled_from(["set", ASSIGN, KEEP, DISCARD, PEEK, DROP]), terms),
            max_size=8,
        )
    )
    pieces = set(ALPHABET)
    for term in [initial, *(t for _, t in changes)]:
        if isinstance(term, bytes):
            pieces.update(term[:n] for n in range(1, len(term) + 1))
    stream = b"".join(draw(st.lists(st.sampled_from(sorted(pieces)), max_size=30)))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=12))))
    bounds = [0, *(c for c in cuts if c < len(stream)), len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    flags = draw(st.integers(0, 3))  # bit 0: read ac_in_buffer after each chunk; bit 1:
    return chunks, initial, changes, flags  # discard_buffers() when data holds b"x"


def _run(
    mods: Mods,
    chunks: Sequence[bytes],
    initial: Any,
    changes: list[tuple[str, Any]],
    flags: int,
    *,
    log_gets: bool = False,
) -> list[Any]:
    todo = iter(changes)

    def on_frame(chat: Any, frame: bytes) -> None:
        how, term = next(todo, (KEEP, None))
        if how == "set":
            chat.set_terminator(term)
        elif how == ASSIGN:
            chat.terminator = term
        elif how == DISCARD:
            chat.discard_buffers()
        elif how == PEEK:
            chat.events.append(("peek", bytes(chat.ac_in_buffer)))
        elif how == DROP:
            chat.ac_in_buffer = b""

    def on_data(chat: Any, data: bytes) -> None:
        if b"x" in data:
            chat.discard_buffers()

    base = scripted_class(mods)

    class Chat(base):  # type: ignore[misc, valid-type]
        def get_terminator(self) -> Any:
            if log_gets:
                self.events.append("get_terminator")
            return super().get_terminator()

    chat = Chat(on_frame=on_frame, on_data=on_data if flags & 2 else None)
    chat.set_terminator(initial)
    trace: list[Any] = []
    for chunk in chunks:
        chat.feed(chunk)
        trace.append(("after chunk", chat.get_terminator()))
        if flags & 1:
            trace.append(("held", bytes(chat.ac_in_buffer)))
    return [*chat.events, *trace]


@needs_stdlib
@settings(max_examples=300, deadline=None)
@given(scripts())
def test_callbacks_terminators_and_held_bytes_equal_the_stdlib(
    script: tuple[list[bytes], Any, list[tuple[str, Any]], int],
) -> None:
    assert STDLIB is not None
    chunks, initial, changes, flags = script
    assert _run(COMPAT, chunks, initial, changes, flags) == _run(
        STDLIB, chunks, initial, changes, flags
    )


@needs_stdlib
@settings(max_examples=300, deadline=None)
@given(scripts())
def test_get_terminator_is_called_exactly_where_the_stdlib_calls_it(
    script: tuple[list[bytes], Any, list[tuple[str, Any]], int],
) -> None:
    # A handler's get_terminator may read state it tears down after its last frame.
    assert STDLIB is not None
    chunks, initial, changes, flags = script
    assert _run(COMPAT, chunks, initial, changes, flags, log_gets=True) == _run(
        STDLIB, chunks, initial, changes, flags, log_gets=True
    )


def test_get_terminator_is_not_asked_again_once_the_input_is_used_up(mods: Mods) -> None:
    class Session(scripted_class(mods)):  # type: ignore[misc]
        """Its terminator lives in a parser object it drops after the last command."""

        def __init__(self) -> None:
            super().__init__()
            self.parser: Any = {"terminator": b"\r\n", "commands": 2}

        def get_terminator(self) -> Any:
            return self.parser["terminator"]

        def found_terminator(self) -> None:
            super().found_terminator()
            self.parser["commands"] -= 1
            if not self.parser["commands"]:
                self.parser = None  # done: a get_terminator now would raise TypeError

    chat = Session()
    chat.feed(b"one\r\ntwo\r\n")  # raised TypeError after the last frame
    assert chat.events == [("data", b"one"), ("end", b"\r\n"), ("data", b"two"), ("end", b"\r\n")]
    assert chat.parser is None


# ---------------------------------------------------------------- terminators


def test_set_terminator_rejects_a_negative_int(mods: Mods) -> None:
    chat = mods.asynchat.async_chat(map={})
    with pytest.raises(ValueError):
        chat.set_terminator(-1)


def test_get_terminator_returns_what_was_set(mods: Mods) -> None:
    chat = mods.asynchat.async_chat(map={})
    for term in (b"\r\n", 7, None, 0, b""):
        chat.set_terminator(term)
        assert chat.get_terminator() == term
        assert chat.terminator == term


def test_int_terminator_is_zero_after_its_frame(mods: Mods) -> None:
    chat = scripted_class(mods)(4)
    chat.feed(b"abcdef")
    assert chat.events == [("data", b"abcd"), ("end", 0), ("data", b"ef")]
    assert chat.get_terminator() == 0


def test_no_terminator_ever_set_is_an_attribute_error_in_handle_read(mods: Mods) -> None:
    chat = scripted_class(mods)()
    with pytest.raises(AttributeError):
        chat.feed(b"data")


def test_default_callbacks_raise_not_implemented(mods: Mods) -> None:
    chat = mods.asynchat.async_chat(map={})
    with pytest.raises(NotImplementedError):
        chat.collect_incoming_data(b"x")
    with pytest.raises(NotImplementedError):
        chat.found_terminator()


def test_collect_and_get_data_helpers(mods: Mods) -> None:
    chat = mods.asynchat.async_chat(map={})
    chat._collect_incoming_data(b"ab")
    chat._collect_incoming_data(b"cd")
    assert chat.incoming == [b"ab", b"cd"]
    assert chat._get_data() == b"abcd"
    assert chat.incoming == []


def test_str_terminator_without_use_encoding_differs_raises_at_once(mods: Mods) -> None:
    chat = scripted_class(mods)()
    if mods.is_stdlib:
        chat.set_terminator("\n")  # accepted, and fails at the first read instead
        with pytest.raises(TypeError):
            chat.feed(b"line\n")
    else:
        with pytest.raises(TypeError, match="use_encoding"):
            chat.set_terminator("\n")


def test_changing_the_terminator_mid_chunk_applies_to_the_next_byte(mods: Mods) -> None:
    def on_frame(chat: Any, frame: bytes) -> None:
        chat.set_terminator({b"HEAD": 3, b"xyz": b"\n"}.get(frame))

    chat = scripted_class(mods)(b";", on_frame=on_frame)
    chat.feed(b"HEAD;xyzline\nrest;")
    assert chat.events == [
        ("data", b"HEAD"),
        ("end", b";"),
        ("data", b"xyz"),
        ("end", 0),
        ("data", b"line"),
        ("end", b"\n"),
        ("data", b"rest;"),
    ]


def test_close_inside_found_terminator_does_not_stop_the_framing_of_the_chunk(
    mods: Mods,
) -> None:
    chat = scripted_class(mods)(b"\n", on_frame=lambda chat, frame: chat.close())
    chat.feed(b"a\nb\nc")
    assert chat.events == [
        ("data", b"a"),
        ("end", b"\n"),
        ("data", b"b"),
        ("end", b"\n"),
        ("data", b"c"),
    ]


@pytest.mark.parametrize("where", ["found_terminator", "collect_incoming_data"])
def test_discard_buffers_from_a_callback_drops_the_rest_of_the_chunk(
    mods: Mods, where: str
) -> None:
    def discard(chat: Any, data: bytes) -> None:
        if data == b"reset":
            chat.discard_buffers()

    hooks: dict[str, Any] = {"on_frame" if where == "found_terminator" else "on_data": discard}
    chat = scripted_class(mods)(b"\n", **hooks)
    chat.feed(b"one\nreset\ntwo\nthree\nfour")
    # the end of the frame being delivered was matched already: it is still reported
    expected = [("data", b"one"), ("end", b"\n"), ("data", b"reset"), ("end", b"\n")]
    assert chat.events == expected
    chat.feed(b"five\n")
    assert chat.events[len(expected) :] == [("data", b"five"), ("end", b"\n")]


def test_ac_in_buffer_inside_found_terminator_is_what_follows_the_frame(mods: Mods) -> None:
    seen: list[bytes] = []

    def on_frame(chat: Any, frame: bytes) -> None:
        if frame == b"STARTTLS":
            seen.append(bytes(chat.ac_in_buffer))
            chat.ac_in_buffer = b""  # hand the rest to another layer

    chat = scripted_class(mods)(b"\r\n", on_frame=on_frame)
    chat.feed(b"STARTTLS\r\n\x16\x03\x01tls bytes\r\nmore")
    assert seen == [b"\x16\x03\x01tls bytes\r\nmore"]
    assert chat.events == [("data", b"STARTTLS"), ("end", b"\r\n")]
    chat.feed(b"next\r\n")
    assert chat.events[2:] == [("data", b"next"), ("end", b"\r\n")]


def test_ac_in_buffer_holds_a_partial_terminator_between_reads(mods: Mods) -> None:
    chat = scripted_class(mods)(b"\r\n")
    chat.feed(b"abc\r")
    assert chat.ac_in_buffer == b"\r"
    chat.feed(b"\ndef")
    assert chat.events == [("data", b"abc"), ("end", b"\r\n"), ("data", b"def")]
    assert chat.ac_in_buffer == b""


def test_str_from_recv_with_use_encoding(mods: Mods) -> None:
    chat = scripted_class(mods)(b"\n")
    chat.use_encoding = 1
    chat.chunk = "caf\xe9\n"
    if mods.is_stdlib:
        with pytest.raises(TypeError):  # asynchat 3.11 calls bytes(str, ...) by mistake
            chat.handle_read()
    else:
        chat.handle_read()
        assert chat.events == [("data", "caf\xe9".encode("latin-1")), ("end", b"\n")]


# ---------------------------------------------------------------- output queue


def test_push_rejects_int_and_str(mods: Mods) -> None:
    chat = mods.asynchat.async_chat(map={})
    for bad in (42, "text"):
        with pytest.raises(TypeError):
            chat.push(bad)
    chat.use_encoding = 1
    with pytest.raises(TypeError):
        chat.push("text")  # push never encodes, even with use_encoding (as in 3.11)


def test_push_error_for_str_says_to_encode() -> None:
    chat = COMPAT.asynchat.async_chat(map={})
    with pytest.raises(TypeError, match=r"not str: 'text' \(encode it first"):
        chat.push("text")


def test_push_works_on_a_chat_whose_init_ran_no_base_init(mods: Mods) -> None:
    class Bare(mods.asynchat.async_chat):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:  # as some unit tests build one: no socket, no map
            self.producer_fifo = deque()

    chat = Bare()
    chat.push(b"queued")
    chat.push_with_producer(b"too")
    chat.close_when_done()
    assert list(chat.producer_fifo) == [b"queued", b"too", None]  # not connected: kept


def test_push_splits_large_data_into_out_buffer_sized_chunks(mods: Mods) -> None:
    chat = mods.asynchat.async_chat(map={})  # not connected: nothing is sent
    chat.ac_out_buffer_size = 4
    chat.push(b"0123456789")
    assert list(chat.producer_fifo) == [b"0123", b"4567", b"89"]
    assert isinstance(chat.producer_fifo, deque)


def test_readable_and_writable(mods: Mods) -> None:
    chat = mods.asynchat.async_chat(map={})
    assert chat.readable()
    assert chat.writable()  # not connected yet: writable, to see the connect
    chat.connected = True
    assert not chat.writable()
    chat.producer_fifo.append(b"x")
    assert chat.writable()


def test_initiate_send_sends_one_chunk_per_call(mods: Mods) -> None:
    chat = scripted_class(mods)()
    chat.send_limit = 3
    chat.producer_fifo.extend([b"abcdefgh", b"ij"])
    chat.initiate_send()
    assert chat.sent == b"abc"
    assert list(chat.producer_fifo) == [b"defgh", b"ij"]
    for _ in range(4):
        chat.initiate_send()
    assert chat.sent == b"abcdefghij"
    assert not chat.producer_fifo


def test_producers_are_pulled_lazily_and_none_closes(mods: Mods) -> None:
    class Counting:
        def __init__(self) -> None:
            self.calls = 0

        def more(self) -> bytes:
            self.calls += 1
            return b"p%d" % self.calls if self.calls <= 2 else b""

    chat = scripted_class(mods)()
    closed: list[bool] = []

    def handle_close() -> None:
        closed.append(True)
        chat.close()

    chat.handle_close = handle_close
    producer = Counting()
    chat.producer_fifo.extend([b"head", producer, None, b"never"])
    chat.initiate_send()
    assert (chat.sent, producer.calls) == (b"head", 0)
    chat.initiate_send()
    assert (chat.sent, producer.calls) == (b"headp1", 1)
    for _ in range(3):
        chat.initiate_send()
    assert chat.sent == b"headp1p2"
    assert closed == [True]
    assert list(chat.producer_fifo) == [b"never"]


def test_simple_producer_hands_out_the_same_pieces_as_the_stdlib(mods: Mods) -> None:
    producer = mods.asynchat.simple_producer(b"0123456789", buffer_size=4)
    pieces = [producer.more() for _ in range(5)]
    assert pieces == [b"0123", b"4567", b"89", b"", b""]
    assert mods.asynchat.simple_producer(b"x" * 600).more() == b"x" * 512


@needs_stdlib
@given(st.binary(max_size=40), st.integers(1, 12))
def test_simple_producer_equals_the_stdlib(data: bytes, size: int) -> None:
    assert STDLIB is not None
    ours = COMPAT.asynchat.simple_producer(data, size)
    theirs = STDLIB.asynchat.simple_producer(data, size)
    for _ in range(len(data) // size + 3):
        assert ours.data == theirs.data
        assert ours.more() == theirs.more()


def test_push_with_producer_str_differs_raises_at_once(mods: Mods) -> None:
    chat = mods.asynchat.async_chat(map={})
    if mods.is_stdlib:
        chat.push_with_producer("text")  # queued; fails in send() later
        assert list(chat.producer_fifo) == ["text"]
    else:
        with pytest.raises(TypeError, match="not str"):
            chat.push_with_producer("text")


def test_a_producer_returning_str_is_a_type_error_naming_it(mods: Mods) -> None:
    class Wrong:
        def more(self) -> str:
            return "text"

        def __repr__(self) -> str:
            return "<Wrong producer>"

    chat = scripted_class(mods)()
    if mods.is_stdlib:
        chat.send = lambda data: chat.socket.send(data)  # the real failure: socket.send(str)
        chat.socket = __import__("socket").socket()
        try:
            with pytest.raises((TypeError, OSError)):
                chat.push_with_producer(Wrong())
        finally:
            chat.socket.close()
    else:
        with pytest.raises(TypeError, match=r"<Wrong producer> returned str: 'text'"):
            chat.push_with_producer(Wrong())


def test_mutable_buffers_are_copied_on_push_differs() -> None:
    data = bytearray(b"original")
    chat = COMPAT.asynchat.async_chat(map={})
    chat.push(data)
    data[:] = b"changed!"
    assert bytes(chat.producer_fifo[0]) == b"original"


def test_discard_buffers_empties_everything(mods: Mods) -> None:
    chat = scripted_class(mods)(b"\r\n")
    chat.feed(b"abc\r")
    chat.producer_fifo.append(b"queued")
    chat.incoming.append(b"in")
    chat.discard_buffers()
    assert (list(chat.producer_fifo), chat.incoming, chat.ac_in_buffer) == ([], [], b"")


# ---------------------------------------------------------------- find_prefix_at_end


@pytest.mark.parametrize(
    ("haystack", "needle", "expected"),
    [
        (b"qwerty\r", b"\r\n", 1),
        (b"qwertydkjf", b"\r\n", 0),
        (b"abc\r\n.", b"\r\n.\r\n", 3),
        (b"", b"\r\n", 0),
        (b"x", b"x", 0),
        (b"abc", b"", -1),
    ],
)
def test_find_prefix_at_end(mods: Mods, haystack: bytes, needle: bytes, expected: int) -> None:
    assert mods.asynchat.find_prefix_at_end(haystack, needle) == expected


@needs_stdlib
@given(st.binary(max_size=12), st.binary(max_size=6))
def test_find_prefix_at_end_equals_the_stdlib(haystack: bytes, needle: bytes) -> None:
    assert STDLIB is not None
    assert COMPAT.asynchat.find_prefix_at_end(
        haystack, needle
    ) == STDLIB.asynchat.find_prefix_at_end(haystack, needle)


# ---------------------------------------------------------------- sanschat only


def test_the_unsent_rest_of_a_large_chunk_is_a_view_not_a_copy() -> None:
    chat = scripted_class(COMPAT)()
    chat.ac_out_buffer_size = 4
    chat.send_limit = 3
    big = b"0123456789"
    chat.push_with_producer(big)  # queued whole, unlike push()
    assert chat.sent == b"012"
    rest = chat.producer_fifo[0]
    assert isinstance(rest, memoryview) and rest.obj is big
    while chat.producer_fifo:
        chat.initiate_send()
    assert chat.sent == big


def test_use_encoding_encodes_a_producer_str_whole_for_multibyte_codecs() -> None:
    chat = scripted_class(COMPAT)()
    chat.use_encoding = 1
    chat.encoding = "utf-8"
    chat.send_limit = 3
    text = "\u00e9t\u00e9 \u2192 \u00fcber"
    chat.push_with_producer(text)
    while chat.producer_fifo:
        chat.initiate_send()
    assert bytes(chat.sent).decode("utf-8") == text


def test_a_tuple_terminator_ends_a_frame_at_the_earliest_alternative() -> None:
    chat = scripted_class(COMPAT)((b"\r\n", b"\n"))
    chat.feed(b"unix\nwindows\r")
    chat.feed(b"\nmac")
    assert chat.events == [
        ("data", b"unix"),
        ("end", (b"\r\n", b"\n")),
        ("data", b"windows"),
        ("end", (b"\r\n", b"\n")),
        ("data", b"mac"),
    ]


def test_wrong_terminators_are_refused_at_set_terminator() -> None:
    chat = COMPAT.asynchat.async_chat(map={})
    for wrong in ([b"x"], 1.5, (b"",)):
        with pytest.raises((TypeError, ValueError)):
            chat.set_terminator(wrong)
    assert not hasattr(chat, "terminator")


def test_dispatcher_with_send_accepts_bytes_assigned_to_out_buffer() -> None:
    disp = COMPAT.asyncore.dispatcher_with_send(map={})
    disp.out_buffer = b"old "
    disp.connected = True
    sent: list[bytes] = []
    disp.socket = type("Sock", (), {"send": lambda self, data: sent.append(bytes(data)) or 0})()
    disp.send(b"new")
    assert disp.out_buffer == b"old new"
    assert sent == [b"old new"]
