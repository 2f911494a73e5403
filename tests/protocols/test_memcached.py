"""`sanschat.protocols.memcached` without sockets: commands, data blocks, limits, cuts."""

from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanschat.protocols.memcached import SWALLOW_CHUNK, MemcachedServer, Store
from sanschat.testing import ChatHarness, assert_same_for_every_chunking, transcript
from sanschat.testing.strategies import chunkings


class ByCount(MemcachedServer):
    """Every data block read by an int terminator (the other framing path)."""

    line_block_limit: ClassVar[int] = 0


class Small(MemcachedServer):
    max_frame_size: ClassVar[int | None] = 300
    max_item_size: ClassVar[int] = 10


SERVERS = pytest.mark.parametrize("server", [MemcachedServer, ByCount], ids=["lines", "by-count"])


def run(server: type[MemcachedServer], *chunks: bytes) -> tuple[ChatHarness, bytes]:
    harness = ChatHarness(server(), catch=False)
    return harness, harness.feed(*chunks)


def storage(name: bytes, key: bytes, value: bytes, *extra: bytes, flags: int = 0) -> bytes:
    head = b" ".join([name, key, b"%d" % flags, b"0", b"%d" % len(value), *extra])
    return head + b"\r\n" + value + b"\r\n"


@SERVERS
def test_storage_and_retrieval(server: type[MemcachedServer]) -> None:
    _, reply = run(
        server,
        storage(b"set", b"k", b"v\r\n\x00", flags=7) + b"get k nope\r\n"
        + storage(b"add", b"k", b"x") + storage(b"add", b"n", b"1")
        + storage(b"replace", b"nope", b"x") + storage(b"replace", b"k", b"w")
        + storage(b"append", b"k", b"+") + storage(b"prepend", b"k", b"-") + b"get k n\r\n",
    )  # fmt: skip
    assert reply == (
        b"STORED\r\nVALUE k 7 4\r\nv\r\n\x00\r\nEND\r\nNOT_STORED\r\nSTORED\r\nNOT_STORED\r\n"
        b"STORED\r\nSTORED\r\nSTORED\r\nVALUE k 0 3\r\n-w+\r\nVALUE n 0 1\r\n1\r\nEND\r\n"
    )


def test_gets_and_cas() -> None:
    _, reply = run(
        MemcachedServer,
        storage(b"set", b"k", b"a") + b"gets k\r\n" + storage(b"cas", b"k", b"b", b"1")
        + storage(b"cas", b"k", b"c", b"1") + storage(b"cas", b"nope", b"c", b"1")
        + b"gets k\r\n",
    )  # fmt: skip
    assert reply == (
        b"STORED\r\nVALUE k 0 1 1\r\na\r\nEND\r\nSTORED\r\nEXISTS\r\nNOT_FOUND\r\n"
        b"VALUE k 0 1 2\r\nb\r\nEND\r\n"
    )


def test_incr_decr_delete_flush_version() -> None:
    _, reply = run(
        MemcachedServer,
        storage(b"set", b"n", b"10") + b"incr n 5\r\ndecr n 100\r\nincr nope 1\r\n"
        + storage(b"set", b"m", b"18446744073709551615") + b"incr m 2\r\n"
        + storage(b"set", b"s", b"abc") + b"incr s 1\r\nincr n x\r\n"
        + b"delete n\r\ndelete n\r\ndelete m 0\r\nflush_all\r\nget s\r\nversion\r\n",
    )  # fmt: skip
    assert reply == (
        b"STORED\r\n15\r\n0\r\nNOT_FOUND\r\nSTORED\r\n1\r\nSTORED\r\n"
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        b"CLIENT_ERROR invalid numeric delta argument\r\n"
        b"DELETED\r\nNOT_FOUND\r\nDELETED\r\nOK\r\nEND\r\nVERSION 1.6.0-sanschat\r\n"
    )


def test_noreply_silences_replies_but_not_errors() -> None:
    _, reply = run(
        MemcachedServer,
        storage(b"set", b"k", b"1", b"noreply") + b"incr k 1 noreply\r\ndelete x noreply\r\n"
        + b"incr k x noreply\r\nget k\r\n",
    )  # fmt: skip
    assert reply == b"CLIENT_ERROR invalid numeric delta argument\r\nVALUE k 0 1\r\n2\r\nEND\r\n"


@pytest.mark.parametrize(
    "line",
    [
        b"set k 0 0\r\n",
        b"set k x 0 1\r\n",
        b"set k 0 0 -1\r\n",
        b"set k 4294967296 0 1\r\n",
        b"set " + b"k" * 251 + b" 0 0 1\r\n",
        b"get " + b"k" * 251 + b"\r\n",
        b"cas k 0 0 1\r\n",
        b"delete\r\n",
        b"delete k 5\r\n",
        b"incr k\r\n",
        b"version now\r\n",
    ],
)
def test_malformed_commands_are_client_errors_and_the_session_goes_on(line: bytes) -> None:
    _, reply = run(MemcachedServer, line + b"version\r\n")
    assert reply == b"CLIENT_ERROR bad command line format\r\nVERSION 1.6.0-sanschat\r\n"


