"""`Chat` without sockets: callbacks from bytes, verbs into the channel, driver hooks."""

from __future__ import annotations

import gc
import weakref
from typing import Any, ClassVar

import pytest

from sanschat import Channel, Chat, FrameTooLarge, ProtocolError
from sanschat.testing import ChatHarness, RecordingTransport, assert_same_for_every_chunking


class Lines(Chat):
    terminator = b"\r\n"

    def __init__(self) -> None:
        super().__init__()
        self.log: list[object] = []

    def collect_incoming_data(self, data: bytes) -> None:
        self.log.append(data)

    def found_terminator(self) -> None:
        self.log.append("END")


class Frames(Chat):
    terminator = b"\n"
    idle_timeout = 7.0

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []
        self.unframed: list[bytes] = []

    def found_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def eof_received(self, unframed: bytes) -> None:
        self.unframed.append(unframed)
        super().eof_received(unframed)


def attached(chat: Chat) -> RecordingTransport:
    transport = RecordingTransport(peername=("127.0.0.1", 4242))
    chat.attach(transport)
    return transport


def test_asynchat_style_gets_data_then_terminator() -> None:
    chat = Lines()
    attached(chat)
    chat.feed(b"ab\r\ncd")
    chat.feed(b"\r\n")
    assert chat.log == [b"ab", "END", b"cd", "END"]


def test_overriding_found_frame_selects_whole_frames() -> None:
    chat = Frames()
    attached(chat)
    chat.feed(b"a\nb")
    chat.feed(b"c\n")
    assert chat.frames == [b"a", b"bc"]


def test_eof_hands_the_unterminated_frame_to_eof_received_and_closes_when_done() -> None:
    chat = Frames()
    attached(chat)
    chat.feed(b"a\ntail")
    chat.push(b"reply")
    chat.feed_eof()
    assert chat.unframed == [b"tail"]
    assert chat.channel.data_to_send() == b"reply"
    assert chat.channel.data_to_send() == b"" and chat.channel.wants_close


def test_eof_in_asynchat_style_delivers_held_bytes_to_collect_incoming_data() -> None:
    chat = Lines()
    attached(chat)
    chat.feed(b"x\r")
    chat.feed_eof()
    assert chat.log == [b"x", b"\r"]


def test_eof_with_a_tuple_terminator_ends_the_last_frame_in_frame_style() -> None:
    class Universal(Frames):
        terminator = (b"\r", b"\r\n")

    chat = Universal()
    attached(chat)
    chat.feed(b"a\r")
    chat.feed_eof()
    assert chat.frames == [b"a"]
    assert chat.unframed == [b""]


def test_default_callbacks_raise_not_implemented_naming_the_class() -> None:
    chat = Chat()
    attached(chat)
    chat.set_terminator(b"\n")
    with pytest.raises(NotImplementedError, match="Chat must override"):
        chat.feed(b"x\n")


def test_push_inside_a_callback_does_not_bother_the_transport() -> None:
    class Echo(Frames):
        def found_frame(self, frame: bytes) -> None:
            self.push(frame)

    chat = Echo()
    transport = attached(chat)
    chat.feed(b"a\nb\n")
    assert transport.output_ready_calls == 0
    assert chat.channel.data_to_send() == b"ab"


def test_push_outside_a_callback_tells_the_transport() -> None:
    chat = Frames()
    transport = attached(chat)
    chat.push(b"x")
    chat.push_with_producer([b"y"])
    chat.close_when_done()
    assert transport.output_ready_calls == 3


def test_push_outside_callbacks_tells_the_transport_of_the_moment() -> None:
    # Chat.push is the channel's push with a hook: the hook must follow attach, every
    # callback and detach, and never call a transport while a callback runs.
    chat = Frames()
    chat.push(b"before attach")  # the placeholder transport: nothing to tell, no error
    first = attached(chat)
    chat.feed(b"a\n")
    chat.push(b"1")
    assert first.output_ready_calls == 1
    chat.detach(None)
    chat.channel.discard_buffers()
    chat.push(b"after detach")  # the connection is gone: told to nobody, no error
    assert first.output_ready_calls == 1


def test_pushes_from_every_kind_of_callback_wait_for_the_driver_flush() -> None:
    class Chatty(Frames):
        def connection_made(self) -> None:
            self.push(b"hi ")

        def found_frame(self, frame: bytes) -> None:
            self.push(frame + b" ")

        def eof_received(self, unframed: bytes) -> None:
            self.push(b"bye")

    chat = Chatty()
    chat.frame_budget = 1  # (read at __init__: a later budget changes nothing)
    transport = attached(chat)
    chat.feed(b"a\nb\n")
    chat.feed(b"")  # the budgeted rest, as a driver does
    chat.feed_eof()
    assert transport.output_ready_calls == 0
    assert chat.channel.data_to_send() == b"hi a b bye"
    chat.push(b"!")
    assert transport.output_ready_calls == 1


