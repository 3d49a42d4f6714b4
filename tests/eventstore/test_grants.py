"""Grant storage: vehicles move between grants atomically, with every key the script touches in KEYS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import redis

from eventstore import scripts_grants
from eventstore.grants import PUT_ATTEMPTS, GrantMovedError, GrantStore
from eventstore.keys import KeySpace


def put(store: GrantStore, grant_id: str, *vehicles: str, expires_at: float = 5000.0) -> int:
    return store.put(
        grant_id,
        data=f"sealed-{grant_id}",
        vehicles=vehicles,
        expires_at=expires_at,
        refresh_expires_at=9000.0,
        user_id="u1",
        now=1000.0,
    )


class RacedGrantStore(GrantStore):
    """A store whose reads of the vehicles' grants are each followed by another worker's put, as if that
    put ran between this one's read and its script (`races` times)."""

    def __init__(self, client: redis.Redis, keys: KeySpace, rival: GrantStore, races: int) -> None:
        super().__init__(client, keys)
        self.rival = rival
        self.races = races
        self.reads = 0

    def grants_of(self, vehicle_ids: Sequence[str]) -> dict[str, str | None]:
        found = super().grants_of(vehicle_ids)
        self.reads += 1
        if self.reads <= self.races:
            put(self.rival, f"rival-{self.reads}", *vehicle_ids)
        return found


def test_a_put_moves_vehicles_and_deletes_a_grant_left_empty(client: redis.Redis, keys: KeySpace) -> None:
    store = GrantStore(client, keys)
    assert put(store, "g1", "v1", "v2") == 1
    assert put(store, "g1", "v1", "v2") == 2  # the same grant again: a new generation
    assert put(store, "g2", "v1") == 1
    first = store.info("g1")
    assert first is not None
    assert first.vehicles == ["v2"]
    assert store.grants_of(["v1", "v2", "v3"]) == {"v1": "g2", "v2": "g1", "v3": None}
    put(store, "g3", "v2")
    assert store.info("g1") is None
    assert client.exists(keys.grant("g1")) == 0
    assert sorted(store.expiring(10_000, limit=10)) == ["g2", "g3"]


def test_a_put_refuses_when_a_mapping_changed_since_it_was_read(client: redis.Redis, keys: KeySpace) -> None:
    store = GrantStore(client, keys)
    put(store, "g1", "v1")
    stale: dict[str, str | None] = {"v1": None}  # read before g1 took v1
    generation = store.put_if_unmoved(
        "g2",
        stale,
        data="sealed-g2",
        vehicles=["v1"],
        expires_at=5000.0,
        refresh_expires_at=9000.0,
        user_id=None,
        now=1000.0,
    )
    assert generation == scripts_grants.GRANT_MOVED
    assert client.exists(keys.grant("g2")) == 0  # nothing written
    assert client.zscore(keys.grant_expiry, "g2") is None
    assert store.grant_of("v1") == "g1"
    first = store.info("g1")
    assert first is not None
    assert first.vehicles == ["v1"]


def test_a_put_reads_the_mappings_again_when_one_changes_meanwhile(
    client: redis.Redis, keys: KeySpace
) -> None:
    rival = GrantStore(client, keys)
    put(rival, "g0", "v1", "v2")
    store = RacedGrantStore(client, keys, rival, races=1)
    assert put(store, "mine", "v1", "v2") == 1
    assert store.reads == 2  # refused once, then stored on fresh reads
    assert store.grants_of(["v1", "v2"]) == {"v1": "mine", "v2": "mine"}
    # Both earlier grants lost both vehicles: deleted, and no longer refreshed.
    assert store.info("g0") is None
    assert store.info("rival-1") is None
    assert store.expiring(10_000, limit=10) == ["mine"]


def test_a_put_gives_up_when_the_mappings_keep_moving(client: redis.Redis, keys: KeySpace) -> None:
    store = RacedGrantStore(client, keys, GrantStore(client, keys), races=PUT_ATTEMPTS)
    with pytest.raises(GrantMovedError):
        put(store, "mine", "v1")
    assert store.reads == PUT_ATTEMPTS
    assert store.info("mine") is None
    assert store.grant_of("v1") == f"rival-{PUT_ATTEMPTS}"


def test_a_vehicle_without_an_id_gets_no_mapping(client: redis.Redis, keys: KeySpace) -> None:
    store = GrantStore(client, keys)
    put(store, "g1", "v1", "")
    assert client.exists(keys.grant_of("")) == 0
    assert store.grant_of("v1") == "g1"


def test_swap_stores_a_refreshed_pair_only_on_the_generation_read(
    client: redis.Redis, keys: KeySpace
) -> None:
    store = GrantStore(client, keys)
    put(store, "g1", "v1")
    pair: dict[str, Any] = {"data": "refreshed", "expires_at": 8000.0, "refresh_expires_at": 9000.0}
    assert store.swap("g1", expected_generation=1, now=1100.0, **pair) == 2
    assert store.swap("g1", expected_generation=1, now=1200.0, **pair) == 0  # a stale refresher
    stored = store.pair("g1")
    assert (stored.data, stored.expires_at, stored.generation) == (b"refreshed", 8000.0, 2)
    assert client.zscore(keys.grant_expiry, "g1") == 8000.0
    assert store.pair("gone").data is None


def test_postpone_moves_a_grant_on_the_schedule_but_never_brings_one_back(
    client: redis.Redis, keys: KeySpace
) -> None:
    store = GrantStore(client, keys)
    put(store, "g1", "v1")
    store.postpone("g1", 7000.0)
    assert client.zscore(keys.grant_expiry, "g1") == 7000.0
    store.postpone("deleted", 7000.0)
    assert client.zscore(keys.grant_expiry, "deleted") is None


def test_the_refresh_lock_is_the_grants(client: redis.Redis, keys: KeySpace) -> None:
    store = GrantStore(client, keys)
    lock = store.lock("g1", lease=5.0, poll=0.01)
    assert lock.acquire(blocking=False)
    assert not store.lock("g1", lease=5.0, poll=0.01).acquire(blocking=False)
    assert client.exists(keys.grant_lock("g1")) == 1
    lock.release()
