"""`events.parse_envelope` for every webhook generation in smartcar-webhooks.md, and each way to fail."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from typing import Any

import pytest

from smartcar_core.events import (
    Envelope,
    EnvelopeError,
    SignalValue,
    epoch_millis,
    epoch_seconds,
    parse_envelope,
    parse_json,
)

VEHICLE = "9af13248-3b73-4c9d-9a4b-d937ce6bc8e2"
USER = "93b3ea96-ca37-43a9-9073-f4334719iok7"

VERIFY_4 = {
    "eventId": "52f6e0bb-1369-45da-a61c-9e67d092d6db",
    "eventType": "VERIFY",
    "data": {"challenge": "3a5c8f72-e6d9-4b1a-9f2e-8c7d6a5b4e3f"},
    "meta": {
        "version": "4.0",
        "webhookId": "5a8e5e38-1e12-4011-a36d-56f120053f9e",
        "webhookName": "Example Webhook",
        "deliveryId": "5d569643-3a47-4cd1-a3ec-db5fc1f6f03b",
        "deliveredAt": 1761896351529,
    },
}
STATE_A = {
    "eventId": "550e8400-e29b-41d4-a716-446655440000",
    "eventType": "VEHICLE_STATE",
    "vehicleId": VEHICLE,
    "data": {
        "user": {"id": USER},
        "vehicle": {"id": VEHICLE, "make": "TESLA", "model": "Model 3", "year": 2020},
        "triggers": [
            {"code": "tractionbattery-stateofcharge", "name": "StateOfCharge", "group": "TractionBattery"}
        ],
        "signals": [
            {
                "code": "tractionbattery-stateofcharge",
                "name": "StateOfCharge",
                "group": "TractionBattery",
                "body": {"unit": "percent", "value": 78},
                "meta": {"oemUpdatedAt": 1731940328000, "fetchedAt": 1731940330000},
            },
            {
                "code": "charge-ischarging",
                "name": "IsCharging",
                "group": "Charge",
                "body": {"value": True},
                "meta": {"oemUpdatedAt": 1731940328000, "fetchedAt": 1731940330000},
            },
        ],
    },
    "meta": {
        "version": "4.0",
        "deliveryId": "48b25f8f-9fea-42e1-9085-81043682cbb8",
        "deliveredAt": 1731940328000,
        "webhookId": "abde94ff-d57d-43b9-8d09-6020db2d977a",
        "webhookName": "Battery Monitoring",
        "signalCount": 2,
        "mode": "LIVE",
    },
}
STATE_B = {
    "eventId": "b15e1ada-1163-49f6-a714-bc05d8b74067",
    "eventType": "VEHICLE_STATE",
    "data": {
        "user": {"id": "f3fc39e5-408d-4a5e-9488-441a6299e9b4", "externalId": "user-external-id-123"},
        "vehicle": {
            "id": "bd77cd6e-20ce-4c46-8cb6-00aca8d1da51",
            "make": "Tesla",
            "model": "Model 3",
            "year": 2020,
            "mode": "test",
            "powertrainType": "BEV",
        },
        "signals": [
            {
                "code": "closure-islocked",
                "name": "IsLocked",
                "group": "Closure",
                "body": {"value": True},
                "status": {"value": "SUCCESS"},
                "meta": {"oemUpdatedAt": 1790080005073, "retrievedAt": 1790080005073},
            },
            {
                "code": "location-isathome",
                "name": "IsAtHome",
                "group": "Location",
                "status": {
                    "value": "ERROR",
                    "error": {"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"},
                },
            },
            {
                "code": "vehicleidentification-vin",
                "name": "Vin",
                "group": "VehicleIdentification",
                "body": {"value": "5YJ3E1EA7KF317000"},
                "meta": {"oemUpdatedAt": 0, "retrievedAt": 1790080005},
            },
        ],
    },
    "triggers": [
        {
            "type": "SIGNAL_UPDATED",
            "signal": {"name": "IsLocked", "code": "closure-islocked", "group": "Closure"},
        },
        {"type": "FIRST_DELIVERY"},
    ],
    "meta": {
        "version": "4.0",
        "applicationId": "app_1",
        "webhookId": "wh_1",
        "webhookName": "Home Assistant",
        "deliveryId": "958fd776-24eb-41bf-beca-6a2ef3b5a6c1",
        "deliveredAt": 1790080005074,
        "mode": "TEST",
        "sequence": 1790080005044,
        "signalCount": 3,
    },
}
ERROR_EVENT = {
    "eventId": "5a537912-9ad3-424b-ba33-65a1704567e9",
    "eventType": "VEHICLE_ERROR",
    "vehicleId": "123e4567-e89b-12d3-a456-426614174000",
    "data": {
        "user": {"id": USER},
        "vehicle": {
            "id": "123e4567-e89b-12d3-a456-426614174000",
            "make": "TESLA",
            "model": "Model 3",
            "year": 2020,
        },
        "errors": [
            {
                "type": "COMPATIBILITY",
                "code": "VEHICLE_NOT_CAPABLE",
                "state": "ERROR",
                "description": "The vehicle cannot do this.",
                "suggestedUserMessage": "Your car cannot share its location.",
                "docURL": "https://smartcar.com/docs/errors/api-errors/compatibility-errors#vehicle-not-capable",
                "resolution": {"type": "CONTACT_SUPPORT"},
                "signals": [
                    {"code": "location-preciselocation", "name": "PreciseLocation", "group": "Location"}
                ],
            },
            {"type": "VEHICLE_STATE", "code": "ASLEEP", "state": "RESOLVED"},
            "junk",
        ],
    },
    "meta": {
        "version": "4.0",
        "deliveryId": "48b25f8f-9fea-42e1-9085-81043682cbb8",
        "deliveredAt": 1761896351529,
        "webhookId": "123e4567-e89b-12d3-a456-426614174000",
        "webhookName": "Battery Monitoring",
        "mode": "LIVE",
    },
}
STATE_3 = {
    "eventId": "3f0c2f7e-0000-4000-8000-000000000003",
    "eventType": "VEHICLE_STATE",
    "data": {
        "vehicle": {"id": VEHICLE, "vin": "5YJ3E1EA7KF317000"},
        "signals": [
            {
                "code": "odometer-traveleddistance",
                "body": {"unit": "km", "value": 1200},
                "meta": {"oemUpdatedAt": 1731940328},
            }
        ],
    },
    "triggers": [{"type": "SIGNAL_UPDATED", "signal": {"code": "odometer-traveleddistance"}}],
    "meta": {"version": "3.0", "deliveryId": "d-3", "deliveredAt": 1731940328, "webhookId": "wh-3"},
}
LEGACY_VERIFY = {
    "version": "2.0",
    "webhookId": "5a8e5e38-1e12-4011-a36d-56f120053f9e",
    "eventName": "verify",
    "payload": {"challenge": "3a5c8f72-e6d9-4b1a-9f2e-8c7d6a5b4e3f"},
}
LEGACY_EVENT_BASED = {
    "version": "2.0",
    "webhookId": "wh-legacy",
    "eventName": "eventBased",
    "mode": "live",
    "payload": {
        "eventId": "e-legacy-1",
        "vehicleId": VEHICLE,
        "eventType": "CHARGING_STARTED",
        "eventTime": "2022-04-13T10:00:00.000Z",
    },
}


def legacy_delivery(name: str, mode: str = "live") -> dict[str, Any]:
    return {
        "version": "2.0",
        "webhookId": "865ca68d-a9b6-4d74-856e-605db0209eca",
        "eventName": name,
        "mode": mode,
        "payload": {
            "vehicles": [
                {
                    "vehicleId": "00000000-0000-4000-A000-000000000000",
                    "requestId": "25d743b8-14cf-4744-b067-bd8d7daf3f1a",
                    "data": [
                        {
                            "path": "/battery",
                            "code": 200,
                            "body": {"range": 283.24, "percentRemaining": 0.58},
                            "headers": {
                                "sc-data-age": "2023-01-01T00:00:00.000Z",
                                "sc-unit-system": "metric",
                            },
                        }
                    ],
                }
            ]
        },
    }


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


def test_verify_4() -> None:
    envelope = parse_envelope(raw(VERIFY_4))

    assert envelope == Envelope(
        event_id="52f6e0bb-1369-45da-a61c-9e67d092d6db",
        event_type="VERIFY",
        version="4.0",
        body=VERIFY_4,
        webhook_id="5a8e5e38-1e12-4011-a36d-56f120053f9e",
        delivery_id="5d569643-3a47-4cd1-a3ec-db5fc1f6f03b",
        challenge="3a5c8f72-e6d9-4b1a-9f2e-8c7d6a5b4e3f",
    )
    assert envelope.is_verify
    assert not envelope.is_test
    assert (envelope.signals, envelope.trigger_codes, envelope.errors) == ([], [], [])
    assert "body" not in repr(envelope)


def test_vehicle_state_variant_a() -> None:
    envelope = parse_envelope(raw(STATE_A))

    assert (envelope.event_type, envelope.version, envelope.vehicle_id, envelope.user_id) == (
        "VEHICLE_STATE",
        "4.0",
        VEHICLE,
        USER,
    )
    assert (envelope.webhook_id, envelope.delivery_id, envelope.mode) == (
        "abde94ff-d57d-43b9-8d09-6020db2d977a",
        "48b25f8f-9fea-42e1-9085-81043682cbb8",
        "LIVE",
    )
    assert not envelope.is_verify
    assert not envelope.is_test
    assert envelope.challenge is None
    assert envelope.trigger_codes == ["tractionbattery-stateofcharge"]
    assert envelope.signals == [
        SignalValue(
            code="tractionbattery-stateofcharge",
            name="StateOfCharge",
            group="TractionBattery",
            body={"unit": "percent", "value": 78},
            oem_updated_at=1731940328000,
            retrieved_at=1731940330000,
        ),
        SignalValue(
            code="charge-ischarging",
            name="IsCharging",
            group="Charge",
            body={"value": True},
            oem_updated_at=1731940328000,
            retrieved_at=1731940330000,
        ),
    ]
    assert [signal.value for signal in envelope.signals] == [78, True]
    assert all(signal.ok for signal in envelope.signals)


def test_vehicle_state_variant_a_first_delivery() -> None:
    body = {**STATE_A, "data": {**STATE_A["data"], "triggers": [{"code": "FIRST_DELIVERY"}]}}  # type: ignore[dict-item]

    assert parse_envelope(raw(body)).trigger_codes == ["FIRST_DELIVERY"]


def test_vehicle_state_variant_b() -> None:
    envelope = parse_envelope(raw(STATE_B))

    assert envelope.vehicle_id == "bd77cd6e-20ce-4c46-8cb6-00aca8d1da51"  # no top-level vehicleId
    assert envelope.user_id == "f3fc39e5-408d-4a5e-9488-441a6299e9b4"
    assert (envelope.webhook_id, envelope.mode) == ("wh_1", "TEST")
    assert envelope.is_test
    assert envelope.trigger_codes == ["closure-islocked", "FIRST_DELIVERY"]
    locked, at_home, vin = envelope.signals
    assert (locked.status, locked.value, locked.ok) == ("SUCCESS", True, True)
    assert (locked.oem_updated_at, locked.retrieved_at) == (1790080005073, 1790080005073)
    assert (at_home.status, at_home.body, at_home.value, at_home.ok) == ("ERROR", None, None, False)
    assert at_home.error == {"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"}
    assert (at_home.oem_updated_at, at_home.retrieved_at) == (None, None)
    assert vin.oem_updated_at is None  # 0 means "no timestamp", not 1970
    assert vin.retrieved_at == 1790080005000  # seconds, read as such


def test_vehicle_error() -> None:
    envelope = parse_envelope(raw(ERROR_EVENT))

    assert (envelope.event_type, envelope.vehicle_id, envelope.mode) == (
        "VEHICLE_ERROR",
        "123e4567-e89b-12d3-a456-426614174000",
        "LIVE",
    )
    assert [(item["code"], item["state"]) for item in envelope.errors] == [
        ("VEHICLE_NOT_CAPABLE", "ERROR"),
        ("ASLEEP", "RESOLVED"),
    ]
    assert envelope.trigger_codes == []
    assert envelope.signals == []


def test_version_3() -> None:
    envelope = parse_envelope(raw(STATE_3))

    assert (envelope.version, envelope.vehicle_id, envelope.user_id) == ("3.0", VEHICLE, None)
    assert envelope.trigger_codes == ["odometer-traveleddistance"]
    assert envelope.signals[0].oem_updated_at == 1731940328000
    assert envelope.signals[0].value == 1200


def test_legacy_verify_gets_an_id_from_its_bytes() -> None:
    data = raw(LEGACY_VERIFY)

    envelope = parse_envelope(data)

    assert envelope == Envelope(
        event_id="legacy-verify-" + hashlib.sha256(data).hexdigest()[:32],
        event_type="VERIFY",
        version="2.0",
        body=LEGACY_VERIFY,
        webhook_id="5a8e5e38-1e12-4011-a36d-56f120053f9e",
        challenge="3a5c8f72-e6d9-4b1a-9f2e-8c7d6a5b4e3f",
    )
    assert envelope.is_verify
    assert parse_envelope(data).event_id == envelope.event_id


def test_legacy_event_based() -> None:
    envelope = parse_envelope(raw(LEGACY_EVENT_BASED))

    assert (envelope.event_id, envelope.event_type, envelope.version) == (
        "e-legacy-1",
        "LEGACY_EVENTBASED",
        "2.0",
    )
    assert (envelope.vehicle_id, envelope.webhook_id, envelope.mode) == (VEHICLE, "wh-legacy", "live")
    assert envelope.challenge is None


@pytest.mark.parametrize(
    ("name", "event_type"), [("scheduled", "LEGACY_SCHEDULED"), ("dynamic", "LEGACY_DYNAMIC")]
)
def test_legacy_scheduled_and_dynamic(name: str, event_type: str) -> None:
    data = raw(legacy_delivery(name, mode="test"))

    envelope = parse_envelope(data)

    assert envelope.event_id == "legacy-" + hashlib.sha256(data).hexdigest()[:32]
    assert (envelope.event_type, envelope.vehicle_id, envelope.mode) == (
        event_type,
        "00000000-0000-4000-A000-000000000000",
        "test",
    )
    assert envelope.is_test
    assert parse_envelope(raw(legacy_delivery(name, mode="live"))).event_id != envelope.event_id


def test_legacy_delivery_without_vehicles() -> None:
    body = {"eventName": "scheduled", "version": None, "payload": {"vehicles": ["not an object"]}}

    envelope = parse_envelope(raw(body))

    assert (envelope.vehicle_id, envelope.version, envelope.mode) == (None, "2.0", None)


def test_an_unknown_event_type_is_accepted_without_a_vehicle() -> None:
    envelope = parse_envelope(raw({"eventId": "e1", "eventType": "VEHICLE_CONNECTED", "meta": None}))

    assert (envelope.event_type, envelope.version, envelope.vehicle_id, envelope.mode) == (
        "VEHICLE_CONNECTED",
        "4.0",
        None,
        None,
    )


def test_signal_and_trigger_accessors_skip_what_they_cannot_read() -> None:
    body = {
        "eventId": "e1",
        "eventType": "VEHICLE_STATE",
        "vehicleId": "42",
        "data": {
            "signals": [
                {"name": "no code"},
                "junk",
                {"code": "a", "body": "not an object", "status": "SUCCESS", "meta": []},
                {"code": "b", "body": {"unit": "km"}, "status": {"value": "SUCCESS", "error": "x"}},
                {"code": "c", "meta": {"oemUpdatedAt": True, "retrievedAt": -1}},
                {"code": "d", "meta": {"oemUpdatedAt": "1731940328000", "fetchedAt": 1.5}},
            ],
            "triggers": ["junk", {"name": "nothing to name it"}, {"signal": "not an object", "code": "x"}],
        },
    }

    envelope = parse_envelope(raw(body))

    assert envelope.vehicle_id == "42"
    signals = envelope.signals
    assert [signal.code for signal in signals] == ["a", "b", "c", "d"]
    assert (signals[0].body, signals[0].status, signals[0].ok) == (None, None, False)
    assert (signals[1].value, signals[1].error, signals[1].ok) == ({"unit": "km"}, None, True)
    assert (signals[2].oem_updated_at, signals[2].retrieved_at) == (None, None)
    assert (signals[3].oem_updated_at, signals[3].retrieved_at) == (None, 1500)
    assert envelope.trigger_codes == ["x"]


def test_top_level_triggers_win_over_data_triggers() -> None:
    body = {**STATE_A, "triggers": [{"type": "SIGNAL_UPDATED", "signal": {"code": "charge-ischarging"}}]}

    assert parse_envelope(raw(body)).trigger_codes == ["charge-ischarging"]


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        (b"not json", "body", "not valid JSON"),
        (b"\xff\xfe\x00", "body", "not valid JSON"),
        (b"", "body", "not valid JSON"),
        (b"[1]", "body", "a webhook payload is a JSON object"),
        (b"{}", "eventType", "missing (and no legacy eventName)"),
        (b'{"eventType": ""}', "eventType", "must be a non-empty string"),
        (b'{"eventType": {"a": 1}}', "eventType", "must be a string (as Smartcar sends it), not an object"),
        (b'{"eventType": 7}', "eventType", "must be a string (as Smartcar sends it), not a number"),
        (
            b'{"eventType": "VERIFY", "eventId": true}',
            "eventId",
            "must be a string (as Smartcar sends it), not a boolean",
        ),
        (b'{"eventType": "VERIFY", "eventId": "e", "meta": "x"}', "meta", "must be an object"),
        (b'{"eventType": "VERIFY", "eventId": "e", "meta": []}', "meta", "must be an object"),
        (b'{"eventName": "scheduled", "payload": {}, "meta": 1}', "meta", "must be an object"),
        (
            b'{"eventType": "X", "eventId": "e", "data": {"vehicle": "v"}}',
            "data.vehicle",
            "must be an object",
        ),
        (b'{"eventType": "X", "eventId": "e", "data": {"user": ["u"]}}', "data.user", "must be an object"),
        (b'{"eventType": "VERIFY"}', "eventId", "missing or empty"),
        (b'{"eventType": "VERIFY", "eventId": ""}', "eventId", "missing or empty"),
        (b'{"eventType": "VERIFY", "eventId": "e", "data": [1]}', "data", "must be an object"),
        (
            b'{"eventType": "VERIFY", "eventId": "e", "data": {}}',
            "data.challenge",
            "a VERIFY carries a challenge",
        ),
        (
            b'{"eventType": "VEHICLE_STATE", "eventId": "e"}',
            "vehicleId",
            "missing: neither vehicleId nor data.vehicle.id",
        ),
        (
            b'{"eventType": "VEHICLE_ERROR", "eventId": "e", "data": {"vehicle": {"id": "v"}, "errors": {}}}',
            "data.errors",
            "a VEHICLE_ERROR carries a list of errors",
        ),
        (b'{"eventName": "", "payload": {}}', "eventName", "must be a non-empty string"),
        (b'{"eventName": null, "payload": {}}', "eventName", "must be a non-empty string"),
        (b'{"eventName": "verify"}', "payload", "a legacy webhook carries a payload object"),
        (
            b'{"eventName": "scheduled", "payload": []}',
            "payload",
            "a legacy webhook carries a payload object",
        ),
        (
            b'{"eventName": "verify", "payload": {"challenge": ""}}',
            "payload.challenge",
            "a verify event carries a challenge",
        ),
    ],
)
def test_every_envelope_error(data: bytes, field: str, problem: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(data)

    error = caught.value
    assert error.field == field
    assert error.problem.startswith(problem)
    assert str(error).startswith(f"{field}: {problem}")
    assert isinstance(error, ValueError)
    assert error.__cause__ is None
    copied = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (type(copied), copied.field, copied.problem, str(copied)) == (
        EnvelopeError,
        error.field,
        error.problem,
        str(error),
    )


def _state_delivered(meta: Any) -> bytes:
    body = {"eventId": "e-1", "eventType": "VEHICLE_STATE", "vehicleId": VEHICLE, "data": {}}
    return raw(body if meta is _NO_META else {**body, "meta": meta})


_NO_META = object()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1761896351529, 1761896351.529, id="milliseconds"),
        pytest.param(1731940328, 1731940328.0, id="seconds"),
        pytest.param(1731940328.25, 1731940328.25, id="fractional-seconds"),
        pytest.param("2023-11-14T22:13:20Z", 1700000000.0, id="iso-z"),
        pytest.param("2023-11-14T23:13:20.250+01:00", 1700000000.25, id="iso-offset"),
        pytest.param("2023-11-14T22:13:20", 1700000000.0, id="iso-naive-is-utc"),
        pytest.param("2023-11-14 22:13:20.5", 1700000000.5, id="iso-naive-with-a-space"),
        pytest.param("2023-11-14", 1699920000.0, id="iso-date-only-is-utc-midnight"),
        pytest.param("1700000000000", 1700000000.0, id="milliseconds-as-text"),
        pytest.param("1700000000", 1700000000.0, id="seconds-as-text"),
        pytest.param("1731940328.25", 1731940328.25, id="fractional-seconds-as-text"),
        pytest.param(253_402_300_799_999, 253_402_300_799.999, id="last-millisecond-of-9999"),
    ],
)
def test_delivered_at_one_rule(value: Any, expected: float) -> None:
    envelope = parse_envelope(_state_delivered({"deliveredAt": value}))

    assert envelope.delivered_at == expected
    assert epoch_seconds(value) == expected


# Not a moment: refused when signed, rather than stored with no replay check (or a 500, for the non-finite).
UNREADABLE_MOMENTS = [
    pytest.param("not a time", id="garbage-text"),
    pytest.param("", id="empty-text"),
    pytest.param(" 1700000000000", id="number-as-text-with-a-space"),
    pytest.param("1_700_000_000_000", id="number-as-text-with-underscores"),
    pytest.param("1e12", id="number-as-text-with-an-exponent"),
    pytest.param("NaN", id="NaN-as-text"),
    pytest.param("0", id="zero-as-text"),
    pytest.param("-1700000000", id="negative-as-text"),
    pytest.param("9" * 5000, id="5000-digits-as-text"),
    pytest.param("\uff11\uff17" + "\uff10" * 8, id="fullwidth-digits"),
    pytest.param(0, id="zero"),
    pytest.param(-1700000000, id="negative"),
    pytest.param(True, id="boolean"),
    pytest.param([1700000000], id="list"),
    pytest.param({"at": 1700000000}, id="object"),
    pytest.param(10**17, id="past-year-9999"),
    pytest.param(float("nan"), id="NaN"),
    pytest.param(float("inf"), id="Infinity"),
    pytest.param(float("-inf"), id="-Infinity"),
    pytest.param(1e308, id="1e308"),
    pytest.param(10**400, id="10**400"),
]


@pytest.mark.parametrize("value", UNREADABLE_MOMENTS)
def test_a_delivered_at_that_is_not_a_moment_is_refused(value: Any) -> None:
    assert epoch_seconds(value) is None
    for body in (
        _state_delivered({"deliveredAt": value}),
        raw({**LEGACY_EVENT_BASED, "meta": {"deliveredAt": value}}),
    ):
        with pytest.raises(EnvelopeError) as caught:
            parse_envelope(body)
        assert caught.value.field == "meta.deliveredAt"
        assert caught.value.problem == "not a moment (epoch milliseconds or seconds, or ISO-8601 with a zone)"


@pytest.mark.parametrize(
    "literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1" + b"0" * 400]
)
def test_json_literals_past_any_moment_are_refused_as_delivered_at(literal: bytes) -> None:
    data = _state_delivered({"deliveredAt": "@"}).replace(b'"@"', literal)

    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(data)

    assert caught.value.field == "meta.deliveredAt"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(float("nan"), id="NaN"),
        pytest.param(float("inf"), id="Infinity"),
        pytest.param(float("-inf"), id="-Infinity"),
        pytest.param(1e308, id="1e308"),
        pytest.param(10**400, id="10**400"),
        pytest.param(10**17, id="past-year-9999"),
    ],
)
def test_epoch_millis_reads_no_moment_past_year_9999_and_never_raises(value: Any) -> None:
    assert epoch_millis(value) is None


@pytest.mark.parametrize(
    "meta",
    [
        pytest.param({"deliveryId": "d-1"}, id="missing"),
        pytest.param({"deliveredAt": None}, id="null"),
        pytest.param(_NO_META, id="no-meta"),
        pytest.param(None, id="meta-null"),
    ],
)
def test_no_delivered_at_without_a_meta_object_holding_one(meta: Any) -> None:
    assert parse_envelope(_state_delivered(meta)).delivered_at is None


def test_delivered_at_is_read_in_every_generation() -> None:
    assert parse_envelope(raw(VERIFY_4)).delivered_at == 1761896351.529
    assert parse_envelope(raw(STATE_3)).delivered_at == 1731940328.0
    legacy = {**LEGACY_EVENT_BASED, "meta": {"deliveredAt": "2023-11-14T22:13:20Z"}}
    assert parse_envelope(raw(legacy)).delivered_at == 1700000000.0
    assert parse_envelope(raw(LEGACY_EVENT_BASED)).delivered_at is None


def test_delivered_at_is_a_value_kept_with_the_envelope() -> None:
    envelope = parse_envelope(_state_delivered({"deliveredAt": "2023-11-14T22:13:20Z"}))

    copied = pickle.loads(pickle.dumps(envelope))  # noqa: S301 - our own bytes
    assert (copied, copied.delivered_at) == (envelope, 1700000000.0)
    # Read from the body, so it takes no part in equality; by hand it is what it is given.
    assert envelope == Envelope("e-1", "VEHICLE_STATE", "4.0", envelope.body, vehicle_id=VEHICLE)
    assert Envelope("e", "X", "4.0", {}).delivered_at is None


# --- JSON nested deeper than the parser can recurse: an EnvelopeError, never a RecursionError ----------


def _nested_in_state(inner: bytes) -> bytes:
    """A valid VEHICLE_STATE whose `data.extra` is `inner`."""
    return b'{"eventId":"e","eventType":"VEHICLE_STATE","vehicleId":"v","data":{"extra":' + inner + b"}}"


def _arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_nested_in_state(_arrays(1000)), id="arrays-1000"),
        pytest.param(_nested_in_state(b'{"a":' * 1000 + b"1" + b"}" * 1000), id="objects-1000"),
        pytest.param(_nested_in_state(_arrays(100_000)), id="arrays-100000"),
        pytest.param(b'{"eventType":"VERIFY","x":' + b"[" * 2000, id="unterminated-2KB"),
        pytest.param(b"[" * 100_000, id="bare-unterminated"),
        pytest.param(_nested_in_state(b'["]",' * 1000 + b"1" + b"]" * 1000), id="closers-in-strings"),
        pytest.param(_nested_in_state(b'[[],{},"\\"]",' * 1000 + b"1" + b"]" * 1000), id="siblings-between"),
    ],
)
def test_json_nested_too_deep_is_an_envelope_error(data: bytes) -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(data)

    assert (caught.value.field, caught.value.problem) == ("body", "not valid JSON (nested too deeply)")
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_nested_in_state(_arrays(100)), id="nested-100"),  # Smartcar's payloads: under 10
        pytest.param(_nested_in_state(b'"' + b"[{" * 5000 + b'"'), id="brackets-in-a-string"),
        pytest.param(_nested_in_state(b"[" + b"[1],{}," * 5000 + b"1]"), id="many-shallow-containers"),
    ],
)
def test_json_nested_within_reason_parses(data: bytes) -> None:
    assert parse_envelope(data).event_id == "e"


def test_too_deep_json_is_refused_in_legacy_envelopes_too() -> None:
    body = {**LEGACY_EVENT_BASED, "payload": {**LEGACY_EVENT_BASED["payload"], "extra": "@"}}  # type: ignore[dict-item]
    data = raw(body).replace(b'"@"', _arrays(1000))

    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(data)

    assert caught.value.field == "body"


# --- a lone surrogate in a field the event store keeps: refused, naming the field -----------------------

POISON = "@poison@"  # replaced in the bytes by a lone surrogate, escaped or raw
ESCAPED_SURROGATE = b"id-\\ud800"  # JSON's escape of U+D800: json.loads gives back a lone surrogate
RAW_SURROGATE = b"id-\xed\xa0\x80"  # its raw bytes (not UTF-8; json.loads decodes them with surrogatepass)


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `body` with the field at `path` (dots, `[0]` for a list's first item) set to `value`."""
    copy: dict[str, Any] = json.loads(json.dumps(body))
    *parents, last = path.replace("[0]", ".0").split(".")
    target: Any = copy
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    return copy


