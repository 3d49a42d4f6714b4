"""`smartcar-events vehicles`, through typer's runner and once as a real subprocess, against the simulator
over real HTTP and real Redis; and `--help` showing real types, `check` naming missing credentials."""

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
import typer
from typer.testing import CliRunner

from eventstore.fleet import FleetStore, VehicleStatus
from eventstore.keys import KeySpace
from eventstore.lifecycle import LifecycleStore
from smartcar_simulator.testing import RunningSimulator
from testsupport.workers import settings_environment
from workers.cli import app
from workers.runtime import Runtime
from workers.settings import WorkerSettings

WEBHOOK_ID = "wh-test"
runner = CliRunner()


@pytest.fixture
def env(settings: WorkerSettings, sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The CLI's environment: the test's settings, the simulator as Smartcar, our webhook and the AMT."""
    environment = {
        **settings_environment(settings),
        **{name: value for name, value in sim.env.items() if name.endswith("_ORIGIN")},
        "SMARTCAR_CLIENT_ID": sim.client_id,
        "SMARTCAR_CLIENT_SECRET": sim.client_secret,
        "SMARTCAR_WEBHOOK_ID": WEBHOOK_ID,
        "SMARTCAR_AMT": sim.amt,
        "COLUMNS": "200",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


@pytest.fixture
def car(sim: RunningSimulator, sim_runtime: Callable[..., Runtime]) -> dict[str, Any]:
    """A vehicle of the simulator with its owner's tokens stored (the grant covers both their cars)."""
    runtime = sim_runtime()
    vehicle = sim.control.vehicles()[0]
    minted = sim.control.mint_tokens(user_id=vehicle["user_id"])
    runtime.tokens.put(
        vehicle_ids=minted.vehicle_ids,
        access_token=minted.access_token,
        refresh_token=minted.refresh_token,
        expires_at=time.time() + minted.expires_in,
        user_id=minted.user_id,
    )
    return {**vehicle, "tokens": minted}


def subscribed(sim: RunningSimulator) -> set[str]:
    return set(sim.sim.subscriptions.get(WEBHOOK_ID, set()))


def one_line(result: Any, code: int) -> str:
    """The one stderr line of a refusal with `code`: no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    return str(line)


def test_help_shows_real_types_and_no_flag_as_taking_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    root = typer.main.get_command(app)

    def paths(command: Any, prefix: list[str]) -> Iterator[list[str]]:
        yield prefix
        for name, sub in getattr(command, "commands", {}).items():  # a group's (typer's own click)
            yield from paths(sub, [*prefix, name])

    for path in paths(root, []):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path
    put = runner.invoke(app, ["tokens", "put", "--help"]).output
    assert "--expires-in" in put
    assert "<float>" in put
    assert "<str>" in put  # --user
    subscribe = runner.invoke(app, ["vehicles", "subscribe", "--help"]).output
    assert "--now" in subscribe
    assert "--user" in subscribe


def test_subscribe_now_then_list_and_show(
    env: dict[str, str], sim: RunningSimulator, car: dict[str, Any]
) -> None:
    result = runner.invoke(app, ["vehicles", "subscribe", car["id"], "--now"])
    assert result.exit_code == 0, result.output
    assert f"{car['id']}: subscribed to webhook {WEBHOOK_ID}" in result.stdout
    assert subscribed(sim) == {car["id"]}

    listed = runner.invoke(app, ["vehicles", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["vehicle_id"]: row for row in json.loads(listed.stdout)["vehicles"]}
    assert set(rows) == set(car["tokens"].vehicle_ids)
    assert rows[car["id"]]["status"] == "subscribed"
    other = next(v for v in rows if v != car["id"])
    assert (rows[other]["status"], rows[other]["reason"]) == ("connected", "tokens stored, not registered")
    assert rows[car["id"]]["token_expires_at"] > time.time()
    table = runner.invoke(app, ["vehicles", "list"])
    assert car["id"] in table.stdout
    assert "subscribed" in table.stdout

    shown = runner.invoke(app, ["vehicles", "show", car["id"]])
    assert shown.exit_code == 0, shown.output
    assert "subscribed_at" in shown.stdout
    as_json = json.loads(runner.invoke(app, ["vehicles", "show", car["id"], "--json"]).stdout)
    assert (as_json["webhook_id"], as_json["user_id"]) == (WEBHOOK_ID, car["tokens"].user_id)
    secrets = [car["tokens"].access_token, car["tokens"].refresh_token, sim.amt, sim.client_secret]
    outputs = result.output + listed.output + table.output + shown.output
    assert [secret for secret in secrets if secret in outputs] == []
    assert one_line(runner.invoke(app, ["vehicles", "show", "unknown-car"]), 1) == (
        "nothing known about vehicle unknown-car"
    )


def test_by_default_the_job_is_asked_of_the_workers(
    env: dict[str, str], settings: WorkerSettings, car: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = LifecycleStore(redis.Redis.from_url(settings.redis_url), KeySpace(settings.event_key_prefix))
    result = runner.invoke(app, ["vehicles", "refresh", car["id"]])
    assert result.exit_code == 0, result.output
    assert f"asked the workers to refresh {car['id']}: now" in result.stdout
    assert [job.member for job, _ in jobs.waiting()] == [f"refresh:{car['id']}"]

    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:9/0")  # nothing listens there
    later = runner.invoke(app, ["vehicles", "unsubscribe", car["id"]])
    assert later.exit_code == 0, later.output
    assert "the broker at 127.0.0.1:9/0 did not answer" in later.stderr
    assert "within 5 s (beat's drain)" in later.stdout
    assert len(jobs.waiting()) == 2
    reconcile = runner.invoke(app, ["vehicles", "reconcile"])
    assert reconcile.exit_code == 1


def test_unsubscribe_refresh_and_disconnect_now(
    env: dict[str, str], settings: WorkerSettings, sim: RunningSimulator, car: dict[str, Any]
) -> None:
    sim.control.add_fault(
        vehicle_id=car["id"], path=f"webhooks/{WEBHOOK_ID}", method="POST", count=1,
        error={"type": "SERVER", "code": "INTERNAL"},
    )  # fmt: skip
    assert runner.invoke(app, ["vehicles", "subscribe", car["id"], "--now"]).exit_code == 0  # retried
    unsubscribed = runner.invoke(app, ["vehicles", "unsubscribe", car["id"], "--now"])
    assert f"{car['id']}: unsubscribed from webhook {WEBHOOK_ID}" in unsubscribed.stdout
    refreshed = runner.invoke(app, ["vehicles", "refresh", car["id"], "--now"])
    assert refreshed.exit_code == 0, refreshed.output
    assert "refreshed; the access token expires at" in refreshed.stdout
    kept = runner.invoke(app, ["vehicles", "disconnect", car["id"], "--now"], input="n\n")
    assert kept.exit_code == 1
    gone = runner.invoke(app, ["vehicles", "disconnect", car["id"], "--now", "--yes"])
    assert gone.exit_code == 0, gone.output
    assert "tokens and state forgotten" in gone.stdout
    fleet = FleetStore(redis.Redis.from_url(settings.redis_url), KeySpace(settings.event_key_prefix))
    known = fleet.get(car["id"])
    assert known is not None
    assert known.status is VehicleStatus.REVOKED
    assert not sim.sim.fleet.is_connected(car["user_id"], car["id"])


def test_a_failure_now_is_one_line_and_exit_1(
    env: dict[str, str], sim: RunningSimulator, car: dict[str, Any]
) -> None:
    sim.control.add_fault(
        vehicle_id=car["id"], path=f"webhooks/{WEBHOOK_ID}", method="POST",
        error={"type": "PERMISSION", "code": None, "status": 403},
    )  # fmt: skip
    line = one_line(runner.invoke(app, ["vehicles", "subscribe", car["id"], "--now"]), 1)
    assert line.startswith(f"{car['id']}: subscribe failed: PERMISSION")
    assert "no-tokens: subscribe failed: NoTokensError: no Smartcar tokens" in one_line(
        runner.invoke(app, ["vehicles", "subscribe", "no-tokens", "--now"]), 1
    )


def test_bad_input_and_settings_are_one_line(
    env: dict[str, str], car: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert one_line(runner.invoke(app, ["vehicles", "subscribe", "a,b"]), 2).startswith(
        "not a vehicle id: 'a,b'"
    )
    assert runner.invoke(app, ["vehicles", "subscribe"]).exit_code == 2  # no vehicle named
    monkeypatch.delenv("SMARTCAR_AMT")
    assert one_line(runner.invoke(app, ["vehicles", "unsubscribe", car["id"]]), 78) == (
        "unsubscribe needs SMARTCAR_AMT, which the workers read too: set it"
    )
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    line = one_line(runner.invoke(app, ["vehicles", "list"]), 78)
    assert line.startswith("the event store's Redis at 127.0.0.1:9/0 did not answer")
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", "")
    assert "TOKEN_ENCRYPTION_KEY" in one_line(runner.invoke(app, ["vehicles", "list"]), 78)


def test_reconcile_now_reports_the_drift(
    env: dict[str, str], sim: RunningSimulator, car: dict[str, Any]
) -> None:
    dry = runner.invoke(app, ["vehicles", "reconcile", "--now", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "not_subscribed" in dry.stdout
    assert subscribed(sim) == set()
    queued = runner.invoke(app, ["vehicles", "reconcile"])
    assert queued.exit_code == 0, queued.output
    assert "asked the workers to reconcile" in queued.stdout
    fixed = runner.invoke(app, ["vehicles", "reconcile", "--now"])
    assert fixed.exit_code == 0, fixed.output
    listed = runner.invoke(app, ["vehicles", "list"])
    assert "last reconciliation" in listed.stdout
    sim.control.add_fault(
        path="connections", method="GET", count=1, error={"type": "SERVER", "code": "INTERNAL"}
    )
    assert one_line(runner.invoke(app, ["vehicles", "reconcile", "--now"]), 1).startswith(
        "reconcile failed, nothing changed: SERVER:INTERNAL"
    )


def test_check_says_when_no_token_can_be_refreshed(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMARTCAR_CLIENT_SECRET")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 78
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    expected = (
        "warning: SMARTCAR_CLIENT_ID or SMARTCAR_CLIENT_SECRET is not set: no token can be refreshed, "
        "so every vehicle's calls fail once its access token expires"
    )
    assert warnings == [expected], result.stderr


def test_the_command_as_a_subprocess(env: dict[str, str], car: dict[str, Any]) -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and entry point
        [str(Path(sys.executable).parent / "smartcar-events"), "vehicles", "list", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert {row["vehicle_id"] for row in json.loads(done.stdout)["vehicles"]} == set(
        car["tokens"].vehicle_ids
    )
