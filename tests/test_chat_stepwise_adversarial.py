"""Adversarial cases for the stepwise core (`Channel._stepwise`, `_Stepper`): what a handler
observes after a terminator switch inside a loop must be what the eager core gives (a bare
`Channel` driven with `frames()` / `receive()` and `set_terminator` inside the loop).

The regression cases are divergences that differential fuzzing found (each the smallest input
found), all fixed since; one documented difference is kept as such (set_terminator in a
callback never raises FrameTooLarge).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanschat import (
    COMPILED,
    Channel,
    Chat,
    Data,
    FrameTooLarge,
    ProtocolError,
    TerminatorFound,
    TerminatorLike,
)
from sanschat.testing import ChatHarness
from sanschat.testing.strategies import chunkings, terminators


class Events(Chat):
    """asynchat style: logs each event; *on_data* / *on_end* run after the first Data / end."""

    terminator = b"\n"

    def __init__(self) -> None:
        super().__init__()
        self.log: list[object] = []

    def collect_incoming_data(self, data: bytes) -> None:
        self.log.append(data)

    def found_terminator(self) -> None:
        self.log.append("END")

    def protocol_error(self, error: ProtocolError) -> None:
        self.log.append(type(error))


def eager_events(
    chunks: list[bytes], on_data: list[tuple[TerminatorLike, int | None]]
) -> list[object]:
    """The reference: a bare eager `Channel` with `set_terminator` after the first Datas."""
    log: list[object] = []
    todo = list(on_data)
    channel = Channel(b"\n")
    try:
        for chunk in chunks:
            for event in channel.receive(chunk):
                if isinstance(event, Data):
                    log.append(event.data)
                    if todo:
                        term, limit = todo.pop(0)
                        channel.set_terminator(term, max_frame_size=limit)
                else:
                    log.append("END")
    except FrameTooLarge:
        log.append(FrameTooLarge)
    return log


def test_a_limit_the_open_frame_already_passes_is_answered_in_the_same_read() -> None:
    class Shrinks(Events):
        def collect_incoming_data(self, data: bytes) -> None:
            super().collect_incoming_data(data)
            self.set_terminator(b"\r", max_frame_size=0)

    chat = Shrinks()
    harness = ChatHarness(chat)
    harness.feed(b"ab")
    assert eager_events([b"ab"], [(b"\r", 0)]) == [b"ab", FrameTooLarge]
    assert chat.log == [b"ab", FrameTooLarge] and harness.closed


def test_set_terminator_in_a_callback_leaves_a_frame_too_large_to_protocol_error() -> None:
    """Documented (`Chat.set_terminator`): in a callback it never raises FrameTooLarge; the
    rest of the callback runs, then protocol_error, whatever the cut.  (A bare eager loop
    raises from set_terminator when the too-large piece has arrived, and not otherwise:
    that depends on the cut, which a Chat must not.)"""
    channel = Channel(b"\n")
    eager_raised = False
    try:
        for _frame in channel.frames(b"a\nbc"):
            channel.set_terminator(None, max_frame_size=1)
    except FrameTooLarge:
        eager_raised = True
    assert eager_raised

    class Collects(Chat):
        terminator = b"\n"

        def found_frame(self, frame: bytes) -> None:
            self.set_terminator(None, max_frame_size=1)
            self.push(b"after " + frame + b";")

        def protocol_error(self, error: ProtocolError) -> None:
            self.push(b"error")

    for chunks in ([b"a\nbc"], [b"a\n", b"bc"], [b"a\nb", b"c"]):
        harness = ChatHarness(Collects())
        assert harness.feed(*chunks) == b"after a;error", chunks


class Frames(Chat):
    """Logs each frame; runs ``actions[n](self)`` after the n-th frame, if there is one."""

    terminator = b"\n"

    def __init__(self, *actions: object) -> None:
        super().__init__()
        self.actions = list(actions)
        self.frames: list[bytes] = []

    def found_frame(self, frame: bytes) -> None:
        self.frames.append(frame)
        if self.actions:
            action = self.actions.pop(0)
            if callable(action):
                action(self)


def eager_frames(
    chunks: list[bytes], switches: dict[int, TerminatorLike], stop_after: int | None = None
) -> list[bytes]:
    """The reference: a bare eager `Channel`, switched after the frames numbered in
    *switches*; its loop is abandoned after frame *stop_after* (a pause), and goes on with
    a new call (the resume)."""
    channel = Channel(b"\n")
    frames: list[bytes] = []
    for chunk in [*chunks, b""]:
        for frame in channel.frames(chunk):
            frames.append(frame)
            if len(frames) - 1 in switches:
                channel.set_terminator(switches[len(frames) - 1])
            if len(frames) - 1 == stop_after:
                break
    return frames


def test_frames_left_after_a_pause_in_a_budgeted_stepwise_round_come_on_resume() -> None:
    class Budget1(Frames):
        frame_budget = 1

    def switch(chat: Chat) -> None:
        chat.set_terminator(b";")

    chat = Budget1(switch, Chat.pause_reading)
    harness = ChatHarness(chat)
    harness.feed(b"a\nb;c;d;")
    assert chat.frames == [b"a", b"b"] and chat.reading_paused
    chat.resume_reading()
    harness.feed()  # what a driver does once the chat resumes
    assert chat.frames == eager_frames([b"a\nb;c;d;"], {0: b";"}, stop_after=1)
    assert chat.frames == [b"a", b"b", b"c", b"d"]



class SwitchesThen(Chat):
    """On the frame ``QUIT``: a switch, then *verb* (close_when_done, close, pause_reading),
    in the same callback (with *verb_first*, the other way round)."""

    terminator = b"\n"

    def __init__(self, verb: str, verb_first: bool = False) -> None:
        super().__init__()
        self.verb = verb
        self.verb_first = verb_first
        self.log: list[object] = []

    def found_frame(self, frame: bytes) -> None:
        self.log.append(frame)
        _on_quit(self, frame)


def _on_quit(chat: SwitchesThen | SwitchesThenEvents, frame: bytes) -> None:
    if frame == b"QUIT":
        if chat.verb_first:
            getattr(chat, chat.verb)()
        chat.set_terminator(b";")
        if not chat.verb_first:
            getattr(chat, chat.verb)()


class SwitchesThenEvents(Chat):
    """`SwitchesThen` in asynchat's style."""

    terminator = b"\n"

    def __init__(self, verb: str, verb_first: bool = False) -> None:
        super().__init__()
        self.verb = verb
        self.verb_first = verb_first
        self.log: list[object] = []
        self.frame = b""

    def collect_incoming_data(self, data: bytes) -> None:
        self.log.append(data)
        self.frame += data

    def found_terminator(self) -> None:
        frame, self.frame = self.frame, b""
        _on_quit(self, frame)


