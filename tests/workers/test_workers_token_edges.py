"""Token edge cases, with the simulator as Smartcar's token endpoint: what `put` refuses, a grant whose tokens
are gone, the in-process cache letting go of a stored token, workers without client credentials, a refresh
that loses to a pair put by hand meanwhile, a forced refresh, and the beat refresher skipping a grant another
worker is refreshing and trying a grant again next beat after Smartcar's token endpoint failed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from eventstore.keys import KeySpace
from smartcar_core.results import Access
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.workers import accept_event, settings_environment, store_minted
from workers import app as app_module
from workers import tasks
from workers.app import app
from workers.assembly import Assembly
from workers.process import Outcome, process_event
from workers.runtime import Runtime
from workers.settings import WorkerSettings
from workers.tokens import TokenStore

Maker = Callable[..., dict[str, Any]]


def _put(store: TokenStore, *vehicles: str, token: str = "a") -> str:  # noqa: S107 - a fake token
    return store.put(
        vehicle_ids=vehicles, access_token=token, refresh_token="r", expires_at=time.time() + 7200
    )


def test_put_refuses_tokens_for_no_vehicle_or_a_vehicle_id_with_a_comma(
    make_runtime: Callable[..., Runtime], client: redis.Redis, key_prefix: str
) -> None:
    store = make_runtime().tokens
    with pytest.raises(ValueError, match="tokens belong to at least one vehicle"):
        _put(store)
    with pytest.raises(ValueError, match="a vehicle id cannot contain a comma"):
        _put(store, "car-1", "car-2,car-3")
    assert list(client.scan_iter(match=f"{key_prefix}*")) == []  # nothing half-stored
    assert repr(store) == f"TokenStore(prefix={key_prefix!r})"


def test_a_vehicle_whose_grant_was_deleted_is_dead_lettered_naming_the_grant(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Maker,
    state_event: Maker,
) -> None:
    runtime = sim_runtime(follow_up_signals={"*": ["tractionbattery-stateofcharge"]})
    vehicle = connect(runtime)
    grant = runtime.tokens.grant_of(vehicle["id"])
    client.delete(runtime.keys.grant(grant))  # an operator revoked the grant by deleting its tokens
    result = process_event(runtime, accept_event(client, key_prefix, state_event(vehicle, {"x-y": 1})))
    assert result.outcome is Outcome.DEAD
    assert result.detail["reason"] == f"grant {grant} has no tokens"
    assert result.detail["entry"]["error"]["class"] == "TokenError"
    assert sim.control.requests(vehicle_id=vehicle["id"]) == []


def test_the_process_cache_lets_a_stored_token_go_after_its_seconds(
    make_runtime: Callable[..., Runtime],
) -> None:
    store = make_runtime(token_cache_seconds=0.2).tokens
    _put(store, "car-1", token="first")
    assert store.access_token("car-1").token == "first"
    _put(store, "car-1", token="second")  # reconnected: a new pair in Redis
    assert store.access_token("car-1").token == "first"  # still the cached one, for up to 0.2 s
    wait_until(lambda: store.access_token("car-1").token == "second", timeout=3, what="the new token")


def test_without_client_credentials_an_expiring_token_is_a_dead_letter_naming_the_settings(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    make_runtime: Callable[..., Runtime],
    state_event: Maker,
) -> None:
    runtime = make_runtime(
        origins=sim.origins, smartcar_client_id=None, follow_up_signals={"*": ["closure-islocked"]}
    )
    assert runtime.tokens.refresher is None
    vehicle = sim.control.vehicles()[0]
    minted = sim.control.mint_tokens(user_id=vehicle["user_id"])
    store_minted(runtime.tokens, minted, expires_at=time.time() + 10)  # inside the refresh margin
    body = state_event({**vehicle, "user_id": minted.user_id}, {"charge-ischarging": True})
    result = process_event(runtime, accept_event(client, key_prefix, body))
    assert result.outcome is Outcome.DEAD
    assert result.detail["reason"] == "no refresher configured (SMARTCAR_CLIENT_ID/SECRET)"
    assert sim.control.requests() == []  # neither the token endpoint nor the vehicle was called


def test_a_refresh_that_loses_to_a_pair_put_by_hand_returns_the_hand_put_token(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime()
    vehicle = connect(runtime)
    tokens = runtime.tokens
    grant = tokens.grant_of(vehicle["id"])
    stale = tokens.access_token(vehicle["id"])
    exchange = tokens.refresher
    assert exchange is not None
    info = tokens.info(grant)
    assert info is not None

    def exchange_while_the_operator_reconnects(refresh_token: str) -> Access:
        answer = exchange(refresh_token)  # Smartcar rotates the pair...
        # ...while `smartcar-events tokens put` stores the pair of a new Connect session.
        tokens.put(
            vehicle_ids=info.vehicles,
            access_token="by-hand",
            refresh_token="by-hand-refresh",
            expires_at=time.time() + 7200,
            user_id=info.user_id,
        )
        return answer

    tokens.refresher = exchange_while_the_operator_reconnects
    fresh = tokens.refresh(grant, stale=stale)
    assert fresh.token == "by-hand"  # the newer pair wins; the refreshed one is not written over it
    assert tokens.access_token(vehicle["id"]).token == "by-hand"
    assert len(sim.control.requests(path="/oauth/token")) == 1


def test_a_forced_refresh_exchanges_even_a_fresh_token(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime()
    vehicle = connect(runtime)
    before = runtime.tokens.access_token(vehicle["id"])
    after = runtime.tokens.refresh(before.grant_id)  # no stale token: nothing to compare, exchange
    assert after.generation == before.generation + 1
    assert after.token != before.token
    assert len(sim.control.requests(path="/oauth/token")) == 1


@pytest.fixture
def configured(
    settings: WorkerSettings, sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerSettings]:
    """The process's assembly reads the test's settings, with the simulator as Smartcar; a refresh waits
    for another worker's lock a tenth of a second."""
    for name, value in {**settings_environment(settings), **sim.env}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WORKERS_TOKEN_REFRESH_WAIT", "0.1")
    assembly = Assembly(app)
    monkeypatch.setattr(app_module, "assembly", assembly)
    monkeypatch.setattr(tasks, "assembly", assembly)
    yield assembly.settings
    assembly.close()


