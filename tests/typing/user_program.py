"""A program that uses sanschat as a typed user would; CI checks it with ``mypy --strict``
and ``pyright`` in strict mode (``[tool.pyright]`` in pyproject.toml), and
``tests/test_typing.py`` runs it.

Each ``# type: ignore[code]`` below marks a call that must NOT type-check: mypy
(``warn_unused_ignores``, part of --strict) and pyright (``reportUnnecessaryTypeIgnoreComment``)
both fail if such a line becomes accepted.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import trio

from sanschat import (
    Channel,
    Chat,
    Data,
    EndOfStream,
    Event,
    Producer,
    ProducerLike,
    TerminatorFound,
)
from sanschat.drivers import trio as trio_driver
from sanschat.testing import ChatHarness

if sys.version_info >= (3, 11):
    from typing import assert_never, assert_type
else:  # pragma: no cover - Python 3.10
    from typing_extensions import assert_never, assert_type


def describe(event: Event) -> str:
    """Exhaustive over the closed union: removing a case is a type error at assert_never."""
    match event:
        case Data(data=data):
            return f"data {data!r}"
        case TerminatorFound(terminator=terminator):
            return f"end {terminator!r}"
        case EndOfStream(incomplete=incomplete):
            return "eof incomplete" if incomplete else "eof"
        case _:
            assert_never(event)


def describe_badly(event: Event) -> str:
    """Not exhaustive: EndOfStream reaches assert_never, which the checkers refuse."""
    match event:
        case Data():
            return "data"
        case TerminatorFound():
            return "end"
        case _:
            assert_never(event)  # type: ignore[arg-type]


class Greeter(Chat):
    """Answers each line with a greeting naming the peer's host."""

    terminator = b"\n"
    max_frame_size = 1024

    def found_frame(self, frame: bytes) -> None:
        peer = self.peername
        assert_type(peer, "tuple[str, int] | tuple[str, int, int, int] | str | None")
        host = peer[0] if isinstance(peer, tuple) else "somewhere"
        self.push(b"hello " + frame + b" at " + host.encode() + b"\n")
        self.set_terminator(b"\n", max_frame_size=2048)


class Countdown:
    """A producer by structure: it has more(), and nothing else is needed."""

    def __init__(self, count: int) -> None:
        self.count = count

    def more(self) -> bytes:
        if self.count == 0:
            return b""
        self.count -= 1
        return b"%d\n" % self.count


def lines() -> Iterator[bytes]:
    yield b"one\n"
    yield b"two\n"


def send_side() -> bytes:
    channel = Channel(None)
    producer: Producer = Countdown(2)
    source: ProducerLike = lines()
    channel.push_with_producer(producer)
    channel.push_with_producer(source)
    channel.push_with_producer([b"three\n", bytearray(b"four\n")])
    with contextlib.suppress(TypeError):
        channel.push_with_producer(10)  # type: ignore[arg-type]
    with contextlib.suppress(TypeError):
        channel.push_with_producer("text")  # type: ignore[arg-type]
    with contextlib.suppress(TypeError):
        channel.set_terminator(b"\n", max_frame_size="big")  # type: ignore[call-overload]
    return bytes(channel.data_to_send())


async def serve_greeter() -> None:
    """Not run by the test: the trio driver's types, checked statically."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio_driver.serve, Greeter)
        print(listeners)
        nursery.cancel_scope.cancel()


def main() -> list[str]:
    """Return what the typed calls above did, so that the test can check it."""
    channel = Channel(b"\r\n", max_frame_size=64)
    channel.set_terminator(b"\r\n")
    described = [describe(event) for event in channel.receive(b"GET\r\ntail")]
    described += [describe(event) for event in channel.receive_eof()]
    assert describe_badly(Data(b"x")) == "data"
    assert ChatHarness(Greeter()).feed(b"you\n") == b"hello you at 127.0.0.1\n"
    assert send_side() == b"1\n0\none\ntwo\nthree\nfour\n"
    return described


if __name__ == "__main__":
    print(main())
