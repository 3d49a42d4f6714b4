"""The path every API call takes: latency, throttles, authentication, faults, the handler, the record.

Handlers are `async (ctx) -> Response` and raise `ApiError`; `api(...)` wraps them into Starlette
endpoints that render errors in the caller's body shape (v1, v2, v3, OAuth), stamp `sc-request-id`, and
record the call for `GET /_sim/requests`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from smartcar_simulator.clock import iso_time
from smartcar_simulator.errors import ApiError, OAuthError, validation
from smartcar_simulator.faults import GATEWAY_PAGE, ErrorSpec, Fault
from smartcar_simulator.fleet import Vehicle
from smartcar_simulator.settings import SimulatorSettings
from smartcar_simulator.state import RecordedRequest, Simulator
from smartcar_simulator.tokens import Grant

Family = Literal["v2", "v3", "oauth"]
Auth = Literal["bearer", "client", "management", "none"]
Handler = Callable[["Ctx"], Awaitable[Response]]
VERSION = re.compile(r"\d+\.\d+")
JSON = "application/json"


class Dropped(Exception):  # noqa: N818 - a signal, not an error
    """The connection was closed without an answer."""


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(slots=True)
class Ctx:
    request: Request
    sim: Simulator
    family: Family
    request_id: str
    version: str
    vehicle_id: str | None = None
    sub_path: str | None = None
    grant: Grant | None = None

    @property
    def imperial(self) -> bool:
        return self.request.headers.get("sc-unit-system", "").lower() == "imperial"

    def json(
        self, body: Any, *, status: int = 200, vehicle: Vehicle | None = None, fields: tuple[str, ...] = ()
    ) -> Response:
        """A 2xx answer; with `vehicle`, the read headers (data age from `fields`, fetch time, units)."""
        headers = {"sc-request-id": self.request_id}
        if vehicle is not None:
            headers.update(self.read_headers(vehicle, fields))
        return Response(dumps(body), status, headers, media_type=JSON)

    def read_headers(self, vehicle: Vehicle, fields: tuple[str, ...]) -> dict[str, str]:
        """A read's headers: its data age (when `fields` last changed), its fetch time, its units."""
        now = self.sim.clock.now()
        return {
            "sc-data-age": iso_time(vehicle.age(*fields) if fields else now),
            "sc-fetched-at": iso_time(now),
            "sc-unit-system": self.unit_system,
        }

    @property
    def unit_system(self) -> str:
        return "imperial" if self.imperial else "metric"

    def error(self, error: ApiError) -> Response:
        if self.family == "v3":
            body = error.v3_body(self.request_id)
        elif self.version.startswith("1."):
            body = error.v1_body(self.request_id)
        else:
            body = error.v2_body(self.request_id)
        headers = {"sc-request-id": self.request_id, **error.headers()}
        return Response(dumps(body), error.status, headers, media_type=JSON)

    async def body(self) -> Any:
        """The JSON request body (None when empty); VALIDATION for anything else."""
        limit = self.sim.settings.max_body_bytes
        raw = await read_body(self.request, limit)
        if raw is None:
            raise validation(f"request body larger than {limit} bytes", code=None)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise validation("request body is not valid JSON", code=None) from None

    @property
    def token(self) -> Grant:
        """The caller's grant (routes behind the bearer gate always have one)."""
        if self.grant is None:
            raise ApiError("AUTHENTICATION", None, description="An access token is required.")
        return self.grant

    def require(self, permission: str | None) -> None:
        if permission is not None and self.grant is not None and permission not in self.grant.scope:
            raise ApiError("PERMISSION", None, description=f"This request needs the {permission} permission.")


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it proves longer than `limit` bytes: by its
    Content-Length, or while it streams in (a chunked body is never buffered past the limit)."""
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if sep else None


def same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def is_client(settings: SimulatorSettings, client_id: str, client_secret: str) -> bool:
    """Whether these are the application's credentials (the secret compared in constant time)."""
    return same(client_id, settings.client_id) and same(
        client_secret, settings.client_secret.get_secret_value()
    )


def authenticate(ctx: Ctx, auth: Auth) -> None:
    settings = ctx.sim.settings
    if auth == "bearer":
        token = bearer(ctx.request)
        ctx.grant = ctx.sim.tokens.access(token) if token else None
        if ctx.grant is None:
            raise ApiError(
                "AUTHENTICATION", None, description="The access token is missing, invalid or expired."
            )
    elif auth == "client":
        pair = basic(ctx.request)
        if pair is None or not is_client(settings, *pair):
            raise ApiError("AUTHENTICATION", None, description="Invalid client credentials.")
    elif auth == "management":
        pair = basic(ctx.request)
        if pair is None or pair[0] != "default" or not any(same(pair[1], amt) for amt in settings.amts):
            raise ApiError("AUTHENTICATION", None, description="Invalid application management token.")


