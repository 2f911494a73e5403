"""The trio driver: run a `Chat` over any ``trio.abc.Stream``, or read a stream by pulling.

Theory of operation: `run_chat` runs a connection in a nursery of its own, whose cancel
scope is the connection's.  It takes one of two transports, chosen once per connection:

* `_StreamTransport`, for any stream (TLS ``SSLStream``, memory streams, ...): three tasks.
  The reader calls ``receive_some(RECEIVE_SIZE)`` (a new buffer per read), feeds
  `Chat.feed` (``b""``: `Chat.feed_eof`) and wakes the writer.  The writer (the
  connection's own task) waits for a wake-up (after each feed, and from
  `Transport.output_ready`), then pulls one ``data_to_send`` chunk at a time and awaits
  ``send_all`` for it, so a producer is pulled only once the previous chunk was taken.
  Queue drained and ``wants_close`` set: it stops the reader and closes the stream.
* `_SocketTransport`, for a plain TCP ``trio.SocketStream`` on POSIX: the select driver's
  way inside trio.  Where the platform has epoll, the connection's task *parks* in the
  run's `_ReadPoller` while it may read: one system task per run waits (through trio) for
  an epoll of its own, where every parked socket is registered once, and serves each
  ready socket in turn, so a request/response round trip costs no task switch and no
  ``epoll_ctl`` of its own (elsewhere the task awaits ``wait_readable`` itself).  A read
  is ``os.readv`` on the socket's descriptor (non-blocking, as trio keeps it) into the
  run's one shared buffer of `READ_SIZE` bytes, whose view is fed *before any await*: no
  other connection runs, hence none overwrites the buffer, until `Chat.feed` has
  returned, and the channel copies what it keeps.  Then the replies are sent at once,
  without awaiting, as far as the socket takes them (``os.write``; the unsent rest goes
  back with `Channel.unsend`).  Only while the socket is full does a writer task exist: it
  awaits ``wait_writable`` and sends the same way, while the reading goes on.  Output
  never waits outside the channel across an await, so two senders cannot reorder it;
  everything sent and ``wants_close`` set: the connection ends.  No per-read buffer and
  no output held between tasks brought the peak memory of 1,000 busy connections from
  128 MiB down to about 39 MiB (select driver: 31 MiB).  (Awaiting the trio socket's
  ``recv_into`` would not do: trio yields after the system call, so a shared buffer could
  be overwritten before the feed.)  A parked task wakes when it must wait for something
  first (the rules below), at the peer's end of stream, or when its scope is cancelled;
  callbacks the poller runs see that task's context variables.

Either way, while the chat's unsent output is above its `Chat.high_water`, or the chat has
paused its reading, the reading waits (a peer that never reads stops being read); while a
read's frames past `Chat.frame_budget` wait, the reading task dispatches the next budget
after a checkpoint, so every other task runs between two budgets, and reads nothing new.
After each write, `Chat.written` runs if a handler or thread waits for the output to drain.
The idle watchdog is a task that runs only once an idle timeout is set: the transports
merely stamp the time of the last traffic; it sleeps until stamp + timeout and re-arms
lazily.  A server's connections are accepted by ``_Acceptor`` (not
``trio.serve_listeners``), which keeps the server's `Limits` (the high water among them, when
the chat class sets none): one sweep task for every timeout, no accepting at
``max_connections``, and out of descriptors one log line a second.

Whatever ends a connection cancels its scope: `close`, a handler error (logged on the
``sanschat.drivers.trio`` logger), the peer going away (logged at debug level only), a
graceful close.
Tasks catch their own errors, so only ``Cancelled`` leaves the nursery; a ``finally`` closes
the stream and calls `Chat.detach` exactly once.  A cancellation from outside (a server
stopping) detaches with ``None`` and propagates.

`Connection` is the pull style: it reads only when the consumer asks for an event or a
frame that the buffered bytes do not decide, so not asking is the backpressure.

Framing is the channel's alone.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, Literal, final, overload

from .._extras import missing

try:
    import outcome  # trio's own dependency
    import trio  # type: ignore[import-untyped, unused-ignore]  # untyped before trio 0.23
except ImportError as _error:
    raise missing(_error, "trio", __name__)  # noqa: B904 (missing() chains it)

from .._channel import Channel, TerminatorLike
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
)
from ._pull import PullReader

__all__ = [
    "RECEIVE_SIZE",
    "SEND_SIZE",
    "Connection",
    "TrioServer",
    "connect",
    "open_connection",
    "run_chat",
    "serve",
    "start_server",
]

logger: Final[logging.Logger] = logging.getLogger(__name__)

#: Most bytes pulled from the channel for one ``send_all``: a whole read's worth of replies
#: leaves in one call.
SEND_SIZE: Final = READ_SIZE

#: Bytes asked of ``receive_some``, on every stream but a plain TCP one (which reads into a
#: reused buffer of `READ_SIZE` bytes).  Each call makes a new buffer of this size, so it is
#: smaller than `READ_SIZE` (1,000 busy connections peaked at 174 MiB with 256 KiB reads).
RECEIVE_SIZE: Final = 64 * 1024

_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)


#: One read buffer per trio run, shared by all its plain TCP connections: see the module
#: docstring for why that is safe.
_READ_BUFFER: trio.lowlevel.RunVar[memoryview] = trio.lowlevel.RunVar("sanschat.read_buffer")


def _read_buffer() -> memoryview:
    """This trio run's shared read buffer (`READ_SIZE` bytes), made on first use."""
    try:
        return _READ_BUFFER.get()
    except LookupError:
        view = memoryview(bytearray(READ_SIZE))
        _READ_BUFFER.set(view)
        return view


