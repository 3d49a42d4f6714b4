"""Every `Vehicle` method of smartcar_core, sync and async, over real HTTP against the simulator.

One table of cases: each says what to set up in the fleet, which method to call, and what the answer
(and the fleet afterwards) must be. The same table runs through `Vehicle` and `AsyncVehicle`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest

from simulator.support import first
from smartcar_core import AsyncVehicle, BatchResponse, Vehicle
from smartcar_core.endpoint import Endpoint
from smartcar_simulator.control import SimulatorControl
from smartcar_simulator.makes import CAR_MODELS, CarModel
from smartcar_simulator.testing import RunningSimulator


@dataclass
class Setup:
    control: SimulatorControl
    vehicle_id: str
    amt: str

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.control.vehicle(self.vehicle_id)["state"]
        return state

    def vehicle(self) -> dict[str, Any]:
        return self.control.vehicle(self.vehicle_id)

    def spec(self) -> CarModel:
        vehicle = self.vehicle()
        return next(m for m in CAR_MODELS if (m.make, m.model) == (vehicle["make"], vehicle["model"]))


AMT = object()  # stands for the simulator's AMT in a case's arguments


@dataclass
class Trial:
    """What a check sees: the method's result and the fleet afterwards."""

    result: Any
    setup: Setup


@dataclass
class Case:
    method: str
    check: Callable[[Trial], bool]
    args: tuple[Any, ...] = ()
    prepare: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.method


def _batch_ok(trial: Trial) -> bool:
    result: BatchResponse = trial.result
    state = trial.setup.state()
    return bool(
        result.odometer().distance == state["odometer_km"]
        and result.get("/charge").is_plugged_in == state["plugged_in"]
        and result.fuel().percent_remaining == round(state["fuel"], 4)
    )


CASES = [
    Case("vin", lambda t: t.result.vin == t.setup.vehicle()["vin"]),
    Case(
        "charge",
        lambda t: t.result.is_plugged_in and t.result.state == "CHARGING",
        prepare={"plugged_in": True, "soc": 0.3, "charging": True},
    ),
    Case(
        "battery", lambda t: t.result.percent_remaining == 0.42 and t.result.range > 0, prepare={"soc": 0.42}
    ),
    Case("battery_capacity", lambda t: t.result.capacity == t.setup.spec().battery_kwh),
    Case(
        "nominal_capacity",
        lambda t: (
            t.result.capacity.nominal
            == t.result.available_capacities[0].capacity
            == t.setup.spec().battery_kwh
        ),
    ),
    Case(
        "fuel",
        lambda t: (
            t.result.percent_remaining == 0.5 and t.result.amount_remaining == t.setup.spec().tank_liters / 2
        ),
        prepare={"fuel": 0.5},
    ),
    Case(
        "tire_pressure",
        lambda t: t.result.front_left == 230.0,
        prepare={"tire_pressure_kpa": [230, 231, 232, 233]},
    ),
    Case("engine_oil", lambda t: t.result.life_remaining == 0.4, prepare={"oil_life": 0.4}),
    Case(
        "odometer",
        lambda t: t.result.distance == 12345.6 and t.result.meta.unit_system == "metric",
        prepare={"odometer_km": 12345.6},
    ),
    Case(
        "location",
        lambda t: (t.result.latitude, t.result.longitude) == (48.1, 11.5),
        prepare={"latitude": 48.1, "longitude": 11.5},
    ),
    Case(
        "attributes",
        lambda t: (
            (t.result.id, t.result.make, t.result.model, t.result.year)
            == tuple(t.setup.vehicle()[k] for k in ("id", "make", "model", "year"))
        ),
    ),
    Case(
        "lock_status",
        lambda t: (
            not t.result.is_locked
            and t.result.doors[0].status == "OPEN"
            and t.result.storage[0].status == "CLOSED"
        ),
        prepare={"locked": False, "doors_open": True},
    ),
    Case("get_charge_limit", lambda t: t.result.limit == 0.9, prepare={"charge_limit": 0.9}),
    Case(
        "diagnostic_system_status",
        lambda t: any(x.status == "ALERT" for x in t.result.systems),
        prepare={"dtcs": ["P0300"]},
    ),
    Case(
        "diagnostic_trouble_codes",
        lambda t: [c.code for c in t.result.active_codes] == ["P0300", "P0171"],
        prepare={"dtcs": ["P0300", "P0171"]},
    ),
    Case("permissions", lambda t: "read_odometer" in t.result.permissions and t.result.paging.count == 15),
    Case(
        "service_history",
        lambda t: len(t.result.items) >= 1 and "serviceDate" in t.result.items[0],
        prepare={"odometer_km": 40000},
    ),
    Case("service_history", lambda t: t.result.items == [], args=(date(2000, 1, 1), date(2000, 12, 31))),
    Case(
        "lock",
        lambda t: t.result.status == "success" and t.setup.state()["locked"],
        prepare={"locked": False},
    ),
    Case(
        "unlock",
        lambda t: t.result.status == "success" and not t.setup.state()["locked"],
        prepare={"locked": True},
    ),
    Case(
        "start_charge",
        lambda t: t.result.status == "success" and t.setup.state()["charging"],
        prepare={"plugged_in": True, "soc": 0.3, "charging": False, "charge_limit": 0.8},
    ),
    Case(
        "stop_charge",
        lambda t: t.result.status == "success" and not t.setup.state()["charging"],
        prepare={"plugged_in": True, "soc": 0.3, "charging": True, "charge_limit": 0.8},
    ),
    Case(
        "set_charge_limit",
        lambda t: t.result.status == "success" and t.setup.state()["charge_limit"] == 0.7,
        args=(0.7,),
    ),
    Case(
        "send_destination",
        lambda t: t.result.status == "success" and t.setup.state()["destination"] == [52.52, 13.405],
        args=(52.52, 13.405),
    ),
    Case(
        "subscribe",
        lambda t: (t.result.webhook_id, t.result.vehicle_id) == ("wh-1", t.setup.vehicle_id),
        args=("wh-1",),
    ),
    Case("unsubscribe", lambda t: t.result.status == "success", args=(AMT, "wh-1")),
    Case("batch", _batch_ok, args=(["/odometer", "charge", "/fuel"],)),
    Case(
        "request",
        lambda t: t.result.body == {"distance": 7.0} and t.result.meta.request_id,
        args=("GET", "odometer"),
        prepare={"odometer_km": 7.0},
    ),
    Case(
        "request",
        lambda t: t.result.body["status"] == "success" and t.setup.state()["locked"],
        args=("POST", "security", {"action": "LOCK"}),
        prepare={"locked": False},
    ),
    Case(
        "get_signals",
        lambda t: (
            {x.code for x in t.result.signals}
            >= {"tractionbattery-stateofcharge", "internalcombustionengine-fuellevel"}
        ),
    ),
    Case(
        "get_signal",
        lambda t: t.result.signal.value == 55 and t.result.signal.body["unit"] == "percent",
        args=("tractionbattery-stateofcharge",),
        prepare={"soc": 0.55},
    ),
    Case("disconnect", lambda t: t.result.status == "success"),
]


