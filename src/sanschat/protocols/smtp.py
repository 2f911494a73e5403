"""An SMTP server (RFC 5321 subset) on `Chat`: command lines, then a message, then lines.

Theory of operation: SMTP is lines ending in ``\\r\\n`` both ways.  The switch is ``DATA``:
after the ``354`` reply the same terminator cuts the message's lines, under a different
limit (a command line is bounded by `max_frame_size`, 512 bytes as RFC 5321 puts it; a
message line only by the message limit), until a line holding a single ``.``.  A line of the
message that starts with ``.`` had one more added by the client (dot-stuffing), removed
here.  Then the chat goes back to commands, and the message goes to the ``deliver`` callback
as an `Envelope`.  Replies are pushed in the order the commands arrived, so a client may
pipeline them (RFC 2920, advertised in ``EHLO``).

Limits: a command line over `max_frame_size` is answered ``500`` in `protocol_error`, then
the connection closes (its next bytes cannot be trusted to be a command).  A message over
`max_message_size` is refused with ``552``: at ``MAIL FROM`` if its ``SIZE=`` says so, else
after its final ``.`` (its bytes are counted and dropped as they come, so they cost
nothing); a single line longer than the whole limit gets ``552`` and the connection closes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from .._channel import TerminatorLike
from .._chat import Chat
from .._errors import ProtocolError

__all__ = ["Envelope", "SMTPServer"]


@dataclass
class Envelope:
    """One message received: who sent it, to whom, and its content."""

    mail_from: bytes
    """The reverse path of ``MAIL FROM:<...>``, without the brackets (``b""`` for bounces)."""
    rcpt_tos: list[bytes] = field(default_factory=list)
    """The forward paths of the ``RCPT TO:<...>`` commands, in order."""
    data: bytes = b""
    """The message as sent, dot-stuffing undone, each line ending in ``\\r\\n``."""


def _path(argument: bytes, keyword: bytes) -> tuple[bytes, list[bytes]] | None:
    """Split ``FROM:<a@b> SIZE=10`` into (``a@b``, [``SIZE=10``]); None if malformed."""
    if argument[: len(keyword)].upper() != keyword:
        return None
    rest = argument[len(keyword) :].lstrip()
    if not rest.startswith(b"<") or b">" not in rest:
        return None
    address, _, params = rest[1:].partition(b">")
    return address, params.split()


class SMTPServer(Chat):
    """An SMTP server: HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, VRFY (252), HELP, QUIT.

    ``EHLO`` advertises ``SIZE``, ``8BITMIME`` and ``PIPELINING``.  No relaying rules, no
    authentication, no TLS: every message goes to *deliver*.

    Args:
        deliver: called with each `Envelope` accepted; by default messages are appended to
            `messages`.
    """

    terminator: ClassVar[TerminatorLike] = b"\r\n"
    max_frame_size: ClassVar[int | None] = 510
    """Longest command line, ``\\r\\n`` excluded (RFC 5321 4.5.3.1.4: 512 octets with it)."""
    max_message_size: ClassVar[int] = 10 * 1024 * 1024
    """Largest message accepted, in bytes (advertised as ``SIZE``)."""
    max_recipients: ClassVar[int] = 100
    """Most ``RCPT TO`` per message (RFC 5321 4.5.3.1.8 asks servers to take 100)."""
    hostname: ClassVar[bytes] = b"sanschat.localhost"
    """The name the server greets with."""
    fuzz_tokens: ClassVar[tuple[bytes, ...]] = (
        b"\r\n", b"HELO x\r\n", b"EHLO x\r\n", b"MAIL FROM:<a@b>", b" SIZE=", b"BODY=8BITMIME",
        b"RCPT TO:<c@d>\r\n", b"DATA\r\n", b"\r\n.\r\n", b"..", b"RSET\r\n", b"NOOP\r\n",
        b"VRFY x\r\n", b"QUIT\r\n", b"99999999999",
    )  # fmt: skip
    """Tokens a fuzzer splices into its inputs: commands, the data end, dot-stuffing."""

    def __init__(self, deliver: Callable[[Envelope], object] | None = None) -> None:
        super().__init__()
        self.messages: list[Envelope] = []
        """The messages accepted, when no *deliver* callback was given."""
        self.deliver: Callable[[Envelope], object] = deliver or self.messages.append
        """Called with each accepted `Envelope`."""
        self.greeted: bool = False
        """True after HELO or EHLO."""
        self.envelope: Envelope | None = None
        """The message being sent, from ``MAIL FROM`` on; None between messages."""
        self._lines: list[bytes] | None = None  # the message's lines while in DATA, else None
        self._size = 0  # bytes of the message so far (while in DATA)

    @classmethod
    def factory(cls) -> Callable[[], SMTPServer]:
        """A connection factory for one server: its connections share one `messages` list."""
        mailbox: list[Envelope] = []
        return lambda: cls(mailbox.append)

    def connection_made(self) -> None:
        """Greet the client."""
        self.push(b"220 " + self.hostname + b" ESMTP sanschat\r\n")

    def reply(self, line: bytes) -> None:
        """Send one reply line (code and text), adding ``\\r\\n``."""
        self.push(line + b"\r\n")

    # ------------------------------------------------------------------ framing

    def found_frame(self, line: bytes) -> None:
        """A command line, or a line of the message while in ``DATA``."""
        if self._lines is None:
            self._command(line)
        elif line == b".":
            self._end_of_data()
        else:
            if line[:1] == b".":
                line = line[1:]  # undo dot-stuffing
            self._size += len(line) + 2
            if self._size <= self.max_message_size:
                self._lines.append(line)
            elif self._lines:
                self._lines = []  # too large: count the rest, keep nothing

    def protocol_error(self, error: ProtocolError) -> None:
        """A line over the limit in force: ``500`` for a command, ``552`` in a message."""
        if not self.closing:
            if self._lines is None:
                self.reply(b"500 5.5.2 Line too long")
            else:
                self.reply(b"552 5.3.4 Message too big (a line over the size limit)")

    def _end_of_data(self) -> None:
        envelope, self.envelope = self.envelope, None
        lines, self._lines = self._lines or [], None
        if envelope is None:  # cannot happen: DATA needs an envelope
            raise AssertionError("DATA without an envelope")
        if self._size > self.max_message_size:
            self.reply(b"552 5.3.4 Message size exceeds fixed maximum message size")
        else:
            lines.append(b"")
            envelope.data = b"\r\n".join(lines)
            self.deliver(envelope)
            self.reply(b"250 2.0.0 OK: queued")
        self.set_terminator(b"\r\n")  # back to the command limit (last: it may raise)

    # ------------------------------------------------------------------ commands

    def _command(self, line: bytes) -> None:
        verb, _, argument = line.partition(b" ")
        handler = _COMMANDS.get(verb.upper())
        if handler is None:
            self.reply(b"500 5.5.2 Error: command not recognized")
        else:
            handler(self, argument.strip())

    def _helo(self, argument: bytes) -> None:
        if not argument:
            self.reply(b"501 5.5.4 Syntax: HELO hostname")
            return
        self.greeted, self.envelope = True, None
        self.reply(b"250 " + self.hostname)

    def _ehlo(self, argument: bytes) -> None:
        if not argument:
            self.reply(b"501 5.5.4 Syntax: EHLO hostname")
            return
        self.greeted, self.envelope = True, None
        size = b"%d" % self.max_message_size
        self.push(b"250-%b\r\n250-SIZE %b\r\n250-8BITMIME\r\n250 PIPELINING\r\n" % (
            self.hostname, size))  # fmt: skip

    def _mail(self, argument: bytes) -> None:
        if not self.greeted:
            self.reply(b"503 5.5.1 Error: send HELO/EHLO first")
            return
        if self.envelope is not None:
            self.reply(b"503 5.5.1 Error: nested MAIL command")
            return
        parsed = _path(argument, b"FROM:")
        if parsed is None:
            self.reply(b"501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        address, params = parsed
        for param in params:
            key, _, value = param.upper().partition(b"=")
            if key == b"SIZE" and value.isdigit():
                if int(value) > self.max_message_size:
                    self.reply(b"552 5.3.4 Message size exceeds fixed maximum message size")
                    return
            elif not (key == b"BODY" and value in (b"7BIT", b"8BITMIME")):
                self.reply(b"555 5.5.4 Unsupported MAIL FROM parameter: " + param)
                return
        self.envelope = Envelope(address)
        self.reply(b"250 2.1.0 OK")

    def _rcpt(self, argument: bytes) -> None:
        if self.envelope is None:
            self.reply(b"503 5.5.1 Error: need MAIL command")
            return
        parsed = _path(argument, b"TO:")
        if parsed is None or not parsed[0] or parsed[1]:
            self.reply(b"501 5.5.4 Syntax: RCPT TO:<address>")
        elif len(self.envelope.rcpt_tos) >= self.max_recipients:
            self.reply(b"452 4.5.3 Error: too many recipients")
        else:
            self.envelope.rcpt_tos.append(parsed[0])
            self.reply(b"250 2.1.5 OK")

    def _data(self, argument: bytes) -> None:
        if argument:
            self.reply(b"501 5.5.4 Syntax: DATA")
        elif self.envelope is None or not self.envelope.rcpt_tos:
            self.reply(b"503 5.5.1 Error: need RCPT command")
        else:
            self._lines, self._size = [], 0
            self.reply(b"354 End data with <CR><LF>.<CR><LF>")
            # A message line is bounded only by the message limit (plus one byte, so that a
            # line of exactly the limit is counted and refused with 552 after the ".").
            self.set_terminator(b"\r\n", max_frame_size=self.max_message_size + 1)

    def _rset(self, argument: bytes) -> None:
        self.envelope = None
        self.reply(b"250 2.0.0 OK")

    def _noop(self, argument: bytes) -> None:
        self.reply(b"250 2.0.0 OK")

    def _vrfy(self, argument: bytes) -> None:
        if not argument:
            self.reply(b"501 5.5.4 Syntax: VRFY address")
        else:
            self.reply(b"252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery")

    def _help(self, argument: bytes) -> None:
        self.reply(b"214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT")

    def _quit(self, argument: bytes) -> None:
        self.reply(b"221 2.0.0 Bye")
        self.close_when_done()


_COMMANDS: dict[bytes, Callable[[SMTPServer, bytes], None]] = {
    b"HELO": SMTPServer._helo,
    b"EHLO": SMTPServer._ehlo,
    b"MAIL": SMTPServer._mail,
    b"RCPT": SMTPServer._rcpt,
    b"DATA": SMTPServer._data,
    b"RSET": SMTPServer._rset,
    b"NOOP": SMTPServer._noop,
    b"VRFY": SMTPServer._vrfy,
    b"HELP": SMTPServer._help,
    b"QUIT": SMTPServer._quit,
}
