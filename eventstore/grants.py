"""Storage of Smartcar OAuth grants: the encrypted token pair of each, which grant covers which vehicle,
when each access token expires, and the lock a refresher holds.

- `{p}grant:{grant}`: hash `data` (the token pair, encrypted by the caller: this module never sees a
  token), `expires_at`, `refresh_expires_at`, `generation`, `vehicles` (comma-separated), `user_id`,
  `updated_at`;
- `{p}grant-of:{vehicle}`: string, the grant that covers the vehicle;
- `{p}grant-expiry`: sorted set, score = access token expiry (what the beat refresher looks at);
- `{p}grant-lock:{grant}`: a lease lock, held while one worker refreshes the grant.

Writes are scripts: `put` moves vehicles between grants atomically (and deletes a grant left with none),
`swap` stores a refreshed pair only if the generation is still the one read (compare and set), `forget`
takes one vehicle out of its grant (a disconnect; the grant goes with its last vehicle). Encryption,
caching and the single-flight refresh are `workers.tokens`' business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.lock import Lock

from eventstore import scripts_grants
from eventstore.codec import as_bytes, text, text_map, texts
from eventstore.keys import KeySpace

PUT_ATTEMPTS = 5
"""How often `put` reads the vehicles' mappings again when another put moved one meanwhile."""


class GrantMovedError(RuntimeError):
    """`put` kept finding a vehicle's grant changed between its read and its write (concurrent puts)."""


@dataclass(frozen=True, slots=True)
class StoredPair:
    """What a token read needs: the encrypted pair (None when the grant has none), its expiry, generation."""

    data: bytes | None
    expires_at: float
    generation: int


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


