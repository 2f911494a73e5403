"""Drivers: move bytes between sockets and `sanschat.Chat` objects, and nothing else.

Theory of operation: a driver reads (into a reused buffer where its loop allows), hands
the bytes read to `Chat.feed` as ``bytes`` that stay valid after the call, writes what
``chat.channel.data_to_send()`` returns, and closes once ``chat.channel.wants_close``.
Framing lives only in the core: a driver that parses bytes is a bug.  Each driver is one
module (the asyncio and trio ones share their ``async for`` reader, `_pull.PullReader`):

* `sanschat.drivers.select`: a loop on epoll (Linux), else `selectors.DefaultSelector`;
* `sanschat.drivers.asyncio`: an `asyncio.BufferedProtocol`, plus an ``async for`` style;
* `sanschat.drivers.trio`: over any `trio.abc.Stream` (plain TCP read into a shared
  buffer), plus an ``async for`` style.

All three share the same contract, checked by one conformance suite
(``tests/drivers/test_conformance.py``): an exception in a handler (a bug) is logged on
the ``sanschat`` logger with its traceback and closes that connection only, at once; a
peer's `ProtocolError` is answered by the chat (`Chat.protocol_error`), whose output is
flushed before the connection closes, so earlier replies and the error reply reach the peer
whatever the cut; a close after output (`Chat.close_when_done`) is graceful on TCP: end of
stream first, then `LINGER`; end of stream from the peer flushes
queued output and then closes (unless the handler overrides `Chat.eof_received`); output is
pulled from the channel only while the socket can take it, and a connection whose output
piles up past its chat's `Chat.high_water` (`HIGH_WATER` by default) stops being read until
it drains.  Backpressure and fairness are the same on all three: `Chat.pause_reading` stops
the reading *and* the dispatch of frames already read; a read's frames past
`Chat.frame_budget` are dispatched on later loop rounds, after the other ready connections,
and the connection is not read meanwhile; after writing, a driver calls `Chat.written` when
a handler waits for the output to drain (`Chat.pause_until_drained`, `Chat.output_drained`,
a blocked `Chat.push_threadsafe`).  TCP sockets get `NOTSENT_LOWAT` (Linux), so that the
kernel holds little unsent data per connection either: the bytes wait in the channel, where
backpressure sees them.

Every driver module also offers ``start_server(factory, host, port, ssl_context=None,
backlog=BACKLOG)``, which runs a server on that driver (IPv4 or IPv6, TLS if given a server
context) in a background thread and returns a `BackgroundServer`: the command line, the demo
and the tests use it to run any driver the same way.  Each driver logs on its own child of the
``sanschat`` logger (``sanschat.drivers.select``, ``.asyncio``, ``.trio``), naming the peer
as `format_address` writes it.

Server-wide limits (`Limits`, passed to every driver's ``serve`` and ``start_server`` as
``limits=``) are kept by one `Watch` per server: it counts the connections (the listener
stops accepting at `Limits.max_connections` and resumes when one closes), keeps a coarse
clock, and runs one periodic sweep over its connections for the idle, frame and send
timeouts, rather than a timer per connection.  A connection's read and write paths only
stamp that clock (`Guard.read`, `Guard.wrote`).  Log lines a peer can cause go through
`log_limited`, at most one a second per kind.

Memory per server is bounded by configuration: a connection is read only while its output
is at or under its high water, so `Limits.worst_case` (``max_connections x (high_water +
2 x READ_SIZE + max_frame_size + CONNECTION_OVERHEAD) + READ_SIZE``) bounds what a server
holds for its connections, kernel buffers aside: 1.58 GiB at the defaults, 64 KiB frames.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import Any, Protocol

from .._chat import DEFAULT_HIGH_WATER, Chat
from .._errors import ProtocolError

__all__ = [
    "BACKLOG",
    "CONNECTION_OVERHEAD",
    "DRIVERS",
    "HIGH_WATER",
    "LINGER",
    "NOTSENT_LOWAT",
    "READ_SIZE",
    "SWEEP_BUDGET",
    "SWEEP_PAUSE",
    "BackgroundServer",
    "Guard",
    "Limits",
    "Watch",
    "apply_high_water",
    "format_address",
    "log_failure",
    "log_limited",
    "set_notsent_lowat",
    "start_server",
]

#: The driver names, in the order the demo runs them.
DRIVERS = ("select", "asyncio", "trio")

#: Bytes read per receive call: large enough that a burst of small frames is framed in one
#: batch, small enough to stay in the CPU cache.
READ_SIZE = 256 * 1024

#: Queued output (bytes) above which a driver stops reading from that connection until the
#: peer has taken enough of it: a client that never reads cannot grow the server's memory.
#: The default of `Chat.high_water`, which a `Chat` subclass may lower or raise.
HIGH_WATER = DEFAULT_HIGH_WATER

#: Unsent bytes a TCP socket may hold in the kernel before it stops being writable
#: (``TCP_NOTSENT_LOWAT``, where Python has it: Linux; 16 KiB, as trio's ``SocketStream``):
#: without it each connection to a slow reader can pin megabytes of kernel memory that
#: no backpressure sees, with it the queued output stays in the channel.
NOTSENT_LOWAT = 16 * 1024

#: Connections the kernel queues before the server accepts them: as many as the system allows
#: (``socket.SOMAXCONN``, trio's default; Linux caps it at ``net.core.somaxconn``), so that a
#: burst of clients connecting at once (1,000 in the reliability run) is queued, not dropped.
BACKLOG = socket.SOMAXCONN

#: Seconds a driver lingers after a graceful close of a TCP connection: once everything
#: queued is sent it ends its stream (FIN), then reads and drops what the peer still sends
#: until the peer's own end of stream, at most this long, before it closes the socket.
#: Closing a socket with unread input makes the kernel answer with a reset, which can
#: destroy the last reply (an error reply above all) before the peer reads it.
LINGER = 2.0


#: Bytes of Python objects one open connection costs a server beyond its buffers (socket,
#: chat, channel, the driver's objects): measured at 10,000 idle connections (select 2.5 KiB,
#: asyncio 3.5 KiB, trio 7.1 KiB per connection), with room; used by `Limits.worst_case`.
CONNECTION_OVERHEAD = 16 * 1024


def _positive(name: str, value: object, *, none: bool, integer: bool) -> None:
    if value is None and none:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        what = "an int" if integer else "a number of seconds"
        raise ValueError(f"Limits.{name} must be {what} > 0{' or None' if none else ''}, "
                         f"not {value!r}")


@dataclass(frozen=True)
class Limits:
    """What one server allows all its connections together: pass ``limits=`` to a driver's
    ``serve`` or ``start_server``.  Every field has a default, chosen so that the worst
    case (`worst_case`) of a server of the example protocols stays under 1.6 GiB.

    A timeout of None turns that check off.  The timeouts are checked by one sweep per
    server every `sweep_interval` seconds, so one may fire up to that much late.
    """

    max_connections: int | None = 1024
    """Connections open at once; at the limit the server stops accepting (new peers wait in
    the kernel's listen backlog) and resumes as soon as one closes, logging one line a
    second at most.  1,024: the usual descriptor limit, which a server reaches otherwise."""

    high_water: int = HIGH_WATER
    """Queued output above which a connection is not read until it drains: the default for
    every `Chat` class that does not set its own ``high_water``."""

    idle_timeout: float | None = 300.0
    """Seconds with no byte read or written after which `Chat.idle` is called (by default
    it closes), for every `Chat` class that does not set its own ``idle_timeout`` (setting
    it, even to None, replaces this one).  300 s, as long as HTTP servers keep an idle
    connection at the most (nginx ``keepalive_timeout`` 75 s, ``client_body_timeout`` 60 s)."""

    frame_timeout: float | None = 60.0
    """Seconds a frame may take to arrive once its first byte has (slowloris: a peer that
    sends a byte now and then but never ends a frame); then the connection is closed.
    Seen through ``channel.buffered_input``, so it covers the whole-frame styles
    (`Chat.found_frame`, `Chat.found_frames`); a handler in asynchat's style holds its
    partial frames itself.  The clock stops while the connection's output is pending (we
    are not reading it then).  60 s: nginx's ``client_header_timeout``."""

    send_timeout: float | None = 60.0
    """Seconds queued output may wait without the peer taking a byte (a peer that stopped
    reading); then the connection is closed, dropping that output.  60 s: nginx's
    ``send_timeout``."""

    shutdown_grace: float = 5.0
    """Seconds a stopping server gives its connections to flush what they queued and close
    (`Chat.close_when_done`, then the graceful close); those still open then are aborted."""

    def __post_init__(self) -> None:
        _positive("max_connections", self.max_connections, none=True, integer=True)
        _positive("high_water", self.high_water, none=False, integer=True)
        for name in ("idle_timeout", "frame_timeout", "send_timeout"):
            _positive(name, getattr(self, name), none=True, integer=False)
        grace = self.shutdown_grace
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
            raise ValueError(f"Limits.shutdown_grace must be a number of seconds >= 0, "
                             f"not {grace!r}")

    @property
    def sweep_interval(self) -> float | None:
        """Seconds between two sweeps: a quarter of the shortest timeout, at most 1 s (None:
        no timeout is set, so there is no sweep)."""
        timeouts = [t for t in (self.idle_timeout, self.frame_timeout, self.send_timeout)
                    if t is not None]
        return min(1.0, min(timeouts) / 4) if timeouts else None

    def worst_case(self, max_frame_size: int, reply_per_read: int = READ_SIZE) -> int:
        """The most bytes a server under these limits holds for its connections:
        ``max_connections x (high_water + reply_per_read + READ_SIZE + max_frame_size +
        CONNECTION_OVERHEAD) + READ_SIZE``.

        A connection is read only while its output is at or under `high_water`, so its
        output passes it by at most what the handler queues in reply to one read
        (*reply_per_read*: up to `READ_SIZE` for an echo), plus one chunk in flight
        (`READ_SIZE`: asyncio's transport keeps what the socket did not take); its input
        is one partial frame (*max_frame_size*, the `Chat` class's limit); the read buffer
        is shared.  Kernel socket buffers are not counted.

        Raises:
            ValueError: if `max_connections` is None (then nothing bounds the sum).
        """
        if self.max_connections is None:
            raise ValueError("no worst case without max_connections")
        per_connection = (self.high_water + reply_per_read + READ_SIZE + max_frame_size
                          + CONNECTION_OVERHEAD)
        return self.max_connections * per_connection + READ_SIZE


