"""v3 results: typed signals from JSON:API resources, and epoch timestamps in either unit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from smartcar_core import Signal, SignalResponse, SignalsResponse
from smartcar_core.v3 import epoch_to_datetime

MOMENT = datetime(2025, 7, 9, 23, 36, 58, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1752104218, MOMENT),  # seconds
        (1752104218000, MOMENT),  # milliseconds
        (1752104218549, MOMENT.replace(microsecond=549000)),
        (1752104218.5, MOMENT.replace(microsecond=500000)),
        (0, None),  # "no timestamp", not 1970
        (-5, None),
        (True, None),
        ("1752104218", None),
        (None, None),
        (1e300, None),  # beyond any datetime
    ],
)
def test_epoch_to_datetime(value: Any, expected: datetime | None) -> None:
    assert epoch_to_datetime(value) == expected


def test_a_signal_from_a_full_resource() -> None:
    signal = Signal.from_resource(
        {
            "id": "charge-chargelimits",
            "type": "signal",
            "attributes": {
                "code": "charge-chargelimits",
                "name": "ChargeLimits",
                "group": "Charge",
                "status": {"value": "SUCCESS"},
                "body": {"values": [{"type": "GLOBAL", "limit": 80}], "activeLimit": None, "unit": "percent"},
            },
            "meta": {"retrievedAt": 1752104218, "oemUpdatedAt": 0},
        }
    )

    assert signal == Signal(
        code="charge-chargelimits",
        name="ChargeLimits",
        group="Charge",
        status="SUCCESS",
        body={"values": [{"type": "GLOBAL", "limit": 80}], "activeLimit": None, "unit": "percent"},
        retrieved_at=MOMENT,
        oem_updated_at=None,
    )
    assert signal.value == signal.body  # no "value" key: the whole body


def test_a_sparse_resource_still_makes_a_signal() -> None:
    signal = Signal.from_resource({"id": "odometer-traveleddistance", "attributes": {"status": "SUCCESS"}})

    assert (signal.code, signal.name, signal.status, signal.error, signal.body, signal.value) == (
        "odometer-traveleddistance",
        None,
        None,
        None,
        None,
        None,
    )
    assert Signal.from_resource({}).code == ""


def test_response_wrappers_read_signals_from_the_body() -> None:
    assert SignalsResponse(body={"data": None}).signals == []
    assert SignalsResponse(body={}).headers == {}
    single = SignalResponse(body={"attributes": {"code": "a", "body": {"value": 1}}})
    assert single.signal.value == 1
