"""The latest known value of every signal of every vehicle, and the vehicle's open errors.

Deliveries arrive in any order and concurrently, so a value replaces the stored one only when its
signal's `oemUpdatedAt` (then `retrievedAt`) is newer: never by arrival (`scripts.NEWER_WINS`). A value
without any timestamp only fills an empty slot.

- `{p}vehicle:{id}:signals`: signal code -> JSON (`value`, `body`, `oem_updated_at` and `retrieved_at`
  in epoch ms, `event_id`, `source`: webhook, v3 or v2);
- `{p}vehicle:{id}:errors`: TYPE:CODE -> JSON (the latest VEHICLE_ERROR item of that kind: `state`
  ERROR or RESOLVED, `at`, description, suggested user message, resolution, signals).

Both keep the order key in `_p`/`_s`, which readers never see.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from eventstore import scripts
from eventstore.codec import text_map, texts
from eventstore.keys import KeySpace


@dataclass(frozen=True, slots=True)
class SignalState:
    code: str
    value: Any
    body: dict[str, Any] | None
    oem_updated_at: int | None
    retrieved_at: int | None
    event_id: str | None
    source: str


@dataclass(frozen=True, slots=True)
class SignalUpdate:
    """One signal value to merge; times are epoch milliseconds (None when unknown)."""

    code: str
    body: dict[str, Any]
    oem_updated_at: int | None
    retrieved_at: int | None
    source: str = "webhook"

    @property
    def value(self) -> Any:
        return self.body.get("value", self.body)


def merge_arguments(updates: Iterable[SignalUpdate], *, event_id: str | None) -> list[str]:
    """The (field, order key, JSON) triples of `scripts.NEWER_WINS` for `updates`, in their order."""
    args: list[str] = []
    for update in updates:
        primary, secondary = update.oem_updated_at or 0, update.retrieved_at or 0
        record = {
            "code": update.code,
            "value": update.value,
            "body": update.body,
            "oem_updated_at": update.oem_updated_at,
            "retrieved_at": update.retrieved_at,
            "event_id": event_id,
            "source": update.source,
            "_p": primary,
            "_s": secondary,
        }
        args += [update.code, f"{primary}:{secondary}", json.dumps(record, separators=(",", ":"))]
    return args


class StagedSignals:
    """Signal values one run stores, merged together: by the run's end (`EventStore.done`), or by
    `VehicleStateStore.apply` before the run reads the state back or ends another way.

    Why: merging each handler's values as it went cost a round trip each, two for a VEHICLE_STATE event
    with a follow-up read, and those were the largest part of a worker's Redis time (bench/README.md). The
    merge is the same newer-wins script either way, so the stored state ends the same; what changes is
    that other runs see a run's values when it ends, not half-way (deliveries are unordered anyway, and the
    charging rule sends a command only on a read of the car under the vehicle's command lock).
    """

    def __init__(self) -> None:
        self._arguments: dict[str, list[str]] = {}

    def add(self, vehicle_id: str, updates: Iterable[SignalUpdate], *, event_id: str | None) -> int:
        """Stage `updates` for `vehicle_id`; returns how many were staged."""
        args = merge_arguments(updates, event_id=event_id)
        if args:
            self._arguments.setdefault(vehicle_id, []).extend(args)
        return len(args) // 3

    def take(self) -> dict[str, list[str]]:
        """Each vehicle's NEWER_WINS arguments staged so far; nothing is staged afterwards."""
        taken, self._arguments = self._arguments, {}
        return taken

    def __bool__(self) -> bool:
        return bool(self._arguments)


class VehicleStateStore:
    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys
        self._merge = client.register_script(scripts.NEWER_WINS)

    def merge(self, vehicle_id: str, updates: Iterable[SignalUpdate], *, event_id: str | None) -> list[str]:
        """Store each update that is newer than what is stored; returns the codes written."""
        args = merge_arguments(updates, event_id=event_id)
        if not args:
            return []
        return texts(self._merge(keys=[self.keys.vehicle_signals(vehicle_id)], args=args))

    def apply(self, staged: StagedSignals) -> None:
        """Merge what `staged` holds now (a round trip per vehicle; none if it holds nothing)."""
        for vehicle_id, args in staged.take().items():
            self._merge(keys=[self.keys.vehicle_signals(vehicle_id)], args=args)

    def signals(self, vehicle_id: str) -> dict[str, SignalState]:
        raw = text_map(self.redis.hgetall(self.keys.vehicle_signals(vehicle_id)))
        states = {}
        for field, value in raw.items():
            record = json.loads(value)
            states[field] = SignalState(
                code=field,
                value=record.get("value"),
                body=record.get("body"),
                oem_updated_at=record.get("oem_updated_at"),
                retrieved_at=record.get("retrieved_at"),
                event_id=record.get("event_id"),
                source=record.get("source", "webhook"),
            )
        return dict(sorted(states.items()))

    def record_errors(
        self, vehicle_id: str, items: Iterable[Mapping[str, Any]], *, at: int, event_id: str
    ) -> list[str]:
        """Store VEHICLE_ERROR items, each only if newer (`at`, epoch ms) than the stored one of its kind."""
        args: list[str] = []
        for item in items:
            key = f"{item.get('type') or 'UNKNOWN'}:{item.get('code') or ''}"
            record = {
                "type": item.get("type"),
                "code": item.get("code"),
                "state": str(item.get("state") or "ERROR").upper(),
                "description": item.get("description"),
                "suggested_user_message": item.get("suggestedUserMessage"),
                "resolution": item.get("resolution"),
                "doc_url": item.get("docURL"),
                "signals": [s.get("code") for s in item.get("signals") or [] if isinstance(s, dict)],
                "at": at,
                "event_id": event_id,
                "_p": at,
                "_s": 0,
            }
            args += [key, f"{at}:0", json.dumps(record, separators=(",", ":"))]
        if not args:
            return []
        return texts(self._merge(keys=[self.keys.vehicle_errors(vehicle_id)], args=args))

    def errors(self, vehicle_id: str) -> dict[str, dict[str, Any]]:
        raw = text_map(self.redis.hgetall(self.keys.vehicle_errors(vehicle_id)))
        out = {}
        for field, value in raw.items():
            record = json.loads(value)
            record.pop("_p", None)
            record.pop("_s", None)
            out[field] = record
        return dict(sorted(out.items()))

    def forget(self, vehicle_id: str) -> None:
        """Drop the vehicle's signals and errors (it was disconnected: nothing of it is kept)."""
        self.redis.delete(self.keys.vehicle_signals(vehicle_id), self.keys.vehicle_errors(vehicle_id))

    def last_events(self, vehicle_ids: Sequence[str]) -> dict[str, int | None]:
        """When each vehicle last sent something (epoch ms): the newest `retrieved_at` of a signal a
        delivery carried, or `at` of an error. Read when an operator asks, so that the event path writes
        nothing more for it."""
        with self.redis.pipeline(transaction=False) as pipe:
            for vehicle_id in vehicle_ids:
                pipe.hvals(self.keys.vehicle_signals(vehicle_id))
                pipe.hvals(self.keys.vehicle_errors(vehicle_id))
            found = pipe.execute()
        latest: dict[str, int | None] = {}
        for index, vehicle_id in enumerate(vehicle_ids):
            signals = [json.loads(value) for value in found[2 * index]]
            times = [s.get("retrieved_at") for s in signals if s.get("source", "webhook") == "webhook"]
            times += [json.loads(value).get("at") for value in found[2 * index + 1]]
            known = [int(moment) for moment in times if isinstance(moment, int | float)]
            latest[vehicle_id] = max(known) if known else None
        return latest
