"""Server-wide limits (`sanschat.drivers.Limits`): the same behaviour on every driver.

Each test runs a server with small limits over real sockets on 127.0.0.1 and checks one
limit: the connection count, the idle, frame and send timeouts, the high water, the
graceful stop; then the pieces without sockets (validation, the worst case, the
rate-limited log, the command line's options).  Timeouts are a few tenths of a second;
no test asserts how long anything took.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from netutil import TIMEOUT, connect, recv_exactly, recv_until_eof, wait_for

import sanschat.drivers as drivers
from sanschat import Chat
from sanschat.__main__ import _limits, _parser, main
from sanschat.drivers import READ_SIZE, BackgroundServer, Limits, apply_high_water, start_server
from sanschat.examples import MAX_FRAME_SIZE, Echo

Start = Callable[..., BackgroundServer]


@pytest.fixture
def serve_limited(driver: str) -> Iterator[Start]:
    """Start servers on the current driver with ``Limits(**kwargs)``; all stopped after."""
    started: list[BackgroundServer] = []

    def start(factory: Callable[[], Chat], **limits: Any) -> BackgroundServer:
        server = start_server(driver, factory, limits=Limits(**limits))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Chats:
    """A factory that keeps the chats it made, and whether each connection was lost."""

    def __init__(self, cls: type[Chat]) -> None:
        self.cls = cls
        self.made: list[Chat] = []
        self.lost: list[Chat] = []

    def __call__(self) -> Chat:
        chat = self.cls()
        original = chat.connection_lost

        def lost(exc: BaseException | None) -> None:
            self.lost.append(chat)
            original(exc)

        chat.connection_lost = lost  # type: ignore[method-assign]
        self.made.append(chat)
        return chat


def roundtrip(sock: socket.socket, line: bytes = b"ping\r\n") -> None:
    sock.sendall(line)
    assert recv_exactly(sock, len(line)) == line


def unanswered(sock: socket.socket, wait: float = 0.3) -> bool:
    """True if nothing arrives on *sock* within *wait* seconds (and it is not closed)."""
    sock.settimeout(wait)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(TIMEOUT)
    return False



# ---------------------------------------------------------------- max_connections


def test_past_max_connections_a_client_waits_and_is_served_once_one_closes(
    serve_limited: Start, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve_limited(Echo, max_connections=2)
    first, second = connect(server), connect(server)
    roundtrip(first)
    roundtrip(second)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="sanschat"):
        waiting = [connect(server) for _ in range(3)]  # the kernel's backlog holds them
        for sock in waiting:
            sock.sendall(b"let me in\r\n")
        assert all(unanswered(sock) for sock in waiting)
        roundtrip(second)  # the two admitted ones are served as before
        first.close()
        with selectors.DefaultSelector() as sel:
            for sock in waiting:
                sel.register(sock, selectors.EVENT_READ)
            ready = [key.fileobj for key, _ in sel.select(TIMEOUT)]
        assert len(ready) == 1  # one closed, so one more is admitted
        admitted = ready[0]
        assert isinstance(admitted, socket.socket)
        assert recv_exactly(admitted, 11) == b"let me in\r\n"
        assert all(unanswered(sock, 0.1) for sock in waiting if sock is not admitted)
    lines = [r for r in caplog.records if "max_connections" in r.getMessage()]
    assert len(lines) <= 1 + int(time.monotonic() - started)  # one a second at most
    for sock in [second, *waiting]:
        sock.close()


# ---------------------------------------------------------------- timeouts


class Patient(Echo):
    idle_timeout = None  # the class's own setting replaces the server's


def test_server_idle_timeout_closes_a_silent_client_unless_its_class_sets_its_own(
    serve_limited: Start,
) -> None:
    limited = serve_limited(Echo, idle_timeout=0.3)
    patient = serve_limited(Patient, idle_timeout=0.3)
    silent, kept, talker = connect(limited), connect(patient), connect(limited)
    deadline = time.monotonic() + TIMEOUT
    silent.setblocking(False)
    while time.monotonic() < deadline:  # the talker keeps itself alive past the timeout
        roundtrip(talker)
        time.sleep(0.05)
        try:
            if silent.recv(1) == b"":
                break
        except BlockingIOError:
            continue
    else:
        pytest.fail("the silent client was never closed")
    roundtrip(talker)
    roundtrip(kept)
    for sock in (silent, kept, talker):
        sock.close()


def test_frame_timeout_closes_a_slowloris_and_spares_a_client_that_ends_frames(
    serve_limited: Start,
) -> None:
    server = serve_limited(Echo, frame_timeout=0.4, idle_timeout=None)
    loris, steady = connect(server), connect(server)
    loris.sendall(b"GET / HTTP/1.1\r\nHost: x")  # one frame ends; the next never does
    assert recv_exactly(loris, 16) == b"GET / HTTP/1.1\r\n"
    loris.setblocking(False)
    deadline = time.monotonic() + TIMEOUT
    frames = 0
    closed = False
    while not closed and time.monotonic() < deadline:
        try:
            loris.send(b"x")  # a byte now and then: never idle, never a frame
            closed = loris.recv(1) == b""
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        steady.sendall(b"half of ")  # frames that take two writes each, always ending
        time.sleep(0.03)
        steady.sendall(b"a frame %d\r\n" % frames)
        expected = b"half of a frame %d\r\n" % frames
        assert recv_exactly(steady, len(expected)) == expected
        frames += 1
    assert closed, "the slowloris connection was never closed"
    roundtrip(steady)  # the steady one went on past several timeouts
    assert frames >= 5
    loris.close()
    steady.close()


class Flood(Chat):
    """Pushes 64 MiB at once, pulled only as the socket takes it."""

    terminator = b"\r\n"

    def connection_made(self) -> None:
        self.push_with_producer(b"x" * 65536 for _ in range(1024))


def test_send_timeout_closes_a_peer_that_stopped_reading_but_not_a_slow_reader(
    serve_limited: Start,
) -> None:
    chats = Chats(Flood)
    server = serve_limited(chats, send_timeout=1.0, idle_timeout=None)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.settimeout(TIMEOUT)
    stuck.connect(server.address)
    wait_for(lambda: len(chats.made) == 1, "the first connection")
    slow = connect(server)
    wait_for(lambda: len(chats.made) == 2, "the second connection")
    stuck_chat, slow_chat = chats.made
    deadline = time.monotonic() + TIMEOUT
    read = 0
    while stuck_chat not in chats.lost and time.monotonic() < deadline:
        read += len(slow.recv(65536))  # a little at a time, but always making progress
        time.sleep(0.01)
    assert stuck_chat in chats.lost, "the peer that never reads was never closed"
    assert slow_chat not in chats.lost
    assert read > 0
    stuck.close()
    slow.close()


# ---------------------------------------------------------------- memory: the high water


class Big(Echo):
    high_water = 2 * 1024 * 1024  # the class's own high water replaces the server's


def _flood_without_reading(sock: socket.socket, total: int) -> int:
    """Send frames without reading replies until *total* bytes or the server stops taking
    them; return the bytes sent."""
    line = b"y" * 1022 + b"\r\n"
    sock.setblocking(False)
    sent, idle_since = 0, time.monotonic()
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_WRITE)
        while sent < total and time.monotonic() - idle_since < 0.5:
            if sel.select(0.1):
                try:
                    sent += sock.send(line * 64)
                    idle_since = time.monotonic()
                except BlockingIOError:
                    pass
    return sent


@pytest.mark.parametrize("cls", [Echo, Big], ids=["server-high-water", "class-high-water"])
def test_output_queued_for_a_non_reader_stops_at_the_high_water_in_force(
    serve_limited: Start, cls: type[Chat]
) -> None:
    chats = Chats(cls)
    limit = 64 * 1024
    server = serve_limited(chats, high_water=limit)
    sock = connect(server)
    wait_for(lambda: len(chats.made) == 1, "the connection")
    chat = chats.made[0]
    assert apply_high_water(chat, Limits(high_water=limit)) == (
        limit if cls is Echo else Big.high_water)
    _flood_without_reading(sock, 32 * 1024 * 1024)
    queued = chat.channel.buffered_output
    if cls is Echo:
        assert 0 < queued <= limit + READ_SIZE  # at most one read past it
    else:
        assert queued > limit + READ_SIZE  # its own, larger, high water applies
        assert queued <= Big.high_water + READ_SIZE
    sock.close()


# ---------------------------------------------------------------- the graceful stop


REPLY = 32 * 1024 * 1024


class Bulk(Echo):
    """Answers any frame with 32 MiB: more than the kernel's buffers hold."""

    def found_frame(self, frame: bytes) -> None:
        self.push(b"z" * REPLY)


