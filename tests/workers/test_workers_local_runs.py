"""Events run on the claiming process's own threads (`workers.local_runs`), and a worker process doing so."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from eventstore.codec import text
from eventstore.keys import KeySpace
from testsupport import wait_until
from testsupport.workers import WorkerLauncher, accept_event, event_status
from workers.local_runs import LocalRuns

Launch = Callable[..., WorkerLauncher]


class Gate:
    """A run that records each id and, while closed, blocks until opened (or a test's deadline)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.finished: list[str] = []

    def __call__(self, event_id: str) -> None:
        with self.lock:
            self.started.append(event_id)
        assert self.opened.wait(30), "the test never opened the gate"
        with self.lock:
            self.finished.append(event_id)


@pytest.fixture
def gate() -> Iterator[Gate]:
    opened = Gate()
    yield opened
    opened.opened.set()


def test_every_id_runs_once_and_depth_counts_what_waits_or_runs(gate: Gate) -> None:
    handed: list[list[str]] = []
    runs = LocalRuns(gate, threads=2, hand_over=handed.append)
    runs.submit(["a", "b", "c"])
    wait_until(lambda: len(gate.started) == 2, timeout=10, what="two runs started")
    assert runs.depth() == 3  # two running, one waiting for a thread
    assert sorted(gate.started) in (["a", "b"], ["a", "c"], ["b", "c"])
    gate.opened.set()
    wait_until(lambda: runs.depth() == 0, timeout=10, what="every run ended")
    assert sorted(gate.finished) == ["a", "b", "c"]
    assert runs.stop() == []
    assert handed == []


def test_stop_hands_over_what_has_not_started_and_waits_for_what_runs(gate: Gate) -> None:
    handed: list[list[str]] = []
    runs = LocalRuns(gate, threads=1, hand_over=handed.append)
    runs.submit(["first", "second", "third"])
    wait_until(lambda: gate.started == ["first"], timeout=10, what="the first run started")
    stopping = threading.Thread(target=runs.stop)
    stopping.start()
    wait_until(lambda: handed == [["second", "third"]], timeout=10, what="the waiting ids handed over")
    assert stopping.is_alive()  # still waiting for the running one
    gate.opened.set()
    stopping.join(10)
    assert not stopping.is_alive()
    assert gate.finished == ["first"]  # the handed-over ids never ran here
    runs.submit(["late"])  # a relay pass that raced the shutdown
    assert handed == [["second", "third"], ["late"]]


def test_a_run_that_raises_is_logged_and_frees_its_thread() -> None:
    def broken(event_id: str) -> None:
        raise ConnectionError(f"Redis went away during {event_id}")

    handed: list[list[str]] = []
    runs = LocalRuns(broken, threads=1, hand_over=handed.append)
    with capture_logs() as logs:
        runs.submit(["e-1"])
        wait_until(lambda: runs.depth() == 0, timeout=10, what="the run ended")
        runs.stop()
    failed = [entry for entry in logs if entry["event"] == "event_run_failed"]
    assert [entry["event_id"] for entry in failed] == ["e-1"]
    assert failed[0]["log_level"] == "warning"
    assert handed == []


def _run_one(
    launcher: WorkerLauncher, state_event: Callable[..., Any], car: Callable[..., Any]
) -> dict[str, str]:
    prefix = launcher.settings.event_key_prefix
    event_id = accept_event(launcher.client, prefix, state_event(car(), {"charge-ischarging": True}))
    wait_until(
        lambda: event_status(launcher.client, prefix, event_id) == "done", timeout=30, what="the event done"
    )
    record = launcher.client.hgetall(KeySpace(prefix).event(event_id))
    return {text(key): text(value) for key, value in record.items()}


def test_a_worker_runs_what_its_relay_claims_without_a_celery_message(
    launch: Launch, state_event: Callable[..., Any], car: Callable[..., Any]
) -> None:
    launcher = launch(event_concurrency=4)
    assert launcher.settings.relay_dispatch == "local"
    launcher.start("local")
    try:
        record = _run_one(launcher, state_event, car)
    finally:
        launcher.close()  # the next test's worker must be the only one claiming
    assert record["task_id"] == ""  # no Celery task carried it
    assert record["worker"].startswith("local@")
    assert record["attempts"] == "1"


def test_with_celery_dispatch_the_relay_publishes_tasks(
    launch: Launch, state_event: Callable[..., Any], car: Callable[..., Any]
) -> None:
    launcher = launch(relay_dispatch="celery", queue=f"celery-dispatch-{id(launch)}")
    launcher.start("celery")
    try:
        record = _run_one(launcher, state_event, car)
    finally:
        launcher.close()
    assert record["task_id"] != ""
    assert record["worker"].startswith("celery@")
