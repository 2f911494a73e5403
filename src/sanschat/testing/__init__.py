"""`sanschat.testing`: unit-test protocols without sockets, and prove them cut-independent.

Theory of operation: a `Chat` does no I/O, so a test can play the driver.  `ChatHarness`
attaches a recording transport, feeds scripted chunks and drains what the chat pushed,
exactly as a driver would.  The peer's errors (`ProtocolError`) are the chat's own business
(`Chat.protocol_error`, then a graceful close, which the harness shows as `closed` with the
error reply in `sent`); any other exception is a bug in the handler, and the harness never
hides one: it propagates to the test with its traceback, unless the test asks to capture it.
`ChatPair` wires two chats back to back and pumps bytes both ways until quiet, cutting every
transfer into given sizes and optionally losing the connection at a chosen byte.
`every_chunking` enumerates the ways to cut a byte string, and `transcript` reduces one run
to what a peer can observe (the bytes sent back, whether the chat closed, its error), so that
`assert_same_for_every_chunking` can state the property that matters: a protocol's answer
does not depend on how TCP cut its input.  The hypothesis strategies live in
`sanschat.testing.strategies`, the pytest fixtures in `sanschat.testing.pytest_plugin`;
this module imports neither pytest nor hypothesis.
"""

from __future__ import annotations

import functools
import itertools
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .._chat import Chat

__all__ = [
    "ChatHarness",
    "ChatPair",
    "RecordingTransport",
    "Transcript",
    "assert_same_for_every_chunking",
    "every_chunking",
    "transcript",
]

class RecordingTransport:
    """A `sanschat.Transport` that records what the chat asked of it.

    ``call_soon_threadsafe`` callbacks are queued in `callbacks`; `ChatHarness` runs them.
    """

    def __init__(self, peername: Any = ("127.0.0.1", 50000)) -> None:
        self.peername = peername
        self.closed: bool = False
        """True once the chat called `Chat.close` (an abortive close): see also
        `ChatHarness.closed`, which counts a graceful close too."""
        self.output_ready_calls: int = 0
        self.idle_timeout: float | None = None
        self.callbacks: list[Callable[[], object]] = []
        self.reading_paused: bool = False
        """True between the chat's `pause_reading` and `resume_reading` calls."""

    def output_ready(self) -> None:
        """Count the call: the harness drains output itself."""
        self.output_ready_calls += 1

    def close(self) -> None:
        """Record an abortive close."""
        self.closed = True

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        """Queue *callback*; `ChatHarness.run_callbacks` runs it."""
        self.callbacks.append(callback)

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Record the idle timeout the chat asked for."""
        self.idle_timeout = seconds

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"`` is the address given at construction; anything else *default*."""
        return self.peername if name == "peername" else default

    def pause_reading(self) -> None:
        """Record that the chat paused its reading (`ChatHarness` then holds its input)."""
        self.reading_paused = True

    def resume_reading(self) -> None:
        """Record that the chat resumed its reading (`ChatHarness.feed` delivers what it held)."""
        self.reading_paused = False


