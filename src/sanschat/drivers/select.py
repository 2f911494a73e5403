"""The select driver: a single-threaded loop on epoll (Linux) or `selectors.DefaultSelector`.

Theory of operation: a `Loop` owns a poller, a heap of timers, a queue of ready callbacks
and one read buffer.  `Loop.run_once` waits for I/O (no longer than the next timer), runs
the handler of each ready socket, then the due timers and the callbacks already queued.
Sockets are non-blocking; would-block means "retry later", never an error.  The poller is
epoll itself where there is one (`selectors` on top of it costs about 0.5 us more per ready
socket, a tenth of a one-frame request's whole path), else `selectors.DefaultSelector`;
both report selectors' ``EVENT_READ`` / ``EVENT_WRITE`` masks, limited to those registered.

A connection reads with ``recv_into`` into the loop's buffer of `READ_SIZE` bytes and hands
a ``bytes`` copy of what was read to `Chat.feed` (so a chat may keep it), then flushes at
once, without waiting for writability: it pulls a chunk with ``data_to_send`` only while
``send`` takes all it is given, gives back the rest of a partial write with ``unsend``, and
closes once ``wants_close``.  EVENT_WRITE is registered
only while output is pending; EVENT_READ is dropped after end of stream, while output
above the chat's `Chat.high_water` is queued (so a peer that never reads cannot grow the
server's memory), while the chat has paused its reading, and while a read's frames past
`Chat.frame_budget` wait: those are dispatched by a callback on the ready queue
(``_continue``), which runs after the sockets of the round and re-queues itself, one budget
per round, until the backlog is gone.  The high water is the chat class's, else the
server's `Limits.high_water` (`apply_high_water`).  A listener keeps its server's `Limits`
through a `Watch` (one sweep timer per listener, for every timeout) and pauses accepting at
``max_connections`` or out of descriptors (one log line a second).

A chat is detached exactly once, from the ready queue, never inside its own callback.  An
exception from a handler, producer or channel is logged (logger ``sanschat.drivers.select``,
naming the peer) and closes that connection only; a peer's reset is logged at debug level.

TLS (`Loop.listen` with an ``ssl_context``): an accepted socket is wrapped in a non-blocking
`ssl.SSLSocket` and handshakes (within `HANDSHAKE_TIMEOUT`) before its chat is attached;
`_TLSConnection` turns the ``SSLWantReadError`` / ``SSLWantWriteError`` of the handshake, of
``recv_into`` and of ``send`` into registrations for the readiness the TLS layer waits for
(a send waiting for the peer's bytes does not wait for writability: that would spin), and
queues another read while decrypted bytes wait inside the ``ssl`` object, where the poller
cannot see them.  A graceful close sends ``close_notify`` before the FIN.  Only
`Loop.call_soon_threadsafe` and `Loop.stop` are thread-safe: a socketpair wakes the
poller for them.  An idle timeout is one timer per connection, checked lazily: I/O only
stores the time, and the timer re-arms itself for the remainder when it fires.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import logging
import os
import select
import selectors
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from time import monotonic
from typing import Any, Final, Protocol, final

from .._chat import Chat
from . import (
    BACKLOG,
    LINGER,
    READ_SIZE,
    Guard,
    Limits,
    Watch,
    apply_high_water,
    format_address,
    log_failure,
    log_limited,
    set_notsent_lowat,
)

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "WRITE_SIZE",
    "Listener",
    "Loop",
    "ServerThread",
    "Timer",
    "serve",
    "start_server",
]

_logger = logging.getLogger(__name__)

#: Most bytes pulled from a channel per ``send``: about what a loopback socket takes in one
#: call, so a burst of replies goes out in one write; producers are never read further ahead.
WRITE_SIZE: Final = 256 * 1024

#: Seconds a TLS client has to finish its handshake before the connection is dropped (as
#: asyncio's ``ssl_handshake_timeout``): the chat is not attached yet, so its idle timeout
#: cannot guard a client that connects and says nothing.
HANDSHAKE_TIMEOUT: Final = 60.0

_READ: Final = selectors.EVENT_READ
_WRITE: Final = selectors.EVENT_WRITE
_RETRY = (BlockingIOError, InterruptedError)
_TLS_RETRY = (ssl.SSLWantReadError, ssl.SSLWantWriteError)
_Callback = Callable[[], object]


class _Handler(Protocol):
    """What a poller reports readiness to: the loop's wakeup socket, a listener, a connection."""

    def _handle(self, mask: int) -> None: ...

    def _fail(self, exc: BaseException) -> None: ...