def test_a_subclass_that_overrides_push_sees_every_push() -> None:
    class Counting(Frames):
        def __init__(self) -> None:
            super().__init__()
            self.pushed: list[bytes] = []

        def push(self, data: bytes | bytearray | memoryview) -> None:
            self.pushed.append(bytes(data))
            super().push(data)

        def found_frame(self, frame: bytes) -> None:
            self.push(frame.upper())

    chat = Counting()
    transport = attached(chat)
    chat.feed(b"a\nb\n")
    chat.push(b"c")
    assert chat.pushed == [b"A", b"B", b"c"]
    assert transport.output_ready_calls == 1
    assert chat.channel.data_to_send() == b"ABc"


def test_attach_applies_the_idle_timeout_and_calls_connection_made() -> None:
    made = []

    class Greeter(Frames):
        def connection_made(self) -> None:
            made.append(self.peername)
            self.push(b"hello\n")

    chat = Greeter()
    transport = attached(chat)
    assert made == [("127.0.0.1", 4242)]
    assert transport.idle_timeout == 7.0
    assert transport.output_ready_calls == 0  # pushed inside a hook: the driver flushes
    assert chat.channel.data_to_send() == b"hello\n"


def test_threadsafe_verbs_go_through_the_transport() -> None:
    chat = Frames()
    transport = attached(chat)
    data = bytearray(b"abc")
    chat.push_threadsafe(data)
    data[0] = 0  # copied at the call
    chat.close_threadsafe()
    for callback in transport.callbacks:
        callback()
    assert chat.channel.data_to_send() == b"abc"
    assert chat.channel.data_to_send() == b"" and chat.channel.wants_close


def test_close_threadsafe_can_close_at_once() -> None:
    chat = Frames()
    transport = attached(chat)
    chat.close_threadsafe(when_done=False)
    transport.callbacks[0]()
    assert transport.closed


def test_idle_closes_by_default() -> None:
    chat = Frames()
    transport = attached(chat)
    chat.idle()
    assert transport.closed


def test_detach_calls_connection_lost_with_the_reason() -> None:
    lost: list[BaseException | None] = []

    class Watcher(Frames):
        def connection_lost(self, exc: BaseException | None) -> None:
            lost.append(exc)

    chat = Watcher()
    attached(chat)
    error = ConnectionResetError()
    chat.detach(error)
    assert lost == [error]


def test_after_detach_the_verbs_still_work_and_nothing_holds_the_chat() -> None:
    chat = Frames()
    attached(chat)
    chat.feed(b"kept\nheld")
    chat.detach(None)
    # The verbs a late handler or thread may still call change the channel, and do nothing
    # else (input is ignored once closed).
    chat.set_terminator(b";")
    assert chat.get_terminator() == b";"
    chat.push(b"late")
    chat.feed(b"more;")
    assert chat.frames == [b"kept"]
    # Neither the channel nor the chat's own hooks refer to the chat any more: with the
    # garbage collector off, dropping it frees it.
    gone = weakref.ref(chat)
    gc.disable()
    try:
        del chat
        assert gone() is None
    finally:
        gc.enable()


def test_a_detached_chat_queues_but_cannot_close() -> None:
    chat = Frames()
    chat.push(b"queued")
    assert chat.channel.data_to_send() == b"queued"
    with pytest.raises(RuntimeError, match="not attached"):
        chat.close()


def test_verbs_reach_the_channel() -> None:
    chat = Lines()
    assert isinstance(chat.channel, Channel)
    chat.set_terminator(5, max_frame_size=5)
    assert chat.get_terminator() == 5
    chat.push(b"x")
    chat.discard_buffers()
    assert chat.channel.buffered_output == 0


def test_max_frame_size_class_attribute_limits_frames() -> None:
    class Small(Frames):
        max_frame_size = 3

    chat = Small()
    attached(chat)
    chat.feed(b"ab\nabcd")  # the peer's error: answered by the chat, not raised
    assert chat.frames == [b"ab"] and chat.channel.closing


def test_a_callback_exception_propagates_to_the_driver_and_dispatch_state_resets() -> None:
    class Failing(Frames):
        def found_frame(self, frame: bytes) -> None:
            raise ValueError(frame)

    chat = Failing()
    transport = attached(chat)
    with pytest.raises(ValueError):
        chat.feed(b"x\n")
    chat.push(b"after")
    assert transport.output_ready_calls == 1


