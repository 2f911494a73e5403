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

Lines end in ``b"\\n"`` (16-byte lines are 15 digits + ``b"\\n"``).  Run with ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import gc
import math
import os
import platform
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from _report import table

import sanschat
from sanschat import Channel, Data, TerminatorFound

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
    unit: str  # e.g. "frames/s"
    scale: float  # the unit's multiplier, e.g. 1e6 for "M frames/s"
    contenders: list[Contender]
    notes: list[str] = field(default_factory=list)
    targets: list[tuple[str, bool]] = field(default_factory=list)

    def get(self, name: str) -> Contender | None:
        return next((c for c in self.contenders if c.name == name), None)


def check(contender: Contender, outcome: Outcome) -> None:
    if outcome != contender.expect:
        raise AssertionError(
            f"{contender.name} is wrong: got {outcome!r:.200}, expected {contender.expect!r:.200}"
        )


def timed(contender: Contender) -> float:
    """Seconds for one round of *contender* (``number`` runs), verified, gc paused."""
    run, data = contender.run, contender.data
    gc.collect()
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


def measure(workload: Workload, repeat: int, min_time: float) -> None:
    """Best of *repeat* interleaved rounds for every contender of *workload*."""
    contenders = workload.contenders
    for contender in contenders:  # warm-up, verification and calibration
        once = timed(contender)
        contender.number = max(1, math.ceil(min_time / max(once, 1e-9)))
    for round_ in range(repeat):
        shift = round_ % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            elapsed = timed(contender) / contender.number
            contender.best = min(contender.best, elapsed)
    progress(f"  {workload.key} done")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Sizes:
    short_bytes: int  # workload 1
    trickle_bytes: int  # workload 2
    long_bytes: int  # workload 3
    memory_bytes: int  # workload 4
    messages: int  # workload 5
    repeat: int
    min_time: float


FULL = Sizes(4 * MiB, 300_000, 32 * MiB, 64 * MiB, 100_000, repeat=5, min_time=0.25)
QUICK = Sizes(1 * MiB, 60_000, 8 * MiB, 16 * MiB, 100_000, repeat=3, min_time=0.03)


def _lines_contenders(
    entries: Iterable[tuple[str, Callable[[Sequence[bytes]], Outcome], bool]],
    chunks: list[bytes],
    count: int,
    last: bytes,
    payload: int,
) -> list[Contender]:
    """Contenders over one stream of lines; the flag says "event API" (payload checked)."""
    return [
        Contender(name, run, chunks, (count, payload if events else last), count)
        for name, run, events in entries
    ]


def short_lines_workload(sizes: Sizes) -> Workload:
    count = sizes.short_bytes // 16
    data = short_lines(count)
    chunks = cut(data, 65535)
    entries: list[tuple[str, Callable[[Sequence[bytes]], Outcome], bool]] = [
        ("sanschat frames()", sanschat_frames, False),
        ("sanschat receive() events", sanschat_events, True),
        ("sanschat receive() events, type() is", sanschat_events_type, True),
        ("sanschat receive() events, match", sanschat_events_match, True),
        ("bytes.split + carry", bytes_split, False),
    ]
    if asynchat is not None:
        entries.append(("asynchat", asynchat_lines, False))
    if LineOnlyReceiver is not None:
        entries.append(("Twisted LineOnlyReceiver", twisted_line_only, False))
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
                "Twisted LineReceiver (1/16 of the stream)",
                twisted_line,
                few,
                (few_count, tail[tail.rfind(b"\n") + 1 :]),
                few_count,
            )
        )
    return Workload(
        "W1",
        f"16-byte lines in 64 KiB chunks ({len(data) / MiB:.0f} MiB, {count} lines)",
        "M frames/s",
        1e6,
        contenders,
        notes=[
            'Lines are 15 digits + b"\\n". Chunks are 65535 bytes, so every cut falls at a '
            "different offset inside a line.",
            "trio: no in-process line splitter, measured end to end by the driver benchmark.",
        ],
    )