class ChatHarness:
    """Drive one `Chat` like a driver would, with no socket: feed bytes, read what it sent.

    ::

        harness = ChatHarness(HTTPRequestHandler())
        reply = harness.feed(b"GET / HTTP/1.0\\r\\n\\r\\n")
        assert reply.startswith(b"HTTP/1.0 200 OK") and harness.closed

    The harness honours the driver side of backpressure: a read that leaves frames over
    the chat's `Chat.frame_budget` is dispatched in further rounds at once (`rounds` counts
    them); while the chat has paused its reading, chunks given to `feed` are held
    (`held`) and delivered by the first `feed` after it resumes.  With ``peer_reads``
    false the peer takes nothing: output stays queued (`Chat.output_full` can become
    true) until `drain` lets it read.

    A peer's protocol error (``max_frame_size`` exceeded, or a `ProtocolError` a hook
    raised) is answered by the chat (`Chat.protocol_error`) and closes it gracefully: the
    error reply and every earlier reply are in `sent`, and `closed` is true.  An exception
    that escapes the chat is a bug: the harness detaches the chat with it as a driver would
    (`error` holds it, `lost` is true, later feeds are ignored) and then re-raises it, so
    the test fails with the handler's own traceback.

    Args:
        chat: a fresh chat; the harness attaches it at once (``connection_made`` runs).
        catch: if true, an exception that escapes the chat is only recorded in `error`, not
            re-raised: for tests about failure itself.  False by default.
        peername: what ``chat.peername`` returns.
    """

    def __init__(
        self, chat: Chat, *, catch: bool = False, peername: Any = ("127.0.0.1", 50000)
    ) -> None:
        self.chat = chat
        self.transport: RecordingTransport = RecordingTransport(peername)
        self.catch = catch
        """Whether an exception from the chat is caught (and recorded in `error`)."""
        self.error: BaseException | None = None
        """The exception that escaped the chat, if any (re-raised unless ``catch=True``)."""
        self.sent: bytearray = bytearray()
        """Every byte the chat has sent so far."""
        self.lost: bool = False
        """True once the chat has been detached (closed, failed or `lose_connection`)."""
        self.peer_reads = True
        """Whether the peer reads at once what the chat sends; if false, see `drain`."""
        self.held: list[bytes] = []
        """Chunks fed while the chat's reading was paused, not yet delivered."""
        self.rounds: int = 0
        """Extra dispatch rounds the frame budget has needed so far (``feed(b"")`` calls)."""
        self._run(lambda: chat.attach(self.transport))

    def feed(self, *chunks: bytes) -> bytes:
        """Feed each chunk in turn as if read from the socket; return the bytes sent back.

        While the chat's reading is paused, the chunks are held; a later call delivers the
        held ones first, once reading resumed.  ``feed()`` with no chunk does what a driver
        does when a chat resumes: it dispatches the frames that waited, then the held chunks.
        """
        start = len(self.sent)
        if not chunks and not self.lost and not self.transport.reading_paused:
            self._run(functools.partial(self.chat.feed, b""))
        self.held.extend(chunks)
        while self.held and not self.lost and not self.transport.reading_paused:
            self._run(functools.partial(self.chat.feed, self.held.pop(0)))
        return bytes(self.sent[start:])

    def drain(self) -> bytes:
        """Let the peer read everything queued now (also when `peer_reads` is false)."""
        start = len(self.sent)
        if not self.lost:
            self._run(lambda: self._drain(force=True))
        return bytes(self.sent[start:])

    def feed_eof(self) -> bytes:
        """Signal the end of the peer's stream; return the bytes sent back in answer."""
        start = len(self.sent)
        if not self.lost:
            self._run(self.chat.feed_eof)
        return bytes(self.sent[start:])

    def run_callbacks(self) -> bytes:
        """Run callbacks queued with ``call_soon_threadsafe``; return the bytes sent."""
        start = len(self.sent)
        while self.transport.callbacks and not self.lost:
            self._run(self.transport.callbacks.pop(0))
        return bytes(self.sent[start:])

    def idle(self) -> bytes:
        """Act as if the chat's idle timeout expired; return the bytes sent."""
        start = len(self.sent)
        if not self.lost:
            self._run(self.chat.idle)
        return bytes(self.sent[start:])

    def lose_connection(self, exc: BaseException | None = None) -> None:
        """Detach the chat as a driver does when the connection breaks."""
        if not self.lost:
            self.lost = True
            self.chat.detach(exc)

    @property
    def closed(self) -> bool:
        """True if the chat closed: at once (`Chat.close`), after its output was sent
        (`Chat.close_when_done`, end of stream, a protocol error), or by failing."""
        return self.transport.closed or self.chat.channel.wants_close or self.error is not None

    def __repr__(self) -> str:
        error = "None" if self.error is None else f"{type(self.error).__name__}({self.error})"
        return (
            f"<ChatHarness {type(self.chat).__qualname__}: sent {len(self.sent)} bytes, "
            f"closed={self.closed}, lost={self.lost}, error={error}>"
        )

    def _run(self, step: Callable[[], object]) -> None:
        try:
            step()
            self._drain()
            chat = self.chat
            while chat.input_backlog and not self.transport.reading_paused and not self.closed:
                self.rounds += 1
                chat.feed(b"")
                self._drain()
        except Exception as error:
            self.error = error
            self.lose_connection(error)
            if not self.catch:
                raise
            return
        if self.closed:
            self.lose_connection(None)

    def _drain(self, force: bool = False) -> None:
        chat = self.chat
        channel = chat.channel
        if not (self.peer_reads or force):
            return
        while not self.transport.closed:
            chunk = channel.data_to_send()
            if not chunk:
                break
            self.sent += chunk
        if chat._drain_wanted:  # as a driver does after writing
            chat.written()


