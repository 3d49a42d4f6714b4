"""Smartcar webhook payloads, parsed into one `Envelope` whatever their generation.

Smartcar has sent three envelope families: legacy 2.0 (`eventName`, `payload`), and 3.0/4.0 (`eventId`,
`eventType`, `data`, `meta`), the latter with two VEHICLE_STATE shapes (triggers under `data` with flat
items, or top-level `triggers` of `{type, signal}`). The receiver validates with this parser, the
workers route and read signals with it, the simulator's emitter is tested against it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

VERIFY = "VERIFY"
VEHICLE_STATE = "VEHICLE_STATE"
VEHICLE_ERROR = "VEHICLE_ERROR"
LEGACY_PREFIX = "LEGACY_"
LEGACY_SCHEDULED = LEGACY_PREFIX + "SCHEDULED"
LEGACY_DYNAMIC = LEGACY_PREFIX + "DYNAMIC"
LEGACY_EVENT_BASED = LEGACY_PREFIX + "EVENTBASED"
"""Legacy 2.0 deliveries by `eventName`: v2 reads of one or more vehicles, or a charging event."""
TEST_MODES = frozenset({"TEST", "test"})
UNREADABLE_MOMENT = "not a moment (epoch milliseconds or seconds, or ISO-8601 with a zone)"


class EnvelopeError(ValueError):
    """The payload is not a Smartcar webhook: `field` names what is missing or wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self) -> tuple[type[EnvelopeError], tuple[str, str]]:
        # The default would call EnvelopeError(str(self)), one argument short.
        return (type(self), (self.field, self.problem))


