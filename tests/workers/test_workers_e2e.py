"""From a signed webhook to its effect: simulator -> receiver -> relay -> worker process -> simulator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from eventstore.codec import text
from eventstore.keys import KeySpace
from receiver.app import create_app
from receiver.settings import ReceiverSettings
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.receiver import LiveReceiver, serve
from testsupport.workers import WorkerLauncher, accept_event, event_status, store_minted

SOC = "tractionbattery-stateofcharge"
WEBHOOK = "wh-e2e"
Launch = Callable[..., WorkerLauncher]


@pytest.fixture(scope="module")
def receiver(simulator: RunningSimulator, redis_url: str, module_prefix: str) -> Iterator[LiveReceiver]:
    settings = ReceiverSettings(
        smartcar_amt=simulator.amt, redis_url=redis_url, event_key_prefix=module_prefix
    )
    with serve(create_app(settings, configure_logs=False)) as live:
        yield live


def _sim_values(sim: RunningSimulator) -> dict[str, Any]:
    return {
        "origins": sim.origins,
        "smartcar_client_id": sim.client_id,
        "smartcar_client_secret": sim.client_secret,
    }


@pytest.fixture(scope="module")
def workers(launch: Launch, simulator: RunningSimulator) -> WorkerLauncher:
    launcher = launch(
        charging_rule_enabled=True, follow_up_signals={"*": [SOC]}, concurrency=8, **_sim_values(simulator)
    )
    launcher.start("e2e")
    return launcher


def _connect(launcher: WorkerLauncher, sim: RunningSimulator, index: int, **state: Any) -> dict[str, Any]:
    vehicle = sim.control.vehicles()[index]
    if state:
        sim.control.patch_vehicle(vehicle["id"], **state)
    tokens = sim.control.mint_tokens(user_id=vehicle["user_id"])
    store_minted(launcher.tokens, tokens)
    return vehicle


def _webhook(sim: RunningSimulator, receiver: LiveReceiver) -> None:
    sim.control.configure_webhook(
        WEBHOOK,
        target_url=receiver.webhook_url,
        amt=sim.amt,
        signals=["charge-ischarging", "charge-ischargingcableconnected", "closure-islocked"],
        triggers=["charge-ischargingcableconnected"],
    )


def _done(launcher: WorkerLauncher, event_id: str) -> None:
    prefix = launcher.settings.event_key_prefix

    def finished() -> bool:
        status = event_status(launcher.client, prefix, event_id)
        assert status != "failed", launcher.client.hgetall(KeySpace(prefix).event(event_id))
        return status == "done"

    wait_until(finished, what=f"event {event_id} done")


def test_every_built_in_handler_from_a_signed_webhook_to_its_effect(
    simulator: RunningSimulator, receiver: LiveReceiver, workers: WorkerLauncher
) -> None:
    sim = simulator
    _webhook(sim, receiver)
    vehicle = _connect(
        workers, sim, 0, soc=0.9, charging=True, plugged_in=True, charge_limit=1.0, locked=False
    )
    sim.control.clear_requests()
    event_id = sim.control.emit(WEBHOOK, "VEHICLE_STATE", vehicle_id=vehicle["id"])
    _done(workers, event_id)
    prefix = workers.settings.event_key_prefix
    signals = {
        text(key): json.loads(value)
        for key, value in workers.client.hgetall(KeySpace(prefix).vehicle_signals(vehicle["id"])).items()
    }
    # vehicle state: the delivery's signals; follow-up: the state of charge it lacked, read from v3.
    assert signals["closure-islocked"]["value"] is False
    assert signals["charge-ischarging"]["value"] is True
    assert signals[SOC]["value"] == 90
    assert signals[SOC]["source"] == "v3"
    # charging rule: at 90 % (target 80 %) it stopped charging, with one command.
    posts = sim.control.requests(vehicle_id=vehicle["id"], method="POST")
    assert [call.sub_path for call in posts] == ["charge"]
    assert sim.control.vehicle(vehicle["id"])["state"]["charging"] is False
    record = workers.client.hgetall(KeySpace(prefix).event(event_id))
    results = json.loads(record[b"results"])
    assert results["charging-rule"]["result"]["decision"] == "stop_charge"

    # vehicle errors: an ERROR, then its RESOLVED.
    error = {"type": "VEHICLE_STATE", "code": "UNREACHABLE"}
    raised = sim.control.emit(WEBHOOK, "VEHICLE_ERROR", vehicle_id=vehicle["id"], error=error)
    _done(workers, raised)
    errors_key = KeySpace(prefix).vehicle_errors(vehicle["id"])
    stored = json.loads(workers.client.hget(errors_key, "VEHICLE_STATE:UNREACHABLE") or b"{}")
    assert stored["state"] == "ERROR"
    resolved = sim.control.emit(
        WEBHOOK, "VEHICLE_ERROR", vehicle_id=vehicle["id"], error=error, state="RESOLVED"
    )
    _done(workers, resolved)
    stored = json.loads(workers.client.hget(errors_key, "VEHICLE_STATE:UNREACHABLE") or b"{}")
    assert stored["state"] == "RESOLVED"


def test_two_worker_processes_refresh_an_expired_token_once(
    launch: Launch, simulator: RunningSimulator, module_prefix: str, state_event: Callable[..., Any]
) -> None:
    sim = simulator
    prefix = f"{module_prefix}refresh:"
    launcher = launch(
        event_key_prefix=prefix,
        queue=f"{prefix}queue",
        broker_key_prefix=prefix,
        follow_up_signals={"*": [SOC]},
        relay_batch=1,  # hand the events out one by one, so that both processes get some
        **_sim_values(sim),
    )
    owner = sim.control.users()[3]
    tokens = sim.control.mint_tokens(user_id=owner["id"], expires_in=30)
    # Stored as good for two hours; Smartcar's clock says it expired: every first call gets AUTHENTICATION.
    store_minted(launcher.tokens, tokens, expires_at=time.time() + 7200)
    sim.control.advance_clock(60)
    sim.control.set_latency("fixed", seconds=0.2)
    first_call = len(sim.control.requests())
    launcher.start("one", concurrency=4)
    launcher.start("two", concurrency=4)
    fleet = [v for v in sim.control.vehicles() if v["id"] in owner["vehicle_ids"]]
    ids = [
        accept_event(
            launcher.client, prefix, state_event({**v, "user_id": owner["id"]}, {"charge-ischarging": True})
        )
        for v in fleet
        for _ in range(6)
    ]
    for event_id in ids:
        _done(launcher, event_id)
    calls = sim.control.requests()[first_call:]
    assert len([c for c in calls if c.path == "/oauth/token"]) == 1
    workers = set()
    for event_id in ids:
        record = {
            text(k): text(v) for k, v in launcher.client.hgetall(KeySpace(prefix).event(event_id)).items()
        }
        assert record.get("history") in (None, "[]")  # no AUTHENTICATION error reached an event
        workers.add(record["worker"].split("@")[0])
    assert workers == {"one", "two"}  # both processes worked, and refreshed once between them
    sim.control.set_latency("fixed", seconds=0.0)
