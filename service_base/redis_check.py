"""The start-up look at the event store's Redis that the receiver and the workers both take.

Two answers stop a start, because they will not heal by waiting: a Redis that answers but refuses us (a
database index out of range, a wrong password: every request would get 503 forever, which looks like an
outage), and, with `SMARTCAR_ENV=production`, a Redis that would lose what it acknowledged
(`eventstore.durability`). In development the latter is only reported, for the caller to log.
"""

from __future__ import annotations

import redis

from eventstore.client import connect
from eventstore.durability import read_durability
from service_base.settings import ServiceSettings, SettingsError


def check_event_store(settings: ServiceSettings, *, timeout: float) -> list[str]:
    """The durability problems to warn about (none in production: those raise `SettingsError`, as does
    a Redis that refuses us). A Redis that does not answer raises `redis.ConnectionError`,
    `redis.TimeoutError` or `OSError`: whether that stops the start is the caller's choice."""
    client = connect(settings.redis_url, timeout=timeout)
    try:
        try:
            client.ping()
        except redis.ResponseError as error:  # it answered: SELECT or AUTH refused
            raise SettingsError(f"REDIS_URL: Redis at {settings.redis_address} refused us: {error}") from None
        problems = read_durability(client) or []
    finally:
        client.close()
    if problems and settings.smartcar_env == "production":
        raise SettingsError(
            f"the event store's Redis at {settings.redis_address} would lose events "
            f"(SMARTCAR_ENV=production): {'; '.join(problems)}"
        )
    return problems
