"""The Celery tasks of the vehicle lifecycle: the drain of due jobs (beat, which also asks for the forget of
vehicles held past their grace period), one direct task per action
(`workers.subscribe_vehicle` etc.: ask for the job, then drain), and the reconciliation (beat).

A direct task goes through the job queue, not around it: the job is what makes the work survive the
worker (taken with a lease, taken again if its worker dies) and what keeps one subscribe per vehicle
however often it is asked for. Each task takes its services from the process's `assembly`.
"""

from __future__ import annotations

from collections import Counter

from eventstore.lifecycle import LifecycleAction
from service_base.logs import get_logger
from smartcar_core.errors import SmartcarError
from workers.access import AccessLoss
from workers.app import app, assembly
from workers.lifecycle import (
    DRAIN_TASK,
    RECONCILE_TASK,
    JobResult,
    MissingSettingError,
    Outcome,
    VehicleLifecycle,
)
from workers.lifecycle import describe as describe_error
from workers.reconcile import ListingError, reconcile

log = get_logger("workers.lifecycle_tasks")


def _lifecycle() -> VehicleLifecycle:
    return VehicleLifecycle(assembly.runtime())


def _counts(results: list[JobResult]) -> dict[str, int]:
    return dict(Counter(result.outcome.value for result in results))


def _drain(lifecycle: VehicleLifecycle) -> dict[str, int]:
    """Drain, then have a job due again soon (a retry, a deferral within WORKERS_MAX_COUNTDOWN) drained
    when it is due, by a countdown of this task: beat's period is the fallback, not the retry delay."""
    results = lifecycle.drain()
    again = [result.delay for result in results if result.outcome in (Outcome.RETRYING, Outcome.DEFERRED)]
    if again and min(again) <= lifecycle.settings.max_countdown:
        lifecycle_jobs.apply_async(countdown=min(again))
    return _counts(results)


def _request_and_drain(
    action: LifecycleAction, vehicle_id: str, user_id: str | None, reason: str
) -> dict[str, int]:
    lifecycle = _lifecycle()
    lifecycle.request(action, vehicle_id, user_id=user_id, reason=reason)
    return _drain(lifecycle)


@app.task(name=DRAIN_TASK, ignore_result=True)
def lifecycle_jobs() -> dict[str, int]:
    """Ask for a `forget` of each vehicle held past WORKERS_REVOKED_GRACE (`workers.access`), then run the
    due lifecycle jobs (at most WORKERS_LIFECYCLE_BATCH); counts by outcome, for logs."""
    lifecycle = _lifecycle()
    AccessLoss(lifecycle.runtime).expire()
    return _drain(lifecycle)


@app.task(name="workers.subscribe_vehicle", ignore_result=True)
def subscribe_vehicle(vehicle_id: str, user_id: str | None = None, reason: str = "task") -> dict[str, int]:
    return _request_and_drain(LifecycleAction.SUBSCRIBE, vehicle_id, user_id, reason)


@app.task(name="workers.unsubscribe_vehicle", ignore_result=True)
def unsubscribe_vehicle(vehicle_id: str, reason: str = "task") -> dict[str, int]:
    return _request_and_drain(LifecycleAction.UNSUBSCRIBE, vehicle_id, None, reason)


@app.task(name="workers.disconnect_vehicle", ignore_result=True)
def disconnect_vehicle(vehicle_id: str, reason: str = "task") -> dict[str, int]:
    return _request_and_drain(LifecycleAction.DISCONNECT, vehicle_id, None, reason)


@app.task(name="workers.refresh_vehicle", ignore_result=True)
def refresh_vehicle(vehicle_id: str, reason: str = "task") -> dict[str, int]:
    return _request_and_drain(LifecycleAction.REFRESH, vehicle_id, None, reason)


@app.task(name=RECONCILE_TASK, ignore_result=True)
def reconcile_fleet(fix: bool = True) -> dict[str, float | int]:
    """Reconcile our vehicles with Smartcar's connections (`workers.reconcile`), then drain the subscribes
    it asked for. Without SMARTCAR_AMT, or when Smartcar fails, it logs why and changes nothing."""
    lifecycle = _lifecycle()
    try:
        report = reconcile(lifecycle, fix=fix)
    except MissingSettingError as error:
        log.warning("reconcile_skipped", reason=str(error))
        return {"skipped": 1}
    except (SmartcarError, ListingError) as error:
        log.warning("reconcile_failed", error=describe_error(error), retry="next beat")
        return {"failed": 1}
    if report.not_subscribed and fix:
        _drain(lifecycle)
    return report.counts()
