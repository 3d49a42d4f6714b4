"""The guards a worker relies on, against real Redis and a real broker channel: the configuration check
refuses Celery's own defaults (what a renamed setting would leave in effect); the broker check names a
channel that is not ours and one whose Redis clients are no longer shared; the sweeper leaves an event whose
status it does not know to a person; threads asking a fresh assembly for its runtime at once all get the same
one; and `vehicle_state` reads for a tool on a connection of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

import kombu
import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

from eventstore.events import EventStore
from eventstore.keys import KeySpace
from testsupport.workers import accept_event, event_status
from workers.app import check_configuration, publishing_app
from workers.assembly import Assembly
from workers.broker import Channel, Transport, problems
from workers.process import Outcome, process_event
from workers.runtime import Runtime
from workers.settings import WorkerSettings
from workers.state import vehicle_state
from workers.sweeper import sweep

Maker = Callable[..., dict[str, Any]]


def test_the_configuration_check_refuses_celerys_own_defaults(settings: WorkerSettings) -> None:
    bare = Celery("bare", set_as_current=False)  # none of workers.app's settings in effect
    try:
        found = check_configuration(bare.conf, settings)
    finally:
        bare.close()
    assert found == [
        "task_acks_late must be True: with early acks a task dies with its worker",
        "task_reject_on_worker_lost must be True: a killed child would lose its message",
        "task_time_limit must be set: a run without a limit could outlast the visibility timeout",
    ]


def test_the_broker_check_names_kombus_own_channel(settings: WorkerSettings) -> None:
    with kombu.Connection(settings.broker_url, transport=kombu_redis.Transport) as connection:
        found = problems(connection.default_channel)
    assert len(found) == 1
    assert found[0].startswith("the broker channel is a Channel, not workers.broker.Channel (kombu ")
    assert "drop broker_transport from workers.app" in found[0]


class _Unshared(Channel):
    """Our channel as it would behave if kombu took a fresh client per command again."""

    def _create_client(self, asynchronous: bool = False) -> Any:
        return cast("Any", kombu_redis.Channel)._create_client(self, asynchronous=asynchronous)


class _UnsharedTransport(Transport):
    Channel = _Unshared


def test_the_broker_check_names_redis_clients_no_longer_shared(settings: WorkerSettings) -> None:
    with kombu.Connection(settings.broker_url, transport=_UnsharedTransport) as connection:
        found = problems(connection.default_channel)
    assert len(found) == 1
    assert found[0].startswith("kombu no longer takes its per-command Redis clients from _create_client")
    with kombu.Connection(settings.broker_url, transport=Transport) as connection:
        assert problems(connection.default_channel) == []  # ours, as installed


def test_the_sweeper_leaves_an_event_whose_status_it_does_not_know(
    client: redis.Redis, key_prefix: str, car: Maker, state_event: Maker
) -> None:
    store = EventStore(client, KeySpace(key_prefix), retention=3600)
    event_id = accept_event(
        client, key_prefix, state_event(car(), {"charge-ischarging": True}), received_at=0
    )
    client.lrem(store.keys.inbox, 0, event_id)
    client.hset(store.keys.event(event_id), "status", "quarantined")  # written by a newer version
    now = time.time()
    report = sweep(store, after=60, batch=10, now=now)
    assert (report.requeue, report.backlog, report.dropped) == ([], 0, 0)
    assert event_status(client, key_prefix, event_id) == "quarantined"
    assert client.zscore(store.keys.pending, event_id) == now  # looked at again only `after` s later
    assert sweep(store, after=60, batch=10, now=now + 1).requeue == []


def test_threads_asking_a_fresh_assembly_for_its_runtime_at_once_share_one(settings: WorkerSettings) -> None:
    # A threads pool's first tasks arrive together: one runtime (one Redis pool, one HTTP pool) for all.
    assembly = Assembly(publishing_app(settings), settings=settings)
    start = threading.Barrier(8)
    seen: list[Runtime] = []

    def first_task() -> None:
        start.wait()
        seen.append(assembly.runtime())

    threads = [threading.Thread(target=first_task) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen) == 8
        assert all(runtime is seen[0] for runtime in seen)
        assert repr(seen[0]) == f"Runtime(prefix={settings.event_key_prefix!r})"
    finally:
        assembly.close()
        assembly.celery.close()


def test_vehicle_state_for_a_tool_reads_with_its_own_connection(
    settings: WorkerSettings, make_runtime: Callable[..., Runtime], car: Maker, state_event: Maker
) -> None:
    runtime = make_runtime()
    vehicle = car()
    body = state_event(vehicle, {"x-y": 3})
    assert (
        process_event(runtime, accept_event(runtime.redis, settings.event_key_prefix, body)).outcome
        is Outcome.DONE
    )
    assert vehicle_state(settings, vehicle["id"])["x-y"].value == 3
    assert vehicle_state(settings, "unknown") == {}
