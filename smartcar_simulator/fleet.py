"""A seeded fleet whose state moves: vehicles, their owners, and the rules of their commands.

State is advanced lazily: reading a vehicle first applies the time since its last read (a charging
battery gains charge and stops at its limit), so a read costs a few arithmetic operations. Commands
check the vehicle's state the way cars refuse them (`start_charge` unplugged answers
CHARGING_PLUG_NOT_CONNECTED, `lock` with a door open DOOR_OPEN...) and change it.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from smartcar_simulator.clock import SimClock
from smartcar_simulator.errors import ApiError, not_capable, validation, vehicle_state
from smartcar_simulator.makes import CAR_MODELS, CarModel, make_vin

HOUR = 3600.0
CITIES = (
    (37.7749, -122.4194),
    (40.7128, -74.0060),
    (47.6062, -122.3321),
    (52.5200, 13.4050),
    (43.6532, -79.3832),
)
MIN_CHARGE_LIMIT = 0.5


class VehiclePatch(BaseModel):
    """The state fields `PATCH /_sim/vehicles/{id}` may set."""

    model_config = ConfigDict(extra="forbid")

    soc: float | None = Field(None, ge=0, le=1)
    charging: bool | None = None
    plugged_in: bool | None = None
    charge_limit: float | None = Field(None, ge=MIN_CHARGE_LIMIT, le=1)
    fuel: float | None = Field(None, ge=0, le=1)
    locked: bool | None = None
    doors_open: bool | None = None
    windows_open: bool | None = None
    trunk_open: bool | None = None
    hood_open: bool | None = None
    asleep: bool | None = None
    online: bool | None = None
    remote_access_disabled: bool | None = None
    in_motion: bool | None = None
    ignition_on: bool | None = None
    charge_fault: bool | None = None
    low_battery: bool | None = None
    odometer_km: float | None = Field(None, ge=0)
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    oil_life: float | None = Field(None, ge=0, le=1)
    tire_pressure_kpa: list[float] | None = Field(None, min_length=4, max_length=4)
    dtcs: list[str] | None = None


STATE_FIELDS: tuple[str, ...] = tuple(VehiclePatch.model_fields)


@dataclass(slots=True)
class VehicleState:
    soc: float = 0.0
    charging: bool = False
    plugged_in: bool = False
    charge_limit: float = 0.8
    fuel: float = 0.0
    locked: bool = True
    doors_open: bool = False
    windows_open: bool = False
    trunk_open: bool = False
    hood_open: bool = False
    asleep: bool = False
    online: bool = True
    remote_access_disabled: bool = False
    in_motion: bool = False
    ignition_on: bool = False
    charge_fault: bool = False
    low_battery: bool = False
    odometer_km: float = 0.0
    latitude: float = 0.0
    longitude: float = 0.0
    oil_life: float = 1.0
    tire_pressure_kpa: list[float] = field(default_factory=lambda: [240.0] * 4)
    dtcs: list[str] = field(default_factory=list)
    destination: tuple[float, float] | None = None


@dataclass(slots=True)
class Vehicle:
    id: str
    vin: str
    spec: CarModel
    year: int
    user_id: str
    state: VehicleState
    updated_at: dict[str, float]
    last_advanced: float
    charge_per_hour: float = 0.25

    @property
    def make(self) -> str:
        return self.spec.make

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def powertrain(self) -> str:
        return self.spec.powertrain

    def identity(self) -> dict[str, Any]:
        """The mapping the webhook payload builders take."""
        return {
            "id": self.id,
            "make": self.make,
            "model": self.model,
            "year": self.year,
            "user_id": self.user_id,
            "powertrain": self.powertrain,
        }

    def as_dict(self) -> dict[str, Any]:
        state = self.state
        return {
            **self.identity(),
            "vin": self.vin,
            "state": {name: getattr(state, name) for name in STATE_FIELDS}
            | {"destination": list(state.destination) if state.destination else None},
            "updated_at": dict(self.updated_at),
        }

    def age(self, *names: str) -> float:
        """When the newest of `names` last changed (the read's `sc-data-age`)."""
        return max(self.updated_at.get(name, 0.0) for name in names)

    def _set(self, now: float, **values: Any) -> None:
        """Change state fields, stamping the time of each real change (the signals' oemUpdatedAt)."""
        for name, value in values.items():
            if getattr(self.state, name) != value:
                setattr(self.state, name, value)
                self.updated_at[name] = now

    def advance(self, now: float, speed: float) -> None:
        """Apply the time since the last advance: a charging battery gains charge up to its limit."""
        elapsed = (now - self.last_advanced) * speed
        self.last_advanced = now
        state = self.state
        if elapsed <= 0 or not state.charging:
            return
        if not state.plugged_in:
            self._set(now, charging=False)
            return
        soc = min(state.charge_limit, state.soc + self.charge_per_hour * elapsed / HOUR)
        self._set(now, soc=round(soc, 6))
        if soc >= state.charge_limit:
            self._set(now, charging=False)

    def patch(self, changes: VehiclePatch, now: float) -> list[str]:
        """Set state fields (as a person or the car itself would); returns the names that changed."""
        before = {name: getattr(self.state, name) for name in STATE_FIELDS}
        for name in changes.model_fields_set:
            value = getattr(changes, name)
            if value is not None:
                self._set(now, **{name: value})
        if not self.state.plugged_in or self.state.soc >= self.state.charge_limit:
            self._set(now, charging=False)
        return [name for name in STATE_FIELDS if getattr(self.state, name) != before[name]]

    # Commands. Each checks what a car checks, then changes the state.
    def check_reachable(self) -> None:
        state = self.state
        if not state.online:
            raise vehicle_state("UNREACHABLE")
        if state.asleep:
            raise vehicle_state("ASLEEP")

    def _commandable(self) -> None:
        self.check_reachable()
        if self.state.remote_access_disabled:
            raise vehicle_state("REMOTE_ACCESS_DISABLED")
        if self.state.low_battery:
            raise vehicle_state("LOW_BATTERY")

    def require_battery(self) -> None:
        """COMPATIBILITY VEHICLE_NOT_CAPABLE unless it has a traction battery (battery reads, charging)."""
        if not self.spec.has_battery:
            raise not_capable(f"A {self.powertrain} vehicle has no traction battery.")

    def require_tank(self) -> None:
        """COMPATIBILITY VEHICLE_NOT_CAPABLE unless it has a fuel tank (fuel and oil reads)."""
        if not self.spec.has_tank:
            raise not_capable(f"A {self.powertrain} vehicle has no fuel tank.")

    def lock(self, now: float) -> None:
        self._commandable()
        state = self.state
        for condition, code in (
            (state.in_motion, "IN_MOTION"),
            (state.doors_open, "DOOR_OPEN"),
            (state.hood_open, "HOOD_OPEN"),
            (state.trunk_open, "TRUNK_OPEN"),
        ):
            if condition:
                raise vehicle_state(code)
        self._set(now, locked=True)

    def unlock(self, now: float) -> None:
        self._commandable()
        if self.state.in_motion:
            raise vehicle_state("IN_MOTION")
        self._set(now, locked=False)

    def start_charge(self, now: float) -> None:
        self.require_battery()
        self._commandable()
        state = self.state
        if not state.plugged_in:
            raise vehicle_state("CHARGING_PLUG_NOT_CONNECTED")
        if state.charging:
            raise vehicle_state("CHARGING_IN_PROGRESS")
        if state.soc >= state.charge_limit:
            raise vehicle_state("FULLY_CHARGED")
        if state.charge_fault:
            raise vehicle_state("CHARGE_FAULT")
        if state.ignition_on:
            raise vehicle_state("IGNITION_ON")
        self._set(now, charging=True)

    def stop_charge(self, now: float) -> None:
        self.require_battery()
        self._commandable()
        if not self.state.plugged_in:
            raise vehicle_state("CHARGING_PLUG_NOT_CONNECTED")
        if not self.state.charging:
            raise vehicle_state("NOT_CHARGING")
        self._set(now, charging=False)

    def set_charge_limit(self, limit: Any, now: float) -> None:
        self.require_battery()
        self._commandable()
        try:
            value = float(limit)
        except (TypeError, ValueError):
            raise validation("limit must be a number", field="limit") from None
        if not MIN_CHARGE_LIMIT <= value <= 1:
            raise validation("limit must be between 0.5 and 1", field="limit")
        self._set(now, charge_limit=value)
        if self.state.soc >= value:
            self._set(now, charging=False)

    def send_destination(self, latitude: Any, longitude: Any, now: float) -> None:
        self._commandable()
        try:
            lat, lon = float(latitude), float(longitude)
        except (TypeError, ValueError):
            raise validation("latitude and longitude must be numbers", field="latitude") from None
        if not -90 <= lat <= 90 or not -180 <= lon <= 180:  # noqa: PLR2004 - coordinate ranges
            raise validation("latitude or longitude out of range", field="latitude")
        self._set(now, destination=(lat, lon))


class Fleet:
    """Every vehicle by id, their owners, and which (user, vehicle) pairs are connected to the app."""

    def __init__(
        self, vehicles: list[Vehicle], clock: SimClock, *, speed: float = 1.0, connected: bool = True
    ) -> None:
        self.clock = clock
        self.speed = speed
        self.vehicles: dict[str, Vehicle] = {vehicle.id: vehicle for vehicle in vehicles}
        self.by_vin: dict[str, Vehicle] = {vehicle.vin: vehicle for vehicle in vehicles}
        self.users: dict[str, list[str]] = {}
        for vehicle in vehicles:
            self.users.setdefault(vehicle.user_id, []).append(vehicle.id)
        now = clock.now()
        # (user_id, vehicle_id) -> connected at (epoch seconds); spread over the past days, newest last.
        self.connections: dict[tuple[str, str], float] = (
            {(v.user_id, v.id): now - 86400.0 * (len(vehicles) - index) for index, v in enumerate(vehicles)}
            if connected
            else {}
        )

    def get(self, vehicle_id: str) -> Vehicle | None:
        vehicle = self.vehicles.get(vehicle_id)
        if vehicle is not None:
            vehicle.advance(self.clock.now(), self.speed)
        return vehicle

    def require(self, vehicle_id: str) -> Vehicle:
        vehicle = self.get(vehicle_id)
        if vehicle is None:
            raise ApiError("RESOURCE_NOT_FOUND", "PATH", description=f"No vehicle {vehicle_id}.")
        return vehicle

    def advance_all(self) -> list[Vehicle]:
        """Advance every charging vehicle; returns them (their state may have moved)."""
        now = self.clock.now()
        moving = [vehicle for vehicle in self.vehicles.values() if vehicle.state.charging]
        for vehicle in moving:
            vehicle.advance(now, self.speed)
        return moving

    def connect(self, user_id: str, vehicle_ids: list[str]) -> None:
        now = self.clock.now()
        for vehicle_id in vehicle_ids:
            self.connections.setdefault((user_id, vehicle_id), now)

    def is_connected(self, user_id: str, vehicle_id: str) -> bool:
        return (user_id, vehicle_id) in self.connections

    def disconnect(
        self, *, user_id: str | None = None, vehicle_id: str | None = None
    ) -> list[tuple[str, str]]:
        gone = [
            key
            for key in self.connections
            if (user_id is None or key[0] == user_id) and (vehicle_id is None or key[1] == vehicle_id)
        ]
        for key in gone:
            del self.connections[key]
        return gone


def seeded_fleet(
    count: int,
    seed: int,
    clock: SimClock,
    *,
    per_user: int = 2,
    charge_per_hour: float = 0.25,
    speed: float = 1.0,
) -> Fleet:
    """`count` believable vehicles, the same ones for the same seed."""
    rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
    now = clock.now()
    vehicles: list[Vehicle] = []
    user_id = ""
    for index in range(count):
        if index % per_user == 0:
            user_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        spec = rng.choice(CAR_MODELS)
        year = rng.randint(spec.first_year, spec.last_year)
        vehicles.append(
            _vehicle(rng, spec, year=year, user_id=user_id, now=now, charge_per_hour=charge_per_hour)
        )
    return Fleet(vehicles, clock, speed=speed)


def _vehicle(
    rng: random.Random, spec: CarModel, *, year: int, user_id: str, now: float, charge_per_hour: float
) -> Vehicle:
    city_lat, city_lon = rng.choice(CITIES)
    plugged = spec.has_battery and rng.random() < 0.5  # noqa: PLR2004 - half the EVs sit on a charger
    limit = rng.choice((0.8, 0.8, 0.9, 1.0)) if spec.has_battery else 0.8
    soc = round(rng.uniform(0.15, limit - 0.05), 3) if spec.has_battery else 0.0
    state = VehicleState(
        soc=soc,
        charging=plugged and rng.random() < 0.5,  # noqa: PLR2004
        plugged_in=plugged,
        charge_limit=limit,
        fuel=round(rng.uniform(0.1, 1.0), 3) if spec.has_tank else 0.0,
        locked=rng.random() < 0.85,  # noqa: PLR2004
        odometer_km=round(rng.uniform(500, 15000) * (2025 - year + 1), 1),
        latitude=round(city_lat + rng.uniform(-0.05, 0.05), 6),
        longitude=round(city_lon + rng.uniform(-0.05, 0.05), 6),
        oil_life=round(rng.uniform(0.2, 1.0), 2) if spec.has_tank else 1.0,
        tire_pressure_kpa=[round(rng.uniform(225, 255), 1) for _ in range(4)],
    )
    vehicle_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    updated = {name: now - rng.uniform(60, 3600) for name in STATE_FIELDS}
    return Vehicle(
        id=vehicle_id,
        vin=make_vin(spec, year, rng),
        spec=spec,
        year=year,
        user_id=user_id,
        state=state,
        updated_at=updated,
        last_advanced=now,
        charge_per_hour=charge_per_hour,
    )
