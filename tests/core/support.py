"""Shared by the smartcar_core tests: constants, the sync/async `Harness`, and `settle`.

Every HTTP test runs twice, once with the sync objects (`Vehicle`, `AuthClient`, `Smartcar`) and
once with the async ones, through the `harness` fixture: a test builds its object with
`harness.vehicle()` and reads the answer with `await settle(...)`, which awaits a coroutine and
passes a plain value through. So each assertion is written once and checked against both senders.
"""

from __future__ import annotations

import base64
import inspect
import json
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import respx

from smartcar_core import (
    AsyncAuthClient,
    AsyncSmartcar,
    AsyncVehicle,
    AuthClient,
    Meta,
    Origins,
    Smartcar,
    Vehicle,
    __version__,
)

ORIGINS = Origins()
API = "https://api.smartcar.com"
V3_API = "https://vehicle.api.smartcar.com"
AUTH = "https://auth.smartcar.com"
CONNECT = "https://connect.smartcar.com"
MANAGEMENT = "https://management.smartcar.com"
VEHICLE_ID = "36ab27d0-fd9d-4455-823a-ce30af709ffc"
ACCESS_TOKEN = "access-token-4f5e"
CLIENT_ID = "8229df9f-91a0-4ff0-a1ae-a1f38ee24d07"
CLIENT_SECRET = "client-secret-9c1d"
REDIRECT_URI = "https://example.com/home"
AMT = "amt-7b2a"
SMARTCAR_ENV = (
    "SMARTCAR_API_ORIGIN",
    "SMARTCAR_AUTH_ORIGIN",
    "SMARTCAR_CONNECT_ORIGIN",
    "SMARTCAR_MANAGEMENT_API_ORIGIN",
    "SMARTCAR_VEHICLE_API_V3_ORIGIN",
    "SMARTCAR_API_V3_ORIGIN",
    "SMARTCAR_CLIENT_ID",
    "SMARTCAR_CLIENT_SECRET",
    "SMARTCAR_REDIRECT_URI",
)

Kind = Literal["sync", "async"]


async def settle(value: Any) -> Any:
    """The result of a sync call as is; the awaited result of an async one."""
    if inspect.isawaitable(value):
        return await value
    return value


class Harness:
    """Builds the sync or the async flavour of each client, all sending to one respx router."""

    def __init__(self, kind: Kind, router: respx.Router) -> None:
        self.kind = kind
        self.router = router
        self.http = httpx.Client(transport=httpx.MockTransport(router.handler))
        self.async_http = httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler))

    def vehicle(
        self, vehicle_id: str = VEHICLE_ID, access_token: str = ACCESS_TOKEN, **options: Any
    ) -> Vehicle | AsyncVehicle:
        options.setdefault("origins", ORIGINS)
        if self.kind == "sync":
            return Vehicle(vehicle_id, access_token, http=self.http, **options)
        return AsyncVehicle(vehicle_id, access_token, http=self.async_http, **options)

    def auth(self, **options: Any) -> AuthClient | AsyncAuthClient:
        options.setdefault("client_id", CLIENT_ID)
        options.setdefault("client_secret", CLIENT_SECRET)
        options.setdefault("origins", ORIGINS)
        if self.kind == "sync":
            return AuthClient(http=self.http, **options)
        return AsyncAuthClient(http=self.async_http, **options)

    def smartcar(self, **options: Any) -> Smartcar | AsyncSmartcar:
        options.setdefault("origins", ORIGINS)
        if self.kind == "sync":
            return Smartcar(http=self.http, **options)
        return AsyncSmartcar(http=self.async_http, **options)

    def last_request(self) -> httpx.Request:
        request: httpx.Request = self.router.calls.last.request
        return request


BASE = f"{API}/v2.0/vehicles/{VEHICLE_ID}"
V3_BASE = f"{V3_API}/v3/vehicles/{VEHICLE_ID}"
REQUEST_ID = "26c14915-0c26-43c5-8e42-9edfc2a66a0f"
META_HEADERS = {
    "sc-request-id": REQUEST_ID,
    "sc-data-age": "2023-04-30T07:20:50.844Z",
    "sc-unit-system": "metric",
    "sc-fetched-at": "2023-04-30T07:20:51.844Z",
}
META = Meta(
    data_age=datetime(2023, 4, 30, 7, 20, 50, 844000, tzinfo=UTC),
    unit_system="metric",
    request_id=REQUEST_ID,
    fetched_at=datetime(2023, 4, 30, 7, 20, 51, 844000, tzinfo=UTC),
)


def assert_user_agent(request: httpx.Request) -> None:
    agent = request.headers["user-agent"]
    assert agent.startswith(f"smartcar-core/{__version__} (")
    assert "Python v" in agent
    assert "Smartcar/" not in agent  # we do not present ourselves as Smartcar's SDK


def assert_vehicle_headers(
    request: httpx.Request, *, token: str = ACCESS_TOKEN, unit_system: str = "metric"
) -> None:
    """The headers every vehicle call carries: Bearer token, unit system, JSON, our user agent."""
    assert request.headers["authorization"] == f"Bearer {token}"
    assert request.headers["sc-unit-system"] == unit_system
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert_user_agent(request)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def query(request: httpx.Request) -> list[tuple[str, str]]:
    """The decoded query parameters, in order."""
    return list(request.url.params.multi_items())


def json_of(request: httpx.Request) -> Any:
    return json.loads(request.content)
