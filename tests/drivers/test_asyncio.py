"""The asyncio driver's own features, over real sockets on 127.0.0.1.

The shared behaviour is in ``test_conformance.py``; here: the protocol entry points
(`serve`, `connect`), the ``async for`` stream style, flow control in both directions,
uvloop, errors and the idle timeout.  Every test runs its coroutine under a time bound.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest
from netutil import TIMEOUT, read_paths

import sanschat.drivers.asyncio as driver
from sanschat import Chat, Data, EndOfStream, FrameTooLarge, TerminatorFound
from sanschat.drivers import HIGH_WATER, READ_SIZE
from sanschat.drivers.asyncio import (
    ChatProtocol,
    Connection,
    connect,
    open_connection,
    serve,
    serve_connections,
    start_server,
)
from sanschat.examples import Echo, factory

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


#: Every test runs twice: read by the shared poller, and by their transports.
read_path = read_paths(driver, "transport", "their transports")


def run(main: Callable[[], Coroutine[Any, Any, None]], loop_factory: LoopFactory | None = None,
        ) -> None:
    """Run *main* on a new loop, bounded by TIMEOUT; the loop is closed afterwards."""
    async def bounded() -> None:
        await asyncio.wait_for(main(), TIMEOUT)

    loop = (loop_factory or asyncio.new_event_loop)()
    try:
        loop.run_until_complete(bounded())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def port_of(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


async def echo_round_trip(lines: int = 2000) -> None:
    """The echo server via `serve`, read back in the stream style."""
    server = await serve(factory("echo"))
    try:
        async with await open_connection("127.0.0.1", port_of(server)) as conn:
            payload = b"".join(b"line %d\r\n" % i for i in range(lines))
            await conn.send(payload)
            received = []
            async for frame in conn.frames():
                received.append(frame)
                if len(received) == lines:
                    break
            assert received == [b"line %d" % i for i in range(lines)]
    finally:
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------- the stream style


def test_open_connection_reads_the_echo_servers_frames() -> None:
    run(echo_round_trip)


def test_serve_connections_runs_an_echo_handler_per_connection() -> None:
    async def handler(conn: Connection) -> None:
        async for frame in conn.frames():
            await conn.send(frame + b"\r\n")

    async def main() -> None:
        server = await serve_connections(handler, "127.0.0.1", 0)
        try:
            conns = [await open_connection("127.0.0.1", port_of(server)) for _ in range(5)]
            for n, conn in enumerate(conns):
                await conn.send(b"".join(b"%d:%d\r\n" % (n, i) for i in range(300)))
            for n, conn in enumerate(conns):
                frames = [await anext_frame(conn) for _ in range(300)]
                assert frames == [b"%d:%d" % (n, i) for i in range(300)]
                await conn.send_eof()
                assert [f async for f in conn.frames()] == []  # the handler closed when done
                await conn.aclose()
        finally:
            server.close()
            await server.wait_closed()

    run(main)


async def anext_frame(conn: Connection) -> bytes:
    return await conn.frames().__anext__()


def test_terminator_switched_by_the_consumer_applies_to_the_next_unread_byte() -> None:
    seen: list[bytes] = []

    async def handler(conn: Connection) -> None:
        frames = conn.frames()
        async for line in frames:
            seen.append(line)
            if line.startswith(b"SIZE "):
                conn.set_terminator(int(line[5:]))
                seen.append(await frames.__anext__())
                conn.set_terminator(b"\r\n")
        await conn.send(b"|".join(seen))

    async def main() -> None:
        server = await serve_connections(handler, "127.0.0.1", 0)
        try:
            async with await open_connection("127.0.0.1", port_of(server)) as conn:
                # One write: the whole stream reaches the server in one chunk.
                await conn.send(b"a\r\nSIZE 5\r\nx\r\nyzb\r\nSIZE 0\r\nc\r\n")
                await conn.send_eof()
                conn.set_terminator(None)
                reply = b"".join([e.data async for e in conn if type(e) is Data])
        finally:
            server.close()
            await server.wait_closed()
        assert reply == b"a|SIZE 5|x\r\nyz|b|SIZE 0||c"

    run(main)


def test_event_iteration_ends_after_end_of_stream_with_the_last_partial_frame() -> None:
    async def handler(conn: Connection) -> None:
        events = [event async for event in conn]
        await conn.send(repr(events).encode())

    async def main() -> None:
        server = await serve_connections(handler, "127.0.0.1", 0, terminator=b"\n")
        try:
            async with await open_connection("127.0.0.1", port_of(server)) as conn:
                await conn.send(b"one\ntw")
                await conn.send(b"o")
                await conn.send_eof()
                conn.set_terminator(None)
                reply = b"".join([e.data async for e in conn if type(e) is Data])
        finally:
            server.close()
            await server.wait_closed()
        events = eval(reply, {"Data": Data, "TerminatorFound": TerminatorFound,
                              "EndOfStream": EndOfStream})
        assert b"".join(e.data for e in events if type(e) is Data) == b"onetwo"
        assert events[-1] == EndOfStream(True)
        assert sum(type(e) is TerminatorFound for e in events) == 1

    run(main)


def test_frames_end_at_end_of_stream_and_keep_an_unterminated_tail() -> None:
    async def main() -> None:
        server = await serve(Echo)
        try:
            async with await open_connection("127.0.0.1", port_of(server),
                                             terminator=(b"\r\n", b"\r")) as conn:
                await conn.send(b"a\r\nb\r\n")
                await conn.send_eof()  # the echo server flushes, then closes
                assert [f async for f in conn.frames()] == [b"a", b"b"]
                assert conn.unframed == b""
        finally:
            server.close()
            await server.wait_closed()

        async def tail(conn: Connection) -> None:
            await conn.send(b"x\r\ny\rz")
            await conn.send_eof()

        server = await serve_connections(tail, "127.0.0.1", 0)
        try:
            async with await open_connection("127.0.0.1", port_of(server),
                                             terminator=(b"\r\n", b"\r")) as conn:
                assert [f async for f in conn.frames()] == [b"x", b"y"]
                assert conn.unframed == b"z"
        finally:
            server.close()
            await server.wait_closed()

    run(main)


def test_frame_too_large_is_raised_to_the_consumer() -> None:
    async def main() -> None:
        server = await serve(Echo)
        try:
            async with await open_connection("127.0.0.1", port_of(server),
                                             max_frame_size=10) as conn:
                await conn.send(b"short\r\n" + b"long enough to fail\r\n")
                frames = conn.frames()
                assert await frames.__anext__() == b"short"
                with pytest.raises(FrameTooLarge):
                    await frames.__anext__()
        finally:
            server.close()
            await server.wait_closed()

    run(main)


def test_a_consumer_that_does_not_iterate_stops_the_reading() -> None:
    total = 8 * 1024 * 1024
    ready: asyncio.Queue[Connection] = asyncio.Queue()

    async def handler(conn: Connection) -> None:
        await ready.put(conn)
        await conn.protocol.wait_closed()

    async def main() -> None:
        server = await serve_connections(handler, "127.0.0.1", 0, terminator=b"\n")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
            conn = await ready.get()
            sender = asyncio.ensure_future(write_all(writer, b"x" * 1023 + b"\n", total))
            while not conn.protocol._reading_paused:
                await asyncio.sleep(0.01)
            assert conn.channel.buffered_input <= HIGH_WATER + READ_SIZE
            assert not sender.done(), "the whole flood was read ahead"
            received = 0
            async for frame in conn.frames():
                received += len(frame) + 1
                if received == total:
                    break
            await sender
            writer.close()
            await writer.wait_closed()
            await conn.aclose()
        finally:
            server.close()
            await server.wait_closed()

    run(main)


async def write_all(writer: asyncio.StreamWriter, block: bytes, total: int) -> None:
    for _ in range(total // len(block)):
        writer.write(block)
        await writer.drain()


def test_send_waits_while_the_peer_does_not_read() -> None:
    async def main() -> None:
        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue())

        async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await accepted.put((r, w))

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        try:
            conn = await open_connection("127.0.0.1", port_of(server))
            conn.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            _, writer = await accepted.get()
            block = b"b" * 65536
            sent = 0
            with pytest.raises(asyncio.TimeoutError):
                while True:  # stops when send() blocks: the peer does not read
                    await asyncio.wait_for(conn.send(block), 0.5)
                    sent += len(block)
            assert conn.channel.buffered_output <= HIGH_WATER + len(block)
            assert conn.protocol._writing_paused
            conn.abort()
            writer.close()
            await writer.wait_closed()
            assert sent < 64 * 1024 * 1024
        finally:
            server.close()
            await server.wait_closed()

    run(main)


# ---------------------------------------------------------------- flow control of a Chat


class Flood(Chat):
    """Pushes an endless producer and counts its pulls."""

    terminator = b"\n"

    def __init__(self) -> None:
        super().__init__()
        self.pulls = 0

    def connection_made(self) -> None:
        self.push_with_producer(self._chunks())

    def _chunks(self) -> Iterator[bytes]:
        block = b"p" * 65536
        while True:
            self.pulls += 1
            yield block

    def found_frame(self, frame: bytes) -> None:
        pass


class WatchedProtocol(ChatProtocol):
    """Sets an event when the transport asks it to pause writing."""

    def __init__(self, chat: Chat, paused: asyncio.Event) -> None:
        super().__init__(chat)
        self.paused = paused

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused.set()


def test_pause_writing_stops_pulling_the_producer_until_resume() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        chat = Flood()
        paused = asyncio.Event()
        server = await loop.create_server(lambda: WatchedProtocol(chat, paused), "127.0.0.1", 0)
        try:
            with socket.create_connection(("127.0.0.1", port_of(server)), TIMEOUT) as client:
                client.setblocking(False)
                await asyncio.wait_for(paused.wait(), TIMEOUT)
                pulls = chat.pulls
                for _ in range(20):  # turns of the loop: nothing may be pulled while paused
                    await asyncio.sleep(0.005)
                assert chat.pulls == pulls
                assert pulls * 65536 < 32 * 1024 * 1024, "the producer was read ahead"
                # Now read: resume_writing must pull again.
                received = 0
                while chat.pulls < pulls + 50:
                    data = await loop.sock_recv(client, 1 << 20)
                    assert data
                    received += len(data)
                assert received > 0
        finally:
            server.close()
            await server.wait_closed()

    run(main)


class Hoarder(Echo):
    """Echo that remembers its instances: the test inspects the server side."""

    instances: ClassVar[list[Hoarder]] = []

    def connection_made(self) -> None:
        self.instances.append(self)


def test_reading_stops_while_output_above_high_water_is_queued() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await serve(Hoarder)
        try:
            with socket.create_connection(("127.0.0.1", port_of(server)), TIMEOUT) as client:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                client.setblocking(False)
                sent = 0
                block = (b"e" * 1022 + b"\r\n") * 64
                with pytest.raises(asyncio.TimeoutError):  # the client never reads
                    while sent < 256 * 1024 * 1024:
                        await asyncio.wait_for(loop.sock_sendall(client, block), 1.0)
                        sent += len(block)
                chat = Hoarder.instances[-1]
                assert cast(ChatProtocol, chat.transport)._reading_paused
                assert chat.channel.buffered_output <= HIGH_WATER + READ_SIZE
                assert sent < 64 * 1024 * 1024, "the server read on without a bound"
        finally:
            server.close()
            await server.wait_closed()

    run(main)


class Later(Chat):
    """Pushes from a timer, outside any callback."""

    terminator = b"\n"

    def found_frame(self, frame: bytes) -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(self._burst, int(frame))

    def _burst(self, count: int) -> None:
        for i in range(count):
            self.push(b"%d\n" % i)


def test_output_ready_outside_callbacks_is_flushed_once_per_burst() -> None:
    async def main() -> None:
        flushes = 0
        original = ChatProtocol._scheduled_flush

        def counting(self: ChatProtocol) -> None:
            nonlocal flushes
            flushes += isinstance(self.chat, Later)
            original(self)

        server = await serve(Later)
        try:
            ChatProtocol._scheduled_flush = counting  # type: ignore[method-assign]
            async with await open_connection("127.0.0.1", port_of(server),
                                             terminator=b"\n") as conn:
                await conn.send(b"500\n")
                frames = conn.frames()
                assert [await frames.__anext__() for _ in range(500)] == [
                    b"%d" % i for i in range(500)]
        finally:
            ChatProtocol._scheduled_flush = original  # type: ignore[method-assign]
            server.close()
            await server.wait_closed()
        assert flushes == 1

    run(main)


# ---------------------------------------------------------------- client, errors, idle


class Client(Chat):
    """Sends lines on connect and collects the echo until the server closes."""

    terminator = b"\r\n"

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.lines = lines
        self.got: list[bytes] = []
        self.lost: list[BaseException | None] = []

    def connection_made(self) -> None:
        self.push(b"".join(b"c%d\r\n" % i for i in range(self.lines)))

    def found_frame(self, frame: bytes) -> None:
        self.got.append(frame)
        if len(self.got) == self.lines:
            self.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


def test_connect_runs_a_client_chat_to_the_end() -> None:
    async def main() -> None:
        server = await serve(Echo)
        try:
            chat = Client(1000)
            protocol = await connect(chat, "127.0.0.1", port_of(server))
            await protocol.wait_closed()
            assert chat.got == [b"c%d" % i for i in range(1000)]
            assert chat.lost == [None]
        finally:
            server.close()
            await server.wait_closed()

    run(main)


class Faulty(Echo):
    def found_frame(self, frame: bytes) -> None:
        if frame == b"boom":
            raise RuntimeError("faulty handler")
        super().found_frame(frame)


def test_handler_exception_closes_only_its_connection_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        server = await serve(Faulty)
        try:
            async with await open_connection("127.0.0.1", port_of(server)) as healthy, \
                    await open_connection("127.0.0.1", port_of(server)) as faulty:
                await faulty.send(b"boom\r\n")
                assert [f async for f in faulty.frames()] == []
                await healthy.send(b"fine\r\n")
                assert await anext_frame(healthy) == b"fine"
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.ERROR, logger="sanschat"):
        run(main)
    errors = [r for r in caplog.records if r.name == "sanschat.drivers.asyncio"]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and "faulty handler" in str(errors[0].exc_info[1])
    assert "127.0.0.1" in errors[0].getMessage()


def test_stream_handler_exception_is_logged_and_aborts_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(conn: Connection) -> None:
        async for frame in conn.frames():
            if frame == b"boom":
                raise ValueError("stream handler failed")
            await conn.send(frame + b"\r\n")

    async def main() -> None:
        server = await serve_connections(handler, "127.0.0.1", 0)
        try:
            async with await open_connection("127.0.0.1", port_of(server)) as a, \
                    await open_connection("127.0.0.1", port_of(server)) as b:
                await a.send(b"boom\r\n")
                assert [f async for f in a.frames()] == []
                await b.send(b"ok\r\n")
                assert await anext_frame(b) == b"ok"
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.ERROR, logger="sanschat"):
        run(main)
    assert any(r.exc_info and "stream handler failed" in str(r.exc_info[1])
               for r in caplog.records)


class BadProducer(Echo):
    lost: ClassVar[list[BaseException | None]] = []

    def connection_made(self) -> None:
        self.push_with_producer(self._chunks())

    def _chunks(self) -> Iterator[bytes]:
        yield b"first\r\n"
        raise OSError("the producer broke")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


def test_producer_exception_is_logged_and_passed_to_connection_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    BadProducer.lost.clear()

    async def main() -> None:
        server = await serve(BadProducer)
        try:
            async with await open_connection("127.0.0.1", port_of(server)) as conn:
                assert [f async for f in conn.frames()] in ([], [b"first"])
            while not BadProducer.lost:
                await asyncio.sleep(0.01)
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.ERROR, logger="sanschat"):
        run(main)
    assert [type(e) for e in BadProducer.lost] == [OSError]
    assert any(r.exc_info and r.exc_info[1] is BadProducer.lost[0] for r in caplog.records)


def test_stream_iteration_raises_the_peers_reset_after_the_bytes_before_it() -> None:
    async def main() -> None:
        accepted: asyncio.Queue[Connection] = asyncio.Queue()

        async def handler(conn: Connection) -> None:
            await accepted.put(conn)
            await conn.protocol.wait_closed()

        server = await serve_connections(handler, "127.0.0.1", 0)
        try:
            with socket.create_connection(("127.0.0.1", port_of(server)), TIMEOUT) as client:
                conn = await accepted.get()
                client.sendall(b"before\r\n")
                assert await anext_frame(conn) == b"before"
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with pytest.raises(ConnectionResetError):
                await anext_frame(conn)
            with pytest.raises(ConnectionResetError):
                await conn.send(b"after\r\n")
        finally:
            server.close()
            await server.wait_closed()

    run(main)


class Sleepy(Echo):
    idle_timeout = 0.2
    idled: ClassVar[list[float]] = []

    def idle(self) -> None:
        self.idled.append(asyncio.get_running_loop().time())
        super().idle()


def test_idle_timeout_is_rearmed_by_traffic_and_then_closes() -> None:
    Sleepy.idled.clear()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await serve(Sleepy)
        try:
            async with await open_connection("127.0.0.1", port_of(server)) as conn:
                for _ in range(4):  # 0.4 s of traffic in steps shorter than the timeout
                    await asyncio.sleep(0.1)
                    await conn.send(b"tick\r\n")
                    assert await anext_frame(conn) == b"tick"
                last = loop.time()
                assert [f async for f in conn.frames()] == []  # then silence: closed
                assert len(Sleepy.idled) == 1
                assert Sleepy.idled[0] - last >= 0.15
        finally:
            server.close()
            await server.wait_closed()

    run(main)


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client context around a throwaway self-signed certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=TIMEOUT)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="asyncio's SSL transport on 3.10 reports an error from __del__ at loop teardown",
)
def test_echo_over_tls(tmp_path: Path) -> None:
    server_ctx, client_ctx = tls_contexts(tmp_path)

    async def main() -> None:
        server = await serve(Echo, ssl=server_ctx)
        try:
            async with await open_connection("127.0.0.1", port_of(server),
                                             ssl=client_ctx) as conn:
                lines = [b"secret %d" % i for i in range(3000)]
                await conn.send(b"".join(line + b"\r\n" for line in lines))
                frames = conn.frames()
                assert [await frames.__anext__() for _ in lines] == lines
                with pytest.raises(NotImplementedError):
                    await conn.send_eof()
        finally:
            server.close()
            await server.wait_closed()

    run(main)


# ---------------------------------------------------------------- uvloop and the thread


def uvloop_factory() -> LoopFactory:
    uvloop = pytest.importorskip("uvloop")
    new_loop: LoopFactory = uvloop.new_event_loop
    return new_loop


def test_echo_under_uvloop() -> None:
    run(echo_round_trip, uvloop_factory())


def test_pause_writing_under_uvloop() -> None:
    loop_factory = uvloop_factory()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        chat = Flood()
        paused = asyncio.Event()
        server = await loop.create_server(lambda: WatchedProtocol(chat, paused), "127.0.0.1", 0)
        try:
            with socket.create_connection(("127.0.0.1", port_of(server)), TIMEOUT):
                await asyncio.wait_for(paused.wait(), TIMEOUT)
                pulls = chat.pulls
                for _ in range(20):
                    await asyncio.sleep(0.005)
                assert chat.pulls == pulls
        finally:
            server.close()
            await server.wait_closed()

    run(main, loop_factory)


def test_stream_style_under_uvloop() -> None:
    async def handler(conn: Connection) -> None:
        async for frame in conn.frames():
            await conn.send(frame[::-1] + b"\r\n")

    async def main() -> None:
        server = await serve_connections(handler, "127.0.0.1", 0)
        try:
            async with await open_connection("127.0.0.1", port_of(server)) as conn:
                await conn.send(b"abc\r\ndef\r\n")
                assert [await anext_frame(conn) for _ in range(2)] == [b"cba", b"fed"]
        finally:
            server.close()
            await server.wait_closed()

    run(main, uvloop_factory())


def test_start_server_stop_is_idempotent_and_detaches_every_chat() -> None:
    lost: list[BaseException | None] = []

    class Tracked(Echo):
        def connection_lost(self, exc: BaseException | None) -> None:
            lost.append(exc)

    server = start_server(Tracked)
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    clients = [socket.create_connection(server.address, TIMEOUT) for _ in range(3)]
    try:
        for sock in clients:
            sock.sendall(b"x\r\n")
            assert sock.recv(3) == b"x\r\n"
        server.stop()
        server.stop()
        assert lost == [None, None, None]
        for sock in clients:
            assert sock.recv(1) == b""
    finally:
        for sock in clients:
            sock.close()


def test_module_imports_the_standard_asyncio() -> None:
    assert vars(driver)["asyncio"] is asyncio  # the stdlib, not this module
    assert "sanschat.drivers.asyncio" in sys.modules



@pytest.mark.parametrize("style", ["frames", "events"])
def test_bytes_arriving_while_the_consumer_awaits_elsewhere_are_delivered(style: str) -> None:
    async def main() -> None:
        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"one\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"two\r\n")  # arrives while the consumer is busy with "one"
            await writer.drain()
            await reader.read()  # then stays open: nothing more will come
            writer.close()

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        conn = await open_connection("127.0.0.1", port_of(server), terminator=b"\r\n")
        got: list[bytes] = []
        if style == "frames":  # run() bounds the whole test: a hang fails it
            async for frame in conn.frames():
                got.append(frame)
                await asyncio.sleep(0.2)  # a slow database call, say
                if len(got) == 2:
                    break
        else:
            async for event in conn:
                if isinstance(event, Data):
                    got.append(event.data)
                    await asyncio.sleep(0.2)
                if len(got) == 2 and isinstance(event, TerminatorFound):
                    break
        assert got == [b"one", b"two"]
        conn.abort()
        server.close()
        await server.wait_closed()

    run(main)


class _GoneTransport(asyncio.Transport):
    """A transport whose peer is already gone: ``write_eof`` fails as asyncio's does then
    (it shuts the socket down at once when nothing is buffered)."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False
        self.written = bytearray()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.aborted

    def can_write_eof(self) -> bool:
        return True

    def write(self, data: Any) -> None:
        self.written += data

    def write_eof(self) -> None:
        raise OSError(107, "Transport endpoint is not connected")

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_a_graceful_close_to_a_peer_already_gone_aborts_quietly() -> None:
    async def main() -> _GoneTransport:
        protocol = ChatProtocol(Echo())
        transport = _GoneTransport()
        protocol.connection_made(transport)
        protocol.chat.push(b"bye\r\n")
        protocol.chat.close_when_done()  # the flush reaches the close point: write_eof fails
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(main())
    assert transport.written == b"bye\r\n" and transport.aborted


