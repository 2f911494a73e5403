"""Listening on every driver: TLS (`start_server(..., ssl_context=...)`), IPv6, the backlog and
the checks of `start_server`'s arguments, over real loopback sockets.

The select driver does TLS itself (a non-blocking ``ssl.SSLSocket``), so it has tests of its
own for what the other two get from their libraries: a handshake that waits, a send that the
socket cannot take at once, decrypted bytes left inside the ``ssl`` object, and no busy loop
while the peer is silent.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator

import pytest
from netutil import TIMEOUT, wait_for

from sanschat import Chat
from sanschat.drivers import BackgroundServer, format_address, start_server
from sanschat.drivers.select import ServerThread
from sanschat.examples import Echo

trustme = pytest.importorskip("trustme")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


HOSTS = [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not _has_ipv6_loopback(),
                                                  reason="no IPv6 loopback here")),
]


@pytest.fixture(scope="module")
def ca() -> object:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "::1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def servers() -> Iterator[list[BackgroundServer]]:
    started: list[BackgroundServer] = []
    yield started
    for server in started:
        server.stop()


def _tls_client(server: BackgroundServer, context: ssl.SSLContext, host: str,
                **kwargs: bool) -> ssl.SSLSocket:
    raw = socket.create_connection(server.address[:2], timeout=TIMEOUT)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return context.wrap_socket(raw, server_hostname=host, **kwargs)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(65536, size - len(data)))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


class Blob(Chat):
    """Sends SIZE pseudo-random bytes as soon as it is connected, then closes."""

    SIZE = 8 * 1024 * 1024

    def connection_made(self) -> None:
        self.push_with_producer(_blob_chunks(self.SIZE))
        self.close_when_done()


def _blob_chunks(size: int) -> Iterator[bytes]:
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
    for start in range(0, size, len(block)):
        yield block[: size - start]


def _blob_digest(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in _blob_chunks(size):
        digest.update(chunk)
    return digest.hexdigest()


class Bye(Chat):
    """Answers ``bye`` to the first line, then closes gracefully."""

    terminator = b"\n"

    def found_frame(self, frame: bytes) -> None:
        self.push(b"bye\n")
        self.close_when_done()


@pytest.mark.parametrize("host", HOSTS)
def test_tls_echo_on_every_driver_and_family(
    servers: list[BackgroundServer], driver: str, host: str,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext,
) -> None:
    server = start_server(driver, Echo, host, 0, ssl_context=server_context)
    servers.append(server)
    assert server.address[0] == host
    with _tls_client(server, client_context, host) as sock:
        sock.sendall(b"over tls\r\nand again\r\n")
        assert _recv_exactly(sock, 21) == b"over tls\r\nand again\r\n"
        assert sock.version() in ("TLSv1.2", "TLSv1.3")


class TLSVersion(Chat):
    """Tells the peer which TLS version its connection has, from the transport's extra info."""

    def connection_made(self) -> None:
        self.push(self.transport.get_extra_info("ssl_object").version().encode() + b"\n")
        self.close_when_done()


@pytest.mark.parametrize("chosen", ["select", "asyncio"])  # trio's SSLStream hides it
def test_tls_the_ssl_object_is_in_the_extra_info(
    servers: list[BackgroundServer], chosen: str,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext,
) -> None:
    server = start_server(chosen, TLSVersion, ssl_context=server_context)
    servers.append(server)
    with _tls_client(server, client_context, "127.0.0.1") as sock:
        assert sock.recv(100) == sock.version().encode() + b"\n"


@pytest.mark.parametrize("host", HOSTS)
def test_plain_ipv4_and_ipv6_on_every_driver(
    servers: list[BackgroundServer], driver: str, host: str
) -> None:
    server = start_server(driver, Echo, host, 0)
    servers.append(server)
    assert format_address(server.address).startswith("[::1]:" if host == "::1" else "127.0.0.1:")
    with socket.create_connection(server.address[:2], timeout=TIMEOUT) as sock:
        sock.sendall(b"plain\r\n")
        assert _recv_exactly(sock, 7) == b"plain\r\n"


def test_tls_a_large_reply_to_a_slow_reader_arrives_intact(
    servers: list[BackgroundServer], driver: str,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext,
) -> None:
    server = start_server(driver, Blob, ssl_context=server_context)
    servers.append(server)
    received = hashlib.sha256()
    total = 0
    with _tls_client(server, client_context, "127.0.0.1") as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # so that sends block
        while chunk := sock.recv(1000):  # small reads: the server meets a full socket often
            received.update(chunk)
            total += len(chunk)
    assert total == Blob.SIZE
    assert received.hexdigest() == _blob_digest(Blob.SIZE)


def test_tls_a_large_request_echoed_while_sending(
    servers: list[BackgroundServer], driver: str,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext,
) -> None:
    server = start_server(driver, Echo, ssl_context=server_context)
    servers.append(server)
    request = b"".join(b"%07d %s\r\n" % (i, b"x" * (i % 300)) for i in range(20000))
    with _tls_client(server, client_context, "127.0.0.1") as sock:
        sender = threading.Thread(target=sock.sendall, args=(request,), daemon=True)
        sender.start()
        reply = _recv_exactly(sock, len(request))
        sender.join(TIMEOUT)
    assert reply == request


