"""AuthClient and AsyncAuthClient: the Connect URL, both token exchanges, and the Access they return."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.support import (
    AUTH,
    CLIENT_ID,
    CLIENT_SECRET,
    CONNECT,
    Harness,
    assert_user_agent,
    basic,
    query,
    settle,
)
from smartcar_core import Access, AsyncAuthClient, AuthClient, OAuthError, Origins, UnexpectedResponseError
from smartcar_core.catalogue import RetryClass

pytestmark = pytest.mark.anyio

TOKEN_URL = f"{AUTH}/oauth/token"
CALLBACK = "https://insurance.co/callback"
TOKENS = {
    "access_token": "88704225-9f6c-4919-93e7-e0cec71317ce",
    "token_type": "Bearer",
    "expires_in": 7200,
    "refresh_token": "60a9e801-6d26-4d88-926e-5c7f9fc13486",
}
AUTHORIZE = f"{CONNECT}/oauth/authorize?response_type=code&client_id={CLIENT_ID}"


async def test_auth_url_with_every_option_in_the_node_sdk_order(harness: Harness) -> None:
    client = harness.auth(redirect_uri=CALLBACK)

    url = client.get_auth_url(
        ["read_odometer", "read_vehicle_info"],
        {
            "force_prompt": True,
            "state": "0facda3319",
            "make_bypass": "TESLA",
            "single_select": {"vin": "5YJSA1E14FF101307"},
            "flags": {"country": "DE", "color": "00819D"},
            "user": "61a3e3d2-5198-47ba-aabd-4623ce4a4042",
            "mode": "test",
        },
    )

    assert url == (
        f"{AUTHORIZE}&approval_prompt=force"
        "&redirect_uri=https%3A%2F%2Finsurance.co%2Fcallback"
        "&scope=read_odometer%20read_vehicle_info"
        "&state=0facda3319"
        "&single_select=true&single_select_vin=5YJSA1E14FF101307"
        "&make=TESLA"
        "&flags=country%3ADE%20color%3A00819D"
        "&user=61a3e3d2-5198-47ba-aabd-4623ce4a4042"
        "&mode=test"
    )


async def test_auth_url_without_options_or_redirect_uri(harness: Harness) -> None:
    assert harness.auth().get_auth_url() == f"{AUTHORIZE}&approval_prompt=auto&mode=live"


async def test_auth_url_takes_the_redirect_uri_from_the_environment(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMARTCAR_REDIRECT_URI", "https://example.com/home")

    url = harness.auth().get_auth_url(["read_vin"])

    assert url == (
        f"{AUTHORIZE}&approval_prompt=auto&redirect_uri=https%3A%2F%2Fexample.com%2Fhome&scope=read_vin&mode=live"
    )


@pytest.mark.parametrize(
    ("single_select", "expected"),
    [
        (True, "&single_select=true"),
        (False, "&single_select=false"),
        ({"enabled": True}, "&single_select=true"),
        ({"enabled": False}, "&single_select=false"),
        ({"enabled": "yes"}, ""),
        ({}, ""),
        ({"vin": "VIN1", "enabled": False}, "&single_select=true&single_select_vin=VIN1"),
        ({"vin": ""}, ""),
        (None, ""),
    ],
)
async def test_auth_url_single_select_forms(harness: Harness, single_select: Any, expected: str) -> None:
    url = harness.auth().get_auth_url(None, {"single_select": single_select})

    assert url == f"{AUTHORIZE}&approval_prompt=auto{expected}&mode=live"


@pytest.mark.parametrize(("force_prompt", "expected"), [(True, "force"), (False, "auto"), ("yes", "auto")])
async def test_auth_url_forces_the_prompt_only_for_true(
    harness: Harness, force_prompt: Any, expected: str
) -> None:
    url = harness.auth().get_auth_url([], {"force_prompt": force_prompt})

    assert url == f"{AUTHORIZE}&approval_prompt={expected}&scope=&mode=live"


async def test_auth_url_mode_comes_from_the_client_unless_the_option_says(harness: Harness) -> None:
    client = harness.auth(mode="simulated")

    assert client.get_auth_url().endswith("&mode=simulated")
    assert client.get_auth_url(None, {"mode": "live"}).endswith("&mode=live")


async def test_auth_url_refuses_an_unknown_mode_option(harness: Harness) -> None:
    with pytest.raises(ValueError, match="mode must be one of test, live, simulated"):
        harness.auth().get_auth_url(None, {"mode": "sandbox"})  # type: ignore[arg-type]


async def test_auth_url_refuses_a_string_scope(harness: Harness) -> None:
    with pytest.raises(TypeError, match="scope must be a list"):
        harness.auth().get_auth_url("read_vin read_odometer")


async def test_auth_url_encodes_flag_values_and_user(harness: Harness) -> None:
    url = harness.auth().get_auth_url(None, {"flags": {"tesla_auth": True, "x": "a/b c"}, "user": "u 1"})

    assert url.endswith("&flags=tesla_auth%3Atrue%20x%3Aa%2Fb%20c&user=u%201&mode=live")


def test_auth_url_goes_to_the_connect_origin_not_the_api_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCAR_API_ORIGIN", "https://api.example")
    assert AuthClient(CLIENT_ID, CLIENT_SECRET).get_auth_url().startswith(f"{CONNECT}/oauth/authorize?")
    monkeypatch.setenv("SMARTCAR_CONNECT_ORIGIN", "https://connect.example/")
    assert (
        AuthClient(CLIENT_ID, CLIENT_SECRET)
        .get_auth_url()
        .startswith("https://connect.example/oauth/authorize?")
    )


@pytest.mark.parametrize("client_class", [AuthClient, AsyncAuthClient])
def test_deprecated_test_mode_warns_and_picks_test_or_live(client_class: type[AuthClient]) -> None:
    with pytest.warns(DeprecationWarning, match="test_mode is deprecated"):
        on = client_class(CLIENT_ID, CLIENT_SECRET, test_mode=True)
    with pytest.warns(DeprecationWarning, match="test_mode is deprecated"):
        off = client_class(CLIENT_ID, CLIENT_SECRET, mode="test", test_mode=False)
    assert (on.mode, off.mode) == ("test", "live")


def test_an_unknown_mode_is_refused_when_the_client_is_created() -> None:
    with pytest.raises(ValueError, match="mode must be one of test, live, simulated; got 'prod'"):
        AuthClient(CLIENT_ID, CLIENT_SECRET, mode="prod")  # type: ignore[arg-type]


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCAR_CLIENT_ID", "env-id")
    monkeypatch.setenv("SMARTCAR_CLIENT_SECRET", "env-secret")
    client = AuthClient()
    assert client.client_id == "env-id"
    assert client._client_secret == "env-secret"


def test_missing_credentials_are_refused_id_first(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"^SMARTCAR_CLIENT_ID not set or passed as arguments$"):
        AuthClient()
    with pytest.raises(ValueError, match=r"^SMARTCAR_CLIENT_SECRET not set or passed as arguments$"):
        AuthClient(client_id=CLIENT_ID)
    monkeypatch.setenv("SMARTCAR_CLIENT_SECRET", "")
    with pytest.raises(ValueError, match=r"^SMARTCAR_CLIENT_SECRET not set"):
        AuthClient(client_id=CLIENT_ID)


def assert_token_request(harness: Harness, body: bytes) -> None:
    request = harness.last_request()
    assert (request.method, str(request.url.copy_with(query=None))) == ("POST", TOKEN_URL)
    assert request.headers["authorization"] == basic(CLIENT_ID, CLIENT_SECRET)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert_user_agent(request)
    assert request.content == body


def assert_fresh_access(access: Access, before: datetime, after: datetime, expires_in: int = 7200) -> None:
    assert (access.access_token, access.refresh_token) == (TOKENS["access_token"], TOKENS["refresh_token"])
    assert (access.token_type, access.expires_in) == ("Bearer", expires_in)
    assert access.expiration.tzinfo is UTC
    assert (
        before + timedelta(seconds=expires_in) <= access.expiration <= after + timedelta(seconds=expires_in)
    )
    assert access.refresh_expiration - access.expiration == timedelta(days=60) - timedelta(seconds=expires_in)


async def test_exchange_code_posts_the_form_in_order(harness: Harness) -> None:
    harness.router.post(TOKEN_URL).respond(json=TOKENS)
    client = harness.auth(redirect_uri=CALLBACK)

    before = datetime.now(UTC)
    access = await settle(client.exchange_code("auth-code-1"))
    after = datetime.now(UTC)

    assert_token_request(
        harness,
        b"code=auth-code-1&grant_type=authorization_code&redirect_uri=https%3A%2F%2Finsurance.co%2Fcallback",
    )
    assert query(harness.last_request()) == []
    assert_fresh_access(access, before, after)


async def test_exchange_code_without_a_redirect_uri_leaves_the_field_out(harness: Harness) -> None:
    harness.router.post(TOKEN_URL).respond(json=TOKENS)

    await settle(harness.auth().exchange_code("auth-code-1", {"flag": True, "country": "DE"}))

    assert_token_request(harness, b"code=auth-code-1&grant_type=authorization_code")
    assert query(harness.last_request()) == [("flags", "flag:true country:DE")]


async def test_exchange_refresh_token_posts_grant_type_first(harness: Harness) -> None:
    harness.router.post(TOKEN_URL).respond(json=TOKENS)
    client = harness.auth(redirect_uri=CALLBACK)

    before = datetime.now(UTC)
    access = await settle(client.exchange_refresh_token("refresh-1", {"flag": "x"}))
    after = datetime.now(UTC)

    assert_token_request(harness, b"grant_type=refresh_token&refresh_token=refresh-1")
    assert query(harness.last_request()) == [("flags", "flag:x")]
    assert_fresh_access(access, before, after)


async def test_token_url_follows_the_auth_origin(harness: Harness) -> None:
    route = harness.router.post("https://auth.example/oauth/token").respond(json=TOKENS)

    await settle(harness.auth(origins=Origins(auth="https://auth.example/oauth/token")).exchange_code("c"))

    assert route.called


async def test_access_reads_a_minimal_token_answer(harness: Harness) -> None:
    harness.router.post(TOKEN_URL).respond(json={"access_token": "a", "refresh_token": "r"})

    access = await settle(harness.auth().exchange_code("c"))

    assert (access.token_type, access.expires_in) == ("Bearer", 0)
    assert access.is_expired()


async def test_a_refused_grant_is_an_oauth_error(harness: Harness) -> None:
    body = {
        "error": "invalid_grant",
        "error_description": "Unauthorized redirect_uri: http://localhost:8000/exchange",
    }
    harness.router.post(TOKEN_URL).respond(400, json=body, headers={"sc-request-id": "rid"})

    with pytest.raises(OAuthError) as caught:
        await settle(harness.auth().exchange_code("c"))

    error = caught.value
    assert error.message == "invalid_grant - Unauthorized redirect_uri: http://localhost:8000/exchange"
    assert (error.status_code, error.type, error.code, error.request_id) == (
        400,
        "invalid_grant",
        None,
        "rid",
    )
    assert error.retry_class is RetryClass.NEVER


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"access_token": "a-secret-token"}, "refresh_token: Field required"),
        (
            {"access_token": "", "refresh_token": "r-secret-token"},
            "access_token: String should have at least 1",
        ),
        (
            {"access_token": 424242424242, "refresh_token": "r-secret-token"},
            "access_token: Input should be a valid string",
        ),
        (
            {"access_token": "a-secret-token", "refresh_token": "r-secret-token", "expires_in": "soon"},
            "expires_in:",
        ),
        (
            {"access_token": "a-secret-token", "refresh_token": "r-secret-token", "expires_in": -5},
            "expires_in:",
        ),
        (
            {"access_token": "a-secret-token", "refresh_token": "r-secret-token", "expires_in": 1e300},
            "expires_in:",
        ),
        (["a-secret-token"], "Access: Input should be a valid dictionary"),
    ],
)
async def test_a_bad_token_answer_is_an_error_that_never_quotes_a_token(
    harness: Harness, body: Any, problem: str
) -> None:
    harness.router.post(TOKEN_URL).respond(json=body)

    with pytest.raises(UnexpectedResponseError) as caught:
        await settle(harness.auth().exchange_code("c"))

    error = caught.value
    assert problem in error.message
    assert error.body is None
    assert error.__cause__ is None
    assert error.__context__ is None
    shown = "".join(traceback.format_exception(error)) + repr(error) + str(error.args)
    for secret in ("a-secret-token", "r-secret-token", "424242424242"):
        assert secret not in shown


def test_access_expiry_helpers() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    access = Access(
        access_token="a",
        refresh_token="r",
        expiration=now + timedelta(seconds=300),
        refresh_expiration=now + timedelta(days=60),
    )
    assert not access.is_expired(now=now)
    assert not access.expires_within(299, now=now)
    assert access.expires_within(300, now=now)
    assert access.is_expired(now=now + timedelta(seconds=300))
    assert not access.refresh_expired(now=now)
    assert access.refresh_expired(now=now + timedelta(days=60))
    assert access.expires_within(10**9)
    assert not access.refresh_expired()
