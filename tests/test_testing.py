"""`sanschat.testing`: the harness, the pair, the chunking helpers and the pytest plugin."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from sanschat import Chat, ProtocolError
from sanschat.examples import Echo, HTTPRequestHandler
from sanschat.testing import (
    ChatHarness,
    ChatPair,
    Transcript,
    assert_same_for_every_chunking,
    every_chunking,
    transcript,
)

POST = b"POST /f HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello"
OK_HELLO = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


class NaiveLines(Chat):
    """The classic bug: treats every recv() as a whole line (what tests on localhost hide)."""

    def collect_incoming_data(self, data: bytes) -> None:
        if data.endswith(b"\n"):
            self.push(b"line: " + data)

    def found_terminator(self) -> None:
        pass


class Client(Chat):
    """Sends a request on connect; keeps the reply."""

    terminator = None

    def __init__(self, request: bytes) -> None:
        super().__init__()
        self.request = request
        self.reply = bytearray()
        self.lost: list[BaseException | None] = []

    def connection_made(self) -> None:
        self.push(self.request)

    def collect_incoming_data(self, data: bytes) -> None:
        self.reply += data

    def found_terminator(self) -> None:
        pass

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


# ---------------------------------------------------------------- ChatHarness


def test_harness_feeds_chunks_and_returns_what_was_sent() -> None:
    harness = ChatHarness(Echo())
    assert harness.feed(b"a\r", b"\nb\r\n") == b"a\r\nb\r\n"
    assert not harness.closed


def test_harness_sees_close_when_done_after_the_reply() -> None:
    harness = ChatHarness(HTTPRequestHandler())
    assert harness.feed(POST) == OK_HELLO
    assert harness.closed and harness.lost


class _Broken(Chat):
    """A handler with a bug: a KeyError on every frame."""

    terminator = b"\n"

    def found_frame(self, frame: bytes) -> None:
        {}[frame]


def test_a_handler_error_propagates_with_its_traceback() -> None:
    harness = ChatHarness(_Broken())
    with pytest.raises(KeyError) as info:
        harness.feed(b"z\n")
    assert info.traceback[-1].name == "found_frame"  # the handler's own frame, not the harness's
    assert harness.error is info.value and harness.lost and harness.closed
    assert harness.feed(b"ignored\n") == b""  # detached, as a driver would


def test_a_handler_error_can_be_captured_on_request() -> None:
    broken = ChatHarness(Chat(), catch=True)
    broken.chat.set_terminator(b"\n")
    broken.feed(b"z\n", b"ignored\n")
    assert isinstance(broken.error, NotImplementedError)
    assert broken.lost


def test_a_protocol_error_closes_gracefully_in_the_harness() -> None:
    class Limited(Echo):
        max_frame_size = 4

    harness = ChatHarness(Limited())
    assert harness.feed(b"ok\r\n" + b"x" * 10) == b"ok\r\n"  # the earlier reply is kept
    assert harness.closed and harness.lost and harness.error is None


def test_reprs_name_public_things() -> None:
    harness = ChatHarness(_Broken(), catch=True)
    harness.feed(b"k\n")
    assert repr(harness) == (
        "<ChatHarness _Broken: sent 0 bytes, closed=True, lost=True, error=KeyError(b'k')>"
    )
    pair = ChatPair(Echo(), Echo())
    assert repr(pair) == "<ChatPair Echo -> Echo: 0 bytes sent, 0 bytes back>"
    assert repr(transcript(_Broken(), [b"k\n"])) == (
        "Transcript(sent=b'', closed=True, error=KeyError)"
    )


def test_harness_runs_threadsafe_callbacks_and_idle() -> None:
    harness = ChatHarness(Echo())
    harness.chat.push_threadsafe(b"from a thread")
    assert harness.run_callbacks() == b"from a thread"
    harness.idle()
    assert harness.transport.closed and harness.lost


def test_harness_feed_eof_flushes_and_closes() -> None:
    harness = ChatHarness(Echo())
    assert harness.feed(b"partial") == b""
    assert harness.feed_eof() == b""
    assert harness.closed


# ---------------------------------------------------------------- ChatPair


@pytest.mark.parametrize("cut", [None, [1], [2, 3], [7]])
def test_pair_carries_a_request_and_its_reply_however_cut(cut: list[int] | None) -> None:
    client = Client(POST)
    pair = ChatPair(client, HTTPRequestHandler(), cut=cut)
    pair.pump()
    assert bytes(client.reply) == OK_HELLO
    assert bytes(pair.client_to_server) == POST
    assert client.lost == [None]  # the server closed; the client saw end of stream


def test_pair_loses_the_connection_at_the_chosen_byte() -> None:
    client = Client(POST)
    pair = ChatPair(client, HTTPRequestHandler(), cut=[4], lose_at=10)
    pair.pump()
    assert bytes(pair.client_to_server) == POST[:10]
    assert client.reply == b""
    assert isinstance(client.lost[0], ConnectionResetError)


def test_pair_refuses_non_positive_cut_sizes() -> None:
    with pytest.raises(ValueError, match="positive"):
        ChatPair(Echo(), Echo(), cut=[0])


def test_pair_stops_a_conversation_that_never_ends() -> None:
    class Ping(Echo):
        def connection_made(self) -> None:
            self.push(b"ping\r\n")

    pair = ChatPair(Ping(), Ping())
    with pytest.raises(RuntimeError, match="still talking"):
        pair.pump(max_rounds=50)


# ---------------------------------------------------------------- chunkings


def test_every_chunking_enumerates_all_cuttings_whole_first() -> None:
    cuttings = list(every_chunking(b"abcd"))
    assert cuttings[0] == [b"abcd"]
    assert len(cuttings) == 8
    assert all(b"".join(c) == b"abcd" for c in cuttings)
    assert len({tuple(c) for c in cuttings}) == 8


def test_every_chunking_can_bound_the_number_of_pieces() -> None:
    assert len(list(every_chunking(b"abcdef", max_pieces=2))) == 6


def test_transcript_records_what_a_peer_observes() -> None:
    assert transcript(HTTPRequestHandler(), [POST]) == Transcript(OK_HELLO, True, None)


def test_a_correct_protocol_passes_every_chunking_in_a_few_lines() -> None:
    reference = assert_same_for_every_chunking(HTTPRequestHandler, POST, max_pieces=3)
    assert reference.sent == OK_HELLO


def test_every_chunking_catches_a_protocol_that_trusts_recv_boundaries() -> None:
    with pytest.raises(AssertionError, match="depends on how the input is cut"):
        assert_same_for_every_chunking(NaiveLines, b"hello\n")


# ---------------------------------------------------------------- hypothesis helpers


def test_chunkings_strategy_joins_to_the_input_and_shrinks_to_whole() -> None:
    from hypothesis import find

    from sanschat.testing.strategies import chunkings

    assert find(chunkings(b"abcdef"), lambda c: True) == [b"abcdef"]
    smallest_split = find(chunkings(b"abcdef"), lambda c: len(c) > 1)
    assert b"".join(smallest_split) == b"abcdef" and len(smallest_split) == 2


def test_terminators_strategy_draws_only_valid_terminators() -> None:
    from hypothesis import given, settings

    from sanschat import Channel
    from sanschat.testing.strategies import terminators

    @settings(max_examples=100, deadline=None)
    @given(terminators())
    def check(terminator: object) -> None:
        Channel(terminator)  # type: ignore[arg-type]

    check()


def test_assert_chunking_invariant_shrinks_the_naive_protocol_to_a_two_piece_cut() -> None:
    from sanschat.testing.strategies import assert_chunking_invariant

    with pytest.raises(AssertionError, match="depends on how the input is cut") as info:
        assert_chunking_invariant(NaiveLines, b"hello world\n", max_examples=100)
    assert "chunks:" in str(info.value)


def test_assert_chunking_invariant_passes_the_http_example() -> None:
    from sanschat.testing.strategies import assert_chunking_invariant

    assert_chunking_invariant(HTTPRequestHandler, POST + b"over-sent", max_examples=50)


# ---------------------------------------------------------------- pytest plugin


def test_plugin_fixtures_are_available_without_imports(
    chat_harness: Callable[..., ChatHarness], chat_pair: Callable[..., ChatPair]
) -> None:
    assert chat_harness(Echo()).feed(b"x\r\n") == b"x\r\n"
    client = Client(POST)
    chat_pair(client, HTTPRequestHandler(), cut=[3])
    assert bytes(client.reply) == OK_HELLO


def test_sanschat_testing_imports_without_pytest_or_hypothesis() -> None:
    code = (
        "import sys; sys.modules['pytest'] = None; sys.modules['hypothesis'] = None\n"
        "import sanschat.testing\n"
        "try:\n    import sanschat.testing.strategies\nexcept ImportError as e:\n"
        "    assert 'sanschat[testing]' in str(e), e\nelse:\n    raise SystemExit('imported')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_transcripts_of_a_frame_limit_error_do_not_depend_on_the_cut() -> None:
    class Limited(Chat):
        terminator = b"\n"
        max_frame_size = 4

        def found_frame(self, frame: bytes) -> None:
            self.push(frame)

    reference = assert_same_for_every_chunking(Limited, b"ab\ncdefgh", max_pieces=3)
    assert reference == Transcript(b"ab", closed=True, error=None)


def test_every_chunking_fails_for_a_handler_that_always_raises() -> None:
    with pytest.raises(AssertionError) as info:
        assert_same_for_every_chunking(_Broken, b"a\nb\n")
    message = str(info.value)
    assert "the handler raised" in message and "KeyError" in message
    assert "chunks:   [b'a\\nb\\n']" in message  # the cut, then both transcripts
    assert "expected: Transcript(" in message and "in found_frame" in message  # the traceback
    assert isinstance(info.value.__cause__, KeyError)


def test_every_chunking_finds_a_reply_lost_on_a_protocol_error() -> None:
    class ClosesAbortively(Echo):
        """The old drivers' bug: an abortive close on error drops the queued replies."""

        max_frame_size = 4

        def protocol_error(self, error: ProtocolError) -> None:
            self.close()

    with pytest.raises(AssertionError, match="depends on how the input is cut"):
        assert_same_for_every_chunking(ClosesAbortively, b"ok\r\nxxxxxx", max_pieces=2)