def poisoned(body: dict[str, Any], path: str, surrogate: bytes) -> bytes:
    data = raw(_with(body, path, POISON))
    assert data.count(POISON.encode()) == 1
    return data.replace(POISON.encode(), surrogate)


def _state_without_vehicle_id() -> dict[str, Any]:
    return {key: value for key, value in STATE_A.items() if key != "vehicleId"}


# (payload, path in the payload, the field the error names); every string the event store keeps
STORED_FIELDS = [
    pytest.param(STATE_A, "eventId", "eventId", id="4.0-eventId"),
    pytest.param(STATE_A, "eventType", "eventType", id="4.0-eventType"),
    pytest.param(STATE_A, "vehicleId", "vehicleId", id="4.0-vehicleId"),
    pytest.param(_state_without_vehicle_id(), "data.vehicle.id", "data.vehicle.id", id="4.0-data.vehicle.id"),
    pytest.param(STATE_A, "data.user.id", "data.user.id", id="4.0-data.user.id"),
    pytest.param(STATE_A, "meta.webhookId", "meta.webhookId", id="4.0-meta.webhookId"),
    pytest.param(STATE_A, "meta.deliveryId", "meta.deliveryId", id="4.0-meta.deliveryId"),
    pytest.param(STATE_A, "meta.mode", "meta.mode", id="4.0-meta.mode"),
    pytest.param(STATE_A, "meta.version", "meta.version", id="4.0-meta.version"),
    pytest.param(VERIFY_4, "data.challenge", "data.challenge", id="4.0-data.challenge"),
    pytest.param(LEGACY_EVENT_BASED, "eventName", "eventName", id="2.0-eventName"),
    pytest.param(LEGACY_EVENT_BASED, "payload.eventId", "payload.eventId", id="2.0-payload.eventId"),
    pytest.param(LEGACY_EVENT_BASED, "payload.vehicleId", "payload.vehicleId", id="2.0-payload.vehicleId"),
    pytest.param(
        legacy_delivery("scheduled"),
        "payload.vehicles[0].vehicleId",
        "payload.vehicles[0].vehicleId",
        id="2.0-payload.vehicles[0].vehicleId",
    ),
    pytest.param(LEGACY_EVENT_BASED, "webhookId", "webhookId", id="2.0-webhookId"),
    pytest.param(LEGACY_EVENT_BASED, "mode", "mode", id="2.0-mode"),
    pytest.param(LEGACY_EVENT_BASED, "version", "version", id="2.0-version"),
    pytest.param(LEGACY_VERIFY, "webhookId", "webhookId", id="2.0-verify-webhookId"),
    pytest.param(LEGACY_VERIFY, "payload.challenge", "payload.challenge", id="2.0-payload.challenge"),
]
SURROGATES = [
    pytest.param(ESCAPED_SURROGATE, id="escaped"),
    pytest.param(RAW_SURROGATE, id="raw-bytes"),
]


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize(("body", "path", "field"), STORED_FIELDS)
def test_a_lone_surrogate_in_a_stored_field_is_refused_naming_it(
    body: dict[str, Any], path: str, field: str, surrogate: bytes
) -> None:
    assert parse_envelope(raw(body))  # the payload itself is fine

    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(poisoned(body, path, surrogate))

    assert caught.value.field == field
    assert caught.value.problem == "not valid UTF-8 text (a lone surrogate)"


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize(
    ("body", "path"),
    [
        pytest.param(STATE_A, "meta.webhookName", id="4.0-meta.webhookName"),
        pytest.param(STATE_A, "data.signals[0].name", id="4.0-a-signal-name"),
        pytest.param(LEGACY_EVENT_BASED, "payload.eventTime", id="2.0-payload.eventTime"),
    ],
)
def test_a_lone_surrogate_in_a_field_kept_only_in_the_raw_body_is_accepted(
    body: dict[str, Any], path: str, surrogate: bytes
) -> None:
    assert parse_envelope(poisoned(body, path, surrogate)).event_id