def _class_sets(chat: Chat, name: str) -> bool:
    """Whether *chat*'s class (or a base below `Chat`) sets *name* itself."""
    for klass in type(chat).__mro__:
        if klass is Chat:
            return False
        if name in vars(klass):
            return True
    return False


def apply_high_water(chat: Chat, limits: Limits | None) -> int:
    """Set and return the high water of *chat* on this connection: its class's
    `Chat.high_water` if the class sets one, else the server's `Limits.high_water`
    (`HIGH_WATER` without a server).  It is stored on the chat (an instance attribute), so
    that the chat's own backpressure (`Chat.output_full`, `Chat.push_threadsafe`) and the
    driver's agree."""
    if _class_sets(chat, "high_water"):
        # (getattr: mypy types Chat.high_water as the property that the class's int overrides)
        value: int = getattr(type(chat), "high_water")  # noqa: B009
    else:
        value = HIGH_WATER if limits is None else limits.high_water
    chat.high_water = value
    return value


_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset

_limited: dict[str, tuple[float, int]] = {}  # kind -> (time of the last line, suppressed)
_limited_lock = threading.Lock()


def log_limited(kind: str, level: int, message: str, *args: object,
                interval: float = 1.0, logger: logging.Logger | None = None) -> bool:
    """Log *message* % *args* on *logger* (default ``sanschat.drivers``) unless a line of
    the same *kind* went out less than *interval* seconds ago (then it is only counted); the
    next line of that kind says how many were suppressed.  For lines a peer can cause (out of
    descriptors, protocol errors, timeouts), so that no peer can flood the logs.
    Thread-safe; returns True if the line was logged."""
    now = monotonic()
    with _limited_lock:
        last, suppressed = _limited.get(kind, (-interval - 1.0, 0))
        if now - last < interval:
            _limited[kind] = (last, suppressed + 1)
            return False
        _limited[kind] = (now, 0)
    if suppressed:
        message += f" ({suppressed} more like it in the last {now - last:.0f} s not logged)"
    (logger or logging.getLogger(__name__)).log(level, message, *args)
    return True


