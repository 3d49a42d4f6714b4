"""Helpers shared by the simulator's tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from smartcar_simulator.testing import RunningSimulator

T = TypeVar("T")


def first(simulator: RunningSimulator, powertrain: str) -> dict[str, Any]:
    """The first vehicle of the fleet with this powertrain (the test seed has BEVs, PHEVs and an ICE)."""
    return next(vehicle for vehicle in simulator.control.vehicles() if vehicle["powertrain"] == powertrain)


def wait_for(probe: Callable[[], T], timeout: float = 10.0) -> T:
    """Poll `probe` until it returns something truthy, and return that; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {probe}")
        time.sleep(0.02)
