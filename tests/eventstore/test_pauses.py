"""Operator pauses in the store: the claim parks a paused vehicle's events (queued, far ahead, on its list),
a resume makes them due one interval apart, and the global drain's bucket shares a rate between relays."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from eventstore.events import EventStore, accept
from eventstore.keys import KeySpace
from eventstore.pauses import PARKED_FOR, Pauses, PauseState, RateError
from eventstore.status import Status
from smartcar_core.events import parse_envelope


def _accept(client: redis.Redis, keys: KeySpace, delivery: Callable[..., bytes], vehicle: str) -> str:
    raw = delivery(vehicle)
    envelope = parse_envelope(raw)
    assert accept(client, keys, envelope, raw)
    return envelope.event_id


def test_a_paused_vehicles_events_are_parked_by_the_claim_and_released_one_interval_apart(
    client: redis.Redis, keys: KeySpace, store: EventStore, delivery: Callable[..., bytes]
) -> None:
    pauses, now = Pauses(client, keys), time.time()
    pauses.pause_vehicles(["v-paused"], now=now - 5)
    pauses.pause_vehicles(["v-paused"], now=now)  # a second pause keeps the first's time
    assert pauses.paused_vehicles() == {"v-paused": now - 5}
    parked = [_accept(client, keys, delivery, "v-paused") for _ in range(3)]
    other = _accept(client, keys, delivery, "v-other")

    assert store.claim(10, now=now) == [other]  # the paused vehicle's are claimed, not handed on
    assert pauses.parked("v-paused") == parked  # oldest first
    assert pauses.parked_counts(["v-paused", "v-other"]) == {"v-paused": 3, "v-other": 0}
    for event_id in parked:
        record = store.load(event_id)
        assert record is not None
        assert record.status == Status.QUEUED  # not a dead letter, not a retry
        assert client.zscore(keys.pending, event_id) == pytest.approx(now + PARKED_FOR)
        assert client.zscore(keys.vehicle_index("v-paused"), event_id) is not None  # indexed as any claim
    assert store.stale(now + 86400, 10) == [other]  # the sweeper leaves the parked ones alone
    assert store.due(10, now=now + 86400) == []

    store.redis.hset(keys.event(parked[1]), "status", Status.DONE)  # one finished meanwhile (a replay ran it)
    client.zrem(keys.pending, parked[1])
    released_at = time.time()
    assert pauses.resume_vehicles(["v-paused"], rate=2.0, now=released_at) == 2
    assert pauses.paused_vehicles() == {}
    assert pauses.parked("v-paused") == []
    assert store.due(10, now=released_at) == [parked[0]]
    assert store.due(10, now=released_at + 0.4) == []
    assert store.due(10, now=released_at + 0.5) == [parked[2]]  # 1/rate later
    assert client.zscore(keys.pending, parked[2]) == pytest.approx(released_at + 0.5)
    later = _accept(client, keys, delivery, "v-paused")
    assert store.claim(10) == [later]  # no longer paused


def test_resuming_a_vehicle_without_a_rate_releases_all_at_once(
    client: redis.Redis, keys: KeySpace, store: EventStore, delivery: Callable[..., bytes]
) -> None:
    pauses, now = Pauses(client, keys), time.time()
    pauses.pause_vehicles(["v1", "v2"], now=now)
    ids = [_accept(client, keys, delivery, vehicle) for vehicle in ("v1", "v2", "v1")]
    assert store.claim(10, now=now) == []
    assert pauses.resume_vehicles([]) == 0
    assert pauses.resume_vehicles(["v1", "v2"], now=now) == 3
    assert sorted(store.due(10, now=now)) == sorted(ids)


def test_the_global_pause_and_its_drain(
    client: redis.Redis, keys: KeySpace, new_event: Callable[..., str]
) -> None:
    pauses, now = Pauses(client, keys), time.time()
    assert pauses.current() is None
    assert pauses.take(50, now=now) == -1  # nothing paused: no limit
    assert not pauses.resume()
    pauses.pause(reason="maintenance", now=now)
    pauses.pause(reason="maintenance", now=now + 9)
    assert pauses.state() == PauseState.PAUSED
    current = pauses.current()
    assert current is not None
    assert (current.state, current.since, current.reason, current.rate) == (
        PauseState.PAUSED,
        now,
        "maintenance",
        None,
    )
    assert pauses.take(50, now=now) == 0

    for _ in range(100):
        new_event()
    assert pauses.resume(rate=20.0, now=now)
    current = pauses.current()
    assert current is not None
    assert (current.state, current.rate) == (PauseState.DRAINING, 20.0)
    assert pauses.take(50, now=now) == 0  # the bucket starts empty: no burst at a resume
    assert pauses.take(50, now=now + 0.06) == 1
    assert pauses.take(50, now=now + 10) == 2  # at most a tenth of a second's worth is kept
    client.delete(keys.inbox)
    assert pauses.take(50, now=now + 11) == -1  # the inbox is empty: the drain is over
    assert pauses.current() is None

    pauses.pause(now=now)
    assert pauses.resume(now=now)  # at once
    assert pauses.state() is None
    with pytest.raises(RateError, match="more than 0"):
        pauses.resume(rate=0)
    with pytest.raises(RateError):
        pauses.resume_vehicles(["v1"], rate=-1)


def test_ids_given_back_keep_their_order(
    client: redis.Redis, keys: KeySpace, store: EventStore, new_event: Callable[..., str]
) -> None:
    ids = [new_event() for _ in range(4)]
    popped = store.wait_pop(1, 3)
    assert popped == ids[:3]
    pauses = Pauses(client, keys)
    pauses.give_back([])
    pauses.give_back(popped)
    assert store.pop(10) == ids
