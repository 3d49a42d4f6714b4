"""Kombu's Redis transport, with one synchronous Redis client per channel instead of one per command.

A worker's consumer is one thread: it pops each message, records it as unacknowledged, hands it to the
pool, and (late acks) removes it from the unacknowledged index when the task ends. Kombu builds a new
`redis.Redis` object (with its table of ~300 response callbacks) for each of those steps and for every
publish: a tenth of a busy worker's CPU, most of it on that one thread. A client over a connection pool
is thread-safe, so the channel keeps one, and makes a new one only when kombu replaces the pool (after a
connection error). Everything else is kombu's. Selected with `broker_transport` (see `workers.app`).

(Acknowledging in batches from a background thread was tried as well: no gain measurable above the
machine's noise, so kombu's acknowledgement stays as it is.)
"""

from __future__ import annotations

from typing import Any, cast

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: Any = None
    _sync_pool: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        parent = cast("Any", super())
        if asynchronous:
            return parent._create_client(asynchronous=True)  # noqa: SLF001 - the override
        pool = self.pool
        if self._sync_client is None or self._sync_pool is not pool:
            self._sync_client = parent._create_client(asynchronous=False)  # noqa: SLF001 - the override
            self._sync_pool = pool
        return self._sync_client


class Transport(kombu_redis.Transport):
    Channel = Channel
