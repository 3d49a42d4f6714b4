"""Origins from the environment, the process-wide API version, timeouts and the shared connection pools."""

from __future__ import annotations

import asyncio
import platform

import httpx
import pytest
import respx

from core.support import ACCESS_TOKEN, BASE, VEHICLE_ID, Harness, settle
from smartcar_core import (
    AsyncVehicle,
    AuthClient,
    Origins,
    Smartcar,
    Vehicle,
    __version__,
    get_api_version,
    make_async_client,
    make_client,
    set_api_version,
)
from smartcar_core import transport as transport_module
from smartcar_core.config import DEFAULT_LIMITS, DEFAULT_TIMEOUT, USER_AGENT
from smartcar_core.transport import shared_async_client, shared_client

pytestmark = pytest.mark.anyio


def test_default_origins() -> None:
    origins = Origins.from_env()

    assert origins == Origins(
        api="https://api.smartcar.com",
        auth="https://auth.smartcar.com",
        connect="https://connect.smartcar.com",
        management="https://management.smartcar.com",
        vehicle_v3="https://vehicle.api.smartcar.com",
    )
    assert origins.token_url == "https://auth.smartcar.com/oauth/token"


def test_every_origin_comes_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCAR_API_ORIGIN", "http://127.0.0.1:8080/")
    monkeypatch.setenv("SMARTCAR_AUTH_ORIGIN", "http://auth.local")
    monkeypatch.setenv("SMARTCAR_CONNECT_ORIGIN", "http://connect.local")
    monkeypatch.setenv("SMARTCAR_MANAGEMENT_API_ORIGIN", "http://management.local")
    monkeypatch.setenv("SMARTCAR_VEHICLE_API_V3_ORIGIN", "http://v3.local")

    assert Origins.from_env() == Origins(
        api="http://127.0.0.1:8080",
        auth="http://auth.local",
        connect="http://connect.local",
        management="http://management.local",
        vehicle_v3="http://v3.local",
    )


@pytest.mark.parametrize(
    "value",
    [
        "http://auth.local",
        "http://auth.local/",
        "http://auth.local/oauth/token",
        "http://auth.local/oauth/token/",
    ],
)
def test_the_auth_origin_may_be_an_origin_or_the_token_url(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SMARTCAR_AUTH_ORIGIN", value)

    origins = Origins.from_env()

    assert origins.auth == "http://auth.local"
    assert origins.token_url == "http://auth.local/oauth/token"


def test_the_v3_origin_has_the_node_sdk_alias_and_ours_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCAR_API_V3_ORIGIN", "http://alias.local")
    assert Origins.from_env().vehicle_v3 == "http://alias.local"
    monkeypatch.setenv("SMARTCAR_VEHICLE_API_V3_ORIGIN", "http://ours.local")
    assert Origins.from_env().vehicle_v3 == "http://ours.local"


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCAR_API_ORIGIN", "")
    assert Origins.from_env().api == "https://api.smartcar.com"


def test_origins_are_read_when_an_object_is_created(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCAR_API_ORIGIN", "http://first.local")
    monkeypatch.setenv("SMARTCAR_AUTH_ORIGIN", "http://auth-first.local/oauth/token")
    vehicle = Vehicle(VEHICLE_ID, ACCESS_TOKEN)
    client = Smartcar()
    auth = AuthClient("id", "secret")
    monkeypatch.setenv("SMARTCAR_API_ORIGIN", "http://second.local")
    monkeypatch.setenv("SMARTCAR_AUTH_ORIGIN", "http://auth-second.local")

    assert vehicle.base_url() == f"http://first.local/v2.0/vehicles/{VEHICLE_ID}"
    assert client.origins.api == "http://first.local"
    assert auth.origins.token_url == "http://auth-first.local/oauth/token"
    assert Vehicle(VEHICLE_ID, ACCESS_TOKEN).base_url() == f"http://second.local/v2.0/vehicles/{VEHICLE_ID}"


@pytest.mark.parametrize("version", ["1.0", "2.0", "3", "99999999.99"])
def test_set_api_version_accepts_versions(version: str) -> None:
    set_api_version(version)

    assert get_api_version() == version
    assert Vehicle(VEHICLE_ID, ACCESS_TOKEN).version == version


@pytest.mark.parametrize("version", ["v2", "2.", ".0", "", "2.0.1", "two", "2.0 ", 2.0, None])
def test_set_api_version_refuses_anything_else(version: object) -> None:
    with pytest.raises(ValueError, match=r"API version must look like '2\.0' or '3'"):
        set_api_version(version)  # type: ignore[arg-type]
    assert get_api_version() == "2.0"


def test_the_default_api_version_is_two() -> None:
    assert get_api_version() == "2.0"


def test_user_agent_names_this_client() -> None:
    system = f"({platform.system()}; {platform.machine()})"
    expected = f"smartcar-core/{__version__} {system} Python v{platform.python_version()}"
    assert expected == USER_AGENT


def test_default_timeout_and_limits() -> None:
    timeout, limits = DEFAULT_TIMEOUT, DEFAULT_LIMITS
    assert timeout == httpx.Timeout(connect=10.0, read=310.0, write=30.0, pool=10.0)
    assert limits == httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, DEFAULT_TIMEOUT),
        (30.0, httpx.Timeout(30.0, connect=10.0)),
        (2.5, httpx.Timeout(2.5)),
        (httpx.Timeout(1.0, read=7.0), httpx.Timeout(1.0, read=7.0)),
    ],
)
async def test_the_timeout_of_each_request(harness: Harness, given: object, expected: httpx.Timeout) -> None:
    route = harness.router.get(f"{BASE}/odometer").respond(json={"distance": 1.0})

    await settle(harness.vehicle(timeout=given).odometer())

    assert route.calls.last.request.extensions["timeout"] == expected.as_dict()


