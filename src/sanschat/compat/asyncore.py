"""Drop-in replacement for the ``asyncore`` module of Python 3.11 (removed in 3.12).

Theory of operation
-------------------
A *socket map* is a dict ``{file descriptor: dispatcher}``; `socket_map` is the one used
when no map is given.  A `dispatcher` owns one non-blocking socket, adds itself to a map
when it gets its socket and removes itself when it closes.  One *poll* asks each dispatcher
of a map whether it is ``readable()`` and ``writable()`` (a listening one is never asked
to write), waits once for those conditions, with ``select.select`` (`poll`) or
``select.poll`` (`poll2`), and calls the ``handle_*_event`` method of each ready
dispatcher still in the map.  Those calls go through `read`, `write`, `_exception` and
`readwrite`, which turn any exception other than `ExitNow`, ``KeyboardInterrupt`` and
``SystemExit`` into a call of the dispatcher's ``handle_error``; those three leave the loop.
`loop` polls until the map is empty or ``count`` polls have run.

A dispatcher never blocks: would-block means "nothing now" (``send`` returns 0, ``recv``
raises ``BlockingIOError``, ``accept`` returns None), and the errors of a connection the
peer dropped (`_DISCONNECTED`) become a call of ``handle_close``.

Beyond the stdlib, `loop_asyncio` (and the coroutine `run_asyncio`) drive the same map on
an asyncio event loop: each dispatcher's socket is registered with ``add_reader`` /
``add_writer`` as its ``readable()`` / ``writable()`` say, and those are asked again after
every batch of events, when a dispatcher joins or leaves the map, and when output is queued
from outside an event.  Migrating code moves to asyncio by changing the call that runs the
loop, and can then run other asyncio code beside its dispatchers.

Names, signatures and observable behaviour are those of Python 3.11's module, so that
existing code runs unchanged; the few deliberate differences are said where they are (and
in the README's migration section).  Importing this module issues no deprecation warning.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import suppress
from errno import (
    EAGAIN,
    EALREADY,
    EBADF,
    ECONNABORTED,
    ECONNRESET,
    EINPROGRESS,
    EINVAL,
    EISCONN,
    ENOTCONN,
    EPIPE,
    ESHUTDOWN,
    EWOULDBLOCK,
    errorcode,
)
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "ExitNow",
    "close_all",
    "compact_traceback",
    "dispatcher",
    "dispatcher_with_send",
    "loop",
    "loop_asyncio",
    "poll",
    "poll2",
    "poll3",
    "read",
    "readwrite",
    "run_asyncio",
    "socket_map",
    "write",
]
if os.name == "posix":
    __all__ += ["file_dispatcher", "file_wrapper"]

#: ``errno`` values meaning the peer is gone: ``send`` and ``recv`` call ``handle_close``
#: for them instead of raising.
_DISCONNECTED = frozenset({ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE, EBADF})

#: The default socket map ``{fd: dispatcher}``, used wherever a ``map`` argument is None.
socket_map: dict[int, Any] = {}


class ExitNow(Exception):
    """Raise it from a handler to leave `loop`: unlike other exceptions it is not caught."""


#: What the event wrappers let through instead of calling ``handle_error``.
_reraised_exceptions = (ExitNow, KeyboardInterrupt, SystemExit)


def _strerror(err: int) -> str:
    """The text for an ``errno`` value, never raising."""
    try:
        return os.strerror(err)
    except (ValueError, OverflowError, NameError):
        return errorcode.get(err, f"Unknown error {err}")


# ---------------------------------------------------------------------------- event wrappers


def read(obj: Any) -> None:
    """Call ``obj.handle_read_event()``; any exception but `ExitNow` & co. goes to handle_error."""
    try:
        obj.handle_read_event()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def write(obj: Any) -> None:
    """Call ``obj.handle_write_event()``; any exception but `ExitNow` & co. goes to handle_error."""
    try:
        obj.handle_write_event()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def _exception(obj: Any) -> None:
    """Call ``obj.handle_expt_event()``; any exception but `ExitNow` & co. goes to handle_error."""
    try:
        obj.handle_expt_event()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def readwrite(obj: Any, flags: int) -> None:
    """Dispatch the ``select.poll`` event *flags* of one dispatcher, in this order.

    ``POLLIN`` calls ``handle_read_event``, ``POLLOUT`` ``handle_write_event``, ``POLLPRI``
    ``handle_expt_event``, and any of ``POLLHUP``, ``POLLERR``, ``POLLNVAL``
    ``handle_close``.  An ``OSError`` whose errno is in `_DISCONNECTED` calls
    ``handle_close``; any other exception but `ExitNow` & co. calls ``handle_error``.
    """
    try:
        if flags & select.POLLIN:
            obj.handle_read_event()
        if flags & select.POLLOUT:
            obj.handle_write_event()
        if flags & select.POLLPRI:
            obj.handle_expt_event()
        if flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            obj.handle_close()
    except OSError as exc:
        if exc.errno in _DISCONNECTED:
            obj.handle_close()
        else:
            obj.handle_error()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


# ---------------------------------------------------------------------------- polling


def _interest(obj: Any) -> tuple[bool, bool]:
    """Ask *obj* what it waits for: ``(readable, writable)``; listeners never write."""
    reading = obj.readable()
    writing = obj.writable()
    return bool(reading), bool(writing) and not obj.accepting


def poll(timeout: float | None = 0.0, map: dict[int, Any] | None = None) -> None:
    """One round of the loop with ``select.select``: wait up to *timeout* seconds, dispatch.

    A dispatcher that is readable or writable is also watched for exceptional conditions
    (``handle_expt_event``).  If no dispatcher waits for anything, sleeps *timeout*.
    """
    if map is None:
        map = socket_map
    if not map:
        return
    readers: list[int] = []
    writers: list[int] = []
    exceptional: list[int] = []
    for fd, obj in list(map.items()):
        is_r = obj.readable()
        is_w = obj.writable()
        if is_r:
            readers.append(fd)
        if is_w and not obj.accepting:
            writers.append(fd)
        if is_r or is_w:
            exceptional.append(fd)
    if not (readers or writers or exceptional):
        time.sleep(timeout)  # type: ignore[arg-type]  # None raises, as in the stdlib
        return
    ready_r, ready_w, ready_x = select.select(readers, writers, exceptional, timeout)
    for ready, handler in ((ready_r, read), (ready_w, write), (ready_x, _exception)):
        for fd in ready:
            obj = map.get(fd)
            if obj is not None:
                handler(obj)


def poll2(timeout: float | None = 0.0, map: dict[int, Any] | None = None) -> None:
    """One round of the loop with ``select.poll``: wait up to *timeout* seconds, dispatch.

    A readable dispatcher is polled for ``POLLIN | POLLPRI``, a writable one (unless it is
    listening) for ``POLLOUT``; each ready one is handed to `readwrite`.
    """
    if map is None:
        map = socket_map
    wait_ms = None if timeout is None else int(timeout * 1000)
    pollster = select.poll()
    if not map:
        return
    for fd, obj in list(map.items()):
        reading, writing = _interest(obj)
        flags = (select.POLLIN | select.POLLPRI if reading else 0) | (
            select.POLLOUT if writing else 0
        )
        if flags:
            pollster.register(fd, flags)
    for fd, flags in pollster.poll(wait_ms):
        obj = map.get(fd)
        if obj is not None:
            readwrite(obj, flags)


#: Another name of `poll2`, kept for old code.
poll3 = poll2


def loop(
    timeout: float | None = 30.0,
    use_poll: bool = False,
    map: dict[int, Any] | None = None,
    count: int | None = None,
) -> None:
    """Run polls until *map* (default `socket_map`) is empty, or at most *count* of them.

    Each poll waits up to *timeout* seconds.  *use_poll* selects `poll2` (``select.poll``)
    where the platform has it, else `poll` (``select.select``).  `ExitNow`,
    ``KeyboardInterrupt`` and ``SystemExit`` raised by a handler leave the loop.
    """
    if map is None:
        map = socket_map
    poll_fun = poll2 if use_poll and hasattr(select, "poll") else poll
    while map and (count is None or count > 0):
        poll_fun(timeout, map)
        if count is not None:
            count -= 1


# ---------------------------------------------------------------------------- dispatcher


class dispatcher:
    """A thin wrapper around one non-blocking socket, driven by the events of `loop`.

    Subclass it and override the ``handle_*`` hooks.  Created with a connected socket
    *sock*, it is ``connected`` and its ``addr`` is the peer's address; created without
    one, call `create_socket` (then `connect`, or `bind` and `listen`).  The dispatcher is
    in *map* (default `socket_map`) from the moment it has a socket until `close`.
    """

    debug = False
    """If true, `dispatcher_with_send.send` logs what it sends."""
    connected = False
    """True once the socket is connected (set by the constructor, `connect` and the loop)."""
    accepting = False
    """True once `listen` was called: read events then mean "accept"."""
    connecting = False
    """True while a non-blocking `connect` is in progress."""
    closing = False
    """Never set by this module; kept because code tests it."""
    addr: Any = None
    """The peer's address (connected), or the address given to `bind` / `connect`."""
    ignore_log_types = frozenset({"warning"})
    """The `log_info` message types that are not printed."""

    def __init__(self, sock: Any = None, map: dict[int, Any] | None = None) -> None:
        self._map: dict[int, Any] = socket_map if map is None else map
        self._fileno: int | None = None
        if not sock:
            self.socket: Any = None
            return
        sock.setblocking(False)  # a socket from a blocking source must not block the loop
        self.set_socket(sock, map)
        self.connected = True
        try:
            self.addr = sock.getpeername()
        except OSError as exc:
            if exc.errno in (ENOTCONN, EINVAL):
                self.connected = False  # an unconnected socket is accepted as well
            else:
                self.del_channel(map)  # broken in some other way: never poll it
                raise

    def __repr__(self) -> str:
        cls = type(self)
        parts = [f"{cls.__module__}.{cls.__qualname__}"]
        if self.accepting and self.addr:
            parts.append("listening")
        elif self.connected:
            parts.append("connected")
        if self.addr is not None:
            try:
                host, port = self.addr
                if isinstance(port, (str, bytes)):
                    raise TypeError(port)
                parts.append(f"{host}:{int(port)}")
            except (TypeError, ValueError):
                parts.append(repr(self.addr))
        return f"<{' '.join(parts)} at {id(self):#x}>"

    # ------------------------------------------------------------------ the map

    def add_channel(self, map: dict[int, Any] | None = None) -> None:
        """Put this dispatcher in *map* (default: its own map) under its file descriptor."""
        target = self._map if map is None else map
        target[self._fileno] = self  # type: ignore[index]
        _wake(target)

    def del_channel(self, map: dict[int, Any] | None = None) -> None:
        """Take this dispatcher out of *map* (default: its own map); forget its descriptor."""
        target = self._map if map is None else map
        fd = self._fileno
        if fd in target:
            del target[fd]
            _forget(target, fd)
            _wake(target)
        self._fileno = None

    def create_socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> None:
        """Create a non-blocking socket of *family* and *type* and add this dispatcher."""
        self.family_and_type = family, type
        sock = socket.socket(family, type)
        sock.setblocking(False)
        self.set_socket(sock)

    def set_socket(self, sock: Any, map: dict[int, Any] | None = None) -> None:
        """Use *sock* as this dispatcher's socket and add it to *map* (default: its own)."""
        self.socket = sock
        self._fileno = sock.fileno()
        self.add_channel(map)

    def set_reuse_addr(self) -> None:
        """Set ``SO_REUSEADDR`` on the socket, so a server can rebind at once; errors ignored."""
        with suppress(OSError):
            flag = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, flag | 1)

    # ------------------------------------------------------------------ predicates

    def readable(self) -> bool:
        """Whether the loop should wait for this socket to be readable.  Default: True."""
        return True

    def writable(self) -> bool:
        """Whether the loop should wait for this socket to be writable.  Default: True."""
        return True

    # ------------------------------------------------------------------ socket methods

    def listen(self, num: int) -> Any:
        """Listen with a backlog of *num* (at most 5 on Windows); the dispatcher is accepting."""
        self.accepting = True
        if os.name == "nt" and num > 5:
            num = 5
        return self.socket.listen(num)

    def bind(self, addr: Any) -> Any:
        """Bind the socket to *addr*, remembered as ``addr``."""
        self.addr = addr
        return self.socket.bind(addr)

    def connect(self, address: Any) -> None:
        """Start connecting to *address* without blocking.

        If the connection is made at once, ``handle_connect_event`` runs now; if it is in
        progress, the loop's next read or write event completes it.

        Raises:
            OSError: if the connection fails at once.
        """
        self.connected = False
        self.connecting = True
        err = self.socket.connect_ex(address)
        if err in (EINPROGRESS, EALREADY, EWOULDBLOCK) or (err == EINVAL and os.name == "nt"):
            self.addr = address
            return
        if err in (0, EISCONN):
            self.addr = address
            self.handle_connect_event()
            return
        raise OSError(err, errorcode[err])

    def accept(self) -> tuple[Any, Any] | None:
        """Accept a connection: ``(socket, address)``, or None if there was none after all.

        Raises:
            OSError: for errors other than would-block and a connection aborted meanwhile.
        """
        try:
            conn, addr = self.socket.accept()
        except TypeError:
            return None
        except OSError as exc:
            if exc.errno in (EWOULDBLOCK, ECONNABORTED, EAGAIN):
                return None
            raise
        return conn, addr

    def send(self, data: Any) -> int:
        """Send what the socket takes of *data*; return how many bytes (0 if it would block).

        If the peer is gone (`_DISCONNECTED`), calls ``handle_close`` and returns 0.
        """
        try:
            sent: int = self.socket.send(data)
        except OSError as exc:
            if exc.errno == EWOULDBLOCK:
                return 0
            if exc.errno in _DISCONNECTED:
                self.handle_close()
                return 0
            raise
        return sent

    def recv(self, buffer_size: int) -> bytes:
        """Receive up to *buffer_size* bytes.

        At end of stream, or if the peer is gone (`_DISCONNECTED`), calls ``handle_close``
        and returns ``b""``.

        Raises:
            BlockingIOError: if there is nothing to read yet.
        """
        try:
            data: bytes = self.socket.recv(buffer_size)
        except OSError as exc:
            if exc.errno not in _DISCONNECTED:
                raise
            data = b""
        if not data:
            try:
                self._sanschat_end_of_stream()
            finally:  # an error there must not cost the program its handle_close
                self.handle_close()
            return b""
        return data

    def _sanschat_end_of_stream(self) -> None:
        """Hook called by `recv` when the stream has ended, before ``handle_close``."""

    def close(self) -> None:
        """Leave the map and close the socket; ``connected``, ``accepting`` become False."""
        self.connected = False
        self.accepting = False
        self.connecting = False
        self.del_channel()
        if self.socket is not None:
            try:
                self.socket.close()
            except OSError as exc:
                if exc.errno not in (ENOTCONN, EBADF):
                    raise

    # ------------------------------------------------------------------ logging

    def log(self, message: Any) -> None:
        """Write ``log: <message>`` to stderr (for "hit" logging); override at will."""
        sys.stderr.write(f"log: {message}\n")

    def log_info(self, message: Any, type: str = "info") -> None:
        """Print ``<type>: <message>`` to stdout unless *type* is in `ignore_log_types`."""
        if type not in self.ignore_log_types:
            print(f"{type}: {message}")

    # ------------------------------------------------------------------ events

    def handle_read_event(self) -> None:
        """The loop saw the socket readable: accept, complete a connect, or read."""
        if self.accepting:
            self.handle_accept()
            return
        if not self.connected and self.connecting:
            self.handle_connect_event()
        self.handle_read()

    def handle_connect_event(self) -> None:
        """A connect completed: ``handle_connect``, then the dispatcher is ``connected``.

        Raises:
            OSError: if the connection failed.
        """
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, _strerror(err))
        self.handle_connect()
        self.connected = True
        self.connecting = False

    def handle_write_event(self) -> None:
        """The loop saw the socket writable: complete a connect, then ``handle_write``.

        Ignored for a listening dispatcher.
        """
        if self.accepting:
            return
        if not self.connected and self.connecting:
            self.handle_connect_event()
        self.handle_write()

    def handle_expt_event(self) -> None:
        """An exceptional condition: ``handle_close`` if the socket has an error, else
        ``handle_expt`` (out-of-band data)."""
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            self.handle_close()
        else:
            self.handle_expt()

    def handle_error(self) -> None:
        """Called with an exception being handled: log it with `compact_traceback`, close."""
        _nil, exc_type, exc_value, tbinfo = compact_traceback()
        try:
            me = repr(self)
        except BaseException:  # a broken __repr__ must not hide the real error
            me = f"<__repr__(self) failed for object at {id(self):x}>"
        self.log_info(
            f"uncaptured python exception, closing channel {me} ({exc_type}:{exc_value} {tbinfo})",
            "error",
        )
        self.handle_close()

    def handle_expt(self) -> None:
        """Out-of-band data arrived.  Default: log a warning."""
        self.log_info("unhandled incoming priority event", "warning")

    def handle_read(self) -> None:
        """The socket has data (or end of stream).  Default: log a warning."""
        self.log_info("unhandled read event", "warning")

    def handle_write(self) -> None:
        """The socket can take data.  Default: log a warning."""
        self.log_info("unhandled write event", "warning")

    def handle_connect(self) -> None:
        """The connection is made.  Default: log a warning."""
        self.log_info("unhandled connect event", "warning")

    def handle_accept(self) -> None:
        """A listening socket is readable: `accept` and pass the result to `handle_accepted`."""
        pair = self.accept()
        if pair is not None:
            self.handle_accepted(*pair)

    def handle_accepted(self, sock: Any, addr: Any) -> None:
        """A connection *sock* from *addr* was accepted.  Default: close it, log a warning."""
        sock.close()
        self.log_info("unhandled accepted event", "warning")

    def handle_close(self) -> None:
        """The connection is over.  Default: log a warning and `close`."""
        self.log_info("unhandled close event", "warning")
        self.close()


