"""Smartcar Connect on the receiver: `GET /connect` sends an owner to Connect, `GET /callback` takes them
back, stores the grant's tokens where the workers read them and asks for each vehicle's subscription.

Why the receiver: it is the one public HTTP service, and Connect's redirect is a browser request like any
other. It stays apart from the workers: tokens are sealed by `eventstore.tokens_at_rest` (the workers'
own way), and the subscriptions are lifecycle jobs (`eventstore.lifecycle`) that the workers perform.

The state that ties a callback to its `/connect` is random, single-use, short-lived
(`RECEIVER_CONNECT_STATE_SECONDS`) and bound to the browser by a cookie (`eventstore.connect`): HttpOnly,
SameSite=Lax (sent on Connect's top-level redirect back, not on other sites' subrequests), Secure unless
`SMARTCAR_ENV=development`, Max-Age = the state's life, and `Path` = the redirect URI's directory (`/`):
`/connect` sees the cookie it set, so two tabs of one browser share one binding and both finish. Every
refusal happens before anything is exchanged. A reconnect is safe at any point: the grant id is the owner
and their vehicles, so the same consent replaces its own pair, and a subscribe job asked for twice is one
job.

Nothing secret reaches a page or a log line: no token, client secret, code, state or cookie value.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from cryptography.fernet import MultiFernet
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from eventstore.client import connect as connect_redis
from eventstore.connect import TOKEN_PATTERN, ConnectStateError, ConnectStates, new_token
from eventstore.grants import GrantMovedError, GrantStore
from eventstore.keys import KeySpace
from eventstore.lifecycle import LifecycleAction, LifecycleStore
from eventstore.tokens_at_rest import cipher_of, store_pair
from receiver.connect_calls import ConnectCalls, Owner, SmartcarCallError
from receiver.metrics import CONNECT_ERRORS, ConnectOutcome, ReceiverMetrics
from receiver.pages import Pages, VehicleLine
from receiver.settings import MAX_CONNECT_USER_LENGTH, ReceiverSettings
from smartcar_core.auth import AuthUrlOptions
from smartcar_core.config import Origins
from smartcar_core.results import Access

CONNECT_PATH = "/connect"
CALLBACK_PATH = "/callback"
COOKIE_NAME = "smartcar_connect"
MAX_CODE_LENGTH = 1024
MAX_DESCRIPTION_LOGGED = 200
VIN_PATTERN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
"""A vehicle identification number (ISO 3779: 17 characters, no I, O or Q), for `?vin=` on /connect."""
PENDING = "subscription pending"
SUBSCRIBED = "subscription done"


@dataclass(frozen=True, slots=True)
class Stored:
    grant_id: str
    vehicles: list[VehicleLine]


class ConnectFlow:
    """The two routes of one app, with the clients they use: settings and clients are passed in
    (`store_client`, a sync client for the grant and lifecycle stores, and `http`, for Smartcar, are made
    from the settings when not given), and `aclose` (the app's shutdown) closes what this object opened."""

    def __init__(
        self,
        settings: ReceiverSettings,
        *,
        redis_client: AsyncRedis,
        metrics: ReceiverMetrics,
        log: Any,
        origins: Origins | None = None,
        http: httpx.AsyncClient | None = None,
        store_client: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.log = log
        self.pages = Pages()
        self._parts: _Parts | None = None
        if settings.connect_enabled:
            origins = origins or Origins.from_env()
            self._parts = _Parts.build(settings, redis_client, origins, http=http, store_client=store_client)

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route(CONNECT_PATH, _get_only(self.start), methods=["GET"]),
            Route(CALLBACK_PATH, _get_only(self.callback), methods=["GET"]),
        ]

    async def aclose(self) -> None:
        if self._parts is not None:
            await self._parts.calls.aclose()
            if self._parts.owns_store_client:
                self._parts.store_client.close()

    def _count(self, outcome: ConnectOutcome) -> None:
        self.metrics.connect[outcome].inc()

    # --- GET /connect ---

    async def start(self, request: Request) -> Response:
        """302 to Connect, with a new state bound to this browser's cookie."""
        parts = self._parts
        if parts is None:
            self._count(ConnectOutcome.NOT_CONFIGURED)
            return self.pages.not_configured()
        user = request.query_params.get("user") or self.settings.connect_user
        if user is not None and (len(user) > MAX_CONNECT_USER_LENGTH or not user.isprintable()):
            self._count(ConnectOutcome.BAD_REQUEST)
            return self.pages.bad_request(
                f"The user must be at most {MAX_CONNECT_USER_LENGTH} printable characters."
            )
        reconsent = request.query_params.get("reconsent") == "1"
        vin = request.query_params.get("vin")
        if vin is not None and not VIN_PATTERN.fullmatch(vin):
            self._count(ConnectOutcome.BAD_REQUEST)
            return self.pages.bad_request("The vin must be 17 letters and digits (no I, O or Q).")
        cookie = request.cookies.get(COOKIE_NAME)
        # One binding per browser, kept while it is valid: two tabs started together both finish.
        binding = cookie if cookie and TOKEN_PATTERN.fullmatch(cookie) else new_token()
        try:
            state = await parts.states.issue(binding)
        except (RedisError, OSError) as error:
            self._count(ConnectOutcome.STORE_UNAVAILABLE)
            self.log.warning("connect_store_unavailable", step="issue_state", error=type(error).__name__)
            return self.pages.store_unavailable()
        response = RedirectResponse(
            parts.calls.auth.get_auth_url(
                self.settings.connect_scopes or None, self._options(state, user, reconsent=reconsent, vin=vin)
            ),
            status_code=302,
        )
        response.headers["cache-control"] = "no-store"
        response.headers["referrer-policy"] = "no-referrer"
        response.set_cookie(
            COOKIE_NAME,
            binding,
            max_age=self.settings.connect_state_seconds,
            path=self.settings.connect_cookie_path,
            secure=self.settings.smartcar_env != "development",
            httponly=True,
            samesite="lax",
        )
        self._count(ConnectOutcome.STARTED)
        mode = self.settings.connect_mode
        self.log.info("connect_started", mode=mode, user_given=user is not None, reconsent=reconsent)
        return response

    def _options(self, state: str, user: str | None, *, reconsent: bool, vin: str | None) -> AuthUrlOptions:
        """The Connect options of the settings; a re-consent (`?reconsent=1`, the URL the workers give an
        owner whose access was lost) always asks again, for the one vehicle (`?vin=`) when it is known."""
        settings = self.settings
        options: AuthUrlOptions = {"state": state, "mode": settings.connect_mode}
        if settings.connect_force_prompt or reconsent:
            options["force_prompt"] = True
        if vin is not None:
            options["single_select"] = {"vin": vin}
        elif settings.connect_single_select or reconsent:
            options["single_select"] = True
        if settings.connect_make_bypass:
            options["make_bypass"] = settings.connect_make_bypass
        if settings.connect_flags:
            options["flags"] = settings.connect_flags
        if user is not None:
            options["user"] = user
        return options

    # --- GET /callback ---

    async def callback(self, request: Request) -> Response:
        """The state checked first, then Connect's error or the code: exchanged, listed, stored."""
        parts = self._parts
        if parts is None:
            self._count(ConnectOutcome.NOT_CONFIGURED)
            return self.pages.not_configured()
        query = request.query_params
        try:
            await parts.states.consume(query.get("state"), request.cookies.get(COOKIE_NAME))
        except ConnectStateError as refused:
            self._count(ConnectOutcome.REFUSED_STATE)
            self.log.warning("connect_state_refused", reason=refused.reason.value)
            return self.pages.refused_state()
        except (RedisError, OSError) as error:
            self._count(ConnectOutcome.STORE_UNAVAILABLE)
            self.log.warning("connect_store_unavailable", step="consume_state", error=type(error).__name__)
            return self.pages.store_unavailable()
        connect_error = query.get("error")
        if connect_error is not None:
            return self._connect_error(connect_error, query.get("error_description"))
        code = query.get("code")
        if not code or len(code) > MAX_CODE_LENGTH:
            self._count(ConnectOutcome.BAD_REQUEST)
            self.log.warning("connect_bad_callback", problem="no code" if not code else "code too long")
            return self.pages.bad_request("Smartcar's answer lacks an authorization code.")
        return await self._finish(parts, code)

    def _connect_error(self, error: str, description: str | None) -> Response:
        known = error if error in CONNECT_ERRORS else "other"
        self._count(ConnectOutcome.CONNECT_ERROR)
        self.metrics.connect_errors[known].inc()
        level = "warning" if known in ("configuration_error", "server_error", "other") else "info"
        getattr(self.log, level)(
            "connect_error",
            error=known,
            description=(description or "")[:MAX_DESCRIPTION_LOGGED],
        )
        return self.pages.connect_error(known)

    async def _finish(self, parts: _Parts, code: str) -> Response:
        try:
            access = await parts.calls.exchange(code)
            owner = await parts.calls.owner(access.access_token)
        except SmartcarCallError as failed:
            return self._call_failed(failed)
        if not owner.vehicle_ids:
            self._count(ConnectOutcome.NO_VEHICLES)
            self.log.info("connect_no_vehicles", user_id=owner.user_id)
            return self.pages.no_vehicles()
        try:
            stored = await asyncio.to_thread(parts.store, access, owner)
        except (RedisError, OSError, GrantMovedError) as error:
            self._count(ConnectOutcome.STORE_UNAVAILABLE)
            self.log.warning("connect_store_unavailable", step="store_grant", error=type(error).__name__)
            return self.pages.store_unavailable()
        except ValueError:  # a vehicle id the store cannot keep (a comma in it): Smartcar's answer is wrong
            self._count(ConnectOutcome.SMARTCAR_UNAVAILABLE)
            self.log.warning(
                "connect_bad_vehicle_ids", user_id=owner.user_id, vehicles=len(owner.vehicle_ids)
            )
            return self.pages.smartcar_unavailable()
        self._count(ConnectOutcome.CONNECTED)
        self.log.info(
            "connect_completed",
            user_id=owner.user_id,
            grant_id=stored.grant_id,
            vehicle_ids=owner.vehicle_ids,
            subscriptions_pending=sum(line.status == PENDING for line in stored.vehicles),
        )
        return self.pages.connected(stored.vehicles)

    def _call_failed(self, failed: SmartcarCallError) -> Response:
        error = failed.error
        fields = {
            "step": failed.step,
            "attempts": failed.attempts,
            "type": error.type,
            "code": error.code,
            "status_code": error.status_code,
            "request_id": error.request_id,
        }
        if failed.refused_code:
            self._count(ConnectOutcome.CODE_REFUSED)
            self.log.warning("connect_code_refused", **fields)
            return self.pages.code_refused()
        self._count(ConnectOutcome.SMARTCAR_UNAVAILABLE)
        self.log.warning("connect_smartcar_failed", **fields)
        return self.pages.smartcar_unavailable()


def _get_only(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Starlette answers HEAD on GET routes; here a HEAD (a link checker's, a mail scanner's) gets an empty
    200 and must not spend the state or the code that the owner's own GET will bring."""

    async def get_only(request: Request) -> Response:
        if request.method != "GET":
            return Response(status_code=200, headers={"cache-control": "no-store"})
        return await endpoint(request)

    return get_only


@dataclass(frozen=True, slots=True)
class _Parts:
    """What an enabled Connect holds: the state store (async), the Smartcar clients, and the grant and
    lifecycle stores on a sync client of their own (they are the workers' sync stores, run in a thread)."""

    states: ConnectStates
    calls: ConnectCalls
    store_client: redis.Redis
    grants: GrantStore
    lifecycle: LifecycleStore
    cipher: MultiFernet
    owns_store_client: bool

    @classmethod
    def build(
        cls,
        settings: ReceiverSettings,
        client: AsyncRedis,
        origins: Origins,
        *,
        http: httpx.AsyncClient | None,
        store_client: redis.Redis | None,
    ) -> _Parts:
        # The settings' own check made these complete (connect_problem); asserted for the type checker.
        assert settings.smartcar_client_id  # noqa: S101
        assert settings.smartcar_client_secret  # noqa: S101
        assert settings.smartcar_redirect_uri  # noqa: S101
        assert settings.token_encryption_key  # noqa: S101
        keys = KeySpace(settings.event_key_prefix)
        owns_store_client = store_client is None
        store_client = store_client or connect_redis(settings.redis_url, timeout=settings.redis_timeout)
        calls = ConnectCalls(
            client_id=settings.smartcar_client_id,
            client_secret=settings.smartcar_client_secret.get_secret_value(),
            redirect_uri=settings.smartcar_redirect_uri,
            mode=settings.connect_mode,
            origins=origins,
            http=http,
        )
        return cls(
            states=ConnectStates(client, keys, seconds=settings.connect_state_seconds),
            calls=calls,
            store_client=store_client,
            grants=GrantStore(store_client, keys),
            lifecycle=LifecycleStore(store_client, keys),
            cipher=cipher_of(settings.token_encryption_key.get_secret_value()),
            owns_store_client=owns_store_client,
        )

    def store(self, access: Access, owner: Owner) -> Stored:
        """The pair stored for the owner's vehicles, one subscribe job asked for each, and whether each
        job still waits. Every step repeats safely: a reconnect after a failure here redoes them all."""
        now = time.time()
        grant_id = store_pair(
            self.grants,
            self.cipher,
            vehicle_ids=owner.vehicle_ids,
            access_token=access.access_token,
            refresh_token=access.refresh_token,
            expires_at=access.expiration.timestamp(),
            refresh_expires_at=access.refresh_expiration.timestamp(),
            user_id=owner.user_id,
            now=now,
        )
        for vehicle_id in owner.vehicle_ids:
            self.lifecycle.request(
                LifecycleAction.SUBSCRIBE, vehicle_id, user_id=owner.user_id, reason="connect", now=now
            )
        lines = [
            VehicleLine(
                vehicle_id,
                PENDING if self.lifecycle.get(LifecycleAction.SUBSCRIBE.value, vehicle_id) else SUBSCRIBED,
            )
            for vehicle_id in owner.vehicle_ids
        ]
        return Stored(grant_id, lines)
