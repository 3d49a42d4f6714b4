"""The calls that belong to no vehicle: `Smartcar`/`AsyncSmartcar` and the module functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest
import respx

import smartcar_core
from core.support import (
    ACCESS_TOKEN,
    AMT,
    API,
    CLIENT_ID,
    CLIENT_SECRET,
    MANAGEMENT,
    META,
    META_HEADERS,
    V3_API,
    VEHICLE_ID,
    Harness,
    assert_user_agent,
    basic,
    query,
    settle,
)
from smartcar_core import (
    AsyncVehicle,
    CompatibilityMatrix,
    CompatibilityV1,
    CompatibilityV2,
    DeleteConnections,
    GetConnections,
    Origins,
    Smartcar,
    UnexpectedResponseError,
    User,
    Vehicle,
    Vehicles,
    set_api_version,
)
from smartcar_core import results as r

pytestmark = pytest.mark.anyio

VIN = "5YJ3E1EA7KF317XXX"
CREDENTIALS: dict[str, Any] = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


def options(*parts: Mapping[str, Any], **values: Any) -> Any:
    """Options merged into one dict, typed Any: some tests pass what the TypedDicts do not allow."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged | values


COMPATIBILITY_V2 = {
    "compatible": True,
    "reason": None,
    "capabilities": [
        {
            "capable": False,
            "endpoint": "/engine/oil",
            "permission": "read_engine_oil",
            "reason": "SMARTCAR_NOT_CAPABLE",
        },
        {"capable": True, "endpoint": "/vin", "permission": "read_vin", "reason": None},
    ],
}
LEAF = {
    "model": "LEAF",
    "startYear": 2018,
    "endYear": 2022,
    "type": "BEV",
    "endpoints": ["EV battery", "EV charging status", "Location", "Lock & unlock", "Odometer"],
    "permissions": ["read_battery", "read_charge", "read_location", "control_security", "read_odometer"],
}
MODEL_3 = {**LEAF, "model": "3", "startYear": 2017, "endYear": 2023}
CONNECTIONS = f"{MANAGEMENT}/v2.0/management/connections"
AMT_BASIC = "Basic " + "ZGVmYXVsdDphbXQtN2IyYQ=="  # base64("default:amt-7b2a")


def assert_bearer(request: httpx.Request, token: str = ACCESS_TOKEN) -> None:
    assert request.headers["authorization"] == f"Bearer {token}"
    assert "sc-unit-system" not in request.headers
    assert_user_agent(request)


async def test_get_user(harness: Harness) -> None:
    route = harness.router.get(f"{API}/v2.0/user").respond(
        json={"id": "e0514ef4-5226-11e8-8c13-8f6e8f02e27e"}, headers=META_HEADERS
    )

    result = await settle(harness.smartcar().get_user(ACCESS_TOKEN))

    assert result == User(id="e0514ef4-5226-11e8-8c13-8f6e8f02e27e", meta=META)
    request = route.calls.last.request
    assert (request.method, str(request.url), request.content) == ("GET", f"{API}/v2.0/user", b"")
    assert_bearer(request)


@pytest.mark.parametrize(
    ("paging", "expected"),
    [
        (None, []),
        ({"limit": 2, "offset": 0}, [("limit", "2"), ("offset", "0")]),
        ({"offset": 4}, [("offset", "4")]),
    ],
)
async def test_get_vehicles(harness: Harness, paging: Any, expected: list[tuple[str, str]]) -> None:
    body = {
        "vehicles": ["36ab27d0-fd9d-4455-823a-ce30af709ffc", "770bdda4-2429-4b20-87fd-6af475c4365e"],
        "paging": {"count": 2, "offset": 0},
    }
    route = harness.router.get(f"{API}/v2.0/vehicles").respond(json=body, headers=META_HEADERS)

    result = await settle(harness.smartcar().get_vehicles(ACCESS_TOKEN, paging))

    assert result == Vehicles(vehicles=list(body["vehicles"]), paging=r.Paging(count=2, offset=0), meta=META)
    assert query(route.calls.last.request) == expected
    assert_bearer(route.calls.last.request)


