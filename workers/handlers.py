"""The built-in handlers: vehicle state, follow-up signals, the charging rule, vehicle errors, and what
legacy 2.0 deliveries carry.

Registered on import (the worker imports this module); see `workers.api` to add your own.

Legacy deliveries feed the same state and the same rule as 4.0 ones: the v2 reads of a `scheduled` or
`dynamic` delivery become signal values (the mapping of `workers.gateway.V2_SIGNALS`, as for v2 follow-up
reads), an `eventBased` charging event becomes `charge-ischarging`. The charging rule then decides on the
vehicle's latest state; a scheduled delivery of several vehicles stores each one's state, and leaves the
rule to deliveries of one vehicle (the run, and its commands, belong to one vehicle).
"""

from __future__ import annotations

import time
from typing import Any

from eventstore.vehicles import SignalUpdate
from smartcar_core.errors import SmartcarError
from smartcar_core.events import (
    LEGACY_DYNAMIC,
    LEGACY_EVENT_BASED,
    LEGACY_SCHEDULED,
    VEHICLE_ERROR,
    VEHICLE_STATE,
    epoch_millis,
    epoch_seconds,
)
from smartcar_core.vehicle import read_batch_items
from workers.api import HandlerContext, handler
from workers.gateway import v2_readings

SOC = "tractionbattery-stateofcharge"
IS_CHARGING = "charge-ischarging"
PLUGGED_IN = "charge-ischargingcableconnected"
ANY_TRIGGER = "*"
RULE_SIGNALS = (SOC, IS_CHARGING, PLUGGED_IN)
_STEPS = {"stop_charge": "charging-rule:stop", "start_charge": "charging-rule:start"}
LEGACY_READINGS = (LEGACY_SCHEDULED, LEGACY_DYNAMIC)
CHARGING_EVENTS = {"CHARGING_STARTED": True, "CHARGING_STOPPED": False, "CHARGING_COMPLETED": False}


@handler(VEHICLE_STATE, name="vehicle-state", order=10)
def vehicle_state(ctx: HandlerContext) -> dict[str, Any]:
    """Merge the delivery's signals into the vehicle's latest state, newest `oemUpdatedAt` winning (with
    the run's end: `HandlerContext.store_signals`)."""
    signals = ctx.envelope.signals
    updates = [
        SignalUpdate(s.code, s.body, s.oem_updated_at, s.retrieved_at)
        for s in signals
        if s.ok and s.body is not None
    ]
    values = ctx.store_signals(updates)
    return {"signals": len(signals), "values": values, "failed": sorted(s.code for s in signals if not s.ok)}


@handler(VEHICLE_STATE, name="follow-up", order=20)
def follow_up(ctx: HandlerContext) -> dict[str, Any] | None:
    """Fetch the signals configured for this delivery's triggers that the delivery does not carry."""
    wanted_by = ctx.settings.follow_up_signals
    if not wanted_by:
        return None
    codes: list[str] = list(wanted_by.get(ANY_TRIGGER, []))
    for trigger in ctx.envelope.trigger_codes:
        codes += wanted_by.get(trigger, [])
    if not codes:
        return None
    return ctx.ensure_signals(codes) or {"fetched": []}


@handler(*LEGACY_READINGS, name="legacy-readings", order=10)
def legacy_readings(ctx: HandlerContext) -> dict[str, Any]:
    """Merge each vehicle's v2 reads into its latest state, newest `sc-data-age` winning."""
    stored: dict[str, Any] = {}
    for vehicle in _legacy_vehicles(ctx):
        vehicle_id, items = vehicle.get("vehicleId"), vehicle.get("data")
        if not isinstance(vehicle_id, str) or not isinstance(items, list):
            stored["unreadable"] = stored.get("unreadable", 0) + 1
            continue
        try:
            read = v2_readings(read_batch_items(items))
        except SmartcarError as error:  # the same bytes would fail the same way: said, not retried
            stored[vehicle_id] = {"unreadable": error.description}
            continue
        stored[vehicle_id] = {"values": ctx.store_signals(read.updates, vehicle_id=vehicle_id)}
        if read.errors:
            stored[vehicle_id]["failed"] = sorted(read.errors)
    return {"vehicles": stored}