class GrantStore:
    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys
        self._put = client.register_script(scripts_grants.PUT_GRANT)
        self._swap = client.register_script(scripts_grants.SWAP_GRANT)
        self._forget = client.register_script(scripts_grants.FORGET_GRANT_VEHICLE)

    def put(
        self,
        grant_id: str,
        *,
        data: str,
        vehicles: Sequence[str],
        expires_at: float,
        refresh_expires_at: float,
        user_id: str | None,
        now: float,
    ) -> int:
        """Store the grant's pair and make it the grant of `vehicles`; returns its new generation. The
        vehicles' events held for re-consent are due now, in the same step (`eventstore.held`).

        The vehicles' current grants are read first and handed to the script (their keys must be in KEYS);
        the script refuses if one changed meanwhile, and the read is done again (`PUT_ATTEMPTS` times).
        """
        mapped = [vehicle for vehicle in vehicles if vehicle]  # the script's split skips empty ids too
        for _ in range(PUT_ATTEMPTS):
            generation = self.put_if_unmoved(
                grant_id,
                self.grants_of(mapped),
                data=data,
                vehicles=vehicles,
                expires_at=expires_at,
                refresh_expires_at=refresh_expires_at,
                user_id=user_id,
                now=now,
            )
            if generation != scripts_grants.GRANT_MOVED:
                return generation
        raise GrantMovedError(f"the vehicles of grant {grant_id} kept moving to other grants; try again")

    def put_if_unmoved(
        self,
        grant_id: str,
        previous: dict[str, str | None],
        *,
        data: str,
        vehicles: Sequence[str],
        expires_at: float,
        refresh_expires_at: float,
        user_id: str | None,
        now: float,
    ) -> int:
        """One `put` attempt, given each mapped vehicle's grant as read (`previous`, vehicle -> grant or
        None): the new generation, or `scripts_grants.GRANT_MOVED` (nothing written) if a mapping changed."""
        grant_key = self.keys.grant(grant_id)
        mappings = [self.keys.grant_of(vehicle) for vehicle in previous]
        old_grants = [grant_key if old is None else self.keys.grant(old) for old in previous.values()]
        args: list[str] = [
            grant_id,
            data,
            repr(expires_at),
            repr(refresh_expires_at),
            ",".join(vehicles),
            user_id or "",
            repr(now),
        ]
        for vehicle, old in previous.items():
            args += [vehicle, old or ""]
        held = [self.keys.held(vehicle) for vehicle in previous]
        keys = [grant_key, self.keys.grant_expiry, *mappings, *old_grants]
        keys += [self.keys.scheduled, self.keys.pending, self.keys.held_vehicles, *held]
        return int(self._put(keys=keys, args=args))

    def swap(
        self,
        grant_id: str,
        *,
        expected_generation: int,
        data: str,
        expires_at: float,
        refresh_expires_at: float,
        now: float,
    ) -> int:
        """Store a refreshed pair if the grant is still at `expected_generation`: the new one, else 0."""
        args = [
            grant_id,
            str(expected_generation),
            data,
            repr(expires_at),
            repr(refresh_expires_at),
            repr(now),
        ]
        return int(self._swap(keys=[self.keys.grant(grant_id), self.keys.grant_expiry], args=args))

    def forget(self, vehicle_id: str) -> bool:
        """Forget the vehicle's tokens: it leaves its grant (deleted when it covered no other vehicle).
        False when it had none. Read again when a put moved it meanwhile (`PUT_ATTEMPTS` times)."""
        for _ in range(PUT_ATTEMPTS):
            grant = self.grant_of(vehicle_id)
            if grant is None:
                return False
            keys = [self.keys.grant_of(vehicle_id), self.keys.grant(grant), self.keys.grant_expiry]
            if int(self._forget(keys=keys, args=[vehicle_id, grant])) != scripts_grants.GRANT_MOVED:
                return True
        raise GrantMovedError(f"vehicle {vehicle_id} kept moving to other grants; try again")

    def covered_vehicles(self, *, chunk: int = 500) -> dict[str, str]:
        """Every vehicle some grant covers, with its grant (for operators and the reconciliation: the
        grants are listed by `{p}grant-expiry`, so this reads no key it was not told about)."""
        grants = texts(self.redis.zrange(self.keys.grant_expiry, 0, -1))
        covered: dict[str, str] = {}
        for start in range(0, len(grants), chunk):
            part = grants[start : start + chunk]
            with self.redis.pipeline(transaction=False) as pipe:
                for grant in part:
                    pipe.hget(self.keys.grant(grant), "vehicles")
                found = pipe.execute()
            for grant, vehicles in zip(part, found, strict=True):
                for vehicle in text(vehicles or b"").split(","):
                    if vehicle:
                        covered[vehicle] = grant
        return covered

    def grant_of(self, vehicle_id: str) -> str | None:
        grant = self.redis.get(self.keys.grant_of(vehicle_id))
        return None if grant is None else text(grant)

    def lookup(self, vehicle_id: str) -> tuple[str | None, float | None]:
        """The vehicle's grant and, when its access was lost, since when (`eventstore.held`): one round
        trip, so that a token read learns both at the price of the grant's."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.grant_of(vehicle_id))
            pipe.zscore(self.keys.held_vehicles, vehicle_id)
            grant, held = pipe.execute()
        return (None if grant is None else text(grant)), (None if held is None else float(held))

    def grants_of(self, vehicle_ids: Sequence[str]) -> dict[str, str | None]:
        """Each vehicle's grant (None: none), in one round trip."""
        if not vehicle_ids:
            return {}
        found = self.redis.mget([self.keys.grant_of(vehicle) for vehicle in vehicle_ids])
        return {
            vehicle: None if grant is None else text(grant)
            for vehicle, grant in zip(vehicle_ids, found, strict=True)
        }

    def pair(self, grant_id: str) -> StoredPair:
        data, expires_at, generation = self.redis.hmget(
            self.keys.grant(grant_id), ["data", "expires_at", "generation"]
        )
        return StoredPair(
            None if data is None else as_bytes(data), float(expires_at or 0), int(generation or 0)
        )

    def info(self, grant_id: str) -> GrantInfo | None:
        """The grant without its tokens; None when it holds none."""
        raw = text_map(self.redis.hgetall(self.keys.grant(grant_id)))
        if "data" not in raw:
            return None
        return GrantInfo(
            grant_id=grant_id,
            user_id=raw.get("user_id") or None,
            vehicles=[item for item in raw.get("vehicles", "").split(",") if item],
            expires_at=float(raw.get("expires_at") or 0),
            refresh_expires_at=float(raw.get("refresh_expires_at") or 0),
            generation=int(raw.get("generation") or 0),
            updated_at=float(raw.get("updated_at") or 0),
        )

    def expiring(self, until: float, *, limit: int) -> list[str]:
        """Grants whose access token expires by `until`, soonest first (at most `limit`)."""
        return texts(self.redis.zrangebyscore(self.keys.grant_expiry, "-inf", until, start=0, num=limit))

    def postpone(self, grant_id: str, until: float) -> None:
        """Have the refresher look at the grant again only at `until` (its refresh failed); a grant deleted
        meanwhile stays deleted."""
        self.redis.zadd(self.keys.grant_expiry, {grant_id: until}, xx=True)

    def refuse(self, grant_id: str) -> None:
        """Smartcar refused the grant's refresh token: never refresh it again (its place in the schedule
        moves to +inf, so it stays listed for `covered_vehicles`); a new pair's put schedules it again."""
        self.postpone(grant_id, math.inf)

    def refused(self, grant_id: str) -> bool:
        """Whether the grant's refresh token was refused since its pair was stored."""
        score = self.redis.zscore(self.keys.grant_expiry, grant_id)
        return score is not None and math.isinf(float(score))

    def lock(self, grant_id: str, *, lease: float, poll: float) -> Lock:
        """The lock one refresher holds while it exchanges the grant's refresh token."""
        return Lock(self.redis, self.keys.grant_lock(grant_id), timeout=lease, sleep=poll, thread_local=False)
