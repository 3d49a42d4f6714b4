"""The store's event operations the receiver and the workers share, against real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from eventstore.codec import text
from eventstore.events import EventStore, accept
from eventstore.keys import KeySpace
from eventstore.record import EventRecord
from eventstore.status import Status
from smartcar_core.events import parse_envelope
from workers.sweeper import sweep


def test_accept_stores_a_new_event_once(
    client: redis.Redis, keys: KeySpace, delivery: Callable[[], bytes]
) -> None:
    raw = delivery()
    envelope = parse_envelope(raw)
    assert accept(client, keys, envelope, raw, received_at=1000.0)
    assert not accept(client, keys, envelope, raw, received_at=1001.0)  # a duplicate
    assert client.lrange(keys.inbox, 0, -1) == [envelope.event_id.encode()]
    assert client.zscore(keys.pending, envelope.event_id) == 1000.0


def test_the_one_decoder_reads_what_accept_wrote(
    client: redis.Redis, keys: KeySpace, store: EventStore, new_event: Callable[..., str]
) -> None:
    event_id = new_event(received_at=1000.0)
    record = store.load(event_id)
    assert record is not None
    assert (record.id, record.status, record.attempts, record.received_at) == (
        event_id,
        "received",
        0,
        1000.0,
    )
    assert record.raw == client.hget(keys.event(event_id), "raw")
    stored = record.as_dict()
    assert stored["raw"] == record.raw
    assert stored["status"] == Status.RECEIVED
    assert set(stored) == {text(key) for key in client.hkeys(keys.event(event_id))}
    assert EventRecord.from_hash({"id": "x", "attempts": "2"}).attempts == 2  # str keys are read too
    assert store.load("no-such-event") is None


def test_claim_pops_first_then_marks_what_it_popped_queued(
    client: redis.Redis, keys: KeySpace, store: EventStore, new_event: Callable[..., str]
) -> None:
    first, second, third = new_event(), new_event(), new_event()
    popped = store.pop(2)
    assert popped == [first, second]  # oldest first
    assert client.lrange(keys.inbox, 0, -1) == [third.encode()]
    assert store.statuses(popped) == ["received", "received"]  # popped, not claimed yet
    assert store.mark_queued(popped, now=2000.0) == [first, second]
    assert store.statuses(popped) == ["queued", "queued"]
    assert client.zscore(keys.pending, first) == 2000.0
    assert client.hget(keys.event(first), "queued_at") == b"2000.0"
    # claim = pop + mark: ids a blocking pop took come first, then what it pops itself.
    fourth = new_event()
    assert store.claim(5, [fourth]) == [fourth, third]
    assert store.pop(5) == []
    assert store.claim(5) == []


def test_a_claim_drops_ids_that_moved_on_or_are_gone(
    store: EventStore, new_event: Callable[..., str]
) -> None:
    event_id = new_event()
    assert store.claim(1) == [event_id]
    assert store.mark_queued([event_id, "no-such-event"]) == []  # queued already; never stored
    begin = store.begin(event_id, lease=30)
    assert begin.record is not None
    assert store.replay(event_id)  # a replay is claimed like a new event
    assert store.claim(1) == [event_id]


def test_a_relay_that_dies_between_pop_and_claim_leaves_what_the_sweeper_requeues(
    store: EventStore, new_event: Callable[..., str]
) -> None:
    now = time.time()
    lost = new_event(received_at=now - 500)
    waiting = new_event(received_at=now - 500)
    assert store.pop(1) == [lost]  # ... and the relay died before mark_queued
    assert (store.in_inbox(lost), store.in_inbox(waiting)) == (False, True)
    assert sorted(store.stale(now - 120, 10)) == sorted([lost, waiting])
    report = sweep(store, after=120, batch=10, now=now)
    assert (report.requeue, report.backlog) == ([lost], 1)


def test_an_idle_pop_waits_for_the_first_id(store: EventStore, new_event: Callable[..., str]) -> None:
    started = time.monotonic()
    assert store.wait_pop(0.1, 5) == []
    assert time.monotonic() - started >= 0.1
    ids = [new_event(), new_event()]
    assert store.wait_pop(1.0, 5) == ids


def test_park_and_due(client: redis.Redis, keys: KeySpace, store: EventStore) -> None:
    store.park("e1", 1005.0)
    assert client.zscore(keys.scheduled, "e1") == 1005.0
    assert store.due(10, now=1004.0) == []
    assert store.due(10, now=1005.0) == ["e1"]
    assert client.zcard(keys.scheduled) == 0


def test_settle_drops_bumps_and_unschedules_in_one_call(
    client: redis.Redis, keys: KeySpace, store: EventStore
) -> None:
    client.zadd(keys.pending, {"finished": 1.0, "looked-at": 2.0})
    client.zadd(keys.scheduled, {"looked-at": 50.0, "other": 60.0})
    store.settle(drop=["finished"], bump={"looked-at": 100.0, "gone": 100.0}, unschedule=["looked-at"])
    assert client.zrange(keys.pending, 0, -1, withscores=True) == [(b"looked-at", 100.0)]  # no "gone"
    assert client.zrange(keys.scheduled, 0, -1) == [b"other"]
    store.settle()  # nothing to do is fine


def test_statuses_say_none_for_a_record_that_is_gone(
    store: EventStore, new_event: Callable[..., str]
) -> None:
    event_id = new_event()
    assert store.statuses([event_id, "gone"]) == ["received", None]
    assert store.statuses([]) == []


def test_ping(client: redis.Redis, keys: KeySpace, store: EventStore) -> None:
    assert not store.pinged("t")
    store.ping("t")
    assert store.pinged("t")
    assert 290 < client.ttl(keys.ping("t")) <= 300


@pytest.mark.parametrize("count", [0, -1])
def test_popping_nothing_asks_redis_nothing(store: EventStore, count: int) -> None:
    assert store.pop(count) == []
    assert store.mark_queued([]) == []
