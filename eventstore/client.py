"""Sync Redis clients for the store, configured as the workers' runtime configures its own.

Operator commands and tools use `connect` rather than a bare `redis.Redis.from_url`, whose default is to
wait for ever on a Redis that accepted the connection and then stopped answering.
"""

from __future__ import annotations

import redis

TIMEOUT_SECONDS = 10.0
HEALTH_CHECK_SECONDS = 30


def connect(url: str, *, timeout: float = TIMEOUT_SECONDS) -> redis.Redis:
    """A client on `url` that answers bytes (as the stores expect), with socket and connect timeouts of
    `timeout` seconds, a health check of idle connections, and a retry of a command that timed out."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry_on_timeout=True,
    )