def test_assert_chunking_invariant_fails_for_a_handler_that_always_raises() -> None:
    from sanschat.testing.strategies import assert_chunking_invariant

    with pytest.raises(AssertionError, match="the handler raised on the whole input") as info:
        assert_chunking_invariant(_Broken, b"a\nb\n", max_examples=10)
    assert isinstance(info.value.__cause__, KeyError)


def test_the_chunking_invariant_fixture_fails_loudly_too(
    chunking_invariant: Callable[..., object],
) -> None:
    with pytest.raises(AssertionError, match="KeyError"):
        chunking_invariant(_Broken, b"x\n")


def test_harness_holds_input_while_paused_and_feed_without_chunks_resumes_it() -> None:
    class PauseAtStop(Chat):
        terminator = b"\n"

        def found_frame(self, frame: bytes) -> None:
            self.push(frame + b"!")
            if frame == b"stop":
                self.pause_reading()

    harness = ChatHarness(PauseAtStop())
    assert harness.feed(b"a\nstop\nb\n", b"c\n") == b"a!stop!"
    assert harness.held == [b"c\n"] and harness.transport.reading_paused
    assert harness.feed() == b""  # still paused: nothing moves
    harness.chat.resume_reading()
    assert harness.feed() == b"b!c!" and harness.held == []


def test_harness_with_a_peer_that_does_not_read_keeps_output_until_drain() -> None:
    class Big(Chat):
        terminator = b"\n"
        high_water = 10

        def found_frame(self, frame: bytes) -> None:
            self.push(frame * 20)

    harness = ChatHarness(Big())
    harness.peer_reads = False
    assert harness.feed(b"ab\n") == b""
    assert harness.chat.output_full
    assert harness.drain() == b"ab" * 20 and not harness.chat.output_full
