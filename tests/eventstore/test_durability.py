"""A Redis that would lose acknowledged events is recognised from its INFO: no append-only file, or a
`maxmemory-policy` that evicts."""

from __future__ import annotations

from pathlib import Path

import redis

from eventstore.durability import durability_problems, read_durability
from testsupport.redis_server import RedisServer


def test_an_aof_redis_that_never_evicts_has_no_problem() -> None:
    assert durability_problems({"aof_enabled": 1, "maxmemory_policy": "noeviction"}) == []


def test_each_way_of_losing_events_is_named() -> None:
    problems = durability_problems({"aof_enabled": 0, "maxmemory_policy": "allkeys-lru"})
    assert len(problems) == 2
    assert "appendonly yes" in problems[0]
    assert "allkeys-lru" in problems[1]
    assert "noeviction" in problems[1]


def test_a_missing_policy_is_not_taken_for_an_evicting_one() -> None:
    assert durability_problems({"aof_enabled": "1"}) == []


def test_read_from_a_live_redis_as_its_configuration_changes(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server, redis.Redis.from_url(server.url()) as client:
        assert read_durability(client) == []
        client.config_set("maxmemory-policy", "volatile-lru")
        assert [problem.split(":")[0] for problem in read_durability(client) or []] == [
            "Redis's maxmemory-policy is volatile-lru"
        ]
        client.config_set("appendonly", "no")
        assert len(read_durability(client) or []) == 2
