"""When a VERIFY may be answered: the defences around the one reply that signs what a caller sends.

The VERIFY answer is HMAC-SHA256(AMT, challenge), the very construction of `SC-Signature`. Answered blindly it
is a signing oracle: send `challenge = <forged body>`, get back a valid signature for it. So:

1. a VERIFY that carries `SC-Signature` must verify (checked before this module is asked);
2. only challenges of Smartcar's shape are answered (`SignatureChecker.challenge_acceptable`: letters, digits
   and dashes, short), which no JSON body can pass;
3. with `RECEIVER_VERIFY_REQUIRE_ARMED=true`, VERIFY is answered only while an operator has armed it:
   the event store's switch with a TTL (`eventstore.verify`; `python -m receiver arm-verify --minutes 15`),
   or a fixed `RECEIVER_VERIFY_WINDOW_UNTIL`.
"""

from __future__ import annotations

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
