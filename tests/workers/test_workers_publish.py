"""The batch publisher writes exactly the message Celery's apply_async writes."""

from __future__ import annotations

import base64
import json

import redis

from workers.codec import text
from workers.publish import BatchPublisher
from workers.settings import WorkerSettings
from workers.testing import publisher


def test_batch_messages_match_celerys_own(client: redis.Redis, settings: WorkerSettings) -> None:
    app = publisher(settings)
    app.send_task(
        "workers.process_event", args=("event-1",), queue=settings.queue, ignore_result=True,
        time_limit=int(settings.task_time_limit), soft_time_limit=int(settings.task_soft_time_limit),
    )  # fmt: skip
    key = settings.broker_key_prefix + settings.queue
    celery_message = json.loads(text(client.rpop(key) or b"{}"))
    batch = BatchPublisher(
        client,
        queue=settings.queue,
        key_prefix=settings.broker_key_prefix,
        time_limit=settings.task_time_limit,
        soft_time_limit=settings.task_soft_time_limit,
    )
    batch.publish(["event-1", "event-2"])
    ours = json.loads(text(client.rpop(key) or b"{}"))
    assert (
        json.loads(text(client.rpop(key) or b"{}"))["headers"]["argsrepr"] == "('event-2',)"
    )  # oldest first
    # Same shape everywhere; only the ids (task, delivery tag), the origin and reply_to differ.
    assert ours.keys() == celery_message.keys()
    assert ours["headers"].keys() == celery_message["headers"].keys()
    assert ours["properties"].keys() == celery_message["properties"].keys()
    for name in ("task", "lang", "retries", "argsrepr", "kwargsrepr", "timelimit", "ignore_result", "eta"):
        assert ours["headers"][name] == celery_message["headers"][name], name
    for name in ("delivery_mode", "delivery_info", "priority", "body_encoding"):
        assert ours["properties"][name] == celery_message["properties"][name], name
    assert base64.b64decode(ours["body"]) == base64.b64decode(celery_message["body"])
    assert ours["headers"]["root_id"] == ours["headers"]["id"] == ours["properties"]["correlation_id"]
