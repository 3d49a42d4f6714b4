"""What the start-up format check tells an operator after an upgrade: `differences` names, in plain words,
every way Celery's message (read back from the broker) moved away from ours (a part or header only on one
side, a changed header, a body no longer base64 JSON) and ignores what differs between any two messages; and
an empty batch publishes nothing, with either publisher."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from eventstore.client import connect
from eventstore.codec import text
from workers.app import publishing_app
from workers.publish import BatchPublisher, Publisher, differences
from workers.settings import WorkerSettings


@pytest.fixture
def publishers(settings: WorkerSettings) -> Iterator[tuple[Publisher, Publisher]]:
    """The process's two ways to publish (batch, apply_async), on the test's broker prefix and queue."""
    celery = publishing_app(settings)
    made = [
        Publisher(
            celery,
            connect(settings.broker_url),
            queue=settings.queue,
            key_prefix=settings.broker_key_prefix,
            time_limit=settings.task_time_limit,
            soft_time_limit=settings.task_soft_time_limit,
            fast=fast,
        )
        for fast in (True, False)
    ]
    yield made[0], made[1]
    for publisher in made:
        publisher.close()
    celery.close()


def _celerys_message(client: redis.Redis, publisher: Publisher, event_id: str) -> dict[str, Any]:
    publisher.publish([event_id])
    message: dict[str, Any] = json.loads(text(client.rpop(publisher.batch.key) or b"{}"))
    return message


def test_two_messages_for_one_event_differ_only_in_their_ids(
    client: redis.Redis, publishers: tuple[Publisher, Publisher]
) -> None:
    batch, celery = publishers
    theirs = _celerys_message(client, celery, "event-1")
    ours = json.loads(batch.batch.message("event-1"))
    assert ours["headers"]["id"] != theirs["headers"]["id"]
    assert differences(ours, theirs) == []


def test_each_way_celerys_message_moved_away_is_named(
    client: redis.Redis, publishers: tuple[Publisher, Publisher]
) -> None:
    batch, celery = publishers
    theirs = _celerys_message(client, celery, "event-1")
    ours = json.loads(batch.batch.message("event-1"))
    # What a Celery or kombu upgrade could do to the message it writes:
    del theirs["headers"]["stamps"]  # a header dropped
    theirs["headers"]["replaced_task_nesting"] = 1  # a header's value changed
    theirs["headers"]["id"] = "another-id"  # per message anyway: not a difference
    theirs["headers"]["trace"] = {"span": 1}  # a header added
    theirs["tracing"] = True  # a part added
    del theirs["content-encoding"]  # a part dropped
    theirs["content-type"] = "application/x-msgpack"  # a part's value changed
    theirs["body"] = "[[event-1], {}]"  # a body no longer base64 JSON
    embed = "{'callbacks': None, 'errbacks': None, 'chain': None, 'chord': None}"
    assert differences(ours, theirs) == [
        f"body: ours [['event-1'], {{}}, {embed}], Celery's '[[event-1], {{}}]'",
        "content-encoding: only in ours",
        "content-type: ours 'application/json', Celery's 'application/x-msgpack'",
        "headers.replaced_task_nesting: ours 0, Celery's 1",
        "headers.stamps: only in ours",
        "headers.trace: only in Celery's",
        "tracing: only in Celery's",
    ]


def test_an_empty_batch_publishes_nothing(
    client: redis.Redis, key_prefix: str, publishers: tuple[Publisher, Publisher], settings: WorkerSettings
) -> None:
    for publisher in publishers:
        publisher.publish([])
    BatchPublisher(
        client, queue=settings.queue, key_prefix=key_prefix, time_limit=2.0, soft_time_limit=1.0
    ).publish([])
    assert list(client.scan_iter(match=f"{key_prefix}*")) == []
    assert all(publisher.depth() == 0 for publisher in publishers)
