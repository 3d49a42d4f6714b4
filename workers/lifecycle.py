"""An event's life in the store: claimed by the relay, run, retried, done or dead-lettered.

Every transition is one Lua script (one round trip, atomic). A run starts with `begin`, which bumps the
attempt count and takes a *lease* (`run_id`, `lease_until`); the transitions after it are fenced by that
run id, so a run that lost its lease (its worker stalled and the sweeper started another) cannot
overwrite the newer run's outcome. Keys beyond `receiver.store.KeySpace`:

| key | type | what |
| --- | --- | --- |
| `{p}scheduled` | sorted set, score = due time | retries parked until due (longer than a countdown) |

The `pending` score is the time by which the event should have moved on (receipt, claim, lease end or
retry due time): the sweeper re-enqueues what is past it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis

from receiver.store import KeySpace, Status
from workers.codec import bytes_map, dumps, text, texts

# Appends one JSON entry to the `history` array without decoding it (cjson would turn [] into {}).
_APPEND = """
local function append_history(key, entry)
  local h = redis.call('HGET', key, 'history')
  if not h or h == '' or h == '[]' then h = '[' .. entry .. ']'
  else h = string.sub(h, 1, -2) .. ',' .. entry .. ']' end
  redis.call('HSET', key, 'history', h)
end
"""

# KEYS: event, pending, scheduled; ARGV: now, lease_until, run_id, event_id, task_id, worker
# A live lease refuses the run (busy, with the lease's end) unless the run comes from the very message
# that holds it: Celery delivers a message again only when its first delivery was lost with its worker.
_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'done' or status == 'failed' then return {'finished', status} end
if status == 'processing' then
  local lease = redis.call('HGET', KEYS[1], 'lease_until') or '0'
  local holder = redis.call('HGET', KEYS[1], 'task_id') or ''
  if (tonumber(lease) or 0) > tonumber(ARGV[1]) and (ARGV[5] == '' or holder ~= ARGV[5]) then
    return {'busy', lease}
  end
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'processing', 'started_at', ARGV[1], 'updated_at', ARGV[1],
  'lease_until', ARGV[2], 'run_id', ARGV[3], 'task_id', ARGV[5], 'worker', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[4])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""

# KEYS: event; ARGV: run_id, results_json
_SAVE_RESULTS = """
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'results', ARGV[2])
return 1
"""

# KEYS: event, pending; ARGV: run_id, now, retention, results_json, event_id
_DONE = """
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'done', 'finished_at', ARGV[2], 'updated_at', ARGV[2],
  'results', ARGV[4])
