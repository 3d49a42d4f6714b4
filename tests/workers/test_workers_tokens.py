"""The token store: encrypted at rest, refreshed once across many workers, stored atomically."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
from cryptography.fernet import Fernet, MultiFernet

from eventstore.keys import KeySpace
from smartcar_core.errors import OAuthError
from smartcar_core.results import Access
from workers.tokens import TokenError, TokenRefreshBusyError, TokenStore


class CountingRefresher:
    """Stands in for Smartcar's token endpoint: rotates tokens, refuses a refresh token used twice."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[str] = []
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, refresh_token: str) -> Access:
        with self._lock:
            if refresh_token in self.calls:
                raise OAuthError(status_code=400, type="invalid_grant", description="refresh token reused")
            self.calls.append(refresh_token)
            number = len(self.calls)
        time.sleep(self.delay)  # the network call, during which others must wait rather than refresh too
        now = datetime.now(UTC)
        return Access(
            access_token=f"access-{number}",
            refresh_token=f"refresh-{number}",
            expiration=now + timedelta(hours=2),
            refresh_expiration=now + timedelta(days=60),
        )


def _store(client: redis.Redis, prefix: str, refresher: Callable[[str], Access] | None = None) -> TokenStore:
    fernet = MultiFernet([Fernet(Fernet.generate_key())])
    return TokenStore(
        client, fernet, keys=KeySpace(prefix), refresher=refresher, refresh_margin=300, lock_wait=5
    )


def test_tokens_are_encrypted_at_rest(client: redis.Redis, key_prefix: str) -> None:
    store = _store(client, key_prefix)
    grant = store.put(
        vehicle_ids=["v1", "v2"],
        access_token="ACCESS-SECRET",
        refresh_token="REFRESH-SECRET",
        expires_at=time.time() + 7200,
        user_id="u1",
    )
    assert grant.startswith("u1:")
    for key in client.scan_iter(match=f"{key_prefix}*"):
        if client.type(key) == b"hash":
            for value in client.hvals(key):
                assert b"SECRET" not in value
    assert store.access_token("v2").token == "ACCESS-SECRET"
    info = store.info(grant)
    assert info is not None
    assert info.vehicles == ["v1", "v2"]
    assert "SECRET" not in repr(info)
    assert "SECRET" not in repr(store.access_token("v1"))


def test_a_second_session_of_one_owner_keeps_the_first_sessions_token(
    client: redis.Redis, key_prefix: str
) -> None:
    # Two single-select Connect sessions of one owner: each token covers only its own car.
    store = _store(client, key_prefix)
    first = store.put(
        vehicle_ids=["v1"], access_token="A1", refresh_token="R1", expires_at=time.time() + 7200, user_id="u1"
    )
    second = store.put(
        vehicle_ids=["v2"], access_token="A2", refresh_token="R2", expires_at=time.time() + 7200, user_id="u1"
    )
    assert first != second
    assert store.access_token("v1").token == "A1"
    assert store.access_token("v2").token == "A2"
    # Reconnecting the same car replaces its pair instead of adding a grant.
    again = store.put(
        vehicle_ids=["v1"], access_token="A3", refresh_token="R3", expires_at=time.time() + 7200, user_id="u1"
    )
    assert again == first
    assert store.access_token("v1").token == "A3"


def test_a_grant_keeps_only_the_vehicles_it_still_covers(client: redis.Redis, key_prefix: str) -> None:
    store = _store(client, key_prefix)
    soon = time.time() + 7200

    def put(*vehicles: str) -> str:
        return store.put(
            vehicle_ids=vehicles, access_token="a", refresh_token="r", expires_at=soon, user_id="u1"
        )

    both = put("v1", "v2", "v1")  # a vehicle named twice is stored once
    info = store.info(both)
    assert info is not None
    assert info.vehicles == ["v1", "v2"]
    # The owner reconnects v1 alone, then adds v3: v2 stays with the first grant until it moves too.
    alone = put("v1")
    assert store.grant_of("v1") == alone
    assert store.grant_of("v2") == both
    info = store.info(both)
    assert info is not None
    assert info.vehicles == ["v2"]
    wider = put("v2", "v3")
    # The first grant covers no vehicle any more: deleted, and no longer refreshed.
    assert store.info(both) is None
    assert client.zscore(KeySpace(key_prefix).grant_expiry, both) is None
    assert sorted(store.expiring(86400)) == sorted([alone, wider])
    assert [store.grant_of(v) for v in ("v1", "v2", "v3")] == [alone, wider, wider]


