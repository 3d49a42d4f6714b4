from __future__ import annotations

import redis


def test_the_test_redis_answers(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(f"{key_prefix}probe", b"1", ex=60)
        assert client.get(f"{key_prefix}probe") == b"1"
    finally:
        client.close()
