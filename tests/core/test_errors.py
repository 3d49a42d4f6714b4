"""Every error shape Smartcar answers, and the network failures, as `SmartcarError`s."""

from __future__ import annotations

import copy
import json
import pickle
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.support import VEHICLE_ID, Harness, settle
from smartcar_core import (
    AsyncVehicle,
    AuthenticationError,
    BillingError,
    CompatibilityError,
    ConnectedServicesAccountError,
    OAuthError,
    Origins,
    PermissionDeniedError,
    RateLimitError,
    Resolution,
    ResourceNotFoundError,
    ServerError,
    SmartcarConnectionError,
    SmartcarError,
    SmartcarTimeoutError,
    UnexpectedResponseError,
    UpstreamError,
    ValidationError,
    Vehicle,
    VehicleStateError,
)
from smartcar_core.catalogue import RetryClass
from smartcar_core.errors import error_from_response, parse_retry_after
from testsupport import free_port

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def from_body(status: int, body: Any, headers: dict[str, str] | None = None) -> SmartcarError:
    text = body if isinstance(body, str) else json.dumps(body)
    return error_from_response(status, httpx.Headers(headers or {}), text)


def test_v1_body() -> None:
    body = {
        "error": "vehicle_state_error",
        "message": "Vehicle state cannot be determined.",
        "code": "VS_000",
    }

    error = from_body(409, body, {"sc-request-id": "header-id"})

    assert type(error) is VehicleStateError
    assert (error.status_code, error.type, error.code) == (409, "vehicle_state_error", "VS_000")
    assert error.description == "Vehicle state cannot be determined."
    assert error.message == str(error) == "vehicle_state_error:VS_000 - Vehicle state cannot be determined."
    assert error.request_id == "header-id"
    assert error.body == body
    assert error.resolution is None


def test_v1_body_of_an_unknown_family_is_a_plain_smartcar_error() -> None:
    error = from_body(400, {"error": "monkey_error", "message": "Eek", "requestId": "body-id"})

    assert type(error) is SmartcarError
    assert error.message == "monkey_error - Eek"
    assert error.request_id == "body-id"


def test_v2_body_with_every_field() -> None:
    body = {
        "type": "VEHICLE_STATE",
        "code": "UNKNOWN",
        "description": "The vehicle is in an unknown state.",
        "docURL": "https://smartcar.com/docs/errors/api-errors/vehicle-state-errors#unknown",
        "statusCode": 418,
        "resolution": {"type": "RETRY_LATER"},
        "requestId": "body-id",
        "detail": [{"field": "x"}],
        "suggestedUserMessage": "Try again later.",
    }

    error = from_body(409, body, {"sc-request-id": "header-id", "retry-after": "12"})

    assert type(error) is VehicleStateError
    assert error.status_code == 409  # the HTTP status, never the body's copy
    assert (error.type, error.code, error.request_id) == ("VEHICLE_STATE", "UNKNOWN", "body-id")
    assert error.message == "VEHICLE_STATE:UNKNOWN - The vehicle is in an unknown state."
    assert error.resolution == Resolution(type="RETRY_LATER", url=None)
    assert error.doc_url == body["docURL"]
    assert error.detail == [{"field": "x"}]
    assert error.suggested_user_message == "Try again later."
    assert (error.retry_after, error.retry_after_raw) == (12.0, "12")
    assert error.body == body
    assert error.retry_class is RetryClass.RETRY


def test_v2_body_with_a_null_code() -> None:
    body = {
        "type": "PERMISSION",
        "code": None,
        "description": "Your application has insufficient permissions.",
        "resolution": {
            "type": "REAUTHENTICATE",
            "url": "https://connect.smartcar.com/oauth/reauthenticate?x=1",
        },
        "detail": None,
    }

    error = from_body(403, body)

    assert type(error) is PermissionDeniedError
    assert error.code is None
    assert error.message == "PERMISSION - Your application has insufficient permissions."
    assert error.resolution == Resolution(
        "REAUTHENTICATE", "https://connect.smartcar.com/oauth/reauthenticate?x=1"
    )
    assert error.detail is None
    assert error.retry_class is RetryClass.NEVER


@pytest.mark.parametrize(
    ("resolution", "expected"),
    [
        ("RETRY_LATER", Resolution("RETRY_LATER")),
        ({"type": None}, Resolution(None)),
        (
            {"type": "ACTION_REQUIRED", "url": "https://tesla.com/_ak/x"},
            Resolution("ACTION_REQUIRED", "https://tesla.com/_ak/x"),
        ),
        (None, None),
        (["RETRY_LATER"], None),
    ],
)
def test_v2_resolution_forms(resolution: Any, expected: Resolution | None) -> None:
    error = from_body(409, {"type": "VEHICLE_STATE", "code": "ASLEEP", "resolution": resolution})

    assert error.resolution == expected


