"""No token, client secret or AMT in a repr, a str or an error message."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from core.support import ORIGINS, VEHICLE_ID, Harness, settle
from smartcar_core import (
    Access,
    AsyncAuthClient,
    AsyncSmartcar,
    AsyncVehicle,
    AuthClient,
    OAuthError,
    Smartcar,
    SmartcarConnectionError,
    SmartcarError,
    Vehicle,
)
from smartcar_core.protocol import Call

pytestmark = pytest.mark.anyio

ACCESS = "tok-access-SECRET"
REFRESH = "tok-refresh-SECRET"
CLIENT_SECRET = "client-SECRET-value"
AMT = "amt-SECRET-value"
SECRETS = (ACCESS, REFRESH, CLIENT_SECRET, AMT, "SECRET")


def assert_no_secret(*shown: object) -> None:
    for thing in shown:
        for text in (repr(thing), str(thing)):
            for secret in SECRETS:
                assert secret not in text, f"{secret!r} shown in {text!r}"


def test_clients_and_vehicles_hide_their_credentials() -> None:
    auth = AuthClient("client-id", CLIENT_SECRET, "https://example.com/cb", origins=ORIGINS)
    async_auth = AsyncAuthClient("client-id", CLIENT_SECRET, origins=ORIGINS)
    vehicle = Vehicle(VEHICLE_ID, ACCESS, origins=ORIGINS)
    async_vehicle = AsyncVehicle(VEHICLE_ID, ACCESS, "imperial", origins=ORIGINS)

    assert_no_secret(auth, async_auth, vehicle, async_vehicle, Smartcar(), AsyncSmartcar())
    assert (
        repr(auth) == "AuthClient(client_id='client-id', redirect_uri='https://example.com/cb', mode='live')"
    )
    assert repr(vehicle) == f"Vehicle(vehicle_id='{VEHICLE_ID}', unit_system='metric', version='2.0')"
    assert repr(async_vehicle.with_timeout(1.0)).startswith("AsyncVehicle(vehicle_id=")


def test_access_hides_both_tokens() -> None:
    access = Access(
        access_token=ACCESS,
        refresh_token=REFRESH,
        expiration=datetime(2030, 1, 1, tzinfo=UTC),
        refresh_expiration=datetime(2030, 3, 2, tzinfo=UTC),
    )

    assert_no_secret(access)
    assert (
        repr(access)
        == "Access(expiration=2030-01-01T00:00:00+00:00, refresh_expiration=2030-03-02T00:00:00+00:00)"
    )


def test_calls_hide_their_authorization_and_form() -> None:
    vehicle = Vehicle(VEHICLE_ID, ACCESS, origins=ORIGINS)
    auth = AuthClient("client-id", CLIENT_SECRET, origins=ORIGINS)
    smartcar = Smartcar(origins=ORIGINS)

    calls: list[Call[Any]] = [
        type(vehicle).odometer.build(vehicle),
        type(vehicle).unsubscribe.build(vehicle, AMT, "wh"),
        type(auth).exchange_refresh_token.build(auth, REFRESH),
        type(smartcar).get_connections.build(smartcar, AMT),
        type(smartcar).get_user.build(smartcar, ACCESS),
    ]

    assert_no_secret(*calls)
    assert all(call.headers["authorization"] for call in calls)  # the Calls do carry them


async def test_errors_of_authenticated_calls_show_no_token(harness: Harness) -> None:
    harness.router.post(url__startswith="https://auth.smartcar.com").respond(
        400, json={"error": "invalid_grant", "error_description": "Invalid or expired refresh token"}
    )
    harness.router.get(url__startswith="https://api.smartcar.com").mock(
        side_effect=httpx.ConnectError("refused")
    )
    auth = harness.auth(client_secret=CLIENT_SECRET)

    with pytest.raises(OAuthError) as refused:
        await settle(auth.exchange_refresh_token(REFRESH))
    with pytest.raises(SmartcarConnectionError) as unreachable:
        await settle(harness.vehicle(access_token=ACCESS).odometer())

    for caught in (refused, unreachable):
        error: SmartcarError = caught.value
        assert_no_secret(error, error.message, error.body, error.args)
        assert all(secret not in "".join(traceback.format_exception(error)) for secret in SECRETS)
