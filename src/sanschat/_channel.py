"""`Channel`: terminator framing in, producer queue out, and no I/O at all.

Theory of operation
-------------------
Receive side.  Every received byte goes into one ``bytearray`` (``_buf``) that starts at the
first byte not yet decided; one reader (`sanschat._readers`) per terminator kind decides
what the next piece of it is, and `set_terminator` swaps the reader.  The framing rules
live in the readers; this class only dispatches.

Each `receive` or `frames` call decides *eagerly* everything its reader can decide and
hands the result out through a plain list iterator (the *outbox*), so that iterating it
runs no Python code per item.  Decisions are undone when they could change: the outbox
remembers, per step, the reader (and its count) and the open frame's size before that step
(a *mark*).  Whatever changes the framing (`set_terminator`, a new call, `interrupt`,
`take_unframed`, `discard_buffers`) first *takes back* the items the consumer has not
reached yet: their bytes go back in front of ``_buf`` and the reader is put back as it was
at the consumer's position.  So, as seen from outside, each piece is decided under the
terminator in force when the consumer reaches it, as a lazy iterator would, and:

* a byte is delivered once, as frame data; terminator bytes are never data;
* a suffix that could still start a terminator is held back (by the reader), and nothing
  else; at end of stream it is decided (`receive_eof`), never dropped;
* a terminator set inside a loop re-decides the rest at once and appends it to the same
  outbox, so the running loop goes on with it;
* an abandoned loop loses nothing: the next call takes back what it did not reach;
* a `TerminatorFound` whose frame's `Data` was reached is *owed*: the match was made, so it
  is never taken back, only carried to the next call (``_owed``).

The outbox is handed out through C-level iterators only: a plain list iterator for frames,
``filter(None, ...)`` for events (events are true).  A frame over the limit stops the
decisions before it with an `_Overflow` item, which raises `FrameTooLarge` when the wrapper
touches it (frames get the ``map(frame[:])`` wrapper only when their call found such a frame).

A batch's events are made at C speed (`_events_of`).  In pure Python every `Data` is an
object the garbage collector tracks, and a read of thousands of frames would make thousands
at once: collections that promote them all, then full ones that cost as much as the whole
heap.  So past its first `_CHUNK` frames a batch goes in the outbox as the frames themselves
where their `Data` go (as compiled), with a `_Pending` in front of every `_CHUNK` of them:
``filter`` calls its ``__bool__`` when the consumer gets there, which makes those `Data` in
place, lets go of the events before it, and is skipped.  Nothing moves, and a frame reads
as its `Data` for every rule above.  When the consumer kept none of the `Data` it let go
(the usual loop), they are refilled with the next chunk's frames rather than made anew
(`_reusable`): no object is made or tracked for most frames of a long read.  The compiled
build makes each `Data` as it is reached instead (`_LAZY_DATA`): through
``map(_as_event, ...)``, or for a large outbox a native `_LazyEvents`, which behaves as that
list iterator and saves a call per event.

Hot paths.  Most reads under a bytes terminator either end no frame, or end exactly one at
their last byte (request/response traffic).  While ``_hot`` holds the bytes reader (no frame
end owed, the stream not ended) and the earlier loop has reached its end, `frames` and
`receive` decide those reads with a few C calls (``bytes.partition``, one ``find``; compiled,
`frames` cuts a one-frame read with operations native there instead) and an outbox whose
single mark stays implicit (`_mark_list` makes it when it is needed).  Every other read
takes `_serve`, the reference the property tests compare the hot paths with.

Send side: `sanschat._send.SendQueue`, which `Channel` extends.

This module must never import anything that does I/O, read a clock, start a thread or log.
"""

from __future__ import annotations

import enum
import sys
import sysconfig
from collections import deque
from collections.abc import Callable, Iterator
from itertools import repeat
from operator import itemgetter
from typing import Any, Final, TypeAlias, final, overload

from ._errors import FrameTooLarge
from ._events import (
    COMPILED,
    Data,
    EndOfStream,
    Event,
    TerminatorFound,
    _new,
    _set_data,
    make_data,
    make_datas,
)
from ._readers import (
    _NONE_READERS,
    BytesReader,
    CountReader,
    NoneReader,
    Reader,
    Terminator,
    TooLarge,
    held_back,
    none_reader,
    reader_for,
    take,
)
from ._send import DEFAULT_SEND_SIZE, SendQueue

__all__ = ["DEFAULT_SEND_SIZE", "Channel", "Terminator", "TerminatorLike"]

#: What `Channel.set_terminator` accepts: bytes-like values are stored as `bytes`.
TerminatorLike: TypeAlias = (
    "bytes | bytearray | memoryview | int | tuple[bytes | bytearray | memoryview, ...] | None"
)


class _Default(enum.Enum):
    CHANNEL_LIMIT = "the channel's max_frame_size"

    def __repr__(self) -> str:
        return "<the channel's max_frame_size>"


_CHANNEL_LIMIT: Final = _Default.CHANNEL_LIMIT

#: One step of decisions in the outbox: where its items start, the reader and its count
#: before the step, the open frame's size before it, the `TerminatorFound` that follows each
#: frame of the step (frames mode; None for a partial piece), and whether its one item is an
#: owed frame end carried over from an earlier call.
_Mark: TypeAlias = "tuple[int, Reader, int, int, TerminatorFound | None, bool]"

_NOTHING: Final[Iterator[Any]] = iter(())  # what frames() returns when no frame can end

#: ``bytes.partition`` called as a function skips the method lookup of ``data.partition(...)``
#: (compiled, a generic method call by name): the hot paths of `frames` and `receive` use it.
_partition: Final = bytes.partition


