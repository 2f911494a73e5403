"""The example protocols, driven without sockets."""

from __future__ import annotations

import pytest
from http_cases import BAD_REQUESTS

from sanschat import Chat
from sanschat.examples import (
    CHAT_HIGH_WATER,
    CHAT_SENDQ_TIMEOUT,
    ChatMember,
    ChatRoom,
    Echo,
    HTTPRequestHandler,
    factory,
)
from sanschat.testing import ChatHarness, RecordingTransport, assert_same_for_every_chunking


def output(chat: Chat) -> bytes:
    data = bytearray()
    while chunk := chat.channel.data_to_send():
        data += chunk
    return bytes(data)


def started(chat: Chat) -> Chat:
    chat.attach(RecordingTransport())
    return chat


def http_exchange(request: bytes, size: int = 1 << 20) -> bytes:
    harness = ChatHarness(HTTPRequestHandler(), catch=False)
    reply = harness.feed(*(request[i : i + size] for i in range(0, len(request), size)))
    assert harness.closed, "an HTTP/1.0 server closes after the reply"
    return reply


def test_echo_sends_frames_back_with_their_terminator() -> None:
    chat = started(Echo())
    chat.feed(b"one\r\ntwo\r")
    chat.feed(b"\nthr")
    assert output(chat) == b"one\r\ntwo\r\n"


def test_chat_room_sends_each_line_to_the_others_only() -> None:
    room = ChatRoom()
    alice, bob = started(ChatMember(room)), started(ChatMember(room))
    alice.feed(b"hi\nthere\r\n")
    assert output(bob) == b"hi\r\nthere\r\n"
    assert output(alice) == b""


def _room_of_two() -> tuple[ChatRoom, ChatHarness, ChatHarness]:
    room = ChatRoom()
    talker, sleeper = ChatHarness(ChatMember(room)), ChatHarness(ChatMember(room))
    sleeper.peer_reads = False
    return room, talker, sleeper


def _fill(talker: ChatHarness, line: bytes = b"x" * 1000 + b"\n") -> int:
    """Feed lines until the talker is paused; return how many were fed."""
    for count in range(1, 10 * CHAT_HIGH_WATER // len(line)):
        talker.feed(line)
        if talker.transport.reading_paused:
            return count
    raise AssertionError("the talker was never paused")


def test_chat_room_pauses_the_sender_while_a_member_is_full() -> None:
    room, talker, sleeper = _room_of_two()
    _fill(talker)
    queued = sleeper.chat.channel.buffered_output
    assert CHAT_HIGH_WATER < queued <= CHAT_HIGH_WATER + 1001
    talker.feed(b"held\n" * 10)  # paused: the harness holds it, as a driver would not read
    assert sleeper.chat.channel.buffered_output == queued
    assert sleeper.transport.idle_timeout == CHAT_SENDQ_TIMEOUT  # the SendQ clock runs
    assert sleeper.chat in room.members


def test_chat_member_that_reads_resumes_the_sender_and_is_never_dropped() -> None:
    room, talker, sleeper = _room_of_two()
    for _ in range(3):
        _fill(talker)
        got = sleeper.drain()  # the member reads everything: the talker goes on
        assert got and not talker.transport.reading_paused
        assert sleeper.transport.idle_timeout is None  # the SendQ clock is stopped
    talker.feed(b"last\n")
    assert sleeper.drain().endswith(b"last\r\n")
    assert sleeper.chat in room.members and room.dropped == 0


def test_chat_member_full_until_its_sendq_clock_runs_out_is_dropped_with_a_reason() -> None:
    room, talker, sleeper = _room_of_two()
    _fill(talker)
    sleeper.idle()  # the driver's idle timer: nothing taken for CHAT_SENDQ_TIMEOUT s
    assert sleeper.chat not in room.members and room.dropped == 1
    assert not talker.transport.reading_paused  # the dropped member no longer holds it
    reason = sleeper.drain()
    assert reason.startswith(b"*** SendQ exceeded: ") and reason.endswith(b"; closing\r\n")
    assert sleeper.closed
    talker.feed(b"after\n")  # the room goes on without it
    assert sleeper.chat.channel.buffered_output == 0


def test_chat_member_sends_the_lines_of_one_read_in_one_push_per_member() -> None:
    pushes: list[bytes] = []

    class Counting(ChatMember):
        def push(self, data: bytes | bytearray | memoryview) -> None:
            pushes.append(bytes(data))
            super().push(data)

    room = ChatRoom()
    alice, bob = ChatHarness(ChatMember(room)), ChatHarness(Counting(room))
    alice.feed(b"a\nbb\r\nccc\n")
    assert pushes == [b"a\r\nbb\r\nccc\r\n"]
    assert bob.drain() == b"a\r\nbb\r\nccc\r\n"


def test_chat_member_leaves_the_room_when_its_connection_is_lost() -> None:
    room = ChatRoom()
    member = started(ChatMember(room))
    member.detach(None)
    assert room.members == set()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 1 << 20])