#: Most timeouts one sweep fires; the rest of that sweep runs `SWEEP_PAUSE` seconds later,
#: so that closing thousands of connections at once does not stall the loop (trio took 1.5 s
#: to unwind 5,000 at once, with a fresh client waiting).
SWEEP_BUDGET = 250
#: Seconds between the batches of a sweep that stopped at `SWEEP_BUDGET`.
SWEEP_PAUSE = 0.05


def _released(*_args: object) -> None:
    """A released `Guard`'s callbacks: its connection is closed, nothing is left to do."""


class Guard:
    """One connection's part in its server's `Watch`.

    The driver stamps it from its I/O paths (`read` after each feed, `wrote` when the
    socket took bytes); the watch's sweep checks it.  *abort* closes the connection now;
    *dispatch* runs a chat callback as the driver runs its own (an error closes it).
    """

    __slots__ = ("abort", "active", "chat", "dispatch", "frame_since", "idle_timeout",
                 "pending_since", "sent", "timed_frames", "watch")

    def __init__(self, watch: Watch, chat: Chat, abort: Callable[[], object],
                 dispatch: Callable[[Callable[[], object]], object]) -> None:
        limits = watch.limits
        self.watch: Watch = watch
        self.chat: Chat = chat
        self.abort: Callable[[], object] = abort
        self.dispatch: Callable[[Callable[[], object]], object] = dispatch
        self.active: float = watch.now
        self.sent: float = watch.now
        self.frame_since: float | None = None  # when the frame now in progress began
        self.pending_since: float | None = None  # when the sweep first saw output pending
        self.timed_frames: bool = limits.frame_timeout is not None
        self.idle_timeout: float | None = (
            None if _class_sets(chat, "idle_timeout") else limits.idle_timeout
        )

    def read(self, size: int) -> None:
        """*size* bytes were read and fed (0: end of stream)."""
        now = self.active = self.watch.now
        if self.timed_frames:
            channel = self.chat.channel
            # (buffered_input, its common case read directly: this runs once per read)
            if channel._buf or channel._out_it.__length_hint__():
                pending = channel.buffered_input
            else:
                pending = 0
            if not pending:
                self.frame_since = None
            elif pending <= size:  # the frame in progress began in this read
                self.frame_since = now

    def wrote(self) -> None:
        """The socket took bytes of this connection's output."""
        self.sent = self.active = self.watch.now

    def release(self) -> None:
        """The connection is closed: leave the watch (which may start accepting again), and
        drop its callbacks (bound methods of the connection, which holds this guard: a cycle
        that would leave each closed connection to the garbage collector)."""
        self.watch._remove(self)
        self.abort = self.dispatch = _released

    def _check(self, now: float, limits: Limits) -> bool:
        """Check the timeouts; True if one fired (the connection closes, or `Chat.idle`)."""
        chat = self.chat
        channel = chat.channel
        pending = channel.wants_write
        if not pending:
            self.pending_since = None
        elif self.pending_since is None:
            self.pending_since = now
        elif (limits.send_timeout is not None
              and now - max(self.sent, self.pending_since) >= limits.send_timeout):
            self._expire("send timeout", f"the peer took no byte in {limits.send_timeout:g} s")
            return True
        if chat.closing:
            return False
        if self.frame_since is not None and limits.frame_timeout is not None:
            if pending:
                self.frame_since = now  # not its fault: we do not read while output waits
            elif now - self.frame_since >= limits.frame_timeout:
                self._expire("frame timeout", f"no frame completed in {limits.frame_timeout:g} s")
                return True
        if self.idle_timeout is not None and now - self.active >= self.idle_timeout:
            self.active = now
            self.dispatch(chat.idle)
            return True
        return False

    def _expire(self, kind: str, why: str) -> None:
        log_limited(kind, logging.INFO, "%s: %s; closing %s", kind, why,
                    format_address(self.chat.transport.get_extra_info("peername")))
        self.reset()

    def reset(self) -> None:
        """Abort the connection with a reset: the kernel drops what it still holds for the
        peer instead of retrying to send it to a peer that does not read."""
        sock = self.chat.transport.get_extra_info("socket")
        setsockopt = getattr(sock, "setsockopt", None)  # a socket, asyncio's or trio's
        if setsockopt is not None:
            with contextlib.suppress(OSError, ValueError):
                setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.abort()


