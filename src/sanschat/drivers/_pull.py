"""The pull style the asyncio and trio drivers share: ``async for`` over a connection.

Theory of operation: a `PullReader` owns a `Channel` and a ``_pending`` buffer that its
driver fills with the bytes it receives.  Iteration walks the channel's own iterators, so a
terminator set inside the loop applies to the very next unread byte.  Pending bytes are
handed to the channel only when the current iterator has run dry (a channel has one reader
at a time: handing them over earlier would end that iterator), and the driver's `_more` is
awaited only when nothing is pending.  Framing stays in the channel; this module decides
nothing about bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TypeVar, final, overload

from .._channel import _CHANNEL_LIMIT, Channel, TerminatorLike, _Default
from .._events import Data, Event, TerminatorFound

__all__ = ["PullReader"]

_R = TypeVar("_R", bound="PullReader")


class PullReader:
    """The reading half of a stream-style connection: ``async for event in conn`` yields
    `Data` and `TerminatorFound` events, then one `EndOfStream`, then stops; ``async for
    frame in conn.frames()`` yields whole frames and stops at end of stream, leaving the
    bytes of a last frame without its terminator in `unframed`.  One task reads."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        """The `Channel` that frames what is read."""
        self.unframed: bytes = b""
        """After `frames` has stopped: bytes of a last frame that never got its terminator."""
        self._events: Iterator[Event] | None = None  # the channel iterator of each style;
        self._frames: Iterator[bytes] | None = None  # dropping one loses nothing
        self._pending = bytearray()  # received, not yet given to the channel
        self._eof = False  # the peer ended its stream (or the connection was closed)
        self._eof_fed = False  # the channel was told (receive_eof)

    async def _more(self) -> None:
        """Driver part: wait until bytes are added to ``_pending`` or ``_eof`` is set."""
        raise NotImplementedError

    @overload
    def set_terminator(self, terminator: TerminatorLike) -> None: ...
    @overload
    def set_terminator(self, terminator: TerminatorLike, *, max_frame_size: int | None) -> None: ...
    def set_terminator(
        self, terminator: TerminatorLike, *, max_frame_size: int | _Default | None = _CHANNEL_LIMIT
    ) -> None:
        """Set how the next frame ends (see `Channel.set_terminator`)."""
        if max_frame_size is _CHANNEL_LIMIT:
            self.channel.set_terminator(terminator)
        else:
            self.channel.set_terminator(terminator, max_frame_size=max_frame_size)

    def __aiter__(self: _R) -> _R:
        return self

    async def __anext__(self) -> Event:
        """The next event: `Data`, `TerminatorFound`, and at the end `EndOfStream`."""
        while True:
            events = self._events
            if events is None:
                self._frames = None
                channel = self.channel
                if self._pending:
                    events = channel.receive(self._take_pending())
                elif self._eof:
                    self._eof_fed = True
                    events = channel.receive_eof()
                else:
                    events = channel.receive(b"")
                self._events = events
            try:
                event = next(events, None)
            except BaseException:
                self._events = None  # a generator that raised is spent: make a new one
                raise
            if event is not None:
                return event
            self._events = None
            if self._eof_fed:
                raise StopAsyncIteration
            if not (self._pending or self._eof):
                await self._more()

    def frames(self) -> AsyncIterator[bytes]:
        """Whole frames as `bytes`, until end of stream (then see `unframed`)."""
        return _Frames(self)

    async def _next_frame(self) -> bytes:
        while True:
            frames = self._frames
            if frames is None:
                self._events = None
                frames = iter(()) if self._eof_fed else self.channel.frames(self._take_pending())
                self._frames = frames
            try:
                frame = next(frames, None)
            except BaseException:
                self._frames = None
                raise
            if frame is not None:
                return frame
            self._frames = None
            if self._pending:
                continue
            if self._eof:
                return self._last_frame()
            await self._more()

    def _take_pending(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data

    def _last_frame(self) -> bytes:
        """At end of stream: a last frame that a shorter tuple alternative ends, or stop."""
        self._eof_fed = True
        unframed = bytearray()
        for event in self.channel.receive_eof():
            if type(event) is Data:
                unframed += event.data
            elif type(event) is TerminatorFound:
                return bytes(unframed)
        if unframed:
            self.unframed = bytes(unframed)
        raise StopAsyncIteration


@final
class _Frames:
    """`PullReader.frames`: no extra coroutine per frame."""

    __slots__ = ("_reader",)

    def __init__(self, reader: PullReader) -> None:
        self._reader = reader

    def __aiter__(self) -> _Frames:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        return self._reader._next_frame()
