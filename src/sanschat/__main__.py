"""``python -m sanschat``: serve the example protocols on any driver, or run the demo.

Theory of operation: ``serve`` starts one example server (`sanschat.examples`) on the chosen
driver with `sanschat.drivers.start_server`, prints exactly one line ``listening on
HOST:PORT`` once it accepts connections, and waits for SIGINT or SIGTERM, then stops it and
exits 0.  ``--version`` prints the version and the build loaded (`sanschat.COMPILED`).
``demo`` starts every server on every driver on loopback in turn, talks to each
with a plain blocking socket, prints what flowed, and exits 0 if every answer was right.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from . import COMPILED, __version__
from .drivers import DRIVERS, BackgroundServer, Limits, start_server
from .examples import MAX_FRAME_SIZE, ChatMember, ChatRoom, factory

SERVERS = ("echo", "chat", "http")
DEMO_TIMEOUT = 5.0  # seconds a demo exchange may take before it counts as failed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sanschat",
        description="Serve sanschat's example protocols, or run the demo.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=version_line(),
        help="print the version and which build (pure Python or compiled) is loaded, and exit",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve one example protocol until interrupted")
    serve.add_argument("server", choices=SERVERS)
    serve.add_argument("--driver", choices=DRIVERS, default="select")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    serve.add_argument(
        "--max-frame",
        type=int,
        default=MAX_FRAME_SIZE,
        help=f"largest frame accepted, in bytes (default {MAX_FRAME_SIZE})",
    )
    _limit_options(serve)
    commands.add_parser("demo", help="run every server on every driver on loopback")
    return parser


def _limit_options(serve: argparse.ArgumentParser) -> None:
    """The server-wide limits (`sanschat.drivers.Limits`) as options; 0 turns one off."""
    default = Limits()
    group = serve.add_argument_group("limits", "server-wide limits (sanschat.drivers.Limits)")
    for name, kind, what in (
        ("max_connections", int, "connections open at once; beyond it, stop accepting"),
        ("high_water", int, "bytes of queued output above which a connection is not read"),
        ("idle_timeout", float, "seconds without traffic before a connection is closed"),
        ("frame_timeout", float, "seconds a frame may take once begun (slowloris)"),
        ("send_timeout", float, "seconds queued output may wait with the peer not reading"),
        ("shutdown_grace", float, "seconds to flush and close on SIGTERM, then abort"),
    ):
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(default, name),
                           metavar="N", help=f"{what} (default %(default)s; 0: off)"
                           if name not in ("high_water", "shutdown_grace")
                           else f"{what} (default %(default)s)")


def _limits(args: argparse.Namespace) -> Limits:
    """The `Limits` the options ask for (0 turns a limit or timeout off); ValueError if bad."""
    off = {name: getattr(args, name) or None
           for name in ("max_connections", "idle_timeout", "frame_timeout", "send_timeout")}
    return Limits(high_water=args.high_water, shutdown_grace=args.shutdown_grace, **off)


def version_line() -> str:
    """Return what ``--version`` prints: ``sanschat VERSION (pure Python|compiled, mypyc)``."""
    build = "compiled, mypyc" if COMPILED else "pure Python"
    return f"sanschat {__version__} ({build})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        try:
            limits = _limits(args)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return _serve(args.server, args.driver, args.host, args.port, args.max_frame, limits)
    return _demo()


def _serve(name: str, driver: str, host: str, port: int, max_frame: int,
           limits: Limits | None = None) -> int:
    if max_frame < 1:
        print("error: --max-frame must be at least 1", file=sys.stderr)
        return 2
    limits = limits or Limits()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        server = start_server(driver, factory(name, max_frame), host, port, limits)
    except (OSError, ImportError) as error:
        print(f"error: cannot serve {name} on {driver}: {error}", file=sys.stderr)
        return 1
    if not announce_and_wait(server, stop, limits.shutdown_grace):
        # Connections outlived the grace and the abort: exit now, leaving the kernel to
        # close them (interpreter shutdown next to the loop's thread could take seconds).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


#: Seconds a stop may take after the grace period (aborting what is left) before the
#: process exits anyway: the kernel then closes the sockets that are still open.
ABORT_ALLOWANCE = 1.0


def announce_and_wait(server: BackgroundServer, stop: threading.Event,
                      grace: float = 0.0) -> bool:
    """Print ``listening on HOST:PORT``, wait until *stop* is set, then stop *server*:
    *grace* seconds for its connections to flush and close, then they are aborted; if
    that is not over `ABORT_ALLOWANCE` seconds later, return False anyway (one line on
    stderr).  True if the server stopped in time."""
    host, port = server.address[:2]
    print(f"listening on {host}:{port}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        try:
            server.stop(grace + ABORT_ALLOWANCE, grace=grace)
        except TimeoutError as error:
            print(f"sanschat: exiting with connections still open: {error}", file=sys.stderr)
            return False
    return True


# ---------------------------------------------------------------- demo


def _exchange(server: BackgroundServer, send: bytes, until: Callable[[bytes], bool]) -> bytes:
    """Send *send* on a new connection; read until *until* says the reply is complete."""
    with socket.create_connection(server.address, timeout=DEMO_TIMEOUT) as sock:
        sock.sendall(send)
        reply = b""
        while not until(reply):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def _demo_echo(server: BackgroundServer) -> tuple[str, bool]:
    request = b"hello\r\nsans-I/O\r\n"
    reply = _exchange(server, request, lambda r: len(r) >= len(request))
    return f"sent {request!r}, got {reply!r}", reply == request


def _demo_http(server: BackgroundServer) -> tuple[str, bool]:
    body = b"ping=pong"
    request = b"POST /echo HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    reply = _exchange(server, request, lambda r: False)  # the server closes when done
    head, _, echoed = reply.partition(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.0 200 OK\r\n") and echoed == body
    status = head.split(b"\r\n", 1)[0]
    return f"POST {body!r}, got {status!r} with body {echoed!r}, then close", ok


def _demo_chat(server: BackgroundServer, room: ChatRoom) -> tuple[str, bool]:
    with (
        socket.create_connection(server.address, timeout=DEMO_TIMEOUT) as alice,
        socket.create_connection(server.address, timeout=DEMO_TIMEOUT) as bob,
    ):
        deadline = time.monotonic() + DEMO_TIMEOUT
        while len(room.members) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)  # both must have joined before anyone speaks
        bob.sendall(b"bob here\n")
        heard = _read_line(alice)
        alice.sendall(b"hi bob\n")
        got = _read_line(bob)
    ok = (heard, got) == (b"bob here\r\n", b"hi bob\r\n")
    return f"alice heard {heard!r}, bob heard {got!r}", ok


def _read_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        line += chunk
    return line


DEMOS: dict[str, Callable[[BackgroundServer], tuple[str, bool]]] = {
    "echo": _demo_echo,
    "http": _demo_http,
}


def _demo() -> int:
    failures = 0
    started = time.monotonic()
    for driver in DRIVERS:
        if driver == "trio" and importlib.util.find_spec("trio") is None:
            print(f"{driver:8} (skipped: install sanschat[trio] to run the trio driver)")
            continue
        for name in SERVERS:
            room = ChatRoom()
            chats = functools.partial(ChatMember, room) if name == "chat" else factory(name)
            server = start_server(driver, chats)
            try:
                story, ok = _demo_chat(server, room) if name == "chat" else DEMOS[name](server)
            except OSError as error:
                story, ok = f"failed: {error}", False
            finally:
                server.stop()
            failures += not ok
            print(f"{driver:8} {name:5} {'ok  ' if ok else 'FAIL'} {story}", flush=True)
    print(f"{'all servers answered' if not failures else f'{failures} failed'} "
          f"in {time.monotonic() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
