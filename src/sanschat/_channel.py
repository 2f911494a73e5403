"""`Channel`: terminator framing in, producer queue out, and no I/O at all.

Theory of operation
-------------------
Receive side.  Every received byte goes into one ``bytearray`` (``_buf``) that starts at
the first byte not yet delivered.  `Channel.receive` and `Channel.frames` append eagerly
and return lazy iterators; each step of an iterator asks `_step` to decide the next piece
of the stream under the terminator in force *at that moment*, so a terminator changed
between two events applies to the very next unread byte.  `_step` keeps these rules:

* a byte is delivered once, as frame data; terminator bytes are never data;
* a suffix that could still be the start of a terminator is held back, and nothing else;
  at end of stream it is decided (`Channel.receive_eof`), never dropped;
* a terminator search resumes where the previous one stopped (``_scan_from``), so each
  byte is scanned a bounded number of times however it is cut into chunks;
* when a bytes terminator occurs more than once in the buffer, every complete frame is cut
  at once with ``bytes.split`` (C speed) into a *batch*, a list iterator kept on the
  channel: of frames for `frames`, or of ready-made events for `receive` (``_batch_events``).
  A call that cuts the batch returns ``chain(batch, reader)``, so the batch is iterated with
  no Python step per item.  Readers drain the batch before looking at ``_buf`` again.
  Because the iterator lives on the channel, an abandoned ``for`` loop loses nothing; because
  `set_terminator` drains what is left of it back into ``_buf`` (`_unbatch`), a loop that
  changes the terminator mid-batch ends that batch and the rest is framed anew.  A new
  reader moves the rest of the batch to a fresh iterator, so an older loop ends too.
* ``_fast`` is the bytes terminator `frames` may search for directly, without a generator,
  while the channel is plain (no reader alive, nothing batched or owed, stream not ended).
* ``_owed`` holds a `TerminatorFound` whose frame data has been yielded but which has not
  been yielded itself, so that an abandoned loop cannot lose a frame boundary either.

Send side.  A FIFO (``_queue``) of bytes-like items, producers and the close marker.
Small pushes are appended to one ``bytearray`` at the tail of the queue (``_tail``), which is
never written again once `data_to_send` has handed any of it out; large ones are queued as
they are.  `Channel.data_to_send` takes items from the front until it has ``max_bytes``; it
calls a producer's ``more()`` only while bytes are still wanted, joins small items into one
chunk, and returns a large item (or the part of it that fits) as a ``memoryview`` without
copying.

This module must never import anything that does I/O, read a clock, start a thread or log.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Generator, Iterator
from itertools import chain, repeat
from typing import Any, Final, Literal, TypeAlias, final

from ._errors import FrameTooLarge
from ._events import Data, EndOfStream, Event, TerminatorFound
from ._producers import Producer, as_producer, checked_chunk

__all__ = ["Channel", "Terminator", "TerminatorLike"]

#: A terminator as the channel stores it: see `Channel.set_terminator`.
Terminator: TypeAlias = "bytes | int | tuple[bytes, ...] | None"
#: What `Channel.set_terminator` accepts: bytes-like values are stored as `bytes`.
TerminatorLike: TypeAlias = (
    "bytes | bytearray | memoryview | int | tuple[bytes | bytearray | memoryview, ...] | None"
)


class _Default(enum.Enum):
    CHANNEL_LIMIT = "the channel's max_frame_size"

    def __repr__(self) -> str:
        return "<the channel's max_frame_size>"


_CHANNEL_LIMIT: Final = _Default.CHANNEL_LIMIT


class _Marker(enum.Enum):
    CLOSE = "close when done"
    BATCHED = "batch ready"

    def __repr__(self) -> str:
        return f"<{self.value}>"


_CLOSE: Final = _Marker.CLOSE
_BATCHED: Final = _Marker.BATCHED

_QueueItem: TypeAlias = "bytes | bytearray | memoryview | Producer | Literal[_Marker.CLOSE]"
_Step: TypeAlias = "tuple[bytes, TerminatorFound | None] | Literal[_Marker.BATCHED] | None"

_NOTHING: Final[Iterator[Any]] = iter(())  # what frames() returns when no frame can end
_new = object.__new__
_set_data = Data.__dict__["data"].__set__  # slot descriptor: builds a Data without __init__

#: Default for `Channel.data_to_send`: 64 KiB is what a loopback or LAN socket takes in one
#: ``send`` without blocking, and large enough that per-call overhead is negligible.
DEFAULT_SEND_SIZE: Final = 65536

#: Pushes shorter than this are copied into one growing ``bytearray`` at the tail of the send
#: queue instead of queued one by one: a burst of small replies then costs one queue item
#: and one slice, not a Python step per reply.  Longer ones are queued without a copy.
_COALESCE: Final = 8192


def _bytes_like(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes-like, not {type(value).__name__}: {value!r:.60}")


def _check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(
            f"max_frame_size must be an int >= 0 or None, not {type(limit).__name__}: {limit!r:.60}"
        )
    if limit < 0:
        raise ValueError(f"max_frame_size must be >= 0 or None, not {limit}")
    return limit


def _held_back(buf: bytearray, term: bytes) -> int:
    """Length of the longest suffix of *buf* that is a proper prefix of *term*."""
    for n in range(min(len(term) - 1, len(buf)), 0, -1):
        if buf.endswith(term[:n]):
            return n
    return 0


def _take(buf: bytearray, size: int, end: int) -> bytes:
    """Return ``buf[:size]`` as bytes and delete ``buf[:end]``, copying once."""
    if end == len(buf) and size == end:
        data = bytes(buf)
        buf.clear()
        return data
    if size > 1024:  # a view avoids the intermediate bytearray copy of buf[:size]
        with memoryview(buf) as view:
            data = view[:size].tobytes()
    else:
        data = bytes(buf[:size])
    del buf[:end]
    return data


@final
class Channel:
    """A sans-I/O framing channel: bytes in, frames out; pushes in, chunks out.

    The receive side cuts the incoming stream into frames by a *terminator* (see
    `set_terminator`); the send side is a FIFO of bytes and producers pulled by
    `data_to_send`.  A channel does no I/O: a driver (or a test) feeds it with `receive`
    and `receive_eof` and writes out what `data_to_send` returns.  Same input, same output.

    Args:
        terminator: the initial terminator (see `set_terminator`); ``None`` by default.
        max_frame_size: the largest frame, in bytes excluding the terminator, that the
            channel accepts; ``None`` (the default) for no limit, because the core cannot
            know what a protocol allows.  Servers facing untrusted peers should set it (the
            example servers use 64 KiB).  A frame that grows past it raises `FrameTooLarge`.
    """

    __slots__ = (
        "_batch",
        "_batch_cut",
        "_batch_events",
        "_batch_term",
        "_batch_tf",
        "_buf",
        "_closing",
        "_count",
        "_default_limit",
        "_eof",
        "_eos_sent",
        "_fast",
        "_frame_len",
        "_limit",
        "_maxlen",
        "_owed",
        "_queue",
        "_queued_bytes",
        "_reader",
        "_regex",
        "_remaining",
        "_scan_from",
        "_tail",
        "_term",
        "_tf",
        "_tfs",
        "_wants_close",
    )

    def __init__(
        self, terminator: TerminatorLike = None, *, max_frame_size: int | None = None
    ) -> None:
        self._default_limit = _check_limit(max_frame_size)
        self._buf = bytearray()
        self._batch: Iterator[Any] | None = None
        self._batch_events = False  # _batch yields Data, TerminatorFound, ... (else frames)
        self._batch_cut = (0, 0)  # frames in the batch when cut, and _frame_len before it
        self._batch_term = b""
        self._batch_tf = TerminatorFound(b"")
        self._owed: TerminatorFound | None = None
        self._reader: Generator[Any, None, None] | None = None
        self._fast: bytes | None = None
        self._frame_len = 0
        self._eof = False
        self._eos_sent = False
        self._queue: deque[_QueueItem] = deque()
        self._queued_bytes = 0
        self._tail: bytearray | None = None
        self._closing = False
        self._wants_close = False
        self._term: Terminator = None
        self._limit = self._default_limit
        self._tf = self._batch_tf
        self._tfs: dict[bytes, TerminatorFound] = {}
        self._regex: re.Pattern[bytes] | None = None
        self._maxlen = 0
        self._count = 0
        self._remaining = 0
        self._scan_from = 0
        self.set_terminator(terminator)

    def __repr__(self) -> str:
        return (
            f"<Channel terminator={self._term!r} max_frame_size={self._limit!r} "
            f"buffered_input={self.buffered_input} buffered_output={self._queued_bytes}>"
        )

    # ------------------------------------------------------------------ terminator

    def set_terminator(
        self,
        terminator: TerminatorLike,
        *,
        max_frame_size: int | _Default | None = _CHANNEL_LIMIT,
    ) -> None:
        """Set how the next frame ends; applies to the next byte not yet examined.

        Args:
            terminator: one of

                * non-empty bytes-like: the frame ends where these bytes occur; they stay
                  in force frame after frame (lines).
                * ``int >= 0``: the frame is that many bytes.  One-shot, as in asynchat:
                  once the count is reached the terminator becomes ``None`` unless it is set
                  again.  ``0`` ends one empty frame at once (``Content-Length: 0``).
                * tuple of non-empty bytes-like: the earliest match ends the frame; where two
                  match at the same position the longer wins, so ``(b"\\r", b"\\r\\n")``
                  waits for the byte after ``\\r``.  `TerminatorFound` says which matched.
                * ``None``: every byte is frame data and no frame ever ends.

            max_frame_size: a limit for frames under this terminator only, until the next
                ``set_terminator``; by default the channel's ``max_frame_size``.

        Setting the terminator that is already in force, with the same limit, changes
        nothing (a handler may do it on every frame at no cost).  A terminator set between a
        `Data` event and the `TerminatorFound` that closes that frame applies after it: the
        match was already made.

        Raises:
            TypeError: for a ``str`` (encode it), a ``bool``, a list, or anything else not
                listed above, naming the value.
            ValueError: for a negative int, empty bytes, an empty tuple or a tuple holding
                an empty element.
        """
        term = self._validate(terminator)
        limit = (
            self._default_limit
            if max_frame_size is _CHANNEL_LIMIT
            else _check_limit(max_frame_size)
        )
        if type(term) is not int and term == self._term and limit == self._limit:
            return
        if self._batch is not None:
            self._unbatch()
        self._term = term
        self._limit = limit
        self._scan_from = 0
        if isinstance(term, bytes):
            self._tf = TerminatorFound(term)
        elif isinstance(term, int):
            self._count = self._remaining = term
        elif isinstance(term, tuple):
            self._tfs = {alt: TerminatorFound(alt) for alt in term}
            self._maxlen = max(map(len, term))
            by_length = sorted(term, key=len, reverse=True)  # longest wins at one position
            self._regex = re.compile(b"|".join(map(re.escape, by_length)))
        self._refresh_fast()

    @staticmethod
    def _validate(terminator: object) -> Terminator:
        if terminator is None:
            return None
        if isinstance(terminator, bool):
            raise TypeError(f"terminator must not be a bool: {terminator!r}")
        if isinstance(terminator, int):
            if terminator < 0:
                raise ValueError(f"an int terminator must be >= 0, not {terminator}")
            return terminator
        if isinstance(terminator, str):
            raise TypeError(
                f"terminator must be bytes, not str: {terminator!r:.60} "
                f"(use {terminator.encode('utf-8', 'backslashreplace')!r:.60})"
            )
        if isinstance(terminator, tuple):
            if not terminator:
                raise ValueError("a tuple terminator needs at least one alternative")
            alts = []
            for alt in terminator:
                if isinstance(alt, str):
                    raise TypeError(
                        f"tuple terminator alternatives must be bytes, not str: {alt!r:.60}"
                    )
                value = _bytes_like(alt, "every alternative of a tuple terminator")
                if not value:
                    raise ValueError(f"empty bytes in tuple terminator {terminator!r:.60}")
                if value not in alts:
                    alts.append(value)
            return tuple(alts)
        if isinstance(terminator, (bytes, bytearray, memoryview)):
            value = bytes(terminator)
            if not value:
                raise ValueError(
                    "terminator must not be empty bytes (use None to collect every byte)"
                )
            return value
        raise TypeError(
            "terminator must be non-empty bytes, an int >= 0, a tuple of non-empty bytes or "
            f"None, not {type(terminator).__name__}: {terminator!r:.60}"
        )

    def get_terminator(self) -> Terminator:
        """Return the terminator in force; for an int terminator, the bytes still wanted.

        After an int terminator's frame has ended this is ``None``, unless another was set.
        """
        if type(self._term) is int:
            return self._remaining
        return self._term

    @property
    def max_frame_size(self) -> int | None:
        """The frame size limit in force now (per terminator, else the channel's)."""
        return self._limit

    @property
    def buffered_input(self) -> int:
        """Bytes received but not yet delivered as `Data` or a frame (terminators included).

        Between a `Data` event and the `TerminatorFound` that ends its frame, the matched
        terminator's bytes are counted neither here nor as delivered.
        """
        pending = len(self._buf)
        if self._batch is not None:
            rest = list(self._batch)
            self._batch = iter(rest)  # a loop paused on the old iterator moves to this one
            frames, _ = self._frames_of(rest)
            pending += sum(map(len, frames)) + len(frames) * len(self._batch_term)
        return pending

    def _frames_of(self, rest: list[Any]) -> tuple[list[bytes], TerminatorFound | None]:
        """The frames left in a batch, and the `TerminatorFound` already owed if an events
        batch stopped between a frame's `Data` and its end."""
        if not self._batch_events:
            return rest, None
        odd = len(rest) % 2
        return [event.data for event in rest[odd::2]], rest[0] if odd else None

    def take_unframed(self) -> bytes:
        """Remove and return every byte received but not yet delivered, in stream order.

        Meant for a frame boundary: after the `TerminatorFound` (or frame) that ends a
        ``STARTTLS`` command, the bytes that follow belong to the TLS layer, not to this
        channel.  Called mid-frame, it returns the rest of the frame received so far, and
        the frame goes on with the next bytes received.
        """
        if self._batch is not None:
            self._unbatch()
            self._refresh_fast()
        taken = bytes(self._buf)
        self._buf.clear()
        self._scan_from = 0
        return taken

    # ------------------------------------------------------------------ receive

    def receive(self, data: bytes | bytearray | memoryview) -> Iterator[Event]:
        """Add received bytes; return a lazy iterator of the `Data` and `TerminatorFound` events.

        The bytes are taken at once; the events are decided one by one as the iterator is
        advanced, under the terminator in force at each step, so a terminator set while
        iterating applies to the very next unread byte.  An iterator left unfinished loses
        nothing: the next call of `receive`, `frames` or `receive_eof` ends it (it yields
        nothing more) and goes on where it stopped.  ``receive(b"")`` just resumes (useful
        after ``set_terminator(0)`` outside a loop).

        Raises:
            TypeError: if *data* is not bytes-like.
            ValueError: if called after `receive_eof`.
            FrameTooLarge: (from the iterator) when a frame grows past ``max_frame_size``.
        """
        self._feed(data)
        self._fast = None
        reader = self._reader = self._events(False)
        if self._cut_early(True) and self._batch_events:
            assert self._batch is not None
            return chain(self._batch, reader)
        return reader

    def frames(self, data: bytes | bytearray | memoryview = b"") -> Iterator[bytes]:
        """Add received bytes; return a lazy iterator of whole frames, terminators excluded.

        The fast path for whole-frame protocols: a partial frame stays in the channel
        (bounded by ``max_frame_size``) until its terminator arrives.  May be mixed with
        `receive` on one channel; for a frame that `receive` has already delivered part of
        as `Data`, this yields only the rest (``b""`` if nothing is left), so nothing is
        lost or duplicated.  Bytes still held at end of stream come out of `receive_eof`.
        Set the terminator before the call or from inside its loop: when no frame can end in
        the bytes held, the call returns an empty iterator at once, and a terminator set
        between the call and its loop applies from the next call on.  As with `receive`, a
        new call ends the iterator of an earlier one.

        Raises:
            TypeError: if *data* is not bytes-like.
            ValueError: if called after `receive_eof`.
            FrameTooLarge: (from the iterator) when a frame grows past ``max_frame_size``.
        """
        term = self._fast
        if term is not None and type(data) is bytes:
            # The hot path: few lookups, and no generator for a chunk that ends no frame.
            buf = self._buf
            buf += data
            index = buf.find(term, self._scan_from)
            if index < 0:
                decided = len(buf) - (_held_back(buf, term) if len(term) > 1 else 0)
                limit = self._limit
                if limit is None or self._frame_len + decided <= limit:
                    self._scan_from = decided
                    return _NOTHING
            self._fast = None
            end = index + len(term)
            if index >= 0 and buf.find(term, end) < 0:
                limit = self._limit
                if limit is None or max(self._frame_len + index, len(buf) - end) <= limit:
                    # One frame, and the rest cannot end another: a one-frame batch, and a
                    # reader that only looks again if the terminator changes meanwhile.
                    batch: Iterator[bytes] = iter((_take(buf, index, end),))
                    self._batch = batch
                    self._batch_term, self._batch_tf, self._batch_events = term, self._tf, False
                    self._batch_cut = (1, self._frame_len)
                    self._scan_from = max(0, len(buf) - len(term) + 1)
                    self._frame_len = 0
                    reader = self._reader = self._frames(settled=(term, limit, batch))
                    return chain(batch, reader)
            reader = self._reader = self._frames()
            if index >= 0 and self._cut_batch(term, False):
                assert self._batch is not None
                return chain(self._batch, reader)
            return reader
        self._feed(data)
        if self._no_frame_can_end():
            return _NOTHING
        self._fast = None
        reader = self._reader = self._frames()
        if self._cut_early(False):
            assert self._batch is not None
            return chain(self._batch, reader)
        return reader

    def _cut_early(self, events: bool) -> bool:
        """Cut a batch now if the bytes held end two frames or more; True if one was cut.

        The caller then returns ``chain(batch, reader)``: the batch is iterated at C speed,
        with no generator step per item, and the reader takes over for the rest.  Cutting
        now decides nothing early: a terminator set before or during the loop puts the
        rest of the batch back (`set_terminator` -> `_unbatch`), which ends the batch's
        part of the chain, and the reader frames those bytes anew.
        """
        term = self._term
        if type(term) is not bytes or self._batch is not None or self._owed is not None:
            return False
        buf = self._buf
        index = buf.find(term, self._scan_from)
        if index < 0 or buf.find(term, index + len(term)) < 0:
            return False
        return self._cut_batch(term, events)

    def _no_frame_can_end(self) -> bool:
        """True if no frame can end in the bytes held (and no limit is crossed)."""
        if self._batch is not None or self._owed is not None:
            return False
        buf = self._buf
        term = self._term
        limit = self._limit
        if type(term) is bytes:
            if buf.find(term, self._scan_from) >= 0:
                return False
            decided = len(buf) - (_held_back(buf, term) if len(term) > 1 else 0)
            if limit is not None and self._frame_len + decided > limit:
                return False
            self._scan_from = decided
            return True
        if term is None or (type(term) is int and len(buf) < self._remaining):
            return limit is None or self._frame_len + len(buf) <= limit
        if isinstance(term, tuple):
            assert self._regex is not None
            if self._regex.search(buf, self._scan_from) is not None:
                return False  # a frame may end (or wait for one more byte): the reader decides
            decided = len(buf) - max(_held_back(buf, alt) for alt in term)
            if limit is not None and self._frame_len + decided > limit:
                return False
            self._scan_from = decided
            return True
        return False

    def _refresh_fast(self) -> None:
        """Keep `_fast` true to its meaning: the bytes terminator `frames` may search for
        directly, because no reader is alive, no batch or owed event waits, and the stream
        has not ended; otherwise None."""
        term = self._term
        plain = self._reader is None and self._batch is None and self._owed is None
        self._fast = term if type(term) is bytes and plain and not self._eof else None

    def receive_eof(self) -> Iterator[Event]:
        """Tell the channel the peer will send nothing more; return the last events.

        Whatever was held back is decided now: a complete shorter alternative of a tuple
        terminator ends its frame, every other byte is delivered as `Data`; then one
        `EndOfStream` says whether a frame was left incomplete.  Calling it again resumes an
        unfinished iterator; once `EndOfStream` has been yielded it yields nothing.
        """
        self._end_reader()
        self._eof = True
        self._fast = None
        reader = self._reader = self._events(True)
        return reader

    def _end_reader(self) -> None:
        """End the iterator an earlier call returned, so that only one reads at a time."""
        reader = self._reader
        if reader is not None:
            self._reader = None
            reader.close()
            if self._batch is not None:
                # The loop may be iterating the batch itself (see `_cut_early`): hand the
                # rest to a new iterator and leave the old one drained, so that loop ends.
                self._batch = iter(list(self._batch))
            self._refresh_fast()

    def _feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._reader is not None:
            self._end_reader()
        if self._eof:
            raise ValueError("cannot receive data after receive_eof()")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"received data must be bytes-like, not {type(data).__name__}: {data!r:.60}"
            )
        self._buf += data

    def _events(self, final: bool) -> Generator[Event, None, None]:
        if final and self._eos_sent:
            self._reader_done()
            return  # EndOfStream was the last event: nothing follows it
        if self._owed is not None:
            owed, self._owed = self._owed, None
            yield owed
        step = self._step
        while True:
            term, limit = self._term, self._limit
            result = step(True, final)
            if result is None:
                break
            if result is _BATCHED:
                batch = self._batch
                assert batch is not None
                if self._batch_events:
                    yield from batch  # prepared events: no Python step per event
                    if self._batch is batch:
                        self._batch = None
                    if self._owed is not None:  # the batch was put back mid-frame
                        owed, self._owed = self._owed, None
                        yield owed
                    continue
                tf = self._batch_tf
                for frame in batch:
                    if frame:
                        event = _new(Data)
                        _set_data(event, frame)
                        try:
                            yield event
                        except GeneratorExit:  # closed between a frame's Data and its end
                            self._owed = tf
                            raise
                    yield tf
                if self._batch is batch:
                    self._batch = None
                continue
            data, found = result
            event = _new(Data)
            _set_data(event, data)
            if found is None:
                yield event
                if self._term is term and self._limit == limit:
                    break  # only held-back bytes are left: nothing more can be decided
                continue
            if data:
                try:
                    yield event
                except GeneratorExit:
                    self._owed = found
                    raise
            yield found
        if final and not self._eos_sent:
            self._eos_sent = True
            incomplete = self._frame_len > 0 or (type(self._term) is int and self._remaining > 0)
            yield EndOfStream(incomplete)
        self._reader_done()

    def _reader_done(self) -> None:
        """A reader ran to its end.  It is the current one: a new reader closes the old one
        first, and a closed generator does not run to its end."""
        self._reader = None
        self._refresh_fast()

    def _frames(
        self, settled: tuple[bytes, int | None, Iterator[bytes]] | None = None
    ) -> Generator[bytes, None, None]:
        if settled is not None:
            # Made with a one-frame batch whose rest ends no frame: if the terminator, the
            # limit and the batch are unchanged, there is nothing more to decide.
            term_then, limit_then, batch_then = settled
            if self._term is term_then and self._limit == limit_then and self._batch is batch_then:
                self._batch = None
                self._reader_done()
                return
        if self._owed is not None:
            self._owed = None
            yield b""
        step = self._step
        while True:
            result = step(False, False)
            if result is None:
                self._reader_done()
                return
            if result is _BATCHED:
                if self._batch_events:
                    assert self._batch is not None
                    frames, owed = self._frames_of(list(self._batch))
                    self._batch, self._batch_events = iter(frames), False
                    if owed is not None:
                        yield b""  # the rest of a frame already delivered as Data
                        continue  # the loop may have changed the terminator meanwhile
                batch = self._batch
                assert batch is not None
                yield from batch
                if self._batch is batch:
                    self._batch = None
                continue
            yield result[0]

    def _unbatch(self) -> None:
        """Put the frames of an unfinished batch back in front of the buffer."""
        assert self._batch is not None
        # Draining the iterator ends any loop over it.
        rest, owed = self._frames_of(list(self._batch))
        self._batch = None
        if owed is not None:
            self._owed = owed  # its frame's Data is out: the match is made
        count, open_frame = self._batch_cut
        if owed is None and len(rest) == count:
            # Nothing of the batch went out: its first frame is again the open frame, with
            # whatever of it was delivered before the cut.
            self._frame_len = open_frame
        if rest:
            term = self._batch_term
            self._buf[:0] = term.join(rest) + term
            self._scan_from = 0

    def _too_large(self, size: int) -> FrameTooLarge:
        assert self._limit is not None
        return FrameTooLarge(self._limit, size, self.buffered_input)

    def _step(self, partial: bool, final: bool) -> _Step:
        """Decide the next piece of the stream under the terminator in force.

        Returns ``(frame, TerminatorFound)`` for the rest of a complete frame, ``(piece,
        None)`` for decided bytes of an unfinished frame (only if *partial*), `_BATCHED`
        when complete frames were cut into ``self._batch``, or ``None`` when more bytes are
        needed.  With *final*, nothing is held back: no more bytes will come.
        """
        if self._batch is not None:
            return _BATCHED
        buf = self._buf
        term = self._term
        limit = self._limit
        if type(term) is bytes:
            index = buf.find(term, self._scan_from)
            if index >= 0:
                if limit is not None and self._frame_len + index > limit:
                    raise self._too_large(self._frame_len + index)
                end = index + len(term)
                if buf.find(term, end) >= 0:
                    if self._cut_batch(term, partial):
                        return _BATCHED
                    scanned = 0
                else:  # no terminator starts in buf[end:], so later searches skip it
                    scanned = max(0, len(buf) - end - len(term) + 1)
                frame = _take(buf, index, end)
                self._scan_from = scanned
                self._frame_len = 0
                return frame, self._tf
            held = 0 if final or len(term) == 1 else _held_back(buf, term)
            return self._undecided(partial, len(buf) - held)
        if term is None:
            return self._undecided(partial, len(buf))
        if type(term) is int:
            wanted = self._remaining
            if len(buf) >= wanted:
                size = self._frame_len + wanted
                if limit is not None and size > limit:
                    raise self._too_large(size)
                frame = _take(buf, wanted, wanted)
                self._term = None
                self._remaining = 0
                self._frame_len = 0
                return frame, TerminatorFound(self._count)
            result = self._undecided(partial, len(buf))
            if result is not None:
                self._remaining -= len(result[0])
            return result
        assert self._regex is not None
        match = self._regex.search(buf, self._scan_from)
        size = len(buf)
        held = 0
        if not final and (match is None or match.start() > size - self._maxlen):
            held = max(_held_back(buf, alt) for alt in self._tfs)
        if match is not None and match.start() < size - held:
            start = match.start()
            if limit is not None and self._frame_len + start > limit:
                raise self._too_large(self._frame_len + start)
            found = self._tfs[match.group()]  # before the del: the match reads buf lazily
            frame = _take(buf, start, match.end())
            self._scan_from = 0
            self._frame_len = 0
            return frame, found
        return self._undecided(partial, size - held)

    def _undecided(self, partial: bool, decided: int) -> tuple[bytes, None] | None:
        """Handle *decided* bytes of a frame whose end is not in the buffer yet."""
        size = self._frame_len + decided
        limit = self._limit
        if limit is not None and size > limit:
            raise self._too_large(size)
        if partial and decided:
            piece = _take(self._buf, decided, decided)
            self._frame_len = size
            self._scan_from = 0
            return piece, None
        self._scan_from = decided
        return None

    def _cut_batch(self, term: bytes, events: bool) -> bool:
        """Split every complete frame in the buffer at once; False if one is too large.

        For the event API (*events*) the batch is the events themselves, made with C-level
        loops (one `Data` object per frame, the cached `TerminatorFound` between them), so
        that iterating it runs no Python code; frames with no bytes need no `Data`, and
        take the frame-by-frame way instead.
        """
        buf = self._buf
        parts = bytes(buf).split(term)
        rest = parts.pop()
        consumed = len(buf) - len(rest)
        limit = self._limit
        if limit is not None and (
            self._frame_len + len(parts[0]) > limit
            or (consumed > limit and max(map(len, parts)) > limit)
        ):
            # Batch the frames before the first one too large; the frame-by-frame path
            # then raises at exactly that frame.
            if self._frame_len + len(parts[0]) > limit:
                return False
            first = next(i for i, part in enumerate(parts) if len(part) > limit)
            del parts[first:]
            consumed = sum(map(len, parts)) + first * len(term)
        del buf[:consumed]
        self._scan_from = 0
        self._batch_cut = (len(parts), self._frame_len)
        self._frame_len = 0
        self._batch_term = term
        self._batch_tf = self._tf
        if events and b"" not in parts:
            datas = list(map(_new, repeat(Data, len(parts))))
            deque(map(_set_data, datas, parts), maxlen=0)
            flat: list[Event] = [self._tf] * (2 * len(datas))
            flat[::2] = datas
            self._batch = iter(flat)
            self._batch_events = True
        else:
            self._batch = iter(parts)
            self._batch_events = False
        return True

    # ------------------------------------------------------------------ send

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes to send, after everything queued before.

        ``bytes`` and read-only memoryviews are queued without copying (and sent as
        memoryview slices when large); mutable buffers are copied, so changing them after
        the call changes nothing.  Empty data is ignored.

        Raises:
            TypeError: if *data* is not bytes-like (``str``, ``int``, ...).
            ValueError: after `close_when_done`.
        """
        if type(data) is not bytes:
            data = _checked_push(data)
        if self._closing:
            raise ValueError("push() after close_when_done(): the data would never be sent")
        size = len(data)
        tail = self._tail
        if tail is not None and size < _COALESCE:  # the hot path: one more small reply
            tail += data
            self._queued_bytes += size
        else:
            self._append_bytes(data)

    def _append_bytes(self, data: bytes | memoryview) -> None:
        size = len(data)
        queue = self._queue
        if size >= _COALESCE:
            queue.append(data)
            self._tail = None
        elif self._tail is not None:
            self._tail += data
        elif size:
            # A lone small push is queued as it is; the second one starts the tail, so a
            # push-then-send-per-message pattern never pays for a bytearray.
            last = queue[-1] if queue else None
            if type(last) is bytes and len(last) < _COALESCE:
                tail = self._tail = bytearray(last)
                tail += data
                queue[-1] = tail
            else:
                queue.append(data)
        self._queued_bytes += size

    def push_with_producer(self, producer: Producer | bytes | object) -> None:
        """Queue a producer, pulled by `data_to_send` only when its bytes are wanted.

        Accepts an object with ``more() -> bytes`` (``b""`` = exhausted), a bytes-like value
        (queued as by `push`), or any iterable of bytes-like chunks (a list, a generator).

        Raises:
            TypeError: for anything else, naming it; `data_to_send` raises `TypeError`
                naming the producer if ``more()`` returns something that is not bytes.
            ValueError: after `close_when_done`.
        """
        item = as_producer(producer)
        if self._closing:
            raise ValueError("push_with_producer() after close_when_done(): it would never be sent")
        if isinstance(item, (bytes, memoryview)):
            self._append_bytes(item)
        else:
            self._queue.append(item)
            self._tail = None

    def close_when_done(self) -> None:
        """Ask for the connection to close once everything queued so far has been sent.

        When `data_to_send` reaches this point it returns ``b""`` and `wants_close` becomes
        true.  Nothing may be pushed after it.  Calling it twice is harmless.
        """
        if not self._closing:
            self._closing = True
            self._queue.append(_CLOSE)
            self._tail = None

    def interrupt(self) -> None:
        """End the iterator of the latest `receive` or `frames` call from inside its loop.

        The loop ends after the current item; nothing is lost: what it would have yielded
        stays in the channel for the next call.  `Chat` uses it so that no callback runs
        after the one that closed the connection.
        """
        self._end_reader()

    @property
    def closing(self) -> bool:
        """True once `close_when_done` has been called (until `discard_buffers`)."""
        return self._closing

    def discard_buffers(self) -> None:
        """Drop all received bytes not yet delivered and everything queued to send.

        For emergencies, as in asynchat: the close request, if any, is dropped too.  Called
        from inside a loop, that loop ends: the frames it has not reached are dropped too.
        """
        self._end_reader()
        self._buf.clear()
        if self._batch is not None:
            for _ in self._batch:  # drained in place: a running loop over it ends too
                pass
        self._batch = None
        self._owed = None
        self._scan_from = 0
        self._frame_len = 0
        self._refresh_fast()
        self._queue.clear()
        self._tail = None
        self._queued_bytes = 0
        self._closing = False
        self._wants_close = False

    def data_to_send(self, max_bytes: int = DEFAULT_SEND_SIZE) -> bytes | memoryview:
        """Return the next chunk to write, at most *max_bytes* long; ``b""`` if none.

        Queued items are taken in order and small ones are joined into one chunk.  A
        producer's ``more()`` is called only while bytes are still wanted, and what it
        returns beyond *max_bytes* stays queued.  A large item comes back as a
        ``memoryview`` slice, not a copy.  If a write sends only part of the chunk, give the
        rest back with `unsend`.  When the point of `close_when_done` is reached, returns
        ``b""`` and `wants_close` becomes true.

        Raises:
            ValueError: if *max_bytes* is less than 1.
            TypeError: naming the producer, if a producer's ``more()`` returns non-bytes.
        """
        queue = self._queue
        if not queue:
            return b""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, not {max_bytes}")
        out: list[bytes | bytearray | memoryview] = []
        size = 0
        while queue:
            item = queue[0]
            if isinstance(item, (bytes, memoryview, bytearray)):
                if item is self._tail:
                    self._tail = None  # handed out: later pushes start a new tail
                room = max_bytes - size
                length = len(item)
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
                chunk: bytes | memoryview = item.more()
                if type(chunk) is not bytes:
                    chunk = checked_chunk(item, chunk)
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
        `data_to_send` returns.  ``chunk[sent:]`` is the usual argument.
        """
        if type(data) is not bytes:
            data = _checked_push(data)
        if data:
            self._queue.appendleft(data)
            self._queued_bytes += len(data)

    @property
    def wants_write(self) -> bool:
        """True while `data_to_send` may return bytes or reach the close point."""
        return bool(self._queue) and not self._wants_close

    @property
    def wants_close(self) -> bool:
        """True once everything queued before `close_when_done` has been handed out."""
        return self._wants_close

    @property
    def buffered_output(self) -> int:
        """Bytes queued to send and not yet handed out (producers' bytes not counted)."""
        return self._queued_bytes


def _checked_push(data: object) -> bytes | memoryview:
    """Return *data* as a queue item: read-only views kept, mutable buffers copied."""
    if isinstance(data, memoryview):
        return data.cast("B") if data.readonly else bytes(data)
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        raise TypeError(f"push() takes bytes, not str: {data!r:.60} (encode it first)")
    raise TypeError(f"push() takes bytes-like data, not {type(data).__name__}: {data!r:.60}")