@pytest.fixture
def phev(simulator: RunningSimulator) -> tuple[Setup, str]:
    """A plug-in hybrid (battery and tank: every read answers) and a token for it."""
    vehicle = first(simulator, "PHEV")
    tokens = simulator.control.mint_tokens([vehicle["id"]])
    return Setup(simulator.control, vehicle["id"], simulator.amt), tokens.access_token


def _prepare(case: Case, setup: Setup) -> tuple[Any, ...]:
    if case.prepare:
        setup.control.patch_vehicle(setup.vehicle_id, **case.prepare)
    return tuple(setup.amt if arg is AMT else arg for arg in case.args)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sync_vehicle_method(case: Case, phev: tuple[Setup, str], simulator: RunningSimulator) -> None:
    setup, token = phev
    args = _prepare(case, setup)
    with httpx.Client() as http:
        vehicle = Vehicle(setup.vehicle_id, token, origins=simulator.origins, http=http)
        result = getattr(vehicle, case.method)(*args)
    assert case.check(Trial(result, setup)), result


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=str)
async def test_async_vehicle_method(case: Case, phev: tuple[Setup, str], simulator: RunningSimulator) -> None:
    setup, token = phev
    args = _prepare(case, setup)
    async with httpx.AsyncClient() as http:
        vehicle = AsyncVehicle(setup.vehicle_id, token, origins=simulator.origins, http=http)
        result = await getattr(vehicle, case.method)(*args)
    assert case.check(Trial(result, setup)), result


def test_every_vehicle_method_is_in_the_table() -> None:
    """A method added to Vehicle without a case here fails this test."""
    public = {name for name in dir(Vehicle) if isinstance(getattr(Vehicle, name), Endpoint)}
    assert len(public) > 25
    assert public == {case.method for case in CASES}


def test_imperial_units_convert_distances_volumes_and_pressures(
    phev: tuple[Setup, str], simulator: RunningSimulator
) -> None:
    setup, token = phev
    setup.control.patch_vehicle(
        setup.vehicle_id, odometer_km=100.0, fuel=1.0, tire_pressure_kpa=[200, 200, 200, 200]
    )
    with httpx.Client() as http:
        vehicle = Vehicle(setup.vehicle_id, token, "imperial", origins=simulator.origins, http=http)
        odometer, fuel, tires = vehicle.odometer(), vehicle.fuel(), vehicle.tire_pressure()
        signal = vehicle.get_signal("odometer-traveleddistance").signal
    assert odometer.distance == 62.14
    assert odometer.meta.unit_system == "imperial"
    assert fuel.amount_remaining == round(setup.spec().tank_liters * 0.264172, 2)
    assert tires.front_left == 29.0
    assert signal.body == {"unit": "miles", "value": 62.14}


def test_the_disconnected_vehicle_refuses_its_token(
    phev: tuple[Setup, str], simulator: RunningSimulator
) -> None:
    setup, token = phev
    with httpx.Client() as http:
        vehicle = Vehicle(setup.vehicle_id, token, origins=simulator.origins, http=http)
        vehicle.disconnect()
        with pytest.raises(Exception, match="AUTHENTICATION") as raised:
            vehicle.odometer()
    assert type(raised.value).__name__ == "AuthenticationError"