def test_a_stop_with_grace_sends_what_was_queued_then_closes(driver: str) -> None:
    chats = Chats(Bulk)
    server = start_server(driver, chats)
    sock = connect(server)
    sock.sendall(b"go\r\n")
    wait_for(lambda: chats.made and chats.made[0].channel.buffered_output > 0, "the reply")
    stopper = threading.Thread(target=server.stop, kwargs={"timeout": TIMEOUT, "grace": 5.0})
    stopper.start()
    data = recv_until_eof(sock)  # everything, then end of stream
    sock.close()  # which ends the server's linger
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    assert data == b"z" * REPLY
    assert chats.lost == chats.made
    sock.close()


def test_a_stop_with_grace_aborts_what_is_still_open_when_the_grace_ends(driver: str) -> None:
    chats = Chats(Bulk)
    server = start_server(driver, chats)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(server.address)
    sock.sendall(b"go\r\n")  # then never reads: its reply can never be sent
    wait_for(lambda: chats.made and chats.made[0].channel.buffered_output > 0, "the reply")
    server.stop(TIMEOUT, grace=0.3)  # returns (no TimeoutError): the rest was aborted
    assert chats.lost == chats.made
    data = b""
    with pytest.raises(ConnectionResetError):  # aborted, so the peer sees a reset
        while chunk := sock.recv(65536):
            data += chunk
    assert len(data) < REPLY
    sock.close()


