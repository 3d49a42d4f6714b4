"""The operator path: the VERIFY switch, the rate pauses and the command steps, and `connect`."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from eventstore.client import connect
from eventstore.commands import CommandStore, StepState
from eventstore.keys import KeySpace
from eventstore.rates import APP, RateStore
from eventstore.verify import AsyncVerifySwitch, VerifySwitch


def test_verify_is_armed_for_a_window_then_disarmed(client: redis.Redis, keys: KeySpace) -> None:
    switch = VerifySwitch(client, keys)
    assert (switch.armed(), switch.seconds_left()) == (False, -2)
    switch.arm(300, now=1_700_000_000)
    assert switch.armed()
    assert 290 < switch.seconds_left() <= 300
    assert client.get(keys.verify_armed) == b"1700000000"
    assert switch.disarm()
    assert not switch.disarm()
    assert not switch.armed()


def test_the_receiver_asks_the_same_switch_on_its_async_client(
    client: redis.Redis, keys: KeySpace, redis_url: str
) -> None:
    async def armed() -> bool:
        async_client = AsyncRedis.from_url(redis_url)
        try:
            return await AsyncVerifySwitch(async_client, keys).armed()
        finally:
            await async_client.aclose()

    assert not asyncio.run(armed())
    VerifySwitch(client, keys).arm(60)
    assert asyncio.run(armed())


def test_connect_configures_the_workers_timeouts(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        options = client.connection_pool.connection_kwargs
        assert (options["socket_timeout"], options["socket_connect_timeout"]) == (10.0, 10.0)
        assert options["health_check_interval"] == 30
        assert options["retry_on_timeout"] is True
        assert client.ping()
        assert client.echo("x") == b"x"  # bytes, as the stores expect
    finally:
        client.close()
    quick = connect(redis_url, timeout=0.5)
    assert quick.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    quick.close()


def test_rate_pauses_and_bucket(client: redis.Redis, keys: KeySpace) -> None:
    rates = RateStore(client, keys)
    assert [rates.take("v", capacity=2, refill_per_second=1.0, now=1000.0) for _ in range(3)] == [0, 0, 1.0]
    rates.pause("v", 1030.0, now=1001.0, empty_bucket=False)
    assert rates.take("v", capacity=2, refill_per_second=1.0, now=1010.0) == pytest.approx(20.0)
    rates.pause(APP, 1050.0, now=1011.0, empty_bucket=True)
    assert rates.pauses() == {"v": 1030.0, APP: 1050.0}
    assert rates.take("w", capacity=2, refill_per_second=1.0, now=1040.0) == pytest.approx(10.0)
    rates.resume()
    assert rates.pauses() == {}
    assert client.hget(keys.rate_bucket, "tokens") == b"0"  # emptied by the app pause


def test_a_command_step_is_marked_then_finished(client: redis.Redis, keys: KeySpace) -> None:
    commands = CommandStore(client, keys, retention=600)
    assert commands.state("e1", "s") is None
    assert commands.read("e1", "s").state is None
    commands.mark("e1", "s", StepState.SENDING, command="lock", params={"a": 1}, sending=True)
    record = commands.read("e1", "s")
    assert (record.state, record.fields["sends"], record.fields["params"]) == ("sending", "1", '{"a": 1}')
    assert record.sent_at > 0
    commands.mark("e1", "s", StepState.UNKNOWN, command="lock", params={"a": 1})
    assert commands.read("e1", "s").fields["sends"] == "1"  # no new send
    commands.finish("e1", "s", {"command": "lock", "how": "sent"})
    assert commands.state("e1", "s") == StepState.DONE
    assert commands.result("e1", "s") == {"command": "lock", "how": "sent"}
    assert 590 < client.ttl(keys.command("e1", "s")) <= 600


def test_the_vehicle_lock_says_how_long_it_is_held(client: redis.Redis, keys: KeySpace) -> None:
    commands = CommandStore(client, keys, retention=600)
    assert commands.lock_left("v1") == 0
    lock = commands.lock("v1", lease=5.0)
    assert lock.acquire(blocking=False)
    assert 4 < commands.lock_left("v1") <= 5
    assert not commands.lock("v1", lease=5.0).acquire(blocking=False)
    lock.release()
    assert commands.lock_left("v1") == 0
