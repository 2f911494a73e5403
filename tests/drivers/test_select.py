"""Tests of the select driver's own features, over real sockets on 127.0.0.1.

The behaviour every driver shares is in ``test_conformance.py``; here: more than 1024
sockets at once, timers, thread-safe wakeups, the client side (`Loop.connect`), partial
writes, backpressure, lazily re-armed idle timeouts, `Loop.close` and `serve`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import resource
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from netutil import TIMEOUT, recv_exactly, recv_until_eof, wait_for

from sanschat import Chat
from sanschat.drivers import HIGH_WATER, READ_SIZE, Limits
from sanschat.drivers import select as select_driver
from sanschat.drivers.select import Loop, serve, start_server
from sanschat.examples import Echo

POLLERS = ["epoll", "selectors"] if hasattr(select, "epoll") else ["selectors"]


@pytest.fixture(autouse=True, params=POLLERS)
def poller(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on each poller a `Loop` may use: epoll itself (Linux), and the
    portable `selectors.DefaultSelector` one used where there is no epoll."""
    name: str = request.param
    if name == "selectors":
        monkeypatch.setattr(select_driver, "_Poller", select_driver._SelectorPoller)
    loop = Loop()
    try:
        expected = select_driver._EpollPoller if name == "epoll" else select_driver._SelectorPoller
        assert type(loop._poller) is expected
    finally:
        loop.close()
    return name


@contextlib.contextmanager
def running(loop: Loop) -> Iterator[Loop]:
    """Run *loop* in a thread for the block; then stop it, join the thread, close the loop."""
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.stop()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the loop did not stop"
        loop.close()


def run_bounded(loop: Loop) -> None:
    """Run *loop* in this thread until something stops it, failing after TIMEOUT."""
    watchdog = loop.call_later(TIMEOUT, loop.stop)
    started = time.monotonic()
    loop.run()
    watchdog.cancel()
    assert time.monotonic() - started < TIMEOUT, "the loop was stopped by the watchdog"


