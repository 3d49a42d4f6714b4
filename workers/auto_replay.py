"""Automatic replay: when Smartcar says a vehicle's error is resolved, its dead letters of that error run
again.

A `VEHICLE_ERROR` item with state `RESOLVED` (type, code) for a vehicle means what failed its events may
work now (a permission granted again, a subscription paid, the car back online). This handler finds the
vehicle's dead letters whose last failure was that error, through the operator indexes (`ix:error:` and
`ix:vehicle:`, the narrower walked: `eventstore.query`), and makes them a replay job
(`eventstore.replays`), which the workers run like an operator's: at `WORKERS_AUTO_REPLAY_RATE`, within
the rate bucket, at most `WORKERS_AUTO_REPLAY_LIMIT` events (0 turns it off). Each replayed event's
history says "replayed because Smartcar resolved TYPE:CODE ..." (`events show`); the job is logged
(`auto_replay_started`) and counted (`smartcar_auto_replays`, then `smartcar_replays{trigger="resolved"}`).

The job's id is made from this event and the error, so a second run of the handler (a retry of the
VEHICLE_ERROR) finds its job made and makes no other; an event already in a replay is left to it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from eventstore.index import stored_error_key
from eventstore.query import EventFilter, EventQuery
from eventstore.replays import ReplayStore
from eventstore.status import Status
from service_base.logs import get_logger
from smartcar_core.events import VEHICLE_ERROR
from workers.api import HandlerContext, handler
from workers.replay import AUTO_REASON

log = get_logger("workers.auto_replay")
RESOLVED = "RESOLVED"


def _resolved(ctx: HandlerContext) -> list[tuple[str, str]]:
    """The (type, code) of every RESOLVED item, once each ("" for no code)."""
    found = [
        (str(item["type"]), str(item.get("code") or ""))
        for item in ctx.envelope.errors
        if str(item.get("state") or "").upper() == RESOLVED and item.get("type")
    ]
    return list(dict.fromkeys(found))


def job_id_for(event_id: str, error_type: str, code: str) -> str:
    """The one job a RESOLVED item of an event makes."""
    digest = hashlib.sha256(f"{event_id}\n{error_type}\n{code}".encode()).hexdigest()
    return f"auto-{digest[:16]}"


@handler(VEHICLE_ERROR, name="auto-replay", order=20)
def auto_replay(ctx: HandlerContext) -> dict[str, Any] | None:
    """Replay the vehicle's dead letters of each error this delivery says is resolved (bounded)."""
    limit = ctx.settings.auto_replay_limit
    resolved = _resolved(ctx)
    if limit <= 0 or not resolved:
        return None
    vehicle_id = ctx.vehicle_id
    client, keys = ctx.vehicles.redis, ctx.vehicles.keys
    query, replays = EventQuery(client, keys), ReplayStore(client, keys)
    metrics = ctx.commands.metrics
    started: dict[str, Any] = {}
    for error_type, code in resolved:
        label = f"{error_type}:{code}" if code else error_type
        wanted = EventFilter(
            statuses=(Status.FAILED,), vehicle_id=vehicle_id, error_type=error_type, error_code=code or None
        )
        records = query.page(wanted, limit=limit).records
        ids = [r.id for r in records if stored_error_key(r.fields.get("last_error")) == (error_type, code)]
        if not ids:
            started[label] = {"dead_letters": 0}
            continue
        reason = f"{AUTO_REASON} {label} for vehicle {vehicle_id} (VEHICLE_ERROR {ctx.event_id})"
        made = replays.create(
            ids,
            reason=reason,
            rate=ctx.settings.auto_replay_rate,
            selection={"resolved": label, "vehicle_id": vehicle_id, "event_id": ctx.event_id},
            job_id=job_id_for(ctx.event_id, error_type, code),
        )
        if made.created:
            if metrics is not None:
                metrics.auto_replays(error_type, code).inc()
            log.info(
                "auto_replay_started",
                job=made.job_id,
                vehicle_id=vehicle_id,
                error_type=error_type,
                error_code=code,
                events=made.taken,
                in_other_replay=made.in_other_replay,
                event_id=ctx.event_id,
            )
        started[label] = {"job": made.job_id, "dead_letters": len(ids), "events": made.taken}
    return {"replays": started}