class _SelectorPoller:
    """The portable poller: `selectors.DefaultSelector` (kqueue on BSD and macOS, ...)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def register(self, sock: socket.socket, events: int, handler: _Handler) -> None:
        self._selector.register(sock, events, handler)

    def modify(self, sock: socket.socket, events: int, handler: _Handler) -> None:
        self._selector.modify(sock, events, handler)

    def unregister(self, sock: socket.socket) -> None:
        self._selector.unregister(sock)

    def __contains__(self, sock: socket.socket) -> bool:
        return sock in self._selector.get_map()

    def poll(self, timeout: float | None) -> list[tuple[_Handler, int]]:
        return [(key.data, mask) for key, mask in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()


class _EpollPoller:
    """The Linux poller: epoll itself, and a dict from file descriptor to handler."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._handlers: dict[int, tuple[_Handler, int]] = {}  # fd -> (handler, events)

    def register(self, sock: socket.socket, events: int, handler: _Handler) -> None:
        fd = sock.fileno()
        self._epoll.register(fd, _epoll_flags(events))
        self._handlers[fd] = (handler, events)

    def modify(self, sock: socket.socket, events: int, handler: _Handler) -> None:
        fd = sock.fileno()
        self._epoll.modify(fd, _epoll_flags(events))
        self._handlers[fd] = (handler, events)

    def unregister(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        del self._handlers[fd]
        with contextlib.suppress(OSError):  # as selectors: the kernel may have dropped it
            self._epoll.unregister(fd)

    def __contains__(self, sock: socket.socket) -> bool:
        return sock.fileno() in self._handlers

    def poll(self, timeout: float | None) -> list[tuple[_Handler, int]]:
        handlers = self._handlers
        ready = []
        for fd, flags in self._epoll.poll(-1 if timeout is None else timeout, len(handlers) or 1):
            entry = handlers.get(fd)  # None: unregistered by an earlier handler this round
            if entry is not None:
                handler, events = entry
                if flags == _EPOLLIN:  # readable, nothing else: most events
                    ready.append((handler, _READ & events))
                elif flags & _EPOLL_TROUBLE:  # an error or hang-up: the handler's call finds out
                    ready.append((handler, events))
                else:
                    mask = (_READ if flags & _EPOLLIN else 0) | (_WRITE if flags & _EPOLLOUT else 0)
                    ready.append((handler, mask & events))
        return ready

    def close(self) -> None:
        self._epoll.close()


_Poller: type[_EpollPoller | _SelectorPoller] = _SelectorPoller
if hasattr(select, "epoll"):
    _EPOLLIN: Final = select.EPOLLIN
    _EPOLLOUT: Final = select.EPOLLOUT
    _EPOLL_TROUBLE: Final = select.EPOLLERR | select.EPOLLHUP
    _Poller = _EpollPoller


def _epoll_flags(events: int) -> int:
    return (_EPOLLIN if events & _READ else 0) | (_EPOLLOUT if events & _WRITE else 0)


@final
class Timer:
    """A callback scheduled by `Loop.call_later`: it runs once, unless cancelled first."""

    __slots__ = ("_callback", "_loop", "_owner", "when")

    def __init__(self, loop: Loop, when: float, callback: Callable[[], object], owner: Any) -> None:
        self._loop, self._owner = loop, owner
        self._callback: _Callback | None = callback
        self.when: float = when
        """The `time.monotonic` time at which the callback is due."""

    def cancel(self) -> None:
        """Make sure the callback does not run; harmless if it ran or was cancelled."""
        if self._callback is not None:
            self._callback = None
            self._loop._timer_cancelled()

    def _run(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


@final
class Listener:
    """A listening socket of a `Loop` (see `Loop.listen`): a new chat per connection, within
    its `Limits` (kept by its `Watch`: `watch`)."""

    def __init__(self, loop: Loop, sock: socket.socket, factory: Callable[[], Chat],
                 ssl_context: ssl.SSLContext | None = None,
                 limits: Limits | None = None) -> None:
        self._loop, self._sock, self._factory = loop, sock, factory
        self._ssl_context = ssl_context
        self._closed = self._starved = False  # starved: out of descriptors, retrying soon
        self.address: tuple[str, int] = sock.getsockname()[:2]
        """The host and port actually bound."""
        self.watch: Watch = Watch(limits or Limits(), self._pause, self._resume)
        """This listener's connections and limits."""
        interval = self.watch.limits.sweep_interval
        if interval is not None:
            loop._call_later(interval, partial(self._sweep, interval), None)

    def close(self) -> None:
        """Stop accepting; connections already accepted stay open.  Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._pause()
            self._loop._listeners.discard(self)
            self._sock.close()

    def _handle(self, mask: int) -> None:
        admit = self.watch.admit
        for _ in range(64):  # bounded, so that a connection storm cannot starve the rest
            if not admit():
                return
            try:
                sock, peer = self._sock.accept()
            except _RETRY:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # EMFILE and the like: pause rather than spin on it
                log_limited("accept failed", logging.ERROR,
                            "accept on %s failed, pausing 1 s: %s",
                            format_address(self.address), exc, logger=_logger)
                self._starved = True
                self._pause()
                self._loop.call_later(1.0, self._retry)
                return
            if self._ssl_context is not None:
                sock.setblocking(False)
                try:
                    sock = self._ssl_context.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False)
                except OSError as exc:  # reset at once
                    sock.close()
                    _logger.debug("connection with %s lost: %r", format_address(peer), exc)
                    continue
            try:
                chat = self._factory()
            except Exception:
                sock.close()
                _logger.exception("error in the connection factory for %s; connection dropped",
                                  format_address(peer))
                continue
            except BaseException:
                sock.close()
                raise
            conn: _Connection
            if isinstance(sock, ssl.SSLSocket):
                conn = _TLSConnection(self._loop, sock, chat, peer=peer)
            else:
                conn = _Connection(self._loop, sock, chat, peer=peer)
            conn._guard = self.watch.add(chat, conn.close, conn._dispatch)
            conn._high_water = apply_high_water(chat, self.watch.limits)
            conn._start()

    def _pause(self) -> None:
        if self._sock in self._loop._poller:
            self._loop._poller.unregister(self._sock)

    def _resume(self) -> None:
        if not (self._closed or self._starved) and self._sock not in self._loop._poller:
            self._loop._poller.register(self._sock, _READ, self)

    def _retry(self) -> None:
        self._starved = False
        if self.watch.accepting:
            self._resume()

    def _sweep(self, interval: float) -> None:
        watch = self.watch
        if self._closed and not watch.guards:
            return
        delay = watch.sweep()
        self._loop._call_later(delay, partial(self._sweep, interval), None)

    def _fail(self, exc: BaseException) -> None:
        _logger.error("error accepting on %s", format_address(self.address), exc_info=exc)


class _Connection:
    """One socket and its chat: the `Transport` that the select driver gives a `Chat`."""

    __slots__ = ("_chat", "_closed", "_connecting", "_continuing", "_eof", "_events", "_extra",
                 "_flushing", "_guard", "_high_water", "_idle", "_idle_timer", "_last",
                 "_linger_timer", "_loop", "_sock")

    def __init__(self, loop: Loop, sock: socket.socket, chat: Chat, connecting: bool = False,
                 peer: Any = None):
        self._loop, self._sock, self._chat, self._connecting = loop, sock, chat, connecting
        self._closed = self._eof = self._flushing = self._continuing = False
        self._events = 0
        self._idle: float | None = None
        self._idle_timer: Timer | None = None
        self._linger_timer: Timer | None = None  # set once our FIN is sent (see _linger)
        self._last = 0.0
        self._guard: Guard | None = None  # a server's connection: its part in the server's Watch
        self._high_water = apply_high_water(chat, None)
        self._extra: dict[str, Any] = {"socket": sock, "peername": peer}
        loop._conns.add(self)
        sock.setblocking(False)

    # -- the Transport protocol: called by the chat, on the loop's thread

    def output_ready(self) -> None:
        """Schedule a flush of output queued outside a callback (unless the socket is full:
        then its writability flushes it, and a fan-out pays no failed send per push)."""
        if not self._flushing and not self._closed and not self._events & _WRITE:
            self._flushing = True
            self._loop._ready.append((self._queued_flush, self))

    def close(self) -> None:
        """Close now, dropping unwritten output; the chat is detached from the ready queue."""
        self._teardown(None)

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        """Run *callback* on the loop's thread soon; if it raises, this connection closes."""
        self._loop._call_soon(callback, self)

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Call `Chat.idle` after *seconds* with no byte read or written (None: never)."""
        if seconds is not None and not seconds > 0:
            raise ValueError(f"an idle timeout must be > 0 seconds or None, not {seconds!r}")
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._idle = seconds
        if seconds is not None and not self._closed:
            self._last = monotonic()
            self._idle_timer = self._loop._call_later(seconds, self._check_idle, self)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"``, ``"sockname"``, ``"socket"`` (never read or write through it); over
        TLS also ``"ssl_object"``, the `ssl.SSLSocket` (``version()``, ``getpeercert()``)."""
        return self._extra.get(name, default)

    def pause_reading(self) -> None:
        """Stop reading (the registration is updated by the flush that follows)."""
        self.output_ready()

    def resume_reading(self) -> None:
        """Dispatch what was read meanwhile on the ready queue, then read again."""
        self._schedule_continue()

    # -- the driver's side

    def _start(self) -> None:
        """Attach the chat to a connected socket; errors close this connection only."""
        sock = self._sock
        self._connecting = False
        try:
            self._extra["peername"] = sock.getpeername()
            self._extra["sockname"] = sock.getsockname()
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                set_notsent_lowat(sock)
        except OSError as exc:  # reset before we got to it
            self._lost(exc)
            return
        self._attach()

    def _attach(self) -> None:
        try:
            self._chat.attach(self)
            if not self._closed:
                self._flush()
        except Exception as exc:
            self._fail(exc)

    def _handle(self, mask: int) -> None:
        if self._closed:
            return
        if self._connecting:
            err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._lost(OSError(err, os.strerror(err)))
            else:
                self._start()
            return
        if mask != _READ and mask & _WRITE:
            self._flush()
            if self._closed or not mask & _READ:
                return
        loop = self._loop
        try:
            n = self._sock.recv_into(loop._buffer)
        except _RETRY:
            return
        except _TLS_RETRY as exc:
            self._tls_blocked(exc, _READ)
            return
        except OSError as exc:
            self._lost(exc)
            return
        if self._linger_timer is not None:  # closing: drop the input, its end ends us
            if not n:
                self._teardown(None)
            return
        self._last = loop._now
        if n:
            # As bytes: the channel copies what it keeps either way, and its hot path (a
            # one-frame read is most reads of a request/response protocol) takes bytes only.
            self._chat.feed(loop._view[:n].tobytes())
        else:
            self._eof = True
            self._chat.feed_eof()
        if self._guard is not None:
            self._guard.read(n)
        if not self._closed:
            self._flush()

    def _flush(self) -> None:
        """Send while the socket takes it all (no wait for writability first), then register
        for what is wanted next: reading unless at EOF, above the high water, paused or with
        a backlog (then ``_continue`` is queued); writing while output is left."""
        chat = self._chat
        channel = chat.channel
        pending = False  # output left that the socket did not take
        # (The channel's private state is read directly: this runs once per read, and a
        # property call costs as much as a line of this loop.)
        if channel._queue and not channel._wants_close:  # (channel.wants_write)
            while True:
                chunk = channel.data_to_send(WRITE_SIZE)
                if not chunk:
                    pending = channel.wants_write
                    break
                try:
                    sent = self._sock.send(chunk)
                except _RETRY:
                    sent = 0
                except _TLS_RETRY as exc:
                    sent = self._tls_blocked(exc, _WRITE)
                except OSError as exc:
                    self._lost(exc)
                    return
                if sent:
                    self._last = self._loop._now
                    guard = self._guard
                    if guard is not None:  # (Guard.wrote, inline: once per write)
                        guard.sent = guard.active = guard.watch.now
                if sent < len(chunk):
                    channel.unsend(memoryview(chunk)[sent:])
                    pending = True  # the socket is full
                    break
                if not channel._queue:  # all sent (_wants_close is set by a call that
                    break  # sends nothing)
        if chat._drain_wanted:  # a handler or a thread waits for this output to drain
            chat.written()
            if self._closed:
                return
        if channel._wants_close:
            self._linger()
            return
        if pending or self._eof or chat._slow:  # (_slow: held or backlog)
            stop = self._eof
            if chat._slow:
                stop = True
                if not chat._held:
                    self._schedule_continue()
            if pending:
                full = stop or channel.buffered_output > chat.high_water
                want = _WRITE if full else _READ | _WRITE
            else:
                want = 0 if stop else _READ
            if want != self._events:
                self._set_events(want)
        elif self._events != _READ:  # all sent, reading on: the common case after a reply
            self._set_events(_READ)

    def _set_events(self, want: int) -> None:
        poller = self._loop._poller
        if not self._events:
            poller.register(self._sock, want, self)
        elif not want:
            poller.unregister(self._sock)
        else:
            poller.modify(self._sock, want, self)
        self._events = want

    def _tls_blocked(self, exc: ssl.SSLError, doing: int) -> int:
        raise exc  # only a _TLSConnection's socket raises these

    def _schedule_continue(self) -> None:
        if not self._continuing and not self._closed:
            self._continuing = True
            self._loop._ready.append((self._continue, self))

    def _continue(self) -> None:
        """Dispatch the next budget of frames already read (or those held while paused)."""
        self._continuing = False
        if self._closed or self._connecting:
            return
        self._chat.feed(b"")
        if not self._closed:
            self._flush()

    def _linger(self) -> None:
        """Everything queued was sent: end our stream (FIN), then read and drop the peer's
        input until its end of stream, at most `LINGER` seconds, so that unread input does
        not turn the close into a reset that loses the last reply (see `LINGER`)."""
        sock = self._sock
        if self._linger_timer is not None:
            return  # already lingering
        if self._eof or sock.type != socket.SOCK_STREAM:
            self._teardown(None)
            return
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._teardown(None)
            return
        poller = self._loop._poller
        if self._events != _READ:
            if self._events:
                poller.modify(sock, _READ, self)
            else:
                poller.register(sock, _READ, self)
            self._events = _READ
        self._linger_timer = self._loop._call_later(LINGER, self._teardown_now, self)

    def _teardown_now(self) -> None:
        self._teardown(None)

    def _queued_flush(self) -> None:
        self._flushing = False
        if not self._closed and not self._connecting:
            self._flush()

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self._closed or self._idle is None:
            return
        now = monotonic()
        remaining = self._last + self._idle - now
        if remaining <= 0:
            self._last = now
            self._chat.idle()
            remaining = self._idle
        if not self._closed and self._idle is not None and self._idle_timer is None:
            self._idle_timer = self._loop._call_later(remaining, self._check_idle, self)

    def _dispatch(self, callback: _Callback) -> None:
        """Run a chat callback outside a read (verbs then schedule the flush); errors close."""
        try:
            callback()
        except Exception as exc:
            self._fail(exc)

    def _lost(self, exc: OSError) -> None:
        _logger.debug("connection with %s lost: %r", format_address(self._extra["peername"]),
                      exc)
        self._teardown(exc)

    def _fail(self, exc: BaseException) -> None:
        log_failure(type(self._chat).__name__, self._extra["peername"], exc, _logger)
        self._teardown(exc)

    def _teardown(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        if self._events:
            loop._poller.unregister(self._sock)
            self._events = 0
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        loop._conns.discard(self)
        if self._guard is not None:
            self._guard.release()
        self._sock.close()
        loop._ready.append((partial(self._detach, exc), None))

    def _detach(self, exc: BaseException | None) -> None:
        try:
            self._chat.detach(exc)
        except Exception:
            _logger.exception("error in %s.connection_lost for %s", type(self._chat).__name__,
                              format_address(self._extra["peername"]))


@final
class _TLSConnection(_Connection):
    """A connection over a non-blocking `ssl.SSLSocket`: handshake first, then the chat.

    `_tls_wants` is the readiness (``_READ`` or ``_WRITE``) the TLS layer asked for when it
    could not go on in the other direction: a ``recv_into`` that must write (a key update's
    answer) or a ``send`` that must read (a renegotiation).  A read takes what the ``ssl``
    object hands out in one call (often a record); while decrypted bytes are left inside it,
    where the poller cannot see them, and reading is wanted (not above the high water),
    `_flush` queues another read.
    """

    __slots__ = ("_handshake_timer", "_handshaking", "_tls_wants")

    _sock: ssl.SSLSocket

    def __init__(self, loop: Loop, sock: ssl.SSLSocket, chat: Chat, peer: Any = None):
        super().__init__(loop, sock, chat, peer=peer)
        self._handshaking = True
        self._handshake_timer: Timer | None = None
        self._tls_wants = 0
        self._extra["ssl_object"] = sock

    def _start(self) -> None:
        """Set up the socket, then handshake; the chat is attached once it is done."""
        try:
            if self._sock.family in (socket.AF_INET, socket.AF_INET6):
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                set_notsent_lowat(self._sock)
            self._extra["sockname"] = self._sock.getsockname()
        except OSError as exc:
            self._lost(exc)
            return
        self._handshake_timer = self._loop._call_later(HANDSHAKE_TIMEOUT, self._too_slow, self)
        self._handshake()

    def _too_slow(self) -> None:
        if self._handshaking and not self._closed:
            self._lost(TimeoutError(f"no TLS handshake in {HANDSHAKE_TIMEOUT} s"))

    def _handshake(self) -> None:
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            want = _READ
        except ssl.SSLWantWriteError:
            want = _WRITE
        except OSError as exc:  # not TLS, no common cipher, a reset: the peer's doing
            _logger.debug("TLS handshake with %s failed: %r",
                          format_address(self._extra["peername"]), exc)
            self._teardown(exc)
            return
        else:
            self._handshaking = False
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
            self._attach()  # flushes; decrypted bytes already read are picked up there
            return
        if want != self._events:
            self._set_events(want)

    def _handle(self, mask: int) -> None:
        if self._handshaking:
            if not self._closed:
                self._handshake()
            return
        if self._tls_wants == _WRITE and mask & _WRITE:
            mask |= _READ  # the read that waited for writability goes on
        self._tls_wants = 0
        super()._handle(mask)  # one read; _flush queues the next if bytes are left inside

    def _tls_blocked(self, exc: ssl.SSLError, doing: int) -> int:
        """A ``recv_into`` or ``send`` (*doing*: ``_READ`` or ``_WRITE``) cannot go on now:
        0 bytes sent; note if it waits for readiness the other way."""
        wants = _READ if isinstance(exc, ssl.SSLWantReadError) else _WRITE
        if wants != doing:
            self._tls_wants = wants
        return 0

    def _flush(self) -> None:
        super()._flush()
        if self._closed or self._handshaking:
            return
        want, wants = self._events, self._tls_wants
        if wants == _READ:  # the send waits for the peer's bytes, not for writability
            want = (want & ~_WRITE) | _READ
        elif wants == _WRITE:
            want |= _WRITE
        elif want & _READ and self._sock.pending():  # the poller cannot see those bytes
            self._loop._ready.append((partial(self._handle, _READ), self))
        if want != self._events:
            self._set_events(want)

    def _linger(self) -> None:
        if self._linger_timer is None and not self._eof:
            self._close_notify()  # then our FIN, and the TLS bytes still coming are dropped
        super()._linger()

    def _teardown(self, exc: BaseException | None) -> None:
        if not self._closed and exc is None and not self._handshaking:
            self._close_notify()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        super()._teardown(exc)

    def _close_notify(self) -> None:
        """End the TLS session (``close_notify``) without waiting for the peer's answer;
        harmless if the ssl object is gone already (``shutdown`` in `_linger` drops it)."""
        with contextlib.suppress(OSError, ValueError):  # the peer may be gone: best effort
            self._sock.unwrap()


@final
class Loop:
    """An event loop running `Chat` objects over non-blocking sockets.

    Not thread-safe, except `call_soon_threadsafe` and `stop`: set it up, then `run` it in
    one thread at a time.  Holds thousands of sockets at once (the poller is epoll on
    Linux, kqueue on BSD and macOS; ``select()`` would stop at 1024).
    """

    def __init__(self) -> None:
        self._poller = _Poller()
        self._buffer = bytearray(READ_SIZE)
        self._view = memoryview(self._buffer)
        self._ready: deque[tuple[_Callback, _Connection | None]] = deque()
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_seq = self._cancelled = 0
        self._conns: set[_Connection] = set()
        self._listeners: set[Listener] = set()
        self._now = monotonic()
        self._thread_id: int | None = None
        self._running = self._stopping = self._closed = False
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._poller.register(self._rsock, _READ, self)

    def listen(self, factory: Callable[[], Chat], host: str = "127.0.0.1", port: int = 0,
               backlog: int = BACKLOG, ssl_context: ssl.SSLContext | None = None,
               limits: Limits | None = None) -> Listener:
        """Listen on *host*:*port* (port 0: any free one); each connection runs ``factory()``,
        within *limits* (None: the defaults of `Limits`).

        *host* is an IPv4 or IPv6 address or a name (its first address is bound; ``""``: every
        IPv4 interface).  With *ssl_context* (server side, certificate loaded) each connection
        handshakes TLS before its chat is attached; a failed handshake is logged at debug level
        and detaches the chat with the error.  Raises `OSError` if the address cannot be bound
        (in use, not local, ...)."""
        if host:
            family, _, _, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            sock = socket.create_server(address, family=family, backlog=backlog)
        else:
            sock = socket.create_server((host, port), backlog=backlog)
        sock.setblocking(False)
        listener = Listener(self, sock, factory, ssl_context, limits)
        self._poller.register(sock, _READ, listener)
        self._listeners.add(listener)
        return listener

    def connect(self, chat: Chat, host: str, port: int) -> None:
        """Start connecting to *host*:*port* and return; *chat* is attached once connected.

        A host name is resolved first (blocking).  If the connection fails, *chat* gets
        `Chat.detach` with the error (``ConnectionRefusedError``, ...), logged at debug level.
        """
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        conn = _Connection(self, socket.socket(family, kind, proto), chat, connecting=True,
                           peer=addr)
        err = conn._sock.connect_ex(addr)
        if err in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EINTR):  # writable once connected
            self._poller.register(conn._sock, _WRITE, conn)
            conn._events = _WRITE
        else:
            conn._lost(OSError(err, os.strerror(err)))

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        """Run *callback* on the loop's thread soon, waking the loop; callable from any thread.
        An exception from *callback* is logged and the loop carries on."""
        self._call_soon(callback, None)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run *callback* once on the loop's thread, *delay* seconds from now or a bit later.

        Callbacks due at the same time run in the order they were scheduled; an exception is
        logged.  Not thread-safe: from another thread, wrap it in `call_soon_threadsafe`.
        """
        return self._call_later(delay, callback, None)

    def run(self) -> None:
        """Run rounds of `run_once` until `stop` is called (at once if it was called before)."""
        if self._running:
            raise RuntimeError("this Loop is already running")
        self._running = True
        self._thread_id = threading.get_ident()
        try:
            while not self._stopping:
                self.run_once()
        finally:
            self._running = self._stopping = False
            self._thread_id = None

    def run_once(self, timeout: float | None = None) -> None:
        """Wait for I/O at most *timeout* seconds (None: until something happens), then
        handle the ready sockets, the timers that are due and the ready callbacks."""
        if self._closed:
            raise RuntimeError("this Loop is closed")
        timers, ready = self._timers, self._ready
        while timers and timers[0][2]._callback is None:
            heapq.heappop(timers)
            self._cancelled -= 1
        if ready:
            timeout = 0.0
        elif timers:
            due = max(0.0, timers[0][0] - monotonic())
            timeout = due if timeout is None else min(timeout, due)
        events = self._poller.poll(timeout)
        now = self._now = monotonic()
        for handler, mask in events:
            try:
                handler._handle(mask)
            except Exception as exc:
                handler._fail(exc)
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)[2]
            if timer._callback is None:
                self._cancelled -= 1
            else:
                ready.append((timer._run, timer._owner))
        for _ in range(len(ready)):
            callback, owner = ready.popleft()
            try:
                callback()
            except Exception as exc:
                if owner is None:
                    _logger.exception("error in callback %r", callback)
                else:
                    owner._fail(exc)

    def stop(self) -> None:
        """Make `run` return after the current round; callable from any thread."""
        self._stopping = True
        self._wakeup()

    def close(self) -> None:
        """Close every listener and connection (each chat is detached), then the poller.

        Safe to call twice; raises `RuntimeError` while the loop is running.
        """
        if self._closed:
            return
        if self._running:
            raise RuntimeError("stop the Loop before closing it")
        for listener in list(self._listeners):
            listener.close()
        for conn in list(self._conns):
            conn._teardown(None)
        for _ in range(10):  # the detach callbacks, and what they schedule in turn
            if self._ready:
                self.run_once(0)
        self._closed = True
        self._poller.close()
        self._rsock.close()
        self._wsock.close()

    # -- internals

    def _handle(self, mask: int) -> None:  # the wakeup socket is readable
        with contextlib.suppress(*_RETRY):
            while len(self._rsock.recv(4096)) == 4096:
                pass

    def _fail(self, exc: BaseException) -> None:
        _logger.error("error in the loop's wakeup socket", exc_info=exc)

    def _call_soon(self, callback: _Callback, owner: _Connection | None) -> None:
        self._ready.append((callback, owner))  # deque.append is atomic
        if threading.get_ident() != self._thread_id:
            self._wakeup()

    def _wakeup(self) -> None:
        with contextlib.suppress(OSError):  # full (so a wakeup is pending anyway) or closed
            self._wsock.send(b"\0")

    def _call_later(self, delay: float, callback: _Callback, owner: Any) -> Timer:
        timer = Timer(self, monotonic() + delay, callback, owner)
        self._timer_seq += 1
        heapq.heappush(self._timers, (timer.when, self._timer_seq, timer))
        return timer

    def _timer_cancelled(self) -> None:
        self._cancelled += 1  # an estimate: a timer may be cancelled after leaving the heap
        if self._cancelled > 256 and self._cancelled * 2 > len(self._timers):
            self._timers = [entry for entry in self._timers if entry[2]._callback is not None]
            heapq.heapify(self._timers)
            self._cancelled = 0


def serve(factory: Callable[[], Chat], host: str = "127.0.0.1", port: int = 0,
          on_listening: Callable[[tuple[str, int]], object] | None = None, *,
          ssl_context: ssl.SSLContext | None = None, backlog: int = BACKLOG,
          limits: Limits | None = None) -> None:
    """Serve *factory* on *host*:*port* within *limits* in the calling thread until
    interrupted.


    *on_listening* is called with the bound address once connections are accepted.  On
    return (KeyboardInterrupt, or `Loop.stop` from a callback) every connection is closed.
    *ssl_context* and *backlog*: see `Loop.listen`.
    """
    loop = Loop()
    try:
        listener = loop.listen(factory, host, port, backlog, ssl_context, limits)
        if on_listening is not None:  # the kernel queues connections from here on
            on_listening(listener.address)
        loop.run()
    finally:
        loop.close()


@final
class ServerThread:
    """A `Loop` serving one factory in a daemon thread: what `start_server` returns."""

    def __init__(self, factory: Callable[[], Chat], host: str, port: int,
                 ssl_context: ssl.SSLContext | None = None, backlog: int = BACKLOG,
                 limits: Limits | None = None) -> None:
        self.loop: Loop = Loop()
        """The loop; while it runs, touch it only through `Loop.call_soon_threadsafe`."""
        try:
            self._listener = self.loop.listen(factory, host, port, backlog, ssl_context, limits)
        except BaseException:
            self.loop.close()
            raise
        self._started = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"sanschat-select-{self.address[1]}")

    @property
    def address(self) -> tuple[str, int]:
        """The host and port the server accepts connections on."""
        return self._listener.address

    def _run(self) -> None:
        try:
            self._started.set()
            self.loop.run()
        finally:
            self.loop.close()

    def _shutdown(self, deadline: float) -> None:
        """The graceful stop: no more accepting, every chat asked to close when done, then
        (once all are gone, or at *deadline*) the rest aborted and the loop stopped."""
        watch = self._listener.watch
        if not watch.stopping:
            self._listener.close()
            watch.close_all()
        if watch.guards and monotonic() < deadline:
            self.loop.call_later(0.02, partial(self._shutdown, deadline))
        else:
            watch.abort_all()
            self.loop.stop()

    def stop(self, timeout: float = 5.0, *, grace: float = 0.0) -> None:
        """Close the listener and every connection (each chat detached), stop the loop and
        join its thread (`TimeoutError` after *timeout* s).  Callable from any thread, twice.

        With *grace* > 0 the connections first get that many seconds to send what they
        queued and close (`Watch.close_all`); those still open then are aborted."""
        if grace > 0 and self._thread.is_alive() and not self._stopping:
            self._stopping = True
            self.loop.call_soon_threadsafe(partial(self._shutdown, monotonic() + grace))
        else:
            self.loop.stop()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the select loop on {self.address} did not stop in {timeout} s")


def start_server(factory: Callable[[], Chat], host: str = "127.0.0.1", port: int = 0, *,
                 ssl_context: ssl.SSLContext | None = None,
                 backlog: int = BACKLOG, limits: Limits | None = None) -> ServerThread:
    """Serve *factory* on a `Loop` in a daemon thread, within *limits*; return once it
    accepts connections.  *ssl_context* and *backlog*: see `Loop.listen`.  Raises `OSError`
    if the address cannot be bound."""
    server = ServerThread(factory, host, port, ssl_context, backlog, limits)
    server._thread.start()
    if not server._started.wait(5.0):
        raise RuntimeError("the select loop's thread did not start")
    return server
