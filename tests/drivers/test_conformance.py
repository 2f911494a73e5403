"""One conformance suite, run against every driver over real sockets on 127.0.0.1.

Each test states one behaviour all drivers share (see ``sanschat/drivers/__init__.py``) and
checks it from the outside, with plain blocking sockets as clients.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import logging
import shutil
import socket
import struct
import subprocess
import threading
import time
import weakref
from collections.abc import Iterator

import pytest
from http_cases import BAD_REQUESTS
from netutil import TIMEOUT, ServerStarter, connect, recv_exactly, recv_until_eof, wait_for

from sanschat import Chat, ProtocolError
from sanschat.drivers import BackgroundServer
from sanschat.examples import MAX_FRAME_SIZE, ChatMember, ChatRoom, factory


class Lifecycle:
    """Counts, across the connections of one server, what the hooks saw."""

    def __init__(self) -> None:
        self.made = 0
        self.lost: list[BaseException | None] = []
        self.chats: list[Chat] = []
        self.lock = threading.Lock()


class Tracked(Chat):
    """Echo that records its lifecycle, and raises on the frame ``boom``."""

    terminator = b"\n"

    def __init__(self, life: Lifecycle) -> None:
        super().__init__()
        self.life = life

    def connection_made(self) -> None:
        with self.life.lock:
            self.life.made += 1
            self.life.chats.append(self)

    def found_frame(self, frame: bytes) -> None:
        if frame == b"boom":
            raise RuntimeError("handler failed on purpose")
        self.push(frame + b"\n")

    def connection_lost(self, exc: BaseException | None) -> None:
        with self.life.lock:
            self.life.lost.append(exc)


@pytest.fixture
def life() -> Lifecycle:
    return Lifecycle()


# ---------------------------------------------------------------- the example servers


def test_echo_returns_every_frame_byte_identical_to_many_clients(serve: ServerStarter) -> None:
    server = serve(factory("echo"))
    clients = [connect(server) for _ in range(20)]
    try:
        expected = {}
        for n, sock in enumerate(clients):
            payload = b"".join(b"client %d line %d\r\n" % (n, i) for i in range(200))
            sock.sendall(payload)
            expected[sock] = payload
        for sock, payload in expected.items():
            assert recv_exactly(sock, len(payload)) == payload
    finally:
        for sock in clients:
            sock.close()


def test_echo_frames_cut_at_every_point_come_back_whole(serve: ServerStarter) -> None:
    server = serve(factory("echo"))
    frame = b"cut me anywhere\r\n"
    with connect(server) as sock:
        for point in range(1, len(frame)):
            sock.sendall(frame[:point])
            time.sleep(0.001)  # let the first part travel alone; the result must not depend on it
            sock.sendall(frame[point:])
            assert recv_exactly(sock, len(frame)) == frame


def test_http_get_is_answered_and_closed(serve: ServerStarter) -> None:
    server = serve(factory("http"))
    with connect(server) as sock:
        sock.sendall(b"GET /hello HTTP/1.0\r\nHost: x\r\n\r\n")
        reply = recv_until_eof(sock)
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\nsanschat: GET /hello\n")


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_http_post_switches_to_a_length_terminator_mid_connection(
    serve: ServerStarter, size: int
) -> None:
    server = serve(factory("http"))
    body = b"line one\r\nline two\r\n" * 3
    request = b"POST /echo HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with connect(server) as sock:
        for i in range(0, len(request), size):
            sock.sendall(request[i : i + size])
        reply = recv_until_eof(sock)
    head, _, echoed = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK")
    assert b"Content-Length: %d" % len(body) in head
    assert echoed == body


def _http_client_status(
    server: BackgroundServer, method: str, headers: dict[str, str], body: bytes
) -> tuple[int, str, bytes]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request(method, "/", body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.reason, response.read()
    finally:
        conn.close()


def test_http_answers_431_to_http_client_for_a_header_line_over_the_limit(
    serve: ServerStarter,
) -> None:
    server = serve(factory("http"))
    status, reason, body = _http_client_status(server, "GET", {"X-Big": "b" * 70_000}, b"")
    assert (status, reason, body) == (431, "Request Header Fields Too Large",
                                      b"header line too long\n")


def test_http_answers_413_to_http_client_for_a_body_over_the_limit(serve: ServerStarter) -> None:
    server = serve(factory("http"))
    status, reason, _ = _http_client_status(server, "POST", {}, b"p" * (3 * 1024 * 1024))
    assert (status, reason) == (413, "Content Too Large")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_http_answers_431_to_curl(serve: ServerStarter) -> None:
    server = serve(factory("http"))
    host, port = server.address
    result = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "X-Big: " + "c" * 70_000,
         f"http://{host}:{port}/"],
        capture_output=True, timeout=TIMEOUT, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"header line too long\n\n431")


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_http_refuses_each_bad_request_over_a_socket_with_its_status(
    serve: ServerStarter, name: str
) -> None:
    request, status = BAD_REQUESTS[name]
    server = serve(factory("http"))
    with connect(server) as sock:
        sock.sendall(request)
        reply = recv_until_eof(sock)
    assert reply.startswith(b"HTTP/1.0 " + status + b" "), reply[:60]


def test_http_client_with_chunked_or_duplicate_lengths_is_refused(serve: ServerStarter) -> None:
    server = serve(factory("http"))
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/", body=iter([b"abc"]), encode_chunked=True)
        assert conn.getresponse().status == 501
    finally:
        conn.close()
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.putrequest("POST", "/")
        conn.putheader("Content-Length", "3")
        conn.putheader("Content-Length", "4")
        conn.endheaders(b"abcd")
        response = conn.getresponse()
        assert (response.status, response.read()) == (400, b"more than one Content-Length\n")
    finally:
        conn.close()


def test_chat_line_reaches_every_other_member_but_not_the_sender(serve: ServerStarter) -> None:
    room = ChatRoom()
    server = serve(lambda: ChatMember(room))
    alice, bob, carol = (connect(server) for _ in range(3))
    try:
        wait_for(lambda: len(room.members) == 3, "three members in the room")
        alice.sendall(b"hello from alice\r\n")
        assert recv_exactly(bob, 18) == b"hello from alice\r\n"
        assert recv_exactly(carol, 18) == b"hello from alice\r\n"
        bob.sendall(b"hi\n")
        assert recv_exactly(alice, 4) == b"hi\r\n"
        assert recv_exactly(carol, 4) == b"hi\r\n"
        alice.settimeout(0.2)
        with pytest.raises(TimeoutError):
            alice.recv(1)
    finally:
        for sock in (alice, bob, carol):
            sock.close()


# ---------------------------------------------------------------- lifecycle and faults


class Recorder(Tracked):
    """`Tracked`, keeping every chunk the driver feeds it, as handed over."""

    def __init__(self, life: Lifecycle) -> None:
        super().__init__(life)
        self.fed: list[bytes | bytearray | memoryview] = []

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.fed.append(data)
        super().feed(data)


def test_fed_chunks_are_bytes_that_stay_valid_after_feed(
    serve: ServerStarter, life: Lifecycle
) -> None:
    # Reads reuse a buffer; what a chat is fed must not change under it once feed returns
    # (and bytes is what the core's hot path takes).
    server = serve(lambda: Recorder(life))
    sent = [b"read %d of a one-frame-per-read client\n" % i for i in range(20)]
    with connect(server) as sock:
        for line in sent:  # one at a time: each is its own read on the server
            sock.sendall(line)
            assert recv_exactly(sock, len(line)) == line
    wait_for(lambda: len(life.lost) == 1, "the connection to close")
    (chat,) = life.chats
    assert isinstance(chat, Recorder)
    assert {type(data) for data in chat.fed} == {bytes}
    assert b"".join(chat.fed) == b"".join(sent)


def test_half_close_flushes_queued_output_then_closes(serve: ServerStarter) -> None:
    server = serve(factory("echo"))
    payload = b"x" * 1000 + b"\r\n"
    with connect(server) as sock:
        sock.sendall(payload * 500)
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == payload * 500


def test_close_when_done_closes_after_the_last_byte(serve: ServerStarter) -> None:
    server = serve(factory("http"))
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = recv_until_eof(sock)
    assert reply.endswith(b"sanschat: GET /\n")


def test_connection_lost_is_called_once_per_connection(
    serve: ServerStarter, life: Lifecycle
) -> None:
    server = serve(lambda: Tracked(life))
    for _ in range(5):
        with connect(server) as sock:
            sock.sendall(b"ping\n")
            assert recv_exactly(sock, 5) == b"ping\n"
    wait_for(lambda: len(life.lost) == 5, "five connection_lost calls")
    assert life.made == 5


class Remembered(Chat):
    """Echo that leaves a weak reference to itself, and says when its connection is lost."""

    terminator = b"\n"

    def __init__(self, refs: list[weakref.ref[Chat]], lost: threading.Event) -> None:
        super().__init__()
        self.refs, self.lost = refs, lost

    def connection_made(self) -> None:
        self.refs.append(weakref.ref(self))

    def found_frame(self, frame: bytes) -> None:
        self.push(frame + b"\n")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set()


def test_a_closed_connections_chat_is_freed_without_the_garbage_collector(
    serve: ServerStarter,
) -> None:
    # No reference cycle through the chat, its channel, the driver's connection or its
    # guard may outlive the connection: a server churning through short connections would
    # otherwise hold every closed one (and its buffers) until a collection.
    refs: list[weakref.ref[Chat]] = []
    lost = threading.Event()
    server = serve(lambda: Remembered(refs, lost))
    gc.collect()
    gc.disable()
    try:
        for line in (b"one\n", b"two\n"):
            lost.clear()
            with connect(server) as sock:
                sock.sendall(line)
                assert recv_exactly(sock, len(line)) == line
            assert lost.wait(TIMEOUT)
            wait_for(lambda: refs[-1]() is None, "the closed connection's chat to be freed")
    finally:
        gc.enable()


def test_peer_reset_mid_frame_closes_only_that_connection(
    serve: ServerStarter, life: Lifecycle
) -> None:
    server = serve(lambda: Tracked(life))
    with connect(server) as healthy:
        victim = connect(server)
        victim.sendall(b"half a fra")
        victim.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        victim.close()  # RST
        wait_for(lambda: len(life.lost) == 1, "the reset connection to be lost")
        healthy.sendall(b"still here\n")
        assert recv_exactly(healthy, 11) == b"still here\n"


def test_handler_exception_closes_that_connection_logs_it_and_spares_others(
    serve: ServerStarter, life: Lifecycle, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(lambda: Tracked(life))
    with caplog.at_level(logging.ERROR, logger="sanschat"), connect(server) as healthy:
        with connect(server) as faulty:
            faulty.sendall(b"boom\n")
            assert recv_until_eof(faulty) == b""
        healthy.sendall(b"fine\n")
        assert recv_exactly(healthy, 5) == b"fine\n"
        wait_for(lambda: any("handler failed" in r.getMessage() or (
            r.exc_info and "handler failed" in str(r.exc_info[1])) for r in caplog.records),
            "the handler's exception to be logged")
    wait_for(lambda: any(isinstance(exc, RuntimeError) for exc in life.lost),
             "connection_lost with the handler's exception")


class Answering(Chat):
    """Echo with a 10-byte frame limit that answers the peer's error before it closes."""

    terminator = b"\r\n"
    max_frame_size = 10

    def found_frame(self, frame: bytes) -> None:
        self.push(frame + b"\r\n")

    def protocol_error(self, error: ProtocolError) -> None:
        self.push(b"ERR %s\r\n" % type(error).__name__.encode())


