"""Fixtures of the event store's tests: a bytes client on the test Redis, the test's key space, events."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
import redis

from eventstore.events import BeginState, EventStore, accept
from eventstore.keys import KeySpace
from eventstore.record import EventRecord
from smartcar_core.events import parse_envelope
from smartcar_simulator import payloads


@pytest.fixture
def store(client: redis.Redis, keys: KeySpace) -> EventStore:
    return EventStore(client, keys, retention=3600)


def _delivery(vehicle_id: str | None = None) -> bytes:
    """A VEHICLE_STATE body of its own event id, as Smartcar would sign it."""
    vehicle = {"id": vehicle_id or str(uuid.uuid4()), "make": "TESLA", "model": "Model 3", "year": 2022}
    vehicle["user_id"] = str(uuid.uuid4())
    now = payloads.now_ms()
    item = payloads.signal_item(
        "charge-ischarging",
        name="IsCharging",
        group="Charge",
        body={"value": True},
        oem_updated_at=now,
        retrieved_at=now,
    )
    event = payloads.vehicle_state_event(vehicle, [item], webhook_id="wh", triggers=["charge-ischarging"])
    return json.dumps(event).encode()


@pytest.fixture
def delivery() -> Callable[..., bytes]:
    """`delivery(vehicle_id=None)`: a VEHICLE_STATE body of its own event id."""
    return _delivery


@pytest.fixture
def new_event(client: redis.Redis, keys: KeySpace) -> Callable[..., str]:
    """`new_event(received_at=None)`: accept a new delivery as the receiver does; returns its id."""

    def make(received_at: float | None = None) -> str:
        raw = _delivery()
        envelope = parse_envelope(raw)
        assert accept(client, keys, envelope, raw, received_at=received_at)
        return envelope.event_id

    return make


@pytest.fixture
def begun(store: EventStore, new_event: Callable[..., str]) -> Callable[..., EventRecord]:
    """`begun(now=1000.0)`: a new event (received a second before `now`) begun with a 20 s lease at
    `now`; its record."""

    def make(*, now: float = 1000.0) -> EventRecord:
        begin = store.begin(new_event(received_at=now - 1), lease=20, now=now)
        assert begin.state is BeginState.OK
        assert begin.record is not None
        return begin.record

    return make
