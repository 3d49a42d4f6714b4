"""The operator indexes: sorted sets of event ids that `events list` reads instead of scanning records.

Each is kept by the event scripts themselves (`eventstore.scripts`), in the atomic step of the transition
that changes it, so an index never disagrees with the records for longer than a script runs:

- `ix:status:{status}`: every event in that status, scored with the time it took it. ACCEPT puts it in
  `received`; CLAIM, BEGIN, DONE, RETRY, DEAD and REPLAY each move it from its old status to its new;
- `ix:type:`, `ix:vehicle:`, `ix:user:`, `ix:webhook:`: every stored event of that type, vehicle, user or
  webhook but those still `received`, scored with its receipt time. CLAIM writes them (and BEGIN and
  REPLAY, for an event no relay claimed, have it claimed or index it themselves): not ACCEPT, whose every
  added command costs the receiver's rate (measured: the four in ACCEPT cost 14-16 % of it, and 30 us of
  Redis an event; the one ZADD ACCEPT keeps, 4-6 us, is within the benchmark's noise). A query reads the
  received events from `ix:status:received`;
- `ix:error-type:{type}` and `ix:error:{type}:{code}`: the events not done whose last failure was that
  Smartcar error (by type, and by type and code), scored with the time of that failure. RETRY and DEAD
  move the id from its previous error to the new one (a failure that is not Smartcar's takes it out);
  DONE takes it out. A replayed event keeps its entry: it is not done, and its last failure is that.

Why these scores: a status index scored by the time of the transition is also the index by time that a
query with `--since` reads, and the one that retention needs (`ix:status:failed` by failure time,
`ix:status:done` by completion time). Every other score is at most the event's status time (receipt and
failures come before the current status), which is what lets a query bound any index by `--until`.

The keys of a transition are computed here, in Python, and passed in KEYS: the seven status indexes as
one block in `Status` order (`status_block`, which the scripts' `move_status` indexes by status), the
entity indexes from the record (read first: CLAIM, REPLAY and the trim take the ids' records in one
round trip before the script, as the relay pops before it claims; those fields never change), and the
error indexes from the record's `last_error` as `begin` read it (the run holds the lease, and only fenced
transitions write that field).

**Bounded growth.** Done records expire; their entries must go with them. DONE sets the record's expiry
to `retention + TRIM_GRACE`, and the sweeper's `trim` (`EventStore.trim`) takes the done ids whose
completion is older than `retention` off `ix:status:done` (oldest first, in batches), reads their type,
vehicle, user and webhook from the records (still there thanks to the grace), and deletes each record
with its every index entry in one script (`scripts.TRIM`), which checks again that the event is still
done and that old. Failed events are removed the same way once their failure is older than their own
retention (`WORKERS_FAILED_RETENTION`). An entry whose record went before the sweeper came (the sweeper
stopped for longer than the grace) is dropped from the indexes a query read it from when the query meets
it (`eventstore.query`), so a dangling id costs one look and is gone.

**Events older than the indexes** (stored by a version that did not keep them) are put in them from their
records by `eventstore.reindex` (`smartcar-events events reindex`), with the scores above.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from eventstore.keys import KeySpace
from eventstore.status import Status

STATUSES: tuple[Status, ...] = tuple(Status)
"""The order of the status block in KEYS (the scripts' `STATUS_OFFSET` is generated from it)."""

TRIM_GRACE = 24 * 3600
"""How long a done record outlives its retention, for the sweeper to find its index entries."""

ErrorKey = tuple[str, str]
"""A Smartcar error's (type, code) as indexed; ("", "") for none, code "" for a type without a code."""

NO_ERROR: ErrorKey = ("", "")


def status_block(keys: KeySpace) -> list[str]:
    """The status indexes in `STATUSES` order, as the scripts take them."""
    return [keys.status_index(status) for status in STATUSES]


def entity_keys(
    keys: KeySpace, *, event_type: str, vehicle_id: str, user_id: str, webhook_id: str
) -> list[str]:
    """The type, vehicle, user and webhook indexes of an event (a key for an empty value is never written)."""
    return [
        keys.type_index(event_type),
        keys.vehicle_index(vehicle_id),
        keys.user_index(user_id),
        keys.webhook_index(webhook_id),
    ]


def record_entity_keys(keys: KeySpace, fields: Mapping[str, str]) -> list[str]:
    """`entity_keys` of a stored record's text fields."""
    return entity_keys(
        keys,
        event_type=fields.get("type", ""),
        vehicle_id=fields.get("vehicle_id", ""),
        user_id=fields.get("user_id", ""),
        webhook_id=fields.get("webhook_id", ""),
    )


def error_key(error: Mapping[str, Any] | None) -> ErrorKey:
    """The (type, code) an error description (`workers.process.describe_error`) is indexed under."""
    if not isinstance(error, Mapping) or not error.get("type"):
        return NO_ERROR  # not a Smartcar error (a bug in a handler, a deferral): nothing to filter by
    return str(error["type"]), str(error.get("code") or "")


def stored_error_key(last_error: str | None) -> ErrorKey:
    """`error_key` of a record's `last_error` field (JSON, as the scripts store it)."""
    if not last_error:
        return NO_ERROR
    try:
        decoded = json.loads(last_error)
    except ValueError:
        return NO_ERROR
    return error_key(decoded if isinstance(decoded, dict) else None)


def error_keys(keys: KeySpace, error: ErrorKey) -> list[str]:
    """The two error indexes of (type, code): by type, and by type and code (unused when "" is given)."""
    error_type, code = error
    return [keys.error_type_index(error_type), keys.error_index(error_type, code)]