class Upper(Chat):
    """The README's example: capitals back, QUIT ends the session."""

    terminator = b"\r\n"

    def found_frame(self, line: bytes) -> None:
        if line == b"QUIT":
            self.push(b"BYE\r\n")
            self.close_when_done()
        else:
            self.push(line.upper() + b"\r\n")


def test_no_callback_runs_after_close_when_done_even_for_pipelined_frames() -> None:
    harness = ChatHarness(Upper())
    assert harness.feed(b"hi\r\nQUIT\r\nmore\r\n", b"and more\r\n") == b"HI\r\nBYE\r\n"
    assert harness.error is None and harness.closed


def test_no_callback_runs_after_close_inside_a_callback() -> None:
    class Abort(Frames):
        def found_frame(self, frame: bytes) -> None:
            super().found_frame(frame)
            self.close()

    chat = Abort()
    transport = attached(chat)
    chat.feed(b"a\nb\nc\n")
    chat.feed_eof()
    assert chat.frames == [b"a"] and transport.closed and chat.unframed == []
    assert chat.closing


def test_close_after_the_connection_is_gone_does_nothing() -> None:
    class Tidy(Frames):
        def connection_lost(self, exc: BaseException | None) -> None:
            self.close()  # an asyncore habit: must not raise

    chat = Tidy()
    attached(chat)
    chat.detach(None)
    chat.close_threadsafe()
    chat.push_threadsafe(b"late")


def test_set_terminator_outside_a_callback_frames_what_is_already_buffered() -> None:
    chat = Frames()
    transport = attached(chat)
    chat.set_terminator(None)
    chat.feed(b"A\nB\n")
    assert chat.frames == []
    chat.set_terminator(b"\n")  # e.g. from a timer: the two lines are framed at once
    assert chat.frames == [b"A", b"B"]
    assert transport.output_ready_calls == 2  # once per set_terminator: replies may be queued


def test_set_terminator_in_a_callback_frames_nothing_at_once_and_tells_nobody() -> None:
    class Switching(Frames):
        def found_frame(self, frame: bytes) -> None:
            super().found_frame(frame)
            self.set_terminator(int(frame) if frame.isdigit() else b"\n")

    chat = Switching()
    transport = attached(chat)
    chat.feed(b"3\nabc4\nwxyz")
    assert chat.frames == [b"3", b"abc", b"4", b"wxyz"]
    assert transport.output_ready_calls == 0  # the driver flushes after the feed


def test_a_refused_set_terminator_outside_a_callback_frames_nothing_and_tells_nobody() -> None:
    chat = Frames()
    transport = attached(chat)
    chat.set_terminator(None)
    chat.feed(b"A\n")
    with pytest.raises(TypeError, match="str"):
        chat.set_terminator("\n")  # type: ignore[arg-type]
    assert chat.frames == [] and transport.output_ready_calls == 1  # (the first one)
    chat.set_terminator(b"\n")  # the hook is still in place
    assert chat.frames == [b"A"] and transport.output_ready_calls == 2


def test_set_terminator_is_the_channels_own_unless_a_subclass_overrides_it() -> None:
    chat = Frames()
    if hasattr(chat, "__dict__"):  # (a compiled plain Chat keeps the class's own)
        assert chat.set_terminator == chat.channel.set_terminator

    class Logged(Frames):
        def __init__(self) -> None:
            super().__init__()
            self.set: list[object] = []

        def set_terminator(self, terminator: Any, **limit: Any) -> None:
            self.set.append(terminator)
            super().set_terminator(terminator, **limit)

    logged = Logged()
    transport = attached(logged)
    logged.set_terminator(None)
    logged.feed(b"A\nB\n")
    logged.set_terminator(b"\n", max_frame_size=10)  # framed once, told once
    assert logged.set == [None, b"\n"] and logged.frames == [b"A", b"B"]
    assert transport.output_ready_calls == 2
    assert logged.channel.max_frame_size == 10


# ---------------------------------------------------------------------- found_frames (batch hook)


class _Batches(Chat):
    terminator = b"\n"

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[bytes]] = []

    def found_frames(self, frames: list[bytes]) -> None:
        self.batches.append(list(frames))


def test_found_frames_gets_every_frame_of_one_read_in_one_call() -> None:
    chat = _Batches()
    chat.feed(b"a\nb\nc\npartial")
    chat.feed(b"\nd\n")
    assert chat.batches == [[b"a", b"b", b"c"], [b"partial", b"d"]]


