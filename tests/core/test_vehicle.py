"""Every Vehicle method, sync and async: the exact request it sends and the result it reads.

Response bodies are the examples of Smartcar's SDK documentation; each test checks the method, the
URL with its query, the headers, the body, and the typed result with its `meta`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from core.support import (
    ACCESS_TOKEN,
    AMT,
    API,
    BASE,
    META,
    META_HEADERS,
    ORIGINS,
    V3_API,
    V3_BASE,
    VEHICLE_ID,
    Harness,
    assert_user_agent,
    assert_vehicle_headers,
    json_of,
    query,
    settle,
)
from smartcar_core import (
    ActionResponse,
    AsyncVehicle,
    Attributes,
    Battery,
    BatteryCapacity,
    Charge,
    ChargeLimit,
    DiagnosticSystemStatus,
    DiagnosticTroubleCodes,
    EngineOil,
    Fuel,
    Location,
    LockStatus,
    Meta,
    NominalCapacity,
    Odometer,
    Permissions,
    Response,
    ServiceHistory,
    Status,
    TirePressure,
    UnexpectedResponseError,
    Vehicle,
    VehicleStateError,
    Vin,
    WebhookSubscription,
    set_api_version,
)
from smartcar_core import results as r
from smartcar_core.vehicle import VehicleAPI

pytestmark = pytest.mark.anyio

SYSTEMS = {
    "systems": [
        {"systemId": "SYSTEM_TPMS", "status": "ALERT", "description": "Left rear tire sensor battery low"},
        {"systemId": "SYSTEM_AIRBAG", "status": "OK", "description": None},
    ]
}
DTCS = {
    "activeCodes": [
        {"code": "P302D", "timestamp": "2024-09-05T14:48:00.000Z"},
        {"code": "P303D", "timestamp": None},
    ]
}
LOCK_STATUS = {
    "isLocked": True,
    "doors": [{"type": "frontLeft", "status": "CLOSED"}, {"type": "backRight", "status": "OPEN"}],
    "windows": [{"type": "frontLeft", "status": "UNKNOWN"}],
    "sunroof": [{"type": "sunroof", "status": "CLOSED"}],
    "storage": [{"type": "rear", "status": "CLOSED"}],
    "chargingPort": [{"type": "chargingPort", "status": "CLOSED"}],
}
NOMINAL = {
    "availableCapacities": [{"capacity": 70.9, "description": "BEV:Standard Range"}, {"capacity": 80.9}],
    "capacity": {"nominal": 70.9, "source": "USER_SELECTED"},
    "url": None,
}

# (method, path under the vehicle, documented body, the typed result expected)
READS: list[tuple[str, str, dict[str, Any], Any]] = [
    ("vin", "vin", {"vin": "5YJSA1E14FF101307"}, Vin(vin="5YJSA1E14FF101307", meta=META)),
    (
        "charge",
        "charge",
        {"isPluggedIn": True, "state": "FULLY_CHARGED"},
        Charge(is_plugged_in=True, state="FULLY_CHARGED", meta=META),
    ),
    (
        "battery",
        "battery",
        {"range": 40.5, "percentRemaining": 0.3},
        Battery(percent_remaining=0.3, range=40.5, meta=META),
    ),
    ("battery_capacity", "battery/capacity", {"capacity": 28.0}, BatteryCapacity(capacity=28.0, meta=META)),
    (
        "nominal_capacity",
        "battery/nominal_capacity",
        NOMINAL,
        NominalCapacity(
            available_capacities=[
                r.AvailableCapacity(capacity=70.9, description="BEV:Standard Range"),
                r.AvailableCapacity(capacity=80.9, description=None),
            ],
            capacity=r.NominalCapacityValue(nominal=70.9, source="USER_SELECTED"),
            url=None,
            meta=META,
        ),
    ),
    (
        "fuel",
        "fuel",
        {"range": 40.5, "percentRemaining": 0.3, "amountRemaining": 40.5},
        Fuel(range=40.5, percent_remaining=0.3, amount_remaining=40.5, meta=META),
    ),
    (
        "tire_pressure",
        "tires/pressure",
        {"frontLeft": 219.3, "frontRight": 219.4, "backLeft": 219.5, "backRight": 219.6},
        TirePressure(front_left=219.3, front_right=219.4, back_left=219.5, back_right=219.6, meta=META),
    ),
    ("engine_oil", "engine/oil", {"lifeRemaining": 0.35}, EngineOil(life_remaining=0.35, meta=META)),
    ("odometer", "odometer", {"distance": 104.32}, Odometer(distance=104.32, meta=META)),
    (
        "location",
        "location",
        {"latitude": 37.4292, "longitude": 122.1381},
        Location(latitude=37.4292, longitude=122.1381, meta=META),
    ),
    (
        "attributes",
        "",  # the vehicle URL itself, with a trailing slash
        {"id": VEHICLE_ID, "make": "TESLA", "model": "Model S", "year": 2014},
        Attributes(id=VEHICLE_ID, make="TESLA", model="Model S", year=2014, meta=META),
    ),
    (
        "lock_status",
        "security",
        LOCK_STATUS,
        LockStatus(
            is_locked=True,
            doors=[r.ClosureStatus("frontLeft", "CLOSED"), r.ClosureStatus("backRight", "OPEN")],
            windows=[r.ClosureStatus("frontLeft", "UNKNOWN")],
            sunroof=[r.ClosureStatus("sunroof", "CLOSED")],
            storage=[r.ClosureStatus("rear", "CLOSED")],
            charging_port=[r.ClosureStatus("chargingPort", "CLOSED")],
            meta=META,
        ),
    ),
    ("get_charge_limit", "charge/limit", {"limit": 0.7}, ChargeLimit(limit=0.7, meta=META)),
    (
        "diagnostic_system_status",
        "diagnostics/system_status",
        SYSTEMS,
        DiagnosticSystemStatus(
            systems=[
                r.DiagnosticSystem("SYSTEM_TPMS", "ALERT", "Left rear tire sensor battery low"),
                r.DiagnosticSystem("SYSTEM_AIRBAG", "OK", None),
            ],
            meta=META,
        ),
    ),
    (
        "diagnostic_trouble_codes",
        "diagnostics/dtcs",
        DTCS,
        DiagnosticTroubleCodes(
            active_codes=[
                r.DiagnosticTroubleCode("P302D", "2024-09-05T14:48:00.000Z"),
                r.DiagnosticTroubleCode("P303D", None),
            ],
            meta=META,
        ),
    ),
]

# (method, path, JSON body sent)
COMMANDS = [
    ("lock", "security", {"action": "LOCK"}),
    ("unlock", "security", {"action": "UNLOCK"}),
    ("start_charge", "charge", {"action": "START"}),
    ("stop_charge", "charge", {"action": "STOP"}),
]
SENT = {"status": "success", "message": "Successfully sent request to vehicle"}
ACTION = ActionResponse(status="success", message="Successfully sent request to vehicle", meta=META)


@pytest.mark.parametrize(("method", "path", "body", "expected"), READS, ids=[read[0] for read in READS])
async def test_read_sends_a_get_and_reads_the_documented_answer(
    harness: Harness, method: str, path: str, body: dict[str, Any], expected: Any
) -> None:
    route = harness.router.get(f"{BASE}/{path}").respond(json=body, headers=META_HEADERS)

    result = await settle(getattr(harness.vehicle(), method)())

    assert result == expected
    request = route.calls.last.request
    assert request.method == "GET"
    assert str(request.url) == f"{BASE}/{path}"
    assert request.content == b""
    assert_vehicle_headers(request)


@pytest.mark.parametrize(("method", "path", "body"), COMMANDS, ids=[command[0] for command in COMMANDS])
async def test_command_posts_its_action(
    harness: Harness, method: str, path: str, body: dict[str, str]
) -> None:
    route = harness.router.post(f"{BASE}/{path}").respond(json=SENT, headers=META_HEADERS)

    result = await settle(getattr(harness.vehicle(), method)())

    assert result == ACTION
    request = route.calls.last.request
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/{path}")
    assert request.content == ('{"action":"%s"}' % body["action"]).encode()  # noqa: UP031 - the exact bytes
    assert_vehicle_headers(request)


async def test_meta_fields_are_none_without_their_headers(harness: Harness) -> None:
    harness.router.get(f"{BASE}/odometer").respond(json={"distance": 1.0})

    result = await settle(harness.vehicle().odometer())

    assert result.meta == Meta()


async def test_meta_keeps_the_unit_system_the_answer_states(harness: Harness) -> None:
    headers = {"sc-unit-system": "imperial", "sc-data-age": "2018-05-04T07:20:50.844Z"}
    harness.router.get(f"{BASE}/odometer").respond(json={"distance": 1.0}, headers=headers)

    result = await settle(harness.vehicle(unit_system="imperial").odometer())

    assert result.meta.unit_system == "imperial"
    assert result.meta.data_age == datetime(2018, 5, 4, 7, 20, 50, 844000, tzinfo=UTC)
    assert_vehicle_headers(harness.last_request(), unit_system="imperial")


async def test_permissions_without_paging_sends_no_query(harness: Harness) -> None:
    body = {"permissions": ["read_vehicle_info"], "paging": {"count": 25, "offset": 10}}
    route = harness.router.get(f"{BASE}/permissions").respond(json=body, headers=META_HEADERS)

    result = await settle(harness.vehicle().permissions())

    assert result == Permissions(["read_vehicle_info"], r.Paging(count=25, offset=10), META)
    assert str(route.calls.last.request.url) == f"{BASE}/permissions"
    assert_vehicle_headers(route.calls.last.request)


@pytest.mark.parametrize(
    ("paging", "expected"),
    [
        ({"limit": 10, "offset": 20}, [("limit", "10"), ("offset", "20")]),
        ({"offset": 5}, [("offset", "5")]),
        ({"limit": 3}, [("limit", "3")]),
        ({}, []),
    ],
)
async def test_permissions_sends_the_paging_given(
    harness: Harness, paging: dict[str, int], expected: list[tuple[str, str]]
) -> None:
    route = harness.router.get(f"{BASE}/permissions").respond(json={"permissions": []})

    result = await settle(harness.vehicle().permissions(paging))

    assert result.permissions == []
    assert result.paging is None
    assert query(route.calls.last.request) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, []),
        (date(2024, 1, 1), None, [("start_date", "2024-01-01")]),
        (None, "2024-06-30", [("end_date", "2024-06-30")]),
        (
            datetime(2024, 1, 1, 10, 20, 30, 123456),  # noqa: DTZ001 - naive is read as UTC: the case tested
            datetime(2024, 2, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
            [("start_date", "2024-01-01T10:20:30.123Z"), ("end_date", "2024-02-01T10:00:00.000Z")],
        ),
        (
            "2023-04-30T07:20:50.844Z",
            date(2024, 4, 30),
            [("start_date", "2023-04-30T07:20:50.844Z"), ("end_date", "2024-04-30")],
        ),
    ],
    ids=["no-dates", "date", "str", "datetimes", "str-and-date"],
)
async def test_service_history_sends_snake_case_dates_and_leaves_unset_ones_out(
    harness: Harness, start: Any, end: Any, expected: list[tuple[str, str]]
) -> None:
    records = [
        {
            "serviceId": 12345,
            "serviceDate": "2022-07-10T16:20:00.000Z",
            "odometerDistance": 50000,
            "serviceTasks": [{"taskId": 1, "taskDescription": "oil change"}],
            "serviceDetails": {"type": "dealership"},
            "serviceCost": {"totalCost": 100, "currency": "USD"},
        }
    ]
    route = harness.router.get(f"{BASE}/service/history").respond(json=records, headers=META_HEADERS)

    result = await settle(harness.vehicle().service_history(start, end))

    assert result == ServiceHistory(items=records, meta=META)
    assert query(route.calls.last.request) == expected
    assert_vehicle_headers(route.calls.last.request)


async def test_set_charge_limit_posts_a_json_number(harness: Harness) -> None:
    route = harness.router.post(f"{BASE}/charge/limit").respond(json=SENT, headers=META_HEADERS)

    result = await settle(harness.vehicle().set_charge_limit(0.8))

    assert result == ACTION
    request = route.calls.last.request
    assert (request.method, str(request.url), request.content) == (
        "POST",
        f"{BASE}/charge/limit",
        b'{"limit":0.8}',
    )
    assert_vehicle_headers(request)


async def test_set_charge_limit_accepts_one(harness: Harness) -> None:
    route = harness.router.post(f"{BASE}/charge/limit").respond(json=SENT)

    await settle(harness.vehicle().set_charge_limit(1))

    assert json_of(route.calls.last.request) == {"limit": 1}


@pytest.mark.parametrize("limit", [0, -0.1, 1.01, 80, True, "0.5", None, float("nan")])
async def test_set_charge_limit_refuses_a_limit_outside_zero_to_one(harness: Harness, limit: Any) -> None:
    with pytest.raises(ValueError, match="0 < limit <= 1"):
        await settle(harness.vehicle().set_charge_limit(limit))
    assert harness.router.calls.call_count == 0


async def test_send_destination_posts_the_coordinates(harness: Harness) -> None:
    route = harness.router.post(f"{BASE}/navigation/destination").respond(json=SENT, headers=META_HEADERS)

    result = await settle(harness.vehicle().send_destination(37.4292, -122.1381))

    assert result == ACTION
    request = route.calls.last.request
    assert str(request.url) == f"{BASE}/navigation/destination"
    assert request.content == b'{"latitude":37.4292,"longitude":-122.1381}'
    assert_vehicle_headers(request)


@pytest.mark.parametrize("latitude", [-90, 90, 0])
@pytest.mark.parametrize("longitude", [-180, 180])
async def test_send_destination_accepts_the_bounds(
    harness: Harness, latitude: float, longitude: float
) -> None:
    route = harness.router.post(f"{BASE}/navigation/destination").respond(json=SENT)

    await settle(harness.vehicle().send_destination(latitude, longitude))

    assert json_of(route.calls.last.request) == {"latitude": latitude, "longitude": longitude}


@pytest.mark.parametrize(
    ("latitude", "longitude", "message"),
    [
        (90.0001, 0, "Invalid latitude value. It must be between -90 and 90."),
        (-91, 0, "Invalid latitude value. It must be between -90 and 90."),
        (float("nan"), 0, "Invalid latitude value. It must be between -90 and 90."),
        (0, 180.5, "Invalid longitude value. It must be between -180 and 180."),
        (0, -181, "Invalid longitude value. It must be between -180 and 180."),
    ],
)
async def test_send_destination_refuses_out_of_range_coordinates_before_any_request(
    harness: Harness, latitude: float, longitude: float, message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        await settle(harness.vehicle().send_destination(latitude, longitude))
    assert harness.router.calls.call_count == 0


async def test_subscribe_posts_without_a_body(harness: Harness) -> None:
    body = {"webhookId": "dd214915-0c26-13c5-8e42-7edfc2ab320a", "vehicleId": VEHICLE_ID}
    route = harness.router.post(f"{BASE}/webhooks/dd214915-0c26-13c5-8e42-7edfc2ab320a").respond(
        json=body, headers=META_HEADERS
    )

    result = await settle(harness.vehicle().subscribe("dd214915-0c26-13c5-8e42-7edfc2ab320a"))

    assert result == WebhookSubscription(
        webhook_id="dd214915-0c26-13c5-8e42-7edfc2ab320a", vehicle_id=VEHICLE_ID, meta=META
    )
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.content == b""
    assert_vehicle_headers(request)


async def test_unsubscribe_is_authorised_by_the_management_token(harness: Harness) -> None:
    route = harness.router.delete(f"{BASE}/webhooks/wh-1").respond(
        json={"status": "success"}, headers=META_HEADERS
    )

    result = await settle(harness.vehicle().unsubscribe(AMT, "wh-1"))

    assert result == Status(status="success", meta=META)
    request = route.calls.last.request
    assert (request.method, str(request.url), request.content) == ("DELETE", f"{BASE}/webhooks/wh-1", b"")
    assert_vehicle_headers(request, token=AMT)


async def test_unsubscribe_with_an_empty_answer_has_no_status(harness: Harness) -> None:
    harness.router.delete(f"{BASE}/webhooks/wh-1").respond(204)

    result = await settle(harness.vehicle().unsubscribe(AMT, "wh-1"))

    assert result == Status(status=None, meta=Meta())


async def test_webhook_and_signal_ids_cannot_change_the_path(harness: Harness) -> None:
    route = harness.router.post(url__startswith=API).respond(json={"webhookId": "x", "vehicleId": "y"})

    await settle(harness.vehicle().subscribe("../../user?x=1"))

    assert route.calls.last.request.url.raw_path == (
        f"/v2.0/vehicles/{VEHICLE_ID}/webhooks/..%2F..%2Fuser%3Fx%3D1".encode()
    )


async def test_disconnect_deletes_the_application(harness: Harness) -> None:
    route = harness.router.delete(f"{BASE}/application").respond(
        json={"status": "success"}, headers=META_HEADERS
    )

    result = await settle(harness.vehicle().disconnect())

    assert result == Status(status="success", meta=META)
    request = route.calls.last.request
    assert (request.method, request.content) == ("DELETE", b"")
    assert_vehicle_headers(request)


async def test_set_unit_system_changes_the_header_of_later_calls(harness: Harness) -> None:
    route = harness.router.get(f"{BASE}/odometer").respond(json={"distance": 1.0})
    vehicle = harness.vehicle()

    vehicle.set_unit_system("imperial")
    await settle(vehicle.odometer())

    assert vehicle.unit_system == "imperial"
    assert route.calls.last.request.headers["sc-unit-system"] == "imperial"


@pytest.mark.parametrize("unit_system", ["Metric", "si", ""])
def test_set_unit_system_refuses_anything_but_metric_or_imperial(unit_system: str) -> None:
    vehicle = Vehicle(VEHICLE_ID, ACCESS_TOKEN, origins=ORIGINS)
    with pytest.raises(ValueError, match="'metric' or 'imperial'"):
        vehicle.set_unit_system(unit_system)
    with pytest.raises(ValueError, match="'metric' or 'imperial'"):
        Vehicle(VEHICLE_ID, ACCESS_TOKEN, unit_system=unit_system, origins=ORIGINS)  # type: ignore[arg-type]
    assert vehicle.unit_system == "metric"


def test_a_vehicle_needs_an_id() -> None:
    with pytest.raises(ValueError, match="vehicle_id is required"):
        Vehicle("", ACCESS_TOKEN)


async def test_flags_go_on_every_request_booleans_lowercased(harness: Harness) -> None:
    flags = {"country": "DE", "flag": True, "off": False, "level": 3}
    expected = [("flags", "country:DE flag:true off:false level:3")]
    harness.router.get(f"{BASE}/permissions").respond(json={"permissions": []})
    harness.router.get(url__startswith=API).respond(json={"distance": 1.0})
    harness.router.post(f"{BASE}/batch").respond(json={"responses": []})
    harness.router.post(f"{BASE}/security").respond(json=SENT)
    harness.router.get(url__startswith=V3_API).respond(json={"data": []})
    vehicle = harness.vehicle(flags=flags)

    await settle(vehicle.odometer())
    await settle(vehicle.lock())
    await settle(vehicle.batch(["/odometer"]))
    await settle(vehicle.request("get", "tesla/speedometer"))
    await settle(vehicle.get_signals())
    await settle(vehicle.permissions({"limit": 1}))

    requests = [call.request for call in harness.router.calls]
    assert [query(request)[-1:] for request in requests] == [expected] * 6
    assert query(requests[-1]) == [("limit", "1"), *expected]
    assert "flags=country%3ADE+flag%3Atrue+off%3Afalse+level%3A3" in str(requests[0].url)


async def test_version_is_the_global_one_when_the_vehicle_is_created(harness: Harness) -> None:
    harness.router.get(url__startswith=API).respond(json={"distance": 1.0})
    set_api_version("1.0")
    before = harness.vehicle()
    set_api_version("2.0")
    after = harness.vehicle()
    explicit = harness.vehicle(version="1.0")

    await settle(before.odometer())
    await settle(after.odometer())
    await settle(explicit.odometer())

    urls = [str(call.request.url) for call in harness.router.calls]
    assert urls == [
        f"{API}/v1.0/vehicles/{VEHICLE_ID}/odometer",
        f"{API}/v2.0/vehicles/{VEHICLE_ID}/odometer",
        f"{API}/v1.0/vehicles/{VEHICLE_ID}/odometer",
    ]
    assert (before.version, after.version) == ("1.0", "2.0")


async def test_a_version_three_vehicle_uses_the_v3_origin(harness: Harness) -> None:
    route = harness.router.get(f"{V3_BASE}/odometer").respond(json={"distance": 1.0})

    await settle(harness.vehicle(version="3").odometer())

    assert route.called


def test_an_invalid_version_is_refused() -> None:
    with pytest.raises(ValueError, match="API version"):
        Vehicle(VEHICLE_ID, ACCESS_TOKEN, version="two")


async def test_an_error_answer_raises_the_typed_error(harness: Harness) -> None:
    body = {
        "type": "VEHICLE_STATE",
        "code": "ASLEEP",
        "description": "The vehicle is asleep.",
        "docURL": "https://smartcar.com/docs/errors/api-errors/vehicle-state-errors#asleep",
        "statusCode": 409,
        "resolution": {"type": "RETRY_LATER"},
        "requestId": "body-request-id",
        "suggestedUserMessage": "Wake your car.",
    }
    harness.router.post(f"{BASE}/charge").respond(409, json=body, headers={"sc-request-id": "header-id"})

    with pytest.raises(VehicleStateError) as caught:
        await settle(harness.vehicle().start_charge())

    error = caught.value
    assert (error.status_code, error.type, error.code) == (409, "VEHICLE_STATE", "ASLEEP")
    assert error.request_id == "body-request-id"
    assert error.message == "VEHICLE_STATE:ASLEEP - The vehicle is asleep."


async def test_a_success_that_does_not_fit_the_result_is_an_unexpected_response(harness: Harness) -> None:
    harness.router.get(f"{BASE}/odometer").respond(json={"miles": 1}, headers={"sc-request-id": "rid"})

    with pytest.raises(UnexpectedResponseError) as caught:
        await settle(harness.vehicle().odometer())

    assert caught.value.code == "INVALID_RESPONSE"
    assert caught.value.description is not None
    assert caught.value.description.startswith("Odometer: distance: Field required")
    assert caught.value.request_id == "rid"
    assert caught.value.body == {"miles": 1}


@pytest.mark.parametrize("content", [b"[1, 2]", b"<html>ok</html>", b'"text"'])
async def test_a_success_that_is_not_an_object_is_an_unexpected_response(
    harness: Harness, content: bytes
) -> None:
    harness.router.get(f"{BASE}/odometer").respond(200, content=content)

    with pytest.raises(UnexpectedResponseError, match="Odometer: expected a JSON object"):
        await settle(harness.vehicle().odometer())


async def test_request_sends_any_method_with_the_vehicle_headers(harness: Harness) -> None:
    route = harness.router.get(f"{BASE}/tesla/speedometer").respond(
        json={"speed": 88, "meta": "theirs"}, headers=META_HEADERS
    )

    result = await settle(harness.vehicle().request("get", "/tesla/speedometer"))

    assert result == Response(body={"speed": 88, "meta": "theirs"}, meta=META)
    request = route.calls.last.request
    assert (request.method, str(request.url), request.content) == ("GET", f"{BASE}/tesla/speedometer", b"")
    assert_vehicle_headers(request)


async def test_request_posts_a_json_body(harness: Harness) -> None:
    route = harness.router.post(f"{BASE}/charge/schedule").respond(json={"status": "success"})

    result = await settle(harness.vehicle().request("POST", "charge/schedule", {"enable": True}))

    assert result.body == {"status": "success"}
    assert route.calls.last.request.content == b'{"enable":true}'


async def test_request_lets_caller_headers_override_ours(harness: Harness) -> None:
    route = harness.router.get(f"{BASE}/odometer").respond(json={"distance": 1})
    headers = {
        "Authorization": "Bearer other",
        "SC-Unit-System": "imperial",
        "User-Agent": "mine/1",
        "x-extra": "1",
    }

    await settle(harness.vehicle().request("GET", "odometer", headers=headers))

    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer other"
    assert request.headers["sc-unit-system"] == "imperial"
    assert request.headers["user-agent"] == "mine/1"
    assert request.headers["x-extra"] == "1"
    assert headers == {
        "Authorization": "Bearer other",
        "SC-Unit-System": "imperial",
        "User-Agent": "mine/1",
        "x-extra": "1",
    }


@pytest.mark.parametrize("method", ["GET", "get", "DELETE", "HEAD"])
async def test_request_refuses_a_body_on_a_bodyless_method(harness: Harness, method: str) -> None:
    with pytest.raises(ValueError, match="cannot have a body"):
        await settle(harness.vehicle().request(method, "odometer", {"x": 1}))
    assert harness.router.calls.call_count == 0


async def test_request_with_api_version_three_goes_to_the_v3_origin(harness: Harness) -> None:
    route = harness.router.get(f"{V3_BASE}/signals").respond(json={"data": []})

    await settle(harness.vehicle().request("GET", "signals", api_version="3"))

    assert route.called


async def test_request_with_another_api_version(harness: Harness) -> None:
    route = harness.router.get(f"{API}/v1.0/vehicles/{VEHICLE_ID}/odometer").respond(json={})

    await settle(harness.vehicle().request("GET", "odometer", api_version="1.0"))

    assert route.called


async def test_request_refuses_an_invalid_api_version(harness: Harness) -> None:
    with pytest.raises(ValueError, match="API version"):
        await settle(harness.vehicle().request("GET", "odometer", api_version="v2"))


@pytest.mark.parametrize(
    ("content", "expected"), [(b"", None), (b"plain words", "plain words"), (b"[1,2]", [1, 2])]
)
async def test_request_keeps_any_answer_body(harness: Harness, content: bytes, expected: Any) -> None:
    harness.router.delete(f"{BASE}/application").respond(200, content=content)

    result = await settle(harness.vehicle().request("DELETE", "application"))

    assert result.body == expected


async def test_get_signals_keeps_the_body_whole(harness: Harness) -> None:
    body = {
        "data": [
            {
                "id": "charge-activelimit",
                "type": "signal",
                "attributes": {
                    "code": "charge-activelimit",
                    "name": "ActiveLimit",
                    "group": "Charge",
                    "status": {"value": "SUCCESS"},
                    "body": {"value": 80},
                },
                "meta": {"retrievedAt": 1752104218549, "oemUpdatedAt": 1752104118549},
                "links": {"self": f"/vehicles/{VEHICLE_ID}/signals/charge-activelimit"},
            },
            {
                "id": "location-isathome",
                "type": "signal",
                "attributes": {
                    "code": "location-isathome",
                    "name": "IsAtHome",
                    "group": "Location",
                    "status": {
                        "value": "ERROR",
                        "error": {"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"},
                    },
                },
                "meta": {},
            },
            "not a resource",
        ],
        "meta": {"page": 1, "pageSize": 10, "totalCount": 2},
        "links": {"self": "/a", "first": "/a", "previous": None, "next": None, "last": "/a"},
    }
    route = harness.router.get(f"{V3_BASE}/signals").respond(json=body, headers={"sc-request-id": "rid"})

    result = await settle(harness.vehicle().get_signals())

    assert result.body == body
    assert result.headers["sc-request-id"] == "rid"
    request = route.calls.last.request
    assert str(request.url) == f"{V3_BASE}/signals"
    assert_vehicle_headers(request)
    first, second = result.signals
    assert (first.code, first.name, first.group, first.status, first.value) == (
        "charge-activelimit",
        "ActiveLimit",
        "Charge",
        "SUCCESS",
        80,
    )
    assert first.retrieved_at == datetime(2025, 7, 9, 23, 36, 58, 549000, tzinfo=UTC)
    assert first.oem_updated_at == datetime(2025, 7, 9, 23, 35, 18, 549000, tzinfo=UTC)
    assert (second.status, second.error, second.body, second.retrieved_at) == (
        "ERROR",
        {"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"},
        None,
        None,
    )


async def test_get_signal_reads_one_signal(harness: Harness) -> None:
    body = {
        "id": "odometer-traveleddistance",
        "type": "signal",
        "attributes": {
            "code": "odometer-traveleddistance",
            "name": "TraveledDistance",
            "group": "Odometer",
            "status": {"value": "SUCCESS"},
            "body": {"unit": "kilometers", "value": 115071.50046584333},
        },
        "meta": {"retrievedAt": 1752104218549, "oemUpdatedAt": 1752104118549},
        "links": {"self": f"/vehicles/{VEHICLE_ID}/signals/odometer-traveleddistance"},
    }
    route = harness.router.get(f"{V3_BASE}/signals/odometer-traveleddistance").respond(json=body)

    result = await settle(harness.vehicle(unit_system="imperial").get_signal("odometer-traveleddistance"))

    assert result.body == body
    assert result.body["meta"]["retrievedAt"] == 1752104218549
    assert result.signal.value == 115071.50046584333
    assert result.signal.body == {"unit": "kilometers", "value": 115071.50046584333}
    assert_vehicle_headers(route.calls.last.request, unit_system="imperial")


async def test_v3_answers_that_are_not_objects_are_unexpected(harness: Harness) -> None:
    harness.router.get(f"{V3_BASE}/signals").respond(json=[1])

    with pytest.raises(UnexpectedResponseError, match="SignalsResponse: expected a JSON object"):
        await settle(harness.vehicle().get_signals())


SIGNAL = {
    "id": "tractionbattery-stateofcharge",
    "type": "signal",
    "attributes": {
        "code": "tractionbattery-stateofcharge",
        "name": "StateOfCharge",
        "group": "TractionBattery",
        "status": {"value": "SUCCESS"},
        "body": {"unit": "percent", "value": 61},
    },
    "meta": {"retrievedAt": 1752104218549, "oemUpdatedAt": 1752104118549},
}
USER_ID = "93b3ea96-ca37-43a9-9073-f4334719iok7"


async def test_get_signals_and_get_signal_send_the_user_id(harness: Harness) -> None:
    every = harness.router.get(f"{V3_BASE}/signals").respond(json={"data": [SIGNAL]})
    one = harness.router.get(f"{V3_BASE}/signals/tractionbattery-stateofcharge").respond(json=SIGNAL)
    vehicle = harness.vehicle()

    signals = await settle(vehicle.get_signals(user_id=USER_ID))
    signal = await settle(vehicle.get_signal("tractionbattery-stateofcharge", user_id=USER_ID))

    assert [s.value for s in signals.signals] == [61]
    assert signal.signal.value == 61
    for route in (every, one):
        request = route.calls.last.request
        assert request.headers["sc-user-id"] == USER_ID
        assert_vehicle_headers(request)  # the Bearer token, units, JSON and user agent are still sent
        assert query(request) == []


async def test_without_a_user_id_no_sc_user_id_header_is_sent(harness: Harness) -> None:
    every = harness.router.get(f"{V3_BASE}/signals").respond(json={"data": []})
    one = harness.router.get(f"{V3_BASE}/signals/tractionbattery-stateofcharge").respond(json=SIGNAL)
    vehicle = harness.vehicle()

    await settle(vehicle.get_signals())
    await settle(vehicle.get_signal("tractionbattery-stateofcharge", user_id=None))

    assert "sc-user-id" not in every.calls.last.request.headers
    assert "sc-user-id" not in one.calls.last.request.headers


@pytest.mark.parametrize("user_id", ["", 42])
async def test_a_user_id_that_is_not_a_non_empty_string_is_refused(harness: Harness, user_id: Any) -> None:
    vehicle = harness.vehicle()

    with pytest.raises(ValueError, match="user_id must be a non-empty string"):
        await settle(vehicle.get_signals(user_id=user_id))
    with pytest.raises(ValueError, match="user_id must be a non-empty string"):
        await settle(vehicle.get_signal("odometer-traveleddistance", user_id=user_id))
    assert harness.router.calls.call_count == 0


async def test_the_user_id_is_keyword_only(harness: Harness) -> None:
    """`get_signal(code, user)` would read as another signal's code: the user id is always named."""
    with pytest.raises(TypeError):
        await settle(harness.vehicle().get_signal("odometer-traveleddistance", USER_ID))  # type: ignore[call-arg]
    assert harness.router.calls.call_count == 0


