"""Fixtures for the reliability suite; the scenarios live in ``benchmarks/reliability.py``.

The scenario code is shared with ``benchmarks/reliability_report.py`` (one copy, no
duplication), so this directory puts ``benchmarks/`` on ``sys.path`` to import it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

from sanschat.drivers import DRIVERS  # noqa: E402


def _available(driver: str) -> bool:
    return driver != "trio" or importlib.util.find_spec("trio") is not None


@pytest.fixture(params=[d for d in DRIVERS if _available(d)])
def driver(request: pytest.FixtureRequest) -> str:
    """Each driver in turn (trio only where it is installed)."""
    name: str = request.param
    return name
