"""Backpressure, fair rounds and thread verbs after close, on every driver, over 127.0.0.1.

The same claims as the harness tests in ``tests/test_chat.py``, checked from the outside
with plain blocking sockets: each driver honours `Chat.frame_budget`,
`Chat.pause_until_drained` and `Chat.written`, sets ``TCP_NOTSENT_LOWAT``, and drops a
``push_threadsafe`` that arrives after ``close_threadsafe`` without losing the output
that the close was to flush.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import ClassVar

import pytest
from netutil import TIMEOUT, ServerStarter, connect, recv_exactly, recv_until_eof, wait_for

from sanschat import Chat
from sanschat.drivers import NOTSENT_LOWAT
from sanschat.examples import ChatMember, ChatRoom


class Kept(Chat):
    """Echo that keeps every instance, for the test to look at from outside."""

    terminator = b"\n"
    made: ClassVar[list[Kept]] = []

    def connection_made(self) -> None:
        type(self).made.append(self)

    def found_frame(self, frame: bytes) -> None:
        self.push(frame + b"\n")


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT")
def test_accepted_tcp_sockets_get_notsent_lowat(serve: ServerStarter) -> None:
    class Lowat(Kept):
        made: ClassVar[list[Kept]] = []

    server = serve(Lowat)
    with connect(server) as sock:
        sock.sendall(b"hi\n")
        assert recv_exactly(sock, 3) == b"hi\n"
        raw = Lowat.made[0].transport.get_extra_info("socket")
        lowat = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
    assert lowat == NOTSENT_LOWAT


def test_a_read_past_the_frame_budget_is_echoed_whole_and_in_order(serve: ServerStarter) -> None:
    class Tiny(Kept):
        frame_budget = 3
        made: ClassVar[list[Kept]] = []

    server = serve(Tiny)
    payload = b"".join(b"line %d\n" % i for i in range(2000))
    with connect(server) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload


def test_a_long_read_does_not_hold_another_client_until_it_is_done(
    serve: ServerStarter,
) -> None:
    """One frame per round: the other client's request is answered between two frames of
    the long read, not after all of them."""
    done = []

    class Slow(Chat):
        terminator = b"\n"
        frame_budget = 1

        def found_frame(self, frame: bytes) -> None:
            if frame.startswith(b"slow"):
                time.sleep(0.005)  # blocks the loop, as costly handler work would
                done.append(frame)
            else:
                self.push(b"pong %d\n" % len(done))

    server = serve(Slow)
    with connect(server) as hog, connect(server) as other:
        hog.sendall(b"slow\n" * 400)  # 2 s of work if dispatched in one go
        wait_for(lambda: len(done) > 0, "the long read to start")
        other.sendall(b"ping\n")
        reply = b""
        while not reply.endswith(b"\n"):
            reply += other.recv(100)
        assert int(reply.split()[1]) < 400, "the ping waited for the whole long read"


def test_a_chat_room_sender_is_paused_by_a_full_member_and_nothing_is_lost(
    serve: ServerStarter,
) -> None:
    pauses = []

    class Member(ChatMember):
        high_water = 8 * 1024

        def pause_until_drained(self, target: Chat) -> None:
            pauses.append(target)
            super().pause_until_drained(target)

    room = ChatRoom()
    server = serve(lambda: Member(room))
    lines = [b"%06d " % i + b"x" * 90 for i in range(20_000)]  # ~2 MiB
    payload = b"\n".join(lines) + b"\n"
    with connect(server) as reader, connect(server) as talker:
        wait_for(lambda: len(room.members) == 2, "both members to join")
        sender = threading.Thread(target=talker.sendall, args=(payload,), daemon=True)
        sender.start()
        wait_for(lambda: bool(pauses), "the talker to be paused by the reader's queue")
        got = recv_exactly(reader, len(payload) + len(lines))  # each line ends in \r\n
        sender.join(TIMEOUT)
    assert got.split(b"\r\n")[:-1] == lines
    assert room.dropped == 0


def test_a_silent_chat_member_is_dropped_with_a_reason_after_its_sendq_timeout(
    serve: ServerStarter,
) -> None:
    class Member(ChatMember):
        high_water = 8 * 1024
        sendq_timeout = 0.3

    room = ChatRoom()
    server = serve(lambda: Member(room))
    with connect(server) as silent, connect(server) as talker:
        wait_for(lambda: len(room.members) == 2, "both members to join")
        flood = (b"y" * 99 + b"\n") * 40_000  # more than the kernel buffers on the way

        def send() -> None:
            with contextlib.suppress(OSError):  # closed under it, once the test has seen enough
                talker.sendall(flood)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        wait_for(lambda: room.dropped == 1, "the silent member to be dropped")
        tail = recv_until_eof(silent)[-200:]
        talker.shutdown(socket.SHUT_RDWR)
        sender.join(TIMEOUT)
    assert tail.endswith(b"; closing\r\n")
    assert b"*** SendQ exceeded: " in tail


class Racing(Chat):
    """On ``go``: a thread pushes numbered lines, then ``close_threadsafe``, then a late
    push; a second thread pushes at the same time.  Counts what was dropped."""

    terminator = b"\n"
    made: ClassVar[list[Racing]] = []
    LINES = 50

    def connection_made(self) -> None:
        type(self).made.append(self)

    def found_frame(self, frame: bytes) -> None:
        def closer() -> None:
            for i in range(self.LINES):
                self.push_threadsafe(b"a%d\n" % i)
            self.close_threadsafe()
            self.push_threadsafe(b"late\n")

        def other() -> None:
            for i in range(self.LINES):
                self.push_threadsafe(b"b%d\n" % i)

        for target in (closer, other):
            threading.Thread(target=target, daemon=True).start()


def test_the_thread_close_race_loses_nothing_in_200_rounds(
    serve: ServerStarter, caplog: pytest.LogCaptureFixture
) -> None:
    class Race(Racing):
        made: ClassVar[list[Racing]] = []

    server = serve(Race)
    with caplog.at_level(logging.WARNING, logger="sanschat"):
        for _ in range(200):
            with connect(server) as sock:
                sock.sendall(b"go\n")
                got = recv_until_eof(sock).split(b"\n")[:-1]
            chat = Race.made[-1]
            assert [line for line in got if line.startswith(b"a")] == [
                b"a%d" % i for i in range(Racing.LINES)]
            others = [line for line in got if line.startswith(b"b")]
            assert others == [b"b%d" % i for i in range(len(others))]
            wait_for(lambda chat=chat, others=others: chat.late_pushes
                     == 1 + Racing.LINES - len(others), "every late push to be counted")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
