"""OAuth: Connect's authorize page (approves at once and redirects with a code) and the token endpoint.

Connect picks the user who "logs in": the one whose vehicle has `single_select_vin`, else one with a
vehicle of `make`, else the user named by `user` (the same name always maps to the same fleet user),
else the next user in turn. `single_select` keeps one vehicle.
"""

from __future__ import annotations

import zlib
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from smartcar_simulator.errors import OAuthError
from smartcar_simulator.gateway import Ctx, api, basic, dumps, is_client, same
from smartcar_simulator.state import Simulator
from smartcar_simulator.tokens import ALL_SCOPES, Grant

MAX_FORM_BYTES = 16_384
MODES = frozenset({"live", "test", "simulated"})
CONNECT_ERRORS = frozenset(
    {
        "access_denied",
        "invalid_subscription",
        "configuration_error",
        "no_vehicles",
        "vehicle_incompatible",
        "server_error",
    }
)


def _page(status: int, message: str) -> HTMLResponse:
    body = f"<!doctype html><title>Smartcar Connect (simulated)</title><h1>Connect error</h1><p>{message}</p>"
    return HTMLResponse(body, status)


def _redirect(redirect_uri: str, params: dict[str, str]) -> RedirectResponse:
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return RedirectResponse(redirect_uri + separator + urlencode(params), status_code=302)


def choose_vehicles(
    sim: Simulator, *, vin: str | None, make: str | None, user: str | None
) -> tuple[str, list[str]] | None:
    """The user who approves and the vehicles shared, or None when no vehicle fits."""
    fleet = sim.fleet
    if vin:
        vehicle = fleet.by_vin.get(vin.upper())
        return (vehicle.user_id, [vehicle.id]) if vehicle else None
    candidates = [
        (user_id, [vid for vid in ids if not make or fleet.vehicles[vid].make == make.upper()])
        for user_id, ids in fleet.users.items()
    ]
    candidates = [(user_id, ids) for user_id, ids in candidates if ids]
    if not candidates:
        return None
    if user:
        return candidates[zlib.crc32(user.encode()) % len(candidates)]
    sim.connect_counter += 1
    return candidates[(sim.connect_counter - 1) % len(candidates)]


def _invalid(
    sim: Simulator, response_type: str | None, client_id: str | None, redirect_uri: str, mode: str | None
) -> str | None:
    """What is wrong with an authorize request, as Connect's error page would say it."""
    if response_type != "code":
        return "response_type must be code."
    if not client_id or not same(client_id, sim.settings.client_id):
        return "Unknown client_id."
    if urlsplit(redirect_uri).scheme not in ("http", "https"):
        return "redirect_uri is required and must be an http(s) URL."
    if (mode or "live") not in MODES:
        return "mode must be live, test or simulated."
    return None


async def authorize(request: Request) -> Response:
    """`GET /oauth/authorize`: validate like Connect, then approve and redirect back."""
    sim: Simulator = request.app.state.sim
    query = request.query_params
    redirect_uri = query.get("redirect_uri") or ""
    problem = _invalid(
        sim, query.get("response_type"), query.get("client_id"), redirect_uri, query.get("mode")
    )
    if problem is not None:
        return _page(400, problem)
    state = {"state": query["state"]} if "state" in query else {}
    forced_error = query.get("sim_error")  # the simulator's own: make Connect answer with this error
    if forced_error in CONNECT_ERRORS:
        return _redirect(redirect_uri, {"error": forced_error, "error_description": "Simulated.", **state})
    scope = frozenset(query.get("scope", "").split()) or frozenset(ALL_SCOPES)
    chosen = choose_vehicles(
        sim,
        vin=query.get("single_select_vin"),
        make=query.get("make"),
        user=query.get("user"),
    )
    if chosen is None:
        description = "No vehicle matches the requested make or VIN."
        return _redirect(redirect_uri, {"error": "no_vehicles", "error_description": description, **state})
    user_id, vehicle_ids = chosen
    if query.get("single_select") == "true":
        vehicle_ids = vehicle_ids[:1]
    sim.fleet.connect(user_id, vehicle_ids)
    code = sim.tokens.new_code(Grant(user_id, tuple(vehicle_ids), scope), redirect_uri)
    return _redirect(redirect_uri, {"code": code, **state})


async def token(ctx: Ctx) -> Response:
    """`POST /oauth/token`: authorization_code and refresh_token grants, client authenticated by Basic."""
    raw = ctx.raw_body
    if raw is None:
        raise OAuthError("invalid_request", f"The request body is larger than {MAX_FORM_BYTES} bytes.")
    form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    pair = basic(ctx.request) or (form.get("client_id", ""), form.get("client_secret", ""))
    if not is_client(ctx.sim.settings, *pair):
        raise OAuthError("invalid_client", "Invalid client credentials.", status=401)
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        code = form.get("code")
        if not code:
            raise OAuthError("invalid_request", "code is required.")
        grant, body = ctx.sim.tokens.exchange_code(code, form.get("redirect_uri"))
        ctx.sim.fleet.connect(grant.user_id, list(grant.vehicle_ids))
    elif grant_type == "refresh_token":
        refresh = form.get("refresh_token")
        if not refresh:
            raise OAuthError("invalid_request", "refresh_token is required.")
        body = ctx.sim.tokens.refresh(refresh)
    else:
        raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code or refresh_token.")
    headers = {"sc-request-id": ctx.request_id, "cache-control": "no-store"}
    return Response(dumps(body), 200, headers, media_type="application/json")


ROUTES = [
    Route("/oauth/authorize", authorize, methods=["GET"]),
    Route(
        "/oauth/token",
        api(token, family="oauth", auth="none", rate_limited=False, body_limit=MAX_FORM_BYTES),
        methods=["POST"],
    ),
]
