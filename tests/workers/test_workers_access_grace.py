"""A vehicle whose access was lost: its re-consent URL names its VIN when a webhook delivered one, and
once held past WORKERS_REVOKED_GRACE it is unsubscribed and forgotten, and its waiting events fail."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from eventstore.fleet import FleetStore, VehicleStatus
from eventstore.lifecycle import LifecycleAction
from eventstore.vehicles import SignalUpdate
from smartcar_simulator.testing import RunningSimulator
from testsupport.workers import accept_event
from workers.access import VIN_SIGNAL, AccessLoss
from workers.lifecycle import Outcome as JobOutcome
from workers.lifecycle import VehicleLifecycle
from workers.process import Outcome, process_event
from workers.runtime import Runtime

Maker = Callable[..., dict[str, Any]]
WEBHOOK_ID = "wh-grace"


def test_the_reconsent_url_is_the_receivers_connect_on_the_vehicles_vin_when_one_was_delivered(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime(smartcar_redirect_uri="https://app.example/smartcar/callback")
    vehicle = connect(runtime, 0)
    access = AccessLoss(runtime)
    assert access.vin(vehicle["id"]) is None
    assert access.reconsent_url(vehicle["id"]) == "https://app.example/smartcar/connect?reconsent=1"
    runtime.vehicles.merge(
        vehicle["id"], [SignalUpdate(VIN_SIGNAL, {"value": "5YJ3E1EA7KF000001"}, 1, 1)], event_id="e"
    )
    url = access.reconsent_url(vehicle["id"])
    assert url == "https://app.example/smartcar/connect?reconsent=1&vin=5YJ3E1EA7KF000001"
    assert sim.client_secret not in url
    assert AccessLoss(sim_runtime(smartcar_redirect_uri=None)).reconsent_url(vehicle["id"]) is None


def test_a_vehicle_held_past_its_grace_is_unsubscribed_and_forgotten(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(
        smartcar_webhook_id=WEBHOOK_ID,
        smartcar_amt=sim.amt,
        follow_up_signals={"*": ["tractionbattery-stateofcharge"]},
    )
    lifecycle = VehicleLifecycle(runtime)
    vehicle, kept = connect(runtime, 0), connect(runtime, 1)
    assert lifecycle.perform(LifecycleAction.SUBSCRIBE, vehicle["id"]).startswith("subscribed")
    access = AccessLoss(runtime)
    access.lost([vehicle["id"]], status=VehicleStatus.REVOKED, reason="AUTHENTICATION after a refresh")
    access.lost([kept["id"]], status=VehicleStatus.NEEDS_RECONSENT, reason="PERMISSION")
    event_id = accept_event(client, key_prefix, state_event(vehicle, {"odometer-traveleddistance": 1}))
    assert process_event(runtime, event_id).detail["outcome"] == "held"

    assert access.expire() == []  # within the grace period: nothing asked
    later = time.time() + runtime.settings.revoked_grace + 1
    assert sorted(access.expire(now=later)) == sorted([vehicle["id"], kept["id"]])
    access.expire(now=later)  # asked again: still one job per vehicle
    runtime.tokens.held.release([kept["id"]])  # its owner came back meanwhile: its job keeps it
    results = {result.job.vehicle_id: result for result in lifecycle.drain()}
    assert results[vehicle["id"]].outcome is JobOutcome.DONE
    assert results[vehicle["id"]].detail.startswith("forgotten; unsubscribed from webhook")
    assert results[kept["id"]].detail == "no longer held (its owner connected again): kept"
    known = FleetStore(client, runtime.keys).get(vehicle["id"])
    assert known is not None
    assert known.status is VehicleStatus.REVOKED
    assert known.reconsent_url is None
    assert "not given back within the grace period" in known.reason
    assert runtime.tokens.grants.grant_of(vehicle["id"]) is None
    assert runtime.tokens.held.since(vehicle["id"]) is None
    # Its waiting event is due now and ends as a dead letter: no tokens are left for it.
    assert runtime.store.due(10) == [event_id]
    assert process_event(runtime, event_id).outcome is Outcome.DEAD
    assert runtime.tokens.grants.grant_of(kept["id"]) is not None
