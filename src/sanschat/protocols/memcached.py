"""A memcached server (text protocol subset) on `Chat`: a command line, a data block, lines.

Theory of operation: every command is a line ending in ``\\r\\n``.  A storage command
(``set key flags exptime bytes [noreply]``) announces a data block of ``bytes`` bytes: the
chat switches to the int terminator ``bytes + 2`` (the block and its ``\\r\\n``), so a value
may hold any byte, then goes back to lines.  Retrieval (``get``/``gets``) answers ``VALUE``
blocks and ``END``; ``noreply`` drops a command's reply (a client pipelining sets sends no
read between them).  Items live in a `Store` shared by the connections of a server.
``exptime`` is parsed and ignored: a sans-I/O chat has no clock.

Limits, answered as memcached answers them: a key over 250 bytes or a malformed command is a
``CLIENT_ERROR`` (the connection goes on); a block over `max_item_size` gets ``SERVER_ERROR
object too large for cache`` and is read and dropped in pieces of at most
`SWALLOW_CHUNK` bytes, so a client announcing 1 TB costs nothing; a block not ended by
``\\r\\n`` is ``CLIENT_ERROR bad data chunk``; a command line over `max_frame_size` is
``CLIENT_ERROR line too long`` in `protocol_error`, then the connection closes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from .._channel import TerminatorLike
from .._chat import Chat
from .._errors import ProtocolError

__all__ = ["MAX_KEY_LENGTH", "SWALLOW_CHUNK", "MemcachedServer", "Store"]

#: The longest key memcached accepts.
MAX_KEY_LENGTH = 250
#: The most bytes of a refused data block read at once while it is dropped.
SWALLOW_CHUNK = 64 * 1024
_U32, _U64 = 2**32, 2**64
_STORAGE = (b"set", b"add", b"replace", b"append", b"prepend", b"cas")


@dataclass
class Store:
    """The items of one server: key -> (flags, value, cas unique)."""

    items: dict[bytes, tuple[int, bytes, int]] = field(default_factory=dict)
    """The items stored."""
    last_cas: int = 0
    """The last cas unique given out; each store operation takes the next."""

    def put(self, key: bytes, flags: int, value: bytes) -> None:
        """Store *value* under *key* with a new cas unique."""
        self.last_cas += 1
        self.items[key] = (flags, value, self.last_cas)


def _number(text: bytes, limit: int) -> int | None:
    """A decimal in ``range(limit)``, or None."""
    if not text.isdigit() or len(text) > 20 or int(text) >= limit:
        return None
    return int(text)


def _valid_key(key: bytes) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and not any(byte <= 32 or byte == 127 for byte in key)


class MemcachedServer(Chat):
    """A memcached server: get, gets, set, add, replace, append, prepend, cas, delete, incr,
    decr, flush_all, version, quit, with ``noreply``.

    Args:
        store: the items; connections given the same `Store` share it (a new one if omitted).
    """

    terminator: ClassVar[TerminatorLike] = b"\r\n"
    max_frame_size: ClassVar[int | None] = 64 * 1024
    """Longest command line (a ``get`` of many keys is one line)."""
    max_item_size: ClassVar[int] = 1024 * 1024
    """Largest value stored (memcached's default ``-I 1m``)."""
    line_block_limit: ClassVar[int] = 64 * 1024
    """Data blocks up to this size (and `max_frame_size`) are read as lines, their own
    ``\r\n`` joined back; larger ones by an int terminator.  0: every block by its count."""
    fuzz_tokens: ClassVar[tuple[bytes, ...]] = (
        b"\r\n", b"get ", b"gets ", b"set ", b"add ", b"replace ", b"append ", b"prepend ",
        b"cas ", b"delete ", b"incr ", b"decr ", b"flush_all", b"version", b"quit", b" noreply",
        b" 0 0 1\r\n", b" 0 0 5\r\n", b"18446744073709551615", b"99999999999", b"-1",
    )  # fmt: skip
    """Tokens a fuzzer splices into its inputs: commands, argument runs, edge numbers."""

    def __init__(self, store: Store | None = None) -> None:
        super().__init__()
        self.store: Store = Store() if store is None else store
        """The items this connection reads and writes."""
        # The storage command whose data block comes next: (command, key, flags, cas, noreply)
        self._pending: tuple[bytes, bytes, int, int, bool] | None = None
        self._swallow = 0  # bytes of a refused data block still to drop
        self._size = 0  # the data block's length
        self._by_count = False  # it is read by an int terminator, as one frame
        self._pieces: list[bytes] = []  # else its lines so far, and their length with CRLFs
        self._got = 0

    @classmethod
    def factory(cls) -> Callable[[], MemcachedServer]:
        """A connection factory for one server: its connections share one `Store`."""
        store = Store()
        return lambda: cls(store)

    # ------------------------------------------------------------------ framing

    def found_frame(self, frame: bytes) -> None:
        """A command line, a data block (or a line of a small one), or a piece to drop."""
        if self._swallow:
            self._swallow -= len(frame)
            self._expect(self._swallow)
        elif self._pending is None:
            self._command(frame)
        elif self._by_count:  # the block and its "\r\n", as one frame of the int terminator
            self._by_count = False
            self._end_block(frame[:-2] if frame[-2:] == b"\r\n" else None)
            if not self.closing:
                self.set_terminator(b"\r\n")  # last: it raises if a received line is too long
        else:  # a line of a small block: the block's own "\r\n"s cut it into pieces
            self._pieces.append(frame)
            got = self._got + len(frame)
            if got == self._size:
                self._end_block(b"\r\n".join(self._pieces))
            elif got + 2 > self._size:
                self._end_block(None)
            else:
                self._got = got + 2  # the "\r\n" that ended this piece is the block's

    def _end_block(self, value: bytes | None) -> None:
        """The data block has come: store it (None: it was not followed by ``\r\n``)."""
        pending, self._pending = self._pending, None
        self._pieces.clear()
        assert pending is not None
        if value is None:
            self.push(b"CLIENT_ERROR bad data chunk\r\n")
        else:
            self._store(*pending, value)

    def _expect(self, swallow: int) -> None:
        """Drop the next *swallow* bytes in bounded pieces, then read lines again."""
        if swallow:
            self.set_terminator(min(swallow, SWALLOW_CHUNK), max_frame_size=None)
        else:
            self.set_terminator(b"\r\n")

    def protocol_error(self, error: ProtocolError) -> None:
        """A command line over `max_frame_size`: ``CLIENT_ERROR line too long``."""
        if not self.closing:
            self.push(b"CLIENT_ERROR line too long\r\n")

    # ------------------------------------------------------------------ commands

    def _command(self, line: bytes) -> None:
        words = line.split()
        if not words:
            self.push(b"ERROR\r\n")
            return
        name = words[0]
        noreply = words[-1] == b"noreply" and name not in (b"get", b"gets")
        if noreply:
            words.pop()
        if name in _STORAGE:
            self._storage_command(words, noreply)
        elif name in (b"get", b"gets"):
            self._get(words, with_cas=name == b"gets")
        elif name == b"delete" and len(words) in (2, 3) and words[2:] in ([], [b"0"]):
            reply = b"DELETED" if self.store.items.pop(words[1], None) else b"NOT_FOUND"
            self._reply(reply, noreply)
        elif name in (b"incr", b"decr") and len(words) == 3:
            self._incr(words[1], words[2], name == b"incr", noreply)
        elif name == b"flush_all" and len(words) <= 2:
            self.store.items.clear()
            self._reply(b"OK", noreply)
        elif name == b"version" and len(words) == 1:
            self.push(b"VERSION 1.6.0-sanschat\r\n")
        elif name == b"quit" and len(words) == 1:
            self.close_when_done()
        elif name in (b"delete", b"incr", b"decr", b"flush_all", b"version", b"quit"):
            self.push(b"CLIENT_ERROR bad command line format\r\n")
        else:
            self.push(b"ERROR\r\n")

    def _reply(self, reply: bytes, noreply: bool) -> None:
        if not noreply:
            self.push(reply + b"\r\n")

    def _storage_command(self, words: list[bytes], noreply: bool) -> None:
        name = words[0]
        if len(words) != (6 if name == b"cas" else 5) or not _valid_key(words[1]):
            self.push(b"CLIENT_ERROR bad command line format\r\n")
            return
        flags = _number(words[2], _U32)
        exptime = _number(words[3].removeprefix(b"-"), _U32)
        size = _number(words[4], _U64)
        cas = _number(words[5], _U64) if name == b"cas" else 0
        if flags is None or exptime is None or size is None or cas is None:
            self.push(b"CLIENT_ERROR bad command line format\r\n")
        elif size > self.max_item_size:
            self.push(b"SERVER_ERROR object too large for cache\r\n")
            self._swallow = size + 2
            self._expect(self._swallow)
        else:
            self._pending = (name, words[1], flags, cas, noreply)
            self._size, self._got = size, 0
            if size > self.line_block_limit or size > (self.max_frame_size or size):
                self._by_count = True
                self.set_terminator(size + 2, max_frame_size=None)

    def _store(self, name: bytes, key: bytes, flags: int, cas: int, noreply: bool,
               value: bytes) -> None:  # fmt: skip
        item = self.store.items.get(key)
        if name == b"cas" and item is not None and item[2] != cas:
            self._reply(b"EXISTS", noreply)
        elif (name == b"add") == (item is not None) and name != b"set":
            # add needs the key absent; replace, append, prepend and cas need it present
            self._reply(b"NOT_FOUND" if name == b"cas" else b"NOT_STORED", noreply)
        elif item is not None and name in (b"append", b"prepend"):
            joined = item[1] + value if name == b"append" else value + item[1]
            if len(joined) > self.max_item_size:
                self.push(b"SERVER_ERROR out of memory storing object\r\n")
            else:
                self.store.put(key, item[0], joined)
                self._reply(b"STORED", noreply)
        else:
            self.store.put(key, flags, value)
            self._reply(b"STORED", noreply)

    def _get(self, words: list[bytes], *, with_cas: bool) -> None:
        if len(words) < 2:
            self.push(b"ERROR\r\n")
            return
        if not all(_valid_key(key) for key in words[1:]):
            self.push(b"CLIENT_ERROR bad command line format\r\n")
            return
        blocks = []
        for key in words[1:]:
            item = self.store.items.get(key)
            if item is not None:
                flags, value, cas = item
                head = b"VALUE %b %d %d %d" if with_cas else b"VALUE %b %d %d"
                args = (key, flags, len(value), cas) if with_cas else (key, flags, len(value))
                blocks.append(head % args + b"\r\n" + value + b"\r\n")
        blocks.append(b"END\r\n")
        self.push(b"".join(blocks))

    def _incr(self, key: bytes, delta_text: bytes, up: bool, noreply: bool) -> None:
        delta = _number(delta_text, _U64)
        item = self.store.items.get(key)
        if delta is None or not _valid_key(key):
            self.push(b"CLIENT_ERROR invalid numeric delta argument\r\n")
        elif item is None:
            self._reply(b"NOT_FOUND", noreply)
        elif (value := _number(item[1].strip(), _U64)) is None:
            self.push(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
        else:
            # incr wraps around at 2**64; decr stops at 0 (as memcached does)
            result = (value + delta) % _U64 if up else max(value - delta, 0)
            self.store.put(key, item[0], b"%d" % result)
            self._reply(b"%d" % result, noreply)
