"""Real protocols on `sanschat.Chat`: SMTP, Redis RESP2 and memcached servers.

Each module is one worked example, readable in one sitting, whose point is a framing switch:
commands arrive as lines (the ``\\r\\n`` terminator), a payload announced by a command arrives
by its length (an int terminator, binary-safe), then the chat goes back to lines.  Every
server runs unchanged on the select, asyncio and trio drivers and is served by
``python -m sanschat serve smtp|resp|memcached``.

* `sanschat.protocols.smtp`: `SMTPServer`, RFC 5321 subset (``DATA`` ends with ``.``).
* `sanschat.protocols.resp`: `RESPServer`, the Redis protocol (RESP2) subset.
* `sanschat.protocols.memcached`: `MemcachedServer`, the memcached text protocol subset.
"""

from __future__ import annotations

from collections.abc import Callable

from .._chat import Chat

__all__ = ["PROTOCOLS", "factory"]

#: The protocol servers ``python -m sanschat serve`` knows, by name.
PROTOCOLS = ("smtp", "resp", "memcached")


def factory(name: str, max_frame_size: int | None = None) -> Callable[[], Chat]:
    """A connection factory for the protocol server *name* (one of `PROTOCOLS`).

    The connections of one factory share one store (mailbox, key space).  *max_frame_size*,
    if given, replaces the server's command line limit.

    Raises:
        ValueError: for another name.
    """
    from . import memcached, resp, smtp

    classes: dict[str, type[smtp.SMTPServer | resp.RESPServer | memcached.MemcachedServer]]
    classes = {
        "smtp": smtp.SMTPServer,
        "resp": resp.RESPServer,
        "memcached": memcached.MemcachedServer,
    }
    if name not in classes:
        raise ValueError(f"unknown protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
    cls = classes[name]
    if max_frame_size is not None:
        cls = type(cls.__name__, (cls,), {"max_frame_size": max_frame_size})
    return cls.factory()
