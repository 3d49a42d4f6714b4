"""The handler registry: what runs for each event type, in order.

Add your own handler in your own module, and name the module in `WORKERS_HANDLER_MODULES` so that the
worker imports it at start-up::

    from workers.registry import HandlerContext, handler

    @handler("VEHICLE_STATE", name="notify-low-battery", order=200)
    def notify_low_battery(ctx: HandlerContext) -> dict[str, object] | None:
        soc = ctx.signal_value("tractionbattery-stateofcharge")
        if soc is not None and soc < 10:
            ctx.run_command("start_charge", step="low-battery")
        return {"soc": soc}

A handler takes a `HandlerContext` and returns a JSON-able mapping (its recorded result) or None. It
may run more than once for one event (a retry after a later handler failed is skipped only for the
handlers that finished), so its effects must be idempotent: commands through `ctx.run_command` are.
Raise a `SmartcarError` (retried by the policy), `DeferredError` (run again later) or any exception (a
transient failure, retried a few times, then dead-lettered). `"*"` registers for every event type.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smartcar_core.events import Envelope
from workers.lifecycle import EventRecord

if TYPE_CHECKING:
    from workers.commands import CommandOutcome
    from workers.runtime import Runtime
    from workers.state import SignalState

HandlerResult = Mapping[str, Any] | None
HandlerFunction = Callable[["HandlerContext"], HandlerResult]
ANY = "*"


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    event_types: frozenset[str]
    function: HandlerFunction
    order: int = 100
    test_events: bool = False
    """Also run for TEST-mode deliveries (dashboard test events): off, as they must have no side effects."""


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def handler(
        self, *event_types: str, name: str | None = None, order: int = 100, test_events: bool = False
    ) -> Callable[[HandlerFunction], HandlerFunction]:
        """Register the decorated function for `event_types` (e.g. "VEHICLE_STATE", or "*")."""
        if not event_types:
            raise ValueError("name at least one event type, or '*'")

        def register(function: HandlerFunction) -> HandlerFunction:
            self.add(
                Handler(
                    name or f"{function.__module__}.{function.__qualname__}",
                    frozenset(event_types),
                    function,
                    order,
                    test_events,
                )
            )
            return function

        return register

    def add(self, handler: Handler) -> None:
        existing = self._handlers.get(handler.name)
        if existing is not None and existing.function is not handler.function:
            raise ValueError(f"a handler named {handler.name!r} is already registered")
        self._handlers[handler.name] = handler

    def remove(self, name: str) -> None:
        self._handlers.pop(name, None)

    def for_type(self, event_type: str) -> list[Handler]:
        chosen = [h for h in self._handlers.values() if event_type in h.event_types or ANY in h.event_types]
        return sorted(chosen, key=lambda h: (h.order, h.name))

    def names(self) -> list[str]:
        return sorted(self._handlers)


registry = HandlerRegistry()
handler = registry.handler


@dataclass
class HandlerContext:
    """What a handler gets: the stored event, its parsed envelope, the services, and the results so far."""

    record: EventRecord
    envelope: Envelope
    runtime: Runtime
    results: dict[str, Any]
    deadline: float
    """`time.monotonic()` by which the run should end (the task's soft time limit)."""
    fetched: dict[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return self.record.id

    @property
    def vehicle_id(self) -> str:
        vehicle = self.envelope.vehicle_id or self.record.vehicle_id
        if not vehicle:
            raise ValueError(f"event {self.record.id} names no vehicle")
        return vehicle

    @property
    def user_id(self) -> str | None:
        return self.envelope.user_id or self.record.user_id

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def vehicle_signals(self) -> dict[str, SignalState]:
        """The vehicle's latest known signals (the webhook's, merged by oemUpdatedAt, and fetched ones)."""
        return self.runtime.vehicles.signals(self.vehicle_id)

    def signal_value(self, code: str) -> Any:
        """The latest known value of `code` for this vehicle, or None."""
        state = self.vehicle_signals().get(code)
        return state.value if state is not None else None

    def payload_codes(self) -> set[str]:
        """Codes this delivery carries with a value."""
        return {signal.code for signal in self.envelope.signals if signal.ok}

    def ensure_signals(self, codes: Sequence[str], *, fresh: bool = False) -> dict[str, Any]:
        """Fetch from Smartcar the `codes` this delivery lacks (once per run); store them as vehicle state.

        `fresh` reads every one of `codes`, carried or fetched before: what a delivery carries may be older
        than the car's state (deliveries are unordered; a FIRST_DELIVERY repeats the state at subscription).
        """
        if fresh:
            missing = list(dict.fromkeys(codes))
        else:
            carried = self.payload_codes()
            missing = [c for c in dict.fromkeys(codes) if c not in carried and c not in self.fetched]
        if not missing:
            return {}
        settings = self.runtime.settings
        api = "v2" if self.envelope.version.startswith("2") else settings.signals_api
        fetched = self.runtime.gateway.fetch_signals(
            self.vehicle_id, missing, user_id=self.user_id, api=api, deadline=self.deadline
        )
        self.runtime.vehicles.merge(self.vehicle_id, fetched.updates, event_id=self.event_id)
        for update in fetched.updates:
            self.fetched[update.code] = update.value
        for code, error in fetched.errors.items():
            self.fetched[code] = {"error": error}
        return {"fetched": sorted(u.code for u in fetched.updates), "errors": fetched.errors}

    def run_command(
        self,
        command: str,
        *,
        step: str,
        params: Mapping[str, Any] | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> CommandOutcome:
        """Send a command for this event; sent at most once per (event, step) however often this runs.

        `still_wanted` is asked right before a send, holding the vehicle's command lock: a decision taken
        on stored state can check the car's state first (see the charging rule), and a command another
        event just sent is seen there. False withdraws the command (outcome `withdrawn`, nothing recorded).
        """
        return self.runtime.commands.run(
            event_id=self.event_id,
            step=step,
            vehicle_id=self.vehicle_id,
            command=command,
            params=params,
            deadline=self.deadline,
            still_wanted=still_wanted,
        )
