"""Producers: lazily pulled sources of outgoing bytes.

Theory of operation: a producer is any object with a ``more()`` method returning bytes,
``b""`` meaning "exhausted" (asynchat's contract).  The send queue pulls a producer only
when its bytes are wanted, one ``more()`` call at a time, so a producer of 10 GB is never
read ahead.  `as_producer` turns what `Channel.push_with_producer` accepts (a producer, a
bytes-like value, an iterable of bytes-like values) into one of three queue items, and
`checked_chunk` is the one place that checks what ``more()`` returned.  The `Producer`
protocol itself lives in `_protocols`, which stays pure Python in the compiled build.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeAlias

from ._protocols import Producer as Producer

__all__ = ["IterableProducer", "Producer", "ProducerLike"]

#: What `Channel.push_with_producer` accepts: a `Producer`, a bytes-like value, or an
#: iterable of bytes-like chunks (a list, a generator).  A ``str`` is none of these.
ProducerLike: TypeAlias = (
    "Producer | bytes | bytearray | memoryview | Iterable[bytes | bytearray | memoryview]"
)


class IterableProducer:
    """A producer over an iterable of bytes-like chunks (a list, a generator, a file).

    Empty chunks are skipped, so that only the end of the iterable means "exhausted".
    """

    __slots__ = ("_iterator",)

    def __init__(self, chunks: Iterable[bytes]) -> None:
        # object, not bytes: what the iterable really yields is checked here and by
        # checked_chunk, and the compiled build enforces declared types on every value.
        self._iterator: Iterator[object] = iter(chunks)

    def more(self) -> Any:  # bytes, or the wrong value as is, for checked_chunk to name
        """Return the next non-empty chunk, or ``b""`` when the iterable is exhausted."""
        for chunk in self._iterator:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                return chunk  # checked_chunk names the wrong type and this producer
            if chunk:
                return bytes(chunk) if not isinstance(chunk, bytes) else chunk
        return b""

    def __repr__(self) -> str:
        return f"IterableProducer({self._iterator!r})"


def checked_chunk(producer: object, chunk: object) -> bytes | memoryview:
    """Return *chunk* as bytes, or raise `TypeError` naming *producer* if it is not bytes-like."""
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray):
        return bytes(chunk)
    if isinstance(chunk, memoryview):
        return chunk.cast("B") if chunk.readonly else bytes(chunk)
    raise TypeError(
        f"producer {producer!r} returned {type(chunk).__name__} from more(), "
        f"expected bytes (b'' when exhausted): {chunk!r:.60}"
    )


def as_producer(source: object) -> Producer | bytes | memoryview:
    """Turn what ``push_with_producer`` accepts into a producer or a bytes-like queue item."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return checked_chunk(source, source)
    if isinstance(source, str):
        raise TypeError(
            f"push_with_producer() takes a producer or bytes, not str: {source!r:.60} "
            "(encode it first)"
        )
    if isinstance(source, Producer):
        return source
    if isinstance(source, Iterable):
        return IterableProducer(source)
    raise TypeError(
        "push_with_producer() takes an object with a more() method, bytes, or an "
        f"iterable of bytes, not {type(source).__name__}: {source!r:.60}"
    )
