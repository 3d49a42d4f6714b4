"""The handler API, whole, in one module: what you import to react to Smartcar events in the workers.

    from workers.api import DeferredError, HandlerContext, handler

    @handler("VEHICLE_STATE", name="notify-low-battery", order=200)
    def notify_low_battery(ctx: HandlerContext) -> dict[str, object] | None:
        soc = ctx.signal_value("tractionbattery-stateofcharge")
        if soc is not None and soc < 10:
            outcome = ctx.run_command("start_charge", step="low-battery")
            return {"soc": soc, "command": outcome.as_result()}
        return {"soc": soc}

Name your module in `WORKERS_HANDLER_MODULES` (JSON list) and the worker imports it at start-up; the
`@handler` decorator registers the function for the event types given (`"*"`: every type), run in
`order` (then by name). The built-in handlers (`workers.handlers`) use this same API.

- `HandlerContext`: the stored event (`record`), its parsed `envelope`, `vehicle_id`, `user_id`, the
  vehicle's latest known signals (`vehicle_signals`, `signal_value`), `ensure_signals` (fetch what the
  delivery lacks), `run_command` (sent at most once per event and step), `remaining()` (seconds left).
- A handler returns a JSON-able mapping (recorded as its result) or None. It may run more than once for
  one event (a later handler's failure retries the event; handlers that finished are skipped), so its
  effects must be idempotent; commands through `ctx.run_command` are.
- Raise a `SmartcarError` (retried as Smartcar's error catalogue says), `DeferredError(reason, delay)`
  (run again after `delay` seconds, not counted as a failure), or any other exception (a transient
  failure: retried a few times, then dead-lettered).
- `COMMANDS` names the commands `run_command` knows; `CommandOutcome` is what it returns.
- `test_events=True` also runs a handler for TEST-mode deliveries (off: they must have no side effects).
"""

from __future__ import annotations

from smartcar_core.errors import SmartcarError
from workers.commands import COMMANDS, CommandOutcome
from workers.context import HandlerContext
from workers.limits import DeferredError
from workers.registry import ANY, Handler, HandlerFunction, HandlerRegistry, HandlerResult, handler, registry

__all__ = [
    "ANY",
    "COMMANDS",
    "CommandOutcome",
    "DeferredError",
    "Handler",
    "HandlerContext",
    "HandlerFunction",
    "HandlerRegistry",
    "HandlerResult",
    "SmartcarError",
    "handler",
    "registry",
]
