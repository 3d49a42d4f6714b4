"""Whatever is not a genuine, well-formed delivery is refused with a clear status, and nothing is stored."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from receiver.app import WEBHOOK_PATH, create_app
from receiver.settings import ReceiverSettings
from smartcar_core.webhooks import signature_of
from smartcar_simulator import payloads
from testsupport.receiver import Harness, LiveReceiver, asgi_client, body_of, serve, signed_headers

EventMaker = Callable[..., dict[str, Any]]
OTHER_AMT = "amt-of-another-application-00"

pytestmark = pytest.mark.anyio


async def metric(http: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await http.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def assert_nothing_stored(harness: Harness) -> None:
    assert harness.inbox() == []
    assert harness.redis.zcard(harness.keys.pending) == 0
    assert list(harness.redis.scan_iter(match=harness.keys.event("*"))) == []


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        pytest.param(None, "missing", id="no signature"),
        pytest.param("", "missing", id="empty signature"),
        pytest.param("0" * 64, "mismatch", id="wrong signature"),
        pytest.param("not-hex-at-all", "malformed", id="malformed signature"),
        pytest.param("a" * 63, "malformed", id="short signature"),
    ],
)
async def test_unsigned_or_wrongly_signed_deliveries_get_401(
    harness: Harness, state_event: EventMaker, signature: str | None, reason: str
) -> None:
    body = body_of(state_event())
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["SC-Signature"] = signature
    response = await harness.http.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": f"SC-Signature {reason}"}
    assert await metric(harness.http, "smartcar_webhook_signature_failures_total", reason=reason) == 1
    assert await metric(harness.http, "smartcar_webhook_requests_total", outcome="unauthorized") == 1
    assert_nothing_stored(harness)


async def test_a_signature_made_with_another_amt_is_refused(
    harness: Harness, state_event: EventMaker
) -> None:
    response = await harness.deliver(state_event(), amt=OTHER_AMT)
    assert response.status_code == 401
    assert_nothing_stored(harness)


async def test_a_body_changed_after_signing_is_refused(harness: Harness, state_event: EventMaker) -> None:
    body = body_of(state_event())
    headers = signed_headers(body, harness.amt)
    tampered = body.replace(b'"value":78', b'"value":79')
    assert tampered != body
    response = await harness.http.post(WEBHOOK_PATH, content=tampered, headers=headers)
    assert response.status_code == 401
    assert_nothing_stored(harness)


async def test_the_signature_header_is_read_case_and_space_insensitively(
    harness: Harness, state_event: EventMaker
) -> None:
    body = body_of(state_event())
    headers = {
        "content-type": "Application/JSON; charset=utf-8",
        "sc-signature": f" {signature_of(harness.amt, body).upper()} ",
    }
    response = await harness.http.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.json()["status"] == "accepted"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        pytest.param(b'{"eventId": "x", "eventType": ', "body", "not valid JSON", id="malformed JSON"),
        pytest.param(b"\xff\xfe not utf-8", "body", "not valid JSON", id="not UTF-8"),
        pytest.param(b"[1, 2]", "body", "JSON object", id="a JSON array"),
        pytest.param(
            b'{"eventType": "VEHICLE_STATE", "vehicleId": "v"}', "eventId", "missing", id="no eventId"
        ),
        pytest.param(b'{"eventId": "e1", "vehicleId": "v"}', "eventType", "missing", id="no eventType"),
        pytest.param(
            b'{"eventId": "e1", "eventType": "VEHICLE_STATE"}', "vehicleId", "missing", id="no vehicle"
        ),
        pytest.param(
            b'{"eventId": "e1", "eventType": "VEHICLE_ERROR", "vehicleId": "v"}',
            "data.errors",
            "list",
            id="no errors",
        ),
        pytest.param(
            b'{"eventName": "eventBased", "payload": 3}', "payload", "payload object", id="legacy no payload"
        ),
    ],
)
async def test_malformed_payloads_get_400_saying_what_is_wrong(
    harness: Harness, body: bytes, field: str, words: str
) -> None:
    response = await harness.deliver(body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert words in response.json()["error"]
    assert await metric(harness.http, "smartcar_webhook_requests_total", outcome="invalid") == 1
    assert_nothing_stored(harness)


async def test_an_unsigned_body_that_only_mentions_verify_is_refused_as_unsigned(
    harness: Harness, state_event: EventMaker
) -> None:
    event = state_event(webhook_name="verify")  # names VERIFY, is not one
    response = await harness.deliver(event, unsigned=True)
    assert response.status_code == 401
    unparsable = await harness.deliver(b'{"eventType": "VERIFY", ', unsigned=True)
    assert unparsable.status_code == 401  # an unsigned caller learns nothing about its content
    assert_nothing_stored(harness)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
async def test_other_content_types_get_415(
    harness: Harness, state_event: EventMaker, content_type: str | None
) -> None:
    body = body_of(state_event())
    headers = {"SC-Signature": signature_of(harness.amt, body)}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await harness.http.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 415
    assert_nothing_stored(harness)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_get_405(harness: Harness, method: str) -> None:
    response = await harness.http.request(method, WEBHOOK_PATH)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.fixture
async def small_live(make_settings: Callable[..., ReceiverSettings]) -> AsyncIterator[LiveReceiver]:
    with serve(create_app(make_settings(max_body_bytes=4096)), log_level="warning") as live:
        yield live


@pytest.fixture
async def live_http(small_live: LiveReceiver) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=small_live.url) as http:
        yield http


async def test_an_oversized_body_is_refused_on_its_content_length(
    live_http: httpx.AsyncClient, harness: Harness
) -> None:
    body = json.dumps({"eventId": "big", "eventType": "VEHICLE_STATE", "pad": "x" * 10_000}).encode()
    response = await live_http.post(WEBHOOK_PATH, content=body, headers=signed_headers(body, harness.amt))
    assert response.status_code == 413
    assert response.json() == {"error": "body over 4096 bytes"}
    assert await metric(live_http, "smartcar_webhook_requests_total", outcome="too_large") == 1
    assert_nothing_stored(harness)


def _chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    yield b'{"eventId": "streamed", "pad": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


async def test_an_oversized_body_without_content_length_is_cut_off_while_streaming(
    live_http: httpx.AsyncClient, harness: Harness
) -> None:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in _chunks(20_000):
            yield chunk

    headers = {"Content-Type": "application/json", "SC-Signature": "0" * 64}
    response = await live_http.post(WEBHOOK_PATH, content=stream(), headers=headers)
    assert response.status_code == 413
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_nothing_stored(harness)


async def test_a_streamed_body_under_the_cap_is_accepted(
    live_http: httpx.AsyncClient, harness: Harness, state_event: EventMaker
) -> None:
    body = body_of(state_event())
    assert len(body) < 4096

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    response = await live_http.post(WEBHOOK_PATH, content=stream(), headers=signed_headers(body, harness.amt))
    assert response.json()["status"] == "accepted"
    assert len(harness.inbox()) == 1


async def call_asgi(
    app: Any, headers: list[tuple[bytes, bytes]], messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Drive the app with hand-made ASGI messages (what no HTTP client would send), return what it sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": WEBHOOK_PATH,
        "raw_path": WEBHOOK_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.9", 50000),
        "server": ("receiver.test", 80),
    }
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_an_invalid_content_length_gets_400(
    make_settings: Callable[..., ReceiverSettings], harness: Harness
) -> None:
    app = create_app(make_settings())
    headers = [(b"content-type", b"application/json"), (b"content-length", b"12abc")]
    sent = await call_asgi(app, headers, [{"type": "http.request", "body": b"{}", "more_body": False}])
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {"error": "invalid Content-Length"}


async def test_a_client_that_leaves_mid_body_gets_no_answer_and_nothing_is_stored(
    make_settings: Callable[..., ReceiverSettings], harness: Harness, state_event: EventMaker
) -> None:
    app = create_app(make_settings())
    body = body_of(state_event())
    headers = [
        (b"content-type", b"application/json"),
        (b"sc-signature", signature_of(harness.amt, body).encode()),
    ]
    first = {"type": "http.request", "body": body[:100], "more_body": True}
    sent = await call_asgi(app, headers, [first, {"type": "http.disconnect"}])
    assert sent == []
    assert await call_asgi(app, headers, [{"type": "http.disconnect"}]) == []
    assert_nothing_stored(harness)


async def test_a_body_in_many_chunks_is_put_together(
    make_settings: Callable[..., ReceiverSettings], harness: Harness, state_event: EventMaker
) -> None:
    app = create_app(make_settings())
    event = state_event()
    body = body_of(event)
    headers = [
        (b"content-type", b"application/json"),
        (b"sc-signature", signature_of(harness.amt, body).encode()),
    ]
    parts = [body[start : start + 50] for start in range(0, len(body), 50)]
    messages = [{"type": "http.request", "body": part, "more_body": True} for part in parts]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    async with app.router.lifespan_context(app):
        sent = await call_asgi(app, headers, messages)
    assert sent[0]["status"] == 200
    assert harness.record(event["eventId"])["raw"] == body


async def test_one_oversized_chunk_without_content_length_gets_413(
    make_settings: Callable[..., ReceiverSettings], harness: Harness
) -> None:
    app = create_app(make_settings(max_body_bytes=2048))
    headers = [(b"content-type", b"application/json"), (b"sc-signature", b"0" * 64)]
    sent = await call_asgi(app, headers, [{"type": "http.request", "body": b"x" * 4096, "more_body": False}])
    assert sent[0]["status"] == 413
    assert_nothing_stored(harness)


async def test_the_replay_age_limit_can_be_set(
    make_settings: Callable[..., ReceiverSettings], harness: Harness, state_event: EventMaker
) -> None:
    event = state_event()
    event["meta"]["deliveredAt"] = int((time.time() - 3600) * 1000)  # an hour old
    async with asgi_client(create_app(make_settings(max_delivery_age_seconds=600))) as http:
        strict = Harness(http, harness.redis, harness.keys, harness.amt)
        assert (await strict.deliver(event)).status_code == 400
    assert (await harness.deliver(event)).status_code == 200  # the default allows days


_DEEP = b"[" * 1000 + b"]" * 1000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            b'{"eventType":"VERIFY","eventId":"e","data":{"challenge":"c","x":' + _DEEP + b"}}",
            id="a VERIFY nested 1000 deep",
        ),
        pytest.param(b'{"x":"VERIFY","y":' + b"[" * 2000 + b"}", id="2 KB of brackets naming VERIFY"),
        pytest.param(
            b'{"eventType":"VEHICLE_STATE","eventId":"e","vehicleId":"v","data":{"x":' + _DEEP + b"}}",
            id="a VEHICLE_STATE nested 1000 deep",
        ),
    ],
)
async def test_json_nested_too_deep_gets_a_4xx_not_a_server_error(harness: Harness, body: bytes) -> None:
    unsigned = await harness.deliver(body, unsigned=True)
    assert unsigned.status_code == 401  # unsigned: nothing said about its content
    assert unsigned.json() == {"error": "SC-Signature missing"}
    signed = await harness.deliver(body)
    assert signed.status_code == 400
    assert signed.json()["field"] == "body"
    assert signed.json()["error"] == "not valid JSON (nested too deeply)"
    assert await metric(harness.http, "smartcar_webhook_requests_total", outcome="unauthorized") == 1
    assert await metric(harness.http, "smartcar_webhook_requests_total", outcome="invalid") == 1
    assert_nothing_stored(harness)


# --- a lone surrogate in a stored field: that delivery refused alone, its neighbours stored ----------------

POISON = "@poison@"
SURROGATES = [
    pytest.param(b"id-\\ud800", id="escaped"),  # JSON's escape: json.loads gives back a lone surrogate
    pytest.param(b"id-\xed\xa0\x80", id="raw-bytes"),  # its raw bytes (json.loads decodes them alike)
]


def _poisoned(event: dict[str, Any], path: str, surrogate: bytes) -> bytes:
    """The compact body of `event` with the string at `path` (dots, `[0]`: a list's first item) replaced by
    one holding a lone surrogate."""
    copy: dict[str, Any] = json.loads(json.dumps(event))
    *parents, last = path.replace("[0]", ".0").split(".")
    target: Any = copy
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = POISON
    return body_of(copy).replace(POISON.encode(), surrogate)


def _event_of(generation: str, state_event: EventMaker, vehicle: dict[str, Any]) -> dict[str, Any]:
    if generation == "4.0-A":
        return state_event("A")
    if generation == "4.0-B":  # no top-level vehicleId: the id comes from data.vehicle.id
        return state_event("B")
    name: payloads.LegacyEventName = "eventBased" if generation == "2.0" else "scheduled"
    return payloads.legacy_event(name, webhook_id="wh-legacy", vehicle_id=vehicle["id"])


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize(
    ("generation", "path"),
    [
        ("4.0-A", "eventId"),
        ("4.0-A", "eventType"),
        ("4.0-A", "vehicleId"),
        ("4.0-B", "data.vehicle.id"),
        ("4.0-A", "data.user.id"),
        ("4.0-A", "meta.webhookId"),
        ("4.0-A", "meta.deliveryId"),
        ("4.0-A", "meta.mode"),
        ("4.0-A", "meta.version"),
        ("2.0", "eventName"),
        ("2.0", "payload.eventId"),
        ("2.0", "payload.vehicleId"),
        ("2.0-scheduled", "payload.vehicles[0].vehicleId"),
        ("2.0", "webhookId"),
        ("2.0", "mode"),
        ("2.0", "version"),
    ],
)
async def test_a_poisoned_delivery_is_refused_alone_and_its_neighbours_are_stored(
    harness: Harness,
    state_event: EventMaker,
    *,
    vehicle: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    generation: str,
    path: str,
    surrogate: bytes,
) -> None:
    neighbours = [body_of(state_event()) for _ in range(30)]
    poisoned = _poisoned(_event_of(generation, state_event, vehicle), path, surrogate)
    bodies = [*neighbours[:15], poisoned, *neighbours[15:]]
    responses = await asyncio.gather(*(harness.deliver(body) for body in bodies))  # one round trip or two

    refused = responses.pop(15)
    assert refused.status_code == 400
    assert refused.json() == {"error": "not valid UTF-8 text (a lone surrogate)", "field": path}
    assert [response.status_code for response in responses] == [200] * 30
    for body, response in zip(neighbours, responses, strict=True):
        assert harness.record(response.json()["eventId"])["raw"] == body
    assert len(harness.inbox()) == 30
    assert await metric(harness.http, "smartcar_webhook_requests_total", outcome="accepted") == 30
    assert await metric(harness.http, "smartcar_webhook_requests_total", outcome="invalid") == 1
    gc.collect()  # a task whose exception nobody retrieved says so when it is collected
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("surrogate", SURROGATES)
async def test_a_lone_surrogate_in_a_field_kept_only_in_the_raw_body_is_stored_byte_exact(
    harness: Harness, state_event: EventMaker, surrogate: bytes
) -> None:
    event = state_event()
    body = _poisoned(event, "meta.webhookName", surrogate)
    response = await harness.deliver(body)
    assert response.json() == {"status": "accepted", "eventId": event["eventId"]}
    assert harness.record(event["eventId"])["raw"] == body


@pytest.mark.parametrize("legacy", [False, True], ids=["4.0", "legacy 2.0"])
@pytest.mark.parametrize(
    "literal",
    [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"1" + b"0" * 400, b'"not a time"', b"true", b"0", b"[1]"],
    ids=lambda literal: literal[:10].decode(),
)
async def test_a_delivered_at_that_is_not_a_moment_gets_400_naming_it(
    harness: Harness, state_event: EventMaker, vehicle: dict[str, Any], literal: bytes, legacy: bool
) -> None:
    if legacy:
        event = payloads.legacy_event("eventBased", webhook_id="wh-legacy", vehicle_id=vehicle["id"])
        event["meta"] = {"deliveredAt": "@"}
    else:
        event = state_event()
        event["meta"]["deliveredAt"] = "@"
    response = await harness.deliver(body_of(event).replace(b'"@"', literal))
    assert response.status_code == 400
    assert response.json() == {
        "error": "not a moment (epoch milliseconds or seconds, or ISO-8601 with a zone)",
        "field": "meta.deliveredAt",
    }
    assert await metric(harness.http, "smartcar_webhook_requests_total", outcome="invalid") == 1
    assert_nothing_stored(harness)


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("eventId", True, "must be a string (as Smartcar sends it), not a boolean"),
        ("eventType", 7, "must be a string (as Smartcar sends it), not a number"),
        ("vehicleId", 42, "must be a string (as Smartcar sends it), not a number"),
        ("data.user.id", {"id": "u"}, "must be a string (as Smartcar sends it), not an object"),
        ("meta.deliveryId", ["d"], "must be a string (as Smartcar sends it), not an array"),
        ("meta", "LIVE", "must be an object"),
        ("meta", [1], "must be an object"),
        ("data.vehicle", "v", "must be an object"),
    ],
)
async def test_ids_types_and_their_objects_taken_loosely_get_400_naming_the_field(
    harness: Harness, state_event: EventMaker, path: str, value: Any, problem: str
) -> None:
    copy: Any = state_event()
    *parents, last = path.split(".")
    target = copy
    for part in parents:
        target = target[part]
    target[last] = value
    response = await harness.deliver(copy)
    assert response.status_code == 400
    assert response.json() == {"error": problem, "field": path}
    assert await metric(harness.http, "smartcar_webhook_requests_total", outcome="invalid") == 1
    assert_nothing_stored(harness)


def _length_headers(body: bytes, amt: str, length: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", length),
        (b"sc-signature", signature_of(amt, body).encode()),
    ]


@pytest.mark.parametrize(
    "template",
    [b"%d ", b" %d", b"\t%d\t", b"  %d \t", b"%d", b"0000000000000000000000000%d"],
    ids=["trailing space", "leading space", "tabs", "spaces and a tab", "bare", "leading zeros"],
)
async def test_a_content_length_with_optional_whitespace_is_read(
    make_settings: Callable[..., ReceiverSettings], harness: Harness, state_event: EventMaker, template: bytes
) -> None:
    app = create_app(make_settings())
    event = state_event()
    body = body_of(event)
    headers = _length_headers(body, harness.amt, template % len(body))
    async with app.router.lifespan_context(app):
        sent = await call_asgi(app, headers, [{"type": "http.request", "body": body, "more_body": False}])
    assert sent[0]["status"] == 200
    assert harness.record(event["eventId"])["raw"] == body


@pytest.mark.parametrize(
    ("length", "status", "error"),
    [
        (b"", 400, "invalid Content-Length"),
        (b" \t ", 400, "invalid Content-Length"),
        (b"12abc", 400, "invalid Content-Length"),
        (b"1 2", 400, "invalid Content-Length"),
        (b"+5", 400, "invalid Content-Length"),
        (b"-1", 400, "invalid Content-Length"),
        (b"0x10", 400, "invalid Content-Length"),
        (b"2,2", 400, "invalid Content-Length"),
        (b"\x0b2", 400, "invalid Content-Length"),  # a vertical tab is no HTTP whitespace
        ("\u0661\u0662".encode(), 400, "invalid Content-Length"),  # Arabic-Indic digits are no DIGIT
        (b"9" * 5000, 413, "body over 262144 bytes"),  # past int()'s 4,300 digits: still a 413, not a 500
        (b"0" * 5000 + b"300000", 413, "body over 262144 bytes"),
        (b"1" + b"0" * 30, 413, "body over 262144 bytes"),
    ],
)
async def test_a_content_length_that_is_no_number_is_refused(
    make_settings: Callable[..., ReceiverSettings], harness: Harness, length: bytes, status: int, error: str
) -> None:
    app = create_app(make_settings())
    headers = _length_headers(b"{}", harness.amt, length)
    sent = await call_asgi(app, headers, [{"type": "http.request", "body": b"{}", "more_body": False}])
    assert sent[0]["status"] == status
    assert json.loads(sent[1]["body"]) == {"error": error}
    assert_nothing_stored(harness)