class dispatcher_with_send(dispatcher):
    """A dispatcher whose `send` buffers: what the socket does not take is sent later.

    ``out_buffer`` holds the bytes not sent yet.  Unlike the stdlib it is a ``bytearray``
    (sent bytes are removed from its front in amortised constant time, where the stdlib
    copied the rest of the buffer on every send); code that assigns bytes to it still works.
    """

    def __init__(self, sock: Any = None, map: dict[int, Any] | None = None) -> None:
        dispatcher.__init__(self, sock, map)
        self.out_buffer: bytearray | bytes = bytearray()

    def initiate_send(self) -> None:
        """Send what the socket takes of ``out_buffer`` (at most 64 KiB)."""
        buffer = self.out_buffer
        if type(buffer) is not bytearray:
            buffer = self.out_buffer = bytearray(buffer)
        sent = dispatcher.send(self, buffer[:65536])  # a copy: handle_close may touch buffer
        if sent and buffer is self.out_buffer:
            del buffer[:sent]

    def handle_write(self) -> None:
        """Send more of ``out_buffer``."""
        self.initiate_send()

    def writable(self) -> bool:
        """Writable while unconnected (to see the connect) or while bytes are waiting."""
        return (not self.connected) or bool(len(self.out_buffer))

    def send(self, data: Any) -> None:  # type: ignore[override]  # stdlib returns None here
        """Append *data* to ``out_buffer`` and send what the socket takes now."""
        if self.debug:
            self.log_info(f"sending {data!r}")
        buffer = self.out_buffer
        if type(buffer) is not bytearray:
            buffer = self.out_buffer = bytearray(buffer)
        buffer += data
        self.initiate_send()
        _wake(self._map)


