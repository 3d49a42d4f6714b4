"""The path every API call takes: latency, throttles, authentication, faults, the handler, the record.

Handlers are `async (ctx) -> Response` and raise `ApiError`; `api(...)` wraps them into Starlette
endpoints that render errors in the caller's body shape (v1, v2, v3, OAuth), stamp `sc-request-id`, and
record the call for `GET /_sim/requests`.

A call's body is read as it arrives; then the call waits out its latency, and takes effect (throttles,
credentials, faults, the handler: a command reaches the car) at the point of that latency that
`Simulator.apply_at` names (start, middle or end); the answer leaves at the end. A caller that goes away
meanwhile changes nothing but the record: the call still takes effect, as a car obeys a command whether
or not the HTTP caller is still there, and it is recorded with `client_gone` (and the status it would
have answered), with one info line `simulator_client_gone`, never an error.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from smartcar_simulator.clock import iso_time
from smartcar_simulator.errors import ApiError, OAuthError, validation
from smartcar_simulator.faults import GATEWAY_PAGE, ErrorSpec, Fault
from smartcar_simulator.fleet import Vehicle
from smartcar_simulator.latency import split
from smartcar_simulator.settings import SimulatorSettings
from smartcar_simulator.state import RecordedRequest, Simulator
from smartcar_simulator.tokens import Grant

Family = Literal["v2", "v3", "oauth"]
Auth = Literal["bearer", "client", "management", "none"]
Handler = Callable[["Ctx"], Awaitable[Response]]
VERSION = re.compile(r"\d+\.\d+")
JSON = "application/json"
logger = logging.getLogger(__name__)


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
    raw_body: bytes | None = b""  # as it arrived; None: longer than `body_limit`
    body_limit: int = 0

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

    def body(self) -> Any:
        """The JSON request body (None when empty); VALIDATION for anything else."""
        raw = self.raw_body
        if raw is None:
            raise validation(f"request body larger than {self.body_limit} bytes", code=None)
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


def has_body(request: Request) -> bool:
    """Whether the request carries a body at all (HTTP/1.1: a Content-Length or a Transfer-Encoding)."""
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "0") not in {"", "0"}


class Caller:
    """The HTTP caller of one API call, and whether it went away before the answer.

    It is watched (ASGI's `http.disconnect`, once the body has been read) only while the call waits: its
    latency, a slow fault. The call goes on without it.
    """

    __slots__ = ("_gone", "_request", "_watch")

    def __init__(self, request: Request) -> None:
        self._request = request
        self._gone = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    @property
    def gone(self) -> bool:
        return self._gone.is_set()

    def left(self) -> None:
        self._gone.set()

    async def _watching(self) -> None:
        while (await self._request.receive())["type"] != "http.disconnect":
            pass  # the rest of a body longer than the limit (its read stopped there), or its empty end
        self._gone.set()

    def _watched(self) -> None:
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watching())

    async def wait(self, seconds: float) -> None:
        """The call's own time (its latency, a slow fault): it passes whether or not the caller stays."""
        if seconds > 0:
            self._watched()
            await asyncio.sleep(seconds)

    async def wait_to_answer(self, seconds: float) -> None:
        """The rest of the latency, after the call took effect: cut short once nobody is left to answer."""
        if seconds > 0 and not self.gone:
            self._watched()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), seconds)

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch


