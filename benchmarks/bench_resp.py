"""The RESP server (`sanschat.protocols.resp`) under Redis-client load, next to its peers.

Theory of operation: every contender is a Redis server on loopback.  The sanschat
contenders are `RESPServer` on each driver (started in a background thread of this
process), plus `RESPServer` with ``line_bulk_limit = 0`` on select, which reads every value
by an int terminator (two terminator switches per argument: what that costs is the point
of that row).  The peer is the same protocol written by hand on asyncio streams
(``readline`` for the headers, ``readexactly`` for each value), which runs the commands with
`RESPServer.execute`, so that only framing and I/O differ; and a real ``redis-server``, in
its own process, where one is installed (``apt-get install redis-server``): C, its own
core, so its row is a yardstick, not a like-for-like ratio.

The load comes from one separate client process (reused for every run) with a
non-blocking selectors loop over ``--connections`` sockets.  Commands are encoded exactly
as redis-py encodes them (``redis.connection.Connection.pack_command``), alternating
``SET key:C:I <16 bytes>`` and ``GET key:C:I``; every reply is compared byte for byte with
the one expected.  Two loads (``--mode``, both by default):

* **pipelined**: each connection sends ``--batch`` commands in one write, reads all their
  replies, and starts again (redis-py's ``pipeline(transaction=False)``);
* **one per read**: each connection has one command in flight (request/response).

Rate = replies received per second over all connections (counted reply by reply, so a
contender slower than one pipeline per window still gets its share).  Last, a table of the
framing alone (no sockets, `sanschat.testing`): 10,000 pipelined SETs fed in 64 KiB reads,
by lines and by count.  Each contender runs
``--rounds`` rounds, interleaved (the order rotates every round), and the best round is
kept: on a shared machine the fastest run is the least disturbed.  Ratios are taken within
one run only.  Needs redis-py (for the encoder): ``pip install redis``.  Run with ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import concurrent.futures
import datetime
import itertools
import os
import platform
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

from _report import table
from redis.connection import Connection as RedisConnection

import sanschat
from sanschat.drivers import start_server
from sanschat.protocols.resp import RESPServer
from sanschat.testing import ChatHarness

VALUE = b"0123456789abcdef"


class Server(Protocol):
    address: tuple[str, int]

    def stop(self, timeout: float = 5.0) -> None: ...


# ---------------------------------------------------------------- the load (client process)


def workload(client: int, batch: int) -> tuple[list[bytes], list[bytes]]:
    """The commands of one connection, encoded as redis-py does, and the replies expected."""
    packer = RedisConnection(protocol=2)
    commands, replies = [], []
    for i in range(batch // 2):
        key = f"key:{client}:{i}"
        commands.append(b"".join(packer.pack_command("SET", key, VALUE)))
        replies.append(b"+OK\r\n")
        commands.append(b"".join(packer.pack_command("GET", key)))
        replies.append(b"$%d\r\n%b\r\n" % (len(VALUE), VALUE))
    return commands, replies


class _Conn:
    """One client connection: the units it sends in turn, and how far their replies came."""

    def __init__(self, sock: socket.socket, units: list[tuple[bytes, list[bytes]]]) -> None:
        self.sock, self.next = sock, 0
        self.units = [(request, b"".join(replies)) for request, replies in units]
        self._ends = [list(itertools.accumulate(map(len, replies))) for _, replies in units]
        self.out = memoryview(b"")
        self.expected, self.ends, self.pos, self.done = b"", [0], 0, 0

    def start_unit(self) -> None:
        request, replies = self.units[self.next]
        self.ends = self._ends[self.next]
        self.next = (self.next + 1) % len(self.units)
        self.out, self.expected, self.pos, self.done = memoryview(request), replies, 0, 0

    def received(self, chunk: bytes) -> int:
        """Check *chunk* against the replies expected; return how many replies it completed."""
        if not self.expected.startswith(chunk, self.pos):
            raise AssertionError(f"wrong reply at byte {self.pos}: {chunk[:80]!r}")
        self.pos += len(chunk)
        done = bisect.bisect_right(self.ends, self.pos)
        completed, self.done = done - self.done, done
        return completed


def run_load(
    port: int, mode: str, connections: int, batch: int, seconds: float
) -> tuple[int, float]:
    """Run the load on 127.0.0.1:*port*; return (replies received, seconds timed)."""
    selector = selectors.DefaultSelector()
    conns = []
    for client in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        commands, replies = workload(client, batch)
        if mode == "pipelined":
            units = [(b"".join(commands), replies)]
        else:
            units = [(c, [r]) for c, r in zip(commands, replies, strict=True)]
        conn = _Conn(sock, units)
        conns.append(conn)
        conn.start_unit()
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
    answered, started, warm = 0, time.perf_counter(), 0.3
    timed_from = started + warm  # connections set up, buffers grown: count from here
    deadline = timed_from + seconds
    while (now := time.perf_counter()) < deadline:
        if now < timed_from:
            answered = 0
        for key, events in selector.select(0.05):
            conn = key.data
            if events & selectors.EVENT_WRITE and conn.out:
                conn.out = conn.out[conn.sock.send(conn.out) :]
                if not conn.out:
                    selector.modify(conn.sock, selectors.EVENT_READ, conn)
            if events & selectors.EVENT_READ:
                chunk = conn.sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("the server closed a connection")
                answered += conn.received(chunk)
                if conn.pos == len(conn.expected):
                    conn.start_unit()
                    conn.out = conn.out[conn.sock.send(conn.out) :]
                    if conn.out:
                        selector.modify(
                            conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn
                        )
    for conn in conns:
        conn.sock.close()
    return answered, time.perf_counter() - timed_from


# ---------------------------------------------------------------- the servers


class ByCount(RESPServer):
    """Every value read by an int terminator (two terminator switches per argument)."""

    line_bulk_limit: ClassVar[int] = 0


class StreamsServer:
    """The same protocol by hand on asyncio streams, in a background thread."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: set[tuple[asyncio.Task[None], asyncio.StreamWriter]] = set()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        self._ready.wait(10)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address = server.sockets[0].getsockname()[:2]
        self._ready.set()
        async with server:
            await self._stop.wait()
        for _, writer in self._tasks:  # connections still open: end them before the loop does
            writer.transport.abort()
        await asyncio.gather(*(task for task, _ in self._tasks), return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        commands = RESPServer(self.data)  # only for execute(): the framing is below
        task = asyncio.current_task()
        assert task is not None
        entry = (task, writer)
        self._tasks.add(entry)  # type: ignore[arg-type]
        try:
            while line := await reader.readline():
                if line[:1] == b"*":
                    args = []
                    for _ in range(int(line[1:-2])):
                        size = int((await reader.readline())[1:-2])
                        args.append((await reader.readexactly(size + 2))[:-2])
                else:
                    args = line.split()
                if args:
                    writer.write(commands.execute(args))
                if writer.transport.get_write_buffer_size() > 65536:
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(entry)  # type: ignore[arg-type]
            writer.close()

    def stop(self, timeout: float = 5.0) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)


