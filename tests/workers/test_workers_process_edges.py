"""How a run ends when time, tokens, its lease or the broker let it down (real Redis, the simulator as
Smartcar): the soft time limit reached between two handlers, a token refresh held by another worker, a run
that lost its lease to a redelivered message before it could record a retry or a dead letter, and a retry
whose countdown cannot be published because the broker is down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.workers import accept_event, store_minted
from workers.api import HandlerContext, HandlerRegistry
from workers.app import publishing_app
from workers.assembly import Assembly
from workers.process import Outcome, process_event
from workers.runtime import Runtime
from workers.settings import WorkerSettings

Maker = Callable[..., dict[str, Any]]


@pytest.fixture
def new_event(client: redis.Redis, key_prefix: str, car: Maker, state_event: Maker) -> Callable[[], str]:
    return lambda: accept_event(client, key_prefix, state_event(car(), {"charge-ischarging": True}))


def test_the_soft_time_limit_between_two_handlers_retries_the_rest(
    make_runtime: Callable[..., Runtime], new_event: Callable[[], str]
) -> None:
    ran: list[str] = []
    registry = HandlerRegistry()

    @registry.handler("VEHICLE_STATE", name="slow", order=1)
    def slow(ctx: HandlerContext) -> None:
        ran.append("slow")
        wait_until(lambda: ctx.remaining() < 0, timeout=5, what="the soft time limit")

    @registry.handler("VEHICLE_STATE", name="next", order=2)
    def after(ctx: HandlerContext) -> None:
        ran.append("next")

    runtime = make_runtime(handlers=registry, task_soft_time_limit=0.3)
    event_id = new_event()
    result = process_event(runtime, event_id)
    assert result.outcome is Outcome.RETRY
    entry = result.detail["entry"]
    assert entry["handler"] == "next"
    assert entry["error"] == {
        "class": "SoftDeadlineError",
        "message": "soft time limit reached before handler next",
    }
    assert ran == ["slow"]
    # The next run skips what finished and runs the rest.
    assert process_event(runtime, event_id).outcome is Outcome.DONE
    assert ran == ["slow", "next"]


def test_a_token_refresh_held_by_another_worker_defers_the_event_a_second(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    state_event: Maker,
) -> None:
    runtime = sim_runtime(token_refresh_wait=0.1, follow_up_signals={"*": ["closure-islocked"]})
    vehicle = sim.control.vehicles()[0]
    minted = sim.control.mint_tokens(user_id=vehicle["user_id"])
    grant = store_minted(runtime.tokens, minted, expires_at=time.time() + 10)  # due for a refresh
    client.set(runtime.keys.grant_lock(grant), "another-worker", px=30_000)  # which someone else does
    body = state_event({**vehicle, "user_id": minted.user_id}, {"charge-ischarging": True})
    result = process_event(runtime, accept_event(client, key_prefix, body))
    assert result.outcome is Outcome.RETRY
    assert result.detail["entry"]["outcome"] == "deferred"  # not a failure: no attempt used up
    assert result.detail["delay"] == 1.0
    assert result.detail["entry"]["error"]["class"] == "DeferredError"
    assert sim.control.requests() == []


def _taken_over(runtime: Runtime, ctx: HandlerContext) -> None:
    """A redelivered message's run takes the event once this run's lease has ended."""
    later = time.time() + runtime.settings.task_time_limit + 1
    taken = runtime.store.begin(ctx.event_id, lease=60, task_id="redelivered", now=later)
    assert taken.record is not None


@pytest.mark.parametrize("attempts", [5, 1], ids=["would-retry", "would-dead-letter"])
def test_a_run_that_lost_its_lease_records_neither_a_retry_nor_a_dead_letter(
    make_runtime: Callable[..., Runtime], new_event: Callable[[], str], attempts: int
) -> None:
    registry = HandlerRegistry()
    runtime = make_runtime(handlers=registry, retry_max_attempts=attempts)

    @registry.handler("VEHICLE_STATE", name="outlived")
    def outlived(ctx: HandlerContext) -> None:
        _taken_over(runtime, ctx)
        raise RuntimeError("failed after its lease ended")

    event_id = new_event()
    with capture_logs():  # the handler's failure is logged with its traceback: not rendered here
        result = process_event(runtime, event_id)
    assert result.outcome is Outcome.SKIPPED
    assert result.detail == {"reason": "lease lost"}
    record = runtime.store.load(event_id)
    assert record is not None
    assert record.status == "processing"  # the other run's, untouched
    assert record.history == []
    assert runtime.redis.zscore(runtime.keys.dead, event_id) is None


@pytest.fixture
def broker_down(settings: WorkerSettings) -> Iterator[Assembly]:
    """The process's publisher, on a broker that does not answer (nothing listens on port 9)."""
    unreachable = settings.model_copy(update={"celery_broker_url": "redis://127.0.0.1:9/0"})
    assembly = Assembly(publishing_app(unreachable), settings=unreachable)
    yield assembly
    assembly.close()
    assembly.celery.close()


def test_a_retry_whose_countdown_cannot_be_published_is_parked_for_the_relay(
    make_runtime: Callable[..., Runtime], new_event: Callable[[], str], broker_down: Assembly
) -> None:
    registry = HandlerRegistry()

    @registry.handler("VEHICLE_STATE", name="flaky")
    def flaky(ctx: HandlerContext) -> None:
        raise RuntimeError("once")

    runtime = make_runtime(handlers=registry, enqueue=broker_down.publisher().enqueue)
    event_id = new_event()
    before = time.time()
    with capture_logs() as logs:
        result = process_event(runtime, event_id)
    assert result.outcome is Outcome.RETRY
    failed = next(line for line in logs if line["event"] == "countdown_publish_failed")
    assert (failed["event_id"], failed["outcome"], failed["log_level"]) == (event_id, "parked", "warning")
    assert result.detail["parked"] is False  # a countdown was meant...
    delay = result.detail["delay"]
    due = runtime.redis.zscore(runtime.keys.scheduled, event_id)  # ...and it is parked instead
    assert due is not None
    assert before + delay <= due <= time.time() + delay
    assert runtime.store.due(10, now=due - 0.01) == []
    assert runtime.store.due(10, now=due + 0.01) == [event_id]  # what the relay publishes when due
