"""Shared test configuration: hypothesis profiles bounded for CI, and the driver fixture."""

from __future__ import annotations

import importlib.util
import os

import pytest
from hypothesis import HealthCheck, settings

from sanschat.drivers import DRIVERS

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def _available(driver: str) -> bool:
    return driver != "trio" or importlib.util.find_spec("trio") is not None


@pytest.fixture(params=[d for d in DRIVERS if _available(d)])
def driver(request: pytest.FixtureRequest) -> str:
    """Each driver in turn (trio only where it is installed)."""
    name: str = request.param
    return name
