"""`smartcar-events stats` after a scripted scenario (events accepted and ended through the store's own
transitions), against real Redis: every figure checked, as JSON and as tables, and once as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from eventstore.events import EventStore, accept
from eventstore.keys import KeySpace
from eventstore.pauses import Pauses
from eventstore.record import history_entry
from smartcar_core.events import parse_envelope
from testsupport.deliveries import delivery_body
from testsupport.workers import settings_environment
from workers.cli import app
from workers.settings import WorkerSettings
from workers.stats import gather_stats

runner = CliRunner()
ASLEEP = {"class": "VehicleStateError", "type": "VEHICLE_STATE", "code": "ASLEEP", "status": 409}
PERMISSION = {"class": "PermissionError", "type": "PERMISSION", "code": None, "status": 403}
SPANS = [0.2, 0.4, 0.6, 0.8, 1.0, 3.0]  # receipt to done of the six done events


@pytest.fixture
def env(settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    environment = settings_environment(settings)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


def _event(store: EventStore, *, received: float, end: str | None, at: float = 0.0, **how: Any) -> str:
    raw = delivery_body(how.pop("vehicle", "v1"), "u1", "wh", error_event=how.pop("error_event", False))
    envelope = parse_envelope(raw)
    assert accept(store.redis, store.keys, envelope, raw, received_at=received)
    if end is None:
        return envelope.event_id
    begun = store.begin(envelope.event_id, lease=30, now=received + 0.01)
    assert begun.record is not None
    entry = history_entry(attempt=1, outcome=end, error=how.get("error"), now=at)
    if end == "done":
        assert store.done(begun.record, {}, now=at)
    elif end == "retry":
        assert store.retry(begun.record, entry, delay=600, park=True, results={}, now=at)
    else:
        assert store.dead_letter(begun.record, entry, reason=how["reason"], results={}, now=at)
    return envelope.event_id


@pytest.fixture
def scenario(client: redis.Redis, key_prefix: str, env: dict[str, str]) -> dict[str, Any]:
    """Six done (at known spans, in three minutes), two dead letters, one retrying, two waiting."""
    store = EventStore(client, KeySpace(key_prefix), retention=3600)
    now = time.time()
    done = [
        _event(store, received=now - 600 * (i // 2) - 100 - span, end="done", at=now - 600 * (i // 2) - 100)
        for i, span in enumerate(SPANS)
    ]
    asleep = _event(
        store, received=now - 400, end="dead", at=now - 300, error=ASLEEP, reason="gave up after 5 attempts"
    )
    permission = _event(
        store,
        received=now - 250,
        end="dead",
        at=now - 200,
        error=PERMISSION,
        reason="not retryable: PERMISSION",
        error_event=True,
    )
    retrying = _event(store, received=now - 100, end="retry", at=now - 90, error=ASLEEP)
    client.delete(store.keys.inbox)  # as if a relay had claimed those that ran
    waiting = [_event(store, received=now - 42, end=None), _event(store, received=now - 5, end=None)]
    return {"now": now, "done": done, "dead": [asleep, permission], "retrying": retrying, "waiting": waiting}


def test_stats_counts_every_figure_of_the_scenario(scenario: dict[str, Any], env: dict[str, str]) -> None:
    result = runner.invoke(app, ["stats", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["statuses"] == {
        "received": 2, "queued": 0, "processing": 0, "retrying": 1, "done": 6, "failed": 2, "replayed": 0,
    }  # fmt: skip
    assert found["types"] == {"VEHICLE_STATE": 8, "VEHICLE_ERROR": 1, "other": 0}  # claimed ones
    backlog = found["backlog"]
    assert backlog["inbox_depth"] == 2
    assert backlog["inbox_oldest_age_seconds"] == pytest.approx(time.time() - (scenario["now"] - 42), abs=2)
    assert (backlog["scheduled_retries"], backlog["dead_letters"], backlog["pending"]) == (1, 2, 3)
    assert found["dead_by_error"] == {"VEHICLE_STATE:ASLEEP": 1, "PERMISSION": 1}
    assert found["dead_by_reason"] == {"gave up after 5 attempts": 1, "not retryable: PERMISSION": 1}
    assert found["dead_reasons_read"] == 2
    minutes = found["per_minute"]
    assert len(minutes) == 60
    assert sum(row["done"] for row in minutes) == 6
    assert sum(row["failed"] for row in minutes) == 2
    assert sorted(row["done"] for row in minutes if row["done"]) == [2, 2, 2]  # three minutes, 10 apart
    assert minutes[-1]["minute"] <= time.time() < minutes[-1]["minute"] + 60
    latency = found["receipt_to_done"]
    assert latency["events"] == 6
    assert latency["p50_seconds"] == pytest.approx(0.6, abs=0.01)  # the 3rd of 6, nearest rank
    assert latency["p99_seconds"] == pytest.approx(3.0, abs=0.01)
    assert found["pause"] == {"global": None, "vehicles": {}}


def test_stats_as_tables_and_with_pauses(
    scenario: dict[str, Any], client: redis.Redis, key_prefix: str, env: dict[str, str]
) -> None:
    pauses = Pauses(client, KeySpace(key_prefix))
    pauses.pause(reason="upgrade")
    pauses.pause_vehicles(["v9"])
    result = runner.invoke(app, ["stats"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for shown in (
        "by status",
        "VEHICLE_STATE:ASLEEP",
        "gave up after 5 attempts",
        "p99_seconds",
        "3000 ms",
        "upgrade",
        "v9",
    ):
        assert shown in result.stdout, shown


def test_stats_of_an_empty_store_and_the_sample_bound(
    client: redis.Redis, key_prefix: str, env: dict[str, str]
) -> None:
    empty = gather_stats(client, KeySpace(key_prefix), now=time.time())
    assert empty.dead_by_error == {}
    assert empty.receipt_to_done == {"events": 0, "p50_seconds": None, "p99_seconds": None}
    result = runner.invoke(app, ["stats"])
    assert result.exit_code == 0, result.output
    assert "none" in result.stdout


def test_stats_reads_no_more_records_than_its_sample(
    scenario: dict[str, Any], client: redis.Redis, key_prefix: str
) -> None:
    sampled = gather_stats(client, KeySpace(key_prefix), now=time.time(), sample=1)
    assert sampled.dead_reasons_read == 1
    assert sum(sampled.dead_by_reason.values()) == 1
    assert sampled.receipt_to_done["events"] == 1  # the newest done: 0.2 s
    assert sampled.statuses["done"] == 6  # counts come from the indexes, not the sample


def test_stats_and_pause_as_real_processes(scenario: dict[str, Any], env: dict[str, str]) -> None:
    command = Path(sys.executable).with_name("smartcar-events")
    environment = {**os.environ, **env}

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own entry point
            [str(command), *arguments],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    paused = run("pause", "--reason", "by a test")
    assert paused.returncode == 0, paused.stderr
    shown = run("stats", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["pause"]["global"]["reason"] == "by a test"
    bad = run("resume", "--rate", "0")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["--rate: a rate must be more than 0 events a second, not 0"]
    resumed = run("resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout


def test_settings_that_cannot_work_are_one_line_and_78(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKEN_ENCRYPTION_KEY")
    for command in (["stats"], ["pause"], ["resume"], ["purge", "--before", "30d"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 78, command
        assert "TOKEN_ENCRYPTION_KEY" in result.stderr


def test_pause_and_resume_refuse_what_is_not_a_vehicle_id_and_pause_nothing(
    env: dict[str, str], redis_url: str
) -> None:
    for command in (["pause", "--vehicle", ""], ["resume", "--vehicle", "a b"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, command
        assert result.stderr.strip().startswith("not a vehicle id:")
    with redis.Redis.from_url(redis_url) as client:
        assert client.exists(KeySpace(env["EVENT_KEY_PREFIX"]).paused_vehicles) == 0


def test_stats_says_in_one_line_that_redis_does_not_answer(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    result = runner.invoke(app, ["stats"])
    assert result.exit_code == 78
    assert "did not answer" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
