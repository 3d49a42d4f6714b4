"""API v2 (and v1): `/user`, `/vehicles`, and everything under `/vehicles/{id}`: reads, commands, batch,
permissions, service history, disconnect, webhook subscribe/unsubscribe."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from smartcar_simulator.errors import ApiError, not_found, validation
from smartcar_simulator.fleet import Vehicle
from smartcar_simulator.gateway import Ctx, api, bearer, check_vehicle, fault_error, same
from smartcar_simulator.readings import READS, SERVICE_HISTORY_PERMISSION, service_history

ACTION_OK = {"status": "success", "message": "Successfully sent request to vehicle"}
MAX_PAGE = 50
DEFAULT_PAGE = 10
PERMISSIONS_PAGE = 25
BATCH_LIMIT = 50


def _int_param(ctx: Ctx, name: str, default: int, *, low: int = 0, high: int = 10_000) -> int:
    raw = ctx.request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation(f"{name} must be an integer", field=name) from None
    if not low <= value <= high:
        raise validation(f"{name} must be between {low} and {high}", field=name)
    return value


def paging(ctx: Ctx, items: list[Any], *, default: int = DEFAULT_PAGE) -> tuple[list[Any], dict[str, int]]:
    limit = _int_param(ctx, "limit", default, low=1, high=MAX_PAGE)
    offset = _int_param(ctx, "offset", 0)
    return items[offset : offset + limit], {"count": len(items), "offset": offset}


async def user(ctx: Ctx) -> Response:
    return ctx.json({"id": ctx.token.user_id})


async def vehicles(ctx: Ctx) -> Response:
    grant = ctx.token
    connected = [vid for vid in grant.vehicle_ids if ctx.sim.fleet.is_connected(grant.user_id, vid)]
    page, page_info = paging(ctx, connected)
    return ctx.json({"vehicles": page, "paging": page_info})


def _read_body(ctx: Ctx, vehicle: Vehicle, sub_path: str) -> tuple[Any, tuple[str, ...]]:
    """The body of a GET of a vehicle path and the state fields its data age comes from."""
    if sub_path == "permissions":
        page, page_info = paging(ctx, sorted(ctx.token.scope), default=PERMISSIONS_PAGE)
        return {"permissions": page, "paging": page_info}, ()
    if sub_path == "service/history":
        ctx.require(SERVICE_HISTORY_PERMISSION)
        start, end = _date(ctx, "start_date"), _date(ctx, "end_date")
        vehicle.check_reachable()
        return service_history(vehicle, ctx.imperial, start, end, ctx.sim.clock.now()), ("odometer_km",)
    read = READS.get(sub_path)
    if read is None:
        raise not_found()
    ctx.require(read.permission)
    if sub_path:
        vehicle.check_reachable()
    return read.render(vehicle, ctx.imperial), read.fields


def _read(ctx: Ctx, vehicle: Vehicle, sub_path: str) -> Response:
    body, fields = _read_body(ctx, vehicle, sub_path)
    return ctx.json(body, vehicle=vehicle, fields=fields)


def _date(ctx: Ctx, name: str) -> datetime | None:
    raw = ctx.request.query_params.get(name) or ctx.request.query_params.get(name.replace("_d", "D"))
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)  # Python 3.11 reads a trailing Z
    except ValueError:
        raise validation(f"{name} must be an ISO-8601 date", field=name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _action(body: Any, allowed: tuple[str, ...]) -> str:
    action = body.get("action") if isinstance(body, dict) else None
    if action not in allowed:
        raise validation(f"action must be one of {', '.join(allowed)}", code=None, field="action")
    return str(action)


async def _command(ctx: Ctx, vehicle: Vehicle, sub_path: str) -> Response:
    body = ctx.body()
    now = ctx.sim.clock.now()
    if sub_path == "security":
        ctx.require("control_security")
        action = _action(body, ("LOCK", "UNLOCK"))
        (vehicle.lock if action == "LOCK" else vehicle.unlock)(now)
    elif sub_path == "charge":
        ctx.require("control_charge")
        action = _action(body, ("START", "STOP"))
        (vehicle.start_charge if action == "START" else vehicle.stop_charge)(now)
    elif sub_path == "charge/limit":
        ctx.require("control_charge")
        vehicle.set_charge_limit(body.get("limit") if isinstance(body, dict) else None, now)
    elif sub_path == "navigation/destination":
        ctx.require("control_navigation")
        fields = body if isinstance(body, dict) else {}
        vehicle.send_destination(fields.get("latitude"), fields.get("longitude"), now)
    else:
        raise not_found()
    ctx.sim.changed(vehicle, sub_path)
    return ctx.json(ACTION_OK)


async def _batch(ctx: Ctx, vehicle: Vehicle) -> Response:
    body = ctx.body()
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests or len(requests) > BATCH_LIMIT:
        raise validation(
            f"requests must be a list of 1 to {BATCH_LIMIT} {{path}} objects", code=None, field="requests"
        )
    answers = []
    for item in requests:
        raw_path = item.get("path") if isinstance(item, dict) else None
        if not isinstance(raw_path, str):
            raise validation("each request needs a path", code=None, field="requests")
        answers.append(_batch_item(ctx, vehicle, raw_path.strip("/")))
    return ctx.json({"responses": answers})


def _batch_item(ctx: Ctx, vehicle: Vehicle, sub_path: str) -> dict[str, Any]:
    """One answer of a batch, with its own code and headers; error faults aimed at the path apply."""
    path = "/" + sub_path
    fault = ctx.sim.faults.match(
        method="GET",
        path=f"/vehicles/{vehicle.id}{path}",
        sub_path=sub_path,
        vehicle_id=vehicle.id,
        kinds=frozenset({"error"}),
    )
    try:
        if fault is not None and fault.spec.error is not None:
            raise fault_error(fault.spec.error)
        body, fields = _read_body(ctx, vehicle, sub_path)
    except ApiError as error:
        headers = {"sc-unit-system": ctx.unit_system, **error.headers()}
        return {"path": path, "code": error.status, "headers": headers, "body": error.v2_body(ctx.request_id)}
    return {"path": path, "code": 200, "headers": ctx.read_headers(vehicle, fields), "body": body}


async def _subscribe(ctx: Ctx, vehicle: Vehicle, webhook_id: str) -> Response:
    ctx.sim.subscribe(webhook_id, vehicle)
    return ctx.json({"webhookId": webhook_id, "vehicleId": vehicle.id})


async def _unsubscribe(ctx: Ctx, webhook_id: str) -> Response:
    token = bearer(ctx.request)
    if not token or not any(same(token, amt) for amt in ctx.sim.settings.amts):
        raise ApiError(
            "AUTHENTICATION", None, description="Unsubscribing needs the application management token."
        )
    vehicle = ctx.sim.fleet.require(ctx.vehicle_id or "")
    ctx.sim.unsubscribe(webhook_id, vehicle.id)
    return ctx.json({"status": "success"})


async def vehicle_endpoint(ctx: Ctx) -> Response:
    """Every `/v{version}/vehicles/{id}[/...]` call, dispatched on method and vehicle-relative path."""
    method, sub_path = ctx.request.method, ctx.sub_path or ""
    if method == "DELETE" and sub_path.startswith("webhooks/"):
        return await _unsubscribe(ctx, sub_path.removeprefix("webhooks/"))
    vehicle = check_vehicle(ctx)
    if method == "GET":
        return _read(ctx, vehicle, sub_path)
    if method == "POST" and sub_path == "batch":
        return await _batch(ctx, vehicle)
    if method == "POST" and sub_path.startswith("webhooks/") and sub_path.count("/") == 1:
        return await _subscribe(ctx, vehicle, sub_path.removeprefix("webhooks/"))
    if method == "POST":
        return await _command(ctx, vehicle, sub_path)
    if method == "DELETE" and sub_path == "application":
        ctx.sim.fleet.disconnect(user_id=ctx.token.user_id, vehicle_id=vehicle.id)
        return ctx.json({"status": "success"})
    raise not_found()


ROUTES = [
    Route("/v{version}/user", api(user), methods=["GET"]),
    Route("/v{version}/vehicles", api(vehicles), methods=["GET"]),
    Route("/v{version}/vehicles/{vehicle_id}", api(vehicle_endpoint, vehicle=True), methods=["GET"]),
    Route(
        "/v{version}/vehicles/{vehicle_id}/{rest:path}",
        api(vehicle_endpoint, vehicle=True),
        methods=["GET", "POST", "DELETE"],
    ),
]
