"""Every error class of the catalogue, injected at the simulator, ends the way the policy says."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from eventstore.fleet import FleetStore, VehicleStatus
from smartcar_core.catalogue import BENIGN, CATALOGUE, RetryClass
from smartcar_simulator.errors import CATALOGUE as SIMULATED_ERRORS
from smartcar_simulator.testing import RunningSimulator
from testsupport.workers import accept_event, store_minted
from workers.process import Outcome, RunResult, process_event
from workers.runtime import Runtime

Maker = Callable[..., dict[str, Any]]
CHARGING = {"soc": 0.9, "charging": True, "plugged_in": True, "charge_limit": 1.0}


def _stop_charge_event(
    client: redis.Redis, prefix: str, runtime: Runtime, connect: Maker, state_event: Maker
) -> tuple[dict[str, Any], str]:
    vehicle = connect(runtime, **CHARGING)
    body = state_event(
        vehicle,
        {
            "tractionbattery-stateofcharge": 90,
            "charge-ischarging": True,
            "charge-ischargingcableconnected": True,
        },
    )
    return vehicle, accept_event(client, prefix, body)


@pytest.mark.parametrize(("error_type", "code"), sorted(CATALOGUE, key=str))
def test_catalogue_error_on_a_command(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
    error_type: str,
    code: str | None,
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True, max_countdown=0)
    vehicle, event_id = _stop_charge_event(client, key_prefix, runtime, connect, state_event)
    # The simulator answers each (type, code) with Smartcar's HTTP status for it.
    error: dict[str, Any] = {"type": error_type, "code": code}
    if (error_type, code) == ("RATE_LIMIT", "VEHICLE"):
        error["retry_after"] = 3
    sim.control.add_fault(vehicle_id=vehicle["id"], path="charge", method="POST", count=1, error=error)
    result = process_event(runtime, event_id)
    retry_class = CATALOGUE[(error_type, code)]
    settings = runtime.settings
    if "stop_charge" in BENIGN.get((error_type, code or ""), ()):
        _assert_done(result, how="benign")
    elif retry_class is RetryClass.REFRESH_TOKEN:
        # One refresh, one more try: it succeeds (the fault fired once); the token rotated at the simulator.
        _assert_done(result, how="sent")
        assert len(sim.control.requests(path="/oauth/token")) == 1
    elif error_type == "PERMISSION":  # access reduced: the vehicle waits for its owner's new consent
        assert result.outcome is Outcome.RETRY, result
        assert result.detail["outcome"] == "held"
        assert result.detail["entry"]["reason"] == "waiting for re-consent"
        assert runtime.tokens.held.events(vehicle["id"]) == [event_id]
        assert runtime.redis.zscore(runtime.keys.dead, event_id) is None
    elif retry_class is RetryClass.NEVER:
        assert result.outcome is Outcome.DEAD, result
        entry = result.detail["entry"]
        assert entry["error"]["type"] == error_type
        assert entry["error"]["code"] == code
        assert entry["error"]["status"] == SIMULATED_ERRORS[(error_type, code)][0]
        assert entry["error"]["request_id"]
        assert "not retryable" in result.detail["reason"]
        assert runtime.redis.zscore(runtime.keys.dead, event_id) is not None
    else:
        assert result.outcome is Outcome.RETRY, result
        delay = result.detail["delay"]
        if retry_class is RetryClass.RETRY_AFTER:
            assert delay == 3
        elif retry_class is RetryClass.LONG_DELAY:
            assert settings.retry_long_base_delay / 2 <= delay <= settings.retry_long_base_delay
        else:
            assert 0 < delay <= settings.retry_base_delay
        assert result.detail["parked"] is True
        # The pause a rate limit set has passed; the fault fired once: the retry completes the command.
        runtime.limiter.resume()
        _assert_done(process_event(runtime, event_id), how="sent")
    # The vehicle stopped charging exactly when the command went through.
    sent = retry_class is not RetryClass.NEVER
    assert sim.control.vehicle(vehicle["id"])["state"]["charging"] is not sent


def _assert_done(result: RunResult, how: str | None = None) -> None:
    assert result.outcome is Outcome.DONE, result
    if how is not None:
        command = result.detail["results"]["charging-rule"]["result"]["command"]
        assert command["how"] == how, command


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "http_status", "status": 503},
        {"kind": "gateway_html", "status": 502},
        {"error": {"type": "SOMETHING_NEW", "code": "UNKNOWN", "status": 500}},
    ],
)
def test_unknown_server_side_failures_are_retried(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
    fault: dict[str, Any],
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True, max_countdown=0)
    vehicle, event_id = _stop_charge_event(client, key_prefix, runtime, connect, state_event)
    sim.control.add_fault(vehicle_id=vehicle["id"], path="charge", method="POST", count=1, **fault)
    assert process_event(runtime, event_id).outcome is Outcome.RETRY
    _assert_done(process_event(runtime, event_id))


def test_a_second_authentication_error_after_a_refresh_holds_the_vehicle_as_revoked(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True, smartcar_redirect_uri="https://app.example/callback")
    vehicle, event_id = _stop_charge_event(client, key_prefix, runtime, connect, state_event)
    error = {"type": "AUTHENTICATION", "code": None, "status": 401}
    sim.control.add_fault(vehicle_id=vehicle["id"], path="charge", method="POST", count=2, error=error)
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.RETRY
    assert result.detail["outcome"] == "held"
    assert len(sim.control.requests(path="/oauth/token")) == 1
    known = FleetStore(client, runtime.keys).get(vehicle["id"])
    assert known is not None
    assert known.status is VehicleStatus.REVOKED
    assert known.reconsent_url == "https://app.example/connect?reconsent=1"
    # No call for it any more: a second event of the vehicle is held without one.
    calls = len(sim.control.requests(vehicle_id=vehicle["id"]))
    signals = {"tractionbattery-stateofcharge": 91, "charge-ischarging": True}
    second = accept_event(
        client, key_prefix, state_event(vehicle, {**signals, "charge-ischargingcableconnected": True})
    )
    assert process_event(runtime, second).detail["outcome"] == "held"
    assert len(sim.control.requests(vehicle_id=vehicle["id"])) == calls
    assert runtime.tokens.held.events(vehicle["id"]) == sorted([event_id, second])


def test_rate_limits_pause_the_vehicle_or_the_whole_application(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True, app_rate_bucket=100, rate_wait_max=0)
    vehicle, event_id = _stop_charge_event(client, key_prefix, runtime, connect, state_event)
    error = {"type": "RATE_LIMIT", "code": "VEHICLE", "status": 429, "retry_after": 30}
    sim.control.add_fault(vehicle_id=vehicle["id"], path="charge", method="POST", count=1, error=error)
    assert process_event(runtime, event_id).outcome is Outcome.RETRY
    assert runtime.limiter.try_take(vehicle["id"]) > 25  # no worker calls this vehicle for 30 s
    assert runtime.limiter.try_take("another-vehicle") == 0
    other, other_event = _stop_charge_event(
        client, key_prefix, runtime, lambda r, **s: connect(r, 1, **s), state_event
    )
    sim.control.add_fault(
        vehicle_id=other["id"],
        path="charge",
        method="POST",
        count=1,
        error={"type": "RATE_LIMIT", "code": "SMARTCAR_API", "status": 429},
    )
    assert process_event(runtime, other_event).outcome is Outcome.RETRY
    assert runtime.limiter.try_take("anyone") > 50  # the whole application waits (60 s by default)
    # While paused, events are deferred without calling Smartcar.
    before = len(sim.control.requests())
    third = accept_event(
        client, key_prefix, state_event(connect(runtime, 2, **CHARGING), {"charge-ischarging": True})
    )
    result = process_event(runtime, third)
    assert result.outcome is Outcome.RETRY
    assert result.detail["entry"]["outcome"] == "deferred"
    assert len(sim.control.requests()) == before


@pytest.mark.parametrize(
    "fault",
    [
        {"error": {"type": "UPSTREAM", "code": "NO_RESPONSE", "status": 502}, "after_effect": True},
        {"kind": "http_status", "status": 504, "after_effect": True},
        {"kind": "drop", "after_effect": True},
    ],
)
def test_ambiguous_failure_that_took_effect_is_confirmed_by_a_read(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
    fault: dict[str, Any],
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True)
    vehicle, event_id = _stop_charge_event(client, key_prefix, runtime, connect, state_event)
    sim.control.add_fault(vehicle_id=vehicle["id"], path="charge", method="POST", count=1, **fault)
    result = process_event(runtime, event_id)
    _assert_done(result, how="confirmed")
    calls = [(c.method, c.sub_path) for c in sim.control.requests(vehicle_id=vehicle["id"], path="charge")]
    assert calls == [("POST", "charge"), ("GET", "charge")]  # sent once, then the state read
    assert sim.control.vehicle(vehicle["id"])["state"]["charging"] is False


def test_ambiguous_failure_without_effect_rereads_then_sends_again(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True, max_countdown=0)
    vehicle, event_id = _stop_charge_event(client, key_prefix, runtime, connect, state_event)
    sim.control.add_fault(
        vehicle_id=vehicle["id"], path="charge", method="POST", count=1, kind="http_status", status=504
    )
    assert process_event(runtime, event_id).outcome is Outcome.RETRY
    _assert_done(process_event(runtime, event_id), how="sent")
    calls = [(c.method, c.sub_path) for c in sim.control.requests(vehicle_id=vehicle["id"], path="charge")]
    # Failed send, read (no effect yet), retry run: read first (still charging), then the second send.
    assert calls == [("POST", "charge"), ("GET", "charge"), ("GET", "charge"), ("POST", "charge")]


def test_expired_token_mid_run_is_refreshed_once_for_many_workers(
    client: redis.Redis,
    key_prefix: str,
    sim: RunningSimulator,
    make_runtime: Callable[..., Runtime],
    state_event: Maker,
) -> None:
    values = {
        "origins": sim.origins,
        "smartcar_client_id": sim.client_id,
        "smartcar_client_secret": sim.client_secret,
        "follow_up_signals": {"*": ["tractionbattery-stateofcharge"]},
    }
    workers = [make_runtime(**values) for _ in range(4)]  # separate Redis pools and HTTP clients
    owner = sim.control.users()[0]
    fleet = [v for v in sim.control.vehicles() if v["id"] in owner["vehicle_ids"]]
    user = owner["id"]
    sim.control.set_latency("fixed", seconds=0.05)
    tokens = sim.control.mint_tokens(vehicle_ids=[v["id"] for v in fleet], user_id=user, expires_in=30)
    # We believe the token good for two hours; Smartcar's clock says it expired (clock skew, revocation...).
    store_minted(workers[0].tokens, tokens, expires_at=time.time() + 7200)
    sim.control.advance_clock(60)
    ids = [
        accept_event(
            client, key_prefix, state_event({**vehicle, "user_id": user}, {"charge-ischarging": True})
        )
        for vehicle in fleet
        for _ in range(4)
    ]
    results: list[RunResult] = []
    threads = [
        threading.Thread(target=lambda w=workers[i % 4], e=event_id: results.append(process_event(w, e)))
        for i, event_id in enumerate(ids)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.outcome for r in results] == [Outcome.DONE] * len(ids)
    assert len(sim.control.requests(path="/oauth/token")) == 1
    for event_id in ids:
        record = workers[0].store.load(event_id)
        assert record is not None
        assert record.history == []  # no AUTHENTICATION error reached an event