def _expiring_grant(store: TokenStore, sim: RunningSimulator, user: dict[str, Any]) -> str:
    return store_minted(store, sim.control.mint_tokens(user_id=user["id"]), expires_at=time.time() + 120)


def test_the_beat_refresher_skips_a_grant_another_worker_is_refreshing(
    configured: WorkerSettings, client: redis.Redis, sim: RunningSimulator
) -> None:
    keys = KeySpace(configured.event_key_prefix)
    store = TokenStore(client, configured.fernet(), keys=keys)
    busy_user, other_user = sim.control.users()[:2]
    busy, other = _expiring_grant(store, sim, busy_user), _expiring_grant(store, sim, other_user)
    client.set(keys.grant_lock(busy), "another-worker", px=60_000)
    assert tasks.refresh_tokens.apply().get() == {"refreshed": 1, "failed": 0}
    busy_info, other_info = store.info(busy), store.info(other)
    assert busy_info is not None
    assert other_info is not None
    assert (busy_info.generation, other_info.generation) == (1, 2)
    # Not postponed: the next beat looks at it again.
    assert (client.zscore(keys.grant_expiry, busy) or 0) < time.time() + 300


def test_a_token_endpoint_outage_is_tried_again_next_beat_not_after_the_user(
    configured: WorkerSettings, client: redis.Redis, sim: RunningSimulator
) -> None:
    keys = KeySpace(configured.event_key_prefix)
    store = TokenStore(client, configured.fernet(), keys=keys)
    grant = _expiring_grant(store, sim, sim.control.users()[0])
    sim.control.add_fault(path="oauth/token", count=1, kind="http_status", status=503)
    assert tasks.refresh_tokens.apply().get() == {"refreshed": 0, "failed": 1}
    info = store.info(grant)
    assert info is not None
    assert info.generation == 1
    assert (client.zscore(keys.grant_expiry, grant) or 0) < time.time() + 300  # not postponed an hour
    assert tasks.refresh_tokens.apply().get() == {"refreshed": 1, "failed": 0}  # the next beat