class ChatPair:
    """A client and a server `Chat` wired back to back in memory, for protocol tests.

    `pump` moves bytes both ways until neither side has anything left to send.  Transfers
    are cut into chunks of the sizes in *cut* (used in turn, cycling), so ``cut=[1]`` moves
    one byte at a time; ``None`` moves whatever is ready at once.  With *lose_at*, the
    connection breaks once that many bytes have gone from client to server: both sides are
    detached with `ConnectionResetError` and the rest is never delivered.  When one side
    closes, the other side sees end of stream.

    Args:
        client, server: fresh chats; both are attached at once (``connection_made``).
    """

    def __init__(
        self,
        client: Chat,
        server: Chat,
        *,
        cut: Sequence[int] | None = None,
        lose_at: int | None = None,
    ) -> None:
        if cut is not None and (not cut or min(cut) < 1):
            raise ValueError(f"cut sizes must be positive, got {list(cut)!r}")
        self.client: ChatHarness = ChatHarness(client, peername=("127.0.0.1", 443))
        self.server: ChatHarness = ChatHarness(server, peername=("127.0.0.1", 50000))
        self._sizes = itertools.cycle(cut) if cut is not None else None
        self.lose_at = lose_at
        self.client_to_server: bytearray = bytearray()
        """Every byte delivered from the client to the server so far."""
        self.server_to_client: bytearray = bytearray()
        """Every byte delivered from the server to the client so far."""
        self._pending = {id(self.client): bytearray(), id(self.server): bytearray()}
        self._eof_sent: set[int] = set()
        self._take(self.client)
        self._take(self.server)

    def pump(self, max_rounds: int = 100_000) -> None:
        """Move bytes both ways until quiet (or the connection is lost).

        Raises:
            RuntimeError: if the two sides still talk after *max_rounds* transfers.
        """
        for _ in range(max_rounds):
            moved = self._move(self.client, self.server, self.client_to_server)
            moved |= self._move(self.server, self.client, self.server_to_client)
            if not moved:
                return
        raise RuntimeError(f"the pair was still talking after {max_rounds} transfers")

    def __repr__(self) -> str:
        return (
            f"<ChatPair {type(self.client.chat).__qualname__} -> "
            f"{type(self.server.chat).__qualname__}: {len(self.client_to_server)} bytes sent, "
            f"{len(self.server_to_client)} bytes back>"
        )

    def _take(self, side: ChatHarness) -> None:
        self._pending[id(side)] += side.sent
        side.sent.clear()

    def _move(self, source: ChatHarness, sink: ChatHarness, record: bytearray) -> bool:
        self._take(source)
        pending = self._pending[id(source)]
        if not pending:
            if source.lost and not sink.lost and id(source) not in self._eof_sent:
                self._eof_sent.add(id(source))
                sink.feed_eof()
                self._take(sink)
                return True
            return False
        if sink.lost:
            pending.clear()
            return False
        size = next(self._sizes) if self._sizes is not None else len(pending)
        if source is self.client and self.lose_at is not None:
            room = self.lose_at - len(record)
            if room <= 0:
                pending.clear()
                self._break()
                return True
            size = min(size, room)
        chunk = bytes(pending[:size])
        del pending[:size]
        record += chunk
        sink.feed(chunk)
        self._take(sink)
        return True

    def _break(self) -> None:
        for side in (self.client, self.server):
            side.lose_connection(ConnectionResetError("connection lost by ChatPair(lose_at=...)"))


@dataclass(frozen=True, repr=False)
class Transcript:
    """What a peer can observe of one run of a chat: the bytes it sent back, whether it
    closed, and the type of the exception that escaped it (a bug), if any.

    Only the type: an error's message may say how far into the stream it was noticed,
    which depends on how the input was cut.
    """

    sent: bytes
    closed: bool
    error: type[BaseException] | None

    def __repr__(self) -> str:
        error = "None" if self.error is None else self.error.__qualname__
        return f"Transcript(sent={self.sent!r}, closed={self.closed}, error={error})"


