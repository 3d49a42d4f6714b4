"""Drive the official Smartcar Python SDK, unchanged, against the simulator; print what it saw as JSON.

Run in a subprocess by `test_official_sdk.py`: the SDK reads `SMARTCAR_*_ORIGIN` when it is imported,
so the environment must point at the simulator before the first import.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import smartcar


def connect(client: Any) -> str:
    """Follow Connect's authorize URL as a browser would, up to the redirect back; return the code."""
    url = client.get_auth_url(["read_vehicle_info", "read_odometer", "read_battery", "read_charge",
                               "read_location", "read_security", "control_security", "control_charge",
                               "read_vin", "read_fuel"],
                              {"state": "sdk-state", "user": "sdk-user"})  # fmt: skip
    answer = requests.get(url, allow_redirects=False, timeout=10)
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    if query["state"] != ["sdk-state"]:
        raise SystemExit(f"state lost: {query}")
    return query["code"][0]


def applications(amt: str, vehicle: Any, seen: dict[str, Any]) -> None:
    """Compatibility and the Management API (the application's view), then a read after the deletion."""
    vehicle_id = vehicle.vehicle_id
    compatibility = smartcar.get_compatibility(seen["vin"], ["read_odometer"])
    seen["compatible"] = compatibility.compatible
    seen["matrix_makes"] = sorted(smartcar.smartcar.get_compatibility_matrix("US", "TESLA", {"type": "BEV"}))
    connections = smartcar.get_connections(amt, {"user_id": seen["user"]}, {"limit": 1})
    seen["connections_first_page"] = [c.vehicle_id for c in connections.connections]
    seen["connections_cursor"] = connections.paging.cursor is not None
    seen["deleted"] = [
        c.vehicle_id for c in smartcar.delete_connections(amt, {"vehicle_id": vehicle_id}).connections
    ]
    try:
        vehicle.odometer()
    except smartcar.SmartcarException as error:
        seen["after_delete"] = [error.status_code, error.type]


def main() -> None:
    amt = os.environ["SMARTCAR_AMT"]
    seen: dict[str, Any] = {}
    client = smartcar.AuthClient(redirect_uri="https://app.example/callback")
    access = client.exchange_code(connect(client))
    seen["token_type"] = access.token_type
    refreshed = client.exchange_refresh_token(access.refresh_token)
    seen["rotated"] = refreshed.refresh_token != access.refresh_token
    token = refreshed.access_token

    seen["user"] = smartcar.get_user(token).id
    vehicles = smartcar.get_vehicles(token)
    seen["vehicles"] = vehicles.vehicles
    vehicle_id = vehicles.vehicles[0]
    vehicle = smartcar.Vehicle(vehicle_id, token)
    attributes = vehicle.attributes()
    seen["attributes"] = [attributes.id, attributes.make, attributes.model, attributes.year]
    seen["vin"] = vehicle.vin().vin
    seen["odometer"] = vehicle.odometer().distance
    seen["request_id"] = vehicle.odometer().meta.request_id
    seen["location"] = list(vehicle.location()[:2])
    seen["locked"] = vehicle.lock_status().is_locked
    seen["permissions"] = sorted(vehicle.permissions().permissions)
    seen["lock"] = vehicle.lock().status
    seen["locked_after"] = vehicle.lock_status().is_locked
    seen["unlock"] = vehicle.unlock().message
    batch = vehicle.batch(["/odometer", "/location", "/fuel"])
    seen["batch_odometer"] = batch.odometer().distance
    try:
        batch.fuel()
    except smartcar.SmartcarException as error:
        seen["batch_fuel_error"] = [error.status_code, error.type, error.code]
    else:
        seen["batch_fuel_error"] = None
    seen["signals"] = len(vehicle.get_signals()["body"]["data"])
    seen["signal"] = vehicle.get_signal("odometer-traveleddistance")["body"]["attributes"]["body"]
    seen["v3_vehicle"] = smartcar.smartcar.get_vehicle(token, vehicle_id)["body"]["attributes"]["make"]
    seen["subscribe"] = vehicle.subscribe("sdk-webhook").webhook_id
    seen["unsubscribe"] = vehicle.unsubscribe(amt, "sdk-webhook").status
    try:
        vehicle.engine_oil()
    except smartcar.SmartcarException as error:
        seen["permission_error"] = [error.status_code, error.type]

    applications(amt, vehicle, seen)
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    main()
