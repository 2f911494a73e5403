"""Fixtures for the driver tests: run servers on any driver, talk to them with plain sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from netutil import ServerStarter

from sanschat import Chat
from sanschat.drivers import BackgroundServer, start_server


@pytest.fixture
def serve(driver: str) -> Iterator[ServerStarter]:
    """Start servers on the current driver; every one is stopped after the test."""
    started: list[BackgroundServer] = []

    def start(factory: Callable[[], Chat]) -> BackgroundServer:
        server = start_server(driver, factory)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
