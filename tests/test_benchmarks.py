"""The benchmark scripts' own logic, without timing anything (CI never runs them in full)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


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
