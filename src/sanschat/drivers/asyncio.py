"""The asyncio driver: a `Chat` on an `asyncio.BufferedProtocol`, plus an ``async for`` style.

Theory of operation.  `ChatProtocol` is both the asyncio protocol of one connection and the
`Transport` its chat sees.  Reads go into one buffer per thread (connections share it: each
read goes to `Chat.feed` as a ``bytes`` copy, which a chat may keep).  On asyncio's selector
loop with epoll (Linux), a plain TCP connection is read not by its transport but by the
loop's `_ReadPoller`: one loop callback, one epoll of its own, a ``recv_into`` per ready
socket and `ChatProtocol.buffer_updated` in the connection's context, which saves asyncio's
per-read handle and calls (a request/response round trip cost 31k instructions through the
transport, 22.0k so; docs/benchmarks.md).  Elsewhere (TLS, uvloop, other platforms) asyncio
reads.  Then `ChatProtocol._flush` pulls ``channel.data_to_send`` (see `WRITE_PIECE`) and
writes at once (sending on the socket itself while the transport buffers nothing, as its
``write`` would), but only until the transport calls `pause_writing` and at most
`FLUSH_BUDGET` bytes per turn of the loop: a producer is never read ahead, and one
connection cannot starve the others.
`resume_writing` pulls again.
Reading stops while the channel holds more than the chat's `Chat.high_water` unsent bytes
(or, in the stream style, more than `HIGH_WATER` unread bytes), while the chat has paused
its reading, and while a read's frames past `Chat.frame_budget` wait: a ``call_soon``
(`ChatProtocol._continue`) dispatches the next budget after the other ready callbacks.
Output queued outside a callback (`output_ready`) is flushed by one coalesced ``call_soon``.
A handler's exception is logged on the ``sanschat.drivers.asyncio`` logger and aborts that
connection only; `Chat.detach` is called exactly once, from `connection_lost`.  A server
(`serve`, `start_server`) accepts through ``_Acceptor``, its own accept loop, which keeps the
server's `Limits` (asyncio's own loop floods the log when out of descriptors and knows no
connection limit).

The stream style (`Connection`, `open_connection`, `serve_connections`) runs the same
protocol with a chat that does not dispatch: received bytes wait in the channel, and
``async for`` walks the channel's lazy iterators, so a terminator set by the consumer
applies to the very next unread byte.  A future is made only when the consumer has to wait
for bytes, never per frame.  Nothing here parses bytes: framing is the core's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import select
import socket
import ssl
import threading
import time
from asyncio import selector_events
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from .._channel import TerminatorLike
from .._chat import Chat
from . import (
    BACKLOG,
    HIGH_WATER,
    LINGER,
    READ_SIZE,
    BackgroundServer,
    Guard,
    Limits,
    Watch,
    apply_high_water,
    format_address,
    log_failure,
    log_limited,
    set_notsent_lowat,
)
from ._pull import PullReader

__all__ = [
    "FLUSH_BUDGET",
    "SEND_SIZE",
    "WRITE_PIECE",
    "ChatProtocol",
    "Connection",
    "connect",
    "open_connection",
    "serve",
    "serve_connections",
    "start_server",
]

logger: logging.Logger = logging.getLogger(__name__)

#: Most bytes taken from the channel per ``write``: a whole read's worth of replies at once.
SEND_SIZE = READ_SIZE

#: Bytes `ChatProtocol` hands to a ``write`` after the socket was full: asyncio copies
#: whatever part of a write the socket does not take, so this bounds that copy for a peer
#: that stops reading; a large item shared by many connections (a fan-out line) goes out
#: in views of it.  Each write taken whole doubles the next, up to `SEND_SIZE`, so a fast
#: reader still gets large writes.  (Writes of 256 KiB cost 1,000 members of a chat that
#: stopped reading 74 MiB of such copies; 16 KiB, what a socket takes at once under
#: ``TCP_NOTSENT_LOWAT``, about 10 MiB.)
WRITE_PIECE = 16 * 1024

#: Bytes one flush may hand to the transport before it yields to the loop (and goes on in a
#: ``call_soon``), so that a peer reading as fast as we write cannot monopolise the loop.
FLUSH_BUDGET = 4 * SEND_SIZE

_local = threading.local()

#: Whether plain TCP connections on a selector loop are read by their loop's `_ReadPoller`
#: (where the platform has epoll) rather than by asyncio's transport; the tests run both ways.
_SHARED_POLL: bool = hasattr(select, "epoll")

#: How many ready connections the poller serves per turn of the loop.
_POLL_BATCH: Final = 256

#: The attribute of an asyncio loop that holds its `_ReadPoller`, while it has one.
_POLLER_ATTRIBUTE: Final = "_sanschat_read_poller"

#: The one transport class whose reading the poller may take over: CPython's plain socket
#: transport (its private ``_sock`` and ``_fatal_error`` are used, as its own reader does).
_SOCKET_TRANSPORT: Final[type] = getattr(selector_events, "_SelectorSocketTransport", type(None))


def _read_buffer() -> memoryview:
    """This thread's read buffer: asyncio fills it and calls `buffer_updated` at once."""
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(READ_SIZE))
    return view


