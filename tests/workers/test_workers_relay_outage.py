"""The relay through outages, on real Redis behind a proxy that a test cuts (`testsupport.receiver.TcpProxy`):
it keeps going when the event store's Redis goes away and comes back, and when the broker refuses Celery's
apply_async (the hand-off lost meanwhile is the sweeper's), logging each; it logs an unexpected error with
its traceback and goes on; and a full Celery queue holds the inbox back while due retries still go out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from structlog.testing import capture_logs

from eventstore.client import connect
from eventstore.codec import text
from eventstore.events import EventStore
from eventstore.keys import KeySpace
from testsupport import wait_until, wait_until_async
from testsupport.receiver import TcpProxy
from testsupport.workers import accept_event, event_status
from workers.app import publishing_app
from workers.assembly import Assembly
from workers.relay import Relay, RelayThread
from workers.settings import WorkerSettings
from workers.sweeper import sweep

Maker = Callable[..., dict[str, Any]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(redis_url)
    relay = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await relay.start()
    yield relay
    await relay.stop()


def _proxied(redis_url: str, proxy: TcpProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}{urlsplit(redis_url).path or '/0'}"


@pytest.fixture
def new_event(client: redis.Redis, key_prefix: str, car: Maker, state_event: Maker) -> Callable[[], str]:
    """An event stored as the receiver stores it (on a connection of its own, not through the proxy)."""
    return lambda: accept_event(client, key_prefix, state_event(car(), {"charge-ischarging": True}))


def _logged(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == event]


@pytest.mark.anyio
async def test_the_relay_keeps_going_when_the_event_stores_redis_goes_away(
    proxy: TcpProxy, redis_url: str, key_prefix: str, client: redis.Redis, new_event: Callable[[], str]
) -> None:
    via_proxy = connect(_proxied(redis_url, proxy), timeout=2.0)
    published: list[str] = []
    relay = Relay(
        EventStore(via_proxy, KeySpace(key_prefix), retention=3600),
        published.extend,
        lambda: 0,
        batch=10,
        high_water=100,
        idle_wait=0.2,
    )
    thread = RelayThread(relay)
    with capture_logs() as logs:
        thread.start()
        try:
            first = new_event()
            await wait_until_async(lambda: first in published, timeout=5, what="the first event published")
            await proxy.stop()
            await wait_until_async(
                lambda: _logged(logs, "relay_redis_unavailable"), timeout=10, what="the outage logged"
            )
            during = new_event()  # the receiver's own connection still works
            await proxy.start()
            await wait_until_async(lambda: during in published, timeout=10, what="the relay to recover")
        finally:
            await asyncio.to_thread(thread.stop)
            via_proxy.close()
    warning = _logged(logs, "relay_redis_unavailable")[0]
    assert (warning["log_level"], warning["retry_in"]) == ("warning", 1.0)
    assert "exc_info" in warning
    assert published == [first, during]
    assert event_status(client, key_prefix, during) == "queued"
    assert _logged(logs, "relay_stopped")[0]["published"] == 2
    assert _logged(logs, "relay_failed") == []


@pytest.fixture
def cut_broker_assembly(
    settings: WorkerSettings, proxy: TcpProxy, redis_url: str
) -> Iterator[tuple[Assembly, WorkerSettings]]:
    """The relay's assembly with Celery's apply_async as publisher, its broker behind the proxy."""
    chosen = settings.model_copy(
        update={"celery_broker_url": _proxied(redis_url, proxy), "relay_fast_publish": False}
    )
    assembly = Assembly(publishing_app(chosen), settings=chosen)
    yield assembly, chosen
    assembly.close()
    assembly.celery.close()


@pytest.mark.anyio
async def test_a_broker_refusing_apply_async_is_an_outage_and_the_sweeper_recovers_the_lost_hand_off(
    proxy: TcpProxy,
    client: redis.Redis,
    key_prefix: str,
    new_event: Callable[[], str],
    cut_broker_assembly: tuple[Assembly, WorkerSettings],
) -> None:
    assembly, settings = cut_broker_assembly
    queue = settings.broker_key_prefix + settings.queue
    publisher = assembly.publisher()
    # The queue's depth is read once, at the start: in the outage only the publish meets the broker.
    relay = Relay(
        assembly.runtime().store,
        publisher.publish,
        publisher.depth,
        batch=10,
        high_water=100,
        idle_wait=0.2,
        depth_every=3600,
    )
    thread = RelayThread(relay)
    with capture_logs() as logs:
        thread.start()
        try:
            before = new_event()
            # Published, and the publish call returned: the relay waits on the inbox, not on the broker.
            await wait_until_async(lambda: relay.published == 1, timeout=5, what="a published task")
            assert client.llen(queue) == 1
            await proxy.stop()
            lost = new_event()  # popped and marked queued, then the broker refuses its task
            await wait_until_async(
                lambda: _logged(logs, "relay_redis_unavailable"), timeout=15, what="the outage logged"
            )
            assert event_status(client, key_prefix, lost) == "queued"
            await proxy.start()
            after = new_event()
            await wait_until_async(lambda: client.llen(queue) == 2, timeout=15, what="publishing again")
        finally:
            await asyncio.to_thread(thread.stop)
    assert _logged(logs, "relay_failed") == []  # a broker outage, not an unexpected error
    tasks = {text(message) for message in client.lrange(queue, 0, -1)}
    assert [repr((e,)) in "".join(tasks) for e in (before, lost, after)] == [True, False, True]
    # The lost hand-off has no task: the sweeper finds it once `sweep_after` has passed, and requeues it.
    store = EventStore(client, KeySpace(key_prefix), retention=3600)
    report = sweep(store, after=settings.sweep_after, batch=10, now=_later(store, lost, settings))
    assert lost in report.requeue


def _later(store: EventStore, event_id: str, settings: WorkerSettings) -> float:
    due = store.redis.zscore(store.keys.pending, event_id)
    assert due is not None
    return float(due) + settings.sweep_after + 1


def test_an_unexpected_error_is_logged_with_its_traceback_and_the_relay_goes_on(
    client: redis.Redis, key_prefix: str, new_event: Callable[[], str]
) -> None:
    published: list[str] = []
    failures = [TypeError("a bug in the publisher")]

    def publish(ids: list[str]) -> None:
        if failures:
            raise failures.pop()
        published.extend(ids)

    store = EventStore(client, KeySpace(key_prefix), retention=3600)
    thread = RelayThread(Relay(store, publish, lambda: 0, batch=10, high_water=100, idle_wait=0.2))
    with capture_logs() as logs:
        thread.start()
        try:
            first = new_event()
            wait_until(lambda: _logged(logs, "relay_failed"), timeout=5, what="the failure logged")
            second = new_event()
            wait_until(lambda: second in published, timeout=5, what="the relay to go on")
        finally:
            thread.stop()
    failed = _logged(logs, "relay_failed")[0]
    assert (failed["log_level"], failed["retry_in"]) == ("error", 1.0)
    assert failed["exc_info"] is True
    assert first not in published  # marked queued, never published: the sweeper's to recover
    assert event_status(client, key_prefix, first) == "queued"


def test_a_full_celery_queue_holds_the_inbox_back_but_not_due_retries(
    client: redis.Redis, settings: WorkerSettings, key_prefix: str, new_event: Callable[[], str]
) -> None:
    chosen = settings.model_copy(update={"relay_high_water": 3})
    assembly = Assembly(publishing_app(chosen), settings=chosen)
    queue = chosen.broker_key_prefix + chosen.queue
    client.lpush(queue, *(f"someone else's task {n}" for n in range(3)))  # no worker consumes them
    thread = assembly.relay()
    thread.start()
    try:
        waiting = new_event()
        due = new_event()
        store = EventStore(client, KeySpace(key_prefix), retention=3600)
        client.lrem(store.keys.inbox, 0, due)
        store.park(due, 0.0)  # a retry that is due
        wait_until(lambda: client.llen(queue) == 4, timeout=5, what="the due retry published")
        assert repr((due,)) in text(client.lindex(queue, 0) or b"")
        assert event_status(client, key_prefix, waiting) == "received"  # the queue is full: it waits
        for _ in range(3):
            client.rpop(queue)  # workers take the three tasks
        wait_until(lambda: event_status(client, key_prefix, waiting) == "queued", timeout=5, what="room")
    finally:
        thread.stop()
        assembly.close()
        assembly.celery.close()
    assert client.llen(queue) == 2
