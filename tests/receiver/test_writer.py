"""EventWriter: deliveries that arrive together share a pipeline, yet each gets its own answer; a lost
script cache, a failing event, a cancelled caller and a shutdown in flight all end in a definite answer."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from eventstore.keys import KeySpace
from receiver.writer import MAX_BATCH, EventWriter
from smartcar_core.events import Envelope, parse_envelope
from testsupport.receiver import body_of, read_inbox, read_record

pytestmark = pytest.mark.anyio


@pytest.fixture
async def writer(redis_url: str, keys: KeySpace) -> AsyncIterator[EventWriter]:
    client = Redis.from_url(redis_url)
    events = EventWriter(client, keys, dedupe_seconds=7 * 24 * 3600)
    await events.load_script()
    yield events
    await events.drain()
    await client.aclose()


def envelope(event_id: str) -> tuple[Envelope, bytes]:
    raw = body_of(
        {"eventId": event_id, "eventType": "VEHICLE_STATE", "vehicleId": "v-1", "meta": {"deliveryId": "d"}}
    )
    return parse_envelope(raw), raw


async def accept(writer: EventWriter, event_id: str) -> bool:
    parsed, raw = envelope(event_id)
    return await writer.accept(parsed, raw, 1_700_000_000.0)


async def test_a_lost_script_cache_is_refilled_on_noscript(
    writer: EventWriter, store: redis.Redis, keys: KeySpace
) -> None:
    writer._sha = "0" * 40  # what the writer holds after Redis forgot the script (restart, failover)
    results = await asyncio.gather(*(accept(writer, f"e-{n}") for n in range(5)))
    assert results == [True] * 5
    assert writer._sha != "0" * 40
    assert sorted(read_inbox(store, keys)) == [f"e-{n}" for n in range(5)]


async def test_more_than_a_batch_at_once_is_sent_in_several_pipelines(
    writer: EventWriter, store: redis.Redis, keys: KeySpace
) -> None:
    count = MAX_BATCH * 2 + 10
    results = await asyncio.gather(*(accept(writer, f"e-{n}") for n in range(count)))
    assert results == [True] * count
    assert len(read_inbox(store, keys)) == count


async def test_a_delivery_arriving_while_a_flush_waits_for_redis_gets_a_flush_of_its_own(
    writer: EventWriter, store: redis.Redis, keys: KeySpace
) -> None:
    first = asyncio.create_task(accept(writer, "first"))
    while writer._queue or not writer._flushes:  # noqa: ASYNC110 - turn by turn, until a flush took "first"
        await asyncio.sleep(0)
    assert len(writer._flushes) == 1  # ... and waits for Redis
    assert await accept(writer, "second") is True
    assert await first is True
    assert sorted(read_inbox(store, keys)) == ["first", "second"]


async def test_one_failing_event_does_not_fail_its_batch(
    writer: EventWriter, store: redis.Redis, keys: KeySpace
) -> None:
    store.set(keys.event("broken"), "not a hash")  # HSET on it fails inside the script
    results = await asyncio.gather(
        *(accept(writer, name) for name in ("a", "broken", "b")), return_exceptions=True
    )
    assert results[0] is True
    assert results[2] is True
    assert isinstance(results[1], ResponseError)
    assert sorted(read_inbox(store, keys)) == ["a", "b"]
    # the failed event was not marked seen: Smartcar's retry is stored, not taken for a duplicate
    assert not store.exists(keys.seen("broken"))
    store.delete(keys.event("broken"))
    assert await accept(writer, "broken") is True
    assert read_record(store, keys, "broken")["status"] == "received"


async def test_a_caller_that_goes_away_does_not_break_the_flush(
    writer: EventWriter, store: redis.Redis, keys: KeySpace
) -> None:
    gone = asyncio.create_task(accept(writer, "gone"))
    await asyncio.sleep(0)  # queued, not flushed yet
    gone.cancel()
    assert await accept(writer, "stays") is True
    await writer.drain()
    assert gone.cancelled()
    # stored all the same: Smartcar, answered nothing, retries and meets a duplicate
    assert sorted(read_inbox(store, keys)) == ["gone", "stays"]


async def test_a_flush_interrupted_at_shutdown_answers_its_callers(writer: EventWriter) -> None:
    started = asyncio.Event()

    async def hang(_batch: list[Any]) -> list[object]:
        started.set()
        await asyncio.Event().wait()
        return []

    writer._run = hang  # type: ignore[method-assign, assignment] # - a Redis that never answers
    caller = asyncio.create_task(accept(writer, "in-flight"))
    await started.wait()
    for flush in list(writer._flushes):
        flush.cancel()
    with pytest.raises(RedisError, match="interrupted"):
        await caller
    await writer.drain()
    assert not writer._flushes


async def test_an_event_that_cannot_be_encoded_fails_alone(
    writer: EventWriter, store: redis.Redis, keys: KeySpace, caplog: pytest.LogCaptureFixture
) -> None:
    """An Envelope built by hand with a lone surrogate (parse_envelope refuses those): its caller gets the
    UnicodeEncodeError, the deliveries sharing its round trip are stored, and nothing is left unretrieved."""
    parsed, raw = envelope("poisoned")
    poisoned = Envelope(
        parsed.event_id, parsed.event_type, parsed.version, parsed.body, vehicle_id="v-\ud800"
    )

    async def accept_poisoned() -> bool:
        return await writer.accept(poisoned, raw, 1_700_000_000.0)

    calls = [accept(writer, f"e-{n}") for n in range(10)]
    calls.insert(5, accept_poisoned())
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results.pop(5), UnicodeEncodeError)
    assert results == [True] * 10
    assert sorted(read_inbox(store, keys)) == sorted(f"e-{n}" for n in range(10))
    assert not store.exists(keys.event("poisoned"))
    await writer.drain()
    gc.collect()  # a task whose exception nobody retrieved says so when it is collected
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