#: `Channel._marks` of a one-step events outbox whose mark is implicit (see `_mark_list`).
_EVENTS_STEP: Final[list[_Mark]] = []

#: Applied to each frame of a guarded outbox: ``frame[:]`` is the frame itself, at C speed.
_SAME: Final = itemgetter(slice(None))


class _Overflow:
    """The outbox item where a frame too large stopped the decisions: it raises
    `FrameTooLarge` when the C-level wrapper of a guarded outbox touches it."""

    __slots__ = ("_channel", "_limit", "_out", "_size")

    def __init__(self, channel: Channel, out: list[Any], limit: int, size: int) -> None:
        self._channel = channel
        self._out = out
        self._limit = limit
        self._size = size

    def __bool__(self) -> bool:
        raise self._error()

    def __getitem__(self, key: object) -> bytes:
        raise self._error()

    def _error(self) -> FrameTooLarge:
        channel = self._channel
        error = FrameTooLarge(self._limit, self._size, channel.buffered_input)
        if channel._out is self._out:
            channel._out = None  # the loop ends with the error: nothing is appended to it
        return error


#: The most frames of a batch whose `Data` a pure-Python events outbox makes at once (see
#: `_Pending`): well under the garbage collector's first threshold (700 new tracked objects).
#: (Not Final: the tests shrink it.)
_CHUNK = 256


class _Pending:
    """An events outbox item in front of frames of a batch whose `Data` are not made yet.

    Pure Python only (see `_LAZY_DATA`).  Past the first `_CHUNK` frames of a batch, the
    outbox holds each frame itself where its `Data` goes (as the compiled build does), with
    a `_Pending` in front of every `_CHUNK` of them (`_put_chunked`).  The ``filter(None,
    ...)`` that hands the outbox out calls its ``__bool__`` when the consumer reaches it: it
    makes the `Data` of its frames in place, at C speed, drops the events before it (the
    consumer has gone past them, and the take-back rules never look there), and answers
    False, so the consumer never sees it.  Items never move: taking it back is taking back
    the frames behind it (`_raw` reads a frame as its `Data`); once reached it is inert, and
    no longer refers to the outbox (which then is freed as soon as it is dropped, not by a
    collection).  (A `_Stepper` never meets one: it decides one step at a time.)
    """

    __slots__ = ("_at", "_end", "_lo", "_made", "_out", "_uniform")

    def __init__(self, out: list[Any], lo: int, at: int, end: int, uniform: bool) -> None:
        self._out: list[Any] | None = out
        self._lo = lo  # out[lo:at]: the events of the frames before it
        self._at = at  # its index in *out*; out[at + 1 : end]: its frames and their ends
        self._end = end
        self._uniform = uniform  # no empty frame: frame, end, frame, end...
        self._made: list[Data] | None = None  # the Data it made (uniform), for the next one

    def __bool__(self) -> bool:
        out = self._out
        if out is None:
            return False  # reached before: inert
        self._out = None
        at = self._at
        lo = self._lo
        assert out[at] is self
        before = out[lo]  # the _Pending in front of the events before it, if any
        out[lo:at] = repeat(None, at - lo)  # the Data the consumer let go are freed
        end = self._end
        if self._uniform:
            frames = out[at + 1 : end : 2]
            datas = _reusable(before._made, len(frames)) if type(before) is _Pending else None
            if datas is None:
                datas = make_datas(frames)
            else:
                deque(map(_set_data, datas, frames), maxlen=0)
            self._made = out[at + 1 : end : 2] = datas
        else:
            out[at + 1 : end] = [
                make_data(item) if type(item) is bytes else item for item in out[at + 1 : end]
            ]
        return False


#: Whether `_reusable` may trust ``sys.getrefcount``: CPython with its GIL, 3.13 at most
#: (3.14 may hold references it does not count, "borrowed" on its stack; the free-threaded
#: build splits the count between threads).
_REFCOUNTS_EXACT: Final = (
    sys.implementation.name == "cpython"
    and sys.version_info < (3, 14)
    and not sysconfig.get_config_var("Py_GIL_DISABLED")
)


def _reusable(made: list[Data] | None, count: int) -> list[Data] | None:
    """The first *count* `Data` of *made* to refill, if nothing but *made* refers to them.

    The `Data` of the chunk before a `_Pending` are let go when the consumer reaches it.
    When the consumer kept none of them (the usual loop), refilling them with the next
    chunk's frames (the slot set anew, as `make_data` does) saves making as many objects,
    most of their cost in pure Python: the garbage collector tracks each new one.  Nobody
    can see the change: an object only *made* refers to is unreachable but through it.
    (CPython's own ``zip`` and ``enumerate`` refill their result tuple on the same rule.)
    """
    if made is None or not _REFCOUNTS_EXACT or len(made) < count:
        return None
    # Each one is referred to by *made* and by getrefcount's argument, and by nothing else.
    if list(map(sys.getrefcount, made)).count(2) != len(made):
        return None
    return made if len(made) == count else made[:count]


def _put_chunked(out: list[Any], frames: list[bytes], found: TerminatorFound) -> None:
    """Append the events of a batch of more than `_CHUNK` frames to the events outbox *out*
    (pure Python): those of the first `_CHUNK` frames, then the others behind `_Pending`s."""
    lo = len(out)
    out += _events_of(frames[:_CHUNK], found)
    for start in range(_CHUNK, len(frames), _CHUNK):
        part = frames[start : start + _CHUNK]
        at = len(out)
        out.append(None)  # (its place)
        out += _events_of(part, found, lazy=True)
        out[at] = _Pending(out, lo, at, len(out), len(out) - at - 1 == 2 * len(part))
        lo = at