def _dispatched_after_quit(chat: Chat) -> list[object]:
    log: list[object] = chat.log  # type: ignore[attr-defined]
    return log[log.index(b"QUIT") + 1:]


@pytest.mark.parametrize("verb", ["close_when_done", "close"])
@pytest.mark.parametrize("style", [SwitchesThen, SwitchesThenEvents])
def test_nothing_is_dispatched_after_a_switch_then_a_close(
    style: type[Chat], verb: str
) -> None:
    chat = style(verb)  # type: ignore[call-arg]
    harness = ChatHarness(chat)
    harness.feed(b"a\nQUIT\nb;c;")
    assert harness.closed
    assert _dispatched_after_quit(chat) == []


@pytest.mark.parametrize("budget", [None, 2])
@pytest.mark.parametrize("style", [SwitchesThen, SwitchesThenEvents])
def test_nothing_is_dispatched_after_a_switch_then_a_pause(
    style: type[Chat], budget: int | None
) -> None:
    chat = type("Budgeted", (style,), {"frame_budget": budget})("pause_reading")
    harness = ChatHarness(chat)
    harness.feed(b"a\nQUIT\nb;c;")
    assert chat.reading_paused
    assert _dispatched_after_quit(chat) == []


class _Full(Chat):
    high_water = 4


class _FansOut(Chat):
    """Pushes each frame to *target*; on ``QUIT`` switches and waits for *target* to drain
    (with *switch_first*, the switch comes before the pause)."""

    terminator = b"\n"

    def __init__(self, target: Chat, switch_first: bool) -> None:
        super().__init__()
        self.target = target
        self.switch_first = switch_first
        self.log: list[object] = []

    def found_frame(self, frame: bytes) -> None:
        self.log.append(frame)
        self.target.push(frame + b"......")
        if frame == b"QUIT":
            if self.switch_first:
                self.set_terminator(b";")
            if self.target.output_full:
                self.pause_until_drained(self.target)
            if not self.switch_first:
                self.set_terminator(b";")


