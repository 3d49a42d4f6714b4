"""`Vehicle` and `AsyncVehicle`: every vehicle endpoint, described once in `VehicleAPI`.

`VehicleAPI`'s class body is this project's METHODS_MAP: `read("odometer", Odometer)` declares a GET,
`command("security", {"action": "LOCK"})` a POST, and `@endpoint` methods the endpoints with
arguments. `Vehicle` sends them synchronously, `AsyncVehicle` asynchronously; neither repeats one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import httpx

from smartcar_core import results as r
from smartcar_core import v3
from smartcar_core.batch import BatchResponse, ItemParser, batch_parser, normalise_path
from smartcar_core.config import V3, Origins, get_api_version, validate_version
from smartcar_core.endpoint import AsyncSender, Endpoint, SyncSender, endpoint
from smartcar_core.protocol import NO_BODY, Call, Parser, flags_param, json_body, paging_params, parse_result

R = TypeVar("R")
UnitSystem = Literal["metric", "imperial"]
UNIT_SYSTEMS = ("metric", "imperial")
_BODYLESS_METHODS = frozenset({"GET", "DELETE", "HEAD"})


class ReadEndpoint(Endpoint["VehicleAPI", [], R]):
    """A GET of one path with a typed result; batch answers are parsed with the same parser."""

    def __init__(self, path: str, parse: Parser[R]) -> None:
        self.path = path
        self.parse = parse

        def build(vehicle: VehicleAPI) -> Call[R]:
            return vehicle.call("GET", path, parse)

        super().__init__(build)


def read(path: str, result: type[R], *, list_field: str | None = None) -> ReadEndpoint[R]:
    return ReadEndpoint(path, parse_result(result, list_field=list_field))


def command(path: str, body: dict[str, Any]) -> Endpoint[VehicleAPI, [], r.ActionResponse]:
    parse = parse_result(r.ActionResponse)

    def build(vehicle: VehicleAPI) -> Call[r.ActionResponse]:
        return vehicle.call("POST", path, parse, json=body)

    return Endpoint(build)


def _date_param(value: date | datetime | str) -> str:
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _user_header(user_id: str | None) -> dict[str, str] | None:
    """`sc-user-id` for a v3 call made on a user's behalf; nothing when there is no user id."""
    if user_id is None:
        return None
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    return {"sc-user-id": user_id}


def _segment(value: str) -> str:
    """A path segment from caller data, escaped so that it cannot change the path."""
    return quote(str(value), safe="")