def trickle_workload(sizes: Sizes) -> Workload:
    count = sizes.trickle_bytes // 16
    data = short_lines(count)
    chunks = cut(data, 1)
    entries: list[tuple[str, Callable[[Sequence[bytes]], Outcome], bool]] = [
        ("sanschat receive() events", sanschat_events, True),
        ("sanschat frames()", sanschat_frames, False),
    ]
    if asynchat is not None:
        entries.append(("asynchat", asynchat_lines, False))
    if LineOnlyReceiver is not None:
        entries.append(("Twisted LineOnlyReceiver", twisted_line_only, False))
        entries.append(("Twisted LineReceiver", twisted_line, False))
    return Workload(
        "W2",
        f"16-byte lines in 1-byte chunks ({len(data) / 1000:.0f} kB, {count} lines)",
        "M frames/s",
        1e6,
        _lines_contenders(entries, chunks, count, data[-16:-1], count * 15),
    )


def long_lines_workload(sizes: Sizes) -> Workload:
    line = long_line(64 * KiB)
    count = sizes.long_bytes // len(line)
    chunks = list(lazy_chunks(line, count, 4 * KiB))
    entries: list[tuple[str, Callable[[Sequence[bytes]], Outcome], bool]] = [
        ("sanschat frames()", sanschat_frames, False),
        ("sanschat receive() events", sanschat_events, True),
        ("find + copy", find_copy, False),
    ]
    if asynchat is not None:
        entries.append(("asynchat", asynchat_lines, False))
    if LineOnlyReceiver is not None:
        entries.append(("Twisted LineOnlyReceiver", twisted_line_only, False))
    contenders = _lines_contenders(entries, chunks, count, line[:-1], count * (len(line) - 1))
    for contender in contenders:
        contender.units = count * len(line)  # bytes, for MiB/s
    return Workload(
        "W3",
        f"64 KiB lines in 4 KiB chunks ({count * len(line) / MiB:.0f} MiB)",
        "MiB/s",
        MiB,
        contenders,
        notes=['Lines are 65535 bytes + b"\\n", so they end exactly at a chunk boundary.'],
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
        "W5",
        f"send: {len(messages)} pushes of 16 bytes",
        "M messages/s",
        1e6,
        contenders,
        notes=["Fake sockets accept every byte; 64 KiB chunks; no DESIGN target."],
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

    runs: list[tuple[str, Callable[[int], Outcome]]] = [("sanschat frames()", sanschat_lazy)]
    if asynchat is not None:
        runs.append(("asynchat", asynchat_lazy))
    results = [
        MemoryResult(
            name, peak_memory(name, run, line, count), peak_memory(name, run, line, count // 4)
        )
        for name, run in runs
    ]
    progress("  W4 done")
    return results, len(line), count * len(line)


# --------------------------------------------------------------------------- report


def ratio(contender: Contender, peer: Contender | None) -> float | None:
    return None if peer is None else contender.rate / peer.rate


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def verdict(
    workload: Workload, name: str, peer_name: str, at_least: float
) -> tuple[str, bool] | None:
    contender, peer = workload.get(name), workload.get(peer_name)
    if contender is None or peer is None:
        return None
    value = contender.rate / peer.rate
    met = value >= at_least
    text = f"{name} >= {at_least:g}x {peer_name}: {value:.2f}x, {'MET' if met else 'NOT MET'}"
    return text, met


def add_targets(workloads: dict[str, Workload]) -> None:
    wanted = {
        "W1": [
            ("sanschat frames()", "Twisted LineOnlyReceiver", 2.0),
            ("sanschat frames()", "asynchat", 15.0),
            ("sanschat receive() events", "asynchat", 5.0),
        ],
        "W2": [
            ("sanschat receive() events", "asynchat", 2.0),
            ("sanschat frames()", "asynchat", 2.0),
        ],
        "W3": [
            ("sanschat frames()", "asynchat", 1.0),
            ("sanschat receive() events", "asynchat", 1.0),
        ],
    }
    for key, triples in wanted.items():
        for name, peer, at_least in triples:
            result = verdict(workloads[key], name, peer, at_least)
            if result is not None:
                workloads[key].targets.append(result)


def render_workload(workload: Workload, markdown: bool) -> list[str]:
    asyn = workload.get("asynchat") or next(
        (c for c in workload.contenders if c.name.startswith("asynchat")), None
    )
    twisted = workload.get("Twisted LineOnlyReceiver")
    headers = ["contender", workload.unit, "x asynchat"]
    if twisted is not None:
        headers.append("x Twisted LOR")
    rows = []
    for contender in sorted(workload.contenders, key=lambda c: -c.rate):
        row = [
            contender.name,
            f"{contender.rate / workload.scale:,.3f}",
            fmt_ratio(ratio(contender, asyn)),
        ]
        if twisted is not None:
            row.append(fmt_ratio(ratio(contender, twisted)))
        rows.append(row)
    out = [
        f"### {workload.key}: {workload.title}"
        if markdown
        else f"== {workload.key}: {workload.title}",
        "",
    ]
    out += table(headers, rows, markdown)
    extra = [f"target: {text}" for text, _ in workload.targets] + workload.notes
    if extra:
        out.append("")
        out += [f"- {text}" if markdown else f"  {text}" for text in extra]
    out.append("")
    return out


def render_memory(
    results: list[MemoryResult], frame: int, stream: int, markdown: bool
) -> tuple[list[str], tuple[str, bool] | None]:
    title = f"W4: peak memory (tracemalloc), {stream / MiB:.0f} MiB of 64 KiB lines in 4 KiB chunks"
    headers = ["contender", "peak KiB", "x largest frame", "peak KiB, 1/4 of the stream"]
    rows = [
        [r.name, f"{r.peak / KiB:,.0f}", f"{r.peak / frame:.2f}x", f"{r.peak_quarter / KiB:,.0f}"]
        for r in results
    ]
    out = [f"### {title}" if markdown else f"== {title}", "", *table(headers, rows, markdown)]
    out.append("")
    target = None
    sans = next((r for r in results if r.name.startswith("sanschat")), None)
    if sans is not None:
        # "Bounded by the largest frame, not the stream": the peak must not grow when the
        # stream is four times longer (10% slack for allocator noise).
        met = sans.peak <= 1.1 * sans.peak_quarter
        target = (
            f"sanschat frames() peak independent of the stream length: "
            f"{sans.peak_quarter / KiB:,.0f} KiB for {stream // 4 // MiB} MiB, "
            f"{sans.peak / KiB:,.0f} KiB for {stream // MiB} MiB "
            f"({sans.peak / frame:.2f}x the largest frame), {'MET' if met else 'NOT MET'}",
            met,
        )
        out += [f"- target: {target[0]}" if markdown else f"  target: {target[0]}", ""]
    return out, target


def header(markdown: bool, sizes: Sizes, quick: bool) -> list[str]:
    uname = platform.uname()
    versions = [f"sanschat {sanschat.__version__}"]
    if LineOnlyReceiver is not None:
        import twisted

        versions.append(f"Twisted {twisted.__version__}")
    if anyio is not None:
        from importlib.metadata import version

        versions.append(f"anyio {version('anyio')}")
    facts = [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        f"processor: {platform.processor() or '(not reported)'}; uname: {uname.system} "
        f"{uname.release} {uname.machine}",
        f"cpu count: {os.cpu_count()}",
        f"peers: {', '.join(versions)}",
        f"mode: {'quick' if quick else 'full'}; best of {sizes.repeat} interleaved rounds, "
        f"each >= {sizes.min_time:g} s",
    ]
    if markdown:
        return ["## sanschat core benchmark", "", *(f"- {fact}" for fact in facts), ""]
    return ["sanschat core benchmark", *(f"  {fact}" for fact in facts), ""]


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, ~10 s")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--repeat", type=int, help="rounds per contender (best is kept)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.repeat:
        sizes = dataclasses.replace(sizes, repeat=args.repeat)

    started = time.perf_counter()
    progress("building inputs and measuring (progress on stderr) ...")
    workloads: dict[str, Workload] = {}
    for build in (short_lines_workload, trickle_workload, long_lines_workload, send_workload):
        workload = build(sizes)
        measure(workload, sizes.repeat, sizes.min_time)
        workloads[workload.key] = workload
        for contender in workload.contenders:
            contender.data = ()  # free the inputs before the next workload is built
    memory, frame, stream = memory_workload(sizes)
    add_targets(workloads)

    md = args.markdown
    out = header(md, sizes, args.quick)
    for key in ("W1", "W2", "W3"):
        out += render_workload(workloads[key], md)
    memory_lines, memory_target = render_memory(memory, frame, stream, md)
    out += memory_lines
    out += render_workload(workloads["W5"], md)

    targets = [t for w in workloads.values() for t in w.targets]
    if memory_target is not None:
        targets.append(memory_target)
    met = sum(ok for _, ok in targets)
    summary = f"targets met: {met} of {len(targets)}"
    missed = [text for text, ok in targets if not ok]
    out.append(f"**{summary}**" if md else summary)
    out += [f"- missed: {text}" if md else f"  missed: {text}" for text in missed]
    out.append("")
    out.append(f"(total run time {time.perf_counter() - started:.0f} s)")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
