"""The pytest plugin of `sanschat.testing`, registered through the ``pytest11`` entry point.

With sanschat installed, every pytest run gets these fixtures without an import:

* ``chat_harness``: a factory, ``chat_harness(chat) -> ChatHarness``;
* ``chat_pair``: a factory, ``chat_pair(client, server, cut=None, lose_at=None) -> ChatPair``,
  already pumped once;
* ``chunking_invariant``: `sanschat.testing.assert_same_for_every_chunking`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from .._chat import Chat
from . import ChatHarness, ChatPair, assert_same_for_every_chunking


@pytest.fixture
def chat_harness() -> Callable[..., ChatHarness]:
    """A factory of `ChatHarness` objects: ``chat_harness(MyChat())``."""

    def make(chat: Chat, **options: Any) -> ChatHarness:
        return ChatHarness(chat, **options)

    return make


@pytest.fixture
def chat_pair() -> Callable[..., ChatPair]:
    """A factory of pumped `ChatPair` objects: ``chat_pair(Client(), Server(), cut=[1])``."""

    def make(
        client: Chat, server: Chat, *, cut: Sequence[int] | None = None, lose_at: int | None = None
    ) -> ChatPair:
        pair = ChatPair(client, server, cut=cut, lose_at=lose_at)
        pair.pump()
        return pair

    return make


@pytest.fixture
def chunking_invariant() -> Callable[..., object]:
    """`sanschat.testing.assert_same_for_every_chunking`, as a fixture."""
    return assert_same_for_every_chunking
