"""Fuzzing the core: one byte string decoded into a whole `Channel` scenario.

Theory of operation: every fuzz input is one byte string, decoded deterministically by
`decode` into a terminator script (the terminator to start with and the ones a handler sets
after each frame), a frame size limit, chunk sizes, points where the reading loop is
abandoned, and the stream itself.  `check_channel` runs that case through `Channel` and
checks the core's own invariants; any other exception, or an ``AssertionError``, is a
finding.  The invariants:

* nothing lost or duplicated: the `Data` bytes and matched terminators, in order, rebuild
  exactly the bytes fed (with receive_eof at the end); if `FrameTooLarge` is raised, bytes
  delivered plus ``buffered_input`` equal the bytes fed;
* `frames()` yields exactly the frames the event API delivers;
* no exception but the documented `FrameTooLarge`;
* memory bounded: after each chunk, the channel holds at most ``max_frame_size`` plus a
  partial terminator.

`check_protocol` is the byte-string target of a user's `Chat` factory for the generic
engines (atheris, hypothesis): the input's first bytes choose chunk sizes, the rest is the
stream.  Random bytes seldom end a frame, so `sanschat.fuzz._protocol` (the default engine
for ``--target``) is the one that finds protocol bugs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from .._channel import Channel, Terminator
from .._chat import Chat
from .._errors import FrameTooLarge, ProtocolError
from .._events import Data, EndOfStream, TerminatorFound
from ..testing import transcript

__all__ = ["Case", "check_channel", "check_protocol", "decode"]

_ALPHABET = b"\r\n;ab"


@dataclass(frozen=True)
class Case:
    """One decoded fuzz input (see `decode`)."""

    script: tuple[Terminator, ...]
    """The first terminator, then the one set after each frame (the last one stays)."""
    limit: int | None
    """The ``max_frame_size`` of every terminator (None: no limit)."""
    sizes: tuple[int, ...]
    """Chunk sizes, used in turn."""
    abandon: tuple[int, ...]
    """Per chunk, stop iterating after this many events (0: iterate to the end)."""
    stream: bytes
    """The bytes received."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return value

    def term_bytes(self) -> bytes:
        return bytes(_ALPHABET[self.byte() % len(_ALPHABET)] for _ in range(1 + self.byte() % 3))


def decode(data: bytes) -> Case:
    """Decode a fuzz input into a `Case`; every byte string is a valid case."""
    reader = _Reader(data)
    script: list[Terminator] = []
    for _ in range(1 + reader.byte() % 6):
        kind = reader.byte() % 4
        if kind == 0:
            script.append(reader.term_bytes())
        elif kind == 1:
            script.append(reader.byte() % 24)
        elif kind == 2:
            script.append(
                tuple(dict.fromkeys(reader.term_bytes() for _ in range(1 + reader.byte() % 3)))
            )
        else:
            script.append(None)
    flags = reader.byte()
    limit = None if flags & 1 else reader.byte() % 64
    sizes = tuple(1 + reader.byte() % 32 for _ in range(1 + reader.byte() % 4))
    abandon = tuple(reader.byte() % 4 for _ in range(1 + reader.byte() % 4))
    rest = data[reader.pos :]
    stream = bytes(_ALPHABET[b % len(_ALPHABET)] for b in rest) if flags & 2 else rest
    return Case(tuple(script), limit, sizes, abandon, stream)


def _chunks(case: Case) -> list[bytes]:
    chunks: list[bytes] = []
    pos = 0
    for size in itertools.cycle(case.sizes):
        if pos >= len(case.stream):
            return chunks
        chunks.append(case.stream[pos : pos + size])
        pos += size
    return chunks  # pragma: no cover - the cycle never ends by itself


def _longest(terminator: Terminator) -> int:
    if isinstance(terminator, bytes):
        return len(terminator)
    if isinstance(terminator, tuple):
        return max(map(len, terminator))
    return 0


