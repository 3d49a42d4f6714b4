"""Vehicle.batch: the request, typed items by path and by method name, item errors, merged meta."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core.support import BASE, VEHICLE_ID, Harness, assert_vehicle_headers, json_of, settle
from smartcar_core import (
    Attributes,
    BatchResponse,
    Meta,
    NominalCapacity,
    Odometer,
    Permissions,
    Response,
    ServerError,
    ServiceHistory,
    UnexpectedResponseError,
    VehicleStateError,
)

pytestmark = pytest.mark.anyio

DATA_AGE = "2023-04-30T07:20:50.844Z"
FETCHED_AT = "2023-04-30T07:20:51.844Z"
TOP_HEADERS = {"sc-request-id": "batch-request-id", "sc-unit-system": "metric"}
ITEM_HEADERS = {"sc-unit-system": "imperial", "sc-data-age": DATA_AGE, "sc-fetched-at": FETCHED_AT}
ASLEEP = {
    "type": "VEHICLE_STATE",
    "code": "ASLEEP",
    "description": "The vehicle is asleep.",
    "resolution": {"type": "RETRY_LATER"},
}
ITEMS: list[dict[str, Any]] = [
    {"path": "/odometer", "code": 200, "headers": ITEM_HEADERS, "body": {"distance": 32768}},
    {"path": "/location", "code": 409, "headers": {"retry-after": "30"}, "body": ASLEEP},
    {"path": "/", "code": 200, "body": {"id": VEHICLE_ID, "make": "TESLA", "model": "Model S", "year": 2014}},
    {
        "path": "/tesla/speedometer",
        "code": 200,
        "headers": {"sc-request-id": "item-id"},
        "body": {"speed": 5},
    },
    {
        "path": "/battery/nominal_capacity",
        "code": 200,
        "body": {"availableCapacities": [], "capacity": None, "url": "https://x"},
    },
    {"path": "/fuel", "code": 200, "body": {"range": 1}},
    {"path": "/permissions", "code": 200, "body": {"permissions": ["read_odometer"]}},
    {"path": "service/history", "code": 200, "body": [{"serviceId": 1}]},
    {
        "path": "/engine/oil",
        "code": 200,
        "headers": {"content-encoding": "gzip"},
        "body": {"lifeRemaining": 0.5},
    },
]
ITEM_META = Meta(
    data_age=datetime(2023, 4, 30, 7, 20, 50, 844000, tzinfo=UTC),
    unit_system="imperial",
    request_id="batch-request-id",
    fetched_at=datetime(2023, 4, 30, 7, 20, 51, 844000, tzinfo=UTC),
)
TOP_META = Meta(unit_system="metric", request_id="batch-request-id")


async def batch(harness: Harness, items: list[dict[str, Any]] = ITEMS) -> BatchResponse:
    harness.router.post(f"{BASE}/batch").respond(json={"responses": items}, headers=TOP_HEADERS)
    paths = [item["path"] for item in items]
    result = await settle(harness.vehicle().batch(paths))
    assert isinstance(result, BatchResponse)
    return result


async def test_batch_posts_every_path_with_a_leading_slash(harness: Harness) -> None:
    route = harness.router.post(f"{BASE}/batch").respond(json={"responses": []}, headers=TOP_HEADERS)

    result = await settle(harness.vehicle().batch(["odometer", "/location", "/", "tires/pressure/"]))

    request = route.calls.last.request
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/batch")
    assert json_of(request) == {
        "requests": [{"path": "/odometer"}, {"path": "/location"}, {"path": "/"}, {"path": "/tires/pressure"}]
    }
    assert request.content.startswith(b'{"requests":[{"path":"/odometer"}')
    assert_vehicle_headers(request)
    assert result.paths == []
    assert result.meta == TOP_META


async def test_batch_needs_a_path(harness: Harness) -> None:
    with pytest.raises(ValueError, match="at least one path"):
        await settle(harness.vehicle().batch([]))
    assert harness.router.calls.call_count == 0


async def test_items_are_typed_and_found_by_path_or_by_method_name(harness: Harness) -> None:
    result = await batch(harness)

    expected = Odometer(distance=32768, meta=ITEM_META)
    assert result.get("/odometer") == result.get("odometer") == result.odometer() == expected
    attributes = Attributes(id=VEHICLE_ID, make="TESLA", model="Model S", year=2014, meta=TOP_META)
    assert result.attributes() == result.get("/") == result.get("") == attributes
    assert result.nominal_capacity() == NominalCapacity(
        available_capacities=[], capacity=None, url="https://x", meta=TOP_META
    )
    assert result.permissions() == Permissions(permissions=["read_odometer"], paging=None, meta=TOP_META)
    assert result.service_history() == ServiceHistory(items=[{"serviceId": 1}], meta=TOP_META)
    assert result.engine_oil().life_remaining == 0.5
    assert result.meta == TOP_META
    assert result.paths == [
        "/odometer",
        "/location",
        "/",
        "/tesla/speedometer",
        "/battery/nominal_capacity",
        "/fuel",
        "/permissions",
        "/service/history",
        "/engine/oil",
    ]
    assert [item.code for item in result.items] == [200, 409, 200, 200, 200, 200, 200, 200, 200]


async def test_a_path_no_method_reads_is_kept_as_a_response_with_the_item_winning(harness: Harness) -> None:
    result = await batch(harness)

    assert result.get("/tesla/speedometer") == Response(
        body={"speed": 5}, meta=Meta(unit_system="metric", request_id="item-id")
    )


async def test_an_item_error_is_raised_with_the_items_code_and_merged_headers(harness: Harness) -> None:
    result = await batch(harness)

    with pytest.raises(VehicleStateError) as caught:
        result.location()

    error = caught.value
    assert (error.status_code, error.type, error.code) == (409, "VEHICLE_STATE", "ASLEEP")
    assert error.retry_after == 30.0
    assert error.request_id == "batch-request-id"
    assert error.message == "VEHICLE_STATE:ASLEEP - The vehicle is asleep."
    with pytest.raises(VehicleStateError):
        result.get("location")


async def test_an_item_that_does_not_fit_its_result_is_raised_when_read(harness: Harness) -> None:
    result = await batch(harness)

    with pytest.raises(UnexpectedResponseError, match="Fuel: percentRemaining: Field required"):
        result.fuel()


async def test_an_item_without_a_code_is_a_failure(harness: Harness) -> None:
    result = await batch(harness, [{"path": "/odometer", "body": {"type": "SERVER", "code": "INTERNAL"}}])

    with pytest.raises(ServerError) as caught:
        result.odometer()
    assert caught.value.status_code == 0


@pytest.mark.parametrize("code", ["OK", {"status": 200}, 200.5, True, "-1", "²"])
async def test_an_item_code_that_is_not_a_status_is_unexpected(harness: Harness, code: Any) -> None:
    body = {"responses": [{"path": "/odometer", "code": code, "body": {"distance": 1}}]}
    harness.router.post(f"{BASE}/batch").respond(json=body)

    with pytest.raises(UnexpectedResponseError, match="an item's code is not an HTTP status"):
        await settle(harness.vehicle().batch(["/odometer"]))


async def test_an_item_code_may_be_a_string_of_digits(harness: Harness) -> None:
    result = await batch(harness, [{"path": "/odometer", "code": "200", "body": {"distance": 1}}])

    assert result.odometer().distance == 1
    assert [item.code for item in result.items] == [200]


async def test_missing_answers_are_key_and_attribute_errors(harness: Harness) -> None:
    result = await batch(harness, ITEMS[:1])

    with pytest.raises(KeyError):
        result.get("/location")
    with pytest.raises(AttributeError, match="no answer for 'location'; paths: \\['/odometer'\\]"):
        result.location()
    with pytest.raises(AttributeError, match="no answer for 'teleport'"):
        result.teleport  # noqa: B018 - the attribute lookup is what raises
    assert repr(result) == "BatchResponse(paths=['/odometer'])"


async def test_a_failed_batch_raises_for_the_whole_call(harness: Harness) -> None:
    body = {"error": "server_error", "message": "Unexpected server error", "code": "SE_000"}
    harness.router.post(f"{BASE}/batch").respond(500, json=body)

    with pytest.raises(ServerError) as caught:
        await settle(harness.vehicle().batch(["/odometer"]))

    assert caught.value.message == "server_error:SE_000 - Unexpected server error"
    assert caught.value.status_code == 500


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"responses": {"path": "/odometer"}}, "expected a `responses` list"),
        ([], "expected a `responses` list"),
        ({"responses": ["/odometer"]}, "an item is not an object"),
    ],
)
async def test_a_batch_answer_of_the_wrong_shape_is_unexpected(
    harness: Harness, body: Any, problem: str
) -> None:
    harness.router.post(f"{BASE}/batch").respond(json=body)

    with pytest.raises(UnexpectedResponseError, match=problem):
        await settle(harness.vehicle().batch(["/odometer"]))