async def test_a_signal_under_a_json_api_data_object_is_read(harness: Harness) -> None:
    harness.router.get(f"{V3_BASE}/signals/tractionbattery-stateofcharge").respond(json={"data": SIGNAL})

    result = await settle(harness.vehicle().get_signal("tractionbattery-stateofcharge"))

    assert (result.signal.code, result.signal.value) == ("tractionbattery-stateofcharge", 61)
    assert result.body == {"data": SIGNAL}


@pytest.mark.parametrize("data", [None, 5, True, "text", {"id": "x"}])
async def test_signals_whose_data_is_not_a_list_are_none(harness: Harness, data: Any) -> None:
    harness.router.get(f"{V3_BASE}/signals").respond(json={"data": data})

    result = await settle(harness.vehicle().get_signals())

    assert result.signals == []
    assert result.body == {"data": data}


async def test_one_vehicles_token_never_reaches_another_vehicles_request(harness: Harness) -> None:
    """The official Python SDK mutated a default `headers={}`: the first vehicle's token leaked."""
    route = harness.router.get(url__startswith=API).respond(json={})
    first = harness.vehicle("vehicle-1", "token-one")
    second = harness.vehicle("vehicle-2", "token-two")

    shared_headers = {"x-trace": "1"}

    await settle(first.request("GET", "odometer"))
    await settle(second.request("GET", "odometer"))
    await settle(first.request("GET", "odometer", headers=shared_headers))
    await settle(second.request("GET", "odometer", headers=shared_headers))
    await settle(second.request("GET", "odometer"))

    sent = [(call.request.url.path, call.request.headers["authorization"]) for call in route.calls]
    one, two = (
        ("/v2.0/vehicles/vehicle-1/odometer", "Bearer token-one"),
        ("/v2.0/vehicles/vehicle-2/odometer", "Bearer token-two"),
    )
    assert sent == [one, two, one, two, two]
    assert shared_headers == {"x-trace": "1"}  # a caller's dict is never written to
    assert "x-trace" not in route.calls.last.request.headers


