"""``python -m sanschat``: serve an example protocol or your own on any driver, or run the demo.

Theory of operation: ``serve TARGET`` resolves *TARGET* to a connection factory (a name of
`EXAMPLES`, or ``MODULE:FACTORY`` imported as uvicorn imports ``module:app``, with the current
directory on ``sys.path``; see `load_factory`), sets up logging on stderr (``--log-level``),
starts the server on the chosen driver with `sanschat.drivers.start_server` (TLS with
``--certfile``, IPv4 or IPv6 by ``--host``), prints exactly one line ``listening on
HOST:PORT`` (``[::1]:PORT`` for IPv6) on stdout once it accepts connections, and waits for
SIGINT or SIGTERM, then stops it and exits 0.  Every bad argument (a port out of range, a
target that is not a Chat factory, an unreadable certificate) is a usage error, exit 2, one
line, no traceback; an address that cannot be bound exits 1.  ``--version`` prints the
version and the build loaded (`sanschat.COMPILED`).  ``demo`` starts every server on every
driver on loopback in turn, talks to each with a plain blocking socket, prints what flowed,
and exits 0 if every answer was right.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import inspect
import logging
import os
import reprlib
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from . import COMPILED, __version__
from ._chat import Chat
from .drivers import BACKLOG, DRIVERS, BackgroundServer, format_address, start_server
from .examples import MAX_FRAME_SIZE, ChatMember, ChatRoom, factory

#: The example servers ``serve NAME`` runs, by name: each value makes the connection factory
#: for a frame limit (``--max-frame``).  The one registry of names: add new examples here.
EXAMPLES: dict[str, Callable[[int], Callable[[], Chat]]] = {
    "echo": functools.partial(factory, "echo"),
    "chat": functools.partial(factory, "chat"),
    "http": functools.partial(factory, "http"),
}

SERVERS = ("echo", "chat", "http")  # the ones the demo exercises
DEMO_TIMEOUT = 5.0  # seconds a demo exchange may take before it counts as failed

#: What ``--log-level`` sets up: one line per record, on stderr; the logger's name is the
#: only prefix (``sanschat.drivers.select``, ...).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

_logger = logging.getLogger("sanschat.cli")


def _prog() -> str:
    """The program's name as the user typed it: the console script or ``python -m``."""
    head, tail = os.path.split(sys.argv[0])
    return "python -m sanschat" if (os.path.basename(head), tail) == (
        "sanschat", "__main__.py") else "sanschat"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port is a number 0-65535, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0: any free port), not {port}")
    return port


