"""The reliability figures, each backed by a test that fails if the behaviour regresses.

Every scenario of ``benchmarks/reliability.py`` runs on every driver: at the ``tiny`` scale
in the default run (seconds in all), and the scenarios that grow with the scale again under
``-m slow`` at ``SANSCHAT_RELIABILITY_SCALE`` (``small`` unless set; ``full`` is what
``benchmarks/reliability_report.py --scale full`` prints).  A scenario's `Outcome` lists
every problem it saw and the byte accounting; each test asserts there is no problem and no
byte lost silently.
"""

from __future__ import annotations

import pytest
import reliability
from reliability import SCALES, Outcome, Scenario, scale_from_env

TINY = SCALES["tiny"]


def check(outcome: Outcome) -> None:
    assert outcome.ok, outcome.describe()
    assert outcome.silent == 0, outcome.describe()
    assert outcome.sent > 0, "a scenario that sends nothing proves nothing"


def ids(scenario: Scenario) -> str:
    return scenario.slug


@pytest.mark.parametrize("scenario", reliability.FAULTS, ids=ids)
def test_fault_is_survived_and_every_byte_accounted_for(driver: str, scenario: Scenario) -> None:
    check(scenario.run(driver, TINY))


@pytest.mark.parametrize("scenario", reliability.BAD_INPUTS, ids=ids)
def test_bad_input_is_refused_as_documented_and_disturbs_nothing_else(
    driver: str, scenario: Scenario
) -> None:
    check(scenario.run(driver, TINY))


def test_load_every_frame_comes_back_identical_and_in_order(driver: str) -> None:
    outcome = reliability.load(driver, TINY)
    check(outcome)
    assert outcome.figures["held"] == TINY.connections


@pytest.mark.slow
def test_load_at_scale_holds_every_connection_and_echoes_every_frame(driver: str) -> None:
    scale = scale_from_env()
    outcome = reliability.load(driver, scale)
    check(outcome)
    assert outcome.figures["held"] == scale.connections


@pytest.mark.slow
@pytest.mark.parametrize("scenario", [s for s in reliability.SCENARIOS
                                      if s.scaled and s is not reliability.LOAD], ids=ids)
def test_scenario_at_scale_has_no_problem_and_no_silent_loss(
    driver: str, scenario: Scenario
) -> None:
    check(scenario.run(driver, scale_from_env()))


@pytest.mark.parametrize("scenario", reliability.FANOUT, ids=ids)
def test_fanout_and_fair_rounds_hold_their_bounds(driver: str, scenario: Scenario) -> None:
    """Silent members cost a bounded amount and fresh clients are answered; fast members
    are never dropped; one stall write delays others < 100 ms; the thread close race
    loses nothing (issue 11's numbers, at the tiny scale)."""
    check(scenario.run(driver, TINY))
