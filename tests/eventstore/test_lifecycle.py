"""Lifecycle jobs: one per (action, vehicle), handed out with a lease, removed only when done."""

from __future__ import annotations

import redis

from eventstore.keys import KeySpace
from eventstore.lifecycle import LifecycleAction, LifecycleStore

SUBSCRIBE, DISCONNECT = LifecycleAction.SUBSCRIBE, LifecycleAction.DISCONNECT


def test_a_job_asked_for_twice_is_one_job_and_is_taken_with_a_lease(
    client: redis.Redis, keys: KeySpace
) -> None:
    jobs = LifecycleStore(client, keys)
    jobs.request(SUBSCRIBE, "v1", user_id="u1", reason="connect", now=1000.0)
    jobs.request(SUBSCRIBE, "v1", user_id="u1", reason="reconnect", now=1001.0)
    jobs.request(DISCONNECT, "v2", reason="operator", due=2000.0, now=1001.0)
    assert [(job.member, due) for job, due in jobs.waiting()] == [
        ("subscribe:v1", 1001.0),
        ("disconnect:v2", 2000.0),
    ]
    (taken,) = jobs.take(10, lease=60, now=1002.0)  # the disconnect is not due yet
    assert (taken.action, taken.vehicle_id, taken.user_id, taken.reason) == (
        SUBSCRIBE,
        "v1",
        "u1",
        "reconnect",
    )
    assert jobs.take(10, lease=60, now=1003.0) == []  # leased: not handed out twice
    assert [job.member for job in jobs.take(10, lease=60, now=1063.0)] == ["subscribe:v1"]  # its taker died


def test_retry_counts_and_delays_and_done_forgets(client: redis.Redis, keys: KeySpace) -> None:
    jobs = LifecycleStore(client, keys)
    jobs.request(SUBSCRIBE, "v1", reason="connect", now=1000.0)
    (job,) = jobs.take(1, lease=60, now=1000.0)
    jobs.retry(job, delay=30, error="UPSTREAM:RATE_LIMIT", now=1001.0)
    assert jobs.take(1, lease=60, now=1030.0) == []
    (again,) = jobs.take(1, lease=60, now=1031.0)
    assert (again.attempts, again.last_error, again.user_id) == (1, "UPSTREAM:RATE_LIMIT", None)
    jobs.done(again)
    assert jobs.waiting() == []
    assert jobs.get("subscribe", "v1") is None
    client.zadd(keys.lifecycle, {"subscribe:orphan": 1.0})  # a job whose details are gone is skipped
    assert jobs.take(5, lease=60, now=1100.0) == []
    assert jobs.waiting() == []


def test_a_request_while_the_job_runs_is_done_again(client: redis.Redis, keys: KeySpace) -> None:
    jobs = LifecycleStore(client, keys)
    jobs.request(SUBSCRIBE, "v1", reason="connect", now=1000.0)
    (running,) = jobs.take(1, lease=60, now=1000.0)
    jobs.request(SUBSCRIBE, "v1", reason="reconnect", now=1001.0)  # the owner connected again meanwhile
    assert not jobs.done(running)
    (again,) = jobs.take(1, lease=60, now=1002.0)
    assert again.reason == "reconnect"
    assert jobs.done(again)
    assert jobs.waiting() == []
