"""Smartcar OAuth tokens per user grant, encrypted at rest, refreshed by one worker at a time.

A Connect grant (one user's consent) yields one access token (2 h) and one refresh token (60 days) that
may cover several vehicles. A refresh token rotates: after one use it soon stops working, so two workers
must never refresh with the same one: one worker holds the grant's lock and exchanges it, the others wait
for its result.

The event store keeps the grants (`eventstore.grants`): the pair is encrypted (Fernet, with
`TOKEN_ENCRYPTION_KEY`) before it is stored, so the store never sees a token. How a pair is sealed and
which grant it belongs to is `eventstore.tokens_at_rest`, shared with the receiver's Connect callback. A
refresh is stored only if the grant's `generation` is still the one the refresher read (compare and set),
so a stale writer can never overwrite a newer pair.

Smartcar's refusals are told apart (`_exchange`), because each needs someone else:

- `invalid_client` / `unauthorized_client`: our SMARTCAR_CLIENT_ID/SECRET are wrong, not the user's
  grant. `ClientRejectedError`; the grant is left as it is, so that the next try after the secret is
  fixed succeeds; logged at ERROR (`smartcar_client_rejected`, at most once a minute per process);
- `invalid_grant`: the refresh token is spent or revoked. `GrantRefusedError`; the grant's vehicles are
  held (`eventstore.held`: their events wait for the owner to connect again) and the grant is no longer
  refreshed, until a new pair is stored;
- anything else (Smartcar unreachable, a 5xx, another OAuth error): raised as it is, for the caller's
  retry policy.

A held vehicle's token read raises `VehicleHeldError` without a call: the lookup of its grant tells it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from cryptography.fernet import InvalidToken, MultiFernet

from eventstore.client import connect
from eventstore.grants import GrantInfo, GrantStore
from eventstore.held import HeldEvents
from eventstore.keys import KeySpace
from eventstore.tokens_at_rest import grant_id_for as _grant_id_for
from eventstore.tokens_at_rest import seal, store_pair, unseal
from service_base.logs import get_logger
from smartcar_core.errors import OAuthError
from smartcar_core.results import Access
from workers.token_errors import (
    ClientRejectedError,
    GrantRefusedError,
    TokenError,
    TokenRefreshBusyError,
    VehicleHeldError,
)

if TYPE_CHECKING:
    from workers.metrics import WorkerMetrics
    from workers.settings import WorkerSettings

__all__ = [  # the errors' home is workers.token_errors; their names stay importable from here
    "AccessToken",
    "ClientRejectedError",
    "GrantRefusedError",
    "Refresher",
    "TokenError",
    "TokenRefreshBusyError",
    "TokenStore",
    "VehicleHeldError",
    "grant_id_for",
    "put_tokens",
]
log = get_logger("workers.tokens")
_POLL_SECONDS = 0.05
_CLIENT_REJECTED = frozenset({"invalid_client", "unauthorized_client"})
_CLIENT_LOG_EVERY = 60.0
grant_id_for = _grant_id_for  # its home was here: the name stays importable


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A usable access token. `generation` identifies the pair it came from (see `refresh`)."""

    grant_id: str
    token: str
    generation: int
    expires_at: float

    def __repr__(self) -> str:
        return (
            f"AccessToken(grant_id={self.grant_id!r}, generation={self.generation}, "
            f"expires_at={self.expires_at})"
        )


Refresher = Callable[[str], Access]
"""Exchanges a refresh token for a new pair (`AuthClient.exchange_refresh_token`)."""


