"""The simulator's parts in process, on a hand-driven clock: fleet, commands, latency, faults, limits."""

from __future__ import annotations

import random
import statistics

import pytest

from smartcar_simulator.clock import ManualClock, SimClock, iso_time
from smartcar_simulator.errors import ApiError, OAuthError
from smartcar_simulator.faults import FaultBook, FaultSpec, path_matches
from smartcar_simulator.fleet import Fleet, Vehicle, VehiclePatch, seeded_fleet
from smartcar_simulator.latency import LatencyModel, parse_latency
from smartcar_simulator.limits import RateLimiter, RateLimitSettings
from smartcar_simulator.makes import CAR_MODELS, check_digit, is_valid_vin, make_of_vin
from smartcar_simulator.tokens import Grant, TokenStore


@pytest.fixture
def manual() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fleet(manual: ManualClock) -> Fleet:
    return seeded_fleet(30, 11, SimClock(manual))


def of(fleet: Fleet, powertrain: str) -> Vehicle:
    return next(vehicle for vehicle in fleet.vehicles.values() if vehicle.powertrain == powertrain)


def refused(call: object, *args: object) -> tuple[str, str | None]:
    with pytest.raises(ApiError) as raised:
        call(*args)  # type: ignore[operator]
    return raised.value.type, raised.value.code


def test_the_same_seed_builds_the_same_fleet(manual: ManualClock) -> None:
    one, two = seeded_fleet(20, 5, SimClock(manual)), seeded_fleet(20, 5, SimClock(manual))
    other = seeded_fleet(20, 6, SimClock(manual))
    assert [(v.id, v.vin, v.make, v.year) for v in one.vehicles.values()] == [
        (v.id, v.vin, v.make, v.year) for v in two.vehicles.values()
    ]
    assert set(one.vehicles).isdisjoint(other.vehicles)
    assert {v.powertrain for v in seeded_fleet(60, 1, SimClock(manual)).vehicles.values()} == {
        "BEV",
        "PHEV",
        "ICE",
    }
    assert all(len(ids) == 2 for ids in one.users.values())


def test_vins_are_well_formed(fleet: Fleet) -> None:
    for vehicle in fleet.vehicles.values():
        assert is_valid_vin(vehicle.vin)
        assert vehicle.vin[8] == check_digit(vehicle.vin)
        assert make_of_vin(vehicle.vin) == vehicle.make
    assert check_digit("1M8GDM9AXKP042788") == "X"  # a published example VIN
    assert not is_valid_vin("1M8GDM9AXKP04278O")  # the letter O is never used


def test_a_charging_battery_fills_up_to_its_limit_and_stops(fleet: Fleet, manual: ManualClock) -> None:
    vehicle = of(fleet, "BEV")
    vehicle.patch(VehiclePatch(plugged_in=True, charging=False, soc=0.5, charge_limit=0.8), manual())
    vehicle.start_charge(manual())
    manual.tick(1800)
    vehicle = fleet.require(vehicle.id)
    assert vehicle.state.soc == pytest.approx(0.625)
    assert vehicle.updated_at["soc"] == manual()
    manual.tick(3600)
    vehicle = fleet.require(vehicle.id)
    assert (vehicle.state.soc, vehicle.state.charging) == (0.8, False)
    assert refused(vehicle.start_charge, manual()) == ("VEHICLE_STATE", "FULLY_CHARGED")


def test_unplugging_stops_charging(fleet: Fleet, manual: ManualClock) -> None:
    vehicle = of(fleet, "BEV")
    vehicle.patch(VehiclePatch(plugged_in=True, charging=True, soc=0.2, charge_limit=0.9), manual())
    changed = vehicle.patch(VehiclePatch(plugged_in=False), manual())
    assert changed == ["charging", "plugged_in"]
    assert refused(vehicle.start_charge, manual()) == ("VEHICLE_STATE", "CHARGING_PLUG_NOT_CONNECTED")
    assert refused(vehicle.stop_charge, manual()) == ("VEHICLE_STATE", "CHARGING_PLUG_NOT_CONNECTED")


