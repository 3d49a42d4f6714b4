"""A run's vehicle state, staged and merged by the script that ends the run (`StagedSignals`)."""

from __future__ import annotations

from collections.abc import Callable

import redis

from eventstore.events import BeginState, EventStore
from eventstore.keys import KeySpace
from eventstore.record import EventRecord
from eventstore.vehicles import SignalUpdate, StagedSignals, VehicleStateStore

SOC, PLUGGED = "tractionbattery-stateofcharge", "charge-ischargingcableconnected"


def test_done_merges_each_vehicles_staged_values_newer_wins(
    client: redis.Redis, keys: KeySpace, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    vehicles = VehicleStateStore(client, keys)
    vehicles.merge("v1", [SignalUpdate(SOC, {"value": 90}, 5_000, 5_000)], event_id="newer")
    run = begun()
    staged = StagedSignals()
    assert staged.add("v1", [SignalUpdate(SOC, {"value": 40}, 1_000, 1_000)], event_id=run.id) == 1
    assert staged.add("v1", [SignalUpdate(PLUGGED, {"value": True}, 1_000, 1_000)], event_id=run.id) == 1
    assert staged.add("v2", [SignalUpdate(SOC, {"value": 55}, 2_000, 2_000)], event_id=run.id) == 1
    assert staged.add("v3", [], event_id=run.id) == 0
    assert vehicles.signals("v1")[SOC].value == 90  # nothing is written until the run ends
    assert PLUGGED not in vehicles.signals("v1")
    assert store.done(run, {"vehicle-state": {"status": "done"}}, signals=staged, now=1001.0)
    first = vehicles.signals("v1")
    assert first[SOC].value == 90  # the older value staged did not win
    assert first[PLUGGED].value is True
    assert first[PLUGGED].event_id == run.id
    assert vehicles.signals("v2")[SOC].value == 55
    assert vehicles.signals("v3") == {}
    assert not staged  # taken: a second ending would not write them again
    loaded = store.load(run.id)
    assert loaded is not None
    assert loaded.status == "done"


def test_a_run_that_lost_its_lease_stores_no_state(
    client: redis.Redis, keys: KeySpace, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    stale = begun()
    newer = store.begin(stale.id, lease=20, now=1030.0)  # the lease ended: another run took the event
    assert newer.state is BeginState.OK
    staged = StagedSignals()
    staged.add("v1", [SignalUpdate(SOC, {"value": 40}, 1_000, 1_000)], event_id=stale.id)
    assert not store.done(stale, {}, signals=staged, now=1031.0)
    assert VehicleStateStore(client, keys).signals("v1") == {}


def test_apply_merges_what_is_staged_once(client: redis.Redis, keys: KeySpace) -> None:
    vehicles, staged = VehicleStateStore(client, keys), StagedSignals()
    vehicles.apply(staged)  # nothing staged: nothing to do
    staged.add("v1", [SignalUpdate(SOC, {"value": 40}, 1_000, 1_000)], event_id="e1")
    vehicles.apply(staged)
    assert vehicles.signals("v1")[SOC].value == 40
    client.delete(keys.vehicle_signals("v1"))
    vehicles.apply(staged)  # taken by the first apply: not merged again
    assert vehicles.signals("v1") == {}
