"""Helpers for testing handlers against real Redis: store a delivery as the receiver does, then poll.

event_id = accept_event(client, "sc:", payload)        # record + inbox + pending, one round trip
result = process_event(runtime, event_id)                # or let a worker's relay pick it up
wait_until(lambda: event_status(client, "sc:", event_id) == "done")
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import redis

from receiver.store import ACCEPT_SCRIPT, DEFAULT_DEDUPE_SECONDS, KeySpace
from smartcar_core.events import parse_envelope
from workers.codec import text

T = TypeVar("T")


def accept_event(
    client: redis.Redis, prefix: str, body: Mapping[str, Any] | bytes, *, received_at: float | None = None
) -> str:
    """Store a delivery exactly as the receiver does (`ACCEPT_SCRIPT`); returns its event id."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    envelope = parse_envelope(raw)
    keys = KeySpace(prefix)
    client.eval(
        ACCEPT_SCRIPT,
        4,
        keys.seen(envelope.event_id),
        keys.event(envelope.event_id),
        keys.inbox,
        keys.pending,
        envelope.event_id,
        envelope.delivery_id or "",
        DEFAULT_DEDUPE_SECONDS,
        repr(time.time() if received_at is None else received_at),
        raw,
        envelope.event_type,
        envelope.vehicle_id or "",
        envelope.user_id or "",
        envelope.webhook_id or "",
        envelope.mode or "",
        envelope.version,
        "1" if envelope.is_test else "0",
    )
    return envelope.event_id


def event_status(client: redis.Redis, prefix: str, event_id: str) -> str | None:
    value = client.hget(KeySpace(prefix).event(event_id), "status")
    return text(value) if value is not None else None


def wait_until(
    predicate: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05, what: str = "the condition"
) -> T:
    """Poll `predicate` until it returns something truthy (returned); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
