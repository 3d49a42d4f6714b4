"""Smartcar OAuth tokens per user grant, encrypted at rest, refreshed by one worker at a time.

A Connect grant (one user's consent) yields one access token (2 h) and one refresh token (60 days) that
may cover several vehicles. A refresh token rotates: after one use it soon stops working, so two workers
must never refresh with the same one. Keys:

- `{p}grant:{grant}`: hash: `data` (Fernet token of the access and refresh tokens), `expires_at`,
  `refresh_expires_at`, `generation`, `vehicles`, `user_id`, `updated_at`;
- `{p}grant-of:{vehicle}`: string, the grant that covers the vehicle;
- `{p}grant-expiry`: sorted set, score = access token expiry (what the beat refresher looks at);
- `{p}grant-lock:{grant}`: string with a lease, held while one worker refreshes.

Every write is one Lua script; a refresh is stored only if the grant's `generation` is still the one the
refresher read (compare and set), so a stale writer can never overwrite a newer pair.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from cryptography.fernet import InvalidToken, MultiFernet
from redis.lock import Lock

from smartcar_core.errors import OAuthError
from smartcar_core.results import Access
from workers.codec import as_bytes, text, text_map, texts

if TYPE_CHECKING:
    from workers.settings import WorkerSettings

# KEYS: grant, expiry; ARGV: grant_id, data, expires_at, refresh_expires_at, vehicles, user_id, now, prefix
# A vehicle that moves to this grant leaves the grant that covered it; a grant left with no vehicle is
# deleted (nothing would use it, and the refresher would keep refreshing it).
_PUT = """
local gen = redis.call('HINCRBY', KEYS[1], 'generation', 1)
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'expires_at', ARGV[3], 'refresh_expires_at', ARGV[4],
  'vehicles', ARGV[5], 'user_id', ARGV[6], 'updated_at', ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
