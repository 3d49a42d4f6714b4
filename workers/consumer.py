"""The worker's consumer: back on the broker within a second of it returning, and quiet about it.

Celery's consumer, after losing the broker, reconnects at kombu's default intervals (2, 4, 6 ... 30 s):
measured, it consumed again 4 to 21 s after Redis was back. It logs each attempt at ERROR, and then
restarts Gossip (worker-to-worker broadcasts), which fails with an ERROR of its own on Redis. An outage
of the broker is expected in production and nothing is lost through one (late acks, leases, the
sweeper), so this consumer:

- tries again every `RETRY_EVERY` seconds, for as long as it takes (`broker_connection_max_retries` is
  None in `workers.app`), logging `broker_unavailable` at WARNING with the broker's address (the first
  attempt, then at most every `LOG_EVERY` seconds), and `broker_reconnected` once it is back;
- runs without Gossip and Mingle (what `--without-gossip --without-mingle` do): broadcasts between
  workers that nothing here uses, and that cost a round trip at every start;
- logs kombu's "Couldn't ack" (a task that ended while the broker was away) at WARNING, not CRITICAL:
  the event's outcome is in the store already, and the message, delivered again after the visibility
  timeout, is skipped as finished (`OutageLines`, installed by `workers.app`).

Selected with `worker_consumer` in `workers.app`. It relies on two things of Celery's `Consumer`: it
takes `worker_options` in its constructor and calls `ensure_connection(errback, max_retries,
callback=...)` on the connection given to `ensure_connected`. `problems()` checks both at start-up.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

from celery.worker.consumer import consumer as celery_consumer

from service_base.logs import get_logger

log = get_logger("workers.consumer")

RETRY_EVERY = 1.0
LOG_EVERY = 30.0


class _QuickReconnect:
    """The consumer's broker connection, whose `ensure_connection` retries every `RETRY_EVERY` s."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.attempts = 0
        self.first_failure = 0.0
        self._logged = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def _failed(self, error: Exception, retry_in: float) -> None:
        now = time.monotonic()
        self.attempts += 1
        if self.attempts == 1:
            self.first_failure = now
        if self.attempts == 1 or now - self._logged >= LOG_EVERY:
            self._logged = now
            log.warning(
                "broker_unavailable",
                broker=self._connection.as_uri(),  # kombu masks the password
                error=type(error).__name__,
                detail=str(error)[:200],
                attempts=self.attempts,
                retry_in=round(retry_in, 1),
            )

    def ensure_connection(self, _errback: Any = None, max_retries: int | None = None, **options: Any) -> Any:
        return self._connection.ensure_connection(
            self._failed,
            max_retries,
            interval_start=RETRY_EVERY / 2,
            interval_step=RETRY_EVERY / 2,
            interval_max=RETRY_EVERY,
            callback=options.get("callback"),
        )


class Consumer(celery_consumer.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        options = kwargs.pop("worker_options", None) or {}
        kwargs["worker_options"] = {**options, "without_gossip": True, "without_mingle": True}
        super().__init__(*args, **kwargs)

    def ensure_connected(self, conn: Any) -> Any:
        quick: Any = _QuickReconnect(conn)
        connected = super().ensure_connected(quick)
        if quick.attempts:
            log.info(
                "broker_reconnected",
                broker=conn.as_uri(),
                attempts=quick.attempts,
                seconds=round(time.monotonic() - quick.first_failure, 1),
            )
        return conn if connected is quick else connected


class OutageLines(logging.Filter):
    """Celery's CRITICAL "Couldn't ack/reject" lines, as WARNING: expected while the broker is away."""

    LOGGER = "celery.worker.request"

    EXPECTED = ("Couldn't ack", "Couldn't reject")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL and str(record.msg).startswith(self.EXPECTED):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = f"{record.msg} (the broker is away: the outcome is stored, a redelivery is skipped)"
            record.exc_info = record.exc_text = None
        return True

    @classmethod
    def install(cls) -> None:
        logger = logging.getLogger(cls.LOGGER)
        if not any(isinstance(existing, cls) for existing in logger.filters):
            logger.addFilter(cls())


def problems(celery_class: type = celery_consumer.Consumer) -> list[str]:
    """What no longer holds of Celery's `Consumer` as this module relies on it (empty: all of it)."""
    found = []
    init = getattr(celery_class, "__init__", None)
    if init is None or "worker_options" not in inspect.signature(init).parameters:
        found.append("celery's Consumer no longer takes worker_options")
    ensure_connected = getattr(celery_class, "ensure_connected", None)
    if ensure_connected is None or "conn.ensure_connection(" not in inspect.getsource(ensure_connected):
        found.append("celery's Consumer.ensure_connected no longer calls conn.ensure_connection")
    return found
