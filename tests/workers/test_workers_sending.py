"""`workers.sending`: one task sent to the workers' queue from a process that is not a worker."""

from __future__ import annotations

import json

import redis
from structlog.testing import capture_logs

from workers.admin_api import _asker
from workers.sending import send_task
from workers.settings import WorkerSettings


def test_a_task_sent_is_on_the_queue(client: redis.Redis, key_prefix: str, settings: WorkerSettings) -> None:
    send_task(settings, "smartcar.lifecycle.drain", reason="test")
    queued = client.lrange(f"{key_prefix}{settings.queue}", 0, -1)
    assert len(queued) == 1
    message = json.loads(queued[0])
    assert message["headers"]["task"] == "smartcar.lifecycle.drain"


def test_without_a_broker_the_admin_api_says_so_and_goes_on(settings: WorkerSettings) -> None:
    """`BrokerUnavailableError` names the broker; the admin API's replay start logs it and answers (beat
    starts the job). One try: kombu's connection retries take about 12 s."""
    settings = settings.model_copy(update={"celery_broker_url": "redis://127.0.0.1:9/0"})  # nothing there
    with capture_logs() as logs:
        assert _asker(settings)() is False
    assert [(line["event"], line["log_level"]) for line in logs] == [("replay_task_not_sent", "warning")]
    assert logs[0]["problem"].startswith("the broker at 127.0.0.1:9/0 did not answer (")
