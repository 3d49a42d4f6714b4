"""Sync Redis clients for the store, configured as the workers' runtime configures its own.

Operator commands and tools use `connect` rather than a bare `redis.Redis.from_url`, whose default is to
wait for ever on a Redis that accepted the connection and then stopped answering.
"""

from __future__ import annotations

import redis

TIMEOUT_SECONDS = 10.0
HEALTH_CHECK_SECONDS = 30


def connect(url: str, *, timeout: float = TIMEOUT_SECONDS, max_connections: int = 100) -> redis.Redis:
    """A client on `url` that answers bytes (as the stores expect), with socket and connect timeouts of
    `timeout` seconds, a health check of idle connections, and a retry of a command that timed out.
    `max_connections` bounds its pool (redis-py's default, 100): a process with more threads using Redis
    at once needs more, or its commands fail with MaxConnectionsError."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry_on_timeout=True,
        max_connections=max_connections,
    )