def _raw_socket(stream: trio.abc.Stream) -> Any:
    """The trio socket of *stream* if the driver may read and write its descriptor directly
    (a plain ``trio.SocketStream`` on POSIX), else None: the stream's own methods are used."""
    if sys.platform != "win32" and isinstance(stream, trio.SocketStream):
        return stream.socket
    return None


def _socket_of(stream: Any) -> Any:
    """The trio socket under *stream* (through ``SSLStream.transport_stream``), or None."""
    while not isinstance(stream, trio.SocketStream):
        stream = getattr(stream, "transport_stream", None)
        if stream is None:
            return None
    return stream.socket


def _extra_info(stream: Any, name: str) -> Any:
    """``"peername"``, ``"sockname"``, ``"socket"`` of the socket under *stream*, or None."""
    sock = _socket_of(stream)
    if sock is None or name == "socket":
        return sock
    try:
        return getattr(sock, "get" + name)() if name in ("peername", "sockname") else None
    except OSError:
        return None


class _Transport:
    """What both transports share: the `Transport` API, failure handling, the idle watchdog.

    `run` opens the connection's nursery, whose cancel scope is the connection's: everything
    that ends the connection cancels it.  `_serve` (per transport) moves the bytes.
    """

    __slots__ = (
        "_chat",
        "_ended",
        "_error",
        "_finished",
        "_guard",
        "_high_water",
        "_idle_changed",
        "_idle_timeout",
        "_last_activity",
        "_nursery",
        "_peername",
        "_resume",
        "_stream",
        "_token",
        "_watching",
    )

    def __init__(self, stream: trio.abc.Stream, chat: Chat) -> None:
        self._stream = stream
        self._chat = chat
        self._token = trio.lowlevel.current_trio_token()
        self._nursery: trio.Nursery | None = None  # open while the connection runs
        self._resume: trio.Event | None = None  # set when the reading may go on (_may_read)
        self._guard: Guard | None = None  # a server's connection: its part in the server's Watch
        self._high_water = apply_high_water(chat, None)
        self._idle_timeout: float | None = None
        self._idle_changed: trio.Event | None = None  # the watchdog's, once it runs
        self._watching = False
        self._last_activity = trio.current_time()
        self._finished = False
        self._ended = False  # the connection's scope is cancelled by itself, or it is over
        self._error: BaseException | None = None
        self._peername = _extra_info(stream, "peername")

    # -------------------------------------------------------------- Transport

    def output_ready(self) -> None:
        """Output was queued outside a callback: send it (subclasses say how)."""
        raise NotImplementedError

    def close(self) -> None:
        """End the connection now; queued output is dropped.  Idempotent."""
        self._end()

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        """Run *callback* in this connection's trio run, soon; callable from any thread.

        A callback arriving after the connection has ended is dropped.  Raises
        ``trio.RunFinishedError`` if the trio run itself is over.
        """

        def run() -> None:
            if not self._finished:
                self._dispatch(callback)

        self._token.run_sync_soon(run)

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Call `Chat.idle` after *seconds* without traffic, counted from now; None: never."""
        if seconds is not None and not seconds > 0:
            raise ValueError(f"idle timeout must be > 0 seconds or None, not {seconds!r}")
        self._idle_timeout = seconds
        self._last_activity = trio.current_time()
        if self._idle_changed is not None:
            self._idle_changed.set()
        nursery = self._nursery
        if (seconds is not None and not self._watching and nursery is not None
                and not nursery.cancel_scope.cancel_called):  # (ending: closed to new tasks)
            self._watching = True
            nursery.start_soon(self._watchdog)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"``, ``"sockname"`` or ``"socket"`` (the trio socket), else *default*."""
        value = self._peername if name == "peername" else _extra_info(self._stream, name)
        return default if value is None else value

    def pause_reading(self) -> None:
        """Stop reading: the reading task waits before its next read."""

    def resume_reading(self) -> None:
        """Wake the reading task: it dispatches what was read meanwhile, then reads again."""
        self._maybe_resume()

    # -------------------------------------------------------------- running

    async def run(self) -> None:
        chat = self._chat
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    chat.attach(self)  # may start the watchdog (set_idle_timeout)
                except Exception as exc:
                    self._fail(exc)
                else:
                    await self._serve(nursery)
                nursery.cancel_scope.cancel()  # the reader and the watchdog, if still running
        finally:
            self._nursery = None
            self._finished = self._ended = True
            if self._guard is not None:
                self._guard.release()
            try:
                await trio.aclose_forcefully(self._stream)
            finally:
                try:
                    chat.detach(self._error)
                except Exception:
                    logger.exception(
                        "error in %s.connection_lost for %s",
                        type(chat).__name__,
                        format_address(self._peername),
                    )

    async def _serve(self, nursery: trio.Nursery) -> None:
        """Move the bytes until the connection ends (it may also just cancel the nursery)."""
        raise NotImplementedError

    def _end(self) -> None:
        """End the connection: cancel its nursery (idempotent)."""
        self._ended = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _fail(self, exc: BaseException) -> None:
        """A handler, producer or frame limit raised: log it, end this connection only."""
        if self._error is None:
            self._error = exc
        log_failure(type(self._chat).__name__, self._peername, exc, logger)
        self._end()

    def _lost(self, exc: BaseException) -> None:
        """The stream broke (peer reset, or closed under us): end quietly."""
        cause = exc.__cause__
        error = cause if isinstance(cause, OSError) and not isinstance(exc, OSError) else exc
        if self._error is None:
            self._error = error
        logger.debug("connection with %s lost: %r", format_address(self._peername), error)
        self._end()

    def _dispatch(self, callback: Callable[[], object]) -> None:
        """Run a handler callback outside `Chat.feed`, then send what it queued."""
        try:
            callback()
        except Exception as exc:
            self._fail(exc)
        else:
            self.output_ready()

    def _may_read(self) -> bool:
        chat = self._chat
        return not chat._held and chat.channel.buffered_output <= chat.high_water

    def _maybe_resume(self) -> None:
        resume = self._resume
        if resume is not None and self._may_read():
            self._resume = None
            resume.set()

    def _written(self) -> None:
        """After a write: `Chat.written` if someone waits for the output to drain."""
        if self._chat._drain_wanted:
            try:
                self._chat.written()
            except Exception as exc:
                self._fail(exc)
        self._maybe_resume()

    async def _before_read(self) -> bool:
        """Backpressure and fairness before each read: wait while the chat may not read;
        dispatch a backlog, one budget per checkpoint.  False if the connection ended."""
        chat = self._chat
        while True:
            if not self._may_read():
                resume = self._resume = trio.Event()
                await resume.wait()
                chat.feed(b"")  # what was held while paused (nothing, after backpressure)
            elif chat._backlog:
                await trio.lowlevel.checkpoint()
                chat.feed(b"")
            else:
                return True
            self.output_ready()
            if self._nursery is None or self._nursery.cancel_scope.cancel_called:
                return False

    def _stamp(self) -> None:
        if self._idle_timeout is not None:
            self._last_activity = trio.current_time()

    async def _watchdog(self) -> None:
        while True:
            changed = self._idle_changed = trio.Event()
            timeout = self._idle_timeout
            if timeout is None:
                await changed.wait()
                continue
            deadline = self._last_activity + timeout
            if trio.current_time() < deadline:
                with trio.move_on_at(deadline):
                    await changed.wait()
                continue  # re-arm: traffic or a new timeout may have moved the deadline
            self._last_activity = trio.current_time()
            self._dispatch(self._chat.idle)


