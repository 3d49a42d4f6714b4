"""`smartcar-events doctor`, each finding produced for real: unreadable settings, a Redis that does not
answer, one that evicts or keeps no append-only file (a private redis-server reconfigured), a clock off
Redis's, a stuck inbox and a pause, no worker and no beat, then a worker and a beat that answer, client
credentials accepted and rejected by the simulator's token endpoint, vehicles needing re-consent and a
failed refresh (signature failures: test_workers_doctor_signatures); the exit status a script reads (0,
1, 2), through typer's runner and as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from eventstore.fleet import FleetStore
from eventstore.keys import KeySpace
from eventstore.pauses import Pauses
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.redis_server import RedisServer
from testsupport.workers import WorkerLauncher, accept_event, settings_environment
from workers.cli import app
from workers.doctor import Finding, Severity, diagnose, exit_code
from workers.settings import WorkerSettings

runner = CliRunner()
Maker = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own (append-only file, noeviction), reconfigured by some tests."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture
def private(server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the private server, durable again for each test and emptied after."""
    client = redis.Redis.from_url(server.url())
    client.config_set("appendonly", "yes")
    client.config_set("maxmemory-policy", "noeviction")
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def on_private(settings: WorkerSettings, server: RedisServer) -> Callable[..., WorkerSettings]:
    """`on_private(**overrides)`: the test's settings on the private server."""
    return lambda **overrides: settings.model_copy(update={"redis_url": server.url(), **overrides})


ORIGINS = ("API", "AUTH", "CONNECT", "MANAGEMENT_API", "VEHICLE_API_V3")


def _origins(api: str, auth: str, connect: str, management: str, vehicle_v3: str) -> dict[str, str]:
    values = (api, auth, connect, management, vehicle_v3)
    return {f"SMARTCAR_{name}_ORIGIN": value for name, value in zip(ORIGINS, values, strict=True)}


def _of(simulator: RunningSimulator) -> dict[str, str]:
    origins = simulator.origins
    return _origins(origins.api, origins.auth, origins.connect, origins.management, origins.vehicle_v3)


def _findings(settings: WorkerSettings, **options: Any) -> dict[str, list[tuple[Severity, str]]]:
    found: dict[str, list[tuple[Severity, str]]] = {}
    for finding in diagnose(settings, wait=options.pop("wait", 0.3), **options):
        found.setdefault(finding.check, []).append((finding.severity, finding.what))
        assert finding.severity in (Severity.OK, Severity.NOTE) or (finding.why and finding.fix), finding
    return found


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Smartcar's addresses where nothing listens: the credentials probe answers at once, not verified."""
    for name, value in _origins(*["http://127.0.0.1:9"] * 5).items():
        monkeypatch.setenv(name, value)


def test_a_durable_redis_without_worker_or_beat(
    private: redis.Redis, on_private: Callable[..., WorkerSettings], nowhere: None
) -> None:
    found = _findings(on_private())
    assert found["redis"][0][0] is Severity.OK
    assert found["durability"] == [(Severity.OK, "append-only file on, maxmemory-policy noeviction")]
    assert found["clock"][0][0] is Severity.OK
    assert found["inbox"][0] == (Severity.OK, "the inbox holds 0 event(s), the oldest 0 s old")
    assert found["worker"][0][0] is Severity.PROBLEM
    assert found["beat"][0][0] is Severity.PROBLEM
    assert found["credentials"][0][0] is Severity.WARNING  # nothing answered at the token endpoint
    assert found["signatures"] == [(Severity.OK, "no signature failure in the last 15 min")]
    assert found["vehicles"][0][0] is Severity.OK


def test_an_evicting_redis_and_one_without_an_append_only_file(
    private: redis.Redis, on_private: Callable[..., WorkerSettings], nowhere: None
) -> None:
    private.config_set("maxmemory-policy", "allkeys-lru")
    private.config_set("appendonly", "no")
    found = _findings(on_private())
    assert [severity for severity, _ in found["durability"]] == [Severity.WARNING, Severity.WARNING]
    whats = " ".join(what for _, what in found["durability"])
    assert "appendonly no" in whats
    assert "allkeys-lru" in whats
    in_production = _findings(on_private(smartcar_env="production"))
    assert {severity for severity, _ in in_production["durability"]} == {Severity.PROBLEM}


def test_a_clock_off_redis_a_stuck_inbox_a_pause_and_vehicles_needing_a_person(
    private: redis.Redis,
    on_private: Callable[..., WorkerSettings],
    nowhere: None,
    car: Maker,
    state_event: Maker,
) -> None:
    settings = on_private()
    keys = KeySpace(settings.event_key_prefix)
    accept_event(
        private,
        settings.event_key_prefix,
        state_event(car(), {"charge-ischarging": True}),
        received_at=time.time() - 700,
    )
    fleet = FleetStore(private, keys)
    fleet.needs_reconsent("v-gone", reason="invalid_grant", url="https://connect.example/reconsent")
    fleet.failed("v-refresh", action="refresh", error="SERVER")
    found = _findings(settings, clock=lambda: time.time() + 120)
    assert found["clock"][0][0] is Severity.PROBLEM
    assert found["clock"][0][1].startswith("this machine's clock is +12")
    assert found["inbox"][0][0] is Severity.PROBLEM
    assert found["re-consent"] == [(Severity.WARNING, "1 vehicle(s) need re-consent: v-gone")]
    assert found["refresh"] == [(Severity.WARNING, "1 vehicle(s) whose last refresh failed: v-refresh")]
    assert _findings(settings, clock=lambda: time.time() + 5)["clock"][0][0] is Severity.WARNING

    Pauses(private, keys).pause(reason="upgrade")
    paused = _findings(settings)
    assert paused["pause"][0][0] is Severity.WARNING
    assert "(upgrade)" in paused["pause"][0][1]
    assert paused["inbox"][0][0] is Severity.OK  # waiting is what a pause is for