# ---------------------------------------------------------------- the read poller


class Served(Echo):
    """Echo that remembers its instances and whether it was detached."""

    instances: ClassVar[list[Served]] = []

    def connection_made(self) -> None:
        self.detached = False
        self.instances.append(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.detached = True


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def served_once(server: asyncio.Server, line: bytes) -> tuple[Connection, ChatProtocol]:
    """A client of *server* (serving `Served`) after one echo of *line*, and the protocol
    of the server's side of it."""
    Served.instances.clear()
    conn = await open_connection("127.0.0.1", port_of(server))
    await conn.send(line + b"\r\n")
    assert await anext_frame(conn) == line
    return conn, cast(ChatProtocol, Served.instances[0].transport)


def test_plain_tcp_connections_are_read_by_one_poller_per_loop(read_path: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await serve(Served)
        try:
            for round_ in range(2):  # the poller stops with its last connection, then restarts
                Served.instances.clear()
                conns = [await open_connection("127.0.0.1", port_of(server)) for _ in range(3)]
                for n, conn in enumerate(conns):
                    await conn.send(b"%d.%d\r\n" % (round_, n))
                for n, conn in enumerate(conns):
                    assert await anext_frame(conn) == b"%d.%d" % (round_, n)
                await until(lambda: len(Served.instances) == 3)
                protocols = [cast(ChatProtocol, c.transport) for c in Served.instances]
                protocols += [conn.protocol for conn in conns]  # the clients' side too
                pollers = {id(p._poller) for p in protocols}
                if read_path == "poller":
                    assert pollers != {id(None)}
                    assert cast(Any, protocols[0]._poller)._joined == 6
                if read_path == "poller":
                    poller = protocols[0]._poller
                    assert poller is not None and pollers == {id(poller)}
                    assert getattr(loop, driver._POLLER_ATTRIBUTE) is poller
                    assert sorted(poller._reading) == sorted(p._fd for p in protocols)
                    assert not any(cast(Any, p._transport).is_reading() for p in protocols)
                else:
                    assert pollers == {id(None)}
                    assert all(cast(Any, p._transport).is_reading() for p in protocols)
                for conn in conns:
                    await conn.aclose()
                await until(lambda: all(chat.detached for chat in Served.instances))
                if read_path == "poller":
                    assert poller._reading == {} and poller._epoll.closed
                    assert not hasattr(loop, driver._POLLER_ATTRIBUTE)
        finally:
            server.close()
            await server.wait_closed()

    run(main)


def test_a_closed_connections_protocol_is_freed_without_the_collector(read_path: str) -> None:
    # The poller calls a bound method the protocol keeps while it is read: a cycle, which
    # must end with the connection, or every closed connection waits for the collector.
    gone: list[weakref.ref[ChatProtocol]] = []

    async def main() -> None:
        server = await serve(Served)
        try:
            conn, protocol = await served_once(server, b"once")
            assert (protocol._poller is not None) is (read_path == "poller")
            gone.append(weakref.ref(protocol))
            del protocol
            await conn.aclose()
            await until(lambda: Served.instances[0].detached)
            Served.instances.clear()
            await asyncio.sleep(0.05)  # asyncio's own call_soon callbacks drop theirs
        finally:
            server.close()
            await server.wait_closed()

    gc.collect()
    gc.disable()
    try:
        run(main)
        assert gone[0]() is None
    finally:
        gc.enable()


_who: contextvars.ContextVar[bytes] = contextvars.ContextVar("who", default=b"nobody")


class Remembers(Chat):
    """Answers each line with the value a previous line of its connection set, if any."""

    terminator = b"\n"

    def found_frame(self, frame: bytes) -> None:
        self.push(_who.get() + b"\n")
        _who.set(frame)


def test_each_connections_reads_run_in_a_context_of_its_own() -> None:
    async def main() -> None:
        server = await serve(Remembers)
        try:
            one = await open_connection("127.0.0.1", port_of(server), terminator=b"\n")
            two = await open_connection("127.0.0.1", port_of(server), terminator=b"\n")
            await one.send(b"one\n")
            assert await anext_frame(one) == b"nobody"
            await two.send(b"two\n")
            assert await anext_frame(two) == b"nobody"  # not "one": a context of its own
            await one.send(b"again\n")
            assert await anext_frame(one) == b"one"  # its own, kept between reads
            await two.send(b"again\n")
            assert await anext_frame(two) == b"two"
            for conn in (one, two):
                await conn.aclose()
        finally:
            server.close()
            await server.wait_closed()

    run(main)


class PausedAtStart(Echo):
    """Pauses its reading as it is attached; resumes 0.3 s later."""

    instances: ClassVar[list[PausedAtStart]] = []

    def connection_made(self) -> None:
        self.instances.append(self)
        self.resumed: float | None = None
        self.first_frame: float | None = None
        self.pause_reading()
        asyncio.get_running_loop().call_later(0.3, self._wake)

    def _wake(self) -> None:
        self.resumed = time.monotonic()
        self.resume_reading()

    def found_frame(self, frame: bytes) -> None:
        if self.first_frame is None:
            self.first_frame = time.monotonic()
        super().found_frame(frame)


def test_a_chat_paused_as_it_is_attached_reads_nothing_until_it_resumes(read_path: str) -> None:
    async def main() -> None:
        server = await serve(PausedAtStart)
        try:
            conn = await open_connection("127.0.0.1", port_of(server))
            await conn.send(b"early\r\n")
            await asyncio.sleep(0.15)
            chat = PausedAtStart.instances[-1]
            protocol = cast(ChatProtocol, chat.transport)
            assert chat.first_frame is None and protocol._reading_paused
            if read_path == "poller":
                poller = protocol._poller
                assert poller is not None and protocol._fd not in poller._reading
            assert await anext_frame(conn) == b"early"
            assert chat.resumed is not None and chat.first_frame is not None
            assert chat.first_frame >= chat.resumed
            await conn.send(b"late\r\n")  # and it reads on after
            assert await anext_frame(conn) == b"late"
            await conn.aclose()
        finally:
            server.close()
            await server.wait_closed()

    run(main)


def test_replies_the_socket_cannot_take_at_once_arrive_whole_and_in_order() -> None:
    # Partial sends: the rest waits in the transport, and later replies queue behind it.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await serve(Echo)
        try:
            with socket.create_connection(("127.0.0.1", port_of(server)), TIMEOUT) as client:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
                client.setblocking(False)
                lines = [b"%05d" % n + b"x" * (n % 7 * 4000) + b"\r\n" for n in range(300)]
                expected = b"".join(lines)
                await loop.sock_sendall(client, expected)  # all of it, before reading any
                await asyncio.sleep(0.1)  # the echoes fill the socket: the rest is held back
                received = bytearray()
                while len(received) < len(expected):
                    data = await asyncio.wait_for(loop.sock_recv(client, 65536), TIMEOUT)
                    assert data
                    received += data
                assert received == expected
        finally:
            server.close()
            await server.wait_closed()

    run(main)


class LateReply(Chat):
    """Stops reading at its first line and replies 0.2 s later (so that the reply, not a
    read, finds the peer gone); remembers how its connection ended."""

    terminator = b"\n"
    ended: ClassVar[list[BaseException | None]] = []

    def found_frame(self, frame: bytes) -> None:
        self.pause_reading()
        asyncio.get_running_loop().call_later(0.2, self.push, b"late reply\n" * 1000)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.ended.append(exc)


def test_a_reply_to_a_peer_that_reset_ends_the_connection_with_the_error() -> None:
    LateReply.ended.clear()

    async def main() -> None:
        server = await serve(LateReply)
        try:
            with socket.create_connection(("127.0.0.1", port_of(server)), TIMEOUT) as client:
                client.sendall(b"hello\n")
                await asyncio.sleep(0.05)  # read, and the reply is not yet due
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await until(lambda: bool(LateReply.ended))
        finally:
            server.close()
            await server.wait_closed()

    run(main)
    assert len(LateReply.ended) == 1
    assert isinstance(LateReply.ended[0], (ConnectionResetError, BrokenPipeError))


class BrokenFeed(ChatProtocol):
    """A protocol whose ``buffer_updated`` fails (a driver bug, not a handler's error)."""

    lost: ClassVar[list[BaseException | None]] = []

    def buffer_updated(self, nbytes: int) -> None:
        raise RuntimeError("broken buffer_updated")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        super().connection_lost(exc)


def test_a_failing_buffer_updated_ends_the_connection_as_asyncio_does(
        caplog: pytest.LogCaptureFixture) -> None:
    BrokenFeed.lost.clear()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: BrokenFeed(Echo()), "127.0.0.1", 0)
        try:
            with socket.create_connection(("127.0.0.1", port_of(server)), TIMEOUT) as client:
                client.setblocking(False)
                await loop.sock_sendall(client, b"hello\r\n")
                assert await loop.sock_recv(client, 100) == b""  # closed on us, no echo
                await until(lambda: bool(BrokenFeed.lost))
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run(main)
    assert [str(exc) for exc in BrokenFeed.lost] == ["broken buffer_updated"]
    assert any("buffer_updated() call failed" in r.getMessage() for r in caplog.records)


def test_a_connection_that_gets_no_poller_is_read_by_its_transport(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_descriptor_left() -> Any:
        raise OSError(24, "Too many open files")

    # (The driver's own view of the module only: asyncio's selector needs the real one.)
    monkeypatch.setattr(driver, "select", SimpleNamespace(epoll=no_descriptor_left))
    monkeypatch.setattr(driver, "_SHARED_POLL", True)

    async def main() -> None:
        server = await serve(Served)
        try:
            conn, protocol = await served_once(server, b"still served")
            assert protocol._poller is None and conn.protocol._poller is None
            assert cast(Any, protocol._transport).is_reading()
            await conn.aclose()
        finally:
            server.close()
            await server.wait_closed()

    run(main)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_a_loop_dropped_with_connections_open_is_freed_with_their_sockets() -> None:
    # As `asyncio.run` returning with connections open: they never leave their poller.
    async def main() -> list[Connection]:
        server = await serve(Echo)
        conns = [await open_connection("127.0.0.1", port_of(server)) for _ in range(3)]
        for conn in conns:
            await conn.send(b"hi\r\n")
            assert await anext_frame(conn) == b"hi"
        server.close()
        return conns

    before = open_descriptors()
    for _ in range(3):
        loop = asyncio.new_event_loop()
        conns = loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT))
        gone = weakref.ref(loop)
        loop.close()
        del loop, conns
        with warnings.catch_warnings():  # (the transports' own "unclosed" warnings)
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        assert gone() is None
    assert open_descriptors() <= before  # the sockets and the pollers' epolls: all closed


