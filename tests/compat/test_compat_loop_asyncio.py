"""`loop_asyncio` / `run_asyncio`: unmodified dispatchers and async_chats on an asyncio loop.

The scenario tests of ``test_compat_asynchat.py`` and ``test_compat_asyncore.py`` already
run on `run_asyncio` (the ``sanschat-asyncio`` env).  Here: the two example programs
(unchanged classes) served on asyncio next to asyncio stream clients in the same loop, and
the runner's own contract: rounds bounded by ``count`` and ``timeout``, output queued from
another task, sockets closed and reopened inside callbacks, cancellation, errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import compat_example_chat
import compat_example_http
import pytest
from compat_util import TIMEOUT, Env, recorder_class, sanschat_mods, stdlib_mods

from sanschat.compat import asynchat, asyncore


@pytest.fixture
def default_map() -> Iterator[dict[int, Any]]:
    """The default `socket_map`, emptied after the test (the examples use it)."""
    assert asyncore.socket_map == {}
    yield asyncore.socket_map
    asyncore.close_all()


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


async def _serve_while(main: Any, sockmap: dict[int, Any] | None = None) -> Any:
    """Run *main* (a coroutine) while `run_asyncio` drives the map; return its result."""
    runner = asyncio.ensure_future(asyncore.run_asyncio(sockmap))
    try:
        return await main
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


# ---------------------------------------------------------------- the example programs


def test_http_example_on_asyncio_with_asyncio_clients(default_map: dict[int, Any]) -> None:
    server = compat_example_http.http_server("127.0.0.1", 0)
    address = server.socket.getsockname()

    async def request(raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(raw)
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        return answer

    async def main() -> list[bytes]:
        return list(
            await asyncio.gather(
                request(b"GET /one HTTP/1.0\r\n\r\n"),
                request(b"POST /two HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello"),
                *(request(b"GET /%d HTTP/1.0\r\n\r\n" % n) for n in range(3)),
            )
        )

    answers = _run(_serve_while(main()))
    assert answers[0].endswith(b"\r\n\r\nyou asked for /one")
    assert answers[1] == (
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert all(answers[n + 2].endswith(b"for /%d" % n) for n in range(3))
    assert sorted(server.hits) == ["GET /0", "GET /1", "GET /2", "GET /one", "POST /two"]


def test_chat_example_on_loop_asyncio(default_map: dict[int, Any]) -> None:
    server = compat_example_chat.ChatServer("127.0.0.1", 0)
    address = server.socket.getsockname()

    async def main() -> list[bytes]:
        ra, wa = await asyncio.open_connection(*address)
        rb, wb = await asyncio.open_connection(*address)
        got = [await ra.readline()]
        wa.write(b"alice\n")
        got.append(await ra.readline())
        got.append(await rb.readline())
        wb.write(b"bob\nhello\n")
        got += [await rb.readline(), await ra.readline(), await ra.readline()]
        wa.write(b"/quit\n")
        got += [await ra.readline(), await ra.read(), await rb.readline()]
        for writer in (wa, wb):
            writer.close()
            await writer.wait_closed()
        return got

    assert _run(_serve_while(main())) == [
        b"name?\n",
        b"welcome alice\n",
        b"name?\n",
        b"welcome bob\n",
        b"* bob joined\n",
        b"bob: hello\n",
        b"bye\n",
        b"",
        b"* alice left\n",
    ]


# ---------------------------------------------------------------- the runner's contract


def test_loop_asyncio_is_bounded_by_count_and_returns_on_an_empty_map() -> None:
    sockmap: dict[int, Any] = {}
    asyncore.loop_asyncio(map=sockmap)  # empty: returns at once
    listener = asyncore.dispatcher(map=sockmap)
    listener.create_socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    calls: list[bool] = []
    listener.readable = lambda: calls.append(True) or True
    try:
        asyncore.loop_asyncio(timeout=0.001, map=sockmap, count=3)
        assert len(calls) == 3  # one sync per round, as loop() asks once per poll
        assert sockmap == {listener._fileno: listener}
    finally:
        asyncore.close_all(sockmap)


def test_loop_asyncio_refuses_to_run_inside_a_running_loop() -> None:
    sockmap: dict[int, Any] = {}
    disp = asyncore.dispatcher(map=sockmap)
    disp.create_socket()

    async def main() -> None:
        with pytest.raises(RuntimeError):
            asyncore.loop_asyncio(map=sockmap, count=1)

    try:
        asyncio.run(main())
    finally:
        asyncore.close_all(sockmap)


def test_a_map_cannot_be_run_twice_at_once() -> None:
    sockmap: dict[int, Any] = {}
    disp = asyncore.dispatcher(map=sockmap)
    disp.create_socket()

    async def main() -> None:
        first = asyncio.ensure_future(asyncore.run_asyncio(sockmap))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already"):
            await asyncore.run_asyncio(sockmap)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

    try:
        _run(main())
    finally:
        asyncore.close_all(sockmap)


def test_cancelling_unregisters_the_sockets_and_keeps_the_map() -> None:
    env = Env(sanschat_mods(), "asyncio")
    try:
        client = env.recorder(env.chunked_echo(8), b"\n")

        async def main() -> list[bool]:
            runner = asyncio.ensure_future(asyncore.run_asyncio(env.map))
            client.push(b"ping\n")
            while not client.frames:
                await asyncio.sleep(0.002)
            runner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await runner
            loop = asyncio.get_running_loop()
            return [loop.remove_reader(fd) or loop.remove_writer(fd) for fd in env.map]

        assert _run(main()) == [False] * len(env.map)
        assert len(env.map) == 3
    finally:
        env.close()


def test_output_pushed_from_another_task_flows_even_when_the_socket_is_full() -> None:
    sockmap: dict[int, Any] = {}
    made: list[Any] = []

    class Quiet(asynchat.async_chat):
        def collect_incoming_data(self, data: bytes) -> None:
            pass

        def found_terminator(self) -> None:
            pass

    class Listener(asyncore.dispatcher):
        def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
            made.append(Quiet(sock, sockmap))

    listener = Listener(map=sockmap)
    listener.create_socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    payload = bytes(range(256)) * 40_000  # 10 MB: far more than the socket buffers

    async def main() -> int:
        reader, writer = await asyncio.open_connection(*listener.socket.getsockname())
        while not made:
            await asyncio.sleep(0.002)
        made[0].push(payload)  # from this task, outside any event of the map
        made[0].close_when_done()
        received = len(await reader.read())
        writer.close()
        await writer.wait_closed()
        return received

    try:
        assert _run(_serve_while(main(), sockmap)) == len(payload)
    finally:
        asyncore.close_all(sockmap)


def test_closing_and_reconnecting_inside_callbacks_reuses_descriptors_safely() -> None:
    env = Env(sanschat_mods(), "asyncio")
    address = env.serve_lines(lambda chat, line: chat.push(line + b"\n"))
    results: list[bytes] = []
    Recorder = recorder_class(env.mods)

    def on_frame(chat: Any, frame: bytes) -> None:
        results.append(frame)
        chat.close()  # frees the descriptor ...
        if len(results) < 30:  # ... which the next socket, made now, is likely to get
            nxt = Recorder(env.map, b"\n", on_frame=on_frame)
            nxt.connect(address)
            nxt.push(b"round %d\n" % len(results))

    try:
        first = Recorder(env.map, b"\n", on_frame=on_frame)
        first.connect(address)
        first.push(b"round 0\n")
        env.pump(lambda: len(results) == 30, "thirty rounds")
        assert results == [b"round %d" % n for n in range(30)]
    finally:
        env.close()


def test_exit_now_and_keyboard_interrupt_leave_run_asyncio() -> None:
    for error in (asyncore.ExitNow("stop"), KeyboardInterrupt()):
        sockmap: dict[int, Any] = {}

        class Stopper(asyncore.dispatcher):
            failure = error

            def handle_connect(self) -> None:
                pass

            def handle_write(self) -> None:
                raise self.failure

        with socket.create_server(("127.0.0.1", 0)) as listening:
            disp = Stopper(map=sockmap)
            disp.create_socket()
            disp.connect(listening.getsockname())  # writable once connected
            try:
                with pytest.raises(type(error)):
                    asyncore.loop_asyncio(timeout=TIMEOUT, map=sockmap)
                assert disp in sockmap.values()
            finally:
                asyncore.close_all(sockmap)


def test_run_asyncio_returns_once_the_map_is_empty() -> None:
    env = Env(sanschat_mods(), "asyncio")

    def reply(chat: Any, line: bytes) -> None:
        chat.push(b"closing all\n")
        chat.close_when_done()

    client = env.recorder(env.serve_lines(reply), b"\n")
    client.push(b"x\n")
    listener = next(d for d in env.map.values() if d.accepting)
    client.on_frame = lambda chat, frame: listener.close()
    try:
        asyncore.loop_asyncio(timeout=TIMEOUT, map=env.map)
        assert env.map == {}
        assert client.frames == [b"closing all"]
    finally:
        env.close()


@pytest.mark.skipif(stdlib_mods() is None, reason="no stdlib asyncore in this Python")
def test_stdlib_dispatchers_run_on_run_asyncio_too() -> None:
    mods = stdlib_mods()
    assert mods is not None
    env = Env(mods, "select")
    try:
        client = env.recorder(env.chunked_echo(3), b"\r\n")
        client.push(b"duck\r\ntyping\r\n")

        async def main() -> None:
            while len(client.frames) < 2:
                await asyncio.sleep(0.002)

        _run(_serve_while(main(), env.map))
        assert client.frames == [b"duck", b"typing"]
    finally:
        env.close()
