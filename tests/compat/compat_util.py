"""Helpers for the compat tests: the module pairs under test, loopback peers, bounded loops.

Every scenario runs against a *module pair*: the stdlib's ``asynchat``/``asyncore`` (where
this Python still has them, i.e. up to 3.11) and ``sanschat.compat``'s, so any difference
between them shows up as a failing test on one side only.  An `Env` is one pair, one way of
running the loop (``select``, ``poll``, or ``asyncio`` for sanschat's `loop_asyncio`) and
one private socket map, closed after the test.  Every wait is bounded by `TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

TIMEOUT = 10.0  # seconds any single wait may take before the test fails
ROUND = 0.01  # seconds one poll of the loop may wait


@dataclass(frozen=True)
class Mods:
    """One pair of modules under test."""

    name: str
    asynchat: Any
    asyncore: Any

    @property
    def is_stdlib(self) -> bool:
        """True for Python's own modules."""
        return self.name == "stdlib"


def stdlib_mods() -> Mods | None:
    """Python's ``asynchat`` and ``asyncore``, or None where they are gone (3.12+)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            chat: ModuleType = importlib.import_module("asynchat")
            core: ModuleType = importlib.import_module("asyncore")
    except ImportError:
        return None
    return Mods("stdlib", chat, core)


def sanschat_mods() -> Mods:
    """``sanschat.compat.asynchat`` and ``sanschat.compat.asyncore``."""
    from sanschat.compat import asynchat, asyncore

    return Mods("sanschat", asynchat, asyncore)


def get_mods(name: str) -> Mods | None:
    """The pair called *name* (``"stdlib"`` or ``"sanschat"``), None if not available."""
    return stdlib_mods() if name == "stdlib" else sanschat_mods()


class Env:
    """A module pair, a way to run the loop, and a private socket map."""

    def __init__(self, mods: Mods, driver: str) -> None:
        self.mods = mods
        self.driver = driver
        self.map: dict[int, Any] = {}
        self.served: list[Any] = []  # the chats `serve_lines` made, in order

    @property
    def asynchat(self) -> Any:
        """The ``asynchat`` module under test."""
        return self.mods.asynchat

    @property
    def asyncore(self) -> Any:
        """The ``asyncore`` module under test."""
        return self.mods.asyncore

    def pump(self, until: Callable[[], bool], what: str) -> None:
        """Run the loop on this env's map until *until()* holds; fail after `TIMEOUT`."""
        if self.driver == "asyncio":
            asyncio.run(self._pump_asyncio(until, what))
            return
        deadline = time.monotonic() + TIMEOUT
        use_poll = self.driver == "poll"
        while not until():
            assert self.map, f"the socket map emptied before {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.asyncore.loop(timeout=ROUND, use_poll=use_poll, map=self.map, count=1)

    async def _pump_asyncio(self, until: Callable[[], bool], what: str) -> None:
        runner = asyncio.ensure_future(self.asyncore.run_asyncio(self.map))
        deadline = time.monotonic() + TIMEOUT
        try:
            while not until():
                if runner.done():
                    runner.result()  # raises what the runner raised
                    raise AssertionError(f"the socket map emptied before {what}")
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.002)
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    def settle(self, rounds: int = 5) -> None:
        """Run a few more rounds (for checks that something does *not* happen)."""
        if self.driver == "asyncio":
            done = iter(range(rounds * 10))
            asyncio.run(self._pump_asyncio(lambda: next(done, None) is None, "settling"))
            return
        use_poll = self.driver == "poll"
        self.asyncore.loop(timeout=ROUND, use_poll=use_poll, map=self.map, count=rounds)

    def close(self) -> None:
        """Close every dispatcher of the map."""
        self.asyncore.close_all(self.map, ignore_all=True)

    # ------------------------------------------------------------------ peers

    def listen(self, on_accept: Callable[[socket.socket], object]) -> tuple[str, int]:
        """A listening dispatcher that calls *on_accept(sock)*; returns its address."""
        core = self.asyncore

        class Listener(core.dispatcher):  # type: ignore[name-defined, misc]
            def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
                on_accept(sock)

        listener = Listener(map=self.map)
        listener.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.set_reuse_addr()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        address: tuple[str, int] = listener.socket.getsockname()
        return address

    def chunked_echo(self, chunk: int) -> tuple[str, int]:
        """A server echoing every byte back, at most *chunk* bytes per ``send``."""
        core = self.asyncore
        env = self

        class ChunkedEcho(core.dispatcher):  # type: ignore[name-defined, misc]
            def __init__(self, sock: socket.socket) -> None:
                super().__init__(sock, env.map)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.out = bytearray()

            def handle_read(self) -> None:
                self.out += self.recv(4096)

            def writable(self) -> bool:
                return bool(self.out)

            def handle_write(self) -> None:
                del self.out[: self.send(bytes(self.out[:chunk]))]

            def handle_close(self) -> None:
                self.close()

        return self.listen(ChunkedEcho)

    def serve_lines(
        self, reply: Callable[[Any, bytes], object], **attributes: Any
    ) -> tuple[str, int]:
        """A server of `async_chat` channels made in ``handle_accepted``: each line (``\\n``)
        received is passed to *reply(chat, line)*; *attributes* are set on each chat."""
        chat = self.asynchat
        env = self

        class LineServer(chat.async_chat):  # type: ignore[name-defined, misc]
            def __init__(self, sock: socket.socket) -> None:
                super().__init__(sock, env.map)
                for name, value in attributes.items():
                    setattr(self, name, value)
                self.set_terminator(b"\n")
                self.current: list[bytes] = []
                env.served.append(self)

            def collect_incoming_data(self, data: bytes) -> None:
                self.current.append(data)

            def found_terminator(self) -> None:
                line = b"".join(self.current)
                self.current = []
                reply(self, line)

        return self.listen(LineServer)

    def recorder(self, address: tuple[str, int], terminator: Any, **options: Any) -> Any:
        """A connected `Recorder` client chat (see `recorder_class`)."""
        client = recorder_class(self.mods)(self.map, terminator, **options)
        client.connect(address)
        return client


