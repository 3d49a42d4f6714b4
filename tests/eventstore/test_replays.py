"""Replay jobs against real Redis: the snapshot, one job per event, the lease, the atomic step, cancel."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from eventstore.codec import text
from eventstore.commands import CommandStore, StepState
from eventstore.events import EventStore
from eventstore.keys import KeySpace
from eventstore.rates import APP, RateStore
from eventstore.replays import JobStatus, ReplayStore
from eventstore.status import Status

NewEvent = Callable[..., str]


@pytest.fixture
def replays(client: redis.Redis, keys: KeySpace) -> ReplayStore:
    return ReplayStore(client, keys, retention=600)


def _failed(store: EventStore, new_event: NewEvent, error: dict[str, str] | None = None) -> str:
    event_id = new_event()
    store.claim(10)
    begun = store.begin(event_id, lease=30)
    assert begun.record is not None
    entry = {"at": 1.0, "attempt": 1, "outcome": "failed", "error": error or {"type": "BILLING", "code": "X"}}
    assert store.dead_letter(begun.record, entry, reason="not retryable", results={})
    return event_id


def test_a_job_snapshots_its_ids_and_an_event_is_in_one_unfinished_job(
    client: redis.Redis, keys: KeySpace, store: EventStore, replays: ReplayStore, new_event: NewEvent
) -> None:
    first, second = _failed(store, new_event), _failed(store, new_event)
    made = replays.create([first, second, first], reason="operator", rate=5, selection={"ids": [first]})
    assert (made.created, made.taken, made.in_other_replay) == (True, 2, 0)
    job = replays.get(made.job_id)
    assert job is not None
    assert (job.status, job.total, job.cursor, job.rate, job.resend) == (JobStatus.PLANNED, 2, 0, 5.0, False)
    assert job.selection == {"ids": [first]}
    assert replays.ids(job.id) == [first, second]
    assert replays.in_replay([first, "other"]) == {first: job.id}
    again = replays.create([second], reason="operator", rate=5, selection={}, job_id=made.job_id)
    assert not again.created  # the same job asked for twice is one job
    other = replays.create([second], reason="operator", rate=5, selection={})
    assert (other.taken, other.in_other_replay) == (0, 1)
    empty = replays.get(other.job_id)
    assert empty is not None
    assert empty.status is JobStatus.DONE  # nothing to do: done at once, never due
    assert replays.due(10) == [job.id]
    assert replays.get("nope") is None


def test_steps_replay_failed_events_and_skip_the_rest_with_the_cursor(
    client: redis.Redis, keys: KeySpace, store: EventStore, replays: ReplayStore, new_event: NewEvent
) -> None:
    failed, done_since, running = (_failed(store, new_event) for _ in range(3))
    made = replays.create([failed, done_since, running, "gone-event"], reason="why", rate=50, selection={})
    store.replay(done_since)  # replayed by hand and done since the plan
    store.claim(10)
    begun = store.begin(done_since, lease=30)
    assert begun.record is not None
    assert store.done(begun.record, {})
    store.replay(running)  # replayed by hand, not run yet: its run will do
    job = replays.take(made.job_id, owner="w1", lease=30, now=None)
    assert job is not None
    assert job.status is JobStatus.RUNNING
    assert replays.take(made.job_id, owner="w2", lease=30) is None  # owned
    assert replays.step(job, owner="w2", start=0, count=4) == []  # not its owner: nothing
    assert replays.step(job, owner="w1", start=0, count=2) == [
        (failed, "replayed"),
        (done_since, "done_since"),
    ]
    assert replays.step(job, owner="w1", start=0, count=2) == []  # the cursor moved on: no second replay
    assert replays.step(job, owner="w1", start=2, count=10) == [
        (running, "in_progress"),
        ("gone-event", "gone"),
    ]
    ended = replays.get(job.id)
    assert ended is not None
    assert ended.status is JobStatus.DONE
    assert ended.counts == {"replayed": 1, "done_since": 1, "in_progress": 1, "gone": 1}
    assert replays.due(10) == []
    assert replays.in_replay([failed, done_since, running]) == {}
    record = store.load(failed)
    assert record is not None
    assert record.status == Status.REPLAYED
    assert record.history[-1]["reason"] == "why"
    assert record.history[-1]["replay_job"] == job.id
    assert [entry["outcome"] for entry in record.history] == ["failed", "replayed"]  # history kept
    assert client.zscore(keys.dead, failed) is None
    assert failed.encode() in client.lrange(keys.inbox, 0, -1)
    assert 0 < client.ttl(keys.replay_job(job.id)) <= 600


def test_a_lease_that_ended_lets_another_worker_go_on_from_the_cursor(
    store: EventStore, replays: ReplayStore, new_event: NewEvent
) -> None:
    ids = [_failed(store, new_event) for _ in range(3)]
    made = replays.create(ids, reason="operator", rate=50, selection={}, now=990.0)
    job = replays.take(made.job_id, owner="dead", lease=10, now=1000.0)
    assert job is not None
    assert replays.step(job, owner="dead", start=0, count=1) == [(ids[0], "replayed")]
    assert replays.due(10, now=1005.0) == []
    assert replays.due(10, now=1011.0) == [job.id]
    taken = replays.take(job.id, owner="next", lease=10, now=1011.0)
    assert taken is not None
    assert (taken.cursor, taken.fields["takes"]) == (1, "2")
    assert not replays.renew(job.id, owner="dead", lease=10)  # the old owner lost it
    assert replays.step(taken, owner="dead", start=1, count=2) == []
    assert replays.renew(job.id, owner="next", lease=10)
    assert replays.release(job.id, owner="next", due=5.0)
    assert replays.due(10, now=6.0) == [job.id]
    again = replays.take(job.id, owner="third", lease=10, now=6.0)
    assert again is not None
    assert replays.step(again, owner="third", start=1, count=5) == [
        (ids[1], "replayed"),
        (ids[2], "replayed"),
    ]
    assert not replays.renew(job.id, owner="third", lease=10)  # done: nothing to own


def test_cancel_stops_at_the_cursor_and_frees_the_rest(
    store: EventStore, replays: ReplayStore, new_event: NewEvent
) -> None:
    ids = [_failed(store, new_event) for _ in range(3)]
    made = replays.create(ids, reason="operator", rate=50, selection={})
    job = replays.take(made.job_id, owner="w", lease=30)
    assert job is not None
    replays.step(job, owner="w", start=0, count=1)
    assert replays.cancel(job.id) is JobStatus.CANCELLED
    assert replays.cancel(job.id) is JobStatus.CANCELLED  # again: as it is
    assert replays.cancel("nope") is None
    assert replays.step(job, owner="w", start=1, count=2) == []
    assert replays.in_replay(ids) == {}
    assert replays.due(10) == []
    assert replays.take(job.id, owner="w", lease=30) is None
    assert [store.load(event_id).status for event_id in ids] == ["replayed", "failed", "failed"]  # type: ignore[union-attr]
    stale = replays.create(ids[1:], reason="operator", rate=50, selection={})
    assert stale.taken == 2  # free for another job
    assert replays.cancel(stale.job_id) is JobStatus.CANCELLED
    ended = replays.get(stale.job_id)
    assert ended is not None
    assert ended.finished


def test_a_job_that_resends_marks_the_commands_not_sent_and_says_so_in_the_history(
    client: redis.Redis, keys: KeySpace, store: EventStore, replays: ReplayStore, new_event: NewEvent
) -> None:
    commands = CommandStore(client, keys, retention=600)
    event_id = _failed(store, new_event)
    commands.finish(event_id, "rule:stop", {"how": "sent"})
    made = replays.create([event_id], reason="operator", rate=5, selection={}, resend=True)
    job = replays.take(made.job_id, owner="w", lease=30)
    assert job is not None
    assert replays.step(job, owner="w", start=0, count=1) == [(event_id, "replayed")]
    step = commands.read(event_id, "rule:stop")
    assert step.state == StepState.NOT_SENT
    assert step.fields["resend_job"] == job.id
    record = store.load(event_id)
    assert record is not None
    assert record.history[-1]["resend_commands"] == ["rule:stop"]


def test_done_events_are_replayed_only_when_the_job_says_so(
    store: EventStore, replays: ReplayStore, new_event: NewEvent
) -> None:
    event_id = _failed(store, new_event)
    store.replay(event_id)
    store.claim(10)
    begun = store.begin(event_id, lease=30)
    assert begun.record is not None
    store.done(begun.record, {})
    made = replays.create([event_id], reason="x", rate=5, selection={}, statuses=("failed", "done"))
    job = replays.take(made.job_id, owner="w", lease=30)
    assert job is not None
    assert job.statuses == ("failed", "done")
    assert replays.step(job, owner="w", start=0, count=1) == [(event_id, "replayed")]


def test_the_bucket_room_is_read_without_taking(
    client: redis.Redis, keys: KeySpace, replays: ReplayStore
) -> None:
    rates = RateStore(client, keys)
    assert replays.bucket_room(capacity=0, refill_per_minute=2) == float("inf")
    assert replays.bucket_room(capacity=10, refill_per_minute=60, now=100.0) == 10.0  # never used: full
    for _ in range(4):
        assert rates.take("v", capacity=10, refill_per_second=1.0, now=100.0) == 0
    assert replays.bucket_room(capacity=10, refill_per_minute=60, now=100.0) == pytest.approx(6.0)
    assert replays.bucket_room(capacity=10, refill_per_minute=60, now=102.0) == pytest.approx(8.0)
    assert replays.bucket_room(capacity=10, refill_per_minute=60, now=100.0) == pytest.approx(
        6.0
    )  # nothing taken
    rates.pause(APP, 200.0, now=100.0, empty_bucket=False)
    assert replays.bucket_room(capacity=10, refill_per_minute=60, now=150.0) == 0.0
    assert json.loads(text(client.hget(keys.rate_bucket, "tokens") or b"0")) == pytest.approx(6.0)