def test_endpoints_read_from_the_class_are_descriptors() -> None:
    endpoint = Vehicle.odometer
    assert endpoint.name == "odometer"
    assert Vehicle.set_charge_limit.__qualname__ == "VehicleAPI.set_charge_limit"
    assert Vehicle(VEHICLE_ID, ACCESS_TOKEN).odometer.__name__ == "odometer"


def test_a_vehicle_api_that_is_no_sender_cannot_send() -> None:
    bare = VehicleAPI(VEHICLE_ID, ACCESS_TOKEN, origins=ORIGINS)
    with pytest.raises(TypeError, match="must be a SyncSender or an AsyncSender to send odometer"):
        bare.odometer()  # type: ignore[call-overload]


def test_the_call_of_an_endpoint_can_be_built_without_sending() -> None:
    vehicle = Vehicle(VEHICLE_ID, ACCESS_TOKEN, origins=ORIGINS)
    call = type(vehicle).lock.build(vehicle)
    request = call.to_request(httpx.Timeout(1.0))
    assert (request.method, str(request.url), request.content) == (
        "POST",
        f"{BASE}/security",
        b'{"action":"LOCK"}',
    )
    assert_user_agent(request)


def test_async_and_sync_vehicles_share_one_description() -> None:
    assert AsyncVehicle.odometer is Vehicle.odometer
    assert AsyncVehicle.batch is Vehicle.batch


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2018-05-04T07:20:50.844Z", datetime(2018, 5, 4, 7, 20, 50, 844000, tzinfo=UTC)),
        ("2018-05-04T09:20:50+02:00", datetime(2018, 5, 4, 7, 20, 50, tzinfo=UTC)),
        ("2018-05-04T07:20:50", datetime(2018, 5, 4, 7, 20, 50, tzinfo=UTC)),  # no zone: UTC
        ("yesterday", None),
        ("", None),
    ],
)
async def test_meta_times_are_aware_utc_or_none(
    harness: Harness, value: str, expected: datetime | None
) -> None:
    headers = {"sc-data-age": value, "sc-fetched-at": value}
    harness.router.get(f"{BASE}/odometer").respond(json={"distance": 1.0}, headers=headers)

    result = await settle(harness.vehicle().odometer())

    assert (result.meta.data_age, result.meta.fetched_at) == (expected, expected)
