"""The cars the simulator knows: makes, models, years, powertrains, batteries and tanks, and their VINs.

The same table seeds the fleet, answers `/compatibility` (a VIN's manufacturer code names its make) and
builds `/compatibility/matrix`. VINs are well formed: 17 characters, a valid check digit, the model
year in position 10.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Powertrain = Literal["BEV", "PHEV", "ICE"]


@dataclass(frozen=True, slots=True)
class CarModel:
    make: str
    model: str
    powertrain: Powertrain
    first_year: int
    last_year: int
    wmi: str  # world manufacturer identifier: the VIN's first three characters
    battery_kwh: float = 0.0
    electric_range_km: float = 0.0
    tank_liters: float = 0.0
    fuel_range_km: float = 0.0

    @property
    def has_battery(self) -> bool:
        return self.powertrain in ("BEV", "PHEV")

    @property
    def has_tank(self) -> bool:
        return self.powertrain in ("PHEV", "ICE")


CAR_MODELS: tuple[CarModel, ...] = (
    CarModel("TESLA", "Model 3", "BEV", 2018, 2024, "5YJ", battery_kwh=75.0, electric_range_km=500),
    CarModel("TESLA", "Model Y", "BEV", 2020, 2024, "7SA", battery_kwh=75.0, electric_range_km=480),
    CarModel("NISSAN", "LEAF", "BEV", 2018, 2023, "1N4", battery_kwh=40.0, electric_range_km=240),
    CarModel("CHEVROLET", "Bolt EV", "BEV", 2017, 2023, "1G1", battery_kwh=65.0, electric_range_km=417),
    CarModel("FORD", "Mustang Mach-E", "BEV", 2021, 2024, "3FM", battery_kwh=88.0, electric_range_km=440),
    CarModel("VOLKSWAGEN", "ID.4", "BEV", 2021, 2024, "WVG", battery_kwh=77.0, electric_range_km=400),
    CarModel("HYUNDAI", "IONIQ 5", "BEV", 2022, 2024, "KM8", battery_kwh=77.4, electric_range_km=488),
    CarModel("KIA", "EV6", "BEV", 2022, 2024, "KND", battery_kwh=77.4, electric_range_km=499),
    CarModel("BMW", "i4", "BEV", 2022, 2024, "WBY", battery_kwh=81.5, electric_range_km=480),
    CarModel("VOLVO", "XC40 Recharge", "BEV", 2021, 2024, "YV4", battery_kwh=78.0, electric_range_km=400),
    CarModel("RIVIAN", "R1T", "BEV", 2022, 2024, "7FC", battery_kwh=135.0, electric_range_km=505),
    CarModel(
        "TOYOTA",
        "RAV4 Prime",
        "PHEV",
        2021,
        2024,
        "JTM",
        battery_kwh=18.1,
        electric_range_km=68,
        tank_liters=55,
        fuel_range_km=900,
    ),
    CarModel(
        "BMW",
        "X5 xDrive45e",
        "PHEV",
        2021,
        2023,
        "5UX",
        battery_kwh=24.0,
        electric_range_km=50,
        tank_liters=69,
        fuel_range_km=800,
    ),
    CarModel(
        "FORD",
        "Escape",
        "PHEV",
        2020,
        2023,
        "1FM",
        battery_kwh=14.4,
        electric_range_km=60,
        tank_liters=42,
        fuel_range_km=650,
    ),
    CarModel("FORD", "F-150", "ICE", 2015, 2024, "1FT", tank_liters=98, fuel_range_km=1000),
    CarModel("TOYOTA", "Camry", "ICE", 2018, 2024, "4T1", tank_liters=60, fuel_range_km=950),
    CarModel("HONDA", "Civic", "ICE", 2016, 2024, "2HG", tank_liters=47, fuel_range_km=800),
)

MAKES: tuple[str, ...] = tuple(sorted({model.make for model in CAR_MODELS}))
MAKE_BY_WMI: dict[str, str] = {model.wmi: model.make for model in CAR_MODELS}
REGIONS = ("US", "CA", "EUROPE")
COUNTRIES = frozenset({"US", "CA", "GB", "DE", "FR", "NL", "NO", "SE", "ES", "IT", "BE", "AT", "CH", "DK"})

_VIN_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O or Q
_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"  # 1980 = A, repeating every 30 years
_TRANSLITERATION = {
    **{str(digit): digit for digit in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
VIN_LENGTH = 17


def check_digit(vin: str) -> str:
    """The ninth character of a North American VIN, computed over the other sixteen."""
    total = sum(_TRANSLITERATION[char] * weight for char, weight in zip(vin, _WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)  # noqa: PLR2004 - the check digit's rule


def make_vin(model: CarModel, year: int, rng: random.Random) -> str:
    descriptor = "".join(rng.choice(_VIN_CHARS) for _ in range(5))
    plant = rng.choice(_VIN_CHARS)
    serial = f"{rng.randrange(1_000_000):06d}"
    draft = f"{model.wmi}{descriptor}0{_YEAR_CODES[(year - 1980) % 30]}{plant}{serial}"
    return draft[:8] + check_digit(draft) + draft[9:]


def is_valid_vin(vin: str) -> bool:
    return len(vin) == VIN_LENGTH and all(char in _VIN_CHARS for char in vin)


def make_of_vin(vin: str) -> str | None:
    return MAKE_BY_WMI.get(vin[:3].upper())