async def test_get_vehicle_reads_the_v3_resource_whole(harness: Harness) -> None:
    body = {
        "id": VEHICLE_ID,
        "type": "vehicle",
        "attributes": {"make": "TESLA", "model": "Model 3", "year": 2019},
        "links": {"self": f"/vehicles/{VEHICLE_ID}"},
        "meta": {"kept": True},
    }
    route = harness.router.get(f"{V3_API}/v3/vehicles/{VEHICLE_ID}").respond(
        json=body, headers={"sc-request-id": "r"}
    )

    result = await settle(harness.smartcar().get_vehicle(ACCESS_TOKEN, VEHICLE_ID))

    assert result.body == body
    assert result.headers["sc-request-id"] == "r"
    assert result.headers["content-type"] == "application/json"
    assert_bearer(route.calls.last.request)


async def test_get_vehicle_refuses_an_answer_that_is_not_an_object(harness: Harness) -> None:
    harness.router.get(f"{V3_API}/v3/vehicles/{VEHICLE_ID}").respond(text="<html>")

    with pytest.raises(UnexpectedResponseError, match="VehicleResponse: expected a JSON object"):
        await settle(harness.smartcar().get_vehicle(ACCESS_TOKEN, VEHICLE_ID))


async def test_get_compatibility_v2(harness: Harness) -> None:
    route = harness.router.get(f"{API}/v2.0/compatibility").respond(
        json=COMPATIBILITY_V2, headers=META_HEADERS
    )

    result = await settle(
        harness.smartcar().get_compatibility(
            VIN, ["read_odometer", "read_location"], "US", options(CREDENTIALS)
        )
    )

    assert result == CompatibilityV2(
        compatible=True,
        reason=None,
        capabilities=[
            r.Capability("read_engine_oil", "/engine/oil", capable=False, reason="SMARTCAR_NOT_CAPABLE"),
            r.Capability("read_vin", "/vin", capable=True, reason=None),
        ],
        meta=META,
    )
    request = route.calls.last.request
    assert (
        str(request.url) == f"{API}/v2.0/compatibility?scope=read_odometer+read_location&country=US&vin={VIN}"
    )
    assert request.headers["authorization"] == basic(CLIENT_ID, CLIENT_SECRET)
    assert_user_agent(request)


@pytest.mark.parametrize("how", ["option", "client", "global"])
async def test_get_compatibility_v1(harness: Harness, how: str) -> None:
    route = harness.router.get(f"{API}/v1.0/compatibility").respond(
        json={"compatible": False}, headers=META_HEADERS
    )
    opts = options(CREDENTIALS)
    if how == "option":
        client = harness.smartcar()
        opts["version"] = "1.0"
    elif how == "client":
        client = harness.smartcar(version="1.0")
    else:
        client = harness.smartcar()
        set_api_version("1.0")  # read at call time, as the Node SDK's module functions do

    result = await settle(client.get_compatibility(VIN, ["read_vin"], "DE", opts))

    assert result == CompatibilityV1(compatible=False, meta=META)
    assert query(route.calls.last.request) == [("scope", "read_vin"), ("country", "DE"), ("vin", VIN)]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, []),
        ({"mode": "test"}, [("mode", "test")]),
        ({"mode": "simulated"}, [("mode", "simulated")]),
        ({"mode": "live"}, [("mode", "live")]),
        (
            {"test_mode_compatibility_level": "phev"},
            [("mode", "test"), ("test_mode_compatibility_level", "phev")],
        ),
        (
            {"mode": "live", "test_mode_compatibility_level": "bev"},
            [("mode", "test"), ("test_mode_compatibility_level", "bev")],
        ),
        (
            {"flags": {"country": "DE", "x": False}, "mode": "test"},
            [("flags", "country:DE x:false"), ("mode", "test")],
        ),
    ],
)
async def test_get_compatibility_mode_parameters_come_first(
    harness: Harness, extra: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    route = harness.router.get(f"{API}/v2.0/compatibility").respond(json={"compatible": True})

    await settle(harness.smartcar().get_compatibility(VIN, ["read_vin"], "US", options(CREDENTIALS, extra)))

    assert query(route.calls.last.request) == [
        *expected,
        ("scope", "read_vin"),
        ("country", "US"),
        ("vin", VIN),
    ]


@pytest.mark.parametrize(("test_mode", "mode"), [(True, "test"), (False, "live")])
async def test_get_compatibility_deprecated_test_mode(harness: Harness, test_mode: bool, mode: str) -> None:
    route = harness.router.get(f"{API}/v2.0/compatibility").respond(json={"compatible": True})

    with pytest.warns(DeprecationWarning, match="test_mode is deprecated"):
        await settle(
            harness.smartcar().get_compatibility(
                VIN, ["read_vin"], "US", options(CREDENTIALS, test_mode=test_mode)
            )
        )

    assert query(route.calls.last.request)[0] == ("mode", mode)


async def test_get_compatibility_refuses_an_unknown_mode_before_any_request(harness: Harness) -> None:
    with pytest.raises(ValueError, match="mode must be one of test, live, simulated"):
        await settle(
            harness.smartcar().get_compatibility(VIN, ["read_vin"], "US", options(CREDENTIALS, mode="prod"))
        )
    assert harness.router.calls.call_count == 0


ENV_AUTH = basic("env-id", "env-secret")
ARG_AUTH = basic(CLIENT_ID, CLIENT_SECRET)
TESTING = {**CREDENTIALS, "mode": "test"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ("US", [], ENV_AUTH)),
        (("CA",), ("CA", [], ENV_AUTH)),
        ((None, CREDENTIALS), ("US", [], ARG_AUTH)),
        ((CREDENTIALS,), ("US", [], ARG_AUTH)),  # the options in the place of the country, as in the Node SDK
        ((TESTING, {"mode": "live"}), ("US", [("mode", "test")], ARG_AUTH)),  # and then the fourth is ignored
    ],
    ids=["defaults", "country", "none-country", "options-as-country", "options-replace-fourth"],
)
async def test_get_compatibility_country_juggling(
    harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[Any, ...],
    expected: tuple[str, list[tuple[str, str]], str],
) -> None:
    country, modes, authorization = expected
    monkeypatch.setenv("SMARTCAR_CLIENT_ID", "env-id")
    monkeypatch.setenv("SMARTCAR_CLIENT_SECRET", "env-secret")
    route = harness.router.get(f"{API}/v2.0/compatibility").respond(json={"compatible": True})

    await settle(harness.smartcar().get_compatibility(VIN, ["read_vin"], *args))

    request = route.calls.last.request
    assert query(request) == [*modes, ("scope", "read_vin"), ("country", country), ("vin", VIN)]
    assert request.headers["authorization"] == authorization


