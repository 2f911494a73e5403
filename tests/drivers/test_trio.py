"""The trio driver: `run_chat` over memory streams, TCP and TLS; the `Connection` style.

Memory streams (``trio.testing``) test the driver without sockets; real sockets are on
127.0.0.1 only.  Every test runs inside ``trio.fail_after`` (or a virtual clock), and every
nursery it opens is cancelled or finished before it returns.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("trio")

import trio
import trio.testing
from netutil import read_paths

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # trio's own dependency there

from sanschat import Chat, Data, EndOfStream, FrameTooLarge, TerminatorFound
from sanschat.drivers import HIGH_WATER, READ_SIZE
from sanschat.drivers import trio as driver
from sanschat.examples import Echo, HTTPRequestHandler
from sanschat.testing import RecordingTransport

TIMEOUT = 10.0  # seconds any test may take (real time)


#: Every test runs twice: read by the shared poller, and by their own tasks.
read_path = read_paths(driver, "tasks", "their own tasks")


def run(test: Callable[[], Awaitable[None]], *, virtual: bool = False) -> None:
    """Run *test* in trio, bounded in time; *virtual*: on an autojumping mock clock."""

    async def bounded() -> None:
        with trio.fail_after(1000 if virtual else TIMEOUT):
            await test()

    clock = trio.testing.MockClock(autojump_threshold=0) if virtual else None
    trio.run(bounded, clock=clock)


class Recorded(Echo):
    """Echo that records its lifecycle."""

    def __init__(self) -> None:
        super().__init__()
        self.made = 0
        self.lost: list[BaseException | None] = []

    def connection_made(self) -> None:
        self.made += 1

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


async def read_exactly(stream: Any, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


async def read_until_eof(stream: Any) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


def recording() -> tuple[list[Recorded], Callable[[], Chat]]:
    """A factory of `Recorded` chats, and the list of those it made."""
    chats: list[Recorded] = []

    def factory() -> Chat:
        chats.append(Recorded())
        return chats[-1]

    return chats, factory


async def tcp_server(nursery: Any, factory: Callable[[], Chat]) -> int:
    """Start `driver.serve` in *nursery*; return its port."""
    listeners = await nursery.start(driver.serve, factory)
    port: int = listeners[0].socket.getsockname()[1]
    return port


def test_module_imports_the_real_trio_library() -> None:
    assert vars(driver)["trio"] is trio
    assert driver.__name__ == "sanschat.drivers.trio"


# ---------------------------------------------------------------- run_chat, no sockets


def test_echo_over_memory_streams_echoes_then_closes_after_peer_eof() -> None:
    chat = Recorded()

    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, chat)
            await client.send_all(b"one\r\ntw")
            assert await read_exactly(client, 5) == b"one\r\n"
            await client.send_all(b"o\r\nthree\r\n")
            await client.send_eof()
            assert await read_until_eof(client) == b"two\r\nthree\r\n"
        assert chat.made == 1
        assert chat.lost == [None]

    run(test)


def test_http_over_lockstep_streams_answers_a_post_with_a_length_terminator() -> None:
    body = b"a\r\nb\r\n" * 10

    async def test() -> None:
        server, client = trio.testing.lockstep_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, HTTPRequestHandler())
            request = b"POST /x HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            for i in range(0, len(request), 7):
                await client.send_all(request[i : i + 7])
            reply = await read_until_eof(client)
        head, _, echoed = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 OK")
        assert echoed == body

    run(test)


def test_cancelling_the_surrounding_scope_detaches_with_none_and_closes_the_stream() -> None:
    chat = Recorded()

    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(driver.run_chat, server, chat)
                await client.send_all(b"ping\r\n")
                assert await read_exactly(client, 6) == b"ping\r\n"
                scope.cancel()
        assert scope.cancelled_caught
        assert chat.lost == [None]
        assert await client.receive_some(10) == b""  # the server side was closed

    run(test)


def test_exception_in_connection_made_is_logged_and_detaches_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Recorded):
        def connection_made(self) -> None:
            raise RuntimeError("cannot start")

    chat = Broken()

    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        await driver.run_chat(server, chat)
        assert await client.receive_some(10) == b""

    with caplog.at_level(logging.ERROR, logger="sanschat"):
        run(test)
    assert len(chat.lost) == 1 and isinstance(chat.lost[0], RuntimeError)
    assert any(r.exc_info and r.exc_info[1] is chat.lost[0] for r in caplog.records)


def test_failing_producer_is_logged_and_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"first\r\n"
        raise ValueError("producer failed")

    class Producing(Recorded):
        def found_frame(self, frame: bytes) -> None:
            self.push_with_producer(chunks())

    chat = Producing()

    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, chat)
            await client.send_all(b"go\r\n")
            assert await read_until_eof(client) == b""  # the joined chunk is never sent

    with caplog.at_level(logging.ERROR, logger="sanschat"):
        run(test)
    assert len(chat.lost) == 1 and isinstance(chat.lost[0], ValueError)
    assert any("Producing" in r.getMessage() for r in caplog.records)


def test_close_from_a_callback_drops_unsent_output_and_is_safe_twice() -> None:
    class Abrupt(Recorded):
        def found_frame(self, frame: bytes) -> None:
            self.push(b"never sent\r\n")
            self.close()
            self.close()

    chat = Abrupt()

    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, chat)
            await client.send_all(b"bye\r\n")
            assert await read_until_eof(client) == b""
        assert chat.lost == [None]

    run(test)


def test_output_pushed_outside_a_callback_is_sent_without_any_read() -> None:
    chat = Recorded()

    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, chat)
            await trio.testing.wait_all_tasks_blocked()
            chat.push(b"unsolicited\r\n")  # from another task: output_ready wakes the writer
            assert await read_exactly(client, 13) == b"unsolicited\r\n"
            chat.close_when_done()
            assert await read_until_eof(client) == b""

    run(test)


def test_callback_sent_after_the_connection_ended_is_dropped() -> None:
    ran: list[int] = []

    class Keeper(Recorded):
        def connection_made(self) -> None:
            self.kept = self.transport

    chat = Keeper()

    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, chat)
            await client.send_eof()
            assert await read_until_eof(client) == b""
        chat.kept.call_soon_threadsafe(lambda: ran.append(1))
        await trio.testing.wait_all_tasks_blocked()

    run(test)
    assert chat.lost == [None] and ran == []


# ---------------------------------------------------------------- backpressure


def test_peer_that_never_reads_stops_the_reading_and_bounds_queued_output() -> None:
    chat = Recorded()
    line = b"x" * 1022 + b"\r\n"
    flood = line * (8 * HIGH_WATER // len(line))

    async def test() -> None:
        server, client = trio.testing.lockstep_stream_pair()  # send_all waits for the reader
        sent = trio.Event()

        async def sender() -> None:
            await client.send_all(flood)
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, chat)
            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set(), "the server read everything a non-reader sent"
            assert chat.channel.buffered_output <= HIGH_WATER + READ_SIZE
            echoed = await read_exactly(client, len(flood))  # reading lets it all through
            assert sent.is_set()
            await client.send_eof()
            assert await read_until_eof(client) == b""
        assert echoed == flood

    run(test)


def test_producer_is_not_pulled_while_the_peer_is_not_reading() -> None:
    pulled = [0]
    block = b"z" * 65536

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            pulled[0] += 1
            yield block

    class Big(Recorded):
        def connection_made(self) -> None:
            self.push_with_producer(chunks())
            self.close_when_done()

    async def test() -> None:
        server, client = trio.testing.lockstep_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, Big())
            await trio.testing.wait_all_tasks_blocked()
            assert pulled[0] * len(block) <= 2 * driver.SEND_SIZE
            assert len(await read_until_eof(client)) == 100 * len(block)

    run(test)


# ---------------------------------------------------------------- idle timeout (virtual time)


class Quiet(Recorded):
    idle_timeout = 5.0


def test_idle_timeout_closes_a_silent_connection_after_the_timeout() -> None:
    chat = Quiet()

    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            nursery.start_soon(driver.run_chat, server, chat)
            assert await read_until_eof(client) == b""
            assert 5.0 <= trio.current_time() - start < 5.5
        assert chat.lost == [None]

    run(test, virtual=True)


def test_idle_timeout_is_pushed_back_by_traffic() -> None:
    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, Quiet())
            for _ in range(4):  # 12 s of traffic every 3 s: never 5 s idle
                await trio.sleep(3)
                await client.send_all(b"tick\r\n")
                assert await read_exactly(client, 6) == b"tick\r\n"
            last = trio.current_time()
            assert await read_until_eof(client) == b""
            assert 5.0 <= trio.current_time() - last < 5.5

    run(test, virtual=True)


def test_idle_hook_may_keep_the_connection_and_is_called_again() -> None:
    class Pinger(Quiet):
        def idle(self) -> None:
            self.push(b"ping\r\n")

    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, Pinger())
            start = trio.current_time()
            assert await read_exactly(client, 12) == b"ping\r\nping\r\n"
            assert 10.0 <= trio.current_time() - start < 10.5
            nursery.cancel_scope.cancel()

    run(test, virtual=True)


def test_set_idle_timeout_none_disables_and_a_later_value_restarts_it() -> None:
    class Changing(Quiet):
        def found_frame(self, frame: bytes) -> None:
            self.set_idle_timeout(None if frame == b"off" else 2.0)

    async def test() -> None:
        server, client = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run_chat, server, Changing())
            await client.send_all(b"off\r\n")
            await trio.sleep(60)
            await client.send_all(b"on\r\n")
            start = trio.current_time()
            assert await read_until_eof(client) == b""
            assert 2.0 <= trio.current_time() - start < 2.5

    run(test, virtual=True)


def test_set_idle_timeout_refuses_a_non_positive_value() -> None:
    class Zero(Recorded):
        def connection_made(self) -> None:
            with pytest.raises(ValueError, match="idle timeout"):
                self.set_idle_timeout(0)
            self.close()

    async def test() -> None:
        server, _client = trio.testing.memory_stream_pair()
        await driver.run_chat(server, Zero())

    run(test)


# ---------------------------------------------------------------- over TCP


def test_handler_exception_is_logged_and_closes_only_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chats: list[Recorded] = []

    class Fragile(Recorded):
        def found_frame(self, frame: bytes) -> None:
            if frame == b"boom":
                raise RuntimeError("handler failed on purpose")
            super().found_frame(frame)

    def factory() -> Chat:
        chats.append(Fragile())
        return chats[-1]

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, factory)
            healthy = await trio.open_tcp_stream("127.0.0.1", port)
            faulty = await trio.open_tcp_stream("127.0.0.1", port)
            await faulty.send_all(b"boom\r\n")
            assert await read_until_eof(faulty) == b""
            await healthy.send_all(b"fine\r\n")
            assert await read_exactly(healthy, 6) == b"fine\r\n"
            for stream in (healthy, faulty):
                await stream.aclose()
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.ERROR, logger="sanschat"):
        run(test)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "127.0.0.1" in errors[0].getMessage()
    assert sum(isinstance(c.lost[0], RuntimeError) for c in chats) == 1


def test_failing_factory_drops_that_connection_only_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = [0]

    def factory() -> Chat:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("no chat for you")
        return Echo()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, factory)
            async with await trio.open_tcp_stream("127.0.0.1", port) as dropped:
                assert await read_until_eof(dropped) == b""
            async with await trio.open_tcp_stream("127.0.0.1", port) as served:
                await served.send_all(b"hi\r\n")
                assert await read_exactly(served, 4) == b"hi\r\n"
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.ERROR, logger="sanschat"):
        run(test)
    assert [r.exc_info[1].args for r in caplog.records if r.exc_info] == [("no chat for you",)]


def test_peer_reset_detaches_with_the_oserror_and_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chats, factory = recording()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, factory)
            victim = await trio.open_tcp_stream("127.0.0.1", port)
            await victim.send_all(b"half a fra")
            linger = struct.pack("ii", 1, 0)
            victim.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            await victim.aclose()  # RST
            while not (chats and chats[0].lost):
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.WARNING, logger="sanschat"):
        run(test)
    assert isinstance(chats[0].lost[0], ConnectionResetError)
    assert not caplog.records


def test_half_closed_peer_still_receives_output_queued_later() -> None:
    class Patient(Recorded):
        def __init__(self) -> None:
            super().__init__()
            self.eof = trio.Event()

        def eof_received(self, unframed: bytes) -> None:
            self.eof.set()  # no close_when_done: the reply comes later

    chats: list[Patient] = []

    def factory() -> Chat:
        chats.append(Patient())
        return chats[-1]

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, factory)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            await client.send_all(b"hi\r\n")
            await client.send_eof()
            assert await read_exactly(client, 4) == b"hi\r\n"
            await chats[0].eof.wait()
            chats[0].push(b"late\r\n")
            chats[0].close_when_done()
            assert await read_until_eof(client) == b"late\r\n"
            await client.aclose()
            nursery.cancel_scope.cancel()
        assert chats[0].lost == [None]

    run(test)


def test_get_extra_info_names_the_tcp_endpoints_and_is_none_over_memory() -> None:
    info: dict[str, Any] = {}

    class Asking(Recorded):
        def connection_made(self) -> None:
            info.update(
                peer=self.peername,
                sock=self.transport.get_extra_info("sockname"),
                socket=self.transport.get_extra_info("socket"),
                other=self.transport.get_extra_info("nonsense", "dflt"),
            )
            self.close()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, Asking)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            assert await read_until_eof(client) == b""
            assert info["peer"] == client.socket.getsockname()
            assert info["sock"] == ("127.0.0.1", port)
            assert info["socket"] is not None and info["other"] == "dflt"
            await client.aclose()
            server, _client = trio.testing.memory_stream_pair()
            await driver.run_chat(server, Asking())
            assert info["peer"] is None and info["socket"] is None
            nursery.cancel_scope.cancel()

    run(test)


def test_connect_runs_a_client_chat_against_a_trio_server() -> None:
    class Client(Chat):
        terminator = b"\r\n"

        def __init__(self) -> None:
            super().__init__()
            self.replies: list[bytes] = []

        def connection_made(self) -> None:
            self.push(b"one\r\ntwo\r\n")

        def found_frame(self, frame: bytes) -> None:
            self.replies.append(frame)
            if len(self.replies) == 2:
                self.close()

    client = Client()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, Echo)
            await driver.connect(client, "127.0.0.1", port)
            nursery.cancel_scope.cancel()

    run(test)
    assert client.replies == [b"one", b"two"]


# ---------------------------------------------------------------- the Connection style


def test_connection_events_follow_a_terminator_switched_mid_stream() -> None:
    async def test() -> None:
        ours, peer = trio.testing.memory_stream_pair()
        await peer.send_all(b"5\r\nhello3\r\nabcBYE")
        await peer.send_eof()
        conn = driver.Connection(ours)
        frame = bytearray()
        frames: list[bytes] = []
        events = []
        async with conn:
            async for event in conn:
                events.append(event)
                if isinstance(event, Data):
                    frame += event.data
                elif isinstance(event, TerminatorFound):
                    frames.append(bytes(frame))
                    if event.terminator == b"\r\n":
                        conn.set_terminator(int(frame))
                    else:
                        conn.set_terminator(b"\r\n")
                    frame.clear()
        assert frames == [b"5", b"hello", b"3", b"abc"]
        assert events[-2:] == [Data(b"BYE"), EndOfStream(incomplete=True)]

    run(test)


def test_connection_reads_only_when_the_consumer_asks() -> None:
    async def test() -> None:
        ours, peer = trio.testing.lockstep_stream_pair()
        conn = driver.Connection(ours)
        sent = trio.Event()

        async def sender() -> None:
            await peer.send_all(b"first\r\n")
            await peer.send_all(b"second\r\n")
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            frames = conn.frames()
            assert await frames.__anext__() == b"first"
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set(), "read ahead of the consumer"
            assert await frames.__anext__() == b"second"
            await sent.wait()

    run(test)


def test_connection_frames_end_at_eof_with_the_unterminated_rest_in_unframed() -> None:
    async def test() -> None:
        ours, peer = trio.testing.memory_stream_pair()
        await peer.send_all(b"a\r\nb\nc\r")
        await peer.send_eof()
        conn = driver.Connection(ours, terminator=(b"\r\n", b"\n", b"\r"))
        assert [frame async for frame in conn.frames()] == [b"a", b"b", b"c"]
        assert conn.unframed == b""
        assert [frame async for frame in conn.frames()] == []  # stays ended
        ours, peer = trio.testing.memory_stream_pair()
        await peer.send_all(b"a\r\nrest")
        await peer.send_eof()
        conn = driver.Connection(ours)
        assert [frame async for frame in conn.frames()] == [b"a"]
        assert conn.unframed == b"rest"

    run(test)


def test_connection_mixing_events_and_frames_loses_nothing() -> None:
    async def test() -> None:
        ours, peer = trio.testing.memory_stream_pair()
        await peer.send_all(b"one\r\ntwo\r\nthree\r\nfour\r\n")
        await peer.send_eof()
        conn = driver.Connection(ours)
        frames = conn.frames()
        assert await frames.__anext__() == b"one"
        assert await conn.__anext__() == Data(b"two")
        assert await frames.__anext__() == b""  # the rest of "two", already delivered as Data
        assert [f async for f in frames] == [b"three", b"four"]
        assert [e async for e in conn] == []  # frames() has seen the end of the stream

    run(test)


def test_connection_raises_frame_too_large_to_the_consumer_every_time() -> None:
    async def test() -> None:
        ours, peer = trio.testing.memory_stream_pair()
        await peer.send_all(b"ok\r\n" + b"x" * 100)
        conn = driver.Connection(ours, max_frame_size=10)
        frames = conn.frames()
        assert await frames.__anext__() == b"ok"
        for _ in range(2):
            with pytest.raises(FrameTooLarge):
                await frames.__anext__()

    run(test)


def test_connection_send_eof_half_closes_and_reading_goes_on() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, Echo)
            async with await driver.open_connection("127.0.0.1", port) as conn:
                await conn.send(b"GET / HTTP/1.0\r\n")
                await conn.send(memoryview(b"line two\r\n"))
                await conn.send_eof()
                assert [f async for f in conn.frames()] == [b"GET / HTTP/1.0", b"line two"]
            nursery.cancel_scope.cancel()

    run(test)


def test_connection_reads_an_http_reply_switching_to_a_length_terminator() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, HTTPRequestHandler)
            conn = await driver.open_connection("127.0.0.1", port)
            async with conn:
                await conn.send(b"POST / HTTP/1.0\r\nContent-Length: 7\r\n\r\npayload")
                frames = conn.frames()
                assert await frames.__anext__() == b"HTTP/1.0 200 OK"
                length = 0
                while header := await frames.__anext__():
                    name, _, value = header.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                conn.set_terminator(length)
                assert await frames.__anext__() == b"payload"
                assert [e async for e in conn] == [EndOfStream(incomplete=False)]
            nursery.cancel_scope.cancel()

    run(test)


# ---------------------------------------------------------------- plain TCP: one shared buffer


class Lines(Chat):
    """Records frames through `found_frame`."""

    terminator = b"\r\n"

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []

    def found_frame(self, frame: bytes) -> None:
        self.frames.append(frame)


class Pieces(Chat):
    """Records frames through the asynchat callbacks, keeping the pieces as given."""

    terminator = b"\r\n"

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[bytes] = []
        self.frames: list[bytes] = []

    def collect_incoming_data(self, data: bytes) -> None:
        self.pieces.append(data)

    def found_terminator(self) -> None:
        self.frames.append(b"".join(self.pieces))
        self.pieces = []


@pytest.mark.parametrize("kind", [Lines, Pieces])
def test_feed_keeps_nothing_of_a_buffer_the_driver_overwrites_at_once(kind: type[Chat]) -> None:
    chat = kind()
    chat.attach(RecordingTransport())
    buffer = bytearray(16)
    view = memoryview(buffer)
    for piece in [b"one\r\ntw", b"o\r\nthr", b"ee\r", b"\nfo", b"ur\r\n"]:
        buffer[: len(piece)] = piece
        chat.feed(view[: len(piece)])
        buffer[:] = b"#" * len(buffer)  # the next read reuses the buffer
    assert chat.frames == [b"one", b"two", b"three", b"four"]  # type: ignore[attr-defined]


def test_tcp_connections_read_into_one_shared_buffer_and_are_fed_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_into: list[int] = []
    readv = os.readv

    def recording_readv(fd: int, buffers: Any) -> int:
        read_into.extend(id(buffer.obj) for buffer in buffers)
        return readv(fd, buffers)

    monkeypatch.setattr(os, "readv", recording_readv)
    chats, factory = recording()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, factory)
            for _ in range(2):
                client = await trio.open_tcp_stream("127.0.0.1", port)
                await client.send_all(b"ping\r\n")
                assert await read_exactly(client, 6) == b"ping\r\n"
                await client.aclose()
            nursery.cancel_scope.cancel()

    run(test)
    assert len(chats) == 2 and len(read_into) >= 2
    assert len(set(read_into)) == 1  # two connections, one read buffer


def test_tcp_close_from_a_callback_drops_the_output_it_queued() -> None:
    class Abrupt(Recorded):
        def found_frame(self, frame: bytes) -> None:
            self.push(b"never sent\r\n")
            self.close()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, Abrupt)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            await client.send_all(b"bye\r\n")
            assert await read_until_eof(client) == b""
            await client.aclose()
            nursery.cancel_scope.cancel()

    run(test)


def test_tcp_output_pushed_outside_a_callback_is_sent_then_closed_when_done() -> None:
    chats, factory = recording()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, factory)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            while not chats:
                await trio.sleep(0.001)
            chats[0].push(b"unsolicited\r\n")
            assert await read_exactly(client, 13) == b"unsolicited\r\n"
            chats[0].push(b"last\r\n")
            chats[0].close_when_done()
            assert await read_until_eof(client) == b"last\r\n"
            await client.aclose()
            nursery.cancel_scope.cancel()
        assert chats[0].lost == [None]

    run(test)


def test_tcp_peer_that_never_reads_stops_the_reading_then_gets_every_byte() -> None:
    chats: list[Recorded] = []
    line = b"y" * 1022 + b"\r\n"
    flood = line * (48 * HIGH_WATER // len(line))  # more than the kernel buffers both ways

    def factory() -> Chat:
        chats.append(Recorded())
        return chats[-1]

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, factory)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            sent = trio.Event()

            async def sender() -> None:
                await client.send_all(flood)
                sent.set()

            nursery.start_soon(sender)
            while not chats or chats[0].channel.buffered_output <= HIGH_WATER:
                await trio.sleep(0.001)
            for _ in range(3):  # reading has stopped: the output does not grow any more
                await trio.sleep(0.01)
                assert chats[0].channel.buffered_output <= HIGH_WATER + READ_SIZE
            assert not sent.is_set()
            echoed = await read_exactly(client, len(flood))  # reading lets it all through
            assert echoed == flood
            with trio.fail_after(10):  # the sender task may resume after the reader
                await sent.wait()
            await client.send_eof()
            assert await read_until_eof(client) == b""
            await client.aclose()
            nursery.cancel_scope.cancel()
        assert chats[0].lost == [None]

    run(test)


# ---------------------------------------------------------------- the read poller


needs_poller = pytest.mark.parametrize("read_path", ["poller"], indirect=True)


@needs_poller
def test_tcp_callbacks_run_in_the_poller_task_with_the_connection_task_contextvars(
    read_path: str,
) -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    seen: list[tuple[str, str]] = []

    class Seeing(Echo):
        def found_frame(self, frame: bytes) -> None:
            seen.append((trio.lowlevel.current_task().name, request_id.get("unset")))
            super().found_frame(frame)

    async def test() -> None:
        server_sock, client_sock = trio.socket.socketpair()
        client = trio.SocketStream(client_sock)

        async def connection() -> None:
            request_id.set("conn-1")  # set in the connection's own task, before run_chat
            await driver.run_chat(trio.SocketStream(server_sock), Seeing())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection)
            for line in (b"one\r\n", b"two\r\n"):
                await client.send_all(line)
                assert await read_exactly(client, len(line)) == line
            await client.aclose()

    run(test)
    assert seen == [("sanschat read poller", "conn-1")] * 2


@needs_poller
def test_closing_a_parked_connection_unparks_it_and_an_idle_poller_stops(read_path: str) -> None:
    chats, factory = recording()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await tcp_server(nursery, factory)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            await client.send_all(b"ping\r\n")
            assert await read_exactly(client, 6) == b"ping\r\n"
            poller = driver._POLLER.get()
            assert poller is not None
            assert next(iter(poller._parked.values()))[0]._chat is chats[0]
            chats[0].close()  # outside a callback: the parked task is cancelled
            assert await read_until_eof(client) == b""
            await trio.testing.wait_all_tasks_blocked()
            assert poller._parked == {} and poller._stopped  # and its epoll is closed
            assert poller._epoll.closed and driver._POLLER.get() is None
            await client.aclose()
            again = await trio.open_tcp_stream("127.0.0.1", port)  # a new poller serves it
            await again.send_all(b"pong\r\n")
            assert await read_exactly(again, 6) == b"pong\r\n"
            assert driver._POLLER.get() not in (None, poller)
            await again.aclose()
            nursery.cancel_scope.cancel()
        assert chats[0].lost == [None]

    run(test)


class Escape(BaseException):
    """Not an Exception: the driver does not handle it."""


def test_a_base_exception_from_a_callback_is_raised_in_the_connection_task(
    read_path: str,
) -> None:
    class Escaping(Echo):
        def found_frame(self, frame: bytes) -> None:
            raise Escape(frame)

    async def test() -> None:
        server_sock, client_sock = trio.socket.socketpair()
        client = trio.SocketStream(client_sock)
        await client.send_all(b"boom\r\n")
        try:
            await driver.run_chat(trio.SocketStream(server_sock), Escaping())
        except BaseException as exc:  # (in the connection nursery's exception group)
            escaped, _ = BaseExceptionGroup("", [exc]).split(Escape)
            assert escaped is not None and "boom" in repr(escaped)
        else:
            raise AssertionError("run_chat returned")
        if read_path == "poller":
            await trio.testing.wait_all_tasks_blocked()
            assert driver._POLLER.get() is None  # nothing left parked: it stopped
        await client.aclose()

    run(test)


@needs_poller
def test_connections_read_on_by_themselves_once_the_poller_stops(read_path: str) -> None:
    async def test() -> None:
        poller = driver._ReadPoller()
        driver._POLLER.set(poller)  # this run's poller, run in a nursery the test can stop
        async with trio.open_nursery() as nursery:
            polling = trio.CancelScope()

            async def run_poller() -> None:
                with polling:
                    await poller.run()

            nursery.start_soon(run_poller)
            port = await tcp_server(nursery, Echo)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            await client.send_all(b"one\r\n")
            assert await read_exactly(client, 5) == b"one\r\n"
            assert len(poller._parked) == 1
            polling.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert poller._parked == {} and poller._stopped
            await client.send_all(b"two\r\n")  # read by the connection's own task now
            assert await read_exactly(client, 5) == b"two\r\n"
            await client.aclose()
            nursery.cancel_scope.cancel()

    run(test)


@needs_poller
def test_a_socket_the_poller_cannot_register_is_read_by_its_own_task(read_path: str) -> None:
    class Refusing:
        """An epoll that refuses every socket (as for one closed under the driver)."""

        def __init__(self, epoll: Any) -> None:
            self.fileno, self.poll, self.close = epoll.fileno, epoll.poll, epoll.close

        def register(self, fd: int, eventmask: int = 0) -> None:
            raise OSError(9, "refused for the test")

    async def test() -> None:
        poller = driver._ReadPoller()
        poller._epoll = Refusing(poller._epoll)  # type: ignore[assignment]
        driver._POLLER.set(poller)  # this run's poller: every park fails
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poller.run)
            port = await tcp_server(nursery, Echo)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            for line in (b"one\r\n", b"two\r\n"):  # (a task that parked again would spin)
                await client.send_all(line)
                assert await read_exactly(client, 5) == line
            assert poller._stopped and driver._POLLER.get() is None
            await client.aclose()
            nursery.cancel_scope.cancel()

    run(test)


# ---------------------------------------------------------------- TLS (optional: trustme)


def test_chat_and_connection_over_tls() -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    peers: list[Any] = []

    class Tls(Recorded):
        def connection_made(self) -> None:
            peers.append(self.peername)

    async def handler(stream: Any) -> None:
        tls = trio.SSLStream(stream, server_ctx, server_side=True)
        await driver.run_chat(tls, HTTPRequestHandler() if peers else Tls())

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, handler, 0)
            port = listeners[0].socket.getsockname()[1]

            async def tls_connection() -> driver.Connection:
                tcp = await trio.open_tcp_stream("127.0.0.1", port)
                tls = trio.SSLStream(tcp, client_ctx, server_hostname="localhost")
                return driver.Connection(tls)

            async with await tls_connection() as conn:  # Echo
                await conn.send(b"secret\r\n" * 1000)
                frames = conn.frames()
                for _ in range(1000):
                    assert await frames.__anext__() == b"secret"
                with pytest.raises(NotImplementedError):
                    await conn.send_eof()
            async with await tls_connection() as conn:  # HTTP: close_notify after the reply
                await conn.send(b"GET /tls HTTP/1.0\r\n\r\n")
                conn.set_terminator(None)
                reply = b"".join([e.data async for e in conn if isinstance(e, Data)])
                assert reply.endswith(b"sanschat: GET /tls\n")
            nursery.cancel_scope.cancel()
        assert peers and peers[0][0] == "127.0.0.1"

    run(test)


# ---------------------------------------------------------------- start_server


def test_start_server_on_a_port_in_use_raises_the_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            driver.start_server(Echo, "127.0.0.1", taken.getsockname()[1])


def test_stop_is_idempotent_and_the_port_is_released() -> None:
    server = driver.start_server(Echo)
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    with socket.create_connection(server.address, timeout=TIMEOUT) as sock:
        sock.sendall(b"x\r\n")
        assert sock.recv(3) == b"x\r\n"
    server.stop()
    server.stop()
    with pytest.raises(ConnectionRefusedError), socket.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
