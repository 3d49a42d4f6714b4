"""Redis down: 503 (Smartcar retries), nothing acknowledged, nothing half-stored; Redis back: accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from structlog.testing import capture_logs

from receiver.app import create_app
from receiver.settings import ReceiverSettings
from testsupport.receiver import Harness, TcpProxy, asgi_client

EventMaker = Callable[..., dict[str, Any]]

pytestmark = pytest.mark.anyio


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(redis_url)
    relay = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await relay.start()
    yield relay
    await relay.stop()


@pytest.fixture
async def via_proxy(
    make_settings: Callable[..., ReceiverSettings], proxy: TcpProxy, redis_url: str, harness: Harness
) -> AsyncIterator[Harness]:
    database = urlsplit(redis_url).path or "/0"
    settings = make_settings(redis_url=f"redis://127.0.0.1:{proxy.port}{database}", redis_timeout=0.5)
    async with asgi_client(create_app(settings)) as http:
        yield Harness(http, harness.redis, harness.keys, harness.amt)


async def test_redis_down_answers_503_and_acknowledges_nothing_then_accepts_when_back(
    via_proxy: Harness, proxy: TcpProxy, state_event: EventMaker
) -> None:
    event = state_event()
    assert (await via_proxy.http.get("/readyz")).status_code == 200
    await proxy.stop()

    with capture_logs() as logs:
        down = await via_proxy.deliver(event)
    assert down.status_code == 503
    assert down.headers["retry-after"] == "5"
    assert down.json() == {"error": "event store unavailable, retry later"}
    assert via_proxy.record(event["eventId"]) == {}
    assert via_proxy.inbox() == []
    assert not via_proxy.redis.exists(via_proxy.keys.seen(event["eventId"]))
    failure = next(entry for entry in logs if entry["event"] == "webhook_store_failed")
    assert (failure["event_id"], failure["outcome"], failure["log_level"]) == (
        event["eventId"],
        "unavailable",
        "error",
    )
    assert f":{proxy.port}" in failure["detail"]  # where the store was not found
    ready = await via_proxy.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"

    await proxy.start()
    back = await via_proxy.deliver(event)  # Smartcar's retry: same event
    assert back.json() == {"status": "accepted", "eventId": event["eventId"]}
    assert via_proxy.inbox() == [event["eventId"]]
    assert (await via_proxy.http.get("/readyz")).json() == {"status": "ready"}


async def test_a_receiver_started_while_redis_is_down_serves_once_it_is_back(
    make_settings: Callable[..., ReceiverSettings],
    proxy: TcpProxy,
    redis_url: str,
    harness: Harness,
    state_event: EventMaker,
) -> None:
    await proxy.stop()
    database = urlsplit(redis_url).path or "/0"
    settings = make_settings(redis_url=f"redis://127.0.0.1:{proxy.port}{database}", redis_timeout=0.5)
    app = create_app(settings)  # before capture_logs: creating an app configures structlog
    with capture_logs() as logs:
        async with asgi_client(app) as http:
            late = Harness(http, harness.redis, harness.keys, harness.amt)
            assert (await http.get("/healthz")).json() == {"status": "ok"}  # up, but not ready
            assert (await http.get("/readyz")).status_code == 503
            event = state_event()
            assert (await late.deliver(event)).status_code == 503
            await proxy.start()
            # the script was never loaded: the first EVALSHA meets NOSCRIPT and loads it
            assert (await late.deliver(event)).json()["status"] == "accepted"
    assert any(entry["event"] == "redis_unavailable_at_startup" for entry in logs)
    assert harness.inbox() == [event["eventId"]]


async def test_a_dead_port_answers_503(
    make_settings: Callable[..., ReceiverSettings], dead_redis_url: str, state_event: EventMaker, amt: str
) -> None:
    settings = make_settings(redis_url=dead_redis_url, redis_timeout=0.5, redis_retries=0)
    async with asgi_client(create_app(settings)) as http:
        response = await Harness(http, None, None, amt).deliver(state_event())  # type: ignore[arg-type] # - unread
    assert response.status_code == 503


async def test_a_connection_cut_mid_request_is_retried_on_a_new_one(
    via_proxy: Harness, proxy: TcpProxy, state_event: EventMaker
) -> None:
    await via_proxy.deliver(state_event())  # a pooled connection exists
    proxy.fail_next(b"EVALSHA", "cut")
    event = state_event()
    response = await via_proxy.deliver(event)
    assert response.json() == {"status": "accepted", "eventId": event["eventId"]}
    assert via_proxy.inbox().count(event["eventId"]) == 1


async def test_a_reply_lost_after_the_store_ran_is_retried_and_found_stored(
    via_proxy: Harness, proxy: TcpProxy, state_event: EventMaker
) -> None:
    event = state_event()
    proxy.fail_next(b"EVALSHA", "mute")  # the script runs, its answer never comes: a timeout
    response = await via_proxy.deliver(event)
    assert response.status_code == 200  # the retry meets the stored event: acknowledged, not stored twice
    assert response.json() == {"status": "duplicate", "eventId": event["eventId"]}
    assert via_proxy.inbox() == [event["eventId"]]


async def test_with_no_retries_a_cut_connection_answers_503(
    make_settings: Callable[..., ReceiverSettings],
    proxy: TcpProxy,
    redis_url: str,
    harness: Harness,
    state_event: EventMaker,
) -> None:
    database = urlsplit(redis_url).path or "/0"
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{proxy.port}{database}", redis_timeout=0.5, redis_retries=0
    )
    async with asgi_client(create_app(settings)) as http:
        strict = Harness(http, harness.redis, harness.keys, harness.amt)
        proxy.fail_next(b"EVALSHA", "cut")
        event = state_event()
        assert (await strict.deliver(event)).status_code == 503
        assert (await strict.deliver(event)).json()["status"] == "accepted"
