"""Follow-up fetches, the charging rule and the command runner against the simulator (in-process runs)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from smartcar_simulator.testing import RunningSimulator
from testsupport.workers import accept_event
from workers.api import HandlerContext, HandlerRegistry
from workers.process import Outcome, process_event
from workers.runtime import Runtime

SOC = "tractionbattery-stateofcharge"
Maker = Callable[..., dict[str, Any]]


def test_follow_up_fetches_a_missing_signal_from_v3(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(follow_up_signals={"charge-ischarging": [SOC]})
    vehicle = connect(runtime, soc=0.61)
    event_id = accept_event(client, key_prefix, state_event(vehicle, {"charge-ischarging": True}))
    assert process_event(runtime, event_id).outcome is Outcome.DONE
    assert runtime.vehicles.signals(vehicle["id"])[SOC].value == 61
    assert runtime.vehicles.signals(vehicle["id"])[SOC].source == "v3"
    calls = sim.control.requests(vehicle_id=vehicle["id"])
    assert [(c.method, c.sub_path) for c in calls] == [("GET", f"signals/{SOC}")]
    # A delivery that carries the signal needs no fetch.
    event_id = accept_event(client, key_prefix, state_event(vehicle, {"charge-ischarging": True, SOC: 62}))
    assert process_event(runtime, event_id).outcome is Outcome.DONE
    assert len(sim.control.requests(vehicle_id=vehicle["id"])) == 1


def test_follow_up_reads_v2_in_one_batch_for_legacy_vehicles(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(signals_api="v2", follow_up_signals={"*": [SOC, "closure-islocked", "wheel-tires"]})
    vehicle = connect(runtime, soc=0.4, locked=False)
    event_id = accept_event(client, key_prefix, state_event(vehicle, {"odometer-traveleddistance": 10}))
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.DONE
    signals = runtime.vehicles.signals(vehicle["id"])
    assert signals[SOC].value == 40
    assert signals["closure-islocked"].value is False
    calls = sim.control.requests(vehicle_id=vehicle["id"])
    assert [(c.method, c.sub_path) for c in calls] == [("POST", "batch")]
    follow_up = result.detail["results"]["follow-up"]["result"]
    assert follow_up["errors"] == {"wheel-tires": {"type": "COMPATIBILITY", "code": "NO_V2_READ"}}


@pytest.mark.parametrize(
    ("state", "expected", "command"),
    [
        ({"soc": 0.85, "charging": True, "plugged_in": True, "charge_limit": 1.0}, "stop_charge", "STOP"),
        ({"soc": 0.12, "charging": False, "plugged_in": True}, "start_charge", "START"),
        ({"soc": 0.5, "charging": True, "plugged_in": True, "charge_limit": 1.0}, "nothing to do", None),
    ],
)
def test_charging_rule_sends_the_command_once(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
    state: dict[str, Any],
    expected: str,
    command: str | None,
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True)
    vehicle = connect(runtime, **state)
    # The delivery only says the cable changed: the rule fetches what it lacks.
    body = state_event(vehicle, {"charge-ischargingcableconnected": True})
    event_id = accept_event(client, key_prefix, body)
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.DONE
    decision = result.detail["results"]["charging-rule"]["result"]
    assert decision["decision"] == expected, decision
    posts = sim.control.requests(vehicle_id=vehicle["id"], method="POST")
    assert len(posts) == (1 if command else 0)
    if command == "STOP":
        assert sim.control.vehicle(vehicle["id"])["state"]["charging"] is False
    if command == "START":
        assert sim.control.vehicle(vehicle["id"])["state"]["charging"] is True
    # Running the event again sends nothing more.
    runtime.redis.hset(runtime.keys.event(event_id), "status", "retrying")
    assert process_event(runtime, event_id).outcome is Outcome.DONE
    assert len(sim.control.requests(vehicle_id=vehicle["id"], method="POST")) == len(posts)


def _lock_registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler("VEHICLE_STATE", name="lock-it")
    def lock_it(ctx: HandlerContext) -> dict[str, Any]:
        return ctx.run_command("lock", step="lock").as_result()

    return registry


def test_a_task_run_twice_at_once_sends_one_command(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    make_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    sim.control.set_latency("fixed", seconds=0.3)
    runtimes = [
        make_runtime(
            origins=sim.origins,
            handlers=_lock_registry(),
            smartcar_client_id=sim.client_id,
            smartcar_client_secret=sim.client_secret,
        )
        for _ in range(2)
    ]
    vehicle = connect(runtimes[0], locked=False)
    event_id = accept_event(client, key_prefix, state_event(vehicle, {"closure-islocked": False}))
    outcomes: list[Outcome] = []
    threads = [
        threading.Thread(target=lambda r=r: outcomes.append(process_event(r, event_id).outcome))
        for r in runtimes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == sorted([Outcome.DONE, Outcome.SKIPPED])
    # And once more after it finished (a redelivered message).
    assert process_event(runtimes[1], event_id).outcome is Outcome.SKIPPED
    assert len(sim.control.requests(vehicle_id=vehicle["id"], method="POST")) == 1
    assert sim.control.vehicle(vehicle["id"])["state"]["locked"] is True


def test_commands_for_one_vehicle_are_serialised(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    make_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    sim.control.set_latency("fixed", seconds=0.3)
    runtime = make_runtime(
        origins=sim.origins,
        handlers=_lock_registry(),
        smartcar_client_id=sim.client_id,
        smartcar_client_secret=sim.client_secret,
        concurrency=4,
    )
    vehicle = connect(runtime)
    ids = [
        accept_event(client, key_prefix, state_event(vehicle, {"closure-islocked": False})) for _ in range(3)
    ]
    threads = [threading.Thread(target=process_event, args=(runtime, event_id)) for event_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {runtime.store.load(e).status for e in ids} == {"done"}  # type: ignore[union-attr]
    posts = sorted(sim.control.requests(vehicle_id=vehicle["id"], method="POST"), key=lambda c: c.time)
    assert len(posts) == 3
    spans = [(call.time - call.duration, call.time) for call in posts]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01, f"commands overlapped: {spans}"


def test_a_send_that_may_still_be_in_flight_is_waited_for_then_checked(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True, max_countdown=0)
    vehicle = connect(runtime, soc=0.9, charging=True, plugged_in=True, charge_limit=1.0)
    body = state_event(vehicle, {SOC: 90, "charge-ischarging": True})
    event_id = accept_event(client, key_prefix, body)
    # A worker died while sending this event's stop command a moment ago; the car has since stopped.
    key = runtime.keys.command(event_id, "charging-rule:stop")
    client.hset(key, mapping={"state": "sending", "sent_at": repr(time.time()), "command": "stop_charge"})
    sim.control.patch_vehicle(vehicle["id"], charging=False)
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.RETRY
    assert result.detail["entry"]["outcome"] == "deferred"
    assert 5 < result.detail["delay"] <= 10  # until the call's timeout has surely passed
    assert [c for c in sim.control.requests(vehicle_id=vehicle["id"]) if c.sub_path == "charge"] == []
    client.hset(key, "sent_at", repr(time.time() - 60))
    client.hset(runtime.keys.event(event_id), "status", "retrying")
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.DONE
    command = result.detail["results"]["charging-rule"]["result"]
    # The state read shows the earlier send took effect: it is never repeated.
    assert command["command"]["how"] == "confirmed"
    calls = [c.method for c in sim.control.requests(vehicle_id=vehicle["id"]) if c.sub_path == "charge"]
    assert calls == ["GET"]


RULE_SIGNALS = ("charge-ischarging", "charge-ischargingcableconnected")


def test_an_old_state_delivered_late_does_not_stop_charging_below_the_target(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    # An hour ago the car was charging at 94 %; a FIRST_DELIVERY repeats that state, and it is processed
    # before any newer delivery: it is the latest state the workers know. The car is at 72 % by now.
    runtime = sim_runtime(charging_rule_enabled=True)
    vehicle = connect(runtime, soc=0.72, charging=True, plugged_in=True, charge_limit=1.0)
    an_hour_ago = int(time.time() * 1000) - 3_600_000
    old = {SOC: 94, **dict.fromkeys(RULE_SIGNALS, True)}
    body = state_event(vehicle, old, triggers=["FIRST_DELIVERY"], oem_ms=an_hour_ago)
    result = process_event(runtime, accept_event(client, key_prefix, body))
    assert result.outcome is Outcome.DONE
    rule = result.detail["results"]["charging-rule"]["result"]
    assert rule["command"]["how"] == "withdrawn", rule
    assert rule["confirmed"]["soc"] == 72
    assert sim.control.requests(vehicle_id=vehicle["id"], method="POST") == []
    assert sim.control.vehicle(vehicle["id"])["state"]["charging"] is True
    assert runtime.vehicles.signals(vehicle["id"])[SOC].value == 72


def test_two_deliveries_above_the_target_send_one_stop(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    # Both say "charging at 81 %" (the car reports often): the second must not stop it again.
    runtime = sim_runtime(charging_rule_enabled=True)
    vehicle = connect(runtime, soc=0.81, charging=True, plugged_in=True, charge_limit=1.0)
    state = {SOC: 81, **dict.fromkeys(RULE_SIGNALS, True)}
    ids = [accept_event(client, key_prefix, state_event(vehicle, state)) for _ in range(2)]
    rules = []
    for event_id in ids:
        result = process_event(runtime, event_id)
        assert result.outcome is Outcome.DONE
        rules.append(result.detail["results"]["charging-rule"]["result"])
    assert [rule["command"]["how"] for rule in rules] == ["sent", "withdrawn"], rules
    posts = sim.control.requests(vehicle_id=vehicle["id"], method="POST")
    assert [call.sub_path for call in posts] == ["charge"]
    assert sim.control.vehicle(vehicle["id"])["state"]["charging"] is False