def test_http_post_body_is_echoed_however_the_request_is_cut(size: int) -> None:
    body = b"a=1&b=two\r\n\r\nnot a header"
    reply = http_exchange(
        b"POST /form HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body + b"EXTRA", size
    )
    assert reply == (
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


def test_http_get_names_the_request() -> None:
    assert http_exchange(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n").endswith(
        b"\r\n\r\nsanschat: GET /x\n"
    )


def test_http_post_with_content_length_zero_answers_at_once() -> None:
    reply = http_exchange(b"POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    assert reply.endswith(b"Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize(("request_bytes", "status"), BAD_REQUESTS.values(), ids=BAD_REQUESTS)
def test_http_refuses_bad_requests_with_a_status(request_bytes: bytes, status: bytes) -> None:
    assert http_exchange(request_bytes).startswith(b"HTTP/1.0 " + status)


def test_factory_makes_fresh_chats_with_the_given_limit() -> None:
    make = factory("echo", max_frame_size=10)
    first, second = make(), make()
    assert first is not second
    assert first.channel.max_frame_size == 10


def test_factory_chat_members_share_one_room() -> None:
    make = factory("chat")
    first, second = make(), make()
    assert isinstance(first, ChatMember) and isinstance(second, ChatMember)
    assert first.room is second.room


def test_factory_refuses_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown example server 'ftp'"):
        factory("ftp")


def test_chat_room_skips_a_member_that_is_leaving() -> None:
    room = ChatRoom()
    talker, leaver = started(ChatMember(room)), started(ChatMember(room))
    leaver.push(b"queued\r\n")
    leaver.feed_eof()  # the peer half-closed: the member flushes, then leaves
    talker.feed(b"anyone?\n")  # must not push to the leaving member (a ValueError)
    assert output(leaver) == b"queued\r\n"


def test_http_answers_a_long_header_line_with_431_however_it_is_cut() -> None:
    class Small(HTTPRequestHandler):
        max_frame_size = 24

    request = b"GET / HTTP/1.0\r\nX-Long: " + b"z" * 30 + b"\r\n\r\n"
    reference = assert_same_for_every_chunking(Small, request, max_pieces=2)
    assert reference.sent.startswith(b"HTTP/1.0 431 Request Header Fields Too Large\r\n")
    assert reference.closed


def test_http_413_names_content_too_large() -> None:
    reply = http_exchange(b"POST / HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % (2 << 20))
    assert reply.startswith(b"HTTP/1.0 413 Content Too Large\r\n")


@pytest.mark.parametrize("name", ["duplicate-length", "transfer-encoding", "bare-lf", "no-length"])
def test_http_refusals_do_not_depend_on_the_cut(name: str) -> None:
    request, status = BAD_REQUESTS[name]
    reference = assert_same_for_every_chunking(HTTPRequestHandler, request, max_pieces=2)
    assert reference.sent.startswith(b"HTTP/1.0 " + status) and reference.closed


def test_http_ignores_empty_lines_before_the_request_line() -> None:
    assert http_exchange(b"\r\n\r\nGET /x HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200 OK")


def test_http_request_timeout_is_408_only_for_a_request_begun() -> None:
    begun = ChatHarness(HTTPRequestHandler())
    begun.feed(b"GET / HTTP/1.0\r\nX: partial")
    assert begun.idle().startswith(b"HTTP/1.0 408 Request Timeout\r\n") and begun.closed
    silent = ChatHarness(HTTPRequestHandler())
    assert silent.idle() == b"" and silent.transport.closed


def test_http_holds_headers_in_one_buffer_not_one_object_per_piece() -> None:
    harness = ChatHarness(HTTPRequestHandler())
    line = b"GET / HTTP/1.0\r\nX-Drip: " + b"d" * 5000
    for i in range(len(line)):
        harness.feed(line[i : i + 1])  # dripped one byte at a time
    chat = harness.chat
    assert isinstance(chat, HTTPRequestHandler) and isinstance(chat.ibuffer, bytearray)
    assert len(chat.ibuffer) + chat.channel.buffered_input == 5008  # the open line, once
