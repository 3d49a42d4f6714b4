"""The event record (`{p}event:{id}`, a hash) and its one decoder.

Fields written by the receiver's accept script: `id`, `raw` (the body exactly as signed), `type`,
`vehicle_id`, `user_id`, `webhook_id`, `mode`, `version`, `test` ("1"/"0"), `deliveries` (comma-separated
delivery ids, capped), `received_at` (epoch seconds), `status` (`Status`), `attempts`.

Fields written by the workers' transitions: `queued_at`, `started_at`, `updated_at`, `lease_until`,
`run_id`, `task_id`, `worker` (the run holding the lease), `history` (JSON array of `history_entry`s),
`results` (JSON object: each handler's outcome), `last_error`, `next_attempt_at`, `finished_at`,
`failed_at`, `dead_reason`.

Every reader decodes through `EventRecord.from_hash`: the typed fields for the workers, `fields` (every
text field as stored) and `as_dict()` for tools and tests that look at the raw hash.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eventstore.codec import bytes_map


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
    """Every field but `raw`, as stored (text)."""

    @classmethod
    def from_hash(cls, stored: Mapping[Any, Any]) -> EventRecord:
        """Decode an event hash as a bytes client reads it (HGETALL); str keys or values are taken too."""
        raw = bytes_map(stored)
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

    def as_dict(self) -> dict[str, Any]:
        """The hash as stored: text fields as text, `raw` as bytes."""
        return {**self.fields, "raw": self.raw}


def _json_field(value: str | None, default: Any) -> Any:
    if not value:
        return default
    try:
        decoded = json.loads(value)
    except ValueError:
        return default
    return decoded if isinstance(decoded, type(default)) else default


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
    """One entry of a record's `history`: what one run (or a replay) ended with."""
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
