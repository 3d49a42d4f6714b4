"""Vehicle state ordered by oemUpdatedAt, and vehicle errors, through the built-in handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from eventstore.keys import KeySpace
from eventstore.vehicles import SignalUpdate, VehicleStateStore
from smartcar_simulator import payloads
from testsupport.workers import accept_event
from workers.api import HandlerContext, HandlerRegistry
from workers.handlers import vehicle_state
from workers.process import Outcome, process_event
from workers.runtime import Runtime


def test_newer_oem_time_wins_whatever_the_arrival_order(client: redis.Redis, key_prefix: str) -> None:
    store = VehicleStateStore(client, KeySpace(key_prefix))
    newer = SignalUpdate("tractionbattery-stateofcharge", {"value": 80}, 2_000, 2_100)
    older = SignalUpdate("tractionbattery-stateofcharge", {"value": 60}, 1_000, 3_000)
    assert store.merge("v1", [newer], event_id="e2") == ["tractionbattery-stateofcharge"]
    assert store.merge("v1", [older], event_id="e1") == []
    state = store.signals("v1")["tractionbattery-stateofcharge"]
    assert state.value == 80
    assert state.event_id == "e2"
    assert state.oem_updated_at == 2_000


def test_same_oem_time_is_ordered_by_retrieval_and_unknown_times_only_fill_gaps(
    client: redis.Redis, key_prefix: str
) -> None:
    store = VehicleStateStore(client, KeySpace(key_prefix))
    store.merge("v1", [SignalUpdate("closure-islocked", {"value": True}, 1_000, 1_000)], event_id="a")
    store.merge("v1", [SignalUpdate("closure-islocked", {"value": False}, 1_000, 1_500)], event_id="b")
    assert store.signals("v1")["closure-islocked"].value is False
    # No timestamps at all: stored when nothing is known, never over a timed value.
    assert (
        store.merge("v1", [SignalUpdate("closure-islocked", {"value": True}, None, None)], event_id="c") == []
    )
    assert store.merge("v1", [SignalUpdate("charge-voltage", {"value": 230}, None, None)], event_id="c") == [
        "charge-voltage"
    ]
    assert store.signals("v1")["charge-voltage"].value == 230


def test_vehicle_state_handler_keeps_the_newest_value_per_signal(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
) -> None:
    runtime = make_runtime()
    vehicle = car()
    soc = "tractionbattery-stateofcharge"
    late = state_event(vehicle, {soc: 55, "charge-ischarging": True}, oem_ms=1_700_000_002_000)
    early = state_event(vehicle, {soc: 40, "charge-ischarging": False}, oem_ms=1_700_000_001_000)
    # The later reading is delivered first; the earlier one arrives afterwards and must not win.
    for body in (late, early):
        assert process_event(runtime, accept_event(client, key_prefix, body)).outcome is Outcome.DONE
    signals = runtime.vehicles.signals(vehicle["id"])
    assert signals[soc].value == 55
    assert signals["charge-ischarging"].value is True
    record = runtime.store.load(early["eventId"])
    assert record is not None
    assert record.results["vehicle-state"]["result"] == {"signals": 2, "values": 2, "failed": []}


def test_failed_signals_are_reported_not_stored(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    car: Callable[..., dict[str, Any]],
) -> None:
    runtime = make_runtime()
    vehicle = car()
    items = [
        payloads.signal_item(
            "closure-islocked",
            name="IsLocked",
            group="Closure",
            body={"value": True},
            oem_updated_at=5,
            retrieved_at=5,
        ),
        payloads.signal_item(
            "location-isathome",
            name="IsAtHome",
            group="Location",
            body=None,
            oem_updated_at=None,
            retrieved_at=None,
            error={"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"},
        ),
    ]
    body = payloads.vehicle_state_event(
        vehicle, items, webhook_id="wh", triggers=["closure-islocked"], shape="B"
    )
    event_id = accept_event(client, key_prefix, body)
    assert process_event(runtime, event_id).outcome is Outcome.DONE
    assert list(runtime.vehicles.signals(vehicle["id"])) == ["closure-islocked"]
    record = runtime.store.load(event_id)
    assert record is not None
    assert record.results["vehicle-state"]["result"]["failed"] == ["location-isathome"]


def test_vehicle_errors_are_kept_with_their_state(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    car: Callable[..., dict[str, Any]],
) -> None:
    runtime = make_runtime()
    vehicle = car()
    raised = payloads.vehicle_error_event(
        vehicle, [{"type": "VEHICLE_STATE", "code": "UNREACHABLE", "state": "ERROR"}], webhook_id="wh"
    )
    resolved = payloads.vehicle_error_event(
        vehicle, [{"type": "VEHICLE_STATE", "code": "UNREACHABLE", "state": "RESOLVED"}], webhook_id="wh"
    )
    raised["meta"]["deliveredAt"] = 1_700_000_000_000
    resolved["meta"]["deliveredAt"] = 1_700_000_060_000
    assert process_event(runtime, accept_event(client, key_prefix, raised)).outcome is Outcome.DONE
    opened = runtime.vehicles.errors(vehicle["id"])["VEHICLE_STATE:UNREACHABLE"]
    assert opened["state"] == "ERROR"
    assert opened["suggested_user_message"]
    assert process_event(runtime, accept_event(client, key_prefix, resolved)).outcome is Outcome.DONE
    errors = runtime.vehicles.errors(vehicle["id"])
    assert errors["VEHICLE_STATE:UNREACHABLE"]["state"] == "RESOLVED"
    assert errors["VEHICLE_STATE:UNREACHABLE"]["event_id"] == resolved["eventId"]
    # A late redelivery of the older ERROR does not reopen it.
    again = payloads.vehicle_error_event(
        vehicle, [{"type": "VEHICLE_STATE", "code": "UNREACHABLE", "state": "ERROR"}], webhook_id="wh"
    )
    again["meta"]["deliveredAt"] = 1_700_000_030_000
    assert process_event(runtime, accept_event(client, key_prefix, again)).outcome is Outcome.DONE
    assert runtime.vehicles.errors(vehicle["id"])["VEHICLE_STATE:UNREACHABLE"]["state"] == "RESOLVED"


def test_an_iso_delivery_time_orders_vehicle_errors_like_milliseconds(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    car: Callable[..., dict[str, Any]],
) -> None:
    """`meta.deliveredAt` as ISO-8601 with a zone is the moment it names, as the receiver reads it."""
    runtime = make_runtime()
    vehicle = car()

    def deliver(state: str, delivered_at: object) -> str:
        event = payloads.vehicle_error_event(
            vehicle, [{"type": "VEHICLE_STATE", "code": "ASLEEP", "state": state}], webhook_id="wh"
        )
        event["meta"]["deliveredAt"] = delivered_at
        assert process_event(runtime, accept_event(client, key_prefix, event)).outcome is Outcome.DONE
        return str(event["eventId"])

    def stored() -> dict[str, Any]:
        return runtime.vehicles.errors(vehicle["id"])["VEHICLE_STATE:ASLEEP"]

    deliver("ERROR", "2023-11-14T22:13:20.000Z")  # 1_700_000_000_000 ms
    assert (stored()["state"], stored()["at"]) == ("ERROR", 1_700_000_000_000)
    resolved = deliver("RESOLVED", 1_700_000_060_123)
    assert (stored()["state"], stored()["at"]) == ("RESOLVED", 1_700_000_060_123)
    # A late ERROR delivered in between, in ISO with an offset, is older: it does not reopen the error.
    deliver("ERROR", "2023-11-14T23:13:50+01:00")  # 1_700_000_030_000 ms
    assert (stored()["state"], stored()["event_id"]) == ("RESOLVED", resolved)
    # An ERROR delivered later, in ISO, is newer than the RESOLVED in milliseconds.
    reopened = deliver("ERROR", "2023-11-14T22:15:00.5+00:00")  # 1_700_000_100_500 ms
    assert (stored()["state"], stored()["at"], stored()["event_id"]) == (
        "ERROR",
        1_700_000_100_500,
        reopened,
    )


def test_a_run_reads_its_own_staged_values_and_keeps_them_when_it_fails(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
) -> None:
    soc = "tractionbattery-stateofcharge"
    seen: list[Any] = []

    def read_then_fail(ctx: HandlerContext) -> None:
        seen.append(ctx.signal_value(soc))  # what vehicle-state staged, merged before the read
        ctx.store_signals([SignalUpdate("odometer-traveleddistance", {"value": 7}, 1, 1)])
        raise RuntimeError("after the state was staged")

    registry = HandlerRegistry()
    registry.handler("VEHICLE_STATE", name="vehicle-state", order=10)(vehicle_state)
    registry.handler("VEHICLE_STATE", name="read-then-fail", order=20)(read_then_fail)
    runtime = make_runtime(handlers=registry, retry_max_attempts=2, max_countdown=0)
    vehicle = car()
    event_id = accept_event(client, key_prefix, state_event(vehicle, {soc: 64}))
    assert process_event(runtime, event_id).outcome is Outcome.RETRY
    assert seen == [64]
    assert runtime.vehicles.signals(vehicle["id"])["odometer-traveleddistance"].value == 7  # merged by retry
    client.delete(KeySpace(key_prefix).vehicle_signals(vehicle["id"]))
    assert process_event(runtime, event_id).outcome is Outcome.DEAD
    # vehicle-state finished in the first run and is skipped; the failing handler's value is merged again.
    assert list(runtime.vehicles.signals(vehicle["id"])) == ["odometer-traveleddistance"]