# ---------------------------------------------------------------- without sockets


@pytest.mark.parametrize(("field", "value"), [
    ("max_connections", 0), ("max_connections", -1), ("max_connections", 1.5),
    ("max_connections", True), ("high_water", 0), ("high_water", None),
    ("idle_timeout", 0), ("frame_timeout", -1.0), ("send_timeout", "60"),
    ("shutdown_grace", -0.1), ("shutdown_grace", None),
])
def test_limits_refuse_a_bad_value_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})


def test_the_defaults_keep_the_worst_case_within_the_documented_budget() -> None:
    limits = Limits()
    assert limits.worst_case(MAX_FRAME_SIZE) <= 1.6 * 1024**3
    small = Limits(max_connections=100, high_water=256 * 1024)
    assert small.worst_case(MAX_FRAME_SIZE) == 100 * (
        256 * 1024 + 2 * READ_SIZE + MAX_FRAME_SIZE + drivers.CONNECTION_OVERHEAD) + READ_SIZE
    with pytest.raises(ValueError, match="max_connections"):
        Limits(max_connections=None).worst_case(MAX_FRAME_SIZE)


def test_the_sweep_runs_four_times_per_shortest_timeout_at_most_once_a_second() -> None:
    assert Limits().sweep_interval == 1.0
    assert Limits(frame_timeout=0.4).sweep_interval == pytest.approx(0.1)
    assert Limits(idle_timeout=None, frame_timeout=None, send_timeout=None).sweep_interval is None


def test_log_limited_logs_one_line_per_interval_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(drivers, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.INFO, logger="sanschat"):
        assert drivers.log_limited("test kind", logging.INFO, "line %d", 1)
        assert not drivers.log_limited("test kind", logging.INFO, "line %d", 2)
        assert not drivers.log_limited("test kind", logging.INFO, "line %d", 3)
        assert drivers.log_limited("other kind", logging.INFO, "other")  # kinds apart
        clock[0] += 1.5
        assert drivers.log_limited("test kind", logging.INFO, "line %d", 4)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "line 1"
    assert messages[1] == "other"
    assert messages[2].startswith("line 4 (2 more like it")


def test_high_water_of_prefers_the_class_then_the_server_then_the_default() -> None:
    assert apply_high_water(Echo(), None) == drivers.HIGH_WATER
    assert apply_high_water(Echo(), Limits(high_water=1000)) == 1000
    assert apply_high_water(Big(), Limits(high_water=1000)) == Big.high_water


def test_serve_options_become_limits_and_zero_turns_one_off() -> None:
    args = _parser()[0].parse_args(["serve", "echo", "--max-connections", "0", "--idle-timeout",
                                 "0", "--frame-timeout", "2.5", "--high-water", "4096"])
    limits = _limits(args)
    assert limits.max_connections is None and limits.idle_timeout is None
    assert limits.frame_timeout == 2.5 and limits.high_water == 4096
    assert limits.send_timeout == Limits().send_timeout
    assert _limits(_parser()[0].parse_args(["serve", "echo"])) == Limits()


def test_serve_refuses_a_bad_limit_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "echo", "--high-water", "0"])
    assert exit_.value.code == 2
    assert "high_water" in capsys.readouterr().err