def test_tls_graceful_close_sends_close_notify(
    servers: list[BackgroundServer], driver: str,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext,
) -> None:
    server = start_server(driver, Bye, ssl_context=server_context)
    servers.append(server)
    with _tls_client(server, client_context, "127.0.0.1", suppress_ragged_eofs=False) as sock:
        sock.sendall(b"quit\n")
        assert _recv_exactly(sock, 4) == b"bye\n"
        assert sock.recv(100) == b""  # without close_notify: SSLEOFError


def test_tls_a_plaintext_client_is_dropped_and_the_server_goes_on(
    servers: list[BackgroundServer], driver: str, caplog: pytest.LogCaptureFixture,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext,
) -> None:
    server = start_server(driver, Echo, ssl_context=server_context)
    servers.append(server)
    with caplog.at_level(logging.DEBUG, logger="sanschat"):
        with socket.create_connection(server.address, timeout=TIMEOUT) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                while plain.recv(100):  # closed (after a TLS alert at most), or reset
                    pass
        with _tls_client(server, client_context, "127.0.0.1") as sock:
            sock.sendall(b"still here\r\n")
            assert _recv_exactly(sock, 12) == b"still here\r\n"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("port", [-1, 65536, 99999])
def test_start_server_refuses_a_port_out_of_range(driver: str, port: int) -> None:
    with pytest.raises(ValueError, match=f"a port is 0-65535, not {port}"):
        start_server(driver, Echo, "127.0.0.1", port)


def test_start_server_refuses_a_backlog_below_1(driver: str) -> None:
    with pytest.raises(ValueError, match="a backlog is at least 1, not 0"):
        start_server(driver, Echo, backlog=0)


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read a backlog")
def test_start_server_listens_with_the_backlog_given(
    servers: list[BackgroundServer], driver: str
) -> None:
    server = start_server(driver, Echo, backlog=7)
    servers.append(server)
    port = server.address[1]
    listing = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=TIMEOUT, check=True).stdout.split()
    assert listing[0] == "LISTEN" and listing[2] == "7", listing  # Send-Q: the backlog


@pytest.mark.parametrize(("address", "text"), [
    (("127.0.0.1", 80), "127.0.0.1:80"),
    (("::1", 8080, 0, 0), "[::1]:8080"),
    (("fe80::1%eth0", 1, 0, 2), "[fe80::1%eth0]:1"),
    (None, "None"),
    ("/run/app.sock", "/run/app.sock"),
])
def test_format_address(address: object, text: str) -> None:
    assert format_address(address) == text


@pytest.mark.parametrize("chosen", ["select", "trio"])  # asyncio logs it as its own
def test_a_failing_factory_is_logged_naming_the_peer(
    servers: list[BackgroundServer], chosen: str, caplog: pytest.LogCaptureFixture,
) -> None:
    if chosen == "trio":
        pytest.importorskip("trio")
    calls: list[int] = []

    def flaky() -> Chat:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("no chat for you")
        return Echo()

    server = start_server(chosen, flaky)
    servers.append(server)
    with caplog.at_level(logging.ERROR, logger="sanschat"):
        with socket.create_connection(server.address, timeout=TIMEOUT) as sock:
            peer = format_address(sock.getsockname())
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(100) == b""
        with socket.create_connection(server.address, timeout=TIMEOUT) as sock:
            sock.sendall(b"next\r\n")
            assert _recv_exactly(sock, 6) == b"next\r\n"
    [record] = caplog.records
    assert record.name == f"sanschat.drivers.{chosen}"
    assert record.getMessage() == (
        f"error in the connection factory for {peer}; connection dropped")


def test_trio_serve_with_an_ssl_context_reports_tls_listeners(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext,
) -> None:
    trio = pytest.importorskip("trio")
    from sanschat.drivers.trio import serve

    async def main() -> bytes:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(
                    functools.partial(serve, Echo, "127.0.0.1", 0, ssl_context=server_context))
                port = listeners[0].transport_listener.socket.getsockname()[1]
                stream = await trio.open_ssl_over_tcp_stream(
                    "127.0.0.1", port, ssl_context=client_context)
                await stream.send_all(b"trio tls\r\n")
                reply = b""
                while len(reply) < 10:
                    reply += await stream.receive_some(100)
                await stream.aclose()
                nursery.cancel_scope.cancel()
        return reply

    assert trio.run(main) == b"trio tls\r\n"


# ---------------------------------------------------------------- the select driver's own TLS


class Lost(Chat):
    """Records how it ended."""

    terminator = b"\n"
    ended: list[BaseException | None]

    def __init__(self) -> None:
        super().__init__()
        self.made = False

    def connection_made(self) -> None:
        self.made = True

    def found_frame(self, frame: bytes) -> None:
        self.push(frame + b"\n")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.ended.append(exc)


