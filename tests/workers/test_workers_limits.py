"""The shared rate bucket and pauses, the sweeper, and the relay's hand-off, against real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from eventstore.events import EventStore
from eventstore.keys import KeySpace
from testsupport import wait_until
from testsupport.workers import accept_event, event_status
from workers.limits import DeferredError, RateLimiter
from workers.relay import Relay, RelayThread
from workers.sweeper import sweep


def _limiter(client: redis.Redis, prefix: str, **overrides: Any) -> RateLimiter:
    values: dict[str, Any] = {"capacity": 3, "refill_per_minute": 60.0, "max_wait": 0.0}
    values.update(overrides)
    return RateLimiter(client, keys=KeySpace(prefix), **values)


def test_bucket_allows_its_capacity_then_says_how_long_to_wait(client: redis.Redis, key_prefix: str) -> None:
    limiter = _limiter(client, key_prefix)
    now = 1_000.0
    assert [limiter.try_take("v", now=now) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_take("v", now=now) == pytest.approx(1.0)  # refills one per second
    assert limiter.try_take("v", now=now + 1.0) == 0.0


def test_bucket_is_shared_by_every_limiter_on_the_prefix(client: redis.Redis, key_prefix: str) -> None:
    first, second = _limiter(client, key_prefix), _limiter(client, key_prefix)
    now = 1_000.0
    first.try_take("a", now=now)
    first.try_take("b", now=now)
    second.try_take("c", now=now)
    assert second.try_take("d", now=now) > 0


def test_take_defers_when_the_wait_is_longer_than_allowed(client: redis.Redis, key_prefix: str) -> None:
    limiter = _limiter(client, key_prefix, capacity=1, refill_per_minute=1.0)
    limiter.take("v")
    with pytest.raises(DeferredError) as raised:
        limiter.take("v")
    assert 50 < raised.value.delay <= 60


def test_app_pause_stops_everyone_and_vehicle_pause_only_that_vehicle(
    client: redis.Redis, key_prefix: str
) -> None:
    limiter = _limiter(client, key_prefix, capacity=100)
    limiter.pause_vehicle("slow", 5)
    assert 4 < limiter.try_take("slow") <= 5
    assert limiter.try_take("other") == 0
    limiter.pause_app(30)
    assert 29 < limiter.try_take("other") <= 30


def test_zero_capacity_turns_the_bucket_off(client: redis.Redis, key_prefix: str) -> None:
    limiter = _limiter(client, key_prefix, capacity=0)
    assert all(limiter.try_take("v") == 0 for _ in range(500))


@pytest.fixture
def store(client: redis.Redis, key_prefix: str) -> EventStore:
    return EventStore(client, KeySpace(key_prefix), retention=3600)


@pytest.fixture
def new_event(
    client: redis.Redis,
    key_prefix: str,
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
) -> Callable[..., str]:
    def make(received_at: float | None = None) -> str:
        body = state_event(car(), {"charge-ischarging": True})
        return accept_event(client, key_prefix, body, received_at=received_at)

    return make


def test_sweeper_requeues_lost_hand_offs_and_dead_runs(
    client: redis.Redis, key_prefix: str, store: EventStore, new_event: Callable[..., str]
) -> None:
    now = time.time()
    backlog = new_event(received_at=now - 500)  # old but still waiting in the inbox: a backlog
    lost = new_event(received_at=now - 500)  # popped by a relay that died before publishing
    client.lrem(store.keys.inbox, 0, lost)
    claimed = new_event()
    store.claim(0, [claimed], now=now - 500)  # queued, task never ran
    crashed = new_event()
    store.begin(crashed, lease=10, now=now - 500)  # its worker died; the lease ended long ago
    running = new_event()
    store.begin(running, lease=600, now=now)  # alive
    finished = new_event()
    record = store.begin(finished, lease=10, now=now - 500).record
    assert record is not None
    store.done(record, {})
    client.zadd(store.keys.pending, {finished: now - 500})  # a leftover entry
    fresh = new_event()

    report = sweep(store, after=120, batch=100, now=now)
    assert sorted(report.requeue) == sorted([lost, claimed, crashed])
    assert report.backlog == 1
    assert report.dropped == 1
    assert client.zscore(store.keys.pending, finished) is None
    for event_id in (backlog, lost, claimed, crashed):
        assert client.zscore(store.keys.pending, event_id) == pytest.approx(now)
    assert running not in report.requeue
    assert fresh not in report.requeue
    # Looked at now: not again before `after` seconds pass.
    assert sweep(store, after=120, batch=100, now=now + 1).requeue == []


def test_relay_claims_inbox_and_due_retries_within_the_high_water_mark(
    client: redis.Redis, key_prefix: str, store: EventStore, new_event: Callable[..., str]
) -> None:
    ids = [new_event() for _ in range(5)]
    published: list[str] = []
    depth = {"n": 0}
    relay = Relay(
        store,
        published.extend,
        lambda: depth["n"],
        batch=10,
        high_water=3,
        idle_wait=0.1,
        due_every=0,
        depth_every=0,
    )
    assert relay.run_once() == (3, False)
    assert published == ids[:3]
    assert all(event_status(client, key_prefix, event_id) == "queued" for event_id in ids[:3])
    depth["n"] = 3  # the Celery queue is full: the rest waits in the inbox
    assert relay.run_once() == (0, True)
    assert event_status(client, key_prefix, ids[3]) == "received"
    client.zadd(store.keys.scheduled, {"parked-event": time.time() - 1})
    depth["n"] = 0
    sent, full = relay.run_once()
    assert (sent, full) == (3, False)
    assert published[3:] == ["parked-event", ids[3], ids[4]]


def test_relay_thread_wakes_on_new_events_and_stops(
    client: redis.Redis, key_prefix: str, store: EventStore, new_event: Callable[..., str]
) -> None:
    published: list[str] = []
    lock = threading.Lock()

    def publish(ids: list[str]) -> None:
        with lock:
            published.extend(ids)

    thread = RelayThread(Relay(store, publish, lambda: 0, batch=10, high_water=100, idle_wait=0.2))
    thread.start()
    try:
        event_id = new_event()
        wait_until(lambda: event_id in published, timeout=5, what="the relay to publish")
    finally:
        thread.stop()
    assert event_status(client, key_prefix, event_id) == "queued"


def test_without_a_bucket_pauses_still_reach_every_worker(client: redis.Redis, key_prefix: str) -> None:
    reader = _limiter(client, key_prefix, capacity=0)
    assert reader.try_take("v") == 0
    _limiter(client, key_prefix, capacity=0).pause_vehicle("v", 30)  # another worker saw RATE_LIMIT
    wait_until(lambda: reader.try_take("v") > 25, timeout=3, what="the pause to be seen")
    assert reader.try_take("w") == 0
    reader.resume()
    assert client.exists(KeySpace(key_prefix).rate_pauses) == 0


def test_an_idle_relay_takes_what_arrived_in_one_pop(
    client: redis.Redis, key_prefix: str, store: EventStore, new_event: Callable[..., str]
) -> None:
    ids = [new_event() for _ in range(5)]
    published: list[str] = []
    relay = Relay(store, published.extend, lambda: 0, batch=4, high_water=100, idle_wait=0.1)
    assert relay.wait_for_inbox() == 4  # at most a batch
    assert relay.wait_for_inbox() == 1
    assert relay.wait_for_inbox() == 0  # nothing more: waited idle_wait
    assert published == ids


def test_a_lingering_relay_batches_a_trickle(
    client: redis.Redis, key_prefix: str, store: EventStore, new_event: Callable[..., str]
) -> None:
    first = new_event()
    published: list[list[str]] = []
    relay = Relay(store, published.append, lambda: 0, batch=10, high_water=100, idle_wait=0.1, linger=0.3)
    late = threading.Timer(0.05, new_event)  # arrives while the relay lingers
    late.start()
    assert relay.wait_for_inbox() == 2
    late.join()
    assert len(published) == 1  # one publish for both
    assert published[0][0] == first