async def test_compatibility_needs_credentials_before_any_request(harness: Harness) -> None:
    client = harness.smartcar()
    with pytest.raises(ValueError, match="SMARTCAR_CLIENT_ID not set or passed as arguments"):
        await settle(client.get_compatibility(VIN, ["read_vin"]))
    with pytest.raises(ValueError, match="SMARTCAR_CLIENT_SECRET not set or passed as arguments"):
        await settle(client.get_compatibility_matrix("US", options(client_id=CLIENT_ID)))
    assert harness.router.calls.call_count == 0


async def test_get_compatibility_refuses_a_string_scope(harness: Harness) -> None:
    with pytest.raises(TypeError, match="scope must be a list"):
        await settle(harness.smartcar().get_compatibility(VIN, "read_vin", "US", options(CREDENTIALS)))


async def test_get_compatibility_matrix_with_every_filter(harness: Harness) -> None:
    route = harness.router.get(f"{API}/v2.0/compatibility/matrix").respond(
        json={"NISSAN": [LEAF], "TESLA": [MODEL_3]}, headers=META_HEADERS
    )

    result = await settle(
        harness.smartcar().get_compatibility_matrix(
            "US",
            options(
                CREDENTIALS,
                scope=["read_battery", "read_charge"],
                make=["NISSAN", "TESLA"],
                type="BEV",
                mode="live",
                flags={"beta": True},
            ),
        )
    )

    leaf = r.CompatibilityMatrixEntry(
        model="LEAF",
        start_year=2018,
        end_year=2022,
        type="BEV",
        endpoints=list(LEAF["endpoints"]),  # type: ignore[call-overload]
        permissions=list(LEAF["permissions"]),  # type: ignore[call-overload]
    )
    assert result == CompatibilityMatrix(
        makes={
            "NISSAN": [leaf],
            "TESLA": [r.CompatibilityMatrixEntry("3", 2017, 2023, "BEV", leaf.endpoints, leaf.permissions)],
        },
        meta=META,
    )
    request = route.calls.last.request
    assert query(request) == [
        ("flags", "beta:true"),
        ("mode", "live"),
        ("region", "US"),
        ("scope", "read_battery read_charge"),
        ("make", "NISSAN TESLA"),
        ("type", "BEV"),
    ]
    assert request.headers["authorization"] == basic(CLIENT_ID, CLIENT_SECRET)