class ChatProtocol(asyncio.BufferedProtocol):
    """Runs one `Chat` over an asyncio transport, and is that chat's `Transport`.

    `serve` and `connect` make them; pass ``lambda: ChatProtocol(chat)`` to any asyncio
    ``create_*`` call (Unix sockets, TLS, uvloop) to run a chat there.  A subclass may
    extend the asyncio callbacks if it calls the base method.
    """

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        """The handler this protocol runs."""
        self._guard: Guard | None = None  # a server's connection: its part in the server's Watch
        self._refused = False
        self._high_water = apply_high_water(chat, None)
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._view = memoryview(b"")
        self._closing = False  # pull no more output: closed, closing or aborted
        self._lost = self._eof = self._ssl = False
        self._writing_paused = self._reading_paused = self._flush_scheduled = False
        self._continuing = False  # a _continue is scheduled
        self._piece = WRITE_PIECE  # bytes for the next write: see WRITE_PIECE
        self._input_full = False  # the stream style's consumer is behind
        self._error: BaseException | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost_waiter: asyncio.Future[None] | None = None
        self._idle_timeout: float | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._linger_handle: asyncio.TimerHandle | None = None
        self._last_active = 0.0
        self._poller: _ReadPoller | None = None  # reads for us (see _start_polling)
        self._sock: Any = None  # the transport's socket, read by the poller
        self._fd = -1  # its descriptor (kept: the poller needs it after a close)
        self._context: contextvars.Context | None = None  # the poller's reads run in it
        self._updated: Any = None  # buffer_updated, bound while the poller reads for us

    # ------------------------------------------------------------ asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Attach the chat (its `Chat.connection_made` runs), then send what it queued."""
        if self._refused:  # past the server's max_connections (asyncio accepted it)
            cast(asyncio.Transport, transport).abort()
            return
        self._transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        self._view = _read_buffer()
        self._ssl = transport.get_extra_info("sslcontext") is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_notsent_lowat(sock)
        # Pause at the first byte asyncio has to buffer, as the select driver stops at a full
        # socket: asyncio copies what the socket does not take, and a copy per connection
        # is what a fan-out must not pay (its default 64 KiB each is 64 MiB for 1,000).
        # (Not over TLS: there the echo test stalled; the TLS layer buffers on its own.)
        if not self._ssl:
            self._transport.set_write_buffer_limits(high=0)
            if _SHARED_POLL and type(transport) is _SOCKET_TRANSPORT:
                # After the transport's own first reader is added (a call_soon of its own)
                self._loop.call_soon(self._start_polling)
        self._guarded(self.chat.attach, self)

    def get_buffer(self, sizehint: int) -> memoryview:
        """The reused read buffer (`READ_SIZE` bytes)."""
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        """Feed the bytes read to the chat, then flush its replies."""
        if self._closing:
            return
        if self._idle_timeout is not None:
            self._touch()
        try:
            # As bytes: the channel copies what it keeps either way, and its hot path (a
            # one-frame read is most reads of a request/response protocol) takes bytes only.
            self.chat.feed(self._view[:nbytes].tobytes())
        except Exception as exc:
            self._fail(exc)
            return
        if self._guard is not None:
            self._guard.read(nbytes)
        self._flush()

    def eof_received(self) -> bool:
        """`Chat.feed_eof`; the connection stays half-open until the chat closes it."""
        if self._closing or self._eof:
            return False
        self._eof = True
        self._guarded(self.chat.feed_eof)
        return not self._ssl  # asyncio's TLS transport cannot stay half-open

    def pause_writing(self) -> None:
        """The transport's buffer is above its high-water mark: pull no more output."""
        self._writing_paused = True

    def resume_writing(self) -> None:
        """The transport's buffer has drained: pull output again, on the next loop turn.

        Not at once: asyncio calls this from inside its write handler, and closing the
        transport there (if the close point is reached) makes the selector transport report
        the connection lost twice (seen on CPython 3.11 and 3.13).
        """
        self._writing_paused = False
        if self._guard is not None:
            self._guard.wrote()
        self.output_ready()

    def connection_lost(self, exc: Exception | None) -> None:
        """Detach the chat, once, with *exc* or the handler's error that closed it."""
        if self._lost:
            return
        self._lost = self._closing = True
        if self._poller is not None:  # before asyncio closes the socket
            self._stop_polling()
        if self._guard is not None:
            self._guard.release()
        if self._refused:
            return  # never attached
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self._linger_handle is not None:
            self._linger_handle.cancel()
        self._wake_drain()
        if self._lost_waiter is not None and not self._lost_waiter.done():
            self._lost_waiter.set_result(None)
        try:
            self.chat.detach(self._error or exc)
        except Exception as error:
            logger.error("error in %s.connection_lost for %s", type(self.chat).__name__,
                         format_address(self._peer()), exc_info=error)

    # ------------------------------------------------------------ the chat's Transport

    def output_ready(self) -> None:
        """Schedule one flush (calls made before it runs are served by the same flush)."""
        if not self._flush_scheduled and not self._closing and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def close(self) -> None:
        """Close now, dropping output not yet written (the transport is aborted)."""
        if self._transport is not None and not self._lost:
            self._closing = True
            self._transport.abort()

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        """Run *callback* on this connection's loop soon; an error closes this connection."""
        if self._loop is None:
            raise RuntimeError("the connection is not made yet")
        self._loop.call_soon_threadsafe(self._guarded, callback)

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Call `Chat.idle` after *seconds* with no byte read or written; None: never."""
        if seconds is not None and seconds <= 0:
            raise ValueError(f"idle timeout must be > 0 seconds or None, not {seconds!r}")
        self._idle_timeout = seconds
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        if seconds is not None and self._loop is not None and not self._lost:
            self._touch()
            self._idle_handle = self._loop.call_later(seconds, self._idle_check)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info (``"peername"``, ``"sockname"``, ``"socket"``, ...)."""
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        """Stop reading now (the chat dispatches nothing more until `resume_reading`)."""
        if self._transport is not None and not self._closing:
            self._update_reading(self._transport)

    def resume_reading(self) -> None:
        """Dispatch what was read meanwhile in a ``call_soon``, then read again."""
        self._schedule_continue()

    async def wait_closed(self) -> None:
        """Return once the connection is lost (at once if it already is)."""
        if not self._lost:
            if self._lost_waiter is None:
                self._lost_waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._lost_waiter)

    # ------------------------------------------------------------ internals

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        """Write what the channel has while the transport takes it; then check the reading.

        Laid out for the common case, a reply that the socket takes whole: one pull, one
        send, a stamp and a few flag tests (this runs once per read; each line here costs
        as much as a property call, so the channel's and chat's private state is read
        directly).
        """
        transport = self._transport
        # The socket transport, when the poller reads for us: its own state is read directly.
        direct: Any = transport if self._poller is not None else None
        if self._closing or transport is None or (
                transport.is_closing() if direct is None else direct._closing):
            return  # is_closing: lost, and connection_lost is yet to come
        chat = self.chat
        channel = chat.channel
        if not self._writing_paused:
            if channel._queue and not channel._wants_close:  # (channel.wants_write)
                budget = FLUSH_BUDGET
                piece = self._piece
                try:
                    while True:
                        chunk = channel.data_to_send(piece)
                        if not chunk:
                            break
                        budget -= len(chunk)
                        if direct is not None and not direct._buffer:
                            # The first step of the transport's write(), one call shorter:
                            # it is open (checked above) and has nothing buffered to send
                            # first.  (Its write() also refuses after write_eof() and
                            # during sendfile(): this driver calls those never or last.)
                            try:
                                sent = self._sock.send(chunk)
                            except (BlockingIOError, InterruptedError):
                                sent = 0
                            except OSError as exc:  # the peer is gone: asyncio's own path
                                direct._fatal_error(exc, "Fatal write error on socket transport")
                                return
                            if sent < len(chunk):  # it buffers the rest, and may pause us
                                transport.write(memoryview(chunk)[sent:])
                        else:
                            transport.write(chunk)
                        # Taken whole: the socket keeps up, so larger pieces; paused: small.
                        if self._writing_paused:
                            self._piece = WRITE_PIECE
                            break
                        if piece < SEND_SIZE:
                            piece = self._piece = min(2 * piece, SEND_SIZE)
                        if not channel._queue:
                            break
                        if budget <= 0:  # yield to the loop; go on in a call_soon
                            if channel.wants_write:
                                self.output_ready()
                            break
                        if transport.is_closing():
                            return  # the write found the peer gone (asyncio warns from 5 on)
                except Exception as exc:  # a producer failed
                    self._fail(exc)
                    return
                if budget < FLUSH_BUDGET:  # bytes went out
                    guard = self._guard
                    if guard is not None:  # (Guard.wrote, inline: once per write)
                        guard.sent = guard.active = guard.watch.now
                    if self._idle_timeout is not None:
                        self._touch()
            if channel._wants_close:
                self._closing = True
                self._close_gracefully(transport)
                return
            if chat._drain_wanted or self._drain_waiter is not None:
                # a handler, a thread or the stream style waits for this output
                self._wake_written(chat)
                if self._closing:
                    return
        if (self._reading_paused or chat._slow or self._input_full
                or (channel._queue and channel.buffered_output > chat.high_water)):
            self._update_reading(transport)  # (else reading goes on: nothing to change)

    def _wake_written(self, chat: Chat) -> None:
        """Output was written: wake the stream style's drain and the chat's waiters."""
        if self._drain_waiter is not None:
            self._wake_drain()
        if chat._drain_wanted:
            try:
                chat.written()
            except Exception as exc:
                self._fail(exc)

    def _update_reading(self, transport: asyncio.Transport) -> None:
        """Pause or resume the transport's reading as the chat's state asks."""
        chat = self.chat
        pause = self._input_full or chat.channel.buffered_output > chat.high_water
        if chat._held or chat._backlog:
            pause = True
            if not chat._held:
                self._schedule_continue()
        if pause is not self._reading_paused and not self._eof:
            self._reading_paused = pause
            self._read(transport, not pause)

    def _read(self, transport: asyncio.Transport, on: bool) -> None:
        """Start or stop reading: in the poller if it reads for us, else in the transport."""
        poller = self._poller
        if poller is not None:
            if on:
                poller.add(self)
            else:
                poller.remove(self)
        elif on:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _start_polling(self) -> None:
        """Move this plain TCP connection's reading from its transport to the loop's poller.

        asyncio reads each connection through a selector callback of its own: a handle, a
        context switch and three Python calls per read, about a quarter of a request/response
        round trip's cost in this process.  The poller (`_ReadPoller`) reads all of them
        from one callback.  The transport stays for everything else (writes, closing, its
        buffer); it only stops reading (``pause_reading``, which it also reports from
        ``is_reading``).  `_flush` then sends as the transport's ``write`` would when the
        transport has nothing buffered.
        """
        transport, loop = self._transport, self._loop
        if self._closing or transport is None or loop is None or transport.is_closing():
            return
        poller = _ReadPoller.join(loop)
        if poller is None:  # none could be made (out of descriptors): the transport reads on
            return
        raw: Any = transport
        transport.pause_reading()
        raw._loop._remove_reader(raw._sock_fd)  # (paused by the chat already, on 3.10)
        self._sock, self._fd = raw._sock, raw._sock_fd
        self._context = contextvars.copy_context()  # as asyncio's reader handle had
        # Bound once (the poller calls it every read), and dropped with the poller: a
        # protocol holding its own bound method is a cycle, freed only by the collector.
        self._updated = self.buffer_updated
        self._poller = poller
        if not self._reading_paused and not self._eof:
            self._poller.add(self)

    def _read_eof(self) -> None:
        """The poller read the peer's end of stream: `eof_received`, as the transport does."""
        if not self.eof_received():
            assert self._transport is not None
            self._transport.close()

    def _stop_polling(self) -> None:
        """Leave the poller: the connection is lost, or someone resumed the transport's own
        reading (which only handing the transport to another protocol does, as
        ``loop.start_tls``), which then reads."""
        if self._poller is not None:
            self._poller.leave(self)
        self._poller = self._updated = None

    def _schedule_continue(self) -> None:
        if not self._continuing and not self._closing and self._loop is not None:
            self._continuing = True
            self._loop.call_soon(self._continue)

    def _continue(self) -> None:
        """Dispatch the next budget of frames already read (or those held while paused)."""
        self._continuing = False
        if not self._closing:
            self._guarded(self.chat.feed, b"")

    def _close_gracefully(self, transport: asyncio.Transport) -> None:
        """Everything queued was handed over: end our stream once asyncio has sent it, then
        read and drop the peer's input until its end of stream (`eof_received` closes), at
        most `LINGER` seconds, so that unread input does not turn the close into a reset
        that loses the last reply.  TLS and transports that cannot half-close just close."""
        if self._eof or self._ssl or not transport.can_write_eof():
            transport.close()  # asyncio sends what it has buffered, then closes
            return
        try:
            transport.write_eof()  # (asyncio shuts the socket down at once if nothing is buffered)
        except OSError:  # the peer is gone already (ENOTCONN): nothing is left to linger for
            transport.abort()
            return
        if self._reading_paused:
            self._reading_paused = False
            self._read(transport, True)
        assert self._loop is not None
        self._linger_handle = self._loop.call_later(LINGER, transport.close)

    def _set_input_full(self, full: bool) -> None:
        self._input_full = full
        self._flush()

    def _wake_drain(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _drain(self, *, empty: bool) -> None:
        """Wait until the transport takes more and the channel holds little (or nothing)."""
        channel = self.chat.channel
        while not self._lost:
            if not self._writing_paused and (
                not channel.wants_write if empty else channel.buffered_output <= self._high_water
            ):
                return
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter
        raise ConnectionResetError("connection lost") from self._error

    def _guarded(self, callback: Callable[..., object], *args: object) -> None:
        """Run a chat callback outside `buffer_updated`, then flush; errors close."""
        if self._lost:
            return
        try:
            callback(*args)
        except Exception as exc:
            self._fail(exc)
            return
        self._flush()

    def _touch(self) -> None:
        assert self._loop is not None
        self._last_active = self._loop.time()

    def _idle_check(self) -> None:
        """The idle timer: I/O only records its time, so re-arm for the remainder if any."""
        self._idle_handle = None
        timeout, loop = self._idle_timeout, self._loop
        if timeout is None or loop is None or self._closing:
            return
        remaining = self._last_active + timeout - loop.time()
        if remaining > 0:
            self._idle_handle = loop.call_later(remaining, self._idle_check)
            return
        self._touch()
        self._idle_handle = loop.call_later(timeout, self._idle_check)
        self._guarded(self.chat.idle)

    def _peer(self) -> object:
        return self.get_extra_info("peername")

    def _fail(self, exc: BaseException, where: object = None) -> None:
        """Log a handler's (or producer's) exception and abort this connection only."""
        self._error = self._error or exc
        log_failure(str(where or type(self.chat).__name__), self._peer(), exc, logger)
        self.close()


class _ReadPoller:
    """The plain TCP connections of one asyncio loop that are reading, in an epoll of its
    own, read from one loop callback.

    Theory of operation: the epoll is level-triggered and holds each reading connection's
    socket once (`add` and `remove` follow `ChatProtocol`'s reading state, so pausing is
    unregistering).  asyncio watches the epoll's own descriptor; when it is readable, `_ready`
    reads up to `_POLL_BATCH` ready sockets as the socket transport's reader would (one
    ``recv_into`` each, into the shared read buffer, then ``buffer_updated``: feed and write
    back, in the connection's own contextvars context, as asyncio's reader handle ran it;
    errors and the end of stream take the transport's paths), then returns to the loop,
    which calls it again on its next turn if more are ready.
    A protocol leaves the epoll before asyncio closes its socket (in ``connection_lost``),
    so a descriptor number reused by a later connection is never confused with it; and if a
    protocol lost its socket without leaving (its transport handed to another protocol), a
    later connection with that descriptor number takes its place (`add`).  Once the last
    connection that joined leaves (reading or not), the poller closes its epoll and the loop
    forgets it; the next connection starts a new one.  So a connection that pauses and
    resumes never needs a new descriptor (which a server out of descriptors may not get);
    one that cannot join a poller (EMFILE) stays read by its transport.  The poller is kept
    on its loop (an attribute), not in a map of loops: a loop dropped with connections still
    open (``asyncio.run`` returning with a connection open) is then freed with its poller,
    their protocols and their sockets, as it is without a poller.
    """

    __slots__ = ("_epoll", "_fd", "_joined", "_loop", "_reading")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._fd = self._epoll.fileno()
        self._reading: dict[int, ChatProtocol] = {}  # fd: the protocol that reads it
        self._joined = 0  # protocols that joined and have not left

    @classmethod
    def join(cls, loop: asyncio.AbstractEventLoop) -> _ReadPoller | None:
        """The poller of *loop* (started if it has none), for one more protocol, which it
        does not read for before `add`; None if none can be made (no descriptor left)."""
        poller: _ReadPoller | None = getattr(loop, _POLLER_ATTRIBUTE, None)
        if poller is None:
            try:
                poller = cls(loop)
            except OSError:  # EMFILE, ENFILE
                return None
            try:
                setattr(loop, _POLLER_ATTRIBUTE, poller)
            except AttributeError:  # (a loop class with __slots__: it keeps no poller)
                poller._epoll.close()
                return None
            loop.add_reader(poller._fd, poller._ready)
        poller._joined += 1
        return poller

    def leave(self, protocol: ChatProtocol) -> None:
        """*protocol*, which joined, is done: `remove` it, and stop if none is left."""
        self.remove(protocol)
        self._joined -= 1
        if not self._joined:
            loop = self._loop
            if getattr(loop, _POLLER_ATTRIBUTE, None) is self:
                delattr(loop, _POLLER_ATTRIBUTE)
            if not loop.is_closed():
                loop.remove_reader(self._fd)
            self._epoll.close()

    def add(self, protocol: ChatProtocol) -> None:
        """Read for *protocol* from now on (again, if it was removed)."""
        fd = protocol._fd
        holder = self._reading.get(fd)
        if holder is protocol:
            return
        if holder is not None:  # lost its socket without leaving: the number is reused
            with contextlib.suppress(OSError):  # (the kernel dropped the closed socket)
                self._epoll.unregister(fd)
        self._epoll.register(fd, select.EPOLLIN)
        self._reading[fd] = protocol

    def remove(self, protocol: ChatProtocol) -> None:
        """Stop reading for *protocol* (nothing if it is not read)."""
        fd = protocol._fd
        if self._reading.get(fd) is not protocol:
            return
        del self._reading[fd]
        with contextlib.suppress(OSError):  # (the kernel drops a closed socket by itself)
            self._epoll.unregister(fd)

    def _ready(self) -> None:
        """asyncio's callback: the epoll has ready sockets; read a batch of them."""
        reading = self._reading  # (a protocol may leave during the batch: its fd then too)
        for fd, _ in self._epoll.poll(0, _POLL_BATCH):
            protocol = reading.get(fd)
            if protocol is None:  # removed since the poll
                continue
            # As the socket transport's own reader reads (and with its error messages); the
            # protocol's callbacks run in the connection's context, as its reader's did.
            transport: Any = protocol._transport
            context: Any = protocol._context  # (set with _poller: never None here)
            if transport._closing or not transport._paused:
                # Closing: asyncio stops reading at close.  Not paused: its own reading was
                # resumed, by whoever the transport was handed to; it reads from now on.
                if transport._closing:
                    self.remove(protocol)
                else:
                    protocol._stop_polling()
                continue
            try:
                nbytes = protocol._sock.recv_into(protocol._view)
            except (BlockingIOError, InterruptedError):
                continue
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # ECONNRESET and the like (logged at debug level)
                self.remove(protocol)
                context.run(transport._fatal_error, exc, "Fatal read error on socket transport")
                continue
            if not nbytes:  # the peer's end of stream
                self.remove(protocol)
                try:
                    context.run(protocol._read_eof)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:  # (as the transport: CancelledError, say)
                    context.run(transport._fatal_error, exc,
                                "Fatal error: protocol.eof_received() call failed.")
                continue
            try:
                context.run(protocol._updated, nbytes)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # (a bug: the chat's own errors are handled)
                context.run(transport._fatal_error, exc,
                            "Fatal error: protocol.buffer_updated() call failed.")


async def serve(
    factory: Callable[[], Chat],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: Limits | None = None,
    **kwargs: Any,
) -> asyncio.Server:
    """Serve on *host*:*port*, one ``factory()`` chat per connection; return the server.

    The server keeps *limits* (None: the defaults of `Limits`).  *kwargs* go to
    `loop.create_server` (``ssl=``, ``backlog=``, ``reuse_port=``, ...).  Closing the server
    stops accepting; the connections open then go on.
    """
    return (await _Acceptor.start(factory, host, port, limits or Limits(), kwargs)).server


def _given(protocol: ChatProtocol) -> Callable[[], ChatProtocol]:
    return lambda: protocol


class _Acceptor:
    """sanschat's own accepting for an asyncio server, within its `Limits` (its `Watch`).

    asyncio's accept loop, out of descriptors, logs a traceback for each of up to 100
    failed accepts per wake-up and schedules a retry for each (122,000 tracebacks in 40 s
    were seen), and cannot stop accepting at a connection limit.  So the server's sockets
    are made by ``create_server(start_serving=False)`` and accepted here, through a reader
    of our own and ``connect_accepted_socket``: out of descriptors, one line a second at
    most and a 1 s pause.  On a loop that has no readers or no such sockets (uvloop,
    Windows' proactor) asyncio accepts, and a connection past the limit is closed at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], Chat],
                 limits: Limits, kwargs: dict[str, Any]) -> None:
        self.loop, self.factory = loop, factory
        self.watch = Watch(limits, self._pause, self._resume)
        self.server: asyncio.Server
        self._socks: list[socket.socket] = []
        self._ssl = {k: kwargs[k] for k in ("ssl", "ssl_handshake_timeout",
                                            "ssl_shutdown_timeout") if kwargs.get(k) is not None}
        self._reading = self._starved = False
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    async def start(cls, factory: Callable[[], Chat], host: str | None, port: int,
                    limits: Limits, kwargs: dict[str, Any]) -> _Acceptor:
        loop = asyncio.get_running_loop()
        self = cls(loop, factory, limits, kwargs)
        server = self.server = await loop.create_server(
            self._protocol, host, port, **{**kwargs, "start_serving": False})
        raw = getattr(server, "_sockets", None)  # CPython's Server; not uvloop's
        if isinstance(loop, asyncio.SelectorEventLoop) and isinstance(raw, list):
            self._socks = raw
            for sock in raw:
                sock.listen(getattr(server, "_backlog", 100))
            server._serving = True  # type: ignore[attr-defined]  # so start_serving() is a no-op
            self._resume()
        else:
            await server.start_serving()
        interval = limits.sweep_interval
        if interval is not None:
            loop.call_later(interval, self._sweep, interval)
        return self

    def _protocol(self) -> ChatProtocol:
        """A connection accepted by asyncio itself (the fallback)."""
        protocol = self._make()
        limit = self.watch.limits.max_connections
        if limit is not None and len(self.watch.guards) > limit:
            protocol._refused = True
        return protocol

    def _make(self) -> ChatProtocol:
        chat = self.factory()
        protocol = ChatProtocol(chat)
        protocol._guard = self.watch.add(chat, protocol.close, protocol._guarded)
        protocol._high_water = apply_high_water(chat, self.watch.limits)
        return protocol

    def _accept(self, sock: socket.socket) -> None:
        admit = self.watch.admit
        for _ in range(64):  # bounded, so that a connection storm cannot starve the rest
            if not admit():
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # EMFILE and the like: pause rather than spin on it
                log_limited("accept failed", logging.ERROR,
                            "accept on %s failed, pausing 1 s: %s",
                            format_address(sock.getsockname()), exc, logger=logger)
                self._starved = True
                self._pause()
                self.loop.call_later(1.0, self._retry)
                return
            conn.setblocking(False)
            try:
                protocol = self._make()
            except Exception:
                conn.close()
                logger.exception("error in the connection factory; connection dropped")
                continue
            task = self.loop.create_task(self.loop.connect_accepted_socket(
                _given(protocol), conn, **self._ssl))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._accepted, protocol, conn))

    def _accepted(self, protocol: ChatProtocol, conn: socket.socket,
                  task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is not None:  # a TLS handshake failed, ...
            if not task.cancelled():
                logger.debug("connection from an accepted socket failed: %r",
                             task.exception())
            conn.close()
            if protocol._guard is not None and protocol._transport is None:
                protocol._guard.release()

    def _pause(self) -> None:
        if self._reading:
            self._reading = False
            for sock in self._socks:
                if sock.fileno() != -1:
                    self.loop.remove_reader(sock.fileno())

    def _resume(self) -> None:
        if self._reading or self._starved or not self._socks or not self.server.is_serving():
            return
        self._reading = True
        for sock in self._socks:
            if sock.fileno() != -1:
                self.loop.add_reader(sock.fileno(), self._accept, sock)

    def _retry(self) -> None:
        self._starved = False
        if self.watch.accepting:
            self._resume()

    def _sweep(self, interval: float) -> None:
        if self.server.is_serving() or self.watch.guards:
            self.loop.call_later(self.watch.sweep(), self._sweep, interval)


async def connect(chat: Chat, host: str, port: int, **kwargs: Any) -> ChatProtocol:
    """Connect to *host*:*port* and run *chat* there; return its protocol.

    *kwargs* go to `loop.create_connection`; ``await protocol.wait_closed()`` waits for
    the end of the connection.
    """
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: ChatProtocol(chat), host, port, **kwargs)
    return protocol


# ---------------------------------------------------------------- the stream style


class _StreamChat(Chat):
    """A chat that does not dispatch: bytes wait in the channel for its `Connection`."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn

    def connection_made(self) -> None:
        if self._conn._on_made is not None:
            self._conn._on_made()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        # Held apart until the consumer's iterator runs dry: handing them to the channel
        # now would end that iterator (a channel has one reader at a time).
        if data:
            self._conn._pending += data
            self._conn._received(len(data))

    def feed_eof(self) -> None:
        self._conn._received(0, eof=True)

    def detach(self, exc: BaseException | None = None) -> None:
        super().detach(exc)
        self._conn._received(0, eof=exc is None, error=exc)


class Connection(PullReader):
    """One connection, read with ``async for`` and written with ``await send``.

    Made by `open_connection` and `serve_connections`, or by hand: pass
    ``lambda: conn.protocol`` to any asyncio ``create_*`` call.  One task reads:

    * ``async for event in conn`` yields the channel's `Data` and `TerminatorFound`
      events, then one `EndOfStream`, then stops;
    * ``async for frame in conn.frames()`` yields whole frames (terminator excluded) and
      stops at end of stream; bytes of a last frame left without its terminator are then
      in `unframed`.

    The two styles may be mixed between frames.  A terminator set with `set_terminator`
    applies to the very next unread byte.  While nobody iterates, about `HIGH_WATER`
    unread bytes at most are buffered, then reading stops until iteration catches up.
    Iteration raises `FrameTooLarge` for a frame past the limit, and the error that broke
    the connection (after the bytes received before it).
    """

    def __init__(
        self, terminator: TerminatorLike = b"\r\n", *, max_frame_size: int | None = None
    ) -> None:
        chat = _StreamChat(self)
        chat.channel.set_terminator(terminator, max_frame_size=max_frame_size)
        super().__init__(chat.channel)
        self.protocol: ChatProtocol = ChatProtocol(chat)
        """The asyncio protocol carrying this connection."""
        self._unread = 0  # bytes received since the consumer last ran dry
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._eof_sent = False
        self._on_made: Callable[[], object] | None = None

    async def _more(self) -> None:
        """The consumer has read everything received: resume reading and wait for more."""
        self._unread = 0
        if self.protocol._input_full:
            self.protocol._set_input_full(False)
        if self._eof:
            return
        if self._error is not None:
            raise self._error
        if self._waiter is not None:
            raise RuntimeError("another task is already reading this connection")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _received(self, size: int, eof: bool = False, error: BaseException | None = None) -> None:
        self._unread += size
        if self._unread > HIGH_WATER and not self.protocol._input_full:
            self.protocol._set_input_full(True)
        self._eof |= eof
        self._error = self._error or error
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue *data*; return once the transport can take more.

        The bytes are written at the next turn of the loop, together with whatever else was
        sent before it, so that a burst of small sends costs one ``write``.

        Raises:
            ConnectionResetError: if the connection is closed or lost.
            RuntimeError: after `send_eof`.
        """
        protocol, transport = self.protocol, self.protocol._transport
        if protocol._closing or transport is None or transport.is_closing():
            raise ConnectionResetError("the connection is closed") from protocol._error
        if self._eof_sent:
            raise RuntimeError("send() after send_eof()")
        self.channel.push(data)
        protocol.output_ready()
        if protocol._writing_paused or self.channel.buffered_output > HIGH_WATER:
            await protocol._drain(empty=False)

    async def send_eof(self) -> None:
        """Write what is queued, then end our side of the stream; the peer may go on.

        Raises:
            ConnectionResetError: if the connection is closed or lost.
            NotImplementedError: if the transport cannot half-close (TLS).
        """
        transport = self.protocol._transport
        if self.protocol._closing or transport is None:
            raise ConnectionResetError("the connection is closed") from self.protocol._error
        if not transport.can_write_eof():
            raise NotImplementedError(f"{type(transport).__name__} cannot half-close")
        if not self._eof_sent:
            self._eof_sent = True
            await self.protocol._drain(empty=True)
            transport.write_eof()

    def abort(self) -> None:
        """Close at once; output not yet written is dropped."""
        self.protocol.close()

    async def aclose(self) -> None:
        """Write what is queued, close, and wait until the connection is gone.

        As with asyncio's ``StreamWriter.wait_closed``, this waits for the peer to take the
        bytes already written; if the wait is cancelled, the connection is aborted.
        """
        protocol, transport = self.protocol, self.protocol._transport
        if transport is None or protocol._lost:
            return
        if not protocol._closing:
            protocol._closing = True
            while chunk := self.channel.data_to_send(SEND_SIZE):
                transport.write(chunk)
            transport.close()
        try:
            await protocol.wait_closed()
        except asyncio.CancelledError:
            transport.abort()
            raise

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info (``"peername"``, ``"socket"``, ``"ssl_object"``, ...)."""
        return self.protocol.get_extra_info(name, default)


async def open_connection(
    host: str,
    port: int,
    *,
    terminator: TerminatorLike = b"\r\n",
    max_frame_size: int | None = None,
    **kwargs: Any,
) -> Connection:
    """Connect to *host*:*port*; return a `Connection` framed by *terminator*.

    *kwargs* go to `loop.create_connection` (``ssl=``, ``local_addr=``, ...).
    """
    conn = Connection(terminator, max_frame_size=max_frame_size)
    await asyncio.get_running_loop().create_connection(lambda: conn.protocol, host, port,
                                                       **kwargs)
    return conn


async def serve_connections(
    handler: Callable[[Connection], Awaitable[None]],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    terminator: TerminatorLike = b"\r\n",
    max_frame_size: int | None = None,
    **kwargs: Any,
) -> asyncio.Server:
    """Serve on *host*:*port*, running ``await handler(conn)`` in a task per connection.

    When the handler returns, the connection is closed (`Connection.aclose`); if it raises,
    the error is logged on the ``sanschat`` logger and that connection only is aborted.
    *kwargs* go to `loop.create_server`.
    """
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def run(conn: Connection) -> None:
        try:
            await handler(conn)
        except Exception as exc:
            if conn.protocol._lost and (exc is conn._error or isinstance(exc, ConnectionError)):
                logger.debug("connection with %s lost: %r",
                             format_address(conn.get_extra_info("peername")), exc)
            else:
                conn.protocol._fail(exc, getattr(handler, "__qualname__", handler))
        except BaseException:
            conn.abort()
            raise
        else:
            await conn.aclose()

    def make() -> ChatProtocol:
        conn = Connection(terminator, max_frame_size=max_frame_size)

        def start() -> None:
            task = loop.create_task(run(conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        conn._on_made = start
        return conn.protocol

    return await loop.create_server(make, host, port, **kwargs)


class _BackgroundServer:
    """`start_server`'s result: an asyncio loop serving in a daemon thread."""

    def __init__(self, factory: Callable[[], Chat], host: str, port: int,
                 ssl_context: ssl.SSLContext | None, backlog: int,
                 limits: Limits | None = None) -> None:
        self.address = (host, port)
        self._limits = limits or Limits()
        self._grace = 0.0  # set by stop() before it wakes the loop
        """The host and port the server accepts connections on."""
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._stopped = False
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()  # bound to the server's loop when first awaited
        main = self._main(factory, ssl_context, backlog)
        self._thread = threading.Thread(target=asyncio.run, args=(main,),
                                        name="sanschat-asyncio", daemon=True)
        self._thread.start()
        if not self._ready.wait(30.0):
            raise RuntimeError("the asyncio server thread did not start listening")
        if self._failure is not None:
            raise self._failure

    async def _main(self, factory: Callable[[], Chat], ssl_context: ssl.SSLContext | None,
                    backlog: int) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            acceptor = await _Acceptor.start(factory, *self.address, self._limits,
                                             {"ssl": ssl_context, "backlog": backlog})
            server = acceptor.server
            self.address = server.sockets[0].getsockname()[:2]
        except BaseException as exc:
            self._failure = exc
            return
        finally:
            self._ready.set()
        await self._stop.wait()
        server.close()
        watch = acceptor.watch
        if self._grace > 0:  # ask every connection to close once its output is sent
            watch.close_all()
            deadline = time.monotonic() + self._grace
            while watch.guards and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        for task in list(acceptor._tasks):  # connections not made yet
            task.cancel()
        watch.abort_all()
        deadline = time.monotonic() + 1.0  # connection_lost comes one loop turn later
        while watch.guards and time.monotonic() < deadline:
            await asyncio.sleep(0)

    def stop(self, timeout: float = 5.0, *, grace: float = 0.0) -> None:
        """Close the listener and every connection, stop the loop and join the thread.

        With *grace* > 0 the connections first get that many seconds to send what they
        queued and close (`Watch.close_all`); those still open then are aborted.  Callable
        from any thread but the server's own; a second call does nothing.

        Raises:
            TimeoutError: if the thread has not ended after *timeout* seconds.
        """
        with self._lock:
            stopped, self._stopped = self._stopped, True
        self._grace = grace
        if not stopped and self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the asyncio server thread did not end in {timeout} s")


def start_server(
    factory: Callable[[], Chat],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    backlog: int = BACKLOG,
    limits: Limits | None = None,
) -> BackgroundServer:
    """Serve *factory* on an asyncio loop in a daemon thread, within *limits*; return once
    it listens.

    *ssl_context* (server side, certificate loaded) makes every connection TLS; *backlog*
    is the listen queue's length.  Raises `OSError` if the address cannot be bound.
    """
    return _BackgroundServer(factory, host, port, ssl_context, backlog, limits)
