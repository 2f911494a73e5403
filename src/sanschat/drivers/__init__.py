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
"""

from __future__ import annotations

import importlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from .._chat import DEFAULT_HIGH_WATER, Chat
from .._errors import ProtocolError

__all__ = [
    "BACKLOG",
    "DRIVERS",
    "HIGH_WATER",
    "LINGER",
    "NOTSENT_LOWAT",
    "READ_SIZE",
    "BackgroundServer",
    "format_address",
    "log_failure",
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
        logger.warning("%s for %s: %s; closing that connection", where,
                       format_address(peer), exc)
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

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, stop the loop and join the thread.

        Idempotent; callable from any thread but the server's own.

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
) -> BackgroundServer:
    """Start a server for *factory* on *driver* in a background thread; return once it listens.

    *host* may be an IPv4 or IPv6 address or a name; *port* 0 picks a free port.  With
    *ssl_context* (a server-side `ssl.SSLContext` holding the certificate) every connection
    is TLS; *backlog* is the listen queue's length.

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
        factory, host, port, ssl_context=ssl_context, backlog=backlog
    )
    return server