@pytest.mark.parametrize("switch_first", [
    True,
    False,
])
def test_pause_until_drained_after_a_switch_holds_the_rest_until_drained(
    switch_first: bool,
) -> None:
    target = _Full()
    target_harness = ChatHarness(target)
    target_harness.peer_reads = False
    sender = _FansOut(target, switch_first)
    harness = ChatHarness(sender)
    harness.feed(b"a\nQUIT\nb;c;")
    assert sender.reading_paused and _dispatched_after_quit(sender) == []
    target_harness.drain()
    harness.feed()  # the driver resumes the sender
    assert not sender.reading_paused and _dispatched_after_quit(sender) == [b"b", b"c"]

@pytest.mark.parametrize("verb", ["close_when_done", "close", "pause_reading"])
@pytest.mark.parametrize("style", [SwitchesThen, SwitchesThenEvents])
def test_a_close_or_pause_then_a_switch_stops_the_loop(style: type[Chat], verb: str) -> None:
    """The other order (the verb first, then the switch) holds (a regression test)."""
    chat = style(verb, verb_first=True)  # type: ignore[call-arg]
    harness = ChatHarness(chat)
    harness.feed(b"a\nQUIT\nb;c;")
    assert _dispatched_after_quit(chat) == []
    assert harness.closed or chat.reading_paused


def test_discard_buffers_after_a_switch_to_0_ends_the_loop() -> None:
    def switch_and_discard(chat: Chat) -> None:
        chat.set_terminator(0)
        chat.discard_buffers()

    channel = Channel(b"\n")
    eager: list[bytes] = []
    for frame in channel.frames(b"a\nbc"):
        eager.append(frame)
        channel.set_terminator(0)
        channel.discard_buffers()
    assert eager == [b"a"]

    chat = Frames(switch_and_discard)
    harness = ChatHarness(chat)
    harness.feed(b"a\nbc")
    assert chat.frames == eager and chat.get_terminator() == 0
    harness.feed(b"x")
    assert chat.frames == [b"a", b""]

# ---------------------------------------------------------------- differential properties
#
# A scripted handler (one list of actions per callback) run on a `Chat` through
# `ChatHarness` (budget rounds, pauses, end of stream) against the same script on a bare
# eager `Channel`.  Each callback logs what it sees (the frame or event, get_terminator(),
# buffered_input, what take_unframed() returned).  The scripts leave out what the
# regression cases above cover (the divergences found, since fixed): in events mode a switch
# carries no limit and no close or pause follows a switch; a pause never meets a frame
# budget; a switch ends the callback's actions.  A FrameTooLarge is taken where stepwise
# gives it: the eager core raises it from set_terminator, or leaves it to the next call (a
# frame too large past the loop's next frame), where stepwise raises it from the loop's
# next step.

ALPHABET = b"\r\nab"
Action = tuple[object, ...]


def actions(limits: bool, pauses: bool) -> st.SearchStrategy[list[list[Action]]]:
    limit = st.one_of(st.none(), st.integers(0, 6)) if limits else st.none()
    switch = st.tuples(st.just("T"), terminators(ALPHABET), limit)
    others = ["C", "X", "U", "D", *(["P"] if pauses else [])]
    one = st.one_of(switch, switch, st.tuples(st.just("T"), st.integers(0, 3), limit),
                    st.sampled_from(others).map(lambda k: (k,)))
    return st.lists(st.lists(one, max_size=2), max_size=10)


class _Flags:
    """What the reference driver must know of the actions: close, pause, stop the loop."""

    def __init__(self) -> None:
        self.closed = self.when_done = self.aborted = self.paused = False
        self.stop = self.error = False


def _act(todo: list[Action], chat: object, channel: Channel, log: list[object],
         flags: _Flags) -> None:
    """Run one callback's actions on *chat* (a `Chat`, or `_Reference` for the eager core)."""
    log.append((channel.get_terminator(), channel.buffered_input))
    for action in todo:
        kind = action[0]
        if kind == "T":
            chat.set_terminator(action[1], max_frame_size=action[2])  # type: ignore[attr-defined]
            return
        if kind == "C":
            chat.close_when_done()  # type: ignore[attr-defined]
            flags.closed = flags.when_done = True
        elif kind == "X":
            chat.close()  # type: ignore[attr-defined]
            flags.closed = flags.aborted = True
        elif kind == "U":
            log.append(("U", channel.take_unframed()))
        elif kind == "D":
            chat.discard_buffers()  # type: ignore[attr-defined]
        elif kind == "P":
            chat.pause_reading()  # type: ignore[attr-defined]
        log.append((channel.get_terminator(), channel.buffered_input))