for vehicle in string.gmatch(ARGV[5], '[^,]+') do
  local mapping = ARGV[8] .. 'grant-of:' .. vehicle
  local old = redis.call('GET', mapping)
  if old and old ~= ARGV[1] then
    local old_key = ARGV[8] .. 'grant:' .. old
    local kept = {}
    for other in string.gmatch(redis.call('HGET', old_key, 'vehicles') or '', '[^,]+') do
      if other ~= vehicle then kept[#kept + 1] = other end
    end
    if #kept == 0 then
      redis.call('DEL', old_key)
      redis.call('ZREM', KEYS[2], old)
    else
      redis.call('HSET', old_key, 'vehicles', table.concat(kept, ','))
    end
  end
  redis.call('SET', mapping, ARGV[1])
end
return gen
"""

# KEYS: grant, expiry; ARGV: grant_id, expected_generation, data, expires_at, refresh_expires_at, now
_SWAP = """
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[2] then return 0 end
local gen = redis.call('HINCRBY', KEYS[1], 'generation', 1)
redis.call('HSET', KEYS[1], 'data', ARGV[3], 'expires_at', ARGV[4], 'refresh_expires_at', ARGV[5],
  'updated_at', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return gen
"""

_POLL_SECONDS = 0.05


def grant_id_for(vehicle_ids: Sequence[str], user_id: str | None) -> str:
    """The grant of one token pair: its owner and the exact set of vehicles it covers.

    Reconnecting the same cars replaces their pair. A second Connect session of the same owner for other
    cars (single select) is a grant of its own: its token does not cover the first session's cars, so it
    must not replace theirs.
    """
    vehicles = hashlib.sha256(",".join(sorted(set(vehicle_ids))).encode()).hexdigest()[:16]
    return f"{user_id or 'no-user'}:{vehicles}"


class TokenError(Exception):
    """Tokens are missing or unusable; `vehicle_id`/`grant_id` say whose. The message never holds a token."""

    def __init__(self, message: str, *, vehicle_id: str | None = None, grant_id: str | None = None) -> None:
        super().__init__(message)
        self.vehicle_id = vehicle_id
        self.grant_id = grant_id


class TokenRefreshBusyError(TokenError):
    """Another worker holds the refresh lock for longer than we wait: try again later."""


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


@dataclass(frozen=True, slots=True)
class GrantInfo:
    """What an operator may see about a grant: no token."""

    grant_id: str
    user_id: str | None
    vehicles: list[str]
    expires_at: float
    refresh_expires_at: float
    generation: int
    updated_at: float


Refresher = Callable[[str], Access]
"""Exchanges a refresh token for a new pair (`AuthClient.exchange_refresh_token`)."""


class TokenStore:
    def __init__(
        self,
        client: redis.Redis,
        fernet: MultiFernet,
        *,
        prefix: str,
        refresher: Refresher | None = None,
        refresh_margin: float = 300.0,
        lock_lease: float = 60.0,
        lock_wait: float = 30.0,
        cache_seconds: float = 0.0,
    ) -> None:
        self.redis = client
        self.fernet = fernet
        self.prefix = prefix
        self.refresher = refresher
        self.refresh_margin = refresh_margin
        self.lock_lease = lock_lease
        self.lock_wait = lock_wait
        self.cache_seconds = cache_seconds
        # vehicle -> grant, and grant -> (token, read at): a token read from Redis is reused for
        # `cache_seconds` while it is not expiring. Refused tokens never come from here twice: `refresh`
        # compares generations with what is stored.
        self._grants: dict[str, str] = {}
        self._tokens: dict[str, tuple[AccessToken, float]] = {}
        self._put = client.register_script(_PUT)
        self._swap = client.register_script(_SWAP)

    def __repr__(self) -> str:
        return f"TokenStore(prefix={self.prefix!r})"

    def _grant_key(self, grant_id: str) -> str:
        return f"{self.prefix}grant:{grant_id}"

    @property
    def expiry_key(self) -> str:
        return f"{self.prefix}grant-expiry"

    def _encrypt(self, access_token: str, refresh_token: str) -> str:
        plain = json.dumps({"access_token": access_token, "refresh_token": refresh_token}).encode()
        return self.fernet.encrypt(plain).decode()

    def _decrypt(self, grant_id: str, data: bytes) -> dict[str, str]:
        try:
            value = json.loads(self.fernet.decrypt(data))
        except InvalidToken:
            raise TokenError(
                f"the tokens of grant {grant_id} cannot be decrypted with TOKEN_ENCRYPTION_KEY "
                "(was the key rotated without keeping the old one?)",
                grant_id=grant_id,
            ) from None
        return {"access_token": str(value["access_token"]), "refresh_token": str(value["refresh_token"])}

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
        vehicles = list(dict.fromkeys(vehicle_ids))
        if not vehicles:
            raise ValueError("tokens belong to at least one vehicle")
        if any("," in vehicle for vehicle in vehicles):
            raise ValueError("a vehicle id cannot contain a comma")
        grant = grant_id_for(vehicles, user_id)
        now = time.time()
        self._put(
            keys=[self._grant_key(grant), self.expiry_key],
            args=[
                grant,
                self._encrypt(access_token, refresh_token),
                repr(expires_at),
                repr(refresh_expires_at if refresh_expires_at is not None else now + 60 * 86400),
                ",".join(vehicles),
                user_id or "",
                repr(now),
                self.prefix,
            ],
        )
        return grant

    def grant_of(self, vehicle_id: str) -> str:
        grant = self.redis.get(f"{self.prefix}grant-of:{vehicle_id}")
        if grant is None:
            raise TokenError(
                f"no Smartcar tokens stored for vehicle {vehicle_id} "
                "(put them with `smartcar-events tokens put`)",
                vehicle_id=vehicle_id,
            )
        return text(grant)

    def info(self, grant_id: str) -> GrantInfo | None:
        raw = text_map(self.redis.hgetall(self._grant_key(grant_id)))
        if "data" not in raw:
            return None
        fields = {key: value for key, value in raw.items() if key != "data"}
        return GrantInfo(
            grant_id=grant_id,
            user_id=fields.get("user_id") or None,
            vehicles=[item for item in fields.get("vehicles", "").split(",") if item],
            expires_at=float(fields.get("expires_at") or 0),
            refresh_expires_at=float(fields.get("refresh_expires_at") or 0),
            generation=int(fields.get("generation") or 0),
            updated_at=float(fields.get("updated_at") or 0),
        )

    def _read(self, grant_id: str) -> tuple[AccessToken, str]:
        raw = self.redis.hmget(self._grant_key(grant_id), ["data", "expires_at", "generation"])
        data, expires_at, generation = raw
        if data is None:
            raise TokenError(f"grant {grant_id} has no tokens", grant_id=grant_id)
        tokens = self._decrypt(grant_id, as_bytes(data))
        access = AccessToken(grant_id, tokens["access_token"], int(generation or 0), float(expires_at or 0))
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
        grant = self._grants.get(vehicle_id)
        entry = self._tokens.get(grant) if grant is not None else None
        if entry is None:
            return None
        access, read_at = entry
        if time.monotonic() - read_at > self.cache_seconds or access.expires_at - now <= self.refresh_margin:
            return None
        return access

    def _remember(self, vehicle_id: str, access: AccessToken) -> None:
        if self.cache_seconds:
            self._grants[vehicle_id] = access.grant_id
            self._tokens[access.grant_id] = (access, time.monotonic())

    def refresh(self, grant_id: str, *, stale: AccessToken | None = None) -> AccessToken:
        """A fresh token for the grant; exchanges the refresh token only if nobody else just did.

        `stale` is the token the caller found expiring or saw refused. If the stored pair has moved on
        since, the new one is returned without a call. Otherwise one worker, holding the grant's lock,
        exchanges the refresh token; the others wait for its result.
        """
        if self.refresher is None:
            raise TokenError("no refresher configured (SMARTCAR_CLIENT_ID/SECRET)", grant_id=grant_id)
        lock = Lock(
            self.redis,
            f"{self.prefix}grant-lock:{grant_id}",
            timeout=self.lock_lease,
            sleep=_POLL_SECONDS,
            thread_local=False,
        )
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
            access = self._exchange(grant_id, refresh_token)
            expires_at = access.expiration.timestamp()
            generation = self._swap(
                keys=[self._grant_key(grant_id), self.expiry_key],
                args=[
                    grant_id,
                    str(current.generation),
                    self._encrypt(access.access_token, access.refresh_token),
                    repr(expires_at),
                    repr(access.refresh_expiration.timestamp()),
                    repr(time.time()),
                ],
            )
            if not generation:  # someone put a new pair by hand meanwhile: theirs wins
                return self._fresh(self._read(grant_id)[0])
            return self._fresh(AccessToken(grant_id, access.access_token, int(generation), expires_at))
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
            return self.refresher(refresh_token)
        except OAuthError as error:
            # invalid_grant: the refresh token is spent or revoked; the user must reconnect.
            raise TokenError(
                f"Smartcar refused to refresh grant {grant_id} ({error.type}): the user must reconnect",
                grant_id=grant_id,
            ) from None

    def expiring(self, within: float, *, limit: int = 100, now: float | None = None) -> list[str]:
        """Grants whose access token expires within `within` seconds (for the beat refresher)."""
        now = time.time() if now is None else now
        found = self.redis.zrangebyscore(self.expiry_key, "-inf", now + within, start=0, num=limit)
        return texts(found)


def put_tokens(
    *,
    vehicle_ids: Sequence[str],
    access_token: str,
    refresh_token: str,
    expires_in: float,
    user_id: str | None = None,
    client: redis.Redis | None = None,
    settings: WorkerSettings | None = None,
) -> str:
    """Store a token pair with the process's settings (the OAuth callback and the CLI use this)."""
    from workers.settings import get_settings  # noqa: PLC0415 - settings are read only when called

    settings = settings or get_settings()
    connection = client or redis.Redis.from_url(settings.redis_url)
    try:
        store = TokenStore(connection, settings.fernet(), prefix=settings.event_key_prefix)
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