class FailingEof(Echo):
    """Its end-of-stream hook raises a BaseException (a CancelledError, as the ``result()``
    of a cancelled future raises); remembers how its connection ended."""

    lost: ClassVar[list[BaseException | None]] = []

    def feed_eof(self) -> None:
        raise asyncio.CancelledError("from feed_eof")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


def test_a_base_exception_at_end_of_stream_ends_the_connection_as_asyncio_does() -> None:
    FailingEof.lost.clear()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        failures: list[str] = []
        loop.set_exception_handler(lambda _loop, context: failures.append(context["message"]))
        server = await serve(FailingEof)
        try:
            with socket.create_connection(("127.0.0.1", port_of(server)), TIMEOUT) as client:
                client.setblocking(False)
                await asyncio.sleep(0.05)  # accepted, and read by whoever reads it
                client.shutdown(socket.SHUT_WR)
                await until(lambda: bool(FailingEof.lost))
                assert await asyncio.wait_for(loop.sock_recv(client, 10), TIMEOUT) == b""
            assert failures == ["Fatal error: protocol.eof_received() call failed."]
        finally:
            server.close()
            await server.wait_closed()

    run(main)
    assert [type(exc) for exc in FailingEof.lost] == [asyncio.CancelledError]


class Plain(asyncio.Protocol):
    """A protocol a transport is handed to: keeps what it receives."""

    def __init__(self) -> None:
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data


