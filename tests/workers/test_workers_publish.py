"""The batch publisher writes exactly the message Celery's apply_async writes."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from eventstore.codec import text
from testsupport.workers import publisher
from workers.app import publishing_app
from workers.publish import BatchPublisher, check_against_celery, differences
from workers.settings import WorkerSettings


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


def _publisher(
    client: redis.Redis, settings: WorkerSettings, cls: type[BatchPublisher] = BatchPublisher
) -> Any:
    return cls(
        client,
        queue=settings.queue,
        key_prefix=settings.broker_key_prefix,
        time_limit=settings.task_time_limit,
        soft_time_limit=settings.task_soft_time_limit,
    )


def test_the_start_up_check_agrees_with_celery_and_leaves_nothing_behind(
    client: redis.Redis, settings: WorkerSettings, key_prefix: str
) -> None:
    celery = publishing_app(settings)
    try:
        assert check_against_celery(celery, _publisher(client, settings)) == []
    finally:
        celery.close()
    assert list(client.scan_iter(match=f"{key_prefix}*")) == []


class _BeforeAnUpgrade(BatchPublisher):
    """Our message as an older Celery wrote it: no `stamps` header, another priority."""

    def message(self, event_id: str) -> str:
        message = json.loads(super().message(event_id))
        del message["headers"]["stamps"]
        message["properties"]["priority"] = None
        return json.dumps(message)


def test_the_start_up_check_names_what_an_upgrade_changed(
    client: redis.Redis, settings: WorkerSettings, key_prefix: str
) -> None:
    celery = publishing_app(settings)
    try:
        found = check_against_celery(celery, _publisher(client, settings, _BeforeAnUpgrade))
        assert list(client.scan_iter(match=f"{key_prefix}*")) == []
        # Kombu storing the queue under another key: Celery's message is where ours is not.
        elsewhere = _publisher(client, settings.model_copy(update={"broker_key_prefix": f"{key_prefix}x:"}))
        lost = check_against_celery(celery, elsewhere)
    finally:
        celery.close()
    assert found == ["headers.stamps: only in Celery's", "properties.priority: ours None, Celery's 0"]
    assert len(lost) == 1
    assert f"is not in '{key_prefix}x:{settings.queue}.format-check." in lost[0]


def test_differences_compare_the_decoded_body_and_skip_per_message_ids() -> None:
    def message(body: bytes, task_id: str) -> dict[str, Any]:
        return {"body": base64.b64encode(body).decode(), "headers": {"id": task_id}, "properties": {}}

    assert differences(message(b'[["e"], {}]', "1"), message(b'[["e"],{}]', "2")) == []
    assert differences(message(b'[["e"], {}]', "1"), message(b'[["f"], {}]', "1")) == [
        "body: ours [['e'], {}], Celery's [['f'], {}]"
    ]
