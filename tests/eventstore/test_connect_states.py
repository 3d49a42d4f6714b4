"""The receiver's Connect states on the real Redis: issued with a TTL and a hash of the browser binding,
consumed once, refused when unknown, used, expired, malformed or another browser's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from eventstore.connect import (
    ConnectStateError,
    ConnectStates,
    StateRefusal,
    binding_hash,
    new_token,
)
from eventstore.keys import KeySpace

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def states(redis_url: str, keys: KeySpace) -> AsyncIterator[ConnectStates]:
    connection = AsyncRedis.from_url(redis_url)
    yield ConnectStates(connection, keys, seconds=600)
    await connection.aclose()


async def refusal(states: ConnectStates, state: str | None, binding: str | None) -> StateRefusal:
    with pytest.raises(ConnectStateError) as refused:
        await states.consume(state, binding)
    assert "the Connect state was refused" in str(refused.value)
    return refused.value.reason


async def test_a_state_is_stored_hashed_with_its_ttl_and_works_once(
    states: ConnectStates, client: redis.Redis, keys: KeySpace
) -> None:
    binding = new_token()
    state = await states.issue(binding)
    stored = client.get(keys.connect_state(state))
    assert isinstance(stored, bytes)
    assert binding.encode() not in stored
    assert binding_hash(binding).encode() in stored
    assert 590 < int(client.ttl(keys.connect_state(state))) <= 600
    record = await states.consume(state, binding)
    assert record.binding_hash == binding_hash(binding)
    assert abs(record.created_at - time.time()) < 5
    assert client.exists(keys.connect_state(state)) == 0
    assert await refusal(states, state, binding) is StateRefusal.UNKNOWN


async def test_another_browser_spends_the_state_and_is_refused(states: ConnectStates) -> None:
    binding = new_token()
    state = await states.issue(binding)
    assert await refusal(states, state, new_token()) is StateRefusal.OTHER_BROWSER
    assert await refusal(states, state, binding) is StateRefusal.UNKNOWN
    for offered in (None, "", "short", binding + "x"):
        state = await states.issue(binding)
        assert await refusal(states, state, offered) is StateRefusal.OTHER_BROWSER


async def test_missing_forged_and_malformed_states_never_pass(
    states: ConnectStates, client: redis.Redis, keys: KeySpace
) -> None:
    binding = new_token()
    assert await refusal(states, None, binding) is StateRefusal.MISSING
    assert await refusal(states, "", binding) is StateRefusal.MISSING
    assert await refusal(states, new_token(), binding) is StateRefusal.UNKNOWN
    for malformed in ("*", "a" * 42, "a" * 44, "../" + "a" * 40, "é" * 43):
        assert await refusal(states, malformed, binding) is StateRefusal.UNKNOWN
    # Whatever else sits under a state's key is not a pass either.
    for junk in ("not json", "[]", '{"binding": "x"}', '{"created_at": 1}'):
        state = new_token()
        client.set(keys.connect_state(state), junk, ex=60)
        assert await refusal(states, state, binding) is StateRefusal.UNKNOWN


async def test_an_expired_state_is_refused(
    states: ConnectStates, client: redis.Redis, keys: KeySpace
) -> None:
    binding = new_token()
    gone = await states.issue(binding)
    client.pexpire(keys.connect_state(gone), 1)
    await asyncio.sleep(0.01)
    assert await refusal(states, gone, binding) is StateRefusal.UNKNOWN
    stale = await states.issue(binding, now=time.time() - 601)  # its TTL stretched: its age still counts
    assert await refusal(states, stale, binding) is StateRefusal.EXPIRED
    fresh = await states.issue(binding)
    with pytest.raises(ConnectStateError):
        await states.consume(fresh, binding, now=time.time() + 601)
