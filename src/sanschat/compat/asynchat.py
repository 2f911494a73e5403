r"""Drop-in replacement for the ``asynchat`` module of Python 3.11 (removed in 3.12).

Theory of operation
-------------------
`async_chat` is a `sanschat.compat.asyncore.dispatcher` for command/response protocols.

Input.  Each chunk that ``recv`` returns goes into the chat's own `sanschat.Channel`, and
the channel's lazy event iterator cuts it into frames: ``Data`` events become calls of
``collect_incoming_data`` and ``TerminatorFound`` a call of ``found_terminator``.  The
framing rules are the core's; this module only translates asynchat's terminators: bytes
stay bytes, an int above 0 is a byte count, and any false value (``None``, ``0``, ``b""``)
means "collect everything", as in asynchat.  Before each event the chat asks
``get_terminator()`` and, if the answer changed, sets it on the channel, so a terminator
changed by `async_chat.set_terminator`, by assigning ``self.terminator`` or by an
overridden ``get_terminator`` applies from the next unread byte, as in asynchat.  While an
int terminator counts down, ``terminator`` is the number of bytes still wanted; once its
frame has ended it is ``0`` (collect everything) until set again, as in asynchat.

The channel holds back only a suffix that could still start the terminator, and hands it
over when it is decided; at end of stream, before ``handle_close``, those bytes go to
``collect_incoming_data`` (asynchat dropped them).  Only then: if the end of stream is read
by a ``handle_read`` of the program's own (an FTP data channel reading its socket itself,
often with no terminator ever set), or nothing is left, ``handle_close`` is all that runs,
as in 3.11.  The input buffer is never re-sliced per
frame, so many frames in one chunk cost linear time (asynchat's cost was quadratic).

Output keeps asynchat's queue, ``producer_fifo``: a deque of bytes-like chunks, producers
(objects with ``more()``) and ``None`` (close here), which code reads and edits directly.
`async_chat.initiate_send` makes one ``send`` per call from the head of the queue, as
asynchat did, but keeps the unsent rest of a large chunk as a ``memoryview`` (no copy per
partial send), copies mutable buffers when they are pushed, and raises a `TypeError` that
names the culprit for a ``str`` where bytes are needed (unless ``use_encoding`` is set).

The deliberate differences from Python 3.11 are listed in the README's migration section.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any, Final

from .._channel import Channel
from .._events import Data, TerminatorFound
from . import asyncore

__all__ = ["async_chat", "find_prefix_at_end", "simple_producer"]


class _Unset(enum.Enum):
    UNSET = "no terminator applied yet"

    def __repr__(self) -> str:
        return "<no terminator applied yet>"


_UNSET: Final = _Unset.UNSET
_BYTES_LIKE = (bytes, bytearray, memoryview)


def _describe(value: object) -> str:
    return f"{type(value).__name__}: {value!r:.60}"


def _queue_item(data: bytes | bytearray | memoryview) -> bytes | memoryview:
    """*data* as it waits in ``producer_fifo``: bytes and read-only byte views as they are,
    mutable buffers copied (so changing them later changes nothing)."""
    if type(data) is bytes:
        return data
    if isinstance(data, memoryview) and data.readonly:
        if data.format == "B" and data.ndim == 1 and data.c_contiguous:
            return data
        if data.c_contiguous:
            return data.cast("B")  # lengths and slices must count bytes, as send() does
    return bytes(data)


class async_chat(asyncore.dispatcher):
    """An abstract `asyncore.dispatcher` for chat-style (command/response) protocols.

    Subclass it and override `collect_incoming_data` and `found_terminator`; set the
    terminator with `set_terminator`.  Send with `push` and `push_with_producer`; end with
    `close_when_done`.
    """

    ac_in_buffer_size = 65536
    """Bytes asked of ``recv`` per read event."""
    ac_out_buffer_size = 65536
    """Most bytes given to ``send`` per call; `push` splits larger data into such chunks."""
    use_encoding = 0
    """If true, ``str`` terminators, and ``str`` data from producers, are encoded with
    `encoding`; if false (the default, as a str there is usually a bug) they raise
    `TypeError`.  `push` takes bytes only, either way, as in Python 3.11."""
    encoding = "latin-1"
    """The codec `use_encoding` uses."""

    terminator: Any
    """The terminator in force, as set (see `set_terminator`); for an int, the bytes still
    wanted.  Not set until `set_terminator` is called (or a subclass defines it)."""

    # Framing state, on the class so that a subclass whose __init__ skips ours still works.
    __framing: Channel | None = None
    __synced: Any = _UNSET  # the terminator value the channel embodies now
    __term_version = 0  # bumped by every __apply: tells a callback's own change apart
    __pending = b""  # bytes handed out through ac_in_buffer, to be framed first
    __at_eof = False
    __reading = False  # inside the recv of async_chat.handle_read: an EOF there is ours
    __moves = 0  # bumped when ac_in_buffer takes unread input out of the channel
    __held = 0  # bytes the channel holds between reads (counted here: asking it costs more)

    def __init__(self, sock: Any = None, map: dict[int, Any] | None = None) -> None:
        self.incoming: list[bytes] = []
        """Where `_collect_incoming_data` keeps frame data for `_get_data`."""
        self.producer_fifo: deque[Any] = deque()
        """The output queue: bytes-like chunks, producers and ``None`` (close here)."""
        self.__framing = Channel()
        asyncore.dispatcher.__init__(self, sock, map)

    # ------------------------------------------------------------------ hooks

    def collect_incoming_data(self, data: bytes) -> None:
        """Called with bytes of the current frame as they arrive (never empty).

        Default: raise `NotImplementedError`; override it.
        """
        raise NotImplementedError("must be implemented in subclass")

    def _collect_incoming_data(self, data: bytes) -> None:
        """A ready-made `collect_incoming_data`: append *data* to `incoming`."""
        self.incoming.append(data)

    def _get_data(self) -> bytes:
        """Return everything in `incoming` joined, and empty it."""
        data = b"".join(self.incoming)
        del self.incoming[:]
        return data

    def found_terminator(self) -> None:
        """Called when the current frame has ended.  Default: raise `NotImplementedError`."""
        raise NotImplementedError("must be implemented in subclass")

    # ------------------------------------------------------------------ terminator

    def set_terminator(self, term: Any) -> None:
        """Set how the next frame ends, from the next unread byte on.

        *term* is non-empty bytes (the frame ends where they occur; they stay in force), an
        int (that many bytes; then `terminator` becomes ``0``), or a false value such as
        ``None`` (every byte is data, no frame ends).  A ``str`` is encoded with `encoding`
        if `use_encoding` is set.  Beyond Python 3.11, a tuple of bytes is accepted: the
        earliest alternative to match ends the frame (see `sanschat.Channel`).

        Raises:
            ValueError: for a negative int.
            TypeError: for a ``str`` while `use_encoding` is off, or a value that is no
                terminator (Python 3.11 failed later, inside ``handle_read``).
        """
        if isinstance(term, str) and self.use_encoding:
            term = term.encode(self.encoding)
        elif isinstance(term, int) and term < 0:
            raise ValueError(f"the number of received bytes must be positive, not {term}")
        self.__apply(term)
        self.terminator = term

    def get_terminator(self) -> Any:
        """Return `terminator`: for an int terminator, the bytes still wanted.

        Raises:
            AttributeError: if no terminator was ever set, as in Python 3.11.
        """
        return self.terminator

    def __framing_channel(self) -> Channel:
        channel = self.__framing
        if channel is None:
            channel = self.__framing = Channel()
        return channel

    def __apply(self, term: Any) -> None:
        """Make the channel frame by asynchat terminator *term*."""
        if not term:
            value: Any = None
        elif isinstance(term, str):
            if not self.use_encoding:
                raise TypeError(
                    f"terminator must be bytes, not str: {term!r:.60} (pass "
                    f"{term.encode('utf-8', 'backslashreplace')!r:.60}, or set use_encoding)"
                )
            value = term.encode(self.encoding)
        elif type(term) is bool:
            value = 1  # asynchat took True for the int 1
        else:
            value = term
        self.__framing_channel().set_terminator(value)
        self.__synced = term
        self.__term_version += 1

    # ------------------------------------------------------------------ input

    @property
    def ac_in_buffer(self) -> bytes:
        """The bytes received and not yet delivered (a suffix that may start the terminator,
        or, inside `found_terminator`, whatever follows the frame).

        Assigning replaces them: ``self.ac_in_buffer = b""`` drops unread input.
        """
        channel = self.__framing
        taken = channel.take_unframed() if channel is not None else b""
        if taken:
            self.__moves += 1
            self.__held = 0
            # They go back in front of the next bytes framed, so reading this loses nothing.
            self.__pending = taken + self.__pending
        return self.__pending

    @ac_in_buffer.setter
    def ac_in_buffer(self, value: Any) -> None:
        channel = self.__framing
        if channel is not None and channel.take_unframed():
            self.__moves += 1
            self.__held = 0
        self.__pending = self.__to_bytes(value, "ac_in_buffer") if value else b""

    def __to_bytes(self, value: Any, what: str) -> bytes:
        if isinstance(value, _BYTES_LIKE):
            return bytes(value)
        if isinstance(value, str):
            if self.use_encoding:
                return value.encode(self.encoding)
            raise TypeError(
                f"{what} must be bytes, not str: {value!r:.60} (set use_encoding to encode "
                f"str with {self.encoding!r})"
            )
        raise TypeError(f"{what} must be bytes, not {_describe(value)}")

    def handle_read(self) -> None:
        """Read up to `ac_in_buffer_size` bytes and frame them (see the module docstring).

        ``BlockingIOError`` from ``recv`` is ignored (nothing to read after all); any other
        ``OSError`` goes to ``handle_error``.
        """
        self.__reading = True
        try:
            data = self.recv(self.ac_in_buffer_size)
        except BlockingIOError:
            return
        except OSError:
            self.handle_error()
            return
        finally:
            self.__reading = False
        if type(data) is not bytes:
            data = self.__to_bytes(data, "the data recv() returned")
        self.__receive(data)

    def __receive(self, data: bytes) -> None:
        if self.__at_eof:
            if not data:
                return
            # Bytes after the end of stream: the program gave this chat a new connection
            # (set_socket, or create_socket and connect again).  Frame them as a new
            # stream, under the terminator in force.
            self.__at_eof = False
            self.__framing = Channel()
            self.__synced = _UNSET
            self.__held = 0
        if self.__pending:
            data, self.__pending = self.__pending + data, b""
        if not data:
            return
        channel = self.__framing_channel()
        while True:
            self.__deliver(channel, channel.receive(data), self.__held + len(data))
            if channel is not self.__framing or not self.__pending:
                return
            # ac_in_buffer was read or assigned inside a callback: frame what it holds now.
            data, self.__pending = self.__pending, b""

    def __deliver(self, channel: Channel, events: Any, left: int) -> None:
        """Run the callbacks for *events*, which frame *left* bytes, until they end or the
        buffers are discarded; then `__held` is what the channel holds back.

        ``get_terminator()`` is asked where asynchat's loop asked it: before framing input
        that is left, at the start and after each frame's end; not between a frame's
        last piece and its end, and not once the input is used up (so a handler may tear
        down what its ``get_terminator`` reads after the last frame).
        """
        get_terminator = self.get_terminator
        for_next = next
        moves = self.__moves
        try:
            while True:
                if left:
                    if moves != self.__moves:  # ac_in_buffer took the input: framed later
                        return
                    term = get_terminator()
                    synced = self.__synced
                    if term is not synced and (type(term) is not type(synced) or term != synced):
                        self.__apply(term)
                event = for_next(events, None)
                while type(event) is Data:
                    data = event.data
                    left -= len(data)
                    synced = self.__synced
                    version = self.__term_version
                    self.collect_incoming_data(data)
                    if type(synced) is int and synced > 0 and version == self.__term_version:
                        # an int terminator counts down, as asynchat's attribute did
                        remaining = synced - len(data)
                        if getattr(self, "terminator", None) == synced:
                            self.terminator = remaining
                        if channel is self.__framing:
                            self.__synced = remaining
                    if channel is not self.__framing:
                        # discard_buffers() was called.  As in asynchat, the end of this
                        # frame is still reported if it had been matched; the rest is dropped.
                        if type(for_next(events, None)) is TerminatorFound:
                            self.found_terminator()
                        return
                    # No terminator is asked here: the frame's end, if it was found, comes
                    # next whatever is set now (asynchat asked once per frame).
                    event = for_next(events, None)
                if event is None:
                    return
                if type(event) is TerminatorFound:
                    matched = event.terminator
                    if type(matched) is bytes:  # an int's count was delivered as Data
                        left -= len(matched)
                    self.found_terminator()
                    if channel is not self.__framing:
                        return
        finally:
            if channel is self.__framing:
                self.__held = left if moves == self.__moves else 0

    def _sanschat_end_of_stream(self) -> None:
        """The peer closed: deliver what the channel held back, before ``handle_close``.

        Only when `handle_read` itself read the end of stream, and only if input is left:
        a chat that reads its socket in a ``handle_read`` of its own (an FTP data channel)
        or never got a byte gets just ``handle_close``, as in Python 3.11, which calls
        nothing else there (not even ``get_terminator``, which may be unset).
        """
        if self.__at_eof or not self.__reading:
            return
        if not self.__pending and not self.__held:
            return
        self.__receive(b"")
        self.__at_eof = True
        channel = self.__framing_channel()
        self.__deliver(channel, channel.receive_eof(), self.__held)

    # ------------------------------------------------------------------ events

    def handle_write(self) -> None:
        """The socket can take data: `initiate_send`."""
        self.initiate_send()

    def handle_close(self) -> None:
        """The connection is over: ``close``."""
        self.close()

    def readable(self) -> bool:
        """Always true: input is always read (and framed)."""
        return True

    def writable(self) -> Any:
        """True while ``producer_fifo`` holds anything, or the socket is not connected yet."""
        return self.producer_fifo or (not self.connected)

    # ------------------------------------------------------------------ output

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Queue *data* and send what the socket takes now.

        Data longer than `ac_out_buffer_size` is queued in chunks of that size.  A
        ``bytearray`` or writable ``memoryview`` is copied (Python 3.11 kept a reference,
        so changing it before it was sent changed what was sent).

        Raises:
            TypeError: if *data* is not bytes, bytearray or memoryview (a ``str`` too,
                whatever `use_encoding` says, as in Python 3.11).
        """
        if not isinstance(data, _BYTES_LIKE):
            hint = " (encode it first, e.g. data.encode('utf-8'))" if isinstance(data, str) else ""
            raise TypeError(
                f"push() takes bytes, bytearray or memoryview, not {_describe(data)}{hint}"
            )
        item = _queue_item(data)
        size = self.ac_out_buffer_size
        if len(item) > size:
            self.producer_fifo.extend(item[i : i + size] for i in range(0, len(item), size))
        else:
            self.producer_fifo.append(item)
        self.initiate_send()
        self.__wake_runner()

    def push_with_producer(self, producer: Any) -> None:
        """Queue *producer* (an object with ``more()``, or bytes) and send what can be sent.

        ``more()`` returns the next bytes, and something false (``b""``) once exhausted.
        The producer is asked only when its bytes are about to be sent.

        Raises:
            TypeError: for a ``str`` while `use_encoding` is off (Python 3.11 failed
                later, inside ``send``).
        """
        if isinstance(producer, str) and not self.use_encoding:
            raise TypeError(
                f"push_with_producer() takes a producer or bytes, not str: {producer!r:.60} "
                "(encode it first, or set use_encoding)"
            )
        self.producer_fifo.append(producer)
        self.initiate_send()
        self.__wake_runner()

    def close_when_done(self) -> None:
        """Queue ``None``: once everything queued before it is sent, ``handle_close``.

        Anything pushed afterwards is never sent, as in Python 3.11.
        """
        self.producer_fifo.append(None)
        self.__wake_runner()

    def __wake_runner(self) -> None:
        """Tell an asyncio runner of this chat's map that ``writable()`` may have changed.

        A chat whose ``__init__`` never ran ``dispatcher.__init__`` has no map; its `push`
        works all the same, as in Python 3.11.
        """
        map = getattr(self, "_map", None)
        if map is not None:
            asyncore._wake(map)

    def initiate_send(self) -> None:
        """Make one ``send`` from the head of ``producer_fifo``, if connected.

        Empty chunks and exhausted producers are dropped on the way; a producer's bytes are
        queued in front of it; reaching ``None`` calls ``handle_close``.  An ``OSError``
        from ``send`` goes to ``handle_error``.

        Raises:
            TypeError: naming the producer, if its ``more()`` returns something that is not
                bytes-like (a ``str`` is encoded instead if `use_encoding` is set), or if
                the queue holds something that is neither bytes-like nor a producer.
        """
        fifo = self.producer_fifo
        while fifo and self.connected:
            first = fifo[0]
            if not first:
                fifo.popleft()
                if first is None:
                    self.handle_close()
                    return
                continue
            size = self.ac_out_buffer_size
            if isinstance(first, _BYTES_LIKE):
                data = first[:size] if len(first) > size else first
            elif hasattr(first, "more"):
                chunk = first.more()
                if chunk:
                    fifo.appendleft(self.__checked_chunk(first, chunk))
                else:
                    fifo.popleft()
                continue
            else:
                fifo[0] = self.__as_chunk(first)
                continue
            try:
                sent = self.send(data)
            except OSError:
                self.handle_error()
                return
            if sent and fifo and fifo[0] is first:
                if sent < len(data) or len(first) > size:
                    fifo[0] = _rest(first, sent, size)
                else:
                    fifo.popleft()
            return

    def __checked_chunk(self, producer: Any, chunk: Any) -> bytes | memoryview:
        if isinstance(chunk, _BYTES_LIKE):
            return _queue_item(chunk)
        if isinstance(chunk, str) and self.use_encoding:
            return chunk.encode(self.encoding)
        hint = " (return bytes, or set use_encoding)" if isinstance(chunk, str) else ""
        raise TypeError(
            f"producer {producer!r:.80} returned {_describe(chunk)} from more(), expected "
            f"bytes{hint}"
        )

    def __as_chunk(self, item: Any) -> bytes | memoryview:
        """A queue item that is neither bytes-like nor a producer, as bytes to send."""
        if isinstance(item, str):
            return self.__to_bytes(item, "a str in producer_fifo")
        try:
            return _queue_item(memoryview(item))  # mmap, array.array, ...
        except TypeError:
            raise TypeError(
                "producer_fifo holds something neither bytes-like nor a producer (an object "
                f"with more()): {_describe(item)}"
            ) from None

    def discard_buffers(self) -> None:
        """Drop unread input, `incoming` and everything queued to send.  Emergencies only.

        Called from a callback, it also ends the framing of the chunk being read.
        """
        self.__framing = Channel()
        self.__synced = _UNSET  # the terminator is applied to the new channel at next read
        self.__held = 0
        self.__pending = b""
        del self.incoming[:]
        self.producer_fifo.clear()


