"""`smartcar-events events list` and `events show`, against real Redis: every filter, paging, the one-line
refusals and their exit codes, a real subprocess, and a dead letter made through the real path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog
from typer.testing import CliRunner

from eventstore.events import EventStore, accept
from eventstore.keys import KeySpace
from smartcar_core.events import parse_envelope
from smartcar_simulator.testing import RunningSimulator
from testsupport.deliveries import delivery_body as _body
from testsupport.workers import accept_event, settings_environment
from testsupport.workers import ended_event as _event
from workers.cli import app
from workers.cli_events import parse_time
from workers.process import Outcome, process_event
from workers.runtime import Runtime
from workers.settings import WorkerSettings

runner = CliRunner()
ASLEEP = {"class": "VehicleStateError", "type": "VEHICLE_STATE", "code": "ASLEEP", "status": 409}
UNREACHABLE = {"class": "VehicleStateError", "type": "VEHICLE_STATE", "code": "UNREACHABLE", "status": 409}
PERMISSION = {"class": "PermissionError", "type": "PERMISSION", "code": None, "status": 403}
BUG = {"class": "ValueError", "message": "a bug in a handler"}
MINUTE = 60.0


@pytest.fixture
def env(settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    environment = settings_environment(settings)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


@pytest.fixture
def fleet(client: redis.Redis, key_prefix: str, env: dict[str, str]) -> dict[str, str]:
    """Six events in every kind of state, at known times before now."""
    store = EventStore(client, KeySpace(key_prefix), retention=3600)
    now = time.time()
    return {
        "done": _event(store, at=now - 180 * MINUTE, vehicle="v1", user="u1", webhook="wh1", end="done"),
        "asleep": _event(
            store,
            at=now - 60 * MINUTE,
            vehicle="v1",
            user="u1",
            webhook="wh1",
            end="dead",
            error=ASLEEP,
            reason="gave up after 5 attempts",
        ),
        "permission": _event(
            store,
            at=now - 30 * MINUTE,
            vehicle="v2",
            user="u2",
            webhook="wh2",
            end="dead",
            error=PERMISSION,
            reason="not retryable: PERMISSION",
            error_event=True,
        ),
        "retrying": _event(
            store,
            at=now - 10 * MINUTE,
            vehicle="v2",
            user="u2",
            webhook="wh1",
            end="retry",
            error=UNREACHABLE,
        ),
        "received": _event(store, at=now - 1 * MINUTE, vehicle="v3", user="u1", webhook="wh2", end=None),
        "bug": _event(
            store,
            at=now - 5 * MINUTE,
            vehicle="v3",
            user="u1",
            webhook="wh2",
            end="dead",
            error=BUG,
            reason="gave up after 5 attempts",
        ),
    }


def listed(*arguments: str) -> list[str]:
    """The ids `events list --json` prints, in its order (exit status 0, or 1 with nothing)."""
    result = runner.invoke(app, ["events", "list", "--json", *arguments])
    assert result.exit_code in (0, 1), result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert (result.exit_code == 1) == (not lines)
    return [line["id"] for line in lines]


FILTERS = [
    (["--status", "failed"], ["bug", "permission", "asleep"]),  # newest first
    (["-s", "failed", "-s", "retrying"], ["bug", "retrying", "permission", "asleep"]),
    (["--status", "received"], ["received"]),
    (["--status", "done"], ["done"]),
    (["--status", "queued"], []),
    (["--type", "VEHICLE_ERROR"], ["permission"]),
    (["--vehicle", "v1"], ["asleep", "done"]),
    (["--user", "u2"], ["retrying", "permission"]),
    (["--webhook", "wh2"], ["received", "bug", "permission"]),
    (["--error-type", "VEHICLE_STATE"], ["retrying", "asleep"]),
    (["--error-type", "VEHICLE_STATE", "--error-code", "ASLEEP"], ["asleep"]),
    (["--error-type", "PERMISSION"], ["permission"]),
    (["--reason", "GAVE UP"], ["bug", "asleep"]),
    (["--reason", "gave up", "--status", "retrying"], []),
    (["--since", "20m"], ["received", "bug", "retrying"]),
    (["--until", "20m"], ["permission", "asleep", "done"]),
    (["--since", "2h", "--until", "20m"], ["permission", "asleep"]),
    (["--vehicle", "v3", "--status", "failed"], ["bug"]),
    (["--vehicle", "v1", "--status", "failed"], ["asleep"]),  # the vehicle's index, its done one left out
    (["--vehicle", "v1", "--since", "2h"], ["asleep"]),
    (["--user", "u1", "--webhook", "wh2", "--since", "3m"], ["received"]),
    ([], ["received", "bug", "retrying", "permission", "asleep", "done"]),
]


@pytest.mark.parametrize(("arguments", "expected"), FILTERS, ids=[" ".join(f[0]) or "all" for f in FILTERS])
def test_every_filter_lists_exactly_its_events(
    fleet: dict[str, str], arguments: list[str], expected: list[str]
) -> None:
    assert listed(*arguments) == [fleet[name] for name in expected]


def test_an_iso_time_selects_as_a_duration_does(fleet: dict[str, str]) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 20 * MINUTE))
    assert listed("--since", since) == listed("--since", "20m")
    assert listed("--since", since + "+00:00") == listed("--since", "20m")


def test_pages_walk_on_from_their_cursor_without_repeating(fleet: dict[str, str]) -> None:
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(4):
        result = runner.invoke(app, ["events", "list", "--json", "--limit", "2", *cursor])
        assert result.exit_code == 0, result.output
        seen += [json.loads(line)["id"] for line in result.stdout.splitlines()]
        if "--cursor" not in result.stderr:
            break
        cursor = ["--cursor", result.stderr.split("--cursor", 1)[1].strip()]
    assert seen == listed("--limit", "100")
    assert len(seen) == len(set(seen)) == 6


def test_the_table_names_each_event_and_its_error(fleet: dict[str, str]) -> None:
    result = runner.invoke(app, ["events", "list", "--status", "failed"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("bug", "permission", "asleep"):
        assert fleet[name] in result.stdout
    assert "VEHICLE_STATE:ASLEEP" in result.stdout
    assert "ValueError" in result.stdout
    assert "gave up after 5 attempts" in result.stdout
    assert fleet["done"] not in result.stdout


def test_a_json_line_carries_the_event_and_its_error(fleet: dict[str, str]) -> None:
    result = runner.invoke(app, ["events", "list", "--json", "--error-type", "PERMISSION"])
    line = json.loads(result.stdout)
    assert line["id"] == fleet["permission"]
    assert (line["type"], line["status"], line["vehicle_id"], line["user_id"]) == (
        "VEHICLE_ERROR",
        "failed",
        "v2",
        "u2",
    )
    assert line["error"] == {"class": "PermissionError", "type": "PERMISSION", "code": None, "status": 403}
    assert line["dead_reason"] == "not retryable: PERMISSION"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--since", "banana"], "--since: expected a duration like 2h or an ISO time"),
        (["--until", "2 hours"], "--until: expected a duration like 2h or an ISO time"),
        (["--since", "1h", "--until", "2h"], "--since: after --until"),
        (["--status", "dead"], "--status: expected one of received, queued"),
        (["--error-code", "ASLEEP"], "--error-code: give --error-type too"),
        (["--cursor", "nonsense"], "--cursor: not a cursor"),
        (["--cursor", "9:1.0:x"], "--cursor: not a cursor of this query"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_a_bad_invocation_is_one_line_and_exit_2(
    env: dict[str, str], arguments: list[str], message: str
) -> None:
    result = runner.invoke(app, ["events", "list", *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    if not arguments[0].startswith("--limit"):  # typer's own usage message is several lines
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_show_says_what_an_event_lacks_and_prints_any_payload(
    client: redis.Redis, key_prefix: str, env: dict[str, str]
) -> None:
    """A received event: no attempt, no result, no command; its body as text when it is not JSON."""
    raw = _body("v1", "u1", "wh1")
    envelope = parse_envelope(raw)
    assert accept(client, KeySpace(key_prefix), envelope, b"not json", received_at=time.time())
    client.hset(KeySpace(key_prefix).event(envelope.event_id), "last_error", "{broken")
    shown = runner.invoke(app, ["events", "show", envelope.event_id], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert '"not json"' in shown.stdout
    assert "no attempt ended yet" in shown.stdout
    assert "no command sent" in shown.stdout
    table = runner.invoke(app, ["events", "list", "--status", "received"], env={"COLUMNS": "200"})
    assert envelope.event_id in table.stdout  # a last error it cannot read is left out, not a traceback


def test_nothing_found_is_exit_1(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["events", "list", "--vehicle", "nobody"])
    assert result.exit_code == 1
    assert "no event matches" in result.stderr
    shown = runner.invoke(app, ["events", "show", "no-such-event"])
    assert shown.exit_code == 1
    assert "no event no-such-event" in shown.stderr


def test_bad_settings_and_a_silent_redis_are_exit_78(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKERS_CONCURRENCY", "many")
    result = runner.invoke(app, ["events", "list"])
    assert result.exit_code == 78, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    monkeypatch.delenv("WORKERS_CONCURRENCY")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    for command in (["events", "list"], ["events", "show", "x"]):
        silent = runner.invoke(app, command)
        assert silent.exit_code == 78, silent.output
        assert "did not answer" in silent.stderr
        assert "Traceback" not in silent.output


def test_parse_time_reads_durations_and_iso_times() -> None:
    assert parse_time("--since", "90s", now=1000.0) == 910.0
    assert parse_time("--since", "1.5h", now=10_000.0) == 10_000.0 - 5400
    assert parse_time("--since", "1w", now=1e6) == 1e6 - 7 * 86400
    assert parse_time("--since", "1970-01-01T00:01:00Z", now=0) == 60.0
    assert parse_time("--since", None, now=0) is None


def test_a_real_smartcar_events_process_lists_the_dead_letters(
    fleet: dict[str, str], env: dict[str, str]
) -> None:
    command = Path(sys.executable).with_name("smartcar-events")
    done = subprocess.run(  # noqa: S603 - our own entry point
        [str(command), "events", "list", "--status", "failed", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == [
        fleet["bug"],
        fleet["permission"],
        fleet["asleep"],
    ]


def test_show_tells_the_whole_story_of_a_real_dead_letter(
    client: redis.Redis,
    key_prefix: str,
    *,
    sim: RunningSimulator,
    sim_runtime: Callable[..., Runtime],
    connect: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True, max_countdown=0)
    for name, value in settings_environment(runtime.settings).items():
        monkeypatch.setenv(name, value)
    vehicle = connect(runtime, soc=0.9, charging=True, plugged_in=True, charge_limit=1.0)
    body = state_event(
        vehicle,
        {
            "tractionbattery-stateofcharge": 90,
            "charge-ischarging": True,
            "charge-ischargingcableconnected": True,
        },
    )
    event_id = accept_event(client, key_prefix, body)
    sim.control.add_fault(
        vehicle_id=vehicle["id"],
        path="charge",
        method="POST",
        count=1,
        error={"type": "BILLING", "code": "VEHICLE_LIMIT"},
    )
    with structlog.testing.capture_logs() as logs:
        result = process_event(runtime, event_id)
    assert result.outcome is Outcome.DEAD, result
    error = result.detail["entry"]["error"]
    assert error["request_id"]

    line = next(log for log in logs if log["event"] == "event_dead_lettered")
    assert {
        key: line[key] for key in ("event_id", "event_type", "vehicle_id", "error_type", "request_id")
    } == {
        "event_id": event_id,
        "event_type": "VEHICLE_STATE",
        "vehicle_id": vehicle["id"],
        "error_type": "BILLING",
        "request_id": error["request_id"],
    }
    assert line["attempts"] == 1
    assert line["error_code"] == "VEHICLE_LIMIT"
    assert "not retryable" in line["reason"]

    assert listed("--error-type", "BILLING", "--error-code", "VEHICLE_LIMIT") == [event_id]
    shown = runner.invoke(app, ["events", "show", event_id], env={"COLUMNS": "240"})
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    for expected in (
        event_id,
        "failed",
        "BILLING:VEHICLE_LIMIT",
        "430",
        error["request_id"],
        vehicle["id"],
        "charging-rule",
    ):
        assert str(expected) in out, expected
    assert '"eventType": "VEHICLE_STATE"' in out  # the payload, pretty-printed
    assert error["message"].split()[0] in out

    as_json = json.loads(runner.invoke(app, ["events", "show", event_id, "--json"]).stdout)
    assert as_json["record"]["status"] == "failed"
    assert as_json["payload"]["eventId"] == event_id
    (attempt,) = as_json["attempts"]
    assert attempt["error"]["type"] == "BILLING"
    assert attempt["error"]["request_id"] == error["request_id"]
    assert attempt.get("resolution") or attempt.get("suggested_user_message")
    (step,) = as_json["commands"].values()
    assert step["command"] == "stop_charge"
    assert step["state"] in ("not_sent", "unknown")