class _Reference:
    """The verbs of `Chat` on a bare eager `Channel`, for `_act`."""

    def __init__(self, channel: Channel, flags: _Flags) -> None:
        self.channel, self.flags = channel, flags

    def set_terminator(self, term: TerminatorLike, max_frame_size: int | None) -> None:
        try:
            self.channel.set_terminator(term, max_frame_size=max_frame_size)
        except FrameTooLarge:  # (eager: raised here; stepwise: by the loop's next step)
            self.flags.error = True

    def close_when_done(self) -> None:
        pass

    def close(self) -> None:
        pass

    def discard_buffers(self) -> None:
        self.channel.discard_buffers()  # (drops a close_when_done too, as Chat's does)
        self.flags.stop = True
        if self.flags.when_done and not self.flags.aborted:
            self.flags.closed = self.flags.when_done = False

    def pause_reading(self) -> None:
        self.flags.paused = True


def run_chat(events: bool, script: list[list[Action]], budget: int | None,
             chunks: list[bytes], outside: dict[int, TerminatorLike], eof: bool) -> list[object]:
    log: list[object] = []
    todo = [list(step) for step in script]
    flags = _Flags()

    class Base(Chat):
        terminator = b"\n"
        frame_budget = budget

        def protocol_error(self, error: ProtocolError) -> None:
            log.append(type(error))

        def eof_received(self, unframed: bytes) -> None:
            log.append(("EOF", unframed))

    class Frames_(Base):
        def found_frame(self, frame: bytes) -> None:
            log.append(frame)
            _act(todo.pop(0) if todo else [], self, self.channel, log, flags)

    class Events_(Base):
        def collect_incoming_data(self, data: bytes) -> None:
            log.append(data)
            _act(todo.pop(0) if todo else [], self, self.channel, log, flags)

        def found_terminator(self) -> None:
            log.append("END")
            _act(todo.pop(0) if todo else [], self, self.channel, log, flags)

    chat = Events_() if events else Frames_()
    harness = ChatHarness(chat)

    def resume() -> None:
        while chat.reading_paused and not harness.lost:
            chat.resume_reading()
            harness.feed()

    for i, chunk in enumerate(chunks):
        harness.feed(chunk)
        resume()
        if i in outside and not harness.lost and not chat.closing:
            chat.set_terminator(outside[i])  # outside a callback: it feeds b"" itself
            if chat.input_backlog:
                harness.feed()  # the driver goes on with a backlog (and only then)
            resume()
    if eof:
        harness.feed_eof()
    return log


def run_eager(events: bool, script: list[list[Action]], chunks: list[bytes],
              outside: dict[int, TerminatorLike], eof: bool) -> list[object]:
    log: list[object] = []
    todo = [list(step) for step in script]
    flags = _Flags()
    channel = Channel(b"\n")
    verbs = _Reference(channel, flags)

    def callback(item: object) -> bool:
        """Log *item*, run its actions; True if the loop must end here."""
        if not events:
            log.append(item)
        elif isinstance(item, Data):
            log.append(item.data)
        else:
            log.append("END")
        _act(todo.pop(0) if todo else [], verbs, channel, log, flags)
        if flags.error:
            flags.error = False
            if not flags.closed:
                log.append(FrameTooLarge)
            flags.closed = True
        stop, flags.stop = flags.stop, False
        return stop or flags.closed or flags.paused

    def run(chunk: bytes) -> None:
        if flags.closed:
            return
        try:
            for item in channel.receive(chunk) if events else channel.frames(chunk):
                if callback(item):
                    break
            else:
                # A frame too large that a switch found past the loop's next frame is
                # raised by the next call (Channel.set_terminator); stepwise, by the loop.
                for item in () if events else channel.frames():
                    if callback(item):
                        break
        except FrameTooLarge:
            log.append(FrameTooLarge)
            flags.closed = True

    def resume() -> None:
        while flags.paused and not flags.closed:
            flags.paused = False
            run(b"")

    run(b"")
    for i, chunk in enumerate(chunks):
        run(chunk)
        resume()
        if i in outside and not flags.closed:
            channel.set_terminator(outside[i])
            run(b"")
            resume()
    if eof and not flags.closed:
        try:
            if not events:
                for frame in channel.frames():
                    if callback(frame):
                        break
            if not flags.closed:
                unframed = bytearray()
                for event in channel.receive_eof():
                    if events:
                        if isinstance(event, (Data, TerminatorFound)) and callback(event):
                            break
                    elif isinstance(event, Data):
                        unframed += event.data
                    elif isinstance(event, TerminatorFound):
                        callback(bytes(unframed))
                        unframed.clear()
                        if flags.closed:
                            break
                if not flags.closed:
                    log.append(("EOF", bytes(unframed)))
        except FrameTooLarge:
            log.append(FrameTooLarge)
    return log


