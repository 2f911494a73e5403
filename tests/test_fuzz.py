"""`sanschat.fuzz`: the decoder, the invariant checks, and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sanschat
from sanschat.fuzz import check_channel, check_protocol, decode, main
from sanschat.testing import transcript


@given(st.binary(max_size=300))
def test_every_input_decodes_to_a_valid_case_and_passes_the_core_invariants(data: bytes) -> None:
    case = decode(data)
    assert case.script and case.sizes and case.abandon
    check_channel(data)


def test_decoding_is_deterministic() -> None:
    data = bytes(range(256)) * 2
    assert decode(data) == decode(data)


@pytest.mark.skipif(
    sanschat.COMPILED, reason="compiled code calls _take directly: monkeypatching cannot reach it"
)
def test_check_channel_rejects_a_core_that_loses_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from sanschat import _channel, _readers

    def lossy_take(buf: bytearray, size: int, end: int) -> bytes:
        data = bytes(buf[: max(0, size - 1)])  # drops the last byte of every piece
        del buf[:end]
        return data

    monkeypatch.setattr(_readers, "take", lossy_take)
    monkeypatch.setattr(_channel, "take", lossy_take)
    with pytest.raises(AssertionError):
        for seed in range(50):
            check_channel(bytes([1, 0, 10, 3, 5, 1, 0]) + b"abc\n" * (seed + 1))


def test_check_protocol_flags_an_answer_that_depends_on_the_cut() -> None:
    from test_testing import NaiveLines

    target = check_protocol(NaiveLines)
    with pytest.raises(AssertionError, match="depends on how the input is cut"):
        target(bytes([0, 0, 0, 0, 0, 0, 1, 0]) + b"hello\n")
    assert transcript(NaiveLines(), [b"hello\n"]).sent == b"line: hello\n"


def test_check_protocol_accepts_the_http_example() -> None:
    from sanschat.examples import HTTPRequestHandler

    target = check_protocol(HTTPRequestHandler)
    for data in (b"", b"\x00" * 8 + b"GET / HTTP/1.0\r\n\r\n", bytes(range(200))):
        target(data)


def test_main_runs_a_bounded_hypothesis_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--engine", "hypothesis", "--runs", "200", "--seconds", "30"]) == 0
    assert "no finding" in capsys.readouterr().out


def test_main_refuses_a_bad_budget() -> None:
    with pytest.raises(SystemExit):
        main(["--runs", "0"])


def test_main_refuses_a_target_without_a_factory() -> None:
    with pytest.raises(SystemExit, match="module:Factory"):
        main(["--target", "sanschat.examples"])


def test_command_line_finds_the_naive_protocol_bug() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sanschat.fuzz",
            "--engine",
            "hypothesis",
            "--runs",
            "300",
            "--target",
            "test_testing:NaiveLines",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )
    assert result.returncode != 0
    assert "depends on how the input is cut" in result.stdout + result.stderr