@final
class _StreamTransport(_Transport):
    """Any trio stream: a reader task (``receive_some``) and a writer (``send_all``)."""

    __slots__ = ("_closing", "_read_scope", "_wakeup")

    def __init__(self, stream: trio.abc.Stream, chat: Chat) -> None:
        super().__init__(stream, chat)
        self._read_scope = trio.CancelScope()
        self._wakeup = trio.Event()
        self._closing = False  # the writer is closing the stream gracefully

    def output_ready(self) -> None:
        """Wake the writer: output was queued outside a callback."""
        self._wakeup.set()

    def _lost(self, exc: BaseException) -> None:
        if not self._closing:  # else our own graceful close raced the reader
            super()._lost(exc)

    async def _serve(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._reader)
        await self._writer()

    async def _reader(self) -> None:
        chat = self._chat
        receive_some = self._stream.receive_some
        with self._read_scope:
            while True:
                if not self._may_read() or chat._backlog:
                    self._wakeup.set()
                    try:
                        if not await self._before_read():
                            return
                    except Exception as exc:
                        self._fail(exc)
                        return
                try:
                    data = await receive_some(RECEIVE_SIZE)
                except _PEER_GONE as exc:
                    self._lost(exc)
                    return
                self._stamp()
                try:
                    if data:
                        chat.feed(data)
                    else:
                        chat.feed_eof()
                except Exception as exc:
                    self._fail(exc)
                    return
                if self._guard is not None:
                    self._guard.read(len(data))
                self._wakeup.set()
                if not data:
                    return

    async def _writer(self) -> None:
        channel = self._chat.channel
        stream = self._stream
        send_all = stream.send_all
        while True:
            wakeup = self._wakeup = trio.Event()  # fresh before draining: no wake-up is lost
            while True:
                try:
                    chunk = channel.data_to_send(SEND_SIZE)
                except Exception as exc:
                    self._fail(exc)
                    return
                if not chunk:
                    break
                try:
                    await send_all(chunk)
                except _PEER_GONE as exc:
                    self._lost(exc)
                    return
                self._stamp()
                if self._guard is not None:
                    self._guard.wrote()
                self._written()
            self._written()
            if channel.wants_close:
                self._closing = True
                self._read_scope.cancel()
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.aclose()
                return
            await wakeup.wait()


