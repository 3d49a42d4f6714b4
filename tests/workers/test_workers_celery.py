"""Real Celery worker processes on real Redis: relay, processing, start-up refusals, beat, kills."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from eventstore.keys import KeySpace
from testsupport import free_port, wait_until
from testsupport.redis_server import RedisServer
from testsupport.workers import (
    WorkerLauncher,
    accept_event,
    event_status,
    refused_in_one_line,
)


@pytest.fixture(scope="module")
def cluster(launch: Callable[..., WorkerLauncher]) -> WorkerLauncher:
    launcher = launch()
    launcher.start("main", concurrency=8)
    return launcher


def test_events_accepted_like_the_receiver_does_are_processed(
    cluster: WorkerLauncher,
    module_prefix: str,
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
) -> None:
    client = cluster.client
    vehicle = car()
    ids = [
        accept_event(
            client, module_prefix, state_event(vehicle, {"tractionbattery-stateofcharge": soc}, oem_ms=soc)
        )
        for soc in (10, 30, 20)
    ]
    wait_until(
        lambda: all(event_status(client, module_prefix, e) == "done" for e in ids), what="every event done"
    )
    signals = client.hget(
        KeySpace(module_prefix).vehicle_signals(vehicle["id"]), "tractionbattery-stateofcharge"
    )
    assert signals is not None
    assert b'"value":30' in signals


def _refusal(
    cluster: WorkerLauncher, *, program: str = "worker", **env: str | None
) -> subprocess.CompletedProcess[str]:
    return cluster.run_to_exit(program, env=env, timeout=30)


@pytest.mark.parametrize("program", ["worker", "beat"])
@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "TOKEN_ENCRYPTION_KEY is not set"),
        ("", "TOKEN_ENCRYPTION_KEY is empty"),
        ("not-a-key", "TOKEN_ENCRYPTION_KEY key #1 is not a Fernet key"),
    ],
)
def test_a_worker_or_beat_without_a_usable_encryption_key_refuses_in_one_line(
    cluster: WorkerLauncher, program: str, value: str | None, words: str
) -> None:
    """Celery reads its configuration while it parses its command line, before any start-up hook: a
    settings error there must still end as the one line of the start-up check, not a traceback."""
    line = refused_in_one_line(_refusal(cluster, program=program, TOKEN_ENCRYPTION_KEY=value))
    assert words in line


def test_a_worker_with_a_short_visibility_timeout_refuses_to_start(cluster: WorkerLauncher) -> None:
    line = refused_in_one_line(_refusal(cluster, WORKERS_VISIBILITY_TIMEOUT="10"))
    assert "must exceed the longest countdown plus the hard time limit" in line
    assert "WORKERS_VISIBILITY_TIMEOUT" in line


@pytest.mark.parametrize("program", ["worker", "beat"])
def test_an_unreachable_broker_is_logged_each_attempt_then_refused_in_bounded_time(
    cluster: WorkerLauncher, program: str
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/13"
    started = time.monotonic()
    result = _refusal(
        cluster, program=program, REDIS_URL=nowhere, WORKERS_STARTUP_BROKER_WAIT="2", LOG_FORMAT="json"
    )
    assert time.monotonic() - started < 25  # kombu's own patience would be about 45 minutes of silence
    line = refused_in_one_line(result)
    assert "did not answer within 2 s (WORKERS_STARTUP_BROKER_WAIT)" in line
    attempts = [json.loads(text) for text in result.stderr.splitlines() if '"broker_unavailable"' in text]
    assert len(attempts) >= 2
    assert {attempt["broker"] for attempt in attempts} == {nowhere.removeprefix("redis://")}


def test_production_refuses_a_redis_that_would_lose_events(cluster: WorkerLauncher, tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server, redis.Redis.from_url(server.url()) as client:
        client.config_set("appendonly", "no")
        result = _refusal(cluster, REDIS_URL=server.url(13), SMARTCAR_ENV="production")
    line = refused_in_one_line(result)
    assert f"Redis at 127.0.0.1:{server.port}/13 would lose events (SMARTCAR_ENV=production)" in line
    assert "appendonly yes" in line


def test_development_starts_on_such_a_redis_and_says_what_is_wrong(
    launch: Callable[..., WorkerLauncher], tmp_path: Path
) -> None:
    with RedisServer(tmp_path) as server, redis.Redis.from_url(server.url()) as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
        launcher = launch(redis_url=server.url(13))
        worker = launcher.start("not-durable", concurrency=1, env={"LOG_FORMAT": "json"})
        worker.stop()
    warnings = [json.loads(line) for line in worker.output().splitlines() if '"redis_not_durable"' in line]
    assert len(warnings) == 1
    assert "allkeys-lru" in warnings[0]["problems"][0]


def test_beat_runs_the_sweeper_which_recovers_a_lost_hand_off(
    launch: Callable[..., WorkerLauncher],
    cluster: WorkerLauncher,
    module_prefix: str,
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
) -> None:
    client: redis.Redis = cluster.client
    # A relay popped this id and died before publishing: it is queued, with no task anywhere.
    body = state_event(car(), {"charge-ischarging": True})
    event_id = body["eventId"]
    client.eval("return 1", 0)  # keep the connection warm
    cluster.client.lpush(f"{module_prefix}hold", "x")
    accept_event(client, module_prefix, body, received_at=0.0)
    client.lrem(KeySpace(module_prefix).inbox, 0, event_id)
    client.hset(KeySpace(module_prefix).event(event_id), "status", "queued")
    beat = cluster.start_beat(env={"WORKERS_SWEEP_INTERVAL": "0.5", "WORKERS_SWEEP_AFTER": "1"})
    try:
        wait_until(
            lambda: event_status(client, module_prefix, event_id) == "done", what="the sweeper to recover it"
        )
    finally:
        beat.stop()
