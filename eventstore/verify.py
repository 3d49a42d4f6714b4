"""The VERIFY arming switch: while `{p}verify:armed` exists, the receiver answers VERIFY challenges (when
`RECEIVER_VERIFY_REQUIRE_ARMED` asks for arming). Its TTL is the window; its value the time it was armed.

Operators arm and disarm it (`python -m receiver arm-verify`, a sync client: `VerifySwitch`); the receiver
only asks whether it is armed, on its async client (`AsyncVerifySwitch`).
"""

from __future__ import annotations

import time

import redis
from redis.asyncio import Redis as AsyncRedis

from eventstore.keys import KeySpace


class VerifySwitch:
    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys

    def arm(self, seconds: int, *, now: float | None = None) -> None:
        """Answer VERIFY for the next `seconds` (replacing any window armed before)."""
        armed_at = int(time.time() if now is None else now)
        self.redis.set(self.keys.verify_armed, str(armed_at), ex=seconds)

    def disarm(self) -> bool:
        """Stop answering now; False when it was not armed."""
        return bool(self.redis.delete(self.keys.verify_armed))

    def seconds_left(self) -> int:
        """Seconds the window still lasts; 0 or less when it is not armed (Redis's TTL answer)."""
        return int(self.redis.ttl(self.keys.verify_armed))

    def armed(self) -> bool:
        return bool(self.redis.exists(self.keys.verify_armed))


class AsyncVerifySwitch:
    def __init__(self, client: AsyncRedis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys

    async def armed(self) -> bool:
        """Raises `redis.RedisError` or `OSError` when Redis does not answer (the caller decides)."""
        return bool(await self.redis.exists(self.keys.verify_armed))
