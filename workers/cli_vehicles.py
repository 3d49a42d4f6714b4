"""`smartcar-events vehicles`: our vehicles' status, and their lifecycle operations, run or enqueued.

Each operation (`subscribe`, `unsubscribe`, `disconnect`, `refresh`, `reconcile`) is by default asked of
the workers: the job goes into the lifecycle queue (which survives a worker) and a drain task is sent, so
a worker does it within seconds (without a broker, beat's drain does it within
WORKERS_LIFECYCLE_INTERVAL). `--now` does it in this process instead, with the RetryPolicy's short
retries, and says what happened. A vehicle's signals and errors are `smartcar-events vehicle state`.

Exit status, as the rest of `smartcar-events`: 78 for settings that cannot work (or a Redis that does
not answer), 2 for a bad invocation, 1 for nothing found or an operation that failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from eventstore.lifecycle import LifecycleAction
from smartcar_core.errors import SmartcarError
from smartcar_core.retry import Action
from workers.cli_output import (
    checked_vehicle_ids,
    console,
    errors,
    fail,
    send_or_say,
    settings_or_exit,
    store_answers,
)
from workers.lifecycle import (
    DRAIN_TASK,
    RECONCILE_TASK,
    LifecycleError,
    MissingSettingError,
    VehicleLifecycle,
    describe,
)
from workers.limits import DeferredError
from workers.reconcile import ListingError, reconcile
from workers.registry import HandlerRegistry
from workers.runtime import Runtime
from workers.settings import WorkerSettings
from workers.tokens import TokenError

vehicles_app = typer.Typer(
    help="Our vehicles: status, and subscribe, unsubscribe, disconnect, refresh, reconcile.",
    no_args_is_help=True,
)

_NOW_MAX_WAIT = 30.0
"""--now waits for a retry at most this long (in total); a longer one is the workers' to do."""
_NEEDS = {
    LifecycleAction.SUBSCRIBE: ("SMARTCAR_WEBHOOK_ID",),
    LifecycleAction.UNSUBSCRIBE: ("SMARTCAR_WEBHOOK_ID", "SMARTCAR_AMT"),
    LifecycleAction.DISCONNECT: ("SMARTCAR_WEBHOOK_ID", "SMARTCAR_AMT"),
    LifecycleAction.REFRESH: (),
}
Now = Annotated[bool, typer.Option("--now", help="Do it in this process instead of asking the workers.")]
Ids = Annotated[list[str], typer.Argument(help="Vehicle ids.", show_default=False)]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@contextmanager
def _lifecycle() -> Iterator[VehicleLifecycle]:
    """A lifecycle on a runtime of its own (no handlers: this process runs no event), closed after; a
    Redis that does not answer is one line, not a traceback."""
    settings = settings_or_exit()
    runtime = Runtime.build(settings, handlers=HandlerRegistry())
    try:
        with store_answers(settings):
            yield VehicleLifecycle(runtime)
    finally:
        runtime.close()


