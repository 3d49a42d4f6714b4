"""Fixtures of the event store's tests: a bytes client on the test Redis, the test's key space, events."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis

from eventstore.events import BeginState, EventStore, accept
from eventstore.keys import KeySpace
from eventstore.record import EventRecord
from smartcar_core.events import parse_envelope
from testsupport.deliveries import delivery_body


@pytest.fixture
def store(client: redis.Redis, keys: KeySpace) -> EventStore:
    return EventStore(client, keys, retention=3600)


def _delivery(vehicle_id: str | None = None) -> bytes:
    """A VEHICLE_STATE body of its own event id, as Smartcar would sign it."""
    return delivery_body(vehicle_id or str(uuid.uuid4()), str(uuid.uuid4()), "wh")


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
