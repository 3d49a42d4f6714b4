"""The receivers' signature failures, counted in the store so that `smartcar-events doctor` sees every
receiver process's at once (each process's Prometheus counter, `smartcar_webhook_signature_failures_total`,
shows only its own).

`{p}sig-failures:{minute}` is a hash, reason (`missing`, `malformed`, `mismatch`) -> count, for the minute
`epoch // 60` of the receiver's clock; it expires `KEEP_SECONDS` after its last write, so the store holds
at most an hour of minutes whatever the rate of failures.

The receiver counts only on its failure path, and never waits for the count (`AsyncSignatureTally`): a
failure adds one to a counter in memory and, unless a write is already under way, starts one in the
background. A write carries every failure counted since the last one (one MULTI/EXEC round trip: an
HINCRBY per reason and an EXPIRE), so a flood of forged requests costs at most one Redis connection at a
time, and a good delivery costs nothing. A write Redis refuses is dropped, not retried: this is a
diagnosis, and the Prometheus counter still has every failure.

`recent_signatures` reads the last minutes back, with how many events the store took or moved on in the
same time (the status indexes, `eventstore.index`): the doctor compares the two.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from eventstore.codec import text
from eventstore.index import status_block
from eventstore.keys import KeySpace

KEEP_SECONDS = 3600
"""How long a minute's counts live after their last write."""


class AsyncSignatureTally:
    """The receiver's side: `record` a failure (never raises, never waits); `drain` at shutdown."""

    def __init__(self, client: AsyncRedis, keys: KeySpace, *, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._keys = keys
        self._clock = clock
        self._counted: Counter[str] = Counter()
        self._writing: asyncio.Task[None] | None = None
        self.dropped = 0
        """Failures whose write Redis refused (for tests and debugging)."""

    def record(self, reason: str) -> None:
        """Count one failure of `reason`; written to Redis in the background (call it on the event loop)."""
        self._counted[reason] += 1
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write())

    async def drain(self) -> None:
        """Wait for the write under way, if any (what was counted by then is written)."""
        while self._writing is not None:
            await asyncio.shield(self._writing)

    async def _write(self) -> None:
        try:
            while self._counted:
                counted, self._counted = self._counted, Counter()
                key = self._keys.signature_failures(int(self._clock() // 60))
                try:
                    async with self._redis.pipeline(transaction=True) as pipe:
                        for reason, count in counted.items():
                            pipe.hincrby(key, reason, count)
                        pipe.expire(key, KEEP_SECONDS)
                        await pipe.execute()
                except (RedisError, OSError):
                    self.dropped += sum(counted.values())
                    return
        finally:
            self._writing = None


@dataclass(frozen=True, slots=True)
class RecentSignatures:
    """What `recent_signatures` read: the failures of the last `minutes` by reason, and `moved`, the
    events that took their current status in that time (every event the receivers stored then, plus any
    older one that moved on: an upper bound of the deliveries accepted)."""

    minutes: int
    since: float
    failures: dict[str, int] = field(default_factory=dict)
    moved: int = 0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def recent_signatures(
    client: redis.Redis, keys: KeySpace, *, minutes: int = 15, now: float | None = None
) -> RecentSignatures:
    """The signature failures of the last `minutes` (the current one included), in one round trip."""
    current = int((time.time() if now is None else now) // 60)
    first = current - minutes + 1
    with client.pipeline(transaction=False) as pipe:
        for minute in range(first, current + 1):
            pipe.hgetall(keys.signature_failures(minute))
        for index in status_block(keys):
            pipe.zcount(index, first * 60, "+inf")
        replies = pipe.execute()
    failures: Counter[str] = Counter()
    for counts in replies[:minutes]:
        for reason, count in counts.items():
            failures[text(reason)] += int(count)
    return RecentSignatures(minutes, first * 60.0, dict(failures), sum(int(n) for n in replies[minutes:]))