class TokenStore:
    def __init__(
        self,
        client: redis.Redis,
        fernet: MultiFernet,
        *,
        keys: KeySpace,
        refresher: Refresher | None = None,
        refresh_margin: float = 300.0,
        lock_lease: float = 60.0,
        lock_wait: float = 30.0,
        cache_seconds: float = 0.0,
        metrics: WorkerMetrics | None = None,
        client_id: str | None = None,
    ) -> None:
        self.grants = GrantStore(client, keys)
        self.client_id = client_id
        """Our SMARTCAR_CLIENT_ID, named when Smartcar rejects it (never the secret)."""
        self.held = HeldEvents(client, keys)
        self.fernet = fernet
        self.refresher = refresher
        self.refresh_margin = refresh_margin
        self.lock_lease = lock_lease
        self.lock_wait = lock_wait
        self.cache_seconds = cache_seconds
        self.metrics = metrics
        # vehicle -> grant, and grant -> (token, read at): a token read from Redis is reused for
        # `cache_seconds` while it is not expiring. Refused tokens never come from here twice: `refresh`
        # compares generations with what is stored.
        self._cached_grants: dict[str, str] = {}
        self._tokens: dict[str, tuple[AccessToken, float]] = {}
        self._client_logged_at = -math.inf  # when smartcar_client_rejected was last logged here

    def __repr__(self) -> str:
        return f"TokenStore(prefix={self.grants.keys.prefix!r})"

    def postpone(self, grant_id: str, until: float) -> None:
        """Try to refresh the grant again only at `until` (its refresh failed and needs the user)."""
        self.grants.postpone(grant_id, until)

    def _encrypt(self, access_token: str, refresh_token: str) -> str:
        return seal(self.fernet, access_token, refresh_token)

    def _decrypt(self, grant_id: str, data: bytes) -> dict[str, str]:
        try:
            pair = unseal(self.fernet, data)
        except InvalidToken:
            raise TokenError(
                f"the tokens of grant {grant_id} cannot be decrypted with TOKEN_ENCRYPTION_KEY "
                "(was the key rotated without keeping the old one?)",
                grant_id=grant_id,
            ) from None
        return {"access_token": pair.access_token, "refresh_token": pair.refresh_token}

    def put(
        self,
        *,
        vehicle_ids: Sequence[str],
        access_token: str,
        refresh_token: str,
        expires_at: float,
        refresh_expires_at: float | None = None,
        user_id: str | None = None,
    ) -> str:
        """Store a token pair for `vehicle_ids`; returns its grant id (see `grant_id_for`)."""
        return store_pair(
            self.grants,
            self.fernet,
            vehicle_ids=vehicle_ids,
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=expires_at,
            refresh_expires_at=refresh_expires_at,
            user_id=user_id,
            now=time.time(),
        )

    def grant_of(self, vehicle_id: str) -> str:
        """The vehicle's grant; `VehicleHeldError` when its access was lost, `TokenError` when it has none."""
        grant, held_since = self.grants.lookup(vehicle_id)
        if held_since is not None:
            raise VehicleHeldError(vehicle_id=vehicle_id, since=held_since)
        if grant is None:
            raise TokenError(
                f"no Smartcar tokens stored for vehicle {vehicle_id} "
                "(put them with `smartcar-events tokens put`)",
                vehicle_id=vehicle_id,
            )
        return grant

    def info(self, grant_id: str) -> GrantInfo | None:
        return self.grants.info(grant_id)

    def _read(self, grant_id: str) -> tuple[AccessToken, str]:
        pair = self.grants.pair(grant_id)
        if pair.data is None:
            raise TokenError(f"grant {grant_id} has no tokens", grant_id=grant_id)
        tokens = self._decrypt(grant_id, pair.data)
        access = AccessToken(grant_id, tokens["access_token"], pair.generation, pair.expires_at)
        return access, tokens["refresh_token"]

    def access_token(self, vehicle_id: str, *, now: float | None = None) -> AccessToken:
        """A token for `vehicle_id`, refreshed first when it expires within the margin."""
        now = time.time() if now is None else now
        cached = self._cached(vehicle_id, now)
        if cached is not None:
            return cached
        grant = self.grant_of(vehicle_id)
        access, _ = self._read(grant)
        if access.expires_at - now <= self.refresh_margin:
            access = self.refresh(grant, stale=access)
        self._remember(vehicle_id, access)
        return access

    def _cached(self, vehicle_id: str, now: float) -> AccessToken | None:
        if not self.cache_seconds:
            return None
        grant = self._cached_grants.get(vehicle_id)
        entry = self._tokens.get(grant) if grant is not None else None
        if entry is None:
            return None
        access, read_at = entry
        if time.monotonic() - read_at > self.cache_seconds or access.expires_at - now <= self.refresh_margin:
            return None
        return access

    def _remember(self, vehicle_id: str, access: AccessToken) -> None:
        if self.cache_seconds:
            self._cached_grants[vehicle_id] = access.grant_id
            self._tokens[access.grant_id] = (access, time.monotonic())

    def refresh(self, grant_id: str, *, stale: AccessToken | None = None) -> AccessToken:
        """A fresh token for the grant; exchanges the refresh token only if nobody else just did.

        `stale` is the token the caller found expiring or saw refused. If the stored pair has moved on
        since, the new one is returned without a call. Otherwise one worker, holding the grant's lock,
        exchanges the refresh token; the others wait for its result.
        """
        if self.refresher is None:
            raise TokenError("no refresher configured (SMARTCAR_CLIENT_ID/SECRET)", grant_id=grant_id)
        lock = self.grants.lock(grant_id, lease=self.lock_lease, poll=_POLL_SECONDS)
        deadline = time.monotonic() + self.lock_wait
        while not lock.acquire(blocking=False):
            current, _ = self._read(grant_id)
            if self._moved_on(current, stale):
                return self._fresh(current)
            if time.monotonic() >= deadline:
                raise TokenRefreshBusyError(
                    f"grant {grant_id} is being refreshed by another worker", grant_id=grant_id
                )
            time.sleep(_POLL_SECONDS)
        try:
            current, refresh_token = self._read(grant_id)
            if self._moved_on(current, stale):
                return self._fresh(current)
            if self.grants.refused(grant_id):  # refused while we waited for the lock: no second call
                info = self.grants.info(grant_id)
                raise GrantRefusedError(
                    f"Smartcar refused to refresh grant {grant_id}: the user must reconnect",
                    grant_id=grant_id,
                    vehicle_ids=info.vehicles if info is not None else [],
                )
            access = self._exchange(grant_id, refresh_token)
            expires_at = access.expiration.timestamp()
            generation = self.grants.swap(
                grant_id,
                expected_generation=current.generation,
                data=self._encrypt(access.access_token, access.refresh_token),
                expires_at=expires_at,
                refresh_expires_at=access.refresh_expiration.timestamp(),
                now=time.time(),
            )
            if not generation:  # someone put a new pair by hand meanwhile: theirs wins
                return self._fresh(self._read(grant_id)[0])
            return self._fresh(AccessToken(grant_id, access.access_token, generation, expires_at))
        finally:
            # If the lease ran out there is nothing to release; the generation check kept the store right.
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()

    def _fresh(self, access: AccessToken) -> AccessToken:
        if self.cache_seconds:
            self._tokens[access.grant_id] = (access, time.monotonic())
        return access

    def refresh_if_expiring(self, grant_id: str, *, now: float | None = None) -> bool:
        """Refresh the grant when its access token expires within the margin; True if it was refreshed."""
        current, _ = self._read(grant_id)
        now = time.time() if now is None else now
        if current.expires_at - now > self.refresh_margin:
            return False
        return self.refresh(grant_id, stale=current).generation != current.generation

    def _moved_on(self, current: AccessToken, stale: AccessToken | None) -> bool:
        if stale is None:
            return False
        return (
            current.generation != stale.generation and current.expires_at - time.time() > self.refresh_margin
        )

    def _exchange(self, grant_id: str, refresh_token: str) -> Access:
        assert self.refresher is not None  # noqa: S101 - checked by refresh()
        try:
            access = self.refresher(refresh_token)
        except OAuthError as error:
            if error.type in _CLIENT_REJECTED:
                raise self._client_rejected(grant_id, error) from None
            if error.type == "invalid_grant":
                raise self._grant_refused(grant_id, error) from None
            self._count("failed")
            raise
        except Exception:  # Smartcar unreachable, a 5xx: counted, and the caller decides
            self._count("failed")
            raise
        self._count("refreshed")
        return access

    def _client_rejected(self, grant_id: str, error: OAuthError) -> ClientRejectedError:
        self._count("client_rejected")
        if time.monotonic() - self._client_logged_at >= _CLIENT_LOG_EVERY:
            self._client_logged_at = time.monotonic()
            # The id is not a secret and says which application; the secret is never logged.
            log.error(
                "smartcar_client_rejected",
                oauth_error=error.type,
                client_id=self.client_id,
                fix="set SMARTCAR_CLIENT_ID and SMARTCAR_CLIENT_SECRET to the application's credentials",
                events="wait and are retried (WORKERS_CLIENT_REJECTED_DELAY), never dead-lettered for it",
            )
        return ClientRejectedError(
            f"Smartcar rejected our client credentials ({error.type}) refreshing grant {grant_id}: "
            "check SMARTCAR_CLIENT_ID and SMARTCAR_CLIENT_SECRET",
            grant_id=grant_id,
            oauth_error=str(error.type),
        )

    def _grant_refused(self, grant_id: str, error: OAuthError) -> GrantRefusedError:
        """invalid_grant: the grant's vehicles are held and the grant is no longer refreshed (its place in
        the refresher's schedule moves to never) until a new pair is stored, which releases them."""
        self._count("grant_refused")
        info = self.grants.info(grant_id)
        vehicles = info.vehicles if info is not None else []
        self.held.mark(vehicles)
        self.grants.refuse(grant_id)
        self.forget_cached(vehicles)
        return GrantRefusedError(
            f"Smartcar refused to refresh grant {grant_id} ({error.type}): the user must reconnect",
            grant_id=grant_id,
            vehicle_ids=vehicles,
        )

    def forget_cached(self, vehicle_ids: Sequence[str]) -> None:
        """Drop this process's cached tokens of the vehicles (their access was lost)."""
        for vehicle_id in vehicle_ids:
            grant = self._cached_grants.pop(vehicle_id, None)
            if grant is not None:
                self._tokens.pop(grant, None)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.token_refreshes(outcome).inc()

    def expiring(self, within: float, *, limit: int = 100, now: float | None = None) -> list[str]:
        """Grants whose access token expires within `within` seconds (for the beat refresher)."""
        now = time.time() if now is None else now
        return self.grants.expiring(now + within, limit=limit)


def put_tokens(
    *,
    vehicle_ids: Sequence[str],
    access_token: str,
    refresh_token: str,
    expires_in: float,
    user_id: str | None = None,
    settings: WorkerSettings,
    client: redis.Redis | None = None,
) -> str:
    """Store a token pair with `settings` (on `client`, or a client of its own): the CLI uses this."""
    connection = client or connect(settings.redis_url)
    try:
        store = TokenStore(connection, settings.fernet(), keys=KeySpace(settings.event_key_prefix))
        return store.put(
            vehicle_ids=vehicle_ids,
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=time.time() + expires_in,
            user_id=user_id,
        )
    finally:
        if client is None:
            connection.close()
