"""asyncore's dispatchers and loops, run against the stdlib and sanschat.compat alike.

Tests taking ``env`` run per module pair and loop driver (see ``conftest.py``); tests
taking ``mods`` per module pair only.  Every socket is closed and every map emptied.
"""

from __future__ import annotations

import errno
import gc
import os
import re
import select
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from compat_util import TIMEOUT, Env, Mods, blocking_client

# ---------------------------------------------------------------- helpers


@pytest.fixture
def pair(mods: Mods) -> Iterator[tuple[Any, socket.socket, dict[int, Any]]]:
    """A plain dispatcher on the server end of a loopback connection, and the client end."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = blocking_client(listener.getsockname())
    conn, _ = listener.accept()
    listener.close()
    sockmap: dict[int, Any] = {}
    server = mods.asyncore.dispatcher(conn, sockmap)
    yield server, client, sockmap
    mods.asyncore.close_all(sockmap, ignore_all=True)
    client.close()


def _recorder(mods: Mods) -> Any:
    class Recording(mods.asyncore.dispatcher):  # type: ignore[name-defined, misc]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.calls: list[str] = []

        def handle_close(self) -> None:
            self.calls.append("close")
            self.close()

        def handle_error(self) -> None:
            self.calls.append("error")
            self.close()

    return Recording


# ---------------------------------------------------------------- over the loop


def test_dispatcher_with_send_echoes_a_large_stream(env: Env) -> None:
    core = env.asyncore

    class Echo(core.dispatcher_with_send):  # type: ignore[name-defined, misc]
        def handle_read(self) -> None:
            self.send(self.recv(8192))

    def accept(sock: socket.socket) -> None:
        Echo(sock, env.map)

    client = env.recorder(env.listen(accept), None)
    payload = bytes(range(256)) * 2000
    client.push(payload)
    env.pump(lambda: len(client.data) >= len(payload), "the echo")
    assert client.data == payload


def test_default_handle_accepted_closes_the_connection(env: Env) -> None:
    core = env.asyncore
    listener = core.dispatcher(map=env.map)
    listener.log_info = lambda message, type="info": None
    listener.create_socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    client = env.recorder(listener.socket.getsockname(), None)
    env.pump(lambda: client.closed, "the connection to be closed")
    assert client.data == b""


def test_connect_to_a_closed_port_calls_handle_error(env: Env) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()  # nothing listens there now
    client = _recorder(env.mods)(None, env.map)
    client.create_socket()
    client.handle_connect = lambda: pytest.fail("connected to a closed port")
    try:
        client.connect(address)
    except ConnectionRefusedError:
        client.calls.append("error")  # refused at once: both modules raise then
        client.close()
    env.pump(lambda: bool(client.calls), "the failed connect")
    assert client.calls[0] in ("error", "close")
    assert client not in env.map.values()


def test_exit_now_leaves_the_loop(env: Env) -> None:
    core = env.asyncore

    class Quitter(core.dispatcher):  # type: ignore[name-defined, misc]
        def handle_write(self) -> None:
            raise core.ExitNow("done")

    def accept(sock: socket.socket) -> None:
        Quitter(sock, env.map)

    address = env.listen(accept)
    with blocking_client(address), pytest.raises(core.ExitNow):
        env.pump(lambda: False, "ExitNow")


def test_handle_error_logs_a_compact_traceback_and_closes(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    core = env.asyncore

    class Failing(core.dispatcher):  # type: ignore[name-defined, misc]
        def handle_read(self) -> None:
            raise ValueError("broken handler")

        def writable(self) -> bool:
            return False

    made: list[Any] = []

    def accept(sock: socket.socket) -> None:
        made.append(Failing(sock, env.map))

    with blocking_client(env.listen(accept)) as client:
        client.sendall(b"x")
        env.pump(lambda: bool(made) and not made[0].connected, "the failing dispatcher")
    out = capsys.readouterr().out
    assert out.startswith("error: uncaptured python exception, closing channel <")
    assert "(<class 'ValueError'>:broken handler [" in out
    assert re.search(r"\[[^|\]]+\|handle_read\|\d+\]", out)
    assert made[0] not in env.map.values()


# ---------------------------------------------------------------- dispatcher methods


def test_repr_says_listening_or_connected_and_the_address(
    mods: Mods, pair: tuple[Any, socket.socket, dict[int, Any]]
) -> None:
    server, client, sockmap = pair
    host, port = client.getsockname()
    module = mods.asyncore.__name__.replace(".", r"\.")
    pattern = rf"<{module}\.dispatcher connected {host}:{port} at 0x[0-9a-f]+>"
    assert re.fullmatch(pattern, repr(server))
    listener = mods.asyncore.dispatcher(map=sockmap)
    listener.create_socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    assert " listening 127.0.0.1:0 at " in repr(listener)
    unix = mods.asyncore.dispatcher(map=sockmap)
    unix.addr = "/tmp/some.sock"
    assert "'/tmp/some.sock'" in repr(unix)


def test_a_connected_socket_makes_a_connected_dispatcher(
    pair: tuple[Any, socket.socket, dict[int, Any]],
) -> None:
    server, client, sockmap = pair
    assert server.connected
    assert server.addr == client.getsockname()
    assert sockmap == {server.socket.fileno(): server}
    assert not server.socket.getblocking()


def test_an_unconnected_socket_makes_an_unconnected_dispatcher(mods: Mods) -> None:
    sockmap: dict[int, Any] = {}
    sock = socket.socket()
    disp = mods.asyncore.dispatcher(sock, sockmap)
    assert not disp.connected
    assert disp.addr is None
    disp.close()
    assert sockmap == {}


def test_recv_at_end_of_stream_calls_handle_close(
    mods: Mods, pair: tuple[Any, socket.socket, dict[int, Any]]
) -> None:
    server, client, sockmap = pair
    calls: list[str] = []
    server.handle_close = lambda: calls.append("close")
    client.sendall(b"abc")
    client.close()
    mods.asyncore.loop(timeout=TIMEOUT, map=sockmap, count=1)  # readable now
    assert server.recv(10) == b"abc"
    assert server.recv(10) == b""
    assert calls == ["close"]


def test_recv_and_send_on_a_reset_connection_call_handle_close(
    pair: tuple[Any, socket.socket, dict[int, Any]],
) -> None:
    server, client, _ = pair
    calls: list[str] = []
    server.handle_close = lambda: calls.append("close")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # sends RST
    select.select([server.socket], [], [], TIMEOUT)
    assert server.recv(10) == b""
    assert calls == ["close"]
    assert server.send(b"x" * 100) == 0
    assert calls == ["close", "close"]


def test_recv_with_nothing_to_read_raises_blocking_io_error(
    pair: tuple[Any, socket.socket, dict[int, Any]],
) -> None:
    server, _, _ = pair
    with pytest.raises(BlockingIOError):
        server.recv(10)


def test_send_returns_zero_when_the_socket_is_full(
    pair: tuple[Any, socket.socket, dict[int, Any]],
) -> None:
    server, _, _ = pair
    block = b"x" * 65536
    for _ in range(10_000):
        if server.send(block) == 0:
            break
    else:
        pytest.fail("the socket never filled")


def test_accept_returns_none_without_a_pending_connection(mods: Mods) -> None:
    sockmap: dict[int, Any] = {}
    listener = mods.asyncore.dispatcher(map=sockmap)
    listener.create_socket()
    listener.set_reuse_addr()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        assert listener.accepting
        assert listener.accept() is None
        assert listener.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert listener.family_and_type == (socket.AF_INET, socket.SOCK_STREAM)
    finally:
        listener.close()
    assert not listener.accepting
    assert sockmap == {}


def test_handle_expt_event_without_error_calls_handle_expt(
    pair: tuple[Any, socket.socket, dict[int, Any]],
) -> None:
    server, _, _ = pair
    calls: list[str] = []
    server.handle_expt = lambda: calls.append("expt")
    server.handle_expt_event()
    assert calls == ["expt"]


def test_log_and_log_info(mods: Mods, capsys: pytest.CaptureFixture[str]) -> None:
    disp = mods.asyncore.dispatcher(map={})
    disp.log("hit")
    disp.log_info("hello")
    disp.log_info("quiet", "warning")  # in ignore_log_types
    disp.log_info("loud", "error")
    captured = capsys.readouterr()
    assert captured.err == "log: hit\n"
    assert captured.out == "info: hello\nerror: loud\n"


def test_default_socket_map_is_used_without_a_map(mods: Mods) -> None:
    core = mods.asyncore
    disp = core.dispatcher()
    try:
        disp.create_socket()
        assert core.socket_map[disp.socket.fileno()] is disp
    finally:
        core.close_all()
    assert core.socket_map == {}


# ---------------------------------------------------------------- module functions


def test_compact_traceback(mods: Mods) -> None:
    def inner() -> None:
        raise KeyError("k")

    try:
        inner()
    except KeyError:
        (file, function, line), kind, value, info = mods.asyncore.compact_traceback()
    assert (file, function, kind) == (__file__, "inner", KeyError)
    assert isinstance(value, KeyError) and int(line) > 0
    assert info.endswith(f"[{__file__}|inner|{line}]")
    assert info.startswith(f"[{__file__}|test_compact_traceback|")
    with pytest.raises(AssertionError):
        mods.asyncore.compact_traceback()


def test_close_all_closes_everything_and_ignores_ebadf(mods: Mods) -> None:
    core = mods.asyncore

    class Closing(core.dispatcher):  # type: ignore[name-defined, misc]
        def __init__(self, sockmap: dict[int, Any], error: int | None) -> None:
            super().__init__(map=sockmap)
            self.error = error
            self.closed = False

        def close(self) -> None:
            self.closed = True
            if self.error is not None:
                raise OSError(self.error, "failed")

    sockmap: dict[int, Any] = {}
    items = [Closing(sockmap, errno.EBADF), Closing(sockmap, None)]
    for number, item in enumerate(items):
        sockmap[1000 + number] = item
    core.close_all(sockmap)
    assert sockmap == {} and all(item.closed for item in items)
    sockmap[1] = Closing(sockmap, errno.EPERM)
    with pytest.raises(OSError):
        core.close_all(sockmap)
    core.close_all(sockmap, ignore_all=True)
    assert sockmap == {}


class _Fake:
    """An object in a map that records the events it gets."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def _event(self, name: str) -> None:
        self.calls.append(name)
        if self.fail is not None:
            raise self.fail

    def handle_read_event(self) -> None:
        self._event("read")

    def handle_write_event(self) -> None:
        self._event("write")

    def handle_expt_event(self) -> None:
        self._event("expt")

    def handle_close(self) -> None:
        self.calls.append("close")

    def handle_error(self) -> None:
        self.calls.append("error")