def test_v2_detail_that_is_not_a_list_is_wrapped_and_missing_description_reads_unknown() -> None:
    error = from_body(
        500, {"type": "SERVER", "code": "MULTIPLE_RECORDS_FOUND", "detail": {"capacities": [83.9]}}
    )

    assert type(error) is ServerError
    assert error.detail == [{"capacities": [83.9]}]
    assert error.message == "SERVER:MULTIPLE_RECORDS_FOUND - Unknown error"


@pytest.mark.parametrize(
    ("error_type", "error_class"),
    [
        ("AUTHENTICATION", AuthenticationError),
        ("BILLING", BillingError),
        ("COMPATIBILITY", CompatibilityError),
        ("CONNECTED_SERVICES_ACCOUNT", ConnectedServicesAccountError),
        ("PERMISSION", PermissionDeniedError),
        ("RATE_LIMIT", RateLimitError),
        ("RESOURCE_NOT_FOUND", ResourceNotFoundError),
        ("SERVER", ServerError),
        ("UPSTREAM", UpstreamError),
        ("VALIDATION", ValidationError),
        ("VEHICLE_STATE", VehicleStateError),
        ("SOMETHING_NEW", SmartcarError),
    ],
)
def test_the_error_class_is_chosen_by_type(error_type: str, error_class: type[SmartcarError]) -> None:
    v2 = from_body(400, {"type": error_type, "code": "X"})
    v3 = from_body(400, {"errors": [{"type": error_type, "code": "X"}]})

    assert type(v2) is type(v3) is error_class
    assert isinstance(v2, SmartcarError)


def test_v3_errors_list_reads_the_first_error() -> None:
    body = {
        "errors": [
            {
                "status": "502",
                "type": "UPSTREAM",
                "code": "INVALID_DATA",
                "title": "Bad Gateway",
                "detail": "The OEM sent data that makes no sense.",
                "links": {
                    "about": "https://smartcar.com/docs/errors/api-errors/upstream-errors#invalid-data"
                },
                "resolution": {"type": "RETRY_LATER"},
                "suggestedUserMessage": "Try again.",
            },
            {"type": "SERVER", "code": "INTERNAL"},
        ],
        "requestId": "body-id",
    }

    error = from_body(502, body, {"sc-request-id": "header-id"})

    assert type(error) is UpstreamError
    assert (error.status_code, error.type, error.code) == (502, "UPSTREAM", "INVALID_DATA")
    assert error.message == "UPSTREAM:INVALID_DATA - The OEM sent data that makes no sense."
    assert error.doc_url == "https://smartcar.com/docs/errors/api-errors/upstream-errors#invalid-data"
    assert error.resolution == Resolution("RETRY_LATER")
    assert error.suggested_user_message == "Try again."
    assert error.request_id == "body-id"
    assert error.body == body


def test_v3_error_with_only_a_title_and_no_links() -> None:
    error = from_body(
        401,
        {
            "errors": [
                {"type": "AUTHENTICATION", "code": "UNAUTHORIZED", "title": "Unauthorized", "links": "x"}
            ]
        },
        {"sc-request-id": "h"},
    )

    assert error.message == "AUTHENTICATION:UNAUTHORIZED - Unauthorized"
    assert (error.doc_url, error.request_id) == (None, "h")
    assert error.retry_class is RetryClass.REFRESH_TOKEN  # an unknown code follows its type


def test_oauth_body() -> None:
    error = from_body(401, {"error": "invalid_client", "error_description": "Invalid client credentials"})

    assert type(error) is OAuthError
    assert (error.type, error.code, error.description) == (
        "invalid_client",
        None,
        "Invalid client credentials",
    )
    assert error.message == "invalid_client - Invalid client credentials"


def test_a_bare_error_name_is_an_oauth_error() -> None:
    error = from_body(400, {"error": "invalid_request"})

    assert type(error) is OAuthError
    assert error.message == "invalid_request - Unknown error"


def test_a_gateway_page_is_an_unexpected_response_that_keeps_the_text() -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>" + "x" * 400 + "</body></html>"

    error = from_body(502, page, {"sc-request-id": "gw-id", "content-type": "text/html"})

    assert type(error) is UnexpectedResponseError
    assert (error.status_code, error.type, error.code, error.request_id) == (502, "SDK_ERROR", None, "gw-id")
    assert error.message == "SDK_ERROR - " + page[:300]
    assert error.body == page
    assert error.retry_class is RetryClass.RETRY