# ---------------------------------------------------------------------------- helpers


def compact_traceback() -> tuple[tuple[str, str, str], Any, Any, str]:
    """Summarise the exception being handled.

    Returns ``((file, function, line), type, value, info)``: where the traceback ends, the
    exception's type and value, and every frame as ``[file|function|line]`` joined by
    spaces.

    Raises:
        AssertionError: if no exception with a traceback is being handled.
    """
    exc_type, exc_value, tb = sys.exc_info()
    if not tb:
        raise AssertionError("traceback does not exist")
    frames: list[tuple[str, str, str]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_name, str(tb.tb_lineno)))
        tb = tb.tb_next
    info = " ".join(f"[{file}|{function}|{line}]" for file, function, line in frames)
    return frames[-1], exc_type, exc_value, info


def close_all(map: dict[int, Any] | None = None, ignore_all: bool = False) -> None:
    """Close every dispatcher in *map* (default `socket_map`), then empty the map.

    ``EBADF`` is ignored; other errors propagate unless *ignore_all* (`ExitNow`,
    ``KeyboardInterrupt`` and ``SystemExit`` always propagate).
    """
    if map is None:
        map = socket_map
    for obj in list(map.values()):
        try:
            obj.close()
        except OSError as exc:
            if exc.errno != EBADF and not ignore_all:
                raise
        except _reraised_exceptions:
            raise
        except BaseException:
            if not ignore_all:
                raise
    map.clear()


