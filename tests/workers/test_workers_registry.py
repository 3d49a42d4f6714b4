"""The handler API as a handler author meets it: what the registry refuses (no event type, one name for two
functions), the order handlers run in, and what `HandlerContext` answers (the vehicle, the user, the
latest signal values, the time left) in a real run on real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from testsupport.workers import accept_event
from workers.api import HandlerContext, HandlerRegistry
from workers.handlers import vehicle_state
from workers.process import Outcome, process_event
from workers.runtime import Runtime

SOC = "tractionbattery-stateofcharge"
Maker = Callable[..., dict[str, Any]]


def _noop(ctx: HandlerContext) -> None:
    return None


def _other(ctx: HandlerContext) -> None:
    return None


def test_a_handler_must_name_an_event_type() -> None:
    registry = HandlerRegistry()
    with pytest.raises(ValueError, match="name at least one event type, or '\\*'"):
        registry.handler()
    assert registry.names() == []


def test_one_name_for_two_functions_is_refused_but_registering_again_is_harmless() -> None:
    registry = HandlerRegistry()
    registry.handler("VEHICLE_STATE", name="notify")(_noop)
    # The same module imported twice (a handler module named in WORKERS_HANDLER_MODULES and imported by
    # another one) registers the same function again: nothing changes.
    registry.handler("VEHICLE_STATE", name="notify")(_noop)
    with pytest.raises(ValueError, match="a handler named 'notify' is already registered"):
        registry.handler("VEHICLE_ERROR", name="notify")(_other)
    assert registry.names() == ["notify"]
    assert [h.function for h in registry.for_type("VEHICLE_STATE")] == [_noop]
    assert registry.for_type("VEHICLE_ERROR") == []  # the refused registration left nothing behind


def test_handlers_run_by_order_then_name_and_a_removed_one_no_longer_runs() -> None:
    registry = HandlerRegistry()
    registry.handler("*", name="audit", order=500)(_noop)
    registry.handler("VEHICLE_STATE", name="b-second", order=20)(_noop)
    registry.handler("VEHICLE_STATE", name="a-second", order=20)(_noop)
    registry.handler("VEHICLE_STATE", "VEHICLE_ERROR", name="first", order=10)(_noop)
    unnamed = registry.handler("VEHICLE_ERROR", order=1)(_other)
    assert unnamed is _other  # the decorator gives the function back
    default_name = f"{__name__}._other"
    assert [h.name for h in registry.for_type("VEHICLE_STATE")] == ["first", "a-second", "b-second", "audit"]
    assert [h.name for h in registry.for_type("VEHICLE_ERROR")] == [default_name, "first", "audit"]
    assert [h.name for h in registry.for_type("SOMETHING_NEW")] == ["audit"]
    registry.remove("first")
    registry.remove("never-registered")  # harmless
    assert registry.names() == sorted([default_name, "a-second", "audit", "b-second"])
    assert "first" not in [h.name for h in registry.for_type("VEHICLE_STATE")]


def test_the_context_answers_a_handler_from_the_stored_state(
    client: redis.Redis,
    key_prefix: str,
    *,
    make_runtime: Callable[..., Runtime],
    car: Maker,
    state_event: Maker,
) -> None:
    seen: dict[str, Any] = {}
    registry = HandlerRegistry()

    def look(ctx: HandlerContext) -> dict[str, Any]:
        seen.update(
            vehicle=ctx.vehicle_id,
            user=ctx.user_id,
            soc=ctx.signal_value(SOC),
            unknown=ctx.signal_value("wheel-tires"),
            remaining=ctx.remaining(),
            carried=ctx.payload_codes(),
        )
        return {"soc": seen["soc"]}

    registry.handler("VEHICLE_STATE", name="vehicle-state", order=1)(vehicle_state)
    registry.handler("VEHICLE_STATE", name="look", order=2)(look)
    runtime = make_runtime(handlers=registry)
    vehicle = car()
    event_id = accept_event(client, key_prefix, state_event(vehicle, {SOC: 57}))
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.DONE, result
    assert seen["vehicle"] == vehicle["id"]
    assert seen["user"] == vehicle["user_id"]
    assert seen["soc"] == 57  # stored by the built-in vehicle-state handler, which ran first
    assert seen["unknown"] is None
    assert 0 < seen["remaining"] <= 20.0  # the task's soft time limit, counting down
    assert seen["carried"] == {SOC}
    assert result.detail["results"]["look"]["result"] == {"soc": 57}


def test_an_event_that_names_no_vehicle_fails_a_handler_that_needs_one(
    client: redis.Redis, key_prefix: str, make_runtime: Callable[..., Runtime]
) -> None:
    registry = HandlerRegistry()
    registry.handler("*", name="per-vehicle")(lambda ctx: {"vehicle": ctx.vehicle_id})
    runtime = make_runtime(handlers=registry, retry_max_attempts=1)
    # An event type this code does not know is stored and handled ("*"), and it names no vehicle.
    event = {"eventId": str(uuid.uuid4()), "eventType": "APPLICATION_NOTICE", "data": {}, "meta": {}}
    event_id = accept_event(client, key_prefix, event)
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.DEAD
    error = result.detail["entry"]["error"]
    assert error["class"] == "ValueError"
    assert error["message"] == f"event {event_id} names no vehicle"
    assert result.detail["reason"] == "gave up after 1 attempts"
