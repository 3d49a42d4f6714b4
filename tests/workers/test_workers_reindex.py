"""`smartcar-events events reindex`: events whose records were written without their index entries (as a
version before the indexes wrote them) are found by `events list` after it, with the very entries the
store's scripts would have written; the plan writes nothing; a second run changes nothing; an entry in
the wrong status's index goes; an event that moves on while read is left to its transition."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from eventstore.codec import text
from eventstore.events import EventStore, accept
from eventstore.keys import KeySpace
from eventstore.record import history_entry
from eventstore.reindex import Reindexer
from eventstore.status import Status
from smartcar_core.events import parse_envelope
from smartcar_simulator import payloads
from testsupport.workers import settings_environment
from workers.cli import app
from workers.settings import WorkerSettings

runner = CliRunner()
ASLEEP = {"class": "VehicleStateError", "type": "VEHICLE_STATE", "code": "ASLEEP", "status": 409}
RATE = {"class": "RateLimitError", "type": "RATE_LIMIT", "code": None, "status": 429}
Snapshot = dict[str, list[tuple[str, float]]]


@pytest.fixture
def env(settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def store(client: redis.Redis, keys: KeySpace) -> EventStore:
    return EventStore(client, keys, retention=3600)


def _event(store: EventStore, vehicle: str, at: float, end: str) -> str:
    """One event taken through the store's own scripts to `end`, as the workers would."""
    car = {"id": vehicle, "make": "TESLA", "model": "Model 3", "year": 2022, "user_id": f"u-{vehicle}"}
    item = payloads.signal_item(
        "charge-ischarging", name="IsCharging", group="Charge", body={"value": True}, oem_updated_at=1,
        retrieved_at=1,
    )  # fmt: skip
    raw = json.dumps(payloads.vehicle_state_event(car, [item], webhook_id="wh", triggers=[])).encode()
    envelope = parse_envelope(raw)
    assert accept(store.redis, store.keys, envelope, raw, received_at=at)
    if end == "received":
        return envelope.event_id
    store.redis.lrem(store.keys.inbox, 1, envelope.event_id)
    begun = store.begin(envelope.event_id, lease=30, now=at + 1)
    assert begun.record is not None
    if end == "done":
        assert store.done(begun.record, {}, now=at + 2)
    elif end in ("failed", "replayed"):
        entry = history_entry(attempt=1, outcome="failed", error=ASLEEP, now=at + 2)
        assert store.dead_letter(begun.record, entry, reason="gave up", results={}, now=at + 2)
        if end == "replayed":
            assert store.replay(envelope.event_id, now=at + 3)
    elif end == "retrying":
        entry = history_entry(attempt=1, outcome="retry", error=RATE, now=at + 2)
        assert store.retry(begun.record, entry, delay=60, park=True, results={}, now=at + 2)
    return envelope.event_id


def _indexes(client: redis.Redis, keys: KeySpace) -> Snapshot:
    """Every operator index under the prefix, with its entries and their scores."""
    found = client.scan_iter(match=keys.status_index("*").replace("status:*", "*"))
    snapshot: Snapshot = {}
    for key in sorted(found):
        entries: list[tuple[bytes, float]] = client.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment] # - sync
        snapshot[text(key)] = [(text(member), score) for member, score in entries]
    return snapshot


def _listed(*options: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["events", "list", "--json", *options])
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_events_stored_without_their_indexes_are_listed_after_a_reindex(
    env: None, store: EventStore, client: redis.Redis, keys: KeySpace
) -> None:
    now = time.time() - 600
    ends = ("received", "queued", "done", "failed", "retrying", "replayed", "failed")
    ids = [_event(store, f"v-{index}", now + index * 10, end) for index, end in enumerate(ends)]
    as_the_scripts_wrote = _indexes(client, keys)
    assert len(as_the_scripts_wrote) > 10  # status, type, vehicle, user, webhook and error indexes
    client.delete(*as_the_scripts_wrote)  # the store as a version before the indexes left it
    assert _listed("--status", "failed") == []

    plan = runner.invoke(app, ["events", "reindex"])
    assert plan.exit_code == 0, plan.output
    assert "scanned 7 record(s): 7 event(s) to index" in plan.stdout
    assert "nothing written" in plan.stdout
    assert _indexes(client, keys) == {}

    done = runner.invoke(app, ["events", "reindex", "--yes", "--batch", "3"])
    assert done.exit_code == 0, done.output
    assert "scanned 7 record(s): 7 event(s) indexed" in done.stdout
    assert "0 in another status's index removed" in done.stdout
    assert _indexes(client, keys) == as_the_scripts_wrote
    assert [event["id"] for event in _listed("--status", "failed")] == [ids[6], ids[3]]
    assert [event["id"] for event in _listed("--vehicle", "v-4")] == [ids[4]]
    by_error = _listed("--error-type", "VEHICLE_STATE", "--error-code", "ASLEEP")
    assert {event["id"] for event in by_error} == {ids[3], ids[5], ids[6]}

    again = runner.invoke(app, ["events", "reindex", "--yes"])
    assert "scanned 7 record(s): 0 event(s) indexed (0 entries added" in again.stdout
    assert _indexes(client, keys) == as_the_scripts_wrote


def test_an_entry_in_another_status_index_is_taken_out(
    env: None, store: EventStore, client: redis.Redis, keys: KeySpace
) -> None:
    event_id = _event(store, "v-x", time.time() - 60, "done")
    client.zadd(keys.status_index(Status.FAILED), {event_id: 1.0})
    assert [event["id"] for event in _listed("--status", "failed")] == []  # the query checks the record
    result = runner.invoke(app, ["events", "reindex", "--yes"])
    assert "1 event(s) indexed (0 entries added, 1 in another status's index removed)" in result.stdout
    assert client.zscore(keys.status_index(Status.FAILED), event_id) is None
    assert client.zscore(keys.status_index(Status.DONE), event_id) is not None


def test_an_event_that_moves_on_while_read_is_left_to_its_transition(
    store: EventStore, client: redis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    event_id = _event(store, "v-y", time.time() - 60, "failed")
    client.delete(*_indexes(client, keys))
    reindexer = Reindexer(client, keys)
    stale = [[b"retrying", b"1.0", b"1.0", None, None, b"VEHICLE_STATE", b"v-y", b"u-v-y", b"wh"]]
    monkeypatch.setattr(reindexer, "_read", lambda **_: stale)  # as read before a transition ran
    counts = reindexer.reindex([event_id])
    assert (counts.scanned, counts.events, counts.moved) == (1, 0, 1)
    assert _indexes(client, keys) == {}


def test_a_redis_that_does_not_answer(settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    result = runner.invoke(app, ["events", "reindex"])
    assert result.exit_code == 78
    assert "did not answer" in result.output