# --- ids, types and the containers they come from are what Smartcar sends, or refused naming the field ---

NOT_TEXT = [
    pytest.param(True, "a boolean", id="true"),
    pytest.param(42, "a number", id="number"),
    pytest.param(1.5, "a number", id="float"),
    pytest.param({"id": "x"}, "an object", id="object"),
    pytest.param(["x"], "an array", id="array"),
]


@pytest.mark.parametrize(("value", "kind"), NOT_TEXT)
@pytest.mark.parametrize(("body", "path", "field"), STORED_FIELDS)
def test_an_id_or_type_that_is_not_text_is_refused_naming_it(
    body: dict[str, Any], path: str, field: str, value: Any, kind: str
) -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(raw(_with(body, path, value)))

    assert (caught.value.field, caught.value.problem) == (
        field,
        f"must be a string (as Smartcar sends it), not {kind}",
    )


@pytest.mark.parametrize(("body", "path", "field"), STORED_FIELDS)
def test_a_null_id_is_absent(body: dict[str, Any], path: str, field: str) -> None:
    data = raw(_with(body, path, None))
    required = {"eventId", "eventType", "data.vehicle.id", "eventName", "data.challenge", "payload.challenge"}
    if field in required:
        with pytest.raises(EnvelopeError) as caught:
            parse_envelope(data)
        assert caught.value.field in (field, "vehicleId")
    else:
        parse_envelope(data)


