"""The event store's operations: the receiver's accept, and an event's life in the workers.

The receiver writes each delivery with one script run (`scripts.ACCEPT`, arguments from
`accept_arguments`; its writer batches the calls itself). The workers take it from there:

- the relay pops ids from the inbox (`pop`, or `wait_pop` when idle) and marks them queued (`mark_queued`;
  `claim` does both: two commands, as the claim script needs the event keys in KEYS). A relay that dies
  between the two leaves ids `received`, out of the inbox: the sweeper re-enqueues those (`stale`);
- a run starts with `begin`, which bumps the attempt count and takes a *lease* (`run_id`,
  `lease_until`, listed in `leases`); `done`, `retry` and `dead_letter` are fenced by that run id, so a
  run that lost its lease cannot overwrite the newer run's outcome;
- the process running it `renew`s the lease while the run lasts (a heartbeat, `workers.leases`): a lease
  can be short without cutting a long run. When a worker dies its leases end, and a relay finds them
  (`expired_leases`) and takes them over (`take_over`) to enqueue them again, within seconds;
- retries longer than a countdown are parked in `scheduled` (`retry(park=True)`, `park`) until `due`;
- an operator may `replay` any event, dead letters included.

The `pending` score is the time by which the event should have moved on (receipt, claim, lease end or
retry due time): the sweeper re-enqueues what is past it and `settle`s what it looked at.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from eventstore import scripts, scripts_index
from eventstore.codec import dumps, text, texts
from eventstore.index import (
    TRIM_GRACE,
    error_key,
    error_keys,
    record_entity_keys,
    status_block,
    stored_error_key,
)
from eventstore.keys import DEFAULT_DEDUPE_SECONDS, KeySpace
from eventstore.pauses import PARKED_FOR
from eventstore.record import EventRecord, history_entry
from eventstore.shared_calls import SharedCalls
from eventstore.status import Status
from eventstore.vehicles import StagedSignals
from smartcar_core.events import Envelope

PING_TTL = 300
_ENTITY_FIELDS = ("type", "vehicle_id", "user_id", "webhook_id")
_TRIM_FIELDS = (*_ENTITY_FIELDS, "last_error")
_UNCLAIMED = "unclaimed"


def accept_arguments(
    keys: KeySpace, envelope: Envelope, raw: bytes, *, received_at: float, dedupe_seconds: int
) -> tuple[bytes | str, ...]:
    """The 5 keys and 12 arguments of `scripts.ACCEPT` for one delivery, in the script's order."""
    event_id = envelope.event_id
    return (
        keys.seen(event_id),
        keys.event(event_id),
        keys.inbox,
        keys.pending,
        keys.status_index(Status.RECEIVED),
        event_id,
        envelope.delivery_id or "",
        str(dedupe_seconds),
        f"{received_at:.6f}",
        raw,
        envelope.event_type,
        envelope.vehicle_id or "",
        envelope.user_id or "",
        envelope.webhook_id or "",
        envelope.mode or "",
        envelope.version,
        "1" if envelope.is_test else "0",
    )


def accept(
    client: redis.Redis,
    keys: KeySpace,
    envelope: Envelope,
    raw: bytes,
    *,
    received_at: float | None = None,
    dedupe_seconds: int = DEFAULT_DEDUPE_SECONDS,
) -> bool:
    """Store a delivery as the receiver does, on a sync client (tools, tests): True when it was new."""
    arguments = accept_arguments(
        keys,
        envelope,
        raw,
        received_at=time.time() if received_at is None else received_at,
        dedupe_seconds=dedupe_seconds,
    )
    return bool(client.eval(scripts.ACCEPT, scripts.ACCEPT_KEY_COUNT, *arguments))


class BeginState(StrEnum):
    OK = "ok"
    MISSING = "missing"
    FINISHED = "finished"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Begin:
    state: BeginState
    record: EventRecord | None = None
    status: str | None = None
    lease_until: float | None = None


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