def api(
    handler: Handler,
    *,
    family: Family = "v2",
    auth: Auth = "bearer",
    vehicle: bool = False,
    rate_limited: bool = True,
    body_limit: int | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint running `handler` behind the simulated Smartcar's request path; the body is
    read up to `body_limit` bytes (default: the `max_body_bytes` setting)."""

    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        started = time.perf_counter()
        params = request.path_params
        version = params.get("version", "3" if family == "v3" else "2.0")
        ctx = Ctx(
            request, sim, family, str(uuid.uuid4()), version, params.get("vehicle_id"), params.get("rest")
        )
        ctx.body_limit = body_limit or sim.settings.max_body_bytes
        if vehicle and ctx.sub_path is None:
            ctx.sub_path = ""
        caller = Caller(request)
        try:
            response = await _answer(
                ctx, caller, handler, auth=auth, vehicle=vehicle, rate_limited=rate_limited
            )
            gone = caller.gone
        finally:
            await caller.aclose()
        if response is None and not gone:
            await drop(request)
        status = response.status_code if response is not None else None
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
                client_gone=gone,
            )
        )
        if gone:
            logger.info(
                "simulator_client_gone",
                extra={
                    "method": request.method,
                    "path": request.url.path,
                    "status": status,
                    "request_id": ctx.request_id,
                },
            )
        return response or Response(b"", 499)

    endpoint.__name__ = handler.__name__
    return endpoint


async def _answer(
    ctx: Ctx, caller: Caller, handler: Handler, *, auth: Auth, vehicle: bool, rate_limited: bool
) -> Response | None:
    """The call from its arrival to its answer (None: close the connection unanswered)."""
    if ctx.version != "3" and not VERSION.fullmatch(ctx.version):
        return ctx.error(ApiError("RESOURCE_NOT_FOUND", "VERSION"))
    if has_body(ctx.request):
        try:
            ctx.raw_body = await read_body(ctx.request, ctx.body_limit)
        except ClientDisconnect:  # gone before its request was complete: nothing to take effect
            caller.left()
            return None
    sim = ctx.sim
    latency = 0.0 if sim.latency.is_zero else sim.latency.sample(sim.rng)
    before, after = split(latency, sim.apply_at)
    await caller.wait(before)
    response: Response | None
    try:
        response = await _run(ctx, caller, handler, auth=auth, vehicle=vehicle, rate_limited=rate_limited)
    except ApiError as error:
        response = ctx.error(error)
    except OAuthError as error:
        response = Response(
            dumps(error.body()), error.status, {"sc-request-id": ctx.request_id}, media_type=JSON
        )
    await caller.wait_to_answer(after)
    return response


def _is_unsubscribe(ctx: Ctx) -> bool:
    sub_path = ctx.sub_path or ""
    return ctx.request.method == "DELETE" and sub_path.startswith("webhooks/")


def _admit(ctx: Ctx, *, auth: Auth, vehicle: bool, rate_limited: bool) -> None:
    """Everything before the handler: throttles, credentials, the vehicle's access."""
    sim = ctx.sim
    if rate_limited:
        sim.limits.take_app()
    # Unsubscribing is authorised by the AMT, which its handler checks.
    authenticate(ctx, "none" if vehicle and _is_unsubscribe(ctx) else auth)
    if vehicle and ctx.vehicle_id is not None:
        if ctx.grant is not None:
            check_vehicle(ctx)
        sim.limits.take_vehicle(ctx.vehicle_id)


def _fail(ctx: Ctx, fault: Fault) -> Response | None:
    """The fault's answer; None for a drop (the connection is closed when the answer would leave)."""
    return None if fault.spec.kind == "drop" else fault_response(ctx, fault)


async def _run(
    ctx: Ctx, caller: Caller, handler: Handler, *, auth: Auth, vehicle: bool, rate_limited: bool
) -> Response | None:
    """The call taking effect: admitted, then a fault or the handler (or both, with `after_effect`)."""
    _admit(ctx, auth=auth, vehicle=vehicle, rate_limited=rate_limited)
    request = ctx.request
    fault = ctx.sim.faults.match(
        method=request.method, path=request.url.path, sub_path=ctx.sub_path, vehicle_id=ctx.vehicle_id
    )
    if fault is not None and fault.spec.kind == "slow":
        await caller.wait(fault.spec.seconds or 0.0)
        fault = None
    if fault is not None and not fault.spec.after_effect:
        return _fail(ctx, fault)
    response = await handler(ctx)
    if fault is not None and response.status_code < 400:  # noqa: PLR2004 - it took effect; now fail
        return _fail(ctx, fault)
    return response
