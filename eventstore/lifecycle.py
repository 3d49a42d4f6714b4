"""Vehicle lifecycle jobs: subscribe, unsubscribe, disconnect, refresh or forget a vehicle, asked for by the
receiver's Connect callback, an operator or a worker, and done by the workers.

A job is one (action, vehicle) pair: asking again for a job that waits changes nothing but its
details (one subscribe per vehicle, however often it is asked for). Nothing is lost between asking and
doing: `take` hands a due job out with a lease (its due time moves to the lease's end), and only `done`
removes it, unless it was asked for again after it was taken (that request is done again). A worker
that dies with a job leaves it to be taken again when the lease ends; `retry` sets the next due time
after a failure.

- `{p}lifecycle`: sorted set, member `action:vehicle`, score = when it is due (or its lease ends);
- `{p}lifecycle-job:{action}:{vehicle}`: hash `action`, `vehicle_id`, `user_id`, `reason`,
  `requested_at`, `attempts`, `last_error`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from eventstore import scripts
from eventstore.codec import text, text_map, texts
from eventstore.keys import KeySpace


class LifecycleAction(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    DISCONNECT = "disconnect"
    REFRESH = "refresh"
    FORGET = "forget"
    """A vehicle whose access was lost and not given back within the grace period: unsubscribed and
    forgotten (`workers.access`)."""


@dataclass(frozen=True, slots=True)
class LifecycleJob:
    action: LifecycleAction
    vehicle_id: str
    user_id: str | None
    reason: str
    requested_at: float
    attempts: int
    last_error: str | None

    @property
    def member(self) -> str:
        return f"{self.action.value}:{self.vehicle_id}"


def _job(fields: dict[str, str]) -> LifecycleJob:
    return LifecycleJob(
        action=LifecycleAction(fields["action"]),
        vehicle_id=fields["vehicle_id"],
        user_id=fields.get("user_id") or None,
        reason=fields.get("reason", ""),
        requested_at=float(fields.get("requested_at") or 0),
        attempts=int(fields.get("attempts") or 0),
        last_error=fields.get("last_error") or None,
    )


class LifecycleStore:
    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys
        self._take = client.register_script(scripts.TAKE_LIFECYCLE)
        self._done = client.register_script(scripts.DONE_LIFECYCLE)

    def request(
        self,
        action: LifecycleAction,
        vehicle_id: str,
        *,
        user_id: str | None = None,
        reason: str,
        due: float | None = None,
        now: float | None = None,
    ) -> None:
        """Ask for `action` on the vehicle, due at `due` (now when None); one job per (action, vehicle)."""
        now = time.time() if now is None else now
        member = f"{action.value}:{vehicle_id}"
        fields: dict[Any, Any] = {
            "action": action.value,
            "vehicle_id": vehicle_id,
            "reason": reason,
            "requested_at": repr(now),
        }
        if user_id:
            fields["user_id"] = user_id
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.lifecycle_job(action.value, vehicle_id), mapping=fields)
            pipe.zadd(self.keys.lifecycle, {member: now if due is None else due})
            pipe.execute()

    def take(self, count: int, *, lease: float, now: float | None = None) -> list[LifecycleJob]:
        """Up to `count` due jobs, each held for `lease` s (taken again after that unless `done`)."""
        now = time.time() if now is None else now
        members = texts(self._take(keys=[self.keys.lifecycle], args=[repr(now), repr(now + lease), count]))
        return [job for job in map(self._of_member, members) if job is not None]

    def _of_member(self, member: str) -> LifecycleJob | None:
        action, _, vehicle_id = member.partition(":")
        return self.get(action, vehicle_id)

    def get(self, action: str, vehicle_id: str) -> LifecycleJob | None:
        fields = text_map(self.redis.hgetall(self.keys.lifecycle_job(action, vehicle_id)))
        return _job(fields) if fields.get("action") else None

    def done(self, job: LifecycleJob) -> bool:
        """Forget the job; False (and kept, due) when it was asked for again after it was taken."""
        keys = [self.keys.lifecycle, self.keys.lifecycle_job(job.action.value, job.vehicle_id)]
        return bool(self._done(keys=keys, args=[job.member, repr(job.requested_at)]))

    def retry(self, job: LifecycleJob, *, delay: float, error: str, now: float | None = None) -> None:
        """Due again in `delay` s, one more attempt counted, `error` kept (no secret in it: the caller's)."""
        now = time.time() if now is None else now
        key = self.keys.lifecycle_job(job.action.value, job.vehicle_id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "attempts", 1)
            pipe.hset(key, "last_error", error[:500])
            pipe.zadd(self.keys.lifecycle, {job.member: now + delay})
            pipe.execute()

    def defer(self, job: LifecycleJob, *, delay: float, now: float | None = None) -> None:
        """Due again in `delay` s without counting an attempt: the work could not start (an empty rate
        bucket, a refresh in progress elsewhere), it did not fail. A job done meanwhile stays done."""
        now = time.time() if now is None else now
        self.redis.zadd(self.keys.lifecycle, {job.member: now + delay}, xx=True)

    def waiting(self, limit: int = 1000) -> list[tuple[LifecycleJob, float]]:
        """The jobs not done yet with their due time (or lease end), soonest first (for operators)."""
        found = []
        scored: list[Any] = self.redis.zrange(self.keys.lifecycle, 0, limit - 1, withscores=True)
        for member, due in scored:
            job = self._of_member(text(member))
            if job is not None:
                found.append((job, float(due)))
        return found
