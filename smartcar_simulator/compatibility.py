"""`/compatibility` (v1 and v2 shapes) and `/compatibility/matrix`, answered from the makes table.

A VIN's make comes from its manufacturer code; a fleet VIN's exact model decides what it can do (no
battery reads on a petrol car, no fuel reads on a BEV). Authorised by the client's Basic credentials.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from smartcar_simulator.errors import validation
from smartcar_simulator.gateway import Ctx, api
from smartcar_simulator.makes import CAR_MODELS, COUNTRIES, REGIONS, CarModel, is_valid_vin, make_of_vin

# permission -> the endpoints it opens, and what the vehicle needs for them
ENDPOINTS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "read_vehicle_info": (("GET /",), None),
    "read_vin": (("GET /vin",), None),
    "read_odometer": (("GET /odometer",), None),
    "read_location": (("GET /location",), None),
    "read_battery": (("GET /battery", "GET /battery/capacity"), "battery"),
    "read_charge": (("GET /charge", "GET /charge/limit"), "battery"),
    "read_fuel": (("GET /fuel",), "tank"),
    "read_tires": (("GET /tires/pressure",), None),
    "read_engine_oil": (("GET /engine/oil",), "tank"),
    "read_security": (("GET /security",), None),
    "control_security": (("POST /security",), None),
    "control_charge": (("POST /charge", "POST /charge/limit"), "battery"),
    "control_navigation": (("POST /navigation/destination",), None),
    "read_service_history": (("GET /service/history",), None),
    "read_diagnostics": (("GET /diagnostics/system_status", "GET /diagnostics/dtcs"), None),
}
TEST_LEVELS = ("compatible", "phev", "incompatible", "fuel", "dinosaur", "bev")
_LEVEL_POWERTRAIN = {"phev": "PHEV", "bev": "BEV", "fuel": "ICE", "dinosaur": "ICE"}


def _capable(model: CarModel | None, needs: str | None) -> bool:
    if model is None:
        return False
    return needs is None or (model.has_battery if needs == "battery" else model.has_tank)


def _model_for(ctx: Ctx, vin: str, level: str | None) -> CarModel | None:
    if level is not None:
        if level == "incompatible":
            return None
        powertrain = _LEVEL_POWERTRAIN.get(level, "BEV")
        return next(model for model in CAR_MODELS if model.powertrain == powertrain)
    vehicle = ctx.sim.fleet.by_vin.get(vin)
    if vehicle is not None:
        return vehicle.spec
    make = make_of_vin(vin)
    return next((model for model in CAR_MODELS if model.make == make), None)


async def compatibility(ctx: Ctx) -> Response:
    query = ctx.request.query_params
    vin = (query.get("vin") or "").upper()
    scope = (query.get("scope") or "").split()
    if not is_valid_vin(vin):
        raise validation("vin must be a 17-character VIN", field="vin")
    if not scope:
        raise validation("scope must name at least one permission", field="scope")
    unknown = [permission for permission in scope if permission not in ENDPOINTS]
    if unknown:
        raise validation(f"unknown permissions: {' '.join(unknown)}", field="scope")
    level = query.get("test_mode_compatibility_level")
    if query.get("mode") == "test" and level not in TEST_LEVELS:
        raise validation(
            f"test_mode_compatibility_level must be one of {', '.join(TEST_LEVELS)}",
            code=None,
            field="test_mode_compatibility_level",
        )
    model = _model_for(ctx, vin, level)
    make_ok = model is not None and query.get("country", "US").upper() in COUNTRIES
    capabilities = []
    for permission in scope:
        endpoints, needs = ENDPOINTS[permission]
        capable = make_ok and _capable(model, needs)
        reason = None if capable else ("VEHICLE_NOT_CAPABLE" if make_ok else "SMARTCAR_NOT_CAPABLE")
        capabilities += [
            {"permission": permission, "endpoint": endpoint, "capable": capable, "reason": reason}
            for endpoint in endpoints
        ]
    compatible = make_ok and any(item["capable"] for item in capabilities)
    if ctx.version.startswith("1."):
        return ctx.json({"compatible": compatible})
    reason = None if compatible else ("VEHICLE_NOT_COMPATIBLE" if make_ok else "MAKE_NOT_COMPATIBLE")
    return ctx.json({"compatible": compatible, "reason": reason, "capabilities": capabilities})


def _entry(model: CarModel) -> dict[str, Any]:
    permissions = [permission for permission, (_, needs) in ENDPOINTS.items() if _capable(model, needs)]
    endpoints = [endpoint for permission in permissions for endpoint in ENDPOINTS[permission][0]]
    return {
        "model": model.model,
        "startYear": model.first_year,
        "endYear": model.last_year,
        "type": model.powertrain,
        "endpoints": endpoints,
        "permissions": permissions,
    }


async def matrix(ctx: Ctx) -> Response:
    query = ctx.request.query_params
    region = (query.get("region") or "").upper()
    if region not in REGIONS:
        raise validation(f"region must be one of {', '.join(REGIONS)}", field="region")
    makes = {make.upper() for make in (query.get("make") or "").split()}
    wanted_type = (query.get("type") or "").upper()
    scope = set((query.get("scope") or "").split())
    body: dict[str, list[dict[str, Any]]] = {}
    for model in CAR_MODELS:
        if (makes and model.make not in makes) or (wanted_type and model.powertrain != wanted_type):
            continue
        entry = _entry(model)
        if scope and not scope.issubset(entry["permissions"]):
            continue
        body.setdefault(model.make, []).append(entry)
    return ctx.json(body)


ROUTES = [
    Route("/v{version}/compatibility", api(compatibility, auth="client"), methods=["GET"]),
    Route("/v{version}/compatibility/matrix", api(matrix, auth="client"), methods=["GET"]),
]
