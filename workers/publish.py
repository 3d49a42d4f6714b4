"""Publishing `process_event(event_id)` messages: many in one Redis round trip.

Celery's `apply_async` spends about 0.3 ms of CPU per message (building the message through several
layers, then one LPUSH per message on a fresh client). The relay and the sweeper publish the same task
with one string argument, so `BatchPublisher` writes Celery's message (protocol 2, JSON body, as kombu's
Redis transport stores it) itself and pushes a whole batch with one LPUSH: about 30 us per message.
`tests/workers` run every message through real workers, and `WORKERS_RELAY_FAST_PUBLISH=false` falls back
to `apply_async`.

A Celery or kombu upgrade can change that message (a new header, another key for the queue), and a worker
would then drop or never see what the relay writes. So a worker (and `smartcar-events relay`/`check`)
first publishes one message with Celery to a scratch queue, reads it back, and refuses to start when ours
differs (`differences`, `check_against_celery`).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any, Self

import redis
from celery import Celery

from eventstore.client import connect
from eventstore.codec import text
from workers.settings import WorkerSettings

TASK_NAME = "workers.process_event"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# What differs between any two messages, ours or Celery's: ids, and who sent it.
_PER_MESSAGE = {
    "headers": frozenset({"id", "root_id", "origin"}),
    "properties": frozenset({"correlation_id", "reply_to", "delivery_tag"}),
}


class BatchPublisher:
    def __init__(
        self, client: redis.Redis, *, queue: str, key_prefix: str, time_limit: float, soft_time_limit: float
    ) -> None:
        self.client = client
        self.queue = queue
        self.key_prefix = key_prefix
        self.key = key_prefix + queue  # kombu's list for the queue (priority 0), under its global prefix
        self.timelimit = [time_limit, soft_time_limit]
        self.origin = f"gen{os.getpid()}@{socket.gethostname()}"
        self.reply_to = str(uuid.uuid4())

    def for_queue(self, queue: str) -> Self:
        """The same publisher, for another queue."""
        other = copy.copy(self)
        other.queue, other.key = queue, self.key_prefix + queue
        return other

    def message(self, event_id: str) -> str:
        """One message, byte for byte what `process_event.apply_async((event_id,), queue=...)` stores."""
        task_id = str(uuid.uuid4())
        body = json.dumps([[event_id], {}, _EMBED])
        message: dict[str, Any] = {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": TASK_NAME,
                "id": task_id,
                "shadow": None,
                "eta": None,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": self.timelimit,
                "root_id": task_id,
                "parent_id": None,
                "argsrepr": repr((event_id,)),
                "kwargsrepr": "{}",
                "origin": self.origin,
                "ignore_result": True,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": self.reply_to,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": self.queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return json.dumps(message)

    def publish(self, event_ids: list[str]) -> None:
        """All of them in one LPUSH: consumed oldest first (the worker pops the other end)."""
        if event_ids:
            self.client.lpush(self.key, *(self.message(event_id) for event_id in event_ids))


def _body(message: Mapping[str, Any]) -> Any:
    try:
        return json.loads(base64.b64decode(message.get("body") or ""))
    except ValueError:
        return message.get("body")


_CELERYS = "Celery's"  # "only in ours", "only in Celery's" (not "ours's")


def differences(ours: Mapping[str, Any], celerys: Mapping[str, Any]) -> list[str]:
    """Where our message for an event differs from Celery's for the same event (empty: they agree).

    Every key and value is compared (the body decoded) except the per-message ones: ids, origin, reply_to.
    """
    found: list[str] = []
    for part in sorted(ours.keys() | celerys.keys()):
        if part not in ours or part not in celerys:
            found.append(f"{part}: only in {'ours' if part in ours else _CELERYS}")
        elif part == "body":
            if _body(ours) != _body(celerys):
                found.append(f"body: ours {_body(ours)!r}, Celery's {_body(celerys)!r}")
        elif part in _PER_MESSAGE:
            mine, theirs = ours[part], celerys[part]
            for name in sorted(mine.keys() | theirs.keys()):
                if name not in mine or name not in theirs:
                    found.append(f"{part}.{name}: only in {'ours' if name in mine else _CELERYS}")
                elif name not in _PER_MESSAGE[part] and mine[name] != theirs[name]:
                    found.append(f"{part}.{name}: ours {mine[name]!r}, Celery's {theirs[name]!r}")
        elif ours[part] != celerys[part]:
            found.append(f"{part}: ours {ours[part]!r}, Celery's {celerys[part]!r}")
    return found


def check_against_celery(celery: Celery, publisher: BatchPublisher) -> list[str]:
    """Publish one `process_event` with Celery's `send_task` to a scratch queue next to the publisher's,
    read it back, and compare it with the publisher's message (empty: they agree).

    Nothing is declared (no binding keys) and the scratch list is deleted; no worker consumes it.
    """
    scratch = publisher.for_queue(f"{publisher.queue}.format-check.{uuid.uuid4().hex[:12]}")
    probe = f"format-check-{uuid.uuid4()}"
    try:
        limits: dict[str, Any] = {"time_limit": scratch.timelimit[0], "soft_time_limit": scratch.timelimit[1]}
        celery.send_task(
            TASK_NAME, args=(probe,), queue=scratch.queue, declare=[], ignore_result=True, **limits
        )
        raw = scratch.client.rpop(scratch.key)
    finally:
        scratch.client.delete(scratch.key)
    if raw is None:
        return [f"Celery's message is not in {scratch.key!r}, the list workers.publish pushes to"]
    return differences(json.loads(scratch.message(probe)), json.loads(text(raw)))


class Publisher:
    """Hands event ids to Celery as `process_event` tasks: the relay's, the sweeper's and a retry's hand-off.

    By the task's name (`send_task`): publishing needs the Celery app, not the task module. With
    `fast` the relay's batches go through `BatchPublisher` (one LPUSH a batch); a countdown always goes
    through Celery, which writes its ETA.
    """

    def __init__(
        self,
        celery: Celery,
        broker: redis.Redis,
        *,
        queue: str,
        key_prefix: str,
        time_limit: float,
        soft_time_limit: float,
        fast: bool,
    ) -> None:
        self.celery = celery
        self.broker = broker
        self.queue = queue
        # What apply_async on the task would write: its limits, and no result to store.
        self.options: dict[str, Any] = {
            "time_limit": time_limit,
            "soft_time_limit": soft_time_limit,
            "ignore_result": True,
        }
        self.batch = BatchPublisher(
            broker, queue=queue, key_prefix=key_prefix, time_limit=time_limit, soft_time_limit=soft_time_limit
        )
        self.fast = fast

    @classmethod
    def for_settings(cls, celery: Celery, settings: WorkerSettings) -> Publisher:
        """The publisher to the broker, queue and key prefix of `settings`, on a broker client of its own."""
        return cls(
            celery,
            connect(settings.broker_url),
            queue=settings.queue,
            key_prefix=settings.broker_key_prefix,
            time_limit=settings.task_time_limit,
            soft_time_limit=settings.task_soft_time_limit,
            fast=settings.relay_fast_publish,
        )

    def publish(self, event_ids: list[str]) -> None:
        """One `process_event` per id, to run now."""
        if not event_ids:
            return
        if self.fast:
            self.batch.publish(event_ids)
            return
        with self.celery.producer_or_acquire() as producer:
            for event_id in event_ids:
                self.celery.send_task(
                    TASK_NAME, args=(event_id,), queue=self.queue, producer=producer, **self.options
                )

    def enqueue(self, event_id: str, countdown: float) -> None:
        """One `process_event`, to run after `countdown` seconds (a Celery countdown)."""
        self.celery.send_task(
            TASK_NAME, args=(event_id,), countdown=max(0.0, countdown), queue=self.queue, **self.options
        )

    def depth(self) -> int:
        """Messages waiting in the Celery queue (what the relay's high-water mark is compared with)."""
        return int(self.broker.llen(self.batch.key))

    def close(self) -> None:
        self.broker.close()
