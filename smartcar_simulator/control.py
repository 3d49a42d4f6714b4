"""The control endpoints under `/_sim/`: look at and steer the simulator (JSON in and out).

Fleet state, tokens without the OAuth dance, faults, latency and where in it a call takes effect, rate
limits, the clock, the record of API calls, and (in `control_webhooks`) webhook targets, emission and
deliveries. `SimulatorControl`, the typed client for all of them, is importable from here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smartcar_simulator.control_client import SimulatorControl
from smartcar_simulator.faults import FaultSpec, path_matches
from smartcar_simulator.fleet import Vehicle, VehiclePatch
from smartcar_simulator.gateway import bearer, read_body, same
from smartcar_simulator.latency import ApplyAt, LatencyModel
from smartcar_simulator.limits import RateLimitSettings
from smartcar_simulator.state import Simulator
from smartcar_simulator.tokens import ALL_SCOPES, Grant

__all__ = ["ROUTES", "ControlError", "SimulatorControl", "control", "read_model", "vehicle_or_404"]

M = TypeVar("M", bound=BaseModel)
MAX_CONTROL_BODY = 1_048_576


class ControlError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vehicle_ids: list[str] | None = None
    user_id: str | None = None
    scope: list[str] | None = None
    expires_in: float | None = Field(None, gt=0)


class ApplyAtChoice(BaseModel):
    """The body of `PUT /_sim/apply-at`."""

    model_config = ConfigDict(extra="forbid")

    apply_at: ApplyAt


class ClockAdvance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance: float = Field(ge=0)


async def read_model(request: Request, model: type[M]) -> M:
    raw = await read_body(request, MAX_CONTROL_BODY)
    if raw is None:
        raise ControlError(413, f"body larger than {MAX_CONTROL_BODY} bytes")
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        detail = json.loads(error.json(include_input=False, include_url=False))
        raise ControlError(400, f"invalid {model.__name__}", detail) from None


def control(
    handler: Callable[[Request, Simulator], Awaitable[Any]],
) -> Callable[[Request], Awaitable[Response]]:
    """A control endpoint: optional bearer check, JSON answer, errors as `{"error", "detail"}`."""

    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        expected = sim.settings.control_token
        if expected is not None:
            given = bearer(request)
            if given is None or not same(given, expected.get_secret_value()):
                return JSONResponse({"error": "control token required"}, 401)
        try:
            result = await handler(request, sim)
        except ControlError as error:
            return JSONResponse({"error": error.message, "detail": error.detail}, error.status)
        return result if isinstance(result, Response) else JSONResponse(result)

    endpoint.__name__ = handler.__name__
    return endpoint


def vehicle_or_404(sim: Simulator, vehicle_id: str) -> Vehicle:
    vehicle = sim.fleet.get(vehicle_id)
    if vehicle is None:
        raise ControlError(404, f"no vehicle {vehicle_id}")
    return vehicle


async def health(_request: Request, sim: Simulator) -> dict[str, Any]:
    return {"status": "ok", "vehicles": len(sim.fleet.vehicles), "time": sim.clock.now()}


async def list_vehicles(_request: Request, sim: Simulator) -> dict[str, Any]:
    return {"vehicles": [sim.fleet.require(vid).as_dict() for vid in sim.fleet.vehicles]}


async def get_vehicle(request: Request, sim: Simulator) -> dict[str, Any]:
    return vehicle_or_404(sim, request.path_params["vehicle_id"]).as_dict()


async def patch_vehicle(request: Request, sim: Simulator) -> dict[str, Any]:
    vehicle = vehicle_or_404(sim, request.path_params["vehicle_id"])
    changes = await read_model(request, VehiclePatch)
    changed = vehicle.patch(changes, sim.clock.now())
    if changed:
        sim.changed(vehicle, "patch:" + ",".join(changed))
    return {**vehicle.as_dict(), "changed": changed}


async def list_users(_request: Request, sim: Simulator) -> dict[str, Any]:
    return {"users": [{"id": user_id, "vehicle_ids": ids} for user_id, ids in sim.fleet.users.items()]}


async def mint_tokens(request: Request, sim: Simulator) -> dict[str, Any]:
    """Tokens for some vehicles (of one user) or all of a user's vehicles, without the OAuth dance."""
    ask = await read_model(request, TokenRequest)
    fleet = sim.fleet
    if ask.vehicle_ids:
        unknown = [vid for vid in ask.vehicle_ids if vid not in fleet.vehicles]
        if unknown:
            raise ControlError(404, "unknown vehicles", unknown)
        owners = {fleet.vehicles[vid].user_id for vid in ask.vehicle_ids}
        if len(owners) > 1 or (ask.user_id is not None and owners != {ask.user_id}):
            raise ControlError(400, "a token covers vehicles of one user")
        user_id, vehicle_ids = owners.pop(), list(dict.fromkeys(ask.vehicle_ids))
    elif ask.user_id is not None:
        if ask.user_id not in fleet.users:
            raise ControlError(404, f"no user {ask.user_id}")
        user_id, vehicle_ids = ask.user_id, list(fleet.users[ask.user_id])
    else:
        raise ControlError(400, "give vehicle_ids or user_id")
    scope = ask.scope if ask.scope is not None else list(ALL_SCOPES)
    fleet.connect(user_id, vehicle_ids)
    tokens = sim.tokens.issue(Grant(user_id, tuple(vehicle_ids), frozenset(scope)), expires_in=ask.expires_in)
    return {**tokens, "user_id": user_id, "vehicle_ids": vehicle_ids, "scope": scope}


