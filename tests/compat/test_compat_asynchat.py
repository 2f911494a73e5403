"""async_chat over real loopback sockets, run against the stdlib and sanschat.compat alike.

Each test runs once per `Env` (see ``conftest.py``): stdlib and compat modules, each on the
``select`` and ``poll`` loops, and compat on ``loop_asyncio``.  A test that asserts the same
thing for both module pairs is a differential test: where they differ, one side fails.  The
few deliberate differences are asserted per side and named ``..._differs_...``.
"""

from __future__ import annotations

from typing import Any

import pytest
from compat_util import Env

LINES = [b"hello", b"", b"a\rb", b"\r", b"x" * 50, b"", b"\r\n", b"tail"]
TERMINATORS = [b"\n", b"\r\n", b"\r\n."]


def _lines_for(terminator: bytes) -> list[bytes]:
    return [line for line in LINES if terminator not in line]


@pytest.mark.parametrize("terminator", TERMINATORS, ids=["1-byte", "2-byte", "3-byte"])
@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_echo_frames_are_the_lines_sent_whatever_the_cutting(
    env: Env, terminator: bytes, chunk: int
) -> None:
    lines = _lines_for(terminator)
    address = env.chunked_echo(chunk)
    client = env.recorder(address, terminator, in_size=chunk)
    client.push(terminator.join(lines) + terminator)
    env.pump(lambda: len(client.frames) >= len(lines), "the echoed lines")
    assert client.frames == lines
    assert all(data for kind, data in client.events if kind == "data"), "empty data collected"


def test_empty_lines_end_empty_frames_without_collecting(env: Env) -> None:
    client = env.recorder(env.chunked_echo(64), b"\r\n")
    client.push(b"\r\n\r\n\r\n")
    env.pump(lambda: len(client.frames) == 3, "three empty lines")
    assert client.events == [("end", b"\r\n")] * 3


def test_numeric_terminator_counts_down_then_collects_forever(env: Env) -> None:
    client = env.recorder(env.chunked_echo(3), 5, in_size=3)
    client.push(b"abcdefghij")
    env.pump(lambda: client.data == b"abcdefghij", "ten bytes")
    assert client.frames == [b"abcde"]
    assert client.events[:3] == [("data", b"abc"), ("data", b"de"), ("end", 0)]
    # during collect_incoming_data the terminator still shows the count before the piece
    assert client.data_terms[:2] == [5, 2]
    assert client.get_terminator() == 0  # one-shot: 0 means "collect everything" now


def test_numeric_and_line_terminators_alternate_like_http(env: Env) -> None:
    def on_frame(chat: Any, frame: bytes) -> None:
        if frame.startswith(b"LEN "):
            chat.set_terminator(int(frame[4:]))
        elif isinstance(chat.get_terminator(), int):
            chat.set_terminator(b"\r\n")

    client = env.recorder(env.chunked_echo(2), b"\r\n", in_size=5, on_frame=on_frame)
    client.push(b"LEN 4\r\n\r\n\r\nLEN 1\r\nxhi\r\n")
    env.pump(lambda: len(client.frames) == 5, "five frames")
    assert client.frames == [b"LEN 4", b"\r\n\r\n", b"LEN 1", b"x", b"hi"]


@pytest.mark.parametrize("terminator", [None, 0, b""], ids=["None", "0", "empty"])
def test_false_terminators_collect_everything(env: Env, terminator: Any) -> None:
    client = env.recorder(env.chunked_echo(7), terminator, in_size=5)
    payload = b"line\r\nmore\n\n" * 5
    client.push(payload)
    env.pump(lambda: client.data == payload, "all bytes")
    assert client.frames == []


def test_simple_producer_and_bytes_given_to_push_with_producer(env: Env) -> None:
    chat = env.asynchat
    body = bytes(range(256)) * 8

    def reply(server: Any, line: bytes) -> None:
        server.push_with_producer(chat.simple_producer(body, buffer_size=7))
        server.push_with_producer(b"|bytes given to push_with_producer|")
        server.push_with_producer(chat.simple_producer(b"tail"))
        server.close_when_done()

    client = env.recorder(env.serve_lines(reply), None)
    client.push(b"go\n")
    env.pump(lambda: client.closed, "the server to close")
    assert client.data == body + b"|bytes given to push_with_producer|tail"


def test_large_producer_chunk_is_sent_whole(env: Env) -> None:
    chat = env.asynchat
    body = bytes(range(251)) * 8000  # about 2 MB returned by one more() call

    def reply(server: Any, line: bytes) -> None:
        server.push_with_producer(chat.simple_producer(body, buffer_size=len(body)))
        server.push(body[:100_000])
        server.close_when_done()

    client = env.recorder(env.serve_lines(reply), None)
    client.push(b"go\n")
    env.pump(lambda: client.closed, "the server to close")
    assert len(client.data) == len(body) + 100_000
    assert client.data == body + body[:100_000]


def test_close_when_done_sends_what_was_queued_then_closes(env: Env) -> None:
    def reply(server: Any, line: bytes) -> None:
        server.push(b"bye\r\n")
        server.close_when_done()
        server.push(b"never sent\r\n")  # queued after the close marker, as in asynchat

    client = env.recorder(env.serve_lines(reply), b"\r\n")
    client.push(b"quit\n")
    env.pump(lambda: client.closed, "the server to close")
    assert client.frames == [b"bye"]
    assert client.data == b"bye"
    env.pump(lambda: not env.served[0].connected, "the server channel to close")
    assert env.served[0] not in env.map.values()