def test_found_frames_is_not_called_for_a_read_that_ends_no_frame() -> None:
    chat = _Batches()
    chat.feed(b"no end yet")
    assert chat.batches == []


def test_a_terminator_set_in_found_frames_applies_after_the_last_frame_of_the_batch() -> None:
    class Switch(_Batches):
        def found_frames(self, frames: list[bytes]) -> None:
            super().found_frames(frames)
            if frames[-1] == b"LEN":
                self.set_terminator(3)  # the 3 bytes after the batch are one frame
            elif self.get_terminator() is None:
                self.set_terminator(b"\n")

    chat = Switch()
    chat.feed(b"x\nLEN\nabc")  # the batch is cut under b"\n"; b"abc" waits
    chat.feed(b"y\nz\n")
    assert chat.batches == [[b"x", b"LEN"], [b"abc"], [b"y", b"z"]]


def test_frames_before_a_frame_too_large_reach_found_frames_before_the_error() -> None:
    class Limited(_Batches):
        max_frame_size = 4

    chat = Limited()
    chat.feed(b"ok\nfine\nmuch too long\n")  # answered by protocol_error, not raised
    assert chat.batches == [[b"ok", b"fine"]] and chat.channel.closing


def test_found_frames_wins_over_found_frame_and_gets_the_last_frame_at_eof() -> None:
    class Both(_Batches):
        terminator = (b"\r\n", b"\r")
        calls: ClassVar[list[bytes]] = []

        def found_frame(self, frame: bytes) -> None:
            self.calls.append(frame)

        def found_frames(self, frames: list[bytes]) -> None:  # both in one class: this one
            super().found_frames(frames)

    chat = Both()
    chat.feed(b"one\r\ntwo\r")  # b"\r" could still start b"\r\n": held back
    chat.feed_eof()
    assert chat.batches == [[b"one"], [b"two"]]
    assert Both.calls == []


def test_close_when_done_in_found_frames_stops_later_batches() -> None:
    class Quit(_Batches):
        def found_frames(self, frames: list[bytes]) -> None:
            super().found_frames(frames)
            self.set_terminator(b";")  # would make the rest a new batch
            self.close_when_done()

    chat = Quit()
    chat.feed(b"a\nb\nc;d;")
    assert chat.batches == [[b"a", b"b"]]


def test_a_subclass_overriding_found_frame_below_a_batch_handler_gets_frames_one_by_one() -> None:
    class OneByOne(_Batches):
        def found_frame(self, frame: bytes) -> None:
            self.batches.append([b"single", frame])

    chat = OneByOne()
    chat.feed(b"a\nb\n")
    assert chat.batches == [[b"single", b"a"], [b"single", b"b"]]


# ---------------------------------------------------------------- the peer's errors


class Answers(Chat):
    """Whole frames (or batches, or asynchat's style) with an error reply of its own."""

    terminator = b"\n"
    max_frame_size = 5

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[ProtocolError] = []

    def found_frame(self, frame: bytes) -> None:
        if frame == b"bad":
            raise ProtocolError("bad command")
        self.push(frame + b"!\n")

    def protocol_error(self, error: ProtocolError) -> None:
        self.errors.append(error)
        self.push(b"ERR " + type(error).__name__.encode() + b"\n")


class AnswersInBatches(Answers):
    def found_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.found_frame(frame)


class AnswersAsynchatStyle(Answers):
    def __init__(self) -> None:
        super().__init__()
        self.frame = b""

    def collect_incoming_data(self, data: bytes) -> None:
        self.frame += data

    def found_terminator(self) -> None:
        frame, self.frame = self.frame, b""
        self.found_frame(frame)


STYLES = [Answers, AnswersInBatches, AnswersAsynchatStyle]


@pytest.mark.parametrize("style", STYLES)
def test_a_frame_too_large_is_answered_after_the_earlier_replies_then_closes(
    style: type[Answers],
) -> None:
    harness = ChatHarness(style())
    sent = harness.feed(b"a\nb\n" + b"x" * 9 + b"\nc\n", b"d\n")
    assert sent == b"a!\nb!\nERR FrameTooLarge\n"  # nothing dispatched after the error
    assert harness.closed and harness.lost and harness.error is None
    (error,) = harness.chat.errors
    assert isinstance(error, FrameTooLarge) and error.limit == 5


@pytest.mark.parametrize("style", STYLES)
def test_the_answer_to_a_frame_too_large_does_not_depend_on_the_cut(style: type[Answers]) -> None:
    reference = assert_same_for_every_chunking(style, b"ok\n" + b"y" * 7, max_pieces=3)
    assert reference.sent == b"ok!\nERR FrameTooLarge\n" and reference.closed