def _at_least_1(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parser(prog: str | None = None) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command line's parser, and its ``serve`` subparser (for usage errors found later)."""
    parser = argparse.ArgumentParser(
        prog=prog or _prog(),
        description="Serve sanschat's example protocols or your own, or run the demo.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=version_line(),
        help="print the version and which build (pure Python or compiled) is loaded, and exit",
    )
    logs = argparse.ArgumentParser(add_help=False)
    logs.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default="warning",
        help="log records of this level and above on stderr, with time, level and logger "
        "(default: warning; debug also shows each connection lost)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="what to run; COMMAND --help lists its options")
    names = ", ".join(EXAMPLES)
    serve = commands.add_parser(
        "serve",
        parents=[logs],
        help="serve one protocol until SIGINT or SIGTERM",
        description=f"Serve an example ({names}) or your own Chat until SIGINT or SIGTERM; "
        "print 'listening on HOST:PORT' once connections are accepted.",
    )
    serve.add_argument(
        "target",
        metavar="TARGET",
        help=f"an example ({names}), or MODULE:FACTORY: a sanschat.Chat subclass or a "
        "zero-argument callable returning a new Chat (called once at start-up as a check), "
        "imported with the current directory on sys.path, e.g. myproto:MyChat",
    )
    serve.add_argument("--driver", choices=DRIVERS, default="select",
                       help="the event loop to run on (default: select)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address or name to listen on, IPv4 or IPv6 such as ::1 "
                       "(default: 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=0,
                       help="TCP port, 0-65535; 0 (the default) picks a free port")
    serve.add_argument("--backlog", type=_at_least_1, default=BACKLOG,
                       help=f"connections the kernel queues before they are accepted "
                       f"(default: {BACKLOG})")
    serve.add_argument("--max-frame", type=_at_least_1, default=None,
                       help=f"largest frame an example accepts, in bytes (default: "
                       f"{MAX_FRAME_SIZE}); a Chat of your own sets its max_frame_size")
    serve.add_argument("--certfile",
                       help="serve TLS with this PEM certificate chain (it may hold the key)")
    serve.add_argument("--keyfile",
                       help="the PEM private key of --certfile, if not in that file "
                       "(unencrypted)")
    commands.add_parser(
        "demo",
        parents=[logs],
        help="run every example server on every driver on loopback, and check the answers",
    )
    return parser, serve


def version_line() -> str:
    """Return what ``--version`` prints: ``sanschat VERSION (pure Python|compiled, mypyc)``."""
    build = "compiled, mypyc" if COMPILED else "pure Python"
    return f"sanschat {__version__} ({build})"


def _missing_extra_message(feature: str, package: str) -> str:
    """The one wording, for ``serve`` and ``demo``, of *feature* finding *package* missing.

    A stand-in, with the same signature and wording, for ``sanschat._extras`` (on its way
    to main), whose extras are named after their package.
    """
    return f"{feature} needs {package}, which is not installed: pip install 'sanschat[{package}]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for a usage error)."""
    parser, serve = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    if args.command == "demo":
        return _demo()
    try:
        chats = _factory(args.target, args.max_frame)
    except ValueError as error:
        serve.error(f"argument TARGET: {error}")
    try:
        context = _tls_context(args.certfile, args.keyfile)
    except ValueError as error:
        serve.error(str(error))
    return _serve(args.target, chats, args.driver, args.host, args.port, args.backlog, context)


def _factory(target: str, max_frame: int | None) -> Callable[[], Chat]:
    maker = EXAMPLES.get(target)
    if maker is not None:
        return maker(MAX_FRAME_SIZE if max_frame is None else max_frame)
    if ":" not in target:
        raise ValueError(f"{target!r} is neither an example ({', '.join(EXAMPLES)}) "
                         "nor MODULE:FACTORY")
    if max_frame is not None:
        raise ValueError("--max-frame applies to the examples only: set max_frame_size "
                         f"on the Chat class of {target}")
    return load_factory(target)


def load_factory(spec: str) -> Callable[[], Chat]:
    """Import ``MODULE:NAME`` (*NAME* may be dotted) and return it as a connection factory.

    *NAME* must be a `sanschat.Chat` subclass that can be made without arguments, or a
    callable that takes none and returns a new `Chat`; such a callable is called once here,
    to check (its chat is never attached), and every chat it makes later is checked too
    (else a `TypeError` drops that connection).  The current directory is put first on
    ``sys.path`` if it is not there, so that ``serve myproto:MyChat`` finds ``myproto.py``.

    Raises:
        ValueError: with a one-line reason, if *spec* is not ``MODULE:NAME``, the module
            does not exist, it has no such attribute, or the attribute is not a Chat
            factory.  Any other error raised while importing the module propagates.
    """
    module_name, _, name = spec.partition(":")
    if not module_name or not name or ":" in name or module_name.startswith("."):
        raise ValueError(f"{spec!r} is not MODULE:FACTORY (such as myproto:MyChat)")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name != missing and not module_name.startswith(missing + "."):
            raise  # the module exists but imports one that does not: the traceback says where
        raise ValueError(f"no module named {missing!r} (looked in {here} and on "
                         "sys.path)") from None
    obj: object = module
    for depth, part in enumerate(name.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            owner = ".".join([module_name, *name.split(".")[:depth]]) if depth else module_name
            raise ValueError(f"{owner!r} has no attribute {part!r}") from None
    return _checked_factory(spec, obj)


def _checked_factory(spec: str, obj: object) -> Callable[[], Chat]:
    """*obj* as a connection factory, or a ValueError saying why it is not one."""
    needs = "a Chat subclass or a zero-argument factory returning a new Chat"
    if isinstance(obj, Chat):
        raise ValueError(f"{spec} is a Chat instance; give its class or a factory ({needs}), "
                         "as each connection needs a chat of its own")
    if isinstance(obj, type) and not issubclass(obj, Chat):
        raise ValueError(f"{spec} is the class {obj.__qualname__}, not a subclass of "
                         "sanschat.Chat")
    if not callable(obj):
        raise ValueError(f"{spec} is {reprlib.repr(obj)} (of type {type(obj).__name__}), "
                         f"not {needs}")
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise ValueError(f"{spec} cannot be called without arguments: wrap it in {needs} "
                         "(such as a lambda or functools.partial)") from None
    except ValueError:  # no signature to read (some builtins): the call below finds out
        pass
    if isinstance(obj, type) and issubclass(obj, Chat):
        return obj
    make: Callable[[], object] = obj

    def refusal(made: object) -> str:
        return (f"{spec}() returned {reprlib.repr(made)} (of type {type(made).__name__}), "
                "not a sanschat.Chat")

    def checked() -> Chat:
        chat = make()
        if not isinstance(chat, Chat):
            raise TypeError(refusal(chat))
        return chat

    probe = make()  # an exception here is the factory's own: its traceback says more
    if not isinstance(probe, Chat):
        raise ValueError(refusal(probe))
    return checked


def _tls_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """A server-side TLS context holding the certificate, or None without ``--certfile``."""
    if certfile is None:
        if keyfile is not None:
            raise ValueError("--keyfile needs --certfile")
        return None

    def no_password() -> str:  # rather than a prompt on a terminal a server may not have
        raise ValueError(f"the key in {keyfile or certfile} is encrypted: give an unencrypted "
                         "--keyfile")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile, password=no_password)
    except (OSError, ssl.SSLError) as error:  # missing file, not PEM, key and cert disagree
        raise ValueError(f"cannot load the certificate {certfile}"
                         f"{f' with the key {keyfile}' if keyfile else ''}: {error}") from None
    return context


def _serve(name: str, chats: Callable[[], Chat], driver: str, host: str, port: int,
           backlog: int, context: ssl.SSLContext | None) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        server = start_server(driver, chats, host, port, ssl_context=context, backlog=backlog)
    except ImportError as error:
        if error.name != "trio":
            raise
        print(f"error: cannot serve {name}: {_missing_extra_message('the trio driver', 'trio')}",
              file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot serve {name} on {driver} at {format_address((host, port))}: "
              f"{error}", file=sys.stderr)
        return 1
    _logger.info("serving %s on the %s driver at %s%s", name, driver,
                 format_address(server.address), " over TLS" if context else "")
    announce_and_wait(server, stop)
    return 0


def announce_and_wait(server: BackgroundServer, stop: threading.Event) -> None:
    """Print ``listening on HOST:PORT`` (``[HOST]:PORT`` for IPv6), wait until *stop* is set,
    then stop *server*."""
    print(f"listening on {format_address(server.address)}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()


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
            print(f"{driver:8} (skipped: {_missing_extra_message('the trio driver', 'trio')})")
            continue
        for name in SERVERS:
            room = ChatRoom()
            chats = functools.partial(ChatMember, room) if name == "chat" else EXAMPLES[name](
                MAX_FRAME_SIZE)
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
