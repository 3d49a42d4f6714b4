"""Redis (the broker and the event store) restarted under a running worker: it consumes again within
seconds of Redis coming back, and says so at WARNING, not with ERROR or CRITICAL lines."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from testsupport import wait_until
from testsupport.redis_server import RedisServer
from testsupport.workers import WorkerLauncher, accept_event, event_status

Launch = Callable[..., WorkerLauncher]
RESUME_WITHIN = 5.0
OUTAGE = 13.0  # Celery alone would try again 20 s after the loss: 7 s after Redis is back
# Celery's and kombu's loud lines for what an outage makes expected (kombu #582/#970 and the rest).
LOUD = re.compile(r"\b(ERROR|CRITICAL)\b|\"level\": \"(error|critical)\"")


@pytest.mark.parametrize("how", ["shutdown", "kill"])
def test_a_worker_consumes_again_within_seconds_of_redis_coming_back(
    launch: Launch,
    tmp_path: Path,
    *,
    module_prefix: str,
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
    how: str,
) -> None:
    with RedisServer(tmp_path) as server:
        prefix = f"{module_prefix}outage-{how}:"
        launcher = launch(redis_url=server.url(), event_key_prefix=prefix, queue=f"{prefix}queue")
        worker = launcher.start("steady", concurrency=4)
        client = launcher.client

        def done(event_id: str) -> bool:
            try:
                return event_status(client, prefix, event_id) == "done"
            except redis.ConnectionError:
                return False

        before = accept_event(client, prefix, state_event(car(), {"charge-ischarging": True}))
        wait_until(lambda: done(before), timeout=10, what="an event done before the outage")
        server.shutdown() if how == "shutdown" else server.kill()
        wait_until(lambda: "Connection to broker lost" in worker.output(), timeout=10, what="the loss seen")
        time.sleep(OUTAGE)  # the outage itself: Redis stays away this long
        server.start()
        back = time.monotonic()
        after = accept_event(client, prefix, state_event(car(), {"charge-ischarging": True}))
        wait_until(lambda: done(after), timeout=30, interval=0.05, what="an event done after the outage")
        resumed = time.monotonic() - back
        assert resumed < RESUME_WITHIN, f"consuming again {resumed:.1f} s after Redis came back"
        assert worker.alive()
        loud = [line for line in worker.output().splitlines() if LOUD.search(line)]
        assert loud == [], "\n".join(loud[:20])
        launcher.close()
