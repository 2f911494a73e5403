"""The send queue: pushes and producers in, chunks for the socket out.

Theory of operation: a FIFO (``_queue``) of bytes-like items, producers and the close
marker.  Small pushes (under `_COALESCE` bytes) are appended to one ``bytearray`` at the
tail of the queue (``_tail``), which is never written again once `SendQueue.data_to_send`
has handed any of it out; larger ones are queued as they are (held by reference, not
copied), so one ``bytes`` pushed to many channels (a fan-out) is shared by all of them, and
large bytes travel as ``memoryview`` slices, never as re-sliced copies.  ``_queued_bytes``
counts every queued byte but the tail's, which are counted when the tail ends (it is handed
out, or something that cannot join it is queued): a small push onto the tail writes nothing
but the tail, and `SendQueue.buffered_output`, what anyone else reads, adds the tail's length.
Only `close_when_done` sets ``_closing``, and it ends the tail, so a tail means not closing.
`SendQueue.data_to_send` takes items from the front until it has ``max_bytes``; it calls a
producer's ``more()`` only while bytes are still wanted, joins small items into one chunk,
and returns a large item (or the part of it that fits) as a ``memoryview`` without copying;
a join copies at most `_JOIN_LIMIT` bytes, so shared items stay shared after a partial write.
Nothing is lost: a failing producer leaves everything taken before it in the queue, and
`SendQueue.unsend` puts the unsent end of a partial write back in front.

`Channel` inherits these methods (the queue is its send side); nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Final, Literal, TypeAlias

from ._producers import Producer, ProducerLike, as_producer, checked_chunk

__all__ = ["DEFAULT_SEND_SIZE", "SendQueue"]

#: Default for `Channel.data_to_send`: 64 KiB is what a loopback or LAN socket takes in one
#: ``send`` without blocking, and large enough that per-call overhead is negligible.
DEFAULT_SEND_SIZE: Final = 65536

#: Pushes shorter than this are copied into one growing ``bytearray`` at the tail of the send
#: queue instead of queued one by one: a burst of small replies then costs one queue item
#: and one slice, not a Python step per reply.  Longer ones are queued without a copy: a
#: reference costs 8 bytes per channel where a copy costs the line, so a line pushed to
#: 1,000 channels is held once (it was 8 KiB: 1,000 channels held 61 MiB for 64 lines of
#: 1,000 bytes).  From 512 bytes on, the Python step per item in `data_to_send` is below
#: 0.2 ns per byte, less than the copy it saves.
_COALESCE: Final = 512

#: Most bytes `SendQueue.data_to_send` copies into one joined chunk.  An item that would
#: take a join past it waits for the next chunk, and one that starts a chunk goes out on its
#: own as a view: a line shared by many channels is never copied per channel, and what a
#: partial write gives back (`SendQueue.unsend`) pins at most this much of a copy.  16 KiB
#: is what a TCP socket takes at once under ``TCP_NOTSENT_LOWAT`` (see the drivers).
_JOIN_LIMIT: Final = 16 * 1024


class _Marker(enum.Enum):
    CLOSE = "close when done"

    def __repr__(self) -> str:
        return f"<{self.value}>"


_CLOSE: Final = _Marker.CLOSE

_QueueItem: TypeAlias = "bytes | bytearray | memoryview | Producer | Literal[_Marker.CLOSE]"


class SendQueue:
    """The send side of a `Channel`: a FIFO of bytes and producers, pulled by the driver."""

    __slots__ = ("_closing", "_on_push", "_queue", "_queued_bytes", "_tail", "_wants_close")

    def __init__(self) -> None:
        self._queue: deque[_QueueItem] = deque()
        # Called after every push when set: `Chat` points it at its transport's output_ready
        # while no callback of its runs, and binds its own ``push`` to this one (no extra call).
        self._on_push: Callable[[], object] | None = None
        self._queued_bytes = 0
        self._tail: bytearray | None = None
        self._closing = False
        self._wants_close = False

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes to send, after everything queued before.

        ``bytes`` and read-only memoryviews are queued without copying (and sent as
        memoryview slices when large); mutable buffers are copied, so changing them after
        the call changes nothing.  Empty data queues nothing.

        Raises:
            TypeError: if *data* is not bytes-like (``str``, ``int``, ...); checked first.
            ValueError: after `close_when_done`, even for empty data: a push after closing
                is a mistake however little it pushes.
        """
        tail = self._tail
        if tail is not None and type(data) is bytes and len(data) < _COALESCE:
            # The hot path, one more small reply: bytes pass the type check, a tail means no
            # close_when_done (it ends the tail), and the tail's bytes are not counted in
            # _queued_bytes until it ends (see _end_tail), so this is the only write.
            tail += data
        else:
            if type(data) is not bytes:
                data = _checked_push(data)
            if self._closing:
                raise ValueError("push() after close_when_done(): the data would never be sent")
            if not self._queue and data:  # the other one: a lone reply (request/response)
                self._queue.append(data)
                self._queued_bytes = len(data)
            else:
                self._append_bytes(data)
        if self._on_push is not None:
            self._on_push()

    def _append_bytes(self, data: bytes | memoryview) -> None:
        size = len(data)
        queue = self._queue
        if size >= _COALESCE:
            self._end_tail()
            queue.append(data)
            self._queued_bytes += size
        elif self._tail is not None:
            self._tail += data  # (counted when the tail ends)
        elif size:
            # A lone small push is queued as it is; the second one starts the tail, so a
            # push-then-send-per-message pattern never pays for a bytearray.
            last = queue[-1] if queue else None
            if type(last) is bytes and len(last) < _COALESCE:
                tail = self._tail = bytearray(last)
                tail += data
                queue[-1] = tail
                self._queued_bytes -= len(last)  # counted as the tail's from now on
            else:
                queue.append(data)
                self._queued_bytes += size

    def _end_tail(self) -> None:
        """Grow the tail no more (if there is one): its bytes are counted from now on."""
        tail = self._tail
        if tail is not None:
            self._tail = None
            self._queued_bytes += len(tail)

    def push_with_producer(self, producer: ProducerLike) -> None:
        """Queue a producer, pulled by `data_to_send` only when its bytes are wanted.

        Accepts an object with a ``more()`` method, a bytes-like value (queued as by
        `push`), or any iterable of bytes-like chunks (a list, a generator).  ``more()`` may
        return any bytes-like value, taken as `push` takes it: ``bytes`` and read-only
        memoryviews as they are, a ``bytearray`` or writable memoryview copied at once (so
        a producer may refill the same buffer on every call).  An empty value, of any of
        these types, means the producer is exhausted.

        Raises:
            TypeError: for anything else, naming it; `data_to_send` raises `TypeError`
                naming the producer if ``more()`` returns something that is not bytes-like.
            ValueError: after `close_when_done`, even for empty data (as `push`).
        """
        item = as_producer(producer)
        if self._closing:
            raise ValueError("push_with_producer() after close_when_done(): it would never be sent")
        if isinstance(item, (bytes, memoryview)):
            self._append_bytes(item)
        else:
            self._end_tail()
            self._queue.append(item)

    def close_when_done(self) -> None:
        """Ask for the connection to close once everything queued so far has been sent.

        The first `data_to_send` call that finds nothing left before this point returns
        ``b""`` and sets `wants_close` (the call that hands out the last bytes does not).
        Nothing may be pushed after it.  Calling it twice is harmless.
        """
        if not self._closing:
            self._closing = True
            self._end_tail()
            self._queue.append(_CLOSE)

    @property
    def closing(self) -> bool:
        """True once `close_when_done` has been called (until `discard_buffers`)."""
        return self._closing

    def _discard_output(self) -> None:
        """Drop everything queued, and the close request."""
        self._queue.clear()
        self._tail = None
        self._queued_bytes = 0
        self._closing = False
        self._wants_close = False

    def data_to_send(self, max_bytes: int = DEFAULT_SEND_SIZE) -> bytes | memoryview:
        """Return the next chunk to write, at most *max_bytes* long; ``b""`` if none.

        Queued items are taken in order and small ones are joined into one chunk (of at
        most 16 KiB: a larger item comes out on its own, as a view, not a copy).  A
        producer's ``more()`` is called only while bytes are still wanted, and what it
        returns beyond *max_bytes* stays queued.  A large item comes back as a
        ``memoryview`` slice, not a copy.  If a write sends only part of the chunk, give the
        rest back with `unsend`.  A call that finds the point of `close_when_done` next
        returns ``b""`` and sets `wants_close`; so does every later call.

        Raises:
            ValueError: if *max_bytes* is less than 1, whatever is queued (nothing too).
            TypeError: naming the producer, if a producer's ``more()`` returns non-bytes.
        """
        if max_bytes < 1:  # before anything else: a wrong call is wrong whatever is queued
            raise ValueError(f"max_bytes must be >= 1, not {max_bytes}")
        queue = self._queue
        if len(queue) == 1:  # the common case, one reply queued: no loop, no join
            item = queue[0]
            if type(item) is bytes and len(item) <= max_bytes:
                queue.clear()
                self._queued_bytes = 0
                return item
        elif not queue:
            return b""
        out: list[bytes | bytearray | memoryview] = []
        size = 0
        while queue:
            item = queue[0]
            if isinstance(item, (bytes, memoryview, bytearray)):
                if item is self._tail:
                    self._end_tail()  # handed out: later pushes start a new tail
                room = max_bytes - size
                length = len(item)
                if out and size + length > _JOIN_LIMIT:
                    break  # joining it would copy it: it starts the next chunk
                if length <= room:
                    queue.popleft()
                    out.append(item)
                    size += length
                    self._queued_bytes -= length
                    if size == max_bytes:
                        break
                    continue
                view = item if isinstance(item, memoryview) else memoryview(item)
                out.append(view[:room])
                queue[0] = view[room:]
                self._queued_bytes -= room
                break
            if item is _CLOSE:
                if not out:
                    self._wants_close = True
                break
            try:
                # Typed as object: a compiled build would otherwise check the result against
                # `Producer.more` itself, before checked_chunk could name the producer.
                more: Callable[[], object] = item.more
                got = more()
                chunk = got if type(got) is bytes else checked_chunk(item, got)
            except BaseException:
                queue.extendleft(reversed(out))  # nothing taken before the failure is lost
                self._queued_bytes += size
                raise
            if not chunk:
                queue.popleft()
                continue
            queue.appendleft(chunk)
            self._queued_bytes += len(chunk)
        if not out:
            return b""
        if len(out) == 1:
            single = out[0]
            return memoryview(single) if isinstance(single, bytearray) else single
        return b"".join(out)

    def unsend(self, data: bytes | bytearray | memoryview) -> None:
        """Give back the unsent end of a chunk from `data_to_send` after a partial write.

        It goes back to the front of the queue and is the first thing the next
        `data_to_send` returns.  ``chunk[sent:]`` is the usual argument.  If the point of
        `close_when_done` had been reached, it is behind these bytes again: `wants_close`
        is false and `wants_write` true until `data_to_send` has handed them out and
        reaches the point once more.  Empty data changes nothing.
        """
        if type(data) is not bytes:
            data = _checked_push(data)
        if data:
            self._queue.appendleft(data)
            self._queued_bytes += len(data)
            self._wants_close = False  # the close point, if reached, is behind these bytes

    @property
    def wants_write(self) -> bool:
        """True while `data_to_send` may return bytes or reach the close point: something is
        queued and `wants_close` is false."""
        return bool(self._queue) and not self._wants_close

    @property
    def wants_close(self) -> bool:
        """True once a `data_to_send` call has reached the point of `close_when_done`.

        That is the call after the one that handed out the last bytes before the point: it
        returns ``b""`` (a producer is only known to be exhausted when asked once more).  A
        driver writes what `data_to_send` returns until it returns ``b""``, then closes if
        this is true.  `unsend` of bytes makes it false again; `discard_buffers` clears it.
        """
        return self._wants_close

    @property
    def buffered_output(self) -> int:
        """Bytes queued to send and not yet handed out (producers' bytes not counted)."""
        tail = self._tail
        return self._queued_bytes if tail is None else self._queued_bytes + len(tail)


def _checked_push(data: object) -> bytes | memoryview:
    """Return *data* as a queue item: read-only views kept, mutable buffers copied."""
    if isinstance(data, memoryview):
        return data.cast("B") if data.readonly else bytes(data)
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        raise TypeError(f"push() takes bytes, not str: {data!r:.60} (encode it first)")
    raise TypeError(f"push() takes bytes-like data, not {type(data).__name__}: {data!r:.60}")