def test_push_sends_bytes_bytearray_and_memoryview(env: Env) -> None:
    def reply(server: Any, line: bytes) -> None:
        server.push(b"bytes,")
        server.push(bytearray(b"bytearray,"))
        server.push(memoryview(b"xmemoryview,x")[1:-1])
        server.push(memoryview(bytearray(b"writable view")))
        server.close_when_done()

    client = env.recorder(env.serve_lines(reply), None)
    client.push(b"go\n")
    env.pump(lambda: client.closed, "the server to close")
    assert client.data == b"bytes,bytearray,memoryview,writable view"


def test_many_clients_are_served_by_chats_made_in_handle_accepted(env: Env) -> None:
    def reply(server: Any, line: bytes) -> None:
        server.push(line.upper() + b"\n")

    address = env.serve_lines(reply)
    clients = [env.recorder(address, b"\n") for _ in range(6)]
    for number, client in enumerate(clients):
        client.push(b"client %d\nsecond line\n" % number)
    env.pump(lambda: all(len(c.frames) == 2 for c in clients), "every answer")
    for number, client in enumerate(clients):
        assert client.frames == [b"CLIENT %d" % number, b"SECOND LINE"]
    assert len(env.served) == 6


def test_blocking_io_error_from_recv_is_ignored_by_handle_read(env: Env) -> None:
    address = env.serve_lines(lambda server, line: None)
    client = env.recorder(address, b"\n")
    env.pump(lambda: bool(env.served) and client.connected, "the connection")
    server = env.served[0]
    errors: list[object] = []
    server.handle_error = lambda: errors.append(True)
    server.handle_read()  # nothing was sent: the socket's recv raises BlockingIOError
    assert errors == []
    assert server.connected
    assert server in env.map.values()


def test_an_exception_in_found_terminator_closes_that_channel_only(env: Env) -> None:
    def reply(server: Any, line: bytes) -> None:
        if line == b"boom":
            raise RuntimeError("handler failed")
        server.push(line + b"\n")

    address = env.serve_lines(reply, log_info=lambda message, type="info": None)
    victim = env.recorder(address, b"\n")
    survivor = env.recorder(address, b"\n")
    victim.push(b"boom\n")
    env.pump(lambda: victim.closed, "the failing channel to close")
    survivor.push(b"still here\n")
    env.pump(lambda: survivor.frames == [b"still here"], "the other channel's answer")


def test_partial_terminator_at_end_of_stream_differs_lost_in_stdlib(env: Env) -> None:
    def reply(server: Any, line: bytes) -> None:
        server.push(b"done\r\nabc\r")
        server.close_when_done()

    client = env.recorder(env.serve_lines(reply), b"\r\n")
    client.push(b"go\n")
    env.pump(lambda: client.closed, "the server to close")
    assert client.frames == [b"done"]
    if env.mods.is_stdlib:
        assert client.data == b"doneabc"  # asynchat drops the held-back b"\r"
    else:
        assert client.data == b"doneabc\r"  # delivered before handle_close
        assert client.events[-1] == ("data", b"\r")


def test_use_encoding_encodes_str_terminators_and_producer_data(env: Env) -> None:
    def reply(server: Any, line: bytes) -> None:
        server.push_with_producer("h\xe9llo\n")
        server.push_with_producer(env.asynchat.simple_producer("w\xf6rld\n", buffer_size=2))

    client = env.recorder(env.serve_lines(reply, use_encoding=1), b"x")
    client.use_encoding = 1
    client.set_terminator("\n")
    assert client.get_terminator() == b"\n"
    client.push(b"go\n")
    env.pump(lambda: len(client.frames) == 2, "two lines")
    assert client.frames == ["h\xe9llo".encode("latin-1"), "w\xf6rld".encode("latin-1")]


def test_terminator_assigned_directly_or_on_the_class_is_honoured(env: Env) -> None:
    def on_frame(chat: Any, frame: bytes) -> None:
        chat.terminator = b";"  # bypassing set_terminator, as some old code does

    client = env.recorder(env.chunked_echo(4), b"\n", on_frame=on_frame)
    del client.terminator
    type(client).terminator = b"\n"  # a class attribute, as some subclasses define it
    try:
        client.push(b"one\ntwo;three;")
        env.pump(lambda: len(client.frames) == 3, "three frames")
    finally:
        del type(client).terminator
    assert client.frames == [b"one", b"two", b"three"]


def test_discard_buffers_in_found_terminator_drops_the_rest(env: Env) -> None:
    def on_frame(chat: Any, frame: bytes) -> None:
        if frame == b"reset":
            chat.discard_buffers()

    client = env.recorder(env.chunked_echo(1 << 16), b"\n", on_frame=on_frame)
    client.push(b"reset\ndropped\nalso dropped\n")
    env.pump(lambda: bool(client.frames), "the first frame")
    env.settle()
    assert client.frames == [b"reset"]
    assert not client.producer_fifo
