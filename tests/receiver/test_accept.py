"""Genuine deliveries: every envelope generation is stored before the 200, once, and queued for workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from receiver.app import create_app
from receiver.settings import ReceiverSettings
from smartcar_simulator import payloads
from testsupport.receiver import Harness, asgi_client, body_of

EventMaker = Callable[..., dict[str, Any]]
OLD_AMT = "amt-test-previous-9876543210"

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("shape", ["A", "B"])
async def test_vehicle_state_is_stored_raw_and_queued(
    harness: Harness, state_event: EventMaker, vehicle: dict[str, Any], webhook_id: str, shape: payloads.Shape
) -> None:
    event = state_event(shape)
    before = time.time()
    response = await harness.deliver(event)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "accepted", "eventId": event["eventId"]}

    stored = harness.record(event["eventId"])
    assert stored["raw"] == body_of(event)  # the exact bytes that were signed
    assert stored["type"] == "VEHICLE_STATE"
    assert stored["vehicle_id"] == vehicle["id"]
    assert stored["user_id"] == vehicle["user_id"]
    assert stored["webhook_id"] == webhook_id
    assert stored["deliveries"] == event["meta"]["deliveryId"]
    assert stored["status"] == "received"
    assert (stored["version"], stored["mode"], stored["test"], stored["attempts"]) == (
        "4.0",
        "LIVE",
        "0",
        "0",
    )
    assert before <= float(stored["received_at"]) <= time.time()
    assert harness.inbox() == [event["eventId"]]
    pending = harness.redis.zscore(harness.keys.pending, event["eventId"])
    assert pending == pytest.approx(float(stored["received_at"]))
    assert harness.redis.ttl(harness.keys.seen(event["eventId"])) > 7 * 24 * 3600 - 60


async def test_vehicle_error_is_accepted(harness: Harness, error_event: EventMaker) -> None:
    event = error_event()
    response = await harness.deliver(event)
    assert response.json() == {"status": "accepted", "eventId": event["eventId"]}
    assert harness.record(event["eventId"])["type"] == "VEHICLE_ERROR"


async def test_vehicle_id_is_read_from_data_when_the_top_level_one_is_absent(
    harness: Harness, state_event: EventMaker, vehicle: dict[str, Any]
) -> None:
    event = state_event("B")
    assert "vehicleId" not in event
    assert (await harness.deliver(event)).status_code == 200
    assert harness.record(event["eventId"])["vehicle_id"] == vehicle["id"]


@pytest.mark.parametrize("name", ["eventBased", "scheduled", "dynamic"])
async def test_legacy_events_are_accepted(
    harness: Harness, vehicle: dict[str, Any], webhook_id: str, name: payloads.LegacyEventName
) -> None:
    event = payloads.legacy_event(name, webhook_id=webhook_id, vehicle_id=vehicle["id"])
    response = await harness.deliver(event)
    assert response.status_code == 200
    event_id = response.json()["eventId"]
    stored = harness.record(event_id)
    assert (stored["type"], stored["version"]) == (f"LEGACY_{name.upper()}", "2.0")
    assert stored["vehicle_id"] == vehicle["id"]
    assert harness.inbox() == [event_id]


async def test_unknown_event_types_are_stored_not_dropped(harness: Harness) -> None:
    event = {"eventId": "evt-unknown-1", "eventType": "SOMETHING_NEW", "data": {}, "meta": {"version": "4.0"}}
    response = await harness.deliver(event)
    assert response.json() == {"status": "accepted", "eventId": "evt-unknown-1"}
    assert harness.record("evt-unknown-1")["type"] == "SOMETHING_NEW"
    assert harness.inbox() == ["evt-unknown-1"]


async def test_test_mode_events_are_stored_and_marked(harness: Harness, state_event: EventMaker) -> None:
    event = state_event("B", mode="TEST")
    assert (await harness.deliver(event)).json()["status"] == "accepted"
    stored = harness.record(event["eventId"])
    assert (stored["test"], stored["mode"]) == ("1", "TEST")
    assert harness.inbox() == [event["eventId"]]


async def test_the_previous_amt_is_accepted_during_a_rotation(
    make_settings: Callable[..., ReceiverSettings], harness: Harness, state_event: EventMaker
) -> None:
    app = create_app(make_settings(smartcar_amt=f"{harness.amt}, {OLD_AMT}"))
    async with asgi_client(app) as http:
        rotating = Harness(http, harness.redis, harness.keys, harness.amt)
        new, old = state_event(), state_event()
        assert (await rotating.deliver(new)).status_code == 200
        assert (await rotating.deliver(old, amt=OLD_AMT)).status_code == 200
    assert sorted(harness.inbox()) == sorted([new["eventId"], old["eventId"]])


async def test_a_redelivery_is_a_duplicate_recorded_but_not_queued_again(
    harness: Harness, state_event: EventMaker
) -> None:
    event = state_event()
    retry = {**event, "meta": {**event["meta"], "deliveryId": "retry-delivery-2"}}
    assert (await harness.deliver(event)).json()["status"] == "accepted"
    response = await harness.deliver(retry)
    assert response.status_code == 200
    assert response.json() == {"status": "duplicate", "eventId": event["eventId"]}
    assert harness.inbox() == [event["eventId"]]
    stored = harness.record(event["eventId"])
    assert stored["deliveries"] == f"{event['meta']['deliveryId']},retry-delivery-2"
    assert stored["raw"] == body_of(event)  # the first copy is kept as it was


async def test_a_replayed_body_does_not_grow_the_record(harness: Harness, state_event: EventMaker) -> None:
    event = state_event()
    for _ in range(3):
        assert (await harness.deliver(event)).status_code == 200
    assert harness.record(event["eventId"])["deliveries"] == event["meta"]["deliveryId"]


async def test_five_concurrent_deliveries_store_and_queue_once(
    harness: Harness, state_event: EventMaker
) -> None:
    event = state_event()
    attempts = [{**event, "meta": {**event["meta"], "deliveryId": f"delivery-{n}"}} for n in range(5)]
    responses = await asyncio.gather(*(harness.deliver(attempt) for attempt in attempts))
    assert [response.status_code for response in responses] == [200] * 5
    assert sorted(response.json()["status"] for response in responses) == ["accepted"] + ["duplicate"] * 4
    assert harness.inbox() == [event["eventId"]]
    assert harness.redis.zcard(harness.keys.pending) == 1
    deliveries = harness.record(event["eventId"])["deliveries"].split(",")
    assert sorted(deliveries) == [f"delivery-{n}" for n in range(5)]


async def test_many_events_at_once_each_get_their_own_answer(
    harness: Harness, state_event: EventMaker
) -> None:
    events = [state_event("A" if n % 2 else "B") for n in range(300)]
    events += events[:20]  # redeliveries, in the same batches as their first delivery
    responses = await asyncio.gather(*(harness.deliver(event) for event in events))
    assert [response.json()["eventId"] for response in responses] == [event["eventId"] for event in events]
    statuses = [response.json()["status"] for response in responses]
    assert (statuses.count("accepted"), statuses.count("duplicate")) == (300, 20)
    assert sorted(harness.inbox()) == sorted(event["eventId"] for event in events[:300])


async def test_a_replay_older_than_the_dedupe_window_is_refused(
    harness: Harness, state_event: EventMaker
) -> None:
    old = state_event()
    old["meta"]["deliveredAt"] = int((time.time() - 8 * 24 * 3600) * 1000)
    response = await harness.deliver(old)
    assert response.status_code == 400
    assert "older than the dedupe window" in response.json()["error"]
    assert harness.inbox() == []


def _iso(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def _naive_iso(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))


# Every form of `meta.deliveredAt` that is accepted is read, and so checked for its age.
TIME_FORMATS = [
    pytest.param(lambda now: int(now * 1000), id="milliseconds"),
    pytest.param(int, id="seconds"),
    pytest.param(_iso, id="iso"),
    pytest.param(_naive_iso, id="iso-without-zone-is-utc"),
    pytest.param(lambda now: str(int(now * 1000)), id="milliseconds-as-text"),
    pytest.param(lambda now: str(int(now)), id="seconds-as-text"),
]


@pytest.mark.parametrize("delivered_at", TIME_FORMATS)
async def test_recent_deliveries_in_every_time_format_are_accepted(
    harness: Harness, state_event: EventMaker, delivered_at: Callable[[float], object]
) -> None:
    event = state_event()
    event["meta"]["deliveredAt"] = delivered_at(time.time())
    assert (await harness.deliver(event)).json()["status"] == "accepted"


@pytest.mark.parametrize("delivered_at", TIME_FORMATS)
async def test_old_deliveries_in_every_time_format_are_read_as_replays(
    harness: Harness, state_event: EventMaker, delivered_at: Callable[[float], object]
) -> None:
    event = state_event()
    event["meta"]["deliveredAt"] = delivered_at(time.time() - 8 * 24 * 3600)
    response = await harness.deliver(event)
    assert response.status_code == 400
    assert "older than the dedupe window" in response.json()["error"]
    assert harness.inbox() == []


async def test_an_old_iso_delivery_time_is_read_as_a_replay(
    harness: Harness, state_event: EventMaker
) -> None:
    event = state_event()
    event["meta"]["deliveredAt"] = "2020-01-01T00:00:00.000Z"
    assert (await harness.deliver(event)).status_code == 400
