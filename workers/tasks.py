"""The Celery tasks: process_event, the sweeper, the token refresher, a ping; and the relay's publisher."""

from __future__ import annotations

import time
from typing import Any

import structlog
from celery import Task

from eventstore.keys import KeySpace
from workers.app import app
from workers.lifecycle import EventStore
from workers.process import process_event as run_event
from workers.publish import BatchPublisher
from workers.relay import Relay, RelayThread
from workers.runtime import get_runtime, redis_client
from workers.settings import WorkerSettings, get_settings
from workers.sweeper import sweep as sweep_events
from workers.tokens import TokenError, TokenRefreshBusyError

log = structlog.get_logger("workers.tasks")
_PING_TTL = 300
_BEAT_PERIOD = 60.0


@app.task(name="workers.process_event", ignore_result=True, bind=True)
def process_event(self: Task[Any, Any], event_id: str) -> str:
    """Run one stored event (see `workers.process`). Returns the outcome's name (for logs)."""
    request = self.request
    return run_event(get_runtime(), event_id, task_id=request.id, worker=request.hostname).outcome.value


@app.task(name="workers.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    runtime = get_runtime()
    settings = runtime.settings
    report = sweep_events(runtime.store, after=settings.sweep_after, batch=settings.sweep_batch)
    publish(report.requeue)
    if report.requeue:
        log.warning("sweeper re-enqueued events", count=len(report.requeue))
    return {"requeued": len(report.requeue), "backlog": report.backlog, "dropped": report.dropped}


@app.task(name="workers.refresh_tokens", ignore_result=True)
def refresh_tokens() -> dict[str, int]:
    """Refresh the grants whose access token expires within the refresh margin (plus one beat period)."""
    runtime = get_runtime()
    tokens = runtime.tokens
    refreshed = failed = 0
    for grant in tokens.expiring(tokens.refresh_margin + _BEAT_PERIOD):
        try:
            refreshed += tokens.refresh_if_expiring(grant, now=time.time() + _BEAT_PERIOD)
        except TokenRefreshBusyError:
            continue  # another worker is refreshing it right now
        except TokenError:
            failed += 1
            log.warning("token refresh failed; the user must reconnect", grant=grant)
            runtime.redis.zadd(
                tokens.expiry_key, {grant: time.time() + 3600}, xx=True
            )  # unless deleted meanwhile
        except Exception:  # one grant's failure must not stop the others
            failed += 1
            log.warning("token refresh failed; will try again", grant=grant, exc_info=True)
    return {"refreshed": refreshed, "failed": failed}


@app.task(name="workers.ping", ignore_result=True)
def ping(token: str) -> None:
    """Proof that a worker consumes the queue: sets `{p}ping:{token}`."""
    runtime = get_runtime()
    runtime.redis.set(f"{runtime.keys.prefix}ping:{token}", "1", ex=_PING_TTL)


def enqueue(event_id: str, countdown: float) -> None:
    process_event.apply_async((event_id,), countdown=max(0.0, countdown), queue=get_settings().queue)


def publish(event_ids: list[str]) -> None:
    """Publish one process_event per id (the relay's and the sweeper's hand-off)."""
    if not event_ids:
        return
    settings = get_settings()
    if settings.relay_fast_publish:
        batch_publisher(settings).publish(event_ids)
        return
    with app.producer_or_acquire() as producer:
        for event_id in event_ids:
            process_event.apply_async((event_id,), queue=settings.queue, producer=producer)


_publishers: dict[int, BatchPublisher] = {}


def batch_publisher(settings: WorkerSettings) -> BatchPublisher:
    """The process's publisher for `settings` (one Redis client for the broker)."""
    publisher = _publishers.get(id(settings))
    if publisher is None:
        publisher = _publishers[id(settings)] = BatchPublisher(
            redis_client(settings.broker_url),
            queue=settings.queue,
            key_prefix=settings.broker_key_prefix,
            time_limit=settings.task_time_limit,
            soft_time_limit=settings.task_soft_time_limit,
        )
    return publisher


def queue_depth(settings: WorkerSettings) -> Any:
    broker = redis_client(settings.broker_url)
    key = settings.broker_key_prefix + settings.queue

    def depth() -> int:
        return int(broker.llen(key))

    return depth


def build_relay(settings: WorkerSettings) -> RelayThread:
    client = redis_client(settings.redis_url)
    store = EventStore(client, KeySpace(settings.event_key_prefix), retention=settings.done_retention)
    relay = Relay(
        store,
        publish,
        queue_depth(settings),
        batch=settings.relay_batch,
        high_water=settings.relay_high_water,
        idle_wait=settings.relay_idle_wait,
        linger=settings.relay_linger,
    )
    return RelayThread(relay)
