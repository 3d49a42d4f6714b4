"""process_event with handlers of the test's own: outcomes, history, retries, dead letters."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from smartcar_core.errors import SmartcarError, error_from_response
from testsupport.workers import accept_event, event_status
from workers.api import HandlerContext, HandlerRegistry
from workers.limits import DeferredError
from workers.process import Outcome, process_event
from workers.runtime import Runtime


def smartcar_error(status: int, error_type: str, code: str | None, **extra: Any) -> SmartcarError:
    headers = {"sc-request-id": "req-123"}
    if "retry_after" in extra:
        headers["retry-after"] = str(extra.pop("retry_after"))
    body = {"type": error_type, "code": code, "description": "test", "statusCode": status, **extra}
    return error_from_response(status, httpx.Headers(headers), json.dumps(body))


@pytest.fixture
def new_event(
    client: redis.Redis,
    key_prefix: str,
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
) -> Callable[..., str]:
    return lambda **kwargs: accept_event(
        client, key_prefix, state_event(car(), {"charge-ischarging": True}, **kwargs)
    )


def _registry(*functions: Any) -> HandlerRegistry:
    registry = HandlerRegistry()
    for position, function in enumerate(functions):
        registry.handler("VEHICLE_STATE", name=f"h{position}", order=position)(function)
    return registry


def test_handlers_run_in_order_and_results_are_recorded(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    new_event: Callable[..., str],
) -> None:
    seen: list[str] = []

    def first(ctx: HandlerContext) -> dict[str, Any]:
        seen.append("first")
        return {"vehicle": ctx.vehicle_id}

    def second(ctx: HandlerContext) -> None:
        seen.append("second")

    runtime = make_runtime(handlers=_registry(first, second))
    event_id = new_event()
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.DONE
    assert seen == ["first", "second"]
    record = runtime.store.load(event_id)
    assert record is not None
    assert record.status == "done"
    assert record.results["h0"]["result"]["vehicle"] == record.vehicle_id
    assert record.results["h1"] == {"status": "done", "at": record.results["h1"]["at"], "result": None}
    # A second run of a finished event does nothing.
    assert process_event(runtime, event_id).outcome is Outcome.SKIPPED
    assert seen == ["first", "second"]


def test_retryable_smartcar_error_is_retried_with_the_policy_delay(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    new_event: Callable[..., str],
) -> None:
    calls: list[int] = []

    def done_once(ctx: HandlerContext) -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    def flaky(ctx: HandlerContext) -> None:
        if ctx.record.attempts == 1:
            raise smartcar_error(429, "RATE_LIMIT", "VEHICLE", retry_after=3)

    runtime = make_runtime(handlers=_registry(done_once, flaky), max_countdown=0)
    event_id = new_event()
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.RETRY
    assert result.detail["delay"] == 3.0  # Retry-After honoured
    assert result.detail["parked"] is True
    assert event_status(client, key_prefix, event_id) == "retrying"
    assert client.zscore(runtime.store.keys.scheduled, event_id) is not None
    record = runtime.store.load(event_id)
    assert record is not None
    (entry,) = record.history
    assert entry["error"]["type"] == "RATE_LIMIT"
    assert entry["error"]["code"] == "VEHICLE"
    assert entry["error"]["status"] == 429
    assert entry["error"]["request_id"] == "req-123"
    assert entry["handler"] == "h1"
    # The next run skips the handler that finished and completes.
    assert process_event(runtime, event_id).outcome is Outcome.DONE
    assert calls == [1]


def test_never_retry_error_goes_to_dead_letters_with_the_user_message(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    new_event: Callable[..., str],
) -> None:
    def denied(ctx: HandlerContext) -> None:
        raise smartcar_error(
            409,
            "COMPATIBILITY",
            "MAKE_NOT_COMPATIBLE",
            resolution={"type": "CONTACT_SUPPORT", "url": "https://connect.example/re"},
            suggestedUserMessage="Please reconnect your car.",
        )

    runtime = make_runtime(handlers=_registry(denied))
    event_id = new_event()
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.DEAD
    record = runtime.store.load(event_id)
    assert record is not None
    assert record.status == "failed"
    (entry,) = record.history
    assert entry["outcome"] == "failed"
    assert entry["suggested_user_message"] == "Please reconnect your car."
    assert entry["resolution"] == {"type": "CONTACT_SUPPORT", "url": "https://connect.example/re"}
    assert client.zscore(runtime.keys.dead, event_id) is not None


def test_transient_errors_are_retried_until_the_attempts_run_out(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    new_event: Callable[..., str],
) -> None:
    def upstream(ctx: HandlerContext) -> None:
        raise smartcar_error(502, "UPSTREAM", "UNKNOWN_ISSUE")

    runtime = make_runtime(handlers=_registry(upstream), retry_max_attempts=3, max_countdown=0)
    event_id = new_event()
    outcomes = [process_event(runtime, event_id).outcome for _ in range(3)]
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.DEAD]
    record = runtime.store.load(event_id)
    assert record is not None
    assert [entry["outcome"] for entry in record.history] == ["retry", "retry", "failed"]
    assert all(0 < entry["delay"] <= 0.2 for entry in record.history[:2])
    assert record.fields["dead_reason"] == "gave up after 3 attempts"


def test_a_bug_in_a_handler_is_retried_then_dead_lettered(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    new_event: Callable[..., str],
) -> None:
    def broken(ctx: HandlerContext) -> None:
        raise KeyError("soc")

    runtime = make_runtime(handlers=_registry(broken), retry_max_attempts=2, max_countdown=0)
    event_id = new_event()
    assert process_event(runtime, event_id).outcome is Outcome.RETRY
    assert process_event(runtime, event_id).outcome is Outcome.DEAD
    record = runtime.store.load(event_id)
    assert record is not None
    assert record.history[-1]["error"] == {"class": "KeyError", "message": "'soc'"}


def test_deferrals_do_not_use_up_attempts(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    new_event: Callable[..., str],
) -> None:
    def busy(ctx: HandlerContext) -> None:
        raise DeferredError("vehicle busy", 0.5)

    runtime = make_runtime(handlers=_registry(busy), retry_max_attempts=1, max_deferrals=2, max_countdown=0)
    event_id = new_event()
    assert process_event(runtime, event_id).outcome is Outcome.RETRY
    assert process_event(runtime, event_id).outcome is Outcome.RETRY
    assert process_event(runtime, event_id).outcome is Outcome.DEAD
    record = runtime.store.load(event_id)
    assert record is not None
    assert [entry["outcome"] for entry in record.history] == ["deferred", "deferred", "failed"]


def test_a_payload_that_is_not_a_webhook_is_dead_lettered(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    new_event: Callable[..., str],
) -> None:
    runtime = make_runtime(handlers=_registry())
    event_id = new_event()
    client.hset(runtime.keys.event(event_id), "raw", b"not json")
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.DEAD
    assert result.detail["entry"]["error"]["class"] == "EnvelopeError"


def test_test_mode_deliveries_have_no_side_effects(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    new_event: Callable[..., str],
) -> None:
    ran: list[str] = []
    registry = HandlerRegistry()
    registry.handler("VEHICLE_STATE", name="effect")(lambda _: ran.append("effect"))
    registry.handler("*", name="audit", test_events=True)(lambda _: ran.append("audit"))
    runtime = make_runtime(handlers=registry)
    event_id = new_event(mode="TEST")
    assert process_event(runtime, event_id).outcome is Outcome.DONE
    assert ran == ["audit"]
    record = runtime.store.load(event_id)
    assert record is not None
    assert record.results["effect"]["status"] == "skipped"


def test_countdown_retries_are_published_through_enqueue(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    new_event: Callable[..., str],
) -> None:
    published: list[tuple[str, float]] = []

    def flaky(ctx: HandlerContext) -> None:
        raise smartcar_error(500, "SERVER", "INTERNAL")

    runtime = make_runtime(handlers=_registry(flaky), enqueue=lambda i, d: published.append((i, d)))
    event_id = new_event()
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.RETRY
    assert result.detail["parked"] is False
    assert published == [(event_id, result.detail["delay"])]
    assert client.zscore(runtime.store.keys.scheduled, event_id) is None


def test_a_busy_event_is_parked_until_the_lease_ends(
    client: redis.Redis,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    new_event: Callable[..., str],
) -> None:
    runtime = make_runtime(handlers=_registry())
    event_id = new_event()
    holder = runtime.store.begin(event_id, lease=30, task_id="first")
    assert holder.record is not None
    result = process_event(runtime, event_id, task_id="second")
    assert result.outcome is Outcome.SKIPPED
    assert result.detail["reason"] == "busy"
    due = client.zscore(runtime.store.keys.scheduled, event_id)
    assert due is not None
    assert due == pytest.approx(float(holder.record.fields["lease_until"]) + 1.0)