@dataclass(frozen=True, slots=True)
class SignalValue:
    """One signal in a VEHICLE_STATE delivery. Times are epoch milliseconds (None when unknown or 0)."""

    code: str
    name: str | None = None
    group: str | None = None
    body: dict[str, Any] | None = None
    status: str | None = None
    error: dict[str, Any] | None = None
    oem_updated_at: int | None = None
    retrieved_at: int | None = None

    @property
    def value(self) -> Any:
        if self.body is not None and "value" in self.body:
            return self.body["value"]
        return self.body

    @property
    def ok(self) -> bool:
        return self.body is not None and self.status in (None, "SUCCESS")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every handler needs from a delivery; `body` keeps the whole parsed JSON.

    `delivered_at` is `meta.deliveredAt` as epoch seconds (the rule: `epoch_seconds`: milliseconds or
    seconds, as a number or as digits in text, or ISO-8601, read as UTC when it names no zone), or None
    when the delivery has none (absent or null: legacy 2.0 envelopes carry no `meta`). One that is there
    but does not read as a moment (`NaN`, `Infinity`, `1e999`, a number past year 9999, 0 or negative, a
    boolean, other text, a list...) is refused: `parse_envelope` raises
    `EnvelopeError("meta.deliveredAt", ...)` and the receiver answers 400, rather than store a delivery
    its replay check cannot date (Smartcar's own carry epoch milliseconds). `parse_envelope` reads it
    once, and the receiver's replay check and the workers' ordering both use that value. An Envelope
    built by hand has it only if given (`delivered_at=epoch_seconds(...)`): a slots dataclass has no
    room for a cached property, and deriving it in `__post_init__` would cost every delivery more than
    reading it in the parser does.
    """

    event_id: str
    event_type: str
    version: str
    body: dict[str, Any] = field(repr=False)
    vehicle_id: str | None = None
    user_id: str | None = None
    webhook_id: str | None = None
    delivery_id: str | None = None
    mode: str | None = None
    challenge: str | None = None
    delivered_at: float | None = field(default=None, compare=False)  # read from body: not compared

    @property
    def is_test(self) -> bool:
        return self.mode in TEST_MODES

    @property
    def is_verify(self) -> bool:
        return self.event_type == VERIFY

    @property
    def signals(self) -> list[SignalValue]:
        data = self.body.get("data")
        items = data.get("signals") if isinstance(data, dict) else None
        return [_signal(item) for item in items or [] if isinstance(item, dict) and item.get("code")]

    @property
    def trigger_codes(self) -> list[str]:
        """Codes of the signals that triggered this delivery (FIRST_DELIVERY included), in both shapes."""
        data = self.body.get("data")
        triggers = self.body.get("triggers")
        if triggers is None and isinstance(data, dict):
            triggers = data.get("triggers")
        codes: list[str] = []
        for trigger in triggers or []:
            if not isinstance(trigger, dict):
                continue
            signal = trigger.get("signal")
            code = (
                signal.get("code") if isinstance(signal, dict) else trigger.get("code") or trigger.get("type")
            )
            if code:
                codes.append(str(code))
        return codes

    @property
    def errors(self) -> list[dict[str, Any]]:
        """VEHICLE_ERROR items: type, code, state (ERROR or RESOLVED), description, signals..."""
        data = self.body.get("data")
        items = data.get("errors") if isinstance(data, dict) else None
        return [item for item in items or [] if isinstance(item, dict)]


MILLIS_FLOOR = 1e11  # epoch values above this are milliseconds (year 1973 in ms, 5138 in seconds)
_NUMBER = int | float  # built once: `int | float` inside the test builds a union on every call


_MILLIS_CEILING = 253_402_300_800_000  # 10000-01-01T00:00:00Z: past the last moment a datetime holds


def epoch_millis(value: Any) -> int | None:
    """A Smartcar timestamp as epoch milliseconds: docs and payloads use both seconds and milliseconds.

    0 means "no timestamp" (seen in dashboard samples), as do negatives, booleans and non-numbers, and
    so do numbers past year 9999 and the non-finite (`NaN`, `Infinity`, `1e999`: JSON as Python reads it).
    """
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not 0 < value < _MILLIS_CEILING:
        return None  # NaN fails every comparison, so it is refused with the rest
    return int(value if value > MILLIS_FLOOR else value * 1000)


def epoch_seconds(value: Any) -> float | None:
    """A Smartcar moment (`meta.deliveredAt`) as epoch seconds; None when it does not read as one.

    Numbers follow `epoch_millis` (milliseconds or seconds by magnitude; 0, negatives, booleans, the
    non-finite and numbers past year 9999 are unknown), and so does text of plain digits (`"1700000000000"`,
    `"1731940328.25"`). Other text is ISO-8601: with `Z` or an offset it is that moment, and without one it
    is read as UTC, the zone of every Smartcar time (a replay check of days is not moved by the hours
    it could be off). Anything else is None.
    """
    millis = epoch_millis(value)
    if millis is not None:
        return millis / 1000
    if not isinstance(value, str):
        return None
    if _DECIMAL.fullmatch(value):
        millis = epoch_millis(float(value) if "." in value else int(value))
        return None if millis is None else millis / 1000
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


# Epoch seconds or milliseconds as text: ASCII digits (a year-9999 millisecond has 15), an optional fraction.
_DECIMAL = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,9})?")


def _signal(item: dict[str, Any]) -> SignalValue:
    meta = _object(item.get("meta"))
    status = _object(item.get("status"))
    body = item.get("body")
    return SignalValue(
        code=str(item["code"]),
        name=item.get("name"),
        group=item.get("group"),
        body=body if isinstance(body, dict) else None,
        status=status.get("value"),
        error=status.get("error") if isinstance(status.get("error"), dict) else None,
        oem_updated_at=epoch_millis(meta.get("oemUpdatedAt")),
        retrieved_at=epoch_millis(meta.get("retrievedAt", meta.get("fetchedAt"))),
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _container(value: Any, name: str) -> dict[str, Any]:
    """The object at field `name`: {} when absent or null; `EnvelopeError` for anything else."""
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    raise EnvelopeError(name, "must be an object")


def _text(value: Any, name: str) -> str | None:
    """The text of field `name` (an id, a type, a mode, a version), None when absent, null or empty.

    Raises `EnvelopeError` for anything but a string, as Smartcar sends them all (`true` is no eventId,
    nor 42 a vehicle id), and for text that is not valid UTF-8: a lone surrogate (`"\\ud800"`, or its raw
    bytes, which `json.loads` lets through) cannot be written to the event store, so the delivery is
    refused here, alone, rather than failing the store round trip it would share with others.
    """
    if isinstance(value, str):
        if not value.isascii():  # a flag read, not a scan: only non-ASCII text is encoded to be checked
            _check_utf8(value, name)
        return value or None
    if value is None:
        return None
    raise EnvelopeError(name, f"must be a string (as Smartcar sends it), not {_kind(value)}")


def _kind(value: Any) -> str:
    """What a non-string JSON value is, in JSON's words."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "a number"


def _check_utf8(text: str, name: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise EnvelopeError(name, "not valid UTF-8 text (a lone surrogate)") from None


_ORJSON_MAX_OPENERS = 512


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or `EnvelopeError("body", ...)`.

    orjson reads it (3.5 us for a 1.7 KB delivery, 9.6 with json.loads, measured alone) when it holds at
    most `_ORJSON_MAX_OPENERS` brackets and braces (counting them: about 1 us), so that it cannot nest
    deeper than json.loads, and the readers after us (`smartcar-events events show`), can read; orjson
    itself would take 1,024 levels. A body orjson refuses (NaN, a lone surrogate, a UTF-8
    byte-order mark, 1e400), or with more openers, is read by json.loads, so what is accepted, and the
    words of a refusal, are json's. JSON nested deeper than the interpreter's recursion limit allows
    (about a thousand levels; Smartcar's payloads nest under ten) is refused there, its `RecursionError`
    an `EnvelopeError`. One reading differs: an integer past 64 bits is a float (Smartcar's numbers are
    timestamps in milliseconds and signal values); the stored bytes keep every digit.
    """
    if raw.count(b"{") + raw.count(b"[") <= _ORJSON_MAX_OPENERS:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:  # what orjson refuses json may still read (NaN, 1e400)
            body = _json_loads(raw)
    else:
        body = _json_loads(raw)
    if not isinstance(body, dict):
        raise EnvelopeError("body", "a webhook payload is a JSON object")
    return body


def _json_loads(raw: bytes) -> Any:
    """json.loads, whose reading (and words, for what neither reads) a body orjson refuses gets."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise EnvelopeError("body", "not valid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise EnvelopeError("body", f"not valid JSON ({error})") from None


def parse_envelope(raw: bytes) -> Envelope:
    """Validate and read a delivery. Raises `EnvelopeError` saying what is missing or wrong.

    Unknown event types are accepted (they are stored, not dropped); VEHICLE_STATE and VEHICLE_ERROR
    need a vehicle id, from `vehicleId` or `data.vehicle.id`.
    """
    body = parse_json(raw)
    if "eventName" in body:
        return _legacy(body, raw)
    if "eventType" not in body:
        raise EnvelopeError("eventType", "missing (and no legacy eventName)")
    event_type = _text(body.get("eventType"), "eventType")
    if event_type is None:
        raise EnvelopeError("eventType", "must be a non-empty string")
    event_id = _text(body.get("eventId"), "eventId")
    if event_id is None:
        raise EnvelopeError("eventId", "missing or empty")
    data = _container(body.get("data"), "data")
    meta = _container(body.get("meta"), "meta")
    vehicle = _container(data.get("vehicle"), "data.vehicle")
    user = _container(data.get("user"), "data.user")
    vehicle_id = _text(body.get("vehicleId"), "vehicleId") or _text(vehicle.get("id"), "data.vehicle.id")
    challenge = _text(data.get("challenge"), "data.challenge")
    _require(event_type, data, vehicle_id, challenge)
    return Envelope(
        event_id=event_id,
        event_type=event_type,
        version=_text(meta.get("version"), "meta.version") or "4.0",
        body=body,
        vehicle_id=vehicle_id,
        user_id=_text(user.get("id"), "data.user.id"),
        webhook_id=_text(meta.get("webhookId"), "meta.webhookId"),
        delivery_id=_text(meta.get("deliveryId"), "meta.deliveryId"),
        mode=_text(meta.get("mode"), "meta.mode"),
        challenge=challenge,
        delivered_at=_delivered_at(meta),
    )


def _require(event_type: str, data: dict[str, Any], vehicle_id: str | None, challenge: str | None) -> None:
    """What VEHICLE_STATE, VEHICLE_ERROR and VERIFY carry beyond what every event does."""
    if event_type in (VEHICLE_STATE, VEHICLE_ERROR) and vehicle_id is None:
        raise EnvelopeError("vehicleId", "missing: neither vehicleId nor data.vehicle.id is set")
    if event_type == VEHICLE_ERROR and not isinstance(data.get("errors"), list):
        raise EnvelopeError("data.errors", "a VEHICLE_ERROR carries a list of errors")
    if event_type == VERIFY and challenge is None:
        raise EnvelopeError("data.challenge", "a VERIFY carries a challenge")


def _delivered_at(meta: dict[str, Any]) -> float | None:
    value = meta.get("deliveredAt")
    if value is None:
        return None
    seconds = epoch_seconds(value)
    if seconds is None:
        raise EnvelopeError("meta.deliveredAt", UNREADABLE_MOMENT)
    return seconds


def _legacy(body: dict[str, Any], raw: bytes) -> Envelope:
    """Legacy 2.0: `eventName` verify / eventBased / scheduled / dynamic, content under `payload`."""
    name = _text(body.get("eventName"), "eventName")
    if name is None:
        raise EnvelopeError("eventName", "must be a non-empty string")
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise EnvelopeError("payload", "a legacy webhook carries a payload object")
    if name.lower() == "verify":
        challenge = _text(payload.get("challenge"), "payload.challenge")
        if challenge is None:
            raise EnvelopeError("payload.challenge", "a verify event carries a challenge")
        event_id = "legacy-verify-" + hashlib.sha256(raw).hexdigest()[:32]
        return Envelope(
            event_id,
            VERIFY,
            "2.0",
            body,
            webhook_id=_text(body.get("webhookId"), "webhookId"),
            challenge=challenge,
            delivered_at=_delivered_at(_container(body.get("meta"), "meta")),
        )
    vehicles = payload.get("vehicles")
    first = vehicles[0] if isinstance(vehicles, list) and vehicles and isinstance(vehicles[0], dict) else {}
    # Scheduled and dynamic deliveries have no event id; the same bytes are the same event.
    event_id = (
        _text(payload.get("eventId"), "payload.eventId") or "legacy-" + hashlib.sha256(raw).hexdigest()[:32]
    )
    return Envelope(
        event_id=event_id,
        event_type=LEGACY_PREFIX + name.upper(),
        version=_text(body.get("version"), "version") or "2.0",
        body=body,
        vehicle_id=_text(payload.get("vehicleId"), "payload.vehicleId")
        or _text(first.get("vehicleId"), "payload.vehicles[0].vehicleId"),
        webhook_id=_text(body.get("webhookId"), "webhookId"),
        mode=_text(body.get("mode"), "mode"),
        delivered_at=_delivered_at(_container(body.get("meta"), "meta")),
    )
