"""The operator indexes agree with the records after any sequence of transitions, and the trim keeps
them bounded: every index is compared with what a full scan of the records says it must hold."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore.codec import text, text_map
from eventstore.events import EventStore, accept
from eventstore.index import TRIM_GRACE, error_key, stored_error_key
from eventstore.keys import KeySpace
from eventstore.record import EventRecord, history_entry
from eventstore.status import Status
from smartcar_core.events import parse_envelope
from testsupport import delete_keys
from testsupport.deliveries import delivery_body
from workers.sweeper import sweep

VEHICLES = ("v1", "v2", "v3")
USERS = ("u1", "u2")
WEBHOOKS = ("wh1", "wh2")
ERRORS: tuple[dict[str, Any] | None, ...] = (
    {"class": "VehicleStateError", "type": "VEHICLE_STATE", "code": "ASLEEP", "status": 409},
    {"class": "VehicleStateError", "type": "VEHICLE_STATE", "code": "UNREACHABLE", "status": 409},
    {"class": "PermissionError", "type": "PERMISSION", "code": None, "status": 403},
    {"class": "ValueError", "message": "a bug in a handler"},  # not a Smartcar error: not indexed
    None,
)
RETENTION = 100
FAILED_RETENTION = 300


def records(client: redis.Redis, keys: KeySpace) -> dict[str, EventRecord]:
    found = {}
    for key in client.scan_iter(match=f"{keys.prefix}event:*", count=1000):
        record = EventRecord.from_hash(client.hgetall(key))
        found[record.id] = record
    return found


def expected_indexes(client: redis.Redis, keys: KeySpace) -> dict[str, dict[str, float]]:
    """Every index as the records say it must be: key -> {id: score}."""
    expected: dict[str, dict[str, float]] = {}

    def put(key: str, event_id: str, score: float) -> None:
        expected.setdefault(key, {})[event_id] = score

    for event_id, record in records(client, keys).items():
        fields = record.fields
        status_at = float(fields.get("updated_at") or record.received_at)
        put(keys.status_index(record.status), event_id, status_at)
        if record.status == Status.RECEIVED:
            continue  # the entity indexes are written when the relay claims it; it has no error yet
        put(keys.type_index(record.type), event_id, record.received_at)
        for value, index in (
            (fields.get("vehicle_id"), keys.vehicle_index),
            (fields.get("user_id"), keys.user_index),
            (fields.get("webhook_id"), keys.webhook_index),
        ):
            if value:
                put(index(value), event_id, record.received_at)
        error_type, code = stored_error_key(fields.get("last_error"))
        if error_type and record.status != Status.DONE:
            failed_at = max(entry["at"] for entry in record.history if entry.get("error") is not None)
            put(keys.error_type_index(error_type), event_id, failed_at)
            if code:
                put(keys.error_index(error_type, code), event_id, failed_at)
    return expected


def actual_indexes(client: redis.Redis, keys: KeySpace) -> dict[str, dict[str, float]]:
    found = {}
    for key in client.scan_iter(match=f"{keys.prefix}ix:*", count=1000):
        entries: list[Any] = client.zrange(key, 0, -1, withscores=True)
        found[text(key)] = {text(member): score for member, score in entries}
    return found


class Driver:
    """Random transitions as the relay, the workers, an operator and the sweeper make them."""

    def __init__(self, client: redis.Redis, keys: KeySpace, seed: int) -> None:
        self.client, self.keys = client, keys
        self.store = EventStore(client, keys, retention=RETENTION, failed_retention=FAILED_RETENTION)
        self.random = random.Random(seed)  # noqa: S311 - a reproducible test, not a secret
        self.now = 1_000_000.0
        self.ids: list[str] = []
        self.runs: dict[str, list[EventRecord]] = {}  # each id's begun runs not ended yet (stale ones too)

    def tick(self) -> float:
        self.now += self.random.choice((0.001, 1.0, 7.0, 60.0))
        return self.now

    def step(self, action: str) -> None:
        pick = self.random.choice(self.ids) if self.ids else None
        if action == "accept" or pick is None:
            raw = delivery_body(
                self.random.choice(VEHICLES),
                self.random.choice(USERS),
                self.random.choice(WEBHOOKS),
                error_event=self.random.random() < 0.3,
            )
            envelope = parse_envelope(raw)
            assert accept(self.client, self.keys, envelope, raw, received_at=self.tick())
            self.ids.append(envelope.event_id)
        elif action == "claim":
            self.store.claim(self.random.randint(1, 3), now=self.tick())
        elif action == "begin":
            begun = self.store.begin(pick, lease=30, now=self.tick())
            if begun.record is not None:
                self.runs.setdefault(pick, []).append(begun.record)
        elif action in ("done", "retry", "dead") and self.runs.get(pick):
            # A run ends once; an older run of the same event (its lease was taken over) is fenced.
            runs = self.runs[pick]
            self.finish(action, runs.pop(self.random.randrange(len(runs))))
        elif action == "replay":
            self.store.replay(pick, now=self.tick())
        elif action == "trim":
            self.now += self.random.choice((RETENTION, FAILED_RETENTION))
            self.store.trim(batch=self.random.randint(1, 4), now=self.now)

    def finish(self, action: str, record: EventRecord) -> None:
        now = self.tick()
        if action == "done":
            self.store.done(record, {"h": {"status": "done"}}, now=now)
            return
        error = self.random.choice(ERRORS)
        entry = history_entry(attempt=record.attempts, outcome=action, error=error, now=now)
        if action == "retry":
            self.store.retry(record, entry, delay=5, park=self.random.random() < 0.5, results={}, now=now)
        else:
            self.store.dead_letter(record, entry, reason="not retryable", results={}, now=now)


@pytest.fixture
def fresh_keys(redis_url: str) -> Iterator[list[KeySpace]]:
    """Key spaces made inside a test (one per hypothesis example), all deleted afterwards."""
    made: list[KeySpace] = []
    yield made
    with redis.Redis.from_url(redis_url) as client:
        for keys in made:
            delete_keys(client, f"{keys.prefix}*")


ACTIONS = st.sampled_from(("accept", "accept", "claim", "begin", "done", "retry", "dead", "replay", "trim"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(ACTIONS, min_size=1, max_size=60), seed=st.integers(0, 2**32))
def test_every_index_matches_a_full_scan_of_the_records(
    client: redis.Redis, fresh_keys: list[KeySpace], actions: list[str], seed: int
) -> None:
    keys = KeySpace(f"test:ix:{uuid.uuid4().hex[:12]}:")
    fresh_keys.append(keys)
    driver = Driver(client, keys, seed)
    for action in actions:
        driver.step(action)
        assert actual_indexes(client, keys) == expected_indexes(client, keys), action


def test_a_long_random_run_keeps_every_index_exact(client: redis.Redis, keys: KeySpace) -> None:
    """One long seeded run: more events per index and more stale runs than hypothesis's short ones."""
    driver = Driver(client, keys, seed=9)
    actions = ("accept", "claim", "begin", "begin", "done", "retry", "dead", "replay")
    for step in range(600):
        driver.step("trim" if step % 150 == 149 else driver.random.choice(actions))
    assert actual_indexes(client, keys) == expected_indexes(client, keys)
    assert any(key.startswith(keys.error_index("VEHICLE_STATE", "")) for key in actual_indexes(client, keys))


