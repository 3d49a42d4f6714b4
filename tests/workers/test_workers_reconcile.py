"""Reconciliation of our vehicles with Smartcar's connections, against the simulator's Management API over
real HTTP and real Redis: drift found, what is safe fixed, and nothing judged on a listing it cannot trust.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from eventstore.fleet import VehicleStatus
from eventstore.lifecycle import LifecycleAction
from smartcar_core import results as r
from smartcar_core.client import Smartcar
from smartcar_core.errors import SmartcarError
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.workers import WorkerLauncher
from workers import lifecycle_tasks
from workers.lifecycle import MissingSettingError, VehicleLifecycle
from workers.metrics import StoreCollector
from workers.reconcile import ListingError, reconcile
from workers.runtime import Runtime

WEBHOOK_ID = "wh-test"


@pytest.fixture
def life(sim: RunningSimulator, sim_runtime: Callable[..., Runtime]) -> VehicleLifecycle:
    return VehicleLifecycle(sim_runtime(smartcar_webhook_id=WEBHOOK_ID, smartcar_amt=sim.amt))


def owners(sim: RunningSimulator) -> dict[str, list[str]]:
    """The simulator's users and their vehicles (two each), in the fleet's order."""
    found: dict[str, list[str]] = {}
    for vehicle in sim.control.vehicles():
        found.setdefault(vehicle["user_id"], []).append(vehicle["id"])
    return found


def connect_owner(sim: RunningSimulator, life: VehicleLifecycle, user_id: str) -> list[str]:
    minted = sim.control.mint_tokens(user_id=user_id)
    life.tokens.put(
        vehicle_ids=minted.vehicle_ids,
        access_token=minted.access_token,
        refresh_token=minted.refresh_token,
        expires_at=time.time() + minted.expires_in,
        user_id=user_id,
    )
    return sorted(minted.vehicle_ids)


def subscribed(sim: RunningSimulator) -> set[str]:
    return set(sim.sim.subscriptions.get(WEBHOOK_ID, set()))


def settle(life: VehicleLifecycle) -> None:
    wait_until(lambda: not life.drain() and not life.jobs.waiting(), timeout=20, what="every job settled")


def test_a_vehicle_smartcar_dropped_is_forgotten_and_a_missing_subscription_is_made(
    sim: RunningSimulator, life: VehicleLifecycle
) -> None:
    users = list(owners(sim))
    first, second = connect_owner(sim, life, users[0]), connect_owner(sim, life, users[1])
    life.request(LifecycleAction.SUBSCRIBE, first[0], reason="connect")
    settle(life)
    gone = second[0]
    Smartcar(origins=sim.origins).delete_connections(sim.amt, {"vehicle_id": gone})  # deleted at Smartcar

    with capture_logs() as logs:
        report = reconcile(life, page_size=3)

    everyone = set(sim.vehicle_ids)
    assert (report.connections, report.pages, report.ours) == (11, 4, 4)
    assert report.gone == [gone]
    assert report.not_subscribed == sorted([first[1], second[1]])
    assert report.no_tokens == sorted(everyone - set(first) - set(second))
    assert (report.needs_reconsent, report.fixed, report.drift) == ([], 3, 11)
    assert life.tokens.grants.grant_of(gone) is None
    assert life.tokens.grants.grant_of(second[1]) is not None
    known = life.fleet.get(gone)
    assert known is not None
    assert (known.status, known.reason) == (VehicleStatus.REVOKED, "Smartcar no longer lists its connection")
    (line,) = [entry for entry in logs if entry["event"] == "fleet_drift"]
    assert (line["log_level"], line["gone"], line["gone_ids"], line["not_subscribed"]) == (
        "warning",
        1,
        [gone],
        2,
    )
    stored = life.fleet.report()
    assert (stored["gone"], stored["not_subscribed"], stored["no_tokens"], stored["connections"]) == (
        "1",
        "2",
        "8",
        "11",
    )

    gauges = CollectorRegistry()
    gauges.register(StoreCollector(life.runtime.redis, life.runtime.keys))
    drift = {
        kind: gauges.get_sample_value("smartcar_fleet_drift", {"kind": kind})
        for kind in ("gone", "no_tokens")
    }
    assert drift == {"gone": 1.0, "no_tokens": 8.0}
    assert gauges.get_sample_value("smartcar_fleet_reconciled_at_seconds") == report.started_at

    settle(life)  # the subscribes it asked for
    assert subscribed(sim) == {first[0], first[1], second[1]}
    again = reconcile(life)
    assert (again.gone, again.not_subscribed, again.ours) == ([], [], 3)


def test_an_operators_unsubscribe_is_kept_and_a_refused_grant_is_reported(
    sim: RunningSimulator, life: VehicleLifecycle
) -> None:
    kept, refused = connect_owner(sim, life, next(iter(owners(sim))))
    life.request(LifecycleAction.UNSUBSCRIBE, kept, reason="an operator")
    settle(life)
    life.fleet.needs_reconsent(refused, reason="Smartcar refused the grant")
    with capture_logs() as logs:
        report = reconcile(life)
    assert (report.not_subscribed, report.needs_reconsent) == ([], [refused])
    assert life.jobs.waiting() == []
    assert any(entry["event"] == "fleet_drift" for entry in logs)


def test_nothing_is_fixed_when_told_so_and_no_drift_is_an_info_line(
    sim: RunningSimulator, life: VehicleLifecycle
) -> None:
    vehicles = connect_owner(sim, life, next(iter(owners(sim))))
    report = reconcile(life, fix=False)
    assert (report.not_subscribed, report.fixed) == (vehicles, 0)
    assert life.jobs.waiting() == []
    for vehicle_id in sim.vehicle_ids:
        if vehicle_id not in vehicles:
            Smartcar(origins=sim.origins).delete_connections(sim.amt, {"vehicle_id": vehicle_id})
    for vehicle_id in vehicles:
        life.request(LifecycleAction.SUBSCRIBE, vehicle_id, reason="test")
    settle(life)
    with capture_logs() as logs:
        quiet = reconcile(life)
    assert quiet.drift == 0
    assert [entry["event"] for entry in logs if entry["event"].startswith("fleet_")] == ["fleet_reconciled"]


def test_a_vehicle_connected_again_during_the_listing_is_not_forgotten(
    sim: RunningSimulator, life: VehicleLifecycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    def put(vehicle_id: str) -> None:
        life.tokens.put(
            vehicle_ids=[vehicle_id], access_token="AT", refresh_token="RT", expires_at=time.time() + 7200
        )

    put("ghost")  # tokens for a car Smartcar does not list
    put("moved-on")
    listing = life.gateway.connections

    def connections(amt: str, **options: Any) -> r.GetConnections:
        if not options.get("vehicle_id"):
            put("ghost")  # its owner connected it again while the listing ran
        return listing(amt, **options)

    monkeypatch.setattr(life.gateway, "connections", connections)
    report = reconcile(life)
    assert report.gone == ["moved-on"]
    assert life.tokens.grants.grant_of("ghost") is not None
    assert life.tokens.grants.grant_of("moved-on") is None


def test_nothing_is_judged_on_a_listing_that_fails_or_does_not_end(
    sim: RunningSimulator,
    life: VehicleLifecycle,
    sim_runtime: Callable[..., Runtime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    life.tokens.put(
        vehicle_ids=["ghost"], access_token="AT", refresh_token="RT", expires_at=time.time() + 7200
    )
    sim.control.add_fault(
        path="connections", method="GET", count=1, error={"type": "SERVER", "code": "INTERNAL"}
    )
    with pytest.raises(SmartcarError):
        reconcile(life)
    listing = life.gateway.connections

    def looping(amt: str, **_: Any) -> r.GetConnections:
        page = listing(amt)  # always the first page, and always a cursor, the same one
        return r.GetConnections(connections=page.connections, paging=r.PagingCursor(cursor="again"))

    monkeypatch.setattr(life.gateway, "connections", looping)
    with pytest.raises(ListingError, match="a cursor it gave before"):
        reconcile(life)
    assert life.tokens.grants.grant_of("ghost") is not None
    assert life.fleet.report() == {}

    without = VehicleLifecycle(sim_runtime(smartcar_amt=None))
    with pytest.raises(MissingSettingError, match="the reconciliation needs SMARTCAR_AMT"):
        reconcile(without)


def test_the_task_reports_skips_and_failures_in_a_line(
    sim: RunningSimulator,
    life: VehicleLifecycle,
    sim_runtime: Callable[..., Runtime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vehicles = connect_owner(sim, life, next(iter(owners(sim))))
    monkeypatch.setattr(lifecycle_tasks, "_lifecycle", lambda: life)
    counts = lifecycle_tasks.reconcile_fleet.run()
    assert counts["not_subscribed"] == 2
    assert subscribed(sim) == set(vehicles)  # drained by the task
    sim.control.add_fault(
        path="connections", method="GET", count=1, error={"type": "SERVER", "code": "INTERNAL"}
    )
    with capture_logs() as logs:
        assert lifecycle_tasks.reconcile_fleet.run() == {"failed": 1}
    assert logs[-1]["event"] == "reconcile_failed"
    without = VehicleLifecycle(sim_runtime(smartcar_amt=None))
    monkeypatch.setattr(lifecycle_tasks, "_lifecycle", lambda: without)
    with capture_logs() as logs:
        assert lifecycle_tasks.reconcile_fleet.run() == {"skipped": 1}
    assert logs[-1]["event"] == "reconcile_skipped"


def test_beat_reconciles_in_a_worker(sim: RunningSimulator, launch: Callable[..., WorkerLauncher]) -> None:
    launcher = launch(
        origins=sim.origins,
        smartcar_client_id=sim.client_id,
        smartcar_client_secret=sim.client_secret,
        smartcar_webhook_id=WEBHOOK_ID,
        smartcar_amt=sim.amt,
        reconcile_interval=1.0,
    )
    user = next(iter(owners(sim)))
    minted = sim.control.mint_tokens(user_id=user)
    launcher.tokens.put(
        vehicle_ids=minted.vehicle_ids,
        access_token=minted.access_token,
        refresh_token=minted.refresh_token,
        expires_at=time.time() + 3600,
        user_id=user,
    )
    launcher.start("reconciler")
    launcher.start_beat()
    wait_until(lambda: subscribed(sim) == set(minted.vehicle_ids), timeout=40, what="beat's reconciliation")
