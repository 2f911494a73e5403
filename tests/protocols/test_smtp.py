"""`sanschat.protocols.smtp` without sockets: replies, dot-stuffing, limits, cut-invariance."""

from __future__ import annotations

from typing import ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st

from sanschat.protocols.smtp import Envelope, SMTPServer
from sanschat.testing import ChatHarness, assert_same_for_every_chunking, transcript
from sanschat.testing.strategies import chunkings

SESSION = (
    b"EHLO client.example\r\n"
    b"MAIL FROM:<a@example.org> SIZE=40 BODY=8BITMIME\r\n"
    b"RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\n"
    b"DATA\r\n"
    b"Subject: hi\r\n\r\n..a dot line\r\ncaf\xc3\xa9\r\n.\r\n"
    b"QUIT\r\n"
)


def codes(reply: bytes) -> list[bytes]:
    """The reply codes of the final lines of each reply (``250-`` continuations skipped)."""
    return [line[:3] for line in reply.split(b"\r\n") if line and line[3:4] != b"-"]


def session(data: bytes, server: SMTPServer | None = None) -> tuple[ChatHarness, bytes]:
    harness = ChatHarness(server or SMTPServer(), catch=False)
    return harness, harness.feed(data)


class Tiny(SMTPServer):
    max_message_size: ClassVar[int] = 30
    max_recipients: ClassVar[int] = 2


def test_greets_on_connect() -> None:
    harness = ChatHarness(SMTPServer(), catch=False)
    assert harness.sent == b"220 sanschat.localhost ESMTP sanschat\r\n"


def test_a_pipelined_session_delivers_the_message_with_dot_stuffing_undone() -> None:
    harness, reply = session(SESSION)
    assert codes(reply) == [b"250", b"250", b"250", b"250", b"354", b"250", b"221"]
    assert b"250-SIZE 10485760\r\n250-8BITMIME\r\n250 PIPELINING\r\n" in reply
    assert harness.chat.messages == [
        Envelope(
            b"a@example.org",
            [b"b@example.org", b"c@example.org"],
            b"Subject: hi\r\n\r\n.a dot line\r\ncaf\xc3\xa9\r\n",
        )
    ]
    assert harness.closed


def test_deliver_callback_receives_the_envelope() -> None:
    got: list[Envelope] = []
    session(SESSION, SMTPServer(got.append))
    assert [e.rcpt_tos for e in got] == [[b"b@example.org", b"c@example.org"]]


def test_an_empty_message_is_delivered_empty() -> None:
    harness, _ = session(b"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<b@c>\r\nDATA\r\n.\r\n")
    assert [(e.mail_from, e.data) for e in harness.chat.messages] == [(b"", b"")]


def test_commands_out_of_order_are_refused_with_503() -> None:
    _, reply = session(
        b"MAIL FROM:<a@b>\r\nHELO x\r\nRCPT TO:<b@c>\r\nDATA\r\n"
        b"MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nDATA\r\n"
    )
    assert codes(reply) == [b"503", b"250", b"503", b"503", b"250", b"503", b"503"]


def test_syntax_errors_are_refused_with_5xx() -> None:
    _, reply = session(
        b"HELO\r\nEHLO\r\nHELO x\r\nMAIL TO:<a@b>\r\nMAIL FROM:a@b\r\n"
        b"MAIL FROM:<a@b> AUTH=x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<>\r\nRCPT FROM:<x@y>\r\n"
        b"VRFY\r\nDATA now\r\nBOGUS\r\n\r\n"
    )
    assert codes(reply) == [
        b"501", b"501", b"250", b"501", b"501", b"555", b"250", b"501", b"501",
        b"501", b"501", b"500", b"500",
    ]  # fmt: skip


def test_vrfy_252_noop_rset_help_and_verbs_in_any_case() -> None:
    harness, reply = session(
        b"helo x\r\nvrfy someone\r\nNoOp\r\nmail from:<a@b>\r\nrset\r\nrcpt to:<c@d>\r\nhelp\r\n"
    )
    assert codes(reply) == [b"250", b"252", b"250", b"250", b"250", b"503", b"214"]
    assert harness.chat.envelope is None


def test_size_parameter_over_the_limit_is_refused_at_mail_from() -> None:
    _, reply = session(b"EHLO x\r\nMAIL FROM:<a@b> SIZE=31\r\nMAIL FROM:<a@b> SIZE=30\r\n", Tiny())
    assert codes(reply) == [b"250", b"552", b"250"]
    assert b"250-SIZE 30\r\n" in reply


def test_a_message_over_the_limit_is_counted_dropped_and_refused_after_the_dot() -> None:
    body = b"".join(b"line %d\r\n" % i for i in range(10))  # 80 bytes > 30
    harness, reply = session(
        b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + body + b".\r\n"
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nok\r\n.\r\n",
        Tiny(),
    )
    assert codes(reply) == [b"250", b"250", b"250", b"354", b"552", b"250", b"250", b"354", b"250"]
    assert [e.data for e in harness.chat.messages] == [b"ok\r\n"]


def test_too_many_recipients_get_452() -> None:
    _, reply = session(
        b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<1@x>\r\nRCPT TO:<2@x>\r\nRCPT TO:<3@x>\r\n",
        Tiny(),
    )
    assert codes(reply) == [b"250", b"250", b"250", b"250", b"452"]


def test_quit_ignores_what_was_pipelined_behind_it() -> None:
    harness, reply = session(b"QUIT\r\nNOOP\r\n")
    assert codes(reply) == [b"221"] and harness.closed


def test_a_line_just_under_the_limit_is_a_command() -> None:
    assert SMTPServer.max_frame_size == 510
    _, reply = session(b"NOOP " + b"x" * 505 + b"\r\n")
    assert codes(reply) == [b"250"]


def test_a_command_line_over_the_limit_gets_500_after_earlier_replies_then_close() -> None:
    harness = ChatHarness(SMTPServer())
    reply = harness.feed(b"NOOP\r\nNOOP " + b"x" * 600 + b"\r\nNOOP\r\n")
    assert codes(reply) == [b"250", b"500"] and harness.closed


def test_a_message_line_longer_than_the_message_limit_gets_552_then_close() -> None:
    harness = ChatHarness(Tiny())
    reply = harness.feed(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + b"y" * 40)
    assert codes(reply) == [b"250", b"250", b"250", b"354", b"552"] and harness.closed


def test_same_answer_for_every_two_and_three_piece_cut_of_a_short_session() -> None:
    assert_same_for_every_chunking(
        SMTPServer, b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.x\r\n.\r\n",
        max_pieces=3,
    )  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_same_answer_however_a_session_is_cut(data: st.DataObject) -> None:
    chunks = data.draw(chunkings(SESSION))
    assert transcript(SMTPServer(), chunks) == transcript(SMTPServer(), [SESSION])


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_same_answer_however_an_over_long_line_is_cut(data: st.DataObject) -> None:
    stream = b"NOOP\r\nNOOP " + b"x" * 520 + b"\r\nNOOP\r\n"
    chunks = data.draw(chunkings(stream, max_chunks=6))
    assert transcript(SMTPServer(), chunks) == transcript(SMTPServer(), [stream])