def check_vehicle(ctx: Ctx) -> Vehicle:
    """The path's vehicle if the token may use it: PERMISSION if not its; AUTHENTICATION once disconnected."""
    sim, grant, vehicle_id = ctx.sim, ctx.grant, ctx.vehicle_id or ""
    if grant is not None:
        if vehicle_id not in grant.vehicle_ids:
            raise ApiError("PERMISSION", None, description="The access token does not cover this vehicle.")
        if not sim.fleet.is_connected(grant.user_id, vehicle_id):
            raise ApiError(
                "AUTHENTICATION", None, description="The vehicle was disconnected from this application."
            )
    return sim.fleet.require(vehicle_id)


def fault_error(error: ErrorSpec) -> ApiError:
    return ApiError(
        error.type,
        error.code,
        status=error.status,
        retry_after=error.retry_after,
        description=error.description,
    )


def fault_response(ctx: Ctx, fault: Fault) -> Response:
    spec = fault.spec
    if spec.kind == "error" and spec.error is not None:
        return ctx.error(fault_error(spec.error))
    if spec.kind == "gateway_html":
        status = spec.status or 502
        return Response(GATEWAY_PAGE.format(status=status), status, media_type="text/html")
    return Response(b"", spec.status or 503, {"sc-request-id": ctx.request_id})


async def drop(request: Request) -> None:
    """Close the connection without answering (uvicorn's transport is reached through its send)."""
    cycle = request.scope.get("sim.cycle")
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("this server cannot drop connections")
    transport.abort()
    for _ in range(100):
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)
    raise Dropped


def api(
    handler: Handler,
    *,
    family: Family = "v2",
    auth: Auth = "bearer",
    vehicle: bool = False,
    rate_limited: bool = True,
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint running `handler` behind the simulated Smartcar's request path."""

    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        started = time.perf_counter()
        params = request.path_params
        version = params.get("version", "3" if family == "v3" else "2.0")
        ctx = Ctx(
            request, sim, family, str(uuid.uuid4()), version, params.get("vehicle_id"), params.get("rest")
        )
        if vehicle and ctx.sub_path is None:
            ctx.sub_path = ""
        status: int | None = None
        response: Response | None
        try:
            response = await _run(ctx, handler, auth=auth, vehicle=vehicle, rate_limited=rate_limited)
        except ApiError as error:
            response = ctx.error(error)
        except OAuthError as error:
            response = Response(
                dumps(error.body()), error.status, {"sc-request-id": ctx.request_id}, media_type=JSON
            )
        except Dropped:
            response = None
        if response is not None:
            status = response.status_code
        sim.record(
            RecordedRequest(
                sim.clock.now(),
                request.method,
                request.url.path,
                ctx.vehicle_id,
                ctx.sub_path,
                status,
                ctx.request_id,
                time.perf_counter() - started,
            )
        )
        return response or Response(b"", 499)

    endpoint.__name__ = handler.__name__
    return endpoint


def _is_unsubscribe(ctx: Ctx) -> bool:
    sub_path = ctx.sub_path or ""
    return ctx.request.method == "DELETE" and sub_path.startswith("webhooks/")


async def _admit(ctx: Ctx, *, auth: Auth, vehicle: bool, rate_limited: bool) -> None:
    """Everything before the handler: version, latency, throttles, credentials, the vehicle's access."""
    sim = ctx.sim
    if ctx.version != "3" and not VERSION.fullmatch(ctx.version):
        raise ApiError("RESOURCE_NOT_FOUND", "VERSION")
    if not sim.latency.is_zero:
        await asyncio.sleep(sim.latency.sample(sim.rng))
    if rate_limited:
        sim.limits.take_app()
    # Unsubscribing is authorised by the AMT, which its handler checks.
    authenticate(ctx, "none" if vehicle and _is_unsubscribe(ctx) else auth)
    if vehicle and ctx.vehicle_id is not None:
        if ctx.grant is not None:
            check_vehicle(ctx)
        sim.limits.take_vehicle(ctx.vehicle_id)


async def _fail(ctx: Ctx, fault: Fault) -> Response:
    if fault.spec.kind == "drop":
        await drop(ctx.request)
    return fault_response(ctx, fault)


async def _run(ctx: Ctx, handler: Handler, *, auth: Auth, vehicle: bool, rate_limited: bool) -> Response:
    await _admit(ctx, auth=auth, vehicle=vehicle, rate_limited=rate_limited)
    request = ctx.request
    fault = ctx.sim.faults.match(
        method=request.method, path=request.url.path, sub_path=ctx.sub_path, vehicle_id=ctx.vehicle_id
    )
    if fault is not None and fault.spec.kind == "slow":
        await asyncio.sleep(fault.spec.seconds or 0.0)
        fault = None
    if fault is not None and not fault.spec.after_effect:
        return await _fail(ctx, fault)
    response = await handler(ctx)
    if fault is not None and response.status_code < 400:  # noqa: PLR2004 - it took effect; now fail
        return await _fail(ctx, fault)
    return response
