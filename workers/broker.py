"""Kombu's Redis transport with two costs of the consumer's loop taken out of it.

A worker's consumer is one thread: it pops each message, records it as unacknowledged, hands it to the
pool, and (for late acks) removes it from the unacknowledged index when the task ends. Profiles of a
worker at 200 events/s showed most of that thread's time in two places this module changes:

- kombu builds a new `redis.Redis` object (with its table of ~300 response callbacks) for every publish,
  acknowledgement and index update. A client over a connection pool is thread-safe, so the channel
  keeps one, and makes a new one only when kombu replaces the pool (after a connection error);
- every acknowledgement was a Redis round trip on that thread. Here it frees the prefetch slot at once
  (kombu's in-memory part) and a background thread removes the acknowledged messages from Redis in
  batches, a few milliseconds later. An acknowledgement lost with its process means at most one more
  run of a finished event, which `process_event` skips.

Everything else is kombu's. Selected with `broker_transport` (see `workers.app`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, cast

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

_FLUSH_SECONDS = 0.01
_MAX_BATCH = 500


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acked: list[str] = []
        self._acked_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._flusher: threading.Thread | None = None

    def ack(self, delivery_tag: str) -> None:
        with self._acked_lock:
            self._acked.append(delivery_tag)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="kombu-acks", daemon=True)
                self._flusher.start()
        if len(self._acked) >= _MAX_BATCH:
            self._wake.set()
        virtual.QoS.ack(self, delivery_tag)  # the prefetch window opens now

    def flush_acks(self) -> None:
        """Remove every acknowledged message from Redis's unacknowledged index (one round trip)."""
        with self._acked_lock:
            tags, self._acked = self._acked, []
        if not tags:
            return
        channel = cast("Any", self.channel)
        with channel.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            pipe.zrem(self.unacked_index_key, *tags)
            pipe.hdel(self.unacked_key, *tags)
            pipe.execute()

    def _flush_loop(self) -> None:
        while not self._closing:
            self._wake.wait(_FLUSH_SECONDS)
            self._wake.clear()
            # A failed flush leaves the messages unacknowledged in Redis: restored after the visibility
            # timeout, run again, skipped as finished. Nothing to do but try the next batch.
            with contextlib.suppress(Exception):
                self.flush_acks()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            self.flush_acks()


class Channel(kombu_redis.Channel):
    QoS = QoS
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

    def close(self) -> None:
        qos = cast("Any", self)._qos  # kombu creates it on first use  # noqa: SLF001
        if isinstance(qos, QoS):
            qos.close()
        super().close()


class Transport(kombu_redis.Transport):
    Channel = Channel
