"""`Chat`: the handler class a protocol subclasses; callbacks in, verbs out, no I/O.

Theory of operation: a `Chat` owns one `Channel`.  A driver attaches a `Transport` (its
side of the connection) with `Chat.attach`, calls `Chat.feed` with every chunk it reads,
`Chat.feed_eof` once at end of stream and `Chat.detach` when the connection is gone.  The
chat runs the channel's iterator and turns its events into asynchat's callbacks
(`collect_incoming_data`, `found_terminator`) or, if the subclass overrides `found_frame`,
into whole frames (with `found_frames`, into one list of the frames each read completes).
The handler answers with the verbs (`push`, `set_terminator`, `close_when_done`, ...),
which only touch the channel.  After each chunk the driver pulls the channel's output
itself; a verb used *outside* a callback (a timer, another connection's handler) tells
the transport with `Transport.output_ready`, so output never waits for the next read.

A chat never blocks, never sleeps and never touches a socket, so a test can drive it with
plain method calls (see `sanschat.testing`).  Errors come in two kinds.  The *peer's*, a
`ProtocolError` such as `FrameTooLarge` raised while framing its input (or raised on purpose
by a hook), is the chat's to answer: `feed` and `feed_eof` catch it, call `protocol_error`,
and from then on the connection only flushes what is queued and closes, so replies to the
frames before the error reach the peer however its input was cut.  A *bug*, any other
exception from a callback, propagates to the driver, which logs it with its traceback and
closes this connection at once (queued output is dropped: nothing is known to be valid).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal, Protocol, overload

from ._channel import _CHANNEL_LIMIT, Channel, Terminator, TerminatorLike, _Default
from ._errors import ProtocolError
from ._events import Data, TerminatorFound
from ._producers import ProducerLike

__all__ = ["Chat", "Transport"]


class Transport(Protocol):
    """What a driver gives a `Chat`: the few things a handler may ask of a connection."""

    def output_ready(self) -> None:
        """The channel has output, queued outside a callback: write it when possible."""

    def close(self) -> None:
        """Close the connection now, dropping output not yet written."""

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        """Run *callback* on the connection's loop thread, soon; callable from any thread."""

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Call `Chat.idle` after *seconds* with no bytes read or written (None: never)."""

    @overload
    def get_extra_info(
        self, name: Literal["peername", "sockname"]
    ) -> tuple[str, int] | tuple[str, int, int, int] | str | None: ...
    @overload
    def get_extra_info(self, name: str, default: object = None) -> object: ...
    def get_extra_info(self, name: str, default: object = None) -> object:
        """Connection details such as ``"peername"`` and ``"sockname"``, as asyncio names them.

        An address is what the socket module gives: ``(host, port)`` for IPv4,
        ``(host, port, flowinfo, scope_id)`` for IPv6, a path for a Unix socket; *default*
        (``None``) when the driver does not know it.  Other names are driver-specific
        (``"socket"``, ``"sslcontext"``, ...): narrow what they return with ``isinstance``.
        """


class _Detached:
    """The transport of a chat that no driver runs (yet): verbs just queue."""

    def output_ready(self) -> None:
        pass

    def close(self) -> None:
        raise RuntimeError("this Chat is not attached to a connection")

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        raise RuntimeError("this Chat is not attached to a connection")

    def set_idle_timeout(self, seconds: float | None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


_DETACHED = _Detached()

_logger = logging.getLogger("sanschat")


class _Gone(_Detached):
    """The transport of a chat whose connection is over: closing again is harmless."""

    def close(self) -> None:
        pass

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        pass  # the connection is over: a late push or close from a thread has no effect


_GONE = _Gone()


def _style(cls: type[Chat]) -> str:
    """Which whole-frame hook *cls* uses: the one overridden lowest in its MRO (a subclass
    of a batch handler that overrides `found_frame` gets frames one by one); "" for none."""
    for klass in cls.__mro__:
        if klass is Chat:
            break
        if "found_frames" in vars(klass):
            return "found_frames"
        if "found_frame" in vars(klass):
            return "found_frame"
    return ""


class Chat:
    """Base class of a protocol handler: subclass it, set `terminator`, override the hooks.

    The same subclass runs unchanged on every driver (``sanschat.drivers.select``,
    ``.asyncio``, ``.trio``) and under `sanschat.testing` without any socket.

    Input arrives in one of two styles, chosen by what the subclass overrides:

    * asynchat's: `collect_incoming_data` receives the bytes of the current frame as they
      arrive and `found_terminator` is called when the frame ends;
    * whole frames: if the subclass overrides `found_frame`, it receives each complete
      frame as ``bytes`` instead (the faster path; partial frames wait inside the channel,
      bounded by `max_frame_size`);
    * batches: if the subclass overrides `found_frames`, it receives the whole frames of each
      read as one list (the fastest path, for pipelined protocols).

    Every hook has a default, documented with it.  Verbs (`push`, `set_terminator`, ...)
    may be called from any hook; from another thread, use `push_threadsafe` and
    `close_threadsafe`.
    """

    terminator: ClassVar[TerminatorLike] = None
    """The terminator each new connection starts with (see `Channel.set_terminator`)."""

    max_frame_size: ClassVar[int | None] = None
    """The channel's frame size limit; ``None`` (no limit) by default, as the core cannot know
    what a protocol allows.  Servers facing untrusted peers should set one."""

    idle_timeout: ClassVar[float | None] = None
    """Seconds without any byte read or written after which `idle` is called; None: never."""

    def __init__(self) -> None:
        self.channel: Channel = Channel(self.terminator, max_frame_size=self.max_frame_size)
        """The `Channel` that frames this connection; drivers read its output."""
        self.transport: Transport = _DETACHED
        """The driver's side of the connection; a placeholder until `connection_made`."""
        self._dispatching = False
        self._closed = False
        self._batch_mode = _style(type(self)) == "found_frames"
        self._frames_mode = self._batch_mode or _style(type(self)) == "found_frame"

    # ------------------------------------------------------------------ hooks

    def connection_made(self) -> None:
        """Called once the transport is attached, before any data.  Default: nothing."""

    def collect_incoming_data(self, data: bytes) -> None:
        """Called with bytes of the current frame, in order, as they arrive.

        Default: raise `NotImplementedError`, as asynchat did; override it (with
        `found_terminator`) or override `found_frame` instead.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must override collect_incoming_data() and "
            "found_terminator(), or found_frame()"
        )

    def found_terminator(self) -> None:
        """Called when the current frame has ended.  Default: raise `NotImplementedError`."""
        raise NotImplementedError(
            f"{type(self).__name__} must override found_terminator() and "
            "collect_incoming_data(), or found_frame()"
        )

    def found_frame(self, frame: bytes) -> None:
        """Called with each whole frame, terminator excluded, if the subclass overrides it.

        Overriding this selects the whole-frame style: `collect_incoming_data` and
        `found_terminator` are then not called while the stream lasts.
        """

    def found_frames(self, frames: list[bytes]) -> None:
        """Called with all the whole frames one read completes, if the subclass overrides it.

        The batch hook, for pipelined protocols (a client that sends many commands before it
        reads a reply): one Python call per read instead of one per frame, so a handler can
        answer them all with one `push`.  The frames are cut under the terminator in force
        when the bytes arrived; a terminator set here applies after the last of them (the
        bytes after it are framed anew, and a new call follows if they end frames).  Frames
        are never empty lists.  Overriding it selects the whole-frame style; of
        `found_frames` and `found_frame`, the one overridden lowest in the class hierarchy is
        called (both in one class: this one).  Use `found_frame` when a frame can change how
        the next one is cut (HTTP headers, then a body by length).
        """

    def eof_received(self, unframed: bytes) -> None:
        """Called once when the peer has ended its stream (it may still read).

        *unframed* holds the bytes of a last frame that never got its terminator (always
        ``b""`` in asynchat's style: those bytes went to `collect_incoming_data`).
        Default: `close_when_done`, so queued output is flushed and then the connection
        closes (the half-close rule).
        """
        self.close_when_done()

    def protocol_error(self, error: ProtocolError) -> None:
        """Called once when the peer broke the protocol: *error* says how.

        *error* is a `ProtocolError` raised while framing the peer's input (`FrameTooLarge`:
        a frame grew past `max_frame_size`) or raised on purpose by one of this chat's own
        hooks.  The frames before it have all been dispatched and their replies queued.
        Push an error reply here if the protocol has one (HTTP's ``431 Request Header
        Fields Too Large``, SMTP's ``500``, RESP's ``-ERR``); whatever this hook does, no
        frame is dispatched after it and the connection closes once everything queued has
        been sent (`close_when_done`), unless it calls `close` to close at once.  The bytes
        left unframed stay readable in ``channel`` (`Channel.take_unframed`).  A peer that
        never reads the reply holds the connection like any slow reader (its queued output
        is bounded by what was pushed).  Default: nothing more than that graceful close.
        """

    def idle(self) -> None:
        """Called when `idle_timeout` seconds pass with no traffic.  Default: `close`."""
        self.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        """Called once when the connection is gone; *exc* is why, or ``None`` if it closed
        normally.  Default: nothing."""

    # ------------------------------------------------------------------ verbs

    @overload
    def set_terminator(self, terminator: TerminatorLike) -> None: ...
    @overload
    def set_terminator(self, terminator: TerminatorLike, *, max_frame_size: int | None) -> None: ...
    def set_terminator(
        self,
        terminator: TerminatorLike,
        *,
        max_frame_size: int | _Default | None = _CHANNEL_LIMIT,
    ) -> None:
        """Set how the next frame ends; see `Channel.set_terminator`.

        Called outside a callback (from a timer, or through `Transport.call_soon_threadsafe`),
        it frames at once the bytes already received under the new terminator.
        """
        if max_frame_size is _CHANNEL_LIMIT:
            self.channel.set_terminator(terminator)
        else:
            self.channel.set_terminator(terminator, max_frame_size=max_frame_size)
        if not self._dispatching:
            self.feed(b"")
            self.transport.output_ready()

    def get_terminator(self) -> Terminator:
        """The terminator in force; for an int, the bytes still wanted."""
        return self.channel.get_terminator()

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes to send; see `Channel.push`."""
        self.channel.push(data)
        if not self._dispatching:
            self.transport.output_ready()

    def push_with_producer(self, producer: ProducerLike) -> None:
        """Queue a producer, pulled only as the connection can take its bytes."""
        self.channel.push_with_producer(producer)
        if not self._dispatching:
            self.transport.output_ready()

    def close_when_done(self) -> None:
        """Close the connection once everything queued so far has been sent.

        The drivers close gracefully: they send end of stream once the output is out, then
        read (and drop) what the peer still sends until it closes too or a short linger time
        passes, so that the peer's unread input never turns the close into a reset that
        would lose the last reply (see ``sanschat.drivers.LINGER``).  No callback runs after
        it: frames the peer sent behind the one that asked to close (pipelined requests) are
        not dispatched, and later input is ignored.
        """
        self.channel.close_when_done()
        if self._dispatching:
            self.channel.interrupt()
        else:
            self.transport.output_ready()

    def discard_buffers(self) -> None:
        """Drop unread input and queued output (and a pending close request)."""
        self.channel.discard_buffers()

    def close(self) -> None:
        """Close the connection now; output not yet written is dropped.

        No callback but `connection_lost` runs after it.  Closing a connection that is
        already closed does nothing.
        """
        self._closed = True
        if self._dispatching:
            self.channel.interrupt()
        self.transport.close()

    def push_threadsafe(self, data: bytes | bytearray | memoryview) -> None:
        """`push` from any thread: the bytes are copied now and queued on the loop's thread."""
        copy = bytes(data)
        self.transport.call_soon_threadsafe(lambda: self.push(copy))

    def close_threadsafe(self, when_done: bool = True) -> None:
        """Close from any thread: after queued output (`close_when_done`) or at once."""
        self.transport.call_soon_threadsafe(self.close_when_done if when_done else self.close)

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Change this connection's idle timeout (see `idle_timeout`)."""
        self.transport.set_idle_timeout(seconds)

    @property
    def closing(self) -> bool:
        """True once the chat has asked to close (`close_when_done` or `close`) or is gone.

        Push nothing to a closing chat: `push` after `close_when_done` is a `ValueError`.
        """
        return self._closed or self.channel.closing

    @property
    def peername(self) -> tuple[str, int] | tuple[str, int, int, int] | str | None:
        """The peer's address, or None if unknown (see `Transport.get_extra_info`)."""
        return self.transport.get_extra_info("peername")

    # ------------------------------------------------------------------ driver side

    def attach(self, transport: Transport) -> None:
        """Driver API: attach *transport* and call `connection_made`."""
        self.transport = transport
        if self.idle_timeout is not None:
            transport.set_idle_timeout(self.idle_timeout)
        self._dispatching = True
        try:
            self.connection_made()
        finally:
            self._dispatching = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Driver API: frame received *data* and run the callbacks.

        Afterwards the driver writes what ``channel.data_to_send()`` returns and closes the
        connection once ``channel.wants_close`` is true.  Once the chat has asked to close,
        input is ignored.
        """
        channel = self.channel
        if self._closed or channel._closing:  # (channel.closing, read without a call)
            return
        self._dispatching = True
        try:
            if self._frames_mode and not self._batch_mode:
                found = self.found_frame
                for frame in channel.frames(data):
                    found(frame)
            elif self._batch_mode:
                self._feed_batches(channel.frames(data))
            else:
                collect = self.collect_incoming_data
                terminated = self.found_terminator
                for event in channel.receive(data):
                    if type(event) is Data:
                        collect(event.data)
                    else:
                        terminated()
        except ProtocolError as error:
            self._protocol_failed(error)
        finally:
            self._dispatching = False

    def _protocol_failed(self, error: ProtocolError) -> None:
        """Answer the peer's *error*: `protocol_error`, then flush and close (no more frames)."""
        _logger.info("protocol error from %s (%s): %s; closing after the reply",
                     self.peername, type(self).__name__, error)
        self.channel.interrupt()
        self.protocol_error(error)
        if not (self._closed or self.channel.closing):
            self.channel.close_when_done()

    def _feed_batches(self, frames: Iterator[bytes]) -> None:
        """Hand *frames* to `found_frames` as one list, then any frames the bytes after them
        end under a terminator it set; frames before an error are handed over first."""
        channel = self.channel
        while True:
            batch: list[bytes] = []
            try:
                batch.extend(frames)
            except BaseException:
                if batch:
                    self.found_frames(batch)
                raise
            if not batch:
                return
            self.found_frames(batch)
            if self._closed or channel.closing:
                return
            frames = channel.frames()

    def feed_eof(self) -> None:
        """Driver API: the peer ended its stream; deliver what was held, then `eof_received`."""
        if self._closed or self.channel.closing:
            return
        self._dispatching = True
        try:
            unframed = bytearray()
            frames_mode = self._frames_mode
            if self._batch_mode:
                self._feed_batches(self.channel.frames())
                if self._closed or self.channel.closing:
                    return
            elif frames_mode:
                for frame in self.channel.frames():
                    self.found_frame(frame)
                if self._closed or self.channel.closing:
                    return
            for event in self.channel.receive_eof():
                if type(event) is Data:
                    if frames_mode:
                        unframed += event.data
                    else:
                        self.collect_incoming_data(event.data)
                elif isinstance(event, TerminatorFound):
                    if self._batch_mode:
                        self.found_frames([bytes(unframed)])
                        unframed.clear()
                    elif frames_mode:
                        self.found_frame(bytes(unframed))
                        unframed.clear()
                    else:
                        self.found_terminator()
            if not (self._closed or self.channel.closing):
                self.eof_received(bytes(unframed))
        except ProtocolError as error:
            self._protocol_failed(error)
        finally:
            self._dispatching = False

    def detach(self, exc: BaseException | None = None) -> None:
        """Driver API: the connection is gone (*exc* says why); calls `connection_lost`."""
        self.transport = _GONE
        self._closed = True
        self.connection_lost(exc)
