"""The worked examples: three protocols written once, run on every driver.

Theory of operation: each example is a plain `Chat` subclass with no I/O; the drivers run
them unchanged and ``python -m sanschat serve {echo,chat,http}`` serves them.  They bound
what one peer can cost the server: every frame is limited by `MAX_FRAME_SIZE` (override per
server); the chat room uses the library's fan-out backpressure (a sender stops being read
while a member it feeds is full) and drops a member whose queue stays full while its
socket takes nothing for `CHAT_SENDQ_TIMEOUT` seconds (IRC's "SendQ exceeded"), with a line
telling it why.  The drivers' backpressure bounds the rest.

* `Echo`: every frame ending in ``\\r\\n`` comes back byte-identical, terminator included.
* `ChatRoom` / `ChatMember`: each line a member sends goes to every other member.
* `HTTPRequestHandler`: the HTTP example of the asynchat documentation, completed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from ._channel import TerminatorLike
from ._chat import Chat
from ._errors import ProtocolError

__all__ = [
    "CHAT_HIGH_WATER",
    "CHAT_SENDQ_TIMEOUT",
    "MAX_FRAME_SIZE",
    "ChatMember",
    "ChatRoom",
    "Echo",
    "HTTPRequestHandler",
    "factory",
]

#: Default frame limit of the example servers: 64 KiB holds any sane line or header, and
#: caps what a peer that never sends a terminator can make the server hold.
MAX_FRAME_SIZE = 64 * 1024

#: A chat member's high water (`Chat.high_water`): above it the member is full and the
#: senders feeding it are paused.  64 KiB is many screens of text and keeps a fast reader's
#: socket busy, while 1,000 members that never read hold at most about 64 MiB between them
#: (lines of 512 bytes and more are shared between members, not copied).
CHAT_HIGH_WATER = 64 * 1024

#: Seconds a member may stay full while its socket takes no byte before it is dropped
#: (IRC's SendQ): long enough for any peer that reads, even over a slow link (any byte
#: taken restarts the count), short enough that one silent member cannot hold the room's
#: senders paused for long.
CHAT_SENDQ_TIMEOUT = 5.0


class Echo(Chat):
    """Sends every ``\\r\\n``-terminated frame back byte-identical, terminator included."""

    terminator: ClassVar[TerminatorLike] = b"\r\n"
    max_frame_size: ClassVar[int | None] = MAX_FRAME_SIZE

    def found_frame(self, frame: bytes) -> None:
        """Echo one frame and its terminator (what a subclass overriding this extends)."""
        self.push(frame + b"\r\n")

    def found_frames(self, frames: list[bytes]) -> None:
        """Echo every frame of a read and its terminator, with one push (the batch hook)."""
        frames.append(b"")  # so that the join ends with a terminator too
        self.push(b"\r\n".join(frames))


class ChatRoom:
    """The shared state of one chat server: the members present.

    Fan-out with backpressure: `broadcast` pushes a line to every other member; a member
    that is then full (`Chat.output_full`) pauses the sender (`Chat.pause_until_drained`)
    until its output drains, so senders go at the pace of the members and nobody's queue
    grows past its high water by more than one batch.  A full member starts its SendQ
    clock; if its socket takes nothing for `ChatMember.sendq_timeout` seconds it is
    dropped (`ChatMember.drop`), which resumes the senders it held.  A member that reads,
    however slowly, is never dropped.
    """

    def __init__(self) -> None:
        self.members: set[ChatMember] = set()
        """The members connected now."""
        self.dropped = 0
        """Members dropped for SendQ so far."""

    def broadcast(self, sender: ChatMember | None, line: bytes) -> None:
        """Send *line* to every member but *sender* and those leaving; pause *sender* while
        a member it fed is full."""
        for member in list(self.members):
            if member is sender or member.closing:
                continue
            member.push(line)
            if member.output_full:
                member.start_sendq_clock()
                if sender is not None:
                    sender.pause_until_drained(member)


class ChatMember(Chat):
    """One client of a `ChatRoom`: each line it sends (``\\r\\n`` or ``\\n``) goes to the others.

    The lines of one read go out as one push per member (the batch hook), so a burst of
    short lines costs one push per member, not one per line and member.
    """

    terminator: ClassVar[TerminatorLike] = b"\n"
    """Lines end in ``\\n`` or ``\\r\\n``: cut at ``\\n`` (a bytes terminator frames a read
    of many lines with one C-level split), and a ``\\r`` before it is dropped."""
    max_frame_size: ClassVar[int | None] = MAX_FRAME_SIZE
    high_water = CHAT_HIGH_WATER
    sendq_timeout: ClassVar[float] = CHAT_SENDQ_TIMEOUT
    """Seconds this member may stay full with its socket taking nothing before it is dropped."""

    def __init__(self, room: ChatRoom) -> None:
        super().__init__()
        self.room = room
        self._sendq_clock = False  # full: the idle timer counts toward the SendQ drop
        self._dropping = False

    def connection_made(self) -> None:
        """Join the room."""
        self.room.members.add(self)

    def found_frame(self, frame: bytes) -> None:
        """Pass the line on to every other member, ending in ``\\r\\n``."""
        self.room.broadcast(self, frame.removesuffix(b"\r") + b"\r\n")

    def found_frames(self, frames: list[bytes]) -> None:
        """Pass the lines of one read on to every other member, in one push each."""
        frames.append(b"")  # so that the join ends with a terminator too
        # Every line ends in \r\n: with C-level replaces, not a Python step per line.
        self.room.broadcast(self, b"\n".join(frames).replace(b"\r\n", b"\n")
                            .replace(b"\n", b"\r\n"))

    def start_sendq_clock(self) -> None:
        """This member is full: drop it if its socket takes nothing for `sendq_timeout` s.

        The clock is the driver's idle timer, which every byte written (or read) restarts;
        `output_drained` stops it again."""
        if not self._sendq_clock and not self.closing:
            self._sendq_clock = True
            self.set_idle_timeout(self.sendq_timeout)

    def output_drained(self) -> None:
        """No longer full: stop the SendQ clock (back to the class's own idle timeout)."""
        if self._sendq_clock and not self.closing:
            self._sendq_clock = False
            self.set_idle_timeout(self.idle_timeout)

    def idle(self) -> None:
        """The SendQ clock ran out: `drop`; otherwise (the class's idle timeout) close."""
        if self._sendq_clock and not self._dropping:
            self.drop(b"SendQ exceeded: %d bytes unread for %g s"
                      % (self.channel.buffered_output, self.sendq_timeout))
        else:
            self.close()

    def drop(self, reason: bytes) -> None:
        """Leave the room at once: the queued lines are dropped (which resumes the senders
        this member held), *reason* is sent in their place, then the connection closes;
        if even that is not taken within `sendq_timeout` seconds, it is aborted."""
        self._dropping = True
        self.room.members.discard(self)
        self.room.dropped += 1
        self.discard_buffers()
        self.push(b"*** " + reason + b"; closing\r\n")
        self.close_when_done()
        self.set_idle_timeout(self.sendq_timeout)  # idle() now closes at once

    def connection_lost(self, exc: BaseException | None) -> None:
        """Leave the room."""
        self.room.members.discard(self)


class HTTPRequestHandler(Chat):
    """The HTTP/1.0 example of the asynchat documentation, completed and strict.

    Reads the request line and headers with a ``\\r\\n`` terminator; for a POST, reads the
    body with ``Content-Length`` as an int terminator; then sets the terminator to ``None``
    (clients sometimes send more than they announce), answers ``HTTP/1.0 200 OK`` (for a
    POST, with the request body echoed back; otherwise a short text naming the request) and
    closes when done.  Anything it cannot read with certainty is refused, then the
    connection closes (the framing switch is the point of the example; the refusals are what
    keeps a framing switch safe, since two parties that disagree on where a body ends
    disagree on everything after it):

    * ``400 Bad Request``: a malformed request line; a header line without a colon, with
      whitespace before the colon, or with control bytes; a bare LF or CR; a duplicate or
      non-numeric ``Content-Length``, or one of more than `MAX_LENGTH_DIGITS` digits;
    * ``411 Length Required``: a POST without ``Content-Length``;
    * ``413 Content Too Large``: a ``Content-Length`` over `max_body_size`;
    * ``431 Request Header Fields Too Large``: a line over `max_frame_size` (the peer's
      protocol error: the channel stops framing it and `protocol_error` answers), more than
      `max_headers` header lines, or more than `max_header_bytes` of them in all;
    * ``501 Not Implemented``: any ``Transfer-Encoding`` (this server reads bodies by
      length only);
    * ``408 Request Timeout``: no byte for `idle_timeout` seconds in a request begun.

    Memory per connection is bounded by `max_header_bytes` + `max_body_size`, held in one
    growing buffer (no object per received piece).
    """

    terminator: ClassVar[TerminatorLike] = b"\r\n"
    max_frame_size: ClassVar[int | None] = MAX_FRAME_SIZE
    """The longest request line or header line; longer is refused with 431 (a line that
    fits but passes `max_header_bytes` is refused with 431 once it ends)."""
    max_headers: ClassVar[int] = 100
    """Header lines accepted before the request is refused with 431."""
    max_header_bytes: ClassVar[int] = 16 * 1024
    """The request line and header lines together, in bytes; more is refused with 431."""
    max_body_size: ClassVar[int] = 1024 * 1024
    """The largest POST body accepted; a longer ``Content-Length`` is refused with 413."""
    idle_timeout: ClassVar[float | None] = 30.0
    """Seconds of silence after which a request begun is answered 408 (and an idle
    connection closed)."""

    MAX_LENGTH_DIGITS: ClassVar[int] = 18
    """A ``Content-Length`` longer than this is refused with 400 (no big-number parsing)."""

    def __init__(self) -> None:
        super().__init__()
        self.ibuffer: bytearray = bytearray()
        self.request_line: bytes = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes: int = 0
        self.reading_headers: bool = True
        self.handling: bool = False

    def collect_incoming_data(self, data: bytes) -> None:
        """Buffer the data (ignored once the request is being answered)."""
        if not self.handling:
            self.ibuffer += data

    def found_terminator(self) -> None:
        """A header line, the end of the headers, or the end of the body."""
        if self.handling:
            return
        data = bytes(self.ibuffer)
        self.ibuffer.clear()
        if not self.reading_headers:
            self.handle_request(data)
        elif data:
            self._header_line(data)
        elif self.request_line:
            self.reading_headers = False
            self._headers_done()
        # else: an empty line before the request line, which RFC 9112 lets a server ignore

    def _header_line(self, line: bytes) -> None:
        self.header_bytes += len(line) + 2
        if b"\n" in line or b"\r" in line:
            self.respond(400, b"Bad Request", b"bare CR or LF in the request\n")
        elif self.header_bytes > self.max_header_bytes:
            self.respond(431, b"Request Header Fields Too Large", b"headers too large\n")
        elif not self.request_line:
            self.request_line = line
        elif len(self.headers) >= self.max_headers:
            self.respond(431, b"Request Header Fields Too Large", b"too many headers\n")
        else:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or _has_controls(line):
                self.respond(400, b"Bad Request", b"malformed header line\n")
            else:
                self.headers.append((name.lower(), value.strip(b" \t")))

    def _headers_done(self) -> None:
        parts = self.request_line.split(b" ")
        if (len(parts) != 3 or not all(parts) or not parts[2].startswith(b"HTTP/")
                or _has_controls(self.request_line)):
            self.respond(400, b"Bad Request", b"malformed request line\n")
            return
        if any(name == b"transfer-encoding" for name, _ in self.headers):
            self.respond(501, b"Not Implemented", b"Transfer-Encoding is not supported\n")
            return
        lengths = [value for name, value in self.headers if name == b"content-length"]
        if len(lengths) > 1:
            self.respond(400, b"Bad Request", b"more than one Content-Length\n")
            return
        if lengths:
            length = lengths[0]
            if not (length.isdigit() and length.isascii()):
                self.respond(400, b"Bad Request", b"Content-Length is not a number\n")
                return
            if len(length) > self.MAX_LENGTH_DIGITS:
                self.respond(400, b"Bad Request", b"Content-Length is too long a number\n")
                return
            if int(length) > self.max_body_size:
                self.respond(413, b"Content Too Large", b"body over the size limit\n")
                return
        if parts[0] == b"POST":
            if not lengths:
                self.respond(411, b"Length Required", b"POST needs a Content-Length\n")
                return
            self.set_terminator(int(lengths[0]), max_frame_size=self.max_body_size)
        else:
            self.handle_request(b"")

    def protocol_error(self, error: ProtocolError) -> None:
        """A request or header line too long for `max_frame_size` (431), or a body over its
        limit (413)."""
        if self.handling:
            return
        if self.reading_headers:
            self.respond(431, b"Request Header Fields Too Large", b"header line too long\n")
        else:
            self.respond(413, b"Content Too Large", b"body over the size limit\n")

    def idle(self) -> None:
        """No byte for `idle_timeout` seconds: 408 if a request was begun, else just close."""
        if self.handling:
            self.close()
        elif self.request_line or self.ibuffer or not self.reading_headers:
            self.respond(408, b"Request Timeout", b"request not completed in time\n")
        else:
            self.close()

    def handle_request(self, body: bytes) -> None:
        """Answer the request: the POST body echoed, or a line naming the request."""
        method, path, _ = self.request_line.split(b" ")
        if method == b"POST":
            self.respond(200, b"OK", body)
        else:
            self.respond(200, b"OK", b"sanschat: " + method + b" " + path + b"\n")

    def respond(self, status: int, reason: bytes, body: bytes) -> None:
        """Send a complete HTTP/1.0 response and close when it has been sent."""
        self.handling = True
        self.ibuffer.clear()
        self.set_terminator(None, max_frame_size=None)  # browsers sometimes over-send
        head = b"HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
        self.push(head % (status, reason, len(body)) + body)
        self.close_when_done()


_CONTROLS = bytes(range(32)).replace(b"\t", b"") + b"\x7f"


def _has_controls(line: bytes) -> bool:
    """True if *line* holds a control byte other than a tab."""
    return len(line.translate(None, _CONTROLS)) != len(line)


def factory(name: str, max_frame_size: int | None = MAX_FRAME_SIZE) -> Callable[[], Chat]:
    """A connection factory for the example server *name* (``echo``, ``chat``, ``http``).

    Each call of the returned function makes the `Chat` of one new connection; the chat
    server's connections share one `ChatRoom`.

    Raises:
        ValueError: for another name.
    """
    limit = {"max_frame_size": max_frame_size}
    if name == "echo":
        echo = type("Echo", (Echo,), limit)
        return echo
    if name == "http":
        http = type("HTTPRequestHandler", (HTTPRequestHandler,), limit)
        return http
    if name == "chat":
        room = ChatRoom()
        member = type("ChatMember", (ChatMember,), limit)
        return lambda: member(room)
    raise ValueError(f"unknown example server {name!r}: expected 'echo', 'chat' or 'http'")