def client(address: tuple[str, int], rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(TIMEOUT)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(address)
    return sock


class Recorder(Echo):
    """Echo that hands itself to a queue when connected."""

    made: queue.Queue[Recorder]

    def connection_made(self) -> None:
        self.made.put(self)


def recorder() -> type[Recorder]:
    return type("Recorder", (Recorder,), {"made": queue.Queue()})


# ---------------------------------------------------------------- many sockets


def test_holds_more_than_1024_sockets_at_once() -> None:
    count = 1200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 100  # both ends live in this process
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    loop = Loop()
    listener = loop.listen(Echo, backlog=count, limits=Limits(max_connections=None))
    clients: list[socket.socket] = []
    try:
        with running(loop):
            for _ in range(count):
                clients.append(client(listener.address))
            assert max(sock.fileno() for sock in clients) > 1024  # past select()'s FD_SETSIZE
            for i, sock in enumerate(clients):
                sock.sendall(b"%d\r\n" % i)
            for i, sock in enumerate(clients):
                assert recv_exactly(sock, len(b"%d\r\n" % i)) == b"%d\r\n" % i
    finally:
        for sock in clients:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---------------------------------------------------------------- timers and wakeups


def test_call_later_runs_in_time_order_and_skips_cancelled_timers() -> None:
    loop = Loop()
    order: list[str] = []
    loop.call_later(0.06, lambda: order.append("third"))
    loop.call_later(0.02, lambda: order.append("first"))
    cancelled = loop.call_later(0.03, lambda: order.append("cancelled"))
    loop.call_later(0.04, lambda: order.append("second"))
    loop.call_later(0.0, lambda: order.append("now"))
    loop.call_later(0.08, loop.stop)
    cancelled.cancel()
    cancelled.cancel()  # harmless twice
    try:
        run_bounded(loop)
    finally:
        loop.close()
    assert order == ["now", "first", "second", "third"]


def test_call_later_waits_at_least_its_delay() -> None:
    loop = Loop()
    fired: list[float] = []
    started = time.monotonic()

    def fire() -> None:
        fired.append(time.monotonic())
        loop.stop()

    loop.call_later(0.1, fire)
    try:
        run_bounded(loop)
    finally:
        loop.close()
    assert fired[0] - started >= 0.1


def test_cancelled_timers_do_not_pile_up() -> None:
    loop = Loop()
    try:
        for _ in range(5000):
            loop.call_later(3600, lambda: None).cancel()
        assert len(loop._timers) <= 600
    finally:
        loop.close()


def test_timer_exception_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    loop = Loop()

    def boom() -> None:
        raise RuntimeError("timer failed on purpose")

    loop.call_later(0.0, boom)
    loop.call_later(0.01, loop.stop)
    try:
        with caplog.at_level(logging.ERROR, logger="sanschat"):
            run_bounded(loop)
    finally:
        loop.close()
    assert any(r.exc_info and "on purpose" in str(r.exc_info[1]) for r in caplog.records)


def test_call_soon_threadsafe_wakes_a_loop_blocked_in_select() -> None:
    loop = Loop()  # no timers and no sockets: run() blocks in select() with no timeout
    with running(loop):
        for _ in range(3):
            woken = threading.Event()
            loop.call_soon_threadsafe(woken.set)
            assert woken.wait(TIMEOUT)


def test_stop_before_run_makes_run_return_at_once() -> None:
    loop = Loop()
    loop.stop()
    try:
        run_bounded(loop)
        loop.call_later(0.0, loop.stop)
        run_bounded(loop)  # the earlier stop() was used up
    finally:
        loop.close()


def test_push_threadsafe_of_1000_messages_arrives_in_order() -> None:
    kind = recorder()
    server = start_server(kind)
    try:
        with client(server.address) as sock:
            chat = kind.made.get(timeout=TIMEOUT)

            def pusher() -> None:
                for i in range(1000):
                    chat.push_threadsafe(b"%04d\r\n" % i)

            thread = threading.Thread(target=pusher)
            thread.start()
            data = recv_exactly(sock, 1000 * 6)
            thread.join(TIMEOUT)
        assert data == b"".join(b"%04d\r\n" % i for i in range(1000))
    finally:
        server.stop()


# ---------------------------------------------------------------- the client side


class Client(Chat):
    """Sends lines on connect, counts the echoes, closes when all came back."""

    terminator = b"\r\n"

    def __init__(self, loop: Loop, lines: int) -> None:
        super().__init__()
        self.loop = loop
        self.lines = lines
        self.received: list[bytes] = []
        self.made = False
        self.lost: list[BaseException | None] = []

    def connection_made(self) -> None:
        self.made = True
        for i in range(self.lines):
            self.push(b"line %d\r\n" % i)

    def found_frame(self, frame: bytes) -> None:
        self.received.append(frame)
        if len(self.received) == self.lines:
            self.close_when_done()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)
        self.loop.stop()


def test_connect_runs_a_client_chat_against_the_loops_own_listener() -> None:
    loop = Loop()
    listener = loop.listen(Echo)
    chat = Client(loop, 500)
    loop.connect(chat, *listener.address)
    try:
        run_bounded(loop)
    finally:
        loop.close()
    assert chat.received == [b"line %d" % i for i in range(500)]
    assert chat.lost == [None]


def test_connect_to_a_plain_blocking_server() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server_sock:
        server_sock.settimeout(TIMEOUT)

        def plain_echo() -> None:
            conn, _ = server_sock.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                while data := conn.recv(65536):
                    conn.sendall(data)

        thread = threading.Thread(target=plain_echo)
        thread.start()
        loop = Loop()
        chat = Client(loop, 100)
        loop.connect(chat, *server_sock.getsockname())
        try:
            run_bounded(loop)
        finally:
            loop.close()
        thread.join(TIMEOUT)
    assert len(chat.received) == 100
    assert chat.peername is None  # detached
    assert chat.lost == [None]


