"""Fixtures for the simulator's tests: one simulator per session, reset before each test that uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smartcar_simulator.testing import RunningSimulator, run_simulator

FLEET_SIZE = 12
SEED = 7


@pytest.fixture(scope="session")
def shared_simulator() -> Iterator[RunningSimulator]:
    with run_simulator(vehicles=FLEET_SIZE, seed=SEED) as running:
        yield running


@pytest.fixture
def simulator(shared_simulator: RunningSimulator) -> RunningSimulator:
    """The session's simulator, back to its seeded state (no tokens, faults, limits or latency)."""
    shared_simulator.control.reset()
    return shared_simulator


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