def test_a_transport_handed_to_another_protocol_is_read_for_that_protocol() -> None:
    # What loop.start_tls does (pause, set_protocol, resume); then later connections, one of
    # which gets the descriptor number of the one handed over, are read as any other.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await serve(Served)
        try:
            Served.instances.clear()
            with socket.create_connection(("127.0.0.1", port_of(server)), TIMEOUT) as first:
                first.setblocking(False)
                await until(lambda: bool(Served.instances))
                protocol = cast(ChatProtocol, Served.instances[0].transport)
                await asyncio.sleep(0.05)  # (the poller, if any, has taken the reading)
                transport = cast(Any, protocol._transport)
                plain = Plain()
                transport.pause_reading()
                transport.set_protocol(plain)
                transport.resume_reading()
                await loop.sock_sendall(first, b"for the new protocol\r\n")
                await until(lambda: plain.received == b"for the new protocol\r\n")
                transport.close()
            await asyncio.sleep(0.05)
            conns = [await open_connection("127.0.0.1", port_of(server)) for _ in range(4)]
            for n, conn in enumerate(conns):
                await conn.send(b"still read %d\r\n" % n)
                assert await anext_frame(conn) == b"still read %d" % n
            for conn in conns:
                await conn.aclose()
        finally:
            server.close()
            await server.wait_closed()

    run(main)