def _no_close_after_a_switch(script: list[list[Action]]) -> list[list[Action]]:
    """*script* without close_when_done, close or pause_reading after its first switch
    (the divergence of test_nothing_is_dispatched_after_a_switch_then_a_close)."""
    out: list[list[Action]] = []
    switched = False
    for step in script:
        out.append([a for a in step if not (switched and str(a[0]) in "CXP")])
        switched = switched or any(a[0] == "T" for a in step)
    return out


_streams = st.binary(max_size=30).map(lambda raw: bytes(ALPHABET[b % 4] for b in raw))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.sampled_from([None, 1, 2, 3]), _streams, st.booleans(), st.data())
def test_a_scripted_handler_sees_what_the_eager_core_gives(
    events: bool, budget: int | None, stream: bytes, eof: bool, data: st.DataObject
) -> None:
    """Switches (bytes, ints incl. 0, tuples, None, limits) in found_frame,
    collect_incoming_data and found_terminator, with close_when_done, close,
    discard_buffers, take_unframed, pause_reading, set_terminator outside a callback, small
    frame budgets and end of stream, for any cut of the input."""
    script = data.draw(actions(limits=not events, pauses=budget is None))
    if events:
        script = _no_close_after_a_switch(script)
    chunks = data.draw(chunkings(stream))
    outside = data.draw(st.dictionaries(st.integers(0, 4), terminators(ALPHABET), max_size=2))
    assert run_chat(events, script, budget, chunks, outside, eof) == run_eager(
        events, script, chunks, outside, eof)


# ---------------------------------------------------------------- cost of a switch

RESP = b"$5\r\nhello\r\n"  # a header line, then a counted value: a switch on every frame


def _resp_frames(terms: list[TerminatorLike], budget: int | None) -> Chat:
    class Switching(Chat):
        terminator = terms[0]
        frame_budget = budget
        count = 0

        def found_frame(self, frame: bytes) -> None:
            self.count += 1
            self.set_terminator(terms[self.count % len(terms)])

    return Switching()


def _resp_events(terms: list[TerminatorLike], budget: int | None, in_collect: bool) -> Chat:
    class Switching(Chat):
        terminator = terms[0]
        frame_budget = budget
        count = 0

        def collect_incoming_data(self, data: bytes) -> None:
            if in_collect:  # (between the Data and its end: the end is owed)
                self.set_terminator(terms[(self.count + 1) % len(terms)])

        def found_terminator(self) -> None:
            self.count += 1
            if not in_collect:
                self.set_terminator(terms[self.count % len(terms)])

    return Switching()


COSTLY: dict[str, tuple[Callable[[int | None], Chat], bytes]] = {
    "found_frame bytes/int": (lambda b: _resp_frames([b"\r\n", 7], b), RESP),
    "found_frame tuple/int": (lambda b: _resp_frames([(b"\r\n", b"XYZ"), 7], b), RESP),
    "found_frame int 0/bytes": (lambda b: _resp_frames([b"\n", 0], b), b"abc\n"),
    "found_frame tuple pending/int": (
        lambda b: _resp_frames([(b"\r", b"\r\n"), 7], b), RESP),
    "found_terminator bytes/int": (lambda b: _resp_events([b"\r\n", 7], b, False), RESP),
    "found_terminator int 0": (lambda b: _resp_events([b"\n", 0], b, False), b"abc\n"),
    "collect_incoming_data bytes/bytes": (
        lambda b: _resp_events([b"\r\n", b";"], b, True), b"$5\r\nhello;"),
}


@pytest.mark.skipif(COMPILED, reason="counts through a patched method (pure build only)")
@pytest.mark.parametrize("budget", [None, 1, 3])
@pytest.mark.parametrize("case", sorted(COSTLY))
def test_switching_on_every_frame_takes_back_each_byte_once_at_most(
    monkeypatch: pytest.MonkeyPatch, case: str, budget: int | None
) -> None:
    """Whatever the terminator kinds, the hook that switches and the frame budget: the bytes
    a switch takes back stay within one pass over the read (quadratic before stepwise)."""
    taken_back: list[int] = []
    original: Any = Channel._raw

    def counting(self: Channel, keep: object) -> bytes:
        raw: bytes = original(self, keep)
        taken_back.append(len(raw))
        return raw

    monkeypatch.setattr(Channel, "_raw", counting)
    make, unit = COSTLY[case]
    chat = make(budget)
    values = 600
    ChatHarness(chat).feed(unit * values)
    assert chat.count >= values  # type: ignore[attr-defined]
    assert sum(taken_back) <= len(unit) * values


