"""Each of smartcar_core's error classes, raised by a real answer of the simulator (sync and async)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

import smartcar_core as sc
from simulator.support import first
from smartcar_simulator.testing import RunningSimulator


@dataclass
class ErrorCase:
    name: str
    error: type[sc.SmartcarError]
    call: str = "odometer"
    args: tuple[Any, ...] = ()
    fault: dict[str, Any] | None = None
    prepare: dict[str, Any] = field(default_factory=dict)
    check: Callable[[sc.SmartcarError], bool] = lambda _error: True
    powertrain: str = "PHEV"

    def __str__(self) -> str:
        return self.name


def _fault(error_type: str, code: str | None, **extra: Any) -> dict[str, Any]:
    return {"count": 1, "error": {"type": error_type, "code": code, **extra}}


CASES = [
    ErrorCase(
        "billing",
        sc.BillingError,
        fault=_fault("BILLING", "VEHICLE_REQUEST_LIMIT"),
        check=lambda e: e.status_code == 430,
    ),
    ErrorCase(
        "compatibility",
        sc.CompatibilityError,
        "fuel",
        powertrain="BEV",
        check=lambda e: e.code == "VEHICLE_NOT_CAPABLE",
    ),
    ErrorCase(
        "account",
        sc.ConnectedServicesAccountError,
        fault=_fault("CONNECTED_SERVICES_ACCOUNT", "SUBSCRIPTION"),
    ),
    ErrorCase(
        "rate limit",
        sc.RateLimitError,
        fault=_fault("RATE_LIMIT", "VEHICLE", retry_after=7),
        check=lambda e: e.retry_after == 7,
    ),
    ErrorCase(
        "not found",
        sc.ResourceNotFoundError,
        "request",
        ("GET", "no/such/path"),
        check=lambda e: e.code == "PATH",
    ),
    ErrorCase("server", sc.ServerError, fault=_fault("SERVER", "INTERNAL"), check=lambda e: e.retryable),
    ErrorCase(
        "upstream",
        sc.UpstreamError,
        "lock",
        fault=_fault("UPSTREAM", "NO_RESPONSE"),
        check=lambda e: e.ambiguous,
    ),
    ErrorCase("validation", sc.ValidationError, "request", ("POST", "charge", {"action": "FLY"})),
    ErrorCase(
        "plug",
        sc.VehicleStateError,
        "start_charge",
        prepare={"plugged_in": False},
        check=lambda e: e.code == "CHARGING_PLUG_NOT_CONNECTED",
    ),
    ErrorCase(
        "full",
        sc.VehicleStateError,
        "start_charge",
        prepare={"plugged_in": True, "soc": 0.8, "charge_limit": 0.8},
        check=lambda e: e.code == "FULLY_CHARGED" and e.is_benign_for("start_charge"),
    ),
    ErrorCase(
        "door",
        sc.VehicleStateError,
        "lock",
        prepare={"doors_open": True},
        check=lambda e: e.code == "DOOR_OPEN",
    ),
    ErrorCase("asleep", sc.VehicleStateError, prepare={"asleep": True}, check=lambda e: e.code == "ASLEEP"),
    ErrorCase(
        "unreachable",
        sc.VehicleStateError,
        prepare={"online": False},
        check=lambda e: e.code == "UNREACHABLE",
    ),
    ErrorCase(
        "not charging",
        sc.VehicleStateError,
        "stop_charge",
        prepare={"plugged_in": True, "charging": False},
        check=lambda e: e.code == "NOT_CHARGING",
    ),
    ErrorCase(
        "in motion",
        sc.VehicleStateError,
        "unlock",
        prepare={"in_motion": True},
        check=lambda e: e.code == "IN_MOTION",
    ),
    ErrorCase(
        "gateway page",
        sc.UnexpectedResponseError,
        fault={"count": 1, "kind": "gateway_html", "status": 502},
        check=lambda e: "Bad Gateway" in (e.description or ""),
    ),
    ErrorCase(
        "bare status",
        sc.UnexpectedResponseError,
        fault={"count": 1, "kind": "http_status", "status": 503},
        check=lambda e: e.status_code == 503,
    ),
    ErrorCase("dropped", sc.SmartcarConnectionError, fault={"count": 1, "kind": "drop"}),
]


@pytest.fixture
def vehicle_for(simulator: RunningSimulator) -> Callable[[ErrorCase], tuple[str, str]]:
    def prepare(case: ErrorCase) -> tuple[str, str]:
        vehicle_id = first(simulator, case.powertrain)["id"]
        if case.prepare:
            simulator.control.patch_vehicle(vehicle_id, **case.prepare)
        if case.fault:
            simulator.control.add_fault(vehicle_id=vehicle_id, **case.fault)
        return vehicle_id, simulator.control.mint_tokens([vehicle_id]).access_token

    return prepare


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sync_errors(
    case: ErrorCase, simulator: RunningSimulator, vehicle_for: Callable[[ErrorCase], tuple[str, str]]
) -> None:
    vehicle_id, token = vehicle_for(case)
    with httpx.Client() as http, pytest.raises(case.error) as raised:
        getattr(sc.Vehicle(vehicle_id, token, origins=simulator.origins, http=http), case.call)(*case.args)
    assert type(raised.value) is case.error
    assert case.check(raised.value), repr(raised.value)


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=str)
async def test_async_errors(
    case: ErrorCase, simulator: RunningSimulator, vehicle_for: Callable[[ErrorCase], tuple[str, str]]
) -> None:
    vehicle_id, token = vehicle_for(case)
    async with httpx.AsyncClient() as http:
        vehicle = sc.AsyncVehicle(vehicle_id, token, origins=simulator.origins, http=http)
        with pytest.raises(case.error) as raised:
            await getattr(vehicle, case.call)(*case.args)
    assert type(raised.value) is case.error
    assert case.check(raised.value), repr(raised.value)


def test_authentication_errors_for_bad_and_expired_tokens(simulator: RunningSimulator) -> None:
    vehicle_id = first(simulator, "BEV")["id"]
    tokens = simulator.control.mint_tokens([vehicle_id], expires_in=60)
    with httpx.Client() as http:
        with pytest.raises(sc.AuthenticationError) as bad:
            sc.Vehicle(vehicle_id, "not-a-token", origins=simulator.origins, http=http).odometer()
        assert bad.value.status_code == 401
        assert bad.value.retry_class is sc.RetryClass.REFRESH_TOKEN
        vehicle = sc.Vehicle(vehicle_id, tokens.access_token, origins=simulator.origins, http=http)
        assert vehicle.odometer().distance > 0
        simulator.control.advance_clock(61)
        with pytest.raises(sc.AuthenticationError):
            vehicle.odometer()


def test_permission_errors_follow_the_scope(simulator: RunningSimulator) -> None:
    vehicle_id = first(simulator, "BEV")["id"]
    tokens = simulator.control.mint_tokens([vehicle_id], scope=["read_odometer"])
    other = first(simulator, "ICE")["id"]
    with httpx.Client() as http:
        vehicle = sc.Vehicle(vehicle_id, tokens.access_token, origins=simulator.origins, http=http)
        assert vehicle.odometer().distance > 0
        with pytest.raises(sc.PermissionDeniedError) as raised:
            vehicle.lock()
        assert (raised.value.status_code, raised.value.code) == (403, None)
        with pytest.raises(sc.PermissionDeniedError):
            vehicle.get_signal("closure-islocked")
        signals = {s.code: s for s in vehicle.get_signals().signals}
        assert signals["odometer-traveleddistance"].status == "SUCCESS"
        assert signals["closure-islocked"].error == {"type": "PERMISSION", "code": None}
        with pytest.raises(sc.PermissionDeniedError):
            sc.Vehicle(other, tokens.access_token, origins=simulator.origins, http=http).odometer()


def test_oauth_errors(simulator: RunningSimulator) -> None:
    client = sc.AuthClient(simulator.client_id, "wrong-secret", origins=simulator.origins)
    with pytest.raises(sc.OAuthError) as raised:
        client.exchange_refresh_token("whatever")
    assert (raised.value.status_code, raised.value.type) == (401, "invalid_client")
    client = sc.AuthClient(simulator.client_id, simulator.client_secret, origins=simulator.origins)
    with pytest.raises(sc.OAuthError) as unknown:
        client.exchange_refresh_token("not-issued")
    assert (unknown.value.status_code, unknown.value.type) == (400, "invalid_grant")


def test_timeouts_from_slow_answers(simulator: RunningSimulator) -> None:
    vehicle_id = first(simulator, "BEV")["id"]
    token = simulator.control.mint_tokens([vehicle_id]).access_token
    simulator.control.add_fault(vehicle_id=vehicle_id, path="odometer", count=1, kind="slow", seconds=2)
    with httpx.Client() as http:
        vehicle = sc.Vehicle(vehicle_id, token, origins=simulator.origins, http=http, timeout=0.3)
        with pytest.raises(sc.SmartcarTimeoutError) as raised:
            vehicle.odometer()
        assert raised.value.ambiguous
        assert vehicle.odometer().distance > 0  # the fault fired once


def test_api_v1_answers_errors_in_the_v1_shape(simulator: RunningSimulator) -> None:
    vehicle_id = first(simulator, "BEV")["id"]
    token = simulator.control.mint_tokens([vehicle_id]).access_token
    simulator.control.patch_vehicle(vehicle_id, doors_open=True)
    vehicle = sc.Vehicle(vehicle_id, token, version="1.0", origins=simulator.origins)
    with pytest.raises(sc.VehicleStateError) as raised:
        vehicle.lock()
    assert raised.value.body["error"] == "vehicle_state_error"
    assert raised.value.code == "DOOR_OPEN"
    with pytest.raises(sc.ResourceNotFoundError) as version:
        sc.Vehicle(vehicle_id, token, version="9", origins=simulator.origins).odometer()
    assert version.value.code == "VERSION"
