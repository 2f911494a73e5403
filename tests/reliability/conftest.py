"""Fixtures for the reliability suite; the scenarios live in ``benchmarks/reliability.py``.

The scenario code is shared with ``benchmarks/reliability_report.py`` (one copy, no
duplication), so this directory puts ``benchmarks/`` on ``sys.path`` to import it.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)
