"""Finding events by what operators ask (`smartcar-events events list`), through the operator indexes.

A query is a conjunction of conditions (status, type, vehicle, user, webhook, Smartcar error, dead reason,
time). It reads one index, the narrowest: each condition that has an index is a candidate *source*, and
the one holding the fewest ids in the query's range (ZCOUNTs, in one round trip) is walked, newest
first, in batches; each batch's records are read in one pipeline (only the fields a listing shows, never
the raw body or the history) and every condition is checked on them. The cost is what the source holds in
range, not the store's size: `--status failed` reads the failed events however many are done.

Time (`since`, `until`) is the time an event took its current status (its `updated_at`, or its receipt
while it is `received`), the score of the status indexes: with a status condition (or with no other
condition) the source's range is exactly the window. Every other index is scored with a time at or
before that one (receipt, a failure), so `until` bounds any source; `since` is then checked on records.

A page ends at `limit` matches and hands back a cursor: the source it walked and the (score, id) it
stopped at, so the next page walks on from there in the same index even if another one has become
narrower since. An id whose record is gone (an entry the trim could not clear, `eventstore.index`) is
skipped and dropped from the index it was found in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from eventstore import scripts_index
from eventstore.codec import text, texts
from eventstore.index import STATUSES, stored_error_key
from eventstore.keys import KeySpace
from eventstore.record import EventRecord
from eventstore.status import Status

LIST_FIELDS = (
    "id",
    "type",
    "vehicle_id",
    "user_id",
    "webhook_id",
    "mode",
    "status",
    "attempts",
    "received_at",
    "updated_at",
    "next_attempt_at",
    "last_error",
    "dead_reason",
)
"""What a listing reads of each record."""

_MIN_BATCH, _MAX_BATCH = 100, 2000
_READ_BATCH = 1000  # records a script call reads: about a millisecond of Redis
_FIELD_NAMES = tuple(name.encode() for name in LIST_FIELDS)
_INF = float("inf")


class CursorError(ValueError):
    """A cursor that this query did not hand out."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What to look for; every given condition must hold. `reason` is a part of the dead reason (any case),
    so it finds failed events only; `error_code` needs `error_type`."""

    statuses: tuple[str, ...] = ()
    event_type: str | None = None
    vehicle_id: str | None = None
    user_id: str | None = None
    webhook_id: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    reason: str | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, fields: dict[str, str]) -> bool:
        """Whether a record (its text fields) meets every condition."""
        return (
            self._in_status_and_time(fields)
            and self._of_event(fields)
            and self._of_error(fields)
            and self._of_reason(fields)
        )

    def _in_status_and_time(self, fields: dict[str, str]) -> bool:
        if self.statuses and fields.get("status", "") not in self.statuses:
            return False
        status_at = float(fields.get("updated_at") or fields.get("received_at") or 0)
        since = self.since if self.since is not None else -_INF
        return since <= status_at <= (self.until if self.until is not None else _INF)

    def _of_event(self, fields: dict[str, str]) -> bool:
        return all(
            wanted is None or fields.get(name, "") == wanted
            for wanted, name in (
                (self.event_type, "type"),
                (self.vehicle_id, "vehicle_id"),
                (self.user_id, "user_id"),
                (self.webhook_id, "webhook_id"),
            )
        )

    def _of_error(self, fields: dict[str, str]) -> bool:
        if self.error_type is None:
            return True
        error_type, code = stored_error_key(fields.get("last_error"))
        wanted_code = self.error_code if self.error_code is not None else code
        return fields.get("status") != Status.DONE and (error_type, code) == (self.error_type, wanted_code)

    def _of_reason(self, fields: dict[str, str]) -> bool:
        if self.reason is None:
            return True
        dead_reason = fields.get("dead_reason", "")
        return fields.get("status") == Status.FAILED and self.reason.casefold() in dead_reason.casefold()


@dataclass(frozen=True, slots=True)
class Source:
    """An index (or a union of status indexes) to walk, and the score range the query allows in it."""

    keys: tuple[str, ...]
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Page:
    records: list[EventRecord]
    cursor: str | None
    """Where the next page starts (None: this was the last)."""
    source: Source
    read: int = 0
    """How many index entries this page looked at (what it cost)."""
    dropped: list[str] = field(default_factory=list)


def sources(keys: KeySpace, wanted: EventFilter) -> list[Source]:
    """Every index that can answer `wanted`, the status one first (the one walked when all are empty)."""
    until = wanted.until if wanted.until is not None else _INF
    since = wanted.since if wanted.since is not None else -_INF
    statuses: Sequence[str] = wanted.statuses or STATUSES
    if wanted.reason is not None:  # only dead letters have a reason: none at all if failed is not asked for
        statuses = [status for status in statuses if status == Status.FAILED]
    found = [Source(tuple(keys.status_index(status) for status in statuses), since, until)]
    # The entity indexes hold every event but the received ones (CLAIM indexes them, off the receiver's
    # path): those are read from the received index, and checked like the rest.
    received = (keys.status_index(Status.RECEIVED),) if Status.RECEIVED in statuses else ()
    for value, index in (
        (wanted.event_type, keys.type_index),
        (wanted.vehicle_id, keys.vehicle_index),
        (wanted.user_id, keys.user_index),
        (wanted.webhook_id, keys.webhook_index),
    ):
        if value is not None:
            found.append(Source((index(value), *received), -_INF, until))
    if wanted.error_type is not None:
        if wanted.error_code is not None:
            error = keys.error_index(wanted.error_type, wanted.error_code)
        else:
            error = keys.error_type_index(wanted.error_type)
        found.append(Source((error,), -_INF, until))
    return found


class EventQuery:
    """Pages of the events that match a filter (a sync client that answers bytes)."""

    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys
        self._drop = client.register_script(scripts_index.DROP_STALE)
        self._read = client.register_script(scripts_index.READ_FIELDS)

    def plan(self, wanted: EventFilter) -> tuple[int, list[int]]:
        """The source to walk (its position in `sources`) and what each source holds in its range."""
        candidates = sources(self.keys, wanted)
        with self.redis.pipeline(transaction=False) as pipe:
            for source in candidates:
                for key in source.keys:
                    pipe.zcount(key, _bound(source.low), _bound(source.high))
            counts = iter(pipe.execute())
        sizes = [sum(int(next(counts)) for _ in source.keys) for source in candidates]
        # With no status or time condition, the status source is the union of every status: walk it only
        # when nothing narrower is asked for.
        order = sorted(range(len(candidates)), key=lambda i: (sizes[i], i == 0))
        return order[0], sizes

    def page(self, wanted: EventFilter, *, limit: int, cursor: str | None = None) -> Page:
        """Up to `limit` matching events, newest first, from `cursor` (a previous page's) on."""
        candidates = sources(self.keys, wanted)
        if cursor is None:
            chosen, _sizes = self.plan(wanted)
            position: tuple[float, str] | None = None
        else:
            chosen, position = _decode(cursor, len(candidates))
        source = candidates[chosen]
        found: list[EventRecord] = []
        dropped: list[str] = []
        read = 0
        more = True
        while more and len(found) < limit:
            batch = min(max(2 * (limit - len(found)), _MIN_BATCH), _MAX_BATCH)
            entries, more = self._entries(source, position, batch)
            stored = self._records([event_id for _key, _score, event_id in entries])
            for index, ((key, score, event_id), record) in enumerate(zip(entries, stored, strict=True)):
                position = (score, event_id)
                read += 1
                if record is None:
                    dropped += self._forget(key, event_id)
                elif wanted.matches(record.fields):
                    found.append(record)
                    if len(found) == limit:
                        more = more or index < len(entries) - 1
                        break
        next_cursor = _encode(chosen, position) if more and position is not None else None
        return Page(found, next_cursor, source, read, dropped)

    def _entries(
        self, source: Source, position: tuple[float, str] | None, count: int
    ) -> tuple[list[tuple[str, float, str]], bool]:
        """The next `count` entries of `source` after `position`, newest first (merged across its keys,
        ties broken by id as Redis orders them), and whether any may follow. One round trip, but when more
        than `count` entries of one key share the cursor's time (then that key is read again, deeper)."""
        high = source.high if position is None else position[0]
        merged: list[tuple[str, float, str]] = []
        more = False
        fetch = dict.fromkeys(source.keys, count)
        while fetch:
            with self.redis.pipeline(transaction=False) as pipe:
                for key, depth in fetch.items():
                    pipe.zrevrangebyscore(
                        key, _bound(high), _bound(source.low), start=0, num=depth, withscores=True
                    )
                answers: list[Any] = pipe.execute()
            deeper = {}
            for (key, depth), got in zip(fetch.items(), answers, strict=True):
                kept = [(key, float(score), text(member)) for member, score in got]
                if position is not None:  # what the cursor's page had: its time, and ids from its own on
                    kept = [entry for entry in kept if entry[1] < high or entry[2] < position[1]]
                if not kept and len(got) == depth:
                    deeper[key] = depth * 2
                    continue
                merged += kept
                more = more or len(got) == depth
            fetch = deeper
        merged = list({entry[2]: entry for entry in merged}.values())  # an id moving between two of them
        merged.sort(key=lambda entry: (entry[1], entry[2]), reverse=True)
        if len(merged) > count:
            return merged[:count], True
        return merged, more

    def _records(self, event_ids: Sequence[str]) -> list[EventRecord | None]:
        """The `LIST_FIELDS` of each record (None: it is gone), a script call per `_READ_BATCH`."""
        found: list[EventRecord | None] = []
        for start in range(0, len(event_ids), _READ_BATCH):
            chunk = [self.keys.event(event_id) for event_id in event_ids[start : start + _READ_BATCH]]
            for values in self._read(keys=chunk, args=LIST_FIELDS):
                stored = {name: value for name, value in zip(_FIELD_NAMES, values, strict=True) if value}
                found.append(EventRecord.from_hash(stored) if stored else None)
        return found

    def _forget(self, key: str, event_id: str) -> list[str]:
        """Drop a dangling id from the index it was found in (if its record is still gone)."""
        return texts(self._drop(keys=[key, self.keys.event(event_id)], args=[event_id]))


def _bound(value: float) -> str:
    if value == _INF:
        return "+inf"
    if value == -_INF:
        return "-inf"
    return repr(value)


def _encode(source: int, position: tuple[float, str]) -> str:
    score, event_id = position
    return f"{source}:{score!r}:{event_id}"


def _decode(cursor: str, sources_count: int) -> tuple[int, tuple[float, str]]:
    source, _, rest = cursor.partition(":")
    score, _, event_id = rest.partition(":")
    try:
        chosen, at = int(source), float(score)
    except ValueError:
        raise CursorError(f"not a cursor of events list: {cursor!r}") from None
    if not 0 <= chosen < sources_count or not event_id:
        raise CursorError(f"not a cursor of this query: {cursor!r}")
    return chosen, (at, event_id)