@pytest.mark.parametrize("style", STYLES)
def test_a_protocol_error_raised_by_a_hook_is_the_peers_too(style: type[Answers]) -> None:
    harness = ChatHarness(style())
    assert harness.feed(b"a\nbad\nc\n") == b"a!\nERR ProtocolError\n"
    assert harness.closed and str(harness.chat.errors[0]) == "bad command"


def test_a_frame_too_large_at_end_of_stream_is_answered_too() -> None:
    harness = ChatHarness(Answers())
    harness.chat.set_terminator((b"\r\n", b"\r"), max_frame_size=3)
    harness.feed(b"abc\r")  # held back: the longer alternative may follow
    assert harness.feed_eof() == b"abc!\n"
    harness = ChatHarness(Answers())
    harness.feed(b"abcd")
    assert harness.feed_eof() == b""  # not too large yet: the last frame ends at EOF
    assert harness.chat.errors == []


def test_the_default_protocol_error_flushes_and_closes() -> None:
    class Plain(Chat):
        terminator = b"\n"
        max_frame_size = 2

        def found_frame(self, frame: bytes) -> None:
            self.push(frame)

    harness = ChatHarness(Plain())
    assert harness.feed(b"a\nbbbbb\n") == b"a"
    assert harness.closed and not harness.transport.closed  # graceful, not abortive
    assert harness.chat.channel.take_unframed().startswith(b"bbb")  # still readable


def test_protocol_error_may_close_at_once() -> None:
    class Abort(Answers):
        def protocol_error(self, error: ProtocolError) -> None:
            self.close()

    harness = ChatHarness(Abort())
    assert harness.feed(b"a\n" + b"z" * 9) == b""  # close() drops queued output, as documented
    assert harness.transport.closed


def test_an_error_in_protocol_error_itself_is_a_bug() -> None:
    class Buggy(Answers):
        def protocol_error(self, error: ProtocolError) -> None:
            raise RuntimeError("oops")

    harness = ChatHarness(Buggy())
    with pytest.raises(RuntimeError, match="oops"):
        harness.feed(b"z" * 9)


# ---------------------------------------------------------------- fair rounds: frame_budget


class Budgeted(Frames):
    frame_budget = 10


class BudgetedBatches(Chat):
    terminator = b"\n"
    frame_budget = 10

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[bytes]] = []

    def found_frames(self, frames: list[bytes]) -> None:
        self.batches.append(list(frames))


class BudgetedLines(Lines):
    frame_budget = 10


def numbered(count: int) -> list[bytes]:
    return [b"%d" % i for i in range(count)]


def test_a_read_over_the_frame_budget_is_dispatched_one_budget_per_round() -> None:
    harness = ChatHarness(Budgeted())
    harness.feed(b"\n".join(numbered(35)) + b"\n")
    assert harness.chat.frames == numbered(35)  # type: ignore[attr-defined]
    assert harness.rounds == 3  # 10 at once, then 10, 10, 5


def test_feed_stops_at_the_budget_and_says_so_until_the_backlog_is_gone() -> None:
    chat = Budgeted()
    attached(chat)
    chat.feed(b"x\n" * 25)
    assert len(chat.frames) == 10 and chat.input_backlog
    chat.feed(b"")
    assert len(chat.frames) == 20 and chat.input_backlog
    chat.feed(b"")
    assert len(chat.frames) == 25 and not chat.input_backlog


def test_no_budget_dispatches_every_frame_of_a_read_at_once() -> None:
    class Unbounded(Frames):
        frame_budget = None

    harness = ChatHarness(Unbounded())
    harness.feed(b"x\n" * 5000)
    assert len(harness.chat.frames) == 5000 and harness.rounds == 0  # type: ignore[attr-defined]


def test_the_batch_hook_gets_at_most_a_budget_of_frames_per_call() -> None:
    harness = ChatHarness(BudgetedBatches())
    harness.feed(b"\n".join(numbered(25)) + b"\n")
    batches = harness.chat.batches  # type: ignore[attr-defined]
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [frame for batch in batches for frame in batch] == numbered(25)


def test_a_batch_hook_that_extends_its_list_still_gets_the_rest_in_later_rounds() -> None:
    class Appending(BudgetedBatches):
        def found_frames(self, frames: list[bytes]) -> None:
            frames.append(b"")  # as Echo and ChatMember do, to join with a last terminator
            super().found_frames(frames[:-1])

    harness = ChatHarness(Appending())
    harness.feed(b"\n".join(numbered(25)) + b"\n")
    assert [len(b) for b in harness.chat.batches] == [10, 10, 5]  # type: ignore[attr-defined]
    assert harness.rounds == 2


