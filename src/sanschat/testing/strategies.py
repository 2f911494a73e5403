"""Hypothesis strategies and a ready property for byte-stream protocols.

Theory of operation: `chunkings` draws cut positions, so hypothesis shrinks a failure
towards few, large chunks (the empty list of cuts is the whole input), which is the
cutting a human reads most easily.  `terminators` draws every kind of terminator the core
accepts, from a small alphabet so that they actually occur in drawn streams.
`assert_chunking_invariant` runs a user's chat over drawn cuttings and compares what a peer
observes (`sanschat.testing.transcript`) with the run on the whole input.

Needs hypothesis: ``pip install 'sanschat[test]'``.
"""

from __future__ import annotations

from collections.abc import Callable

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError as error:  # pragma: no cover - exercised only without hypothesis
    raise ImportError(
        "sanschat.testing.strategies needs hypothesis: pip install 'sanschat[test]'"
    ) from error

import itertools

from .._channel import TerminatorLike
from .._chat import Chat
from . import Transcript, _check_cut, _reference

__all__ = ["assert_chunking_invariant", "chunkings", "terminators"]


@st.composite
def chunkings(draw: st.DrawFn, data: bytes, *, max_chunks: int | None = None) -> list[bytes]:
    """A strategy of lists of non-empty chunks that join to *data*; shrinks towards one chunk.

    *max_chunks* bounds the number of chunks (every cut position is still reachable).
    """
    if not data:
        return []
    most = len(data) - 1 if max_chunks is None else min(len(data), max_chunks) - 1
    cuts = draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=most))
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def terminators(
    alphabet: bytes = b"\r\nab", *, ints: bool = True, tuples: bool = True, none: bool = True
) -> st.SearchStrategy[TerminatorLike]:
    """A strategy of valid terminators: bytes from *alphabet* (1-4 long), ints 0-16, tuples
    of 1-3 such byte strings (overlapping ones included) and ``None``."""
    some_bytes = st.binary(min_size=1, max_size=4).map(
        lambda raw: bytes(alphabet[b % len(alphabet)] for b in raw)
    )
    options: list[st.SearchStrategy[TerminatorLike]] = [some_bytes]
    if ints:
        options.append(st.integers(0, 16))
    if tuples:
        options.append(st.lists(some_bytes, min_size=1, max_size=3, unique=True).map(tuple))
    if none:
        options.append(st.none())
    return st.one_of(options)


def assert_chunking_invariant(
    make_chat: Callable[[], Chat],
    data: bytes,
    *,
    eof: bool = False,
    max_examples: int = 200,
    expected: Transcript | None = None,
) -> None:
    """Assert, with hypothesis, that *make_chat*'s chats answer *data* the same however
    it is cut (and, if given, as *expected*).  Call it from a plain test function.

    A run in which the handler raises fails too (see
    `sanschat.testing.assert_same_for_every_chunking`).

    Raises:
        AssertionError: with the shrunk cutting that gave a different answer or raised, both
            transcripts, and the handler's traceback if it raised.
    """
    reference = _reference(make_chat, data, eof, expected)

    @settings(max_examples=max_examples, deadline=None, database=None)
    @given(chunkings(data))
    def check(chunks: list[bytes]) -> None:
        _check_cut(make_chat, chunks, eof, reference)

    check()