def _rest(first: Any, sent: int, size: int) -> Any:
    """The unsent part of queue item *first* after *sent* bytes went out."""
    if isinstance(first, memoryview):
        return first[sent:]
    if len(first) > size:
        # A large chunk: slice a view, so that each partial send costs no copy of the rest.
        return memoryview(first if isinstance(first, bytes) else bytes(first))[sent:]
    return first[sent:]


class simple_producer:
    """A producer handing out *data* in pieces of at most *buffer_size* bytes.

    ``more()`` returns the next piece, then ``b""`` once everything was handed out.
    ``data`` is what has not been handed out yet.
    """

    def __init__(self, data: Any, buffer_size: int = 512) -> None:
        self._data = data
        self._offset = 0
        self.buffer_size = buffer_size
        """The largest piece `more` returns."""

    @property
    def data(self) -> Any:
        """What `more` has not returned yet."""
        if self._offset:
            self._data = self._data[self._offset :]
            self._offset = 0
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = value
        self._offset = 0

    def more(self) -> Any:
        """Return the next piece of at most `buffer_size` bytes, or ``b""`` at the end."""
        data, start = self._data, self._offset
        end = start + self.buffer_size
        if len(data) - start > self.buffer_size:
            self._offset = end
            return data[start:end]
        piece = data[start:] if start else data
        self._data, self._offset = b"", 0
        return piece


def find_prefix_at_end(haystack: Any, needle: Any) -> int:
    """Return the length of the longest proper prefix of *needle* that *haystack* ends with.

    For example ``find_prefix_at_end(b"qwerty\\r", b"\\r\\n") == 1`` and 0 where no prefix
    matches.  The whole of *needle* is never tried; an empty *needle* gives -1, as in
    Python 3.11.
    """
    for size in range(len(needle) - 1, 0, -1):
        if haystack.endswith(needle[:size]):
            return size
    return 0 if len(needle) else -1