@pytest.mark.parametrize(
    ("state", "command", "code"),
    [
        ({"doors_open": True}, "lock", "DOOR_OPEN"),
        ({"hood_open": True}, "lock", "HOOD_OPEN"),
        ({"trunk_open": True}, "lock", "TRUNK_OPEN"),
        ({"in_motion": True}, "lock", "IN_MOTION"),
        ({"in_motion": True}, "unlock", "IN_MOTION"),
        ({"asleep": True}, "unlock", "ASLEEP"),
        ({"online": False}, "lock", "UNREACHABLE"),
        ({"remote_access_disabled": True}, "lock", "REMOTE_ACCESS_DISABLED"),
        ({"low_battery": True}, "unlock", "LOW_BATTERY"),
        ({"plugged_in": True, "soc": 0.1, "charge_fault": True}, "start_charge", "CHARGE_FAULT"),
        ({"plugged_in": True, "soc": 0.1, "ignition_on": True}, "start_charge", "IGNITION_ON"),
        ({"plugged_in": True, "soc": 0.1, "charging": True}, "start_charge", "CHARGING_IN_PROGRESS"),
        ({"plugged_in": True, "charging": False}, "stop_charge", "NOT_CHARGING"),
    ],
)
def test_commands_are_refused_as_cars_refuse_them(
    fleet: Fleet, manual: ManualClock, state: dict[str, object], command: str, code: str
) -> None:
    vehicle = of(fleet, "BEV")
    vehicle.patch(VehiclePatch.model_validate({"charge_limit": 0.8, "charging": False, **state}), manual())
    assert refused(getattr(vehicle, command), manual()) == ("VEHICLE_STATE", code)


def test_electric_commands_on_a_petrol_car_are_not_capable(fleet: Fleet, manual: ManualClock) -> None:
    vehicle = of(fleet, "ICE")
    for command in (vehicle.start_charge, vehicle.stop_charge):
        assert refused(command, manual()) == ("COMPATIBILITY", "VEHICLE_NOT_CAPABLE")
    assert refused(vehicle.set_charge_limit, 0.8, manual()) == ("COMPATIBILITY", "VEHICLE_NOT_CAPABLE")


def test_command_arguments_are_validated(fleet: Fleet, manual: ManualClock) -> None:
    vehicle = of(fleet, "BEV")
    assert refused(vehicle.set_charge_limit, 0.3, manual()) == ("VALIDATION", "PARAMETER")
    assert refused(vehicle.set_charge_limit, "abc", manual()) == ("VALIDATION", "PARAMETER")
    assert refused(vehicle.send_destination, 95, 0, manual()) == ("VALIDATION", "PARAMETER")
    assert refused(vehicle.send_destination, None, 0, manual()) == ("VALIDATION", "PARAMETER")
    vehicle.set_charge_limit("0.9", manual())  # Node sends the limit as a string
    assert vehicle.state.charge_limit == 0.9


def test_connections_connect_and_disconnect(fleet: Fleet) -> None:
    vehicle = next(iter(fleet.vehicles.values()))
    assert fleet.is_connected(vehicle.user_id, vehicle.id)
    assert fleet.disconnect(vehicle_id=vehicle.id) == [(vehicle.user_id, vehicle.id)]
    assert not fleet.is_connected(vehicle.user_id, vehicle.id)
    fleet.connect(vehicle.user_id, [vehicle.id])
    assert fleet.is_connected(vehicle.user_id, vehicle.id)
    assert fleet.get("nope") is None


def test_the_clock_only_moves_forward(manual: ManualClock) -> None:
    clock = SimClock(manual)
    assert clock.advance(10) == manual() + 10
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    assert iso_time(1525418450.844) == "2018-05-04T07:20:50.844Z"


