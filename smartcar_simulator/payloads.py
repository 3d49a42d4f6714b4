"""Webhook payloads as Smartcar builds them: 4.0 VERIFY / VEHICLE_STATE / VEHICLE_ERROR and legacy 2.0.

Every builder returns a fresh JSON-ready dict that `smartcar_core.events.parse_envelope` accepts. Where
Smartcar's documentation shows two shapes of VEHICLE_STATE, both are built (`shape="A"`: the API
reference, `vehicleId` at the top, `data.triggers`, signal meta `fetchedAt`; `shape="B"`: what the
dashboard's test event sends, top-level `triggers` of `{type, signal}`, a `status` on every signal,
meta `retrievedAt`). `meta.deliveryId` and `meta.deliveredAt` are set here for a first attempt; the
emitter stamps new ones on every attempt.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from smartcar_simulator.clock import iso_ms
from smartcar_simulator.errors import error_doc_url

Shape = Literal["A", "B"]
LegacyEventName = Literal["eventBased", "scheduled", "dynamic"]

VERSION = "4.0"
LEGACY_VERSION = "2.0"
FIRST_DELIVERY = "FIRST_DELIVERY"
SIGNAL_UPDATED = "SIGNAL_UPDATED"
DEFAULT_WEBHOOK_NAME = "Simulated Webhook"
LEGACY_EVENT_TYPES = frozenset({"CHARGING_STARTED", "CHARGING_STOPPED", "CHARGING_COMPLETED"})
ERROR_STATES = frozenset({"ERROR", "RESOLVED"})

# Our own wording for the VEHICLE_ERROR codes the webhook reference documents, with the resolution
# Smartcar suggests. Codes not listed get a generic description and no resolution.
_ERROR_TEXT: dict[tuple[str, str | None], tuple[str, str, str | None]] = {
    ("CONNECTED_SERVICES_ACCOUNT", "ACCOUNT_ISSUE"): (
        "The owner's connected-services account needs attention at the manufacturer.",
        "Sign in to your vehicle's app and finish any pending account steps.",
        "USER_ACTION_REQUIRED",
    ),
    ("CONNECTED_SERVICES_ACCOUNT", "AUTHENTICATION_FAILED"): (
        "The manufacturer no longer accepts the stored credentials for this vehicle.",
        "Reconnect your vehicle to keep sharing its data.",
        "USER_ACTION_REQUIRED",
    ),
    ("CONNECTED_SERVICES_ACCOUNT", "PERMISSION"): (
        "The connected-services account is not allowed to read this vehicle's data.",
        "Check that your account is the vehicle's primary account.",
        "USER_ACTION_REQUIRED",
    ),
    ("CONNECTED_SERVICES_ACCOUNT", "SUBSCRIPTION"): (
        "The vehicle's connected-services subscription has lapsed.",
        "Renew your vehicle's connected-services subscription.",
        "USER_ACTION_REQUIRED",
    ),
    ("CONNECTED_SERVICES_ACCOUNT", "VIRTUAL_KEY_REQUIRED"): (
        "The vehicle needs a virtual key paired before it accepts requests.",
        "Pair a virtual key with your vehicle.",
        "USER_ACTION_REQUIRED",
    ),
    ("VEHICLE_STATE", "REMOTE_ACCESS_DISABLED"): (
        "Remote access is switched off in the vehicle.",
        "Turn on remote access in your vehicle's settings.",
        "USER_ACTION_REQUIRED",
    ),
    ("VEHICLE_STATE", "ASLEEP"): (
        "The vehicle is asleep and did not answer.",
        "Your vehicle is asleep; data will update when it wakes.",
        "RETRY_LATER",
    ),
    ("VEHICLE_STATE", "UNREACHABLE"): (
        "The vehicle could not be reached over its cellular connection.",
        "Your vehicle is out of reach; data will update when it reconnects.",
        "RETRY_LATER",
    ),
    ("COMPATIBILITY", "MAKE_NOT_COMPATIBLE"): (
        "This make does not support the requested signals.",
        "This feature is not available for your vehicle's make.",
        "CONTACT_SUPPORT",
    ),
    ("COMPATIBILITY", "SMARTCAR_NOT_CAPABLE"): (
        "Smartcar cannot read these signals from this vehicle yet.",
        "This feature is not available for your vehicle yet.",
        "CONTACT_SUPPORT",
    ),
    ("COMPATIBILITY", "VEHICLE_NOT_CAPABLE"): (
        "The vehicle does not provide these signals.",
        "Your vehicle does not support this feature.",
        "CONTACT_SUPPORT",
    ),
    ("PERMISSION", None): (
        "The user did not grant the permission these signals need.",
        "Reconnect your vehicle and grant the requested permissions.",
        "USER_ACTION_REQUIRED",
    ),
}


def new_id() -> str:
    """A random UUID, the format of Smartcar's event, delivery, webhook and challenge identifiers."""
    return str(uuid.uuid4())


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def verify_event(
    challenge: str | None = None,
    *,
    webhook_id: str,
    legacy: bool = False,
    webhook_name: str = DEFAULT_WEBHOOK_NAME,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The VERIFY a webhook receives when it is created or its URL changes (legacy: `eventName: verify`)."""
    challenge = challenge or new_id()
    if legacy:
        return {
            "version": LEGACY_VERSION,
            "webhookId": webhook_id,
            "eventName": "verify",
            "payload": {"challenge": challenge},
        }
    return {
        "eventId": event_id or new_id(),
        "eventType": "VERIFY",
        "data": {"challenge": challenge},
        "meta": _meta(webhook_id, webhook_name),
    }


def signal_item(
    code: str,
    *,
    name: str,
    group: str,
    body: Mapping[str, Any] | None,
    oem_updated_at: int | None,
    retrieved_at: int | None,
    shape: Shape = "A",
    error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One entry of `data.signals`. With `error` ({type, code}) the signal failed: no body, status ERROR.

    Times are epoch milliseconds; None becomes 0, which Smartcar sends when it has no timestamp.
    """
    _check_shape(shape)
    item: dict[str, Any] = {"code": code, "name": name, "group": group}
    if error is not None:
        item["status"] = {"value": "ERROR", "error": {"type": error["type"], "code": error.get("code")}}
        return item
    if body is None:
        raise ValueError(f"signal {code}: a signal without an error needs a body")
    item["body"] = dict(body)
    if shape == "B":
        item["status"] = {"value": "SUCCESS"}
    fetched_key = "fetchedAt" if shape == "A" else "retrievedAt"
    item["meta"] = {"oemUpdatedAt": oem_updated_at or 0, fetched_key: retrieved_at or 0}
    return item


def vehicle_state_event(
    vehicle: Mapping[str, Any],
    signals: Sequence[Mapping[str, Any]],
    *,
    webhook_id: str,
    triggers: Sequence[str],
    shape: Shape = "A",
    mode: str = "LIVE",
    event_id: str | None = None,
    webhook_name: str = DEFAULT_WEBHOOK_NAME,
) -> dict[str, Any]:
    """A VEHICLE_STATE carrying every subscribed signal; `triggers` are signal codes or FIRST_DELIVERY.

    `signals` are `signal_item` entries (of either shape: they are brought to `shape` here). A trigger
    code must name one of them, as Smartcar always sends the triggering signal along.
    """
    _check_shape(shape)
    items = [_conform(signal, shape) for signal in signals]
    by_code = {item["code"]: item for item in items}
    meta = {**_meta(webhook_id, webhook_name), "mode": mode, "signalCount": len(items)}
    data: dict[str, Any] = {"user": _user(vehicle, shape), "vehicle": _vehicle(vehicle, shape, mode)}
    event: dict[str, Any] = {"eventId": event_id or new_id(), "eventType": "VEHICLE_STATE"}
    if shape == "A":
        event["vehicleId"] = str(vehicle["id"])
        data["triggers"] = [_trigger_a(code, by_code) for code in triggers]
    data["signals"] = items
    event["data"] = data
    if shape == "B":
        event["triggers"] = [_trigger_b(code, by_code) for code in triggers]
    event["meta"] = meta
    return event


def vehicle_error_event(
    vehicle: Mapping[str, Any],
    errors: Sequence[Mapping[str, Any]],
    *,
    webhook_id: str,
    mode: str = "LIVE",
    event_id: str | None = None,
    webhook_name: str = DEFAULT_WEBHOOK_NAME,
) -> dict[str, Any]:
    """A VEHICLE_ERROR; each error needs `type` (and `code`, null for PERMISSION) and may set the rest.

    Missing fields of an ERROR item are filled the way Smartcar fills them (description, user message,
    docURL, resolution); a RESOLVED item only gets a description, as in Smartcar's examples.
    """
    if not errors:
        raise ValueError("a VEHICLE_ERROR carries at least one error")
    return {
        "eventId": event_id or new_id(),
        "eventType": "VEHICLE_ERROR",
        "vehicleId": str(vehicle["id"]),
        "data": {
            "user": _user(vehicle, "A"),
            "vehicle": _vehicle(vehicle, "A", mode),
            "errors": [_error_item(error) for error in errors],
        },
        "meta": {**_meta(webhook_id, webhook_name), "mode": mode},
    }


def legacy_event(
    event_name: LegacyEventName,
    *,
    webhook_id: str,
    vehicle_id: str,
    mode: str = "live",
    event_type: str = "CHARGING_STARTED",
    event_id: str | None = None,
    event_time: str | None = None,
    data: Sequence[Mapping[str, Any]] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A legacy 2.0 envelope: `eventBased` (a charging event) or `scheduled` / `dynamic` (a batch of reads).

    For scheduled and dynamic webhooks `data` holds the per-path items of a v2 batch response
    (`legacy_data_item`); by default one `/battery` read.
    """
    if event_name == "eventBased":
        if event_type not in LEGACY_EVENT_TYPES:
            raise ValueError(f"event_type must be one of {sorted(LEGACY_EVENT_TYPES)}, not {event_type!r}")
        payload: dict[str, Any] = {
            "eventId": event_id or new_id(),
            "vehicleId": vehicle_id,
            "eventType": event_type,
            "eventTime": event_time or iso_ms(now_ms()),
        }
    elif event_name in ("scheduled", "dynamic"):
        items = [dict(item) for item in data] if data is not None else [_default_battery_item()]
        vehicle = {"vehicleId": vehicle_id, "requestId": request_id or new_id(), "data": items}
        payload = {"vehicles": [vehicle]}
    else:
        raise ValueError(f"unknown legacy event name {event_name!r}")
    return {
        "version": LEGACY_VERSION,
        "webhookId": webhook_id,
        "eventName": event_name,
        "mode": mode,
        "payload": payload,
    }


def legacy_data_item(
    path: str,
    body: Mapping[str, Any],
    *,
    code: int = 200,
    data_age_ms: int | None = None,
    unit_system: str = "metric",
) -> dict[str, Any]:
    """One read in a legacy scheduled/dynamic delivery, as in a v2 `/batch` response."""
    headers = {"sc-data-age": iso_ms(data_age_ms or now_ms()), "sc-unit-system": unit_system}
    return {"path": path, "code": code, "body": dict(body), "headers": headers}


def error_item(
    error_type: str, code: str | None, *, state: str = "ERROR", signals: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """A complete `data.errors[]` item for (type, code) naming the affected signals ({code, name, group})."""
    return _error_item({"type": error_type, "code": code, "state": state, "signals": list(signals)})


def _meta(webhook_id: str, webhook_name: str) -> dict[str, Any]:
    return {
        "version": VERSION,
        "webhookId": webhook_id,
        "webhookName": webhook_name,
        "deliveryId": new_id(),
        "deliveredAt": now_ms(),
    }


def _check_shape(shape: str) -> None:
    if shape not in ("A", "B"):
        raise ValueError(f"shape must be 'A' or 'B', not {shape!r}")


def _user(vehicle: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    user: dict[str, Any] = {"id": str(vehicle["user_id"])}
    if shape == "B" and vehicle.get("external_id"):
        user["externalId"] = str(vehicle["external_id"])
    return user


def _vehicle(vehicle: Mapping[str, Any], shape: Shape, mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(vehicle["id"]),
        "make": vehicle["make"],
        "model": vehicle["model"],
        "year": vehicle["year"],
    }
    if shape == "B":
        out["mode"] = mode.lower()
        if vehicle.get("powertrain"):
            out["powertrainType"] = vehicle["powertrain"]
    return out


def _conform(signal: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    """Rebuild a signal entry (of either shape) in `shape`."""
    status = _mapping(signal.get("status"))
    meta = _mapping(signal.get("meta"))
    error = status.get("error") if status.get("value") == "ERROR" else None
    return signal_item(
        str(signal["code"]),
        name=signal["name"],
        group=signal["group"],
        body=signal.get("body"),
        oem_updated_at=meta.get("oemUpdatedAt"),
        retrieved_at=meta.get("retrievedAt", meta.get("fetchedAt")),
        shape=shape,
        error=error if isinstance(error, Mapping) else None,
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _signal_ref(code: str, by_code: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    signal = by_code.get(code)
    if signal is None:
        raise ValueError(f"trigger {code!r} is not among the delivered signals")
    return {"code": code, "name": signal["name"], "group": signal["group"]}


def _trigger_a(code: str, by_code: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {"code": FIRST_DELIVERY} if code == FIRST_DELIVERY else _signal_ref(code, by_code)


def _trigger_b(code: str, by_code: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    # A FIRST_DELIVERY concerns the whole subscription, not one signal: no `signal` member.
    if code == FIRST_DELIVERY:
        return {"type": FIRST_DELIVERY}
    ref = _signal_ref(code, by_code)
    return {"type": SIGNAL_UPDATED, "signal": {"name": ref["name"], "code": code, "group": ref["group"]}}


def _error_item(error: Mapping[str, Any]) -> dict[str, Any]:
    error_type = str(error["type"])
    code = error.get("code")
    state = str(error.get("state", "ERROR"))
    if state not in ERROR_STATES:
        raise ValueError(f"error state must be ERROR or RESOLVED, not {state!r}")
    description, user_message, resolution = _ERROR_TEXT.get(
        (error_type, code), (f"Smartcar could not retrieve signals: {error_type}:{code}.", None, None)
    )
    item: dict[str, Any] = {
        "type": error_type,
        "code": code,
        "state": state,
        "description": error.get("description", description),
    }
    if state == "ERROR":
        item["suggestedUserMessage"] = error.get("suggestedUserMessage", user_message)
        item["docURL"] = error.get("docURL", error_doc_url(error_type, code))
        item["resolution"] = error.get("resolution", {"type": resolution})
    else:
        item.update(
            {key: error[key] for key in ("suggestedUserMessage", "docURL", "resolution") if key in error}
        )
    item["signals"] = [dict(signal) for signal in error.get("signals", ())]
    return item


def _default_battery_item() -> dict[str, Any]:
    return legacy_data_item("/battery", {"range": 283.24, "percentRemaining": 0.58})