@pytest.mark.parametrize(
    ("flags", "fail", "expected"),
    [
        (select.POLLIN, None, ["read"]),
        (select.POLLIN | select.POLLOUT | select.POLLPRI, None, ["read", "write", "expt"]),
        (select.POLLHUP, None, ["close"]),
        (select.POLLIN | select.POLLERR, None, ["read", "close"]),
        (select.POLLNVAL, None, ["close"]),
        (select.POLLIN, OSError(errno.ECONNRESET, "reset"), ["read", "close"]),
        (select.POLLOUT, OSError(errno.EACCES, "denied"), ["write", "error"]),
        (select.POLLIN, ValueError("bug"), ["read", "error"]),
    ],
)
def test_readwrite_dispatches_poll_flags(
    mods: Mods, flags: int, fail: BaseException | None, expected: list[str]
) -> None:
    fake = _Fake(fail)
    mods.asyncore.readwrite(fake, flags)
    assert fake.calls == expected


@pytest.mark.parametrize("name", ["read", "write", "_exception", "readwrite"])
def test_event_wrappers_let_exit_now_through_and_report_the_rest(mods: Mods, name: str) -> None:
    core = mods.asyncore
    wrapper = getattr(core, name)
    args = (select.POLLIN | select.POLLOUT | select.POLLPRI,) if name == "readwrite" else ()
    with pytest.raises(core.ExitNow):
        wrapper(_Fake(core.ExitNow()), *args)
    fake = _Fake(RuntimeError("bug"))
    wrapper(fake, *args)
    assert fake.calls[-1] == "error"


