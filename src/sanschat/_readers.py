"""Readers: one small class per terminator kind, each deciding the next piece of a stream.

Theory of operation: `Channel` keeps the received bytes in one ``bytearray`` and one reader,
the one its terminator calls for (`reader_for`); `Channel.set_terminator` swaps it.  A
reader's `Reader.step` looks at the buffer and decides the next piece under its rule:

* ``(frame, found)``: the rest of a complete frame (removed from the buffer, terminator
  bytes included), and the `TerminatorFound` that ends it;
* ``(piece, None)``: decided bytes of a frame whose end has not arrived (only when the
  caller asks for *partial* pieces: the event API; whole-frame reading keeps them buffered);
* ``None``: nothing can be decided until more bytes arrive.

A reader keeps its own held-back rule (the suffix that could still start its terminator
stays in the buffer; with *final* nothing is held back) and its own scan memo (where the
next search may resume, so each byte is scanned a bounded number of times however the
stream is cut).  The memo is only an optimisation: `Reader.restore` may drop it at any time.
A reader raises `TooLarge` before deciding any byte beyond its ``limit``; the channel turns
that into `FrameTooLarge`.  `CountReader` is the only one-shot reader: once its frame ends,
the channel swaps in a `NoneReader`.  `BytesReader.split` is the batch: every complete
frame in the buffer cut at once by ``bytes.split`` (C speed), used when many frames sit in
one read.

Readers never do I/O, never look at anything but the buffer they are given, and never
deliver a byte twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, TypeAlias, TypeVar

from ._events import TerminatorFound

__all__ = [
    "BytesReader",
    "CountReader",
    "NoneReader",
    "Reader",
    "TooLarge",
    "TupleReader",
    "count_found",
    "none_reader",
    "reader_for",
]

#: A terminator as the channel stores it: see `Channel.set_terminator`.
Terminator: TypeAlias = "bytes | int | tuple[bytes, ...] | None"

#: What a step decides: ``(bytes, TerminatorFound | None)``, or None for "need more bytes".
Step: TypeAlias = "tuple[bytes, TerminatorFound | None] | None"

#: Above this size a frame is copied out of the buffer through a memoryview, which avoids
#: the intermediate ``bytearray`` that ``bytes(buf[:n])`` makes.
_VIEW_COPY: Final = 1024


class TooLarge(Exception):
    """Internal: the open frame would grow past the reader's limit; ``size`` is how far."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def take(buf: bytearray, size: int, end: int) -> bytes:
    """Return ``buf[:size]`` as bytes and delete ``buf[:end]``, copying once."""
    if end == len(buf) and size == end:
        data = bytes(buf)
        buf.clear()
        return data
    if size > _VIEW_COPY:
        with memoryview(buf) as view:
            data = view[:size].tobytes()
    else:
        data = bytes(buf[:size])
    del buf[:end]
    return data


def held_back(buf: bytes | bytearray, term: bytes) -> int:
    """Length of the longest suffix of *buf* that is a proper prefix of *term*."""
    for n in range(min(len(term) - 1, len(buf)), 0, -1):
        if buf.endswith(term[:n]):
            return n
    return 0


class Reader:
    """Base of the readers: the frame size *limit* (None: no limit) and the shared rules."""

    __slots__ = ("limit",)

    #: True for a reader whose frame ends once (`CountReader`): the channel then swaps in
    #: a `NoneReader` with the same limit.
    one_shot: bool = False

    def __init__(self, limit: int | None) -> None:
        self.limit = limit

    @property
    def terminator(self) -> Terminator:
        """What `Channel.get_terminator` shows for this reader."""
        raise NotImplementedError

    def step(self, buf: bytearray, frame_len: int, partial: bool, final: bool) -> Step:
        """Decide the next piece of *buf* (see the module docstring).

        *frame_len* is how many bytes of the open frame were delivered before; *partial*
        allows ``(piece, None)`` results; *final* means no more bytes will come.
        """
        raise NotImplementedError

    def state(self) -> int:
        """What `restore` needs to put this reader back as it is now (its count, if any)."""
        return 0

    def restore(self, state: int) -> None:
        """Put the reader back to a `state` it had; forgets the scan memo."""

    def undecided(self, buf: bytearray, frame_len: int, partial: bool, decided: int) -> Step:
        """The open frame's end is not in *buf*; its first *decided* bytes are settled."""
        limit = self.limit
        if limit is not None and frame_len + decided > limit:
            raise TooLarge(frame_len + decided)
        if partial and decided:
            return take(buf, decided, decided), None
        return None