class Watch:
    """One server's limits at run time (see the module docstring): its connections, a
    coarse clock for their stamps, the sweep, and the shutdown.

    Runs on the server's loop thread only.  *pause_accepting* and *resume_accepting* are the
    listener's; the driver calls `admit` before each accept, `add` for each connection and
    `sweep` every ``limits.sweep_interval`` seconds.
    """

    def __init__(self, limits: Limits, pause_accepting: Callable[[], object],
                 resume_accepting: Callable[[], object]) -> None:
        self.limits = limits
        self.now: float = monotonic()
        """The time of the last sweep: what connections stamp (`time.monotonic`)."""
        self.guards: set[Guard] = set()
        """The connections open now."""
        self.accepting: bool = True
        """False while accepting is paused (at ``max_connections``, out of descriptors)."""
        self.stopping: bool = False
        """True once the server is stopping."""
        self._pause, self._resume = pause_accepting, resume_accepting
        self._pending: list[Guard] = []  # the rest of a sweep that stopped at its budget

    def admit(self) -> bool:
        """True if one more connection may be accepted; else stop accepting (and log one
        line a second at most) until a connection closes."""
        limit = self.limits.max_connections
        if limit is None or len(self.guards) < limit:
            return True
        if self.accepting:
            self.accepting = False
            self._pause()
            log_limited("max connections", logging.WARNING,
                        "%d connections open (Limits.max_connections): not accepting "
                        "until one closes", limit)
        return False

    def add(self, chat: Chat, abort: Callable[[], object],
            dispatch: Callable[[Callable[[], object]], object]) -> Guard:
        """Count a new connection in; return its `Guard`."""
        self.now = monotonic()
        guard = Guard(self, chat, abort, dispatch)
        self.guards.add(guard)
        return guard

    def _remove(self, guard: Guard) -> None:
        self.guards.discard(guard)
        if not self.accepting and not self.stopping:
            limit = self.limits.max_connections
            if limit is None or len(self.guards) < limit:
                self.accepting = True
                self._resume()

    def sweep(self) -> float:
        """Advance the clock and check the connections' timeouts; return the seconds until
        the next sweep is due.

        At most `SWEEP_BUDGET` timeouts fire per sweep, and then the next one is due at
        once (in `SWEEP_PAUSE` seconds): thousands of connections timing out together
        (a slowloris) are closed in batches, with the loop serving the others in between.
        """
        now = self.now = monotonic()
        limits, guards = self.limits, self.guards
        pending = self._pending
        if not pending:  # a new pass
            pending.extend(guards)
        fired = 0
        while pending and fired < SWEEP_BUDGET:
            guard = pending.pop()
            if guard in guards and guard._check(now, limits):
                fired += 1
        interval = limits.sweep_interval
        return SWEEP_PAUSE if pending or interval is None else interval

    def close_all(self) -> None:
        """Begin the shutdown: accept no more, and ask every connection to close once its
        output is sent (`Chat.close_when_done`)."""
        self.stopping = True
        self.accepting = False
        for guard in list(self.guards):
            if not guard.chat.closing:
                guard.dispatch(guard.chat.close_when_done)

    def abort_all(self) -> None:
        """End the shutdown: close every connection still open, dropping its output (with
        a reset where output was still waiting: the peer is not reading it)."""
        self.stopping = True
        for guard in list(self.guards):
            if guard.chat.channel.wants_write:
                guard.reset()
            else:
                guard.abort()


