"""Rebuilding the operator indexes (`eventstore.index`) from the event records: `smartcar-events events
reindex`, for events stored before the indexes existed (or an index lost).

The records are found by SCAN over `{p}event:*`, in batches; each batch's fields are read in one script
call (`scripts_index.READ_FIELDS`), then one script (`scripts_index.REINDEX`) puts each event in the
indexes its record says it belongs in, with the scores the transitions give (`eventstore.index`):

- its status's index, scored with its status time (`updated_at`, else `received_at`), and out of the
  other statuses' indexes;
- unless it is still `received`, its type, vehicle, user and webhook indexes, scored with its receipt;
- unless it is done, the indexes of its last error when that is Smartcar's, scored with the time of
  that failure (its `failed_at` when failed, `updated_at` when retrying, else the time of the last
  attempt of its history that ended with that error).

An entry already there is left as it is, so running it again changes nothing, and what the transitions
wrote is never touched. It is safe while workers run: the script checks that each record's status and
`updated_at` are still those read, atomically with its writes; an event that moved on meanwhile (its
transition kept the indexes itself) is read once more, then counted as `moved` (run it again to be
sure of those). With `write=False` it counts what it would change and writes nothing (the plan).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import redis

from eventstore import scripts_index
from eventstore.codec import text, texts
from eventstore.index import error_keys, record_entity_keys, status_block, stored_error_key
from eventstore.keys import KeySpace
from eventstore.status import Status

BATCH = 500
"""Records read and indexed per script call (the KEYS of one call: 7 + 7 each)."""

_FIELDS = (
    "status",
    "updated_at",
    "received_at",
    "failed_at",
    "last_error",
    "type",
    "vehicle_id",
    "user_id",
    "webhook_id",
)
_GLOB = str.maketrans({character: f"\\{character}" for character in "*?[]\\"})


@dataclass(slots=True)
class ReindexCounts:
    """What a reindex did (or, counting only, would do)."""

    scanned: int = 0
    """Event records read."""
    events: int = 0
    """Events that got (or lost) an index entry."""
    added: int = 0
    removed: int = 0
    """Entries taken out of another status's index."""
    moved: int = 0
    """Events that moved on twice while being read: their transitions kept the indexes."""

    def add(self, other: ReindexCounts) -> None:
        self.scanned += other.scanned
        self.events += other.events
        self.added += other.added
        self.removed += other.removed
        self.moved += other.moved


class Reindexer:
    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys
        self._statuses = status_block(keys)
        self._read = client.register_script(scripts_index.READ_FIELDS)
        self._reindex = client.register_script(scripts_index.REINDEX)

    def batches(self, batch: int = BATCH) -> Iterator[list[str]]:
        """The ids of every event record, `batch` at a time (SCAN: an id may come twice, which is fine)."""
        record_key = self.keys.event("")
        pattern = record_key.translate(_GLOB) + "*"
        found: list[str] = []
        for key in self.redis.scan_iter(match=pattern, count=batch, _type="hash"):
            found.append(text(key)[len(record_key) :])
            if len(found) >= batch:
                yield found
                found = []
        if found:
            yield found

    def reindex(self, event_ids: Sequence[str], *, write: bool = True) -> ReindexCounts:
        """Index these events as their records say (module docstring); counting only with `write=False`."""
        counts = ReindexCounts(scanned=len(event_ids))
        todo = list(event_ids)
        for attempt in range(2):
            if not todo:
                break
            done = self._once(todo, write)
            counts.events += done.events
            counts.added += done.added
            counts.removed += done.removed
            todo = done.moved_ids
            if attempt == 1:
                counts.moved = len(todo)
        return counts

    def _once(self, event_ids: list[str], write: bool) -> _Pass:
        records = [
            dict(zip(_FIELDS, (None if value is None else text(value) for value in values), strict=True))
            for values in self._read(keys=[self.keys.event(i) for i in event_ids], args=list(_FIELDS))
        ]
        keys, args = list(self._statuses), ["1" if write else "0"]
        for event_id, stored in zip(event_ids, records, strict=True):
            fields = {name: value for name, value in stored.items() if value is not None}
            error = stored_error_key(fields.get("last_error"))
            keys += [self.keys.event(event_id), *record_entity_keys(self.keys, fields)]
            keys += error_keys(self.keys, error)
            status_at = fields.get("updated_at") or fields.get("received_at") or "0"
            failed_at = self._failure_time(event_id, fields) if error[0] else ""
            args += [event_id, fields.get("status", ""), fields.get("updated_at", ""), status_at]
            args += [failed_at, "1" if error[1] else "0"]
        answer = self._reindex(keys=keys, args=args)
        return _Pass(int(answer[0]), int(answer[1]), int(answer[2]), texts(answer[3:]))

    def _failure_time(self, event_id: str, fields: dict[str, str]) -> str:
        """When the event last failed with its `last_error` (the score of its error indexes)."""
        status = fields.get("status")
        if status == Status.FAILED and fields.get("failed_at"):
            return fields["failed_at"]
        if status != Status.RETRYING:  # it ran again (or was replayed) since: its history has the time
            history = self.redis.hget(self.keys.event(event_id), "history")
            for entry in reversed(_entries(history)):
                if isinstance(entry, dict) and entry.get("error") and entry.get("at"):
                    return str(entry["at"])
        return fields.get("updated_at") or fields.get("received_at") or "0"


@dataclass(frozen=True, slots=True)
class _Pass:
    events: int
    added: int
    removed: int
    moved_ids: list[str]


def _entries(history: object) -> list[object]:
    if not history:
        return []
    try:
        decoded = json.loads(text(history))
    except ValueError:
        return []
    return decoded if isinstance(decoded, list) else []