def test_connection_refused_detaches_the_chat_with_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as bound:  # bound but not listening: connecting is refused
        bound.bind(("127.0.0.1", 0))
        loop = Loop()
        chat = Client(loop, 1)
        try:
            with caplog.at_level(logging.INFO, logger="sanschat"):
                loop.connect(chat, *bound.getsockname())
                run_bounded(loop)
        finally:
            loop.close()
    assert not chat.made
    assert len(chat.lost) == 1
    assert isinstance(chat.lost[0], ConnectionRefusedError)
    assert not caplog.records


# ---------------------------------------------------------------- writes and backpressure


class Blob(Chat):
    """Sends BLOB through a tiny send buffer, then closes."""

    BLOB = bytes(range(256)) * (4 * 4096)  # 4 MiB, every offset identifiable mod 256
    chats: queue.Queue[Blob]

    def connection_made(self) -> None:
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.push(self.BLOB[: len(self.BLOB) // 2])
        self.push_with_producer(
            self.BLOB[i : i + 100_000] for i in range(len(self.BLOB) // 2, len(self.BLOB), 100_000)
        )
        self.close_when_done()
        self.chats.put(self)


def test_partial_writes_deliver_every_byte_in_order_to_a_slow_reader() -> None:
    kind: type[Blob] = type("Blob", (Blob,), {"chats": queue.Queue()})
    server = start_server(kind)
    try:
        with client(server.address, rcvbuf=4096) as sock:
            chat = kind.chats.get(timeout=TIMEOUT)
            wait_for(lambda: chat.channel.buffered_output > 0, "the first partial write")
            received = bytearray()
            while data := sock.recv(1024):  # slow: small reads
                received += data
        assert len(received) == len(Blob.BLOB)
        assert received == Blob.BLOB
    finally:
        server.stop()


def test_a_client_that_never_reads_stops_being_read_until_it_drains() -> None:
    kind = recorder()
    server = start_server(kind)
    line = b"0123456789abcd\r\n"
    burst = line * 4096  # 64 KiB
    sent = 0
    try:
        with client(server.address) as sock:
            chat = kind.made.get(timeout=TIMEOUT)
            sock.setblocking(False)
            while True:  # flood until the server has not taken anything for a while
                _, writable, _ = select.select([], [sock], [], 0.5)
                if not writable:
                    break
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(burst[sent % len(burst) :])
                assert sent < 512 * 1024 * 1024, "the server never stopped reading"
            wait_for(lambda: chat.channel.buffered_output > HIGH_WATER, "reading to stop")
            assert chat.channel.buffered_output <= HIGH_WATER + READ_SIZE  # one read past it
            sock.setblocking(True)
            sock.settimeout(TIMEOUT)
            received = 0
            while received < sent:  # draining resumes reading: every echo comes back
                data = sock.recv(1 << 20)
                assert data
                received += len(data)
            assert received == sent
    finally:
        server.stop()


# ---------------------------------------------------------------- idle timeouts


class Idle(Echo):
    idle_timeout = 0.2


class Pinger(Echo):
    """Answers silence with a ping instead of closing."""

    idle_timeout = 0.05

    def idle(self) -> None:
        self.push(b"ping\r\n")


def test_idle_timeout_closes_an_idle_connection() -> None:
    server = start_server(Idle)
    try:
        with client(server.address) as sock:
            started = time.monotonic()
            assert recv_until_eof(sock) == b""
            assert time.monotonic() - started >= 0.15
    finally:
        server.stop()


def test_idle_timeout_spares_an_active_connection_without_a_timer_per_read() -> None:
    server = start_server(Idle)
    try:
        with client(server.address) as sock:
            started = time.monotonic()
            while time.monotonic() - started < 0.8:  # four times the timeout
                sock.sendall(b"tick\r\n")
                assert recv_exactly(sock, 6) == b"tick\r\n"
                time.sleep(0.02)  # pacing the client, not waiting for the server
            assert len(server.loop._timers) <= 2  # re-armed when it fires, not per read
            assert recv_until_eof(sock) == b""  # and once silent, it is closed
    finally:
        server.stop()


def test_idle_hook_may_keep_the_connection_and_fires_again() -> None:
    server = start_server(Pinger)
    try:
        with client(server.address) as sock:
            assert recv_exactly(sock, 18) == b"ping\r\n" * 3
    finally:
        server.stop()


# ---------------------------------------------------------------- errors and shutdown


class FailsOnConnect(Echo):
    def connection_made(self) -> None:
        raise RuntimeError("connection_made failed on purpose")


def test_connection_made_error_closes_that_connection_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server(FailsOnConnect)
    try:
        with caplog.at_level(logging.ERROR, logger="sanschat"), client(server.address) as sock:
            with contextlib.suppress(ConnectionResetError):
                assert recv_until_eof(sock) == b""
            wait_for(lambda: bool(caplog.records), "the error to be logged")
        record = caplog.records[0]
        assert record.exc_info and "on purpose" in str(record.exc_info[1])
        assert "127.0.0.1" in record.getMessage()
    finally:
        server.stop()


def test_factory_error_is_logged_and_the_listener_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def flaky() -> Chat:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("factory failed on purpose")
        return Echo()

    server = start_server(flaky)
    try:
        with caplog.at_level(logging.ERROR, logger="sanschat"):
            with client(server.address) as sock, contextlib.suppress(ConnectionResetError):
                assert recv_until_eof(sock) == b""
            with client(server.address) as sock:
                sock.sendall(b"ok\r\n")
                assert recv_exactly(sock, 4) == b"ok\r\n"
        assert any("on purpose" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    finally:
        server.stop()


def test_close_detaches_every_chat_and_closes_every_socket() -> None:
    lost: list[BaseException | None] = []

    class Tracked(Echo):
        def connection_lost(self, exc: BaseException | None) -> None:
            lost.append(exc)

    loop = Loop()
    listener = loop.listen(Tracked)
    socks = [client(listener.address) for _ in range(3)]
    try:
        while len(loop._conns) < 3:
            loop.run_once(TIMEOUT)
        loop.close()
        loop.close()  # harmless twice
        assert lost == [None, None, None]
        for sock in socks:
            with contextlib.suppress(ConnectionResetError):
                assert recv_until_eof(sock) == b""
        with pytest.raises(RuntimeError):
            loop.run_once(0)
    finally:
        for sock in socks:
            sock.close()


def test_start_server_stop_is_idempotent_and_frees_the_thread() -> None:
    server = start_server(Echo)
    with client(server.address) as sock:
        sock.sendall(b"x\r\n")
        assert recv_exactly(sock, 3) == b"x\r\n"
        server.stop()
        server.stop()
        assert recv_until_eof(sock) == b""
    assert not server._thread.is_alive()


def test_serve_runs_until_interrupted_then_closes_its_connections() -> None:
    main = threading.get_ident()
    seen: list[bytes] = []

    def talk(address: tuple[str, int]) -> None:
        try:
            with client(address) as sock:
                sock.sendall(b"hello\r\n")
                seen.append(recv_exactly(sock, 7))
                holder.append(sock.dup())  # still open when the server is interrupted
        finally:
            signal.pthread_kill(main, signal.SIGINT)

    holder: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def on_listening(address: tuple[str, int]) -> None:
        threads.append(threading.Thread(target=talk, args=(address,)))
        threads[0].start()

    try:
        with pytest.raises(KeyboardInterrupt):
            serve(Echo, on_listening=on_listening)
        threads[0].join(TIMEOUT)
        assert seen == [b"hello\r\n"]
        assert recv_until_eof(holder[0]) == b""
    finally:
        for sock in holder:
            sock.close()