def format_address(address: object) -> str:
    """Write a socket address as log messages and the command line show it.

    ``("127.0.0.1", 80)`` gives ``127.0.0.1:80``; an IPv6 address, with or without its
    flow and scope fields, gives ``[::1]:80``; anything else (None, a Unix socket path) its
    ``str``.
    """
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)


def log_failure(
    where: str, peer: object, exc: BaseException, logger: logging.Logger | None = None
) -> None:
    """Log, on a driver's *logger* (default ``sanschat.drivers``), why it closes a
    connection with *peer*: *where* failed.

    A handler's (or producer's) exception is an error, with its traceback.  A
    `ProtocolError` such as `FrameTooLarge` is the peer's doing: one warning line without a
    traceback, so that a peer cannot fill the server's logs.
    """
    logger = logger or logging.getLogger(__name__)
    if isinstance(exc, ProtocolError):
        log_limited("protocol error", logging.WARNING,
                    "%s for %s: %s; closing that connection", where, format_address(peer), exc,
                    logger=logger)
    else:
        logger.error("error in %s for %s; closing that connection", where,
                     format_address(peer), exc_info=exc)


def set_notsent_lowat(sock: Any) -> bool:
    """Set ``TCP_NOTSENT_LOWAT`` to `NOTSENT_LOWAT` on a TCP *sock* (a socket or asyncio's
    ``TransportSocket``); False where the platform has no such option or *sock* is not TCP."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, NOTSENT_LOWAT)
    except OSError:
        return False
    return True


class BackgroundServer(Protocol):
    """A server running on some driver in a background thread (see `start_server`)."""

    @property
    def address(self) -> tuple[str, int]:
        """The host and port the server accepts connections on."""
        ...

    def stop(self, timeout: float = 5.0, *, grace: float = 0.0) -> None:
        """Close the listener and every connection, stop the loop and join the thread.

        With *grace* > 0 the connections first get that many seconds to send what they
        queued and close gracefully (`Watch.close_all`); those still open then are
        aborted.  Idempotent; callable from any thread but the server's own.

        Raises:
            TimeoutError: if the thread has not ended after *timeout* seconds.
        """
        ...


def start_server(
    driver: str,
    factory: Callable[[], Chat],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    backlog: int = BACKLOG,
    limits: Limits | None = None,
) -> BackgroundServer:
    """Start a server for *factory* on *driver* in a background thread; return once it listens.

    *host* may be an IPv4 or IPv6 address or a name; *port* 0 picks a free port.  With
    *ssl_context* (a server-side `ssl.SSLContext` holding the certificate) every connection
    is TLS; *backlog* is the listen queue's length.  The server keeps *limits* (None: the
    defaults of `Limits`).

    Raises:
        ValueError: if *driver* is not one of `DRIVERS`, or *port* is not in 0-65535, or
            *backlog* is below 1.
        ImportError: if the driver's library (``trio``) is not installed.
        OSError: if the address cannot be bound.
    """
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}: expected one of {', '.join(DRIVERS)}")
    if not 0 <= port <= 65535:  # trio would bind port % 65536 without a word
        raise ValueError(f"a port is 0-65535, not {port!r}")
    if backlog < 1:
        raise ValueError(f"a backlog is at least 1, not {backlog!r}")
    module = importlib.import_module(f"{__name__}.{driver}")
    server: BackgroundServer = module.start_server(
        factory, host, port, ssl_context=ssl_context, backlog=backlog,
        limits=limits
    )
    return server
