"""Fuzz each protocol server with its own token dictionary (`fuzz_tokens`), through
`sanschat.fuzz.check_protocol`: no error but `SanschatError`, the same answer however the
input is cut.  (CI also runs ``python -m sanschat.fuzz --target`` on each, see ``.ci/run``.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanschat import Chat
from sanschat.fuzz import check_protocol
from sanschat.protocols.memcached import MemcachedServer
from sanschat.protocols.resp import RESPServer
from sanschat.protocols.smtp import SMTPServer

SERVERS: list[type[SMTPServer | RESPServer | MemcachedServer]] = [
    SMTPServer,
    RESPServer,
    MemcachedServer,
]


def spliced(tokens: tuple[bytes, ...]) -> st.SearchStrategy[bytes]:
    """Inputs made of the tokens, spliced with short runs of arbitrary bytes and digits."""
    piece = st.one_of(
        st.sampled_from(tokens),
        st.binary(max_size=4),
        st.integers(-2, 2**64).map(lambda n: b"%d" % n),
    )
    return st.lists(piece, max_size=40).map(b"".join)


@pytest.mark.parametrize("server", SERVERS, ids=lambda cls: cls.__name__)
def test_every_server_has_tokens_with_its_terminator(server: type[Chat]) -> None:
    tokens = getattr(server, "fuzz_tokens")  # noqa: B009 - the fuzzer reads it by name
    assert b"\r\n" in tokens and all(isinstance(t, bytes) and t for t in tokens)


@pytest.mark.parametrize("server", SERVERS, ids=lambda cls: cls.__name__)
def test_fuzz_with_the_token_dictionary(
    server: type[SMTPServer | RESPServer | MemcachedServer],
) -> None:
    target = check_protocol(server)

    @settings(max_examples=150, deadline=None, database=None)
    @given(st.binary(min_size=8, max_size=8), spliced(server.fuzz_tokens))
    def fuzz(cuts: bytes, stream: bytes) -> None:
        target(cuts + stream)

    fuzz()