def _events_run(case: Case) -> tuple[list[bytes], bool]:
    """Run *case* through the event API, checking the invariants; return its frames."""
    channel = Channel(case.script[0], max_frame_size=case.limit)
    script = list(case.script[1:])
    rebuilt = bytearray()
    frames: list[bytes] = []
    frame = bytearray()
    fed = 0
    stops = itertools.cycle(case.abandon)

    def handle(event: object) -> None:
        if isinstance(event, Data):
            assert event.data, "empty Data event"
            rebuilt.extend(event.data)
            frame.extend(event.data)
        elif isinstance(event, TerminatorFound):
            if isinstance(event.terminator, bytes):
                rebuilt.extend(event.terminator)
            frames.append(bytes(frame))
            frame.clear()
            _next_terminator(channel, script, case.limit)

    try:
        for chunk in _chunks(case):
            fed += len(chunk)
            stop = next(stops)
            for count, event in enumerate(channel.receive(chunk), 1):
                handle(event)
                if count == stop:
                    break  # abandon the loop: the next receive must go on where it stopped
            else:
                limit, held = channel.max_frame_size, _longest(channel.get_terminator())
                if limit is not None:
                    assert channel.buffered_input <= limit + max(held - 1, 0), (
                        f"{channel.buffered_input} bytes held over max_frame_size={limit}"
                    )
        ended = False
        for event in channel.receive_eof():
            assert not ended, "an event after EndOfStream"
            handle(event)
            ended = isinstance(event, EndOfStream)
        assert ended, "receive_eof() did not end with EndOfStream"
    except FrameTooLarge as error:
        assert len(rebuilt) + error.buffered == fed, (
            f"{fed} bytes fed, {len(rebuilt)} delivered, {error.buffered} reported held"
        )
        return frames, False
    assert bytes(rebuilt) == case.stream, "the events do not rebuild the stream"
    return frames, True


def _frames_run(case: Case) -> list[bytes]:
    channel = Channel(case.script[0], max_frame_size=case.limit)
    script = list(case.script[1:])
    frames: list[bytes] = []
    for chunk in _chunks(case):
        for frame in channel.frames(chunk):
            frames.append(frame)
            _next_terminator(channel, script, case.limit)
    rest = bytearray()
    for event in channel.receive_eof():
        if isinstance(event, Data):
            rest += event.data
        elif isinstance(event, TerminatorFound):  # a held shorter alternative of a tuple
            frames.append(bytes(rest))
            rest.clear()
            _next_terminator(channel, script, case.limit)
    return frames


def _next_terminator(channel: Channel, script: list[Terminator], limit: int | None) -> None:
    """After a frame: set the script's next terminator, if it has one left."""
    if script:
        channel.set_terminator(script.pop(0), max_frame_size=limit)


def check_channel(data: bytes) -> None:
    """Run one fuzz input through `Channel`; raise on any broken invariant (see above)."""
    case = decode(data)
    frames, complete = _events_run(case)
    if not complete:
        return
    assert _frames_run(case) == frames, "frames() and receive() disagree"


def check_protocol(make_chat: Callable[[], Chat]) -> Callable[[bytes], None]:
    """A fuzz target for a user's `Chat` factory.

    The returned function feeds its input whole and cut by sizes taken from its first
    bytes, and asserts that the chat raised nothing but `ProtocolError`s and sent the same
    bytes, closing the same way, both times.
    """

    def target(data: bytes) -> None:
        case = decode(data[:8])
        stream = data[8:]
        whole = transcript(make_chat(), [stream], eof=True)
        cut = transcript(
            make_chat(), _chunks(Case((None,), None, case.sizes, (0,), stream)), eof=True
        )
        for run in (whole, cut):
            if run.error is not None and not issubclass(run.error, ProtocolError):
                raise AssertionError(f"the protocol raised {run.error.__name__}")
        assert whole == cut, f"the answer depends on how the input is cut: {whole} != {cut}"

    return target
