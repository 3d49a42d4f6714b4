"""The Celery tasks and the app's start-up hooks, run in this process with the test's settings.

The tasks are reached through their module: a task imported by name is a lazy proxy that pytest's
collection would evaluate, configuring the app before any test has set the environment. Each test gets
an `Assembly` of its own (the app's and the tasks' `assembly`, swapped in by monkeypatch for the test).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from eventstore.codec import text
from eventstore.fleet import FleetStore, VehicleStatus
from eventstore.keys import KeySpace
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.workers import accept_event, event_status, settings_environment
from workers import app as app_module
from workers import tasks
from workers.app import RelayStep, app, celery_config
from workers.assembly import Assembly
from workers.settings import WorkerSettings
from workers.tokens import TokenStore

Maker = Callable[..., dict[str, Any]]


@pytest.fixture
def configured(
    settings: WorkerSettings, sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerSettings]:
    """The process's settings (and runtime) are the test's, and Smartcar is the simulator."""
    for name, value in {**settings_environment(settings), **sim.env}.items():
        monkeypatch.setenv(name, value)
    assembly = Assembly(app)  # reads the environment above when first asked
    monkeypatch.setattr(app_module, "assembly", assembly)
    monkeypatch.setattr(tasks, "assembly", assembly)
    yield assembly.settings
    assembly.close()


def _queue_length(client: redis.Redis, settings: WorkerSettings) -> int:
    return int(client.llen(settings.broker_key_prefix + settings.queue))


def test_process_event_task(
    configured: WorkerSettings, client: redis.Redis, car: Maker, state_event: Maker
) -> None:
    event_id = accept_event(
        client, configured.event_key_prefix, state_event(car(), {"charge-ischarging": True})
    )
    assert tasks.process_event.apply(args=(event_id,)).get() == "done"
    assert tasks.process_event.apply(args=(event_id,)).get() == "skipped"


def test_sweep_task_publishes_what_was_lost(
    configured: WorkerSettings, client: redis.Redis, car: Maker, state_event: Maker
) -> None:
    prefix = configured.event_key_prefix
    event_id = accept_event(client, prefix, state_event(car(), {"charge-ischarging": True}), received_at=0.0)
    client.lrem(KeySpace(prefix).inbox, 0, event_id)  # popped by a relay that died
    assert tasks.sweep.apply().get() == {"requeued": 1, "backlog": 0, "dropped": 0, "trimmed": 0}
    message = json.loads(text(client.rpop(configured.broker_key_prefix + configured.queue) or b"{}"))
    assert message["headers"]["argsrepr"] == repr((event_id,))
    assert tasks.sweep.apply().get()["requeued"] == 0


def test_enqueue_publishes_a_countdown(configured: WorkerSettings, client: redis.Redis) -> None:
    app.conf.update(celery_config(configured))
    app_module.assembly.publisher().enqueue("event-x", 1.5)
    message = json.loads(text(client.rpop(configured.broker_key_prefix + configured.queue) or b"{}"))
    assert message["headers"]["task"] == "workers.process_event"
    assert message["headers"]["eta"] is not None


def test_ping_task(configured: WorkerSettings, client: redis.Redis) -> None:
    tasks.ping.apply(args=("hello",)).get()
    assert client.exists(KeySpace(configured.event_key_prefix).ping("hello"))


def test_refresh_tokens_task_refreshes_what_expires_soon(
    configured: WorkerSettings, client: redis.Redis, sim: RunningSimulator
) -> None:
    store = TokenStore(client, configured.fernet(), keys=KeySpace(configured.event_key_prefix))
    soon_user, spent_user = sim.control.users()[:2]
    grants: dict[str, str] = {}
    for user, expires_in in ((soon_user, 120.0), (spent_user, 7200.0)):
        tokens = sim.control.mint_tokens(user_id=user["id"])
        grants[user["id"]] = store.put(
            vehicle_ids=tokens.vehicle_ids,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token if user is soon_user else "not-a-refresh-token",
            expires_at=time.time() + expires_in,
            user_id=user["id"],
        )
    soon, spent = grants[soon_user["id"]], grants[spent_user["id"]]
    # The second grant's token expires soon too, but its refresh token is refused: the user must reconnect.
    client.zadd(KeySpace(configured.event_key_prefix).grant_expiry, {spent: time.time() + 60})
    client.hset(KeySpace(configured.event_key_prefix).grant(spent), "expires_at", repr(time.time() + 60))
    assert tasks.refresh_tokens.apply().get() == {"refreshed": 1, "failed": 1}
    fleet = FleetStore(client, KeySpace(configured.event_key_prefix))
    refused = store.info(spent)
    assert refused is not None
    assert {fleet.get(v).status for v in refused.vehicles} == {VehicleStatus.NEEDS_RECONSENT}  # type: ignore[union-attr]
    info = store.info(soon)
    assert info is not None
    assert info.generation == 2
    assert info.expires_at > time.time() + 7000
    # The refused grant is not tried again every minute.
    assert (
        client.zscore(KeySpace(configured.event_key_prefix).grant_expiry, spent) or 0
    ) > time.time() + 3000
    assert tasks.refresh_tokens.apply().get() == {"refreshed": 0, "failed": 0}


def test_relay_step_runs_the_relay_in_the_worker(
    configured: WorkerSettings, client: redis.Redis, car: Maker, state_event: Maker
) -> None:
    """With the default local dispatch the relay's events run on the step's own threads: no message."""
    step = RelayStep(None)
    step.start(SimpleNamespace(hostname="step@test"))
    try:
        event_id = accept_event(
            client, configured.event_key_prefix, state_event(car(), {"charge-ischarging": True})
        )
        prefix = configured.event_key_prefix
        wait_until(lambda: event_status(client, prefix, event_id) == "done", timeout=10, what="the run")
        assert client.hget(KeySpace(prefix).event(event_id), "worker") == b"step@test"
        assert _queue_length(client, configured) == 0
    finally:
        step.stop(None)
    assert step.thread is None
    assert step.local is None


def test_relay_step_with_celery_dispatch_publishes_tasks(
    configured: WorkerSettings,
    client: redis.Redis,
    car: Maker,
    state_event: Maker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        app_module,
        "assembly",
        Assembly(app, settings=configured.model_copy(update={"relay_dispatch": "celery"})),
    )
    step = RelayStep(None)
    step.start(SimpleNamespace(hostname="step@test"))
    try:
        event_id = accept_event(
            client, configured.event_key_prefix, state_event(car(), {"charge-ischarging": True})
        )
        wait_until(lambda: _queue_length(client, configured) == 1, timeout=5, what="the relay to publish")
        assert event_status(client, configured.event_key_prefix, event_id) == "queued"
    finally:
        step.stop(None)
        app_module.assembly.close()
    assert step.thread is None


def test_start_up_refuses_a_missing_key(
    configured: WorkerSettings, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TOKEN_ENCRYPTION_KEY")
    monkeypatch.setattr(app_module, "assembly", Assembly(app))  # settings not read yet
    with pytest.raises(SystemExit) as exited:
        app_module._check_worker()
    assert exited.value.code == 78
    assert "TOKEN_ENCRYPTION_KEY is not set" in capfd.readouterr().err
    app_module._celery_logs()  # no settings: leaves logging alone, the check above reports


def test_start_up_hooks_with_good_settings(configured: WorkerSettings) -> None:
    app.conf.update(celery_config(configured))
    app_module._check_worker()
    app_module._check_beat()
    app_module._celery_logs()
    assert logging.getLogger("celery.app.trace").level == logging.WARNING
    runtime = app_module.assembly.runtime()
    app_module._forked()  # a forked child builds its own runtime
    assert app_module.assembly.runtime() is not runtime
