"""The Management API: list connections (newest first, cursor paging) and delete them by user or vehicle.

Authorised by `Basic base64("default:<AMT>")`. A deleted connection's tokens stop working for that
vehicle (AUTHENTICATION), as a disconnect does.
"""

from __future__ import annotations

import base64
import binascii

from starlette.responses import Response
from starlette.routing import Route

from smartcar_simulator.clock import iso_time
from smartcar_simulator.errors import validation
from smartcar_simulator.gateway import Ctx, api

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{index}".encode()).decode().rstrip("=")


def _offset(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    kind, _, number = text.partition(":")
    if kind != "offset" or not number.isdigit():
        raise validation("cursor is not one this API returned", field="cursor")
    return int(number)


def _limit(ctx: Ctx) -> int:
    raw = ctx.request.query_params.get("limit")
    if not raw:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise validation(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return int(raw)


async def get_connections(ctx: Ctx) -> Response:
    query = ctx.request.query_params
    user_id, vehicle_id = query.get("user_id"), query.get("vehicle_id")
    connections = sorted(
        (
            (connected_at, user, vehicle)
            for (user, vehicle), connected_at in ctx.sim.fleet.connections.items()
            if (not user_id or user == user_id) and (not vehicle_id or vehicle == vehicle_id)
        ),
        key=lambda item: (-item[0], item[2]),
    )
    start = _offset(query["cursor"]) if query.get("cursor") else 0
    limit = _limit(ctx)
    page = connections[start : start + limit]
    more = start + limit < len(connections)
    body = {
        "connections": [
            {"vehicleId": vehicle, "userId": user, "connectedAt": iso_time(connected_at)}
            for connected_at, user, vehicle in page
        ],
        "paging": {"cursor": _cursor(start + limit) if more else None},
    }
    return ctx.json(body)


async def delete_connections(ctx: Ctx) -> Response:
    query = ctx.request.query_params
    user_id, vehicle_id = query.get("user_id"), query.get("vehicle_id")
    if bool(user_id) == bool(vehicle_id):
        raise validation("Filter must contain exactly one of user_id or vehicle_id", field="user_id")
    gone = ctx.sim.fleet.disconnect(user_id=user_id or None, vehicle_id=vehicle_id or None)
    return ctx.json({"connections": [{"vehicleId": vehicle, "userId": user} for user, vehicle in gone]})


ROUTES = [
    Route("/v{version}/management/connections", api(get_connections, auth="management"), methods=["GET"]),
    Route(
        "/v{version}/management/connections", api(delete_connections, auth="management"), methods=["DELETE"]
    ),
]
