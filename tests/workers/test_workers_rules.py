"""The built-in handlers' quieter decisions, with the simulator as Smartcar: a follow-up configured for other
triggers fetches nothing; the charging rule sends nothing when no state of charge is known, whether the car
has no traction battery or the delivery's value is not a number."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from smartcar_simulator.testing import RunningSimulator
from testsupport.workers import accept_event, store_minted
from workers.process import Outcome, RunResult, process_event
from workers.runtime import Runtime

SOC = "tractionbattery-stateofcharge"
Maker = Callable[..., dict[str, Any]]


def _result(outcome: RunResult, handler: str) -> Any:
    assert outcome.outcome is Outcome.DONE, outcome
    return outcome.detail["results"][handler]["result"]


def test_a_follow_up_for_other_triggers_fetches_nothing(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(follow_up_signals={"closure-islocked": [SOC]})
    vehicle = connect(runtime)
    body = state_event(vehicle, {"charge-ischarging": True}, triggers=["charge-ischarging"])
    assert _result(process_event(runtime, accept_event(client, key_prefix, body)), "follow-up") is None
    assert sim.control.requests(vehicle_id=vehicle["id"]) == []


def test_the_charging_rule_decides_nothing_for_a_car_without_a_traction_battery(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    state_event: Maker,
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True)
    vehicle = next(v for v in sim.control.vehicles() if v["powertrain"] == "ICE")
    minted = sim.control.mint_tokens([vehicle["id"]])
    store_minted(runtime.tokens, minted)
    body = state_event({**vehicle, "user_id": minted.user_id}, {"closure-islocked": True})
    rule = _result(process_event(runtime, accept_event(client, key_prefix, body)), "charging-rule")
    assert rule["decision"] == "no state of charge known"
    assert rule["soc"] is None
    assert rule["follow_up"]["errors"][SOC]["type"] == "COMPATIBILITY"  # asked, and the car has none
    assert sim.control.requests(vehicle_id=vehicle["id"], method="POST") == []


def test_the_charging_rule_ignores_a_state_of_charge_that_is_not_a_number(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True)
    vehicle = connect(runtime, soc=0.95, charging=True, plugged_in=True, charge_limit=1.0)
    body = state_event(
        vehicle,
        {SOC: "unknown", "charge-ischarging": True, "charge-ischargingcableconnected": True},
    )
    rule = _result(process_event(runtime, accept_event(client, key_prefix, body)), "charging-rule")
    # What the delivery carries is taken as the latest state: not a number, so no decision to stop.
    assert (rule["soc"], rule["charging"], rule["decision"]) == (None, True, "no state of charge known")
    assert sim.control.requests(vehicle_id=vehicle["id"], method="POST") == []
    assert sim.control.vehicle(vehicle["id"])["state"]["charging"] is True
