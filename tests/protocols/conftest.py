"""Fixtures for the protocol tests: servers on every driver, stopped after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sanschat import Chat
from sanschat.drivers import BackgroundServer, start_server

#: What the ``serve`` fixture gives a test: start a server for a chat factory, get its address.
Serve = Callable[[Callable[[], Chat]], tuple[str, int]]

TIMEOUT = 10.0  # seconds any one client operation may take before the test fails


@pytest.fixture
def serve(driver: str) -> Iterator[Serve]:
    """Start servers on the current driver (see the ``driver`` fixture); all stop after."""
    started: list[BackgroundServer] = []

    def start(factory: Callable[[], Chat]) -> tuple[str, int]:
        server = start_server(driver, factory)
        started.append(server)
        host, port = server.address[:2]
        return host, port

    yield start
    for server in started:
        server.stop()