@final
class _SocketTransport(_Transport):
    """A plain TCP stream: the connection's task reads, feeds and sends; a writer task runs
    only while the socket is full (see the module docstring)."""

    __slots__ = ("_eof", "_fd", "_lingering", "_sock", "_writing")

    def __init__(self, stream: trio.abc.Stream, chat: Chat, sock: Any) -> None:
        super().__init__(stream, chat)
        self._sock = sock
        self._fd: int = sock.fileno()  # used only until `_ended`: the stream closes after
        self._writing = False  # a writer task is waiting for the socket to take the rest
        self._eof = False  # the peer has ended its stream
        self._lingering = False  # our FIN is sent: reading (and dropping) until the peer's

    def _close_gracefully(self) -> None:
        """Everything queued was sent: end the stream with a FIN, then linger (read and drop
        the peer's input until its own end of stream, at most `LINGER` seconds) so that
        unread input does not turn the close into a reset that loses the last reply."""
        nursery = self._nursery
        if self._lingering:
            return  # already closing (a second output_ready, from a thread's close, ...)
        if self._eof or nursery is None:
            self._end()
            return
        self._lingering = True
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._end()
            return
        # The connection's scope ends the linger: no task per closing connection (10,000
        # connections closing at once, as when a server stops, would start 10,000).
        nursery.cancel_scope.deadline = min(nursery.cancel_scope.deadline,
                                            trio.current_time() + LINGER)

    def output_ready(self) -> None:
        """Send what the socket takes now; a writer task waits to send the rest."""
        nursery = self._nursery
        if self._writing or self._ended or nursery is None:
            return  # the writer sends it, in order; or the connection is ending (or not begun)
        if self._send_what_fits():
            self._writing = True
            nursery.start_soon(self._writer)
        elif self._chat.channel.wants_close:
            self._close_gracefully()  # everything was sent

    async def _serve(self, nursery: trio.Nursery) -> None:
        sock = self._sock
        view = _read_buffer()
        buffers = [view]
        shared = _SHARED_POLL
        self.output_ready()  # what connection_made queued
        while True:
            if not self._may_read_on():  # held, a backlog, or the output is full
                try:
                    if not await self._before_read():
                        return
                except Exception as exc:
                    self._fail(exc)
                    return
            if shared:
                # Parked: the run's poller task reads and feeds for this connection; back
                # here when this task must wait for something first, or the run is ending.
                step = await _park(self)
                if step is _GONE:
                    shared = False
                    continue
            else:
                try:
                    await trio.lowlevel.wait_readable(sock)
                except _PEER_GONE as exc:
                    self._lost(exc)
                    return
                step = self._read_ready(view, buffers)
            if step is _ENDED:
                return
            if step is _AT_EOF:  # half-closed: output may still come, until a close
                await trio.sleep_forever()

    def _may_read_on(self) -> bool:
        """Whether the next read needs no wait first (no pause, backlog or full output)."""
        chat = self._chat
        return not chat._slow and chat.channel.buffered_output <= chat.high_water

    def _read_ready(self, view: memoryview, buffers: list[memoryview]) -> object:
        """The socket is readable: read once, feed, send the replies.  Never awaits, so the
        shared buffer *view* stays this connection's until the feed has returned.

        Returns `_READING` to go on reading, `_ENDED` once the connection has ended (its
        scope is cancelled), `_AT_EOF` after the peer's end of stream (output may still
        come, until a close)."""
        try:
            n = os.readv(self._fd, buffers)
        except BlockingIOError:
            return _READING
        except OSError as exc:
            self._lost(exc)
            return _ENDED
        if self._idle_timeout is not None:  # (_stamp, inline: once per read)
            self._last_activity = trio.current_time()
        if self._lingering:  # closing: the input is dropped, its end ends the connection
            if not n:
                self._end()
                return _ENDED
            return _READING
        chat = self._chat
        try:
            if n:
                chat.feed(view[:n].tobytes())  # bytes: what the core's hot path takes
            else:
                self._eof = True
                chat.feed_eof()
        except Exception as exc:
            self._fail(exc)
            return _ENDED
        if self._guard is not None:
            self._guard.read(n)
        if self._ended:
            return _ENDED  # closed from a callback: unsent output is dropped
        self.output_ready()
        return _READING if n else _AT_EOF

    def _send_what_fits(self) -> bool:
        """Send queued output now, without awaiting, until the socket is full or the queue is
        empty; True if output is left (False too if the connection failed)."""
        channel = self._chat.channel
        fd = self._fd
        try:
            while True:
                try:
                    chunk = channel.data_to_send(SEND_SIZE)
                except Exception as exc:
                    self._fail(exc)
                    return False
                if not chunk:
                    return False
                try:
                    sent = os.write(fd, chunk)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    self._lost(exc)
                    return False
                if sent:
                    if self._idle_timeout is not None:  # (_stamp, inline: once per reply)
                        self._last_activity = trio.current_time()
                    guard = self._guard
                    if guard is not None:  # (Guard.wrote, inline: once per write)
                        guard.sent = guard.active = guard.watch.now
                if sent < len(chunk):
                    channel.unsend(memoryview(chunk)[sent:])
                    return True
                if not channel._queue:  # all sent (the common case): no call to find out
                    return False
        finally:
            if self._chat._drain_wanted or self._resume is not None:  # (_written, inline)
                self._written()

    async def _writer(self) -> None:
        """Wait for the socket to take the output left over; then close if the chat wants."""
        try:
            while self._send_what_fits():
                await trio.lowlevel.wait_writable(self._sock)
        except _PEER_GONE as exc:
            self._lost(exc)
        finally:
            self._writing = False
        if self._chat.channel.wants_close:
            self._close_gracefully()  # everything was sent


