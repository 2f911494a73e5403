"""The protocol servers judged by real clients (smtplib, aiosmtplib, redis-py, pymemcache),
over loopback, on every driver.  Every client call is bounded by a timeout."""

from __future__ import annotations

import asyncio
import email.message
import email.policy
import os
import re
import select
import signal
import smtplib
import socket
import subprocess
import sys
from typing import ClassVar

import aiosmtplib
import pymemcache
import pytest
import redis
from conftest import TIMEOUT, Serve
from pymemcache.client.base import Client as MemcacheClient

from sanschat import protocols
from sanschat.protocols.memcached import MemcachedServer, Store
from sanschat.protocols.resp import RESPServer
from sanschat.protocols.smtp import Envelope, SMTPServer

POLICY = email.policy.default  # messages travel with CRLF line ends; parsed with LF here

# ---------------------------------------------------------------- helpers


def raw_exchange(address: tuple[str, int], request: bytes) -> bytes:
    """Send *request* on a plain socket and read until the server closes (bounded)."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(request)
        reply = bytearray()
        while chunk := sock.recv(65536):
            reply += chunk
    return bytes(reply)


def mailbox_server(serve: Serve, cls: type[SMTPServer] = SMTPServer) -> tuple[
    tuple[str, int], list[Envelope]
]:  # fmt: skip
    mailbox: list[Envelope] = []
    return serve(lambda: cls(mailbox.append)), mailbox


class SmallSMTP(SMTPServer):
    max_message_size: ClassVar[int] = 2000


# ---------------------------------------------------------------- SMTP


def test_smtplib_send_message_is_delivered(serve: Serve) -> None:
    (host, port), mailbox = mailbox_server(serve)
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.org", "hi"
    message.set_content("Hello over sanschat.\n")
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as client:
        assert client.send_message(message) == {}
    (envelope,) = mailbox
    assert (envelope.mail_from, envelope.rcpt_tos) == (b"a@example.org", [b"b@example.org"])
    received = email.message_from_bytes(envelope.data.replace(b"\r\n", b"\n"), policy=POLICY)
    assert received["Subject"] == "hi"
    assert received.get_content() == "Hello over sanschat.\n"


def test_smtplib_sendmail_to_several_recipients_with_dot_lines_and_8bit(serve: Serve) -> None:
    (host, port), mailbox = mailbox_server(serve)
    body = (
        b"Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\n"
        b"caf\xc3\xa9 \xff\x80 8-bit\r\nlast\r\n"
    )
    recipients = ["one@example.org", "two@example.org", "three@example.org"]
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as client:
        assert client.ehlo()[0] == 250
        assert client.has_extn("8bitmime") and client.has_extn("size")
        refused = client.sendmail("me@example.org", recipients, body, ["BODY=8BITMIME"])
        assert refused == {}
        assert client.verify("someone")[0] == 252
        assert client.noop()[0] == 250
        assert client.rset()[0] == 250
    (envelope,) = mailbox
    assert envelope.rcpt_tos == [r.encode() for r in recipients]
    assert envelope.data == body  # dot-stuffing undone, every byte kept


def test_smtplib_too_large_message_is_refused_at_mail_from(serve: Serve) -> None:
    (host, port), mailbox = mailbox_server(serve, SmallSMTP)
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.org", ["b@example.org"], b"x" * 5000)
        assert refused.value.smtp_code == 552
        # and without SIZE=, after the data: counted and dropped, then 552
        client.ehlo()
        assert client.mail("a@example.org")[0] == 250
        assert client.rcpt("b@example.org")[0] == 250
        long_message = b"".join(b"%d: a line of a long message\r\n" % i for i in range(100))
        assert client.data(long_message)[0] == 552
        # the session goes on
        assert client.sendmail("a@example.org", ["b@example.org"], b"small\r\n") == {}
    assert [e.data for e in mailbox] == [b"small\r\n"]


def test_smtp_line_too_long_answers_500_and_closes(serve: Serve) -> None:
    address = serve(SMTPServer)
    reply = raw_exchange(address, b"HELO me\r\nNOOP " + b"x" * 600 + b"\r\nNOOP\r\n")
    lines = reply.split(b"\r\n")
    assert lines[0].startswith(b"220 ") and lines[1].startswith(b"250 ")
    assert lines[2].startswith(b"500 ") and lines[3:] == [b""]


def test_aiosmtplib_sends_a_message(serve: Serve) -> None:
    (host, port), mailbox = mailbox_server(serve)
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = "x@example.org", "y@example.org", "aio"
    message.set_content("sent by aiosmtplib\n.with a dot line\n")

    async def send() -> None:
        errors, _ = await aiosmtplib.send(
            message, hostname=host, port=port, timeout=TIMEOUT, start_tls=False
        )
        assert errors == {}

    asyncio.run(send())
    (envelope,) = mailbox
    received = email.message_from_bytes(envelope.data.replace(b"\r\n", b"\n"), policy=POLICY)
    assert received.get_content() == "sent by aiosmtplib\n.with a dot line\n"


# ---------------------------------------------------------------- RESP


def test_redis_py_commands(serve: Serve) -> None:
    host, port = serve(RESPServer.factory())
    with redis.Redis(host=host, port=port, socket_timeout=TIMEOUT, protocol=2) as client:
        assert client.ping() is True
        assert client.echo(b"hello") == b"hello"
        assert client.set("k", "v") is True and client.get("k") == b"v"
        assert client.set("k", "w", nx=True) is None and client.get("k") == b"v"
        assert client.exists("k", "nope") == 1
        assert client.incr("n") == 1 and client.incr("n") == 2
        assert client.mset({"a": b"1", "b": b"2"}) is True
        assert client.mget("a", "missing", "b") == [b"1", None, b"2"]
        assert client.delete("a", "b", "missing") == 2
        assert client.get("missing") is None
        with pytest.raises(redis.ResponseError, match="not an integer"):
            client.incr("k")
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command("NOSUCHCOMMAND")


def test_redis_py_binary_values_and_a_10_mb_value(serve: Serve) -> None:
    host, port = serve(RESPServer.factory())
    tricky = b"a\r\nb\x00c\r\n$5\r\n*1\r\n\x00"
    big = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    with redis.Redis(host=host, port=port, socket_timeout=TIMEOUT, protocol=2) as client:
        assert client.set(tricky, tricky) is True
        assert client.get(tricky) == tricky
        assert client.set("big", big) is True
        assert client.get("big") == big


def test_redis_py_pipeline_of_10000_commands(serve: Serve) -> None:
    host, port = serve(RESPServer.factory())
    with redis.Redis(host=host, port=port, socket_timeout=TIMEOUT, protocol=2) as client:
        pipe = client.pipeline(transaction=False)
        for i in range(5000):
            pipe.set(f"key:{i}", i)
            pipe.incr(f"key:{i}")
        replies = pipe.execute()
        assert replies == [x for i in range(5000) for x in (True, i + 1)]
        with client.pipeline() as transaction:  # MULTI ... EXEC
            transaction.set("t", "1").incr("t").get("t")
            assert transaction.execute() == [True, 2, b"2"]


def test_resp_bulk_length_over_the_limit_is_an_error_then_close(serve: Serve) -> None:
    address = serve(RESPServer.factory())
    reply = raw_exchange(address, b"PING\r\n*2\r\n$4\r\nECHO\r\n$999999999999\r\nPING\r\n")
    assert reply == b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"


# ---------------------------------------------------------------- memcached


def memcache(address: tuple[str, int]) -> MemcacheClient:
    return MemcacheClient(address, timeout=TIMEOUT, connect_timeout=TIMEOUT)


def test_pymemcache_commands(serve: Serve) -> None:
    client = memcache(serve(MemcachedServer.factory()))
    try:
        assert client.set("k", b"value") is True  # noreply, pymemcache's default
        assert client.get("k") == b"value"
        assert client.add("k", b"other", noreply=False) is False
        assert client.add("new", b"1", noreply=False) is True
        assert client.replace("absent", b"x", noreply=False) is False
        assert client.replace("k", b"v2", noreply=False) is True
        assert client.set_many({"a": b"1", "b": b"2"}, noreply=False) == []
        assert client.get_many(["a", "b", "nope"]) == {"a": b"1", "b": b"2"}
        assert client.incr("a", 41) == 42 and client.decr("a", 100) == 0
        assert client.incr("nope", 1) is None
        value, cas = client.gets("b")
        assert value == b"2"
        assert client.cas("b", b"3", cas, noreply=False) is True
        assert client.cas("b", b"4", cas, noreply=False) is False  # cas moved on
        assert client.delete("b", noreply=False) is True
        assert client.delete("b", noreply=False) is False
        assert client.get("b") is None
        assert client.version().startswith(b"1.6")
    finally:
        client.close()


def test_pymemcache_binary_values_and_the_item_limit(serve: Serve) -> None:
    store = Store()
    client = memcache(serve(lambda: MemcachedServer(store)))
    tricky = b"x\r\nEND\r\n\x00VALUE k 0 1\r\n"
    try:
        assert client.set("t", tricky, noreply=False) is True
        assert client.get("t") == tricky
        with pytest.raises(pymemcache.MemcacheServerError, match="too large"):
            client.set("big", b"z" * (MemcachedServer.max_item_size + 1), noreply=False)
        assert client.get("t") == tricky  # (pymemcache reconnects after an error reply)
    finally:
        client.close()


def test_memcached_drops_a_refused_block_and_stays_in_step_on_one_connection(serve: Serve) -> None:
    address = serve(MemcachedServer)
    size = MemcachedServer.max_item_size + 1
    reply = raw_exchange(
        address,
        b"set big 0 0 %d\r\n" % size + b"get x\r\n" * (size // 7) + b"\0" * (size % 7)
        + b"\r\nset k 0 0 1\r\nv\r\nget k big\r\nquit\r\n",
    )  # fmt: skip
    assert reply == (
        b"SERVER_ERROR object too large for cache\r\nSTORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
    )


def test_memcached_key_too_long_is_a_client_error(serve: Serve) -> None:
    address = serve(MemcachedServer)
    reply = raw_exchange(address, b"get " + b"k" * 251 + b"\r\nversion\r\nquit\r\n")
    assert reply == b"CLIENT_ERROR bad command line format\r\nVERSION 1.6.0-sanschat\r\n"


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize("name", ["smtp", "resp", "memcached"])
def test_python_m_sanschat_serves_each_protocol_and_exits_0_on_sigterm(name: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sanschat", "serve", name, "--driver", "asyncio"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        ready = select.select([process.stdout], [], [], TIMEOUT)[0]
        line = process.stdout.readline() if ready else ""
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, f"unexpected first line {line!r}"
        port = int(match.group(1))
        if name == "smtp":
            with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as smtp:
                assert smtp.sendmail("a@b.example", ["c@d.example"], b"hi\r\n") == {}
        elif name == "resp":
            with redis.Redis(port=port, socket_timeout=TIMEOUT, protocol=2) as client:
                assert client.set("k", "v") and client.get("k") == b"v"
        else:
            client = memcache(("127.0.0.1", port))
            assert client.set("k", b"v", noreply=False) and client.get("k") == b"v"
            client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()


def test_the_protocol_factory_refuses_an_unknown_name_and_applies_a_line_limit() -> None:
    with pytest.raises(ValueError, match="unknown protocol 'gopher'"):
        protocols.factory("gopher")
    chat = protocols.factory("resp", max_frame_size=100)()
    assert isinstance(chat, RESPServer) and chat.max_frame_size == 100
    assert protocols.factory("smtp")().max_frame_size == SMTPServer.max_frame_size
