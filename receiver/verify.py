"""When a VERIFY may be answered: the defences around the one reply that signs what a caller sends.

The VERIFY answer is HMAC-SHA256(AMT, challenge), the very construction of `SC-Signature`. Answered blindly it
is a signing oracle: send `challenge = <forged body>`, get back a valid signature for it. So:

1. a VERIFY that carries `SC-Signature` must verify (checked before this module is asked);
2. only challenges of Smartcar's shape are answered (`SignatureChecker.challenge_acceptable`: letters, digits
   and dashes, short), which no JSON body can pass;
3. with `RECEIVER_VERIFY_REQUIRE_ARMED=true`, VERIFY is answered only while an operator has armed it:
   the event store's switch with a TTL (`eventstore.verify`; `python -m receiver arm-verify --minutes 15`),
   or a fixed `RECEIVER_VERIFY_WINDOW_UNTIL`;
4. unsigned requests that may be a VERIFY are handled at most `RECEIVER_VERIFY_UNSIGNED_PER_MINUTE` a
   minute by each process (`TokenBucket`, held by the app's webhook endpoint), before their body is parsed:
   beyond, 429. Anyone may send them; signed deliveries take nothing from the bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from eventstore.keys import KeySpace
from eventstore.verify import AsyncVerifySwitch
from receiver.metrics import VerifyRefusal
from receiver.settings import ReceiverSettings
from receiver.signatures import SignatureChecker


class VerifyGate:
    __slots__ = ("_checker", "_settings", "_switch")

    def __init__(self, settings: ReceiverSettings, checker: SignatureChecker, redis: Redis) -> None:
        self._settings = settings
        self._checker = checker
        self._switch = AsyncVerifySwitch(redis, KeySpace(settings.event_key_prefix))

    async def refusal(self, challenge: str) -> VerifyRefusal | None:
        """None when this challenge may be answered, else why not."""
        if not self._checker.challenge_acceptable(challenge):
            return VerifyRefusal.CHALLENGE_SHAPE
        if not self._settings.verify_require_armed or self._settings.verify_window_open():
            return None
        try:
            armed = await self._switch.armed()
        except (RedisError, OSError):
            return VerifyRefusal.UNAVAILABLE
        return None if armed else VerifyRefusal.NOT_ARMED


class TokenBucket:
    """`rate` tokens every `per_seconds`, held up to `rate` (the burst): `take` one, or learn when to retry.

    In-process and unlocked: the receiver's event loop is its only user. `clock` is monotonic seconds.
    """

    __slots__ = ("_clock", "_per_second", "_rate", "_stamp", "_tokens")

    def __init__(
        self, rate: int, *, per_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate < 1 or per_seconds <= 0:
            raise ValueError("a token bucket needs a rate of at least 1 over a positive period")
        self._rate = float(rate)
        self._per_second = rate / per_seconds
        self._clock = clock
        self._tokens = self._rate
        self._stamp = clock()

    def take(self) -> bool:
        """True, taking a token, when one is there; False when the bucket is empty."""
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._stamp) * self._per_second)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def retry_after(self) -> int:
        """Whole seconds until the next token (at least 1): the `Retry-After` of a refusal."""
        return max(1, math.ceil((1.0 - self._tokens) / self._per_second))