class RedisServer:
    """A real redis-server process (no persistence) on a free port."""

    def __init__(self, binary: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.address = ("127.0.0.1", port)
        self._process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(self.address, timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        self._process.terminate()
        self._process.wait(timeout)


def contenders() -> list[tuple[str, Callable[[], Server]]]:
    """(name, start) for every server measured; redis-server only if it is installed."""
    found: list[tuple[str, Callable[[], Server]]] = [
        (f"sanschat {driver}", lambda d=driver: start_server(d, RESPServer.factory()))
        for driver in sanschat.drivers.DRIVERS
    ]
    found.append(
        ("sanschat select, every value by count", lambda: start_server("select", ByCount.factory()))
    )
    found.append(("asyncio streams, by hand", StreamsServer))
    binary = shutil.which("redis-server")
    if binary:
        found.append(("redis-server (C, own process)", lambda: RedisServer(binary)))
    return found


# ---------------------------------------------------------------- measuring and reporting


def cut_cost(commands: int, rounds: int) -> list[tuple[str, float]]:
    """Seconds (best of *rounds*) to feed *commands* pipelined SETs, in 64 KiB reads, to a
    chat under `sanschat.testing` (no sockets): the framing alone, by lines and by count."""
    packer = RedisConnection(protocol=2)
    stream = b"".join(
        b"".join(packer.pack_command("SET", f"key:{i}", VALUE)) for i in range(commands)
    )
    reads = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    results = []
    for name, cls in (("values as lines (default)", RESPServer), ("every value by count", ByCount)):
        best = float("inf")
        for _ in range(rounds):
            harness = ChatHarness(cls())
            started = time.perf_counter()
            reply = harness.feed(*reads)
            best = min(best, time.perf_counter() - started)
            assert reply == b"+OK\r\n" * commands, f"{name}: wrong replies"
        results.append((name, best))
    return results


def measure(
    mode: str, args: argparse.Namespace, pool: concurrent.futures.Executor
) -> dict[str, float]:
    """Best rate (commands/s) of each contender over interleaved rounds."""
    entries = contenders()
    best: dict[str, float] = {name: 0.0 for name, _ in entries}
    connections = args.connections if mode == "pipelined" else args.single_connections
    for round_ in range(args.rounds):
        shift = round_ % len(entries)
        for name, start in entries[shift:] + entries[:shift]:
            server = start()
            try:
                job = pool.submit(
                    run_load, server.address[1], mode, connections, args.batch, args.seconds
                )
                answered, elapsed = job.result(timeout=args.seconds + 120)
            finally:
                server.stop(timeout=300)  # (by count, one read can take seconds to cut)
            rate = answered / elapsed
            best[name] = max(best[name], rate)
            print(
                f"  {mode:10} round {round_ + 1}: {name:38} {rate / 1000:9.1f} k/s",
                file=sys.stderr,
                flush=True,
            )
    return best


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> list[str]:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"bench_resp.py, {stamp}: CPython {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs (load average "
        f"{os.getloadavg()[0]:.1f} at the end), sanschat "
        f"{'compiled' if sanschat.COMPILED else 'pure Python'}; pipelined: "
        f"{args.connections} connections x {args.batch} commands per write; one per read: "
        f"{args.single_connections} connections; best of {args.rounds} rounds of "
        f"{args.seconds:g} s",
        "",
    ]
    modes = list(results)
    names = list(results[modes[0]])
    headers = ["server"]
    for mode in modes:
        headers += [f"{mode}: k commands/s", "x asyncio streams", "x redis-server"]
    rows = []
    for name in names:
        row = [name]
        for mode in modes:
            rates = results[mode]
            streams = rates.get("asyncio streams, by hand")
            redis_rate = rates.get("redis-server (C, own process)")
            row.append(f"{rates[name] / 1000:.1f}")
            row.append(f"{rates[name] / streams:.2f}x" if streams else "-")
            row.append(f"{rates[name] / redis_rate:.2f}x" if redis_rate else "-")
        rows.append(row)
    return lines + table(headers, rows, args.markdown)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("pipelined", "single", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best kept)")
    parser.add_argument("--connections", type=int, default=8, help="pipelined connections")
    parser.add_argument("--single-connections", type=int, default=50, help="one-per-read ones")
    parser.add_argument("--batch", type=int, default=1000, help="commands per pipelined write")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--quick", action="store_true", help="1 round of 0.5 s (a smoke test)")
    parser.add_argument("--no-cut-cost", action="store_true", help="skip the framing-alone table")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 0.5
    modes = ["pipelined", "single"] if args.mode == "both" else [args.mode]
    results = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        for mode in modes:
            results["one per read" if mode == "single" else mode] = measure(mode, args, pool)
    print("\n".join(report(results, args)))
    if not args.no_cut_cost:
        commands = 2000 if args.quick else 10_000
        rows = [
            [name, f"{seconds:.3f}"] for name, seconds in cut_cost(commands, 1 if args.quick else 3)
        ]
        print(
            f"\nFraming alone: {commands} pipelined SETs fed in 64 KiB reads (sanschat.testing):\n"
        )
        print("\n".join(table(["RESPServer", "seconds"], rows, args.markdown)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
