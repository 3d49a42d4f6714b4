"""Pause and resume with a real worker process: while paused, new events wait in the inbox (a due retry
still goes out, which proves the relay kept running), none is lost, and a resume at a rate drains them at
that rate; a paused vehicle's events are parked at claim while the others run, then released at the rate.
The relay's own edges (a blocking pop that returns after a pause began) run on an in-process relay."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from eventstore.codec import text
from eventstore.events import EventStore
from eventstore.keys import KeySpace
from eventstore.pauses import Pauses
from eventstore.status import Status
from testsupport import wait_until
from testsupport.workers import WorkerLauncher, accept_event, event_status, settings_environment
from workers.cli import app
from workers.relay import Relay

runner = CliRunner()
Maker = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def worker(launch: Callable[..., WorkerLauncher]) -> WorkerLauncher:
    launcher = launch()
    launcher.start("w1")
    return launcher


@pytest.fixture
def cli(worker: WorkerLauncher, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """`cli(*arguments)`: smartcar-events with the worker's settings; returns stdout (exit 0 asserted)."""
    for name, value in settings_environment(worker.settings).items():
        monkeypatch.setenv(name, value)

    def run(*arguments: str) -> str:
        result = runner.invoke(app, list(arguments))
        assert result.exit_code == 0, result.output
        return result.stdout

    return run


def _prefix(worker: WorkerLauncher) -> str:
    return worker.settings.event_key_prefix


def _all_done(worker: WorkerLauncher, ids: list[str]) -> Callable[[], bool]:
    return lambda: all(
        event_status(worker.client, _prefix(worker), event_id) == Status.DONE for event_id in ids
    )


def _times(worker: WorkerLauncher, ids: list[str], field: str) -> list[float]:
    keys = KeySpace(_prefix(worker))
    return sorted(float(text(worker.client.hget(keys.event(event_id), field) or b"0")) for event_id in ids)


def test_a_global_pause_holds_new_events_in_the_inbox_and_a_resume_drains_them_at_the_rate(
    worker: WorkerLauncher, cli: Callable[..., str], car: Maker, state_event: Maker
) -> None:
    prefix, keys = _prefix(worker), KeySpace(_prefix(worker))

    def event() -> str:
        return accept_event(worker.client, prefix, state_event(car(), {"charge-ischarging": True}))

    before = [event() for _ in range(3)]
    wait_until(_all_done(worker, before), timeout=20, what="events done before the pause")

    assert "paused" in cli("pause", "--reason", "test")
    waiting = [event() for _ in range(40)]
    # A retry that comes due goes out while paused: once it is done, the relay has run passes since.
    retry = event()
    worker.client.lrem(keys.inbox, 1, retry)
    EventStore(worker.client, keys, retention=3600).park(retry, 0)
    wait_until(_all_done(worker, [retry]), timeout=20, what="a due retry run while paused")
    assert worker.client.llen(keys.inbox) == 40
    assert {event_status(worker.client, prefix, event_id) for event_id in waiting} == {Status.RECEIVED}

    assert "draining the inbox at 20 a second" in cli("resume", "--rate", "20")
    wait_until(_all_done(worker, waiting), timeout=30, interval=0.2, what="the paused events drained")
    claimed = _times(worker, waiting, "queued_at")
    rate = (len(claimed) - 1) / (claimed[-1] - claimed[0])
    print(f"drain at --rate 20: {rate:.1f} events/s claimed")  # noqa: T201 - the figure, with -s
    assert 14 <= rate <= 26, rate  # measured: the drain's rate, not the workers' full speed
    wait_until(lambda: Pauses(worker.client, keys).current() is None, timeout=5, what="the drain to end")
    assert "nothing was paused" in cli("resume")


def test_a_paused_vehicles_events_are_parked_while_the_others_run_then_released_at_the_rate(
    worker: WorkerLauncher, cli: Callable[..., str], car: Maker, state_event: Maker
) -> None:
    prefix, keys = _prefix(worker), KeySpace(_prefix(worker))
    paused, other = car(), car()
    assert "paused 1 vehicle(s)" in cli("pause", "--vehicle", paused["id"])
    parked = [
        accept_event(worker.client, prefix, state_event(paused, {"charge-ischarging": True}))
        for _ in range(12)
    ]
    running = [
        accept_event(worker.client, prefix, state_event(other, {"charge-ischarging": True})) for _ in range(5)
    ]
    wait_until(_all_done(worker, running), timeout=20, what="the other vehicle's events")
    pauses = Pauses(worker.client, keys)
    wait_until(lambda: len(pauses.parked(paused["id"])) == 12, timeout=10, what="the paused vehicle's parked")
    assert {event_status(worker.client, prefix, event_id) for event_id in parked} == {Status.QUEUED}
    assert worker.client.hget(keys.event(parked[0]), "attempts") == b"0"  # never run, never dead-lettered

    assert "12 parked event(s) released at 8 a second" in cli(
        "resume", "--vehicle", paused["id"], "--rate", "8"
    )
    wait_until(_all_done(worker, parked), timeout=30, interval=0.2, what="the parked events released")
    started = _times(worker, parked, "started_at")
    print(f"12 parked at --rate 8: started over {started[-1] - started[0]:.2f} s")  # noqa: T201 - with -s
    assert 1.0 <= started[-1] - started[0] <= 3.5  # 11 intervals of 1/8 s (the relay looks every 0.25 s)
    assert pauses.paused_vehicles() == {}


@pytest.fixture
def relay(client: redis.Redis, key_prefix: str) -> Iterator[tuple[Relay, list[str]]]:
    published: list[str] = []
    relay = Relay(
        EventStore(client, KeySpace(key_prefix), retention=3600),
        published.extend,
        lambda: 0,
        batch=10,
        high_water=100,
        idle_wait=3.0,
    )
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    yield relay, published
    stop.set()
    thread.join(5)


def test_a_blocking_pop_that_returns_after_a_pause_gives_its_ids_back(
    relay: tuple[Relay, list[str]], client: redis.Redis, key_prefix: str, car: Maker, state_event: Maker
) -> None:
    running, published = relay
    keys = KeySpace(key_prefix)
    first = accept_event(client, key_prefix, state_event(car(), {"charge-ischarging": True}))
    wait_until(lambda: published == [first], timeout=5, what="the first event published")
    Pauses(client, keys).pause()  # the relay is blocked in BLMPOP now, its cached look says "not paused"
    held = [
        accept_event(client, key_prefix, state_event(car(), {"charge-ischarging": True})) for _ in range(3)
    ]
    wait_until(lambda: running._pause is not None, timeout=5, what="the relay to see the pause")
    assert published == [first]
    assert [text(member) for member in reversed(client.lrange(keys.inbox, 0, -1))] == held  # in order
    Pauses(client, keys).resume(rate=50)
    wait_until(lambda: published == [first, *held], timeout=5, what="the drain to publish them in order")
