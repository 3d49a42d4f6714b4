"""The sweeper: finds events whose hand-off or run died, and says which to enqueue again.

Run by beat (`workers.sweep`). The `pending` sorted set is scored with the time by which each event
should have moved on (receipt, claim by the relay, end of a run's lease, a retry's due time); anything
more than `after` seconds past it is looked at:

- `received`: still in the inbox means a backlog, not a loss (its score is bumped); else re-enqueued
  (a relay popped it and died before marking it queued);
- `queued`, `processing`, `retrying`, `replayed`: re-enqueued (a second run of an event is harmless);
- `done`, `failed` or gone: dropped from `pending`.

Each re-enqueued or bumped event gets a fresh score, so it is looked at again only `after` seconds later.

Each sweep also trims (`EventStore.trim`): done events past the retention and dead letters past theirs
are deleted with their index entries, the oldest first (`eventstore.index`), `batch` at a time while a
whole batch went, up to `TRIM_ROUNDS` batches: 500 x 20 a sweep every 30 s is 333 events/s, above what a
deployment completes, so the trim keeps up and no record is left to its expiry backstop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from eventstore.events import EventStore
from eventstore.status import FINISHED, Status

SWEEP_TASK = "workers.sweep"
"""The sweeper's Celery task (`workers.tasks`), which beat sends every WORKERS_SWEEP_INTERVAL."""

TRIM_ROUNDS = 20
_REENQUEUE = frozenset({Status.QUEUED, Status.PROCESSING, Status.RETRYING, Status.REPLAYED})


@dataclass(slots=True)
class SweepReport:
    requeue: list[str] = field(default_factory=list)
    backlog: int = 0
    dropped: int = 0
    trimmed: int = 0


def _verdict(store: EventStore, event_id: str, status: str | None) -> str:
    if status is None or status in FINISHED:
        return "drop"
    if status == Status.RECEIVED:
        return "backlog" if store.in_inbox(event_id) else "requeue"
    if status in _REENQUEUE:
        return "requeue"
    return "leave"  # a status this code does not know: a person's job


def sweep(store: EventStore, *, after: float, batch: int, now: float | None = None) -> SweepReport:
    now = time.time() if now is None else now
    report = SweepReport(trimmed=_trim(store, batch, now))
    ids = store.stale(now - after, batch)
    if not ids:
        return report
    bump: dict[str, float] = {}
    drop: list[str] = []
    for event_id, status in zip(ids, store.statuses(ids), strict=True):
        verdict = _verdict(store, event_id, status)
        if verdict == "drop":
            drop.append(event_id)
            continue
        if verdict == "requeue":
            report.requeue.append(event_id)
        elif verdict == "backlog":
            report.backlog += 1
        # Looked at now: not again before `after` seconds, whatever happens to it.
        bump[event_id] = now
    store.settle(drop=drop, bump=bump, unschedule=report.requeue)
    report.dropped = len(drop)
    return report


def _trim(store: EventStore, batch: int, now: float) -> int:
    trimmed = 0
    for _ in range(TRIM_ROUNDS):
        removed = store.trim(batch=batch, now=now)
        trimmed += removed
        if removed < batch:  # what was past its retention is gone
            break
    return trimmed
