"""Throughput of sanschat's core next to its peers, measured side by side in one process.

Theory of operation: every workload builds its input once (untimed), then runs each
contender ``--repeat`` times, interleaved (the order rotates every round, so no contender
always runs right after the same one), and keeps the best round: on a noisy machine the
fastest run is the one least disturbed.  A round of a fast contender repeats the whole
stream enough times to last ``min_time`` seconds, so the timer's resolution does not
matter.  Every contender's output is checked after every round (frame count plus the last
frame or the payload byte count) against values computed from the input; a contender that
gets it wrong stops the script, because a wrong benchmark is worse than none.  Ratios are
only ever taken within one run.  Nothing here asserts a time: targets are printed as
MET/NOT MET.

The read shapes (W1-W5) are the ones servers see: one short request per read, 1-byte
reads, 1 KiB and 64 KiB reads of 16-byte lines, and 64 KiB frames in 4 KiB reads.  Each is
read through every sanschat API a user has (``frames()``, ``receive()`` events with
``isinstance`` and with ``type() is`` dispatch, and ``Chat.feed`` in both handler styles)
next to stdlib asynchat, Twisted and a plain-Python floor.  The garbage collector stays on
while timing, as in a server (``--gc-off`` gives the secondary figure).

Builds: the header says which sanschat build this process loaded (``sanschat.COMPILED``).
With ``--compiled-path DIR`` the script also runs itself in a child process with
``PYTHONPATH=DIR`` and prints both builds side by side; each build's ratios are taken
against the peers measured in its own process.

Lines end in ``b"\\n"`` (16-byte lines are 15 digits + ``b"\\n"``).  Run with ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import _report

import sanschat
from sanschat import Channel, Chat, Data, TerminatorFound

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import asynchat
    except ImportError:  # Python >= 3.12: the stdlib peer is gone
        asynchat = None  # type: ignore[assignment]

try:
    from twisted.internet.testing import StringTransport
    from twisted.protocols.basic import LineOnlyReceiver, LineReceiver
except ImportError:  # the "bench" extra is not installed
    LineOnlyReceiver = LineReceiver = StringTransport = None  # type: ignore[assignment,misc]

try:
    import anyio
    from anyio.abc import ByteReceiveStream
    from anyio.streams.buffered import BufferedByteReceiveStream
except ImportError:
    anyio = None  # type: ignore[assignment]

# trio has no in-process line splitter of its own (its streams hand out raw chunks), so it
# is not a peer here; trio is measured end to end by the driver benchmark.

KiB = 1024
MiB = 1024 * KiB
BIG = 1 << 30  # a line-length limit that never triggers

#: (count, check value): what a contender hands back for verification.
Outcome = tuple[int, Any]


# --------------------------------------------------------------------------- inputs


def short_lines(count: int) -> bytes:
    """*count* 16-byte lines: 15 decimal digits (the line number) and ``b"\\n"``."""
    return b"".join(b"%015d\n" % i for i in range(count))


def resp_values(count: int) -> bytes:
    """*count* RESP bulk strings (``$22``, CRLF, 16 ``v`` and the 6-digit number, CRLF)."""
    return b"".join(b"$22\r\n%s%06d\r\n" % (RESP_VALUE, i) for i in range(count))


RESP_VALUE = b"v" * 16


def cut(data: bytes, size: int) -> list[bytes]:
    """*data* cut into chunks of *size* bytes (the last one shorter)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def long_line(size: int) -> bytes:
    """One line of *size* bytes, terminator included, with no ``b"\\n"`` inside."""
    body = bytes(range(11, 11 + 200)) * (size // 200 + 1)
    return body[: size - 1] + b"\n"


def lazy_chunks(line: bytes, lines: int, chunk: int) -> Iterator[bytes]:
    """*lines* copies of *line* in *chunk*-byte pieces, made one at a time."""
    for _ in range(lines):
        for i in range(0, len(line), chunk):
            yield line[i : i + chunk]


# --------------------------------------------------------------------------- sanschat


def sanschat_frames(chunks: Iterable[bytes]) -> Outcome:
    channel = Channel(b"\n")
    frames = channel.frames
    n = 0
    frame = b""
    for chunk in chunks:
        for frame in frames(chunk):  # noqa: B007 (the last frame is checked)
            n += 1
    return n, frame


def sanschat_events(chunks: Iterable[bytes]) -> Outcome:
    """The event API as a user writes it: dispatch with isinstance, use Data.data."""
    channel = Channel(b"\n")
    receive = channel.receive
    n = payload = 0
    for chunk in chunks:
        for event in receive(chunk):
            if isinstance(event, Data):
                payload += len(event.data)
            elif isinstance(event, TerminatorFound):
                n += 1
    return n, payload


def sanschat_events_type(chunks: Iterable[bytes]) -> Outcome:
    """The same with ``type(event) is`` dispatch: exact, and cheaper than isinstance."""
    channel = Channel(b"\n")
    receive = channel.receive
    n = payload = 0
    for chunk in chunks:
        for event in receive(chunk):
            if type(event) is Data:
                payload += len(event.data)
            elif type(event) is TerminatorFound:
                n += 1
    return n, payload


def sanschat_events_match(chunks: Iterable[bytes]) -> Outcome:
    """The same with a ``match`` statement, the other documented way to dispatch."""
    channel = Channel(b"\n")
    receive = channel.receive
    n = payload = 0
    for chunk in chunks:
        for event in receive(chunk):
            match event:
                case Data(data=data):
                    payload += len(data)
                case TerminatorFound():
                    n += 1
    return n, payload


class FrameCounter(Chat):
    """A whole-frame handler: counts frames and keeps the last one."""

    terminator = b"\n"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.last = b""

    def found_frame(self, frame: bytes) -> None:
        self.count += 1
        self.last = frame


class CollectingChat(Chat):
    """An asynchat-style handler, written as asynchat's documentation shows."""

    terminator = b"\n"

    def __init__(self) -> None:
        super().__init__()
        self.ibuffer: list[bytes] = []
        self.count = 0
        self.last = b""

    def collect_incoming_data(self, data: bytes) -> None:
        self.ibuffer.append(data)

    def found_terminator(self) -> None:
        self.last = b"".join(self.ibuffer)
        self.ibuffer = []
        self.count += 1


def _chat(chat: FrameCounter | CollectingChat, chunks: Iterable[bytes]) -> Outcome:
    feed = chat.feed
    for chunk in chunks:
        feed(chunk)
        while chat.input_backlog:  # past Chat.frame_budget: the next rounds, as a driver does
            feed(b"")
    return chat.count, chat.last


def chat_frames(chunks: Iterable[bytes]) -> Outcome:
    return _chat(FrameCounter(), chunks)


def chat_collect(chunks: Iterable[bytes]) -> Outcome:
    return _chat(CollectingChat(), chunks)


class SwitchingChat(Chat):
    """RESP's bulk strings: a ``$N`` line, then N bytes (+ CRLF) read by count, then lines."""

    terminator = b"\r\n"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.last = b""
        self.header = True

    def found_frame(self, frame: bytes) -> None:
        if self.header:
            self.header = False
            self.set_terminator(int(frame[1:]) + 2)
        else:
            self.header = True
            self.count += 1
            self.last = frame[:-2]
            self.set_terminator(b"\r\n")


def chat_switching(chunks: Iterable[bytes]) -> Outcome:
    return _chat(SwitchingChat(), chunks)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- baselines


def bytes_split(chunks: Sequence[bytes]) -> Outcome:
    """The floor for Python code: split each chunk in C, keep the unfinished line."""
    carry = b""
    n = 0
    line = b""
    for chunk in chunks:
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        for line in lines:  # noqa: B007 (the last line is checked)
            n += 1
    return n, line


def find_copy(chunks: Sequence[bytes]) -> Outcome:
    """The floor for long lines: one bytearray, a search memo, one copy per frame."""
    buf = bytearray()
    scanned = 0
    n = 0
    frame = b""
    for chunk in chunks:
        buf += chunk
        while True:
            index = buf.find(b"\n", scanned)
            if index < 0:
                scanned = len(buf)
                break
            frame = bytes(buf[:index])
            del buf[: index + 1]
            scanned = 0
            n += 1
    return n, frame


# --------------------------------------------------------------------------- asynchat


class FakeSocket:
    """Just enough socket for asyncore.dispatcher: recv hands out chunks, send takes all."""

    def __init__(self, chunks: Iterable[bytes] = ()) -> None:
        self._next = iter(chunks).__next__
        self.sent = 0
        self.last_sent = b""

    def recv(self, size: int) -> bytes:
        chunk = self._next()
        if len(chunk) > size:
            raise AssertionError(f"asynchat asked for {size} bytes, the chunk has {len(chunk)}")
        return chunk

    def send(self, data: bytes) -> int:
        self.sent += len(data)
        self.last_sent = data
        return len(data)


if asynchat is not None:

    class AsynchatLines(asynchat.async_chat):
        """A line collector written as the asynchat documentation shows."""

        ac_in_buffer_size = 65536
        ac_out_buffer_size = 65536

        def __init__(self, sock: FakeSocket) -> None:
            super().__init__(sock=None, map={})  # a private map: nothing global is touched
            self.socket = sock  # type: ignore[assignment]
            self.connected = True
            self.set_terminator(b"\n")
            self.ibuffer: list[bytes] = []
            self.count = 0
            self.last = b""

        def collect_incoming_data(self, data: bytes) -> None:
            self.ibuffer.append(data)

        def found_terminator(self) -> None:
            self.last = b"".join(self.ibuffer)
            self.ibuffer = []
            self.count += 1


if asynchat is not None:

    class AsynchatSwitching(asynchat.async_chat):
        """`SwitchingChat` written for asynchat: collect, then switch in found_terminator."""

        ac_in_buffer_size = 65536

        def __init__(self, sock: FakeSocket) -> None:
            super().__init__(sock=None, map={})
            self.socket = sock  # type: ignore[assignment]
            self.connected = True
            self.set_terminator(b"\r\n")
            self.ibuffer: list[bytes] = []
            self.count = 0
            self.last = b""
            self.header = True

        def collect_incoming_data(self, data: bytes) -> None:
            self.ibuffer.append(data)

        def found_terminator(self) -> None:
            frame = b"".join(self.ibuffer)
            self.ibuffer = []
            if self.header:
                self.header = False
                self.set_terminator(int(frame[1:]) + 2)
            else:
                self.header = True
                self.count += 1
                self.last = frame[:-2]
                self.set_terminator(b"\r\n")


def asynchat_switching(chunks: Sequence[bytes]) -> Outcome:
    chat = AsynchatSwitching(FakeSocket(chunks))
    handle_read = chat.handle_read
    for _ in range(len(chunks)):
        handle_read()
    return chat.count, chat.last


def asynchat_lines(chunks: Sequence[bytes]) -> Outcome:
    chat = AsynchatLines(FakeSocket(chunks))
    handle_read = chat.handle_read
    for _ in range(len(chunks)):
        handle_read()
    return chat.count, chat.last


# --------------------------------------------------------------------------- Twisted


if LineOnlyReceiver is not None:

    class TwistedLineOnly(LineOnlyReceiver):
        delimiter = b"\n"
        MAX_LENGTH = BIG
        count = 0
        last = b""

        def lineReceived(self, line: bytes) -> None:
            self.count += 1
            self.last = line

    class TwistedLine(LineReceiver):
        delimiter = b"\n"
        MAX_LENGTH = BIG
        count = 0
        last = b""

        def lineReceived(self, line: bytes) -> None:
            self.count += 1
            self.last = line


def _twisted(cls: type[Any], chunks: Sequence[bytes]) -> Outcome:
    proto = cls()
    proto.makeConnection(StringTransport())  # type: ignore[no-untyped-call]
    data_received = proto.dataReceived
    for chunk in chunks:
        data_received(chunk)
    return proto.count, proto.last


def twisted_line_only(chunks: Sequence[bytes]) -> Outcome:
    return _twisted(TwistedLineOnly, chunks)


def twisted_line(chunks: Sequence[bytes]) -> Outcome:
    return _twisted(TwistedLine, chunks)


# --------------------------------------------------------------------------- asyncio, anyio


def asyncio_readline(chunks: Sequence[bytes]) -> Outcome:
    """StreamReader as a protocol feeds it: feed_data per chunk, readline per line."""

    async def main() -> Outcome:
        reader = asyncio.StreamReader(limit=BIG)

        async def feed() -> None:
            for chunk in chunks:
                reader.feed_data(chunk)
                await asyncio.sleep(0)  # let the reader drain what it can
            reader.feed_eof()

        feeder = asyncio.create_task(feed())
        readline = reader.readline
        n = 0
        last = b""
        while True:
            line = await readline()
            if not line:
                break
            n += 1
            last = line
        await feeder
        return n, last[:-1]

    return asyncio.run(main())


if anyio is not None:

    class ChunkStream(ByteReceiveStream):
        """An anyio byte stream over a list of chunks."""

        def __init__(self, chunks: Sequence[bytes]) -> None:
            self._next = iter(chunks).__next__

        async def receive(self, max_bytes: int = 65536) -> bytes:
            try:
                return self._next()
            except StopIteration:
                raise anyio.EndOfStream from None

        async def aclose(self) -> None:
            pass


def anyio_receive_until(chunks: Sequence[bytes]) -> Outcome:
    """anyio's BufferedByteReceiveStream.receive_until, on the asyncio backend."""

    async def main() -> Outcome:
        stream = BufferedByteReceiveStream(ChunkStream(chunks))
        receive_until = stream.receive_until
        n = 0
        last = b""
        try:
            while True:
                last = await receive_until(b"\n", BIG)
                n += 1
        except anyio.IncompleteRead:
            pass
        return n, last

    return anyio.run(main, backend="asyncio")


# --------------------------------------------------------------------------- send side


def sanschat_send_drain(messages: Sequence[bytes]) -> Outcome:
    channel = Channel()
    push = channel.push
    for message in messages:
        push(message)
    data_to_send = channel.data_to_send
    sent = 0
    last: bytes | memoryview = b""
    while chunk := data_to_send(65536):
        sent += len(chunk)
        last = chunk
    return sent, bytes(last[-16:])


def sanschat_send_each(messages: Sequence[bytes]) -> Outcome:
    """A push, then data_to_send, per message: what a driver does with a writable socket."""
    channel = Channel()
    push = channel.push
    data_to_send = channel.data_to_send
    sent = 0
    chunk: bytes | memoryview = b""
    for message in messages:
        push(message)
        chunk = data_to_send(65536)
        sent += len(chunk)
    return sent, bytes(chunk)


def asynchat_send(messages: Sequence[bytes]) -> Outcome:
    sock = FakeSocket()
    chat = AsynchatLines(sock)
    push = chat.push  # push() calls initiate_send(), which sends at once
    for message in messages:
        push(message)
    return sock.sent, sock.last_sent[-16:]


# --------------------------------------------------------------------------- harness


@dataclass
class Contender:
    name: str
    run: Callable[[Sequence[Any]], Outcome]
    data: Sequence[Any]
    expect: Outcome
    units: int  # frames, bytes or messages handled by one run
    best: float = math.inf  # seconds per run
    number: int = 1  # runs per timed round

    @property
    def rate(self) -> float:
        return self.units / self.best


@dataclass
class Workload:
    key: str
    title: str
    unit: str  # e.g. "M frames/s"
    scale: float  # the unit's multiplier, e.g. 1e6 for "M frames/s"
    contenders: list[Contender]
    notes: list[str] = field(default_factory=list)


def check(contender: Contender, outcome: Outcome) -> None:
    if outcome != contender.expect:
        raise AssertionError(
            f"{contender.name} is wrong: got {outcome!r:.200}, expected {contender.expect!r:.200}"
        )


def timed(contender: Contender, gc_off: bool) -> float:
    """Seconds for one round of *contender* (``number`` runs), verified.

    The collector runs during the round, as it does in a server (objects a contender
    allocates per frame cost their share of collections); the heap is collected before
    the round so that one contender's garbage is not charged to the next.  With *gc_off*
    the collector is paused during the round instead.
    """
    run, data = contender.run, contender.data
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(contender.number):
            outcome = run(data)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    check(contender, outcome)
    return elapsed


def measure(workload: Workload, repeat: int, min_time: float, gc_off: bool) -> None:
    """Best of *repeat* interleaved rounds for every contender of *workload*."""
    contenders = workload.contenders
    for contender in contenders:  # warm-up, verification and calibration
        once = timed(contender, gc_off)
        contender.number = max(1, math.ceil(min_time / max(once, 1e-9)))
    for round_ in range(repeat):
        shift = round_ % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            elapsed = timed(contender, gc_off) / contender.number
            contender.best = min(contender.best, elapsed)
    progress(f"  {workload.key} done")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Sizes:
    single_lines: int  # W1: lines, one per read
    trickle_bytes: int  # W2
    kib_bytes: int  # W3
    bulk_bytes: int  # W4
    long_bytes: int  # W5
    memory_bytes: int  # W6
    messages: int  # W7
    repeat: int
    min_time: float


FULL = Sizes(
    100_000, 300_000, 4 * MiB, 4 * MiB, 32 * MiB, 64 * MiB, 100_000, repeat=5, min_time=0.25
)
QUICK = Sizes(20_000, 40_000, 1 * MiB, 1 * MiB, 8 * MiB, 16 * MiB, 100_000, repeat=5, min_time=0.12)

Entry = tuple[str, Callable[[Sequence[bytes]], Outcome], bool]

FRAMES = "sanschat frames()"
EVENTS = "sanschat receive() events"
EVENTS_TYPE = "sanschat receive() events, type() is"
EVENTS_MATCH = "sanschat receive() events, match"
CHAT_FRAME = "sanschat Chat.feed, found_frame"
CHAT_COLLECT = "sanschat Chat.feed, collect_incoming_data"
SPLIT = "bytes.split + carry"
FIND = "find + copy"
ASYNCHAT = "asynchat"
CHAT_SWITCHING = "sanschat Chat.found_frame + set_terminator"
TWISTED = "Twisted LineOnlyReceiver"
TWISTED_LR = "Twisted LineReceiver"


def sanschat_entries(match: bool = False) -> list[Entry]:
    """sanschat's every way of reading a stream; the flag says "event API" (payload checked)."""
    entries: list[Entry] = [
        (FRAMES, sanschat_frames, False),
        (EVENTS, sanschat_events, True),
        (EVENTS_TYPE, sanschat_events_type, True),
    ]
    if match:
        entries.append((EVENTS_MATCH, sanschat_events_match, True))
    entries += [(CHAT_FRAME, chat_frames, False), (CHAT_COLLECT, chat_collect, False)]
    return entries


def peer_entries(line_receiver: bool) -> list[Entry]:
    entries: list[Entry] = []
    if asynchat is not None:
        entries.append((ASYNCHAT, asynchat_lines, False))
    if LineOnlyReceiver is not None:
        entries.append((TWISTED, twisted_line_only, False))
        if line_receiver:
            entries.append((TWISTED_LR, twisted_line, False))
    return entries


def _lines_contenders(
    entries: Iterable[Entry], chunks: list[bytes], count: int, last: bytes, payload: int
) -> list[Contender]:
    """Contenders over one stream of lines; the flag says "event API" (payload checked)."""
    return [
        Contender(name, run, chunks, (count, payload if events else last), count)
        for name, run, events in entries
    ]


def short_lines_workload(
    key: str, title: str, chunks: list[bytes], entries: list[Entry], notes: list[str]
) -> Workload:
    """16-byte lines cut into *chunks*; every contender frames the whole stream."""
    data = b"".join(chunks)
    count = len(data) // 16
    return Workload(
        key,
        title,
        "M frames/s",
        1e6,
        _lines_contenders(entries, chunks, count, data[-16:-1], count * 15),
        notes,
    )


def single_workload(sizes: Sizes) -> Workload:
    count = sizes.single_lines
    entries = [*sanschat_entries(), (SPLIT, bytes_split, False), *peer_entries(True)]
    return short_lines_workload(
        "W1",
        f"one 16-byte line per read ({count} reads): request/response traffic",
        cut(short_lines(count), 16),
        entries,
        ["Each chunk is exactly one line: the cost of one call that completes one frame."],
    )


def trickle_workload(sizes: Sizes) -> Workload:
    count = sizes.trickle_bytes // 16
    entries = [*sanschat_entries(), (SPLIT, bytes_split, False), *peer_entries(True)]
    return short_lines_workload(
        "W2",
        f"16-byte lines in 1-byte reads ({count * 16 / 1000:.0f} kB, {count} lines)",
        cut(short_lines(count), 1),
        entries,
        [],
    )


def kib_workload(sizes: Sizes) -> Workload:
    count = sizes.kib_bytes // 16
    entries = [*sanschat_entries(), (SPLIT, bytes_split, False), *peer_entries(True)]
    return short_lines_workload(
        "W3",
        f"16-byte lines in 1 KiB reads ({count * 16 / MiB:.0f} MiB, {count} lines)",
        cut(short_lines(count), 1023),
        entries,
        ["Chunks are 1023 bytes, so every cut falls at a different offset inside a line."],
    )


def bulk_workload(sizes: Sizes) -> Workload:
    count = sizes.bulk_bytes // 16
    data = short_lines(count)
    chunks = cut(data, 65535)
    entries = [*sanschat_entries(match=True), (SPLIT, bytes_split, False), *peer_entries(False)]
    entries.append(("asyncio StreamReader.readline", asyncio_readline, False))
    if anyio is not None:
        entries.append(("anyio receive_until", anyio_receive_until, False))
    contenders = _lines_contenders(entries, chunks, count, data[-16:-1], count * 15)
    if LineReceiver is not None:
        # LineReceiver re-splits the rest of the buffer per line, O(n^2) in a 64 KiB chunk:
        # give it a sixteenth of the stream so that it does not take the whole time budget.
        few = chunks[: max(1, len(chunks) // 16)]
        part = b"".join(few)
        few_count = part.count(b"\n")
        tail = part[: part.rindex(b"\n")]
        contenders.append(
            Contender(
                f"{TWISTED_LR} (1/16 of the stream)",
                twisted_line,
                few,
                (few_count, tail[tail.rfind(b"\n") + 1 :]),
                few_count,
            )
        )
    return Workload(
        "W4",
        f"16-byte lines in 64 KiB reads, bulk ({len(data) / MiB:.0f} MiB, {count} lines)",
        "M frames/s",
        1e6,
        contenders,
        notes=[
            "Chunks are 65535 bytes, so every cut falls at a different offset inside a line.",
            "trio: no in-process line splitter, measured end to end by the driver benchmark.",
        ],
    )


def long_lines_workload(sizes: Sizes) -> Workload:
    line = long_line(64 * KiB)
    count = sizes.long_bytes // len(line)
    chunks = list(lazy_chunks(line, count, 4 * KiB))
    entries = [*sanschat_entries(), (FIND, find_copy, False), *peer_entries(False)]
    contenders = _lines_contenders(entries, chunks, count, line[:-1], count * (len(line) - 1))
    for contender in contenders:
        contender.units = count * len(line)  # bytes, for MiB/s
    return Workload(
        "W5",
        f"64 KiB lines in 4 KiB reads ({count * len(line) / MiB:.0f} MiB)",
        "MiB/s",
        MiB,
        contenders,
        notes=['Lines are 65535 bytes + b"\\n", so they end exactly at a chunk boundary.'],
    )


def switching_workload(sizes: Sizes) -> Workload:
    count = sizes.bulk_bytes // 64
    chunks = cut(resp_values(count), 64 * KiB)
    expect = (count, RESP_VALUE + b"%06d" % (count - 1))
    contenders = [Contender(CHAT_SWITCHING, chat_switching, chunks, expect, count)]
    if asynchat is not None:
        contenders.append(Contender(ASYNCHAT, asynchat_switching, chunks, expect, count))
    return Workload(
        "W8",
        f"a terminator switch per frame: RESP bulk strings ($N line, then N bytes by count) "
        f"pipelined, in 64 KiB reads ({count} values)",
        "k values/s",
        1e3,
        contenders,
        notes=["The handler sets the terminator in every frame: a line, then an int count."],
    )


def send_workload(sizes: Sizes) -> Workload:
    messages = [b"%015d\n" % i for i in range(sizes.messages)]
    expect = (16 * len(messages), messages[-1])
    contenders = [
        Contender(
            "sanschat push() x N, then data_to_send()",
            sanschat_send_drain,
            messages,
            expect,
            len(messages),
        ),
        Contender(
            "sanschat push() + data_to_send() per message",
            sanschat_send_each,
            messages,
            expect,
            len(messages),
        ),
    ]
    if asynchat is not None:
        contenders.append(
            Contender(
                "asynchat push() (sends at once)", asynchat_send, messages, expect, len(messages)
            )
        )
    return Workload(
        "W7",
        f"send: {len(messages)} pushes of 16 bytes",
        "M messages/s",
        1e6,
        contenders,
        notes=["Fake sockets accept every byte; 64 KiB chunks; no target."],
    )


@dataclass
class MemoryResult:
    name: str
    peak: int  # bytes, over the whole stream
    peak_quarter: int  # bytes, over the first quarter of the stream


def peak_memory(name: str, run: Callable[[int], Outcome], line: bytes, count: int) -> int:
    """Peak traced bytes while *run* frames *count* lines generated lazily."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        outcome = run(count)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if outcome != (count, line[:-1]):
        raise AssertionError(f"{name} is wrong in the memory run: {outcome!r:.200}")
    return peak


def memory_workload(sizes: Sizes) -> tuple[list[MemoryResult], int, int]:
    """Peak memory over the whole stream and over a quarter of it: it must not grow."""
    line = long_line(64 * KiB)
    count = sizes.memory_bytes // len(line)

    def sanschat_lazy(lines: int) -> Outcome:
        return sanschat_frames(lazy_chunks(line, lines, 4 * KiB))

    def asynchat_lazy(lines: int) -> Outcome:
        chat = AsynchatLines(FakeSocket(lazy_chunks(line, lines, 4 * KiB)))
        for _ in range(lines * len(line) // (4 * KiB)):
            chat.handle_read()
        return chat.count, chat.last

    runs: list[tuple[str, Callable[[int], Outcome]]] = [(FRAMES, sanschat_lazy)]
    if asynchat is not None:
        runs.append((ASYNCHAT, asynchat_lazy))
    results = [
        MemoryResult(
            name, peak_memory(name, run, line, count), peak_memory(name, run, line, count // 4)
        )
        for name, run in runs
    ]
    progress("  W6 done")
    return results, len(line), count * len(line)


# --------------------------------------------------------------------------- results
#
# What one process measured, in a form that survives JSON: a child process measuring
# another build (--compiled-path) hands its Result back to the parent this way.


@dataclass
class Target:
    key: str  # the workload it judges
    text: str  # with the measured ratio
    met: bool


@dataclass
class Table:
    key: str
    title: str
    unit: str
    scale: float
    rates: dict[str, float]  # contender name -> units per second, in measurement order
    notes: list[str]


@dataclass
class Result:
    build: str  # "pure Python" or "compiled"
    location: str  # the directory sanschat was imported from
    facts: list[str]
    tables: list[Table]
    memory: list[MemoryResult]
    memory_frame: int
    memory_stream: int
    targets: list[Target]

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Result:
        raw = json.loads(text)
        raw["tables"] = [Table(**t) for t in raw["tables"]]
        raw["memory"] = [MemoryResult(**m) for m in raw["memory"]]
        raw["targets"] = [Target(**t) for t in raw["targets"]]
        return cls(**raw)


def compiled() -> bool:
    """Whether the loaded sanschat is the compiled build (False before that build exists)."""
    return bool(getattr(sanschat, "COMPILED", False))


def build_name() -> str:
    return "compiled" if compiled() else "pure Python"


# --------------------------------------------------------------------------- targets

#: (workload, contender, peer, at least this many times the peer's rate): issue 9's targets,
#: judged for every build.
TARGETS: list[tuple[str, str, str, float]] = [
    ("W1", FRAMES, TWISTED, 1.0),
    ("W1", FRAMES, ASYNCHAT, 2.0),
    ("W1", EVENTS, ASYNCHAT, 1.0),
    ("W2", FRAMES, ASYNCHAT, 2.0),
    ("W2", EVENTS, ASYNCHAT, 1.0),
    ("W4", EVENTS, ASYNCHAT, 4.5),
    ("W4", EVENTS_TYPE, ASYNCHAT, 4.5),
    ("W4", FRAMES, TWISTED, 2.0),
    ("W4", FRAMES, ASYNCHAT, 15.0),
    ("W5", FRAMES, ASYNCHAT, 1.0),
    ("W5", EVENTS, ASYNCHAT, 1.0),
    ("W8", CHAT_SWITCHING, ASYNCHAT, 1.0),
]

#: Judged only when the loaded build is the compiled one.
COMPILED_TARGETS: list[tuple[str, str, str, float]] = [
    ("W4", EVENTS, ASYNCHAT, 7.0),
    ("W4", EVENTS_TYPE, ASYNCHAT, 7.0),
    ("W1", FRAMES, TWISTED, 2.0),
    ("W2", FRAMES, ASYNCHAT, 3.0),
]


def judge(tables: list[Table], wanted: list[tuple[str, str, str, float]], tag: str) -> list[Target]:
    """The targets of *wanted* whose contender and peer were both measured."""
    by_key = {t.key: t for t in tables}
    targets = []
    for key, name, peer, at_least in wanted:
        rates = by_key[key].rates
        if name not in rates or peer not in rates:
            continue
        value = rates[name] / rates[peer]
        met = value >= at_least
        text = f"{tag}{name} >= {at_least:g}x {peer}: {value:.2f}x, {'MET' if met else 'NOT MET'}"
        targets.append(Target(key, text, met))
    return targets


def memory_target(result: Result) -> Target | None:
    sans = next((r for r in result.memory if r.name == FRAMES), None)
    if sans is None:
        return None
    # "Bounded by the largest frame, not the stream": the peak must not grow when the
    # stream is four times longer (10% slack for allocator noise).
    met = sans.peak <= 1.1 * sans.peak_quarter
    stream = result.memory_stream
    text = (
        f"{FRAMES} peak independent of the stream length: "
        f"{sans.peak_quarter / KiB:,.0f} KiB for {stream // 4 // MiB} MiB, "
        f"{sans.peak / KiB:,.0f} KiB for {stream // MiB} MiB "
        f"({sans.peak / result.memory_frame:.2f}x the largest frame), "
        f"{'MET' if met else 'NOT MET'}"
    )
    return Target("W6", text, met)


# --------------------------------------------------------------------------- one build


def facts(sizes: Sizes, quick: bool, gc_off: bool) -> list[str]:
    uname = platform.uname()
    versions = [f"sanschat {sanschat.__version__}"]
    if LineOnlyReceiver is not None:
        import twisted

        versions.append(f"Twisted {twisted.__version__}")
    if anyio is not None:
        from importlib.metadata import version

        versions.append(f"anyio {version('anyio')}")
    return [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        f"processor: {platform.processor() or '(not reported)'}; uname: {uname.system} "
        f"{uname.release} {uname.machine}",
        f"cpu count: {os.cpu_count()}",
        f"peers: {', '.join(versions)}",
        f"mode: {'quick' if quick else 'full'}; best of {sizes.repeat} interleaved rounds, "
        f"each >= {sizes.min_time:g} s; garbage collector "
        + ("OFF during rounds (--gc-off: not how targets are judged)" if gc_off else "on"),
    ]


def run_all(sizes: Sizes, quick: bool, gc_off: bool) -> Result:
    """Measure every workload with the sanschat this process loaded."""
    location = os.path.dirname(os.path.abspath(sanschat.__file__))
    progress(f"measuring the {build_name()} build from {location} (progress on stderr) ...")
    tables = []
    builders = (
        single_workload,
        trickle_workload,
        kib_workload,
        bulk_workload,
        long_lines_workload,
        send_workload,
        switching_workload,
    )
    for build in builders:
        workload = build(sizes)
        measure(workload, sizes.repeat, sizes.min_time, gc_off)
        tables.append(
            Table(
                workload.key,
                workload.title,
                workload.unit,
                workload.scale,
                {c.name: c.rate for c in workload.contenders},
                workload.notes,
            )
        )
        del workload  # free the inputs before the next workload is built
    memory, frame, stream = memory_workload(sizes)
    result = Result(
        build_name(), location, facts(sizes, quick, gc_off), tables, memory, frame, stream, []
    )
    result.targets = judge(tables, TARGETS, "")
    if compiled():
        result.targets += judge(tables, COMPILED_TARGETS, "compiled: ")
    mem = memory_target(result)
    if mem is not None:
        result.targets.append(mem)
    return result


# --------------------------------------------------------------------------- report

ORDER = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8")


def heading(text: str, markdown: bool) -> str:
    return f"### {text}" if markdown else f"== {text}"


def bullets(lines: Iterable[str], markdown: bool) -> list[str]:
    return [f"- {text}" if markdown else f"  {text}" for text in lines]


def fmt_ratio(rates: dict[str, float], name: str, peer: str) -> str:
    if name not in rates or peer not in rates:
        return "n/a"
    return f"{rates[name] / rates[peer]:.2f}x"


def asynchat_peer(rates: dict[str, float]) -> str:
    """The row the "x asynchat" column divides by (W7's is asynchat's push)."""
    if ASYNCHAT in rates:
        return ASYNCHAT
    return next((name for name in rates if name.startswith(ASYNCHAT)), ASYNCHAT)


def render_table(table_: Table, targets: list[Target], markdown: bool) -> list[str]:
    rates = table_.rates
    peer_asynchat = asynchat_peer(rates)
    headers = [
        "contender",
        table_.unit,
        "x asynchat" if peer_asynchat in rates else "",
        "x Twisted LOR" if TWISTED in rates else "",
    ]
    rows = []
    for name in sorted(rates, key=lambda n: -rates[n]):
        row = [name, f"{rates[name] / table_.scale:,.3f}"]
        row.append(fmt_ratio(rates, name, peer_asynchat) if peer_asynchat in rates else "")
        row.append(fmt_ratio(rates, name, TWISTED) if TWISTED in rates else "")
        rows.append(row)
    keep = [i for i, h in enumerate(headers) if h]
    out = [heading(f"{table_.key}: {table_.title}", markdown), ""]
    out += _report.table([headers[i] for i in keep], [[r[i] for i in keep] for r in rows], markdown)
    extra = [f"target: {t.text}" for t in targets] + table_.notes
    if extra:
        out += ["", *bullets(extra, markdown)]
    return [*out, ""]


def memory_title(result: Result) -> str:
    return (
        f"W6: peak memory (tracemalloc), {result.memory_stream / MiB:.0f} MiB of 64 KiB lines "
        "in 4 KiB reads"
    )


def render_memory(result: Result, markdown: bool) -> list[str]:
    headers = ["contender", "peak KiB", "x largest frame", "peak KiB, 1/4 of the stream"]
    rows = [
        [
            r.name,
            f"{r.peak / KiB:,.0f}",
            f"{r.peak / result.memory_frame:.2f}x",
            f"{r.peak_quarter / KiB:,.0f}",
        ]
        for r in result.memory
    ]
    out = [heading(memory_title(result), markdown), "", *_report.table(headers, rows, markdown)]
    targets = [f"target: {t.text}" for t in result.targets if t.key == "W6"]
    if targets:
        out += ["", *bullets(targets, markdown)]
    return [*out, ""]


def render_header(result: Result, markdown: bool) -> list[str]:
    lines = [*result.facts, f"build: {result.build} (sanschat from {result.location})"]
    if markdown:
        return ["## sanschat core benchmark", "", *bullets(lines, True), ""]
    return ["sanschat core benchmark", *bullets(lines, False), ""]


def render_summary(result: Result, markdown: bool, label: str = "") -> list[str]:
    met = sum(t.met for t in result.targets)
    summary = f"{label}targets met: {met} of {len(result.targets)}"
    missed = [f"missed: {t.key} {t.text}" for t in result.targets if not t.met]
    return [f"**{summary}**" if markdown else summary, *bullets(missed, markdown)]


def render_one(result: Result, markdown: bool) -> list[str]:
    out = render_header(result, markdown)
    for key in ORDER:
        if key == "W6":
            out += render_memory(result, markdown)
        else:
            targets = [t for t in result.targets if t.key == key]
            out += render_table(result.table(key), targets, markdown)
    return out + render_summary(result, markdown)


def render_two(a: Result, b: Result, markdown: bool) -> list[str]:
    """Both builds' tables side by side; each build's ratios are against its own peers."""
    la, lb = f"A ({a.build})", f"B ({b.build}, --compiled-path)"
    out = render_header(a, markdown)[:-1]
    out += bullets(
        [
            f"A: {a.build}, sanschat from {a.location}",
            f"B: {b.build}, sanschat from {b.location}, measured in a child process "
            "after A; its ratios are against the peers measured in that process",
        ],
        markdown,
    )
    out.append("")
    for key in ORDER:
        if key == "W6":
            out.append(heading(memory_title(a), markdown))
            out.append("")
            peaks = {r.name: r for r in b.memory}
            rows = [
                [
                    r.name,
                    f"{r.peak / KiB:,.0f}",
                    f"{r.peak_quarter / KiB:,.0f}",
                    f"{peaks[r.name].peak / KiB:,.0f}" if r.name in peaks else "n/a",
                    f"{peaks[r.name].peak_quarter / KiB:,.0f}" if r.name in peaks else "n/a",
                ]
                for r in a.memory
            ]
            out += _report.table(
                ["contender", "A peak KiB", "A 1/4 stream", "B peak KiB", "B 1/4 stream"],
                rows,
                markdown,
            )
        else:
            ta, tb = a.table(key), b.table(key)
            out += [heading(f"{key}: {ta.title}", markdown), ""]
            rows = []
            for name in sorted(ta.rates, key=lambda n: -ta.rates[n]):
                rb = tb.rates.get(name)
                rows.append(
                    [
                        name,
                        f"{ta.rates[name] / ta.scale:,.3f}",
                        fmt_ratio(ta.rates, name, asynchat_peer(ta.rates)),
                        "n/a" if rb is None else f"{rb / tb.scale:,.3f}",
                        fmt_ratio(tb.rates, name, asynchat_peer(tb.rates)),
                        "n/a" if rb is None else f"{rb / ta.rates[name]:.2f}x",
                    ]
                )
            out += _report.table(
                [
                    "contender",
                    f"A {ta.unit}",
                    "A x asynchat",
                    f"B {tb.unit}",
                    "B x asynchat",
                    "B / A",
                ],
                rows,
                markdown,
            )
        extra = [f"target A: {t.text}" for t in a.targets if t.key == key]
        extra += [f"target B: {t.text}" for t in b.targets if t.key == key]
        if key != "W6":
            extra += a.table(key).notes
        if extra:
            out += ["", *bullets(extra, markdown)]
        out.append("")
    out += render_summary(a, markdown, f"{la}: ")
    out += render_summary(b, markdown, f"{lb}: ")
    return out


# --------------------------------------------------------------------------- main


def run_child(directory: str, args: argparse.Namespace) -> Result:
    """Run this script again with ``PYTHONPATH=directory`` and return what it measured."""
    directory = os.path.abspath(directory)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        argv = [sys.executable, os.path.abspath(__file__), "--json-out", out]
        if args.quick:
            argv.append("--quick")
        if args.repeat:
            argv += ["--repeat", str(args.repeat)]
        if args.gc_off:
            argv.append("--gc-off")
        env = dict(os.environ, PYTHONPATH=directory)
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        with open(out, encoding="utf-8") as file:
            result = Result.from_json(file.read())
    if os.path.commonpath([result.location, directory]) != directory:
        raise SystemExit(
            f"--compiled-path {directory}: the child imported sanschat from "
            f"{result.location} instead"
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, about a minute")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--repeat", type=int, help="rounds per contender (best is kept)")
    parser.add_argument(
        "--gc-off",
        action="store_true",
        help="pause the garbage collector during rounds (a secondary figure: targets are "
        "judged with it on)",
    )
    parser.add_argument(
        "--compiled-path",
        metavar="DIR",
        help="also measure the sanschat installed in DIR (e.g. pip install --target DIR), "
        "in a child process with PYTHONPATH=DIR, and print both builds side by side",
    )
    parser.add_argument("--json-out", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.repeat:
        sizes = dataclasses.replace(sizes, repeat=args.repeat)

    if args.compiled_path and not os.path.isdir(os.path.join(args.compiled_path, "sanschat")):
        parser.error(f"--compiled-path {args.compiled_path}: no sanschat package in it")

    started = time.perf_counter()
    result = run_all(sizes, args.quick, args.gc_off)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as file:
            file.write(result.to_json())
        return 0
    if args.compiled_path:
        other = run_child(args.compiled_path, args)
        out = render_two(result, other, args.markdown)
    else:
        out = render_one(result, args.markdown)
    out += ["", f"(total run time {time.perf_counter() - started:.0f} s)"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