@handler(LEGACY_EVENT_BASED, name="legacy-charging-event", order=10)
def legacy_charging_event(ctx: HandlerContext) -> dict[str, Any]:
    """A legacy charging event (started, stopped, completed) as the vehicle's `charge-ischarging`."""
    payload = ctx.envelope.body.get("payload") or {}
    kind = payload.get("eventType")
    charging = CHARGING_EVENTS.get(kind) if isinstance(kind, str) else None
    if charging is None:
        return {"ignored": f"no charging state in eventType {kind!r:.40}"}
    at = epoch_seconds(payload.get("eventTime"))
    oem_ms = epoch_millis(round(at * 1000)) if at is not None else None
    update = SignalUpdate(IS_CHARGING, {"value": charging}, oem_ms, int(time.time() * 1000), source="legacy")
    ctx.store_signals([update])
    return {"charging": charging}


def _legacy_vehicles(ctx: HandlerContext) -> list[dict[str, Any]]:
    payload = ctx.envelope.body.get("payload")
    vehicles = payload.get("vehicles") if isinstance(payload, dict) else None
    return [v for v in vehicles if isinstance(v, dict)] if isinstance(vehicles, list) else []


@handler(VEHICLE_STATE, *LEGACY_READINGS, LEGACY_EVENT_BASED, name="charging-rule", order=30)
def charging_rule(ctx: HandlerContext) -> dict[str, Any] | None:
    """Stop charging at the target state of charge; start when plugged in below the minimum.

    Off unless `WORKERS_CHARGING_RULE_ENABLED`. Decides on the vehicle's latest known state (after this
    delivery and any follow-up fetch), so an old delivery arriving after a newer one cannot flip the
    decision. The latest known state can still be older than the car's (an old delivery processed first,
    a FIRST_DELIVERY repeating the state at subscription): a command is sent only if the car's state, read
    under the vehicle's command lock, still calls for it, which also keeps two deliveries of one moment
    from sending the same command twice.
    """
    settings = ctx.settings
    if not settings.charging_rule_enabled:
        return None
    if ctx.envelope.event_type in LEGACY_READINGS and len(_legacy_vehicles(ctx)) != 1:
        return {"decision": "not for a delivery of several vehicles"}
    fetched = ctx.ensure_signals(RULE_SIGNALS)
    seen = _charge_state(ctx)
    decision = _decide(seen, settings.charge_stop_at_soc, settings.charge_start_below_soc)
    if fetched:
        seen["follow_up"] = fetched
    step = _STEPS.get(decision)
    if step is None:
        return {**seen, "decision": decision}
    confirmed: dict[str, Any] = {}

    def still_wanted() -> bool:
        ctx.ensure_signals(RULE_SIGNALS, fresh=True)
        confirmed.update(_charge_state(ctx))
        return _decide(confirmed, settings.charge_stop_at_soc, settings.charge_start_below_soc) == decision

    outcome = ctx.run_command(decision, step=step, still_wanted=still_wanted)
    result = {**seen, "decision": decision, "command": outcome.as_result()}
    if confirmed:
        result["confirmed"] = confirmed
    return result


def _charge_state(ctx: HandlerContext) -> dict[str, Any]:
    state = ctx.vehicle_signals()
    return {
        "soc": _number(state[SOC].value) if SOC in state else None,
        "charging": state[IS_CHARGING].value is True if IS_CHARGING in state else None,
        "plugged_in": state[PLUGGED_IN].value is True if PLUGGED_IN in state else None,
    }


def _decide(seen: dict[str, Any], stop_at: float | None, start_below: float | None) -> str:
    soc = seen["soc"]
    if soc is None:
        return "no state of charge known"
    if stop_at is not None and seen["charging"] and soc >= stop_at:
        return "stop_charge"
    if start_below is not None and seen["plugged_in"] and seen["charging"] is False and soc < start_below:
        return "start_charge"
    return "nothing to do"


@handler(VEHICLE_ERROR, name="vehicle-errors", order=10)
def vehicle_errors(ctx: HandlerContext) -> dict[str, Any]:
    """Keep each error of the vehicle (by TYPE:CODE) with its state: ERROR, or RESOLVED when it cleared.

    Ordered by `meta.deliveredAt` (as the receiver reads it: ms, s or ISO-8601 with a zone), else by the
    time the receiver accepted the delivery.
    """
    delivered = ctx.envelope.delivered_at
    at = round(delivered * 1000) if delivered is not None else int(ctx.record.received_at * 1000)
    items = ctx.envelope.errors
    written = ctx.vehicles.record_errors(ctx.vehicle_id, items, at=at, event_id=ctx.event_id)
    states = {f"{i.get('type')}:{i.get('code') or ''}": str(i.get("state") or "ERROR").upper() for i in items}
    return {"errors": states, "stored": sorted(written)}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