def _run(chat: Chat, chunks: Iterable[bytes], eof: bool) -> tuple[Transcript, BaseException | None]:
    harness = ChatHarness(chat, catch=True)
    harness.feed(*chunks)
    if eof:
        harness.feed_eof()
    error = None if harness.error is None else type(harness.error)
    return Transcript(bytes(harness.sent), harness.closed, error), harness.error


def transcript(chat: Chat, chunks: Iterable[bytes], *, eof: bool = False) -> Transcript:
    """Feed *chunks* (then end of stream, if *eof*) to *chat*; return what a peer saw.

    An exception that escapes the chat is recorded in the transcript (`Transcript.error`),
    not raised: compare transcripts, or use `assert_same_for_every_chunking`, which fails
    on it.
    """
    return _run(chat, chunks, eof)[0]


def every_chunking(data: bytes, *, max_pieces: int | None = None) -> Iterator[list[bytes]]:
    """Yield every way to cut *data* into non-empty chunks, whole first.

    There are ``2 ** (len(data) - 1)`` of them; *max_pieces* keeps only cuttings into at
    most that many chunks (all of them with ``max_pieces=2`` is ``len(data)`` cuttings,
    enough to split every terminator).
    """
    if not data:
        yield []
        return
    positions = range(1, len(data))
    limit = len(data) if max_pieces is None else max_pieces
    for count in range(min(limit, len(data))):
        for cuts in itertools.combinations(positions, count):
            bounds = (0, *cuts, len(data))
            yield [data[a:b] for a, b in itertools.pairwise(bounds)]


def assert_same_for_every_chunking(
    make_chat: Callable[[], Chat],
    data: bytes,
    *,
    eof: bool = False,
    max_pieces: int | None = None,
    expected: Transcript | None = None,
) -> Transcript:
    """Assert that *make_chat*'s chats answer *data* the same however it is cut.

    The reference is *expected* if given, else the run on *data* whole.  For inputs longer
    than about 16 bytes, bound the work with *max_pieces* (or use the hypothesis helper
    `sanschat.testing.strategies.chunkings`).  Returns the reference transcript.

    A run in which an exception escapes the chat fails too, even if every cut fails the
    same way: a handler that always raises is broken, not cut-independent.  (A peer's
    `ProtocolError` does not escape: the chat answers it with `Chat.protocol_error`.)

    Raises:
        AssertionError: naming the first cutting whose transcript differs or whose run
            raised, with the expected and actual transcripts and the handler's exception
            and traceback (also chained as ``__cause__``).
    """
    reference = _reference(make_chat, data, eof, expected)
    for chunks in every_chunking(data, max_pieces=max_pieces):
        _check_cut(make_chat, chunks, eof, reference)
    return reference


def _reference(
    make_chat: Callable[[], Chat], data: bytes, eof: bool, expected: Transcript | None
) -> Transcript:
    """The transcript every cut must give: *expected*, else the run on *data* whole (which
    fails the check if the handler raised there)."""
    if expected is not None:
        return expected
    reference, failure = _run(make_chat(), [data], eof)
    if failure is not None:
        _fail("the handler raised on the whole input", [data], reference, reference, failure)
    return reference


def _check_cut(
    make_chat: Callable[[], Chat], chunks: list[bytes], eof: bool, reference: Transcript
) -> None:
    """Fail unless a fresh chat fed *chunks* answers *reference*, raising nothing."""
    got, failure = _run(make_chat(), chunks, eof)
    if failure is not None:
        _fail("the handler raised", chunks, got, reference, failure)
    if got != reference:
        _fail("the answer depends on how the input is cut", chunks, got, reference, None)


def _fail(
    what: str,
    chunks: list[bytes],
    got: Transcript,
    expected: Transcript,
    error: BaseException | None,
) -> None:
    """Raise the `AssertionError` of `assert_same_for_every_chunking`."""
    message = f"{what}:\n  chunks:   {chunks!r}\n  got:      {got!r}\n  expected: {expected!r}"
    if error is not None:
        message += "\n  the handler's exception:\n" + "".join(
            "    " + line for line in "".join(traceback.format_exception(error)).splitlines(True)
        )
    raise AssertionError(message) from error