class NoneReader(Reader):
    """Terminator ``None``: every byte is frame data and no frame ever ends."""

    __slots__ = ()

    @property
    def terminator(self) -> Terminator:
        return None

    def step(self, buf: bytearray, frame_len: int, partial: bool, final: bool) -> Step:
        return self.undecided(buf, frame_len, partial, len(buf))


_K = TypeVar("_K")
_V = TypeVar("_V")

#: Most entries of a cache of shared immutable objects below; a full one starts again.
_SHARED_MAX: Final = 4096


def _shared(cache: dict[_K, _V], key: _K, make: Callable[[_K], _V]) -> _V:
    """The object *cache* holds for *key*, made by ``make(key)`` the first time."""
    value = cache.get(key)
    if value is None:
        if len(cache) >= _SHARED_MAX:
            cache.clear()
        value = cache[key] = make(key)
    return value


#: The `TerminatorFound` of each count seen lately (events are immutable, so shared): a
#: protocol that reads by count (RESP, memcached, HTTP bodies) mostly repeats a few sizes.
_COUNT_FOUND: dict[int, TerminatorFound] = {}

#: The `NoneReader` of each limit (they hold nothing else): one takes over after every frame
#: read by count.
_NONE_READERS: dict[int | None, NoneReader] = {}


def count_found(count: int) -> TerminatorFound:
    """The ``TerminatorFound(count)`` that ends a frame read by *count* bytes (shared)."""
    return _shared(_COUNT_FOUND, count, TerminatorFound)


def none_reader(limit: int | None) -> NoneReader:
    """A `NoneReader` with *limit* (shared: a none reader has no state of its own)."""
    return _shared(_NONE_READERS, limit, NoneReader)


class CountReader(Reader):
    """An ``int`` terminator: the frame is the next *count* bytes, then it is spent."""

    __slots__ = ("found", "remaining")
    one_shot = True

    def __init__(self, count: int, limit: int | None) -> None:
        self.limit = limit  # (Reader.__init__, inline: one is made per frame read by count)
        self.found = count_found(count)
        self.remaining = count

    def reset(self, count: int, limit: int | None) -> None:
        """Count again, for a frame of *count* bytes (what ``__init__`` does, reusing it)."""
        self.limit = limit
        self.found = _COUNT_FOUND.get(count) or count_found(count)
        self.remaining = count

    @property
    def terminator(self) -> Terminator:
        return self.remaining

    def step(self, buf: bytearray, frame_len: int, partial: bool, final: bool) -> Step:
        wanted = self.remaining
        if len(buf) >= wanted:
            size = frame_len + wanted
            if self.limit is not None and size > self.limit:
                raise TooLarge(size)
            self.remaining = 0
            if wanted <= _VIEW_COPY:  # (take(), inline for the common small frame)
                data = bytes(buf[:wanted])
                del buf[:wanted]
                return data, self.found
            return take(buf, wanted, wanted), self.found
        result = self.undecided(buf, frame_len, partial, len(buf))
        if result is not None:
            self.remaining -= len(result[0])
        return result

    def state(self) -> int:
        return self.remaining

    def restore(self, state: int) -> None:
        self.remaining = state


class _Searching(Reader):
    """Base of the readers that search for their terminator: the scan memo they share."""

    __slots__ = ("scan_from",)

    def __init__(self, limit: int | None) -> None:
        super().__init__(limit)
        self.scan_from = 0  # no terminator starts in buf[:scan_from]

    def restore(self, state: int) -> None:
        self.scan_from = 0


