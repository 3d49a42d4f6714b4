"""`smartcar-events purge`: the plan first (counts, nothing deleted), then with --yes the old done and failed
events deleted by the sweeper's own trim, and the indexes compared with a scan of the records after."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from eventstore.codec import text, texts
from eventstore.events import EventStore, accept
from eventstore.keys import KeySpace
from eventstore.record import history_entry
from smartcar_core.events import parse_envelope
from testsupport.deliveries import delivery_body
from testsupport.workers import settings_environment
from workers.cli import app
from workers.settings import WorkerSettings

runner = CliRunner()
DAY = 86400.0
ASLEEP = {"class": "VehicleStateError", "type": "VEHICLE_STATE", "code": "ASLEEP", "status": 409}


@pytest.fixture
def env(settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)


def _event(store: EventStore, end: str | None, at: float, vehicle: str) -> str:
    raw = delivery_body(vehicle, f"u-{vehicle}", "wh")
    envelope = parse_envelope(raw)
    assert accept(store.redis, store.keys, envelope, raw, received_at=at - 1)
    store.redis.lrem(store.keys.inbox, 1, envelope.event_id)
    begun = store.begin(envelope.event_id, lease=30, now=at - 0.5)
    assert begun.record is not None
    if end == "done":
        assert store.done(begun.record, {}, now=at)
    elif end == "failed":
        entry = history_entry(attempt=1, outcome="failed", error=ASLEEP, now=at)
        assert store.dead_letter(begun.record, entry, reason="gave up", results={}, now=at)
    return envelope.event_id


@pytest.fixture
def aged(client: redis.Redis, key_prefix: str, env: None) -> dict[str, list[str]]:
    store = EventStore(client, KeySpace(key_prefix), retention=3600)
    now = time.time()
    return {
        "old_done": [_event(store, "done", now - 40 * DAY - i, f"v{i}") for i in range(3)],
        "new_done": [_event(store, "done", now - 10 * DAY, "v1")],
        "old_failed": [_event(store, "failed", now - 45 * DAY - i, f"v{i}") for i in range(2)],
        "new_failed": [_event(store, "failed", now - DAY, "v2")],
        "running": [_event(store, None, now - 50 * DAY, "v1")],  # processing: never purged, however old
    }


def _scan(client: redis.Redis, keys: KeySpace) -> tuple[set[str], dict[str, set[str]]]:
    """Every record (by a scan of the prefix, which purge never does) and every index's members."""
    records = {
        text(key).removeprefix(keys.event(""))
        for key in client.scan_iter(match=f"{keys.event('')}*", count=1000)
    }
    indexes = {
        text(key): set(texts(client.zrange(key, 0, -1)))
        for key in client.scan_iter(match=f"{keys.prefix}ix:*", count=1000)
    }
    return records, indexes


def _consistent(client: redis.Redis, keys: KeySpace) -> set[str]:
    records, indexes = _scan(client, keys)
    for key, members in indexes.items():
        assert members <= records, f"{key} lists ids without a record: {members - records}"
    for event_id in records:
        status = text(client.hget(keys.event(event_id), "status") or b"")
        assert event_id in indexes.get(keys.status_index(status), set()), event_id
    assert set(texts(client.zrange(keys.dead, 0, -1))) <= records
    return records


def test_purge_plans_then_deletes_through_the_indexes(
    aged: dict[str, list[str]], client: redis.Redis, key_prefix: str
) -> None:
    keys = KeySpace(key_prefix)
    everything = {event_id for ids in aged.values() for event_id in ids}
    assert _consistent(client, keys) == everything

    plan = runner.invoke(app, ["purge", "--before", "30d"])
    assert plan.exit_code == 0, plan.output
    assert re.search(r"done\s*│\s*3\s*│", plan.stdout), plan.stdout
    assert re.search(r"failed\s*│\s*2\s*│", plan.stdout), plan.stdout
    assert "nothing deleted" in plan.stdout
    assert _consistent(client, keys) == everything  # the plan deletes nothing

    done_only = runner.invoke(app, ["purge", "--before", "30d", "--status", "done", "--yes", "--batch", "2"])
    assert done_only.exit_code == 0, done_only.output
    assert "deleted 3 event(s)" in done_only.stdout
    assert _consistent(client, keys) == everything - set(aged["old_done"])

    cutoff = datetime.fromtimestamp(time.time() - 30 * DAY, UTC).isoformat()
    rest = runner.invoke(app, ["purge", "--before", cutoff, "--yes"])
    assert rest.exit_code == 0, rest.output
    assert "deleted 2 event(s)" in rest.stdout
    left = _consistent(client, keys)
    assert left == {*aged["new_done"], *aged["new_failed"], *aged["running"]}
    assert client.zcard(keys.dead) == 1
    assert client.zcard(keys.error_index("VEHICLE_STATE", "ASLEEP")) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--before", "banana"], "--before: expected a duration like 2h or an ISO time"),
        (["--before", "2999-01-01T00:00:00"], "--before: '2999-01-01T00:00:00' is in the future"),
        (["--before", "30d", "--status", "queued"], "--status: expected done or failed, not 'queued'"),
    ],
)
def test_purge_refuses_bad_input_in_one_line(arguments: list[str], message: str, env: None) -> None:
    result = runner.invoke(app, ["purge", *arguments])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_purge_help_shows_types_and_defaults(env: None) -> None:
    shown: Any = runner.invoke(app, ["purge", "--help"], env={"COLUMNS": "200"}).stdout
    assert "[required]" in shown
    assert "[default: 500]" in shown
