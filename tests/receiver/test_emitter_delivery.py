"""Acceptance over real HTTP: the simulator's WebhookEmitter delivers signed events to the receiver under
uvicorn, with Smartcar's retry schedule (shrunk), and the event store is read back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from eventstore.keys import KeySpace
from receiver.app import create_app
from receiver.settings import ReceiverSettings
from smartcar_core.webhooks import hash_challenge
from smartcar_simulator import payloads
from smartcar_simulator.emitter import WebhookEmitter
from testsupport import wait_until_async
from testsupport.receiver import Harness, LiveReceiver, TcpProxy, read_inbox, read_record, serve

EventMaker = Callable[..., dict[str, Any]]
FAST = 0.002  # Smartcar's 25/50/100 s retries become 50/100/200 ms

pytestmark = pytest.mark.anyio


@pytest.fixture
async def emitter(live: LiveReceiver, amt: str) -> AsyncIterator[WebhookEmitter]:
    async with WebhookEmitter(target_url=live.webhook_url, amt=amt, time_scale=FAST, timeout=15.0) as sender:
        yield sender


@pytest.mark.parametrize("legacy", [False, True], ids=["4.0", "legacy"])
async def test_verify_in_both_envelopes(
    emitter: WebhookEmitter, live: LiveReceiver, amt: str, webhook_id: str, legacy: bool
) -> None:
    attempts = await emitter.deliver(payloads.verify_event(webhook_id=webhook_id, legacy=legacy))
    assert [attempt.status_code for attempt in attempts] == [200]
    challenge = "5d569643-3a47-4cd1-a3ec-db5fc1f6f03b"
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            live.webhook_url,
            json=payloads.verify_event(challenge, webhook_id=webhook_id, legacy=legacy),
        )
    assert answer.json() == {"challenge": hash_challenge(amt, challenge)}


async def test_a_signed_verify(live: LiveReceiver, amt: str, webhook_id: str) -> None:
    async with WebhookEmitter(target_url=live.webhook_url, amt=amt, sign_verify=True) as sender:
        attempts = await sender.deliver(payloads.verify_event(webhook_id=webhook_id))
    assert attempts[0].status_code == 200


def _events(
    state_event: EventMaker, error_event: EventMaker, vehicle: dict[str, Any], webhook_id: str
) -> Iterator[dict[str, Any]]:
    yield state_event("A")
    yield state_event("B")
    yield state_event("B", mode="TEST")
    yield error_event()
    for name in ("eventBased", "scheduled", "dynamic"):
        yield payloads.legacy_event(name, webhook_id=webhook_id, vehicle_id=vehicle["id"])


async def test_every_event_kind_is_delivered_once_and_stored_with_its_delivery_id(  # noqa: PLR0917 - fixtures
    emitter: WebhookEmitter,
    store: redis.Redis,
    keys: KeySpace,
    state_event: EventMaker,
    error_event: EventMaker,
    vehicle: dict[str, Any],
    webhook_id: str,
) -> None:
    delivered = []
    for event in _events(state_event, error_event, vehicle, webhook_id):
        attempts = await emitter.deliver(event)
        assert [attempt.status_code for attempt in attempts] == [200], attempts
        delivered.append(attempts[0])
    assert sorted(read_inbox(store, keys)) == sorted(attempt.event_id for attempt in delivered)
    for attempt in delivered:
        stored = read_record(store, keys, attempt.event_id)
        assert stored["status"] == "received"
        if attempt.delivery_id is not None:  # legacy envelopes carry no delivery id
            assert stored["deliveries"] == attempt.delivery_id
    assert {read_record(store, keys, attempt.event_id)["type"] for attempt in delivered} == {
        "VEHICLE_STATE",
        "VEHICLE_ERROR",
        "LEGACY_EVENTBASED",
        "LEGACY_SCHEDULED",
        "LEGACY_DYNAMIC",
    }


async def test_the_same_event_delivered_five_times_at_once_is_stored_and_queued_once(
    emitter: WebhookEmitter, store: redis.Redis, keys: KeySpace, state_event: EventMaker
) -> None:
    event = state_event()
    results = await asyncio.gather(*(emitter.deliver(event) for _ in range(5)))
    assert [attempts[-1].status_code for attempts in results] == [200] * 5
    assert read_inbox(store, keys) == [event["eventId"]]
    assert store.zcard(keys.pending) == 1
    recorded = set(read_record(store, keys, event["eventId"])["deliveries"].split(","))
    assert recorded == {attempts[0].delivery_id for attempts in results}


async def test_a_forger_without_the_amt_is_refused_every_retry_and_nothing_is_stored(
    live: LiveReceiver, store: redis.Redis, keys: KeySpace, state_event: EventMaker
) -> None:
    async with WebhookEmitter(
        target_url=live.webhook_url, amt="amt-of-a-forger-0000", time_scale=0
    ) as forger:
        attempts = await forger.deliver(state_event())
    assert [attempt.status_code for attempt in attempts] == [401] * 4
    assert read_inbox(store, keys) == []


async def test_a_burst_is_absorbed(
    emitter: WebhookEmitter, store: redis.Redis, keys: KeySpace, state_event: EventMaker
) -> None:
    events = [state_event("A" if n % 2 else "B") for n in range(200)]
    report = await emitter.burst(events, rate=2000.0, concurrency=32)
    assert report.by_status == {"200": 200}
    assert len(read_inbox(store, keys)) == 200


async def test_redis_down_then_back_within_smartcars_retries_loses_nothing(
    make_settings: Callable[..., ReceiverSettings], redis_url: str, harness: Harness, state_event: EventMaker
) -> None:
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{proxy.port}{target.path or '/0'}", redis_timeout=0.5
    )
    event = state_event()
    with serve(create_app(settings), log_level="critical") as live:
        async with WebhookEmitter(
            target_url=live.webhook_url, amt=harness.amt, time_scale=0.02, timeout=5.0
        ) as sender:
            delivery = sender.send(event)  # Redis is down: nothing listens behind the proxy yet
            await wait_until_async(
                lambda: len(sender.attempts) >= 1, timeout=5, interval=0.01, what="the first attempt"
            )
            assert sender.attempts[0].status_code == 503
            assert harness.inbox() == []
            await proxy.start()
            try:
                attempts = await delivery
            finally:
                await proxy.stop()
    assert attempts[-1].status_code == 200
    assert all(attempt.status_code == 503 for attempt in attempts[:-1])
    assert harness.inbox() == [event["eventId"]]
    assert harness.record(event["eventId"])["deliveries"] == attempts[-1].delivery_id