class VehicleAPI:
    """The vehicle's state (id, token, unit system, version, flags) and its endpoints."""

    def __init__(
        self,
        vehicle_id: str,
        access_token: str,
        unit_system: UnitSystem = "metric",
        version: str | None = None,
        flags: Mapping[str, Any] | None = None,
        *,
        origins: Origins | None = None,
    ) -> None:
        if not vehicle_id:
            raise ValueError("vehicle_id is required")
        self.vehicle_id = vehicle_id
        self.access_token = access_token
        self.unit_system: str = "metric"
        self.set_unit_system(unit_system)
        # Copied when the vehicle is created: a later set_api_version() leaves this vehicle alone.
        self.version = validate_version(version) if version is not None else get_api_version()
        self.flags = dict(flags or {})
        self.origins = origins or Origins.from_env()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vehicle_id={self.vehicle_id!r}, unit_system={self.unit_system!r}, "
            f"version={self.version!r})"
        )

    def set_unit_system(self, unit_system: str) -> None:
        if unit_system not in UNIT_SYSTEMS:
            raise ValueError(f"unit_system must be 'metric' or 'imperial', got {unit_system!r}")
        self.unit_system = unit_system

    def base_url(self, version: str | None = None) -> str:
        version = version or self.version
        vehicle = _segment(self.vehicle_id)
        if version == V3:
            return f"{self.origins.vehicle_v3}/v3/vehicles/{vehicle}"
        return f"{self.origins.api}/v{version}/vehicles/{vehicle}"

    def call(
        self,
        method: str,
        path: str,
        parse: Parser[R],
        *,
        json: Any = NO_BODY,
        params: Iterable[tuple[str, str]] = (),
        version: str | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Call[R]:
        """A Call to `path` under this vehicle, with its token, unit system and flags."""
        request_headers = {
            "authorization": f"Bearer {token or self.access_token}",
            "sc-unit-system": self.unit_system,
            "content-type": "application/json",
        }
        request_headers.update({key.lower(): value for key, value in (headers or {}).items()})
        return Call(
            method=method,
            url=f"{self.base_url(version)}/{path.lstrip('/')}",
            parse=parse,
            params=[*params, *flags_param(self.flags)],
            headers=request_headers,
            json=json,
        )

    # The reads: one line each, like the Node SDK's METHODS_MAP.
    vin = read("vin", r.Vin)
    charge = read("charge", r.Charge)
    battery = read("battery", r.Battery)
    battery_capacity = read("battery/capacity", r.BatteryCapacity)
    nominal_capacity = read("battery/nominal_capacity", r.NominalCapacity)
    fuel = read("fuel", r.Fuel)
    tire_pressure = read("tires/pressure", r.TirePressure)
    engine_oil = read("engine/oil", r.EngineOil)
    odometer = read("odometer", r.Odometer)
    location = read("location", r.Location)
    attributes = read("", r.Attributes)
    lock_status = read("security", r.LockStatus)
    get_charge_limit = read("charge/limit", r.ChargeLimit)
    diagnostic_system_status = read("diagnostics/system_status", r.DiagnosticSystemStatus)
    diagnostic_trouble_codes = read("diagnostics/dtcs", r.DiagnosticTroubleCodes)

    # The commands without arguments.
    lock = command("security", {"action": "LOCK"})
    unlock = command("security", {"action": "UNLOCK"})
    start_charge = command("charge", {"action": "START"})
    stop_charge = command("charge", {"action": "STOP"})

    @endpoint
    def permissions(self, paging: Mapping[str, int] | None = None) -> Call[r.Permissions]:
        params = paging_params(paging, ("limit", "offset"))
        return self.call("GET", "permissions", _PERMISSIONS, params=params)

    @endpoint
    def service_history(
        self, start_date: date | datetime | str | None = None, end_date: date | datetime | str | None = None
    ) -> Call[r.ServiceHistory]:
        params = [
            (name, _date_param(value))
            for name, value in (("start_date", start_date), ("end_date", end_date))
            if value is not None
        ]
        return self.call("GET", "service/history", _SERVICE_HISTORY, params=params)

    @endpoint
    def set_charge_limit(self, limit: float) -> Call[r.ActionResponse]:
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 < limit <= 1:
            raise ValueError(f"limit must be a number with 0 < limit <= 1, got {limit!r}")
        return self.call("POST", "charge/limit", _ACTION, json={"limit": limit})

    @endpoint
    def send_destination(self, latitude: float, longitude: float) -> Call[r.ActionResponse]:
        if not -90 <= latitude <= 90:  # noqa: PLR2004 - the range of a latitude
            raise ValueError("Invalid latitude value. It must be between -90 and 90.")
        if not -180 <= longitude <= 180:  # noqa: PLR2004 - the range of a longitude
            raise ValueError("Invalid longitude value. It must be between -180 and 180.")
        body = {"latitude": latitude, "longitude": longitude}
        return self.call("POST", "navigation/destination", _ACTION, json=body)

    @endpoint
    def disconnect(self) -> Call[r.Status]:
        return self.call("DELETE", "application", _STATUS)

    @endpoint
    def subscribe(self, webhook_id: str) -> Call[r.WebhookSubscription]:
        return self.call("POST", f"webhooks/{_segment(webhook_id)}", _SUBSCRIPTION)

    @endpoint
    def unsubscribe(self, amt: str, webhook_id: str) -> Call[r.Status]:
        """Unsubscribing is authorised by the application management token, not the vehicle's token."""
        return self.call("DELETE", f"webhooks/{_segment(webhook_id)}", _STATUS, token=amt)

    @endpoint
    def batch(self, paths: Iterable[str]) -> Call[BatchResponse]:
        requests = [{"path": normalise_path(path)} for path in paths]
        if not requests:
            raise ValueError("batch needs at least one path")
        return self.call("POST", "batch", _BATCH, json={"requests": requests})

    @endpoint
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        api_version: str | None = None,
    ) -> Call[r.Response]:
        """Any vehicle endpoint; caller headers override ours (Authorization included)."""
        method = method.upper()
        if body is not None and method in _BODYLESS_METHODS:
            raise ValueError(f"a {method} request cannot have a body")
        version = validate_version(api_version) if api_version is not None else None
        return self.call(
            method, path, _RESPONSE, json=NO_BODY if body is None else body, version=version, headers=headers
        )

    @endpoint
    def get_signals(self, *, user_id: str | None = None) -> Call[v3.SignalsResponse]:
        """Every signal of the vehicle (v3). `user_id` is sent as `sc-user-id`, which Smartcar requires
        when the token is the application's rather than the user's (webhook `data.user.id`)."""
        return self.call("GET", "signals", v3.parse_signals, version=V3, headers=_user_header(user_id))

    @endpoint
    def get_signal(self, code: str, *, user_id: str | None = None) -> Call[v3.SignalResponse]:
        """One signal by code (v3), escaped as one path segment; `user_id` as in `get_signals`."""
        path = f"signals/{_segment(code)}"
        return self.call("GET", path, v3.parse_signal, version=V3, headers=_user_header(user_id))