def test_trim_deletes_old_done_and_failed_events_with_every_entry(
    client: redis.Redis, keys: KeySpace
) -> None:
    store = EventStore(client, keys, retention=RETENTION, failed_retention=FAILED_RETENTION)
    made = []
    for _ in range(3):
        raw = delivery_body("v1", "u1", "wh1")
        assert accept(client, keys, parse_envelope(raw), raw, received_at=1000.0)
        made.append(parse_envelope(raw).event_id)
    done_id, failed_id, live_id = made
    for event_id in made:
        assert store.begin(event_id, lease=30, now=1001.0).state.value == "ok"
    record = store.load(done_id)
    assert record is not None
    assert store.done(record, {}, now=1002.0)
    assert 0 < client.ttl(keys.event(done_id)) <= RETENTION + TRIM_GRACE  # the sweeper's grace
    failed = store.load(failed_id)
    assert failed is not None
    entry = history_entry(attempt=1, outcome="failed", error=ERRORS[0], now=1003.0)
    assert store.dead_letter(failed, entry, reason="never", results={}, now=1003.0)

    assert store.trim(batch=10, now=1002.0 + RETENTION - 1) == 0  # not old enough yet
    assert store.trim(batch=10, now=1003.0 + RETENTION) == 1  # the done one; the dead letter is kept
    assert not client.exists(keys.event(done_id))
    assert store.trim(batch=10, now=1003.0 + FAILED_RETENTION) == 1
    assert not client.exists(keys.event(failed_id))
    assert client.zscore(keys.dead, failed_id) is None
    assert actual_indexes(client, keys) == expected_indexes(client, keys)
    assert set(actual_indexes(client, keys)[keys.vehicle_index("v1")]) == {live_id}


