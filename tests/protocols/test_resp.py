"""`sanschat.protocols.resp` without sockets: commands, framing both ways, limits, cuts."""

from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanschat.protocols.resp import RESPServer
from sanschat.testing import ChatHarness, assert_same_for_every_chunking, transcript
from sanschat.testing.strategies import chunkings


def command(*args: bytes) -> bytes:
    """A command as redis-py encodes it: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


class ByCount(RESPServer):
    """Every bulk read by an int terminator (the other framing path)."""

    line_bulk_limit: ClassVar[int] = 0


class Small(RESPServer):
    max_frame_size: ClassVar[int | None] = 64
    max_bulk_length: ClassVar[int] = 100
    max_multibulk_length: ClassVar[int] = 4


SERVERS = pytest.mark.parametrize("server", [RESPServer, ByCount], ids=["lines", "by-count"])

TRICKY = [b"", b"\r\n", b"a\r\nb", b"\r", b"\n", b"x\r", b"\r\r\n\n", b"\x00" * 3, b"$1\r\n*2"]


def run(server: type[RESPServer], data: bytes) -> tuple[ChatHarness, bytes]:
    harness = ChatHarness(server(), catch=False)
    return harness, harness.feed(data)


@SERVERS
def test_strings_commands(server: type[RESPServer]) -> None:
    _, reply = run(
        server,
        command(b"SET", b"k", b"v") + command(b"GET", b"k") + command(b"GET", b"nope")
        + command(b"set", b"k", b"w", b"NX") + command(b"SET", b"n", b"1", b"XX")
        + command(b"EXISTS", b"k", b"nope", b"k") + command(b"DEL", b"k", b"nope")
        + command(b"MSET", b"a", b"1", b"b", b"2") + command(b"MGET", b"a", b"x", b"b")
        + command(b"DBSIZE") + command(b"FLUSHDB") + command(b"DBSIZE"),
    )  # fmt: skip
    assert reply == (
        b"+OK\r\n$1\r\nv\r\n$-1\r\n$-1\r\n$-1\r\n:2\r\n:1\r\n+OK\r\n"
        b"*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n:2\r\n+OK\r\n:0\r\n"
    )


@SERVERS
def test_counters_and_their_errors(server: type[RESPServer]) -> None:
    _, reply = run(
        server,
        command(b"INCR", b"n") + command(b"INCRBY", b"n", b"41") + command(b"DECR", b"n")
        + command(b"DECRBY", b"n", b"-8") + command(b"SET", b"s", b"x") + command(b"INCR", b"s")
        + command(b"SET", b"m", b"9223372036854775807") + command(b"INCR", b"m")
        + command(b"INCRBY", b"n", b"1.5"),
    )  # fmt: skip
    assert reply == (
        b":1\r\n:42\r\n:41\r\n:49\r\n+OK\r\n-ERR value is not an integer or out of range\r\n"
        b"+OK\r\n-ERR increment or decrement would overflow\r\n"
        b"-ERR value is not an integer or out of range\r\n"
    )


@SERVERS
def test_binary_values_come_back_byte_for_byte(server: type[RESPServer]) -> None:
    stream = b"".join(command(b"SET", b"k%d" % i, v) for i, v in enumerate(TRICKY))
    stream += command(b"MGET", *(b"k%d" % i for i in range(len(TRICKY))))
    _, reply = run(server, stream)
    expected = b"".join(b"$%d\r\n%b\r\n" % (len(v), v) for v in TRICKY)
    assert reply == b"+OK\r\n" * len(TRICKY) + b"*%d\r\n" % len(TRICKY) + expected


def test_a_value_larger_than_a_line_is_read_by_its_count() -> None:
    value = b"\r\n".join([b"z" * 70_000] * 3)
    _, reply = run(RESPServer, command(b"SET", b"big", value) + command(b"GET", b"big"))
    assert reply == b"+OK\r\n$%d\r\n%b\r\n" % (len(value), value)


def test_inline_commands_ping_echo_unknown_and_arity() -> None:
    _, reply = run(
        RESPServer,
        b"PING\r\nping hello\r\n\r\n  \r\nECHO\r\nGET a b\r\nNOSUCH x\r\n"
        + command(b"ECHO", b"two words") + b"*0\r\n*-1\r\n",
    )  # fmt: skip
    assert reply == (
        b"+PONG\r\n$5\r\nhello\r\n-ERR wrong number of arguments for 'echo' command\r\n"
        b"-ERR wrong number of arguments for 'get' command\r\n"
        b"-ERR unknown command 'NOSUCH'\r\n$9\r\ntwo words\r\n"
    )


def test_set_options_that_need_a_clock_are_a_syntax_error() -> None:
    _, reply = run(RESPServer, command(b"SET", b"k", b"v", b"EX", b"10") + b"SET k v NX XX\r\n")
    assert reply == b"-ERR syntax error\r\n-ERR syntax error\r\n"


def test_multi_exec_discard_and_an_aborted_transaction() -> None:
    _, reply = run(
        RESPServer,
        b"MULTI\r\nSET a 1\r\nINCR a\r\nEXEC\r\nMULTI\r\nSET a 5\r\nDISCARD\r\nGET a\r\n"
        b"MULTI\r\nMULTI\r\nNOSUCH\r\nEXEC\r\nEXEC\r\n",
    )
    assert reply == (
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:2\r\n+OK\r\n+QUEUED\r\n+OK\r\n$1\r\n2\r\n"
        b"+OK\r\n-ERR MULTI calls can not be nested\r\n-ERR unknown command 'NOSUCH'\r\n"
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        b"-ERR EXEC without MULTI\r\n"
    )


def test_quit_answers_ok_and_closes() -> None:
    harness, reply = run(RESPServer, b"QUIT\r\nPING\r\n")
    assert reply == b"+OK\r\n" and harness.closed


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (b"*1\r\n$101\r\n", b"invalid bulk length"),
        (b"*1\r\n$-1\r\n", b"invalid bulk length"),
        (b"*1\r\n$x\r\n", b"invalid bulk length"),
        (b"*5\r\n", b"invalid multibulk length"),
        (b"*1x\r\n", b"invalid multibulk length"),
        (b"*1\r\n:1\r\n", b"expected '$', got ':'"),
        (b"*1\r\n$2\r\nabc\r\n", b"bulk string not followed by CRLF"),
        (b"*1\r\n$2\r\na\r\n\r\n", b"bulk string not followed by CRLF"),
        (b"*1\r\n$4\r\nab\r\nc\r\n", b"bulk string not followed by CRLF"),
    ],
)
def test_broken_framing_is_a_protocol_error_then_close(stream: bytes, error: bytes) -> None:
    harness, reply = run(Small, b"PING\r\n" + stream + b"PING\r\n")
    assert reply == b"+PONG\r\n-ERR Protocol error: " + error + b"\r\n"
    assert harness.closed


def test_a_bulk_over_the_line_limit_by_count_reports_a_missing_crlf() -> None:
    _, reply = run(Small, b"*1\r\n$70\r\n" + b"x" * 71 + b"\r\n")
    assert reply == b"-ERR Protocol error: bulk string not followed by CRLF\r\n"


def test_a_header_line_over_the_limit_is_answered_then_close() -> None:
    harness = ChatHarness(Small())
    reply = harness.feed(b"PING\r\n" + b"P" * 100 + b"\r\nPING\r\n")
    assert reply.startswith(b"+PONG\r\n-ERR Protocol error: too big") and harness.closed


@SERVERS
def test_same_answer_for_every_two_piece_cut(server: type[RESPServer]) -> None:
    assert_same_for_every_chunking(
        server, command(b"SET", b"k", b"a\r\nb") + command(b"GET", b"k") + b"PING\r\n",
        max_pieces=2,
    )  # fmt: skip


PIPELINE = b"".join(command(b"SET", b"k%d" % i, v) for i, v in enumerate(TRICKY)) + command(
    b"MGET", *(b"k%d" % i for i in range(len(TRICKY)))
) + b"INCR n\r\nMULTI\r\nINCR n\r\nEXEC\r\n"  # fmt: skip


@SERVERS
@settings(max_examples=100, deadline=None)
@given(st.data())
def test_same_answer_however_a_pipeline_is_cut(
    server: type[RESPServer], data: st.DataObject
) -> None:
    chunks = data.draw(chunkings(PIPELINE))
    assert transcript(server(), chunks) == transcript(server(), [PIPELINE])


VALUES = st.lists(st.sampled_from(b"\r\nab$*\x00"), max_size=12).map(bytes)


@settings(max_examples=100, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=6))
def test_values_read_as_lines_equal_values_read_by_count(values: list[bytes]) -> None:
    stream = b"".join(command(b"SET", b"k%d" % i, v) for i, v in enumerate(values))
    stream += command(b"MGET", *(b"k%d" % i for i in range(len(values))))
    by_lines, by_count = transcript(RESPServer(), [stream]), transcript(ByCount(), [stream])
    assert by_lines == by_count
    assert by_lines.sent.endswith(b"".join(b"$%d\r\n%b\r\n" % (len(v), v) for v in values))
