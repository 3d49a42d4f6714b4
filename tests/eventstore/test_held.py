"""Events held for re-consent: parked far ahead under their vehicle, released by a new pair in the put's own
script, or by `release`; a release never strands an event a run is about to park."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from eventstore.events import EventStore
from eventstore.grants import GrantStore
from eventstore.held import HOLD_SECONDS, HeldEvents
from eventstore.keys import KeySpace
from eventstore.record import history_entry
from eventstore.status import Status


def _hold(store: EventStore, held: HeldEvents, vehicle_id: str, event_id: str, now: float) -> None:
    """What a run does: list the event, then park it far ahead with a history entry."""
    held.hold(vehicle_id, event_id)
    begin = store.begin(event_id, lease=20, now=now)
    assert begin.record is not None
    entry = history_entry(attempt=1, outcome="held", reason="waiting for re-consent", now=now)
    assert store.retry(begin.record, entry, delay=HOLD_SECONDS, park=True, results={}, now=now)


def test_a_new_pair_releases_the_vehicles_held_events_at_once(
    client: redis.Redis, keys: KeySpace, store: EventStore, new_event: Callable[..., str]
) -> None:
    held, grants, now = HeldEvents(client, keys), GrantStore(client, keys), time.time()
    held.mark(["v1", "v2"], now=now - 50)
    held.mark(["v1"], now=now)  # a later mark keeps the first time: the grace period runs from there
    assert held.since("v1") == now - 50
    assert held.vehicles() == 2
    first, second = new_event(), new_event()
    _hold(store, held, "v1", first, now)
    _hold(store, held, "v2", second, now)
    assert held.events("v1") == [first]
    assert held.counts(["v1", "v2", "v3"]) == {"v1": 1, "v2": 1, "v3": 0}
    assert store.due(10, now=now + 86400) == []  # parked far beyond any grace period
    assert held.expired(now - 10, limit=10) == ["v1", "v2"]

    put_at = time.time()
    expiry = {"expires_at": now + 7200, "refresh_expires_at": now + 9e5}
    grants.put("g1", data="sealed", vehicles=["v1"], user_id="u1", now=put_at, **expiry)
    assert held.since("v1") is None
    assert held.since("v2") is not None
    assert held.events("v1") == []
    assert store.due(10, now=put_at + 1) == [first]  # the relay publishes it now
    assert client.zscore(keys.pending, first) is not None
    assert float(client.zscore(keys.pending, first) or 0) <= put_at + 1
    record = store.load(first)
    assert record is not None
    assert record.status == Status.RETRYING
    assert record.history[-1]["outcome"] == "held"
    assert grants.lookup("v1") == ("g1", None)
    assert grants.lookup("v2") == (None, held.since("v2"))


def test_a_release_keeps_an_id_still_running_and_drops_a_finished_one(
    client: redis.Redis, keys: KeySpace, store: EventStore, new_event: Callable[..., str]
) -> None:
    held, now = HeldEvents(client, keys), time.time()
    assert held.release([]) == 0
    held.mark([])  # nothing to mark
    running, finished, gone = new_event(), new_event(), "never-stored"
    for event_id in (running, finished, gone):
        held.hold("v1", event_id)
    run = store.begin(running, lease=20, now=now)  # between its listing and its park: pending, not parked
    assert run.record is not None
    begin = store.begin(finished, lease=20, now=now)
    assert begin.record is not None
    assert store.done(begin.record, {}, now=now)
    held.mark(["v1"], now=now)
    assert held.release(["v1"], now=now) == 0
    assert held.events("v1") == [running]  # its run's own look releases it once parked
    assert held.vehicles() == 0
    entry = history_entry(attempt=1, outcome="held", now=now)
    assert store.retry(run.record, entry, delay=HOLD_SECONDS, park=True, results={}, now=now)
    assert held.release(["v1"], now=now + 1) == 1
    assert store.due(10, now=now + 2) == [running]
