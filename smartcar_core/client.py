"""The calls that belong to no vehicle: user, vehicle list, v3 vehicle, compatibility, connections.

`Smartcar` sends them synchronously, `AsyncSmartcar` asynchronously; both are built from the
endpoints of `ClientAPI`. The module functions (`smartcar_core.get_user` ...) use a `Smartcar` on the
shared connection pool, reading origins from the environment at each call as the Node SDK does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import httpx

from smartcar_core import results as r
from smartcar_core import v3
from smartcar_core.auth import basic_auth, client_credentials, resolve_mode
from smartcar_core.config import Origins, get_api_version, validate_version
from smartcar_core.endpoint import AsyncSender, SyncSender, endpoint
from smartcar_core.protocol import Call, Parser, flags_param, object_body, paging_params, parse_result
from smartcar_core.vehicle import AsyncVehicle, UnitSystem, Vehicle, _segment
from smartcar_core.webhooks import get_management_token

_FILTER_KEYS = ("user_id", "vehicle_id")


class ConnectionFilter(TypedDict, total=False):
    user_id: str
    vehicle_id: str


class CompatibilityOptions(TypedDict, total=False):
    client_id: str
    client_secret: str
    version: str
    flags: Mapping[str, Any]
    mode: str
    test_mode: bool
    test_mode_compatibility_level: str


class CompatibilityMatrixOptions(TypedDict, total=False):
    client_id: str
    client_secret: str
    version: str
    flags: Mapping[str, Any]
    mode: str
    scope: Sequence[str]
    make: str | Sequence[str]
    type: str


def _parse_matrix(response: httpx.Response) -> r.CompatibilityMatrix:
    body = object_body(response, "CompatibilityMatrix")
    return parse_result(r.CompatibilityMatrix)(
        httpx.Response(response.status_code, headers=response.headers, json={"makes": body})
    )


_USER = parse_result(r.User)
_VEHICLES = parse_result(r.Vehicles)
_COMPATIBILITY_V1 = parse_result(r.CompatibilityV1)
_COMPATIBILITY_V2 = parse_result(r.CompatibilityV2)
_GET_CONNECTIONS = parse_result(r.GetConnections)
_DELETE_CONNECTIONS = parse_result(r.DeleteConnections)


def _mode_params(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    params = flags_param(options.get("flags"))
    mode = resolve_mode(options.get("mode"), options.get("test_mode"))
    level = options.get("test_mode_compatibility_level")
    if level:
        params += [("mode", "test"), ("test_mode_compatibility_level", str(level))]
    elif mode is not None:
        params.append(("mode", mode))
    return params


def _filter_params(filter: Mapping[str, Any]) -> list[tuple[str, str]]:  # noqa: A002 - the SDKs' name
    """`user_id` then `vehicle_id`, the set ones; an unknown key (say `userId`) would filter nothing."""
    unknown = sorted(set(filter) - set(_FILTER_KEYS))
    if unknown:
        raise ValueError(f"Filter keys are user_id and vehicle_id, got {', '.join(unknown)}")
    return [(key, str(filter[key])) for key in _FILTER_KEYS if filter.get(key)]


def _join(value: str | Sequence[str]) -> str:
    return value if isinstance(value, str) else " ".join(value)


class ClientAPI:
    """Origins and API version for the calls that are not made through a Vehicle."""

    def __init__(self, *, version: str | None = None, origins: Origins | None = None) -> None:
        self._version = validate_version(version) if version is not None else None
        self.origins = origins or Origins.from_env()

    @property
    def version(self) -> str:
        """The explicit version, else the process-wide one at the time of the call."""
        return self._version or get_api_version()

    def _bearer(self, url: str, token: str, parse: Parser[Any], params: list[tuple[str, str]]) -> Call[Any]:
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        return Call("GET", url, parse, params=params, headers=headers)

    @endpoint
    def get_user(self, access_token: str) -> Call[r.User]:
        return self._bearer(f"{self.origins.api}/v{self.version}/user", access_token, _USER, [])

    @endpoint
    def get_vehicles(self, access_token: str, paging: Mapping[str, int] | None = None) -> Call[r.Vehicles]:
        params = paging_params(paging, ("limit", "offset"))
        return self._bearer(f"{self.origins.api}/v{self.version}/vehicles", access_token, _VEHICLES, params)

    @endpoint
    def get_vehicle(self, access_token: str, vehicle_id: str) -> Call[v3.VehicleResponse]:
        url = f"{self.origins.vehicle_v3}/v3/vehicles/{_segment(vehicle_id)}"
        return self._bearer(url, access_token, v3.parse_vehicle, [])

    @endpoint
    def get_compatibility(
        self,
        vin: str,
        scope: Sequence[str],
        country: str | CompatibilityOptions | None = "US",
        options: CompatibilityOptions | None = None,
    ) -> Call[r.CompatibilityV1 | r.CompatibilityV2]:
        """Whether a VIN can grant `scope`; the v1 or v2 result shape by the API version used.

        As in the Node SDK, the options may take the place of `country` (which is then "US").
        """
        if isinstance(scope, str):
            raise TypeError("scope must be a list of permission names, not a string")
        if isinstance(country, Mapping):
            options = country
            country = "US"
        options = options or {}
        client_id, secret = client_credentials(options.get("client_id"), options.get("client_secret"))
        version = validate_version(options["version"]) if "version" in options else self.version
        params = [
            *_mode_params(options),
            ("scope", " ".join(scope)),
            ("country", country or "US"),
            ("vin", vin),
        ]
        parse: Parser[Any] = _COMPATIBILITY_V1 if version.startswith("1") else _COMPATIBILITY_V2
        url = f"{self.origins.api}/v{version}/compatibility"
        return Call(
            "GET", url, parse, params=params, headers={"authorization": basic_auth(client_id, secret)}
        )

    @endpoint
    def get_compatibility_matrix(
        self, region: str, options: CompatibilityMatrixOptions | None = None
    ) -> Call[r.CompatibilityMatrix]:
        options = options or {}
        client_id, secret = client_credentials(options.get("client_id"), options.get("client_secret"))
        version = validate_version(options["version"]) if "version" in options else self.version
        params = [*_mode_params(options), ("region", region)]
        if options.get("scope"):
            params.append(("scope", _join(options["scope"])))
        if options.get("make"):
            params.append(("make", _join(options["make"])))
        if options.get("type"):
            params.append(("type", options["type"]))
        url = f"{self.origins.api}/v{version}/compatibility/matrix"
        headers = {"authorization": basic_auth(client_id, secret)}
        return Call("GET", url, _parse_matrix, params=params, headers=headers)

    def _management(
        self, method: str, amt: str, params: list[tuple[str, str]], parse: Parser[Any]
    ) -> Call[Any]:
        url = f"{self.origins.management}/v{self.version}/management/connections"
        headers = {"authorization": f"Basic {get_management_token(amt)}"}
        return Call(method, url, parse, params=params, headers=headers)

    @endpoint
    def get_connections(
        self,
        amt: str,
        filter: ConnectionFilter | None = None,  # noqa: A002 - the SDKs' parameter name
        paging: Mapping[str, Any] | None = None,
    ) -> Call[r.GetConnections]:
        """One page of connections, newest first; pass `paging={"cursor": ...}` for the next."""
        params = _filter_params(filter or {})
        params += [(key, str(paging[key])) for key in ("limit", "cursor") if paging and paging.get(key)]
        return self._management("GET", amt, params, _GET_CONNECTIONS)

    @endpoint
    def delete_connections(self, amt: str, filter: ConnectionFilter) -> Call[r.DeleteConnections]:  # noqa: A002
        """Delete every connection of one user or one vehicle (exactly one filter, never neither)."""
        chosen = _filter_params(filter)
        if len(chosen) != 1:
            raise ValueError("Filter must contain exactly one of user_id or vehicle_id")
        return self._management("DELETE", amt, chosen, _DELETE_CONNECTIONS)


class Smartcar(ClientAPI, SyncSender):
    """The module functions as a client object: explicit origins, version, transport and timeout."""

    def __init__(
        self,
        *,
        version: str | None = None,
        origins: Origins | None = None,
        http: httpx.Client | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        ClientAPI.__init__(self, version=version, origins=origins)
        SyncSender.__init__(self, http=http, timeout=timeout)

    def vehicle(
        self, vehicle_id: str, access_token: str, unit_system: UnitSystem = "metric", **options: Any
    ) -> Vehicle:
        """A Vehicle that shares this client's origins, transport and timeout."""
        return Vehicle(
            vehicle_id,
            access_token,
            unit_system,
            origins=self.origins,
            http=self._http,
            timeout=self._timeout,
            **options,
        )


