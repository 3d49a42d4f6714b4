"""API v3 (JSON:API bodies): `/v3/vehicles/{id}`, `/signals`, `/signals/{code}`.

v3 serves stored signal values (Smartcar refreshes them on its own schedule), so an asleep or
unreachable car still answers; a signal outside the token's permissions carries a PERMISSION error.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from smartcar_simulator.errors import ApiError, not_capable
from smartcar_simulator.fleet import Vehicle
from smartcar_simulator.gateway import Ctx, api, check_vehicle
from smartcar_simulator.signals import BY_CODE, SIGNALS, SignalReading, read_signal, resource


def _vehicle_resource(vehicle: Vehicle) -> dict[str, object]:
    return {
        "id": vehicle.id,
        "type": "vehicle",
        "attributes": {
            "make": vehicle.make,
            "model": vehicle.model,
            "year": vehicle.year,
            "powertrainType": vehicle.powertrain,
            "mode": "simulated",
        },
        "links": {"self": f"/vehicles/{vehicle.id}"},
    }


async def get_vehicle(ctx: Ctx) -> Response:
    ctx.require("read_vehicle_info")
    return ctx.json(_vehicle_resource(check_vehicle(ctx)))


async def get_signals(ctx: Ctx) -> Response:
    vehicle = check_vehicle(ctx)
    now_ms = int(ctx.sim.clock.now() * 1000)
    scope = ctx.grant.scope if ctx.grant is not None else frozenset()
    items = []
    for spec in SIGNALS:
        reading = read_signal(spec, vehicle, ctx.imperial)
        if spec.permission not in scope:
            reading = SignalReading(
                spec.code, spec.name, spec.group, None, {"type": "PERMISSION", "code": None}, 0
            )
        items.append(resource(reading, vehicle.id, now_ms))
    self_link = f"/vehicles/{vehicle.id}/signals"
    body = {
        "data": items,
        "meta": {"page": 1, "pageSize": len(items), "totalCount": len(items)},
        "links": {"self": self_link, "first": self_link, "previous": None, "next": None, "last": self_link},
        "included": {"vehicle": _vehicle_resource(vehicle)},
    }
    return ctx.json(body)


async def get_signal(ctx: Ctx) -> Response:
    vehicle = check_vehicle(ctx)
    code = (ctx.sub_path or "").removeprefix("signals/")
    spec = BY_CODE.get(code)
    if spec is None:
        raise ApiError("RESOURCE_NOT_FOUND", "PATH", description=f"Unknown signal {code!r}.")
    ctx.require(spec.permission)
    reading = read_signal(spec, vehicle, ctx.imperial)
    if reading.error is not None:
        raise not_capable(f"This vehicle does not provide {code}.")
    return ctx.json(resource(reading, vehicle.id, int(ctx.sim.clock.now() * 1000)))


async def _dispatch(ctx: Ctx) -> Response:
    sub_path = ctx.sub_path or ""
    if sub_path == "signals":
        return await get_signals(ctx)
    if sub_path.startswith("signals/") and sub_path.count("/") == 1:
        return await get_signal(ctx)
    raise ApiError("RESOURCE_NOT_FOUND", "PATH")


ROUTES = [
    Route("/v3/vehicles/{vehicle_id}", api(get_vehicle, family="v3", vehicle=True), methods=["GET"]),
    Route(
        "/v3/vehicles/{vehicle_id}/{rest:path}",
        api(_dispatch, family="v3", vehicle=True),
        methods=["GET"],
    ),
]
