"""Throttles shared by every worker: Smartcar's application bucket and the per-vehicle pauses.

Smartcar limits an application to a token bucket (by default 120 requests, refilled at 2 a minute) and
each vehicle to what its OEM allows (answered with RATE_LIMIT:VEHICLE and a Retry-After). One Lua call
before each Smartcar request takes a token from our copy of the bucket and checks both pauses; a
RATE_LIMIT:SMARTCAR_API answer empties the bucket and pauses every worker, not only the caller. The
bucket and the pauses are stored by `eventstore.rates`; waiting and deferring are decided here.

With the bucket off (`app_rate_bucket=0`), each process reads the pauses at most every half second
instead of before every call: a pause reaches every worker within that time.
"""

from __future__ import annotations

import time

import redis

from eventstore.keys import KeySpace
from eventstore.rates import APP, RateStore

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
        self, client: redis.Redis, *, keys: KeySpace, capacity: int, refill_per_minute: float, max_wait: float
    ) -> None:
        self.store = RateStore(client, keys)
        self.capacity = capacity
        self.refill_per_second = refill_per_minute / 60.0
        self.max_wait = max_wait
        self._pauses: dict[str, float] = {}
        self._pauses_read = -_PAUSES_REFRESH

    def try_take(self, vehicle_id: str | None, *, now: float | None = None) -> float:
        """Take a token; 0 on success, else the seconds until one could be had (nothing taken)."""
        now = time.time() if now is None else now
        vehicle = vehicle_id or "-"
        if self.capacity <= 0:
            return self._paused(vehicle, now)
        return self.store.take(
            vehicle, capacity=self.capacity, refill_per_second=self.refill_per_second, now=now
        )

    def _paused(self, vehicle: str, now: float) -> float:
        if time.monotonic() - self._pauses_read >= _PAUSES_REFRESH:
            self._pauses = self.store.pauses()
            self._pauses_read = time.monotonic()
        until = max(self._pauses.get(APP, 0.0), self._pauses.get(vehicle, 0.0))
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
        self._set_pause(APP, seconds, empty_bucket=True)

    def pause_vehicle(self, vehicle_id: str, seconds: float) -> None:
        """RATE_LIMIT:VEHICLE: no call to this vehicle from any worker for `seconds`."""
        self._set_pause(vehicle_id, seconds, empty_bucket=False)

    def resume(self) -> None:
        """Lift every pause now (an operator who knows the limit has reset)."""
        self.store.resume()
        self._pauses.clear()

    def _set_pause(self, field: str, seconds: float, *, empty_bucket: bool) -> None:
        now = time.time()
        self.store.pause(field, now + seconds, now=now, empty_bucket=empty_bucket)
        self._pauses[field] = max(self._pauses.get(field, 0.0), now + seconds)