async def add_fault(request: Request, sim: Simulator) -> dict[str, Any]:
    return sim.faults.add(await read_model(request, FaultSpec)).as_dict()


async def list_faults(_request: Request, sim: Simulator) -> dict[str, Any]:
    return {"faults": [fault.as_dict() for fault in sim.faults.faults]}


async def clear_faults(_request: Request, sim: Simulator) -> dict[str, Any]:
    return {"cleared": sim.faults.clear()}


async def delete_fault(request: Request, sim: Simulator) -> dict[str, Any]:
    if not sim.faults.remove(request.path_params["fault_id"]):
        raise ControlError(404, "no such fault")
    return {"deleted": request.path_params["fault_id"]}


async def put_latency(request: Request, sim: Simulator) -> dict[str, Any]:
    sim.latency = await read_model(request, LatencyModel)
    return sim.latency.model_dump()


async def get_latency(_request: Request, sim: Simulator) -> dict[str, Any]:
    return sim.latency.model_dump()


async def put_apply_at(request: Request, sim: Simulator) -> dict[str, Any]:
    """When within its latency a call takes effect from now on: `start`, `middle` or `end`."""
    sim.apply_at = (await read_model(request, ApplyAtChoice)).apply_at
    return {"apply_at": sim.apply_at}


async def get_apply_at(_request: Request, sim: Simulator) -> dict[str, Any]:
    return {"apply_at": sim.apply_at}


async def put_rate_limits(request: Request, sim: Simulator) -> dict[str, Any]:
    sim.limits.configure(await read_model(request, RateLimitSettings))
    return sim.limits.as_dict()


async def get_rate_limits(_request: Request, sim: Simulator) -> dict[str, Any]:
    return sim.limits.as_dict()


async def list_requests(request: Request, sim: Simulator) -> dict[str, Any]:
    query = request.query_params
    vehicle_id, path, method = query.get("vehicle_id"), query.get("path"), query.get("method")
    try:
        since = float(query["since"]) if query.get("since") else None
    except ValueError:
        raise ControlError(400, "since must be epoch seconds (a number)") from None
    found = [
        entry.as_dict()
        for entry in list(sim.requests)
        if (vehicle_id is None or entry.vehicle_id == vehicle_id)
        and (method is None or entry.method == method.upper())
        and (path is None or path_matches(path, entry.path, entry.sub_path))
        and (since is None or entry.time >= since)
    ]
    return {"requests": found, "count": len(found)}


async def clear_requests(_request: Request, sim: Simulator) -> dict[str, Any]:
    count = len(sim.requests)
    sim.requests.clear()
    return {"cleared": count}


async def get_clock(_request: Request, sim: Simulator) -> dict[str, Any]:
    return {"now": sim.clock.now(), "offset": sim.clock.offset}


async def advance_clock(request: Request, sim: Simulator) -> dict[str, Any]:
    ask = await read_model(request, ClockAdvance)
    sim.clock.advance(ask.advance)
    for vehicle in sim.fleet.advance_all():
        sim.changed(vehicle, "clock")
    return {"now": sim.clock.now(), "offset": sim.clock.offset}


async def reset(_request: Request, sim: Simulator) -> dict[str, Any]:
    sim.reset()
    return {"status": "reset", "vehicles": len(sim.fleet.vehicles)}


ROUTES = [
    Route("/_sim/health", control(health), methods=["GET"]),
    Route("/_sim/vehicles", control(list_vehicles), methods=["GET"]),
    Route("/_sim/vehicles/{vehicle_id}", control(get_vehicle), methods=["GET"]),
    Route("/_sim/vehicles/{vehicle_id}", control(patch_vehicle), methods=["PATCH"]),
    Route("/_sim/users", control(list_users), methods=["GET"]),
    Route("/_sim/tokens", control(mint_tokens), methods=["POST"]),
    Route("/_sim/faults", control(add_fault), methods=["POST"]),
    Route("/_sim/faults", control(list_faults), methods=["GET"]),
    Route("/_sim/faults", control(clear_faults), methods=["DELETE"]),
    Route("/_sim/faults/{fault_id}", control(delete_fault), methods=["DELETE"]),
    Route("/_sim/latency", control(put_latency), methods=["PUT"]),
    Route("/_sim/latency", control(get_latency), methods=["GET"]),
    Route("/_sim/apply-at", control(put_apply_at), methods=["PUT"]),
    Route("/_sim/apply-at", control(get_apply_at), methods=["GET"]),
    Route("/_sim/rate-limits", control(put_rate_limits), methods=["PUT"]),
    Route("/_sim/rate-limits", control(get_rate_limits), methods=["GET"]),
    Route("/_sim/requests", control(list_requests), methods=["GET"]),
    Route("/_sim/requests", control(clear_requests), methods=["DELETE"]),
    Route("/_sim/clock", control(get_clock), methods=["GET"]),
    Route("/_sim/clock", control(advance_clock), methods=["POST"]),
    Route("/_sim/reset", control(reset), methods=["POST"]),
]
