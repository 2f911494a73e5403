"""`Chat` frames stepwise after a terminator switch: the same frames as the eager core,
for any switching script and any cut, and in linear time (a switch per frame)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanschat import (
    COMPILED,
    Channel,
    Chat,
    Data,
    FrameTooLarge,
    ProtocolError,
    TerminatorLike,
)
from sanschat.testing import ChatHarness
from sanschat.testing.strategies import chunkings, terminators

ALPHABET = b"\r\nab"


class Scripted(Chat):
    """Sets the next terminator of *script* after each frame (the last one stays)."""

    terminator = b"\n"

    def __init__(self, script: list[TerminatorLike], limit: int | None) -> None:
        super().__init__()
        self.script = list(script)
        self.limit = limit
        self.frames: list[bytes] = []
        self.error: type[ProtocolError] | None = None
        self.set_terminator(self.script.pop(0), max_frame_size=limit)

    def found_frame(self, frame: bytes) -> None:
        self.frames.append(frame)
        if self.script:
            self.set_terminator(self.script.pop(0), max_frame_size=self.limit)

    def protocol_error(self, error: ProtocolError) -> None:
        self.error = type(error)


def eager(script: list[TerminatorLike], limit: int | None, chunks: list[bytes]) -> Scripted:
    """The reference: a bare `Channel` loop (which re-decides the rest at each switch)."""
    record = Scripted.__new__(Scripted)
    record.frames, record.error = [], None
    todo = list(script)
    channel = Channel(todo.pop(0), max_frame_size=limit)
    try:
        for chunk in [b"", *chunks]:  # b"": what the chat's own set_terminator frames at once
            for frame in channel.frames(chunk):
                record.frames.append(frame)
                if todo:
                    channel.set_terminator(todo.pop(0), max_frame_size=limit)
    except FrameTooLarge:
        record.error = FrameTooLarge
    return record


@settings(max_examples=300, deadline=None)
@given(
    st.lists(terminators(ALPHABET), min_size=1, max_size=12),
    st.one_of(st.none(), st.integers(0, 8)),
    st.binary(max_size=40).map(lambda raw: bytes(ALPHABET[b % 4] for b in raw)),
    st.data(),
)
def test_stepwise_frames_equal_the_eager_cores_for_any_script_and_cut(
    script: list[TerminatorLike], limit: int | None, stream: bytes, data: st.DataObject
) -> None:
    chunks = data.draw(chunkings(stream))
    chat = Scripted(script, limit)
    harness = ChatHarness(chat)
    harness.feed(*chunks)
    reference = eager(script, limit, chunks)
    assert chat.frames == reference.frames
    assert chat.error is reference.error
    whole = Scripted(script, limit)
    ChatHarness(whole).feed(stream)  # and the same as the whole stream in one read
    assert whole.frames == chat.frames and whole.error is chat.error


def test_a_frame_too_large_after_a_switch_is_answered_in_order() -> None:
    chat = Scripted([b"\n", 3, b"\n"], limit=4)
    harness = ChatHarness(chat)
    harness.feed(b"ab\nxyz" + b"q" * 10 + b"\n")
    assert chat.frames == [b"ab", b"xyz"] and chat.error is FrameTooLarge and harness.closed


def test_nothing_is_dispatched_after_close_when_done_in_a_stepwise_loop() -> None:
    class Quits(Scripted):
        def found_frame(self, frame: bytes) -> None:
            super().found_frame(frame)
            if frame == b"QUIT":
                self.close_when_done()

    chat = Quits([b"\n", 2, b"\n", 2, b"\n"], limit=None)
    ChatHarness(chat).feed(b"a\nbcQUIT\nde\nf\n")
    assert chat.frames == [b"a", b"bc", b"QUIT"]


@pytest.mark.skipif(COMPILED, reason="counts through a patched method (pure build only)")
def test_a_switch_per_frame_never_re_decides_the_rest_of_the_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The work per switch must not grow with the bytes left in the read: each switch used
    to take back and re-cut every byte after it (quadratic in the frames of one read)."""
    taken_back = []
    original = Channel._raw
    monkeypatch.setattr(Channel, "_raw", lambda self, keep: taken_back.append(
        len(raw := original(self, keep))) or raw)
    values = 2000
    chat = Scripted([b"\r\n", 7] * values, limit=None)
    ChatHarness(chat).feed(b"$5\r\nhello\r\n" * values)
    assert len(chat.frames) == 2 * values
    assert sum(taken_back) <= 11 * values  # once through the read at most (was ~11 x 2000^2)


class ScriptedEvents(Chat):
    """`Scripted` in asynchat's style: the bytes of each frame, then its end."""

    terminator = b"\n"

    def __init__(self, script: list[TerminatorLike], limit: int | None) -> None:
        super().__init__()
        self.script = list(script)
        self.limit = limit
        self.log: list[object] = []
        self.set_terminator(self.script.pop(0), max_frame_size=limit)

    def collect_incoming_data(self, data: bytes) -> None:
        self.log.append(data)

    def found_terminator(self) -> None:
        self.log.append("END")
        if self.script:
            self.set_terminator(self.script.pop(0), max_frame_size=self.limit)

    def protocol_error(self, error: ProtocolError) -> None:
        self.log.append(type(error))


