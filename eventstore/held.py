"""Vehicles whose access was lost, and their events waiting for the owner to connect again.

When Smartcar refuses a grant's refresh token, answers AUTHENTICATION right after a good refresh, or
PERMISSION to an event's call, nothing a retry does can help: only the owner's new consent. Such an event
is not a dead letter (nothing is wrong with it) and must not be retried on a timer (each try would call
Smartcar for nothing): it is *held*, parked in `{p}scheduled` far ahead with a history entry saying why,
and listed under its vehicle, until a new pair is stored for the vehicle.

- `{p}held-vehicles`: sorted set, member = vehicle id, score = when its access was lost (the first time:
  the grace period runs from there). A token read looks here in the round trip that reads the grant
  (`GrantStore.lookup`), so a held vehicle's events are held without a call to Smartcar;
- `{p}held:{vehicle}`: set, the ids of its held events.

The release is atomic: storing a new pair (`GrantStore.put`, which both the Connect callback and
`smartcar-events tokens put` reach through `eventstore.tokens_at_rest`) takes the vehicles out of
`held-vehicles` and makes their parked events due now, in one script (`scripts_grants.PUT_GRANT`), and
the relay publishes them like any retry that came due. `release` does the same without a pair (a vehicle
forgotten after its grace period: its events then end as dead letters, having no tokens).

A run holds its event in two steps, `hold` (the id into the vehicle's set) then the store's `retry`
(parked), then looks again (`since`): a release that came between the two found the id pending but
not parked and left it in the set, and the run's own look releases it. So no event is left parked behind
a vehicle that was released meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from eventstore import scripts_held
from eventstore.codec import texts
from eventstore.keys import KeySpace

HOLD_SECONDS = 10 * 365 * 86400.0
"""How far ahead a held event is parked: far beyond any grace period, so that only a release (or the
vehicle being forgotten, which releases it too) ever makes it due."""


class HeldEvents:
    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys
        self._release = client.register_script(scripts_held.RELEASE)

    def mark(self, vehicle_ids: Sequence[str], *, now: float | None = None) -> None:
        """The vehicles' access is lost from `now` on (an earlier mark keeps its time: the grace period
        runs from the first)."""
        if not vehicle_ids:
            return
        now = time.time() if now is None else now
        self.redis.zadd(self.keys.held_vehicles, dict.fromkeys(vehicle_ids, now), nx=True)

    def since(self, vehicle_id: str) -> float | None:
        """When the vehicle's access was lost; None when it is not held."""
        score = self.redis.zscore(self.keys.held_vehicles, vehicle_id)
        return None if score is None else float(score)

    def hold(self, vehicle_id: str, event_id: str) -> None:
        """List the event under its vehicle, before the run parks it (see the module's docstring)."""
        self.redis.sadd(self.keys.held(vehicle_id), event_id)

    def events(self, vehicle_id: str) -> list[str]:
        """The ids listed as held for the vehicle (sorted; one may be on its way to being parked)."""
        return sorted(texts(self.redis.smembers(self.keys.held(vehicle_id))))

    def counts(self, vehicle_ids: Sequence[str]) -> dict[str, int]:
        """How many events each vehicle has held, in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for vehicle_id in vehicle_ids:
                pipe.scard(self.keys.held(vehicle_id))
            found = pipe.execute()
        return {vehicle_id: int(count) for vehicle_id, count in zip(vehicle_ids, found, strict=True)}

    def vehicles(self) -> int:
        """How many vehicles are held (O(1): the metrics' gauge reads the same key)."""
        return int(self.redis.zcard(self.keys.held_vehicles))

    def expired(self, before: float, *, limit: int) -> list[str]:
        """Vehicles held since before `before` (their grace period is over), the oldest first."""
        found = self.redis.zrangebyscore(self.keys.held_vehicles, "-inf", before, start=0, num=limit)
        return texts(found)

    def release(self, vehicle_ids: Sequence[str], *, now: float | None = None) -> int:
        """The vehicles are no longer held and their parked events are due now; returns how many."""
        if not vehicle_ids:
            return 0
        now = time.time() if now is None else now
        keys = [self.keys.scheduled, self.keys.pending, self.keys.held_vehicles]
        keys += [self.keys.held(vehicle_id) for vehicle_id in vehicle_ids]
        return int(self._release(keys=keys, args=[repr(now), *vehicle_ids]))