redis.call('HDEL', KEYS[1], 'lease_until', 'next_attempt_at')
redis.call('ZREM', KEYS[2], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: event, pending, scheduled; ARGV: run_id, now, due, entry, last_error, park, event_id, results
_RETRY = (
    _APPEND
    + """
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
append_history(KEYS[1], ARGV[4])
redis.call('HSET', KEYS[1], 'status', 'retrying', 'updated_at', ARGV[2], 'next_attempt_at', ARGV[3],
  'last_error', ARGV[5], 'results', ARGV[8])
redis.call('HDEL', KEYS[1], 'lease_until')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[7])
if ARGV[6] == '1' then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[7]) end
return 1
"""
)

# KEYS: event, pending, dead; ARGV: run_id, now, entry, last_error, reason, event_id, results
_DEAD = (
    _APPEND
    + """
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
append_history(KEYS[1], ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'failed', 'failed_at', ARGV[2], 'updated_at', ARGV[2],
  'last_error', ARGV[4], 'dead_reason', ARGV[5], 'results', ARGV[7])
redis.call('HDEL', KEYS[1], 'lease_until', 'next_attempt_at')
redis.call('ZREM', KEYS[2], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[6])
redis.call('PERSIST', KEYS[1])
return 1
"""
)

# KEYS: inbox, pending; ARGV: now, count, prefix, ids popped already...
# Pops up to `count` ids (oldest first) and marks every received (or replayed) one queued. Ids whose
# record is gone or already further along are dropped: their run happened or is happening.
_CLAIM = """
local ids = {}
for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
local n = tonumber(ARGV[2])
if n > 0 then
  local popped = redis.call('RPOP', KEYS[1], n)
  if popped then for _, id in ipairs(popped) do ids[#ids + 1] = id end end
end
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[3] .. 'event:' .. id
  local status = redis.call('HGET', key, 'status')
  if status == 'received' or status == 'replayed' then
    redis.call('HSET', key, 'status', 'queued', 'queued_at', ARGV[1], 'updated_at', ARGV[1])
    redis.call('ZADD', KEYS[2], ARGV[1], id)
    out[#out + 1] = id
  end
end
return out
"""

# KEYS: event, pending, dead, inbox; ARGV: now, entry, event_id
# Puts a finished (or stuck) event back through the relay: status replayed, results cleared (every
# handler runs again; commands already done are not sent again, see workers.commands), history kept.
_REPLAY = (
    _APPEND
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
append_history(KEYS[1], ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'replayed', 'updated_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'results', 'lease_until', 'next_attempt_at', 'dead_reason')
redis.call('PERSIST', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3])
redis.call('LPUSH', KEYS[4], ARGV[3])
return 1
"""
)

# KEYS: scheduled; ARGV: now, count -> ids due, removed from the set
_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZREM', KEYS[1], id) end
return ids
"""


class BeginState(StrEnum):
    OK = "ok"
    MISSING = "missing"
    FINISHED = "finished"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event hash, decoded. `history` and `results` are the workers' JSON fields."""

    id: str
    raw: bytes
    type: str
    vehicle_id: str | None
    user_id: str | None
    status: str
    attempts: int
    received_at: float
    run_id: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> EventRecord:
        text = {key.decode(): value.decode(errors="replace") for key, value in raw.items() if key != b"raw"}
        return cls(
            id=text.get("id", ""),
            raw=raw.get(b"raw", b""),
            type=text.get("type", ""),
            vehicle_id=text.get("vehicle_id") or None,
            user_id=text.get("user_id") or None,
            status=text.get("status", ""),
            attempts=int(text.get("attempts") or 0),
            received_at=float(text.get("received_at") or 0),
            run_id=text.get("run_id") or None,
            history=_json_field(text.get("history"), []),
            results=_json_field(text.get("results"), {}),
            fields=text,
        )


@dataclass(frozen=True, slots=True)
class Begin:
    state: BeginState
    record: EventRecord | None = None
    status: str | None = None
    lease_until: float | None = None


def _json_field(value: str | None, default: Any) -> Any:
    if not value:
        return default
    try:
        decoded = json.loads(value)
    except ValueError:
        return default
    return decoded if isinstance(decoded, type(default)) else default


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


class EventStore:
    """The workers' side of the event store (`receiver.store` has the receiver's)."""

    def __init__(self, client: redis.Redis, keys: KeySpace, *, retention: int) -> None:
        self.redis = client
        self.keys = keys
        self.retention = retention
        self._begin = client.register_script(_BEGIN)
        self._save = client.register_script(_SAVE_RESULTS)
        self._done = client.register_script(_DONE)
        self._retry = client.register_script(_RETRY)
        self._dead = client.register_script(_DEAD)
        self._claim = client.register_script(_CLAIM)
        self._due = client.register_script(_DUE)
        self._replay = client.register_script(_REPLAY)

    @property
    def scheduled(self) -> str:
        return f"{self.keys.prefix}scheduled"

    def load(self, event_id: str) -> EventRecord | None:
        raw = self.redis.hgetall(self.keys.event(event_id))
        return EventRecord.from_hash(bytes_map(raw)) if raw else None

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
        keys = [self.keys.event(event_id), self.keys.pending, self.scheduled]
        args = [repr(now), repr(now + lease), run_id, event_id, task_id or "", worker or ""]
        answer = self._begin(keys=keys, args=args)
        state = BeginState(text(answer[0]))
        if state is BeginState.OK:
            return Begin(state, EventRecord.from_hash(_pairs(answer[1])))
        if state is BeginState.BUSY:
            return Begin(state, lease_until=float(text(answer[1])))
        return Begin(state, status=text(answer[1]) if len(answer) > 1 else None)

    def park(self, event_id: str, due: float) -> None:
        """Run the event again at `due` (the relay publishes it then)."""
        self.redis.zadd(self.scheduled, {event_id: due})

    def save_results(self, record: EventRecord, results: dict[str, Any]) -> bool:
        return bool(self._save(keys=[self.keys.event(record.id)], args=[record.run_id or "", dumps(results)]))

    def done(self, record: EventRecord, results: dict[str, Any], *, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        keys = [self.keys.event(record.id), self.keys.pending]
        args: list[str | int] = [record.run_id or "", repr(now), self.retention, dumps(results), record.id]
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
        keys = [self.keys.event(record.id), self.keys.pending, self.scheduled]
        args = [
            record.run_id or "",
            repr(now),
            repr(now + delay),
            dumps(entry),
            dumps(entry.get("error")),
            "1" if park else "0",
            record.id,
            dumps(results),
        ]
        return bool(self._retry(keys=keys, args=args))

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
        keys = [self.keys.event(record.id), self.keys.pending, self.keys.dead]
        args = [record.run_id or "", repr(now), dumps(entry), dumps(entry.get("error")), reason, record.id]
        args.append(dumps(results))
        return bool(self._dead(keys=keys, args=args))

    def claim(self, count: int, popped: list[str] | None = None, *, now: float | None = None) -> list[str]:
        """Pop up to `count` inbox ids (plus `popped`, taken by a blocking pop) and mark them queued."""
        now = time.time() if now is None else now
        args: list[str | int] = [repr(now), count, self.keys.prefix, *(popped or [])]
        return texts(self._claim(keys=[self.keys.inbox, self.keys.pending], args=args))

    def replay(self, event_id: str, *, reason: str = "operator", now: float | None = None) -> bool:
        """Run the event again from its first handler (dead letters included); False if it is gone."""
        now = time.time() if now is None else now
        keys = [self.keys.event(event_id), self.keys.pending, self.keys.dead, self.keys.inbox]
        entry = dumps(history_entry(attempt=0, outcome="replayed", reason=reason, now=now))
        return bool(self._replay(keys=keys, args=[repr(now), entry, event_id]))

    def due(self, count: int, *, now: float | None = None) -> list[str]:
        """Parked retries whose time has come, taken off the schedule."""
        now = time.time() if now is None else now
        return texts(self._due(keys=[self.scheduled], args=[repr(now), count]))


def history_entry(
    *,
    attempt: int,
    outcome: str,
    handler: str | None = None,
    error: dict[str, Any] | None = None,
    delay: float | None = None,
    reason: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "at": time.time() if now is None else now,
        "attempt": attempt,
        "outcome": outcome,
    }
    if handler is not None:
        entry["handler"] = handler
    if error is not None:
        entry["error"] = error
    if delay is not None:
        entry["delay"] = round(delay, 3)
    if reason is not None:
        entry["reason"] = reason
    return entry


FINISHED_STATUSES = frozenset({Status.DONE.value, Status.FAILED.value})
