"""`SmartcarGateway.fetch_signals` on v3 against the simulator: one code, several, and what cannot be read."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from eventstore.vehicles import SignalUpdate
from smartcar_simulator.testing import RunningSimulator
from testsupport.workers import store_minted
from workers.runtime import Runtime

SOC = "tractionbattery-stateofcharge"
LOCKED = "closure-islocked"
FUEL = "internalcombustionengine-fuellevel"
NOT_CAPABLE = {"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"}


def _electric(sim: RunningSimulator, runtime: Runtime, scope: list[str] | None = None) -> dict[str, Any]:
    """A battery-electric vehicle of the simulator's fleet (no fuel tank), its tokens in `runtime`."""
    vehicle = next(v for v in sim.control.vehicles() if v["powertrain"] == "BEV")
    sim.control.patch_vehicle(vehicle["id"], soc=0.61, locked=True)
    tokens = sim.control.mint_tokens([vehicle["id"]], scope=scope)
    store_minted(runtime.tokens, tokens)
    return {**vehicle, "user_id": tokens.user_id}


def _by_code(updates: list[SignalUpdate]) -> dict[str, SignalUpdate]:
    return {update.code: update for update in updates}


def test_several_codes_are_read_in_one_list_filtered_to_them(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime]
) -> None:
    runtime = sim_runtime()
    vehicle = _electric(sim, runtime)
    before_ms = int(time.time() * 1000)

    fetched = runtime.gateway.fetch_signals(
        vehicle["id"], [SOC, LOCKED, FUEL, "no-such-signal", SOC], user_id=vehicle["user_id"]
    )

    calls = sim.control.requests(vehicle_id=vehicle["id"])
    assert [(c.method, c.path, c.status) for c in calls] == [
        ("GET", f"/v3/vehicles/{vehicle['id']}/signals", 200)
    ]
    updates = _by_code(fetched.updates)
    assert sorted(updates) == [LOCKED, SOC]  # the list has every signal: only the wanted ones are kept
    assert (updates[SOC].value, updates[LOCKED].value) == (61, True)
    for update in updates.values():
        assert update.source == "v3"
        assert isinstance(update.retrieved_at, int)
        assert update.retrieved_at >= before_ms - 60_000  # epoch milliseconds
        assert update.oem_updated_at is None or isinstance(update.oem_updated_at, int)
    assert fetched.errors == {FUEL: NOT_CAPABLE, "no-such-signal": {"status": "MISSING"}}


def test_signals_outside_the_grant_are_per_signal_errors_in_the_list(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime]
) -> None:
    runtime = sim_runtime()
    vehicle = _electric(sim, runtime, scope=["read_security"])

    fetched = runtime.gateway.fetch_signals(vehicle["id"], [SOC, LOCKED], user_id=vehicle["user_id"])

    assert [u.code for u in fetched.updates] == [LOCKED]
    assert fetched.errors == {SOC: {"type": "PERMISSION", "code": None}}


def test_one_code_is_read_alone(sim: RunningSimulator, sim_runtime: Callable[..., Runtime]) -> None:
    runtime = sim_runtime()
    vehicle = _electric(sim, runtime)

    fetched = runtime.gateway.fetch_signals(vehicle["id"], [SOC, SOC], user_id=vehicle["user_id"])

    calls = sim.control.requests(vehicle_id=vehicle["id"])
    assert [(c.method, c.sub_path) for c in calls] == [("GET", f"signals/{SOC}")]
    assert [(u.code, u.value, u.source) for u in fetched.updates] == [(SOC, 61, "v3")]
    assert isinstance(fetched.updates[0].retrieved_at, int)
    assert fetched.errors == {}


def test_one_code_the_vehicle_cannot_give_is_a_per_signal_error(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime]
) -> None:
    runtime = sim_runtime()
    vehicle = _electric(sim, runtime, scope=["read_security", "read_fuel"])
    user_id = vehicle["user_id"]

    assert runtime.gateway.fetch_signals(vehicle["id"], [FUEL], user_id=user_id).errors == {FUEL: NOT_CAPABLE}
    assert runtime.gateway.fetch_signals(vehicle["id"], [SOC], user_id=user_id).errors == {
        SOC: {"type": "PERMISSION", "code": None}
    }
    missing = runtime.gateway.fetch_signals(vehicle["id"], ["no-such-signal"], user_id=user_id)
    assert (missing.updates, missing.errors) == (
        [],
        {"no-such-signal": {"type": "RESOURCE_NOT_FOUND", "code": "PATH"}},
    )
