"""`process_event`: one run of one stored event through its handlers, and what happens after.

The run takes the event's lease (status processing, attempts + 1), runs the handlers registered for its
type in order (skipping those an earlier run finished), and ends it in one of three ways:

- done: every handler finished;
- retrying: a handler failed in a way worth another try (the `RetryPolicy` decides, by the catalogue),
  or must wait (a busy vehicle, an empty rate bucket); short delays become a Celery countdown, longer
  ones are parked in the store's schedule for the relay to pick up when due;
- failed: the error needs a person (or the tries ran out); the event goes to the dead letters with the
  whole attempt history and, for Smartcar errors, the suggested user message and resolution.

Two failures need a person but nothing is wrong with the event, so it waits instead of failing:

- Smartcar rejected our client credentials on a refresh (`ClientRejectedError`): retried every
  WORKERS_CLIENT_REJECTED_DELAY (outcome `waiting`, not counted as an attempt) until the secret is fixed;
- the vehicle's access was lost (a refused refresh token, AUTHENTICATION after a refresh, PERMISSION, or
  a vehicle already held): the vehicle is marked (`workers.access`) and the event is *held* (outcome
  `held`, "waiting for re-consent"): parked far ahead under its vehicle (`eventstore.held`) until a new
  pair for the vehicle releases it.

Running it twice for the same event is harmless: a finished event is left alone, a running one (live
lease) is skipped, and commands are recorded per (event, step).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from eventstore.events import BeginState
from eventstore.fleet import VehicleStatus
from eventstore.held import HOLD_SECONDS
from eventstore.record import EventRecord, history_entry
from eventstore.vehicles import StagedSignals
from service_base.logs import get_logger
from smartcar_core.catalogue import RetryClass
from smartcar_core.errors import SmartcarError
from smartcar_core.events import EnvelopeError, parse_envelope
from smartcar_core.retry import Action
from workers.access import AccessLoss, access_lost
from workers.context import HandlerContext
from workers.limits import DeferredError
from workers.tokens import (
    ClientRejectedError,
    GrantRefusedError,
    TokenError,
    TokenRefreshBusyError,
    VehicleHeldError,
)

if TYPE_CHECKING:
    from workers.runtime import Runtime

log = get_logger("workers.process")
NO_HANDLER = "no_handler"
"""The metrics' outcome of a run that found no handler for its event type (the event is done)."""
_TOKEN_BUSY_DELAY = 1.0
HELD_REASON = "waiting for re-consent"
CLIENT_REJECTED_REASON = "waiting for SMARTCAR_CLIENT_ID/SECRET to be accepted by Smartcar"


class Outcome(StrEnum):
    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class RunResult:
    event_id: str
    outcome: Outcome
    detail: dict[str, Any] = field(default_factory=dict)


class SoftDeadlineError(Exception):
    """The run used up its time (the task's soft time limit) between two handlers."""


def describe_error(error: BaseException) -> dict[str, Any]:
    """An error as recorded in the history: class, type/code, HTTP status, request id, message."""
    if isinstance(error, SmartcarError):
        described: dict[str, Any] = {
            "class": type(error).__name__,
            "type": error.type,
            "code": error.code,
            "status": error.status_code,
            "request_id": error.request_id,
            "message": error.message,
            "retry_class": error.retry_class.value,
        }
        if error.retry_after is not None:
            described["retry_after"] = error.retry_after
        return described
    return {"class": type(error).__name__, "message": str(error)[:500]}


def _error_labels(described: dict[str, Any]) -> tuple[str, str]:
    """(error type, code) for the metrics: Smartcar's, or the error's class and "-"."""
    return str(described.get("type") or described.get("class") or "-"), str(described.get("code") or "-")


def _needs_person(error: BaseException) -> dict[str, Any]:
    """What to tell the user or operator about an error nobody should retry."""
    if not isinstance(error, SmartcarError):
        return {}
    advice: dict[str, Any] = {}
    if error.suggested_user_message:
        advice["suggested_user_message"] = error.suggested_user_message
    if error.resolution is not None:
        advice["resolution"] = {"type": error.resolution.type, "url": error.resolution.url}
    if error.doc_url:
        advice["doc_url"] = error.doc_url
    return advice