@pytest.mark.parametrize("text", ["[1, 2]", '"just a string"', "null", "{not json"])
def test_a_body_that_is_not_an_object_is_unexpected(text: str) -> None:
    error = from_body(400, text)

    assert type(error) is UnexpectedResponseError
    assert error.description == text
    assert error.body == text
    assert error.retry_class is RetryClass.NEVER


def test_unknown_json_is_unexpected_and_kept() -> None:
    error = from_body(418, {"teapot": True}, {"sc-request-id": "rid"})

    assert type(error) is UnexpectedResponseError
    assert error.message == "SDK_ERROR - Unknown error"
    assert error.body == {"teapot": True}
    assert error.request_id == "rid"


@pytest.mark.parametrize("text", ["", "   \n"])
def test_an_empty_body(text: str) -> None:
    error = from_body(503, text)

    assert error.message == "SDK_ERROR - HTTP 503 with an empty body"
    assert error.retry_class is RetryClass.RETRY


def test_request_id_from_the_body_wins_over_the_header() -> None:
    headers = {"sc-request-id": "header-id"}
    assert (
        from_body(500, {"type": "SERVER", "code": "INTERNAL", "requestId": "body-id"}, headers).request_id
        == "body-id"
    )
    assert from_body(500, {"type": "SERVER", "code": "INTERNAL"}, headers).request_id == "header-id"
    assert from_body(500, {"type": "SERVER", "code": "INTERNAL"}).request_id is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("30", 30.0),
        ("0", 0.0),
        (" 2.5 ", 2.5),
        ("Tue, 14 Nov 2023 22:14:00 GMT", 40.0),  # an HTTP date
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # already past
        (str(int((NOW + 90) * 1000)), 90.0),  # epoch milliseconds, as some SDK tests send
        (str(int(NOW + 15)), 15.0),  # epoch seconds
        (str(int((NOW - 90) * 1000)), 0.0),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_retry_after_forms(raw: str | None, expected: float | None) -> None:
    assert parse_retry_after(raw, now=NOW) == pytest.approx(expected)


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_an_http_date_without_a_zone_is_utc_whatever_the_local_zone(far_from_utc: None) -> None:
    # RFC 5322 "-0000": UTC with no zone stated; Python reads it as a naive datetime.
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:00 -0000", now=NOW) == pytest.approx(40.0)


def test_retry_after_uses_the_clock_when_no_time_is_given() -> None:
    soon = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    delay = parse_retry_after(soon)
    assert delay is not None
    assert 100 < delay <= 120


@pytest.mark.parametrize(
    "error",
    [
        error_from_response(
            429,
            httpx.Headers({"retry-after": "30", "sc-request-id": "req-9"}),
            json.dumps(
                {
                    "type": "RATE_LIMIT",
                    "code": "VEHICLE",
                    "description": "Slow down",
                    "resolution": "RETRY_LATER",
                }
            ),
        ),
        SmartcarTimeoutError("Request timed out (ReadTimeout)", request_sent=True),
        SmartcarConnectionError("ConnectError", request_sent=False),
    ],
)
def test_an_error_survives_pickling_and_copying(error: SmartcarError) -> None:
    for copied in (pickle.loads(pickle.dumps(error)), copy.copy(error)):  # noqa: S301 - our own bytes
        assert type(copied) is type(error)
        assert vars(copied) == vars(error)
        assert copied.args == error.args
        assert str(copied) == str(error)
        assert copied.retry_class is error.retry_class
        assert copied.ambiguous is error.ambiguous


def test_the_message_can_be_given_and_repr_shows_the_identifying_fields() -> None:
    error = SmartcarError(status_code=500, type="SERVER", code="INTERNAL", message="custom", request_id="r")

    assert str(error) == "custom"
    assert repr(error) == "SmartcarError(status_code=500, type='SERVER', code='INTERNAL', request_id='r')"
    assert SmartcarError(status_code=None, type=None).message == "SDK_ERROR - Unknown error"


@pytest.mark.parametrize(
    ("status", "body", "ambiguous", "application_wide"),
    [
        (504, "gateway timeout", True, False),
        (502, {"type": "UPSTREAM", "code": "NO_RESPONSE"}, True, False),
        (502, {"type": "UPSTREAM", "code": "INVALID_DATA"}, False, False),
        (429, {"type": "RATE_LIMIT", "code": "SMARTCAR_API"}, False, True),
        (430, {"type": "BILLING", "code": "ACCOUNT_SUSPENDED"}, False, True),
        (429, {"type": "RATE_LIMIT", "code": "VEHICLE"}, False, False),
    ],
)
def test_ambiguous_and_application_wide_errors(
    status: int, body: Any, ambiguous: bool, application_wide: bool
) -> None:
    error = from_body(status, body)

    assert (error.ambiguous, error.application_wide) == (ambiguous, application_wide)