def test_asynchat_style_budget_counts_events_and_loses_nothing() -> None:
    harness = ChatHarness(BudgetedLines())
    harness.feed(b"ab\r\n" * 12)
    assert harness.chat.log == [b"ab", "END"] * 12  # type: ignore[attr-defined]
    assert harness.rounds == 2


def test_a_terminator_set_in_a_later_round_applies_to_the_rest_of_the_read() -> None:
    class Switching(Budgeted):
        def found_frame(self, frame: bytes) -> None:
            super().found_frame(frame)
            if frame == b"switch":
                self.set_terminator(b";")

    harness = ChatHarness(Switching())
    harness.feed(b"a\n" * 15 + b"switch\n" + b"p;q;r\n;")
    assert harness.chat.frames[15:] == [b"switch", b"p", b"q", b"r\n"]  # type: ignore[attr-defined]


def test_closing_in_a_budgeted_round_dispatches_nothing_after_it() -> None:
    class Quitting(Budgeted):
        def found_frame(self, frame: bytes) -> None:
            super().found_frame(frame)
            if frame == b"quit":
                self.close_when_done()

    harness = ChatHarness(Quitting())
    harness.feed(b"a\n" * 14 + b"quit\n" + b"b\n" * 20)
    assert harness.chat.frames == [b"a"] * 14 + [b"quit"]  # type: ignore[attr-defined]
    assert harness.closed and not harness.chat.input_backlog


def test_end_of_stream_delivers_a_backlog_at_once() -> None:
    chat = Budgeted()
    attached(chat)
    chat.feed(b"x\n" * 25 + b"tail")
    chat.feed_eof()
    assert chat.frames == [b"x"] * 25 and chat.unframed == [b"tail"]


# ---------------------------------------------------------------- pause_reading


class Pausing(Frames):
    """Pauses its reading at the frame ``pause``."""

    def found_frame(self, frame: bytes) -> None:
        super().found_frame(frame)
        if frame == b"pause":
            self.pause_reading()


def test_pause_reading_in_a_callback_stops_dispatch_until_resume() -> None:
    harness = ChatHarness(Pausing())
    harness.feed(b"a\npause\nb\nc\n", b"d\n")
    chat = harness.chat
    assert chat.frames == [b"a", b"pause"]  # type: ignore[attr-defined]
    assert chat.reading_paused and harness.transport.reading_paused
    assert harness.held == [b"d\n"]  # the driver reads nothing meanwhile
    chat.resume_reading()
    assert not harness.transport.reading_paused
    harness.feed()
    assert chat.frames == [b"a", b"pause", b"b", b"c", b"d"]  # type: ignore[attr-defined]


def test_a_chunk_fed_while_paused_is_kept_and_dispatched_after_resume() -> None:
    chat = Pausing()
    attached(chat)
    chat.feed(b"pause\n")
    chat.feed(b"late\n")  # a driver race: a read already under way when the pause came
    assert chat.frames == [b"pause"]
    chat.resume_reading()
    chat.feed(b"")
    assert chat.frames == [b"pause", b"late"]


def test_pause_in_the_batch_hook_takes_effect_after_its_batch() -> None:
    class PausingBatches(BudgetedBatches):
        def found_frames(self, frames: list[bytes]) -> None:
            super().found_frames(frames)
            self.pause_reading()

    chat = PausingBatches()
    attached(chat)
    chat.feed(b"\n".join(numbered(25)) + b"\n")
    assert chat.batches == [numbered(10)]
    chat.resume_reading()
    chat.feed(b"")
    assert chat.batches == [numbered(10), numbered(20)[10:]]


# ---------------------------------------------------------------- fan-out backpressure


class Small(Frames):
    high_water = 100


class Drained(Small):
    def __init__(self) -> None:
        super().__init__()
        self.drained = 0

    def output_drained(self) -> None:
        self.drained += 1


def test_output_full_is_queued_output_over_the_chat_high_water() -> None:
    chat = Small()
    attached(chat)
    chat.push(b"x" * 100)
    assert not chat.output_full
    chat.push(b"x")
    assert chat.output_full