def recorder_class(mods: Mods) -> Any:
    """An `async_chat` client of *mods* that records what its callbacks see.

    ``events`` lists ``("data", bytes)`` and ``("end", get_terminator())`` in order;
    ``data_terms`` what ``get_terminator()`` said at each ``collect_incoming_data``;
    ``frames`` the joined frames.  *on_frame(chat, frame)*, if given, runs after each frame
    (to change the terminator, push, close...).  *in_size* sets ``ac_in_buffer_size``.
    """
    chat = mods.asynchat

    class Recorder(chat.async_chat):  # type: ignore[name-defined, misc]
        def __init__(
            self,
            map: dict[int, Any],
            terminator: Any,
            *,
            in_size: int | None = None,
            on_frame: Callable[[Any, bytes], object] | None = None,
        ) -> None:
            super().__init__(map=map)
            if in_size is not None:
                self.ac_in_buffer_size = in_size
            self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.set_terminator(terminator)
            self.on_frame = on_frame
            self.events: list[tuple[str, Any]] = []
            self.frames: list[bytes] = []
            self.data_terms: list[Any] = []
            self.current: list[bytes] = []
            self.closed = False
            self.errors: list[BaseException] = []

        def handle_connect(self) -> None:
            pass

        def collect_incoming_data(self, data: bytes) -> None:
            self.current.append(bytes(data))
            self.events.append(("data", bytes(data)))
            self.data_terms.append(self.get_terminator())

        def found_terminator(self) -> None:
            frame = b"".join(self.current)
            self.current = []
            self.frames.append(frame)
            self.events.append(("end", self.get_terminator()))
            if self.on_frame is not None:
                self.on_frame(self, frame)

        def handle_close(self) -> None:
            self.closed = True
            self.close()

        def handle_error(self) -> None:
            error = sys.exc_info()[1]
            assert error is not None
            self.errors.append(error)
            self.close()

        @property
        def data(self) -> bytes:
            """Every byte collected, frames and open frame alike."""
            return b"".join(d for kind, d in self.events if kind == "data")

    return Recorder


def blocking_client(address: tuple[str, int]) -> socket.socket:
    """A plain blocking client socket with a bounded timeout."""
    sock = socket.create_connection(address, timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def scripted_class(mods: Mods) -> Any:
    """An `async_chat` of *mods* without a socket: ``recv`` returns the chunks of ``feed``,
    ``send`` appends to ``sent`` (at most ``send_limit`` bytes per call).

    ``events`` lists ``("data", bytes)`` and ``("end", get_terminator())``; *on_frame(chat,
    frame)* and *on_data(chat, data)*, if given, run after each frame / piece of data.
    """
    chat = mods.asynchat

    class Scripted(chat.async_chat):  # type: ignore[name-defined, misc]
        def __init__(
            self,
            terminator: Any = None,
            *,
            on_frame: Callable[[Any, bytes], object] | None = None,
            on_data: Callable[[Any, bytes], object] | None = None,
        ) -> None:
            super().__init__(sock=None, map={})
            self.connected = True
            self.chunk = b""
            self.sent = bytearray()
            self.send_limit: int | None = None  # bytes send() takes per call (None: all)
            self.on_frame = on_frame
            self.on_data = on_data
            self.events: list[tuple[str, Any]] = []
            self.current: list[bytes] = []
            if terminator is not None:
                self.set_terminator(terminator)

        def recv(self, buffer_size: int) -> bytes:
            chunk, self.chunk = self.chunk, b""
            assert len(chunk) <= buffer_size
            return chunk

        def send(self, data: Any) -> int:
            taken = bytes(data[: self.send_limit] if self.send_limit is not None else data)
            self.sent += taken
            return len(taken)

        def feed(self, chunk: bytes) -> None:
            self.chunk = chunk
            self.handle_read()

        def collect_incoming_data(self, data: bytes) -> None:
            self.current.append(bytes(data))
            self.events.append(("data", bytes(data)))
            if self.on_data is not None:
                self.on_data(self, bytes(data))

        def found_terminator(self) -> None:
            frame = b"".join(self.current)
            self.current = []
            self.events.append(("end", self.get_terminator()))
            if self.on_frame is not None:
                self.on_frame(self, frame)

    return Scripted