def test_retryable_and_benign() -> None:
    fully_charged = from_body(409, {"type": "VEHICLE_STATE", "code": "FULLY_CHARGED"})
    assert fully_charged.is_benign_for("start_charge")
    assert not fully_charged.is_benign_for("stop_charge")
    assert not fully_charged.retryable
    assert from_body(500, {"type": "SERVER", "code": "INTERNAL"}).retryable


@pytest.mark.parametrize(
    ("failure", "error_class", "sent"),
    [
        (httpx.ReadTimeout, SmartcarTimeoutError, True),
        (httpx.WriteTimeout, SmartcarTimeoutError, True),
        (httpx.ConnectTimeout, SmartcarTimeoutError, False),
        (httpx.PoolTimeout, SmartcarTimeoutError, False),
        (httpx.ConnectError, SmartcarConnectionError, False),
        (httpx.RemoteProtocolError, SmartcarConnectionError, True),
        (httpx.ReadError, SmartcarConnectionError, True),
    ],
)
async def test_network_failures_are_typed_and_chained(
    harness: Harness, failure: type[httpx.TransportError], error_class: type[SmartcarError], sent: bool
) -> None:
    harness.router.post(url__startswith="https://api.smartcar.com").mock(side_effect=failure)

    with pytest.raises(error_class) as caught:
        await settle(harness.vehicle().start_charge())

    error = caught.value
    assert isinstance(error, SmartcarTimeoutError | SmartcarConnectionError)
    assert error.request_sent is sent
    assert error.ambiguous is sent
    assert isinstance(error.__cause__, failure)
    assert error.type == "SDK_ERROR"
    if error_class is SmartcarTimeoutError:
        assert (error.status_code, error.code) == (408, "TIMEOUT")
        assert error.message.startswith(f"SDK_ERROR:TIMEOUT - Request timed out ({failure.__name__}")
    else:
        assert (error.status_code, error.code) == (None, "CONNECTION")
        assert error.message.startswith(f"SDK_ERROR:CONNECTION - {failure.__name__}")
    assert error.retry_class is RetryClass.RETRY


def test_connection_refused_is_a_connection_error_not_sent() -> None:
    origins = Origins(api=f"http://127.0.0.1:{free_port()}")
    with httpx.Client() as http:
        vehicle = Vehicle(VEHICLE_ID, "token", origins=origins, http=http, timeout=5.0)
        with pytest.raises(SmartcarConnectionError) as caught:
            vehicle.lock()
    assert caught.value.request_sent is False
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_connection_refused_is_a_connection_error_not_sent_async() -> None:
    origins = Origins(api=f"http://127.0.0.1:{free_port()}")
    async with httpx.AsyncClient() as http:
        vehicle = AsyncVehicle(VEHICLE_ID, "token", origins=origins, http=http, timeout=5.0)
        with pytest.raises(SmartcarConnectionError) as caught:
            await vehicle.lock()
    assert caught.value.request_sent is False


def test_a_silent_server_is_a_read_timeout_that_may_have_been_sent() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        origins = Origins(api=f"http://127.0.0.1:{server.getsockname()[1]}")
        with httpx.Client() as http:
            vehicle = Vehicle(VEHICLE_ID, "token", origins=origins, http=http, timeout=0.2)
            with pytest.raises(SmartcarTimeoutError) as caught:
                vehicle.unlock()
    assert caught.value.request_sent is True
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


async def test_an_answer_that_cannot_be_decoded_is_a_connection_error_after_sending(harness: Harness) -> None:
    def garbled(request: httpx.Request) -> httpx.Response:
        # A stream, so that the body is decoded when the client reads it, not here.
        stream = httpx.ByteStream(b"<html>not gzip</html>")
        return httpx.Response(502, headers={"content-encoding": "gzip"}, stream=stream)

    harness.router.post(url__startswith="https://api.smartcar.com").mock(side_effect=garbled)

    with pytest.raises(SmartcarConnectionError) as caught:
        await settle(harness.vehicle().start_charge())

    assert caught.value.request_sent is True
    assert isinstance(caught.value.__cause__, httpx.DecodingError)
    assert caught.value.message.startswith("SDK_ERROR:CONNECTION - DecodingError")
