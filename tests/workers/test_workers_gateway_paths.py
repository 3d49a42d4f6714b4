"""The gateway's other paths against the simulator: v2 reads for legacy vehicles (nothing to read, one read
of a batch failing), a single v3 signal that fails for the whole vehicle, and what RATE_LIMIT answers do to
the shared throttles (a vehicle pause without Retry-After, no pause for a code it does not know), and a
rate token waited for within `rate_wait_max` instead of deferring."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from smartcar_core.errors import RateLimitError
from smartcar_simulator.testing import RunningSimulator
from testsupport.workers import accept_event
from workers.process import Outcome, process_event
from workers.runtime import Runtime

SOC = "tractionbattery-stateofcharge"
RANGE = "tractionbattery-range"
LOCKED = "closure-islocked"
Maker = Callable[..., dict[str, Any]]


def test_v2_codes_without_a_v2_read_make_no_call(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime()
    vehicle = connect(runtime)
    fetched = runtime.gateway.fetch_signals(vehicle["id"], ["wheel-tires", "wheel-tires"], user_id=None)
    assert fetched.updates == []
    assert fetched.errors == {"wheel-tires": {"type": "COMPATIBILITY", "code": "NO_V2_READ"}}
    assert sim.control.requests(vehicle_id=vehicle["id"]) == []


def test_one_failed_read_of_a_v2_batch_fails_only_its_codes(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime()
    vehicle = connect(runtime, locked=True)
    asleep = {"type": "VEHICLE_STATE", "code": "ASLEEP"}
    sim.control.add_fault(vehicle_id=vehicle["id"], path="battery", count=1, error=asleep)
    fetched = runtime.gateway.fetch_signals(
        vehicle["id"], [SOC, RANGE, LOCKED], user_id=vehicle["user_id"], api="v2"
    )
    calls = sim.control.requests(vehicle_id=vehicle["id"])
    assert [(c.method, c.sub_path) for c in calls] == [("POST", "batch")]  # one call for every read
    assert [(u.code, u.value, u.source) for u in fetched.updates] == [(LOCKED, True, "v2")]
    status = fetched.errors[SOC]["status"]
    assert fetched.errors == {code: {**asleep, "status": status} for code in (SOC, RANGE)}
    assert status >= 400


def test_a_signal_read_failing_for_the_whole_vehicle_retries_the_event(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(follow_up_signals={"*": [SOC]}, max_countdown=0)
    vehicle = connect(runtime, soc=0.33)
    server = {"type": "SERVER", "code": "INTERNAL", "status": 500}
    sim.control.add_fault(vehicle_id=vehicle["id"], path=f"signals/{SOC}", count=1, error=server)
    event_id = accept_event(client, key_prefix, state_event(vehicle, {LOCKED: True}))
    result = process_event(runtime, event_id)
    # Not a per-signal fact ("this car has no such signal"): the read failed, the event is retried.
    assert result.outcome is Outcome.RETRY, result
    entry = result.detail["entry"]
    assert (entry["handler"], entry["error"]["type"], entry["error"]["code"]) == (
        "follow-up",
        "SERVER",
        "INTERNAL",
    )
    assert SOC not in runtime.vehicles.signals(vehicle["id"])
    again = process_event(runtime, event_id)
    assert again.outcome is Outcome.DONE
    assert runtime.vehicles.signals(vehicle["id"])[SOC].value == 33


def _read_soc(runtime: Runtime, vehicle: dict[str, Any]) -> Any:
    return runtime.gateway.fetch_signals(vehicle["id"], [SOC], user_id=vehicle["user_id"])


def test_a_vehicle_rate_limit_without_retry_after_pauses_that_vehicle_five_seconds(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime()
    vehicle = connect(runtime)
    limited = {"type": "RATE_LIMIT", "code": "VEHICLE", "status": 429}
    sim.control.add_fault(vehicle_id=vehicle["id"], path=f"signals/{SOC}", count=1, error=limited)
    with pytest.raises(RateLimitError):
        _read_soc(runtime, vehicle)
    assert 4 < runtime.limiter.try_take(vehicle["id"]) <= 5
    assert runtime.limiter.try_take("another-vehicle") == 0


def test_a_rate_limit_of_a_code_it_does_not_know_pauses_nobody(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime()
    vehicle = connect(runtime)
    novel = {"type": "RATE_LIMIT", "code": "SOMETHING_NEW", "status": 429, "retry_after": 40}
    sim.control.add_fault(vehicle_id=vehicle["id"], path=f"signals/{SOC}", count=1, error=novel)
    with pytest.raises(RateLimitError) as raised:
        _read_soc(runtime, vehicle)
    assert raised.value.retry_after == 40  # the event's retry waits as told; no other call is held back
    assert runtime.limiter.try_take(vehicle["id"]) == 0
    assert runtime.limiter.try_take("another-vehicle") == 0
    assert runtime.redis.exists(runtime.keys.rate_pauses) == 0


def test_a_worker_waits_for_a_rate_token_rather_than_deferring_when_it_comes_soon(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    # One token, refilled every half second; waiting up to two seconds is allowed.
    runtime = sim_runtime(app_rate_bucket=1, app_rate_refill_per_minute=120, rate_wait_max=2.0)
    vehicle = connect(runtime, soc=0.5)
    assert _read_soc(runtime, vehicle).updates[0].value == 50
    started = time.monotonic()
    assert _read_soc(runtime, vehicle).updates[0].value == 50  # waited for the refill, then read
    assert time.monotonic() - started >= 0.3
    assert len(sim.control.requests(vehicle_id=vehicle["id"])) == 2
