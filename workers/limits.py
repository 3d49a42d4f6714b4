"""Throttles shared by every worker: Smartcar's application bucket, per-vehicle pauses, per-vehicle locks.

Smartcar limits an application to a token bucket (by default 120 requests, refilled at 2 a minute) and
each vehicle to what its OEM allows (answered with RATE_LIMIT:VEHICLE and a Retry-After). One Lua call
before each Smartcar request takes a token from our copy of the bucket and checks both pauses; a
RATE_LIMIT:SMARTCAR_API answer empties the bucket and pauses every worker, not only the caller.

| key | type | what |
| --- | --- | --- |
| `{p}rate:app` | hash `tokens`, `at` | our copy of Smartcar's application bucket |
| `{p}rate:app-paused` | string with TTL | set after RATE_LIMIT:SMARTCAR_API |
| `{p}rate:vehicle:{id}` | string with TTL | set after RATE_LIMIT:VEHICLE (its Retry-After) |
| `{p}vlock:{id}` | string with a lease | held while a command for the vehicle runs |
"""

from __future__ import annotations

import math
import time

import redis
from redis.lock import Lock

# KEYS: bucket, app_paused, vehicle_paused; ARGV: capacity, refill_per_second, now
# Returns the seconds to wait (0: a token was taken).
_TAKE = """
local now = tonumber(ARGV[3])
local app = redis.call('PTTL', KEYS[2])
if app > 0 then return tostring(app / 1000) end
local vehicle = redis.call('PTTL', KEYS[3])
if vehicle > 0 then return tostring(vehicle / 1000) end
local capacity = tonumber(ARGV[1])
if capacity <= 0 then return '0' end
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = '0'
if tokens >= 1 then tokens = tokens - 1 else wait = tostring((1 - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return wait
"""


class DeferredError(Exception):
    """The work cannot start now (a busy vehicle, an empty bucket): run it again after `delay` seconds.

    Not a failure: it does not count against the retry attempts (only against `max_deferrals`).
    """

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(f"{reason}; again in {delay:.1f} s")
        self.reason = reason
        self.delay = delay


class RateLimiter:
    def __init__(
        self, client: redis.Redis, *, prefix: str, capacity: int, refill_per_minute: float, max_wait: float
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.capacity = capacity
        self.refill_per_second = refill_per_minute / 60.0
        self.max_wait = max_wait
        self._take = client.register_script(_TAKE)

    def _keys(self, vehicle_id: str | None) -> list[str]:
        return [
            f"{self.prefix}rate:app",
            f"{self.prefix}rate:app-paused",
            f"{self.prefix}rate:vehicle:{vehicle_id or '-'}",
        ]

    def try_take(self, vehicle_id: str | None, *, now: float | None = None) -> float:
        """Take a token; 0 on success, else the seconds until one could be had (nothing taken)."""
        now = time.time() if now is None else now
        args: list[str | int] = [self.capacity, repr(self.refill_per_second), repr(now)]
        return float(self._take(keys=self._keys(vehicle_id), args=args))

    def take(self, vehicle_id: str | None) -> None:
        """Take a token, waiting up to `max_wait`; `DeferredError` when the wait would be longer."""
        deadline = time.monotonic() + self.max_wait
        while True:
            wait = self.try_take(vehicle_id)
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise DeferredError("Smartcar rate limit: no request token", wait)
            time.sleep(wait)

    def pause_app(self, seconds: float) -> None:
        """RATE_LIMIT:SMARTCAR_API: no worker calls Smartcar for `seconds`, and the bucket empties."""
        with self.redis.pipeline() as pipe:
            pipe.set(f"{self.prefix}rate:app-paused", "1", px=max(1, math.ceil(seconds * 1000)))
            pipe.hset(f"{self.prefix}rate:app", mapping={"tokens": "0", "at": repr(time.time())})
            pipe.execute()

    def pause_vehicle(self, vehicle_id: str, seconds: float) -> None:
        """RATE_LIMIT:VEHICLE: no call to this vehicle from any worker for `seconds`."""
        self.redis.set(f"{self.prefix}rate:vehicle:{vehicle_id}", "1", px=max(1, math.ceil(seconds * 1000)))


def vehicle_lock(client: redis.Redis, prefix: str, vehicle_id: str, *, lease: float) -> Lock:
    """The lock that serialises commands to one vehicle. Its lease outlasts the longest command call."""
    return Lock(client, f"{prefix}vlock:{vehicle_id}", timeout=lease, sleep=0.05, thread_local=False)