def _exhausted(iterator: Iterator[Any]) -> bool:
    """True if a list iterator has run to its end (it then ignores later appends).

    A list iterator drops its list once it is exhausted, which its ``__reduce__`` shows; at
    its last item but not yet past it, it still sees appends.
    """
    if type(iterator) is _Stepper:  # done, or retired (a new call, interrupt...)
        return iterator.done or iterator._channel._out is not iterator._out
    if type(iterator) is _LazyEvents:
        return iterator.done
    return len(iterator.__reduce__()) < 3


#: The fewest items of an events outbox that the compiled build hands out through a
#: `_LazyEvents` rather than ``map(_as_event, iter(out))``.
_LAZY_MIN: Final = 32


@final
class _LazyEvents:
    """Compiled build: the iterator of a large events outbox, which makes each frame's
    `Data` as the consumer reaches it (see `_LAZY_DATA`).

    It behaves as the list iterator it replaces (``__length_hint__``; once past the end,
    exhausted for good; before that, it sees items appended), and saves the call of
    `_as_event` per event that a ``map`` costs; but its end is a ``StopIteration`` raised,
    dearer than a list iterator's, so small outboxes keep the ``map``.  Never built in pure
    Python, where a ``__next__`` in Python would cost more than it saves.
    """

    __slots__ = ("_i", "_out", "done")

    def __init__(self, out: list[Any]) -> None:
        self._out = out
        self._i = 0
        self.done = False

    def __iter__(self) -> _LazyEvents:
        return self

    def __next__(self) -> Any:
        out = self._out
        i = self._i
        if self.done or i >= len(out):
            self.done = True
            raise StopIteration
        self._i = i + 1
        item = out[i]
        if type(item) is bytes:
            return Data(item)
        if type(item) is _Overflow:
            bool(item)  # raises FrameTooLarge
        return item

    def __length_hint__(self) -> int:
        return 0 if self.done else max(len(self._out) - self._i, 0)


class _Stepper:
    """The iterator of an outbox decided one reader step at a time, as it is reached.

    `Chat` and the compat layer loop over one after a handler changed the terminator
    inside a loop (`Channel._stepwise`, `_frames_stepwise`, `_events_stepwise`): a
    terminator set while it runs takes back at most the one step decided ahead, and is
    never followed by a decision of all the rest, so a handler that switches the terminator
    on every frame (RESP, memcached, pipelined HTTP) costs work in proportion to its
    frames, not to frames x the bytes left in the read.
    """

    __slots__ = ("_channel", "_events", "_i", "_out", "done")

    def __init__(self, channel: Channel, out: list[Any], events: bool) -> None:
        self._channel = channel
        self._out = out
        self._events = events
        self._i = 0
        self.done = False

    def __iter__(self) -> _Stepper:
        return self

    def __next__(self) -> Any:
        if self._events:
            return self._next_event()
        out = self._out
        i = self._i
        if i >= len(out):
            # Decide one step, handed out at once: nothing decided is ever left unreached,
            # so there is never anything to take back (and no mark is needed).
            channel = self._channel
            if not self.done and channel._out is out:
                reader = channel._reader
                try:
                    result = reader.step(channel._buf, channel._frame_len, False, False)
                except TooLarge:  # (raised before the reader changed anything)
                    channel._cut(True)  # the same step again, which appends an _Overflow
                else:
                    if result is not None:
                        frame = result[0]
                        out.append(frame)
                        channel._frame_len = 0
                        if reader.one_shot:
                            channel._reader = _NONE_READERS.get(reader.limit) or none_reader(
                                reader.limit
                            )
                            channel._hot = None
                        self._i = i + 1
                        return frame
            if i >= len(out):
                self.done = True
                raise StopIteration
        item = out[i]
        self._i = i + 1
        if type(item) is _Overflow:
            self.done = True
            item[:]  # raises FrameTooLarge
        return item

    def _next_event(self) -> Any:
        """Events: one step may be a `Data` and its `TerminatorFound`, which a handler may
        separate by a `set_terminator` (the end then is owed): marks are kept (`_cut`)."""
        out = self._out
        i = self._i
        if i >= len(out):
            channel = self._channel
            if not self.done and channel._out is out:
                channel._cut(True)
            if i >= len(out):
                self.done = True
                raise StopIteration
        item = out[i]
        self._i = i + 1
        if type(item) is _Overflow:
            self.done = True
            bool(item)  # raises FrameTooLarge
        return _as_event(item) if _LAZY_DATA else item

    def __length_hint__(self) -> int:
        return len(self._out) - self._i


#: Compiled, the events of a batch are made one at a time as the consumer reaches them (an
#: outbox item that is a frame stands for its `Data`): building thousands at once costs the
#: garbage collector more than building them (every `Data` is a tracked object).  In pure
#: Python that would be a Python call per event, so there they are made in C loops, a
#: `_CHUNK` of frames at a time (`_Pending`).
_LAZY_DATA: Final = COMPILED


def _events_of(frames: list[bytes], found: TerminatorFound, lazy: bool = _LAZY_DATA) -> list[Any]:
    """The events of a batch of frames: `Data` then *found* for each (no Data if empty).

    With *lazy* (compiled: see `_as_event`; and behind a `_Pending`), a frame stands for
    its `Data`.
    """
    if b"" in frames:
        flat: list[Any] = []
        for frame in frames:
            if frame:
                flat.append(frame if lazy else make_data(frame))
            flat.append(found)
        return flat
    datas: list[Any] = frames if lazy else make_datas(frames)
    flat = [found] * (2 * len(datas))
    flat[::2] = datas
    return flat