@final
class _Step:
    """What one read left a `_SocketTransport` to do next (a singleton per answer)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<{self._name}>"


_READING: Final = _Step("reading")  # read on
_ENDED: Final = _Step("ended")  # the connection has ended: its task returns
_AT_EOF: Final = _Step("at end of stream")  # the peer ended its stream: no more reads
_GONE: Final = _Step("poller gone")  # the run's poller stopped: wait for reads in the task

#: Whether plain TCP connections are read by their run's `_ReadPoller` (where the platform
#: has epoll) rather than each by its own task; the tests run both ways.
_SHARED_POLL: bool = hasattr(select, "epoll")

#: How many ready connections the poller serves before the next checkpoint.
_POLL_BATCH: Final = 256

#: The trio run's live poller, if any (None: none now; the next `_park` starts one).
_POLLER: trio.lowlevel.RunVar[_ReadPoller | None] = trio.lowlevel.RunVar("sanschat.poller")


async def _park(transport: _SocketTransport) -> object:
    """Park *transport*'s task in the run's poller (started if none runs); `_GONE` if the
    run is ending (no new system task may start)."""
    poller = _POLLER.get(None)
    if poller is None:
        poller = _ReadPoller()
        try:
            trio.lowlevel.spawn_system_task(poller.run, name="sanschat read poller")
        except RuntimeError:  # the run is ending: the system nursery is closed
            poller.close()
            return _GONE
        _POLLER.set(poller)
    return await poller.park(transport)


@final
class _ReadPoller:
    """The plain TCP connections of one trio run that are waiting to read, in an epoll of
    its own, and the one system task that reads them.

    Theory of operation: waiting for a read through trio costs a task switch and an
    ``epoll_ctl`` per read, which is most of a request/response round trip's cost.  So a
    connection's task *parks* (`park`) while it may read: its socket joins this
    level-triggered epoll, and the task sleeps.  trio wakes the poller task when that epoll
    has any ready socket; it then calls `_SocketTransport._read_ready` for each (read,
    feed, send: no await, in the parked task's own contextvars context), up to
    `_POLL_BATCH` of them between two checkpoints.  The connection's task wakes up only
    when it has something to wait for first (backpressure, a backlog, the peer's end of
    stream) or when the connection ends: its scope's cancellation takes the socket out of
    the epoll (the abort callback) before the socket can be closed.  An exception that is
    not an ``Exception`` (so not handled by the transport) is raised in the parked task,
    as it would have been there.  Once no task is parked the poller stops and closes its
    epoll, so an idle run keeps no descriptor; the next park starts a new one.  If the run
    cancels the poller while tasks are parked (it is ending), they wake with `_GONE` and
    wait for their reads themselves.
    """

    __slots__ = ("_buffers", "_epoll", "_parked", "_polling", "_stopped", "_view")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        # fd: (transport, task, its context's run, the transport's _read_ready)
        self._parked: dict[int, tuple[_SocketTransport, Any, Any, Any]] = {}
        self._view = _read_buffer()
        self._buffers = [self._view]
        self._polling = False  # the task is serving a batch (not waiting)
        self._stopped = False

    async def park(self, transport: _SocketTransport) -> object:
        """Sleep while the poller reads for *transport*; return what it must do next
        (`_READING`: check what it waits for, then park again; `_AT_EOF`, `_ENDED`,
        `_GONE`: wait for reads itself, also if its socket cannot join the epoll).  Cancelling
        the task unparks it."""
        fd = transport._fd
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except (OSError, ValueError):  # (a socket closed under us): the task waits itself,
            self._stop_if_idle()  # and finds out
            return _GONE
        task = trio.lowlevel.current_task()
        # (The context and the bound method are looked up once per park, not per read.)
        self._parked[fd] = (transport, task, task.context.run, transport._read_ready)

        def abort(_raise_cancel: object) -> Any:
            self._unpark(fd)
            if not self._polling:  # (the loop looks after a batch itself)
                self._stop_if_idle()
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _unpark(self, fd: int) -> Any:
        """Take *fd* out of the epoll; its parked task, or None if it was not parked."""
        entry = self._parked.pop(fd, None)
        if entry is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)
        return entry[1]

    def _stop_if_idle(self) -> None:
        """No task parked: this poller stops (its task ends) and the run forgets it."""
        if self._parked or self._stopped:
            return
        self._stopped = True
        if _POLLER.get(None) is self:
            _POLLER.set(None)
        if not self._polling:
            trio.lowlevel.notify_closing(self._epoll.fileno())  # wakes the waiting task

    def close(self) -> None:
        """Close the epoll (no task may be parked)."""
        self._epoll.close()

    async def run(self) -> None:
        """The poller task: serve the ready sockets until no task is parked."""
        epoll = self._epoll
        parked = self._parked
        view, buffers = self._view, self._buffers
        try:
            budget = _POLL_BATCH
            while not self._stopped:
                events = epoll.poll(0, _POLL_BATCH)
                if not events:  # wait (a checkpoint); first look again, which is cheaper
                    budget = _POLL_BATCH
                    try:
                        await trio.lowlevel.wait_readable(epoll.fileno())
                    except trio.ClosedResourceError:  # _stop_if_idle
                        return
                    continue
                budget -= len(events)
                if budget <= 0:  # served a batch's worth without a checkpoint: let others run
                    budget = _POLL_BATCH
                    await trio.lowlevel.checkpoint()
                self._polling = True
                for fd, _ in events:
                    entry = parked.get(fd)
                    if entry is None:
                        continue  # unparked since the poll
                    transport, task, run_in_context, read_ready = entry
                    try:
                        step = run_in_context(read_ready, view, buffers)
                        if step is _READING:
                            chat = transport._chat  # (_may_read_on, its common case inline)
                            if not chat._slow and (not chat.channel._queue
                                                   or transport._may_read_on()):
                                continue  # the common case: it stays parked
                    except BaseException as exc:  # (an Exception is the transport's own)
                        if self._unpark(fd) is not None:
                            trio.lowlevel.reschedule(task, outcome.Error(exc))
                        continue
                    if self._unpark(fd) is not None:  # (a cancelled task was unparked)
                        trio.lowlevel.reschedule(task, outcome.Value(step))
                self._polling = False
                self._stop_if_idle()
        finally:
            self._polling = False
            self._stopped = True
            if _POLLER.get(None) is self:
                _POLLER.set(None)
            for fd in list(parked):  # cancelled by the run with tasks parked: it is ending
                trio.lowlevel.reschedule(self._unpark(fd), outcome.Value(_GONE))
            epoll.close()


async def run_chat(stream: trio.abc.Stream, chat: Chat) -> None:
    """Run *chat* over *stream* until the connection ends; return after `Chat.detach`.

    Works over any trio stream: TCP, ``trio.SSLStream``, ``trio.testing`` memory streams.
    The stream is closed on return.  A handler error is logged on the ``sanschat`` logger
    and ends this connection only (``detach(exc)``); the peer going away detaches with the
    error (the ``OSError`` behind trio's ``BrokenResourceError`` when there is one) and is
    logged at debug level only.  Never raises for either.  If the surrounding scope is
    cancelled, the chat is detached with ``None`` and ``trio.Cancelled`` propagates.
    """
    await _transport(stream, chat).run()


def _transport(stream: trio.abc.Stream, chat: Chat) -> _Transport:
    sock = _raw_socket(stream)
    if sock is None:
        return _StreamTransport(stream, chat)
    return _SocketTransport(stream, chat, sock)


#: The ``accept`` errors that mean "out of descriptors or memory": wait, then try again.
_STARVED = frozenset(getattr(errno, name) for name in ("EMFILE", "ENFILE", "ENOMEM", "ENOBUFS")
                     if hasattr(errno, name))


async def _run_guarded(transport: _Transport) -> None:
    try:
        await transport.run()
    except Exception:  # a driver bug must not stop the server either
        logger.exception("error in the trio driver for %s", format_address(transport._peername))


class _Acceptor:
    """A server's accept loops and connections, within its `Limits` (its `Watch`).

    Instead of ``trio.serve_listeners`` (which logs every 0.1 s while out of descriptors and
    knows no connection limit): at ``max_connections`` the loops wait until a connection
    closes; out of descriptors they log one line a second at most and retry after 1 s.
    """

    def __init__(self, factory: Callable[[], Chat], limits: Limits) -> None:
        self.factory = factory
        self.watch = Watch(limits, lambda: None, self._room_made)
        self._room = trio.Event()
        self._accepting = trio.CancelScope()
        self._deadline = float("inf")  # of the graceful shutdown, once one began
        self._conns: trio.Nursery | None = None

    def _room_made(self) -> None:
        self._room.set()

    async def serve(self, listeners: list[Any], task_status: Any) -> None:
        """Accept on *listeners* until cancelled (or until `stop_accepting`, then until the
        connections are gone)."""
        interval = self.watch.limits.sweep_interval
        async with trio.open_nursery() as conns:
            self._conns = conns
            if interval is not None:
                conns.start_soon(self._sweep, interval)
            try:
                with self._accepting:
                    async with trio.open_nursery() as accepting:
                        for listener in listeners:
                            accepting.start_soon(self._accept, listener)
                        task_status.started(listeners)
            finally:
                for listener in listeners:
                    await trio.aclose_forcefully(listener)
            while self.watch.guards:  # the shutdown: the connections end, then the sweep
                if trio.current_time() >= self._deadline:
                    self.watch.abort_all()  # resets, then the cancel below closes them
                    break
                await trio.sleep(0.02)
            conns.cancel_scope.cancel()

    def shutdown(self, grace: float) -> None:
        """Stop accepting, ask every connection to close when done, and abort those still
        open after *grace* seconds."""
        self._deadline = trio.current_time() + grace
        self._accepting.cancel()
        self.watch.close_all()

    async def _accept(self, listener: Any) -> None:
        watch = self.watch
        while True:
            if not watch.admit():
                if self._room.is_set():
                    self._room = trio.Event()
                await self._room.wait()
                continue
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _STARVED:
                    raise
                log_limited("accept failed", logging.ERROR,
                            "accept on %s failed, pausing 1 s: %s",
                            format_address(_listener_address(listener)), exc, logger=logger)
                await trio.sleep(1.0)
                continue
            try:
                chat = self.factory()
            except Exception:
                logger.exception("error in the connection factory for %s; connection dropped",
                                 format_address(_extra_info(stream, "peername")))
                await trio.aclose_forcefully(stream)
                continue
            transport = _transport(stream, chat)
            transport._guard = watch.add(chat, transport.close, transport._dispatch)
            transport._high_water = apply_high_water(chat, watch.limits)
            assert self._conns is not None
            self._conns.start_soon(_run_guarded, transport)
            # (Not kept by this frame while it waits for the next accept: a closed
            # connection's objects are then freed as it ends.)
            del stream, chat, transport

    async def _sweep(self, interval: float) -> None:
        delay = interval
        while True:
            await trio.sleep(delay)
            delay = self.watch.sweep()


async def serve(
    factory: Callable[[], Chat],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    backlog: int = BACKLOG,
    limits: Limits | None = None,
    task_status: trio.TaskStatus[list[trio.abc.Listener[Any]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve TCP on *host*:*port*, running a new ``factory()`` chat for each connection,
    within *limits* (None: the defaults of `Limits`).

    As ``trio.serve_tcp`` does (``trio.serve_ssl_over_tcp`` with *ssl_context*, a server
    context with its certificate loaded: each connection is then a ``trio.SSLStream``): use
    ``listeners = await nursery.start(serve, factory)`` to learn the bound port
    (``listeners[0].socket.getsockname()``, through ``.transport_listener`` for TLS).
    Runs until cancelled; cancelling it closes the listener and detaches every connection's
    chat.  A factory or handler error drops that connection only.  The server keeps
    *limits* (None: the defaults of `Limits`).
    """
    listeners = await _listeners(host, port, ssl_context, backlog)
    await _Acceptor(factory, limits or Limits()).serve(listeners, task_status)


async def _listeners(
    host: str, port: int, ssl_context: ssl.SSLContext | None, backlog: int
) -> list[Any]:
    """TCP listeners on *host*:*port*, wrapped in ``trio.SSLListener`` for TLS."""
    tcp = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    if ssl_context is None:
        return list(tcp)
    return [trio.SSLListener(listener, ssl_context, https_compatible=False) for listener in tcp]


def _listener_address(listener: Any) -> tuple[str, int]:
    """The (host, port) a listener from `_listeners` is bound to."""
    sock = getattr(listener, "transport_listener", listener).socket
    address: tuple[str, int] = sock.getsockname()[:2]
    return address


async def connect(chat: Chat, host: str, port: int) -> None:
    """Open a TCP connection to *host*:*port* and run *chat* over it (see `run_chat`).

    Raises:
        OSError: if the connection cannot be made (the chat is then never attached).
    """
    stream = await trio.open_tcp_stream(host, port)
    await run_chat(stream, chat)


@final
class Connection(PullReader):
    """A trio stream read by pulling, with ``async for``; made by `open_connection` or by hand.

    * ``async for event in conn`` yields the channel's events (`Data`, `TerminatorFound`)
      and ends after `EndOfStream`;
    * ``async for frame in conn.frames()`` yields whole frames (terminator excluded) and
      ends at end of stream; bytes of a last frame left without its terminator are then
      in `unframed`.

    The stream is read only when the consumer asks for an event or frame that the bytes
    already read do not decide: a consumer that stops iterating stops the reading.  A
    terminator set with `set_terminator` applies to the very next unread byte; the two
    styles may be mixed.  Iteration raises `FrameTooLarge` (again on each call until the
    terminator or limit changes) and trio's ``BrokenResourceError`` if the peer is gone.
    One task reads and one task sends at a time, as with any trio stream.

    Args:
        stream: any ``trio.abc.Stream``, owned by the connection from now on.
        terminator: the initial terminator (see `Channel.set_terminator`).
        max_frame_size: the channel's frame size limit (None: no limit).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        terminator: TerminatorLike = b"\r\n",
        max_frame_size: int | None = None,
    ) -> None:
        super().__init__(Channel(terminator, max_frame_size=max_frame_size))
        self.stream = stream
        """The trio stream read and written."""

    async def _more(self) -> None:
        """Read once: only when the consumer has run dry (pull-based backpressure)."""
        data = await self.stream.receive_some(RECEIVE_SIZE)
        if data:
            self._pending += data
        else:
            self._eof = True

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send *data*; returns once the stream has taken all of it."""
        await self.stream.send_all(data)

    async def send_eof(self) -> None:
        """Tell the peer nothing more will be sent (half-close); reading goes on.

        Raises:
            NotImplementedError: if the stream cannot half-close (``trio.SSLStream``).
        """
        if not isinstance(self.stream, trio.abc.HalfCloseableStream):
            raise NotImplementedError(f"{type(self.stream).__name__} cannot half-close")
        await self.stream.send_eof()

    async def aclose(self) -> None:
        """Close the stream (for TLS, after sending ``close_notify``).  Idempotent."""
        await self.stream.aclose()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @overload
    def get_extra_info(
        self, name: Literal["peername", "sockname"]
    ) -> tuple[str, int] | tuple[str, int, int, int] | str | None: ...
    @overload
    def get_extra_info(self, name: str, default: object = None) -> object: ...
    def get_extra_info(self, name: str, default: object = None) -> object:
        """``"peername"``, ``"sockname"`` or ``"socket"`` (the trio socket), else *default*."""
        value = _extra_info(self.stream, name)
        return default if value is None else value


async def open_connection(
    host: str, port: int, *, terminator: TerminatorLike = b"\r\n", max_frame_size: int | None = None
) -> Connection:
    """Connect to *host*:*port* over TCP and return the `Connection` (OSError if refused)."""
    stream = await trio.open_tcp_stream(host, port)
    return Connection(stream, terminator=terminator, max_frame_size=max_frame_size)


@final
class TrioServer:
    """The `BackgroundServer` of this driver: a ``trio.run`` in a daemon thread.

    Made by `start_server`; `stop` may be called from any thread.
    """

    def __init__(self, factory: Callable[[], Chat], host: str, port: int,
                 ssl_context: ssl.SSLContext | None = None, backlog: int = BACKLOG,
                 limits: Limits | None = None) -> None:
        self._acceptor = _Acceptor(factory, limits or Limits())
        self._address = (host, port)
        self._ssl_context, self._backlog = ssl_context, backlog
        self._ready = threading.Event()
        self._token: Any = None
        self._scope = trio.CancelScope()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sanschat-trio", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the server accepts connections on."""
        return self._address

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._error = exc
            if self._ready.is_set():
                logger.error("error in the trio server thread", exc_info=exc)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with self._scope:
            host, port = self._address
            listeners = await _listeners(host, port, self._ssl_context, self._backlog)
            self._address = _listener_address(listeners[0])
            self._ready.set()
            await self._acceptor.serve(listeners, trio.TASK_STATUS_IGNORED)

    def stop(self, timeout: float = 5.0, *, grace: float = 0.0) -> None:
        """Close the listener and every connection (each chat is detached), end the run and
        join the thread, waiting up to *timeout* seconds.  Idempotent.

        With *grace* > 0 the connections first get that many seconds to send what they
        queued and close (`Watch.close_all`); those still open then are aborted."""
        if self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                if grace > 0:
                    self._token.run_sync_soon(self._acceptor.shutdown, grace)
                else:
                    self._token.run_sync_soon(self._scope.cancel)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the trio server thread did not end in {timeout} s")


def start_server(
    factory: Callable[[], Chat],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    backlog: int = BACKLOG,
    limits: Limits | None = None,
) -> TrioServer:
    """Run `serve` for *factory* in a background thread, within *limits*; return once it
    accepts connections.

    *ssl_context* (server side, certificate loaded) makes every connection TLS; *backlog*
    is the listen queue's length.

    Raises:
        OSError: if the address cannot be bound.
    """
    server = TrioServer(factory, host, port, ssl_context, backlog, limits)
    server._thread.start()
    server._ready.wait()  # bounded: set at once by the bind, or by its error
    if server._error is not None:
        server._thread.join()
        raise server._error
    return server
