"""The handler registry: what runs for each event type, in order.

Handler authors import from `workers.api`, which gathers the whole handler API in one place. Add your own
handler in your own module, and name the module in `WORKERS_HANDLER_MODULES` so that the worker imports
it at start-up::

    from workers.api import HandlerContext, handler

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.context import HandlerContext

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
"""The registry `@handler` fills: the built-in handlers and the modules of `WORKERS_HANDLER_MODULES`
register into it when they are imported, and the worker passes it to its runtime."""
handler = registry.handler
