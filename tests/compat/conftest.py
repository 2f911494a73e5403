"""Fixtures of the compat tests: the module pairs, the loop drivers, private socket maps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from compat_util import Env, Mods, get_mods

# (module pair, loop driver): the stdlib has no asyncio runner.
ENVS = [
    ("stdlib", "select"),
    ("stdlib", "poll"),
    ("sanschat", "select"),
    ("sanschat", "poll"),
    ("sanschat", "asyncio"),
]


@pytest.fixture(params=["stdlib", "sanschat"])
def mods(request: pytest.FixtureRequest) -> Mods:
    """Each module pair in turn; the stdlib's is skipped where Python no longer has it."""
    found = get_mods(request.param)
    if found is None:
        pytest.skip("asynchat/asyncore are not in this Python (removed in 3.12)")
    return found


@pytest.fixture(params=ENVS, ids=["-".join(pair) for pair in ENVS])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    """A module pair, a loop driver and a private socket map, closed after the test."""
    name, driver = request.param
    found = get_mods(name)
    if found is None:
        pytest.skip("asynchat/asyncore are not in this Python (removed in 3.12)")
    environment = Env(found, driver)
    yield environment
    environment.close()
