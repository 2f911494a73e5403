"""The errors sanschat raises on purpose.

Theory of operation: every error the library raises deliberately derives from
`SanschatError`, so ``except SanschatError`` catches exactly those.  Errors that are the
*peer's* fault (what arrived on the wire breaks a rule the protocol set) derive from
`ProtocolError`; a server catches that branch, closes the connection and carries on.
Mistakes of the *programmer* (a ``str`` given as a terminator, ``push(10)``) are not in this
tree: they are plain `TypeError` / `ValueError`, raised by the call that was wrong.
"""

from __future__ import annotations

__all__ = ["FrameTooLarge", "ProtocolError", "SanschatError"]


class SanschatError(Exception):
    """Root of every error that sanschat raises on purpose."""


class ProtocolError(SanschatError):
    """The peer sent something the protocol does not allow.

    The connection that produced it should normally be closed; other connections are
    unaffected.
    """


class FrameTooLarge(ProtocolError):
    """A frame grew past the channel's ``max_frame_size``.

    Raised by the iterator returned from `Channel.receive`, `Channel.frames` or
    `Channel.receive_eof` at the point where the frame is first known to be too large:
    before any byte beyond the limit is delivered.  Nothing is dropped: the bytes not yet
    delivered stay in the channel (see `Channel.take_unframed`), and `buffered` tells how
    many there are, so that a caller can report them as lost when it closes the connection.
    Calling the iterator again raises the same error until the terminator or the limit is
    changed.

    Attributes:
        limit: the ``max_frame_size`` in force.
        size: bytes of the frame known so far (always greater than *limit*).
        buffered: bytes received but not delivered when the error was raised.
    """

    def __init__(self, limit: int, size: int, buffered: int) -> None:
        super().__init__(
            f"frame of at least {size} bytes exceeds max_frame_size={limit} "
            f"({buffered} received bytes not delivered)"
        )
        self.limit = limit
        self.size = size
        self.buffered = buffered