# ---------------------------------------------------------------------------- files (POSIX)

if os.name == "posix":

    class file_wrapper:
        """Makes a file descriptor look enough like a socket for a dispatcher.

        The descriptor given is duplicated (``os.dup``); `close` closes the duplicate.  An
        unclosed wrapper warns with ``ResourceWarning`` when it is garbage collected.
        """

        def __init__(self, fd: int) -> None:
            self.fd = os.dup(fd)

        def __del__(self) -> None:
            if self.fd >= 0:
                warnings.warn(f"unclosed file {self!r}", ResourceWarning, stacklevel=1, source=self)
            self.close()

        def recv(self, *args: Any) -> bytes:
            """``os.read`` on the descriptor."""
            return os.read(self.fd, *args)

        def send(self, *args: Any) -> int:
            """``os.write`` on the descriptor."""
            return os.write(self.fd, *args)

        read = recv
        write = send

        def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int:
            """Answer the one option a dispatcher asks (``SO_ERROR``: always 0).

            Raises:
                NotImplementedError: for any other option.
            """
            if level == socket.SOL_SOCKET and optname == socket.SO_ERROR and not buflen:
                return 0
            raise NotImplementedError("Only asyncore specific behaviour implemented.")

        def close(self) -> None:
            """Close the duplicated descriptor; harmless if already closed."""
            fd = self.fd
            if fd < 0:
                return
            self.fd = -1
            os.close(fd)

        def fileno(self) -> int:
            """The duplicated descriptor (-1 once closed)."""
            return self.fd

    class file_dispatcher(dispatcher):
        """A dispatcher on a file descriptor (a pipe, a terminal), not a socket.

        *fd* is a descriptor or an object with ``fileno()``; it is made non-blocking and
        wrapped in a `file_wrapper`.  The dispatcher starts ``connected``.
        """

        def __init__(self, fd: Any, map: dict[int, Any] | None = None) -> None:
            dispatcher.__init__(self, None, map)
            self.connected = True
            with suppress(AttributeError):
                fd = fd.fileno()
            self.set_file(fd)
            os.set_blocking(fd, False)

        def set_file(self, fd: int) -> None:
            """Use a `file_wrapper` of *fd* as the socket and add this dispatcher."""
            self.socket = file_wrapper(fd)
            self._fileno = self.socket.fileno()
            self.add_channel()