def process_event(
    runtime: Runtime, event_id: str, *, task_id: str | None = None, worker: str | None = None
) -> RunResult:
    """Run the stored event `event_id` once; `task_id` and `worker` come from Celery (`EventStore.begin`)."""
    settings = runtime.settings
    begin = runtime.store.begin(event_id, lease=settings.lease_seconds, task_id=task_id, worker=worker)
    if begin.state is BeginState.BUSY and begin.lease_until is not None:
        # Another run holds it. Look again when its lease ends: done by then, or its worker died.
        runtime.store.park(event_id, begin.lease_until + 1.0)
    if begin.state is not BeginState.OK or begin.record is None:
        log.info("event_skipped", event_id=event_id, reason=begin.state.value, status=begin.status)
        runtime.metrics.events(Outcome.SKIPPED.value, "-").inc()
        return RunResult(event_id, Outcome.SKIPPED, {"reason": begin.state.value, "status": begin.status})
    started = time.monotonic()
    with runtime.leases.holding(begin.record):
        result = _run_handlers(runtime, _Run(runtime, begin.record))
    outcome = str(result.detail.get("outcome", result.outcome.value))
    runtime.metrics.events(outcome, begin.record.type or "-").inc()
    runtime.metrics.run_seconds(outcome).observe(time.monotonic() - started)
    return result


def _run_handlers(runtime: Runtime, run: _Run) -> RunResult:
    settings, event_id = runtime.settings, run.record.id
    try:
        envelope = parse_envelope(run.record.raw)
    except EnvelopeError as error:
        return run.dead(error, None, "the stored payload is not a Smartcar webhook")
    deadline = time.monotonic() + settings.task_soft_time_limit
    context = HandlerContext(
        run.record,
        envelope,
        settings=settings,
        vehicles=runtime.vehicles,
        gateway=runtime.gateway,
        commands=runtime.commands,
        results=run.results,
        deadline=deadline,
        staged=run.staged,
    )
    handlers = runtime.registry.for_type(envelope.event_type)
    if not handlers:
        # Stored and signature-checked, but nothing here reacts to it: done, and counted as such.
        run.results["no_handler"] = f"no handler is registered for {envelope.event_type}"
        runtime.store.done(run.record, run.results)
        log.info("event_without_handler", event_id=event_id, type=envelope.event_type)
        return RunResult(event_id, Outcome.DONE, {"results": run.results, "outcome": NO_HANDLER})
    for handler in handlers:
        previous = run.results.get(handler.name)
        if isinstance(previous, dict) and previous.get("status") in ("done", "skipped"):
            continue
        if envelope.is_test and not handler.test_events:
            run.results[handler.name] = {"status": "skipped", "reason": "TEST delivery: no side effects"}
            continue
        if time.monotonic() >= deadline:
            late = SoftDeadlineError(f"soft time limit reached before handler {handler.name}")
            return run.failed(handler.name, late)
        try:
            value = handler.function(context)
        except Exception as error:  # noqa: BLE001 - every failure is recorded and decided on below
            return run.failed(handler.name, error)
        run.results[handler.name] = {"status": "done", "at": round(time.time(), 3), "result": value}
    runtime.store.done(run.record, run.results, signals=run.staged)
    log.debug("event_done", event_id=event_id, type=envelope.event_type, attempt=run.record.attempts)
    return RunResult(event_id, Outcome.DONE, {"results": run.results})


