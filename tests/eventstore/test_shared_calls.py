"""`SharedCalls`: a script called by many threads at once, the calls sharing round trips, each with its
own answer or error."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventstore.shared_calls import SharedCalls
from testsupport import free_port

# Answers its argument, after bumping a counter (so a call run twice would show), or fails when told to.
ECHO = """
redis.call('INCR', KEYS[1])
if ARGV[1] == 'fail' then return redis.error_reply('told to fail') end
return ARGV[1]
"""


class CountingRedis(redis.Redis):
    """A real client that counts the pipelines it opens: one per shared round trip."""

    pipelines = 0

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        self.pipelines += 1
        return super().pipeline(transaction, shard_hint)


def _in_threads(count: int, call: Callable[[int], Any]) -> list[Any]:
    """`call(i)` for each i on `count` threads started together; what each returned or raised."""
    outcomes: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = call(index)
        except Exception as error:  # noqa: BLE001 - the test looks at it
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a caller never got its answer"
    return outcomes


@pytest.fixture
def counting(redis_url: str) -> Iterator[CountingRedis]:
    client = CountingRedis(connection_pool=redis.ConnectionPool.from_url(redis_url, max_connections=200))
    yield client
    client.close()


def test_threads_calling_at_once_share_round_trips_and_each_gets_its_own_answer(
    counting: CountingRedis, key_prefix: str
) -> None:
    calls, key = SharedCalls(counting, ECHO), f"{key_prefix}count"
    for _round in range(5):
        answers = _in_threads(64, lambda index: calls(keys=[key], args=[f"a{index}"]))
        assert answers == [f"a{index}".encode() for index in range(64)]
    assert int(counting.get(key) or 0) == 5 * 64  # every call ran once
    assert 0 < counting.pipelines < 5 * 64  # shared: fewer round trips than calls


def test_a_failing_call_fails_alone(counting: CountingRedis, key_prefix: str) -> None:
    calls, key = SharedCalls(counting, ECHO), f"{key_prefix}count"
    answers = _in_threads(32, lambda index: calls(keys=[key], args=["fail" if index % 4 == 0 else index]))
    for index, answer in enumerate(answers):
        if index % 4 == 0:
            assert isinstance(answer, redis.ResponseError)
            assert "told to fail" in str(answer)
        else:
            assert answer == str(index).encode()


def test_a_script_redis_lost_is_loaded_again(counting: CountingRedis, key_prefix: str) -> None:
    calls, key = SharedCalls(counting, ECHO), f"{key_prefix}count"
    calls._script.sha = "0" * 40  # as after a restart or SCRIPT FLUSH: Redis knows no such script
    assert calls(keys=[key], args=["alone"]) == b"alone"
    calls._script.sha = "0" * 40
    answers = _in_threads(32, lambda index: calls(keys=[key], args=[index]))
    assert answers == [str(index).encode() for index in range(32)]


def test_when_redis_cannot_be_reached_every_caller_hears_so() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    calls = SharedCalls(client, ECHO)
    with pytest.raises(redis.ConnectionError):
        calls(keys=["k"], args=["alone"])
    answers = _in_threads(16, lambda index: calls(keys=["k"], args=[index]))
    assert all(isinstance(answer, redis.ConnectionError) for answer in answers)
    with pytest.raises(redis.ConnectionError):  # and the calls after them are not left waiting
        calls(keys=["k"], args=["after"])


def test_under_steady_load_every_caller_leads_in_turn_and_none_is_left_waiting(
    counting: CountingRedis, key_prefix: str
) -> None:
    """Threads calling again and again, as a worker's event threads do: the sender's role passes from
    caller to caller, and every call is answered, in its caller's order."""
    calls, key = SharedCalls(counting, ECHO), f"{key_prefix}count"

    def many(index: int) -> list[bytes]:
        return [calls(keys=[key], args=[f"{index}:{number}"]) for number in range(50)]

    answers = _in_threads(48, many)
    assert answers == [[f"{index}:{number}".encode() for number in range(50)] for index in range(48)]
    assert int(counting.get(key) or 0) == 48 * 50
