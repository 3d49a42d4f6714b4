"""The event store's layout in Redis, and the one round trip that accepts a delivery.

Shared by the receiver (which writes new events) and the workers (which move them through their
lifecycle). Every key starts with a prefix (`EVENT_KEY_PREFIX`, default `sc:`):

| key | type | what |
| --- | --- | --- |
| `{p}seen:{event_id}` | string, TTL = dedupe window (7 days) | the id was accepted (value: receipt time) |
| `{p}event:{event_id}` | hash | the event record (fields below) |
| `{p}inbox` | list | ids not yet handed to Celery (receiver LPUSHes, relay pops the right end) |
| `{p}pending` | sorted set, score = receipt time | ids not yet done or failed: the sweeper's work list |
| `{p}dead` | sorted set, score = time of failure | the dead letters |

Event record fields: `id`, `raw` (the body exactly as signed), `type`, `vehicle_id`, `user_id`,
`webhook_id`, `mode`, `version`, `test` ("1"/"0"), `deliveries` (comma-separated delivery ids),
`received_at` (epoch seconds), `status` (see `Status`), `attempts`, plus the workers' fields
(`updated_at`, `history`, `results`, `last_error`, `next_attempt_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from smartcar_core.events import Envelope

DEFAULT_PREFIX = "sc:"
DEFAULT_DEDUPE_SECONDS = 7 * 24 * 3600


class Status(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"
    REPLAYED = "replayed"


@dataclass(frozen=True, slots=True)
class KeySpace:
    prefix: str = DEFAULT_PREFIX

    def seen(self, event_id: str) -> str:
        return f"{self.prefix}seen:{event_id}"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}"

    @property
    def inbox(self) -> str:
        return f"{self.prefix}inbox"

    @property
    def pending(self) -> str:
        return f"{self.prefix}pending"

    @property
    def dead(self) -> str:
        return f"{self.prefix}dead"


# KEYS: seen, event, inbox, pending
# ARGV: event_id, delivery_id, dedupe_seconds, received_at, raw, type, vehicle_id, user_id, webhook_id,
#       mode, version, test
# Returns 1 for a new event (stored, queued in the inbox, listed as pending), 0 for a duplicate (its
# delivery id appended to the record when the record still exists, unless the record has it already: a
# replayed body carries the same delivery id, and must not grow the record; the list is capped too).
# The id is marked seen last: a script that fails half-way (a Redis error between two writes) leaves the
# id unseen, so Smartcar's retry stores it again instead of being taken for a duplicate of nothing.
ACCEPT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
    local seen = redis.call('HGET', KEYS[2], 'deliveries')
    if not seen or seen == '' then
      redis.call('HSET', KEYS[2], 'deliveries', ARGV[2])
    elseif #seen < 4096 and not string.find(',' .. seen .. ',', ',' .. ARGV[2] .. ',', 1, true) then
      redis.call('HSET', KEYS[2], 'deliveries', seen .. ',' .. ARGV[2])
    end
  end
  return 0
end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'raw', ARGV[5], 'type', ARGV[6], 'vehicle_id', ARGV[7],
  'user_id', ARGV[8], 'webhook_id', ARGV[9], 'mode', ARGV[10], 'version', ARGV[11], 'test', ARGV[12],
  'deliveries', ARGV[2], 'received_at', ARGV[4], 'status', 'received', 'attempts', 0)
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[3])
return 1
"""


def accept_arguments(
    keyspace: KeySpace, envelope: Envelope, raw: bytes, *, received_at: float, dedupe_seconds: int
) -> tuple[bytes | str, ...]:
    """The 4 keys and 12 arguments of `ACCEPT_SCRIPT` for one delivery, in the script's order."""
    event_id = envelope.event_id
    return (
        keyspace.seen(event_id),
        keyspace.event(event_id),
        keyspace.inbox,
        keyspace.pending,
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


def decode_record(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """An event hash as read with a bytes client: text fields decoded, `raw` kept as bytes."""
    return {key.decode(): value if key == b"raw" else value.decode() for key, value in raw.items()}