def test_a_wrong_key_says_so_without_leaking(client: redis.Redis, key_prefix: str) -> None:
    _store(client, key_prefix).put(
        vehicle_ids=["v1"], access_token="a", refresh_token="r", expires_at=time.time() + 7200
    )
    with pytest.raises(TokenError, match="cannot be decrypted with TOKEN_ENCRYPTION_KEY"):
        _store(client, key_prefix).access_token("v1")


def test_missing_tokens_are_a_clear_error(client: redis.Redis, key_prefix: str) -> None:
    with pytest.raises(TokenError, match="no Smartcar tokens stored for vehicle nope"):
        _store(client, key_prefix).access_token("nope")


def test_expiring_token_is_refreshed_once_by_many_workers(client: redis.Redis, key_prefix: str) -> None:
    refresher = CountingRefresher(delay=0.3)
    store = _store(client, key_prefix, refresher)
    grant = store.put(
        vehicle_ids=["v1"], access_token="old", refresh_token="refresh-0", expires_at=time.time() + 60
    )
    seen: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        # Each "worker" has its own Redis connection, as separate processes would.
        own = _store(redis.Redis(connection_pool=client.connection_pool), key_prefix, refresher)
        own.fernet = store.fernet
        try:
            seen.append(own.access_token("v1").token)
        except BaseException as error:  # noqa: BLE001 - collected and asserted on below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert refresher.calls == ["refresh-0"]
    assert seen == ["access-1"] * 8
    info = store.info(grant)
    assert info is not None
    assert info.generation == 2
    assert info.expires_at > time.time() + 7000


def test_refresh_after_someone_else_refreshed_makes_no_call(client: redis.Redis, key_prefix: str) -> None:
    refresher = CountingRefresher()
    store = _store(client, key_prefix, refresher)
    grant = store.put(
        vehicle_ids=["v1"], access_token="old", refresh_token="refresh-0", expires_at=time.time() + 7200
    )
    refused = store.access_token("v1")
    fresh = store.refresh(grant, stale=refused)  # one worker saw AUTHENTICATION and refreshed
    assert fresh.token == "access-1"
    again = store.refresh(grant, stale=refused)  # another saw the same refusal a moment later
    assert again.token == "access-1"
    assert refresher.calls == ["refresh-0"]


def test_a_refused_refresh_token_needs_the_user(client: redis.Redis, key_prefix: str) -> None:
    refresher = CountingRefresher()
    refresher.calls.append("spent")
    store = _store(client, key_prefix, refresher)
    store.put(vehicle_ids=["v1"], access_token="old", refresh_token="spent", expires_at=time.time() + 10)
    with pytest.raises(TokenError, match="the user must reconnect"):
        store.access_token("v1")


def test_a_held_refresh_lock_defers_instead_of_refreshing_twice(client: redis.Redis, key_prefix: str) -> None:
    refresher = CountingRefresher()
    store = _store(client, key_prefix, refresher)
    store.lock_wait = 0.2
    grant = store.put(
        vehicle_ids=["v1"], access_token="old", refresh_token="refresh-0", expires_at=time.time() + 10
    )
    client.set(KeySpace(key_prefix).grant_lock(grant), "someone-else", px=5000)
    with pytest.raises(TokenRefreshBusyError):
        store.access_token("v1")
    assert refresher.calls == []


def test_expiring_lists_grants_for_the_beat_refresher(client: redis.Redis, key_prefix: str) -> None:
    refresher = CountingRefresher()
    store = _store(client, key_prefix, refresher)
    soon = store.put(
        vehicle_ids=["soon"], access_token="a", refresh_token="refresh-0", expires_at=time.time() + 100
    )
    later = store.put(
        vehicle_ids=["later"], access_token="b", refresh_token="r-later", expires_at=time.time() + 7200
    )
    assert store.expiring(400) == [soon]
    assert store.refresh_if_expiring(soon) is True
    assert store.refresh_if_expiring(later) is False
    assert store.expiring(400) == []
    assert refresher.calls == ["refresh-0"]


def test_tokens_are_cached_in_the_process_until_refreshed(client: redis.Redis, key_prefix: str) -> None:
    refresher = CountingRefresher()
    store = _store(client, key_prefix, refresher)
    store.cache_seconds = 60
    grant = store.put(
        vehicle_ids=["v1"], access_token="old", refresh_token="refresh-0", expires_at=time.time() + 7200
    )
    first = store.access_token("v1")
    client.delete(KeySpace(key_prefix).grant_of("v1"))  # a cached token needs no Redis read
    assert store.access_token("v1") is first
    client.set(KeySpace(key_prefix).grant_of("v1"), grant)
    fresh = store.refresh(grant, stale=first)  # refused: refreshed, and the cache follows
    assert fresh.token == "access-1"
    assert store.access_token("v1").token == "access-1"
    assert refresher.calls == ["refresh-0"]
