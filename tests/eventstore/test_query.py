"""`EventQuery`: the narrowest index is the one read, pages never repeat or skip (ties at one time
included), and an entry whose record is gone is dropped when met."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from eventstore.events import EventStore, accept
from eventstore.keys import KeySpace
from eventstore.query import CursorError, EventFilter, EventQuery
from eventstore.record import history_entry
from eventstore.status import Status
from smartcar_core.events import parse_envelope
from smartcar_simulator import payloads

ASLEEP = {"class": "VehicleStateError", "type": "VEHICLE_STATE", "code": "ASLEEP"}


def _event(store: EventStore, vehicle: str, *, at: float, failed: bool) -> str:
    car = {"id": vehicle, "make": "TESLA", "model": "Model 3", "year": 2022, "user_id": "u1"}
    item = payloads.signal_item(
        "charge-ischarging", name="IsCharging", group="Charge", body={"value": True}, oem_updated_at=1,
        retrieved_at=1,
    )  # fmt: skip
    raw = json.dumps(
        payloads.vehicle_state_event(car, [item], webhook_id="wh", triggers=["charge-ischarging"])
    )
    envelope = parse_envelope(raw.encode())
    assert accept(store.redis, store.keys, envelope, raw.encode(), received_at=at)
    begun = store.begin(envelope.event_id, lease=30, now=at)
    assert begun.record is not None
    if failed:
        entry = history_entry(attempt=1, outcome="failed", error=ASLEEP, now=at)
        assert store.dead_letter(begun.record, entry, reason="never", results={}, now=at)
    else:
        assert store.done(begun.record, {}, now=at)
    return envelope.event_id


@pytest.fixture
def store(client: redis.Redis, keys: KeySpace) -> EventStore:
    return EventStore(client, keys, retention=3600)


def test_the_narrowest_index_is_the_one_read(client: redis.Redis, keys: KeySpace, store: EventStore) -> None:
    failed = [_event(store, f"car-{i % 10}", at=1000.0 + i, failed=True) for i in range(30)]
    for i in range(50):
        _event(store, "car-0", at=2000.0 + i, failed=False)
    query = EventQuery(client, keys)
    # 30 failed, 53 of car-0: the failed index is read, and only it.
    page = query.page(EventFilter(statuses=("failed",), vehicle_id="car-0"), limit=50)
    assert [record.id for record in page.records] == [failed[i] for i in (20, 10, 0)]
    assert (page.source.keys, page.read) == ((keys.status_index(Status.FAILED),), 30)
    # car-7 has 3 events: its index is read, not the 30 failed ones.
    page = query.page(EventFilter(statuses=("failed",), vehicle_id="car-7"), limit=50)
    assert len(page.records) == page.read == 3
    assert page.source.keys == (keys.vehicle_index("car-7"),)  # no received index: not asked for
    assert query.plan(EventFilter(vehicle_id="car-7"))[1][1] == 3  # the vehicle's and its received ones


def test_pages_through_a_tie_longer_than_a_batch(
    client: redis.Redis, keys: KeySpace, store: EventStore
) -> None:
    """250 dead letters of one second (a burst failing together): every one once, in the index's order."""
    ids = [_event(store, "car-1", at=5000.0, failed=True) for _ in range(250)]
    query = EventQuery(client, keys)
    wanted = EventFilter(statuses=("failed",))
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        page = query.page(wanted, limit=7, cursor=cursor)
        seen += [record.id for record in page.records]
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)


def test_an_entry_whose_record_went_is_dropped_when_met(
    client: redis.Redis, keys: KeySpace, store: EventStore
) -> None:
    kept = _event(store, "car-1", at=1000.0, failed=True)
    gone = _event(store, "car-1", at=1001.0, failed=True)
    client.delete(keys.event(gone))
    page = EventQuery(client, keys).page(EventFilter(statuses=("failed",)), limit=10)
    assert [record.id for record in page.records] == [kept]
    assert page.dropped == [gone]
    assert client.zscore(keys.status_index(Status.FAILED), gone) is None
    assert client.zscore(keys.vehicle_index("car-1"), gone) is not None  # not the index it came from


def test_a_reason_asks_for_dead_letters_only(client: redis.Redis, keys: KeySpace, store: EventStore) -> None:
    failed = _event(store, "car-1", at=1000.0, failed=True)
    query = EventQuery(client, keys)
    assert [r.id for r in query.page(EventFilter(reason="NEVER"), limit=5).records] == [failed]
    assert query.page(EventFilter(reason="never", statuses=("done",)), limit=5).records == []


def test_a_cursor_from_elsewhere_is_refused(client: redis.Redis, keys: KeySpace) -> None:
    query = EventQuery(client, keys)
    for cursor in ("x", "0:nan-ish:a", "5:1.0:a", "0:1.0:"):
        with pytest.raises(CursorError):
            query.page(EventFilter(), limit=1, cursor=cursor)
    assert query.page(EventFilter(), limit=1, cursor=f"0:1.0:{uuid.uuid4()}").records == []


def test_pages_merge_the_status_indexes_in_time_order(
    client: redis.Redis, keys: KeySpace, store: EventStore
) -> None:
    """No status asked for: the seven status indexes are walked together, newest first, page by page."""
    made = [_event(store, "car-1", at=1000.0 + i, failed=i % 2 == 0) for i in range(150)]
    query = EventQuery(client, keys)
    seen: list[str] = []
    cursor = None
    while True:
        page = query.page(EventFilter(), limit=10, cursor=cursor)
        seen += [record.id for record in page.records]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == made[::-1]