@pytest.mark.parametrize("meta", ["2023-11-14T22:13:20Z", [{"deliveredAt": 1761896351529}], 1, True])
@pytest.mark.parametrize(
    "body",
    [STATE_A, VERIFY_4, LEGACY_EVENT_BASED, LEGACY_VERIFY],
    ids=["state", "verify", "2.0", "2.0-verify"],
)
def test_a_meta_that_is_not_an_object_is_refused(body: dict[str, Any], meta: Any) -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(raw({**body, "meta": meta}))

    assert (caught.value.field, caught.value.problem) == ("meta", "must be an object")


def test_a_body_orjson_refuses_is_read_as_json_reads_it() -> None:
    """orjson reads bodies; what it refuses and json reads (a byte-order mark, NaN, 1e400) is still read,
    and a refusal has json's words."""
    assert parse_json(b'\xef\xbb\xbf{"eventType": "VERIFY"}') == {"eventType": "VERIFY"}
    odd = parse_json(b'{"nan": NaN, "big": 1e400, "exact": 123456789, "text": "\\u00e9"}')
    assert math.isnan(odd["nan"])
    assert odd["big"] == math.inf
    assert (odd["exact"], odd["text"]) == (123456789, "é")
    with pytest.raises(EnvelopeError) as caught:
        parse_json(b'{"eventType": ')
    assert caught.value.problem == "not valid JSON (Expecting value: line 1 column 15 (char 14))"


def test_a_body_of_many_brackets_is_read_by_json_whatever_its_depth() -> None:
    """orjson reads up to 1,024 levels, more than json.loads: past 512 openers json.loads reads the body,
    a wide one as well as a deep one."""
    wide = json.dumps({"eventType": "X", "items": [{"n": n} for n in range(600)]}).encode()
    assert parse_json(wide)["items"][599] == {"n": 599}
    deep = b'{"eventType":"X","x":' + b"[" * 1000 + b"]" * 1000 + b"}"  # orjson would read it
    with pytest.raises(EnvelopeError) as caught:
        parse_json(deep)
    assert caught.value.problem == "not valid JSON (nested too deeply)"
