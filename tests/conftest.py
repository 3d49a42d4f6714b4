"""Fixtures shared by every test: the test Redis and a per-test key prefix that is cleaned up."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from eventstore.keys import KeySpace
from testsupport import delete_keys

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def pytest_configure(config: pytest.Config) -> None:
    """The CLIs' rich tables as wide as the tests read them, however pytest runs (a terminal or not, one
    process or several): without a terminal rich wraps at 80 columns, and a test would read a cut line."""
    os.environ.setdefault("COLUMNS", "200")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    with redis.Redis.from_url(redis_url) as client:
        delete_keys(client, f"{prefix}*")


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test Redis (bytes answers, as the stores expect)."""
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def keys(key_prefix: str) -> KeySpace:
    """The event store's key space under this test's prefix."""
    return KeySpace(key_prefix)
