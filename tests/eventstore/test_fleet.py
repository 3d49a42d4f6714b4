"""The vehicle registry, forgetting a vehicle's tokens and state, and deferring a lifecycle job."""

from __future__ import annotations

import redis

from eventstore.fleet import FleetStore, VehicleStatus
from eventstore.grants import GrantStore
from eventstore.keys import KeySpace
from eventstore.lifecycle import LifecycleAction, LifecycleStore
from eventstore.vehicles import SignalUpdate, VehicleStateStore


def test_a_vehicle_moves_through_its_statuses_and_keeps_when_it_was_first_known(
    client: redis.Redis, keys: KeySpace
) -> None:
    fleet = FleetStore(client, keys)
    assert fleet.get("v1") is None
    fleet.connected("v1", user_id="u1", reason="connect", now=1000.0)
    fleet.failed("v1", action="subscribe", error="SERVER:INTERNAL " + "x" * 900, now=1001.0)
    failed = fleet.get("v1")
    assert failed is not None
    assert (failed.status, failed.failed_action, failed.last_error_at) == (
        VehicleStatus.CONNECTED,
        "subscribe",
        1001.0,
    )
    assert failed.last_error is not None
    assert len(failed.last_error) == 500
    fleet.subscribed("v1", webhook_id="wh", user_id=None, now=1002.0)
    subscribed = fleet.get("v1")
    assert subscribed is not None
    assert (subscribed.status, subscribed.webhook_id, subscribed.subscribed_at, subscribed.user_id) == (
        VehicleStatus.SUBSCRIBED,
        "wh",
        1002.0,
        "u1",  # kept: not given again
    )
    assert (subscribed.last_error, subscribed.known_since) == (None, 1000.0)
    fleet.disconnected("v1", now=1003.0)
    fleet.revoked("v1", reason="disconnected by an operator", now=1004.0)
    revoked = fleet.get("v1")
    assert revoked is not None
    assert (revoked.status, revoked.subscribed_at, revoked.webhook_id, revoked.disconnected_at) == (
        VehicleStatus.REVOKED,
        None,
        None,
        1003.0,
    )
    fleet.needs_reconsent("v2", reason="refresh refused", now=999.0)
    assert fleet.vehicles() == ["v2", "v1"]
    assert set(fleet.many(["v1", "v2", "v3"])) == {"v1", "v2"}


def test_a_failure_of_an_unknown_vehicle_registers_it_as_connected(
    client: redis.Redis, keys: KeySpace
) -> None:
    fleet = FleetStore(client, keys)
    fleet.failed("v9", action="refresh", error="no tokens")
    found = fleet.get("v9")
    assert found is not None
    assert found.status is VehicleStatus.CONNECTED


def test_the_report_replaces_the_last_one(client: redis.Redis, keys: KeySpace) -> None:
    fleet = FleetStore(client, keys)
    fleet.save_report({"at": 1.5, "gone": 2, "note": "x"})
    fleet.save_report({"at": 2.5, "connections": 3})
    assert fleet.report() == {"at": "2.5", "connections": "3"}


def _put(grants: GrantStore, grant_id: str, *vehicles: str) -> None:
    grants.put(
        grant_id,
        data="sealed",
        vehicles=vehicles,
        expires_at=5000.0,
        refresh_expires_at=9000.0,
        user_id="u1",
        now=1000.0,
    )


def test_forget_takes_a_vehicle_out_of_its_grant_and_the_last_one_takes_the_grant(
    client: redis.Redis, keys: KeySpace
) -> None:
    grants = GrantStore(client, keys)
    _put(grants, "g1", "v1", "v2")
    _put(grants, "g2", "v3")
    assert grants.covered_vehicles(chunk=1) == {"v1": "g1", "v2": "g1", "v3": "g2"}
    assert grants.forget("v1") is True
    info = grants.info("g1")
    assert info is not None
    assert info.vehicles == ["v2"]
    assert grants.grant_of("v1") is None
    assert grants.forget("v1") is False  # nothing left to forget
    assert grants.forget("v2") is True
    assert grants.info("g1") is None
    assert grants.expiring(10_000.0, limit=10) == ["g2"]
    assert grants.covered_vehicles() == {"v3": "g2"}


def test_forget_reads_again_when_a_put_moved_the_vehicle(client: redis.Redis, keys: KeySpace) -> None:
    grants = GrantStore(client, keys)
    _put(grants, "g1", "v1")
    # The script's answer to a stale read:
    moved = grants._forget(keys=[keys.grant_of("v1"), keys.grant("g0"), keys.grant_expiry], args=["v1", "g0"])
    assert int(moved) == 0
    assert grants.grant_of("v1") == "g1"


def test_state_is_forgotten_and_the_last_event_is_read_from_it(client: redis.Redis, keys: KeySpace) -> None:
    vehicles = VehicleStateStore(client, keys)
    vehicles.merge("v1", [SignalUpdate("a", {"value": 1}, 10, 2000)], event_id="e1")
    vehicles.merge("v1", [SignalUpdate("b", {"value": 2}, 10, 9000, source="v3")], event_id="e2")
    vehicles.record_errors("v2", [{"type": "VEHICLE", "code": "ASLEEP"}], at=3000, event_id="e3")
    assert vehicles.last_events(["v1", "v2", "v3"]) == {"v1": 2000, "v2": 3000, "v3": None}
    vehicles.forget("v1")
    assert vehicles.signals("v1") == {}


def test_a_deferred_job_is_due_later_without_an_attempt(client: redis.Redis, keys: KeySpace) -> None:
    jobs = LifecycleStore(client, keys)
    jobs.request(LifecycleAction.SUBSCRIBE, "v1", reason="connect", now=1000.0)
    (job,) = jobs.take(1, lease=60, now=1000.0)
    jobs.defer(job, delay=5, now=1001.0)
    assert jobs.take(1, lease=60, now=1005.0) == []
    (again,) = jobs.take(1, lease=60, now=1006.0)
    assert again.attempts == 0
    jobs.done(again)
    jobs.defer(again, delay=5, now=1007.0)
    assert jobs.waiting() == []  # a job done meanwhile stays done
