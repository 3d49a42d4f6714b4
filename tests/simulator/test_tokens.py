"""The token endpoint: codes, access-token expiry, and refresh-token rotation with its grace period."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import smartcar_core as sc
from smartcar_simulator.testing import RunningSimulator, run_simulator


def _auth(sim: RunningSimulator, redirect_uri: str | None = "https://app.example/cb") -> sc.AuthClient:
    return sc.AuthClient(sim.client_id, sim.client_secret, redirect_uri, origins=sim.origins)


def _code(client: sc.AuthClient, **options: str) -> str:
    answer = httpx.get(client.get_auth_url(["read_odometer"], options or None), follow_redirects=False)  # type: ignore[arg-type]
    return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]


def test_a_used_refresh_token_works_inside_the_grace_period_and_not_after(
    simulator: RunningSimulator,
) -> None:
    client = _auth(simulator)
    first = client.exchange_code(_code(client))
    second = client.exchange_refresh_token(first.refresh_token)
    simulator.control.advance_clock(30)  # the default grace is 60 s
    again = client.exchange_refresh_token(first.refresh_token)
    assert len({first.access_token, second.access_token, again.access_token}) == 3
    simulator.control.advance_clock(31)
    with pytest.raises(sc.OAuthError) as raised:
        client.exchange_refresh_token(first.refresh_token)
    assert raised.value.type == "invalid_grant"
    assert client.exchange_refresh_token(second.refresh_token).access_token  # the rotated one lives on


def test_the_grace_period_is_configurable() -> None:
    with run_simulator(vehicles=2, refresh_grace=0) as simulator:
        client = _auth(simulator)
        tokens = simulator.control.mint_tokens(user_id=simulator.control.users()[0]["id"])
        client.exchange_refresh_token(tokens.refresh_token)
        simulator.control.advance_clock(0.5)
        with pytest.raises(sc.OAuthError):
            client.exchange_refresh_token(tokens.refresh_token)


def test_access_tokens_expire_after_the_configured_time() -> None:
    with run_simulator(vehicles=2, access_token_ttl=30) as simulator:
        client = _auth(simulator)
        access = client.exchange_code(_code(client))
        assert access.expires_in == 30
        smartcar = sc.Smartcar(origins=simulator.origins)
        assert smartcar.get_user(access.access_token).id
        simulator.control.advance_clock(31)
        with pytest.raises(sc.AuthenticationError):
            smartcar.get_user(access.access_token)
        refreshed = client.exchange_refresh_token(access.refresh_token)
        assert smartcar.get_user(refreshed.access_token).id


def test_codes_are_single_use_expire_and_remember_their_redirect_uri(simulator: RunningSimulator) -> None:
    client = _auth(simulator)
    code = _code(client)
    other = _auth(simulator, "https://elsewhere.example/cb")
    with pytest.raises(sc.OAuthError, match="redirect_uri"):
        other.exchange_code(code)
    client.exchange_code(code)
    with pytest.raises(sc.OAuthError):
        client.exchange_code(code)
    late = _code(client)
    simulator.control.advance_clock(601)
    with pytest.raises(sc.OAuthError):
        client.exchange_code(late)


def test_malformed_token_requests_get_oauth_errors(simulator: RunningSimulator) -> None:
    url = f"{simulator.url}/oauth/token"
    credentials = (simulator.client_id, simulator.client_secret)
    cases = [
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, 400, "invalid_request"),
        ({"grant_type": "refresh_token"}, 400, "invalid_request"),
    ]
    for form, status, error in cases:
        answer = httpx.post(url, data=form, auth=credentials)
        assert (answer.status_code, answer.json()["error"]) == (status, error)
    no_auth = httpx.post(url, data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert (no_auth.status_code, no_auth.json()["error"]) == (401, "invalid_client")
    tokens = simulator.control.mint_tokens(user_id=simulator.control.users()[0]["id"])
    in_form = httpx.post(
        url + "/",  # the trailing slash some SDKs send
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token,
            "client_id": simulator.client_id,
            "client_secret": simulator.client_secret,
        },
    )
    assert in_form.status_code == 200
    assert set(in_form.json()) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert in_form.headers["cache-control"] == "no-store"