class AsyncSmartcar(ClientAPI, AsyncSender):
    """The async twin of the module functions (`await AsyncSmartcar().get_user(token)`)."""

    def __init__(
        self,
        *,
        version: str | None = None,
        origins: Origins | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        ClientAPI.__init__(self, version=version, origins=origins)
        AsyncSender.__init__(self, http=http, timeout=timeout)

    def vehicle(
        self, vehicle_id: str, access_token: str, unit_system: UnitSystem = "metric", **options: Any
    ) -> AsyncVehicle:
        return AsyncVehicle(
            vehicle_id,
            access_token,
            unit_system,
            origins=self.origins,
            http=self._http,
            timeout=self._timeout,
            **options,
        )


# The module functions of the Node and Python SDKs, each a call on a fresh `Smartcar()`.
def get_user(access_token: str) -> r.User:
    return Smartcar().get_user(access_token)


def get_vehicles(access_token: str, paging: Mapping[str, int] | None = None) -> r.Vehicles:
    return Smartcar().get_vehicles(access_token, paging)


def get_vehicle(access_token: str, vehicle_id: str) -> v3.VehicleResponse:
    return Smartcar().get_vehicle(access_token, vehicle_id)


def get_compatibility(
    vin: str,
    scope: Sequence[str],
    country: str | CompatibilityOptions | None = "US",
    options: CompatibilityOptions | None = None,
) -> r.CompatibilityV1 | r.CompatibilityV2:
    return Smartcar().get_compatibility(vin, scope, country, options)


def get_compatibility_matrix(
    region: str, options: CompatibilityMatrixOptions | None = None
) -> r.CompatibilityMatrix:
    return Smartcar().get_compatibility_matrix(region, options)


def get_connections(
    amt: str,
    filter: ConnectionFilter | None = None,  # noqa: A002 - the SDKs' parameter name
    paging: Mapping[str, Any] | None = None,
) -> r.GetConnections:
    return Smartcar().get_connections(amt, filter, paging)


def delete_connections(amt: str, filter: ConnectionFilter) -> r.DeleteConnections:  # noqa: A002
    return Smartcar().delete_connections(amt, filter)