@pytest.mark.parametrize("use_poll", [False, True], ids=["select", "poll"])
def test_loop_runs_count_polls_and_skips_the_idle(mods: Mods, use_poll: bool) -> None:
    class Idle(_Fake):
        accepting = False

        def readable(self) -> bool:
            self.calls.append("asked")
            return False

        def writable(self) -> bool:
            return False

    idle = Idle()
    mods.asyncore.loop(timeout=0.001, use_poll=use_poll, map={12345: idle}, count=3)
    assert idle.calls == ["asked"] * 3
    mods.asyncore.loop(map={})  # an empty map returns at once
    assert mods.asyncore.poll3 is mods.asyncore.poll2


@pytest.mark.skipif(os.name != "posix", reason="file_dispatcher is POSIX only")
def test_file_dispatcher_reads_a_pipe(mods: Mods) -> None:
    core = mods.asyncore
    got: list[bytes] = []

    class Reader(core.file_dispatcher):  # type: ignore[name-defined, misc]
        def handle_read(self) -> None:
            got.append(self.recv(100))

        def writable(self) -> bool:
            return False

    read_end, write_end = os.pipe()
    sockmap: dict[int, Any] = {}
    try:
        reader = Reader(read_end, sockmap)
        assert reader.connected
        os.write(write_end, b"through the pipe")
        core.loop(timeout=TIMEOUT, map=sockmap, count=1)
        assert got == [b"through the pipe"]
        assert reader.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        with pytest.raises(NotImplementedError):
            reader.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    finally:
        core.close_all(sockmap)
        os.close(read_end)
        os.close(write_end)


@pytest.mark.skipif(os.name != "posix", reason="file_wrapper is POSIX only")
def test_file_wrapper_dups_closes_once_and_warns_if_left_open(mods: Mods) -> None:
    read_end, write_end = os.pipe()
    try:
        wrapper = mods.asyncore.file_wrapper(write_end)
        assert wrapper.fileno() != write_end
        assert wrapper.send(b"ab") == 2
        assert os.read(read_end, 2) == b"ab"
        wrapper.close()
        wrapper.close()
        assert wrapper.fileno() == -1
        leaked = mods.asyncore.file_wrapper(write_end)
        with pytest.warns(ResourceWarning):
            del leaked
            gc.collect()
    finally:
        os.close(read_end)
        os.close(write_end)