def test_unknown_or_empty_commands_are_error() -> None:
    _, reply = run(MemcachedServer, b"stats\r\n\r\nget\r\n")
    assert reply == b"ERROR\r\nERROR\r\nERROR\r\n"


@SERVERS
def test_a_block_not_ended_by_crlf_is_a_bad_data_chunk(server: type[MemcachedServer]) -> None:
    _, reply = run(server, b"set k 0 0 2\r\nabc\r\nget k\r\n")
    assert reply.startswith(b"CLIENT_ERROR bad data chunk\r\n")
    assert reply.endswith(b"END\r\n")  # k was not stored


def test_a_block_over_the_item_limit_is_refused_and_dropped_in_bounded_pieces() -> None:
    size = 3 * SWALLOW_CHUNK + 5
    harness = ChatHarness(Small(), catch=False)
    reply = harness.feed(b"set big 0 0 %d\r\n" % size)
    assert reply == b"SERVER_ERROR object too large for cache\r\n"
    for _ in range(3):
        harness.feed(b"\r\n" * (SWALLOW_CHUNK // 2))
        assert harness.chat.channel.buffered_input <= SWALLOW_CHUNK
    assert harness.feed(b"12345\r\nget big\r\nversion\r\n") == b"END\r\nVERSION 1.6.0-sanschat\r\n"


def test_append_past_the_item_limit_is_refused() -> None:
    _, reply = run(Small, storage(b"set", b"k", b"123456") + storage(b"append", b"k", b"78901"))
    assert reply == b"STORED\r\nSERVER_ERROR out of memory storing object\r\n"


def test_quit_closes_without_a_reply() -> None:
    harness, reply = run(MemcachedServer, b"quit\r\nversion\r\n")
    assert reply == b"" and harness.closed


def test_connections_of_one_factory_share_the_store() -> None:
    make = MemcachedServer.factory()
    assert ChatHarness(make()).feed(storage(b"set", b"k", b"v")) == b"STORED\r\n"
    assert ChatHarness(make()).feed(b"get k\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"
    assert ChatHarness(MemcachedServer(Store())).feed(b"get k\r\n") == b"END\r\n"


def test_a_command_line_over_the_limit_is_answered_then_close() -> None:
    harness = ChatHarness(Small())
    reply = harness.feed(b"version\r\nget " + b"k" * 400 + b"\r\nversion\r\n")
    assert reply == b"VERSION 1.6.0-sanschat\r\nCLIENT_ERROR line too long\r\n"
    assert harness.closed


@SERVERS
def test_same_answer_for_every_two_piece_cut(server: type[MemcachedServer]) -> None:
    assert_same_for_every_chunking(
        server, storage(b"set", b"k", b"a\r\nb") + b"get k\r\nincr k 1\r\n", max_pieces=2
    )


PIPELINE = (
    storage(b"set", b"a", b"\r\n") + storage(b"set", b"b", b"x\r", b"noreply")
    + storage(b"set", b"c", b"") + b"get a b c\r\n" + storage(b"set", b"n", b"1")
    + b"incr n 9\r\ngets n\r\nset big 0 0 20\r\n" + b"z" * 20 + b"\r\nget big\r\n"
)  # fmt: skip


@SERVERS
@settings(max_examples=100, deadline=None)
@given(st.data())
def test_same_answer_however_a_pipeline_is_cut(
    server: type[MemcachedServer], data: st.DataObject
) -> None:
    chunks = data.draw(chunkings(PIPELINE))
    assert transcript(server(), chunks) == transcript(server(), [PIPELINE])


VALUES = st.lists(st.sampled_from(b"\r\nab \x00"), max_size=12).map(bytes)


@settings(max_examples=100, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=6))
def test_blocks_read_as_lines_equal_blocks_read_by_count(values: list[bytes]) -> None:
    stream = b"".join(storage(b"set", b"k%d" % i, v) for i, v in enumerate(values))
    stream += b"get " + b" ".join(b"k%d" % i for i in range(len(values))) + b"\r\n"
    by_lines = transcript(MemcachedServer(), [stream])
    assert by_lines == transcript(ByCount(), [stream])
    blocks = b"".join(b"VALUE k%d 0 %d\r\n%b\r\n" % (i, len(v), v) for i, v in enumerate(values))
    assert by_lines.sent.endswith(blocks + b"END\r\n")
