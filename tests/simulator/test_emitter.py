"""The webhook emitter against a real receiving app (Starlette under uvicorn, in a thread: `serve_asgi`)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from smartcar_core.events import parse_envelope
from smartcar_core.webhooks import verify_payload
from smartcar_simulator import payloads
from smartcar_simulator.emitter import (
    ERROR_EXCERPT_CHARS,
    USER_AGENT,
    BurstReport,
    DeliveryAttempt,
    WebhookEmitter,
    percentile,
)
from testsupport import free_port, serve_asgi, wait_until_async

pytestmark = pytest.mark.anyio

AMT = "amt-0f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0"
WEBHOOK_ID = "wh-emitter-tests"
VEHICLE = {"id": "veh-1", "make": "TESLA", "model": "Model 3", "year": 2020, "user_id": "user-1"}
SLOW = "slow"
REDIRECT = "redirect"
HUGE = "huge"


@dataclasses.dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook target answering from a script (status codes, SLOW or REDIRECT), 200 once it runs out."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Received] = []
        self.script: deque[int | str] = deque()
        self.slow_seconds = 1.0

    def reset(self, *script: int | str) -> None:
        self.requests.clear()
        self.script.clear()
        self.script.extend(script)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(Received(request.url.path, dict(request.headers), body, time.monotonic()))
        action = self.script.popleft() if self.script else 200
        if action == SLOW:
            await asyncio.sleep(self.slow_seconds)
            return Response(status_code=200)
        if action == REDIRECT:
            return RedirectResponse("/followed", status_code=302)
        if action == HUGE:
            return Response(b"x" * 1_000_000, status_code=500, media_type="text/plain")
        assert isinstance(action, int)
        return JSONResponse({"answer": action}, status_code=action)


@pytest.fixture(scope="module")
def server() -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])
    with serve_asgi(
        app, lifespan="off", timeout_graceful_shutdown=2, start_timeout=10, what="the receiving app"
    ) as url:
        receiver.url = url
        yield receiver


@pytest.fixture
def receiver(server: Receiver) -> Receiver:
    server.reset()
    return server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def emitter(receiver: Receiver) -> AsyncIterator[WebhookEmitter]:
    async with WebhookEmitter(target_url=receiver.url + "/hook", amt=AMT, time_scale=0.01) as emitter:
        yield emitter


def state_event(value: int = 50) -> dict[str, Any]:
    signal = payloads.signal_item(
        "tractionbattery-stateofcharge",
        name="StateOfCharge",
        group="TractionBattery",
        body={"unit": "percent", "value": value},
        oem_updated_at=1731940328000,
        retrieved_at=1731940330000,
    )
    return payloads.vehicle_state_event(
        VEHICLE, [signal], webhook_id=WEBHOOK_ID, triggers=["tractionbattery-stateofcharge"]
    )


async def test_data_events_are_signed_over_the_exact_bytes_sent(
    emitter: WebhookEmitter, receiver: Receiver
) -> None:
    event = state_event()
    (attempt,) = await emitter.deliver(event)
    assert attempt.ok
    assert attempt.status_code == 200
    (request,) = receiver.requests
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("smartcar-simulator/")
    assert verify_payload(AMT, request.headers["sc-signature"], request.body)
    assert not verify_payload("another-amt", request.headers["sc-signature"], request.body)
    assert request.body == json.dumps(request.json(), separators=(",", ":"), ensure_ascii=False).encode()
    received = request.json()
    assert received["eventId"] == event["eventId"] == attempt.event_id
    assert received["meta"]["deliveryId"] == attempt.delivery_id
    assert received["data"] == event["data"]


async def test_verify_is_unsigned_unless_asked(emitter: WebhookEmitter, receiver: Receiver) -> None:
    await emitter.deliver(payloads.verify_event(webhook_id=WEBHOOK_ID))
    await emitter.deliver(payloads.verify_event(webhook_id=WEBHOOK_ID, legacy=True))
    assert ["sc-signature" in request.headers for request in receiver.requests] == [False, False]

    receiver.reset()
    async with WebhookEmitter(target_url=receiver.url + "/hook", amt=AMT, sign_verify=True) as signing:
        await signing.deliver(payloads.verify_event(webhook_id=WEBHOOK_ID))
    (request,) = receiver.requests
    assert verify_payload(AMT, request.headers["sc-signature"], request.body)


async def test_failures_are_retried_on_the_scaled_schedule_with_one_event_id(
    emitter: WebhookEmitter, receiver: Receiver
) -> None:
    receiver.reset(503, 500, 429)
    event = state_event()
    attempts = await emitter.deliver(event)

    assert [attempt.attempt for attempt in attempts] == [1, 2, 3, 4]
    assert [attempt.status_code for attempt in attempts] == [503, 500, 429, 200]
    assert [attempt.ok for attempt in attempts] == [False, False, False, True]
    assert attempts[0].error is not None
    assert attempts[0].error.startswith("HTTP 503")
    bodies = [request.json() for request in receiver.requests]
    assert {body["eventId"] for body in bodies} == {event["eventId"]}
    delivery_ids = [body["meta"]["deliveryId"] for body in bodies]
    assert delivery_ids == [attempt.delivery_id for attempt in attempts]
    assert len(set(delivery_ids)) == 4
    assert event["meta"]["deliveryId"] not in delivery_ids  # the caller's dict is left alone
    delivered_at = [body["meta"]["deliveredAt"] for body in bodies]
    assert delivered_at == sorted(delivered_at)
    assert len(set(delivered_at)) == 4
    for request in receiver.requests:
        assert verify_payload(AMT, request.headers["sc-signature"], request.body)

    for scheduled, earlier, later in zip(
        (0.25, 0.5, 1.0), receiver.requests, receiver.requests[1:], strict=False
    ):
        gap = later.at - earlier.at
        assert scheduled <= gap < scheduled + 0.75, (scheduled, gap)
    for scheduled, earlier_attempt, later_attempt in zip(
        (0.25, 0.5, 1.0), attempts, attempts[1:], strict=False
    ):
        assert later_attempt.sent_at - earlier_attempt.sent_at >= scheduled
    assert emitter.attempts_for(event["eventId"]) == attempts


async def test_a_2xx_stops_the_retries(emitter: WebhookEmitter, receiver: Receiver) -> None:
    receiver.reset(500, 202)
    attempts = await emitter.deliver(state_event())
    assert [attempt.status_code for attempt in attempts] == [500, 202]
    assert attempts[-1].ok
    assert len(receiver.requests) == 2
    assert emitter.pending == 0


async def test_after_four_failures_the_event_is_dropped(receiver: Receiver) -> None:
    receiver.reset(*[503] * 10)
    event = state_event()
    with structlog.testing.capture_logs() as logs:
        async with WebhookEmitter(target_url=receiver.url + "/hook", amt=AMT, time_scale=0.001) as emitter:
            attempts = await emitter.deliver(event)
    assert [attempt.status_code for attempt in attempts] == [503] * 4
    assert len(receiver.requests) == 4  # no fifth attempt
    assert list(receiver.script) == [503] * 6
    (dropped,) = [entry for entry in logs if entry["event"] == "webhook_dropped"]
    assert dropped["event_id"] == event["eventId"]
    assert dropped["attempts"] == 4
    assert len([entry for entry in logs if entry["event"] == "webhook_attempt_failed"]) == 4
    assert AMT not in repr(logs)


async def test_a_redirect_is_a_failure_and_is_not_followed(receiver: Receiver) -> None:
    receiver.reset(REDIRECT, REDIRECT, REDIRECT, REDIRECT)
    async with WebhookEmitter(target_url=receiver.url + "/hook", amt=AMT, time_scale=0.001) as emitter:
        attempts = await emitter.deliver(state_event())
    assert [attempt.status_code for attempt in attempts] == [302] * 4
    assert not any(attempt.ok for attempt in attempts)
    assert [request.path for request in receiver.requests] == ["/hook"] * 4


async def test_a_shared_client_does_not_follow_redirects_either(receiver: Receiver) -> None:
    receiver.reset(REDIRECT)
    async with httpx.AsyncClient(follow_redirects=True) as http:
        emitter = WebhookEmitter(target_url=receiver.url + "/hook", amt=AMT, time_scale=0.001, http=http)
        attempts = await emitter.deliver(state_event())
        await emitter.aclose()
        assert not http.is_closed  # the caller's client stays the caller's
    assert [attempt.status_code for attempt in attempts] == [302, 200]
    assert [request.path for request in receiver.requests] == ["/hook", "/hook"]


async def test_a_huge_answer_is_read_only_in_part(emitter: WebhookEmitter, receiver: Receiver) -> None:
    receiver.reset(HUGE)
    first, second = await emitter.deliver(state_event())
    assert first.status_code == 500
    assert first.error == "HTTP 500: " + "x" * ERROR_EXCERPT_CHARS
    assert second.ok


async def test_a_receiver_slower_than_the_timeout_fails_the_attempt(receiver: Receiver) -> None:
    receiver.slow_seconds = 1.0
    receiver.reset(SLOW)
    async with WebhookEmitter(
        target_url=receiver.url + "/hook", amt=AMT, timeout=0.2, time_scale=0.001
    ) as emitter:
        attempts = await emitter.deliver(state_event())
    first, second = attempts
    assert first.timed_out
    assert first.status_code is None
    assert first.outcome == "timeout"
    assert first.error is not None
    assert "timeout" in first.error
    assert 0.2 <= first.latency_seconds < 0.9
    assert second.ok


async def test_connection_errors_are_failures() -> None:
    closed_url = f"http://127.0.0.1:{free_port()}/hook"
    async with WebhookEmitter(target_url=closed_url, amt=AMT, time_scale=0.0) as emitter:
        attempts = await emitter.deliver(state_event())
    assert len(attempts) == 4
    assert {attempt.outcome for attempt in attempts} == {"error"}
    assert all(attempt.status_code is None and attempt.error for attempt in attempts)


async def test_legacy_envelopes_are_resent_unchanged(emitter: WebhookEmitter, receiver: Receiver) -> None:
    receiver.reset(500)
    event = payloads.legacy_event("dynamic", webhook_id=WEBHOOK_ID, vehicle_id="veh-1")
    attempts = await emitter.deliver(event)
    first, second = (request.body for request in receiver.requests)
    assert first == second
    assert [attempt.delivery_id for attempt in attempts] == [None, None]
    assert {attempt.event_id for attempt in attempts} == {parse_envelope(first).event_id}
    assert verify_payload(AMT, receiver.requests[1].headers["sc-signature"], second)


async def test_bytes_are_sent_exactly_as_given(emitter: WebhookEmitter, receiver: Receiver) -> None:
    raw = json.dumps(
        state_event(), indent=2
    ).encode()  # not the compact form: signatures must cover the raw bytes
    (attempt,) = await emitter.deliver(raw)
    (request,) = receiver.requests
    assert request.body == raw
    assert verify_payload(AMT, request.headers["sc-signature"], raw)
    assert attempt.event_id == json.loads(raw)["eventId"]
    assert attempt.delivery_id is None


async def test_malformed_payloads_are_delivered_and_named_by_content(
    emitter: WebhookEmitter, receiver: Receiver
) -> None:
    (attempt,) = await emitter.deliver({"hello": "world"})
    assert attempt.event_id.startswith("unparsed-")
    assert receiver.requests[0].json() == {"hello": "world"}
    assert "sc-signature" in receiver.requests[0].headers


async def test_send_delivers_in_the_background(emitter: WebhookEmitter, receiver: Receiver) -> None:
    receiver.reset(503)
    task = emitter.send(state_event())
    assert emitter.pending == 1
    attempts = await asyncio.wait_for(task, timeout=10)
    assert [attempt.status_code for attempt in attempts] == [503, 200]
    assert emitter.attempts[-2:] == attempts
    assert emitter.pending == 0


async def test_aclose_cancels_deliveries_waiting_to_retry(receiver: Receiver) -> None:
    receiver.reset(503)
    emitter = WebhookEmitter(target_url=receiver.url + "/hook", amt=AMT)  # real 25 s retry delay
    task = emitter.send(state_event())
    await wait_until_async(
        lambda: emitter.attempts, timeout=10, interval=0.01, what="the first attempt to finish"
    )
    await emitter.aclose()
    assert task.cancelled()
    assert len(receiver.requests) == 1


async def test_burst_sends_distinct_events_at_the_requested_rate(receiver: Receiver) -> None:
    count, rate = 60, 120.0
    events = [state_event(value) for value in range(count)]
    async with WebhookEmitter(target_url=receiver.url + "/hook", amt=AMT) as emitter:
        report = await emitter.burst(events, rate=rate, concurrency=8)
    assert report.events == report.attempts == report.delivered == count
    assert report.by_status == {"200": count}
    assert len({request.json()["eventId"] for request in receiver.requests}) == count
    arrivals = [request.at for request in receiver.requests]
    spread = max(arrivals) - min(arrivals)
    assert (count - 1) / rate * 0.9 <= spread < (count - 1) / rate + 1.0
    assert report.duration_seconds >= (count - 1) / rate
    assert 0 < report.latency_p50 <= report.latency_p90 <= report.latency_p99 <= report.latency_max
    assert report.rate == pytest.approx(count / report.duration_seconds)


async def test_burst_counts_outcomes_and_can_retry(receiver: Receiver) -> None:
    receiver.reset(503, 503)
    async with WebhookEmitter(target_url=receiver.url + "/hook", amt=AMT, time_scale=0.0) as emitter:
        report = await emitter.burst(
            [state_event() for _ in range(5)], rate=1000.0, concurrency=1, retries=True
        )
    assert report.events == report.delivered == 5
    assert report.attempts == 7
    assert report.by_status == {"503": 2, "200": 5}


async def test_burst_refuses_a_nonsense_rate(emitter: WebhookEmitter) -> None:
    with pytest.raises(ValueError, match="rate"):
        await emitter.burst([], rate=0)
    assert BurstReport.of(0, [], 0.0).rate == 0.0


def test_emitter_settings_are_checked_and_the_amt_stays_private() -> None:
    with pytest.raises(ValueError, match="timeout"):
        WebhookEmitter(target_url="http://127.0.0.1:1", amt=AMT, timeout=0)
    with pytest.raises(ValueError, match="negative"):
        WebhookEmitter(target_url="http://127.0.0.1:1", amt=AMT, time_scale=-1)
    emitter = WebhookEmitter(target_url="http://127.0.0.1:1/hook", amt=AMT)
    assert AMT not in repr(emitter)
    assert "127.0.0.1:1/hook" in repr(emitter)


def test_attempts_serialise_for_the_control_api() -> None:
    attempt = DeliveryAttempt("e", "d", 1, 1.5, 200, 0.01, None)
    assert attempt.as_dict() == {
        "event_id": "e",
        "delivery_id": "d",
        "attempt": 1,
        "sent_at": 1.5,
        "status_code": 200,
        "latency_seconds": 0.01,
        "error": None,
        "timed_out": False,
    }
    assert attempt.outcome == "200"


def test_percentile_is_nearest_rank() -> None:
    values = [float(value) for value in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 50) == 3.0
    assert percentile([], 50) == 0.0
