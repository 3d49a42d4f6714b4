"""The event store's transitions, against real Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from eventstore.events import BeginState, EventStore
from eventstore.index import TRIM_GRACE
from eventstore.keys import KeySpace
from eventstore.record import history_entry
from testsupport.workers import accept_event, event_status


def _store(client: redis.Redis, prefix: str) -> EventStore:
    return EventStore(client, KeySpace(prefix), retention=3600)


@pytest.fixture
def new_event(
    client: redis.Redis,
    key_prefix: str,
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
) -> Callable[[], str]:
    return lambda: accept_event(client, key_prefix, state_event(car(), {"charge-ischarging": True}))


def test_claim_marks_received_events_queued_oldest_first(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    store = _store(client, key_prefix)
    first, second = new_event(), new_event()
    assert store.claim(10) == [first, second]
    assert event_status(client, key_prefix, first) == "queued"
    assert client.llen(store.keys.inbox) == 0
    assert store.claim(10) == []


def test_claim_drops_ids_whose_event_moved_on(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    store = _store(client, key_prefix)
    event_id = new_event()
    store.claim(10)
    client.lpush(store.keys.inbox, event_id, "no-such-event")
    assert store.claim(10) == []


def test_begin_takes_a_lease_and_counts_the_attempt(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    store = _store(client, key_prefix)
    event_id = new_event()
    begin = store.begin(event_id, lease=30, now=1000.0)
    assert begin.state is BeginState.OK
    assert begin.record is not None
    assert begin.record.attempts == 1
    assert begin.record.status == "processing"
    assert begin.record.raw.startswith(b"{")
    assert client.zscore(store.keys.pending, event_id) == 1030.0
    # A second run while the lease is live is refused; after it ended, it may take over.
    assert store.begin(event_id, lease=30, now=1010.0).state is BeginState.BUSY
    later = store.begin(event_id, lease=30, now=1031.0)
    assert later.state is BeginState.OK
    assert later.record is not None
    assert later.record.attempts == 2


def test_begin_refuses_missing_and_finished_events(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    store = _store(client, key_prefix)
    assert store.begin("nope", lease=30).state is BeginState.MISSING
    event_id = new_event()
    record = store.begin(event_id, lease=30).record
    assert record is not None
    assert store.done(record, {"h": {"status": "done"}})
    finished = store.begin(event_id, lease=30)
    assert finished.state is BeginState.FINISHED
    assert finished.status == "done"


def test_done_stores_results_sets_retention_and_leaves_pending(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    store = _store(client, key_prefix)
    event_id = new_event()
    record = store.begin(event_id, lease=30).record
    assert record is not None
    assert store.done(record, {"vehicle-state": {"status": "done", "result": {"stored": 1}}})
    loaded = store.load(event_id)
    assert loaded is not None
    assert loaded.status == "done"
    assert loaded.results["vehicle-state"]["result"] == {"stored": 1}
    # The sweeper's trim deletes it after the retention; its expiry, a grace later, is the backstop.
    assert 3600 < client.ttl(store.keys.event(event_id)) <= 3600 + TRIM_GRACE
    assert client.zscore(store.keys.pending, event_id) is None


def test_a_run_that_lost_its_lease_cannot_finish(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    store = _store(client, key_prefix)
    event_id = new_event()
    stale = store.begin(event_id, lease=1, now=1000.0).record
    fresh = store.begin(event_id, lease=30, now=1002.0).record
    assert stale is not None
    assert fresh is not None
    assert not store.done(stale, {})
    assert not store.dead_letter(stale, history_entry(attempt=1, outcome="failed"), reason="x", results={})
    assert event_status(client, key_prefix, event_id) == "processing"
    assert store.done(fresh, {})


def test_retry_appends_history_and_parks_when_asked(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    store = _store(client, key_prefix)
    event_id = new_event()
    record = store.begin(event_id, lease=30, now=1000.0).record
    assert record is not None
    entry = history_entry(attempt=1, outcome="retry", error={"class": "X", "code": "C"}, delay=5, now=1000.0)
    assert store.retry(record, entry, delay=5.0, park=True, results={"a": {"status": "done"}}, now=1000.0)
    assert client.zscore(store.keys.scheduled, event_id) == 1005.0
    assert store.due(10, now=1004.0) == []
    assert store.due(10, now=1005.0) == [event_id]
    assert client.zscore(store.keys.scheduled, event_id) is None
    again = store.begin(event_id, lease=30, now=1006.0).record
    assert again is not None
    assert again.history == [entry]
    assert again.results == {"a": {"status": "done"}}
    second = history_entry(attempt=2, outcome="retry", delay=1, now=1006.0)
    assert store.retry(again, second, delay=1.0, park=False, results={}, now=1006.0)
    loaded = store.load(event_id)
    assert loaded is not None
    assert [item["attempt"] for item in loaded.history] == [1, 2]
    assert loaded.status == "retrying"
    assert client.zscore(store.keys.scheduled, event_id) is None


def test_dead_letter_keeps_the_record_and_lists_it(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    store = _store(client, key_prefix)
    event_id = new_event()
    record = store.begin(event_id, lease=30).record
    assert record is not None
    error = {"class": "PermissionDeniedError", "type": "PERMISSION", "code": None, "status": 403}
    entry = history_entry(attempt=1, outcome="failed", error=error)
    assert store.dead_letter(record, entry, reason="not retryable", results={})
    loaded = store.load(event_id)
    assert loaded is not None
    assert loaded.status == "failed"
    assert loaded.fields["dead_reason"] == "not retryable"
    assert json.loads(loaded.fields["last_error"])["type"] == "PERMISSION"
    assert client.zscore(store.keys.dead, event_id) is not None
    assert client.zscore(store.keys.pending, event_id) is None
    assert client.ttl(store.keys.event(event_id)) == -1


def test_a_redelivered_message_takes_over_its_own_lease(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    store = _store(client, key_prefix)
    event_id = new_event()
    assert store.begin(event_id, lease=30, task_id="task-1", now=1000.0).state is BeginState.OK
    busy = store.begin(event_id, lease=30, task_id="task-2", now=1001.0)
    assert busy.state is BeginState.BUSY
    assert busy.lease_until == 1030.0
    # The same message again: its first delivery died with its worker (a prefork child was killed).
    again = store.begin(event_id, lease=30, task_id="task-1", now=1002.0)
    assert again.state is BeginState.OK
    assert again.record is not None
    assert again.record.attempts == 2


def test_replay_puts_a_dead_letter_back_through_the_relay(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    store = _store(client, key_prefix)
    event_id = new_event()
    assert store.claim(10) == [event_id]
    record = store.begin(event_id, lease=30).record
    assert record is not None
    store.dead_letter(
        record, history_entry(attempt=1, outcome="failed"), reason="x", results={"h": {"status": "done"}}
    )
    assert store.replay(event_id, reason="user reconnected")
    assert event_status(client, key_prefix, event_id) == "replayed"
    assert client.zscore(store.keys.dead, event_id) is None
    assert store.claim(10) == [event_id]  # the relay hands it to a worker again
    again = store.begin(event_id, lease=30).record
    assert again is not None
    assert again.results == {}  # every handler runs again
    assert [entry["outcome"] for entry in again.history] == ["failed", "replayed"]
    assert not store.replay("gone")