TWO_FRAMES = b"short\r\n" + b"x" * 100 + b"\r\n"
ANSWER = b"short\r\nERR FrameTooLarge\r\n"


def test_the_reply_before_a_frame_too_large_and_the_error_reply_arrive_for_every_cut(
    serve: ServerStarter, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(Answering)
    with caplog.at_level(logging.WARNING, logger="sanschat"):
        for point in range(len(TWO_FRAMES)):  # 0: one write; else two, cut at that byte
            with connect(server) as sock:
                sock.sendall(TWO_FRAMES[:point])
                time.sleep(0.001)  # let the first part travel alone
                sock.sendall(TWO_FRAMES[point:])
                assert recv_until_eof(sock) == ANSWER, f"cut at byte {point}"
    assert not caplog.records  # the peer's error is no error of the server's


def test_a_flood_past_the_limit_gets_the_error_reply_and_a_clean_end_not_a_reset(
    serve: ServerStarter,
) -> None:
    """The server stops framing long before the flood ends; it lingers, reading and
    dropping, so the client's send completes and the reply is not destroyed by a reset."""
    server = serve(Answering)
    with connect(server) as flooder:
        flooder.sendall(b"short\r\n" + b"y" * (4 * 1024 * 1024))  # never refused
        flooder.shutdown(socket.SHUT_WR)
        assert recv_until_eof(flooder) == ANSWER
    with connect(server) as other:
        other.sendall(b"ok\r\n")
        assert recv_exactly(other, 4) == b"ok\r\n"


def test_a_frame_over_the_default_limit_closes_gracefully_and_the_server_goes_on(
    serve: ServerStarter,
) -> None:
    server = serve(factory("echo"))
    with connect(server) as flooder:
        flooder.sendall(b"first\r\n" + b"y" * (MAX_FRAME_SIZE + 10))
        assert recv_until_eof(flooder) == b"first\r\n"  # the default: flush, then close
    with connect(server) as other:
        other.sendall(b"ok\r\n")
        assert recv_exactly(other, 4) == b"ok\r\n"


class Flood(Chat):
    """Pushes a large lazy producer at once and records how much of it was pulled."""

    terminator = b"\n"
    total = 32 * 1024 * 1024
    pulled: list[int]

    def connection_made(self) -> None:
        self.pulled = type(self).pulled
        self.push_with_producer(self._chunks())
        self.close_when_done()

    def _chunks(self) -> Iterator[bytes]:
        block = b"z" * 65536
        for _ in range(self.total // len(block)):
            self.pulled[0] += len(block)
            yield block

    def found_frame(self, frame: bytes) -> None:
        pass


def test_slow_reader_keeps_the_producer_from_being_read_ahead(serve: ServerStarter) -> None:
    flood = type("Flood", (Flood,), {"pulled": [0]})
    server = serve(flood)
    with connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        wait_for(lambda: flood.pulled[0] > 0, "the producer to be pulled")
        # Let the server fill the socket buffers, then see that it stops pulling.
        previous = -1
        while previous != flood.pulled[0]:
            previous = flood.pulled[0]
            time.sleep(0.2)
        assert flood.pulled[0] < 16 * 1024 * 1024, "the producer was read ahead"
        received = len(recv_until_eof(sock))
    assert received == Flood.total


class Idle(Chat):
    terminator = b"\n"
    idle_timeout = 0.3

    def found_frame(self, frame: bytes) -> None:
        self.push(frame + b"\n")


def test_idle_timeout_closes_a_silent_connection(serve: ServerStarter) -> None:
    server = serve(Idle)
    with connect(server) as sock:
        started = time.monotonic()
        assert recv_until_eof(sock) == b""
        assert time.monotonic() - started >= 0.25


def test_idle_timeout_spares_an_active_connection(serve: ServerStarter) -> None:
    server = serve(Idle)
    with connect(server) as sock:
        for _ in range(6):
            sock.sendall(b"tick\n")
            assert recv_exactly(sock, 5) == b"tick\n"
            time.sleep(0.1)


def test_push_threadsafe_from_another_thread_arrives_in_order(
    serve: ServerStarter, life: Lifecycle
) -> None:
    server = serve(lambda: Tracked(life))
    with connect(server) as sock:
        sock.sendall(b"hello\n")
        assert recv_exactly(sock, 6) == b"hello\n"
        chat = life.chats[0]

        def pusher() -> None:
            for i in range(1000):
                chat.push_threadsafe(b"%04d\n" % i)

        threads = [threading.Thread(target=pusher) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        data = recv_exactly(sock, 2 * 1000 * 5)
    lines = data.split(b"\n")[:-1]
    assert sorted(lines) == sorted([b"%04d" % i for i in range(1000)] * 2)
    for n in range(1000):  # each thread's own messages stay in order
        assert lines.count(b"%04d" % n) == 2


def test_stop_with_connections_open_closes_them_without_error_logs(
    serve: ServerStarter, life: Lifecycle, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(lambda: Tracked(life))
    clients = [connect(server) for _ in range(5)]
    try:
        for sock in clients:
            sock.sendall(b"hi\n")
            assert recv_exactly(sock, 3) == b"hi\n"
        with caplog.at_level(logging.WARNING, logger="sanschat"):
            server.stop()
        for sock in clients:
            with contextlib.suppress(ConnectionResetError):
                assert recv_until_eof(sock) == b""
        assert len(life.lost) == 5
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        for sock in clients:
            sock.close()