def test_trim_drops_the_entries_of_a_record_that_went_before_it(client: redis.Redis, keys: KeySpace) -> None:
    """A done record that expired before the sweeper came (it stopped longer than the grace)."""
    store = EventStore(client, keys, retention=RETENTION)
    raw = delivery_body("v1", "u1", "wh1")
    event_id = parse_envelope(raw).event_id
    assert accept(client, keys, parse_envelope(raw), raw, received_at=1000.0)
    begun = store.begin(event_id, lease=30, now=1001.0)
    assert begun.record is not None
    assert store.done(begun.record, {}, now=1002.0)
    client.delete(keys.event(event_id))
    assert store.trim(batch=10, now=5000.0) == 1
    assert client.zcard(keys.status_index(Status.DONE)) == 0
    assert store.trim(batch=10, now=5000.0) == 0  # nothing left; dead letters kept when no retention


def test_error_keys_read_only_smartcar_errors() -> None:
    assert error_key({"type": "VEHICLE_STATE", "code": "ASLEEP"}) == ("VEHICLE_STATE", "ASLEEP")
    assert error_key({"type": "PERMISSION", "code": None}) == ("PERMISSION", "")
    assert error_key({"class": "ValueError"}) == ("", "")
    assert error_key(None) == ("", "")
    assert stored_error_key(None) == ("", "")
    assert stored_error_key("not json") == ("", "")
    assert stored_error_key("[1]") == ("", "")
    assert stored_error_key('{"type": "BILLING", "code": "X"}') == ("BILLING", "X")
    assert text_map({b"a": b"b"}) == {"a": "b"}


def test_each_sweep_trims(client: redis.Redis, keys: KeySpace) -> None:
    store = EventStore(client, keys, retention=RETENTION)
    raw = delivery_body("v1", "u1", "wh1")
    event_id = parse_envelope(raw).event_id
    assert accept(client, keys, parse_envelope(raw), raw, received_at=1000.0)
    begun = store.begin(event_id, lease=30, now=1001.0)
    assert begun.record is not None
    assert store.done(begun.record, {}, now=1002.0)
    assert sweep(store, after=120, batch=10, now=1002.0 + RETENTION).trimmed == 1
    assert actual_indexes(client, keys) == {}


def test_a_sweep_trims_batch_after_batch_while_they_are_full(client: redis.Redis, keys: KeySpace) -> None:
    store = EventStore(client, keys, retention=RETENTION)
    for index in range(25):
        raw = delivery_body("v1", "u1", "wh1")
        event_id = parse_envelope(raw).event_id
        assert accept(client, keys, parse_envelope(raw), raw, received_at=1000.0 + index)
        begun = store.begin(event_id, lease=30, now=1000.0 + index)
        assert begun.record is not None
        assert store.done(begun.record, {}, now=1000.0 + index)
    assert sweep(store, after=120, batch=4, now=2000.0 + RETENTION).trimmed == 25  # 7 rounds, the last short
    assert actual_indexes(client, keys) == {}