async def test_with_timeout_is_a_copy_for_some_calls(harness: Harness) -> None:
    route = harness.router.get(f"{BASE}/odometer").respond(json={"distance": 1.0})
    vehicle = harness.vehicle()

    quick = vehicle.with_timeout(httpx.Timeout(5.0, read=2.0))
    await settle(quick.odometer())
    await settle(vehicle.odometer())

    first, second = (call.request.extensions["timeout"] for call in route.calls)
    assert first == httpx.Timeout(5.0, read=2.0).as_dict()
    assert second == DEFAULT_TIMEOUT.as_dict()
    assert quick is not vehicle
    assert type(quick) is type(vehicle)
    assert (quick.vehicle_id, quick.access_token, quick._http) == (
        vehicle.vehicle_id,
        vehicle.access_token,
        vehicle._http,
    )


def test_the_shared_client_is_created_once_and_used_by_every_object() -> None:
    with respx.mock(assert_all_mocked=True) as mock:
        mock.get(f"{BASE}/odometer").respond(json={"distance": 1.0})
        client = shared_client()
        first = Vehicle(VEHICLE_ID, "one")
        second = Vehicle("other", "two")
        first.odometer()

        assert shared_client() is client
        assert first._http is second._http is None  # they send on the shared pool
        assert mock.calls.call_count == 1
        assert not client.is_closed


def test_the_shared_client_has_our_defaults() -> None:
    client = shared_client()
    pool = client._transport._pool  # type: ignore[attr-defined]

    assert client.timeout == DEFAULT_TIMEOUT
    assert pool._max_connections == DEFAULT_LIMITS.max_connections


async def test_each_event_loop_gets_its_own_async_client() -> None:
    here = shared_async_client()
    assert shared_async_client() is here

    async def elsewhere() -> httpx.AsyncClient:
        client = shared_async_client()
        await client.aclose()
        return client

    other = await asyncio.to_thread(asyncio.run, elsewhere())

    assert other is not here
    await here.aclose()
    replacement = shared_async_client()
    assert replacement is not here
    assert not replacement.is_closed
    assert transport_module._shared_async[asyncio.get_running_loop()] is replacement


async def test_async_vehicles_send_on_the_loops_shared_client() -> None:
    with respx.mock(assert_all_mocked=True) as mock:
        mock.get(f"{BASE}/odometer").respond(json={"distance": 3.0})

        result = await AsyncVehicle(VEHICLE_ID, ACCESS_TOKEN).odometer()

        assert result.distance == 3.0
        assert mock.calls.last.request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_no_shared_client_outside_an_event_loop() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        shared_async_client()


def test_make_client_builds_pooled_clients_with_our_defaults() -> None:
    with make_client(verify=False, limits=httpx.Limits(max_connections=3)) as client:
        assert client.timeout == DEFAULT_TIMEOUT
        assert client._transport._pool._max_connections == 3  # type: ignore[attr-defined]
    async_client = make_async_client()
    assert async_client.timeout == DEFAULT_TIMEOUT


def test_a_thread_that_waited_for_the_lock_takes_the_client_another_thread_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made_meanwhile = httpx.Client()

    class LockWonByAnotherThread:
        """Entering it plays the other thread: it creates the shared client while we wait."""

        def __enter__(self) -> None:
            transport_module._shared_client = made_meanwhile

        def __exit__(self, *exc_info: object) -> None:
            return None

    monkeypatch.setattr(transport_module, "_shared_client", None)
    monkeypatch.setattr(transport_module, "_shared_lock", LockWonByAnotherThread())

    assert shared_client() is made_meanwhile
    made_meanwhile.close()
