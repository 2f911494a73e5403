"""End-to-end echo throughput over loopback: sanschat's drivers next to their peers.

Theory of operation: every contender is an echo server for ``\\r\\n``-terminated frames,
started in a background thread of this process (the sanschat drivers through
`sanschat.drivers.start_server`, every peer through a small class with the same
``address`` / ``stop()`` interface), so every server gets the same process, the same GIL
and one core.  The load comes from ONE separate client process (spawned once, reused for
every run): a lean non-blocking loop over all ``--clients`` sockets.  Two modes
(``--mode``, both by default):

* **bulk**: each client writes 16-byte frames in 64 KiB bursts, keeps at most ``--window``
  bytes in flight (so no one blocks on a full buffer), and reads the echoes back.  The
  sanschat servers run a per-frame echo (`found_frame`) and, once the installed sanschat
  has ``Chat.found_frames``, a batch-hook echo too (skipped with a note before that).
  Targets (DESIGN): per-frame >= 3.5 M frames/s and batch hook >= 8 M on every driver.
* **pingpong** (request/response): each connection keeps exactly one 16-byte request in
  flight, ``--round-trips`` times (after a few untimed ones); each reply must be that
  request, byte for byte.  Rate = round trips / s over all connections.  Targets (issue 9):
  every driver >= asyncore+asynchat and >= its own loop's plain per-frame server.  The
  client is a small C program (``pingpong_client.c``, compiled with the machine's ``cc`` on
  first use into the temporary directory) where a compiler is found, the Python loop
  `run_pingpong` otherwise (``--client``): the Python client needed 6.7 us of CPU per round
  trip, about what the fastest servers need, so it ran near 100 % and squeezed their
  differences; the C one needs about 5.5 (nearly all of it the kernel's loopback work).
  A round is about a third of a second, so ping-pong runs 9 rounds (best kept).

In bulk mode every received chunk is compared byte for byte (``bytes.startswith`` at the
stream offset, memcmp speed) with what that client sent there; frames carry the client's number, so
cross-talk between connections is caught too.  More bytes back than sent, a closed or
reset connection, or a mismatch fails the contender loudly (named on stderr, FAILED in the
table, exit status 1).  After the timed window the clients stop sending and drain what is
still in flight when that takes under ``--drain`` s; then they check that the lengths
match exactly.  Only verified bytes are counted: frames/s = verified bytes / 16 / seconds,
counted after a warm-up (connections set up, socket buffers grown).

A run is: start the server, run the clients, stop the server, check that no thread was
leaked.  Contenders run ``--repeat`` rounds, interleaved (the order rotates every round),
and the best round is kept: on a shared 2-core machine the fastest run is the one least
disturbed.  Server CPU (this process) and client CPU are measured over the timed window:
a server near 100 % and a client well under it means the server is what is measured; the
server's CPU time per round trip or frame (lowest round) is printed too, as the steadier
figure when other work shares the machine.  The header says which sanschat build is loaded
(``sanschat.COMPILED``, False for the pure-Python package).
Ratios are only taken within one run; targets are printed as MET / NOT MET.  Run with
``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import multiprocessing
import os
import platform
import select as select_module
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Protocol

from _report import table

import sanschat
from sanschat.drivers import start_server as sanschat_start_server
from sanschat.examples import MAX_FRAME_SIZE

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import asynchat
        import asyncore
    except ImportError:  # Python >= 3.12: the stdlib peers are gone
        asynchat = asyncore = None  # type: ignore[assignment]

try:
    import trio
except ImportError:
    trio = None  # type: ignore[assignment]

KiB = 1024
FRAME = 16  # bytes per frame, b"\r\n" included
BURST = 64 * KiB  # bytes per client write: 4096 frames
CYCLE_BURSTS = 8  # distinct bursts per client before its stream repeats
CYCLE = CYCLE_BURSTS * BURST
READ_SIZE = 256 * KiB  # bytes per receive, for the client and the hand-written servers
HIGH_WATER = 1024 * KiB  # hand-written servers stop reading above this much unsent output
HOST = "127.0.0.1"


class Server(Protocol):
    @property
    def address(self) -> tuple[str, int]: ...

    def stop(self, timeout: float = 5.0) -> None: ...


# --------------------------------------------------------------------------- client side


def client_cycle(client: int) -> bytes:
    """The bytes client *client* sends, repeated: CYCLE_BURSTS distinct 64 KiB bursts."""
    return b"".join(
        b"%04d%d%09d\r\n" % (client % 10000, burst, i)
        for burst in range(CYCLE_BURSTS)
        for i in range(BURST // FRAME)
    )


class EchoMismatch(Exception):
    """What came back is not what was sent."""


def _mismatch(client: int, offset: int, got: bytes, cycle: bytes) -> EchoMismatch:
    start = offset % CYCLE
    want = (cycle + cycle)[start : start + len(got)]
    at = next(i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b)
    return EchoMismatch(
        f"client {client}: byte {offset + at} of its stream differs: "
        f"got {got[max(0, at - 16) : at + 16]!r}, sent {want[max(0, at - 16) : at + 16]!r}"
    )


def run_clients(
    conn: Connection,
    port: int,
    clients: int,
    warmup: float,
    duration: float,
    window: int,
    drain: float,
    frames: int,
) -> dict[str, Any]:
    """Drive *clients* connections to *port*; report verified throughput to the parent.

    Sends ``("start",)`` and ``("end",)`` over *conn* at the edges of the timed window (so
    the parent can measure the server's CPU over the same window).  With *frames* > 0,
    each client sends that many frames and the window runs from connect to the last echo.
    """
    cycles = [client_cycle(i) for i in range(clients)]
    views = [memoryview(c) for c in cycles]
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(clients):
            sock = socket.create_connection((HOST, port), timeout=5.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            socks.append(sock)
        for i, sock in enumerate(socks):
            sel.register(sock, selectors.EVENT_READ, i)
        sent = [0] * clients
        recvd = [0] * clients
        blocked = [False] * clients
        limit = frames * FRAME if frames else 1 << 62
        buf = bytearray(READ_SIZE)
        mv = memoryview(buf)
        sending = True

        def top_up(i: int) -> bool:
            """Send while the window has room; True if the socket is full."""
            sock, view = socks[i], views[i]
            while sending:
                o = sent[i]
                if o >= limit:
                    return False
                rest = min(BURST - o % BURST, limit - o)
                if rest > window - (o - recvd[i]):
                    return False
                off = o % CYCLE
                try:
                    n = sock.send(view[off : off + rest])
                except BlockingIOError:
                    return True
                sent[i] = o + n
            return False

        def want_write(i: int, full: bool) -> None:
            if full != blocked[i]:
                blocked[i] = full
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if full else 0)
                sel.modify(socks[i], events, i)

        total = 0
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        fixed = frames > 0
        t_start = t0 if fixed else t0 + warmup
        t_end = t_start + duration
        started = ended = False
        base = measured = 0
        elapsed = client_cpu = 0.0
        drain_deadline = 0.0
        if fixed:
            conn.send(("start",))
            started = True
        for i in range(clients):
            want_write(i, top_up(i))
        deadline = t0 + warmup + duration + drain + 120.0  # a hung server cannot hang us
        select = sel.select
        while True:
            now = time.perf_counter()
            if not started and now >= t_start:
                started = True
                conn.send(("start",))
                base, t_start, cpu0 = total, now, time.process_time()
            if not ended and ((fixed and total == clients * limit) or (not fixed and now >= t_end)):
                ended = True
                conn.send(("end",))
                measured, elapsed = total - base, now - t_start
                client_cpu = time.process_time() - cpu0
                sending = False
                in_flight = sum(sent) - total
                rate = measured / elapsed if elapsed > 0 else 0.0
                # drain only if it is quick; otherwise the tail is left unverified and uncounted
                drain_deadline = now + (drain if in_flight <= rate * drain else 0.0)
            if ended and (total == sum(sent) or now >= drain_deadline):
                break
            if now >= deadline:
                raise TimeoutError(f"no progress: {total} of {sum(sent)} bytes echoed")
            for key, mask in select(0.01):
                i = key.data
                if mask & selectors.EVENT_READ:
                    sock = socks[i]
                    try:
                        n = sock.recv_into(buf)
                    except BlockingIOError:
                        n = -1
                    except OSError as exc:
                        raise EchoMismatch(
                            f"client {i}: {exc!r} after {recvd[i]} of {sent[i]} bytes"
                        ) from exc
                    if n == 0:
                        raise EchoMismatch(
                            f"client {i}: the server closed after {recvd[i]} of {sent[i]} bytes"
                        )
                    if n > 0:
                        o = recvd[i]
                        if o + n > sent[i]:
                            raise EchoMismatch(
                                f"client {i}: {o + n} bytes came back, only {sent[i]} were sent"
                            )
                        off = o % CYCLE
                        cycle = cycles[i]
                        first = min(n, CYCLE - off)
                        if not (
                            cycle.startswith(mv[:first], off)
                            and (first == n or cycle.startswith(mv[first:n]))
                        ):
                            raise _mismatch(i, o, bytes(mv[:n]), cycle)
                        recvd[i] = o + n
                        total += n
                        if sending and not blocked[i]:
                            top_up(i)
                if mask & selectors.EVENT_WRITE:
                    want_write(i, top_up(i))
        drained = total == sum(sent)
        if drained and recvd != sent:  # cannot happen given the checks above; cheap to say
            raise EchoMismatch("lengths differ after the drain")
        return {
            "count": measured / FRAME,
            "seconds": elapsed,
            "client_cpu": client_cpu,
            "drained": drained,
            "tail": sum(sent) - total,
            "verified": total,
        }
    finally:
        sel.close()
        for sock in socks:
            sock.close()


def run_pingpong(
    conn: Connection, port: int, clients: int, round_trips: int, warmup: int
) -> dict[str, Any]:
    """Ping-pong: each of *clients* connections keeps exactly one 16-byte request in flight.

    Every connection first makes *warmup* round trips; once all have, ``("start",)`` goes
    to the parent and each makes *round_trips* more, each reply compared byte for byte with
    its request (a different, short-then-wrong or overlong reply, a close or a reset fails
    loudly); ``("end",)`` goes once the last one is back.  The loop polls with epoll
    directly (poll where there is none) and keeps every step lean, so that the client
    stays ahead of the fastest servers it measures.
    """
    socks: list[socket.socket] = []
    epoll = getattr(select_module, "epoll", None)
    poller = epoll() if epoll is not None else select_module.poll()
    wait_ms = epoll is None  # poll() takes milliseconds, epoll seconds
    try:
        for _ in range(clients):
            sock = socket.create_connection((HOST, port), timeout=5.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            socks.append(sock)
        index = {sock.fileno(): i for i, sock in enumerate(socks)}
        for fd in index:
            poller.register(fd, select_module.POLLIN)
        recv = [sock.recv for sock in socks]
        send = [sock.send for sock in socks]
        done = [0] * clients  # round trips completed
        want = [b""] * clients  # the request in flight: its reply must be the same bytes
        got = [b""] * clients  # what came back of it so far, while it is incomplete

        def ask(i: int) -> None:
            data = want[i] = b"%04d%010d\r\n" % (i % 10000, done[i] % 10**10)
            n = send[i](data)  # an idle socket's buffer takes 16 bytes whole
            if n != FRAME:
                raise EchoMismatch(f"client {i}: a 16-byte send took only {n} bytes")

        def run_until(target: int, deadline: float) -> None:
            waiting = 0
            for i in range(clients):
                if done[i] < target:
                    ask(i)
                    waiting += 1
            poll, timeout = poller.poll, 50 if wait_ms else 0.05
            while waiting:
                if time.perf_counter() >= deadline:
                    raise TimeoutError(f"no progress: {sum(done)} round trips made")
                for fd, _ in poll(timeout):
                    i = index[fd]
                    try:
                        data = recv[i](256)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        raise EchoMismatch(
                            f"client {i}: {exc!r} after {done[i]} round trips"
                        ) from exc
                    if data != want[i]:  # wrong, or only part of the reply so far
                        if not data:
                            raise EchoMismatch(
                                f"client {i}: the server closed after {done[i]} round trips"
                            )
                        data = got[i] + data
                        if not want[i].startswith(data):
                            raise EchoMismatch(
                                f"client {i}: round trip {done[i]}: sent {want[i]!r}, "
                                f"got back {data!r}"
                            )
                        if len(data) < FRAME:
                            got[i] = data
                            continue
                        got[i] = b""
                    done[i] += 1
                    if done[i] < target:
                        ask(i)
                    else:
                        waiting -= 1

        limit = time.perf_counter() + 60.0 + (warmup + round_trips) * clients * 1e-3
        run_until(warmup, limit)
        conn.send(("start",))
        cpu0, t0 = time.process_time(), time.perf_counter()
        run_until(warmup + round_trips, limit)
        elapsed, client_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        conn.send(("end",))
        return {
            "count": clients * round_trips,
            "seconds": elapsed,
            "client_cpu": client_cpu,
            "drained": True,
            "tail": 0,
            "verified": sum(done),
        }
    finally:
        if epoll is not None:
            poller.close()
        for sock in socks:
            sock.close()


#: The ping-pong client in C (``--client c``): the same requests and checks as
#: `run_pingpong`, for a fifth less CPU per round trip (most of what is left is the kernel's
#: loopback work, which every client pays), so that a fast server stays what is measured.
C_CLIENT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pingpong_client.c")


def build_c_client() -> tuple[str | None, str]:
    """Compile `C_CLIENT_SOURCE` (once per source version, in the temporary directory);
    return the program's path and how, or None and why not."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler (cc, gcc, $CC) found"
    try:
        with open(C_CLIENT_SOURCE, "rb") as source:
            digest = hashlib.sha256(source.read()).hexdigest()[:16]
    except OSError as exc:
        return None, f"cannot read {C_CLIENT_SOURCE}: {exc.strerror}"
    program = os.path.join(tempfile.gettempdir(), f"sanschat-pingpong-{digest}")
    if not os.path.exists(program):
        partial_path = f"{program}.{os.getpid()}.tmp"
        built = subprocess.run(
            [compiler, "-O2", "-o", partial_path, C_CLIENT_SOURCE],
            capture_output=True, text=True, check=False,
        )
        if built.returncode != 0:
            return None, f"{compiler} failed: {built.stderr.strip()[:200]}"
        os.replace(partial_path, program)  # (atomic: a concurrent run finds it whole)
    return program, f"C ({os.path.basename(compiler)} -O2, benchmarks/pingpong_client.c)"


def run_pingpong_c(
    conn: Connection, port: int, clients: int, round_trips: int, warmup: int, program: str
) -> dict[str, Any]:
    """`run_pingpong` by the C client *program*: its ``start`` and ``end`` lines relayed to
    the parent as ``("start",)`` and ``("end",)``; its ``mismatch`` line raises EchoMismatch."""
    command = [program, HOST, str(port), str(clients), str(round_trips), str(warmup)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as child:
        assert child.stdout is not None and child.stderr is not None
        end: list[str] = []
        for line in child.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "start":
                conn.send(("start",))
            elif word == "end":
                conn.send(("end",))
                end = rest.split()
            elif word == "mismatch":
                raise EchoMismatch(rest)
            else:
                raise RuntimeError(f"the C client said {line.strip()!r}")
        status = child.wait()
        if status != 0 or len(end) != 3:
            raise RuntimeError(f"the C client failed ({status}): {child.stderr.read().strip()}")
    seconds, client_cpu, verified = float(end[0]), float(end[1]), int(end[2])
    if verified != clients * round_trips:
        raise EchoMismatch(f"{verified} round trips verified of {clients * round_trips}")
    return {
        "count": verified,
        "seconds": seconds,
        "client_cpu": client_cpu,
        "drained": True,
        "tail": 0,
        "verified": verified,
    }


def client_worker(conn: Connection) -> None:
    """The client process: run the jobs the parent sends until it sends None or goes away."""
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            mode, program = job.pop("mode"), job.pop("program", None)
            if mode != "pingpong":
                result = run_clients(conn, **job)
            elif program is not None:
                result = run_pingpong_c(conn, program=program, **job)
            else:
                result = run_pingpong(conn, **job)
            conn.send(("result", result))
        except Exception as exc:
            kind = "mismatch" if isinstance(exc, EchoMismatch) else "error"
            conn.send((kind, f"{exc}" if kind == "mismatch" else traceback.format_exc()))


# --------------------------------------------------------------------------- peers


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class ThreadServer:
    """A loop in a daemon thread: ``_serve`` sets ``_address`` and ``_started``."""

    name = "server"

    def __init__(self) -> None:
        self._address: tuple[str, int] = (HOST, 0)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name=self.name)
        self._thread.start()
        if not self._started.wait(10.0):
            raise RuntimeError(f"{self.name} did not start")
        if self._error is not None:
            raise self._error

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def _main(self) -> None:
        try:
            self._serve()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            raise

    def _serve(self) -> None:
        raise NotImplementedError

    def _request_stop(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._request_stop()
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"{self.name} did not stop in {timeout} s")


# ----- the plain equivalent of the select driver: a hand-written selectors loop


class _SplitConnection:
    __slots__ = ("carry", "pending", "reading", "sel", "sock", "writing")

    def __init__(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        self.sel, self.sock = sel, sock
        self.carry = b""
        self.pending = bytearray()
        self.reading, self.writing = True, False
        sel.register(sock, selectors.EVENT_READ, self)

    def readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        lines = (self.carry + data).split(b"\r\n")
        self.carry = lines.pop()
        if lines:  # a reply per frame, sent once per read
            self.pending += b"".join([line + b"\r\n" for line in lines])
            self.writable()

    def writable(self) -> None:
        try:
            n = self.sock.send(self.pending)
        except BlockingIOError:
            n = 0
        except OSError:
            self.close()
            return
        del self.pending[:n]
        reading, writing = len(self.pending) <= HIGH_WATER, bool(self.pending)
        if (reading, writing) != (self.reading, self.writing):
            self.reading, self.writing = reading, writing
            events = (selectors.EVENT_READ if reading else 0) | (
                selectors.EVENT_WRITE if writing else 0
            )
            self.sel.modify(self.sock, events, self)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.sel.unregister(self.sock)
            self.sock.close()


class SelectorsSplitServer(ThreadServer):
    """Reads, ``bytes.split``s the lines, sends the replies once per read."""

    name = "selectors-split"

    def _serve(self) -> None:
        self._stopping = False
        sel = selectors.DefaultSelector()
        listener = _listen()
        sel.register(listener, selectors.EVENT_READ, None)
        self._address = listener.getsockname()[:2]
        self._started.set()
        try:
            while not self._stopping:
                for key, mask in sel.select(0.05):
                    conn = key.data
                    if conn is None:
                        try:
                            sock, _ = listener.accept()
                        except BlockingIOError:
                            continue
                        sock.setblocking(False)
                        _SplitConnection(sel, sock)
                        continue
                    if mask & selectors.EVENT_READ:
                        conn.readable()
                    if mask & selectors.EVENT_WRITE and conn.sock.fileno() >= 0:
                        conn.writable()
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            sel.close()

    def _request_stop(self) -> None:
        self._stopping = True


# ----- stdlib asyncore + asynchat


if asynchat is not None:

    class AsynchatEcho(asynchat.async_chat):
        """The minimal async_chat echo: collect, then push the frame back."""

        def __init__(self, sock: socket.socket, map: dict[int, Any]) -> None:
            super().__init__(sock, map=map)
            self.set_terminator(b"\r\n")
            self.ibuffer: list[bytes] = []

        def collect_incoming_data(self, data: bytes) -> None:
            self.ibuffer.append(data)

        def found_terminator(self) -> None:
            self.push(b"".join(self.ibuffer) + b"\r\n")
            self.ibuffer = []

    class AsyncoreListener(asyncore.dispatcher):
        def __init__(self, map: dict[int, Any]) -> None:
            super().__init__(map=map)
            self.create_socket()
            self.set_reuse_addr()
            self.bind((HOST, 0))
            self.listen(128)

        def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
            AsynchatEcho(sock, self._map)


class AsynchatServer(ThreadServer):
    """asyncore.loop (poll) on a private map, an async_chat per connection."""

    name = "asyncore+asynchat"

    def _serve(self) -> None:
        self._stopping = False
        socket_map: dict[int, Any] = {}
        listener = AsyncoreListener(socket_map)
        self._address = listener.socket.getsockname()[:2]
        self._started.set()
        try:
            while not self._stopping:
                asyncore.loop(timeout=0.05, use_poll=True, map=socket_map, count=1)
        finally:
            asyncore.close_all(socket_map)

    def _request_stop(self) -> None:
        self._stopping = True


# ----- asyncio: streams readuntil, and the raw echo ceiling


class AsyncioServer(ThreadServer):
    """An event loop in a thread; every transport and handler task is tracked and closed."""

    def __init__(self) -> None:
        self._transports: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        super().__init__()

    async def _start(self) -> asyncio.Server:
        raise NotImplementedError

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            server = loop.run_until_complete(self._start())
            self._address = server.sockets[0].getsockname()[:2]
            self._started.set()
            loop.run_forever()
            loop.run_until_complete(asyncio.wait_for(self._shutdown(server), 5.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    async def _shutdown(self, server: asyncio.Server) -> None:
        server.close()
        for transport in list(self._transports):
            transport.abort()  # type: ignore[attr-defined]
        if self._tasks:  # aborted, the handlers end by themselves; cancel only stragglers
            _, stragglers = await asyncio.wait(self._tasks, timeout=2.0)
            for task in stragglers:
                task.cancel()
            await asyncio.gather(*stragglers, return_exceptions=True)
        await server.wait_closed()

    def _request_stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


class AsyncioStreamsServer(AsyncioServer):
    """``readuntil(b"\\r\\n")`` and ``write`` per frame, ``drain`` above 64 KiB buffered."""

    name = "asyncio-streams"

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, HOST, 0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._transports.add(writer.transport)
        buffered = writer.transport.get_write_buffer_size
        closing = writer.is_closing
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                writer.write(line)
                if buffered() > 64 * KiB or closing():  # drain() raises once the peer is gone
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            self._transports.discard(writer.transport)
            writer.transport.abort()


class RawEcho(asyncio.Protocol):
    def __init__(self, registry: set[asyncio.BaseTransport]) -> None:
        self.registry = registry

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.registry.add(transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self.transport)


class RawEchoServer(AsyncioServer):
    """An asyncio Protocol writing back every chunk as it comes: no framing at all."""

    name = "raw-echo"

    async def _start(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(partial(RawEcho, self._transports), HOST, 0)


# ----- trio: per-frame and batch-split


class TrioServer(ThreadServer):
    """``trio.serve_tcp`` in a thread; a reset peer ends its handler, not the server."""

    def __init__(self, handler: Callable[[Any], Any]) -> None:
        self._handler = handler
        super().__init__()

    async def _guarded(self, stream: Any) -> None:
        try:
            async with stream:
                await self._handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                serve = partial(trio.serve_tcp, self._guarded, 0, host=HOST)
                listeners = await nursery.start(serve)
                self._address = listeners[0].socket.getsockname()[:2]
                self._started.set()

    def _serve(self) -> None:
        trio.run(self._run)

    def _request_stop(self) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)


async def trio_per_frame(stream: Any) -> None:
    """receive_some, then find + send_all per frame."""
    buf = bytearray()
    while data := await stream.receive_some(READ_SIZE):
        buf += data
        start = 0
        while (end := buf.find(b"\r\n", start)) >= 0:
            end += 2
            await stream.send_all(buf[start:end])
            start = end
        del buf[:start]


async def trio_batch_split(stream: Any) -> None:
    """receive_some, ``bytes.split`` the lines, one send_all of the replies per read."""
    carry = b""
    while data := await stream.receive_some(READ_SIZE):
        lines = (carry + data).split(b"\r\n")
        carry = lines.pop()
        if lines:
            await stream.send_all(b"".join([line + b"\r\n" for line in lines]))


# --------------------------------------------------------------------------- contenders


class FrameEcho(sanschat.Chat):
    """The per-frame echo: `found_frame` pushes each frame back (as `sanschat.examples.Echo`
    did before the batch hook), so its rows measure the per-frame path whatever the example
    uses."""

    terminator = b"\r\n"
    max_frame_size = MAX_FRAME_SIZE

    def found_frame(self, frame: bytes) -> None:
        self.push(frame + b"\r\n")


#: The lead's batch hook (issue 9): ``Chat.found_frames(frames)`` gets all the frames one read
#: completes in one call.  Its contenders run only once the installed sanschat has it.
BATCH_HOOK = hasattr(sanschat.Chat, "found_frames")


class BatchEcho(sanschat.Chat):
    """The batch-hook echo: one push of every frame a read completed, terminators put back."""

    terminator = b"\r\n"
    max_frame_size = MAX_FRAME_SIZE

    def found_frames(self, frames: list[bytes]) -> None:
        self.push(b"\r\n".join(frames) + b"\r\n")


@dataclass
class Contender:
    key: str  # for --only
    name: str
    start: Callable[[], Server]
    runs: list[dict[str, Any]] = field(default_factory=list)
    failure: str = ""

    @property
    def best(self) -> dict[str, Any] | None:
        return max(self.runs, key=lambda r: r["rate"], default=None)

    @property
    def rate(self) -> float:
        best = self.best
        return 0.0 if best is None else float(best["rate"])


def sanschat_server(driver: str, chat: type[sanschat.Chat] = FrameEcho) -> Server:
    return sanschat_start_server(driver, chat, HOST, 0)


def sanschat_contenders(notes: list[str], batch: bool) -> list[Contender]:
    drivers = ["select", "asyncio"] + (["trio"] if trio is not None else [])
    found = [Contender(d, f"sanschat {d}", partial(sanschat_server, d)) for d in drivers]
    if batch and BATCH_HOOK:
        found += [
            Contender(
                f"{d}-hook", f"sanschat {d}, found_frames", partial(sanschat_server, d, BatchEcho)
            )
            for d in drivers
        ]
    elif batch:
        notes.append(
            f"batch hook skipped: this sanschat has no Chat.found_frames yet ({sanschat.__file__})."
        )
    return found


def all_contenders(mode: str) -> tuple[list[Contender], list[str]]:
    """The contenders of *mode* (``bulk`` or ``pingpong``) and notes on those skipped."""
    notes: list[str] = []
    found = sanschat_contenders(notes, batch=mode == "bulk")
    found.append(
        Contender("selectors-split", "selectors loop, split per read", SelectorsSplitServer)
    )
    found.append(Contender("asyncio-streams", "asyncio streams readuntil", AsyncioStreamsServer))
    if trio is not None:
        found.append(
            Contender("trio-per-frame", "trio per-frame", partial(TrioServer, trio_per_frame))
        )
        if mode == "bulk":
            found.append(
                Contender("trio-batch", "trio batch-split", partial(TrioServer, trio_batch_split))
            )
    else:
        notes.append("trio is not installed: sanschat trio and the trio peers are skipped.")
    if asynchat is not None:
        found.append(Contender("asynchat", "asyncore+asynchat", AsynchatServer))
    else:
        notes.append(
            f"asyncore+asynchat skipped: removed from the stdlib in Python 3.12 "
            f"(this is {platform.python_version()}); run on 3.11 for that peer."
        )
    found.append(Contender("raw", "raw echo (asyncio Protocol)", RawEchoServer))
    return found, notes


#: Each driver's own loop's plain equivalent: the code a user of that loop writes to get one
#: handler call per frame, as the driver gives.  The batch-split loops (selectors-split,
#: trio-batch) make no per-frame call at all: they are ceilings, like ``bytes.split`` in
#: bench_core.py, and their ratios are printed beside, not as targets.
PLAIN = {"select": "asynchat", "asyncio": "asyncio-streams", "trio": "trio-per-frame"}

MODES = ("bulk", "pingpong")


# --------------------------------------------------------------------------- harness


@dataclass(frozen=True)
class Config:
    clients: int
    repeat: int
    warmup: float
    duration: float
    window: int
    drain: float
    frames: int
    round_trips: int  # ping-pong: timed round trips per connection
    pp_warmup: int  # ping-pong: untimed round trips per connection first
    pp_repeat: int = 9  # ping-pong: rounds per contender (each is well under a second)
    pp_program: str | None = None  # ping-pong: the C client's program (None: the Python one)
    pp_client: str = "Python (run_pingpong)"  # ping-pong: which client, for the header


FULL = Config(
    50,
    repeat=3,
    warmup=0.3,
    duration=2.0,
    window=256 * KiB,
    drain=1.0,
    frames=0,
    round_trips=1000,
    pp_warmup=50,
    pp_repeat=9,
)
QUICK = Config(
    50,
    repeat=2,
    warmup=0.2,
    duration=0.5,
    window=256 * KiB,
    drain=0.3,
    frames=0,
    round_trips=200,
    pp_warmup=20,
    pp_repeat=3,
)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ClientProcess:
    """The load generator's process: spawned once, one job at a time, always reaped."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=client_worker, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def receive(self, timeout: float) -> tuple[Any, ...]:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"the client process did not answer in {timeout:.0f} s")
        message: tuple[Any, ...] = self.conn.recv()
        return message

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5.0)
        self.conn.close()


def job_for(mode: str, port: int, config: Config) -> tuple[dict[str, Any], float]:
    """The client's job for one round of *mode*, and how long to wait for its answer."""
    if mode == "pingpong":
        job: dict[str, Any] = {"round_trips": config.round_trips, "warmup": config.pp_warmup}
        limit = 80.0 + (config.round_trips + config.pp_warmup) * config.clients * 1e-3
    else:
        job = {
            "warmup": config.warmup,
            "duration": config.duration,
            "window": config.window,
            "drain": config.drain,
            "frames": config.frames,
        }
        limit = 20.0 + config.warmup + config.duration + config.drain
        if config.frames:
            limit += 120.0
    job.update(mode=mode, port=port, clients=config.clients)
    if mode == "pingpong" and config.pp_program is not None:
        job["program"] = config.pp_program
    return job, limit


def run_once(
    client: ClientProcess, contender: Contender, config: Config, mode: str
) -> dict[str, Any]:
    """One round: start the server, drive it, stop it; the result, or EchoMismatch."""
    before = set(threading.enumerate())
    server = contender.start()
    try:
        job, limit = job_for(mode, server.address[1], config)
        client.conn.send(job)
        cpu0 = cpu1 = t0 = t1 = 0.0
        while True:
            message = client.receive(limit)
            kind = message[0]
            if kind == "start":
                cpu0, t0 = time.process_time(), time.perf_counter()
            elif kind == "end":
                cpu1, t1 = time.process_time(), time.perf_counter()
            elif kind == "result":
                result: dict[str, Any] = message[1]
                break
            elif kind == "mismatch":
                raise EchoMismatch(message[1])
            else:
                raise RuntimeError(f"the client process failed:\n{message[1]}")
    finally:
        server.stop(5.0)
    deadline = time.monotonic() + 5.0
    while (leaked := [t for t in threading.enumerate() if t not in before and t.is_alive()]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.01)
    if leaked:
        raise RuntimeError(f"{contender.name} left threads running: {leaked}")
    if result["count"] <= 0:
        raise EchoMismatch("nothing was echoed in the timed window")
    result["rate"] = result["count"] / result["seconds"]
    result["server_cpu"] = (cpu1 - cpu0) / (t1 - t0) if t1 > t0 else 0.0
    result["client_cpu"] = result["client_cpu"] / result["seconds"]
    return result


def measure(contenders: list[Contender], config: Config, mode: str) -> None:
    unit = "round trips/s" if mode == "pingpong" else "frames/s"
    scale = 1e3 if mode == "pingpong" else 1e6
    client = ClientProcess()
    try:
        for round_ in range(config.pp_repeat if mode == "pingpong" else config.repeat):
            live = [c for c in contenders if not c.failure]
            shift = round_ % max(1, len(live))
            for contender in live[shift:] + live[:shift]:
                try:
                    result = run_once(client, contender, config, mode)
                except EchoMismatch as exc:
                    contender.failure = f"WRONG ECHO: {exc}"
                except Exception as exc:
                    contender.failure = f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, TimeoutError) and "client process" in str(exc):
                        client.process.kill()  # stuck mid-job: start a fresh one
                        client.close()
                        client = ClientProcess()
                if contender.failure:
                    progress(f"  FAILED {contender.name}: {contender.failure}")
                    continue
                contender.runs.append(result)
                tail = "" if result["drained"] else f", {result['tail'] // KiB} KiB tail undrained"
                progress(
                    f"  {mode} round {round_ + 1}: {contender.name:32} "
                    f"{result['rate'] / scale:8.3f} {'k' if scale == 1e3 else 'M'} {unit}, "
                    f"server CPU {result['server_cpu']:4.0%}, "
                    f"client CPU {result['client_cpu']:4.0%}{tail}"
                )
    finally:
        client.close()


# --------------------------------------------------------------------------- report


def header(markdown: bool, config: Config, quick: bool, modes: Sequence[str]) -> list[str]:
    uname = platform.uname()
    versions = [f"sanschat {sanschat.__version__}"]
    if trio is not None:
        versions.append(f"trio {trio.__version__}")
    bulk = (
        f"{config.frames} frames per client"
        if config.frames
        else f"best of {config.repeat} interleaved rounds of {config.duration:g} s "
        f"(after {config.warmup:g} s warm-up)"
    )
    facts = [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        f"processor: {platform.processor() or '(not reported)'}; uname: {uname.system} "
        f"{uname.release} {uname.machine}; cpu count: {os.cpu_count()}",
        f"versions: {', '.join(versions)}",
        f"sanschat build: COMPILED = {getattr(sanschat, 'COMPILED', False)} "
        f"({os.path.dirname(sanschat.__file__ or '')})",
        f"mode: {'quick' if quick else 'full'}, {' + '.join(modes)}",
    ]
    if "bulk" in modes:
        facts.append(
            f"bulk load: {config.clients} clients on 127.0.0.1 in one separate process, "
            f"{FRAME}-byte frames in {BURST // KiB} KiB writes, "
            f"<= {config.window // KiB} KiB in flight per client; {bulk}"
        )
    if "pingpong" in modes:
        facts.append(
            f"ping-pong load: {config.clients} clients on 127.0.0.1 in one separate process, "
            f"each with one {FRAME}-byte request in flight, {config.round_trips} timed round "
            f"trips each (after {config.pp_warmup}); best of {config.pp_repeat} interleaved rounds"
        )
        facts.append(f"ping-pong client: {config.pp_client}")
    facts.append("servers in a thread of the benchmark process")
    if markdown:
        return ["## sanschat echo benchmark", "", *(f"- {fact}" for fact in facts), ""]
    return ["sanschat echo benchmark", *(f"  {fact}" for fact in facts), ""]


def ratio_text(a: Contender | None, b: Contender | None) -> str:
    if a is None or b is None or not a.runs or not b.runs:
        return "n/a"
    return f"{a.rate / b.rate:.2f}x"


#: DESIGN's end-to-end targets for the bulk echo (16-byte frames in 64 KiB writes).
PER_FRAME_TARGET = 3.5e6
BATCH_TARGET = 8e6


def bulk_targets(by_key: dict[str, Contender]) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for driver in DRIVER_KEYS:
        for key, at_least, what in (
            (driver, PER_FRAME_TARGET, "per-frame found_frame"),
            (f"{driver}-hook", BATCH_TARGET, "batch hook found_frames"),
        ):
            me = by_key.get(key)
            if me is not None and me.runs:
                out.append(
                    (
                        f"sanschat {driver}, {what} >= {at_least / 1e6:g} M frames/s: "
                        f"{me.rate / 1e6:.2f} M",
                        me.rate >= at_least,
                    )
                )
    return out


def pingpong_targets(by_key: dict[str, Contender]) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for driver in DRIVER_KEYS:
        me = by_key.get(driver)
        if me is None or not me.runs:
            continue
        for peer_key in dict.fromkeys(("asynchat", PLAIN[driver])):
            peer = by_key.get(peer_key)
            if peer is None or not peer.runs:
                continue
            value = me.rate / peer.rate
            why = "own loop's plain per-frame equivalent" if peer_key == PLAIN[driver] else ""
            why = "asynchat, also the " + why if peer_key == "asynchat" and why else why
            out.append(
                (
                    f"{me.name} >= {peer.name}{f' ({why})' if why else ''}: {value:.2f}x",
                    value >= 1.0,
                )
            )
    return out


DRIVER_KEYS = ("select", "asyncio", "trio")


def report(
    mode: str, contenders: list[Contender], notes: list[str], markdown: bool
) -> tuple[list[str], list[tuple[str, bool]]]:
    """The table and lines of one mode, and its targets (text, met)."""
    pingpong = mode == "pingpong"
    scale, unit = (1e3, "k round trips/s") if pingpong else (1e6, "M frames/s")
    # Server CPU time per item, lowest of the rounds: on a shared machine, where a server may
    # get only part of a core, the steadier measure of what one round trip or frame costs it.
    cpu_scale, cpu_unit = (1e6, "server CPU us/rt") if pingpong else (1e9, "server CPU ns/frame")
    by_key = {c.key: c for c in contenders}
    asyn = by_key.get("asynchat")
    headers = [
        "server",
        unit,
        f"rounds ({unit.split()[0]})",
        "x asynchat",
        "x own plain equiv.",
        "server CPU",
        "client CPU",
        cpu_unit,
    ]
    rows = []
    for c in contenders:
        best = c.best
        if best is None:
            rows.append([c.name, "FAILED", c.failure[:60], "", "", "", "", ""])
            continue
        plain = by_key.get(PLAIN.get(c.key.removesuffix("-hook"), ""))
        rows.append(
            [
                c.name + ("" if not c.failure else " (FAILED later)"),
                f"{c.rate / scale:.3f}" if not pingpong else f"{c.rate / scale:.1f}",
                " ".join(
                    f"{r['rate'] / scale:.3f}" if not pingpong else f"{r['rate'] / scale:.1f}"
                    for r in c.runs
                ),
                ratio_text(c, asyn),
                ratio_text(c, plain) if plain is not None else "",
                f"{best['server_cpu']:.0%}",
                f"{best['client_cpu']:.0%}",
                f"{min(r['server_cpu'] / r['rate'] for r in c.runs) * cpu_scale:.2f}",
            ]
        )
    title = (
        "ping-pong: one 16-byte request in flight per connection, round trips/s, every reply "
        "checked"
        if pingpong
        else "bulk echo: 16-byte frames in 64 KiB writes, frames/s verified byte-identical"
    )
    out = [f"### {title}" if markdown else f"== {title}", ""]
    out += table(headers, rows, markdown)
    out.append("")
    ratios = [
        ("sanschat select", "selectors loop, split per read", "select", "selectors-split"),
        ("sanschat asyncio", "asyncio streams readuntil", "asyncio", "asyncio-streams"),
        ("sanschat trio", "trio per-frame", "trio", "trio-per-frame"),
        ("sanschat trio", "trio batch-split", "trio", "trio-batch"),
    ]
    ratios += [
        (f"sanschat {d}", "asyncore+asynchat", d, "asynchat") for d in ("select", "asyncio", "trio")
    ]
    ratios += [
        (f"sanschat {d}, found_frames", f"sanschat {d}", f"{d}-hook", d)
        for d in ("select", "asyncio", "trio")
    ]
    lines = [
        f"{a} vs {b}: {ratio_text(by_key.get(ka), by_key.get(kb))}"
        for a, b, ka, kb in ratios
        if ka in by_key and kb in by_key
    ]
    found = pingpong_targets(by_key) if pingpong else bulk_targets(by_key)
    lines += [f"target: {text}, {'MET' if ok else 'NOT MET'}" for text, ok in found]
    lines += notes
    raw = by_key.get("raw")
    raw_best = None if raw is None else raw.best
    if raw is not None and raw_best is not None:
        lines.append(
            f"raw echo is the harness's ceiling ({raw.rate / scale:.1f} {unit}, client CPU "
            f"{raw_best['client_cpu']:.0%}): a server far below it is what limits its row, "
            "not the load generator."
        )
    lines += [f"FAILED {c.name}: {c.failure}" for c in contenders if c.failure]
    out += [f"- {text}" if markdown else f"  {text}" for text in lines]
    out.append("")
    return out, found


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short rounds, under a minute")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--mode",
        choices=(*MODES, "both"),
        default="both",
        help="bulk echo, ping-pong (request/response), or both (default)",
    )
    parser.add_argument("--clients", type=int, help="client connections (default 50)")
    parser.add_argument("--only", help="comma-separated contenders (see --list)")
    parser.add_argument("--list", action="store_true", help="list the contenders and exit")
    parser.add_argument(
        "--repeat",
        type=int,
        help="rounds per contender, best kept (default: 3 bulk, 9 ping-pong; --quick: 2, 3)",
    )
    parser.add_argument("--duration", type=float, help="bulk: seconds per timed round")
    parser.add_argument("--window", type=int, help="bulk: KiB in flight per client (default 256)")
    parser.add_argument("--frames", type=int, help="bulk: frames per client instead of a duration")
    parser.add_argument(
        "--round-trips",
        type=int,
        help="ping-pong: timed round trips per connection (default "
        f"{FULL.round_trips}, {QUICK.round_trips} with --quick)",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "c", "python"),
        default="auto",
        help="ping-pong: the load's client, in C (benchmarks/pingpong_client.c, compiled "
        "on first use) or Python; auto (default): C where a compiler is found",
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    changes = {
        "clients": args.clients,
        "repeat": args.repeat,
        "pp_repeat": args.repeat,
        "duration": args.duration,
        "window": args.window * KiB if args.window else None,
        "frames": args.frames,
        "round_trips": args.round_trips,
    }
    config = Config(**{**config.__dict__, **{k: v for k, v in changes.items() if v}})
    if config.window < BURST:
        parser.error(f"--window must be at least {BURST // KiB} KiB")
    modes = MODES if args.mode == "both" else (args.mode,)
    if "pingpong" in modes and args.client != "python" and not args.list:
        program, how = build_c_client()
        if program is not None:
            config = Config(**{**config.__dict__, "pp_program": program, "pp_client": how})
        elif args.client == "c":
            parser.error(f"--client c: {how}")
        else:
            config = Config(**{**config.__dict__, "pp_client": f"Python ({how})"})

    plan = {mode: all_contenders(mode) for mode in modes}
    if args.list:
        for mode, (contenders, _) in plan.items():
            print(f"{mode}:")
            print("\n".join(f"  {c.key:16} {c.name}" for c in contenders))
        return 0
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = set(wanted) - {c.key for contenders, _ in plan.values() for c in contenders}
        if unknown:
            parser.error(f"unknown contender(s) {', '.join(sorted(unknown))}: see --list")
        plan = {m: ([c for c in cs if c.key in wanted], notes) for m, (cs, notes) in plan.items()}

    started = time.perf_counter()
    out = header(args.markdown, config, args.quick, modes)
    found: list[tuple[str, bool]] = []
    failed = False
    for mode, (contenders, notes) in plan.items():
        if not contenders:
            continue
        progress(f"{mode}: measuring {len(contenders)} servers (progress on stderr) ...")
        measure(contenders, config, mode)
        lines, met = report(mode, contenders, notes, args.markdown)
        out += lines
        found += met
        failed |= any(c.failure for c in contenders)
    summary = f"targets met: {sum(ok for _, ok in found)} of {len(found)}"
    out += [f"**{summary}**" if args.markdown else summary]
    out += ["", f"(total run time {time.perf_counter() - started:.0f} s)"]
    print("\n".join(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