# ---------------------------------------------------------------------------- asyncio

#: The maps being run by `run_asyncio`, by ``id(map)`` (a dict cannot be weakly referenced).
_runners: dict[int, _AsyncioRunner] = {}


def _wake(map: dict[int, Any]) -> None:
    """Tell an asyncio runner of *map*, if any, that some dispatcher's interest may change."""
    if _runners:
        runner = _runners.get(id(map))
        if runner is not None:
            runner.wake()


def _forget(map: dict[int, Any], fd: int) -> None:
    """Tell an asyncio runner of *map*, if any, that *fd* left it (before it is closed)."""
    if _runners:
        runner = _runners.get(id(map))
        if runner is not None:
            runner.unwatch(fd)


class _AsyncioRunner:
    """Drives one socket map on the running asyncio loop, in rounds like `loop`'s polls.

    ``watched`` mirrors what is registered with the asyncio loop: ``{fd: (dispatcher,
    reading, writing)}``.  `sync` brings it in line with the map and with each dispatcher's
    ``readable()`` / ``writable()``.  An I/O callback dispatches only if its registration
    is still current, so an event for a socket that left the map (or changed its interest)
    since the selector looked is dropped, as `poll` drops it.
    """

    def __init__(self, map: dict[int, Any], aloop: asyncio.AbstractEventLoop) -> None:
        self.map = map
        self.aloop = aloop
        self.thread = threading.get_ident()
        self.watched: dict[int, tuple[Any, bool, bool]] = {}
        self.round: asyncio.Future[str] | None = None
        self.failure: BaseException | None = None
        self.dispatching = False
        self.wake_pending = False

    # ------------------------------------------------------------------ registrations

    def sync(self) -> None:
        """Register every dispatcher of the map for what it waits for now; drop the rest."""
        self.wake_pending = False
        current = self.map
        for fd, (obj, _r, _w) in list(self.watched.items()):
            if current.get(fd) is not obj:
                self.unwatch(fd)
        for fd, obj in list(current.items()):
            reading, writing = _interest(obj)
            old = self.watched.get(fd)
            if old is not None and old[0] is obj and old[1] == reading and old[2] == writing:
                continue
            self._register(fd, obj, reading, writing)

    def _register(self, fd: int, obj: Any, reading: bool, writing: bool) -> None:
        old = self.watched.get(fd)
        if old is not None and old[0] is not obj:
            self.unwatch(fd)
            old = None
        was_r = old is not None and old[1]
        was_w = old is not None and old[2]
        aloop = self.aloop
        if reading and not was_r:
            aloop.add_reader(fd, self._on_read, fd, obj)
        elif was_r and not reading:
            aloop.remove_reader(fd)
        if writing and not was_w:
            aloop.add_writer(fd, self._on_write, fd, obj)
        elif was_w and not writing:
            aloop.remove_writer(fd)
        if reading or writing:
            self.watched[fd] = (obj, reading, writing)
        else:
            self.watched.pop(fd, None)

    def unwatch(self, fd: int) -> None:
        """Remove *fd* from the asyncio loop; harmless if it was not watched or is closed."""
        entry = self.watched.pop(fd, None)
        if entry is None:
            return
        # The selector may already have dropped a closed descriptor: that is not an error.
        with suppress(OSError):
            self.aloop.remove_reader(fd)
        with suppress(OSError):
            self.aloop.remove_writer(fd)

    # ------------------------------------------------------------------ events

    def _on_read(self, fd: int, obj: Any) -> None:
        entry = self.watched.get(fd)
        if entry is not None and entry[0] is obj and entry[1] and self.map.get(fd) is obj:
            self._dispatch(read, obj)

    def _on_write(self, fd: int, obj: Any) -> None:
        entry = self.watched.get(fd)
        if entry is not None and entry[0] is obj and entry[2] and self.map.get(fd) is obj:
            self._dispatch(write, obj)

    def _dispatch(self, handler: Callable[[Any], None], obj: Any) -> None:
        if self.failure is not None:
            return  # ExitNow & co. end the round at once, as they leave a poll
        self.dispatching = True
        try:
            handler(obj)
        except BaseException as exc:  # only ExitNow & co. get out of read()/write()
            self.failure = exc
        finally:
            self.dispatching = False
        self._end_round("event")

    def _end_round(self, why: str) -> None:
        fut = self.round
        if fut is not None and not fut.done():
            fut.set_result(why)

    def wake(self) -> None:
        """Something outside an event may have changed an interest: sync soon."""
        if self.dispatching or self.wake_pending:
            return  # inside an event the round's end syncs anyway
        self.wake_pending = True
        if threading.get_ident() == self.thread:
            self.aloop.call_soon(self._end_round, "wake")
        else:
            self.aloop.call_soon_threadsafe(self._end_round, "wake")

    # ------------------------------------------------------------------ rounds

    async def run(self, timeout: float | None, count: int | None) -> None:
        try:
            while self.map and (count is None or count > 0):
                self.sync()
                await self._one_round(timeout)
                if count is not None:
                    count -= 1
        finally:
            for fd in list(self.watched):
                self.unwatch(fd)

    async def _one_round(self, timeout: float | None) -> None:
        aloop = self.aloop
        deadline = None if timeout is None else aloop.time() + timeout
        while True:
            fut = self.round = aloop.create_future()
            timer = None if deadline is None else aloop.call_at(deadline, self._end_round, "time")
            try:
                why = await fut
            finally:
                self.round = None
                if timer is not None:
                    timer.cancel()
            if self.failure is not None:
                failure, self.failure = self.failure, None
                raise failure
            if why != "wake":
                return
            self.sync()  # a wake is not a poll: the round goes on