class _Run:
    """One run of one event: its record, the results so far, the vehicle state its handlers staged, and
    the ways it can end. Done merges the staged state in its own script; the other endings merge it first,
    since the handlers that staged it are recorded as done and will not run again."""

    def __init__(self, runtime: Runtime, record: EventRecord) -> None:
        self.runtime = runtime
        self.record = record
        self.results: dict[str, Any] = dict(record.results)
        self.staged = StagedSignals()

    def _count(self, outcome: str) -> int:
        return sum(1 for entry in self.record.history if entry.get("outcome") == outcome)

    def failed(self, handler: str, error: Exception) -> RunResult:
        """Decide what a handler's failure means: wait, retry, or give up."""
        if isinstance(error, TokenRefreshBusyError):
            error = DeferredError(str(error), _TOKEN_BUSY_DELAY)
        if isinstance(error, DeferredError):
            return self._deferred(handler, error)
        waiting = self._needs_someone(handler, error)
        if waiting is not None:
            return waiting
        failures = self._count("retry") + 1
        if isinstance(error, SmartcarError):
            refreshed = error.retry_class is RetryClass.REFRESH_TOKEN  # the gateway refreshed once already
            decision = self.runtime.policy.decide(error, failures, refreshed=refreshed)
            if decision.action is Action.RETRY:
                return self.retry(handler, error, decision.delay, reason=decision.reason)
            return self.dead(error, handler, decision.reason or "not retryable")
        log.warning("handler_failed", event_id=self.record.id, handler=handler, exc_info=error)
        if failures >= self.runtime.settings.retry_max_attempts:
            return self.dead(error, handler, f"gave up after {failures} attempts")
        return self.retry(handler, error, self.runtime.policy.backoff(failures))

    def _needs_someone(self, handler: str, error: Exception) -> RunResult | None:
        """The outcome of a failure only our operator or the vehicle's owner can fix; None for the rest."""
        if isinstance(error, ClientRejectedError):  # our configuration, not the event: it waits
            delay = self.runtime.settings.client_rejected_delay
            return self.retry(handler, error, delay, outcome="waiting", reason=CLIENT_REJECTED_REASON)
        if isinstance(error, GrantRefusedError | VehicleHeldError):
            return self._access_lost(handler, error, VehicleStatus.NEEDS_RECONSENT)
        if isinstance(error, TokenError):
            return self.dead(error, handler, str(error))
        lost = access_lost(error)
        if lost is not None and self.record.vehicle_id:
            return self._access_lost(handler, error, lost)
        return None

    def _access_lost(self, handler: str, error: Exception, status: VehicleStatus) -> RunResult:
        """Mark the vehicle (unless it already is: `VehicleHeldError`), then hold the event: listed under
        its vehicle, parked far ahead, and released by the vehicle's next pair (`eventstore.held`). A
        release that came between the listing and the park is caught by the look after it."""
        vehicle_id = (error.vehicle_id if isinstance(error, TokenError) else None) or self.record.vehicle_id
        if not vehicle_id:
            return self.dead(error, handler, str(error))
        if not isinstance(error, VehicleHeldError):
            vehicles = error.vehicle_ids if isinstance(error, GrantRefusedError) else []
            AccessLoss(self.runtime).lost(vehicles or [vehicle_id], status=status, reason=str(error)[:300])
        held = self.runtime.tokens.held
        held.hold(vehicle_id, self.record.id)
        result = self.retry(handler, error, HOLD_SECONDS, outcome="held", reason=HELD_REASON)
        if result.outcome is Outcome.RETRY and held.since(vehicle_id) is None:
            held.release([vehicle_id])
        return result

    def _deferred(self, handler: str, error: DeferredError) -> RunResult:
        deferrals = self._count("deferred") + 1
        if deferrals > self.runtime.settings.max_deferrals:
            return self.dead(error, handler, f"deferred {deferrals - 1} times")
        return self.retry(handler, error, error.delay, outcome="deferred")

    def retry(
        self,
        handler: str,
        error: Exception,
        delay: float,
        *,
        outcome: str = "retry",
        reason: str | None = None,
    ) -> RunResult:
        runtime, record = self.runtime, self.record
        runtime.vehicles.apply(self.staged)
        park = runtime.enqueue is None or delay > runtime.settings.max_countdown
        entry = history_entry(
            attempt=record.attempts,
            outcome=outcome,
            handler=handler,
            error=describe_error(error),
            delay=delay,
            reason=reason,
        )
        if outcome == "held":  # what to tell the owner, as a dead letter would say it
            entry.update(_needs_person(error))
        if not runtime.store.retry(record, entry, delay=delay, park=park, results=self.results):
            return RunResult(record.id, Outcome.SKIPPED, {"reason": "lease lost"})
        if not park and runtime.enqueue is not None:
            try:
                runtime.enqueue(record.id, delay)
            except Exception:  # the broker is down: park it, the relay will pick it up
                log.warning("countdown_publish_failed", outcome="parked", event_id=record.id, exc_info=True)
                runtime.store.park(record.id, time.time() + delay)
        log.info(
            "event_retrying",
            event_id=record.id,
            handler=handler,
            delay=round(delay, 3),
            outcome=outcome,
            error=entry["error"].get("class"),
        )
        runtime.metrics.retries(outcome, *_error_labels(entry["error"])).inc()
        detail = {"delay": delay, "parked": park, "entry": entry, "outcome": outcome}
        return RunResult(record.id, Outcome.RETRY, detail)

    def dead(self, error: Exception, handler: str | None, reason: str) -> RunResult:
        record = self.record
        entry = history_entry(
            attempt=record.attempts,
            outcome="failed",
            handler=handler,
            error=describe_error(error),
            reason=reason,
        )
        entry.update(_needs_person(error))
        self.runtime.vehicles.apply(self.staged)
        if not self.runtime.store.dead_letter(record, entry, reason=reason, results=self.results):
            return RunResult(record.id, Outcome.SKIPPED, {"reason": "lease lost"})
        described = entry["error"]
        # What an operator's alert or search needs without opening the record (`smartcar-events events
        # show` has the rest): which event, whose, what Smartcar answered, why we gave up, after how many.
        log.warning(
            "event_dead_lettered",
            event_id=record.id,
            event_type=record.type,
            vehicle_id=record.vehicle_id,
            handler=handler,
            reason=reason,
            error=described.get("class"),
            error_type=described.get("type"),
            error_code=described.get("code"),
            request_id=described.get("request_id"),
            attempts=record.attempts,
        )
        self.runtime.metrics.dead_letters(*_error_labels(entry["error"])).inc()
        return RunResult(record.id, Outcome.DEAD, {"reason": reason, "entry": entry})
