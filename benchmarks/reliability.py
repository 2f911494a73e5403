"""Reliability scenarios for every driver: load held, faults survived, bad input refused, no loss.

Theory of operation
-------------------
This module holds the scenario logic, once, for two users: ``tests/reliability`` (which
asserts on it, at a tiny scale in the default run and at ``SANSCHAT_RELIABILITY_SCALE`` in
the slow run) and ``benchmarks/reliability_report.py`` (which prints the figures as a
table).  It is not part of the library.  Every scenario is a function ``(driver, scale) ->
Outcome``: it starts its own server, talks to it over 127.0.0.1 only, bounds every wait by
`TIMEOUT`, closes every socket, thread and process it started, and returns what it saw.
Failures are collected in ``Outcome.problems`` (a scenario goes on checking after the
first one, so a report names them all); only a hung wait raises `ScenarioFailed`.

Where the server runs:

* Load and the non-reading peer need the *server's* memory, so the server runs in a
  subprocess and its peak RSS is the kernel's ``VmHWM`` from ``/proc/PID/status`` (the
  load uses the real command line, ``python -m sanschat serve echo``; the producer server is
  this file run as a script).  The load's clients are non-blocking sockets in one
  `selectors` loop in the calling process.
* Every other scenario runs the server in a background thread of the calling process
  (`sanschat.drivers.start_server`), so that a `Chat` subclass can keep the books and the
  ``sanschat``, ``asyncio`` and ``trio`` log records can be watched (`LogWatch`).

Nothing lost: the bookkeeping chat (`Counted`) counts the bytes its driver fed it
(``feed``), the bytes it was delivered (frame + terminator, and the unframed tail at end
of stream), the bytes fed after it asked to close (which `Chat` documents as ignored) and,
in ``connection_lost``, the bytes still held in its channel.  For every connection
`Outcome.account` checks ``fed == delivered + ignored + held`` (and ``held ==
FrameTooLarge.buffered`` when that error closed it), and ``sent == fed`` on the client's
side unless the server closed first after a documented error (then the unread rest counts as
reported).  Any byte outside those terms is counted in ``Outcome.silent``: the report's
"bytes lost silently" is their sum and must be 0.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import random
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal

from sanschat import Chat, FrameTooLarge, ProtocolError
from sanschat.__main__ import announce_and_wait
from sanschat.drivers import READ_SIZE, BackgroundServer, start_server
from sanschat.examples import MAX_FRAME_SIZE

__all__ = [
    "BAD_INPUTS",
    "FANOUT",
    "FAULTS",
    "LIMITS",
    "LIMIT_SIZES",
    "LOAD",
    "SCALES",
    "SCENARIOS",
    "TIMEOUT",
    "Outcome",
    "Scale",
    "Scenario",
    "ScenarioFailed",
    "run_scenario",
    "scale_from_env",
]

TIMEOUT = 10.0  # seconds any single wait may take before the scenario fails
MiB = 1024 * 1024
CRLF = b"\r\n"

#: Most producer bytes the server may have pulled while its peer reads nothing: the kernel's
#: socket buffers (``tcp_wmem`` allows 4 MiB), the driver's chunk in flight (256 KiB) and
#: `HIGH_WATER` (1 MiB), with room to spare; a producer read ahead passes it at once.
STALL_PULL_BOUND = 16 * MiB
#: Most the producer server's RSS may grow over its idle RSS while it serves the producer.
PRODUCER_RSS_BOUND = 32 * MiB


# ---------------------------------------------------------------------------- scales


@dataclass(frozen=True)
class Scale:
    """How big each scenario is (see `SCALES`)."""

    name: str
    connections: int  # load: connections held at once
    frames: int  # load: frames in one round of a connection's random payload
    rounds: int  # load: rounds each connection sends (same frames, new random cuts)
    producer_bytes: int  # fault: what a producer pushes at a peer that stops reading
    shutdown_connections: int  # fault: extra connections open when the server is stopped
    flood_bytes: int  # bad input: bytes sent as one-byte writes
    silent_members: int = 20  # fan-out: chat members that never read
    fanout_seconds: float = 1.5  # fan-out: how long the senders flood
    fast_members: int = 5  # fan-out: chat members that read as fast as they can
    fast_bytes: int = 1 * MiB  # fan-out: what each of the 4 senders sends to the fast members
    stall_members: int = 20  # fair rounds: members fed the 256 KiB write of 1-byte lines
    race_rounds: int = 20  # thread verbs: rounds of the close race
    header_peers: int = 10  # HTTP: connections sending a header bomb / dripping a header
    drip_bytes: int = 2_000  # HTTP: bytes of header each dripping connection sends, 1 by 1


SCALES = {
    "tiny": Scale("tiny", connections=20, frames=20, rounds=2, producer_bytes=4 * MiB,
                  shutdown_connections=6, flood_bytes=2_000),
    "small": Scale("small", connections=200, frames=50, rounds=10, producer_bytes=32 * MiB,
                   shutdown_connections=50, flood_bytes=20_000, silent_members=100,
                   fanout_seconds=3.0, fast_members=20, fast_bytes=4 * MiB,
                   stall_members=100, race_rounds=100, header_peers=50, drip_bytes=8_000),
    "full": Scale("full", connections=1000, frames=100, rounds=20, producer_bytes=100 * MiB,
                  shutdown_connections=200, flood_bytes=100_000, silent_members=1000,
                  fanout_seconds=10.0, fast_members=50, fast_bytes=8 * MiB,
                  stall_members=500, race_rounds=200, header_peers=100, drip_bytes=15_000),
}


def scale_from_env(default: str = "small") -> Scale:
    """The scale named by ``SANSCHAT_RELIABILITY_SCALE`` (``tiny``, ``small`` or ``full``)."""
    name = os.environ.get("SANSCHAT_RELIABILITY_SCALE", default)
    if name not in SCALES:
        raise ValueError(
            f"SANSCHAT_RELIABILITY_SCALE={name!r}: expected one of {', '.join(SCALES)}")
    return SCALES[name]


# ---------------------------------------------------------------------------- outcomes


class ScenarioFailed(Exception):
    """A scenario could not go on (a bounded wait ran out)."""


@dataclass
class Record:
    """What the server saw on one connection (written on the server's thread)."""

    port: int = 0  # the client's port: how a client socket finds its record
    fed: int = 0  # bytes the driver fed the chat
    delivered: int = 0  # bytes delivered: frames with their terminators, unframed tails
    held: int | None = None  # channel.buffered_input when connection_lost ran
    ignored: int = 0  # bytes fed after the chat asked to close (documented: ignored)
    exc: BaseException | None = None  # what connection_lost was told
    protocol_error: ProtocolError | None = None  # what Chat.protocol_error was told
    lost: bool = False
    eof: bool = False
    max_input: int = 0  # largest channel.buffered_input seen after a feed
    output: int = 0  # channel.buffered_output after the last feed
    output_at_eof: int = 0  # channel.buffered_output when the peer's EOF arrived


@dataclass
class Outcome:
    """What one scenario on one driver saw: problems, byte accounting, figures."""

    scenario: str
    driver: str
    problems: list[str] = field(default_factory=list)
    sent: int = 0  # bytes the clients sent
    fed: int = 0  # bytes the server's chats were fed
    delivered: int = 0  # bytes the chats were delivered
    reported: int = 0  # bytes lost with a documented report (error, reset, close)
    silent: int = 0  # bytes lost or duplicated without any report: must be 0
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems and self.silent == 0

    def expect(self, condition: bool, problem: str) -> bool:
        """Record *problem* unless *condition* holds; return *condition*."""
        if not condition:
            self.problems.append(problem)
        return condition

    def account(self, label: str, sent: int, record: Record | None, *,
                may_hold: bool = False, unread_ok: bool = False) -> None:
        """Check one connection's books; bytes outside them count as silently lost.

        *may_hold*: the connection ended abnormally (error, reset, server stop), so bytes
        still held in the channel then are reported (``connection_lost`` can see them as
        ``channel.buffered_input``).  *unread_ok*: the server closed first after a
        documented error, so bytes it never read are reported by that error.
        """
        self.sent += sent
        if record is None:
            self.problems.append(f"{label}: the server never made a chat for it")
            self.silent += sent
            return
        self.fed += record.fed
        self.delivered += record.delivered
        if not self.expect(record.lost, f"{label}: connection_lost was never called"):
            return
        held = record.held or 0
        inner = record.fed - record.delivered - held - record.ignored
        if inner:
            self.silent += abs(inner)
            self.problems.append(f"{label}: fed {record.fed} != delivered {record.delivered}"
                                 f" + held {held} + ignored after close {record.ignored}")
        self.reported += record.ignored
        if held and not may_hold:
            self.silent += held
            self.problems.append(f"{label}: {held} bytes held but never delivered at a normal"
                                 " close")
        else:
            self.reported += held
        if isinstance(record.exc, FrameTooLarge) and record.exc.buffered != held:
            self.silent += abs(record.exc.buffered - held)
            self.problems.append(f"{label}: FrameTooLarge.buffered={record.exc.buffered} but "
                                 f"{held} bytes held")
        unread = sent - record.fed
        if unread < 0:
            self.silent -= unread
            self.problems.append(f"{label}: the chat was fed {-unread} bytes more than sent")
        elif unread and not unread_ok:
            self.silent += unread
            self.problems.append(f"{label}: {unread} bytes sent were never fed to the chat")
        else:
            self.reported += unread

    def describe(self) -> str:
        books = (f"sent={self.sent} fed={self.fed} delivered={self.delivered} "
                 f"reported={self.reported} silent={self.silent}")
        return "\n".join([f"{self.scenario} on {self.driver}: {books}", *self.problems])


# ---------------------------------------------------------------------------- the server side


class Ledger:
    """The books of one scenario's server: a `Record` per connection, and a condition."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.records: dict[int, Record] = {}
        self.frames = 0  # a counter for handlers that act on every n-th frame

    def factory(self, cls: type[Counted]) -> Callable[[], Chat]:
        return lambda: cls(self)

    def changed(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        with self.cond:
            if not self.cond.wait_for(condition, timeout):
                raise ScenarioFailed(f"timed out ({timeout} s) waiting for {what}")

    def record(self, sock: socket.socket) -> Record:
        """The server's record of the connection whose client end is *sock* (even closed)."""
        port = _PORTS[sock]
        self.wait(lambda: port in self.records, f"the server's chat for port {port}")
        return self.records[port]

    def fed(self, sock: socket.socket, size: int) -> Record:
        """Wait until the server has been fed *size* bytes from *sock*; return its record."""
        record = self.record(sock)
        self.wait(lambda: record.fed >= size or record.lost,
                  f"the server to read {size} bytes (read {record.fed})")
        return record

    def lost(self, sock: socket.socket) -> Record:
        """Wait until the connection of *sock* is gone on the server; return its record."""
        record = self.record(sock)
        self.wait(lambda: record.lost, f"connection_lost for port {record.port}")
        return record


class Counted(Chat):
    """Echo that keeps the books (see `Outcome.account`); subclasses override `on_frame`."""

    terminator = CRLF
    max_frame_size: ClassVar[int | None] = MAX_FRAME_SIZE

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger
        self.record = Record()

    def connection_made(self) -> None:
        self.record.port = self.peername[1]
        with self.ledger.cond:
            self.ledger.records[self.record.port] = self.record
            self.ledger.cond.notify_all()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        record = self.record
        record.fed += len(data)
        if self.closing:  # documented: once the chat has asked to close, input is ignored
            record.ignored += len(data)
        try:
            super().feed(data)
        finally:
            record.max_input = max(record.max_input, self.channel.buffered_input)
            record.output = self.channel.buffered_output
            self.ledger.changed()

    def found_frame(self, frame: bytes) -> None:
        self.record.delivered += len(frame) + len(CRLF)
        self.on_frame(frame)

    def on_frame(self, frame: bytes) -> None:
        self.push(frame + CRLF)

    def protocol_error(self, error: ProtocolError) -> None:
        self.record.protocol_error = error
        super().protocol_error(error)

    def eof_received(self, unframed: bytes) -> None:
        self.record.delivered += len(unframed)
        self.record.output_at_eof = self.channel.buffered_output
        self.record.eof = True
        self.ledger.changed()
        super().eof_received(unframed)

    def connection_lost(self, exc: BaseException | None) -> None:
        record = self.record
        record.held = self.channel.buffered_input
        record.exc = exc
        record.lost = True
        self.ledger.changed()


@contextlib.contextmanager
def serving(driver: str, factory: Callable[[], Chat]) -> Iterator[BackgroundServer]:
    """A server on *driver* in a background thread, stopped on exit."""
    server = start_server(driver, factory)
    try:
        yield server
    finally:
        server.stop()


class LogWatch(logging.Handler):
    """Collects every log record at WARNING and above, and exceptions that end a thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.thread_errors: list[BaseException | None] = []
        self._hook = threading.excepthook

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LogWatch:
        logging.getLogger().addHandler(self)
        self._hook = threading.excepthook
        threading.excepthook = self._thread_error
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        threading.excepthook = self._hook
        logging.getLogger().removeHandler(self)

    def _thread_error(self, args: threading.ExceptHookArgs) -> None:
        self.thread_errors.append(args.exc_value)

    def errors(self, kind: type[BaseException]) -> list[logging.LogRecord]:
        """ERROR records carrying an exception of *kind*."""
        return [r for r in self.records
                if r.levelno >= logging.ERROR and r.exc_info and isinstance(r.exc_info[1], kind)]

    def check_failure_logged(self, out: Outcome, record: Record) -> None:
        """The error that closed *record*'s connection was logged once, naming the peer: a
        `ProtocolError` (the peer's fault) as one WARNING line without a traceback, anything
        else (the handler's fault) at ERROR with its traceback."""
        exc, port = record.exc, str(record.port)
        found = [r for r in self.records if port in r.getMessage() and exc is not None and (
            (r.exc_info and r.exc_info[1] is exc) or str(exc) in r.getMessage())]
        if not out.expect(len(found) == 1, f"{exc!r} was logged {len(found)} times naming port "
                          f"{port}, expected once"):
            return
        if isinstance(exc, ProtocolError):
            out.expect(found[0].levelno == logging.WARNING and not found[0].exc_info,
                       f"{type(exc).__name__} should be one WARNING line without a traceback")
        else:
            out.expect(found[0].levelno == logging.ERROR and bool(found[0].exc_info),
                       f"{type(exc).__name__} should be logged at ERROR with its traceback")

    def check_quiet(self, out: Outcome, allowed: int = 0) -> None:
        """No record at WARNING+ beyond *allowed* expected ones, no thread died."""
        out.expect(len(self.records) <= allowed,
                   f"{len(self.records)} log records at WARNING+ (expected {allowed}): "
                   + "; ".join(r.getMessage()[:120] for r in self.records[:5]))
        out.expect(not self.thread_errors, f"threads died: {self.thread_errors!r}")


# ---------------------------------------------------------------------------- the client side


_PORTS: weakref.WeakKeyDictionary[socket.socket, int] = weakref.WeakKeyDictionary()


class Clients:
    """Blocking client sockets (each bounded by `TIMEOUT`), all closed on exit."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def connect(self, address: tuple[str, int], rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socks.append(sock)
        if rcvbuf is not None:  # before connect, so that the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(TIMEOUT)
        sock.connect(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _PORTS[sock] = sock.getsockname()[1]  # known after close too
        return sock

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sock in self.socks:
            sock.close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except TimeoutError:
            raise ScenarioFailed(f"timed out after {len(data)} of {size} bytes") from None
        if not chunk:
            raise ScenarioFailed(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def read_to_end(sock: socket.socket) -> tuple[bytes, str]:
    """Read until the server closes; return the bytes and how it closed (eof or reset)."""
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return bytes(data), "reset"
    except TimeoutError:
        raise ScenarioFailed(f"the server did not close within {TIMEOUT} s") from None
    return bytes(data), "eof"


def send_until_refused(sock: socket.socket, data: bytes, piece: int = 4096) -> int:
    """Send *data* in pieces until done or the server closes; return the bytes sent."""
    sent = 0
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while sent < len(data):
            sent += sock.send(data[sent : sent + piece])
    return sent


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def roundtrip(out: Outcome, sock: socket.socket, what: str) -> int:
    """Echo one line on *sock*; record a problem unless it comes back; return bytes sent."""
    line = b"control: %s\r\n" % what.encode()
    try:
        sock.sendall(line)
        back = recv_exactly(sock, len(line))
    except (OSError, ScenarioFailed) as exc:
        out.problems.append(f"control connection broken {what}: {exc!r}")
        return len(line)
    out.expect(back == line, f"control connection answered {back!r} {what}")
    return len(line)


def frames_payload(count: int, size: int = 1000) -> bytes:
    return b"".join(b"%06d %s\r\n" % (i, b"x" * size) for i in range(count))


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_fd_limit(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE to *needed* (up to the hard limit); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# ---------------------------------------------------------------------------- server processes


class ServerProcess:
    """A server in a subprocess that prints ``listening on HOST:PORT``; SIGTERM stops it."""

    def __init__(self, argv: list[str]) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop())
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr)
        self.returncode: int | None = None
        self.stderr = ""
        try:
            line = self._readline(30.0)
            match = re.fullmatch(rb"listening on (\S+):(\d+)\s*", line)
            if match is None:
                raise ScenarioFailed(f"the server printed {line!r}")
            self.address = (match[1].decode(), int(match[2]))
        except BaseException:
            self.stop()
            raise

    def _readline(self, timeout: float) -> bytes:
        assert self.proc.stdout is not None
        line = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    raise ScenarioFailed(f"no 'listening on' line within {timeout} s")
                chunk = os.read(self.proc.stdout.fileno(), 1024)
                if not chunk:
                    raise ScenarioFailed(f"the server exited: {self._read_stderr()}")
                line += chunk
        return line

    def status(self, name: str) -> int:
        """A ``/proc/PID/status`` figure in bytes (``VmRSS``, ``VmHWM``)."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(rf"^{name}:\s+(\d+) kB", text, re.MULTILINE)
        return int(match[1]) * 1024 if match else 0

    def fd_count(self) -> int:
        return fd_count(self.proc.pid)

    def stderr_lines(self) -> list[str]:
        """What the server has written to stderr so far, as lines (read without moving the
        file offset the server writes at)."""
        fd = self._stderr.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace").splitlines()

    def _read_stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM, wait (bounded; kill after), collect the exit status and stderr."""
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.returncode = -9
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.stderr = self._read_stderr()
            self._stderr.close()

    def check_clean_exit(self, out: Outcome) -> None:
        out.expect(self.returncode == 0, f"the server exited with {self.returncode}")
        lines = self.stderr.strip().splitlines()
        out.expect(not lines, "the server wrote to stderr: "
                   + " ... ".join(dict.fromkeys([*lines[:1], *lines[-1:]])))

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------- 1. load


HELLO = b"hello\r\n"
LOAD_SEED = 20240601
LOAD_WINDOW = 32 * 1024  # bytes a load client keeps in flight: no one blocks, nothing piles up
LOAD_MAX_CUT = 8192  # a load client writes pieces of 1 to this many bytes, cut anywhere
MAX_PENDING = 64  # connections opened but not yet answered: stays under every listen backlog
_NO_CRLF = bytes.maketrans(b"\r\n", b"RN")


def load_payload(rng: random.Random, frames: int) -> bytes:
    """*frames* frames of random bytes and random sizes (mostly short, some up to 16 KiB)."""
    parts = []
    for _ in range(frames):
        pick = rng.random()
        size = (rng.randint(0, 64) if pick < 0.8
                else rng.randint(65, 1024) if pick < 0.98 else rng.randint(1025, 16384))
        parts.append(rng.randbytes(size).translate(_NO_CRLF) + CRLF)
    return b"".join(parts)


class _LoadClient:
    """One load connection: its payload is sent *rounds* times, each time cut anew."""

    __slots__ = ("hello", "payload", "received", "rng", "sent", "sock", "total", "writing")

    def __init__(self, seed: int, frames: int, rounds: int) -> None:
        self.rng = random.Random(seed)
        self.payload = load_payload(self.rng, frames)
        self.total = len(self.payload) * rounds
        self.sock: socket.socket | None = None
        self.hello = b""
        self.sent = self.received = 0
        self.writing = False


def _open_all(address: tuple[str, int], clients: list[_LoadClient],
              sel: selectors.BaseSelector, deadline: float) -> None:
    """Connect every client and get its hello echoed, with few connections pending at once."""
    opened = pending = confirmed = 0
    while confirmed < len(clients):
        while opened < len(clients) and pending < MAX_PENDING:
            client = clients[opened]
            opened += 1
            sock = client.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex(address)
            if err not in (0, errno.EINPROGRESS):
                raise ScenarioFailed(f"connect #{opened} failed: {os.strerror(err)}")
            sel.register(sock, selectors.EVENT_WRITE, client)
            pending += 1
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"only {confirmed} of {len(clients)} connections answered")
        for key, _ in sel.select(1.0):
            client = key.data
            sock = client.sock
            if key.events == selectors.EVENT_WRITE:  # connected (or failed)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise ScenarioFailed(f"a connection failed: {os.strerror(err)}")
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.send(HELLO)  # 7 bytes into an empty buffer: taken whole
                sel.modify(sock, selectors.EVENT_READ, client)
                continue
            chunk = sock.recv(64)
            if not chunk:
                raise ScenarioFailed("the server closed a connection during the hello")
            client.hello += chunk
            if len(client.hello) >= len(HELLO):
                if client.hello != HELLO:
                    raise ScenarioFailed(f"hello came back as {client.hello!r}")
                sel.unregister(sock)
                pending -= 1
                confirmed += 1


def _stream_all(clients: list[_LoadClient], sel: selectors.BaseSelector, deadline: float) -> None:
    """Every client sends its payload in random cuts and checks each echoed byte."""
    both = selectors.EVENT_READ | selectors.EVENT_WRITE
    for client in clients:
        assert client.sock is not None
        client.writing = True
        sel.register(client.sock, both, client)
    remaining = len(clients)
    while remaining:
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"{remaining} connections still streaming at the deadline")
        for key, mask in sel.select(1.0):
            client = key.data
            sock, payload, total = client.sock, client.payload, client.total
            if mask & selectors.EVENT_READ:
                try:
                    chunk = sock.recv(262144)
                except BlockingIOError:
                    chunk = None
                except OSError as exc:
                    raise ScenarioFailed(f"a load connection broke: {exc!r}") from None
                if chunk is not None:
                    if not chunk:
                        raise ScenarioFailed(f"the server closed a connection after "
                                             f"{client.received} of {total} bytes")
                    if client.received + len(chunk) > client.sent:
                        raise ScenarioFailed("more bytes came back than were sent")
                    _check_echo(payload, client.received, chunk)
                    client.received += len(chunk)
                    if client.received == total:
                        sel.unregister(sock)
                        remaining -= 1
                        continue
                    if (not client.writing and client.sent < total
                            and client.sent - client.received < LOAD_WINDOW):
                        client.writing = True
                        sel.modify(sock, both, client)
            if mask & selectors.EVENT_WRITE and client.writing:
                start = client.sent % len(payload)
                size = min(LOAD_WINDOW - (client.sent - client.received),
                           client.rng.randint(1, LOAD_MAX_CUT), len(payload) - start)
                if size > 0:
                    with contextlib.suppress(BlockingIOError):
                        client.sent += sock.send(payload[start : start + size])
                if client.sent == total or client.sent - client.received >= LOAD_WINDOW:
                    client.writing = False
                    sel.modify(sock, selectors.EVENT_READ, client)


def _check_echo(payload: bytes, offset: int, chunk: bytes) -> None:
    """*chunk* arrived at stream *offset*: it must equal the repeated payload there."""
    view, done = memoryview(chunk), 0
    while done < len(chunk):
        start = (offset + done) % len(payload)
        piece = view[done : done + len(payload) - start]
        if not payload.startswith(piece, start):
            raise ScenarioFailed(f"the echo differs from what was sent near byte {offset + done}")
        done += len(piece)


def load(driver: str, scale: Scale) -> Outcome:
    """N connections to ``python -m sanschat serve echo`` at once, each streaming M frames."""
    out = Outcome("load", driver)
    n, m = scale.connections, scale.frames * scale.rounds
    raise_fd_limit(n + 256)  # before the server starts: it inherits the limit
    clients = [_LoadClient(LOAD_SEED + i, scale.frames, scale.rounds) for i in range(n)]
    sel = selectors.DefaultSelector()
    argv = [sys.executable, "-m", "sanschat", "serve", "echo", "--driver", driver, "--port", "0"]
    with ServerProcess(argv) as server:
        idle_rss, idle_fds = server.status("VmRSS"), server.fd_count()
        try:
            _open_all(server.address, clients, sel, time.monotonic() + 60)
            held_fds = server.fd_count() - idle_fds
            held_rss = server.status("VmRSS")  # N connections open, no traffic yet
            started = time.perf_counter()
            _stream_all(clients, sel, time.monotonic() + 90)
            elapsed = time.perf_counter() - started
            out.expect(server.fd_count() - idle_fds >= n,
                       f"the server holds {server.fd_count() - idle_fds} sockets, not {n}")
            peak = server.status("VmHWM")
        finally:
            sel.close()
            for client in clients:
                if client.sock is not None:
                    client.sock.close()
        # Every socket closed: the server's descriptors go back to what it had idle.
        deadline = time.monotonic() + TIMEOUT
        while server.fd_count() > idle_fds and time.monotonic() < deadline:
            time.sleep(0.05)
        out.expect(server.fd_count() == idle_fds,
                   f"the server kept {server.fd_count() - idle_fds} descriptors after the clients"
                   " closed")
    server.check_clean_exit(out)
    total = sum(c.total for c in clients)
    out.sent = out.fed = out.delivered = total + n * len(HELLO)  # every byte came back
    out.figures.update(connections=n, held=min(held_fds, n), frames=n * m,
                       frames_per_s=n * m / elapsed, seconds=elapsed, bytes=total,
                       idle_rss=idle_rss, held_rss=held_rss, peak_rss=peak)
    # Loose, on purpose: a server that piles bytes up per connection blows it; noise does not.
    out.expect(peak - idle_rss <= 64 * MiB + n * 256 * 1024,
               f"server RSS grew by {(peak - idle_rss) / MiB:.0f} MiB under load")
    return out


# ---------------------------------------------------------------------------- 2. faults


def reset_mid_frame(driver: str, scale: Scale) -> Outcome:
    """A peer resets with half a frame sent: only it goes; its bytes are all accounted."""
    out, ledger = Outcome("peer resets mid-frame", driver), Ledger()
    with LogWatch() as logs, serving(driver, ledger.factory(Counted)) as server, \
            Clients() as clients:
        control = clients.connect(server.address)
        sent = roundtrip(out, control, "before")
        victim = clients.connect(server.address)
        payload = b"frame one\r\nframe two\r\nhalf a fra"
        victim.sendall(payload)
        out.expect(recv_exactly(victim, 22) == payload[:22], "the whole frames were not echoed")
        ledger.fed(victim, len(payload))  # the server has every byte before the reset
        reset(victim)
        record = ledger.lost(victim)
        out.expect(record.exc is None or isinstance(record.exc, OSError),
                   f"connection_lost got {record.exc!r}")
        out.account("reset peer", len(payload), record, may_hold=True)
        sent += roundtrip(out, control, "after the reset")
        control.close()
        out.account("control", sent, ledger.lost(control))
    logs.check_quiet(out)
    return out


class Amplify(Counted):
    """Answers each frame with `FACTOR` copies of it (a little input, a lot of output), but
    a control line (see `roundtrip`) once."""

    FACTOR = 256

    def on_frame(self, frame: bytes) -> None:
        self.push((frame + CRLF) * (1 if frame.startswith(b"control:") else self.FACTOR))


def half_close(driver: str, scale: Scale) -> Outcome:
    """The peer half-closes while megabytes of answers are queued: all arrive, then EOF.

    32 KB in, 8 MB out to a peer that reads nothing until it has sent its EOF: more than the
    kernel buffers and `HIGH_WATER` hold, so the server stops reading and meets the EOF only
    once the peer reads, typically with output still queued in the channel (the figure
    ``queued_at_eof``; how much depends on the driver's write and read interleaving).
    """
    out, ledger = Outcome("half-close with output queued", driver), Ledger()
    with LogWatch() as logs, serving(driver, ledger.factory(Amplify)) as server, \
            Clients() as clients:
        sock = clients.connect(server.address, rcvbuf=8192)
        frames = frames_payload(32)
        tail = b"a last frame without its terminator"
        sock.sendall(frames + tail)
        sock.shutdown(socket.SHUT_WR)
        data, how = read_to_end(sock)
        expected = b"".join((f + CRLF) * Amplify.FACTOR for f in frames.split(CRLF)[:-1])
        out.expect(how == "eof", f"the connection ended with a {how}")
        out.expect(data == expected, f"got {len(data)} of {len(expected)} bytes back"
                   + ("" if expected.startswith(data) else ", and they differ"))
        record = ledger.lost(sock)
        out.expect(record.eof, "the server never saw the EOF")
        out.expect(record.exc is None, f"connection_lost got {record.exc!r}")
        out.account("half-closed peer", len(frames) + len(tail), record)
        out.figures["queued_at_eof"] = record.output_at_eof
    logs.check_quiet(out)
    return out


def reset_mid_send(driver: str, scale: Scale) -> Outcome:
    """A peer resets while the server is sending it 8 MB: only that connection goes.

    32 KB in, 8 MB of answers queued (`Amplify`) for a peer with an 8 KB window that reads
    nothing: the server is in the middle of sending when the reset comes.
    """
    out, ledger = Outcome("peer resets mid-send", driver), Ledger()
    with LogWatch() as logs, serving(driver, ledger.factory(Amplify)) as server, \
            Clients() as clients:
        control = clients.connect(server.address)
        sent = roundtrip(out, control, "before")
        victim = clients.connect(server.address, rcvbuf=8192)
        payload = frames_payload(32)
        victim.sendall(payload)
        record = ledger.fed(victim, len(payload))
        reset(victim)
        ledger.lost(victim)
        out.expect(record.exc is None or isinstance(record.exc, OSError),
                   f"connection_lost got {record.exc!r}")
        out.account("reset peer", len(payload), record, may_hold=True)
        sent += roundtrip(out, control, "after the reset")
        control.close()
        out.account("control", sent, ledger.lost(control))
    logs.check_quiet(out)
    return out


BLOCK = 64 * 1024
_FILL = bytes(range(256)) * (BLOCK // 256)


def producer_block(index: int, size: int = BLOCK) -> bytes:
    """Block *index* of the producer's stream: its number, then a fixed pattern."""
    return (index.to_bytes(8, "big") + _FILL[8:])[:size]


class BlockProducer:
    """A lazy producer of *total* bytes in numbered 64 KiB blocks; counts what was pulled."""

    pulled: ClassVar[list[int]] = [0]

    def __init__(self, total: int) -> None:
        self.total, self.index = total, 0

    def more(self) -> bytes:
        left = self.total - self.index * BLOCK
        if left <= 0:
            return b""
        block = producer_block(self.index, min(BLOCK, left))
        self.index += 1
        BlockProducer.pulled[0] += len(block)
        return block


class ProducerServer(Chat):
    """``produce N``: push an N-byte producer, then close; ``stats``: the bytes pulled so far."""

    terminator = CRLF
    max_frame_size = 1024

    def found_frame(self, frame: bytes) -> None:
        command, _, arg = frame.partition(b" ")
        if command == b"produce":
            self.push_with_producer(BlockProducer(int(arg)))
        else:
            self.push(b"pulled %d\r\n" % BlockProducer.pulled[0])
        self.close_when_done()


def _pulled(address: tuple[str, int]) -> int:
    with Clients() as clients:
        sock = clients.connect(address)
        sock.sendall(b"stats\r\n")
        data, _ = read_to_end(sock)
    return int(data.split()[1])


def _read_blocks(sock: socket.socket, total: int) -> tuple[int, str | None]:
    """Read the producer's stream to EOF, checking every byte; return (count, problem)."""
    buf = bytearray(1024 * 1024)
    view = memoryview(buf)
    offset = 0
    while True:
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            return offset, f"stalled after {offset} bytes"
        if not n:
            return offset, None
        if offset + n > total:
            return offset + n, f"{offset + n - total} bytes more than produced"
        position = 0
        while position < n:
            index, start = divmod(offset + position, BLOCK)
            length = min(n - position, BLOCK - start)
            expected = producer_block(index, min(BLOCK, total - index * BLOCK))
            if view[position : position + length] != expected[start : start + length]:
                return offset, f"byte {offset + position} differs from what was produced"
            position += length
        offset += n


def non_reading_peer(driver: str, scale: Scale) -> Outcome:
    """A peer reads nothing while a producer of ``scale.producer_bytes`` is pushed at it."""
    out = Outcome("non-reading peer, big producer", driver)
    total = scale.producer_bytes
    argv = [sys.executable, str(Path(__file__).resolve()), "serve-producer", "--driver", driver]
    with ServerProcess(argv) as server, Clients() as clients:
        idle_rss = server.status("VmRSS")
        sock = clients.connect(server.address, rcvbuf=16384)
        command = b"produce %d\r\n" % total
        sock.sendall(command)
        # The server is stalled when the producer stops being pulled; it answers meanwhile.
        history: list[int] = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            history.append(_pulled(server.address))
            if history[-1] == total or history[-5:] == [history[-1]] * 5:
                break  # all pulled, or unchanged over the last 0.2 s
            time.sleep(0.05)
        else:
            out.problems.append(f"the producer was still being pulled after {TIMEOUT} s")
        stalled = history[-1]
        stalled_rss = server.status("VmRSS")
        received, problem = _read_blocks(sock, total)
        out.expect(problem is None, f"the client's read: {problem}")
        out.expect(received == total, f"received {received} of {total} bytes")
        pulled = _pulled(server.address)
        peak = server.status("VmHWM")
    server.check_clean_exit(out)
    out.expect(stalled <= STALL_PULL_BOUND,
               f"{stalled / MiB:.1f} MiB pulled from the producer while the peer read nothing")
    out.expect(peak - idle_rss <= PRODUCER_RSS_BOUND,
               f"the server's RSS grew by {(peak - idle_rss) / MiB:.1f} MiB")
    out.expect(pulled == total, f"the producer was pulled for {pulled} of {total} bytes")
    out.sent = out.fed = out.delivered = len(command)
    out.silent += abs(pulled - received)  # produced (and not refused) but never arrived
    out.figures.update(idle_rss=idle_rss, peak_rss=peak, stalled_rss=stalled_rss,
                       pulled_at_stall=stalled, produced=total)
    return out


class Producing(Counted):
    """``produce N``: push an N-byte producer and close when done; other frames echo."""

    def on_frame(self, frame: bytes) -> None:
        command, _, arg = frame.partition(b" ")
        if command == b"produce":
            self.push_with_producer(BlockProducer(int(arg)))
            self.close_when_done()
        else:
            self.push(frame + CRLF)


def slow_reader_close(driver: str, scale: Scale) -> Outcome:
    """A slow reader takes a 4 MiB producer's output: the connection then closes cleanly.

    The close point is reached while the driver is being told it may write again (the
    transport's buffer drained): a path where a driver can close twice.  Three rounds.
    """
    out, ledger = Outcome("slow reader, close after a producer", driver), Ledger()
    total = 4 * MiB
    with LogWatch() as logs, serving(driver, ledger.factory(Producing)) as server, \
            Clients() as clients:
        for _ in range(3):
            sock = clients.connect(server.address, rcvbuf=16384)
            command = b"produce %d\r\n" % total
            sock.sendall(command)
            record = ledger.fed(sock, len(command))
            received, problem = _read_blocks(sock, total)
            out.expect(problem is None, f"the client's read: {problem}")
            out.expect(received == total, f"received {received} of {total} bytes, then EOF")
            sock.close()  # as a client does at end of stream: the server stops lingering
            ledger.lost(sock)
            out.expect(record.exc is None, f"connection_lost got {record.exc!r}")
            out.account("slow reader", len(command), record)
    logs.check_quiet(out)
    return out


class Flaky(Counted):
    """Raises on every tenth numbered frame the server receives (counted across connections)."""

    def on_frame(self, frame: bytes) -> None:
        if frame.startswith(b"n "):
            self.ledger.frames += 1
            if self.ledger.frames % 10 == 0:
                raise RuntimeError(f"frame {self.ledger.frames} failed on purpose")
        self.push(frame + CRLF)


def handler_raises(driver: str, scale: Scale) -> Outcome:
    """A handler raises on every tenth frame: exactly those connections close, logged."""
    out, ledger = Outcome("handler raises on every 10th frame", driver), Ledger()
    with LogWatch() as logs, serving(driver, ledger.factory(Flaky)) as server, \
            Clients() as clients:
        conns = [clients.connect(server.address) for _ in range(12)]
        sent = dict.fromkeys(conns, 0)
        alive, failed, number = list(conns), [], 0
        for _ in range(3):  # one frame at a time, so the numbering is known
            for sock in list(alive):
                number += 1
                frame = b"n %d\r\n" % number
                sock.sendall(frame)
                sent[sock] += len(frame)
                if number % 10 == 0:
                    data, _ = read_to_end(sock)
                    out.expect(data == b"", f"frame {number} was answered: {data!r}")
                    alive.remove(sock)
                    failed.append(sock)
                else:
                    back = recv_exactly(sock, len(frame))
                    out.expect(back == frame, f"frame {number} came back as {back!r}")
        # A burst: the failing frame is in the middle of a read, frames after it are held.
        burst_sock = clients.connect(server.address)
        burst = [b"n %d\r\n" % (number + i) for i in range(1, 16)]
        burst_sock.sendall(b"".join(burst))
        sent[burst_sock] = sum(map(len, burst))
        data, _ = read_to_end(burst_sock)
        good = b"".join(f for f in burst if int(f.split()[1]) < (number // 10 + 1) * 10)
        out.expect(good.startswith(data), f"the burst's echo is not a prefix: {data!r}")
        failed.append(burst_sock)
        for sock in failed:
            record = ledger.lost(sock)
            out.expect(isinstance(record.exc, RuntimeError),
                       f"a failed connection was lost with {record.exc!r}")
            logs.check_failure_logged(out, record)
            out.account("failed connection", sent[sock], record, may_hold=True)
        out.expect(len(failed) == 4, f"{len(failed)} connections failed, expected 4")
        for sock in alive:
            sent[sock] += roundtrip(out, sock, "on a surviving connection")
            sock.close()
            record = ledger.lost(sock)
            out.expect(record.exc is None, f"a survivor was lost with {record.exc!r}")
            out.account("survivor", sent[sock], record)
    logs.check_quiet(out, allowed=len(failed))
    out.expect(len(logs.errors(RuntimeError)) == len(failed),
               f"{len(logs.errors(RuntimeError))} errors logged for {len(failed)} failures")
    return out


class Idle(Counted):
    idle_timeout = 0.5


def idle_timeout(driver: str, scale: Scale) -> Outcome:
    """A silent client is closed after ``idle_timeout``, and only where one is configured."""
    out = Outcome("silent client, idle timeout", driver)
    timed, untimed = Ledger(), Ledger()
    with LogWatch() as logs, serving(driver, timed.factory(Idle)) as server, \
            serving(driver, untimed.factory(Counted)) as plain, Clients() as clients:
        started = time.monotonic()
        silent = clients.connect(server.address)
        silent_plain = clients.connect(plain.address)
        active = clients.connect(server.address)
        sent = 0
        for i in range(10):  # traffic every 0.1 s keeps this one alive past the 0.5 s timeout
            sent += roundtrip(out, active, f"tick {i}")
            time.sleep(0.1)
        data, how = read_to_end(silent)
        elapsed = time.monotonic() - started
        out.expect((data, how) == (b"", "eof"), f"the silent client got {data!r} and {how}")
        out.expect(elapsed >= 0.45, f"the silent client was closed after {elapsed:.2f} s")
        silent_plain.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # still open, nothing to read: no timeout
            out.problems.append(f"without idle_timeout, the silent client got "
                                f"{silent_plain.recv(1)!r}")
        sent += roundtrip(out, active, "at the end")
        record = timed.lost(silent)
        out.expect(record.exc is None, f"the idle connection was lost with {record.exc!r}")
        out.account("silent client", 0, record)
        active.close()
        silent_plain.close()
        out.account("active client", sent, timed.lost(active))
        out.account("silent client without timeout", 0, untimed.lost(silent_plain))
    logs.check_quiet(out)
    return out


def abrupt_shutdown(driver: str, scale: Scale) -> Outcome:
    """Stop the server with connections open mid-frame, with output queued, idle: no noise,
    every chat detached, every socket closed, every client sees EOF or a reset."""
    out, ledger = Outcome("abrupt server shutdown", driver), Ledger()
    fds_before = fd_count()
    with LogWatch() as logs, Clients() as clients:
        server = start_server(driver, ledger.factory(Counted))
        try:
            sent: dict[socket.socket, int] = {}
            idle = clients.connect(server.address)
            sent[idle] = 0
            queued = clients.connect(server.address, rcvbuf=8192)
            sent[queued] = len(queued_payload := frames_payload(600))
            queued.sendall(queued_payload)
            others = [clients.connect(server.address) for _ in range(scale.shutdown_connections)]
            for i, sock in enumerate(others):
                data = b"frame %d\r\n" % i + b"half a frame %d" % i
                sock.sendall(data)
                sent[sock] = len(data)
            for sock, size in sent.items():
                ledger.fed(sock, size)  # ~600 KB of echo pending for a peer with an 8 KB window
        finally:
            server.stop()
        lingering = [t.name for t in threading.enumerate() if t.name.startswith("sanschat")]
        out.expect(not lingering, f"threads left running: {lingering}")
        echoes = {idle: b"", queued: queued_payload}
        echoes.update((sock, b"frame %d\r\n" % i) for i, sock in enumerate(others))
        for sock, size in sent.items():
            data, _ = read_to_end(sock)
            out.expect(echoes[sock].startswith(data), f"a client got {data[:60]!r} at the stop")
            record = ledger.record(sock)
            out.expect(record.lost, f"the chat on port {record.port} was never detached")
            out.account("open at the stop", size, record, may_hold=True)
    fds_after = fd_count()
    out.expect(fds_after == fds_before, f"{fds_after - fds_before} descriptors left open")
    logs.check_quiet(out)
    return out


# ---------------------------------------------------------------------------- 3. bad input


class Misbehaving(Counted):
    """Does something a handler must not do when a frame names it (see `BAD_COMMANDS`)."""

    def on_frame(self, frame: bytes) -> None:
        action = BAD_COMMANDS.get(frame)
        if action is None:
            self.push(frame + CRLF)
        else:
            action[0](self)


def _str_producer() -> object:
    class StrProducer:
        def more(self) -> Any:
            return "text"

    return StrProducer()


BAD_COMMANDS: dict[bytes, tuple[Callable[[Chat], None], type[Exception], str]] = {
    b"producer-str": (lambda chat: chat.push_with_producer(_str_producer()), TypeError,
                      "a producer's more() returns str"),
    b"producer-int": (lambda chat: chat.push_with_producer(iter([b"partial ", 7])), TypeError,
                      "an iterable producer yields an int"),
    b"terminator-str": (lambda chat: chat.set_terminator(_any("\r\n")), TypeError,
                        "a handler sets a str terminator"),
    b"terminator-bool": (lambda chat: chat.set_terminator(True), TypeError,
                         "a handler sets a bool terminator"),
    b"terminator-negative": (lambda chat: chat.set_terminator(-1), ValueError,
                             "a handler sets a negative int terminator"),
    b"terminator-empty": (lambda chat: chat.set_terminator(b""), ValueError,
                          "a handler sets an empty bytes terminator"),
    b"terminator-empty-tuple": (lambda chat: chat.set_terminator(()), ValueError,
                                "a handler sets an empty tuple terminator"),
    b"push-str": (lambda chat: chat.push(_any("text")), TypeError, "a handler pushes str"),
}


def _any(value: object) -> Any:
    return value


def _bad_command(command: bytes) -> Callable[[str, Scale], Outcome]:
    _, error, title = BAD_COMMANDS[command]

    def scenario(driver: str, scale: Scale) -> Outcome:
        out, ledger = Outcome(title, driver), Ledger()
        with LogWatch() as logs, serving(driver, ledger.factory(Misbehaving)) as server, \
                Clients() as clients:
            control = clients.connect(server.address)
            control_sent = roundtrip(out, control, "before")
            victim = clients.connect(server.address)
            victim.sendall(b"hello\r\n")
            out.expect(recv_exactly(victim, 7) == b"hello\r\n", "the victim was not echoed")
            victim.sendall(command + CRLF)
            data, _ = read_to_end(victim)
            out.expect(b"partial ".startswith(data), f"the victim got {data!r} before closing")
            record = ledger.lost(victim)
            out.expect(isinstance(record.exc, error), f"connection_lost got {record.exc!r}, "
                       f"expected {error.__name__}")
            logs.check_failure_logged(out, record)
            out.account("victim", 9 + len(command), record, may_hold=True)
            control_sent += roundtrip(out, control, "after")
            control.close()
            out.account("control", control_sent, ledger.lost(control))
        logs.check_quiet(out, allowed=1)
        return out

    scenario.__name__ = command.decode().replace("-", "_")
    scenario.__doc__ = f"{title}: refused with {error.__name__}, that connection only closes."
    return scenario


def oversized_frame(driver: str, scale: Scale) -> Outcome:
    """A frame at the limit is echoed; one over it goes to `Chat.protocol_error` and the
    connection closes gracefully (a FIN, not a reset), logged below WARNING."""
    out, ledger = Outcome("frame over max_frame_size", driver), Ledger()
    with LogWatch() as logs, serving(driver, ledger.factory(Counted)) as server, \
            Clients() as clients:
        control = clients.connect(server.address)
        control_sent = roundtrip(out, control, "before")
        victim = clients.connect(server.address)
        at_limit = b"x" * MAX_FRAME_SIZE + CRLF
        victim.sendall(at_limit)
        out.expect(recv_exactly(victim, len(at_limit)) == at_limit, "the frame at the limit")
        sent = len(at_limit) + send_until_refused(victim, b"y" * (MAX_FRAME_SIZE + 1000) + CRLF)
        data, how = read_to_end(victim)
        out.expect(data == b"", f"the oversized frame was answered: {data[:40]!r}")
        out.expect(how == "eof", f"the server closed with a {how}, not gracefully")
        victim.close()  # as a client does at end of stream: the server stops lingering
        record = ledger.lost(victim)
        out.expect(isinstance(record.protocol_error, FrameTooLarge),
                   f"protocol_error got {record.protocol_error!r}")
        out.expect(record.exc is None, f"connection_lost got {record.exc!r}, not None")
        out.account("oversized", sent, record, may_hold=True, unread_ok=True)
        control_sent += roundtrip(out, control, "after")
        control.close()
        out.account("control", control_sent, ledger.lost(control))
    logs.check_quiet(out)
    return out


class SmallFrames(Counted):
    max_frame_size = 4096


def no_terminator(driver: str, scale: Scale) -> Outcome:
    """Bytes without a terminator: held up to max_frame_size (plus one read), then refused."""
    out, ledger = Outcome("terminator never sent", driver), Ledger()
    with LogWatch() as logs, serving(driver, ledger.factory(SmallFrames)) as server, \
            Clients() as clients:
        control = clients.connect(server.address)
        control_sent = roundtrip(out, control, "before")
        victim = clients.connect(server.address)
        sent = send_until_refused(victim, b"z" * (2 * MiB), piece=1024)
        data, _ = read_to_end(victim)
        out.expect(data == b"", f"the server answered {data[:40]!r}")
        victim.close()
        record = ledger.lost(victim)
        bound = SmallFrames.max_frame_size + READ_SIZE
        out.expect(record.max_input <= bound,
                   f"the channel held {record.max_input} bytes (bound {bound})")
        out.expect(isinstance(record.protocol_error, FrameTooLarge),
                   f"protocol_error got {record.protocol_error!r}")
        out.expect(record.exc is None, f"connection_lost got {record.exc!r}, not None")
        out.account("no terminator", sent, record, may_hold=True, unread_ok=True)
        control_sent += roundtrip(out, control, "after")
        control.close()
        out.account("control", control_sent, ledger.lost(control))
        out.figures["max_held"] = record.max_input
    logs.check_quiet(out)
    return out


def one_byte_flood(driver: str, scale: Scale) -> Outcome:
    """Frames arriving one byte per write all come back whole; others are not disturbed."""
    out, ledger = Outcome("flood of one-byte writes", driver), Ledger()
    payload = b"".join(b"%07d\r\n" % i for i in range(scale.flood_bytes // 9 + 1))
    with LogWatch() as logs, serving(driver, ledger.factory(Counted)) as server, \
            Clients() as clients:
        control = clients.connect(server.address)
        control_sent = roundtrip(out, control, "before")
        flooder = clients.connect(server.address)
        for i in range(len(payload)):
            flooder.send(payload[i : i + 1])
        control_sent += roundtrip(out, control, "during")
        back = recv_exactly(flooder, len(payload))
        out.expect(back == payload, "the one-byte frames did not come back identical")
        flooder.close()
        out.account("flooder", len(payload), ledger.lost(flooder))
        control_sent += roundtrip(out, control, "after")
        control.close()
        out.account("control", control_sent, ledger.lost(control))
    logs.check_quiet(out)
    out.figures["writes"] = len(payload)
    return out


class Quitting(Counted):
    """``QUIT`` answers with an 8 MiB producer and closes when done; other frames echo."""

    def on_frame(self, frame: bytes) -> None:
        if frame == b"QUIT":
            self.push_with_producer(BlockProducer(8 * MiB))
            self.close_when_done()
        else:
            self.push(frame + CRLF)


def after_close(driver: str, scale: Scale) -> Outcome:
    """A peer pipelines frames past QUIT and goes on sending: they are not dispatched (held,
    then ignored, as `Chat.close_when_done` documents), the reply arrives whole, then EOF.

    The reply is a lazy producer, so the server's queued output stays small and it goes on
    reading (and ignoring) while the peer drains the reply slowly.
    """
    out, ledger = Outcome("input after close_when_done", driver), Ledger()
    with LogWatch() as logs, serving(driver, ledger.factory(Quitting)) as server, \
            Clients() as clients:
        sock = clients.connect(server.address, rcvbuf=8192)
        first = b"one\r\nQUIT\r\ntwo\r\n"
        late = b"late frame\r\n" * 100
        sock.sendall(first)
        record = ledger.fed(sock, len(first))
        sock.sendall(late)
        ledger.fed(sock, len(first) + len(late))
        data, how = read_to_end(sock)
        reply = b"".join(producer_block(i) for i in range(8 * MiB // BLOCK))
        out.expect(how == "eof", f"the connection ended with a {how}")
        out.expect(data == b"one\r\n" + reply, f"got {len(data)} bytes, expected "
                   f"{5 + len(reply)}: {data[:20]!r}...")
        sock.close()  # the server lingers until then (or LINGER seconds)
        ledger.lost(sock)
        out.expect(record.exc is None, f"connection_lost got {record.exc!r}")
        out.expect(record.ignored == len(late), f"{record.ignored} bytes ignored after the "
                   f"close, expected the {len(late)} sent after it")
        out.account("pipelining peer", len(first) + len(late), record, may_hold=True)
        out.figures.update(ignored=record.ignored, held=record.held or 0)
    logs.check_quiet(out)
    return out


# ---------------------------------------------------------------------------- 4. limits
#
# Server-wide limits (`sanschat.drivers.Limits`, the ``serve`` options): each scenario runs
# ``python -m sanschat serve echo`` in a subprocess, so that its RSS, descriptors, CPU time,
# stderr and exit status are the server's own.


@dataclass(frozen=True)
class LimitSizes:
    """How big the limit scenarios are at one `Scale` (by name, in `LIMIT_SIZES`)."""

    slowloris: int  # connections that never end a frame
    frame_timeout: float  # the server's --frame-timeout for them
    held: int  # idle connections held at once
    slow_readers: int  # peers that flood and read 1 byte a second
    slow_seconds: float  # how long they do
    fd_limit: int  # the server's RLIMIT_NOFILE in the descriptor exhaustion
    starved_seconds: float  # how long the server is kept out of descriptors
    sigterm: int  # connections open at SIGTERM


LIMIT_SIZES = {
    "tiny": LimitSizes(slowloris=20, frame_timeout=0.5, held=50, slow_readers=4,
                       slow_seconds=1.0, fd_limit=64, starved_seconds=2.0, sigterm=50),
    "small": LimitSizes(slowloris=300, frame_timeout=1.0, held=1000, slow_readers=30,
                        slow_seconds=3.0, fd_limit=64, starved_seconds=3.0, sigterm=1000),
    "full": LimitSizes(slowloris=5000, frame_timeout=5.0, held=10000, slow_readers=300,
                       slow_seconds=10.0, fd_limit=128, starved_seconds=10.0, sigterm=10000),
}
SLOW_HIGH_WATER = 256 * 1024  # the slow readers' server runs with --high-water this


def _echo_argv(driver: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "sanschat", "serve", "echo", "--driver", driver,
            "--port", "0", *options]


def _fresh_latency(address: tuple[str, int], timeout: float = 5.0) -> float:
    """Seconds a new client waits for its first echo (inf if none within *timeout*)."""
    started = time.monotonic()
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(b"fresh\r\n")
            if recv_exactly(sock, 7) != b"fresh\r\n":
                return float("inf")
    except (OSError, ScenarioFailed):
        return float("inf")
    return time.monotonic() - started


def _open_verified(address: tuple[str, int], count: int) -> list[socket.socket]:
    """*count* non-blocking connections, each of whose hello was echoed."""
    clients = [_LoadClient(0, 0, 0) for _ in range(count)]
    with selectors.DefaultSelector() as sel:
        try:
            _open_all(address, clients, sel, time.monotonic() + 120)
        except BaseException:
            for client in clients:
                if client.sock is not None:
                    client.sock.close()
            raise
    return [client.sock for client in clients if client.sock is not None]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _closed(sock: socket.socket) -> bool:
    """Non-blocking: True if the server has closed *sock* (EOF or reset); drops input."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def slowloris(driver: str, scale: Scale) -> Outcome:
    """N connections each send a byte now and then but never end a frame: the frame timeout
    closes every one, and a fresh client is answered all along."""
    out, size = Outcome("slowloris, frame timeout", driver), LIMIT_SIZES[scale.name]
    n, timeout = size.slowloris, size.frame_timeout
    raise_fd_limit(n + 256)
    argv = _echo_argv(driver, "--frame-timeout", str(timeout), "--idle-timeout", "0",
                      "--max-connections", str(n + 64))
    with ServerProcess(argv) as server:
        socks = _open_verified(server.address, n)
        try:
            started = time.monotonic()
            for sock in socks:
                out.sent += sock.send(b"GET / HTTP/1.1\r\nHost: x")
            open_socks, worst, closed_at = set(socks), 0.0, 0.0
            deadline = started + timeout * 3 + 5
            drip = started
            while open_socks and time.monotonic() < deadline:
                dripping = time.monotonic() >= drip
                if dripping:  # a byte every half timeout: never idle, never a frame
                    drip += timeout / 2
                for sock in list(open_socks):
                    if _closed(sock):
                        open_socks.discard(sock)
                    elif dripping:
                        with contextlib.suppress(OSError):
                            out.sent += sock.send(b"x")
                closed_at = time.monotonic() - started
                worst = max(worst, _fresh_latency(server.address))
                time.sleep(min(0.25, timeout / 4))
            out.expect(not open_socks, f"{len(open_socks)} of {n} slowloris connections "
                       f"still open {closed_at:.1f} s after the timeout of {timeout} s")
            out.expect(worst <= 1.0, f"a fresh client waited {worst:.2f} s during the attack")
            after = _fresh_latency(server.address)
            out.expect(after <= 1.0, f"a fresh client waited {after:.2f} s after the attack")
        finally:
            for sock in socks:
                sock.close()
    server.check_clean_exit(out)
    out.figures.update(connections=n, frame_timeout=timeout, closed=n - len(open_socks),
                       all_closed_after=closed_at, fresh_worst=worst)
    return out


def held_connections(driver: str, scale: Scale) -> Outcome:
    """N idle connections at once: all held, a fresh client answered, memory per connection
    within the documented `CONNECTION_OVERHEAD`."""
    from sanschat.drivers import CONNECTION_OVERHEAD

    out, size = Outcome("connections held", driver), LIMIT_SIZES[scale.name]
    n = size.held
    raise_fd_limit(n + 256)
    with ServerProcess(_echo_argv(driver, "--max-connections", str(n + 64))) as server:
        idle_rss, idle_fds = server.status("VmRSS"), server.fd_count()
        socks = _open_verified(server.address, n)
        try:
            held = server.fd_count() - idle_fds
            rss = server.status("VmRSS")
            latency = _fresh_latency(server.address)
            out.sent = n * len(HELLO)
        finally:
            for sock in socks:
                sock.close()
        started = time.monotonic()  # then every socket is closed on the server too
        while server.fd_count() > idle_fds and time.monotonic() - started < 3 * TIMEOUT:
            time.sleep(0.05)
        released = time.monotonic() - started
        out.expect(server.fd_count() <= idle_fds,
                   f"{server.fd_count() - idle_fds} descriptors still open after the clients left")
    server.check_clean_exit(out)
    per = (rss - idle_rss) / n
    out.expect(held >= n, f"the server holds {held} sockets, not {n}")
    out.expect(latency <= 1.0, f"a fresh client waited {latency:.2f} s with {n} held")
    out.expect(rss - idle_rss <= n * CONNECTION_OVERHEAD + 2 * MiB,  # 2 MiB: the allocator's
               f"{per / 1024:.1f} KiB per idle connection, over CONNECTION_OVERHEAD")  # steps
    out.figures.update(connections=n, held=min(held, n), rss=rss, idle_rss=idle_rss,
                       per_connection=per, fresh=latency, released=released)
    return out


def slow_readers(driver: str, scale: Scale) -> Outcome:
    """N peers flood the echo server and read one byte a second: the server's growth stays
    within `Limits.worst_case` for its --high-water, and a fresh client is answered."""
    from sanschat.drivers import Limits

    out, size = Outcome("slow readers, memory bound", driver), LIMIT_SIZES[scale.name]
    n = size.slow_readers
    raise_fd_limit(n + 256)
    bound = Limits(max_connections=n, high_water=SLOW_HIGH_WATER).worst_case(MAX_FRAME_SIZE)
    line = b"z" * 1022 + CRLF
    block = line * 64
    argv = _echo_argv(driver, "--high-water", str(SLOW_HIGH_WATER))
    with ServerProcess(argv) as server:
        idle_rss = server.status("VmRSS")
        socks = _open_verified(server.address, n)
        try:
            for sock in socks:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            started = time.monotonic()
            worst, next_read = 0.0, started
            while time.monotonic() - started < size.slow_seconds:
                for sock in socks:
                    with contextlib.suppress(BlockingIOError, ConnectionError):
                        out.sent += sock.send(block)
                if time.monotonic() >= next_read:  # one byte a second each
                    next_read += 1.0
                    for sock in socks:
                        with contextlib.suppress(BlockingIOError, ConnectionError):
                            sock.recv(1)
                    worst = max(worst, _fresh_latency(server.address))
                time.sleep(0.02)
            peak = server.status("VmHWM")
        finally:
            for sock in socks:
                sock.close()
    server.check_clean_exit(out)
    growth = peak - idle_rss
    out.expect(growth <= bound, f"the server grew by {growth / MiB:.0f} MiB, over the "
               f"documented worst case of {bound / MiB:.0f} MiB")
    # The fresh client's wait is a figure here, not a bound (item 1 of issue 11, fan-out and
    # the kernel's socket buffers, is where it is bounded): at full scale it was 0.4-2 s.
    out.figures.update(readers=n, growth=growth, bound=bound, fresh_worst=worst)
    return out


_STARVED_PRELUDE = (
    "import resource, sys; from sanschat.__main__ import main; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), "
    "resource.getrlimit(resource.RLIMIT_NOFILE)[1])); sys.exit(main(sys.argv[2:]))"
)


def fd_exhaustion(driver: str, scale: Scale) -> Outcome:
    """The server runs out of descriptors with connections waiting: at most one log line a
    second, no busy loop, and it serves again once descriptors are free."""
    out, size = Outcome("out of descriptors", driver), LIMIT_SIZES[scale.name]
    limit, seconds = size.fd_limit, size.starved_seconds
    argv = [sys.executable, "-c", _STARVED_PRELUDE, str(limit), "serve", "echo", "--driver",
            driver, "--port", "0"]
    with ServerProcess(argv) as server:
        socks: list[socket.socket] = []
        try:
            for _ in range(limit + 32):  # more than it can accept; the rest wait in the backlog
                sock = socket.create_connection(server.address, timeout=TIMEOUT)
                socks.append(sock)
                out.sent += sock.send(HELLO)
            time.sleep(0.5)  # until it is out of descriptors
            cpu, lines = _cpu_seconds(server.proc.pid), len(server.stderr_lines())
            time.sleep(seconds)
            cpu = _cpu_seconds(server.proc.pid) - cpu
            logged = len(server.stderr_lines()) - lines
        finally:
            for sock in socks:
                sock.close()
        recovered = float("inf")
        started = time.monotonic()
        while time.monotonic() - started < 5.0 and recovered == float("inf"):
            recovered = _fresh_latency(server.address, 1.0)
        recovered = time.monotonic() - started if recovered != float("inf") else recovered
    out.expect(server.returncode == 0, f"the server exited with {server.returncode}")
    out.expect(logged <= seconds + 1, f"{logged} log lines in {seconds:.0f} s out of fds")
    out.expect(cpu <= 0.2 * seconds, f"{cpu:.2f} s of CPU in {seconds:.0f} s out of fds: "
               "a busy loop")
    out.expect(recovered <= 3.0, f"a fresh client waited {recovered:.2f} s after fds freed")
    out.figures.update(fd_limit=limit, seconds=seconds, lines_per_s=logged / seconds,
                       cpu_share=cpu / seconds, recovered=recovered)
    return out


def sigterm_held(driver: str, scale: Scale) -> Outcome:
    """SIGTERM with N connections open (half in mid-frame): the server flushes, closes them
    gracefully and exits 0 within its shutdown grace period (plus the abort allowance)."""
    from sanschat.__main__ import ABORT_ALLOWANCE
    from sanschat.drivers import Limits

    out, size = Outcome("SIGTERM with connections open", driver), LIMIT_SIZES[scale.name]
    n, grace = size.sigterm, Limits().shutdown_grace
    raise_fd_limit(n + 256)
    with ServerProcess(_echo_argv(driver, "--max-connections", str(n + 64))) as server:
        socks = _open_verified(server.address, n)
        try:
            for sock in socks[::2]:
                out.sent += sock.send(b"half a frame")
            out.sent += n * len(HELLO)
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            ended, open_socks = 0, set(socks)
            while open_socks and time.monotonic() - started < grace + 5:
                for sock in list(open_socks):
                    if _closed(sock):  # a well-behaved peer closes at the server's FIN
                        sock.close()
                        open_socks.discard(sock)
                        ended += 1
                time.sleep(0.01)
            server.proc.wait(TIMEOUT)
            elapsed = time.monotonic() - started
        finally:
            for sock in socks:
                sock.close()
    server.check_clean_exit(out)
    out.expect(elapsed <= grace + ABORT_ALLOWANCE,
               f"the server took {elapsed:.1f} s to exit, grace {grace} s")
    out.expect(ended == n, f"{n - ended} of {n} clients never saw the server close")
    out.figures.update(connections=n, exit_seconds=elapsed, grace=grace,
                       returncode=float(server.returncode or 0))
    return out


def _summary_slowloris(o: Outcome) -> str:
    f = o.figures
    return (f"{f['closed']:.0f}/{f['connections']:.0f} closed by the {f['frame_timeout']:g} s "
            f"frame timeout, all within {f['all_closed_after']:.1f} s; fresh client "
            f"{f['fresh_worst'] * 1000:.0f} ms at worst")


def _summary_held(o: Outcome) -> str:
    f = o.figures
    return (f"{f['held']:.0f} held, RSS {f['rss'] / MiB:.0f} MiB ({f['per_connection'] / 1024:.1f}"
            f" KiB each); fresh client {f['fresh'] * 1000:.0f} ms; all closed "
            f"{f['released']:.1f} s after the clients left")


def _summary_slow(o: Outcome) -> str:
    f = o.figures
    return (f"{f['readers']:.0f} readers: +{f['growth'] / MiB:.0f} MiB (bound "
            f"{f['bound'] / MiB:.0f} MiB at --high-water {SLOW_HIGH_WATER // 1024} KiB); "
            f"fresh client {f['fresh_worst'] * 1000:.0f} ms at worst")


def _summary_fds(o: Outcome) -> str:
    f = o.figures
    return (f"{f['lines_per_s']:.1f} lines/s, {f['cpu_share'] * 100:.0f}% CPU over "
            f"{f['seconds']:.0f} s; served again {f['recovered']:.1f} s after fds freed")


def _summary_sigterm(o: Outcome) -> str:
    f = o.figures
    return (f"{f['connections']:.0f} open: exit {f['returncode']:.0f} in "
            f"{f['exit_seconds']:.1f} s (grace {f['grace']:g} s)")




def _http_argv(driver: str) -> list[str]:
    return [sys.executable, "-m", "sanschat", "serve", "http", "--driver", driver, "--port", "0"]


def header_bomb(driver: str, scale: Scale) -> Outcome:
    """N connections each send ~100 header lines of 1 KiB and never end the headers: each is
    answered ``431`` once its headers pass 16 KiB and closed; the server's growth stays
    within the per-connection bound (16 KiB of headers each, plus read buffers)."""
    from sanschat.examples import HTTPRequestHandler

    out, n = Outcome("HTTP header bomb", driver), scale.header_peers
    raise_fd_limit(n + 256)
    bomb = b"GET / HTTP/1.0\r\n" + b"".join(
        b"X-Bomb-%03d: %s\r\n" % (i, b"b" * 1000) for i in range(100))
    with ServerProcess(_http_argv(driver)) as server:
        idle_rss = server.status("VmRSS")
        socks = [socket.create_connection(server.address, timeout=TIMEOUT) for _ in range(n)]
        try:
            replies = []
            for sock in socks:
                with contextlib.suppress(OSError):
                    out.sent += sock.send(bomb)
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                replies.append(read_to_end(sock)[0])
            peak = server.status("VmHWM")
            latency = _fresh_http(server.address)
        finally:
            for sock in socks:
                sock.close()
    server.check_clean_exit(out)
    refused = sum(r.startswith(b"HTTP/1.0 431 ") for r in replies)
    bound = n * (HTTPRequestHandler.max_header_bytes + 4 * READ_SIZE) + 16 * MiB
    out.expect(refused == n, f"{refused} of {n} header bombs answered 431")
    out.expect(peak - idle_rss <= bound, f"the server grew by {(peak - idle_rss) / MiB:.1f} MiB "
               f"(bound {bound / MiB:.0f} MiB)")
    out.expect(latency <= 1.0, f"a fresh request waited {latency:.2f} s")
    out.figures.update(peers=n, refused=refused, growth=peak - idle_rss, bound=bound,
                       fresh=latency)
    return out


#: RSS growth below this is within the noise of page and arena granularity (see header_drip).
_RSS_NOISE = 256 * 1024


def header_drip(driver: str, scale: Scale) -> Outcome:
    """N connections drip one header line one byte at a time: the server holds about one
    byte per byte received (one growing buffer, no object per piece), then answers."""
    out, n, size = Outcome("HTTP header dripped byte by byte", driver), scale.header_peers, \
        scale.drip_bytes
    raise_fd_limit(n + 256)
    head = b"GET /drip HTTP/1.0\r\nX-Drip: " + b"d" * size
    with ServerProcess(_http_argv(driver)) as server:
        socks = [socket.create_connection(server.address, timeout=TIMEOUT) for _ in range(n)]
        try:
            for sock in socks:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            time.sleep(0.2)
            before = server.status("VmRSS")
            for i in range(len(head)):
                for sock in socks:
                    out.sent += sock.send(head[i : i + 1])
                if i % 500 == 0:
                    time.sleep(0.01)  # let the server read: one small read per byte or so
            time.sleep(0.5)
            held = server.status("VmRSS") - before
            for sock in socks:
                sock.sendall(b"\r\n\r\n")
            replies = [read_to_end(sock)[0] for sock in socks]
        finally:
            for sock in socks:
                sock.close()
    server.check_clean_exit(out)
    answered = sum(r.startswith(b"HTTP/1.0 200 OK") for r in replies)
    per_byte = held / (n * len(head))
    out.expect(answered == n, f"{answered} of {n} dripped requests answered 200")
    # RSS grows by pages and allocator arenas: at CI scale (20 KB dripped in all) one arena's
    # worth of pages is noise (a run saw 176 KiB, 8.9 bytes per byte, where others saw under 2);
    # an object per piece would cost about 50 bytes per byte, far above the slack.
    out.expect(held <= 8 * n * len(head) + _RSS_NOISE,
               f"{per_byte:.1f} bytes of server memory per byte dripped")
    out.figures.update(peers=n, bytes_each=len(head), held=held, per_byte=per_byte)
    return out


def _fresh_http(address: tuple[str, int]) -> float:
    """Seconds a new HTTP client waits for its whole answer (inf if none within 5 s)."""
    started = time.monotonic()
    try:
        with socket.create_connection(address, timeout=5.0) as sock:
            sock.sendall(b"GET /fresh HTTP/1.0\r\n\r\n")
            if not read_to_end(sock)[0].startswith(b"HTTP/1.0 200 OK"):
                return float("inf")
    except (OSError, ScenarioFailed):
        return float("inf")
    return time.monotonic() - started


def _summary_bomb(o: Outcome) -> str:
    f = o.figures
    return (f"{f['refused']:.0f}/{f['peers']:.0f} answered 431; server +{f['growth'] / MiB:.1f}"
            f" MiB (bound {f['bound'] / MiB:.0f}); fresh request {f['fresh'] * 1000:.0f} ms")


def _summary_drip(o: Outcome) -> str:
    f = o.figures
    return (f"{f['peers']:.0f} x {f['bytes_each']:.0f} bytes dripped: {f['per_byte']:.1f} bytes "
            f"of server memory per byte")


# ---------------------------------------------------------------------------- 5. fan-out


# Issue 11's bounds: a chat room fed at full speed grows the server by at most 64 MiB and
# still answers a fresh client within 1 s; one read of many lines delays others < 100 ms.
FANOUT_RSS_BOUND = 64 * MiB
FRESH_CLIENT_BOUND = 1.0
STALL_DELAY_BOUND = 0.100
FLOOD_LINE = b"flood " + b"f" * 40 + CRLF  # what a full-speed sender repeats


class _ChatPeer:
    """One client socket of a fan-out scenario, in `_ChatClients`' selectors loop."""

    __slots__ = ("eof", "out", "pos", "received", "role", "sock", "tail")

    def __init__(self, sock: socket.socket, role: str, out: bytes = b"") -> None:
        self.sock, self.role, self.out = sock, role, out
        self.pos = self.received = 0
        self.eof = False
        self.tail = b""  # the last bytes received (a drop reason ends up there)


class _ChatClients:
    """Non-blocking chat clients in one selectors loop, each in a role:

    * ``silent``: connected, never reads (its receive buffer is small, set before connect);
    * ``flood``: writes `out` over and over (``pos`` wraps), reads and drops what comes;
    * ``send``: writes `out` once, reads and drops what comes;
    * ``read``: reads as fast as it can, counting bytes.

    A ``probe`` watcher (`watch`) runs in a thread of its own with a blocking socket, so
    that its latency is not the loop's: it scans for ``probe <k> <ns>`` lines and keeps
    the delay of each (now - ns, one clock in this process).
    """

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sel = selectors.DefaultSelector()
        self.peers: list[_ChatPeer] = []
        self.delays: dict[int, float] = {}
        self._watch: socket.socket | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, role: str, out: bytes = b"", rcvbuf: int | None = None) -> _ChatPeer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect: the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(TIMEOUT)
        sock.connect(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        peer = _ChatPeer(sock, role, out)
        self.peers.append(peer)
        if role != "silent":
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
            self.sel.register(sock, events, peer)
        return peer

    def watch(self) -> None:
        """Start the probe watcher (a member that reads everything, in its own thread)."""
        sock = socket.create_connection(self.address, timeout=0.2)
        self._watch = sock
        self._watcher = threading.Thread(target=self._run_watch, args=(sock,), daemon=True)
        self._watcher.start()

    def _run_watch(self, sock: socket.socket) -> None:
        pending = b""
        while not self._stop.is_set():
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            now = time.monotonic_ns()
            pending = pending[-64:] + chunk
            start = 0
            while (at := pending.find(b"probe ", start)) >= 0:
                end = pending.find(CRLF, at)
                if end < 0:
                    break
                fields = pending[at:end].split()
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                    self.delays.setdefault(int(fields[1]), (now - int(fields[2])) / 1e9)
                start = end
            pending = pending[start:]

    def probe(self, k: int) -> None:
        """A fresh client: connect, send ``probe k <now>`` at once, then read and drop."""
        peer = self.add("read")
        peer.sock.send(b"probe %d %d\r\n" % (k, time.monotonic_ns()))  # into an empty buffer

    def run(self, seconds: float, until: Callable[[], bool] | None = None,
            every: Callable[[], None] | None = None) -> None:
        """Move bytes for *seconds* (or until *until* holds), calling *every* each 50 ms."""
        deadline = time.monotonic() + seconds
        tick = 0.0
        while time.monotonic() < deadline and not (until is not None and until()):
            if every is not None and time.monotonic() >= tick:
                every()
                tick = time.monotonic() + 0.05
            for key, mask in self.sel.select(0.02):
                self._handle(key.data, mask)

    def _handle(self, peer: _ChatPeer, mask: int) -> None:
        sock = peer.sock
        if mask & selectors.EVENT_READ:
            try:
                chunk = sock.recv(1 << 18)
            except BlockingIOError:
                chunk = None
            except OSError:
                chunk = b""
            if chunk is not None:
                if not chunk:
                    peer.eof = True
                    self.sel.unregister(sock)
                    return
                peer.received += len(chunk)
                peer.tail = (peer.tail + chunk)[-200:]
        if mask & selectors.EVENT_WRITE:
            out = peer.out
            try:
                peer.pos += sock.send(out[peer.pos % len(out) :] if peer.role == "flood"
                                      else out[peer.pos :])
            except BlockingIOError:
                pass
            except OSError:
                peer.eof = True
                self.sel.unregister(sock)
                return
            if peer.role == "send" and peer.pos >= len(out):
                self.sel.modify(sock, selectors.EVENT_READ, peer)

    def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.close()
        if self._watcher is not None:
            self._watcher.join(TIMEOUT)
        self.sel.close()
        for peer in self.peers:
            peer.sock.close()


def _chat_server(driver: str, *options: str) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "sanschat", "serve", "chat", "--driver", driver,
                          "--port", "0", *options])


def _wait_for_members(server: ServerProcess, idle_fds: int, count: int) -> None:
    """Wait until the server holds *count* more sockets than idle (every member joined)."""
    deadline = time.monotonic() + 60
    while server.fd_count() - idle_fds < count:
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"only {server.fd_count() - idle_fds} of {count} members joined")
        time.sleep(0.02)


def _stop_chat(server: ServerProcess, clients: _ChatClients, out: Outcome) -> None:
    clients.close()
    server.stop()
    server.check_clean_exit(out)


def fanout_silent(driver: str, scale: Scale) -> Outcome:
    """Silent members and two full-speed senders: the server's growth stays bounded and a
    fresh client's line reaches a reader within a second, all along."""
    out = Outcome("fan-out to silent members", driver)
    n = scale.silent_members
    raise_fd_limit(n + 512)
    # Room for the members, the senders and every fresh client above the default 1,024
    # connections (at the full scale, 1,000 members: the 22nd fresh client waited for the
    # first members to be dropped, seconds later, on every driver).
    with _chat_server(driver, "--max-connections", str(n + 256)) as server:
        idle_fds = server.fd_count()
        clients = _ChatClients(server.address)
        try:
            for _ in range(n):
                clients.add("silent", rcvbuf=8192)
            clients.watch()
            _wait_for_members(server, idle_fds, n + 1)
            base_rss = server.status("VmRSS")
            for _ in range(2):
                clients.add("flood", FLOOD_LINE * 1000)
            probed = [0, 0.0]  # probes sent, when the last was

            def every() -> None:  # a fresh client every 0.25 s
                if time.monotonic() - probed[1] >= 0.25:
                    probed[0] += 1
                    probed[1] = time.monotonic()
                    clients.probe(int(probed[0]))

            clients.run(scale.fanout_seconds, every=every)
            sent = int(probed[0])
            clients.run(FRESH_CLIENT_BOUND + 0.5)  # the last probes' time to arrive
            peak = server.status("VmHWM")
            flooded = sum(p.pos for p in clients.peers if p.role == "flood")
            dropped = sum(1 for p in clients.peers if p.role == "silent" and _member_closed(p.sock))
        finally:
            _stop_chat(server, clients, out)
    delays = clients.delays
    late = [k for k in range(1, sent + 1)
            if delays.get(k, FRESH_CLIENT_BOUND + 1) > FRESH_CLIENT_BOUND]
    out.sent = out.fed = out.delivered = flooded
    out.figures.update(members=n, rss_growth=peak - base_rss, base_rss=base_rss, peak_rss=peak,
                       probes=sent, max_delay=max(delays.values(), default=float("inf")),
                       flooded=flooded, dropped=dropped)
    out.expect(peak - base_rss <= FANOUT_RSS_BOUND,
               f"server RSS grew by {(peak - base_rss) / MiB:.0f} MiB (bound 64)")
    out.expect(sent > 0 and not late, f"{len(late)} of {sent} fresh clients not relayed within "
               f"{FRESH_CLIENT_BOUND} s (first: #{late[:1]})")
    out.expect(flooded > 0, "the senders sent nothing")
    return out


def _member_closed(sock: socket.socket) -> bool:
    """Whether the server has closed a silent member (read now, to its end or a reset)."""
    try:
        while sock.recv(1 << 16):
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def fanout_fast(driver: str, scale: Scale) -> Outcome:
    """Members that read as fast as they can, four senders writing 256 KiB at a time: no
    member is dropped, each receives every byte the senders sent."""
    out = Outcome("fan-out to fast members", driver)
    n, size = scale.fast_members, scale.fast_bytes
    raise_fd_limit(n + 256)
    with _chat_server(driver) as server:
        idle_fds = server.fd_count()
        clients = _ChatClients(server.address)
        try:
            readers = [clients.add("read") for _ in range(n)]
            _wait_for_members(server, idle_fds, n)
            payloads = [b"".join(b"sender %d line %07d %s\r\n" % (s, i, b"p" * 40)
                                 for i in range(size // 64)) for s in range(4)]
            senders = [clients.add("send", payload) for payload in payloads]
            total = sum(len(p) for p in payloads)
            started = time.monotonic()
            clients.run(60 + size / MiB, until=lambda: all(
                r.received >= total or r.eof for r in readers))
            elapsed = time.monotonic() - started
            clients.run(0.2)  # anything more than expected would show now
        finally:
            _stop_chat(server, clients, out)
    dropped = [r for r in readers if r.eof or b"SendQ" in r.tail]
    short = sum(max(0, total - r.received) for r in readers)
    out.sent = sum(s.pos for s in senders) * n
    out.fed = out.delivered = sum(r.received for r in readers)
    out.silent = short
    out.figures.update(members=n, bytes_each=total, seconds=elapsed, dropped=len(dropped),
                       rate=total * n / elapsed)
    out.expect(not dropped, f"{len(dropped)} of {n} members that read were dropped")
    out.expect(not short, f"{short} bytes never reached the members")
    out.expect(all(r.received == total for r in readers if not r.eof),
               "a member received more than was sent")
    return out


def stall_write(driver: str, scale: Scale) -> Outcome:
    """One 256 KiB write of 1-byte lines to a room of members that read: the other
    clients' lines still get through within 100 ms (the frame budget, the paused sender)."""
    out = Outcome("256 KiB of 1-byte lines to the room", driver)
    n = scale.stall_members
    raise_fd_limit(n + 256)
    stall = b"x\n" * (128 * 1024)
    expected = len(stall) // 2 * 3  # relayed as b"x\r\n"
    with _chat_server(driver) as server:
        idle_fds = server.fd_count()
        clients = _ChatClients(server.address)
        try:
            members = [clients.add("read") for _ in range(n)]
            clients.watch()
            _wait_for_members(server, idle_fds, n + 1)
            probes = iter(range(1, 1_000_000))
            sent = [0]

            def every() -> None:  # a probe line every 50 ms, from a fresh client
                sent[0] = next(probes)
                clients.probe(sent[0])

            clients.run(0.5, every=every)
            before = max(clients.delays.values(), default=0.0)
            first = sent[0] + 1
            started = time.monotonic()
            staller = clients.add("send", stall)
            clients.run(120, until=lambda: all(m.received >= expected or m.eof for m in members),
                        every=every)
            elapsed = time.monotonic() - started
            last = sent[0]
            clients.run(STALL_DELAY_BOUND + 0.5)
        finally:
            _stop_chat(server, clients, out)
    during = [clients.delays.get(k, float("inf")) for k in range(first, last + 1)]
    short = sum(max(0, expected - m.received) for m in members)
    out.sent = staller.pos
    out.fed = out.delivered = sum(m.received for m in members)
    out.silent = short
    out.figures.update(members=n, seconds=elapsed, probes=len(during), delay_before=before,
                       max_delay=max(during, default=float("inf")))
    out.expect(staller.pos == len(stall), "the staller could not send its write")
    out.expect(not short, f"{short} bytes of the stall write never reached the members")
    out.expect(bool(during) and max(during) < STALL_DELAY_BOUND,
               f"other clients delayed up to {max(during, default=0) * 1000:.0f} ms "
               f"(bound {STALL_DELAY_BOUND * 1000:.0f}) over {len(during)} probes")
    return out


class _Racing(Chat):
    """On each line: a thread pushes `LINES` numbered lines, then ``close_threadsafe``, then
    one late push; a second thread pushes as many at the same time."""

    terminator = CRLF
    LINES = 50

    def __init__(self, chats: list[_Racing]) -> None:
        super().__init__()
        chats.append(self)

    def found_frame(self, frame: bytes) -> None:
        def closer() -> None:
            for i in range(self.LINES):
                self.push_threadsafe(b"a%d\r\n" % i)
            self.close_threadsafe()
            self.push_threadsafe(b"late\r\n")

        def other() -> None:
            for i in range(self.LINES):
                self.push_threadsafe(b"b%d\r\n" % i)

        for target in (closer, other):
            threading.Thread(target=target, daemon=True).start()


def thread_close_race(driver: str, scale: Scale) -> Outcome:
    """``close_threadsafe`` with pushes racing it from two threads: every line pushed before
    the close arrives, each later one is dropped and counted, no error is logged."""
    out = Outcome("thread close race", driver)
    chats: list[_Racing] = []
    lost = late = 0
    with LogWatch() as logs, serving(driver, lambda: _Racing(chats)) as server, \
            Clients() as clients:
        for _ in range(scale.race_rounds):
            sock = clients.connect(server.address)
            sock.sendall(b"go\r\n")
            out.sent += 4
            data, how = read_to_end(sock)
            sock.close()
            lines = data.split(CRLF)[:-1]
            want = [b"a%d" % i for i in range(_Racing.LINES)]
            got = [line for line in lines if line.startswith(b"a")]
            others = [line for line in lines if line.startswith(b"b")]
            missing = len(want) - len(got) if got == want[: len(got)] else len(want)
            lost += missing
            out.expect(how == "eof", f"a round ended with a {how}")
            out.expect(others == [b"b%d" % i for i in range(len(others))],
                       "the other thread's lines came out of order")
            chat = chats[-1]
            deadline = time.monotonic() + TIMEOUT
            expected = 1 + _Racing.LINES - len(others)
            while chat.late_pushes < expected and time.monotonic() < deadline:
                time.sleep(0.001)
            out.expect(chat.late_pushes == expected,
                       f"{chat.late_pushes} late pushes counted, expected {expected}")
            late += chat.late_pushes
        logs.check_quiet(out)
    out.fed = out.delivered = out.sent
    out.silent = lost * 4
    out.figures.update(rounds=scale.race_rounds, lost=lost, late=late)
    out.expect(not lost, f"{lost} lines pushed before close_threadsafe never arrived")
    return out




# ---------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Scenario:
    """One scenario: *scaled* ones grow with the `Scale` (the slow run repeats them)."""

    slug: str
    kind: Literal["load", "fault", "bad input", "limit", "fan-out"]
    run: Callable[[str, Scale], Outcome]
    scaled: bool = False
    summary: Callable[[Outcome], str] | None = None  # its figures in a line, for the report


LOAD = Scenario("load", "load", load, scaled=True)
FAULTS = [
    Scenario("reset-mid-frame", "fault", reset_mid_frame),
    Scenario("reset-mid-send", "fault", reset_mid_send),
    Scenario("half-close-queued", "fault", half_close),
    Scenario("non-reading-peer", "fault", non_reading_peer, scaled=True),
    Scenario("slow-reader-close", "fault", slow_reader_close),
    Scenario("handler-raises", "fault", handler_raises),
    Scenario("idle-timeout", "fault", idle_timeout),
    Scenario("abrupt-shutdown", "fault", abrupt_shutdown, scaled=True),
]
BAD_INPUTS = [
    Scenario("oversized-frame", "bad input", oversized_frame),
    Scenario("one-byte-flood", "bad input", one_byte_flood, scaled=True),
    Scenario("no-terminator", "bad input", no_terminator),
    Scenario("input-after-close", "bad input", after_close),
    *(Scenario(c.decode(), "bad input", _bad_command(c)) for c in BAD_COMMANDS),
]
LIMITS = [
    Scenario("slowloris", "limit", slowloris, scaled=True, summary=_summary_slowloris),
    Scenario("connections-held", "limit", held_connections, scaled=True,
             summary=_summary_held),
    Scenario("slow-readers", "limit", slow_readers, scaled=True, summary=_summary_slow),
    Scenario("fd-exhaustion", "limit", fd_exhaustion, scaled=True, summary=_summary_fds),
    Scenario("sigterm-held", "limit", sigterm_held, scaled=True, summary=_summary_sigterm),
    Scenario("header-bomb", "limit", header_bomb, scaled=True, summary=_summary_bomb),
    Scenario("header-drip", "limit", header_drip, scaled=True, summary=_summary_drip),
]
FANOUT = [
    Scenario("fanout-silent", "fan-out", fanout_silent, scaled=True),
    Scenario("fanout-fast", "fan-out", fanout_fast, scaled=True),
    Scenario("stall-write", "fan-out", stall_write, scaled=True),
    Scenario("thread-close-race", "fan-out", thread_close_race, scaled=True),
]
SCENARIOS = [LOAD, *FAULTS, *BAD_INPUTS, *LIMITS, *FANOUT]


def run_scenario(scenario: Scenario, driver: str, scale: Scale) -> Outcome:
    """Run *scenario*; an exception becomes a problem of the outcome (for the report)."""
    try:
        return scenario.run(driver, scale)
    except Exception as exc:
        out = Outcome(scenario.slug, driver)
        out.problems.append(f"{type(exc).__name__}: {exc}")
        return out


# ---------------------------------------------------------------------------- script


def _serve_producer(driver: str) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    announce_and_wait(start_server(driver, ProducerServer), stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The reliability scenarios' helper servers.")
    parser.add_argument("command", choices=["serve-producer"])
    parser.add_argument("--driver", default="select")
    args = parser.parse_args(argv)
    return _serve_producer(args.driver)


if __name__ == "__main__":
    sys.exit(main())
