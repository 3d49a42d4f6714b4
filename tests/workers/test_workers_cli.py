"""`smartcar-events`: the token hook, vehicle state, the configuration check."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from testsupport.workers import accept_event, settings_environment
from workers.cli import app
from workers.process import Outcome, process_event
from workers.runtime import Runtime
from workers.settings import WorkerSettings, load_settings
from workers.state import vehicle_state
from workers.tokens import grant_id_for, put_tokens

runner = CliRunner()


@pytest.fixture
def env(settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    environment = settings_environment(settings)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SMARTCAR_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("SMARTCAR_REFRESH_TOKEN", raising=False)
    # `check` asks the token endpoint about our client: nothing listens here, so it says "not verified"
    # instead of sending the test's credentials to Smartcar.
    monkeypatch.setenv("SMARTCAR_AUTH_ORIGIN", "http://127.0.0.1:9")
    return environment


def test_new_key_prints_a_usable_fernet_key() -> None:
    result = runner.invoke(app, ["tokens", "new-key"])
    assert result.exit_code == 0
    WorkerSettings(token_encryption_key=result.stdout.strip())


def test_put_reads_smartcars_token_answer_from_stdin(
    env: dict[str, str], make_runtime: Callable[..., Runtime]
) -> None:
    answer = {"access_token": "AT-secret", "refresh_token": "RT-secret", "expires_in": 7200, "user_id": "u-1"}
    result = runner.invoke(
        app, ["tokens", "put", "--json", "-v", "car-1", "-v", "car-2"], input=json.dumps(answer)
    )
    assert result.exit_code == 0, result.output
    assert "grant u-1:" in result.stdout
    assert "secret" not in result.stdout
    runtime = make_runtime()
    assert runtime.tokens.access_token("car-2").token == "AT-secret"
    shown = runner.invoke(app, ["tokens", "show", "car-1"])
    assert shown.exit_code == 0
    assert "car-1, car-2" in shown.stdout
    assert "secret" not in shown.stdout


def test_put_reads_tokens_from_the_environment(
    env: dict[str, str], make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMARTCAR_ACCESS_TOKEN", "AT-env")
    monkeypatch.setenv("SMARTCAR_REFRESH_TOKEN", "RT-env")
    result = runner.invoke(app, ["tokens", "put", "--vehicle", "car-3", "--expires-in", "60"])
    assert result.exit_code == 0, result.output
    tokens = make_runtime().tokens
    assert tokens.info(tokens.grant_of("car-3")) is not None


def test_put_without_tokens_or_vehicles_explains(env: dict[str, str]) -> None:
    missing = runner.invoke(app, ["tokens", "put", "--vehicle", "car-1"])
    assert missing.exit_code == 2
    assert "no tokens" in missing.output
    no_vehicle = runner.invoke(
        app, ["tokens", "put", "--json"], input='{"access_token": "a", "refresh_token": "r"}'
    )
    assert no_vehicle.exit_code == 2
    assert "--vehicle" in no_vehicle.output
    bad = runner.invoke(app, ["tokens", "put", "--json"], input="nope")
    assert bad.exit_code == 2


def test_show_an_unknown_vehicle(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["tokens", "show", "nobody"])
    assert result.exit_code == 1


def test_put_tokens_function(
    env: dict[str, str], client: redis.Redis, make_runtime: Callable[..., Runtime]
) -> None:
    grant = put_tokens(
        vehicle_ids=["car-9"],
        access_token="a9",
        refresh_token="r9",
        expires_in=7200,
        settings=load_settings(),
        client=client,
    )
    assert grant == grant_id_for(["car-9"], None)
    assert make_runtime().tokens.access_token("car-9").token == "a9"


def test_vehicle_state_shows_the_latest_signals(
    env: dict[str, str],
    client: redis.Redis,
    *,
    key_prefix: str,
    make_runtime: Callable[..., Runtime],
    car: Callable[..., dict[str, Any]],
    state_event: Callable[..., dict[str, Any]],
) -> None:
    runtime = make_runtime()
    vehicle = car()
    body = state_event(vehicle, {"tractionbattery-stateofcharge": 64, "closure-islocked": True})
    assert process_event(runtime, accept_event(client, key_prefix, body)).outcome is Outcome.DONE
    result = runner.invoke(app, ["vehicle", "state", vehicle["id"], "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["signals"]["tractionbattery-stateofcharge"]["value"] == 64
    assert shown["signals"]["closure-islocked"] == {"value": True}
    table = runner.invoke(app, ["vehicle", "state", vehicle["id"]])
    assert table.exit_code == 0
    assert "tractionbattery-stateofcharge" in table.stdout
    assert vehicle_state(load_settings(), vehicle["id"], client=client)["closure-islocked"].value is True
    assert runner.invoke(app, ["vehicle", "state", "unknown"]).exit_code == 1


def test_check_reports_the_configuration(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "visibility_timeout" in result.stdout
    rows = {line.split()[1]: line.split()[3] for line in result.stdout.splitlines() if "dispatch" in line}
    assert rows == {"relay_dispatch": "local"}  # where the relay's events run, as the worker will run them


def test_check_says_when_the_broker_does_not_answer(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:9/0")  # nothing listens there
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 78
    assert "the broker at 127.0.0.1:9/0 did not answer" in result.output


def test_commands_refuse_to_run_without_a_key(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", "")
    result = runner.invoke(app, ["vehicle", "state", "x"])
    assert result.exit_code == 78
    assert "TOKEN_ENCRYPTION_KEY" in result.output
