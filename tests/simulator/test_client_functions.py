"""smartcar_core's calls outside a vehicle, and the OAuth flow, sync and async, against the simulator."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import smartcar_core as sc
from simulator.support import first
from smartcar_simulator.testing import RunningSimulator


@pytest.fixture
def env(simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch) -> RunningSimulator:
    """The SDK-style environment pointing at the simulator (module functions read it per call)."""
    for name, value in simulator.env.items():
        monkeypatch.setenv(name, value)
    return simulator


def _code_from_connect(url: str) -> tuple[str, dict[str, list[str]]]:
    answer = httpx.get(url, follow_redirects=False)
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    return query["code"][0], query


def test_module_functions_read_the_environment(env: RunningSimulator) -> None:
    user = env.control.users()[0]
    tokens = env.control.mint_tokens(user_id=user["id"])
    assert sc.get_user(tokens.access_token).id == user["id"]
    listed = sc.get_vehicles(tokens.access_token, {"limit": 1, "offset": 1})
    assert listed.vehicles == user["vehicle_ids"][1:2]
    assert listed.paging.count == len(user["vehicle_ids"])
    assert listed.paging.offset == 1
    v3 = sc.get_vehicle(tokens.access_token, user["vehicle_ids"][0])
    assert v3.body["id"] == user["vehicle_ids"][0]
    assert v3.body["attributes"]["make"]
    assert "sc-request-id" in v3.headers


def test_compatibility_v2_v1_and_the_matrix(env: RunningSimulator) -> None:
    bev, ice = first(env, "BEV"), first(env, "ICE")
    scope = ["read_battery", "read_odometer", "read_fuel"]
    electric = sc.get_compatibility(bev["vin"], scope)
    assert isinstance(electric, sc.CompatibilityV2)
    capable = {item.endpoint: item.capable for item in electric.capabilities}
    assert electric.compatible
    assert capable["GET /battery"]
    assert not capable["GET /fuel"]
    combustion = sc.get_compatibility(ice["vin"], ["read_battery"])
    assert isinstance(combustion, sc.CompatibilityV2)
    assert (combustion.compatible, combustion.reason) == (False, "VEHICLE_NOT_COMPATIBLE")
    unknown_make = sc.get_compatibility("ZZZ00000000000000", ["read_odometer"])
    assert isinstance(unknown_make, sc.CompatibilityV2)
    assert unknown_make.reason == "MAKE_NOT_COMPATIBLE"
    v1 = sc.get_compatibility(bev["vin"], ["read_odometer"], "US", {"version": "1.0"})
    assert isinstance(v1, sc.CompatibilityV1)
    assert v1.compatible
    test_mode = sc.get_compatibility(
        bev["vin"], ["read_fuel"], options={"test_mode_compatibility_level": "phev"}
    )
    assert isinstance(test_mode, sc.CompatibilityV2)
    assert test_mode.compatible
    with pytest.raises(sc.ValidationError) as raised:
        sc.get_compatibility(bev["vin"], ["read_fuel"], options={"mode": "test"})
    assert raised.value.detail is not None
    assert raised.value.detail[0]["field"] == "test_mode_compatibility_level"
    matrix = sc.get_compatibility_matrix("US", {"make": ["TESLA", "FORD"], "type": "BEV"})
    assert set(matrix.makes) == {"TESLA", "FORD"}
    assert all(entry.type == "BEV" for entries in matrix.makes.values() for entry in entries)
    assert "read_battery" in matrix.makes["TESLA"][0].permissions


def test_connections_page_by_cursor_and_delete_by_user_or_vehicle(env: RunningSimulator) -> None:
    seen: list[sc.results.Connection] = []
    page = sc.get_connections(env.amt, paging={"limit": 5})
    seen += page.connections
    while page.paging.cursor:
        page = sc.get_connections(env.amt, paging={"limit": 5, "cursor": page.paging.cursor})
        seen += page.connections
    assert len(seen) == len(env.control.vehicles()) == len({c.vehicle_id for c in seen})
    stamps = [c.connected_at or "" for c in seen]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    user = env.control.users()[0]
    mine = sc.get_connections(env.amt, {"user_id": user["id"]})
    assert {c.vehicle_id for c in mine.connections} == set(user["vehicle_ids"])
    one = sc.delete_connections(env.amt, {"vehicle_id": user["vehicle_ids"][0]})
    assert [c.vehicle_id for c in one.connections] == user["vehicle_ids"][:1]
    rest = sc.delete_connections(env.amt, {"user_id": user["id"]})
    assert {c.vehicle_id for c in rest.connections} == set(user["vehicle_ids"][1:])
    assert sc.get_connections(env.amt, {"user_id": user["id"]}).connections == []
    with pytest.raises(sc.AuthenticationError):
        sc.get_connections("not-the-amt")


def test_auth_flow_code_exchange_and_refresh(simulator: RunningSimulator) -> None:
    client = sc.AuthClient(
        simulator.client_id, simulator.client_secret, "https://app.example/cb", origins=simulator.origins
    )
    url = client.get_auth_url(["read_odometer", "control_security"], {"state": "s-1", "user": "alice"})
    code, query = _code_from_connect(url)
    assert query["state"] == ["s-1"]
    access = client.exchange_code(code)
    vehicles = sc.Smartcar(origins=simulator.origins).get_vehicles(access.access_token)
    vehicle = sc.Vehicle(vehicles.vehicles[0], access.access_token, origins=simulator.origins)
    assert vehicle.odometer().distance > 0
    assert vehicle.permissions().permissions == ["control_security", "read_odometer"]
    with pytest.raises(sc.PermissionDeniedError):
        vehicle.location()
    refreshed = client.exchange_refresh_token(access.refresh_token)
    assert refreshed.access_token != access.access_token
    assert refreshed.refresh_token != access.refresh_token
    assert (
        sc.Vehicle(vehicle.vehicle_id, refreshed.access_token, origins=simulator.origins).odometer().distance
        > 0
    )
    with pytest.raises(sc.OAuthError) as reused:
        client.exchange_code(code)
    assert reused.value.type == "invalid_grant"


@pytest.mark.anyio
async def test_async_functions_and_auth(simulator: RunningSimulator) -> None:
    control = simulator.control
    user = control.users()[1]
    async with httpx.AsyncClient() as http:
        client = sc.AsyncSmartcar(origins=simulator.origins, http=http)
        auth = sc.AsyncAuthClient(
            simulator.client_id,
            simulator.client_secret,
            "https://app.example/cb",
            origins=simulator.origins,
            http=http,
        )
        answer = await http.get(auth.get_auth_url(None, {"user": "bob", "single_select": True}))
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        access = await auth.exchange_code(code)
        listed = await client.get_vehicles(access.access_token)
        assert len(listed.vehicles) == 1
        owner = await client.get_user(access.access_token)
        assert listed.vehicles[0] in next(u["vehicle_ids"] for u in control.users() if u["id"] == owner.id)
        v3 = await client.get_vehicle(access.access_token, listed.vehicles[0])
        assert v3.body["type"] == "vehicle"
        refreshed = await auth.exchange_refresh_token(access.refresh_token)
        assert (await client.get_user(refreshed.access_token)).id == owner.id
        options: sc.client.CompatibilityOptions = {
            "client_id": simulator.client_id,
            "client_secret": simulator.client_secret,
        }
        compatibility = await client.get_compatibility(
            first(simulator, "BEV")["vin"], ["read_battery"], "US", options
        )
        assert compatibility.compatible
        matrix_options: sc.client.CompatibilityMatrixOptions = {
            "client_id": simulator.client_id,
            "client_secret": simulator.client_secret,
            "scope": ["read_fuel"],
        }
        matrix = await client.get_compatibility_matrix("EUROPE", matrix_options)
        assert all("read_fuel" in e.permissions for entries in matrix.makes.values() for e in entries)
        connections = await client.get_connections(simulator.amt, {"user_id": user["id"]})
        assert {c.user_id for c in connections.connections} == {user["id"]}
        deleted = await client.delete_connections(simulator.amt, {"user_id": user["id"]})
        assert {c.vehicle_id for c in deleted.connections} == set(user["vehicle_ids"])


def test_client_objects_hand_out_vehicles_and_follow_the_api_version(simulator: RunningSimulator) -> None:
    vehicle_id = first(simulator, "BEV")["id"]
    vin = next(v["vin"] for v in simulator.control.vehicles() if v["id"] == vehicle_id)
    token = simulator.control.mint_tokens([vehicle_id]).access_token
    with httpx.Client() as http:
        smartcar = sc.Smartcar(origins=simulator.origins, http=http, timeout=5)
        vehicle = smartcar.vehicle(vehicle_id, token, "imperial")
        assert vehicle.odometer().meta.unit_system == "imperial"
        assert vehicle.with_timeout(2).vin().vin == vin
        before = sc.get_api_version()
        sc.set_api_version("1.0")
        try:
            options: sc.client.CompatibilityOptions = {
                "client_id": simulator.client_id,
                "client_secret": simulator.client_secret,
            }
            assert isinstance(
                smartcar.get_compatibility(vin, ["read_odometer"], "US", options), sc.CompatibilityV1
            )
            assert (
                sc.Vehicle(vehicle_id, token, origins=simulator.origins, http=http)
                .base_url()
                .endswith(f"/v1.0/vehicles/{vehicle_id}")
            )
        finally:
            sc.set_api_version(before)


@pytest.mark.anyio
async def test_the_async_client_hands_out_async_vehicles(simulator: RunningSimulator) -> None:
    vehicle_id = first(simulator, "PHEV")["id"]
    token = simulator.control.mint_tokens([vehicle_id]).access_token
    async with httpx.AsyncClient() as http:
        vehicle = sc.AsyncSmartcar(origins=simulator.origins, http=http).vehicle(vehicle_id, token)
        fuel, battery = await vehicle.fuel(), await vehicle.with_timeout(5).battery()
    assert 0 <= fuel.percent_remaining <= 1
    assert 0 <= battery.percent_remaining <= 1
