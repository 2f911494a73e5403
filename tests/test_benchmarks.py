"""The benchmark scripts' own logic, without timing anything (CI never runs them in full)."""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TIMEOUT = 10.0


@pytest.fixture
def bench_instructions(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/bench_instructions.py``, imported as the script imports its neighbours."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    for name in ("bench_instructions", "bench_echo", "_report"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("bench_instructions")
    monkeypatch.setattr(module.shutil, "which", lambda _name: "/usr/bin/valgrind")
    return module


def test_the_ping_pong_counts_become_instructions_per_round_trip(
        bench_instructions: ModuleType, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # A fake callgrind: a fixed start-up cost plus a per-round-trip cost of each key's own.
    # (asyncore+asynchat, the ratio's base, is there up to Python 3.11 only.)
    base = "asynchat" if sys.version_info < (3, 12) else "select"
    per_trip = {base: 20_000, "asyncio": 25_000}
    counted: list[tuple[str, int]] = []

    def fake_count(key: str, round_trips: int, workdir: Path,
                   compiled: str | None = None) -> int:
        counted.append((key, round_trips))
        clients: int = bench_instructions.CLIENTS
        return 7_000_000 + per_trip[key] * clients * round_trips

    monkeypatch.setattr(bench_instructions, "count", fake_count)
    assert bench_instructions.main(["--only", f"{base},asyncio", "--short", "10",
                                    "--long", "30"]) == 0
    assert counted == [(base, 10), (base, 30), ("asyncio", 10), ("asyncio", 30)]
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith(("asyncore", "sanschat"))]
    assert len(rows) == 2
    base_row, asyncio_row = rows
    assert "20,000" in base_row and "25,000" in asyncio_row
    if base == "asynchat":
        assert "1.00x" in base_row and "0.80x" in asyncio_row
    else:
        assert asyncio_row.split()[-1] == "-"  # no asyncore: no ratio


def test_the_ping_pong_mode_refuses_bad_round_trip_counts(
        bench_instructions: ModuleType) -> None:
    with pytest.raises(SystemExit):
        bench_instructions.main(["--short", "30", "--long", "10"])
    with pytest.raises(SystemExit):
        bench_instructions.main(["--only", "no-such-server"])


def test_the_core_mode_counts_each_shape_per_read(
        bench_instructions: ModuleType, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    counted: list[tuple[str, str, int]] = []

    def fake_core_count(shape: str, key: str, reads: int, workdir: Path,
                        compiled: str | None = None) -> tuple[int, int]:
        counted.append((shape, key, reads))
        return 1_000_000 + 500 * reads, 4 * reads  # (total instructions, frames found)

    monkeypatch.setattr(bench_instructions, "core_count", fake_core_count)
    shape = next(iter(bench_instructions.CORE_SHAPES))
    key = bench_instructions.DEFAULT_CORE_KEYS[0]
    assert bench_instructions.main(["--core", "--only", key, "--shapes", shape]) == 0
    assert {(s, k) for s, k, _ in counted} == {(shape, key)}
    assert len({reads for _, _, reads in counted}) == 2  # n and 2n reads
    assert capsys.readouterr().out.strip()
    with pytest.raises(SystemExit):
        bench_instructions.main(["--core", "--shapes", "no-such-shape"])


def test_the_switch_shape_runs_only_the_contenders_with_that_protocol(
        bench_instructions: ModuleType, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    counted: list[tuple[str, str, bool]] = []

    def fake_core_count(shape: str, key: str, reads: int, workdir: Path,
                        compiled: str | None = None) -> tuple[int, int]:
        counted.append((shape, key, compiled is not None))
        return 1_000_000 + 9_000 * reads, 3 * reads  # 3 values per read

    monkeypatch.setattr(bench_instructions, "core_count", fake_core_count)
    assert bench_instructions.main(["--core", "--shapes", "switch",
                                    "--compiled-path", "/nowhere"]) == 0
    assert sorted(set(counted)) == [("switch", "asynchat", False), ("switch", "chat", False),
                                    ("switch", "chat", True)]
    out = capsys.readouterr().out
    assert "instructions / value" in out and "3,000" in out  # 9,000 per 3 values


@pytest.mark.parametrize("key", ["chat", "asynchat"])
def test_a_switch_child_checks_the_values_it_framed(
        bench_instructions: ModuleType, key: str, capsys: pytest.CaptureFixture[str]) -> None:
    if key == "asynchat" and sys.version_info >= (3, 12):
        pytest.skip("asynchat left the stdlib in 3.12")
    bench_instructions.core_run("switch", key, 2)  # the first 2 of the 64 KiB reads
    build, values = capsys.readouterr().out.split()
    assert build in ("0", "1")
    assert int(values) == 2 * 65536 // 29  # every value complete in 128 KiB (29 bytes each)


@pytest.fixture
def bench_echo(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/bench_echo.py``, imported as the script imports its neighbours."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    for name in ("bench_echo", "_report"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("bench_echo")


class _Relay:
    """Stands for the pipe to the parent: keeps what the client reports."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object) -> None:
        self.sent.append(message)


def _echo_server(spoil: Callable[[int, bytes], bytes | None]) -> tuple[socket.socket, Any]:
    """A blocking echo server on loopback, a thread per connection; *spoil* (the reply's
    index on its connection, the request) gives the reply to send, or None to close."""
    listener = socket.create_server(("127.0.0.1", 0))

    def connection(sock: socket.socket) -> None:
        with sock:
            sock.settimeout(TIMEOUT)
            index, held = 0, b""
            with contextlib.suppress(OSError):
                while data := sock.recv(4096):
                    held += data
                    while len(held) >= 16:
                        request, held = held[:16], held[16:]
                        reply = spoil(index, request)
                        if reply is None:
                            return
                        # In two writes, so that the client must join a reply's reads.
                        sock.sendall(reply[:5])
                        if index % 7 == 0:
                            time.sleep(0.001)
                        sock.sendall(reply[5:])
                        index += 1

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                sock, _ = listener.accept()
                threading.Thread(target=connection, args=(sock,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return listener, thread


@pytest.fixture
def c_client(bench_echo: ModuleType) -> str:
    program, why = bench_echo.build_c_client()
    if program is None:
        pytest.skip(why)
    return str(program)


def test_the_c_ping_pong_client_checks_every_reply_of_a_correct_server(
        bench_echo: ModuleType, c_client: str) -> None:
    listener, _ = _echo_server(lambda _index, request: request)
    with listener:
        relay = _Relay()
        result = bench_echo.run_pingpong_c(relay, listener.getsockname()[1], clients=4,
                                           round_trips=30, warmup=3, program=c_client)
    assert relay.sent == [("start",), ("end",)]
    assert result["verified"] == result["count"] == 4 * 30
    assert result["seconds"] > 0 and result["client_cpu"] >= 0


@pytest.mark.parametrize("fault", ["one byte changed", "a reply too long", "closed"])
def test_the_c_ping_pong_client_fails_loudly_on_a_wrong_reply(
        bench_echo: ModuleType, c_client: str, fault: str) -> None:
    def spoil(index: int, request: bytes) -> bytes | None:
        if index < 20:
            return request
        if fault == "one byte changed":
            return request[:9] + bytes([request[9] ^ 1]) + request[10:]
        if fault == "a reply too long":
            return request + b"!"
        return None

    listener, _ = _echo_server(spoil)
    with listener, pytest.raises(bench_echo.EchoMismatch) as failure:
        bench_echo.run_pingpong_c(_Relay(), listener.getsockname()[1], clients=3,
                                  round_trips=40, warmup=2, program=c_client)
    expected = {"one byte changed": "differs", "a reply too long": "more bytes",
                "closed": "closed"}[fault]
    assert expected in str(failure.value)
    assert "after 20 round trips" in str(failure.value)


def test_the_c_ping_pong_client_is_built_once_per_source(
        bench_echo: ModuleType, c_client: str) -> None:
    again, how = bench_echo.build_c_client()
    assert again == c_client and "pingpong_client.c" in how
    assert os.access(c_client, os.X_OK)