def _parse_response(response: httpx.Response) -> r.Response:
    return r.Response(body=json_body(response), meta=r.Meta.from_headers(response.headers))


_PERMISSIONS = parse_result(r.Permissions)
_SERVICE_HISTORY = parse_result(r.ServiceHistory, list_field="items")
_ACTION = parse_result(r.ActionResponse)
_STATUS = parse_result(r.Status)
_SUBSCRIPTION = parse_result(r.WebhookSubscription)
_RESPONSE = _parse_response
# Batch answers are read with the same parsers as the reads, named as the Vehicle methods are.
BATCH_READERS: dict[str, tuple[str, ItemParser]] = {
    normalise_path(item.path): (item.name, item.parse)
    for item in vars(VehicleAPI).values()
    if isinstance(item, ReadEndpoint)
}
BATCH_READERS["/permissions"] = ("permissions", _PERMISSIONS)
BATCH_READERS["/service/history"] = ("service_history", _SERVICE_HISTORY)
_BATCH = batch_parser(BATCH_READERS)


def read_batch_items(items: Sequence[Mapping[str, Any]]) -> BatchResponse:
    """Per-path v2 answers outside a batch call (a legacy scheduled or dynamic webhook carries them), read
    as `batch` reads its own: typed results, or each item's `SmartcarError`. An unreadable list raises
    `UnexpectedResponseError`."""
    return _BATCH(httpx.Response(200, json={"responses": list(items)}))


class Vehicle(VehicleAPI, SyncSender):
    """A vehicle, sent synchronously on a pooled, thread-safe httpx client."""

    def __init__(
        self,
        vehicle_id: str,
        access_token: str,
        unit_system: UnitSystem = "metric",
        version: str | None = None,
        flags: Mapping[str, Any] | None = None,
        *,
        origins: Origins | None = None,
        http: httpx.Client | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        VehicleAPI.__init__(self, vehicle_id, access_token, unit_system, version, flags, origins=origins)
        SyncSender.__init__(self, http=http, timeout=timeout)

    def with_timeout(self, timeout: httpx.Timeout | float) -> Self:
        """A copy of this vehicle whose calls use `timeout` (e.g. a short read timeout for one call)."""
        other = copy.copy(self)
        SyncSender.__init__(other, http=self._http, timeout=timeout)
        return other


class AsyncVehicle(VehicleAPI, AsyncSender):
    """The same vehicle, with every method a coroutine."""

    def __init__(
        self,
        vehicle_id: str,
        access_token: str,
        unit_system: UnitSystem = "metric",
        version: str | None = None,
        flags: Mapping[str, Any] | None = None,
        *,
        origins: Origins | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        VehicleAPI.__init__(self, vehicle_id, access_token, unit_system, version, flags, origins=origins)
        AsyncSender.__init__(self, http=http, timeout=timeout)

    def with_timeout(self, timeout: httpx.Timeout | float) -> Self:
        other = copy.copy(self)
        AsyncSender.__init__(other, http=self._http, timeout=timeout)
        return other