async def test_get_compatibility_matrix_minimal_and_string_filters(harness: Harness) -> None:
    route = harness.router.get(f"{API}/v1.0/compatibility/matrix").respond(json={})

    result = await settle(
        harness.smartcar().get_compatibility_matrix(
            "EUROPE",
            options(CREDENTIALS, version="1.0", scope="read_vin", make="BMW"),
        )
    )

    assert result.makes == {}
    assert query(route.calls.last.request) == [("region", "EUROPE"), ("scope", "read_vin"), ("make", "BMW")]


async def test_get_compatibility_matrix_refuses_a_body_that_is_not_an_object(harness: Harness) -> None:
    harness.router.get(f"{API}/v2.0/compatibility/matrix").respond(json=[LEAF])

    with pytest.raises(UnexpectedResponseError, match="CompatibilityMatrix: expected a JSON object"):
        await settle(harness.smartcar().get_compatibility_matrix("US", options(CREDENTIALS)))


async def test_get_connections_pages_with_the_cursor(harness: Harness) -> None:
    pages = {
        None: {
            "connections": [{"vehicleId": "v2", "userId": "u1", "connectedAt": "2024-05-02T00:00:00.000Z"}],
            "paging": {"cursor": "page-2"},
        },
        "page-2": {
            "connections": [{"vehicleId": "v1", "userId": "u1", "connectedAt": "2024-05-01T00:00:00.000Z"}],
            "paging": {"cursor": None},
        },
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("cursor")], headers=META_HEADERS)

    route = harness.router.get(CONNECTIONS).mock(side_effect=answer)
    client = harness.smartcar()

    seen: list[str] = []
    cursor: str | None = None
    while True:
        paging = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = await settle(client.get_connections(AMT, {"user_id": "u1"}, paging))
        assert isinstance(page, GetConnections)
        seen += [connection.vehicle_id for connection in page.connections]
        cursor = page.paging.cursor
        if cursor is None:
            break

    assert seen == ["v2", "v1"]
    first, second = (call.request for call in route.calls)
    assert query(first) == [("user_id", "u1"), ("limit", "1")]
    assert query(second) == [("user_id", "u1"), ("limit", "1"), ("cursor", "page-2")]
    assert first.headers["authorization"] == AMT_BASIC
    assert first.method == "GET"
    assert_user_agent(first)


async def test_get_connections_without_filter_or_paging(harness: Harness) -> None:
    route = harness.router.get(CONNECTIONS).respond(json={"connections": []})

    result = await settle(harness.smartcar().get_connections(AMT))

    assert result.connections == []
    assert result.paging.cursor is None
    assert str(route.calls.last.request.url) == CONNECTIONS


async def test_get_connections_sends_both_filters_in_order(harness: Harness) -> None:
    route = harness.router.get(CONNECTIONS).respond(json={"connections": []})

    await settle(harness.smartcar().get_connections(AMT, {"vehicle_id": "v1", "user_id": "u1"}))

    assert query(route.calls.last.request) == [("user_id", "u1"), ("vehicle_id", "v1")]


async def test_connection_filters_refuse_unknown_keys_before_any_request(harness: Harness) -> None:
    client = harness.smartcar()
    with pytest.raises(ValueError, match="Filter keys are user_id and vehicle_id, got userId"):
        await settle(client.get_connections(AMT, options(userId="u1")))
    with pytest.raises(ValueError, match="got userId"):
        await settle(client.delete_connections(AMT, options(userId="u1")))
    assert harness.router.calls.call_count == 0


@pytest.mark.parametrize("key", ["user_id", "vehicle_id"])
async def test_delete_connections_by_one_filter(harness: Harness, key: str) -> None:
    body = {"connections": [{"vehicleId": "v1", "userId": "u1"}]}
    route = harness.router.delete(CONNECTIONS).respond(json=body, headers=META_HEADERS)

    result = await settle(harness.smartcar().delete_connections(AMT, {key: "x"}))  # type: ignore[misc]

    assert result == DeleteConnections(connections=[r.Connection("v1", "u1", None)], meta=META)
    request = route.calls.last.request
    assert (request.method, query(request), request.headers["authorization"]) == (
        "DELETE",
        [(key, "x")],
        AMT_BASIC,
    )


