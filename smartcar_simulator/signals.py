"""Vehicle signals (v3 and webhooks): each signal's code, group, permission and body, from the fleet state.

A signal a vehicle cannot provide (fuel level on a BEV) is reported with a COMPATIBILITY error, as
Smartcar does in partial deliveries. Times are epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from smartcar_simulator.fleet import Vehicle
from smartcar_simulator.readings import KPA_TO_PSI, LITERS_TO_GALLONS, charge_state, distance

NOT_CAPABLE = {"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"}
ROWS = ((1, 1), (1, 2), (2, 1), (2, 2))


@dataclass(frozen=True, slots=True)
class SignalSpec:
    code: str
    name: str
    group: str
    permission: str
    body: Callable[[Vehicle, bool], dict[str, Any]]
    fields: tuple[str, ...]
    supported: Callable[[Vehicle], bool] = lambda _vehicle: True


@dataclass(frozen=True, slots=True)
class SignalReading:
    code: str
    name: str
    group: str
    body: dict[str, Any] | None
    error: dict[str, Any] | None
    oem_updated_at: int

    def value_key(self) -> Any:
        """What a change is judged by (the body, or the error)."""
        return repr(self.body if self.error is None else self.error)


def _electric(vehicle: Vehicle) -> bool:
    return vehicle.spec.has_battery


def _combustion(vehicle: Vehicle) -> bool:
    return vehicle.spec.has_tank


def _dist_unit(imperial: bool) -> str:
    return "miles" if imperial else "km"


def _limits(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    state = vehicle.state
    percent = round(state.charge_limit * 100)
    active = percent if state.plugged_in and state.charging else None
    return {
        "values": [{"type": "GLOBAL", "limit": percent, "condition": None}],
        "activeLimit": active,
        "unit": "percent",
    }


def _time_to_complete(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    state = vehicle.state
    missing = max(0.0, state.charge_limit - state.soc) if state.charging else 0.0
    return {"unit": "minutes", "value": round(missing / vehicle.charge_per_hour * 60)}


def _doors(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    state = vehicle.state
    values = [
        {
            "row": row,
            "column": column,
            "isOpen": state.doors_open and (row, column) == (1, 1),
            "isLocked": state.locked,
        }
        for row, column in ROWS
    ]
    return {"values": values, "rowCount": 2, "columnCount": 2}


def _tires(vehicle: Vehicle, imperial: bool) -> dict[str, Any]:
    values = [
        {"row": row, "column": column, "tirePressure": round(kpa * KPA_TO_PSI if imperial else kpa, 1)}
        for (row, column), kpa in zip(ROWS, vehicle.state.tire_pressure_kpa, strict=True)
    ]
    return {"values": values, "rowCount": 2, "columnCount": 2, "unit": "psi" if imperial else "kPa"}


def _location(vehicle: Vehicle, _imperial: bool) -> dict[str, Any]:
    state = vehicle.state
    return {
        "latitude": state.latitude,
        "longitude": state.longitude,
        "heading": 0,
        "direction": "N",
        "locationType": "CURRENT",
    }


def _soc(v: Vehicle, _imperial: bool) -> dict[str, Any]:
    return {"unit": "percent", "value": round(v.state.soc * 100)}


def _battery_range(v: Vehicle, imperial: bool) -> dict[str, Any]:
    return {"unit": _dist_unit(imperial), "value": distance(v.state.soc * v.spec.electric_range_km, imperial)}


def _nominal_capacity(v: Vehicle, _imperial: bool) -> dict[str, Any]:
    kwh = v.spec.battery_kwh
    available = [{"capacity": kwh, "description": f"{v.powertrain}:Standard Range"}]
    return {"source": "SMARTCAR", "capacity": kwh, "unit": "kWh", "availableCapacities": available}


def _fuel_amount(v: Vehicle, imperial: bool) -> dict[str, Any]:
    liters = v.state.fuel * v.spec.tank_liters
    if imperial:
        return {"unit": "gallons", "value": round(liters * LITERS_TO_GALLONS, 1)}
    return {"unit": "liters", "value": round(liters, 1)}


def _odometer(v: Vehicle, imperial: bool) -> dict[str, Any]:
    return {"unit": _dist_unit(imperial), "value": distance(v.state.odometer_km, imperial)}


def _value(field: str) -> Callable[[Vehicle, bool], dict[str, Any]]:
    """A `{"value": ...}` body straight from one state field."""
    return lambda v, _imperial: {"value": getattr(v.state, field)}


def _percent(field: str) -> Callable[[Vehicle, bool], dict[str, Any]]:
    return lambda v, _imperial: {"unit": "percent", "value": round(getattr(v.state, field) * 100)}


def _trunk(v: Vehicle, _imperial: bool) -> dict[str, Any]:
    return {"isOpen": v.state.trunk_open, "isLocked": v.state.locked}


def _engine_cover(v: Vehicle, _imperial: bool) -> dict[str, Any]:
    return {"isOpen": v.state.hood_open}


def _dtc_count(v: Vehicle, _imperial: bool) -> dict[str, Any]:
    return {"unit": "count", "value": len(v.state.dtcs)}


def _dtc_list(v: Vehicle, _imperial: bool) -> dict[str, Any]:
    return {"values": [{"code": code, "timestamp": None} for code in v.state.dtcs]}


def _charging_status(v: Vehicle, _imperial: bool) -> dict[str, Any]:
    return {"value": charge_state(v)}


BATTERY, CHARGE, ICE = "TractionBattery", "Charge", "InternalCombustionEngine"
SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec(
        "tractionbattery-stateofcharge", "StateOfCharge", BATTERY, "read_battery", _soc, ("soc",), _electric
    ),
    SignalSpec(
        "tractionbattery-range", "Range", BATTERY, "read_battery", _battery_range, ("soc",), _electric
    ),
    SignalSpec(
        "tractionbattery-nominalcapacity",
        "NominalCapacity",
        BATTERY,
        "read_battery",
        _nominal_capacity,
        (),
        _electric,
    ),
    SignalSpec(
        "charge-ischarging", "IsCharging", CHARGE, "read_charge", _value("charging"), ("charging",), _electric
    ),
    SignalSpec(
        "charge-ischargingcableconnected",
        "IsChargingCableConnected",
        CHARGE,
        "read_charge",
        _value("plugged_in"),
        ("plugged_in",),
        _electric,
    ),
    SignalSpec(
        "charge-detailedchargingstatus",
        "DetailedChargingStatus",
        CHARGE,
        "read_charge",
        _charging_status,
        ("charging", "plugged_in", "soc"),
        _electric,
    ),
    SignalSpec(
        "charge-chargelimits",
        "ChargeLimits",
        CHARGE,
        "read_charge",
        _limits,
        ("charge_limit", "charging"),
        _electric,
    ),
    SignalSpec(
        "charge-timetocomplete",
        "TimeToComplete",
        CHARGE,
        "read_charge",
        _time_to_complete,
        ("soc", "charging"),
        _electric,
    ),
    SignalSpec(
        "internalcombustionengine-fuellevel",
        "FuelLevel",
        ICE,
        "read_fuel",
        _percent("fuel"),
        ("fuel",),
        _combustion,
    ),
    SignalSpec(
        "internalcombustionengine-amountremaining",
        "AmountRemaining",
        ICE,
        "read_fuel",
        _fuel_amount,
        ("fuel",),
        _combustion,
    ),
    SignalSpec(
        "internalcombustionengine-oillife",
        "OilLife",
        ICE,
        "read_engine_oil",
        _percent("oil_life"),
        ("oil_life",),
        _combustion,
    ),
    SignalSpec(
        "odometer-traveleddistance",
        "TraveledDistance",
        "Odometer",
        "read_odometer",
        _odometer,
        ("odometer_km",),
    ),
    SignalSpec(
        "location-preciselocation",
        "PreciseLocation",
        "Location",
        "read_location",
        _location,
        ("latitude", "longitude"),
    ),
    SignalSpec("closure-islocked", "IsLocked", "Closure", "read_security", _value("locked"), ("locked",)),
    SignalSpec("closure-doors", "Doors", "Closure", "read_security", _doors, ("doors_open", "locked")),
    SignalSpec(
        "closure-reartrunk", "RearTrunk", "Closure", "read_security", _trunk, ("trunk_open", "locked")
    ),
    SignalSpec(
        "closure-enginecover", "EngineCover", "Closure", "read_security", _engine_cover, ("hood_open",)
    ),
    SignalSpec("wheel-tires", "Tires", "Wheel", "read_tires", _tires, ("tire_pressure_kpa",)),
    SignalSpec(
        "connectivitystatus-isonline",
        "IsOnline",
        "ConnectivityStatus",
        "read_vehicle_info",
        _value("online"),
        ("online",),
    ),
    SignalSpec(
        "connectivitystatus-isasleep",
        "IsAsleep",
        "ConnectivityStatus",
        "read_vehicle_info",
        _value("asleep"),
        ("asleep",),
    ),
    SignalSpec("diagnostics-dtccount", "DTCCount", "Diagnostics", "read_diagnostics", _dtc_count, ("dtcs",)),
    SignalSpec("diagnostics-dtclist", "DTCList", "Diagnostics", "read_diagnostics", _dtc_list, ("dtcs",)),
)
BY_CODE: dict[str, SignalSpec] = {spec.code: spec for spec in SIGNALS}
DEFAULT_WEBHOOK_SIGNALS: tuple[str, ...] = (
    "tractionbattery-stateofcharge",
    "charge-ischarging",
    "charge-ischargingcableconnected",
    "charge-chargelimits",
    "closure-islocked",
    "internalcombustionengine-fuellevel",
    "odometer-traveleddistance",
    "location-preciselocation",
)


def read_signal(spec: SignalSpec, vehicle: Vehicle, imperial: bool = False) -> SignalReading:
    updated = int(vehicle.age(*spec.fields) * 1000) if spec.fields else 0
    if not spec.supported(vehicle):
        return SignalReading(spec.code, spec.name, spec.group, None, dict(NOT_CAPABLE), 0)
    return SignalReading(spec.code, spec.name, spec.group, spec.body(vehicle, imperial), None, updated)


def read_signals(
    vehicle: Vehicle, codes: Iterable[str] | None = None, imperial: bool = False
) -> list[SignalReading]:
    specs = SIGNALS if codes is None else [BY_CODE[code] for code in codes if code in BY_CODE]
    return [read_signal(spec, vehicle, imperial) for spec in specs]


def resource(reading: SignalReading, vehicle_id: str, retrieved_at: int) -> dict[str, Any]:
    """A signal as the v3 API's JSON:API resource."""
    status: dict[str, Any] = (
        {"value": "SUCCESS"} if reading.error is None else {"value": "ERROR", "error": reading.error}
    )
    attributes: dict[str, Any] = {
        "code": reading.code,
        "name": reading.name,
        "group": reading.group,
        "status": status,
    }
    if reading.body is not None:
        attributes["body"] = reading.body
    return {
        "id": reading.code,
        "type": "signal",
        "attributes": attributes,
        "meta": {"retrievedAt": retrieved_at, "oemUpdatedAt": reading.oem_updated_at},
        "links": {
            "self": f"/vehicles/{vehicle_id}/signals/{reading.code}",
            "vehicle": f"/vehicles/{vehicle_id}",
        },
    }
