"""``python -m sanschat``: serve prints one line, answers, and exits 0 on a signal; demo passes."""

from __future__ import annotations

import importlib.util
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sanschat.drivers import DRIVERS

TIMEOUT = 30.0
AVAILABLE = [d for d in DRIVERS if d != "trio" or importlib.util.find_spec("trio")]


def _readline(process: subprocess.Popen[str]) -> str:
    """The server's first line of output, waited for with a bound."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(TIMEOUT), "the server printed nothing in time"
    return process.stdout.readline()


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(TIMEOUT)
        if process.stdout:
            process.stdout.close()


def _serve(spawn: list[subprocess.Popen[str]], *args: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sanschat", "serve", *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    spawn.append(process)
    line = _readline(process)
    match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
    assert match, f"unexpected first line {line!r}"
    return process, int(match.group(1))


@pytest.mark.parametrize("driver", AVAILABLE)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_echo_answers_and_exits_0_on_a_signal(
    spawn: list[subprocess.Popen[str]], driver: str, signum: int
) -> None:
    process, port = _serve(spawn, "echo", "--driver", driver, "--port", "0")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"hello\r\nwor")
        sock.sendall(b"ld\r\n")
        reply = b""
        while len(reply) < 14:
            reply += sock.recv(1024)
    assert reply == b"hello\r\nworld\r\n"
    process.send_signal(signum)
    assert process.wait(TIMEOUT) == 0
    assert process.stdout is not None and process.stdout.read() == ""  # exactly one line


def test_serve_enforces_max_frame(spawn: list[subprocess.Popen[str]]) -> None:
    process, port = _serve(spawn, "echo", "--max-frame", "8")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"12345678\r\n")
        assert sock.recv(100) == b"12345678\r\n"
        sock.sendall(b"123456789")
        assert sock.recv(100) == b""  # closed: the frame is over the limit
    process.send_signal(signal.SIGINT)
    assert process.wait(TIMEOUT) == 0


def test_serve_refuses_an_unknown_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sanschat", "serve", "ftp"],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert "invalid choice: 'ftp'" in result.stderr


def test_serve_reports_a_port_in_use(spawn: list[subprocess.Popen[str]]) -> None:
    _, port = _serve(spawn, "echo")
    result = subprocess.run(
        [sys.executable, "-m", "sanschat", "serve", "echo", "--port", str(port)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 1
    assert "cannot serve echo" in result.stderr


def test_demo_runs_every_server_on_every_driver_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sanschat", "demo"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for driver in AVAILABLE:
        for server in ("echo", "chat", "http"):
            assert any(line.split()[:3] == [driver, server, "ok"] for line in lines), (
                driver, server, result.stdout)
    assert "all servers answered" in lines[-1]
