"""Subscribe, unsubscribe, disconnect and refresh through the lifecycle jobs: against the simulator over
real HTTP and real Redis, in this process (`VehicleLifecycle.drain`) and in real worker and beat processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from eventstore.fleet import VehicleStatus
from eventstore.lifecycle import LifecycleAction
from eventstore.vehicles import SignalUpdate
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.workers import WorkerLauncher
from workers.lifecycle import JobResult, Outcome, VehicleLifecycle
from workers.runtime import Runtime

SUBSCRIBE, UNSUBSCRIBE = LifecycleAction.SUBSCRIBE, LifecycleAction.UNSUBSCRIBE
DISCONNECT, REFRESH = LifecycleAction.DISCONNECT, LifecycleAction.REFRESH
WEBHOOK_ID = "wh-test"  # the webhook of the tests' payloads (conftest)
SERVER_ERROR = {"type": "SERVER", "code": "INTERNAL", "status": 500}


@pytest.fixture
def lifecycle(sim: RunningSimulator, sim_runtime: Callable[..., Runtime]) -> Callable[..., VehicleLifecycle]:
    """`lifecycle(**settings)`: a VehicleLifecycle on a simulator runtime with our webhook id and the AMT."""

    def build(**overrides: Any) -> VehicleLifecycle:
        values = {"smartcar_webhook_id": WEBHOOK_ID, "smartcar_amt": f"{sim.amt},old-amt", **overrides}
        return VehicleLifecycle(sim_runtime(**values))

    return build


def subscribed(sim: RunningSimulator) -> set[str]:
    """The vehicles the simulator has subscribed to our webhook (its own record)."""
    return set(sim.sim.subscriptions.get(WEBHOOK_ID, set()))


def run(lifecycle: VehicleLifecycle, action: LifecycleAction, vehicle_id: str, **job: Any) -> list[JobResult]:
    """Ask for the job and drain until it is settled for good (retries included): every result."""
    lifecycle.request(action, vehicle_id, reason="test", **job)
    results: list[JobResult] = []

    def settled() -> bool:
        results.extend(lifecycle.drain())
        return lifecycle.jobs.get(action.value, vehicle_id) is None

    wait_until(settled, timeout=20, what=f"the {action.value} job of {vehicle_id} to settle")
    return results


def test_subscribe_is_retried_through_faults_and_is_idempotent(
    sim: RunningSimulator, lifecycle: Callable[..., VehicleLifecycle], connect: Callable[..., dict[str, Any]]
) -> None:
    life = lifecycle()
    car = connect(life.runtime)
    path = f"webhooks/{WEBHOOK_ID}"
    sim.control.add_fault(vehicle_id=car["id"], path=path, method="POST", count=2, error=SERVER_ERROR)

    results = run(life, SUBSCRIBE, car["id"], user_id=car["user_id"])

    assert [result.outcome for result in results] == [Outcome.RETRYING, Outcome.RETRYING, Outcome.DONE]
    assert "SERVER:INTERNAL" in results[0].detail
    assert subscribed(sim) == {car["id"]}
    known = life.fleet.get(car["id"])
    assert known is not None
    assert (known.status, known.webhook_id, known.user_id) == (
        VehicleStatus.SUBSCRIBED,
        WEBHOOK_ID,
        car["user_id"],
    )
    assert known.last_error is None

    again = run(life, SUBSCRIBE, car["id"])  # Smartcar answers a second subscribe with success
    assert [result.outcome for result in again] == [Outcome.DONE]
    assert subscribed(sim) == {car["id"]}
    posts = sim.control.requests(vehicle_id=car["id"], path=path, method="POST")
    assert [call.status for call in posts] == [500, 500, 200, 200]


def test_unsubscribe_with_the_amt_and_of_a_subscription_smartcar_does_not_know(
    sim: RunningSimulator, lifecycle: Callable[..., VehicleLifecycle], connect: Callable[..., dict[str, Any]]
) -> None:
    life = lifecycle()
    car = connect(life.runtime)
    run(life, SUBSCRIBE, car["id"])
    # A subscribe asked for and not yet due is withdrawn by the unsubscribe.
    life.jobs.request(SUBSCRIBE, car["id"], reason="a later connect", due=time.time() + 600)

    (result,) = run(life, UNSUBSCRIBE, car["id"])

    assert (result.outcome, result.detail) == (Outcome.DONE, f"unsubscribed from webhook {WEBHOOK_ID}")
    assert subscribed(sim) == set()
    assert life.jobs.waiting() == []
    known = life.fleet.get(car["id"])
    assert known is not None
    assert (known.status, known.unsubscribed_at is not None) == (VehicleStatus.CONNECTED, True)
    (call,) = sim.control.requests(vehicle_id=car["id"], method="DELETE")
    assert call.status == 200
    # Neither subscribed any more, nor known to Smartcar at all: both done.
    assert [r.outcome for r in run(life, UNSUBSCRIBE, car["id"])] == [Outcome.DONE]
    (unknown,) = run(life, UNSUBSCRIBE, "no-such-vehicle")
    assert (unknown.outcome, unknown.detail) == (
        Outcome.DONE,
        f"not subscribed to webhook {WEBHOOK_ID} (Smartcar does not know the vehicle)",
    )
    assert life.fleet.get("no-such-vehicle") is None


def test_disconnect_forgets_tokens_state_and_subscription_and_is_not_sent_twice(
    sim: RunningSimulator, lifecycle: Callable[..., VehicleLifecycle], connect: Callable[..., dict[str, Any]]
) -> None:
    life = lifecycle()
    car = connect(life.runtime)
    other = next(v for v in life.tokens.info(life.tokens.grant_of(car["id"])).vehicles if v != car["id"])  # type: ignore[union-attr]
    run(life, SUBSCRIBE, car["id"])
    life.runtime.vehicles.merge(car["id"], [SignalUpdate("odometer", {"value": 1}, 1, 2)], event_id="e1")
    # Waiting (not due): forgotten with the vehicle.
    life.jobs.request(REFRESH, car["id"], reason="an operator", due=time.time() + 600)
    sim.control.add_fault(
        vehicle_id=car["id"], path=f"webhooks/{WEBHOOK_ID}", method="DELETE", count=1, error=SERVER_ERROR
    )

    results = run(life, DISCONNECT, car["id"])

    assert [result.outcome for result in results] == [Outcome.RETRYING, Outcome.DONE]
    assert results[1].detail == (
        f"disconnected at Smartcar before; unsubscribed from webhook {WEBHOOK_ID}; tokens and state forgotten"
    )
    deletes = sim.control.requests(vehicle_id=car["id"], path="application", method="DELETE")
    assert [call.status for call in deletes] == [200]  # the retry did not send it again
    assert not sim.sim.fleet.is_connected(car["user_id"], car["id"])
    assert subscribed(sim) == set()
    assert life.tokens.grants.grant_of(car["id"]) is None
    assert life.tokens.grants.grant_of(other) is not None  # the grant's other car keeps its tokens
    assert life.runtime.vehicles.signals(car["id"]) == {}
    assert life.jobs.waiting() == []
    known = life.fleet.get(car["id"])
    assert known is not None
    assert (known.status, known.reason) == (VehicleStatus.REVOKED, "disconnected")
    # Again, with nothing left: Smartcar's refusal and the missing tokens count as disconnected.
    (again,) = run(life, DISCONNECT, car["id"])
    assert again.detail.startswith("disconnected at Smartcar before")


def test_disconnect_of_a_vehicle_smartcar_already_dropped(
    sim: RunningSimulator, lifecycle: Callable[..., VehicleLifecycle], connect: Callable[..., dict[str, Any]]
) -> None:
    life = lifecycle()
    car = connect(life.runtime)
    sim.sim.fleet.disconnect(vehicle_id=car["id"])
    (result,) = run(life, DISCONNECT, car["id"])
    assert result.outcome is Outcome.DONE
    assert result.detail.startswith("already disconnected (AUTHENTICATION)")
    (none_left,) = run(life, DISCONNECT, "car-without-tokens")
    assert none_left.detail.startswith("no usable token (already disconnected)")


def test_refresh_exchanges_the_grant_and_a_refused_one_needs_the_owner(
    sim: RunningSimulator, lifecycle: Callable[..., VehicleLifecycle], connect: Callable[..., dict[str, Any]]
) -> None:
    life = lifecycle()
    car = connect(life.runtime)
    grant = life.tokens.grant_of(car["id"])
    before = life.tokens.info(grant)
    life.fleet.needs_reconsent(car["id"], reason="an earlier refusal")
    (done,) = run(life, REFRESH, car["id"])
    assert (done.outcome, done.detail.startswith(f"grant {grant} refreshed")) == (Outcome.DONE, True)
    after = life.tokens.info(grant)
    assert before is not None
    assert after is not None
    assert after.generation == before.generation + 1
    known = life.fleet.get(car["id"])
    assert known is not None
    assert known.status is VehicleStatus.CONNECTED

    life.tokens.put(
        vehicle_ids=[car["id"]], access_token="AT-stale", refresh_token="RT-refused", expires_at=1.0
    )
    with capture_logs() as logs:
        (refused,) = run(life, REFRESH, car["id"])
    assert refused.outcome is Outcome.DROPPED
    known = life.fleet.get(car["id"])
    assert known is not None
    assert (known.status, known.failed_action) == (VehicleStatus.NEEDS_RECONSENT, "refresh")
    assert "the user must reconnect" in (known.last_error or "")
    (line,) = [entry for entry in logs if entry["event"] == "lifecycle_job_dropped"]
    assert line["needs_reconsent"] is True
    assert "RT-refused" not in json.dumps(logs, default=str)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ({"type": "PERMISSION", "code": None, "status": 403}, VehicleStatus.NEEDS_RECONSENT),
        ({"type": "VALIDATION", "code": "PARAMETER", "status": 400}, VehicleStatus.CONNECTED),
    ],
)
def test_an_error_that_needs_a_person_is_recorded_and_dropped(
    sim: RunningSimulator,
    lifecycle: Callable[..., VehicleLifecycle],
    connect: Callable[..., dict[str, Any]],
    error: dict[str, Any],
    status: VehicleStatus,
) -> None:
    life = lifecycle()
    car = connect(life.runtime)
    sim.control.add_fault(vehicle_id=car["id"], path=f"webhooks/{WEBHOOK_ID}", method="POST", error=error)
    (result,) = run(life, SUBSCRIBE, car["id"])
    assert result.outcome is Outcome.DROPPED
    assert "not retryable" in result.detail
    known = life.fleet.get(car["id"])
    assert known is not None
    assert (known.status, known.failed_action) == (status, "subscribe")
    assert (known.last_error or "").startswith(error["type"])
    assert subscribed(sim) == set()


def test_transient_errors_give_up_after_the_policys_attempts(
    sim: RunningSimulator, lifecycle: Callable[..., VehicleLifecycle], connect: Callable[..., dict[str, Any]]
) -> None:
    life = lifecycle(retry_max_attempts=2)
    car = connect(life.runtime)
    sim.control.add_fault(vehicle_id=car["id"], path=f"webhooks/{WEBHOOK_ID}", error=SERVER_ERROR)
    results = run(life, SUBSCRIBE, car["id"])
    assert [result.outcome for result in results] == [Outcome.RETRYING, Outcome.DROPPED]
    assert "gave up after 2 attempts" in results[-1].detail


def test_what_cannot_start_is_dropped_with_its_reason_or_deferred(
    sim: RunningSimulator, lifecycle: Callable[..., VehicleLifecycle], connect: Callable[..., dict[str, Any]]
) -> None:
    unset = lifecycle(smartcar_webhook_id=None, smartcar_amt=None)
    car = connect(unset.runtime)
    (no_webhook,) = run(unset, SUBSCRIBE, car["id"])
    assert (no_webhook.outcome, no_webhook.detail) == (
        Outcome.DROPPED,
        "MissingSettingError: subscribe needs SMARTCAR_WEBHOOK_ID, which is not set",
    )
    life = lifecycle()
    (no_tokens,) = run(life, SUBSCRIBE, "never-connected")
    assert no_tokens.detail.endswith(
        "no Smartcar tokens for vehicle never-connected: its owner must connect it first"
    )
    assert sim.control.requests(method="POST") == []

    life.runtime.limiter.pause_app(30)
    life.request(SUBSCRIBE, car["id"], reason="test")
    (deferred,) = life.drain()
    assert deferred.outcome is Outcome.DEFERRED
    job = life.jobs.get(SUBSCRIBE.value, car["id"])
    assert job is not None
    assert job.attempts == 0
    life.runtime.limiter.resume()


def test_a_bug_is_retried_with_its_traceback_logged_then_dropped(
    lifecycle: Callable[..., VehicleLifecycle],
    connect: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    life = lifecycle(retry_max_attempts=2)
    car = connect(life.runtime)

    def broken(vehicle_id: str, **_: Any) -> str:
        raise KeyError(vehicle_id)

    monkeypatch.setattr(life, "subscribe", broken)
    with capture_logs() as logs:
        results = run(life, SUBSCRIBE, car["id"])
    assert [result.outcome for result in results] == [Outcome.RETRYING, Outcome.DROPPED]
    assert results[-1].detail == f"gave up after 2 attempts: KeyError: '{car['id']}'"
    assert [entry["event"] for entry in logs].count("lifecycle_job_failed") == 2


def test_workers_and_beat_run_the_jobs_and_no_secret_reaches_their_logs(
    sim: RunningSimulator, launch: Callable[..., WorkerLauncher]
) -> None:
    launcher = launch(
        origins=sim.origins,
        smartcar_client_id=sim.client_id,
        smartcar_client_secret=sim.client_secret,
        smartcar_webhook_id=WEBHOOK_ID,
        smartcar_amt=sim.amt,
        lifecycle_interval=0.5,
        reconcile_interval=0,
        log_format="json",
    )
    vehicle = sim.control.vehicles()[0]
    minted = sim.control.mint_tokens(user_id=vehicle["user_id"])
    launcher.tokens.put(
        vehicle_ids=minted.vehicle_ids,
        access_token=minted.access_token,
        refresh_token=minted.refresh_token,
        expires_at=1.0,  # expired: the subscribe refreshes it first
        user_id=minted.user_id,
    )
    first, second = minted.vehicle_ids
    sim.control.add_fault(
        vehicle_id=first, path=f"webhooks/{WEBHOOK_ID}", method="POST", count=1, error=SERVER_ERROR
    )
    worker = launcher.start("lifecycle")
    launcher.app.send_task("workers.subscribe_vehicle", args=[first], kwargs={"user_id": minted.user_id})
    wait_until(lambda: first in subscribed(sim), timeout=30, what="the direct task's subscribe")

    # A job asked for in Redis only (as the receiver's Connect callback does) is drained by beat's task.
    from eventstore.keys import KeySpace  # noqa: PLC0415
    from eventstore.lifecycle import LifecycleStore  # noqa: PLC0415

    jobs = LifecycleStore(launcher.client, KeySpace(launcher.settings.event_key_prefix))
    jobs.request(SUBSCRIBE, second, user_id=minted.user_id, reason="connect")
    beat = launcher.start_beat()
    wait_until(lambda: second in subscribed(sim), timeout=30, what="beat's drain to subscribe the second car")
    launcher.app.send_task("workers.unsubscribe_vehicle", args=[first])
    launcher.app.send_task("workers.disconnect_vehicle", args=[second])
    wait_until(lambda: subscribed(sim) == set(), timeout=30, what="the unsubscribe and the disconnect")
    wait_until(
        lambda: launcher.tokens.grants.grant_of(second) is None, timeout=30, what="the tokens forgotten"
    )
    launcher.app.send_task("workers.refresh_vehicle", args=[first])
    wait_until(
        lambda: "grant" in worker.output() and "refreshed; the access token expires" in worker.output(),
        timeout=30,
        what="the refresh",
    )
    beat.stop()
    worker.stop()
    logs = worker.output() + beat.output()
    assert "lifecycle_job_retrying" in logs
    secrets = [minted.access_token, minted.refresh_token, sim.amt, sim.client_secret]
    assert [secret for secret in secrets if secret in logs] == []
