"""A Redis server speaking RESP2 (a subset), on `Chat`: lines, then a byte count, then lines.

Theory of operation: a RESP2 client sends each command as an array of bulk strings::

    *3\\r\\n$3\\r\\nSET\\r\\n$5\\r\\nmykey\\r\\n$7\\r\\nmyvalue\\r\\n

The headers (``*3``, ``$3``) are lines, so the chat starts with the ``\\r\\n`` terminator.
A ``$N`` header switches to the int terminator ``N + 2`` (the value and its ``\\r\\n``), so a
value is binary-safe whatever it holds (``\\r\\n``, NUL bytes, 10 MB); then the chat goes back
to lines.  A line that is not an array header is an *inline* command (``PING``, typed by
hand with telnet).  Commands the client pipelines (sends before reading a reply) are
answered in order.  Replies are built by the small ``_bulk``/``_array``/... helpers below.

Limits: a header line is bounded by `max_frame_size` (a longer one is a `FrameTooLarge`,
answered in `protocol_error`), a bulk by `max_bulk_length`, an array by
`max_multibulk_length`.  As in Redis, a client that breaks the framing gets
``-ERR Protocol error: ...`` and the connection is closed (its next bytes could not be
framed); a wrong command only gets an ``-ERR`` reply.  Keys live in a dict shared by the
connections of a server (`RESPServer.factory`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from .._channel import TerminatorLike
from .._chat import Chat
from .._errors import ProtocolError

__all__ = ["RESPServer"]

_OK = b"+OK\r\n"
_NULL = b"$-1\r\n"
_INT_MAX = 2**63 - 1


def _bulk(value: bytes | None) -> bytes:
    return _NULL if value is None else b"$%d\r\n%b\r\n" % (len(value), value)


def _integer(value: int) -> bytes:
    return b":%d\r\n" % value


def _array(items: list[bytes]) -> bytes:
    """An array of replies already encoded."""
    return b"*%d\r\n%b" % (len(items), b"".join(items))


def _error(message: str) -> bytes:
    return b"-ERR " + message.encode() + b"\r\n"


def _wrong_arity(name: bytes) -> bytes:
    return _error(f"wrong number of arguments for '{_text(name).lower()}' command")


class RESPServer(Chat):
    """A Redis server for the RESP2 protocol: PING, ECHO, SET [NX|XX], GET, DEL, EXISTS, INCR,
    DECR, INCRBY, DECRBY, MGET, MSET, DBSIZE, FLUSHDB, MULTI/EXEC/DISCARD (redis-py's default
    pipeline), QUIT.  Clients must speak RESP2 (redis-py: ``protocol=2``; HELLO is refused).

    Args:
        data: the key space; connections given the same dict share it (a new one if omitted).
    """

    terminator: ClassVar[TerminatorLike] = b"\r\n"
    max_frame_size: ClassVar[int | None] = 64 * 1024
    """Longest header or inline command line (Redis allows 64 KiB inline requests)."""
    max_bulk_length: ClassVar[int] = 64 * 1024 * 1024
    """Largest value accepted (Redis: ``proto-max-bulk-len``, 512 MB; smaller here, since a
    value is held whole while it arrives)."""
    max_multibulk_length: ClassVar[int] = 1024 * 1024
    """Most arguments in one command (as Redis)."""
    line_bulk_limit: ClassVar[int] = 64 * 1024
    """Bulks up to this size (and `max_frame_size`) are read as lines, their own ``\r\n``
    joined back; larger ones by an int terminator.  0: every bulk by an int terminator.
    Both are exact; see the module docstring for why the small ones avoid the switch."""
    fuzz_tokens: ClassVar[tuple[bytes, ...]] = (
        b"\r\n", b"*1\r\n", b"*2\r\n", b"*3\r\n", b"$1\r\n", b"$3\r\n", b"$-1\r\n", b"*-1\r\n",
        b"$99999999999\r\n", b"PING", b"ECHO", b"SET", b"GET", b"DEL", b"EXISTS", b"INCR",
        b"DECR", b"MGET", b"MSET", b"MULTI", b"EXEC", b"DISCARD", b"QUIT", b"NX", b"XX", b"-1",
        b"9223372036854775807",
    )  # fmt: skip
    """Tokens a fuzzer splices into its inputs: headers, command names, edge numbers."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        super().__init__()
        self.data: dict[bytes, bytes] = {} if data is None else data
        """The key space."""
        self._args: list[bytes] = []  # the bulks of the command being received
        self._wanted = 0  # bulks of that command still to come
        self._bulk_length = -1  # length of the bulk being read; -1 while reading headers
        self._by_count = False  # that bulk is read by an int terminator, as one frame
        self._pieces: list[bytes] = []  # else its lines so far, and their length with CRLFs
        self._got = 0
        self._queued: list[list[bytes]] | None = None  # commands after MULTI, until EXEC
        self._aborted = False  # a command was refused since MULTI: EXEC discards them

    @classmethod
    def factory(cls) -> Callable[[], RESPServer]:
        """A connection factory for one server: its connections share one key space."""
        data: dict[bytes, bytes] = {}
        return lambda: cls(data)

    # ------------------------------------------------------------------ framing

    def found_frame(self, frame: bytes) -> None:
        """One header line, a bulk (with its ``\r\n``) or a piece of one, or an inline command."""
        if self._bulk_length < 0:
            self._header(frame)
        elif self._by_count:  # the bulk and its "\r\n", as one frame of the int terminator
            self._by_count = False
            if frame[-2:] != b"\r\n":
                self._fail("bulk string not followed by CRLF")
                return
            self._end_bulk(frame[:-2])
            if not self.closing:
                self.set_terminator(b"\r\n")  # last: it raises if a received line is too long
        else:  # a line of a small bulk: the bulk's own "\r\n"s cut it into pieces
            self._pieces.append(frame)
            got = self._got + len(frame)
            if got == self._bulk_length:
                self._end_bulk(b"\r\n".join(self._pieces))
            elif got + 2 > self._bulk_length:
                self._fail("bulk string not followed by CRLF")
            else:
                self._got = got + 2  # the "\r\n" that ended this piece is the bulk's

    def _header(self, line: bytes) -> None:
        if self._wanted:
            if line[:1] != b"$":
                self._fail(f"expected '$', got {line[:1].decode('latin-1')!r}")
                return
            length = _parse_int(line[1:])
            if length is None or not 0 <= length <= self.max_bulk_length:
                self._fail("invalid bulk length")
                return
            self._bulk_length = length
            if length > self.line_bulk_limit or length > (self.max_frame_size or length):
                self._by_count = True
                self.set_terminator(length + 2, max_frame_size=None)
        elif line[:1] == b"*":
            count = _parse_int(line[1:])
            if count is None or count > self.max_multibulk_length:
                self._fail("invalid multibulk length")
            elif count > 0:  # "*0" and "*-1" are empty requests: nothing to answer
                self._wanted = count
        elif words := line.split():
            self._args = words
            self._run_command()

    def _end_bulk(self, value: bytes) -> None:
        self._args.append(value)
        self._bulk_length, self._got = -1, 0
        self._pieces.clear()
        self._wanted -= 1
        if self._wanted == 0:
            self._run_command()

    def protocol_error(self, error: ProtocolError) -> None:
        """A header or inline line longer than `max_frame_size`: answer as Redis does."""
        if not self.closing:
            self.push(_error("Protocol error: too big inline request or header line"))

    def _fail(self, reason: str) -> None:
        """The client broke the framing: say why and close (what follows cannot be framed)."""
        self.push(_error("Protocol error: " + reason))
        self.close_when_done()

    # ------------------------------------------------------------------ commands

    def _run_command(self) -> None:
        args, self._args = self._args, []
        name = args[0].upper()
        if name == b"QUIT":
            self.push(_OK)
            self.close_when_done()
        elif name == b"MULTI":
            if self._queued is not None:
                self.push(_error("MULTI calls can not be nested"))
            else:
                self._queued, self._aborted = [], False
                self.push(_OK)
        elif name in (b"EXEC", b"DISCARD"):
            queued, self._queued = self._queued, None
            if queued is None:
                self.push(_error(f"{name.decode()} without MULTI"))
            elif name == b"DISCARD":
                self.push(_OK)
            elif self._aborted:
                self.push(b"-EXECABORT Transaction discarded because of previous errors.\r\n")
            else:
                self.push(_array([self.execute(command) for command in queued]))
        elif self._queued is not None:
            refused = self._refuse(args)
            if refused:
                self._aborted = True  # as in Redis: EXEC will discard the transaction
                self.push(refused)
            else:
                self._queued.append(args)
                self.push(b"+QUEUED\r\n")
        else:
            self.push(self.execute(args))

    def _refuse(self, args: list[bytes]) -> bytes:
        """The error reply for an unknown command or a wrong argument count, else b""."""
        name = args[0].upper()
        entry = _COMMANDS.get(name)
        if entry is None:
            return _error(f"unknown command '{_text(args[0])}'")
        arity = entry[1]
        if (arity >= 0 and len(args) != arity) or len(args) < -arity:
            return _wrong_arity(name)
        return b""

    def execute(self, args: list[bytes]) -> bytes:
        """Run one command (name first, any case) on `data`; return its encoded reply."""
        refused = self._refuse(args)
        if refused:
            return refused
        return _COMMANDS[args[0].upper()][0](self, args)

    def _ping(self, args: list[bytes]) -> bytes:
        if len(args) > 2:
            return _wrong_arity(b"ping")
        return b"+PONG\r\n" if len(args) == 1 else _bulk(args[1])

    def _echo(self, args: list[bytes]) -> bytes:
        return _bulk(args[1])

    def _set(self, args: list[bytes]) -> bytes:
        options = {option.upper() for option in args[3:]}
        if len(options) != len(args) - 3 or not options <= {b"NX", b"XX"} or len(options) > 1:
            return _error("syntax error")  # EX/PX need a clock, which a sans-I/O chat has not
        present = args[1] in self.data
        if (b"NX" in options and present) or (b"XX" in options and not present):
            return _NULL
        self.data[args[1]] = args[2]
        return _OK

    def _get(self, args: list[bytes]) -> bytes:
        return _bulk(self.data.get(args[1]))

    def _del(self, args: list[bytes]) -> bytes:
        return _integer(sum(self.data.pop(key, None) is not None for key in args[1:]))

    def _exists(self, args: list[bytes]) -> bytes:
        return _integer(sum(key in self.data for key in args[1:]))

    def _incr(self, args: list[bytes]) -> bytes:
        name = args[0].upper()
        step = _parse_int(args[2]) if len(args) == 3 else 1  # INCRBY, DECRBY: by args[2]
        if step is None:
            return _error("value is not an integer or out of range")
        if name.startswith(b"DECR"):
            step = -step
        number = _parse_int(self.data.get(args[1], b"0"))
        if number is None or not -_INT_MAX - 1 <= number <= _INT_MAX:
            return _error("value is not an integer or out of range")
        if not -_INT_MAX - 1 <= number + step <= _INT_MAX:
            return _error("increment or decrement would overflow")
        self.data[args[1]] = b"%d" % (number + step)
        return _integer(number + step)

    def _mget(self, args: list[bytes]) -> bytes:
        return _array([_bulk(self.data.get(key)) for key in args[1:]])

    def _mset(self, args: list[bytes]) -> bytes:
        if len(args) % 2 == 0:
            return _wrong_arity(b"mset")
        for index in range(1, len(args), 2):
            self.data[args[index]] = args[index + 1]
        return _OK

    def _dbsize(self, args: list[bytes]) -> bytes:
        return _integer(len(self.data))

    def _flushdb(self, args: list[bytes]) -> bytes:
        self.data.clear()
        return _OK


#: name -> (method, arity): an arity >= 0 is exact, a negative one a minimum (as in Redis).
_COMMANDS: dict[bytes, tuple[Callable[[RESPServer, list[bytes]], bytes], int]] = {
    b"PING": (RESPServer._ping, -1),
    b"ECHO": (RESPServer._echo, 2),
    b"SET": (RESPServer._set, -3),
    b"GET": (RESPServer._get, 2),
    b"DEL": (RESPServer._del, -2),
    b"EXISTS": (RESPServer._exists, -2),
    b"INCR": (RESPServer._incr, 2),
    b"DECR": (RESPServer._incr, 2),
    b"INCRBY": (RESPServer._incr, 3),
    b"DECRBY": (RESPServer._incr, 3),
    b"MGET": (RESPServer._mget, -2),
    b"MSET": (RESPServer._mset, -3),
    b"DBSIZE": (RESPServer._dbsize, 1),
    b"FLUSHDB": (RESPServer._flushdb, 1),
}


def _parse_int(text: bytes) -> int | None:
    """A decimal integer as Redis writes them (optional '-', digits only), else None."""
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or len(digits) > 19:
        return None
    return int(text)


def _text(name: bytes) -> str:
    return name.decode("utf-8", errors="replace")[:128]
