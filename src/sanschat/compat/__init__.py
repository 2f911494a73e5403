"""Drop-in replacements for the ``asynchat`` and ``asyncore`` modules of Python 3.11.

Python 3.12 removed both modules.  Code written for them runs unchanged on later versions
after one import line changes::

    import asynchat, asyncore                        # before
    from sanschat.compat import asynchat, asyncore   # after

`sanschat.compat.asyncore` is the event loop and the ``dispatcher`` classes;
`sanschat.compat.asynchat` is ``async_chat``, whose input framing runs through
`sanschat.Channel`, the one implementation of the framing rules in this library.  Every
deliberate difference from the standard library is listed in the migration guide
(docs/howto/migrate.md) and in the docstring concerned.
`sanschat.compat.asyncore.loop_asyncio` runs the same dispatchers on an asyncio event loop
instead.

Nothing else in sanschat imports this package.
"""

from __future__ import annotations

from . import asynchat as asynchat
from . import asyncore as asyncore

__all__ = ["asynchat", "asyncore"]