def _as_event(item: Any) -> Any:
    """The wrapper of a compiled events outbox: a frame becomes its `Data`."""
    if type(item) is bytes:
        return Data(item)
    if type(item) is _Overflow:
        bool(item)  # raises FrameTooLarge
    return item


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


@final
class Channel(SendQueue):
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
        "_buf",
        "_default_limit",
        "_eof",
        "_eos_sent",
        "_frame_len",
        "_hot",
        "_marks",
        "_on_terminator",
        "_out",
        "_out_events",
        "_out_guarded",
        "_out_it",
        "_owed",
        "_reader",
        "_resume",
        "_spare",
        "_spare_count",
        "_stepwise",
    )

    def __init__(
        self, terminator: TerminatorLike = None, *, max_frame_size: int | None = None
    ) -> None:
        super().__init__()
        self._default_limit = _check_limit(max_frame_size)
        self._buf = bytearray()  # received, not yet decided
        self._reader: Reader = NoneReader(self._default_limit)
        self._frame_len = 0  # bytes of the open frame decided so far
        self._eof = False
        self._eos_sent = False
        self._out: list[Any] | None = None  # the outbox of the latest call, while it lives
        self._out_it: Any = _NOTHING  # a list iterator (its __length_hint__ is the fastest)
        self._out_events = False  # the outbox holds events (else frames)
        self._out_guarded = False  # the outbox is handed out through a wrapper that can raise
        self._marks: list[_Mark] | None = []  # None: one mark, see _mark_list
        self._owed: TerminatorFound | None = None
        self._hot: BytesReader | None = None
        self._stepwise = False  # set by Chat: see _frames_stepwise
        self._resume = False  # a terminator set in a loop left bytes to frame stepwise
        self._spare: BytesReader | None = None  # see set_terminator's stepwise path
        self._spare_count: CountReader | None = None  # the same, for counts
        # Called after each set_terminator that succeeds (see Chat: while none of its
        # callbacks runs, a terminator set frames the bytes held at once); None: nothing.
        self._on_terminator: Callable[[], object] | None = None
        self.set_terminator(terminator)

    def __repr__(self) -> str:
        return (
            f"<Channel terminator={self.get_terminator()!r} "
            f"max_frame_size={self.max_frame_size!r} buffered_input={self.buffered_input} "
            f"buffered_output={self.buffered_output}>"
        )

    # ------------------------------------------------------------------ terminator

    # The overloads are the public signature: without max_frame_size the limit in force is
    # kept, which the private sentinel default of the implementation stands for.
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
        """Set how the next frame ends; applies to the next byte not yet examined.

        Args:
            terminator: one of

                * non-empty bytes-like: the frame ends where these bytes occur; they stay
                  in force frame after frame (lines).
                * ``int >= 0``: the frame is that many bytes.  One-shot, as in asynchat:
                  once the count is reached the terminator becomes ``None`` unless it is set
                  again.  ``0`` ends one empty frame at once (``Content-Length: 0``).
                  Setting an int always starts a new count, even the same number while
                  it is counting: the frame then ends that many bytes later (its bytes
                  already delivered stay part of it and count against the limit).
                * tuple of non-empty bytes-like: the earliest match ends the frame; where two
                  match at the same position the longer wins, so ``(b"\\r", b"\\r\\n")``
                  waits for the byte after ``\\r``.  `TerminatorFound` says which matched.
                * ``None``: every byte is frame data and no frame ever ends.

            max_frame_size: the limit, in bytes excluding the terminator, for the frame
                open now (its bytes already delivered count) and every later frame, until
                the next ``set_terminator`` (the ``None`` that follows an int's frame keeps
                it); by default the channel's ``max_frame_size``.  Frames already ended are
                not affected, nor a frame whose `Data` has been reached but whose
                `TerminatorFound` has not (its end was found before the call).

        Setting a bytes, tuple or ``None`` terminator that is already in force, with the
        same limit, changes nothing (a handler may do it on every frame at no cost); an
        int restarts its count, as said above.  A terminator set between a
        `Data` event and the `TerminatorFound` that closes that frame applies after it: the
        match was already made.  Set inside the loop of a `receive` or `frames` call, it
        applies to the rest of that loop, and a frame that it makes too large raises
        `FrameTooLarge` from that loop's iterator when the loop reaches it.  (One exception:
        the iterator of a `frames` call that found no frame too large is a plain list
        iterator, which cannot raise; there `set_terminator` raises the error itself if the
        frame is the loop's next, and otherwise the next call raises it.)

        Raises:
            TypeError: for a ``str`` (encode it), a ``bool``, a list, or anything else not
                listed above, naming the value.
            ValueError: for a negative int, empty bytes, an empty tuple or a tuple holding
                an empty element.
            FrameTooLarge: inside a loop, as said above.
        """
        hook = self._on_terminator
        if hook is not None:  # (rare: the hot loops of Chat run with it unset)
            self._on_terminator = None
            try:
                self.set_terminator(terminator, max_frame_size=max_frame_size)  # type: ignore[arg-type]
            finally:
                self._on_terminator = hook
            hook()  # only once it succeeded
            return
        kind = type(terminator)
        if (kind is bytes and terminator) or (kind is int and terminator >= 0):  # type: ignore[operator]
            term: Terminator = terminator  # type: ignore[assignment]  # valid as it is
        else:
            term = self._validate(terminator)
        limit = (
            self._default_limit
            if max_frame_size is _CHANNEL_LIMIT
            else _check_limit(max_frame_size)
        )
        stepper = self._out_it
        if type(stepper) is _Stepper and stepper._i >= len(stepper._out):
            # Chat's stepwise loop, which has reached all it decided: nothing to take back,
            # the reader in force is the one at the consumer's position, nothing to re-decide.
            # A line reader left for a count is kept (_spare) for the switch back.
            reader = self._reader
            if type(term) is int:
                # Everything decided was reached: no take-back can go back to before this
                # point, so no mark that may still be used refers to the count reader made
                # last, which counts again (no new reader per frame read by count).
                spent = self._spare_count
                if spent is not None and spent is not reader:
                    spent.reset(term, limit)
                    new: Reader = spent
                else:
                    new = self._spare_count = CountReader(term, limit)
            elif (
                type(reader) is not BytesReader  # (so a bytes term is not the one in force)
                and (spare := self._spare) is not None
                and spare.term == term
                and spare.limit == limit
            ):
                spare.scan_from = 0  # the line reader left for a count: the switch back
                new = spare
            elif term == reader.terminator and limit == reader.limit:
                return
            else:
                new = reader_for(term, limit)
            if type(reader) is BytesReader:
                self._spare = reader
            self._reader = new
            self._hot = (  # (_rehot, inline)
                new if type(new) is BytesReader and self._owed is None and not self._eof else None
            )
            return
        if type(term) is not int:
            reader = self._reader_now()[0]
            if term == reader.terminator and limit == reader.limit:
                return
        live = self._out is not None and not _exhausted(self._out_it)
        self._take_back()
        self._reader = reader_for(term, limit)
        self._rehot()
        if live and self._stepwise and not self._eof:
            # Chat's and compat's loops: a _Stepper decides the rest as it gets there; a
            # list iterator ends after this item (what it had not reached was taken back),
            # and they go on stepwise.  Never a decision of all the rest here.
            if type(self._out_it) is not _Stepper:
                # (even with no byte left: an int 0 ends a frame with none, and a limit the
                # open frame already passes is a FrameTooLarge now, not a read later)
                self._resume = True
            return
        if live:
            out = self._out
            assert out is not None
            before = len(out)
            too_large = self._cut()  # the running loop goes on with what the reader decides
            reached = len(out) - self._out_it.__length_hint__()
            if too_large is not None and reached == before == len(out) and not self._out_guarded:
                # A plain list iterator cannot raise: the loop's next piece is already too
                # large, so the loop ends here, with the error.
                self._out = None
                raise FrameTooLarge(*too_large, self.buffered_input)

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
        reader, state = self._reader_now()
        return state if type(reader) is CountReader else reader.terminator

    @property
    def max_frame_size(self) -> int | None:
        """The frame size limit in force now (per terminator, else the channel's)."""
        return self._reader_now()[0].limit

    @property
    def buffered_input(self) -> int:
        """Bytes received but not yet delivered as `Data` or a frame (terminators included).

        Between a `Data` event and the `TerminatorFound` that ends its frame, the matched
        terminator's bytes are counted neither here nor as delivered.
        """
        pending = len(self._buf)
        if not self._out_it.__length_hint__():  # the latest loop reached its end (most calls)
            return pending
        point = self._restore_point()
        if point is not None:
            pending += len(self._raw(point[0]))
        return pending

    def take_unframed(self) -> bytes:
        """Remove and return every byte received but not yet delivered, in stream order.

        Meant for a frame boundary: after the `TerminatorFound` (or frame) that ends a
        ``STARTTLS`` command, the bytes that follow belong to the TLS layer, not to this
        channel.  Called mid-frame, it returns the rest of the frame received so far, and
        the frame goes on with the next bytes received.
        """
        live = self._out is not None and not _exhausted(self._out_it)
        self._take_back()
        taken = bytes(self._buf)
        self._buf.clear()
        self._reader.restore(self._reader.state())
        if live:
            self._cut()  # a running loop goes on: an int 0 or the end of stream still comes
        return taken

    # ------------------------------------------------------------------ receive

    def receive(self, data: bytes | bytearray | memoryview) -> Iterator[Event]:
        """Add received bytes; return a lazy iterator of the `Data` and `TerminatorFound` events.

        The bytes are taken at once; the events are decided as the iterator is advanced,
        under the terminator in force at each step, so a terminator set while iterating
        applies to the very next unread byte.  An iterator left unfinished loses nothing:
        the next call of `receive`, `frames` or `receive_eof` ends it (it yields nothing
        more) and goes on where it stopped.  ``receive(b"")`` just resumes (useful after
        ``set_terminator(0)`` outside a loop).  A refused call (the errors below) changes
        nothing: the iterator of an earlier call goes on.

        Raises:
            TypeError: if *data* is not bytes-like.
            ValueError: if called after `receive_eof`.
            FrameTooLarge: (from the iterator) when a frame grows past ``max_frame_size``.
        """
        reader = self._hot
        if (
            reader is not None
            and type(data) is bytes
            and (self._out is None or not self._out_it.__length_hint__())
        ):
            # The hot path, as in `frames`: one frame ending the read, or a piece of one.
            buf = self._buf
            term = reader.term
            limit = reader.limit
            frame_len = self._frame_len
            if not buf:  # the read alone is one frame, or a piece of one: no copy into buf
                piece, matched, rest = _partition(data, term)
                size = frame_len + len(piece)
                if (limit is None or size <= limit) and (
                    (matched and not rest)
                    or (not matched and piece and (len(term) == 1 or not held_back(data, term)))
                ):
                    out: list[Any]
                    if not piece:
                        out = [reader.found]
                    else:
                        # (make_data inline: its call was ~4% of a 1-byte read's receive)
                        if COMPILED:
                            event = Data(piece)
                        else:
                            event = _new(Data)
                            _set_data(event, piece)
                        if matched:
                            out = [event, reader.found]
                        else:
                            self._frame_len = size
                            out = [event]
                    if matched and frame_len:  # the end of a frame open before this read
                        self._frame_len = 0
                        return self._hand_out(out, reader, frame_len, reader.found)
                    self._out = out
                    self._marks = _EVENTS_STEP  # events, guarded, one implicit mark
                    iterator = self._out_it = iter(out)
                    return map(_as_event, iterator) if _LAZY_DATA else filter(None, iterator)
            buf += data
            index = buf.find(term, reader.scan_from)
            if index >= 0 and index + len(term) == len(buf):
                if limit is None or frame_len + index <= limit:
                    found = reader.found
                    del buf[index:]
                    out = [make_data(bytes(buf)), found] if index else [found]
                    buf.clear()
                    self._frame_len = 0
                    reader.scan_from = 0
                    return self._hand_out(out, reader, frame_len, found)
            elif index < 0:
                decided = len(buf) if len(term) == 1 else len(buf) - held_back(buf, term)
                if limit is None or frame_len + decided <= limit:
                    if not decided:
                        reader.scan_from = 0
                        return self._hand_out([], reader, frame_len, None)
                    reader.scan_from = 0
                    self._frame_len = frame_len + decided
                    out = [make_data(take(buf, decided, decided))]
                    return self._hand_out(out, reader, frame_len, None)
        else:
            self._feed(data)
        return self._serve(True)

    def _rehot(self) -> None:
        """Keep `_hot` true to its meaning: the reader, when it is a `BytesReader`, no
        frame end is owed and the stream goes on (the hot paths of `frames` and `receive`
        need nothing else, besides the earlier loop having reached its end); else None."""
        reader = self._reader
        plain = self._owed is None and not self._eof
        self._hot = reader if plain and type(reader) is BytesReader else None

    def _mark_list(self) -> list[_Mark]:
        """The outbox's marks.  The hot paths leave a one-step outbox's mark implicit (None
        for frames, no wrapper; `_EVENTS_STEP` for events): decided by the reader still in
        force, it is one frame with no frame open before it, or one piece of the open frame."""
        marks = self._marks
        if marks is None or marks is _EVENTS_STEP:
            events = self._out_events = self._out_guarded = marks is _EVENTS_STEP
            reader = self._reader
            assert type(reader) is BytesReader and self._out is not None
            last = self._out[-1] if self._out else None
            if events and type(last) is Data:  # a piece of a frame: the frame was that shorter
                marks = [(0, reader, 0, self._frame_len - len(last.data), None, False)]
            else:
                marks = [(0, reader, 0, 0, reader.found, False)]
            self._marks = marks
        return marks

    def _hand_out(
        self, out: list[Any], reader: Reader, frame_len: int, found: TerminatorFound | None
    ) -> Iterator[Event]:
        """Hand out a one-step events outbox that the hot path of `receive` decided."""
        self._out = out
        self._out_events = self._out_guarded = True
        self._marks = [(0, reader, 0, frame_len, found, False)]
        iterator = self._out_it = iter(out)
        return map(_as_event, iterator) if _LAZY_DATA else filter(None, iterator)

    def frames(self, data: bytes | bytearray | memoryview = b"") -> Iterator[bytes]:
        """Add received bytes; return a lazy iterator of whole frames, terminators excluded.

        The fast path for whole-frame protocols: a partial frame stays in the channel
        (bounded by ``max_frame_size``) until its terminator arrives.  May be mixed with
        `receive` on one channel; for a frame that `receive` has already delivered part of
        as `Data`, this yields only the rest (``b""`` if nothing is left), so nothing is
        lost or duplicated.  Bytes still held at end of stream come out of `receive_eof`.
        Set the terminator before the call or from inside its loop: when no frame can end in
        the bytes held (whatever came before: an earlier loop left by ``break``, a tuple
        terminator's longer alternative still undecided), the call returns an empty
        iterator at once, and a terminator set between the call and its loop applies from
        the next call on.  As with `receive`, a new call ends the iterator of an earlier
        one; a refused call changes nothing (the earlier iterator goes on).

        Raises:
            TypeError: if *data* is not bytes-like.
            ValueError: if called after `receive_eof`.
            FrameTooLarge: (from the iterator) when a frame grows past ``max_frame_size``.
        """
        reader = self._hot
        if (
            reader is not None
            and type(data) is bytes
            and (self._out is None or not self._out_it.__length_hint__())
        ):
            # The hot path (see _hot; the earlier loop has reached its end): a read that ends
            # no frame, or exactly one, is decided here with a few C calls.
            buf = self._buf
            term = reader.term
            if not buf:  # a read that may be one frame: cut without a copy into buf
                found: object
                if COMPILED:
                    # Native there: a slice, endswith and an int's `in` (partition is a
                    # generic call, ~25% of the call).  A read whose body holds the
                    # terminator's first byte is left to the general path below.
                    frame = data[: -len(term)]
                    found = data.endswith(term) and term[0] not in frame
                    rest = b""
                else:  # one C call (in pure Python, endswith + slice + `in` cost far more)
                    frame, found, rest = _partition(data, term)
                limit = reader.limit
                if (
                    found
                    and not rest
                    and not self._frame_len
                    and (limit is None or len(frame) <= limit)
                ):
                    out = [frame]
                    self._out = out
                    self._marks = None  # frames, unguarded, one mark: see _mark_list
                    iterator = self._out_it = iter(out)
                    return iterator
            scan_from = reader.scan_from
            if reader.last not in data and len(buf) - scan_from < reader.size:
                # No frame can end in this read (most reads of a trickle): no terminator
                # starts in buf[:scan_from], the bytes after it are too few to hold one, and
                # the read lacks its last byte.  (An `in` costs a fraction of a find.)
                buf += data
                index = -1
            else:
                buf += data
                index = buf.find(term, scan_from)
            if index < 0:
                decided = len(buf) if reader.size == 1 else len(buf) - held_back(buf, term)
                limit = reader.limit
                if limit is None or self._frame_len + decided <= limit:
                    reader.scan_from = decided
                    self._out = None
                    return _NOTHING
            elif index + len(term) == len(buf) and not self._frame_len:
                limit = reader.limit
                if limit is None or index <= limit:  # the read completes one buffered frame
                    del buf[index:]
                    out = [bytes(buf)]
                    buf.clear()
                    reader.scan_from = 0
                    self._out = out
                    self._marks = None
                    iterator = self._out_it = iter(out)
                    return iterator
        else:
            self._feed(data)
        frames = self._serve(False)
        if not self._out:
            self._out = None
            return _NOTHING
        return frames

    def _frames_stepwise(self) -> Iterator[bytes]:
        """For `Chat`: the frames of the bytes held, decided one step at a time as the loop
        reaches them (a `_Stepper`); used after a terminator set inside a loop of a
        channel whose ``_stepwise`` is set, when ``_resume`` says bytes are left."""
        self._resume = False
        self._retire()
        return self._serve(False, stepwise=True)

    def _events_stepwise(self) -> Iterator[Event]:
        """`_frames_stepwise` for a consumer of events (Chat's asynchat style, compat)."""
        self._resume = False
        self._retire()
        return self._serve(True, stepwise=True)

    def receive_eof(self) -> Iterator[Event]:
        """Tell the channel the peer will send nothing more; return the last events.

        Whatever was held back is decided now: a complete shorter alternative of a tuple
        terminator ends its frame, every other byte is delivered as `Data`; then one
        `EndOfStream` says whether a frame was left incomplete.  Calling it again resumes an
        unfinished iterator; once `EndOfStream` has been yielded it yields nothing.
        """
        self._retire()
        self._eof = True
        self._hot = None
        return self._serve(True)

    def interrupt(self) -> None:
        """End the iterator of the latest `receive` or `frames` call from inside its loop.

        The loop ends after the current item; nothing is lost: what it would have yielded
        stays in the channel for the next call.  `Chat` uses it so that no callback runs
        after the one that closed the connection.
        """
        self._retire()

    def discard_buffers(self) -> None:
        """Drop all received bytes not yet delivered and everything queued to send.

        For emergencies, as in asynchat: the close request, if any, is dropped too.  Called
        from inside a loop, that loop ends: the frames it has not reached are dropped too,
        and so is a `TerminatorFound` still to come after a `Data` the loop reached.  A
        half-received terminator is dropped with the rest.

        The terminator and its limit stay in force.  An int terminator still wants the bytes
        it wanted before the call (as in asynchat: the dropped bytes were never counted), so
        it ends a frame that many received bytes later; if the loop had reached the `Data`
        that completed its count, that frame had ended and the terminator is ``None``.
        What was delivered of the open frame is forgotten: its size, which
        ``max_frame_size`` bounds and `EndOfStream.incomplete` reports, starts again from
        zero with the next byte received (an int still counting makes the stream incomplete
        at end of stream).
        """
        self._retire()
        self._owed = None
        self._buf.clear()
        self._frame_len = 0
        self._reader.restore(self._reader.state())
        self._rehot()
        self._discard_output()

    # ------------------------------------------------------------------ the outbox

    def _feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise ValueError("cannot receive data after receive_eof()")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"received data must be bytes-like, not {type(data).__name__}: {data!r:.60}"
            )
        self._retire()
        self._buf += data

    def _serve(self, events: bool, stepwise: bool = False) -> Iterator[Any]:
        """Start a new outbox, decide into it all that can be decided, hand it out (with
        *stepwise*: decide nothing yet, hand out a `_Stepper`)."""
        out: list[Any] = []
        self._out = out
        self._out_events = events
        self._marks = []
        self._resume = False
        owed = self._owed
        if owed is not None:  # the end of a frame whose Data a loop reached: it comes first
            self._owed = None
            self._rehot()
            self._marks.append((0, self._reader, self._reader.state(), 0, owed, True))
            out.append(owed if events else b"")
        # Items are handed out by C-level iterators only.  An _Overflow item raises when the
        # wrapper touches it.  Frames need a wrapper only if this cut already hit a frame too
        # large (see set_terminator for one found later); events always have one.
        self._out_guarded = True
        if stepwise:
            stepper = self._out_it = _Stepper(self, out, events)
            return stepper
        too_large = self._cut()
        if events and _LAZY_DATA and len(out) >= _LAZY_MIN:
            lazy = self._out_it = _LazyEvents(out)
            return lazy
        iterator = self._out_it = iter(out)
        if events:
            if _LAZY_DATA:
                return map(_as_event, iterator)
            return filter(None, iterator)  # events are true; an _Overflow raises
        if too_large is not None:
            return map(_SAME, iterator)  # frame[:] is the frame itself; an _Overflow raises
        self._out_guarded = False
        return iterator

    def _cut(self, one: bool = False) -> tuple[int, int] | None:
        """Decide into the outbox everything the readers can decide now (see the top); with
        *one*, a single reader step at most (`_Stepper`, never at end of stream).

        Returns ``(limit, size)`` if a frame too large stopped it (then the outbox ends
        with an `_Overflow`, if it is guarded), else None.
        """
        if self._eos_sent:
            return None  # EndOfStream was the last event: nothing follows it
        out = self._out
        assert out is not None
        marks = self._marks
        if marks is None or marks is _EVENTS_STEP:
            marks = self._mark_list()
        buf = self._buf
        events = self._out_events
        final = self._eof
        reader = self._reader
        try:
            while True:
                reader = self._reader
                if one:
                    pass  # one step: no batch
                elif type(reader) is BytesReader and buf.find(reader.term, reader.scan_from) >= 0:
                    frame_len = self._frame_len
                    frames = reader.split(buf, frame_len)
                    if frames:  # the batch: every complete frame at once
                        ends = reader.found
                        marks.append((len(out), reader, 0, frame_len, ends, False))
                        self._frame_len = 0
                        if not events:
                            out += frames
                        elif _LAZY_DATA or len(frames) <= _CHUNK:
                            out += _events_of(frames, ends)
                        else:
                            _put_chunked(out, frames, ends)
                state = reader.state()
                start = len(out)
                frame_len = self._frame_len
                result = reader.step(buf, frame_len, events, final)
                if result is None:
                    break
                data, found = result
                marks.append((start, reader, state, frame_len, found, False))
                if not events:
                    out.append(data)
                elif found is None:
                    out.append(make_data(data))
                    self._frame_len = frame_len + len(data)
                    break  # the rest is held back
                else:
                    if data:
                        out.append(make_data(data))
                    out.append(found)
                self._frame_len = 0
                if reader.one_shot:
                    self._reader = none_reader(reader.limit)
                    self._hot = None
                if one:
                    break
        except TooLarge as exc:
            assert reader.limit is not None
            self._rehot()
            if self._out_guarded:
                marks.append((len(out), reader, reader.state(), self._frame_len, None, False))
                out.append(_Overflow(self, out, reader.limit, exc.size))
            return reader.limit, exc.size
        if final:
            self._eos_sent = True
            reader = self._reader
            incomplete = self._frame_len > 0 or (
                type(reader) is CountReader and reader.remaining > 0
            )
            marks.append((len(out), reader, reader.state(), self._frame_len, None, False))
            out.append(EndOfStream(incomplete))
        return None

    def _restore_point(self) -> tuple[int, Reader, int, int] | None:
        """Where the consumer of the outbox stands: the index of the first item to take
        back, and the reader, its count and the open frame's size there; None if nothing
        is left to take back (an owed frame end is never taken back)."""
        out = self._out
        if out is None:
            return None
        size = len(out)
        k = size - self._out_it.__length_hint__()
        if k >= size:
            return None
        marks = self._mark_list()
        i = len(marks) - 1
        while marks[i][0] > k:
            i -= 1
        start, reader, state, frame_len, _, owed = marks[i]
        if owed or (
            k > start
            and self._out_events
            and type(out[k]) is TerminatorFound
            and type(out[k - 1]) in (Data, bytes)  # (bytes: a compiled build's Data)
        ):
            k += 1  # the frame's Data was reached: its end is owed
            if k == size:
                return None
        if i + 1 < len(marks) and marks[i + 1][0] == k:
            _, reader, state, frame_len, _, _ = marks[i + 1]
        elif k > start:
            frame_len = 0  # inside a batch, where one of its frames starts
        return k, reader, state, frame_len

    def _reader_now(self) -> tuple[Reader, int]:
        """The reader in force at the consumer's position, and its count."""
        point = self._restore_point()
        if point is None:
            return self._reader, self._reader.state()
        return point[1], point[2]

    def _raw(self, keep: int) -> bytes:
        """The received bytes that the outbox items from *keep* on were decided from."""
        out = self._out
        assert out is not None
        marks = self._mark_list()
        pieces: list[bytes] = []
        if self._out_events:
            for item in out[keep:]:
                if type(item) is Data:
                    pieces.append(item.data)
                elif type(item) is bytes:  # stands for its Data (compiled)
                    pieces.append(item)
                elif type(item) is TerminatorFound and type(item.terminator) is bytes:
                    pieces.append(item.terminator)
            return b"".join(pieces)
        first = len(marks) - 1
        while first > 0 and marks[first][0] > keep:
            first -= 1  # the steps before the one holding *keep* give nothing back
        for j in range(first, len(marks)):
            start, found = marks[j][0], marks[j][4]
            end = marks[j + 1][0] if j + 1 < len(marks) else len(out)
            frames = out[max(start, keep) : end]
            if not frames or found is None:  # found is None for an _Overflow only
                continue
            term = found.terminator
            if type(term) is bytes:
                pieces.append(term.join(frames) + term)
            else:
                pieces.extend(frames)
        return b"".join(pieces)

    def _take_back(self) -> None:
        """Undo the outbox items the consumer has not reached (see the top)."""
        if self._out is not None:
            self._mark_list()  # made now, while the reader is still the one it implies
        point = self._restore_point()
        if point is None:
            return
        keep, reader, state, frame_len = point
        out = self._out
        assert out is not None
        raw = self._raw(keep)
        if self._eos_sent and type(out[-1]) is EndOfStream:
            self._eos_sent = False
        del out[keep:]
        marks = self._mark_list()
        while marks and marks[-1][0] >= keep:
            marks.pop()
        self._buf[:0] = raw
        self._reader = reader
        reader.restore(state)
        self._frame_len = frame_len
        self._rehot()

    def _retire(self) -> None:
        """End the outbox of the latest call: take back what its loop did not reach and
        carry an owed frame end to the next call."""
        self._resume = False  # whatever ends a loop ends its stepwise continuation too
        out = self._out
        if out is None:
            return
        self._take_back()
        k = len(out) - self._out_it.__length_hint__()
        if k < len(out):  # the owed frame end that _take_back kept
            self._owed = out[k] if self._out_events else self._mark_list()[-1][4]
            del out[k:]
            self._rehot()
        self._out = None
        self._marks = []
