"""The v2 read endpoints: for each vehicle path, its permission, its body, and where its data age comes from.

Bodies are Smartcar's camelCase shapes. `imperial` converts distances to miles, volumes to gallons and
pressures to psi, as Smartcar does for `sc-unit-system: imperial`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from smartcar_simulator.fleet import Vehicle

KM_TO_MILES = 0.621371
LITERS_TO_GALLONS = 0.264172
KPA_TO_PSI = 0.145038
TIRES = ("frontLeft", "frontRight", "backLeft", "backRight")


@dataclass(frozen=True, slots=True)
class Read:
    permission: str | None
    render: Callable[[Vehicle, bool], Any]
    fields: tuple[str, ...] = ()  # the state fields whose change time is the data age


def distance(km: float, imperial: bool) -> float:
    return round(km * KM_TO_MILES if imperial else km, 2)


def charge_state(vehicle: Vehicle) -> str:
    state = vehicle.state
    if state.charging:
        return "CHARGING"
    if state.plugged_in and state.soc >= state.charge_limit:
        return "FULLY_CHARGED"
    return "NOT_CHARGING"


def _charge(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    vehicle.require_battery()
    return {"isPluggedIn": vehicle.state.plugged_in, "state": charge_state(vehicle)}


def _charge_limit(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    vehicle.require_battery()
    return {"limit": vehicle.state.charge_limit}


def _battery(vehicle: Vehicle, imperial: bool) -> dict[str, Any]:
    vehicle.require_battery()
    soc = vehicle.state.soc
    return {
        "range": distance(soc * vehicle.spec.electric_range_km, imperial),
        "percentRemaining": round(soc, 4),
    }


def _capacity(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    vehicle.require_battery()
    return {"capacity": vehicle.spec.battery_kwh}


def _nominal_capacity(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    vehicle.require_battery()
    kwh = vehicle.spec.battery_kwh
    return {
        "availableCapacities": [{"capacity": kwh, "description": f"{vehicle.powertrain}:Standard Range"}],
        "capacity": {"nominal": kwh, "source": "SMARTCAR"},
        "url": None,
    }


def _fuel(vehicle: Vehicle, imperial: bool) -> dict[str, Any]:
    vehicle.require_tank()
    fuel = vehicle.state.fuel
    liters = fuel * vehicle.spec.tank_liters
    return {
        "range": distance(fuel * vehicle.spec.fuel_range_km, imperial),
        "percentRemaining": round(fuel, 4),
        "amountRemaining": round(liters * LITERS_TO_GALLONS if imperial else liters, 2),
    }


def _tires(vehicle: Vehicle, imperial: bool) -> dict[str, Any]:
    pressures = vehicle.state.tire_pressure_kpa
    return {
        name: round(value * KPA_TO_PSI if imperial else value, 1)
        for name, value in zip(TIRES, pressures, strict=True)
    }


def _oil(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    vehicle.require_tank()
    return {"lifeRemaining": vehicle.state.oil_life}


def _security(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    state = vehicle.state

    def status(is_open: bool) -> str:
        return "OPEN" if is_open else "CLOSED"

    return {
        "isLocked": state.locked,
        "doors": [
            {"type": name, "status": status(state.doors_open and name == "frontLeft")} for name in TIRES
        ],
        "windows": [{"type": name, "status": status(state.windows_open)} for name in TIRES],
        "sunroof": [{"type": "sunroof", "status": "CLOSED"}],
        "storage": [
            {"type": "rear", "status": status(state.trunk_open)},
            {"type": "front", "status": status(state.hood_open)},
        ],
        "chargingPort": [{"type": "chargingPort", "status": status(state.plugged_in)}]
        if vehicle.spec.has_battery
        else [],
    }


def _system_status(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    alert = bool(vehicle.state.dtcs)
    systems = [
        {"systemId": "SYSTEM_TPMS", "status": "OK", "description": None},
        {
            "systemId": "SYSTEM_MIL",
            "status": "ALERT" if alert else "OK",
            "description": "Check engine" if alert else None,
        },
        {"systemId": "SYSTEM_AIRBAG", "status": "OK", "description": None},
    ]
    return {"systems": systems}


def _dtcs(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    when = datetime.fromtimestamp(vehicle.updated_at.get("dtcs", 0.0), UTC).isoformat().replace("+00:00", "Z")
    return {"activeCodes": [{"code": code, "timestamp": when} for code in vehicle.state.dtcs]}


READS: dict[str, Read] = {
    "": Read(
        "read_vehicle_info", lambda v, _i: {"id": v.id, "make": v.make, "model": v.model, "year": v.year}
    ),
    "vin": Read("read_vin", lambda v, _i: {"vin": v.vin}),
    "charge": Read("read_charge", _charge, ("charging", "plugged_in", "soc")),
    "charge/limit": Read("read_charge", _charge_limit, ("charge_limit",)),
    "battery": Read("read_battery", _battery, ("soc",)),
    "battery/capacity": Read("read_battery", _capacity),
    "battery/nominal_capacity": Read("read_battery", _nominal_capacity),
    "fuel": Read("read_fuel", _fuel, ("fuel",)),
    "tires/pressure": Read("read_tires", _tires, ("tire_pressure_kpa",)),
    "engine/oil": Read("read_engine_oil", _oil, ("oil_life",)),
    "odometer": Read(
        "read_odometer", lambda v, i: {"distance": distance(v.state.odometer_km, i)}, ("odometer_km",)
    ),
    "location": Read(
        "read_location",
        lambda v, _i: {"latitude": v.state.latitude, "longitude": v.state.longitude},
        ("latitude", "longitude"),
    ),
    "security": Read(
        "read_security", _security, ("locked", "doors_open", "windows_open", "trunk_open", "hood_open")
    ),
    "diagnostics/system_status": Read("read_diagnostics", _system_status, ("dtcs",)),
    "diagnostics/dtcs": Read("read_diagnostics", _dtcs, ("dtcs",)),
}

SERVICE_HISTORY_PERMISSION = "read_service_history"


def service_history(
    vehicle: Vehicle, imperial: bool, start: datetime | None, end: datetime | None, now: float
) -> list[dict[str, Any]]:
    """Service records every 15,000 km (or yearly), newest first, within [start, end]."""
    rng_seed = zlib.crc32(vehicle.id.encode())
    visits = max(1, int(vehicle.state.odometer_km // 15000))
    today = datetime.fromtimestamp(now, UTC)
    records: list[dict[str, Any]] = []
    for number in range(visits, 0, -1):
        when = today - timedelta(days=182 * (visits - number) + (rng_seed % 90))
        if (start and when < start) or (end and when > end):
            continue
        records.append(
            {
                "serviceId": f"{rng_seed % 100000:05d}-{number}",
                "serviceDate": when.isoformat().replace("+00:00", "Z"),
                "odometerDistance": distance(15000.0 * number, imperial),
                "serviceTasks": [{"taskId": "1", "taskDescription": "Oil and filter change"}],
                "serviceDetails": [{"type": "dealer", "value": "Simulated Service Center"}],
                "serviceCost": {"totalCost": 180.0 + number, "currency": "USD"},
            }
        )
    return records
