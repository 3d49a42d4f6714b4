"""Signed VEHICLE_STATE bodies for load tests, and the wrk script that posts them one after another.

Every body has an eventId of its own (a receiver that deduplicates would otherwise measure its duplicate
path), is 1-2 KB of compact JSON in one of Smartcar's two 4.0 VEHICLE_STATE shapes, signed with the bench AMT.
The file holds one request per line: the 64-character hex signature, a space, the body.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

from smartcar_core.webhooks import signature_of

BENCH_AMT = "amt-bench-0000000000000000"
WEBHOOK_PATH = "/webhooks/smartcar"

_SIGNALS: tuple[tuple[str, str, str, Any], ...] = (
    ("tractionbattery-stateofcharge", "StateOfCharge", "TractionBattery", {"value": 61, "unit": "percent"}),
    ("charge-ischarging", "IsCharging", "Charge", {"value": False}),
    ("charge-ischargingcableconnected", "IsChargingCableConnected", "Charge", {"value": True}),
    ("charge-chargerate", "ChargeRate", "Charge", {"value": 42.5, "unit": "km/h"}),
    ("charge-timetocomplete", "TimeToComplete", "Charge", {"value": 95}),
    ("odometer-traveleddistance", "TraveledDistance", "Odometer", {"value": 115071.5, "unit": "kilometers"}),
    ("closure-islocked", "IsLocked", "Closure", {"value": True}),
    (
        "location-preciselocation",
        "PreciseLocation",
        "Location",
        {"latitude": 37.77, "longitude": -122.42, "heading": 90, "direction": "E", "locationType": "CURRENT"},
    ),
    ("tractionbattery-range", "Range", "TractionBattery", {"value": 312.4, "unit": "kilometers"}),
)


def vehicle_state_body(rng: random.Random, now_ms: int) -> bytes:
    """One VEHICLE_STATE delivery of 1-2 KB, shape A or B, a fresh eventId and deliveryId."""
    shape_b = rng.random() < 0.5
    vehicle_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    chosen = rng.sample(_SIGNALS, rng.randint(4, 6))
    signals = []
    for code, name, group, body in chosen:
        item: dict[str, Any] = {"code": code, "name": name, "group": group, "body": body}
        if shape_b:
            item["status"] = {"value": "SUCCESS"}
            item["meta"] = {"oemUpdatedAt": now_ms - 2000, "retrievedAt": now_ms - 1000}
        else:
            item["meta"] = {"oemUpdatedAt": now_ms - 2000, "fetchedAt": now_ms - 1000}
        signals.append(item)
    trigger = chosen[0]
    data: dict[str, Any] = {
        "user": {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4))},
        "vehicle": {"id": vehicle_id, "make": "TESLA", "model": "Model 3", "year": 2022},
        "signals": signals,
    }
    event: dict[str, Any] = {
        "eventId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "eventType": "VEHICLE_STATE",
    }
    if shape_b:
        event["data"] = data
        event["triggers"] = [
            {
                "type": "SIGNAL_UPDATED",
                "signal": {"code": trigger[0], "name": trigger[1], "group": trigger[2]},
            }
        ]
    else:
        event["vehicleId"] = vehicle_id
        data["triggers"] = [{"code": trigger[0], "name": trigger[1], "group": trigger[2]}]
        event["data"] = data
    event["meta"] = {
        "version": "4.0",
        "webhookId": "5a8e5e38-1e12-4011-a36d-56f120053f9e",
        "webhookName": "bench",
        "deliveryId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "deliveredAt": now_ms,
        "mode": "LIVE",
        "signalCount": len(signals),
    }
    return json.dumps(event, separators=(",", ":")).encode()


def write_bodies(path: Path, count: int, *, seed: int, now_ms: int, amt: str = BENCH_AMT) -> tuple[int, int]:
    """Write `count` signed requests to `path`; returns the smallest and largest body size."""
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    smallest, largest = 1 << 30, 0
    with path.open("wb") as out:
        for _ in range(count):
            body = vehicle_state_body(rng, now_ms)
            smallest, largest = min(smallest, len(body)), max(largest, len(body))
            out.write(signature_of(amt, body).encode() + b" " + body + b"\n")
    return smallest, largest


# wrk runs init() in each thread, done() in the main Lua state: it prints one JSON line for the bench to read.
WRK_SCRIPT = """
local requests = {}
local count = 0
local next_index = 0

function init(args)
  for line in io.lines(args[1]) do
    count = count + 1
    requests[count] = wrk.format("POST", "@PATH@",
      {["Content-Type"] = "application/json", ["SC-Signature"] = string.sub(line, 1, 64)},
      string.sub(line, 66))
  end
end

function request()
  next_index = next_index + 1
  if next_index > count then next_index = 1 end
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
""".replace("@PATH@", WEBHOOK_PATH)


def write_wrk_script(path: Path) -> None:
    path.write_text(WRK_SCRIPT)
