"""Python 3.11 asynchat/asyncore programs, with only their import changed, still work.

``compat_example_http.py`` (the asynchat documentation's HTTP handler, completed) and
``compat_example_chat.py`` (a small chat server) are written for Python 3.11's modules,
with one line changed: ``from sanschat.compat import asynchat, asyncore``.  Each runs in a
subprocess of the Python running the tests (so on 3.13 this is the issue's "runs
unchanged" check) and is talked to over loopback.  Where Python still has the stdlib
modules, the same program with its original ``import asynchat, asyncore`` line runs too,
and must give the same answers, byte for byte.
"""

from __future__ import annotations

import re
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from compat_util import TIMEOUT, blocking_client, stdlib_mods

HERE = Path(__file__).parent
COMPAT_IMPORT = "from sanschat.compat import asynchat, asyncore  # was: import asynchat, asyncore"
STDLIB_IMPORT = "import asynchat, asyncore"


@pytest.fixture(params=["sanschat", "stdlib"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Which import the program runs with."""
    if request.param == "stdlib" and stdlib_mods() is None:
        pytest.skip("asynchat/asyncore are not in this Python (removed in 3.12)")
    name: str = request.param
    return name


@contextmanager
def running(program: str, flavour: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """Run *program* (a file next to this one) on an ephemeral port; yield its address."""
    path = HERE / program
    if flavour == "stdlib":
        source = path.read_text()
        assert COMPAT_IMPORT in source
        path = tmp_path / program
        path.write_text(source.replace(COMPAT_IMPORT, STDLIB_IMPORT))
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(path), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        assert ready, "the program did not start listening"
        line = proc.stdout.readline()
        match = re.fullmatch(r"listening on (\S+):(\d+)\n", line)
        assert match, f"unexpected first line {line!r}"
        yield match[1], int(match[2])
        assert proc.poll() is None, "the program exited"
    finally:
        proc.terminate()
        try:
            _, errors = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, errors = proc.communicate(timeout=TIMEOUT)
    assert "Traceback" not in errors, errors


def _exchange(address: tuple[str, int], *pieces: bytes) -> bytes:
    """Send *pieces* one by one, then read until the server closes."""
    with blocking_client(address) as sock:
        for piece in pieces:
            sock.sendall(piece)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
        return bytes(data)


def _reply(body: bytes) -> bytes:
    head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
    return head % len(body) + body


def test_http_handler_from_the_asynchat_docs(flavour: str, tmp_path: Path) -> None:
    with running("compat_example_http.py", flavour, tmp_path) as address:
        assert _exchange(address, b"GET /hello HTTP/1.0\r\n\r\n") == _reply(b"you asked for /hello")
        assert _exchange(
            address,
            b"POST /echo HTTP/1.0\r\nContent-Le",
            b"ngth: 11\r\n\r",
            b"\nhello",
            b" worldEXTRA BYTES A BROWSER SENT",
        ) == _reply(b"hello world")
        assert _exchange(
            address,
            b"POST /form HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 7\r\n\r\na=1&b=2",
        ) == _reply(b"[('a', ['1']), ('b', ['2'])]")
        assert _exchange(address, b"POST /empty HTTP/1.0\r\nContent-Length: 0\r\n\r\n") == (
            _reply(b"")
        )
        big = bytes(range(256)) * 1000
        request = b"POST /big HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(big)
        assert _exchange(address, request, big) == _reply(big)


class _Line:
    """A chat client reading lines with a bounded timeout."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = blocking_client(address)
        self.file = self.sock.makefile("rb")

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\n")

    def read(self) -> bytes:
        return self.file.readline()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_chat_server(flavour: str, tmp_path: Path) -> None:
    with running("compat_example_chat.py", flavour, tmp_path) as address:
        alice = _Line(address)
        bob = _Line(address)
        try:
            assert alice.read() == b"name?\n"
            alice.send(b"alice")
            assert alice.read() == b"welcome alice\n"
            assert bob.read() == b"name?\n"
            bob.send(b"bob")
            assert bob.read() == b"welcome bob\n"
            assert alice.read() == b"* bob joined\n"
            bob.send(b"hi alice\r")
            assert alice.read() == b"bob: hi alice\n"
            alice.send(b"/quit")
            assert alice.read() == b"bye\n"
            assert alice.read() == b""  # closed once the goodbye was sent
            assert bob.read() == b"* alice left\n"
            bob.sock.shutdown(socket.SHUT_WR)
            assert bob.read() == b""
        finally:
            alice.close()
            bob.close()