def _time(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else "-"


def _require(settings: WorkerSettings, names: tuple[str, ...], what: str) -> None:
    values = {"SMARTCAR_WEBHOOK_ID": settings.smartcar_webhook_id, "SMARTCAR_AMT": settings.smartcar_amt}
    missing = [name for name in names if not values[name]]
    if missing:
        raise fail(f"{what} needs {' and '.join(missing)}, which the workers read too: set it", 78)


def _now(lifecycle: VehicleLifecycle, action: LifecycleAction, vehicle_id: str, user_id: str | None) -> bool:
    """Do it here, retrying what the policy retries soon; one line either way."""
    waited, attempt = 0.0, 0
    while True:
        attempt += 1
        delay: float | None = None
        try:
            detail = lifecycle.perform(action, vehicle_id, user_id=user_id)
        except DeferredError as error:
            delay, failure = error.delay, error.reason
        except SmartcarError as error:
            decision = lifecycle.policy.decide(error, attempt, refreshed=True)
            delay = decision.delay if decision.action is Action.RETRY else None
            failure = f"{describe(error)}: {decision.reason}"
        except (LifecycleError, MissingSettingError, TokenError) as error:
            failure = describe(error)
        else:
            console.print(f"{vehicle_id}: {detail}")
            job = lifecycle.jobs.get(action.value, vehicle_id)
            if job is not None:
                lifecycle.jobs.done(job)  # asked of the workers before, and done now
            return True
        if delay is None or waited + delay > _NOW_MAX_WAIT:
            errors.print(f"[red]{vehicle_id}: {action.value} failed: {failure}[/red]")
            return False
        time.sleep(delay)
        waited += delay


def _operate(action: LifecycleAction, ids: list[str], *, now: bool, user_id: str | None = None) -> None:
    vehicles = checked_vehicle_ids(ids)
    with _lifecycle() as lifecycle:
        settings = lifecycle.settings
        _require(settings, _NEEDS[action], action.value)
        if now:
            failed = [v for v in vehicles if not _now(lifecycle, action, v, user_id)]
            if failed:
                raise typer.Exit(1)
            return
        for vehicle_id in vehicles:
            lifecycle.request(action, vehicle_id, user_id=user_id, reason="operator")
        sent = send_or_say(settings, DRAIN_TASK)
        when = "now" if sent else f"within {settings.lifecycle_interval:g} s (beat's drain)"
        console.print(f"asked the workers to {action.value} {', '.join(vehicles)}: {when}")


@vehicles_app.command()
def subscribe(
    ids: Ids,
    now: Now = False,
    user: Annotated[str | None, typer.Option(help="The vehicle's Smartcar user id, if known.")] = None,
) -> None:
    """Subscribe vehicles to our webhook (SMARTCAR_WEBHOOK_ID); done again, Smartcar answers success."""
    _operate(LifecycleAction.SUBSCRIBE, ids, now=now, user_id=user)


@vehicles_app.command()
def unsubscribe(ids: Ids, now: Now = False) -> None:
    """Unsubscribe vehicles from our webhook (with SMARTCAR_AMT); the reconciliation leaves them so."""
    _operate(LifecycleAction.UNSUBSCRIBE, ids, now=now)


@vehicles_app.command()
def disconnect(
    ids: Ids,
    now: Now = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Disconnect vehicles at Smartcar, unsubscribe them, forget their tokens and state.

    Only the owner connecting again undoes it."""
    if not yes and not typer.confirm(f"disconnect {', '.join(ids)}? Only their owners can undo it"):
        raise typer.Exit(1)
    _operate(LifecycleAction.DISCONNECT, ids, now=now)


@vehicles_app.command()
def refresh(ids: Ids, now: Now = False) -> None:
    """Refresh the tokens of the vehicles' grants now (a grant covers all its owner's vehicles)."""
    _operate(LifecycleAction.REFRESH, ids, now=now)


@vehicles_app.command("reconcile")
def reconcile_command(
    now: Now = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report the drift, fix nothing.")] = False,
) -> None:
    """Compare our vehicles with Smartcar's connections, fix what is safe.

    Forgets what Smartcar no longer lists, subscribes what is connected but not subscribed, reports the
    rest (no tokens, needs re-consent)."""
    with _lifecycle() as lifecycle:
        _require(lifecycle.settings, ("SMARTCAR_AMT",), "reconcile")
        if not now:
            if not send_or_say(lifecycle.settings, RECONCILE_TASK, fix=not dry_run):
                raise typer.Exit(1)
            console.print("asked the workers to reconcile (the report: smartcar-events vehicles list)")
            return
        try:
            report = reconcile(lifecycle, fix=not dry_run)
        except (SmartcarError, ListingError) as error:
            raise fail(f"reconcile failed, nothing changed: {describe(error)}", 1) from None
    table = Table(title="reconciliation", show_header=False)
    for name, value in report.counts().items():
        table.add_row(name, _time(float(value)) if name == "at" else str(value))
    for name in ("gone", "not_subscribed", "no_tokens", "needs_reconsent"):
        for vehicle_id in getattr(report, name):
            table.add_row(name, vehicle_id)
    console.print(table)


def _rows(lifecycle: VehicleLifecycle, ids: list[str] | None) -> list[dict[str, Any]]:
    """What we know of each vehicle (registered, or covered by a grant), as plain values."""
    covered = lifecycle.tokens.grants.covered_vehicles()
    vehicles = (
        ids if ids is not None else list(dict.fromkeys([*lifecycle.fleet.vehicles(), *sorted(covered)]))
    )
    known = lifecycle.fleet.many(vehicles)
    last = lifecycle.runtime.vehicles.last_events(vehicles)
    held = lifecycle.tokens.held.counts(vehicles)
    waiting: dict[str, list[str]] = {}
    for job, _ in lifecycle.jobs.waiting():
        waiting.setdefault(job.vehicle_id, []).append(job.action.value)
    rows = []
    for vehicle_id in vehicles:
        record, last_ms = known.get(vehicle_id), last.get(vehicle_id)
        grant = covered.get(vehicle_id)
        info = lifecycle.tokens.info(grant) if grant else None
        if record is None and info is None and vehicle_id not in waiting:
            continue
        status = record.status.value if record is not None else "connected"
        rows.append(
            {
                "vehicle_id": vehicle_id,
                "status": status,
                "reason": record.reason if record is not None else "tokens stored, not registered",
                "user_id": (record.user_id if record is not None else None)
                or (info.user_id if info else None),
                "webhook_id": record.webhook_id if record is not None else None,
                "known_since": record.known_since if record is not None else None,
                "subscribed_at": record.subscribed_at if record is not None else None,
                "unsubscribed_at": record.unsubscribed_at if record is not None else None,
                "last_event_at": last_ms / 1000 if last_ms else None,
                "grant": grant,
                "token_expires_at": info.expires_at if info else None,
                "refresh_token_expires_at": info.refresh_expires_at if info else None,
                "last_error": record.last_error if record is not None else None,
                "last_error_at": record.last_error_at if record is not None else None,
                "failed_action": record.failed_action if record is not None else None,
                "waiting_jobs": waiting.get(vehicle_id, []),
                "reconsent_url": record.reconsent_url if record is not None else None,
                "events_waiting_for_reconsent": held.get(vehicle_id, 0),
            }
        )
    return rows


@vehicles_app.command("list")
def list_command(as_json: AsJson = False) -> None:
    """Every vehicle we know: status, last event, token expiry.

    Status: connected, subscribed, needs_reconsent, revoked; then the last reconciliation's drift."""
    with _lifecycle() as lifecycle:
        rows, report = _rows(lifecycle, None), lifecycle.fleet.report()
    if as_json:
        typer.echo(json.dumps({"vehicles": rows, "reconciliation": report}, indent=2, sort_keys=True))
        return
    table = Table(title=f"{len(rows)} vehicles")
    table.add_column("vehicle", no_wrap=True)
    for column in ("status", "user", "subscribed (UTC)", "last event (UTC)", "token expires (UTC)", "error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["vehicle_id"],
            row["status"],
            row["user_id"] or "-",
            _time(row["subscribed_at"]),
            _time(row["last_event_at"]),
            _time(row["token_expires_at"]),
            row["failed_action"] or "",
        )
    console.print(table)
    if report:
        drift = ", ".join(
            f"{name} {report.get(name, '0')}" for name in ("gone", "not_subscribed", "no_tokens")
        )
        console.print(
            f"last reconciliation {_time(float(report['at']))}: drift {report.get('drift')} ({drift})"
        )


@vehicles_app.command()
def show(vehicle_id: str, as_json: AsJson = False) -> None:
    """Everything we know of one vehicle (never a token); for one whose access was lost, the Connect URL
    that asks its owner to consent again and how many of its events wait for it.

    Its signals and errors: `smartcar-events vehicle state`."""
    with _lifecycle() as lifecycle:
        rows = _rows(lifecycle, checked_vehicle_ids([vehicle_id]))
    if not rows:
        raise fail(f"nothing known about vehicle {vehicle_id}", 1)
    (row,) = rows
    if as_json:
        typer.echo(json.dumps(row, indent=2, sort_keys=True))
        return
    table = Table(show_header=False, title=f"vehicle {vehicle_id}")
    for name, value in row.items():
        if name.endswith("_at"):
            shown = _time(value)
        elif isinstance(value, list):
            shown = ", ".join(value) or "-"
        else:
            shown = "-" if value is None else str(value)
        table.add_row(name, shown)
    console.print(table)
