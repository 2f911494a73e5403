"""The server-wide limits under attack (``benchmarks/reliability.py``, section 4), on every
driver, at the ``tiny`` scale in the default run; the slow run repeats them at
``SANSCHAT_RELIABILITY_SCALE`` (``test_reliability.py``), the report at ``full``."""

from __future__ import annotations

import pytest
import reliability
from reliability import SCALES, Scenario
from test_reliability import check


@pytest.mark.parametrize("scenario", reliability.LIMITS, ids=lambda s: s.slug)
def test_limit_holds_under_attack_with_its_figures(driver: str, scenario: Scenario) -> None:
    outcome = scenario.run(driver, SCALES["tiny"])
    check(outcome)
    assert scenario.summary is not None
    assert scenario.summary(outcome)  # every figure the report prints is there
