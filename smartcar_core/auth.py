"""`AuthClient` and `AsyncAuthClient`: Smartcar Connect URLs and the OAuth token exchanges."""

from __future__ import annotations

import base64
import os
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NotRequired, TypedDict
from urllib.parse import quote, urlencode

import httpx
import pydantic

from smartcar_core.config import Origins
from smartcar_core.endpoint import AsyncSender, SyncSender, endpoint
from smartcar_core.protocol import Call, describe_validation_error, flags_param, invalid_response, json_body
from smartcar_core.results import Access

Mode = Literal["live", "test", "simulated"]
MODES: tuple[str, ...] = ("test", "live", "simulated")
REFRESH_TOKEN_LIFETIME = timedelta(days=60)


class SingleSelect(TypedDict, total=False):
    enabled: bool
    vin: str


class AuthUrlOptions(TypedDict, total=False):
    """The options of `get_auth_url`, with the official Python SDK's keys."""

    force_prompt: bool
    state: str
    make_bypass: str
    single_select: bool | SingleSelect
    flags: Mapping[str, Any]
    user: str
    mode: NotRequired[Mode]


def resolve_mode(mode: str | None, test_mode: bool | None) -> str | None:
    """The Connect mode from `mode` or the deprecated `test_mode`; ValueError for anything else."""
    if test_mode is not None:
        warnings.warn("test_mode is deprecated, use mode='test'", DeprecationWarning, stacklevel=3)
        return "test" if test_mode is True else "live"
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def client_credentials(client_id: str | None, client_secret: str | None) -> tuple[str, str]:
    """The application's credentials, from the arguments or SMARTCAR_CLIENT_ID / SMARTCAR_CLIENT_SECRET."""
    client_id = client_id or os.environ.get("SMARTCAR_CLIENT_ID")
    if not client_id:
        raise ValueError("SMARTCAR_CLIENT_ID not set or passed as arguments")
    client_secret = client_secret or os.environ.get("SMARTCAR_CLIENT_SECRET")
    if not client_secret:
        raise ValueError("SMARTCAR_CLIENT_SECRET not set or passed as arguments")
    return client_id, client_secret


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class TokenAnswer(pydantic.BaseModel):
    """The fields of Smartcar's token answer that `Access` needs (others are ignored)."""

    access_token: str = pydantic.Field(min_length=1)
    refresh_token: str = pydantic.Field(min_length=1)
    # At most ten years: a larger value is nonsense, and an absurd one would overflow a datetime.
    expires_in: int = pydantic.Field(default=0, ge=0, le=10 * 366 * 24 * 3600)
    token_type: str | None = None


def parse_access(response: httpx.Response) -> Access:
    try:
        answer = TokenAnswer.model_validate(json_body(response))
    except pydantic.ValidationError as error:
        problem = describe_validation_error(error)
    else:
        now = datetime.now(UTC)
        return Access(
            access_token=answer.access_token,
            refresh_token=answer.refresh_token,
            expiration=now + timedelta(seconds=answer.expires_in),
            refresh_expiration=now + REFRESH_TOKEN_LIFETIME,
            token_type=answer.token_type or "Bearer",
            expires_in=answer.expires_in,
        )
    # Raised outside the `except` block: pydantic's error quotes its input (the tokens), so it must not
    # travel on even as this error's context. The body is not kept for the same reason.
    raise invalid_response(response, "Access", problem, None)


class AuthAPI:
    """Credentials and the OAuth endpoints, shared by the sync and async clients."""

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        mode: Mode = "live",
        test_mode: bool | None = None,
        *,
        origins: Origins | None = None,
    ) -> None:
        self.client_id, self._client_secret = client_credentials(client_id, client_secret)
        self.redirect_uri = redirect_uri or os.environ.get("SMARTCAR_REDIRECT_URI") or None
        self.mode = resolve_mode(mode, test_mode) or "live"
        self.origins = origins or Origins.from_env()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(client_id={self.client_id!r}, redirect_uri={self.redirect_uri!r}, "
            f"mode={self.mode!r})"
        )

    def get_auth_url(self, scope: Sequence[str] | None = None, options: AuthUrlOptions | None = None) -> str:
        """The Smartcar Connect URL to send a user to; parameters in the Node SDK's order."""
        if isinstance(scope, str):
            raise TypeError("scope must be a list of permission names, not a string")
        options = options or {}
        params: list[tuple[str, str]] = [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("approval_prompt", "force" if options.get("force_prompt") is True else "auto"),
        ]
        if self.redirect_uri:
            params.append(("redirect_uri", self.redirect_uri))
        if scope is not None:
            params.append(("scope", " ".join(scope)))
        if "state" in options:
            params.append(("state", options["state"]))
        params.extend(_single_select(options.get("single_select")))
        if "make_bypass" in options:
            params.append(("make", options["make_bypass"]))
        params.extend(flags_param(options.get("flags")))
        if "user" in options:
            params.append(("user", options["user"]))
        params.append(("mode", resolve_mode(options.get("mode"), None) or self.mode))
        return f"{self.origins.connect}/oauth/authorize?{urlencode(params, quote_via=quote)}"

    def _token_call(self, form: list[tuple[str, str]], flags: Mapping[str, Any] | None) -> Call[Access]:
        return Call(
            method="POST",
            url=self.origins.token_url,
            parse=parse_access,
            params=flags_param(flags),
            headers={"authorization": basic_auth(self.client_id, self._client_secret)},
            form=form,
        )

    @endpoint
    def exchange_code(self, code: str, flags: Mapping[str, Any] | None = None) -> Call[Access]:
        form = [("code", code), ("grant_type", "authorization_code")]
        if self.redirect_uri:
            form.append(("redirect_uri", self.redirect_uri))
        return self._token_call(form, flags)

    @endpoint
    def exchange_refresh_token(self, token: str, flags: Mapping[str, Any] | None = None) -> Call[Access]:
        return self._token_call([("grant_type", "refresh_token"), ("refresh_token", token)], flags)


def _single_select(value: bool | SingleSelect | None) -> list[tuple[str, str]]:
    if isinstance(value, bool):
        return [("single_select", "true" if value else "false")]
    if not isinstance(value, Mapping):
        return []
    if value.get("vin"):
        return [("single_select", "true"), ("single_select_vin", str(value["vin"]))]
    enabled = value.get("enabled")
    if isinstance(enabled, bool):
        return [("single_select", "true" if enabled else "false")]
    return []


class AuthClient(AuthAPI, SyncSender):
    """Smartcar's OAuth client; token calls are sent synchronously."""

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        mode: Mode = "live",
        test_mode: bool | None = None,
        *,
        origins: Origins | None = None,
        http: httpx.Client | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        AuthAPI.__init__(self, client_id, client_secret, redirect_uri, mode, test_mode, origins=origins)
        SyncSender.__init__(self, http=http, timeout=timeout)


class AsyncAuthClient(AuthAPI, AsyncSender):
    """The same client with coroutine token calls."""

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        mode: Mode = "live",
        test_mode: bool | None = None,
        *,
        origins: Origins | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        AuthAPI.__init__(self, client_id, client_secret, redirect_uri, mode, test_mode, origins=origins)
        AsyncSender.__init__(self, http=http, timeout=timeout)
