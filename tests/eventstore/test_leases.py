"""Leases: a run's lease is listed while it runs, renewed by its worker, and taken over once it ends."""

from __future__ import annotations

from collections.abc import Callable

import redis

from eventstore.events import BeginState, EventStore
from eventstore.keys import KeySpace
from eventstore.record import EventRecord


def test_begin_lists_the_lease_and_every_end_of_a_run_drops_it(
    client: redis.Redis, keys: KeySpace, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    done, retried, dead = (begun() for _ in range(3))
    assert client.zscore(keys.leases, done.id) == 1020.0
    assert store.done(done, {}, now=1001.0)
    assert store.retry(retried, {"outcome": "retry"}, delay=5, park=True, results={}, now=1001.0)
    assert store.dead_letter(dead, {"outcome": "failed"}, reason="test", results={}, now=1001.0)
    assert client.zcard(keys.leases) == 0
    replayed = begun()
    assert store.replay(replayed.id, now=1001.0)  # an operator's replay of a stuck run drops it too
    assert client.zscore(keys.leases, replayed.id) is None


def test_renew_extends_only_the_runs_that_still_hold_their_lease(
    client: redis.Redis, keys: KeySpace, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    mine, finished = begun(), begun()
    assert store.done(finished, {}, now=1001.0)
    runs = {mine.id: mine.run_id or "", finished.id: finished.run_id or "", "gone": "run"}
    assert store.renew(runs, lease=20, now=1010.0) == {mine.id}
    assert client.hget(keys.event(mine.id), "lease_until") == b"1030.0"
    assert client.zscore(keys.leases, mine.id) == 1030.0
    assert client.zscore(keys.pending, mine.id) == 1030.0
    assert client.zscore(keys.pending, "gone") is None  # renew never adds what is not pending
    assert store.renew({mine.id: "another-run"}, lease=20, now=1011.0) == set()  # fenced by the run id
    assert store.renew({}, lease=20) == set()


def test_an_ended_lease_is_taken_over_once_and_then_held(
    client: redis.Redis, keys: KeySpace, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    crashed, live = begun(), begun(now=1030.0)
    assert store.expired_leases(10, now=1019.0) == []
    assert store.expired_leases(10, now=1021.0) == [crashed.id]
    # Two relays that both read the ended lease: only the first takes it over.
    assert store.take_over([crashed.id, live.id], hold=120, now=1021.0) == [crashed.id]
    assert store.take_over([crashed.id], hold=120, now=1021.0) == []
    assert client.zscore(keys.leases, crashed.id) == 1141.0
    assert store.expired_leases(10, now=1045.0) == []  # held (and the live one runs till 1050)
    # The run enqueued again begins (the old lease ended): a fresh lease, listed again.
    again = store.begin(crashed.id, lease=20, task_id="new-task", now=1022.0)
    assert again.state is BeginState.OK
    assert again.record is not None
    assert again.record.attempts == 2
    assert client.zscore(keys.leases, crashed.id) == 1042.0
    assert store.take_over([], hold=120) == []


def test_take_over_drops_ids_that_finished_or_are_gone(
    client: redis.Redis, keys: KeySpace, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    finished = begun()
    client.hset(keys.event(finished.id), "status", "done")  # as a run that ended without its script
    client.zadd(keys.leases, {"gone": 900.0})
    assert sorted(store.expired_leases(10, now=1500.0)) == sorted([finished.id, "gone"])
    assert store.take_over([finished.id, "gone"], hold=120, now=1500.0) == []
    assert client.zcard(keys.leases) == 0


def test_a_begin_of_a_finished_or_missing_event_forgets_its_lease(
    client: redis.Redis, keys: KeySpace, store: EventStore, begun: Callable[..., EventRecord]
) -> None:
    record = begun()
    assert store.done(record, {}, now=1001.0)
    client.zadd(keys.leases, {record.id: 1.0, "missing": 1.0})
    assert store.begin(record.id, lease=20).state is BeginState.FINISHED
    assert store.begin("missing", lease=20).state is BeginState.MISSING
    assert client.zcard(keys.leases) == 0