def test_latency_models() -> None:
    rng = random.Random(1)  # noqa: S311 - seeded dice for a test
    assert parse_latency(0.2) == LatencyModel(seconds=0.2)
    assert parse_latency("fixed:0.3").sample(rng) == 0.3
    uniform = parse_latency("uniform:0.1,0.2")
    assert all(0.1 <= uniform.sample(rng) <= 0.2 for _ in range(200))
    tail = parse_latency("longtail:0.2,2.0")
    samples = sorted(tail.sample(rng) for _ in range(20000))
    assert statistics.median(samples) == pytest.approx(0.2, rel=0.05)
    assert samples[int(0.99 * len(samples))] == pytest.approx(2.0, rel=0.15)
    for bad in ("uniform:0.5,0.1", "longtail:2,1", "gauss:1,2", "fixed:1,2"):
        with pytest.raises(ValueError, match=r"."):
            parse_latency(bad)
    assert LatencyModel().is_zero


def test_fault_matching() -> None:
    assert path_matches("charge", "/v2.0/vehicles/x/charge", "charge")
    assert not path_matches("charge", "/v2.0/vehicles/x/charge/limit", "charge/limit")
    assert path_matches("charge/*", "/v2.0/vehicles/x/charge/limit", "charge/limit")
    assert path_matches("oauth/token", "/oauth/token", None)
    assert path_matches("", "/v2.0/vehicles/x", "")
    book = FaultBook(random.Random(0))  # noqa: S311 - seeded dice
    once = book.add(FaultSpec(vehicle_id="a", path="odometer", count=1, kind="drop"))
    never = book.add(FaultSpec(probability=0.0, kind="drop"))
    assert book.match(method="GET", path="/v/b/odometer", sub_path="odometer", vehicle_id="b") is None
    assert book.match(method="GET", path="/v/a/odometer", sub_path="odometer", vehicle_id="a") is once
    assert book.match(method="GET", path="/v/a/odometer", sub_path="odometer", vehicle_id="a") is None
    assert [fault.id for fault in book.faults] == [never.id]
    with pytest.raises(ValueError, match="error"):
        FaultSpec(kind="error")
    with pytest.raises(ValueError, match="not both"):
        FaultSpec(kind="drop", count=1, probability=0.5)


def test_rate_limits(manual: ManualClock) -> None:
    limiter = RateLimiter(SimClock(manual))
    limiter.configure(RateLimitSettings.model_validate({"per_vehicle": {"limit": 2, "window_seconds": 10}}))
    limiter.take_vehicle("a")
    limiter.take_vehicle("a")
    limiter.take_vehicle("b")
    manual.tick(4)
    with pytest.raises(ApiError) as raised:
        limiter.take_vehicle("a")
    assert (raised.value.code, raised.value.headers()) == ("VEHICLE", {"retry-after": "6"})
    manual.tick(6)
    limiter.take_vehicle("a")
    limiter.configure(RateLimitSettings.model_validate({"app": {"bucket": 2, "refill_per_minute": 6}}))
    limiter.take_app()
    limiter.take_app()
    with pytest.raises(ApiError, match="SMARTCAR_API"):
        limiter.take_app()
    manual.tick(10)  # one token back
    limiter.take_app()


def test_tokens_expire_rotate_and_are_swept(manual: ManualClock) -> None:
    store = TokenStore(SimClock(manual), access_ttl=100, refresh_ttl=1000, refresh_grace=5, code_ttl=60)
    grant = Grant("u", ("v",), frozenset({"read_odometer"}))
    issued = store.issue(grant)
    assert store.access(issued["access_token"]) == grant
    rotated = store.refresh(issued["refresh_token"])
    manual.tick(6)
    with pytest.raises(OAuthError):
        store.refresh(issued["refresh_token"])
    manual.tick(95)
    assert store.access(issued["access_token"]) is None
    store.sweep()
    assert store.access(rotated["access_token"]) is None
    assert store.refresh(rotated["refresh_token"])["access_token"]
    assert "access" not in repr(store).split("(")[0]


def test_every_model_has_what_its_powertrain_needs() -> None:
    for model in CAR_MODELS:
        assert model.has_battery == (model.battery_kwh > 0)
        assert model.has_tank == (model.tank_liters > 0)
