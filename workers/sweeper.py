"""The sweeper: finds events whose hand-off or run died, and says which to enqueue again.

Run by beat (`workers.sweep`). The `pending` sorted set is scored with the time by which each event
should have moved on (receipt, claim by the relay, end of a run's lease, a retry's due time); anything
more than `after` seconds past it is looked at:

- `received`: still in the inbox means a backlog, not a loss (its score is bumped); else re-enqueued;
- `queued`, `processing`, `retrying`, `replayed`: re-enqueued (a second run of an event is harmless);
- `done`, `failed` or gone: dropped from `pending`.

Each re-enqueued or bumped event gets a fresh score, so it is looked at again only `after` seconds later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from receiver.store import Status
from workers.codec import text, texts
from workers.lifecycle import FINISHED_STATUSES, EventStore

_REENQUEUE = frozenset({Status.QUEUED, Status.PROCESSING, Status.RETRYING, Status.REPLAYED})


@dataclass(slots=True)
class SweepReport:
    requeue: list[str] = field(default_factory=list)
    backlog: int = 0
    dropped: int = 0


def _verdict(store: EventStore, event_id: str, status: str | None) -> str:
    if status is None or status in FINISHED_STATUSES:
        return "drop"
    if status == Status.RECEIVED:
        in_inbox = store.redis.lpos(store.keys.inbox, event_id) is not None
        return "backlog" if in_inbox else "requeue"
    if status in _REENQUEUE:
        return "requeue"
    return "leave"  # a status this code does not know: a person's job


def sweep(store: EventStore, *, after: float, batch: int, now: float | None = None) -> SweepReport:
    now = time.time() if now is None else now
    keys = store.keys
    stale = store.redis.zrangebyscore(keys.pending, "-inf", now - after, start=0, num=batch)
    report = SweepReport()
    if not stale:
        return report
    ids = texts(stale)
    with store.redis.pipeline(transaction=False) as pipe:
        for event_id in ids:
            pipe.hget(keys.event(event_id), "status")
        statuses = [text(value) if value else None for value in pipe.execute()]
    bump: dict[str, float] = {}
    drop: list[str] = []
    for event_id, status in zip(ids, statuses, strict=True):
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
    with store.redis.pipeline(transaction=False) as pipe:
        if drop:
            pipe.zrem(keys.pending, *drop)
        if bump:
            pipe.zadd(keys.pending, bump, xx=True)
        if report.requeue:
            pipe.zrem(store.scheduled, *report.requeue)
        pipe.execute()
    report.dropped = len(drop)
    return report