# ---------------------------------------------------------------- compat.asynchat

_compat_terms = st.one_of(
    st.binary(min_size=1, max_size=3).map(lambda raw: bytes(ALPHABET[b % 4] for b in raw)),
    st.integers(0, 6),
    st.none(),
)
_compat_steps = st.lists(
    st.one_of(st.tuples(st.just("T"), _compat_terms),
              st.sampled_from(["B", "Z", "D", "C"]).map(lambda k: (k, None))),
    max_size=12,
)


class _OneChunkPerRead:
    """Just enough socket: each recv() returns the next chunk (pipelined input in one)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def recv(self, size: int) -> bytes:
        chunk = self.chunks.pop(0)
        assert len(chunk) <= size
        return chunk


def _run_compat(base: type[Any], script: list[tuple[str, object]], chunks: list[bytes],
                in_collect: bool) -> list[object]:
    """Feed *chunks* to an `async_chat` of *base* whose found_terminator (and, with
    *in_collect*, collect_incoming_data) runs the steps of *script* in turn."""
    log: list[object] = []
    todo = list(script)

    class Scripted(base):  # type: ignore[misc]
        def collect_incoming_data(self, data: bytes) -> None:
            log.append(data)
            if in_collect and todo and todo[0][0] == "T":
                self.set_terminator(todo.pop(0)[1])

        def found_terminator(self) -> None:
            log.append(("END", self.get_terminator()))
            if not todo:
                return
            kind, value = todo.pop(0)
            if kind == "T":
                self.set_terminator(value)
            elif kind == "B":
                log.append(("ac_in_buffer", self.ac_in_buffer))  # type: ignore[has-type]
            elif kind == "Z":
                self.ac_in_buffer = b""
            elif kind == "D":
                self.discard_buffers()
            else:
                self.close_when_done()
            log.append(("then", self.get_terminator()))

    chat = Scripted(sock=None, map={})
    chat.set_terminator(b"\n")
    chat.socket = _OneChunkPerRead()
    chat.connected = True
    for chunk in chunks:
        chat.socket.chunks.append(chunk)
        chat.handle_read()
    return log


def _data_joined(log: list[object]) -> list[object]:
    out: list[object] = []
    for item in log:
        if isinstance(item, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += item
        elif item != b"":
            out.append(item)
    return out


@settings(max_examples=150, deadline=None)
@given(_compat_steps, _streams, st.data())
def test_compat_switching_in_found_terminator_matches_stdlib_asynchat(
    script: list[tuple[str, object]], stream: bytes, data: st.DataObject
) -> None:
    """The oracle: Python 3.11's own asynchat, switching (bytes, ints, 0, None) in
    found_terminator, reading or dropping ac_in_buffer, discard_buffers, close_when_done,
    with any cut (one cut: every value pipelined in one read)."""
    std_asynchat = pytest.importorskip("asynchat")
    from sanschat.compat import asynchat

    chunks = data.draw(chunkings(stream))
    assert _data_joined(_run_compat(asynchat.async_chat, script, chunks, False)) == (
        _data_joined(_run_compat(std_asynchat.async_chat, script, chunks, False)))


@settings(max_examples=150, deadline=None)
@given(_compat_steps, _streams, st.data())
def test_compat_stepwise_equals_compat_eager_with_switches_in_collect(
    script: list[tuple[str, object]], stream: bytes, data: st.DataObject
) -> None:
    """Switches in collect_incoming_data too (where stdlib's int countdown breaks): the
    compat layer on a stepwise channel makes exactly the calls it makes on an eager one."""
    from sanschat.compat import asynchat

    chunks = data.draw(chunkings(stream))
    stepwise = _run_compat(asynchat.async_chat, script, chunks, True)
    saved = asynchat._stepwise
    asynchat._stepwise = lambda channel: channel  # (the channels stay eager)
    try:
        eager = _run_compat(asynchat.async_chat, script, chunks, True)
    finally:
        asynchat._stepwise = saved
    assert stepwise == eager
