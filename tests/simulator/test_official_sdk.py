"""The official Smartcar Python SDK (PyPI `smartcar`) works unchanged against the simulator.

It reads its origins at import time, so it runs in a subprocess whose environment points at the simulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smartcar_simulator.testing import RunningSimulator

SCRIPT = Path(__file__).with_name("sdk_session.py")


@pytest.fixture
def seen(simulator: RunningSimulator) -> dict[str, Any]:
    env = {**os.environ, **simulator.env, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    result = subprocess.run(  # noqa: S603 - our own script, with our interpreter
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_the_sdk_auth_flow_reads_commands_batch_and_management(
    seen: dict[str, Any], simulator: RunningSimulator
) -> None:
    user = next(u for u in simulator.control.users() if u["id"] == seen["user"])
    vehicle = next(v for v in simulator.control.vehicles() if v["id"] == seen["vehicles"][0])
    assert seen["token_type"] == "Bearer"
    assert seen["rotated"] is True
    assert seen["vehicles"] == user["vehicle_ids"]
    assert seen["attributes"] == [vehicle["id"], vehicle["make"], vehicle["model"], vehicle["year"]]
    assert seen["vin"] == vehicle["vin"]
    assert seen["odometer"] == vehicle["state"]["odometer_km"]
    assert seen["request_id"]
    assert seen["location"] == [vehicle["state"]["latitude"], vehicle["state"]["longitude"]]
    assert seen["lock"] == "success"
    assert seen["locked_after"] is True
    assert seen["unlock"] == "Successfully sent request to vehicle"
    assert vehicle["state"]["locked"] is False  # the unlock took effect
    assert seen["batch_odometer"] == vehicle["state"]["odometer_km"]
    if vehicle["powertrain"] == "BEV":
        assert seen["batch_fuel_error"] == [501, "COMPATIBILITY", "VEHICLE_NOT_CAPABLE"]
    assert seen["signals"] > 10
    assert seen["signal"] == {"unit": "km", "value": vehicle["state"]["odometer_km"]}
    assert seen["v3_vehicle"] == vehicle["make"]
    assert (seen["subscribe"], seen["unsubscribe"]) == ("sdk-webhook", "success")
    assert seen["permission_error"] == [403, "PERMISSION"]
    assert seen["compatible"] is True
    assert seen["matrix_makes"] == ["TESLA"]
    assert len(seen["connections_first_page"]) == 1
    assert seen["connections_cursor"] is (len(user["vehicle_ids"]) > 1)
    assert seen["deleted"] == [vehicle["id"]]
    assert seen["after_delete"] == [401, "AUTHENTICATION"]
