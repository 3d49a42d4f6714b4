"""Webhooks from the simulator to a tiny receiving app: subscriptions, changes, errors, retries, bursts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import smartcar_core as sc
from simulator.support import first
from smartcar_core.events import Envelope, parse_envelope
from smartcar_simulator.control_client import Delivery
from smartcar_simulator.testing import RunningSimulator, run_simulator
from testsupport import serve_asgi, wait_until

WEBHOOK = "wh-test"


@dataclass
class Received:
    envelope: Envelope
    body: bytes
    signature: str | None


@dataclass
class Receiver:
    """Records every delivery; answers 500 to the first `failures` of them."""

    failures: int = 0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def webhook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.received.append(Received(parse_envelope(body), body, request.headers.get("sc-signature")))
            if self.failures > 0:
                self.failures -= 1
                return Response("try again", 500)
        return JSONResponse({"ok": True})

    def of_type(self, event_type: str) -> list[Received]:
        with self.lock:
            return [item for item in self.received if item.envelope.event_type == event_type]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    target = Receiver()
    app = Starlette(routes=[Route("/hook", target.webhook, methods=["POST"])])
    with serve_asgi(app) as url:
        yield target, f"{url}/hook"


@pytest.fixture
def hooked(receiver: tuple[Receiver, str]) -> Iterator[tuple[RunningSimulator, Receiver]]:
    """A simulator whose webhook delivers to the receiver, retries 1000x faster, charging ticks fast."""
    target, url = receiver
    with run_simulator(vehicles=6, seed=3, time_scale=0.001, tick_seconds=0.05) as simulator:
        simulator.control.configure_webhook(WEBHOOK, target_url=url)
        yield simulator, target


def _subscribed(simulator: RunningSimulator, powertrain: str = "BEV") -> tuple[sc.Vehicle, dict[str, Any]]:
    vehicle = first(simulator, powertrain)
    token = simulator.control.mint_tokens([vehicle["id"]]).access_token
    client = sc.Vehicle(vehicle["id"], token, origins=simulator.origins)
    assert client.subscribe(WEBHOOK).webhook_id == WEBHOOK
    return client, vehicle


def test_verify_is_sent_unsigned_with_a_challenge(hooked: tuple[RunningSimulator, Receiver]) -> None:
    simulator, target = hooked
    simulator.control.configure_webhook(WEBHOOK, verify=True)
    verify = wait_until(lambda: target.of_type("VERIFY"), timeout=10)[0]
    assert verify.envelope.challenge
    assert verify.signature is None
    event_id = simulator.control.emit(WEBHOOK, "LEGACY_VERIFY", challenge="abc")
    received = wait_until(lambda: [r for r in target.received if r.envelope.event_id == event_id], timeout=10)
    legacy = received[0]
    assert legacy.envelope.challenge == "abc"
    assert legacy.envelope.version == "2.0"


def test_subscribing_sends_a_signed_first_delivery_with_every_subscribed_signal(
    hooked: tuple[RunningSimulator, Receiver],
) -> None:
    simulator, target = hooked
    _, vehicle = _subscribed(simulator)
    first_delivery = wait_until(lambda: target.of_type("VEHICLE_STATE"), timeout=10)[0]
    assert first_delivery.envelope.vehicle_id == vehicle["id"]
    assert first_delivery.envelope.user_id == vehicle["user_id"]
    assert first_delivery.envelope.trigger_codes == ["FIRST_DELIVERY"]
    assert first_delivery.signature is not None
    assert sc.verify_payload(simulator.amt, first_delivery.signature, first_delivery.body)
    signals = {signal.code: signal for signal in first_delivery.envelope.signals}
    assert signals["closure-islocked"].value == vehicle["state"]["locked"]
    assert signals["internalcombustionengine-fuellevel"].error == {
        "type": "COMPATIBILITY",
        "code": "VEHICLE_NOT_CAPABLE",
    }
    assert simulator.control.webhook(WEBHOOK)["vehicle_ids"] == [vehicle["id"]]


def test_a_command_that_changes_a_trigger_signal_sends_vehicle_state(
    hooked: tuple[RunningSimulator, Receiver],
) -> None:
    simulator, target = hooked
    client, vehicle = _subscribed(simulator)
    wait_until(lambda: target.of_type("VEHICLE_STATE"), timeout=10)
    simulator.control.patch_vehicle(vehicle["id"], locked=False)
    unlocked = wait_until(lambda: target.of_type("VEHICLE_STATE")[1:], timeout=10)[0]
    assert unlocked.envelope.trigger_codes == ["closure-islocked"]
    client.lock()
    locked = wait_until(lambda: target.of_type("VEHICLE_STATE")[2:], timeout=10)[0]
    assert {s.code: s.value for s in locked.envelope.signals}["closure-islocked"] is True
    client.lock_status()  # a read changes nothing: no event
    client.unsubscribe(simulator.amt, WEBHOOK)
    client.unlock()
    # An event would have been handed to the emitter before unlock() was answered: once nothing is
    # pending, every event sent has a recorded attempt.
    wait_until(lambda: simulator.control.webhook(WEBHOOK)["pending"] == 0, timeout=10)
    assert len(simulator.control.deliveries(webhook_id=WEBHOOK)) == 3
    assert len(target.of_type("VEHICLE_STATE")) == 3


def test_charging_progress_is_emitted_as_state_of_charge_changes(
    hooked: tuple[RunningSimulator, Receiver],
) -> None:
    simulator, target = hooked
    _, vehicle = _subscribed(simulator)
    simulator.control.patch_vehicle(vehicle["id"], plugged_in=True, soc=0.5, charge_limit=0.8, charging=True)
    simulator.control.advance_clock(3600)  # +25 % at the default 0.25 per hour

    def soc_update() -> list[Received]:
        return [
            r
            for r in target.of_type("VEHICLE_STATE")
            if "tractionbattery-stateofcharge" in r.envelope.trigger_codes
        ]

    def values() -> set[Any]:
        return {
            {s.code: s.value for s in r.envelope.signals}["tractionbattery-stateofcharge"]
            for r in soc_update()
        }

    assert wait_until(lambda: 75 in values(), timeout=10)
    simulator.control.advance_clock(3600)  # reaches the limit and stops
    wait_until(
        lambda: [
            r
            for r in soc_update()
            if {s.code: s.value for s in r.envelope.signals}["charge-ischarging"] is False
        ],
        timeout=10,
    )
    assert simulator.control.vehicle(vehicle["id"])["state"]["soc"] == 0.8


def test_vehicle_errors_are_sent_and_resolved(hooked: tuple[RunningSimulator, Receiver]) -> None:
    simulator, target = hooked
    _, vehicle = _subscribed(simulator)
    simulator.control.patch_vehicle(vehicle["id"], online=False)
    error = wait_until(lambda: target.of_type("VEHICLE_ERROR"), timeout=10)[0]
    assert [(e["code"], e["state"]) for e in error.envelope.errors] == [("UNREACHABLE", "ERROR")]
    simulator.control.patch_vehicle(vehicle["id"], online=True)
    resolved = wait_until(lambda: target.of_type("VEHICLE_ERROR")[1:], timeout=10)[0]
    assert [(e["code"], e["state"]) for e in resolved.envelope.errors] == [("UNREACHABLE", "RESOLVED")]
    event_id = simulator.control.emit(
        WEBHOOK,
        "VEHICLE_ERROR",
        vehicle_id=vehicle["id"],
        error={"type": "CONNECTED_SERVICES_ACCOUNT", "code": "SUBSCRIPTION"},
        resolve_after=5,  # scaled by the webhook's time scale: 5 ms
    )

    def subscription_errors() -> dict[str, Received]:
        found = [r for r in target.of_type("VEHICLE_ERROR") if r.envelope.errors[0]["code"] == "SUBSCRIPTION"]
        return {r.envelope.errors[0]["state"]: r for r in found}

    wait_until(lambda: len(subscription_errors()) == 2, timeout=10)
    pair = subscription_errors()
    assert pair["ERROR"].envelope.event_id == event_id
    assert pair["RESOLVED"].envelope.event_id != event_id


def test_failed_deliveries_are_retried_with_the_same_event_id(
    receiver: tuple[Receiver, str], hooked: tuple[RunningSimulator, Receiver]
) -> None:
    simulator, target = hooked
    target.failures = 2
    event_id = simulator.control.emit(WEBHOOK, "VEHICLE_STATE", shape="B")

    def attempts_when_delivered() -> list[Delivery]:
        attempts = simulator.control.deliveries(event_id=event_id)
        return attempts if any(attempt.ok for attempt in attempts) else []

    attempts = wait_until(attempts_when_delivered, timeout=10)
    assert [(a.attempt, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert len({a.delivery_id for a in attempts}) == 3
    bodies = [r for r in target.received if r.envelope.event_id == event_id]
    assert {r.envelope.delivery_id for r in bodies} == {a.delivery_id for a in attempts}
    assert "triggers" in json.loads(bodies[0].body)  # shape B: top-level triggers


def _with_id(target: Receiver, event_id: str) -> list[Received]:
    with target.lock:
        return [r for r in target.received if r.envelope.event_id == event_id]


def test_legacy_envelopes(hooked: tuple[RunningSimulator, Receiver]) -> None:
    simulator, target = hooked
    for kind in ("LEGACY_EVENTBASED", "LEGACY_SCHEDULED", "LEGACY_DYNAMIC"):
        event_id = simulator.control.emit(WEBHOOK, kind)
        item = wait_until(lambda: _with_id(target, event_id), timeout=10)[0]  # noqa: B023 - used before the loop moves on
        assert item.envelope.event_type == kind
        assert item.envelope.vehicle_id in simulator.vehicle_ids


def test_a_burst_delivers_at_a_given_rate(hooked: tuple[RunningSimulator, Receiver]) -> None:
    simulator, target = hooked
    report = simulator.control.burst(WEBHOOK, count=40, rate=400, wait=True)
    assert report["status"] == "done"
    assert report["report"]["delivered"] == 40
    assert report["report"]["by_status"] == {"200": 40}
    started = simulator.control.burst(WEBHOOK, count=5, rate=100)
    done = wait_until(
        lambda: simulator.control.burst_report(started["burst_id"])["status"] == "done" and started,
        timeout=10,
    )
    assert done["burst_id"].startswith("burst-")
    assert len(target.of_type("VEHICLE_STATE")) == 45
