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

Backpressure and fairness.  A chat whose queued output passes `high_water` is *full*
(`output_full`); the drivers stop reading a full connection.  A handler feeding other
connections (a fan-out) pauses its own reading while a target is full with
`pause_until_drained`; the target's driver, after each write, calls `Chat.written`, which
resumes those senders once the target is down to half its high water (and calls the
target's `output_drained`).  One `feed` dispatches at most `frame_budget` frames; the rest
stay in the channel (`input_backlog`) and the driver dispatches them on later loop rounds,
reading nothing from that connection meanwhile, so one large read cannot hold the loop.
The channel's iterator is kept live between those rounds (no bytes are cut twice).
`push_threadsafe` blocks a producer thread while the output it would add passes the high
water, and drops (counts, logs once at debug level) a push that reaches the loop after the
chat closed: a late push never aborts the output `close_threadsafe` is flushing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any, ClassVar, Final, Literal, Protocol, overload

from ._channel import (
    _CHANNEL_LIMIT,
    Channel,
    Terminator,
    TerminatorLike,
    _Default,
    _Stepper,
)
from ._errors import ProtocolError
from ._events import Data, TerminatorFound
from ._loops import each_event, each_frame
from ._mypyc import mypyc_attr
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

    def pause_reading(self) -> None:
        """Read nothing more from the connection, and dispatch nothing more of what was read,
        until `resume_reading` (`Chat.pause_reading` calls it)."""

    def resume_reading(self) -> None:
        """Dispatch what was read meanwhile, soon (``Chat.feed(b"")``), then read again."""


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

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


_DETACHED = _Detached()

_logger = logging.getLogger("sanschat")


class _Gone(_Detached):
    """The transport of a chat whose connection is over: closing again is harmless."""

    def close(self) -> None:
        pass

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        pass  # the connection is over: a late push or close from a thread has no effect


_GONE = _Gone()

#: The default of `Chat.high_water` (and ``sanschat.drivers.HIGH_WATER``): 1 MiB of queued
#: output keeps a fast peer's socket busy (several loopback writes' worth) while bounding
#: what a peer that never reads can cost.
DEFAULT_HIGH_WATER: Final = 1024 * 1024


class _ThreadGate:
    """What `Chat.push_threadsafe` needs on a chat: the bytes pushed from threads that have
    not reached the loop yet, and the condition a blocked thread waits on."""

    __slots__ = ("cond", "in_flight", "pushes")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.in_flight = 0  # bytes
        self.pushes = 0  # calls


# How feed dispatches (Chat._style, from the hooks the subclass overrides).
_PER_FRAME: Final = 0  # found_frame
_PER_EVENT: Final = 1  # collect_incoming_data and found_terminator
_BATCH: Final = 2  # found_frames

_GATE_LOCK = threading.Lock()  # makes each chat's _ThreadGate once, whichever thread asks


def _shortcut(chat: Chat, name: str, method: Callable[..., None]) -> None:
    """Make *method* (the channel's own) *chat*'s attribute *name*, if the chat can hold one.

    Set as a plain attribute, never through ``chat.__dict__``: reading ``__dict__`` makes
    CPython (3.11) build the instance's dict, after which no method call on the chat is
    specialized (every ``self.found_frame``, ``chat.feed`` and ``self.push`` becomes a slow
    generic lookup, about a fifth of a request/response round trip, measured with callgrind
    in ``benchmarks/bench_instructions.py``).  A compiled build's plain `Chat` has no
    ``__dict__``: its methods stay the class's own, which call the channel's.
    """
    with contextlib.suppress(AttributeError):
        object.__setattr__(chat, name, method)


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


@mypyc_attr(allow_interpreted_subclasses=True)
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

    _high_water: int = DEFAULT_HIGH_WATER  # (a class default: set before __init__, it stays)

    @property
    def high_water(self) -> int:
        """Queued output (bytes) above which this chat is full (`output_full`): the driver stops
        reading the connection until it drains, `push_threadsafe` blocks, and a sender that
        called `pause_until_drained` on it stays paused until the output is down to half of
        it.  1 MiB by default (``sanschat.drivers.HIGH_WATER``); set on a subclass, it wins over
        the server's ``Limits.high_water``, which a driver otherwise stores here when the
        connection starts.  A server with many connections fed by others (a chat room) should
        lower it: the worst case of its queued output is connections x (high water + one read's
        worth).

        A property (not a plain attribute) so that the compiled build reads what a subclass
        sets on its class as well as what a driver sets on the chat."""
        return self._high_water

    @high_water.setter
    def high_water(self, value: int) -> None:
        self._high_water = value

    frame_budget: ClassVar[int | None] = 4096
    """Most frames (in asynchat's style: events) one read dispatches in one loop round (read
    when the chat is made); the rest wait in the channel for the next rounds, during which
    the connection is not read.  4096 frames (a 64 KiB read of 16-byte lines) take one or
    two milliseconds of plain per-frame handler work, and a batch handler pays the round
    trip to the loop once per 4096 frames (16384 made the chat example's rounds so long
    that the 256 KiB stall write delayed others 160-170 ms, against 40-140 ms); lower it
    when each frame costs more (a line sent to many peers one by one).  None: no budget
    (every frame of a read at once)."""

    def __init__(self) -> None:
        self.channel: Channel = Channel(self.terminator, max_frame_size=self.max_frame_size)
        """The `Channel` that frames this connection; drivers read its output."""
        self.transport: Transport = _DETACHED
        """The driver's side of the connection; a placeholder until `connection_made`."""
        self._dispatching = False
        self._closed = False
        # While no callback runs, a push must wake the driver (output_ready); inside one,
        # the driver flushes afterwards.  The channel's push does both (its _on_push hook is
        # set while no callback runs), so unless a subclass overrides push, this chat's push
        # *is* the channel's: one Python call per reply instead of two.
        self._output_ready: Callable[[], None] = _DETACHED.output_ready
        self.channel._on_push = self._output_ready
        # The same for set_terminator, which outside callbacks must also frame the bytes
        # held at once (the channel's _on_terminator hook, unset while a callback runs).
        self._terminator_set: Callable[[], None] = self._frame_held  # (bound once, not per feed)
        self.channel._on_terminator = self._terminator_set
        cls = type(self)
        if cls.push is Chat.push:
            _shortcut(self, "push", self.channel.push)
        if cls.set_terminator is Chat.set_terminator:
            _shortcut(self, "set_terminator", self.channel.set_terminator)
        self._batch_mode = _style(type(self)) == "found_frames"
        self._frames_mode = self._batch_mode or _style(type(self)) == "found_frame"
        # A terminator set in a callback ends the channel's loop, and feed goes on deciding
        # one step at a time (Channel._frames_stepwise / _events_stepwise), so switching on
        # every frame costs no re-decision of all the bytes left in the read.  (A batch is
        # all the frames of a read under one terminator: it needs no such thing.)
        self.channel._stepwise = not self._batch_mode
        self._backlog = False  # frames left over by the budget: see input_backlog
        # the channel's live iterator over them, and the list iterator it wraps
        self._rest: tuple[Iterator[Any], Any] | None = None
        self._paused = False  # pause_reading
        self._waiting = 0  # targets this chat waits on (pause_until_drained)
        self._held = False  # _paused or _waiting: feed dispatches nothing
        self._slow = False  # _held or _backlog: feed takes _feed_slow
        budget = self.frame_budget
        self._budget = sys.maxsize if budget is None else budget  # (read once, here)
        # feed's own loop takes up to this many frames (or events, two per frame) per read;
        # more go to _loops, or to the budgeted _dispatch.
        self._few = min(2 if self._frames_mode else 4, self._budget)
        self._style = (
            _BATCH if self._batch_mode else _PER_FRAME if self._frames_mode else _PER_EVENT
        )
        self._senders: list[Chat] | None = None  # chats waiting for this one to drain
        self._drain_wanted = False  # someone waits for written(): senders or a thread
        self._gate: _ThreadGate | None = None  # made by the first push_threadsafe
        self._loop_thread: int | None = None  # the driver's thread, learnt at attach
        self.late_pushes: int = 0
        """`push_threadsafe` calls dropped because they reached the loop after this chat
        had asked to close (or after its connection was gone)."""

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

    def output_drained(self) -> None:
        """Called when output that a handler saw full (`output_full` was read true, or a
        thread blocked in `push_threadsafe`) is down to half of `high_water` or less.

        By then the senders paused with `pause_until_drained` on this chat have been
        resumed.  Not called if the connection ends first.  Default: nothing.
        """

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

        Called in a callback, it applies to the bytes after the current frame, and it never
        raises `FrameTooLarge`: a frame it makes too large goes to `protocol_error` once the
        callback has returned, whether or not its bytes have arrived yet (so the rest of the
        callback runs the same way whatever the cut).  The frames after it are then decided
        one step at a time, so switching on every frame costs no more than the frames.
        Called outside a callback (from a timer, or through `Transport.call_soon_threadsafe`),
        it frames at once the bytes already received under the new terminator.  Unless a
        subclass overrides it, a chat's ``set_terminator`` is its channel's own (bound in
        ``__init__``), whose hook does that framing: one Python call per switch.
        """
        if max_frame_size is _CHANNEL_LIMIT:
            self.channel.set_terminator(terminator)
        else:
            self.channel.set_terminator(terminator, max_frame_size=max_frame_size)
        # (Outside callbacks the channel's hook, _frame_held, has framed the bytes held.)

    def _frame_held(self) -> None:
        """After a terminator set outside a callback: frame the bytes held under it now, and
        tell the driver about what that queued."""
        self.feed(b"")
        self.transport.output_ready()

    def get_terminator(self) -> Terminator:
        """The terminator in force; for an int, the bytes still wanted."""
        return self.channel.get_terminator()

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes to send; see `Channel.push`.

        Outside a callback, the driver is told that output is ready (inside one, it flushes
        once the callback returns).  Unless a subclass overrides it, a chat's ``push`` is
        its channel's own (bound in ``__init__``), whose hook does the telling.
        """
        self.channel.push(data)  # (the channel's hook tells the driver, see __init__)

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
        """Drop unread input and queued output (and a pending close request).

        Senders paused on this chat's output (`pause_until_drained`) are resumed."""
        self.channel.discard_buffers()
        self._set_rest(None)
        if self._senders is not None:
            self._release_senders()

    def close(self) -> None:
        """Close the connection now; output not yet written is dropped.

        No callback but `connection_lost` runs after it.  Closing a connection that is
        already closed does nothing.
        """
        self._closed = True
        if self._dispatching:
            self.channel.interrupt()
        if self._senders is not None:
            self._release_senders()  # its output will never drain
        self.transport.close()

    def pause_reading(self) -> None:
        """Stop reading from this connection, and dispatching what it has sent, until
        `resume_reading`.  Called inside a callback, no frame after the current one (in
        `found_frames`: after the current batch) is dispatched.  Harmless if paused."""
        if not self._paused:
            self._paused = True
            if not self._waiting:
                self._pause()

    def resume_reading(self) -> None:
        """Undo `pause_reading`: frames already received are dispatched on a later loop
        round, then reading goes on (unless `pause_until_drained` still holds it)."""
        if self._paused:
            self._paused = False
            if not self._waiting:
                self._resume()

    @property
    def reading_paused(self) -> bool:
        """True while `pause_reading` or `pause_until_drained` holds this connection's input."""
        return self._paused or self._waiting > 0

    @property
    def output_full(self) -> bool:
        """True while more than `high_water` bytes are queued to send.

        Reading it true asks the driver to call `output_drained` once the output is down to
        half the high water.  A handler that pushes to other chats checks this on each
        target and calls `pause_until_drained` for those that are full.
        """
        if self.channel.buffered_output > self.high_water:
            self._drain_wanted = True
            return True
        return False

    def pause_until_drained(self, target: Chat) -> None:
        """Pause this chat's reading (as `pause_reading`) until *target*'s output is down to
        half its `high_water`, or *target*'s connection is gone.

        For fan-out: a handler that pushed to *target* and found it full (`output_full`)
        stops taking input that would only queue more for it.  Paused on several targets,
        reading resumes once the last of them has drained.  Does nothing if *target* is not
        full, is this chat, or is closed.
        """
        if target is self or target._closed or not target.output_full:
            return
        senders = target._senders
        if senders is None:
            senders = target._senders = []
        elif self in senders:
            return
        senders.append(self)
        self._waiting += 1
        if self._waiting == 1 and not self._paused:
            self._pause()

    def _pause(self) -> None:
        self._held = self._slow = True
        if self._dispatching and not self._batch_mode:
            # Stop the loop after this frame; what it has not reached stays for resume.  (A
            # batch handler's pause takes effect after its batch: its iterator stays live.)
            self.channel.interrupt()
            self._set_rest(None)
        self.transport.pause_reading()

    def _resume(self) -> None:
        self._held = False
        self._slow = self._backlog
        self.transport.resume_reading()

    def _target_drained(self) -> None:
        self._waiting -= 1
        if not self._waiting and not self._paused:
            self._resume()

    def _release_senders(self) -> None:
        senders, self._senders = self._senders, None
        for sender in senders or ():
            sender._target_drained()

    def push_threadsafe(
        self, data: bytes | bytearray | memoryview, timeout: float | None = None
    ) -> None:
        """`push` from any thread: the bytes are copied now and queued on the loop's thread.

        Bounded: while this chat's queued output plus the bytes other threads have pushed
        and not yet handed to the loop would pass `high_water` with *data*, the calling
        thread waits (at most *timeout* seconds; None: as long as the connection lives),
        so a producer thread goes at the pace of the peer, as with ``queue.Queue.put``, and
        nothing is dropped while the connection lives.  A push larger than the high water
        waits for an empty queue.  Called on the loop's own thread it never waits (that
        would wait for itself).

        A push that reaches the loop once the chat has asked to close (`close_when_done`,
        `close_threadsafe`, end of stream) or is gone is dropped: counted in `late_pushes`
        and logged once at debug level; it never disturbs the output already queued.

        Raises:
            TimeoutError: if the room did not come within *timeout*; nothing was queued.
        """
        copy = bytes(data)
        gate = self._gate or self._make_gate()
        size = len(copy)
        # Decided under the gate's lock, which detach takes to count the pushes in flight as
        # late: a push is then either counted there or finds the transport gone here, never
        # neither (a detach between a check outside the lock and the count lost it).
        with gate.cond:
            if self.transport is not _GONE and threading.get_ident() != self._loop_thread:
                self._wait_for_room(gate, size, timeout)
            transport = self.transport
            if transport is _GONE:
                self._drop_late()
                return
            gate.in_flight += size
            gate.pushes += 1
        try:
            transport.call_soon_threadsafe(lambda: self._push_from_thread(copy))
        except BaseException:  # not attached yet, or the loop is over: nothing was queued
            with gate.cond:
                gate.in_flight -= size
                gate.pushes -= 1
            raise

    def _make_gate(self) -> _ThreadGate:
        with _GATE_LOCK:
            if self._gate is None:
                self._gate = _ThreadGate()
            return self._gate

    def _wait_for_room(self, gate: _ThreadGate, size: int, timeout: float | None) -> None:
        """Wait, holding ``gate.cond``, until *size* more bytes fit under the high water."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            queued = self.channel.buffered_output + gate.in_flight
            if not queued or queued + size <= self.high_water or self.transport is _GONE:
                return
            self._drain_wanted = True  # set under the lock: written() then notifies us
            wait = 1.0  # a re-check now and then, should a wake-up ever be missed
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"push_threadsafe: no room under high_water={self.high_water} within "
                        f"{timeout} s ({queued} bytes queued to {self.peername})")
                wait = min(wait, remaining)
            gate.cond.wait(wait)

    def _push_from_thread(self, data: bytes) -> None:
        gate = self._gate
        assert gate is not None
        with gate.cond:
            if self.transport is _GONE:
                return  # counted by detach (some drivers drop callbacks after the end)
            gate.in_flight -= len(data)
            gate.pushes -= 1
            if self.closing:
                self._drop_late()  # (under the lock, as every count of late_pushes)
                return
        self.push(data)

    def _drop_late(self, count: int = 1) -> None:
        first = not self.late_pushes
        self.late_pushes += count
        if first and count:
            _logger.debug("a push_threadsafe reached %s (%s) after it closed; "
                          "dropped (later ones are counted in late_pushes only)",
                          type(self).__name__, self.peername)

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
        self._output_ready = transport.output_ready
        self._loop_thread = threading.get_ident()
        if self.idle_timeout is not None:
            transport.set_idle_timeout(self.idle_timeout)
        self._dispatching = True
        self.channel._on_push = self.channel._on_terminator = None
        try:
            self.connection_made()
        finally:
            self._dispatching = False
            self.channel._on_push = self._output_ready
            self.channel._on_terminator = self._terminator_set

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Driver API: frame received *data* and run the callbacks.

        Afterwards the driver writes what ``channel.data_to_send()`` returns and closes the
        connection once ``channel.wants_close`` is true.  Once the chat has asked to close,
        input is ignored.  At most `frame_budget` frames are dispatched: if frames are left
        (`input_backlog`), the driver calls ``feed(b"")`` on a later loop round, and reads
        nothing from the connection until the backlog is gone.  While reading is paused
        (`reading_paused`) nothing is dispatched: the bytes wait in the channel.
        """
        channel = self.channel
        if self._closed or channel._closing:  # (channel.closing, read without a call)
            return
        if self._slow:  # paused, or frames left over by the budget
            self._feed_slow(data)
            return
        style = self._style
        if style == _PER_FRAME:
            try:
                frames = channel.frames(data)
            except ProtocolError as error:  # (the iterator raises them: defensive)
                self._failed(error)
                return
            out = channel._out
            if not out:  # no frame ended (a partial read): nothing to dispatch
                return
            count = len(out)
        elif style == _PER_EVENT:
            try:
                events = channel.receive(data)
            except ProtocolError as error:
                self._failed(error)
                return
            out = channel._out
            if not out:
                return
            count = len(out)
        # Inside callbacks, pushes and terminators wake nobody: the driver flushes after.
        self._dispatching = True
        channel._on_push = channel._on_terminator = None
        try:
            if style == _PER_FRAME:
                if count <= self._few:  # the hot path: a read of a frame or two
                    for frame in frames:
                        self.found_frame(frame)
                elif count > self._budget:
                    self._dispatch(frames)
                else:  # many: see _loops
                    each_frame(self.found_frame, frames)
                if channel._resume and not self._stopped():  # a switch: go on stepwise
                    self._dispatch(channel._frames_stepwise())
            elif style == _PER_EVENT:
                if count <= self._few:  # the hot path: the events of a frame
                    for event in events:
                        if type(event) is Data:
                            self.collect_incoming_data(event.data)
                        else:
                            self.found_terminator()
                elif count > self._budget:
                    self._dispatch(events)
                else:  # many events: see _loops
                    each_event(self.collect_incoming_data, self.found_terminator, events)
                if channel._resume and not self._stopped():  # a switch: go on stepwise
                    self._dispatch(channel._events_stepwise())
            else:
                self._feed_batches(channel.frames(data), self._budget)
        except ProtocolError as error:
            self._protocol_failed(error)
        finally:
            self._dispatching = False
            channel._on_push = self._output_ready
            channel._on_terminator = self._terminator_set

    def _failed(self, error: ProtocolError) -> None:
        """`_protocol_failed` for an error raised before any callback ran."""
        self._dispatching = True
        self.channel._on_push = self.channel._on_terminator = None
        try:
            self._protocol_failed(error)
        finally:
            self._dispatching = False
            self.channel._on_push = self._output_ready
            self.channel._on_terminator = self._terminator_set

    def _feed_slow(self, data: bytes | bytearray | memoryview) -> None:
        """`feed` while paused (the bytes wait in the channel) or with a backlog (the next
        budget of the channel's live iterator, unless a new cut ended it)."""
        channel = self.channel
        if self._held:
            if data:
                channel.frames(data)  # kept, not dispatched: the next feed after resume cuts it
            return
        rest = self._rest
        self._set_rest(None)
        if rest is None or data or channel._out_it is not rest[1]:
            self.feed(data)  # nothing live to go on with: cut anew
            return
        self._dispatching = True
        self.channel._on_push = self.channel._on_terminator = None
        try:
            self._dispatch(rest[0])
        except ProtocolError as error:
            self._protocol_failed(error)
        finally:
            self._dispatching = False
            self.channel._on_push = self._output_ready
            self.channel._on_terminator = self._terminator_set

    def _set_rest(self, rest: tuple[Iterator[Any], Any] | None) -> None:
        self._rest = rest
        self._backlog = rest is not None
        self._slow = self._held or self._backlog

    def _dispatch(self, items: Iterator[Any]) -> None:
        """Dispatch at most `frame_budget` frames or events of *items* (the channel's live
        iterator); keep it for the next round if more are left."""
        budget = self._budget
        if self._batch_mode:
            self._feed_batches(items, budget)
            return
        channel = self.channel
        if self._frames_mode:
            found = self.found_frame
            each_frame(found, islice(items, budget))
            if channel._resume and not self._stopped():
                items = channel._frames_stepwise()  # a terminator changed: go on stepwise
                each_frame(found, islice(items, budget))
        else:
            collect, terminated = self.collect_incoming_data, self.found_terminator
            each_event(collect, terminated, islice(items, budget))
            if channel._resume and not self._stopped():
                items = channel._events_stepwise()
                each_event(collect, terminated, islice(items, budget))
        self._keep_rest(items)

    def _stopped(self) -> bool:
        """No more dispatching now: closed, closing, or reading paused (the bytes wait)."""
        return self._closed or self.channel._closing or self._held

    def _keep_rest(self, items: Iterator[Any]) -> None:
        """After a budgeted dispatch: if the channel's iterator has items left, keep it for
        the next round (`input_backlog`) rather than cutting its bytes again."""
        live = self.channel._out_it
        more = live.__length_hint__() or (
            type(live) is _Stepper and not live.done and self.channel._out is live._out
        )
        if more and not (self._closed or self.channel.closing):
            self._set_rest((items, live))  # (while _held too: the driver goes on after resume)

    @property
    def input_backlog(self) -> bool:
        """Driver API: True if the last `feed` stopped at `frame_budget` with frames left.

        The driver then calls ``feed(b"")`` on a later loop round (after the other ready
        connections) and does not read from this connection before the backlog is gone.
        """
        return self._backlog

    def written(self) -> None:
        """Driver API: call after writing to the connection while ``_drain_wanted`` is set.

        Once the queued output is down to half of `high_water`, it wakes the threads
        blocked in `push_threadsafe`, resumes the senders paused by `pause_until_drained`
        on this chat, then calls `output_drained`.
        """
        if self.channel.buffered_output > self.high_water // 2:
            return
        self._drain_wanted = False
        gate = self._gate
        if gate is not None:
            with gate.cond:
                gate.cond.notify_all()
        if self._senders is not None:
            self._release_senders()
        self.output_drained()

    def _protocol_failed(self, error: ProtocolError) -> None:
        """Answer the peer's *error*: `protocol_error`, then flush and close (no more frames)."""
        _logger.info("protocol error from %s (%s): %s; closing after the reply",
                     self.peername, type(self).__name__, error)
        self.channel.interrupt()
        self.protocol_error(error)
        if not (self._closed or self.channel.closing):
            self.channel.close_when_done()

    def _feed_batches(self, frames: Iterator[bytes], budget: int | None = None) -> None:
        """Hand *frames* to `found_frames` as one list, then any frames the bytes after them
        end under a terminator it set; frames before an error are handed over first.  At
        most `frame_budget` frames go in one list; if that stops it, the rest waits for
        the next round (`input_backlog`)."""
        channel = self.channel
        while True:
            batch: list[bytes] = []
            # list.extend keeps the frames taken before an error; called as a bound method
            # because mypyc's own extend (PyList_SetSlice before 3.13) would keep none.
            extend = batch.extend
            try:
                extend(frames if budget is None else islice(frames, budget))
            except BaseException:
                if batch:
                    self.found_frames(batch)
                raise
            size = len(batch)  # (the handler may extend the list)
            if not size:
                return
            self.found_frames(batch)
            if self._closed or channel.closing:
                return
            if self._held or size == budget:
                self._keep_rest(frames)
                return
            frames = channel.frames()

    def feed_eof(self) -> None:
        """Driver API: the peer ended its stream; deliver what was held, then `eof_received`."""
        if self._closed or self.channel.closing:
            return
        self._dispatching = True
        self.channel._on_push = self.channel._on_terminator = None
        self._set_rest(None)
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
                while self.channel._resume and not self._stopped():
                    for frame in self.channel._frames_stepwise():
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
            self.channel._on_push = self._output_ready
            self.channel._on_terminator = self._terminator_set

    def detach(self, exc: BaseException | None = None) -> None:
        """Driver API: the connection is gone (*exc* says why); calls `connection_lost`."""
        self.transport = _GONE
        self._output_ready = self.channel._on_push = _GONE.output_ready
        # Closed, the terminator hook has nothing left to frame (feed ignores input now).
        # Neither hook is a bound method of this chat from here on, so neither the chat nor
        # its channel holds the chat: both are freed without the garbage collector.
        self._terminator_set = self.channel._on_terminator = _GONE.output_ready
        self._closed = True
        self._set_rest(None)
        if self._senders is not None:
            self._release_senders()
        gate = self._gate
        if gate is not None:
            with gate.cond:
                late, gate.pushes, gate.in_flight = gate.pushes, 0, 0
                gate.cond.notify_all()  # blocked threads: their push is now late
                self._drop_late(late)
        self.connection_lost(exc)