def test_select_tls_a_failed_handshake_detaches_the_chat_unattached(
    servers: list[BackgroundServer], server_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chats: list[Lost] = []

    def make() -> Lost:
        chat = Lost()
        chat.ended = []
        chats.append(chat)
        return chat

    server = start_server("select", make, ssl_context=server_context)
    servers.append(server)
    with (
        caplog.at_level(logging.DEBUG, logger="sanschat.drivers.select"),
        socket.create_connection(server.address, timeout=TIMEOUT) as plain,
    ):
        peer = format_address(plain.getsockname())
        plain.sendall(b"not a client hello\r\n\r\n")
        wait_for(lambda: bool(chats and chats[0].ended), "the chat to be detached")
    assert not chats[0].made
    assert isinstance(chats[0].ended[0], ssl.SSLError)
    assert any(f"TLS handshake with {peer} failed" in r.getMessage() for r in caplog.records)


def test_select_tls_a_client_that_never_handshakes_is_dropped(
    servers: list[BackgroundServer], server_context: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sanschat.drivers.select as select_driver

    monkeypatch.setattr(select_driver, "HANDSHAKE_TIMEOUT", 0.2)
    chats: list[Lost] = []

    def make() -> Lost:
        chat = Lost()
        chat.ended = []
        chats.append(chat)
        return chat

    server = start_server("select", make, ssl_context=server_context)
    servers.append(server)
    with (
        socket.create_connection(server.address, timeout=TIMEOUT) as silent,
        contextlib.suppress(ConnectionResetError),
    ):
        assert silent.recv(100) == b""  # dropped by the server, without a word
    wait_for(lambda: bool(chats and chats[0].ended), "the chat to be detached")
    assert not chats[0].made
    assert isinstance(chats[0].ended[0], TimeoutError)
    assert str(chats[0].ended[0]) == "no TLS handshake in 0.2 s"


def _count_polls(server: BackgroundServer) -> list[int]:
    """Count the select loop's poller calls from now on (the loop thread reads the attribute)."""
    assert isinstance(server, ServerThread)
    poller = server.loop._poller
    calls = [0]
    poll = poller.poll

    def counting(timeout: float | None) -> object:
        calls[0] += 1
        return poll(timeout)

    poller.poll = counting
    return calls


def test_select_tls_no_busy_loop_while_the_handshake_waits(
    servers: list[BackgroundServer], server_context: ssl.SSLContext,
) -> None:
    server = start_server("select", Echo, ssl_context=server_context)
    servers.append(server)
    calls = _count_polls(server)
    with socket.create_connection(server.address, timeout=TIMEOUT):
        threading.Event().wait(0.3)  # a window: the client says nothing, the handshake waits
    assert calls[0] < 30, f"{calls[0]} polls in 0.3 s with one silent client"


def test_select_tls_no_busy_loop_while_the_peer_does_not_read(
    servers: list[BackgroundServer], server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    server = start_server("select", Blob, ssl_context=server_context)
    servers.append(server)
    with _tls_client(server, client_context, "127.0.0.1") as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        assert len(sock.recv(100)) > 0  # the blob started, and the socket fills up
        calls = _count_polls(server)
        threading.Event().wait(0.3)  # a window in which the socket stays full
        assert calls[0] < 30, f"{calls[0]} polls in 0.3 s with the output blocked"


def test_select_tls_reads_bytes_left_inside_the_ssl_object(
    servers: list[BackgroundServer], server_context: ssl.SSLContext,
    client_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sanschat.drivers.select as select_driver

    monkeypatch.setattr(select_driver, "READ_SIZE", 64)  # a record takes many reads
    server = start_server("select", Echo, ssl_context=server_context)
    servers.append(server)
    line = b"y" * 10000 + b"\r\n"  # one record; the poller sees nothing after the first read
    with _tls_client(server, client_context, "127.0.0.1") as sock:
        sock.sendall(line)
        assert _recv_exactly(sock, len(line)) == line


class Flood(Chat):
    """Answers every line with 2 MiB (above HIGH_WATER), so reading pauses after each."""

    terminator = b"\n"

    def found_frame(self, frame: bytes) -> None:
        self.push(frame[:1] * (2 * 1024 * 1024))


def test_select_tls_reads_the_ssl_objects_bytes_after_a_pause(
    servers: list[BackgroundServer], server_context: ssl.SSLContext,
    client_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sanschat.drivers.select as select_driver

    monkeypatch.setattr(select_driver, "READ_SIZE", 64)
    server = start_server("select", Flood, ssl_context=server_context)
    servers.append(server)
    request = b"".join(bytes([c]) * 100 + b"\n" for c in b"abc")  # one record, three frames
    with _tls_client(server, client_context, "127.0.0.1") as sock:
        sock.sendall(request)
        for c in b"abc":
            assert _recv_exactly(sock, 2 * 1024 * 1024) == bytes([c]) * (2 * 1024 * 1024)
