"""Plain blocking socket helpers for the driver tests (all bounded in time)."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from sanschat import Chat
from sanschat.drivers import BackgroundServer

#: What the ``serve`` fixture gives a test: start a server for a chat factory.
ServerStarter = Callable[[Callable[[], Chat]], BackgroundServer]

TIMEOUT = 10.0  # seconds any single wait in these tests may take before it fails


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until *condition* holds; the loops under test run in other threads."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def connect(server: BackgroundServer) -> socket.socket:
    """A blocking client socket connected to *server*, with a bounded timeout."""
    sock = socket.create_connection(server.address, timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly *size* bytes (fails on EOF or timeout)."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def recv_until_eof(sock: socket.socket) -> bytes:
    """Read until the peer closes (fails on timeout)."""
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def read_paths(driver: ModuleType, other: str, by: str) -> Any:
    """An autouse fixture, ``read_path``, that runs every test of a driver's module twice:
    plain TCP connections read by the driver's shared poller (``"poller"``, where the
    platform has epoll), and read the other way (*other*: each *by* ...), as on the other
    platforms; it sets the driver's ``_SHARED_POLL`` for the test."""

    @pytest.fixture(autouse=True, params=["poller", other])
    def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
        if request.param == "poller" and not hasattr(select, "epoll"):
            pytest.skip(f"no epoll: TCP connections are read by {by}")
        monkeypatch.setattr(driver, "_SHARED_POLL", request.param == "poller")
        return str(request.param)

    return read_path
