"""The simulator's webhook payloads: Smartcar's documented shapes, and every one parses as a webhook."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from smartcar_core.events import Envelope, parse_envelope
from smartcar_simulator import payloads

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
WEBHOOK_ID = "5a8e5e38-1e12-4011-a36d-56f120053f9e"
VEHICLE: dict[str, Any] = {
    "id": "9af13248-3b73-4c9d-9a4b-d937ce6bc8e2",
    "make": "TESLA",
    "model": "Model 3",
    "year": 2020,
    "user_id": "93b3ea96-ca37-43a9-9073-f43347190000",
    "powertrain": "BEV",
    "external_id": "customer-42",
}
SOC = "tractionbattery-stateofcharge"


def parsed(event: dict[str, Any]) -> Envelope:
    """Parse as the receiver does: from the compact bytes the emitter would send."""
    return parse_envelope(json.dumps(event, separators=(",", ":")).encode())


def soc(shape: payloads.Shape = "A", value: float = 78) -> dict[str, Any]:
    return payloads.signal_item(
        SOC,
        name="StateOfCharge",
        group="TractionBattery",
        body={"unit": "percent", "value": value},
        oem_updated_at=1731940328000,
        retrieved_at=1731940330000,
        shape=shape,
    )


def failed_location(shape: payloads.Shape = "A") -> dict[str, Any]:
    return payloads.signal_item(
        "location-isathome",
        name="IsAtHome",
        group="Location",
        body=None,
        oem_updated_at=None,
        retrieved_at=None,
        shape=shape,
        error={"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"},
    )


def test_verify_4_0_carries_a_uuid_challenge_under_data() -> None:
    event = payloads.verify_event(webhook_id=WEBHOOK_ID, webhook_name="Battery")
    assert event["eventType"] == "VERIFY"
    assert UUID.match(event["data"]["challenge"])
    assert UUID.match(event["eventId"])
    meta = event["meta"]
    assert meta["version"] == "4.0"
    assert meta["webhookId"] == WEBHOOK_ID
    assert meta["webhookName"] == "Battery"
    assert UUID.match(meta["deliveryId"])
    assert meta["deliveredAt"] > 1_600_000_000_000  # milliseconds, not seconds
    envelope = parsed(event)
    assert envelope.is_verify
    assert envelope.challenge == event["data"]["challenge"]
    assert envelope.webhook_id == WEBHOOK_ID


def test_verify_challenges_differ_unless_given() -> None:
    first = payloads.verify_event(webhook_id=WEBHOOK_ID)
    second = payloads.verify_event(webhook_id=WEBHOOK_ID)
    assert first["data"]["challenge"] != second["data"]["challenge"]
    assert first["eventId"] != second["eventId"]
    assert payloads.verify_event("fixed", webhook_id=WEBHOOK_ID)["data"]["challenge"] == "fixed"


def test_legacy_verify_puts_the_challenge_in_payload() -> None:
    event = payloads.verify_event("abc", webhook_id=WEBHOOK_ID, legacy=True)
    assert event == {
        "version": "2.0",
        "webhookId": WEBHOOK_ID,
        "eventName": "verify",
        "payload": {"challenge": "abc"},
    }
    envelope = parsed(event)
    assert envelope.is_verify
    assert envelope.challenge == "abc"
    assert envelope.version == "2.0"


def test_vehicle_state_shape_a_follows_the_api_reference() -> None:
    event = payloads.vehicle_state_event(
        VEHICLE, [soc(), failed_location()], webhook_id=WEBHOOK_ID, triggers=[SOC], event_id="evt-1"
    )
    assert event["eventId"] == "evt-1"
    assert event["vehicleId"] == VEHICLE["id"]
    assert "triggers" not in event
    data = event["data"]
    assert data["user"] == {"id": VEHICLE["user_id"]}
    assert data["vehicle"] == {"id": VEHICLE["id"], "make": "TESLA", "model": "Model 3", "year": 2020}
    assert data["triggers"] == [{"code": SOC, "name": "StateOfCharge", "group": "TractionBattery"}]
    ok, failed = data["signals"]
    assert ok["body"] == {"unit": "percent", "value": 78}
    assert ok["meta"] == {"oemUpdatedAt": 1731940328000, "fetchedAt": 1731940330000}
    assert "status" not in ok
    assert "body" not in failed
    assert failed["status"] == {
        "value": "ERROR",
        "error": {"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"},
    }
    meta = event["meta"]
    assert (meta["version"], meta["mode"], meta["signalCount"]) == ("4.0", "LIVE", 2)

    envelope = parsed(event)
    assert (envelope.event_id, envelope.event_type) == ("evt-1", "VEHICLE_STATE")
    assert envelope.vehicle_id == VEHICLE["id"]
    assert envelope.user_id == VEHICLE["user_id"]
    assert envelope.trigger_codes == [SOC]
    first, second = envelope.signals
    assert first.ok
    assert first.value == 78
    assert first.retrieved_at == 1731940330000
    assert not second.ok
    assert second.error == {"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"}


def test_vehicle_state_shape_b_follows_the_dashboard_sample() -> None:
    event = payloads.vehicle_state_event(
        VEHICLE,
        [soc("B"), failed_location("B")],
        webhook_id=WEBHOOK_ID,
        triggers=[SOC],
        shape="B",
        mode="TEST",
    )
    assert "vehicleId" not in event
    assert "triggers" not in event["data"]
    assert event["triggers"] == [
        {
            "type": "SIGNAL_UPDATED",
            "signal": {"name": "StateOfCharge", "code": SOC, "group": "TractionBattery"},
        }
    ]
    assert event["data"]["user"] == {"id": VEHICLE["user_id"], "externalId": "customer-42"}
    assert event["data"]["vehicle"]["mode"] == "test"
    assert event["data"]["vehicle"]["powertrainType"] == "BEV"
    ok, failed = event["data"]["signals"]
    assert ok["status"] == {"value": "SUCCESS"}
    assert ok["meta"] == {"oemUpdatedAt": 1731940328000, "retrievedAt": 1731940330000}
    assert failed["status"]["value"] == "ERROR"
    assert "body" not in failed
    assert event["meta"]["mode"] == "TEST"

    envelope = parsed(event)
    assert envelope.vehicle_id == VEHICLE["id"]  # from data.vehicle.id: there is no top-level vehicleId
    assert envelope.is_test
    assert envelope.trigger_codes == [SOC]
    assert [signal.status for signal in envelope.signals] == ["SUCCESS", "ERROR"]


@pytest.mark.parametrize("shape", ["A", "B"])
def test_first_delivery_trigger_in_both_shapes(shape: payloads.Shape) -> None:
    event = payloads.vehicle_state_event(
        VEHICLE, [soc()], webhook_id=WEBHOOK_ID, triggers=[payloads.FIRST_DELIVERY], shape=shape
    )
    assert parsed(event).trigger_codes == ["FIRST_DELIVERY"]


@pytest.mark.parametrize("target", ["A", "B"])
def test_signals_of_either_shape_are_brought_to_the_requested_one(target: payloads.Shape) -> None:
    source: payloads.Shape = "B" if target == "A" else "A"
    event = payloads.vehicle_state_event(
        VEHICLE, [soc(source), failed_location(source)], webhook_id=WEBHOOK_ID, triggers=[SOC], shape=target
    )
    assert event["data"]["signals"] == [soc(target), failed_location(target)]


def test_missing_timestamps_become_zero_as_smartcar_sends_them() -> None:
    item = payloads.signal_item(
        "vehicleidentification-vin",
        name="Vin",
        group="VehicleIdentification",
        body={"value": "5YJ3E1EA7KF000000"},
        oem_updated_at=None,
        retrieved_at=None,
        shape="B",
    )
    assert item["meta"] == {"oemUpdatedAt": 0, "retrievedAt": 0}


def test_vehicle_state_rejects_a_trigger_that_is_not_delivered() -> None:
    with pytest.raises(ValueError, match="charge-ischarging"):
        payloads.vehicle_state_event(VEHICLE, [soc()], webhook_id=WEBHOOK_ID, triggers=["charge-ischarging"])


def test_a_signal_needs_a_body_or_an_error() -> None:
    with pytest.raises(ValueError, match="needs a body"):
        payloads.signal_item(
            SOC, name="StateOfCharge", group="TractionBattery", body=None, oem_updated_at=1, retrieved_at=1
        )


def test_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        payloads.vehicle_state_event(VEHICLE, [], webhook_id=WEBHOOK_ID, triggers=[], shape="C")  # type: ignore[arg-type]


def test_vehicle_error_fills_items_like_smartcar() -> None:
    location = {"code": "location-preciselocation", "name": "PreciseLocation", "group": "Location"}
    event = payloads.vehicle_error_event(
        VEHICLE,
        [
            payloads.error_item("COMPATIBILITY", "VEHICLE_NOT_CAPABLE", signals=[location]),
            {"type": "VEHICLE_STATE", "code": "ASLEEP", "state": "RESOLVED"},
            {"type": "PERMISSION", "code": None},
        ],
        webhook_id=WEBHOOK_ID,
    )
    assert event["eventType"] == "VEHICLE_ERROR"
    assert event["vehicleId"] == VEHICLE["id"]
    assert "signalCount" not in event["meta"]
    assert event["meta"]["mode"] == "LIVE"
    capable, resolved, permission = event["data"]["errors"]
    assert capable["state"] == "ERROR"
    assert capable["signals"] == [location]
    assert capable["resolution"] == {"type": "CONTACT_SUPPORT"}
    assert capable["docURL"] == (
        "https://smartcar.com/docs/errors/api-errors/compatibility-errors#vehicle-not-capable"
    )
    assert capable["description"]
    assert capable["suggestedUserMessage"]
    assert resolved["state"] == "RESOLVED"
    assert resolved["description"]
    assert not {"resolution", "docURL", "suggestedUserMessage"} & resolved.keys()
    assert permission["code"] is None
    assert permission["docURL"] == "https://smartcar.com/docs/errors/api-errors/permission-errors"

    envelope = parsed(event)
    assert envelope.vehicle_id == VEHICLE["id"]
    assert [(error["type"], error["state"]) for error in envelope.errors] == [
        ("COMPATIBILITY", "ERROR"),
        ("VEHICLE_STATE", "RESOLVED"),
        ("PERMISSION", "ERROR"),
    ]


def test_vehicle_error_keeps_given_fields_and_describes_unknown_codes() -> None:
    event = payloads.vehicle_error_event(
        VEHICLE,
        [
            {"type": "UPSTREAM", "code": "NO_RESPONSE", "resolution": {"type": "RETRY_LATER"}},
            {
                "type": "VEHICLE_STATE",
                "code": "ASLEEP",
                "state": "RESOLVED",
                "docURL": "https://example.test/doc",
            },
        ],
        webhook_id=WEBHOOK_ID,
        mode="TEST",
    )
    upstream, resolved = event["data"]["errors"]
    assert upstream["resolution"] == {"type": "RETRY_LATER"}
    assert "UPSTREAM:NO_RESPONSE" in upstream["description"]
    assert upstream["suggestedUserMessage"] is None
    assert resolved["docURL"] == "https://example.test/doc"
    assert parsed(event).is_test


def test_vehicle_error_needs_errors_with_a_known_state() -> None:
    with pytest.raises(ValueError, match="at least one"):
        payloads.vehicle_error_event(VEHICLE, [], webhook_id=WEBHOOK_ID)
    with pytest.raises(ValueError, match="RESOLVED"):
        payloads.error_item("VEHICLE_STATE", "ASLEEP", state="FIXED")


@pytest.mark.parametrize("event_type", sorted(payloads.LEGACY_EVENT_TYPES))
def test_legacy_event_based_charging_events(event_type: str) -> None:
    event = payloads.legacy_event(
        "eventBased", webhook_id=WEBHOOK_ID, vehicle_id=VEHICLE["id"], event_type=event_type, event_id="e-9"
    )
    assert set(event) == {"version", "webhookId", "eventName", "mode", "payload"}
    assert event["mode"] == "live"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", event["payload"]["eventTime"])
    envelope = parsed(event)
    assert (envelope.event_id, envelope.event_type) == ("e-9", "LEGACY_EVENTBASED")
    assert envelope.vehicle_id == VEHICLE["id"]
    assert envelope.body["payload"]["eventType"] == event_type


def test_legacy_event_based_refuses_other_event_types() -> None:
    with pytest.raises(ValueError, match="CHARGING_STARTED"):
        payloads.legacy_event("eventBased", webhook_id=WEBHOOK_ID, vehicle_id="v", event_type="UNLOCKED")


@pytest.mark.parametrize("name", ["scheduled", "dynamic"])
def test_legacy_data_deliveries_are_batch_items(name: payloads.LegacyEventName) -> None:
    odometer = payloads.legacy_data_item("/odometer", {"distance": 1234.5}, data_age_ms=1_700_000_000_123)
    event = payloads.legacy_event(name, webhook_id=WEBHOOK_ID, vehicle_id=VEHICLE["id"], data=[odometer])
    (vehicle,) = event["payload"]["vehicles"]
    assert vehicle["vehicleId"] == VEHICLE["id"]
    assert UUID.match(vehicle["requestId"])
    assert vehicle["data"] == [
        {
            "path": "/odometer",
            "code": 200,
            "body": {"distance": 1234.5},
            "headers": {"sc-data-age": "2023-11-14T22:13:20.123Z", "sc-unit-system": "metric"},
        }
    ]
    envelope = parsed(event)
    assert envelope.event_type == f"LEGACY_{name.upper()}"
    assert envelope.vehicle_id == VEHICLE["id"]
    assert envelope.event_id.startswith("legacy-")


def test_legacy_data_delivery_defaults_to_a_battery_read() -> None:
    event = payloads.legacy_event("scheduled", webhook_id=WEBHOOK_ID, vehicle_id="v", mode="test")
    (item,) = event["payload"]["vehicles"][0]["data"]
    assert item["path"] == "/battery"
    assert 0 <= item["body"]["percentRemaining"] <= 1
    assert parsed(event).is_test


def test_legacy_event_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown legacy event"):
        payloads.legacy_event("verify", webhook_id=WEBHOOK_ID, vehicle_id="v")  # type: ignore[arg-type]