async def run_asyncio(
    map: dict[int, Any] | None = None,
    *,
    timeout: float | None = None,
    count: int | None = None,
) -> None:
    """Drive the dispatchers of *map* (default `socket_map`) on the running asyncio loop.

    The coroutine form of `loop_asyncio`, for programs already running asyncio: the
    dispatchers then share the loop with other tasks.  It returns when the map is empty, or
    after *count* rounds; a round ends after a batch of events, or after *timeout* seconds
    without any (None: no limit).  Each socket is registered with ``add_reader`` /
    ``add_writer`` as ``readable()`` / ``writable()`` say, asked again after every round,
    when a dispatcher joins or leaves the map, and when an `async_chat` or
    `dispatcher_with_send` queues output outside an event.  `ExitNow`,
    ``KeyboardInterrupt`` and ``SystemExit`` from a handler are raised from here; other
    exceptions go to the dispatcher's ``handle_error`` as under `loop`.  Cancelling it
    unregisters the sockets and leaves the dispatchers in the map.

    Differences from `loop`: exceptional conditions (``handle_expt_event``, out-of-band
    data) are not watched, and the loop must support ``add_reader`` (any selector event
    loop: the default on Unix).

    Raises:
        RuntimeError: if another `run_asyncio` is already running this map.
    """
    import asyncio

    if map is None:
        map = socket_map
    key = id(map)
    if key in _runners:
        raise RuntimeError("this socket map is already run by run_asyncio()")
    runner = _runners[key] = _AsyncioRunner(map, asyncio.get_running_loop())
    try:
        await runner.run(timeout, count)
    finally:
        del _runners[key]


def loop_asyncio(
    timeout: float | None = 30.0,
    use_poll: bool = False,
    map: dict[int, Any] | None = None,
    count: int | None = None,
) -> None:
    """`loop` on asyncio: run the dispatchers of *map* with ``asyncio.run`` until it is empty.

    The signature is `loop`'s, so changing the name of the call is all a program needs:
    *timeout* bounds each round's wait for events and *count* the number of rounds, as they
    bound `loop`'s polls; *use_poll* is accepted and ignored (asyncio picks its selector).
    See `run_asyncio` for how dispatchers are driven, and use it instead inside a program
    that already runs an asyncio loop.

    Raises:
        RuntimeError: if called while an asyncio loop is running in this thread.
    """
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop running in this thread: good
    else:
        raise RuntimeError("loop_asyncio() inside a running asyncio loop: await run_asyncio()")
    if map is None:
        map = socket_map
    if not map or (count is not None and count <= 0):
        return
    asyncio.run(run_asyncio(map, timeout=timeout, count=count))
