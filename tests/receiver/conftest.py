"""Fixtures of the receiver tests: settings on the test Redis (a key prefix of each test's own), the app
in-process or under uvicorn, Smartcar-shaped events from the simulator's payload builders, and a plain
Redis client to read the event store back. Constants tests need are fixtures too (tests import no conftest).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import structlog

from eventstore.keys import KeySpace
from receiver.app import create_app
from receiver.settings import ReceiverSettings
from smartcar_simulator import payloads
from testsupport import free_port
from testsupport.receiver import Harness, LiveReceiver, asgi_client, serve

AMT = "amt-test-current-0123456789"
WEBHOOK_ID = "5a8e5e38-1e12-4011-a36d-56f120053f9e"
VEHICLE = {
    "id": "9af13248-3b73-4c9d-9a4b-d937ce6bc8e2",
    "make": "TESLA",
    "model": "Model 3",
    "year": 2020,
    "user_id": "93b3ea96-ca37-43a9-9073-f4334719a0b7",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _structlog_restored() -> Iterator[None]:
    """Creating an app configures structlog for the process: give the next test what this one found."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def amt() -> str:
    return AMT


@pytest.fixture
def vehicle() -> dict[str, Any]:
    return dict(VEHICLE)


@pytest.fixture
def webhook_id() -> str:
    return WEBHOOK_ID


@pytest.fixture
def make_settings(redis_url: str, key_prefix: str) -> Callable[..., ReceiverSettings]:
    def make(**overrides: Any) -> ReceiverSettings:
        values: dict[str, Any] = {
            "smartcar_amt": AMT,
            "redis_url": redis_url,
            "event_key_prefix": key_prefix,
            "log_format": "json",
            "gc_freeze": False,
            **overrides,
        }
        return ReceiverSettings(**values)

    return make


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    """The test Redis, read back as the event store (a plain client, as an operator would): not named
    `client`, which is the receiver's HTTP client here."""
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


@pytest.fixture
async def client(make_settings: Callable[..., ReceiverSettings]) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(make_settings())) as http:
        yield http


@pytest.fixture
def harness(client: httpx.AsyncClient, store: redis.Redis, keys: KeySpace) -> Harness:
    return Harness(client, store, keys, AMT)


@pytest.fixture
def live(make_settings: Callable[..., ReceiverSettings]) -> Iterator[LiveReceiver]:
    with serve(create_app(make_settings()), log_level="warning") as receiver:
        yield receiver


@pytest.fixture
def state_event() -> Callable[..., dict[str, Any]]:
    """VEHICLE_STATE events (shape "A" or "B", plus any `vehicle_state_event` keyword), two signals each."""

    def make(shape: payloads.Shape = "A", **kwargs: Any) -> dict[str, Any]:
        now = payloads.now_ms()
        signals = [
            payloads.signal_item(
                "tractionbattery-stateofcharge",
                name="StateOfCharge",
                group="TractionBattery",
                body={"unit": "percent", "value": 78},
                oem_updated_at=now - 2000,
                retrieved_at=now - 1000,
                shape=shape,
            ),
            payloads.signal_item(
                "charge-ischarging",
                name="IsCharging",
                group="Charge",
                body={"value": True},
                oem_updated_at=now - 2000,
                retrieved_at=now - 1000,
                shape=shape,
            ),
        ]
        return payloads.vehicle_state_event(
            VEHICLE,
            signals,
            webhook_id=WEBHOOK_ID,
            triggers=["tractionbattery-stateofcharge"],
            shape=shape,
            **kwargs,
        )

    return make


@pytest.fixture
def error_event() -> Callable[..., dict[str, Any]]:
    def make(**kwargs: Any) -> dict[str, Any]:
        errors = [payloads.error_item("COMPATIBILITY", "VEHICLE_NOT_CAPABLE")]
        return payloads.vehicle_error_event(VEHICLE, errors, webhook_id=WEBHOOK_ID, **kwargs)

    return make


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL where nothing listens (a port just taken from the OS and given back)."""
    return f"redis://127.0.0.1:{free_port()}/0"
