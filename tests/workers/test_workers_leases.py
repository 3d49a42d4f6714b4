"""The lease heartbeat and the take-over: a live run keeps its short lease; a dead one's is taken over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from eventstore.events import BeginState, EventStore
from eventstore.keys import KeySpace
from eventstore.record import EventRecord
from testsupport import wait_until
from testsupport.workers import accept_event, event_status
from workers.context import HandlerContext
from workers.leases import LeaseKeeper
from workers.process import Outcome, process_event
from workers.registry import HandlerRegistry
from workers.relay import Relay
from workers.runtime import Runtime


@pytest.fixture
def store(client: redis.Redis, key_prefix: str) -> EventStore:
    return EventStore(client, KeySpace(key_prefix), retention=3600)


@pytest.fixture
def begun(
    client: redis.Redis,
    key_prefix: str,
    store: EventStore,
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
) -> Callable[..., EventRecord]:
    """`begun(lease=20, now=None)`: a new event whose run has begun (status processing, a lease)."""

    def make(lease: float = 20.0, now: float | None = None) -> EventRecord:
        event_id = accept_event(client, key_prefix, state_event(car(), {"charge-ischarging": True}))
        begin = store.begin(event_id, lease=lease, now=now)
        assert begin.state is BeginState.OK
        assert begin.record is not None
        return begin.record

    return make


def _lease_end(client: redis.Redis, key_prefix: str, event_id: str) -> float:
    return float(client.zscore(KeySpace(key_prefix).leases, event_id) or 0)


def test_the_keeper_renews_what_it_holds_and_forgets_a_run_once_it_ends(
    client: redis.Redis, key_prefix: str, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    record = begun(now=1000.0)
    keeper = LeaseKeeper(store, lease=20, interval=3600, max_run=360)
    try:
        with keeper.holding(record):
            assert keeper.held() == {record.id: record.run_id}
            assert keeper.renew_once(now=1010.0) == {record.id}
            assert _lease_end(client, key_prefix, record.id) == 1030.0
        assert keeper.held() == {}
        assert keeper.renew_once() == set()
    finally:
        keeper.stop()


def test_a_run_past_its_hard_limit_is_no_longer_renewed(
    client: redis.Redis, key_prefix: str, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    record = begun()
    keeper = LeaseKeeper(store, lease=20, interval=3600, max_run=360)
    try:
        with keeper.holding(record):
            assert keeper.renew_once(now=time.time() + 361) == set()  # stuck: let it be taken over
            assert keeper.held() == {record.id: record.run_id}
    finally:
        keeper.stop()


def test_a_lease_taken_over_is_dropped_from_the_heartbeat(
    store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    record = begun(lease=1.0, now=time.time() - 10)
    keeper = LeaseKeeper(store, lease=20, interval=3600, max_run=360)
    try:
        with keeper.holding(record):
            # Another worker thought this one dead and began the event again: a new run id.
            assert store.begin(record.id, lease=20).state is BeginState.OK
            assert keeper.renew_once() == set()
            assert keeper.held() == {}
    finally:
        keeper.stop()


def test_the_heartbeat_thread_renews_on_its_own_and_survives_a_redis_error(
    client: redis.Redis, key_prefix: str, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    record = begun(lease=0.5)
    first_end = _lease_end(client, key_prefix, record.id)
    broken = EventStore(redis.Redis(port=1, socket_connect_timeout=0.2), store.keys, retention=60)
    failing = LeaseKeeper(broken, lease=0.5, interval=0.05, max_run=360)
    keeper = LeaseKeeper(store, lease=0.5, interval=0.05, max_run=360)
    try:
        with failing.holding(record), keeper.holding(record):
            wait_until(lambda: _lease_end(client, key_prefix, record.id) > first_end + 0.2, timeout=5)
            assert failing._thread is not None
            assert failing._thread.is_alive()  # it logged the failure and keeps beating
    finally:
        failing.stop()
        keeper.stop()
    assert keeper._thread is None


def test_a_relay_enqueues_runs_whose_lease_ended_once(
    client: redis.Redis, key_prefix: str, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    dead = begun(lease=1.0, now=time.time() - 10)
    live = begun()
    published: list[str] = []
    relay = Relay(store, published.extend, lambda: 0, batch=10, high_water=100, idle_wait=0.1)
    second = Relay(store, published.extend, lambda: 0, batch=10, high_water=100, idle_wait=0.1)
    assert relay.run_once() == (1, False)
    assert second.run_once() == (0, False)  # held by the first relay's take-over
    assert published == [dead.id]
    assert event_status(client, key_prefix, live.id) == "processing"


def test_process_event_takes_a_short_lease_and_the_heartbeat_keeps_a_long_run_alive(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
) -> None:
    release = threading.Event()
    ends: list[float] = []

    def slow(ctx: HandlerContext) -> None:
        ends.append(_lease_end(client, key_prefix, ctx.event_id))
        wait_until(lambda: _lease_end(client, key_prefix, ctx.event_id) > ends[0] + 0.5, timeout=10)
        release.set()

    registry = HandlerRegistry()
    registry.handler("VEHICLE_STATE", name="slow")(slow)
    runtime = make_runtime(handlers=registry, lease_seconds=1.0, lease_renew_interval=0.2)
    event_id = accept_event(client, key_prefix, state_event(car(), {"charge-ischarging": True}))
    started = time.time()
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.DONE
    assert release.is_set()
    assert started < ends[0] - 0.5 < started + 1.0  # the lease was one second, not the hard limit
    assert client.zscore(runtime.keys.leases, event_id) is None
    assert runtime.leases.held() == {}