def eager_events(
    script: list[TerminatorLike], limit: int | None, chunks: list[bytes]
) -> list[object]:
    """The reference for `ScriptedEvents`: a bare `Channel.receive` loop (eager)."""
    log: list[object] = []
    todo = list(script)
    channel = Channel(todo.pop(0), max_frame_size=limit)
    try:
        for chunk in [b"", *chunks]:
            for event in channel.receive(chunk):
                if isinstance(event, Data):
                    log.append(event.data)
                else:
                    log.append("END")
                    if todo:
                        channel.set_terminator(todo.pop(0), max_frame_size=limit)
    except FrameTooLarge:
        log.append(FrameTooLarge)
    return log


def joined(log: list[object]) -> list[object]:
    """*log* with adjacent bytes joined (how a frame's bytes are cut is not observable)."""
    out: list[object] = []
    for item in log:
        if isinstance(item, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += item
        else:
            out.append(item)
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(terminators(ALPHABET), min_size=1, max_size=12),
    st.one_of(st.none(), st.integers(0, 8)),
    st.binary(max_size=40).map(lambda raw: bytes(ALPHABET[b % 4] for b in raw)),
    st.data(),
)
def test_asynchat_style_stepwise_equals_the_eager_core_for_any_script_and_cut(
    script: list[TerminatorLike], limit: int | None, stream: bytes, data: st.DataObject
) -> None:
    chunks = data.draw(chunkings(stream))
    chat = ScriptedEvents(script, limit)
    ChatHarness(chat).feed(*chunks)
    assert joined(chat.log) == joined(eager_events(script, limit, chunks))


@pytest.mark.skipif(COMPILED, reason="counts through a patched method (pure build only)")
def test_compat_switching_per_frame_never_re_decides_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sanschat.compat import asynchat

    taken_back = []
    original = Channel._raw
    monkeypatch.setattr(Channel, "_raw", lambda self, keep: taken_back.append(
        len(raw := original(self, keep))) or raw)

    class Bulk(asynchat.async_chat):
        def __init__(self) -> None:
            super().__init__(sock=None, map={})
            self.set_terminator(b"\r\n")
            self.values: list[bytes] = []
            self.buffer = b""
            self.header = True

        def collect_incoming_data(self, data: bytes) -> None:
            self.buffer += data

        def found_terminator(self) -> None:
            frame, self.buffer = self.buffer, b""
            if self.header:
                self.set_terminator(int(frame[1:]) + 2)
            else:
                self.values.append(frame[:-2])
                self.set_terminator(b"\r\n")
            self.header = not self.header

    class OneRead:
        """Just enough socket: one recv() returns the whole pipeline."""

        def __init__(self, data: bytes) -> None:
            self.data = data

        def recv(self, size: int) -> bytes:
            data, self.data = self.data[:size], self.data[size:]
            return data

    values = 2000
    chat = Bulk()
    chat.socket = OneRead(b"$5\r\nhello\r\n" * values)  # type: ignore[assignment]
    chat.connected = True
    chat.handle_read()
    assert chat.values == [b"hello"] * values
    assert sum(taken_back) <= 11 * values


class CountTwice(Chat):
    """Sets two counts in one callback, and changes the limit with a count: the count reader
    a stepwise loop reuses must never be the one still in force, nor keep an old limit."""

    terminator = b"\n"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, object, int | None]] = []

    def found_frame(self, frame: bytes) -> None:
        if frame.startswith(b"#"):
            self.set_terminator(9)
            self.set_terminator(int(frame[1:]), max_frame_size=int(frame[1:]))
        elif frame.startswith(b"%"):
            self.set_terminator(int(frame[1:]), max_frame_size=2)  # too large: an error
        else:
            self.set_terminator(b"\n")
        self.seen.append((frame, self.get_terminator(), self.channel.max_frame_size))


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 1000])
def test_reused_count_readers_count_what_was_set_last_with_its_limit(cut: int) -> None:
    stream = b"#3\nabc#2\nxy#4\nwxyz%3\nabc"
    chat = ChatHarness(CountTwice(), catch=True)
    for i in range(0, len(stream), cut):
        chat.feed(stream[i : i + cut])
    assert [frame for frame, _, _ in chat.chat.seen] == [
        b"#3", b"abc", b"#2", b"xy", b"#4", b"wxyz", b"%3",
    ]
    assert chat.chat.seen[:2] == [(b"#3", 3, 3), (b"abc", b"\n", None)]
    assert chat.chat.seen[4] == (b"#4", 4, 4)
    assert chat.closed  # the last count is over its limit: protocol_error, then the close