def test_a_high_water_set_on_the_chat_wins_over_the_one_its_class_sets() -> None:
    # What a driver does (drivers.apply_high_water): the compiled build must read the
    # instance's value, and the class's when the instance has none (see test above).
    chat = Small()
    attached(chat)
    chat.high_water = 50
    chat.push(b"x" * 60)
    assert chat.high_water == 50 and chat.output_full
    assert Small().high_water == 100 and Frames().high_water == 1024 * 1024
    plain = Chat()
    plain.high_water = 10
    plain.push(b"x" * 11)
    assert plain.high_water == 10 and plain.output_full


def test_a_plain_chat_and_a_subclass_push_through_their_channel() -> None:
    # Chat.__init__ binds a subclass's push to its channel's (one call per reply); a plain
    # Chat of the compiled build has no __dict__ and keeps the class's push.
    for chat in (Chat(), Frames()):
        transport = attached(chat)
        chat.push(b"ab")
        chat.push(bytearray(b"c"))
        assert chat.channel.data_to_send() == b"abc"
        assert transport.output_ready_calls == 2
    with pytest.raises(TypeError):
        Chat().push("text")  # type: ignore[arg-type]


class OwnPush(Frames):
    def push(self, data: bytes | bytearray | memoryview) -> None:
        super().push(b"<" + bytes(data) + b">")


def test_a_subclass_overriding_push_gets_its_own_called_by_the_chat_too() -> None:
    chat = OwnPush()
    transport = attached(chat)
    chat.push_threadsafe(b"x")  # on the loop's thread: queued as a callback
    for callback in transport.callbacks:
        callback()  # Chat's own code calls self.push (compiled: through the subclass)
    chat.push(b"y")
    assert chat.channel.data_to_send() == b"<x><y>"


def test_a_sender_paused_on_a_full_target_resumes_once_it_drains_to_half() -> None:
    sender, target = ChatHarness(Frames()), ChatHarness(Drained())
    target.peer_reads = False
    target.chat.push(b"x" * 150)
    sender.chat.pause_until_drained(target.chat)
    assert sender.transport.reading_paused
    target.chat.channel.data_to_send(99)  # 51 left: over half the high water
    target.chat.written()
    assert sender.transport.reading_paused and target.chat.drained == 0  # type: ignore[attr-defined]
    target.drain()
    assert not sender.transport.reading_paused
    assert target.chat.drained == 1  # type: ignore[attr-defined]


def test_pause_until_drained_of_a_target_not_full_does_nothing() -> None:
    sender, target = ChatHarness(Frames()), ChatHarness(Small())
    target.chat.push(b"x" * 10)
    sender.chat.pause_until_drained(target.chat)
    sender.chat.pause_until_drained(sender.chat)
    assert not sender.chat.reading_paused


def test_a_sender_paused_on_two_targets_resumes_after_the_last() -> None:
    sender = ChatHarness(Frames())
    targets = [ChatHarness(Small()) for _ in range(2)]
    for target in targets:
        target.peer_reads = False
        target.chat.push(b"x" * 200)
        sender.chat.pause_until_drained(target.chat)
        sender.chat.pause_until_drained(target.chat)  # twice: counted once
    targets[0].drain()
    assert sender.chat.reading_paused
    targets[1].drain()
    assert not sender.chat.reading_paused


@pytest.mark.parametrize("end", ["close", "detach", "discard"])
def test_a_target_that_closes_or_discards_releases_its_senders(end: str) -> None:
    sender, target = ChatHarness(Frames()), ChatHarness(Small())
    target.peer_reads = False
    target.chat.push(b"x" * 200)
    sender.chat.pause_until_drained(target.chat)
    if end == "close":
        target.chat.close()
    elif end == "detach":
        target.lose_connection()
    else:
        target.chat.discard_buffers()
    assert not sender.chat.reading_paused


def test_a_user_pause_outlasts_a_drained_target() -> None:
    sender, target = ChatHarness(Frames()), ChatHarness(Small())
    target.peer_reads = False
    target.chat.push(b"x" * 200)
    sender.chat.pause_reading()
    sender.chat.pause_until_drained(target.chat)
    target.drain()
    assert sender.chat.reading_paused
    sender.chat.resume_reading()
    assert not sender.chat.reading_paused


# ---------------------------------------------------------------- thread verbs after close


def test_push_threadsafe_arriving_after_close_when_done_is_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness = ChatHarness(Frames())
    harness.peer_reads = False
    chat = harness.chat
    chat.push(b"queued\n")
    chat.close_threadsafe()
    chat.push_threadsafe(b"late 1\n")
    chat.push_threadsafe(b"late 2\n")
    with caplog.at_level("DEBUG", logger="sanschat"):
        harness.run_callbacks()  # no ValueError: the close is not turned into an abort
    assert chat.late_pushes == 2
    assert harness.drain() == b"queued\n" and harness.closed and harness.error is None
    assert len([r for r in caplog.records if "late_pushes" in r.getMessage()]) == 1