def test_a_redis_that_refuses_info_and_a_broker_that_does_not_answer(
    private: redis.Redis, server: RedisServer, on_private: Callable[..., WorkerSettings], nowhere: None
) -> None:
    private.acl_setuser(
        "doctor", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all", "-info"]
    )
    url = f"redis://doctor:pw@127.0.0.1:{server.port}/0"
    found = _findings(on_private(redis_url=url, celery_broker_url="redis://127.0.0.1:9/0"))
    assert found["durability"] == [(Severity.NOTE, "Redis refused INFO")]
    assert found["broker"][0][0] is Severity.PROBLEM
    assert "did not answer" in found["broker"][0][1]
    private.acl_deluser("doctor")


def test_a_redis_that_does_not_answer(settings: WorkerSettings) -> None:
    found = _findings(settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"}))
    assert found == {"redis": [(Severity.PROBLEM, found["redis"][0][1])]}
    assert "did not answer" in found["redis"][0][1]


def test_exit_codes_a_script_can_rely_on() -> None:
    def finding(severity: Severity) -> Finding:
        return Finding("x", severity, "what", "why", "fix")

    assert exit_code([]) == 0
    assert exit_code([finding(Severity.OK), finding(Severity.NOTE)]) == 0
    assert exit_code([finding(Severity.NOTE), finding(Severity.WARNING)]) == 1
    assert exit_code([finding(Severity.PROBLEM), finding(Severity.WARNING)]) == 2


@pytest.fixture(scope="module")
def stack(
    server: RedisServer, launch: Callable[..., WorkerLauncher], simulator: RunningSimulator
) -> WorkerLauncher:
    """A worker and a beat (answering pings) on the private Redis, Smartcar being the simulator."""
    launcher = launch(
        redis_url=server.url(),
        origins=simulator.origins,
        smartcar_client_id=simulator.client_id,
        smartcar_client_secret=simulator.client_secret,
    )
    launcher.start("w1")
    schedule = launcher.log_dir / "beat-schedule"
    command = [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-s", str(schedule)]
    launcher._spawn("beat", [*command, "--enable-remote-control", "-l", "INFO"], None, "")
    return launcher


@pytest.fixture
def stack_env(
    stack: WorkerLauncher, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    environment = {**settings_environment(stack.settings), **_of(simulator)}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


def test_a_healthy_stack_exits_0_and_a_wrong_secret_2(
    stack: WorkerLauncher, stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def healthy() -> bool:
        return runner.invoke(app, ["doctor", "--json", "--wait", "5"]).exit_code == 0

    wait_until(healthy, timeout=60, interval=1, what="doctor to find beat and the worker alive")
    result = runner.invoke(app, ["doctor", "--json"])
    shown = {finding["check"]: finding for finding in json.loads(result.stdout)}
    assert (
        shown["worker"]["severity"] == shown["beat"]["severity"] == shown["credentials"]["severity"] == "ok"
    )
    assert shown["signatures"]["severity"] == "ok"  # the wrong-AMT case: test_workers_doctor_signatures

    FleetStore(stack.client, KeySpace(stack.settings.event_key_prefix)).needs_reconsent(
        "v-x", reason="invalid_grant"
    )
    assert runner.invoke(app, ["doctor"], env={"COLUMNS": "200"}).exit_code == 1  # a warning
    FleetStore(stack.client, KeySpace(stack.settings.event_key_prefix)).subscribed(
        "v-x", webhook_id="wh", user_id=None
    )

    monkeypatch.setenv("SMARTCAR_CLIENT_SECRET", "not-the-secret")
    wrong = runner.invoke(app, ["doctor", "--json"])
    assert wrong.exit_code == 2
    found = {finding["check"]: finding for finding in json.loads(wrong.stdout)}
    assert found["credentials"]["severity"] == "problem"
    assert "invalid_client" in found["credentials"]["what"]


def test_doctor_as_a_real_process(stack: WorkerLauncher, stack_env: dict[str, str]) -> None:
    command = Path(sys.executable).with_name("smartcar-events")
    environment = {**os.environ, **stack_env, "TOKEN_ENCRYPTION_KEY": "", "COLUMNS": "300"}
    refused = subprocess.run(  # noqa: S603 - our own entry point
        [str(command), "doctor"], env=environment, capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 2
    assert "TOKEN_ENCRYPTION_KEY" in refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr
    done = subprocess.run(  # noqa: S603 - our own entry point
        [str(command), "doctor", "--json"],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
