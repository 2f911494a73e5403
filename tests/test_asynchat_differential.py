"""sanschat frames a stream as the stdlib `asynchat.async_chat` does, chunk for chunk.

A real `async_chat` subclass reads scripted chunks from a fake ``recv`` (``handle_read`` is
the stdlib's own code); a `sanschat.Channel` receives the same chunks.  After every chunk
both must have ended the same frames with the same bytes, and must have delivered the same
bytes of the open frame: both hold back exactly the suffix that could start the terminator.
One policy, called after every frame by both, may change the terminator (the same script
drives both), as an HTTP server switches from header lines to a ``Content-Length`` body.

Outside the comparison, on purpose: tuple terminators (asynchat has none), the int ``0``
(asynchat tests ``if not terminator`` and so treats ``0`` like ``None``, collecting forever,
where sanschat ends one empty frame: ``Content-Length: 0``), and end of stream (asynchat
has no framing rule for it).  `asynchat` left the stdlib in Python 3.12; there this module
is skipped.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanschat import Channel, Data, TerminatorFound

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    asynchat = pytest.importorskip("asynchat")

# A terminator asynchat and sanschat both understand the same way: bytes, int >= 1, None.
Term = bytes | int | None
# Called after every frame with (index of the frame, its bytes); returns the terminator to
# set next, or _KEEP to leave the one in force.
Policy = Callable[[int, bytes], object]
_KEEP = object()

EXAMPLES = 200
CHUNK_LIMIT = 1 << 16  # ac_in_buffer_size: each scripted chunk is read whole


class _ScriptedChat(asynchat.async_chat):  # type: ignore[misc, name-defined]
    """An `async_chat` whose socket is a list of chunks; it records frames and open data."""

    ac_in_buffer_size = CHUNK_LIMIT

    def __init__(self, chunks: Sequence[bytes], terminator: Term, policy: Policy) -> None:
        super().__init__(sock=None, map={})
        self._chunks = iter(chunks)
        self._policy = policy
        self.frames: list[bytes] = []
        self.open: list[bytes] = []
        self.set_terminator(terminator)

    def recv(self, buffer_size: int) -> bytes:
        chunk = next(self._chunks)
        assert len(chunk) <= buffer_size
        return chunk

    def collect_incoming_data(self, data: bytes) -> None:
        self.open.append(data)

    def found_terminator(self) -> None:
        frame = b"".join(self.open)
        self.open.clear()
        self.frames.append(frame)
        following = self._policy(len(self.frames) - 1, frame)
        if following is not _KEEP:
            self.set_terminator(following)


class _ChannelReader:
    """The same bookkeeping over a `sanschat.Channel`."""

    def __init__(self, terminator: Term, policy: Policy) -> None:
        self.channel = Channel(terminator)
        self._policy = policy
        self.frames: list[bytes] = []
        self.open: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        for event in self.channel.receive(chunk):
            if isinstance(event, Data):
                self.open.append(event.data)
            else:
                assert isinstance(event, TerminatorFound)
                frame = b"".join(self.open)
                self.open.clear()
                self.frames.append(frame)
                following = self._policy(len(self.frames) - 1, frame)
                if following is not _KEEP:
                    self.channel.set_terminator(following)  # type: ignore[arg-type]


def _compare(chunks: Sequence[bytes], terminator: Term, policy: Policy) -> list[bytes]:
    """Feed both chunk by chunk and compare after each; return the frames."""
    stdlib = _ScriptedChat(chunks, terminator, policy)
    ours = _ChannelReader(terminator, policy)
    try:
        for index, chunk in enumerate(chunks):
            stdlib.handle_read()
            ours.feed(chunk)
            assert ours.frames == stdlib.frames, f"frames differ after chunk {index}"
            assert b"".join(ours.open) == b"".join(stdlib.open), (
                f"open frame data differs after chunk {index}"
            )
    finally:
        stdlib.close()
    return ours.frames


def _scripted(script: Sequence[Term]) -> Policy:
    """A policy that sets script[i] after frame i, then leaves the terminator alone."""

    def policy(index: int, frame: bytes) -> object:
        return script[index] if index < len(script) else _KEEP

    return policy


def _keep(index: int, frame: bytes) -> object:
    return _KEEP


# ---------------------------------------------------------------- hypothesis

ALPHABET = b"abc\r\n"
byte_terminators = st.one_of(
    st.sampled_from([b"\r\n", b"\r\n\r\n", b"aa", b"aaa", b"aba", b"abab", b"\n"]),
    st.lists(st.sampled_from(list(ALPHABET)), min_size=1, max_size=4).map(bytes),
)
# int 0 is left out: see the module docstring.
terminators = st.one_of(byte_terminators, st.integers(1, 12), st.none())


@st.composite
def cases(draw: st.DrawFn, *, scripted: bool) -> tuple[list[bytes], Term, list[Term]]:
    initial = draw(terminators)
    script = draw(st.lists(terminators, max_size=8)) if scripted else []
    pieces = {b"a", b"b", b"c", b"x", b"\r", b"\n", b"\r\n"}
    for term in (initial, *script):
        if isinstance(term, bytes):
            pieces.update(term[:n] for n in range(1, len(term) + 1))
    stream = b"".join(draw(st.lists(st.sampled_from(sorted(pieces)), max_size=25)))
    if draw(st.integers(0, 5)) == 0:
        chunks = [stream[i : i + 1] for i in range(len(stream))]
    else:
        cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=10))))
        bounds = [0, *(c for c in cuts if c < len(stream)), len(stream)]
        chunks = [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    return chunks, initial, script


@settings(max_examples=EXAMPLES, deadline=None)
@given(cases(scripted=False))
def test_frames_and_held_back_bytes_equal_asynchat_after_every_chunk(
    case: tuple[list[bytes], Term, list[Term]],
) -> None:
    chunks, initial, _ = case
    _compare(chunks, initial, _keep)


@settings(max_examples=EXAMPLES, deadline=None)
@given(cases(scripted=True))
def test_terminator_changes_from_the_frame_handler_act_as_in_asynchat(
    case: tuple[list[bytes], Term, list[Term]],
) -> None:
    chunks, initial, script = case
    _compare(chunks, initial, _scripted(script))


# ---------------------------------------------------------------- explicit examples


def _cut(stream: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [stream]
    return [stream[i : i + size] for i in range(0, len(stream), size)]


CHUNK_SIZES = [None, *range(1, 10)]  # whole, then packets of 1 to 9 bytes

HTTP_REQUESTS = (
    b"POST /echo HTTP/1.0\r\nHost: example\r\nContent-Length: 11\r\n\r\nhello world"
    b"GET / HTTP/1.0\r\n\r\n"
    b"POST /x HTTP/1.0\r\ncontent-length: 3\r\n\r\n\r\n\r"
    b"GET /tail HTTP/1.0\r\nX-Partial: yes\r\n\r"
)


def _http_policy(index: int, frame: bytes) -> object:
    """Headers end at a blank line; a Content-Length >= 1 then asks for that many bytes."""
    if frame.startswith((b"POST", b"GET")):
        for line in frame.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and int(value) > 0:
                return int(value)
        return _KEEP
    return b"\r\n\r\n"  # a body ended: back to headers


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_http_headers_then_content_length_body_frame_as_in_asynchat(size: int | None) -> None:
    frames = _compare(_cut(HTTP_REQUESTS, size), b"\r\n\r\n", _http_policy)
    assert frames == [
        b"POST /echo HTTP/1.0\r\nHost: example\r\nContent-Length: 11",
        b"hello world",
        b"GET / HTTP/1.0",
        b"POST /x HTTP/1.0\r\ncontent-length: 3",
        b"\r\n\r",
    ]


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("terminator", "stream"),
    [
        (b"aa", b"aaaxaaaaab" + b"a"),
        (b"\r\n\r\n", b"x\r\n\r\r\n\r\ny\r\n\r\n\r\n\r\nz\r\n\r"),
        (b"aba", b"abababaxabab"),
        (b"\n", b"one\ntwo\n\nthree"),
        (5, b"0123456789"),
        (None, b"every byte is data\r\n"),
    ],
)
def test_fixed_terminators_frame_as_in_asynchat(
    terminator: Term, stream: bytes, size: int | None
) -> None:
    _compare(_cut(stream, size), terminator, _keep)
