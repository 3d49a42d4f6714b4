"""`smartcar-events` as an operator runs it, as a subprocess on real Redis with real worker processes.

`relay` runs the relay for workers started with `WORKERS_RELAY_ENABLED=false`: it publishes what the
receiver stored (with the fast publisher, or with Celery's apply_async when
`WORKERS_RELAY_FAST_PUBLISH=false`), the workers process it, and SIGTERM or Ctrl-C stops it with a count;
its logs follow `LOG_FORMAT` on stderr. `relay` and `check` refuse a broker that does not answer with exit 78
and one line per problem on stderr, and `check` refuses settings that cannot work the same way.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testsupport import wait_until
from testsupport.workers import WorkerLauncher, accept_event, event_status

CLI = str(Path(sys.executable).with_name("smartcar-events"))
UNREACHABLE = {"CELERY_BROKER_URL": "redis://127.0.0.1:9/0", "WORKERS_STARTUP_BROKER_WAIT": "1"}
Maker = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def relay_off(launch: Callable[..., WorkerLauncher]) -> WorkerLauncher:
    """A worker that runs tasks but no relay: nothing moves from the inbox without `smartcar-events relay`."""
    launcher = launch(relay_enabled=False)
    launcher.start("relay-off", concurrency=4)
    return launcher


@dataclass
class Command:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def out(self) -> str:
        return self.stdout.read_text(errors="replace")

    def err(self) -> str:
        return self.stderr.read_text(errors="replace")


@pytest.fixture
def run_cli(relay_off: WorkerLauncher, tmp_path: Path) -> Iterator[Callable[..., Command]]:
    """`run_cli(*args, **env)`: `smartcar-events args` with the workers' settings, output in files."""
    started: list[Command] = []

    def run(*args: str, **env: str) -> Command:
        number = len(started)
        stdout, stderr = tmp_path / f"out-{number}.txt", tmp_path / f"err-{number}.txt"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(  # noqa: S603 - our own command line
                [CLI, *args], env={**relay_off.env, "PYTHONUNBUFFERED": "1", **env}, stdout=out, stderr=err
            )
        command = Command(process, stdout, stderr)
        started.append(command)
        return command

    yield run
    for command in started:
        if command.process.poll() is None:
            command.process.kill()
        command.process.wait(10)


def _finished(command: Command, timeout: float = 30.0) -> int:
    try:
        return command.process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"still running {timeout:g} s later:\n{command.out()[-2000:]}\n{command.err()[-4000:]}"
        ) from None


@pytest.mark.parametrize(
    ("fast", "stop"),
    [("true", signal.SIGTERM), ("false", signal.SIGINT)],
    ids=["batch-publisher-sigterm", "apply-async-ctrl-c"],
)
def test_relay_publishes_to_workers_run_without_one_and_stops_on_sigterm_or_ctrl_c(
    relay_off: WorkerLauncher,
    run_cli: Callable[..., Command],
    *,
    module_prefix: str,
    car: Maker,
    state_event: Maker,
    fast: str,
    stop: signal.Signals,
) -> None:
    client = relay_off.client
    waiting = accept_event(client, module_prefix, state_event(car(), {"charge-ischarging": True}))
    relay = run_cli("relay", WORKERS_RELAY_FAST_PUBLISH=fast, LOG_FORMAT="json")
    wait_until(lambda: "relaying" in relay.out(), timeout=30, what="the relay to start")
    assert f"relaying {module_prefix}inbox to queue {relay_off.settings.queue}" in relay.out()
    later = [
        accept_event(client, module_prefix, state_event(car(), {"charge-ischarging": True})) for _ in range(2)
    ]
    ids = [waiting, *later]
    wait_until(
        lambda: all(event_status(client, module_prefix, e) == "done" for e in ids),
        what="the workers to process what the relay published",
    )
    relay.process.send_signal(stop)
    assert _finished(relay) == 0
    assert "published 3 events" in relay.out()
    # Its log lines are ours, on stderr, in the LOG_FORMAT asked for.
    lines = [json.loads(line) for line in relay.err().splitlines()]
    assert [line["event"] for line in lines] == ["relay_started", "relay_stopped"]
    assert lines[-1]["published"] == 3
    assert "relay_started" not in relay_off.processes[0].output()  # the worker ran none of its own


def _problems(stderr: str) -> tuple[list[str], list[dict[str, Any]]]:
    """What a command told the operator on stderr: its problem lines, and its JSON log lines apart."""
    lines = stderr.strip().splitlines()
    return [line for line in lines if not line.startswith("{")], [
        json.loads(line) for line in lines if line.startswith("{")
    ]


def test_relay_refuses_a_broker_that_does_not_answer(run_cli: Callable[..., Command]) -> None:
    relay = run_cli("relay", LOG_FORMAT="json", **UNREACHABLE)
    assert _finished(relay) == 78
    problems, logs = _problems(relay.err())
    assert len(problems) == 1, problems
    assert problems[0].startswith("the broker at 127.0.0.1:9/0 did not answer: Error 111 connecting to")
    assert logs, "each failed attempt is logged"
    assert {(line["event"], line["broker"]) for line in logs} == {("broker_unavailable", "127.0.0.1:9/0")}
    assert relay.out() == ""


def test_check_refuses_a_broker_that_does_not_answer_in_one_line(run_cli: Callable[..., Command]) -> None:
    check = run_cli("check", LOG_FORMAT="json", **UNREACHABLE)
    assert _finished(check) == 78
    problems, _ = _problems(check.err())
    assert len(problems) == 1, problems
    assert problems[0].startswith("the broker at 127.0.0.1:9/0 did not answer")
    assert "visibility_timeout" in check.out()  # the settings it would run with, all the same


def test_check_refuses_settings_that_cannot_work_in_one_line(run_cli: Callable[..., Command]) -> None:
    check = run_cli("check", WORKERS_VEHICLE_LOCK_LEASE="5")
    assert _finished(check) == 78
    problems, logs = _problems(check.err())
    assert len(problems) == 1, problems
    assert "WORKERS_VEHICLE_LOCK_LEASE (5 s) must exceed WORKERS_COMMAND_TIMEOUT (10 s)" in problems[0]
    assert logs == []
    assert check.out() == ""