class EventStore:
    """The workers' side of the event store (a sync client that answers bytes)."""

    def __init__(
        self, client: redis.Redis, keys: KeySpace, *, retention: int, failed_retention: int | None = None
    ) -> None:
        self.redis = client
        self.keys = keys
        self.retention = retention
        self.failed_retention = failed_retention
        """Seconds a dead letter is kept (`trim`); None: until an operator removes it."""
        self._statuses = status_block(keys)
        self._begin = SharedCalls(client, scripts.BEGIN)  # every event thread of a worker calls these two
        self._done = SharedCalls(client, scripts.DONE)
        self._retry = client.register_script(scripts.RETRY)
        self._dead = client.register_script(scripts.DEAD)
        self._claim = client.register_script(scripts.CLAIM)
        self._due = client.register_script(scripts.DUE)
        self._replay = client.register_script(scripts.REPLAY)
        self._renew = client.register_script(scripts.RENEW)
        self._take_over = client.register_script(scripts.TAKE_OVER)
        self._trim = client.register_script(scripts_index.TRIM)

    def load(self, event_id: str) -> EventRecord | None:
        raw = self.redis.hgetall(self.keys.event(event_id))
        return EventRecord.from_hash(raw) if raw else None

    # --- the relay ---

    def pop(self, count: int) -> list[str]:
        """Take up to `count` ids off the inbox, oldest first (they still have to be `mark_queued`)."""
        if count <= 0:
            return []
        return texts(self.redis.rpop(self.keys.inbox, count) or [])

    def wait_pop(self, timeout: float, count: int) -> list[str]:
        """`pop`, blocking up to `timeout` seconds for the first id; whatever has arrived, up to `count`."""
        popped = self.redis.blmpop(timeout, 1, self.keys.inbox, direction="RIGHT", count=count)
        return texts(popped[1]) if popped else []

    def mark_queued(self, event_ids: Sequence[str], *, now: float | None = None) -> list[str]:
        """Mark popped ids queued; returns those that were waiting for it (received or replayed), but the
        ids of a paused vehicle, which the claim parks instead (`eventstore.pauses`)."""
        if not event_ids:
            return []
        now = time.time() if now is None else now
        keys = [self.keys.pending, *self._statuses, self.keys.paused_vehicles]
        for event_id, fields in zip(event_ids, self._read(event_ids, _ENTITY_FIELDS), strict=True):
            keys += [self.keys.event(event_id), *record_entity_keys(self.keys, fields)]
            keys.append(self.keys.parked(fields.get("vehicle_id", "")))  # used only if it is paused
        return texts(self._claim(keys=keys, args=[repr(now), repr(now + PARKED_FOR), *event_ids]))

    def _entity_keys(self, event_ids: Sequence[str]) -> list[list[str]]:
        """Each event's type, vehicle, user and webhook indexes, from its record (one round trip): what
        CLAIM and REPLAY index it under, and cannot name themselves (`eventstore.index`)."""
        return [record_entity_keys(self.keys, fields) for fields in self._read(event_ids, _ENTITY_FIELDS)]

    def _read(self, event_ids: Sequence[str], names: Sequence[str]) -> list[dict[str, str]]:
        """These fields of each record, in one round trip (a field it lacks is left out)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.hmget(self.keys.event(event_id), names)
            stored = pipe.execute()
        return [
            {name: text(value) for name, value in zip(names, values, strict=True) if value is not None}
            for values in stored
        ]

    def claim(self, count: int, popped: Sequence[str] = (), *, now: float | None = None) -> list[str]:
        """Pop up to `count` inbox ids (after `popped`, taken by a blocking pop) and mark them queued."""
        return self.mark_queued([*popped, *self.pop(count)], now=now)

    def due(self, count: int, *, now: float | None = None) -> list[str]:
        """Parked retries whose time has come, taken off the schedule."""
        now = time.time() if now is None else now
        return texts(self._due(keys=[self.keys.scheduled], args=[repr(now), count]))

    # --- a run ---

    def begin(
        self,
        event_id: str,
        *,
        lease: float,
        task_id: str | None = None,
        worker: str | None = None,
        now: float | None = None,
    ) -> Begin:
        """Take the event for one run: status processing, attempts + 1, a lease of `lease` seconds.

        `task_id` is the Celery task's id: a redelivery of the message holding a live lease takes over.
        `worker` names the worker running it (Celery's hostname), for operators.
        """
        now = time.time() if now is None else now
        run_id = uuid.uuid4().hex
        keys = [self.keys.event(event_id), self.keys.pending, self.keys.scheduled, self.keys.leases]
        keys += self._statuses
        args = [repr(now), repr(now + lease), run_id, event_id, task_id or "", worker or ""]
        answer = self._begin(keys=keys, args=args)
        if text(answer[0]) == _UNCLAIMED:  # never claimed (a sweeper's re-enqueue, a direct run): index it
            self.mark_queued([event_id], now=now)
            answer = self._begin(keys=keys, args=args)
        state = BeginState(text(answer[0]))
        if state is BeginState.OK:
            return Begin(state, EventRecord.from_hash(_pairs(answer[1])))
        if state is BeginState.BUSY:
            return Begin(state, lease_until=float(text(answer[1])))
        return Begin(state, status=text(answer[1]) if len(answer) > 1 else None)

    def renew(self, runs: Mapping[str, str], *, lease: float, now: float | None = None) -> set[str]:
        """Extend the leases of `runs` (event id -> run id) to `lease` s from now, in one round trip;
        returns the ids renewed (a run left out lost its lease: it ended, or another run took over)."""
        if not runs:
            return set()
        now = time.time() if now is None else now
        keys = [self.keys.leases, self.keys.pending, *(self.keys.event(event_id) for event_id in runs)]
        args = [repr(now + lease)]
        for event_id, run_id in runs.items():
            args += [event_id, run_id]
        return set(texts(self._renew(keys=keys, args=args)))

    def expired_leases(self, count: int, *, now: float | None = None) -> list[str]:
        """Up to `count` ids whose run's lease ended (its worker stopped renewing it), oldest first."""
        now = time.time() if now is None else now
        return texts(self.redis.zrangebyscore(self.keys.leases, "-inf", repr(now), start=0, num=count))

    def take_over(self, event_ids: Sequence[str], *, hold: float, now: float | None = None) -> list[str]:
        """Of `event_ids` (from `expired_leases`), those still processing with their lease ended, held
        for `hold` s so that no other relay takes them too: the caller enqueues them again."""
        if not event_ids:
            return []
        now = time.time() if now is None else now
        keys = [self.keys.leases, *(self.keys.event(event_id) for event_id in event_ids)]
        return texts(self._take_over(keys=keys, args=[repr(now), repr(now + hold), *event_ids]))

    def park(self, event_id: str, due: float) -> None:
        """Run the event again at `due` (the relay publishes it then)."""
        self.redis.zadd(self.keys.scheduled, {event_id: due})

    def done(
        self,
        record: EventRecord,
        results: dict[str, Any],
        *,
        signals: StagedSignals | None = None,
        now: float | None = None,
    ) -> bool:
        """Done, with its results and the vehicle state it staged, in one script (False: lease lost)."""
        now = time.time() if now is None else now
        old = stored_error_key(record.fields.get("last_error"))
        keys = [self.keys.event(record.id), self.keys.pending, self.keys.leases, *self._statuses]
        keys += error_keys(self.keys, old)
        args: list[str | int] = [record.run_id or "", repr(now), self.retention + TRIM_GRACE]
        args += [dumps(results), record.id, *old]
        for vehicle_id, merged in (signals.take() if signals is not None else {}).items():
            keys.append(self.keys.vehicle_signals(vehicle_id))
            args += [len(merged), *merged]
        return bool(self._done(keys=keys, args=args))

    def retry(
        self,
        record: EventRecord,
        entry: dict[str, Any],
        *,
        delay: float,
        park: bool,
        results: dict[str, Any],
        now: float | None = None,
    ) -> bool:
        """Status retrying, due in `delay` s; parked in `scheduled` when `park` (else a countdown runs it)."""
        now = time.time() if now is None else now
        keys = [self.keys.event(record.id), self.keys.pending, self.keys.scheduled, self.keys.leases]
        moved, indexes = self._error_move(record, entry)
        args = [
            record.run_id or "",
            repr(now),
            repr(now + delay),
            dumps(entry),
            dumps(entry.get("error")),
            "1" if park else "0",
            record.id,
            dumps(results),
            *moved,
        ]
        return bool(self._retry(keys=keys + indexes, args=args))

    def dead_letter(
        self,
        record: EventRecord,
        entry: dict[str, Any],
        *,
        reason: str,
        results: dict[str, Any],
        now: float | None = None,
    ) -> bool:
        now = time.time() if now is None else now
        keys = [self.keys.event(record.id), self.keys.pending, self.keys.dead, self.keys.leases]
        moved, indexes = self._error_move(record, entry)
        args = [record.run_id or "", repr(now), dumps(entry), dumps(entry.get("error")), reason, record.id]
        args += [dumps(results), *moved]
        return bool(self._dead(keys=keys + indexes, args=args))

    def _error_move(self, record: EventRecord, entry: dict[str, Any]) -> tuple[list[str], list[str]]:
        """What RETRY and DEAD take after their own keys and arguments to keep the indexes: the status
        block and the error indexes (the record's last error as `begin` read it, then the new one)."""
        old, new = stored_error_key(record.fields.get("last_error")), error_key(entry.get("error"))
        indexes = [*self._statuses, *error_keys(self.keys, old), *error_keys(self.keys, new)]
        return [*old, *new], indexes

    def replay(self, event_id: str, *, reason: str = "operator", now: float | None = None) -> bool:
        """Run the event again from its first handler (dead letters included); False if it is gone."""
        now = time.time() if now is None else now
        keys = [self.keys.event(event_id), self.keys.pending, self.keys.dead, self.keys.inbox]
        keys += [self.keys.leases, *self._statuses, *self._entity_keys([event_id])[0]]
        entry = dumps(history_entry(attempt=0, outcome="replayed", reason=reason, now=now))
        return bool(self._replay(keys=keys, args=[repr(now), entry, event_id]))

    # --- the sweeper ---

    def stale(self, before: float, limit: int) -> list[str]:
        """Pending ids that should have moved on by `before` (at most `limit`, the longest overdue first)."""
        return texts(self.redis.zrangebyscore(self.keys.pending, "-inf", before, start=0, num=limit))

    def statuses(self, event_ids: Sequence[str]) -> list[str | None]:
        """Each event's stored status (None: the record is gone), in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.hget(self.keys.event(event_id), "status")
            return [text(value) if value else None for value in pipe.execute()]

    def in_inbox(self, event_id: str) -> bool:
        """Whether the id still waits in the inbox (a backlog, not a lost hand-off)."""
        return self.redis.lpos(self.keys.inbox, event_id) is not None

    def settle(
        self,
        *,
        drop: Sequence[str] = (),
        bump: Mapping[str, float] | None = None,
        unschedule: Sequence[str] = (),
    ) -> None:
        """After a sweep, in one round trip: forget `drop` from pending, move the pending score of each of
        `bump` to its time (only ids still pending), and take `unschedule` off the schedule."""
        with self.redis.pipeline(transaction=False) as pipe:
            if drop:
                pipe.zrem(self.keys.pending, *drop)
            if bump:
                pipe.zadd(self.keys.pending, dict(bump), xx=True)
            if unschedule:
                pipe.zrem(self.keys.scheduled, *unschedule)
            pipe.execute()

    def trim(self, *, batch: int, now: float | None = None) -> int:
        """Delete up to `batch` done events older than the retention and as many dead letters older than
        `failed_retention`, each with its index entries (`eventstore.index`); returns how many went."""
        now = time.time() if now is None else now
        done_before, failed_before = now - self.retention, now - (self.failed_retention or now)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self.keys.status_index(Status.DONE), "-inf", done_before, start=0, num=batch)
            if self.failed_retention is not None:
                failed = self.keys.status_index(Status.FAILED)
                pipe.zrangebyscore(failed, "-inf", failed_before, start=0, num=batch)
            ids = [event_id for found in pipe.execute() for event_id in texts(found)]
        if not ids:
            return 0
        keys = [*self._statuses, self.keys.dead]
        for event_id, fields in zip(ids, self._read(ids, _TRIM_FIELDS), strict=True):
            keys += [self.keys.event(event_id), *record_entity_keys(self.keys, fields)]
            keys += error_keys(self.keys, stored_error_key(fields.get("last_error")))
        return int(self._trim(keys=keys, args=[repr(done_before), repr(failed_before), *ids]))

    # --- probes ---

    def ping(self, token: str, *, ttl: int = PING_TTL) -> None:
        """Leave proof that a worker ran the ping task `token` (for `ttl` seconds)."""
        self.redis.set(self.keys.ping(token), "1", ex=ttl)

    def pinged(self, token: str) -> bool:
        return bool(self.redis.exists(self.keys.ping(token)))
