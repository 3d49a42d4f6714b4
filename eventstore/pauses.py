"""Operator pauses: hold processing, for everything or for some vehicles, without losing an event.

- **Global** (`{p}pause`, a hash: `state` `paused`, `since`, `reason`): the relays stop claiming from the
  inbox, so new events wait there (the receiver keeps accepting: the inbox grows). Runs already handed to
  Celery finish, retries already scheduled and runs taken over from a dead worker go on: a pause holds
  new work, it does not freeze work begun. A resume either lifts it at once, or turns it into a *drain*
  (`state` `draining`, `rate` events/s, a token bucket `tokens`, `at`) that every relay takes its claims
  from (`take`, `scripts_pause.DRAIN_TAKE`), so that a backlog goes through at the operator's rate, not
  at the workers' full speed; the drain ends by itself once the inbox is empty.
- **Per vehicle** (`{p}paused-vehicles`, vehicle -> when paused): the claim (`scripts.CLAIM`) parks each
  newly claimed event of a paused vehicle on `{p}parked:{vehicle}` (status `queued`, its pending score
  far ahead so that the sweeper leaves it) instead of handing it to Celery; not a dead letter, not a
  retry. A resume makes the parked events due in `{p}scheduled`, one `1/rate` s apart (the relay publishes
  due ids every 0.25 s), in one script (`scripts_pause.RESUME_VEHICLES`).

What it costs the relay: one HGET of `{p}pause` at most every 0.1 s (`state`, cached by the relay), a
script call per claim while a drain runs, and in the claim script one HLEN per call (an HGET and HEXISTS
per event only while some vehicle is paused).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis

from eventstore import scripts_pause
from eventstore.codec import text_map, texts
from eventstore.keys import KeySpace

PARKED_FOR = 10 * 365 * 86400.0
"""How far ahead a parked event's pending score is put: only a resume makes it due."""


class PauseState(StrEnum):
    PAUSED = "paused"
    DRAINING = "draining"


class RateError(ValueError):
    """A drain rate that is not a positive number of events a second."""

    def __init__(self, rate: float) -> None:
        super().__init__(f"a rate must be more than 0 events a second, not {rate:g}")
        self.rate = rate


@dataclass(frozen=True, slots=True)
class Pause:
    """The global pause as stored: paused since `since`, or draining at `rate` events/s."""

    state: PauseState
    since: float
    reason: str
    rate: float | None


def _check(rate: float | None) -> None:
    if rate is not None and not rate > 0:
        raise RateError(rate)


class Pauses:
    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys
        self._take = client.register_script(scripts_pause.DRAIN_TAKE)
        self._resume = client.register_script(scripts_pause.RESUME_VEHICLES)

    # --- global ---

    def pause(self, *, reason: str = "", now: float | None = None) -> None:
        """Stop every relay claiming (a drain under way stops too); a second pause keeps the first's time."""
        now = time.time() if now is None else now
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.keys.pause, "since", repr(now))
            pipe.hset(self.keys.pause, mapping={"state": PauseState.PAUSED.value, "reason": reason})
            pipe.hdel(self.keys.pause, "rate", "tokens", "at")
            pipe.execute()

    def resume(self, *, rate: float | None = None, now: float | None = None) -> bool:
        """Lift the global pause: at once (`rate` None), or as a drain at `rate` events a second. Returns
        whether anything was paused or draining."""
        _check(rate)
        now = time.time() if now is None else now
        if rate is None:
            return bool(self.redis.delete(self.keys.pause))
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(self.keys.pause)
            pipe.hset(
                self.keys.pause,
                mapping={
                    "state": PauseState.DRAINING.value,
                    "rate": repr(rate),
                    "tokens": "0",
                    "at": repr(now),
                },
            )
            pipe.hsetnx(self.keys.pause, "since", repr(now))
            existed = pipe.execute()[0]
        return bool(existed)

    def state(self) -> str | None:
        """The relay's cheap look (one HGET): `paused`, `draining` or None."""
        found = self.redis.hget(self.keys.pause, "state")
        return found.decode() if isinstance(found, bytes) else found

    def current(self) -> Pause | None:
        fields = text_map(self.redis.hgetall(self.keys.pause))
        if not fields.get("state"):
            return None
        return Pause(
            PauseState(fields["state"]),
            float(fields.get("since") or 0),
            fields.get("reason", ""),
            float(fields["rate"]) if fields.get("rate") else None,
        )

    def take(self, want: int, *, now: float | None = None) -> int:
        """How many ids a relay may claim now (-1: no limit, nothing paused or drained any more)."""
        now = time.time() if now is None else now
        return int(self._take(keys=[self.keys.pause, self.keys.inbox], args=[repr(now), want]))

    def give_back(self, event_ids: Sequence[str]) -> None:
        """Put ids a relay popped (oldest first) back at the inbox's right end, in their order: what a
        blocking pop brought after a pause began."""
        if event_ids:
            self.redis.rpush(self.keys.inbox, *reversed(event_ids))

    # --- per vehicle ---

    def pause_vehicles(self, vehicle_ids: Sequence[str], *, now: float | None = None) -> None:
        """Park the vehicles' events from their next claim on (a second pause keeps the first's time)."""
        now = time.time() if now is None else now
        with self.redis.pipeline(transaction=True) as pipe:
            for vehicle_id in vehicle_ids:
                pipe.hsetnx(self.keys.paused_vehicles, vehicle_id, repr(now))
            pipe.execute()

    def resume_vehicles(
        self, vehicle_ids: Sequence[str], *, rate: float | None = None, now: float | None = None
    ) -> int:
        """The vehicles are no longer paused; their parked events are due one `1/rate` s apart (all now
        without a rate), oldest first. Returns how many were released."""
        _check(rate)
        if not vehicle_ids:
            return 0
        now = time.time() if now is None else now
        keys = [self.keys.paused_vehicles, self.keys.scheduled, self.keys.pending]
        keys += [self.keys.parked(vehicle_id) for vehicle_id in vehicle_ids]
        interval = 0.0 if rate is None else 1.0 / rate
        return int(self._resume(keys=keys, args=[repr(now), repr(interval), *vehicle_ids]))

    def paused_vehicles(self) -> dict[str, float]:
        """Every paused vehicle and when it was paused (O(paused vehicles))."""
        return {
            vehicle: float(at)
            for vehicle, at in text_map(self.redis.hgetall(self.keys.paused_vehicles)).items()
        }

    def parked(self, vehicle_id: str) -> list[str]:
        """The vehicle's parked ids, oldest first."""
        return list(reversed(texts(self.redis.lrange(self.keys.parked(vehicle_id), 0, -1))))

    def parked_counts(self, vehicle_ids: Sequence[str]) -> dict[str, int]:
        """How many events each vehicle has parked, in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for vehicle_id in vehicle_ids:
                pipe.llen(self.keys.parked(vehicle_id))
            found = pipe.execute()
        return {vehicle_id: int(count) for vehicle_id, count in zip(vehicle_ids, found, strict=True)}
