"""Whether a Redis keeps what it acknowledged: the one condition the event store cannot work without.

After the receiver's 2xx, Smartcar stops retrying: the event store holds the only copy. A Redis without
an append-only file loses every event since its last snapshot when it restarts (measured: 668 of 1,800
acknowledged events lost in one restart mid-ingest); a Redis whose `maxmemory-policy` evicts drops keys
when full (a lost record, or a forgotten seen-marker that lets a redelivery in as a second event).

Read from INFO, which managed Redis services allow where they refuse CONFIG. The receiver and the workers
refuse such a Redis in production (`SMARTCAR_ENV=production`) and warn about it otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

NO_EVICTION = "noeviction"


def durability_problems(info: Mapping[str, Any]) -> list[str]:
    """What in Redis's INFO (its `persistence` and `memory` sections) can lose an acknowledged event."""
    problems = []
    if str(info.get("aof_enabled", "0")) != "1":
        problems.append(
            "Redis keeps no append-only file (appendonly no): every event acknowledged since its last "
            "snapshot is lost when it restarts; set appendonly yes and appendfsync everysec"
        )
    policy = info.get("maxmemory_policy")
    if policy is not None and str(policy) != NO_EVICTION:
        problems.append(
            f"Redis's maxmemory-policy is {policy}: when full it evicts keys (a lost event, or a duplicate "
            f"let in); set maxmemory-policy {NO_EVICTION}"
        )
    return problems


def read_durability(client: redis.Redis) -> list[str] | None:
    """`durability_problems` of the Redis behind `client`; None when it refuses INFO (nothing is known)."""
    try:
        info: dict[str, Any] = {**client.info("persistence"), **client.info("memory")}
    except redis.ResponseError:
        return None
    return durability_problems(info)
