"""Helpers shared by the simulator's tests."""

from __future__ import annotations

from typing import Any

from smartcar_simulator.testing import RunningSimulator


def first(simulator: RunningSimulator, powertrain: str) -> dict[str, Any]:
    """The first vehicle of the fleet with this powertrain (the test seed has BEVs, PHEVs and an ICE)."""
    return next(vehicle for vehicle in simulator.control.vehicles() if vehicle["powertrain"] == powertrain)
