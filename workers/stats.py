"""What the store holds and how it moves: the figures of `smartcar-events stats` (and the backlog the
doctor judges), each from the operator indexes or the metrics' gauges, none by scanning keys.

`gather_stats` says what each figure costs. The backlog gauges are read through `StoreCollector`, the
one place they are computed, so that `stats`, the doctor and `/metrics` never disagree.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from eventstore import scripts_index
from eventstore.codec import text, texts
from eventstore.keys import KeySpace
from eventstore.pauses import Pauses
from eventstore.status import Status
from smartcar_core import events as envelope
from smartcar_core.catalogue import CATALOGUE
from workers.metrics import StoreCollector

KNOWN_TYPES = (
    envelope.VEHICLE_STATE,
    envelope.VEHICLE_ERROR,
    envelope.LEGACY_SCHEDULED,
    envelope.LEGACY_DYNAMIC,
    envelope.LEGACY_EVENT_BASED,
)
"""The types counted by name (the type indexes have no list of themselves: any other type is `other`)."""
_GAUGES = {
    "smartcar_inbox_depth": "inbox_depth",
    "smartcar_inbox_oldest_age_seconds": "inbox_oldest_age_seconds",
    "smartcar_runs_in_progress": "runs_in_progress",
    "smartcar_scheduled_retries": "scheduled_retries",
    "smartcar_dead_letters_stored": "dead_letters",
    "smartcar_pending_events": "pending",
    "smartcar_pending_overdue_seconds": "pending_overdue_seconds",
    "smartcar_vehicles_needing_reconsent": "vehicles_needing_reconsent",
}
_HOUR, _MINUTE = 3600, 60
SAMPLE = 2000
_READ_BATCH = 1000


@dataclass(slots=True)
class Stats:
    statuses: dict[str, int]
    types: dict[str, int]
    backlog: dict[str, float]
    dead_by_error: dict[str, int]
    dead_by_reason: dict[str, int]
    dead_reasons_read: int
    per_minute: list[dict[str, Any]]
    receipt_to_done: dict[str, float | int | None]
    pause: dict[str, Any] = field(default_factory=dict)


def gather_stats(client: redis.Redis, keys: KeySpace, *, now: float, sample: int = SAMPLE) -> Stats:
    """Every figure of `stats`, and what each costs (no figure scans the keys; all are bounded):

    - by status: ZCARD of the seven status indexes (O(1) each);
    - by type: ZCARD of the type index of each of `KNOWN_TYPES` (O(1) each; the type indexes hold every
      claimed event, so `received` ones are counted under their status only); `other` is the rest;
    - backlog: the metrics' `StoreCollector` gauges, read the one way they are computed (a pipeline of
      O(1) commands and INFO): inbox depth and oldest age, runs, scheduled retries, pending, overdue;
    - dead letters by error: ZINTERCARD of `ix:status:failed` with each error index of Smartcar's
      catalogue (O(smallest set) each; errors outside the catalogue are counted in `other`);
    - dead letters by reason: the `dead_reason` of the newest `sample` dead letters (one script call a
      thousand records), since reasons are free text with no index;
    - outcomes a minute over the last hour: ZCOUNT of the done and failed indexes per minute (120 ZCOUNTs,
      O(log N) each); an event since replayed is no longer counted there;
    - receipt to done: p50 and p99 of `finished_at - received_at` of the newest `sample` events done in
      the last hour (their two fields read in one script call a thousand records)."""
    statuses, types, dead_total = _counts(client, keys)
    return Stats(
        statuses=statuses,
        types=types,
        backlog=backlog(client, keys),
        dead_by_error=_dead_by_error(client, keys, dead_total),
        dead_by_reason=dict(
            Counter(
                reason[:120] or "-"
                for (reason,) in _newest(client, keys, Status.FAILED, ("dead_reason",), sample=sample)
            )
        ),
        dead_reasons_read=min(dead_total, sample),
        per_minute=_per_minute(client, keys, now),
        receipt_to_done=_latency(client, keys, now, sample),
        pause=_pause(client, keys),
    )


def _counts(client: redis.Redis, keys: KeySpace) -> tuple[dict[str, int], dict[str, int], int]:
    with client.pipeline(transaction=False) as pipe:
        for status in Status:
            pipe.zcard(keys.status_index(status))
        for event_type in KNOWN_TYPES:
            pipe.zcard(keys.type_index(event_type))
        found = [int(value) for value in pipe.execute()]
    statuses = dict(zip([status.value for status in Status], found, strict=False))
    types = {name: count for name, count in zip(KNOWN_TYPES, found[len(statuses) :], strict=True) if count}
    claimed = sum(statuses.values()) - statuses[Status.RECEIVED]
    types["other"] = max(0, claimed - sum(types.values()))
    return statuses, types, statuses[Status.FAILED]


def backlog(client: redis.Redis, keys: KeySpace) -> dict[str, float]:
    families = {family.name: family for family in StoreCollector(client, keys).collect()}
    up = families.get("smartcar_store_up")
    if up is None or not up.samples[0].value:
        raise redis.ConnectionError("the store did not answer the gauges' reads")
    return {short: families[name].samples[0].value for name, short in _GAUGES.items() if name in families}


def _dead_by_error(client: redis.Redis, keys: KeySpace, dead_total: int) -> dict[str, int]:
    if not dead_total:
        return {}
    failed = keys.status_index(Status.FAILED)
    by_type: dict[str, list[str]] = {}
    for error_type, code in CATALOGUE:
        by_type.setdefault(error_type, [])
        if code:
            by_type[error_type].append(code)
    with client.pipeline(transaction=False) as pipe:
        for error_type, codes in by_type.items():
            pipe.zintercard(2, [failed, keys.error_type_index(error_type)])
            for code in codes:
                pipe.zintercard(2, [failed, keys.error_index(error_type, code)])
        answers = iter(int(value) for value in pipe.execute())
    found: dict[str, int] = {}
    for error_type, codes in by_type.items():
        of_type = next(answers)
        coded = {f"{error_type}:{code}": next(answers) for code in codes}
        found.update({name: count for name, count in coded.items() if count})
        if of_type - sum(coded.values()):
            found[error_type] = of_type - sum(coded.values())
    found["other"] = dead_total - sum(found.values())
    return {name: count for name, count in found.items() if count}


def _newest(
    client: redis.Redis,
    keys: KeySpace,
    status: Status,
    names: Sequence[str],
    *,
    sample: int,
    since: float | None = None,
) -> list[tuple[str, ...]]:
    """These fields of the newest `sample` events of a status index (since `since`), one script call a
    thousand records; an event whose record is gone is left out."""
    low = "-inf" if since is None else repr(since)
    ids = texts(client.zrevrangebyscore(keys.status_index(status), "+inf", low, start=0, num=sample))
    read = client.register_script(scripts_index.READ_FIELDS)
    rows: list[tuple[str, ...]] = []
    for start in range(0, len(ids), _READ_BATCH):
        chunk = [keys.event(event_id) for event_id in ids[start : start + _READ_BATCH]]
        rows.extend(
            tuple(text(value) if value is not None else "" for value in values)
            for values in read(keys=chunk, args=list(names))
            if any(value is not None for value in values)
        )
    return rows


def _per_minute(client: redis.Redis, keys: KeySpace, now: float) -> list[dict[str, Any]]:
    end = math.floor(now / _MINUTE) * _MINUTE + _MINUTE
    starts = [end - (i + 1) * _MINUTE for i in reversed(range(_HOUR // _MINUTE))]
    with client.pipeline(transaction=False) as pipe:
        for start in starts:
            for status in (Status.DONE, Status.FAILED):
                pipe.zcount(keys.status_index(status), repr(float(start)), f"({float(start + _MINUTE)!r}")
        found = [int(value) for value in pipe.execute()]
    return [
        {"minute": start, "done": found[2 * i], "failed": found[2 * i + 1]} for i, start in enumerate(starts)
    ]


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _latency(client: redis.Redis, keys: KeySpace, now: float, sample: int) -> dict[str, float | int | None]:
    rows = _newest(
        client, keys, Status.DONE, ("received_at", "finished_at"), sample=sample, since=now - _HOUR
    )
    spans = sorted(float(done) - float(got) for got, done in rows if got and done)
    if not spans:
        return {"events": 0, "p50_seconds": None, "p99_seconds": None}
    return {
        "events": len(spans),
        "p50_seconds": _percentile(spans, 0.5),
        "p99_seconds": _percentile(spans, 0.99),
    }


def _pause(client: redis.Redis, keys: KeySpace) -> dict[str, Any]:
    pauses = Pauses(client, keys)
    current = pauses.current()
    vehicles = pauses.paused_vehicles()
    parked = pauses.parked_counts(list(vehicles))
    shown: dict[str, Any] = {"global": None if current is None else asdict(current)}
    shown["vehicles"] = {
        vehicle: {"since": at, "parked": parked[vehicle]} for vehicle, at in vehicles.items()
    }
    return shown