def test_push_threadsafe_after_the_connection_is_gone_is_counted() -> None:
    harness = ChatHarness(Frames())
    chat = harness.chat
    chat.push_threadsafe(b"in flight\n")  # queued, never run: the connection goes first
    harness.lose_connection()
    chat.push_threadsafe(b"after\n")
    assert chat.late_pushes == 2


def test_a_push_threadsafe_racing_the_connection_loss_is_counted_once() -> None:
    """The loss lands just before the pushing thread takes the gate's lock: once the
    transport it checked first, it must still count the push (or queue it), not drop it
    silently on the gone connection."""
    import threading

    harness = ChatHarness(Frames())
    chat = harness.chat
    chat.push_threadsafe(b"first\n")  # makes the gate; queued, not yet run
    gate = chat._gate
    assert gate is not None

    class LossFirst(threading.Condition):
        armed = True

        def __enter__(self) -> bool:
            if LossFirst.armed:  # once: the loss happens between the check and the lock
                LossFirst.armed = False
                harness.lose_connection()
            return super().__enter__()

    gate.cond = LossFirst(threading.Lock())
    chat.push_threadsafe(b"second\n")
    assert not LossFirst.armed
    assert chat.late_pushes == 2  # the queued one, counted by the loss; this one, by itself
    assert gate.pushes == 0 and gate.in_flight == 0
    harness.run_callbacks()  # the queued callback, if it runs, counts nothing twice
    assert chat.late_pushes == 2


def test_a_push_threadsafe_the_transport_refuses_leaves_no_bytes_in_flight() -> None:
    chat = Frames()  # never attached: the detached transport raises
    with pytest.raises(RuntimeError):
        chat.push_threadsafe(b"x" * 10)
    assert chat._gate is not None
    assert chat._gate.in_flight == 0 and chat._gate.pushes == 0


def test_push_threadsafe_blocks_a_thread_while_over_the_high_water() -> None:
    import threading

    harness = ChatHarness(Small())
    harness.peer_reads = False
    chat = harness.chat
    pushed = threading.Event()

    def producer() -> None:
        chat.push_threadsafe(b"y" * 60)
        chat.push_threadsafe(b"z" * 60)  # 120 > 100: waits for the drain
        pushed.set()

    thread = threading.Thread(target=producer)
    thread.start()
    try:
        while len(harness.transport.callbacks) < 1:
            thread.join(0.01)
        assert not pushed.wait(0.2)
        harness.run_callbacks()
        assert not pushed.wait(0.2)  # 60 queued + 60 wanted is still over 100
        harness.drain()  # the peer reads: written() wakes the thread
        assert pushed.wait(10)
    finally:
        harness.drain()
        thread.join(10)
    harness.run_callbacks()
    assert harness.drain() == b"z" * 60


def test_push_threadsafe_with_a_timeout_raises_and_queues_nothing() -> None:
    import threading

    harness = ChatHarness(Small())
    harness.peer_reads = False
    chat = harness.chat
    chat.push(b"x" * 90)
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            chat.push_threadsafe(b"y" * 20, timeout=0.05)
        except TimeoutError as exc:
            errors.append(exc)

    thread = threading.Thread(target=producer)
    thread.start()
    thread.join(10)
    assert len(errors) == 1 and "high_water=100" in str(errors[0])
    assert harness.transport.callbacks == []


def test_push_threadsafe_on_the_loop_thread_never_waits() -> None:
    harness = ChatHarness(Small())
    harness.peer_reads = False
    harness.chat.push(b"x" * 200)
    harness.chat.push_threadsafe(b"y")  # the harness's thread attached it: no wait
    assert len(harness.transport.callbacks) == 1


def test_a_subclass_with_slots_works_as_one_without() -> None:
    # docs/guide/compiled.md advises __slots__ for handler state (fast attribute access on
    # instances of the compiled Chat's subclasses): the verbs must not need an instance dict.
    class Echo(Chat):
        __slots__ = ("count",)
        terminator = b"\n"

        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def found_frame(self, frame: bytes) -> None:
            self.count += 1
            self.push(frame + b"!")
            if frame == b"switch":
                self.set_terminator(b"\r\n")

    chat = Echo()
    chat.feed(b"a\nswitch\nb\r\nc\n")
    assert chat.count == 3
    assert bytes(chat.channel.data_to_send()) == b"a!switch!b!"
    assert chat.channel.buffered_input == 2
