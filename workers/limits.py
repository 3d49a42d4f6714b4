"""Throttles shared by every worker: Smartcar's application bucket, per-vehicle pauses, per-vehicle locks.

Smartcar limits an application to a token bucket (by default 120 requests, refilled at 2 a minute) and
each vehicle to what its OEM allows (answered with RATE_LIMIT:VEHICLE and a Retry-After). One Lua call
before each Smartcar request takes a token from our copy of the bucket and checks both pauses; a
RATE_LIMIT:SMARTCAR_API answer empties the bucket and pauses every worker, not only the caller.

- `{p}rate:app`: hash `tokens`, `at`: our copy of Smartcar's application bucket;
- `{p}rate:pauses`: hash, `app` or a vehicle id -> epoch seconds until which nobody calls (set after
  RATE_LIMIT:SMARTCAR_API, or RATE_LIMIT:VEHICLE and its Retry-After);
- `{p}vlock:{id}`: string with a lease, held while a command for the vehicle runs.

With the bucket off (`app_rate_bucket=0`), each process reads the pauses at most every half second
instead of before every call: a pause reaches every worker within that time.
"""

from __future__ import annotations

import time

import redis
from redis.lock import Lock

from workers.codec import text

# KEYS: bucket, pauses; ARGV: capacity, refill_per_second, now, vehicle_id
# Returns the seconds to wait (0: a token was taken).
_TAKE = """
local now = tonumber(ARGV[3])
local paused = redis.call('HMGET', KEYS[2], 'app', ARGV[4])
local wait = math.max(tonumber(paused[1]) or 0, tonumber(paused[2]) or 0) - now
if wait > 0 then return tostring(wait) end
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local answer = '0'
if tokens >= 1 then tokens = tokens - 1 else answer = tostring((1 - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return answer
"""

# KEYS: pauses, bucket; ARGV: field, until, now, empty_bucket
_PAUSE = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if (tonumber(all[i + 1]) or 0) <= tonumber(ARGV[3]) then redis.call('HDEL', KEYS[1], all[i]) end
end
if ARGV[4] == '1' then redis.call('HSET', KEYS[2], 'tokens', '0', 'at', ARGV[3]) end
return 1
"""
_APP = "app"
_PAUSES_REFRESH = 0.5


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
        self.bucket_key = f"{prefix}rate:app"
        self.pauses_key = f"{prefix}rate:pauses"
        self._take = client.register_script(_TAKE)
        self._pause = client.register_script(_PAUSE)
        self._pauses: dict[str, float] = {}
        self._pauses_read = -_PAUSES_REFRESH

    def try_take(self, vehicle_id: str | None, *, now: float | None = None) -> float:
        """Take a token; 0 on success, else the seconds until one could be had (nothing taken)."""
        now = time.time() if now is None else now
        vehicle = vehicle_id or "-"
        if self.capacity <= 0:
            return self._paused(vehicle, now)
        args: list[str | int] = [self.capacity, repr(self.refill_per_second), repr(now), vehicle]
        return float(self._take(keys=[self.bucket_key, self.pauses_key], args=args))

    def _paused(self, vehicle: str, now: float) -> float:
        if time.monotonic() - self._pauses_read >= _PAUSES_REFRESH:
            self._pauses = {text(k): float(v) for k, v in self.redis.hgetall(self.pauses_key).items()}
            self._pauses_read = time.monotonic()
        until = max(self._pauses.get(_APP, 0.0), self._pauses.get(vehicle, 0.0))
        return max(0.0, until - now)

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
        self._set_pause(_APP, seconds, empty_bucket=True)

    def pause_vehicle(self, vehicle_id: str, seconds: float) -> None:
        """RATE_LIMIT:VEHICLE: no call to this vehicle from any worker for `seconds`."""
        self._set_pause(vehicle_id, seconds, empty_bucket=False)

    def resume(self) -> None:
        """Lift every pause now (an operator who knows the limit has reset)."""
        self.redis.delete(self.pauses_key)
        self._pauses.clear()

    def _set_pause(self, field: str, seconds: float, *, empty_bucket: bool) -> None:
        now = time.time()
        args = [field, repr(now + seconds), repr(now), "1" if empty_bucket else "0"]
        self._pause(keys=[self.pauses_key, self.bucket_key], args=args)
        self._pauses[field] = max(self._pauses.get(field, 0.0), now + seconds)


def vehicle_lock(client: redis.Redis, prefix: str, vehicle_id: str, *, lease: float) -> Lock:
    """The lock that serialises commands to one vehicle. Its lease outlasts the longest command call."""
    return Lock(client, f"{prefix}vlock:{vehicle_id}", timeout=lease, sleep=0.05, thread_local=False)
