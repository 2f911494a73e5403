"""sanschat: asynchat's terminator framing and producer queues as a sans-I/O state machine.

The public surface is re-exported here; the implementation lives in private modules.
"""

from __future__ import annotations

from ._channel import DEFAULT_SEND_SIZE as DEFAULT_SEND_SIZE
from ._channel import Channel as Channel
from ._channel import Terminator as Terminator
from ._channel import TerminatorLike as TerminatorLike
from ._chat import Chat as Chat
from ._chat import Transport as Transport
from ._errors import FrameTooLarge as FrameTooLarge
from ._errors import ProtocolError as ProtocolError
from ._errors import SanschatError as SanschatError
from ._events import COMPILED as COMPILED
from ._events import Data as Data
from ._events import EndOfStream as EndOfStream
from ._events import Event as Event
from ._events import TerminatorFound as TerminatorFound
from ._producers import IterableProducer as IterableProducer
from ._producers import Producer as Producer
from ._producers import ProducerLike as ProducerLike

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

__all__ = [
    "COMPILED",
    "DEFAULT_SEND_SIZE",
    "Channel",
    "Chat",
    "Data",
    "EndOfStream",
    "Event",
    "FrameTooLarge",
    "IterableProducer",
    "Producer",
    "ProducerLike",
    "ProtocolError",
    "SanschatError",
    "Terminator",
    "TerminatorFound",
    "TerminatorLike",
    "Transport",
]

# Public classes say where users import them from: reprs, pickles and the docs name
# sanschat.Chat, not sanschat._chat.Chat.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type):
        _value.__module__ = __name__
del _name, _value
