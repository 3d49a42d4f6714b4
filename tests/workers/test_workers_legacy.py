"""Legacy 2.0 deliveries get the 4.0 handlers where their content allows: v2 reads and charging events feed
the vehicle's state and the charging rule; what cannot be read is said, not retried; a type with no
handler at all ends done, and is counted as such."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import redis

from smartcar_simulator import payloads
from smartcar_simulator.testing import RunningSimulator
from testsupport.workers import accept_event
from workers.handlers import IS_CHARGING, PLUGGED_IN, SOC
from workers.process import Outcome, process_event
from workers.registry import HandlerRegistry
from workers.runtime import Runtime

Maker = Callable[..., dict[str, Any]]
CHARGING = {"soc": 0.9, "charging": True, "plugged_in": True, "charge_limit": 1.0}


def _reads(soc: float, *, charging: bool) -> list[dict[str, Any]]:
    return [
        payloads.legacy_data_item("/battery", {"range": 300.0, "percentRemaining": soc}),
        payloads.legacy_data_item(
            "/charge", {"isPluggedIn": True, "state": "CHARGING" if charging else "NOT_CHARGING"}
        ),
    ]


def _stored(runtime: Runtime, vehicle_id: str) -> dict[str, Any]:
    return {code: signal.value for code, signal in runtime.vehicles.signals(vehicle_id).items()}


def test_a_scheduled_delivery_feeds_the_state_and_the_charging_rule(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True)
    vehicle = connect(runtime, 0, **CHARGING)
    body = payloads.legacy_event(
        "scheduled", webhook_id="wh-legacy", vehicle_id=vehicle["id"], data=_reads(0.9, charging=True)
    )
    result = process_event(runtime, accept_event(client, key_prefix, body))
    assert result.outcome is Outcome.DONE, result.detail
    results = result.detail["results"]
    assert results["legacy-readings"]["result"]["vehicles"][vehicle["id"]]["values"] >= 3
    assert _stored(runtime, vehicle["id"])[SOC] == 90.0
    assert _stored(runtime, vehicle["id"])[PLUGGED_IN] is True
    rule = results["charging-rule"]["result"]
    assert rule["decision"] == "stop_charge"
    assert rule["command"]["how"] == "sent"
    assert len(sim.control.requests(vehicle_id=vehicle["id"], method="POST", path="charge")) == 1


def test_a_delivery_of_several_vehicles_stores_each_and_leaves_the_rule_alone(
    client: redis.Redis, key_prefix: str, sim_runtime: Callable[..., Runtime]
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    body = payloads.legacy_event(
        "dynamic", webhook_id="wh-legacy", vehicle_id=first, data=_reads(0.5, charging=False)
    )
    body["payload"]["vehicles"].append(
        {"vehicleId": second, "requestId": "r2", "data": _reads(0.7, charging=True)}
    )
    body["payload"]["vehicles"].append({"vehicleId": 42})  # not a vehicle: counted, skipped
    result = process_event(runtime, accept_event(client, key_prefix, body))
    assert result.outcome is Outcome.DONE, result.detail
    stored = result.detail["results"]["legacy-readings"]["result"]["vehicles"]
    assert stored["unreadable"] == 1
    assert _stored(runtime, first)[SOC] == 50.0
    assert _stored(runtime, second)[IS_CHARGING] is True
    assert result.detail["results"]["charging-rule"]["result"] == {
        "decision": "not for a delivery of several vehicles"
    }


def test_reads_that_cannot_be_read_are_said_and_not_retried(
    client: redis.Redis, key_prefix: str, sim_runtime: Callable[..., Runtime]
) -> None:
    runtime = sim_runtime()
    vehicle_id = str(uuid.uuid4())
    body = payloads.legacy_event("scheduled", webhook_id="wh-legacy", vehicle_id=vehicle_id)
    body["payload"]["vehicles"][0]["data"] = ["not an item", 7]
    failed_read = payloads.legacy_data_item("/odometer", {"statusCode": 500}, code=500)
    other = {
        "vehicleId": str(uuid.uuid4()),
        "data": [failed_read, payloads.legacy_data_item("/fuel", {"x": 1})],
    }
    body["payload"]["vehicles"].append(other)
    result = process_event(runtime, accept_event(client, key_prefix, body))
    assert result.outcome is Outcome.DONE, result.detail
    stored = result.detail["results"]["legacy-readings"]["result"]["vehicles"]
    assert "unreadable" in stored[vehicle_id]
    assert stored[other["vehicleId"]]["values"] == 0
    assert "odometer-traveleddistance" in stored[other["vehicleId"]]["failed"]


def test_a_legacy_charging_event_is_the_vehicles_charging_state(
    client: redis.Redis, key_prefix: str, sim_runtime: Callable[..., Runtime]
) -> None:
    runtime = sim_runtime()
    vehicle_id = str(uuid.uuid4())
    started = payloads.legacy_event(
        "eventBased", webhook_id="wh", vehicle_id=vehicle_id, event_type="CHARGING_STARTED",
        event_time="2026-12-01T10:00:00.000Z",
    )  # fmt: skip
    result = process_event(runtime, accept_event(client, key_prefix, started))
    assert result.detail["results"]["legacy-charging-event"]["result"] == {"charging": True}
    assert _stored(runtime, vehicle_id)[IS_CHARGING] is True
    older = payloads.legacy_event(
        "eventBased", webhook_id="wh", vehicle_id=vehicle_id, event_type="CHARGING_COMPLETED",
        event_time="2026-12-01T09:00:00.000Z",
    )  # fmt: skip
    result = process_event(runtime, accept_event(client, key_prefix, older))
    assert result.detail["results"]["legacy-charging-event"]["result"] == {"charging": False}
    assert _stored(runtime, vehicle_id)[IS_CHARGING] is True  # the newer event still stands
    odd = json.loads(json.dumps(started))
    odd["payload"].update(eventId=str(uuid.uuid4()), eventType="PLUGGED_IN")
    result = process_event(runtime, accept_event(client, key_prefix, odd))
    assert "ignored" in result.detail["results"]["legacy-charging-event"]["result"]


def test_a_type_without_a_handler_is_done_and_counted(
    client: redis.Redis, key_prefix: str, make_runtime: Callable[..., Runtime]
) -> None:
    runtime = make_runtime(handlers=HandlerRegistry())
    body = payloads.legacy_event("eventBased", webhook_id="wh", vehicle_id=str(uuid.uuid4()))
    result = process_event(runtime, accept_event(client, key_prefix, body))
    assert result.outcome is Outcome.DONE
    assert result.detail["results"] == {"no_handler": "no handler is registered for LEGACY_EVENTBASED"}
    counted = runtime.metrics.registry.get_sample_value(
        "smartcar_events_total", {"outcome": "no_handler", "type": "LEGACY_EVENTBASED"}
    )
    assert counted == 1