class BytesReader(_Searching):
    """A bytes terminator: a frame ends where the bytes occur; in force frame after frame."""

    __slots__ = ("found", "last", "size", "term")

    def __init__(self, term: bytes, limit: int | None) -> None:
        super().__init__(limit)
        self.term = term
        self.found = TerminatorFound(term)
        #: The terminator's last byte: a read without it ends no frame (an `in` test is
        #: far cheaper than a ``find``; `Channel.frames` asks it first).
        self.last = term[-1]
        self.size = len(term)  # (an attribute read is cheaper than len() in pure Python)

    @property
    def terminator(self) -> Terminator:
        return self.term

    def step(self, buf: bytearray, frame_len: int, partial: bool, final: bool) -> Step:
        term = self.term
        index = buf.find(term, self.scan_from)
        if index >= 0:
            if self.limit is not None and frame_len + index > self.limit:
                raise TooLarge(frame_len + index)
            self.scan_from = 0
            if index <= _VIEW_COPY:  # (take(), inline for the common small frame)
                data = bytes(buf[:index])
                del buf[: index + len(term)]
                return data, self.found
            return take(buf, index, index + len(term)), self.found
        decided = len(buf) - (0 if final or len(term) == 1 else held_back(buf, term))
        result = self.undecided(buf, frame_len, partial, decided)
        self.scan_from = 0 if result is not None else decided
        return result

    def split(self, buf: bytearray, frame_len: int) -> list[bytes]:
        """Remove every complete frame from *buf* at once and return them (the batch).

        Stops before the first frame over the limit, so that `step` raises at exactly
        that frame; raises `TooLarge` if it is the first one.
        """
        term = self.term
        whole = bytes(buf)
        parts = whole.split(term)
        rest = parts.pop()
        if not parts:
            return parts
        limit = self.limit
        if limit is not None:
            if frame_len + len(parts[0]) > limit:
                raise TooLarge(frame_len + len(parts[0]))
            # The scan for a part too large costs as much as the split: most reads are
            # proved to need none, by their size or by a few finds (see _all_fit).
            end = len(buf) - len(rest)
            if (
                end - len(parts) * len(term) > limit  # no part is longer than all of them
                and not _all_fit(whole, term, end, limit, len(parts))
                and max(map(len, parts)) > limit
            ):
                del parts[next(i for i, part in enumerate(parts) if len(part) > limit) :]
                del buf[: sum(map(len, parts)) + len(parts) * len(term)]
                self.scan_from = 0
                return parts
        if rest:
            del buf[: len(buf) - len(rest)]
        else:
            buf.clear()
        self.scan_from = 0
        return parts


def _all_fit(data: bytes, term: bytes, end: int, limit: int, count: int) -> bool:
    """True if no part of ``data[:end].split(term)`` (*count* parts, *end* just after a
    terminator) is longer than *limit*, proved with a few ``find`` calls; False if not
    proved (then the caller measures the parts).

    A part is never longer than the distance from its start to the next match of *term* at
    or after it (a match that ``split`` skipped overlaps one it took, which starts no later
    and not before the part).  So if a match starts in every block of ``(limit + 1) // 2``
    bytes up to the last terminator, no part reaches two blocks: none is over *limit*.
    Used only when the blocks are far fewer than the parts (long lines: the scan is cheap).
    """
    step = (limit + 1) // 2
    if not step or end // step > count // 16:
        return False
    last = end - len(term)  # where the last terminator starts
    reach = step - 1 + len(term)  # a match found in data[start:start + reach] starts in the block
    return all(data.find(term, start, start + reach) >= 0 for start in range(0, last + 1, step))


class TupleReader(_Searching):
    """A tuple of bytes: the earliest alternative that matches ends the frame; at one
    position the longest wins, so a shorter one waits until the longer one is decided."""

    __slots__ = ("alternatives", "found", "maxlen", "regex")

    def __init__(self, alternatives: tuple[bytes, ...], limit: int | None) -> None:
        super().__init__(limit)
        self.alternatives = alternatives
        self.found = {alt: TerminatorFound(alt) for alt in alternatives}
        self.maxlen = max(map(len, alternatives))
        longest_first = sorted(alternatives, key=len, reverse=True)
        self.regex = re.compile(b"|".join(map(re.escape, longest_first)))

    @property
    def terminator(self) -> Terminator:
        return self.alternatives

    def step(self, buf: bytearray, frame_len: int, partial: bool, final: bool) -> Step:
        match = self.regex.search(buf, self.scan_from)
        size = len(buf)
        held = 0
        if not final and (match is None or match.start() > size - self.maxlen):
            held = max(held_back(buf, alt) for alt in self.alternatives)
        if match is not None and match.start() < size - held:
            start = match.start()
            if self.limit is not None and frame_len + start > self.limit:
                raise TooLarge(frame_len + start)
            found = self.found[match.group()]  # before take(): the match reads buf lazily
            self.scan_from = 0
            return take(buf, start, match.end()), found
        result = self.undecided(buf, frame_len, partial, size - held)
        self.scan_from = 0 if result is not None else size - held
        return result


def reader_for(term: Terminator, limit: int | None) -> Reader:
    """The reader that frames under *term* (already validated) with *limit*."""
    if type(term) is bytes:
        return BytesReader(term, limit)
    if term is None:
        return NoneReader(limit)
    if type(term) is int:
        return CountReader(term, limit)
    assert isinstance(term, tuple)
    return TupleReader(term, limit)
