"""The worker's start-up check of its event store, with real worker processes: an event-store Redis that does
not answer (while the broker does) is refused in one line, exit 78; a durable one (append-only file) is
accepted in production without a word, and the worker consumes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from testsupport import free_port
from testsupport.redis_server import RedisServer
from testsupport.workers import WorkerLauncher, refused_in_one_line


def test_an_event_store_that_does_not_answer_is_refused_in_one_line(
    launch: Callable[..., WorkerLauncher],
) -> None:
    launcher = launch()
    nowhere = f"redis://127.0.0.1:{free_port()}/13"
    result = launcher.run_to_exit(
        env={"REDIS_URL": nowhere, "CELERY_BROKER_URL": launcher.settings.redis_url}
    )
    address = nowhere.removeprefix("redis://")
    assert f"the event store's Redis at {address} did not answer" in refused_in_one_line(result)


def test_production_starts_on_a_durable_redis_without_a_warning(
    launch: Callable[..., WorkerLauncher], tmp_path: Path
) -> None:
    with RedisServer(tmp_path) as server:  # an append-only file, fsynced every second
        launcher = launch(redis_url=server.url(13))
        worker = launcher.start(
            "durable", concurrency=1, env={"LOG_FORMAT": "json", "SMARTCAR_ENV": "production"}
        )  # answered a ping: it consumes
        worker.stop()
    lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    assert "redis_not_durable" not in {line["event"] for line in lines}
    assert "refuse to start" not in worker.output()
