"""The Smartcar calls of one Connect callback: exchange the code, then learn whose vehicles were shared.

An owner waits in the browser meanwhile, so transient failures are retried (`RetryPolicy`) but only
briefly: a few attempts within a few seconds, and a Retry-After longer than that is a failure now rather
than a page that hangs. Retrying the exchange is safe: a code that Smartcar did take is refused the second
time (`invalid_grant`), which the owner sees as an expired session, never as two grants.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from smartcar_core.auth import AsyncAuthClient, Mode
from smartcar_core.client import AsyncSmartcar
from smartcar_core.config import Origins
from smartcar_core.errors import OAuthError, SmartcarError
from smartcar_core.results import Access
from smartcar_core.retry import Action, RetryPolicy
from smartcar_core.transport import make_async_client

T = TypeVar("T")

CALL_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
"""Per Smartcar call: token and vehicle-list calls answer in well under a second when Smartcar is well."""
RETRY_POLICY = RetryPolicy(
    max_attempts=3, base_delay=0.25, max_delay=1.0, max_retry_after=2.0, long_max_attempts=1
)
MAX_WAIT_SECONDS = 2.0
"""The longest single wait before a retry; a Retry-After beyond it fails the call at once."""
BAD_REQUEST = 400
PAGE_SIZE = 50
MAX_VEHICLES = 1000
"""An owner with more vehicles than this is not a person at a browser: stop listing there."""


class SmartcarCallError(Exception):
    """A Smartcar call of the callback failed for good; `step` names it, `error` is Smartcar's (its
    message holds no token or code), `attempts` how often it was tried."""

    def __init__(self, step: str, error: SmartcarError, *, attempts: int) -> None:
        super().__init__(f"{step} failed after {attempts} attempt(s): {error.type}:{error.code}")
        self.step = step
        self.error = error
        self.attempts = attempts

    @property
    def refused_code(self) -> bool:
        """Smartcar refused the authorization code itself (spent, expired, another redirect URI's)."""
        return (
            self.step == "exchange_code"
            and isinstance(self.error, OAuthError)
            and self.error.status_code == BAD_REQUEST
        )


@dataclass(frozen=True, slots=True)
class Owner:
    user_id: str
    vehicle_ids: list[str]


class ConnectCalls:
    """The async Smartcar clients of the Connect flow, on one pooled httpx client (`http`, or one of its
    own, which `aclose` closes)."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        mode: Mode,
        origins: Origins,
        http: httpx.AsyncClient | None = None,
        policy: RetryPolicy = RETRY_POLICY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._owns_http = http is None
        self.http = http or make_async_client()
        self.auth = AsyncAuthClient(
            client_id,
            client_secret,
            redirect_uri,
            mode,
            origins=origins,
            http=self.http,
            timeout=CALL_TIMEOUT,
        )
        self.api = AsyncSmartcar(origins=origins, http=self.http, timeout=CALL_TIMEOUT)
        self.policy = policy
        self._sleep = sleep

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def exchange(self, code: str) -> Access:
        return await self._retried("exchange_code", lambda: self.auth.exchange_code(code))

    async def owner(self, access_token: str) -> Owner:
        """The Smartcar user and every vehicle the grant covers (all pages of the list)."""
        user = await self._retried("get_user", lambda: self.api.get_user(access_token))
        vehicles: list[str] = []
        while len(vehicles) < MAX_VEHICLES:
            page = await self._retried(
                "get_vehicles",
                functools.partial(
                    self.api.get_vehicles, access_token, {"limit": PAGE_SIZE, "offset": len(vehicles)}
                ),
            )
            vehicles.extend(page.vehicles)
            if not page.vehicles or len(vehicles) >= page.paging.count:
                break
        return Owner(user.id, list(dict.fromkeys(vehicles)))

    async def _retried(self, step: str, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except SmartcarError as error:
                decision = self.policy.decide(error, attempt)
                too_long = error.retry_after is not None and error.retry_after > MAX_WAIT_SECONDS
                if decision.action is not Action.RETRY or too_long:
                    raise SmartcarCallError(step, error, attempts=attempt) from None
                await self._sleep(min(decision.delay, MAX_WAIT_SECONDS))
