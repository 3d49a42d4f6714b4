"""Storage of the throttles every worker shares: our copy of Smartcar's application bucket, and pauses.

- `{p}rate:app`: hash `tokens`, `at` (when `tokens` was computed): refilled lazily by `take`;
- `{p}rate:pauses`: hash, `app` (`APP`) or a vehicle id -> epoch seconds until which nobody calls
  (after RATE_LIMIT:SMARTCAR_API, or RATE_LIMIT:VEHICLE and its Retry-After).

The policy (how long to wait, when to defer, how often to re-read the pauses) is `workers.limits`'.
"""

from __future__ import annotations

import redis

from eventstore import scripts
from eventstore.codec import text
from eventstore.keys import KeySpace

APP = "app"
"""The pauses field that stops calls for the whole application."""


class RateStore:
    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys
        self._take = client.register_script(scripts.TAKE)
        self._pause = client.register_script(scripts.PAUSE)

    def take(self, vehicle: str, *, capacity: int, refill_per_second: float, now: float) -> float:
        """Take a token unless the app or `vehicle` is paused; 0 on success, else the seconds to wait."""
        args: list[str | int] = [capacity, repr(refill_per_second), repr(now), vehicle, APP]
        return float(self._take(keys=[self.keys.rate_bucket, self.keys.rate_pauses], args=args))

    def pauses(self) -> dict[str, float]:
        """Every pause (`APP` or a vehicle id -> until), ended ones included until the next `pause`."""
        return {text(key): float(value) for key, value in self.redis.hgetall(self.keys.rate_pauses).items()}

    def pause(self, field: str, until: float, *, now: float, empty_bucket: bool) -> None:
        """Nobody calls for `field` (`APP` or a vehicle id) before `until`; the bucket empties if asked."""
        args = [field, repr(until), repr(now), "1" if empty_bucket else "0"]
        self._pause(keys=[self.keys.rate_pauses, self.keys.rate_bucket], args=args)

    def resume(self) -> None:
        """Lift every pause."""
        self.redis.delete(self.keys.rate_pauses)
