"""Fixtures for the driver tests: run servers on any driver, talk to them with plain sockets."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator

import pytest
from netutil import ServerStarter

from sanschat import Chat
from sanschat.drivers import DRIVERS, BackgroundServer, start_server


def _available(driver: str) -> bool:
    return driver != "trio" or importlib.util.find_spec("trio") is not None


@pytest.fixture(params=[d for d in DRIVERS if _available(d)])
def driver(request: pytest.FixtureRequest) -> str:
    """Each driver in turn (trio only where it is installed)."""
    name: str = request.param
    return name


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
