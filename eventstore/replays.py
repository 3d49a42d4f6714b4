"""Replay jobs: a selection of events put back through the relay at a chosen rate, by any worker.

A job is made when an operator confirms a plan (`smartcar-events replay ... --yes`) or when Smartcar says
an error is resolved (`workers.auto_replay`). Its ids are snapshotted then, so that what runs is what was
planned, whatever arrives or fails later:

- `{p}replay:{job}`: hash `id`, `reason`, `selection` (JSON: the ids or the filter), `rate` (events a
  second), `resend` ("1": commands already done are sent again), `statuses` (the statuses replayed, space
  separated), `created_at`, `status` (`JobStatus`), `total`, `cursor` (how many ids were gone through),
  the counts by outcome (`replayed`, `done_since`, `in_progress`, `gone`), `in_other_replay` (ids left out
  at creation), `owner` and `lease_until` while a worker runs it, `started_at`, `finished_at`,
  `cancelled_at`, `takes` (how many times a worker took it: more than one is a resume);
- `{p}replay-ids:{job}`: the ids, in order;
- `{p}replays`: the jobs not finished, scored with when a worker may take one (now, or its lease's end);
- `{p}replaying`: event -> job, for the ids a job has not gone through yet (one job per event).

A worker `take`s a due job with a lease, `step`s through its next ids (each step one atomic script, see
`eventstore.scripts_replay`), `renew`s the lease as it goes and `release`s the job when its time is up.
A worker that dies leaves the job to whoever takes it once the lease ends, at the cursor. A finished or
cancelled job is kept `retention` seconds for `replay status`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis

from eventstore import scripts_replay
from eventstore.codec import dumps, text, text_map, texts
from eventstore.commands import StepState
from eventstore.index import record_entity_keys, status_block
from eventstore.keys import KeySpace
from eventstore.rates import APP
from eventstore.record import history_entry
from eventstore.status import Status

JOB_RETENTION = 7 * 24 * 3600
"""How long a finished or cancelled job stays readable."""
OUTCOMES = ("replayed", "done_since", "in_progress", "gone")
"""What a step can find an id to be (the job's counts)."""
_ENTITY_FIELDS = ("type", "vehicle_id", "user_id", "webhook_id")


class JobStatus(StrEnum):
    PLANNED = "planned"
    """Created, no worker has taken it yet."""
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


FINISHED_JOBS = frozenset({JobStatus.DONE, JobStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class ReplayJob:
    """A job as stored; `counts` by outcome (`OUTCOMES`)."""

    id: str
    status: JobStatus
    reason: str
    rate: float
    resend: bool
    statuses: tuple[str, ...]
    total: int
    cursor: int
    created_at: float
    counts: dict[str, int]
    in_other_replay: int
    selection: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOBS

    @property
    def left(self) -> int:
        return max(0, self.total - self.cursor)


def _job(fields: dict[str, str]) -> ReplayJob:
    try:
        selection = json.loads(fields.get("selection") or "{}")
    except ValueError:
        selection = {}
    return ReplayJob(
        id=fields["id"],
        status=JobStatus(fields.get("status") or JobStatus.PLANNED),
        reason=fields.get("reason", ""),
        rate=float(fields.get("rate") or 1),
        resend=fields.get("resend") == "1",
        statuses=tuple((fields.get("statuses") or Status.FAILED).split()),
        total=int(fields.get("total") or 0),
        cursor=int(fields.get("cursor") or 0),
        created_at=float(fields.get("created_at") or 0),
        counts={outcome: int(fields.get(outcome) or 0) for outcome in OUTCOMES},
        in_other_replay=int(fields.get("in_other_replay") or 0),
        selection=selection if isinstance(selection, dict) else {},
        fields=fields,
    )


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class Created:
    """What `create` did: `created` False when a job of that id existed already (nothing changed)."""

    job_id: str
    created: bool
    taken: int
    in_other_replay: int


class ReplayStore:
    """The replay jobs, on a sync client that answers bytes."""

    def __init__(self, client: redis.Redis, keys: KeySpace, *, retention: int = JOB_RETENTION) -> None:
        self.redis = client
        self.keys = keys
        self.retention = retention
        self._statuses = status_block(keys)
        self._create = client.register_script(scripts_replay.CREATE)
        self._own = client.register_script(scripts_replay.OWN)
        self._renew = client.register_script(scripts_replay.RENEW)
        self._step = client.register_script(scripts_replay.STEP)
        self._cancel = client.register_script(scripts_replay.CANCEL)

    def _job_keys(self, job_id: str) -> list[str]:
        return [
            self.keys.replay_job(job_id),
            self.keys.replay_ids(job_id),
            self.keys.replays,
            self.keys.replaying,
        ]

    def create(
        self,
        event_ids: Sequence[str],
        *,
        reason: str,
        rate: float,
        selection: Mapping[str, Any],
        resend: bool = False,
        statuses: Sequence[str] = (Status.FAILED,),
        job_id: str | None = None,
        now: float | None = None,
    ) -> Created:
        """Snapshot `event_ids` as a new job (ids another unfinished job has are left out)."""
        now = time.time() if now is None else now
        job_id = job_id or new_job_id()
        details = {
            "reason": reason,
            "rate": repr(float(rate)),
            "resend": "1" if resend else "0",
            "statuses": " ".join(statuses),
            "selection": dumps(dict(selection)),
        }
        args: list[str] = [job_id, repr(now), JobStatus.PLANNED, JobStatus.DONE, str(len(details))]
        for name, value in details.items():
            args += [name, value]
        args += list(dict.fromkeys(event_ids))
        created, taken, other = self._create(keys=self._job_keys(job_id), args=args)
        return Created(job_id, bool(created), int(taken), int(other))

    def get(self, job_id: str) -> ReplayJob | None:
        fields = text_map(self.redis.hgetall(self.keys.replay_job(job_id)))
        return _job(fields) if fields.get("id") else None

    def ids(self, job_id: str, start: int = 0, stop: int = -1) -> list[str]:
        return texts(self.redis.lrange(self.keys.replay_ids(job_id), start, stop))

    def in_replay(self, event_ids: Sequence[str]) -> dict[str, str]:
        """Which of `event_ids` an unfinished job still has to go through (id -> job)."""
        if not event_ids:
            return {}
        jobs = self.redis.hmget(self.keys.replaying, list(event_ids))
        return {event_id: text(job) for event_id, job in zip(event_ids, jobs, strict=True) if job}

    def due(self, count: int, *, now: float | None = None) -> list[str]:
        """Up to `count` jobs a worker may take now (never taken, released, or their lease ended)."""
        now = time.time() if now is None else now
        return texts(self.redis.zrangebyscore(self.keys.replays, "-inf", repr(now), start=0, num=count))

    def take(self, job_id: str, *, owner: str, lease: float, now: float | None = None) -> ReplayJob | None:
        """Own the job for `lease` s if it is due; None when it is not (someone else has it, or it ended)."""
        now = time.time() if now is None else now
        keys = [self.keys.replays, self.keys.replay_job(job_id)]
        args = [job_id, repr(now), repr(now + lease), owner, JobStatus.PLANNED, JobStatus.RUNNING]
        return self.get(job_id) if self._own(keys=keys, args=args) else None

    def renew(self, job_id: str, *, owner: str, lease: float, now: float | None = None) -> bool:
        """Extend the owner's lease; False when the job is no longer its own (finished, or taken over)."""
        now = time.time() if now is None else now
        return self._hold(job_id, owner, now + lease, keep=True)

    def release(self, job_id: str, *, owner: str, due: float | None = None) -> bool:
        """Give the job back, due at `due` (now): the owner's time is up, and any worker may go on."""
        return self._hold(job_id, owner, time.time() if due is None else due, keep=False)

    def _hold(self, job_id: str, owner: str, until: float, *, keep: bool) -> bool:
        keys = [self.keys.replays, self.keys.replay_job(job_id)]
        args = [job_id, owner, repr(until), JobStatus.RUNNING, "1" if keep else "0"]
        return bool(self._renew(keys=keys, args=args))

    def step(
        self, job: ReplayJob, *, owner: str, start: int, count: int, now: float | None = None
    ) -> list[tuple[str, str]]:
        """Go through the job's ids from position `start` (its cursor), at most `count`: each replayed
        (if its status is one the job replays) or skipped, the cursor moved with it. Returns (id, outcome)
        pairs, cut at the first 'lost' or 'moved' (another owner has the job, or it moved on)."""
        event_ids = self.ids(job.id, start, start + count - 1)
        if not event_ids:
            return []
        now = time.time() if now is None else now
        fields, steps = self._prepare(event_ids, resend=job.resend)
        done = []
        with self.redis.pipeline(transaction=False) as pipe:
            for position, (event_id, entity, names) in enumerate(
                zip(event_ids, fields, steps, strict=True), start
            ):
                keys = [*self._job_keys(job.id), self.keys.event(event_id), self.keys.pending]
                keys += [self.keys.dead, self.keys.inbox, self.keys.leases, *self._statuses]
                keys += record_entity_keys(self.keys, entity)
                keys += [self.keys.command(event_id, name) for name in names]
                entry = history_entry(attempt=0, outcome="replayed", reason=job.reason, now=now)
                entry["replay_job"] = job.id
                if names:
                    entry["resend_commands"] = names
                args = [owner, str(position), repr(now), dumps(entry), event_id, job.id]
                args += [str(self.retention), JobStatus.RUNNING, JobStatus.DONE, StepState.NOT_SENT.value]
                self._step(keys=keys, args=args, client=pipe)
            answers = pipe.execute()
        for event_id, answer in zip(event_ids, texts(answers), strict=True):
            if answer in ("lost", "moved"):
                break
            done.append((event_id, answer))
        return done

    def _prepare(
        self, event_ids: Sequence[str], *, resend: bool
    ) -> tuple[list[dict[str, str]], list[list[str]]]:
        """Each id's entity fields (its indexes) and, with `resend`, its command steps: one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.hmget(self.keys.event(event_id), _ENTITY_FIELDS)
                if resend:
                    pipe.smembers(self.keys.command_steps(event_id))
            answers = iter(pipe.execute())
        fields, steps = [], []
        for _ in event_ids:
            values = next(answers)
            fields.append({n: text(v) for n, v in zip(_ENTITY_FIELDS, values, strict=True) if v is not None})
            steps.append(sorted(texts(next(answers))) if resend else [])
        return fields, steps

    def cancel(self, job_id: str, *, now: float | None = None) -> JobStatus | None:
        """Stop the job where its cursor is (what was replayed stays replayed); its status after, None
        when there is no such job."""
        now = time.time() if now is None else now
        args = [job_id, repr(now), str(self.retention)]
        args += [JobStatus.PLANNED, JobStatus.RUNNING, JobStatus.CANCELLED]
        answer = text(self._cancel(keys=self._job_keys(job_id), args=args))
        return JobStatus(answer) if answer else None

    def bucket_room(self, *, capacity: int, refill_per_minute: float, now: float | None = None) -> float:
        """How many requests the application's rate bucket (`eventstore.rates`) could serve now, without
        taking any: 0 while the application is paused; infinite when the bucket is off (`capacity` 0)."""
        if capacity <= 0:
            return float("inf")
        now = time.time() if now is None else now
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.rate_bucket, ["tokens", "at"])
            pipe.hget(self.keys.rate_pauses, APP)
            (tokens, at), paused = pipe.execute()
        if paused is not None and float(paused) > now:
            return 0.0
        if tokens is None:
            return float(capacity)
        elapsed = max(0.0, now - float(at or now))
        return min(float(capacity), float(tokens) + elapsed * refill_per_minute / 60.0)