@pytest.mark.parametrize(
    "filter_", [{}, {"user_id": "u", "vehicle_id": "v"}, {"user_id": ""}, {"vehicle_id": None}]
)
async def test_delete_connections_needs_exactly_one_filter_before_any_request(
    harness: Harness, filter_: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="exactly one of user_id or vehicle_id"):
        await settle(harness.smartcar().delete_connections(AMT, filter_))  # type: ignore[arg-type]
    assert harness.router.calls.call_count == 0


async def test_a_client_version_is_fixed_and_the_default_follows_the_global(harness: Harness) -> None:
    harness.router.get(url__startswith=API).respond(json={"id": "u"})
    fixed = harness.smartcar(version="1.0")
    following = harness.smartcar()
    set_api_version("1.5")

    await settle(fixed.get_user(ACCESS_TOKEN))
    await settle(following.get_user(ACCESS_TOKEN))

    assert [call.request.url.path for call in harness.router.calls] == ["/v1.0/user", "/v1.5/user"]
    assert following.version == "1.5"


def test_a_client_refuses_an_invalid_version() -> None:
    with pytest.raises(ValueError, match="API version"):
        Smartcar(version="latest")


async def test_vehicles_from_a_client_share_its_origins_transport_and_timeout(harness: Harness) -> None:
    origins = Origins(api="https://api.example")
    route = harness.router.get(f"https://api.example/v1.0/vehicles/{VEHICLE_ID}/odometer").respond(
        json={"distance": 2}
    )
    client = harness.smartcar(origins=origins, timeout=5.0)

    vehicle = client.vehicle(VEHICLE_ID, ACCESS_TOKEN, "imperial", version="1.0", flags={"a": 1})
    result = await settle(vehicle.odometer())

    assert isinstance(vehicle, Vehicle if harness.kind == "sync" else AsyncVehicle)
    assert vehicle._timeout == client._timeout == httpx.Timeout(5.0, connect=5.0)
    assert result.distance == 2
    assert query(route.calls.last.request) == [("flags", "a:1")]
    assert route.calls.last.request.headers["sc-unit-system"] == "imperial"


def test_module_functions_read_origins_from_the_environment_at_each_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMARTCAR_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SMARTCAR_CLIENT_SECRET", CLIENT_SECRET)
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        mock.get("https://api.smartcar.com/v2.0/user").respond(json={"id": "default-origin"})
        mock.get("https://api.example/v2.0/user").respond(json={"id": "env-origin"})
        mock.get("https://api.example/v2.0/vehicles").respond(
            json={"vehicles": [], "paging": {"count": 0, "offset": 0}}
        )
        mock.get(f"https://v3.example/v3/vehicles/{VEHICLE_ID}").respond(json={"id": VEHICLE_ID})
        mock.get("https://api.example/v2.0/compatibility").respond(json={"compatible": True})
        mock.get("https://api.example/v2.0/compatibility/matrix").respond(json={})
        mock.get("https://management.example/v2.0/management/connections").respond(json={"connections": []})
        mock.delete("https://management.example/v2.0/management/connections").respond(
            json={"connections": []}
        )

        assert smartcar_core.get_user(ACCESS_TOKEN).id == "default-origin"
        monkeypatch.setenv("SMARTCAR_API_ORIGIN", "https://api.example")
        monkeypatch.setenv("SMARTCAR_VEHICLE_API_V3_ORIGIN", "https://v3.example")
        monkeypatch.setenv("SMARTCAR_MANAGEMENT_API_ORIGIN", "https://management.example")

        assert smartcar_core.get_user(ACCESS_TOKEN).id == "env-origin"
        assert smartcar_core.get_vehicles(ACCESS_TOKEN, {"limit": 1}).vehicles == []
        assert smartcar_core.get_vehicle(ACCESS_TOKEN, VEHICLE_ID).body == {"id": VEHICLE_ID}
        assert isinstance(smartcar_core.get_compatibility(VIN, ["read_vin"]), CompatibilityV2)
        assert smartcar_core.get_compatibility_matrix("US").makes == {}
        assert smartcar_core.get_connections(AMT, {"user_id": "u"}, {"limit": 5}).connections == []
        assert smartcar_core.delete_connections(AMT, {"user_id": "u"}).connections == []
