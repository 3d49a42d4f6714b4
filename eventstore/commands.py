"""Storage of the commands the workers send: one record per (event, step), and a lock per vehicle.

- `{p}cmd:{event}:{step}`: hash `state` (`StepState`), `command`, `params` (JSON), `sends` (how many sends
  started), `sent_at` (when the last one started), `result` (JSON, once done), `updated_at`; it expires
  `retention` seconds after its last write;
- `{p}cmd-steps:{event}`: the names of the event's steps that have a record, written with each record (in
  its transaction, with the same expiry) so that `events show` finds them without a scan of the keys;
- `{p}vlock:{vehicle}`: a lease lock held while a command for the vehicle runs (`lock`).

What the states mean and when to send is `workers.commands`' decision; this module only stores them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis
from redis.lock import Lock

from eventstore.codec import text, text_map
from eventstore.keys import KeySpace

_LOCK_POLL_SECONDS = 0.05


class StepState(StrEnum):
    SENDING = "sending"
    UNKNOWN = "unknown"
    NOT_SENT = "not_sent"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A step's record as stored; `state` is None for a step never attempted (or expired)."""

    state: str | None
    sent_at: float
    fields: dict[str, str] = field(default_factory=dict, repr=False)


class CommandStore:
    def __init__(self, client: redis.Redis, keys: KeySpace, *, retention: int) -> None:
        self.redis = client
        self.keys = keys
        self.retention = retention

    def state(self, event_id: str, step: str) -> str | None:
        value = self.redis.hget(self.keys.command(event_id, step), "state")
        return value.decode() if isinstance(value, bytes) else value

    def read(self, event_id: str, step: str) -> StepRecord:
        fields = text_map(self.redis.hgetall(self.keys.command(event_id, step)))
        return StepRecord(fields.get("state"), float(fields.get("sent_at") or 0), fields)

    def result(self, event_id: str, step: str) -> dict[str, Any]:
        """What the step's finished command was recorded with (empty if nothing was)."""
        raw = self.redis.hget(self.keys.command(event_id, step), "result")
        return json.loads(raw) if raw else {}

    def mark(
        self,
        event_id: str,
        step: str,
        state: StepState,
        *,
        command: str,
        params: Mapping[str, Any],
        sending: bool = False,
    ) -> None:
        """Record the step's state; `sending` also counts a send, started now."""
        now = repr(time.time())
        fields: dict[Any, Any] = {
            "state": state.value,
            "command": command,
            "params": json.dumps(params),
            "updated_at": now,
        }
        if sending:
            fields["sent_at"] = now
        key, steps = self.keys.command(event_id, step), self.keys.command_steps(event_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping=fields)
            if sending:
                pipe.hincrby(key, "sends", 1)
            pipe.expire(key, self.retention)
            pipe.sadd(steps, step)
            pipe.expire(steps, self.retention)
            pipe.execute()

    def steps(self, event_id: str) -> dict[str, StepRecord]:
        """Every step of the event that has a record, by name (in name order)."""
        names = sorted(text(name) for name in self.redis.smembers(self.keys.command_steps(event_id)))
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.command(event_id, name))
            stored = pipe.execute()
        found = {}
        for name, raw in zip(names, stored, strict=True):
            if raw:  # the step's record may have expired before the set
                fields = text_map(raw)
                found[name] = StepRecord(fields.get("state"), float(fields.get("sent_at") or 0), fields)
        return found

    def finish(self, event_id: str, step: str, result: Mapping[str, Any]) -> None:
        """Record the step done, with its outcome: no later run sends it again."""
        key, steps = self.keys.command(event_id, step), self.keys.command_steps(event_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(
                key,
                mapping={
                    "state": StepState.DONE.value,
                    "result": json.dumps(result),
                    "updated_at": repr(time.time()),
                },
            )
            pipe.expire(key, self.retention)
            pipe.sadd(steps, step)
            pipe.expire(steps, self.retention)
            pipe.execute()

    def lock(self, vehicle_id: str, *, lease: float) -> Lock:
        """The lock that serialises commands to one vehicle; its lease must outlast the longest call."""
        return Lock(
            self.redis,
            self.keys.vehicle_lock(vehicle_id),
            timeout=lease,
            sleep=_LOCK_POLL_SECONDS,
            thread_local=False,
        )

    def lock_left(self, vehicle_id: str) -> float:
        """Seconds left on the vehicle lock's lease (0 when it is free)."""
        return max(0, int(self.redis.pttl(self.keys.vehicle_lock(vehicle_id)))) / 1000
